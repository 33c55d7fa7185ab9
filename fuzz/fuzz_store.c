/*
** fuzz_store.c — fuzz target for a whole hostile store directory run
** through the engine's operations: the other targets fuzz one parser each,
** this one the way the files of a store disagree with one another (a
** catalog that parses but whose shapes, dtypes, file names and row counts
** do not fit its data files, bitmaps of other lengths or deleted counts,
** segment manifests, a lock file or journal in odd states) and what reading
** and writing such a store does.
**
** The input is a description, not the files themselves, so that most
** inputs build a catalog that parses and reach the operations:
**
**   byte 0     flags: 1 open read-only, 2 commits fsync, 4 leftover files
**   byte 1     lock file: none, empty, the LOCK blob, a link outside, a
**              directory, a hard link outside, a FIFO
**   byte 2     journal: none, hot (the JOURNAL blob as records under the
**              engine's header), raw JOURNAL bytes, idle, a link outside, a
**              directory
**   byte 3     arrays in the catalog (0..3)
**   16 bytes   per array (see struct Desc): name, dtype, ndim, shape, where
**              its rows are (its own data file, a segment manifest, a name
**              of the table below, another array's file, a link, a hard
**              link, a directory, nothing), the data file's length against
**              the shape's, its deletion bitmap (none, right, or damaged in
**              one of several ways) and segments
**   u16 + JOURNAL, u8 + LOCK
**   the rest   the operations, a byte and its arguments each: reads
**              (0x00-0x7f, op_read), writes (0x80-0xbf, op_write),
**              transactions, recovery and opening again (0xc0-0xdf,
**              run_ops), files changed behind the engine's back
**              (0xe0-0xff, tamper)
**
** The store sits next to a directory "outside" holding a file and a
** directory that links of the store point to.  Beyond "no crash, no leak,
** no access out of bounds":
**   - a failed call returns a result code of store.h and a "numpack: "
**     message;
**   - opening the store and operations that only read leave every file of
**     it as it was (inode, size and times, which any write moves) and
**     create nothing: no lock file, journal or anything else;
**   - a write that fails outside a transaction leaves the bytes of every
**     file but the lock file and journal as they were;
**   - nothing outside the store is created, changed or removed;
**   - while nothing was written, every row read (by row pointer, copy, view,
**     streamed batches, a read without the lock) is the bytes of its data
**     file at its offset, and which rows are live is what the bitmap
**     written says; an array that loads has the catalog's description;
**   - after writes, every way of reading a row agrees, rows appended or
**     replaced read back as written, and deleted rows are gone;
**   - after a commit, the store released and opened again reads back the
**     same arrays and rows;
**   - once a file was cut short, lengthened, removed or replaced behind
**     the engine's back, reads may fail but never return the zeros of a
**     page lost under a mapping without saying so;
**   - no allocation is larger than the store's files and the input can
**     justify (a bound of 32 MiB + 64 bytes per byte of them).
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "fuzz_dir.h"
#include "knn.h"
#include "store_int.h"

const char npk_fuzz_target[] = "store";

#define MAX_ARR   3
#define MAX_FILES 48
#define MAX_OPS   24
#define MAX_SCAN  512 /* rows a check walks at most */

static char root[512];        /* the temporary directory of this process */
static char store[600];       /* ROOT/store */
static char outside[600];     /* ROOT/outside */
static NpkBuf outside_before; /* snapshot of outside/ after setup */

/* ---- allocations watched -------------------------------------------- */

static uint64_t biggest; /* largest request since the run began */

static void *watch_malloc(uint64_t n) {
  if (n > biggest) biggest = n;
  return n > SIZE_MAX ? NULL : malloc(n ? (size_t)n : 1);
}
static void *watch_realloc(void *p, uint64_t n) {
  if (n > biggest) biggest = n;
  return n > SIZE_MAX ? NULL : realloc(p, n ? (size_t)n : 1);
}
static const NpkAllocator watch = {watch_malloc, watch_realloc, free, NULL};

static const char victim[] = "outside victim, keep me: 0123456789";

/* ---- files ---------------------------------------------------------- */

/* What the target wrote into the store, by name: the model rows are
** checked against. */
typedef struct MFile MFile;
struct MFile {
  char name[80];
  unsigned char *p;
  size_t n;
};
static MFile files[MAX_FILES];
static int nfiles;
static uint64_t store_bytes; /* bytes written into the store */

static MFile *model_file(const char *name) {
  for (int i = 0; i < nfiles; i++)
    if (strcmp(files[i].name, name) == 0) return &files[i];
  return NULL;
}

/* Write N bytes P to NAME in the store, as a regular file, and remember
** them.  Never through a link or into a directory, nor into a file with
** other names (a hard link to outside): those the store holds on purpose,
** and writing them would change what is outside. */
static void put_file(const char *name, const void *p, size_t n) {
  const char *path = fuzz_path(store, name);
  struct stat sb;
  MFile *m;
  int fd;
  if (strlen(name) >= sizeof files[0].name || strstr(name, "..") ||
      name[0] == '/' || (strchr(name, '/') && strncmp(name, "real/", 5)))
    return;
  if (lstat(path, &sb) == 0 && (!S_ISREG(sb.st_mode) || sb.st_nlink > 1))
    return;
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return;
  FUZZ_CHECK(n == 0 || write(fd, p, n) == (ssize_t)n);
  close(fd);
  store_bytes += n;
  if (!(m = model_file(name))) {
    FUZZ_CHECK(nfiles < MAX_FILES);
    m = &files[nfiles++];
    snprintf(m->name, sizeof m->name, "%s", name);
    m->p = NULL;
  }
  free(m->p);
  m->p = malloc(n ? n : 1);
  FUZZ_CHECK(m->p != NULL);
  memcpy(m->p, p, n);
  m->n = n;
}

/* 1 if A and B (snapshots or dumps) are the same bytes; otherwise 0,
** and where they part is printed, for whoever reads the failure. */
static int same_buf(const NpkBuf *a, const NpkBuf *b) {
  size_t i = 0, k;
  if (a->oom || b->oom) return 0;
  while (i < a->n && i < b->n && a->p[i] == b->p[i]) i++;
  if (i == a->n && i == b->n) return 1;
  k = i > 40 ? i - 40 : 0;
  fprintf(stderr, "fuzz_store: differ at byte %zu of %zu/%zu after \"", i,
          a->n, b->n);
  for (; k < i; k++)
    fputc(a->p[k] >= 32 && a->p[k] < 127 ? a->p[k] : '.', stderr);
  fprintf(stderr, "\"\n");
  return 0;
}

