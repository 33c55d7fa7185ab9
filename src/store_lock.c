/*
** store_lock.c — SQLite's rollback-journal locking over metadata.npkm-lock,
** with Linux open-file-description locks: each session opens the lock file
** itself, so two sessions conflict whether they live in one process or two,
** and closing one descriptor never drops another's locks.
**
** Bytes of the lock file, as SQLite's unix VFS uses its lock page:
**   PENDING  (0)  write-locked by a committer waiting for readers to leave;
**                 new readers take a read lock on it briefly, so they wait
**   SHARED   (1)  read-locked by every reader, write-locked when EXCLUSIVE
**   RESERVED (2)  write-locked by the one session with a write transaction
** PENDING and SHARED are neighbours so that a reader locks both with one
** call, then lets PENDING go: two system calls per statement, not three.
** A writer keeps its read lock on PENDING under RESERVED and turns PENDING
** and SHARED into EXCLUSIVE with one call when no reader is in the way:
** four calls for a write transaction, lock to release.
** Waits retry with growing sleeps until the session's busy timeout, the way
** SQLite's default busy handler does.
**
** The lock file also carries one word, at NPK_LOCK_MARK_OFF, that a commit
** sets before writing its journal and clears after deleting it.  Readers
** see it through a shared mapping, so a statement needs no system call to
** learn that no commit can have died half applied; only when the word is
** set do they look for a hot journal.  The first lock a process takes on a
** store looks for the journal regardless, since after a power cut the word
** may never have reached the disk.
**
** Next to the mark, at NPK_LOCK_SEQ_OFF, a commit count: every session
** raises it before it lets EXCLUSIVE go, so whatever a writer of ours
** changed (a commit, a recovery) shows in the mapping.  A reader whose
** count is unchanged since it last confirmed its state knows no writer of
** ours has committed since, without a system call (npk_store_refresh).
** Writers store both words through a writable mapping of the same page
** (lock_words), so that a commit spends no system call on them either.
**
** Only writers create the lock file (npk_lock_create): readers use it when
** it is there, read-only if need be, and read without locking when it is
** not (a store NumPack wrote, perhaps in a directory this process may not
** write).
*/
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_int.h"

#define PENDING_BYTE  0
#define SHARED_BYTE   1
#define RESERVED_BYTE 2

/* ThreadSanitizer sees the mutexes and atomics that order the sessions of
** one process, not the kernel's file locks: yet a reader's SHARED lock ends
** before a commit's EXCLUSIVE begins, and whatever one writer did under
** RESERVED is done before the next one has it.  A build with it tells it of
** each level a session gains and leaves (order_gain, order_leave), as of a
** lock of its own per level, so that it reports only the accesses no lock
** orders; in any other build they are nothing. */
#if defined(__SANITIZE_THREAD__)
#define NPK_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NPK_TSAN 1
#endif
#endif
#ifdef NPK_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
/* Where in st->lk_order each level's stand-in is. */
enum { ORDER_SHARED, ORDER_RESERVED, ORDER_EXCLUSIVE };

/* S (with a lock file) is about to hold TO: what the holders of a level
** that excludes it did before they let it go comes before what S does
** now.  SHARED waits for EXCLUSIVE to go, RESERVED for RESERVED, and
** EXCLUSIVE for SHARED, besides holding RESERVED already. */
static void order_gain(NpkSession *s, int to) {
  NpkStore *st = s->store;
  if (s->lock < NPK_LOCK_SHARED && to >= NPK_LOCK_SHARED)
    __tsan_acquire(st->lk_order + ORDER_EXCLUSIVE);
  if (s->lock < NPK_LOCK_RESERVED && to >= NPK_LOCK_RESERVED)
    __tsan_acquire(st->lk_order + ORDER_RESERVED);
  if (s->lock < NPK_LOCK_EXCLUSIVE && to == NPK_LOCK_EXCLUSIVE)
    __tsan_acquire(st->lk_order + ORDER_SHARED);
}

