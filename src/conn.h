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
  sqlite3 *db;               /* the connection */
  NpkStore *store;           /* the store (one reference) */
  NpkSession *ses;           /* the connection's session on it */
  int refs;                  /* tables and function calls using it */
  int closed;                /* the connection has closed */
  int sp_wanted;             /* SQLite savepoints opened before the
                             ** session's transaction began */
  int held;                  /* holds a read (npk_read_begin) for the
                             ** connection's transaction: released when
                             ** SQLite unlocks the database (conn.c) */
  void *watch;               /* while held: the watch on that file */
  char *alias;               /* the path string a function named it by
                             ** last, with npk_store_open FLAGS alias_flags
                             ** and the directory's identity then */
  int alias_flags;
  dev_t alias_dev;
  ino_t alias_ino;
  NpkConn *next;             /* list of all NpkConn objects */
};

/* Find or make DB's session on the store at DIR (npk_store_open FLAGS).
** On error *pzErr gets an sqlite3_malloc'd message. */
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
/* Register numpack_sessions(), whose destructor tells us DB closed. */
int npk_conn_register(sqlite3 *db);
/* The text of V, argument WHAT (e.g. "the array name") of function FN, for
** every name and path argument of the functions.  NULL when V is not text
** or holds a NUL character, with an sqlite3_malloc'd message in *pzErr
** (NULL too when out of memory); the error code is SQLITE_MISMATCH. */
const char *npk_text_arg(sqlite3_value *v, const char *fn, const char *what,
                         char **pzErr);
/* The SQLite result code for an engine result code. */
int npk_sqlite_rc(int rc);
/* Report error RC (an SQLite code) with message MSG from a function, or on
** virtual table VT (returning RC).  SQLITE_NOMEM is reported as SQLite
** reports it, "out of memory", whatever MSG says: a caller sees one
** message for one condition. */
void npk_result_error(sqlite3_context *ctx, int rc, const char *msg);
int npk_vtab_error(sqlite3_vtab *vt, int rc, const char *msg);

#endif /* NPK_CONN_H */
