/*
** store.h — the NumPack store engine: a directory of named N-dimensional
** arrays in NumPack 0.7's on-disk format, with transactions.
**
** This layer has no SQLite dependency.  It owns the files of a store:
**
**   metadata.npkm          catalog (NPKB v1)
**   data_<name>.npkd       raw C-order little-endian rows
**   data_<name>.npkseg     JSON manifest of a segmented array (read only)
**   deleted_<name>.npkb    deletion bitmap (1 = live)
**   metadata.npkm-lock     lock file (ours; NumPack ignores it)
**   metadata.npkm-journal  rollback journal (ours; present only mid-commit
**                          or after a crash)
**
** Objects:
**   NpkStore    one per store directory and access mode (read-write or
**               read-only) per process, from a refcounted registry keyed by
**               device and inode, holding the last committed state seen:
**               the catalog, bitmaps and read-only mappings.
**   NpkSession  one client of a store (a database connection): its own lock
**               on the lock file and its own pending transaction.  Readers in
**               other sessions never see a session's uncommitted changes.
**
** Locking follows SQLite's rollback-journal model with open-file-description
** locks on metadata.npkm-lock: SHARED while reading, RESERVED while a write
** transaction is open, PENDING+EXCLUSIVE while a commit is applied.  Waits
** are bounded by the session's busy timeout.
**
** Row numbers: "physical" rows count deleted rows too (the catalog's
** shape[0]); "logical" rows count only live rows (NumPack's index).
*/
#ifndef NPK_STORE_H
#define NPK_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

/* Result codes.  Every function returning int returns one of these.  Each
** condition a caller may want to tell apart (a missing array, a missing
** store, a row out of range, a value that does not fit, ...) has a code of
** its own, which conn.c's npk_sqlite_rc() turns into a SQLite result code
** of its own: callers branch on codes, never on message text. */
#define NPK_OK       0
#define NPK_ERROR    1 /* a bad argument no other code describes */
#define NPK_NOMEM    2
#define NPK_IOERR    3  /* a system call failed */
#define NPK_CORRUPT  4  /* a file of the store is damaged */
#define NPK_BUSY     5  /* lock not obtained within the busy timeout */
#define NPK_NOTFOUND 6  /* no such array */
#define NPK_EXISTS   7  /* array already exists */
#define NPK_RANGE    8  /* row index out of range, or row deleted */
#define NPK_READONLY 9  /* store or session opened read-only */
#define NPK_MISUSE   10 /* call out of sequence (e.g. commit w/o begin) */
#define NPK_FULL     11 /* disk full */
#define NPK_LOCKED \
  12 /* the array is being read by an open scan of this
     ** session (npk_scan_begin) */
#define NPK_INTERRUPT \
  13                  /* stopped at the interrupt source's request
                      ** (npk_set_interrupt_source) */
#define NPK_TOOBIG 14 /* more than a limit allows (rows an index lists) */
#define NPK_MISMATCH \
  15 /* a value of another dtype or row shape than its array's */
#define NPK_NOFILE \
  16 /* no such file: the store (no directory, or not a numpack store),
     ** or a file of it */
#define NPK_STALE 17 /* written on a newer state than was read */

/* An error being reported, by the engine and by the parsers of what comes
** from outside (index.c, npy.c): code and message. */
typedef struct NpkErr NpkErr;
struct NpkErr {
  int rc;        /* NPK_OK or the error code */
  char msg[768]; /* "numpack: ..." message */
};
/* E's message without its "numpack: " prefix, for a caller that words
** its own message around it. */
const char *npk_err_text(const NpkErr *e);

#define NPK_MAX_NDIM 32 /* NumPy's own limit */
#define NPK_MAX_ROWS \
  UINT64_C(0x7FFFFFFFFFFFFFFF) /* rows of an array:
                               ** NumPy's intp, and SQLite's rowids */
