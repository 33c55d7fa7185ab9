/*
** store_testutil.h — helpers shared by the C unit tests of the store engine:
** temporary directories, whole-file I/O, little-endian byte buffers, a
** catalog builder and parser written from the format description, directory
** snapshots, and a canonical dump of a store's logical content.
**
** Everything is static so that each test program includes its own copy.
*/
#ifndef NPK_STORE_TESTUTIL_H
#define NPK_STORE_TESTUTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "ctest.h"
#include "store.h"
#include "journal_hot.h"

/* Helpers may go unused in one of the programs. */
#define TU_FN static __attribute__((unused))

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

#define TU_MAGIC   0x424B504Eu
#define TU_CATALOG "metadata.npkm"
#define TU_LOCK    "metadata.npkm-lock"
#define TU_SPARE   "metadata.npkm-journal-spare"
#define TU_JOURNAL "metadata.npkm-journal"

/* Item sizes of the 14 dtype codes, from the format description. */
TU_FN const int tu_itemsize[NPK_NDTYPE] = {
  1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 4, 8, 8, 16
};

/* ---- deterministic pseudo-random numbers ----------------------------- */

TU_FN uint64_t tu_rand(uint64_t *state) {
  uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ull;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;
  return x;
}

TU_FN void tu_fill(void *dst, size_t n, uint64_t seed) {
  unsigned char *p = dst;
  uint64_t st = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(tu_rand(&st) >> 24);
}

/* ---- time ------------------------------------------------------------ */

TU_FN uint64_t tu_now_us(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

TU_FN double tu_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* ---- little-endian byte buffers -------------------------------------- */

typedef struct Buf {
  unsigned char *p;
  size_t n, cap;
} Buf;

TU_FN void buf_put(Buf *b, const void *data, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + n) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) { perror("realloc"); exit(2); }
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->n, data, n);
  b->n += n;
}

TU_FN void put_u8(Buf *b, uint8_t v) { buf_put(b, &v, 1); }

TU_FN void put_u32(Buf *b, uint32_t v) {
  unsigned char x[4];
  for (int i = 0; i < 4; i++) x[i] = (unsigned char)(v >> (8 * i));
  buf_put(b, x, 4);
}

TU_FN void put_u64(Buf *b, uint64_t v) {
  unsigned char x[8];
  for (int i = 0; i < 8; i++) x[i] = (unsigned char)(v >> (8 * i));
  buf_put(b, x, 8);
}

/* u32 length + bytes */
TU_FN void put_lstr(Buf *b, const char *s, size_t n) {
  put_u32(b, (uint32_t)n);
  buf_put(b, s, n);
}

TU_FN void put_str(Buf *b, const char *s) { put_lstr(b, s, strlen(s)); }

TU_FN uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

TU_FN uint64_t get_u64(const unsigned char *p) {
  return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

TU_FN void set_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

TU_FN void buf_free(Buf *b) {
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}

TU_FN int buf_eq(const Buf *a, const Buf *b) {
  return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
}

/* ---- paths and files ------------------------------------------------- */

/* DIR/NAME in one of 16 rotating static buffers. */
TU_FN const char *P(const char *dir, const char *name) {
  static char ring[16][PATH_MAX];
  static int next;
  char *out = ring[next];
  next = (next + 1) % 16;
  snprintf(out, PATH_MAX, "%s/%s", dir, name);
  return out;
}

TU_FN int tu_write_file(const char *path, const void *data, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return -1;
  const unsigned char *p = data;
  size_t done = 0;
  while (done < n) {
    ssize_t w = write(fd, p + done, n - done);
    if (w <= 0) { close(fd); return -1; }
    done += (size_t)w;
  }
  close(fd);
  return 0;
}

/* N bytes 0xAB appended to PATH and synced, as another program, or a
** commit interrupted before it cut its tail, leaves past an array's rows;
** -1 on failure. */
TU_FN int tu_append_junk(const char *path, size_t n) {
  unsigned char junk[4096];
  int fd = open(path, O_WRONLY | O_APPEND), rc = 0;
  if (fd < 0 || n > sizeof junk) rc = -1;
  memset(junk, 0xAB, sizeof junk);
  if (rc == 0 && (write(fd, junk, n) != (ssize_t)n || fsync(fd) != 0)) rc = -1;
  if (fd >= 0) close(fd);
  return rc;
}

/* Put N bytes at DATA in place of DIR's catalog, as a program that ignores
** the store's lock writes it: a new file renamed over the old one (the
** commit count unchanged).  0, or -1 if it could not. */
TU_FN int tu_catalog_replace(const char *dir, const void *data, size_t n) {
  if (tu_write_file(P(dir, "foreign"), data, n) != 0) return -1;
  return rename(P(dir, "foreign"), P(dir, TU_CATALOG));
}

TU_FN int tu_write_buf(const char *path, const Buf *b) {
  return tu_write_file(path, b->p ? (const void *)b->p : (const void *)"",
                       b->n);
}

/* The whole file, malloc'd (NUL-terminated for convenience), or NULL. */
TU_FN unsigned char *tu_read_file(const char *path, size_t *pn) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) { if (pn) *pn = 0; return NULL; }
  struct stat st;
  if (fstat(fd, &st) != 0) { close(fd); return NULL; }
  size_t n = (size_t)st.st_size;
  unsigned char *p = malloc(n + 1);
  size_t done = 0;
  while (done < n) {
    ssize_t r = read(fd, p + done, n - done);
    if (r <= 0) break;
    done += (size_t)r;
  }
  close(fd);
  p[done] = 0;
  if (pn) *pn = done;
  return p;
}

