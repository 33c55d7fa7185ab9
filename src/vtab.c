/*
** vtab.c — the "numpack" virtual table: one NumPack array as an SQL table.
**
**   CREATE VIRTUAL TABLE t USING numpack(
**       store='dir',           -- store directory (created by CREATE if missing)
**       array='name',          -- array name; default: the table's name
**       dtype=float32,         -- element type, needed to create the array
**       shape=(d1,d2,...),     -- row shape; () or omitted for a 1-D array
**       layout=columns|blob,   -- default columns
**       columns='x,y,z',       -- names of the element columns
**       readonly=0|1,          -- 1: no writes at all, DROP TABLE detaches
**       metric=l2);            -- default metric of KNN queries
**
** Declared schema (K = "distance REAL HIDDEN, k INTEGER HIDDEN,
** metric TEXT HIDDEN", the columns of KNN queries):
**   columns layout, 1-D:   CREATE TABLE x(value TYPE, row BLOB HIDDEN, K)
**   columns layout, N-D:   CREATE TABLE x(c0 TYPE, ..., row BLOB HIDDEN, K)
**   blob layout:           CREATE TABLE x(row BLOB, K)
** TYPE follows the dtype (element.c).  The rowid is the physical row index.
** Complex arrays have no SQL scalar form and need layout=blob.
**
** KNN (exact nearest rows, knn.c), spelled as sqlite-vec's vec0 spells it:
**   SELECT rowid, distance FROM t WHERE row MATCH :q AND k = 10
**     [AND metric = 'cosine'] [AND rowid IN (...) / rowid ranges]
**     ORDER BY distance [LIMIT n];
** The rowid constraints choose the candidates before the top k is taken;
** LIMIT n alone stands for k = n (from SQLite 3.41 on: older versions do
** not show a LIMIT next to MATCH to the table, so k = N is needed), and
** with k gives min(k, n) rows.  The rows come ordered by distance, then
** rowid; distance, k and metric read NULL in scans that are not KNN
** queries.
**
** idxNum bits (xBestIndex -> xFilter); the arguments come in this order:
**   0x001  rowid = ?            one row
**   0x002  rowid IN (...)       all values at once (sqlite3_vtab_in)
**   0x004  rowid > ?            0x008  rowid >= ?
**   0x010  rowid < ?            0x020  rowid <= ?
**   0x040  LIMIT ?              0x080  OFFSET ?  (counts live rows)
**   0x100  descending rowid order
**   0x200  KNN: row MATCH ? (the query) comes first, then
**   0x400  k = ?                0x800  metric = ?
**          and the rowid bits above (EQ, IN, GT/GE, LT/LE, LIMIT; never
**          DESC nor OFFSET).  KNN plans set idxStr, shown by EXPLAIN QUERY
**          PLAN, e.g. "KNN k metric rowid-IN LIMIT ORDER-BY-DISTANCE".
** idxStr is otherwise unused.  OFFSET is only taken over when every other
** constraint is too, so skipping live rows is the same as SQLite skipping
** output rows; it is answered with the rank index in O(log n), not by
** walking rows.
*/
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "numpack_int.h"
#include "conn.h"
#include "element.h"
#include "index.h"
#include "knn.h"

#define IDX_EQ     0x001
#define IDX_IN     0x002
#define IDX_GT     0x004
#define IDX_GE     0x008
#define IDX_LT     0x010
#define IDX_LE     0x020
#define IDX_LIMIT  0x040
#define IDX_OFFSET 0x080
#define IDX_DESC   0x100
#define IDX_KNN    0x200
#define IDX_K      0x400
#define IDX_METRIC 0x800

typedef struct NpkVtab NpkVtab;
typedef struct NpkCursor NpkCursor;

/* One virtual table. */
struct NpkVtab {
  sqlite3_vtab base;            /* base class: must be first */
  sqlite3 *db;                  /* the connection */
  NpkConn *conn;                /* the connection's session on the store */
  char *zTable;                 /* table name, for messages */
  char *zArray;                 /* array name */
  char *zSchema;                /* schema the table is declared in */
  int readonly;                 /* readonly=1 */
  int array_named;              /* array= was given (not the table's name) */
  int blob;                     /* layout=blob */
  int dtype;                    /* element type */
  int item;                     /* bytes per element */
  int ncol;                     /* element columns (0 in blob layout) */
  uint64_t row_bytes;           /* bytes per row */
  uint32_t ndim;                /* dimensions of the array as declared */
  uint64_t shape[NPK_MAX_NDIM]; /* its row shape, in shape[1..ndim-1] */
  char *zGone;                  /* set when xConnect found no array or no
                                ** store: every statement is refused with this
                                ** message, DROP TABLE only detaches, and conn
                                ** is NULL */
  int gone_rc;                  /* the code zGone is reported with:
                                ** SQLITE_CANTOPEN (no store) or
                                ** SQLITE_NOTFOUND (no array), as a function
                                ** reports the same */
  char **azCol;                 /* element column names */
  unsigned char *scratch;       /* one row being assembled by xUpdate */
  sqlite3_int64 est_rows;       /* row count seen last, for the planner */
  int metric;                   /* metric=, or -1: the dtype's default */
};

/* One scan. */
struct NpkCursor {
  sqlite3_vtab_cursor base; /* base class: must be first */
  int reading;              /* holds npk_read_begin and npk_scan_begin */
  NpkView view;             /* the array, refreshed when it changes */
  uint64_t gen;             /* npk_change_count() when view was taken */
  int have_view;            /* view is set */
  uint64_t row;             /* current physical row */
  uint64_t lo, hi;          /* rows [lo, hi) to visit */
  int desc;                 /* visit in descending order */
  sqlite3_int64 limit;      /* rows still to return, -1 for no limit */
  uint64_t *in_rows;        /* IN list, sorted, or NULL */
  int n_in, i_in;           /* IN list size and position */
  int eof;                  /* no current row */
  uint64_t faults;          /* npk_map_faults() when the scan began */
  NpkKnnHit *hits;          /* a KNN query's rows in order, or NULL */
  size_t n_hits, i_hit;     /* how many, and the current one */
  sqlite3_int64 knn_k;      /* its k */
  int knn_metric;           /* its metric */
  unsigned char *qrow;      /* room for one row past the cursor, for
                            ** lookups read without the lock, or NULL */
  int quick;                /* the current row is in qrow: no read held */
  int nquick;               /* rows this cursor read so, this statement */
  int quick_held;           /* the cursor holds the state of a row read
                            ** without the lock (npk_conn_read_row) until
                            ** it closes: every later read of the
                            ** statement, whichever cursor makes it, is of
                            ** that state or fails, as under the read
                            ** lock a scan keeps until it closes */
};

/* Rows up to this size are looked up without the lock (vt_filter). */
#define QUICK_ROW_MAX 4096

/* A cursor filtered more often than this in one statement (the inner side
** of a join) takes the read lock for the rest of it: each lookup without
** the lock checks the state anew, where under the held lock a filter costs
** next to nothing. */
#define QUICK_FILTERS_MAX 8

/* ---- arguments ------------------------------------------------------- */

/* Parsed CREATE VIRTUAL TABLE arguments. */
typedef struct NpkArgs NpkArgs;
struct NpkArgs {
  char *store;                  /* store= */
  char *array;                  /* array= */
  int dtype;                    /* dtype=, -1 if absent */
  int have_shape;               /* shape= given */
  char *shape_text;             /* shape= as given, for messages */
  int shape_big;                /* a size in shape= is over 2^63-1 */
  uint32_t ndim;                /* dims in shape= */
  uint64_t shape[NPK_MAX_NDIM]; /* row shape */
  int blob;                     /* layout=blob */
  char *columns;                /* columns= */
  int readonly;                 /* readonly= */
  int array_named;              /* array= was given */
  int metric;                   /* metric=, -1 if absent */
};

/* Strip one level of '' or "" quotes, in place. */
static char *unquote(char *z) {
  size_t n = strlen(z);
  if (n >= 2 && (z[0] == '\'' || z[0] == '"') && z[n - 1] == z[0]) {
    char q = z[0];
    size_t j = 0;
    for (size_t i = 1; i < n - 1; i++) {
      z[j++] = z[i];
      if (z[i] == q && z[i + 1] == q) i++;
    }
    z[j] = 0;
  }
  return z;
}

