/*
** conn.h — the session a database connection holds on a store, shared by
** the virtual tables and SQL functions of that connection (conn.c).
*/
#ifndef NPK_CONN_H
#define NPK_CONN_H

#include <sys/types.h>

#include "store.h"

typedef struct NpkConn NpkConn;

/* One connection's session on one store. */
struct NpkConn {
  sqlite3 *db;         /* the connection */
  NpkStore *store;     /* the store (one reference) */
  NpkSession *ses;     /* the connection's session on it */
  int refs;            /* tables and function calls using it */
  int closed;          /* the connection has closed */
  int sp_wanted;       /* SQLite savepoints opened before the
                       ** session's transaction began */
  int held;            /* holds a read (npk_read_begin) for the
                       ** connection's transaction: released when
                       ** SQLite unlocks the database (conn.c) */
  void *watch;         /* while held: the watch on that file */
  int read_seen;       /* the connection's SQL transaction has read
                       ** the store outside a write transaction */
  uint64_t read_state; /* then: the state its first read saw
                       ** (npk_read_state) */
  char *alias;         /* the path string a function named it by
                       ** last, with npk_store_open FLAGS alias_flags
                       ** and the directory's identity then */
  int alias_flags;
  dev_t alias_dev;
  ino_t alias_ino;
  int64_t alias_checked_ns; /* when alias was last seen to name it */
  int quick;                /* cursors holding the state of a row read
                            ** without the lock (npk_conn_read_row,
                            ** npk_conn_read_row_hold) */
  uint64_t quick_seq;       /* while quick: the commit count of that state
                            ** (moved on by the connection's own commits) */
  NpkConn *next;            /* list of all NpkConn objects */
};

/* Find or make DB's session on the store at DIR (npk_store_open FLAGS,
** and NPK_CONN_READ for a call that only reads: it may trust that an
** absolute DIR still names the directory it named less than the recheck
** interval ago).  On error *pzErr gets an sqlite3_malloc'd message. */
#define NPK_CONN_READ 0x1000
int npk_conn_open(sqlite3 *db, const char *dir, int flags, NpkConn **pp,
                  char **pzErr);
void npk_conn_release(NpkConn *c);
/* npk_read_begin for a statement of C's connection that reads the store
** through a table declared in schema ZDB (NULL for a function call).
** Inside a transaction that holds SQLite's own lock on that database's
** file, the read is kept until that lock goes (COMMIT or ROLLBACK), so
** that every statement of the transaction sees one state of the store.
** End the statement's read with npk_read_end as usual. */
int npk_conn_read_begin(NpkConn *c, const char *zDb);
/* npk_read_row_unlocked for a statement outside any SQL transaction (a
** point lookup in autocommit mode); NPK_BUSY, nothing read, elsewhere or
** when the caller must read under the lock (npk_conn_read_begin) after
** all.  On NPK_OK the caller holds the row's state until
** npk_conn_read_row_end: meanwhile every read and every write of the
** connection must be of that committed state (or of the connection's own
** commits made on it), as under a held read lock; one that is not fails
** with NPK_STALE. */
int npk_conn_read_row(NpkConn *c, const char *array, uint64_t row, void *buf,
                      size_t cap, NpkArrayInfo *info, int *pfound);
void npk_conn_read_row_end(NpkConn *c);
/* npk_read_rows_unlocked for a call outside any SQL transaction that holds
** no row read without the lock: it reads and lets go at once.  NPK_BUSY
** when the caller must read under the lock after all. */
int npk_conn_read_rows(NpkConn *c, const char *name, const NpkArrayInfo *want,
                       const uint64_t *rows, uint64_t n, void *dst);
/* 1, and one more hold on the state, if C holds one now (a cursor opened
** by a statement while a row is held: it must read that state too, even
** after the cursor that read the row has gone); else 0.  Let go with
** npk_conn_read_row_end. */
int npk_conn_read_row_hold(NpkConn *c);
/* 1 when a read of C may use the state in memory without the lock and
** without a check (npk_array_info and npk_each_array_unlocked do): in
** autocommit mode, no row read without the lock held, whose state the
** read would have to be of. */
int npk_conn_may_read_unlocked(NpkConn *c);
/* Every array of C's store, in catalog order: FN(ARG, N, I, info) for I =
** 0..N-1, from the state in memory without the lock when
** npk_conn_may_read_unlocked allows and it is known to be the latest
** (FN then runs under the store's mutex and must not call into the
** store), else under a read lock, which in a transaction is the
** transaction's own.  Returns the first failure, or FN's first nonzero
** result. */
int npk_conn_each_array(NpkConn *c,
                        int (*fn)(void *, int, int, const NpkArrayInfo *),
                        void *arg);
/* A statement outside any SQL transaction is about to commit a write of
** its own on C's store (DROP TABLE's): no transaction of the connection
** has read the store, and the commit is not another connection's. */
void npk_conn_autocommit_write(NpkConn *c);
/* Register numpack_sessions(), whose destructor tells us DB closed, and
** the numpack_txn table through which SQLite's transaction reaches the
** stores the writing functions work on. */
int npk_conn_register(sqlite3 *db);

