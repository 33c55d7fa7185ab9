/*
** knn_test.c — unit tests of the k-nearest-neighbour kernels and scan
** (src/knn.c): every metric over every element type, with each kernel
** build the CPU runs, against a brute force computed here in double
** precision; deleted rows, row filters and ranges, k beyond the rows, ties,
** several threads, rows reached through a callback; and the query parser.
**
** The data are small whole numbers, so that every float sum is exact and
** the results must match the reference exactly, ties included.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "knn.h"
#include "npy.h"
#include "store.h"

#define ROWS 700
#define DIM 37

static const char *const isas[] = {"portable", "avx2", "avx512", "avx512bf16"};
static const int dtypes[] = {NPK_FLOAT32, NPK_FLOAT64, NPK_FLOAT16, NPK_INT8,
                             NPK_UINT8};

static uint32_t seed = 12345;
static int rnd(int n) {
  seed = seed * 1103515245u + 12345u;
  return (int)((seed >> 8) % (uint32_t)n);
}

/* Element I of raw rows of DTYPE as a double. */
static double elem(const unsigned char *p, int dtype, size_t i) {
  switch (dtype) {
    case NPK_FLOAT32: { float f; memcpy(&f, p + 4 * i, 4); return f; }
    case NPK_FLOAT64: { double f; memcpy(&f, p + 8 * i, 8); return f; }
    case NPK_FLOAT16: { unsigned short h; memcpy(&h, p + 2 * i, 2);
                        return npk_half_to_double(h); }
    case NPK_INT8: return (signed char)p[i];
    default: return p[i];
  }
}

static void set_elem(unsigned char *p, int dtype, size_t i, int v) {
  switch (dtype) {
    case NPK_FLOAT32: { float f = (float)v; memcpy(p + 4 * i, &f, 4); break; }
    case NPK_FLOAT64: { double f = v; memcpy(p + 8 * i, &f, 8); break; }
    case NPK_FLOAT16: { unsigned short h = npk_double_to_half(v);
                        memcpy(p + 2 * i, &h, 2); break; }
    case NPK_INT8: p[i] = (unsigned char)(signed char)v; break;
    default: p[i] = (unsigned char)v;
  }
}

/* The reference distance between raw row X and raw query Q. */
static double ref_dist(int dtype, int metric, const unsigned char *x,
                       const unsigned char *q, size_t dim, size_t bytes) {
  double s = 0, xx = 0, qq = 0;
  if (metric == NPK_KNN_HAMMING || metric == NPK_KNN_JACCARD) {
    int in = 0, un = 0, diff = 0;
    for (size_t i = 0; i < bytes; i++) {
      diff += __builtin_popcount(x[i] ^ q[i]);
      in += __builtin_popcount(x[i] & q[i]);
      un += __builtin_popcount(x[i] | q[i]);
    }
    if (metric == NPK_KNN_HAMMING) return diff;
    return un ? 1.0 - (double)in / un : 0.0;
  }
  for (size_t i = 0; i < dim; i++) {
    double a = elem(x, dtype, i), b = elem(q, dtype, i);
    switch (metric) {
      case NPK_KNN_L2: case NPK_KNN_L2SQ: s += (a - b) * (a - b); break;
      default: s += a * b; xx += a * a; qq += b * b;
    }
  }
  switch (metric) {
    case NPK_KNN_L2: return sqrt(s);
    case NPK_KNN_DOT: return -s;
    case NPK_KNN_COSINE:
      return xx > 0 && qq > 0 ? 1.0 - s / (sqrt(xx) * sqrt(qq)) : 1.0;
  }
  return s;
}

typedef struct Ref Ref;
struct Ref {
  double d;
  uint64_t r;
};
static int ref_cmp(const void *a, const void *b) {
  const Ref *x = a, *y = b;
  if (x->d != y->d) return x->d < y->d ? -1 : 1;
  return x->r < y->r ? -1 : x->r > y->r;
}

static unsigned char *rows_data;
static int row_at(void *arg, uint64_t r, const void **pp) {
  *pp = rows_data + r * (size_t)(uintptr_t)arg;
  return NPK_OK;
}