static char *trim(char *z) {
  char *e;
  while (*z == ' ' || *z == '\t' || *z == '\n') z++;
  e = z + strlen(z);
  while (e > z && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n')) *--e = 0;
  return z;
}

/* "(a,b,c)", "()", "a": the row shape.  Sizes over 2^63-1 (NumPy's sizes
** are signed 64-bit) are parsed and flagged in a->shape_big. */
static int parse_shape(char *z, NpkArgs *a) {
  char *p = trim(z), *end;
  size_t n = strlen(p);
  if (n >= 2 && p[0] == '(' && p[n - 1] == ')') {
    p[n - 1] = 0;
    p = trim(p + 1);
  }
  a->ndim = 0;
  a->have_shape = 1;
  while (*p) {
    unsigned long long v;
    if (a->ndim >= NPK_MAX_NDIM - 1) return 0;
    p = trim(p);
    if (*p < '0' || *p > '9') return 0;
    errno = 0;
    v = strtoull(p, &end, 10);
    if (errno == ERANGE || v > (unsigned long long)INT64_MAX) a->shape_big = 1;
    a->shape[a->ndim++] = v;
    p = trim(end);
    if (*p == ',') p++;
    else if (*p) return 0;
  }
  return 1;
}

static void args_free(NpkArgs *a) {
  sqlite3_free(a->store);
  sqlite3_free(a->array);
  sqlite3_free(a->columns);
  sqlite3_free(a->shape_text);
}

static int parse_args(int argc, const char *const *argv, NpkArgs *a,
                      char **pzErr) {
  unsigned seen = 0;
  memset(a, 0, sizeof *a);
  a->dtype = -1;
  a->metric = -1;
  for (int i = 3; i < argc; i++) {
    static const char *const keys[] = {"store",    "array",  "dtype",
                                       "shape",    "layout", "columns",
                                       "readonly", "metric"};
    char *buf = sqlite3_mprintf("%s", argv[i]), *eq, *key, *val;
    int k;
    if (!buf) return SQLITE_NOMEM;
    eq = strchr(buf, '=');
    if (!eq) {
      *pzErr = sqlite3_mprintf(
          "numpack: table %s: argument \"%s\" is not "
          "key=value",
          argv[2], argv[i]);
      sqlite3_free(buf);
      return SQLITE_ERROR;
    }
    *eq = 0;
    key = trim(buf);
    val = unquote(trim(eq + 1));
    for (k = 0; k < 8 && sqlite3_stricmp(key, keys[k]) != 0; k++) {}
    if (k == 8 || (seen & (1u << k))) {
      *pzErr = sqlite3_mprintf("numpack: table %s: %s argument \"%s\"", argv[2],
                               k == 8 ? "unknown" : "repeated", key);
      sqlite3_free(buf);
      return SQLITE_ERROR;
    }
    seen |= 1u << k;
    switch (k) {
      case 0: a->store = sqlite3_mprintf("%s", val); break;
      case 1: a->array = sqlite3_mprintf("%s", val); break;
      case 2:
        a->dtype = npk_dtype_from_name(val);
        if (a->dtype < 0) {
          *pzErr = sqlite3_mprintf("numpack: table %s: unknown dtype \"%s\"",
                                   argv[2], val);
          sqlite3_free(buf);
          return SQLITE_ERROR;
        }
        break;
      case 3:
        if (!(a->shape_text = sqlite3_mprintf("%s", val))) {
          sqlite3_free(buf);
          return SQLITE_NOMEM;
        }
        if (!parse_shape(val, a)) {
          *pzErr = sqlite3_mprintf(
              "numpack: table %s: bad shape \"%s\" "
              "(want e.g. shape=(3,4))",
              argv[2], a->shape_text);
          sqlite3_free(buf);
          return SQLITE_ERROR;
        }
        if (a->shape_big) {
          *pzErr = sqlite3_mprintf(
              "numpack: table %s: shape=%s is too large: "
              "each size must be at most %lld",
              argv[2], a->shape_text, (long long)INT64_MAX);
          sqlite3_free(buf);
          return SQLITE_ERROR;
        }
        break;
      case 4:
        if (sqlite3_stricmp(val, "blob") == 0) a->blob = 1;
        else if (sqlite3_stricmp(val, "columns") != 0) {
          *pzErr = sqlite3_mprintf(
              "numpack: table %s: layout must be "
              "columns or blob, not \"%s\"",
              argv[2], val);
          sqlite3_free(buf);
          return SQLITE_ERROR;
        }
        break;
      case 5: a->columns = sqlite3_mprintf("%s", val); break;
      case 6:
        if (strcmp(val, "1") == 0 || sqlite3_stricmp(val, "true") == 0)
          a->readonly = 1;
        else if (strcmp(val, "0") != 0 && sqlite3_stricmp(val, "false") != 0) {
          *pzErr = sqlite3_mprintf(
              "numpack: table %s: readonly must be 0 "
              "or 1, not \"%s\"",
              argv[2], val);
          sqlite3_free(buf);
          return SQLITE_ERROR;
        }
        break;
      case 7:
        a->metric = npk_knn_metric_from_name(val);
        if (a->metric < 0) {
          *pzErr = sqlite3_mprintf(
              "numpack: table %s: unknown metric \"%s\" "
              "(want one of %s)",
              argv[2], val, npk_knn_metric_list());
          sqlite3_free(buf);
          return SQLITE_ERROR;
        }
        break;
    }
    sqlite3_free(buf);
    if ((k == 0 && !a->store) || (k == 1 && !a->array) ||
        (k == 5 && !a->columns))
      return SQLITE_NOMEM;
  }
  if (!a->store || !*a->store) {
    *pzErr = sqlite3_mprintf(
        "numpack: table %s: store='directory' is "
        "required",
        argv[2]);
    return SQLITE_ERROR;
  }
  a->array_named = a->array != 0;
  if (!a->array) a->array = sqlite3_mprintf("%s", argv[2]);
  if (!a->array) return SQLITE_NOMEM;
  return SQLITE_OK;
}

/* ---- create, connect, disconnect, destroy ---------------------------- */

static void vtab_free(NpkVtab *v) {
  if (!v) return;
  if (v->azCol)
    for (int i = 0; i < v->ncol; i++) sqlite3_free(v->azCol[i]);
  sqlite3_free(v->azCol);
  sqlite3_free(v->scratch);
  sqlite3_free(v->zTable);
  sqlite3_free(v->zArray);
  sqlite3_free(v->zSchema);
  sqlite3_free(v->zGone);
  npk_conn_release(v->conn);
  sqlite3_free(v);
}

/* Column names: columns='x,y,z' or c0..cN (or value for a 1-D array). */
static int make_columns(NpkVtab *v, const NpkArgs *a, int one_d, char **pzErr) {
  v->azCol = sqlite3_malloc64((sqlite3_uint64)v->ncol * sizeof(char *) + 1);
  if (!v->azCol) return SQLITE_NOMEM;
  memset(v->azCol, 0, (size_t)v->ncol * sizeof(char *));
  if (a->columns) {
    char *list = sqlite3_mprintf("%s", a->columns), *p = list;
    int i = 0;
    if (!list) return SQLITE_NOMEM;
    while (p) {
      char *comma = strchr(p, ',');
      if (comma) *comma = 0;
      if (i < v->ncol) v->azCol[i] = sqlite3_mprintf("%s", trim(p));
      i++;
      p = comma ? comma + 1 : 0;
    }
    sqlite3_free(list);
    if (i != v->ncol) {
      *pzErr = sqlite3_mprintf(
          "numpack: table %s: columns= gives %d "
          "name%s for rows of %d elements",
          v->zTable, i, i == 1 ? "" : "s", v->ncol);
      return SQLITE_ERROR;
    }
    for (i = 0; i < v->ncol; i++) {
      if (!v->azCol[i]) return SQLITE_NOMEM;
      if (!v->azCol[i][0]) {
        *pzErr = sqlite3_mprintf(
            "numpack: table %s: columns= has an empty "
            "name (column %d)",
            v->zTable, i);
        return SQLITE_ERROR;
      }
      if (sqlite3_stricmp(v->azCol[i], "row") == 0 ||
          sqlite3_stricmp(v->azCol[i], "rowid") == 0 ||
          sqlite3_stricmp(v->azCol[i], "distance") == 0 ||
          sqlite3_stricmp(v->azCol[i], "k") == 0 ||
          sqlite3_stricmp(v->azCol[i], "metric") == 0) {
        *pzErr = sqlite3_mprintf(
            "numpack: table %s: column name \"%s\" is "
            "taken by the table itself",
            v->zTable, v->azCol[i]);
        return SQLITE_ERROR;
      }
      for (int k = 0; k < i; k++) {
        if (sqlite3_stricmp(v->azCol[k], v->azCol[i]) != 0) continue;
        *pzErr = sqlite3_mprintf(
            "numpack: table %s: column name \"%s\" is "
            "given twice (columns %d and %d)",
            v->zTable, v->azCol[i], k, i);
        return SQLITE_ERROR;
      }
    }
    return SQLITE_OK;
  }
  for (int i = 0; i < v->ncol; i++) {
    v->azCol[i] = one_d ? sqlite3_mprintf("value") : sqlite3_mprintf("c%d", i);
    if (!v->azCol[i]) return SQLITE_NOMEM;
  }
  return SQLITE_OK;
}

static int declare(NpkVtab *v) {
  sqlite3_str *s = sqlite3_str_new(v->db);
  char *sql;
  int rc;
  sqlite3_str_appendall(s, "CREATE TABLE x(");
  for (int i = 0; i < v->ncol; i++)
    sqlite3_str_appendf(s, "%Q %s, ", v->azCol[i], npk_column_type(v->dtype));
  sqlite3_str_appendall(s, v->blob ? "row BLOB" : "row BLOB HIDDEN");
  sqlite3_str_appendall(s,
                        ", distance REAL HIDDEN, k INTEGER HIDDEN, "
                        "metric TEXT HIDDEN)");
  sql = sqlite3_str_finish(s);
  if (!sql) return SQLITE_NOMEM;
  rc = sqlite3_declare_vtab(v->db, sql);
  sqlite3_free(sql);
  return rc;
}

/* Report the session's last error on the table. */
static int fail(NpkVtab *v, int rc) {
  const char *msg = npk_errmsg(v->conn->ses);
  /* The table's array dropped since the table connected: said as to a
  ** table that connects detached, naming the table and the way out. */
  if (rc == NPK_NOTFOUND)
    return npk_vtab_errorf(
        &v->base, SQLITE_NOTFOUND,
        "numpack: table %s: %s; DROP TABLE %s detaches the table", v->zTable,
        strncmp(msg, "numpack: ", 9) == 0 ? msg + 9 : msg, v->zTable);
  return npk_vtab_error(&v->base, npk_sqlite_rc(rc), msg);
}

/* Open the session's transaction, with the savepoints SQLite opened before
** it.  A table created inside a transaction gets no xBegin at all (SQLite
** counts it in the transaction from its creation), so xUpdate calls this
** too. */
static int ensure_txn(NpkVtab *v) {
  int rc;
  if (v->readonly) return SQLITE_OK;
  rc = npk_conn_txn_begin(v->conn, 0);
  return rc ? fail(v, rc) : SQLITE_OK;
}

/* *INFO for rows of DTYPE with the row shape of A, as CREATE makes the
** array.  The row buffer is allocated at once, and rows cross SQL as
** BLOBs: a shape whose rows overflow or exceed SQLite's BLOB limit is
** refused here, naming shape=, rather than reported as "out of memory". */
static int args_layout(sqlite3 *db, const char *zTable, const NpkArgs *a,
                       int dtype, NpkArrayInfo *info, char **pzErr) {
  uint64_t item = (uint64_t)npk_dtype_size(dtype), nonzero = 1, bytes;
  sqlite3_int64 limit = sqlite3_limit(db, SQLITE_LIMIT_LENGTH, -1);
  int big = 0;
  memset(info, 0, sizeof *info);
  info->dtype = dtype;
  info->ndim = a->ndim + 1;
  memcpy(info->shape + 1, a->shape, a->ndim * sizeof a->shape[0]);
  info->row_bytes = item;
  for (uint32_t d = 0; d < a->ndim; d++) {
    /* As NumPy: the sizes other than 0 multiply to a size it can hold. */
    if (a->shape[d])
      big |= __builtin_mul_overflow(nonzero, a->shape[d], &nonzero);
    info->row_bytes *= a->shape[d];
  }
  big |= __builtin_mul_overflow(nonzero, item, &bytes) ||
         bytes > (uint64_t)INT64_MAX;
  if (big) {
    *pzErr = sqlite3_mprintf(
        "numpack: table %s: shape=%s is too large for %s "
        "rows",
        zTable, a->shape_text, npk_dtype_name(dtype));
    return SQLITE_ERROR;
  }
  if (info->row_bytes > (uint64_t)limit) {
    *pzErr = sqlite3_mprintf(
        "numpack: table %s: shape=%s makes %s rows of "
        "%llu bytes, over SQLite's BLOB limit of %lld",
        zTable, a->shape_text, npk_dtype_name(dtype),
        (unsigned long long)info->row_bytes, (long long)limit);
    return SQLITE_TOOBIG;
  }
  return SQLITE_OK;
}

static int vt_init(sqlite3 *db, int create, int argc, const char *const *argv,
                   sqlite3_vtab **ppVtab, char **pzErr) {
  NpkArgs a;
  NpkVtab *v = 0;
  NpkArrayInfo info;
  int rc, flags, missing = 0;
  uint64_t elems = 1;

  *ppVtab = 0;
  rc = parse_args(argc, argv, &a, pzErr);
  if (rc) goto fail;
  v = sqlite3_malloc(sizeof *v);
  if (!v) {
    rc = SQLITE_NOMEM;
    goto fail;
  }
  memset(v, 0, sizeof *v);
  v->db = db;
  v->readonly = a.readonly;
  v->blob = a.blob;
  v->array_named = a.array_named;
  v->zTable = sqlite3_mprintf("%s", argv[2]);
  v->zArray = sqlite3_mprintf("%s", a.array);
  v->zSchema = sqlite3_mprintf("%s", argv[1]);
  if (!v->zTable || !v->zArray || !v->zSchema) {
    rc = SQLITE_NOMEM;
    goto fail;
  }
  if (!npk_name_valid(a.array)) {
    *pzErr = sqlite3_mprintf("numpack: table %s: invalid array name \"%s\"",
                             argv[2], a.array);
    rc = SQLITE_ERROR;
    goto fail;
  }
  /* A readonly table shares the connection's session with the writable
  ** tables and the functions, so that it sees their uncommitted changes
  ** (it refuses writes itself).  Only a store this process may not write
  ** (read-only mount or permissions) gets a read-only session of its own. */
  if (a.readonly) flags = access(a.store, W_OK) == 0 ? 0 : NPK_OPEN_READONLY;
  else flags = create ? NPK_OPEN_CREATE : 0;
  rc = npk_conn_open(db, a.store, flags, &v->conn, pzErr);
  if (rc && !create && (rc & 0xff) == SQLITE_CANTOPEN) {
    /* The store is gone, or its path names no store any more (an empty
    ** directory, a file).  SQLite connects a table before it drops it, so
    ** the table must still connect (detached) for DROP TABLE to remove it;
    ** nothing at the path is touched. */
    const char *why = *pzErr ? *pzErr : "the store cannot be opened";
    if (strncmp(why, "numpack: ", 9) == 0) why += 9;
    v->zGone = sqlite3_mprintf(
        "numpack: table %s: %s; DROP TABLE %s detaches the table", argv[2], why,
        argv[2]);
    sqlite3_free(*pzErr);
    *pzErr = 0;
    if (!v->zGone) {
      rc = SQLITE_NOMEM;
      goto fail;
    }
    v->gone_rc = SQLITE_CANTOPEN;
    rc = NPK_NOTFOUND;
  } else if (rc) {
    goto fail;
  } else {
    /* CREATE VIRTUAL TABLE of a writable table is a writing statement: it
    ** recovers a store whose last commit was interrupted.  Connecting one
    ** declared earlier (perhaps by an untrusted schema) only reads. */
    rc = create && !a.readonly ? npk_recover(v->conn->ses) : NPK_OK;
    if (rc == NPK_OK) rc = npk_array_info(v->conn->ses, a.array, &info);
  }
  if (rc == NPK_NOTFOUND && create && !a.readonly && a.dtype >= 0) {
    /* Describe the array to create; it is created once all checks pass. */
    rc = args_layout(db, argv[2], &a, a.dtype, &info, pzErr);
    if (rc) goto fail;
    missing = 1;
  } else if (rc == NPK_NOTFOUND && !create) {
    /* Gone since the table was created (or its whole store is): detached,
    ** declared as the arguments describe it.  Statements are refused with
    ** zGone; DROP TABLE removes the table and nothing else. */
    if (!v->zGone &&
        !(v->zGone = sqlite3_mprintf("numpack: table %s: no array \"%s\" in "
                                     "store %s; DROP TABLE %s detaches the "
                                     "table",
                                     argv[2], a.array, a.store, argv[2]))) {
      rc = SQLITE_NOMEM;
      goto fail;
    }
    if (!v->gone_rc) v->gone_rc = SQLITE_NOTFOUND;
    npk_conn_release(v->conn);
    v->conn = 0;
    if (a.dtype >= 0) {
      rc = args_layout(db, argv[2], &a, a.dtype, &info, pzErr);
      if (rc) goto fail;
    } else {
      /* Nothing tells the layout: just the row BLOB. */
      memset(&info, 0, sizeof info);
      info.dtype = NPK_UINT8;
      info.ndim = 1;
      info.row_bytes = 1;
      v->blob = 1;
      sqlite3_free(a.columns);
      a.columns = 0;
    }
  } else if (rc == NPK_NOTFOUND) {
    *pzErr = sqlite3_mprintf(
        "numpack: table %s: no array \"%s\" in store %s%s", argv[2], a.array,
        a.store, create && !a.readonly ? "; give dtype= to create it" : "");
    rc = SQLITE_NOTFOUND;
    goto fail;
  } else if (rc) {
    *pzErr = sqlite3_mprintf("%s", npk_errmsg(v->conn->ses));
    rc = npk_sqlite_rc(rc);
    goto fail;
  } else if ((a.dtype >= 0 && a.dtype != info.dtype) ||
             (a.have_shape && (a.ndim + 1 != info.ndim ||
                               memcmp(a.shape, info.shape + 1,
                                      a.ndim * sizeof a.shape[0]) != 0))) {
    /* The store decides dtype and shape; given ones must agree. */
    if (create) {
      *pzErr = sqlite3_mprintf(
          "numpack: table %s: array \"%s\" in %s is %s "
          "with %u dimensions; dtype=/shape= disagree",
          argv[2], a.array, a.store, npk_dtype_name(info.dtype), info.ndim);
      rc = SQLITE_MISMATCH;
      goto fail;
    }
    /* Saved over with another layout since the table was created: declared
    ** as created, so that every statement is refused (layout_check) and
    ** DROP TABLE can still remove the table. */
    if (!a.have_shape) {
      a.ndim = info.ndim - 1;
      memcpy(a.shape, info.shape + 1, a.ndim * sizeof a.shape[0]);
    }
    rc = args_layout(db, argv[2], &a, a.dtype >= 0 ? a.dtype : info.dtype,
                     &info, pzErr);
    if (rc) goto fail;
  }
  /* Rows cross SQL as BLOBs, and one is assembled in v->scratch: an array
  ** of the store whose rows are over SQLite's BLOB limit (CREATE refuses
  ** such a shape=, but the store may hold one) is refused by its size. */
  if (info.row_bytes > (uint64_t)sqlite3_limit(db, SQLITE_LIMIT_LENGTH, -1)) {
    *pzErr = sqlite3_mprintf(
        "numpack: table %s: array \"%s\" has rows of "
        "%llu bytes, over SQLite's BLOB limit of %d",
        argv[2], a.array, (unsigned long long)info.row_bytes,
        sqlite3_limit(db, SQLITE_LIMIT_LENGTH, -1));
    rc = SQLITE_TOOBIG;
    goto fail;
  }
  v->dtype = info.dtype;
  v->item = npk_dtype_size(info.dtype);
  v->row_bytes = info.row_bytes;
  v->ndim = info.ndim;
  memcpy(v->shape, info.shape, sizeof v->shape);
  v->est_rows = (sqlite3_int64)info.live_rows;
  v->metric = a.metric;
  if (a.metric >= 0 && !v->zGone && npk_knn_metric_needs(a.metric, v->dtype)) {
    *pzErr = sqlite3_mprintf(
        "numpack: table %s: metric=%s needs %s; array "
        "\"%s\" is %s",
        argv[2], npk_knn_metric_name(a.metric),
        npk_knn_metric_needs(a.metric, v->dtype), a.array,
        npk_dtype_name(v->dtype));
    rc = SQLITE_ERROR;
    goto fail;
  }
  for (uint32_t d = 1; d < info.ndim; d++) elems *= info.shape[d];
  if (!v->blob) {
    if (info.dtype == NPK_COMPLEX64 || info.dtype == NPK_COMPLEX128) {
      *pzErr = sqlite3_mprintf(
          "numpack: table %s: %s elements have no SQL "
          "value; use layout=blob",
          argv[2], npk_dtype_name(info.dtype));
      rc = SQLITE_ERROR;
      goto fail;
    }
    /* The element columns share SQLite's column limit with the four
    ** hidden ones (row, distance, k, metric) that declare() adds. */
    if (elems + 4 > (uint64_t)sqlite3_limit(db, SQLITE_LIMIT_COLUMN, -1)) {
      *pzErr = sqlite3_mprintf(
          "numpack: table %s: rows of %llu elements "
          "exceed SQLite's column limit (%d columns, 4 of them the "
          "table's own); use layout=blob",
          argv[2], (unsigned long long)elems,
          sqlite3_limit(db, SQLITE_LIMIT_COLUMN, -1));
      rc = SQLITE_ERROR;
      goto fail;
    }
    v->ncol = (int)elems;
  } else if (a.columns) {
    *pzErr = sqlite3_mprintf(
        "numpack: table %s: columns= names element "
        "columns, and layout=blob has none (only row)",
        argv[2]);
    rc = SQLITE_ERROR;
    goto fail;
  }
  rc = make_columns(v, &a, info.ndim == 1, pzErr);
  if (rc) goto fail;
  v->scratch = sqlite3_malloc64(v->row_bytes ? v->row_bytes : 1);
  if (!v->scratch) {
    rc = SQLITE_NOMEM;
    goto fail;
  }
  rc = declare(v);
  if (rc) goto fail;
  if (missing) {
    uint64_t shape[NPK_MAX_NDIM];
    /* The array is created in the store's transaction, as a write
    ** statement would: SQLite counts a table created by a statement in
    ** that statement's transaction (BEGIN's or its own), so this table's
    ** xSync commits it and its xRollback removes it, should the rest of
    ** CREATE fail (writing the schema, out of memory). */
    int began = !npk_in_txn(v->conn->ses);
    if (began && (rc = ensure_txn(v)) != SQLITE_OK) {
      *pzErr = v->base.zErrMsg;
      v->base.zErrMsg = 0;
      goto fail;
    }
    shape[0] = 0;
    memcpy(shape + 1, a.shape, a.ndim * sizeof a.shape[0]);
    rc = npk_save(v->conn->ses, a.array, a.dtype, a.ndim + 1, shape, 0);
    if (rc) {
      *pzErr = sqlite3_mprintf("%s", npk_errmsg(v->conn->ses));
      rc = npk_sqlite_rc(rc);
      /* No table will be left to end the transaction begun for it. */
      if (began) npk_rollback(v->conn->ses);
      goto fail;
    }
  }
  sqlite3_vtab_config(db, SQLITE_VTAB_CONSTRAINT_SUPPORT, 1);
  /* Files outside the database: never reachable from an untrusted schema. */
  sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
  args_free(&a);
  *ppVtab = &v->base;
  return SQLITE_OK;
fail:
  args_free(&a);
  vtab_free(v);
  return rc;
}

static int vt_create(sqlite3 *db, void *aux, int argc, const char *const *argv,
                     sqlite3_vtab **pp, char **pzErr) {
  (void)aux;
  return vt_init(db, 1, argc, argv, pp, pzErr);
}

static int vt_connect(sqlite3 *db, void *aux, int argc, const char *const *argv,
                      sqlite3_vtab **pp, char **pzErr) {
  (void)aux;
  return vt_init(db, 0, argc, argv, pp, pzErr);
}

static int vt_disconnect(sqlite3_vtab *p) {
  vtab_free((NpkVtab *)p);
  return SQLITE_OK;
}

/* 1 if INFO, the array now, has the dtype and row shape the table was
** declared for. */
static int layout_same(const NpkVtab *v, const NpkArrayInfo *info) {
  return info->dtype == v->dtype && info->ndim == v->ndim &&
         memcmp(info->shape + 1, v->shape + 1,
                (v->ndim - 1) * sizeof v->shape[0]) == 0;
}

/* Refuse a statement on a table whose array was saved again since with
** another dtype or row shape (by this connection, another one or another
** program): the table's columns and row buffer no longer fit the rows, so
** nothing may be read or written through it.  INFO is the array now. */
static int layout_check(NpkVtab *v, const NpkArrayInfo *info) {
  char now[NPK_MAX_NDIM * 22], was[NPK_MAX_NDIM * 22];
  if (layout_same(v, info)) return SQLITE_OK;
  sqlite3_free(v->base.zErrMsg);
  v->base.zErrMsg = sqlite3_mprintf(
      "numpack: table %s: array \"%s\" is now %s %s; the table was declared "
      "for %s %s; recreate the table",
      v->zTable, v->zArray, npk_dtype_name(info->dtype),
      npk_row_shape_text(info->shape, info->ndim, 0, now, sizeof now),
      npk_dtype_name(v->dtype),
      npk_row_shape_text(v->shape, v->ndim, 0, was, sizeof was));
  return SQLITE_MISMATCH;
}

/* Refuse a statement on a detached table (zGone). */
static int gone(NpkVtab *v) {
  sqlite3_free(v->base.zErrMsg);
  v->base.zErrMsg = sqlite3_mprintf("%s", v->zGone);
  return v->gone_rc;
}

/* DROP TABLE removes the array with the table, unless the table is
** read-only, or has no array any more (detached, dropped by another
** connection, its store deleted or no store any more since it connected),
** or the array is no longer the one the table was declared for (saved
** over with another layout, as layout_check refuses), or the store's
** directory does not tell names apart by case (no write goes there, and a
** table that could not be dropped would stay in the schema for good): then
** the table goes and the store stays as it is. */
static int vt_destroy(sqlite3_vtab *p) {
  NpkVtab *v = (NpkVtab *)p;
  NpkArrayInfo info;
  int rc;
  if (!v->readonly && !v->zGone && !npk_store_folds_case(v->conn->store)) {
    rc = npk_array_info(v->conn->ses, v->zArray, &info);
    if (rc && rc != NPK_NOTFOUND && rc != NPK_NOFILE &&
        access(npk_store_dir(v->conn->store), F_OK) == 0)
      return fail(v, rc);
    if (rc == NPK_OK && layout_same(v, &info)) {
      /* xDestroy runs when DROP TABLE does, and no xRollback follows it. */
      if (!sqlite3_get_autocommit(v->db) || npk_in_txn(v->conn->ses)) {
        sqlite3_free(v->base.zErrMsg);
        v->base.zErrMsg = sqlite3_mprintf(
            "numpack: DROP TABLE %s inside a transaction is not supported: "
            "it would drop array \"%s\" at once, beyond ROLLBACK",
            v->zTable, v->zArray);
        return SQLITE_ERROR;
      }
      npk_conn_autocommit_write(v->conn);
      rc = npk_drop(v->conn->ses, v->zArray);
      if (rc && rc != NPK_NOTFOUND && rc != NPK_NOFILE) return fail(v, rc);
    }
  }
  vtab_free(v);
  return SQLITE_OK;
}

/* ---- planning -------------------------------------------------------- */

/* Columns after the element columns. */
#define COL_ROW(v)      ((v)->ncol)
#define COL_DISTANCE(v) ((v)->ncol + 1)
#define COL_K(v)        ((v)->ncol + 2)
#define COL_METRIC(v)   ((v)->ncol + 3)

/* Take usable rowid constraint I into a plan: one equality (with
** PREFER_EQ, an "=" replaces an IN list taken before it), the first lower
** and the first upper bound.  1 if it was taken, 0 if SQLite must check
** it. */
static int rowid_constraint(sqlite3_index_info *info, int i, int prefer_eq,
                            int *eq, int *is_in, int *lo, int *hi) {
  switch (info->aConstraint[i].op) {
    case SQLITE_INDEX_CONSTRAINT_EQ:
      if (*eq >= 0 && !(prefer_eq && *is_in && !sqlite3_vtab_in(info, i, -1)))
        return 0;
      *eq = i;
      *is_in = sqlite3_vtab_in(info, i, -1);
      return 1;
    case SQLITE_INDEX_CONSTRAINT_GT:
    case SQLITE_INDEX_CONSTRAINT_GE:
      if (*lo >= 0) return 0;
      *lo = i;
      return 1;
    case SQLITE_INDEX_CONSTRAINT_LT:
    case SQLITE_INDEX_CONSTRAINT_LE:
      if (*hi >= 0) return 0;
      *hi = i;
      return 1;
    default: return 0;
  }
}

/* The plan of a KNN query: row MATCH ? (usable, at constraint M).  Every
** rowid constraint is taken, so that it chooses the candidates before the
** top k; k and metric must be known when the scan starts. */
static int knn_best_index(NpkVtab *v, sqlite3_index_info *info, int m) {
  int k = -1, met = -1, eq = -1, lo = -1, hi = -1, lim = -1, off = 0;
  int others = 0, is_in = 0, argv_i = 0, idx = IDX_KNN, by_distance = 0;
  double rows = v->est_rows > 0 ? (double)v->est_rows : 1.0;

  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &info->aConstraint[i];
    if (i == m) continue;
    if (c->op == SQLITE_INDEX_CONSTRAINT_LIMIT) {
      if (c->usable) lim = i;
      continue;
    }
    if (c->op == SQLITE_INDEX_CONSTRAINT_OFFSET) {
      off = 1;
      continue;
    }
    if ((c->iColumn == COL_K(v) || c->iColumn == COL_METRIC(v)) &&
        c->op == SQLITE_INDEX_CONSTRAINT_EQ) {
      /* Known only row by row (a join): not a plan. */
      if (!c->usable) return SQLITE_CONSTRAINT;
      if (c->iColumn == COL_K(v) && k < 0) k = i;
      else if (c->iColumn == COL_METRIC(v) && met < 0) met = i;
      else others++;
      continue;
    }
    if (!c->usable || c->iColumn >= 0) {
      others++;
      continue;
    }
    others += !rowid_constraint(info, i, 0, &eq, &is_in, &lo, &hi);
  }
  info->aConstraintUsage[m].argvIndex = ++argv_i;
  info->aConstraintUsage[m].omit = 1;
  if (k >= 0) {
    info->aConstraintUsage[k].argvIndex = ++argv_i;
    info->aConstraintUsage[k].omit = 1;
    idx |= IDX_K;
  }
  if (met >= 0) {
    info->aConstraintUsage[met].argvIndex = ++argv_i;
    info->aConstraintUsage[met].omit = 1;
    idx |= IDX_METRIC;
  }
  if (eq >= 0) {
    info->aConstraintUsage[eq].argvIndex = ++argv_i;
    info->aConstraintUsage[eq].omit = 1;
    if (is_in) sqlite3_vtab_in(info, eq, 1);
    idx |= is_in ? IDX_IN : IDX_EQ;
    rows = is_in ? 10 : 1;
  }
  if (lo >= 0) {
    info->aConstraintUsage[lo].argvIndex = ++argv_i;
    info->aConstraintUsage[lo].omit = 1;
    idx |= info->aConstraint[lo].op == SQLITE_INDEX_CONSTRAINT_GT ? IDX_GT
                                                                  : IDX_GE;
  }
  if (hi >= 0) {
    info->aConstraintUsage[hi].argvIndex = ++argv_i;
    info->aConstraintUsage[hi].omit = 1;
    idx |= info->aConstraint[hi].op == SQLITE_INDEX_CONSTRAINT_LT ? IDX_LT
                                                                  : IDX_LE;
  }
  /* Rows come by distance, then rowid. */
  if (info->nOrderBy >= 1 && info->aOrderBy[0].iColumn == COL_DISTANCE(v) &&
      !info->aOrderBy[0].desc &&
      (info->nOrderBy == 1 ||
       (info->nOrderBy == 2 && info->aOrderBy[1].iColumn < 0 &&
        !info->aOrderBy[1].desc))) {
    info->orderByConsumed = 1;
    by_distance = 1;
  }
  /* LIMIT is ours when no other condition drops rows after ours. */
  if (lim >= 0 && !others && !off && (info->nOrderBy == 0 || by_distance)) {
    info->aConstraintUsage[lim].argvIndex = ++argv_i;
    info->aConstraintUsage[lim].omit = 1;
    idx |= IDX_LIMIT;
  }
  info->idxNum = idx;
  info->idxStr = sqlite3_mprintf("KNN%s%s%s%s%s%s%s", (idx & IDX_K) ? " k" : "",
                                 (idx & IDX_METRIC) ? " metric" : "",
                                 (idx & IDX_EQ)   ? " rowid-EQ"
                                 : (idx & IDX_IN) ? " rowid-IN"
                                                  : "",
                                 (idx & (IDX_GT | IDX_GE)) ? " rowid-LOW" : "",
                                 (idx & (IDX_LT | IDX_LE)) ? " rowid-HIGH" : "",
                                 (idx & IDX_LIMIT) ? " LIMIT" : "",
                                 by_distance ? " ORDER-BY-DISTANCE" : "");
  if (!info->idxStr) return SQLITE_NOMEM;
  info->needToFreeIdxStr = 1;
  /* Every candidate is read once: the cost of a scan of them. */
  info->estimatedCost = rows;
  info->estimatedRows = 10;
  return SQLITE_OK;
}