/* Once per process: the allocator, ROOT/outside and its snapshot.  The
** store lives in memory when the system has a tmpfs, for speed. */
static void setup_once(void) {
  const char *tmp = getenv("TMPDIR");
  struct stat sb;
  if (root[0]) return;
  npk_set_allocator(&watch);
  if (!tmp || !*tmp)
    tmp = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) &&
                  access("/dev/shm", W_OK) == 0
              ? "/dev/shm"
              : "/tmp";
  fuzz_make_root(root, sizeof root, tmp, "npkfuzzstore");
  snprintf(store, sizeof store, "%s/store", root);
  snprintf(outside, sizeof outside, "%s/outside", root);
  FUZZ_CHECK(mkdir(outside, 0755) == 0);
  FUZZ_CHECK(mkdir(fuzz_path(outside, "sub"), 0755) == 0);
  fuzz_write_file(fuzz_path(outside, "victim"), victim, sizeof victim - 1);
  fuzz_write_file(fuzz_path(outside, "sub/data"), "0123456789abcdef0123456789abcdef",
                32);
  fuzz_snapshot(outside, NULL, 1, &outside_before);
  FUZZ_CHECK(!outside_before.oom);
}

/* ---- the input ------------------------------------------------------ */

/* A reader over the input: zeros past its end. */
typedef struct In In;
struct In {
  const uint8_t *p;
  size_t n, at;
};
static unsigned in_u8(In *in) { return in->at < in->n ? in->p[in->at++] : 0; }
static unsigned in_u16(In *in) {
  unsigned lo = in_u8(in);
  return lo | in_u8(in) << 8;
}
/* The next N bytes (fewer at the end), in place. */
static const uint8_t *in_take(In *in, size_t *n) {
  const uint8_t *p = in->p + in->at;
  if (*n > in->n - in->at) *n = in->n - in->at;
  in->at += *n;
  return p;
}

/* One array's description: 16 bytes of input. */
typedef struct Desc Desc;
struct Desc {
  uint8_t name;   /* index into names[] */
  uint8_t dtype;  /* % NPK_NDTYPE, or itself from 0xF0 on (unknown) */
  uint8_t ndim;   /* 1 + %3, or 0 / 33 from 0xFC on */
  uint8_t rows;   /* shape[0] */
  uint8_t dims;   /* shape[1] = low 3 bits, shape[2] = next 3 */
  uint8_t mode;   /* bits 0-2 where the rows are (WHERE_*), 3 size field
                  ** lies, 4 a huge row count, 5 block info, 6-7 what the
                  ** data file is (KIND_*) */
  uint8_t pick;   /* a name of table[], the huge count, the other array */
  int8_t delta;   /* the data file's length minus the shape's */
  uint8_t seed;   /* its bytes */
  uint8_t bitmap; /* BM_* */
  uint8_t bseed;  /* its bits */
  uint8_t nseg;   /* segments (1 + %3) and their lies: bit 2 rows don't
                  ** add up, 3 bytes lie, 4 files from table[], 5 file
                  ** short, 6 file long, 7 raw manifest = the journal blob */
  uint8_t seg[4]; /* rows of the first segments */
};

enum { WHERE_OWN, WHERE_OWN2, WHERE_SEG, WHERE_TABLE, WHERE_OTHER,
       WHERE_MISSING, WHERE_OWN3, WHERE_OWN4 };
enum { KIND_FILE, KIND_LINK, KIND_HARD, KIND_DIR };
enum { BM_NONE, BM_NONE2, BM_NONE3, BM_RIGHT, BM_SHORT, BM_COUNT, BM_PAD,
       BM_LEN, BM_LONG, BM_LINK, BM_DIR, BM_EMPTY, BM_RIGHT2, BM_N };

static const char *const names[8] = {"a", "b", "c", "a", "x_y", "é", "a/b",
                                     ".."};
/* Names a catalog or manifest may give as a data or segment file. */
static const char *const table[16] = {
    "evil",          "sub/data",       "dangling",      "real",
    "real/x",        "hard",           NPK_CATALOG,     NPK_LOCKFILE,
    NPK_JOURNAL,     "deleted_a.npkb", "data_a.npkd",   "a-npkbak",
    "npktmp-1",      "other.bin",      "real/link",     "fifo"};
static const uint64_t huge[8] = {
    UINT64_C(1) << 26,      (UINT64_C(1) << 26) + 1, UINT64_C(1) << 32,
    UINT64_C(1) << 40,      UINT64_C(1) << 62,       NPK_MAX_ROWS,
    NPK_MAX_ROWS + 1,       UINT64_MAX};

/* An array as the target built it: what its rows should read as. */
typedef struct MArr MArr;
struct MArr {
  const char *name;
  int dtype;
  uint32_t ndim;
  uint64_t shape[3];
  uint64_t rb;          /* row bytes (0 when the dtype is unknown) */
  char file[80];        /* the catalog's data file */
  int nseg;             /* segments: 1 for a plain data file */
  char segf[4][80];     /* each segment's file */
  uint64_t first[4];    /* its first row */
  uint64_t srows[4];    /* its rows */
  int raw_manifest;     /* the manifest is input bytes: no model of rows */
  const MFile *bm;      /* the bitmap written, or NULL */
};
static MArr arr[MAX_ARR];
static int narr;

static uint64_t itemsize(int dtype) {
  return dtype >= 0 && dtype < NPK_NDTYPE ? (uint64_t)npk_dtype_size(dtype)
                                          : 0;
}

/* LEN bytes of a file made from SEED. */
static unsigned char *fill(size_t len, unsigned seed) {
  unsigned char *p = malloc(len ? len : 1);
  FUZZ_CHECK(p != NULL);
  for (size_t i = 0; i < len; i++)
    p[i] = (unsigned char)(i * 131u + seed * 17u + (i >> 8));
  return p;
}

static void put_fill(const char *name, uint64_t len, unsigned seed) {
  unsigned char *p;
  if (len > 4096) len = 4096;
  p = fill((size_t)len, seed);
  put_file(name, p, (size_t)len);
  free(p);
}

/* NAME in the store made a symbolic or hard link to TARGET outside: 0,
** or -1 when the store cannot hold that name (a path through a file,
** a name taken), which leaves the store as it was. */
static int out_link(const char *target, const char *name) {
  return symlink(fuzz_path(outside, target), fuzz_path(store, name));
}
static int out_hard(const char *target, const char *name) {
  return link(fuzz_path(outside, target), fuzz_path(store, name));
}

/* NAME is a hard link to outside/victim: its bytes are the victim's, and
** reading them is reading a file of the store, which the model knows. */
static void model_hard(const char *name) {
  MFile *m = model_file(name);
  if (!m) {
    FUZZ_CHECK(nfiles < MAX_FILES);
    m = &files[nfiles++];
    snprintf(m->name, sizeof m->name, "%s", name);
    m->p = NULL;
  }
  free(m->p);
  m->p = malloc(sizeof victim - 1);
  FUZZ_CHECK(m->p != NULL);
  memcpy(m->p, victim, sizeof victim - 1);
  m->n = sizeof victim - 1;
}

