/*
** knn.c — exact k-nearest-neighbour search (knn.h).
**
** A query is answered by one pass over the candidate rows, which are read
** where they lie (the store's mapping): the time is the time to stream the
** array's bytes through the CPU, so the kernels must keep up with memory.
** Each kernel computes the distances of a block of consecutive rows to one
** query; three builds of every kernel exist (portable C, AVX2+FMA+F16C,
** AVX-512F) and the best one the CPU runs is picked once, at the first
** search.  Candidates go through a max-heap of k entries (bounded
** selection: O(n log k), never a sort of n distances).  Large arrays are
** split into one row range per core, each thread keeping its own heaps;
** the threads start and end within the call, and their heaps are merged.
**
** Several queries at once (numpack_knn) read each block of rows once and
** compute it against every query while it is in the cache, sixteen
** queries per vector (float32, or bfloat16 where the CPU has its dot
** products), as a filter: the exact kernels decide what enters a top k.
*/
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "knn.h"
#include "npy.h"
#include "store.h"
#include "store_int.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define NPK_KNN_X86 1
#include <immintrin.h>
#endif

/* ---- metrics --------------------------------------------------------- */

static const char *const metric_names[NPK_KNN_NMETRIC] = {
    "l2", "l2sq", "cosine", "dot", "hamming", "jaccard"};

int npk_knn_metric_from_name(const char *name) {
  for (int i = 0; name && i < NPK_KNN_NMETRIC; i++)
    if (strcasecmp(name, metric_names[i]) == 0) return i;
  return -1;
}

const char *npk_knn_metric_name(int metric) {
  return metric >= 0 && metric < NPK_KNN_NMETRIC ? metric_names[metric] : "?";
}

const char *npk_knn_metric_list(void) {
  return "l2, l2sq, cosine, dot, hamming, jaccard";
}

static int is_bits(int metric) {
  return metric == NPK_KNN_HAMMING || metric == NPK_KNN_JACCARD;
}

const char *npk_knn_metric_needs(int metric, int dtype) {
  if (is_bits(metric))
    return dtype == NPK_UINT8 || dtype == NPK_BOOL
               ? 0
               : "uint8 (packed bits) or bool rows";
  switch (dtype) {
    case NPK_FLOAT32:
    case NPK_FLOAT64:
    case NPK_FLOAT16:
    case NPK_INT8:
    case NPK_UINT8: return 0;
  }
  return "float32, float64, float16, int8 or uint8 rows";
}

int npk_knn_default_metric(int dtype) {
  return dtype == NPK_BOOL ? NPK_KNN_HAMMING : NPK_KNN_L2;
}

size_t npk_knn_query_item(int dtype, int metric) {
  if (is_bits(metric)) return 1;
  return dtype == NPK_FLOAT64 ? 8 : 4;
}

/* ---- element access -------------------------------------------------- */

/* IEEE half to float, exactly (every half is a float). */
static inline float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff, bits;
  float f;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else if (exp) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man) {
    /* Subnormal: the value is man * 2^-24. */
    f = (float)man * (1.0f / 16777216.0f);
    return sign ? -f : f;
  } else {
    bits = sign;
  }
  memcpy(&f, &bits, 4);
  return f;
}

static inline float ld_f32(const unsigned char *x, size_t i) {
  float f;
  memcpy(&f, x + 4 * i, 4);
  return f;
}
static inline float ld_f16(const unsigned char *x, size_t i) {
  uint16_t h;
  memcpy(&h, x + 2 * i, 2);
  return half_to_float(h);
}
static inline float ld_i8(const unsigned char *x, size_t i) {
  return (float)(int8_t)x[i];
}
static inline float ld_u8(const unsigned char *x, size_t i) {
  return (float)x[i];
}
static inline double ld_f64(const unsigned char *x, size_t i) {
  double f;
  memcpy(&f, x + 8 * i, 8);
  return f;
}

/* ---- kernels --------------------------------------------------------- */

/* Distances of N rows (STRIDE bytes apart, from X) to query Q of D
** elements: OUT[r] gets the squared L2 distance, the dot product, or (the
** "dotnorm" kernels, for cosine) the dot product with the row's squared
** norm in OUT2[r].  Bit kernels take D bytes and give hamming or jaccard. */
typedef void (*KnnKernel)(const unsigned char *x, size_t n, size_t stride,
                          const void *q, size_t d, double *out, double *out2);

/* Which of sixteen queries eight rows may be near (see dots8x16_avx512).
** X and QT are floats, or bfloat16 pairs for the bf16 kernel; N is the
** number of elements (of pairs) per row. */
typedef void (*KnnDots8)(const void *const *x, size_t n, const void *qt,
                         const float *lim, const float *b, uint16_t *cand);

#define K_L2SQ    0
#define K_DOT     1
#define K_DOTNORM 2

/* Portable kernels: four independent sums per row, so that the compiler
** may keep them in one vector register. */
#define PORTABLE_KERNELS(T, LD, ACC)                                           \
  static void l2sq_##T##_c(const unsigned char *x, size_t n, size_t stride,    \
                           const void *qv, size_t d, double *out,              \
                           double *out2) {                                     \
    const ACC *q = qv;                                                         \
    (void)out2;                                                                \
    for (size_t r = 0; r < n; r++, x += stride) {                              \
      ACC a[4] = {0, 0, 0, 0};                                                 \
      size_t i = 0;                                                            \
      for (; i + 4 <= d; i += 4)                                               \
        for (int j = 0; j < 4; j++) {                                          \
          ACC t = LD(x, i + j) - q[i + j];                                     \
          a[j] += t * t;                                                       \
        }                                                                      \
      for (; i < d; i++) {                                                     \
        ACC t = LD(x, i) - q[i];                                               \
        a[0] += t * t;                                                         \
      }                                                                        \
      out[r] = (a[0] + a[1]) + (a[2] + a[3]);                                  \
    }                                                                          \
  }                                                                            \
  static void dot_##T##_c(const unsigned char *x, size_t n, size_t stride,     \
                          const void *qv, size_t d, double *out,               \
                          double *out2) {                                      \
    const ACC *q = qv;                                                         \
    (void)out2;                                                                \
    for (size_t r = 0; r < n; r++, x += stride) {                              \
      ACC a[4] = {0, 0, 0, 0};                                                 \
      size_t i = 0;                                                            \
      for (; i + 4 <= d; i += 4)                                               \
        for (int j = 0; j < 4; j++) a[j] += LD(x, i + j) * q[i + j];           \
      for (; i < d; i++) a[0] += LD(x, i) * q[i];                              \
      out[r] = (a[0] + a[1]) + (a[2] + a[3]);                                  \
    }                                                                          \
  }                                                                            \
  static void dotnorm_##T##_c(const unsigned char *x, size_t n, size_t stride, \
                              const void *qv, size_t d, double *out,           \
                              double *out2) {                                  \
    const ACC *q = qv;                                                         \
    for (size_t r = 0; r < n; r++, x += stride) {                              \
      ACC a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};                            \
      size_t i = 0;                                                            \
      for (; i + 4 <= d; i += 4)                                               \
        for (int j = 0; j < 4; j++) {                                          \
          ACC e = LD(x, i + j);                                                \
          a[j] += e * q[i + j];                                                \
          b[j] += e * e;                                                       \
        }                                                                      \
      for (; i < d; i++) {                                                     \
        ACC e = LD(x, i);                                                      \
        a[0] += e * q[i];                                                      \
        b[0] += e * e;                                                         \
      }                                                                        \
      out[r] = (a[0] + a[1]) + (a[2] + a[3]);                                  \
      out2[r] = (b[0] + b[1]) + (b[2] + b[3]);                                 \
    }                                                                          \
  }

PORTABLE_KERNELS(f32, ld_f32, float)
PORTABLE_KERNELS(f16, ld_f16, float)
PORTABLE_KERNELS(i8, ld_i8, float)
PORTABLE_KERNELS(u8, ld_u8, float)
PORTABLE_KERNELS(f64, ld_f64, double)

/* Bit kernels, built twice: plain, and with the popcnt instruction. */
#define BIT_KERNELS(SUFFIX, ATTR)                                            \
  static ATTR void hamming_##SUFFIX(const unsigned char *x, size_t n,        \
                                    size_t stride, const void *qv, size_t d, \
                                    double *out, double *out2) {             \
    const unsigned char *q = qv;                                             \
    (void)out2;                                                              \
    for (size_t r = 0; r < n; r++, x += stride) {                            \
      uint64_t c = 0, a, b;                                                  \
      size_t i = 0;                                                          \
      for (; i + 8 <= d; i += 8) {                                           \
        memcpy(&a, x + i, 8);                                                \
        memcpy(&b, q + i, 8);                                                \
        c += (uint64_t)__builtin_popcountll(a ^ b);                          \
      }                                                                      \
      for (; i < d; i++) c += (uint64_t)__builtin_popcount(x[i] ^ q[i]);     \
      out[r] = (double)c;                                                    \
    }                                                                        \
  }                                                                          \
  static ATTR void jaccard_##SUFFIX(const unsigned char *x, size_t n,        \
                                    size_t stride, const void *qv, size_t d, \
                                    double *out, double *out2) {             \
    const unsigned char *q = qv;                                             \
    (void)out2;                                                              \
    for (size_t r = 0; r < n; r++, x += stride) {                            \
      uint64_t in = 0, un = 0, a, b;                                         \
      size_t i = 0;                                                          \
      for (; i + 8 <= d; i += 8) {                                           \
        memcpy(&a, x + i, 8);                                                \
        memcpy(&b, q + i, 8);                                                \
        in += (uint64_t)__builtin_popcountll(a & b);                         \
        un += (uint64_t)__builtin_popcountll(a | b);                         \
      }                                                                      \
      for (; i < d; i++) {                                                   \
        in += (uint64_t)__builtin_popcount(x[i] & q[i]);                     \
        un += (uint64_t)__builtin_popcount(x[i] | q[i]);                     \
      }                                                                      \
      out[r] = un ? 1.0 - (double)in / (double)un : 0.0;                     \
    }                                                                        \
  }

