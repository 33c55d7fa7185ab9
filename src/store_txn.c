/*
** store_txn.c — write transactions: begin, savepoints, rollback, and the
** commit that makes a transaction's changes durable all at once.
**
** While a transaction is open its changes are invisible to other sessions:
**   appended rows   are written past the committed end of the data file
**                   (readers stop at the catalog's row count);
**   replaced rows   of the committed region wait in an in-memory overlay;
**   deletions       change a private copy of the bitmap;
**   save/compact/clone build a new temporary file.
** Each change also pushes an undo record while a savepoint is open.
**
** Commit, under EXCLUSIVE (steps numbered for npk_test_crash_at):
**   1 hard-link every file about to be replaced or removed (data files,
**     bitmaps and the catalog unless they are patched in place) to
**     "<f>-npkbak": undoing the commit is then a rename, which needs no
**     disk space (store_journal.c)
**   2 write the journal (how to undo every file change) into the
**     journal's file, kept idle under its name from one commit to the
**     next, and sync it (9); when backups were linked, or the file is new
**     to this store, the dir is synced first -- making the backups and the
**     journal's name durable before any journal byte is (store_journal.c
**     says why).  Until the journal is complete the backups are mere
**     leftovers for the next write to remove
**   3 write overlay rows in place (through a writable mapping), set exact
**     lengths, sync the data files
**   4 rename new data files into place, remove dropped ones
**   5 bitmaps: those this store object read or wrote last (their bytes
**     to patch read back as held), patched in place when at most 64 KB of
**     them change (the bytes that change and their old length journaled
**     in step 2, synced), else replaced (temp file, sync, rename), and not
**     written when they did not change after all; the catalog: when rows
**     of arrays changed or arrays were added after the others (none
**     dropped or moved) it is patched in place -- the bytes that change,
**     journaled in step 2, the new arrays' entries appended, its old
**     length journaled, a later modification time, synced -- else
**     replaced (temp file, sync, rename); sync the dir if a name changed
**   6 zero the journal's magic and sync it (10): the commit point; a
**     journal over 1 MB is then cut back to its header
**   7 remove the backups
** A crash before step 6 leaves a hot journal that the next write
** transaction plays back; readers meanwhile fail with NPK_BUSY.  A commit
** that changes rows of one array at synchronous=FULL syncs four times:
** the journal, the data file, the catalog, the journal made idle; no
** directory.  One that saves a new array syncs five: the directory too,
** for the new data file's name.  One that deletes rows of an array with
** deleted rows syncs four: its bitmap in place of the data file.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store_int.h"

/* ---- undo records ---------------------------------------------------- */

/* Free an undo record's data: a bitmap for NPK_U_BMSWAP, else a block. */
static void data_free(int op, void *data) {
  if (op == NPK_U_BMSWAP) npk_bm_free(data);
  else npk_free(data);
}

int npk_undo_room(NpkSession *s) {
  NpkTxn *t = s->txn;
  if (t->nsp > 0 && t->nundo == t->undocap) {
    size_t cap = t->undocap ? t->undocap * 2 : 64;
    NpkUndo *p = npk_realloc(t->undo, cap * sizeof *p);
    if (!p) return npk_err(&s->err, NPK_NOMEM, "out of memory");
    t->undo = p;
    t->undocap = cap;
  }
  return NPK_OK;
}

int npk_undo_push(NpkSession *s, int op, NpkArray *arr, uint64_t a, uint64_t b,
                  void *data) {
  NpkTxn *t = s->txn;
  NpkUndo *u;
  if (t->nsp == 0) {
    data_free(op, data); /* nothing can roll back to inside the transaction */
    return NPK_OK;
  }
  if (npk_undo_room(s)) {
    data_free(op, data);
    return NPK_NOMEM;
  }
  u = &t->undo[t->nundo++];
  memset(u, 0, sizeof *u);
  u->op = op;
  u->arr = arr;
  if (arr) npk_array_ref(arr);
  u->a = a;
  u->b = b;
  u->data = data;
  return NPK_OK;
}

/* Record the whole catalog before a change of its shape.  It is held apart
** from the record, so that the records of rows, which are many, stay
** small. */
int npk_undo_catalog(NpkSession *s) {
  NpkTxn *t = s->txn;
  NpkCatalog *cat;
  int rc;
  if (t->nsp == 0) return NPK_OK;
  /* Room first: the push cannot fail then (freeing the copy's references
  ** would need the store). */
  if ((rc = npk_undo_room(s))) return rc;
  if (!(cat = npk_malloc(sizeof *cat)) || npk_catalog_copy(&t->cat, cat)) {
    npk_free(cat);
    return npk_err(&s->err, NPK_NOMEM, "out of memory");
  }
  return npk_undo_push(s, NPK_U_CAT, NULL, 0, 0, cat);
}

static void undo_free(NpkStore *st, NpkUndo *u) {
  npk_array_unref(st, u->arr);
  if (u->op == NPK_U_CAT && u->data) npk_catalog_clear(st, u->data);
  data_free(u->op, u->data);
}

/* Take back one change. */
static int undo_apply(NpkSession *s, NpkUndo *u) {
  NpkTxn *t = s->txn;
  NpkArray *a = u->arr;
  switch (u->op) {
    case NPK_U_CAT: {
      NpkCatalog tmp = t->cat, *before = u->data;
      t->cat = *before;
      *before = tmp;
      break;
    }
    case NPK_U_SLOT:
      /* The record's reference goes to the catalog and the catalog's to
      ** the record, which drops it when freed.  The chunk has been the
      ** catalog's own since the change (put_array): a copy of the catalog
      ** made later belongs to a later record, undone and freed before
      ** this one, so owning it copies nothing. */
      if (npk_catalog_own(s->store, &t->cat, (int)u->a))
        return npk_err(&s->err, NPK_NOMEM, "out of memory");
      u->arr = npk_catalog_put(&t->cat, (int)u->a, a);
      break;
    case NPK_U_ROWS:
      npk_file_discard(a->seg[a->nseg - 1].file, u->a * a->row_bytes);
      a->shape[0] = u->a;
      a->seg[a->nseg - 1].rows = u->a - a->seg[a->nseg - 1].first_row;
      if (a->bm) npk_bm_truncate(a->bm, u->b);
      break;
    case NPK_U_BITS: {
      const uint64_t *rows = u->data;
      for (uint64_t i = 0; i < u->a; i++) npk_bm_set(a->bm, rows[i], 1);
      a->bm_dirty = (int)u->b;
      break;
    }
    case NPK_U_BMNEW:
      npk_bm_free(a->bm);
      a->bm = NULL;
      a->bm_dirty = (int)u->b;
      break;
    case NPK_U_BMSWAP: {
      NpkBitmap *cur = a->bm;
      a->bm = u->data;
      u->data = cur;
      a->bm_dirty = (int)u->b;
      break;
    }
    case NPK_U_OVLNEW: npk_ov_drop_from(a->ov, u->a); break;
    case NPK_U_OVL: {
      /* The row is in the overlay still (undone in reverse order): putting
      ** its bytes back takes no slot and no copy, and cannot fail. */
      NpkErr ignored = {0};
      npk_ov_put(s->store, a->ov, u->a, u->data, NULL, &ignored);
      break;
    }
    case NPK_U_TAIL: {
      NpkFile *f = a->seg[0].file;
      int rc = npk_file_flush(s->store, f, &s->err);
      if (rc || (rc = npk_file_use(s->store, f, &s->err))) return rc;
      rc = npk_io_pwrite(s->store, f->fd, u->data, (size_t)a->row_bytes,
                         u->a * a->row_bytes, f->path, &s->err);
      npk_file_done(f);
      return rc;
    }
  }
  return NPK_OK;
}

/* ---- begin, savepoints, rollback ------------------------------------- */

/* A run of bytes a commit rewrites in place (of the catalog or a
** bitmap). */
typedef struct CatRun CatRun;
struct CatRun {
  size_t lo, len; /* bytes [lo, lo + len) */
};

typedef struct Change Change;
/* What a commit does to one array name. */
struct Change {
  NpkArray *c;       /* committed version, or NULL (new array) */
  NpkArray *p;       /* pending version, or NULL (dropped) */
  int pos;           /* P's position in the pending catalog */
  int drop_c_files;  /* remove C's data files that P does not use */
  int bm_write;      /* replace or remove the bitmap */
  int bm_had;        /* a file was at bm_rel when the commit planned */
  int data_had;      /* for a new P's data file: a file was at its name
                    ** when the journal was built (it is backed up) */
  char *bm_rel;      /* "deleted_<name>.npkb" */
  struct stat bm_sb; /* the file there when the commit planned */
  NpkBuf bm_img;     /* the bitmap to write, encoded; patched in place:
                    ** the new bytes of BM_RUNS, one after the other */
  int bm_inplace;    /* the bitmap is patched in place (bitmap_plan) */
  int bm_fd;         /* the bitmap, open for writing from bitmap_plan to
                     ** patch_bitmap, or -1 */
  CatRun *bm_runs;   /* the runs of bytes that change, in order */
  int bm_nrun;       /* entries in bm_runs */
  uint64_t bm_oldn;  /* the file's length before */
  NpkBuf bm_old;     /* the old bytes of the runs within bm_oldn */
  NpkFileId bm_new;  /* the file written, for the committed array */
};

/* Bytes reserved for a commit besides twice its journal (npk_commit). */
#define NPK_COMMIT_RESERVE (64u << 10)

int npk_in_txn(NpkSession *s) { return s->txn != NULL; }

uint64_t npk_read_state(NpkSession *s) {
  /* A transaction reads the state it copied, a read the catalog it took
  ** (another session may have loaded a newer one since).  Else the
  ** committed one. */
  if (s->txn) return s->txn->cat_gen;
  if (s->nread > 0) return s->rgen;
  return __atomic_load_n(&s->store->cat_gen, __ATOMIC_RELAXED);
}

int npk_check_read_state(NpkSession *s, uint64_t state) {
  if (!s->txn || s->txn->cat_gen == state) return NPK_OK;
  return npk_err(&s->err, NPK_STALE,
                 "store %s changed after this transaction read it (another "
                 "connection committed): roll the transaction back and run "
                 "it again",
                 s->store->dir);
}

/* NPK_READONLY, set in S, unless S's store may be written through it. */
static int refuse_write(NpkSession *s) {
  NpkStore *st = s->store;
  if (st->readonly)
    return npk_err(&s->err, NPK_READONLY, "store %s is open read-only",
                   st->dir);
  if (st->folds_case)
    return npk_err(&s->err, NPK_READONLY,
                   "store %s is in a directory that does not tell names "
                   "apart by case (a case-insensitive file system): numpack "
                   "reads such a store but does not write to it",
                   st->dir);
  return NPK_OK;
}

