/*
** store_trust_test.c — a store directory is untrusted input (a downloaded
** dataset, a shared volume): whatever its files are, symbolic links to
** files elsewhere, FIFOs, directories, a crafted journal or catalog, the
** engine must reach no file outside it.
**
** Each case builds a store next to a directory "outside" holding files a
** hostile store would aim at, does what a user would (open, read, append,
** replace, delete, drop), then checks the error and that nothing outside
** was created, changed or removed.
*/
#include <signal.h>
#include <sys/resource.h>

#include "store_testutil.h"
#include "store_int.h"

/* A 'C' record (the whole file as it was), which playback still accepts
** from journals written by earlier releases, though commits now back files
** up by hard link instead. */
static void jr_content(NpkBuf *b, const char *rel, const void *orig, size_t n,
                       int existed) {
  npk_buf_u8(b, 'C');
  npk_buf_u32(b, (uint32_t)strlen(rel));
  npk_buf_put(b, rel, strlen(rel));
  npk_buf_u8(b, (unsigned)existed);
  npk_buf_u64(b, existed ? n : 0);
  if (existed) npk_buf_put(b, orig, n);
}

/* ---- a store and the files outside it ------------------------------- */

typedef struct Trust {
  Tmp t;
  char out[1200];            /* ROOT/outside */
  char sub[1300];            /* ROOT/outside/sub */
  Snap out_snap, sub_snap;   /* their content at the start */
  int hot;                   /* the store holds a hot journal */
} Trust;

static const int64_t base_rows[3] = {1, 2, 3};

/* A store with array "a" (int64, rows 1 2 3), and outside it: "victim"
** (64 bytes), "sub/victim2" (64 bytes) and "sub/data_a.npkd" (rows 7 8 9). */
static void trust_init(Trust *x) {
  unsigned char junk[64];
  int64_t other[3] = {7, 8, 9};
  uint64_t shape[1] = {3};
  NpkStore *st = NULL;
  NpkSession *s;
  x->hot = 0;
  tu_tmp_init(&x->t);
  snprintf(x->out, sizeof x->out, "%s/outside", x->t.root);
  snprintf(x->sub, sizeof x->sub, "%s/sub", x->out);
  mkdir(x->out, 0755);
  mkdir(x->sub, 0755);
  tu_fill(junk, sizeof junk, 5);
  tu_write_file(P(x->out, "victim"), junk, sizeof junk);
  tu_write_file(P(x->sub, "victim2"), junk, sizeof junk);
  tu_write_file(P(x->sub, "data_a.npkd"), other, sizeof other);
  s = tu_open(x->t.dir, NPK_OPEN_CREATE, &st);
  if (s) CHECK_EQ(npk_save(s, "a", NPK_INT64, 1, shape, base_rows), NPK_OK);
  tu_close(st, s);
  tu_snap(x->out, &x->out_snap);
  tu_snap(x->sub, &x->sub_snap);
}

/* Take the outside snapshots again (after adding files there). */
static void trust_resnap(Trust *x) {
  tu_snap_free(&x->out_snap);
  tu_snap_free(&x->sub_snap);
  tu_snap(x->out, &x->out_snap);
  tu_snap(x->sub, &x->sub_snap);
}

/* Nothing outside the store was created, changed or removed. */
static void outside_same(Trust *x, int line) {
  Snap a, b;
  int ok;
  tu_snap(x->out, &a);
  tu_snap(x->sub, &b);
  ok = tu_snap_eq(&x->out_snap, &a) & tu_snap_eq(&x->sub_snap, &b);
  if (!ok) {
    ctest_case_failures++;
    printf("FAIL line %d: a file outside the store changed\n", line);
  }
  tu_snap_free(&a);
  tu_snap_free(&b);
}

static void trust_done(Trust *x) {
  tu_snap_free(&x->out_snap);
  tu_snap_free(&x->sub_snap);
  tu_tmp_done(&x->t);
}

/* Replace store file NAME by a symbolic link to TARGET. */
static void make_link(Trust *x, const char *name, const char *target) {
  unlink(P(x->t.dir, name));
  if (symlink(target, P(x->t.dir, name)) != 0) {
    perror("symlink");
    exit(2);
  }
}

/* Move store file NAME outside (as FILE there) and link to it. */
static void move_out(Trust *x, const char *name, const char *file) {
  char target[1400];
  snprintf(target, sizeof target, "%s/%s", x->out, file);
  if (rename(P(x->t.dir, name), target) != 0) {
    perror("rename");
    exit(2);
  }
  make_link(x, name, target);
  trust_resnap(x);
}

/* ---- what a user does ------------------------------------------------- */

static volatile sig_atomic_t alarmed;
static void on_alarm(int sig) {
  (void)sig;
  alarmed = 1;
}

/* Open DIR with FLAGS and use array NAME (int64): read every row, and
** unless read-only append a row, replace one and delete one.  The first
** error's code, its message in MSG; NPK_OK if all went through.  A call
** that would block (a FIFO opened for reading) is cut short by an alarm
** without SA_RESTART: it fails then instead of hanging the test. */
static int attempt(const char *dir, int flags, const char *name, char *msg,
                   size_t n) {
  struct sigaction sa, old;
  NpkStore *st = NULL;
  NpkSession *s = NULL;
  char *err = NULL;
  int64_t row = 42;
  uint64_t shape[1] = {1}, r0 = 0, r1 = 1;
  int rc;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, &old);
  alarmed = 0;
  alarm(10);
  snprintf(msg, n, "no error");
  rc = npk_store_open(dir, flags, &st, &err);
  if (rc) {
    snprintf(msg, n, "%s", err ? err : "");
    free(err);
    goto done;
  }
  free(err);
  if ((rc = npk_session_open(st, &s)) != NPK_OK) goto done;
  if ((rc = npk_read_begin(s)) == NPK_OK) {
    NpkArrayInfo info;
    rc = npk_array_info(s, name, &info);
    for (uint64_t r = 0; rc == NPK_OK && r < info.rows; r++) {
      const void *p;
      if (npk_row_live(s, name, r)) rc = npk_row_ptr(s, name, r, &p);
    }
    npk_read_end(s);
  }
  /* A hot journal fails reads with NPK_BUSY; the write that follows
  ** plays it back. */
  if ((rc == NPK_OK || rc == NPK_BUSY) && !(flags & NPK_OPEN_READONLY)) {
    rc = npk_append(s, name, NPK_INT64, 1, shape, &row);
    if (rc == NPK_OK) rc = npk_replace_rows(s, name, &r0, 1, &row);
    if (rc == NPK_OK) rc = npk_delete_rows(s, name, &r1, 1);
  }
  if (rc) snprintf(msg, n, "%s", npk_errmsg(s));
done:
  alarm(0);
  sigaction(SIGALRM, &old, NULL);
  if (alarmed) printf("  an open blocked until the alarm\n");
  tu_close(st, s);
  return rc;
}

/* Using array NAME of the store fails with NPK_CORRUPT, naming FRAG, both
** read-write and read-only; nothing outside changes.  With a hot journal
** only a write plays it back: read-only, the store is NPK_BUSY. */
static void expect_refused(Trust *x, const char *name, const char *frag,
                           int line) {
  static const int modes[2] = {0, NPK_OPEN_READONLY};
  char msg[1024];
  for (int i = 0; i < 2; i++) {
    int rc = attempt(x->t.dir, modes[i], name, msg, sizeof msg);
    int want = x->hot && i ? NPK_BUSY : NPK_CORRUPT;
    const char *what = x->hot && i ? "interrupted commit" : frag;
    if (rc != want || !strstr(msg, what)) {
      ctest_case_failures++;
      printf("FAIL line %d (%s): rc %d \"%s\", wanted %d naming \"%s\"\n",
             line, i ? "read-only" : "read-write", rc, msg, want, what);
    }
    outside_same(x, line);
  }
}

#define LINKED " is a symbolic link; refusing to follow it"

/* ---- symbolic links to files outside ----------------------------------- */