BIT_KERNELS(c, )

#ifdef NPK_KNN_X86
#define NPK_AVX2   __attribute__((target("avx2,fma,f16c,popcnt")))
#define NPK_AVX512 __attribute__((target("avx512f,avx2,fma,f16c,popcnt")))
#define NPK_AVX512BF16 \
  __attribute__((target("avx512f,avx512bf16,avx2,fma,f16c,popcnt")))

BIT_KERNELS(popcnt, __attribute__((target("popcnt"))))

/* Eight elements of each type as floats (AVX2), sixteen (AVX-512). */
#define A2_F32(x, i) \
  _mm256_loadu_ps((const float *)(const void *)((x) + 4 * (i)))
#define A2_F16(x, i) \
  _mm256_cvtph_ps(   \
      _mm_loadu_si128((const __m128i *)(const void *)((x) + 2 * (i))))
#define A2_I8(x, i)                        \
  _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32( \
      _mm_loadl_epi64((const __m128i *)(const void *)((x) + (i)))))
#define A2_U8(x, i)                        \
  _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32( \
      _mm_loadl_epi64((const __m128i *)(const void *)((x) + (i)))))
#define A5_F32(x, i) _mm512_loadu_ps((const void *)((x) + 4 * (i)))
#define A5_F16(x, i) \
  _mm512_cvtph_ps(   \
      _mm256_loadu_si256((const __m256i *)(const void *)((x) + 2 * (i))))
#define A5_I8(x, i)                        \
  _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32( \
      _mm_loadu_si128((const __m128i *)(const void *)((x) + (i)))))
#define A5_U8(x, i)                        \
  _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32( \
      _mm_loadu_si128((const __m128i *)(const void *)((x) + (i)))))

static NPK_AVX2 inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

static NPK_AVX2 inline double hsum256d(__m256d v) {
  __m128d s =
      _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* One kernel family per ISA: W lanes, vector type V, LOAD of W elements,
** SUB/FMA/ZERO/HSUM intrinsics; the tail (d mod W) is done one by one. */
#define SIMD_KERNELS(T, ISA, ATTR, W, V, LOAD, LDS, ZERO, SUB, FMA, ADD, HSUM) \
  static ATTR void l2sq_##T##_##ISA(const unsigned char *x, size_t n,          \
                                    size_t stride, const void *qv, size_t d,   \
                                    double *out, double *out2) {               \
    const float *q = qv;                                                       \
    (void)out2;                                                                \
    for (size_t r = 0; r < n; r++, x += stride) {                              \
      V a0 = ZERO(), a1 = ZERO();                                              \
      size_t i = 0;                                                            \
      float s;                                                                 \
      for (; i + 2 * W <= d; i += 2 * W) {                                     \
        V t0 = SUB(LOAD(x, i), LDS(q + i));                                    \
        V t1 = SUB(LOAD(x, i + W), LDS(q + i + W));                            \
        a0 = FMA(t0, t0, a0);                                                  \
        a1 = FMA(t1, t1, a1);                                                  \
      }                                                                        \
      if (i + W <= d) {                                                        \
        V t0 = SUB(LOAD(x, i), LDS(q + i));                                    \
        a0 = FMA(t0, t0, a0);                                                  \
        i += W;                                                                \
      }                                                                        \
      s = HSUM(ADD(a0, a1));                                                   \
      for (; i < d; i++) {                                                     \
        float t = ld_##T(x, i) - q[i];                                         \
        s += t * t;                                                            \
      }                                                                        \
      out[r] = s;                                                              \
    }                                                                          \
  }                                                                            \
  static ATTR void dot_##T##_##ISA(const unsigned char *x, size_t n,           \
                                   size_t stride, const void *qv, size_t d,    \
                                   double *out, double *out2) {                \
    const float *q = qv;                                                       \
    (void)out2;                                                                \
    for (size_t r = 0; r < n; r++, x += stride) {                              \
      V a0 = ZERO(), a1 = ZERO();                                              \
      size_t i = 0;                                                            \
      float s;                                                                 \
      for (; i + 2 * W <= d; i += 2 * W) {                                     \
        a0 = FMA(LOAD(x, i), LDS(q + i), a0);                                  \
        a1 = FMA(LOAD(x, i + W), LDS(q + i + W), a1);                          \
      }                                                                        \
      if (i + W <= d) {                                                        \
        a0 = FMA(LOAD(x, i), LDS(q + i), a0);                                  \
        i += W;                                                                \
      }                                                                        \
      s = HSUM(ADD(a0, a1));                                                   \
      for (; i < d; i++) s += ld_##T(x, i) * q[i];                             \
      out[r] = s;                                                              \
    }                                                                          \
  }                                                                            \
  static ATTR void dotnorm_##T##_##ISA(const unsigned char *x, size_t n,       \
                                       size_t stride, const void *qv,          \
                                       size_t d, double *out, double *out2) {  \
    const float *q = qv;                                                       \
    for (size_t r = 0; r < n; r++, x += stride) {                              \
      V a = ZERO(), b = ZERO();                                                \
      size_t i = 0;                                                            \
      float s, t;                                                              \
      for (; i + W <= d; i += W) {                                             \
        V e = LOAD(x, i);                                                      \
        a = FMA(e, LDS(q + i), a);                                             \
        b = FMA(e, e, b);                                                      \
      }                                                                        \
      s = HSUM(a);                                                             \
      t = HSUM(b);                                                             \
      for (; i < d; i++) {                                                     \
        float e = ld_##T(x, i);                                                \
        s += e * q[i];                                                         \
        t += e * e;                                                            \
      }                                                                        \
      out[r] = s;                                                              \
      out2[r] = t;                                                             \
    }                                                                          \
  }

#define AVX2_KERNELS(T, LOAD)                                       \
  SIMD_KERNELS(T, avx2, NPK_AVX2, 8, __m256, LOAD, _mm256_loadu_ps, \
               _mm256_setzero_ps, _mm256_sub_ps, _mm256_fmadd_ps,   \
               _mm256_add_ps, hsum256)
#define AVX512_KERNELS(T, LOAD)                                          \
  SIMD_KERNELS(T, avx512, NPK_AVX512, 16, __m512, LOAD, _mm512_loadu_ps, \
               _mm512_setzero_ps, _mm512_sub_ps, _mm512_fmadd_ps,        \
               _mm512_add_ps, _mm512_reduce_add_ps)

AVX2_KERNELS(f32, A2_F32)
AVX2_KERNELS(f16, A2_F16)
AVX2_KERNELS(i8, A2_I8)
AVX2_KERNELS(u8, A2_U8)
AVX512_KERNELS(f32, A5_F32)
AVX512_KERNELS(f16, A5_F16)
AVX512_KERNELS(i8, A5_I8)
AVX512_KERNELS(u8, A5_U8)

/* The candidates of eight rows whose dot products with sixteen queries
** are in a0..a7 (see below), with L holding LIM: the same ending for the
** float32 and the bfloat16 kernel. */
#define CAND5(r, a)                                                \
  cand[r] = (uint16_t)_mm512_cmp_ps_mask(                          \
      _mm512_add_ps(a, a), _mm512_add_ps(l, _mm512_set1_ps(b[r])), \
      _CMP_NLE_UQ)
#define CANDS8X16() \
  do {              \
    CAND5(0, a0);   \
    CAND5(1, a1);   \
    CAND5(2, a2);   \
    CAND5(3, a3);   \
    CAND5(4, a4);   \
    CAND5(5, a5);   \
    CAND5(6, a6);   \
    CAND5(7, a7);   \
  } while (0)

