/*
** store_catalog.c — metadata.npkm, NumPack 0.7's binary catalog: parsing
** (strict: every field is bounds-checked and validated, a damaged catalog is
** NPK_CORRUPT, never "empty"), encoding, and the in-memory list of arrays.
**
** Layout (little-endian): u32 magic "NPKB", u32 version 1, u64 total bytes,
** u32 count, then per array: u32 len + name, u32 ndim + ndim x u64 dims,
** u32 len + data file, u64 mtime (us), u64 size, u8 dtype, u8 compression,
** u32 level, u64 original size, u64 compressed size, u8 block-info flag
** [+ u8 enabled, u64 block size, u64 block count, u32 n, n x 3 x u64].
*/
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

/* A bounds-checked reader over the catalog bytes. */
typedef struct CatReader CatReader;
struct CatReader {
  const unsigned char *p; /* catalog bytes */
  size_t n;               /* catalog length */
  size_t at;              /* read position */
  int oom;                /* a copy could not be allocated */
};

static int rd_need(CatReader *r, size_t k) { return r->n - r->at >= k; }

static int rd_u8(CatReader *r, unsigned *v) {
  if (!rd_need(r, 1)) return 0;
  *v = r->p[r->at++];
  return 1;
}

static int rd_u32(CatReader *r, uint32_t *v) {
  if (!rd_need(r, 4)) return 0;
  *v = npk_get_u32(r->p + r->at);
  r->at += 4;
  return 1;
}

static int rd_u64(CatReader *r, uint64_t *v) {
  if (!rd_need(r, 8)) return 0;
  *v = npk_get_u64(r->p + r->at);
  r->at += 8;
  return 1;
}

/* Read a u32-length-prefixed string into a new NUL-terminated copy. */
static int rd_str(CatReader *r, char **out) {
  uint32_t len;
  if (!rd_u32(r, &len) || !rd_need(r, len)) return 0;
  if (memchr(r->p + r->at, 0, len)) return 0;
  *out = npk_malloc((size_t)len + 1);
  if (!*out) {
    r->oom = 1;
    return 0;
  }
  memcpy(*out, r->p + r->at, len);
  (*out)[len] = 0;
  r->at += len;
  return 1;
}

int npk_shape_bytes(int dtype, uint32_t ndim, const uint64_t *shape,
                    uint64_t *row_bytes, uint64_t *total) {
  uint64_t rb = (uint64_t)npk_dtype_size(dtype), nonzero = rb;
  if (rb == 0 || ndim < 1 || ndim > NPK_MAX_NDIM) return NPK_ERROR;
  /* As NumPy's: every size, and the sizes other than 0 multiplied by the
  ** item size, fit int64.  Offsets stay representable as off_t and size_t,
  ** and a row count as a signed SQL integer even when a row has no bytes. */
  for (uint32_t i = 0; i < ndim; i++) {
    if (shape[i] > (uint64_t)INT64_MAX) return NPK_ERROR;
    if (shape[i] && (__builtin_mul_overflow(nonzero, shape[i], &nonzero) ||
                     nonzero > (uint64_t)INT64_MAX))
      return NPK_ERROR;
    if (i > 0) rb *= shape[i];
  }
  *row_bytes = rb;
  if (total) *total = rb * shape[0];
  return NPK_OK;
}

NpkArray *npk_array_new(const char *name, int dtype, uint32_t ndim,
                        const uint64_t *shape) {
  NpkArray *a = npk_calloc(1, sizeof *a);
  if (!a) return NULL;
  a->refs = 1;
  a->loaded = 1;
  a->name = npk_strdup(name);
  a->dtype = dtype;
  a->ndim = ndim;
  memcpy(a->shape, shape, ndim * sizeof *shape);
  if (!a->name || npk_shape_bytes(dtype, ndim, shape, &a->row_bytes, NULL)) {
    npk_free(a->name);
    npk_free(a);
    return NULL;
  }
  return a;
}

void npk_array_ref(NpkArray *a) { a->refs++; }

void npk_array_drop_storage(NpkStore *st, NpkArray *a) {
  for (int i = 0; i < a->nseg; i++) npk_file_unref(st, a->seg[i].file);
  npk_free(a->seg);
  if (a->seg_names) {
    for (int i = 0; i < a->nseg; i++) npk_free(a->seg_names[i]);
    npk_free(a->seg_names);
  }
  npk_bm_free(a->bm);
  a->seg = NULL;
  a->seg_names = NULL;
  a->nseg = 0;
  a->bm = NULL;
}

