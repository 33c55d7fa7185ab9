/*
** store_bitmap.c — deleted_<name>.npkb, the deletion bitmap, and the rank
** index that maps NumPack's logical row numbers to physical rows.
**
** File: u64 total rows, u64 deleted count, ceil(rows/64) u64 words; row r is
** bit r%64 of word r/64, 1 = live; padding bits 0.  Rows of the array past
** the bitmap's own row count are not live (NumPack 0.7's reading).  In
** memory too a bitmap may cover fewer rows than its array (nbits < rows):
** a zero-width array can have 2^63-1 rows and no bytes to bound a bitmap
** by, so its bitmap keeps the file's own count, and a deleted tail costs
** nothing.
**
** The rank index keeps, for every superblock of 8 words (512 rows), the live
** rows before it.  It is rebuilt lazily from the first changed superblock, so
** a batch of deletions costs O(1) each and the next logical lookup pays one
** O(n/512) pass; a lookup is a binary search plus at most 8 popcounts.
*/
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

#define WORDS(nbits)  (((nbits) + 63) / 64)
#define SUPER         8 /* words per rank superblock */
/* Entries of the rank index of B: one per superblock, and one past. */
#define RANK_SLOTS(b) ((WORDS((b)->nbits) + SUPER - 1) / SUPER + 1)

NpkBitmap *npk_bm_new(uint64_t nbits, int live) {
  NpkBitmap *b = npk_calloc(1, sizeof *b);
  uint64_t nw = WORDS(nbits);
  if (!b) return NULL;
  b->wcap = nw ? nw : 1;
  b->w = npk_malloc(b->wcap * 8);
  if (!b->w) {
    npk_free(b);
    return NULL;
  }
  memset(b->w, live ? 0xFF : 0, nw * 8);
  if (live && nbits % 64) b->w[nw - 1] = (UINT64_C(1) << (nbits % 64)) - 1;
  b->nbits = nbits;
  b->nlive = live ? nbits : 0;
  return b;
}

NpkBitmap *npk_bm_copy(const NpkBitmap *src) {
  NpkBitmap *b = npk_bm_new(src->nbits, 0);
  if (!b) return NULL;
  memcpy(b->w, src->w, WORDS(src->nbits) * 8);
  b->nlive = src->nlive;
  return b;
}

void npk_bm_free(NpkBitmap *b) {
  if (!b) return;
  npk_free(b->w);
  npk_free(b->rank);
  npk_free(b);
}

int npk_bm_parse(const unsigned char *p, size_t n, uint64_t rows,
                 NpkBitmap **pb, const char *path, NpkErr *e) {
  uint64_t total, deleted, nw, live = 0;
  NpkBitmap *b;
  *pb = NULL;
  if (n < 16)
    return npk_err(e, NPK_CORRUPT, "%s is damaged: %zu bytes, header needs 16",
                   path, n);
  total = npk_get_u64(p);
  deleted = npk_get_u64(p + 8);
  if (total > rows)
    return npk_err(e, NPK_CORRUPT,
                   "%s is damaged: covers %llu rows, the array has %llu", path,
                   (unsigned long long)total, (unsigned long long)rows);
  nw = WORDS(total);
  if ((uint64_t)n != npk_bm_size_for(total))
    return npk_err(
        e, NPK_CORRUPT, "%s is damaged: %zu bytes, %llu rows need %llu", path,
        n, (unsigned long long)total, (unsigned long long)(16 + nw * 8));
  b = npk_bm_new(total, 0);
  if (!b) return npk_err(e, NPK_NOMEM, "out of memory reading %s", path);
  for (uint64_t i = 0; i < nw; i++) {
    b->w[i] = npk_get_u64(p + 16 + i * 8);
    live += (uint64_t)__builtin_popcountll(b->w[i]);
  }
  if (total % 64 && (b->w[nw - 1] >> (total % 64)) != 0) {
    npk_bm_free(b);
    return npk_err(e, NPK_CORRUPT, "%s is damaged: padding bits are set", path);
  }
  if (deleted != total - live) {
    npk_bm_free(b);
    return npk_err(
        e, NPK_CORRUPT, "%s is damaged: deleted count %llu, bits say %llu",
        path, (unsigned long long)deleted, (unsigned long long)(total - live));
  }
  b->nlive = live;
  *pb = b;
  return NPK_OK;
}

int npk_bm_encode(const NpkBitmap *b, NpkBuf *out) {
  uint64_t nw = WORDS(b->nbits);
  npk_buf_u64(out, b->nbits);
  npk_buf_u64(out, b->nbits - b->nlive);
  for (uint64_t i = 0; i < nw; i++) npk_buf_u64(out, b->w[i]);
  return out->oom ? NPK_NOMEM : NPK_OK;
}