static int vt_best_index(sqlite3_vtab *p, sqlite3_index_info *info) {
  NpkVtab *v = (NpkVtab *)p;
  int eq = -1, lo = -1, hi = -1, lim = -1, off = -1, others = 0, is_in = 0;
  int argv_i = 0, idx = 0;
  double rows = v->est_rows > 0 ? (double)v->est_rows : 1.0, cost;

  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &info->aConstraint[i];
    if (c->op != SQLITE_INDEX_CONSTRAINT_MATCH || c->iColumn != COL_ROW(v))
      continue;
    /* A query vector known only row by row (a join) is not a plan. */
    return c->usable ? knn_best_index(v, info, i) : SQLITE_CONSTRAINT;
  }

  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &info->aConstraint[i];
    if (c->op == SQLITE_INDEX_CONSTRAINT_LIMIT) {
      if (c->usable) lim = i;
      continue;
    }
    if (c->op == SQLITE_INDEX_CONSTRAINT_OFFSET) {
      if (c->usable) off = i;
      continue;
    }
    if (!c->usable || c->iColumn >= 0) {
      others++;
      continue;
    }
    others += !rowid_constraint(info, i, 1, &eq, &is_in, &lo, &hi);
  }
  if (eq >= 0) {
    info->aConstraintUsage[eq].argvIndex = ++argv_i;
    info->aConstraintUsage[eq].omit = 1;
    if (is_in) {
      sqlite3_vtab_in(info, eq, 1);
      idx |= IDX_IN;
      rows = 10;
    } else {
      idx |= IDX_EQ;
      rows = 1;
      info->idxFlags |= SQLITE_INDEX_SCAN_UNIQUE;
    }
    /* A range next to an equality is left for SQLite to check. */
    if (lo >= 0) others++;
    if (hi >= 0) others++;
    lo = hi = -1;
  }
  if (lo >= 0) {
    info->aConstraintUsage[lo].argvIndex = ++argv_i;
    info->aConstraintUsage[lo].omit = 1;
    idx |= info->aConstraint[lo].op == SQLITE_INDEX_CONSTRAINT_GT ? IDX_GT
                                                                  : IDX_GE;
    rows /= 4;
  }
  if (hi >= 0) {
    info->aConstraintUsage[hi].argvIndex = ++argv_i;
    info->aConstraintUsage[hi].omit = 1;
    idx |= info->aConstraint[hi].op == SQLITE_INDEX_CONSTRAINT_LT ? IDX_LT
                                                                  : IDX_LE;
    rows /= 4;
  }
  if (info->nOrderBy == 1 && info->aOrderBy[0].iColumn < 0) {
    info->orderByConsumed = 1;
    if (info->aOrderBy[0].desc) idx |= IDX_DESC;
  }
  /* LIMIT/OFFSET are ours only when nothing else filters the rows. */
  if (!others && (info->nOrderBy == 0 || info->orderByConsumed) &&
      !(idx & (IDX_EQ | IDX_IN))) {
    if (lim >= 0) {
      info->aConstraintUsage[lim].argvIndex = ++argv_i;
      info->aConstraintUsage[lim].omit = 1;
      idx |= IDX_LIMIT;
      rows = rows > 100 ? 100 : rows;
    }
    if (off >= 0) {
      info->aConstraintUsage[off].argvIndex = ++argv_i;
      info->aConstraintUsage[off].omit = 1;
      idx |= IDX_OFFSET;
    }
  }
  cost = (idx & IDX_EQ) ? 1.0 : (idx & IDX_IN) ? 10.0 : rows;
  info->idxNum = idx;
  info->estimatedCost = cost;
  info->estimatedRows = (sqlite3_int64)(rows < 1 ? 1 : rows);
  return SQLITE_OK;
}