void npk_array_unref(NpkStore *st, NpkArray *a) {
  if (!a || --a->refs > 0) return;
  npk_array_drop_storage(st, a);
  npk_ov_free(st, a->ov);
  npk_free(a->name);
  npk_free(a->data_file);
  npk_free(a);
}

/* ---- the list, in shared chunks, and the name index -----------------
** Kept up to date by every change of the list (never built lazily: the
** committed catalog is read by many sessions at once without a lock). */

static int ref_drop(int *refs) {
  return __atomic_sub_fetch(refs, 1, __ATOMIC_ACQ_REL) == 0;
}

static void chunk_unref(NpkStore *st, NpkCatChunk *c) {
  if (!c || !ref_drop(&c->refs)) return;
  for (int i = 0; i < NPK_CAT_CHUNK; i++) {
    /* Each array is its own block of memory: fetched ahead, a catalog of
    ** thousands costs a pass over memory, not a cache miss after another. */
    if (i + 8 < NPK_CAT_CHUNK && c->a[i + 8])
      __builtin_prefetch(c->a[i + 8], 1);
    npk_array_unref(st, c->a[i]);
  }
  npk_free(c);
}

static void index_unref(NpkCatIndex *x) {
  if (x && ref_drop(&x->refs)) npk_free(x);
}

static uint32_t name_hash(const char *s) {
  uint32_t h = 2166136261u;
  while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
  return h;
}

static void index_put(NpkCatIndex *x, const char *name, int pos) {
  uint32_t m = (uint32_t)(x->cap - 1), h = name_hash(name) & m;
  while (x->slot[h]) h = (h + 1) & m;
  x->slot[h] = pos + 1;
}

/* A new index of CAT's names, half full at most; NULL without memory. */
static NpkCatIndex *index_build(const NpkCatalog *cat) {
  int cap = 16;
  NpkCatIndex *x;
  while (cap < 2 * cat->n) cap *= 2;
  x = npk_calloc(1, sizeof *x + (size_t)cap * sizeof x->slot[0]);
  if (!x) return NULL;
  x->refs = 1;
  x->cap = cap;
  for (int i = 0; i < cat->n; i++) index_put(x, npk_cat_at(cat, i)->name, i);
  return x;
}

/* Rebuild CAT's name index after arrays moved in its list; without memory
** for it, lookups search the list. */
static void reindex(NpkCatalog *cat) {
  index_unref(cat->idx);
  cat->idx = index_build(cat);
}

/* Room in CAT's chunk list for one more chunk. */
static int chunks_room(NpkCatalog *cat) {
  NpkCatChunk **p;
  int cap;
  if (cat->nch < cat->chcap) return NPK_OK;
  cap = cat->chcap ? cat->chcap * 2 : 4;
  p = npk_realloc(cat->ch, (size_t)cap * sizeof *p);
  if (!p) return NPK_NOMEM;
  cat->ch = p;
  cat->chcap = cap;
  return NPK_OK;
}

int npk_catalog_own(NpkStore *st, NpkCatalog *cat, int i) {
  NpkCatChunk *c = cat->ch[i >> NPK_CAT_SHIFT], *own;
  if (__atomic_load_n(&c->refs, __ATOMIC_ACQUIRE) == 1) return NPK_OK;
  if (!(own = npk_malloc(sizeof *own))) return NPK_NOMEM;
  own->refs = 1;
  for (int k = 0; k < NPK_CAT_CHUNK; k++) {
    own->a[k] = c->a[k];
    if (own->a[k]) own->a[k]->refs++;
  }
  cat->ch[i >> NPK_CAT_SHIFT] = own;
  chunk_unref(st, c);
  return NPK_OK;
}

/* 1 if A keeps its rows in other files than data_NAME.npkd (counted in
** NpkCatalog.odd). */
static int odd_array(const NpkArray *a) {
  size_t n;
  if (!a) return 0;
  if (a->segmented) return 1;
  n = strlen(a->name);
  return strncmp(a->data_file, "data_", 5) != 0 ||
         strncmp(a->data_file + 5, a->name, n) != 0 ||
         strcmp(a->data_file + 5 + n, ".npkd") != 0;
}

