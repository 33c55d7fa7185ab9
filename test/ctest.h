/*
** ctest.h — the assertion macros of the C unit tests.
**
** Each C test program prints one line per failed check ("FAIL file:line:
** expression"), one line per test case ("ok NAME" or "FAIL NAME"), and ends
** with "N passed, N failed" counting test cases; test/runner.tcl adds those
** counts to its own.  Exit status is non-zero when any case failed.
** NUMPACK_CTEST_ONLY in the environment (case names separated by spaces)
** runs only the cases it names (make tsan runs the thread cases so).
*/
#ifndef NPK_CTEST_H
#define NPK_CTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ctest_passed;        /* test cases without a failed check */
static int ctest_failed;        /* test cases with at least one failed check */
static int ctest_case_failures; /* failed checks in the running case */

/* Check a condition; on failure report it and continue the case. */
#define CHECK(cond) do { if (!(cond)) { \
    ctest_case_failures++; \
    printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } } while (0)

/* Check two integers are equal, printing both on failure. */
#define CHECK_EQ(a, b) do { long long ctest_a_ = (long long)(a), \
    ctest_b_ = (long long)(b); if (ctest_a_ != ctest_b_) { \
    ctest_case_failures++; \
    printf("FAIL %s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, \
           #a, #b, ctest_a_, ctest_b_); } } while (0)

/* Check a string contains a fragment (error messages). */
#define CHECK_HAS(str, frag) do { const char *ctest_s_ = (str); \
    if (!ctest_s_ || !strstr(ctest_s_, (frag))) { ctest_case_failures++; \
    printf("FAIL %s:%d: \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, \
           ctest_s_ ? ctest_s_ : "(null)", (frag)); } } while (0)

/* 1 if the case NAME is to run (see NUMPACK_CTEST_ONLY above). */
static inline int ctest_wanted(const char *name) {
  const char *only = getenv("NUMPACK_CTEST_ONLY"), *p;
  size_t n = strlen(name);
  if (!only || !*only) return 1;
  for (p = strstr(only, name); p; p = strstr(p + 1, name))
    if ((p == only || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
      return 1;
  return 0;
}

/* Run one test case: a function of no arguments. */
#define RUN(fn) do { if (!ctest_wanted(#fn)) break; \
    ctest_case_failures = 0; fn(); \
    if (ctest_case_failures) { ctest_failed++; printf("FAIL %s\n", #fn); } \
    else { ctest_passed++; printf("ok %s\n", #fn); } } while (0)

/* Print the closing line and return the exit status. */
#define CTEST_END() (printf("%d passed, %d failed\n", ctest_passed, \
    ctest_failed), ctest_failed ? 1 : 0)

#endif /* NPK_CTEST_H */
