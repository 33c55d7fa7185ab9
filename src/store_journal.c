/*
** store_journal.c — metadata.npkm-journal, the rollback journal that makes a
** commit atomic across the several files it touches.
**
** Before a commit changes any file it writes here how to undo each change
** and syncs the journal (npk_journal_write says in which order), then
** changes the files; zeroing the journal's magic, synced, is the commit
** point.  A whole journal (magic, length and checksum right) is "hot": the
** next write transaction plays its records back, restoring the state
** before the commit.  Readers never play back (npk_journal_check).
**
** Playing back needs no new disk space, so that a commit that failed on a
** full disk can always be undone at once by the committer itself and no
** reader is ever held up by it: files the commit replaces whole (data
** files, bitmaps, the catalog) are kept as hard-linked backups and come
** back by rename; rows overwritten in place are written back over the
** same bytes; appended tails are cut off; new files are removed.  (Only a
** file system that copies on write, or a sparse data file, could need
** blocks to write rows back.)  So no record lengthens a file, but for the
** bytes a commit cut from the catalog: one that would is refused for the
** catalog and leaves any other file as it is (catalog_fits), and none can
** fill the disk.  Every record is checked before the first is played
** (check_records), so a journal refused as damaged has changed nothing.
**
** File: "NPKJRNL2", u64 record bytes, u64 checksum of the records
** (wordsum), then the records, then whatever an earlier commit's longer
** journal left behind them.  Journals of earlier releases, "NPKJRNL1"
** with an FNV-1a checksum and the same records, are played back too.  A
** journal whose checksum does not match was never completely written, so
** no file was touched yet: it is simply removed.  (Earlier releases take a
** journal of this one for such a torn journal: a store that lost a commit
** half done is to be opened by this release, or a later one, first.)
** Records (paths relative to the store):
**   'C' u32 len path, u8 existed, u64 n, n bytes   restore whole contents
**                                                   (written by earlier
**                                                   releases only: it needs
**                                                   space to play back)
**   'L' u32 len path, u8 existed                    restore from "<path>-npkbak"
**                                                   (or remove the file if it
**                                                   did not exist)
**   'T' u32 len path, u64 length                    truncate to length
**   'R' u32 len path, u64 offset, u64 n, n bytes    restore a region
**   'X' u32 len path                                remove a temporary file
** Every record is idempotent, so a crash during playback is played again.
**
** The journal's file stays under its name between commits, idle: its
** magic zeroed, its last records behind it (SQLite's journal_mode=PERSIST).
** Creating a file and removing it at every commit costs the file system
** more than the rest of a small commit (a new inode, then freeing it and its
** blocks), and so do the two renames of a spare file kept under another
** name, as releases before this one did: one write of eight bytes replaces
** them, and a commit that reuses the file needs no directory sync.  Only a
** whole journal counts, so releases that remove the journal at the commit
** point read an idle one as a torn journal and remove it, and this one
** plays back a hot journal they left (same format); the spare file they
** kept ("metadata.npkm-journal-spare") is swept away.  The journal is
** input like the rest of the store: a commit opens it without following
** links and writes it only while it has no other name (else it is made
** afresh), playback refuses records naming it, and a catalog may not name
** it as a data file.  Only a writer under EXCLUSIVE creates, writes or
** removes it; readers only read it, and only when the lock file's commit
** mark says a commit may have died (store_lock.c).  A journal grown past
** JOURNAL_KEEP is cut back to its header after the commit point, so that
** one large commit does not leave its size lying in the store.
** No block that holds a journal's magic is ever freed, and no file shows
** at the journal's name before its first block is synced: a file system
** that may show a removed file's bytes in another's new blocks after a
** power cut (ext4 or ext3 with data=writeback) could otherwise put an
** earlier journal, whole, under the journal's name, to be played back over
** later commits.  So a journal is made idle, synced, before it is cut or
** removed (npk_journal_delete; removed only when it cannot be written),
** and a fresh one is made under another name, its zeroed header synced,
** then renamed (make_journal).
** A journal is input like the other files of a store: a record naming a
** symbolic link, or a path through one, stops playback with NPK_CORRUPT
** (store_io.c), and so does one naming a file no commit journals (the lock
** file, the journal itself) or writing in place to a file with another
** hard link, so no journal reaches a file outside the store or lets two
** writers in at once.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_int.h"

#define JMAGIC1 "NPKJRNL1" /* FNV-1a checksum: earlier releases */
#define JMAGIC  "NPKJRNL2" /* word checksum: what commits write */
#define JHEADER NPK_JOURNAL_HEADER

/* FNV-1a of N more bytes at P, from H. */
static uint64_t fnv1a_more(uint64_t h, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= UINT64_C(0x100000001b3);
  }
  return h;
}

#define K1 UINT64_C(0x9E3779B185EBCA87)
#define K2 UINT64_C(0xC2B2AE3D27D4EB4F)
#define K3 UINT64_C(0x165667B19E3779F9)

/* The little-endian word at P. */
static uint64_t word(const unsigned char *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
#else
  return npk_get_u64(p);
#endif
}

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static uint64_t mix(uint64_t acc, uint64_t w) {
  return rotl(acc + w * K2, 31) * K1;
}

/* The checksum of journals this release writes: 64-bit words taken into
** four independent lanes of multiply-rotate steps, then folded with the
** length and the tail.  FNV-1a takes one byte per dependent multiply, so a
** journal of the rows a small commit replaces cost more to check than all
** of its system calls; this takes 32 bytes per step.  It is taken piece by
** piece (ws_add), for a journal written or read in pieces: the same value
** whatever the pieces' lengths. */
typedef struct WordSum WordSum;
struct WordSum {
  uint64_t v[4];          /* the lanes */
  unsigned char tail[32]; /* bytes not yet a whole 32-byte step */
  size_t ntail;           /* how many */
  uint64_t n;             /* bytes taken in all */
};

static void ws_init(WordSum *w) {
  w->v[0] = K1 + K2;
  w->v[1] = K2;
  w->v[2] = 0;
  w->v[3] = 0 - K1;
  w->ntail = 0;
  w->n = 0;
}

static void ws_step(WordSum *w, const unsigned char *p) {
  for (int k = 0; k < 4; k++) w->v[k] = mix(w->v[k], word(p + 8 * k));
}