uint64_t npk_bm_size_for(uint64_t rows) { return 16 + WORDS(rows) * 8; }

uint64_t npk_bm_encoded_size(const NpkBitmap *b) {
  return npk_bm_size_for(b->nbits);
}

/* The 8-byte unit of B's encoding at byte AT: the row count, the deleted
** count, then the words. */
static uint64_t unit(const NpkBitmap *b, uint64_t at) {
  if (at == 0) return b->nbits;
  if (at == 8) return b->nbits - b->nlive;
  return b->w[(at - 16) / 8];
}

void npk_bm_encode_range(const NpkBitmap *b, uint64_t lo, uint64_t n,
                         NpkBuf *out) {
  for (uint64_t at = lo; at < lo + n; at += 8) npk_buf_u64(out, unit(b, at));
}

uint64_t npk_bm_next_diff(const NpkBitmap *a, const NpkBitmap *b, uint64_t at) {
  uint64_t na = npk_bm_encoded_size(a), nb = npk_bm_encoded_size(b);
  uint64_t both = na < nb ? na : nb;
  for (; at < 16 && at < both; at += 8)
    if (unit(a, at) != unit(b, at)) return at;
  if (at < both) {
    /* The words, compared in runs: memcmp is several times faster than a
    ** loop of words over a bitmap of millions of rows. */
    uint64_t wa = (at - 16) / 8, end = (both - 16) / 8;
    while (wa < end) {
      uint64_t k = end - wa < 64 ? end - wa : 64;
      if (memcmp(a->w + wa, b->w + wa, k * 8) != 0) {
        while (a->w[wa] == b->w[wa]) wa++;
        return 16 + wa * 8;
      }
      wa += k;
    }
    at = both;
  }
  return at < (na > nb ? na : nb) ? at : UINT64_MAX;
}

int npk_bm_get(const NpkBitmap *b, uint64_t row) {
  return row < b->nbits && (b->w[row / 64] >> (row % 64) & 1);
}

/* rank_ok is read without a lock (rank_ready): every store to it is
** atomic. */
static void set_rank_ok(NpkBitmap *b, uint64_t v) {
  __atomic_store_n(&b->rank_ok, v, __ATOMIC_RELEASE);
}

static void invalidate(NpkBitmap *b, uint64_t word) {
  if (__atomic_load_n(&b->rank_ok, __ATOMIC_RELAXED) > word / SUPER)
    set_rank_ok(b, word / SUPER);
}

void npk_bm_set(NpkBitmap *b, uint64_t row, int live) {
  uint64_t m = UINT64_C(1) << (row % 64);
  uint64_t *w = &b->w[row / 64];
  if (!!(*w & m) == !!live) return;
  if (live) {
    *w |= m;
    b->nlive++;
  } else {
    *w &= ~m;
    b->nlive--;
  }
  invalidate(b, row / 64);
}

/* Grow to NBITS rows; the new rows are live or deleted as LIVE says. */
int npk_bm_extend(NpkBitmap *b, uint64_t nbits, int live) {
  uint64_t nw = WORDS(nbits), old = b->nbits;
  if (nbits <= old) return NPK_OK;
  if (nw > b->wcap) {
    uint64_t cap = b->wcap * 2 > nw ? b->wcap * 2 : nw;
    uint64_t *w = npk_realloc(b->w, cap * 8);
    if (!w) return NPK_NOMEM;
    b->w = w;
    b->wcap = cap;
  }
  if (WORDS(old) < nw) memset(b->w + WORDS(old), 0, (nw - WORDS(old)) * 8);
  b->nbits = nbits;
  if (live) {
    for (uint64_t r = old; r < nbits && r % 64; r++)
      b->w[r / 64] |= UINT64_C(1) << (r % 64);
    for (uint64_t wi = (old + 63) / 64; wi < nbits / 64; wi++)
      b->w[wi] = UINT64_MAX;
    if (nbits % 64 && nbits / 64 >= (old + 63) / 64)
      b->w[nbits / 64] = (UINT64_C(1) << (nbits % 64)) - 1;
    b->nlive += nbits - old;
  }
  invalidate(b, old / 64);
  return NPK_OK;
}

/* Shrink to NBITS rows (undoing an append). */
int npk_bm_truncate(NpkBitmap *b, uint64_t nbits) {
  uint64_t nw = WORDS(nbits);
  if (nbits >= b->nbits) return NPK_OK;
  for (uint64_t r = nbits; r < b->nbits && r % 64; r++)
    if (npk_bm_get(b, r)) npk_bm_set(b, r, 0);
  for (uint64_t wi = nw; wi < WORDS(b->nbits); wi++) {
    b->nlive -= (uint64_t)__builtin_popcountll(b->w[wi]);
    b->w[wi] = 0;
  }
  b->nbits = nbits;
  invalidate(b, nw ? nw - 1 : 0);
  return NPK_OK;
}

