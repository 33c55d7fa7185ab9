/*
** fuzz_bitmap.c — fuzz target for npk_bm_parse, the reader of the
** deletion bitmap deleted_<name>.npkb (SPEC §2), and for the rank index
** behind logical row numbers.
**
** The input is the file.  It is loaded for an array of INT64_MAX rows (the
** most a catalog allows, so every row count the file may claim is in
** range) and, when it claims rows, for one row fewer than it claims,
** which must be refused.  Beyond "no crash":
**   - an accepted bitmap has the claimed rows, nlive equal to its set bits
**     and to rows minus the deleted count, no padding bits, and encodes
**     back to the input byte for byte;
**   - npk_bm_select(k) agrees with a linear scan for a handful of k,
**     npk_bm_rank inverts it, npk_bm_next finds the same rows;
**   - after deleting a few rows, extending by 65 live rows and truncating
**     back, the same still holds (the rank index is rebuilt lazily, which
**     is where such bugs live), and the words are what they were.
*/
#include <string.h>

#include "fuzz.h"
#include "store_int.h"

const char npk_fuzz_target[] = "bitmap";

#define WORDS(n) (((n) + 63) / 64)

/* The K-th live row (0-based) by a plain scan, or NBITS if there is none. */
static uint64_t scan_select(const NpkBitmap *b, uint64_t k) {
  for (uint64_t r = 0; r < b->nbits; r++)
    if (b->w[r / 64] >> (r % 64) & 1) {
      if (k == 0) return r;
      k--;
    }
  return b->nbits;
}

static uint64_t popcount_all(const NpkBitmap *b) {
  uint64_t c = 0;
  for (uint64_t i = 0; i < WORDS(b->nbits); i++)
    c += (uint64_t)__builtin_popcountll(b->w[i]);
  return c;
}

/* Everything that must hold of a bitmap; SEED varies the rows probed. */
static void check_bitmap(NpkBitmap *b, uint64_t seed) {
  uint64_t ks[8], row, rank;
  uint64_t nw = WORDS(b->nbits);
  int nk = 0;

  FUZZ_CHECK(b->nlive == popcount_all(b));
  FUZZ_CHECK(b->nlive <= b->nbits);
  if (b->nbits % 64) FUZZ_CHECK((b->w[nw - 1] >> (b->nbits % 64)) == 0);

  if (b->nlive > 0) {
    ks[nk++] = 0;
    ks[nk++] = b->nlive - 1;
    ks[nk++] = b->nlive / 2;
    ks[nk++] = b->nlive / 3;
    ks[nk++] = seed % b->nlive;
    ks[nk++] = (seed >> 20) % b->nlive;
    if (b->nlive > 1) ks[nk++] = 1;
  }
  for (int i = 0; i < nk; i++) {
    uint64_t want = scan_select(b, ks[i]);
    FUZZ_CHECK(want < b->nbits);
    FUZZ_CHECK(npk_bm_select(b, ks[i], &row) == NPK_OK);
    FUZZ_CHECK(row == want);
    FUZZ_CHECK(npk_bm_get(b, row) == 1);
    FUZZ_CHECK(npk_bm_rank(b, row, &rank) == NPK_OK);
    FUZZ_CHECK(rank == ks[i]);
    FUZZ_CHECK(npk_bm_next(b, row) == row);
    FUZZ_CHECK(npk_bm_skip(b, 0, ks[i]) == row);
    FUZZ_CHECK(npk_bm_skip(b, row, b->nlive - ks[i]) == UINT64_MAX);
    if (row > 0) {
      uint64_t prev = ks[i] ? scan_select(b, ks[i] - 1) : 0;
      FUZZ_CHECK(npk_bm_next(b, ks[i] ? prev + 1 : 0) == row);
    }
  }
  FUZZ_CHECK(npk_bm_select(b, b->nlive, &row) == NPK_RANGE);
  FUZZ_CHECK(npk_bm_rank(b, b->nbits, &rank) == NPK_OK);
  FUZZ_CHECK(rank == b->nlive);
  FUZZ_CHECK(npk_bm_next(b, 0) == (b->nlive ? scan_select(b, 0) : UINT64_MAX));
  FUZZ_CHECK(npk_bm_next(b, b->nbits) == UINT64_MAX);
  FUZZ_CHECK(npk_bm_skip(b, 0, b->nlive) == UINT64_MAX);
  FUZZ_CHECK(npk_bm_get(b, b->nbits) == 0);
}

