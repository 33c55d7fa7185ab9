/*
** conn.c — one engine session per (database connection, store directory).
**
** Every virtual table and every SQL function of one connection that works
** on the same store shares one NpkSession, so they see one another's
** uncommitted changes, take part in the same transaction, and never wait
** on each other's locks.  Different connections get different sessions and
** so are isolated from each other, as SQLite connections are.
**
** A session outlives the statements that use it and lasts until its
** connection closes: opening a store reads its whole catalog and bitmaps,
** which a function called once per row must not pay each time.  The close
** is noticed through the destructor of numpack_sessions(), which SQLite
** runs when the connection goes away.
**
** This file is also the one bridge between SQLite's transactions and the
** sessions': reads kept for a whole transaction, and the write
** transaction that numpack tables and writing functions alike join
** (through numpack_txn for the functions), with its savepoints.
*/
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "numpack_int.h"
#include "conn.h"
#include "knn.h"

static pthread_mutex_t conn_mu = PTHREAD_MUTEX_INITIALIZER;
static NpkConn *conn_list; /* all open NpkConn objects */

int npk_sqlite_rc(int rc) {
  switch (rc) {
    case NPK_OK: return SQLITE_OK;
    case NPK_NOMEM: return SQLITE_NOMEM;
    case NPK_IOERR: return SQLITE_IOERR;
    case NPK_CORRUPT: return SQLITE_CORRUPT;
    case NPK_BUSY: return SQLITE_BUSY;
    case NPK_READONLY: return SQLITE_READONLY;
    case NPK_MISUSE: return SQLITE_MISUSE;
    case NPK_FULL: return SQLITE_FULL;
    case NPK_NOTFOUND: return SQLITE_NOTFOUND;
    case NPK_NOFILE: return SQLITE_CANTOPEN;
    case NPK_RANGE: return SQLITE_RANGE;
    case NPK_MISMATCH: return SQLITE_MISMATCH;
    case NPK_EXISTS: return SQLITE_CONSTRAINT;
    case NPK_LOCKED: return SQLITE_LOCKED;
    case NPK_INTERRUPT: return SQLITE_INTERRUPT;
    case NPK_TOOBIG: return SQLITE_TOOBIG;
    case NPK_STALE: return SQLITE_BUSY_SNAPSHOT;
    default: return SQLITE_ERROR;
  }
}

void npk_result_error(sqlite3_context *ctx, int rc, const char *msg) {
  if (rc == SQLITE_NOMEM || !msg) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  sqlite3_result_error(ctx, msg, -1);
  sqlite3_result_error_code(ctx, rc);
}

int npk_vtab_error(sqlite3_vtab *vt, int rc, const char *msg) {
  sqlite3_free(vt->zErrMsg);
  vt->zErrMsg = 0;
  /* Without a message of ours SQLite says "out of memory". */
  if (rc != SQLITE_NOMEM && msg) vt->zErrMsg = sqlite3_mprintf("%s", msg);
  return rc;
}

int npk_vtab_errorf(sqlite3_vtab *vt, int rc, const char *fmt, ...) {
  va_list ap;
  char *msg;
  va_start(ap, fmt);
  msg = sqlite3_vmprintf(fmt, ap);
  va_end(ap);
  rc = npk_vtab_error(vt, msg ? rc : SQLITE_NOMEM, msg);
  sqlite3_free(msg);
  return rc;
}

const char *npk_text_arg(sqlite3_value *v, const char *fn, const char *what,
                         char **pzErr) {
  const char *z;
  *pzErr = 0;
  if (sqlite3_value_type(v) != SQLITE_TEXT) {
    *pzErr = sqlite3_mprintf("numpack: %s: %s must be text", fn, what);
    return 0;
  }
  z = (const char *)sqlite3_value_text(v);
  if (!z) return 0;
  if ((int)strlen(z) != sqlite3_value_bytes(v)) {
    /* A NUL inside would silently cut the name or path short: the call
    ** would work on another array or store than the one named. */
    *pzErr =
        sqlite3_mprintf("numpack: %s: %s contains a NUL character", fn, what);
    return 0;
  }
  return z;
}

int npk_knn_metric_arg(sqlite3_value *v) {
  return sqlite3_value_type(v) == SQLITE_TEXT
             ? npk_knn_metric_from_name((const char *)sqlite3_value_text(v))
             : -1;
}

char *npk_knn_metric_unknown(const char *kind, const char *who,
                             sqlite3_value *v) {
  const char *m = sqlite3_value_type(v) == SQLITE_NULL
                      ? NULL
                      : (const char *)sqlite3_value_text(v);
  return sqlite3_mprintf(
      "numpack: %s%s: unknown metric %s%s%s (want one of "
      "%s)",
      kind, who, m ? "\"" : "", m ? m : "NULL", m ? "\"" : "",
      npk_knn_metric_list());
}

/* The connection's busy timeout in milliseconds (0 when none is set); the
** engine asks only when a lock is not granted at once. */
/* The integer PRAGMA SQL answers, or DFLT; -1 when memory ran out, which
** also fails the statement running (SQLite interrupts it): the engine then
** fails too rather than write what the statement will report as failed. */
static int pragma_int(sqlite3 *db, const char *sql, int dflt) {
  sqlite3_stmt *st = 0;
  int v = dflt, rc = sqlite3_prepare_v2(db, sql, -1, &st, 0);
  if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
    v = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return rc == SQLITE_NOMEM ? -1 : v;
}