/* Rows a deletion bitmap of a zero-width array (a row of no bytes, such
** as shape (n, 0)) may cover: such an array has no data to bound its row
** count, so deleting rows of one is refused past this (2^26 rows, an 8 MiB
** bitmap), except rows up to the end, which need no bits. */
#define NPK_MAX_ZW_BITMAP_ROWS (UINT64_C(1) << 26)
#define NPK_MAX_NAME           238 /* "deleted_" + name + ".npkb-tmp" fits NAME_MAX */

/* Flags for npk_store_open(). */
#define NPK_OPEN_CREATE   0x01 /* create the directory and catalog */
#define NPK_OPEN_DROP     0x02 /* wipe the store first (drop_if_exists) */
#define NPK_OPEN_READONLY 0x04 /* never write, never take RESERVED */

typedef struct NpkStore NpkStore;
typedef struct NpkSession NpkSession;
typedef struct NpkArray NpkArray;
typedef struct NpkArrayInfo NpkArrayInfo;
typedef struct NpkStats NpkStats;

/* A snapshot of one array's description, as seen by a session. */
struct NpkArrayInfo {
  const char *name; /* array name (valid until the next call; outside
                    ** npk_read_begin/npk_read_end, until another
                    ** session's commit frees the array: copy it) */
  int dtype;        /* NPK_BOOL .. NPK_COMPLEX128 */
  uint32_t ndim;    /* number of dimensions, >= 1 */
  uint64_t
      shape[NPK_MAX_NDIM]; /* physical shape: shape[0] counts deleted rows */
  uint64_t rows;           /* shape[0] */
  uint64_t live_rows;      /* rows not deleted */
  uint64_t row_bytes;      /* bytes of one row: item size x shape[1..] */
  uint64_t modify_time;    /* microseconds since the Unix epoch */
  const char *data_file;   /* data file relative to the store */
  int segmented;           /* 1 if stored as a .npkseg manifest */
};

/* Real I/O counters of a store object (process-wide, since it was opened). */
struct NpkStats {
  uint64_t bytes_read;    /* bytes read by read()/pread() and copied rows */
  uint64_t bytes_written; /* bytes written to any file of the store */
  uint64_t rows_appended; /* committed appended rows */
  uint64_t rows_replaced; /* committed replaced rows */
  uint64_t rows_deleted;  /* committed deleted rows */
  uint64_t commits;       /* committed write transactions */
  uint64_t rollbacks;     /* rolled back write transactions */
  uint64_t fsyncs;        /* fsync()/fdatasync() calls */
  uint64_t recoveries;    /* hot journals rolled back */
  uint64_t read_locks;    /* SHARED locks taken to read (statements or
                          ** transactions that read the store) */
  uint64_t catalog_stats; /* stat calls made to learn whether another
                          ** session committed */
  uint64_t last_commit_fsyncs; /* fsyncs of the last commit of this process
                               ** that changed the store (0 when synchronous
                               ** is OFF) */
};

/* 1 if NAME is acceptable as an array name (see NPK_MAX_NAME). */
int npk_name_valid(const char *name);

/* ---- store and sessions ---------------------------------------------- */

/* Open (or share) the store at DIR.  Nothing on disk changes unless FLAGS
** has NPK_OPEN_CREATE (which creates the directory and an empty catalog if
** there is none); a directory without a catalog (nor journal) is otherwise
** NPK_NOFILE, "not a numpack store", as is a DIR that does not exist.  A
** hot journal left by a crash is played back by the next write transaction,
** never by a reader.  On error *ppStore is NULL and ERRMSG (if not NULL)
** receives an npk_malloc'd message that the caller frees with npk_free(). */
int npk_store_open(const char *dir, int flags, NpkStore **ppStore,
                   char **errmsg);