/* RESERVED for a write, after repairing the store: the way to a write is
** the one place where the lock file is created, a hot journal played back
** (npk_lock_settle) and the leftovers of crashed commits removed.  Readers
** never do any of it. */
static int write_lock(NpkSession *s) {
  int rc, reading = s->lock >= NPK_LOCK_SHARED, sweep;
  if ((rc = refuse_write(s))) return rc;
  rc = npk_lock_writable(s);
  if (rc == NPK_OK) rc = npk_lock_reserved(s, &s->err);
  /* Leftovers exist only where a writer died (its mark is still set), or
  ** from before this process came: reading a directory of thousands of
  ** arrays at every write would cost more than the write. */
  sweep = !__atomic_load_n(&s->store->swept, __ATOMIC_ACQUIRE) ||
          npk_lock_marked(s->store);
  if (rc == NPK_OK) rc = npk_lock_settle(s);
  if (rc) {
    NpkErr keep = s->err;
    /* The statement reading goes on reading. */
    if (reading && s->lock == NPK_LOCK_NONE) npk_shared_lock(s);
    s->err = keep;
    return rc;
  }
  /* The only writer now: whatever a crashed commit left lying is stale. */
  if (sweep) npk_sweep(s->store);
  __atomic_store_n(&s->store->swept, 1, __ATOMIC_RELEASE);
  return NPK_OK;
}

int npk_recover(NpkSession *s) {
  int rc;
  s->err.rc = NPK_OK;
  /* Looked for before any lock is taken: a commit may be under way. */
  if (s->txn || s->store->readonly || s->store->folds_case ||
      !npk_journal_exists(s->store, 0))
    return NPK_OK;
  rc = write_lock(s);
  if (rc) return rc;
  if (s->nread == 0) npk_lock_release(s);
  else npk_lock_to(s, NPK_LOCK_SHARED, &s->err);
  return NPK_OK;
}

int npk_begin(NpkSession *s) {
  NpkTxn *t;
  int rc, sync, copied;
  s->err.rc = NPK_OK;
  if (s->txn)
    return npk_err(&s->err, NPK_MISUSE, "a transaction is already open on %s",
                   s->store->dir);
  sync = s->sync_fn ? s->sync_fn(s->sync_arg) : 2;
  if (sync < 0) return npk_err(&s->err, NPK_NOMEM, "out of memory");
  if ((rc = write_lock(s))) return rc;
  t = npk_calloc(1, sizeof *t);
  /* A copy of a pointer per chunk: the arrays stay shared until changed.
  ** Under the store's mutex, which a reader of another thread holds while
  ** it replaces the committed catalog (a catalog changed by a program that
  ** ignores the lock file). */
  copied = 0;
  if (t) {
    pthread_mutex_lock(&s->store->mu);
    copied = npk_catalog_copy(&s->store->cat, &t->cat) == NPK_OK;
    t->cat_gen = s->store->cat_gen;
    pthread_mutex_unlock(&s->store->mu);
  }
  if (!copied) {
    npk_free(t);
    if (s->nread == 0) npk_lock_release(s);
    else npk_lock_to(s, NPK_LOCK_SHARED, &s->err);
    return npk_err(&s->err, NPK_NOMEM, "out of memory");
  }
  s->txn = t;
  s->spill_base = __atomic_load_n(&s->store->spill_faults, __ATOMIC_ACQUIRE);
  s->store->sync_off = sync == 0;
  if (!s->pinned) {
    pthread_mutex_lock(&s->store->mu);
    __atomic_store_n(&s->store->pins, s->store->pins + 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&s->store->mu);
    s->pinned = 1;
  }
  return NPK_OK;
}

int npk_savepoint(NpkSession *s, int *plevel) {
  NpkTxn *t = s->txn;
  if (!t)
    return npk_err(&s->err, NPK_MISUSE, "savepoint outside a transaction");
  if (t->nsp == t->spcap) {
    int cap = t->spcap ? t->spcap * 2 : 8;
    NpkSavepoint *p = npk_realloc(t->sp, (size_t)cap * sizeof *p);
    if (!p) return npk_err(&s->err, NPK_NOMEM, "out of memory");
    t->sp = p;
    t->spcap = cap;
  }
  t->sp[t->nsp].undo_pos = t->nundo;
  t->sp[t->nsp].counts = t->counts;
  *plevel = t->nsp++;
  return NPK_OK;
}

int npk_release(NpkSession *s, int level) {
  NpkTxn *t = s->txn;
  if (!t || level < 0)
    return npk_err(&s->err, NPK_MISUSE, "no savepoint %d", level);
  if (level >= t->nsp) return NPK_OK;
  t->nsp = level;
  if (t->nsp == 0) {
    /* No savepoint left to roll back to: the undo records are dead. */
    for (size_t i = 0; i < t->nundo; i++) undo_free(s->store, &t->undo[i]);
    t->nundo = 0;
  }
  return NPK_OK;
}

int npk_rollback_to(NpkSession *s, int level) {
  NpkTxn *t = s->txn;
  int rc = NPK_OK;
  if (!t || level < 0)
    return npk_err(&s->err, NPK_MISUSE, "no savepoint %d", level);
  if (level >= t->nsp) return NPK_OK;
  s->changes++;
  while (t->nundo > t->sp[level].undo_pos) {
    NpkUndo *u = &t->undo[--t->nundo];
    int r = undo_apply(s, u);
    if (r && rc == NPK_OK) rc = r;
    undo_free(s->store, u);
  }
  t->counts = t->sp[level].counts;
  t->nsp = level + 1;
  return rc;
}

/* Leave the transaction: back to SHARED if the session is reading. */
static void txn_end(NpkSession *s) {
  NpkTxn *t = s->txn;
  for (size_t i = 0; i < t->nundo; i++) undo_free(s->store, &t->undo[i]);
  npk_free(t->undo);
  npk_free(t->sp);
  npk_free(t->slots);
  npk_free(t->cat_note);
  /* A file let go for the last time retires its mapping onto the store's
  ** list, which readers of other threads change under the same mutex. */
  pthread_mutex_lock(&s->store->mu);
  for (int i = 0; i < t->ngrown; i++) npk_file_unref(s->store, t->grown[i]);
  npk_catalog_clear(s->store, &t->cat);
  /* A session that goes on reading reads what its commit left. */
  if (s->nread > 0) {
    s->rcat = s->store->cat;
    s->rgen = s->store->cat_gen;
  }
  pthread_mutex_unlock(&s->store->mu);
  npk_free(t->grown);
  /* The new files are renamed or removed now; a hot journal keeps its
  ** mark. */
  if (t->marked && !npk_journal_exists(s->store, 1)) npk_lock_mark(s, 0);
  npk_free(t);
  s->spill_own += __atomic_load_n(&s->store->spill_faults, __ATOMIC_ACQUIRE) -
                  s->spill_base;
  s->txn = NULL;
  s->store->sync_off = 0;
  s->changes++;
  if (s->nread > 0) npk_lock_to(s, NPK_LOCK_SHARED, &s->err);
  else npk_lock_release(s);
  npk_unpin(s);
}

/* Cut the appended tails of committed files back to their length before
** the transaction, except files in KEEP (N arrays whose storage the
** commit is about to size exactly). */
static int cut_tails(NpkSession *s, const Change *keep, int n) {
  NpkTxn *t = s->txn;
  int rc = NPK_OK;
  for (int i = 0; i < t->ngrown; i++) {
    NpkFile *f = t->grown[i];
    int kept = 0, r;
    for (int k = 0; k < n && !kept; k++)
      kept = keep[k].p && keep[k].p->pending && !keep[k].p->fresh &&
             keep[k].p->seg[0].file == f;
    if (kept) continue;
    npk_file_discard(f, f->orig_size);
    r = npk_file_use(s->store, f, &s->err);
    if (r == NPK_OK) {
      r = npk_io_ftruncate(s->store, f->fd, f->orig_size, f->path, &s->err);
      npk_file_done(f);
    }
    if (r && rc == NPK_OK) rc = r;
    npk_file_set_size(f, f->orig_size);
    f->grown = 0;
  }
  return rc;
}

int npk_rollback(NpkSession *s) {
  int rc;
  if (!s->txn) return NPK_OK;
  /* The files are then byte for byte as before the transaction. */
  rc = cut_tails(s, NULL, 0);
  __atomic_fetch_add(&s->store->stats.rollbacks, 1, __ATOMIC_RELAXED);
  txn_end(s);
  return rc;
}

void npk_txn_slot(NpkSession *s, int i) {
  NpkTxn *t = s->txn;
  if (t->reshaped) return;
  if (i >= 0 && t->nslot == t->slotcap) {
    int cap = t->slotcap ? t->slotcap * 2 : 8;
    int *p = npk_realloc(t->slots, (size_t)cap * sizeof *p);
    /* Without room to remember it, the commit compares every position. */
    if (!p) i = -1;
    else {
      t->slots = p;
      t->slotcap = cap;
    }
  }
  if (i < 0) t->reshaped = 1;
  else t->slots[t->nslot++] = i;
}

int npk_txn_grow(NpkSession *s, NpkArray *a) {
  NpkTxn *t = s->txn;
  NpkFile *f = a->seg[0].file;
  struct stat sb;
  if (f->grown || f->temp) return NPK_OK;
  if (npk_file_check_writable(s->store, f, a->name, a->base_rows * a->row_bytes,
                              &sb, &s->err))
    return s->err.rc;
  if (t->ngrown == t->growncap) {
    int cap = t->growncap ? t->growncap * 2 : 4;
    NpkFile **p = npk_realloc(t->grown, (size_t)cap * sizeof *p);
    if (!p) return npk_err(&s->err, NPK_NOMEM, "out of memory");
    t->grown = p;
    t->growncap = cap;
  }
  t->grown[t->ngrown++] = f;
  f->refs++;
  f->orig_size = (uint64_t)sb.st_size;
  f->grown = 1;
  return NPK_OK;
}

/* Every write call runs as one unit: inside a transaction under a savepoint
** of its own (so a failure halfway leaves no trace), outside one as its own
** transaction. */
int npk_op_begin(NpkSession *s, int *autoc, int *level) {
  int rc;
  *autoc = 0;
  s->err.rc = NPK_OK;
  if ((rc = refuse_write(s))) return rc;
  if (!s->txn) {
    rc = npk_begin(s);
    if (rc) return rc;
    *autoc = 1;
  }
  rc = npk_savepoint(s, level);
  if (rc && *autoc) npk_rollback(s);
  return rc;
}

