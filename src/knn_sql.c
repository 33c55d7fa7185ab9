/*
** knn_sql.c — the SQL functions of vector search (knn.c does the work):
**
**   numpack_distance(a, b [, metric])  -> REAL
**     a and b are .npy BLOBs, raw float32 BLOBs (bytes, for hamming and
**     jaccard) or JSON text '[0.5, 1, ...]'; metric defaults to l2.
**
**   SELECT * FROM numpack_knn(store, name, queries, k [, metric]);
**     query, rank, rowid, idx, distance: for each query vector (queries is
**     an .npy of shape (q, d) or (d,), JSON, or raw rows of the array's
**     dtype), its k nearest live rows ordered by distance then rowid; rowid
**     is the physical row (the table's rowid), idx its logical index (what
**     numpack_getitem takes).  The array is read once for each block of
**     queries that fits the CPU's cache, not once per query, and the
**     connection's uncommitted changes are seen.
**
** A file of its own, beside func.c and tvf.c, because both functions are
** thin layers over knn.c and share its query parsing.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numpack_int.h"
#include "conn.h"
#include "knn.h"
#include "npy.h"

/* ---- numpack_distance ------------------------------------------------- */

/* Elements of vector argument V, and whether it is an .npy of float64;
** 0 with a message in ERR when V is no vector. */
static int vec_shape(sqlite3_value *v, int bits, uint64_t *dim, int *f64,
                     char *err, size_t errlen) {
  const unsigned char *p;
  size_t n = (size_t)sqlite3_value_bytes(v);
  *f64 = 0;
  if (sqlite3_value_type(v) == SQLITE_TEXT) {
    /* Elements counted by commas at depth 1; the parser checks the rest. */
    int depth = 0, any = 0;
    uint64_t commas = 0;
    p = sqlite3_value_text(v);
    for (size_t i = 0; p && i < n; i++) {
      if (p[i] == '[') depth++;
      else if (p[i] == ']') depth--;
      else if (p[i] == ',' && depth == 1) commas++;
      else if (depth == 1 && p[i] != ' ' && p[i] != '\t' && p[i] != '\n' &&
               p[i] != '\r')
        any = 1;
    }
    *dim = any ? commas + 1 : 0;
    return 1;
  }
  if (sqlite3_value_type(v) != SQLITE_BLOB) {
    snprintf(err, errlen,
             "a vector is a BLOB (.npy or float32) or JSON "
             "text, not %s",
             sqlite3_value_type(v) == SQLITE_NULL ? "NULL" : "a number");
    return 0;
  }
  p = sqlite3_value_blob(v);
  if (n >= 6 && memcmp(p, "\x93NUMPY", 6) == 0) {
    NpkNpy npy;
    NpkErr perr;
    if (npk_npy_parse(p, n, &npy, &perr)) {
      snprintf(err, errlen, "not a valid .npy: %s", npk_err_text(&perr));
      return 0;
    }
    *dim = npy.count;
    *f64 = npy.dtype == NPK_FLOAT64;
    return 1;
  }
  if (!bits && n % 4) {
    snprintf(err, errlen,
             "a raw vector BLOB holds float32 elements: %zu "
             "bytes is not a multiple of 4",
             n);
    return 0;
  }
  *dim = bits ? n : n / 4;
  return 1;
}

