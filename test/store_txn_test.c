/*
** store_txn_test.c — unit tests of the store engine's transactions:
** isolation between sessions, rollback, savepoints, locking and busy
** timeouts (in one process and across processes), crash recovery from the
** rollback journal, reading without changing anything (also where the
** process may not write), and I/O failures (a disk that stays full too).
**
** Build: gcc -std=c11 -D_GNU_SOURCE -Isrc test/store_txn_test.c <engine>
**        -lpthread
*/
#include <dirent.h>
#include <pthread.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "store_testutil.h"
#include "store_int.h"

/* Cap this process's address space at what it has mapped now and SPARE
** bytes more: 1 if it could. */
static int cap_address_space(uint64_t spare) {
  FILE *f = fopen("/proc/self/statm", "r");
  uint64_t pages = 0;
  struct rlimit rl;
  int ok = f && fscanf(f, "%" SCNu64, &pages) == 1;
  if (f) fclose(f);
  rl.rlim_cur = rl.rlim_max = pages * (uint64_t)sysconf(_SC_PAGESIZE) + spare;
  return ok && setrlimit(RLIMIT_AS, &rl) == 0;
}

/* Wait for child PID; it must have exited with status 0. */
static void check_child_ok(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    printf("  child status 0x%x\n", status);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* In a child process: a session on a store object of its own for the
** store at DIR, the child killed by an alarm after 20 s should the test
** hang; it exits with 10 or 11 when the store or session cannot be had. */
static NpkSession *child_session(const char *dir) {
  NpkStore *st = NULL;
  NpkSession *s = NULL;
  alarm(20);
  if (npk_store_open(dir, 0, &st, NULL) != NPK_OK) _exit(10);
  if (npk_session_open(st, &s) != NPK_OK) _exit(11);
  return s;
}

/* ---- the base store, written by hand ---------------------------------- */

/* a int32 (6,2); b float64 (4,) with row 2 deleted; c uint8 (3,3);
** s int64 (5,) stored as two segments. */
static void make_base(const char *dir, Model *m) {
  int32_t a[12];
  double b[4] = {0.5, -1.5, 2.5, 1e100};
  unsigned char c[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  int64_t s[5] = {11, 12, 13, 14, 15};
  unsigned char blive[4] = {1, 1, 0, 1};
  for (int i = 0; i < 12; i++) a[i] = i * 10 + 1;
  mkdir(dir, 0755);
  CatEntry e[4];
  memset(e, 0, sizeof e);
  e[0].name = "a"; e[0].ndim = 2; e[0].dims[0] = 6; e[0].dims[1] = 2;
  e[0].dtype = NPK_INT32; e[0].mtime = 1700000000000000ull;
  e[1].name = "b"; e[1].ndim = 1; e[1].dims[0] = 4;
  e[1].dtype = NPK_FLOAT64; e[1].mtime = 1700000000000001ull;
  e[2].name = "c"; e[2].ndim = 2; e[2].dims[0] = 3; e[2].dims[1] = 3;
  e[2].dtype = NPK_UINT8; e[2].mtime = 1700000000000002ull;
  e[3] = tu_seg_entry();
  Buf cat = {0}, bm = {0};
  tu_cat_build(&cat, e, 4, NULL);
  tu_write_buf(P(dir, TU_CATALOG), &cat);
  tu_write_file(P(dir, "data_a.npkd"), a, sizeof a);
  tu_write_file(P(dir, "data_b.npkd"), b, sizeof b);
  tu_bitmap_build(&bm, blive, 4);
  tu_write_buf(P(dir, "deleted_b.npkb"), &bm);
  tu_write_file(P(dir, "data_c.npkd"), c, sizeof c);
  tu_seg_write(dir);
  buf_free(&cat);
  buf_free(&bm);
  if (m) {
    uint64_t sa[2] = {6, 2}, sb[1] = {4}, sc[2] = {3, 3}, ss[1] = {5};
    memset(m, 0, sizeof *m);
    model_save(m, "a", NPK_INT32, 2, sa, a);
    model_save(m, "b", NPK_FLOAT64, 1, sb, b);
    model_delete(m, "b", 2);
    model_save(m, "c", NPK_UINT8, 2, sc, c);
    model_save(m, "s", NPK_INT64, 1, ss, s);
  }
}

static NpkSession *open_base(Tmp *t, NpkStore **st, Model *m) {
  tu_tmp_init(t);
  make_base(t->dir, m);
  return tu_open(t->dir, 0, st);
}

static void check_readback(const char *dir, NpkSession *w, int line);

/* The session's view (READ: inside its own read) equals the model. */
static int view_is(NpkSession *s, const Model *m, int read) {
  Buf got = {0}, want = {0};
  int rc = tu_dump(s, &got, read);
  model_dump(m, &want);
  int ok = rc == NPK_OK && buf_eq(&got, &want);
  if (!ok) {
    printf("  (dump rc %d)\n", rc);
    tu_dump_describe("got ", &got);
    tu_dump_describe("want", &want);
  }
  buf_free(&got);
  buf_free(&want);
  return ok;
}

/* Open DIR afresh (nothing else of it may be open in this process) and
** compare with M; also checks that no journal is left. */
static int disk_is(const char *dir, const Model *m) {
  NpkStore *st;
  NpkSession *s = tu_open(dir, 0, &st);
  int ok = s && view_is(s, m, 1);
  tu_close(st, s);
  if (tu_journal_hot(dir)) {
    printf("  journal left behind\n");
    ok = 0;
  }
  return ok;
}

/* End a case: close the store, check that its files hold M, and free M
** and the case's directory. */
static void close_and_check(NpkStore *st, NpkSession *s, Tmp *t, Model *m) {
  tu_close(st, s);
  CHECK(disk_is(t->dir, m));
  model_free(m);
  tu_tmp_done(t);
}

/* ---- the write operations used throughout ----------------------------- */

static const int32_t new_a[4] = {-1, -2, -3, -4};
static const int16_t new_n[4] = {100, 200, 300, 400};
static const float new_c[2] = {1.25f, -8.5f};
static const int64_t new_s[1] = {99};

/* Each operation applies its change to the model M (if not NULL) and to
** the session S (if not NULL), returning the engine's result. */
typedef int (*OpFn)(NpkSession *s, Model *m);

static int op_append(NpkSession *s, Model *m) {
  uint64_t sh[2] = {2, 2};
  if (m) model_append(m, "a", 2, new_a);
  return s ? npk_append(s, "a", NPK_INT32, 2, sh, new_a) : NPK_OK;
}
static int op_replace(NpkSession *s, Model *m) {
  uint64_t rows[2] = {5, 0};
  if (m) {
    model_replace(m, "a", 5, new_a);
    model_replace(m, "a", 0, new_a + 2);
  }
  return s ? npk_replace_rows(s, "a", rows, 2, new_a) : NPK_OK;
}
static int op_delete(NpkSession *s, Model *m) {
  uint64_t rows[2] = {3, 0};
  if (m) { model_delete(m, "b", 3); model_delete(m, "b", 0); }
  return s ? npk_delete_rows(s, "b", rows, 2) : NPK_OK;
}
static int op_delete_new_bitmap(NpkSession *s, Model *m) {
  uint64_t row = 1;
  if (m) model_delete(m, "c", 1);
  return s ? npk_delete_rows(s, "c", &row, 1) : NPK_OK;
}
static int op_save_new(NpkSession *s, Model *m) {
  uint64_t sh[2] = {2, 2};
  if (m) model_save(m, "n", NPK_INT16, 2, sh, new_n);
  return s ? npk_save(s, "n", NPK_INT16, 2, sh, new_n) : NPK_OK;
}
static int op_save_over(NpkSession *s, Model *m) {
  uint64_t sh[1] = {2};
  if (m) model_save(m, "c", NPK_FLOAT32, 1, sh, new_c);
  return s ? npk_save(s, "c", NPK_FLOAT32, 1, sh, new_c) : NPK_OK;
}
static int op_save_over_bm(NpkSession *s, Model *m) {
  uint64_t sh[1] = {2};
  if (m) model_save(m, "b", NPK_FLOAT32, 1, sh, new_c);
  return s ? npk_save(s, "b", NPK_FLOAT32, 1, sh, new_c) : NPK_OK;
}
static int op_drop(NpkSession *s, Model *m) {
  if (m) model_drop(m, "b");
  return s ? npk_drop(s, "b") : NPK_OK;
}
/* Drop "a", the first array: every entry after it moves. */
static int op_drop_first(NpkSession *s, Model *m) {
  if (m) model_drop(m, "a");
  return s ? npk_drop(s, "a") : NPK_OK;
}

static int op_clone(NpkSession *s, Model *m) {
  if (m) model_clone(m, "a", "d");
  return s ? npk_clone(s, "a", "d") : NPK_OK;
}
static int op_compact(NpkSession *s, Model *m) {
  if (m) model_compact(m, "b");
  return s ? npk_compact(s, "b") : NPK_OK;
}
static int op_reset(NpkSession *s, Model *m) {
  if (m) model_free(m);
  return s ? npk_reset(s) : NPK_OK;
}
static int op_seg_append(NpkSession *s, Model *m) {
  uint64_t sh[1] = {1};
  if (m) model_append(m, "s", 1, new_s);
  return s ? npk_append(s, "s", NPK_INT64, 1, sh, new_s) : NPK_OK;
}
static int op_seg_delete(NpkSession *s, Model *m) {
  uint64_t row = 1;
  if (m) model_delete(m, "s", 1);
  return s ? npk_delete_rows(s, "s", &row, 1) : NPK_OK;
}
/* Several changes in one explicit transaction. */
static int op_txn(NpkSession *s, Model *m) {
  int rc = s ? npk_begin(s) : NPK_OK;
  if (rc == NPK_OK) rc = op_append(s, m);
  if (rc == NPK_OK) rc = op_delete_new_bitmap(s, m);
  if (rc == NPK_OK) rc = op_save_new(s, m);
  if (rc == NPK_OK) rc = op_drop(s, m);
  if (!s) return rc;
  if (rc == NPK_OK) rc = npk_commit(s);
  if (rc != NPK_OK && npk_in_txn(s)) npk_rollback(s);
  return rc;
}
/* Changes rolled back: never changes the store. */
static int op_rolled_back(NpkSession *s, Model *m) {
  (void)m;
  if (!s) return NPK_OK;
  int rc = npk_begin(s);
  if (rc == NPK_OK) rc = op_append(s, NULL);
  if (rc == NPK_OK) rc = op_delete_new_bitmap(s, NULL);
  if (rc == NPK_OK) rc = op_seg_append(s, NULL);
  int rc2 = npk_in_txn(s) ? npk_rollback(s) : NPK_OK;
  return rc != NPK_OK ? rc : rc2;
}

typedef struct Op {
  const char *name;
  OpFn fn;
} Op;

static const Op ops[] = {
  {"append", op_append},
  {"replace", op_replace},
  {"delete", op_delete},
  {"delete_new_bitmap", op_delete_new_bitmap},
  {"save_new", op_save_new},
  {"save_over", op_save_over},
  {"compact", op_compact},
  {"save_over_bitmap", op_save_over_bm},
  {"clone", op_clone},
  {"drop", op_drop},
  {"reset", op_reset},
  {"seg_append", op_seg_append},
  {"seg_delete", op_seg_delete},
};
#define NOPS ((int)(sizeof ops / sizeof ops[0]))

/* ---- autocommit and isolation ---------------------------------------- */

static void test_autocommit(void) {
  Tmp t;
  Model m;
  NpkStore *st;
  NpkSession *a = open_base(&t, &st, &m), *b = NULL;
  CHECK(a != NULL);
  if (!a) { tu_tmp_done(&t); model_free(&m); return; }
  CHECK(view_is(a, &m, 1));
  CHECK_EQ(npk_session_open(st, &b), NPK_OK);
  CHECK_EQ(npk_in_txn(a), 0);
  for (int i = 0; i < NOPS; i++) {
    if (ops[i].fn == op_reset) continue;
    int rc = ops[i].fn(a, &m);
    if (rc != NPK_OK)
      printf("  op %s: %d %s\n", ops[i].name, rc, npk_errmsg(a));
    CHECK_EQ(rc, NPK_OK);
    CHECK_EQ(npk_in_txn(a), 0);
    /* Visible at once to another session. */
    CHECK(view_is(b, &m, 1));
  }
  npk_session_close(b);
  tu_close(st, a);
  CHECK(disk_is(t.dir, &m));
  model_free(&m);
  tu_tmp_done(&t);
}

static void isolation_case(int second_handle) {
  Tmp t;
  Model m, mm;
  NpkStore *st, *st2 = NULL;
  NpkSession *a = open_base(&t, &st, &m), *b = NULL;
  CHECK(a != NULL);
  if (!a) { tu_tmp_done(&t); model_free(&m); return; }
  st2 = st;
  if (second_handle) {
    char *err = NULL;
    CHECK_EQ(npk_store_open(t.dir, 0, &st2, &err), NPK_OK);
    free(err);
    CHECK(st2 == st);
  }
  CHECK_EQ(npk_session_open(st2, &b), NPK_OK);
  model_copy(&mm, &m);
  CHECK_EQ(npk_begin(a), NPK_OK);
  CHECK_EQ(npk_in_txn(a), 1);
  CHECK_EQ(npk_in_txn(b), 0);
  CHECK_EQ(op_append(a, &mm), NPK_OK);
  CHECK_EQ(op_replace(a, &mm), NPK_OK);
  CHECK_EQ(op_delete(a, &mm), NPK_OK);
  CHECK_EQ(op_delete_new_bitmap(a, &mm), NPK_OK);
  CHECK_EQ(op_save_new(a, &mm), NPK_OK);
  CHECK_EQ(op_drop(a, &mm), NPK_OK);
  CHECK_EQ(op_seg_append(a, &mm), NPK_OK);
  /* The writer sees its own changes, inside a read or not. */
  CHECK(view_is(a, &mm, 0));
  CHECK(view_is(a, &mm, 1));
  /* The other session sees the committed state only. */
  CHECK(view_is(b, &m, 1));
  CHECK_EQ(npk_read_begin(b), NPK_OK);
  NpkArrayInfo in;
  const void *p = NULL;
  uint64_t ph = 0;
  CHECK_EQ(npk_array_info(b, "a", &in), NPK_OK);
  CHECK_EQ(in.rows, 6);
  CHECK_EQ(npk_row_ptr(b, "a", 6, &p), NPK_RANGE);
  CHECK(npk_row_ptr(b, "a", 5, &p) == NPK_OK && p &&
        *(const int32_t *)p == 101);
  CHECK_EQ(npk_row_live(b, "b", 0), 1);
  CHECK_EQ(npk_row_live(b, "c", 1), 1);
  CHECK(npk_logical_to_physical(b, "b", 0, &ph) == NPK_OK && ph == 0);
  CHECK_EQ(npk_array_info(b, "n", &in), NPK_NOTFOUND);
  CHECK_EQ(npk_array_info(b, "b", &in), NPK_OK);
  CHECK_EQ(in.live_rows, 3);
  CHECK_EQ(npk_array_info(b, "s", &in), NPK_OK);
  CHECK_EQ(in.rows, 5);
  CHECK_EQ(in.segmented, 1);
  int n = 0;
  CHECK(npk_array_count(b, &n) == NPK_OK && n == 4);
  npk_read_end(b);
  /* ... and the writer's view in the same calls. */
  CHECK(npk_row_ptr(a, "a", 5, &p) == NPK_OK && p &&
        *(const int32_t *)p == -1);
  CHECK_EQ(npk_row_live(a, "c", 1), 0);
  CHECK(npk_logical_to_physical(a, "c", 1, &ph) == NPK_OK && ph == 2);
  CHECK_EQ(npk_array_info(a, "b", &in), NPK_NOTFOUND);
  CHECK(npk_array_count(a, &n) == NPK_OK && n == 4);     /* -b +n */
  CHECK_EQ(npk_commit(a), NPK_OK);
  CHECK_EQ(npk_in_txn(a), 0);
  CHECK(view_is(b, &mm, 1));
  CHECK(view_is(a, &mm, 1));
  npk_session_close(b);
  if (second_handle) npk_store_release(st2);
  tu_close(st, a);
  CHECK(disk_is(t.dir, &mm));
  model_free(&m);
  model_free(&mm);
  tu_tmp_done(&t);
}

/* Two sessions of one process share the store's open data files.  One
** appends to an array of no committed rows (its rows wait in the file's
** buffer); the other's read of the committed (empty) array must not make
** the shared file look shorter, or the writer's own reads fail and its
** commit loses the rows. */
static void test_isolation_shared_file(void) {
  Tmp t;
  NpkStore *st;
  NpkSession *a, *b;
  NpkView v;
  const void *p = NULL;
  int32_t rows[2] = {7, 8};
  uint64_t sh0[1] = {0}, sh2[1] = {2};
  tu_tmp_init(&t);
  a = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK(a != NULL);
  if (!a) return;
  CHECK_EQ(npk_save(a, "e", NPK_INT32, 1, sh0, NULL), NPK_OK);
  CHECK_EQ(npk_session_open(st, &b), NPK_OK);
  CHECK_EQ(npk_begin(a), NPK_OK);
  CHECK_EQ(npk_append(a, "e", NPK_INT32, 1, sh2, rows), NPK_OK);
  CHECK_EQ(npk_read_begin(b), NPK_OK);
  CHECK_EQ(npk_view(b, "e", &v), NPK_OK);
  CHECK_EQ(v.rows, 0);
  npk_read_end(b);
  CHECK_EQ(npk_view(a, "e", &v), NPK_OK);
  CHECK_EQ(v.rows, 2);
  CHECK(npk_row_ptr(a, "e", 1, &p) == NPK_OK && p && *(const int32_t *)p == 8);
  CHECK_EQ(npk_commit(a), NPK_OK);
  CHECK_EQ(npk_read_begin(b), NPK_OK);
  CHECK(npk_row_ptr(b, "e", 0, &p) == NPK_OK && p && *(const int32_t *)p == 7);
  npk_read_end(b);
  npk_session_close(b);
  tu_close(st, a);
  tu_tmp_done(&t);
}

static void test_isolation_same_store(void) { isolation_case(0); }
static void test_isolation_second_handle(void) { isolation_case(1); }

static void test_mtime_at_commit(void) {
  Tmp t;
  NpkStore *st;
  NpkSession *s = open_base(&t, &st, NULL);
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(op_append(s, NULL), NPK_OK);
  uint64_t t0 = tu_now_us();
  usleep(50000);
  CHECK_EQ(npk_commit(s), NPK_OK);
  uint64_t t1 = tu_now_us();
  NpkArrayInfo in;
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  CHECK_EQ(npk_array_info(s, "a", &in), NPK_OK);
  CHECK(in.modify_time >= t0 + 40000);
  CHECK(in.modify_time <= t1 + 1000000);
  /* Untouched arrays keep their time. */
  CHECK_EQ(npk_array_info(s, "c", &in), NPK_OK);
  CHECK_EQ(in.modify_time, 1700000000000002ll);
  npk_read_end(s);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* ---- rollback --------------------------------------------------------- */

static void test_rollback_each_op(void) {
  for (int i = 0; i < NOPS; i++) {
    Tmp t;
    Model m, mm;
    NpkStore *st;
    NpkSession *s = open_base(&t, &st, &m);
    if (!s) { CHECK(s != NULL); model_free(&m); tu_tmp_done(&t); continue; }
    Snap before, after;
    tu_snap(t.dir, &before);
    model_copy(&mm, &m);
    int f0 = ctest_case_failures;
    NpkStats s0, s1;
    npk_store_stats(st, &s0);
    CHECK_EQ(npk_begin(s), NPK_OK);
    CHECK_EQ(ops[i].fn(s, &mm), NPK_OK);
    CHECK(view_is(s, &mm, 0));
    CHECK_EQ(npk_rollback(s), NPK_OK);
    CHECK_EQ(npk_in_txn(s), 0);
    CHECK(view_is(s, &m, 1));
    npk_store_stats(st, &s1);
    CHECK_EQ(s1.rollbacks, s0.rollbacks + 1);
    CHECK_EQ(s1.commits, s0.commits);
    tu_snap(t.dir, &after);
    CHECK(tu_snap_eq(&before, &after));
    tu_snap_free(&after);
    /* The same change, committed this time. */
    CHECK_EQ(ops[i].fn(s, NULL), NPK_OK);
    CHECK(view_is(s, &mm, 1));
    tu_close(st, s);
    CHECK(disk_is(t.dir, &mm));
    if (ctest_case_failures != f0) printf("  (op %s)\n", ops[i].name);
    tu_snap_free(&before);
    model_free(&m);
    model_free(&mm);
    tu_tmp_done(&t);
  }
}

static void test_rollback_all_ops(void) {
  Tmp t;
  Model m, mm;
  NpkStore *st;
  NpkSession *s = open_base(&t, &st, &m);
  if (!s) { CHECK(s != NULL); model_free(&m); tu_tmp_done(&t); return; }
  Snap before, after;
  tu_snap(t.dir, &before);
  model_copy(&mm, &m);
  CHECK_EQ(npk_begin(s), NPK_OK);
  for (int i = 0; i < NOPS; i++) {
    if (ops[i].fn == op_reset) continue;
    int rc = ops[i].fn(s, &mm);
    if (rc != NPK_OK) printf("  op %s: %d\n", ops[i].name, rc);
    CHECK_EQ(rc, NPK_OK);
  }
  CHECK(view_is(s, &mm, 0));
  /* Several changes to the same rows, then a reset. */
  CHECK_EQ(op_replace(s, &mm), NPK_OK);
  CHECK_EQ(op_append(s, &mm), NPK_OK);
  CHECK_EQ(npk_compact(s, "a"), NPK_OK);
  model_compact(&mm, "a");
  CHECK(view_is(s, &mm, 0));
  CHECK_EQ(op_reset(s, &mm), NPK_OK);
  CHECK(view_is(s, &mm, 0));
  CHECK_EQ(op_save_new(s, &mm), NPK_OK);
  CHECK(view_is(s, &mm, 0));
  CHECK_EQ(npk_rollback(s), NPK_OK);
  CHECK(view_is(s, &m, 1));
  tu_snap(t.dir, &after);
  CHECK(tu_snap_eq(&before, &after));
  tu_snap_free(&after);
  tu_close(st, s);
  CHECK(disk_is(t.dir, &m));
  tu_snap_free(&before);
  model_free(&m);
  model_free(&mm);
  tu_tmp_done(&t);
}

static void test_session_close_rolls_back(void) {
  Tmp t;
  Model m;
  NpkStore *st;
  NpkSession *s = open_base(&t, &st, &m), *s2 = NULL;
  if (!s) { CHECK(s != NULL); model_free(&m); tu_tmp_done(&t); return; }
  Snap before, after;
  tu_snap(t.dir, &before);
  CHECK_EQ(npk_session_open(st, &s2), NPK_OK);
  CHECK_EQ(npk_begin(s2), NPK_OK);
  CHECK_EQ(op_append(s2, NULL), NPK_OK);
  CHECK_EQ(op_delete_new_bitmap(s2, NULL), NPK_OK);
  CHECK_EQ(op_save_new(s2, NULL), NPK_OK);
  npk_session_close(s2);
  CHECK(view_is(s, &m, 1));
  /* The lock is gone with the session: writing works. */
  npk_set_busy_timeout(s, 100);
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(op_replace(s, NULL), NPK_OK);
  CHECK_EQ(npk_rollback(s), NPK_OK);
  tu_snap(t.dir, &after);
  CHECK(tu_snap_eq(&before, &after));
  tu_snap_free(&after);
  tu_close(st, s);
  CHECK(disk_is(t.dir, &m));
  tu_snap_free(&before);
  model_free(&m);
  tu_tmp_done(&t);
}

static void test_misuse(void) {
  Tmp t;
  Model m;
  NpkStore *st;
  NpkSession *s = open_base(&t, &st, &m);
  if (!s) { CHECK(s != NULL); model_free(&m); tu_tmp_done(&t); return; }
  int lvl = -1;
  CHECK_EQ(npk_commit(s), NPK_MISUSE);
  CHECK_EQ(npk_in_txn(s), 0);
  CHECK_EQ(npk_savepoint_count(s), 0);
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(op_append(s, &m), NPK_OK);
  /* Levels that were never opened: whatever the result, nothing changes
  ** (SQLite may name levels opened before a table joined). */
  npk_rollback_to(s, 3);
  npk_release(s, 3);
  CHECK(view_is(s, &m, 0));
  CHECK_EQ(npk_in_txn(s), 1);
  CHECK_EQ(npk_savepoint(s, &lvl), NPK_OK);
  CHECK_EQ(lvl, 0);
  CHECK_EQ(npk_savepoint_count(s), 1);
  npk_rollback_to(s, 1);
  npk_release(s, 2);
  CHECK_EQ(npk_savepoint_count(s), 1);
  CHECK_EQ(npk_rollback_to(s, 0), NPK_OK);
  CHECK_EQ(npk_savepoint_count(s), 1);
  CHECK_EQ(npk_release(s, 0), NPK_OK);
  CHECK_EQ(npk_savepoint_count(s), 0);
  CHECK(view_is(s, &m, 0));
  CHECK_EQ(npk_commit(s), NPK_OK);
  CHECK_EQ(npk_commit(s), NPK_MISUSE);
  CHECK_EQ(npk_in_txn(s), 0);
  close_and_check(st, s, &t, &m);
}

/* ---- savepoints ------------------------------------------------------- */

static void test_savepoint_each_op(void) {
  for (int i = 0; i < NOPS; i++) {
    Tmp t;
    Model m, pre, post;
    NpkStore *st;
    NpkSession *s = open_base(&t, &st, &m);
    if (!s) { CHECK(s != NULL); model_free(&m); tu_tmp_done(&t); continue; }
    int f0 = ctest_case_failures, lvl = -1;
    CHECK_EQ(npk_begin(s), NPK_OK);
    /* A change before the savepoint, which must survive. */
    CHECK_EQ(op_replace(s, &m), NPK_OK);
    model_copy(&pre, &m);
    model_copy(&post, &m);
    CHECK_EQ(npk_savepoint(s, &lvl), NPK_OK);
    CHECK_EQ(lvl, 0);
    CHECK_EQ(ops[i].fn(s, &post), NPK_OK);
    CHECK(view_is(s, &post, 0));
    CHECK_EQ(npk_rollback_to(s, lvl), NPK_OK);
    CHECK(view_is(s, &pre, 0));
    /* The savepoint is still open: do it again and roll back again. */
    CHECK_EQ(ops[i].fn(s, NULL), NPK_OK);
    CHECK(view_is(s, &post, 0));
    CHECK_EQ(npk_rollback_to(s, lvl), NPK_OK);
    CHECK(view_is(s, &pre, 0));
    /* Once more, released: the change stays. */
    CHECK_EQ(ops[i].fn(s, NULL), NPK_OK);
    CHECK_EQ(npk_release(s, lvl), NPK_OK);
    CHECK(view_is(s, &post, 0));
    CHECK_EQ(npk_in_txn(s), 1);
    CHECK_EQ(npk_commit(s), NPK_OK);
    CHECK(view_is(s, &post, 1));
    tu_close(st, s);
    CHECK(disk_is(t.dir, &post));
    if (ctest_case_failures != f0) printf("  (op %s)\n", ops[i].name);
    model_free(&m);
    model_free(&pre);
    model_free(&post);
    tu_tmp_done(&t);
  }
}

static void test_savepoint_nested(void) {
  Tmp t;
  Model m, m0, m1, m2;
  NpkStore *st;
  NpkSession *s = open_base(&t, &st, &m), *b = NULL;
  if (!s) { CHECK(s != NULL); model_free(&m); tu_tmp_done(&t); return; }
  Model base;
  model_copy(&base, &m);
  CHECK_EQ(npk_session_open(st, &b), NPK_OK);
  int l0 = -1, l1 = -1, l2 = -1, l3 = -1;
  uint64_t sh1[1] = {1};
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(op_append(s, &m), NPK_OK);                     /* r1 */
  model_copy(&m0, &m);
  CHECK_EQ(npk_savepoint(s, &l0), NPK_OK);
  CHECK_EQ(op_seg_append(s, &m), NPK_OK);
  CHECK_EQ(op_delete(s, &m), NPK_OK);
  model_copy(&m1, &m);
  CHECK_EQ(npk_savepoint(s, &l1), NPK_OK);
  CHECK_EQ(op_replace(s, &m), NPK_OK);
  CHECK_EQ(op_delete_new_bitmap(s, &m), NPK_OK);
  CHECK_EQ(op_save_new(s, &m), NPK_OK);
  model_copy(&m2, &m);
  CHECK_EQ(npk_savepoint(s, &l2), NPK_OK);
  CHECK_EQ(op_drop(s, &m), NPK_OK);
  CHECK_EQ(op_compact(s, NULL), NPK_NOTFOUND);            /* b is gone */
  CHECK_EQ(npk_append(s, "n", NPK_INT16, 2, (uint64_t[]){1, 2}, new_n),
           NPK_OK);
  model_append(&m, "n", 1, new_n);
  CHECK_EQ(l0, 0);
  CHECK_EQ(l1, 1);
  CHECK_EQ(l2, 2);
  CHECK_EQ(npk_savepoint_count(s), 3);
  CHECK_EQ(npk_savepoint_count(b), 0);
  CHECK(view_is(s, &m, 0));
  /* Roll back the middle one: levels 1 and 2 undone, level 1 kept open. */
  CHECK_EQ(npk_rollback_to(s, l1), NPK_OK);
  CHECK_EQ(npk_savepoint_count(s), 2);
  CHECK(view_is(s, &m1, 0));
  npk_rollback_to(s, l2);           /* closed: must not undo anything */
  CHECK(view_is(s, &m1, 0));
  CHECK_EQ(npk_append(s, "s", NPK_INT64, 1, sh1, new_s), NPK_OK);
  model_append(&m1, "s", 1, new_s);
  CHECK_EQ(npk_savepoint(s, &l3), NPK_OK);
  CHECK_EQ(l3, 2);
  CHECK_EQ(op_clone(s, &m1), NPK_OK);
  CHECK_EQ(npk_release(s, l3), NPK_OK);
  CHECK(view_is(s, &m1, 0));
  /* Nothing visible to another session yet. */
  CHECK(view_is(b, &base, 1));
  CHECK_EQ(npk_rollback_to(s, l1), NPK_OK);
  model_free(&m1);
  {
    Model tmp;
    model_copy(&tmp, &m0);
    model_append(&tmp, "s", 1, new_s);
    uint64_t r[2] = {3, 0};
    model_delete(&tmp, "b", r[0]);
    model_delete(&tmp, "b", r[1]);
    m1 = tmp;
  }
  CHECK(view_is(s, &m1, 0));
  /* Release the outermost: everything since it is kept. */
  CHECK_EQ(npk_release(s, l0), NPK_OK);
  CHECK_EQ(npk_savepoint_count(s), 0);
  CHECK_EQ(npk_in_txn(s), 1);
  CHECK(view_is(s, &m1, 0));
  CHECK_EQ(npk_savepoint(s, &l3), NPK_OK);
  CHECK_EQ(l3, 0);
  CHECK_EQ(npk_release(s, l3), NPK_OK);
  CHECK_EQ(npk_commit(s), NPK_OK);
  CHECK(view_is(b, &m1, 1));
  npk_session_close(b);
  tu_close(st, s);
  CHECK(disk_is(t.dir, &m1));
  model_free(&m);
  model_free(&m0);
  model_free(&m1);
  model_free(&m2);
  model_free(&base);
  tu_tmp_done(&t);
}

/* ---- locking ---------------------------------------------------------- */

static void test_busy_writer(void) {
  Tmp t;
  Model m, mm;
  NpkStore *st;
  NpkSession *a = open_base(&t, &st, &m), *b = NULL;
  if (!a) { CHECK(a != NULL); model_free(&m); tu_tmp_done(&t); return; }
  CHECK_EQ(npk_session_open(st, &b), NPK_OK);
  npk_set_busy_timeout(b, 50);
  model_copy(&mm, &m);
  CHECK_EQ(npk_begin(a), NPK_OK);
  CHECK_EQ(op_append(a, &mm), NPK_OK);
  /* Explicit transaction in B. */
  double t0 = tu_mono_ms();
  int rcb = npk_begin(b), rcw = NPK_OK;
  if (rcb == NPK_OK) rcw = op_replace(b, NULL);
  double el = tu_mono_ms() - t0;
  CHECK(rcb == NPK_BUSY || rcw == NPK_BUSY);
  CHECK(el >= 45);
  CHECK(el < 3000);
  if (npk_in_txn(b)) CHECK_EQ(npk_rollback(b), NPK_OK);
  /* Autocommit writes in B. */
  OpFn fns[4] = {op_append, op_delete, op_save_new, op_drop};
  for (int i = 0; i < 4; i++) {
    t0 = tu_mono_ms();
    CHECK_EQ(fns[i](b, NULL), NPK_BUSY);
    el = tu_mono_ms() - t0;
    CHECK(el >= 45);
    CHECK(el < 3000);
    CHECK_EQ(npk_in_txn(b), 0);
  }
  /* B still reads the committed state. */
  CHECK(view_is(b, &m, 1));
  CHECK_EQ(npk_commit(a), NPK_OK);
  CHECK(view_is(b, &mm, 1));
  /* Now B can write. */
  CHECK_EQ(op_delete(b, &mm), NPK_OK);
  CHECK(view_is(a, &mm, 1));
  /* A zero timeout fails at once. */
  npk_set_busy_timeout(b, 0);
  CHECK_EQ(npk_begin(a), NPK_OK);
  CHECK_EQ(op_save_new(a, &mm), NPK_OK);
  t0 = tu_mono_ms();
  CHECK_EQ(op_seg_append(b, NULL), NPK_BUSY);
  CHECK(tu_mono_ms() - t0 < 1000);
  CHECK_EQ(npk_commit(a), NPK_OK);
  npk_session_close(b);
  tu_close(st, a);
  CHECK(disk_is(t.dir, &mm));
  model_free(&m);
  model_free(&mm);
  tu_tmp_done(&t);
}

static void test_commit_busy_reader(void) {
  Tmp t;
  Model m, mm;
  NpkStore *st;
  NpkSession *a = open_base(&t, &st, &m), *b = NULL;
  if (!a) { CHECK(a != NULL); model_free(&m); tu_tmp_done(&t); return; }
  CHECK_EQ(npk_session_open(st, &b), NPK_OK);
  npk_set_busy_timeout(a, 50);
  model_copy(&mm, &m);
  CHECK_EQ(npk_begin(a), NPK_OK);
  CHECK_EQ(op_append(a, &mm), NPK_OK);
  CHECK_EQ(op_replace(a, &mm), NPK_OK);
  CHECK_EQ(op_delete(a, &mm), NPK_OK);
  CHECK_EQ(npk_read_begin(b), NPK_OK);
  const void *p = NULL;
  CHECK_EQ(npk_row_ptr(b, "a", 5, &p), NPK_OK);
  int32_t old5[2];
  if (p) memcpy(old5, p, 8);
  double t0 = tu_mono_ms();
  CHECK_EQ(npk_commit(a), NPK_BUSY);
  double el = tu_mono_ms() - t0;
  CHECK(el >= 45);
  CHECK(el < 3000);
  /* The transaction is still open, with its changes. */
  CHECK_EQ(npk_in_txn(a), 1);
  CHECK(view_is(a, &mm, 0));
  /* The reader's row is as it was. */
  CHECK(p && memcmp(p, old5, 8) == 0 && old5[0] == 101);
  CHECK(view_is(b, &m, 1));
  npk_read_end(b);
  CHECK_EQ(npk_commit(a), NPK_OK);
  CHECK_EQ(npk_in_txn(a), 0);
  CHECK(view_is(b, &mm, 1));
  npk_session_close(b);
  tu_close(st, a);
  CHECK(disk_is(t.dir, &mm));
  model_free(&m);
  model_free(&mm);
  tu_tmp_done(&t);
}

/* A sync source that turns fsync off (a writer child's many commits). */
static int no_sync(void *arg) {
  (void)arg;
  return 0;
}

/* Rows read without the lock (npk_read_row_unlocked, or BATCH rows at once
** by npk_read_rows_unlocked) while another process replaces them in place,
** commit after commit, are never torn: a read is the rows of one commit,
** or is refused (NPK_BUSY) and made under the lock instead.  Each row is
** 4096 bytes of one value, a different one per commit; each copy pauses
** halfway for about half the time between two commits, so that many
** commits land inside a copy. */
static void unlocked_reads_whole(int batch) {
  enum { WORDS = 1024 };
  static int32_t rows[2 * WORDS], got[2 * WORDS];
  uint64_t shape[2] = {2, WORDS}, one = 1;
  long quick = 0, locked = 0, torn = 0;
  NpkStore *st;
  NpkSession *s;
  Tmp t;
  tu_tmp_init(&t);
  s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK(s != NULL);
  if (!s) return;
  CHECK_EQ(npk_save(s, "q", NPK_INT32, 2, shape, rows), NPK_OK);
  npk_set_busy_timeout(s, 10000);
  fflush(stdout);
  pid_t pid = fork();
  if (pid != 0) npk_test_copy_pause(400);
  if (pid == 0) {
    NpkSession *w = child_session(t.dir);
    npk_set_sync_source(w, no_sync, NULL);
    npk_set_busy_timeout(w, 10000);
    for (int32_t k = 1; k <= 600; k++) {
      for (int i = 0; i < WORDS; i++) rows[i] = k;
      if (npk_replace_rows(w, "q", &one, 1, rows) != NPK_OK) _exit(12);
      /* A pause in which the reader's state is current again. */
      usleep(1000);
    }
    npk_session_close(w);
    _exit(0);
  }
  for (;;) {
    NpkArrayInfo info;
    int found = 1, status, done = waitpid(pid, &status, WNOHANG) == pid;
    uint64_t seq, both[2] = {1, 1};
    int rc;
    if (batch) {
      NpkArrayInfo want = {.name = "q", .dtype = NPK_INT32, .ndim = 2};
      want.shape[0] = want.rows = want.live_rows = 2;
      want.shape[1] = WORDS;
      rc = npk_read_rows_unlocked(s, "q", &want, both, 2, got);
    } else {
      rc = npk_read_row_unlocked(s, "q", 1, got, sizeof got, &info, &found,
                                 &seq);
    }
    if (rc == NPK_OK) {
      quick++;
      CHECK_EQ(found, 1);
      for (int i = 1; i < (batch ? 2 * WORDS : WORDS); i++)
        if (got[i] != got[0]) {
          torn++;
          break;
        }
    } else {
      /* The lock's way, as a table's scan takes it: the state brought up
      ** to date, the data file's size checked. */
      NpkView view;
      CHECK_EQ(rc, NPK_BUSY);
      CHECK_EQ(npk_read_begin(s), NPK_OK);
      CHECK_EQ(npk_view(s, "q", &view), NPK_OK);
      npk_read_end(s);
      locked++;
    }
    if (done) {
      CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      break;
    }
  }
  npk_test_copy_pause(0);
  printf("    %ld rows read without the lock, %ld with it, %ld torn\n", quick,
         locked, torn);
  CHECK(quick > 0);
  CHECK(locked > 0);
  CHECK_EQ(torn, 0);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_unlocked_reads_whole(void) { unlocked_reads_whole(0); }
static void test_unlocked_rows_whole(void) { unlocked_reads_whole(1); }

/* One thread's reads of logical rows (rank_threads). */
typedef struct RankRead RankRead;
struct RankRead {
  NpkSession *s; /* the thread's own session */
  uint64_t k;    /* the logical row asked for */
  uint64_t want; /* the physical row it must give */
  int ok;        /* it did */
};

static void *rank_read(void *arg) {
  RankRead *r = arg;
  uint64_t row = UINT64_MAX;
  NpkArrayInfo info;
  int32_t got = -1;
  int rc;
  /* Without the lock first (row values are their physical numbers), then
  ** under it. */
  rc = npk_array_info(r->s, "a", &info);
  if (rc == NPK_OK)
    rc = npk_read_rows_unlocked(r->s, "a", &info, &r->k, 1, &got);
  r->ok = (rc == NPK_BUSY || (rc == NPK_OK && got == (int32_t)r->want)) &&
          npk_read_begin(r->s) == NPK_OK &&
          npk_logical_to_physical(r->s, "a", r->k, &row) == NPK_OK &&
          row == r->want;
  npk_read_end(r->s);
  return NULL;
}

/* Sessions of one store in several threads map logical rows through the
** same committed bitmap at once, each the first to use its rank index
** after a commit deleted rows, without the lock (npk_read_rows_unlocked)
** and under it: the index is built once, under its mutex, and every thread
** gets the right row (under ThreadSanitizer, no race on the index; each
** build pauses between superblocks so that they meet). */
static void test_rank_threads(void) {
  enum { N = 6000, T = 4 };
  static int32_t v[N];
  uint64_t shape[1] = {N};
  NpkSession *rs[T];
  NpkStore *st;
  Tmp t;
  tu_tmp_init(&t);
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK(s != NULL);
  if (!s) return;
  for (int i = 0; i < N; i++) v[i] = i;
  CHECK_EQ(npk_save(s, "a", NPK_INT32, 1, shape, v), NPK_OK);
  for (int i = 0; i < T; i++) CHECK_EQ(npk_session_open(st, &rs[i]), NPK_OK);
  for (uint64_t round = 0; round < 6; round++) {
    /* Physical rows 0..round deleted: logical k is physical k + round + 1. */
    pthread_t th[T];
    RankRead r[T];
    CHECK_EQ(npk_delete_rows(s, "a", &round, 1), NPK_OK);
    npk_test_copy_pause(200);
    for (int i = 0; i < T; i++) {
      r[i].s = rs[i];
      r[i].k = (uint64_t)(N - 10 - 700 * i) - round;
      r[i].want = r[i].k + round + 1;
      CHECK_EQ(pthread_create(&th[i], NULL, rank_read, &r[i]), 0);
    }
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    npk_test_copy_pause(0);
    for (int i = 0; i < T; i++) CHECK(r[i].ok);
  }
  for (int i = 0; i < T; i++) npk_session_close(rs[i]);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* npk_own_commits: the counts a session's own commits raised, one run of
** them while no other session commits between; another session's commit
** starts a new run after it, and a rollback that changed no file raises
** nothing.  (A connection follows a held state through a run only when the
** run starts at it.) */
static void test_own_commits(void) {
  uint64_t shape[2] = {4, 2}, one = 1, from, to, from2, to2, bfrom, bto;
  int32_t rows[8] = {0}, row[2] = {7, 7};
  NpkStore *st;
  NpkSession *s, *b = NULL;
  Tmp t;
  tu_tmp_init(&t);
  s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK(s != NULL);
  if (!s) return;
  CHECK_EQ(npk_session_open(st, &b), NPK_OK);
  CHECK_EQ(npk_save(s, "a", NPK_INT32, 2, shape, rows), NPK_OK);
  npk_own_commits(s, &from, &to);
  CHECK_EQ(npk_own_commits(s, &from, &to), 0);
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(npk_replace_rows(s, "a", &one, 1, row), NPK_OK);
  CHECK_EQ(npk_rollback(s), NPK_OK);
  CHECK_EQ(npk_own_commits(s, &from, &to), 0);
  CHECK_EQ(npk_replace_rows(s, "a", &one, 1, row), NPK_OK);
  CHECK_EQ(npk_replace_rows(s, "a", &one, 1, row), NPK_OK);
  CHECK_EQ(npk_own_commits(s, &from, &to), 1);
  CHECK(to >= from + 2);
  CHECK_EQ(npk_own_commits(b, &bfrom, &bto), 0);
  CHECK_EQ(npk_replace_rows(s, "a", &one, 1, row), NPK_OK);
  CHECK_EQ(npk_replace_rows(b, "a", &one, 1, row), NPK_OK);
  CHECK_EQ(npk_replace_rows(s, "a", &one, 1, row), NPK_OK);
  CHECK_EQ(npk_own_commits(b, &bfrom, &bto), 1);
  CHECK_EQ(npk_own_commits(s, &from2, &to2), 1);
  CHECK(bfrom > to);
  CHECK_EQ(from2, bto);
  CHECK(to2 > from2);
  npk_session_close(b);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* Every row of array "a" (N rows of W int32) holds pattern SEED. */
static int spill_rows_are(NpkSession *s, uint64_t n, uint64_t w, uint64_t seed) {
  size_t bytes = (size_t)(n * w * 4);
  unsigned char *got = malloc(bytes), *want = malloc(bytes);
  uint64_t *rows = malloc(n * sizeof *rows);
  int same = 0;
  if (got && want && rows) {
    for (uint64_t i = 0; i < n; i++) rows[i] = i;
    int locked = !npk_in_txn(s) && npk_read_begin(s) == NPK_OK;
    tu_fill(want, bytes, seed);
    same = npk_copy_rows(s, "a", rows, n, got) == NPK_OK &&
           memcmp(got, want, bytes) == 0;
    if (locked) npk_read_end(s);
  }
  free(got);
  free(want);
  free(rows);
  return same;
}

/* Mappings of unnamed files of DIR in this process: the spill files. */
static int spill_mappings(const char *dir) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[4096];
  int n = 0;
  while (f && fgets(line, sizeof line, f))
    if (strstr(line, dir) && strstr(line, "(deleted)")) n++;
  if (f) fclose(f);
  return n;
}

/* Replace rows [0, N) of "a" with pattern SEED. */
static int spill_replace(NpkSession *s, uint64_t n, uint64_t w, uint64_t seed) {
  size_t bytes = (size_t)(n * w * 4);
  unsigned char *data = malloc(bytes);
  uint64_t *rows = malloc(n * sizeof *rows);
  int rc = NPK_NOMEM;
  if (data && rows) {
    for (uint64_t i = 0; i < n; i++) rows[i] = i;
    tu_fill(data, bytes, seed);
    rc = npk_replace_rows(s, "a", rows, n, data);
  }
  free(data);
  free(rows);
  return rc;
}

/* A store in T holding "a", N rows of W int32 of pattern 1, its replaced
** rows spilling past BUDGET bytes; NULL if it could not be made. */
static NpkSession *spill_store(Tmp *t, NpkStore **pst, uint64_t n, uint64_t w,
                               const char *budget) {
  uint64_t shape[2] = {n, w};
  size_t bytes = (size_t)(n * w * 4);
  unsigned char *data = malloc(bytes);
  NpkSession *s;
  tu_tmp_init(t);
  s = tu_open(t->dir, NPK_OPEN_CREATE, pst);
  CHECK(s != NULL && data != NULL);
  if (s && data) {
    tu_fill(data, bytes, 1);
    CHECK_EQ(npk_save(s, "a", NPK_INT32, 2, shape, data), NPK_OK);
  }
  free(data);
  if (s && !data) {
    tu_close(*pst, s);
    s = NULL;
  }
  setenv("NUMPACK_TEST_SPILL_BYTES", budget, 1);
  return s;
}

/* Replaced rows beyond the memory budget (BUDGET bytes) lie in an unnamed
** spill file: read back inside the transaction, undone by a savepoint and
** by ROLLBACK, written by COMMIT, and never a file of the store.  N rows of
** W int32: small rows fill one chunk in memory and the next ones in one
** region of the file; rows of 24 MB, with no budget, span two regions. */
static void spill_case(uint64_t n, uint64_t w, const char *budget) {
  NpkStore *st;
  NpkSession *s;
  Snap before, during;
  int level;
  Tmp t;
  if (!(s = spill_store(&t, &st, n, w, budget))) goto out;
  tu_snap(t.dir, &before);
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(spill_replace(s, n, w, 2), NPK_OK);
  CHECK(spill_rows_are(s, n, w, 2));
  CHECK_EQ(npk_savepoint(s, &level), NPK_OK);
  CHECK_EQ(spill_replace(s, n, w, 3), NPK_OK);
  CHECK(spill_rows_are(s, n, w, 3));
  CHECK_EQ(npk_rollback_to(s, level), NPK_OK);
  CHECK(spill_rows_are(s, n, w, 2));
  CHECK(spill_mappings(t.dir) > 0);
  /* The spill file has no name: the store's files are as they were. */
  tu_snap(t.dir, &during);
  CHECK(tu_snap_eq(&before, &during));
  tu_snap_free(&during);
  CHECK_EQ(npk_commit(s), NPK_OK);
  CHECK_EQ(spill_mappings(t.dir), 0);
  tu_close(st, s);
  s = tu_open(t.dir, 0, &st);
  CHECK(s != NULL);
  if (!s) goto snap;
  CHECK(spill_rows_are(s, n, w, 2));
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(spill_replace(s, n, w, 4), NPK_OK);
  CHECK_EQ(npk_rollback(s), NPK_OK);
  CHECK(spill_rows_are(s, n, w, 2));
  CHECK_EQ(tu_leftovers(t.dir), 0);
  tu_close(st, s);
snap:
  tu_snap_free(&before);
out:
  unsetenv("NUMPACK_TEST_SPILL_BYTES");
  tu_tmp_done(&t);
}

static void test_spill_small_rows(void) { spill_case(12288, 64, "1048576"); }
static void test_spill_regions(void) { spill_case(3, 6u << 20, "0"); }

/* The spill file's blocks cannot be had (an I/O error, a full disk): the
** replacement fails naming the store, and the array is as it was. */
static void test_spill_faults(void) {
  static const struct {
    const char *kind;
    int err, code;
  } f[] = {{"write", EIO, NPK_IOERR}, {"full", ENOSPC, NPK_FULL}};
  uint64_t n = 8192, w = 64;
  NpkStore *st;
  NpkSession *s;
  Tmp t;
  if (!(s = spill_store(&t, &st, n, w, "0"))) goto out;
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    npk_test_fault(f[i].kind, 1, f[i].err);
    CHECK_EQ(spill_replace(s, n, w, 2), f[i].code);
    CHECK(strstr(npk_errmsg(s), "temporary file") != NULL);
    CHECK(strstr(npk_errmsg(s), t.dir) != NULL);
    npk_test_fault(NULL, 0, 0);
    CHECK(spill_rows_are(s, n, w, 1));
  }
  CHECK_EQ(tu_leftovers(t.dir), 0);
  tu_close(st, s);
out:
  unsetenv("NUMPACK_TEST_SPILL_BYTES");
  tu_tmp_done(&t);
}

/* Cut the spill file of store DIR (this process's unnamed file there) to
** nothing, as a disk that fails to give its pages back would: every page
** of it read or written afterwards faults.  1 if one was found. */
static int spill_lose_pages(const char *dir) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *de;
  int cut = 0;
  while (d && (de = readdir(d)) != NULL) {
    char link[300], target[4096];
    ssize_t n;
    snprintf(link, sizeof link, "/proc/self/fd/%s", de->d_name);
    n = readlink(link, target, sizeof target - 1);
    if (n <= 0) continue;
    target[n] = 0;
    if (strstr(target, dir) && strstr(target, "(deleted)") &&
        ftruncate(atoi(de->d_name), 0) == 0)
      cut++;
  }
  if (d) closedir(d);
  return cut == 1;
}

/* Pages of the spill file lost after the rows were put there (a disk error
** reading them back), or before they are put again: the fault is absorbed,
** not SIGBUS.  Reading the rows, replacing them again and committing each
** fail with NPK_IOERR naming the array, also after the fault (its page of
** zeros must not be taken for rows); ROLLBACK leaves the array as it was,
** and the next transaction spills afresh. */
static void test_spill_lost_pages(void) {
  uint64_t n = 8192, w = 64, rows[1] = {5};
  int32_t one[64] = {0};
  uint64_t *all = malloc(n * sizeof *all);
  unsigned char *got = malloc((size_t)(n * w * 4));
  NpkStore *st;
  NpkSession *s;
  Tmp t;
  if (!(s = spill_store(&t, &st, n, w, "0"))) goto out;
  CHECK(all != NULL && got != NULL);
  if (!all || !got) goto close;
  for (uint64_t i = 0; i < n; i++) all[i] = i;
  for (int write_first = 0; write_first < 2; write_first++) {
    CHECK_EQ(npk_begin(s), NPK_OK);
    CHECK_EQ(spill_replace(s, n, w, 2), NPK_OK);
    CHECK(spill_lose_pages(t.dir));
    if (write_first) CHECK_EQ(spill_replace(s, n, w, 3), NPK_IOERR);
    else CHECK_EQ(npk_copy_rows(s, "a", all, n, got), NPK_IOERR);
    CHECK(strstr(npk_errmsg(s), "\"a\"") != NULL);
    CHECK(strstr(npk_errmsg(s), "disk error") != NULL);
    CHECK_EQ(npk_copy_rows(s, "a", all, n, got), NPK_IOERR);
    CHECK_EQ(npk_replace_rows(s, "a", rows, 1, one), NPK_IOERR);
    CHECK_EQ(npk_commit(s), NPK_IOERR);
    CHECK(strstr(npk_errmsg(s), "rolled back") != NULL);
    CHECK_EQ(npk_rollback(s), NPK_OK);
    CHECK(spill_rows_are(s, n, w, 1));
  }
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(spill_replace(s, n, w, 4), NPK_OK);
  CHECK_EQ(npk_commit(s), NPK_OK);
  CHECK(spill_rows_are(s, n, w, 4));
  CHECK_EQ(tu_leftovers(t.dir), 0);
close:
  tu_close(st, s);
out:
  free(all);
  free(got);
  unsetenv("NUMPACK_TEST_SPILL_BYTES");
  tu_tmp_done(&t);
}

/* A page of a transaction's spill file lost concerns that transaction
** only: another session reading the store in the meantime (its mark taken
** before the fault, checked after) goes on, where it failed with
** NPK_CORRUPT blaming a data file shortened by another program; the
** writer's own read of one row, with its mark, still fails with NPK_IOERR;
** its count does not go back when the transaction ends, and a read it
** marks afterwards goes on. */
static void test_spill_lost_pages_other_session(void) {
  uint64_t n = 8192, w = 64, five[1] = {5};
  int32_t row[64];
  const void *p;
  NpkStore *st;
  NpkSession *s, *r = NULL;
  uint64_t rmark, wmark;
  Tmp t;
  if (!(s = spill_store(&t, &st, n, w, "0"))) goto out;
  CHECK_EQ(npk_session_open(st, &r), NPK_OK);
  if (!r) goto close;
  CHECK_EQ(npk_read_begin(r), NPK_OK);
  rmark = npk_map_faults(r);
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(spill_replace(s, n, w, 2), NPK_OK);
  CHECK(spill_lose_pages(t.dir));
  wmark = npk_map_faults(s);
  CHECK_EQ(npk_row_ptr(s, "a", 5, &p), NPK_OK);
  memcpy(row, p, sizeof row);
  CHECK_EQ(npk_map_check(s, wmark, "a"), NPK_IOERR);
  CHECK_HAS(npk_errmsg(s), "disk error");
  CHECK_EQ(npk_copy_rows(r, "a", five, 1, row), NPK_OK);
  CHECK_EQ(npk_map_check(r, rmark, "a"), NPK_OK);
  npk_read_end(r);
  CHECK_EQ(npk_rollback(s), NPK_OK);
  /* The writer's count did not go back when its transaction ended. */
  CHECK(npk_map_faults(s) > wmark);
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  wmark = npk_map_faults(s);
  CHECK_EQ(npk_copy_rows(s, "a", five, 1, row), NPK_OK);
  CHECK_EQ(npk_map_check(s, wmark, "a"), NPK_OK);
  npk_read_end(s);
  CHECK(spill_rows_are(r, n, w, 1));
close:
  if (r) npk_session_close(r);
  tu_close(st, s);
out:
  unsetenv("NUMPACK_TEST_SPILL_BYTES");
  tu_tmp_done(&t);
}

/* Pages of the spill file lost before a COMMIT whose address space has no
** room to map the data file for writing, so that it writes the rows with
** pwrite, for which a lost page of the source is EFAULT: the commit still
** fails naming the array and the disk error (not "Bad address" writing the
** data file), and the store is as before.  In a child, whose address space
** is capped. */
static void test_spill_lost_pages_pwrite(void) {
  enum { N = 12 << 20, R = 300000 };
  Tmp t;
  tu_tmp_init(&t);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    NpkStore *st = NULL;
    NpkSession *s = NULL;
    uint64_t sh[1] = {N}, *rows = malloc(R * sizeof *rows);
    uint64_t ends[2] = {0, N - 1};
    int32_t *v = calloc(N, sizeof *v), got[2] = {1, 1};
    const void *row;
    alarm(60);
    if (!v || !rows) _exit(10);
    if (npk_store_open(t.dir, NPK_OPEN_CREATE, &st, NULL) != NPK_OK) _exit(11);
    if (npk_session_open(st, &s) != NPK_OK) _exit(12);
    if (npk_save(s, "big", NPK_INT32, 1, sh, v) != NPK_OK) _exit(13);
    for (uint64_t i = 0; i < R; i++) {
      rows[i] = i;
      v[i] = 7;
    }
    setenv("NUMPACK_TEST_SPILL_BYTES", "0", 1);
    if (npk_begin(s) != NPK_OK) _exit(14);
    if (npk_replace_rows(s, "big", rows, R, v) != NPK_OK) _exit(15);
    free(v);
    free(rows);
    /* The read mapping of the whole file, which the commit reads the old
    ** rows through, made before the cap. */
    if (npk_row_ptr(s, "big", N - 1, &row) != NPK_OK) _exit(16);
    if (!spill_lose_pages(t.dir)) _exit(17);
    /* Room for 40 MB more: not for a writable mapping of the file (60). */
    if (!cap_address_space(40u << 20)) _exit(18);
    if (npk_commit(s) != NPK_IOERR) _exit(20);
    printf("  %s\n", npk_errmsg(s));
    if (!strstr(npk_errmsg(s), "\"big\"") ||
        !strstr(npk_errmsg(s), "disk error"))
      _exit(21);
    if (npk_in_txn(s)) npk_rollback(s);
    if (tu_journal_hot(t.dir)) _exit(22);
    if (npk_read_begin(s) != NPK_OK) _exit(23);
    if (npk_copy_rows(s, "big", ends, 2, got) != NPK_OK) _exit(24);
    npk_read_end(s);
    if (got[0] != 0 || got[1] != 0) _exit(25);
    fflush(stdout);
    _exit(0);
  }
  check_child_ok(pid);
  tu_tmp_done(&t);
}

/* On a file system that copies on write (btrfs here, as NUMPACK_TEST_FSTYPE
** makes the engine believe), blocks allocated ahead are not the ones a
** store into a mapping writes: a full disk would kill the process with
** SIGBUS.  Replaced rows then stay in memory, and the transaction works as
** on any other file system. */
static void test_spill_not_on_cow(void) {
  uint64_t n = 8192, w = 64;
  NpkStore *st;
  NpkSession *s;
  Tmp t;
  if (!(s = spill_store(&t, &st, n, w, "0"))) goto out;
  setenv("NUMPACK_TEST_FSTYPE", "0x9123683E", 1);
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(spill_replace(s, n, w, 2), NPK_OK);
  CHECK_EQ(spill_mappings(t.dir), 0);
  CHECK(spill_rows_are(s, n, w, 2));
  CHECK_EQ(npk_commit(s), NPK_OK);
  unsetenv("NUMPACK_TEST_FSTYPE");
  CHECK(spill_rows_are(s, n, w, 2));
  /* ext4, which the machine has: the rows spill. */
  setenv("NUMPACK_TEST_FSTYPE", "0xEF53", 1);
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(spill_replace(s, n, w, 3), NPK_OK);
  CHECK(spill_mappings(t.dir) > 0);
  CHECK_EQ(npk_rollback(s), NPK_OK);
  CHECK(spill_rows_are(s, n, w, 2));
  CHECK_EQ(tu_leftovers(t.dir), 0);
  tu_close(st, s);
out:
  unsetenv("NUMPACK_TEST_FSTYPE");
  unsetenv("NUMPACK_TEST_SPILL_BYTES");
  tu_tmp_done(&t);
}

/* Rolling back to a savepoint puts a row replaced twice back to its first
** replacement even when no memory is left: the undo takes no allocation. */
static void test_undo_replaced_twice_oom(void) {
  uint64_t shape[2] = {4, 2}, one = 1;
  int32_t rows[8] = {0}, b[2] = {5, 5}, c[2] = {9, 9}, got[2] = {0, 0};
  NpkStore *st;
  NpkSession *s;
  int level;
  Tmp t;
  tu_tmp_init(&t);
  s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK(s != NULL);
  if (!s) return;
  CHECK_EQ(npk_save(s, "a", NPK_INT32, 2, shape, rows), NPK_OK);
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(npk_replace_rows(s, "a", &one, 1, b), NPK_OK);
  CHECK_EQ(npk_savepoint(s, &level), NPK_OK);
  CHECK_EQ(npk_replace_rows(s, "a", &one, 1, c), NPK_OK);
  npk_test_fault("oom", 1, ENOMEM);
  npk_rollback_to(s, level);
  npk_test_fault(NULL, 0, 0);
  CHECK_EQ(npk_copy_rows(s, "a", &one, 1, got), NPK_OK);
  CHECK(got[0] == 5 && got[1] == 5);
  CHECK_EQ(npk_rollback(s), NPK_OK);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* Locks between processes: a writer in a child blocks the parent's writes
** but not its reads; a reader in a child blocks the parent's commit. */
static void test_two_processes(void) {
  Tmp t;
  Model m, mm;
  tu_tmp_init(&t);
  make_base(t.dir, &m);
  model_copy(&mm, &m);
  model_append(&mm, "a", 2, new_a);
  for (int mode = 0; mode < 2; mode++) {
    int up[2], down[2];
    CHECK(pipe(up) == 0 && pipe(down) == 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      char c = 0;
      close(up[0]);
      close(down[1]);
      NpkSession *s = child_session(t.dir);
      if (mode == 0) {
        if (npk_begin(s) != NPK_OK) _exit(12);
        if (op_append(s, NULL) != NPK_OK) _exit(13);
      } else {
        if (npk_read_begin(s) != NPK_OK) _exit(14);
      }
      if (write(up[1], "r", 1) != 1) _exit(15);
      if (read(down[0], &c, 1) != 1) _exit(16);
      if (mode == 0) {
        if (npk_commit(s) != NPK_OK) _exit(17);
      } else {
        npk_read_end(s);
      }
      npk_session_close(s);
      _exit(0);
    }
    close(up[1]);
    close(down[0]);
    char c = 0;
    CHECK_EQ(read(up[0], &c, 1), 1);
    NpkStore *st;
    NpkSession *s = tu_open(t.dir, 0, &st);
    if (s) {
      npk_set_busy_timeout(s, 50);
      if (mode == 0) {
        double t0 = tu_mono_ms();
        CHECK_EQ(op_delete(s, NULL), NPK_BUSY);
        CHECK(tu_mono_ms() - t0 >= 45);
        CHECK(view_is(s, &m, 1));
      } else {
        CHECK_EQ(npk_begin(s), NPK_OK);
        CHECK_EQ(op_append(s, NULL), NPK_OK);
        double t0 = tu_mono_ms();
        CHECK_EQ(npk_commit(s), NPK_BUSY);
        CHECK(tu_mono_ms() - t0 >= 45);
        CHECK_EQ(npk_in_txn(s), 1);
      }
    }
    CHECK_EQ(write(down[1], "c", 1), 1);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
      printf("  child exit %d\n", WEXITSTATUS(status));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (s) {
      if (mode == 0) {
        /* The other process's commit is seen by a store already open. */
        CHECK(view_is(s, &mm, 1));
      } else {
        CHECK_EQ(npk_commit(s), NPK_OK);
        model_append(&mm, "a", 2, new_a);
        CHECK(view_is(s, &mm, 1));
      }
    }
    tu_close(st, s);
    close(up[0]);
    close(down[1]);
  }
  CHECK(disk_is(t.dir, &mm));
  model_free(&m);
  model_free(&mm);
  tu_tmp_done(&t);
}

/* ---- crash recovery --------------------------------------------------- */

/* The changes of one transaction: append, replace and delete in "a" (its
** first bitmap), deletions in "b" (an existing bitmap), a new array, and
** a dropped one.  Leaves the transaction open. */
static int crash_txn(NpkSession *s, Model *m) {
  uint64_t r = 3;
  int rc = s ? npk_begin(s) : NPK_OK;
  if (rc == NPK_OK) rc = op_append(s, m);
  if (rc == NPK_OK) rc = op_replace(s, m);
  if (rc == NPK_OK) {
    if (m) model_delete(m, "a", 3);
    rc = s ? npk_delete_rows(s, "a", &r, 1) : NPK_OK;
  }
  if (rc == NPK_OK) rc = op_delete(s, m);
  if (rc == NPK_OK) rc = op_save_new(s, m);
  if (rc == NPK_OK) {
    if (m) model_drop(m, "c");
    rc = s ? npk_drop(s, "c") : NPK_OK;
  }
  return rc;
}

/* Compare the store in DIR (opened afresh) with BEFORE and AFTER.  Readers
** first: they change nothing on disk, and see BEFORE (no journal, or one
** never completely written) or are refused with NPK_BUSY while a journal is
** hot.  Then a write transaction recovers the store, which must be exactly
** BEFORE or AFTER, with no journal left.  Returns 0 (before), 1 (after) or
** -1; a second open must see the same, and writes must work. */
static int check_recovered(const char *dir, const Model *before,
                           const Model *after, const char *label, int step) {
  Buf got = {0}, again = {0}, wb = {0}, wa = {0};
  Snap s0, s1;
  NpkStore *st;
  NpkSession *s;
  int hot = tu_journal_hot(dir), lock = tu_exists(P(dir, TU_LOCK));
  model_dump(before, &wb);
  model_dump(after, &wa);
  char *was = tu_listing(dir);
  tu_snap(dir, &s0);
  for (int ro = 1; ro >= 0; ro--) {
    s = tu_open(dir, ro ? NPK_OPEN_READONLY : 0, &st);
    if (s) {
      int rc = tu_dump(s, &got, 1);
      if (rc == NPK_OK) {
        CHECK(buf_eq(&got, &wb) || (!hot && buf_eq(&got, &wa)));
      } else {
        CHECK_EQ(rc, NPK_BUSY);
        CHECK(hot);
        CHECK(strstr(npk_errmsg(s), "has an interrupted commit") != NULL);
        /* A read-only opening says it cannot be the one to recover. */
        CHECK((strstr(npk_errmsg(s), "read-only opening") != NULL) == ro);
      }
      buf_free(&got);
    }
    if (ro) tu_close(st, s);
  }
  tu_snap(dir, &s1);
  if (!tu_snap_eq(&s0, &s1) || !tu_listing_same(dir, was) ||
      tu_exists(P(dir, TU_LOCK)) != lock) {
    printf("  %s step %d: reading changed the directory\n", label, step);
    ctest_case_failures++;
  }
  tu_snap_free(&s0);
  tu_snap_free(&s1);
  /* The next write transaction plays the journal back. */
  if (s) {
    CHECK_EQ(npk_begin(s), NPK_OK);
    CHECK_EQ(npk_rollback(s), NPK_OK);
    CHECK_EQ(tu_dump(s, &got, 1), NPK_OK);
  }
  tu_close(st, s);
  if (tu_journal_hot(dir)) {
    printf("  %s step %d: journal left after a write\n", label, step);
    ctest_case_failures++;
  }
  int res = buf_eq(&got, &wb) ? 0 : buf_eq(&got, &wa) ? 1 : -1;
  if (res < 0) {
    printf("  %s step %d: neither the before nor the after state\n", label,
           step);
    tu_dump_describe("got   ", &got);
    tu_dump_describe("before", &wb);
    tu_dump_describe("after ", &wa);
    ctest_case_failures++;
  }
  /* Nothing of the interrupted commit is left lying around. */
  int left = tu_leftovers(dir);
  if (left != 0) {
    printf("  %s step %d: %d leftover files after recovery\n", label, step,
           left);
    ctest_case_failures++;
  }
  /* Recovery happens once: a second open sees the same. */
  s = tu_open(dir, 0, &st);
  if (s) {
    CHECK_EQ(tu_dump(s, &again, 1), NPK_OK);
    CHECK(buf_eq(&again, &got));
    uint64_t sh[1] = {1};
    CHECK_EQ(npk_save(s, "z", NPK_INT64, 1, sh, new_s), NPK_OK);
  }
  tu_close(st, s);
  buf_free(&got);
  buf_free(&again);
  buf_free(&wb);
  buf_free(&wa);
  return res;
}

/* A fresh base store in T, changed by AFTER_BASE if not NULL; BEFORE its
** model, AFTER the model once FN has run. */
static void case_start(Tmp *t, Model *before, Model *after, OpFn fn,
                       void (*after_base)(const char *dir)) {
  tu_tmp_init(t);
  make_base(t->dir, before);
  if (after_base) after_base(t->dir);
  model_copy(after, before);
  fn(NULL, after);
}

/* Run FN on the store at DIR in a child whose commit dies just before
** step STEP; its exit status (code 77: it died there, 0: the commit
** completed).  EXPLICIT: FN leaves a transaction open and the child
** commits it; otherwise FN is one autocommit call. */
static int run_crashing(const char *dir, OpFn fn, int explicit_txn,
                        int step) {
  int status = 0;
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    NpkSession *s = child_session(dir);
    if (explicit_txn) {
      if (fn(s, NULL) != NPK_OK) _exit(12);
      npk_test_crash_at(step);
      _exit(npk_commit(s) == NPK_OK ? 0 : 13);
    }
    npk_test_crash_at(step);
    _exit(fn(s, NULL) == NPK_OK ? 0 : 14);
  }
  waitpid(pid, &status, 0);
  return status;
}

/* Run FN in a child that dies just before commit step STEP, for STEP = 1,
** 2, ... until the commit completes (run_crashing); AFTER_BASE, if not
** NULL, changes the base store's files first. */
static void crash_case_on(OpFn fn, int explicit_txn, const char *label,
                          void (*after_base)(const char *dir)) {
  int crashed = 0, completed = 0, saw_after = 0;
  for (int step = 1; step <= 40 && !completed; step++) {
    Tmp t;
    Model before, after;
    case_start(&t, &before, &after, fn, after_base);
    int status = run_crashing(t.dir, fn, explicit_txn, step);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code != 77 && code != 0) {
      printf("  %s step %d: child status 0x%x\n", label, step, status);
      CHECK(code == 77 || code == 0);
    } else {
      crashed += code == 77;
      completed = code == 0;
      int res = check_recovered(t.dir, &before, &after, label, step);
      if (step == 1 && res != 0) {
        printf("  %s: a crash before step 1 must leave the before state\n",
               label);
        ctest_case_failures++;
      }
      if (completed && res != 1) {
        printf("  %s: the completed commit is not there\n", label);
        ctest_case_failures++;
      }
      saw_after |= res == 1;
    }
    model_free(&before);
    model_free(&after);
    tu_tmp_done(&t);
    if (code != 77 && code != 0) break;
  }
  if (!completed) printf("  %s: the commit never completed\n", label);
  CHECK(completed);
  CHECK(crashed > 0);
  CHECK(saw_after);
}

static void crash_case(OpFn fn, int explicit_txn, const char *label) {
  crash_case_on(fn, explicit_txn, label, NULL);
}

/* Bytes past the rows of "a", more than op_append adds. */
static void tail_past_rows(const char *dir) {
  CHECK_EQ(tu_append_junk(P(dir, "data_a.npkd"), 40), 0);
}

/* Every other row of "a" (2,000 rows of 2 int32) replaced: a journal of
** 1,000 records, one per row, for one file. */
static int replace_every_other(NpkSession *s, Model *m) {
  int32_t row[2] = {-1, -2};
  int rc = npk_begin(s);
  (void)m;
  for (uint64_t r = 0; r < 2000 && rc == NPK_OK; r += 2)
    rc = npk_replace_rows(s, "a", &r, 1, row);
  return rc;
}

/* Memory runs out (and stays out) at any allocation of a read that loads
** the catalog a program ignoring the lock wrote (it dropped "b") while
** another session of the same store object is in the middle of a read:
** that read keeps its catalog and the mapping of "b"'s data file (a row
** pointer into it still reads the row) until it ends, whether the load
** failed or went through.  Letting them go must not need memory: a note
** that could not be allocated then freed the catalog, and unmapped the
** file, under the reader. */
static void test_retire_oom_under_reader(void) {
  enum { N = 4096 };
  uint64_t shape[2] = {N, 1};
  static int32_t v[N];
  struct timespec nap = {0, 20000000};
  NpkStore *st;
  NpkSession *s, *r1 = NULL, *r2 = NULL;
  unsigned char *old = NULL;
  size_t oldn = 0;
  int failed = 0, rc = NPK_NOMEM, n = 0;
  const void *p = NULL, *q = NULL;
  Tmp t;
  for (int i = 0; i < N; i++) v[i] = i + 1;
  tu_tmp_init(&t);
  s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK(s != NULL);
  if (!s) goto out;
  CHECK_EQ(npk_save(s, "a", NPK_INT32, 2, shape, v), NPK_OK);
  old = tu_read_file(P(t.dir, TU_CATALOG), &oldn);
  CHECK_EQ(npk_save(s, "b", NPK_INT32, 2, shape, v), NPK_OK);
  CHECK_EQ(npk_session_open(st, &r1), NPK_OK);
  CHECK_EQ(npk_session_open(st, &r2), NPK_OK);
  CHECK_EQ(npk_read_begin(r1), NPK_OK);
  CHECK_EQ(npk_row_ptr(r1, "b", N - 1, &p), NPK_OK);
  CHECK_EQ(tu_catalog_replace(t.dir, old, oldn), 0);
  for (int nth = 1; nth <= 400 && rc != NPK_OK; nth++) {
    nanosleep(&nap, NULL);
    npk_test_fault("oom", nth, ENOMEM);
    rc = npk_read_begin(r2);
    npk_test_fault(NULL, 0, 0);
    CHECK(rc == NPK_OK || rc == NPK_NOMEM);
    failed += rc != NPK_OK;
    if (rc == NPK_OK) {
      CHECK_EQ(npk_array_count(r2, &n), NPK_OK);
      CHECK_EQ(n, 1);
      npk_read_end(r2);
    }
    /* The first read's catalog, and the page its pointer is in. */
    CHECK_EQ(*(const volatile int32_t *)p, N);
    CHECK_EQ(npk_array_count(r1, &n), NPK_OK);
    CHECK_EQ(n, 2);
    CHECK_EQ(npk_row_ptr(r1, "b", N - 1, &q), NPK_OK);
    CHECK(q != NULL && *(const int32_t *)q == N);
  }
  CHECK_EQ(rc, NPK_OK);
  CHECK(failed > 3);
  npk_read_end(r1);
  CHECK_EQ(npk_read_begin(r1), NPK_OK);
  CHECK_EQ(npk_array_count(r1, &n), NPK_OK);
  CHECK_EQ(n, 1);
  npk_read_end(r1);
  npk_session_close(r1);
  npk_session_close(r2);
  tu_close(st, s);
out:
  free(old);
  tu_tmp_done(&t);
}

/* A replacement of rows already replaced in the transaction that runs out
** of memory at any allocation changes none of them: each row's undo record
** has its room before the row changes (with the record made after, a
** failure to grow the undo list left that row changed). */
static void test_replace_again_malloc_faults(void) {
  uint64_t shape[2] = {200, 2}, rows[100];
  int32_t zero[400] = {0}, a[200], b[200], got[200];
  NpkStore *st;
  NpkSession *s;
  int failed = 0, rc = NPK_ERROR;
  Tmp t;
  for (int i = 0; i < 200; i++) {
    a[i] = i + 1;
    b[i] = -i - 1;
  }
  for (int i = 0; i < 100; i++) rows[i] = (uint64_t)i;
  tu_tmp_init(&t);
  s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK(s != NULL);
  if (!s) return;
  CHECK_EQ(npk_save(s, "a", NPK_INT32, 2, shape, zero), NPK_OK);
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(npk_replace_rows(s, "a", rows, 100, a), NPK_OK);
  for (int nth = 1; nth < 400 && rc != NPK_OK; nth++) {
    npk_test_fault("malloc", nth, ENOMEM);
    rc = npk_replace_rows(s, "a", rows, 100, b);
    npk_test_fault(NULL, 0, 0);
    CHECK_EQ(npk_copy_rows(s, "a", rows, 100, got), NPK_OK);
    if (rc != NPK_OK) {
      failed++;
      if (memcmp(got, a, sizeof a) != 0)
        printf("  a fault at allocation %d left rows changed\n", nth);
      CHECK(memcmp(got, a, sizeof a) == 0);
    } else {
      CHECK(memcmp(got, b, sizeof b) == 0);
    }
  }
  CHECK(rc == NPK_OK && failed > 60);
  CHECK_EQ(npk_rollback(s), NPK_OK);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* A store in T whose "a" (2,000 rows of 2 int32, zeros) FN was changing
** in a child killed once the commit had written its rows (step 5), so that
** its journal is hot; 0 if that could not be made. */
static int crashed_store(Tmp *t, OpFn fn) {
  uint64_t shape[2] = {2000, 2};
  int32_t *rows = calloc(4000, sizeof *rows);
  NpkStore *st;
  NpkSession *s;
  int status, ok = 0;
  tu_tmp_init(t);
  s = tu_open(t->dir, NPK_OPEN_CREATE, &st);
  CHECK(s != NULL && rows != NULL);
  if (s && rows) {
    CHECK_EQ(npk_save(s, "a", NPK_INT32, 2, shape, rows), NPK_OK);
    tu_close(st, s);
    status = run_crashing(t->dir, fn, 1, 5);
    ok = WIFEXITED(status) && WEXITSTATUS(status) == 77;
    CHECK(ok);
  } else if (s) {
    tu_close(st, s);
  }
  free(rows);
  return ok;
}

/* Playing back a journal of many records for one file keeps the file open
** from one record to the next and syncs it once: a commit of 1,000
** replaced rows killed after writing them is undone by the next write,
** whose syncs are a handful, not one per record. */
static void test_playback_syncs_once(void) {
  int32_t got[4] = {1, 1, 1, 1};
  uint64_t two[2] = {0, 1}, last = 1999;
  NpkStats before, after;
  NpkStore *st;
  NpkSession *s;
  Tmp t;
  if (!crashed_store(&t, replace_every_other)) goto out;
  CHECK(tu_journal_hot(t.dir));
  s = tu_open(t.dir, 0, &st);
  CHECK(s != NULL);
  if (!s) goto out;
  npk_store_stats(st, &before);
  CHECK_EQ(npk_replace_rows(s, "a", &last, 1, got), NPK_OK);
  npk_store_stats(st, &after);
  CHECK_EQ(after.recoveries - before.recoveries, 1);
  printf("  playback of 1,000 records: %llu syncs\n",
         (unsigned long long)(after.fsyncs - before.fsyncs));
  CHECK(after.fsyncs - before.fsyncs <= 20);
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  CHECK_EQ(npk_copy_rows(s, "a", two, 2, got), NPK_OK);
  npk_read_end(s);
  CHECK(got[0] == 0 && got[1] == 0 && got[2] == 0 && got[3] == 0);
  tu_close(st, s);
out:
  tu_tmp_done(&t);
}

/* A read of a hot journal that fails (an I/O error at any of its reads,
** through a window of 4 KB) never passes for a journal with nothing to
** undo: a reader gets the error or SQLITE_BUSY, never the files as the
** interrupted commit left them; a playback stopped by it leaves the
** journal hot (or, stopped after it in reading the catalog, names that
** file), and the next one brings the rows back as they were. */
static void test_journal_read_faults(void) {
  uint64_t two[2] = {0, 1998};
  int32_t got[4];
  int reader_failed = 0, playback_failed = 0, done = 0;
  setenv("NUMPACK_TEST_JOURNAL_WINDOW", "4096", 1);
  for (int nth = 1; nth <= 200 && !done; nth++) {
    NpkStore *st;
    NpkSession *s;
    int rc;
    Tmp t;
    if (!crashed_store(&t, replace_every_other)) break;
    s = tu_open(t.dir, 0, &st);
    CHECK(s != NULL);
    if (!s) {
      tu_tmp_done(&t);
      break;
    }
    npk_test_fault("read", nth, EIO);
    rc = npk_read_begin(s);
    npk_test_fault(NULL, 0, 0);
    if (rc == NPK_OK) npk_read_end(s);
    CHECK(rc == NPK_IOERR || rc == NPK_BUSY);
    reader_failed += rc == NPK_IOERR;
    npk_test_fault("read", nth, EIO);
    rc = npk_recover(s);
    npk_test_fault(NULL, 0, 0);
    if (rc != NPK_OK) {
      playback_failed++;
      CHECK_EQ(rc, NPK_IOERR);
      /* Stopped during playback, or in reading the catalog after it. */
      CHECK(strstr(npk_errmsg(s), tu_journal_hot(t.dir) ? "journal" : t.dir));
      CHECK_EQ(npk_recover(s), NPK_OK);
    }
    done = rc == NPK_OK;
    CHECK(!tu_journal_hot(t.dir));
    CHECK_EQ(npk_read_begin(s), NPK_OK);
    CHECK_EQ(npk_copy_rows(s, "a", two, 2, got), NPK_OK);
    npk_read_end(s);
    CHECK(got[0] == 0 && got[1] == 0 && got[2] == 0 && got[3] == 0);
    CHECK_EQ(tu_leftovers(t.dir), 0);
    tu_close(st, s);
    tu_tmp_done(&t);
  }
  unsetenv("NUMPACK_TEST_JOURNAL_WINDOW");
  printf("  reads failed: %d readers' checks, %d playbacks\n", reader_failed,
         playback_failed);
  CHECK(done);
  CHECK(reader_failed > 5 && playback_failed > 5);
}

/* A read of a data file that fails fails the read that needed it, naming
** the file, and the next read gets the rows. */
static void test_data_read_fault(void) {
  uint64_t shape[2] = {4, 2}, pos = 0;
  int32_t rows[8] = {1, 2, 3, 4, 5, 6, 7, 8}, got[8] = {0};
  NpkStore *st;
  NpkSession *s;
  Tmp t;
  tu_tmp_init(&t);
  s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK(s != NULL);
  if (!s) goto out;
  CHECK_EQ(npk_save(s, "a", NPK_INT32, 2, shape, rows), NPK_OK);
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  npk_test_fault("read", 1, EIO);
  CHECK_EQ(npk_copy_live_rows(s, "a", &pos, 4, got), NPK_IOERR);
  npk_test_fault(NULL, 0, 0);
  CHECK(strstr(npk_errmsg(s), "data_a.npkd") != NULL);
  CHECK(strstr(npk_errmsg(s), "Input/output error") != NULL);
  pos = 0;
  CHECK_EQ(npk_copy_live_rows(s, "a", &pos, 4, got), NPK_OK);
  CHECK(memcmp(got, rows, sizeof rows) == 0);
  npk_read_end(s);
  tu_close(st, s);
out:
  tu_tmp_done(&t);
}

/* Every row of "a" (1,024 rows of 512 int32, 2 MiB) replaced in one
** transaction: a journal written in pieces. */
static int replace_all_big(NpkSession *s, Model *m) {
  int rc = npk_begin(s);
  (void)m;
  if (rc == NPK_OK) rc = spill_replace(s, 1024, 512, 2);
  return rc;
}

/* A commit whose journal is written in pieces, killed at every step, then
** played back through the default window and through one of a few bytes:
** the store holds the rows before or after it, nothing else. */
static void test_crash_journal_in_pieces(void) {
  static const char *windows[] = {"0", "4093"};
  for (int w = 0; w < 2; w++) {
    int completed = 0, crashed = 0;
    for (int step = 1; step <= 12 && !completed; step++) {
      uint64_t shape[2] = {1024, 512};
      unsigned char *rows = malloc(1024 * 512 * 4);
      NpkStore *st;
      NpkSession *s;
      int status, before, after;
      Tmp t;
      tu_tmp_init(&t);
      s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
      CHECK(s != NULL && rows != NULL);
      if (!s || !rows) {
        free(rows);
        tu_tmp_done(&t);
        return;
      }
      tu_fill(rows, 1024 * 512 * 4, 1);
      CHECK_EQ(npk_save(s, "a", NPK_INT32, 2, shape, rows), NPK_OK);
      tu_close(st, s);
      free(rows);
      status = run_crashing(t.dir, replace_all_big, 1, step);
      CHECK(WIFEXITED(status));
      completed = WEXITSTATUS(status) == 0;
      crashed += WEXITSTATUS(status) == 77;
      setenv("NUMPACK_TEST_JOURNAL_WINDOW", windows[w], 1);
      s = tu_open(t.dir, 0, &st);
      CHECK(s != NULL);
      if (s) {
        CHECK_EQ(npk_recover(s), NPK_OK);
        before = spill_rows_are(s, 1024, 512, 1);
        after = spill_rows_are(s, 1024, 512, 2);
        if (!(before || after) || (completed && !after))
          printf("  window %s, step %d: neither state\n", windows[w], step);
        CHECK(before || after);
        CHECK(!completed || after);
        CHECK_EQ(tu_leftovers(t.dir), 0);
        tu_close(st, s);
      }
      unsetenv("NUMPACK_TEST_JOURNAL_WINDOW");
      tu_tmp_done(&t);
    }
    CHECK(completed);
    CHECK(crashed > 0);
  }
}

/* Rows 0 to 999 of "a" replaced, one call each. */
static int replace_first_thousand(NpkSession *s, Model *m) {
  int32_t row[2] = {-1, -2};
  int rc = npk_begin(s);
  (void)m;
  for (uint64_t r = 0; r < 1000 && rc == NPK_OK; r++)
    rc = npk_replace_rows(s, "a", &r, 1, row);
  return rc;
}

/* Consecutive replaced rows are journaled as one run, whatever order they
** were replaced in: 1,000 rows of 8 bytes take one record (8 KB), where a
** record per row took 40 KB; and the run plays back. */
static void test_journal_runs(void) {
  uint64_t first[2] = {0, 999};
  int32_t got[4] = {1, 1, 1, 1};
  struct stat sb;
  char path[1200];
  NpkStore *st;
  NpkSession *s;
  Tmp t;
  if (!crashed_store(&t, replace_first_thousand)) goto out;
  snprintf(path, sizeof path, "%s/%s", t.dir, TU_JOURNAL);
  CHECK(stat(path, &sb) == 0 && sb.st_size < 9000);
  s = tu_open(t.dir, 0, &st);
  CHECK(s != NULL);
  if (!s) goto out;
  CHECK_EQ(npk_recover(s), NPK_OK);
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  CHECK_EQ(npk_copy_rows(s, "a", first, 2, got), NPK_OK);
  npk_read_end(s);
  CHECK(got[0] == 0 && got[1] == 0 && got[2] == 0 && got[3] == 0);
  tu_close(st, s);
out:
  tu_tmp_done(&t);
}

/* A reader of the store in DIR, whose hot journal it checks through a
** window of W bytes (0: the default): 1 if it finds the journal whole (the
** read is refused with NPK_BUSY), 0 if it takes it for a torn one. */
static int whole_through_window(const char *dir, unsigned w) {
  char z[32];
  NpkStore *st;
  NpkSession *s;
  int rc;
  snprintf(z, sizeof z, "%u", w);
  setenv("NUMPACK_TEST_JOURNAL_WINDOW", z, 1);
  s = tu_open(dir, 0, &st);
  rc = s ? npk_read_begin(s) : NPK_ERROR;
  if (rc == NPK_OK) npk_read_end(s);
  if (s) tu_close(st, s);
  unsetenv("NUMPACK_TEST_JOURNAL_WINDOW");
  return rc == NPK_BUSY;
}

/* The journal's checksum, taken in one go by a commit whose journal fits
** one piece and piece by piece by one written in pieces, is the one a
** reader takes window by window, wherever the windows cut it: every window
** of 1 to 70 bytes (each cut modulo the checksum's 32-byte steps, and
** across records) and a few larger ones.  A window that reads a whole
** journal as torn would let readers in on a commit half applied. */
static void test_journal_checksum_windows(void) {
  static const unsigned big[] = {31, 33, 65, 4093, 1048575, 1048577, 0};
  Tmp t;
  int status, hot;
  uint64_t bshape[2] = {1024, 512};
  int32_t *rows = calloc(1024 * 512, sizeof *rows);
  NpkStore *st;
  NpkSession *s;
  if (!crashed_store(&t, replace_every_other) || !rows) {
    free(rows);
    tu_tmp_done(&t);
    return;
  }
  CHECK(tu_journal_hot(t.dir));
  for (unsigned w = 1; w <= 70; w++) {
    if (!whole_through_window(t.dir, w)) printf("  window %u: torn\n", w);
    CHECK(whole_through_window(t.dir, w));
  }
  tu_tmp_done(&t);

  /* Over 1 MiB of replaced rows: the journal written in pieces. */
  tu_tmp_init(&t);
  s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK(s != NULL);
  if (!s) goto out;
  CHECK_EQ(npk_save(s, "a", NPK_INT32, 2, bshape, rows), NPK_OK);
  tu_close(st, s);
  hot = 0;
  for (int step = 3; step <= 6 && !hot; step++) {
    status = run_crashing(t.dir, replace_all_big, 1, step);
    hot = WIFEXITED(status) && WEXITSTATUS(status) == 77 &&
          tu_journal_hot(t.dir);
  }
  CHECK(hot);
  for (size_t i = 0; hot && i < sizeof big / sizeof big[0]; i++) {
    if (!whole_through_window(t.dir, big[i]))
      printf("  window %u: torn\n", big[i]);
    CHECK(whole_through_window(t.dir, big[i]));
  }
out:
  free(rows);
  tu_tmp_done(&t);
}

static void test_crash_txn(void) { crash_case(crash_txn, 1, "txn"); }

/* Rows appended and replaced in one transaction: the catalog is rewritten
** in place, with its old bytes in the journal. */
static int crash_rows_txn(NpkSession *s, Model *m) {
  int rc = s ? npk_begin(s) : NPK_OK;
  if (rc == NPK_OK) rc = op_append(s, m);
  if (rc == NPK_OK) rc = op_replace(s, m);
  return rc;
}

/* Two new arrays and rows of an old one in one transaction: the catalog
** is patched and appended to in place, its old length in the journal. */
static int crash_new_txn(NpkSession *s, Model *m) {
  int rc = s ? npk_begin(s) : NPK_OK;
  if (rc == NPK_OK) rc = op_save_new(s, m);
  if (rc == NPK_OK) rc = op_append(s, m);
  if (rc == NPK_OK) rc = op_clone(s, m);
  return rc;
}

/* The hot journal of a commit that appended arrays to the catalog begins
** with the catalog's truncation to its old length.  The release before
** this one refuses that record as damaged: met first, it is refused before
** any other record (the rows appended to "a", the new data files) is
** played back, and that release changes nothing. */
static void test_crash_append_journal_first(void) {
  Tmp t;
  Model before;
  struct stat a;
  size_t n = 0, len;
  unsigned char *j;
  tu_tmp_init(&t);
  make_base(t.dir, &before);
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &a), 0);
  /* Killed after the catalog was written, before the commit point. */
  int status = run_crashing(t.dir, crash_new_txn, 1, 6);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 77);
  CHECK(tu_journal_hot(t.dir));
  j = tu_read_file(P(t.dir, TU_JOURNAL), &n);
  len = strlen(TU_CATALOG);
  CHECK(j && n > 24 + 5 + len + 8);
  if (j && n > 24 + 5 + len + 8) {
    const unsigned char *r = j + 24;
    CHECK_EQ(r[0], 'T');
    CHECK_EQ((size_t)(r[1] | r[2] << 8 | r[3] << 16 | (size_t)r[4] << 24), len);
    CHECK(memcmp(r + 5, TU_CATALOG, len) == 0);
    CHECK_EQ(get_u64(r + 5 + len), (uint64_t)a.st_size);
  }
  free(j);
  {
    NpkStore *st;
    NpkSession *s = tu_open(t.dir, 0, &st);
    if (s) CHECK_EQ(npk_recover(s), NPK_OK);
    tu_close(st, s);
  }
  CHECK(disk_is(t.dir, &before));
  model_free(&before);
  tu_tmp_done(&t);
}

