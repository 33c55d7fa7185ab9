/*
** tvf.c — the table-valued functions:
**
**   SELECT * FROM numpack_arrays(store);
**     name, dtype, shape (JSON, physical), rows, live_rows, deleted_rows,
**     bytes, modify_time (microseconds since the epoch)
**
**   SELECT * FROM numpack_stream(store, name, batch_rows);
**     batch (0, 1, ...), first (logical index of its first row), rows, npy
**     (an .npy BLOB of the batch).  One batch is built at a time, when its
**     npy column is read, and handed to SQLite: a stream of any size needs
**     memory for one batch only.  The whole stream reads one committed state.
**
**   SELECT * FROM numpack_files(store, name);
**     file (absolute path), offset (of the first row, in bytes), first_row,
**     rows, live (bitmap BLOB, or NULL when all its rows are live), dtype,
**     shape (JSON, physical): where the array's rows are, one row per data
**     file in row order, for a program that maps the files itself (the
**     Python binding's LazyArray).  The engine reads the manifest and the
**     bitmap and checks the paths and sizes; all of it comes from one
**     committed state, read under one lock.
**
** All are eponymous virtual tables whose hidden columns are the arguments;
** xBestIndex insists on all of them, so a missing argument is an error.
** Each may also be declared, without arguments, as a table of its own
** (CREATE VIRTUAL TABLE temp.a USING numpack_arrays): a statement reading
** an eponymous table takes SQLite's lock on the main database file, which
** one in TEMP does not, and that lock is most of a small call's cost.
*/
#include <stdlib.h>
#include <string.h>

#include "numpack_int.h"
#include "conn.h"
#include "npy.h"

/* Which function a table is. */
#define TVF_ARRAYS 0
#define TVF_STREAM 1
#define TVF_FILES  2

/* What tells the three functions apart, indexed by kind. */
typedef struct TvfKind TvfKind;
struct TvfKind {
  const char *name;   /* the function's (and module's) name */
  const char *schema; /* its declaration: result columns, then arguments */
  int first_arg;      /* column number of its first argument */
  int nargs;          /* how many arguments it takes */
  const char *usage;  /* the error when one is missing */
  int config;         /* SQLITE_VTAB_INNOCUOUS or SQLITE_VTAB_DIRECTONLY */
};

/* numpack_files tells where files are: as the stream's data, not for
** schemas (views, triggers) that a database file brings along. */
static const TvfKind tvf_kinds[] = {
    {"numpack_arrays",
     "CREATE TABLE x(name TEXT, dtype TEXT, shape TEXT, rows INTEGER,"
     " live_rows INTEGER, deleted_rows INTEGER, bytes INTEGER,"
     " modify_time INTEGER, store HIDDEN)",
     8, 1, "numpack: numpack_arrays(store) needs the store",
     SQLITE_VTAB_INNOCUOUS},
    {"numpack_stream",
     "CREATE TABLE x(batch INTEGER, first INTEGER, rows INTEGER,"
     " npy BLOB, store HIDDEN, name HIDDEN, batch_rows HIDDEN)",
     4, 3,
     "numpack: numpack_stream(store, name, batch_rows) needs all three "
     "arguments",
     SQLITE_VTAB_DIRECTONLY},
    {"numpack_files",
     "CREATE TABLE x(file TEXT, offset INTEGER, first_row INTEGER,"
     " rows INTEGER, live BLOB, dtype TEXT, shape TEXT, store HIDDEN,"
     " name HIDDEN)",
     7, 2, "numpack: numpack_files(store, name) needs both arguments",
     SQLITE_VTAB_DIRECTONLY},
};

typedef struct TvfTab TvfTab;
typedef struct TvfCursor TvfCursor;
typedef struct TvfBatch TvfBatch;
typedef struct TvfPool TvfPool;

