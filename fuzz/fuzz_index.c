/*
** fuzz_index.c — fuzz target for npk_index_parse, the parser of the index
** arguments of numpack_getitem, numpack_replace and numpack_drop ("7",
** "[0, -1]", "2:10:3").
**
** The input is the index text, parsed against several live-row counts and
** row limits.  Beyond "no crash":
**   - a refused index returns no rows and a NUL-terminated message;
**   - every returned row is < nlive, never more than MAX rows come back,
**     and a scalar index is one row;
**   - the rows are what Python would select: a slice (its bounds and step
**     of any size) is checked against slice.indices() computed here, a
**     list and a scalar against the integers read here, whenever this
**     simpler reader understands the text (it is not a second grammar,
**     only a second opinion on values);
**   - the same bytes as an index BLOB (npk_index_int64): refused unless a
**     whole number of int64 values, each resolved as a list's integer.
*/
#include <string.h>

#include "fuzz.h"
#include "index.h"

const char npk_fuzz_target[] = "index";

/* A cursor for the reference reader. */
typedef struct Ref Ref;
struct Ref {
  const char *p, *end;
};

static void ref_ws(Ref *r) {
  while (r->p < r->end &&
         (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
    r->p++;
}

/* A signed decimal integer (with white space before).  One beyond int64
** is refused, or with SATURATE (a slice's bound or step, of any size in
** Python) clamped to [INT64_MIN, INT64_MAX]: that selects the same rows as
** the true value for every row count up to INT64_MAX (INT64_MIN + n stays
** below 0, INT64_MAX stays at or past n, and such a step takes one row). */
static int ref_int_sat(Ref *r, int saturate, int64_t *v) {
  int neg = 0, digits = 0;
  __int128 x = 0;
  ref_ws(r);
  if (r->p < r->end && (*r->p == '-' || *r->p == '+')) neg = *r->p++ == '-';
  while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
    x = x * 10 + (*r->p++ - '0');
    if (x > (__int128)INT64_MAX + 1) {
      if (!saturate) return 0;
      x = (__int128)INT64_MAX + 1;
    }
    digits++;
  }
  if (!digits) return 0;
  if (neg) x = -x;
  if (x > INT64_MAX) {
    if (!saturate) return 0;
    x = INT64_MAX;
  }
  *v = (int64_t)x;
  return 1;
}

static int ref_int(Ref *r, int64_t *v) { return ref_int_sat(r, 0, v); }
static int ref_slice_int(Ref *r, int64_t *v) { return ref_int_sat(r, 1, v); }

/* Python's slice.indices() bound for a positive step. */
static uint64_t ref_bound(int64_t v, uint64_t n) {
  __int128 x = v;
  if (x < 0) x += (__int128)n;
  if (x < 0) x = 0;
  if (x > (__int128)n) x = (__int128)n;
  return (uint64_t)x;
}

static __int128 ref_bound_down(int64_t v, uint64_t n) {
  __int128 x = v;
  if (x < 0) x += (__int128)n;
  if (x < 0) x = -1;
  if (x > (__int128)n - 1) x = (__int128)n - 1;
  return x;
}

/* Check one parse against NLIVE rows and a limit of MAX rows. */
static void check(const char *text, size_t n, uint64_t nlive, uint64_t max) {
  uint64_t *rows = (uint64_t *)&rows, cnt = 12345;
  int scalar = 7, rc;
  NpkErr e;
  Ref r = {text, text + n};
  int64_t v;

  memset(&e, 'x', sizeof e);
  rc = npk_index_parse(text, n, nlive, max, &rows, &cnt, &scalar, &e);
  if (rc != 0) {
    FUZZ_CHECK(rc == NPK_RANGE || rc == NPK_TOOBIG ||
               rc == NPK_ERROR || rc == NPK_NOMEM);
    FUZZ_CHECK(rows == NULL && cnt == 0);
    FUZZ_CHECK(e.rc == rc && memchr(e.msg, 0, sizeof e.msg) != NULL &&
               strncmp(e.msg, "numpack: ", 9) == 0 && e.msg[9] != 0);
  } else {
    FUZZ_CHECK(cnt <= max || (scalar && cnt == 1));
    FUZZ_CHECK(cnt == 0 || rows != NULL);
    for (uint64_t i = 0; i < cnt; i++) FUZZ_CHECK(rows[i] < nlive);
    if (scalar) FUZZ_CHECK(cnt == 1);
  }

  /* A second opinion on the values. */
  ref_ws(&r);
  if (r.p < r.end && *r.p == '[') {
    /* A list: each integer in turn, resolved against nlive. */
    uint64_t k = 0;
    int ok = 1;
    r.p++;
    ref_ws(&r);
    if (r.p < r.end && *r.p == ']') {
      r.p++;
    } else {
      for (;;) {
        if (!ref_int(&r, &v)) {
          ok = 0;
          break;
        }
        if (v < 0 ? (uint64_t)0 - (uint64_t)v > nlive : (uint64_t)v >= nlive) {
          /* Refused, never dropped; unless MAX rows came before it. */
          FUZZ_CHECK(rc == (k <= max ? NPK_RANGE : NPK_TOOBIG));
          ok = 0;
          break;
        }
        if (rc == 0) {
          FUZZ_CHECK(k < cnt);
          FUZZ_CHECK(rows[k] == (v < 0 ? nlive - ((uint64_t)0 - (uint64_t)v)
                                       : (uint64_t)v));
        }
        k++;
        ref_ws(&r);
        if (r.p < r.end && *r.p == ',') {
          r.p++;
          continue;
        }
        if (r.p < r.end && *r.p == ']') r.p++;
        else ok = 0;
        break;
      }
    }
    ref_ws(&r);
    if (ok && r.p == r.end)
      FUZZ_CHECK(k <= max ? rc == 0 && cnt == k : rc == NPK_TOOBIG);
    if (rc == 0) FUZZ_CHECK(!scalar);
  } else if (memchr(r.p, ':', (size_t)(r.end - r.p))) {
    /* A slice: start, stop, step by the reference reader. */
    int64_t start = 0, stop = 0, step = 1;
    int has_start = 0, has_stop = 0, ok = 1;
    ref_ws(&r);
    if (r.p < r.end && *r.p != ':') ok = has_start = ref_slice_int(&r, &start);
    ref_ws(&r);
    if (ok && r.p < r.end && *r.p == ':') {
      r.p++;
      ref_ws(&r);
      if (r.p < r.end && *r.p != ':') ok = has_stop = ref_slice_int(&r, &stop);
      ref_ws(&r);
      if (ok && r.p < r.end && *r.p == ':') {
        r.p++;
        ref_ws(&r);
        if (r.p < r.end) ok = ref_slice_int(&r, &step);
      }
      ref_ws(&r);
      if (r.p != r.end) ok = 0;
    } else {
      ok = 0;
    }
    if (ok && step == 0) {
      FUZZ_CHECK(rc == NPK_ERROR);
    } else if (ok && step < 0) {
      /* Python: from START (default last) down to above STOP (default
      ** before the first), bounds clamped into [-1, n-1]. */
      __int128 hi = has_start ? ref_bound_down(start, nlive) : (__int128)nlive - 1;
      __int128 lo = has_stop ? ref_bound_down(stop, nlive) : -1;
      __int128 mag = -(__int128)step;
      uint64_t want = hi > lo ? (uint64_t)((hi - lo - 1) / mag + 1) : 0;
      if (want > max) {
        FUZZ_CHECK(rc == NPK_TOOBIG);
      } else {
        FUZZ_CHECK(rc == 0);
        FUZZ_CHECK(cnt == want);
        for (uint64_t i = 0; i < cnt && rc == 0; i++)
          FUZZ_CHECK((__int128)rows[i] == hi - (__int128)i * mag);
      }
    } else if (ok) {
      uint64_t a = has_start ? ref_bound(start, nlive) : 0;
      uint64_t b = has_stop ? ref_bound(stop, nlive) : nlive;
      uint64_t want = a < b ? (b - a - 1) / (uint64_t)step + 1 : 0;
      if (want > max) {
        FUZZ_CHECK(rc == NPK_TOOBIG);
      } else {
        FUZZ_CHECK(rc == 0);
        FUZZ_CHECK(cnt == want);
        for (uint64_t i = 0; i < cnt; i++)
          FUZZ_CHECK(rows[i] == a + i * (uint64_t)step);
      }
    }
    if (rc == 0) FUZZ_CHECK(!scalar);
  } else {
    /* One integer. */
    int ok = ref_int(&r, &v);
    ref_ws(&r);
    if (ok && r.p == r.end) {
      if (v < 0 ? (uint64_t)0 - (uint64_t)v > nlive : (uint64_t)v >= nlive) {
        FUZZ_CHECK(rc == NPK_RANGE);
      } else {
        FUZZ_CHECK(rc == 0 && scalar && cnt == 1);
        FUZZ_CHECK(rows[0] == (v < 0 ? nlive - ((uint64_t)0 - (uint64_t)v)
                                     : (uint64_t)v));
      }
    } else {
      FUZZ_CHECK(rc != 0);
    }
  }
  /* The lazy form: the same rows, a slice kept as its bounds (any
  ** length), the same errors but for MAX, which bounds only lists. */
  {
    NpkIndex ix;
    int rci = npk_index_parse_ix(text, n, nlive, max, &ix, &e);
    if (rc == 0) {
      FUZZ_CHECK(rci == 0 && ix.n == cnt && ix.scalar == scalar);
      for (uint64_t i = 0; i < cnt && rci == 0; i++)
        FUZZ_CHECK(npk_index_row(&ix, i) == rows[i]);
    } else if (rc == NPK_TOOBIG) {
      FUZZ_CHECK(rci == 0 ? !ix.rows && ix.n > max : rci == rc);
    } else if (rc != NPK_NOMEM) {
      FUZZ_CHECK(rci == rc);
    }
    if (rci == 0 && ix.n) {
      FUZZ_CHECK(npk_index_row(&ix, 0) < nlive);
      FUZZ_CHECK(npk_index_row(&ix, ix.n - 1) < nlive);
    }
    if (rci == 0) npk_index_free(&ix);
  }
  if (rc == 0) free(rows);
}

/* The little-endian uint64 at P. */
static uint64_t le64(const uint8_t *p) {
  uint64_t u = 0;
  for (int b = 7; b >= 0; b--) u = u << 8 | p[b];
  return u;
}

/* The same bytes as an index BLOB (npk_index_int64): refused unless a
** whole number of int64 values, each resolved as a list's integer is. */
static void check_int64(const uint8_t *data, size_t n, uint64_t nlive,
                        uint64_t max) {
  NpkIndex ix;
  NpkErr e;
  uint64_t cnt = n / 8, k;
  int rc = npk_index_int64(data, n, nlive, max, &ix, &e);
  if (n % 8) {
    FUZZ_CHECK(rc == NPK_ERROR && !ix.rows && ix.n == 0);
    return;
  }
  if (cnt > max) {
    FUZZ_CHECK(rc == NPK_TOOBIG && !ix.rows);
    return;
  }
  /* The first value out of range refuses the whole index. */
  for (k = 0; k < cnt; k++) {
    int64_t v = (int64_t)le64(data + 8 * k);
    if (v < 0 ? (uint64_t)0 - (uint64_t)v > nlive : (uint64_t)v >= nlive) {
      FUZZ_CHECK(rc == NPK_RANGE && !ix.rows && ix.n == 0);
      FUZZ_CHECK(strncmp(e.msg, "numpack: ", 9) == 0);
      return;
    }
  }
  if (rc == NPK_NOMEM) return;
  FUZZ_CHECK(rc == 0 && ix.n == cnt && !ix.scalar);
  for (k = 0; k < cnt; k++) {
    int64_t v = (int64_t)le64(data + 8 * k);
    FUZZ_CHECK(npk_index_row(&ix, k) ==
               (v < 0 ? nlive - ((uint64_t)0 - (uint64_t)v) : (uint64_t)v));
  }
  npk_index_free(&ix);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const struct { uint64_t nlive, max; } runs[] = {
    {0, 4096}, {1, 4096}, {5, 4096}, {100, 4096}, {1000, 16},
    {(uint64_t)INT64_MAX, 4096}, {100, UINT64_MAX},
  };
  /* The index text is not NUL-terminated: SQLite passes a length. */
  for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
    check((const char *)data, size, runs[i].nlive, runs[i].max);
    check_int64(data, size, runs[i].nlive, runs[i].max);
  }
  return 0;
}