/* Rows appended to "b" (61, so that its bitmap takes a second word) and
** rows deleted from it: its bitmap, NumPack's and read by the store
** object, is patched in place and lengthened, its old length and bytes in
** the journal. */
static int crash_bitmap_txn(NpkSession *s, Model *m) {
  static const double more[61];
  uint64_t sh[1] = {61};
  int rc = s ? npk_begin(s) : NPK_OK;
  if (m) model_append(m, "b", 61, more);
  if (rc == NPK_OK && s) rc = npk_append(s, "b", NPK_FLOAT64, 1, sh, more);
  if (rc == NPK_OK) rc = op_delete(s, m);
  return rc;
}

/* A crash at every step of a commit that patches a bitmap in place. */
static void test_crash_bitmap_in_place(void) {
  crash_case(op_delete, 0, "delete");
  crash_case(crash_bitmap_txn, 1, "bitmap_txn");
}

/* Rows 6 and 7 of "a" replaced: the rows the commit before appended. */
static int replace_appended(NpkSession *s, Model *m) {
  uint64_t rows[2] = {6, 7};
  (void)m;
  return npk_replace_rows(s, "a", rows, 2, new_a);
}

/* A commit at synchronous=OFF appends two rows to "a"; the next one dies
** before its commit point, its journal cutting the data file back to 64
** bytes (it appended) or writing the old bytes of rows 6 and 7 back (it
** replaced them); a power cut loses the first commit's rows, which nothing
** synced: the file is 48 bytes.  Playback leaves it as it is, never longer,
** the journal goes, "a" reads as damaged naming its file, the other arrays
** as they were, and saving over "a" works.  A record that would lengthen a
** data file refused as damaged left the journal hot for good: every read
** busy, every write corrupt.  The third time the data file is gone (as a
** new array's file a power cut lost, or another program removed): the
** replaced rows' records find nothing to write back, which stopped
** playback with an I/O error, and the journal stayed hot. */
static void test_crash_after_unsynced_append(void) {
  static const OpFn second[3] = {op_append, replace_appended,
                                 replace_appended};
  static const double live_b[3] = {0.5, -1.5, 1e100};
  for (int i = 0; i < 3; i++) {
    uint64_t sh[2] = {2, 2}, pos = 0;
    int32_t got[4];
    double b[3];
    struct stat sb;
    NpkStore *st;
    NpkSession *s;
    Tmp t;
    tu_tmp_init(&t);
    make_base(t.dir, NULL);
    s = tu_open(t.dir, 0, &st);
    CHECK(s != NULL);
    if (s) {
      npk_set_sync_source(s, no_sync, NULL);
      CHECK_EQ(npk_append(s, "a", NPK_INT32, 2, sh, new_a), NPK_OK);
    }
    tu_close(st, s);
    int status = run_crashing(t.dir, second[i], 0, 6);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 77);
    CHECK(tu_journal_hot(t.dir));
    if (i < 2) CHECK_EQ(truncate(P(t.dir, "data_a.npkd"), 48), 0);
    else CHECK_EQ(unlink(P(t.dir, "data_a.npkd")), 0);
    s = tu_open(t.dir, 0, &st);
    CHECK(s != NULL);
    if (s) {
      CHECK_EQ(npk_recover(s), NPK_OK);
      CHECK(!tu_journal_hot(t.dir));
      if (i < 2) {
        CHECK_EQ(stat(P(t.dir, "data_a.npkd"), &sb), 0);
        CHECK_EQ((long long)sb.st_size, 48);
      } else {
        CHECK(!tu_exists(P(t.dir, "data_a.npkd")));
      }
      CHECK_EQ(npk_read_begin(s), NPK_OK);
      CHECK_EQ(npk_copy_live_rows(s, "a", &pos, 1, got), NPK_CORRUPT);
      CHECK_HAS(npk_errmsg(s), i < 2 ? "data_a.npkd is damaged: 48 bytes, "
                                       "array \"a\" needs 64"
                                     : "data_a.npkd is missing");
      pos = 0;
      CHECK_EQ(npk_copy_live_rows(s, "b", &pos, 3, b), NPK_OK);
      CHECK(memcmp(b, live_b, sizeof b) == 0);
      npk_read_end(s);
      CHECK_EQ(npk_save(s, "a", NPK_INT32, 2, sh, new_a), NPK_OK);
      pos = 0;
      CHECK_EQ(npk_read_begin(s), NPK_OK);
      CHECK_EQ(npk_copy_live_rows(s, "a", &pos, 2, got), NPK_OK);
      CHECK(memcmp(got, new_a, sizeof got) == 0);
      npk_read_end(s);
    }
    tu_close(st, s);
    tu_tmp_done(&t);
  }
}

