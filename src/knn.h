/*
** knn.h — exact k-nearest-neighbour search over the rows of one array:
** distance kernels (chosen for the running CPU), the parser of query
** vectors, and a bounded top-k scan that skips deleted rows, honours a row
** filter and splits large arrays over the CPU's cores.
**
** Like the store engine this has no SQLite dependency: the virtual table,
** numpack_distance and numpack_knn are thin layers over it, and the fuzz
** target and test/knn_test.c drive it directly.
*/
#ifndef NPK_KNN_H
#define NPK_KNN_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "store.h"

/* Metrics.  Every distance is "smaller is nearer". */
#define NPK_KNN_L2     0 /* Euclidean distance */
#define NPK_KNN_L2SQ   1 /* its square */
#define NPK_KNN_COSINE 2 /* 1 - cosine similarity (1 if a norm is 0) */
#define NPK_KNN_DOT    3 /* minus the dot product */
#define NPK_KNN_HAMMING \
  4 /* differing bits of uint8 rows (packed bits),
    ** or differing elements of bool rows */
#define NPK_KNN_JACCARD \
  5 /* 1 - |a AND b| / |a OR b| over those bits
    ** (0 when both are all zero) */
#define NPK_KNN_NMETRIC 6

/* The metric called NAME (case-insensitive), or -1. */
int npk_knn_metric_from_name(const char *name);
const char *npk_knn_metric_name(int metric);
/* "l2, l2sq, cosine, dot, hamming, jaccard": for messages. */
const char *npk_knn_metric_list(void);
/* NULL if METRIC can be computed over rows of DTYPE; otherwise what the
** metric needs ("float32, float64, float16, int8 or uint8 rows"). */
const char *npk_knn_metric_needs(int metric, int dtype);
/* The metric a table of DTYPE uses when none is named: hamming for bool
** rows, l2 for every other type. */
int npk_knn_default_metric(int dtype);

/* One result: a physical row and its distance. */
typedef struct NpkKnnHit NpkKnnHit;
struct NpkKnnHit {
  double dist;
  uint64_t row;
};

/* Bytes of one element of a parsed query vector for rows of DTYPE under
** METRIC: 8 (double) for float64 rows, 1 for hamming and jaccard, else 4
** (float).  Vectors are DIM such elements; DIM is the row's element count. */
size_t npk_knn_query_item(int dtype, int metric);

/* Parse query vectors for rows of DTYPE with DIM elements under METRIC.
** IN (N bytes) is JSON text ("[0.5, 1, ...]", or a list of such lists when
** MAXQ allows several) when TEXT is 1; otherwise an .npy image (shape (DIM,)
** or (q, DIM), any integer or float dtype) or raw rows of DTYPE.  MAXQ is
** the most vectors accepted (1 for a single query, 0 for any number).  On
** success *POUT is a malloc'd array of *PNQ vectors of npk_knn_query_item
** bytes per element; an .npy of shape (0, DIM), which only MAXQ 0 accepts,
** is no vector: *PNQ 0 and *POUT NULL.  On failure E says what was
** expected, *POUT is NULL, and NPK_ERROR (or NPK_NOMEM) is returned. */
int npk_knn_parse(const void *in, size_t n, int text, int dtype, int metric,
                  uint64_t dim, size_t maxq, void **pout, size_t *pnq,
                  NpkErr *e);

/* The distance between two parsed vectors A and B (as npk_knn_parse makes
** them for DTYPE and METRIC). */
double npk_knn_distance(int dtype, int metric, uint64_t dim, const void *a,
                        const void *b);

/* What to scan.  Rows are DIM elements of DTYPE, ROW_BYTES each.  Row r is
** at BASE + r * ROW_BYTES when BASE is set; otherwise ROW_AT(ARG, r, &p)
** gives it (rows replaced in a pending transaction, segmented arrays) and
** the scan runs in the calling thread only.  LIVE is the deletion bitmap
** (bit set = live) covering ROWS rows, or NULL if every row is live.
** Only rows in [LO, HI) are candidates; when ONLY is set, only the N_ONLY
** rows it lists (sorted, no duplicates) are.  THREADS: 0 picks by size
** (every online CPU, at most 8, for arrays over a few MiB), N forces N. */
typedef struct NpkKnnScan NpkKnnScan;
struct NpkKnnScan {
  int dtype;
  int metric;
  uint64_t dim;
  uint64_t row_bytes;
  const unsigned char *base;
  int (*row_at)(void *arg, uint64_t row, const void **pp);
  void *arg;
  const uint64_t *live;
  uint64_t rows;
  uint64_t lo, hi;
  const uint64_t *only;
  size_t n_only;
  int threads;
  /* Asked in the calling thread every few thousand rows, when set: nonzero
  ** stops the search with NPK_INTERRUPT (the other threads stop too). */
  int (*stop)(void *arg);
  void *stop_arg;
};

/* SCAN set to search every row of VIEW, an array of one session, by METRIC
** over DIM elements: rows not in one mapping are reached through SRC,
** which the caller fills (session and array).  Threads, a stop and a
** narrower range are the caller's to set. */
void npk_knn_scan_view(NpkKnnScan *scan, const NpkView *view, int metric,
                       uint64_t dim, NpkRowSource *src);

/* Room for one query's results: K, or fewer when fewer rows can be
** candidates (so that a K far beyond the array's size needs no memory). */
size_t npk_knn_room(const NpkKnnScan *s, size_t k);

/* The K nearest live candidate rows to each of NQ parsed QUERIES, ordered
** by distance then row.  With R = npk_knn_room(S, K), OUT holds NQ*R hits
** and query i's are OUT[i*R .. i*R + *PFOUND - 1]; *PFOUND, the same for
** every query, is min(K, live candidates).  NPK_OK, NPK_NOMEM,
** NPK_INTERRUPT when STOP asked to stop, or the error ROW_AT returned. */
int npk_knn_search(const NpkKnnScan *s, const void *queries, size_t nq,
                   size_t k, NpkKnnHit *out, size_t *pfound);

/* The kernels in use: "avx512bf16" (AVX-512 with bfloat16 dot products
** for batches of queries), "avx512", "avx2" or "portable".  The environment
** variable NUMPACK_KNN_ISA (one of those names) lowers the choice, for
** testing each variant on one machine. */
const char *npk_knn_isa(void);
/* Use the kernels called NAME from now on, for the unit tests: 1 if the
** CPU runs them, else 0 (and nothing changes).  Not for use while a search
** runs in another thread. */
int npk_knn_set_isa(const char *name);

#endif /* NPK_KNN_H */