static int busy_timeout(void *arg) {
  return pragma_int(arg, "PRAGMA busy_timeout", 0);
}

/* 0 when the connection's main database runs with PRAGMA synchronous=OFF:
** the store's writes then skip fsync as SQLite's own do.  The main
** database decides, not the schema a table is declared in, since TEMP is
** always OFF and would make every temp table's writes unsynced. */
static int sync_level(void *arg) {
  return pragma_int(arg, "PRAGMA main.synchronous", 2);
}

/* Nonzero once sqlite3_interrupt() was called on the connection and its
** statements have not all ended: a statement then fails to prepare with
** SQLITE_INTERRUPT (SQLite 3.40 has no sqlite3_is_interrupted()), and an
** empty one is prepared without parsing or planning anything. */
static int interrupted(void *arg) {
  sqlite3_stmt *st = 0;
  int rc = sqlite3_prepare_v2(arg, " ", -1, &st, 0);
  sqlite3_finalize(st);
  return rc == SQLITE_INTERRUPT;
}

/* The session DB already has on the store at DIR when DIR is the path
** string it was last opened by and still names the same directory: one
** stat instead of resolving the path again, for functions called once per
** row.  For an absolute path only a program that moves or replaces the
** directory changes what it names, and like other changes such programs
** make (store.c) that is looked for once per recheck interval by calls
** that only read (READ), not by every call.  A relative path also changes
** with the working directory, which this process may change at any
** moment, and a write must not go to a directory that the path no longer
** names: those look every time.  Taken with a reference. */
static NpkConn *conn_find_alias(sqlite3 *db, const char *dir, int flags,
                                int read) {
  struct stat sb;
  NpkConn *c;
  int64_t now;
  if (flags & NPK_OPEN_DROP) return 0;
  pthread_mutex_lock(&conn_mu);
  for (c = conn_list; c; c = c->next) {
    if (c->db == db && !c->closed && c->alias && c->alias_flags == flags &&
        strcmp(c->alias, dir) == 0)
      break;
  }
  now = c ? npk_monotonic_ns() : 0;
  if (c && (!read || dir[0] != '/' ||
            now - c->alias_checked_ns >= npk_recheck_ns())) {
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode) ||
        sb.st_dev != c->alias_dev || sb.st_ino != c->alias_ino)
      c = 0;
    else c->alias_checked_ns = now;
  }
  if (c) c->refs++;
  pthread_mutex_unlock(&conn_mu);
  return c;
}

/* Remember DIR as C's path string (a failure only loses the shortcut). */
static void conn_set_alias(NpkConn *c, const char *dir, int flags) {
  struct stat sb;
  char *a;
  if (stat(dir, &sb) != 0 || !(a = sqlite3_mprintf("%s", dir))) return;
  pthread_mutex_lock(&conn_mu);
  sqlite3_free(c->alias);
  c->alias = a;
  c->alias_flags = flags;
  c->alias_dev = sb.st_dev;
  c->alias_ino = sb.st_ino;
  c->alias_checked_ns = npk_monotonic_ns();
  pthread_mutex_unlock(&conn_mu);
}

int npk_conn_open(sqlite3 *db, const char *dir, int flags, NpkConn **pp,
                  char **pzErr) {
  NpkStore *st = 0;
  int read = (flags & NPK_CONN_READ) != 0;
  NpkConn *c;
  char *msg = 0;
  int rc;
  flags &= ~NPK_CONN_READ;
  c = conn_find_alias(db, dir, flags, read);
  *pp = 0;
  if (c) {
    *pp = c;
    return SQLITE_OK;
  }
  rc = npk_store_open(dir, flags, &st, &msg);
  if (rc) {
    if (pzErr)
      *pzErr = sqlite3_mprintf("%s", msg ? msg : "numpack: cannot open store");
    npk_free(msg);
    return npk_sqlite_rc(rc);
  }
  pthread_mutex_lock(&conn_mu);
  for (c = conn_list; c; c = c->next) {
    if (c->db == db && c->store == st) break;
  }
  if (c) {
    c->refs++;
    npk_store_release(st); /* the shared NpkConn already holds the store */
  } else if ((c = npk_calloc(1, sizeof *c)) != 0 &&
             npk_session_open(st, &c->ses) == NPK_OK) {
    c->db = db;
    c->store = st;
    npk_set_busy_source(c->ses, busy_timeout, db);
    npk_set_sync_source(c->ses, sync_level, db);
    npk_set_interrupt_source(c->ses, interrupted, db);
    c->refs = 1;
    c->next = conn_list;
    conn_list = c;
  } else {
    npk_free(c);
    c = 0;
    npk_store_release(st);
  }
  pthread_mutex_unlock(&conn_mu);
  if (!c) {
    if (pzErr)
      *pzErr = sqlite3_mprintf("numpack: cannot open a session on %s", dir);
    return SQLITE_NOMEM;
  }
  if (!(flags & NPK_OPEN_DROP)) conn_set_alias(c, dir, flags);
  *pp = c;
  return SQLITE_OK;
}

static void conn_free(NpkConn *c) {
  sqlite3_free(c->alias);
  npk_session_close(c->ses);
  npk_store_release(c->store);
  npk_free(c);
}