static void fn_distance(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  int metric = NPK_KNN_L2, bits, fa, fb, dtype, raw;
  uint64_t da, db;
  void *a = 0, *b = 0;
  size_t na, nb;
  char err[300];
  if (argc == 3 && (metric = npk_knn_metric_arg(argv[2])) < 0) {
    char *msg = npk_knn_metric_unknown("", "numpack_distance", argv[2]);
    npk_result_error(ctx, SQLITE_ERROR, msg);
    sqlite3_free(msg);
    return;
  }
  bits = metric == NPK_KNN_HAMMING || metric == NPK_KNN_JACCARD;
  if (!vec_shape(argv[0], bits, &da, &fa, err, sizeof err) ||
      !vec_shape(argv[1], bits, &db, &fb, err, sizeof err))
    goto fail;
  if (da != db) {
    snprintf(err, sizeof err, "the vectors have %llu and %llu elements",
             (unsigned long long)da, (unsigned long long)db);
    goto fail;
  }
  /* float64 when an .npy is, unless a raw float32 BLOB takes part. */
  raw = (sqlite3_value_type(argv[0]) == SQLITE_BLOB && !fa &&
         (sqlite3_value_bytes(argv[0]) < 6 ||
          memcmp(sqlite3_value_blob(argv[0]), "\x93NUMPY", 6) != 0)) ||
        (sqlite3_value_type(argv[1]) == SQLITE_BLOB && !fb &&
         (sqlite3_value_bytes(argv[1]) < 6 ||
          memcmp(sqlite3_value_blob(argv[1]), "\x93NUMPY", 6) != 0));
  dtype = bits ? NPK_UINT8 : (fa || fb) && !raw ? NPK_FLOAT64 : NPK_FLOAT32;
  for (int i = 0; i < 2; i++) {
    sqlite3_value *v = argv[i];
    int text = sqlite3_value_type(v) == SQLITE_TEXT;
    const void *p =
        text ? (const void *)sqlite3_value_text(v) : sqlite3_value_blob(v);
    NpkErr pe;
    int rc =
        npk_knn_parse(p ? p : "", (size_t)sqlite3_value_bytes(v), text, dtype,
                      metric, da, 1, i ? &b : &a, i ? &nb : &na, &pe);
    if (rc == NPK_NOMEM) {
      npk_free(a);
      sqlite3_result_error_nomem(ctx);
      return;
    }
    if (rc) {
      snprintf(err, sizeof err, "%s", npk_err_text(&pe));
      goto fail;
    }
  }
  sqlite3_result_double(ctx, npk_knn_distance(dtype, metric, da, a, b));
  npk_free(a);
  npk_free(b);
  return;
fail:
  npk_free(a);
  npk_free(b);
  {
    char *msg = sqlite3_mprintf("numpack: numpack_distance: %s", err);
    npk_result_error(ctx, msg ? SQLITE_MISMATCH : SQLITE_NOMEM, msg);
    sqlite3_free(msg);
  }
}

/* ---- numpack_knn ------------------------------------------------------ */

/* Column numbers. */
#define KC_QUERY    0
#define KC_RANK     1
#define KC_ROWID    2
#define KC_IDX      3
#define KC_DISTANCE 4
#define KC_ARG0     5 /* store, name, queries, k, metric */

/* Bytes of parsed queries searched in one pass over the array: they stay
** in the CPU's cache while each block of rows is compared with all. */
#define KNN_QUERY_BLOCK_BYTES (256 * 1024)

typedef struct KnnTab KnnTab;
struct KnnTab {
  sqlite3_vtab base; /* base class: must be first */
  sqlite3 *db;       /* the connection */
};

typedef struct KnnCursor KnnCursor;
struct KnnCursor {
  sqlite3_vtab_cursor base; /* base class: must be first */
  NpkKnnHit *hits;          /* nq x room hits, query by query */
  uint64_t *idx;            /* logical index of each hit */
  size_t nq, room, found;   /* queries, stride, hits per query */
  size_t i;                 /* current row: query i / found, rank i % found */
};

static int knn_connect(sqlite3 *db, void *aux, int argc,
                       const char *const *argv, sqlite3_vtab **pp,
                       char **pzErr) {
  KnnTab *t;
  int rc;
  (void)aux;
  (void)argc;
  (void)argv;
  (void)pzErr;
  rc = sqlite3_declare_vtab(
      db,
      "CREATE TABLE x(query INTEGER, rank INTEGER, rowid INTEGER, "
      "idx INTEGER, distance REAL, store HIDDEN, name HIDDEN, "
      "queries HIDDEN, k HIDDEN, metric HIDDEN)");
  if (rc) return rc;
  t = sqlite3_malloc(sizeof *t);
  if (!t) return SQLITE_NOMEM;
  memset(t, 0, sizeof *t);
  t->db = db;
  sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
  *pp = &t->base;
  return SQLITE_OK;
}

