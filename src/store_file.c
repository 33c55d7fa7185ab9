/*
** store_file.c — a store's open files: descriptors kept in a process-wide
** least-recently-used list (a store of thousands of arrays never holds one
** descriptor per array), buffered appends, read-only mappings guarded
** against files that shrink under them, and the retire list that keeps
** replaced mappings alive while a scan may still point into them.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_int.h"

/* Open descriptors of data files, process-wide: at most max_open of them
** are kept (a quarter of RLIMIT_NOFILE, within [8, 256]), the least
** recently used one closed when another must open.  fd_mu is taken after
** a store's mu, never before. */
static pthread_mutex_t fd_mu = PTHREAD_MUTEX_INITIALIZER;

static NpkFile *lru_head, *lru_tail; /* most / least recently used */

static int nopen; /* files in the list */

static int max_open; /* 0 until first needed */

static void lru_unlink(NpkFile *f) {
  if (f->lru_prev) f->lru_prev->lru_next = f->lru_next;
  else lru_head = f->lru_next;
  if (f->lru_next) f->lru_next->lru_prev = f->lru_prev;
  else lru_tail = f->lru_prev;
  f->lru_prev = f->lru_next = NULL;
}

static void lru_push(NpkFile *f) {
  f->lru_prev = NULL;
  f->lru_next = lru_head;
  if (lru_head) lru_head->lru_prev = f;
  else lru_tail = f;
  lru_head = f;
}

/* Close descriptors no call is using until one more may open (fd_mu
** held).  Should every one be in use, the limit is passed. */
static void make_room(void) {
  NpkFile *f = lru_tail;
  if (!max_open) {
    struct rlimit rl;
    rlim_t n = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur / 4 : 64;
    max_open = n < 8 ? 8 : n > 256 ? 256 : (int)n;
  }
  while (nopen >= max_open && f) {
    NpkFile *prev = f->lru_prev;
    if (f->users == 0) {
      lru_unlink(f);
      close(f->fd);
      f->fd = -1;
      nopen--;
    }
    f = prev;
  }
}

/* Open REL for F (fd_mu held), checking that it is still the file F was
** when IDENTIFY is 0. */
static int file_reopen(NpkStore *st, NpkFile *f, int flags, int identify,
                       NpkErr *e) {
  struct stat sb;
  int fd, rc;
  make_room();
  rc = npk_io_open(st, f->rel, flags, &fd, e);
  if (rc == NPK_READONLY && identify && !(flags & O_CREAT) && !st->readonly) {
    /* A file this process may only read (a shared dataset, a read-only
    ** mount) still serves readers; writing to it fails then. */
    rc = npk_io_open(st, f->rel, O_RDONLY, &fd, e);
    f->writable = 0;
  }
  if (rc == NPK_NOFILE)
    return npk_err(e, NPK_CORRUPT, "%s is missing", f->path);
  if (rc) return rc;
  if (fstat(fd, &sb) != 0) {
    rc = npk_err_sys(e, errno, "cannot stat", f->path);
    close(fd);
    return rc;
  }
  if (identify) {
    f->dev = sb.st_dev;
    f->ino = sb.st_ino;
    f->size = (uint64_t)sb.st_size;
  } else if (sb.st_dev != f->dev || sb.st_ino != f->ino) {
    close(fd);
    return npk_err(e, NPK_CORRUPT,
                   "%s was replaced by another file while "
                   "the store was open",
                   f->path);
  }
  f->fd = fd;
  lru_push(f);
  nopen++;
  return NPK_OK;
}

int npk_file_use(NpkStore *st, NpkFile *f, NpkErr *e) {
  int rc = NPK_OK;
  pthread_mutex_lock(&fd_mu);
  if (f->fd >= 0) {
    if (lru_head != f) {
      lru_unlink(f);
      lru_push(f);
    }
  } else {
    rc = file_reopen(st, f, f->writable ? O_RDWR : O_RDONLY, 0, e);
  }
  if (rc == NPK_OK) f->users++;
  pthread_mutex_unlock(&fd_mu);
  return rc;
}

void npk_file_done(NpkFile *f) {
  pthread_mutex_lock(&fd_mu);
  f->users--;
  pthread_mutex_unlock(&fd_mu);
}

int npk_file_open(NpkStore *st, const char *rel, int create, NpkFile **pp,
                  NpkErr *e) {
  NpkFile *f = npk_calloc(1, sizeof *f);
  int flags = st->readonly ? O_RDONLY : O_RDWR, rc;
  *pp = NULL;
  if (!f || !(f->path = npk_path(st->dir, rel))) {
    npk_free(f);
    return npk_err(e, NPK_NOMEM, "out of memory");
  }
  f->rel = f->path + strlen(st->dir) + 1;
  f->fd = -1;
  f->writable = !st->readonly;
  if (create) flags |= O_CREAT | O_TRUNC;
  pthread_mutex_lock(&fd_mu);
  rc = file_reopen(st, f, flags, 1, e);
  pthread_mutex_unlock(&fd_mu);
  if (rc) {
    npk_free(f->path);
    npk_free(f);
    return rc;
  }
  f->refs = 1;
  f->gslot = -1;
  f->temp = create;
  *pp = f;
  return NPK_OK;
}

