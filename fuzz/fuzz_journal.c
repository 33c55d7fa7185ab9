/*
** fuzz_journal.c — fuzz target for the playback of a hot journal
** (npk_journal_recover, run by the first npk_store_open of a store), over
** a store directory that holds symbolic links to a directory outside it.
**
** The input is the journal's records; the target writes them with the
** engine's own header (npk_journal_header), so that the checksum holds and
** every input is played back rather than discarded as torn.  The store it
** plays them in holds, besides an empty catalog and a data file:
**   evil      a link to outside/victim
**   sub       a link to outside/sub (holding victim2, victim2-npkbak, data)
**   dangling  a link to outside/nothere
**   real/     a real directory holding x and link (to outside/victim)
**   a-npkbak  a backup of "a", for 'L' records
**   hard      a hard link to outside/victim
** Beyond "no crash, no leak":
**   - no file outside the store was created, changed or removed, whatever
**     the records (the whole outside tree is compared, links not followed);
**   - an open that succeeded left no hot journal behind (none, or an idle
**     one: a regular file whose magic is zeros, kept for the next commit),
**     and the lock file the write made is still there (no record may
**     remove it);
**   - a failed open says why, with a "numpack: " message.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "store_int.h"

const char npk_fuzz_target[] = "journal";

static char root[512];          /* the temporary directory of this process */
static char store[600];         /* ROOT/store */
static char outside[600];       /* ROOT/outside */
static NpkBuf outside_before;   /* snapshot of outside/ after setup */

/* "A/B" in one of 4 rotating buffers. */
static const char *cat2(const char *a, const char *b) {
  static char ring[4][1400];
  static int next;
  char *p = ring[next++ % 4];
  snprintf(p, sizeof ring[0], "%s/%s", a, b);
  return p;
}

static void write_file(const char *path, const void *p, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(n == 0 || write(fd, p, n) == (ssize_t)n);
  close(fd);
}