/* The bitmap of A (ROWS rows) in mode D->bitmap. */
static void put_bitmap(MArr *a, const Desc *d) {
  char name[80];
  NpkBuf b = {0};
  uint64_t rows = a->shape[0], nbits, dead = 0;
  int mode = d->bitmap % BM_N;
  snprintf(name, sizeof name, "deleted_%s.npkb", a->name);
  if (mode <= BM_NONE3) return;
  if (mode == BM_LINK) {
    out_link("victim", name);
    return;
  }
  if (mode == BM_DIR) {
    mkdir(fuzz_path(store, name), 0755);
    return;
  }
  if (rows > 4000) rows = d->bseed;
  nbits = mode == BM_SHORT && rows ? rows - 1 - d->bseed % rows
          : mode == BM_LONG       ? rows + 1 + d->bseed % 65
                                  : rows;
  npk_buf_u64(&b, nbits);
  npk_buf_u64(&b, 0);
  for (uint64_t w = 0; w < (nbits + 63) / 64; w++) {
    uint64_t v = 0, r = (uint64_t)d->bseed * 0x9E3779B97F4A7C15ull + w;
    for (int i = 0; i < 64; i++)
      if (w * 64 + i < nbits && ((r >> (i % 61)) & 1 || d->bseed & 1))
        v |= UINT64_C(1) << i;
      else if (w * 64 + i < nbits)
        dead++;
    if (mode == BM_PAD && w == (nbits - 1) / 64 && nbits % 64)
      v |= UINT64_C(1) << 63;
    npk_buf_u64(&b, v);
  }
  npk_put_u64(b.p + 8, mode == BM_COUNT ? dead + 1 : dead);
  if (mode == BM_LEN) npk_buf_u8(&b, 0);
  if (mode == BM_EMPTY) b.n = d->bseed % 16;
  FUZZ_CHECK(!b.oom);
  put_file(name, b.p, b.n);
  a->bm = model_file(name);
  npk_buf_free(&b);
}

/* The data file(s) of A, described by D, for position I of the catalog;
** JR is the raw manifest's bytes when D asks for one. */
static void put_data(MArr *a, const Desc *d, int i, const uint8_t *jr,
                     size_t njr) {
  int where = d->mode & 7, kind = d->mode >> 6;
  uint64_t need = a->rb * a->shape[0];
  int64_t len = (int64_t)(need > 4000 ? 4000 : need) + d->delta;
  if (len < 0) len = 0;
  a->nseg = 1;
  a->first[0] = 0;
  a->srows[0] = a->shape[0];
  switch (where) {
    case WHERE_SEG: {
      uint64_t left = a->shape[0];
      NpkBuf j = {0};
      snprintf(a->file, sizeof a->file, "data_%s.npkseg", a->name);
      a->nseg = 1 + d->nseg % 3;
      npk_buf_put(&j, "{\"version\":1,\"segments\":[", 25);
      for (int k = 0; k < a->nseg; k++) {
        char ent[200];
        uint64_t r = k == a->nseg - 1 || left < d->seg[k] ? left : d->seg[k];
        uint64_t bytes;
        int64_t flen;
        if (k == a->nseg - 1 && d->nseg & 4) r++;
        bytes = r * a->rb + (d->nseg & 8 ? 1 : 0);
        if (d->nseg & 16)
          snprintf(a->segf[k], sizeof a->segf[k], "%s",
                   table[(d->seg[3] + k) % 16]);
        else
          snprintf(a->segf[k], sizeof a->segf[k], "seg%d_%s.npkd", k,
                   a->name);
        a->first[k] = a->shape[0] - left;
        a->srows[k] = r;
        left -= r <= left ? r : left;
        snprintf(ent, sizeof ent, "%s{\"file\":\"%s\",\"rows\":%llu,"
                 "\"bytes\":%llu}", k ? "," : "", a->segf[k],
                 (unsigned long long)r, (unsigned long long)bytes);
        npk_buf_put(&j, ent, strlen(ent));
        flen = (int64_t)(bytes > 4000 ? 4000 : bytes) -
               (d->nseg & 32 ? 1 : 0) + (d->nseg & 64 ? 8 : 0);
        if (kind == KIND_FILE) put_fill(a->segf[k], flen < 0 ? 0 : flen,
                                        d->seed + k);
      }
      npk_buf_put(&j, "]}", 2);
      FUZZ_CHECK(!j.oom);
      a->raw_manifest = d->nseg >= 128;
      if (a->raw_manifest) put_file(a->file, jr, njr);
      else put_file(a->file, j.p, j.n);
      npk_buf_free(&j);
      break;
    }
    case WHERE_TABLE:
      snprintf(a->file, sizeof a->file, "%s", table[d->pick % 16]);
      break;
    case WHERE_OTHER:
      snprintf(a->file, sizeof a->file, "%s",
               i ? arr[d->pick % i].file : "data_a.npkd");
      break;
    default:
      snprintf(a->file, sizeof a->file, "data_%s.npkd", a->name);
      break;
  }
  if (where == WHERE_SEG) return;
  snprintf(a->segf[0], sizeof a->segf[0], "%s", a->file);
  if (where == WHERE_MISSING) return;
  switch (kind) {
    case KIND_LINK:
      out_link(d->seed & 1 ? "victim" : "sub/data", a->file);
      break;
    case KIND_HARD:
      if (out_hard("victim", a->file) == 0)
        model_hard(a->file);
      break;
    case KIND_DIR:
      mkdir(fuzz_path(store, a->file), 0755);
      break;
    default:
      put_fill(a->file, (uint64_t)len, d->seed);
      break;
  }
}

/* The fixed files of every store: links out, a directory, a FIFO. */
static void put_fixed(int leftovers) {
  FUZZ_CHECK(mkdir(store, 0755) == 0);
  FUZZ_CHECK(symlink(fuzz_path(outside, "victim"), fuzz_path(store, "evil")) == 0);
  FUZZ_CHECK(symlink(fuzz_path(outside, "sub"), fuzz_path(store, "sub")) == 0);
  FUZZ_CHECK(symlink(fuzz_path(outside, "nothere"), fuzz_path(store, "dangling")) == 0);
  FUZZ_CHECK(mkdir(fuzz_path(store, "real"), 0755) == 0);
  FUZZ_CHECK(symlink(fuzz_path(outside, "victim"), fuzz_path(store, "real/link")) == 0);
  FUZZ_CHECK(link(fuzz_path(outside, "victim"), fuzz_path(store, "hard")) == 0);
  FUZZ_CHECK(mkfifo(fuzz_path(store, "fifo"), 0644) == 0);
  model_hard("hard");
  put_fill("real/x", 64, 1);
  put_fill("other.bin", 256, 2);
  if (leftovers) {
    put_fill("a-npkbak", 24, 3);
    put_fill("npktmp-1", 24, 4);
    put_fill("data_a.npkd-npkbak", 24, 5);
  }
}

