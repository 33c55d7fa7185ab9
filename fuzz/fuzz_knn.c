/*
** fuzz_knn.c — fuzz target for npk_knn_parse, the reader of the query
** vectors of KNN searches (JSON text, .npy BLOBs, raw rows), which come
** straight from SQL.
**
** Input: byte 0 picks the form (bit 0: JSON text), the metric (bits 1-3)
** and one query or many (bit 4); byte 1 the element type (of the five
** vector types and bool); byte 2 the row's element count (1 to 64); the
** rest is the query.
**
** Beyond "no crash":
**   - a refused query leaves no output and says why, in a NUL-terminated
**     message;
**   - an accepted one has at least one vector, and exactly one when one
**     was asked for, but for a batch of none (an .npy of shape (0, d),
**     where no vector is returned); bit vectors of bool rows hold only 0 and 1, float
**     vectors only finite values;
**   - searching the parsed vectors for themselves (float32 and bit rows,
**     whose parsed form is the row form) finds min(k, vectors) rows, in
**     order, and the nearest at l2, l2sq, hamming or jaccard distance 0.
*/
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "knn.h"
#include "store.h"

const char npk_fuzz_target[] = "knn";

static const int types[] = {NPK_FLOAT32, NPK_FLOAT64, NPK_FLOAT16, NPK_INT8,
                            NPK_UINT8, NPK_BOOL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  NpkErr err;
  void *out = (void *)1;
  size_t nq = 7, item, maxq;
  int text, metric, dtype, rc;
  uint64_t dim;

  if (size < 3) return 0;
  text = data[0] & 1;
  metric = (data[0] >> 1 & 7) % NPK_KNN_NMETRIC;
  maxq = data[0] & 16 ? 0 : 1;
  dtype = types[data[1] % 6];
  dim = (uint64_t)(data[2] % 64) + 1;
  if (npk_knn_metric_needs(metric, dtype)) return 0;
  memset(&err, 'x', sizeof err);
  rc = npk_knn_parse(data + 3, size - 3, text, dtype, metric, dim, maxq, &out,
                     &nq, &err);
  if (rc != NPK_OK) {
    FUZZ_CHECK(rc == NPK_ERROR || rc == NPK_NOMEM);
    FUZZ_CHECK(out == NULL && nq == 0);
    FUZZ_CHECK(rc == NPK_NOMEM || (err.rc == NPK_ERROR &&
                                  memchr(err.msg, 0, sizeof err.msg) &&
                                  err.msg[0]));
    return 0;
  }
  if (nq == 0) {
    /* A batch of no query, an .npy of shape (0, d): only a batch takes it. */
    FUZZ_CHECK(out == NULL && maxq == 0);
    return 0;
  }
  FUZZ_CHECK(out != NULL);
  FUZZ_CHECK(maxq == 0 || nq == 1);
  item = npk_knn_query_item(dtype, metric);
  for (size_t i = 0; i < nq * (size_t)dim; i++) {
    if (item == 1) {
      if (dtype == NPK_BOOL) FUZZ_CHECK(((unsigned char *)out)[i] <= 1);
    } else if (item == 4) {
      FUZZ_CHECK(isfinite(((float *)out)[i]));
    } else {
      FUZZ_CHECK(isfinite(((double *)out)[i]));
    }
  }
  if ((dtype == NPK_FLOAT32 || item == 1) &&
      (metric == NPK_KNN_L2 || metric == NPK_KNN_L2SQ ||
       metric == NPK_KNN_HAMMING || metric == NPK_KNN_JACCARD)) {
    NpkKnnScan s;
    NpkKnnHit hits[4];
    size_t found = 0, k = nq < 4 ? nq : 4;
    memset(&s, 0, sizeof s);
    s.dtype = dtype;
    s.metric = metric;
    s.dim = dim;
    s.row_bytes = dim * item;
    s.base = out;
    s.rows = s.hi = nq;
    FUZZ_CHECK(npk_knn_search(&s, out, 1, 4, hits, &found) == NPK_OK);
    FUZZ_CHECK(found == k);
    for (size_t i = 1; i < found; i++)
      FUZZ_CHECK(hits[i - 1].dist < hits[i].dist ||
                 (hits[i - 1].dist == hits[i].dist &&
                  hits[i - 1].row < hits[i].row));
    /* Squares of large floats may overflow to inf: then nothing is 0. */
    if (found && isfinite(hits[found - 1].dist)) FUZZ_CHECK(hits[0].dist == 0);
  }
  free(out);
  return 0;
}
