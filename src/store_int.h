/*
** store_int.h — internal structures shared by the store engine's files.
** Nothing here is visible to the SQLite layer; it uses store.h alone.
*/
#ifndef NPK_STORE_INT_H
#define NPK_STORE_INT_H

#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "alloc.h"
#include "store.h"

#define NPK_CATALOG       "metadata.npkm"
#define NPK_LOCKFILE      "metadata.npkm-lock"
#define NPK_JOURNAL       "metadata.npkm-journal"
#define NPK_JOURNAL_SPARE "metadata.npkm-journal-spare" /* earlier releases */
#define NPK_CAT_MAGIC     0x424B504Eu
#define NPK_CAT_VERSION   1u

typedef struct NpkFile NpkFile;
typedef struct NpkSeg NpkSeg;
typedef struct NpkBitmap NpkBitmap;
typedef struct NpkOverlay NpkOverlay;
typedef struct NpkCatalog NpkCatalog;
typedef struct NpkTxn NpkTxn;
typedef struct NpkRetired NpkRetired;
typedef struct NpkBuf NpkBuf;

/* A growable byte buffer (catalog and journal images). */
struct NpkBuf {
  unsigned char *p; /* bytes */
  size_t n;         /* bytes used */
  size_t cap;       /* bytes allocated */
  int oom;          /* an append failed for lack of memory */
};

/* Which file a name held when it was last read or written, to tell later
** that it is still that file, unchanged: inode, length and time. */
typedef struct NpkFileId NpkFileId;
struct NpkFileId {
  int known; /* 0: nothing known, nothing matches */
  dev_t dev; /* device and inode */
  ino_t ino;
  off_t size;           /* length */
  struct timespec mtim; /* time of the last change */
};
void npk_file_id_set(NpkFileId *id, const struct stat *sb);
int npk_file_id_is(const NpkFileId *id, const struct stat *sb);

/* One open data file and its read-only mapping.  Shared by refcount between
** the committed and pending versions of an array. */
struct NpkFile {
  int refs;             /* references from NpkSeg entries */
  char *path;           /* absolute path (changes when renamed) */
  const char *rel;      /* path relative to the store, inside path */
  int fd;               /* open descriptor, or -1: descriptors are
                        ** few (ulimit -n) and arrays many, so they
                        ** are closed when unused for longest and
                        ** opened again by name when needed
                        ** (npk_file_use); a mapping outlives its */
  dev_t dev;            /* identity of the file, checked when it is */
  ino_t ino;            /* opened again */
  int users;            /* npk_file_use calls not yet done: fd stays */
  NpkFile *lru_prev;    /* in the process's list of open files, most */
  NpkFile *lru_next;    /* recently used first */
  int writable;         /* fd was opened O_RDWR */
  uint64_t ok_epoch;    /* the store's epoch when the file's size was
                        ** last found to hold the committed rows */
  unsigned char *base;  /* mapping, or NULL */
  size_t maplen;        /* bytes mapped (rounded up, may pass EOF) */
  int gslot;            /* the mapping's store_guard.c slot, or -1 */
  NpkRetired *note;     /* for letting go of the mapping */
  unsigned char *wbase; /* writable mapping for commits, or NULL */
  size_t wmaplen;       /* bytes of it */
  int wslot;            /* its store_guard.c slot */
  uint64_t size;        /* bytes known to exist in the file */
  uint64_t orig_size;   /* size when a transaction first grew it */
  int grown;            /* orig_size is set (file grown in this txn) */
  int temp;             /* a transaction's new file: removed when freed */
  unsigned char *wbuf;  /* appended bytes not yet written, or NULL */
  size_t wlen;          /* bytes in wbuf */
  uint64_t wstart;      /* file offset where wbuf's bytes belong */
};

/* F's size (NpkFile.size) as a session of another thread reads it: the
** session writing F moves it (appending, rolling back, committing) while
** others check their committed rows against it, which it always covers. */
static inline uint64_t npk_file_size(const NpkFile *f) {
  return __atomic_load_n(&f->size, __ATOMIC_RELAXED);
}
static inline void npk_file_set_size(NpkFile *f, uint64_t size) {
  __atomic_store_n(&f->size, size, __ATOMIC_RELAXED);
}

/* One stretch of rows stored in one file. */
struct NpkSeg {
  NpkFile *file;      /* where the rows are */
  uint64_t first_row; /* physical index of the segment's first row */
  uint64_t rows;      /* rows in this segment */
};

/* Deletion bitmap with a rank index for logical-to-physical mapping. */
struct NpkBitmap {
  uint64_t nbits;    /* rows covered (the file's total rows) */
  uint64_t nlive;    /* bits set */
  uint64_t *w;       /* ceil(nbits/64) words */
  uint64_t wcap;     /* words allocated */
  uint64_t *rank;    /* rank[i] = live bits in words [0, 8*i) */
  uint64_t rank_cap; /* entries allocated in rank */
  uint64_t rank_ok;  /* rank[0..rank_ok) are up to date */
};