/* Search S with raw query Q (of S's dtype) and compare with the brute
** force over the same candidates; returns the rows found. */
static size_t check_search(NpkKnnScan *s, const unsigned char *data,
                           const unsigned char *q, size_t k) {
  void *pq;
  size_t nq, found = 0, nref = 0, room;
  NpkErr err;
  Ref *ref = malloc(sizeof(Ref) * (s->rows + 1));
  NpkKnnHit *out;
  CHECK(npk_knn_parse(q, (size_t)s->row_bytes, 0, s->dtype, s->metric, s->dim,
                      1, &pq, &nq, &err) == NPK_OK);
  CHECK_EQ(nq, 1);
  for (uint64_t r = 0; r < s->rows; r++) {
    int live = !s->live || (s->live[r / 64] >> (r % 64) & 1);
    int in = r >= s->lo && r < s->hi;
    if (s->only) {
      int listed = 0;
      for (size_t i = 0; i < s->n_only; i++) listed |= s->only[i] == r;
      in = in && listed;
    }
    if (!live || !in) continue;
    ref[nref].d = ref_dist(s->dtype, s->metric, data + r * s->row_bytes, q,
                           (size_t)s->dim, (size_t)s->row_bytes);
    ref[nref].r = r;
    nref++;
  }
  qsort(ref, nref, sizeof *ref, ref_cmp);
  room = npk_knn_room(s, k);
  out = malloc(sizeof *out * (room + 1));
  CHECK(npk_knn_search(s, pq, 1, k, out, &found) == NPK_OK);
  CHECK_EQ(found, nref < k ? nref : k);
  for (size_t i = 0; i < found && i < nref; i++) {
    if (out[i].row != ref[i].r || fabs(out[i].dist - ref[i].d) > 1e-9) {
      printf("  %s %s %s k=%zu: #%zu got row %llu %.9g, want %llu %.9g\n",
             npk_knn_isa(), npk_dtype_name(s->dtype),
             npk_knn_metric_name(s->metric), k, i,
             (unsigned long long)out[i].row, out[i].dist,
             (unsigned long long)ref[i].r, ref[i].d);
      CHECK(0);
      break;
    }
  }
  free(out);
  free(ref);
  free(pq);
  return found;
}

/* Rows of small whole numbers, some duplicated (ties). */
static unsigned char *make_rows(int dtype, int bits, size_t *row_bytes,
                                size_t dim) {
  size_t rb = bits ? dim : dim * (size_t)npk_dtype_size(dtype);
  unsigned char *p = malloc(rb * ROWS);
  for (size_t r = 0; r < ROWS; r++) {
    for (size_t i = 0; i < dim; i++) {
      if (bits) p[r * rb + i] = dtype == NPK_BOOL ? (unsigned char)rnd(2)
                                                  : (unsigned char)rnd(256);
      else set_elem(p + r * rb, dtype, i, rnd(13) - (dtype == NPK_UINT8 ? 0 : 6));
    }
  }
  /* Exact ties: rows 5, 77 and 600 are the same as row 300. */
  memcpy(p + 5 * rb, p + 300 * rb, rb);
  memcpy(p + 77 * rb, p + 300 * rb, rb);
  memcpy(p + 600 * rb, p + 300 * rb, rb);
  /* An all-zero row (cosine and jaccard's special case). */
  memset(p + 9 * rb, 0, rb);
  *row_bytes = rb;
  return p;
}

static void t_metric_names(void) {
  CHECK_EQ(npk_knn_metric_from_name("L2"), NPK_KNN_L2);
  CHECK_EQ(npk_knn_metric_from_name("cosine"), NPK_KNN_COSINE);
  CHECK_EQ(npk_knn_metric_from_name("manhattan"), -1);
  CHECK(npk_knn_metric_needs(NPK_KNN_L2, NPK_INT8) == 0);
  CHECK(npk_knn_metric_needs(NPK_KNN_L2, NPK_INT32) != 0);
  CHECK(npk_knn_metric_needs(NPK_KNN_L2, NPK_BOOL) != 0);
  CHECK(npk_knn_metric_needs(NPK_KNN_HAMMING, NPK_UINT8) == 0);
  CHECK(npk_knn_metric_needs(NPK_KNN_HAMMING, NPK_BOOL) == 0);
  CHECK_HAS(npk_knn_metric_needs(NPK_KNN_JACCARD, NPK_FLOAT32), "uint8");
  CHECK_EQ(npk_knn_default_metric(NPK_BOOL), NPK_KNN_HAMMING);
  CHECK_EQ(npk_knn_default_metric(NPK_FLOAT16), NPK_KNN_L2);
}