static void test_crash_rows_in_place(void) {
  crash_case(crash_rows_txn, 1, "rows_txn");
  crash_case(crash_new_txn, 1, "new_txn");
  crash_case(op_append, 0, "append");
  /* The commit cuts the file to its rows, shorter than before: playback
  ** leaves it at that length, as it lengthens no data file. */
  crash_case_on(op_append, 0, "append_past_tail", tail_past_rows);
  crash_case(op_replace, 0, "replace");
  crash_case(op_save_new, 0, "save_new");
}

/* How many of this process's descriptors hold a removed file whose name
** ended in NAME: a catalog replaced whole must not stay open (its blocks
** would be freed inside a later commit, when the descriptor is closed). */
static int open_removed(const char *name) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *de;
  char link[PATH_MAX + 32], want[256];
  int n = 0;
  if (!d) return 0;
  snprintf(want, sizeof want, "/%s (deleted)", name);
  while ((de = readdir(d)) != NULL) {
    char path[300];
    ssize_t k;
    snprintf(path, sizeof path, "/proc/self/fd/%s", de->d_name);
    k = readlink(path, link, sizeof link - 1);
    if (k <= 0) continue;
    link[k] = 0;
    if (strlen(link) >= strlen(want) &&
        strcmp(link + strlen(link) - strlen(want), want) == 0)
      n++;
  }
  closedir(d);
  return n;
}

