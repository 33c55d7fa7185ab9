/*
** syncfloor.c — the floor under a synced save of a new array: the system
** calls a commit of numpack's design makes, with none of numpack's code
** around them, loaded by bench/cases_binding.py through ctypes and timed
** turn about with the binding's own save and with np.save + fsync.
**
**   floor_open(dir)              a directory holding a journal file and a
**                                catalog, as an open store holds them
**   floor_commit(p, n)           one commit adding an N-byte data file, in
**                                the order numpack's commit makes it
**   floor_undo()                 what the bench's numpack_drop does between
**                                repetitions, untimed
**   floor_write_fsync(path,p,n)  the baseline: write the bytes to a new
**                                file and fsync it, as np.save + fsync
**   floor_close()
**
** The five syncs are those of the design (README, "Transactions and
** guarantees"): the journal; the data file and the directory that names
** it; the catalog; the journal made idle, the commit point.  The byte
** counts are those a save of one new two-dimensional array writes.  Each
** function returns 0 or an errno value.
**
** Build:  gcc -O2 -shared -fPIC -o syncfloor.so syncfloor.c
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <stdio.h>
#include <unistd.h>

#define JOURNAL_BYTES 130   /* a new array's journal */
#define DROP_JOURNAL 226    /* the drop's, left in the file between reps */
#define CATALOG_HEAD 20     /* an empty catalog */
#define CATALOG_PATCH 12    /* the header's total and count */
#define CATALOG_ENTRY 79    /* one entry, appended */
#define IDLE_BYTES 8        /* the journal's magic, zeroed */

static int dirfd_ = -1;  /* the store directory */
static int jfd = -1;     /* its journal file, kept from commit to commit */
static int cfd = -1;     /* its catalog */
static unsigned char junk[256];

static int put(int fd, const void *p, size_t n, off_t off) {
  const unsigned char *c = p;
  while (n > 0) {
    ssize_t w = off < 0 ? write(fd, c, n) : pwrite(fd, c, n, off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    c += w;
    n -= (size_t)w;
    if (off >= 0) off += w;
  }
  return 0;
}

void floor_close(void) {
  if (jfd >= 0) close(jfd);
  if (cfd >= 0) close(cfd);
  if (dirfd_ >= 0) close(dirfd_);
  jfd = cfd = dirfd_ = -1;
}

int floor_open(const char *dir) {
  int rc;
  floor_close();
  memset(junk, 0x5a, sizeof junk);
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) return errno;
  if ((dirfd_ = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) goto fail;
  jfd = openat(dirfd_, "journal", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  cfd = openat(dirfd_, "catalog", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (jfd < 0 || cfd < 0) goto fail;
  if ((rc = put(jfd, junk, DROP_JOURNAL, 0)) ||
      (rc = put(cfd, junk, CATALOG_HEAD, 0))) {
    floor_close();
    return rc;
  }
  if (fsync(jfd) || fsync(cfd) || fsync(dirfd_)) goto fail;
  return 0;
fail:
  rc = errno;
  floor_close();
  return rc;
}

int floor_commit(const void *p, size_t n) {
  int fd, rc;
  fd = openat(dirfd_, "tmp", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  if (fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)n) != 0) goto fail;
  if ((rc = put(fd, p, n, 0))) goto out;
  sync_file_range(fd, 0, (off_t)n, SYNC_FILE_RANGE_WRITE);
  if ((rc = put(jfd, junk, JOURNAL_BYTES, 0))) goto out;
  if (ftruncate(jfd, JOURNAL_BYTES) || fdatasync(jfd)) goto fail;
  if (fdatasync(fd) || renameat(dirfd_, "tmp", dirfd_, "data")) goto fail;
  if ((rc = put(cfd, junk, CATALOG_PATCH, 8)) ||
      (rc = put(cfd, junk, CATALOG_ENTRY, CATALOG_HEAD)))
    goto out;
  if (fdatasync(cfd) || fsync(dirfd_)) goto fail;
  if ((rc = put(jfd, junk, IDLE_BYTES, 0))) goto out;
  if (fdatasync(jfd)) goto fail;
  rc = 0;
  goto out;
fail:
  rc = errno;
out:
  close(fd);
  return rc;
}

int floor_undo(void) {
  if (unlinkat(dirfd_, "data", 0) != 0 && errno != ENOENT) return errno;
  if (ftruncate(cfd, CATALOG_HEAD) != 0) return errno;
  return put(jfd, junk, DROP_JOURNAL, 0);
}

int floor_write_fsync(const char *path, const void *p, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), rc;
  if (fd < 0) return errno;
  if ((rc = put(fd, junk, 128, -1)) == 0 && (rc = put(fd, p, n, -1)) == 0 &&
      fsync(fd) != 0)
    rc = errno;
  close(fd);
  return rc;
}