/* The catalog of the arrays described, encoded by hand so that its
** fields can lie. */
static void put_catalog(const Desc *d) {
  NpkBuf b = {0};
  npk_buf_u32(&b, NPK_CAT_MAGIC);
  npk_buf_u32(&b, NPK_CAT_VERSION);
  npk_buf_u64(&b, 0);
  npk_buf_u32(&b, (uint32_t)narr);
  for (int i = 0; i < narr; i++) {
    const MArr *a = &arr[i];
    uint32_t nd = d[i].ndim >= 0xFE ? 0 : d[i].ndim >= 0xFC ? 33 : a->ndim;
    uint64_t size = a->rb * a->shape[0];
    npk_buf_u32(&b, (uint32_t)strlen(a->name));
    npk_buf_put(&b, a->name, strlen(a->name));
    npk_buf_u32(&b, nd);
    for (uint32_t k = 0; k < nd; k++)
      npk_buf_u64(&b, k < a->ndim ? a->shape[k] : 1);
    npk_buf_u32(&b, (uint32_t)strlen(a->file));
    npk_buf_put(&b, a->file, strlen(a->file));
    npk_buf_u64(&b, UINT64_C(1700000000000000) + d[i].seed);
    npk_buf_u64(&b, d[i].mode & 8 ? size + 1 + (uint64_t)d[i].delta : size);
    npk_buf_u8(&b, (unsigned)a->dtype);
    npk_buf_u8(&b, 0);
    npk_buf_u32(&b, 0);
    npk_buf_u64(&b, 0);
    npk_buf_u64(&b, 0);
    if (d[i].mode & 32) {
      npk_buf_u8(&b, 1);
      npk_buf_u8(&b, 1);
      npk_buf_u64(&b, 4096);
      npk_buf_u64(&b, 1);
      npk_buf_u32(&b, 1);
      npk_buf_u64(&b, 0);
      npk_buf_u64(&b, size);
      npk_buf_u64(&b, size);
    } else {
      npk_buf_u8(&b, 0);
    }
  }
  FUZZ_CHECK(!b.oom);
  npk_put_u64(b.p + 8, b.n);
  put_file(NPK_CATALOG, b.p, b.n);
  npk_buf_free(&b);
}

/* The lock file, then the journal, in state MODE (see the top of the
** file), from the N bytes of BLOB. */
static void put_lock(unsigned mode, const uint8_t *blob, size_t n) {
  switch (mode % 7) {
    case 1: put_file(NPK_LOCKFILE, "", 0); break;
    case 2: put_file(NPK_LOCKFILE, blob, n); break;
    case 3:
      out_link("victim", NPK_LOCKFILE);
      break;
    case 4: mkdir(fuzz_path(store, NPK_LOCKFILE), 0755); break;
    case 5: out_hard("victim", NPK_LOCKFILE); break;
    case 6: mkfifo(fuzz_path(store, NPK_LOCKFILE), 0644); break;
    default: break;
  }
}

static void put_journal(unsigned mode, const uint8_t *blob, size_t n) {
  static const unsigned char zeros[NPK_JOURNAL_HEADER];
  switch (mode % 6) {
    case 1: {
      NpkBuf rec = {0}, jr = {0};
      unsigned char hdr[NPK_JOURNAL_HEADER];
      npk_buf_put(&rec, blob, n);
      npk_journal_header(&rec, hdr);
      npk_buf_put(&jr, hdr, sizeof hdr);
      npk_buf_put(&jr, blob, n);
      FUZZ_CHECK(!rec.oom && !jr.oom);
      put_file(NPK_JOURNAL, jr.p, jr.n);
      npk_buf_free(&rec);
      npk_buf_free(&jr);
      break;
    }
    case 2: put_file(NPK_JOURNAL, blob, n); break;
    case 3: put_file(NPK_JOURNAL, zeros, sizeof zeros); break;
    case 4:
      out_link("victim", NPK_JOURNAL);
      break;
    case 5: mkdir(fuzz_path(store, NPK_JOURNAL), 0755); break;
    default: break;
  }
}

/* ---- checks --------------------------------------------------------- */

static NpkStore *st;
static NpkSession *ses;
static int pristine; /* nothing written or played back: the model holds */
static int tampered; /* a file was changed behind the engine's back */
static int readonly;

/* A failed call's result: a code of store.h, and a message saying why. */
static void check_fail(int rc) {
  FUZZ_CHECK(rc > NPK_OK && rc <= NPK_STALE);
  FUZZ_CHECK(strncmp(npk_errmsg(ses), "numpack: ", 9) == 0);
}

/* The bytes physical row R of model array A should read as, or NULL when
** the model cannot tell (a raw manifest) -- a row the model has no bytes
** for, which the engine read anyway, fails the run. */
static const unsigned char *model_row(const MArr *a, uint64_t r) {
  if (a->raw_manifest) return NULL;
  for (int k = 0; k < a->nseg; k++) {
    if (r >= a->first[k] && r - a->first[k] < a->srows[k]) {
      const MFile *f = model_file(a->segf[k]);
      uint64_t off = (r - a->first[k]) * a->rb;
      FUZZ_CHECK(f != NULL);
      FUZZ_CHECK(off <= f->n && f->n - off >= a->rb);
      return f->p + off;
    }
  }
  FUZZ_CHECK(!"a row no segment holds was read");
  return NULL;
}

/* 1 if the model's bitmap says physical row R of A is live. */
static int model_live(const MArr *a, uint64_t r) {
  const MFile *b = a->bm;
  uint64_t total;
  if (!b) return 1;
  FUZZ_CHECK(b->n >= 16);
  total = npk_get_u64(b->p);
  if (r >= total) return 0;
  FUZZ_CHECK(16 + (r / 64 + 1) * 8 <= b->n);
  return (int)(npk_get_u64(b->p + 16 + r / 64 * 8) >> (r % 64) & 1);
}

/* The model's array at catalog position I, when it still describes the
** store, else NULL. */
static const MArr *model_at(int i) {
  return pristine && i >= 0 && i < narr ? &arr[i] : NULL;
}