/* Every metric x dtype x ISA, whole array, with deletions, ranges, lists,
** k beyond the rows, and one or two threads. */
static void t_search_matrix(void) {
  uint64_t live[(ROWS + 63) / 64];
  uint64_t only[50];
  for (size_t w = 0; w < sizeof live / sizeof live[0]; w++) live[w] = ~(uint64_t)0;
  for (int r = 0; r < ROWS; r += 7) live[r / 64] &= ~((uint64_t)1 << (r % 64));
  live[128 / 64] = 0; /* a whole word of deleted rows */
  for (int i = 0; i < 50; i++) only[i] = (uint64_t)(i * 13 + 1);
  for (size_t ii = 0; ii < sizeof isas / sizeof isas[0]; ii++) {
    if (!npk_knn_set_isa(isas[ii])) continue;
    for (int metric = 0; metric < NPK_KNN_NMETRIC; metric++) {
      int bits = metric == NPK_KNN_HAMMING || metric == NPK_KNN_JACCARD;
      int ndt = bits ? 2 : 5;
      for (int di = 0; di < ndt; di++) {
        int dtype = bits ? (di ? NPK_BOOL : NPK_UINT8) : dtypes[di];
        size_t rb, dim = bits && dtype == NPK_UINT8 ? 9 : DIM;
        unsigned char *data = make_rows(dtype, bits, &rb, dim);
        unsigned char *q = malloc(rb);
        NpkKnnScan s;
        memcpy(q, data + 300 * rb, rb);
        if (bits) q[0] ^= 1;
        else set_elem(q, dtype, 0, 3);
        memset(&s, 0, sizeof s);
        s.dtype = dtype;
        s.metric = metric;
        s.dim = dim;
        s.row_bytes = rb;
        s.base = data;
        s.rows = ROWS;
        s.hi = ROWS;
        check_search(&s, data, q, 10);
        CHECK_EQ(check_search(&s, data, q, 100000), ROWS);
        s.live = live;
        check_search(&s, data, q, 25);
        s.threads = 2;
        check_search(&s, data, q, 25);
        s.threads = 3;
        check_search(&s, data, q, 1);
        s.lo = 70;
        s.hi = 400;
        check_search(&s, data, q, 40);
        s.only = only;
        s.n_only = 50;
        check_search(&s, data, q, 7);
        s.lo = 0;
        s.hi = ROWS;
        check_search(&s, data, q, 1000);
        /* Through the row callback. */
        s.only = 0;
        s.base = 0;
        rows_data = data;
        s.row_at = row_at;
        s.arg = (void *)(uintptr_t)rb;
        check_search(&s, data, q, 30);
        free(q);
        free(data);
      }
    }
  }
  npk_knn_set_isa("portable");
  npk_knn_set_isa("avx2");
  npk_knn_set_isa("avx512");
  npk_knn_set_isa("avx512bf16");
}

/* Ties are broken by the smaller row, across threads too. */
static void t_ties(void) {
  float rows[256 * 4];
  uint64_t only[3] = {200, 3, 100};
  float q[4] = {0, 0, 0, 0};
  NpkKnnScan s;
  NpkKnnHit out[256];
  size_t found;
  for (int r = 0; r < 256; r++)
    for (int i = 0; i < 4; i++) rows[r * 4 + i] = (float)(r % 3);
  memset(&s, 0, sizeof s);
  s.dtype = NPK_FLOAT32;
  s.metric = NPK_KNN_L2SQ;
  s.dim = 4;
  s.row_bytes = 16;
  s.base = (const unsigned char *)rows;
  s.rows = s.hi = 256;
  s.threads = 4;
  CHECK(npk_knn_search(&s, q, 1, 5, out, &found) == NPK_OK);
  CHECK_EQ(found, 5);
  CHECK_EQ(out[0].row, 0);
  CHECK_EQ(out[1].row, 3);
  CHECK_EQ(out[4].row, 12);
  CHECK(out[4].dist == 0);
  /* Unsorted lists are the caller's fault; sorted ones work. */
  only[0] = 3;
  only[1] = 100;
  only[2] = 200;
  s.only = only;
  s.n_only = 3;
  CHECK(npk_knn_search(&s, q, 1, 2, out, &found) == NPK_OK);
  CHECK_EQ(found, 2);
  CHECK_EQ(out[0].row, 3);
  CHECK_EQ(out[1].row, 100);
  CHECK(out[1].dist == 4);
}

