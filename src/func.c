/*
** func.c — the store-level SQL functions, NumPack's methods for SQL:
**
**   numpack_open(store [, drop_if_exists])   -> number of arrays
**   numpack_save(store, name, npy)            -> rows written
**   numpack_save(store, name, raw, dtype, shape)   (raw little-endian bytes)
**   numpack_load(store, name)                 -> npy of the live rows
**   numpack_append(store, name, npy)          -> rows appended
**   numpack_append(store, name, raw, dtype, shape)
**   numpack_replace(store, name, npy, idx)    -> rows replaced
**   numpack_getitem(store, name, idx)         -> npy
**   numpack_drop(store, name_or_json_list [, idx]) -> arrays or rows dropped
**   numpack_clone(store, src, dst)            -> rows copied
**   numpack_compact(store, name)              -> rows removed (NumPack's update)
**   numpack_reset(store)                      -> arrays removed
**   numpack_metadata(store)                   -> JSON, as get_metadata()
**   numpack_shape(store, name)                -> JSON, as get_shape()
**   numpack_io_stats(store)                   -> JSON of the I/O counters
**
** Arrays cross as .npy BLOBs (npy.c).  Index arguments are logical (index.c).
**
** Transactions: inside the connection's transaction a writing function
** joins it (through numpack_txn, conn.c), so COMMIT, ROLLBACK and
** savepoints apply to it as to a table's writes, and a failing call undoes
** all it did.  Outside transactions each call is atomic and durable on its
** own.
*/
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "numpack_int.h"
#include "conn.h"
#include "index.h"
#include "npy.h"

/* Report an engine error. */
static void fn_error(sqlite3_context *ctx, NpkConn *c, int rc) {
  npk_result_error(ctx, npk_sqlite_rc(rc), npk_errmsg(c->ses));
}

static void fn_msg(sqlite3_context *ctx, int code, const char *fmt, ...) {
  va_list ap;
  char *m;
  va_start(ap, fmt);
  m = sqlite3_vmprintf(fmt, ap);
  va_end(ap);
  npk_result_error(ctx, code, m);
  sqlite3_free(m);
}

/* The argument as text, or NULL after reporting why it is not a name
** (npk_text_arg). */
static const char *text_arg(sqlite3_context *ctx, sqlite3_value *v,
                            const char *fn, const char *what) {
  char *err;
  const char *z = npk_text_arg(v, fn, what, &err);
  if (z) return z;
  if (err) fn_msg(ctx, SQLITE_MISMATCH, "%s", err);
  else sqlite3_result_error_nomem(ctx);
  sqlite3_free(err);
  return 0;
}

/* Open the connection's session on the store named by ARGV[0]. */
static NpkConn *fn_conn(sqlite3_context *ctx, sqlite3_value **argv,
                        const char *fn, int flags) {
  const char *dir = text_arg(ctx, argv[0], fn, "the store path");
  NpkConn *c = 0;
  char *err = 0;
  int rc;
  if (!dir) return 0;
  rc = npk_conn_open(sqlite3_context_db_handle(ctx), dir, flags, &c, &err);
  if (rc) {
    fn_msg(ctx, rc, "%s", err ? err : "numpack: cannot open the store");
    sqlite3_free(err);
    return 0;
  }
  return c;
}

/* A write in progress (the bridge's record of it, conn.c). */
typedef NpkConnWrite FnTxn;

/* An error already reported with fn_msg(). */
#define FN_REPORTED (-1)

static int fn_write_begin(sqlite3_context *ctx, NpkConn *c, const char *fn,
                          FnTxn *t) {
  char *err;
  int rc;
  /* An interrupted statement writes nothing more (SQLite only checks
  ** between rows, and this call would commit on its own). */
  if ((rc = npk_check_interrupt(c->ses))) {
    fn_error(ctx, c, rc);
    return SQLITE_ERROR;
  }
  rc = npk_conn_write_begin(c, fn, t, &err);
  if (rc == SQLITE_OK) return SQLITE_OK;
  if (err) fn_msg(ctx, rc, "%s", err);
  else npk_result_error(ctx, rc, npk_errmsg(c->ses));
  sqlite3_free(err);
  return SQLITE_ERROR;
}

/* Finish a write: commit, or undo everything this call did.  RC is an
** engine code, or FN_REPORTED. */
static int fn_write_end(sqlite3_context *ctx, NpkConn *c, FnTxn *t, int rc) {
  if (rc == NPK_OK && (rc = npk_conn_write_end(c, t)) == NPK_OK) return rc;
  if (rc > 0) fn_error(ctx, c, rc);
  npk_conn_write_undo(c, t);
  return rc;
}

/* Parse an .npy argument; Fortran-order or big-endian data is converted
** into *PBUF. */
static int npy_arg(sqlite3_context *ctx, sqlite3_value *v, const char *fn,
                   int allow_0d, NpkNpy *out, void **pbuf) {
  NpkErr e;
  int rc;
  *pbuf = 0;
  if (sqlite3_value_type(v) != SQLITE_BLOB) {
    fn_msg(ctx, SQLITE_MISMATCH, "numpack: %s: the array must be an .npy BLOB",
           fn);
    return SQLITE_ERROR;
  }
  if ((rc = npk_npy_parse(sqlite3_value_blob(v), (size_t)sqlite3_value_bytes(v),
                          out, &e))) {
    fn_msg(ctx, npk_sqlite_rc(rc), "numpack: %s: %s", fn, npk_err_text(&e));
    return SQLITE_ERROR;
  }
  if (out->ndim == 0 && !allow_0d) {
    fn_msg(ctx, SQLITE_MISMATCH,
           "numpack: %s: a 0-d array has no rows; reshape it to (1,)", fn);
    return SQLITE_ERROR;
  }
  if (out->fortran || (out->big_endian && npk_dtype_size(out->dtype) > 1)) {
    const void *src = out->data;
    *pbuf = sqlite3_malloc64(out->data_bytes ? out->data_bytes : 1);
    if (!*pbuf) {
      sqlite3_result_error_nomem(ctx);
      return SQLITE_NOMEM;
    }
    if (out->fortran) {
      npk_npy_to_c(*pbuf, out);
      src = *pbuf;
    }
    if (out->big_endian) npk_npy_swap(*pbuf, src, out->count, out->dtype);
    out->data = *pbuf;
    out->fortran = 0;
  }
  return SQLITE_OK;
}