static void ws_add(WordSum *w, const unsigned char *p, size_t n) {
  /* No bytes may come as a null pointer (an empty buffer's), which memcpy
  ** may not be given even for none. */
  if (n == 0) return;
  w->n += n;
  if (w->ntail) {
    size_t k = 32 - w->ntail < n ? 32 - w->ntail : n;
    memcpy(w->tail + w->ntail, p, k);
    w->ntail += k;
    p += k;
    n -= k;
    if (w->ntail < 32) return;
    ws_step(w, w->tail);
    w->ntail = 0;
  }
  for (; n >= 32; p += 32, n -= 32) ws_step(w, p);
  memcpy(w->tail, p, n);
  w->ntail = n;
}

static uint64_t ws_final(const WordSum *w) {
  const unsigned char *p = w->tail;
  size_t i = 0, n = w->ntail;
  uint64_t h = rotl(w->v[0], 1) + rotl(w->v[1], 7) + rotl(w->v[2], 12) +
               rotl(w->v[3], 18) + w->n;
  for (; i + 8 <= n; i += 8) h = rotl(h ^ mix(0, word(p + i)), 27) * K1;
  for (; i < n; i++) h = rotl(h ^ (p[i] * K3), 11) * K1;
  h ^= h >> 33;
  h *= K2;
  h ^= h >> 29;
  h *= K3;
  return h ^ (h >> 32);
}

static uint64_t wordsum(const unsigned char *p, size_t n) {
  WordSum w;
  ws_init(&w);
  ws_add(&w, p, n);
  return ws_final(&w);
}

static void put_path(NpkBuf *b, int type, const char *rel) {
  npk_buf_u8(b, (unsigned)type);
  npk_buf_u32(b, (uint32_t)strlen(rel));
  npk_buf_put(b, rel, strlen(rel));
}

void npk_jr_link(NpkBuf *b, const char *rel, int existed) {
  put_path(b, 'L', rel);
  npk_buf_u8(b, (unsigned)existed);
}

void npk_jr_trunc(NpkBuf *b, const char *rel, uint64_t len) {
  put_path(b, 'T', rel);
  npk_buf_u64(b, len);
}

/* Written in one piece: a commit journals one record per row it replaces
** (build_journal in store_txn.c). */
void npk_jr_region(NpkBuf *b, const char *rel, uint64_t off, const void *p,
                   size_t n) {
  size_t len = strlen(rel);
  unsigned char *q;
  if (!npk_buf_reserve(b, 21 + len + n)) return;
  q = b->p + b->n;
  q[0] = 'R';
  for (int i = 0; i < 4; i++) q[1 + i] = (unsigned char)(len >> (8 * i));
  memcpy(q + 5, rel, len);
  npk_put_u64(q + 5 + len, off);
  npk_put_u64(q + 13 + len, n);
  memcpy(q + 21 + len, p, n);
  b->n += 21 + len + n;
}

void npk_jr_temp(NpkBuf *b, const char *rel) { put_path(b, 'X', rel); }

char *npk_backup_name(const char *rel) {
  size_t n = strlen(rel);
  char *p = npk_malloc(n + 8);
  if (!p) return NULL;
  memcpy(p, rel, n);
  memcpy(p + n, "-npkbak", 8);
  return p;
}

/* The header of a journal of N bytes of records whose checksum is SUM. */
static void put_header(unsigned char hdr[JHEADER], uint64_t n, uint64_t sum) {
  memcpy(hdr, JMAGIC, 8);
  npk_put_u64(hdr + 8, n);
  npk_put_u64(hdr + 16, sum);
}

void npk_journal_header(const NpkBuf *records,
                        unsigned char hdr[NPK_JOURNAL_HEADER]) {
  put_header(hdr, records->n, wordsum(records->p, records->n));
}

/* 1 if the 8 bytes at P are a journal's magic, of this release or an
** earlier one. */
static int magic(const unsigned char *p) {
  return memcmp(p, JMAGIC, 8) == 0 || memcmp(p, JMAGIC1, 8) == 0;
}

/* Journals up to this size keep their length for the next commit; a
** larger one is cut back to its header. */
#define JOURNAL_KEEP (1u << 20)

/* The name a fresh journal file is made under (swept as any "npktmp-"
** file), its header zeroed and synced before it takes the journal's name. */
#define JOURNAL_TMP "npktmp-journal"

/* Make a fresh journal file at the journal's name: made under JOURNAL_TMP,
** its idle header written and synced, then renamed.  On a file system that
** may show stale bytes in a file's new blocks after a power cut (ext4 or
** ext3 data=writeback), a file made at the journal's name and then written
** could show the freed blocks of an earlier journal, whole, until its own
** bytes are synced: the next writer would play that journal back over
** later commits.  Made this way, the first block at the journal's name is
** always synced zeros before a commit writes its header over it in place:
** stale bytes behind that header fail its checksum, as a torn journal
** does.  The caller syncs the directory before the journal holds a byte
** of the commit.  *PFD receives the descriptor. */
static int make_journal(NpkStore *st, int *pfd, NpkErr *e) {
  static const unsigned char zero[JHEADER];
  NpkErr ignored;
  int fd, rc = npk_io_open(st, JOURNAL_TMP, O_RDWR | O_CREAT | O_TRUNC, &fd, e);
  if (rc) return rc;
  rc = npk_io_pwrite(st, fd, zero, sizeof zero, 0, JOURNAL_TMP, e);
  if (rc == NPK_OK) rc = npk_io_fsync(st, fd, JOURNAL_TMP, e);
  if (rc == NPK_OK) rc = npk_io_rename(st, JOURNAL_TMP, NPK_JOURNAL, e);
  if (rc) {
    close(fd);
    npk_io_unlink(st, JOURNAL_TMP, &ignored);
    return rc;
  }
  *pfd = fd;
  return NPK_OK;
}