/* Several queries at once give what each gives alone. */
static void t_multi_query(void) {
  size_t rb;
  unsigned char *data = make_rows(NPK_FLOAT32, 0, &rb, DIM);
  float qs[3 * DIM];
  NpkKnnScan s;
  NpkKnnHit many[3 * 8], one[8];
  size_t found;
  for (int i = 0; i < 3 * DIM; i++) qs[i] = (float)(rnd(13) - 6);
  memset(&s, 0, sizeof s);
  s.dtype = NPK_FLOAT32;
  s.metric = NPK_KNN_COSINE;
  s.dim = DIM;
  s.row_bytes = rb;
  s.base = data;
  s.rows = s.hi = ROWS;
  s.threads = 2;
  CHECK(npk_knn_search(&s, qs, 3, 8, many, &found) == NPK_OK);
  CHECK_EQ(found, 8);
  for (int qi = 0; qi < 3; qi++) {
    CHECK(npk_knn_search(&s, qs + qi * DIM, 1, 8, one, &found) == NPK_OK);
    for (int i = 0; i < 8; i++) {
      CHECK_EQ(one[i].row, many[qi * 8 + i].row);
      CHECK(one[i].dist == many[qi * 8 + i].dist);
    }
  }
  free(data);
}

/* A batch of l2 queries gives the same rows and distances as each query
** alone, for every type and every kernel build (the bfloat16 batch
** kernel too), on random (not whole) numbers, with deletions,
** ties, threads and a row holding NaN; with 4 queries (half a block of
** the batch kernels), 11 (a partial block) and 21 (a full block and half
** of one). */
static void t_batch(void) {
  static const int fdt[] = {NPK_FLOAT32, NPK_FLOAT16, NPK_INT8, NPK_UINT8};
  uint64_t live[(ROWS + 63) / 64];
  for (size_t w = 0; w < sizeof live / sizeof live[0]; w++)
    live[w] = 0xF7FFFFFFFFFFFFEFull;
  for (size_t ii = 0; ii < sizeof isas / sizeof isas[0]; ii++) {
    if (!npk_knn_set_isa(isas[ii])) continue;
    for (int di = 0; di < 4; di++)
      for (int metric = NPK_KNN_L2; metric <= NPK_KNN_L2SQ; metric++)
        for (int ni = 0; ni < 3; ni++) {
        int dtype = fdt[di], nq = ni == 0 ? 4 : ni == 1 ? 11 : 21;
        size_t item = (size_t)npk_dtype_size(dtype), rb = DIM * item;
        unsigned char *data = malloc(rb * ROWS);
        float *qs = malloc(sizeof(float) * DIM * (size_t)nq);
        NpkKnnHit many[21 * 6], one[6];
        size_t found, f1;
        NpkKnnScan s;
        for (size_t r = 0; r < ROWS; r++)
          for (size_t i = 0; i < DIM; i++) {
            float f = (float)rnd(100000) / 997.0f - 50.0f;
            if (dtype == NPK_FLOAT32) memcpy(data + r * rb + 4 * i, &f, 4);
            else if (dtype == NPK_FLOAT16) {
              unsigned short h = npk_double_to_half(f);
              memcpy(data + r * rb + 2 * i, &h, 2);
            } else data[r * rb + i] = (unsigned char)rnd(256);
          }
        memcpy(data + 40 * rb, data + 41 * rb, rb);  /* a tie */
        if (dtype == NPK_FLOAT32) {
          float nan = NAN;
          memcpy(data + 50 * rb, &nan, 4);
        }
        for (int i = 0; i < DIM * nq; i++)
          qs[i] = (float)rnd(100000) / 997.0f - 50.0f;
        memcpy(qs + 3 * DIM, qs, sizeof(float) * DIM);
        memset(&s, 0, sizeof s);
        s.dtype = dtype;
        s.metric = metric;
        s.dim = DIM;
        s.row_bytes = rb;
        s.base = data;
        s.rows = s.hi = ROWS;
        s.live = live;
        for (int t = 1; t <= 2; t++) {
          s.threads = t;
          CHECK(npk_knn_search(&s, qs, (size_t)nq, 6, many, &found) == NPK_OK);
          CHECK_EQ(found, 6);
          for (int qi = 0; qi < nq; qi++) {
            CHECK(npk_knn_search(&s, qs + qi * DIM, 1, 6, one, &f1) == NPK_OK);
            for (int i = 0; i < 6; i++) {
              CHECK_EQ(one[i].row, many[qi * 6 + i].row);
              CHECK(one[i].dist == many[qi * 6 + i].dist);
            }
          }
        }
        free(qs);
        free(data);
      }
  }
  npk_knn_set_isa("portable");
  npk_knn_set_isa("avx2");
  npk_knn_set_isa("avx512");
  npk_knn_set_isa("avx512bf16");
}

