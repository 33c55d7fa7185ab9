/*
** index_test.c — unit tests of the index-argument parser (src/index.c):
** integers, negatives, JSON lists, Python slices, and every error.
*/
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "index.h"

/* Parse TEXT over NLIVE rows; compare with WANT (N entries) or expect an
** error containing ERRFRAG when ERRFRAG is not NULL. */
static void expect(const char *text, uint64_t nlive, const uint64_t *want,
                   uint64_t n, const char *errfrag) {
  uint64_t *rows = NULL, got = 0;
  NpkErr e;
  int scalar;
  int rc = npk_index_parse(text, strlen(text), nlive, UINT64_MAX, &rows, &got,
                           &scalar, &e);
  if (errfrag) {
    CHECK(rc != 0);
    CHECK_HAS(e.msg, errfrag);
    CHECK(rows == NULL);
  } else {
    CHECK_EQ(rc, 0);
    CHECK_EQ(got, n);
    /* Only a bare integer is a scalar index. */
    CHECK_EQ(scalar, strchr(text, '[') == NULL && strchr(text, ':') == NULL);
    for (uint64_t i = 0; i < n && i < got; i++) CHECK_EQ(rows[i], want[i]);
  }
  free(rows);
}

static void test_integers(void) {
  expect("0", 5, (uint64_t[]){0}, 1, NULL);
  expect(" 4 ", 5, (uint64_t[]){4}, 1, NULL);
  expect("-1", 5, (uint64_t[]){4}, 1, NULL);
  expect("-5", 5, (uint64_t[]){0}, 1, NULL);
  expect("5", 5, NULL, 0, "out of range");
  expect("-6", 5, NULL, 0, "out of range");
  expect("0", 0, NULL, 0, "out of range");
  expect("9223372036854775807", 5, NULL, 0, "out of range");
  expect("-9223372036854775808", 5, NULL, 0, "out of range");
  expect("9223372036854775808", 5, NULL, 0, "bad index");
}

static void test_lists(void) {
  expect("[0, 2, -1]", 5, (uint64_t[]){0, 2, 4}, 3, NULL);
  expect("[]", 5, NULL, 0, NULL);
  expect("[3,3]", 5, (uint64_t[]){3, 3}, 2, NULL);
  expect("[1, 7]", 5, NULL, 0, "index 7 is out of range");
  expect("[1,]", 5, NULL, 0, "bad index");
  expect("[1 2]", 5, NULL, 0, "bad index");
  expect("[1.5]", 5, NULL, 0, "bad index");
  expect("[\"1\"]", 5, NULL, 0, "bad index");
  expect("[1", 5, NULL, 0, "bad index");
  expect("[1] x", 5, NULL, 0, "bad index");
}

static void test_slices(void) {
  expect("1:3", 5, (uint64_t[]){1, 2}, 2, NULL);
  expect(":2", 5, (uint64_t[]){0, 1}, 2, NULL);
  expect("3:", 5, (uint64_t[]){3, 4}, 2, NULL);
  expect(":", 3, (uint64_t[]){0, 1, 2}, 3, NULL);
  expect("-2:", 5, (uint64_t[]){3, 4}, 2, NULL);
  expect("0:100", 3, (uint64_t[]){0, 1, 2}, 3, NULL);
  expect("4:2", 5, NULL, 0, NULL);
  expect("0:5:2", 5, (uint64_t[]){0, 2, 4}, 3, NULL);
  expect("::3", 7, (uint64_t[]){0, 3, 6}, 3, NULL);
  expect("0:5:0", 5, NULL, 0, "step cannot be zero");
  /* Negative steps, as Python's: from start (default: the last row) down
  ** to just above stop (default: past the first), bounds clamped. */
  expect("::-1", 5, (uint64_t[]){4, 3, 2, 1, 0}, 5, NULL);
  expect("::-2", 5, (uint64_t[]){4, 2, 0}, 3, NULL);
  expect("3:0:-1", 5, (uint64_t[]){3, 2, 1}, 3, NULL);
  expect("3::-1", 5, (uint64_t[]){3, 2, 1, 0}, 4, NULL);
  expect(":1:-1", 5, (uint64_t[]){4, 3, 2}, 3, NULL);
  expect("-1:-4:-1", 5, (uint64_t[]){4, 3, 2}, 3, NULL);
  expect("100:-100:-3", 5, (uint64_t[]){4, 1}, 2, NULL);
  expect("0:5:-1", 5, NULL, 0, NULL);
  expect("::-1", 0, NULL, 0, NULL);
  /* Bounds and steps of any size, as Python takes them: clamped. */
  expect("0:99999999999999999999", 3, (uint64_t[]){0, 1, 2}, 3, NULL);
  expect("-99999999999999999999:2", 3, (uint64_t[]){0, 1}, 2, NULL);
  expect("99999999999999999999:", 3, NULL, 0, NULL);
  expect("::99999999999999999999", 3, (uint64_t[]){0}, 1, NULL);
  expect("::-99999999999999999999", 3, (uint64_t[]){2}, 1, NULL);
  expect("99999999999999999999:-99999999999999999999:-1", 3,
         (uint64_t[]){2, 1, 0}, 3, NULL);
  expect("-9223372036854775808:9223372036854775807:9223372036854775807", 3,
         (uint64_t[]){0}, 1, NULL);
  expect("0:-0", 3, NULL, 0, NULL);
  expect("a:b", 5, NULL, 0, "bad index");
  expect("1:2:3:4", 5, NULL, 0, "bad index");
  expect("", 5, NULL, 0, "bad index");
  expect("abc", 5, NULL, 0, "bad index");
}