/* The batch buffers of one stream.  It outlives the cursor while SQLite
** still holds batches, which may be several (a column read twice). */
struct TvfPool {
  int refs;        /* the cursor, plus every batch SQLite holds */
  int closed;      /* the cursor has gone */
  TvfBatch *spare; /* a free buffer for the next batch, or NULL */
};

/* A batch buffer; the .npy bytes follow this header.  SQLite owns it while
** it holds the batch's value, then gives it back (batch_release) for the
** next batch, so a stream lives in one buffer instead of two. */
struct TvfBatch {
  TvfPool *pool; /* where it goes back to */
  size_t cap;    /* bytes after the header */
};

/* One eponymous table. */
struct TvfTab {
  sqlite3_vtab base; /* base class: must be first */
  sqlite3 *db;       /* the connection */
  int kind;          /* TVF_ARRAYS, TVF_STREAM or TVF_FILES */
};

/* One array's row of numpack_arrays, copied out of the catalog. */
typedef struct TvfArray TvfArray;
struct TvfArray {
  NpkArrayInfo info; /* info.name points into the cursor's text */
  const char *shape; /* JSON shape, in the cursor's text */
  size_t name_off;   /* where they start in it */
  size_t shape_off;
};

/* One row of numpack_files, copied out of the engine's layout. */
typedef struct TvfFile TvfFile;
struct TvfFile {
  size_t path_off;    /* its path in the cursor's text */
  int has_path;       /* 0 for the one row of an array without files */
  uint64_t offset;    /* byte offset of its first row */
  uint64_t first_row; /* physical index of its first row */
  uint64_t rows;      /* rows it holds */
  uint64_t live_off;  /* its live bits in the cursor's bits */
  uint64_t live_len;  /* bytes of them */
  int has_live;       /* 0: every row of it is live (live is NULL) */
};

/* A scan of any of the functions. */
struct TvfCursor {
  sqlite3_vtab_cursor base; /* base class: must be first */
  NpkConn *conn;            /* the session on the store */
  sqlite3_int64 i;          /* current row number (rowid) */
  int eof;                  /* past the last row */
  /* numpack_arrays: */
  TvfArray *arrays; /* every array, in catalog order */
  int narrays;      /* how many */
  char *text;       /* their names and shapes, NUL-terminated:
                    ** one allocation for the whole result */
  /* numpack_stream: */
  char *name;          /* array streamed */
  int reading;         /* holds npk_read_begin (and, for a stream,
                       ** npk_scan_begin of name) */
  NpkArrayInfo info;   /* the array */
  uint64_t batch_rows; /* rows per batch */
  uint64_t nrows;      /* rows in this batch */
  uint64_t phys;       /* physical row where this batch starts */
  uint64_t next_phys;  /* physical row where the next one may start */
  uint64_t end_phys;   /* physical rows when the stream began: rows
                       ** appended since are not streamed */
  TvfPool *pool;       /* batch buffers, or NULL before the first */
  /* numpack_files: */
  TvfFile *files;      /* its rows */
  int nfiles;          /* how many */
  size_t shape_off;    /* the array's JSON shape in the text */
  unsigned char *bits; /* every file's live bits, one allocation */
};

static int tvf_connect(sqlite3 *db, void *aux, int argc,
                       const char *const *argv, sqlite3_vtab **pp,
                       char **pzErr) {
  int kind = (int)(size_t)aux, rc;
  TvfTab *t;
  if (argc > 3) {
    *pzErr = sqlite3_mprintf(
        "numpack: %s takes no arguments in CREATE VIRTUAL TABLE; give them "
        "when querying it, as in SELECT * FROM %s(...)",
        argv[0], argv[2]);
    return SQLITE_ERROR;
  }
  rc = sqlite3_declare_vtab(db, tvf_kinds[kind].schema);
  if (rc) return rc;
  t = sqlite3_malloc(sizeof *t);
  if (!t) return SQLITE_NOMEM;
  memset(t, 0, sizeof *t);
  t->db = db;
  t->kind = kind;
  sqlite3_vtab_config(db, tvf_kinds[kind].config);
  *pp = &t->base;
  return SQLITE_OK;
}