int npk_op_end(NpkSession *s, int autoc, int level, int rc) {
  s->changes++;
  if (rc) {
    NpkErr keep = s->err;
    npk_rollback_to(s, level);
    npk_release(s, level);
    if (autoc) npk_rollback(s);
    s->err = keep;
    return rc;
  }
  npk_release(s, level);
  if (autoc) {
    rc = npk_commit(s);
    if (rc) {
      NpkErr keep = s->err;
      npk_rollback(s);
      s->err = keep;
    }
  }
  return rc;
}

/* ---- commit ---------------------------------------------------------- */

/* Call FN for every data file of C that the commit removes: the data file
** or manifest, and every segment file a manifest names, however many. */
typedef int (*FileFn)(NpkSession *s, const char *rel, void *arg);
static int each_removed(NpkSession *s, const Change *ch, FileFn fn, void *arg) {
  const NpkArray *c = ch->c;
  int n, rc;
  if (!ch->drop_c_files) return NPK_OK;
  n = c->segmented ? c->nseg + 1 : 1;
  for (int i = 0; i < n; i++) {
    const char *rel = i == 0 ? c->data_file : c->seg_names[i - 1];
    if (ch->p && strcmp(rel, ch->p->data_file) == 0) continue;
    if ((rc = fn(s, rel, arg))) return rc;
  }
  return NPK_OK;
}

static int jr_link_removed(NpkSession *s, const char *rel, void *arg) {
  (void)s;
  npk_jr_link(arg, rel, 1);
  return NPK_OK;
}

/* Hard-link REL to its backup name, replacing a stale backup; count it in
** *ARG (an int).  A name that cannot be reached (a link on the way: a data
** file a crafted catalog names) fails the commit here, before the journal:
** its record, which playback refuses, would leave the journal hot for good
** and every array of the store unreadable. */
static int link_backup(NpkSession *s, const char *rel, void *arg) {
  char *bak = npk_backup_name(rel);
  struct stat sb;
  NpkErr e;
  int rc = NPK_OK;
  if (!bak) rc = npk_err(&s->err, NPK_NOMEM, "out of memory");
  else if ((rc = npk_io_lstat(s->store, rel, &sb, &e)) == NPK_NOFILE)
    rc = NPK_OK;
  else if (rc) s->err = e;
  else {
    rc = npk_io_unlink(s->store, bak, &s->err);
    if (rc == NPK_OK) rc = npk_io_link(s->store, rel, bak, &s->err);
    if (rc == NPK_OK) ++*(int *)arg;
  }
  npk_free(bak);
  return rc;
}

static int note_subdir(NpkSession *s, const char *rel, void *arg) {
  (void)s;
  npk_subdir_note(arg, rel);
  return NPK_OK;
}

/* Sync the subdirectories holding files the commit removes (segment files
** NumPack may keep below the store's directory): before the journal, for
** their backups' entries; before the commit point, for their removal. */
static int sync_subdirs(NpkSession *s, const Change *ch, int n) {
  NpkBuf set = {0};
  int rc;
  for (int i = 0; i < n; i++) each_removed(s, &ch[i], note_subdir, &set);
  rc = npk_io_sync_subdirs(s->store, &set, &s->err);
  npk_buf_free(&set);
  return rc;
}

static int unlink_rel(NpkSession *s, const char *rel, void *arg) {
  (void)arg;
  return npk_io_unlink(s->store, rel, &s->err);
}

static int unlink_backup(NpkSession *s, const char *rel, void *arg) {
  char *bak = npk_backup_name(rel);
  NpkErr ignored;
  (void)arg;
  if (bak) npk_io_unlink(s->store, bak, &ignored);
  npk_free(bak);
  return NPK_OK;
}

/* FN for every file the commit backs up: those it removes, a file at the
** name a new data file takes, a bitmap it replaces or removes (the journal
** records which of these names held a file: those are the ones backed
** up), and the catalog when CAT (replaced whole; one patched in place has
** no backup).  Stops at the first error. */
static int each_backed_up(NpkSession *s, const Change *ch, int n, int cat,
                          FileFn fn, void *arg) {
  int rc = NPK_OK;
  for (int i = 0; i < n && rc == NPK_OK; i++) {
    rc = each_removed(s, &ch[i], fn, arg);
    if (rc == NPK_OK && ch[i].p && ch[i].p->fresh && ch[i].data_had)
      rc = fn(s, ch[i].p->data_file, arg);
    if (rc == NPK_OK && ch[i].bm_write && ch[i].bm_had && !ch[i].bm_inplace)
      rc = fn(s, ch[i].bm_rel, arg);
  }
  if (rc == NPK_OK && cat) rc = fn(s, NPK_CATALOG, arg);
  return rc;
}

/* Remove the backups of every file the commit replaces or removes. */
static void drop_backups(NpkSession *s, const Change *ch, int n, int cat) {
  each_backed_up(s, ch, n, cat, unlink_backup, NULL);
}

/* The arrays of committed catalog CC and pending catalog PC that differ,
** paired by name, into CH (when not NULL); returns how many.  The pending
** catalog began as a copy of the committed one: an array at the same place
** in both is unchanged, found without a lookup. */
static int pair(NpkCatalog *cc, NpkCatalog *pc, Change *ch) {
  int n = 0;
  for (int i = 0; i < cc->n; i++) {
    int j;
    if (i < pc->n && npk_cat_at(pc, i) == npk_cat_at(cc, i)) continue;
    j = npk_catalog_find(pc, npk_cat_at(cc, i)->name);
    if (j >= 0 && npk_cat_at(pc, j) == npk_cat_at(cc, i)) continue;
    if (ch) {
      ch[n].c = npk_cat_at(cc, i);
      ch[n].p = j >= 0 ? npk_cat_at(pc, j) : NULL;
      ch[n].pos = j;
    }
    n++;
  }
  for (int j = 0; j < pc->n; j++) {
    if ((j < cc->n && npk_cat_at(cc, j) == npk_cat_at(pc, j)) ||
        npk_catalog_find(cc, npk_cat_at(pc, j)->name) >= 0)
      continue;
    if (ch) {
      ch[n].p = npk_cat_at(pc, j);
      ch[n].pos = j;
    }
    n++;
  }
  return n;
}

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

/* The same when the transaction knows the only positions where the
** catalogs can differ (npk_txn_slot), and that arrays were only added
** after the committed ones: a cost in proportion to the arrays the
** transaction changed or added, not to the store's.  -1 when it does not
** know: arrays were dropped, or the committed catalog was read again since
** the transaction copied it. */
static int pair_slots(NpkSession *s, Change *ch) {
  NpkTxn *t = s->txn;
  NpkCatalog *cc = &s->store->cat, *pc = &t->cat;
  int n = 0;
  if (t->reshaped || t->cat_gen != s->store->cat_gen || cc->n > pc->n)
    return -1;
  if (!ch && t->nslot > 1)
    qsort(t->slots, (size_t)t->nslot, sizeof *t->slots, cmp_int);
  for (int k = 0; k < t->nslot; k++) {
    int i = t->slots[k];
    /* A position past the committed ones holds an added array (below),
    ** saved again since it was added. */
    if ((k > 0 && t->slots[k - 1] == i) || i >= cc->n ||
        npk_cat_at(pc, i) == npk_cat_at(cc, i))
      continue;
    if (strcmp(npk_cat_at(pc, i)->name, npk_cat_at(cc, i)->name) != 0)
      return -1;
    if (ch) {
      ch[n].c = npk_cat_at(cc, i);
      ch[n].p = npk_cat_at(pc, i);
      ch[n].pos = i;
    }
    n++;
  }
  for (int i = cc->n; i < pc->n; i++) {
    if (ch) {
      ch[n].p = npk_cat_at(pc, i);
      ch[n].pos = i;
    }
    n++;
  }
  return n;
}

/* Pair up the committed and pending arrays by name (*PFAST: only the
** positions the transaction changed were compared). */
static int plan(NpkSession *s, Change **pch, int *pn, int *pfast) {
  NpkCatalog *cc = &s->store->cat, *pc = &s->txn->cat;
  int n = pair_slots(s, NULL), fast = n >= 0;
  Change *ch;
  if (!fast) n = pair(cc, pc, NULL);
  if (!(ch = npk_calloc((size_t)n + 1, sizeof *ch)))
    return npk_err(&s->err, NPK_NOMEM, "out of memory");
  if (fast) pair_slots(s, ch);
  else pair(cc, pc, ch);
  *pfast = fast;
  for (int i = 0; i < n; i++) {
    Change *x = &ch[i];
    const char *name = x->p ? x->p->name : x->c->name;
    x->drop_c_files = x->c && (!x->p || x->p->fresh);
    x->bm_fd = -1;
    x->bm_rel = npk_malloc(strlen(name) + 16);
    if (!x->bm_rel) {
      *pch = ch;
      *pn = i;
      return npk_err(&s->err, NPK_NOMEM, "out of memory");
    }
    sprintf(x->bm_rel, "deleted_%s.npkb", name);
    {
      NpkErr ignored;
      x->bm_had =
          npk_io_lstat(s->store, x->bm_rel, &x->bm_sb, &ignored) == NPK_OK;
    }
    x->bm_write =
        x->p ? (x->p->bm_dirty || (x->p->bm != NULL) != x->bm_had) : x->bm_had;
  }
  *pch = ch;
  *pn = n;
  return NPK_OK;
}

/* The new catalog's encoding, kept for the next commit to patch. */
typedef struct CatImage CatImage;
struct CatImage {
  NpkBuf img;     /* the bytes written, unless patched */
  size_t *off;    /* where each entry of img starts */
  int patched;    /* the store's image was patched instead: it
                  ** describes the committed catalog no more
                  ** unless the commit completes */
  int inplace;    /* the committed file is patched in place:
                  ** RUNS, journaled with their old bytes */
  CatRun *runs;   /* header, then one per changed array */
  int nrun;       /* entries in runs */
  size_t tail;    /* when arrays were added: the committed file's
                  ** length, past which their entries are
                  ** appended (journaled as a truncation) */
  int suffix;     /* the runs are of IMG, the whole new encoding,
                  ** which differs from the file's from a point on
                  ** (arrays dropped, entries of a new length) */
  int *pos;       /* positions of the changed arrays, when the
                  ** commit knows them to be the only ones */
  int npos;       /* entries in pos */
  struct stat sb; /* a catalog patched in place, as written */
};