/* The batch path's kernels (see knn_batch).  The queries are laid out
** sixteen to a block, element-major: QT[16 * i + j] is element i of query
** j, so that one vector holds one element of sixteen queries and no
** horizontal sums are needed.  For eight rows X[0..7] (D floats each) the
** dot products with the block's sixteen queries are accumulated with one
** multiply-add per row and element, the row's element broadcast; then
** CAND[r] gets the queries (bit j = query j) for which row r is still a
** candidate: 2 x.q > B[r] + LIM[j], or either side is NaN. */
static NPK_AVX512 void dots8x16_avx512(const void *const *x, size_t d,
                                       const void *qtv, const float *lim,
                                       const float *b, uint16_t *cand) {
  const float *qt = qtv;
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0,
         a6 = a0, a7 = a0, l;
  const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3], *x4 = x[4],
              *x5 = x[5], *x6 = x[6], *x7 = x[7];
  for (size_t i = 0; i < d; i++) {
    __m512 q = _mm512_loadu_ps(qt + 16 * i);
    a0 = _mm512_fmadd_ps(_mm512_set1_ps(x0[i]), q, a0);
    a1 = _mm512_fmadd_ps(_mm512_set1_ps(x1[i]), q, a1);
    a2 = _mm512_fmadd_ps(_mm512_set1_ps(x2[i]), q, a2);
    a3 = _mm512_fmadd_ps(_mm512_set1_ps(x3[i]), q, a3);
    a4 = _mm512_fmadd_ps(_mm512_set1_ps(x4[i]), q, a4);
    a5 = _mm512_fmadd_ps(_mm512_set1_ps(x5[i]), q, a5);
    a6 = _mm512_fmadd_ps(_mm512_set1_ps(x6[i]), q, a6);
    a7 = _mm512_fmadd_ps(_mm512_set1_ps(x7[i]), q, a7);
  }
  l = _mm512_loadu_ps(lim);
  CANDS8X16();
}

/* The same over bfloat16 (8 significant bits) with the CPU's bfloat16 dot
** products: each instruction multiplies two pairs of elements, so twice the
** work of dots8x16_avx512 per instruction.  X[r] and QT hold N pairs
** (element 2p in the low half of pair p); QT has sixteen pairs, one per
** query, for each p.  The rounding to bfloat16 is covered by knn_batch's
** bound. */
static NPK_AVX512BF16 void dots8x16_bf16(const void *const *x, size_t n,
                                         const void *qtv, const float *lim,
                                         const float *b, uint16_t *cand) {
  const uint32_t *qt = qtv;
  const uint32_t *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3], *x4 = x[4],
                 *x5 = x[5], *x6 = x[6], *x7 = x[7];
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0,
         a6 = a0, a7 = a0, l;
#define DP(a, xr) \
  a = _mm512_dpbf16_ps(a, q, (__m512bh)_mm512_set1_epi32((int)xr[p]))
  for (size_t p = 0; p < n; p++) {
    __m512bh q = (__m512bh)_mm512_loadu_si512(qt + 16 * p);
    DP(a0, x0);
    DP(a1, x1);
    DP(a2, x2);
    DP(a3, x3);
    DP(a4, x4);
    DP(a5, x5);
    DP(a6, x6);
    DP(a7, x7);
  }
#undef DP
  l = _mm512_loadu_ps(lim);
  CANDS8X16();
}

#undef CANDS8X16
#undef CAND5

/* D floats at X as bfloat16 pairs (rounded to nearest), zero-padded to
** whole multiples of 32 elements: (D + 31) / 32 * 16 pairs. */
static NPK_AVX512BF16 void to_bf16(const float *x, size_t d, uint32_t *out) {
  for (size_t i = 0; i < d; i += 32) {
    size_t m = d - i;
    __mmask16 lo = m >= 16 ? 0xFFFF : (__mmask16)((1u << m) - 1);
    __mmask16 hi = m >= 32  ? 0xFFFF
                   : m > 16 ? (__mmask16)((1u << (m - 16)) - 1)
                            : 0;
    __m512 a = _mm512_maskz_loadu_ps(lo, x + i);
    __m512 c = _mm512_maskz_loadu_ps(hi, x + i + 16);
    _mm512_storeu_si512(out + i / 2, (__m512i)_mm512_cvtne2ps_pbh(c, a));
  }
}

/* The first eight queries of a block only (the last block of a batch,
** when it holds eight or fewer): half the work of a full block. */
static NPK_AVX2 void dots8x8_avx2(const void *const *x, size_t d,
                                  const void *qtv, const float *lim,
                                  const float *b, uint16_t *cand) {
  const float *qt = qtv;
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0,
         a6 = a0, a7 = a0, l = _mm256_loadu_ps(lim);
  const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3], *x4 = x[4],
              *x5 = x[5], *x6 = x[6], *x7 = x[7];
  for (size_t i = 0; i < d; i++) {
    __m256 q = _mm256_loadu_ps(qt + 16 * i);
    a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(x0 + i), q, a0);
    a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(x1 + i), q, a1);
    a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(x2 + i), q, a2);
    a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(x3 + i), q, a3);
    a4 = _mm256_fmadd_ps(_mm256_broadcast_ss(x4 + i), q, a4);
    a5 = _mm256_fmadd_ps(_mm256_broadcast_ss(x5 + i), q, a5);
    a6 = _mm256_fmadd_ps(_mm256_broadcast_ss(x6 + i), q, a6);
    a7 = _mm256_fmadd_ps(_mm256_broadcast_ss(x7 + i), q, a7);
  }
#define CAND1(r, a)                       \
  cand[r] = (uint16_t)_mm256_movemask_ps( \
      _mm256_cmp_ps(_mm256_add_ps(a, a),  \
                    _mm256_add_ps(l, _mm256_set1_ps(b[r])), _CMP_NLE_UQ))
  CAND1(0, a0);
  CAND1(1, a1);
  CAND1(2, a2);
  CAND1(3, a3);
  CAND1(4, a4);
  CAND1(5, a5);
  CAND1(6, a6);
  CAND1(7, a7);
#undef CAND1
}

/* The same with AVX2: sixteen queries are two vectors, so the eight rows
** go four at a time to stay within the sixteen registers. */
static NPK_AVX2 void dots8x16_avx2(const void *const *x, size_t d,
                                   const void *qtv, const float *lim,
                                   const float *b, uint16_t *cand) {
  const float *qt = qtv;
  __m256 l0 = _mm256_loadu_ps(lim), l1 = _mm256_loadu_ps(lim + 8);
  for (int g = 0; g < 8; g += 4) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00,
           a20 = a00, a21 = a00, a30 = a00, a31 = a00, e;
    const float *x0 = x[g], *x1 = x[g + 1], *x2 = x[g + 2], *x3 = x[g + 3];
    for (size_t i = 0; i < d; i++) {
      __m256 q0 = _mm256_loadu_ps(qt + 16 * i);
      __m256 q1 = _mm256_loadu_ps(qt + 16 * i + 8);
      e = _mm256_broadcast_ss(x0 + i);
      a00 = _mm256_fmadd_ps(e, q0, a00);
      a01 = _mm256_fmadd_ps(e, q1, a01);
      e = _mm256_broadcast_ss(x1 + i);
      a10 = _mm256_fmadd_ps(e, q0, a10);
      a11 = _mm256_fmadd_ps(e, q1, a11);
      e = _mm256_broadcast_ss(x2 + i);
      a20 = _mm256_fmadd_ps(e, q0, a20);
      a21 = _mm256_fmadd_ps(e, q1, a21);
      e = _mm256_broadcast_ss(x3 + i);
      a30 = _mm256_fmadd_ps(e, q0, a30);
      a31 = _mm256_fmadd_ps(e, q1, a31);
    }
#define CAND2(r, a0_, a1_)                                             \
  do {                                                                 \
    __m256 br = _mm256_set1_ps(b[g + r]);                              \
    int m0 = _mm256_movemask_ps(_mm256_cmp_ps(                         \
        _mm256_add_ps(a0_, a0_), _mm256_add_ps(l0, br), _CMP_NLE_UQ)); \
    int m1 = _mm256_movemask_ps(_mm256_cmp_ps(                         \
        _mm256_add_ps(a1_, a1_), _mm256_add_ps(l1, br), _CMP_NLE_UQ)); \
    cand[g + r] = (uint16_t)(m0 | m1 << 8);                            \
  } while (0)
    CAND2(0, a00, a01);
    CAND2(1, a10, a11);
    CAND2(2, a20, a21);
    CAND2(3, a30, a31);
#undef CAND2
  }
}