/* Put A in slot I of CAT, returning what was there: no count kept. */
static NpkArray *set_slot(NpkCatalog *cat, int i, NpkArray *a) {
  NpkArray **slot = &cat->ch[i >> NPK_CAT_SHIFT]->a[i & (NPK_CAT_CHUNK - 1)];
  NpkArray *old = *slot;
  *slot = a;
  return old;
}

NpkArray *npk_catalog_put(NpkCatalog *cat, int i, NpkArray *a) {
  NpkArray *old = set_slot(cat, i, a);
  cat->odd += odd_array(a) - odd_array(old);
  return old;
}

/* The index CAT may add a name to: its own, with room; NULL (CAT's
** unchanged) if it needs a new one. */
static NpkCatIndex *index_for_add(NpkCatalog *cat) {
  NpkCatIndex *x = cat->idx, *own;
  if (!x || 2 * (cat->n + 1) > x->cap) return NULL;
  if (__atomic_load_n(&x->refs, __ATOMIC_ACQUIRE) == 1) return x;
  /* Shared (a savepoint's copy): copied as it is, not rebuilt. */
  own = npk_malloc(sizeof *own + (size_t)x->cap * sizeof x->slot[0]);
  if (!own) return NULL;
  memcpy(own, x, sizeof *own + (size_t)x->cap * sizeof x->slot[0]);
  own->refs = 1;
  index_unref(x);
  cat->idx = own;
  return own;
}

int npk_catalog_add(NpkStore *st, NpkCatalog *cat, NpkArray *a) {
  int k = cat->n & (NPK_CAT_CHUNK - 1);
  NpkCatIndex *x;
  if (k == 0) {
    NpkCatChunk *c;
    if (chunks_room(cat) || !(c = npk_calloc(1, sizeof *c))) return NPK_NOMEM;
    c->refs = 1;
    cat->ch[cat->nch++] = c;
  } else if (npk_catalog_own(st, cat, cat->n)) {
    return NPK_NOMEM;
  }
  cat->ch[cat->n >> NPK_CAT_SHIFT]->a[k] = a;
  cat->odd += odd_array(a);
  x = index_for_add(cat);
  cat->n++;
  if (x) index_put(x, a->name, cat->n - 1);
  else reindex(cat);
  return NPK_OK;
}

int npk_catalog_remove(NpkStore *st, NpkCatalog *cat, int i) {
  int last;
  /* Every chunk from I's on changes: made this catalog's own first, so
  ** that a failure changes nothing (an owned chunk is the same list). */
  for (int c = i >> NPK_CAT_SHIFT; c < cat->nch; c++)
    if (npk_catalog_own(st, cat, c << NPK_CAT_SHIFT)) return NPK_NOMEM;
  cat->odd -= odd_array(npk_cat_at(cat, i));
  npk_array_unref(st, npk_cat_at(cat, i));
  for (int k = i; k + 1 < cat->n; k++) set_slot(cat, k, npk_cat_at(cat, k + 1));
  last = --cat->n;
  set_slot(cat, last, NULL);
  if ((last & (NPK_CAT_CHUNK - 1)) == 0) chunk_unref(st, cat->ch[--cat->nch]);
  reindex(cat);
  return NPK_OK;
}

void npk_catalog_clear(NpkStore *st, NpkCatalog *cat) {
  for (int i = 0; i < cat->nch; i++) chunk_unref(st, cat->ch[i]);
  npk_free(cat->ch);
  index_unref(cat->idx);
  memset(cat, 0, sizeof *cat);
}

int npk_catalog_find(const NpkCatalog *cat, const char *name) {
  const NpkCatIndex *x = cat->idx;
  uint32_t m;
  if (!x) {
    for (int i = 0; i < cat->n; i++)
      if (strcmp(npk_cat_at(cat, i)->name, name) == 0) return i;
    return -1;
  }
  m = (uint32_t)(x->cap - 1);
  for (uint32_t h = name_hash(name) & m; x->slot[h]; h = (h + 1) & m)
    if (strcmp(npk_cat_at(cat, x->slot[h] - 1)->name, name) == 0)
      return x->slot[h] - 1;
  return -1;
}