/* Take the committed catalog file's bytes as the store's image of it, if
** they are exactly the encoding of the committed catalog: a catalog loaded
** from disk (another process committed, or the store was just opened) can
** then be patched by the first commit too.  Bytes of any other layout (a
** catalog written by another program) are never patched: the first commit
** replaces them whole.  Read through the descriptor the committed state
** was loaded from; the caller checked that it is still the file at the
** catalog's name. */
static int adopt_file_image(NpkSession *s) {
  NpkStore *st = s->store;
  NpkCatalog *cat = &st->cat;
  NpkBuf enc = {0};
  size_t len = (size_t)st->cat_st.st_size;
  size_t *off = npk_malloc((size_t)(cat->n ? cat->n : 1) * sizeof *off);
  unsigned char *file = npk_malloc(len ? len : 1);
  int rc = NPK_ERROR;
  if (!off || !file || npk_catalog_encode_at(cat, &enc, off) || enc.oom ||
      enc.n != len)
    goto done;
  if (npk_io_read_at(st, st->cat_fd, file, len, 0) != (ssize_t)len ||
      memcmp(file, enc.p, len) != 0)
    goto done;
  pthread_mutex_lock(&st->mu);
  npk_buf_free(&st->img);
  st->img = enc;
  memset(&enc, 0, sizeof enc);
  npk_free(st->img_off);
  st->img_off = off;
  off = NULL;
  st->img_ok = 1;
  pthread_mutex_unlock(&st->mu);
  rc = NPK_OK;
done:
  npk_buf_free(&enc);
  npk_free(off);
  npk_free(file);
  return rc;
}

static int cmp_run(const void *a, const void *b) {
  size_t x = ((const CatRun *)a)->lo, y = ((const CatRun *)b)->lo;
  return (x > y) - (x < y);
}

/* Runs less than this apart are written (and journaled) as one: the bytes
** between are rewritten with what they hold, and a system call is saved. */
#define CAT_RUN_GAP 64

/* Sort CI's runs and join those that overlap or lie close together: the
** header's total and the entry of the first array are one write. */
static void merge_runs(CatImage *ci) {
  int k = 0;
  qsort(ci->runs, (size_t)ci->nrun, sizeof *ci->runs, cmp_run);
  for (int i = 1; i < ci->nrun; i++) {
    CatRun *a = &ci->runs[k], *b = &ci->runs[i];
    if (b->lo <= a->lo + a->len + CAT_RUN_GAP) {
      size_t end =
          b->lo + b->len > a->lo + a->len ? b->lo + b->len : a->lo + a->len;
      a->len = end - a->lo;
    } else {
      ci->runs[++k] = *b;
    }
  }
  ci->nrun = k + 1;
}

/* The part of run R within the first N bytes: 0 when none is. */
static int run_within(const CatRun *r, size_t n, size_t *lo, size_t *len) {
  size_t hi = r->lo + r->len < n ? r->lo + r->len : n;
  *lo = r->lo;
  *len = hi > r->lo ? hi - r->lo : 0;
  return *len > 0;
}

/* A change npk_catalog_patch cannot make (arrays dropped, an entry of a new
** length) rewritten in place all the same: the whole new encoding into
** CI->img, and as runs the header and every byte from the first one after
** it that differs (entries vary in length: what follows a changed one has
** moved).  The file is then cut or extended to the new length.  Without
** it, every such commit would write a new catalog file and free the old
** one's inode. */
static int suffix_plan(NpkSession *s, CatImage *ci) {
  NpkStore *st = s->store;
  NpkCatalog *pc = &s->txn->cat;
  const size_t body = NPK_CAT_HEAD_OFF + NPK_CAT_HEAD_LEN;
  size_t from, oldn = st->img.n, newn, end;
  ci->off = npk_malloc((size_t)(pc->n ? pc->n : 1) * sizeof *ci->off);
  ci->runs = npk_malloc(2 * sizeof *ci->runs);
  if (!ci->off || !ci->runs || npk_catalog_encode_at(pc, &ci->img, ci->off))
    return npk_err(&s->err, NPK_NOMEM, "out of memory");
  newn = ci->img.n;
  for (from = body; from < oldn && from < newn; from++)
    if (ci->img.p[from] != st->img.p[from]) break;
  if (oldn < body || newn < body ||
      memcmp(ci->img.p, st->img.p, NPK_CAT_HEAD_OFF) != 0 ||
      oldn - (from < oldn ? from : oldn) > NPK_CAT_SUFFIX_MAX) {
    /* Replaced whole: encode_catalog makes its image afresh. */
    npk_buf_free(&ci->img);
    npk_free(ci->off);
    ci->off = NULL;
    return NPK_OK;
  }
  ci->runs[0].lo = NPK_CAT_HEAD_OFF;
  ci->runs[0].len = NPK_CAT_HEAD_LEN;
  ci->nrun = 1;
  end = oldn > newn ? oldn : newn;
  if (from < end) {
    ci->runs[1].lo = from;
    ci->runs[1].len = end - from;
    ci->nrun = 2;
  }
  ci->suffix = 1;
  ci->inplace = 1;
  return NPK_OK;
}

/* Decide whether the catalog can be patched in place (CI->inplace, with
** its runs): only rows of arrays changed, or arrays were added after the
** committed ones (npk_catalog_patch applies to the store's image of the
** committed catalog), and the file at the catalog's
** name is still the one that image was written to or read from -- same
** inode, length and time as held (a program ignoring the locks may have
** put another there, where runs computed for our image would damage it),
** of one name (no write reaches a file through a hard link) and this
** user's (only its owner may set its time).  Other changes to such a file
** are rewritten in place from their first byte on (suffix_plan).
** Otherwise the catalog is replaced whole. */
static int catalog_plan(NpkSession *s, const Change *ch, int n, int fast,
                        CatImage *ci) {
  static uid_t euid = (uid_t)-1;
  NpkStore *st = s->store;
  NpkCatalog *pc = &s->txn->cat;
  struct stat now;
  NpkErr ignored;
  int ok, patchable;
  if (st->cat_fd < 0 || st->coarse_mtime) return NPK_OK;
  /* The pairing saw the committed catalog the transaction copied; should
  ** it have been read again since (a program ignoring the locks changed
  ** it, and a reader of another session found out before this commit took
  ** EXCLUSIVE), the positions it found say nothing of the catalog now
  ** held, and every position is compared. */
  if (s->txn->cat_gen != __atomic_load_n(&st->cat_gen, __ATOMIC_RELAXED))
    fast = 0;
  if (fast) {
    /* Only these positions differ (pair_slots): check them alone. */
    if (!(ci->pos = npk_malloc(((size_t)n + 1) * sizeof *ci->pos)))
      return npk_err(&s->err, NPK_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) ci->pos[i] = ch[i].pos;
    ci->npos = n;
  }
  patchable = npk_catalog_patchable(&st->cat, pc, ci->pos, ci->npos) == NPK_OK;
  if (euid == (uid_t)-1) euid = geteuid();
  if (npk_io_lstat(st, NPK_CATALOG, &now, &ignored) != NPK_OK) return NPK_OK;
  pthread_mutex_lock(&st->mu);
  ok = S_ISREG(now.st_mode) && now.st_nlink == 1 && now.st_uid == euid &&
       now.st_ino == st->cat_st.st_ino && now.st_dev == st->cat_st.st_dev &&
       now.st_size == st->cat_st.st_size &&
       now.st_mtim.tv_sec == st->cat_st.st_mtim.tv_sec &&
       now.st_mtim.tv_nsec == st->cat_st.st_mtim.tv_nsec;
  pthread_mutex_unlock(&st->mu);
  if (!ok || (!st->img_ok && adopt_file_image(s) != NPK_OK) ||
      (uint64_t)now.st_size != st->img.n)
    return NPK_OK;
  if (!patchable) return suffix_plan(s, ci);
  ci->runs = npk_malloc(((size_t)n + 1) * sizeof *ci->runs);
  if (!ci->runs) return npk_err(&s->err, NPK_NOMEM, "out of memory");
  ci->runs[0].lo = NPK_CAT_HEAD_OFF;
  ci->runs[0].len = NPK_CAT_HEAD_LEN;
  ci->nrun = 1;
  for (int i = 0; i < n; i++) {
    CatRun *r;
    /* patchable: every change is a new version of an array in place, or
    ** an array added after the committed ones.  The pairing was made before
    ** EXCLUSIVE: should the committed state have been read again since (a
    ** program ignoring the locks changed the catalog), the entry is not at
    ** that place of the image, and the catalog is replaced whole. */
    if (!ch[i].c) continue;
    if (ch[i].pos >= st->cat.n || npk_cat_at(&st->cat, ch[i].pos) != ch[i].c) {
      ci->nrun = 0;
      return NPK_OK;
    }
    r = &ci->runs[ci->nrun++];
    npk_catalog_patch_span(ch[i].p, st->img_off[ch[i].pos], &r->lo, &r->len);
  }
  if (pc->n > st->cat.n) ci->tail = st->img.n;
  merge_runs(ci);
  ci->inplace = 1;
  return NPK_OK;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* P's replaced rows in order, into *PROWS (npk_malloc'd, *PN of them):
** their journal records then cover runs of consecutive rows, one
** record each, where one per row made the journal of an UPDATE of rows of
** a few bytes three times their size and its playback a write per row. */
static int sorted_rows(NpkSession *s, NpkArray *p, uint64_t **prows,
                       uint64_t *pn) {
  uint64_t pos = 0, k = 0, row, *rows;
  const void *ignored;
  /* At most the rows ever put: a row taken out again leaves a tombstone,
  ** which the walk skips. */
  *prows = rows = npk_malloc((size_t)(p->ov->n ? p->ov->n : 1) * sizeof *rows);
  if (!rows) return npk_err(&s->err, NPK_NOMEM, "out of memory");
  while (k < p->ov->n && npk_ov_next(p->ov, &pos, &row, &ignored))
    rows[k++] = row;
  qsort(rows, (size_t)k, sizeof *rows, cmp_u64);
  *pn = k;
  return NPK_OK;
}