/* Replaced committed rows of one array, pending until commit. */
struct NpkOverlay {
  uint64_t *keys;         /* open-addressing table of row numbers */
  uint32_t *slot;         /* slot index for each key */
  uint64_t hcap;          /* table size (power of two), 0 if empty */
  uint64_t n;             /* rows held */
  unsigned char **chunks; /* slot storage; chunks never move */
  uint64_t nchunk;        /* chunks allocated */
  uint64_t nmem;          /* of them, the first ones, malloc'd; the others
                          ** are cut from regions of the spill file */
  uint64_t per_chunk;     /* slots per chunk */
  uint64_t row_bytes;     /* bytes per slot */
  int spill_fd;           /* the spill file (unnamed), or -1 */
  int no_spill;           /* the file system has no spill file to give */
  unsigned char **region; /* the spill file's mappings, in file order */
  int *rslot;             /* each mapping's store_guard.c slot */
  uint64_t nregion;       /* mappings made */
  uint64_t region_len;    /* bytes of each mapping */
  uint64_t region_left;   /* chunks still to cut from the last one */
  size_t new_undo;        /* undo position of the NPK_U_OVLNEW record
                          ** rows added now fall under, if it is still
                          ** there (SIZE_MAX: none yet) */
  uint64_t faults_seen;   /* the store's spill_faults when the mappings
                          ** were last found whole */
  NpkRetired *note;       /* for letting go of the overlay */
  int damaged;            /* a page of a mapping was lost to a fault */
};
/* Bytes of replaced rows an overlay keeps in memory; the rest are kept in
** a spill file (npk_spill_budget; the test build lets tests set it). */
#define NPK_SPILL_BUDGET (32u << 20)
uint64_t npk_spill_budget(void);
/* How many bytes of a journal are read at a time: DFLT (the test build
** lets tests make it small). */
uint64_t npk_journal_window(uint64_t dflt);
/* Read N bytes of FD at OFF into P, or as many as there are before the
** file's end: the count, short only at the end, or -1 with errno set.
** Counted among ST's bytes read; the test build fails it as kind "read".
** What a short count means (a damaged file, a journal cut short) is the
** caller's to say. */
ssize_t npk_io_read_at(NpkStore *st, int fd, void *p, size_t n, uint64_t off);

/* One array as seen by a catalog: committed, or a session's pending copy. */
struct NpkArray {
  int refs;                     /* catalogs and undo records holding it */
  char *name;                   /* UTF-8, validated */
  int dtype;                    /* NPK_BOOL .. NPK_COMPLEX128 */
  uint32_t ndim;                /* >= 1 */
  uint64_t shape[NPK_MAX_NDIM]; /* shape[0] = physical rows */
  uint64_t row_bytes;           /* item size x shape[1..] */
  char *data_file;              /* catalog's data file, relative */
  uint64_t mtime;               /* microseconds since the epoch */
  int segmented;                /* data_file is a .npkseg manifest */
  char **seg_names;             /* segmented: segment files, relative */
  int nseg;                     /* storage segments (1 unless segmented) */
  NpkSeg *seg;                  /* storage */
  NpkBitmap *bm;                /* NULL when every row is live */
  int has_bm_file;              /* deleted_<name>.npkb exists (committed) */
  NpkFileId bm_id;              /* that file, when its bytes are exactly
                                ** bm's encoding (a commit may then patch
                                ** the bytes that change in place) */
  int loaded;                   /* seg and bm are set up: an array read from
                                ** the catalog has its files opened and
                                ** checked when first used (npk_array_ready),
                                ** so that opening a store of thousands of
                                ** arrays does not open thousands of files */
  /* Pending state, for an array a transaction changed: */
  int pending;        /* 1 for a session's own modified copy */
  int fresh;          /* storage is a new temporary file */
  uint64_t base_rows; /* rows that are committed bytes in place */
  NpkOverlay *ov;     /* replaced committed rows, or NULL */
  int bm_dirty;       /* bitmap differs from the committed one */
};

/* A list of arrays: the committed catalog or a pending one.  A
** transaction's catalog starts as a copy of the committed one and usually
** changes an entry or two of thousands, so the list is kept in chunks of
** NPK_CAT_CHUNK positions and a name index, each shared by the catalogs
** that hold it (counted) and copied only by one about to change it: a
** copy costs a pointer per chunk, a change the chunk it falls in.  Shared
** pieces are never written; the committed catalog is read by many
** sessions at once without a lock. */
#define NPK_CAT_SHIFT 6
#define NPK_CAT_CHUNK (1 << NPK_CAT_SHIFT)

typedef struct NpkCatChunk NpkCatChunk;
struct NpkCatChunk {
  int refs;                   /* catalogs holding it (atomic) */
  NpkArray *a[NPK_CAT_CHUNK]; /* a reference each; NULL past the end */
};

typedef struct NpkCatIndex NpkCatIndex;
struct NpkCatIndex {
  int refs;   /* catalogs holding it (atomic) */
  int cap;    /* slots, a power of two */
  int slot[]; /* open addressing: position + 1, 0 when free */
};

struct NpkCatalog {
  NpkCatChunk **ch; /* chunks, in catalog order */
  int nch;          /* chunks used: n / NPK_CAT_CHUNK rounded up */
  int chcap;        /* chunk pointers allocated */
  int n;            /* arrays */
  NpkCatIndex *idx; /* names to positions; NULL (search the list) if
                    ** there was no memory for it */
  int odd;          /* arrays whose files are not data_NAME.npkd alone
                    ** (segmented, or another name): while there are
                    ** none, a file named after an array is no other's */
};

/* The I-th array of CAT (0 <= I < n). */
static inline NpkArray *npk_cat_at(const NpkCatalog *cat, int i) {
  return cat->ch[i >> NPK_CAT_SHIFT]->a[i & (NPK_CAT_CHUNK - 1)];
}

/* Mappings, overlays and catalogs that may still be pointed at; freed when
** no session of the store is reading or writing.  The note that keeps one
** is made before it is let go, where running out of memory can still be an
** error: letting go must not need memory, or an allocation failing then
** would free it under a reader. */
struct NpkRetired {
  int kind;         /* NPK_RET_MAP, NPK_RET_OVERLAY or NPK_RET_CAT */
  void *p;          /* the mapping or the NpkOverlay */
  size_t len;       /* the mapping's length */
  NpkCatalog cat;   /* NPK_RET_CAT: the replaced committed catalog */
  NpkRetired *next; /* next in the store's list */
};
#define NPK_RET_MAP     0
#define NPK_RET_OVERLAY 1
#define NPK_RET_CAT     2