void npk_conn_release(NpkConn *c) {
  NpkConn **pp;
  if (!c) return;
  pthread_mutex_lock(&conn_mu);
  if (--c->refs > 0 || !c->closed) {
    pthread_mutex_unlock(&conn_mu);
    return;
  }
  for (pp = &conn_list; *pp; pp = &(*pp)->next) {
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  }
  pthread_mutex_unlock(&conn_mu);
  conn_free(c);
}

/* The connection DB is closing: free its idle sessions now, the others
** when their last user lets go. */
static void conn_close_all(void *p) {
  sqlite3 *db = p;
  NpkConn **pp, *dead = 0;
  pthread_mutex_lock(&conn_mu);
  for (pp = &conn_list; *pp;) {
    NpkConn *c = *pp;
    if (c->db != db) {
      pp = &c->next;
      continue;
    }
    c->closed = 1;
    if (c->refs > 0) {
      pp = &c->next;
      continue;
    }
    *pp = c->next;
    c->next = dead;
    dead = c;
  }
  pthread_mutex_unlock(&conn_mu);
  while (dead) {
    NpkConn *c = dead;
    dead = c->next;
    conn_free(c);
  }
}

/* ---- reads that last a transaction ------------------------------------
**
** SQLite calls a virtual table at the end of a transaction only when the
** transaction wrote to it (xBegin, then xCommit or xRollback); a
** transaction that only reads a table gets no call at all, and the
** connection's commit and rollback hooks are single, may belong to the
** application, and do not fire for a read-only COMMIT either.  What does
** mark the end of every transaction in rollback-journal mode is SQLite
** dropping its lock on the database file: xUnlock(SQLITE_LOCK_NONE).
** So the first read of the store inside a transaction that holds SQLite's
** lock on a database file wraps that file's methods (the file belongs to
** this one connection) and keeps the store's SHARED lock until SQLite lets
** its own go: the store is held exactly as long as SQLite holds the
** database, no longer.
**
** Where SQLite keeps no such lock per transaction -- WAL mode, a
** connection in exclusive locking mode, nolock=1, in-memory and TEMP
** databases -- reads stay one lock per statement. */

typedef struct TxnWatch TxnWatch;
struct TxnWatch {
  sqlite3_io_methods m;           /* the file's methods now: must be first */
  const sqlite3_io_methods *orig; /* the methods it had */
  sqlite3 *db;                    /* the connection owning the file */
  int wal;                        /* SQLite used the file's shared memory:
                                  ** WAL mode */
  int no_hold;                    /* SQLite keeps its lock past the end of
                                  ** a transaction (exclusive locking
                                  ** mode): hold nothing */
};

/* SQLite's transaction on DB ended: drop the reads kept for it. */
static void txn_end(sqlite3 *db) {
  pthread_mutex_lock(&conn_mu);
  for (NpkConn *c = conn_list; c; c = c->next) {
    if (c->db != db) continue;
    c->read_seen = 0;
    if (!c->held) continue;
    c->held = 0;
    npk_read_end(c->ses);
  }
  pthread_mutex_unlock(&conn_mu);
}

static int watch_unlock(sqlite3_file *f, int level) {
  TxnWatch *w = (TxnWatch *)f->pMethods;
  int rc = w->orig->xUnlock(f, level);
  if (level == SQLITE_LOCK_NONE) txn_end(w->db);
  return rc;
}

/* WAL mode takes a read mark in shared memory at every transaction, so
** it is known here before any statement of the transaction reads. */
static int watch_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
  TxnWatch *w = (TxnWatch *)f->pMethods;
  int rc;
  w->wal = 1;
  rc = w->orig->xShmLock(f, offset, n, flags);
  /* A WAL transaction ends by letting its read mark go (the shared locks
  ** from 3 up are the marks): the reads noted for it end too. */
  if ((flags & SQLITE_SHM_UNLOCK) && (flags & SQLITE_SHM_SHARED) && offset >= 3)
    txn_end(w->db);
  return rc;
}

static int watch_close(sqlite3_file *f) {
  TxnWatch *w = (TxnWatch *)f->pMethods;
  int rc;
  txn_end(w->db);
  f->pMethods = w->orig;
  rc = w->orig->xClose(f);
  sqlite3_free(w);
  return rc;
}

/* 1 when PRAGMA ZDB.NAME (a query) answers WANT. */
static int pragma_is(sqlite3 *db, const char *zDb, const char *name,
                     const char *want) {
  char *sql = sqlite3_mprintf("PRAGMA \"%w\".%s", zDb, name);
  sqlite3_stmt *st = 0;
  int is = 0;
  if (sql && sqlite3_prepare_v2(db, sql, -1, &st, 0) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    const char *z = (const char *)sqlite3_column_text(st, 0);
    is = z && sqlite3_stricmp(z, want) == 0;
  }
  sqlite3_finalize(st);
  sqlite3_free(sql);
  return is;
}