static int rank_build(NpkBitmap *b) {
  uint64_t nw = WORDS(b->nbits), ns = RANK_SLOTS(b);
  uint64_t from;
  if (ns > b->rank_cap) {
    uint64_t *r = npk_realloc(b->rank, ns * 8);
    if (!r) return NPK_NOMEM;
    b->rank = r;
    b->rank_cap = ns;
    set_rank_ok(b, 0);
  }
  from = __atomic_load_n(&b->rank_ok, __ATOMIC_RELAXED);
  if (from == 0) {
    b->rank[0] = 0;
    from = 1;
  }
  for (uint64_t s = from; s < ns; s++) {
    uint64_t c = b->rank[s - 1];
    npk_test_copy_point();
    for (uint64_t wi = (s - 1) * SUPER; wi < s * SUPER && wi < nw; wi++)
      c += (uint64_t)__builtin_popcountll(b->w[wi]);
    b->rank[s] = c;
  }
  set_rank_ok(b, ns);
  return NPK_OK;
}

/* A committed bitmap is read by the sessions of its store in several
** threads at once, without the store's mutex: its rank index, built on
** first use, is built under this mutex, and once whole is only read (a
** bitmap is changed only by the one session whose transaction copied it).
** Without it two threads could each grow the index, one freeing what the
** other writes to. */
static pthread_mutex_t rank_mu = PTHREAD_MUTEX_INITIALIZER;

static int rank_ready(NpkBitmap *b) {
  int rc;
  if (__atomic_load_n(&b->rank_ok, __ATOMIC_ACQUIRE) == RANK_SLOTS(b))
    return NPK_OK;
  pthread_mutex_lock(&rank_mu);
  rc = rank_build(b);
  pthread_mutex_unlock(&rank_mu);
  return rc;
}

/* Position of the K-th set bit (0-based) of W, which has more than K. */
static unsigned select_in_word(uint64_t w, unsigned k) {
  for (unsigned byte = 0; byte < 8; byte++) {
    unsigned c = (unsigned)__builtin_popcountll((w >> (8 * byte)) & 0xFF);
    if (k < c) {
      uint64_t x = (w >> (8 * byte)) & 0xFF;
      while (k--) x &= x - 1;
      return 8 * byte + (unsigned)__builtin_ctzll(x);
    }
    k -= c;
  }
  return 64;
}

int npk_bm_select(NpkBitmap *b, uint64_t k, uint64_t *row) {
  uint64_t lo = 0, hi, nw = WORDS(b->nbits);
  if (k >= b->nlive) return NPK_RANGE;
  if (rank_ready(b)) return NPK_NOMEM;
  /* Last superblock whose rank is <= k. */
  hi = (nw + SUPER - 1) / SUPER;
  while (hi - lo > 1) {
    uint64_t mid = lo + (hi - lo) / 2;
    if (b->rank[mid] <= k) lo = mid;
    else hi = mid;
  }
  k -= b->rank[lo];
  for (uint64_t wi = lo * SUPER; wi < nw; wi++) {
    uint64_t c = (uint64_t)__builtin_popcountll(b->w[wi]);
    if (k < c) {
      *row = wi * 64 + select_in_word(b->w[wi], (unsigned)k);
      return NPK_OK;
    }
    k -= c;
  }
  return NPK_RANGE;
}

uint64_t npk_bm_next(const NpkBitmap *b, uint64_t row) {
  return npk_bm_skip(b, row, 0);
}

uint64_t npk_bm_skip(const NpkBitmap *b, uint64_t row, uint64_t k) {
  uint64_t nw = WORDS(b->nbits), wi, w, c;
  if (row >= b->nbits) return UINT64_MAX;
  wi = row / 64;
  for (w = b->w[wi] & (UINT64_MAX << (row % 64));;) {
    c = (uint64_t)__builtin_popcountll(w);
    if (k < c) return wi * 64 + select_in_word(w, (unsigned)k);
    k -= c;
    if (++wi >= nw) return UINT64_MAX;
    w = b->w[wi];
  }
}

/* Live rows before ROW; rows past nbits are not live. */
int npk_bm_rank(NpkBitmap *b, uint64_t row, uint64_t *rank) {
  uint64_t wi, c;
  if (row > b->nbits) row = b->nbits;
  if (rank_ready(b)) return NPK_NOMEM;
  wi = row / 64;
  c = b->rank[wi / SUPER];
  for (uint64_t i = (wi / SUPER) * SUPER; i < wi; i++)
    c += (uint64_t)__builtin_popcountll(b->w[i]);
  if (row % 64)
    c += (uint64_t)__builtin_popcountll(b->w[wi] &
                                        ((UINT64_C(1) << (row % 64)) - 1));
  *rank = c;
  return NPK_OK;
}