/* The process-wide object for one store directory. */
struct NpkStore {
  int refs;  /* npk_store_open references */
  dev_t dev; /* identity of the directory */
  ino_t ino;
  int readonly;              /* opened with NPK_OPEN_READONLY */
  int folds_case;            /* the directory finds a name in capitals as
                             ** the same file (npk_io_folds_case): read,
                             ** never written */
  char *dir;                 /* absolute path of the directory */
  int dirfd;                 /* open directory, for fsync */
  pthread_mutex_t mu;        /* guards everything below */
  NpkCatalog cat;            /* last committed catalog seen */
  int cat_fd;                /* the catalog file that cat was read from */
  struct stat cat_st;        /* its identity, size and time when read */
  unsigned char *lock_page;  /* shared read-only map of the lock file */
  int lock_slot;             /* lock_page's store_guard.c slot */
  unsigned char *lock_wpage; /* the same page mapped for writing, made by
                             ** the first writer under EXCLUSIVE, or NULL */
  int lock_wslot;            /* lock_wpage's store_guard.c slot */
  int lock_wfailed;          /* it could not be made: writers pwrite */
  uint64_t map_faults;       /* faults absorbed in this store's mappings
                            ** (store_guard.c; npk_map_faults) */
  uint64_t spill_faults;     /* those of its spill files' mappings, apart:
                            ** only the writer, whose rows they hold, is
                            ** told of them (npk_map_faults) */
  int journal_checked;       /* looked for a journal at least once */
  uint64_t seen_seq;         /* the lock file's commit count when the state
                            ** in memory was last confirmed current */
  int seen_ok;               /* seen_seq was read from the lock page */
  int64_t checked_ns;        /* when it was confirmed (npk_monotonic_ns) */
  uint64_t epoch;            /* confirmations so far: a data file's size is
                            ** checked again once per confirmation */
  int pins;                  /* sessions reading or in a transaction
                            ** (read by npk_retire without the mutex) */
  NpkRetired *retired;       /* freed when pins drops to 0 */
  NpkStats stats;            /* I/O counters */
  int sync_off;              /* the writer chose not to fsync; written only
                            ** by the session holding RESERVED */
  NpkBuf img;                /* the encoding of cat, when img_ok: a commit
                            ** patches it rather than encode every array */
  size_t *img_off;           /* where each array's entry starts in img */
  int jfd;                   /* the journal's file, held open by
                            ** writers between commits, or -1 */
  dev_t jdev;                /* its identity: used only while the file */
  ino_t jino;                /* at the journal's name is this one */
  int cat_wfd;               /* cat_fd's file opened for writing by the
                            ** commits that patch it in place, or -1 */
  ino_t cat_wino;            /* its inode: used only while it is cat_st's */
  dev_t cat_wdev;
  int coarse_mtime; /* the file system kept a catalog time coarser
                    ** than the one set: patching in place could
                    ** leave a commit that no time tells of, so
                    ** catalogs are replaced whole */
  int exact_mtime;  /* a commit found the catalog time it set kept to
                    ** the nanosecond, a time no coarser resolution
                    ** could keep: later ones need not stat the file
                    ** to learn the time they set */
  int img_ok;       /* img and img_off describe cat */
  uint64_t cat_gen; /* bumped whenever cat is replaced */
  int swept;        /* a write of this object removed leftovers
                    ** (npk_sweep): later ones need to only when
                    ** the lock file's mark says a writer died */
  char lk_order[3]; /* ThreadSanitizer's stand-ins for the file
                    ** lock's SHARED, RESERVED and EXCLUSIVE
                    ** (store_lock.c); never read or written */
  NpkStore *next;   /* registry list */
};

/* Row counters of a transaction, saved with each savepoint. */
typedef struct NpkCounts NpkCounts;
struct NpkCounts {
  uint64_t appended; /* rows appended */
  uint64_t replaced; /* rows replaced */
  uint64_t deleted;  /* rows deleted */
};

/* An open savepoint. */
typedef struct NpkSavepoint NpkSavepoint;
struct NpkSavepoint {
  size_t undo_pos;  /* undo records before it */
  NpkCounts counts; /* counters when it was opened */
};

/* One undo record: how to take back one change of a transaction. */
typedef struct NpkUndo NpkUndo;
struct NpkUndo {
  int op;        /* NPK_U_CAT .. NPK_U_TAIL */
  NpkArray *arr; /* array changed (a reference), or NULL */
  uint64_t a, b; /* op-specific: rows, row number, flags */
  void *data;    /* op-specific: row list, old bytes, or the catalog
                  ** before the change (an NpkCatalog) */
};
#define NPK_U_CAT   1 /* catalog replaced: restore data's */
#define NPK_U_ROWS  2 /* rows appended: a = old rows, b = old bits */
#define NPK_U_BITS  3 /* a rows deleted (data), b = old bm_dirty */
#define NPK_U_BMNEW 4 /* bitmap created, b = old bm_dirty */
#define NPK_U_OVL   5 /* overlay row a set again: data = its old bytes */
#define NPK_U_TAIL  6 /* file row a overwritten; data = old bytes */
#define NPK_U_BMSWAP \
  7 /* bitmap changed wholesale: data = the old
    ** one (NpkBitmap), b = old bm_dirty */