static int tvf_disconnect(sqlite3_vtab *p) {
  sqlite3_free(p);
  return SQLITE_OK;
}

/* Every argument column must be given with "=": argv[k] is column k. */
static int tvf_best_index(sqlite3_vtab *p, sqlite3_index_info *info) {
  TvfTab *t = (TvfTab *)p;
  int first = tvf_kinds[t->kind].first_arg, seen = 0;
  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &info->aConstraint[i];
    int k = c->iColumn - first;
    if (k < 0 || c->op != SQLITE_INDEX_CONSTRAINT_EQ) continue;
    if (!c->usable) return SQLITE_CONSTRAINT; /* try another plan */
    info->aConstraintUsage[i].argvIndex = k + 1;
    info->aConstraintUsage[i].omit = 1;
    seen |= 1 << k;
  }
  if (seen != (1 << tvf_kinds[t->kind].nargs) - 1) {
    sqlite3_free(p->zErrMsg);
    p->zErrMsg = sqlite3_mprintf("%s", tvf_kinds[t->kind].usage);
    return SQLITE_ERROR;
  }
  info->estimatedCost = 10;
  info->estimatedRows = 10;
  return SQLITE_OK;
}

static int tvf_open(sqlite3_vtab *p, sqlite3_vtab_cursor **pp) {
  TvfCursor *c = sqlite3_malloc(sizeof *c);
  (void)p;
  if (!c) return SQLITE_NOMEM;
  memset(c, 0, sizeof *c);
  c->eof = 1;
  *pp = &c->base;
  return SQLITE_OK;
}

static void pool_unref(TvfPool *pool) {
  if (--pool->refs > 0) return;
  sqlite3_free(pool->spare);
  sqlite3_free(pool);
}

/* SQLite is done with a batch: keep its buffer for the next one. */
static void batch_release(void *p) {
  TvfBatch *b = (TvfBatch *)p - 1;
  TvfPool *pool = b->pool;
  if (!pool->closed && !pool->spare) pool->spare = b;
  else sqlite3_free(b);
  pool_unref(pool);
}

static void tvf_reset(TvfCursor *c) {
  if (c->pool) {
    c->pool->closed = 1;
    pool_unref(c->pool);
    c->pool = 0;
  }
  sqlite3_free(c->arrays);
  sqlite3_free(c->text);
  sqlite3_free(c->files);
  sqlite3_free(c->bits);
  c->arrays = 0;
  c->text = 0;
  c->narrays = 0;
  c->files = 0;
  c->bits = 0;
  c->nfiles = 0;
  if (c->reading) {
    if (c->name) npk_scan_end(c->conn->ses, c->name);
    npk_read_end(c->conn->ses);
  }
  c->reading = 0;
  sqlite3_free(c->name);
  c->name = 0;
  npk_conn_release(c->conn);
  c->conn = 0;
  c->eof = 1;
}

static int tvf_close(sqlite3_vtab_cursor *cur) {
  tvf_reset((TvfCursor *)cur);
  sqlite3_free(cur);
  return SQLITE_OK;
}

static int tvf_fail(sqlite3_vtab_cursor *cur, int rc, const char *msg) {
  return npk_vtab_error(cur->pVtab, rc, msg);
}

/* Copying the catalog out for numpack_arrays. */
typedef struct ArraysCopy ArraysCopy;
struct ArraysCopy {
  TvfCursor *c;
  sqlite3_str *text; /* names and shapes so far */
};