/* A selection larger than the bound is refused before any list is built. */
static void test_bound(void) {
  uint64_t *rows = NULL, n = 0;
  NpkErr e;
  int scalar;
  CHECK_EQ(npk_index_parse("0:1000000000000", 15, 1000000000000ull, 10, &rows,
                           &n, &scalar, &e), NPK_TOOBIG);
  CHECK(rows == NULL);
  CHECK_HAS(e.msg, "more than 10 rows");
  CHECK_EQ(npk_index_parse("0:20:2", 6, 100, 10, &rows, &n, &scalar, &e), 0);
  CHECK_EQ(n, 10);
  free(rows);
  CHECK_EQ(npk_index_parse("0:21:2", 6, 100, 10, &rows, &n, &scalar, &e), NPK_TOOBIG);
  CHECK_EQ(npk_index_parse("[1,2,3]", 7, 100, 2, &rows, &n, &scalar, &e), NPK_TOOBIG);
}

/* Each kind of failure has its own code, so that SQL can report a bad
** index apart from one out of range. */
static void test_codes(void) {
  uint64_t *rows = NULL, n = 0;
  int scalar;
  NpkErr e;
  CHECK_EQ(npk_index_parse("7", 1, 5, 10, &rows, &n, &scalar, &e),
           NPK_RANGE);
  CHECK_EQ(npk_index_parse("[0, 9]", 6, 5, 10, &rows, &n, &scalar, &e), NPK_RANGE);
  CHECK_EQ(npk_index_parse("abc", 3, 5, 10, &rows, &n, &scalar, &e), NPK_ERROR);
  CHECK_EQ(npk_index_parse("0:4:0", 5, 5, 10, &rows, &n, &scalar, &e), NPK_ERROR);
  CHECK_EQ(npk_index_parse("0:4", 3, 5, 2, &rows, &n, &scalar, &e), NPK_TOOBIG);
  CHECK(rows == NULL);
  uint64_t r;
  CHECK_EQ(npk_index_one(-6, 5, &r, &e), NPK_RANGE);
  CHECK_EQ(npk_index_one(-5, 5, &r, &e), 0);
  CHECK_EQ(r, 0);
}

/* A slice stays its bounds: 2^62 rows, forwards or backwards, with no
** list (the bound applies to lists only), each row computed on demand,
** and the listed form agrees with it row for row. */
static void test_lazy(void) {
  static const char *texts[] = {"0:", "::-1", "5::3", "-4:2:-2", "[3, 1]",
                                "7", "10:10", "::-1000000000000"};
  uint64_t huge = 1ull << 62;
  NpkIndex ix;
  NpkErr e;
  CHECK_EQ(npk_index_parse_ix("0:", 2, huge, 10, &ix, &e), 0);
  CHECK(ix.rows == NULL);
  CHECK_EQ(ix.n, huge);
  CHECK_EQ(npk_index_row(&ix, huge - 1), huge - 1);
  CHECK_EQ(npk_index_parse_ix("::-1", 4, huge, 10, &ix, &e), 0);
  CHECK(ix.rows == NULL);
  CHECK_EQ(ix.n, huge);
  CHECK_EQ(npk_index_row(&ix, 0), huge - 1);
  CHECK_EQ(npk_index_row(&ix, huge - 1), 0);
  CHECK_EQ(npk_index_parse_ix("1::2", 4, huge, 10, &ix, &e), 0);
  CHECK_EQ(ix.n, huge / 2);
  CHECK_EQ(npk_index_row(&ix, huge / 2 - 1), huge - 1);
  CHECK_EQ(npk_index_parse_ix("[1,2,3]", 7, 100, 2, &ix, &e),
           NPK_TOOBIG);
  CHECK(ix.rows == NULL);
  CHECK_EQ(npk_index_parse_ix("[]", 2, 100, 2, &ix, &e), 0);
  CHECK(ix.rows != NULL);
  CHECK_EQ(ix.n, 0);
  npk_index_free(&ix);
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    uint64_t *rows = NULL, n = 0;
    int scalar;
    size_t len = strlen(texts[i]);
    CHECK_EQ(npk_index_parse_ix(texts[i], len, 20, 100, &ix, &e),
             0);
    CHECK_EQ(npk_index_parse(texts[i], len, 20, 100, &rows, &n, &scalar, &e), 0);
    CHECK_EQ(ix.n, n);
    CHECK_EQ(ix.scalar, scalar);
    for (uint64_t k = 0; k < n && k < ix.n; k++)
      CHECK_EQ(npk_index_row(&ix, k), rows[k]);
    npk_index_free(&ix);
    free(rows);
  }
}

/* Sorting and deduplicating rows, down to an empty list without a buffer
** (what "[]" parses to): the sanitizer build halts on a NULL given to
** qsort. */
static void test_sort_unique(void) {
  uint64_t rows[] = {5, 1, 5, 0, 1};
  CHECK_EQ(npk_rows_sort_unique(rows, 5), 3);
  CHECK_EQ(rows[0], 0);
  CHECK_EQ(rows[1], 1);
  CHECK_EQ(rows[2], 5);
  CHECK_EQ(npk_rows_sort_unique(rows, 1), 1);
  CHECK_EQ(npk_rows_sort_unique(NULL, 0), 0);
}

int main(void) {
  RUN(test_codes);
  RUN(test_integers);
  RUN(test_lists);
  RUN(test_slices);
  RUN(test_bound);
  RUN(test_lazy);
  RUN(test_sort_unique);
  return CTEST_END();
}