/* F now lives at PATH (malloc'd, absolute, inside the store). */
void npk_file_rename(NpkStore *st, NpkFile *f, char *path) {
  npk_free(f->path);
  f->path = path;
  f->rel = path + strlen(st->dir) + 1;
}

/* Free a retired block: a mapping (LEN > 0) or malloc'd memory. */
void npk_block_release(void *p, size_t len) {
  if (len) {
    npk_guard_remove(p);
    munmap(p, len);
  } else {
    npk_free(p);
  }
}

/* Sessions retire with st->mu held (a mapping replaced, a commit adopted)
** and without it (a transaction letting go of rows it replaced, an undo
** record freed), so the list takes entries without the mutex.  One that
** retires without it is pinned, so pins cannot drop to 0 meanwhile, and
** whoever empties the list takes it whole (npk_retired_free). */
void npk_retired_push(NpkStore *st, NpkRetired *r) {
  r->next = __atomic_load_n(&st->retired, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(&st->retired, &r->next, r, 1,
                                      __ATOMIC_RELEASE, __ATOMIC_RELAXED))
    ;
}

int npk_file_short(const NpkFile *f, uint64_t len, const char *array,
                   uint64_t need, NpkErr *e) {
  return npk_err(
      e, NPK_CORRUPT, "%s was truncated to %llu bytes; array \"%s\" needs %llu",
      f->path, (unsigned long long)len, array, (unsigned long long)need);
}

NpkRetired *npk_retire_note(void) { return npk_calloc(1, sizeof(NpkRetired)); }

void npk_retire(NpkStore *st, NpkRetired *note, void *p, size_t len) {
  if (__atomic_load_n(&st->pins, __ATOMIC_RELAXED) > 0) {
    note->kind = NPK_RET_MAP;
    note->p = p;
    note->len = len;
    npk_retired_push(st, note);
    return;
  }
  npk_free(note);
  npk_block_release(p, len);
}

/* Appends are gathered here and written in large pieces: one pwrite per
** row would make a transaction of many single-row INSERTs pay a system call
** for each.  Anything that reads the file or writes elsewhere in it flushes
** first. */
#define NPK_WBUF (1u << 20)

int npk_file_flush(NpkStore *st, NpkFile *f, NpkErr *e) {
  int rc;
  if (!f->wlen) return NPK_OK;
  if ((rc = npk_file_use(st, f, e))) return rc;
  rc = npk_io_pwrite(st, f->fd, f->wbuf, f->wlen, f->wstart, f->path, e);
  npk_file_done(f);
  if (rc == NPK_OK) f->wlen = 0;
  return rc;
}

/* Before a committed file is written in place.  A file with a second name
** may share its bytes with a file outside the store (a hard link made by
** whoever wrote the store), which writing in place would change too.  The
** store's own backups link only files that a commit replaces whole, and a
** writer sweeps stale ones before it writes, so a second link here is never
** ours.  *OUT (when not NULL) gets the file's status.  The length is
** checked with the same fstat, which the first write of a transaction to
** a file makes anyway. */
int npk_file_check_writable(NpkStore *st, NpkFile *f, const char *array,
                            uint64_t need, struct stat *out, NpkErr *e) {
  struct stat sb;
  int rc;
  if (!f->writable)
    return npk_err(e, NPK_READONLY,
                   "cannot write %s: this process may not "
                   "write it",
                   f->path);
  if ((rc = npk_file_use(st, f, e))) return rc;
  if (fstat(f->fd, &sb) != 0)
    rc = npk_err_sys(e, errno, "cannot stat", f->path);
  else if (sb.st_nlink > 1)
    rc = npk_err(e, NPK_READONLY,
                 "cannot write %s in place: it has %llu "
                 "hard links, and another name may lie outside the store",
                 f->path, (unsigned long long)sb.st_nlink);
  else if ((uint64_t)sb.st_size < need)
    rc = npk_file_short(f, (uint64_t)sb.st_size, array, need, e);
  else if (out) *out = sb;
  npk_file_done(f);
  return rc;
}

/* Forget buffered bytes at or past file offset END (appends undone). */
void npk_file_discard(NpkFile *f, uint64_t end) {
  if (f->wlen && f->wstart + f->wlen > end)
    f->wlen = end > f->wstart ? (size_t)(end - f->wstart) : 0;
}