int npk_catalog_copy(const NpkCatalog *from, NpkCatalog *to) {
  memset(to, 0, sizeof *to);
  if (from->n == 0) return NPK_OK;
  if (!(to->ch = npk_malloc((size_t)from->nch * sizeof *to->ch)))
    return NPK_NOMEM;
  memcpy(to->ch, from->ch, (size_t)from->nch * sizeof *to->ch);
  for (int i = 0; i < from->nch; i++)
    __atomic_add_fetch(&from->ch[i]->refs, 1, __ATOMIC_RELAXED);
  if (from->idx) __atomic_add_fetch(&from->idx->refs, 1, __ATOMIC_RELAXED);
  to->nch = to->chcap = from->nch;
  to->n = from->n;
  to->idx = from->idx;
  to->odd = from->odd;
  return NPK_OK;
}

/* Parse one array entry; on failure return a static description. */
static const char *parse_array(CatReader *r, NpkArray **out) {
  char *name = NULL, *file = NULL;
  uint32_t ndim, level;
  uint64_t shape[NPK_MAX_NDIM], mtime, size, orig, comp, total, rb;
  unsigned dtype, compression, flag;
  const char *why = NULL;
  NpkArray *a;

  *out = NULL;
  if (!rd_str(r, &name)) return "truncated array name";
  if (!npk_name_valid(name)) {
    why = "invalid array name";
    goto fail;
  }
  if (!rd_u32(r, &ndim)) {
    why = "truncated ndim";
    goto fail;
  }
  if (ndim < 1 || ndim > NPK_MAX_NDIM) {
    why = "ndim out of range 1..32";
    goto fail;
  }
  for (uint32_t i = 0; i < ndim; i++) {
    if (!rd_u64(r, &shape[i])) {
      why = "truncated shape";
      goto fail;
    }
  }
  if (!rd_str(r, &file)) {
    why = "truncated data file name";
    goto fail;
  }
  if (!npk_relpath_valid(file)) {
    why = "data file path leaves the store directory";
    goto fail;
  }
  if (!rd_u64(r, &mtime) || !rd_u64(r, &size) || !rd_u8(r, &dtype) ||
      !rd_u8(r, &compression) || !rd_u32(r, &level) || !rd_u64(r, &orig) ||
      !rd_u64(r, &comp) || !rd_u8(r, &flag)) {
    why = "truncated array entry";
    goto fail;
  }
  if (dtype >= NPK_NDTYPE) {
    why = "unknown dtype code";
    goto fail;
  }
  if (compression != 0) {
    why = "compressed arrays are not supported";
    goto fail;
  }
  if (flag == 1) {
    unsigned enabled;
    uint64_t bsize, bcount;
    uint32_t nb;
    if (!rd_u8(r, &enabled) || !rd_u64(r, &bsize) || !rd_u64(r, &bcount) ||
        !rd_u32(r, &nb) || !rd_need(r, (size_t)nb * 24)) {
      why = "truncated block info";
      goto fail;
    }
    r->at += (size_t)nb * 24;
  } else if (flag != 0) {
    why = "block-info flag is neither 0 nor 1";
    goto fail;
  }
  if (shape[0] > NPK_MAX_ROWS) {
    why = "more than 2^63-1 rows";
    goto fail;
  }
  if (npk_shape_bytes((int)dtype, ndim, shape, &rb, &total)) {
    why = "shape overflows";
    goto fail;
  }
  if (size != total) {
    why = "size disagrees with shape and dtype";
    goto fail;
  }
  a = npk_array_new(name, (int)dtype, ndim, shape);
  if (!a) {
    r->oom = 1;
    why = "out of memory";
    goto fail;
  }
  a->data_file = file;
  a->mtime = mtime;
  a->loaded = 0;
  {
    size_t fl = strlen(file);
    a->segmented = fl > 7 && strcmp(file + fl - 7, ".npkseg") == 0;
  }
  npk_free(name);
  *out = a;
  return NULL;
fail:
  npk_free(name);
  npk_free(file);
  return why;
}