TU_FN int tu_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

/* 1 when the store in DIR has a journal that may be hot (journal_hot.h). */
TU_FN int tu_journal_hot(const char *dir) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", dir, TU_JOURNAL);
  return test_journal_hot(path);
}

TU_FN long long tu_file_size(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return -1;
  return (long long)st.st_size;
}

TU_FN int tu_rm_rf(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (d) {
      struct dirent *e;
      while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[PATH_MAX];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        tu_rm_rf(sub);
      }
      closedir(d);
    }
    return rmdir(path);
  }
  return unlink(path);
}

/* A fresh temporary directory ROOT for one test case; DIR = ROOT/store is
** the store directory (not created). */
typedef struct Tmp {
  char root[1024];
  char dir[1100];
} Tmp;

TU_FN void tu_tmp_init(Tmp *t) {
  const char *base = getenv("TMPDIR");
  if (!base || !*base) base = "/tmp";
  snprintf(t->root, sizeof t->root, "%s/npkstoretest.XXXXXX", base);
  if (!mkdtemp(t->root)) { perror("mkdtemp"); exit(2); }
  snprintf(t->dir, sizeof t->dir, "%s/store", t->root);
}

TU_FN void tu_tmp_done(Tmp *t) { tu_rm_rf(t->root); }

/* ---- directory snapshots (every file except the lock file) ----------- */

#define TU_SNAP_MAX 256

typedef struct Snap {
  int n;
  char *name[TU_SNAP_MAX];
  unsigned char *data[TU_SNAP_MAX];
  size_t len[TU_SNAP_MAX];
} Snap;

TU_FN int tu_snap_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

TU_FN void tu_snap_free(Snap *s) {
  for (int i = 0; i < s->n; i++) { free(s->name[i]); free(s->data[i]); }
  s->n = 0;
}

TU_FN void tu_snap(const char *dir, Snap *s) {
  char *names[TU_SNAP_MAX];
  int n = 0;
  s->n = 0;
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  int idle = !tu_journal_hot(dir);
  while ((e = readdir(d)) != NULL && n < TU_SNAP_MAX) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    /* The lock file and the journal's idle file are numpack's own (the
    ** spare journal file of earlier releases too). */
    if (!strcmp(e->d_name, TU_LOCK) || !strcmp(e->d_name, TU_SPARE) ||
        (idle && !strcmp(e->d_name, TU_JOURNAL)))
      continue;
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof names[0], tu_snap_cmp);
  for (int i = 0; i < n; i++) {
    s->name[i] = names[i];
    s->data[i] = tu_read_file(P(dir, names[i]), &s->len[i]);
  }
  s->n = n;
}

/* 1 if equal; otherwise prints the first differences and returns 0. */
TU_FN int tu_snap_eq(const Snap *a, const Snap *b) {
  int ok = 1, i = 0, j = 0;
  while (i < a->n || j < b->n) {
    int c = i >= a->n ? 1 : j >= b->n ? -1 : strcmp(a->name[i], b->name[j]);
    if (c < 0) {
      printf("  snapshot: %s only before\n", a->name[i++]);
      ok = 0;
    } else if (c > 0) {
      printf("  snapshot: %s only after\n", b->name[j++]);
      ok = 0;
    } else {
      if (a->len[i] != b->len[j] ||
          (a->len[i] && memcmp(a->data[i], b->data[j], a->len[i]))) {
        printf("  snapshot: %s differs (%zu vs %zu bytes)\n", a->name[i],
               a->len[i], b->len[j]);
        ok = 0;
      }
      i++;
      j++;
    }
  }
  return ok;
}