/* Array I of N: its row, its name and shape appended to the text. */
static int arrays_add(void *arg, int n, int i, const NpkArrayInfo *info) {
  ArraysCopy *ac = arg;
  TvfCursor *c = ac->c;
  TvfArray *a;
  if (i == 0) {
    c->arrays =
        sqlite3_malloc64((sqlite3_uint64)(n ? n : 1) * sizeof *c->arrays);
    if (!c->arrays) return NPK_NOMEM;
  }
  a = &c->arrays[i];
  a->info = *info;
  a->info.data_file = 0;
  a->name_off = (size_t)sqlite3_str_length(ac->text);
  sqlite3_str_appendall(ac->text, info->name);
  sqlite3_str_appendchar(ac->text, 1, 0);
  a->shape_off = (size_t)sqlite3_str_length(ac->text);
  npk_json_shape(ac->text, info, info->shape[0]);
  sqlite3_str_appendchar(ac->text, 1, 0);
  c->narrays = i + 1;
  return sqlite3_str_errcode(ac->text) ? NPK_NOMEM : NPK_OK;
}

/* Copy the catalog out, so the scan holds no lock between rows. */
static int arrays_load(TvfCursor *c) {
  ArraysCopy ac = {c, sqlite3_str_new(0)};
  int rc = npk_conn_each_array(c->conn, arrays_add, &ac);
  if (sqlite3_str_errcode(ac.text) && rc == NPK_OK) rc = NPK_NOMEM;
  c->text = sqlite3_str_finish(ac.text);
  if (rc == NPK_OK && c->narrays && !c->text) rc = NPK_NOMEM;
  for (int i = 0; rc == NPK_OK && i < c->narrays; i++) {
    c->arrays[i].info.name = c->text + c->arrays[i].name_off;
    c->arrays[i].shape = c->text + c->arrays[i].shape_off;
  }
  if (rc) c->narrays = 0;
  return rc;
}

/* Copying an array's layout out for numpack_files. */
typedef struct FilesCopy FilesCopy;
struct FilesCopy {
  TvfCursor *c;
  sqlite3_str *text; /* paths and the shape so far */
  uint64_t nbits;    /* bytes of live bits so far */
};

/* Bits [FROM, FROM+N) of bitmap words W as bytes, bit i%8 of OUT[i/8]
** holding bit FROM+i: NumPack's order, whatever FROM is. */
static void copy_bits(const uint64_t *w, uint64_t from, uint64_t n,
                      unsigned char *out) {
  uint64_t nbytes = (n + 7) / 8;
  for (uint64_t b = 0; b < nbytes; b++) {
    uint64_t p = from + 8 * b, sh = p & 63, v = w[p >> 6] >> sh;
    uint64_t want = n - 8 * b < 8 ? n - 8 * b : 8;
    if (sh + want > 64) v |= w[(p >> 6) + 1] << (64 - sh);
    out[b] = (unsigned char)v;
  }
  if (n % 8) out[nbytes - 1] &= (unsigned char)((1u << (n % 8)) - 1);
}

/* How many of the rows of a file starting at physical row FIRST, ROWS
** long, the layout's bitmap covers (a zero-width array's may stop short:
** rows past it are deleted). */
static uint64_t covered_rows(const NpkDataLayout *l, uint64_t first,
                             uint64_t rows) {
  uint64_t n = l->covered > first ? l->covered - first : 0;
  return n < rows ? n : rows;
}

/* File I of the layout: its row, its path appended to the text, and room
** for its live bits when some of its rows are deleted. */
static int files_add(void *arg, const NpkDataLayout *l, int i,
                     const NpkDataFile *f) {
  FilesCopy *fc = arg;
  TvfCursor *c = fc->c;
  TvfFile *r;
  if (i == 0) {
    c->files = sqlite3_malloc64((sqlite3_uint64)l->nfiles * sizeof *c->files);
    if (!c->files) return NPK_NOMEM;
    memset(c->files, 0, (size_t)l->nfiles * sizeof *c->files);
  }
  r = &c->files[i];
  r->has_path = 1;
  r->path_off = (size_t)sqlite3_str_length(fc->text);
  sqlite3_str_appendall(fc->text, f->path);
  sqlite3_str_appendchar(fc->text, 1, 0);
  r->offset = f->offset;
  r->first_row = f->first_row;
  r->rows = f->rows;
  if (l->live && f->rows) {
    uint64_t n = covered_rows(l, f->first_row, f->rows);
    r->has_live = 1;
    r->live_off = fc->nbits;
    r->live_len = (n + 7) / 8;
    fc->nbits += r->live_len;
  }
  c->nfiles = i + 1;
  return sqlite3_str_errcode(fc->text) ? NPK_NOMEM : NPK_OK;
}