/* float64 rows: double lanes. */
#define F64_KERNELS(ISA, ATTR, W, V, LOAD, ZERO, SUB, FMA, MUL, ADD, HSUM)    \
  static ATTR void l2sq_f64_##ISA(const unsigned char *x, size_t n,           \
                                  size_t stride, const void *qv, size_t d,    \
                                  double *out, double *out2) {                \
    const double *q = qv;                                                     \
    (void)out2;                                                               \
    for (size_t r = 0; r < n; r++, x += stride) {                             \
      V a = ZERO();                                                           \
      size_t i = 0;                                                           \
      double s;                                                               \
      for (; i + W <= d; i += W) {                                            \
        V t = SUB(LOAD((const void *)(x + 8 * i)), LOAD(q + i));              \
        a = FMA(t, t, a);                                                     \
      }                                                                       \
      s = HSUM(a);                                                            \
      for (; i < d; i++) {                                                    \
        double t = ld_f64(x, i) - q[i];                                       \
        s += t * t;                                                           \
      }                                                                       \
      out[r] = s;                                                             \
    }                                                                         \
  }                                                                           \
  static ATTR void dot_f64_##ISA(const unsigned char *x, size_t n,            \
                                 size_t stride, const void *qv, size_t d,     \
                                 double *out, double *out2) {                 \
    const double *q = qv;                                                     \
    (void)out2;                                                               \
    for (size_t r = 0; r < n; r++, x += stride) {                             \
      V a = ZERO();                                                           \
      size_t i = 0;                                                           \
      double s;                                                               \
      for (; i + W <= d; i += W)                                              \
        a = FMA(LOAD((const void *)(x + 8 * i)), LOAD(q + i), a);             \
      s = HSUM(a);                                                            \
      for (; i < d; i++) s += ld_f64(x, i) * q[i];                            \
      out[r] = s;                                                             \
    }                                                                         \
  }                                                                           \
  static ATTR void dotnorm_f64_##ISA(const unsigned char *x, size_t n,        \
                                     size_t stride, const void *qv, size_t d, \
                                     double *out, double *out2) {             \
    const double *q = qv;                                                     \
    for (size_t r = 0; r < n; r++, x += stride) {                             \
      V a = ZERO(), b = ZERO();                                               \
      size_t i = 0;                                                           \
      double s, t;                                                            \
      for (; i + W <= d; i += W) {                                            \
        V e = LOAD((const void *)(x + 8 * i));                                \
        a = FMA(e, LOAD(q + i), a);                                           \
        b = FMA(e, e, b);                                                     \
      }                                                                       \
      s = HSUM(a);                                                            \
      t = HSUM(b);                                                            \
      for (; i < d; i++) {                                                    \
        double e = ld_f64(x, i);                                              \
        s += e * q[i];                                                        \
        t += e * e;                                                           \
      }                                                                       \
      out[r] = s;                                                             \
      out2[r] = t;                                                            \
    }                                                                         \
  }

F64_KERNELS(avx2, NPK_AVX2, 4, __m256d, _mm256_loadu_pd, _mm256_setzero_pd,
            _mm256_sub_pd, _mm256_fmadd_pd, _mm256_mul_pd, _mm256_add_pd,
            hsum256d)
F64_KERNELS(avx512, NPK_AVX512, 8, __m512d, _mm512_loadu_pd, _mm512_setzero_pd,
            _mm512_sub_pd, _mm512_fmadd_pd, _mm512_mul_pd, _mm512_add_pd,
            _mm512_reduce_add_pd)
#endif /* NPK_KNN_X86 */

/* The kernels of one ISA: [type slot][kind], and the two bit kernels.
** Type slots: float32, float16, int8, uint8, float64. */
typedef struct KnnIsa KnnIsa;
struct KnnIsa {
  const char *name;
  KnnKernel f[5][3];
  KnnKernel hamming, jaccard;
  /* The batch path of l2 and l2sq (knn_batch), or NULL: sixteen
  ** queries at a time, and eight for the last block when that is enough. */
  KnnDots8 dots8, dots8half;
  /* Set when those kernels take bfloat16 pairs: the conversion. */
  void (*to_bf16)(const float *x, size_t d, uint32_t *out);
};

#define FAMILY(T, ISA) \
  { l2sq_##T##_##ISA, dot_##T##_##ISA, dotnorm_##T##_##ISA }

static const KnnIsa isa_portable = {
    "portable",
    {FAMILY(f32, c), FAMILY(f16, c), FAMILY(i8, c), FAMILY(u8, c),
     FAMILY(f64, c)},
    hamming_c,
    jaccard_c,
    0,
    0,
    0};
#ifdef NPK_KNN_X86
static const KnnIsa isa_avx2 = {
    "avx2",
    {FAMILY(f32, avx2), FAMILY(f16, avx2), FAMILY(i8, avx2), FAMILY(u8, avx2),
     FAMILY(f64, avx2)},
    hamming_popcnt,
    jaccard_popcnt,
    dots8x16_avx2,
    dots8x8_avx2,
    0};
static const KnnIsa isa_avx512 = {
    "avx512",
    {FAMILY(f32, avx512), FAMILY(f16, avx512), FAMILY(i8, avx512),
     FAMILY(u8, avx512), FAMILY(f64, avx512)},
    hamming_popcnt,
    jaccard_popcnt,
    dots8x16_avx512,
    dots8x8_avx2,
    0};
/* AVX-512 with bfloat16 dot products: the same kernels, and a batch path
** of twice the arithmetic rate. */
static const KnnIsa isa_avx512bf16 = {
    "avx512bf16",
    {FAMILY(f32, avx512), FAMILY(f16, avx512), FAMILY(i8, avx512),
     FAMILY(u8, avx512), FAMILY(f64, avx512)},
    hamming_popcnt,
    jaccard_popcnt,
    dots8x16_bf16,
    dots8x16_bf16,
    to_bf16};
#endif

static const KnnIsa *isa_used;
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

/* The best ISA the CPU runs, lowered by NUMPACK_KNN_ISA. */
static void isa_pick(void) {
  const char *want = getenv("NUMPACK_KNN_ISA");
  isa_used = &isa_portable;
#ifdef NPK_KNN_X86
  __builtin_cpu_init();
  if (want && strcmp(want, "portable") == 0) return;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("popcnt"))
    isa_used = &isa_avx2;
  if (want && strcmp(want, "avx2") == 0) return;
  if (isa_used == &isa_avx2 && __builtin_cpu_supports("avx512f"))
    isa_used = &isa_avx512;
  if (want && strcmp(want, "avx512") == 0) return;
  if (isa_used == &isa_avx512 && __builtin_cpu_supports("avx512bf16"))
    isa_used = &isa_avx512bf16;
#else
  (void)want;
#endif
}

static const KnnIsa *isa(void) {
  pthread_once(&isa_once, isa_pick);
  return isa_used;
}

const char *npk_knn_isa(void) { return isa()->name; }

