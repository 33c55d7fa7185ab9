/*
** store.c — store objects and reading: the per-process registry of open
** stores, opening (creating an empty catalog only when asked to: opening
** and reading never change anything on disk), sessions, the committed
** state and its refresh when another process commits, and row lookups by
** physical or logical index.  Files and mappings are store_file.c's.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store_int.h"

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static NpkStore *registry; /* open stores of this process */

/* ---- loading the committed state ------------------------------------- */

/* Open A's data file(s) and bitmap, checking every size against the
** catalog: a store that does not add up is NPK_CORRUPT, never repaired. */
int npk_array_load_storage(NpkStore *st, NpkArray *a, NpkErr *e) {
  char *path = NULL, *bmname = NULL;
  unsigned char *bytes = NULL;
  size_t nbytes;
  struct stat sb;
  NpkSegEntry *ents = NULL;
  int nent = 0, rc = NPK_OK;
  uint64_t need = a->row_bytes * a->shape[0];

  path = npk_path(st->dir, a->data_file);
  if (!path) return npk_err(e, NPK_NOMEM, "out of memory");
  if (!a->segmented) {
    a->seg = npk_calloc(1, sizeof *a->seg);
    if (!a->seg) {
      rc = npk_err(e, NPK_NOMEM, "out of memory");
      goto done;
    }
    rc = npk_file_open(st, a->data_file, 0, &a->seg[0].file, e);
    if (rc) goto done;
    a->nseg = 1;
    a->seg[0].rows = a->shape[0];
    if (a->seg[0].file->size < need) {
      rc = npk_err(e, NPK_CORRUPT,
                   "%s is damaged: %llu bytes, array \"%s\" needs %llu", path,
                   (unsigned long long)a->seg[0].file->size, a->name,
                   (unsigned long long)need);
      goto done;
    }
  } else {
    uint64_t rows = 0;
    rc = npk_io_read_file(st, a->data_file, &bytes, &nbytes, NULL, 0, e);
    if (rc == NPK_NOFILE) rc = npk_err(e, NPK_CORRUPT, "%s is missing", path);
    if (rc) goto done;
    rc = npk_seg_parse((const char *)bytes, nbytes, &ents, &nent, path, e);
    if (rc) goto done;
    a->seg = npk_calloc((size_t)(nent ? nent : 1), sizeof *a->seg);
    a->seg_names = npk_calloc((size_t)(nent ? nent : 1), sizeof *a->seg_names);
    if (!a->seg || !a->seg_names) {
      rc = npk_err(e, NPK_NOMEM, "out of memory");
      goto done;
    }
    for (int i = 0; i < nent; i++) {
      if (ents[i].rows > a->shape[0] - rows ||
          ents[i].bytes != ents[i].rows * a->row_bytes) {
        rc = npk_err(e, NPK_CORRUPT,
                     "%s is damaged: segment %d (%s) rows/bytes disagree "
                     "with the array's shape",
                     path, i, ents[i].file);
        goto done;
      }
      rc = npk_file_open(st, ents[i].file, 0, &a->seg[i].file, e);
      a->seg_names[i] = ents[i].file;
      ents[i].file = NULL;
      a->nseg = i + 1;
      if (rc) goto done;
      if (a->seg[i].file->size < ents[i].bytes) {
        rc = npk_err(
            e, NPK_CORRUPT, "%s is damaged: %llu bytes, manifest says %llu",
            a->seg[i].file->path, (unsigned long long)a->seg[i].file->size,
            (unsigned long long)ents[i].bytes);
        goto done;
      }
      a->seg[i].first_row = rows;
      a->seg[i].rows = ents[i].rows;
      rows += ents[i].rows;
    }
    if (rows != a->shape[0]) {
      rc = npk_err(e, NPK_CORRUPT,
                   "%s is damaged: segments hold %llu rows, the catalog says "
                   "%llu",
                   path, (unsigned long long)rows,
                   (unsigned long long)a->shape[0]);
      goto done;
    }
  }

  bmname = npk_malloc(strlen(a->name) + 16);
  if (!bmname) {
    rc = npk_err(e, NPK_NOMEM, "out of memory");
    goto done;
  }
  npk_free(path);
  strcpy(bmname, "deleted_");
  strcat(bmname, a->name);
  strcat(bmname, ".npkb");
  path = npk_path(st->dir, bmname);
  npk_free(bytes);
  bytes = NULL;
  if (!path) {
    rc = npk_err(e, NPK_NOMEM, "out of memory");
    goto done;
  }
  /* No longer than the bitmap of the array's rows. */
  rc = npk_io_read_file(st, bmname, &bytes, &nbytes, &sb,
                        npk_bm_size_for(a->shape[0]), e);
  if (rc == NPK_NOFILE) {
    rc = NPK_OK;
    goto done;
  }
  if (rc) goto done;
  rc = npk_bm_parse(bytes, nbytes, a->shape[0], &a->bm, path, e);
  if (rc) goto done;
  a->has_bm_file = 1;
  /* A bitmap the parser takes is its encoding byte for byte. */
  if (a->bm->nbits == a->shape[0] || !a->row_bytes)
    npk_file_id_set(&a->bm_id, &sb);
  /* Rows past the bitmap's own count are deleted: make that explicit,
  ** where the data file bounds the cost.  A zero-width array keeps the
  ** short bitmap (its rows are bounded by nothing but 2^63-1). */
  else if (npk_bm_extend(a->bm, a->shape[0], 0))
    rc = npk_err(e, NPK_NOMEM, "out of memory");
done:
  npk_seg_free(ents, nent);
  npk_free(bytes);
  npk_free(bmname);
  npk_free(path);
  return rc;
}

/* Undo a failed npk_array_load_storage: A is as the catalog made it. */
static void unload(NpkStore *st, NpkArray *a) {
  npk_array_drop_storage(st, a);
  a->has_bm_file = 0;
  a->bm_id.known = 0;
}