/* Fill the rows' live bits from the bitmap words (still valid: the read
** is held).  A file whose rows are all live gets NULL, as when the array
** has no bitmap. */
static void files_bits(TvfCursor *c, const NpkDataLayout *l) {
  for (int i = 0; i < c->nfiles; i++) {
    TvfFile *r = &c->files[i];
    unsigned char *out = c->bits + r->live_off;
    uint64_t n;
    int all = 1;
    if (!r->has_live) continue;
    n = covered_rows(l, r->first_row, r->rows);
    copy_bits(l->live, r->first_row, n, out);
    for (uint64_t b = 0; all && b < n / 8; b++) all = out[b] == 0xFF;
    if (all && n % 8) all = out[n / 8] == (1u << (n % 8)) - 1;
    r->has_live = !(all && n == r->rows);
  }
}

/* Copy NAME's layout out under one read of the store, so that the scan
** holds no lock between rows and every row is of one committed state. */
static int files_load(TvfCursor *c) {
  NpkSession *s = c->conn->ses;
  FilesCopy fc = {c, sqlite3_str_new(0), 0};
  NpkDataLayout l = {0};
  int rc = npk_conn_read_begin(c->conn, NULL);
  if (rc == NPK_OK) {
    rc = npk_array_info(s, c->name, &c->info);
    if (rc == NPK_OK) {
      c->shape_off = 0;
      npk_json_shape(fc.text, &c->info, c->info.shape[0]);
      sqlite3_str_appendchar(fc.text, 1, 0);
      rc = npk_data_files(s, c->name, &l, files_add, &fc);
    }
    /* An array without files (a manifest listing no segment) still has
    ** one row, telling its dtype and shape. */
    if (rc == NPK_OK && !l.nfiles) {
      c->files = sqlite3_malloc(sizeof *c->files);
      if (!c->files) rc = NPK_NOMEM;
      else {
        memset(c->files, 0, sizeof *c->files);
        c->nfiles = 1;
      }
    }
    if (rc == NPK_OK && fc.nbits) {
      c->bits = sqlite3_malloc64(fc.nbits);
      if (!c->bits) rc = NPK_NOMEM;
      else files_bits(c, &l);
    }
    npk_read_end(s);
  }
  if (sqlite3_str_errcode(fc.text) && rc == NPK_OK) rc = NPK_NOMEM;
  c->text = sqlite3_str_finish(fc.text);
  if (rc == NPK_OK && !c->text) rc = NPK_NOMEM;
  if (rc) c->nfiles = 0;
  return rc;
}

/* Size and position of the batch of live rows at or after physical row
** c->phys.  The stream walks physical positions, as a table scan does, so
** that rows deleted or replaced by the same connection between batches
** neither shift the batches nor make them repeat or skip a row. */
static int stream_settle(TvfCursor *c) {
  NpkSession *s = c->conn->ses;
  uint64_t k0 = 0, k1 = 0;
  int rc = NPK_OK;
  if (c->phys < c->end_phys &&
      (rc = npk_physical_to_logical(s, c->name, c->phys, &k0)) == NPK_OK)
    rc = npk_physical_to_logical(s, c->name, c->end_phys, &k1);
  if (rc) return rc;
  if (k0 >= k1) {
    c->eof = 1;
    return NPK_OK;
  }
  c->nrows = k1 - k0 < c->batch_rows ? k1 - k0 : c->batch_rows;
  rc = npk_logical_to_physical(s, c->name, k0, &c->phys);
  if (rc == NPK_OK) {
    if (k0 + c->nrows < k1)
      rc = npk_logical_to_physical(s, c->name, k0 + c->nrows, &c->next_phys);
    else c->next_phys = c->end_phys;
  }
  return rc;
}

