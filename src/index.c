/*
** index.c — the parser for index arguments of the SQL functions
** (numpack_getitem, numpack_replace, numpack_drop): "7", "-1", "[0, 5, -2]",
** "2:10", ":3", "-5:", "0:100:10", or the same integers as a BLOB of int64
** values.  Indexes are logical, as NumPack's are:
** they count live rows.  An integer out of range is an error, never
** ignored; slices clamp their bounds as Python's do.  No SQLite dependency,
** so it can be fuzzed alone.
*/
#include <stdlib.h>
#include <string.h>

#include "index.h"
#include "store_int.h"

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

uint64_t npk_rows_sort_unique(uint64_t *p, uint64_t n) {
  uint64_t k = 0;
  if (n < 2) return n; /* an empty list may come as NULL, which qsort refuses */
  qsort(p, (size_t)n, sizeof *p, cmp_u64);
  for (uint64_t i = 0; i < n; i++)
    if (k == 0 || p[k - 1] != p[i]) p[k++] = p[i];
  return k;
}

int npk_index_one(int64_t i, uint64_t nlive, uint64_t *out, NpkErr *e) {
  if (i < 0 ? (uint64_t)0 - (uint64_t)i > nlive : (uint64_t)i >= nlive)
    return npk_err(e, NPK_RANGE, "index %lld is out of range for %llu rows",
                   (long long)i, (unsigned long long)nlive);
  *out = i < 0 ? nlive - ((uint64_t)0 - (uint64_t)i) : (uint64_t)i;
  return NPK_OK;
}

/* Parser state. */
typedef struct Scan Scan;
struct Scan {
  const char *p;   /* next character */
  const char *end; /* end of the text */
};

