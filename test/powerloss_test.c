/*
** powerloss_test.c — the commit protocol against simulated power loss.
**
** The crash harness (test/crash/) kills processes: whatever they wrote is
** still in the page cache and reaches the disk.  A power cut is harsher:
** writes not yet synced may be lost, reach the disk out of order or torn,
** and directory changes not followed by a directory sync may vanish.  As
** SQLite's crash VFS and the file-system checkers ALICE and CrashMonkey
** do, this program records every change the engine makes to a store's
** files (npk_test_record, in the test build of store_io.c), then builds
** from the recording many disk images "after a power cut", opens each with
** the engine as a writer would (which plays back a hot journal) and checks
** that the store holds exactly the state before or after the transaction
** that was being committed -- every array's shape, live rows and bytes --
** with no journal, backup or temporary file left.
**
** The model of a power cut at event K of the recording (events 0..K-1
** were made, none after):
**   - a file's writes and truncations before its last fsync are on disk;
**     of those after it, each is independently kept, lost, or torn: some
**     of its 512-byte sectors (counted from the start of the file) new,
**     the others as they were (zeros past the old end), the file's length
**     extended as if the write was kept.  Kept changes are applied in the
**     order they were made, so an earlier write may survive a later one.
**   - creates, renames, links and unlinks before the last sync of their
**     directory are on disk (each directory syncs alone: the store's, and
**     a subdirectory of segment files); of the others, a prefix survives
**     (the order a
**     journaling file system such as ext4 or XFS commits them in), or any
**     subset closed under dependence: one survives only with every earlier
**     unsynced one that names one of its files (POSIX without a directory
**     sync promises nothing more), or only the creates survive (a file's
**     fsync committing its own entry and nothing else: btrfs's log tree,
**     ext4's fast commits).  Which is drawn per image.
**   - a file's fsync is not assumed to make its directory entry durable,
**     and sectors never written read as zeros (no stale data of other
**     files: ext4's data=ordered); the disk honours fsync.  But in the
**     "stale" style (ext4 data=writeback, ext3 writeback: a file's new
**     length and blocks may be committed before its data): every unsynced
**     change is kept, and the sectors of a file past its durable length
**     (its length at its last fsync, or less if cut since) read as the
**     bytes at the same offsets of the largest file removed earlier in
**     the recording (unlinked, replaced by a rename, or the part of one
**     cut off by a truncation) -- such as a journal.
** Cuts are made just before and just after every sync and at random
** points; each cut is combined with random choices, with "everything
** unsynced lost", "everything kept" and "only the creates".  Every few
** images with a hot journal are cut again, at the same kinds of points,
** while that journal is played back; every few recovered stores also take
** a commit, read back after reopening.
**
** A failure prints the operations that produced it, minimised (operations
** dropped while some image still fails), and the recording with the fate
** of each event in the failing image.
**
**   POWERLOSS_IMAGES  images to check in all (default 0: for every
**                     scenario, one per sync point and style, and some of
**                     their playbacks cut again: about 9,400)
**   POWERLOSS_SEED    seed (default: from the clock, printed)
**   POWERLOSS_RANDOM  1: random operation sequences too (make stress)
**   POWERLOSS_ONLY    run only the scenarios whose name contains this
*/
#include <stdarg.h>
#include <sys/stat.h>

#include "store_testutil.h"

/* ---- scenarios: operation lists ----------------------------------------- */

/* One operation, as text: "op:array:n:m".  Operations outside "+" ... "."
** are transactions of their own (as every write call is).
**   new:x:n    save a new array x of n rows     app:x:n     append n rows
**   save:x:n   save over x with n rows          rep:x:r     replace row r
**   del:x:r    delete row r                     cmp:x       compact
**   clone:x:y  clone x as y                     drop:x      drop
**   reset      drop every array                 big:x       save x, 1 MiB + 1 KiB
**   bigrep:x   replace every row of a big:x array in place
**   +  begin   .  commit   S  savepoint   R  roll back to it   E  release
*/
#define MAXTOK 64
typedef struct Scen {
  const char *name;
  int n;
  char tok[MAXTOK][24];
} Scen;

static void scen_parse(Scen *sc, const char *name, const char *text) {
  const char *s = text;
  sc->name = name;
  sc->n = 0;
  while (*s && sc->n < MAXTOK) {
    size_t k = strcspn(s, " ");
    if (k) {
      snprintf(sc->tok[sc->n], sizeof sc->tok[0], "%.*s", (int)k, s);
      sc->n++;
    }
    s += k;
    while (*s == ' ') s++;
  }
}

static void scen_print(const Scen *sc) {
  printf("  operations:");
  for (int i = 0; i < sc->n; i++) printf(" %s", sc->tok[i]);
  printf("\n");
}

/* ---- the recording ------------------------------------------------------ */

typedef struct Ev {
  int kind;                  /* NPK_EV_* */
  char *name, *name2;        /* directory events */
  int id;                    /* file events: the file (model inode) */
  uint64_t off, len;
  unsigned char *data;       /* write: the bytes */
  int txn;                   /* transaction (1-based) it belongs to */
} Ev;

/* Subdirectories of a recorded store (those of segment files). */
#define MAXSUB 8

typedef struct Blob {
  unsigned char *p;
  size_t n, cap;
} Blob;

typedef struct Rec {
  char dir[1200];            /* the store being recorded */
  int on;
  int txn;
  Ev *ev;
  int n, cap;
  uint64_t *ino;             /* real inode of each model inode */
  int nid, idcap;
  /* The directory when recording began: names and their inodes, and the
  ** initial contents of those inodes. */
  int nname;
  char *name[TU_SNAP_MAX];
  int name_id[TU_SNAP_MAX];
  Blob *init;                /* per model inode (empty for created ones) */
  int nsub;
  char *sub[MAXSUB];         /* its subdirectories, relative */
} Rec;

static int rec_id(Rec *r, uint64_t ino, int fresh) {
  if (!fresh)
    for (int i = r->nid - 1; i >= 0; i--)
      if (r->ino[i] == ino) return i;
  if (r->nid == r->idcap) {
    r->idcap = r->idcap ? 2 * r->idcap : 32;
    r->ino = realloc(r->ino, (size_t)r->idcap * sizeof *r->ino);
    r->init = realloc(r->init, (size_t)r->idcap * sizeof *r->init);
  }
  r->ino[r->nid] = ino;
  memset(&r->init[r->nid], 0, sizeof(Blob));
  return r->nid++;
}

static int is_lock(const char *name) {
  return name && strcmp(name, TU_LOCK) == 0;
}

static void on_event(void *arg, const NpkIoEvent *e) {
  Rec *r = arg;
  Ev *v;
  if (!r->on || strcmp(e->dir, r->dir) != 0) return;
  if (is_lock(e->name) || is_lock(e->name2)) return;
  if (r->n == r->cap) {
    r->cap = r->cap ? 2 * r->cap : 256;
    r->ev = realloc(r->ev, (size_t)r->cap * sizeof *r->ev);
  }
  v = &r->ev[r->n];
  memset(v, 0, sizeof *v);
  v->kind = e->kind;
  v->txn = r->txn;
  v->off = e->off;
  v->len = e->len;
  v->id = -1;
  if (e->name) v->name = strdup(e->name);
  if (e->name2) v->name2 = strdup(e->name2);
  switch (e->kind) {
    case NPK_EV_CREATE:
      v->id = rec_id(r, e->ino, 1);
      break;
    case NPK_EV_WRITE:
      v->data = malloc(e->len ? e->len : 1);
      memcpy(v->data, e->data, e->len);
      /* fall through */
    case NPK_EV_TRUNCATE:
    case NPK_EV_FALLOCATE:
    case NPK_EV_FSYNC:
      v->id = rec_id(r, e->ino, 0);
      break;
  }
  r->n++;
}

static void rec_reset(Rec *r) {
  for (int i = 0; i < r->n; i++) {
    free(r->ev[i].name);
    free(r->ev[i].name2);
    free(r->ev[i].data);
  }
  for (int i = 0; i < r->nid; i++) free(r->init[i].p);
  for (int i = 0; i < r->nname; i++) free(r->name[i]);
  for (int i = 0; i < r->nsub; i++) free(r->sub[i]);
  r->n = r->nid = r->nname = r->nsub = 0;
  r->txn = 0;
  r->on = 0;
}

/* Free everything R holds, and zero it. */
static void rec_free(Rec *r) {
  rec_reset(r);
  free(r->ev);
  free(r->ino);
  free(r->init);
  memset(r, 0, sizeof *r);
}