static int tvf_filter(sqlite3_vtab_cursor *cur, int idx, const char *idxStr,
                      int argc, sqlite3_value **argv) {
  TvfCursor *c = (TvfCursor *)cur;
  TvfTab *t = (TvfTab *)cur->pVtab;
  const char *fn = tvf_kinds[t->kind].name;
  const char *dir, *name = 0;
  char *err = 0;
  int rc;
  (void)idx;
  (void)idxStr;
  (void)argc;
  tvf_reset(c);
  /* Names as the scalar functions take them (npk_text_arg). */
  if (!(dir = npk_text_arg(argv[0], fn, "the store path", &err)) ||
      (t->kind != TVF_ARRAYS &&
       !(name = npk_text_arg(argv[1], fn, "the array name", &err)))) {
    if (!err) return SQLITE_NOMEM;
    tvf_fail(cur, SQLITE_MISMATCH, err);
    sqlite3_free(err);
    return SQLITE_MISMATCH;
  }
  rc = npk_conn_open(t->db, dir, NPK_CONN_READ, &c->conn, &err);
  if (rc) {
    tvf_fail(cur, rc, err ? err : "numpack: cannot open the store");
    sqlite3_free(err);
    return rc;
  }
  c->i = 0;
  c->eof = 0;
  if (t->kind == TVF_ARRAYS) {
    rc = arrays_load(c);
    if (rc) return tvf_fail(cur, npk_sqlite_rc(rc), npk_errmsg(c->conn->ses));
    c->eof = c->narrays == 0;
    return SQLITE_OK;
  }
  if (t->kind == TVF_FILES) {
    if (!(c->name = sqlite3_mprintf("%s", name))) return SQLITE_NOMEM;
    rc = files_load(c);
    if (rc) return tvf_fail(cur, npk_sqlite_rc(rc), npk_errmsg(c->conn->ses));
    c->info.name = c->name;
    c->info.data_file = 0;
    c->eof = c->nfiles == 0;
    return SQLITE_OK;
  }
  if (sqlite3_value_type(argv[2]) != SQLITE_INTEGER ||
      sqlite3_value_int64(argv[2]) <= 0)
    return tvf_fail(cur, SQLITE_MISMATCH,
                    "numpack: numpack_stream: batch_rows must be a positive "
                    "integer");
  c->batch_rows = (uint64_t)sqlite3_value_int64(argv[2]);
  c->name = sqlite3_mprintf("%s", name);
  if (!c->name) return SQLITE_NOMEM;
  rc = npk_conn_read_begin(c->conn, NULL);
  if (rc == NPK_OK && (rc = npk_scan_begin(c->conn->ses, c->name)))
    npk_read_end(c->conn->ses);
  if (rc == NPK_OK) {
    c->reading = 1;
    rc = npk_array_info(c->conn->ses, c->name, &c->info);
  }
  if (rc == NPK_OK) {
    NpkView v;
    rc = npk_view(c->conn->ses, c->name, &v);
  }
  if (rc == NPK_OK) {
    c->info.name = c->name;
    c->info.data_file = 0;
    c->phys = 0;
    c->end_phys = c->info.rows;
    rc = stream_settle(c);
  }
  if (rc) return tvf_fail(cur, npk_sqlite_rc(rc), npk_errmsg(c->conn->ses));
  return SQLITE_OK;
}

static int tvf_next(sqlite3_vtab_cursor *cur) {
  TvfCursor *c = (TvfCursor *)cur;
  TvfTab *t = (TvfTab *)cur->pVtab;
  int rc;
  c->i++;
  if (t->kind != TVF_STREAM) {
    c->eof = c->i >= (t->kind == TVF_ARRAYS ? c->narrays : c->nfiles);
    return SQLITE_OK;
  }
  c->phys = c->next_phys;
  if ((rc = stream_settle(c)) != NPK_OK)
    return tvf_fail(cur, npk_sqlite_rc(rc), npk_errmsg(c->conn->ses));
  return SQLITE_OK;
}