static void test_link_data(void) {
  Trust x;
  char real[PATH_MAX], want[PATH_MAX + 200], target[1400];
  trust_init(&x);
  /* The target holds rows enough to pass for the array's data. */
  snprintf(target, sizeof target, "%s/victim", x.out);
  make_link(&x, "data_a.npkd", target);
  expect_refused(&x, "a", "data_a.npkd" LINKED, __LINE__);
  /* The whole message, naming the store. */
  if (realpath(x.t.dir, real)) {
    char msg[1024];
    snprintf(want, sizeof want, "numpack: store %s: data_a.npkd" LINKED, real);
    attempt(x.t.dir, 0, "a", msg, sizeof msg);
    CHECK(strcmp(msg, want) == 0);
    if (strcmp(msg, want) != 0) printf("  got \"%s\"\n", msg);
  }
  trust_done(&x);
}

/* A data file with a second name (a hard link, perhaps outside the store):
** read as usual, never written in place; saving over it makes a new file
** and leaves the other name's bytes alone. */
static void test_hardlink_data(void) {
  Trust x;
  NpkStore *st;
  NpkSession *s;
  int64_t row = 42, got[3];
  uint64_t shape[1] = {1}, r0 = 0;
  trust_init(&x);
  CHECK(link(P(x.t.dir, "data_a.npkd"), P(x.out, "twin")) == 0);
  trust_resnap(&x);
  s = tu_open(x.t.dir, 0, &st);
  CHECK(s != NULL);
  if (s) {
    CHECK_EQ(tu_load_i64(s, "a", got, 3), 3);
    CHECK(got[0] == 1 && got[1] == 2 && got[2] == 3);
    CHECK_EQ(npk_append(s, "a", NPK_INT64, 1, shape, &row), NPK_READONLY);
    CHECK_HAS(npk_errmsg(s), "data_a.npkd in place: it has 2 hard links");
    CHECK_EQ(npk_replace_rows(s, "a", &r0, 1, &row), NPK_READONLY);
    CHECK_HAS(npk_errmsg(s), "hard links");
    outside_same(&x, __LINE__);
    shape[0] = 1;
    CHECK_EQ(npk_save(s, "a", NPK_INT64, 1, shape, &row), NPK_OK);
    CHECK_EQ(tu_load_i64(s, "a", got, 3), 1);
    CHECK(got[0] == 42);
  }
  tu_close(st, s);
  outside_same(&x, __LINE__);
  trust_done(&x);
}

static void test_link_bitmap(void) {
  Trust x;
  NpkStore *st;
  NpkSession *s;
  uint64_t r = 2;
  trust_init(&x);
  s = tu_open(x.t.dir, 0, &st);
  if (s) CHECK_EQ(npk_delete_rows(s, "a", &r, 1), NPK_OK);
  tu_close(st, s);
  CHECK(tu_exists(P(x.t.dir, "deleted_a.npkb")));
  move_out(&x, "deleted_a.npkb", "bitmap");
  expect_refused(&x, "a", "deleted_a.npkb" LINKED, __LINE__);
  trust_done(&x);
}

static void test_link_catalog(void) {
  Trust x;
  trust_init(&x);
  move_out(&x, TU_CATALOG, "catalog");
  expect_refused(&x, "a", TU_CATALOG LINKED, __LINE__);
  /* Creating the store over it is refused too, and writes nothing. */
  {
    char *err = NULL;
    NpkStore *st = NULL;
    CHECK_EQ(npk_store_open(x.t.dir, NPK_OPEN_CREATE, &st, &err),
             NPK_CORRUPT);
    CHECK_HAS(err, TU_CATALOG LINKED);
    free(err);
    if (st) npk_store_release(st);
    outside_same(&x, __LINE__);
  }
  trust_done(&x);
}

static void test_link_lock(void) {
  Trust x;
  char target[1400];
  trust_init(&x);
  /* Opening used to pad the target to 4096 bytes, each commit to write
  ** its commit mark into it. */
  snprintf(target, sizeof target, "%s/victim", x.out);
  make_link(&x, TU_LOCK, target);
  expect_refused(&x, "a", TU_LOCK LINKED, __LINE__);
  trust_done(&x);
}

/* The spare journal file of earlier releases is no longer written: a link
** at its name is removed by the first write, never followed, and the file
** it points to is left as it was. */
static void test_link_spare(void) {
  Trust x;
  char target[1400], msg[1024];
  trust_init(&x);
  snprintf(target, sizeof target, "%s/victim", x.out);
  make_link(&x, TU_SPARE, target);
  CHECK_EQ(attempt(x.t.dir, 0, "a", msg, sizeof msg), NPK_OK);
  CHECK(!tu_exists(P(x.t.dir, TU_SPARE)));
  outside_same(&x, __LINE__);
  trust_done(&x);
}

/* Write JOURNAL at PATH: the engine's header over records REC. */
static void write_journal(const char *path, const NpkBuf *rec) {
  unsigned char hdr[NPK_JOURNAL_HEADER];
  Buf b = {0};
  npk_journal_header(rec, hdr);
  buf_put(&b, hdr, sizeof hdr);
  buf_put(&b, rec->p, rec->n);
  tu_write_buf(path, &b);
  buf_free(&b);
}

static void test_link_journal(void) {
  Trust x;
  NpkBuf rec = {0};
  size_t n;
  unsigned char *cat;
  char target[1400];
  trust_init(&x);
  /* A well-formed journal that restores the catalog as it is. */
  cat = tu_read_file(P(x.t.dir, TU_CATALOG), &n);
  jr_content(&rec, TU_CATALOG, cat, n, 1);
  snprintf(target, sizeof target, "%s/journal", x.out);
  write_journal(target, &rec);
  trust_resnap(&x);
  make_link(&x, TU_JOURNAL, target);
  expect_refused(&x, "a", TU_JOURNAL LINKED, __LINE__);
  free(cat);
  npk_buf_free(&rec);
  trust_done(&x);
}

static void test_link_segment(void) {
  Trust x;
  CatEntry e[1];
  Buf cat = {0};
  trust_init(&x);
  e[0] = tu_seg_entry();
  tu_cat_build(&cat, e, 1, NULL);
  tu_write_buf(P(x.t.dir, TU_CATALOG), &cat);
  buf_free(&cat);
  tu_seg_write(x.t.dir);
  CHECK_EQ(attempt(x.t.dir, NPK_OPEN_READONLY, "s", (char[64]){0}, 64),
           NPK_OK);
  move_out(&x, "seg_s_1.bin", "segment");
  expect_refused(&x, "s", "seg_s_1.bin" LINKED, __LINE__);
  trust_done(&x);
}

/* A catalog entry "sub/data_a.npkd" for array "a" (int64, 3 rows). */
static void sub_catalog(Trust *x) {
  CatEntry e[1];
  Buf cat = {0};
  memset(e, 0, sizeof e);
  e[0].name = "a";
  e[0].ndim = 1;
  e[0].dims[0] = 3;
  e[0].dtype = NPK_INT64;
  e[0].data_file = "sub/data_a.npkd";
  tu_cat_build(&cat, e, 1, NULL);
  tu_write_buf(P(x->t.dir, TU_CATALOG), &cat);
  buf_free(&cat);
  unlink(P(x->t.dir, "data_a.npkd"));
}

static void test_link_subdir(void) {
  Trust x;
  char msg[1024];
  trust_init(&x);
  sub_catalog(&x);
  /* A real subdirectory is fine... */
  mkdir(P(x.t.dir, "sub"), 0755);
  tu_write_file(P(x.t.dir, "sub/data_a.npkd"), base_rows, sizeof base_rows);
  CHECK_EQ(attempt(x.t.dir, 0, "a", msg, sizeof msg), NPK_OK);
  tu_rm_rf(P(x.t.dir, "sub"));
  unlink(P(x.t.dir, "deleted_a.npkb"));
  sub_catalog(&x);
  /* ...a link to one outside is not: appends used to land there. */
  make_link(&x, "sub", x.sub);
  expect_refused(&x, "a",
                 "sub" LINKED " (on the way to sub/data_a.npkd)", __LINE__);
  trust_done(&x);
}