/* A batch whose dot products overflow (a query element of -1e30 against
** rows of 1e10) still returns every row while the top k is not full, as
** one query at a time does: the estimate is -inf there, and no row may
** be passed over before k rows are known. */
static void t_batch_overflow(void) {
  enum { N = 40, D = 8, NQ = 5 };
  float data[N * D], qs[NQ * D];
  NpkKnnHit many[NQ * N], one[N];
  size_t found, f1;
  NpkKnnScan s;
  for (int r = 0; r < N; r++)
    for (int i = 0; i < D; i++) data[r * D + i] = i == 0 ? 1e10f : (float)r;
  for (int i = 0; i < NQ * D; i++) qs[i] = i % D == 0 ? -1e30f : 0.5f;
  memset(&s, 0, sizeof s);
  s.dtype = NPK_FLOAT32;
  s.metric = NPK_KNN_L2SQ;
  s.dim = D;
  s.row_bytes = sizeof(float) * D;
  s.base = (const unsigned char *)data;
  s.rows = s.hi = N;
  s.threads = 1;
  for (size_t ii = 0; ii < sizeof isas / sizeof isas[0]; ii++) {
    if (!npk_knn_set_isa(isas[ii])) continue;
    CHECK(npk_knn_search(&s, qs, NQ, N, many, &found) == NPK_OK);
    CHECK(npk_knn_search(&s, qs, 1, N, one, &f1) == NPK_OK);
    CHECK_EQ(f1, N);
    CHECK_EQ(found, N);
    for (int qi = 0; qi < NQ; qi++)
      for (int i = 0; i < N; i++) CHECK_EQ(many[qi * N + i].row, one[i].row);
  }
  npk_knn_set_isa("portable");
  npk_knn_set_isa("avx2");
  npk_knn_set_isa("avx512");
  npk_knn_set_isa("avx512bf16");
}

/* The scan's STOP: counts its calls and asks to stop from the Nth. */
static int stop_calls, stop_at;
static int stop_after(void *arg) {
  (void)arg;
  return ++stop_calls >= stop_at;
}