/* The watch on ZDB's file when SQLite holds its lock on that file until
** DB's transaction ends, and that file's methods now tell us when it does;
** else NULL. */
static TxnWatch *txn_watch(sqlite3 *db, const char *zDb) {
  sqlite3_file *f = 0;
  sqlite3_vfs *vfs = 0;
  const char *zFile;
  TxnWatch *w;
  if (sqlite3_stricmp(zDb, "temp") == 0 ||
      sqlite3_txn_state(db, zDb) < SQLITE_TXN_READ ||
      sqlite3_file_control(db, zDb, SQLITE_FCNTL_FILE_POINTER, &f) !=
          SQLITE_OK ||
      !f || !f->pMethods)
    return 0;
  if (f->pMethods->xUnlock == watch_unlock) {
    w = (TxnWatch *)f->pMethods;
    return w->wal || w->no_hold ? 0 : w;
  }
  zFile = sqlite3_db_filename(db, zDb);
  if (!zFile || !*zFile || sqlite3_uri_boolean(zFile, "nolock", 0)) return 0;
  /* memdb recognises its files by their methods: leave them alone. */
  if (sqlite3_file_control(db, zDb, SQLITE_FCNTL_VFS_POINTER, &vfs) !=
          SQLITE_OK ||
      !vfs || strcmp(vfs->zName, "memdb") == 0)
    return 0;
  if (!(w = sqlite3_malloc(sizeof *w))) return 0;
  w->m = *f->pMethods;
  w->m.xUnlock = watch_unlock;
  w->m.xClose = watch_close;
  if (w->m.iVersion >= 2 && w->m.xShmLock) w->m.xShmLock = watch_shm_lock;
  w->orig = f->pMethods;
  w->db = db;
  /* Once per file: later switches show in the methods (WAL) or in a
  ** transaction that ends without an unlock (exclusive mode). */
  w->wal = pragma_is(db, zDb, "journal_mode", "wal");
  w->no_hold = pragma_is(db, zDb, "locking_mode", "exclusive");
  f->pMethods = &w->m;
  return w->wal || w->no_hold ? 0 : w;
}

/* Remember the first state C's SQL transaction reads, for the check in
** npk_conn_txn_begin.  The state stays remembered until SQLite's
** transaction ends, through the store's transactions that end before it
** (a write that failed, ROLLBACK TO its start): a later write in it is
** checked all the same.  SQLite says when a transaction that only read has
** ended only where it held a lock (txn_end); elsewhere a call made in
** autocommit mode says so, and one that did not come since may make a
** later transaction fail once with NPK_STALE (safe: it writes nothing). */
static void note_read(NpkConn *c) {
  if (sqlite3_get_autocommit(c->db)) c->read_seen = 0;
  else if (!c->read_seen && !npk_in_txn(c->ses)) {
    c->read_seen = 1;
    c->read_state = npk_read_state(c->ses);
  }
}

void npk_conn_autocommit_write(NpkConn *c) { c->read_seen = 0; }

/* The connection's own commits since rows read without the lock were
** first held are no other connection's: made on the state held, they give
** the state held next, as a read lock held meanwhile would have seen them
** (a statement stepping through looked-up rows and updating them as it
** goes).  Told before any check against quick_seq. */
static void quick_follow(NpkConn *c) {
  uint64_t from, to;
  if (npk_own_commits(c->ses, &from, &to) && c->quick && from == c->quick_seq)
    c->quick_seq = to;
}

/* A write of C (npk_begin just done) while rows read without the lock are
** held must write on their state: a write made from what such a row showed
** would otherwise overwrite a commit of another connection that a held
** read lock would have kept waiting. */
static int quick_write_check(NpkConn *c) {
  quick_follow(c);
  return c->quick ? npk_check_read_seq(c->ses, c->quick_seq) : NPK_OK;
}

int npk_conn_read_row(NpkConn *c, const char *array, uint64_t row, void *buf,
                      size_t cap, NpkArrayInfo *info, int *pfound) {
  uint64_t seq;
  int rc;
  /* Inside a transaction reads keep one state until it ends (and a held
  ** read may need ending first): npk_conn_read_begin's work. */
  if (c->held || !sqlite3_get_autocommit(c->db)) return NPK_BUSY;
  quick_follow(c);
  rc = npk_read_row_unlocked(c->ses, array, row, buf, cap, info, pfound, &seq);
  /* A row of another state than the one held: npk_conn_read_begin tells. */
  if (rc == NPK_OK && c->quick && seq != c->quick_seq) rc = NPK_BUSY;
  if (rc) return rc;
  note_read(c);
  if (c->quick++ == 0) c->quick_seq = seq;
  return NPK_OK;
}

int npk_conn_read_rows(NpkConn *c, const char *name, const NpkArrayInfo *want,
                       const uint64_t *rows, uint64_t n, void *dst) {
  int rc;
  /* Nothing held afterwards: the caller's read is over when this returns,
  ** so only a statement that holds no state may make it. */
  if (c->held || c->quick || !sqlite3_get_autocommit(c->db)) return NPK_BUSY;
  rc = npk_read_rows_unlocked(c->ses, name, want, rows, n, dst);
  if (rc == NPK_OK) note_read(c);
  return rc;
}

void npk_conn_read_row_end(NpkConn *c) {
  if (c->quick > 0) c->quick--;
}

int npk_conn_may_read_unlocked(NpkConn *c) {
  return sqlite3_get_autocommit(c->db) && !c->quick;
}

