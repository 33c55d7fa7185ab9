/*
** threads_test.c — sessions of one store in several threads of one
** process, as the connections of a multi-threaded application share it:
** readers (with and without the lock) and writers (autocommit and explicit
** transactions, whole-array saves, compactions, rollbacks) run at once
** over more arrays than the process keeps descriptors open for, so that
** the shared catalog, mappings, retire list, descriptor list, guard slots
** and counters are all used from several threads.  Every row read must be
** whole and of a committed state, and the end state must be the one the
** writers' commits add up to.
**
** `make tsan` runs it under ThreadSanitizer, which is what finds a data
** race; the assertions here hold in any build.
*/
#include <pthread.h>
#include <sys/resource.h>

#include "store_testutil.h"

enum {
  NARR = 24,       /* small arrays: more than the descriptors kept open */
  BIG = NARR,      /* and one that outgrows its mapping, again and again */
  NALL = NARR + 1, /* arrays */
  NW = 2,          /* writer threads, each owning the arrays i % NW == w */
  NR = 3,          /* reader threads */
  WIDTH = 4,       /* int64 per row */
  START = 40,      /* rows each array starts with */
  ROUNDS = 120,    /* writes per writer thread */
  BIG_ROWS = 8192, /* rows (256 KiB) appended to BIG twice in one */
  BIG_EVERY = 3,   /* transaction by writer 0 every this many rounds */
};

/* A row: its array, serial, version and a checksum of the three, so that a
** torn row (half of one version, half of another) never passes. */
static void row_make(int64_t *r, int arr, int64_t serial, int64_t ver) {
  r[0] = arr;
  r[1] = serial;
  r[2] = ver;
  r[3] = arr * 1000003 + serial * 7919 + ver * 104729;
}

static int row_ok(const int64_t *r, int arr) {
  return r[0] == arr && r[3] == r[0] * 1000003 + r[1] * 7919 + r[2] * 104729;
}

static void arr_name(char *buf, int i) { snprintf(buf, 16, "a%d", i); }

typedef struct Shared Shared;
struct Shared {
  NpkStore *st;
  int stop;             /* the writers are done (atomic) */
  uint64_t live[NALL];  /* committed live rows, by the owning writer */
  int64_t serial[NALL]; /* next serial, by the owning writer */
};

typedef struct Worker Worker;
struct Worker {
  Shared *sh;
  int id;
  uint64_t rnd;
  long bad;   /* rows or results that were wrong */
  long reads; /* reads that returned rows */
  long busy;  /* reads sent to the lock */
  long commits;
  char msg[256]; /* first unexpected error */
};

static int sync_off(void *arg) {
  (void)arg;
  return 0;
}

static void worker_fail(Worker *w, NpkSession *s, const char *what, int rc) {
  if (!w->msg[0])
    snprintf(w->msg, sizeof w->msg, "%s: rc=%d %s", what, rc, npk_errmsg(s));
  w->bad++;
}

static NpkSession *worker_session(Worker *w) {
  NpkSession *s = NULL;
  if (npk_session_open(w->sh->st, &s) != NPK_OK) return NULL;
  npk_set_busy_timeout(s, 20000);
  npk_set_sync_source(s, sync_off, NULL);
  return s;
}

