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
**   - a failed open says why, with a "numpack: " message;
**   - no file in the store is longer than the journal or the longest file
**     before it was played (a backup put back, whole contents restored),
**     but the catalog, by at most what a commit cuts from it: no record
**     lengthens a file, so none fills the disk.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "fuzz_dir.h"
#include "store_int.h"

const char npk_fuzz_target[] = "journal";

static char root[512];          /* the temporary directory of this process */
static char store[600];         /* ROOT/store */
static char outside[600];       /* ROOT/outside */
static NpkBuf outside_before;   /* snapshot of outside/ after setup */
static size_t catalog_bytes;    /* the length of the store's catalog */

/* Once per process: ROOT/outside and its snapshot. */
static void setup_outside(void) {
  const char *tmp = getenv("TMPDIR");
  if (root[0]) return;
  fuzz_make_root(root, sizeof root, tmp && *tmp ? tmp : "/tmp",
                 "npkfuzzjournal");
  snprintf(store, sizeof store, "%s/store", root);
  snprintf(outside, sizeof outside, "%s/outside", root);
  FUZZ_CHECK(mkdir(outside, 0755) == 0);
  FUZZ_CHECK(mkdir(fuzz_path(outside, "sub"), 0755) == 0);
  fuzz_write_file(fuzz_path(outside, "victim"), "outside victim, keep me", 23);
  fuzz_write_file(fuzz_path(outside, "sub/victim2"), "outside victim2", 15);
  fuzz_write_file(fuzz_path(outside, "sub/victim2-npkbak"), "outside backup", 14);
  fuzz_write_file(fuzz_path(outside, "sub/data"), "0123456789abcdef", 16);
  fuzz_snapshot(outside, NULL, 1, &outside_before);
  FUZZ_CHECK(!outside_before.oom);
}

/* A fresh store whose journal holds RECORDS. */
static void setup_store(const uint8_t *records, size_t n) {
  NpkCatalog empty = {0};
  NpkBuf cat = {0}, rec = {0}, jr = {0};
  unsigned char hdr[NPK_JOURNAL_HEADER];
  fuzz_remove_tree(store);
  FUZZ_CHECK(mkdir(store, 0755) == 0);
  FUZZ_CHECK(npk_catalog_encode(&empty, &cat) == NPK_OK);
  fuzz_write_file(fuzz_path(store, NPK_CATALOG), cat.p, cat.n);
  catalog_bytes = cat.n;
  fuzz_write_file(fuzz_path(store, "data_a.npkd"), "ABCDEFGH", 8);
  fuzz_write_file(fuzz_path(store, "a-npkbak"), "backup of a", 11);
  FUZZ_CHECK(mkdir(fuzz_path(store, "real"), 0755) == 0);
  fuzz_write_file(fuzz_path(store, "real/x"), "inside x", 8);
  FUZZ_CHECK(symlink(fuzz_path(outside, "victim"), fuzz_path(store, "evil")) == 0);
  FUZZ_CHECK(symlink(fuzz_path(outside, "sub"), fuzz_path(store, "sub")) == 0);
  FUZZ_CHECK(symlink(fuzz_path(outside, "nothere"), fuzz_path(store, "dangling")) == 0);
  FUZZ_CHECK(symlink(fuzz_path(outside, "victim"), fuzz_path(store, "real/link")) == 0);
  FUZZ_CHECK(link(fuzz_path(outside, "victim"), fuzz_path(store, "hard")) == 0);
  npk_buf_put(&rec, records, n);
  npk_journal_header(&rec, hdr);
  npk_buf_put(&jr, hdr, sizeof hdr);
  npk_buf_put(&jr, rec.p, rec.n);
  FUZZ_CHECK(!jr.oom);
  fuzz_write_file(fuzz_path(store, NPK_JOURNAL), jr.p, jr.n);
  npk_buf_free(&cat);
  npk_buf_free(&rec);
  npk_buf_free(&jr);
}

/* The longest file setup_store writes but the catalog (a-npkbak); the
** longest a file may be after playback (longest_after), the catalog's
** bound (catalog_max), and whether a file is longer (too_long).  The lock
** file is the engine's, its own length. */
#define LONGEST_BEFORE 11
static uint64_t longest_after;
static uint64_t catalog_max;
static int too_long;

static int check_length(const char *path, const struct stat *sb, int type,
                        struct FTW *ftw) {
  const char *rel = path + strlen(store) + 1;
  (void)ftw;
  if (type != FTW_F || !S_ISREG(sb->st_mode) || strcmp(rel, NPK_LOCKFILE) == 0)
    return 0;
  too_long |= (uint64_t)sb->st_size >
              (strcmp(rel, NPK_CATALOG) == 0 ? catalog_max : longest_after);
  return 0;
}

/* 1 if some file in the store is longer than playback may make it. */
static int store_lengthened(uint64_t journal_bytes, uint64_t catalog_bytes) {
  longest_after = journal_bytes > LONGEST_BEFORE ? journal_bytes
                                                 : LONGEST_BEFORE;
  catalog_max = catalog_bytes + NPK_CAT_SUFFIX_MAX;
  too_long = 0;
  FUZZ_CHECK(nftw(store, check_length, 8, FTW_PHYS) == 0);
  return too_long;
}

/* 1 if the store has no journal, or only an idle one: a regular file
** whose first 8 bytes are zeros. */
static int journal_idle(void) {
  static const unsigned char zero[8];
  unsigned char m[8];
  struct stat sb;
  int fd, ok;
  if (lstat(fuzz_path(store, NPK_JOURNAL), &sb) != 0) return errno == ENOENT;
  if (!S_ISREG(sb.st_mode)) return 0;
  fd = open(fuzz_path(store, NPK_JOURNAL), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
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
        FUZZ_CHECK(lstat(fuzz_path(store, NPK_LOCKFILE), &sb) == 0);
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
  FUZZ_CHECK(!store_lengthened(NPK_JOURNAL_HEADER + size, catalog_bytes));
  fuzz_snapshot(outside, NULL, 1, &now);
  FUZZ_CHECK(!now.oom);
  FUZZ_CHECK(now.n == outside_before.n &&
             memcmp(now.p, outside_before.p, now.n) == 0);
  npk_buf_free(&now);
  return 0;
}
