/*
** sql_threads_test.c — connections in several threads of one process,
** through SQL, on one store: the connection layer (conn.c), the table
** (vtab.c), the functions (func.c, tvf.c) and the engine under them, as
** test/python/test_threads.py runs them, in C so that `make tsan` can run
** it under ThreadSanitizer (which the Python interpreter does not start
** under).  Transfers move amounts between the rows of `acct` inside
** BEGIN ... COMMIT; readers check the total by a scan, by lookups of each
** rowid and by numpack_getitem of every row (both without the store's
** lock), and list the arrays; an appender INSERTs into `log` while a
** cleaner DELETEs from it and compacts it.  Every committed total must be
** the first one, and the end state what the commits add up to.
**
** Linked with libnumpack.a (SQLITE_CORE) and SQLite.
*/
#include <pthread.h>

#include <sqlite3.h>

#include "numpack.h"
#include "store_testutil.h"

enum {
  ACCOUNTS = 16,
  START = 1000,
  TRANSFERS = 60, /* per transfer thread */
  NT = 2,         /* transfer threads */
  NR = 2,         /* reader threads */
  APPENDS = 150,  /* rows the appender adds */
};

typedef struct Shared Shared;
struct Shared {
  char store[PATH_MAX];
  const char *dbdir; /* each connection's database file is here, or NULL:
                     ** a database in memory */
  int appending;     /* the appender has not finished (atomic) */
};

typedef struct Worker Worker;
struct Worker {
  Shared *sh;
  int id;
  uint64_t rnd;
  long bad;      /* wrong totals, failed statements */
  long done;     /* transfers, reads, rows appended, cleanings */
  long deleted;  /* the cleaner's deleted rows */
  char msg[256]; /* the first failure */
};

static void fail(Worker *w, sqlite3 *db, const char *what) {
  if (!w->msg[0])
    snprintf(w->msg, sizeof w->msg, "%s: %s", what, sqlite3_errmsg(db));
  w->bad++;
}

/* A connection of its own, with both tables declared, to a database in
** memory (a transaction's reads lock the store per statement) or in a
** file in rollback-journal mode (a transaction's reads hold the store). */
static sqlite3 *open_conn(Worker *w) {
  sqlite3 *db = NULL;
  char *sql, path[PATH_MAX + 16] = ":memory:";
  int rc;
  if (w->sh->dbdir)
    snprintf(path, sizeof path, "%s/c%d.db", w->sh->dbdir, w->id);
  rc = sqlite3_open(path, &db);
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(db, 30000);
    sql = sqlite3_mprintf(
        "CREATE VIRTUAL TABLE acct USING numpack(store='%q', array='acct');"
        "CREATE VIRTUAL TABLE log USING numpack(store='%q', array='log');",
        w->sh->store, w->sh->store);
    rc = sqlite3_exec(db, sql, 0, 0, 0);
    sqlite3_free(sql);
  }
  if (rc != SQLITE_OK) {
    fail(w, db, "open");
    sqlite3_close(db);
    return NULL;
  }
  return db;
}

/* A pause between two writes of one thread: lock waits poll, so a thread
** writing back to back would keep the others waiting until it is done. */
static void pause_ms(int ms) {
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, NULL);
}

/* 1 if RC (of SQL run in DB) is busy or a refused stale read: the work is
** rolled back and tried again, as an application would. */
static int busy(sqlite3 *db, int rc) {
  if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) return 0;
  if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", 0, 0, 0);
  return 1;
}

/* The one integer SQL gives, into *OUT; SQLite's result code. */
static int one_int(sqlite3 *db, const char *sql, sqlite3_int64 *out) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, 0);
  if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    *out = sqlite3_column_int64(st, 0);
    rc = SQLITE_OK;
  }
  if (rc != SQLITE_OK) rc = sqlite3_errcode(db);
  sqlite3_finalize(st);
  return rc;
}

/* The sum of the int64 values of the .npy BLOB SQL gives. */
static int npy_sum(sqlite3 *db, const char *sql, sqlite3_int64 *out) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, 0);
  if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    const unsigned char *p = sqlite3_column_blob(st, 0);
    int n = sqlite3_column_bytes(st, 0), at;
    *out = -1;
    if (p && n >= 10) {
      at = 10 + (p[8] | p[9] << 8);
      *out = 0;
      for (; at + 8 <= n; at += 8) {
        int64_t v;
        memcpy(&v, p + at, 8);
        *out += v;
      }
    }
    rc = SQLITE_OK;
  }
  if (rc != SQLITE_OK) rc = sqlite3_errcode(db);
  sqlite3_finalize(st);
  return rc;
}