/* Every entry of DIR, the lock file included, as sorted text lines of
** name, size and modification time in nanoseconds (malloc'd): equal
** listings mean nothing was created, removed, extended, truncated or
** written. */
TU_FN char *tu_listing(const char *dir) {
  char *names[TU_SNAP_MAX], *out;
  size_t len = 1;
  int n = 0;
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL && n < TU_SNAP_MAX) {
    struct stat sb;
    char line[600];
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (stat(P(dir, e->d_name), &sb) != 0) memset(&sb, 0, sizeof sb);
    snprintf(line, sizeof line, "%s %lld %lld.%09ld\n", e->d_name,
             (long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
             sb.st_mtim.tv_nsec);
    names[n++] = strdup(line);
  }
  if (d) closedir(d);
  qsort(names, (size_t)n, sizeof names[0], tu_snap_cmp);
  for (int i = 0; i < n; i++) len += strlen(names[i]);
  out = malloc(len);
  if (!out) { perror("malloc"); exit(2); }
  out[0] = 0;
  for (int i = 0; i < n; i++) {
    strcat(out, names[i]);
    free(names[i]);
  }
  return out;
}

/* 1 if DIR's listing is still WAS (freed); otherwise prints both. */
TU_FN int tu_listing_same(const char *dir, char *was) {
  char *now = tu_listing(dir);
  int same = strcmp(was, now) == 0;
  if (!same) printf("  listing before:\n%s  listing after:\n%s", was, now);
  free(was);
  free(now);
  return same;
}

/* Recreate a snapshot's files in DIR (created if missing). */
TU_FN void tu_snap_restore(const Snap *s, const char *dir) {
  mkdir(dir, 0755);
  for (int i = 0; i < s->n; i++)
    tu_write_file(P(dir, s->name[i]), s->data[i], s->len[i]);
}

/* ---- catalog building ------------------------------------------------ */

typedef struct CatEntry {
  const char *name;
  size_t name_len;        /* 0: strlen(name) */
  uint32_t ndim;
  uint64_t dims[40];      /* ndim values written (up to 40) */
  const char *data_file;  /* NULL: "data_<name>.npkd" */
  uint64_t mtime;
  uint64_t size;          /* used when size_given */
  int size_given;
  uint8_t dtype;
  uint8_t compression;
  uint32_t level;
  int block_info;         /* write flag 1 with 2 entries */
} CatEntry;

TU_FN uint64_t tu_entry_size(const CatEntry *e) {
  if (e->size_given) return e->size;
  uint64_t n = e->dtype < NPK_NDTYPE ? (uint64_t)tu_itemsize[e->dtype] : 1;
  for (uint32_t i = 0; i < e->ndim && i < 40; i++) n *= e->dims[i];
  return n;
}

/* Build a whole catalog.  If MTIME_OFF is not NULL it receives the byte
** offset of each entry's last-modified field. */
TU_FN void tu_cat_build(Buf *b, const CatEntry *e, int n, size_t *mtime_off) {
  uint64_t total = 0;
  for (int i = 0; i < n; i++) total += tu_entry_size(&e[i]);
  put_u32(b, TU_MAGIC);
  put_u32(b, 1);
  put_u64(b, total);
  put_u32(b, (uint32_t)n);
  for (int i = 0; i < n; i++) {
    char df[600];
    const char *datafile = e[i].data_file;
    if (!datafile) {
      snprintf(df, sizeof df, "data_%s.npkd", e[i].name);
      datafile = df;
    }
    put_lstr(b, e[i].name, e[i].name_len ? e[i].name_len : strlen(e[i].name));
    put_u32(b, e[i].ndim);
    for (uint32_t k = 0; k < e[i].ndim && k < 40; k++) put_u64(b, e[i].dims[k]);
    put_str(b, datafile);
    if (mtime_off) mtime_off[i] = b->n;
    put_u64(b, e[i].mtime);
    put_u64(b, tu_entry_size(&e[i]));
    put_u8(b, e[i].dtype);
    put_u8(b, e[i].compression);
    put_u32(b, e[i].level);
    put_u64(b, 0);
    put_u64(b, 0);
    if (e[i].block_info) {
      put_u8(b, 1);
      put_u8(b, 1);               /* enabled */
      put_u64(b, 4096);           /* block size */
      put_u64(b, 2);              /* block count */
      put_u32(b, 2);              /* n */
      put_u64(b, 0); put_u64(b, 4096); put_u64(b, 100);
      put_u64(b, 4096); put_u64(b, 4096); put_u64(b, 60);
    } else {
      put_u8(b, 0);
    }
  }
}

/* A deletion bitmap from per-row live flags (1 = live). */
TU_FN void tu_bitmap_build(Buf *b, const unsigned char *live, uint64_t rows) {
  uint64_t deleted = 0;
  for (uint64_t r = 0; r < rows; r++) deleted += !live[r];
  put_u64(b, rows);
  put_u64(b, deleted);
  for (uint64_t w = 0; w < (rows + 63) / 64; w++) {
    uint64_t word = 0;
    for (uint64_t bit = 0; bit < 64 && w * 64 + bit < rows; bit++)
      if (live[w * 64 + bit]) word |= (uint64_t)1 << bit;
    put_u64(b, word);
  }
}

/* ---- a segmented array -------------------------------------------- */