static void skip_ws(Scan *s) {
  while (s->p < s->end &&
         (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

/* An optionally signed decimal integer.  One beyond int64 is refused, or,
** when SATURATE is set, taken as INT64_MAX or INT64_MIN: a slice's parts,
** which Python takes of any size, and which clamp to the rows (a step
** that large selects the first row alone either way). */
static int integer_sat(Scan *s, int64_t *v, int saturate) {
  int neg = 0, over = 0;
  uint64_t x = 0;
  const char *start;
  skip_ws(s);
  if (s->p < s->end && (*s->p == '-' || *s->p == '+')) neg = *s->p++ == '-';
  start = s->p;
  while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
    unsigned d = (unsigned)(*s->p - '0');
    if (over || x > ((uint64_t)INT64_MAX + (uint64_t)neg - d) / 10) {
      if (!saturate) return 0;
      over = 1;
    } else {
      x = x * 10 + d;
    }
    s->p++;
  }
  if (s->p == start) return 0;
  if (over) x = (uint64_t)INT64_MAX + (uint64_t)neg;
  *v = neg ? (int64_t)((uint64_t)0 - x) : (int64_t)x;
  return 1;
}

static int integer(Scan *s, int64_t *v) { return integer_sat(s, v, 0); }

static int push(uint64_t **pp, uint64_t *pn, uint64_t *cap, uint64_t v) {
  if (*pn == *cap) {
    uint64_t c = *cap ? *cap * 2 : 16;
    uint64_t *q = npk_realloc(*pp, c * sizeof *q);
    if (!q) return 0;
    *pp = q;
    *cap = c;
  }
  (*pp)[(*pn)++] = v;
  return 1;
}

/* Python's slice bound: negative counts from the end, then clamp into
** [0, n] (a positive step) or [-1, n-1] (a negative step, where -1 stands
** for "before the first row"). */
static uint64_t clamp(int64_t v, uint64_t n) {
  if (v < 0) {
    uint64_t m = (uint64_t)0 - (uint64_t)v;
    return m > n ? 0 : n - m;
  }
  return (uint64_t)v > n ? n : (uint64_t)v;
}

static int64_t clamp_down(int64_t v, uint64_t n) {
  if (v < 0) {
    uint64_t m = (uint64_t)0 - (uint64_t)v;
    return m > n ? -1 : (int64_t)(n - m);
  }
  return (uint64_t)v >= n ? (int64_t)n - 1 : v;
}

uint64_t npk_index_row(const NpkIndex *ix, uint64_t k) {
  if (ix->rows) return ix->rows[k];
  return ix->step < 0 ? ix->first - k * ((uint64_t)0 - (uint64_t)ix->step)
                      : ix->first + k * (uint64_t)ix->step;
}

void npk_index_free(NpkIndex *ix) {
  npk_free(ix->rows);
  ix->rows = NULL;
  ix->n = 0;
}

int npk_index_int64(const void *p, size_t n, uint64_t nlive, uint64_t max,
                    NpkIndex *ix, NpkErr *e) {
  const unsigned char *b = p;
  uint64_t cnt = n / 8;
  memset(ix, 0, sizeof *ix);
  if (n % 8)
    return npk_err(e, NPK_ERROR,
                   "an index BLOB holds int64 values, 8 bytes each, not %llu "
                   "bytes",
                   (unsigned long long)n);
  if (cnt > max)
    return npk_err(e, NPK_TOOBIG, "the index selects more than %llu rows",
                   (unsigned long long)max);
  if (cnt && !(ix->rows = npk_malloc((size_t)cnt * sizeof *ix->rows)))
    return npk_err(e, NPK_NOMEM, "out of memory");
  for (uint64_t i = 0; i < cnt; i++) {
    int rc =
        npk_index_one((int64_t)npk_get_u64(b + 8 * i), nlive, &ix->rows[i], e);
    if (rc) {
      npk_index_free(ix);
      return rc;
    }
  }
  ix->n = cnt;
  return NPK_OK;
}

int npk_index_parse_ix(const char *text, size_t n, uint64_t nlive, uint64_t max,
                       NpkIndex *ix, NpkErr *e) {
  Scan s = {text, text + n};
  uint64_t *rows = NULL, cnt = 0, cap = 0;
  int64_t v;
  int rc = NPK_RANGE;

  memset(ix, 0, sizeof *ix);
  skip_ws(&s);
  if (s.p < s.end && *s.p == '[') {
    s.p++;
    skip_ws(&s);
    if (s.p < s.end && *s.p == ']') {
      s.p++;
    } else {
      for (;;) {
        uint64_t r;
        if (!integer(&s, &v)) goto syntax;
        if (npk_index_one(v, nlive, &r, e)) goto fail;
        if (cnt >= max) goto too_many;
        if (!push(&rows, &cnt, &cap, r)) goto oom;
        skip_ws(&s);
        if (s.p < s.end && *s.p == ',') {
          s.p++;
          continue;
        }
        if (s.p < s.end && *s.p == ']') {
          s.p++;
          break;
        }
        goto syntax;
      }
    }
    /* An empty list is a list still, not a slice. */
    if (!rows && !(rows = npk_malloc(sizeof *rows))) goto oom;
  } else if (memchr(s.p, ':', (size_t)(s.end - s.p))) {
    int64_t start = 0, stop = (int64_t)nlive, step = 1;
    uint64_t a, b;
    int have_start, have_stop;
    skip_ws(&s);
    have_start = s.p < s.end && *s.p != ':';
    if (have_start && !integer_sat(&s, &start, 1)) goto syntax;
    skip_ws(&s);
    if (s.p >= s.end || *s.p != ':') goto syntax;
    s.p++;
    skip_ws(&s);
    have_stop = s.p < s.end && *s.p != ':';
    if (have_stop && !integer_sat(&s, &stop, 1)) goto syntax;
    skip_ws(&s);
    if (s.p < s.end && *s.p == ':') {
      s.p++;
      skip_ws(&s);
      if (s.p < s.end && !integer_sat(&s, &step, 1)) goto syntax;
      if (step == 0) {
        rc = npk_err(e, NPK_ERROR, "slice step cannot be zero");
        goto fail;
      }
    }
    if (step < 0) {
      /* Backwards from START down to just above STOP, as Python does. */
      uint64_t mag = (uint64_t)0 - (uint64_t)step;
      int64_t hi = have_start ? clamp_down(start, nlive) : (int64_t)nlive - 1;
      int64_t lo = have_stop ? clamp_down(stop, nlive) : -1;
      cnt = hi > lo ? (uint64_t)(hi - lo - 1) / mag + 1 : 0;
      ix->first = hi > lo ? (uint64_t)hi : 0;
    } else {
      a = have_start ? clamp(start, nlive) : 0;
      b = have_stop ? clamp(stop, nlive) : nlive;
      cnt = a < b ? (b - a - 1) / (uint64_t)step + 1 : 0;
      ix->first = a;
    }
    ix->step = step;
  } else {
    uint64_t r;
    if (!integer(&s, &v)) goto syntax;
    if (npk_index_one(v, nlive, &r, e)) goto fail;
    if (!push(&rows, &cnt, &cap, r)) goto oom;
    ix->scalar = 1;
  }
  skip_ws(&s);
  if (s.p != s.end) goto syntax;
  ix->rows = rows;
  ix->n = cnt;
  return NPK_OK;
too_many:
  npk_free(rows);
  return npk_err(e, NPK_TOOBIG, "the index selects more than %llu rows",
                 (unsigned long long)max);
syntax:
  rc = npk_err(e, NPK_ERROR,
               "bad index \"%.*s\": want an integer, a JSON array of "
               "integers or a start:stop slice",
               (int)(n > 60 ? 60 : n), text);
  goto fail;
oom:
  rc = npk_err(e, NPK_NOMEM, "out of memory");
fail:
  npk_free(rows);
  memset(ix, 0, sizeof *ix);
  return rc;
}

int npk_index_parse(const char *text, size_t n, uint64_t nlive, uint64_t max,
                    uint64_t **pp, uint64_t *pn, int *scalar, NpkErr *e) {
  NpkIndex ix;
  int rc = npk_index_parse_ix(text, n, nlive, max, &ix, e);
  *pp = NULL;
  *pn = 0;
  *scalar = 0;
  if (rc) return rc;
  if (!ix.rows) {
    /* A slice, listed: within MAX rows, so its list is bounded. */
    if (ix.n > max)
      return npk_err(e, NPK_TOOBIG, "the index selects more than %llu rows",
                     (unsigned long long)max);
    uint64_t *list = npk_malloc((size_t)(ix.n ? ix.n : 1) * sizeof *list);
    if (!list) return npk_err(e, NPK_NOMEM, "out of memory");
    for (uint64_t k = 0; k < ix.n; k++) list[k] = npk_index_row(&ix, k);
    ix.rows = list;
  }
  if (ix.n == 0) {
    npk_free(ix.rows);
    ix.rows = NULL;
  }
  *pp = ix.rows;
  *pn = ix.n;
  *scalar = ix.scalar;
  return NPK_OK;
}