/* S is about to go down to TO: what it did under each level it leaves
** comes before what the next holder of a level excluded by it does. */
static void order_leave(NpkSession *s, int to) {
  NpkStore *st = s->store;
  if (s->lock == NPK_LOCK_EXCLUSIVE && to < NPK_LOCK_EXCLUSIVE)
    __tsan_release(st->lk_order + ORDER_EXCLUSIVE);
  if (s->lock >= NPK_LOCK_RESERVED && to < NPK_LOCK_RESERVED)
    __tsan_release(st->lk_order + ORDER_RESERVED);
  if (s->lock >= NPK_LOCK_SHARED && to < NPK_LOCK_SHARED)
    __tsan_release(st->lk_order + ORDER_SHARED);
}
#else
#define order_gain(s, to)  ((void)0)
#define order_leave(s, to) ((void)0)
#endif

/* Map the lock file's first page read-only, once per store, for the commit
** mark.  A lock file too short to hold the mark is not mapped: its mark
** then reads as set. */
static void map_lock_page(NpkStore *st, int fd) {
  struct stat sb;
  void *p;
  int slot;
  /* Sessions of one store may open at once in several threads. */
  pthread_mutex_lock(&st->mu);
  if (!st->lock_page && fstat(fd, &sb) == 0 &&
      sb.st_size >= NPK_LOCK_SEQ_OFF + 8 &&
      (p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0)) != MAP_FAILED) {
    /* Guarded like the data files: a lock file cut short must not fault;
    ** its mark then reads as set (npk_lock_marked). */
    if ((slot = npk_guard_add(p, 4096, &st->map_faults)) >= 0) {
      st->lock_slot = slot;
      __atomic_store_n(&st->lock_page, (unsigned char *)p, __ATOMIC_RELEASE);
    } else {
      munmap(p, 4096);
    }
  }
  pthread_mutex_unlock(&st->mu);
}

/* The lock file FD must have no other name: one outside the store would
** take the commit mark (and the size npk_lock_create gives the file). */
static int check_links(NpkStore *st, int fd, struct stat *sb, NpkErr *e) {
  if (fstat(fd, sb) != 0)
    return npk_err_sys(e, errno, "cannot stat lock file of", st->dir);
  if (sb->st_nlink > 1)
    return npk_err(e, NPK_CORRUPT,
                   "store %s: %s has %llu hard links; "
                   "refusing to use it, as another name may lie outside the "
                   "store",
                   st->dir, NPK_LOCKFILE, (unsigned long long)sb->st_nlink);
  return NPK_OK;
}

/* Readers open the lock file if it is there and never create, extend or
** otherwise change it: shared locks work on a read-only descriptor (an
** open-file-description read lock needs only read access), so a lock file
** this process may not write still serves.  No lock file, or one this
** process may not open at all (permissions, NPK_READONLY), leaves *PFD at
** -1 and the session reads without locking (see npk_shared_lock for what
** that gives up).  Any other failure (no descriptor left, an I/O error) is
** returned: reading without the lock that is there would let a commit
** change the files under the reader.  A lock file that is a link, not a
** regular file or has another name is NPK_CORRUPT, as any file of the
** store.  *PRW tells whether the descriptor can also take write locks. */
int npk_lock_open(NpkStore *st, int *pfd, int *prw, NpkErr *e) {
  struct stat sb;
  int fd = -1, rc = NPK_READONLY;
  *pfd = -1;
  *prw = 0;
  if (!st->readonly) rc = npk_io_open(st, NPK_LOCKFILE, O_RDWR, &fd, e);
  if (rc == NPK_OK) *prw = 1;
  else if (rc == NPK_READONLY)
    rc = npk_io_open(st, NPK_LOCKFILE, O_RDONLY, &fd, e);
  if (rc == NPK_NOFILE || rc == NPK_READONLY) {
    e->rc = NPK_OK;
    return NPK_OK;
  }
  if (rc) return rc;
  if ((rc = check_links(st, fd, &sb, e))) {
    close(fd);
    *prw = 0;
    return rc;
  }
  *pfd = fd;
  map_lock_page(st, fd);
  return NPK_OK;
}