int npk_catalog_parse(const unsigned char *p, size_t n, NpkCatalog *cat,
                      NpkErr *e) {
  CatReader r = {p, n, 0, 0};
  uint32_t magic, version, count;
  uint64_t total;
  memset(cat, 0, sizeof *cat);
  if (!rd_u32(&r, &magic) || !rd_u32(&r, &version) || !rd_u64(&r, &total) ||
      !rd_u32(&r, &count))
    return npk_err(e, NPK_CORRUPT,
                   "%s is damaged: truncated header (%zu bytes)", NPK_CATALOG,
                   n);
  if (magic != NPK_CAT_MAGIC)
    return npk_err(e, NPK_CORRUPT, "%s is damaged: bad magic 0x%08x",
                   NPK_CATALOG, magic);
  if (version != NPK_CAT_VERSION)
    return npk_err(e, NPK_CORRUPT, "%s: unsupported catalog version %u",
                   NPK_CATALOG, version);
  for (uint32_t i = 0; i < count; i++) {
    NpkArray *a;
    size_t at = r.at;
    const char *why = parse_array(&r, &a);
    if (why) {
      npk_catalog_clear(NULL, cat);
      if (r.oom)
        return npk_err(e, NPK_NOMEM, "out of memory reading %s", NPK_CATALOG);
      return npk_err(e, NPK_CORRUPT, "%s is damaged: array %u at byte %zu: %s",
                     NPK_CATALOG, i, at, why);
    }
    if (npk_catalog_find(cat, a->name) >= 0) {
      npk_err(e, NPK_CORRUPT, "%s is damaged: array \"%s\" listed twice",
              NPK_CATALOG, a->name);
      npk_array_unref(NULL, a);
      npk_catalog_clear(NULL, cat);
      return NPK_CORRUPT;
    }
    if (npk_catalog_add(NULL, cat, a)) {
      npk_array_unref(NULL, a);
      npk_catalog_clear(NULL, cat);
      return npk_err(e, NPK_NOMEM, "out of memory reading %s", NPK_CATALOG);
    }
  }
  if (r.at != n) {
    npk_catalog_clear(NULL, cat);
    return npk_err(e, NPK_CORRUPT,
                   "%s is damaged: %zu unexpected bytes after the last array",
                   NPK_CATALOG, n - r.at);
  }
  if (npk_catalog_check_files(cat, NPK_CATALOG " is damaged", e)) {
    npk_catalog_clear(NULL, cat);
    return e->rc;
  }
  return NPK_OK;
}

/* NPK_OK unless FILE, where ARRAY keeps rows, is a name the store keeps
** for files of its own. */
static int check_reserved(NpkErr *e, const char *what, const char *array,
                          const char *file) {
  const char *why = npk_reserved_name(file);
  if (!why) return NPK_OK;
  return npk_err(e, NPK_CORRUPT, "%s: array \"%s\" keeps its rows in %s, %s",
                 what, array, file, why);
}

/* Arrays A and B both keep rows in FILE. */
static int shared_file(NpkErr *e, const char *what, const char *a,
                       const char *b, const char *file) {
  return npk_err(e, NPK_CORRUPT,
                 "%s: arrays \"%s\" and \"%s\" both keep their rows in %s",
                 what, a, b, file);
}

/* 1 if array A keeps rows in FILE. */
static int uses_file(const NpkArray *a, const char *file) {
  if (strcmp(a->data_file, file) == 0) return 1;
  for (int k = 0; a->seg_names && k < a->nseg; k++)
    if (a->seg_names[k] && strcmp(a->seg_names[k], file) == 0) return 1;
  return 0;
}

int npk_catalog_check_new_file(const NpkCatalog *cat, const NpkArray *a,
                               const char *what, NpkErr *e) {
  int rc = check_reserved(e, what, a->name, a->data_file);
  /* Every array (A among them) in its own data_NAME.npkd: the one using
  ** A's file is the one named as A, which is A. */
  if (cat->odd == 0) return rc;
  for (int i = 0; i < cat->n && rc == NPK_OK; i++) {
    const NpkArray *b = npk_cat_at(cat, i);
    if (b != a && uses_file(b, a->data_file))
      rc = shared_file(e, what, b->name, a->name, a->data_file);
  }
  return rc;
}

/* One file of an array, for npk_catalog_check_files. */
typedef struct FileUse FileUse;
struct FileUse {
  const char *file;  /* relative name */
  const char *array; /* the array keeping rows in it */
};

static int cmp_use(const void *a, const void *b) {
  return strcmp(((const FileUse *)a)->file, ((const FileUse *)b)->file);
}