/* A segmented int64 array "s" of 5 rows (11..15): tu_seg_entry() is its
** catalog entry, tu_seg_write() writes its manifest and its two segment
** files into DIR (which must exist). */
TU_FN CatEntry tu_seg_entry(void) {
  CatEntry e;
  memset(&e, 0, sizeof e);
  e.name = "s"; e.ndim = 1; e.dims[0] = 5; e.dtype = NPK_INT64;
  e.data_file = "data_s.npkseg"; e.mtime = 1600000000000001ull;
  return e;
}

static const char *const tu_seg_manifest __attribute__((unused)) =
  "{\"version\":1,\"segments\":[{\"file\":\"seg_s_0.bin\",\"rows\":3,"
  "\"bytes\":24},{\"file\":\"seg_s_1.bin\",\"rows\":2,\"bytes\":16}]}";

TU_FN void tu_seg_write(const char *dir) {
  int64_t v[5] = {11, 12, 13, 14, 15};
  tu_write_file(P(dir, "data_s.npkseg"), tu_seg_manifest,
                strlen(tu_seg_manifest));
  tu_write_file(P(dir, "seg_s_0.bin"), v, 24);
  tu_write_file(P(dir, "seg_s_1.bin"), v + 3, 16);
}

/* DIR made a store holding only the segmented array "s". */
TU_FN void tu_seg_store(const char *dir) {
  CatEntry e = tu_seg_entry();
  Buf cat = {0};
  mkdir(dir, 0755);
  tu_cat_build(&cat, &e, 1, NULL);
  tu_write_buf(P(dir, TU_CATALOG), &cat);
  buf_free(&cat);
  tu_seg_write(dir);
}

/* The segment files tu_seg_write() wrote into DIR moved into its
** subdirectory SUB (made here), and the manifest rewritten to name them
** there, as NumPack may keep them. */
TU_FN void tu_seg_into(const char *dir, const char *sub) {
  char m[1024], from[2][64], to[2][300];
  for (int i = 0; i < 2; i++) {
    snprintf(from[i], sizeof from[i], "seg_s_%d.bin", i);
    snprintf(to[i], sizeof to[i], "%s/seg_s_%d.bin", sub, i);
  }
  snprintf(m, sizeof m,
           "{\"version\":1,\"segments\":[{\"file\":\"%s\",\"rows\":3,"
           "\"bytes\":24},{\"file\":\"%s\",\"rows\":2,\"bytes\":16}]}",
           to[0], to[1]);
  mkdir(P(dir, sub), 0755);
  for (int i = 0; i < 2; i++) rename(P(dir, from[i]), P(dir, to[i]));
  tu_write_file(P(dir, "data_s.npkseg"), m, strlen(m));
}

/* A segmented int64 array "m" of NSEG rows in NSEG one-row segment files
** seg_m_<i>.bin (row i holds i): its manifest, segments and a catalog
** naming only it, written into DIR (which must exist). */
TU_FN void tu_seg_write_many(const char *dir, int nseg) {
  Buf m = {0}, cat = {0};
  CatEntry e;
  char name[64], head[160];
  for (int i = 0; i < nseg; i++) {
    int64_t v = i;
    snprintf(name, sizeof name, "seg_m_%d.bin", i);
    tu_write_file(P(dir, name), &v, sizeof v);
    snprintf(head, sizeof head, "%s{\"file\":\"%s\",\"rows\":1,\"bytes\":8}",
             i ? "," : "{\"version\":1,\"segments\":[", name);
    buf_put(&m, head, strlen(head));
  }
  buf_put(&m, "]}", 2);
  tu_write_buf(P(dir, "data_m.npkseg"), &m);
  memset(&e, 0, sizeof e);
  e.name = "m"; e.ndim = 1; e.dims[0] = (uint64_t)nseg; e.dtype = NPK_INT64;
  e.data_file = "data_m.npkseg"; e.mtime = 1600000000000001ull;
  tu_cat_build(&cat, &e, 1, NULL);
  tu_write_buf(P(dir, TU_CATALOG), &cat);
  buf_free(&m);
  buf_free(&cat);
}

/* How many of the NSEG segment files of tu_seg_write_many() exist. */
TU_FN int tu_seg_count_many(const char *dir, int nseg) {
  char name[64];
  int n = 0;
  for (int i = 0; i < nseg; i++) {
    snprintf(name, sizeof name, "seg_m_%d.bin", i);
    n += tu_exists(P(dir, name));
  }
  return n;
}

