/*
** crashlib.h — what the crash harness's two programs share: the checksum of
** a store's logical state, a small random number generator, and the names
** of the files involved.
**
** The checksum is FNV-1a (64 bits) over, for every array in catalog order:
** its name (with a terminating NUL), dtype code, ndim, physical shape, live
** row count, then for every physical row a live flag and, when live, the
** row's bytes.  Deleted rows contribute only their flag, so the checksum is
** what a reader can observe, not what happens to lie in the file.
**
** Everything is static so that each program has its own copy.
*/
#ifndef NPK_CRASHLIB_H
#define NPK_CRASHLIB_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store.h"
#include "../journal_hot.h"

#define CL_FN static __attribute__((unused))

#define CL_CATALOG "metadata.npkm"
#define CL_LOCK    "metadata.npkm-lock"
#define CL_JOURNAL "metadata.npkm-journal"
#define CL_SPARE   "metadata.npkm-journal-spare"

/* 1 when the journal at PATH may be hot (journal_hot.h). */
CL_FN int cl_journal_hot(const char *path) { return test_journal_hot(path); }

/* Exit statuses of the crasher. */
#define CL_EXIT_DONE     0   /* ran every transaction it was asked to */
#define CL_EXIT_USAGE    2
#define CL_EXIT_ENGINE   3   /* an engine call failed */
#define CL_EXIT_MISMATCH 4   /* the engine shows something the model lacks */
#define CL_EXIT_LOG      5   /* the expectation log could not be written */
#define CL_EXIT_CRASH   77   /* npk_test_crash_at fired */

/* ---- checksum ---------------------------------------------------------- */

typedef struct ClSum {
  uint64_t h;
} ClSum;

CL_FN void cl_sum_init(ClSum *c) { c->h = UINT64_C(0xcbf29ce484222325); }

CL_FN void cl_sum_bytes(ClSum *c, const void *p, size_t n) {
  const unsigned char *b = p;
  uint64_t h = c->h;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= UINT64_C(0x100000001b3);
  }
  c->h = h;
}

CL_FN void cl_sum_u64(ClSum *c, uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
  cl_sum_bytes(c, b, 8);
}

CL_FN void cl_sum_count(ClSum *c, uint64_t narrays) { cl_sum_u64(c, narrays); }

CL_FN void cl_sum_array(ClSum *c, const char *name, int dtype, uint32_t ndim,
                        const uint64_t *shape, uint64_t live_rows) {
  cl_sum_bytes(c, name, strlen(name) + 1);
  cl_sum_u64(c, (uint64_t)dtype);
  cl_sum_u64(c, ndim);
  for (uint32_t k = 0; k < ndim; k++) cl_sum_u64(c, shape[k]);
  cl_sum_u64(c, live_rows);
}

CL_FN void cl_sum_row(ClSum *c, int live, const void *row, size_t row_bytes) {
  unsigned char f = live ? 1 : 0;
  cl_sum_bytes(c, &f, 1);
  if (live) cl_sum_bytes(c, row, row_bytes);
}

/* The checksum of what session S sees (inside a read or a transaction).
** Returns an NPK_ code. */
CL_FN int cl_sum_session(NpkSession *s, uint64_t *out) {
  ClSum c;
  int n = 0, rc;
  cl_sum_init(&c);
  if ((rc = npk_array_count(s, &n)) != NPK_OK) return rc;
  cl_sum_count(&c, (uint64_t)n);
  for (int i = 0; i < n; i++) {
    NpkArrayInfo info;
    char name[NPK_MAX_NAME + 1];
    if ((rc = npk_array_info_at(s, i, &info)) != NPK_OK) return rc;
    snprintf(name, sizeof name, "%s", info.name);
    cl_sum_array(&c, name, info.dtype, info.ndim, info.shape, info.live_rows);
    for (uint64_t r = 0; r < info.rows; r++) {
      int live = npk_row_live(s, name, r);
      const void *row = NULL;
      if (live && (rc = npk_row_ptr(s, name, r, &row)) != NPK_OK) return rc;
      cl_sum_row(&c, live, row, (size_t)info.row_bytes);
    }
  }
  *out = c.h;
  return NPK_OK;
}

/* ---- random numbers (splitmix64) ----------------------------------------- */

typedef struct ClRand {
  uint64_t s;
} ClRand;

CL_FN uint64_t cl_rand(ClRand *r) {
  uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

/* Uniform in [0, n) (n > 0). */
CL_FN uint64_t cl_below(ClRand *r, uint64_t n) { return cl_rand(r) % n; }

/* Uniform in [lo, hi]. */
CL_FN uint64_t cl_range(ClRand *r, uint64_t lo, uint64_t hi) {
  return lo + cl_below(r, hi - lo + 1);
}

/* 1 with probability PCT percent. */
CL_FN int cl_chance(ClRand *r, unsigned pct) { return cl_below(r, 100) < pct; }

/* ---- time -------------------------------------------------------------- */

CL_FN uint64_t cl_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#endif /* NPK_CRASHLIB_H */