/* "[d0, d1, ...]": 1 to NPK_MAX_NDIM sizes, as numpack_shape() writes them.
** 0 on success. */
static int parse_shape_json(const char *z, NpkNpy *out) {
  const char *p = z;
  while (*p == ' ') p++;
  if (*p++ != '[') return 1;
  for (;;) {
    uint64_t v = 0;
    while (*p == ' ') p++;
    if (*p < '0' || *p > '9' || out->ndim == NPK_MAX_NDIM) return 1;
    for (; *p >= '0' && *p <= '9'; p++)
      if (__builtin_mul_overflow(v, 10, &v) ||
          __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
        return 1;
    out->shape[out->ndim++] = v;
    while (*p == ' ') p++;
    if (*p == ']') break;
    if (*p++ != ',') return 1;
  }
  for (p++; *p == ' '; p++) {}
  return *p != 0;
}

/* The raw form's ARGV[2..4]: little-endian C-order bytes, a dtype name and
** the whole array's shape as a JSON list.  Lets a C program (or ctypes)
** bind an array's own memory, with no .npy header to put in front of it. */
static int raw_arg(sqlite3_context *ctx, sqlite3_value **argv, const char *fn,
                   NpkNpy *out) {
  static const unsigned char empty[1];
  const char *dt, *shape;
  uint64_t bytes, nonzero;
  int too_big = 0;
  memset(out, 0, sizeof *out);
  if (sqlite3_value_type(argv[2]) != SQLITE_BLOB) {
    fn_msg(ctx, SQLITE_MISMATCH, "numpack: %s: the data must be a BLOB", fn);
    return SQLITE_ERROR;
  }
  if (!(dt = text_arg(ctx, argv[3], fn, "the dtype")) ||
      !(shape = text_arg(ctx, argv[4], fn, "the shape")))
    return SQLITE_ERROR;
  if ((out->dtype = npk_dtype_from_name(dt)) < 0) {
    fn_msg(ctx, SQLITE_ERROR,
           "numpack: %s: unknown dtype \"%s\" (want a "
           "little-endian NumPy name such as float32 or <f4)",
           fn, dt);
    return SQLITE_ERROR;
  }
  if (parse_shape_json(shape, out)) {
    fn_msg(ctx, SQLITE_ERROR,
           "numpack: %s: bad shape \"%s\" (want a JSON "
           "list of 1 to %d sizes, such as [1000,128])",
           fn, shape, NPK_MAX_NDIM);
    return SQLITE_ERROR;
  }
  /* As NumPy (and npy.c): each size fits int64, and so do the sizes
  ** other than 0 multiplied, times the item size.  A shape with a 0 holds
  ** no data but still counts its rows. */
  nonzero = 1;
  for (uint32_t d = 0; d < out->ndim && !too_big; d++) {
    too_big = out->shape[d] > (uint64_t)INT64_MAX;
    if (out->shape[d])
      too_big |= __builtin_mul_overflow(nonzero, out->shape[d], &nonzero);
  }
  too_big |= __builtin_mul_overflow(
                 nonzero, (uint64_t)npk_dtype_size(out->dtype), &bytes) ||
             bytes > INT64_MAX;
  out->count = 1;
  for (uint32_t d = 0; d < out->ndim; d++) out->count *= out->shape[d];
  bytes = out->count * (uint64_t)npk_dtype_size(out->dtype);
  out->data = sqlite3_value_blob(argv[2]);
  out->data_bytes = (uint64_t)sqlite3_value_bytes(argv[2]);
  if (!out->data) out->data = empty;
  if (too_big) {
    fn_msg(ctx, SQLITE_ERROR, "numpack: %s: shape %s is too large", fn, shape);
    return SQLITE_ERROR;
  }
  if (bytes != out->data_bytes) {
    fn_msg(ctx, SQLITE_MISMATCH,
           "numpack: %s: the data is %llu bytes; %s of "
           "shape %s needs %llu",
           fn, (unsigned long long)out->data_bytes, npk_dtype_name(out->dtype),
           shape, (unsigned long long)bytes);
    return SQLITE_ERROR;
  }
  if (out->dtype == NPK_BOOL) {
    long long bad = npk_bool_bad(out->data, out->data_bytes);
    if (bad >= 0) {
      fn_msg(ctx, SQLITE_MISMATCH,
             "numpack: %s: bool element %lld is %u; bool "
             "elements must be 0 or 1",
             fn, bad, out->data[bad]);
      return SQLITE_ERROR;
    }
  }
  return SQLITE_OK;
}

/* ---- numpack_open, numpack_save, numpack_append ---------------------- */

static void fn_open(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  int drop = 0, n = 0, rc;
  NpkConn *c;
  if (argc > 1) {
    /* 0 or 1 only (TRUE and FALSE are those): wiping a store on a stray
    ** 'yes' or 2 is not a guess to make. */
    sqlite3_int64 v = sqlite3_value_int64(argv[1]);
    if (sqlite3_value_type(argv[1]) != SQLITE_INTEGER || (v != 0 && v != 1)) {
      fn_msg(ctx, SQLITE_MISMATCH,
             "numpack: numpack_open: drop_if_exists "
             "must be 0 or 1");
      return;
    }
    drop = (int)v;
  }
  c = fn_conn(ctx, argv, "numpack_open", NPK_OPEN_CREATE);
  if (!c) return;
  if (drop) {
    /* Through the connection's own session, as numpack_reset: a scan of
    ** this connection is then refused at once (SQLITE_LOCKED) instead of
    ** waiting on the lock that scan holds, and the wait for other
    ** connections follows the busy timeout. */
    FnTxn t;
    if (fn_write_begin(ctx, c, "numpack_open", &t) != SQLITE_OK ||
        fn_write_end(ctx, c, &t, npk_reset(c->ses)) != NPK_OK) {
      npk_conn_release(c);
      return;
    }
  }
  /* Opening a store to work on it recovers an interrupted commit, as
  ** NumPack's constructor would find the store whole. */
  rc = npk_recover(c->ses);
  /* The count is read as any read (noted in a transaction). */
  if (rc == NPK_OK && (rc = npk_conn_read_begin(c, NULL)) == NPK_OK) {
    rc = npk_array_count(c->ses, &n);
    npk_read_end(c->ses);
  }
  if (rc) fn_error(ctx, c, rc);
  else sqlite3_result_int(ctx, n);
  npk_conn_release(c);
}

static void fn_save_append(sqlite3_context *ctx, int argc, sqlite3_value **argv,
                           int append) {
  const char *fn = append ? "numpack_append" : "numpack_save";
  const char *name;
  NpkConn *c;
  NpkNpy a;
  void *buf = 0;
  FnTxn t;
  int rc;
  if (!(name = text_arg(ctx, argv[1], fn, "the array name"))) return;
  if (argc == 5 ? raw_arg(ctx, argv, fn, &a)
                : npy_arg(ctx, argv[2], fn, 0, &a, &buf))
    return;
  c = fn_conn(ctx, argv, fn, append ? 0 : NPK_OPEN_CREATE);
  if (c && fn_write_begin(ctx, c, fn, &t) == SQLITE_OK) {
    rc = append ? npk_append(c->ses, name, a.dtype, a.ndim, a.shape, a.data)
                : npk_save(c->ses, name, a.dtype, a.ndim, a.shape, a.data);
    if (fn_write_end(ctx, c, &t, rc) == NPK_OK)
      sqlite3_result_int64(ctx, (sqlite3_int64)a.shape[0]);
  }
  npk_conn_release(c);
  sqlite3_free(buf);
}

static void fn_save(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  fn_save_append(ctx, argc, argv, 0);
}

static void fn_append(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  fn_save_append(ctx, argc, argv, 1);
}

/* ---- reading: numpack_load, numpack_getitem --------------------------- */

/* Logical indexes of ARG over the array's live rows, into IX (a slice is
** kept as its bounds, never listed).  IX->scalar is set for a single
** integer index (NumPy drops the first dimension then).  MAX bounds the
** rows selected. */
static int rows_arg(sqlite3_context *ctx, const char *fn, const char *name,
                    sqlite3_value *arg, uint64_t nlive, uint64_t max,
                    int max_is_values, NpkIndex *ix) {
  NpkErr e;
  int rc, code;
  memset(ix, 0, sizeof *ix);
  if (sqlite3_value_type(arg) == SQLITE_INTEGER) {
    uint64_t r;
    if (npk_index_one(sqlite3_value_int64(arg), nlive, &r, &e)) {
      fn_msg(ctx, SQLITE_RANGE, "numpack: %s: array \"%s\": %s", fn, name,
             npk_err_text(&e));
      return SQLITE_RANGE;
    }
    ix->rows = npk_malloc(sizeof *ix->rows);
    if (!ix->rows) {
      sqlite3_result_error_nomem(ctx);
      return SQLITE_NOMEM;
    }
    ix->rows[0] = r;
    ix->n = 1;
    ix->scalar = 1;
    return SQLITE_OK;
  }
  if (sqlite3_value_type(arg) != SQLITE_TEXT &&
      sqlite3_value_type(arg) != SQLITE_BLOB) {
    fn_msg(ctx, SQLITE_MISMATCH,
           "numpack: %s: the index must be an integer, "
           "a JSON array of integers, a start:stop slice or a BLOB of "
           "int64 values",
           fn);
    return SQLITE_MISMATCH;
  }
  if (sqlite3_value_type(arg) == SQLITE_BLOB)
    rc = npk_index_int64(sqlite3_value_blob(arg),
                         (size_t)sqlite3_value_bytes(arg), nlive, max, ix, &e);
  else
    rc = npk_index_parse_ix((const char *)sqlite3_value_text(arg),
                            (size_t)sqlite3_value_bytes(arg), nlive, max, ix,
                            &e);
  if (rc == NPK_OK && ix->n > max) {
    /* A slice, which npk_index_parse_ix never bounds. */
    npk_index_free(ix);
    rc = NPK_TOOBIG;
    sqlite3_snprintf((int)sizeof e.msg, e.msg,
                     "numpack: the index selects more than %llu rows",
                     (unsigned long long)max);
  }
  if (rc == NPK_OK) return SQLITE_OK;
  /* The one place an index's error becomes SQLite's. */
  switch (rc) {
    case NPK_TOOBIG:
      if (max_is_values) {
        fn_msg(ctx, SQLITE_MISMATCH,
               "numpack: %s: array \"%s\": the values "
               "have %llu rows and the index selects more",
               fn, name, (unsigned long long)max);
        return SQLITE_MISMATCH;
      }
      fn_msg(ctx, SQLITE_TOOBIG,
             "numpack: %s: array \"%s\": %s, more than "
             "SQLite's BLOB limit holds; read it in batches with "
             "numpack_stream(store, name, rows)",
             fn, name, npk_err_text(&e));
      return SQLITE_TOOBIG;
    case NPK_NOMEM: sqlite3_result_error_nomem(ctx); return SQLITE_NOMEM;
    default:
      code = npk_sqlite_rc(rc);
      fn_msg(ctx, code, "numpack: %s: array \"%s\": %s", fn, name,
             npk_err_text(&e));
      return code;
  }
}

/* Physical rows of IX's rows [K, K+N) into OUT. */
#define MAP_BATCH 4096
static int map_rows(NpkSession *s, const char *name, const NpkIndex *ix,
                    uint64_t k, uint64_t n, uint64_t *out) {
  for (uint64_t i = 0; i < n; i++) out[i] = npk_index_row(ix, k + i);
  return npk_logical_to_physical_n(s, name, out, n);
}

/* Large results get memory of their own, mapped with transparent huge pages
** as NumPy does for its arrays: filling 512 MB of fresh 4 KB pages costs
** more than reading the data.  The mapping's length is kept in front of the
** bytes handed to SQLite, for big_free().
**
** The last freed mapping of at most BIG_KEEP bytes is kept for the next
** result that fits it, as malloc keeps freed memory of up to 32 MB: the
** kernel zeroes every page of a fresh mapping at its first touch, which
** for a result of tens of MB read from the page cache costs as much as the
** copy (a loop of 25 MB loads: twice np.load's time, whose array memory
** malloc hands back).  Every byte of a result is written before SQLite
** gets it, so nothing of the last one shows through. */
#define BIG_MIN  (4u << 20)
#define BIG_HEAD 64
#define BIG_KEEP (32u << 20)

static pthread_mutex_t big_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned char *big_kept; /* the kept mapping, or NULL */

static uint64_t big_len(const unsigned char *map) {
  uint64_t len;
  memcpy(&len, map, sizeof len);
  return len;
}

static void *big_alloc(uint64_t n) {
  unsigned char *p = 0;
  uint64_t len = n + BIG_HEAD;
  if (n < BIG_MIN) return sqlite3_malloc64(n ? n : 1);
  pthread_mutex_lock(&big_mu);
  /* Not one twice as large: that would hold on to memory the result
  ** does not use. */
  if (big_kept && big_len(big_kept) >= len && big_len(big_kept) / 2 < len) {
    p = big_kept;
    big_kept = 0;
  }
  pthread_mutex_unlock(&big_mu);
  if (p) return p + BIG_HEAD;
  p = mmap(0, (size_t)len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
           -1, 0);
  if (p == MAP_FAILED) return 0;
#ifdef MADV_HUGEPAGE
  madvise(p, (size_t)len, MADV_HUGEPAGE);
#endif
  memcpy(p, &len, sizeof len);
  return p + BIG_HEAD;
}

static void big_free(void *q) {
  unsigned char *p = q;
  if (!p) return;
  p -= BIG_HEAD;
  if (big_len(p) <= BIG_KEEP) {
    unsigned char *old;
    pthread_mutex_lock(&big_mu);
    old = big_kept;
    big_kept = p;
    pthread_mutex_unlock(&big_mu);
    p = old;
  }
  if (p) munmap(p, (size_t)big_len(p));
}

/* The module unloaded (its last connection closed): the kept mapping would
** otherwise outlive every pointer to it. */
__attribute__((destructor)) static void big_unload(void) {
  if (big_kept) munmap(big_kept, (size_t)big_len(big_kept));
  big_kept = 0;
}

/* The destructor matching big_alloc(N). */
static void (*big_destructor(uint64_t n))(void *) {
  return n < BIG_MIN ? sqlite3_free : big_free;
}

/* Rows numpack_getitem reads without the store's lock at most: copied
** under the store's mutex, they keep other threads of the process waiting
** while they are. */
#define QUICK_GET_MAX 256

/* Rows numpack_getitem maps and copies at once under the lock, their
** numbers on the stack; an interrupt is heard between batches. */
#define GET_BATCH 256

/* Return the rows IX selects (every live row when IX is NULL) as an .npy
** BLOB of shape (n, ...), or of the row shape alone for a scalar index.
** QUICK: the caller holds no read lock, and IX lists at most QUICK_GET_MAX
** rows: they are read without the lock (npk_conn_read_rows), and 0
** returned, nothing given to CTX, when that could not be done.  Else 1. */
static int result_npy(sqlite3_context *ctx, NpkConn *c, const char *name,
                      const NpkArrayInfo *info, const NpkIndex *ix, int quick) {
  int all = ix == NULL, scalar = ix && ix->scalar;
  uint64_t n = ix ? ix->n : 0;
  uint64_t shape[NPK_MAX_NDIM], data;
  uint32_t ndim = info->ndim;
  size_t hdr;
  sqlite3_int64 limit =
      sqlite3_limit(sqlite3_context_db_handle(ctx), SQLITE_LIMIT_LENGTH, -1);
  unsigned char *out, *p;
  NpkView v;
  uint64_t mark;
  int rc;

  memcpy(shape, info->shape, sizeof shape);
  shape[0] = all ? info->live_rows : n;
  if (scalar) {
    memmove(shape, shape + 1, (ndim - 1) * sizeof *shape);
    ndim--;
  }
  data = shape[0] * info->row_bytes;
  if (scalar) data = info->row_bytes;
  hdr = npk_npy_header_size(info->dtype, ndim, shape);
  if (data > (uint64_t)limit || hdr + data > (uint64_t)limit) {
    fn_msg(ctx, SQLITE_TOOBIG,
           "numpack: array \"%s\" is %llu bytes, over "
           "SQLite's BLOB limit of %lld; read it in batches with "
           "numpack_stream(store, name, rows)",
           name, (unsigned long long)(hdr + data), (long long)limit);
    return 1;
  }
  out = big_alloc(hdr + data);
  if (!out) {
    sqlite3_result_error_nomem(ctx);
    return 1;
  }
  npk_npy_header(info->dtype, ndim, shape, out, hdr);
  p = out + hdr;
  if (quick) {
    uint64_t rows[QUICK_GET_MAX];
    for (uint64_t k = 0; k < n; k++) rows[k] = npk_index_row(ix, k);
    if (npk_conn_read_rows(c, name, info, rows, n, p) != NPK_OK) {
      big_destructor(hdr + data)(out);
      return 0;
    }
    sqlite3_result_blob64(ctx, out, hdr + data, big_destructor(hdr + data));
    return 1;
  }
  mark = npk_map_faults(c->ses);
  rc = npk_view(c->ses, name, &v);
  if (rc == NPK_OK &&
      (all || (!ix->rows && ix->step == 1 && n && info->row_bytes))) {
    /* Every live row, or a plain slice: a run of live rows, copied in
    ** pieces of about 4 MiB so that an interrupt is heard. */
    uint64_t pos = 0, total = all ? info->live_rows : n, done = 0;
    uint64_t piece = info->row_bytes >= (1u << 22) ? 1
                     : info->row_bytes ? (1u << 22) / info->row_bytes
                                       : total;
    if (!all) rc = npk_logical_to_physical(c->ses, name, ix->first, &pos);
    while (rc == NPK_OK && done < total &&
           (rc = npk_check_interrupt(c->ses)) == NPK_OK) {
      uint64_t k = total - done < piece ? total - done : piece;
      rc =
          npk_copy_live_rows(c->ses, name, &pos, k, p + done * info->row_bytes);
      done += k;
    }
  } else if (info->row_bytes) {
    /* Rows of no bytes have nothing to copy, however many.  The others in
    ** batches, each with one look-up of the array, between which an
    ** interrupt is heard. */
    uint64_t rows[GET_BATCH];
    for (uint64_t k = 0; rc == NPK_OK && k < n; k += GET_BATCH) {
      uint64_t m = n - k < GET_BATCH ? n - k : GET_BATCH;
      if ((k & 0xFFFF) == 0 && (rc = npk_check_interrupt(c->ses))) break;
      rc = map_rows(c->ses, name, ix, k, m, rows);
      if (rc == NPK_OK)
        rc = npk_copy_rows(c->ses, name, rows, m, p + k * info->row_bytes);
    }
  }
  if (rc == NPK_OK) rc = npk_map_check(c->ses, mark, name);
  if (rc) {
    big_destructor(hdr + data)(out);
    fn_error(ctx, c, rc);
    return 1;
  }
  sqlite3_result_blob64(ctx, out, hdr + data, big_destructor(hdr + data));
  return 1;
}

static void fn_load(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  const char *name;
  NpkConn *c;
  NpkArrayInfo info;
  int rc;
  (void)argc;
  if (!(name = text_arg(ctx, argv[1], "numpack_load", "the array name")))
    return;
  if (!(c = fn_conn(ctx, argv, "numpack_load", NPK_CONN_READ))) return;
  rc = npk_conn_read_begin(c, NULL);
  if (rc == NPK_OK) {
    rc = npk_array_info(c->ses, name, &info);
    if (rc == NPK_OK) result_npy(ctx, c, name, &info, NULL, 0);
    npk_read_end(c->ses);
  }
  if (rc) fn_error(ctx, c, rc);
  npk_conn_release(c);
}

/* Rows of INFO's array that fit in one BLOB. */
static uint64_t blob_rows(sqlite3_context *ctx, const NpkArrayInfo *info) {
  sqlite3_int64 limit =
      sqlite3_limit(sqlite3_context_db_handle(ctx), SQLITE_LIMIT_LENGTH, -1);
  return info->row_bytes ? (uint64_t)limit / info->row_bytes : UINT64_MAX;
}

/* numpack_getitem of a few rows, outside any SQL transaction: read without
** the store's lock, as a point lookup is (npk_conn_read_rows).  1 when CTX
** has the result or an error of the index argument, 0 when the call must
** read under the lock. */
static int quick_getitem(sqlite3_context *ctx, NpkConn *c, const char *name,
                         sqlite3_value *arg) {
  NpkArrayInfo info;
  NpkIndex ix = {0};
  int done = 0;
  /* An interrupt, or an array not found, is told by the way under the
  ** lock, as for every call. */
  if (!npk_conn_may_read_unlocked(c) || npk_check_interrupt(c->ses) ||
      npk_array_info(c->ses, name, &info) != NPK_OK || !info.row_bytes)
    return 0;
  if (rows_arg(ctx, "numpack_getitem", name, arg, info.live_rows,
               blob_rows(ctx, &info), 0, &ix) != SQLITE_OK)
    done = 1;
  else if (ix.n > 0 && ix.n <= QUICK_GET_MAX)
    done = result_npy(ctx, c, name, &info, &ix, 1);
  npk_index_free(&ix);
  return done;
}

static void fn_getitem(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  const char *name;
  NpkConn *c;
  NpkArrayInfo info;
  NpkIndex ix = {0};
  int rc;
  (void)argc;
  if (!(name = text_arg(ctx, argv[1], "numpack_getitem", "the array name")))
    return;
  if (!(c = fn_conn(ctx, argv, "numpack_getitem", NPK_CONN_READ))) return;
  if (quick_getitem(ctx, c, name, argv[2])) {
    npk_conn_release(c);
    return;
  }
  rc = npk_conn_read_begin(c, NULL);
  if (rc == NPK_OK) {
    rc = npk_array_info(c->ses, name, &info);
    if (rc) fn_error(ctx, c, rc);
    else if (rows_arg(ctx, "numpack_getitem", name, argv[2], info.live_rows,
                      blob_rows(ctx, &info), 0, &ix) == SQLITE_OK)
      result_npy(ctx, c, name, &info, &ix, 0);
    npk_read_end(c->ses);
  } else {
    fn_error(ctx, c, rc);
  }
  npk_index_free(&ix);
  npk_conn_release(c);
}

/* ---- numpack_replace, numpack_drop ------------------------------------ */

/* Bytes of repeated rows written per call when one value row is
** broadcast to many. */
#define BROADCAST_BYTES (4u << 20)

/* TIMES copies of the SIZE bytes at UNIT, one after another, into DST. */
static void repeat(unsigned char *dst, const void *unit, size_t size,
                   uint64_t times) {
  for (uint64_t i = 0; i < times; i++) memcpy(dst + i * size, unit, size);
}

static void fn_replace(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  static const char fn[] = "numpack_replace";
  const char *name;
  NpkConn *c;
  NpkNpy a;
  NpkArrayInfo info;
  uint64_t n = 0, value_rows, vshape[NPK_MAX_NDIM], *phys = 0;
  NpkIndex ix = {0};
  uint32_t vndim;
  void *buf = 0;
  unsigned char *wide = 0, *elem_row = 0;
  FnTxn t;
  int rc, one_elem;
  (void)argc;
  if (!(name = text_arg(ctx, argv[1], fn, "the array name"))) return;
  /* One row may come without its leading dimension: for a 1-D array that
  ** is a 0-d array, as numpack_getitem(store, name, 0) returns it. */
  if (npy_arg(ctx, argv[2], fn, 1, &a, &buf)) return;
  c = fn_conn(ctx, argv, fn, 0);
  if (!c || fn_write_begin(ctx, c, fn, &t) != SQLITE_OK) goto done;
  rc = npk_array_info(c->ses, name, &info);
  /* A single element (a 0-d array) fills every element of the rows, as
  ** NumPy's a[idx] = scalar does; it becomes one row here. */
  one_elem =
      rc == NPK_OK && a.ndim == 0 && info.ndim > 1 && a.dtype == info.dtype;
  if (one_elem) {
    size_t item = (size_t)npk_dtype_size(a.dtype);
    if (!(elem_row = sqlite3_malloc64(info.row_bytes + 1))) {
      sqlite3_result_error_nomem(ctx);
      rc = FN_REPORTED;
    } else {
      repeat(elem_row, a.data, item, info.row_bytes / item);
      a.data = elem_row;
      a.ndim = info.ndim - 1;
      memcpy(a.shape, info.shape + 1, a.ndim * sizeof *a.shape);
    }
  }
  if (rc == NPK_OK) {
    /* The values as rows: (k, row shape...), or one row without its
    ** leading dimension (then a 0-d array is the row of a 1-D array). */
    vndim = a.ndim + (a.ndim + 1 == info.ndim);
    if (vndim == 0) vndim = 1; /* 0-d against N-D: a mismatch */
    vshape[0] = a.ndim + 1 == info.ndim || a.ndim == 0 ? 1 : a.shape[0];
    memcpy(vshape + 1, a.shape + (a.ndim + 1 != info.ndim),
           (vndim - 1) * sizeof *vshape);
    value_rows = vshape[0];
    if (a.dtype != info.dtype || vndim != info.ndim ||
        memcmp(vshape + 1, info.shape + 1, (vndim - 1) * sizeof *vshape)) {
      char want[400], got[400];
      fn_msg(ctx, SQLITE_MISMATCH,
             "numpack: %s: array \"%s\" has %s rows of "
             "shape %s; the values are %s rows of shape %s",
             fn, name, npk_dtype_name(info.dtype),
             npk_row_shape_text(info.shape, info.ndim, 1, want, sizeof want),
             npk_dtype_name(a.dtype),
             npk_row_shape_text(vshape, vndim, 1, got, sizeof got));
      rc = FN_REPORTED;
    }
  }
  /* As NumPy's a[idx] = values: as many value rows as the index selects,
  ** or one row for them all.  The index may not select more rows than the
  ** values hold, so a slice of a billion rows fails before a billion
  ** indexes are listed. */
  if (rc == NPK_OK && rows_arg(ctx, fn, name, argv[3], info.live_rows,
                               value_rows == 1 ? UINT64_MAX : value_rows,
                               value_rows != 1, &ix) != SQLITE_OK)
    rc = FN_REPORTED;
  n = ix.n;
  if (rc == NPK_OK && value_rows != 1 && n != value_rows) {
    fn_msg(ctx, SQLITE_MISMATCH,
           "numpack: %s: array \"%s\": the values have "
           "%llu rows and the index selects %llu",
           fn, name, (unsigned long long)value_rows, (unsigned long long)n);
    rc = FN_REPORTED;
  }
  /* Rows of no bytes are replaced by nothing: the index selected live
  ** rows, and that is all there is to check. */
  if (rc == NPK_OK && n && info.row_bytes &&
      !(phys = sqlite3_malloc64(MAP_BATCH * sizeof *phys))) {
    sqlite3_result_error_nomem(ctx);
    rc = FN_REPORTED;
  }
  if (rc == NPK_OK && n && info.row_bytes && value_rows == 1 && n > 1) {
    /* The one row, repeated in a buffer of a few MB, written batch by
    ** batch. */
    uint64_t k = BROADCAST_BYTES / info.row_bytes;
    if (k == 0) k = 1;
    if (k > n) k = n;
    if (k > MAP_BATCH) k = MAP_BATCH;
    if (!(wide = sqlite3_malloc64(k * info.row_bytes + 1))) {
      sqlite3_result_error_nomem(ctx);
      rc = FN_REPORTED;
    } else {
      repeat(wide, a.data, (size_t)info.row_bytes, k);
      for (uint64_t i = 0; rc == NPK_OK && i < n; i += k) {
        uint64_t m = n - i < k ? n - i : k;
        rc = map_rows(c->ses, name, &ix, i, m, phys);
        if (rc == NPK_OK) rc = npk_replace_rows(c->ses, name, phys, m, wide);
      }
    }
  } else if (rc == NPK_OK && n && info.row_bytes) {
    for (uint64_t i = 0; rc == NPK_OK && i < n; i += MAP_BATCH) {
      uint64_t m = n - i < MAP_BATCH ? n - i : MAP_BATCH;
      rc = map_rows(c->ses, name, &ix, i, m, phys);
      if (rc == NPK_OK)
        rc = npk_replace_rows(
            c->ses, name, phys, m,
            (const unsigned char *)a.data + i * info.row_bytes);
    }
  }
  if (fn_write_end(ctx, c, &t, rc) == NPK_OK)
    sqlite3_result_int64(ctx, (sqlite3_int64)n);
done:
  npk_index_free(&ix);
  sqlite3_free(phys);
  sqlite3_free(wide);
  sqlite3_free(elem_row);
  sqlite3_free(buf);
  npk_conn_release(c);
}

/* 1 if the JSON text T escapes a NUL character ("\u0000").  SQLite's
** JSON functions end such a string there without a word, which would turn
** "a\u0000b" into the name of array "a". */
static int json_has_nul(const char *t) {
  for (; *t; t++) {
    if (*t != '\\') continue;
    if (strncmp(t + 1, "u0000", 5) == 0) return 1;
    if (t[1]) t++; /* skip the escaped character */
  }
  return 0;
}

/* Order of two slots of a names list: by name, then by place, so that
** the first of equal names sorts first. */
static int name_slot_cmp(const void *a, const void *b) {
  char *const *x = *(char *const *const *)a;
  char *const *y = *(char *const *const *)b;
  int c = strcmp(*x, *y);
  return c ? c : (x > y) - (x < y);
}

/* Keep the first of each name in NAMES (*PN of them), in their order: an
** array listed twice is dropped once (and its rows once, where a second
** pass would take the rows that moved into their logical places). */
static int names_unique(char **names, int *pn) {
  char ***by = 0;
  int n = *pn, kept = 0;
  if (n < 2) return SQLITE_OK;
  if (!(by = sqlite3_malloc64((sqlite3_uint64)n * sizeof *by)))
    return SQLITE_NOMEM;
  for (int i = 0; i < n; i++) by[i] = &names[i];
  qsort(by, (size_t)n, sizeof *by, name_slot_cmp);
  for (int i = 1, first = 0; i < n; i++)
    if (strcmp(*by[i], *by[first]) == 0) {
      sqlite3_free(*by[i]);
      *by[i] = 0;
    } else {
      first = i;
    }
  sqlite3_free(by);
  for (int i = 0; i < n; i++)
    if (names[i]) names[kept++] = names[i];
  *pn = kept;
  return SQLITE_OK;
}

/* The array names of ARG: one name, or a JSON array of strings.  Each is
** a name as text_arg() takes it: no NUL character.  Malformed JSON is
** SQLITE_ERROR, as any other malformed argument; a list holding other than
** strings is SQLITE_MISMATCH. */
static int names_arg(sqlite3_context *ctx, sqlite3_value *arg, char ***pnames,
                     int *pn) {
  static const char fn[] = "numpack_drop";
  const char *t;
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  sqlite3_stmt *st = 0;
  int n = 0, rc, nul = 0, typed = 0;
  *pnames = 0;
  *pn = 0;
  if (sqlite3_value_type(arg) != SQLITE_TEXT) {
    fn_msg(ctx, SQLITE_MISMATCH,
           "numpack: numpack_drop: give an array name or a JSON list of names");
    return SQLITE_ERROR;
  }
  if (!(t = text_arg(ctx, arg, fn, "the array name"))) return SQLITE_ERROR;
  if (t[0] != '[') {
    *pnames = sqlite3_malloc(sizeof(char *));
    if (!*pnames || !((*pnames)[0] = sqlite3_mprintf("%s", t))) {
      sqlite3_result_error_nomem(ctx);
      return SQLITE_NOMEM;
    }
    *pn = 1;
    return SQLITE_OK;
  }
  /* SQLite's own JSON reader, rather than a second parser here. */
  nul = json_has_nul(t);
  rc = nul ? SQLITE_MISMATCH
           : sqlite3_prepare_v2(db, "SELECT type, value FROM json_each(?1)", -1,
                                &st, 0);
  if (rc == SQLITE_OK) sqlite3_bind_value(st, 1, arg);
  while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    char **p;
    const char *name;
    if (strcmp((const char *)sqlite3_column_text(st, 0), "text") != 0) {
      typed = 1;
      rc = SQLITE_MISMATCH;
      break;
    }
    name = (const char *)sqlite3_column_text(st, 1);
    if (name && (int)strlen(name) != sqlite3_column_bytes(st, 1)) {
      nul = 1;
      rc = SQLITE_MISMATCH;
      break;
    }
    p = sqlite3_realloc64(*pnames, (sqlite3_uint64)(n + 1) * sizeof *p);
    if (!p) {
      rc = SQLITE_NOMEM;
      break;
    }
    *pnames = p;
    if (!(p[n] = sqlite3_mprintf("%s", name))) {
      rc = SQLITE_NOMEM;
      break;
    }
    *pn = ++n;
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  if (rc == SQLITE_DONE) rc = names_unique(*pnames, pn);
  if (rc == SQLITE_OK) return SQLITE_OK;
  if (rc == SQLITE_NOMEM) {
    sqlite3_result_error_nomem(ctx);
    return SQLITE_NOMEM;
  }
  if (nul)
    fn_msg(ctx, SQLITE_MISMATCH,
           "numpack: numpack_drop: an array name of "
           "the list contains a NUL character");
  else
    fn_msg(ctx, typed ? SQLITE_MISMATCH : SQLITE_ERROR,
           "numpack: numpack_drop: \"%s\" is not a "
           "JSON list of array names",
           t);
  return SQLITE_ERROR;
}

static void fn_drop(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  static const char fn[] = "numpack_drop";
  NpkConn *c = 0;
  char **names = 0;
  int n = 0, rc = NPK_OK;
  FnTxn t;
  sqlite3_int64 count = 0;
  if (argc > 2 && sqlite3_value_type(argv[2]) == SQLITE_NULL) {
    /* NumPack's indexes=None drops the array; in SQL a NULL more often
    ** comes from a subquery that found nothing, so it drops nothing. */
    fn_msg(ctx, SQLITE_MISMATCH,
           "numpack: numpack_drop: the index is NULL; "
           "call numpack_drop(store, name) to drop a whole array");
    return;
  }
  if (names_arg(ctx, argv[1], &names, &n) != SQLITE_OK) goto done;
  if (!(c = fn_conn(ctx, argv, fn, 0))) goto done;
  if (fn_write_begin(ctx, c, fn, &t) != SQLITE_OK) goto done;
  for (int i = 0; i < n && rc == NPK_OK; i++) {
    NpkArrayInfo info;
    NpkIndex ix = {0};
    uint64_t nr = 0;
    if (argc < 3) {
      rc = npk_drop(c->ses, names[i]);
      count++;
      continue;
    }
    rc = npk_array_info(c->ses, names[i], &info);
    if (rc == NPK_OK && rows_arg(ctx, fn, names[i], argv[2], info.live_rows,
                                 UINT64_MAX, 0, &ix))
      rc = FN_REPORTED;
    nr = ix.n;
    if (rc == NPK_OK && ix.rows) {
      /* A list is as long as its text.  A row listed twice is dropped
      ** once, and counted once. */
      rc = map_rows(c->ses, names[i], &ix, 0, nr, ix.rows);
      if (rc == NPK_OK) {
        nr = npk_rows_sort_unique(ix.rows, nr);
        rc = npk_delete_rows(c->ses, names[i], ix.rows, nr);
      }
    } else if (rc == NPK_OK && nr) {
      /* A slice: the same rows walked upwards, never listed. */
      uint64_t step =
          ix.step < 0 ? (uint64_t)0 - (uint64_t)ix.step : (uint64_t)ix.step;
      uint64_t first = ix.step < 0 ? ix.first - (nr - 1) * step : ix.first;
      rc = npk_delete_slice(c->ses, names[i], first, step, nr);
    }
    count += (sqlite3_int64)nr;
    npk_index_free(&ix);
  }
  if (fn_write_end(ctx, c, &t, rc) == NPK_OK) sqlite3_result_int64(ctx, count);
done:
  npk_conn_release(c);
  for (int i = 0; i < n; i++) sqlite3_free(names[i]);
  sqlite3_free(names);
}

/* ---- numpack_clone, numpack_compact, numpack_reset --------------------- */

static void fn_clone(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  static const char fn[] = "numpack_clone";
  const char *src, *dst;
  NpkConn *c;
  NpkArrayInfo info;
  FnTxn t;
  int rc;
  (void)argc;
  if (!(src = text_arg(ctx, argv[1], fn, "the source name")) ||
      !(dst = text_arg(ctx, argv[2], fn, "the target name")))
    return;
  if (!(c = fn_conn(ctx, argv, fn, 0))) return;
  if (fn_write_begin(ctx, c, fn, &t) == SQLITE_OK) {
    rc = npk_clone(c->ses, src, dst);
    if (rc == NPK_OK) rc = npk_array_info(c->ses, dst, &info);
    if (fn_write_end(ctx, c, &t, rc) == NPK_OK)
      sqlite3_result_int64(ctx, (sqlite3_int64)info.rows);
  }
  npk_conn_release(c);
}

static void fn_compact(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  static const char fn[] = "numpack_compact";
  const char *name;
  NpkConn *c;
  NpkArrayInfo before, after;
  FnTxn t;
  int rc;
  (void)argc;
  if (!(name = text_arg(ctx, argv[1], fn, "the array name"))) return;
  if (!(c = fn_conn(ctx, argv, fn, 0))) return;
  if (fn_write_begin(ctx, c, fn, &t) == SQLITE_OK) {
    rc = npk_array_info(c->ses, name, &before);
    if (rc == NPK_OK) rc = npk_compact(c->ses, name);
    if (rc == NPK_OK) rc = npk_array_info(c->ses, name, &after);
    if (fn_write_end(ctx, c, &t, rc) == NPK_OK)
      sqlite3_result_int64(ctx, (sqlite3_int64)(before.rows - after.rows));
  }
  npk_conn_release(c);
}

static void fn_reset(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  static const char fn[] = "numpack_reset";
  NpkConn *c;
  FnTxn t;
  int rc, n = 0;
  (void)argc;
  if (!(c = fn_conn(ctx, argv, fn, 0))) return;
  if (fn_write_begin(ctx, c, fn, &t) == SQLITE_OK) {
    rc = npk_array_count(c->ses, &n);
    if (rc == NPK_OK) rc = npk_reset(c->ses);
    if (fn_write_end(ctx, c, &t, rc) == NPK_OK) sqlite3_result_int(ctx, n);
  }
  npk_conn_release(c);
}

/* ---- JSON introspection ---------------------------------------------- */

/* V in decimal after the character SEP (none when 0). */
static void json_u64(sqlite3_str *s, char sep, uint64_t v) {
  char buf[21];
  size_t n = 0;
  if (sep) buf[n++] = sep;
  n += npk_u64_text(buf + n, v);
  sqlite3_str_append(s, buf, (int)n);
}

void npk_json_shape(sqlite3_str *s, const NpkArrayInfo *a, uint64_t first) {
  json_u64(s, '[', first);
  for (uint32_t d = 1; d < a->ndim; d++) json_u64(s, ',', a->shape[d]);
  sqlite3_str_appendchar(s, 1, ']');
}

static void result_json(sqlite3_context *ctx, sqlite3_str *s) {
  int rc = sqlite3_str_errcode(s), n = sqlite3_str_length(s);
  char *z = sqlite3_str_finish(s);
  if (rc || !z) {
    sqlite3_free(z);
    sqlite3_result_error_nomem(ctx);
    return;
  }
  sqlite3_result_text(ctx, z, n, sqlite3_free);
  sqlite3_result_subtype(ctx, 'J');
}

/* A JSON string literal (names are UTF-8; escape quotes and controls).
** Runs that need no escape go in whole: this is most of a metadata call. */
static void json_string(sqlite3_str *s, const char *z) {
  sqlite3_str_appendchar(s, 1, '"');
  while (*z) {
    size_t run = 0;
    unsigned char ch;
    while ((ch = (unsigned char)z[run]) >= 0x20 && ch != '"' && ch != '\\')
      run++;
    if (run) sqlite3_str_append(s, z, (int)run);
    z += run;
    if (!ch) break;
    if (ch == '"' || ch == '\\') sqlite3_str_appendf(s, "\\%c", ch);
    else sqlite3_str_appendf(s, "\\u%04x", ch);
    z++;
  }
  sqlite3_str_appendchar(s, 1, '"');
}

/* get_metadata()'s text while the arrays are passed by. */
typedef struct MetadataText MetadataText;
struct MetadataText {
  sqlite3_str *s; /* the JSON so far */
  int n;          /* arrays in it so far */
};

/* Array I's entry of the "arrays" object, appended. */
static int metadata_add(void *arg, int n, int i, const NpkArrayInfo *a) {
  MetadataText *m = arg;
  sqlite3_str *s = m->s;
  (void)n;
  if (i) sqlite3_str_appendchar(s, 1, ',');
  json_string(s, a->name);
  sqlite3_str_appendall(s, ":{\"shape\":");
  npk_json_shape(s, a, a->rows);
  sqlite3_str_appendall(s, ",\"data_file\":");
  json_string(s, a->data_file);
  sqlite3_str_appendall(s, ",\"last_modified\":");
  json_u64(s, 0, a->modify_time);
  sqlite3_str_appendall(s, ",\"size_bytes\":");
  json_u64(s, 0, a->rows * a->row_bytes);
  sqlite3_str_appendall(s, ",\"dtype\":\"");
  sqlite3_str_appendall(s, npk_dtype_name(a->dtype));
  sqlite3_str_appendall(s, "\"}");
  m->n = i + 1;
  return NPK_OK;
}

static void fn_metadata(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  NpkConn *c;
  MetadataText m = {0, 0};
  int rc;
  (void)argc;
  if (!(c = fn_conn(ctx, argv, "numpack_metadata", NPK_CONN_READ))) return;
  m.s = sqlite3_str_new(sqlite3_context_db_handle(ctx));
  sqlite3_str_appendall(m.s, "{\"arrays\":{");
  rc = npk_conn_each_array(c, metadata_add, &m);
  if (rc) {
    sqlite3_free(sqlite3_str_finish(m.s));
    fn_error(ctx, c, rc);
  } else {
    sqlite3_str_appendall(m.s, "},\"base_dir\":");
    json_string(m.s, npk_store_dir(c->store));
    sqlite3_str_appendall(m.s, ",\"total_arrays\":");
    json_u64(m.s, 0, (uint64_t)m.n);
    sqlite3_str_appendchar(m.s, 1, '}');
    result_json(ctx, m.s);
  }
  npk_conn_release(c);
}

static void fn_shape(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  const char *name;
  NpkConn *c;
  NpkArrayInfo a;
  int rc;
  (void)argc;
  if (!(name = text_arg(ctx, argv[1], "numpack_shape", "the array name")))
    return;
  if (!(c = fn_conn(ctx, argv, "numpack_shape", NPK_CONN_READ))) return;
  /* Outside a transaction the state in memory may do without a lock
  ** (npk_array_info), unless a looked-up row holds a state it must be of.
  ** Inside one the shape is what the transaction read, as any read: under
  ** its held lock, or noted for the lost-update check. */
  if (npk_conn_may_read_unlocked(c)) {
    rc = npk_array_info(c->ses, name, &a);
  } else if ((rc = npk_conn_read_begin(c, NULL)) == NPK_OK) {
    rc = npk_array_info(c->ses, name, &a);
    npk_read_end(c->ses);
  }
  if (rc) {
    fn_error(ctx, c, rc);
  } else {
    sqlite3_str *s = sqlite3_str_new(sqlite3_context_db_handle(ctx));
    npk_json_shape(s, &a, a.live_rows);
    result_json(ctx, s);
  }
  npk_conn_release(c);
}

static void fn_io_stats(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  NpkConn *c;
  NpkStats st;
  sqlite3_str *s;
  (void)argc;
  if (!(c = fn_conn(ctx, argv, "numpack_io_stats", NPK_CONN_READ))) return;
  npk_store_stats(c->store, &st);
  s = sqlite3_str_new(sqlite3_context_db_handle(ctx));
  sqlite3_str_appendf(
      s,
      "{\"backend_type\":\"sqlite-c\",\"bytes_read\":%llu,"
      "\"bytes_written\":%llu,\"rows_appended\":%llu,\"rows_replaced\":%llu,"
      "\"rows_deleted\":%llu,\"commits\":%llu,\"rollbacks\":%llu,"
      "\"fsyncs\":%llu,\"recoveries\":%llu,\"read_locks\":%llu,"
      "\"catalog_stats\":%llu,\"last_commit_fsyncs\":%llu}",
      (unsigned long long)st.bytes_read, (unsigned long long)st.bytes_written,
      (unsigned long long)st.rows_appended,
      (unsigned long long)st.rows_replaced, (unsigned long long)st.rows_deleted,
      (unsigned long long)st.commits, (unsigned long long)st.rollbacks,
      (unsigned long long)st.fsyncs, (unsigned long long)st.recoveries,
      (unsigned long long)st.read_locks, (unsigned long long)st.catalog_stats,
      (unsigned long long)st.last_commit_fsyncs);
  result_json(ctx, s);
  npk_conn_release(c);
}

/* ---- registration ---------------------------------------------------- */

int npk_func_register(sqlite3 *db) {
  /* Writers and readers of array contents touch files outside the
  ** database: DIRECTONLY keeps them out of triggers and views of a schema
  ** someone else wrote.  Pure introspection is harmless anywhere. */
  static const int W = SQLITE_UTF8 | SQLITE_DIRECTONLY;
  static const int I = SQLITE_UTF8 | SQLITE_INNOCUOUS;
  static const struct {
    const char *name;
    int nargs;
    int flags;
    void (*fn)(sqlite3_context *, int, sqlite3_value **);
  } fns[] = {
      {"numpack_open", 1, W, fn_open},
      {"numpack_open", 2, W, fn_open},
      {"numpack_save", 3, W, fn_save},
      {"numpack_save", 5, W, fn_save},
      {"numpack_load", 2, W, fn_load},
      {"numpack_append", 3, W, fn_append},
      {"numpack_append", 5, W, fn_append},
      {"numpack_replace", 4, W, fn_replace},
      {"numpack_getitem", 3, W, fn_getitem},
      {"numpack_drop", 2, W, fn_drop},
      {"numpack_drop", 3, W, fn_drop},
      {"numpack_clone", 3, W, fn_clone},
      {"numpack_compact", 2, W, fn_compact},
      {"numpack_reset", 1, W, fn_reset},
      {"numpack_metadata", 1, I, fn_metadata},
      {"numpack_shape", 2, I, fn_shape},
      {"numpack_io_stats", 1, I, fn_io_stats},
  };
  int rc = SQLITE_OK;
  for (size_t i = 0; rc == SQLITE_OK && i < sizeof fns / sizeof fns[0]; i++)
    rc = sqlite3_create_function(db, fns[i].name, fns[i].nargs, fns[i].flags, 0,
                                 fns[i].fn, 0, 0);
  return rc;
}