/* A store in DIR (which must exist) holding only "w", a float32 array of
** shape (ROWS, 0) with an empty data file, and, when BITS > 0, a deletion
** bitmap covering its first BITS rows, all live (rows past them are
** deleted). */
TU_FN void tu_zero_width_write(const char *dir, uint64_t rows, uint64_t bits) {
  Buf cat = {0}, bm = {0};
  CatEntry e;
  memset(&e, 0, sizeof e);
  e.name = "w"; e.ndim = 2; e.dims[0] = rows; e.dims[1] = 0;
  e.dtype = NPK_FLOAT32; e.mtime = 1600000000000001ull;
  tu_cat_build(&cat, &e, 1, NULL);
  tu_write_buf(P(dir, TU_CATALOG), &cat);
  tu_write_file(P(dir, "data_w.npkd"), "", 0);
  if (bits) {
    unsigned char *live = malloc((size_t)bits);
    memset(live, 1, (size_t)bits);
    tu_bitmap_build(&bm, live, bits);
    tu_write_buf(P(dir, "deleted_w.npkb"), &bm);
    free(live);
  }
  buf_free(&cat);
  buf_free(&bm);
}

/* ---- catalog parsing (independent of the engine) ---------------------- */

#define TU_CAT_MAX 64

typedef struct CatParsed {
  uint32_t magic, version, count;
  uint64_t total;
  struct {
    char name[512];
    uint32_t ndim;
    uint64_t dims[NPK_MAX_NDIM];
    char data_file[1024];
    uint64_t mtime;
    size_t mtime_off;
    uint64_t size;
    uint8_t dtype, compression, block_flag;
    size_t dtype_off;
  } e[TU_CAT_MAX];
} CatParsed;

/* 0 on success (the whole file consumed), -1 if malformed. */
TU_FN int tu_cat_parse(const unsigned char *p, size_t n, CatParsed *c) {
  size_t o = 0;
#define NEED(k) do { if (n - o < (size_t)(k) || o > n) return -1; } while (0)
  memset(c, 0, sizeof *c);
  NEED(20);
  c->magic = get_u32(p);
  c->version = get_u32(p + 4);
  c->total = get_u64(p + 8);
  c->count = get_u32(p + 16);
  o = 20;
  if (c->count > TU_CAT_MAX) return -1;
  for (uint32_t i = 0; i < c->count; i++) {
    NEED(4);
    uint32_t len = get_u32(p + o); o += 4;
    if (len >= sizeof c->e[i].name) return -1;
    NEED(len);
    memcpy(c->e[i].name, p + o, len); o += len;
    NEED(4);
    c->e[i].ndim = get_u32(p + o); o += 4;
    if (c->e[i].ndim > NPK_MAX_NDIM) return -1;
    for (uint32_t k = 0; k < c->e[i].ndim; k++) {
      NEED(8);
      c->e[i].dims[k] = get_u64(p + o); o += 8;
    }
    NEED(4);
    len = get_u32(p + o); o += 4;
    if (len >= sizeof c->e[i].data_file) return -1;
    NEED(len);
    memcpy(c->e[i].data_file, p + o, len); o += len;
    NEED(8 + 8 + 1 + 1 + 4 + 8 + 8 + 1);
    c->e[i].mtime_off = o;
    c->e[i].mtime = get_u64(p + o); o += 8;
    c->e[i].size = get_u64(p + o); o += 8;
    c->e[i].dtype_off = o;
    c->e[i].dtype = p[o++];
    c->e[i].compression = p[o++];
    o += 4 + 8 + 8;
    c->e[i].block_flag = p[o++];
    if (c->e[i].block_flag == 1) {
      NEED(1 + 8 + 8 + 4);
      o += 1 + 8 + 8;
      uint32_t k = get_u32(p + o); o += 4;
      NEED((size_t)k * 24);
      o += (size_t)k * 24;
    }
  }
#undef NEED
  return o == n ? 0 : -1;
}

/* Parse DIR/metadata.npkm into a malloc'd CatParsed, or NULL. */
TU_FN CatParsed *tu_cat_read(const char *dir) {
  size_t n;
  unsigned char *p = tu_read_file(P(dir, TU_CATALOG), &n);
  if (!p) return NULL;
  CatParsed *c = malloc(sizeof *c);
  if (tu_cat_parse(p, n, c) != 0) { free(c); c = NULL; }
  free(p);
  return c;
}

TU_FN int tu_cat_find(const CatParsed *c, const char *name) {
  for (uint32_t i = 0; i < c->count; i++)
    if (!strcmp(c->e[i].name, name)) return (int)i;
  return -1;
}

/* Files in the subdirectory SUB of DIR but the segment files of the
** segmented test array "s": printed and counted. */
TU_FN int tu_sub_leftovers(const char *dir, const char *sub) {
  char here[1200];
  int n = 0;
  DIR *d;
  struct dirent *e;
  snprintf(here, sizeof here, "%s/%s", dir, sub);
  d = opendir(here);
  while (d && (e = readdir(d)) != NULL) {
    const char *f = e->d_name;
    if (!strcmp(f, ".") || !strcmp(f, "..")) continue;
    if (e->d_type != DT_DIR && !strncmp(f, "seg_s_", 6) &&
        !strstr(f, "-npkbak"))
      continue;
    printf("  leftover file %s/%s\n", sub, f);
    n++;
  }
  if (d) closedir(d);
  return n;
}