/* 'R' records of the original bytes of P's replaced rows ROWS[*PK ..
** N), a run of consecutive rows per record, appended to JR until it holds
** LIMIT bytes or the rows end (*PK is then N). */
static int journal_rows(NpkSession *s, NpkArray *p, const uint64_t *rows,
                        uint64_t n, uint64_t *pk, NpkBuf *jr, size_t limit) {
  NpkFile *f = p->seg[0].file;
  uint64_t mark = npk_map_faults(s), rb = p->row_bytes;
  uint64_t need = p->base_rows * rb;
  const unsigned char *from;
  int rc;
  if ((rc = npk_file_map(s->store, f, need, &s->err))) return rc;
  /* Through the mapping write_rows writes the new rows through, when an
  ** earlier commit left one: each row's page and cache lines are then
  ** fetched once, not once per mapping (rows replaced at random cost a
  ** cache and TLB miss each). */
  from = f->wbase && need <= f->wmaplen && !npk_guard_hit(f->wslot) ? f->wbase
                                                                    : f->base;
  while (jr->n < limit && *pk < n) {
    uint64_t first = rows[*pk], end = *pk + 1;
    /* A run stops at a piece's size, so that a piece stays about that. */
    while (end < n && rows[end] == rows[end - 1] + 1 &&
           (end - *pk + 1) * rb <= NPK_JOURNAL_PIECE)
      end++;
    npk_jr_region(jr, p->data_file, first * rb, from + first * rb,
                  (size_t)((end - *pk) * rb));
    *pk = end;
  }
  /* A journal holding zeros for the rows it should restore would make a
  ** rollback destroy them. */
  return npk_map_check(s, mark, p->name);
}

/* Whether P's replaced rows are journaled (they are when it has some). */
static int has_rows(const NpkArray *p) {
  return p && p->pending && !p->fresh && p->ov && p->ov->n;
}

/* The replaced rows of a commit that replaced more than fits one piece,
** journaled a piece at a time (NpkJrMore). */
typedef struct RowsJournal RowsJournal;
struct RowsJournal {
  NpkSession *s;  /* the committing session */
  Change *ch;     /* the commit's changes */
  int n;          /* how many */
  int i;          /* the change whose rows come next */
  uint64_t *rows; /* its replaced rows in order, or NULL before they are
                  ** listed */
  uint64_t nrows; /* how many */
  uint64_t k;     /* how many of them are journaled */
};

static int journal_more(void *arg, NpkBuf *piece, int *pdone) {
  RowsJournal *rj = arg;
  int rc = NPK_OK;
  while (rc == NPK_OK && piece->n < NPK_JOURNAL_PIECE && rj->i < rj->n) {
    NpkArray *p = rj->ch[rj->i].p;
    if (has_rows(p) && !rj->rows &&
        (rc = sorted_rows(rj->s, p, &rj->rows, &rj->nrows)))
      break;
    if (has_rows(p))
      rc = journal_rows(rj->s, p, rj->rows, rj->nrows, &rj->k, piece,
                        NPK_JOURNAL_PIECE);
    if (rc == NPK_OK && (!has_rows(p) || rj->k >= rj->nrows)) {
      npk_free(rj->rows);
      rj->rows = NULL;
      rj->k = 0;
      rj->i++;
    }
  }
  *pdone = rj->i >= rj->n;
  return rc;
}

/* The most bytes of a bitmap a commit rewrites in place, journaled with
** their old bytes: a change of more (a large DELETE) replaces the file
** whole, which writes it once. */
#define BM_PATCH_MAX (64u << 10)

/* A bitmap's bytes read in one call to check them (bitmap_as_held):
** runs less than BM_READ_GAP apart and the bytes between them, up to
** BM_READ_MAX at once (a run is at most BM_PATCH_MAX long).  A call per
** run would double the system calls of a DELETE of rows far apart. */
#define BM_READ_GAP 4096u
#define BM_READ_MAX (BM_PATCH_MAX + 4 * CAT_RUN_GAP)

/* Bitmaps a commit keeps open from the check of their bytes to their patch
** (a commit of more opens each again: it holds no descriptor for each of
** thousands of arrays). */
#define BM_FDS_KEPT 16

/* X's bitmap opened for writing into *PFD: the file the commit planned
** for (X->bm_sb), still of one name. */
static int open_bitmap(NpkSession *s, const Change *x, int *pfd, NpkErr *e) {
  struct stat sb;
  int rc = npk_io_open(s->store, x->bm_rel, O_RDWR, pfd, e);
  if (rc == NPK_OK && (fstat(*pfd, &sb) != 0 || sb.st_dev != x->bm_sb.st_dev ||
                       sb.st_ino != x->bm_sb.st_ino || sb.st_nlink != 1)) {
    close(*pfd);
    *pfd = -1;
    rc = npk_err(e, NPK_BUSY,
                 "%s/%s was replaced by another program during the commit",
                 s->store->dir, x->bm_rel);
  }
  return rc;
}

static void close_bitmap(Change *x) {
  if (x->bm_fd >= 0) close(x->bm_fd);
  x->bm_fd = -1;
}

/* *POK: 1 if X's bitmap opens for writing and its header and the bytes a
** patch overwrites (the runs within the old length, and what lies between
** runs read together) are on disk what the committed bitmap's encoding
** says.  Its inode, length and time do not prove them where the file system's
** clock is coarser than the writes are apart: a program ignoring the locks
** (NumPack itself) that rewrote the file in place with the same length in
** the same tick leaves all three as they were, and a patch over its bytes
** would leave a deleted count that the bits contradict.  A file this
** process may not write is not patched either: replaced whole, as the
** directory allows, where a patch would fail after its journal.  Kept
** open in X->bm_fd when KEEP and the bytes are as held, else closed. */
static int bitmap_as_held(NpkSession *s, Change *x, int keep, int *pok) {
  NpkStore *st = s->store;
  size_t oldn = (size_t)x->bm_oldn, lo = 0, hi = 16;
  size_t cap = oldn < BM_READ_MAX ? oldn : BM_READ_MAX;
  unsigned char *buf = npk_malloc(cap);
  NpkBuf want = {0};
  NpkErr ignored;
  int fd = -1, ok, rc = NPK_OK;
  if (!buf) return npk_err(&s->err, NPK_NOMEM, "out of memory");
  ok = open_bitmap(s, x, &fd, &ignored) == NPK_OK;
  /* [LO, HI): the bytes to read next, the header first. */
  for (int k = 0; k <= x->bm_nrun && ok; k++) {
    size_t rlo = 0, rlen = 0;
    if (k < x->bm_nrun) {
      if (!run_within(&x->bm_runs[k], oldn, &rlo, &rlen)) continue;
      if (rlo <= hi + BM_READ_GAP && rlo + rlen - lo <= cap) {
        if (rlo + rlen > hi) hi = rlo + rlen;
        continue;
      }
    }
    want.n = 0;
    npk_bm_encode_range(x->c->bm, lo, hi - lo, &want);
    if (want.oom) {
      rc = npk_err(&s->err, NPK_NOMEM, "out of memory");
      break;
    }
    ok = hi - lo <= cap &&
         npk_io_read_at(st, fd, buf, hi - lo, lo) == (ssize_t)(hi - lo) &&
         memcmp(buf, want.p, hi - lo) == 0;
    lo = rlo;
    hi = rlo + rlen;
  }
  npk_free(buf);
  npk_buf_free(&want);
  if (ok && keep) x->bm_fd = fd;
  else if (fd >= 0) close(fd);
  *pok = ok;
  return rc;
}

/* Plan to patch X's bitmap in place: only the bytes that change between
** the committed bitmap's encoding and the pending one's are written
** (X->bm_inplace, bm_runs, bm_img, bm_old).  That needs the file at the
** name to be, byte for byte, the committed bitmap's encoding (its bm_id:
** read or written by this store object and untouched since, one name;
** and the bytes to patch as held, bitmap_as_held).
** Else it is replaced whole: a new file renamed over it, which takes a
** backup link and two more directory syncs.  Such a file whose bitmap is
** the pending one after all is not written (X->bm_write cleared). */
static int bitmap_plan(NpkSession *s, Change *x, int *pheld) {
  NpkArray *c = x->c, *p = x->p;
  uint64_t at, end, total = 0, newn;
  int rc, ok = 0;
  if (!x->bm_write || !c || !p || p->fresh || !c->bm || !p->bm || !x->bm_had ||
      !S_ISREG(x->bm_sb.st_mode) || x->bm_sb.st_nlink != 1 ||
      !npk_file_id_is(&c->bm_id, &x->bm_sb))
    return NPK_OK;
  x->bm_oldn = npk_bm_encoded_size(c->bm);
  newn = npk_bm_encoded_size(p->bm);
  if (newn < x->bm_oldn) return NPK_OK;
  for (at = npk_bm_next_diff(c->bm, p->bm, 0); at != UINT64_MAX;
       at = npk_bm_next_diff(c->bm, p->bm, at + 8)) {
    CatRun *r = x->bm_nrun ? &x->bm_runs[x->bm_nrun - 1] : NULL;
    if (r && at <= r->lo + r->len + CAT_RUN_GAP) {
      total += at + 8 - (r->lo + r->len);
      r->len = at + 8 - r->lo;
    } else {
      if ((x->bm_nrun & (x->bm_nrun - 1)) == 0) {
        CatRun *q = npk_realloc(
            x->bm_runs, (size_t)(x->bm_nrun ? 2 * x->bm_nrun : 1) * sizeof *q);
        if (!q) return npk_err(&s->err, NPK_NOMEM, "out of memory");
        x->bm_runs = q;
      }
      x->bm_runs[x->bm_nrun++] = (CatRun){(size_t)at, 8};
      total += 8;
    }
    if (total > BM_PATCH_MAX) {
      x->bm_nrun = 0;
      return NPK_OK;
    }
  }
  for (int i = 0; i < x->bm_nrun; i++) {
    CatRun *r = &x->bm_runs[i];
    end = r->lo + r->len < x->bm_oldn ? r->lo + r->len : x->bm_oldn;
    if (end > r->lo) npk_bm_encode_range(c->bm, r->lo, end - r->lo, &x->bm_old);
  }
  if (x->bm_old.oom) return npk_err(&s->err, NPK_NOMEM, "out of memory");
  if ((rc = bitmap_as_held(s, x, *pheld < BM_FDS_KEPT, &ok))) return rc;
  if (!ok) {
    x->bm_nrun = 0;
    return NPK_OK;
  }
  if (!x->bm_nrun) {
    close_bitmap(x);
    /* The committed bitmap after all (rows appended, then rolled back to
    ** a savepoint): the file stays as it is, the file P holds. */
    x->bm_write = 0;
    p->bm_id = c->bm_id;
    return NPK_OK;
  }
  for (int i = 0; i < x->bm_nrun; i++)
    npk_bm_encode_range(p->bm, x->bm_runs[i].lo, x->bm_runs[i].len, &x->bm_img);
  if (x->bm_img.oom) return npk_err(&s->err, NPK_NOMEM, "out of memory");
  x->bm_inplace = 1;
  *pheld += x->bm_fd >= 0;
  return NPK_OK;
}