/* Saving over an array whose data file a crafted catalog puts behind a
** link: the commit journaled the old file's removal, failed on the link,
** and its own playback refused that record, leaving the journal hot: every
** array of the store was NPK_BUSY from then on, read-only too, and backups
** lay about.  The save now fails before anything is written. */
static void test_save_over_link(void) {
  Trust x;
  NpkStore *st = NULL;
  NpkSession *s;
  NpkArrayInfo info;
  int64_t rows[2] = {5, 6};
  uint64_t shape[1] = {2};
  trust_init(&x);
  sub_catalog(&x);
  make_link(&x, "sub", x.sub);
  memset(&info, 0, sizeof info);
  s = tu_open(x.t.dir, 0, &st);
  if (s) {
    CHECK_EQ(npk_save(s, "a", NPK_INT64, 1, shape, rows), NPK_CORRUPT);
    CHECK(strstr(npk_errmsg(s), "sub" LINKED " (on the way to sub/") != NULL);
    /* The store still works: another array can be saved and read. */
    CHECK_EQ(npk_save(s, "b", NPK_INT64, 1, shape, rows), NPK_OK);
    CHECK_EQ(npk_array_info(s, "b", &info), NPK_OK);
    CHECK_EQ(info.rows, 2);
  }
  tu_close(st, s);
  CHECK(!tu_journal_hot(x.t.dir));
  CHECK(!tu_exists(P(x.t.dir, "metadata.npkm-npkbak")));
  CHECK(!tu_exists(P(x.t.dir, "deleted_a.npkb-npkbak")));
  outside_same(&x, __LINE__);
  trust_done(&x);
}

/* ---- files that are not regular files -------------------------------- */

static void test_fifo_data(void) {
  Trust x;
  trust_init(&x);
  unlink(P(x.t.dir, "data_a.npkd"));
  CHECK_EQ(mkfifo(P(x.t.dir, "data_a.npkd"), 0644), 0);
  expect_refused(&x, "a", "data_a.npkd is not a regular file", __LINE__);
  unlink(P(x.t.dir, "data_a.npkd"));
  mkdir(P(x.t.dir, "data_a.npkd"), 0755);
  expect_refused(&x, "a", "data_a.npkd is not a regular file", __LINE__);
  trust_done(&x);
}

static void test_fifo_bitmap(void) {
  Trust x;
  trust_init(&x);
  /* Reading a FIFO bitmap used to block forever. */
  CHECK_EQ(mkfifo(P(x.t.dir, "deleted_a.npkb"), 0644), 0);
  expect_refused(&x, "a", "deleted_a.npkb is not a regular file", __LINE__);
  trust_done(&x);
}

/* A bitmap longer than the array's rows can need is damaged, refused by
** its length before it is read: a sparse file of 2^40 bytes asked for that
** much memory. */
static void test_huge_bitmap(void) {
  Trust x;
  int fd;
  trust_init(&x);
  fd = open(P(x.t.dir, "deleted_a.npkb"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0 && ftruncate(fd, (off_t)1 << 40) == 0);
  if (fd >= 0) close(fd);
  expect_refused(&x, "a",
                 "deleted_a.npkb is damaged: 1099511627776 bytes, more than "
                 "the 24 it can hold",
                 __LINE__);
  trust_done(&x);
}

/* ---- a crafted journal ------------------------------------------------ */

/* A store whose directory holds "evil", a link to outside/victim (a hard
** link if HARD, else a symbolic one), and "sub", a link to outside/, and a
** hot journal of records REC: opening it must refuse the journal, naming
** FRAG, touch nothing outside, and leave the journal and the lock file in
** place. */
static void journal_case_as(const NpkBuf *rec, const char *frag, int hard,
                            int line) {
  Trust x;
  char target[1400];
  trust_init(&x);
  tu_write_file(P(x.sub, "moved-npkbak"), "backup", 6);
  trust_resnap(&x);
  snprintf(target, sizeof target, "%s/victim", x.out);
  if (hard) CHECK_EQ(link(target, P(x.t.dir, "evil")), 0);
  else make_link(&x, "evil", target);
  make_link(&x, "sub", x.sub);
  write_journal(P(x.t.dir, TU_JOURNAL), rec);
  x.hot = 1;
  expect_refused(&x, "a", frag, line);
  if (!tu_journal_hot(x.t.dir)) {
    ctest_case_failures++;
    printf("FAIL line %d: the refused journal is gone\n", line);
  }
  if (!tu_exists(P(x.t.dir, TU_LOCK))) {
    ctest_case_failures++;
    printf("FAIL line %d: the lock file is gone\n", line);
  }
  trust_done(&x);
}

static void journal_case(const NpkBuf *rec, const char *frag, int line) {
  journal_case_as(rec, frag, 0, line);
}

static void test_journal_links(void) {
  static const char *const via = "sub" LINKED " (on the way to sub/";
  NpkBuf r = {0};
  /* Truncate, overwrite, replace and remove a file through a link. */
  npk_jr_trunc(&r, "evil", 0);
  journal_case(&r, "evil" LINKED, __LINE__);
  r.n = 0;
  npk_jr_region(&r, "evil", 8, "HACKED", 6);
  journal_case(&r, "evil" LINKED, __LINE__);
  r.n = 0;
  /* Through a linked directory: create, remove, truncate, rename.  (No
  ** commit journals a whole file or a new one there: those records are
  ** refused by their names.) */
  jr_content(&r, "sub/created", "new", 3, 1);
  journal_case(&r, "names sub/created, a file no commit", __LINE__);
  r.n = 0;
  npk_jr_temp(&r, "sub/victim2");
  journal_case(&r, "names sub/victim2, a file no commit", __LINE__);
  r.n = 0;
  npk_jr_link(&r, "sub/victim2", 0);
  journal_case(&r, via, __LINE__);
  r.n = 0;
  npk_jr_link(&r, "sub/moved", 1);
  journal_case(&r, via, __LINE__);
  r.n = 0;
  npk_jr_trunc(&r, "sub/victim2", 0);
  journal_case(&r, via, __LINE__);
  r.n = 0;
  npk_jr_region(&r, "sub/victim2", 0, "HACKED", 6);
  journal_case(&r, via, __LINE__);
  npk_buf_free(&r);
}

/* A file in the store that is a hard link to outside/victim: playback
** used to cut it or write over its bytes in place. */
static void test_journal_hardlink(void) {
  static const char *const frag =
      "evil in place, and that file has 2 hard links";
  NpkBuf r = {0};
  npk_jr_trunc(&r, "evil", 0);
  journal_case_as(&r, frag, 1, __LINE__);
  r.n = 0;
  npk_jr_region(&r, "evil", 8, "HACKED", 6);
  journal_case_as(&r, frag, 1, __LINE__);
  npk_buf_free(&r);
}

/* Records a commit never writes: removing or replacing the lock file or
** the journal (which let a second writer in beside one holding the lock),
** a backup, the journal's idle file, or data files by the wrong kind of
** record. */
static void test_journal_names(void) {
  static const struct {
    int type;
    const char *rel;
  } cases[] = {
    {'X', TU_LOCK}, {'L', TU_LOCK}, {'X', TU_JOURNAL}, {'L', TU_JOURNAL},
    {'T', TU_LOCK}, {'R', TU_LOCK}, {'C', TU_LOCK}, {'T', TU_JOURNAL},
    {'L', "data_a.npkd-npkbak"}, {'X', "data_a.npkd"}, {'C', "data_a.npkd"},
    {'X', "deleted_a.npkb"}, {'X', "metadata.npkm-tmp"},
    {'L', "npktmp-1-1"}, {'X', "sub/npktmp-1-1"}, {'L', TU_SPARE},
    {'X', TU_SPARE}, {'R', TU_SPARE}, {'T', TU_SPARE}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    NpkBuf r = {0};
    char frag[200];
    switch (cases[i].type) {
      case 'X': npk_jr_temp(&r, cases[i].rel); break;
      case 'L': npk_jr_link(&r, cases[i].rel, i % 2); break;
      case 'T': npk_jr_trunc(&r, cases[i].rel, 0); break;
      case 'R': npk_jr_region(&r, cases[i].rel, 64, "HACKED", 6); break;
      default: jr_content(&r, cases[i].rel, "new", 3, 1); break;
    }
    snprintf(frag, sizeof frag, "record at byte 24 names %s, a file no "
             "commit changes that way", cases[i].rel);
    journal_case(&r, frag, __LINE__);
    npk_buf_free(&r);
  }
}

static long a_mismatch(NpkSession *s);

/* The length of the catalog trust_init writes. */
static size_t base_catalog_len(void) {
  size_t n = 0;
  Trust x;
  trust_init(&x);
  free(tu_read_file(P(x.t.dir, TU_CATALOG), &n));
  trust_done(&x);
  return n;
}

/* A commit that adds arrays journals the catalog's old length: a crafted
** journal may cut the catalog anywhere or lengthen it with zeros.  It
** plays back (the record is one a commit writes), and the catalog it
** leaves is damaged content: NPK_CORRUPT naming it, from the playback on,
** read-write and read-only, never a crash or a read past its end. */
static void test_journal_cuts_catalog(void) {
  size_t n = base_catalog_len();
  Trust x;
  const struct {
    uint64_t len;
    const char *frag;
  } cases[] = {
    {0, TU_CATALOG " is damaged: truncated header (0 bytes)"},
    {19, TU_CATALOG " is damaged: truncated header (19 bytes)"},
    {20, TU_CATALOG " is damaged: array 0 at byte 20"},
    {n - 1, TU_CATALOG " is damaged: array 0 at byte 20"},
    {n + 7, TU_CATALOG " is damaged: 7 unexpected bytes after the last"},
    {n + (1 << 20), " unexpected bytes after the last array"},
  };
  CHECK(n > 21);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    NpkBuf r = {0};
    NpkStore *st;
    NpkSession *s;
    struct stat sb;
    trust_init(&x);
    npk_jr_trunc(&r, TU_CATALOG, cases[i].len);
    write_journal(P(x.t.dir, TU_JOURNAL), &r);
    s = tu_open(x.t.dir, 0, &st);
    /* Played back, then the catalog read again. */
    if (s) {
      CHECK_EQ(npk_recover(s), NPK_CORRUPT);
      CHECK(strstr(npk_errmsg(s), cases[i].frag) != NULL);
    }
    tu_close(st, s);
    CHECK(!tu_journal_hot(x.t.dir));
    CHECK_EQ(stat(P(x.t.dir, TU_CATALOG), &sb), 0);
    CHECK_EQ((uint64_t)sb.st_size, cases[i].len);
    expect_refused(&x, "a", cases[i].frag, __LINE__);
    npk_buf_free(&r);
    trust_done(&x);
  }
}

