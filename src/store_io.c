/*
** store_io.c — the engine's contact with the operating system: every write,
** fsync, rename, truncate and whole-file read goes through here, so that I/O
** counters are real and tests can inject faults at each kind of call and
** record every change for the power-loss simulation; and
** every file of a store is opened, removed, renamed and linked here, by its
** name relative to the store, so that none is reached through a symbolic
** link.  Also error messages and little-endian encoding helpers.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "store_int.h"

#ifdef NPK_TEST_HOOKS
/* Fault injection and crash simulation, compiled only into the test build
** of the engine (the C tests and the module make check loads for
** test/faults.test): an installed module must not let the environment
** make its I/O fail. */
static char fault_kind[16]; /* "write", "fsync", ... or "" */
static int fault_countdown; /* calls of that kind before the fault */
static int fault_errno;     /* errno the failing call reports */
static int crash_step;      /* commit step that calls _exit(77) */
static int no_links;        /* npk_test_no_links: links fail with EPERM */

static int fault_check(const char *kind);

static int alloc_fault_check(void) { return fault_check("malloc") != 0; }

void npk_test_fault(const char *kind, int nth, int err) {
  if (!kind || nth <= 0 || err == 0) {
    fault_kind[0] = 0;
    npk_alloc_fault_hook(NULL);
    return;
  }
  snprintf(fault_kind, sizeof fault_kind, "%s", kind);
  fault_countdown = nth;
  fault_errno = err;
  /* Only these kinds make allocations fail: others leave the allocator
  ** without a hook, so that no allocation pays for a check. */
  npk_alloc_fault_hook(strcmp(kind, "malloc") == 0 || strcmp(kind, "oom") == 0
                           ? alloc_fault_check
                           : NULL);
}

void npk_test_crash_at(int step) { crash_step = step; }

void npk_test_no_links(int on) { no_links = on; }

/* NUMPACK_TEST_FAULT=kind:nth:errno in the environment arms the same fault
** for a whole process, and NUMPACK_TEST_CRASH=step the crash of its
** commits, so that tests can reach them through SQL. */
static void fault_from_env(void) {
  static int done;
  const char *v;
  char kind[16];
  int nth, err;
  if (done) return;
  done = 1;
  v = getenv("NUMPACK_TEST_FAULT");
  if (v && sscanf(v, "%15[a-z]:%d:%d", kind, &nth, &err) == 3)
    npk_test_fault(kind, nth, err);
  v = getenv("NUMPACK_TEST_CRASH");
  if (v && sscanf(v, "%d", &nth) == 1 && !crash_step) crash_step = nth;
  v = getenv("NUMPACK_TEST_NOLINKS");
  if (v && *v == '1') no_links = 1;
}

/* linkat(), or EPERM while npk_test_no_links() says so. */
static int link_at(int from, const char *lfrom, int to, const char *lto) {
  fault_from_env();
  if (no_links) {
    errno = EPERM;
    return -1;
  }
  return linkat(from, lfrom, to, lto, 0);
}

int npk_test_crash_point(int step) {
  fault_from_env();
  if (crash_step && step == crash_step) _exit(77);
  return 0;
}

static int copy_pause_us; /* npk_test_copy_pause */

void npk_test_copy_pause(int us) { copy_pause_us = us; }

void npk_test_copy_point(void) {
  if (copy_pause_us > 0) usleep((useconds_t)copy_pause_us);
}

static void (*plan_fn)(void *); /* npk_test_on_plan */
static void *plan_arg;

void npk_test_on_plan(void (*fn)(void *), void *arg) {
  plan_fn = fn;
  plan_arg = arg;
}

void npk_test_plan_point(void) {
  if (plan_fn) plan_fn(plan_arg);
}

/* NUMPACK_TEST_RECHECK_US sets the recheck interval of a test process (0:
** every statement looks), so that tests need not race the clock. */
int64_t npk_recheck_ns(void) {
  static int64_t ns = -1;
  int64_t v = __atomic_load_n(&ns, __ATOMIC_RELAXED);
  if (v < 0) {
    const char *z = getenv("NUMPACK_TEST_RECHECK_US");
    v = z ? (int64_t)strtoll(z, NULL, 10) * 1000 : NPK_RECHECK_NS;
    __atomic_store_n(&ns, v, __ATOMIC_RELAXED);
  }
  return v;
}

/* NUMPACK_TEST_SPILL_BYTES sets how many bytes of replaced rows an overlay
** keeps in memory before it spills, so that tests spill with small arrays.
** Read at each use: a C test changes it between cases. */
uint64_t npk_spill_budget(void) {
  const char *z = getenv("NUMPACK_TEST_SPILL_BYTES");
  return z ? (uint64_t)strtoull(z, NULL, 10) : NPK_SPILL_BUDGET;
}

/* NUMPACK_TEST_JOURNAL_WINDOW sets how many bytes of a journal are read at
** a time, so that tests move the window over small journals too. */
uint64_t npk_journal_window(uint64_t dflt) {
  const char *z = getenv("NUMPACK_TEST_JOURNAL_WINDOW");
  uint64_t v = z ? (uint64_t)strtoull(z, NULL, 10) : 0;
  return v ? v : dflt;
}

/* NUMPACK_TEST_FSTYPE stands for the type fstatfs tells of a spill file's
** file system (a number, as statfs's f_type), so that tests reach file
** systems the machine has none of. */
static const char *fs_type_override(void) {
  return getenv("NUMPACK_TEST_FSTYPE");
}