/* A commit that only appends or replaces rows rewrites the catalog in
** place: same inode, no backup, one fsync less; one that adds an array
** replaces it as before.  No commit creates its journal afresh. */
static void test_catalog_in_place(void) {
  Tmp t;
  NpkStore *st;
  Model m;
  NpkStats stats;
  struct stat a, b;
  NpkSession *s = open_base(&t, &st, &m);
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &a), 0);
  CHECK_EQ(op_append(s, &m), NPK_OK);
  npk_store_stats(st, &stats);
  /* The journal's file is new to this store: its zeroed header is synced
  ** before it takes the journal's name, and that name is synced too. */
  CHECK_EQ(stats.last_commit_fsyncs, 6);
  /* The journal's file is kept, idle, under its name for the next commit,
  ** which syncs the journal, the data, the catalog and the idle journal:
  ** no directory. */
  struct stat j0, j1;
  CHECK_EQ(stat(P(t.dir, TU_JOURNAL), &j0), 0);
  CHECK_EQ(op_replace(s, &m), NPK_OK);
  npk_store_stats(st, &stats);
  CHECK_EQ(stats.last_commit_fsyncs, 4);
  CHECK_EQ(op_append(s, &m), NPK_OK);
  npk_store_stats(st, &stats);
  CHECK_EQ(stats.last_commit_fsyncs, 4);
  CHECK_EQ(stat(P(t.dir, TU_JOURNAL), &j1), 0);
  CHECK_EQ(j0.st_ino, j1.st_ino);
  CHECK(!tu_journal_hot(t.dir));
  CHECK(!tu_exists(P(t.dir, TU_SPARE)));
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &b), 0);
  CHECK_EQ(a.st_ino, b.st_ino);
  CHECK(!tu_exists(P(t.dir, TU_CATALOG "-npkbak")));
  CHECK(!tu_exists(P(t.dir, TU_CATALOG "-tmp")));
  CHECK(view_is(s, &m, 1));
  /* The catalog's time moves forward even when the clock is behind it (or
  ** has not ticked since the last commit): other processes notice an
  ** in-place commit by that time alone. */
  struct timespec ahead[2] = {{0, UTIME_OMIT}, {b.st_mtim.tv_sec + 3600, 5}};
  CHECK_EQ(utimensat(AT_FDCWD, P(t.dir, TU_CATALOG), ahead, 0), 0);
  CHECK_EQ(op_append(s, &m), NPK_OK);
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &b), 0);
  CHECK_EQ(a.st_ino, b.st_ino);
  CHECK_EQ(b.st_mtim.tv_sec, ahead[1].tv_sec);
  CHECK_EQ(b.st_mtim.tv_nsec, 6);
  CHECK(view_is(s, &m, 1));
  /* A new array's entry is appended to the same file: the journal, the
  ** new data file, the catalog, the directory (the data file's name), the
  ** idle journal. */
  CHECK_EQ(op_save_new(s, &m), NPK_OK);
  npk_store_stats(st, &stats);
  CHECK_EQ(stats.last_commit_fsyncs, 5);
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &b), 0);
  CHECK_EQ(a.st_ino, b.st_ino);
  CHECK(b.st_size > a.st_size);
  CHECK(!tu_exists(P(t.dir, TU_CATALOG "-npkbak")));
  CHECK(view_is(s, &m, 1));
  /* Rows of the new array, then a clone, patch the grown file in turn. */
  {
    uint64_t sh[2] = {1, 2};
    model_append(&m, "n", 1, new_n);
    CHECK_EQ(npk_append(s, "n", NPK_INT16, 2, sh, new_n), NPK_OK);
  }
  CHECK_EQ(op_clone(s, &m), NPK_OK);
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &b), 0);
  CHECK_EQ(a.st_ino, b.st_ino);
  CHECK(view_is(s, &m, 1));
  /* A drop moves the arrays after it: the catalog is rewritten in place
  ** from the dropped entry on and cut to its new length, with no new file
  ** and no backup of the old one. */
  {
    struct stat before;
    CHECK_EQ(stat(P(t.dir, TU_CATALOG), &before), 0);
    CHECK_EQ(op_drop(s, &m), NPK_OK);
    CHECK_EQ(stat(P(t.dir, TU_CATALOG), &b), 0);
    CHECK_EQ(a.st_ino, b.st_ino);
    CHECK(b.st_size < before.st_size);
    CHECK(!tu_exists(P(t.dir, TU_CATALOG "-npkbak")));
    CHECK(!tu_exists(P(t.dir, TU_CATALOG "-tmp")));
    CHECK(view_is(s, &m, 1));
    check_readback(t.dir, s, __LINE__);
  }
  /* An array saved over with another number of dimensions: its entry
  ** changes length, and what follows it moves, in place as well. */
  CHECK_EQ(op_save_over(s, &m), NPK_OK);
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &b), 0);
  CHECK_EQ(a.st_ino, b.st_ino);
  CHECK(view_is(s, &m, 1));
  check_readback(t.dir, s, __LINE__);
  close_and_check(st, s, &t, &m);
}

/* A program that ignores the locks replaces the catalog during a
** transaction with one as long, listing the same arrays in another order:
** the commit must not write its changes in place over it (they would land
** in the wrong fields), and replaces it whole as before. */
static void test_in_place_foreign_catalog(void) {
  Tmp t;
  NpkStore *st;
  Model m;
  NpkSession *s = open_base(&t, &st, &m);
  CatEntry e[4];
  Buf cat = {0};
  struct stat a, b;
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(op_append(s, &m), NPK_OK);
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &a), 0);
  memset(e, 0, sizeof e);
  e[0].name = "b"; e[0].ndim = 1; e[0].dims[0] = 4;
  e[0].dtype = NPK_FLOAT64; e[0].mtime = 1700000000000001ull;
  e[1].name = "a"; e[1].ndim = 2; e[1].dims[0] = 6; e[1].dims[1] = 2;
  e[1].dtype = NPK_INT32; e[1].mtime = 1700000000000000ull;
  e[2].name = "c"; e[2].ndim = 2; e[2].dims[0] = 3; e[2].dims[1] = 3;
  e[2].dtype = NPK_UINT8; e[2].mtime = 1700000000000002ull;
  e[3] = tu_seg_entry();
  tu_cat_build(&cat, e, 4, NULL);
  CHECK_EQ(cat.n, (size_t)a.st_size);
  CHECK_EQ(tu_catalog_replace(t.dir, cat.p, cat.n), 0);
  CHECK_EQ(npk_commit(s), NPK_OK);
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &b), 0);
  CHECK(a.st_ino != b.st_ino);
  tu_close(st, s);
  CHECK(disk_is(t.dir, &m));
  buf_free(&cat);
  model_free(&m);
  tu_tmp_done(&t);
}

/* The same, found out by a reader of another session after the commit
** paired its arrays and before it took EXCLUSIVE: the committed catalog
** the commit holds is then the foreign one, which the positions the
** pairing found do not describe.  A commit that added an array must not
** patch that catalog at them (it listed an array twice, and the store was
** refused as damaged); it writes its own catalog whole. */
typedef struct PlanRace PlanRace;
struct PlanRace {
  const char *dir;      /* the store */
  unsigned char *cat;   /* the catalog the foreign program writes */
  size_t ncat;
  NpkSession *reader;   /* the other session */
  int fired, seen;      /* the callback ran; arrays the reader then saw */
};

static void plan_race(void *arg) {
  PlanRace *r = arg;
  if (r->fired++) return;
  CHECK_EQ(tu_catalog_replace(r->dir, r->cat, r->ncat), 0);
  CHECK_EQ(npk_read_begin(r->reader), NPK_OK);
  CHECK_EQ(npk_array_count(r->reader, &r->seen), NPK_OK);
  npk_read_end(r->reader);
}

static void test_foreign_catalog_after_plan(void) {
  static const char *const names[] = {"a", "b", "c", "x"};
  int64_t v[3] = {1, 2, 3}, got[3];
  uint64_t shape[1] = {3};
  Tmp t, ref;
  NpkStore *st, *st2;
  NpkSession *s, *q;
  PlanRace r;
  char *err = NULL;
  int n = 0;
  memset(&r, 0, sizeof r);
  tu_tmp_init(&t);
  tu_tmp_init(&ref);
  /* The foreign catalog: b and c, as the store has them. */
  q = tu_open(ref.dir, NPK_OPEN_CREATE, &st2);
  CHECK(q != NULL);
  if (q) {
    CHECK_EQ(npk_save(q, "b", NPK_INT64, 1, shape, v), NPK_OK);
    CHECK_EQ(npk_save(q, "c", NPK_INT64, 1, shape, v), NPK_OK);
  }
  tu_close(st2, q);
  r.cat = tu_read_file(P(ref.dir, TU_CATALOG), &r.ncat);
  r.dir = t.dir;
  s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK(s != NULL && r.cat != NULL);
  if (s && r.cat) {
    for (int i = 0; i < 3; i++)
      CHECK_EQ(npk_save(s, names[i], NPK_INT64, 1, shape, v), NPK_OK);
    CHECK_EQ(npk_session_open(st, &r.reader), NPK_OK);
    npk_test_on_plan(plan_race, &r);
    CHECK_EQ(npk_save(s, "x", NPK_INT64, 1, shape, v), NPK_OK);
    npk_test_on_plan(NULL, NULL);
    CHECK_EQ(r.fired, 1);
    CHECK_EQ(r.seen, 2);
    npk_session_close(r.reader);
  }
  tu_close(st, s);
  /* Opened afresh: whole, with the commit's arrays. */
  CHECK_EQ(npk_store_open(t.dir, 0, &st, &err), NPK_OK);
  if (err) printf("  %s\n", err);
  free(err);
  if (st && npk_session_open(st, &s) == NPK_OK) {
    CHECK_EQ(npk_read_begin(s), NPK_OK);
    CHECK_EQ(npk_array_count(s, &n), NPK_OK);
    CHECK_EQ(n, 4);
    npk_read_end(s);
    for (int i = 0; i < 4; i++) {
      CHECK_EQ(tu_load_i64(s, names[i], got, 3), 3);
      CHECK(got[0] == 1 && got[2] == 3);
    }
    npk_session_close(s);
  }
  if (st) npk_store_release(st);
  free(r.cat);
  tu_tmp_done(&ref);
  tu_tmp_done(&t);
}

/* Rows replaced in place go through a writable mapping of the data file;
** where the address space has room for the read mapping only, they are
** written one by one instead, and the commit still succeeds. */
static void test_replace_without_room_to_map(void) {
  enum { N = 12 << 20 };
  Tmp t;
  tu_tmp_init(&t);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    NpkStore *st = NULL;
    NpkSession *s = NULL;
    NpkArrayInfo in;
    const void *row;
    uint64_t sh[1] = {N}, rows[2] = {7, N - 1};
    int32_t *v = calloc(N, sizeof *v), nv[2] = {5, 6};
    alarm(60);
    if (!v) _exit(10);
    if (npk_store_open(t.dir, NPK_OPEN_CREATE, &st, NULL) != NPK_OK) _exit(11);
    if (npk_session_open(st, &s) != NPK_OK) _exit(12);
    if (npk_save(s, "big", NPK_INT32, 1, sh, v) != NPK_OK) _exit(13);
    free(v);
    /* Room for what is mapped now, one mapping of the file (48 MB, mapped
    ** with a quarter more) and 40 MB to spare: not for a second one. */
    if (!cap_address_space(100u << 20)) _exit(14);
    if (npk_replace_rows(s, "big", rows, 2, nv) != NPK_OK) _exit(16);
    if (npk_read_begin(s) != NPK_OK) _exit(17);
    if (npk_array_info(s, "big", &in) != NPK_OK || in.rows != N) _exit(18);
    if (npk_row_ptr(s, "big", N - 1, &row) != NPK_OK ||
        *(const int32_t *)row != 6)
      _exit(19);
    if (npk_row_ptr(s, "big", 7, &row) != NPK_OK ||
        *(const int32_t *)row != 5)
      _exit(20);
    npk_read_end(s);
    _exit(0);
  }
  check_child_ok(pid);
  tu_tmp_done(&t);
}

/* The journal's descriptor is kept between commits, but a hard link made
** to the idle journal meanwhile (a name that may lie outside the store) is
** never written through: the next commit makes the journal afresh. */
static void test_spare_linked_later(void) {
  Tmp t;
  NpkStore *st;
  Model m;
  NpkSession *s = open_base(&t, &st, &m);
  char victim[1200];
  size_t n0 = 0, n1 = 0;
  struct stat sb;
  CHECK_EQ(op_append(s, &m), NPK_OK);
  snprintf(victim, sizeof victim, "%s/../victim-%d", t.dir, (int)getpid());
  unlink(victim);
  CHECK_EQ(link(P(t.dir, TU_JOURNAL), victim), 0);
  unsigned char *before = tu_read_file(victim, &n0);
  CHECK_EQ(op_replace(s, &m), NPK_OK);
  CHECK_EQ(op_append(s, &m), NPK_OK);
  unsigned char *after = tu_read_file(victim, &n1);
  CHECK(before && after && n0 == n1 && memcmp(before, after, n0) == 0);
  CHECK_EQ(stat(victim, &sb), 0);
  CHECK_EQ(sb.st_nlink, 1);
  CHECK_EQ(stat(P(t.dir, TU_JOURNAL), &sb), 0);
  CHECK_EQ(sb.st_nlink, 1);
  CHECK(view_is(s, &m, 1));
  free(before);
  free(after);
  unlink(victim);
  close_and_check(st, s, &t, &m);
}

/* A store an earlier release committed to holds its journal's idle file
** under the spare's name and nothing under the journal's: the first write
** removes the spare, and the commit keeps its journal under its own name,
** idle. */
static void test_spare_of_earlier_release(void) {
  Tmp t;
  NpkStore *st;
  Model m;
  NpkSession *s = open_base(&t, &st, &m);
  CHECK_EQ(op_append(s, &m), NPK_OK);
  tu_close(st, s);
  CHECK_EQ(rename(P(t.dir, TU_JOURNAL), P(t.dir, TU_SPARE)), 0);
  s = tu_open(t.dir, 0, &st);
  CHECK(s && view_is(s, &m, 1));
  CHECK(tu_exists(P(t.dir, TU_SPARE)));
  CHECK_EQ(op_replace(s, &m), NPK_OK);
  CHECK(!tu_exists(P(t.dir, TU_SPARE)));
  CHECK(tu_exists(P(t.dir, TU_JOURNAL)));
  CHECK(!tu_journal_hot(t.dir));
  CHECK(view_is(s, &m, 1));
  close_and_check(st, s, &t, &m);
}

/* The commit count in the lock file of the store in DIR, a little-endian
** word at byte 72 (read through the file, as another process would). */
static uint64_t lock_count(const char *dir) {
  size_t n = 0;
  unsigned char *b = tu_read_file(P(dir, TU_LOCK), &n);
  uint64_t v = 0;
  if (b && n >= 80)
    for (int i = 7; i >= 0; i--) v = v << 8 | b[72 + i];
  free(b);
  return v;
}

/* A writer stores the lock file's commit mark and count through a shared
** mapping, not with a pwrite each (three per commit, each changing the
** file's time on ext4): other processes read the count raised by every
** commit, and the file's time stays where it was set. */
static void test_lock_words_mapped(void) {
  Tmp t;
  NpkStore *st;
  Model m;
  struct stat sb;
  NpkSession *s = open_base(&t, &st, &m);
  CHECK_EQ(op_append(s, &m), NPK_OK);
  uint64_t c0 = lock_count(t.dir);
  struct timespec past[2] = {{0, UTIME_OMIT}, {1000000000, 0}};
  CHECK_EQ(utimensat(AT_FDCWD, P(t.dir, TU_LOCK), past, 0), 0);
  CHECK_EQ(op_replace(s, &m), NPK_OK);
  CHECK_EQ(op_append(s, &m), NPK_OK);
  CHECK(lock_count(t.dir) >= c0 + 2);
  CHECK_EQ(stat(P(t.dir, TU_LOCK), &sb), 0);
  CHECK_EQ((long long)sb.st_mtim.tv_sec, 1000000000LL);
  CHECK(view_is(s, &m, 1));
  close_and_check(st, s, &t, &m);
}

/* A hot journal of RECORDS at DIR in the format of earlier releases:
** "NPKJRNL1" and an FNV-1a checksum (SUM_OK 0: a wrong one), followed by
** TAIL bytes of an earlier commit's longer records when TAIL. */
static void write_v1_journal(const char *dir, const Buf *rec, int sum_ok,
                             size_t tail) {
  Buf j = {0};
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (size_t i = 0; i < rec->n; i++) {
    h ^= rec->p[i];
    h *= UINT64_C(0x100000001b3);
  }
  buf_put(&j, "NPKJRNL1", 8);
  put_u64(&j, rec->n);
  put_u64(&j, sum_ok ? h : h + 1);
  buf_put(&j, rec->p, rec->n);
  for (size_t i = 0; i < tail; i++) put_u8(&j, (uint8_t)('R' + i));
  tu_write_buf(P(dir, TU_JOURNAL), &j);
  buf_free(&j);
}

/* A hot journal an earlier release left ("NPKJRNL1", FNV-1a checksum) is
** played back by the first write: here it puts back the first row of "a",
** which the interrupted commit had overwritten, also with bytes of an
** earlier commit's longer records behind it (the header says where the
** records end).  One whose checksum is wrong was never complete (its
** commit touched nothing): it is not played and the next commit goes over
** it. */
static void test_journal_of_earlier_release(void) {
  for (int k = 3; k >= 0; k--) {
    int sum_ok = k & 1;
    size_t tail = k & 2 ? 45 : 0;
    Tmp t;
    NpkStore *st;
    Model m;
    Buf rec = {0};
    int32_t old[2], junk[2] = {-7, -8};
    size_t n = 0;
    tu_tmp_init(&t);
    make_base(t.dir, &m);
    unsigned char *a = tu_read_file(P(t.dir, "data_a.npkd"), &n);
    CHECK(a && n >= sizeof old);
    if (!a) return;
    memcpy(old, a, sizeof old);
    memcpy(a, junk, sizeof junk);
    tu_write_file(P(t.dir, "data_a.npkd"), a, n);
    free(a);
    put_u8(&rec, 'R');
    put_u32(&rec, 11);
    buf_put(&rec, "data_a.npkd", 11);
    put_u64(&rec, 0);
    put_u64(&rec, sizeof old);
    buf_put(&rec, old, sizeof old);
    write_v1_journal(t.dir, &rec, sum_ok, tail);
    buf_free(&rec);
    CHECK(tu_journal_hot(t.dir));
    NpkSession *s = tu_open(t.dir, 0, &st);
    CHECK(s != NULL);
    if (s) {
      NpkStats stats;
      CHECK_EQ(npk_begin(s), NPK_OK);
      CHECK_EQ(npk_rollback(s), NPK_OK);
      npk_store_stats(st, &stats);
      CHECK_EQ(stats.recoveries, (uint64_t)sum_ok);
      if (!sum_ok) memcpy(model_find(&m, "a")->data, junk, sizeof junk);
      CHECK(view_is(s, &m, 1));
      CHECK_EQ(op_replace(s, &m), NPK_OK);
      CHECK(!tu_journal_hot(t.dir));
    }
    tu_close(st, s);
    CHECK(disk_is(t.dir, &m));
    model_free(&m);
    tu_tmp_done(&t);
  }
}