/* A commit that deletes rows patches the bitmap in place, journaling its
** old length and bytes: a crafted journal may cut a bitmap or write over
** it.  Played back, the bitmap is damaged content (NPK_CORRUPT naming it,
** read-write and read-only); a record writing 1 TiB past its start (a
** sparse file of that length, played back by earlier releases) writes
** nothing, and the bitmap reads as before; and a bitmap with a second name
** (which may lie outside the store) is not written at all. */
static void test_journal_patches_bitmap(void) {
  static const uint64_t row1 = 1;
  char target[1400];
  for (int i = 0; i < 4; i++) {
    NpkBuf r = {0};
    NpkStore *st;
    NpkSession *s;
    Trust x;
    trust_init(&x);
    s = tu_open(x.t.dir, 0, &st);
    CHECK(s && npk_delete_rows(s, "a", &row1, 1) == NPK_OK);
    tu_close(st, s);
    if (i == 0) npk_jr_trunc(&r, "deleted_a.npkb", 5);
    else if (i == 3) npk_jr_region(&r, "deleted_a.npkb", 1ull << 40, "X", 1);
    else npk_jr_region(&r, "deleted_a.npkb", 8, "HACKED", 6);
    if (i == 2) {
      /* The bitmap is also outside/victim. */
      CHECK_EQ(unlink(P(x.t.dir, "deleted_a.npkb")), 0);
      snprintf(target, sizeof target, "%s/victim", x.out);
      CHECK_EQ(link(target, P(x.t.dir, "deleted_a.npkb")), 0);
      x.hot = 1;
      write_journal(P(x.t.dir, TU_JOURNAL), &r);
      expect_refused(&x, "a", "deleted_a.npkb in place, and that file has 2 "
                     "hard links", __LINE__);
      CHECK(tu_journal_hot(x.t.dir));
    } else if (i == 3) {
      struct stat before, after;
      CHECK_EQ(stat(P(x.t.dir, "deleted_a.npkb"), &before), 0);
      write_journal(P(x.t.dir, TU_JOURNAL), &r);
      s = tu_open(x.t.dir, 0, &st);
      CHECK(s && npk_recover(s) == NPK_OK);
      if (s && npk_read_begin(s) == NPK_OK) {
        CHECK(npk_row_live(s, "a", 0) && !npk_row_live(s, "a", 1) &&
              npk_row_live(s, "a", 2));
        npk_read_end(s);
      }
      tu_close(st, s);
      CHECK(!tu_journal_hot(x.t.dir));
      CHECK_EQ(stat(P(x.t.dir, "deleted_a.npkb"), &after), 0);
      CHECK_EQ(after.st_size, before.st_size);
      outside_same(&x, __LINE__);
    } else {
      write_journal(P(x.t.dir, TU_JOURNAL), &r);
      s = tu_open(x.t.dir, 0, &st);
      CHECK(s && npk_recover(s) == NPK_OK);
      tu_close(st, s);
      CHECK(!tu_journal_hot(x.t.dir));
      expect_refused(&x, "a", "deleted_a.npkb is damaged", __LINE__);
    }
    npk_buf_free(&r);
    trust_done(&x);
  }
}