/* ---- cursors --------------------------------------------------------- */

static int vt_open(sqlite3_vtab *p, sqlite3_vtab_cursor **pp) {
  uint64_t rb = ((NpkVtab *)p)->row_bytes;
  size_t room = rb <= QUICK_ROW_MAX ? (size_t)rb : 0;
  NpkCursor *c = sqlite3_malloc64(sizeof *c + room);
  if (!c) return SQLITE_NOMEM;
  memset(c, 0, sizeof *c);
  /* The row buffer comes with the cursor: a lookup allocates nothing. */
  if (rb <= QUICK_ROW_MAX) c->qrow = (unsigned char *)(c + 1);
  c->eof = 1;
  /* Opened while the statement (or another of the connection) holds a
  ** row's state: SQLite opens a new cursor for each run of a correlated
  ** subquery and closes the one before only then. */
  if (((NpkVtab *)p)->conn && npk_conn_read_row_hold(((NpkVtab *)p)->conn))
    c->quick_held = 1;
  *pp = &c->base;
  return SQLITE_OK;
}

static void cursor_clear(NpkCursor *c) {
  c->quick = 0;
  sqlite3_free(c->in_rows);
  c->in_rows = 0;
  npk_free(c->hits);
  c->hits = 0;
  c->n_hits = c->i_hit = 0;
  c->n_in = c->i_in = 0;
  c->eof = 1;
}