static int knn_disconnect(sqlite3_vtab *p) {
  sqlite3_free(p);
  return SQLITE_OK;
}

/* store, name, queries and k must be given; metric may be. */
static int knn_best_index(sqlite3_vtab *p, sqlite3_index_info *info) {
  int seen = 0, at[5] = {-1, -1, -1, -1, -1}, n = 0;
  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &info->aConstraint[i];
    int k = c->iColumn - KC_ARG0;
    if (k < 0 || c->op != SQLITE_INDEX_CONSTRAINT_EQ) continue;
    if (!c->usable) return SQLITE_CONSTRAINT;
    if (at[k] < 0) at[k] = i;
    seen |= 1 << k;
  }
  if ((seen & 15) != 15) {
    sqlite3_free(p->zErrMsg);
    p->zErrMsg = sqlite3_mprintf(
        "numpack: numpack_knn(store, name, queries, "
        "k [, metric]) needs its first four "
        "arguments");
    return SQLITE_ERROR;
  }
  for (int k = 0; k < 5; k++) {
    if (at[k] < 0) continue;
    info->aConstraintUsage[at[k]].argvIndex = ++n;
    info->aConstraintUsage[at[k]].omit = 1;
  }
  info->idxNum = seen;
  if (info->nOrderBy == 2 && info->aOrderBy[0].iColumn == KC_QUERY &&
      !info->aOrderBy[0].desc && info->aOrderBy[1].iColumn == KC_RANK &&
      !info->aOrderBy[1].desc)
    info->orderByConsumed = 1;
  info->estimatedCost = 1e6;
  info->estimatedRows = 100;
  return SQLITE_OK;
}

static int knn_open(sqlite3_vtab *p, sqlite3_vtab_cursor **pp) {
  KnnCursor *c = sqlite3_malloc(sizeof *c);
  (void)p;
  if (!c) return SQLITE_NOMEM;
  memset(c, 0, sizeof *c);
  *pp = &c->base;
  return SQLITE_OK;
}

static void knn_clear(KnnCursor *c) {
  npk_free(c->hits);
  npk_free(c->idx);
  c->hits = 0;
  c->idx = 0;
  c->nq = c->room = c->found = c->i = 0;
}

static int knn_close(sqlite3_vtab_cursor *cur) {
  knn_clear((KnnCursor *)cur);
  sqlite3_free(cur);
  return SQLITE_OK;
}