/* While set, futimens keeps whole seconds, as a file system with coarse
** times does (this definition takes the place of the C library's). */
/* 1: the catalog's time is kept to the second; 2: to the microsecond. */
static int coarse_times;

int futimens(int fd, const struct timespec times[2]) {
  struct timespec t[2] = {times[0], times[1]};
  if (coarse_times && t[1].tv_nsec != UTIME_OMIT && t[1].tv_nsec != UTIME_NOW)
    t[1].tv_nsec -= coarse_times == 2 ? t[1].tv_nsec % 1000 : t[1].tv_nsec;
  return (int)syscall(SYS_utimensat, fd, NULL, t, 0);
}

/* Set: the clock reads whole microseconds, as it does now and then. */
static int whole_us_clock;

int clock_gettime(clockid_t id, struct timespec *ts) {
  int rc = (int)syscall(SYS_clock_gettime, id, ts);
  if (rc == 0 && whole_us_clock && id == CLOCK_REALTIME)
    ts->tv_nsec -= ts->tv_nsec % 1000;
  return rc;
}

/* Open the base store, then commit OP where the file system cannot keep
** the catalog's new time (it comes out as the one held): *A and *B are the
** catalog before and after.  OP is the store object's first commit, as on
** a real file system, whose resolution never changes: a commit that once
** found its time kept exactly trusts the ones after it. */
static NpkSession *coarse_commit(OpFn op, Tmp *t, NpkStore **pst, Model *m,
                                 struct stat *a, struct stat *b) {
  NpkSession *s = open_base(t, pst, m);
  CHECK_EQ(stat(P(t->dir, TU_CATALOG), a), 0);
  struct timespec ahead[2] = {{0, UTIME_OMIT}, {a->st_mtim.tv_sec + 100, 0}};
  CHECK_EQ(utimensat(AT_FDCWD, P(t->dir, TU_CATALOG), ahead, 0), 0);
  coarse_times = 1;
  CHECK_EQ(op(s, m), NPK_OK);
  coarse_times = 0;
  CHECK_EQ(stat(P(t->dir, TU_CATALOG), b), 0);
  return s;
}

/* Where the file system cannot keep the catalog's new time, a commit that
** patched the catalog in place replaces it whole instead, so that other
** processes see a new file; later commits replace it whole from the
** start. */
static void test_coarse_times(void) {
  Tmp t;
  NpkStore *st;
  Model m;
  struct stat a, b;
  NpkSession *s = coarse_commit(op_replace, &t, &st, &m, &a, &b);
  CHECK(a.st_ino != b.st_ino);
  CHECK(view_is(s, &m, 1));
  CHECK_EQ(op_append(s, &m), NPK_OK);
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &a), 0);
  CHECK(a.st_ino != b.st_ino);
  CHECK(view_is(s, &m, 1));
  close_and_check(st, s, &t, &m);
}

/* A file system that keeps times to the microsecond, where a commit's
** first time happened to be a whole microsecond and so was kept exactly:
** that proves nothing of the resolution.  A later commit whose time comes
** out as the one held (the clock behind the catalog's time) must still
** replace the catalog whole, or a reader that holds the catalog, sees the
** commit count move and finds the catalog's inode, length and time
** unchanged keeps reading the old shape. */
static void test_exact_time_by_chance(void) {
  Tmp t;
  NpkStore *st, *ro;
  Model m;
  NpkSession *s = open_base(&t, &st, &m), *r;
  struct stat a, b;
  coarse_times = 2;
  whole_us_clock = 1;
  CHECK_EQ(op_replace(s, &m), NPK_OK);
  whole_us_clock = 0;
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &a), 0);
  struct timespec ahead[2] = {{0, UTIME_OMIT}, {a.st_mtim.tv_sec + 100, 5000}};
  CHECK_EQ(utimensat(AT_FDCWD, P(t.dir, TU_CATALOG), ahead, 0), 0);
  r = tu_open(t.dir, NPK_OPEN_READONLY, &ro);
  CHECK(view_is(r, &m, 1));
  CHECK_EQ(op_append(s, &m), NPK_OK);
  coarse_times = 0;
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &b), 0);
  CHECK(view_is(s, &m, 1));
  CHECK(view_is(r, &m, 1));
  check_readback(t.dir, s, __LINE__);
  tu_close(ro, r);
  close_and_check(st, s, &t, &m);
}

/* Once the file system has kept a catalog time exactly, commits that
** rewrite the catalog in place and change its length take its new length,
** time and identity as the ones they set, without a stat: the store object
** then reads the catalog again for none of them. */
static void test_exact_time_held(void) {
  static OpFn const ops[] = {op_drop_first, op_save_over, op_save_new,
                             op_delete};
  Tmp t;
  NpkStore *st;
  Model m;
  NpkStats a, b;
  NpkSession *s = open_base(&t, &st, &m);
  /* Some of these times are kept as proof of nanoseconds (most are). */
  for (int i = 0; i < 40; i++) CHECK_EQ(op_replace(s, &m), NPK_OK);
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    CHECK_EQ(ops[i](s, &m), NPK_OK);
    npk_store_stats(st, &a);
    CHECK_EQ(npk_begin(s), NPK_OK);
    CHECK_EQ(npk_rollback(s), NPK_OK);
    npk_store_stats(st, &b);
    if (a.bytes_read != b.bytes_read) printf("  (after op %zu)\n", i);
    CHECK_EQ(a.bytes_read, b.bytes_read);
    CHECK(view_is(s, &m, 1));
    check_readback(t.dir, s, __LINE__);
  }
  close_and_check(st, s, &t, &m);
}

/* Name of array I of a store whose catalog is more than a megabyte: the
** longest names there are. */
static void big_name(char *out, int i) {
  memset(out, 'n', NPK_MAX_NAME);
  out[NPK_MAX_NAME] = 0;
  snprintf(out, 8, "%06d", i);
  out[6] = 'n';
}

/* A commit that would rewrite more than a megabyte of the old catalog in
** place replaces it whole instead (a new inode); one that rewrites less,
** in the same store, rewrites it in place.  Both read back as written, and
** a failure in either leaves the store as it was. */
static void test_catalog_suffix_max(void) {
  enum { N = 1950 };
  Tmp t;
  NpkStore *st;
  NpkSession *s;
  struct stat a, b;
  char name[NPK_MAX_NAME + 1];
  uint64_t sh[1] = {1};
  int64_t v = 7;
  int n = N;
  tu_tmp_init(&t);
  s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK_EQ(npk_begin(s), NPK_OK);
  for (int i = 0; i < N; i++) {
    big_name(name, i);
    CHECK_EQ(npk_save(s, name, NPK_INT64, 1, sh, &v), NPK_OK);
  }
  CHECK_EQ(npk_commit(s), NPK_OK);
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &a), 0);
  CHECK(a.st_size > (1 << 20));
  /* The last array: a few hundred bytes from the end, in place. */
  big_name(name, N - 1);
  CHECK_EQ(npk_drop(s, name), NPK_OK);
  n--;
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &b), 0);
  CHECK_EQ(a.st_ino, b.st_ino);
  CHECK(b.st_size < a.st_size);
  check_readback(t.dir, s, __LINE__);
  /* The first: all of it, replaced whole; failing, as before. */
  big_name(name, 0);
  npk_test_fault("fsync", 2, EIO);
  CHECK_EQ(npk_drop(s, name), NPK_IOERR);
  npk_test_fault("fsync", 0, 0);
  CHECK(!tu_journal_hot(t.dir));
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &a), 0);
  CHECK_EQ(a.st_size, b.st_size);
  check_readback(t.dir, s, __LINE__);
  CHECK_EQ(npk_drop(s, name), NPK_OK);
  n--;
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &a), 0);
  CHECK(a.st_ino != b.st_ino);
  CHECK(!tu_exists(P(t.dir, TU_CATALOG "-npkbak")));
  check_readback(t.dir, s, __LINE__);
  /* The next commits rewrite the new file in place. */
  big_name(name, N - 2);
  CHECK_EQ(npk_drop(s, name), NPK_OK);
  n--;
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &b), 0);
  CHECK_EQ(a.st_ino, b.st_ino);
  check_readback(t.dir, s, __LINE__);
  {
    int got = -1;
    CHECK_EQ(npk_array_count(s, &got), NPK_OK);
    CHECK_EQ(got, n);
  }
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* The catalog a drop rewrites in place is byte for byte the one a whole
** rewrite makes (there, times too coarse force one): nothing of the old
** file is left past its new end, and no byte before the dropped entry
** differs.  After each of four drops, the last one leaving no array. */
static void test_suffix_same_bytes(void) {
  enum { NDROP = 4 };
  static const char *const drops[NDROP] = {"b", "a", "s", "c"};
  unsigned char *cat[2][NDROP];
  size_t n[2][NDROP];
  for (int whole = 0; whole <= 1; whole++) {
    Tmp t;
    NpkStore *st;
    Model m;
    struct stat a, b;
    NpkSession *s = open_base(&t, &st, &m);
    CHECK_EQ(stat(P(t.dir, TU_CATALOG), &a), 0);
    if (whole) {
      struct timespec ahead[2] = {{0, UTIME_OMIT},
                                  {a.st_mtim.tv_sec + 100, 0}};
      CHECK_EQ(utimensat(AT_FDCWD, P(t.dir, TU_CATALOG), ahead, 0), 0);
    }
    coarse_times = whole;
    for (int i = 0; i < NDROP; i++) {
      model_drop(&m, drops[i]);
      CHECK_EQ(npk_drop(s, drops[i]), NPK_OK);
      check_readback(t.dir, s, __LINE__);
      CHECK_EQ(stat(P(t.dir, TU_CATALOG), &b), 0);
      CHECK_EQ(a.st_ino == b.st_ino, !whole);
      a = b;
      cat[whole][i] = tu_read_file(P(t.dir, TU_CATALOG), &n[whole][i]);
    }
    coarse_times = 0;
    close_and_check(st, s, &t, &m);
  }
  for (int i = 0; i < NDROP; i++) {
    CHECK(cat[0][i] && cat[1][i] && n[0][i] == n[1][i] &&
          memcmp(cat[0][i], cat[1][i], n[0][i]) == 0);
    free(cat[0][i]);
    free(cat[1][i]);
  }
  CHECK_EQ(n[0][NDROP - 1], 20);
}

/* Descriptors of this process open on a removed journal of the store in
** DIR (whose blocks they keep in use). */
static int removed_journals_held(const char *dir) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  char want[1400], link[PATH_MAX + 1], path[300];
  int n = 0;
  snprintf(want, sizeof want, "%s/%s (deleted)", dir, TU_JOURNAL);
  while (d && (e = readdir(d)) != NULL) {
    ssize_t k;
    snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    k = readlink(path, link, PATH_MAX);
    if (k <= 0) continue;
    link[k] = 0;
    n += strcmp(link, want) == 0;
  }
  if (d) closedir(d);
  return n;
}

/* What a recording shows of the journal's first bytes on disk, to check
** that blocks holding a journal's magic are never freed and a fresh
** journal never shows at its name before its zeroed header is synced: on
** a file system that shows stale bytes in a file's new blocks after a
** power cut (ext4 data=writeback), a whole journal freed could come back
** under the journal's name.  Per file (inode): ZERO_SYNCED its magic is
** zeros on disk, ZERO_UNSYNCED written so but not synced, HOT written with
** a magic. */
enum { J_NEW, J_ZERO_SYNCED, J_ZERO_UNSYNCED, J_HOT };
typedef struct JWatch {
  const char *dir;
  int n;
  uint64_t ino[32];
  int state[32];
  char name[32][40];         /* the name it was created under */
  uint64_t jino;             /* the file at the journal's name */
  int bad;
  char why[160];
} JWatch;

static int *jw_state(JWatch *w, uint64_t ino, const char *name) {
  for (int i = 0; i < w->n; i++)
    if (w->ino[i] == ino) return &w->state[i];
  if (w->n == 32) return &w->state[31];
  w->ino[w->n] = ino;
  w->state[w->n] = J_NEW;
  snprintf(w->name[w->n], sizeof w->name[0], "%s", name ? name : "");
  return &w->state[w->n++];
}

static void jw_fail(JWatch *w, const char *why) {
  if (!w->bad++) snprintf(w->why, sizeof w->why, "%s", why);
}

static void jw_event(void *arg, const NpkIoEvent *e) {
  static const unsigned char zero[8];
  JWatch *w = arg;
  int *st;
  if (strcmp(e->dir, w->dir) != 0) return;
  switch (e->kind) {
    case NPK_EV_CREATE:
      if (!strcmp(e->name, TU_JOURNAL)) jw_fail(w, "journal created at its name");
      *jw_state(w, e->ino, e->name) = J_NEW;
      break;
    case NPK_EV_WRITE:
      st = jw_state(w, e->ino, NULL);
      if (e->off == 0 && e->len >= 8)
        *st = memcmp(e->data, zero, 8) ? J_HOT : J_ZERO_UNSYNCED;
      break;
    case NPK_EV_FSYNC:
      st = jw_state(w, e->ino, NULL);
      if (*st == J_ZERO_UNSYNCED) *st = J_ZERO_SYNCED;
      break;
    case NPK_EV_TRUNCATE:
      /* Cutting a journal frees the blocks past the new length: those of
      ** a commit's records over a longer idle journal are no harm, but
      ** not the one of its magic. */
      if (e->ino == w->jino && e->len < 8 &&
          *jw_state(w, e->ino, NULL) != J_ZERO_SYNCED)
        jw_fail(w, "journal's magic cut off before it was synced as zeros");
      break;
    case NPK_EV_UNLINK:
      if (!strcmp(e->name, TU_JOURNAL) &&
          *jw_state(w, w->jino, NULL) != J_ZERO_SYNCED)
        jw_fail(w, "journal removed before its zeroed magic was synced");
      break;
    case NPK_EV_RENAME:
      if (!strcmp(e->name2, TU_JOURNAL)) {
        int i;
        for (i = w->n - 1; i >= 0 && strcmp(w->name[i], e->name); i--) {
        }
        if (i < 0 || w->state[i] != J_ZERO_SYNCED)
          jw_fail(w, "journal renamed into place before its header was "
                     "synced");
        else w->jino = w->ino[i];
      }
      break;
  }
}

/* Watch the journal of the store in DIR from now on. */
static void jw_start(JWatch *w, const char *dir) {
  struct stat sb;
  memset(w, 0, sizeof *w);
  w->dir = dir;
  if (stat(P(dir, TU_JOURNAL), &sb) == 0) {
    w->jino = (uint64_t)sb.st_ino;
    *jw_state(w, w->jino, TU_JOURNAL) =
        tu_journal_hot(dir) ? J_HOT : J_ZERO_SYNCED;
  }
  npk_test_record(jw_event, w);
}

static int jw_end(JWatch *w) {
  npk_test_record(NULL, NULL);
  if (w->bad) printf("  %s\n", w->why);
  return w->bad;
}

/* The journal's first 8 bytes in DIR are zeros and it is no longer than
** its header.  1 if so. */
static int journal_cut_idle(const char *dir) {
  static const unsigned char zero[8];
  size_t n = 0;
  unsigned char *j = tu_read_file(P(dir, TU_JOURNAL), &n);
  int ok = j && n == 24 && memcmp(j, zero, 8) == 0;
  free(j);
  return ok;
}

/* 1 if DIR's bitmap of array NAME is NumPack's encoding of TOTAL rows with
** the rows of DEL (ascending) deleted. */
static int bitmap_of_is(const char *dir, const char *name, uint64_t total,
                        const uint64_t *del, int ndel) {
  char rel[64];
  size_t n = 0, want = 16 + (size_t)(total + 63) / 64 * 8;
  unsigned char *f;
  snprintf(rel, sizeof rel, "deleted_%s.npkb", name);
  f = tu_read_file(P(dir, rel), &n);
  int ok = f && n == want;
  for (uint64_t r = 0, k = 0; ok && r < total; r++) {
    int live = !(k < (uint64_t)ndel && del[k] == r);
    k += !live;
    ok = ((f[16 + r / 8] >> (r % 8)) & 1) == live;
  }
  if (ok) {
    uint64_t t, d;
    memcpy(&t, f, 8);
    memcpy(&d, f + 8, 8);
    ok = t == total && d == (uint64_t)ndel;
  }
  free(f);
  return ok;
}

/* The same of array "a". */
static int bitmap_is(const char *dir, uint64_t total, const uint64_t *del,
                     int ndel) {
  return bitmap_of_is(dir, "a", total, del, ndel);
}

/* The rows of "a" a fresh store object reads: NLIVE live, and the bitmap
** the caller checked.  1 if so. */
static int reopened_live(const char *dir, uint64_t nlive) {
  NpkStore *st;
  NpkArrayInfo info;
  NpkSession *s = tu_open(dir, 0, &st);
  int ok = s && npk_array_info(s, "a", &info) == NPK_OK &&
           info.live_rows == nlive;
  tu_close(st, s);
  return ok;
}

/* A new store in T holding "a", N int32 rows V, with row ROW deleted: a
** deletion bitmap to patch.  Its session, NULL on failure. */
static NpkSession *bitmap_store(Tmp *t, NpkStore **pst, const int32_t *v,
                                uint64_t n, uint64_t row) {
  uint64_t sh[1] = {n};
  NpkSession *s;
  tu_tmp_init(t);
  s = tu_open(t->dir, NPK_OPEN_CREATE, pst);
  CHECK_EQ(npk_save(s, "a", NPK_INT32, 1, sh, v), NPK_OK);
  CHECK_EQ(npk_delete_rows(s, "a", &row, 1), NPK_OK);
  return s;
}

/* A DELETE from an array that has a bitmap patches the bitmap in place:
** its header and the words that change are journaled with their old bytes
** and written over them, with no backup link, no new file and no directory
** sync -- four syncs in all (the journal, the bitmap, the catalog, the idle
** journal), where a replaced bitmap took six.  Rows appended in the same
** commit lengthen the file in place (the journal keeps its old length).
** The whole file is replaced instead when this store object did not
** read or write the file there (another program replaced it), when it has
** a second name, or when more than 64 KB of it changes.  A commit that dies
** after the patch is undone to the bytes before. */
static void test_bitmap_in_place(void) {
  enum { N = 1000, BIG = 1000000 };
  Tmp t;
  NpkStore *st;
  NpkStats stats;
  struct stat b0, b1;
  static int32_t v[N + 100];
  static int8_t big[BIG];
  static uint64_t many[10000];
  uint64_t sh[1] = {N}, sh100[1] = {100}, del[4] = {3, 5, 1001, 0};
  size_t n0 = 0, n1 = 0;
  unsigned char *before, *after;
  int status = 0;
  NpkSession *s = bitmap_store(&t, &st, v, sh[0], del[0]);
  CHECK_EQ(stat(P(t.dir, "deleted_a.npkb"), &b0), 0);
  CHECK_EQ(npk_delete_rows(s, "a", &del[1], 1), NPK_OK);
  npk_store_stats(st, &stats);
  CHECK_EQ(stats.last_commit_fsyncs, 4);
  CHECK_EQ(stat(P(t.dir, "deleted_a.npkb"), &b1), 0);
  CHECK_EQ(b1.st_ino, b0.st_ino);
  CHECK(!tu_exists(P(t.dir, "deleted_a.npkb-npkbak")));
  CHECK(!tu_exists(P(t.dir, "deleted_a.npkb-tmp")));
  CHECK(bitmap_is(t.dir, N, del, 2));
  CHECK(reopened_live(t.dir, N - 2));
  /* Rows appended and one of them deleted: the file grows in place. */
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(npk_append(s, "a", NPK_INT32, 1, sh100, v), NPK_OK);
  CHECK_EQ(npk_delete_rows(s, "a", &del[2], 1), NPK_OK);
  CHECK_EQ(npk_commit(s), NPK_OK);
  CHECK_EQ(stat(P(t.dir, "deleted_a.npkb"), &b1), 0);
  CHECK_EQ(b1.st_ino, b0.st_ino);
  CHECK(bitmap_is(t.dir, N + 100, del, 3));
  CHECK(reopened_live(t.dir, N + 100 - 3));
  tu_close(st, s);

  /* A writer that dies once the bitmap is patched, rows appended and one
  ** deleted: the next writer puts back the bytes and length before. */
  before = tu_read_file(P(t.dir, "deleted_a.npkb"), &n0);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    uint64_t r0 = 0;
    NpkSession *cs = child_session(t.dir);
    if (npk_begin(cs) != NPK_OK ||
        npk_append(cs, "a", NPK_INT32, 1, sh100, v) != NPK_OK ||
        npk_delete_rows(cs, "a", &r0, 1) != NPK_OK)
      _exit(12);
    npk_test_crash_at(6);
    _exit(npk_commit(cs) == NPK_OK ? 0 : 13);
  }
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 77);
  CHECK(tu_journal_hot(t.dir));
  after = tu_read_file(P(t.dir, "deleted_a.npkb"), &n1);
  CHECK(after && before && n1 > n0);
  free(after);
  s = tu_open(t.dir, 0, &st);
  CHECK_EQ(npk_recover(s), NPK_OK);
  CHECK(!tu_journal_hot(t.dir));
  after = tu_read_file(P(t.dir, "deleted_a.npkb"), &n1);
  CHECK(after && before && n1 == n0 && memcmp(after, before, n0) == 0);
  free(after);
  free(before);

  /* Replaced by another program (same bytes, a new file) after this store
  ** object read it: replaced whole. */
  del[3] = 1002;
  CHECK_EQ(npk_delete_rows(s, "a", &del[3], 1), NPK_OK);
  CHECK(bitmap_is(t.dir, N + 100, del, 4));
  before = tu_read_file(P(t.dir, "deleted_a.npkb"), &n0);
  CHECK(before && tu_write_file(P(t.dir, "x.tmp"), before, n0) == 0);
  free(before);
  CHECK_EQ(rename(P(t.dir, "x.tmp"), P(t.dir, "deleted_a.npkb")), 0);
  CHECK_EQ(stat(P(t.dir, "deleted_a.npkb"), &b0), 0);
  {
    uint64_t gone[6] = {3, 5, 1001, 1002, 1003, 1004}, r = 1003;
    CHECK_EQ(npk_delete_rows(s, "a", &r, 1), NPK_OK);
    npk_store_stats(st, &stats);
    CHECK_EQ(stats.last_commit_fsyncs, 6);
    CHECK_EQ(stat(P(t.dir, "deleted_a.npkb"), &b1), 0);
    CHECK(b1.st_ino != b0.st_ino);
    CHECK(bitmap_is(t.dir, N + 100, gone, 5));
    /* The next commit patches the file that one wrote. */
    r = 1004;
    CHECK_EQ(npk_delete_rows(s, "a", &r, 1), NPK_OK);
    npk_store_stats(st, &stats);
    CHECK_EQ(stats.last_commit_fsyncs, 4);
    CHECK_EQ(stat(P(t.dir, "deleted_a.npkb"), &b0), 0);
    CHECK_EQ(b0.st_ino, b1.st_ino);
    CHECK(bitmap_is(t.dir, N + 100, gone, 6));
    /* A second name: never written in place. */
    CHECK_EQ(link(P(t.dir, "deleted_a.npkb"), P(t.root, "other")), 0);
    before = tu_read_file(P(t.root, "other"), &n0);
    r = 1005;
    CHECK_EQ(npk_delete_rows(s, "a", &r, 1), NPK_OK);
    after = tu_read_file(P(t.root, "other"), &n1);
    CHECK(before && after && n0 == n1 && memcmp(before, after, n0) == 0);
    free(before);
    free(after);
    CHECK_EQ(stat(P(t.dir, "deleted_a.npkb"), &b1), 0);
    CHECK(b1.st_ino != b0.st_ino);
    CHECK(reopened_live(t.dir, N + 100 - 7));
  }
  /* More than 64 KB changes: replaced whole. */
  sh[0] = BIG;
  CHECK_EQ(npk_save(s, "big", NPK_INT8, 1, sh, big), NPK_OK);
  CHECK_EQ(npk_delete_rows(s, "big", many, 1), NPK_OK);
  for (int i = 0; i < 10000; i++) many[i] = 64 + (uint64_t)i * 64;
  CHECK_EQ(stat(P(t.dir, "deleted_big.npkb"), &b0), 0);
  CHECK_EQ(npk_delete_rows(s, "big", many, 10000), NPK_OK);
  CHECK_EQ(stat(P(t.dir, "deleted_big.npkb"), &b1), 0);
  CHECK(b1.st_ino != b0.st_ino);
  many[0] = 1;
  CHECK_EQ(npk_delete_rows(s, "big", many, 1), NPK_OK);
  CHECK_EQ(stat(P(t.dir, "deleted_big.npkb"), &b0), 0);
  CHECK_EQ(b0.st_ino, b1.st_ino);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* A program ignoring the locks (NumPack itself) that rewrites the bitmap
** in place with the same length within the file system's clock tick
** leaves its inode, length and time as this store object held them: a
** patch computed for the bytes it held, written over the other program's,
** would leave a deleted count that the bits contradict (the array then
** unreadable).  The bytes the patch covers are read first: not those
** held, the file is replaced whole (the other program's deletion lost, as
** any write of it by a program ignoring the locks may be, but the bitmap
** whole).  The time is put back by hand here, as a coarse clock would. */
static void test_bitmap_rewritten_same_time(void) {
  enum { N = 1000 };
  Tmp t;
  NpkStore *st;
  struct stat b0, b1;
  static int32_t v[N];
  uint64_t sh[1] = {N}, del[3] = {3, 5, 9};
  size_t n = 0;
  unsigned char *f;
  int fd;
  NpkSession *s = bitmap_store(&t, &st, v, sh[0], del[0]);
  CHECK_EQ(npk_delete_rows(s, "a", &del[1], 1), NPK_OK);
  CHECK(bitmap_is(t.dir, N, del, 2));
  /* The other program deletes row 900: its bit cleared, one more
  ** deleted, in a word the patch does not write. */
  CHECK_EQ(stat(P(t.dir, "deleted_a.npkb"), &b0), 0);
  f = tu_read_file(P(t.dir, "deleted_a.npkb"), &n);
  CHECK(f && n == 16 + (N + 63) / 64 * 8);
  if (f && n > 16) {
    uint64_t d;
    memcpy(&d, f + 8, 8);
    d++;
    memcpy(f + 8, &d, 8);
    f[16 + 900 / 8] &= (unsigned char)~(1u << (900 % 8));
    fd = open(P(t.dir, "deleted_a.npkb"), O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, f, n, 0) == (ssize_t)n);
    if (fd >= 0) close(fd);
  }
  free(f);
  {
    struct timespec was[2] = {{0, UTIME_OMIT}, b0.st_mtim};
    CHECK_EQ(utimensat(AT_FDCWD, P(t.dir, "deleted_a.npkb"), was, 0), 0);
  }
  CHECK_EQ(stat(P(t.dir, "deleted_a.npkb"), &b1), 0);
  CHECK(b1.st_ino == b0.st_ino && b1.st_size == b0.st_size &&
        b1.st_mtim.tv_sec == b0.st_mtim.tv_sec &&
        b1.st_mtim.tv_nsec == b0.st_mtim.tv_nsec);
  CHECK_EQ(npk_delete_rows(s, "a", &del[2], 1), NPK_OK);
  tu_close(st, s);
  CHECK(bitmap_is(t.dir, N, del, 3));
  CHECK(reopened_live(t.dir, N - 3));
  tu_tmp_done(&t);
}