static void cursor_reset(NpkVtab *v, NpkCursor *c) {
  cursor_clear(c);
  if (c->reading) {
    npk_scan_end(v->conn->ses, v->zArray);
    npk_read_end(v->conn->ses);
    c->reading = 0;
  }
  c->eof = 1;
}

static int vt_close(sqlite3_vtab_cursor *cur) {
  NpkCursor *c = (NpkCursor *)cur;
  cursor_reset((NpkVtab *)cur->pVtab, c);
  if (c->quick_held) npk_conn_read_row_end(((NpkVtab *)cur->pVtab)->conn);
  sqlite3_free(c);
  return SQLITE_OK;
}

/* Take a fresh view if this session changed anything since the last one. */
static int view_sync(NpkVtab *v, NpkCursor *c) {
  NpkSession *s = v->conn->ses;
  int rc;
  if (c->have_view && c->gen == npk_change_count(s)) return NPK_OK;
  rc = npk_view(s, v->zArray, &c->view);
  if (rc) return rc;
  c->gen = npk_change_count(s);
  c->have_view = 1;
  return NPK_OK;
}

static int row_is_live(const NpkCursor *c, uint64_t r) {
  if (r >= c->view.rows) return 0;
  return !c->view.live || (c->view.live[r / 64] >> (r % 64) & 1);
}

/* Move to the first live row at or after (before, if descending) c->row
** within [lo, hi). */
static void settle(NpkCursor *c) {
  if (c->desc) {
    for (;;) {
      if (c->row < c->lo || c->row >= c->hi || c->row == UINT64_MAX) {
        c->eof = 1;
        return;
      }
      if (row_is_live(c, c->row)) return;
      c->row--;
    }
  }
  while (c->row < c->hi) {
    uint64_t r = c->row;
    if (!c->view.live) return;
    /* Skip whole words of deleted rows at once. */
    if ((c->view.live[r / 64] >> (r % 64)) == 0) {
      c->row = (r / 64 + 1) * 64;
      continue;
    }
    if (row_is_live(c, r)) return;
    c->row++;
  }
  c->eof = 1;
}

/* Advance through the IN list to the next live row. */
static void in_settle(NpkCursor *c) {
  while (c->i_in < c->n_in) {
    int i = c->desc ? c->n_in - 1 - c->i_in : c->i_in;
    if (row_is_live(c, c->in_rows[i])) {
      c->row = c->in_rows[i];
      return;
    }
    c->i_in++;
  }
  c->eof = 1;
}

/* How a rowid constraint's value compares with the rowids. */
#define RA_INT  0 /* a whole number >= 0, in *r */
#define RA_FRAC 1 /* between *r and *r + 1 */
#define RA_NEG  2 /* below every rowid */
#define RA_HIGH \
  3               /* above every rowid (huge, or text/blob: SQLite sorts
                  ** them after all numbers) */