/* Journal: everything needed to put the files back as they are now.  The
** replaced rows' original bytes go into JR too when they fit one piece;
** else *PMORE is set and npk_journal_write takes them in pieces. */
static int build_journal(NpkSession *s, Change *ch, int n, const CatImage *ci,
                         NpkBuf *jr, int *pmore) {
  NpkStore *st = s->store;
  NpkTxn *t = s->txn;
  uint64_t replaced = 0;
  int rc;

  for (int i = 0; i < n; i++) {
    NpkArray *p = ch[i].p;
    if (!has_rows(p)) continue;
    if ((rc = npk_ov_check(st, p->ov, p->name, &s->err))) return rc;
    replaced += p->ov->n * p->row_bytes;
  }
  *pmore = replaced > NPK_JOURNAL_PIECE;
  /* The catalog's old length first: the release before this one refuses
  ** that record as damaged, and meeting it before any other it refuses the
  ** journal having played nothing back.  The records restore different
  ** files, or bytes of the catalog before that length: any order undoes
  ** the same. */
  if (ci->inplace && (ci->tail || (ci->suffix && ci->img.n != st->img.n)))
    npk_jr_trunc(jr, NPK_CATALOG, st->img.n);
  /* Bitmaps patched in place: records that release refuses too. */
  for (int i = 0; i < n; i++) {
    const Change *x = &ch[i];
    size_t old = 0;
    if (!x->bm_inplace) continue;
    if (npk_bm_encoded_size(x->p->bm) > x->bm_oldn)
      npk_jr_trunc(jr, x->bm_rel, x->bm_oldn);
    for (int k = 0; k < x->bm_nrun; k++) {
      size_t lo, len;
      if (!run_within(&x->bm_runs[k], (size_t)x->bm_oldn, &lo, &len)) continue;
      npk_jr_region(jr, x->bm_rel, lo, x->bm_old.p + old, len);
      old += len;
    }
  }
  for (int i = 0; i < t->ngrown; i++)
    npk_jr_trunc(jr, t->grown[i]->rel, t->grown[i]->orig_size);
  for (int i = 0; i < n; i++) {
    NpkArray *p = ch[i].p;
    if (has_rows(p) && !*pmore) {
      uint64_t k = 0, nrows, *rows;
      /* Room for every record at once: no copy while it grows. */
      npk_buf_reserve(
          jr, p->ov->n * (21 + strlen(p->data_file) + (size_t)p->row_bytes));
      if ((rc = sorted_rows(s, p, &rows, &nrows))) return rc;
      rc = journal_rows(s, p, rows, nrows, &k, jr, SIZE_MAX);
      npk_free(rows);
      if (rc) return rc;
    }
    if (p && p->fresh) {
      npk_jr_temp(jr, p->seg[0].file->rel);
      ch[i].data_had = npk_io_exists(st, p->data_file);
      npk_jr_link(jr, p->data_file, ch[i].data_had);
    }
    each_removed(s, &ch[i], jr_link_removed, jr);
    if (ch[i].bm_write && !ch[i].bm_inplace)
      npk_jr_link(jr, ch[i].bm_rel, ch[i].bm_had);
  }
  if (ci->inplace) {
    /* The store's image is the file's bytes (catalog_plan); a suffix run
    ** may reach past them, where the truncation record undoes it. */
    for (int i = 0; i < ci->nrun; i++) {
      size_t lo, len;
      if (run_within(&ci->runs[i], st->img.n, &lo, &len))
        npk_jr_region(jr, NPK_CATALOG, lo, st->img.p + lo, len);
    }
  } else {
    npk_jr_link(jr, NPK_CATALOG, 1);
  }
  return jr->oom ? npk_err(&s->err, NPK_NOMEM, "out of memory") : NPK_OK;
}

/* Bytes [0, NEED) of F mapped for writing, for rows replaced in place: a
** store into a mapped page already writable costs nothing, where a pwrite
** of a few bytes into the page cache costs the kernel microseconds (ext4
** prepares every block of the page's folio).  The mapping lives as long as
** F, so that its pages stay writable from one commit to the next, with
** room to grow; only a committer, under EXCLUSIVE, writes through it, and
** only after npk_file_use found F still at its name.  It is guarded like
** the read mappings: a page the file refuses (a full disk, a file cut
** short by another program) takes the write in zeros of its own and counts
** a fault, which the committer checks. */
static int wmap(NpkSession *s, NpkFile *f, uint64_t need) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE), len;
  void *p;
  int slot;
  if (f->wbase && need <= f->wmaplen && !npk_guard_hit(f->wslot)) return NPK_OK;
  npk_file_unmap_w(f);
  len = (size_t)(need + need / 4 + ((uint64_t)1 << 20));
  len = (len + page - 1) / page * page;
  p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
  if (p == MAP_FAILED)
    return npk_err_sys(&s->err, errno, "cannot map", f->path);
  if ((slot = npk_guard_add_rw(p, len, &s->store->map_faults, 1)) < 0) {
    munmap(p, len);
    return npk_err(&s->err, NPK_NOMEM,
                   "cannot map %s: no room to guard the "
                   "mapping",
                   f->path);
  }
  f->wbase = p;
  f->wmaplen = len;
  f->wslot = slot;
  return NPK_OK;
}

/* Read every page of the N bytes at P, so that a page the disk fails to
** give back faults here, under the guard, rather than in the kernel. */
static void touch_pages(const void *p, uint64_t n) {
  const volatile unsigned char *c = p;
  for (uint64_t off = 0; off < n; off += 4096) (void)c[off];
  if (n) (void)c[n - 1];
}

/* Write P's overlay rows over the committed rows of its file F (in use):
** through the writable mapping, or a pwrite each when the address space
** has no room for it (a capped ulimit -v). */
static int write_rows(NpkSession *s, NpkArray *p, NpkFile *f) {
  uint64_t mark, pos = 0, row;
  const void *src;
  int rc;
  if ((rc = npk_io_fault(s->store, "write", "cannot write", f->path, &s->err)))
    return rc;
  mark = npk_map_faults(s);
  if (wmap(s, f, p->base_rows * p->row_bytes) != NPK_OK) {
    s->err.rc = NPK_OK;
    while (npk_ov_next(p->ov, &pos, &row, &src)) {
      rc = npk_io_pwrite(s->store, f->fd, src, (size_t)p->row_bytes,
                         row * p->row_bytes, f->path, &s->err);
      if (rc == NPK_OK) continue;
      /* A page of the spill file the disk fails to give back reaches
      ** pwrite as EFAULT, which blames the data file: read here, the
      ** page is a fault the overlay is checked for. */
      touch_pages(src, p->row_bytes);
      if (npk_ov_check(s->store, p->ov, p->name, &s->err)) return s->err.rc;
      return rc;
    }
    return npk_ov_check(s->store, p->ov, p->name, &s->err);
  }
  while (npk_ov_next(p->ov, &pos, &row, &src)) {
    memcpy(f->wbase + row * p->row_bytes, src, (size_t)p->row_bytes);
    npk_io_mapped(s->store, f->fd, src, (size_t)p->row_bytes,
                  row * p->row_bytes);
  }
  if (npk_map_faults(s) == mark) return NPK_OK;
  /* The page lost may be one of the spill file's, read from. */
  if ((rc = npk_ov_check(s->store, p->ov, p->name, &s->err))) return rc;
  return npk_err(&s->err, NPK_IOERR,
                 "cannot write rows of array \"%s\" "
                 "to %s: the file refused a page (a full disk, or the file "
                 "shortened by another program)",
                 p->name, f->path);
}

/* Step 3 for pending array P, whose rows are in F (in use): its overlay
** rows in place, WANT bytes long, synced. */
static int write_file(NpkSession *s, NpkArray *p, NpkFile *f, uint64_t want) {
  NpkStore *st = s->store;
  int rc;
  if (p->ov && p->ov->n && (rc = write_rows(s, p, f))) return rc;
  if (f->grown || p->fresh) {
    struct stat sb;
    if (fstat(f->fd, &sb) != 0)
      return npk_err_sys(&s->err, errno, "cannot stat", f->path);
    if ((uint64_t)sb.st_size != want &&
        (rc = npk_io_ftruncate(st, f->fd, want, f->path, &s->err)))
      return rc;
    npk_file_set_size(f, want);
  }
  if (p->ov || f->grown || p->fresh) {
    if ((rc = npk_io_fsync(st, f->fd, f->path, &s->err))) return rc;
  }
  return NPK_OK;
}

/* Step 3: overlay rows in place, exact file lengths, everything synced. */
static int write_data(NpkSession *s, Change *ch, int n) {
  NpkStore *st = s->store;
  int rc;
  for (int i = 0; i < n; i++) {
    NpkArray *p = ch[i].p;
    NpkFile *f;
    uint64_t want;
    if (!p || !p->pending || p->segmented) continue;
    f = p->seg[0].file;
    want = p->shape[0] * p->row_bytes;
    npk_file_discard(f, want);
    if ((rc = npk_file_flush(st, f, &s->err))) return rc;
    if ((rc = npk_file_use(st, f, &s->err))) return rc;
    rc = write_file(s, p, f, want);
    npk_file_done(f);
    if (rc) return rc;
  }
  return NPK_OK;
}

/* Step 4: new data files into place, removed ones gone. */
static int move_data(NpkSession *s, Change *ch, int n) {
  NpkStore *st = s->store;
  int rc;
  for (int i = 0; i < n; i++) {
    NpkArray *p = ch[i].p;
    if ((rc = each_removed(s, &ch[i], unlink_rel, NULL))) return rc;
    if (p && p->fresh) {
      NpkFile *f = p->seg[0].file;
      char *dst = npk_path(st->dir, p->data_file);
      if (!dst) return npk_err(&s->err, NPK_NOMEM, "out of memory");
      rc = npk_io_rename(st, f->rel, p->data_file, &s->err);
      if (rc) {
        npk_free(dst);
        return rc;
      }
      npk_file_rename(st, f, dst);
      f->temp = 0;
    }
  }
  return NPK_OK;
}