/* Search while the store is held for reading: fills the cursor. */
static int knn_run(sqlite3_vtab_cursor *cur, NpkConn *conn, const char *name,
                   sqlite3_value *qv, sqlite3_int64 k, int metric) {
  KnnCursor *c = (KnnCursor *)cur;
  NpkSession *s = conn->ses;
  NpkArrayInfo info;
  NpkView view;
  NpkKnnScan scan;
  NpkRowSource src;
  uint64_t dim = 1, mark;
  const char *need;
  NpkErr pe;
  void *queries = 0;
  size_t nq, qbytes, per, found = 0;
  int rc = npk_array_info(s, name, &info), text;

  if (rc)
    return npk_vtab_errorf(cur->pVtab, npk_sqlite_rc(rc), "%s", npk_errmsg(s));
  for (uint32_t d = 1; d < info.ndim; d++) dim *= info.shape[d];
  if (metric < 0) metric = npk_knn_default_metric(info.dtype);
  if ((need = npk_knn_metric_needs(metric, info.dtype)))
    return npk_vtab_errorf(cur->pVtab, SQLITE_ERROR,
                           "numpack: numpack_knn: metric %s needs "
                           "%s; array \"%s\" is %s",
                           npk_knn_metric_name(metric), need, name,
                           npk_dtype_name(info.dtype));
  if (info.ndim < 2 || dim == 0)
    return npk_vtab_errorf(cur->pVtab, SQLITE_ERROR,
                           "numpack: numpack_knn: array \"%s\" "
                           "has no vectors (its rows have no elements)",
                           name);
  text = sqlite3_value_type(qv) == SQLITE_TEXT;
  if (!text && sqlite3_value_type(qv) != SQLITE_BLOB)
    return npk_vtab_errorf(
        cur->pVtab, SQLITE_MISMATCH,
        "numpack: numpack_knn: queries is "
        "an .npy of shape (q, %llu), JSON text or %s rows, not %s",
        (unsigned long long)dim, npk_dtype_name(info.dtype),
        sqlite3_value_type(qv) == SQLITE_NULL ? "NULL" : "a number");
  {
    const void *p =
        text ? (const void *)sqlite3_value_text(qv) : sqlite3_value_blob(qv);
    rc = npk_knn_parse(p ? p : "", (size_t)sqlite3_value_bytes(qv), text,
                       info.dtype, metric, dim, 0, &queries, &nq, &pe);
  }
  if (rc == NPK_NOMEM) return SQLITE_NOMEM;
  if (rc)
    return npk_vtab_errorf(cur->pVtab, SQLITE_MISMATCH,
                           "numpack: numpack_knn: array "
                           "\"%s\": %s",
                           name, npk_err_text(&pe));
  if (nq == 0) return SQLITE_OK; /* no query, no row */
  mark = npk_map_faults(s);
  rc = npk_view(s, name, &view);
  if (rc) {
    npk_free(queries);
    return npk_vtab_errorf(cur->pVtab, npk_sqlite_rc(rc), "%s", npk_errmsg(s));
  }
  npk_knn_scan_view(&scan, &view, metric, dim, &src);
  src.ses = s;
  src.array = name;
  scan.stop = npk_interrupt_requested;
  scan.stop_arg = s;
  c->nq = nq;
  c->room = npk_knn_room(&scan, (size_t)k);
  qbytes = (size_t)dim * npk_knn_query_item(info.dtype, metric);
  per = KNN_QUERY_BLOCK_BYTES / qbytes;
  if (per < 1) per = 1;
  if (c->room) {
    if (c->room > SIZE_MAX / sizeof *c->hits / nq) {
      npk_free(queries);
      return SQLITE_NOMEM;
    }
    c->hits = npk_malloc(nq * c->room * sizeof *c->hits);
    c->idx = npk_malloc(nq * c->room * sizeof *c->idx);
    if (!c->hits || !c->idx) {
      npk_free(queries);
      return SQLITE_NOMEM;
    }
  }
  /* One pass over the array per block of queries. */
  for (size_t q0 = 0; rc == NPK_OK && c->room && q0 < nq; q0 += per) {
    size_t n = nq - q0 < per ? nq - q0 : per;
    rc = npk_knn_search(&scan, (const unsigned char *)queries + q0 * qbytes, n,
                        (size_t)k, c->hits + q0 * c->room, &found);
  }
  npk_free(queries);
  if (rc == NPK_OK) rc = npk_map_check(s, mark, name);
  if (rc == NPK_NOMEM) return SQLITE_NOMEM;
  if (rc)
    return npk_vtab_errorf(cur->pVtab, npk_sqlite_rc(rc), "%s", npk_errmsg(s));
  c->found = c->room ? found : 0;
  for (size_t q = 0; q < nq; q++)
    for (size_t i = 0; i < c->found; i++) {
      size_t at = q * c->room + i;
      rc = npk_physical_to_logical(s, name, c->hits[at].row, &c->idx[at]);
      if (rc)
        return npk_vtab_errorf(cur->pVtab, npk_sqlite_rc(rc), "%s",
                               npk_errmsg(s));
    }
  return SQLITE_OK;
}