/* Writers need the lock file for write locks and the commit mark: create
** it, sized to hold the mark, if it is missing. */
int npk_lock_create(NpkStore *st, int *pfd, NpkErr *e) {
  struct stat sb;
  int fd, rc = npk_io_open(st, NPK_LOCKFILE, O_RDWR | O_CREAT, &fd, e);
  *pfd = -1;
  if (rc) return rc;
  if ((rc = check_links(st, fd, &sb, e))) {
    close(fd);
    return rc;
  }
  if (sb.st_size < 4096) {
    if (ftruncate(fd, 4096) != 0) {
      rc = npk_err_sys(e, errno, "cannot extend lock file of", st->dir);
      close(fd);
      return rc;
    }
  }
  *pfd = fd;
  map_lock_page(st, fd);
  return NPK_OK;
}

/* npk_lock_mark writes the mark and the count in one piece. */
_Static_assert(NPK_LOCK_SEQ_OFF == NPK_LOCK_MARK_OFF + 8,
               "the commit count follows the commit mark");
_Static_assert(NPK_LOCK_MARK_OFF % 8 == 0, "the words are aligned");

/* The lock file's first page mapped for writing, for S (a writer under
** EXCLUSIVE): the mark and the count are then stored, where a pwrite
** each costs a system call and, on ext4, a change of the file's time
** (three per commit).  Other processes see the stores at once, through
** the same page of the page cache, as they see a pwrite.  Made once per
** store, from the descriptor of the first writer to ask; NULL when it
** cannot be (no room, a read-only descriptor) or the file was cut short
** under it (the guard then gave it a page of zeros): writers pwrite. */
static volatile uint64_t *lock_words(NpkSession *s) {
  NpkStore *st = s->store;
  void *p;
  int slot;
  if (!st->lock_wpage && !st->lock_wfailed && s->lock_rw) {
    /* Only the session holding RESERVED or more gets here: no other
    ** writer races. */
    p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, s->lockfd, 0);
    slot = p == MAP_FAILED ? -1 : npk_guard_add_rw(p, 4096, &st->map_faults, 1);
    if (slot >= 0) {
      st->lock_wslot = slot;
      st->lock_wpage = p;
    } else {
      if (p != MAP_FAILED) munmap(p, 4096);
      st->lock_wfailed = 1;
    }
  }
  if (!st->lock_wpage || npk_guard_hit(st->lock_wslot)) return NULL;
  return (volatile uint64_t *)(st->lock_wpage + NPK_LOCK_MARK_OFF);
}

#define LOCKWORD_FAILED "cannot write the lock file " NPK_LOCKFILE " of"

/* Store the word V (the mark, or the count) at OFF: through the writable
** mapping, else with a pwrite.  An error in E when neither could. */
static int lock_write(NpkSession *s, uint64_t v, off_t off, NpkErr *e) {
  volatile uint64_t *w = lock_words(s);
  unsigned char b[8];
  ssize_t k;
  int rc =
      npk_io_fault(s->store, "lockword", LOCKWORD_FAILED, s->store->dir, e);
  if (rc) return rc;
  /* The file holds little-endian words, as npk_put_u64 writes them. */
  npk_put_u64(b, v);
  if (w) {
    memcpy(&v, b, 8);
    __atomic_store_n(&w[(off - NPK_LOCK_MARK_OFF) / 8], v, __ATOMIC_RELEASE);
    if (!npk_guard_hit(s->store->lock_wslot)) return NPK_OK;
  }
  k = pwrite(s->lockfd, b, 8, off);
  if (k == 8) return NPK_OK;
  return npk_err_sys(e, k < 0 ? errno : EIO, LOCKWORD_FAILED, s->store->dir);
}