/* Return the errno to fake for a call of KIND, or 0 to let it run. */
static int fault_check(const char *kind) {
  fault_from_env();
  if (!fault_kind[0]) return 0;
  if (strcmp(fault_kind, "oom") == 0) {
    /* Memory runs out at the Nth allocation and stays out. */
    if (strcmp(kind, "malloc") != 0) return 0;
    if (fault_countdown > 1) {
      fault_countdown--;
      return 0;
    }
    return fault_errno;
  }
  /* "any" is any call that changes the disk: allocations and reads fail
  ** only when asked for by name. */
  if (strcmp(fault_kind, kind) != 0 &&
      (strcmp(fault_kind, "any") != 0 || strcmp(kind, "malloc") == 0 ||
       strcmp(kind, "read") == 0))
    return 0;
  if (--fault_countdown > 0) return 0;
  fault_kind[0] = 0;
  return fault_errno;
}
/* A full disk (kind "full"): from the Nth write on, every write that needs
** new blocks, past the end of its file, fails with the fault's errno until
** the fault is disarmed; writes over a file's existing bytes still succeed,
** as they do on a disk that is really full. */
static int full_check(int fd, uint64_t end) {
  struct stat sb;
  fault_from_env();
  if (strcmp(fault_kind, "full") != 0) return 0;
  if (fault_countdown > 1) {
    fault_countdown--;
    return 0;
  }
  if (fstat(fd, &sb) == 0 && end <= (uint64_t)sb.st_size) return 0;
  return fault_errno;
}

/* Recording for the power-loss harness (test/powerloss_test.c): every
** change to a store's files and directory, reported as it is made, so that
** the harness can rebuild what a disk could hold had the power failed at
** any moment.  Files are named by inode (fstat of the descriptor), since a
** descriptor outlives renames; names are relative to the store. */
static void (*rec_fn)(void *, const NpkIoEvent *);
static void *rec_arg;

void npk_test_record(void (*fn)(void *arg, const NpkIoEvent *ev), void *arg) {
  rec_fn = fn;
  rec_arg = arg;
}

static void rec_emit(NpkStore *st, int kind, int fd, const char *name,
                     const char *name2, uint64_t off, uint64_t len,
                     const void *data) {
  NpkIoEvent ev;
  struct stat sb;
  if (!rec_fn) return;
  memset(&ev, 0, sizeof ev);
  ev.kind = kind;
  ev.dir = st->dir;
  ev.name = name;
  ev.name2 = name2;
  ev.off = off;
  ev.len = len;
  ev.data = data;
  if (fd >= 0 && fstat(fd, &sb) == 0) ev.ino = (uint64_t)sb.st_ino;
  rec_fn(rec_arg, &ev);
}

/* A write done in the kernel (copy_file_range): its bytes, read back. */
static void rec_copied(NpkStore *st, int fd, uint64_t off, uint64_t n) {
  unsigned char *p;
  if (!rec_fn || !(p = npk_malloc(n ? n : 1))) return;
  if (pread(fd, p, n, (off_t)off) == (ssize_t)n)
    rec_emit(st, NPK_EV_WRITE, fd, NULL, NULL, off, n, p);
  npk_free(p);
}

#else
static void rec_emit(NpkStore *st, int kind, int fd, const char *name,
                     const char *name2, uint64_t off, uint64_t len,
                     const void *data) {
  (void)st;
  (void)kind;
  (void)fd;
  (void)name;
  (void)name2;
  (void)off;
  (void)len;
  (void)data;
}

static void rec_copied(NpkStore *st, int fd, uint64_t off, uint64_t n) {
  (void)st;
  (void)fd;
  (void)off;
  (void)n;
}

int npk_test_crash_point(int step) {
  (void)step;
  return 0;
}

void npk_test_copy_point(void) {}

void npk_test_plan_point(void) {}

static int fault_check(const char *kind) {
  (void)kind;
  return 0;
}

static int link_at(int from, const char *lfrom, int to, const char *lto) {
  return linkat(from, lfrom, to, lto, 0);
}

static int full_check(int fd, uint64_t end) {
  (void)fd;
  (void)end;
  return 0;
}

int64_t npk_recheck_ns(void) { return NPK_RECHECK_NS; }

uint64_t npk_spill_budget(void) { return NPK_SPILL_BUDGET; }

uint64_t npk_journal_window(uint64_t dflt) { return dflt; }

static const char *fs_type_override(void) { return NULL; }

#endif

static void stat_add(NpkStore *st, uint64_t *field, uint64_t n) {
  (void)st;
  __atomic_fetch_add(field, n, __ATOMIC_RELAXED);
}

int npk_err(NpkErr *e, int rc, const char *fmt, ...) {
  va_list ap;
  int n;
  e->rc = rc;
  n = snprintf(e->msg, sizeof e->msg, "numpack: ");
  va_start(ap, fmt);
  vsnprintf(e->msg + n, sizeof e->msg - (size_t)n, fmt, ap);
  va_end(ap);
  return rc;
}

const char *npk_err_text(const NpkErr *e) {
  static const char prefix[] = "numpack: ";
  size_t n = sizeof prefix - 1;
  return strncmp(e->msg, prefix, n) == 0 ? e->msg + n : e->msg;
}