#define NPK_U_SLOT \
  8 /* array at catalog position a replaced by
    ** another version of it: arr = the old one */
#define NPK_U_OVLNEW \
  9 /* rows put in overlay slots a and after:
    ** taken out (one record for all the rows a
    ** savepoint adds, not one per row) */

/* A pending write transaction of one session. */
struct NpkTxn {
  NpkCatalog cat;        /* the catalog as this transaction sees it */
  NpkUndo *undo;         /* undo records, oldest first */
  size_t nundo, undocap; /* records used / allocated */
  NpkSavepoint *sp;      /* open savepoints, outermost first */
  int nsp, spcap;        /* savepoints open / allocated */
  NpkFile **grown;       /* committed files appended to (references) */
  int ngrown, growncap;  /* entries used / allocated */
  NpkCounts counts;      /* rows changed so far */
  unsigned tmpseq;       /* counter for temporary file names */
  int marked;            /* set NPK_MARK_NEWFILES in the lock file */
  uint64_t cat_gen;      /* the store's cat_gen when cat was copied */
  int reshaped;          /* arrays were dropped from cat: the commit
                         ** compares every position */
  int *slots;            /* else the positions of cat where an array
                         ** was replaced by another version (maybe
                         ** twice): with the arrays added after the
                         ** committed ones, the only ones that can
                         ** differ */
  int nslot, slotcap;    /* entries used / allocated */
  NpkRetired *cat_note;  /* for letting go of the committed catalog the
                         ** commit replaces (made before it changes a
                         ** file) */
};

/* One client of a store. */
struct NpkSession {
  NpkStore *store;        /* the shared store */
  int lockfd;             /* own descriptor on the lock file, or -1 */
  int lock_rw;            /* lockfd can take write locks */
  int lock;               /* NPK_LOCK_NONE .. NPK_LOCK_EXCLUSIVE */
  int nread;              /* nesting of npk_read_begin */
  int pinned;             /* counted in store->pins */
  NpkCatalog rcat;        /* the committed catalog as the session's read
                          ** began (npk_read_begin), or as the session's
                          ** own transaction left it: its pieces stay
                          ** while the session is pinned, whatever
                          ** another session puts in store->cat */
  uint64_t rgen;          /* store->cat_gen of rcat */
  int busy_ms;            /* busy timeout in milliseconds */
  int (*busy_fn)(void *); /* reads the busy timeout, or NULL */
  void *busy_arg;         /* argument of busy_fn */
  int (*sync_fn)(void *); /* 0 when writes need not be synced, or NULL */
  void *sync_arg;         /* argument of sync_fn */
  int (*intr_fn)(void *); /* nonzero: stop the long copy, or NULL */
  void *intr_arg;         /* argument of intr_fn */
  NpkTxn *txn;            /* open write transaction, or NULL */
  NpkErr err;             /* last error */
  uint64_t changes;       /* npk_change_count(): bumped by each write */
  const char **scans;     /* arrays open scans read (npk_scan_begin),
                          ** one entry per scan */
  int nscan;              /* entries in scans */
  int scan_cap;           /* room in scans */
  int own;                /* the transactions of this session raised the
                          ** commit count since npk_own_commits last
                          ** asked: from own_from to own_to, one after
                          ** the other */
  uint64_t own_from, own_to;
  uint64_t spill_base; /* store->spill_faults when the open
                       ** transaction began */
  uint64_t spill_own;  /* spill faults during this session's ended
                       ** transactions: npk_map_faults never goes back */
};

/* Lock levels, as SQLite's. */
#define NPK_LOCK_NONE      0
#define NPK_LOCK_SHARED    1
#define NPK_LOCK_RESERVED  2
#define NPK_LOCK_EXCLUSIVE 4

/* NPK_LOCKED if an open scan reads NAME (any array when NAME is NULL);
** WHAT names the refused operation in the message. */
int npk_scan_check(NpkSession *s, const char *name, const char *what);