void npk_store_release(NpkStore *p); /* drop one reference */
const char *npk_store_dir(NpkStore *p);
/* 1 if the store's directory does not tell names apart by case: numpack
** reads the store and refuses every write to it (NPK_READONLY). */
int npk_store_folds_case(NpkStore *p);
/* The monotonic clock in nanoseconds, and how long a check for changes by
** programs that ignore the lock (a stat) is trusted: see store.c. */
int64_t npk_monotonic_ns(void);
int64_t npk_recheck_ns(void);
void npk_store_stats(NpkStore *p, NpkStats *out);

int npk_session_open(NpkStore *p, NpkSession **ppSes);
void npk_session_close(NpkSession *s); /* rolls back an open transaction */
NpkStore *npk_session_store(NpkSession *s);
const char *npk_errmsg(NpkSession *s); /* message of the last error */
void npk_set_busy_timeout(NpkSession *s, int ms);
/* Ask FN(ARG) for the busy timeout in milliseconds whenever a lock is not
** granted at once, instead of using a fixed one: the timeout can then
** follow a setting that changes (SQLite's PRAGMA busy_timeout) at no cost
** while there is no contention.  FN returns -1 when it ran out of memory:
** the lock is then not taken (NPK_NOMEM). */
void npk_set_busy_source(NpkSession *s, int (*fn)(void *), void *arg);
/* Ask FN(ARG) at the start of each write transaction whether its writes
** must reach the disk: when it returns 0 (SQLite's PRAGMA synchronous=OFF)
** nothing is fsynced, so a commit stays atomic if the process dies but not
** if the machine loses power.  Without a source every commit is synced.
** Playing back a crashed commit's journal is always synced.  FN returns -1
** when it ran out of memory: the transaction is then not begun
** (NPK_NOMEM). */
void npk_set_sync_source(NpkSession *s, int (*fn)(void *), void *arg);
/* Ask FN(ARG) before each piece of a long copy (compaction, clone, the
** rewrite of a segmented array: every 4 MiB through memory, every 64 MiB
** file to file) whether to stop: nonzero fails the operation with
** NPK_INTERRUPT, undone as any other failure.  SQLite's sqlite3_interrupt()
** reaches the engine this way. */
void npk_set_interrupt_source(NpkSession *s, int (*fn)(void *), void *arg);
/* NPK_INTERRUPT, with its message, when the interrupt source asks to stop;
** NPK_OK otherwise (and without a source). */
int npk_check_interrupt(NpkSession *s);
/* npk_check_interrupt of SESSION (an NpkSession) as a yes/no callback, for
** loops that take one (the k-nearest-neighbour search). */
int npk_interrupt_requested(void *session);

/* Reading: between npk_read_begin() and npk_read_end() the session holds a
** SHARED lock and sees one committed state (plus its own pending changes).
** Calls nest.  Row pointers stay valid until the matching npk_read_end().
** Reading changes nothing on disk: it creates no lock file (a store without
** one is read without locking) and never plays back a journal; a hot
** journal makes it fail with NPK_BUSY until a write transaction (npk_begin)
** recovers the store. */
int npk_read_begin(NpkSession *s);
void npk_read_end(NpkSession *s);

/* Write transactions.  Outside an explicit transaction every write call is
** its own transaction (begin, apply, commit). */
int npk_begin(NpkSession *s);
/* Play back a hot journal now, as the next write transaction would: for a
** caller about to write (a table being created), never for a reader. */
int npk_recover(NpkSession *s);
int npk_commit(NpkSession *s);
int npk_rollback(NpkSession *s);
int npk_in_txn(NpkSession *s);
/* Which committed state the session reads (inside npk_read_begin and
** npk_read_end, or inside a write transaction: the state it began on): a
** number that changes with every commit the store sees.  A caller whose
** transaction reads under several read locks (one per statement) and then
** writes keeps the first one and hands it to npk_check_read_state after
** npk_begin: a commit of another connection in between gives NPK_STALE,
** so that nothing is written from values that were replaced meanwhile (a
** lost update). */
uint64_t npk_read_state(NpkSession *s);
int npk_check_read_state(NpkSession *s, uint64_t state);
/* Savepoints nest inside a transaction.  npk_savepoint gives the new
** savepoint's level in *pLevel: 0 for the outermost, then 1, 2, ... (as
** SQLite numbers them for virtual tables).  Releasing level L closes every
** level >= L and keeps their changes; rolling back to L undoes every change
** made since savepoint L was opened and keeps level L open, as SQLite's
** ROLLBACK TO does. */
int npk_savepoint(NpkSession *s, int *pLevel);
int npk_release(NpkSession *s, int level);
int npk_rollback_to(NpkSession *s, int level);