int npk_array_ready(NpkSession *s, NpkArray *a) {
  NpkStore *st = s->store;
  int rc = NPK_OK;
  if (__atomic_load_n(&a->loaded, __ATOMIC_ACQUIRE)) return NPK_OK;
  pthread_mutex_lock(&st->mu);
  if (!a->loaded) {
    rc = npk_array_load_storage(st, a, &s->err);
    if (rc) unload(st, a);
    else __atomic_store_n(&a->loaded, 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&st->mu);
  return rc;
}

/* Read the catalog into CAT. */
static int load_catalog(NpkStore *st, NpkCatalog *cat, int *pfd, NpkErr *e) {
  char *path = npk_path(st->dir, NPK_CATALOG);
  unsigned char *bytes = NULL;
  size_t n = 0;
  int rc, fd = -1;
  struct stat a, b;
  if (!path) return npk_err(e, NPK_NOMEM, "out of memory");
  /* Keep the file open: its inode cannot be reused while we hold it, so a
  ** different inode at the path always means a new commit. */
  for (int tries = 0;; tries++) {
    NpkErr ignored;
    rc = npk_io_open(st, NPK_CATALOG, O_RDONLY, &fd, e);
    if (rc) {
      if (rc == NPK_NOFILE)
        npk_err(e, NPK_NOFILE, "%s is not a numpack store (no %s)", st->dir,
                NPK_CATALOG);
      goto done;
    }
    npk_free(bytes);
    rc = npk_io_read_file(st, NPK_CATALOG, &bytes, &n, NULL, 0, e);
    if (rc == NPK_OK && fstat(fd, &a) == 0 &&
        npk_io_lstat(st, NPK_CATALOG, &b, &ignored) == NPK_OK &&
        a.st_ino == b.st_ino && a.st_dev == b.st_dev)
      break;
    close(fd);
    fd = -1;
    if (rc && rc != NPK_NOFILE) goto done;
    if (tries > 10) {
      rc = npk_err(e, NPK_BUSY, "%s keeps changing", path);
      goto done;
    }
  }
  rc = npk_catalog_parse(bytes, n, cat, e);
  if (rc) {
    /* Name the store, not just the file. */
    size_t used = strlen(e->msg);
    snprintf(e->msg + used, sizeof e->msg - used, " (in %s)", st->dir);
    goto done;
  }
  /* The other arrays' files are opened when first used; a segmented
  ** array's manifest names files the check below must see. */
  for (int i = 0; i < cat->n && rc == NPK_OK; i++) {
    if (!npk_cat_at(cat, i)->segmented) continue;
    rc = npk_array_load_storage(st, npk_cat_at(cat, i), e);
    npk_cat_at(cat, i)->loaded = 1;
  }
  /* Segment files are known now: each may belong to one array only. */
  if (rc == NPK_OK && (rc = npk_catalog_check_files(
                           cat, NPK_CATALOG " is damaged", e)) != NPK_OK) {
    size_t used = strlen(e->msg);
    snprintf(e->msg + used, sizeof e->msg - used, " (in %s)", st->dir);
  }
  if (rc) npk_catalog_clear(st, cat);
done:
  if (rc && fd >= 0) {
    close(fd);
    fd = -1;
  }
  *pfd = fd;
  npk_free(bytes);
  npk_free(path);
  return rc;
}

/* Hold FD as the catalog file the committed state was read from. */
static void hold(NpkStore *st, int fd) {
  if (st->cat_fd >= 0) close(st->cat_fd);
  st->cat_fd = fd;
  if (fd < 0 || fstat(fd, &st->cat_st) != 0) {
    if (fd >= 0) close(fd);
    st->cat_fd = -1;
  }
  /* The descriptor the in-place commits wrote through may be the last
  ** reference to a replaced catalog: closed now, the file system frees
  ** that file as part of the commit (or reload) that replaced it, not in
  ** the middle of the next small commit. */
  if (st->cat_wfd >= 0 &&
      (st->cat_fd < 0 || st->cat_wino != st->cat_st.st_ino ||
       st->cat_wdev != st->cat_st.st_dev)) {
    close(st->cat_wfd);
    st->cat_wfd = -1;
  }
}

/* 1 if no commit changed the catalog since the committed state in memory
** was read from it (the caller holds st->mu).  One stat: the held file's
** inode cannot be reused, so an equal inode, size and time mean no commit
** since. */
static int catalog_current(NpkStore *st) {
  struct stat now;
  NpkErr ignored;
  __atomic_fetch_add(&st->stats.catalog_stats, 1, __ATOMIC_RELAXED);
  return st->cat_fd >= 0 &&
         npk_io_lstat(st, NPK_CATALOG, &now, &ignored) == NPK_OK &&
         now.st_ino == st->cat_st.st_ino && now.st_dev == st->cat_st.st_dev &&
         now.st_size == st->cat_st.st_size &&
         now.st_mtim.tv_sec == st->cat_st.st_mtim.tv_sec &&
         now.st_mtim.tv_nsec == st->cat_st.st_mtim.tv_nsec;
}

/* ---- noticing what other programs changed ----------------------------
**
** Writers of ours raise the lock file's commit count (store_lock.c), which
** a reader sees in its mapping for free.  Programs that ignore the lock
** (NumPack itself, an older numpack) leave no such sign: only a stat of
** the catalog sees their commits, and only a stat of a data file sees it
** cut short.  Those stats are made again once the recheck interval
** (NPK_RECHECK_NS, npk_recheck_ns) has passed since the last ones, not by
** every statement: a change by such a program is seen by every statement
** that starts that long after it, at the latest.  (Writers of ours still
** look at every write transaction.) */
int64_t npk_monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* 1 when the committed state in memory needs no stat to be trusted: it was
** confirmed less than the recheck interval ago, the commit count SEQ
** (HAVE: it could be read) is the one seen then, and no commit mark is set
** (a writer that died after replacing the catalog, before clearing the
** mark and raising the count, leaves the mark).  The caller holds st->mu. */
static int known_current(NpkStore *st, uint64_t seq, int have, int64_t now) {
  return have && st->seen_ok && seq == st->seen_seq && st->cat_fd >= 0 &&
         now - st->checked_ns < npk_recheck_ns() && !npk_lock_marked(st);
}

/* The state in memory was just found current at count SEQ, time NOW: data
** files are checked again by their next reader (npk_array_check_sizes). */
static void confirm(NpkStore *st, uint64_t seq, int have, int64_t now) {
  st->seen_seq = seq;
  st->seen_ok = have;
  st->checked_ns = now;
  __atomic_store_n(&st->epoch, st->epoch + 1, __ATOMIC_RELEASE);
}

/* Reload the committed state if another process committed since we last
** looked.  The caller holds at least SHARED; a reader (not WRITER) may
** trust the commit count within the recheck interval. */
static int refresh(NpkStore *st, int writer, NpkErr *e) {
  NpkCatalog cat;
  NpkRetired *note;
  uint64_t seq;
  int have = npk_lock_seq(st, &seq), fd = -1, rc = NPK_OK;
  int64_t now = npk_monotonic_ns();
  pthread_mutex_lock(&st->mu);
  if (!writer && known_current(st, seq, have, now)) goto done;
  if (catalog_current(st)) {
    confirm(st, seq, have, now);
    goto done;
  }
  /* The note that keeps the old catalog for its readers first: letting go
  ** of it cannot fail. */
  if (!(note = npk_retire_note())) {
    rc = npk_err(e, NPK_NOMEM, "out of memory");
    goto done;
  }
  rc = load_catalog(st, &cat, &fd, e);
  if (rc) {
    npk_free(note);
    goto done;
  }
  npk_catalog_retire(st, &st->cat, note);
  st->cat = cat;
  st->cat_gen++;
  st->img_ok = 0;
  hold(st, fd);
  confirm(st, seq, have, now);
done:
  pthread_mutex_unlock(&st->mu);
  return rc;
}

int npk_store_refresh(NpkStore *st, NpkErr *e) { return refresh(st, 1, e); }

/* Adopt the catalog file just committed as the one we hold. */
void npk_store_hold_catalog(NpkStore *st) {
  NpkErr ignored;
  int fd;
  npk_io_open(st, NPK_CATALOG, O_RDONLY, &fd, &ignored);
  hold(st, fd);
}

/* ---- sessions and reading -------------------------------------------- */

/* Set up S as a session of ST.  Its lock descriptor is opened by its
** first read or write: opening a session changes nothing on disk. */
static void session_init(NpkStore *st, NpkSession *s) {
  memset(s, 0, sizeof *s);
  s->store = st;
  s->lockfd = -1;
}

int npk_session_open(NpkStore *st, NpkSession **pp) {
  NpkSession *s = npk_malloc(sizeof *s);
  *pp = NULL;
  if (!s) return NPK_NOMEM;
  session_init(st, s);
  pthread_mutex_lock(&registry_mu);
  st->refs++;
  pthread_mutex_unlock(&registry_mu);
  *pp = s;
  return NPK_OK;
}

/* S starts to read: counted among the sessions pinned, it takes the
** committed catalog it will see until it ends. */
static void pin(NpkSession *s) {
  NpkStore *st = s->store;
  pthread_mutex_lock(&st->mu);
  if (!s->pinned) __atomic_store_n(&st->pins, st->pins + 1, __ATOMIC_RELAXED);
  s->rcat = st->cat;
  s->rgen = st->cat_gen;
  pthread_mutex_unlock(&st->mu);
  s->pinned = 1;
}

void npk_unpin(NpkSession *s) {
  if (!s->pinned || s->nread > 0 || s->txn) return;
  pthread_mutex_lock(&s->store->mu);
  __atomic_store_n(&s->store->pins, s->store->pins - 1, __ATOMIC_RELAXED);
  if (s->store->pins == 0) npk_retired_free(s->store);
  pthread_mutex_unlock(&s->store->mu);
  s->pinned = 0;
}

int npk_scan_begin(NpkSession *s, const char *name) {
  if (s->nscan == s->scan_cap) {
    int cap = s->scan_cap ? 2 * s->scan_cap : 8;
    const char **p = npk_realloc(s->scans, (size_t)cap * sizeof *p);
    if (!p) return npk_err(&s->err, NPK_NOMEM, "out of memory");
    s->scans = p;
    s->scan_cap = cap;
  }
  s->scans[s->nscan++] = name;
  return NPK_OK;
}

void npk_scan_end(NpkSession *s, const char *name) {
  for (int i = s->nscan - 1; i >= 0; i--) {
    if (s->scans[i] != name) continue;
    s->scans[i] = s->scans[--s->nscan];
    return;
  }
}

int npk_scan_check(NpkSession *s, const char *name, const char *what) {
  for (int i = 0; i < s->nscan; i++) {
    if (name && strcmp(s->scans[i], name) != 0) continue;
    return npk_err(&s->err, NPK_LOCKED,
                   "cannot %s%s%s%s: a statement of this connection is still "
                   "reading array \"%s\" (finish or reset it first)",
                   what, name ? " array \"" : "", name ? name : "",
                   name ? "\"" : "", s->scans[i]);
  }
  return NPK_OK;
}

NpkStore *npk_session_store(NpkSession *s) { return s->store; }
const char *npk_errmsg(NpkSession *s) {
  return s->err.rc ? s->err.msg : "not an error";
}
void npk_set_busy_timeout(NpkSession *s, int ms) {
  s->busy_ms = ms < 0 ? 0 : ms;
}
void npk_set_busy_source(NpkSession *s, int (*fn)(void *), void *arg) {
  s->busy_fn = fn;
  s->busy_arg = arg;
}
void npk_set_sync_source(NpkSession *s, int (*fn)(void *), void *arg) {
  s->sync_fn = fn;
  s->sync_arg = arg;
}
void npk_set_interrupt_source(NpkSession *s, int (*fn)(void *), void *arg) {
  s->intr_fn = fn;
  s->intr_arg = arg;
}
int npk_check_interrupt(NpkSession *s) {
  if (s->intr_fn && s->intr_fn(s->intr_arg))
    return npk_err(&s->err, NPK_INTERRUPT, "interrupted in %s", s->store->dir);
  return NPK_OK;
}

int npk_interrupt_requested(void *session) {
  return npk_check_interrupt(session) != NPK_OK;
}

/* Take SHARED and bring the committed state up to date, changing nothing
** on disk: a reader never creates the lock file, plays back a journal or
** removes leftovers (that is for the next write, npk_begin).
**
** Without a lock file (a store NumPack wrote, which has none until one of
** our writers creates it) the session reads without locking.  A writer of
** ours creates the lock file before it touches anything, so a reader that
** still finds none after loading the committed state loaded one whole
** commit; should one appear meanwhile, it loads again under the lock.
** What that gives up: a writer that starts after that check may commit
** while the statement still reads rows, and nothing protects against
** writers that ignore the lock (NumPack itself never takes it).  In a
** directory this process may not write, no writer of ours can create the
** lock file either, so only the latter remains. */
int npk_shared_lock(NpkSession *s) {
  int rc, tries = 0;
  for (;;) {
    int lockless;
    if (s->lockfd < 0 && s->lock == NPK_LOCK_NONE &&
        (rc = npk_lock_open(s->store, &s->lockfd, &s->lock_rw, &s->err)))
      return rc;
    lockless = s->lockfd < 0;
    rc = npk_lock_to(s, NPK_LOCK_SHARED, &s->err);
    if (rc == NPK_OK) rc = npk_lock_settle(s);
    if (rc || !lockless || tries++ > 0 ||
        !npk_io_exists(s->store, NPK_LOCKFILE))
      return rc;
    npk_lock_release(s);
  }
}

/* Before a session's first write: a descriptor on the lock file that can
** take write locks, creating the file if need be.  A session that was
** reading without a lock file takes SHARED on the new one. */
int npk_lock_writable(NpkSession *s) {
  NpkStore *st = s->store;
  int level = s->lock, fd, rc;
  if (s->lockfd >= 0 && s->lock_rw) return NPK_OK;
  if (s->lockfd >= 0)
    return npk_err(&s->err, NPK_READONLY,
                   "cannot write store %s: this "
                   "process may not write its lock file",
                   st->dir);
  rc = npk_lock_create(st, &fd, &s->err);
  if (rc) return rc;
  s->lockfd = fd;
  s->lock_rw = 1;
  s->lock = NPK_LOCK_NONE;
  if (level >= NPK_LOCK_SHARED) {
    rc = npk_lock_to(s, NPK_LOCK_SHARED, &s->err);
    if (rc) s->lock = level;
  }
  return rc;
}

/* Just locked (SHARED or RESERVED): look for a hot journal, then bring the
** committed state up to date.  A writer (RESERVED) plays the journal back,
** which needs EXCLUSIVE for a moment.  A reader only reads: a journal left
** half written (npk_journal_check) means no file was touched and is
** ignored, a complete one fails the read with NPK_BUSY until a write
** recovers it, so that no reader ever sees a commit half applied.  On
** failure every lock is released. */
int npk_lock_settle(NpkSession *s) {
  NpkStore *st = s->store;
  int level = s->lock, rc, checked = 1;
  /* journal_checked only ever goes from 0 to 1; sessions of other threads
  ** read it without the store's mutex. */
  if ((npk_lock_marked(st) ||
       !__atomic_load_n(&st->journal_checked, __ATOMIC_ACQUIRE)) &&
      npk_journal_exists(st, 1)) {
    if (level < NPK_LOCK_RESERVED) {
      rc = npk_journal_check(st, &s->err);
      if (rc) goto fail;
      checked = 0; /* the torn journal is still there: look again */
    } else {
      rc = npk_lock_to(s, NPK_LOCK_EXCLUSIVE, &s->err);
      if (rc) goto fail;
      rc = npk_journal_recover(st, &s->err);
      if (rc == NPK_OK) {
        npk_lock_mark(s, 0);
        /* Force a reload: the files changed under the cached state. */
        pthread_mutex_lock(&st->mu);
        if (st->cat_fd >= 0) close(st->cat_fd);
        st->cat_fd = -1;
        pthread_mutex_unlock(&st->mu);
      }
      if (rc == NPK_OK) rc = npk_lock_to(s, level, &s->err);
      if (rc) goto fail;
    }
  }
  if (checked) __atomic_store_n(&st->journal_checked, 1, __ATOMIC_RELEASE);
  rc = refresh(st, level >= NPK_LOCK_RESERVED, &s->err);
  if (rc) goto fail;
  return NPK_OK;
fail:
  npk_lock_release(s);
  return rc;
}

int npk_read_begin(NpkSession *s) {
  int rc;
  s->err.rc = NPK_OK;
  if (s->nread > 0 || s->txn) {
    s->nread++;
    return NPK_OK;
  }
  rc = npk_shared_lock(s);
  if (rc) return rc;
  __atomic_fetch_add(&s->store->stats.read_locks, 1, __ATOMIC_RELAXED);
  s->nread = 1;
  pin(s);
  return NPK_OK;
}

void npk_read_end(NpkSession *s) {
  if (s->nread == 0) return;
  if (--s->nread > 0 || s->txn) return;
  npk_lock_release(s);
  npk_unpin(s);
}

/* ---- store objects --------------------------------------------------- */

static void store_free(NpkStore *st) {
  npk_catalog_clear(st, &st->cat);
  npk_buf_free(&st->img);
  npk_free(st->img_off);
  st->pins = 0;
  npk_retired_free(st);
  if (st->cat_fd >= 0) close(st->cat_fd);
  if (st->cat_wfd >= 0) close(st->cat_wfd);
  if (st->jfd >= 0) close(st->jfd);
  if (st->dirfd >= 0) close(st->dirfd);
  pthread_mutex_destroy(&st->mu);
  if (st->lock_page) {
    npk_guard_remove(st->lock_page);
    munmap(st->lock_page, 4096);
  }
  if (st->lock_wpage) {
    npk_guard_remove(st->lock_wpage);
    munmap(st->lock_wpage, 4096);
  }
  npk_free(st->dir);
  npk_free(st);
}

void npk_store_release(NpkStore *st) {
  NpkStore **pp;
  if (!st) return;
  pthread_mutex_lock(&registry_mu);
  if (--st->refs > 0) {
    pthread_mutex_unlock(&registry_mu);
    return;
  }
  for (pp = &registry; *pp; pp = &(*pp)->next) {
    if (*pp == st) {
      *pp = st->next;
      break;
    }
  }
  pthread_mutex_unlock(&registry_mu);
  store_free(st);
}

const char *npk_store_dir(NpkStore *st) { return st->dir; }

int npk_store_folds_case(NpkStore *st) { return st->folds_case; }

void npk_store_stats(NpkStore *st, NpkStats *out) {
  uint64_t *src = (uint64_t *)&st->stats, *dst = (uint64_t *)out;
  for (size_t i = 0; i < sizeof *out / sizeof(uint64_t); i++)
    dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

/* Write an empty catalog if there is none yet, under EXCLUSIVE. */
static int create_catalog(NpkSession *s) {
  NpkStore *st = s->store;
  NpkBuf b = {0};
  NpkCatalog empty = {0};
  int rc;
  rc = npk_lock_to(s, NPK_LOCK_EXCLUSIVE, &s->err);
  if (rc == NPK_OK && !npk_io_exists(st, NPK_CATALOG)) {
    rc = npk_catalog_encode(&empty, &b);
    if (rc == NPK_OK)
      rc = npk_io_replace_file(st, NPK_CATALOG, b.p, b.n, &s->err);
    if (rc == NPK_OK) rc = npk_io_fsync(st, st->dirfd, st->dir, &s->err);
  }
  npk_buf_free(&b);
  return rc;
}

/* Open a new store object on DIR (the caller has checked the registry).
** Without NPK_OPEN_CREATE this changes nothing on disk. */
static int store_new(const char *dir, const struct stat *sb, int flags,
                     NpkStore **pp, NpkErr *e) {
  NpkStore *st = npk_calloc(1, sizeof *st);
  NpkSession ses, *s;
  int rc;
  *pp = NULL;
  if (!st) return npk_err(e, NPK_NOMEM, "out of memory");
  st->dir = npk_strdup(dir);
  st->dev = sb->st_dev;
  st->ino = sb->st_ino;
  st->readonly = !!(flags & NPK_OPEN_READONLY);
  st->cat_fd = -1;
  st->cat_wfd = -1;
  st->jfd = -1;
  st->refs = 1;
  pthread_mutex_init(&st->mu, NULL);
  st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (!st->dir || st->dirfd < 0) {
    rc = st->dirfd >= 0 ? npk_err(e, NPK_NOMEM, "out of memory")
                        : npk_err_sys(e, errno, "cannot open directory", dir);
    store_free(st);
    return rc;
  }
  session_init(st, &ses);
  s = &ses;
  s->busy_ms = 5000;
  rc = NPK_OK;
  if (!npk_io_exists(st, NPK_CATALOG) && !npk_journal_exists(st, 0)) {
    /* Only a writing open makes a store of a directory. */
    if (!(flags & NPK_OPEN_CREATE) || st->readonly)
      rc = npk_err(&s->err, NPK_NOFILE, "%s is not a numpack store (no %s)",
                   dir, NPK_CATALOG);
    else if ((rc = npk_lock_writable(s)) == NPK_OK) rc = create_catalog(s);
    npk_lock_release(s);
  }
  /* Asked once per store object: a directory folds case from when it is
  ** made, or never. */
  if (rc == NPK_OK) {
    int folds = npk_io_folds_case(st, NPK_CATALOG);
    if (folds < 0) folds = npk_io_folds_case(st, NPK_JOURNAL);
    st->folds_case = folds > 0;
  }
  /* Read the committed state now, so that a damaged catalog is refused
  ** when the store is opened (an array's own files are checked when it is
  ** first used).  A hot journal is no error yet: reads will report it and
  ** the first write will play it back. */
  if (rc == NPK_OK) {
    rc = npk_shared_lock(s);
    if (rc == NPK_BUSY && npk_journal_exists(st, 0)) rc = NPK_OK;
  }
  npk_lock_release(s);
  if (rc) *e = s->err;
  if (s->lockfd >= 0) close(s->lockfd);
  if (rc) {
    st->refs = 0;
    store_free(st);
    return rc;
  }
  *pp = st;
  return NPK_OK;
}

int npk_store_attach(const char *dir, int flags, NpkStore **pp, char **errmsg) {
  NpkErr e = {0};
  struct stat sb;
  char real[PATH_MAX];
  NpkStore *st = NULL;
  int rc = NPK_OK;

  *pp = NULL;
  if (errmsg) *errmsg = NULL;
  if (!dir || !*dir) {
    rc = npk_err(&e, NPK_NOFILE, "empty store path");
    goto done;
  }
  if (stat(dir, &sb) != 0) {
    if (errno != ENOENT) {
      rc = npk_err_sys(&e, errno, "cannot open store", dir);
      goto done;
    }
    if (!(flags & NPK_OPEN_CREATE) || (flags & NPK_OPEN_READONLY)) {
      rc = npk_err(&e, NPK_NOFILE, "store %s does not exist", dir);
      goto done;
    }
    rc = npk_mkdirs(dir, &e);
    if (rc) goto done;
    if (stat(dir, &sb) != 0) {
      rc = npk_err_sys(&e, errno, "cannot open store", dir);
      goto done;
    }
  }
  if (!S_ISDIR(sb.st_mode)) {
    rc = npk_err(&e, NPK_NOFILE, "%s is not a directory", dir);
    goto done;
  }
  if (!realpath(dir, real)) {
    rc = npk_err_sys(&e, errno, "cannot resolve", dir);
    goto done;
  }
  pthread_mutex_lock(&registry_mu);
  for (st = registry; st; st = st->next) {
    if (st->dev == sb.st_dev && st->ino == sb.st_ino &&
        st->readonly == !!(flags & NPK_OPEN_READONLY)) {
      st->refs++;
      break;
    }
  }
  if (!st) {
    rc = store_new(real, &sb, flags, &st, &e);
    if (rc == NPK_OK) {
      st->next = registry;
      registry = st;
    }
  }
  pthread_mutex_unlock(&registry_mu);
  if (rc) goto done;
  *pp = st;
done:
  if (rc && errmsg) *errmsg = npk_strdup(e.msg);
  return rc;
}

/* ---- arrays as a session sees them ----------------------------------- */

/* The catalog the session sees: its transaction's; else, while it reads,
** the committed one its read took (another session of the store may load a
** newer one meanwhile, after a program that ignores the lock changed the
** store: st->cat is not the reader's to read without st->mu); else the
** committed one, for a caller holding st->mu. */
NpkCatalog *npk_session_catalog(NpkSession *s) {
  if (s->txn) return &s->txn->cat;
  return s->nread > 0 ? &s->rcat : &s->store->cat;
}

static int npk_check_access(NpkSession *s) {
  if (s->nread == 0 && !s->txn)
    return npk_err(&s->err, NPK_MISUSE,
                   "read outside npk_read_begin/npk_read_end");
  return NPK_OK;
}

/* NAME's entry in the session's view, its files perhaps not yet opened,
** or the report that it is missing. */
static int find_entry(NpkSession *s, const char *name, NpkArray **pa) {
  NpkCatalog *cat = npk_session_catalog(s);
  int i = name ? npk_catalog_find(cat, name) : -1;
  *pa = NULL;
  if (i < 0)
    return npk_err(&s->err, NPK_NOTFOUND, "no array \"%s\" in store %s",
                   name ? name : "(null)", s->store->dir);
  *pa = npk_cat_at(cat, i);
  return NPK_OK;
}

/* Find NAME in the session's view, its files ready, or report it missing. */
int npk_find(NpkSession *s, const char *name, NpkArray **pa) {
  int rc = find_entry(s, name, pa);
  return rc ? rc : npk_array_ready(s, *pa);
}

uint64_t npk_live_rows(const NpkArray *a) {
  return a->bm ? a->bm->nlive : a->shape[0];
}

static void fill_info(NpkSession *s, const NpkArray *a, NpkArrayInfo *out) {
  memset(out, 0, sizeof *out);
  out->name = a->name;
  out->dtype = a->dtype;
  out->ndim = a->ndim;
  memcpy(out->shape, a->shape, a->ndim * sizeof a->shape[0]);
  out->rows = a->shape[0];
  out->live_rows = npk_live_rows(a);
  out->row_bytes = a->row_bytes;
  out->modify_time = a->mtime;
  out->data_file = a->data_file;
  out->segmented = a->segmented;
  (void)s;
}

/* Check the files still hold every committed row: a file shortened behind
** our back must give an error, not SIGBUS on the next access. */
/* The length of F's file now, through its descriptor. */
static int file_length(NpkStore *st, NpkFile *f, uint64_t *plen, NpkErr *e) {
  struct stat sb;
  int rc, err;
  if ((rc = npk_file_use(st, f, e))) return rc;
  rc = fstat(f->fd, &sb);
  err = errno;
  npk_file_done(f);
  if (rc != 0) return npk_err_sys(e, err, "cannot stat", f->path);
  *plen = (uint64_t)sb.st_size;
  return NPK_OK;
}

int npk_array_check_sizes(NpkSession *s, const NpkArray *a) {
  for (int i = 0; i < a->nseg; i++) {
    uint64_t len;
    NpkFile *f = a->seg[i].file;
    uint64_t need = (a->seg[i].rows) * a->row_bytes;
    uint64_t epoch = __atomic_load_n(&s->store->epoch, __ATOMIC_ACQUIRE);
    int rc;
    /* Found long enough since the store was last confirmed current: only a
    ** program ignoring the lock can have cut it since, and that is looked
    ** for once per recheck interval (refresh). */
    if (!a->pending &&
        __atomic_load_n(&f->ok_epoch, __ATOMIC_RELAXED) == epoch) {
      if ((rc = npk_file_unpatch(s->store, f, &s->err))) return rc;
      continue;
    }
    /* Only this session's own pending rows can be buffered past the
    ** committed end; another session's buffer is not ours to write. */
    rc = a->pending ? npk_file_flush(s->store, f, &s->err) : NPK_OK;
    if (rc) return rc;
    if (!a->segmented && a->pending && !a->fresh)
      need = a->shape[0] * a->row_bytes;
    if ((rc = file_length(s->store, f, &len, &s->err))) return rc;
    if (len < need) return npk_file_short(f, len, a->name, need, &s->err);
    /* F is shared with the sessions of this process that append to it, and
    ** their rows may still sit in F's buffer: only the owner of the pending
    ** view, which has just flushed, may learn F's length from the file. */
    if (a->pending && len < f->size) npk_file_set_size(f, len);
    if ((rc = npk_file_unpatch(s->store, f, &s->err))) return rc;
    if (!a->pending) __atomic_store_n(&f->ok_epoch, epoch, __ATOMIC_RELAXED);
  }
  return NPK_OK;
}

int npk_array_count(NpkSession *s, int *pn) {
  int rc = npk_read_begin(s);
  if (rc) return rc;
  *pn = npk_session_catalog(s)->n;
  npk_read_end(s);
  return NPK_OK;
}

int npk_array_info_at(NpkSession *s, int i, NpkArrayInfo *out) {
  NpkCatalog *cat;
  int rc = npk_read_begin(s);
  if (rc) return rc;
  cat = npk_session_catalog(s);
  if (i < 0 || i >= cat->n)
    rc = npk_err(&s->err, NPK_RANGE, "no array number %d in store %s", i,
                 s->store->dir);
  else if ((rc = npk_array_ready(s, npk_cat_at(cat, i))) == NPK_OK)
    fill_info(s, npk_cat_at(cat, i), out);
  npk_read_end(s);
  return rc;
}

/* Take st->mu and return 1 with it held when the committed state in
** memory may be read without the lock (see info_unlocked); else 0, the
** mutex not held. */
static int lock_if_current(NpkSession *s) {
  NpkStore *st = s->store;
  uint64_t seq;
  int have;
  int64_t now;
  if (s->nread > 0 || s->txn ||
      !__atomic_load_n(&st->journal_checked, __ATOMIC_ACQUIRE) ||
      npk_lock_marked(st))
    return 0; /* a commit died or is under way: settle under lock */
  /* The count before the stat: a commit of ours after it shows as a change
  ** next time. */
  have = npk_lock_seq(st, &seq);
  now = npk_monotonic_ns();
  pthread_mutex_lock(&st->mu);
  if (known_current(st, seq, have, now)) return 1;
  if (catalog_current(st)) {
    confirm(st, seq, have, now);
    return 1;
  }
  pthread_mutex_unlock(&st->mu);
  return 0;
}

int npk_each_array_unlocked(NpkSession *s,
                            int (*fn)(void *, int, int, const NpkArrayInfo *),
                            void *arg, int *pdone) {
  NpkStore *st = s->store;
  NpkCatalog *cat;
  NpkArrayInfo info;
  int rc = NPK_OK;
  *pdone = 0;
  if (!lock_if_current(s)) return NPK_OK;
  cat = &st->cat;
  /* Arrays whose files are not open yet (their bitmaps unread) are made
  ** ready under the lock, by the caller's way round. */
  for (int i = 0; i < cat->n; i++)
    if (!__atomic_load_n(&npk_cat_at(cat, i)->loaded, __ATOMIC_ACQUIRE))
      goto done;
  *pdone = 1;
  s->err.rc = NPK_OK;
  for (int i = 0; rc == NPK_OK && i < cat->n; i++) {
    fill_info(s, npk_cat_at(cat, i), &info);
    rc = fn(arg, cat->n, i, &info);
  }
done:
  pthread_mutex_unlock(&st->mu);
  return rc;
}

/* The description of NAME without taking the lock, when the committed
** state in memory is known to be the latest: the lock file's commit count
** is the one it was confirmed at, within the recheck interval, or else the
** catalog file is still the one it was read from, so no commit came since
** (one that is under way has not replaced the catalog nor raised the count
** yet, and the state in memory is still the committed one).  A commit mark
** in the lock file (a commit under way, or one that died and left a
** journal to look at) sends the caller to the lock, as npk_lock_settle
** does.  The mutex keeps another thread from replacing the state
** meanwhile.  *PDONE is 0 when the caller must read under the lock. */
static int info_unlocked(NpkSession *s, const char *name, NpkArrayInfo *out,
                         int *pdone) {
  NpkArray *a;
  int rc = NPK_OK;
  *pdone = 0;
  if (lock_if_current(s)) {
    s->err.rc = NPK_OK;
    rc = find_entry(s, name, &a);
    /* An array whose files are not open yet is made ready under the
    ** lock, by the caller's way round (npk_array_ready takes st->mu). */
    *pdone = rc != NPK_OK || __atomic_load_n(&a->loaded, __ATOMIC_ACQUIRE);
    if (rc == NPK_OK && *pdone) fill_info(s, a, out);
    pthread_mutex_unlock(&s->store->mu);
  }
  return *pdone ? rc : NPK_OK;
}

/* Copy row ROW of A into BUF when its bytes can be had without the lock
** (npk_read_row_unlocked); the caller holds st->mu.  0 when they cannot. */
static int copy_row_unlocked(NpkStore *st, const NpkArray *a, uint64_t row,
                             void *buf) {
  NpkFile *f;
  const unsigned char *base;
  uint64_t end, epoch = __atomic_load_n(&st->epoch, __ATOMIC_ACQUIRE);
  /* One committed file, mapped (the caller found the array's files open).
  ** A writer's appends waiting in the file's buffer all lie past the
  ** committed rows, and are its own to look at. */
  if (a->pending || a->ov || a->nseg != 1 || a->seg[0].first_row != 0) return 0;
  f = a->seg[0].file;
  end = (row + 1) * a->row_bytes;
  base = __atomic_load_n(&f->base, __ATOMIC_ACQUIRE);
  if (!base || npk_guard_hit(f->gslot) ||
      end > __atomic_load_n(&f->maplen, __ATOMIC_ACQUIRE))
    return 0;
  if (__atomic_load_n(&f->ok_epoch, __ATOMIC_RELAXED) != epoch) {
    /* The store was confirmed current again since the file's size was
    ** last looked at: a program ignoring the lock may have cut it, and a
    ** cut within the row's page shows no fault, only zeros.  Looked at
    ** here as npk_array_check_sizes looks under the lock. */
    uint64_t len;
    NpkErr ignored;
    if (file_length(st, f, &len, &ignored) != NPK_OK ||
        len < a->shape[0] * a->row_bytes)
      return 0;
    __atomic_store_n(&f->ok_epoch, epoch, __ATOMIC_RELAXED);
  }
  {
    size_t half = (size_t)a->row_bytes / 2;
    const unsigned char *from = base + row * a->row_bytes;
    memcpy(buf, from, half);
    npk_test_copy_point();
    memcpy((unsigned char *)buf + half, from + half,
           (size_t)a->row_bytes - half);
  }
  return 1;
}

/* After a copy made under lock_if_current (st->mu, held by the caller, is
** let go here): 1 when no commit can have changed what was copied, the
** lock file's mark still clear and its count still SEQ, and no mapped page
** faulted since FAULTS. */
static int copied_whole(NpkSession *s, uint64_t seq, uint64_t faults) {
  NpkStore *st = s->store;
  uint64_t now_seq;
  int marked;
  s->err.rc = NPK_OK;
  pthread_mutex_unlock(&st->mu);
  /* The copy before the second look at the mark and count. */
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  marked = npk_lock_marked(st);
  /* The mark before the count: a commit that ended after the copy shows
  ** only as a raised count next to a mark found clear, and on a weakly
  ** ordered CPU (not x86) the count could otherwise be read first, still
  ** unraised, and the clear mark after it. */
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  return !marked && npk_lock_seq(st, &now_seq) && now_seq == seq &&
         npk_map_faults(s) == faults;
}

/* The lock's part in a point lookup is a handful of system calls, more than
** the rest of it: when the state in memory may be read without the lock
** (lock_if_current), the row is copied, and then the lock file's commit
** mark and count are read again.  A commit of ours sets the mark before it
** changes a file and raises the count before it clears the mark
** (npk_lock_mark), so a row copied while one changed it shows as a mark set
** or a count moved; the copy is then thrown away and the caller reads
** under the lock.  Programs that ignore the lock are no more seen than
** under it. */
int npk_read_row_unlocked(NpkSession *s, const char *name, uint64_t row,
                          void *buf, size_t cap, NpkArrayInfo *info,
                          int *pfound, uint64_t *pseq) {
  NpkStore *st = s->store;
  NpkArray *a;
  uint64_t seq, faults = npk_map_faults(s);
  int ok = 0;
  *pfound = 0;
  if (!lock_if_current(s)) return NPK_BUSY;
  seq = st->seen_seq;
  if (st->seen_ok && find_entry(s, name, &a) == NPK_OK && a->row_bytes <= cap &&
      __atomic_load_n(&a->loaded, __ATOMIC_ACQUIRE)) {
    fill_info(s, a, info);
    if (row >= a->shape[0] || (a->bm && !npk_bm_get(a->bm, row))) ok = 1;
    else ok = *pfound = copy_row_unlocked(st, a, row, buf);
  }
  if (!copied_whole(s, seq, faults) || !ok) {
    *pfound = 0;
    return NPK_BUSY;
  }
  *pseq = seq;
  return NPK_OK;
}

int npk_read_rows_unlocked(NpkSession *s, const char *name,
                           const NpkArrayInfo *want, const uint64_t *rows,
                           uint64_t n, void *dst) {
  NpkStore *st = s->store;
  NpkArray *a;
  uint64_t seq, faults = npk_map_faults(s);
  unsigned char *out = dst;
  int ok = 0;
  if (!lock_if_current(s)) return NPK_BUSY;
  seq = st->seen_seq;
  /* The array the caller described, its live rows as many as then.  A
  ** committed bitmap is only read, its rank index built under a mutex of
  ** its own (store_bitmap.c). */
  if (st->seen_ok && find_entry(s, name, &a) == NPK_OK &&
      __atomic_load_n(&a->loaded, __ATOMIC_ACQUIRE) &&
      a->dtype == want->dtype && a->ndim == want->ndim &&
      memcmp(a->shape, want->shape, a->ndim * sizeof a->shape[0]) == 0 &&
      npk_live_rows(a) == want->live_rows) {
    ok = 1;
    for (uint64_t i = 0; i < n && ok; i++) {
      uint64_t row = rows[i];
      ok = row < want->live_rows &&
           (!a->bm || npk_bm_select(a->bm, row, &row) == NPK_OK) &&
           copy_row_unlocked(st, a, row, out + i * a->row_bytes);
    }
  }
  return copied_whole(s, seq, faults) && ok ? NPK_OK : NPK_BUSY;
}

int npk_check_read_seq(NpkSession *s, uint64_t seq) {
  NpkStore *st = s->store;
  int same;
  pthread_mutex_lock(&st->mu);
  same = st->seen_ok && st->seen_seq == seq;
  pthread_mutex_unlock(&st->mu);
  if (same) return NPK_OK;
  return npk_err(&s->err, NPK_STALE,
                 "store %s changed while this statement read it (another "
                 "connection committed between two of its reads): run the "
                 "statement again",
                 st->dir);
}

int npk_own_commits(NpkSession *s, uint64_t *pfrom, uint64_t *pto) {
  int own = s->own;
  *pfrom = s->own_from;
  *pto = s->own_to;
  s->own = 0;
  return own;
}

int npk_array_info(NpkSession *s, const char *name, NpkArrayInfo *out) {
  NpkArray *a;
  int done, rc = info_unlocked(s, name, out, &done);
  if (done) return rc;
  rc = npk_read_begin(s);
  if (rc) return rc;
  rc = npk_find(s, name, &a);
  if (rc == NPK_OK) fill_info(s, a, out);
  npk_read_end(s);
  return rc;
}

/* NAME in the session's view, for a read that the session may do now. */
static int lookup(NpkSession *s, const char *name, NpkArray **pa) {
  int rc = npk_check_access(s);
  return rc ? rc : npk_find(s, name, pa);
}

/* Pointer to physical ROW of A, from the overlay or the mapping. */
int npk_array_row(NpkSession *s, NpkArray *a, uint64_t row, const void **pp) {
  static const unsigned char none[1];
  int lo = 0, hi = a->nseg - 1;
  NpkSeg *sg;
  uint64_t off, end;
  unsigned char *base;
  if (row >= a->shape[0])
    return npk_err(&s->err, NPK_RANGE,
                   "row %llu of \"%s\" is out of range "
                   "(%llu rows)",
                   (unsigned long long)row, a->name,
                   (unsigned long long)a->shape[0]);
  if (a->ov) {
    const void *p = npk_ov_get(a->ov, row);
    if (p) {
      if (a->ov->nregion &&
          npk_ov_check(s->store, a->ov, a->name, &s->err) != NPK_OK)
        return s->err.rc;
      *pp = p;
      return NPK_OK;
    }
  }
  if (a->row_bytes == 0) {
    *pp = none;
    return NPK_OK;
  }
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (a->seg[mid].first_row <= row) lo = mid;
    else hi = mid - 1;
  }
  sg = &a->seg[lo];
  off = (row - sg->first_row) * a->row_bytes;
  end = off + a->row_bytes;
  if (npk_guard_hit(__atomic_load_n(&sg->file->gslot, __ATOMIC_RELAXED))) {
    int rc = npk_file_unpatch(s->store, sg->file, &s->err);
    if (rc) return rc;
  }
  /* Rows this session appended may wait in the file's write buffer, which
  ** is the session's alone: the committed rows other sessions read all lie
  ** before it. */
  if (a->pending && sg->file->wlen && end > sg->file->wstart) {
    int rc = npk_file_flush(s->store, sg->file, &s->err);
    if (rc) return rc;
  }
  if (end > __atomic_load_n(&sg->file->maplen, __ATOMIC_ACQUIRE)) {
    int rc = npk_file_map(s->store, sg->file, end, &s->err);
    if (rc) return rc;
  }
  base = __atomic_load_n(&sg->file->base, __ATOMIC_ACQUIRE);
  *pp = base + off;
  return NPK_OK;
}

int npk_map_check(NpkSession *s, uint64_t mark, const char *name) {
  NpkArray *a;
  if (npk_map_faults(s) == mark) return NPK_OK;
  if (find_entry(s, name, &a) != NPK_OK) a = NULL;
  /* The page lost may be one of the rows this transaction replaced, kept in
  ** its spill file, rather than one of a data file's. */
  if (a && s->txn && a->ov &&
      npk_ov_check(s->store, a->ov, a->name, &s->err) != NPK_OK)
    return s->err.rc;
  /* A file of the array now shorter than its committed rows was cut by
  ** another program; otherwise the page could not be read (a disk or
  ** network error, or a file cut and grown back), which is no damage. */
  for (int i = 0; a && i < a->nseg; i++) {
    NpkFile *f = a->seg[i].file;
    uint64_t len, need = a->seg[i].rows * a->row_bytes;
    NpkErr ignored;
    if (a->pending) need = a->fresh ? 0 : a->base_rows * a->row_bytes;
    if (file_length(s->store, f, &len, &ignored) == NPK_OK && len < need)
      return npk_err(&s->err, NPK_CORRUPT,
                     "%s was shortened by another program while array "
                     "\"%s\" was being read (%llu of its %llu bytes left); "
                     "the statement is abandoned rather than return rows "
                     "that are gone",
                     f->path, name, (unsigned long long)len,
                     (unsigned long long)need);
  }
  return npk_err(&s->err, NPK_IOERR,
                 "a page of the data files of store %s could not be read "
                 "while array \"%s\" was being read (an I/O error, or a "
                 "file cut short and grown back); the statement is abandoned "
                 "rather than return rows it could not read",
                 s->store->dir, name);
}

int npk_row_ptr(NpkSession *s, const char *name, uint64_t row,
                const void **pp) {
  NpkArray *a;
  int rc = lookup(s, name, &a);
  if (rc == NPK_OK) rc = npk_array_row(s, a, row, pp);
  return rc;
}

int npk_row_source_at(void *source, uint64_t row, const void **pp) {
  NpkRowSource *r = source;
  return npk_row_ptr(r->ses, r->array, row, pp);
}

int npk_row_live(NpkSession *s, const char *name, uint64_t row) {
  NpkArray *a;
  if (npk_check_access(s) || npk_find(s, name, &a)) return 0;
  if (row >= a->shape[0]) return 0;
  return a->bm ? npk_bm_get(a->bm, row) : 1;
}

int npk_logical_to_physical(NpkSession *s, const char *name, uint64_t k,
                            uint64_t *prow) {
  *prow = k;
  return npk_logical_to_physical_n(s, name, prow, 1);
}

int npk_logical_to_physical_n(NpkSession *s, const char *name, uint64_t *rows,
                              uint64_t n) {
  NpkArray *a;
  uint64_t live;
  int rc = lookup(s, name, &a);
  if (rc) return rc;
  live = npk_live_rows(a);
  for (uint64_t i = 0; i < n; i++) {
    if (rows[i] >= live)
      return npk_err(&s->err, NPK_RANGE,
                     "index %llu of \"%s\" is out of range (%llu rows)",
                     (unsigned long long)rows[i], a->name,
                     (unsigned long long)live);
    if (a->bm && (rc = npk_bm_select(a->bm, rows[i], &rows[i])) != NPK_OK)
      return rc == NPK_NOMEM ? npk_err(&s->err, rc, "out of memory") : rc;
  }
  return NPK_OK;
}

int npk_copy_rows(NpkSession *s, const char *name, const uint64_t *rows,
                  uint64_t n, void *dst) {
  unsigned char *out = dst;
  NpkArray *a;
  int rc = lookup(s, name, &a);
  for (uint64_t i = 0; i < n && rc == NPK_OK; i++) {
    const void *src;
    rc = npk_array_row(s, a, rows[i], &src);
    if (rc == NPK_OK) memcpy(out + i * a->row_bytes, src, (size_t)a->row_bytes);
  }
  return rc;
}

int npk_next_live(NpkSession *s, const char *name, uint64_t row,
                  uint64_t *pnext) {
  NpkArray *a;
  int rc = lookup(s, name, &a);
  if (rc) return rc;
  if (row >= a->shape[0]) *pnext = a->shape[0];
  else if (!a->bm) *pnext = row;
  else {
    *pnext = npk_bm_next(a->bm, row);
    if (*pnext > a->shape[0]) *pnext = a->shape[0];
  }
  return NPK_OK;
}

int npk_view(NpkSession *s, const char *name, NpkView *out) {
  NpkArray *a;
  int rc = lookup(s, name, &a);
  if (rc == NPK_OK) rc = npk_array_check_sizes(s, a);
  if (rc) return rc;
  memset(out, 0, sizeof *out);
  out->rows = a->shape[0];
  /* Rows past a short bitmap are deleted: a scan need not visit them. */
  if (a->bm && a->bm->nbits < out->rows) out->rows = a->bm->nbits;
  out->live_rows = npk_live_rows(a);
  out->row_bytes = a->row_bytes;
  out->dtype = a->dtype;
  out->live = a->bm ? a->bm->w : NULL;
  if (a->nseg == 1 && !(a->ov && a->ov->n) && a->row_bytes && a->shape[0]) {
    NpkFile *f = a->seg[0].file;
    rc = npk_file_map(s->store, f, a->shape[0] * a->row_bytes, &s->err);
    if (rc) return rc;
    out->base = __atomic_load_n(&f->base, __ATOMIC_ACQUIRE);
  }
  return NPK_OK;
}

int npk_data_files(NpkSession *s, const char *name, NpkDataLayout *out,
                   int (*fn)(void *, const NpkDataLayout *, int,
                             const NpkDataFile *),
                   void *arg) {
  NpkArray *a;
  int rc = lookup(s, name, &a);
  if (rc) return rc;
  if (a->pending)
    return npk_err(&s->err, NPK_ERROR,
                   "array \"%s\" has changes not yet committed in this "
                   "transaction: its files do not hold them until COMMIT",
                   a->name);
  if ((rc = npk_array_check_sizes(s, a))) return rc;
  memset(out, 0, sizeof *out);
  out->nfiles = a->nseg;
  if (a->bm) {
    out->live = a->bm->w;
    out->covered = a->bm->nbits < a->shape[0] ? a->bm->nbits : a->shape[0];
  }
  for (int i = 0; rc == NPK_OK && i < a->nseg; i++) {
    /* NumPack's data files hold rows from their first byte on: the
    ** offset is there for whoever maps them, who should not assume it. */
    NpkDataFile f = {a->seg[i].file->path, 0, a->seg[i].first_row,
                     a->seg[i].rows};
    rc = fn(arg, out, i, &f);
  }
  return rc;
}

uint64_t npk_change_count(NpkSession *s) { return s->changes; }

int npk_savepoint_count(NpkSession *s) { return s->txn ? s->txn->nsp : 0; }

int npk_physical_to_logical(NpkSession *s, const char *name, uint64_t row,
                            uint64_t *pk) {
  NpkArray *a;
  int rc = lookup(s, name, &a);
  if (rc) return rc;
  if (row > a->shape[0]) row = a->shape[0];
  if (!a->bm) {
    *pk = row;
    return NPK_OK;
  }
  if (npk_bm_rank(a->bm, row, pk))
    return npk_err(&s->err, NPK_NOMEM, "out of memory");
  return NPK_OK;
}

/* Copy physical rows [ROW, ROW+N) of A into DST, with pread rather than
** through the mapping: on first touch a mapping costs a page fault for
** every 4 KB, more than the copy. */
int npk_array_copy_range(NpkSession *s, NpkArray *a, uint64_t row, uint64_t n,
                         unsigned char *dst) {
  uint64_t rb = a->row_bytes;
  if (a->ov && a->ov->n) {
    /* Rows replaced in this transaction live in memory. */
    uint64_t mark = npk_map_faults(s);
    for (uint64_t k = 0; k < n; k++) {
      const void *p;
      int rc = npk_array_row(s, a, row + k, &p);
      if (rc) return rc;
      memcpy(dst + k * rb, p, (size_t)rb);
    }
    return npk_map_check(s, mark, a->name);
  }
  for (int i = 0; i < a->nseg && n > 0; i++) {
    NpkSeg *sg = &a->seg[i];
    uint64_t first, take, off, want;
    ssize_t got;
    int err;
    if (row >= sg->first_row + sg->rows || row + n <= sg->first_row) continue;
    first = row - sg->first_row;
    take = sg->rows - first < n ? sg->rows - first : n;
    off = first * rb;
    want = take * rb;
    if (npk_file_flush(s->store, sg->file, &s->err) ||
        npk_file_use(s->store, sg->file, &s->err))
      return s->err.rc;
    got = npk_io_read_at(s->store, sg->file->fd, dst, (size_t)want, off);
    err = errno;
    npk_file_done(sg->file);
    if (got < 0)
      return npk_err_sys(&s->err, err, "cannot read", sg->file->path);
    if ((uint64_t)got < want)
      return npk_err(&s->err, NPK_CORRUPT, "%s is shorter than its rows",
                     sg->file->path);
    dst += want;
    row += take;
    n -= take;
  }
  return NPK_OK;
}

int npk_copy_live_rows(NpkSession *s, const char *name, uint64_t *pos,
                       uint64_t count, void *dst) {
  NpkArray *a;
  int rc = lookup(s, name, &a);
  if (rc) return rc;
  return npk_array_copy_live(s, a, pos, count, dst);
}

/* Read whole stretches of physical rows straight into DST, then close the
** gaps the deleted rows leave, moving the live rows down: a few large
** preads instead of one per run of live rows. */
int npk_array_copy_live(NpkSession *s, NpkArray *a, uint64_t *pos,
                        uint64_t count, void *dst) {
  unsigned char *out = dst;
  uint64_t r = *pos, done = 0, rb = a->row_bytes;
  int rc;
  while (done < count) {
    uint64_t want = count - done, end, k = done, q;
    if (a->bm) r = npk_bm_next(a->bm, r);
    if (r >= a->shape[0])
      return npk_err(&s->err, NPK_RANGE,
                     "array \"%s\" has fewer live rows "
                     "than asked for",
                     a->name);
    end = r + want < a->shape[0] ? r + want : a->shape[0];
    rc = npk_array_copy_range(s, a, r, end - r, out + done * rb);
    if (rc) return rc;
    if (!a->bm) {
      done += end - r;
      r = end;
      continue;
    }
    /* Rows [r, end) sit at out + (done + (row - r)) * rb; keep the live. */
    for (q = r; q < end;) {
      uint64_t e;
      q = npk_bm_next(a->bm, q);
      if (q >= end) break;
      for (e = q + 1; e < end && npk_bm_get(a->bm, e); e++) {}
      if (k != done + (q - r))
        memmove(out + k * rb, out + (done + (q - r)) * rb,
                (size_t)((e - q) * rb));
      k += e - q;
      q = e;
    }
    done = k;
    r = end;
  }
  *pos = r;
  return NPK_OK;
}