/* Rows appended to an array whose bitmap this store object holds grow the
** file in place, its new bytes past the old length: across a word (64 rows
** in one word, a 65th in a second), and from a bitmap of no rows, a header
** alone (a zero-width array whose every row was deleted from the first:
** NumPack's reading leaves them past the bitmap's end).  Each reads back
** as written. */
static void test_bitmap_grows_in_place(void) {
  Tmp t;
  NpkStore *st;
  NpkStats stats;
  NpkArrayInfo info;
  struct stat b0, b1;
  static int32_t v[64];
  uint64_t sh64[1] = {64}, sh1[1] = {1}, shw[2] = {5, 0}, r0 = 0;
  uint64_t dead[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  tu_tmp_init(&t);
  CHECK_EQ(mkdir(t.dir, 0755), 0);
  tu_zero_width_write(t.dir, 10, 10);
  NpkSession *s = tu_open(t.dir, 0, &st);
  CHECK_EQ(npk_save(s, "a", NPK_INT32, 1, sh64, v), NPK_OK);
  CHECK_EQ(npk_delete_rows(s, "a", &r0, 1), NPK_OK);
  CHECK_EQ(stat(P(t.dir, "deleted_a.npkb"), &b0), 0);
  CHECK_EQ(b0.st_size, 24);
  CHECK_EQ(npk_append(s, "a", NPK_INT32, 1, sh1, v), NPK_OK);
  npk_store_stats(st, &stats);
  CHECK_EQ(stats.last_commit_fsyncs, 5);
  CHECK_EQ(stat(P(t.dir, "deleted_a.npkb"), &b1), 0);
  CHECK_EQ(b1.st_ino, b0.st_ino);
  CHECK(bitmap_is(t.dir, 65, &r0, 1));
  CHECK_EQ(npk_delete_slice(s, "w", 0, 1, 10), NPK_OK);
  CHECK_EQ(stat(P(t.dir, "deleted_w.npkb"), &b0), 0);
  CHECK_EQ(b0.st_size, 16);
  CHECK_EQ(npk_append(s, "w", NPK_FLOAT32, 2, shw, ""), NPK_OK);
  CHECK_EQ(stat(P(t.dir, "deleted_w.npkb"), &b1), 0);
  CHECK_EQ(b1.st_ino, b0.st_ino);
  CHECK(bitmap_of_is(t.dir, "w", 15, dead, 10));
  tu_close(st, s);
  CHECK(reopened_live(t.dir, 64));
  s = tu_open(t.dir, 0, &st);
  CHECK(s && npk_array_info(s, "w", &info) == NPK_OK && info.rows == 15 &&
        info.live_rows == 5);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* A commit that patched a bitmap in place and then failed (a write or a
** sync of the journal, the bitmap, the catalog) is put back from its
** journal at once; the same store object then commits the next DELETE,
** and the bitmap reads back as written, by it and by a fresh one. */
static void test_bitmap_fault_same_object(void) {
  static const char *const kinds[] = {"fsync", "write"};
  enum { N = 1000 };
  static int32_t v[N];
  for (int k = 0; k < 2; k++) {
    for (int nth = 1; nth <= 6; nth++) {
      Tmp t;
      NpkStore *st;
      NpkArrayInfo info;
      uint64_t sh[1] = {N}, del[3] = {3, 5, 9}, gone[2] = {3, 9};
      int rc;
      NpkSession *s = bitmap_store(&t, &st, v, sh[0], del[0]);
      npk_test_fault(kinds[k], nth, EIO);
      rc = npk_delete_rows(s, "a", &del[1], 1);
      npk_test_fault(kinds[k], 0, 0);
      CHECK(rc == NPK_OK || rc == NPK_IOERR);
      CHECK(!tu_journal_hot(t.dir));
      if (rc == NPK_OK) CHECK(bitmap_is(t.dir, N, del, 2));
      else CHECK(bitmap_is(t.dir, N, gone, 1));
      CHECK_EQ(npk_delete_rows(s, "a", &del[2], 1), NPK_OK);
      if (rc == NPK_OK) CHECK(bitmap_is(t.dir, N, del, 3));
      else CHECK(bitmap_is(t.dir, N, gone, 2));
      CHECK(npk_array_info(s, "a", &info) == NPK_OK &&
            info.live_rows == (rc == NPK_OK ? N - 3 : N - 2));
      tu_close(st, s);
      CHECK(reopened_live(t.dir, rc == NPK_OK ? N - 3 : N - 2));
      tu_tmp_done(&t);
      if (rc == NPK_OK) break;
    }
  }
}

/* The body of test_bitmap_read_only, as a user the file permissions bind:
** 0 when the DELETE after the bitmap was made read-only succeeds and
** reads back. */
static int delete_past_read_only(const char *dir) {
  enum { N = 100 };
  static int32_t v[N];
  uint64_t sh[1] = {N}, del[2] = {3, 5};
  NpkStore *st;
  NpkSession *s = tu_open(dir, NPK_OPEN_CREATE, &st);
  int code = 0;
  if (!s) return 10;
  if (npk_save(s, "a", NPK_INT32, 1, sh, v) != NPK_OK ||
      npk_delete_rows(s, "a", &del[0], 1) != NPK_OK)
    code = 11;
  else if (chmod(P(dir, "deleted_a.npkb"), 0444) != 0)
    code = 12;
  else if (npk_delete_rows(s, "a", &del[1], 1) != NPK_OK) {
    printf("  %s\n", npk_errmsg(s));
    fflush(stdout);
    code = 13;
  } else if (!bitmap_is(dir, N, del, 2)) {
    code = 14;
  }
  tu_close(st, s);
  return code || reopened_live(dir, N - 2) ? code : 15;
}

/* A bitmap this process may read but not write (its mode 0444: NumPack or
** a copy left it so) is replaced whole, as the directory allows, where a
** patch in place could only fail once its journal was written. */
static void test_bitmap_read_only(void) {
  Tmp t;
  pid_t pid;
  int status = 0;
  tu_tmp_init(&t);
  chmod(t.root, 0755);
  CHECK_EQ(mkdir(t.dir, 0755), 0);
  CHECK_EQ(chown(t.dir, 65534, 65534), geteuid() == 0 ? 0 : -1);
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    alarm(20);
    if (geteuid() == 0 &&
        (setgroups(0, NULL) || setgid(65534) || setuid(65534)))
      _exit(90);
    _exit(geteuid() == 0 ? 91 : delete_past_read_only(t.dir));
  }
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 91) {
    printf("  (as root: permissions bind nothing, skipped)\n");
  } else {
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      printf("  child status 0x%x\n", status);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  tu_tmp_done(&t);
}

/* Another process deletes a row of "a", patching the bitmap this store
** object read: its next write reads the catalog again, loads the bitmap
** afresh, and patches the file that process left, in place. */
static void test_bitmap_patched_elsewhere(void) {
  enum { N = 1000 };
  Tmp t;
  NpkStore *st;
  NpkStats stats;
  NpkArrayInfo info;
  struct stat b0, b1;
  static int32_t v[N];
  uint64_t sh[1] = {N}, del[3] = {3, 5, 900};
  pid_t pid;
  int status = 0;
  NpkSession *s = bitmap_store(&t, &st, v, sh[0], del[0]);
  CHECK_EQ(stat(P(t.dir, "deleted_a.npkb"), &b0), 0);
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    NpkStore *cst = NULL;
    NpkSession *cs = NULL;
    alarm(20);
    if (npk_store_open(t.dir, 0, &cst, NULL) != NPK_OK) _exit(10);
    if (npk_session_open(cst, &cs) != NPK_OK) _exit(11);
    _exit(npk_delete_rows(cs, "a", &del[2], 1) == NPK_OK ? 0 : 12);
  }
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK_EQ(npk_delete_rows(s, "a", &del[1], 1), NPK_OK);
  npk_store_stats(st, &stats);
  CHECK_EQ(stats.last_commit_fsyncs, 4);
  CHECK_EQ(stat(P(t.dir, "deleted_a.npkb"), &b1), 0);
  CHECK_EQ(b1.st_ino, b0.st_ino);
  CHECK(bitmap_is(t.dir, N, del, 3));
  CHECK(npk_array_info(s, "a", &info) == NPK_OK && info.live_rows == N - 3);
  tu_close(st, s);
  CHECK(reopened_live(t.dir, N - 3));
  tu_tmp_done(&t);
}

static int cmp_u64_asc(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Rows deleted far apart in a large bitmap: the bytes the patch covers are
** checked a group of runs at a time (runs further apart than a page read
** apart, a group at most 64 KB and some), every run patched in place, and
** the file reads back as written. */
static void test_bitmap_patch_far_apart(void) {
  enum { N = 2000000, FAR = 50, NEAR = 2000 };
  Tmp t;
  NpkStore *st;
  struct stat b0, b1;
  static int8_t big[N];
  static uint64_t del[1 + FAR + NEAR];
  uint64_t sh[1] = {N}, one = 1;
  int n = 0;
  tu_tmp_init(&t);
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK_EQ(npk_save(s, "big", NPK_INT8, 1, sh, big), NPK_OK);
  CHECK_EQ(npk_delete_rows(s, "big", &one, 1), NPK_OK);
  CHECK_EQ(stat(P(t.dir, "deleted_big.npkb"), &b0), 0);
  /* 50 rows 40,000 apart (5,000 bytes), then 2,000 rows 1,000 apart:
  ** groups of one run, then groups cut by their size. */
  for (int i = 0; i < FAR; i++) del[n++] = 40000 * (uint64_t)(i + 1) - 3;
  CHECK_EQ(npk_delete_rows(s, "big", del, (uint64_t)n), NPK_OK);
  for (int i = 0; i < NEAR; i++) del[n++] = 1000 * (uint64_t)i + 7;
  CHECK_EQ(npk_delete_rows(s, "big", del + FAR, NEAR), NPK_OK);
  CHECK_EQ(stat(P(t.dir, "deleted_big.npkb"), &b1), 0);
  CHECK_EQ(b1.st_ino, b0.st_ino);
  del[n++] = 1;
  qsort(del, (size_t)n, sizeof del[0], cmp_u64_asc);
  CHECK(bitmap_of_is(t.dir, "big", N, del, n));
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* Rows appended to an array with deleted rows (changed in the transaction
** before), then rolled back to a savepoint, leave its bitmap as committed: the commit of the rest of the
** transaction does not write it (same file, untouched; four syncs: the
** journal, the data file, the catalog, the idle journal), where it was
** replaced whole (a new file, a backup link, two directory syncs more). */
static void test_bitmap_unchanged_not_written(void) {
  enum { N = 1000 };
  Tmp t;
  NpkStore *st;
  NpkStats stats;
  struct stat b0, b1;
  static int32_t v[N];
  uint64_t sh[1] = {N}, sh100[1] = {100}, r3 = 3, r7 = 7;
  int32_t x = -7;
  int lvl;
  tu_tmp_init(&t);
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK_EQ(npk_save(s, "a", NPK_INT32, 1, sh, v), NPK_OK);
  CHECK_EQ(npk_delete_rows(s, "a", &r3, 1), NPK_OK);
  CHECK_EQ(stat(P(t.dir, "deleted_a.npkb"), &b0), 0);
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(npk_replace_rows(s, "a", &r7, 1, &x), NPK_OK);
  CHECK_EQ(npk_savepoint(s, &lvl), NPK_OK);
  CHECK_EQ(npk_append(s, "a", NPK_INT32, 1, sh100, v), NPK_OK);
  CHECK_EQ(npk_rollback_to(s, lvl), NPK_OK);
  CHECK_EQ(npk_commit(s), NPK_OK);
  npk_store_stats(st, &stats);
  CHECK_EQ(stats.last_commit_fsyncs, 4);
  CHECK_EQ(stat(P(t.dir, "deleted_a.npkb"), &b1), 0);
  CHECK(b1.st_ino == b0.st_ino && b1.st_mtim.tv_sec == b0.st_mtim.tv_sec &&
        b1.st_mtim.tv_nsec == b0.st_mtim.tv_nsec);
  CHECK(bitmap_is(t.dir, N, &r3, 1));
  /* The next DELETE patches it in place. */
  CHECK_EQ(npk_delete_rows(s, "a", &r7, 1), NPK_OK);
  npk_store_stats(st, &stats);
  CHECK_EQ(stats.last_commit_fsyncs, 4);
  CHECK_EQ(stat(P(t.dir, "deleted_a.npkb"), &b1), 0);
  CHECK_EQ(b1.st_ino, b0.st_ino);
  {
    uint64_t both[2] = {3, 7};
    CHECK(bitmap_is(t.dir, N, both, 2));
  }
  tu_close(st, s);
  CHECK(reopened_live(t.dir, N - 2));
  tu_tmp_done(&t);
}

/* One transaction deletes a row of each of 40 arrays whose bitmaps this
** store object holds: each is checked and patched in place (same file)
** and reads back as written. */
static void test_bitmap_many_in_one_commit(void) {
  enum { K = 40 };
  Tmp t;
  NpkStore *st;
  struct stat b0[K], b1;
  static int32_t v[100];
  uint64_t sh[1] = {100}, r3 = 3, r5 = 5, both[2] = {3, 5};
  char name[16], rel[32];
  int ok = 1;
  tu_tmp_init(&t);
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK_EQ(npk_begin(s), NPK_OK);
  for (int k = 0; k < K; k++) {
    snprintf(name, sizeof name, "a%d", k);
    CHECK_EQ(npk_save(s, name, NPK_INT32, 1, sh, v), NPK_OK);
    CHECK_EQ(npk_delete_rows(s, name, &r3, 1), NPK_OK);
  }
  CHECK_EQ(npk_commit(s), NPK_OK);
  CHECK_EQ(npk_begin(s), NPK_OK);
  for (int k = 0; k < K; k++) {
    snprintf(name, sizeof name, "a%d", k);
    snprintf(rel, sizeof rel, "deleted_%s.npkb", name);
    CHECK_EQ(stat(P(t.dir, rel), &b0[k]), 0);
    CHECK_EQ(npk_delete_rows(s, name, &r5, 1), NPK_OK);
  }
  CHECK_EQ(npk_commit(s), NPK_OK);
  tu_close(st, s);
  for (int k = 0; k < K && ok; k++) {
    snprintf(name, sizeof name, "a%d", k);
    snprintf(rel, sizeof rel, "deleted_%s.npkb", name);
    ok = bitmap_of_is(t.dir, name, 100, both, 2) &&
         stat(P(t.dir, rel), &b1) == 0 && b1.st_ino == b0[k].st_ino;
  }
  CHECK(ok);
  tu_tmp_done(&t);
}

/* A journal shorter than the idle one before it is written over it and
** the file keeps its length (no ftruncate, so fdatasync has no length to
** commit); the header says where the records end.  A commit that dies
** after changing the data file, with an earlier commit's longer records
** behind its own, is played back from its own records: the rows come back
** and the store reads as before. */
static void test_journal_keeps_length(void) {
  enum { N = 10000, K = 1000 };
  Tmp t;
  NpkStore *st;
  struct stat j0, j1;
  static int32_t v[N], w[K], one = -5;
  static uint64_t rows[K];
  uint64_t sh[1] = {N}, r7 = 7;
  size_t n = 0;
  int status = 0;
  unsigned char *data;
  tu_tmp_init(&t);
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  for (int i = 0; i < N; i++) v[i] = i;
  for (int i = 0; i < K; i++) {
    rows[i] = (uint64_t)i * 2;
    w[i] = -i;
  }
  CHECK_EQ(npk_save(s, "a", NPK_INT32, 1, sh, v), NPK_OK);
  CHECK_EQ(npk_replace_rows(s, "a", rows, K, w), NPK_OK);
  for (int i = 0; i < K; i++) v[i * 2] = -i;
  CHECK_EQ(stat(P(t.dir, TU_JOURNAL), &j0), 0);
  CHECK(j0.st_size > K * 8);
  CHECK_EQ(npk_replace_rows(s, "a", &r7, 1, &one), NPK_OK);
  v[7] = one;
  CHECK_EQ(stat(P(t.dir, TU_JOURNAL), &j1), 0);
  CHECK_EQ(j1.st_ino, j0.st_ino);
  CHECK_EQ(j1.st_size, j0.st_size);
  CHECK(!tu_journal_hot(t.dir));
  tu_close(st, s);
  /* A child replaces row 9 and dies once the data file is changed. */
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    int32_t x = 12345;
    uint64_t r9 = 9;
    NpkSession *cs = child_session(t.dir);
    npk_test_crash_at(5);
    _exit(npk_replace_rows(cs, "a", &r9, 1, &x) == NPK_OK ? 0 : 12);
  }
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 77);
  CHECK(tu_journal_hot(t.dir));
  CHECK_EQ(stat(P(t.dir, TU_JOURNAL), &j1), 0);
  CHECK_EQ(j1.st_size, j0.st_size);
  data = tu_read_file(P(t.dir, "data_a.npkd"), &n);
  CHECK(data && n == sizeof v);
  if (data && n == sizeof v) {
    int32_t x;
    memcpy(&x, data + 9 * 4, 4);
    CHECK_EQ(x, 12345);
  }
  free(data);
  /* The next write plays the hot journal back: row 9 is 9 again. */
  s = tu_open(t.dir, 0, &st);
  CHECK_EQ(npk_replace_rows(s, "a", &r7, 1, &one), NPK_OK);
  CHECK(!tu_journal_hot(t.dir));
  data = tu_read_file(P(t.dir, "data_a.npkd"), &n);
  CHECK(data && n == sizeof v && memcmp(data, v, sizeof v) == 0);
  free(data);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* A journal over 1 MB is made idle, synced, at the commit point, then cut
** back to its header: one large commit leaves no large file behind, and
** no block of it that is freed holds a journal's magic.  The commit syncs
** as many times as one that removed the journal (the journal, where that
** synced the directory). */
static void test_large_journal_cut(void) {
  enum { N = 100000, K = 40000 };
  Tmp t;
  NpkStore *st;
  NpkStats stats;
  JWatch w;
  struct stat j0, j1;
  uint64_t sh[1] = {N}, *rows = malloc(K * sizeof *rows);
  int32_t *v = calloc(N, sizeof *v);
  tu_tmp_init(&t);
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK(s && rows && v);
  if (s && rows && v) {
    for (uint64_t i = 0; i < K; i++) rows[i] = i * 2;
    jw_start(&w, t.dir);
    CHECK_EQ(npk_save(s, "big", NPK_INT32, 1, sh, v), NPK_OK);
    CHECK_EQ(stat(P(t.dir, TU_JOURNAL), &j0), 0);
    CHECK_EQ(npk_replace_rows(s, "big", rows, K, v), NPK_OK);
    npk_store_stats(st, &stats);
    /* The journal, the data file, the catalog, the idle journal. */
    CHECK_EQ(stats.last_commit_fsyncs, 4);
    CHECK_EQ(stat(P(t.dir, TU_JOURNAL), &j1), 0);
    CHECK_EQ(j0.st_ino, j1.st_ino);
    CHECK(journal_cut_idle(t.dir));
    CHECK_EQ(removed_journals_held(t.dir), 0);
    /* The next large commit writes over the same file again. */
    for (uint64_t i = 0; i < K; i++) rows[i] = i * 2 + 1;
    CHECK_EQ(npk_replace_rows(s, "big", rows, K, v), NPK_OK);
    CHECK_EQ(stat(P(t.dir, TU_JOURNAL), &j1), 0);
    CHECK_EQ(j0.st_ino, j1.st_ino);
    CHECK(journal_cut_idle(t.dir));
    CHECK_EQ(npk_replace_rows(s, "big", rows, 1, v), NPK_OK);
    CHECK(!tu_journal_hot(t.dir));
    CHECK_EQ(jw_end(&w), 0);
    CHECK(!tu_exists(P(t.dir, "npktmp-journal")));
  }
  tu_close(st, s);
  free(rows);
  free(v);
  tu_tmp_done(&t);
}

/* A store's first commit makes its journal under a temporary name, its
** zeroed header synced, and only then gives it the journal's name; a
** played-back journal is made idle, synced, and kept, never removed with
** its magic.  So no journal's magic is ever in freed blocks, and the
** journal's name never shows a new file's unsynced blocks. */
static void test_journal_blocks_never_freed_hot(void) {
  Tmp t;
  Model m;
  JWatch w;
  NpkStore *st;
  NpkSession *s;
  s = open_base(&t, &st, &m);
  CHECK(!tu_exists(P(t.dir, TU_JOURNAL)));
  jw_start(&w, t.dir);
  if (s) CHECK_EQ(op_append(s, &m), NPK_OK);
  CHECK_EQ(jw_end(&w), 0);
  CHECK(tu_exists(P(t.dir, TU_JOURNAL)));
  CHECK(!tu_journal_hot(t.dir));
  CHECK(!tu_exists(P(t.dir, "npktmp-journal")));
  tu_close(st, s);
  model_free(&m);
  /* A hot journal (killed after the catalog was written), played back. */
  int status = run_crashing(t.dir, crash_rows_txn, 1, 6);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 77);
  CHECK(tu_journal_hot(t.dir));
  jw_start(&w, t.dir);
  s = tu_open(t.dir, 0, &st);
  if (s) CHECK_EQ(npk_recover(s), NPK_OK);
  CHECK_EQ(jw_end(&w), 0);
  CHECK(!tu_journal_hot(t.dir));
  CHECK(tu_exists(P(t.dir, TU_JOURNAL)));
  /* The next commit opens it again, its name synced. */
  jw_start(&w, t.dir);
  if (s) CHECK_EQ(npk_replace_rows(s, "a", (uint64_t[]){0}, 1,
                                   (int32_t[]){7, 7, 7}), NPK_OK);
  CHECK_EQ(jw_end(&w), 0);
  CHECK(!tu_journal_hot(t.dir));
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* Leftovers of crashed commits are removed by the first write of a process
** and by any write that finds the commit mark set (a commit died after
** setting it); other writes do not list the directory. */
static void test_sweep_when_needed(void) {
  Tmp t;
  NpkStore *st;
  Model m;
  NpkSession *s = open_base(&t, &st, &m);
  const char *bak = P(t.dir, "data_a.npkd-npkbak");
  tu_write_file(bak, "x", 1);
  CHECK_EQ(op_append(s, &m), NPK_OK);
  CHECK(!tu_exists(bak));
  tu_write_file(bak, "x", 1);
  CHECK_EQ(op_append(s, &m), NPK_OK);
  CHECK(tu_exists(bak));
  /* As a commit of another process that died with the mark set (the
  ** word at byte 64 of the lock file). */
  int fd = open(P(t.dir, TU_LOCK), O_RDWR);
  unsigned char one[8] = {1};
  CHECK(fd >= 0 && pwrite(fd, one, 8, 64) == 8);
  if (fd >= 0) close(fd);
  CHECK_EQ(op_append(s, &m), NPK_OK);
  CHECK(!tu_exists(bak));
  CHECK(view_is(s, &m, 1));
  close_and_check(st, s, &t, &m);
}

/* Another process holding the store at DIR open sees each of ROUNDS
** commits as soon as it is made: COMMIT(S, I) makes commit I here, and a
** child that holds the store checks with SEEN(S, I) under a read (0 when
** it sees the state after commit I - 1; I = 0 before any), the two in
** lockstep through pipes. */
static void seen_elsewhere(const char *dir, int rounds,
                           int (*commit)(NpkSession *, int),
                           int (*seen)(NpkSession *, int)) {
  int up[2], down[2];
  CHECK(pipe(up) == 0 && pipe(down) == 0);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    char c = 0;
    close(up[0]);
    close(down[1]);
    NpkSession *s = child_session(dir);
    for (int i = 0; i <= rounds; i++) {
      int rc;
      if (i && read(down[0], &c, 1) != 1) _exit(12);
      if (npk_read_begin(s) != NPK_OK) _exit(13);
      rc = seen(s, i);
      npk_read_end(s);
      if (rc) _exit(20 + rc);
      if (write(up[1], "r", 1) != 1) _exit(15);
    }
    npk_session_close(s);
    _exit(0);
  }
  close(up[1]);
  close(down[0]);
  NpkStore *st;
  NpkSession *s = tu_open(dir, 0, &st);
  char c = 0;
  int ok = read(up[0], &c, 1) == 1;
  for (int i = 0; i < rounds && ok && s; i++)
    ok = commit(s, i) == NPK_OK && write(down[1], "c", 1) == 1 &&
         read(up[0], &c, 1) == 1;
  CHECK(ok);
  close(down[1]);
  check_child_ok(pid);
  tu_close(st, s);
  close(up[0]);
}

static int commit_append(NpkSession *s, int i) {
  (void)i;
  return op_append(s, NULL);
}

static int seen_appended(NpkSession *s, int i) {
  NpkArrayInfo in;
  if (npk_array_info(s, "a", &in) != NPK_OK) return 1;
  return in.shape[0] != 6 + 2 * (uint64_t)i ? 2 : 0;
}

/* Another process holding the store open sees every commit rewritten in
** place at once, however quickly they follow each other: the catalog keeps
** its inode and length, so only its modification time tells, and the
** clock may not have ticked between two commits. */
static void test_in_place_seen_elsewhere(void) {
  Tmp t;
  tu_tmp_init(&t);
  make_base(t.dir, NULL);
  seen_elsewhere(t.dir, 40, commit_append, seen_appended);
  tu_tmp_done(&t);
}

/* Commit I saves array "nI" of I + 1 rows holding 1, 2, ... */
static int commit_new(NpkSession *s, int i) {
  int32_t v[64];
  uint64_t sh[1] = {(uint64_t)i + 1};
  char name[16];
  for (int k = 0; k <= i; k++) v[k] = k + 1;
  snprintf(name, sizeof name, "n%d", i);
  return npk_save(s, name, NPK_INT32, 1, sh, v);
}

static int seen_new(NpkSession *s, int i) {
  NpkArrayInfo in;
  const void *p;
  char name[16];
  int n = 0;
  if (npk_array_count(s, &n) != NPK_OK || n != 4 + i) return 1;
  if (!i) return 0;
  snprintf(name, sizeof name, "n%d", i - 1);
  if (npk_array_info_at(s, 3 + i, &in) != NPK_OK ||
      strcmp(in.name, name) != 0 || in.rows != (uint64_t)i)
    return 2;
  if (npk_row_ptr(s, name, (uint64_t)i - 1, &p) != NPK_OK ||
      *(const int32_t *)p != i)
    return 3;
  return 0;
}

/* Another process holding the store open sees every array appended to the
** catalog in place at once, and reads it: the catalog grows, keeping its
** inode. */
static void test_added_seen_elsewhere(void) {
  Tmp t;
  struct stat a, b;
  tu_tmp_init(&t);
  make_base(t.dir, NULL);
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &a), 0);
  seen_elsewhere(t.dir, 20, commit_new, seen_new);
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &b), 0);
  CHECK_EQ(a.st_ino, b.st_ino);
  tu_tmp_done(&t);
}

/* Commit I of a store of the base arrays and then "p0".."p19" (array p<k>
** has k + 1 rows, row j holding j + 1): even, drop p<I>, the first of them
** left, so that every entry after it moves and the catalog shrinks; odd,
** save p<I> over as two rows of I + 1 values, a longer entry. */
static int commit_drop_or_resize(NpkSession *s, int i) {
  int32_t v[64];
  uint64_t sh[2] = {2, (uint64_t)i + 1};
  char name[16];
  snprintf(name, sizeof name, "p%d", i);
  if (i % 2 == 0) return npk_drop(s, name);
  for (int k = 0; k < 2 * (i + 1); k++) v[k] = k + 1;
  return npk_save(s, name, NPK_INT32, 2, sh, v);
}

static int seen_drop_or_resize(NpkSession *s, int i) {
  int n = 0, dropped = (i + 1) / 2;
  if (npk_array_count(s, &n) != NPK_OK || n != 24 - dropped) return 1;
  for (int k = 0; k < 20; k++) {
    NpkArrayInfo in;
    const void *p;
    char name[16];
    int resized = k % 2 == 1 && k < i;
    uint64_t rows = resized ? 2 : (uint64_t)k + 1;
    if (k % 2 == 0 && k < i) continue;
    snprintf(name, sizeof name, "p%d", k);
    if (npk_array_info(s, name, &in) != NPK_OK || in.rows != rows ||
        in.ndim != (resized ? 2u : 1u))
      return 2;
    if (npk_row_ptr(s, name, rows - 1, &p) != NPK_OK ||
        *(const int32_t *)p != (resized ? k + 2 : k + 1))
      return 3;
  }
  return 0;
}

/* Another process holding the store open sees every drop and every save
** over with a longer entry, which rewrite the catalog in place from the
** changed entry on and cut or extend it, at once and whole. */
static void test_rewritten_seen_elsewhere(void) {
  Tmp t;
  NpkStore *st;
  NpkSession *s;
  struct stat a, b;
  int32_t v[64];
  tu_tmp_init(&t);
  make_base(t.dir, NULL);
  s = tu_open(t.dir, 0, &st);
  for (int k = 0; k < 20; k++) {
    uint64_t sh[1] = {(uint64_t)k + 1};
    char name[16];
    v[k] = k + 1;
    snprintf(name, sizeof name, "p%d", k);
    CHECK_EQ(npk_save(s, name, NPK_INT32, 1, sh, v), NPK_OK);
  }
  tu_close(st, s);
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &a), 0);
  seen_elsewhere(t.dir, 20, commit_drop_or_resize, seen_drop_or_resize);
  CHECK_EQ(stat(P(t.dir, TU_CATALOG), &b), 0);
  CHECK_EQ(a.st_ino, b.st_ino);
  tu_tmp_done(&t);
}

static void test_crash_autocommit(void) {
  static const Op list[] = {
    {"compact", op_compact}, {"seg_append", op_seg_append},
    {"save_over_bitmap", op_save_over_bm}, {"reset", op_reset},
    {"clone", op_clone}, {"delete_new_bitmap", op_delete_new_bitmap},
    {"drop_first", op_drop_first}, {"save_over", op_save_over},
  };
  for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
    crash_case(list[i].fn, 0, list[i].name);
}

/* Rows appended to "a", then "a" saved over: the journal's cut of the grown
** file meets the new, shorter one once it has the name. */
static int append_save_over(NpkSession *s, Model *m) {
  static const int32_t v[2] = {7, 8};
  uint64_t sh[2] = {1, 2};
  int rc = s ? npk_begin(s) : NPK_OK;
  if (rc == NPK_OK) rc = op_append(s, m);
  if (m) model_save(m, "a", NPK_INT32, 2, sh, v);
  if (rc == NPK_OK && s) rc = npk_save(s, "a", NPK_INT32, 2, sh, v);
  return rc;
}

/* Rows appended to "a", which is then dropped and saved again. */
static int append_drop_save(NpkSession *s, Model *m) {
  static const int32_t v[2] = {7, 8};
  uint64_t sh[2] = {1, 2};
  int rc = s ? npk_begin(s) : NPK_OK;
  if (rc == NPK_OK) rc = op_append(s, m);
  if (m) {
    model_drop(m, "a");
    model_save(m, "a", NPK_INT32, 2, sh, v);
  }
  if (rc == NPK_OK && s) rc = npk_drop(s, "a");
  if (rc == NPK_OK && s) rc = npk_save(s, "a", NPK_INT32, 2, sh, v);
  return rc;
}