/* The word at OFF of the read-only mapping P, read whole: the writer
** stores it whole, so a reader never pairs halves of two counts. */
static uint64_t lock_read(const volatile unsigned char *p, off_t off) {
  uint64_t v =
      __atomic_load_n((const volatile uint64_t *)(p + off), __ATOMIC_ACQUIRE);
  unsigned char b[8];
  memcpy(b, &v, 8);
  return npk_get_u64(b);
}

/* The commit count to write next: one more than the present one. */
static uint64_t next_seq(NpkSession *s) {
  unsigned char b[8];
  uint64_t v = 0;
  if (!npk_lock_seq(s->store, &v) &&
      pread(s->lockfd, b, 8, NPK_LOCK_SEQ_OFF) == 8)
    v = npk_get_u64(b);
  return v + 1;
}

/* Raise the commit count, the new one into *PSEQ (the caller holds
** EXCLUSIVE, so no other writer moves it meanwhile); 0 if it could not be
** written. */
static int raise_seq(NpkSession *s, uint64_t *pseq) {
  NpkErr ignored;
  *pseq = next_seq(s);
  return lock_write(s, *pseq, NPK_LOCK_SEQ_OFF, &ignored) == NPK_OK;
}

/* S has just raised the commit count to SEQ: one of its own writes
** (npk_own_commits), after the one before if that left SEQ - 1. */
static void note_own(NpkSession *s, uint64_t seq) {
  if (!s->own || s->own_to != seq - 1) s->own_from = seq - 1;
  s->own_to = seq;
  s->own = 1;
}

/* Set or clear the commit mark (caller holds EXCLUSIVE).  Clearing it
** also raises the commit count, first: a reader that finds the mark clear
** after reading rows without the lock, then the count unchanged, knows no
** commit changed them meanwhile (npk_read_row_unlocked); and a writer that
** dies after the count (before it lets EXCLUSIVE go) leaves its commit
** visible to readers that trust the count. */
int npk_lock_mark(NpkSession *s, uint64_t v) {
  int rc;
  if (s->lockfd < 0) return NPK_OK;
  if (v == 0) {
    uint64_t seq;
    NpkErr ignored;
    /* A count that could not be raised must not be followed by a clear
    ** mark: a reader would take rows copied during the commit for whole.
    ** The mark stays, and readers take the lock until a later commit
    ** clears it. */
    if (!raise_seq(s, &seq)) return NPK_OK;
    /* A recovery, made before any transaction, is no write of the
    ** session's own: the count it leaves starts no run of them. */
    if (s->txn) note_own(s, seq);
    lock_write(s, 0, NPK_LOCK_MARK_OFF, &ignored);
    return NPK_OK;
  }
  if ((rc = lock_write(s, v, NPK_LOCK_MARK_OFF, &s->err))) return rc;
  /* A mark set is seen before any change the commit makes after it. */
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  return NPK_OK;
}

/* 1 when a hot journal may exist: the mark is set, or it cannot be read
** (no mapping, or the lock file was cut short under it). */
int npk_lock_marked(NpkStore *st) {
  const volatile unsigned char *p =
      __atomic_load_n(&st->lock_page, __ATOMIC_ACQUIRE);
  int set;
  if (!p || npk_guard_hit(st->lock_slot)) return 1;
  set = lock_read(p, NPK_LOCK_MARK_OFF) != 0;
  return set || npk_guard_hit(st->lock_slot);
}

/* The commit count into *PSEQ; 0 when it cannot be read (no mapping, or
** the lock file was cut short under it). */
int npk_lock_seq(NpkStore *st, uint64_t *pseq) {
  const volatile unsigned char *p =
      __atomic_load_n(&st->lock_page, __ATOMIC_ACQUIRE);
  *pseq = 0;
  if (!p || npk_guard_hit(st->lock_slot)) return 0;
  *pseq = lock_read(p, NPK_LOCK_SEQ_OFF);
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  return !npk_guard_hit(st->lock_slot);
}