/* No commit lengthens a file in place but the catalog, by what it cut
** from it, in its journal's first record: a record that would lengthen the
** catalog further, or later in the journal (records of less than 1 MiB
** each would add up to any length), or restore bytes past its end, is
** damaged, and the journal stays.  One that would
** lengthen any other file (a data file, a segment manifest) leaves it as
** it is, and one that restores bytes past a data file's end writes only
** those within it: the journal is played back.  Played back as asked, a
** journal of a few bytes made the catalog or a manifest 2^40 bytes long,
** and opening the store then asked for as much memory to read it; or made
** a data file of any length, sparse where the file system allows, blocks
** of zeros filling the disk where it does not. */
static void test_journal_lengthens(void) {
  const uint64_t big = UINT64_C(1) << 40;
  const char *const frag = TU_JOURNAL " is damaged: bad record at byte 24";
  size_t n = base_catalog_len();
  Trust x;
  /* Cases 11 and 12: rows written over first, then a record refused. */
  const size_t second = 24 + 5 + strlen("data_a.npkd") + 16 + 6;
  for (int i = 0; i < 13; i++) {
    NpkBuf r = {0};
    NpkStore *st;
    NpkSession *s;
    struct stat data, catalog, manifest;
    size_t nrows = 0;
    unsigned char *rows;
    trust_init(&x);
    tu_write_file(P(x.t.dir, "data_b.npkseg"), "{}", 2);
    switch (i) {
      case 0: npk_jr_trunc(&r, TU_CATALOG, big); break;
      case 1: npk_jr_trunc(&r, TU_CATALOG, n + (1 << 20) + 1); break;
      case 2: npk_jr_region(&r, TU_CATALOG, big, "HACKED", 6); break;
      case 3: npk_jr_region(&r, TU_CATALOG, n - 2, "HACKED", 6); break;
      case 4: npk_jr_trunc(&r, "data_b.npkseg", big); break;
      case 5: npk_jr_trunc(&r, "data_b.npkseg", 3); break;
      case 6: npk_jr_trunc(&r, "data_a.npkd", big); break;
      case 7: npk_jr_region(&r, "data_a.npkd", big, "HACKED", 6); break;
      case 10:
        /* Each by less than 1 MiB: 64 of them made it 64 MiB long. */
        npk_jr_trunc(&r, TU_CATALOG, n + 10);
        npk_jr_trunc(&r, TU_CATALOG, n + 20);
        break;
      case 11:
      case 12:
        npk_jr_region(&r, "data_a.npkd", 0, "HACKED", 6);
        if (i == 11) npk_jr_region(&r, TU_CATALOG, n - 2, "HACKED", 6);
        else npk_buf_put(&r, "T\0", 2);
        break;
      case 8:
        /* "HA" over the last two bytes of row 2, "CKED" past the end. */
        npk_jr_region(&r, "data_a.npkd", sizeof base_rows - 2, "HACKED", 6);
        break;
      default:
        /* A backup shorter than the length asked for. */
        tu_write_file(P(x.t.dir, "data_a.npkd-npkbak"), base_rows, 8);
        npk_jr_trunc(&r, "data_a.npkd", sizeof base_rows + 8);
        break;
    }
    write_journal(P(x.t.dir, TU_JOURNAL), &r);
    if (i < 4 || i >= 10) {
      /* The message says what the record would do. */
      char want[300];
      if (i == 11)
        snprintf(want, sizeof want, TU_JOURNAL " is damaged: bad record at "
                 "byte %zu: it would write 6 bytes at byte %zu of " TU_CATALOG
                 ", past its end (%zu bytes)", second, n - 2, n);
      else if (i == 12)
        snprintf(want, sizeof want, TU_JOURNAL " is damaged: bad record at "
                 "byte %zu", second);
      else if (i == 10)
        snprintf(want, sizeof want, TU_JOURNAL " is damaged: bad record at "
                 "byte %zu: it would lengthen " TU_CATALOG " from %zu to %zu "
                 "bytes, which only a journal's first record does",
                 (size_t)(24 + 5 + strlen(TU_CATALOG) + 8), n + 10, n + 20);
      else if (i < 2)
        snprintf(want, sizeof want, "%s: it would lengthen " TU_CATALOG
                 " from %zu to %llu bytes, more than a commit cuts from it",
                 frag, n, (unsigned long long)(i ? n + (1 << 20) + 1 : big));
      else
        snprintf(want, sizeof want, "%s: it would write 6 bytes at byte %llu "
                 "of " TU_CATALOG ", past its end (%zu bytes)", frag,
                 (unsigned long long)(i == 2 ? big : n - 2), n);
      x.hot = 1;
      expect_refused(&x, "a", want, __LINE__);
      CHECK(tu_journal_hot(x.t.dir));
    } else {
      s = tu_open(x.t.dir, 0, &st);
      CHECK(s && npk_recover(s) == NPK_OK);
      if (s) CHECK_EQ(a_mismatch(s), i == 8);
      tu_close(st, s);
      CHECK(!tu_journal_hot(x.t.dir));
      outside_same(&x, __LINE__);
    }
    CHECK_EQ(stat(P(x.t.dir, "data_a.npkd"), &data), 0);
    CHECK_EQ((uint64_t)data.st_size, sizeof base_rows);
    /* A refused journal has played none of its records. */
    rows = tu_read_file(P(x.t.dir, "data_a.npkd"), &nrows);
    if (i >= 10)
      CHECK(rows && nrows == sizeof base_rows &&
            memcmp(rows, base_rows, sizeof base_rows) == 0);
    free(rows);
    CHECK_EQ(stat(P(x.t.dir, TU_CATALOG), &catalog), 0);
    CHECK_EQ((uint64_t)catalog.st_size, n);
    CHECK_EQ(stat(P(x.t.dir, "data_b.npkseg"), &manifest), 0);
    CHECK_EQ((uint64_t)manifest.st_size, 2);
    npk_buf_free(&r);
    trust_done(&x);
  }
}

/* A record cutting or writing the catalog after one that put the whole file
** back (from its backup, or a copy in the journal) is damaged: a commit
** patches the catalog in place or replaces it whole, never both.  Refused
** before any record is played, it leaves the rows written over by the
** first record, the catalog's backup and the catalog as they were.  Played
** up to it, the backup had taken the catalog's name, or the catalog had
** been written afresh, by the time the journal was refused for the
** catalog's length. */
static void test_journal_after_whole_catalog(void) {
  size_t n = base_catalog_len();
  for (int i = 0; i < 2; i++) {
    Trust x;
    NpkBuf r = {0};
    struct stat before, after;
    unsigned char *cat, *rows;
    size_t ncat = 0, nrows = 0;
    char want[300];
    trust_init(&x);
    cat = tu_read_file(P(x.t.dir, TU_CATALOG), &ncat);
    CHECK(cat && ncat == n);
    npk_jr_region(&r, "data_a.npkd", 0, "HACKED", 6);
    if (i == 0) {
      tu_write_file(P(x.t.dir, TU_CATALOG "-npkbak"), cat, ncat);
      npk_jr_link(&r, TU_CATALOG, 1);
    } else {
      jr_content(&r, TU_CATALOG, cat, ncat, 1);
    }
    snprintf(want, sizeof want, TU_JOURNAL " is damaged: bad record at byte "
             "%zu: it would cut or write " TU_CATALOG " after a record that "
             "put the whole file back", (size_t)24 + r.n);
    /* Each refused for the catalog's length when it is played. */
    if (i == 0) npk_jr_trunc(&r, TU_CATALOG, n + 10);
    else npk_jr_region(&r, TU_CATALOG, n - 2, "HACKED", 6);
    write_journal(P(x.t.dir, TU_JOURNAL), &r);
    CHECK_EQ(stat(P(x.t.dir, TU_CATALOG), &before), 0);
    x.hot = 1;
    expect_refused(&x, "a", want, __LINE__);
    CHECK(tu_journal_hot(x.t.dir));
    rows = tu_read_file(P(x.t.dir, "data_a.npkd"), &nrows);
    CHECK(rows && nrows == sizeof base_rows &&
          memcmp(rows, base_rows, sizeof base_rows) == 0);
    CHECK_EQ(stat(P(x.t.dir, TU_CATALOG), &after), 0);
    CHECK(after.st_ino == before.st_ino && after.st_size == before.st_size);
    if (i == 0) CHECK_EQ(access(P(x.t.dir, TU_CATALOG "-npkbak"), F_OK), 0);
    free(rows);
    free(cat);
    npk_buf_free(&r);
    trust_done(&x);
  }
}

/* A journal writing back over the catalog when there is none (removed by
** another program) is refused before any record is played: the rows the
** first record writes over stay as they were.  Played up to it, the
** rows were written over, then playback failed opening the catalog. */
static void test_journal_missing_catalog(void) {
  Trust x;
  NpkBuf r = {0};
  NpkStore *st;
  NpkSession *s;
  unsigned char *rows;
  size_t nrows = 0;
  trust_init(&x);
  npk_jr_region(&r, "data_a.npkd", 0, "HACKED", 6);
  npk_jr_region(&r, TU_CATALOG, 8, "X", 1);
  write_journal(P(x.t.dir, TU_JOURNAL), &r);
  CHECK_EQ(unlink(P(x.t.dir, TU_CATALOG)), 0);
  s = tu_open(x.t.dir, 0, &st);
  if (s) {
    CHECK_EQ(npk_recover(s), NPK_CORRUPT);
    CHECK_HAS(npk_errmsg(s), "bad record at byte 62: it would write back "
                             "over " TU_CATALOG ", which is missing");
  }
  tu_close(st, s);
  CHECK(tu_journal_hot(x.t.dir));
  rows = tu_read_file(P(x.t.dir, "data_a.npkd"), &nrows);
  CHECK(rows && nrows == sizeof base_rows &&
        memcmp(rows, base_rows, sizeof base_rows) == 0);
  free(rows);
  outside_same(&x, __LINE__);
  npk_buf_free(&r);
  trust_done(&x);
}