/* Files in DIR that belong to nothing: not the catalog, the lock file, a
** data file or bitmap of an array in the catalog, nor the files of the
** segmented test array "s" (in DIR or a subdirectory).  Prints and counts
** them (-1: no catalog). */
TU_FN int tu_leftovers(const char *dir) {
  CatParsed *c = tu_cat_read(dir);
  if (!c) return -1;
  int n = 0;
  DIR *d = opendir(dir);
  struct dirent *e;
  int idle = !tu_journal_hot(dir);
  while (d && (e = readdir(d)) != NULL) {
    const char *f = e->d_name;
    if (!strcmp(f, ".") || !strcmp(f, "..") || !strcmp(f, TU_CATALOG) ||
        !strcmp(f, TU_LOCK) || !strcmp(f, TU_SPARE) ||
        (idle && !strcmp(f, TU_JOURNAL)) || !strcmp(f, "data_s.npkseg") ||
        (!strncmp(f, "seg_s_", 6) && !strstr(f, "-npkbak")))
      continue;
    if (e->d_type == DT_DIR) {
      n += tu_sub_leftovers(dir, f);
      continue;
    }
    int known = 0;
    for (uint32_t i = 0; i < c->count && !known; i++) {
      char bm[600];
      snprintf(bm, sizeof bm, "deleted_%s.npkb", c->e[i].name);
      known = !strcmp(f, c->e[i].data_file) || !strcmp(f, bm);
    }
    if (!known) {
      printf("  leftover file %s\n", f);
      n++;
    }
  }
  if (d) closedir(d);
  free(c);
  return n;
}

/* After a failed operation: the catalog is byte-identical to BASE's, and
** every other file of BASE is there with its bytes (a data file may have
** grown past them).  Prints the differences; 1 if all is well. */
TU_FN int tu_snap_same_content(const Snap *base, const Snap *now) {
  int ok = 1;
  for (int i = 0; i < base->n; i++) {
    int j = 0;
    while (j < now->n && strcmp(now->name[j], base->name[i])) j++;
    if (j == now->n) {
      printf("  file %s is gone\n", base->name[i]);
      ok = 0;
      continue;
    }
    int grew_ok = strcmp(base->name[i], TU_CATALOG) != 0 &&
                  !strncmp(base->name[i], "data_", 5);
    if (now->len[j] < base->len[i] ||
        (now->len[j] > base->len[i] && !grew_ok) ||
        (base->len[i] && memcmp(now->data[j], base->data[i], base->len[i]))) {
      printf("  file %s changed (%zu -> %zu bytes)\n", base->name[i],
             base->len[i], now->len[j]);
      ok = 0;
    }
  }
  return ok;
}

/* ---- opening stores -------------------------------------------------- */

/* Open DIR with FLAGS and a session on it; both NULL on failure (reported
** as a failed check). */
TU_FN NpkSession *tu_open(const char *dir, int flags, NpkStore **ppStore) {
  char *err = NULL;
  NpkStore *st = NULL;
  NpkSession *s = NULL;
  int rc = npk_store_open(dir, flags, &st, &err);
  if (rc != NPK_OK) {
    printf("  open %s: rc=%d %s\n", dir, rc, err ? err : "");
    CHECK_EQ(rc, NPK_OK);
    free(err);
    *ppStore = NULL;
    return NULL;
  }
  free(err);
  rc = npk_session_open(st, &s);
  CHECK_EQ(rc, NPK_OK);
  *ppStore = st;
  return rc == NPK_OK ? s : NULL;
}

TU_FN void tu_close(NpkStore *st, NpkSession *s) {
  if (s) npk_session_close(s);
  if (st) npk_store_release(st);
}

/* Try to open DIR and expect failure with RC; the message must contain
** FRAG (and FRAG2 if not NULL, either one being enough when ANY is set). */
TU_FN void tu_expect_open_fail(const char *dir, int flags, int want_rc,
                                const char *frag, const char *frag2, int any,
                                int line) {
  char *err = NULL;
  NpkStore *st = (NpkStore *)&err; /* not NULL: must be cleared */
  int rc = npk_store_open(dir, flags, &st, &err);
  if (getenv("NPK_TEST_VERBOSE"))
    printf("  line %d: open rc=%d: %s\n", line, rc, err ? err : "");
  if (rc != want_rc) {
    ctest_case_failures++;
    printf("FAIL line %d: open rc=%d, wanted %d (%s)\n", line, rc, want_rc,
           err ? err : "no message");
  }
  if (rc == NPK_OK) {
    if (st) npk_store_release(st);
  } else if (st != NULL) {
    ctest_case_failures++;
    printf("FAIL line %d: *ppStore not NULL after a failed open\n", line);
  }
  if (rc != NPK_OK && frag) {
    int has1 = err && strstr(err, frag);
    int has2 = frag2 && err && strstr(err, frag2);
    int ok = any ? (has1 || has2) : (has1 && (!frag2 || has2));
    if (!ok) {
      ctest_case_failures++;
      printf("FAIL line %d: message \"%s\" lacks \"%s\"%s%s\n", line,
             err ? err : "(null)", frag, frag2 ? (any ? " or " : " and ") : "",
             frag2 ? frag2 : "");
    }
  }
  free(err);
}