/* ---- errors (store_io.c) ---- */
int npk_err(NpkErr *e, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int npk_err_sys(NpkErr *e, int err, const char *what, const char *path);
uint64_t npk_now_us(void);

/* ---- buffers and little-endian encoding (store_io.c) ---- */
/* Room for N more bytes past B->n, without changing B->n: 1, or 0 when
** out of memory (B->oom set). */
int npk_buf_reserve(NpkBuf *b, size_t n);
/* Append N bytes from P (P NULL: N bytes for the caller to fill in). */
void npk_buf_put(NpkBuf *b, const void *p, size_t n);
void npk_buf_u8(NpkBuf *b, unsigned v);
void npk_buf_u32(NpkBuf *b, uint32_t v);
void npk_buf_u64(NpkBuf *b, uint64_t v);
void npk_buf_free(NpkBuf *b);
uint32_t npk_get_u32(const unsigned char *p);
uint64_t npk_get_u64(const unsigned char *p);
void npk_put_u64(unsigned char *p, uint64_t v);

/* ---- system calls with fault injection and counters (store_io.c) ---- */
/* A write made without a system call (through a mapping) still fails where
** the fault hooks say a call of KIND would: NPK_OK, or the error, worded
** "WHAT PATH: reason". */
int npk_io_fault(NpkStore *st, const char *kind, const char *what,
                 const char *path, NpkErr *e);
/* Account for N bytes from P just stored at OFF of the file open as FD
** through a mapping: counted as written, and recorded for the power-loss
** harness like a pwrite. */
void npk_io_mapped(NpkStore *st, int fd, const void *p, size_t n, uint64_t off);
int npk_io_pwrite(NpkStore *st, int fd, const void *p, size_t n, uint64_t off,
                  const char *path, NpkErr *e);
int npk_io_reserve(NpkStore *st, int fd, uint64_t off, uint64_t n,
                   const char *path, NpkErr *e);
int npk_io_spill_open(NpkStore *st, int *pfd, NpkErr *e);
int npk_io_spill_grow(NpkStore *st, int fd, uint64_t off, uint64_t n,
                      NpkErr *e);
int npk_io_pwrite_bulk(NpkStore *st, int fd, const void *p, size_t n,
                       uint64_t off, const char *path, NpkErr *e);
int npk_io_fsync(NpkStore *st, int fd, const char *path, NpkErr *e);
int npk_io_ftruncate(NpkStore *st, int fd, uint64_t len, const char *path,
                     NpkErr *e);
int npk_io_copy(NpkStore *st, int from, uint64_t off, uint64_t n, int to,
                uint64_t to_off, const char *path, NpkErr *e);
char *npk_path(const char *dir, const char *name);
int npk_mkdirs(const char *path, NpkErr *e);
/* Step STEP of a commit: in the test build, where npk_test_crash_at() asked
** for it, the process ends here; otherwise nothing happens. */
int npk_test_crash_point(int step);
/* Halfway through a row npk_read_row_unlocked copies: in the test build,
** the pause npk_test_copy_pause() asked for; otherwise nothing. */
void npk_test_copy_point(void);
/* Once a commit has paired its arrays: in the test build, what
** npk_test_on_plan() asked for; otherwise nothing. */
void npk_test_plan_point(void);
/* The allocator asks FN before each allocation while FN is set: nonzero
** fails it (store_alloc.c; the test build's npk_test_fault sets it for the
** "malloc" and "oom" kinds). */
void npk_alloc_fault_hook(int (*fn)(void));

/* ---- files of a store, named relative to it (store_io.c) ---- */
/* Every file of a store is reached through these: a symbolic link or a
** file that is not a regular file, at REL or on its way, is NPK_CORRUPT
** naming it; a missing one is NPK_NOFILE.  npk_io_open with O_CREAT |
** O_TRUNC makes a new file (O_EXCL) after removing any by that name, so
** that no write goes through a hard link a leftover may be. */
int npk_io_open(NpkStore *st, const char *rel, int flags, int *pfd, NpkErr *e);
int npk_io_lstat(NpkStore *st, const char *rel, struct stat *sb, NpkErr *e);
int npk_io_exists(NpkStore *st, const char *rel);
int npk_io_folds_case(NpkStore *st, const char *rel);
/* The whole of REL, and *SB (when not NULL) the file read.  A file longer
** than MAX bytes (when not 0) is NPK_CORRUPT, and not read: no allocation
** larger than what its content can be. */
int npk_io_read_file(NpkStore *st, const char *rel, unsigned char **pp,
                     size_t *pn, struct stat *sb, uint64_t max, NpkErr *e);
int npk_io_write_new(NpkStore *st, const char *rel, const void *p, size_t n,
                     NpkErr *e);
int npk_io_replace_file(NpkStore *st, const char *rel, const void *p, size_t n,
                        NpkErr *e);
int npk_io_unlink(NpkStore *st, const char *rel, NpkErr *e);
int npk_io_rename(NpkStore *st, const char *from, const char *to, NpkErr *e);
/* TO made a second name of FROM; where the file system makes no hard
** links, a copy of it, synced. */
int npk_io_link(NpkStore *st, const char *from, const char *to, NpkErr *e);
/* The longest relative path a catalog or manifest may name. */
#define NPK_MAX_RELPATH 4096
/* The store's directory (REL NULL), or its subdirectory REL (no link). */
DIR *npk_io_opendir(NpkStore *st, const char *rel);
/* Subdirectories of the store holding files a commit or a playback makes,
** renames or removes (segment files NumPack may keep below the store's
** directory): an entry changed there reaches the disk with that
** directory's sync, not the store's.  npk_subdir_note adds REL's
** directory to SET (paths, each ended by a NUL) once, and nothing for a
** file of the store's own directory; npk_io_sync_subdirs syncs each. */
void npk_subdir_note(NpkBuf *set, const char *rel);
int npk_io_sync_subdirs(NpkStore *st, const NpkBuf *set, NpkErr *e);

/* ---- files and mappings (store_file.c) ---- */
int npk_file_open(NpkStore *st, const char *rel, int create, NpkFile **pp,
                  NpkErr *e);
void npk_file_rename(NpkStore *st, NpkFile *f, char *path);
void npk_file_unref(NpkStore *st, NpkFile *f);
/* F's descriptor in F->fd until npk_file_done(F): opened again by name if
** it was closed to make room, NPK_CORRUPT naming F if the file is gone or
** another file took its name. */
int npk_file_use(NpkStore *st, NpkFile *f, NpkErr *e);
void npk_file_done(NpkFile *f);
int npk_file_map(NpkStore *st, NpkFile *f, uint64_t need, NpkErr *e);
int npk_file_append(NpkStore *st, NpkFile *f, const void *p, size_t n,
                    uint64_t off, NpkErr *e);
int npk_file_flush(NpkStore *st, NpkFile *f, NpkErr *e);
/* NPK_CORRUPT: F, LEN bytes long, no longer holds the NEED bytes of the
** committed rows of ARRAY (cut short by another program). */
int npk_file_short(const NpkFile *f, uint64_t len, const char *array,
                   uint64_t need, NpkErr *e);
/* NPK_READONLY, naming F, if F could only be opened for reading: checked
** before a transaction changes F, so that no commit fails halfway on it.
** NPK_CORRUPT if F is shorter than NEED, the committed rows of ARRAY (cut
** short by another program): they are not written over or past. */
int npk_file_check_writable(NpkStore *st, NpkFile *f, const char *array,
                            uint64_t need, struct stat *out, NpkErr *e);
void npk_file_discard(NpkFile *f, uint64_t end);
/* Drop F's writable mapping (store_txn.c makes it), if it has one. */
void npk_file_unmap_w(NpkFile *f);
/* A note for npk_retire, or NULL when there is no memory for it. */
NpkRetired *npk_retire_note(void);
/* Let go of mapping P of LEN bytes through NOTE, which this takes: unmapped
** now if no session of ST is pinned, else when the last pin goes. */
void npk_retire(NpkStore *st, NpkRetired *note, void *p, size_t len);
/* Put R on ST's retire list, with or without st->mu. */
void npk_retired_push(NpkStore *st, NpkRetired *r);
/* Replace F's mapping if the guard put pages of zeros in it. */
int npk_file_unpatch(NpkStore *st, NpkFile *f, NpkErr *e);
/* Free a retired block: a mapping (LEN > 0) or allocated memory. */
void npk_block_release(void *p, size_t len);

/* ---- replaced catalogs (store_catalog.c) ---- */
/* Let go of CAT, a committed catalog just replaced (st->mu held), through
** NOTE (npk_retire_note), which this takes: its arrays wait on the retire
** list while any session is pinned. */
void npk_catalog_retire(NpkStore *st, NpkCatalog *cat, NpkRetired *note);
void npk_retired_free(NpkStore *st);

/* ---- mappings guarded against SIGBUS (store_guard.c) ---- */
/* Register mapping [P, P+LEN), whose absorbed faults count in *COUNT
** (which must outlive the registration): its slot, or -1 if none is
** free. */
int npk_guard_add(const void *p, size_t len, uint64_t *count);
/* The same, for a mapping written to when RW is 1. */
int npk_guard_add_rw(const void *p, size_t len, uint64_t *count, int rw);
/* Forget the mapping starting at P, before it is unmapped. */
void npk_guard_remove(const void *p);
/* 1 if a page of SLOT's mapping was replaced by zeros. */
int npk_guard_hit(int slot);

/* ---- catalog (store_catalog.c) ---- */
int npk_catalog_parse(const unsigned char *p, size_t n, NpkCatalog *cat,
                      NpkErr *e);
int npk_catalog_encode(const NpkCatalog *cat, NpkBuf *b);
/* The same, OFF (if not NULL) receiving where each array's entry starts. */
int npk_catalog_encode_at(const NpkCatalog *cat, NpkBuf *b, size_t *off);
/* Turn IMG, the encoding of FROM (its entries at *POFF), into that of TO,
** in place, when TO is FROM with some arrays replaced by versions of the
** same name, data file and ndim (what changing rows does, or saving over
** an array) and new arrays after them (what saving a new name does): the
** cost is that of the arrays that changed, and the bytes of the new
** arrays are appended.  AT (NAT entries, no position twice) lists the
** positions where TO may differ from FROM, when nothing was added, or is
** NULL (any).  *POFF is replaced by a longer array when arrays were
** added.  NPK_ERROR, or NPK_NOMEM, with IMG and *POFF untouched,
** otherwise. */
int npk_catalog_patch(const NpkCatalog *from, const NpkCatalog *to, NpkBuf *img,
                      size_t **poff, const int *at, int nat);
/* NPK_OK if npk_catalog_patch(FROM, TO, ..., AT, NAT) would apply. */
int npk_catalog_patchable(const NpkCatalog *from, const NpkCatalog *to,
                          const int *at, int nat);
/* The bytes npk_catalog_patch rewrites in the entry of A that starts at
** OFF: [*LO, *LO + *LEN).  Besides, it rewrites the header's total and
** count, NPK_CAT_HEAD_LEN bytes at NPK_CAT_HEAD_OFF, and appends the
** entries of new arrays. */
void npk_catalog_patch_span(const NpkArray *a, size_t off, size_t *lo,
                            size_t *len);
#define NPK_CAT_HEAD_OFF 8
#define NPK_CAT_HEAD_LEN 12

/* The most of the old catalog a commit rewrites in place (store_txn.c):
** more would make the journal hold it all, where replacing the file whole
** writes it once.  So the most a commit cuts from the catalog's end (arrays
** dropped), which playing its journal back puts back. */
#define NPK_CAT_SUFFIX_MAX (1u << 20)
/* Append A to CAT, which takes the caller's reference; NPK_NOMEM leaves
** CAT as it was.  ST (NULL for a catalog no store holds yet) is the
** store whose files the arrays of a chunk let go may hold. */
int npk_catalog_add(NpkStore *st, NpkCatalog *cat, NpkArray *a);
/* Make the chunk holding position I CAT's own (a copy if another catalog
** shares it), so that npk_catalog_put may change it: NPK_NOMEM, CAT
** unchanged, if there is no memory for the copy.  ST as for
** npk_catalog_add. */
int npk_catalog_own(NpkStore *st, NpkCatalog *cat, int i);
/* Put A (its reference passing to CAT) at position I, whose chunk CAT
** owns (npk_catalog_own); the array there before is returned with its
** reference. */
NpkArray *npk_catalog_put(NpkCatalog *cat, int i, NpkArray *a);
/* Take the I-th array out of CAT, the later ones moving up one, and drop
** its reference: NPK_NOMEM, CAT unchanged, if a chunk could not be
** copied. */
int npk_catalog_remove(NpkStore *st, NpkCatalog *cat, int i);
void npk_catalog_clear(NpkStore *st, NpkCatalog *cat);
/* Position of NAME in CAT, or -1: a hash lookup, so that a store of
** thousands of arrays costs no more per statement than one of a few. */
int npk_catalog_find(const NpkCatalog *cat, const char *name);
/* NPK_CORRUPT, the message starting with WHAT, if two arrays keep rows in
** one file, or one keeps them in a file of the store's own (the catalog,
** lock file, journal, a bitmap, backup or temporary name). */
int npk_catalog_check_files(const NpkCatalog *cat, const char *what, NpkErr *e);
/* The same for one array A of CAT whose file is new, the others having
** passed: one pass over CAT, no sort. */
int npk_catalog_check_new_file(const NpkCatalog *cat, const NpkArray *a,
                               const char *what, NpkErr *e);
/* Why F may not be a data or segment file (one of the store's own files,
** or a name kept for backups, new files or bitmaps), or NULL if it may. */
const char *npk_reserved_name(const char *f);
/* TO (uninitialised) becomes a copy of FROM sharing its chunks and index:
** NPK_NOMEM, TO empty, if there is no memory for the list of chunks. */
int npk_catalog_copy(const NpkCatalog *from, NpkCatalog *to);
NpkArray *npk_array_new(const char *name, int dtype, uint32_t ndim,
                        const uint64_t *shape);
void npk_array_ref(NpkArray *a);
/* Close A's files and free its segments and bitmap (A stays, empty). */
void npk_array_drop_storage(NpkStore *st, NpkArray *a);
void npk_array_unref(NpkStore *st, NpkArray *a);
int npk_shape_bytes(int dtype, uint32_t ndim, const uint64_t *shape,
                    uint64_t *row_bytes, uint64_t *total);

/* ---- bitmaps (store_bitmap.c) ---- */
NpkBitmap *npk_bm_new(uint64_t nbits, int live);
NpkBitmap *npk_bm_copy(const NpkBitmap *b);
void npk_bm_free(NpkBitmap *b);
int npk_bm_parse(const unsigned char *p, size_t n, uint64_t rows,
                 NpkBitmap **pb, const char *path, NpkErr *e);
int npk_bm_encode(const NpkBitmap *b, NpkBuf *out);
/* Bytes of B's encoding (npk_bm_encode), its length; of the encoding of a
** bitmap of ROWS rows. */
uint64_t npk_bm_encoded_size(const NpkBitmap *b);
uint64_t npk_bm_size_for(uint64_t rows);
/* Bytes [LO, LO+N) of B's encoding appended to OUT (LO, N multiples of 8,
** within npk_bm_encoded_size). */
void npk_bm_encode_range(const NpkBitmap *b, uint64_t lo, uint64_t n,
                         NpkBuf *out);
/* The first 8-byte unit at or after byte AT where the encodings of A and
** B differ (up to the longer's end), or UINT64_MAX when they are equal. */
uint64_t npk_bm_next_diff(const NpkBitmap *a, const NpkBitmap *b, uint64_t at);
int npk_bm_get(const NpkBitmap *b, uint64_t row);
void npk_bm_set(NpkBitmap *b, uint64_t row, int live);
int npk_bm_extend(NpkBitmap *b, uint64_t nbits, int live);
int npk_bm_truncate(NpkBitmap *b, uint64_t nbits);
int npk_bm_select(NpkBitmap *b, uint64_t k, uint64_t *row);
/* The first live row >= ROW, or UINT64_MAX if there is none. */
uint64_t npk_bm_next(const NpkBitmap *b, uint64_t row);
/* The live row K live rows past the first one >= ROW (K = 0: that one), or
** UINT64_MAX: popcounts a word at a time, for walking a slice's rows. */
uint64_t npk_bm_skip(const NpkBitmap *b, uint64_t row, uint64_t k);
int npk_bm_rank(NpkBitmap *b, uint64_t row, uint64_t *rank);

/* ---- segment manifests (store_segment.c) ---- */
typedef struct NpkSegEntry NpkSegEntry;
/* One entry of a .npkseg manifest. */
struct NpkSegEntry {
  char *file;     /* segment file, relative to the store */
  uint64_t rows;  /* rows it holds */
  uint64_t bytes; /* bytes it holds */
};
int npk_seg_parse(const char *json, size_t n, NpkSegEntry **pp, int *pn,
                  const char *path, NpkErr *e);
void npk_seg_free(NpkSegEntry *s, int n);
int npk_relpath_valid(const char *p);

/* ---- overlay of replaced rows (store_overlay.c) ---- */
const void *npk_ov_get(const NpkOverlay *ov, uint64_t row);
void npk_ov_free(NpkStore *st, NpkOverlay *ov);
/* Free OV at once (npk_ov_free, or the retire list, when no session of ST
** can still hold a row pointer into it). */
void npk_ov_release(NpkOverlay *ov);
/* NPK_IOERR, naming array NAME, once a fault has lost a page of OV's spill
** file (a disk error reading it back): its rows can no longer be trusted,
** for reading or committing, until the transaction ends. */
int npk_ov_check(NpkStore *st, NpkOverlay *ov, const char *name, NpkErr *e);

/* ---- locks (store_lock.c) ---- */
#define NPK_LOCK_MARK_OFF \
  64 /* commit mark in the lock file: 1 while a
     ** commit may leave a hot journal, 2 while a
     ** transaction has new files (npktmp-) that a
     ** crash would leave behind, else 0 */
#define NPK_MARK_NEWFILES 2
#define NPK_RECHECK_NS \
  1000000 /* how long a stat for changes by programs
          ** that ignore the lock is trusted */
#define NPK_LOCK_SEQ_OFF \
  72 /* commit count in the lock file: raised by
     ** every session before it lets EXCLUSIVE go */
int npk_lock_open(NpkStore *st, int *pfd, int *prw, NpkErr *e);
int npk_lock_create(NpkStore *st, int *pfd, NpkErr *e);
int npk_lock_mark(NpkSession *s, uint64_t v);
int npk_lock_marked(NpkStore *st);
int npk_lock_seq(NpkStore *st, uint64_t *pseq);
int npk_lock_to(NpkSession *s, int level, NpkErr *e);
int npk_lock_reserved(NpkSession *s, NpkErr *e);
void npk_lock_release(NpkSession *s);

/* ---- journal (store_journal.c) ---- */
typedef struct NpkJournal NpkJournal;
void npk_jr_link(NpkBuf *b, const char *rel, int existed);
void npk_jr_trunc(NpkBuf *b, const char *rel, uint64_t len);
void npk_jr_region(NpkBuf *b, const char *rel, uint64_t off, const void *p,
                   size_t n);
void npk_jr_temp(NpkBuf *b, const char *rel);
char *npk_backup_name(const char *rel);
/* The journal file is this header followed by the records. */
#define NPK_JOURNAL_HEADER 24
void npk_journal_header(const NpkBuf *records,
                        unsigned char hdr[NPK_JOURNAL_HEADER]);
/* Records npk_journal_write takes in pieces, after those of its buffer:
** each call appends the next ones to PIECE (about NPK_JOURNAL_PIECE
** bytes) and sets *PDONE when none are left.  A commit that replaced many
** rows journals their old bytes this way, never all of them in memory. */
typedef int (*NpkJrMore)(void *arg, NpkBuf *piece, int *pdone);
#define NPK_JOURNAL_PIECE (1u << 20)
/* Write the journal JR: NPK_JOURNAL_HEADER bytes for its header (filled
** in here), then the records, then MORE's (none if MORE is NULL); LINKED
** if the commit linked backups.  *PSIZE receives its length. */
int npk_journal_write(NpkStore *st, NpkBuf *jr, NpkJrMore more, void *arg,
                      int linked, uint64_t *psize, NpkErr *e);
int npk_journal_delete(NpkStore *st, uint64_t size, int *unlinked, NpkErr *e);
void npk_sweep(NpkStore *st);
int npk_journal_recover(NpkStore *st, NpkErr *e);
/* LOCKED: the caller holds SHARED or more, which keeps commits out. */
int npk_journal_exists(NpkStore *st, int locked);
int npk_journal_check(NpkStore *st, NpkErr *e);

/* ---- committed state and reading (store.c) ---- */
/* npk_store_open without NPK_OPEN_DROP's wipe (store_write.c does that). */
int npk_store_attach(const char *dir, int flags, NpkStore **pp, char **errmsg);
int npk_store_refresh(NpkStore *st, NpkErr *e);
void npk_store_hold_catalog(NpkStore *st);
int npk_array_load_storage(NpkStore *st, NpkArray *a, NpkErr *e);
/* Load A's storage if it is not yet: NPK_CORRUPT naming the file if it
** does not add up, at every use. */
int npk_array_ready(NpkSession *s, NpkArray *a);
/* NPK_CORRUPT naming the file if one of A's data files no longer holds
** the rows the catalog gives it (cut short by another program). */
int npk_array_check_sizes(NpkSession *s, const NpkArray *a);
int npk_shared_lock(NpkSession *s);
int npk_lock_writable(NpkSession *s);
int npk_lock_settle(NpkSession *s);
void npk_unpin(NpkSession *s);
NpkCatalog *npk_session_catalog(NpkSession *s);
int npk_find(NpkSession *s, const char *name, NpkArray **pa);
uint64_t npk_live_rows(const NpkArray *a);
int npk_array_row(NpkSession *s, NpkArray *a, uint64_t row, const void **pp);
int npk_array_copy_range(NpkSession *s, NpkArray *a, uint64_t row, uint64_t n,
                         unsigned char *dst);
int npk_array_copy_live(NpkSession *s, NpkArray *a, uint64_t *pos,
                        uint64_t count, void *dst);

/* ---- transactions (store_txn.c) ---- */
int npk_undo_push(NpkSession *s, int op, NpkArray *arr, uint64_t a, uint64_t b,
                  void *data);
/* Room for one more undo record, so that its push cannot fail once the
** change it undoes is made. */
int npk_undo_room(NpkSession *s);
int npk_undo_catalog(NpkSession *s);
/* Note that A's committed data file is about to grow in this transaction
** (checked writable and whole first). */
int npk_txn_grow(NpkSession *s, NpkArray *a);
/* Note that position I of the transaction's catalog now holds another
** version of its array, or (I < 0) that arrays were dropped (arrays added
** after the committed ones need no note). */
void npk_txn_slot(NpkSession *s, int i);
int npk_op_begin(NpkSession *s, int *autoc, int *level);
int npk_op_end(NpkSession *s, int autoc, int level, int rc);
NpkOverlay *npk_ov_new(uint64_t row_bytes);
int npk_ov_put(NpkStore *st, NpkOverlay *ov, uint64_t row, const void *p,
               void **old, NpkErr *e);
/* Take out every row put in slot FROM or after (slots are given in order
** and never again). */
void npk_ov_drop_from(NpkOverlay *ov, uint64_t from);
/* The next replaced row at or after hash position *POS (start at 0): 1
** with *ROW and *BYTES set and *POS moved past it, 0 at the end. */
int npk_ov_next(const NpkOverlay *ov, uint64_t *pos, uint64_t *row,
                const void **bytes);

#endif /* NPK_STORE_INT_H */