/* Remove PATH and everything under it, never following a link. */
static void remove_tree(const char *path) {
  struct stat sb;
  if (lstat(path, &sb) != 0) return;
  if (S_ISDIR(sb.st_mode)) {
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
      if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
        continue;
      remove_tree(cat2(path, de->d_name));
    }
    if (d) closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

/* Append to B every entry under DIR, sorted: its name, type, and the
** target of a link or the bytes of a file. */
static int cmp_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void snapshot(const char *dir, NpkBuf *b) {
  char *names[64];
  int n = 0;
  DIR *d = opendir(dir);
  struct dirent *de;
  FUZZ_CHECK(d != NULL);
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    FUZZ_CHECK(n < 64);
    names[n++] = strdup(de->d_name);
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof names[0], cmp_name);
  for (int i = 0; i < n; i++) {
    char path[1400], buf[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    npk_buf_put(b, path, strlen(path) + 1);
    FUZZ_CHECK(lstat(path, &sb) == 0);
    if (S_ISDIR(sb.st_mode)) {
      npk_buf_put(b, "d", 1);
      snapshot(path, b);
    } else if (S_ISLNK(sb.st_mode)) {
      ssize_t k = readlink(path, buf, sizeof buf);
      npk_buf_put(b, "l", 1);
      if (k > 0) npk_buf_put(b, buf, (size_t)k);
    } else {
      int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
      ssize_t k;
      npk_buf_put(b, "f", 1);
      npk_buf_u64(b, (uint64_t)sb.st_size);
      FUZZ_CHECK(fd >= 0);
      while ((k = read(fd, buf, sizeof buf)) > 0) npk_buf_put(b, buf, (size_t)k);
      close(fd);
    }
    npk_buf_put(b, "", 1);
    free(names[i]);
  }
}

static void cleanup(void) {
  if (root[0]) remove_tree(root);
}

/* Once per process: ROOT/outside and its snapshot. */
static void setup_outside(void) {
  const char *tmp = getenv("TMPDIR");
  if (root[0]) return;
  snprintf(root, sizeof root, "%s/npkfuzzjournal.XXXXXX",
           tmp && *tmp ? tmp : "/tmp");
  FUZZ_CHECK(mkdtemp(root) != NULL);
  atexit(cleanup);
  snprintf(store, sizeof store, "%s/store", root);
  snprintf(outside, sizeof outside, "%s/outside", root);
  FUZZ_CHECK(mkdir(outside, 0755) == 0);
  FUZZ_CHECK(mkdir(cat2(outside, "sub"), 0755) == 0);
  write_file(cat2(outside, "victim"), "outside victim, keep me", 23);
  write_file(cat2(outside, "sub/victim2"), "outside victim2", 15);
  write_file(cat2(outside, "sub/victim2-npkbak"), "outside backup", 14);
  write_file(cat2(outside, "sub/data"), "0123456789abcdef", 16);
  snapshot(outside, &outside_before);
  FUZZ_CHECK(!outside_before.oom);
}

/* A fresh store whose journal holds RECORDS. */
static void setup_store(const uint8_t *records, size_t n) {
  NpkCatalog empty = {0};
  NpkBuf cat = {0}, rec = {0}, jr = {0};
  unsigned char hdr[NPK_JOURNAL_HEADER];
  remove_tree(store);
  FUZZ_CHECK(mkdir(store, 0755) == 0);
  FUZZ_CHECK(npk_catalog_encode(&empty, &cat) == NPK_OK);
  write_file(cat2(store, NPK_CATALOG), cat.p, cat.n);
  write_file(cat2(store, "data_a.npkd"), "ABCDEFGH", 8);
  write_file(cat2(store, "a-npkbak"), "backup of a", 11);
  FUZZ_CHECK(mkdir(cat2(store, "real"), 0755) == 0);
  write_file(cat2(store, "real/x"), "inside x", 8);
  FUZZ_CHECK(symlink(cat2(outside, "victim"), cat2(store, "evil")) == 0);
  FUZZ_CHECK(symlink(cat2(outside, "sub"), cat2(store, "sub")) == 0);
  FUZZ_CHECK(symlink(cat2(outside, "nothere"), cat2(store, "dangling")) == 0);
  FUZZ_CHECK(symlink(cat2(outside, "victim"), cat2(store, "real/link")) == 0);
  FUZZ_CHECK(link(cat2(outside, "victim"), cat2(store, "hard")) == 0);
  npk_buf_put(&rec, records, n);
  npk_journal_header(&rec, hdr);
  npk_buf_put(&jr, hdr, sizeof hdr);
  npk_buf_put(&jr, rec.p, rec.n);
  FUZZ_CHECK(!jr.oom);
  write_file(cat2(store, NPK_JOURNAL), jr.p, jr.n);
  npk_buf_free(&cat);
  npk_buf_free(&rec);
  npk_buf_free(&jr);
}

/* 1 if the store has no journal, or only an idle one: a regular file
** whose first 8 bytes are zeros. */
static int journal_idle(void) {
  static const unsigned char zero[8];
  unsigned char m[8];
  struct stat sb;
  int fd, ok;
  if (lstat(cat2(store, NPK_JOURNAL), &sb) != 0) return errno == ENOENT;
  if (!S_ISREG(sb.st_mode)) return 0;
  fd = open(cat2(store, NPK_JOURNAL), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return 0;
  ok = pread(fd, m, 8, 0) == 8 && memcmp(m, zero, 8) == 0;
  close(fd);
  return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  NpkStore *st = NULL;
  NpkBuf now = {0};
  char *err = NULL;
  struct stat sb;
  int rc;
  setup_outside();
  setup_store(data, size);
  /* Every other input is read through a window of a few bytes, so that
  ** records cross the window's edges. */
  setenv("NUMPACK_TEST_JOURNAL_WINDOW", size % 2 ? "5" : "0", 1);
  rc = npk_store_open(store, 0, &st, &err);
  if (rc == NPK_OK) {
    NpkSession *s = NULL;
    FUZZ_CHECK(st != NULL && err == NULL);
    /* Only the way to a write plays a journal back. */
    if (npk_session_open(st, &s) == NPK_OK) {
      if (npk_recover(s) == NPK_OK) {
        FUZZ_CHECK(journal_idle());
        FUZZ_CHECK(lstat(cat2(store, NPK_LOCKFILE), &sb) == 0);
      } else {
        FUZZ_CHECK(strncmp(npk_errmsg(s), "numpack: ", 9) == 0);
      }
      npk_session_close(s);
    }
    npk_store_release(st);
  } else {
    FUZZ_CHECK(st == NULL);
    FUZZ_CHECK(err != NULL && strncmp(err, "numpack: ", 9) == 0);
  }
  free(err);
  snapshot(outside, &now);
  FUZZ_CHECK(!now.oom);
  FUZZ_CHECK(now.n == outside_before.n &&
             memcmp(now.p, outside_before.p, now.n) == 0);
  npk_buf_free(&now);
  return 0;
}