/* Physical row R of the array at position I (INFO), read as P: the
** model's bytes, or those npk_copy_rows gives. */
static void check_row(int i, const NpkArrayInfo *info, uint64_t r,
                      const void *p) {
  const MArr *m = model_at(i);
  FUZZ_CHECK(r < info->rows);
  if (info->row_bytes == 0) return;
  if (m) {
    const unsigned char *want = model_row(m, r);
    if (want) FUZZ_CHECK(memcmp(p, want, info->row_bytes) == 0);
  } else if (info->row_bytes <= 4096) {
    unsigned char copy[4096];
    uint64_t mark = npk_map_faults(ses);
    int rc = npk_copy_rows(ses, info->name, &r, 1, copy), same;
    FUZZ_CHECK(rc == NPK_OK || tampered);
    if (rc) {
      check_fail(rc);
      return;
    }
    same = memcmp(p, copy, info->row_bytes) == 0;
    /* A file cut short under a mapping reads as zeros, which the check
    ** after the read turns into an error. */
    if (!same) FUZZ_CHECK(tampered && npk_map_check(ses, mark, info->name));
  }
}

/* An array that loaded is what the catalog says. */
static void check_info(int i, const NpkArrayInfo *info) {
  const MArr *m = model_at(i);
  if (!m) return;
  FUZZ_CHECK(strcmp(info->name, m->name) == 0);
  FUZZ_CHECK(info->dtype == m->dtype && info->ndim == m->ndim);
  for (uint32_t k = 0; k < info->ndim; k++)
    FUZZ_CHECK(info->shape[k] == m->shape[k]);
  FUZZ_CHECK(info->rows == m->shape[0] && info->row_bytes == m->rb);
}

static void snap_store(NpkBuf *b) {
  fuzz_snapshot(store, NULL, 0, b);
  FUZZ_CHECK(!b->oom);
}

/* ---- operations ----------------------------------------------------- */

/* A row index from one byte: small ones as they are, the rest near the
** array's ends or far past them. */
static uint64_t pick_row(unsigned v, uint64_t rows) {
  switch (v) {
    case 0xF8: return rows ? rows - 1 : 0;
    case 0xF9: return rows;
    case 0xFA: return rows + 1;
    case 0xFB: return UINT64_C(1) << 26;
    case 0xFC: return NPK_MAX_ROWS;
    case 0xFD: return UINT64_MAX;
    case 0xFE: return rows / 2;
    case 0xFF: return rows > 64 ? rows - 64 : 0;
    default: return v;
  }
}

/* A data file npk_data_files gives for array ARG (an NpkArrayInfo): a
** regular file of the store, not a link, that holds its rows. */
static int check_data_file(void *arg, const NpkDataLayout *lay, int i,
                           const NpkDataFile *f) {
  const NpkArrayInfo *info = arg;
  size_t n = strlen(store);
  struct stat sb;
  FUZZ_CHECK(i >= 0 && i < lay->nfiles);
  FUZZ_CHECK(strncmp(f->path, store, n) == 0 && f->path[n] == '/');
  FUZZ_CHECK(f->first_row <= info->rows &&
             f->rows <= info->rows - f->first_row);
  FUZZ_CHECK(lstat(f->path, &sb) == 0 && S_ISREG(sb.st_mode));
  /* A file cut by a program ignoring the lock is found out within the
  ** recheck interval (npk_recheck_ns), not at once. */
  if (!tampered && info->row_bytes)
    FUZZ_CHECK((uint64_t)sb.st_size >= f->offset &&
               ((uint64_t)sb.st_size - f->offset) / info->row_bytes >= f->rows);
  return 0;
}

/* Begin a read and find the array at position V % count: 1 with *INFO
** and *PI set, inside the read; 0 (the read ended) when there is none or
** it does not load. */
static int read_array(unsigned v, int *pi, NpkArrayInfo *info) {
  int rc = npk_read_begin(ses), n = 0;
  if (rc) {
    check_fail(rc);
    return 0;
  }
  rc = npk_array_count(ses, &n);
  if (rc) check_fail(rc);
  if (rc || n == 0) {
    npk_read_end(ses);
    return 0;
  }
  *pi = (int)(v % (unsigned)n);
  rc = npk_array_info_at(ses, *pi, info);
  if (rc) {
    check_fail(rc);
    npk_read_end(ses);
    return 0;
  }
  check_info(*pi, info);
  return 1;
}