int npk_file_append(NpkStore *st, NpkFile *f, const void *p, size_t n,
                    uint64_t off, NpkErr *e) {
  int rc;
  if (f->wlen && off == f->wstart + f->wlen && f->wlen + n <= NPK_WBUF) {
    memcpy(f->wbuf + f->wlen, p, n);
    f->wlen += n;
    return NPK_OK;
  }
  if ((rc = npk_file_flush(st, f, e))) return rc;
  if (n >= NPK_WBUF / 2 || (!f->wbuf && !(f->wbuf = npk_malloc(NPK_WBUF)))) {
    if ((rc = npk_file_use(st, f, e))) return rc;
    rc = n >= NPK_WBUF / 2 ? npk_io_reserve(st, f->fd, off, n, f->path, e)
                           : NPK_OK;
    if (rc == NPK_OK) rc = npk_io_pwrite(st, f->fd, p, n, off, f->path, e);
    npk_file_done(f);
    return rc;
  }
  memcpy(f->wbuf, p, n);
  f->wlen = n;
  f->wstart = off;
  return NPK_OK;
}

void npk_file_unref(NpkStore *st, NpkFile *f) {
  if (!f || --f->refs > 0) return;
  npk_free(f->wbuf);
  npk_file_unmap_w(f);
  if (f->base) npk_retire(st, f->note, f->base, f->maplen);
  if (f->temp) {
    NpkErr ignored;
    npk_io_unlink(st, f->rel, &ignored);
  }
  pthread_mutex_lock(&fd_mu);
  if (f->fd >= 0) {
    lru_unlink(f);
    close(f->fd);
    nopen--;
  }
  pthread_mutex_unlock(&fd_mu);
  npk_free(f->path);
  npk_free(f);
}

/* Map F afresh, at least NEED bytes (with st->mu held).  The mapping
** reserves room past the end so that appends rarely force a new one; an
** old mapping is retired, not unmapped, because row pointers into it may
** still be held. */
static int map_locked(NpkStore *st, NpkFile *f, uint64_t need, NpkErr *e) {
  size_t len, page = (size_t)sysconf(_SC_PAGESIZE);
  NpkRetired *note = npk_retire_note();
  void *p;
  int slot, rc;
  if (!note) return npk_err(e, NPK_NOMEM, "out of memory mapping %s", f->path);
  len = (size_t)(need + need / 4 + ((uint64_t)1 << 20));
  len = (len + page - 1) / page * page;
  if ((rc = npk_file_use(st, f, e))) goto fail;
  /* The mapping keeps the file, not the descriptor: this one may close. */
  p = mmap(NULL, len, PROT_READ, MAP_SHARED, f->fd, 0);
  npk_file_done(f);
  if (p == MAP_FAILED) {
    rc = npk_err_sys(e, errno, "cannot map", f->path);
    goto fail;
  }
  if ((slot = npk_guard_add(p, len, &st->map_faults)) < 0) {
    munmap(p, len);
    rc = npk_err(e, NPK_NOMEM, "cannot map %s: no room to guard the mapping",
                 f->path);
    goto fail;
  }
  if (f->base) npk_retire(st, f->note, f->base, f->maplen);
  f->note = note;
  /* Looked at without st->mu (npk_file_unpatch, npk_array_row). */
  __atomic_store_n(&f->gslot, slot, __ATOMIC_RELAXED);
  /* A reader that sees the new length must see the new base too. */
  __atomic_store_n(&f->base, (unsigned char *)p, __ATOMIC_RELEASE);
  __atomic_store_n(&f->maplen, len, __ATOMIC_RELEASE);
  return NPK_OK;
fail:
  npk_free(note);
  return rc;
}

/* Make sure bytes [0, NEED) of F are mapped.  Bytes of F's write buffer
** are not: their owner flushes them first (npk_array_row). */
int npk_file_map(NpkStore *st, NpkFile *f, uint64_t need, NpkErr *e) {
  int rc = NPK_OK;
  if (need <= __atomic_load_n(&f->maplen, __ATOMIC_ACQUIRE)) return NPK_OK;
  if (need > npk_file_size(f))
    return npk_err(e, NPK_CORRUPT, "%s is shorter than its rows", f->path);
  pthread_mutex_lock(&st->mu);
  if (need > f->maplen) rc = map_locked(st, f, need, e);
  pthread_mutex_unlock(&st->mu);
  return rc;
}

/* Replace F's mapping if pages of zeros were put in it (store_guard.c):
** should the file have grown back, its bytes are only seen through a new
** mapping. */
int npk_file_unpatch(NpkStore *st, NpkFile *f, NpkErr *e) {
  int rc = NPK_OK;
  /* A first look without the mutex, which map_locked holds to change
  ** them; then again with it. */
  if (!__atomic_load_n(&f->base, __ATOMIC_RELAXED) ||
      !npk_guard_hit(__atomic_load_n(&f->gslot, __ATOMIC_RELAXED)))
    return NPK_OK;
  pthread_mutex_lock(&st->mu);
  if (f->base && npk_guard_hit(f->gslot))
    rc = map_locked(st, f, npk_file_size(f), e);
  pthread_mutex_unlock(&st->mu);
  return rc;
}

void npk_file_unmap_w(NpkFile *f) {
  if (!f->wbase) return;
  npk_guard_remove(f->wbase);
  munmap(f->wbase, f->wmaplen);
  f->wbase = NULL;
  f->wmaplen = 0;
}