int npk_knn_set_isa(const char *name) {
  const KnnIsa *want = 0;
  isa();
  if (strcmp(name, "portable") == 0) want = &isa_portable;
#ifdef NPK_KNN_X86
  if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma") && __builtin_cpu_supports("popcnt"))
    want = &isa_avx2;
  if (strcmp(name, "avx512") == 0 && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma") && __builtin_cpu_supports("popcnt") &&
      __builtin_cpu_supports("avx512f"))
    want = &isa_avx512;
  if (strcmp(name, "avx512bf16") == 0 && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma") && __builtin_cpu_supports("popcnt") &&
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16"))
    want = &isa_avx512bf16;
#endif
  if (!want) return 0;
  isa_used = want;
  return 1;
}

static int type_slot(int dtype) {
  switch (dtype) {
    case NPK_FLOAT16: return 1;
    case NPK_INT8: return 2;
    case NPK_UINT8: return 3;
    case NPK_FLOAT64: return 4;
  }
  return 0;
}

/* The kernel for DTYPE and METRIC. */
static KnnKernel kernel_for(int dtype, int metric) {
  const KnnIsa *k = isa();
  switch (metric) {
    case NPK_KNN_HAMMING: return k->hamming;
    case NPK_KNN_JACCARD: return k->jaccard;
    case NPK_KNN_DOT: return k->f[type_slot(dtype)][K_DOT];
    case NPK_KNN_COSINE: return k->f[type_slot(dtype)][K_DOTNORM];
  }
  return k->f[type_slot(dtype)][K_L2SQ];
}

/* The squared norm of a parsed query, for cosine. */
static double query_norm2(int dtype, uint64_t dim, const void *q) {
  double s = 0;
  for (uint64_t i = 0; i < dim; i++) {
    double e = dtype == NPK_FLOAT64 ? ((const double *)q)[i]
                                    : (double)((const float *)q)[i];
    s += e * e;
  }
  return s;
}

/* The distance from a kernel's outputs OUT (and OUT2) for a query of
** squared norm QN2.  l2 is kept squared while ranking (the order is the
** same) and rooted once for the results. */
static inline double finish(int metric, double out, double out2, double qn2) {
  double d;
  switch (metric) {
    case NPK_KNN_DOT: d = -out; break;
    case NPK_KNN_COSINE:
      d = out2 > 0 && qn2 > 0 ? 1.0 - out / (sqrt(out2) * sqrt(qn2)) : 1.0;
      break;
    default: d = out;
  }
  /* A row holding NaN ranks last rather than breaking the heap. */
  return d == d ? d : INFINITY;
}

double npk_knn_distance(int dtype, int metric, uint64_t dim, const void *a,
                        const void *b) {
  double out = 0, out2 = 0, d;
  if (is_bits(metric)) {
    kernel_for(dtype, metric)(a, 1, 0, b, dim, &out, &out2);
    return out;
  }
  /* A is a parsed vector too: float or double elements. */
  kernel_for(dtype == NPK_FLOAT64 ? NPK_FLOAT64 : NPK_FLOAT32, metric)(
      a, 1, 0, b, dim, &out, &out2);
  d = finish(metric, out, out2, query_norm2(dtype, dim, b));
  return metric == NPK_KNN_L2 ? sqrt(d) : d;
}

/* ---- query parsing --------------------------------------------------- */

static void say(NpkErr *pe, const char *msg) {
  npk_err(pe, NPK_ERROR, "%s", msg);
}

/* Store value V as element I of a parsed vector; 0 if it cannot be. */
static int put_value(unsigned char *dst, size_t i, int dtype, int metric,
                     double v, NpkErr *pe) {
  if (v != v || v == INFINITY || v == -INFINITY) {
    say(pe, "the query holds a value that is not a finite number");
    return 0;
  }
  if (is_bits(metric)) {
    double hi = dtype == NPK_BOOL ? 1 : 255;
    if (v < 0 || v > hi || v != floor(v)) {
      say(pe, dtype == NPK_BOOL ? "a bool query holds only 0 and 1"
                                : "a uint8 query holds whole numbers 0 to 255");
      return 0;
    }
    dst[i] = (unsigned char)v;
  } else if (dtype == NPK_FLOAT64) {
    memcpy(dst + 8 * i, &v, 8);
  } else {
    float f = (float)v;
    if (f == INFINITY || f == -INFINITY) {
      say(pe, "the query holds a value too large for float32");
      return 0;
    }
    memcpy(dst + 4 * i, &f, 4);
  }
  return 1;
}

/* Element I of COUNT elements of an .npy's data as a double, or 0 for
** complex types (refused before). */
static double npy_value(const unsigned char *p, int dtype, uint64_t i) {
  unsigned char b[8];
  size_t sz = (size_t)npk_dtype_size(dtype);
  memcpy(b, p + i * sz, sz);
  switch (dtype) {
    case NPK_BOOL:
    case NPK_UINT8: return b[0];
    case NPK_INT8: return (int8_t)b[0];
    case NPK_UINT16: {
      uint16_t v;
      memcpy(&v, b, 2);
      return v;
    }
    case NPK_INT16: {
      int16_t v;
      memcpy(&v, b, 2);
      return v;
    }
    case NPK_UINT32: {
      uint32_t v;
      memcpy(&v, b, 4);
      return v;
    }
    case NPK_INT32: {
      int32_t v;
      memcpy(&v, b, 4);
      return v;
    }
    case NPK_UINT64: {
      uint64_t v;
      memcpy(&v, b, 8);
      return (double)v;
    }
    case NPK_INT64: {
      int64_t v;
      memcpy(&v, b, 8);
      return (double)v;
    }
    case NPK_FLOAT16: {
      uint16_t v;
      memcpy(&v, b, 2);
      return half_to_float(v);
    }
    case NPK_FLOAT32: {
      float v;
      memcpy(&v, b, 4);
      return v;
    }
    case NPK_FLOAT64: {
      double v;
      memcpy(&v, b, 8);
      return v;
    }
  }
  return 0;
}

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

/* One JSON number at *PP (strict JSON grammar), into *V. */
static int json_number(const char **pp, const char *end, double *v) {
  const char *p = *pp, *s = p;
  char buf[64];
  if (p < end && *p == '-') p++;
  if (p >= end || *p < '0' || *p > '9') return 0;
  if (*p == '0') p++;
  else
    while (p < end && *p >= '0' && *p <= '9') p++;
  if (p < end && *p == '.') {
    p++;
    if (p >= end || *p < '0' || *p > '9') return 0;
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p >= end || *p < '0' || *p > '9') return 0;
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  if ((size_t)(p - s) >= sizeof buf) return 0;
  memcpy(buf, s, (size_t)(p - s));
  buf[p - s] = 0;
  *v = strtod(buf, 0);
  *pp = p;
  return 1;
}

/* A JSON vector "[v, v, ...]" of exactly DIM numbers (true and false are 1
** and 0) at *PP into vector slot DST. */
static int json_vector(const char **pp, const char *end, unsigned char *dst,
                       int dtype, int metric, uint64_t dim, NpkErr *pe) {
  const char *p = skip_ws(*pp, end);
  uint64_t n = 0;
  char msg[160];
  if (p >= end || *p != '[') {
    say(pe, "a JSON query is a list of numbers, e.g. [0.5, 1.0]");
    return 0;
  }
  p = skip_ws(p + 1, end);
  if (p < end && *p == ']') {
    p++;
  } else {
    for (;;) {
      double v;
      p = skip_ws(p, end);
      if (p + 4 <= end && memcmp(p, "true", 4) == 0) {
        v = 1;
        p += 4;
      } else if (p + 5 <= end && memcmp(p, "false", 5) == 0) {
        v = 0;
        p += 5;
      } else if (!json_number(&p, end, &v)) {
        say(pe, "a JSON query is a list of numbers, e.g. [0.5, 1.0]");
        return 0;
      }
      if (n < dim && !put_value(dst, (size_t)n, dtype, metric, v, pe)) return 0;
      n++;
      p = skip_ws(p, end);
      if (p < end && *p == ',') {
        p++;
        continue;
      }
      if (p < end && *p == ']') {
        p++;
        break;
      }
      say(pe, "a JSON query is a list of numbers, e.g. [0.5, 1.0]");
      return 0;
    }
  }
  if (n != dim) {
    snprintf(msg, sizeof msg, "the query has %llu elements, the rows have %llu",
             (unsigned long long)n, (unsigned long long)dim);
    say(pe, msg);
    return 0;
  }
  *pp = p;
  return 1;
}

int npk_knn_parse(const void *in, size_t n, int text, int dtype, int metric,
                  uint64_t dim, size_t maxq, void **pout, size_t *pnq,
                  NpkErr *pe) {
  size_t item = npk_knn_query_item(dtype, metric), rbytes, nq = 0;
  uint64_t row_bytes = dim * (uint64_t)npk_dtype_size(dtype);
  unsigned char *out = 0;
  char msg[200];
  const unsigned char *b = in;

  *pout = 0;
  *pnq = 0;
  pe->rc = NPK_OK;
  pe->msg[0] = 0;
  if (dim == 0 || dim > ((uint64_t)1 << 40) / 8) {
    say(pe, "rows of no elements have no distance");
    return NPK_ERROR;
  }
  rbytes = (size_t)dim * item;
  if (text) {
    const char *p = in, *end = p + n;
    int many;
    p = skip_ws(p, end);
    /* "[[" is a list of vectors, which only a batch accepts. */
    many = p < end && *p == '[' && skip_ws(p + 1, end) < end &&
           *skip_ws(p + 1, end) == '[';
    if (many && maxq == 1) {
      say(pe, "the query is one vector, not a list of vectors");
      return NPK_ERROR;
    }
    if (many) p = skip_ws(p + 1, end);
    for (;;) {
      unsigned char *grown = npk_realloc(out, (nq + 1) * rbytes);
      if (!grown) {
        npk_free(out);
        return NPK_NOMEM;
      }
      out = grown;
      if (!json_vector(&p, end, out + nq * rbytes, dtype, metric, dim, pe))
        goto fail;
      nq++;
      p = skip_ws(p, end);
      if (!many) break;
      if (p < end && *p == ',') {
        p++;
        continue;
      }
      if (p < end && *p == ']') {
        p = skip_ws(p + 1, end);
        break;
      }
      say(pe, "a list of JSON vectors is [[...], [...], ...]");
      goto fail;
    }
    if (p != end) {
      say(pe, "the JSON query has text after its end");
      goto fail;
    }
    if (maxq && nq > maxq) {
      say(pe, "too many query vectors");
      goto fail;
    }
    *pout = out;
    *pnq = nq;
    return NPK_OK;
  }

  if (n >= 6 && memcmp(b, "\x93NUMPY", 6) == 0) {
    NpkNpy npy;
    NpkErr perr;
    uint64_t cnt;
    if (npk_npy_parse(b, n, &npy, &perr)) {
      snprintf(msg, sizeof msg, "the query is not a valid .npy: %s",
               npk_err_text(&perr));
      say(pe, msg);
      return NPK_ERROR;
    }
    if (npy.dtype == NPK_COMPLEX64 || npy.dtype == NPK_COMPLEX128) {
      say(pe, "a complex .npy cannot be a query");
      return NPK_ERROR;
    }
    if (npy.ndim == 1 && npy.shape[0] == dim) {
      cnt = 1;
    } else if (npy.ndim == 2 && npy.shape[1] == dim &&
               (npy.shape[0] > 0 || maxq != 1)) {
      /* A batch of (0, d) is no query at all, as in NumPy; a search of
      ** one vector needs its one. */
      cnt = npy.shape[0];
    } else {
      snprintf(msg, sizeof msg,
               "the query .npy has %llu elements in shape "
               "of %u dimension%s; the rows have %llu elements (want shape "
               "(%llu,)%s)",
               (unsigned long long)npy.count, (unsigned)npy.ndim,
               npy.ndim == 1 ? "" : "s", (unsigned long long)dim,
               (unsigned long long)dim, maxq == 1 ? "" : " or (q, d)");
      say(pe, msg);
      return NPK_ERROR;
    }
    if (maxq && cnt > maxq) {
      say(pe, "the query .npy holds several vectors; one is needed");
      return NPK_ERROR;
    }
    if (cnt == 0) return NPK_OK;
    out = npk_malloc((size_t)cnt * rbytes);
    if (!out) return NPK_NOMEM;
    {
      /* Elements in C order, swapped to little-endian, one at a time. */
      size_t sz = (size_t)npk_dtype_size(npy.dtype);
      uint64_t total = cnt * dim;
      for (uint64_t i = 0; i < total; i++) {
        unsigned char e[8];
        uint64_t src = i;
        if (npy.fortran) {
          /* (cnt, dim) in Fortran order: element (r, c) at c*cnt + r. */
          src = (i % dim) * cnt + i / dim;
        }
        memcpy(e, npy.data + src * sz, sz);
        if (npy.big_endian) npk_npy_swap(e, e, 1, npy.dtype);
        if (!put_value(out + (size_t)(i / dim) * rbytes, (size_t)(i % dim),
                       dtype, metric, npy_value(e, npy.dtype, 0), pe))
          goto fail;
      }
    }
    *pout = out;
    *pnq = (size_t)cnt;
    return NPK_OK;
  }

  /* Raw rows of the array's own dtype. */
  if (n == 0 || n % row_bytes != 0 || (maxq == 1 && n != row_bytes)) {
    snprintf(msg, sizeof msg,
             "the query BLOB has %llu bytes; a %s row of %llu "
             "elements has %llu (or give an .npy or JSON text)",
             (unsigned long long)n, npk_dtype_name(dtype),
             (unsigned long long)dim, (unsigned long long)row_bytes);
    say(pe, msg);
    return NPK_ERROR;
  }
  nq = n / row_bytes;
  if (maxq && nq > maxq) {
    say(pe, "too many query vectors");
    return NPK_ERROR;
  }
  out = npk_malloc(nq * rbytes);
  if (!out) return NPK_NOMEM;
  for (uint64_t i = 0; i < (uint64_t)nq * dim; i++) {
    double v = npy_value(b, dtype, i);
    if (!put_value(out + (size_t)(i / dim) * rbytes, (size_t)(i % dim), dtype,
                   metric, v, pe))
      goto fail;
  }
  *pout = out;
  *pnq = nq;
  return NPK_OK;

fail:
  npk_free(out);
  return NPK_ERROR;
}

/* ---- bounded selection ----------------------------------------------- */

/* A before B: nearer, or as near with a smaller row. */
static inline int hit_before(double da, uint64_t ra, double db, uint64_t rb) {
  return da < db || (da == db && ra < rb);
}

/* Offer (D, ROW) to the max-heap H of *N entries and room for K. */
static inline void heap_offer(NpkKnnHit *h, size_t *n, size_t k, double d,
                              uint64_t row) {
  size_t i;
  if (*n < k) {
    /* Sift up. */
    i = (*n)++;
    while (i > 0) {
      size_t p = (i - 1) / 2;
      if (!hit_before(h[p].dist, h[p].row, d, row)) break;
      h[i] = h[p];
      i = p;
    }
    h[i].dist = d;
    h[i].row = row;
    return;
  }
  if (!hit_before(d, row, h[0].dist, h[0].row)) return;
  /* Replace the top and sift down. */
  i = 0;
  for (;;) {
    size_t l = 2 * i + 1, m = i;
    double md = d;
    uint64_t mr = row;
    if (l < k && hit_before(md, mr, h[l].dist, h[l].row)) {
      m = l;
      md = h[l].dist;
      mr = h[l].row;
    }
    if (l + 1 < k && hit_before(md, mr, h[l + 1].dist, h[l + 1].row)) m = l + 1;
    if (m == i) break;
    h[i] = h[m];
    i = m;
  }
  h[i].dist = d;
  h[i].row = row;
}

static int hit_cmp(const void *a, const void *b) {
  const NpkKnnHit *x = a, *y = b;
  if (hit_before(x->dist, x->row, y->dist, y->row)) return -1;
  return hit_before(y->dist, y->row, x->dist, x->row) ? 1 : 0;
}

/* ---- the scan -------------------------------------------------------- */

#define KNN_BLOCK 64 /* rows per kernel call: one bitmap word */
#define KNN_AHEAD 6  /* rows of a list prefetched ahead */

/* One thread's share of a search. */
typedef struct KnnWork KnnWork;
struct KnnWork {
  const NpkKnnScan *s;
  KnnKernel kern;
  const unsigned char *queries;
  size_t qbytes;     /* bytes per parsed query */
  const double *qn2; /* squared norms of the queries (cosine) */
  size_t nq, k;
  uint64_t lo, hi;  /* rows [lo, hi) when s->only is NULL */
  size_t olo, ohi;  /* s->only[olo .. ohi) otherwise */
  NpkKnnHit *heaps; /* nq heaps of k */
  size_t *sizes;    /* their sizes */
  /* The batch path (knn_batch): its kernel, the queries in blocks of
  ** sixteen (element-major, padded with zero vectors), a zero vector, and
  ** this thread's bounds per query and rows converted to float. */
  KnnDots8 dots8, dots8half;
  void (*to_bf16)(const float *x, size_t d, uint32_t *out);
  const unsigned char *qt;
  const float *zero;
  float *lim;
  float *conv;
  uint32_t *conv16;
  int caller; /* runs in the calling thread: asks s->stop */
  int done;   /* a started thread has finished */
  int *halt;  /* set once the search is to stop */
  int rc;
};

/* Rows between two looks at whether to stop: a look by the calling thread
** may cost a microsecond (it asks SQLite), a block of 4096 rows far more. */
#define KNN_STOP_ROWS 4096

/* Whether the search is to stop (W's rc is then NPK_INTERRUPT).  Only the
** calling thread asks the scan's STOP, which may call back into SQLite on
** the connection whose statement runs the search; the other threads read
** the flag it sets. */
static int knn_halted(KnnWork *w) {
  const NpkKnnScan *s = w->s;
  if (w->caller && s->stop && !__atomic_load_n(w->halt, __ATOMIC_RELAXED) &&
      s->stop(s->stop_arg))
    __atomic_store_n(w->halt, 1, __ATOMIC_RELAXED);
  if (!__atomic_load_n(w->halt, __ATOMIC_RELAXED)) return 0;
  w->rc = NPK_INTERRUPT;
  return 1;
}

static inline int live_at(const NpkKnnScan *s, uint64_t r) {
  if (r >= s->rows) return 0;
  return !s->live || (s->live[r / 64] >> (r % 64) & 1);
}

/* Offer every row of MASK (bit j = row FIRST + j) from kernel outputs.
** Rows come in increasing order, so once the heap is full a row only
** enters when strictly nearer than its top: one comparison per row. */
static inline __attribute__((always_inline)) void offer_block(
    KnnWork *w, size_t qi, uint64_t first, uint64_t mask, const double *out,
    const double *out2) {
  NpkKnnHit *h = w->heaps + qi * w->k;
  size_t *n = w->sizes + qi, k = w->k;
  int metric = w->s->metric;
  double qn2 = w->qn2 ? w->qn2[qi] : 0;
  double top = *n == k ? h[0].dist : INFINITY;
  if (*n == k && __builtin_popcountll(mask) > 4 &&
      (metric == NPK_KNN_L2 || metric == NPK_KNN_L2SQ ||
       metric == NPK_KNN_HAMMING || metric == NPK_KNN_JACCARD)) {
    /* The distance is the kernel's output itself: keep only the rows
    ** below the top, in one branch-free pass (a NaN is never below). */
    uint64_t below = 0;
    for (int j = 0; j < KNN_BLOCK; j++) below |= (uint64_t)(out[j] < top) << j;
    mask &= below;
  }
  while (mask) {
    int j = __builtin_ctzll(mask);
    double d = finish(metric, out[j], out2[j], qn2);
    mask &= mask - 1;
    if (d >= top && *n == k) continue;
    heap_offer(h, n, k, d, first + (uint64_t)j);
    if (*n == k) top = h[0].dist;
  }
}

/* Rows [LO, HI) against a batch of l2 or l2sq queries.  Dot products of
** eight rows with sixteen queries at a time (each row element loaded once
** per sixteen multiply-adds, so that the batch runs at the speed of the
** arithmetic), and each row's norm, give |x|^2 + |q|^2 - 2 x.q, the
** squared distance, up to float rounding.  A row whose estimate, less a
** bound on that rounding, is not below a query's k-th nearest so far
** cannot enter that query's top k and is passed over; every other
** distance is computed exactly by the ordinary kernel, so the results are
** the same as without this path.  The bound: each of the three sums is
** off by at most (d + 16) units of float rounding (2^-24) times the sum of
** the magnitudes of its terms, which for all three together is at most
** 2 (|x|^2 + |q|^2); the exact kernel's own rounding adds at most as much
** again; 16 more units cover the test itself being made in floats (only
** when the estimate is within 2 (|x|^2 + |q|^2) of the bound can a row be
** passed over, so those roundings are that small).  With the bfloat16
** kernel each product x_i q_i is off by at most 2^-7 + 2^-16 of itself
** from rounding both factors to 8 significant bits, which adds 2^-7
** (|x|^2 + |q|^2) to the bound.  2^-90 more covers products too small
** for floats (flushed to zero).  LIM[j] holds (1 - unit) |q_j|^2 - top_j
** - 2^-90 as a float: NaN until query j's heap is full (every row is a
** candidate then, even one whose estimate overflowed to -inf), +inf for
** the padding queries. */
static void knn_batch(KnnWork *w, uint64_t lo, uint64_t hi) {
  const NpkKnnScan *s = w->s;
  size_t d = (size_t)s->dim, stride = (size_t)s->row_bytes;
  size_t nblk = (w->nq + 15) / 16;
  size_t np = (d + 31) / 32 * 16, n = w->to_bf16 ? np : d;
  double unit = (double)(d + 32) * 4.0 * 5.9604644775390625e-8 * 1.01;
  double xx[KNN_BLOCK], out, out2 = 0;
  float *lim = w->lim;
  if (w->to_bf16) unit += 0.0078125 * 1.02;
  for (size_t qi = 0; qi < nblk * 16; qi++)
    lim[qi] = qi < w->nq ? NAN : INFINITY;
  for (uint64_t b = lo; b < hi;) {
    uint64_t end = (b / KNN_BLOCK + 1) * KNN_BLOCK, mask;
    const unsigned char *base = s->base + b * stride;
    const void *xf[KNN_BLOCK];
    float bx[KNN_BLOCK];
    int at[KNN_BLOCK], nl = 0;
    size_t cnt;
    if (b % KNN_STOP_ROWS == 0 && knn_halted(w)) return;
    if (end > hi) end = hi;
    cnt = (size_t)(end - b);
    mask = cnt == 64 ? ~(uint64_t)0 : (((uint64_t)1 << cnt) - 1);
    if (s->live) mask &= s->live[b / 64] >> (b % 64);
    b = end;
    if (!mask) continue;
    while (mask) {
      at[nl++] = __builtin_ctzll(mask);
      mask &= mask - 1;
    }
    /* The norms: the squared distance to a zero vector. */
    w->kern(base, cnt, stride, w->zero, d, xx, &out2);
    for (int t = 0; t < nl; t++) {
      const unsigned char *x = base + (size_t)at[t] * stride;
      const float *f = (const float *)(const void *)x;
      bx[t] = (float)((1 - unit) * xx[at[t]]);
      if (s->dtype != NPK_FLOAT32) {
        /* Other types are widened once here, for every query. */
        float *c = w->conv + (size_t)t * d;
        for (size_t i = 0; i < d; i++)
          c[i] = s->dtype == NPK_FLOAT16 ? ld_f16(x, i)
                 : s->dtype == NPK_INT8  ? ld_i8(x, i)
                                         : ld_u8(x, i);
        f = c;
      }
      xf[t] = f;
      if (w->to_bf16) {
        w->to_bf16(f, d, w->conv16 + (size_t)t * np);
        xf[t] = w->conv16 + (size_t)t * np;
      }
    }
    for (int t = 0; t < nl; t += 8) {
      const void *xp[8];
      float bb[8];
      int nr = nl - t < 8 ? nl - t : 8;
      /* Ask for an eighth of the next block while these rows are
      ** computed, so that reading memory overlaps the arithmetic. */
      if (b < hi) {
        size_t part = KNN_BLOCK * stride / 8, from = part * (size_t)(t / 8);
        for (size_t o = 0; o < part; o += 64)
          __builtin_prefetch(base + cnt * stride + from + o);
      }
      /* A short group repeats its last row; its results are not used. */
      for (int r = 0; r < 8; r++) {
        xp[r] = xf[t + (r < nr ? r : nr - 1)];
        bb[r] = bx[t + (r < nr ? r : nr - 1)];
      }
      for (size_t qb = 0; qb < nblk; qb++) {
        uint16_t cand[8];
        int half = qb + 1 == nblk && w->nq - qb * 16 <= 8;
        (half ? w->dots8half : w->dots8)(xp, n, w->qt + qb * 64 * n,
                                         lim + qb * 16, bb, cand);
        for (int r = 0; r < nr; r++) {
          unsigned m = cand[r];
          const unsigned char *x = base + (size_t)at[t + r] * stride;
          if (qb + 1 == nblk && w->nq % 16) m &= (1u << (w->nq % 16)) - 1;
          while (m) {
            size_t qi = qb * 16 + (size_t)__builtin_ctz(m);
            NpkKnnHit *h = w->heaps + qi * w->k;
            m &= m - 1;
            w->kern(x, 1, 0, w->queries + qi * w->qbytes, d, &out, &out2);
            heap_offer(h, w->sizes + qi, w->k, finish(s->metric, out, out2, 0),
                       b - cnt + (uint64_t)at[t + r]);
            if (w->sizes[qi] == w->k)
              lim[qi] = (float)((1 - unit) * w->qn2[qi] - h[0].dist - 0x1p-90);
          }
        }
      }
    }
  }
}

static void *knn_work(void *arg) {
  KnnWork *w = arg;
  const NpkKnnScan *s = w->s;
  /* Zeroed: offer_block compares all of OUT, written or not. */
  double out[KNN_BLOCK] = {0}, out2[KNN_BLOCK] = {0};
  size_t d = is_bits(s->metric) ? (size_t)s->row_bytes : (size_t)s->dim;

  if (w->dots8 && !s->only) {
    knn_batch(w, w->lo, w->hi);
    return 0;
  }

  if (s->only) {
    /* Rows of a list are scattered: ask for the row a few places ahead
    ** while this one is computed, so that memory latency overlaps. */
    size_t lines = s->row_bytes > 1024 ? 16 : (size_t)(s->row_bytes + 63) / 64;
    for (size_t i = w->olo; i < w->ohi; i++) {
      uint64_t r = s->only[i];
      const unsigned char *x;
      if ((i - w->olo) % KNN_STOP_ROWS == KNN_STOP_ROWS - 1 && knn_halted(w))
        return 0;
      if (s->base && i + KNN_AHEAD < w->ohi &&
          s->only[i + KNN_AHEAD] < s->rows) {
        const unsigned char *p =
            s->base + s->only[i + KNN_AHEAD] * s->row_bytes;
        for (size_t l = 0; l < lines; l++) __builtin_prefetch(p + 64 * l);
      }
      if (r < s->lo || r >= s->hi || !live_at(s, r)) continue;
      if (s->base) {
        x = s->base + r * s->row_bytes;
      } else {
        const void *p;
        if ((w->rc = s->row_at(s->arg, r, &p))) return 0;
        x = p;
      }
      for (size_t qi = 0; qi < w->nq; qi++) {
        w->kern(x, 1, 0, w->queries + qi * w->qbytes, d, out, out2);
        offer_block(w, qi, r, 1, out, out2);
      }
    }
    return 0;
  }
  for (uint64_t b = w->lo; b < w->hi;) {
    uint64_t end = (b / KNN_BLOCK + 1) * KNN_BLOCK, mask;
    size_t cnt;
    if (b % KNN_STOP_ROWS == 0 && knn_halted(w)) return 0;
    if (end > w->hi) end = w->hi;
    cnt = (size_t)(end - b);
    mask = cnt == 64 ? ~(uint64_t)0 : (((uint64_t)1 << cnt) - 1);
    if (s->live) mask &= s->live[b / 64] >> (b % 64);
    if (mask) {
      if (s->base) {
        const unsigned char *x = s->base + b * s->row_bytes;
        /* Only the span from the first to the last live row is read. */
        int first = __builtin_ctzll(mask), last = 63 - __builtin_clzll(mask);
        for (size_t qi = 0; qi < w->nq; qi++) {
          w->kern(x + (size_t)first * s->row_bytes, (size_t)(last - first + 1),
                  (size_t)s->row_bytes, w->queries + qi * w->qbytes, d,
                  out + first, out2 + first);
          offer_block(w, qi, b, mask, out, out2);
        }
      } else {
        uint64_t m = mask;
        while (m) {
          int j = __builtin_ctzll(m);
          const void *p;
          m &= m - 1;
          if ((w->rc = s->row_at(s->arg, b + (uint64_t)j, &p))) return 0;
          for (size_t qi = 0; qi < w->nq; qi++) {
            w->kern(p, 1, 0, w->queries + qi * w->qbytes, d, out + j, out2 + j);
            offer_block(w, qi, b, (uint64_t)1 << j, out, out2);
          }
        }
      }
    }
    b = end;
  }
  return 0;
}

static void *knn_thread(void *arg) {
  KnnWork *w = arg;
  knn_work(w);
  __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
  return 0;
}

/* Threads for a scan of BYTES bytes. */
static int pick_threads(const NpkKnnScan *s, uint64_t bytes) {
  long cpus;
  if (s->threads > 0) return s->threads > 64 ? 64 : s->threads;
  if (!s->base || bytes < ((uint64_t)4 << 20)) return 1;
  cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus < 1) cpus = 1;
  return cpus > 8 ? 8 : (int)cpus;
}