/* The journal's file, opened for writing and kept in ST->jfd: the
** descriptor held since an earlier commit while the file at the journal's
** name is still that one (one lstat, where opening costs five calls), else
** the file there opened again when it is a regular file of one name, else
** one made afresh, so that no write reaches a file through a hard link
** planted at the journal's name.  The caller holds EXCLUSIVE and found no
** hot journal, so a file there is an idle one.  *PSIZE receives the file's
** length; *PFRESH is 1 unless the file is the one held, whose name an
** earlier commit of this store made durable. */
static int open_journal(NpkStore *st, uint64_t *psize, int *pfresh, NpkErr *e) {
  struct stat sb;
  NpkErr ignored;
  int fd, rc;
  *pfresh = 0;
  if (st->jfd >= 0 && npk_io_lstat(st, NPK_JOURNAL, &sb, &ignored) == NPK_OK &&
      S_ISREG(sb.st_mode) && sb.st_nlink == 1 && sb.st_dev == st->jdev &&
      sb.st_ino == st->jino) {
    *psize = (uint64_t)sb.st_size;
    return NPK_OK;
  }
  *pfresh = 1;
  if (st->jfd >= 0) close(st->jfd);
  st->jfd = -1;
  rc = npk_io_open(st, NPK_JOURNAL, O_RDWR, &fd, e);
  if (rc == NPK_OK && (fstat(fd, &sb) != 0 || sb.st_nlink != 1)) {
    close(fd);
    rc = npk_io_unlink(st, NPK_JOURNAL, e);
    if (rc == NPK_OK) rc = NPK_NOFILE;
  }
  if (rc == NPK_NOFILE) {
    e->rc = NPK_OK;
    rc = make_journal(st, &fd, e);
    if (rc == NPK_OK && fstat(fd, &sb) != 0) {
      rc = npk_err_sys(e, errno, "cannot stat", NPK_JOURNAL);
      close(fd);
    }
  }
  if (rc) return rc;
  st->jfd = fd;
  st->jdev = sb.st_dev;
  st->jino = sb.st_ino;
  *psize = (uint64_t)sb.st_size;
  return NPK_OK;
}

/* Make the journal idle: its magic overwritten with zeros (the caller
** syncs), so that it no longer reads as whole. */
static int make_idle(NpkStore *st, NpkErr *e) {
  static const unsigned char zero[8];
  return npk_io_pwrite(st, st->jfd, zero, sizeof zero, 0, NPK_JOURNAL, e);
}

/* Write the journal JR (its header filled in here, then the records),
** synced, into the journal's file, kept from one commit to the next under
** its name.  *PSIZE receives the file's length (npk_journal_delete).
**
** The directory is synced before the journal holds a byte of this commit
** when the commit linked backups (LINKED) or the file is new to this
** store's sessions: the backups linked just before, and the journal's
** own entry, reach the disk ahead of its contents.  Were it synced after
** the bytes, a power cut could leave a complete journal with a backup that
** is not this commit's: a file's fsync may commit its own directory entry
** and nothing else (btrfs's log, ext4's fast commits), so the link to the
** backup -- and the removal, by the previous commit, of the old backup by
** that name -- could still be lost, and playback would put the previous
** commit's backup of the catalog back over the last committed one
** (test/powerloss_test.c, "stale_backup").
**
** The file at the name may hold an earlier commit's records behind a
** zeroed magic.  This commit's bytes go over them in one write, then are
** synced (crash step 9): a power cut before the
** sync may leave any mix of the two, which the checksum tells from a whole
** journal, and the commit has touched no file yet.  A commit that linked
** no backup and reuses the file syncs once; one that did, twice.  Records
** MORE gives are written in pieces after JR's, and the header last, its
** checksum taken along: a mix is then still told by the checksum. */
int npk_journal_write(NpkStore *st, NpkBuf *jr, NpkJrMore more, void *arg,
                      int linked, uint64_t *psize, NpkErr *e) {
  char *path = npk_path(st->dir, NPK_JOURNAL);
  NpkBuf piece = {0};
  WordSum sum;
  uint64_t had = 0, off = jr->n;
  int rc, fresh = 0, written = 0, done = more == NULL;
  if (!path) return npk_err(e, NPK_NOMEM, "out of memory");
  ws_init(&sum);
  ws_add(&sum, jr->p + JHEADER, jr->n - JHEADER);
  rc = open_journal(st, &had, &fresh, e);
  if (rc == NPK_OK && (linked || fresh))
    rc = npk_io_fsync(st, st->dirfd, st->dir, e);
  if (rc == NPK_OK) {
    written = 1;
    if (done) {
      put_header(jr->p, jr->n - JHEADER, ws_final(&sum));
      rc = npk_io_pwrite(st, st->jfd, jr->p, jr->n, 0, path, e);
    } else {
      rc = npk_io_pwrite(st, st->jfd, jr->p + JHEADER, jr->n - JHEADER, JHEADER,
                         path, e);
    }
  }
  while (rc == NPK_OK && !done) {
    piece.n = 0;
    rc = more(arg, &piece, &done);
    if (rc == NPK_OK && piece.oom) rc = npk_err(e, NPK_NOMEM, "out of memory");
    if (rc == NPK_OK && piece.n) {
      ws_add(&sum, piece.p, piece.n);
      rc = npk_io_pwrite(st, st->jfd, piece.p, piece.n, off, path, e);
      off += piece.n;
    }
    if (rc == NPK_OK && done) {
      unsigned char hdr[JHEADER];
      put_header(hdr, off - JHEADER, ws_final(&sum));
      rc = npk_io_pwrite(st, st->jfd, hdr, JHEADER, 0, path, e);
    }
  }
  npk_buf_free(&piece);
  /* A longer journal of an earlier commit may lie past this one's end: it
  ** is left there, the header saying where the records end, as SQLite's
  ** journal_mode=PERSIST leaves it.  Cutting it would change the file's
  ** length, which fdatasync then commits to the file system's own journal
  ** besides the bytes (about 1.6 times the cost of the sync on ext4), at
  ** every commit whose journal is shorter than the one before. */
  *psize = had > off ? had : off;
  if (rc == NPK_OK) rc = npk_io_fsync(st, st->jfd, path, e);
  npk_test_crash_point(9);
  if (rc != NPK_OK && written) {
    /* No file changed: a journal left whole would undo nothing, but is
    ** not to be played over a later state. */
    NpkErr ignored;
    if (make_idle(st, &ignored) != NPK_OK) {
      npk_io_unlink(st, NPK_JOURNAL, &ignored);
      close(st->jfd);
      st->jfd = -1;
    }
  }
  npk_free(path);
  return rc;
}

/* Open the journal at its name as ST->jfd, to make it idle: a journal
** being played back (or torn), not this session's.  Only a regular file of
** one name is written (another name may lie outside the store).  *PSIZE
** receives its length. */
static int open_played(NpkStore *st, uint64_t *psize, NpkErr *e) {
  struct stat sb;
  int fd, rc;
  if (st->jfd >= 0) close(st->jfd);
  st->jfd = -1;
  rc = npk_io_open(st, NPK_JOURNAL, O_RDWR, &fd, e);
  if (rc) return rc;
  if (fstat(fd, &sb) != 0 || sb.st_nlink != 1) {
    close(fd);
    return npk_err(e, NPK_ERROR, "%s/%s has another name", st->dir,
                   NPK_JOURNAL);
  }
  st->jfd = fd;
  *psize = (uint64_t)sb.st_size;
  return NPK_OK;
}