static int tvf_eof(sqlite3_vtab_cursor *cur) { return ((TvfCursor *)cur)->eof; }

static int tvf_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *pRowid) {
  *pRowid = ((TvfCursor *)cur)->i;
  return SQLITE_OK;
}

/* The live rows of the current batch's stretch now: fewer than c->nrows
** if the connection deleted some since the batch was sized.  The rows and
** npy columns both report this. */
static int stream_rows_now(TvfCursor *c, uint64_t *pn) {
  NpkSession *s = c->conn->ses;
  uint64_t k0, k1;
  int rc = npk_physical_to_logical(s, c->name, c->phys, &k0);
  if (rc == NPK_OK) rc = npk_physical_to_logical(s, c->name, c->next_phys, &k1);
  if (rc == NPK_OK) *pn = k1 - k0 < c->nrows ? k1 - k0 : c->nrows;
  return rc;
}

/* The current batch as an .npy BLOB, handed to SQLite. */
static int stream_npy(TvfCursor *c, sqlite3_context *ctx) {
  NpkSession *s = c->conn->ses;
  uint64_t shape[NPK_MAX_NDIM], rb = c->info.row_bytes, data, r = c->phys;
  size_t hdr;
  unsigned char *out;
  TvfBatch *b;
  int rc;
  memcpy(shape, c->info.shape, sizeof shape);
  if ((rc = stream_rows_now(c, &shape[0])) != NPK_OK) {
    npk_result_error(ctx, npk_sqlite_rc(rc), npk_errmsg(s));
    return SQLITE_OK;
  }
  data = shape[0] * rb;
  hdr = npk_npy_header_size(c->info.dtype, c->info.ndim, shape);
  if (hdr + data > (uint64_t)sqlite3_limit(sqlite3_context_db_handle(ctx),
                                           SQLITE_LIMIT_LENGTH, -1)) {
    sqlite3_result_error(ctx,
                         "numpack: numpack_stream: one batch is larger "
                         "than SQLite's BLOB limit; use fewer batch_rows",
                         -1);
    sqlite3_result_error_code(ctx, SQLITE_TOOBIG);
    return SQLITE_OK;
  }
  /* Let go of the previous batch first, if SQLite still holds it in this
  ** column, so that its buffer can take this one.  (Were it held elsewhere
  ** too, a new buffer is simply allocated.) */
  sqlite3_result_null(ctx);
  if (!c->pool) {
    if (!(c->pool = sqlite3_malloc(sizeof *c->pool))) return SQLITE_NOMEM;
    memset(c->pool, 0, sizeof *c->pool);
    c->pool->refs = 1;
  }
  b = c->pool->spare;
  c->pool->spare = 0;
  if (!b || b->cap < hdr + data) {
    sqlite3_free(b);
    b = sqlite3_malloc64(sizeof *b + hdr + data);
    if (!b) return SQLITE_NOMEM;
    b->cap = hdr + data;
  }
  b->pool = c->pool;
  out = (unsigned char *)(b + 1);
  npk_npy_header(c->info.dtype, c->info.ndim, shape, out, hdr);
  if ((rc = npk_copy_live_rows(s, c->name, &r, shape[0], out + hdr))) {
    c->pool->spare = b;
    npk_result_error(ctx, npk_sqlite_rc(rc), npk_errmsg(s));
    return SQLITE_OK;
  }
  c->pool->refs++;
  sqlite3_result_blob64(ctx, out, hdr + data, batch_release);
  return SQLITE_OK;
}