/* Rows appended to "a", one deleted, "a" compacted and cloned. */
static int append_compact_clone(NpkSession *s, Model *m) {
  uint64_t r = 1;
  int rc = s ? npk_begin(s) : NPK_OK;
  if (rc == NPK_OK) rc = op_append(s, m);
  if (m) {
    model_delete(m, "a", 1);
    model_compact(m, "a");
  }
  if (rc == NPK_OK && s) rc = npk_delete_rows(s, "a", &r, 1);
  if (rc == NPK_OK && s) rc = npk_compact(s, "a");
  if (rc == NPK_OK) rc = op_clone(s, m);
  return rc;
}

/* Rows of "a" replaced, then rows appended and rolled back to a
** savepoint: the file grew and is cut to its rows. */
static int replace_append_undone(NpkSession *s, Model *m) {
  int rc = s ? npk_begin(s) : NPK_OK, level;
  if (rc == NPK_OK) rc = op_replace(s, m);
  if (rc == NPK_OK && s) rc = npk_savepoint(s, &level);
  if (rc == NPK_OK && s) rc = op_append(s, NULL);
  if (rc == NPK_OK && s) rc = npk_rollback_to(s, level);
  return rc;
}

/* A row appended to "c", then "a", the first array, dropped: the catalog
** is rewritten in place and cut. */
static int append_drop_first(NpkSession *s, Model *m) {
  static const unsigned char v[3] = {4, 4, 4};
  uint64_t sh[2] = {1, 3};
  int rc = s ? npk_begin(s) : NPK_OK;
  if (m) model_append(m, "c", 1, v);
  if (rc == NPK_OK && s) rc = npk_append(s, "c", NPK_UINT8, 2, sh, v);
  if (rc == NPK_OK) rc = op_drop_first(s, m);
  return rc;
}

/* Bytes past the rows of "a", "b" and "c", more than a commit appends. */
static void tails_past_rows(const char *dir) {
  static const char *const files[3] = {"data_a.npkd", "data_b.npkd",
                                       "data_c.npkd"};
  for (int i = 0; i < 3; i++) CHECK_EQ(tu_append_junk(P(dir, files[i]), 600), 0);
}

/* FN's commit killed at every step, over data files with bytes past their
** rows; its journal then played back with the Nth change to the disk
** failing, for N = 1, 2, ... on the same store until playback completes:
** every record met again after those before it were played.  No record
** of a commit's own journal may be refused; the store is then as before or
** after the commit (check_recovered). */
static void replay_case(OpFn fn, const char *label) {
  int completed = 0;
  for (int step = 1; step <= 40 && !completed; step++) {
    Tmp t;
    Model before, after;
    case_start(&t, &before, &after, fn, tails_past_rows);
    int status = run_crashing(t.dir, fn, 1, step);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    CHECK(code == 77 || code == 0);
    completed = code == 0;
    for (int nth = 1, rc = NPK_OK; nth < 200 && rc == NPK_OK &&
                                   tu_journal_hot(t.dir); nth++) {
      NpkStore *st;
      NpkSession *s = tu_open(t.dir, 0, &st);
      if (!s) continue;
      npk_test_fault("any", nth, EIO);
      rc = npk_recover(s);
      npk_test_fault(NULL, 0, 0);
      if (rc == NPK_IOERR) rc = NPK_OK;
      if (rc) {
        printf("  %s step %d, change %d failing: %s\n", label, step, nth,
               npk_errmsg(s));
        ctest_case_failures++;
      }
      tu_close(st, s);
    }
    check_recovered(t.dir, &before, &after, label, step);
    model_free(&before);
    model_free(&after);
    tu_tmp_done(&t);
  }
  CHECK(completed);
}

/* Commits that change files' lengths in place or replace them, played back
** in steps, with hard links and with backups that are copies. */
static void test_crash_replayed(void) {
  static const Op list[] = {
    {"append_save_over", append_save_over},
    {"append_drop_save", append_drop_save},
    {"append_compact_clone", append_compact_clone},
    {"replace_append_undone", replace_append_undone},
    {"append_drop_first", append_drop_first},
    {"bitmap_txn", crash_bitmap_txn},
    {"txn", crash_txn},
  };
  for (int copies = 0; copies < 2; copies++) {
    npk_test_no_links(copies);
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
      replay_case(list[i].fn, list[i].name);
  }
  npk_test_no_links(0);
}

/* A process crashes mid-commit while another process has the store open:
** the survivor must never see the half-applied commit. */
static void test_crash_reader_elsewhere(void) {
  int completed = 0;
  for (int step = 1; step <= 40 && !completed; step++) {
    Tmp t;
    Model before, after;
    case_start(&t, &before, &after, crash_txn, NULL);
    int up[2], down[2];
    CHECK(pipe(up) == 0 && pipe(down) == 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      char c;
      close(up[0]);
      close(down[1]);
      NpkSession *s = child_session(t.dir);
      if (crash_txn(s, NULL) != NPK_OK) _exit(12);
      if (write(up[1], "r", 1) != 1) _exit(15);
      if (read(down[0], &c, 1) != 1) _exit(16);
      npk_test_crash_at(step);
      _exit(npk_commit(s) == NPK_OK ? 0 : 13);
    }
    close(up[1]);
    close(down[0]);
    char c = 0;
    CHECK_EQ(read(up[0], &c, 1), 1);
    NpkStore *st;
    NpkSession *s = tu_open(t.dir, 0, &st);
    if (s) CHECK(view_is(s, &before, 1));
    CHECK_EQ(write(down[1], "c", 1), 1);
    int status = 0;
    waitpid(pid, &status, 0);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    CHECK(code == 77 || code == 0);
    completed = code == 0;
    if (s) {
      Buf got = {0}, wb = {0}, wa = {0};
      npk_set_busy_timeout(s, 1000);
      int rc = tu_dump(s, &got, 1);
      if (rc == NPK_BUSY) {
        /* The commit died after its journal was complete: readers wait
        ** for a write to recover the store. */
        CHECK(code == 77 && tu_journal_hot(t.dir));
        buf_free(&got);
        CHECK_EQ(npk_begin(s), NPK_OK);
        CHECK_EQ(npk_rollback(s), NPK_OK);
        rc = tu_dump(s, &got, 1);
      }
      CHECK_EQ(rc, NPK_OK);
      model_dump(&before, &wb);
      model_dump(&after, &wa);
      int res = buf_eq(&got, &wb) ? 0 : buf_eq(&got, &wa) ? 1 : -1;
      if (res < 0 || (completed && res != 1)) {
        printf("  step %d (exit %d): the open store shows a wrong state\n",
               step, code);
        tu_dump_describe("got   ", &got);
        tu_dump_describe("before", &wb);
        tu_dump_describe("after ", &wa);
        ctest_case_failures++;
      }
      /* It can write, and what it writes lands on a consistent state. */
      uint64_t sh[1] = {1};
      CHECK_EQ(npk_save(s, "z", NPK_INT64, 1, sh, new_s), NPK_OK);
      if (res == 0) model_save(&before, "z", NPK_INT64, 1, sh, new_s);
      if (res == 1) model_save(&after, "z", NPK_INT64, 1, sh, new_s);
      tu_close(st, s);
      if (res >= 0) CHECK(disk_is(t.dir, res ? &after : &before));
      buf_free(&got);
      buf_free(&wb);
      buf_free(&wa);
    } else {
      tu_close(st, s);
    }
    close(up[0]);
    close(down[1]);
    model_free(&before);
    model_free(&after);
    tu_tmp_done(&t);
    if (code != 77 && code != 0) break;
  }
  CHECK(completed);
}

/* A leftover journal that is not a valid journal was never completely
** written, so its commit touched no file: readers read the store as it is
** (and leave the journal alone), the next write discards it. */
static void test_garbage_journal(void) {
  static const size_t sizes[] = {4096, 512, 3, 0};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    Tmp t;
    Model m;
    tu_tmp_init(&t);
    make_base(t.dir, &m);
    Snap before, after;
    unsigned char junk[4096];
    tu_fill(junk, sizeof junk, 99 + i);
    tu_write_file(P(t.dir, TU_JOURNAL), junk, sizes[i]);
    tu_snap(t.dir, &before);
    NpkStore *st;
    NpkSession *s = tu_open(t.dir, 0, &st);
    if (s) CHECK(view_is(s, &m, 1));
    tu_close(st, s);
    tu_snap(t.dir, &after);
    CHECK(tu_snap_eq(&before, &after));
    NpkStats stats;
    s = tu_open(t.dir, 0, &st);
    if (s) {
      npk_store_stats(st, &stats);
      CHECK_EQ(stats.recoveries, 0);
      CHECK(view_is(s, &m, 1));
      CHECK_EQ(op_append(s, &m), NPK_OK);
      CHECK(view_is(s, &m, 1));
    }
    tu_close(st, s);
    CHECK(!tu_journal_hot(t.dir));
    CHECK(disk_is(t.dir, &m));
    tu_snap_free(&before);
    tu_snap_free(&after);
    model_free(&m);
    tu_tmp_done(&t);
  }
}

/* ---- reading changes nothing ------------------------------------------ */

/* What crashed commits leave behind, as a reader may find it. */
static const char *const strays[] = {"data_a.npkd-npkbak", "npktmp-3-a",
                                     "metadata.npkm-tmp", "deleted_a.npkb-tmp"};

/* Read DIR every way, through a read-write and a read-only store object and
** two sessions each: 1 if all of it showed M. */
static int read_all(const char *dir, const Model *m) {
  int ok = 1;
  for (int ro = 0; ro <= 1; ro++) {
    NpkStore *st = NULL;
    NpkSession *s = NULL, *s2 = NULL;
    NpkArrayInfo info;
    NpkStats stats;
    int n = 0;
    char *err = NULL;
    if (npk_store_open(dir, ro ? NPK_OPEN_READONLY : 0, &st, &err) != NPK_OK) {
      printf("  open %s: %s\n", dir, err ? err : "");
      free(err);
      return 0;
    }
    if (npk_session_open(st, &s) != NPK_OK || npk_session_open(st, &s2) != NPK_OK)
      ok = 0;
    ok = ok && view_is(s, m, 1) && view_is(s2, m, 1) &&
         npk_array_count(s, &n) == NPK_OK && n == 4 &&
         npk_array_info(s2, "b", &info) == NPK_OK && info.live_rows == 3;
    npk_store_stats(st, &stats);
    npk_session_close(s2);
    tu_close(st, s);
  }
  return ok;
}

/* Opening and reading a store, read-write or read-only, creates no lock
** file, removes no leftover and changes no byte or time of any file; the
** first write creates the lock file and removes the leftovers.  Once the
** lock file is there, readers use it without changing it either. */
static void test_read_changes_nothing(void) {
  Tmp t;
  Model m;
  NpkStore *st;
  NpkSession *s;
  char *was;
  tu_tmp_init(&t);
  make_base(t.dir, &m);
  for (size_t i = 0; i < sizeof strays / sizeof strays[0]; i++)
    tu_write_file(P(t.dir, strays[i]), "x", 1);
  was = tu_listing(t.dir);
  CHECK(read_all(t.dir, &m));
  CHECK(tu_listing_same(t.dir, was));
  CHECK(!tu_exists(P(t.dir, TU_LOCK)));
  s = tu_open(t.dir, 0, &st);
  if (s) CHECK_EQ(op_append(s, &m), NPK_OK);
  tu_close(st, s);
  CHECK(tu_exists(P(t.dir, TU_LOCK)));
  for (size_t i = 0; i < sizeof strays / sizeof strays[0]; i++)
    CHECK(!tu_exists(P(t.dir, strays[i])));
  was = tu_listing(t.dir);
  CHECK(read_all(t.dir, &m));
  CHECK(tu_listing_same(t.dir, was));
  model_free(&m);
  tu_tmp_done(&t);
}

/* A session that began reading a store without a lock file takes shared
** locks as soon as a writer has created one: a commit then waits for its
** read to end, as for any reader. */
static void test_lock_file_appears(void) {
  Tmp t;
  Model m, mm;
  NpkStore *st, *wst;
  NpkSession *r, *w;
  tu_tmp_init(&t);
  make_base(t.dir, &m);
  r = tu_open(t.dir, 0, &st);
  if (r) CHECK(view_is(r, &m, 1));
  CHECK(!tu_exists(P(t.dir, TU_LOCK)));
  w = tu_open(t.dir, 0, &wst);
  if (r && w) {
    npk_set_busy_timeout(w, 50);
    CHECK_EQ(op_append(w, &m), NPK_OK);
    CHECK(tu_exists(P(t.dir, TU_LOCK)));
    model_copy(&mm, &m);
    CHECK_EQ(npk_read_begin(r), NPK_OK);
    CHECK(view_is(r, &m, 0));
    CHECK_EQ(npk_begin(w), NPK_OK);
    CHECK_EQ(op_append(w, &mm), NPK_OK);
    CHECK_EQ(npk_commit(w), NPK_BUSY);
    CHECK(view_is(r, &m, 0));
    npk_read_end(r);
    CHECK_EQ(npk_commit(w), NPK_OK);
    CHECK(view_is(r, &mm, 1));
  } else {
    model_copy(&mm, &m);
  }
  tu_close(wst, w);
  tu_close(st, r);
  model_free(&m);
  model_free(&mm);
  tu_tmp_done(&t);
}

/* A directory without a catalog is not a store: opening it to read is an
** error that creates nothing there; only a creating open makes a store. */
static void test_not_a_store(void) {
  Tmp t;
  NpkStore *st;
  NpkSession *s;
  char *was;
  tu_tmp_init(&t);
  mkdir(t.dir, 0755);
  tu_write_file(P(t.dir, "notes.txt"), "hello", 5);
  tu_write_file(P(t.dir, "old-npkbak"), "x", 1);
  was = tu_listing(t.dir);
  for (int ro = 0; ro <= 1; ro++) {
    char *err = NULL;
    st = NULL;
    CHECK_EQ(npk_store_open(t.dir, ro ? NPK_OPEN_READONLY : 0, &st, &err),
             NPK_NOFILE);
    CHECK(st == NULL);
    CHECK(err && strstr(err, "numpack: ") == err &&
          strstr(err, "is not a numpack store"));
    free(err);
  }
  CHECK(tu_listing_same(t.dir, was));
  s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  tu_close(st, s);
  CHECK(tu_exists(P(t.dir, TU_CATALOG)));
  CHECK(tu_exists(P(t.dir, "notes.txt")));
  tu_tmp_done(&t);
}

/* ---- readers where the process may not write -------------------------- */

static Model reader_model;   /* what the child reader must see */

/* In a child that may not write DIR: every read works and shows
** reader_model; a write is refused with NPK_READONLY (it would need the
** lock file, which cannot be created here).  0 if all went so. */
static int read_unwritable(const char *dir) {
  NpkStore *st = NULL;
  NpkSession *s = NULL;
  uint64_t sh[1] = {1};
  char *err = NULL;
  int rc;
  if (!read_all(dir, &reader_model)) return 1;
  if ((rc = npk_store_open(dir, 0, &st, &err)) != NPK_OK ||
      (rc = npk_session_open(st, &s)) != NPK_OK) {
    printf("  child: open: rc %d %s\n", rc, err ? err : "");
    return 2;
  }
  rc = npk_save(s, "z", NPK_INT64, 1, sh, new_s);
  if (rc != NPK_READONLY) {
    printf("  child: write: rc %d %s\n", rc, npk_errmsg(s));
    return 3;
  }
  if (!view_is(s, &reader_model, 1)) return 4;
  tu_close(st, s);
  return 0;
}

/* Run read_unwritable(DIR) in a child that may not write DIR: as user
** nobody (MOUNT 0), or as root on a read-only bind mount of DIR in a mount
** namespace of its own (MOUNT 1).  The child's exit status; 90 if the
** sandbox refused the identity change or the mount. */
static int child_reader(const char *dir, int mount_ro) {
  pid_t pid;
  int status = 0;
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    alarm(20);
    if (!mount_ro) {
      if (setgroups(0, NULL) || setgid(65534) || setuid(65534)) _exit(90);
    } else if (unshare(CLONE_NEWNS) ||
               mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
               mount(dir, dir, NULL, MS_BIND, NULL) ||
               mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL)) {
      _exit(90);
    }
    _exit(read_unwritable(dir));
  }
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
}

/* A store NumPack wrote (no lock file) in a directory this process may not
** write is read through the functions of the engine all the same, and
** nothing there changes. */
static void test_unwritable_dir(void) {
  for (int mount_ro = 0; mount_ro <= 1; mount_ro++) {
    Tmp t;
    char *was;
    int code;
    tu_tmp_init(&t);
    chmod(t.root, 0755);
    make_base(t.dir, &reader_model);
    chmod(t.dir, 0555);
    was = tu_listing(t.dir);
    code = child_reader(t.dir, mount_ro);
    if (code == 90 && geteuid() != 0) {
      printf("  (%s: not possible here, skipped)\n",
             mount_ro ? "read-only mount" : "another user");
    } else {
      if (code != 0) printf("  %s: child exit %d\n",
                            mount_ro ? "read-only mount" : "user nobody", code);
      CHECK_EQ(code, 0);
    }
    CHECK(tu_listing_same(t.dir, was));
    CHECK(!tu_exists(P(t.dir, TU_LOCK)));
    chmod(t.dir, 0755);
    model_free(&reader_model);
    tu_tmp_done(&t);
  }
}

/* ---- I/O failures ----------------------------------------------------- */

static const Op fault_ops[] = {
  {"append", op_append},
  {"replace", op_replace},
  {"delete", op_delete},
  {"delete_new_bitmap", op_delete_new_bitmap},
  {"save_new", op_save_new},
  {"save_over_bitmap", op_save_over_bm},
  {"drop", op_drop},
  {"clone", op_clone},
  {"compact", op_compact},
  {"reset", op_reset},
  {"seg_append", op_seg_append},
  {"txn", op_txn},
  {"rolled_back", op_rolled_back},
};

/* For every operation and N = 1, 2, ...: the Nth I/O call of KIND fails
** with ERR (or, for KIND "malloc", the Nth allocation).  A failed operation
** reports an I/O error (out of memory), leaves the store exactly as before
** (in the session, and on disk after a reopen, with no journal), and the
** same operation then succeeds. */
static void fault_case(const char *kind, int err, int max_nth) {
  int fired = 0;
  int nomem = strcmp(kind, "malloc") == 0 || strcmp(kind, "oom") == 0;
  for (size_t i = 0; i < sizeof fault_ops / sizeof fault_ops[0]; i++) {
    OpFn fn = fault_ops[i].fn;
    for (int nth = 1; nth <= max_nth; nth++) {
      Tmp t;
      Model before, after;
      case_start(&t, &before, &after, fn, NULL);
      Snap base, now;
      tu_snap(t.dir, &base);
      NpkStore *st;
      NpkSession *s = tu_open(t.dir, 0, &st);
      int f0 = ctest_case_failures, rc = NPK_OK;
      if (s) {
        npk_test_fault(kind, nth, err);
        rc = fn(s, NULL);
        npk_test_fault(kind, 0, 0);
      }
      if (!s) {
        tu_close(st, s);
      } else if (rc == NPK_OK) {
        /* The fault did not hit this operation (or was harmless). */
        CHECK(view_is(s, &after, 1));
        tu_close(st, s);
        CHECK(disk_is(t.dir, &after));
      } else {
        fired++;
        if (nomem ? rc != NPK_NOMEM
                  : !(rc == NPK_IOERR || (err == ENOSPC && rc == NPK_FULL))) {
          printf("  rc %d: %s\n", rc, npk_errmsg(s));
          CHECK(nomem ? rc == NPK_NOMEM
                      : rc == NPK_IOERR || (err == ENOSPC && rc == NPK_FULL));
        }
        CHECK_EQ(npk_in_txn(s), 0);
        CHECK(view_is(s, &before, 1));
        tu_close(st, s);
        CHECK(disk_is(t.dir, &before));
        tu_snap(t.dir, &now);
        CHECK(tu_snap_same_content(&base, &now));
        tu_snap_free(&now);
        CHECK_EQ(tu_leftovers(t.dir), 0);
        /* The same operation works afterwards. */
        s = tu_open(t.dir, 0, &st);
        if (s) {
          CHECK_EQ(fn(s, NULL), NPK_OK);
          CHECK(view_is(s, &after, 1));
        }
        tu_close(st, s);
        CHECK(disk_is(t.dir, &after));
      }
      if (ctest_case_failures != f0)
        printf("  (%s fault %d on %s, rc %d)\n", kind, nth, fault_ops[i].name,
               rc);
      tu_snap_free(&base);
      model_free(&before);
      model_free(&after);
      tu_tmp_done(&t);
      if (rc == NPK_OK) break;
    }
  }
  if (!fired) printf("  no \"%s\" fault ever hit an operation\n", kind);
  CHECK(fired > 0);
}

/* The disk fills up during an operation and stays full.  The operation
** fails with NPK_FULL, and undoing it needs no new space: no journal is
** left, and while the disk is still full both the failed session and
** another one read the state before it.  Once space is back the store on
** disk is as before and the operation works. */
static void test_fault_disk_full(void) {
  int fired = 0, undone = 0;
  for (size_t i = 0; i < sizeof fault_ops / sizeof fault_ops[0]; i++) {
    OpFn fn = fault_ops[i].fn;
    for (int nth = 1; nth <= 80; nth++) {
      Tmp t;
      Model before, after;
      NpkStore *st;
      NpkSession *s, *s2 = NULL;
      NpkStats st0, st1;
      int f0 = ctest_case_failures, rc = NPK_OK;
      case_start(&t, &before, &after, fn, NULL);
      s = tu_open(t.dir, 0, &st);
      if (s) {
        CHECK_EQ(npk_session_open(st, &s2), NPK_OK);
        npk_store_stats(st, &st0);
        npk_test_fault("full", nth, ENOSPC);
        rc = fn(s, NULL);
        if (rc != NPK_OK) {
          fired++;
          CHECK_EQ(rc, NPK_FULL);
          CHECK(!tu_journal_hot(t.dir));
          CHECK(view_is(s2, &before, 1));
          CHECK(view_is(s, &before, 1));
          npk_store_stats(st, &st1);
          undone += st1.recoveries > st0.recoveries;
        }
        npk_test_fault("full", 0, 0);
      }
      npk_session_close(s2);
      tu_close(st, s);
      if (rc != NPK_OK) {
        CHECK(disk_is(t.dir, &before));
        CHECK_EQ(tu_leftovers(t.dir), 0);
        s = tu_open(t.dir, 0, &st);
        if (s) CHECK_EQ(fn(s, NULL), NPK_OK);
        tu_close(st, s);
      }
      CHECK(disk_is(t.dir, &after));
      if (ctest_case_failures != f0)
        printf("  (disk full at write %d of %s, rc %d)\n", nth,
               fault_ops[i].name, rc);
      model_free(&before);
      model_free(&after);
      tu_tmp_done(&t);
      if (rc == NPK_OK) break;
    }
  }
  CHECK(fired > 0);
  /* Some commits filled the disk after changing files, and were undone
  ** from their journal there and then. */
  CHECK(undone > 0);
}

static void test_fault_write(void) { fault_case("write", ENOSPC, 60); }
static void test_fault_write_eio(void) { fault_case("write", EIO, 60); }
static void test_fault_fsync(void) { fault_case("fsync", EIO, 60); }
static void test_fault_rename(void) { fault_case("rename", EIO, 60); }
static void test_fault_ftruncate(void) { fault_case("ftruncate", EIO, 60); }
static void test_fault_any(void) { fault_case("any", EIO, 200); }
/* On a file system without hard links every backup is a copy, made and
** synced before the journal: a failure anywhere, the copy's own calls
** included, leaves the store as before and no copy behind. */
static void test_fault_any_nolinks(void) {
  npk_test_no_links(1);
  fault_case("any", EIO, 260);
  npk_test_no_links(0);
}
static void test_fault_full_nolinks(void) {
  npk_test_no_links(1);
  fault_case("write", ENOSPC, 60);
  npk_test_no_links(0);
}
/* Every allocation of every operation, as SQLite's out-of-memory
** simulation does through SQL (test/fixture/oom.test). */
static void test_fault_malloc(void) { fault_case("malloc", ENOMEM, 400); }
/* Memory runs out and stays out: a commit that has changed files must
** still finish or put them back. */
static void test_fault_oom(void) { fault_case("oom", ENOMEM, 400); }

/* The store as a fresh reader sees it (a read-only store object of its own,
** which parses the catalog file) must be the store as writer W sees it:
** every array's name, shape and time, and the header's byte total. */
static void check_readback(const char *dir, NpkSession *w, int line) {
  NpkStore *ro;
  NpkSession *r = tu_open(dir, NPK_OPEN_READONLY, &ro);
  int nw = -1, nr = -2;
  uint64_t total = 0;
  size_t n = 0;
  unsigned char *cat = tu_read_file(P(dir, TU_CATALOG), &n);
  if (!r || !cat) {
    ctest_case_failures++;
    printf("FAIL line %d: cannot read the store back\n", line);
    goto done;
  }
  npk_array_count(w, &nw);
  npk_array_count(r, &nr);
  if (nw != nr) {
    ctest_case_failures++;
    printf("FAIL line %d: %d arrays written, %d read back\n", line, nw, nr);
    goto done;
  }
  for (int i = 0; i < nw; i++) {
    NpkArrayInfo a, b;
    char name[256];
    CHECK_EQ(npk_array_info_at(w, i, &a), NPK_OK);
    snprintf(name, sizeof name, "%s", a.name);
    CHECK_EQ(npk_array_info_at(r, i, &b), NPK_OK);
    if (strcmp(name, b.name) != 0 || a.ndim != b.ndim ||
        a.dtype != b.dtype ||
        memcmp(a.shape, b.shape, a.ndim * sizeof a.shape[0]) != 0 ||
        a.modify_time != b.modify_time || a.live_rows != b.live_rows) {
      ctest_case_failures++;
      printf("FAIL line %d: array %d (%s) reads back as %s, %llu rows, "
             "time %llu (wanted %llu rows, time %llu)\n", line, i, name,
             b.name, (unsigned long long)b.rows,
             (unsigned long long)b.modify_time, (unsigned long long)a.rows,
             (unsigned long long)a.modify_time);
    }
    total += a.rows * a.row_bytes;
  }
  CHECK_EQ(get_u64(cat + 8), total);
done:
  free(cat);
  tu_close(ro, r);
}

/* A commit that only changes rows patches the catalog image the previous
** commit wrote, rather than encode every array: after every kind of commit
** the file reads back as the catalog the writer sees. */
static void test_catalog_patched(void) {
  Tmp t;
  NpkStore *st;
  NpkSession *s;
  uint64_t shape[2] = {4, 3}, one[2] = {1, 3}, two[2] = {2, 3}, rows[2];
  int32_t d[12] = {0};
  tu_tmp_init(&t);
  s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK_EQ(npk_save(s, "a", NPK_INT32, 2, shape, d), NPK_OK);
  CHECK_EQ(npk_save(s, "b", NPK_INT32, 2, shape, d), NPK_OK);
  CHECK_EQ(npk_save(s, "c", NPK_INT32, 1, shape, d), NPK_OK);
  check_readback(t.dir, s, __LINE__);
  CHECK_EQ(npk_append(s, "b", NPK_INT32, 2, two, d), NPK_OK);
  check_readback(t.dir, s, __LINE__);
  rows[0] = 1;
  CHECK_EQ(npk_delete_rows(s, "a", rows, 1), NPK_OK);
  check_readback(t.dir, s, __LINE__);
  rows[0] = 0;
  CHECK_EQ(npk_replace_rows(s, "c", rows, 1, d), NPK_OK);
  check_readback(t.dir, s, __LINE__);
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(npk_append(s, "a", NPK_INT32, 2, one, d), NPK_OK);
  CHECK_EQ(npk_append(s, "b", NPK_INT32, 2, one, d), NPK_OK);
  CHECK_EQ(npk_append(s, "b", NPK_INT32, 2, two, d), NPK_OK);
  CHECK_EQ(npk_commit(s), NPK_OK);
  check_readback(t.dir, s, __LINE__);
  CHECK_EQ(npk_save(s, "d", NPK_INT32, 2, two, d), NPK_OK);
  check_readback(t.dir, s, __LINE__);
  /* Saved over: another dtype and row shape, the same entry length. */
  CHECK_EQ(npk_save(s, "d", NPK_FLOAT32, 2, one, d), NPK_OK);
  check_readback(t.dir, s, __LINE__);
  CHECK_EQ(npk_save(s, "c", NPK_INT16, 1, shape, d), NPK_OK);
  check_readback(t.dir, s, __LINE__);
  CHECK_EQ(npk_compact(s, "a"), NPK_OK);
  check_readback(t.dir, s, __LINE__);
  CHECK_EQ(npk_append(s, "a", NPK_INT32, 2, two, d), NPK_OK);
  check_readback(t.dir, s, __LINE__);
  CHECK_EQ(npk_drop(s, "b"), NPK_OK);
  check_readback(t.dir, s, __LINE__);
  CHECK_EQ(npk_append(s, "d", NPK_FLOAT32, 2, one, d), NPK_OK);
  CHECK_EQ(npk_append(s, "a", NPK_INT32, 2, one, d), NPK_OK);
  check_readback(t.dir, s, __LINE__);
  /* A commit that fails after the image was patched leaves it unused. */
  npk_test_fault("fsync", 1, EIO);
  CHECK_EQ(npk_append(s, "a", NPK_INT32, 2, one, d), NPK_IOERR);
  npk_test_fault("fsync", 0, 0);
  check_readback(t.dir, s, __LINE__);
  CHECK_EQ(npk_append(s, "a", NPK_INT32, 2, one, d), NPK_OK);
  check_readback(t.dir, s, __LINE__);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* A write whose commit mark cannot be stored in the lock file fails before
** it changes a file, naming the lock file: readers that copy rows without
** the lock could not tell that it is under way.  The same store object then
** commits as before. */
static void test_lockword_fault(void) {
  static OpFn const ops[] = {op_replace, op_append, op_save_new};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    Tmp t;
    NpkStore *st;
    Model m;
    NpkSession *s = open_base(&t, &st, &m);
    npk_test_fault("lockword", 1, EIO);
    CHECK_EQ(ops[i](s, NULL), NPK_IOERR);
    npk_test_fault("lockword", 0, 0);
    CHECK(strstr(npk_errmsg(s), "lock file metadata.npkm-lock") != NULL);
    CHECK(view_is(s, &m, 1));
    CHECK_EQ(ops[i](s, &m), NPK_OK);
    CHECK(view_is(s, &m, 1));
    close_and_check(st, s, &t, &m);
  }
}