int npk_conn_each_array(NpkConn *c,
                        int (*fn)(void *, int, int, const NpkArrayInfo *),
                        void *arg) {
  NpkSession *s = c->ses;
  int n, done = 0, rc = NPK_OK;
  if (npk_conn_may_read_unlocked(c))
    rc = npk_each_array_unlocked(s, fn, arg, &done);
  if (rc != NPK_OK || done) return rc;
  if ((rc = npk_conn_read_begin(c, NULL)) != NPK_OK) return rc;
  rc = npk_array_count(s, &n);
  for (int i = 0; rc == NPK_OK && i < n; i++) {
    NpkArrayInfo info;
    rc = npk_array_info_at(s, i, &info);
    if (rc == NPK_OK) rc = fn(arg, n, i, &info);
  }
  npk_read_end(s);
  return rc;
}

int npk_conn_read_row_hold(NpkConn *c) {
  if (!c->quick) return 0;
  c->quick++;
  return 1;
}

int npk_conn_read_begin(NpkConn *c, const char *zDb) {
  TxnWatch *w;
  int rc;
  if (c->held && sqlite3_get_autocommit(c->db)) {
    /* Out of the transaction without SQLite unlocking: it keeps its lock
    ** (exclusive locking mode, set since the file was first watched).  The
    ** read kept for it ends here, and that file serves no more. */
    ((TxnWatch *)c->watch)->no_hold = 1;
    c->held = 0;
    npk_read_end(c->ses);
  }
  rc = npk_read_begin(c->ses);
  /* Rows read without the lock by statements still running are of one
  ** state: this read must be of it too. */
  if (rc == NPK_OK) quick_follow(c);
  if (rc == NPK_OK && c->quick &&
      (rc = npk_check_read_seq(c->ses, c->quick_seq)))
    npk_read_end(c->ses);
  if (rc == NPK_OK) note_read(c);
  if (rc || c->held || sqlite3_get_autocommit(c->db) ||
      !(w = txn_watch(c->db, zDb ? zDb : "main")))
    return rc;
  /* One more level, ended by txn_end. */
  if (npk_read_begin(c->ses) == NPK_OK) {
    c->held = 1;
    c->watch = w;
  }
  return rc;
}

/* ---- the transaction bridge -----------------------------------------
**
** SQLite tells a virtual table of its transaction (xBegin, xSync,
** xCommit, xRollback, xSavepoint, xRelease, xRollbackTo) only once a
** statement of it has written that table; a function is told nothing.
** So a writing function called inside a transaction writes a row to
** numpack_txn, an eponymous virtual table of this file, by a statement of
** its own on the connection: SQLite then counts numpack_txn in the
** transaction, as it does sqlite_dbpage once written, and numpack_txn
** passes each call on to the sessions joined through it.  That is
** SQLite's ordinary write path (OP_VBegin), so it holds wherever a write
** statement could run: like any write, it takes the write lock of the main
** database, where the table lives, until the transaction ends.
**
** The tables and numpack_txn share the functions below, so a store
** written both ways (or by two tables) is told the same things twice,
** which changes nothing the second time. */

int npk_conn_txn_begin(NpkConn *c, int fresh) {
  NpkSession *s = c->ses;
  int rc;
  if (fresh) c->sp_wanted = 0;
  if (npk_in_txn(s)) return NPK_OK;
  rc = npk_begin(s);
  if (rc == NPK_OK) rc = quick_write_check(c);
  /* Reads under locks of their own (WAL mode, in-memory and TEMP
  ** databases) may have seen an older state than the one the transaction
  ** now writes on: refused as SQLite refuses a write on an old WAL
  ** snapshot.  Where the read lock was held, no commit came between. */
  if (sqlite3_get_autocommit(c->db)) c->read_seen = 0;
  else if (rc == NPK_OK && c->read_seen)
    rc = npk_check_read_state(s, c->read_state);
  else if (rc == NPK_OK) {
    /* What this transaction reads and writes from now on. */
    c->read_seen = 1;
    c->read_state = npk_read_state(s);
  }
  while (rc == NPK_OK && npk_savepoint_count(s) < c->sp_wanted) {
    int lv;
    rc = npk_savepoint(s, &lv);
  }
  if (rc && npk_in_txn(s)) npk_rollback(s);
  return rc;
}

/* The commit itself: anything that can fail must fail here, not in xCommit
** whose errors SQLite ignores. */
int npk_conn_txn_sync(NpkConn *c) {
  int rc = npk_in_txn(c->ses) ? npk_commit(c->ses) : NPK_OK;
  c->sp_wanted = 0;
  /* SQLite's transaction ends with this commit. */
  if (rc == NPK_OK) c->read_seen = 0;
  return rc;
}

/* Normally done by xSync; a transaction still open here is committed. */
void npk_conn_txn_commit(NpkConn *c) {
  if (npk_in_txn(c->ses)) npk_commit(c->ses);
  c->read_seen = 0;
}

void npk_conn_txn_rollback(NpkConn *c) {
  c->sp_wanted = 0;
  c->read_seen = 0;
  npk_rollback(c->ses);
}

int npk_conn_txn_savepoint(NpkConn *c, int level) {
  NpkSession *s = c->ses;
  if (!npk_in_txn(s)) {
    /* Nothing written yet: remember the level for npk_conn_txn_begin. */
    if (c->sp_wanted < level + 1) c->sp_wanted = level + 1;
    return NPK_OK;
  }
  /* SQLite may open several levels at once when a table joins late. */
  while (npk_savepoint_count(s) <= level) {
    int lv, rc = npk_savepoint(s, &lv);
    if (rc) return rc;
  }
  return NPK_OK;
}