/* Encode the transaction's catalog: the store's image of the committed one
** patched where arrays changed rows (no copy of it, no encoding of every
** array), else every array encoded into CI.  The bytes to write in *PP,
** *PN. */
static int encode_catalog(NpkSession *s, CatImage *ci, const unsigned char **pp,
                          size_t *pn) {
  NpkStore *st = s->store;
  NpkCatalog *cat = &s->txn->cat;
  int rc;
  if (ci->suffix) {
    *pp = ci->img.p;
    *pn = ci->img.n;
    return NPK_OK;
  }
  rc = st->img_ok ? npk_catalog_patch(&st->cat, cat, &st->img, &st->img_off,
                                      ci->pos, ci->npos)
                  : NPK_ERROR;
  if (rc == NPK_OK) {
    ci->patched = 1;
    *pp = st->img.p;
    *pn = st->img.n;
    return NPK_OK;
  }
  if (rc == NPK_NOMEM) return npk_err(&s->err, NPK_NOMEM, "out of memory");
  ci->off = npk_malloc((size_t)(cat->n ? cat->n : 1) * sizeof *ci->off);
  if (!ci->off || npk_catalog_encode_at(cat, &ci->img, ci->off))
    return npk_err(&s->err, NPK_NOMEM, "out of memory");
  *pp = ci->img.p;
  *pn = ci->img.n;
  return NPK_OK;
}

/* Step 5 for a catalog patched in place: the runs of the patched image
** and the entries of added arrays after the old end, or the runs of the new
** encoding (CI->suffix) and the file cut to its length; then a
** modification time after the one held, synced.  The time is what
** tells other processes, which hold the same file open, that it changed
** (npk_store_refresh compares inode, length and time): set explicitly, it
** differs even where the file system's clock is coarser than the commits
** are apart. */
static int write_catalog_inplace(NpkSession *s, CatImage *ci, int *pwhole) {
  NpkStore *st = s->store;
  /* The bytes the runs come from: the store's image, patched, or the new
  ** encoding whole. */
  const NpkBuf *img = ci->suffix ? &ci->img : &st->img;
  struct timespec times[2];
  struct stat sb;
  char *path = npk_path(st->dir, NPK_CATALOG);
  int rc = NPK_OK;
  *pwhole = 0;
  if (!path) return npk_err(&s->err, NPK_NOMEM, "out of memory");
  /* The descriptor of an earlier commit serves while it is the held file,
  ** which catalog_plan found at the catalog's name. */
  if (st->cat_wfd < 0 || st->cat_wino != st->cat_st.st_ino ||
      st->cat_wdev != st->cat_st.st_dev) {
    int fd;
    if (st->cat_wfd >= 0) close(st->cat_wfd);
    st->cat_wfd = -1;
    rc = npk_io_open(st, NPK_CATALOG, O_RDWR, &fd, &s->err);
    if (rc == NPK_OK &&
        (fstat(fd, &sb) != 0 || sb.st_ino != st->cat_st.st_ino ||
         sb.st_dev != st->cat_st.st_dev)) {
      close(fd);
      rc = npk_err(&s->err, NPK_BUSY, "%s/%s changed during a commit", st->dir,
                   NPK_CATALOG);
    }
    if (rc == NPK_OK) {
      st->cat_wfd = fd;
      st->cat_wino = sb.st_ino;
      st->cat_wdev = sb.st_dev;
    }
  }
  for (int i = 0; i < ci->nrun && rc == NPK_OK; i++) {
    size_t lo, len;
    if (run_within(&ci->runs[i], img->n, &lo, &len))
      rc = npk_io_pwrite(st, st->cat_wfd, img->p + lo, len, lo, path, &s->err);
  }
  if (rc == NPK_OK && ci->tail)
    rc = npk_io_pwrite(st, st->cat_wfd, st->img.p + ci->tail,
                       st->img.n - ci->tail, ci->tail, path, &s->err);
  if (rc == NPK_OK && ci->suffix && img->n < st->img.n)
    rc = npk_io_ftruncate(st, st->cat_wfd, img->n, path, &s->err);
  if (rc == NPK_OK) {
    clock_gettime(CLOCK_REALTIME, &times[1]);
    pthread_mutex_lock(&st->mu);
    if (times[1].tv_sec < st->cat_st.st_mtim.tv_sec ||
        (times[1].tv_sec == st->cat_st.st_mtim.tv_sec &&
         times[1].tv_nsec <= st->cat_st.st_mtim.tv_nsec)) {
      times[1] = st->cat_st.st_mtim;
      if (++times[1].tv_nsec == 1000000000) {
        times[1].tv_sec++;
        times[1].tv_nsec = 0;
      }
    }
    pthread_mutex_unlock(&st->mu);
    times[0].tv_sec = 0;
    times[0].tv_nsec = UTIME_OMIT;
    if (futimens(st->cat_wfd, times) != 0) {
      rc = npk_err_sys(&s->err, errno, "cannot set the time of", path);
    } else if (st->exact_mtime) {
      /* A file system keeps one resolution: the file is the held one, of
      ** the image's length and the time just set. */
      pthread_mutex_lock(&st->mu);
      sb = st->cat_st;
      pthread_mutex_unlock(&st->mu);
      sb.st_size = (off_t)img->n;
      sb.st_mtim = times[1];
      ci->sb = sb;
    } else if (fstat(st->cat_wfd, &sb) != 0) {
      rc = npk_err_sys(&s->err, errno, "cannot stat", path);
    } else {
      ci->sb = sb;
      /* Kept exactly, a time proves nanoseconds only when no coarser
      ** resolution could have kept it: resolutions divide a second
      ** (2^a 5^b ns), so its nanoseconds must be prime to 10.  A whole
      ** microsecond, kept on a file system of microseconds, would
      ** otherwise let later commits miss a time that did not move. */
      st->exact_mtime = sb.st_mtim.tv_sec == times[1].tv_sec &&
                        sb.st_mtim.tv_nsec == times[1].tv_nsec &&
                        times[1].tv_nsec % 2 != 0 && times[1].tv_nsec % 5 != 0;
    }
  }
  /* A file system that keeps times coarser than the one set (seconds,
  ** tens of milliseconds) may have kept the time held: other processes
  ** would see no change.  This commit then replaces the file whole (the
  ** journaled runs undo it as well, the new file having the same bytes
  ** at the same places), and later ones do from the start. */
  if (rc == NPK_OK && (sb.st_mtim.tv_sec != times[1].tv_sec ||
                       sb.st_mtim.tv_nsec != times[1].tv_nsec)) {
    st->coarse_mtime = 1;
    *pwhole = sb.st_mtim.tv_sec == st->cat_st.st_mtim.tv_sec &&
              sb.st_mtim.tv_nsec == st->cat_st.st_mtim.tv_nsec;
  }
  if (rc == NPK_OK) rc = npk_io_fsync(st, st->cat_wfd, path, &s->err);
  npk_free(path);
  return rc;
}

/* Encode what step 5 writes, before any file changes: the bitmaps into
** CH[i].bm_img and the catalog into CI (*PP, *PN). */
static int encode_catalog_files(NpkSession *s, Change *ch, int n, CatImage *ci,
                                const unsigned char **pp, size_t *pn) {
  for (int i = 0; i < n; i++) {
    if (!ch[i].bm_write || !ch[i].p || !ch[i].p->bm || ch[i].bm_inplace)
      continue;
    if (npk_bm_encode(ch[i].p->bm, &ch[i].bm_img))
      return npk_err(&s->err, NPK_NOMEM, "out of memory");
  }
  return encode_catalog(s, ci, pp, pn);
}

/* Write X's bitmap in place (bitmap_plan): the runs that change, synced;
** X->bm_new receives the file written. */
static int patch_bitmap(NpkSession *s, Change *x) {
  NpkStore *st = s->store;
  struct stat sb;
  size_t at = 0;
  char *path = npk_path(st->dir, x->bm_rel);
  int fd = x->bm_fd, rc = NPK_OK;
  if (!path) return npk_err(&s->err, NPK_NOMEM, "out of memory");
  /* Not kept open since its bytes were checked: the file the journal's
  ** records are for is opened again. */
  if (fd < 0) rc = open_bitmap(s, x, &fd, &s->err);
  for (int k = 0; k < x->bm_nrun && rc == NPK_OK; k++) {
    rc = npk_io_pwrite(st, fd, x->bm_img.p + at, x->bm_runs[k].len,
                       x->bm_runs[k].lo, path, &s->err);
    at += x->bm_runs[k].len;
  }
  if (rc == NPK_OK) rc = npk_io_fsync(st, fd, path, &s->err);
  if (rc == NPK_OK && fstat(fd, &sb) == 0) npk_file_id_set(&x->bm_new, &sb);
  if (fd >= 0 && fd != x->bm_fd) close(fd);
  close_bitmap(x);
  npk_free(path);
  return rc;
}

/* Step 5: bitmaps and catalog (IMG, NIMG), as encode_catalog_files made
** them: the catalog patched in place (CI->inplace) or replaced; the
** directory synced if a name in it changed in step 4 or here. */
static int write_catalog(NpkSession *s, Change *ch, int n, CatImage *ci,
                         const unsigned char *img, size_t nimg) {
  NpkStore *st = s->store;
  int rc = NPK_OK, names = !ci->inplace;
  for (int i = 0; i < n && rc == NPK_OK; i++) {
    Change *x = &ch[i];
    struct stat sb;
    NpkErr ignored;
    names |= (x->bm_write && !x->bm_inplace) || x->drop_c_files ||
             (x->p && x->p->fresh);
    if (!x->bm_write) continue;
    if (x->bm_inplace) {
      rc = patch_bitmap(s, x);
    } else if (x->p && x->p->bm) {
      rc =
          npk_io_replace_file(st, x->bm_rel, x->bm_img.p, x->bm_img.n, &s->err);
      /* Known, the next commit can patch it in place. */
      if (rc == NPK_OK && npk_io_lstat(st, x->bm_rel, &sb, &ignored) == NPK_OK)
        npk_file_id_set(&x->bm_new, &sb);
    } else {
      rc = npk_io_unlink(st, x->bm_rel, &s->err);
    }
  }
  if (rc == NPK_OK && ci->inplace) {
    int whole;
    rc = write_catalog_inplace(s, ci, &whole);
    if (rc == NPK_OK && whole) {
      ci->inplace = 0;
      names = 1;
    }
  }
  if (rc == NPK_OK && !ci->inplace)
    rc = npk_io_replace_file(st, NPK_CATALOG, img, nimg, &s->err);
  if (rc == NPK_OK && names) rc = npk_io_fsync(st, st->dirfd, st->dir, &s->err);
  if (rc == NPK_OK) rc = sync_subdirs(s, ch, n);
  return rc;
}