/* A journal that would write in place to a file with a second name (which
** may lie outside the store), or to a symbolic link, is refused before any
** record is played: the rows the first record writes over stay as they
** were.  Played up to it, the rows were written over first. */
static void test_journal_link_checked_first(void) {
  for (int i = 0; i < 2; i++) {
    Trust x;
    NpkBuf r = {0};
    unsigned char *rows;
    size_t nrows = 0;
    char target[1400];
    trust_init(&x);
    snprintf(target, sizeof target, "%s/victim", x.out);
    if (i == 0) CHECK_EQ(link(target, P(x.t.dir, "other.npkd")), 0);
    else make_link(&x, "other.npkd", target);
    npk_jr_region(&r, "data_a.npkd", 0, "HACKED", 6);
    npk_jr_region(&r, "other.npkd", 0, "X", 1);
    write_journal(P(x.t.dir, TU_JOURNAL), &r);
    x.hot = 1;
    expect_refused(&x, "a",
                   i == 0 ? "other.npkd in place, and that file has 2 hard "
                            "links"
                          : "other.npkd" LINKED,
                   __LINE__);
    CHECK(tu_journal_hot(x.t.dir));
    rows = tu_read_file(P(x.t.dir, "data_a.npkd"), &nrows);
    CHECK(rows && nrows == sizeof base_rows &&
          memcmp(rows, base_rows, sizeof base_rows) == 0);
    free(rows);
    npk_buf_free(&r);
    trust_done(&x);
  }
}

/* A commit that appended to an array and then saved over it, interrupted
** once the new data file had taken the name, leaves a journal whose cut of
** the grown file finds the new, shorter one: the new file is left as it is
** (lengthening it would ask for blocks, to be thrown away), and the grown
** file comes back from its backup, cut or not. */
static void test_journal_saved_over(void) {
  int64_t grown[4] = {1, 2, 3, 99}, fresh[2] = {7, 7};
  for (int i = 0; i < 2; i++) {
    Trust x;
    NpkBuf r = {0};
    NpkStore *st;
    NpkSession *s;
    struct stat sb;
    trust_init(&x);
    /* base_rows as the grown file's first rows */
    CHECK_EQ(memcmp(grown, base_rows, sizeof base_rows), 0);
    tu_write_file(P(x.t.dir, "data_a.npkd-npkbak"), grown, sizeof grown);
    tu_write_file(P(x.t.dir, "data_a.npkd"), fresh, sizeof fresh);
    npk_jr_trunc(&r, "data_a.npkd", sizeof base_rows);
    if (i == 0) npk_jr_link(&r, "data_a.npkd", 1);
    write_journal(P(x.t.dir, TU_JOURNAL), &r);
    s = tu_open(x.t.dir, 0, &st);
    if (s) {
      CHECK_EQ(npk_recover(s), NPK_OK);
      if (i == 0) CHECK_EQ(a_mismatch(s), 0);
    }
    tu_close(st, s);
    CHECK(!tu_journal_hot(x.t.dir));
    CHECK_EQ(stat(P(x.t.dir, "data_a.npkd"), &sb), 0);
    /* The backup put back whole; without it, the new file left alone. */
    CHECK_EQ((uint64_t)sb.st_size, i == 0 ? sizeof grown : sizeof fresh);
    outside_same(&x, __LINE__);
    npk_buf_free(&r);
    trust_done(&x);
  }
}

/* A commit that appended to an array and then saved over it leaves the
** grown data file linked to its own backup: playback cuts it all the same. */
static void test_journal_own_backup(void) {
  Trust x;
  NpkBuf r = {0};
  NpkStore *st;
  NpkSession *s;
  int64_t grown[4] = {1, 2, 3, 99};
  trust_init(&x);
  tu_write_file(P(x.t.dir, "data_a.npkd"), grown, sizeof grown);
  CHECK_EQ(link(P(x.t.dir, "data_a.npkd"), P(x.t.dir, "data_a.npkd-npkbak")),
           0);
  npk_jr_trunc(&r, "data_a.npkd", sizeof base_rows);
  npk_jr_link(&r, "data_a.npkd", 1);
  npk_jr_link(&r, TU_CATALOG, 1);
  write_journal(P(x.t.dir, TU_JOURNAL), &r);
  s = tu_open(x.t.dir, 0, &st);
  if (s) {
    CHECK_EQ(npk_recover(s), NPK_OK);
    CHECK_EQ(a_mismatch(s), 0);
  }
  tu_close(st, s);
  CHECK(!tu_journal_hot(x.t.dir));
  CHECK(!tu_exists(P(x.t.dir, "data_a.npkd-npkbak")));
  outside_same(&x, __LINE__);
  npk_buf_free(&r);
  trust_done(&x);
}

/* Rows of "a" that differ from base_rows; -1 if its row count does. */
static long a_mismatch(NpkSession *s) {
  NpkArrayInfo info;
  long bad = 0;
  if (npk_read_begin(s) != NPK_OK) return -1;
  if (npk_array_info(s, "a", &info) != NPK_OK || info.rows != 3) {
    npk_read_end(s);
    return -1;
  }
  for (uint64_t r = 0; r < 3; r++) {
    const void *p;
    if (npk_row_ptr(s, "a", r, &p) != NPK_OK ||
        memcmp(p, &base_rows[r], sizeof base_rows[r]) != 0)
      bad++;
  }
  npk_read_end(s);
  return bad;
}

/* ---- crafted catalogs -------------------------------------------------- */

static CatEntry int64_entry(const char *name, uint64_t rows,
                            const char *file) {
  CatEntry e;
  memset(&e, 0, sizeof e);
  e.name = name;
  e.ndim = 1;
  e.dims[0] = rows;
  e.dtype = NPK_INT64;
  e.data_file = file;
  return e;
}

static void write_catalog(const char *dir, const CatEntry *e, int n) {
  Buf cat = {0};
  tu_cat_build(&cat, e, n, NULL);
  tu_write_buf(P(dir, TU_CATALOG), &cat);
  buf_free(&cat);
}

static void test_catalog_shared_file(void) {
  Trust x;
  CatEntry e[2];
  char *err = NULL;
  NpkStore *st = NULL;
  int rc;
  trust_init(&x);
  e[0] = int64_entry("a", 3, "data_a.npkd");
  e[1] = int64_entry("b", 3, "data_a.npkd");
  write_catalog(x.t.dir, e, 2);
  rc = npk_store_open(x.t.dir, 0, &st, &err);
  CHECK_EQ(rc, NPK_CORRUPT);
  CHECK_HAS(err, "arrays \"a\" and \"b\" both keep their rows in data_a.npkd");
  free(err);
  if (rc == NPK_OK) {
    /* Dropping b used to remove a's rows. */
    NpkSession *s;
    if (npk_session_open(st, &s) == NPK_OK) {
      npk_drop(s, "b");
      npk_session_close(s);
    }
    npk_store_release(st);
  }
  CHECK(tu_exists(P(x.t.dir, "data_a.npkd")));
  trust_done(&x);
}

static void test_catalog_own_files(void) {
  static const char *const files[] = {
    TU_CATALOG, TU_LOCK, TU_JOURNAL, TU_SPARE, "metadata.npkm-tmp",
    "deleted_a.npkb",
    "deleted_b.npkb-tmp", "npktmp-1-1", "data_a.npkd-npkbak",
    "sub/x-npkbak"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    Trust x;
    CatEntry e[2];
    char frag[200];
    trust_init(&x);
    /* z has no rows: any existing file would do for its data. */
    e[0] = int64_entry("a", 3, "data_a.npkd");
    e[1] = int64_entry("z", 0, files[i]);
    write_catalog(x.t.dir, e, 2);
    /* The file exists (but for the journal, which would be played): a
    ** catalog naming it was accepted, and a commit or sweep removed it. */
    mkdir(P(x.t.dir, "sub"), 0755);
    if (strcmp(files[i], TU_JOURNAL) != 0 && !tu_exists(P(x.t.dir, files[i])))
      tu_write_file(P(x.t.dir, files[i]), "", 0);
    snprintf(frag, sizeof frag, "array \"z\" keeps its rows in %s, ",
             files[i]);
    expect_refused(&x, "a", frag, __LINE__);
    trust_done(&x);
  }
}