/* The reading operations.  OP picks one, IN gives its arguments. */
static void op_read(unsigned op, In *in) {
  NpkArrayInfo info;
  int i, rc;
  unsigned v = in_u8(in), w = in_u8(in);
  if (!read_array(v, &i, &info)) return;
  switch (op) {
    case 0: { /* physical rows by pointer, and which are live */
      const MArr *m = model_at(i);
      for (uint64_t r = pick_row(w, info.rows), k = 0; k < 8; k++, r++) {
        const void *p;
        int live;
        rc = npk_row_ptr(ses, info.name, r, &p);
        live = npk_row_live(ses, info.name, r);
        if (rc == NPK_OK) {
          check_row(i, &info, r, p); /* deleted rows too */
        } else {
          check_fail(rc);
          FUZZ_CHECK(rc != NPK_RANGE || !live);
        }
        if (m && r < info.rows && rc != NPK_CORRUPT)
          FUZZ_CHECK(live == model_live(m, r));
      }
      break;
    }
    case 1: { /* logical and physical indexes agree */
      uint64_t l = pick_row(w, info.live_rows), r, back, next;
      rc = npk_logical_to_physical(ses, info.name, l, &r);
      if (rc == NPK_OK) {
        FUZZ_CHECK(l < info.live_rows && r < info.rows);
        FUZZ_CHECK(npk_row_live(ses, info.name, r));
        rc = npk_physical_to_logical(ses, info.name, r, &back);
        FUZZ_CHECK(rc == NPK_OK && back == l);
        rc = npk_next_live(ses, info.name, r, &next);
        FUZZ_CHECK(rc == NPK_OK && next == r);
      } else {
        check_fail(rc);
        FUZZ_CHECK(rc != NPK_RANGE || l >= info.live_rows);
      }
      break;
    }
    case 2: { /* a copy of rows, deleted ones too */
      uint64_t rows[8], n = 1 + in_u8(in) % 8;
      unsigned char *dst;
      if (info.row_bytes > 4096) break;
      for (uint64_t k = 0; k < n; k++) rows[k] = pick_row(w + (unsigned)k * 3, info.rows);
      dst = malloc(n * info.row_bytes + 1);
      FUZZ_CHECK(dst != NULL);
      rc = npk_copy_rows(ses, info.name, rows, n, dst);
      if (rc == NPK_OK) {
        for (uint64_t k = 0; k < n; k++) {
          const MArr *m = model_at(i);
          FUZZ_CHECK(rows[k] < info.rows);
          if (m && info.row_bytes && model_row(m, rows[k]))
            FUZZ_CHECK(memcmp(dst + k * info.row_bytes, model_row(m, rows[k]),
                              info.row_bytes) == 0);
        }
      } else {
        check_fail(rc);
      }
      free(dst);
      break;
    }
    case 3: { /* a view, as a scan takes it */
      NpkView view;
      uint64_t mark = npk_map_faults(ses), seen = 0;
      rc = npk_view(ses, info.name, &view);
      if (rc) {
        check_fail(rc);
        break;
      }
      FUZZ_CHECK(view.rows <= info.rows && view.row_bytes == info.row_bytes);
      FUZZ_CHECK(view.live_rows == info.live_rows);
      for (uint64_t r = 0; r < view.rows && r < MAX_SCAN; r++) {
        int live = !view.live || (view.live[r / 64] >> (r % 64) & 1);
        const void *p;
        FUZZ_CHECK(live == npk_row_live(ses, info.name, r));
        if (!live) continue;
        seen++;
        if (view.base) {
          check_row(i, &info, r, view.base + r * view.row_bytes);
        } else {
          rc = npk_row_ptr(ses, info.name, r, &p);
          if (rc) {
            check_fail(rc);
            break;
          }
          check_row(i, &info, r, p);
        }
      }
      if (view.rows <= MAX_SCAN && rc == NPK_OK)
        FUZZ_CHECK(seen == view.live_rows);
      rc = npk_map_check(ses, mark, info.name);
      if (rc) {
        FUZZ_CHECK(tampered);
        check_fail(rc);
      }
      break;
    }
    case 4: { /* live rows streamed in batches, as np.load reads */
      uint64_t pos = 0, batch = 1 + w % 16, got = 0;
      unsigned char *dst;
      if (info.row_bytes > 4096) break;
      dst = malloc(batch * info.row_bytes + 1);
      FUZZ_CHECK(dst != NULL);
      while (got < info.live_rows && got < MAX_SCAN) {
        uint64_t n = info.live_rows - got < batch ? info.live_rows - got : batch;
        uint64_t at = pos;
        rc = npk_copy_live_rows(ses, info.name, &pos, n, dst);
        if (rc) {
          check_fail(rc);
          break;
        }
        FUZZ_CHECK(pos > at && pos <= info.rows);
        for (uint64_t k = 0; k < n && info.row_bytes; k++) {
          uint64_t r;
          FUZZ_CHECK(npk_logical_to_physical(ses, info.name, got + k, &r) ==
                     NPK_OK);
          check_row(i, &info, r, dst + k * info.row_bytes);
        }
        got += n;
      }
      free(dst);
      break;
    }
    case 5: { /* where the rows are, for a program mapping them */
      NpkDataLayout lay;
      rc = npk_data_files(ses, info.name, &lay, check_data_file, &info);
      if (rc) check_fail(rc);
      break;
    }
    case 6: { /* the nearest rows to a row of the array */
      NpkView view;
      NpkKnnScan scan;
      NpkKnnHit hits[4];
      NpkRowSource src;
      uint64_t dim = 1, r, mark = npk_map_faults(ses);
      int metric;
      void *q = NULL;
      size_t nq = 0, found = 0;
      const void *p;
      NpkErr pe;
      for (uint32_t d = 1; d < info.ndim; d++) dim *= info.shape[d];
      metric = w % 6;
      if (info.ndim < 2 || dim == 0 || info.live_rows == 0 ||
          npk_knn_metric_needs(metric, info.dtype))
        break;
      if (npk_logical_to_physical(ses, info.name, 0, &r) ||
          npk_row_ptr(ses, info.name, r, &p) || npk_view(ses, info.name, &view))
        break;
      if (npk_knn_parse(p, info.row_bytes, 0, info.dtype, metric, dim, 1, &q,
                        &nq, &pe))
        break;
      npk_knn_scan_view(&scan, &view, metric, dim, &src);
      scan.threads = 1;
      src.ses = ses;
      src.array = info.name;
      rc = npk_knn_search(&scan, q, nq, 4, hits, &found);
      if (rc == NPK_OK) {
        FUZZ_CHECK(found <= 4 && found <= info.live_rows);
        for (size_t k = 0; k < found; k++)
          FUZZ_CHECK(hits[k].row < info.rows &&
                     npk_row_live(ses, info.name, hits[k].row));
      }
      free(q);
      FUZZ_CHECK(npk_map_check(ses, mark, info.name) == NPK_OK || tampered);
      break;
    }
    default: { /* a lookup without the lock */
      char name[NPK_MAX_NAME + 1];
      unsigned char buf[4096];
      NpkArrayInfo got;
      uint64_t seq, r = pick_row(w, info.rows);
      int found = 0;
      snprintf(name, sizeof name, "%s", info.name);
      npk_read_end(ses);
      if (info.row_bytes > sizeof buf) return;
      rc = npk_read_row_unlocked(ses, name, r, buf, sizeof buf, &got, &found,
                                 &seq);
      if (rc == NPK_OK && found && read_array(v, &i, &info)) {
        if (strcmp(info.name, name) == 0) check_row(i, &info, r, buf);
        npk_read_end(ses);
      } else if (rc && rc != NPK_BUSY) {
        check_fail(rc);
      }
      return;
    }
  }
  npk_read_end(ses);
}

/* N bytes of values of DTYPE made from SEED. */
static unsigned char *make_rows(int dtype, uint64_t n, unsigned seed) {
  unsigned char *p = fill((size_t)n, seed);
  if (dtype == NPK_BOOL)
    for (uint64_t k = 0; k < n; k++) p[k] &= 1;
  return p;
}

/* Rows written by this session read back as DATA (N rows at ROWS). */
static void check_written(const char *name, const uint64_t *rows, uint64_t n,
                          const unsigned char *data, uint64_t rb) {
  int rc = npk_read_begin(ses);
  if (rc) {
    check_fail(rc);
    return;
  }
  for (uint64_t k = 0; k < n; k++) {
    const void *p;
    uint64_t mark = npk_map_faults(ses);
    rc = npk_row_ptr(ses, name, rows[k], &p);
    FUZZ_CHECK(rc == NPK_OK || tampered);
    if (rc == NPK_OK && rb && memcmp(p, data + k * rb, rb) != 0)
      FUZZ_CHECK(tampered && npk_map_check(ses, mark, name));
  }
  npk_read_end(ses);
}