/* ---- arrays ---------------------------------------------------------- */

int npk_array_count(NpkSession *s, int *pCount);
/* Information on the I-th array (0-based) or on the array called NAME. */
int npk_array_info_at(NpkSession *s, int i, NpkArrayInfo *out);
int npk_array_info(NpkSession *s, const char *name, NpkArrayInfo *out);
/* Every array's information, in catalog order, from the committed state in
** memory without taking the lock, when it is known to be the latest (as
** npk_array_info finds it): FN(ARG, N, I, info) is called for I = 0..N-1
** with the store's mutex held (it must not call back into the store), and
** *PDONE set.  *PDONE stays 0, and nothing is called, when the caller must
** read under the lock instead.  Returns FN's first nonzero result. */
int npk_each_array_unlocked(NpkSession *s,
                            int (*fn)(void *, int, int, const NpkArrayInfo *),
                            void *arg, int *pdone);

/* Physical row ROW of NAME copied into BUF (room for the array's row
** bytes, at most CAP) without taking the lock, with the array's
** information in *INFO: a point lookup of a statement outside any
** transaction, which would otherwise pay more system calls for the lock
** than for the rest of its work.  *PFOUND is 1 when the row exists and is
** live.  NPK_BUSY, with nothing read, when the caller must take the lock
** and read as usual: the committed state in memory is not known to be the
** latest, a commit is under way, the array's rows are not in one file
** already mapped and checked, or a commit of ours came while the row was
** copied.  *PSEQ: the lock file's commit count of the state read. */
int npk_read_row_unlocked(NpkSession *s, const char *name, uint64_t row,
                          void *buf, size_t cap, NpkArrayInfo *info,
                          int *pfound, uint64_t *pseq);
/* The N rows at logical ROWS (each < live rows) of array NAME, which WANT
** describes, copied into DST one after the other without the lock, as
** npk_read_row_unlocked copies one: NPK_BUSY, DST to be written again
** under the lock, when that cannot be done (the array is not as WANT
** describes it, or a commit may have changed a row meanwhile).  WANT's
** pointers are not used: the array version they point into may have been
** freed by another session's commit since WANT was filled. */
int npk_read_rows_unlocked(NpkSession *s, const char *name,
                           const NpkArrayInfo *want, const uint64_t *rows,
                           uint64_t n, void *dst);
/* NPK_OK when the committed state S reads now (under its read lock) is the
** one of commit count SEQ, which npk_read_row_unlocked gave; else NPK_STALE:
** a statement that read a row without the lock and reads again would see
** two states. */
int npk_check_read_seq(NpkSession *s, uint64_t seq);
/* 1 when this session's own transactions (commits, and rollbacks that
** removed new files) raised the lock file's commit count since the last
** call, each from the count the one before it left: from *PFROM to *PTO.
** A reader holding the state of count *PFROM (npk_read_row_unlocked) may
** take *PTO as its own next state, as a read lock held by the session
** would have seen the session's writes. */
int npk_own_commits(NpkSession *s, uint64_t *pfrom, uint64_t *pto);