/* One write of writer W to array I: a transaction of several changes
** (committed or rolled back), an autocommit append, a whole save or a
** compaction. */
static void write_once(Worker *w, NpkSession *s, int i) {
  Shared *sh = w->sh;
  char name[16];
  int64_t rows[3 * WIDTH];
  int rc, kind = (int)(tu_rand(&w->rnd) % 11);
  arr_name(name, i);
  if (kind < 4) {
    /* Append one to three rows, one transaction. */
    uint64_t n = 1 + tu_rand(&w->rnd) % 3, shape[2] = {n, WIDTH};
    for (uint64_t k = 0; k < n; k++)
      row_make(rows + k * WIDTH, i, sh->serial[i] + (int64_t)k, 0);
    rc = npk_append(s, name, NPK_INT64, 2, shape, rows);
    if (rc) {
      worker_fail(w, s, "append", rc);
      return;
    }
    sh->serial[i] += (int64_t)n;
    sh->live[i] += n;
  } else if (kind < 8) {
    /* Replace a live row, delete another, append one: commit, or roll
    ** back one time in four. */
    NpkArrayInfo info;
    uint64_t phys[2], shape[2] = {1, WIDTH};
    const void *p;
    int back = kind == 7, deleted = 0;
    if ((rc = npk_begin(s))) {
      worker_fail(w, s, "begin", rc);
      return;
    }
    rc = npk_array_info(s, name, &info);
    if (rc == NPK_OK && info.live_rows != sh->live[i])
      worker_fail(w, s, "live rows seen by the writer", (int)info.live_rows);
    for (int k = 0; rc == NPK_OK && k < 2; k++) {
      phys[k] = tu_rand(&w->rnd) % info.live_rows;
      rc = npk_logical_to_physical(s, name, phys[k], &phys[k]);
    }
    if (rc == NPK_OK) rc = npk_row_ptr(s, name, phys[0], &p);
    if (rc == NPK_OK) {
      int64_t r[WIDTH];
      memcpy(r, p, sizeof r);
      if (!row_ok(r, i)) worker_fail(w, s, "row read by the writer", 0);
      row_make(rows, i, r[1], r[2] + 1);
      rc = npk_replace_rows(s, name, &phys[0], 1, rows);
    }
    if (rc == NPK_OK && phys[1] != phys[0] && info.live_rows > 4) {
      rc = npk_delete_rows(s, name, &phys[1], 1);
      deleted = 1;
    }
    if (rc == NPK_OK) {
      row_make(rows, i, sh->serial[i], 0);
      rc = npk_append(s, name, NPK_INT64, 2, shape, rows);
    }
    if (rc == NPK_OK) rc = back ? npk_rollback(s) : npk_commit(s);
    if (rc) {
      npk_rollback(s);
      {
        worker_fail(w, s, "transaction", rc);
        return;
      }
    }
    if (back) return;
    sh->serial[i]++;
    sh->live[i] += 1 - (uint64_t)deleted;
  } else if (kind == 8) {
    /* Save the array over, fewer rows: a new data file, the old mapping
    ** retired while readers may hold it. */
    uint64_t n = START / 2, shape[2] = {n, WIDTH};
    int64_t *all = malloc(n * WIDTH * sizeof *all);
    for (uint64_t k = 0; k < n; k++)
      row_make(all + k * WIDTH, i, sh->serial[i] + (int64_t)k, 5);
    rc = npk_save(s, name, NPK_INT64, 2, shape, all);
    free(all);
    if (rc) {
      worker_fail(w, s, "save", rc);
      return;
    }
    sh->serial[i] += (int64_t)n;
    sh->live[i] = n;
  } else if (kind == 9) {
    rc = npk_compact(s, name);
    if (rc) {
      worker_fail(w, s, "compact", rc);
      return;
    }
  } else {
    /* A row replaced, then the array saved over under a savepoint of its
    ** own, which is released or rolled back before the commit: a version
    ** of the array with replaced rows is let go by the transaction, its
    ** rows retired while other sessions may be reading. */
    uint64_t n = START / 4, shape[2] = {n, WIDTH}, row = 0;
    int64_t *all = malloc(n * WIDTH * sizeof *all);
    int l0, l1, keep = (int)(tu_rand(&w->rnd) % 2);
    const void *p;
    for (uint64_t k = 0; k < n; k++)
      row_make(all + k * WIDTH, i, sh->serial[i] + (int64_t)k, 9);
    rc = npk_begin(s);
    if (rc == NPK_OK) rc = npk_savepoint(s, &l0);
    if (rc == NPK_OK) rc = npk_logical_to_physical(s, name, 0, &row);
    if (rc == NPK_OK) rc = npk_row_ptr(s, name, row, &p);
    if (rc == NPK_OK) {
      memcpy(rows, p, WIDTH * sizeof rows[0]);
      row_make(rows, i, rows[1], rows[2] + 1);
      rc = npk_replace_rows(s, name, &row, 1, rows);
    }
    if (rc == NPK_OK) rc = npk_savepoint(s, &l1);
    if (rc == NPK_OK) rc = npk_save(s, name, NPK_INT64, 2, shape, all);
    if (rc == NPK_OK) rc = keep ? npk_release(s, l1) : npk_rollback_to(s, l1);
    if (rc == NPK_OK) rc = npk_commit(s);
    free(all);
    if (rc) {
      npk_rollback(s);
      {
        worker_fail(w, s, "savepoints", rc);
        return;
      }
    }
    if (keep) {
      sh->serial[i] += (int64_t)n;
      sh->live[i] = n;
    }
  }
  w->commits++;
}