/* The writing operations. */
static int op_write(unsigned op, In *in) {
  NpkArrayInfo info;
  char name[NPK_MAX_NAME + 1];
  int i, rc = NPK_OK;
  unsigned v = in_u8(in), w = in_u8(in);
  if (op != 7 && !read_array(v, &i, &info)) return -1;
  if (op != 7) {
    snprintf(name, sizeof name, "%s", info.name);
    npk_read_end(ses);
  }
  switch (op) {
    case 0: { /* append rows of the array's shape, or another dtype */
      uint64_t n = 1 + w % 3, shape[NPK_MAX_NDIM], rows[3], bytes;
      int dtype = w & 8 ? (info.dtype + 1) % NPK_NDTYPE : info.dtype;
      unsigned char *data;
      if (info.row_bytes > 4096 || info.rows > NPK_MAX_ROWS - 3) return -1;
      memcpy(shape, info.shape, sizeof shape);
      shape[0] = n;
      if (w & 16 && info.ndim > 1) shape[info.ndim - 1]++;
      /* Room for the rows as SHAPE and DTYPE give them, which the engine
      ** reads only if they fit the array. */
      bytes = itemsize(dtype);
      for (uint32_t k = 0; k < info.ndim; k++) bytes *= shape[k];
      if (bytes > 65536) return -1;
      data = make_rows(dtype, bytes, w);
      rc = npk_append(ses, name, dtype, info.ndim, shape, data);
      if (rc == NPK_OK) {
        for (uint64_t k = 0; k < n; k++) rows[k] = info.rows + k;
        check_written(name, rows, n, data, info.row_bytes);
      }
      free(data);
      break;
    }
    case 1: { /* replace a row */
      uint64_t r = pick_row(w, info.rows);
      unsigned char *data;
      if (info.row_bytes > 4096) return -1;
      data = make_rows(info.dtype, info.row_bytes, w + 7);
      rc = npk_replace_rows(ses, name, &r, 1, data);
      if (rc == NPK_OK) check_written(name, &r, 1, data, info.row_bytes);
      free(data);
      break;
    }
    case 2: { /* delete a row */
      uint64_t r = pick_row(w, info.rows);
      rc = npk_delete_rows(ses, name, &r, 1);
      if (rc == NPK_OK && npk_read_begin(ses) == NPK_OK) {
        FUZZ_CHECK(!npk_row_live(ses, name, r));
        npk_read_end(ses);
      }
      break;
    }
    case 3: /* delete a slice of logical rows */
      rc = npk_delete_slice(ses, name, pick_row(w, info.live_rows),
                            1 + in_u8(in) % 4, in_u8(in) % 8);
      break;
    case 4: rc = npk_drop(ses, name); break;
    case 5: rc = npk_compact(ses, name); break;
    case 6:
      rc = npk_clone(ses, name, names[w % 6]);
      break;
    default: { /* save a new array, or over one */
      uint64_t shape[2] = {w % 9, 1 + in_u8(in) % 4};
      int dtype = (int)(in_u8(in) % NPK_NDTYPE);
      unsigned char *data =
          make_rows(dtype, itemsize(dtype) * shape[0] * shape[1], v);
      rc = npk_save(ses, names[v % 6], dtype, 2, shape, data);
      free(data);
      break;
    }
  }
  return rc;
}

/* Every array's description and live rows, as the session reads them. */
static void dump(NpkBuf *b) {
  int rc = npk_read_begin(ses), n = 0;
  npk_buf_u32(b, (uint32_t)rc);
  if (rc) return;
  rc = npk_array_count(ses, &n);
  npk_buf_u32(b, (uint32_t)rc);
  for (int i = 0; rc == NPK_OK && i < n; i++) {
    NpkArrayInfo info;
    uint64_t pos = 0, got = 0;
    unsigned char row[4096];
    int r2 = npk_array_info_at(ses, i, &info);
    npk_buf_u32(b, (uint32_t)r2);
    if (r2) continue;
    npk_buf_put(b, info.name, strlen(info.name) + 1);
    npk_buf_put(b, info.data_file, strlen(info.data_file) + 1);
    npk_buf_u32(b, (uint32_t)info.dtype);
    npk_buf_u32(b, info.ndim);
    for (uint32_t k = 0; k < info.ndim; k++) npk_buf_u64(b, info.shape[k]);
    npk_buf_u64(b, info.live_rows);
    if (info.row_bytes > sizeof row) continue;
    while (got < info.live_rows && got < MAX_SCAN) {
      r2 = npk_copy_live_rows(ses, info.name, &pos, 1, row);
      npk_buf_u32(b, (uint32_t)r2);
      if (r2) break;
      npk_buf_put(b, row, (size_t)info.row_bytes);
      got++;
    }
  }
  npk_read_end(ses);
}

static int no_sync(void *arg) {
  (void)arg;
  return 0;
}

static int open_store(int flags, int sync) {
  char *err = NULL;
  int rc = npk_store_open(store, flags, &st, &err);
  if (rc) {
    FUZZ_CHECK(st == NULL);
    FUZZ_CHECK(err != NULL && strncmp(err, "numpack: ", 9) == 0);
    npk_free(err);
    st = NULL;
    return rc;
  }
  FUZZ_CHECK(st != NULL && err == NULL);
  rc = npk_session_open(st, &ses);
  if (rc) {
    npk_store_release(st);
    st = NULL;
    return rc;
  }
  if (!sync) npk_set_sync_source(ses, no_sync, NULL);
  return NPK_OK;
}

static void close_store(void) {
  if (ses) npk_session_close(ses);
  if (st) npk_store_release(st);
  ses = NULL;
  st = NULL;
}

/* Release the store and open it again: what was committed reads back the
** same. */
static void reopen(int flags, int sync) {
  NpkBuf before = {0}, after = {0};
  dump(&before);
  close_store();
  if (open_store(flags, sync) == NPK_OK) {
    dump(&after);
    FUZZ_CHECK(same_buf(&before, &after));
  }
  npk_buf_free(&before);
  npk_buf_free(&after);
}

/* What another program ignoring the lock may do between two operations:
** cut the data file of the array V picks short (to the length W picks),
** lengthen it, remove its bitmap, or put the first catalog back.  Only
** files of the store with one name: the outside stays as it was.  From
** then on no row is promised, only errors (never a crash, nor zeros where
** rows were). */
static void tamper(unsigned what, In *in) {
  NpkArrayInfo info;
  char rel[NPK_MAX_NAME + 40];
  const char *path;
  unsigned v = in_u8(in), w = in_u8(in);
  const MFile *cat = model_file(NPK_CATALOG);
  struct stat sb;
  int i, fd;
  if (what == 3) {
    snprintf(rel, sizeof rel, "%s", NPK_CATALOG);
  } else {
    if (!read_array(v, &i, &info)) return;
    if (what == 2)
      snprintf(rel, sizeof rel, "deleted_%s.npkb", info.name);
    else
      snprintf(rel, sizeof rel, "%s", info.data_file);
    npk_read_end(ses);
  }
  path = fuzz_path(store, rel);
  if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_nlink > 1)
    return;
  tampered = 1;
  pristine = 0;
  switch (what) {
    case 0:
      FUZZ_CHECK(truncate(path, (off_t)pick_row(w, (uint64_t)sb.st_size) %
                                    ((uint64_t)sb.st_size + 1)) == 0);
      break;
    case 1:
      FUZZ_CHECK(truncate(path, sb.st_size + 1 + w) == 0);
      break;
    case 2:
      FUZZ_CHECK(unlink(path) == 0);
      break;
    default:
      /* A new file at the name, as a program replacing it would make. */
      FUZZ_CHECK(unlink(path) == 0);
      fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      FUZZ_CHECK(fd >= 0);
      FUZZ_CHECK(!cat || cat->n == 0 ||
                 write(fd, cat->p, cat->n) == (ssize_t)cat->n);
      close(fd);
      break;
  }
}