static void test_commit_clash(void) {
  Trust x;
  CatEntry e[1];
  NpkStore *st;
  NpkSession *s;
  int64_t rows[3] = {4, 5, 6};
  uint64_t shape[1] = {3};
  trust_init(&x);
  /* "a" keeps its rows where a new array "b" would put its own. */
  rename(P(x.t.dir, "data_a.npkd"), P(x.t.dir, "data_b.npkd"));
  e[0] = int64_entry("a", 3, "data_b.npkd");
  write_catalog(x.t.dir, e, 1);
  s = tu_open(x.t.dir, 0, &st);
  if (s) {
    CHECK_EQ(npk_save(s, "b", NPK_INT64, 1, shape, rows), NPK_CORRUPT);
    CHECK_HAS(npk_errmsg(s), "cannot commit: arrays ");
    CHECK_HAS(npk_errmsg(s), "both keep their rows in data_b.npkd");
  }
  tu_close(st, s);
  s = tu_open(x.t.dir, 0, &st);
  if (s) CHECK_EQ(a_mismatch(s), 0);
  tu_close(st, s);
  trust_done(&x);
}

/* A new array's file is checked against every array's only while some
** array keeps its rows elsewhere than in data_NAME.npkd (a crafted
** catalog, or a segmented array): the count of such arrays follows the
** transaction's catalog through drops, savepoints rolled back and
** transactions rolled back, so a clash is refused for as long as the array
** causing it is there, and a save goes through once it is gone. */
static void test_commit_clash_counted(void) {
  Trust x;
  CatEntry e[2];
  NpkStore *st;
  NpkSession *s;
  int64_t rows[3] = {4, 5, 6}, got[3];
  uint64_t shape[1] = {3};
  int lvl;
  trust_init(&x);
  rename(P(x.t.dir, "data_a.npkd"), P(x.t.dir, "data_b.npkd"));
  tu_write_file(P(x.t.dir, "data_c.npkd"), base_rows, sizeof base_rows);
  e[0] = int64_entry("c", 3, "data_c.npkd");
  e[1] = int64_entry("a", 3, "data_b.npkd");
  write_catalog(x.t.dir, e, 2);
  s = tu_open(x.t.dir, 0, &st);
  CHECK(s != NULL);
  if (s) {
    /* Dropped, then the drop rolled back to a savepoint. */
    CHECK_EQ(npk_begin(s), NPK_OK);
    CHECK_EQ(npk_savepoint(s, &lvl), NPK_OK);
    CHECK_EQ(npk_drop(s, "a"), NPK_OK);
    CHECK_EQ(npk_rollback_to(s, lvl), NPK_OK);
    CHECK_EQ(npk_save(s, "b", NPK_INT64, 1, shape, rows), NPK_OK);
    CHECK_EQ(npk_commit(s), NPK_CORRUPT);
    CHECK_HAS(npk_errmsg(s), "both keep their rows in data_b.npkd");
    CHECK_EQ(npk_rollback(s), NPK_OK);
    /* Dropped in a transaction rolled back. */
    CHECK_EQ(npk_begin(s), NPK_OK);
    CHECK_EQ(npk_drop(s, "a"), NPK_OK);
    CHECK_EQ(npk_rollback(s), NPK_OK);
    CHECK_EQ(npk_save(s, "b", NPK_INT64, 1, shape, rows), NPK_CORRUPT);
    /* Saved over as a version in the same file, then dropped: gone. */
    CHECK_EQ(npk_append(s, "a", NPK_INT64, 1, shape, rows), NPK_OK);
    CHECK_EQ(npk_save(s, "b", NPK_INT64, 1, shape, rows), NPK_CORRUPT);
    CHECK_EQ(npk_drop(s, "a"), NPK_OK);
    CHECK_EQ(npk_save(s, "b", NPK_INT64, 1, shape, rows), NPK_OK);
    CHECK_EQ(tu_load_i64(s, "b", got, 3), 3);
    CHECK(got[0] == 4 && got[2] == 6);
    CHECK_EQ(tu_load_i64(s, "c", got, 3), 3);
    CHECK(got[0] == 1 && got[2] == 3);
  }
  tu_close(st, s);
  outside_same(&x, __LINE__);
  trust_done(&x);
}

/* ---- hard links to files outside -------------------------------------- */

/* The largest allocation asked of the allocator while it is installed. */
static uint64_t biggest;

static void *big_malloc(uint64_t n) {
  if (n > biggest) biggest = n;
  return n > SIZE_MAX ? NULL : malloc((size_t)n);
}

static void *big_realloc(void *p, uint64_t n) {
  if (n > biggest) biggest = n;
  return n > SIZE_MAX ? NULL : realloc(p, (size_t)n);
}

/* A journal whose record claims a path of 8 MiB (the journal is that
** long, its checksum right): a path longer than any a store may name is a
** damaged record at once, not 8 MiB read and copied to find that out --
** playback takes a window of the journal at a time, whatever its length. */
static void test_journal_path_too_long(void) {
  static const NpkAllocator watch = {big_malloc, big_realloc, free, NULL};
  enum { PLEN = 8 << 20 };
  Trust x;
  NpkBuf rec = {0};
  NpkStore *st = NULL;
  NpkSession *s = NULL;
  char *err = NULL;
  int rc;
  trust_init(&x);
  npk_buf_u8(&rec, 'R');
  npk_buf_u32(&rec, PLEN);
  npk_buf_reserve(&rec, PLEN + 16);
  CHECK(!rec.oom);
  if (rec.oom) goto out;
  memset(rec.p + rec.n, 'a', PLEN);
  rec.n += PLEN;
  npk_buf_u64(&rec, 0);
  npk_buf_u64(&rec, 0);
  write_journal(P(x.t.dir, TU_JOURNAL), &rec);
  trust_resnap(&x);
  biggest = 0;
  npk_set_allocator(&watch);
  rc = npk_store_open(x.t.dir, 0, &st, &err);
  if (rc == NPK_OK) rc = npk_session_open(st, &s);
  if (rc == NPK_OK) rc = npk_begin(s);
  npk_set_allocator(NULL);
  CHECK_EQ(rc, NPK_CORRUPT);
  CHECK(s && strstr(npk_errmsg(s), "bad record at byte 24") != NULL);
  printf("  largest allocation: %llu bytes\n", (unsigned long long)biggest);
  CHECK(biggest <= (2u << 20));
  CHECK(tu_journal_hot(x.t.dir));
  tu_close(st, s);
  free(err);
  outside_same(&x, __LINE__);
out:
  npk_buf_free(&rec);
  trust_done(&x);
}

/* The lock file: opening used to pad the other name to 4096 bytes, each
** commit to write its mark 64 bytes in. */
/* A directory that does not tell names apart by case, as a directory with
** a second name in capitals for the catalog (or the journal) looks to the
** lookup numpack asks it with: the store reads, and no write goes through,
** a hot journal's playback included; the store's files stay as they were.
** A file of its own named in capitals (a case-sensitive directory) is no
** such sign. */
#define FOLDS "does not tell names apart by case"