int npk_err_sys(NpkErr *e, int err, const char *what, const char *path) {
  int rc = NPK_IOERR;
  if (err == EBADF) {
    /* The only descriptors written to that were not opened for writing
    ** are files npk_file_open could only open read-only. */
    return npk_err(e, NPK_READONLY, "%s %s: this process may not write it",
                   what, path);
  }
  if (err == ENOSPC || err == EDQUOT) rc = NPK_FULL;
  else if (err == ENOMEM) rc = NPK_NOMEM;
  else if (err == EROFS || err == EACCES || err == EPERM) rc = NPK_READONLY;
  return npk_err(e, rc, "%s %s: %s", what, path, strerror(err));
}

uint64_t npk_now_us(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

int npk_buf_reserve(NpkBuf *b, size_t n) {
  if (b->oom) return 0;
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    unsigned char *q;
    while (cap < b->n + n) cap *= 2;
    q = npk_realloc(b->p, cap);
    if (!q) {
      b->oom = 1;
      return 0;
    }
    b->p = q;
    b->cap = cap;
  }
  return 1;
}

void npk_buf_put(NpkBuf *b, const void *p, size_t n) {
  if (!npk_buf_reserve(b, n)) return;
  if (n && p) memcpy(b->p + b->n, p, n);
  b->n += n;
}

void npk_buf_u8(NpkBuf *b, unsigned v) {
  unsigned char c = (unsigned char)v;
  npk_buf_put(b, &c, 1);
}

void npk_buf_u32(NpkBuf *b, uint32_t v) {
  unsigned char c[4];
  for (int i = 0; i < 4; i++) c[i] = (unsigned char)(v >> (8 * i));
  npk_buf_put(b, c, 4);
}

void npk_buf_u64(NpkBuf *b, uint64_t v) {
  unsigned char c[8];
  npk_put_u64(c, v);
  npk_buf_put(b, c, 8);
}

void npk_buf_free(NpkBuf *b) {
  npk_free(b->p);
  memset(b, 0, sizeof *b);
}

uint32_t npk_get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

uint64_t npk_get_u64(const unsigned char *p) {
  return (uint64_t)npk_get_u32(p) | (uint64_t)npk_get_u32(p + 4) << 32;
}

void npk_put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

int npk_io_fault(NpkStore *st, const char *kind, const char *what,
                 const char *path, NpkErr *e) {
  int fake = fault_check(kind);
  (void)st;
  return fake ? npk_err_sys(e, fake, what, path) : NPK_OK;
}

void npk_io_mapped(NpkStore *st, int fd, const void *p, size_t n,
                   uint64_t off) {
  stat_add(st, &st->stats.bytes_written, n);
  rec_emit(st, NPK_EV_WRITE, fd, NULL, NULL, off, n, p);
}

int npk_io_pwrite(NpkStore *st, int fd, const void *p, size_t n, uint64_t off,
                  const char *path, NpkErr *e) {
  const unsigned char *c = p;
  while (n > 0) {
    size_t k = n > (1u << 30) ? (1u << 30) : n;
    int fake = fault_check("write");
    ssize_t w;
    if (!fake) fake = full_check(fd, off + k);
    if (fake) return npk_err_sys(e, fake, "cannot write", path);
    w = pwrite(fd, c, k, (off_t)off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return npk_err_sys(e, errno, "cannot write", path);
    }
    stat_add(st, &st->stats.bytes_written, (uint64_t)w);
    rec_emit(st, NPK_EV_WRITE, fd, NULL, NULL, off, (uint64_t)w, c);
    c += w;
    off += (uint64_t)w;
    n -= (size_t)w;
  }
  return NPK_OK;
}

/* Reserve the disk blocks of [OFF, OFF+N) of a new file before writing
** them, as np.save does: ext4 then writes into allocated (unwritten)
** extents instead of reserving blocks page by page, which makes a large
** write about twice as fast, and a full disk is an error before anything
** is written.  File systems without fallocate just write. */
int npk_io_reserve(NpkStore *st, int fd, uint64_t off, uint64_t n,
                   const char *path, NpkErr *e) {
  int fake;
  if (n < (1u << 20)) return NPK_OK;
  if ((fake = full_check(fd, off + n)))
    return npk_err_sys(e, fake, "cannot write", path);
  if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)n) == 0) {
    rec_emit(st, NPK_EV_FALLOCATE, fd, NULL, NULL, off, n, NULL);
    return NPK_OK;
  }
  if (errno != ENOSPC && errno != EDQUOT) return NPK_OK;
  return npk_err_sys(e, errno, "cannot write", path);
}