int npk_catalog_check_files(const NpkCatalog *cat, const char *what,
                            NpkErr *e) {
  FileUse *u;
  size_t n = 0, m = 0;
  int rc = NPK_OK;
  for (int i = 0; i < cat->n; i++)
    m += 1 +
         (npk_cat_at(cat, i)->seg_names ? (size_t)npk_cat_at(cat, i)->nseg : 0);
  if (!(u = npk_malloc((m ? m : 1) * sizeof *u)))
    return npk_err(e, NPK_NOMEM, "out of memory");
  for (int i = 0; i < cat->n; i++) {
    const NpkArray *a = npk_cat_at(cat, i);
    u[n].file = a->data_file;
    u[n++].array = a->name;
    for (int k = 0; a->seg_names && k < a->nseg; k++) {
      if (!a->seg_names[k]) continue;
      u[n].file = a->seg_names[k];
      u[n++].array = a->name;
    }
  }
  for (size_t i = 0; i < n && rc == NPK_OK; i++)
    rc = check_reserved(e, what, u[i].array, u[i].file);
  /* Dropping one of two arrays sharing a file would remove the other's
  ** rows with it. */
  qsort(u, n, sizeof *u, cmp_use);
  for (size_t i = 1; i < n && rc == NPK_OK; i++) {
    if (strcmp(u[i - 1].file, u[i].file) != 0 ||
        strcmp(u[i - 1].array, u[i].array) == 0)
      continue;
    rc = shared_file(e, what, u[i - 1].array, u[i].array, u[i].file);
  }
  npk_free(u);
  return rc;
}

static unsigned char *put_u32(unsigned char *q, uint32_t v) {
  for (int i = 0; i < 4; i++) *q++ = (unsigned char)(v >> (8 * i));
  return q;
}

static unsigned char *put_u64(unsigned char *q, uint64_t v) {
  for (int i = 0; i < 8; i++) *q++ = (unsigned char)(v >> (8 * i));
  return q;
}

int npk_catalog_encode(const NpkCatalog *cat, NpkBuf *b) {
  return npk_catalog_encode_at(cat, b, NULL);
}

/* Bytes of A's entry. */
static size_t entry_size(const NpkArray *a) {
  return 4 + strlen(a->name) + 4 + 8 * (size_t)a->ndim + 4 +
         strlen(a->data_file) + 8 + 8 + 1 + 1 + 4 + 8 + 8 + 1;
}

/* Write A's entry at Q; returns the byte after it. */
static unsigned char *put_entry(unsigned char *q, const NpkArray *a) {
  size_t ln = strlen(a->name), lf = strlen(a->data_file);
  q = put_u32(q, (uint32_t)ln);
  memcpy(q, a->name, ln);
  q = put_u32(q + ln, a->ndim);
  for (uint32_t d = 0; d < a->ndim; d++) q = put_u64(q, a->shape[d]);
  q = put_u32(q, (uint32_t)lf);
  memcpy(q, a->data_file, lf);
  q = put_u64(q + lf, a->mtime);
  q = put_u64(q, a->row_bytes * a->shape[0]);
  *q++ = (unsigned char)a->dtype;
  *q++ = 0;          /* no compression */
  q = put_u32(q, 0); /* level */
  q = put_u64(q, 0); /* original size */
  q = put_u64(q, 0); /* compressed size */
  *q++ = 0;          /* no block info */
  return q;
}

/* Sized first and written in one pass: no call per field. */
int npk_catalog_encode_at(const NpkCatalog *cat, NpkBuf *b, size_t *off) {
  uint64_t total = 0;
  size_t need = 20;
  unsigned char *q;
  for (int i = 0; i < cat->n; i++) {
    const NpkArray *a = npk_cat_at(cat, i);
    total += a->row_bytes * a->shape[0];
    need += entry_size(a);
  }
  npk_buf_put(b, NULL, need);
  if (b->oom) return NPK_NOMEM;
  q = b->p + b->n - need;
  q = put_u32(q, NPK_CAT_MAGIC);
  q = put_u32(q, NPK_CAT_VERSION);
  q = put_u64(q, total);
  q = put_u32(q, (uint32_t)cat->n);
  for (int i = 0; i < cat->n; i++) {
    if (off) off[i] = (size_t)(q - b->p);
    q = put_entry(q, npk_cat_at(cat, i));
  }
  return NPK_OK;
}

/* 1 if position I of FROM and TO may be patched: the same array, or a
** version of the same name, data file and ndim. */
static int same_slot(const NpkCatalog *from, const NpkCatalog *to, int i) {
  const NpkArray *a = npk_cat_at(to, i), *c = npk_cat_at(from, i);
  return a == c || (a->ndim == c->ndim && strcmp(a->name, c->name) == 0 &&
                    strcmp(a->data_file, c->data_file) == 0);
}