/* Column I of numpack_files' current row. */
static int files_column(TvfCursor *c, sqlite3_context *ctx, int i) {
  const TvfFile *f = &c->files[c->i];
  switch (i) {
    case 0:
      if (f->has_path)
        sqlite3_result_text(ctx, c->text + f->path_off, -1, SQLITE_TRANSIENT);
      break;
    case 1: sqlite3_result_int64(ctx, (sqlite3_int64)f->offset); break;
    case 2: sqlite3_result_int64(ctx, (sqlite3_int64)f->first_row); break;
    case 3: sqlite3_result_int64(ctx, (sqlite3_int64)f->rows); break;
    case 4:
      /* A bitmap too long for one value is SQLITE_TOOBIG, as any. */
      if (f->has_live)
        sqlite3_result_blob64(ctx,
                              f->live_len
                                  ? (const void *)(c->bits + f->live_off)
                                  : (const void *)"",
                              f->live_len, SQLITE_TRANSIENT);
      break;
    case 5:
      sqlite3_result_text(ctx, npk_dtype_name(c->info.dtype), -1,
                          SQLITE_STATIC);
      break;
    case 6:
      sqlite3_result_text(ctx, c->text + c->shape_off, -1, SQLITE_TRANSIENT);
      break;
    default: break;
  }
  return SQLITE_OK;
}

static int tvf_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  TvfCursor *c = (TvfCursor *)cur;
  TvfTab *t = (TvfTab *)cur->pVtab;
  if (t->kind == TVF_ARRAYS) {
    const NpkArrayInfo *a = &c->arrays[c->i].info;
    switch (i) {
      case 0: sqlite3_result_text(ctx, a->name, -1, SQLITE_TRANSIENT); break;
      case 1:
        sqlite3_result_text(ctx, npk_dtype_name(a->dtype), -1, SQLITE_STATIC);
        break;
      case 2:
        sqlite3_result_text(ctx, c->arrays[c->i].shape, -1, SQLITE_TRANSIENT);
        break;
      case 3: sqlite3_result_int64(ctx, (sqlite3_int64)a->rows); break;
      case 4: sqlite3_result_int64(ctx, (sqlite3_int64)a->live_rows); break;
      case 5:
        sqlite3_result_int64(ctx, (sqlite3_int64)(a->rows - a->live_rows));
        break;
      case 6:
        sqlite3_result_int64(ctx, (sqlite3_int64)(a->rows * a->row_bytes));
        break;
      case 7: sqlite3_result_int64(ctx, (sqlite3_int64)a->modify_time); break;
      default: break;
    }
    return SQLITE_OK;
  }
  if (t->kind == TVF_FILES) return files_column(c, ctx, i);
  switch (i) {
    case 0: sqlite3_result_int64(ctx, c->i); break;
    case 1:
    case 2: {
      /* Read now, as npy is: rows deleted since the batch was sized
      ** change both. */
      uint64_t v;
      int rc = i == 1
                   ? npk_physical_to_logical(c->conn->ses, c->name, c->phys, &v)
                   : stream_rows_now(c, &v);
      if (rc)
        npk_result_error(ctx, npk_sqlite_rc(rc), npk_errmsg(c->conn->ses));
      else sqlite3_result_int64(ctx, (sqlite3_int64)v);
      break;
    }
    case 3: return stream_npy(c, ctx);
    default: break;
  }
  return SQLITE_OK;
}

static sqlite3_module tvf_module = {
    0,           /* iVersion */
    tvf_connect, /* xCreate: nothing to create, the store is an argument */
    tvf_connect,
    tvf_best_index,
    tvf_disconnect,
    tvf_disconnect, /* xDestroy */
    tvf_open,
    tvf_close,
    tvf_filter,
    tvf_next,
    tvf_eof,
    tvf_column,
    tvf_rowid,
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

int npk_tvf_register(sqlite3 *db) {
  int rc = SQLITE_OK;
  for (size_t k = 0;
       rc == SQLITE_OK && k < sizeof tvf_kinds / sizeof *tvf_kinds; k++)
    rc = sqlite3_create_module(db, tvf_kinds[k].name, &tvf_module, (void *)k);
  return rc;
}
