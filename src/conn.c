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
*/
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "numpack_int.h"
#include "conn.h"

static pthread_mutex_t conn_mu = PTHREAD_MUTEX_INITIALIZER;
static NpkConn *conn_list;       /* all open NpkConn objects */

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
    case NPK_EXISTS: return SQLITE_CONSTRAINT;
    case NPK_LOCKED: return SQLITE_LOCKED;
    case NPK_INTERRUPT: return SQLITE_INTERRUPT;
    default: return SQLITE_ERROR;
  }
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
    *pzErr = sqlite3_mprintf("numpack: %s: %s contains a NUL character", fn,
                             what);
    return 0;
  }
  return z;
}

/* The connection's busy timeout in milliseconds (0 when none is set); the
** engine asks only when a lock is not granted at once. */
static int busy_timeout(void *arg) {
  sqlite3 *db = arg;
  sqlite3_stmt *st = 0;
  int ms = 0;
  if (sqlite3_prepare_v2(db, "PRAGMA busy_timeout", -1, &st, 0) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    ms = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return ms;
}

/* 0 when the connection's main database runs with PRAGMA synchronous=OFF:
** the store's writes then skip fsync as SQLite's own do.  The main
** database decides, not the schema a table is declared in, since TEMP is
** always OFF and would make every temp table's writes unsynced. */
static int sync_level(void *arg) {
  sqlite3 *db = arg;
  sqlite3_stmt *st = 0;
  int level = 2;
  if (sqlite3_prepare_v2(db, "PRAGMA main.synchronous", -1, &st, 0) ==
          SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    level = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return level;
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
** row.  Taken with a reference. */
static NpkConn *conn_find_alias(sqlite3 *db, const char *dir, int flags) {
  struct stat sb;
  NpkConn *c;
  if (flags & NPK_OPEN_DROP) return 0;
  pthread_mutex_lock(&conn_mu);
  for (c = conn_list; c; c = c->next) {
    if (c->db == db && !c->closed && c->alias && c->alias_flags == flags &&
        strcmp(c->alias, dir) == 0)
      break;
  }
  if (c && (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode) ||
            sb.st_dev != c->alias_dev || sb.st_ino != c->alias_ino))
    c = 0;
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
  pthread_mutex_unlock(&conn_mu);
}

int npk_conn_open(sqlite3 *db, const char *dir, int flags, NpkConn **pp,
                  char **pzErr) {
  NpkStore *st = 0;
  NpkConn *c = conn_find_alias(db, dir, flags);
  char *msg = 0;
  int rc;
  *pp = 0;
  if (c) {
    *pp = c;
    return SQLITE_OK;
  }
  rc = npk_store_open(dir, flags, &st, &msg);
  if (rc) {
    if (pzErr) *pzErr = sqlite3_mprintf("%s", msg ? msg : "numpack: cannot open store");
    free(msg);
    return npk_sqlite_rc(rc);
  }
  pthread_mutex_lock(&conn_mu);
  for (c = conn_list; c; c = c->next) {
    if (c->db == db && c->store == st) break;
  }
  if (c) {
    c->refs++;
    npk_store_release(st);  /* the shared NpkConn already holds the store */
  } else if ((c = calloc(1, sizeof *c)) != 0 &&
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
    free(c);
    c = 0;
    npk_store_release(st);
  }
  pthread_mutex_unlock(&conn_mu);
  if (!c) {
    if (pzErr) *pzErr = sqlite3_mprintf("numpack: cannot open a session on %s", dir);
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
  free(c);
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
  sqlite3_io_methods m;            /* the file's methods now: must be first */
  const sqlite3_io_methods *orig;  /* the methods it had */
  sqlite3 *db;                     /* the connection owning the file */
  int wal;                         /* SQLite used the file's shared memory:
                                   ** WAL mode */
  int no_hold;                     /* SQLite keeps its lock past the end of
                                   ** a transaction (exclusive locking
                                   ** mode): hold nothing */
};

/* SQLite's transaction on DB ended: drop the reads kept for it. */
static void txn_end(sqlite3 *db) {
  pthread_mutex_lock(&conn_mu);
  for (NpkConn *c = conn_list; c; c = c->next) {
    if (c->db != db || !c->held) continue;
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
  w->wal = 1;
  return w->orig->xShmLock(f, offset, n, flags);
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

/* numpack_sessions() -> stores this connection has a session on. */
static void sessions_func(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
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
  return sqlite3_create_function_v2(db, "numpack_sessions", 0,
                                    SQLITE_UTF8 | SQLITE_INNOCUOUS, db,
                                    sessions_func, 0, 0, conn_close_all);
}
