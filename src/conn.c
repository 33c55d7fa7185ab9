/*
** conn.c — one engine session per (database connection, store directory).
**
** Every virtual table and every SQL function of one connection that works
** on the same store shares one NpkSession, so they see one another's
** uncommitted changes, take part in the same transaction, and never wait
** on each other's locks.  Different connections get different sessions and
** so are isolated from each other, as SQLite connections are.
*/
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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
    default: return SQLITE_ERROR;
  }
}

/* The connection's busy timeout in milliseconds (0 when none is set). */
static int busy_timeout(sqlite3 *db) {
  sqlite3_stmt *st = 0;
  int ms = 0;
  if (sqlite3_prepare_v2(db, "PRAGMA busy_timeout", -1, &st, 0) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    ms = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return ms;
}

void npk_conn_sync_timeout(NpkConn *c) {
  npk_set_busy_timeout(c->ses, busy_timeout(c->db));
}

int npk_conn_open(sqlite3 *db, const char *dir, int flags, NpkConn **pp,
                  char **pzErr) {
  NpkStore *st = 0;
  NpkConn *c;
  char *msg = 0;
  int rc = npk_store_open(dir, flags, &st, &msg);
  *pp = 0;
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
  npk_conn_sync_timeout(c);
  *pp = c;
  return SQLITE_OK;
}

void npk_conn_release(NpkConn *c) {
  NpkConn **pp;
  if (!c) return;
  pthread_mutex_lock(&conn_mu);
  if (--c->refs > 0) {
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
  npk_session_close(c->ses);
  npk_store_release(c->store);
  free(c);
}