#define RA_NULL 4 /* NULL: the comparison is never true */

static int rowid_arg(sqlite3_value *val, uint64_t *r) {
  *r = 0;
  switch (sqlite3_value_numeric_type(val)) {
    case SQLITE_INTEGER: {
      sqlite3_int64 i = sqlite3_value_int64(val);
      if (i < 0) return RA_NEG;
      *r = (uint64_t)i;
      return RA_INT;
    }
    case SQLITE_FLOAT: {
      double d = sqlite3_value_double(val);
      if (d < 0) return RA_NEG;
      if (d >= 9.0e18) return RA_HIGH;
      *r = (uint64_t)d;
      return (double)*r == d ? RA_INT : RA_FRAC;
    }
    case SQLITE_NULL: return RA_NULL;
    default: return RA_HIGH;
  }
}

/* The values of the rowid IN list LIST (sqlite3_vtab_in) that can be rows
** of the cursor's view, into c->in_rows (c->n_in of them), in SQLite's
** order. */
static int in_list(NpkCursor *c, sqlite3_value *list) {
  sqlite3_value *val;
  int cap = 16, rc;
  c->in_rows = sqlite3_malloc64((sqlite3_uint64)cap * sizeof *c->in_rows);
  if (!c->in_rows) return SQLITE_NOMEM;
  for (rc = sqlite3_vtab_in_first(list, &val); rc == SQLITE_OK && val;
       rc = sqlite3_vtab_in_next(list, &val)) {
    uint64_t r;
    if (rowid_arg(val, &r) != RA_INT || r >= c->view.rows) continue;
    if (c->n_in == cap) {
      uint64_t *p;
      cap *= 2;
      p = sqlite3_realloc64(c->in_rows, (sqlite3_uint64)cap * sizeof *p);
      if (!p) return SQLITE_NOMEM;
      c->in_rows = p;
    }
    c->in_rows[c->n_in++] = r;
  }
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* xFilter of a KNN plan (knn_best_index): the arguments are the query, k,
** metric, then rowid constraints and LIMIT as the idxNum bits say.  The
** whole search runs here; xNext walks its results. */
static int knn_filter(NpkVtab *v, NpkCursor *c, int idx, sqlite3_value **argv) {
  NpkSession *s = v->conn->ses;
  sqlite3_value *qv = argv[0];
  int ai = 1, rc,
      metric = v->metric >= 0 ? v->metric : npk_knn_default_metric(v->dtype);
  sqlite3_int64 k = -1;
  uint64_t dim = v->item ? v->row_bytes / (uint64_t)v->item : 0;
  const char *need;
  NpkErr pe;
  void *query = 0;
  size_t nq, room, found;
  NpkKnnScan scan;
  NpkRowSource rows;
  uint64_t one;

  if (idx & IDX_K) {
    sqlite3_value *kv = argv[ai++];
    if (sqlite3_value_numeric_type(kv) != SQLITE_INTEGER ||
        sqlite3_value_int64(kv) <= 0)
      return npk_vtab_errorf(&v->base, SQLITE_MISMATCH,
                             "numpack: table %s: k must be a "
                             "positive integer, not %s",
                             v->zTable,
                             sqlite3_value_type(kv) == SQLITE_NULL
                                 ? "NULL"
                                 : (const char *)sqlite3_value_text(kv));
    k = sqlite3_value_int64(kv);
  }
  if (idx & IDX_METRIC) {
    sqlite3_value *mv = argv[ai++];
    if ((metric = npk_knn_metric_arg(mv)) < 0) {
      char *msg = npk_knn_metric_unknown("table ", v->zTable, mv);
      int rc = npk_vtab_error(&v->base, msg ? SQLITE_ERROR : SQLITE_NOMEM, msg);
      sqlite3_free(msg);
      return rc;
    }
  }
  need = npk_knn_metric_needs(metric, v->dtype);
  if (need)
    return npk_vtab_errorf(&v->base, SQLITE_ERROR,
                           "numpack: table %s: metric %s needs %s; "
                           "array \"%s\" is %s",
                           v->zTable, npk_knn_metric_name(metric), need,
                           v->zArray, npk_dtype_name(v->dtype));

  npk_knn_scan_view(&scan, &c->view, metric, dim, &rows);
  rows.ses = s;
  rows.array = v->zArray;
  scan.stop = npk_interrupt_requested;
  scan.stop_arg = s;
  if (idx & IDX_EQ) {
    if (rowid_arg(argv[ai++], &one) != RA_INT) scan.hi = 0;
    scan.only = &one;
    scan.n_only = 1;
  } else if (idx & IDX_IN) {
    if ((rc = in_list(c, argv[ai++]))) return rc;
    /* SQLite hands the values over sorted (from its index of the list)
    ** as a rule: a sort is needed only when they are not. */
    for (int i = 1; i < c->n_in; i++)
      if (c->in_rows[i] <= c->in_rows[i - 1]) {
        c->n_in = (int)npk_rows_sort_unique(c->in_rows, (uint64_t)c->n_in);
        break;
      }
    scan.only = c->in_rows;
    scan.n_only = (size_t)c->n_in;
  }
  if (idx & (IDX_GT | IDX_GE)) {
    uint64_t r;
    switch (rowid_arg(argv[ai++], &r)) {
      case RA_INT: scan.lo = (idx & IDX_GT) ? r + 1 : r; break;
      case RA_FRAC: scan.lo = r + 1; break;
      case RA_NEG: break;
      default: scan.hi = 0; break;
    }
  }
  if (idx & (IDX_LT | IDX_LE)) {
    uint64_t r, to = scan.hi;
    switch (rowid_arg(argv[ai++], &r)) {
      case RA_INT: to = (idx & IDX_LE) ? r + 1 : r; break;
      case RA_FRAC: to = r + 1; break;
      case RA_HIGH: break;
      default: to = 0; break;
    }
    if (to < scan.hi) scan.hi = to;
  }
  if (idx & IDX_LIMIT) {
    sqlite3_int64 lim = sqlite3_value_int64(argv[ai++]);
    /* A negative LIMIT is no limit, as in SQLite. */
    if (lim >= 0 && (k < 0 || lim < k)) k = lim;
  }
  if (k < 0)
    return npk_vtab_errorf(&v->base, SQLITE_ERROR,
                           "numpack: table %s: a MATCH query needs "
                           "k = N (LIMIT N alone gives k from SQLite 3.41 on)",
                           v->zTable);
  c->knn_k = k;
  c->knn_metric = metric;
  if (sqlite3_value_type(qv) != SQLITE_BLOB &&
      sqlite3_value_type(qv) != SQLITE_TEXT)
    return npk_vtab_errorf(
        &v->base, SQLITE_MISMATCH,
        "numpack: table %s: MATCH needs a "
        "query vector: a %s row BLOB, an .npy BLOB or JSON text "
        "such as '[0.5, 1.0]', not %s",
        v->zTable, npk_dtype_name(v->dtype),
        sqlite3_value_type(qv) == SQLITE_NULL ? "NULL" : "a number");
  {
    int text = sqlite3_value_type(qv) == SQLITE_TEXT;
    const void *p =
        text ? (const void *)sqlite3_value_text(qv) : sqlite3_value_blob(qv);
    size_t n = (size_t)sqlite3_value_bytes(qv);
    rc = npk_knn_parse(p ? p : "", n, text, v->dtype, metric, dim, 1, &query,
                       &nq, &pe);
  }
  if (rc == NPK_NOMEM) return SQLITE_NOMEM;
  if (rc)
    return npk_vtab_errorf(&v->base, SQLITE_MISMATCH, "numpack: table %s: %s",
                           v->zTable, npk_err_text(&pe));
  c->eof = 1;
  room = npk_knn_room(&scan, k == 0 ? 1 : (size_t)k);
  if (k > 0 && room > 0) {
    c->hits = npk_malloc(room * sizeof *c->hits);
    if (!c->hits) {
      npk_free(query);
      return SQLITE_NOMEM;
    }
    rc = npk_knn_search(&scan, query, 1, (size_t)k, c->hits, &found);
    if (rc == NPK_OK) rc = npk_map_check(s, c->faults, v->zArray);
    npk_free(query);
    if (rc == NPK_NOMEM) return SQLITE_NOMEM;
    if (rc) return fail(v, rc);
    c->n_hits = found;
    c->i_hit = 0;
    if (found) {
      c->row = c->hits[0].row;
      c->eof = 0;
    }
  } else {
    npk_free(query);
  }
  return SQLITE_OK;
}

static int vt_filter(sqlite3_vtab_cursor *cur, int idx, const char *idxStr,
                     int argc, sqlite3_value **argv) {
  NpkCursor *c = (NpkCursor *)cur;
  NpkVtab *v = (NpkVtab *)cur->pVtab;
  NpkSession *s = v->conn ? v->conn->ses : 0;
  int ai = 0, rc;
  sqlite3_int64 offset = 0;
  NpkArrayInfo info;
  (void)idxStr;
  (void)argc;

  if (idx == IDX_EQ && c->qrow && !c->reading && s && !v->zGone &&
      c->nquick < QUICK_FILTERS_MAX) {
    /* One row in autocommit mode: read without the lock when the store
    ** allows (npk_read_row_unlocked), else as below. */
    uint64_t r;
    int found, quick;
    /* A state held, by this cursor or another, is the one read here, or
    ** the read under the lock below fails the statement. */
    quick = rowid_arg(argv[0], &r) == RA_INT &&
            npk_conn_read_row(v->conn, v->zArray, r, c->qrow,
                              (size_t)v->row_bytes, &info, &found) == NPK_OK;
    if (quick) {
      cursor_reset(v, c);
      /* One hold per cursor, kept until it closes. */
      if (c->quick_held) npk_conn_read_row_end(v->conn);
      c->quick_held = 1;
      if ((rc = layout_check(v, &info))) return rc;
      v->est_rows = (sqlite3_int64)info.live_rows;
      c->quick = 1;
      c->nquick++;
      c->row = r;
      c->eof = !found;
      return SQLITE_OK;
    }
  }
  if (c->reading && c->have_view && c->gen == npk_change_count(s)) {
    /* The same statement filters this cursor again, as the inner side of
    ** a join does once per outer row: the read it began holds the store
    ** at one committed state until the statement ends (xClose), so the
    ** view is still current and nothing needs locking or checking again.
    ** Only pages cut from under the mapping meanwhile need looking at. */
    cursor_clear(c);
    if ((rc = npk_map_check(s, c->faults, v->zArray))) return fail(v, rc);
  } else {
    cursor_reset(v, c);
    c->have_view = 0;
    if (v->zGone) return gone(v);
    /* Of the state a row read without the lock holds, if one does. */
    rc = npk_conn_read_begin(v->conn, v->zSchema);
    if (rc) return fail(v, rc);
    if ((rc = npk_scan_begin(s, v->zArray))) {
      npk_read_end(s);
      return fail(v, rc);
    }
    c->reading = 1;
    /* The catalog is in memory: this costs no system call. */
    rc = npk_array_info(s, v->zArray, &info);
    if (rc) return fail(v, rc);
    if ((rc = layout_check(v, &info))) return rc;
    c->faults = npk_map_faults(s);
    rc = view_sync(v, c);
    if (rc) return fail(v, rc);
    v->est_rows = (sqlite3_int64)c->view.live_rows;
  }
  if (idx & IDX_KNN) return knn_filter(v, c, idx, argv);
  c->eof = 0;
  c->desc = (idx & IDX_DESC) != 0;
  c->lo = 0;
  c->hi = c->view.rows;
  c->limit = -1;

  if (idx & IDX_EQ) {
    uint64_t r;
    if (rowid_arg(argv[ai++], &r) != RA_INT || r >= c->view.rows) c->hi = 0;
    else {
      c->lo = r;
      c->hi = r + 1;
    }
  } else if (idx & IDX_IN) {
    if ((rc = in_list(c, argv[ai++]))) return rc;
    /* Each row is returned once, in rowid order. */
    c->n_in = (int)npk_rows_sort_unique(c->in_rows, (uint64_t)c->n_in);
    in_settle(c);
    return SQLITE_OK;
  }
  if (idx & (IDX_GT | IDX_GE)) {
    uint64_t r, from = 0;
    switch (rowid_arg(argv[ai++], &r)) {
      case RA_INT: from = (idx & IDX_GT) ? r + 1 : r; break;
      case RA_FRAC: from = r + 1; break;
      case RA_NEG: from = 0; break;
      default: c->hi = 0; break;
    }
    if (from > c->lo) c->lo = from;
  }
  if (idx & (IDX_LT | IDX_LE)) {
    uint64_t r, to = c->hi;
    switch (rowid_arg(argv[ai++], &r)) {
      case RA_INT: to = (idx & IDX_LE) ? r + 1 : r; break;
      case RA_FRAC: to = r + 1; break;
      case RA_HIGH: break;
      default: to = 0; break;
    }
    if (to < c->hi) c->hi = to;
  }
  if (idx & IDX_LIMIT) {
    c->limit = sqlite3_value_int64(argv[ai++]);
    if (c->limit < 0) c->limit = -1;
  }
  if (idx & IDX_OFFSET) {
    offset = sqlite3_value_int64(argv[ai++]);
    if (offset < 0) offset = 0;
  }
  if (c->lo >= c->hi) {
    c->eof = 1;
    return SQLITE_OK;
  }
  if (offset > 0) {
    /* Jump OFFSET live rows in from the start (or end) of [lo, hi). */
    uint64_t before, last, k;
    rc = npk_physical_to_logical(s, v->zArray, c->lo, &before);
    if (rc == NPK_OK) rc = npk_physical_to_logical(s, v->zArray, c->hi, &last);
    if (rc) return fail(v, rc);
    if ((uint64_t)offset >= last - before) {
      c->eof = 1;
      return SQLITE_OK;
    }
    k = c->desc ? last - 1 - (uint64_t)offset : before + (uint64_t)offset;
    rc = npk_logical_to_physical(s, v->zArray, k, &c->row);
    if (rc) return fail(v, rc);
  } else {
    c->row = c->desc ? c->hi - 1 : c->lo;
  }
  if (c->limit == 0) c->eof = 1;
  else settle(c);
  return SQLITE_OK;
}

static int vt_next(sqlite3_vtab_cursor *cur) {
  NpkCursor *c = (NpkCursor *)cur;
  NpkVtab *v = (NpkVtab *)cur->pVtab;
  int rc;
  if (c->quick) {
    /* The lookup's one row is done with; its state stays held until the
    ** cursor closes, for the rest of the statement. */
    cursor_clear(c);
    return SQLITE_OK;
  }
  rc = npk_map_check(v->conn->ses, c->faults, v->zArray);
  if (rc == NPK_OK) rc = view_sync(v, c);
  if (rc) return fail(v, rc);
  if (c->hits) {
    if (++c->i_hit < c->n_hits) c->row = c->hits[c->i_hit].row;
    else c->eof = 1;
    return SQLITE_OK;
  }
  if (c->limit > 0 && --c->limit == 0) {
    c->eof = 1;
    return SQLITE_OK;
  }
  if (c->in_rows) {
    c->i_in++;
    in_settle(c);
    return SQLITE_OK;
  }
  if (c->desc) c->row--;
  else c->row++;
  settle(c);
  return SQLITE_OK;
}

static int vt_eof(sqlite3_vtab_cursor *cur) { return ((NpkCursor *)cur)->eof; }

static int vt_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *pRowid) {
  *pRowid = (sqlite3_int64)((NpkCursor *)cur)->row;
  return SQLITE_OK;
}