int npk_catalog_patchable(const NpkCatalog *from, const NpkCatalog *to,
                          const int *at, int nat) {
  if (from->n > to->n) return NPK_ERROR;
  for (int k = 0; k < (at ? nat : from->n); k++) {
    int i = at ? at[k] : k;
    if (i < 0 || i >= to->n) return NPK_ERROR;
    if (i < from->n && !same_slot(from, to, i)) return NPK_ERROR;
  }
  return NPK_OK;
}

int npk_catalog_patch(const NpkCatalog *from, const NpkCatalog *to, NpkBuf *img,
                      size_t **poff, const int *at, int nat) {
  uint64_t total = npk_get_u64(img->p + NPK_CAT_HEAD_OFF);
  size_t grow = 0, *off = *poff;
  if (npk_catalog_patchable(from, to, at, nat) != NPK_OK) return NPK_ERROR;
  if (to->n > from->n) {
    /* Room first, so that running out of memory leaves IMG as it was. */
    for (int i = from->n; i < to->n; i++) grow += entry_size(npk_cat_at(to, i));
    off = npk_malloc((size_t)to->n * sizeof *off);
    if (!off || !npk_buf_reserve(img, grow)) {
      img->oom = 0; /* the image itself is whole */
      npk_free(off);
      return NPK_NOMEM;
    }
    memcpy(off, *poff, (size_t)from->n * sizeof *off);
  }
  for (int k = 0; k < (at ? nat : from->n); k++) {
    int i = at ? at[k] : k;
    const NpkArray *a, *c;
    unsigned char *q;
    if (i >= from->n) continue; /* added: encoded whole below */
    a = npk_cat_at(to, i);
    c = npk_cat_at(from, i);
    if (a == c) continue;
    q = img->p + off[i] + 4 + strlen(a->name) + 4;
    for (uint32_t d = 0; d < a->ndim; d++) q = put_u64(q, a->shape[d]);
    q += 4 + strlen(a->data_file);
    q = put_u64(q, a->mtime);
    q = put_u64(q, a->row_bytes * a->shape[0]);
    *q = (unsigned char)a->dtype;
    total = total - c->row_bytes * c->shape[0] + a->row_bytes * a->shape[0];
  }
  for (int i = from->n; i < to->n; i++) {
    const NpkArray *a = npk_cat_at(to, i);
    off[i] = img->n;
    npk_buf_put(img, NULL, entry_size(a));
    put_entry(img->p + off[i], a);
    total += a->row_bytes * a->shape[0];
  }
  put_u32(put_u64(img->p + NPK_CAT_HEAD_OFF, total), (uint32_t)to->n);
  if (off != *poff) {
    npk_free(*poff);
    *poff = off;
  }
  return NPK_OK;
}

void npk_catalog_patch_span(const NpkArray *a, size_t off, size_t *lo,
                            size_t *len) {
  /* As npk_catalog_patch walks it: name, ndim, then the shape, the data
  ** file's name (unchanged, but between), time, bytes and dtype. */
  *lo = off + 4 + strlen(a->name) + 4;
  *len = (size_t)a->ndim * 8 + 4 + strlen(a->data_file) + 8 + 8 + 1;
}

/* A scan's view points into the arrays and bitmaps of the catalog it
** began with.  A session reading without a lock file holds no lock that
** would keep a commit (of this process) or a reload (after another's)
** from replacing that catalog in the middle of the scan, so a replaced
** catalog is freed only when no session is pinned. */
void npk_catalog_retire(NpkStore *st, NpkCatalog *cat, NpkRetired *note) {
  if (__atomic_load_n(&st->pins, __ATOMIC_RELAXED) > 0) {
    note->kind = NPK_RET_CAT;
    note->cat = *cat;
    memset(cat, 0, sizeof *cat);
    npk_retired_push(st, note);
    return;
  }
  npk_free(note);
  npk_catalog_clear(st, cat);
}

void npk_retired_free(NpkStore *st) {
  NpkRetired *r, *next;
  /* Freeing a catalog retires its mappings: they come in a list of their
  ** own, taken next. */
  while ((r = __atomic_exchange_n(&st->retired, NULL, __ATOMIC_ACQUIRE))) {
    for (; r; r = next) {
      next = r->next;
      if (r->kind == NPK_RET_CAT) npk_catalog_clear(st, &r->cat);
      else if (r->kind == NPK_RET_OVERLAY) npk_ov_release(r->p);
      else npk_block_release(r->p, r->len);
      npk_free(r);
    }
  }
}