/* Delete a few rows, grow, shrink back: the invariants hold throughout. */
static void mutate(const NpkBitmap *orig, uint64_t seed) {
  NpkBitmap *b = npk_bm_copy(orig);
  uint64_t *before, nbits, nlive, row;
  if (!b) return;
  FUZZ_CHECK(b->nbits == orig->nbits && b->nlive == orig->nlive);
  for (int i = 0; i < 3 && b->nlive > 0; i++) {
    uint64_t n = b->nlive;
    FUZZ_CHECK(npk_bm_select(b, (seed >> (i * 7)) % n, &row) == NPK_OK);
    npk_bm_set(b, row, 0);
    FUZZ_CHECK(b->nlive == n - 1);
    FUZZ_CHECK(npk_bm_get(b, row) == 0);
    check_bitmap(b, seed + (uint64_t)i);
  }
  nbits = b->nbits;
  nlive = b->nlive;
  before = malloc(WORDS(nbits) * 8 + 8);
  if (!before) goto done;
  memcpy(before, b->w, WORDS(nbits) * 8);
  if (npk_bm_extend(b, nbits + 65, 1) == NPK_OK) {
    FUZZ_CHECK(b->nbits == nbits + 65);
    FUZZ_CHECK(b->nlive == nlive + 65);
    check_bitmap(b, seed);
    FUZZ_CHECK(npk_bm_select(b, b->nlive - 1, &row) == NPK_OK);
    FUZZ_CHECK(row == b->nbits - 1);
    FUZZ_CHECK(npk_bm_select(b, nlive, &row) == NPK_OK);
    FUZZ_CHECK(row == nbits);
    FUZZ_CHECK(npk_bm_truncate(b, nbits) == NPK_OK);
    FUZZ_CHECK(b->nbits == nbits && b->nlive == nlive);
    FUZZ_CHECK(memcmp(before, b->w, WORDS(nbits) * 8) == 0);
    check_bitmap(b, seed >> 3);
  }
  /* Grow with deleted rows: nothing new is live. */
  if (npk_bm_extend(b, nbits + 130, 0) == NPK_OK) {
    FUZZ_CHECK(b->nlive == nlive);
    check_bitmap(b, seed);
  }
  free(before);
done:
  npk_bm_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  NpkBitmap *b = NULL, *b2 = NULL;
  NpkBuf enc = {0};
  NpkErr e;
  uint64_t total, deleted, seed = 0;
  int rc;

  memset(&e, 0, sizeof e);
  rc = npk_bm_parse(data, size, (uint64_t)INT64_MAX, &b, "deleted_a.npkb",
                    &e);
  if (size < 16) {
    FUZZ_CHECK(rc == NPK_CORRUPT && b == NULL);
    return 0;
  }
  total = npk_get_u64(data);
  deleted = npk_get_u64(data + 8);

  /* One row fewer than it covers: always refused. */
  if (total > 0 && total <= (uint64_t)INT64_MAX) {
    memset(&e, 0, sizeof e);
    FUZZ_CHECK(npk_bm_parse(data, size, total - 1, &b2, "deleted_a.npkb",
                            &e) == NPK_CORRUPT);
    FUZZ_CHECK(b2 == NULL && e.rc == NPK_CORRUPT);
  }

  if (rc != NPK_OK) {
    FUZZ_CHECK(rc == NPK_CORRUPT || rc == NPK_NOMEM);
    FUZZ_CHECK(b == NULL);
    FUZZ_CHECK(strncmp(e.msg, "numpack: ", 9) == 0 && e.msg[9] != 0);
    return 0;
  }

  /* Exactly as many rows as it covers: the same answer. */
  memset(&e, 0, sizeof e);
  FUZZ_CHECK(npk_bm_parse(data, size, total, &b2, "deleted_a.npkb", &e) ==
             NPK_OK);
  FUZZ_CHECK(b2->nbits == b->nbits && b2->nlive == b->nlive);
  npk_bm_free(b2);

  FUZZ_CHECK(b->nbits == total);
  FUZZ_CHECK((uint64_t)size == 16 + WORDS(total) * 8);
  FUZZ_CHECK(b->nlive == total - deleted);
  for (uint64_t i = 0; i < WORDS(total); i++)
    FUZZ_CHECK(b->w[i] == npk_get_u64(data + 16 + i * 8));
  FUZZ_CHECK(npk_bm_encode(b, &enc) == NPK_OK);
  FUZZ_CHECK(enc.n == size && memcmp(enc.p, data, size) == 0);
  npk_buf_free(&enc);

  for (size_t i = 0; i < size; i++) seed = seed * 31 + data[i];
  check_bitmap(b, seed);
  mutate(b, seed);
  npk_bm_free(b);
  return 0;
}