static void test_folds_case(void) {
  static const char *const cases[] = {"catalog", "hot journal",
                                      "journal only", "other file"};
  for (int i = 0; i < 4; i++) {
    Trust x;
    NpkBuf r = {0};
    NpkStore *st;
    NpkSession *s;
    Snap before, after;
    int64_t row = 42, got[4];
    uint64_t shape[1] = {1}, r0 = 0;
    int rc;
    printf("  %s\n", cases[i]);
    trust_init(&x);
    if (i > 0) {
      npk_jr_region(&r, "data_a.npkd", 0, "HACKED", 6);
      write_journal(P(x.t.dir, TU_JOURNAL), &r);
      npk_buf_free(&r);
    }
    if (i == 2) {
      CHECK_EQ(unlink(P(x.t.dir, TU_CATALOG)), 0);
      CHECK_EQ(link(P(x.t.dir, TU_JOURNAL),
                    P(x.t.dir, "METADATA.NPKM-JOURNAL")), 0);
    } else if (i == 3) {
      tu_write_file(P(x.t.dir, "METADATA.NPKM"), "x", 1);
      CHECK_EQ(unlink(P(x.t.dir, TU_JOURNAL)), 0);
    } else {
      CHECK_EQ(link(P(x.t.dir, TU_CATALOG), P(x.t.dir, "METADATA.NPKM")), 0);
    }
    tu_snap(x.t.dir, &before);
    s = tu_open(x.t.dir, 0, &st);
    CHECK(s != NULL);
    if (s && i == 3) {
      CHECK_EQ(npk_append(s, "a", NPK_INT64, 1, shape, &row), NPK_OK);
      CHECK_EQ(tu_load_i64(s, "a", got, 4), 4);
    } else if (s) {
      CHECK_EQ(npk_recover(s), NPK_OK);
      rc = tu_load_i64(s, "a", got, 4);
      if (i == 0) {
        CHECK(rc == 3 && got[0] == 1 && got[2] == 3);
      } else {
        CHECK_EQ(s->err.rc, NPK_BUSY);
        CHECK_HAS(npk_errmsg(s), "not one in this directory, which " FOLDS);
      }
      CHECK_EQ(npk_append(s, "a", NPK_INT64, 1, shape, &row), NPK_READONLY);
      CHECK_HAS(npk_errmsg(s), FOLDS);
      CHECK_EQ(npk_replace_rows(s, "a", &r0, 1, &row), NPK_READONLY);
      CHECK_EQ(npk_delete_rows(s, "a", &r0, 1), NPK_READONLY);
      CHECK_EQ(npk_save(s, "A", NPK_INT64, 1, shape, &row), NPK_READONLY);
      CHECK_EQ(npk_drop(s, "a"), NPK_READONLY);
      CHECK_HAS(npk_errmsg(s), FOLDS);
    }
    tu_close(st, s);
    if (i < 3) {
      tu_snap(x.t.dir, &after);
      CHECK(tu_snap_eq(&before, &after));
      tu_snap_free(&after);
    }
    tu_snap_free(&before);
    outside_same(&x, __LINE__);
    trust_done(&x);
  }
}

static void test_hardlink_lock(void) {
  Trust x;
  trust_init(&x);
  unlink(P(x.t.dir, TU_LOCK));
  CHECK_EQ(link(P(x.out, "victim"), P(x.t.dir, TU_LOCK)), 0);
  expect_refused(&x, "a", TU_LOCK " has 2 hard links; refusing to use it",
                 __LINE__);
  trust_done(&x);
}

/* Leftovers by the names of files a commit creates afresh, each a hard
** link to a file outside: the new file takes the name, and the file
** outside keeps its bytes. */
static void test_hardlink_fresh(void) {
  static const char *const names[] = {
    "metadata.npkm-tmp", "deleted_a.npkb-tmp", "npktmp-%ld-1"};
  Trust x;
  NpkStore *st;
  NpkSession *s;
  int64_t row = 42, got[4];
  uint64_t shape[1] = {1}, r1 = 1;
  char victim[1400];
  trust_init(&x);
  snprintf(victim, sizeof victim, "%s/victim", x.out);
  s = tu_open(x.t.dir, 0, &st);
  CHECK(s != NULL);
  if (s) {
    /* The first write removed leftovers; later ones need not look. */
    CHECK_EQ(npk_append(s, "a", NPK_INT64, 1, shape, &row), NPK_OK);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
      char name[64];
      snprintf(name, sizeof name, names[i], (long)getpid());
      CHECK_EQ(link(victim, P(x.t.dir, name)), 0);
    }
    trust_resnap(&x);
    CHECK_EQ(npk_delete_rows(s, "a", &r1, 1), NPK_OK);
    CHECK_EQ(npk_save(s, "b", NPK_INT64, 1, shape, &row), NPK_OK);
    CHECK_EQ(tu_load_i64(s, "a", got, 4), 3);
    CHECK(got[0] == 1 && got[1] == 3 && got[2] == 42);
    CHECK_EQ(tu_load_i64(s, "b", got, 4), 1);
    CHECK(got[0] == 42);
  }
  tu_close(st, s);
  outside_same(&x, __LINE__);
  trust_done(&x);
  /* Creating a store where its catalog's temporary name is one. */
  trust_init(&x);
  tu_rm_rf(x.t.dir);
  mkdir(x.t.dir, 0755);
  snprintf(victim, sizeof victim, "%s/victim", x.out);
  CHECK_EQ(link(victim, P(x.t.dir, "metadata.npkm-tmp")), 0);
  trust_resnap(&x);
  s = tu_open(x.t.dir, NPK_OPEN_CREATE, &st);
  CHECK(s != NULL);
  tu_close(st, s);
  outside_same(&x, __LINE__);
  trust_done(&x);
}

/* A lock file that is there but cannot be opened for want of a descriptor
** is an error: reading without it let a commit change rows under the
** reader. */
static void test_lock_open_error(void) {
  Trust x;
  NpkStore *st;
  NpkSession *s;
  struct rlimit old, low;
  int fds[256], n = 0, fd, rc;
  trust_init(&x);
  s = tu_open(x.t.dir, 0, &st);
  CHECK(s != NULL);
  if (s && getrlimit(RLIMIT_NOFILE, &old) == 0) {
    low = old;
    low.rlim_cur = 200;
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    while (n < 256 && (fd = open("/dev/null", O_RDONLY)) >= 0) fds[n++] = fd;
    rc = npk_read_begin(s);
    while (n > 0) close(fds[--n]);
    setrlimit(RLIMIT_NOFILE, &old);
    CHECK_EQ(rc, NPK_IOERR);
    CHECK_HAS(npk_errmsg(s), "cannot open");
    CHECK_HAS(npk_errmsg(s), TU_LOCK);
    if (rc == NPK_OK) npk_read_end(s);
    /* With descriptors again, the session reads under the lock. */
    CHECK_EQ(npk_read_begin(s), NPK_OK);
    CHECK_EQ(a_mismatch(s), 0);
    npk_read_end(s);
  }
  tu_close(st, s);
  trust_done(&x);
}

/* ---- the store directory itself may be a link ----------------------- */

static void test_store_dir_link(void) {
  Trust x;
  char link[1400], msg[1024];
  NpkStore *st;
  NpkSession *s;
  trust_init(&x);
  snprintf(link, sizeof link, "%s/link", x.t.root);
  CHECK_EQ(symlink(x.t.dir, link), 0);
  CHECK_EQ(attempt(link, 0, "a", msg, sizeof msg), NPK_OK);
  CHECK_EQ(attempt(link, NPK_OPEN_READONLY, "a", msg, sizeof msg), NPK_OK);
  /* The append went to the store itself. */
  s = tu_open(x.t.dir, 0, &st);
  if (s) {
    NpkArrayInfo info;
    CHECK_EQ(npk_read_begin(s), NPK_OK);
    CHECK_EQ(npk_array_info(s, "a", &info), NPK_OK);
    CHECK_EQ(info.rows, 4);
    npk_read_end(s);
  }
  tu_close(st, s);
  outside_same(&x, __LINE__);
  trust_done(&x);
}

int main(void) {
  RUN(test_link_data);
  RUN(test_hardlink_data);
  RUN(test_link_bitmap);
  RUN(test_link_catalog);
  RUN(test_link_lock);
  RUN(test_link_spare);
  RUN(test_link_journal);
  RUN(test_link_segment);
  RUN(test_link_subdir);
  RUN(test_save_over_link);
  RUN(test_fifo_data);
  RUN(test_fifo_bitmap);
  RUN(test_huge_bitmap);
  RUN(test_journal_links);
  RUN(test_journal_hardlink);
  RUN(test_journal_names);
  RUN(test_journal_own_backup);
  RUN(test_journal_saved_over);
  RUN(test_journal_cuts_catalog);
  RUN(test_journal_patches_bitmap);
  RUN(test_journal_lengthens);
  RUN(test_journal_after_whole_catalog);
  RUN(test_journal_missing_catalog);
  RUN(test_journal_link_checked_first);
  RUN(test_journal_path_too_long);
  RUN(test_folds_case);
  RUN(test_hardlink_lock);
  RUN(test_hardlink_fresh);
  RUN(test_lock_open_error);
  RUN(test_catalog_shared_file);
  RUN(test_catalog_own_files);
  RUN(test_commit_clash);
  RUN(test_commit_clash_counted);
  RUN(test_store_dir_link);
  return CTEST_END();
}