/* A commit that fails before its journal (a directory where the backup of
** the file it replaces would go) reports that failure, even when the lock
** word it then puts back cannot be written either: the Nth write of a lock
** word fails, for every N up to and past the one the failed commit makes
** on its way down. */
static void test_first_error_kept(void) {
  int corrupt = 0;
  for (int nth = 1; nth <= 6; nth++) {
    Tmp t;
    NpkStore *st;
    Model m;
    NpkSession *s = open_base(&t, &st, &m);
    int rc, f0 = ctest_case_failures;
    CHECK_EQ(mkdir(P(t.dir, "data_c.npkd-npkbak"), 0755), 0);
    npk_test_fault("lockword", nth, EIO);
    rc = op_save_over(s, NULL);
    npk_test_fault("lockword", 0, 0);
    CHECK(rc != NPK_OK);
    if (rc == NPK_CORRUPT) {
      corrupt++;
      CHECK(strstr(npk_errmsg(s), "data_c.npkd-npkbak") != NULL);
    } else {
      CHECK_EQ(rc, NPK_IOERR);
      CHECK(strstr(npk_errmsg(s), "lock file") != NULL);
    }
    CHECK(!tu_journal_hot(t.dir));
    CHECK(view_is(s, &m, 1));
    if (ctest_case_failures != f0)
      printf("  (lock word fault %d: rc %d, %s)\n", nth, rc, npk_errmsg(s));
    rmdir(P(t.dir, "data_c.npkd-npkbak"));
    close_and_check(st, s, &t, &m);
  }
  CHECK(corrupt >= 1);
}

/* Whether a lock of TYPE on LEN bytes from BYTE of DIR's lock file would be
** granted to another process (an open file description of its own
** conflicts like one). */
static int lock_free(const char *dir, short type, off_t byte, off_t len) {
  struct flock fl;
  int fd = open(P(dir, TU_LOCK), O_RDWR);
  memset(&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = len;
  CHECK(fd >= 0 && fcntl(fd, F_OFD_GETLK, &fl) == 0);
  if (fd >= 0) close(fd);
  return fl.l_type == F_UNLCK;
}

/* A writer keeps a read lock on PENDING while it holds RESERVED, which
** keeps no reader out; every way back to reading (SHARED) lets it go, or
** the session would keep every later committer from taking PENDING for as
** long as it reads. */
static void test_pending_let_go(void) {
  Tmp t;
  NpkStore *st;
  Model m;
  NpkSession *s = open_base(&t, &st, &m), *r = NULL;
  CHECK_EQ(npk_session_open(st, &r), NPK_OK);
  npk_set_busy_timeout(s, 20);
  /* RESERVED, taken from no lock: readers still come in. */
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK(lock_free(t.dir, F_RDLCK, 0, 2));
  CHECK(!lock_free(t.dir, F_WRLCK, 0, 1));
  /* A statement reading, the transaction rolled back. */
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  CHECK_EQ(npk_rollback(s), NPK_OK);
  CHECK(lock_free(t.dir, F_WRLCK, 0, 1));
  CHECK(!lock_free(t.dir, F_WRLCK, 1, 1));
  npk_read_end(s);
  CHECK(lock_free(t.dir, F_WRLCK, 0, 3));
  /* Committed. */
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  CHECK_EQ(op_append(s, &m), NPK_OK);
  CHECK_EQ(npk_commit(s), NPK_OK);
  CHECK(lock_free(t.dir, F_WRLCK, 0, 1));
  npk_read_end(s);
  /* A commit kept waiting by a reader, then rolled back. */
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  CHECK_EQ(op_replace(s, NULL), NPK_OK);
  CHECK_EQ(npk_read_begin(r), NPK_OK);
  CHECK_EQ(npk_commit(s), NPK_BUSY);
  CHECK(lock_free(t.dir, F_RDLCK, 0, 2));
  npk_read_end(r);
  CHECK_EQ(npk_rollback(s), NPK_OK);
  CHECK(lock_free(t.dir, F_WRLCK, 0, 1));
  CHECK(view_is(s, &m, 1));
  npk_read_end(s);
  CHECK(lock_free(t.dir, F_WRLCK, 0, 3));
  npk_session_close(r);
  close_and_check(st, s, &t, &m);
}

/* Where the lock file keeps the commit mark and the commit count: part
** of the format every process that shares a store reads. */
enum { LOCK_MARK_OFF = 64, LOCK_SEQ_OFF = 72 };

/* The word at OFF of DIR's lock file. */
static uint64_t lock_word(const char *dir, off_t off) {
  unsigned char b[8] = {0};
  int fd = open(P(dir, TU_LOCK), O_RDONLY);
  CHECK(fd >= 0 && pread(fd, b, 8, off) == 8);
  close(fd);
  return get_u64(b);
}

/* A commit whose count cannot be raised as it ends keeps its mark set, so
** that readers without the lock do not take rows copied during it for
** whole; the next commit clears it. */
static void test_lockword_count_fault(void) {
  Tmp t;
  NpkStore *st;
  Model m;
  NpkSession *s = open_base(&t, &st, &m);
  uint64_t seq;
  npk_test_fault("lockword", 2, EIO);
  CHECK_EQ(op_replace(s, &m), NPK_OK);
  npk_test_fault("lockword", 0, 0);
  CHECK(lock_word(t.dir, LOCK_MARK_OFF) != 0);
  CHECK(view_is(s, &m, 1));
  seq = lock_word(t.dir, LOCK_SEQ_OFF);
  CHECK_EQ(op_append(s, &m), NPK_OK);
  CHECK_EQ(lock_word(t.dir, LOCK_MARK_OFF), 0);
  CHECK(lock_word(t.dir, LOCK_SEQ_OFF) > seq);
  CHECK(view_is(s, &m, 1));
  close_and_check(st, s, &t, &m);
}

/* Where the file system cannot keep the catalog's new time, a commit that
** appended an array's entry in place replaces the catalog whole as well:
** the appended bytes go with it, and the file written in place is let go. */
static void test_coarse_times_new_array(void) {
  Tmp t;
  NpkStore *st;
  Model m;
  struct stat a, b;
  NpkSession *s = coarse_commit(op_save_new, &t, &st, &m, &a, &b);
  CHECK(a.st_ino != b.st_ino);
  CHECK(b.st_size > a.st_size);
  CHECK(!tu_exists(P(t.dir, TU_CATALOG "-npkbak")));
  CHECK_EQ(open_removed(TU_CATALOG), 0);
  CHECK(view_is(s, &m, 1));
  check_readback(t.dir, s, __LINE__);
  CHECK_EQ(op_clone(s, &m), NPK_OK);
  check_readback(t.dir, s, __LINE__);
  CHECK(view_is(s, &m, 1));
  close_and_check(st, s, &t, &m);
}

/* A commit that appended arrays' entries to the catalog and then failed is
** undone from its journal (the catalog cut back to its old length), and the
** same store object goes on: the next commits, which add arrays again,
** write a catalog that reads back as the writer sees it. */
static void test_catalog_appended_fault(void) {
  static const char *const kinds[] = {"fsync", "write"};
  int fired = 0;
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    for (int nth = 1; nth <= 12; nth++) {
      Tmp t;
      NpkStore *st;
      Model m;
      struct stat a, b;
      int rc, f0 = ctest_case_failures;
      NpkSession *s = open_base(&t, &st, &m);
      CHECK_EQ(op_append(s, &m), NPK_OK);
      CHECK_EQ(stat(P(t.dir, TU_CATALOG), &a), 0);
      npk_test_fault(kinds[k], nth, EIO);
      rc = crash_new_txn(s, NULL);
      if (rc == NPK_OK) rc = npk_commit(s);
      npk_test_fault(kinds[k], 0, 0);
      if (npk_in_txn(s)) npk_rollback(s);
      if (rc != NPK_OK) {
        fired++;
        CHECK_EQ(stat(P(t.dir, TU_CATALOG), &b), 0);
        CHECK_EQ(a.st_size, b.st_size);
        CHECK(!tu_journal_hot(t.dir));
        CHECK(view_is(s, &m, 1));
        check_readback(t.dir, s, __LINE__);
        CHECK_EQ(crash_new_txn(s, &m), NPK_OK);
        CHECK_EQ(npk_commit(s), NPK_OK);
      } else {
        crash_new_txn(NULL, &m);
      }
      CHECK(view_is(s, &m, 1));
      check_readback(t.dir, s, __LINE__);
      CHECK_EQ(op_append(s, &m), NPK_OK);
      check_readback(t.dir, s, __LINE__);
      if (ctest_case_failures != f0)
        printf("  (%s fault %d, rc %d)\n", kinds[k], nth, rc);
      close_and_check(st, s, &t, &m);
      if (rc == NPK_OK) break;
    }
  }
  CHECK(fired > 0);
}

/* For commits that rewrite the catalog in place from a changed entry on
** (a drop of the first array, a save over one with another number of
** dimensions): the Nth write, sync or truncation failing, N = 1, 2, ...
** until the commit succeeds, leaves the store exactly as before -- in the
** session, on disk, and to a fresh reader -- and the same store object
** then makes the commit, in place (same inode).  WARM: a commit came
** first, so that the catalog's descriptor and the time it kept are the
** store object's own.  COARSE: the file system cannot keep the catalog's
** new time, and a commit that succeeds at once replaces the catalog whole
** all the same (a new inode, reading back as written). */
static void suffix_fault_case(const char *kind, OpFn fn, const char *name,
                              int warm, int coarse) {
  int fired = 0;
  for (int nth = 1; nth <= 80; nth++) {
    Tmp t;
    NpkStore *st;
    Model before, after;
    Snap base, now;
    struct stat a, b;
    int rc, f0 = ctest_case_failures;
    NpkSession *s = open_base(&t, &st, &before);
    if (warm) CHECK_EQ(op_replace(s, &before), NPK_OK);
    model_copy(&after, &before);
    fn(NULL, &after);
    CHECK_EQ(stat(P(t.dir, TU_CATALOG), &a), 0);
    if (coarse) {
      struct timespec ahead[2] = {{0, UTIME_OMIT}, {a.st_mtim.tv_sec + 100, 0}};
      CHECK_EQ(utimensat(AT_FDCWD, P(t.dir, TU_CATALOG), ahead, 0), 0);
      coarse_times = 1;
    }
    tu_snap(t.dir, &base);
    npk_test_fault(kind, nth, EIO);
    rc = fn(s, NULL);
    npk_test_fault(kind, 0, 0);
    coarse_times = 0;
    CHECK_EQ(stat(P(t.dir, TU_CATALOG), &b), 0);
    if (coarse && rc == NPK_OK) CHECK(a.st_ino != b.st_ino);
    if (rc != NPK_OK) {
      fired++;
      CHECK_EQ(rc, NPK_IOERR);
      CHECK_EQ(npk_in_txn(s), 0);
      CHECK(!tu_journal_hot(t.dir));
      CHECK(view_is(s, &before, 1));
      check_readback(t.dir, s, __LINE__);
      tu_snap(t.dir, &now);
      CHECK(tu_snap_same_content(&base, &now));
      tu_snap_free(&now);
      CHECK_EQ(fn(s, NULL), NPK_OK);
      CHECK_EQ(stat(P(t.dir, TU_CATALOG), &b), 0);
    }
    if (!coarse) CHECK_EQ(a.st_ino, b.st_ino);
    CHECK(view_is(s, &after, 1));
    check_readback(t.dir, s, __LINE__);
    if (ctest_case_failures != f0)
      printf("  (%s fault %d on %s%s%s, rc %d)\n", kind, nth, name,
             warm ? " after a commit" : "", coarse ? ", coarse times" : "",
             rc);
    tu_snap_free(&base);
    model_free(&before);
    close_and_check(st, s, &t, &after);
    if (rc == NPK_OK) break;
  }
  if (!fired) printf("  no \"%s\" fault hit %s\n", kind, name);
  CHECK(fired > 0);
}

static void test_suffix_faults(void) {
  static const char *const kinds[] = {"write", "fsync", "ftruncate", "any"};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    for (int warm = 0; warm <= 1; warm++) {
      suffix_fault_case(kinds[k], op_drop_first, "drop_first", warm, 0);
      suffix_fault_case(kinds[k], op_save_over, "save_over", warm, 0);
    }
  }
}

/* Where the file system cannot keep the catalog's new time, a drop of the
** first array, rewritten in place, replaces the catalog whole all the same;
** an I/O call failing anywhere in it, the in-place writes included, leaves
** the store as before. */
static void test_coarse_times_drop(void) {
  suffix_fault_case("any", op_drop_first, "drop_first", 0, 1);
}

/* ---- a store of many arrays: the transaction's catalog shares the
** committed one's pieces and copies what it changes (store_catalog.c) --- */

/* Arrays "m0".."m{MANY_N-1}", more than a chunk of the catalog's list;
** array i has (i % 5) + 1 rows, every row holding i. */
#define MANY_N (64 + 16)

/* What a many-array store holds: the ids of its arrays "m<id>" in catalog
** order (an id of MANY_N or more names an array saved later), their rows,
** and the value of row 0 of each. */
typedef struct Many Many;
struct Many {
  int n;
  int id[MANY_N + 4];
  uint64_t rows[MANY_N + 4];
  int32_t first[MANY_N + 4];
};

static void many_make(const char *dir, Many *m) {
  NpkStore *st;
  NpkSession *s = tu_open(dir, NPK_OPEN_CREATE, &st);
  int32_t v[5];
  char name[16];
  m->n = MANY_N;
  CHECK_EQ(npk_begin(s), NPK_OK);
  for (int i = 0; i < MANY_N; i++) {
    uint64_t shape[1] = {(uint64_t)(i % 5) + 1};
    for (int k = 0; k < 5; k++) v[k] = i;
    snprintf(name, sizeof name, "m%d", i);
    CHECK_EQ(npk_save(s, name, NPK_INT32, 1, shape, v), NPK_OK);
    m->id[i] = i;
    m->rows[i] = shape[0];
    m->first[i] = i;
  }
  CHECK_EQ(npk_commit(s), NPK_OK);
  tu_close(st, s);
}

/* Position of array ID in M, or -1. */
static int many_pos(const Many *m, int id) {
  for (int i = 0; i < m->n; i++)
    if (m->id[i] == id) return i;
  return -1;
}

/* S sees what M describes, in order (each mismatch printed). */
static int many_is(NpkSession *s, const Many *m) {
  NpkArrayInfo info;
  char name[16];
  const void *p;
  int n = -1, ok = 1;
  if (npk_array_count(s, &n) != NPK_OK || n != m->n) {
    printf("  %d arrays, want %d\n", n, m->n);
    return 0;
  }
  for (int i = 0; i < m->n && ok; i++) {
    snprintf(name, sizeof name, "m%d", m->id[i]);
    if (npk_array_info_at(s, i, &info) != NPK_OK ||
        strcmp(info.name, name) != 0 || info.rows != m->rows[i]) {
      printf("  array %d: want %s of %llu rows\n", i, name,
             (unsigned long long)m->rows[i]);
      ok = 0;
      break;
    }
    if (npk_read_begin(s) != NPK_OK) return 0;
    if (npk_row_ptr(s, name, 0, &p) != NPK_OK ||
        *(const int32_t *)p != m->first[i]) {
      printf("  %s: row 0 is not %d\n", name, (int)m->first[i]);
      ok = 0;
    }
    npk_read_end(s);
  }
  return ok;
}

/* DIR, opened afresh, holds what M describes. */
static int many_disk_is(const char *dir, const Many *m) {
  NpkStore *st;
  NpkSession *s = tu_open(dir, 0, &st);
  int ok = s && many_is(s, m);
  tu_close(st, s);
  return ok;
}

/* Changes of one transaction in a store of many arrays: seen by it alone
** while it is open, gone after ROLLBACK, from the committed catalog that
** its catalog shares pieces with too. */
static void test_many_rollback(void) {
  Tmp t;
  NpkStore *st;
  NpkSession *s, *r;
  Many before, mid;
  int32_t one[1] = {-7};
  uint64_t shape[1] = {1}, row0[1] = {0};
  tu_tmp_init(&t);
  many_make(t.dir, &before);
  s = tu_open(t.dir, 0, &st);
  CHECK_EQ(npk_session_open(st, &r), NPK_OK);
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(npk_append(s, "m70", NPK_INT32, 1, shape, one), NPK_OK);
  CHECK_EQ(npk_replace_rows(s, "m3", row0, 1, one), NPK_OK);
  CHECK_EQ(npk_replace_rows(s, "m77", row0, 1, one), NPK_OK);
  mid = before;
  mid.rows[70]++;
  mid.first[3] = mid.first[77] = -7;
  CHECK(many_is(s, &mid));
  CHECK(many_is(r, &before));
  CHECK_EQ(npk_rollback(s), NPK_OK);
  CHECK(many_is(s, &before));
  CHECK(many_is(r, &before));
  /* The same changes committed: every session sees them. */
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(npk_append(s, "m70", NPK_INT32, 1, shape, one), NPK_OK);
  CHECK_EQ(npk_replace_rows(s, "m3", row0, 1, one), NPK_OK);
  CHECK_EQ(npk_replace_rows(s, "m77", row0, 1, one), NPK_OK);
  CHECK_EQ(npk_commit(s), NPK_OK);
  CHECK(many_is(s, &mid));
  CHECK(many_is(r, &mid));
  npk_session_close(r);
  tu_close(st, s);
  CHECK(many_disk_is(t.dir, &mid));
  tu_tmp_done(&t);
}

/* Savepoints over changes to entries of several chunks, an array dropped
** (the later ones move up) and one added: ROLLBACK TO puts back exactly
** what was there at the savepoint. */
static void test_many_savepoints(void) {
  Tmp t;
  NpkStore *st;
  NpkSession *s, *r;
  Many before, at1, end;
  int32_t v[2] = {-1, -2};
  uint64_t one[1] = {1}, two[1] = {2}, row0[1] = {0};
  int l0, l1, p;
  tu_tmp_init(&t);
  many_make(t.dir, &before);
  s = tu_open(t.dir, 0, &st);
  CHECK_EQ(npk_session_open(st, &r), NPK_OK);
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(npk_savepoint(s, &l0), NPK_OK);
  CHECK_EQ(npk_append(s, "m70", NPK_INT32, 1, one, v), NPK_OK);
  at1 = before;
  at1.rows[70]++;
  CHECK_EQ(npk_savepoint(s, &l1), NPK_OK);
  CHECK_EQ(npk_replace_rows(s, "m5", row0, 1, v + 1), NPK_OK);
  CHECK_EQ(npk_drop(s, "m7"), NPK_OK);
  CHECK_EQ(npk_append(s, "m70", NPK_INT32, 1, one, v), NPK_OK);
  CHECK_EQ(npk_save(s, "m999", NPK_INT32, 1, two, v), NPK_OK);
  CHECK_EQ(npk_replace_rows(s, "m75", row0, 1, v + 1), NPK_OK);
  end = at1;
  end.first[5] = end.first[75] = -2;
  end.rows[70]++;
  for (int i = 7; i + 1 < end.n; i++) {
    end.id[i] = end.id[i + 1];
    end.rows[i] = end.rows[i + 1];
    end.first[i] = end.first[i + 1];
  }
  end.id[MANY_N - 1] = 999;
  end.rows[MANY_N - 1] = 2;
  end.first[MANY_N - 1] = -1;
  CHECK(many_is(s, &end));
  CHECK_EQ(npk_rollback_to(s, l1), NPK_OK);
  CHECK(many_is(s, &at1));
  CHECK(many_is(r, &before));
  /* Again after the rollback, then back to the outer savepoint. */
  CHECK_EQ(npk_drop(s, "m77"), NPK_OK);
  CHECK_EQ(npk_rollback_to(s, l0), NPK_OK);
  CHECK(many_is(s, &before));
  CHECK_EQ(npk_append(s, "m77", NPK_INT32, 1, one, v), NPK_OK);
  CHECK_EQ(npk_release(s, l0), NPK_OK);
  CHECK_EQ(npk_commit(s), NPK_OK);
  p = many_pos(&before, 77);
  before.rows[p]++;
  CHECK(many_is(s, &before));
  CHECK(many_is(r, &before));
  npk_session_close(r);
  tu_close(st, s);
  CHECK(many_disk_is(t.dir, &before));
  tu_tmp_done(&t);
}

/* Out of memory at every allocation in turn (once, or from then on) of a
** write to a store of many arrays -- an entry changed, an array dropped or
** added, and a transaction whose savepoint copies the catalog: the write
** fails with NPK_NOMEM and changes nothing, in the session and on disk
** (every file as it was, none left over), or succeeds. */
static void many_fault_case(const char *kind) {
  Tmp tmpl;
  Many before;
  Snap base;
  int fired = 0;
  tu_tmp_init(&tmpl);
  many_make(tmpl.dir, &before);
  tu_snap(tmpl.dir, &base);
  for (int op = 0; op < 4; op++) {
    /* A failed write leaves the store as it was: the next N runs on it. */
    Tmp t;
    tu_tmp_init(&t);
    tu_snap_restore(&base, t.dir);
    for (int nth = 1; nth <= 400; nth++) {
      NpkStore *st;
      NpkSession *s;
      Many after = before;
      Snap now;
      int32_t v[2] = {-1, -2};
      uint64_t one[1] = {1}, two[1] = {2};
      int rc = NPK_OK, lvl, f0 = ctest_case_failures;
      s = tu_open(t.dir, 0, &st);
      npk_test_fault(kind, nth, ENOMEM);
      switch (op) {
        case 0:
          rc = npk_append(s, "m70", NPK_INT32, 1, one, v);
          after.rows[70]++;
          break;
        case 1:
          rc = npk_drop(s, "m3");
          for (int i = 3; i + 1 < after.n; i++) {
            after.id[i] = after.id[i + 1];
            after.rows[i] = after.rows[i + 1];
            after.first[i] = after.first[i + 1];
          }
          after.n--;
          break;
        case 2:
          rc = npk_save(s, "m999", NPK_INT32, 1, two, v);
          after.id[after.n] = 999;
          after.rows[after.n] = 2;
          after.first[after.n++] = -1;
          break;
        default:
          rc = npk_begin(s);
          if (rc == NPK_OK) rc = npk_savepoint(s, &lvl);
          if (rc == NPK_OK) rc = npk_save(s, "m999", NPK_INT32, 1, two, v);
          if (rc == NPK_OK) rc = npk_append(s, "m70", NPK_INT32, 1, one, v);
          if (rc == NPK_OK) rc = npk_rollback_to(s, lvl);
          if (rc == NPK_OK) rc = npk_append(s, "m77", NPK_INT32, 1, one, v);
          if (rc == NPK_OK) rc = npk_commit(s);
          if (rc) npk_rollback(s);
          after.rows[77]++;
          break;
      }
      npk_test_fault(kind, 0, 0);
      if (rc == NPK_OK) {
        CHECK(many_is(s, &after));
        tu_close(st, s);
        CHECK(many_disk_is(t.dir, &after));
      } else {
        fired++;
        CHECK_EQ(rc, NPK_NOMEM);
        CHECK_EQ(npk_in_txn(s), 0);
        CHECK(many_is(s, &before));
        tu_close(st, s);
        tu_snap(t.dir, &now);
        CHECK(tu_snap_eq(&base, &now));
        tu_snap_free(&now);
        CHECK(many_disk_is(t.dir, &before));
      }
      if (ctest_case_failures != f0)
        printf("  (%s fault %d in operation %d, rc %d)\n", kind, nth, op, rc);
      if (rc == NPK_OK) break;
    }
    tu_tmp_done(&t);
  }
  tu_snap_free(&base);
  tu_tmp_done(&tmpl);
  CHECK(fired > 0);
}

static void test_many_fault_malloc(void) { many_fault_case("malloc"); }
static void test_many_fault_oom(void) { many_fault_case("oom"); }

int main(void) {
  RUN(test_autocommit);
  RUN(test_isolation_same_store);
  RUN(test_isolation_shared_file);
  RUN(test_isolation_second_handle);
  RUN(test_mtime_at_commit);
  RUN(test_catalog_patched);
  RUN(test_coarse_times_new_array);
  RUN(test_lockword_fault);
  RUN(test_lockword_count_fault);
  RUN(test_first_error_kept);
  RUN(test_pending_let_go);
  RUN(test_catalog_appended_fault);
  RUN(test_suffix_faults);
  RUN(test_many_rollback);
  RUN(test_many_savepoints);
  RUN(test_many_fault_malloc);
  RUN(test_many_fault_oom);
  RUN(test_rollback_each_op);
  RUN(test_rollback_all_ops);
  RUN(test_session_close_rolls_back);
  RUN(test_misuse);
  RUN(test_savepoint_each_op);
  RUN(test_savepoint_nested);
  RUN(test_busy_writer);
  RUN(test_commit_busy_reader);
  RUN(test_two_processes);
  RUN(test_unlocked_reads_whole);
  RUN(test_unlocked_rows_whole);
  RUN(test_rank_threads);
  RUN(test_own_commits);
  RUN(test_spill_small_rows);
  RUN(test_spill_regions);
  RUN(test_spill_faults);
  RUN(test_spill_not_on_cow);
  RUN(test_spill_lost_pages);
  RUN(test_spill_lost_pages_other_session);
  RUN(test_spill_lost_pages_pwrite);
  RUN(test_undo_replaced_twice_oom);
  RUN(test_retire_oom_under_reader);
  RUN(test_replace_again_malloc_faults);
  RUN(test_playback_syncs_once);
  RUN(test_journal_read_faults);
  RUN(test_data_read_fault);
  RUN(test_crash_journal_in_pieces);
  RUN(test_journal_runs);
  RUN(test_journal_checksum_windows);
  RUN(test_crash_txn);
  RUN(test_crash_rows_in_place);
  RUN(test_crash_after_unsynced_append);
  RUN(test_crash_append_journal_first);
  RUN(test_catalog_in_place);
  RUN(test_in_place_seen_elsewhere);
  RUN(test_added_seen_elsewhere);
  RUN(test_rewritten_seen_elsewhere);
  RUN(test_sweep_when_needed);
  RUN(test_journal_keeps_length);
  RUN(test_bitmap_in_place);
  RUN(test_bitmap_rewritten_same_time);
  RUN(test_bitmap_grows_in_place);
  RUN(test_bitmap_fault_same_object);
  RUN(test_bitmap_read_only);
  RUN(test_bitmap_patched_elsewhere);
  RUN(test_bitmap_patch_far_apart);
  RUN(test_bitmap_unchanged_not_written);
  RUN(test_bitmap_many_in_one_commit);
  RUN(test_crash_bitmap_in_place);
  RUN(test_large_journal_cut);
  RUN(test_journal_blocks_never_freed_hot);
  RUN(test_spare_linked_later);
  RUN(test_spare_of_earlier_release);
  RUN(test_journal_of_earlier_release);
  RUN(test_lock_words_mapped);
  RUN(test_coarse_times);
  RUN(test_coarse_times_drop);
  RUN(test_exact_time_by_chance);
  RUN(test_exact_time_held);
  RUN(test_suffix_same_bytes);
  RUN(test_catalog_suffix_max);
  RUN(test_in_place_foreign_catalog);
  RUN(test_foreign_catalog_after_plan);
  RUN(test_replace_without_room_to_map);
  RUN(test_crash_autocommit);
  RUN(test_crash_reader_elsewhere);
  RUN(test_crash_replayed);
  RUN(test_garbage_journal);
  RUN(test_read_changes_nothing);
  RUN(test_not_a_store);
  RUN(test_lock_file_appears);
  RUN(test_unwritable_dir);
  RUN(test_fault_disk_full);
  RUN(test_fault_write);
  RUN(test_fault_write_eio);
  RUN(test_fault_fsync);
  RUN(test_fault_rename);
  RUN(test_fault_ftruncate);
  RUN(test_fault_any);
  RUN(test_fault_any_nolinks);
  RUN(test_fault_full_nolinks);
  RUN(test_fault_malloc);
  RUN(test_fault_oom);
  return CTEST_END();
}