/* Run the operations of IN; FLAGS and SYNC open the store again. */
static void run_ops(In *in, int flags, int sync) {
  int level = -1;
  NpkBuf quiet = {0}; /* the store before the reads going on, if any */
  for (int k = 0; k < MAX_OPS && in->at < in->n && ses; k++) {
    unsigned op = in_u8(in);
    int txn = npk_in_txn(ses), rc;
    NpkBuf before = {0}, after = {0};
    if (op >= 0x80 && quiet.n) {
      /* Reading changes nothing on disk, in a transaction or not. */
      snap_store(&after);
      FUZZ_CHECK(same_buf(&quiet, &after));
      npk_buf_free(&after);
      npk_buf_free(&quiet);
    }
    if (op < 0x80) {
      if (!quiet.n) snap_store(&quiet);
      op_read(op % 8, in);
    } else if (op < 0xC0) {
      /* A write that fails outside a transaction changes no file but the
      ** lock file and journal, once what a write does first is done: a
      ** hot journal played back, leftovers of crashed commits removed (an
      ** empty transaction does both). */
      int recovered = !txn && !readonly && npk_begin(ses) == NPK_OK &&
                      npk_rollback(ses) == NPK_OK;
      pristine = 0;
      if (recovered) fuzz_snapshot(store, NPK_CATALOG "-", 1, &before);
      rc = op_write(op % 8, in);
      if (rc > 0) {
        check_fail(rc);
        if (readonly) FUZZ_CHECK(rc == NPK_READONLY || rc == NPK_BUSY ||
                                 rc == NPK_NOTFOUND || rc == NPK_CORRUPT);
        if (recovered) {
          fuzz_snapshot(store, NPK_CATALOG "-", 1, &after);
          FUZZ_CHECK(same_buf(&before, &after));
        }
      }
    } else if (op >= 0xE0) {
      tamper(op % 4, in);
    } else {
      switch (op % 8) {
        case 0: rc = npk_begin(ses); pristine = 0; break;
        case 1: rc = npk_commit(ses); break;
        case 2: rc = npk_rollback(ses); break;
        case 3: rc = npk_savepoint(ses, &level); break;
        case 4: rc = level >= 0 ? npk_rollback_to(ses, level) : NPK_OK; break;
        case 5: rc = level >= 0 ? npk_release(ses, level) : NPK_OK; break;
        case 6: rc = npk_recover(ses); pristine = 0; break;
        default:
          if (!txn && !tampered) reopen(flags, sync);
          rc = NPK_OK;
          break;
      }
      if (rc) check_fail(rc);
      if (!ses || !npk_in_txn(ses)) level = -1;
    }
    npk_buf_free(&before);
    npk_buf_free(&after);
  }
  if (quiet.n) {
    NpkBuf after = {0};
    snap_store(&after);
    FUZZ_CHECK(same_buf(&quiet, &after));
    npk_buf_free(&after);
    npk_buf_free(&quiet);
  }
  if (ses && npk_in_txn(ses)) (void)npk_rollback(ses);
  if (ses && !pristine && !tampered) reopen(flags, sync);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  In in = {data, size, 0};
  Desc d[MAX_ARR];
  const uint8_t *jr, *lk;
  size_t njr, nlk;
  unsigned flags, lock, journal;
  NpkBuf now = {0};
  int oflags;
  setup_once();
  fuzz_remove_tree(store);
  for (int i = 0; i < nfiles; i++) free(files[i].p);
  nfiles = 0;
  store_bytes = 0;
  biggest = 0;
  memset(arr, 0, sizeof arr);

  flags = in_u8(&in);
  lock = in_u8(&in);
  journal = in_u8(&in);
  narr = (int)(in_u8(&in) % (MAX_ARR + 1));
  for (int i = 0; i < narr; i++) {
    uint8_t *p = (uint8_t *)&d[i];
    for (size_t k = 0; k < sizeof d[i]; k++) p[k] = (uint8_t)in_u8(&in);
  }
  njr = in_u16(&in);
  jr = in_take(&in, &njr);
  nlk = in_u8(&in);
  lk = in_take(&in, &nlk);

  put_fixed(flags & 4);
  for (int i = 0; i < narr; i++) {
    MArr *a = &arr[i];
    a->name = names[d[i].name % 8];
    a->dtype = d[i].dtype >= 0xF0 ? d[i].dtype : d[i].dtype % NPK_NDTYPE;
    a->ndim = 1 + d[i].ndim % 3;
    a->shape[0] = d[i].mode & 16 ? huge[d[i].pick >> 5] : d[i].rows;
    a->shape[1] = d[i].dims & 7;
    a->shape[2] = d[i].dims >> 3 & 7;
    a->rb = itemsize(a->dtype);
    for (uint32_t k = 1; k < a->ndim; k++) a->rb *= a->shape[k];
    put_data(a, &d[i], i, jr, njr);
    put_bitmap(a, &d[i]);
  }
  put_lock(lock, lk, nlk);
  put_journal(journal, jr, njr);
  put_catalog(d);
  store_bytes += size;

  pristine = 1;
  tampered = 0;
  readonly = flags & 1;
  oflags = readonly ? NPK_OPEN_READONLY : 0;
  {
    NpkBuf before = {0}, after = {0};
    int rc;
    snap_store(&before);
    rc = open_store(oflags, flags & 2);
    snap_store(&after);
    /* Opening reads. */
    FUZZ_CHECK(same_buf(&before, &after));
    npk_buf_free(&before);
    npk_buf_free(&after);
    if (rc == NPK_OK) run_ops(&in, oflags, flags & 2);
  }
  close_store();

  FUZZ_CHECK(biggest <= (UINT64_C(32) << 20) + 64 * store_bytes);
  fuzz_snapshot(outside, NULL, 1, &now);
  FUZZ_CHECK(same_buf(&now, &outside_before));
  npk_buf_free(&now);
  return 0;
}