void npk_knn_scan_view(NpkKnnScan *scan, const NpkView *view, int metric,
                       uint64_t dim, NpkRowSource *src) {
  memset(scan, 0, sizeof *scan);
  scan->dtype = view->dtype;
  scan->metric = metric;
  scan->dim = dim;
  scan->row_bytes = view->row_bytes;
  scan->base = view->base;
  scan->live = view->live;
  scan->rows = view->rows;
  scan->hi = view->rows;
  scan->row_at = npk_row_source_at;
  scan->arg = src;
}

size_t npk_knn_room(const NpkKnnScan *s, size_t k) {
  uint64_t hi = s->hi < s->rows ? s->hi : s->rows, span;
  if (s->lo >= hi) return 0;
  span = s->only ? (uint64_t)s->n_only : hi - s->lo;
  return span < (uint64_t)k ? (size_t)span : k;
}

int npk_knn_search(const NpkKnnScan *s, const void *queries, size_t nq,
                   size_t k, NpkKnnHit *out, size_t *pfound) {
  uint64_t lo = s->lo, hi = s->hi < s->rows ? s->hi : s->rows, span;
  size_t qbytes = (size_t)s->dim * npk_knn_query_item(s->dtype, s->metric);
  size_t kk, found = (size_t)-1;
  int nt, rc = NPK_OK, started = 0, halt = 0;
  KnnWork *w = 0;
  pthread_t *tids = 0;
  double *qn2 = 0;
  unsigned char *qt = 0;
  size_t nblk = (nq + 15) / 16, d = (size_t)s->dim;
  size_t np = (d + 31) / 32 * 16, qtbytes = 0;
  KnnDots8 dots8 = 0;
  void (*tobf)(const float *, size_t, uint32_t *) = 0;

  *pfound = 0;
  if (lo >= hi || k == 0 || nq == 0) return NPK_OK;
  span = s->only ? (uint64_t)s->n_only : hi - lo;
  kk = npk_knn_room(s, k);
  if (kk == 0) return NPK_OK;
  if (kk > SIZE_MAX / sizeof(NpkKnnHit) / nq) return NPK_NOMEM;
  nt = pick_threads(s, span * s->row_bytes * (uint64_t)(nq > 8 ? 8 : nq));
  if (!s->base) nt = 1;
  if ((uint64_t)nt > span / KNN_BLOCK)
    nt = span >= KNN_BLOCK ? (int)(span / KNN_BLOCK) : 1;
  if (nt < 1) nt = 1;

  w = npk_calloc((size_t)nt, sizeof *w);
  tids = npk_calloc((size_t)nt, sizeof *tids);
  /* Four or more l2 queries over contiguous rows take the batch path when
  ** the CPU has its kernel (rows of other types than float32 are widened
  ** 64 at a time, so their length is bounded).  qt holds the queries in
  ** blocks of sixteen (see dots8x16_avx512 and dots8x16_bf16), then one
  ** zero vector of floats, then room to convert one query to bfloat16. */
  if (nq >= 4 && s->base && !s->only && s->dtype != NPK_FLOAT64 &&
      (s->dtype == NPK_FLOAT32 || s->dim <= 16384) &&
      (s->metric == NPK_KNN_L2 || s->metric == NPK_KNN_L2SQ))
    dots8 = isa()->dots8;
  if (dots8) {
    const float *q = queries;
    tobf = isa()->to_bf16;
    qtbytes = nblk * 64 * (tobf ? np : d);
    qt = npk_calloc(qtbytes + 4 * d + 4 * np, 1);
    if (qt && tobf) {
      uint32_t *one = (uint32_t *)(void *)(qt + qtbytes + 4 * d), *dst;
      for (size_t qi = 0; qi < nq; qi++) {
        tobf(q + qi * d, d, one);
        dst = (uint32_t *)(void *)qt + (qi / 16) * 16 * np + qi % 16;
        for (size_t p = 0; p < np; p++) dst[16 * p] = one[p];
      }
    } else if (qt) {
      for (size_t qi = 0; qi < nq; qi++) {
        float *dst = (float *)(void *)qt + (qi / 16) * 16 * d + qi % 16;
        for (size_t i = 0; i < d; i++) dst[16 * i] = q[qi * d + i];
      }
    }
  }
  if (s->metric == NPK_KNN_COSINE || dots8) qn2 = npk_malloc(nq * sizeof *qn2);
  if (!w || !tids || ((s->metric == NPK_KNN_COSINE || dots8) && !qn2) ||
      (dots8 && !qt)) {
    rc = NPK_NOMEM;
    goto done;
  }
  if (qn2)
    for (size_t qi = 0; qi < nq; qi++)
      qn2[qi] = query_norm2(s->dtype, s->dim,
                            (const unsigned char *)queries + qi * qbytes);
  for (int t = 0; t < nt; t++) {
    KnnWork *x = &w[t];
    x->s = s;
    x->kern = kernel_for(s->dtype, s->metric);
    x->queries = queries;
    x->qbytes = qbytes;
    x->qn2 = qn2;
    x->nq = nq;
    x->k = kk;
    if (s->only) {
      x->olo = s->n_only * (size_t)t / (size_t)nt;
      x->ohi = s->n_only * (size_t)(t + 1) / (size_t)nt;
    } else {
      /* Split at bitmap words, so that no two threads share one. */
      uint64_t a = lo + span * (uint64_t)t / (uint64_t)nt;
      uint64_t z = lo + span * (uint64_t)(t + 1) / (uint64_t)nt;
      if (t > 0) a = a / 64 * 64;
      if (t + 1 < nt) z = z / 64 * 64;
      x->lo = a < lo ? lo : a;
      x->hi = z;
    }
    x->caller = t == 0;
    x->halt = &halt;
    x->dots8 = dots8;
    x->dots8half = isa()->dots8half;
    x->to_bf16 = tobf;
    x->qt = qt;
    x->zero = qt ? (const float *)(const void *)(qt + qtbytes) : 0;
    if (dots8) {
      x->lim = npk_malloc(nblk * 16 * sizeof *x->lim);
      if (s->dtype != NPK_FLOAT32)
        x->conv = npk_malloc(KNN_BLOCK * d * sizeof *x->conv);
      if (tobf) x->conv16 = npk_malloc(KNN_BLOCK * np * sizeof *x->conv16);
    }
    x->heaps = npk_malloc(nq * kk * sizeof *x->heaps);
    x->sizes = npk_calloc(nq, sizeof *x->sizes);
    if (!x->heaps || !x->sizes || (dots8 && !x->lim) ||
        (dots8 && s->dtype != NPK_FLOAT32 && !x->conv) ||
        (tobf && !x->conv16)) {
      rc = NPK_NOMEM;
      goto done;
    }
  }
  if (nt > 1) {
    for (int t = 1; t < nt; t++) {
      if (pthread_create(&tids[t], 0, knn_thread, &w[t]) != 0) break;
      started = t;
    }
    knn_work(&w[0]);
    /* A thread that could not start has its share done here. */
    for (int t = started + 1; t < nt; t++) {
      w[t].caller = 1;
      knn_work(&w[t]);
    }
    /* Keep asking whether to stop while the other threads finish. */
    for (int t = 1; s->stop && t <= started;) {
      struct timespec nap = {0, 100000};
      if (__atomic_load_n(&w[t].done, __ATOMIC_ACQUIRE)) {
        t++;
      } else {
        if (!__atomic_load_n(&halt, __ATOMIC_RELAXED) && s->stop(s->stop_arg))
          __atomic_store_n(&halt, 1, __ATOMIC_RELAXED);
        nanosleep(&nap, 0);
      }
    }
    for (int t = 1; t <= started; t++) pthread_join(tids[t], 0);
  } else {
    knn_work(&w[0]);
  }
  for (int t = 0; t < nt; t++)
    if (w[t].rc && !rc) rc = w[t].rc;
  if (rc) goto done;

  /* Merge: each query's nt heaps into its K nearest, in order. */
  for (size_t qi = 0; qi < nq; qi++) {
    NpkKnnHit *dst = out + qi * kk;
    size_t n = 0;
    if (nt == 1) {
      n = w[0].sizes[qi];
      memcpy(dst, w[0].heaps + qi * kk, n * sizeof *dst);
      qsort(dst, n, sizeof *dst, hit_cmp);
    } else {
      NpkKnnHit *h = w[0].heaps + qi * kk;
      size_t hn = w[0].sizes[qi];
      /* Offer every other thread's hits to thread 0's heap. */
      for (int t = 1; t < nt; t++)
        for (size_t i = 0; i < w[t].sizes[qi]; i++) {
          const NpkKnnHit *e = w[t].heaps + qi * kk + i;
          heap_offer(h, &hn, kk, e->dist, e->row);
        }
      n = hn;
      memcpy(dst, h, n * sizeof *dst);
      qsort(dst, n, sizeof *dst, hit_cmp);
    }
    if (s->metric == NPK_KNN_L2)
      for (size_t i = 0; i < n; i++) dst[i].dist = sqrt(dst[i].dist);
    if (n < found) found = n;
  }
  *pfound = found;

done:
  if (w)
    for (int t = 0; t < nt; t++) {
      npk_free(w[t].heaps);
      npk_free(w[t].sizes);
      npk_free(w[t].lim);
      npk_free(w[t].conv);
      npk_free(w[t].conv16);
    }
  npk_free(w);
  npk_free(tids);
  npk_free(qn2);
  npk_free(qt);
  return rc;
}