static void *transfer_main(void *arg) {
  Worker *w = arg;
  sqlite3 *db = open_conn(w);
  for (int i = 0; db && i < TRANSFERS;) {
    int a = (int)(tu_rand(&w->rnd) % ACCOUNTS), b = (a + 1) % ACCOUNTS;
    int x = 1 + (int)(tu_rand(&w->rnd) % 50);
    char *sql = sqlite3_mprintf(
        "BEGIN; UPDATE acct SET value = value - %d WHERE rowid = %d;"
        "UPDATE acct SET value = value + %d WHERE rowid = %d; COMMIT;",
        x, a, x, b);
    int rc = sqlite3_exec(db, sql, 0, 0, 0);
    sqlite3_free(sql);
    if (rc == SQLITE_OK) {
      i++;
      w->done++;
      pause_ms(2);
    } else if (!busy(db, rc)) {
      fail(w, db, "transfer");
      break;
    }
  }
  sqlite3_close(db);
  return NULL;
}

static void *read_main(void *arg) {
  Worker *w = arg;
  sqlite3 *db = open_conn(w);
  char *sql[4];
  sqlite3_str *ids = sqlite3_str_new(0), *all = sqlite3_str_new(0);
  for (int r = 0; r < ACCOUNTS; r++) {
    sqlite3_str_appendf(ids, "%s(%d)", r ? "," : "", r);
    sqlite3_str_appendf(all, "%s%d", r ? "," : "[", r);
  }
  sqlite3_str_appendall(all, "]");
  sql[0] = sqlite3_mprintf("SELECT sum(value) FROM acct");
  sql[1] = sqlite3_mprintf(
      "WITH ids(id) AS (VALUES %z) SELECT sum(a.value) "
      "FROM ids JOIN acct AS a ON a.rowid = ids.id",
      sqlite3_str_finish(ids));
  sql[2] = sqlite3_mprintf("SELECT numpack_getitem('%q', 'acct', '%z')",
                           w->sh->store, sqlite3_str_finish(all));
  sql[3] = sqlite3_mprintf("SELECT count(*) FROM numpack_arrays('%q')",
                           w->sh->store);
  for (int i = 0; db && __atomic_load_n(&w->sh->appending, __ATOMIC_ACQUIRE);
       i++) {
    sqlite3_int64 got = 0, again = 0;
    int k = i % 5, rc;
    if (k == 4) {
      /* Two reads of one transaction: of one state where it holds the
      ** store (a database file), else each of a committed one. */
      rc = sqlite3_exec(db, "BEGIN", 0, 0, 0);
      if (rc == SQLITE_OK) rc = one_int(db, sql[0], &got);
      if (rc == SQLITE_OK) rc = npy_sum(db, sql[2], &again);
      if (rc == SQLITE_OK) rc = sqlite3_exec(db, "COMMIT", 0, 0, 0);
      if (rc == SQLITE_OK && w->sh->dbdir && got != again) {
        snprintf(w->msg, sizeof w->msg, "one transaction read %lld, then %lld",
                 (long long)got, (long long)again);
        w->bad++;
      }
      if (rc == SQLITE_OK && again != ACCOUNTS * START) got = again;
      k = 0;
    } else {
      rc = k == 2 ? npy_sum(db, sql[k], &got) : one_int(db, sql[k], &got);
    }
    if (busy(db, rc)) continue;
    if (rc != SQLITE_OK) {
      fail(w, db, sql[k]);
      break;
    }
    if (got != (k == 3 ? 2 : ACCOUNTS * START)) {
      snprintf(w->msg, sizeof w->msg, "%s gave %lld", sql[k], (long long)got);
      w->bad++;
    }
    w->done++;
  }
  for (int k = 0; k < 4; k++) sqlite3_free(sql[k]);
  sqlite3_close(db);
  return NULL;
}

static void *append_main(void *arg) {
  Worker *w = arg;
  sqlite3 *db = open_conn(w);
  for (int seq = 0; db && seq < APPENDS;) {
    char *sql =
        sqlite3_mprintf("INSERT INTO log(c0, c1) VALUES (%d, %d)", w->id, seq);
    int rc = sqlite3_exec(db, sql, 0, 0, 0);
    sqlite3_free(sql);
    if (rc == SQLITE_OK) {
      seq++;
      w->done++;
      pause_ms(2);
    } else if (!busy(db, rc)) {
      fail(w, db, "insert");
      break;
    }
  }
  __atomic_store_n(&w->sh->appending, 0, __ATOMIC_RELEASE);
  sqlite3_close(db);
  return NULL;
}