/* ---- canonical dump of a store's content ----------------------------- */

/* Serialize what a session sees: per array (catalog order) the name, dtype,
** physical shape, and for each physical row a live flag and, if live, its
** bytes.  READ: wrap in npk_read_begin/npk_read_end. */
TU_FN int tu_dump(NpkSession *s, Buf *out, int read) {
  int rc, n = 0;
  if (read && (rc = npk_read_begin(s)) != NPK_OK) return rc;
  rc = npk_array_count(s, &n);
  if (rc == NPK_OK) put_u32(out, (uint32_t)n);
  for (int i = 0; rc == NPK_OK && i < n; i++) {
    NpkArrayInfo info;
    rc = npk_array_info_at(s, i, &info);
    if (rc != NPK_OK) break;
    char name[512];
    snprintf(name, sizeof name, "%s", info.name);
    put_str(out, name);
    put_u32(out, (uint32_t)info.dtype);
    put_u32(out, info.ndim);
    for (uint32_t k = 0; k < info.ndim; k++) put_u64(out, info.shape[k]);
    put_u64(out, info.live_rows);
    for (uint64_t r = 0; r < info.rows; r++) {
      int live = npk_row_live(s, name, r);
      put_u8(out, (uint8_t)live);
      if (live) {
        const void *row = NULL;
        rc = npk_row_ptr(s, name, r, &row);
        if (rc != NPK_OK) break;
        buf_put(out, row, info.row_bytes);
      }
    }
  }
  if (read) npk_read_end(s);
  return rc;
}

/* ---- an in-memory model of a store ----------------------------------- */

typedef struct MArr {
  char name[64];
  int dtype;
  uint32_t ndim;
  uint64_t shape[8];
  size_t row_bytes;
  unsigned char *data;
  unsigned char *live;
} MArr;

typedef struct Model {
  int n;
  MArr a[16];
} Model;

TU_FN MArr *model_find(Model *m, const char *name) {
  for (int i = 0; i < m->n; i++)
    if (!strcmp(m->a[i].name, name)) return &m->a[i];
  return NULL;
}

TU_FN void model_save(Model *m, const char *name, int dtype, uint32_t ndim,
                       const uint64_t *shape, const void *data) {
  MArr *a = model_find(m, name);
  if (!a) {
    a = &m->a[m->n++];
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
  }
  free(a->data);
  free(a->live);
  a->dtype = dtype;
  a->ndim = ndim;
  a->row_bytes = (size_t)tu_itemsize[dtype];
  for (uint32_t k = 0; k < ndim; k++) {
    a->shape[k] = shape[k];
    if (k) a->row_bytes *= (size_t)shape[k];
  }
  a->data = malloc(a->row_bytes * shape[0] + 1);
  memcpy(a->data, data, a->row_bytes * shape[0]);
  a->live = malloc(shape[0] + 1);
  memset(a->live, 1, shape[0]);
}

TU_FN void model_append(Model *m, const char *name, uint64_t nrows,
                         const void *data) {
  MArr *a = model_find(m, name);
  if (!a) return;
  uint64_t r0 = a->shape[0];
  a->shape[0] += nrows;
  a->data = realloc(a->data, a->row_bytes * a->shape[0] + 1);
  memcpy(a->data + a->row_bytes * r0, data, a->row_bytes * nrows);
  a->live = realloc(a->live, a->shape[0] + 1);
  memset(a->live + r0, 1, nrows);
}

TU_FN void model_replace(Model *m, const char *name, uint64_t row,
                          const void *data) {
  MArr *a = model_find(m, name);
  if (!a) return;
  memcpy(a->data + a->row_bytes * row, data, a->row_bytes);
}

TU_FN void model_delete(Model *m, const char *name, uint64_t row) {
  MArr *a = model_find(m, name);
  if (a && row < a->shape[0]) a->live[row] = 0;
}

TU_FN void model_drop(Model *m, const char *name) {
  MArr *a = model_find(m, name);
  if (!a) return;
  int i = (int)(a - m->a);
  free(a->data);
  free(a->live);
  memmove(&m->a[i], &m->a[i + 1], sizeof(MArr) * (size_t)(m->n - i - 1));
  m->n--;
}

/* NAME's live rows only, in order (compaction). */
TU_FN void model_compact(Model *m, const char *name) {
  MArr *a = model_find(m, name);
  if (!a) return;
  uint64_t k = 0;
  for (uint64_t r = 0; r < a->shape[0]; r++) {
    if (!a->live[r]) continue;
    memmove(a->data + a->row_bytes * k, a->data + a->row_bytes * r,
            a->row_bytes);
    k++;
  }
  a->shape[0] = k;
  memset(a->live, 1, k);
}