/* Make the journal idle (the commit point) and that durable: its magic
** zeroed and the file synced, kept for the next commit.  A journal of more
** than JOURNAL_KEEP bytes is then cut back to its header, so that one large
** commit does not leave its size lying in the store; one not this
** session's (SIZE 0: a journal played back, or torn) is opened for this,
** and closed after, so that the next commit syncs its name.  Its blocks
** are freed only once its magic is zeros on disk: on a file system that
** may show stale bytes in a new file's blocks after a power cut, freed
** blocks holding a whole journal could come back under the journal's name
** (make_journal).  Only when the journal cannot be written is it removed,
** and the directory synced.  *UNLINKED tells whether the journal is no
** longer hot, even if the sync failed. */
int npk_journal_delete(NpkStore *st, uint64_t size, int *unlinked, NpkErr *e) {
  NpkErr ignored;
  int played = size == 0 || st->jfd < 0;
  int rc = played ? open_played(st, &size, e) : NPK_OK;
  *unlinked = 0;
  if (rc == NPK_OK) rc = make_idle(st, e);
  if (rc == NPK_OK) {
    *unlinked = 1;
    npk_test_crash_point(10);
    rc = npk_io_fsync(st, st->jfd, NPK_JOURNAL, e);
    /* The commit stands whether or not the file is cut. */
    if (rc == NPK_OK && size > JOURNAL_KEEP)
      npk_io_ftruncate(st, st->jfd, JHEADER, NPK_JOURNAL, &ignored);
    if (played) {
      close(st->jfd);
      st->jfd = -1;
    }
    return rc;
  }
  e->rc = NPK_OK;
  rc = npk_io_unlink(st, NPK_JOURNAL, e);
  /* The descriptor would keep the removed file's blocks in use. */
  if (st->jfd >= 0) close(st->jfd);
  st->jfd = -1;
  if (rc == NPK_OK) {
    *unlinked = 1;
    npk_test_crash_point(10);
    rc = npk_io_fsync(st, st->dirfd, st->dir, e);
  }
  return rc;
}

/* A name sweep_dir removes: what a commit makes in the store's own
** directory (TOP), and in a subdirectory, where only the backups of
** segment files a commit removed lie. */
static int leftover(const char *n, int top) {
  size_t len = strlen(n);
  if (len > 7 && strcmp(n + len - 7, "-npkbak") == 0) return 1;
  return top &&
         (strncmp(n, "npktmp-", 7) == 0 || strcmp(n, NPK_JOURNAL_SPARE) == 0 ||
          strcmp(n, NPK_CATALOG "-tmp") == 0 ||
          (strncmp(n, "deleted_", 8) == 0 && len > 9 &&
           strcmp(n + len - 9, ".npkb-tmp") == 0));
}