static void *clean_main(void *arg) {
  Worker *w = arg;
  sqlite3 *db = open_conn(w);
  char *compact =
      sqlite3_mprintf("SELECT numpack_compact('%q', 'log');", w->sh->store);
  int last = 0;
  while (db && !last) {
    char *sql;
    int rc;
    last = !__atomic_load_n(&w->sh->appending, __ATOMIC_ACQUIRE);
    /* Compacted now and then, and at the end: the data file moves. */
    sql = sqlite3_mprintf(
        "BEGIN; DELETE FROM log WHERE c1 %% 10 = 0; %s "
        "COMMIT;",
        w->done % 4 == 3 || last ? compact : "");
    rc = sqlite3_exec(db, sql, 0, 0, 0);
    sqlite3_free(sql);
    if (rc == SQLITE_OK) {
      w->done++;
      pause_ms(5);
    } else if (busy(db, rc)) {
      last = 0;
    } else {
      fail(w, db, "clean");
      break;
    }
  }
  sqlite3_free(compact);
  sqlite3_close(db);
  return NULL;
}

/* Every thread at once on one store, their databases in DBDIR (NULL: in
** memory). */
static void sql_threads(const char *dbdir) {
  static Shared sh;
  Worker w[NT + NR + 2];
  pthread_t th[NT + NR + 2];
  void *(*fn[NT + NR + 2])(void *);
  int64_t acct[ACCOUNTS];
  uint64_t ashape[1] = {ACCOUNTS}, lshape[2] = {0, 2};
  sqlite3_int64 got = -1;
  long transfers = 0;
  sqlite3 *db;
  NpkStore *st;
  Tmp t;
  tu_tmp_init(&t);
  snprintf(sh.store, sizeof sh.store, "%s", t.dir);
  sh.dbdir = dbdir ? t.root : NULL;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK(s != NULL);
  if (!s) return;
  for (int r = 0; r < ACCOUNTS; r++) acct[r] = START;
  CHECK_EQ(npk_save(s, "acct", NPK_INT64, 1, ashape, acct), NPK_OK);
  CHECK_EQ(npk_save(s, "log", NPK_INT64, 2, lshape, acct), NPK_OK);
  tu_close(st, s);
  sh.appending = 1;
  memset(w, 0, sizeof w);
  for (int k = 0; k < NT + NR + 2; k++) {
    w[k].sh = &sh;
    w[k].id = k;
    w[k].rnd = 101 + (uint64_t)k;
    fn[k] = k < NT         ? transfer_main
            : k < NT + NR  ? read_main
            : k == NT + NR ? append_main
                           : clean_main;
  }
  for (int k = 0; k < NT + NR + 2; k++)
    CHECK_EQ(pthread_create(&th[k], NULL, fn[k], &w[k]), 0);
  for (int k = 0; k < NT + NR + 2; k++) pthread_join(th[k], NULL);
  for (int k = 0; k < NT + NR + 2; k++) {
    if (w[k].msg[0]) printf("  thread %d: %s\n", k, w[k].msg);
    CHECK_EQ(w[k].bad, 0);
  }
  for (int k = 0; k < NT; k++) transfers += w[k].done;
  printf(
      "    %ld transfers, %ld+%ld reads, %ld rows appended, %ld "
      "cleanings\n",
      transfers, w[NT].done, w[NT + 1].done, w[NT + NR].done,
      w[NT + NR + 1].done);
  CHECK_EQ(transfers, NT * TRANSFERS);
  CHECK_EQ(w[NT + NR].done, APPENDS);
  /* The end state: the total kept, every row appended there once unless
  ** it was one to delete. */
  Worker last = {&sh, NT + NR + 2, 0, 0, 0, 0, {0}};
  db = open_conn(&last);
  CHECK(db != NULL);
  CHECK_EQ(one_int(db, "SELECT sum(value) FROM acct", &got), SQLITE_OK);
  CHECK_EQ(got, ACCOUNTS * START);
  CHECK_EQ(one_int(db, "SELECT count(DISTINCT c1) FROM log", &got), SQLITE_OK);
  CHECK_EQ(got, APPENDS - APPENDS / 10);
  CHECK_EQ(one_int(db, "SELECT count(*) FROM log WHERE c1 % 10 = 0", &got),
           SQLITE_OK);
  CHECK_EQ(got, 0);
  sqlite3_close(db);
  tu_tmp_done(&t);
}

static void test_sql_threads_memory(void) { sql_threads(NULL); }
static void test_sql_threads_disk(void) { sql_threads("disk"); }

int main(void) {
  sqlite3_auto_extension((void (*)(void))sqlite3_numpack_init);
  RUN(test_sql_threads_memory);
  RUN(test_sql_threads_disk);
  return CTEST_END();
}