/* Level -1 (SQLite uses it for the savepoint that began the transaction)
** means everything since the transaction began. */
void npk_conn_txn_release(NpkConn *c, int level) {
  if (level < 0) level = 0;
  if (c->sp_wanted > level) c->sp_wanted = level;
  if (npk_in_txn(c->ses)) npk_release(c->ses, level);
}

int npk_conn_txn_rollback_to(NpkConn *c, int level) {
  int rc;
  if (!npk_in_txn(c->ses)) return NPK_OK;
  if (level < 0) {
    /* Back to the start: SQLite's transaction goes on with the table in
    ** it, and keeps its write lock, so the store's goes on too, empty. */
    c->sp_wanted = 0;
    rc = npk_rollback(c->ses);
    if (rc == NPK_OK) rc = npk_conn_txn_begin(c, 1);
    /* Another connection committed while the lock was let go: the
    ** rollback stands, and the next write is refused (NPK_STALE). */
    return rc == NPK_STALE ? NPK_OK : rc;
  }
  return npk_rollback_to(c->ses, level);
}

/* numpack_txn: one per connection (eponymous).  Writing a store's path to
** it, or a function's session as a pointer, joins that store's session to
** SQLite's transaction; reading it lists the stores whose transaction the
** connection has open. */
typedef struct TxnTab TxnTab;
struct TxnTab {
  sqlite3_vtab base;
  sqlite3 *db;
  NpkConn **conns; /* the sessions joined, one reference each */
  int n, cap;
  int nsp; /* savepoints SQLite has open, as told here */
};

typedef struct TxnCursor TxnCursor;
struct TxnCursor {
  sqlite3_vtab_cursor base;
  char **dirs; /* the stores listed */
  int n, i;
};

/* The type of the pointer a function binds to join its session. */
#define CONN_POINTER "numpack_conn"

static int txn_connect(sqlite3 *db, void *aux, int argc,
                       const char *const *argv, sqlite3_vtab **pp,
                       char **pzErr) {
  TxnTab *t;
  int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(store TEXT)");
  (void)aux;
  (void)argc;
  (void)argv;
  (void)pzErr;
  if (rc) return rc;
  if (!(t = sqlite3_malloc(sizeof *t))) return SQLITE_NOMEM;
  memset(t, 0, sizeof *t);
  t->db = db;
  /* Joining locks a store: never from a view or trigger of a schema
  ** someone else wrote (the functions' own statement is direct). */
  sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
  *pp = &t->base;
  return SQLITE_OK;
}

/* Let go of the sessions: SQLite's transaction is over. */
static void txn_clear(TxnTab *t) {
  for (int i = 0; i < t->n; i++) npk_conn_release(t->conns[i]);
  t->n = 0;
}

static int txn_disconnect(sqlite3_vtab *p) {
  TxnTab *t = (TxnTab *)p;
  txn_clear(t);
  sqlite3_free(t->conns);
  sqlite3_free(t);
  return SQLITE_OK;
}

static int txn_best_index(sqlite3_vtab *p, sqlite3_index_info *info) {
  (void)p;
  info->estimatedCost = 10;
  info->estimatedRows = 1;
  return SQLITE_OK;
}

static int txn_open(sqlite3_vtab *p, sqlite3_vtab_cursor **pp) {
  TxnCursor *cur = sqlite3_malloc(sizeof *cur);
  (void)p;
  if (!cur) return SQLITE_NOMEM;
  memset(cur, 0, sizeof *cur);
  *pp = &cur->base;
  return SQLITE_OK;
}

static void txn_cursor_reset(TxnCursor *cur) {
  for (int i = 0; i < cur->n; i++) sqlite3_free(cur->dirs[i]);
  sqlite3_free(cur->dirs);
  cur->dirs = 0;
  cur->n = cur->i = 0;
}

static int txn_close(sqlite3_vtab_cursor *p) {
  txn_cursor_reset((TxnCursor *)p);
  sqlite3_free(p);
  return SQLITE_OK;
}

static int txn_filter(sqlite3_vtab_cursor *p, int idx, const char *idxStr,
                      int argc, sqlite3_value **argv) {
  TxnCursor *cur = (TxnCursor *)p;
  sqlite3 *db = ((TxnTab *)p->pVtab)->db;
  int n = 0, rc = SQLITE_OK;
  (void)idx;
  (void)idxStr;
  (void)argc;
  (void)argv;
  txn_cursor_reset(cur);
  pthread_mutex_lock(&conn_mu);
  for (NpkConn *c = conn_list; c; c = c->next)
    n += c->db == db && !c->closed && npk_in_txn(c->ses);
  if (n && !(cur->dirs = sqlite3_malloc64(sizeof *cur->dirs * (unsigned)n)))
    rc = SQLITE_NOMEM;
  for (NpkConn *c = conn_list; rc == SQLITE_OK && c && cur->n < n;
       c = c->next) {
    if (c->db != db || c->closed || !npk_in_txn(c->ses)) continue;
    if (!(cur->dirs[cur->n] = sqlite3_mprintf("%s", npk_store_dir(c->store))))
      rc = SQLITE_NOMEM;
    else cur->n++;
  }
  pthread_mutex_unlock(&conn_mu);
  return rc;
}