/* A search asks STOP every few thousand rows, in the calling thread, and
** stops with NPK_INTERRUPT when told to, in one thread or several, over
** ranges, rowid lists and batches of queries; never told, it finishes. */
static void t_stop(void) {
  enum { N = 200000, D = 16, NQ = 8, K = 5 };
  float *data = malloc(sizeof(float) * N * D), qs[NQ * D];
  NpkKnnHit *hits = malloc(sizeof *hits * NQ * K);
  uint64_t *only = malloc(sizeof *only * (N / 2));
  size_t found;
  NpkKnnScan s;
  CHECK(data && hits && only);
  if (!data || !hits || !only) goto done;
  for (size_t i = 0; i < (size_t)N * D; i++) data[i] = (float)(i % 97);
  for (int i = 0; i < NQ * D; i++) qs[i] = (float)(i % 13);
  for (int i = 0; i < N / 2; i++) only[i] = 2 * (uint64_t)i;
  memset(&s, 0, sizeof s);
  s.dtype = NPK_FLOAT32;
  s.metric = NPK_KNN_L2;
  s.dim = D;
  s.row_bytes = sizeof(float) * D;
  s.base = (const unsigned char *)data;
  s.rows = s.hi = N;
  s.stop = stop_after;
  for (int threads = 1; threads <= 2; threads++)
    for (int list = 0; list <= 1; list++)
      for (size_t nq = 1; nq <= NQ; nq += NQ - 1) {
        s.threads = threads;
        s.only = list ? only : NULL;
        s.n_only = list ? N / 2 : 0;
        stop_calls = 0;
        stop_at = 3;
        CHECK_EQ(npk_knn_search(&s, qs, nq, K, hits, &found), NPK_INTERRUPT);
        CHECK_EQ(stop_calls, 3);
        stop_calls = 0;
        stop_at = 1 << 30;
        CHECK_EQ(npk_knn_search(&s, qs, nq, K, hits, &found), NPK_OK);
        CHECK_EQ(found, K);
        CHECK(stop_calls >= 1);
      }
done:
  free(data);
  free(hits);
  free(only);
}

/* A row holding NaN ranks last. */
static void t_nan(void) {
  float rows[3 * 2] = {1, 1, NAN, 0, 2, 2};
  float q[2] = {0, 0};
  NpkKnnScan s;
  NpkKnnHit out[3];
  size_t found;
  memset(&s, 0, sizeof s);
  s.dtype = NPK_FLOAT32;
  s.metric = NPK_KNN_L2;
  s.dim = 2;
  s.row_bytes = 8;
  s.base = (const unsigned char *)rows;
  s.rows = s.hi = 3;
  CHECK(npk_knn_search(&s, q, 1, 3, out, &found) == NPK_OK);
  CHECK_EQ(found, 3);
  CHECK_EQ(out[0].row, 0);
  CHECK_EQ(out[1].row, 2);
  CHECK_EQ(out[2].row, 1);
  CHECK(isinf(out[2].dist));
}