/* Rows past the end of BIG's mapping: readers map the file again while
** the writer moves its size. */
static void big_append(Worker *w, NpkSession *s) {
  Shared *sh = w->sh;
  uint64_t shape[2] = {BIG_ROWS, WIDTH};
  int64_t *rows = malloc(BIG_ROWS * WIDTH * sizeof *rows);
  char name[16];
  int rc;
  arr_name(name, BIG);
  /* Two appends in one transaction: readers that map the file anew
  ** between them read its size as the first one left it. */
  rc = npk_begin(s);
  for (int half = 0; rc == NPK_OK && half < 2; half++) {
    for (int k = 0; k < BIG_ROWS; k++)
      row_make(rows + k * WIDTH, BIG, sh->serial[BIG] + half * BIG_ROWS + k, 0);
    rc = npk_append(s, name, NPK_INT64, 2, shape, rows);
  }
  if (rc == NPK_OK) rc = npk_commit(s);
  free(rows);
  if (rc) {
    npk_rollback(s);
    {
      worker_fail(w, s, "append to the big array", rc);
      return;
    }
  }
  sh->serial[BIG] += 2 * BIG_ROWS;
  sh->live[BIG] += 2 * BIG_ROWS;
  w->commits++;
}

static void *writer_main(void *arg) {
  Worker *w = arg;
  NpkSession *s = worker_session(w);
  if (!s) {
    w->bad++;
    return NULL;
  }
  for (int round = 0; round < ROUNDS; round++) {
    int i = (int)(tu_rand(&w->rnd) % (NARR / NW)) * NW + w->id;
    if (w->id == BIG % NW && round % BIG_EVERY == 0) big_append(w, s);
    else write_once(w, s, i);
  }
  npk_session_close(s);
  return NULL;
}

/* npk_each_array_unlocked's callback: every array is one of ours. */
static int each_cb(void *arg, int n, int i, const NpkArrayInfo *info) {
  Worker *w = arg;
  (void)i;
  if (n != NALL || info->ndim != 2 || info->shape[1] != WIDTH ||
      info->live_rows > info->rows)
    w->bad++;
  return 0;
}

/* One read by reader W of array I, one of several ways. */
static void read_once(Worker *w, NpkSession *s, int i) {
  char name[16];
  NpkArrayInfo info;
  int64_t r[4 * WIDTH];
  uint64_t rows[4], seq;
  int rc, found, done, kind = (int)(tu_rand(&w->rnd) % 6);
  arr_name(name, i);
  if (kind == 0) {
    /* Logical rows without the lock, as a table's point lookups. */
    if ((rc = npk_array_info(s, name, &info))) {
      worker_fail(w, s, "info", rc);
      return;
    }
    for (int k = 0; k < 4; k++) rows[k] = tu_rand(&w->rnd) % info.live_rows;
    rc = npk_read_rows_unlocked(s, name, &info, rows, 4, r);
    if (rc == NPK_BUSY) {
      w->busy++;
      return;
    }
    if (rc) {
      worker_fail(w, s, "rows unlocked", rc);
      return;
    }
    for (int k = 0; k < 4; k++)
      if (!row_ok(r + k * WIDTH, i)) worker_fail(w, s, "row unlocked", k);
    w->reads++;
  } else if (kind == 1) {
    uint64_t row = tu_rand(&w->rnd) % (START * 2);
    rc = npk_read_row_unlocked(s, name, row, r, sizeof r, &info, &found, &seq);
    if (rc == NPK_BUSY) {
      w->busy++;
      return;
    }
    if (rc) {
      worker_fail(w, s, "row unlocked", rc);
      return;
    }
    if (found && !row_ok(r, i)) worker_fail(w, s, "one row unlocked", 0);
    w->reads++;
  } else if (kind == 2) {
    rc = npk_each_array_unlocked(s, each_cb, w, &done);
    if (rc) {
      worker_fail(w, s, "each array", rc);
      return;
    }
    if (!done) w->busy++;
  } else {
    /* Under the lock: a whole view (some rows of the big one), row
    ** pointers, logical rows. */
    NpkView v;
    uint64_t live = 0, mark, step = 1;
    if ((rc = npk_read_begin(s))) {
      worker_fail(w, s, "read", rc);
      return;
    }
    mark = npk_map_faults(s);
    rc = npk_view(s, name, &v);
    if (rc == NPK_OK && v.rows > BIG_ROWS) step = v.rows / 256;
    for (uint64_t row = 0; rc == NPK_OK && row < v.rows; row += step) {
      const void *p;
      if (v.live && !(v.live[row / 64] >> (row % 64) & 1)) continue;
      if (v.base) p = v.base + row * v.row_bytes;
      else if ((rc = npk_row_ptr(s, name, row, &p))) break;
      memcpy(r, p, WIDTH * sizeof r[0]);
      if (!row_ok(r, i)) worker_fail(w, s, "row of a view", (int)row);
      live++;
    }
    if (rc == NPK_OK && step == 1 && live != v.live_rows)
      worker_fail(w, s, "live rows of a view", (int)live);
    if (rc == NPK_OK && v.live_rows)
      rc = npk_logical_to_physical(s, name, v.live_rows - 1, &rows[0]);
    if (rc == NPK_OK) rc = npk_map_check(s, mark, name);
    npk_read_end(s);
    if (rc) {
      worker_fail(w, s, "view", rc);
      return;
    }
    w->reads++;
  }
}