static int knn_filter(sqlite3_vtab_cursor *cur, int idx, const char *idxStr,
                      int argc, sqlite3_value **argv) {
  KnnCursor *c = (KnnCursor *)cur;
  const char *dir, *name;
  char *err = 0;
  NpkConn *conn = 0;
  sqlite3_int64 k;
  int metric = -1, rc;
  (void)idxStr;
  (void)argc;
  knn_clear(c);
  if (!(dir = npk_text_arg(argv[0], "numpack_knn", "the store path", &err)) ||
      !(name = npk_text_arg(argv[1], "numpack_knn", "the array name", &err))) {
    if (!err) return SQLITE_NOMEM;
    rc = npk_vtab_errorf(cur->pVtab, SQLITE_MISMATCH, "%s", err);
    sqlite3_free(err);
    return rc;
  }
  if (sqlite3_value_numeric_type(argv[3]) != SQLITE_INTEGER ||
      (k = sqlite3_value_int64(argv[3])) <= 0)
    return npk_vtab_errorf(cur->pVtab, SQLITE_MISMATCH,
                           "numpack: numpack_knn: k must be a "
                           "positive integer, not %s",
                           sqlite3_value_type(argv[3]) == SQLITE_NULL
                               ? "NULL"
                               : (const char *)sqlite3_value_text(argv[3]));
  if ((idx & 16) && (metric = npk_knn_metric_arg(argv[4])) < 0) {
    char *msg = npk_knn_metric_unknown("", "numpack_knn", argv[4]);
    rc = npk_vtab_error(cur->pVtab, msg ? SQLITE_ERROR : SQLITE_NOMEM, msg);
    sqlite3_free(msg);
    return rc;
  }
  rc = npk_conn_open(((KnnTab *)cur->pVtab)->db, dir, 0, &conn, &err);
  if (rc) {
    rc = npk_vtab_errorf(cur->pVtab, npk_sqlite_rc(rc), "%s",
                         err ? err : "numpack: cannot open the store");
    sqlite3_free(err);
    return rc;
  }
  rc = npk_conn_read_begin(conn, NULL);
  if (rc == NPK_OK && (rc = npk_scan_begin(conn->ses, name)))
    npk_read_end(conn->ses);
  if (rc) {
    rc = npk_vtab_errorf(cur->pVtab, npk_sqlite_rc(rc), "%s",
                         npk_errmsg(conn->ses));
  } else {
    rc = knn_run(cur, conn, name, argv[2], k, metric);
    npk_scan_end(conn->ses, name);
    npk_read_end(conn->ses);
  }
  npk_conn_release(conn);
  return rc;
}

static int knn_next(sqlite3_vtab_cursor *cur) {
  ((KnnCursor *)cur)->i++;
  return SQLITE_OK;
}

static int knn_eof(sqlite3_vtab_cursor *cur) {
  KnnCursor *c = (KnnCursor *)cur;
  return c->i >= c->nq * c->found;
}

static int knn_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col) {
  KnnCursor *c = (KnnCursor *)cur;
  size_t q = c->i / c->found, r = c->i % c->found, at = q * c->room + r;
  switch (col) {
    case KC_QUERY: sqlite3_result_int64(ctx, (sqlite3_int64)q); break;
    case KC_RANK: sqlite3_result_int64(ctx, (sqlite3_int64)r); break;
    case KC_ROWID:
      sqlite3_result_int64(ctx, (sqlite3_int64)c->hits[at].row);
      break;
    case KC_IDX: sqlite3_result_int64(ctx, (sqlite3_int64)c->idx[at]); break;
    case KC_DISTANCE: sqlite3_result_double(ctx, c->hits[at].dist); break;
  }
  return SQLITE_OK;
}

static int knn_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *pRowid) {
  *pRowid = (sqlite3_int64)((KnnCursor *)cur)->i;
  return SQLITE_OK;
}

static sqlite3_module knn_module = {
    0, /* iVersion */
    0, /* xCreate: eponymous only */
    knn_connect,
    knn_best_index,
    knn_disconnect,
    0, /* xDestroy */
    knn_open,
    knn_close,
    knn_filter,
    knn_next,
    knn_eof,
    knn_column,
    knn_rowid,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
};

int npk_knn_sql_register(sqlite3 *db) {
  int rc = sqlite3_create_function(
      db, "numpack_distance", 2,
      SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, 0, fn_distance, 0,
      0);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_function(
        db, "numpack_distance", 3,
        SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, 0, fn_distance,
        0, 0);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_module(db, "numpack_knn", &knn_module, 0);
  return rc;
}