static void t_parse(void) {
  void *p;
  size_t nq;
  NpkErr err;
  unsigned char img[256];
  uint64_t shape[2] = {2, 3};
  size_t h;
  float f[6] = {1, 2, 3, 4, 5, 6};
  /* JSON. */
  CHECK(npk_knn_parse("[1, -2.5e0, 3]", 14, 1, NPK_FLOAT32, NPK_KNN_L2, 3, 1,
                      &p, &nq, &err) == NPK_OK);
  CHECK_EQ(nq, 1);
  CHECK(((float *)p)[1] == -2.5f);
  free(p);
  CHECK(npk_knn_parse(" [[1,2,3],[4,5,6]] ", 19, 1, NPK_FLOAT64, NPK_KNN_DOT,
                      3, 0, &p, &nq, &err) == NPK_OK);
  CHECK_EQ(nq, 2);
  CHECK(((double *)p)[5] == 6);
  free(p);
  CHECK(npk_knn_parse("[[1,2,3]]", 9, 1, NPK_FLOAT32, NPK_KNN_L2, 3, 1, &p,
                      &nq, &err) == NPK_ERROR);
  CHECK_HAS(err.msg, "one vector");
  CHECK(p == 0);
  CHECK(npk_knn_parse("[1,2]", 5, 1, NPK_FLOAT32, NPK_KNN_L2, 3, 1, &p, &nq,
                      &err) == NPK_ERROR);
  CHECK_HAS(err.msg, "the query has 2 elements, the rows have 3");
  CHECK(npk_knn_parse("[1,2,x]", 7, 1, NPK_FLOAT32, NPK_KNN_L2, 3, 1, &p, &nq,
                      &err) == NPK_ERROR);
  CHECK_HAS(err.msg, "list of numbers");
  CHECK(npk_knn_parse("[1,2,3] 4", 9, 1, NPK_FLOAT32, NPK_KNN_L2, 3, 1, &p,
                      &nq, &err) == NPK_ERROR);
  CHECK_HAS(err.msg, "after its end");
  CHECK(npk_knn_parse("[1,2,1e300]", 11, 1, NPK_FLOAT32, NPK_KNN_L2, 3, 1, &p,
                      &nq, &err) == NPK_ERROR);
  CHECK_HAS(err.msg, "too large for float32");
  CHECK(npk_knn_parse("[1,2,256]", 9, 1, NPK_UINT8, NPK_KNN_HAMMING, 3, 1, &p,
                      &nq, &err) == NPK_ERROR);
  CHECK_HAS(err.msg, "0 to 255");
  CHECK(npk_knn_parse("[true,false]", 12, 1, NPK_BOOL, NPK_KNN_HAMMING, 2, 1,
                      &p, &nq, &err) == NPK_OK);
  CHECK(((unsigned char *)p)[0] == 1 && ((unsigned char *)p)[1] == 0);
  free(p);
  /* Raw rows of the dtype. */
  CHECK(npk_knn_parse(f, 12, 0, NPK_FLOAT32, NPK_KNN_L2, 3, 1, &p, &nq, &err) == NPK_OK);
  free(p);
  CHECK(npk_knn_parse(f, 8, 0, NPK_FLOAT32, NPK_KNN_L2, 3, 1, &p, &nq, &err) == NPK_ERROR);
  CHECK_HAS(err.msg, "the query BLOB has 8 bytes; a float32 row of 3 elements has 12");
  CHECK(npk_knn_parse(f, 24, 0, NPK_FLOAT32, NPK_KNN_L2, 3, 0, &p, &nq, &err) == NPK_OK);
  CHECK_EQ(nq, 2);
  free(p);
  /* .npy of another dtype, one or several vectors. */
  h = npk_npy_header(NPK_FLOAT32, 2, shape, img, sizeof img);
  memcpy(img + h, f, sizeof f);
  CHECK(npk_knn_parse(img, h + sizeof f, 0, NPK_INT8, NPK_KNN_L2, 3, 0, &p,
                      &nq, &err) == NPK_OK);
  CHECK_EQ(nq, 2);
  CHECK(((float *)p)[3] == 4);
  free(p);
  CHECK(npk_knn_parse(img, h + sizeof f, 0, NPK_INT8, NPK_KNN_L2, 3, 1, &p,
                      &nq, &err) == NPK_ERROR);
  CHECK_HAS(err.msg, "one is needed");
  CHECK(npk_knn_parse(img, h + sizeof f, 0, NPK_INT8, NPK_KNN_L2, 2, 0, &p,
                      &nq, &err) == NPK_ERROR);
  CHECK_HAS(err.msg, "the rows have 2 elements");
  CHECK(npk_knn_parse(img, h + 3, 0, NPK_INT8, NPK_KNN_L2, 2, 0, &p, &nq, &err) == NPK_ERROR);
  CHECK_HAS(err.msg, "not a valid .npy");
}

static void t_distance(void) {
  float a[3] = {1, 2, 2}, b[3] = {0, 0, 0}, c[3] = {2, 4, 4};
  unsigned char x[2] = {0xff, 0x0f}, y[2] = {0x0f, 0x0f};
  CHECK(npk_knn_distance(NPK_FLOAT32, NPK_KNN_L2, 3, a, b) == 3);
  CHECK(npk_knn_distance(NPK_FLOAT32, NPK_KNN_L2SQ, 3, a, b) == 9);
  CHECK(npk_knn_distance(NPK_FLOAT32, NPK_KNN_DOT, 3, a, c) == -18);
  CHECK(fabs(npk_knn_distance(NPK_FLOAT16, NPK_KNN_COSINE, 3, a, c)) < 1e-7);
  CHECK(npk_knn_distance(NPK_FLOAT32, NPK_KNN_COSINE, 3, a, b) == 1);
  CHECK(npk_knn_distance(NPK_UINT8, NPK_KNN_HAMMING, 2, x, y) == 4);
  CHECK(npk_knn_distance(NPK_UINT8, NPK_KNN_JACCARD, 2, x, y) == 1 - 8.0 / 12);
}

int main(void) {
  RUN(t_metric_names);
  RUN(t_search_matrix);
  RUN(t_ties);
  RUN(t_multi_query);
  RUN(t_batch);
  RUN(t_batch_overflow);
  RUN(t_stop);
  RUN(t_nan);
  RUN(t_parse);
  RUN(t_distance);
  printf("kernels: %s\n", npk_knn_isa());
  return CTEST_END();
}