/* The regular files of DIR/SUB (SUB "" for DIR itself; but the lock
** file) into R, named relative to DIR, and its subdirectories, one level
** down. */
static void rec_scan(Rec *r, const char *dir, const char *sub) {
  char here[1200];
  DIR *d;
  struct dirent *de;
  snprintf(here, sizeof here, "%s%s%s", dir, *sub ? "/" : "", sub);
  d = opendir(here);
  while (d && (de = readdir(d)) != NULL && r->nname < TU_SNAP_MAX) {
    struct stat sb;
    char rel[600];
    int id;
    snprintf(rel, sizeof rel, "%s%s%s", sub, *sub ? "/" : "", de->d_name);
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
        is_lock(rel) || lstat(P(dir, rel), &sb) != 0)
      continue;
    if (S_ISDIR(sb.st_mode) && !*sub && r->nsub < MAXSUB) {
      r->sub[r->nsub++] = strdup(rel);
      continue;
    }
    if (!S_ISREG(sb.st_mode)) continue;
    id = rec_id(r, (uint64_t)sb.st_ino, 0);
    if (!r->init[id].p) {
      r->init[id].p = tu_read_file(P(dir, rel), &r->init[id].n);
      r->init[id].cap = r->init[id].n;
    }
    r->name[r->nname] = strdup(rel);
    r->name_id[r->nname++] = id;
  }
  if (d) closedir(d);
}

/* Start recording DIR: its files (but the lock file) as they are now,
** also those of its subdirectories. */
static void rec_start(Rec *r, const char *dir) {
  rec_reset(r);
  snprintf(r->dir, sizeof r->dir, "%s", dir);
  rec_scan(r, dir, "");
  for (int i = 0, n = r->nsub; i < n; i++) rec_scan(r, dir, r->sub[i]);
  r->on = 1;
}

static const char *ev_kind(int k) {
  static const char *const names[] = {"?", "create", "write", "truncate",
                                      "fallocate", "fsync", "dirsync",
                                      "rename", "link", "unlink"};
  return k >= 1 && k <= 9 ? names[k] : "?";
}

/* ---- images ------------------------------------------------------------- */

/* What happened to each event in one image. */
#define F_CUT     '-'        /* after the cut: never made */
#define F_DURABLE 'D'        /* synced before the cut */
#define F_KEPT    'K'
#define F_LOST    'L'
#define F_TORN    'T'

typedef struct Image {
  int nname;
  char *name[TU_SNAP_MAX];
  int id[TU_SNAP_MAX];
  int nsub;
  char *const *sub;          /* subdirectories, the recording's */
  Blob *data;                /* per model inode */
  char *fate;                /* per event */
  /* ST_STALE: the removed bytes new sectors read as, from STALE_FROM on,
  ** once file STALE_ID's (-1: none yet). */
  Blob stale;
  uint64_t stale_from;
  int stale_id;
} Image;

static void blob_set_len(Blob *b, size_t n) {
  if (n > b->cap) {
    size_t cap = b->cap ? b->cap : 512;
    while (cap < n) cap *= 2;
    b->p = realloc(b->p, cap);
    b->cap = cap;
  }
  if (n > b->n) memset(b->p + b->n, 0, n - b->n);
  b->n = n;
}

static int img_find(const Image *m, const char *name) {
  for (int i = 0; i < m->nname; i++)
    if (!strcmp(m->name[i], name)) return i;
  return -1;
}

static void img_remove(Image *m, const char *name) {
  int i = img_find(m, name);
  if (i < 0) return;
  free(m->name[i]);
  m->nname--;
  m->name[i] = m->name[m->nname];
  m->id[i] = m->id[m->nname];
}

static void img_put(Image *m, const char *name, int id) {
  int i = img_find(m, name);
  if (i < 0) {
    if (m->nname == TU_SNAP_MAX) return;
    i = m->nname++;
    m->name[i] = strdup(name);
  }
  m->id[i] = id;
}

static void img_free(Image *m) {
  for (int i = 0; i < m->nname; i++) free(m->name[i]);
  m->nname = 0;
}

static void apply_dir(Image *m, const Ev *v) {
  int i;
  switch (v->kind) {
    case NPK_EV_CREATE:
      img_put(m, v->name, v->id);
      break;
    case NPK_EV_UNLINK:
      img_remove(m, v->name);
      break;
    case NPK_EV_RENAME:
      if ((i = img_find(m, v->name)) >= 0) {
        int id = m->id[i];
        img_remove(m, v->name);
        img_put(m, v->name2, id);
      }
      break;
    case NPK_EV_LINK:
      if ((i = img_find(m, v->name)) >= 0) img_put(m, v->name2, m->id[i]);
      break;
  }
}

/* Apply a write to B, whole or (TORN) sector by sector. */
static void apply_write(Blob *b, const Ev *v, int torn, uint64_t *rng) {
  uint64_t end = v->off + v->len;
  if (end > b->n) blob_set_len(b, (size_t)end);
  if (!torn) {
    memcpy(b->p + v->off, v->data, v->len);
    return;
  }
  for (uint64_t s = v->off / 512 * 512; s < end; s += 512) {
    uint64_t a = s < v->off ? v->off : s, z = s + 512 < end ? s + 512 : end;
    if (tu_rand(rng) & 1) memcpy(b->p + a, v->data + (a - v->off), z - a);
  }
}

static int is_dir_ev(int k) {
  return k == NPK_EV_CREATE || k == NPK_EV_RENAME || k == NPK_EV_LINK ||
         k == NPK_EV_UNLINK;
}

static int shares_name(const Ev *a, const Ev *b) {
  const char *x[2] = {a->name, a->name2}, *y[2] = {b->name, b->name2};
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 2; j++)
      if (x[i] && y[j] && !strcmp(x[i], y[j])) return 1;
  return 0;
}

/* Which directory of R holds NAME: 0 the store's own, K+1 subdirectory
** K, -1 one the recording does not know (never synced). */
static int dir_of(const Rec *r, const char *name, int whole) {
  const char *slash = whole ? NULL : strrchr(name, '/');
  size_t n = whole ? strlen(name) : slash ? (size_t)(slash - name) : 0;
  if (n == 0) return 0;
  for (int k = 0; k < r->nsub; k++)
    if (strlen(r->sub[k]) == n && !memcmp(r->sub[k], name, n)) return k + 1;
  return -1;
}

/* Whether directory event V of R was made durable by a sync of every
** directory it changed, LAST[d] being the last sync of directory d. */
static int dir_synced(const Rec *r, const Ev *v, int i, const int *last) {
  const char *names[2] = {v->name, v->name2};
  for (int k = 0; k < 2; k++) {
    int d = names[k] ? dir_of(r, names[k], 0) : 0;
    if (names[k] && (d < 0 || i > last[d])) return 0;
  }
  return 1;
}