static void *reader_main(void *arg) {
  Worker *w = arg;
  NpkSession *s = worker_session(w);
  NpkStats stats;
  if (!s) {
    w->bad++;
    return NULL;
  }
  while (!__atomic_load_n(&w->sh->stop, __ATOMIC_ACQUIRE)) {
    read_once(w, s, (int)(tu_rand(&w->rnd) % NALL));
    npk_store_stats(w->sh->st, &stats);
  }
  npk_session_close(s);
  return NULL;
}

/* Readers and writers of one store object at once. */
static void test_readers_and_writers(void) {
  static Shared sh;
  Worker w[NW + NR];
  pthread_t th[NW + NR];
  NpkStats stats;
  Tmp t;
  tu_tmp_init(&t);
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &sh.st);
  CHECK(s != NULL);
  if (!s) return;
  for (int i = 0; i < NALL; i++) {
    int64_t rows[START * WIDTH];
    uint64_t shape[2] = {START, WIDTH};
    char name[16];
    arr_name(name, i);
    for (int k = 0; k < START; k++) row_make(rows + k * WIDTH, i, k, 0);
    CHECK_EQ(npk_save(s, name, NPK_INT64, 2, shape, rows), NPK_OK);
    sh.live[i] = START;
    sh.serial[i] = START;
  }
  memset(w, 0, sizeof w);
  for (int k = 0; k < NW + NR; k++) {
    w[k].sh = &sh;
    w[k].id = k < NW ? k : k - NW;
    w[k].rnd = 77 + (uint64_t)k;
  }
  for (int k = NW; k < NW + NR; k++)
    CHECK_EQ(pthread_create(&th[k], NULL, reader_main, &w[k]), 0);
  for (int k = 0; k < NW; k++)
    CHECK_EQ(pthread_create(&th[k], NULL, writer_main, &w[k]), 0);
  for (int k = 0; k < NW; k++) pthread_join(th[k], NULL);
  __atomic_store_n(&sh.stop, 1, __ATOMIC_RELEASE);
  for (int k = NW; k < NW + NR; k++) pthread_join(th[k], NULL);
  for (int k = 0; k < NW + NR; k++) {
    if (w[k].msg[0])
      printf("  %s %d: %s\n", k < NW ? "writer" : "reader", w[k].id, w[k].msg);
    CHECK_EQ(w[k].bad, 0);
  }
  printf(
      "    %ld+%ld commits; %ld+%ld+%ld reads, %ld+%ld+%ld sent to the "
      "lock\n",
      w[0].commits, w[1].commits, w[2].reads, w[3].reads, w[4].reads, w[2].busy,
      w[3].busy, w[4].busy);
  /* The end state is what the writers' commits add up to. */
  for (int i = 0; i < NALL; i++) {
    NpkArrayInfo info;
    char name[16];
    arr_name(name, i);
    CHECK_EQ(npk_array_info(s, name, &info), NPK_OK);
    CHECK_EQ(info.live_rows, sh.live[i]);
  }
  npk_store_stats(sh.st, &stats);
  CHECK(stats.commits >= (uint64_t)(w[0].commits + w[1].commits));
  tu_close(sh.st, s);
  tu_tmp_done(&t);
}