/* Pointer to the cursor's current row. */
static int cursor_row(NpkVtab *v, NpkCursor *c, const unsigned char **pp) {
  int rc = view_sync(v, c);
  const void *p;
  if (rc) return rc;
  if (c->view.base && c->row < c->view.rows) {
    *pp = c->view.base + c->row * c->view.row_bytes;
    return NPK_OK;
  }
  rc = npk_row_ptr(v->conn->ses, v->zArray, c->row, &p);
  *pp = p;
  return rc;
}

static int vt_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  NpkCursor *c = (NpkCursor *)cur;
  NpkVtab *v = (NpkVtab *)cur->pVtab;
  const unsigned char *p;
  int rc;
  /* UPDATE asks for the columns it keeps: say "unchanged", read nothing. */
  if (sqlite3_vtab_nochange(ctx)) return SQLITE_OK;
  if (i > COL_ROW(v)) {
    /* The KNN columns: NULL outside a KNN query. */
    if (!c->hits) return SQLITE_OK;
    if (i == COL_DISTANCE(v))
      sqlite3_result_double(ctx, c->hits[c->i_hit].dist);
    else if (i == COL_K(v)) sqlite3_result_int64(ctx, c->knn_k);
    else
      sqlite3_result_text(ctx, npk_knn_metric_name(c->knn_metric), -1,
                          SQLITE_STATIC);
    return SQLITE_OK;
  }
  if (c->quick) {
    /* A copy of the row, valid until the cursor moves: SQLite copies it. */
    if (i < v->ncol)
      npk_element_result(ctx, v->dtype, c->qrow + (size_t)i * (size_t)v->item);
    else sqlite3_result_blob64(ctx, c->qrow, v->row_bytes, SQLITE_TRANSIENT);
    return SQLITE_OK;
  }
  rc = cursor_row(v, c, &p);
  if (rc) return fail(v, rc);
  if (i < v->ncol) {
    npk_element_result(ctx, v->dtype, p + (size_t)i * (size_t)v->item);
  } else {
    /* Touch every page of the row, so that a file cut short shows now
    ** rather than when SQLite reads the bytes. */
    volatile unsigned char sink;
    for (uint64_t off = 0; off < v->row_bytes; off += 4096) sink = p[off];
    if (v->row_bytes) sink = p[v->row_bytes - 1];
    (void)sink;
    /* The bytes stay put for the statement unless this session is writing:
    ** then SQLite must take a copy. */
    sqlite3_result_blob64(
        ctx, p, v->row_bytes,
        npk_in_txn(v->conn->ses) ? SQLITE_TRANSIENT : SQLITE_STATIC);
  }
  rc = npk_map_check(v->conn->ses, c->faults, v->zArray);
  return rc ? fail(v, rc) : SQLITE_OK;
}

/* ---- writing --------------------------------------------------------- */