/* After the commit point: the pending arrays become the committed state. */
static void adopt(NpkSession *s, Change *ch, int n, CatImage *ci) {
  NpkStore *st = s->store;
  NpkTxn *t = s->txn;
  NpkCatalog old;
  /* Under the store's mutex from here: retired overlays join the list that
  ** readers of other threads change, and file sizes are what they read. */
  pthread_mutex_lock(&st->mu);
  for (int i = 0; i < n; i++) {
    NpkArray *p = ch[i].p;
    if (!p || !p->pending) continue;
    p->pending = 0;
    p->fresh = 0;
    p->base_rows = p->shape[0];
    npk_ov_free(st, p->ov);
    p->ov = NULL;
    p->bm_dirty = 0;
    p->has_bm_file = p->bm != NULL;
    if (ch[i].bm_write) p->bm_id = ch[i].bm_new;
    if (p->nseg == 1)
      npk_file_set_size(p->seg[0].file, p->shape[0] * p->row_bytes);
  }
  for (int i = 0; i < t->ngrown; i++) t->grown[i]->grown = 0;
  old = st->cat;
  st->cat = t->cat;
  memset(&t->cat, 0, sizeof t->cat);
  npk_catalog_retire(st, &old, t->cat_note);
  t->cat_note = NULL;
  st->cat_gen++;
  /* A catalog patched in place is the file already held: only its bytes,
  ** length and time, which the commit set, changed. */
  if (ci->inplace && st->cat_fd >= 0) st->cat_st = ci->sb;
  else npk_store_hold_catalog(st);
  if (!ci->patched) {
    npk_buf_free(&st->img);
    st->img = ci->img;
    memset(&ci->img, 0, sizeof ci->img);
    npk_free(st->img_off);
    st->img_off = ci->off;
    ci->off = NULL;
  }
  st->img_ok = 1;
  ci->patched = 0;
  pthread_mutex_unlock(&st->mu);
  /* npk_store_stats reads the counters in any thread, at any time. */
  __atomic_fetch_add(&st->stats.rows_appended, t->counts.appended,
                     __ATOMIC_RELAXED);
  __atomic_fetch_add(&st->stats.rows_replaced, t->counts.replaced,
                     __ATOMIC_RELAXED);
  __atomic_fetch_add(&st->stats.rows_deleted, t->counts.deleted,
                     __ATOMIC_RELAXED);
  __atomic_fetch_add(&st->stats.commits, 1, __ATOMIC_RELAXED);
}

int npk_commit(NpkSession *s) {
  NpkStore *st = s->store;
  NpkTxn *t = s->txn;
  Change *ch = NULL;
  NpkBuf jr = {0};
  CatImage ci;
  const unsigned char *img = NULL;
  size_t nimg = 0;
  int n = 0, rc = NPK_OK, journaled = 0, reserved = 0, fast = 0, linked = 0;
  int more = 0;
  RowsJournal rows = {0};
  uint64_t now, jsize = 0;
  uint64_t fsyncs = __atomic_load_n(&st->stats.fsyncs, __ATOMIC_RELAXED);

  if (!t) return npk_err(&s->err, NPK_MISUSE, "commit without a transaction");
  memset(&ci, 0, sizeof ci);
  s->err.rc = NPK_OK;
  if (t->nsp) npk_release(s, 0);
  rc = plan(s, &ch, &n, &fast);
  npk_test_plan_point();
  /* Past the commit point nothing may fail, letting go of the catalog the
  ** commit replaces included. */
  if (rc == NPK_OK && !t->cat_note && !(t->cat_note = npk_retire_note()))
    rc = npk_err(&s->err, NPK_NOMEM, "out of memory");
  /* A catalog that gave an array a data file of another name (a crafted
  ** one) may clash with the file a new array is about to take.  Only new
  ** files can clash: the committed catalog passed this check when read. */
  for (int i = 0; i < n && rc == NPK_OK; i++) {
    if (!ch[i].p || !ch[i].p->fresh) continue;
    rc = npk_catalog_check_new_file(&t->cat, ch[i].p, "cannot commit", &s->err);
  }
  if (rc) goto fail_open;
  if (n == 0) {
    /* Nothing to commit; rows appended then rolled back to a savepoint
    ** may still lengthen a file. */
    rc = cut_tails(s, NULL, 0);
    txn_end(s);
    goto done;
  }
  /* Waiting for readers can fail with BUSY: the transaction stays open. */
  rc = npk_lock_to(s, NPK_LOCK_EXCLUSIVE, &s->err);
  if (rc) goto fail_open;

  now = npk_now_us();
  for (int i = 0; i < n; i++)
    if (ch[i].p && ch[i].p->pending) ch[i].p->mtime = now;
  rc = catalog_plan(s, ch, n, fast, &ci);
  for (int i = 0, held = 0; i < n && rc == NPK_OK; i++)
    rc = bitmap_plan(s, &ch[i], &held);
  if (rc) goto fail_open;

  /* Everything the commit allocates much of is made before the first file
  ** changes, and the rest comes from a reserve that outlasts the backend:
  ** once files change, the commit completes or puts them back, out of
  ** memory or not.  The reserve holds the small things (paths, names) and
  ** the journal read back to undo. */
  /* Room for the journal's header, filled in by npk_journal_write; the
  ** catalog's old bytes are journaled before encode_catalog_files patches
  ** the store's image of it. */
  npk_buf_put(&jr, NULL, NPK_JOURNAL_HEADER);
  rc = build_journal(s, ch, n, &ci, &jr, &more);
  rows.s = s;
  rows.ch = ch;
  rows.n = n;
  if (rc == NPK_OK) rc = encode_catalog_files(s, ch, n, &ci, &img, &nimg);
  /* catalog_plan checked that the patch applies. */
  if (rc == NPK_OK && ci.inplace && !ci.patched && !ci.suffix)
    rc = npk_err(&s->err, NPK_ERROR, "cannot patch the catalog of %s", st->dir);
  if (rc == NPK_OK) {
    /* Playback reads the journal a window at a time: a journal written
    ** in pieces needs one window, not its length. */
    rc = npk_reserve_begin(NPK_COMMIT_RESERVE + 2 * jr.n +
                           (more ? NPK_JOURNAL_PIECE : 0));
    if (rc) rc = npk_err(&s->err, rc, "out of memory");
    else reserved = 1;
  }
  if (rc) goto fail_open;

  npk_test_crash_point(1);
  rc = npk_lock_mark(s, 1);
  if (rc) goto fail_open;
  /* The backups must be on disk before the files they keep are replaced:
  ** made before the journal, they are synced by its directory sync. */
  rc = each_backed_up(s, ch, n, !ci.inplace, link_backup, &linked);
  if (rc == NPK_OK && linked) rc = sync_subdirs(s, ch, n);
  npk_test_crash_point(2);
  if (rc == NPK_OK)
    rc = npk_journal_write(st, &jr, more ? journal_more : NULL, &rows,
                           linked > 0, &jsize, &s->err);
  if (rc) goto fail_open;
  journaled = 1;
  npk_test_crash_point(3);
  if (rc == NPK_OK) rc = write_data(s, ch, n);
  if (rc == NPK_OK) rc = cut_tails(s, ch, n);
  npk_test_crash_point(4);
  if (rc == NPK_OK) rc = move_data(s, ch, n);
  npk_test_crash_point(5);
  if (rc == NPK_OK) rc = write_catalog(s, ch, n, &ci, img, nimg);
  npk_test_crash_point(6);
  if (rc == NPK_OK) {
    int gone;
    rc = npk_journal_delete(st, jsize, &gone, &s->err);
    /* Once the journal is gone the commit has happened and cannot be
    ** undone; reporting a failed directory sync as an error would only make
    ** SQLite roll back its side of a transaction whose store side stands. */
    if (rc && !gone) goto fail_applied;
    rc = NPK_OK;
    npk_lock_mark(s, 0);
    t->marked = 0; /* the new files are in place: nothing for txn_end */
  } else {
    goto fail_applied;
  }
  npk_test_crash_point(7);
  drop_backups(s, ch, n, !ci.inplace);
  npk_test_crash_point(8);
  __atomic_store_n(
      &st->stats.last_commit_fsyncs,
      __atomic_load_n(&st->stats.fsyncs, __ATOMIC_RELAXED) - fsyncs,
      __ATOMIC_RELAXED);
  adopt(s, ch, n, &ci);
  txn_end(s);
  goto done;

fail_applied:
  /* Files may be half changed: put them back from the journal now.  The
  ** pending state no longer matches the files, so the transaction ends. */
  {
    NpkErr keep = s->err, e2 = {0};
    if (npk_journal_recover(st, &e2) == NPK_OK) {
      npk_lock_mark(s, 0);
    } else {
      pthread_mutex_lock(&st->mu);
      if (st->cat_fd >= 0) close(st->cat_fd);
      st->cat_fd = -1; /* force a reload once the journal is played */
      pthread_mutex_unlock(&st->mu);
    }
    npk_rollback(s);
    s->err = keep;
  }
  goto done;
fail_open:
  if (journaled) goto fail_applied;
  if (s->txn && s->lock == NPK_LOCK_EXCLUSIVE) {
    /* The failure that stopped the commit is the one to report, whatever
    ** the way down meets. */
    NpkErr keep = s->err;
    drop_backups(s, ch, n, !ci.inplace);
    /* No journal was written; the new files are still there. */
    npk_lock_mark(s, t->marked ? NPK_MARK_NEWFILES : 0);
    npk_lock_to(s, NPK_LOCK_RESERVED, &s->err);
    s->err = keep;
  }
done:
  for (int i = 0; i < n; i++) {
    npk_free(ch[i].bm_rel);
    npk_buf_free(&ch[i].bm_img);
    npk_free(ch[i].bm_runs);
    npk_buf_free(&ch[i].bm_old);
    close_bitmap(&ch[i]);
  }
  npk_free(ch);
  npk_buf_free(&jr);
  npk_free(rows.rows);
  npk_buf_free(&ci.img);
  npk_free(ci.off);
  npk_free(ci.runs);
  npk_free(ci.pos);
  if (ci.patched) st->img_ok = 0;
  if (reserved) npk_reserve_end();
  return rc;
}

void npk_session_close(NpkSession *s) {
  if (!s) return;
  npk_free(s->scans);
  if (s->txn) npk_rollback(s);
  s->nread = 0;
  npk_unpin(s);
  npk_lock_release(s);
  if (s->lockfd >= 0) close(s->lockfd);
  npk_store_release(s->store);
  npk_free(s);
}