/* A description taken outside a read (npk_array_info without the lock)
** is of an array version that another session's commit may free at once;
** reading rows without the lock with it afterwards looks the array up by
** the name given, not by the description's pointer into the freed one.
** (ThreadSanitizer found the use after free in test_readers_and_writers;
** here one thread does what the threads did, in that order.) */
static void test_info_outlived(void) {
  int64_t rows[START * WIDTH], got[2 * WIDTH];
  uint64_t shape[2] = {START, WIDTH}, want[2] = {3, START - 1};
  NpkArrayInfo info;
  NpkSession *s2 = NULL;
  NpkStore *st;
  NpkView v;
  Tmp t;
  tu_tmp_init(&t);
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK(s != NULL);
  if (!s) return;
  CHECK_EQ(npk_session_open(st, &s2), NPK_OK);
  for (int k = 0; k < START; k++) row_make(rows + k * WIDTH, 0, k, 0);
  CHECK_EQ(npk_save(s, "a0", NPK_INT64, 2, shape, rows), NPK_OK);
  CHECK_EQ(npk_array_info(s2, "a0", &info), NPK_OK);
  /* Saved over, same shape: the version INFO was taken from is freed. */
  for (int k = 0; k < START; k++) row_make(rows + k * WIDTH, 0, k, 1);
  CHECK_EQ(npk_save(s, "a0", NPK_INT64, 2, shape, rows), NPK_OK);
  /* Mapped under the lock, so that rows can be copied without it. */
  CHECK_EQ(npk_read_begin(s2), NPK_OK);
  CHECK_EQ(npk_view(s2, "a0", &v), NPK_OK);
  npk_read_end(s2);
  CHECK_EQ(npk_read_rows_unlocked(s2, "a0", &info, want, 2, got), NPK_OK);
  for (int k = 0; k < 2 && !ctest_case_failures; k++) {
    CHECK(row_ok(got + k * WIDTH, 0));
    CHECK_EQ(got[k * WIDTH + 1], (int64_t)want[k]);
    CHECK_EQ(got[k * WIDTH + 2], 1);
  }
  npk_session_close(s2);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* A read sees one catalog from npk_read_begin to npk_read_end, even when
** another session of the store reloads it meanwhile: a program that
** ignores the lock (NumPack) replaced the catalog file, and the other
** session, starting its read after the recheck interval, finds the change.
** (In two threads the reload replaced the catalog the first one was
** reading, a race on the store's catalog.) */
static void test_read_one_catalog(void) {
  int64_t rows[START * WIDTH];
  uint64_t shape[2] = {START, WIDTH};
  unsigned char *old;
  size_t oldn;
  int n = -1;
  uint64_t state;
  NpkArrayInfo info;
  NpkSession *r1 = NULL, *r2 = NULL;
  NpkStore *st;
  struct timespec nap = {0, 20000000};
  Tmp t;
  tu_tmp_init(&t);
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK(s != NULL);
  if (!s) return;
  CHECK_EQ(npk_session_open(st, &r1), NPK_OK);
  CHECK_EQ(npk_session_open(st, &r2), NPK_OK);
  for (int k = 0; k < START; k++) row_make(rows + k * WIDTH, 0, k, 0);
  CHECK_EQ(npk_save(s, "a0", NPK_INT64, 2, shape, rows), NPK_OK);
  CHECK_EQ(npk_save(s, "a1", NPK_INT64, 2, shape, rows), NPK_OK);
  old = tu_read_file(P(t.dir, TU_CATALOG), &oldn);
  CHECK_EQ(npk_save(s, "a2", NPK_INT64, 2, shape, rows), NPK_OK);
  CHECK_EQ(npk_read_begin(r1), NPK_OK);
  CHECK_EQ(npk_array_count(r1, &n), NPK_OK);
  CHECK_EQ(n, 3);
  state = npk_read_state(r1);
  /* The catalog of two arrays put back, as a program ignoring the lock
  ** would write it: a new file, the commit count unchanged. */
  CHECK_EQ(tu_catalog_replace(t.dir, old, oldn), 0);
  nanosleep(&nap, NULL);
  CHECK_EQ(npk_read_begin(r2), NPK_OK);
  CHECK_EQ(npk_array_count(r2, &n), NPK_OK);
  CHECK_EQ(n, 2);
  npk_read_end(r2);
  /* The first read still sees its three arrays, and says so. */
  CHECK_EQ(npk_array_count(r1, &n), NPK_OK);
  CHECK_EQ(n, 3);
  CHECK_EQ(npk_read_state(r1), state);
  CHECK_EQ(npk_array_info_at(r1, 2, &info), NPK_OK);
  npk_read_end(r1);
  CHECK_EQ(npk_read_begin(r1), NPK_OK);
  CHECK_EQ(npk_array_count(r1, &n), NPK_OK);
  CHECK_EQ(n, 2);
  npk_read_end(r1);
  free(old);
  npk_session_close(r1);
  npk_session_close(r2);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* Readers of one store in three threads while a program that ignores the
** lock rewrites the catalog (the same bytes, a new file) again and again:
** each read that starts after the recheck interval loads it anew, while
** the others go on with theirs (under ThreadSanitizer, nothing of the
** catalog one loads is what another reads unordered). */
typedef struct Reloader Reloader;
struct Reloader {
  NpkStore *st;
  int stop; /* the rewrites are done (atomic) */
  long bad; /* failed calls or wrong counts */
  long reads;
};

static void *reload_reader(void *arg) {
  Reloader *r = arg;
  NpkSession *s = NULL;
  if (npk_session_open(r->st, &s) != NPK_OK) {
    __atomic_fetch_add(&r->bad, 1, __ATOMIC_RELAXED);
    return NULL;
  }
  npk_set_busy_timeout(s, 20000);
  while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
    int n = 0, ok = npk_read_begin(s) == NPK_OK;
    ok = ok && npk_array_count(s, &n) == NPK_OK && n == 4;
    for (int i = 0; ok && i < n; i++) {
      NpkArrayInfo info;
      NpkView v;
      ok = npk_array_info_at(s, i, &info) == NPK_OK &&
           npk_view(s, info.name, &v) == NPK_OK && v.live_rows == START;
    }
    npk_read_end(s);
    if (!ok) __atomic_fetch_add(&r->bad, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&r->reads, 1, __ATOMIC_RELAXED);
  }
  npk_session_close(s);
  return NULL;
}

static void test_foreign_reloads(void) {
  static Reloader r;
  int64_t rows[START * WIDTH];
  uint64_t shape[2] = {START, WIDTH};
  unsigned char *cat;
  size_t catn;
  pthread_t th[3];
  struct timespec nap = {0, 3000000};
  char name[16];
  Tmp t;
  tu_tmp_init(&t);
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &r.st);
  CHECK(s != NULL);
  if (!s) return;
  for (int k = 0; k < START; k++) row_make(rows + k * WIDTH, 0, k, 0);
  for (int i = 0; i < 4; i++) {
    arr_name(name, i);
    CHECK_EQ(npk_save(s, name, NPK_INT64, 2, shape, rows), NPK_OK);
  }
  cat = tu_read_file(P(t.dir, TU_CATALOG), &catn);
  for (int k = 0; k < 3; k++)
    CHECK_EQ(pthread_create(&th[k], NULL, reload_reader, &r), 0);
  for (int k = 0; k < 40; k++) {
    CHECK_EQ(tu_catalog_replace(t.dir, cat, catn), 0);
    nanosleep(&nap, NULL);
  }
  __atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
  for (int k = 0; k < 3; k++) pthread_join(th[k], NULL);
  printf("    %ld reads\n", r.reads);
  CHECK_EQ(r.bad, 0);
  CHECK(r.reads > 0);
  free(cat);
  tu_close(r.st, s);
  tu_tmp_done(&t);
}

int main(void) {
  /* Few descriptors, so that the arrays' files take turns in them. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 64) {
    rl.rlim_cur = 64;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  RUN(test_readers_and_writers);
  RUN(test_info_outlived);
  RUN(test_read_one_catalog);
  RUN(test_foreign_reloads);
  return CTEST_END();
}