/* DST as a copy of SRC's live rows (at the end of the catalog). */
TU_FN void model_clone(Model *m, const char *src, const char *dst) {
  MArr *a = model_find(m, src);
  if (!a) return;
  MArr *b = &m->a[m->n++];
  *b = *a;
  snprintf(b->name, sizeof b->name, "%s", dst);
  b->data = malloc(a->row_bytes * a->shape[0] + 1);
  memcpy(b->data, a->data, a->row_bytes * a->shape[0]);
  b->live = malloc(a->shape[0] + 1);
  memcpy(b->live, a->live, a->shape[0]);
  model_compact(m, dst);
}

TU_FN void model_copy(Model *dst, const Model *src) {
  *dst = *src;
  for (int i = 0; i < src->n; i++) {
    const MArr *a = &src->a[i];
    dst->a[i].data = malloc(a->row_bytes * a->shape[0] + 1);
    memcpy(dst->a[i].data, a->data, a->row_bytes * a->shape[0]);
    dst->a[i].live = malloc(a->shape[0] + 1);
    memcpy(dst->a[i].live, a->live, a->shape[0]);
  }
}

TU_FN void model_free(Model *m) {
  for (int i = 0; i < m->n; i++) { free(m->a[i].data); free(m->a[i].live); }
  m->n = 0;
}

TU_FN void model_dump(const Model *m, Buf *out) {
  put_u32(out, (uint32_t)m->n);
  for (int i = 0; i < m->n; i++) {
    const MArr *a = &m->a[i];
    uint64_t live = 0;
    for (uint64_t r = 0; r < a->shape[0]; r++) live += a->live[r];
    put_str(out, a->name);
    put_u32(out, (uint32_t)a->dtype);
    put_u32(out, a->ndim);
    for (uint32_t k = 0; k < a->ndim; k++) put_u64(out, a->shape[k]);
    put_u64(out, live);
    for (uint64_t r = 0; r < a->shape[0]; r++) {
      put_u8(out, a->live[r]);
      if (a->live[r]) buf_put(out, a->data + a->row_bytes * r, a->row_bytes);
    }
  }
}

/* Print a short description of a dump (for failure reports). */
TU_FN void tu_dump_describe(const char *label, const Buf *d) {
  printf("  %s:", label);
  if (d->n < 4) { printf(" (empty)\n"); return; }
  size_t o = 0;
  uint32_t n = get_u32(d->p); o = 4;
  printf(" %u arrays", n);
  for (uint32_t i = 0; i < n && o < d->n; i++) {
    uint32_t len = get_u32(d->p + o); o += 4;
    printf(" [%.*s", (int)len, (const char *)d->p + o); o += len;
    uint32_t dt = get_u32(d->p + o); o += 4;
    uint32_t nd = get_u32(d->p + o); o += 4;
    uint64_t rowb = dt < NPK_NDTYPE ? (uint64_t)tu_itemsize[dt] : 0;
    uint64_t rows = 0;
    printf(" dtype %u shape (", dt);
    for (uint32_t k = 0; k < nd; k++) {
      uint64_t v = get_u64(d->p + o); o += 8;
      if (k == 0) rows = v; else rowb *= v;
      printf("%s%llu", k ? "," : "", (unsigned long long)v);
    }
    uint64_t live = get_u64(d->p + o); o += 8;
    printf(") live %llu]", (unsigned long long)live);
    for (uint64_t r = 0; r < rows && o < d->n; r++) {
      if (d->p[o++]) o += rowb;
    }
  }
  printf("\n");
}

#define CHECK_DUMP_EQ(got, want) do { if (!buf_eq((got), (want))) { \
    ctest_case_failures++; \
    printf("FAIL %s:%d: store content differs\n", __FILE__, __LINE__); \
    tu_dump_describe("got ", (got)); tu_dump_describe("want", (want)); } \
  } while (0)

/* The live rows of int64 array NAME, at most MAX of them; -1 on error. */
TU_FN int tu_load_i64(NpkSession *s, const char *name, int64_t *out, int max) {
  NpkArrayInfo info;
  int n = 0;
  if (npk_read_begin(s) != NPK_OK) return -1;
  if (npk_array_info(s, name, &info) != NPK_OK) n = -1;
  for (uint64_t r = 0; n >= 0 && r < info.rows; r++) {
    const void *p;
    if (!npk_row_live(s, name, r)) continue;
    if (npk_row_ptr(s, name, r, &p) != NPK_OK) n = -1;
    else if (n < max) memcpy(&out[n++], p, sizeof *out);
  }
  npk_read_end(s);
  return n;
}

#endif /* NPK_STORE_TESTUTIL_H */