/* Build the row for INSERT or UPDATE in v->scratch from ARGV[2..]; for an
** UPDATE, columns marked "unchanged" keep the bytes of row OLD. */
static int assemble(NpkVtab *v, sqlite3_value **argv, int update,
                    uint64_t old) {
  NpkSession *s = v->conn->ses;
  sqlite3_value *rowv = argv[2 + v->ncol];
  int row_given =
      !sqlite3_value_nochange(rowv) && sqlite3_value_type(rowv) != SQLITE_NULL;
  int cols_given = 0;
  for (int i = 0; i < v->ncol; i++)
    if (!sqlite3_value_nochange(argv[2 + i]) &&
        (update || sqlite3_value_type(argv[2 + i]) != SQLITE_NULL))
      cols_given = 1;
  if (row_given && cols_given) {
    v->base.zErrMsg = sqlite3_mprintf(
        "numpack: table %s: set either the row BLOB or the columns, not both",
        v->zTable);
    return SQLITE_ERROR;
  }
  if (row_given) {
    if (sqlite3_value_type(rowv) != SQLITE_BLOB ||
        (uint64_t)sqlite3_value_bytes(rowv) != v->row_bytes) {
      v->base.zErrMsg = sqlite3_mprintf(
          "numpack: table %s column row: a row is a BLOB of %llu bytes, not "
          "%s of %d bytes",
          v->zTable, (unsigned long long)v->row_bytes,
          sqlite3_value_type(rowv) == SQLITE_BLOB ? "a BLOB" : "a value",
          sqlite3_value_bytes(rowv));
      return SQLITE_MISMATCH;
    }
    /* A zero-width row is x'', whose pointer may be NULL. */
    if (v->row_bytes)
      memcpy(v->scratch, sqlite3_value_blob(rowv), (size_t)v->row_bytes);
    if (v->dtype == NPK_BOOL) {
      long long bad = npk_bool_bad(v->scratch, v->row_bytes);
      if (bad >= 0) {
        v->base.zErrMsg = sqlite3_mprintf(
            "numpack: table %s column row: bool element %lld is %u; bool "
            "elements must be 0 or 1",
            v->zTable, bad, v->scratch[bad]);
        return SQLITE_MISMATCH;
      }
    }
    return SQLITE_OK;
  }
  if (update && v->ncol) {
    const void *p;
    uint64_t mark = npk_map_faults(s);
    int rc = npk_row_ptr(s, v->zArray, old, &p);
    if (rc == NPK_OK) {
      memcpy(v->scratch, p, (size_t)v->row_bytes);
      rc = npk_map_check(s, mark, v->zArray);
    }
    if (rc) return fail(v, rc);
  }
  if (v->ncol == 0 && v->row_bytes) {
    v->base.zErrMsg = sqlite3_mprintf(
        "numpack: table %s column row: NULL is not a row of %llu bytes",
        v->zTable, (unsigned long long)v->row_bytes);
    return SQLITE_CONSTRAINT_NOTNULL;
  }
  for (int i = 0; i < v->ncol; i++) {
    sqlite3_value *val = argv[2 + i];
    int rc;
    if (sqlite3_value_nochange(val)) continue;
    rc = npk_element_encode(val, v->dtype,
                            v->scratch + (size_t)i * (size_t)v->item);
    if (rc) {
      const char *what = sqlite3_value_type(val) == SQLITE_NULL   ? "NULL"
                         : sqlite3_value_type(val) == SQLITE_BLOB ? "a BLOB"
                                                                  : 0;
      /* "an int8", "a uint8", "a float32" */
      const char *name = npk_dtype_name(v->dtype);
      const char *an = name[0] == 'i' ? "an" : "a";
      if (what)
        v->base.zErrMsg = sqlite3_mprintf(
            "numpack: table %s column %s: %s is not %s %s "
            "value",
            v->zTable, v->azCol[i], what, an, name);
      else if (rc == SQLITE_RANGE)
        v->base.zErrMsg = sqlite3_mprintf(
            "numpack: table %s column %s: value %s does not fit %s", v->zTable,
            v->azCol[i], sqlite3_value_text(val), name);
      else
        v->base.zErrMsg = sqlite3_mprintf(
            "numpack: table %s column %s: value %s is not %s %s", v->zTable,
            v->azCol[i], sqlite3_value_text(val), an, name);
      return sqlite3_value_type(val) == SQLITE_NULL ? SQLITE_CONSTRAINT_NOTNULL
                                                    : SQLITE_MISMATCH;
    }
  }
  return SQLITE_OK;
}

static int vt_update(sqlite3_vtab *p, int argc, sqlite3_value **argv,
                     sqlite3_int64 *pRowid) {
  NpkVtab *v = (NpkVtab *)p;
  NpkSession *s;
  NpkArrayInfo info;
  int rc;
  sqlite3_free(v->base.zErrMsg);
  v->base.zErrMsg = 0;
  if (v->zGone) return gone(v);
  if (v->readonly) {
    v->base.zErrMsg =
        sqlite3_mprintf("numpack: table %s is read-only", v->zTable);
    return SQLITE_READONLY;
  }
  s = v->conn->ses;
  if ((rc = ensure_txn(v)) != SQLITE_OK) return rc;
  /* Every row written or deleted is checked against the array as it is
  ** now: a function in this statement or transaction may have saved over
  ** it since xBegin. */
  rc = npk_array_info(s, v->zArray, &info);
  if (rc) return fail(v, rc);
  if ((rc = layout_check(v, &info))) return rc;
  if (argc == 1) {
    uint64_t r = (uint64_t)sqlite3_value_int64(argv[0]);
    rc = npk_delete_rows(s, v->zArray, &r, 1);
    return rc ? fail(v, rc) : SQLITE_OK;
  }
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
    /* INSERT: append, or replace an existing row under OR REPLACE. */
    uint64_t next = info.rows, r = next;
    if (sqlite3_value_type(argv[1]) != SQLITE_NULL) {
      sqlite3_int64 want = sqlite3_value_int64(argv[1]);
      if (sqlite3_value_type(argv[1]) != SQLITE_INTEGER || want < 0 ||
          (uint64_t)want > next) {
        v->base.zErrMsg = sqlite3_mprintf(
            "numpack: table %s: INSERT appends; rowid must be omitted or %llu",
            v->zTable, (unsigned long long)next);
        return SQLITE_CONSTRAINT;
      }
      r = (uint64_t)want;
    }
    if (r < next) {
      int live = npk_row_live(s, v->zArray, r);
      if (sqlite3_vtab_on_conflict(v->db) != SQLITE_REPLACE || !live) {
        v->base.zErrMsg = sqlite3_mprintf(
            "numpack: table %s: rowid %llu %s", v->zTable,
            (unsigned long long)r,
            live ? "already exists" : "was deleted and cannot be reused");
        return SQLITE_CONSTRAINT_PRIMARYKEY;
      }
      rc = assemble(v, argv, 0, 0);
      if (rc) return rc;
      rc = npk_replace_rows(s, v->zArray, &r, 1, v->scratch);
    } else {
      uint64_t shape[NPK_MAX_NDIM];
      rc = assemble(v, argv, 0, 0);
      if (rc) return rc;
      memcpy(shape, info.shape, sizeof shape);
      shape[0] = 1;
      rc = npk_append(s, v->zArray, info.dtype, info.ndim, shape, v->scratch);
    }
    if (rc) return fail(v, rc);
    *pRowid = (sqlite3_int64)r;
    return SQLITE_OK;
  }
  /* UPDATE. */
  {
    uint64_t r = (uint64_t)sqlite3_value_int64(argv[0]);
    if (sqlite3_value_int64(argv[1]) != sqlite3_value_int64(argv[0]) ||
        sqlite3_value_type(argv[1]) != SQLITE_INTEGER) {
      v->base.zErrMsg = sqlite3_mprintf(
          "numpack: table %s: the rowid is the row's position and cannot be "
          "changed",
          v->zTable);
      return SQLITE_CONSTRAINT;
    }
    rc = assemble(v, argv, 1, r);
    if (rc) return rc;
    rc = npk_replace_rows(s, v->zArray, &r, 1, v->scratch);
    return rc ? fail(v, rc) : SQLITE_OK;
  }
}

/* ---- transactions ---------------------------------------------------- */

/* A write statement begins: refused at once on a table that cannot work
** on its array (see layout_check), before any row is touched.  Inside the
** transaction the catalog is the session's own: no system call. */
static int vt_begin(sqlite3_vtab *p) {
  NpkVtab *v = (NpkVtab *)p;
  NpkArrayInfo info;
  int began, rc;
  if (v->zGone) return gone(v);
  began = !npk_in_txn(v->conn->ses);
  if (v->readonly) return SQLITE_OK;
  rc = npk_conn_txn_begin(v->conn, 1);
  /* Another connection committed since the transaction read the store:
  ** the table joins SQLite's transaction all the same, so that its end
  ** (xCommit, xRollback) is told even where SQLite holds no lock, and
  ** each write is refused (xUpdate) until then. */
  if (rc == NPK_STALE) return SQLITE_OK;
  if (rc) return fail(v, rc);
  rc = npk_array_info(v->conn->ses, v->zArray, &info);
  rc = rc ? fail(v, rc) : layout_check(v, &info);
  /* SQLite calls no xRollback after a failed xBegin. */
  if (rc && began) npk_rollback(v->conn->ses);
  return rc;
}

/* The rest of SQLite's transaction goes to the bridge (conn.c), shared with
** the writing functions. */
static int vt_sync(sqlite3_vtab *p) {
  NpkVtab *v = (NpkVtab *)p;
  int rc = npk_conn_txn_sync(v->conn);
  return rc ? fail(v, rc) : SQLITE_OK;
}

static int vt_commit(sqlite3_vtab *p) {
  npk_conn_txn_commit(((NpkVtab *)p)->conn);
  return SQLITE_OK;
}

static int vt_rollback(sqlite3_vtab *p) {
  npk_conn_txn_rollback(((NpkVtab *)p)->conn);
  return SQLITE_OK;
}

static int vt_savepoint(sqlite3_vtab *p, int level) {
  NpkVtab *v = (NpkVtab *)p;
  int rc = npk_conn_txn_savepoint(v->conn, level);
  return rc ? fail(v, rc) : SQLITE_OK;
}

static int vt_release(sqlite3_vtab *p, int level) {
  npk_conn_txn_release(((NpkVtab *)p)->conn, level);
  return SQLITE_OK;
}

static int vt_rollback_to(sqlite3_vtab *p, int level) {
  NpkVtab *v = (NpkVtab *)p;
  int rc = npk_conn_txn_rollback_to(v->conn, level);
  return rc ? fail(v, rc) : SQLITE_OK;
}

/* ALTER TABLE ... RENAME: the array keeps its name.  Without array= the
** array is named after the table, so the renamed table would look for an
** array of the new name next time: refuse rather than lose the data. */
static int vt_rename(sqlite3_vtab *p, const char *zNew) {
  NpkVtab *v = (NpkVtab *)p;
  if (v->array_named) return SQLITE_OK;
  sqlite3_free(v->base.zErrMsg);
  v->base.zErrMsg = sqlite3_mprintf(
      "numpack: table %s reads the array named after it; to rename it, "
      "create the table %s USING numpack(store=..., array='%s')",
      v->zTable, zNew, v->zArray);
  return SQLITE_ERROR;
}

static sqlite3_module npk_module = {
    2, /* iVersion: savepoints */
    vt_create,
    vt_connect,
    vt_best_index,
    vt_disconnect,
    vt_destroy,
    vt_open,
    vt_close,
    vt_filter,
    vt_next,
    vt_eof,
    vt_column,
    vt_rowid,
    vt_update,
    vt_begin,
    vt_sync,
    vt_commit,
    vt_rollback,
    0, /* xFindFunction */
    vt_rename,
    vt_savepoint,
    vt_release,
    vt_rollback_to,
    0, /* xShadowName */
};

int npk_vtab_register(sqlite3 *db) {
  return sqlite3_create_module(db, "numpack", &npk_module, 0);
}