/* The session lets EXCLUSIVE go: the count raised, as its own write.  A
** count that could not be raised only delays what readers see, by the
** recheck interval at most: they then stat the catalog, as for programs
** that ignore the count. */
static void bump_seq(NpkSession *s) {
  uint64_t seq;
  if (raise_seq(s, &seq)) note_own(s, seq);
}

/* One non-blocking lock call on LEN bytes from BYTE; 1 on success, 0 if
** held by another, -1 on a real error. */
static int lk_range(int fd, short type, off_t byte, off_t len) {
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = len;
  if (fcntl(fd, F_OFD_SETLK, &fl) == 0) return 1;
  if (errno == EAGAIN || errno == EACCES || errno == EINTR) return 0;
  return -1;
}

static int lk(int fd, short type, off_t byte) {
  return lk_range(fd, type, byte, 1);
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Retry TRY until it succeeds or the busy timeout runs out. */
static int wait_for(NpkSession *s, int (*try)(NpkSession *), const char *what,
                    NpkErr *e) {
  static const int delays[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
  int waited = 0, i = 0;
  for (;;) {
    int r = try(s);
    if (r > 0) return NPK_OK;
    if (r < 0) return npk_err_sys(e, errno, "cannot lock", s->store->dir);
    if (waited == 0 && s->busy_fn) {
      int ms = s->busy_fn(s->busy_arg);
      if (ms < 0) return npk_err(e, NPK_NOMEM, "out of memory");
      s->busy_ms = ms;
    }
    if (waited >= s->busy_ms) break;
    {
      int d = delays[i < 11 ? i++ : 11];
      if (d > s->busy_ms - waited) d = s->busy_ms - waited;
      sleep_ms(d);
      waited += d;
    }
  }
  return npk_err(e, NPK_BUSY, "store %s is locked (%s)", s->store->dir, what);
}

static int try_shared(NpkSession *s) {
  int r = lk_range(s->lockfd, F_RDLCK, PENDING_BYTE, 2);
  if (r > 0) lk(s->lockfd, F_UNLCK, PENDING_BYTE);
  return r;
}

static int try_reserved(NpkSession *s) {
  return lk(s->lockfd, F_WRLCK, RESERVED_BYTE);
}

/* A reader holds PENDING for an instant while it takes SHARED. */
static int try_pending(NpkSession *s) {
  return lk(s->lockfd, F_WRLCK, PENDING_BYTE);
}

static int try_exclusive(NpkSession *s) {
  return lk(s->lockfd, F_WRLCK, SHARED_BYTE);
}

/* SHARED and RESERVED together, or nothing: a session waiting to write
** must not sit on a SHARED lock between tries, since a committer waits for
** every SHARED lock to go and would wait for the very session that waits
** for it.  The read lock on PENDING is kept: only the RESERVED holder ever
** write-locks PENDING, and readers only read-lock it, so it stands in no
** one's way, and the commit later turns both bytes into its EXCLUSIVE lock
** with one call. */
static int try_shared_reserved(NpkSession *s) {
  int r = lk_range(s->lockfd, F_RDLCK, PENDING_BYTE, 2);
  if (r <= 0) return r;
  r = try_reserved(s);
  if (r <= 0) lk_range(s->lockfd, F_UNLCK, 0, 0);
  return r;
}

int npk_lock_reserved(NpkSession *s, NpkErr *e) {
  int r;
  if (s->lockfd < 0 || s->lock >= NPK_LOCK_RESERVED) {
    if (s->lock < NPK_LOCK_RESERVED) s->lock = NPK_LOCK_RESERVED;
    return NPK_OK;
  }
  if (s->lock == NPK_LOCK_NONE) {
    int rc =
        wait_for(s, try_shared_reserved, "another transaction is writing", e);
    if (rc == NPK_OK) {
      order_gain(s, NPK_LOCK_RESERVED);
      s->lock = NPK_LOCK_RESERVED;
    }
    return rc;
  }
  /* Reading already: waiting here could deadlock with a committer that
  ** waits for this read to end, so one try only, as SQLite does. */
  r = try_reserved(s);
  if (r > 0) {
    order_gain(s, NPK_LOCK_RESERVED);
    s->lock = NPK_LOCK_RESERVED;
    return NPK_OK;
  }
  if (r < 0) return npk_err_sys(e, errno, "cannot lock", s->store->dir);
  return npk_err(e, NPK_BUSY,
                 "store %s is locked (another transaction is "
                 "writing)",
                 s->store->dir);
}

/* Move the session's lock up to LEVEL (SHARED, RESERVED or EXCLUSIVE), or
** down to SHARED or RESERVED.  On failure the lock is left where it was. */
int npk_lock_to(NpkSession *s, int level, NpkErr *e) {
  int rc = NPK_OK;
  if (s->lockfd < 0) {
    s->lock = level; /* a reader without a lock file (npk_lock_open) */
    return NPK_OK;
  }
  if (level == s->lock) return NPK_OK;
  if (level < s->lock) {
    if (s->lock == NPK_LOCK_EXCLUSIVE) bump_seq(s);
    order_leave(s, level);
    /* Downgrade: keep the read lock, drop what LEVEL does not include. */
    if (lk(s->lockfd, F_RDLCK, SHARED_BYTE) < 0)
      return npk_err_sys(e, errno, "cannot downgrade lock on", s->store->dir);
    lk(s->lockfd, F_UNLCK, PENDING_BYTE);
    if (level < NPK_LOCK_RESERVED) lk(s->lockfd, F_UNLCK, RESERVED_BYTE);
    s->lock = level;
    return NPK_OK;
  }
  if (s->lock == NPK_LOCK_NONE) {
    rc = wait_for(s, try_shared, "a commit is in progress", e);
    if (rc) return rc;
    order_gain(s, NPK_LOCK_SHARED);
    s->lock = NPK_LOCK_SHARED;
  }
  if (level >= NPK_LOCK_RESERVED && s->lock < NPK_LOCK_RESERVED) {
    rc = wait_for(s, try_reserved, "another transaction is writing", e);
    if (rc) return rc;
    order_gain(s, NPK_LOCK_RESERVED);
    s->lock = NPK_LOCK_RESERVED;
  }
  if (level == NPK_LOCK_EXCLUSIVE) {
    /* No reader in the way, the usual case: PENDING and SHARED at once
    ** (the kernel takes a range whole or not at all). */
    if (lk_range(s->lockfd, F_WRLCK, PENDING_BYTE, 2) > 0) {
      order_gain(s, NPK_LOCK_EXCLUSIVE);
      s->lock = NPK_LOCK_EXCLUSIVE;
      return NPK_OK;
    }
    /* PENDING keeps new readers out while the present ones finish. */
    rc = wait_for(s, try_pending, "readers are starting", e);
    if (rc) return rc;
    rc = wait_for(s, try_exclusive, "readers are active", e);
    if (rc) {
      lk(s->lockfd, F_UNLCK, PENDING_BYTE);
      return rc;
    }
    order_gain(s, NPK_LOCK_EXCLUSIVE);
    s->lock = NPK_LOCK_EXCLUSIVE;
  }
  return NPK_OK;
}

void npk_lock_release(NpkSession *s) {
  if (s->lockfd >= 0 && s->lock != NPK_LOCK_NONE) {
    struct flock fl;
    if (s->lock == NPK_LOCK_EXCLUSIVE) bump_seq(s);
    order_leave(s, NPK_LOCK_NONE);
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_UNLCK;
    fl.l_whence = SEEK_SET;
    fcntl(s->lockfd, F_OFD_SETLK, &fl);
  }
  s->lock = NPK_LOCK_NONE;
}