static int txn_next(sqlite3_vtab_cursor *p) {
  ((TxnCursor *)p)->i++;
  return SQLITE_OK;
}

static int txn_eof(sqlite3_vtab_cursor *p) {
  TxnCursor *cur = (TxnCursor *)p;
  return cur->i >= cur->n;
}

static int txn_column(sqlite3_vtab_cursor *p, sqlite3_context *ctx, int i) {
  TxnCursor *cur = (TxnCursor *)p;
  (void)i;
  sqlite3_result_text(ctx, cur->dirs[cur->i], -1, SQLITE_TRANSIENT);
  return SQLITE_OK;
}

static int txn_rowid(sqlite3_vtab_cursor *p, sqlite3_int64 *pRowid) {
  *pRowid = ((TxnCursor *)p)->i;
  return SQLITE_OK;
}

/* Report the session's last error on the table. */
static int txn_fail(TxnTab *t, NpkConn *c, int rc) {
  return npk_vtab_error(&t->base, npk_sqlite_rc(rc), npk_errmsg(c->ses));
}

/* Join C (whose reference passes to T) to SQLite's transaction, with the
** savepoints SQLite has open now. */
static int txn_join(TxnTab *t, NpkConn *c) {
  int i, rc;
  for (i = 0; i < t->n && t->conns[i] != c; i++) {}
  if (i < t->n) {
    npk_conn_release(c);
  } else {
    if (t->n == t->cap) {
      int cap = t->cap ? 2 * t->cap : 4;
      NpkConn **a = sqlite3_realloc64(t->conns, sizeof *a * (unsigned)cap);
      if (!a) {
        npk_conn_release(c);
        return SQLITE_NOMEM;
      }
      t->conns = a;
      t->cap = cap;
    }
    t->conns[t->n++] = c;
  }
  if (npk_in_txn(c->ses)) return SQLITE_OK;
  c->sp_wanted = t->nsp;
  rc = npk_conn_txn_begin(c, 0);
  return rc ? txn_fail(t, c, rc) : SQLITE_OK;
}

/* INSERT INTO numpack_txn VALUES(store): the only write there is. */
static int txn_update(sqlite3_vtab *p, int argc, sqlite3_value **argv,
                      sqlite3_int64 *pRowid) {
  TxnTab *t = (TxnTab *)p;
  NpkConn *c;
  char *err = 0;
  int rc;
  sqlite3_free(p->zErrMsg);
  p->zErrMsg = 0;
  if (argc < 3 || sqlite3_value_type(argv[0]) != SQLITE_NULL) {
    p->zErrMsg = sqlite3_mprintf(
        "numpack: numpack_txn: only INSERT INTO "
        "numpack_txn VALUES(store) is supported");
    return SQLITE_ERROR;
  }
  c = sqlite3_value_pointer(argv[2], CONN_POINTER);
  if (c) {
    pthread_mutex_lock(&conn_mu);
    c->refs++;
    pthread_mutex_unlock(&conn_mu);
  } else {
    const char *dir =
        npk_text_arg(argv[2], "numpack_txn", "the store path", &err);
    rc = dir   ? npk_conn_open(t->db, dir, 0, &c, &err)
         : err ? SQLITE_MISMATCH
               : SQLITE_NOMEM;
    if (rc) {
      rc = npk_vtab_error(p, rc, err);
      sqlite3_free(err);
      return rc;
    }
  }
  *pRowid = 0;
  return txn_join(t, c);
}

static int txn_begin(sqlite3_vtab *p) {
  TxnTab *t = (TxnTab *)p;
  txn_clear(t);
  t->nsp = 0;
  return SQLITE_OK;
}

static int txn_sync(sqlite3_vtab *p) {
  TxnTab *t = (TxnTab *)p;
  for (int i = 0; i < t->n; i++) {
    int rc = npk_conn_txn_sync(t->conns[i]);
    if (rc) return txn_fail(t, t->conns[i], rc);
  }
  return SQLITE_OK;
}

static int txn_commit(sqlite3_vtab *p) {
  TxnTab *t = (TxnTab *)p;
  for (int i = 0; i < t->n; i++) npk_conn_txn_commit(t->conns[i]);
  txn_clear(t);
  return SQLITE_OK;
}

static int txn_rollback(sqlite3_vtab *p) {
  TxnTab *t = (TxnTab *)p;
  for (int i = 0; i < t->n; i++) npk_conn_txn_rollback(t->conns[i]);
  txn_clear(t);
  return SQLITE_OK;
}

static int txn_savepoint(sqlite3_vtab *p, int level) {
  TxnTab *t = (TxnTab *)p;
  t->nsp = level + 1;
  for (int i = 0; i < t->n; i++) {
    int rc = npk_conn_txn_savepoint(t->conns[i], level);
    if (rc) return txn_fail(t, t->conns[i], rc);
  }
  return SQLITE_OK;
}

static int txn_release(sqlite3_vtab *p, int level) {
  TxnTab *t = (TxnTab *)p;
  if (t->nsp > level) t->nsp = level < 0 ? 0 : level;
  for (int i = 0; i < t->n; i++) npk_conn_txn_release(t->conns[i], level);
  return SQLITE_OK;
}