/* Create NAME, or overwrite it whole (NumPack's save).  SHAPE[0] rows of
** row shape SHAPE[1..NDIM-1]; DATA holds all rows in C order. */
int npk_save(NpkSession *s, const char *name, int dtype, uint32_t ndim,
             const uint64_t *shape, const void *data);
/* Append NROWS rows; dtype and row shape must match the array's. */
int npk_append(NpkSession *s, const char *name, int dtype, uint32_t ndim,
               const uint64_t *shape, const void *data);
/* Replace N physical rows in place with N rows from DATA.  Every row must
** exist and be live. */
int npk_replace_rows(NpkSession *s, const char *name, const uint64_t *rows,
                     uint64_t n, const void *data);
/* Mark N physical rows deleted.  Every row must exist and be live. */
int npk_delete_rows(NpkSession *s, const char *name, const uint64_t *rows,
                    uint64_t n);
/* Mark deleted the COUNT live rows at logical indexes FIRST, FIRST+STEP,
** ... (STEP >= 1; every one must exist): a slice, without a list of its
** rows.  Time is linear in the rows it spans, memory in the array's bitmap;
** deleting every live row from FIRST on of a zero-width array needs no
** bitmap past FIRST. */
int npk_delete_slice(NpkSession *s, const char *name, uint64_t first,
                     uint64_t step, uint64_t count);
int npk_drop(NpkSession *s, const char *name);
int npk_clone(NpkSession *s, const char *src, const char *dst);
int npk_compact(NpkSession *s, const char *name);
int npk_reset(NpkSession *s);

/* Reading rows.  Must be called inside npk_read_begin/npk_read_end or a
** write transaction.  The pointer refers to the mapping or to the session's
** pending copy of the row; it stays valid while the read (or transaction)
** lasts and the row is not changed again by this session. */
int npk_row_ptr(NpkSession *s, const char *name, uint64_t row,
                const void **ppRow);
/* A session and an array, as the ARG of npk_row_source_at: npk_row_ptr in
** the shape of a row callback (the k-nearest-neighbour scan's row_at). */
typedef struct NpkRowSource NpkRowSource;
struct NpkRowSource {
  NpkSession *ses;   /* the session reading */
  const char *array; /* the array's name */
};
int npk_row_source_at(void *source, uint64_t row, const void **pp);
/* 1 if physical ROW exists and is live, else 0. */
int npk_row_live(NpkSession *s, const char *name, uint64_t row);
/* Map a logical index (counting live rows, 0-based) to a physical row, in
** O(log n).  NPK_RANGE if LOGICAL >= live rows. */
int npk_logical_to_physical(NpkSession *s, const char *name, uint64_t logical,
                            uint64_t *pRow);
/* npk_logical_to_physical for the N indices of ROWS, in place, with one
** look-up of the array. */
int npk_logical_to_physical_n(NpkSession *s, const char *name, uint64_t *rows,
                              uint64_t n);
/* Copy the N physical rows ROWS of array NAME (each < rows) into DST, one
** after the other, with one look-up of the array. */
int npk_copy_rows(NpkSession *s, const char *name, const uint64_t *rows,
                  uint64_t n, void *dst);
/* Live rows before physical ROW (ROW <= rows): NumPack's logical index of
** ROW when it is live.  O(1) after the first call following a change. */
int npk_physical_to_logical(NpkSession *s, const char *name, uint64_t row,
                            uint64_t *pLogical);
/* The first live physical row >= ROW, or rows if there is none. */
int npk_next_live(NpkSession *s, const char *name, uint64_t row,
                  uint64_t *pNext);