/* The text of V, argument WHAT (e.g. "the array name") of function FN, for
** every name and path argument of the functions.  NULL when V is not text
** or holds a NUL character, with an sqlite3_malloc'd message in *pzErr
** (NULL too when out of memory); the error code is SQLITE_MISMATCH. */
const char *npk_text_arg(sqlite3_value *v, const char *fn, const char *what,
                         char **pzErr);
/* The metric SQL value V names (text), or -1. */
int npk_knn_metric_arg(sqlite3_value *v);
/* The message of SQL value V naming no metric, for KIND WHO ("table " t,
** "" numpack_knn): "numpack: KIND WHO: unknown metric "V" (want one of
** ...)", V's text quoted, or NULL unquoted; sqlite3_malloc'd, NULL when out
** of memory. */
char *npk_knn_metric_unknown(const char *kind, const char *who,
                             sqlite3_value *v);
/* The SQLite result code for an engine result code: the one place they
** are converted.  Each condition a caller tells apart gets a primary code
** of its own (sqlite3_errcode(), Python's sqlite_errorcode), the same
** whether a function, a table or a table-valued function reports it:
**   NPK_NOTFOUND  SQLITE_NOTFOUND    no such array
**   NPK_NOFILE    SQLITE_CANTOPEN    no such store (or not a numpack store)
**   NPK_RANGE     SQLITE_RANGE       row index out of range, or row deleted
**   NPK_MISMATCH  SQLITE_MISMATCH    value of another dtype or row shape
**   NPK_EXISTS    SQLITE_CONSTRAINT  array already exists
**   NPK_TOOBIG    SQLITE_TOOBIG      over SQLite's limit for one value
**   NPK_ERROR     SQLITE_ERROR       any other bad argument
** and the failures of the store keep SQLite's own meaning (SQLITE_IOERR,
** SQLITE_CORRUPT, SQLITE_BUSY, ...).  The SQL layer's own argument checks
** use the same codes for the same conditions. */
int npk_sqlite_rc(int rc);
/* Report error RC (an SQLite code) with message MSG from a function, or on
** virtual table VT (returning RC).  SQLITE_NOMEM is reported as SQLite
** reports it, "out of memory", whatever MSG says: a caller sees one
** message for one condition. */
void npk_result_error(sqlite3_context *ctx, int rc, const char *msg);
int npk_vtab_error(sqlite3_vtab *vt, int rc, const char *msg);
/* npk_vtab_error with a message in sqlite3_mprintf's format; SQLITE_NOMEM
** when the message cannot be made. */
int npk_vtab_errorf(sqlite3_vtab *vt, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- the transaction bridge (conn.c) --------------------------------
**
** SQLite's transaction reaches a store's session only through virtual
** tables that SQLite counts in it: a numpack table written in it, or
** numpack_txn, which a writing function writes to (and so joins) when it
** runs inside one.  Each such table passes every call of SQLite's on to
** these, so that the session follows one rule whichever table (or
** several) told it.  LEVEL is SQLite's savepoint number for virtual
** tables; the engine codes are returned, its message is in the session.
** Every one of them may be called again for the same event by a second
** table on the same store, and then does nothing more.
**
** npk_conn_txn_begin: FRESH for SQLite's xBegin (no savepoint of SQLite's
** is open for the table yet); else for a write that finds no transaction
** open on the store, which opens the savepoints SQLite opened before it. */
int npk_conn_txn_begin(NpkConn *c, int fresh);
int npk_conn_txn_sync(NpkConn *c);
void npk_conn_txn_commit(NpkConn *c);
void npk_conn_txn_rollback(NpkConn *c);
int npk_conn_txn_savepoint(NpkConn *c, int level);
void npk_conn_txn_release(NpkConn *c, int level);
int npk_conn_txn_rollback_to(NpkConn *c, int level);

/* A writing function's call: its own transaction outside SQLite's, else a
** savepoint in the store's transaction inside SQLite's (joined first if
** need be), so that a failure undoes only this call. */
typedef struct NpkConnWrite NpkConnWrite;
struct NpkConnWrite {
  int own;    /* 1: the call began the store's transaction */
  int joined; /* 1: the call joined SQLite's transaction */
  int level;  /* else: the call's savepoint */
};
/* Begin a write of function FN.  SQLITE_OK, or an SQLite code with an
** sqlite3_malloc'd message in *pzErr, or with *pzErr NULL when the message
** is the session's (npk_errmsg). */
int npk_conn_write_begin(NpkConn *c, const char *fn, NpkConnWrite *w,
                         char **pzErr);
/* Keep the call's changes: commit them if the call began the transaction.
** An engine code; on failure, report it, then undo. */
int npk_conn_write_end(NpkConn *c, NpkConnWrite *w);
/* Undo everything the call did (after reporting its error: this may
** overwrite the session's message). */
void npk_conn_write_undo(NpkConn *c, NpkConnWrite *w);

#endif /* NPK_CONN_H */