/* Styles of choosing what an image keeps of the unsynced events. */
#define ST_RANDOM_PREFIX 0   /* data random; directory: a prefix */
#define ST_RANDOM_SUBSET 1   /* data random; directory: closed subset */
#define ST_ALL_LOST      2
#define ST_ALL_KEPT      3
#define ST_CREATES_ONLY  4   /* data kept; directory: the creates survive
                             ** (each with the earlier events on its
                             ** name), removals, renames and links are
                             ** lost, as when a file's fsync commits its
                             ** own entry and nothing else (btrfs's log,
                             ** ext4's fast commits) */
#define ST_STALE         5   /* all kept; sectors past a file's
                             ** durable length hold a removed file's
                             ** bytes (see the model above) */
#define NSTYLE           6

/* 1 if some name of M refers to file ID. */
static int img_holds(const Image *m, int id) {
  for (int i = 0; i < m->nname; i++)
    if (m->id[i] == id) return 1;
  return 0;
}

/* ST_STALE: the bytes of file ID from FROM on were freed (removed, or cut
** off).  The largest such piece is kept, the later one of equal size. */
static void stale_note(Image *m, int id, uint64_t from) {
  const Blob *b = &m->data[id];
  if (from >= b->n || b->n - from < m->stale.n - m->stale_from) return;
  m->stale.n = 0;
  blob_set_len(&m->stale, b->n);
  memcpy(m->stale.p, b->p, b->n);
  m->stale_from = from;
  m->stale_id = id;
}

/* ST_STALE: the sectors of file ID from DURABLE on (rounded up to a
** sector: the one holding the durable end was written whole) are new
** blocks, read as the removed bytes at the same offsets where there are
** some. */
static void stale_fill(Image *m, int id, uint64_t durable) {
  Blob *b = &m->data[id];
  uint64_t s = (durable + 511) / 512 * 512;
  if (s < m->stale_from) s = (m->stale_from + 511) / 512 * 512;
  for (; s < b->n && s < m->stale.n; s += 512) {
    uint64_t z = s + 512;
    if (z > b->n) z = b->n;
    if (z > m->stale.n) z = m->stale.n;
    memcpy(b->p + s, m->stale.p + s, z - s);
  }
}

/* Build the image of a cut at event CUT in M, drawing choices from RNG. */
static void img_build(const Rec *r, int cut, int style, uint64_t *rng,
                      Image *m) {
  int *lastsync = calloc((size_t)r->nid + 1, sizeof(int));
  uint64_t *durable = calloc((size_t)r->nid + 1, sizeof(uint64_t));
  char *synced = calloc((size_t)r->n + 1, 1);
  int prefix = -1, lastdir[MAXSUB + 1];
  img_free(m);
  m->stale.n = 0;
  m->stale_from = 0;
  m->stale_id = -1;
  m->nsub = r->nsub;
  m->sub = r->sub;
  for (int i = 0; i < r->nname; i++) img_put(m, r->name[i], r->name_id[i]);
  for (int i = 0; i < r->nid; i++) {
    m->data[i].n = 0;
    blob_set_len(&m->data[i], r->init[i].n);
    if (r->init[i].n) memcpy(m->data[i].p, r->init[i].p, r->init[i].n);
    lastsync[i] = -1;
    durable[i] = r->init[i].n;
  }
  for (int d = 0; d <= MAXSUB; d++) lastdir[d] = -1;
  for (int i = 0; i < cut; i++) {
    int d;
    if (r->ev[i].kind == NPK_EV_FSYNC) lastsync[r->ev[i].id] = i;
    if (r->ev[i].kind == NPK_EV_DIRSYNC &&
        (d = r->ev[i].name ? dir_of(r, r->ev[i].name, 1) : 0) >= 0)
      lastdir[d] = i;
  }
  for (int i = 0; i < cut; i++)
    if (is_dir_ev(r->ev[i].kind))
      synced[i] = (char)dir_synced(r, &r->ev[i], i, lastdir);
  if (style == ST_RANDOM_PREFIX) {
    int unsynced = 0;
    for (int i = 0; i < cut; i++)
      unsynced += is_dir_ev(r->ev[i].kind) && !synced[i];
    prefix = (int)(tu_rand(rng) % (uint64_t)(unsynced + 1));
  }
  for (int i = 0; i < r->n; i++) {
    const Ev *v = &r->ev[i];
    char f = F_CUT;
    if (i >= cut) {
      m->fate[i] = F_CUT;
      continue;
    }
    if (v->kind == NPK_EV_FSYNC || v->kind == NPK_EV_DIRSYNC) {
      f = F_DURABLE;
      if (v->kind == NPK_EV_FSYNC) durable[v->id] = m->data[v->id].n;
    } else if (is_dir_ev(v->kind)) {
      /* The file this event takes its last name from, if any. */
      int at = v->kind == NPK_EV_UNLINK   ? img_find(m, v->name)
               : v->kind == NPK_EV_RENAME ? img_find(m, v->name2)
                                          : -1;
      int gone = at >= 0 ? m->id[at] : -1;
      if (synced[i]) f = F_DURABLE;
      else if (style == ST_ALL_LOST) f = F_LOST;
      else if (style == ST_ALL_KEPT || style == ST_STALE) f = F_KEPT;
      else if (style == ST_RANDOM_PREFIX) f = prefix-- > 0 ? F_KEPT : F_LOST;
      else {
        if (style == ST_CREATES_ONLY)
          f = v->kind == NPK_EV_CREATE ? F_KEPT : F_LOST;
        else
          f = tu_rand(rng) % 3 ? F_KEPT : F_LOST;
        /* Kept only with every earlier unsynced event on its names. */
        for (int j = 0; j < i && f == F_KEPT; j++)
          if (is_dir_ev(r->ev[j].kind) && m->fate[j] == F_LOST &&
              shares_name(&r->ev[j], v))
            f = F_LOST;
      }
      if (f != F_LOST) apply_dir(m, v);
      if (f != F_LOST && style == ST_STALE && gone >= 0 && !img_holds(m, gone))
        stale_note(m, gone, 0);
    } else {
      Blob *b = &m->data[v->id];
      if (i < lastsync[v->id]) f = F_DURABLE;
      else if (style == ST_ALL_LOST) f = F_LOST;
      else if (style == ST_ALL_KEPT || style == ST_CREATES_ONLY ||
               style == ST_STALE)
        f = F_KEPT;
      else {
        uint64_t x = tu_rand(rng) % 3;
        f = x == 0 ? F_LOST : x == 1 ? F_KEPT : F_TORN;
        if (f == F_TORN && v->kind != NPK_EV_WRITE) f = F_KEPT;
      }
      if (f != F_LOST) {
        if (v->kind == NPK_EV_WRITE) apply_write(b, v, f == F_TORN, rng);
        else if (v->kind == NPK_EV_TRUNCATE) {
          if (v->len < durable[v->id]) durable[v->id] = v->len;
          if (style == ST_STALE) stale_note(m, v->id, v->len);
          if (v->len < b->n) b->n = (size_t)v->len;
          else blob_set_len(b, (size_t)v->len);
        }
      }
    }
    m->fate[i] = f;
  }
  if (style == ST_STALE && m->stale_id >= 0)
    for (int i = 0; i < r->nid; i++) stale_fill(m, i, durable[i]);
  free(lastsync);
  free(durable);
  free(synced);
}

/* Write image M into directory DIR (created afresh); hard links stay
** links. */
static int img_write(const Image *m, const char *dir) {
  tu_rm_rf(dir);
  if (mkdir(dir, 0755) != 0) return -1;
  for (int i = 0; i < m->nsub; i++)
    if (mkdir(P(dir, m->sub[i]), 0755) != 0) return -1;
  for (int i = 0; i < m->nname; i++) {
    int j;
    for (j = 0; j < i && m->id[j] != m->id[i]; j++) {
    }
    if (j < i) {
      if (link(P(dir, m->name[j]), P(dir, m->name[i])) != 0) return -1;
    } else if (tu_write_file(P(dir, m->name[i]), m->data[m->id[i]].p,
                             m->data[m->id[i]].n) != 0) {
      return -1;
    }
  }
  return 0;
}

static void img_describe(const Rec *r, const Image *m, int cut) {
  printf("  power cut before event %d of %d; events (D synced, K kept, "
         "L lost, T torn, - after the cut):\n", cut, r->n);
  for (int i = 0; i < r->n; i++) {
    const Ev *v = &r->ev[i];
    printf("    %3d %c txn %d %-9s", i, m->fate[i], v->txn, ev_kind(v->kind));
    if (v->name) printf(" %s", v->name);
    if (v->name2) printf(" -> %s", v->name2);
    if (v->id >= 0) printf(" file#%d", v->id);
    if (v->kind == NPK_EV_WRITE || v->kind == NPK_EV_FALLOCATE)
      printf(" [%llu, +%llu)", (unsigned long long)v->off,
             (unsigned long long)v->len);
    if (v->kind == NPK_EV_TRUNCATE)
      printf(" to %llu", (unsigned long long)v->len);
    printf("\n");
  }
  if (m->stale_id >= 0)
    printf("  new sectors read as the bytes from %llu on of file#%d, "
           "removed\n", (unsigned long long)m->stale_from, m->stale_id);
  printf("  files in the image:");
  for (int i = 0; i < m->nname; i++)
    printf(" %s(#%d, %zu bytes)", m->name[i], m->id[i],
           m->data[m->id[i]].n);
  printf("\n");
}

/* ---- running a scenario ------------------------------------------------- */

#define MAXSTATE (MAXTOK + 2)

typedef struct Run {
  Rec rec;
  Buf state[MAXSTATE];       /* dumps: state[0] before, state[t] after txn t */
  int ntxn;
  int commit_at[MAXSTATE];   /* event index of txn t's last sync (of its
                             ** commit point), -1 if none */
} Run;

static void fill_rows(unsigned char *p, size_t n, unsigned seed) {
  tu_fill(p, n, seed);
}

/* Row bytes of the arrays the scenarios make: int32 rows of 3. */
#define ROWB 12

/* ROWS rows made from SEED, written to NAME by WRITE (npk_save or
** npk_append). */
static int write_rows(int (*write)(NpkSession *, const char *, int, uint32_t,
                                   const uint64_t *, const void *),
                      NpkSession *s, const char *name, uint64_t rows,
                      unsigned seed) {
  uint64_t shape[2] = {rows, 3};
  unsigned char *p = malloc(rows * ROWB + 1);
  int rc;
  fill_rows(p, rows * ROWB, seed);
  rc = write(s, name, NPK_INT32, 2, shape, p);
  free(p);
  return rc;
}

static int save_array(NpkSession *s, const char *name, uint64_t rows,
                      unsigned seed) {
  return write_rows(npk_save, s, name, rows, seed);
}

/* Run one operation; NPK_OK or the engine's error. */
static int run_op(NpkSession *s, const char *tok, unsigned seed, int *sp) {
  char op[24], x[24] = "", y[24] = "";
  unsigned long long n = 0;
  int lvl;
  if (!strcmp(tok, "+")) return npk_begin(s);
  if (!strcmp(tok, ".")) return npk_commit(s);
  if (!strcmp(tok, "S")) {
    int rc = npk_savepoint(s, &lvl);
    if (rc == NPK_OK) *sp = lvl;
    return rc;
  }
  if (!strcmp(tok, "R")) return *sp < 0 ? NPK_MISUSE : npk_rollback_to(s, *sp);
  if (!strcmp(tok, "E")) {
    int rc = *sp < 0 ? NPK_MISUSE : npk_release(s, *sp);
    *sp = -1;
    return rc;
  }
  if (!strcmp(tok, "reset")) return npk_reset(s);
  if (sscanf(tok, "%23[a-z]:%23[a-z0-9]:%23[a-z0-9]", op, x, y) < 2)
    return NPK_MISUSE;
  n = strtoull(y, NULL, 10);
  if (!strcmp(op, "new") || !strcmp(op, "save"))
    return save_array(s, x, n, seed);
  if (!strcmp(op, "app")) return write_rows(npk_append, s, x, n, seed);
  if (!strcmp(op, "rep")) {
    unsigned char row[ROWB];
    uint64_t r = n;
    fill_rows(row, ROWB, seed);
    return npk_replace_rows(s, x, &r, 1, row);
  }
  if (!strcmp(op, "del")) {
    uint64_t r = n;
    return npk_delete_rows(s, x, &r, 1);
  }
  if (!strcmp(op, "cmp")) return npk_compact(s, x);
  if (!strcmp(op, "clone")) return npk_clone(s, x, y);
  if (!strcmp(op, "drop")) return npk_drop(s, x);
  if (!strcmp(op, "bigrep")) {
    /* Every row of an array made by "big" replaced in place: a journal
    ** of more than 1 MiB of rows, the same length each time. */
    uint64_t *rows = malloc(1025 * sizeof *rows);
    unsigned char *p = malloc(1025 * 1024);
    int rc;
    for (uint64_t r = 0; r < 1025; r++) rows[r] = r;
    fill_rows(p, 1025 * 1024, seed);
    rc = npk_replace_rows(s, x, rows, 1025, p);
    free(rows);
    free(p);
    return rc;
  }
  if (!strcmp(op, "big")) {
    /* Over the 1 MiB from which new files are reserved with fallocate. */
    uint64_t shape[2] = {1025, 1024};
    unsigned char *p = malloc(1025 * 1024);
    int rc;
    fill_rows(p, 1025 * 1024, seed);
    rc = npk_save(s, x, NPK_UINT8, 2, shape, p);
    free(p);
    return rc;
  }
  return NPK_MISUSE;
}

/* The base store every scenario starts from: a (8 rows), b (5 rows, row 1
** deleted), c (4 rows, appended to once so that its file grew). */
static int make_base(NpkSession *s) {
  uint64_t r = 1;
  int rc = save_array(s, "a", 8, 1);
  if (rc == NPK_OK) rc = save_array(s, "b", 5, 2);
  if (rc == NPK_OK) rc = npk_delete_rows(s, "b", &r, 1);
  if (rc == NPK_OK) rc = save_array(s, "c", 2, 3);
  if (rc == NPK_OK) rc = run_op(s, "app:c:2", 4, &(int){-1});
  return rc;
}

/* Scenarios named "segdir_..." keep the segment files of s in this
** subdirectory of the store, which syncs apart from the store's own. */
#define SEGDIR "segs"
static int seg_in_dir;       /* the scenario being run is one of them */

/* For scenarios named "seg_..." and "segdir_...": a store written by hand,
** as NumPack writes one, holding a (8 rows), b (5 rows, row 1 deleted) and
** s, an int64 array of 5 rows in two segment files named by a .npkseg
** manifest. */
static void make_seg_base(const char *dir) {
  unsigned char a[8 * ROWB], b[5 * ROWB], live[5] = {1, 0, 1, 1, 1};
  CatEntry e[3];
  Buf cat = {0}, bm = {0};
  fill_rows(a, sizeof a, 1);
  fill_rows(b, sizeof b, 2);
  memset(e, 0, sizeof e);
  e[0].name = "a"; e[0].ndim = 2; e[0].dims[0] = 8; e[0].dims[1] = 3;
  e[0].dtype = NPK_INT32; e[0].mtime = 1700000000000000ull;
  e[1].name = "b"; e[1].ndim = 2; e[1].dims[0] = 5; e[1].dims[1] = 3;
  e[1].dtype = NPK_INT32; e[1].mtime = 1700000000000001ull;
  e[2] = tu_seg_entry();
  mkdir(dir, 0755);
  tu_cat_build(&cat, e, 3, NULL);
  tu_write_buf(P(dir, TU_CATALOG), &cat);
  tu_write_file(P(dir, "data_a.npkd"), a, sizeof a);
  tu_write_file(P(dir, "data_b.npkd"), b, sizeof b);
  tu_bitmap_build(&bm, live, 5);
  tu_write_buf(P(dir, "deleted_b.npkb"), &bm);
  tu_seg_write(dir);
  if (seg_in_dir) tu_seg_into(dir, SEGDIR);
  buf_free(&cat);
  buf_free(&bm);
}

static char workdir[1024];

/* Make the base store in DIR and record SC on it into RUN.  Returns
** NPK_OK, or the error of an operation that failed (the scenario is then
** not one the engine accepts). */
static int record(const Scen *sc, const char *dir, Run *run) {
  NpkStore *st = NULL;
  NpkSession *s = NULL;
  char *err = NULL;
  int rc, in_txn = 0, sp = -1, t;
  /* "nolinks_" runs the scenario after it on a file system without hard
  ** links: every backup is a copy. */
  int nolinks = strncmp(sc->name, "nolinks_", 8) == 0;
  const char *base = sc->name + (nolinks ? 8 : 0);
  int seg = strncmp(base, "seg", 3) == 0;
  /* "tail_": a's data file has bytes past its rows, more than the
  ** scenario appends, so a commit cuts it below its old length. */
  int tail = strncmp(base, "tail_", 5) == 0;
  npk_test_no_links(nolinks);
  seg_in_dir = strncmp(base, "segdir_", 7) == 0;
  tu_rm_rf(dir);
  if (seg) make_seg_base(dir);
  rc = npk_store_open(dir, seg ? 0 : NPK_OPEN_CREATE, &st, &err);
  free(err);
  if (rc) return rc;
  if ((rc = npk_session_open(st, &s))) goto out;
  if (!seg && (rc = make_base(s))) goto out;
  if (tail) {
    tu_close(st, s);
    s = NULL;
    if (tu_append_junk(P(dir, "data_a.npkd"), 5 * ROWB) != 0) rc = NPK_IOERR;
    err = NULL;
    if (rc == NPK_OK) rc = npk_store_open(dir, 0, &st, &err);
    free(err);
    if (rc || (rc = npk_session_open(st, &s))) goto out;
  }
  for (t = 0; t < MAXSTATE; t++) {
    run->state[t].n = 0;
    run->commit_at[t] = -1;
  }
  if ((rc = tu_dump(s, &run->state[0], 1))) goto out;
  run->ntxn = 0;
  rec_start(&run->rec, dir);
  npk_test_record(on_event, &run->rec);
  for (int i = 0; i < sc->n && rc == NPK_OK; i++) {
    const char *tok = sc->tok[i];
    int ends = 0;
    if (!in_txn) run->rec.txn = run->ntxn + 1;
    rc = run_op(s, tok, 1000u + (unsigned)i, &sp);
    if (!strcmp(tok, "+")) in_txn = 1;
    else if (!strcmp(tok, ".")) in_txn = 0, ends = 1, sp = -1;
    else if (!in_txn) ends = 1;
    if (rc == NPK_OK && ends) {
      run->ntxn++;
      rc = tu_dump(s, &run->state[run->ntxn], 1);
    }
  }
  if (rc == NPK_OK && in_txn) {
    rc = npk_commit(s);
    run->ntxn++;
    if (rc == NPK_OK) rc = tu_dump(s, &run->state[run->ntxn], 1);
  }
  run->rec.on = 0;
  /* A commit's last sync makes its commit point durable: the journal's
  ** file synced with its magic zeroed, or the directory synced without the
  ** journal's name. */
  for (int i = 0; i < run->rec.n; i++)
    if (run->rec.ev[i].kind == NPK_EV_DIRSYNC ||
        run->rec.ev[i].kind == NPK_EV_FSYNC)
      run->commit_at[run->rec.ev[i].txn] = i;
  /* A transaction that committed nothing changed nothing: it is done when
  ** the one before it is. */
  for (t = 1; t <= run->ntxn; t++)
    if (run->commit_at[t] < run->commit_at[t - 1])
      run->commit_at[t] = run->commit_at[t - 1];
out:
  npk_test_record(NULL, NULL);
  run->rec.on = 0;
  tu_close(st, s);
  return rc;
}

/* Which of the states an image cut at CUT may hold: [*LO, *HI]. */
static void allowed(const Run *run, int cut, int *lo, int *hi) {
  int t = 0;
  for (int k = 1; k <= run->ntxn; k++)
    if (run->commit_at[k] < cut) t = k;
  *lo = t;
  *hi = t < run->ntxn ? t + 1 : t;
}

typedef struct Counts {
  long images;               /* images checked */
  long before, after;        /* holding the state before or after the
                             ** transaction they were cut in */
  long recovered;            /* playing back a hot journal */
  long nested;               /* cut again during that playback */
  long failed;               /* inconsistent */
} Counts;

/* tu_leftovers() passes the files of the segmented array "s" of
** make_seg_base(): they must be there exactly while s is segmented. */
static int seg_files_ok(NpkSession *s, const char *dir) {
  const char *const files[] = {
      "data_s.npkseg", seg_in_dir ? SEGDIR "/seg_s_0.bin" : "seg_s_0.bin",
      seg_in_dir ? SEGDIR "/seg_s_1.bin" : "seg_s_1.bin"};
  NpkArrayInfo info;
  int want = 0;
  if (npk_read_begin(s) != NPK_OK) return 0;
  want = npk_array_info(s, "s", &info) == NPK_OK && info.segmented;
  npk_read_end(s);
  for (int i = 0; i < 3; i++)
    if (tu_exists(P(dir, files[i])) != want) {
      printf("  %s %s\n", files[i], want ? "is missing" : "is left over");
      return 0;
    }
  return 1;
}

/* The recovered store in DIR (open as ST, S) takes a commit: a row
** appended to its first array is there when the store is opened again,
** with no journal left.  1 if so. */
static int write_after(NpkStore *st, NpkSession *s, const char *dir,
                       int verbose) {
  NpkArrayInfo info;
  NpkStore *st2 = NULL;
  NpkSession *s2 = NULL;
  unsigned char *row;
  const void *got = NULL;
  uint64_t shape[NPK_MAX_NDIM], rows;
  char name[300], *err = NULL;
  int n = 0, ok = 0;
  (void)st;
  if (npk_array_count(s, &n) != NPK_OK || n == 0) return 1;
  if (npk_array_info_at(s, 0, &info) != NPK_OK) return 0;
  snprintf(name, sizeof name, "%s", info.name);
  rows = info.rows;
  memcpy(shape, info.shape, sizeof shape);
  shape[0] = 1;
  row = malloc(info.row_bytes + 1);
  memset(row, 0xA5, info.row_bytes);
  if (npk_append(s, name, info.dtype, info.ndim, shape, row) != NPK_OK) {
    if (verbose) printf("  a commit after recovery fails: %s\n",
                        npk_errmsg(s));
    goto out;
  }
  if (npk_store_open(dir, 0, &st2, &err) != NPK_OK ||
      npk_session_open(st2, &s2) != NPK_OK || npk_read_begin(s2) != NPK_OK) {
    if (verbose) printf("  reopening after a commit fails\n");
    goto out;
  }
  ok = npk_array_info(s2, name, &info) == NPK_OK && info.rows == rows + 1 &&
       npk_row_ptr(s2, name, rows, &got) == NPK_OK &&
       memcmp(got, row, info.row_bytes) == 0 &&
       !tu_journal_hot(dir);
  npk_read_end(s2);
  if (!ok && verbose) printf("  the row appended after recovery is wrong\n");
out:
  free(err);
  free(row);
  tu_close(st2, s2);
  return ok;
}

/* Open the image in DIR as a writer would and check it (WRITE: and that it
** takes a commit); 1 if consistent.  VERBOSE prints why not. */
static int check_image(const Run *run, const char *dir, int cut, Counts *c,
                       int write, int verbose) {
  NpkStore *st = NULL;
  NpkSession *s = NULL;
  NpkStats stats;
  char *err = NULL;
  Buf got = {0};
  int lo, hi, rc, ok = 0, which = -1;
  allowed(run, cut, &lo, &hi);
  rc = npk_store_open(dir, 0, &st, &err);
  if (rc) {
    if (verbose) printf("  the image does not open: %s\n", err ? err : "?");
    free(err);
    return 0;
  }
  free(err);
  if ((rc = npk_session_open(st, &s))) goto out;
  /* The way to a write plays back a hot journal and sweeps leftovers. */
  rc = npk_begin(s);
  if (rc == NPK_OK) rc = npk_rollback(s);
  if (rc) {
    if (verbose) printf("  a write transaction fails: %s\n", npk_errmsg(s));
    goto out;
  }
  rc = tu_dump(s, &got, 1);
  if (rc) {
    if (verbose) printf("  reading fails: %s\n", npk_errmsg(s));
    goto out;
  }
  for (int k = lo; k <= hi; k++)
    if (buf_eq(&got, &run->state[k])) which = k;
  if (which < 0) {
    if (verbose) {
      printf("  the store holds none of the states allowed (after %d or %d "
             "of %d transactions)\n", lo, hi, run->ntxn);
      tu_dump_describe("got      ", &got);
      tu_dump_describe("allowed  ", &run->state[lo]);
      if (hi != lo) tu_dump_describe("or       ", &run->state[hi]);
    }
    goto out;
  }
  if (tu_journal_hot(dir)) {
    if (verbose) printf("  a journal is left\n");
    goto out;
  }
  if (tu_leftovers(dir) != 0 || !seg_files_ok(s, dir)) {
    if (verbose) printf("  files are left over\n");
    goto out;
  }
  npk_store_stats(st, &stats);
  if (write && !write_after(st, s, dir, verbose)) goto out;
  ok = 1;
  if (c) {
    /* "Before" when the image lost the transaction it was cut in. */
    c->recovered += stats.recoveries > 0;
    if (which == lo && hi != lo) c->before++;
    else c->after++;
  }
out:
  buf_free(&got);
  tu_close(st, s);
  return ok;
}

/* Where an image was cut: the cut of the recording, the style and the
** draws of its choices; and, when the power failed again while the image's
** hot journal was being played back, the same for that playback. */
typedef struct Cut {
  int cut, style;
  uint64_t seed;
  int nested;                /* cut again during playback */
  int icut, istyle;
  uint64_t iseed;
} Cut;

/* The cuts worth trying first in R: just before and just after every sync,
** and the end.  *PN receives how many (the array is malloc'd). */
static int *sync_cuts(const Rec *r, int *pn) {
  int *cand = malloc(((size_t)r->n * 2 + 2) * sizeof(int)), n = 0;
  for (int i = 0; i < r->n; i++)
    if (r->ev[i].kind == NPK_EV_FSYNC || r->ev[i].kind == NPK_EV_DIRSYNC) {
      cand[n++] = i;
      cand[n++] = i + 1;
    }
  cand[n++] = r->n;
  *pn = n;
  return cand;
}

/* The J-th cut of R: every sync point with every style first, then sync
** points and random points in turn, with random styles. */
static void pick_cut(const Rec *r, const int *cand, int ncand, long j,
                     uint64_t *rng, int *cut, int *style) {
  if (j < (long)ncand * NSTYLE) {
    *cut = cand[j / NSTYLE];
    *style = (int)(j % NSTYLE);
    return;
  }
  *style = (int)(tu_rand(rng) % NSTYLE);
  if (j % 2) *cut = cand[tu_rand(rng) % (uint64_t)ncand];
  else *cut = (int)(tu_rand(rng) % (uint64_t)(r->n + 1));
}

static void image_init(Image *m, const Rec *r) {
  memset(m, 0, sizeof *m);
  m->data = calloc((size_t)r->nid + 1, sizeof(Blob));
  m->fate = malloc((size_t)r->n + 1);
}

static void image_done(Image *m, const Rec *r) {
  img_free(m);
  for (int i = 0; i < r->nid; i++) free(m->data[i].p);
  free(m->data);
  free(m->fate);
  free(m->stale.p);
}

/* Play back the hot journal of the image in DIR as a writer would, with
** its changes recorded into R. */
static void record_playback(const char *dir, Rec *r) {
  NpkStore *st = NULL;
  NpkSession *s = NULL;
  char *err = NULL;
  rec_start(r, dir);
  npk_test_record(on_event, r);
  if (npk_store_open(dir, 0, &st, &err) == NPK_OK &&
      npk_session_open(st, &s) == NPK_OK && npk_begin(s) == NPK_OK)
    npk_rollback(s);
  free(err);
  tu_close(st, s);
  npk_test_record(NULL, NULL);
  r->on = 0;
}

/* Images that lose power again while the hot journal of image M (cut at
** OUTER) is played back: up to N of them, checked as any other.  0 and
** *F filled in on the first failure. */
static int check_playback(const Run *run, const Image *m, int outer, long n,
                          uint64_t *rng, Counts *c, Cut *f) {
  char src[1200], dir[1200];
  Rec *r = calloc(1, sizeof *r);
  Image im;
  int ncand, *cand, ok = 1;
  snprintf(src, sizeof src, "%s/playback", workdir);
  snprintf(dir, sizeof dir, "%s/image", workdir);
  img_write(m, src);
  record_playback(src, r);
  cand = sync_cuts(r, &ncand);
  image_init(&im, r);
  for (long j = 0; j < n && ok; j++) {
    int cut, style;
    uint64_t s, draw;
    /* Random sync points first: every one with every style would be many
    ** images for each image with a journal. */
    pick_cut(r, cand, ncand, j + (long)ncand * NSTYLE, rng, &cut, &style);
    s = draw = tu_rand(rng);
    img_build(r, cut, style, &draw, &im);
    if (img_write(&im, dir) != 0) break;
    c->images++;
    c->nested++;
    if (!check_image(run, dir, outer, c, 0, 0)) {
      c->failed++;
      ok = 0;
      f->nested = 1;
      f->icut = cut;
      f->istyle = style;
      f->iseed = s;
    }
  }
  image_done(&im, r);
  rec_free(r);
  free(r);
  free(cand);
  return ok;
}

/* Every how many images with a hot journal one is cut again during its
** playback, and how many images of that playback are checked. */
#define NEST_EVERY 5
/* Every how many images the recovered store also takes a commit. */
#define WRITE_EVERY 4
#define NEST_IMAGES 3

/* Check IMAGES images of RUN's recording, drawn from SEED, and at least
** one for every sync point and style (plus those cut again during
** playback); on the first failure fill *F and return 0. */
static int check_run(const Run *run, long images, uint64_t seed, Counts *c,
                     Cut *f) {
  const Rec *r = &run->rec;
  int ncand, *cand = sync_cuts(r, &ncand);
  Image m;
  uint64_t rng = seed | 1;
  long hot = 0;
  char dir[1200];
  int ok = 1;
  snprintf(dir, sizeof dir, "%s/image", workdir);
  image_init(&m, r);
  if (images < (long)ncand * NSTYLE) images = (long)ncand * NSTYLE;
  for (long j = 0; j < images && ok; j++) {
    Cut cut = {0};
    uint64_t draw;
    pick_cut(r, cand, ncand, j, &rng, &cut.cut, &cut.style);
    cut.seed = draw = tu_rand(&rng);
    img_build(r, cut.cut, cut.style, &draw, &m);
    if (img_write(&m, dir) != 0) {
      printf("cannot write image %s\n", dir);
      ok = 0;
      break;
    }
    if (tu_journal_hot(dir) && hot++ % NEST_EVERY == 0 &&
        !check_playback(run, &m, cut.cut, NEST_IMAGES, &rng, c, &cut)) {
      ok = 0;
      *f = cut;
      break;
    }
    img_write(&m, dir);
    c->images++;
    if (!check_image(run, dir, cut.cut, c, j % WRITE_EVERY == 0, 0)) {
      c->failed++;
      ok = 0;
      *f = cut;
    }
  }
  image_done(&m, r);
  free(cand);
  return ok;
}

static void run_free(Run *run) {
  rec_free(&run->rec);
  for (int t = 0; t < MAXSTATE; t++) buf_free(&run->state[t]);
}

/* Show the failing image F of RUN again, verbosely. */
static void show_failure(const Run *run, const Cut *f) {
  Image m;
  char dir[1200];
  uint64_t draw = f->seed;
  snprintf(dir, sizeof dir, "%s/image", workdir);
  image_init(&m, &run->rec);
  img_build(&run->rec, f->cut, f->style, &draw, &m);
  img_describe(&run->rec, &m, f->cut);
  if (f->nested) {
    char src[1200];
    Rec *r = calloc(1, sizeof *r);
    Image im;
    snprintf(src, sizeof src, "%s/playback", workdir);
    img_write(&m, src);
    record_playback(src, r);
    image_init(&im, r);
    draw = f->iseed;
    img_build(r, f->icut, f->istyle, &draw, &im);
    printf("  and the power failed again while its journal was played "
           "back:\n");
    img_describe(r, &im, f->icut);
    img_write(&im, dir);
    image_done(&im, r);
    rec_free(r);
    free(r);
  } else {
    img_write(&m, dir);
  }
  check_image(run, dir, f->cut, NULL, 1, 1);
  image_done(&m, &run->rec);
}

/* Budget of the search for a failure while minimising. */
#define MIN_IMAGES 400

/* SC fails with some image: drop operations while one still does, then
** print the operations and the failing image. */
static void minimise(Scen *sc, uint64_t seed) {
  char dir[1200];
  Run *run = calloc(1, sizeof *run);
  Cut f;
  Counts c = {0};
  snprintf(dir, sizeof dir, "%s/store", workdir);
  for (int i = sc->n - 1; i >= 0; i--) {
    Scen t = *sc;
    memmove(t.tok[i], t.tok[i + 1], sizeof t.tok[0] * (size_t)(t.n - i - 1));
    t.n--;
    if (record(&t, dir, run) == NPK_OK &&
        !check_run(run, MIN_IMAGES, seed, &c, &f))
      *sc = t;
    run_free(run);
  }
  printf("  minimised:\n");
  scen_print(sc);
  if (record(sc, dir, run) == NPK_OK &&
      !check_run(run, MIN_IMAGES * 4, seed, &c, &f))
    show_failure(run, &f);
  else
    printf("  (the minimised operations no longer fail within %d images)\n",
           MIN_IMAGES * 4);
  run_free(run);
  free(run);
}

/* In a recording of a "segdir_" scenario, every backup link and every
** removal made in SEGDIR is synced there before the journal's next write:
** before the journal holds the records that need the backups, and before
** the commit point that makes the removals final.  The images do not show
** the first: a removal survives them only with the link before it, as on
** a journaling file system, but not on every disk.  1 if so. */
static int subdir_synced(const Rec *r) {
  int journal = -1;
  for (int i = 0; i < r->nname; i++)
    if (!strcmp(r->name[i], TU_JOURNAL)) journal = r->name_id[i];
  for (int i = 0; i < r->n; i++) {
    const Ev *v = &r->ev[i];
    int synced = 0;
    if ((v->kind != NPK_EV_LINK && v->kind != NPK_EV_UNLINK) ||
        strncmp(v->name, SEGDIR "/", strlen(SEGDIR) + 1) != 0 ||
        (v->kind == NPK_EV_UNLINK && strstr(v->name, "-npkbak")))
      continue;
    for (int j = i + 1; j < r->n; j++) {
      const Ev *w = &r->ev[j];
      if (w->kind == NPK_EV_DIRSYNC && w->name && !strcmp(w->name, SEGDIR))
        synced = 1;
      if (w->kind == NPK_EV_CREATE && !strcmp(w->name, TU_JOURNAL))
        journal = w->id;
      if (w->kind == NPK_EV_WRITE && w->id == journal) break;
    }
    if (!synced) {
      printf("  event %d (%s %s) is not synced in %s before the journal's "
             "next write\n", i, ev_kind(v->kind), v->name, SEGDIR);
      return 0;
    }
  }
  return 1;
}

/* In a recording made without hard links: no link, and at least one
** backup made as a file of its own.  1 if so. */
static int backups_copied(const Rec *r) {
  int copies = 0;
  for (int i = 0; i < r->n; i++) {
    if (r->ev[i].kind == NPK_EV_LINK) return 0;
    copies += r->ev[i].kind == NPK_EV_CREATE &&
              strstr(r->ev[i].name, "-npkbak") != NULL;
  }
  return copies > 0;
}

/* Record SC and check IMAGES images of it; 1 if all were consistent. */
static int scenario(Scen *sc, long images, uint64_t seed, Counts *total) {
  char dir[1200];
  Run *run = calloc(1, sizeof *run);
  Counts c = {0};
  Cut f;
  int ok, rc;
  const char *why = NULL;
  snprintf(dir, sizeof dir, "%s/store", workdir);
  rc = record(sc, dir, run);
  if (rc) why = "an operation failed";
  else if (strncmp(sc->name, "nolinks_", 8) == 0 && !backups_copied(&run->rec))
    why = "its backups are not copies";
  else if (seg_in_dir && !subdir_synced(&run->rec))
    why = "a change in " SEGDIR " is not synced in time";
  if (why) {
    printf("FAIL scenario %s: %s", sc->name, why);
    printf(rc ? " (rc %d)\n" : "\n", rc);
    scen_print(sc);
    run_free(run);
    free(run);
    total->failed++;
    return 0;
  }
  ok = check_run(run, images, seed, &c, &f);
  total->images += c.images;
  total->before += c.before;
  total->after += c.after;
  total->recovered += c.recovered;
  total->nested += c.nested;
  total->failed += c.failed;
  if (!ok) {
    printf("FAIL scenario %s (seed %llu): an image after a power cut is "
           "inconsistent\n", sc->name, (unsigned long long)seed);
    scen_print(sc);
    show_failure(run, &f);
    run_free(run);
    minimise(sc, seed);
  } else {
    run_free(run);
  }
  free(run);
  return ok;
}

/* ---- the scenarios ------------------------------------------------------ */

static const char *const scenarios[][2] = {
  {"append", "app:a:3"},
  {"append_grown", "app:c:5"},
  {"replace", "rep:a:2"},
  {"replace_many", "+ rep:a:0 rep:a:7 rep:b:4 ."},
  {"delete", "del:a:3"},
  {"delete_last_bit", "+ del:b:0 del:b:2 del:b:3 del:b:4 ."},
  {"save_over", "save:a:5"},
  {"compact", "cmp:b"},
  {"clone", "clone:a:d"},
  {"drop", "drop:b"},
  {"reset", "reset"},
  {"new_array", "new:d:6"},
  {"new_array_empty", "new:d:0"},
  {"new_arrays_txn", "+ new:d:3 app:a:2 new:e:1 ."},
  {"new_then_rows", "new:d:2 new:e:3 app:d:1 rep:e:0"},
  /* Commits that add arrays append their entries to the catalog in place
  ** (its old length journaled); those that also drop or move one replace
  ** it whole. */
  {"clone_new", "+ new:d:3 clone:d:e . clone:e:f app:f:1"},
  {"new_rolled_back", "+ S new:d:3 clone:a:e R new:f:1 S new:g:2 R E ."},
  {"new_then_dropped", "+ new:d:3 drop:d new:e:1 . + new:f:2 drop:f ."},
  {"drop_then_new", "+ drop:c save:c:2 new:d:1 . + drop:a new:e:2 ."},
  {"reset_then_new", "+ reset new:d:2 . new:e:1"},
  {"seg_new", "new:d:2 clone:s:e app:d:1"},
  {"savepoints", "+ app:a:2 S rep:a:1 del:a:0 R app:c:1 E ."},
  {"savepoint_new", "+ S new:d:3 R new:e:2 S del:b:0 E ."},
  {"mixed_txn",
   "+ app:a:2 rep:a:1 del:b:3 save:c:3 clone:a:d drop:b new:e:4 ."},
  {"append_then_save_over", "+ app:a:4 save:a:2 ."},
  /* Bytes past a's rows, more than is appended: each commit cuts the file
  ** below its length before, which playback leaves as it is. */
  {"tail_append", "app:a:2"},
  {"tail_append_replace", "+ app:a:2 rep:a:9 rep:a:1 ."},
  {"tail_append_save_over", "+ app:a:2 save:a:3 ."},
  {"tail_sequence", "app:a:1 rep:a:8 app:a:1 del:a:9 cmp:a"},
  {"sequence", "app:a:2 rep:a:9 del:a:0 cmp:a clone:a:d drop:d"},
  /* The second commit's journal must not be whole on disk while its backup
  ** of the catalog is still the first commit's, whose removal was lost. */
  {"stale_backup", "app:a:1 app:a:1"},
  {"sequence_bitmaps", "del:b:0 del:b:2 save:b:3 del:b:1 cmp:b"},
  {"bitmap_patched", "del:b:0 + app:b:70 del:b:2 . del:b:70"},
  /* Rolled back to savepoints: the bitmap grows within its word, then
  ** across it; one whose rows came and went is written as it was, or not
  ** at all when its array was changed before the savepoint. */
  {"bitmap_savepoints",
   "+ S del:b:0 R app:b:59 S del:b:2 R E . app:b:1 del:b:64"},
  /* A bitmap patched in place before, then in one transaction rows
  ** deleted and the array compacted, saved over, or dropped and cloned
  ** from another: a new array, its bitmap replaced whole. */
  {"bitmap_replaced_in_txn", "del:b:0 + del:b:2 cmp:b del:b:0 . "
   "+ del:b:1 save:b:4 del:b:3 . + del:b:0 drop:b clone:a:b del:b:5 ."},
  {"bitmap_unchanged", "+ S app:b:3 R rep:a:1 . + rep:b:0 S app:b:3 R . "
   "del:b:2"},
  {"sequence_reset", "new:d:2 reset new:a:3 app:a:1"},
  {"sequence_empty_txn", "+ S app:a:1 R E . clone:b:e"},
  {"seg_save_over", "save:s:3"},
  {"seg_drop", "drop:s"},
  {"seg_delete_compact", "del:s:1 cmp:s"},
  {"seg_replace_clone", "+ rep:s:4 clone:s:d ."},
  /* Segment files in a subdirectory: their backups' entries, their
  ** removal and their return from backups must each be synced there. */
  {"segdir_save_over", "save:s:3"},
  {"segdir_drop", "drop:s"},
  {"segdir_delete_compact", "del:s:1 cmp:s"},
  {"segdir_replace_clone", "+ rep:s:4 clone:s:d ."},
  /* Commits reuse the journal's idle file: a shorter journal over a longer
  ** one (cut to its length), and one of more than a sector over another,
  ** whose sectors a power cut may mix. */
  {"journal_reuse", "+ rep:a:1 rep:a:2 rep:a:3 app:a:2 . rep:a:4 app:b:1"},
  {"journal_reuse_torn",
   "+ rep:a:0 rep:a:1 rep:a:2 rep:a:3 rep:a:4 rep:a:5 rep:a:6 rep:a:7 "
   "rep:b:0 rep:b:2 rep:b:3 rep:b:4 app:a:9 . "
   "+ rep:a:7 rep:a:6 rep:a:5 rep:a:4 rep:a:3 rep:a:2 rep:a:1 rep:a:0 "
   "rep:b:4 rep:b:3 rep:b:2 rep:b:0 app:a:9 ."},
  {"fallocate", "big:d"},
  /* A journal of more than 1 MiB, then another of the same length, on a
  ** file system that may show a removed file's bytes in a file's new
  ** blocks: the second may not read as the first one whole. */
  {"stale_journal", "big:d bigrep:d bigrep:d"},
  {"stale_journal_small", "big:d bigrep:d app:a:1 bigrep:d"},
  {"fallocate_over", "new:d:1 big:d"},
  /* Where the file system makes no hard links, each backup is a copy,
  ** synced before the journal is written. */
  {"nolinks_save_over", "save:a:5"},
  {"nolinks_tail_append_save_over", "+ app:a:2 save:a:3 ."},
  {"nolinks_drop", "drop:b"},
  {"nolinks_compact", "cmp:b"},
  {"nolinks_reset", "reset"},
  {"nolinks_sequence_bitmaps", "del:b:0 del:b:2 save:b:3 del:b:1 cmp:b"},
  {"nolinks_drop_then_new", "+ drop:c save:c:2 new:d:1 . + drop:a new:e:2 ."},
  {"nolinks_mixed_txn",
   "+ app:a:2 rep:a:1 del:b:3 save:c:3 clone:a:d drop:b new:e:4 ."},
  {"nolinks_seg_save_over", "save:s:3"},
  {"nolinks_segdir_drop", "drop:s"},
};
#define NSCEN ((int)(sizeof scenarios / sizeof scenarios[0]))

/* A random, valid sequence of transactions on the base store. */
typedef struct GenArr {
  char name[4];
  int exists, rows, live[64];
} GenArr;

static void gen_token(Scen *sc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void gen_token(Scen *sc, const char *fmt, ...) {
  va_list ap;
  if (sc->n >= MAXTOK) return;
  va_start(ap, fmt);
  vsnprintf(sc->tok[sc->n++], sizeof sc->tok[0], fmt, ap);
  va_end(ap);
}

static int gen_live(const GenArr *a, uint64_t *rng) {
  int live[64], n = 0;
  for (int i = 0; i < a->rows; i++)
    if (a->live[i]) live[n++] = i;
  return n ? live[tu_rand(rng) % (uint64_t)n] : -1;
}

static void generate(Scen *sc, uint64_t *rng) {
  GenArr g[5] = {{"a", 1, 8, {0}}, {"b", 1, 5, {0}}, {"c", 1, 4, {0}},
                 {"d", 0, 0, {0}}, {"e", 0, 0, {0}}};
  int ntxn = 1 + (int)(tu_rand(rng) % 3), in_sp = 0;
  sc->name = "random";
  sc->n = 0;
  for (int k = 0; k < 5; k++)
    for (int i = 0; i < 64; i++) g[k].live[i] = 1;
  g[1].live[1] = 0;
  for (int t = 0; t < ntxn; t++) {
    int nop = 1 + (int)(tu_rand(rng) % 4), explicit = nop > 1;
    if (explicit) gen_token(sc, "+");
    for (int o = 0; o < nop; o++) {
      GenArr *a = &g[tu_rand(rng) % 5];
      int r, kind = (int)(tu_rand(rng) % 10);
      if (explicit && in_sp == 0 && kind == 9) {
        /* A savepoint with appends, rolled back or released. */
        int roll = (int)(tu_rand(rng) & 1);
        if (!g[0].exists) continue;
        gen_token(sc, "S");
        gen_token(sc, "app:a:1");
        gen_token(sc, roll ? "R" : "E");
        if (roll) gen_token(sc, "E");
        else if (g[0].rows < 60) g[0].live[g[0].rows++] = 1;
        continue;
      }
      if (!a->exists) {
        int n = (int)(tu_rand(rng) % 5);
        gen_token(sc, "new:%s:%d", a->name, n);
        a->exists = 1;
        a->rows = n;
        for (int i = 0; i < 64; i++) a->live[i] = 1;
        continue;
      }
      switch (kind) {
        case 0:
        case 1: {
          int n = 1 + (int)(tu_rand(rng) % 4);
          if (a->rows > 56) break;
          gen_token(sc, "app:%s:%d", a->name, n);
          a->rows += n;
          break;
        }
        case 2:
          if ((r = gen_live(a, rng)) >= 0) gen_token(sc, "rep:%s:%d", a->name, r);
          break;
        case 3:
          if ((r = gen_live(a, rng)) >= 0) {
            gen_token(sc, "del:%s:%d", a->name, r);
            a->live[r] = 0;
          }
          break;
        case 4: {
          int n = (int)(tu_rand(rng) % 6);
          gen_token(sc, "save:%s:%d", a->name, n);
          a->rows = n;
          for (int i = 0; i < 64; i++) a->live[i] = 1;
          break;
        }
        case 5: {
          int k = 0;
          for (int i = 0; i < a->rows; i++)
            if (a->live[i]) a->live[k++] = 1;
          for (int i = k; i < 64; i++) a->live[i] = 1;
          a->rows = k;
          gen_token(sc, "cmp:%s", a->name);
          break;
        }
        case 6: {
          /* A clone keeps the source's rows as they lie, deleted ones
          ** included (NumPack's clone copies the file and its bitmap). */
          GenArr *b = &g[3 + (int)(tu_rand(rng) % 2)];
          if (b->exists) break;
          gen_token(sc, "clone:%s:%s", a->name, b->name);
          b->exists = 1;
          b->rows = a->rows;
          memcpy(b->live, a->live, sizeof b->live);
          break;
        }
        case 7:
          gen_token(sc, "drop:%s", a->name);
          a->exists = 0;
          break;
        case 8:
          if (tu_rand(rng) % 4) break;
          gen_token(sc, "reset");
          for (int k = 0; k < 5; k++) g[k].exists = 0;
          break;
      }
    }
    if (explicit) gen_token(sc, ".");
  }
}

/* ---- main --------------------------------------------------------------- */

static long env_long(const char *name, long dflt) {
  const char *v = getenv(name);
  return v && *v ? strtol(v, NULL, 10) : dflt;
}

int main(void) {
  long images = env_long("POWERLOSS_IMAGES", 0);
  int random_too = (int)env_long("POWERLOSS_RANDOM", 0);
  const char *only = getenv("POWERLOSS_ONLY");
  uint64_t seed = (uint64_t)env_long("POWERLOSS_SEED", 0);
  const char *base = "/dev/shm";
  struct stat sb;
  Counts total = {0};
  int nscen = 0, failed = 0;
  double t0 = tu_mono_ms();
  if (!seed) seed = tu_now_us() % 1000000007u;
  /* A file system in memory: every playback syncs, which on a disk would
  ** make a hundred thousand images take an hour. */
  if (stat(base, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(base, W_OK))
    base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(workdir, sizeof workdir, "%s/npkpowerloss.XXXXXX", base);
  if (!mkdtemp(workdir)) {
    perror("mkdtemp");
    return 2;
  }
  printf("powerloss: seed %llu, %ld images asked (0: every sync point and "
         "style), work directory %s\n", (unsigned long long)seed, images,
         workdir);
  for (int i = 0; i < NSCEN; i++)
    if (!only || strstr(scenarios[i][0], only)) nscen++;
  {
    /* Random sequences take a third of the images when asked for. */
    long fixed = random_too ? images * 2 / 3 : images;
    long per = nscen ? fixed / nscen : 0;
    long left = images - per * nscen;
    uint64_t rng = seed;
    for (int i = 0; i < NSCEN; i++) {
      Scen sc;
      Counts before = total;
      int ok;
      if (only && !strstr(scenarios[i][0], only)) continue;
      scen_parse(&sc, scenarios[i][0], scenarios[i][1]);
      ctest_case_failures = 0;
      ok = scenario(&sc, per, seed + (uint64_t)i, &total);
      if (ok) {
        ctest_passed++;
        printf("ok %s (%ld images, %ld played back a hot journal, %ld "
               "lost power again meanwhile)\n", sc.name,
               total.images - before.images,
               total.recovered - before.recovered,
               total.nested - before.nested);
      } else {
        ctest_failed++;
        failed++;
        printf("FAIL %s\n", sc.name);
      }
    }
    if (random_too && !only) {
      long seqs = 0, bad = 0;
      while (left > 0) {
        Scen sc;
        long was = total.images;
        uint64_t s = tu_rand(&rng);
        generate(&sc, &rng);
        if (sc.n == 0) continue;
        seqs++;
        if (!scenario(&sc, left < 300 ? left : 300, s, &total)) bad++;
        left -= total.images - was;
      }
      if (bad) ctest_failed++, failed++;
      else ctest_passed++;
      printf("%s random sequences (%ld sequences, %ld failing)\n",
             bad ? "FAIL" : "ok", seqs, bad);
    }
  }
  printf("powerloss: %ld images checked in %.1f s: %ld held the state "
         "before the transaction cut, %ld the state after it, %ld "
         "inconsistent; %ld played back a hot journal, %ld lost power "
         "again while playing one back\n",
         total.images, (tu_mono_ms() - t0) / 1000.0, total.before,
         total.after, total.failed, total.recovered, total.nested);
  tu_rm_rf(workdir);
  return CTEST_END();
}