/* Sweep the directory named by the LEN bytes of PATH (the store's when
** LEN is 0; PATH has room for a relative path as long as any a catalog may
** name), and the subdirectories below it: segment files may lie at any
** depth, and so may the backups of those a commit that died removed.  No
** link is followed; DEPTH bounds the descriptors held open at once. */
static void sweep_dir(NpkStore *st, char *path, size_t len, int depth) {
  DIR *d = npk_io_opendir(st, len ? path : NULL);
  struct dirent *de;
  NpkErr ignored;
  if (!d) return;
  while ((de = readdir(d)) != NULL) {
    const char *n = de->d_name;
    size_t nl = strlen(n);
    struct stat sb;
    int isdir;
    if (!strcmp(n, ".") || !strcmp(n, "..")) continue;
    if (len + (len > 0) + nl > NPK_MAX_RELPATH) continue;
    if (len) path[len] = '/';
    memcpy(path + len + (len > 0), n, nl + 1);
    isdir = de->d_type == DT_DIR;
    if (de->d_type == DT_UNKNOWN)
      isdir = fstatat(dirfd(d), n, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
              S_ISDIR(sb.st_mode);
    if (isdir && depth < 32)
      sweep_dir(st, path, len + (len > 0) + nl, depth + 1);
    else if (!isdir && leftover(n, len == 0)) npk_io_unlink(st, path, &ignored);
    path[len] = 0;
  }
  closedir(d);
}

/* Remove what interrupted commits leave behind: backups ("-npkbak"), new
** data files never renamed ("npktmp-"), and half-written replacements of
** the catalog or a bitmap ("-tmp"); and the spare journal file of earlier
** releases; in subdirectories, backups of segment files.  Only safe while
** no other session can be committing, with no hot journal (which may
** still need the backups). */
void npk_sweep(NpkStore *st) {
  char path[NPK_MAX_RELPATH + 1];
  path[0] = 0;
  sweep_dir(st, path, 0, 0);
}

/* 1 when a journal may be hot: anything by the journal's name, even a
** link (which playback then refuses), but an idle journal -- a regular file
** that does not start with the magic: kept for the next commit, or torn
** before its header was written, so that it has nothing to undo.  The
** file this store's commits hold is read through their descriptor when
** the caller is LOCKED: without a lock, a commit of another thread may be
** closing it or opening another (st->jfd), and the file is opened by name. */
int npk_journal_exists(NpkStore *st, int locked) {
  struct stat sb;
  NpkErr ignored;
  unsigned char m[8];
  int fd, hot;
  if (npk_io_lstat(st, NPK_JOURNAL, &sb, &ignored) != NPK_OK) return 0;
  if (!S_ISREG(sb.st_mode)) return 1;
  if (sb.st_size < JHEADER) return 0;
  if (locked && st->jfd >= 0 && sb.st_nlink == 1 && sb.st_dev == st->jdev &&
      sb.st_ino == st->jino)
    return pread(st->jfd, m, 8, 0) != 8 || magic(m);
  /* Four system calls where a checked open takes seven: readers look
  ** whenever the commit mark is set.  O_NONBLOCK: a FIFO put there
  ** meanwhile opens at once, fails the read and counts as hot, for the
  ** checks of npk_journal_check to refuse. */
  fd = openat(st->dirfd, NPK_JOURNAL,
              O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return errno != ENOENT;
  hot = pread(fd, m, 8, 0) != 8 || magic(m);
  close(fd);
  return hot;
}

/* A journal is read through a window of this many bytes at most, in turn,
** never whole: checking and playing back the journal of a commit of
** gigabytes of replaced rows takes about this much memory.  (A record of
** an earlier release that holds a file's whole contents is read whole.) */
#define JOURNAL_WINDOW NPK_JOURNAL_PIECE

/* The journal, read through a window. */
typedef struct JournalIn JournalIn;
struct JournalIn {
  int fd;             /* open for reading */
  uint64_t size;      /* its length when opened; once jin_whole read the
                      ** header, where the records end */
  unsigned char *buf; /* the window's bytes */
  size_t cap;         /* room in buf */
  uint64_t start;     /* offset in the file of buf[0] */
  size_t len;         /* bytes of the file in buf */
  size_t window;      /* bytes to read at a time */
};

static int jin_open(NpkStore *st, JournalIn *j, NpkErr *e) {
  struct stat sb;
  int rc;
  memset(j, 0, sizeof *j);
  j->window = (size_t)npk_journal_window(JOURNAL_WINDOW);
  if ((rc = npk_io_open(st, NPK_JOURNAL, O_RDONLY, &j->fd, e))) return rc;
  if (fstat(j->fd, &sb) != 0) {
    rc = npk_err_sys(e, errno, "cannot stat", NPK_JOURNAL);
    close(j->fd);
    j->fd = -1;
    return rc;
  }
  j->size = (uint64_t)sb.st_size;
  return NPK_OK;
}

static void jin_close(JournalIn *j) {
  if (j->fd >= 0) close(j->fd);
  j->fd = -1;
  npk_free(j->buf);
  j->buf = NULL;
}

/* *PQ pointed at bytes [AT, AT+WANT) of the journal (the caller checked
** that they lie within it), read into the window if they are not there. */
static int jin_at(NpkStore *st, JournalIn *j, uint64_t at, size_t want,
                  const unsigned char **pq, NpkErr *e) {
  size_t fill = want > j->window ? want : j->window;
  ssize_t r;
  if (at >= j->start && at - j->start + want <= j->len) {
    *pq = j->buf + (at - j->start);
    return NPK_OK;
  }
  if (fill > j->size - at) fill = (size_t)(j->size - at);
  if (fill > j->cap) {
    unsigned char *b = npk_realloc(j->buf, fill ? fill : 1);
    if (!b) return npk_err(e, NPK_NOMEM, "out of memory");
    j->buf = b;
    j->cap = fill;
  }
  j->len = 0;
  if ((r = npk_io_read_at(st, j->fd, j->buf, fill, at)) < 0)
    return npk_err_sys(e, errno, "cannot read", NPK_JOURNAL);
  if ((size_t)r < fill)
    return npk_err(e, NPK_IOERR, "cannot read %s/%s: it was cut short", st->dir,
                   NPK_JOURNAL);
  j->start = at;
  j->len = fill;
  *pq = j->buf;
  return NPK_OK;
}

/* *PWHOLE: 1 if J is a completely written journal (magic, length and
** checksum right), read a window at a time. */
static int jin_whole(NpkStore *st, JournalIn *j, int *pwhole, NpkErr *e) {
  const unsigned char *q;
  WordSum sum;
  uint64_t want, fnv = UINT64_C(0xcbf29ce484222325);
  int rc, words;
  *pwhole = 0;
  if (j->size < JHEADER) return NPK_OK;
  if ((rc = jin_at(st, j, 0, JHEADER, &q, e))) return rc;
  if (!magic(q) || npk_get_u64(q + 8) > j->size - JHEADER) return NPK_OK;
  /* The records end where the header says: an earlier commit's longer
  ** journal may lie behind them (npk_journal_write). */
  j->size = JHEADER + npk_get_u64(q + 8);
  words = memcmp(q, JMAGIC, 8) == 0;
  want = npk_get_u64(q + 16);
  ws_init(&sum);
  for (uint64_t at = JHEADER; at < j->size;) {
    size_t k = j->size - at < j->window ? (size_t)(j->size - at) : j->window;
    if ((rc = jin_at(st, j, at, k, &q, e))) return rc;
    if (words) ws_add(&sum, q, k);
    else fnv = fnv1a_more(fnv, q, k);
    at += k;
  }
  *pwhole = (words ? ws_final(&sum) : fnv) == want;
  return NPK_OK;
}

/* What a reader makes of a journal, without changing anything: NPK_OK when
** there is none, or only one never completely written (its commit had
** touched no file yet, so the files are the last committed state);
** NPK_BUSY when a commit was interrupted after it may have changed files,
** whose last committed state only a playback brings back. */
int npk_journal_check(NpkStore *st, NpkErr *e) {
  JournalIn j;
  int whole = 0, rc = jin_open(st, &j, e);
  if (rc == NPK_NOFILE) return NPK_OK;
  if (rc) return rc;
  rc = jin_whole(st, &j, &whole, e);
  jin_close(&j);
  if (rc == NPK_OK && whole)
    rc = npk_err(e, NPK_BUSY,
                 "store %s has an interrupted commit; a write "
                 "will recover it%s",
                 st->dir,
                 st->readonly ? " (not one through this read-only opening)"
                 : st->folds_case
                     ? " (not one in this directory, which does not "
                       "tell names apart by case)"
                     : "");
  return rc;
}

/* 1 if a commit journals records of TYPE for REL (build_journal in
** store_txn.c): cut or rewritten in place, data and segment files (any
** name a catalog may give them), and the catalog too (a commit that changes
** rows patches it, and one that adds arrays appends to it: releases before
** this one refuse such a journal as damaged); restored from a backup or
** removed, those and the bitmaps and the catalog; removed, the new files
** ("npktmp-").
** Releases that wrote 'C' records wrote them for bitmaps and the catalog.
** Anything else -- the lock file, the journal, a backup -- a commit never
** journals: removing the lock file under a writer that holds it would let
** a second writer in. */
static int journaled(int type, const char *rel) {
  size_t n = strlen(rel);
  int cat = strcmp(rel, NPK_CATALOG) == 0;
  int bitmap = strncmp(rel, "deleted_", 8) == 0 && n > 13 &&
               strcmp(rel + n - 5, ".npkb") == 0 && !strchr(rel, '/');
  int data = npk_reserved_name(rel) == NULL;
  switch (type) {
    case 'T': return data || bitmap || cat;
    case 'R': return data || bitmap || cat;
    case 'L': return data || bitmap || cat;
    case 'C': return bitmap || cat;
    case 'X': return strncmp(rel, "npktmp-", 7) == 0 && !strchr(rel, '/');
  }
  return 0;
}

/* Playback writes REL (open as FD, at ABS) in place: refused if the file
** has another name, which may lie outside the store -- unless that name is
** its own backup, as a commit that appended to an array and then saved
** over it leaves it.  *PSIZE receives the file's length. */
static int check_links(NpkStore *st, int fd, const char *rel, const char *abs,
                       uint64_t *psize, NpkErr *e) {
  struct stat sb, bb;
  char *bak;
  int own;
  if (fstat(fd, &sb) != 0) return npk_err_sys(e, errno, "cannot stat", abs);
  *psize = (uint64_t)sb.st_size;
  if (sb.st_nlink <= 1) return NPK_OK;
  if (sb.st_nlink == 2) {
    if (!(bak = npk_backup_name(rel)))
      return npk_err(e, NPK_NOMEM, "out of memory");
    own = npk_io_lstat(st, bak, &bb, e) == NPK_OK && S_ISREG(bb.st_mode) &&
          bb.st_dev == sb.st_dev && bb.st_ino == sb.st_ino;
    npk_free(bak);
    e->rc = NPK_OK;
    if (own) return NPK_OK;
  }
  return npk_err(e, NPK_CORRUPT,
                 "%s/%s is damaged: it would write %s in "
                 "place, and that file has %llu hard links (another name may "
                 "lie outside the store)",
                 st->dir, NPK_JOURNAL, abs, (unsigned long long)sb.st_nlink);
}

/* REL (at ABS) opened as *PFD to write in place, its links checked
** (check_links), *PSIZE its length; NPK_NOFILE, error set, if it is not
** there. */
static int open_in_place(NpkStore *st, const char *rel, const char *abs,
                         int *pfd, uint64_t *psize, NpkErr *e) {
  int rc = npk_io_open(st, rel, O_RDWR, pfd, e);
  if (rc == NPK_OK && (rc = check_links(st, *pfd, rel, abs, psize, e))) {
    close(*pfd);
    *pfd = -1;
  }
  return rc;
}

/* One record of a journal, as parse_record reads it. */
typedef struct Rec Rec;
struct Rec {
  uint64_t at;  /* its offset in the journal, for messages */
  int type;     /* 'C', 'L', 'T', 'R' or 'X' */
  char *rel;    /* the path it names, relative to the store */
  int existed;  /* 'C', 'L': the file existed before the commit */
  uint64_t n;   /* 'T': the length to cut to; 'C', 'R': the bytes that follow */
  uint64_t off; /* 'R': where in the file those bytes go back */
  uint64_t data; /* 'C', 'R': where in the journal they lie */
};

/* Read the record of J at *PAT into R and advance *PAT past it: its form
** and the file it names checked, the bytes it restores not read.  R->rel
** is the caller's to free, on success only. */
static int parse_record(NpkStore *st, JournalIn *j, uint64_t *pat, Rec *r,
                        NpkErr *e) {
  uint64_t at = *pat;
  const unsigned char *q;
  uint32_t plen;
  int rc;
  memset(r, 0, sizeof *r);
  r->at = at;
  /* Bytes [at, at+K) at Q, or a damaged record if the journal ends first. */
#define NEED(k)                                                 \
  do {                                                          \
    if (j->size - at < (uint64_t)(k)) goto bad;                 \
    if ((rc = jin_at(st, j, at, (size_t)(k), &q, e))) goto out; \
  } while (0)
  NEED(5);
  r->type = q[0];
  plen = npk_get_u32(q + 1);
  at += 5;
  /* No store names a longer path: refused before its bytes are read and
  ** copied, which a hostile journal could make 4 GiB. */
  if (plen > NPK_MAX_RELPATH) goto bad;
  NEED(plen);
  if (!(r->rel = npk_malloc((size_t)plen + 1)))
    return npk_err(e, NPK_NOMEM, "out of memory");
  memcpy(r->rel, q, plen);
  r->rel[plen] = 0;
  at += plen;
  if (!npk_relpath_valid(r->rel) || strlen(r->rel) != plen) goto bad;
  switch (r->type) {
    case 'C':
      NEED(9);
      r->existed = q[0];
      r->n = npk_get_u64(q + 1);
      at += 9;
      break;
    case 'L':
      NEED(1);
      r->existed = q[0];
      at++;
      break;
    case 'T':
      NEED(8);
      r->n = npk_get_u64(q);
      at += 8;
      break;
    case 'R':
      NEED(16);
      r->off = npk_get_u64(q);
      r->n = npk_get_u64(q + 8);
      at += 16;
      break;
    case 'X': break;
    default: goto bad;
  }
#undef NEED
  if (r->type == 'C' || r->type == 'R') {
    if (j->size - at < r->n) goto bad;
    r->data = at;
    at += r->n;
  }
  if (!journaled(r->type, r->rel)) {
    rc = npk_err(e, NPK_CORRUPT,
                 "%s/%s is damaged: the record at byte %zu "
                 "names %s, a file no commit changes that way",
                 st->dir, NPK_JOURNAL, (size_t)r->at, r->rel);
    goto out;
  }
  *pat = at;
  return NPK_OK;
bad:
  rc = npk_err(e, NPK_CORRUPT, "%s/%s is damaged: bad record at byte %zu",
               st->dir, NPK_JOURNAL, (size_t)r->at);
out:
  npk_free(r->rel);
  r->rel = NULL;
  return rc;
}

/* Whether record R may change the catalog, SIZE bytes long when R is
** played: NPK_CORRUPT, saying what it would do, if not.
** Playback makes no file longer but the catalog.  A commit cuts the
** catalog by at most NPK_CAT_SUFFIX_MAX bytes (arrays dropped from a
** catalog patched in place) and its journal puts them back by its first
** record (build_journal), and writes back over bytes within them.  A
** crafted record lengthening it further, or by a later record (each could
** otherwise add 1 MiB more), or writing past its end, is refused: the
** catalog made 2^40 bytes long, opening the store would ask for as much
** memory to read it.  Any other file a 'T' record would lengthen is left as
** it is, and an 'R' record writes only the bytes that lie within it:
** lengthened, it could be made of any length, sparse where the file system
** allows, blocks of zeros filling the disk where it does not.  A genuine
** record meets such a file shorter when a commit appended to an array and
** then saved over it, interrupted once the new data file had taken the
** name (an 'L' record further on puts the grown file back from its
** backup), or when the file lost bytes no commit synced (rows appended at
** synchronous=OFF, then a power cut) or another program that ignores the
** locks cut it.  Refused, such a journal would stay hot for good, every
** read busy and every write failing; the file left short is damaged
** content, named when its array is read. */
static int catalog_fits(NpkStore *st, const Rec *r, uint64_t size, NpkErr *e) {
  if (strcmp(r->rel, NPK_CATALOG) != 0) return NPK_OK;
  if (r->type == 'T' && r->n > size &&
      (r->at != JHEADER || r->n - size > NPK_CAT_SUFFIX_MAX))
    return npk_err(e, NPK_CORRUPT,
                   "%s/%s is damaged: bad record at byte %zu: it would "
                   "lengthen %s from %llu to %llu bytes, %s",
                   st->dir, NPK_JOURNAL, (size_t)r->at, r->rel,
                   (unsigned long long)size, (unsigned long long)r->n,
                   r->at == JHEADER ? "more than a commit cuts from it"
                                    : "which only a journal's first record "
                                      "does");
  if (r->type == 'R' && (r->off > size || r->n > size - r->off))
    return npk_err(e, NPK_CORRUPT,
                   "%s/%s is damaged: bad record at byte %zu: it would "
                   "write %llu bytes at byte %llu of %s, past its end "
                   "(%llu bytes)",
                   st->dir, NPK_JOURNAL, (size_t)r->at,
                   (unsigned long long)r->n, (unsigned long long)r->off, r->rel,
                   (unsigned long long)size);
  return NPK_OK;
}

/* REL as playback will open it to write in place: refused, as it will be
** then, if it is a link or has another name (check_links); a missing file
** passes, which 'T' and 'R' records leave alone. */
static int check_file(NpkStore *st, const char *rel, NpkErr *e) {
  char *abs = npk_path(st->dir, rel);
  uint64_t size;
  int fd = -1, rc;
  if (!abs) return npk_err(e, NPK_NOMEM, "out of memory");
  rc = open_in_place(st, rel, abs, &fd, &size, e);
  if (rc == NPK_NOFILE) rc = e->rc = NPK_OK;
  if (fd >= 0) close(fd);
  npk_free(abs);
  return rc;
}

/* Check every record of J before any is played, so that a journal refused
** as damaged has changed nothing: each record's form and the file it
** names, that the catalog is there to be written back over, and its
** lengths, followed from its length now through
** the records before each one.  A commit patches the catalog in place or
** puts it back whole (build_journal; earlier releases only whole), never
** both: a record cutting or writing it after one that put it back whole
** is refused, rather than followed through the backup's length (which the
** records between may change through another name of it), or refused only
** once the records before it are played.  The files records write in
** place are opened as playback will open them (check_file), up to the
** first record that may put another file at a name; later ones are
** checked as each is opened. */
static int check_records(NpkStore *st, JournalIn *j, NpkErr *e) {
  struct stat sb;
  uint64_t size = 0;
  int known = 0, whole = 0, missing = 0, renamed = 0, rc;
  char *last = NULL;
  rc = npk_io_lstat(st, NPK_CATALOG, &sb, e);
  if (rc == NPK_NOFILE) missing = 1, rc = e->rc = NPK_OK;
  else if (rc == NPK_OK && S_ISREG(sb.st_mode)) {
    known = 1;
    size = (uint64_t)sb.st_size;
  }
  for (uint64_t at = JHEADER; at < j->size && rc == NPK_OK;) {
    Rec r;
    int cat, inplace;
    if ((rc = parse_record(st, j, &at, &r, e))) break;
    cat = strcmp(r.rel, NPK_CATALOG) == 0;
    inplace = r.type == 'T' || r.type == 'R';
    if (cat && whole && inplace)
      rc = npk_err(e, NPK_CORRUPT,
                   "%s/%s is damaged: bad record at byte %zu: it would cut or "
                   "write %s after a record that put the whole file back, "
                   "which no commit does",
                   st->dir, NPK_JOURNAL, (size_t)r.at, r.rel);
    else if (cat && missing && r.type == 'R')
      rc = npk_err(e, NPK_CORRUPT,
                   "%s/%s is damaged: bad record at byte %zu: it would write "
                   "back over %s, which is missing",
                   st->dir, NPK_JOURNAL, (size_t)r.at, r.rel);
    else if (known) rc = catalog_fits(st, &r, size, e);
    /* The file a record writes in place, as play will meet it, unless a
    ** record before it may have put another file at that name. */
    if (rc == NPK_OK && inplace && !(cat ? whole : renamed) &&
        (!last || strcmp(last, r.rel) != 0)) {
      rc = check_file(st, r.rel, e);
      npk_free(last);
      last = r.rel;
      r.rel = NULL;
    }
    if (cat && r.type == 'T') size = r.n;
    else if (cat && (r.type == 'C' || r.type == 'L')) whole = 1;
    else if (r.type == 'C' || r.type == 'L') renamed = 1;
    npk_free(r.rel);
  }
  npk_free(last);
  return rc;
}

/* The file consecutive 'R' records of one path restore, kept open from one
** to the next and synced once when playback leaves it: the journal of a
** transaction that replaced rows holds a record per run of rows, and an
** open, a check of its links and an fsync for each made the playback of a
** large UPDATE take minutes. */
typedef struct PlayFile PlayFile;
struct PlayFile {
  char *rel;     /* its path in the store, or NULL when none is open */
  char *abs;     /* the same, absolute, for messages */
  int fd;        /* open for writing, or -1 */
  uint64_t size; /* its length when opened */
};

/* Let go of PF's file, synced if SYNC (leaving it after its records; not
** after a failure, whose error is the one to report). */
static int play_file_end(NpkStore *st, PlayFile *pf, int sync, NpkErr *e) {
  int rc = NPK_OK;
  if (pf->fd >= 0) {
    if (sync) rc = npk_io_fsync(st, pf->fd, pf->abs, e);
    close(pf->fd);
  }
  npk_free(pf->rel);
  npk_free(pf->abs);
  pf->rel = pf->abs = NULL;
  pf->fd = -1;
  return rc;
}

/* Undo the record of journal J at offset *PAT, which advances past it.  A
** file it makes, renames or removes in a subdirectory is noted in SUBDIRS,
** to be synced before the journal goes.  PF is the file 'R' records write
** to; any other record first lets it go, synced, so that no record meets a
** file by a name another record has since changed. */
static int play(NpkStore *st, JournalIn *j, uint64_t *pat, NpkBuf *subdirs,
                PlayFile *pf, NpkErr *e) {
  const unsigned char *q;
  int rc, fd = -1;
  char *abs;
  Rec r;
  if ((rc = parse_record(st, j, pat, &r, e))) return rc;
  abs = npk_path(st->dir, r.rel);
  if (!abs) {
    rc = npk_err(e, NPK_NOMEM, "out of memory");
    goto done;
  }
  if (pf->rel && (r.type != 'R' || strcmp(pf->rel, r.rel) != 0) &&
      (rc = play_file_end(st, pf, 1, e)))
    goto done;
  if (r.type == 'C' || r.type == 'L' || r.type == 'X')
    npk_subdir_note(subdirs, r.rel);
  switch (r.type) {
    case 'C':
      if (!r.existed) rc = npk_io_unlink(st, r.rel, e);
      else if ((rc = jin_at(st, j, r.data, (size_t)r.n, &q, e)) == NPK_OK)
        rc = npk_io_replace_file(st, r.rel, q, (size_t)r.n, e);
      break;
    case 'L': {
      char *bak = npk_backup_name(r.rel);
      struct stat sb;
      if (!bak) {
        rc = npk_err(e, NPK_NOMEM, "out of memory");
        break;
      }
      if (r.existed) {
        rc = npk_io_lstat(st, bak, &sb, e);
        if (rc == NPK_OK && !S_ISREG(sb.st_mode))
          rc = npk_err(e, NPK_CORRUPT,
                       "%s/%s is damaged: backup %s is not a "
                       "regular file",
                       st->dir, NPK_JOURNAL, bak);
        else if (rc == NPK_OK) rc = npk_io_rename(st, bak, r.rel, e);
        else if (rc == NPK_NOFILE) rc = NPK_OK;
      } else {
        rc = npk_io_unlink(st, r.rel, e);
      }
      npk_free(bak);
      break;
    }
    case 'T': {
      uint64_t size;
      rc = open_in_place(st, r.rel, abs, &fd, &size, e);
      if (rc == NPK_NOFILE) {
        rc = NPK_OK;
        break;
      }
      if (rc == NPK_OK) rc = catalog_fits(st, &r, size, e);
      /* Only the catalog is ever lengthened (catalog_fits). */
      if (rc == NPK_OK && (r.n <= size || strcmp(r.rel, NPK_CATALOG) == 0)) {
        rc = npk_io_ftruncate(st, fd, r.n, abs, e);
        if (rc == NPK_OK) rc = npk_io_fsync(st, fd, abs, e);
      }
      break;
    }
    case 'R': {
      uint64_t off = r.off, len = r.n, at = r.data;
      if (!pf->rel) {
        rc = open_in_place(st, r.rel, abs, &fd, &pf->size, e);
        if (rc == NPK_NOFILE && strcmp(r.rel, NPK_CATALOG) != 0) {
          /* A file that is gone stays gone, as a shorter one stays short
          ** (catalog_fits): a new array's file lost in a power cut at
          ** synchronous=OFF, or removed by another program.  Nothing lies
          ** within it to write back, playback creates nothing, and its
          ** array reads as missing. */
          rc = e->rc = NPK_OK;
          break;
        }
        if (rc == NPK_NOFILE)
          rc = npk_err(e, NPK_IOERR, "cannot open %s: no such file", abs);
        if (rc == NPK_OK) rc = catalog_fits(st, &r, pf->size, e);
        if (rc) break;
        pf->fd = fd;
        pf->rel = r.rel;
        pf->abs = abs;
        fd = -1;
        r.rel = abs = NULL;
      } else if ((rc = catalog_fits(st, &r, pf->size, e))) {
        break;
      }
      /* Bytes a commit wrote over lie inside the file's old length, which
      ** a 'T' record before them put back: bytes past the end are never
      ** written (catalog_fits). */
      if (off > pf->size) len = 0;
      else if (len > pf->size - off) len = pf->size - off;
      /* A window at a time: a run of rows may be larger than memory. */
      while (rc == NPK_OK && len > 0) {
        size_t k = len < j->window ? (size_t)len : j->window;
        if ((rc = jin_at(st, j, at, k, &q, e))) break;
        rc = npk_io_pwrite(st, pf->fd, q, k, off, pf->abs, e);
        at += k;
        off += k;
        len -= k;
      }
      break;
    }
    case 'X': rc = npk_io_unlink(st, r.rel, e); break;
  }
done:
  if (fd >= 0) close(fd);
  npk_free(r.rel);
  npk_free(abs);
  return rc;
}

/* Play back a hot journal, if there is one, synced whatever the writer
** chose.  The caller holds EXCLUSIVE. */
int npk_journal_recover(NpkStore *st, NpkErr *e) {
  JournalIn j;
  NpkBuf subdirs = {0};
  PlayFile pf = {NULL, NULL, -1, 0};
  int rc, whole = 0, sync_off = st->sync_off;
  st->sync_off = 0;
  rc = jin_open(st, &j, e);
  if (rc == NPK_NOFILE) {
    rc = NPK_OK;
    goto done;
  }
  if (rc == NPK_OK) rc = jin_whole(st, &j, &whole, e);
  if (rc == NPK_OK && !whole) {
    /* Torn before it was synced: the commit had not touched any file. */
    int gone;
    jin_close(&j);
    rc = npk_journal_delete(st, 0, &gone, e);
    if (rc == NPK_OK) npk_sweep(st);
    goto done;
  }
  if (rc == NPK_OK) rc = check_records(st, &j, e);
  for (uint64_t at = JHEADER; at < j.size && rc == NPK_OK;)
    rc = play(st, &j, &at, &subdirs, &pf, e);
  jin_close(&j);
  if (rc == NPK_OK) rc = play_file_end(st, &pf, 1, e);
  else play_file_end(st, &pf, 0, e);
  if (rc == NPK_OK) rc = npk_io_sync_subdirs(st, &subdirs, e);
  if (rc == NPK_OK) rc = npk_io_fsync(st, st->dirfd, st->dir, e);
  if (rc == NPK_OK) {
    int gone;
    rc = npk_journal_delete(st, 0, &gone, e);
  }
  if (rc == NPK_OK) {
    npk_sweep(st);
    __atomic_fetch_add(&st->stats.recoveries, 1, __ATOMIC_RELAXED);
  }
done:
  st->sync_off = sync_off;
  npk_buf_free(&subdirs);
  return rc;
}