/* A direct view of one array for fast scans, valid while the session's read
** (or transaction) lasts and npk_change_count() has not moved.  Taking a
** view checks that the data files still hold every row (NPK_CORRUPT if one
** was shortened behind our back); one shortened while the view is in use
** is caught by npk_map_check.  When BASE
** is not NULL every physical row r is at BASE + r * row_bytes; otherwise
** (segments, or rows replaced in this transaction) use npk_row_ptr. */
typedef struct NpkView NpkView;
struct NpkView {
  uint64_t rows;             /* physical rows to visit: the array's, or
                             ** fewer when every row past them is deleted */
  uint64_t live_rows;        /* rows not deleted */
  uint64_t row_bytes;        /* bytes per row */
  int dtype;                 /* element type */
  const uint64_t *live;      /* bitmap words (bit set = live) covering
                             ** rows [0, rows), or NULL */
  const unsigned char *base; /* all rows, contiguous, or NULL */
};
int npk_view(NpkSession *s, const char *name, NpkView *out);
/* Where an array's rows are on disk, for a program that maps the files
** itself (numpack_files): its data files in row order, and its live rows.
** Every path was checked when the array's files were opened (a relative
** name inside the store, no symbolic link on the way) and every size is
** checked again by npk_data_files, so a mapping of a file's ROWS rows from
** OFFSET holds exactly what the catalog describes. */
typedef struct NpkDataFile NpkDataFile;
struct NpkDataFile {
  const char *path;   /* absolute: the store's directory and the name */
  uint64_t offset;    /* byte offset of its first row in the file */
  uint64_t first_row; /* physical index of its first row */
  uint64_t rows;      /* rows it holds, deleted ones too */
};
typedef struct NpkDataLayout NpkDataLayout;
struct NpkDataLayout {
  int nfiles;           /* data files (0 for a segmented array whose
                        ** manifest lists none) */
  const uint64_t *live; /* bitmap words (bit r%64 of word r/64 set when
                        ** physical row r is live) covering rows
                        ** [0, covered), or NULL when every row is live */
  uint64_t covered;     /* rows the words cover: rows past them are
                        ** deleted (a zero-width array's short bitmap) */
};
/* NAME's layout in *OUT, then FN(ARG, OUT, I, file) for each of its data
** files, I = 0..nfiles-1; returns FN's first nonzero result.  Inside a read
** (or transaction); pointers stay valid while it lasts.  A file now
** shorter than its rows is NPK_CORRUPT naming it.  An array this session's
** open transaction changed is NPK_ERROR: its files do not hold those
** changes before they are committed. */
int npk_data_files(NpkSession *s, const char *name, NpkDataLayout *out,
                   int (*fn)(void *, const NpkDataLayout *, int,
                             const NpkDataFile *),
                   void *arg);
/* Copy the next COUNT live rows at or after physical row *POS into DST
** (COUNT x row_bytes bytes) and move *POS past the last one copied.  Runs
** of rows are read from the file with one pread each, as np.load reads. */
int npk_copy_live_rows(NpkSession *s, const char *name, uint64_t *pos,
                       uint64_t count, void *dst);
/* A statement of this session reads NAME through a view or row pointers
** from now until npk_scan_end (NAME must stay valid that long).  Meanwhile
** whatever would move or remove its rows under it (saving over it,
** compacting or dropping it, resetting the store) is refused with
** NPK_LOCKED, as SQLite refuses DROP TABLE while a statement reads the
** table.  Changing rows in place, deleting and appending stay allowed. */
int npk_scan_begin(NpkSession *s, const char *name);
void npk_scan_end(NpkSession *s, const char *name);
/* A counter that moves whenever this session changes any array. */
uint64_t npk_change_count(NpkSession *s);
/* Savepoints open in the session's transaction (0 outside one). */
int npk_savepoint_count(NpkSession *s);

/* A file shortened by another program while a statement reads it through
** the mapping does not fault: the missing pages read as zeros and a count
** of the store's moves (store_guard.c).  Take npk_map_faults() before
** touching mapped rows and pass it to npk_map_check() after: NPK_CORRUPT,
** naming array NAME, if the count moved, so that no zeros are returned
** (NPK_IOERR if the page lost held rows the transaction replaced: pages of
** its spill file move the count of this session only). */
uint64_t npk_map_faults(NpkSession *s);
int npk_map_check(NpkSession *s, uint64_t mark, const char *name);