ssize_t npk_io_read_at(NpkStore *st, int fd, void *p, size_t n, uint64_t off) {
  unsigned char *c = p;
  size_t got = 0;
  int fake = fault_check("read");
  if (fake) {
    errno = fake;
    return -1;
  }
  while (got < n) {
    size_t k = n - got > (1u << 30) ? (1u << 30) : n - got;
    ssize_t r = pread(fd, c + got, k, (off_t)(off + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    got += (size_t)r;
  }
  stat_add(st, &st->stats.bytes_read, got);
  return (ssize_t)got;
}

/* The type of the file system FD lies on, as statfs's f_type. */
static int fs_type(int fd, unsigned long *pt) {
  const char *z = fs_type_override();
  struct statfs sf;
  if (z) {
    *pt = strtoul(z, NULL, 0);
    return 0;
  }
  if (fstatfs(fd, &sf) != 0) return -1;
  *pt = (unsigned long)sf.f_type;
  return 0;
}

/* Whether blocks allocated ahead in a file of file system type T are the
** ones stores into its mapping write back to: ext2/3/4, XFS and tmpfs
** write a file's allocated blocks in place.  A file system that copies on
** write (btrfs, bcachefs, ZFS) allocates anew at each write back, a store
** into the mapping reserves that space first, and a full disk then kills
** the process with SIGBUS rather than failing the statement; others are
** not known to be safe either. */
static int spill_fs(unsigned long t) {
  return t == 0xEF53 /* ext2/3/4 */ || t == 0x58465342 /* XFS */ ||
         t == 0x01021994 /* tmpfs */;
}

/* The spill file of a transaction's replaced rows (store_overlay.c): an
** unnamed file in the store's directory (O_TMPFILE), which no crash can
** leave behind and no other program sees.  NPK_NOFILE, no error set, where
** the file system has no unnamed files, or is not one whose blocks
** allocated ahead are safe to map (spill_fs): the rows then stay in
** memory. */
int npk_io_spill_open(NpkStore *st, int *pfd, NpkErr *e) {
#ifdef O_TMPFILE
  int fd = openat(st->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  unsigned long type;
  if (fd >= 0 && (fs_type(fd, &type) != 0 || !spill_fs(type))) {
    close(fd);
    return NPK_NOFILE;
  }
  if (fd >= 0) {
    *pfd = fd;
    return NPK_OK;
  }
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
    return npk_err_sys(e, errno, "cannot make a temporary file in", st->dir);
#else
  (void)st;
  (void)pfd;
  (void)e;
#endif
  return NPK_NOFILE;
}

/* Give spill file FD the blocks of [OFF, OFF+N), so that stores into its
** mapping never meet a full disk (that would be SIGBUS, not an error).
** NPK_NOFILE, no error set, where the file system cannot allocate ahead. */
int npk_io_spill_grow(NpkStore *st, int fd, uint64_t off, uint64_t n,
                      NpkErr *e) {
  static const char what[] =
      "cannot write replaced rows to a temporary file in";
  int fake = fault_check("write");
  if (!fake) fake = full_check(fd, off + n);
  if (fake) return npk_err_sys(e, fake, what, st->dir);
  if (fallocate(fd, 0, (off_t)off, (off_t)n) == 0) return NPK_OK;
  if (errno == EOPNOTSUPP) return NPK_NOFILE;
  return npk_err_sys(e, errno, what, st->dir);
}

/* Write a large new file's bytes in pieces, starting each piece's way to
** the disk at once: the commit's fsync then finds most of it written
** instead of all of it still to do. */
int npk_io_pwrite_bulk(NpkStore *st, int fd, const void *p, size_t n,
                       uint64_t off, const char *path, NpkErr *e) {
  static const size_t piece = 8u << 20;
  const unsigned char *c = p;
  while (n > 0) {
    size_t k = n < piece ? n : piece;
    int rc = npk_io_pwrite(st, fd, c, k, off, path, e);
    if (rc) return rc;
#ifdef SYNC_FILE_RANGE_WRITE
    if (!st->sync_off)
      sync_file_range(fd, (off_t)off, (off_t)k, SYNC_FILE_RANGE_WRITE);
#endif
    c += k;
    off += k;
    n -= k;
  }
  return NPK_OK;
}

int npk_io_fsync(NpkStore *st, int fd, const char *path, NpkErr *e) {
  int fake;
  if (st->sync_off) return NPK_OK;
  fake = fault_check("fsync");
  if (fake) return npk_err_sys(e, fake, "cannot sync", path);
  stat_add(st, &st->stats.fsyncs, 1);
  /* No reader of a store needs a file's times after a power cut: syncing
  ** the data (and the length, which fdatasync keeps) spares writing the
  ** inode when only its times moved.  A directory syncs whole. */
  if ((fd == st->dirfd ? fsync(fd) : fdatasync(fd)) != 0)
    return npk_err_sys(e, errno, "cannot sync", path);
  rec_emit(st, fd == st->dirfd ? NPK_EV_DIRSYNC : NPK_EV_FSYNC,
           fd == st->dirfd ? -1 : fd, NULL, NULL, 0, 0, NULL);
  return NPK_OK;
}

int npk_io_ftruncate(NpkStore *st, int fd, uint64_t len, const char *path,
                     NpkErr *e) {
  int fake = fault_check("ftruncate");
  if (fake) return npk_err_sys(e, fake, "cannot truncate", path);
  if (ftruncate(fd, (off_t)len) != 0)
    return npk_err_sys(e, errno, "cannot truncate", path);
  rec_emit(st, NPK_EV_TRUNCATE, fd, NULL, NULL, 0, len, NULL);
  return NPK_OK;
}

/* ---- files of a store, by name relative to the store ----------------- */

/* A store directory is input like any other (a downloaded dataset, a
** shared volume): whatever it holds, the engine must reach no file outside
** it.  So every file is reached from the store's directory descriptor, one
** component at a time, with O_NOFOLLOW: a symbolic link below the store
** directory is refused, never followed, and so is anything that is not a
** regular file (a FIFO would block a reader, a device would take writes).
** The store directory itself may be reached through a link: that is the
** name the user gave. */

/* Report "DIR/REL" with a system error. */
static int sys_err(NpkStore *st, int err, const char *what, const char *rel,
                   NpkErr *e) {
  char abs[2 * PATH_MAX];
  snprintf(abs, sizeof abs, "%s/%s", st->dir, rel);
  return npk_err_sys(e, err, what, abs);
}

/* Refuse the first LEN bytes of REL (a directory on its way, or REL
** itself), a file of type MODE that a store may not hold, which the
** engine was about to VERB ("open", "remove", ...). */
static int refuse(NpkStore *st, const char *rel, size_t len, mode_t mode,
                  const char *verb, NpkErr *e) {
  if (S_ISLNK(mode)) {
    if (rel[len])
      return npk_err(e, NPK_CORRUPT,
                     "store %s: %.*s is a symbolic link; "
                     "refusing to follow it (on the way to %s)",
                     st->dir, (int)len, rel, rel);
    return npk_err(e, NPK_CORRUPT,
                   "store %s: %s is a symbolic link; "
                   "refusing to follow it",
                   st->dir, rel);
  }
  return npk_err(e, NPK_CORRUPT,
                 "store %s: %s is not a regular file; "
                 "refusing to %s it",
                 st->dir, rel, verb);
}

/* After a call on LAST (REL) in DIR failed with ERR: NPK_CORRUPT if what
** is there is not a regular file (a directory where a backup or a data
** file goes), else the system error.  Links may be removed or replaced:
** that reaches nothing but the name. */
static int fail_at(NpkStore *st, int dir, const char *last, const char *rel,
                   int err, const char *verb, const char *what, NpkErr *e) {
  struct stat sb;
  if (fstatat(dir, last, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
      !S_ISREG(sb.st_mode) && !S_ISLNK(sb.st_mode))
    return refuse(st, rel, strlen(rel), sb.st_mode, verb, e);
  return sys_err(st, err, what, rel, e);
}

static void put_dir(NpkStore *st, int dir) {
  if (dir != st->dirfd) close(dir);
}

/* Descend to the directory holding REL's last component: *PDIR is
** st->dirfd itself when REL has no '/', else a descriptor for put_dir;
** *PLAST is the last component.  NPK_NOFILE when a directory on the way
** is missing, NPK_CORRUPT when one is a symbolic link. */
static int walk(NpkStore *st, const char *rel, int *pdir, const char **plast,
                NpkErr *e) {
  const char *s = rel, *slash;
  char comp[NAME_MAX + 1];
  int dir = st->dirfd;
  while ((slash = strchr(s, '/')) != NULL) {
    size_t len = (size_t)(slash - s);
    struct stat sb;
    int fd, err = ENAMETOOLONG, rc;
    if (len <= NAME_MAX) {
      memcpy(comp, s, len);
      comp[len] = 0;
      fd = openat(dir, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd >= 0) {
        put_dir(st, dir);
        dir = fd;
        s = slash + 1;
        continue;
      }
      err = errno;
    }
    /* A link gives ENOTDIR here (ELOOP on some systems): say which. */
    if (len <= NAME_MAX && fstatat(dir, comp, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(sb.st_mode))
      rc = refuse(st, rel, (size_t)(slash - rel), sb.st_mode, "open", e);
    else if (err == ENOENT)
      rc = npk_err(e, NPK_NOFILE, "no file %s/%s", st->dir, rel);
    else rc = sys_err(st, err, "cannot open", rel, e);
    put_dir(st, dir);
    return rc;
  }
  *pdir = dir;
  *plast = s;
  return NPK_OK;
}

int npk_io_open(NpkStore *st, const char *rel, int flags, int *pfd, NpkErr *e) {
  const char *last;
  struct stat sb;
  int dir, fd = -1, rc, existed = 0;
  int fresh = (flags & (O_CREAT | O_TRUNC)) == (O_CREAT | O_TRUNC);
  *pfd = -1;
  if ((rc = walk(st, rel, &dir, &last, e))) return rc;
  /* A new file where no file is: made at once, a regular file of one name
  ** by construction, so there is nothing to look at first (and no FIFO to
  ** open without blocking).  Anything by its name, or any error, takes the
  ** careful way below. */
  if (fresh) {
    fd = openat(dir, last, (flags & ~O_TRUNC) | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                0644);
    if (fd >= 0) {
      rec_emit(st, NPK_EV_CREATE, fd, rel, NULL, 0, 0, NULL);
      goto done;
    }
  }
  /* Look before opening: opening a device can already do something. */
  if (fstatat(dir, last, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISREG(sb.st_mode)) {
      rc = refuse(st, rel, strlen(rel), sb.st_mode, "open", e);
      goto done;
    }
    /* A file created afresh is a new file: a leftover by its name may be
    ** a hard link to a file outside the store, which truncating and
    ** writing would reach. */
    if (fresh) {
      if (unlinkat(dir, last, 0) == 0) {
        rec_emit(st, NPK_EV_UNLINK, -1, rel, NULL, 0, 0, NULL);
      } else if (errno != ENOENT) {
        rc = fail_at(st, dir, last, rel, errno, "remove", "cannot remove", e);
        goto done;
      }
    }
    existed = !fresh;
  }
  if (fresh) flags = (flags & ~O_TRUNC) | O_EXCL;
  /* O_NONBLOCK: should a FIFO take the file's place meanwhile, opening it
  ** returns at once, and fstat then tells.  It stays set: for a regular
  ** file it changes no read, write, mapping or sync, and clearing it would
  ** cost two more calls per open. */
  fd = openat(dir, last, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
  if (fd < 0) {
    int err = errno;
    if (fstatat(dir, last, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
        !S_ISREG(sb.st_mode))
      rc = refuse(st, rel, strlen(rel), sb.st_mode, "open", e);
    else if (err == ENOENT)
      rc = npk_err(e, NPK_NOFILE, "no file %s/%s", st->dir, rel);
    else
      rc = sys_err(st, err, flags & O_CREAT ? "cannot create" : "cannot open",
                   rel, e);
  } else if (fstat(fd, &sb) != 0) {
    rc = sys_err(st, errno, "cannot stat", rel, e);
  } else if (!S_ISREG(sb.st_mode)) {
    rc = refuse(st, rel, strlen(rel), sb.st_mode, "open", e);
  } else if ((flags & O_CREAT) && !existed) {
    rec_emit(st, NPK_EV_CREATE, fd, rel, NULL, 0, 0, NULL);
  }
done:
  put_dir(st, dir);
  if (rc && fd >= 0) close(fd);
  if (rc == NPK_OK) *pfd = fd;
  return rc;
}

int npk_io_lstat(NpkStore *st, const char *rel, struct stat *sb, NpkErr *e) {
  const char *last;
  int dir, rc = walk(st, rel, &dir, &last, e);
  if (rc) return rc;
  if (fstatat(dir, last, sb, AT_SYMLINK_NOFOLLOW) != 0)
    rc = errno == ENOENT ? npk_err(e, NPK_NOFILE, "no file %s/%s", st->dir, rel)
                         : sys_err(st, errno, "cannot stat", rel, e);
  put_dir(st, dir);
  return rc;
}

void npk_file_id_set(NpkFileId *id, const struct stat *sb) {
  id->known = 1;
  id->dev = sb->st_dev;
  id->ino = sb->st_ino;
  id->size = sb->st_size;
  id->mtim = sb->st_mtim;
}

int npk_file_id_is(const NpkFileId *id, const struct stat *sb) {
  return id->known && id->dev == sb->st_dev && id->ino == sb->st_ino &&
         id->size == sb->st_size && id->mtim.tv_sec == sb->st_mtim.tv_sec &&
         id->mtim.tv_nsec == sb->st_mtim.tv_nsec;
}

int npk_io_exists(NpkStore *st, const char *rel) {
  struct stat sb;
  NpkErr e;
  return npk_io_lstat(st, rel, &sb, &e) == NPK_OK;
}

/* 1 if the store's directory takes REL, a file of its own, in capitals
** for the same file: it does not tell names apart by case (ext4 or f2fs
** casefold, FAT, exFAT, a case-insensitive share).  There the checks that
** compare names byte for byte would let a catalog give two arrays one file
** ("a" and "A") or an array the catalog itself (METADATA.NPKM).  0 if it
** tells them apart, -1 if there is no REL to ask with. */
int npk_io_folds_case(NpkStore *st, const char *rel) {
  char up[64];
  struct stat a, b;
  size_t i, n = strlen(rel);
  if (n >= sizeof up || fstatat(st->dirfd, rel, &a, AT_SYMLINK_NOFOLLOW) != 0)
    return -1;
  for (i = 0; i <= n; i++)
    up[i] =
        (char)(rel[i] >= 'a' && rel[i] <= 'z' ? rel[i] - 'a' + 'A' : rel[i]);
  return fstatat(st->dirfd, up, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
         a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int npk_io_unlink(NpkStore *st, const char *rel, NpkErr *e) {
  const char *last;
  int dir, rc = walk(st, rel, &dir, &last, e);
  if (rc) return rc == NPK_NOFILE ? NPK_OK : rc;
  if (unlinkat(dir, last, 0) == 0)
    rec_emit(st, NPK_EV_UNLINK, -1, rel, NULL, 0, 0, NULL);
  else if (errno != ENOENT)
    rc = fail_at(st, dir, last, rel, errno, "remove", "cannot remove", e);
  put_dir(st, dir);
  return rc;
}

int npk_io_rename(NpkStore *st, const char *from, const char *to, NpkErr *e) {
  const char *lfrom, *lto;
  int dfrom, dto, rc, fake = fault_check("rename");
  if (fake) return sys_err(st, fake, "cannot rename to", to, e);
  if ((rc = walk(st, from, &dfrom, &lfrom, e))) return rc;
  if ((rc = walk(st, to, &dto, &lto, e)) == NPK_OK) {
    if (renameat(dfrom, lfrom, dto, lto) != 0)
      rc = fail_at(st, dto, lto, to, errno, "replace", "cannot rename to", e);
    else rec_emit(st, NPK_EV_RENAME, -1, from, to, 0, 0, NULL);
    put_dir(st, dto);
  }
  put_dir(st, dfrom);
  return rc;
}

/* linkat's errors that mean no hard link can be made here (a file system
** without them, the protected_hardlinks policy, a file at its most links),
** not that anything is wrong with the store. */
static int cannot_link(int err) {
  return err == EPERM || err == EOPNOTSUPP || err == ENOSYS || err == EMLINK;
}

/* TO made a copy of FROM, synced: the backup where no link can be made.
** A commit whose copy fails removes its backups, this one too. */
static int copy_file(NpkStore *st, const char *from, const char *to,
                     NpkErr *e) {
  struct stat sb;
  int src = -1, dst = -1, rc;
  char *abs = npk_path(st->dir, to);
  if (!abs) return npk_err(e, NPK_NOMEM, "out of memory");
  rc = npk_io_open(st, from, O_RDONLY, &src, e);
  if (rc == NPK_OK && fstat(src, &sb) != 0)
    rc = sys_err(st, errno, "cannot stat", from, e);
  if (rc == NPK_OK)
    rc = npk_io_open(st, to, O_RDWR | O_CREAT | O_TRUNC, &dst, e);
  if (rc == NPK_OK && sb.st_size > 0)
    rc = npk_io_copy(st, src, 0, (uint64_t)sb.st_size, dst, 0, abs, e);
  if (rc == NPK_OK) rc = npk_io_fsync(st, dst, abs, e);
  if (src >= 0) close(src);
  if (dst >= 0) close(dst);
  npk_free(abs);
  return rc;
}

int npk_io_link(NpkStore *st, const char *from, const char *to, NpkErr *e) {
  const char *lfrom, *lto;
  int dfrom, dto, rc, copy = 0;
  if ((rc = walk(st, from, &dfrom, &lfrom, e))) return rc;
  if ((rc = walk(st, to, &dto, &lto, e)) == NPK_OK) {
    /* Flags 0: a link is made to a symbolic link itself, never its target. */
    if (link_at(dfrom, lfrom, dto, lto) != 0) {
      int err = errno;
      struct stat sb;
      if (fstatat(dfrom, lfrom, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
          !S_ISREG(sb.st_mode) && !S_ISLNK(sb.st_mode))
        rc = refuse(st, from, strlen(from), sb.st_mode, "link", e);
      else if (cannot_link(err)) copy = 1;
      else rc = fail_at(st, dto, lto, to, err, "replace", "cannot link", e);
    } else {
      rec_emit(st, NPK_EV_LINK, -1, from, to, 0, 0, NULL);
    }
    put_dir(st, dto);
  }
  put_dir(st, dfrom);
  return copy ? copy_file(st, from, to, e) : rc;
}

void npk_subdir_note(NpkBuf *set, const char *rel) {
  const char *slash = strrchr(rel, '/');
  size_t n = slash ? (size_t)(slash - rel) : 0;
  if (n == 0) return;
  for (size_t at = 0; at < set->n;) {
    const char *sub = (const char *)set->p + at;
    size_t len = strlen(sub);
    if (len == n && memcmp(sub, rel, n) == 0) return;
    at += len + 1;
  }
  npk_buf_put(set, rel, n);
  npk_buf_u8(set, 0);
}

/* A descriptor of the store's subdirectory REL in *PFD, opened with no
** link followed on the way or at its end: NPK_NOFILE when it is gone. */
static int open_subdir(NpkStore *st, const char *rel, int *pfd, NpkErr *e) {
  const char *last;
  int dir, rc = walk(st, rel, &dir, &last, e);
  if (rc) return rc;
  *pfd = openat(dir, last, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  put_dir(st, dir);
  if (*pfd >= 0) return NPK_OK;
  if (errno == ENOENT)
    return npk_err(e, NPK_NOFILE, "no file %s/%s", st->dir, rel);
  return sys_err(st, errno, "cannot open", rel, e);
}

int npk_io_sync_subdirs(NpkStore *st, const NpkBuf *set, NpkErr *e) {
  if (set->oom) return npk_err(e, NPK_NOMEM, "out of memory");
  if (st->sync_off) return NPK_OK;
  for (size_t at = 0; at < set->n;) {
    const char *sub = (const char *)set->p + at;
    int fd, rc, fake = fault_check("fsync");
    at += strlen(sub) + 1;
    if (fake) return sys_err(st, fake, "cannot sync", sub, e);
    rc = open_subdir(st, sub, &fd, e);
    /* A directory that is gone holds no entry to make durable. */
    if (rc == NPK_NOFILE) {
      e->rc = NPK_OK;
      continue;
    }
    if (rc) return rc;
    stat_add(st, &st->stats.fsyncs, 1);
    rc = fsync(fd) == 0 ? NPK_OK : sys_err(st, errno, "cannot sync", sub, e);
    close(fd);
    if (rc) return rc;
    rec_emit(st, NPK_EV_DIRSYNC, -1, sub, NULL, 0, 0, NULL);
  }
  return NPK_OK;
}

DIR *npk_io_opendir(NpkStore *st, const char *rel) {
  int fd;
  DIR *d;
  NpkErr ignored;
  if (!rel) fd = openat(st->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  else if (open_subdir(st, rel, &fd, &ignored) != NPK_OK) return NULL;
  d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d && fd >= 0) close(fd);
  return d;
}

int npk_io_read_file(NpkStore *st, const char *rel, unsigned char **pp,
                     size_t *pn, struct stat *psb, uint64_t max, NpkErr *e) {
  struct stat sb;
  unsigned char *p = NULL;
  size_t got;
  ssize_t r;
  int fd, rc;
  *pp = NULL;
  *pn = 0;
  if ((rc = npk_io_open(st, rel, O_RDONLY, &fd, e))) return rc;
  if (fstat(fd, &sb) != 0) {
    rc = sys_err(st, errno, "cannot stat", rel, e);
    goto done;
  }
  if (max && (uint64_t)sb.st_size > max) {
    rc = npk_err(e, NPK_CORRUPT,
                 "%s/%s is damaged: %llu bytes, more than the %llu it can hold",
                 st->dir, rel, (unsigned long long)sb.st_size,
                 (unsigned long long)max);
    goto done;
  }
  p = npk_malloc((size_t)sb.st_size + 1);
  if (!p) {
    rc = npk_err(e, NPK_NOMEM, "out of memory reading %s/%s", st->dir, rel);
    goto done;
  }
  if ((r = npk_io_read_at(st, fd, p, (size_t)sb.st_size, 0)) < 0) {
    rc = sys_err(st, errno, "cannot read", rel, e);
    goto done;
  }
  got = (size_t)r;
  p[got] = 0;
  *pp = p;
  *pn = got;
  p = NULL;
  if (psb) *psb = sb;
done:
  npk_free(p);
  close(fd);
  return rc;
}

/* Create REL afresh (a new file in place of any leftover) holding N
** bytes, synced. */
int npk_io_write_new(NpkStore *st, const char *rel, const void *p, size_t n,
                     NpkErr *e) {
  char abs[2 * PATH_MAX];
  int fd, rc = npk_io_open(st, rel, O_RDWR | O_CREAT | O_TRUNC, &fd, e);
  if (rc) return rc;
  snprintf(abs, sizeof abs, "%s/%s", st->dir, rel);
  rc = npk_io_pwrite(st, fd, p, n, 0, abs, e);
  if (rc == NPK_OK) rc = npk_io_fsync(st, fd, abs, e);
  close(fd);
  if (rc != NPK_OK) {
    NpkErr ignored;
    npk_io_unlink(st, rel, &ignored);
  }
  return rc;
}

/* Atomically replace REL's contents: write "REL-tmp", sync, rename. */
int npk_io_replace_file(NpkStore *st, const char *rel, const void *p, size_t n,
                        NpkErr *e) {
  size_t len = strlen(rel);
  char *tmp = npk_malloc(len + 5);
  int rc;
  if (!tmp) return npk_err(e, NPK_NOMEM, "out of memory");
  memcpy(tmp, rel, len);
  memcpy(tmp + len, "-tmp", 5);
  rc = npk_io_write_new(st, tmp, p, n, e);
  if (rc == NPK_OK) {
    rc = npk_io_rename(st, tmp, rel, e);
    if (rc != NPK_OK) {
      NpkErr ignored;
      npk_io_unlink(st, tmp, &ignored);
    }
  }
  npk_free(tmp);
  return rc;
}

/* Copy N bytes from FROM at OFF to TO at TO_OFF, in the kernel if it can. */
int npk_io_copy(NpkStore *st, int from, uint64_t off, uint64_t n, int to,
                uint64_t to_off, const char *path, NpkErr *e) {
  static const size_t chunk = 1u << 20;
  unsigned char *buf = NULL;
  int rc = NPK_OK;
  while (n > 0) {
    loff_t a = (loff_t)off, b = (loff_t)to_off;
    int fake = fault_check("write");
    ssize_t w;
    if (!fake) fake = full_check(to, to_off + n);
    if (fake) {
      rc = npk_err_sys(e, fake, "cannot write", path);
      break;
    }
    w = copy_file_range(from, &a, to, &b, n > (1u << 30) ? (1u << 30) : n, 0);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      /* Not supported here (or a short source): copy through memory. */
      size_t want = n > chunk ? chunk : (size_t)n;
      ssize_t r;
      if (!buf && !(buf = npk_malloc(chunk))) {
        rc = npk_err(e, NPK_NOMEM, "out of memory copying %s", path);
        break;
      }
      r = npk_io_read_at(st, from, buf, want, off);
      if (r <= 0) {
        rc = r == 0
                 ? npk_err(e, NPK_CORRUPT, "short source copying to %s", path)
                 : npk_err_sys(e, errno, "cannot read while copying to", path);
        break;
      }
      rc = npk_io_pwrite(st, to, buf, (size_t)r, to_off, path, e);
      if (rc != NPK_OK) break;
      w = r;
    } else {
      stat_add(st, &st->stats.bytes_read, (uint64_t)w);
      stat_add(st, &st->stats.bytes_written, (uint64_t)w);
      rec_copied(st, to, to_off, (uint64_t)w);
    }
    off += (uint64_t)w;
    to_off += (uint64_t)w;
    n -= (uint64_t)w;
  }
  npk_free(buf);
  return rc;
}

char *npk_path(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = npk_malloc(a + b + 2);
  if (!p) return NULL;
  memcpy(p, dir, a);
  p[a] = '/';
  memcpy(p + a + 1, name, b + 1);
  return p;
}

int npk_mkdirs(const char *path, NpkErr *e) {
  char *p = npk_strdup(path);
  int rc = NPK_OK;
  if (!p) return npk_err(e, NPK_NOMEM, "out of memory");
  for (char *s = p + 1;; s++) {
    if (*s == '/' || *s == 0) {
      char c = *s;
      *s = 0;
      if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        rc = npk_err_sys(e, errno, "cannot create directory", p);
        break;
      }
      *s = c;
      if (!c) break;
    }
  }
  npk_free(p);
  return rc;
}