static int txn_rollback_to(sqlite3_vtab *p, int level) {
  TxnTab *t = (TxnTab *)p;
  t->nsp = level < 0 ? 0 : level + 1;
  for (int i = 0; i < t->n; i++) {
    int rc = npk_conn_txn_rollback_to(t->conns[i], level);
    if (rc) return txn_fail(t, t->conns[i], rc);
  }
  return SQLITE_OK;
}

static sqlite3_module txn_module = {
    2, /* iVersion: savepoints */
    0, /* xCreate: eponymous only */
    txn_connect,
    txn_best_index,
    txn_disconnect,
    0, /* xDestroy */
    txn_open,
    txn_close,
    txn_filter,
    txn_next,
    txn_eof,
    txn_column,
    txn_rowid,
    txn_update,
    txn_begin,
    txn_sync,
    txn_commit,
    txn_rollback,
    0, /* xFindFunction */
    0, /* xRename */
    txn_savepoint,
    txn_release,
    txn_rollback_to,
    0, /* xShadowName */
};

/* Join C's session to the transaction SQLite has open on its connection,
** through numpack_txn, for function FN. */
static int conn_join(NpkConn *c, const char *fn, char **pzErr) {
  sqlite3_stmt *st = 0;
  int rc, taken = 0;
  /* A table or view of that name in main would take the row instead. */
  rc = sqlite3_prepare_v2(c->db,
                          "SELECT 1 FROM main.sqlite_schema WHERE "
                          "name = 'numpack_txn' COLLATE NOCASE",
                          -1, &st, 0);
  if (rc == SQLITE_OK) {
    taken = sqlite3_step(st) == SQLITE_ROW;
    rc = sqlite3_finalize(st);
    st = 0;
  }
  if (rc == SQLITE_OK && taken) {
    *pzErr = sqlite3_mprintf(
        "numpack: %s inside a transaction: the database has its own "
        "numpack_txn, which hides numpack's; rename it so that writing "
        "functions can join transactions",
        fn);
    return SQLITE_ERROR;
  }
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(c->db, "INSERT INTO main.numpack_txn VALUES(?1)",
                            -1, &st, 0);
  if (rc == SQLITE_OK) rc = sqlite3_bind_pointer(st, 1, c, CONN_POINTER, 0);
  if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_DONE) rc = SQLITE_OK;
  /* The join's own code, e.g. SQLITE_BUSY_SNAPSHOT, not just its class. */
  if (rc && rc != SQLITE_NOMEM) rc = sqlite3_extended_errcode(c->db);
  if ((rc & 0xff) == SQLITE_READONLY)
    *pzErr = sqlite3_mprintf(
        "numpack: %s inside a transaction cannot join it on %s: %s (joining "
        "writes the main database, as a table's write would); call it "
        "outside the transaction",
        fn, npk_store_dir(c->store), sqlite3_errmsg(c->db));
  else if (rc)
    *pzErr = sqlite3_mprintf(
        "numpack: %s inside a transaction cannot join it on %s: %s", fn,
        npk_store_dir(c->store), sqlite3_errmsg(c->db));
  sqlite3_finalize(st);
  return rc;
}

int npk_conn_write_begin(NpkConn *c, const char *fn, NpkConnWrite *w,
                         char **pzErr) {
  int rc;
  *pzErr = 0;
  w->own = w->joined = 0;
  if (!npk_in_txn(c->ses) && sqlite3_get_autocommit(c->db)) {
    npk_conn_autocommit_write(c);
    w->own = 1;
    rc = npk_begin(c->ses);
    if (rc == NPK_OK && (rc = quick_write_check(c))) npk_rollback(c->ses);
    return rc ? npk_sqlite_rc(rc) : SQLITE_OK;
  }
  if (!npk_in_txn(c->ses)) {
    if ((rc = conn_join(c, fn, pzErr)) != SQLITE_OK) return rc;
    w->joined = 1;
  }
  rc = npk_savepoint(c->ses, &w->level);
  if (rc && w->joined) npk_rollback(c->ses);
  return rc ? npk_sqlite_rc(rc) : SQLITE_OK;
}

int npk_conn_write_end(NpkConn *c, NpkConnWrite *w) {
  return w->own ? npk_commit(c->ses) : npk_release(c->ses, w->level);
}

void npk_conn_write_undo(NpkConn *c, NpkConnWrite *w) {
  if (w->own || w->joined) {
    /* The store's transaction holds nothing else: end it, and its lock;
    ** the next call joins again. */
    npk_rollback(c->ses);
  } else if (npk_in_txn(c->ses)) {
    npk_rollback_to(c->ses, w->level);
    npk_release(c->ses, w->level);
  }
}

/* numpack_sessions() -> stores this connection has a session on. */
static void sessions_func(sqlite3_context *ctx, int argc,
                          sqlite3_value **argv) {
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  int n = 0;
  (void)argc;
  (void)argv;
  pthread_mutex_lock(&conn_mu);
  for (NpkConn *c = conn_list; c; c = c->next) n += c->db == db;
  pthread_mutex_unlock(&conn_mu);
  sqlite3_result_int(ctx, n);
}

int npk_conn_register(sqlite3 *db) {
  int rc = sqlite3_create_function_v2(db, "numpack_sessions", 0,
                                      SQLITE_UTF8 | SQLITE_INNOCUOUS, db,
                                      sessions_func, 0, 0, conn_close_all);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_module(db, "numpack_txn", &txn_module, 0);
  return rc;
}