/* ---- testing hooks --------------------------------------------------- */

/* Only in the test build of the engine (store_io.c compiled with
** NPK_TEST_HOOKS, libnpkstore_test.la): a program linked with the release
** engine has neither function, and its I/O never fails on purpose. */

/* Fault injection: the Nth I/O call from now of kind KIND fails with ERRNO
** (0 disables).  Kinds: "write", "fsync", "rename", "ftruncate", "read",
** "any" (any of them but "read"), and "full": a disk that fills at the Nth
** write and stays full, failing every later write that needs new blocks
** (past the end of its file) while writes over existing bytes succeed,
** until disarmed.  Allocations: kind "malloc" fails the Nth allocation,
** "oom" the Nth and every later one until disarmed.
** The environment variable NUMPACK_TEST_FAULT=KIND:N:ERRNO arms one at the
** first I/O call of the process. */
void npk_test_fault(const char *kind, int nth, int err);
/* Crash simulation: the next commit calls _exit(77) just before its step
** STEP (1-based, see store_txn.c), leaving the files as a crash would.  For
** tests that fork a child to commit.  The environment variable
** NUMPACK_TEST_CRASH=STEP arms it for a whole process. */
void npk_test_crash_at(int step);
/* A pause of US microseconds in the middle of each row copied by
** npk_read_row_unlocked, for tests that make a commit land inside the
** copy. */
void npk_test_copy_pause(int us);
/* FN(ARG) once a commit has paired its arrays with the committed ones,
** before it waits for EXCLUSIVE (NULL stops it): for tests that make
** another session read the store again there. */
void npk_test_on_plan(void (*fn)(void *), void *arg);
/* While ON, every hard link the engine makes fails with EPERM, as on a
** file system without hard links (FAT, exFAT, some network mounts), so
** that the backups it makes by copy instead are tested.  The environment
** variable NUMPACK_TEST_NOLINKS=1 sets it for a whole process. */
void npk_test_no_links(int on);

/* Recording: FN(ARG, EV) is called after each successful change the
** engine makes to a file or directory of any store (NULL stops it), so
** that test/powerloss_test.c can rebuild what a disk could hold after a
** power cut at any moment.  The engine maps no file writable: every change
** to a file's bytes is a write reported here. */
#define NPK_EV_CREATE    1 /* NAME created empty (inode INO) */
#define NPK_EV_WRITE     2 /* LEN bytes DATA at OFF into inode INO */
#define NPK_EV_TRUNCATE  3 /* inode INO set to LEN bytes */
#define NPK_EV_FALLOCATE 4 /* blocks reserved, size kept: [OFF, OFF+LEN) */
#define NPK_EV_FSYNC     5 /* inode INO synced */
#define NPK_EV_DIRSYNC   6 /* a directory synced: NAME, or the store's */
#define NPK_EV_RENAME    7 /* NAME renamed to NAME2 (replacing it) */
#define NPK_EV_LINK      8 /* NAME2 made a hard link to NAME */
#define NPK_EV_UNLINK    9 /* NAME removed */
typedef struct NpkIoEvent NpkIoEvent;
struct NpkIoEvent {
  int kind;          /* NPK_EV_CREATE .. NPK_EV_UNLINK */
  const char *dir;   /* the store's directory */
  const char *name;  /* file, relative to the store, or NULL */
  const char *name2; /* rename or link target, or NULL */
  uint64_t ino;      /* inode of the file written, synced, created */
  uint64_t off;      /* write, fallocate: offset */
  uint64_t len;      /* write, fallocate: bytes; truncate: length */
  const void *data;  /* write: the bytes (valid during the call) */
};
void npk_test_record(void (*fn)(void *arg, const NpkIoEvent *ev), void *arg);

#endif /* NPK_STORE_H */
