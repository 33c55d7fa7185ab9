/*
** store_overlay.c — the overlay of replaced rows: a transaction's new bytes
** for rows of the committed region, kept in memory (an open-addressing hash
** from row number to a slot in fixed-size chunks) until the commit writes
** them in place.  Readers of the transaction look here first; chunks are
** retired, not freed, because a reader may still hold a row pointer.
*/
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

#define OV_EMPTY UINT64_MAX

#define OV_TOMB (UINT64_MAX - 1)

NpkOverlay *npk_ov_new(uint64_t row_bytes) {
  NpkOverlay *ov = npk_calloc(1, sizeof *ov);
  if (!ov) return NULL;
  ov->row_bytes = row_bytes;
  ov->per_chunk = row_bytes >= (1u << 20) ? 1 : (1u << 20) / row_bytes;
  return ov;
}

static uint64_t ov_hash(uint64_t row, uint64_t cap) {
  return (row * UINT64_C(0x9E3779B97F4A7C15)) >> 7 & (cap - 1);
}

static unsigned char *ov_slot(const NpkOverlay *ov, uint32_t slot) {
  return ov->chunks[slot / ov->per_chunk] +
         (slot % ov->per_chunk) * ov->row_bytes;
}

const void *npk_ov_get(const NpkOverlay *ov, uint64_t row) {
  uint64_t h;
  if (!ov || ov->hcap == 0) return NULL;
  for (h = ov_hash(row, ov->hcap);; h = (h + 1) & (ov->hcap - 1)) {
    if (ov->keys[h] == row) return ov_slot(ov, ov->slot[h]);
    if (ov->keys[h] == OV_EMPTY) return NULL;
  }
}

static int ov_grow(NpkOverlay *ov) {
  uint64_t cap = ov->hcap ? ov->hcap * 2 : 64;
  uint64_t *keys = npk_malloc(cap * sizeof *keys);
  uint32_t *slot = npk_malloc(cap * sizeof *slot);
  if (!keys || !slot) {
    npk_free(keys);
    npk_free(slot);
    return NPK_NOMEM;
  }
  for (uint64_t i = 0; i < cap; i++) keys[i] = OV_EMPTY;
  for (uint64_t i = 0; i < ov->hcap; i++) {
    uint64_t k = ov->keys[i], h;
    if (k >= OV_TOMB) continue;
    for (h = ov_hash(k, cap); keys[h] != OV_EMPTY; h = (h + 1) & (cap - 1)) {}
    keys[h] = k;
    slot[h] = ov->slot[i];
  }
  npk_free(ov->keys);
  npk_free(ov->slot);
  ov->keys = keys;
  ov->slot = slot;
  ov->hcap = cap;
  return NPK_OK;
}

/* Store a copy of P as ROW.  If ROW was already there, *OLD receives a
** malloc'd copy of its previous bytes (for undo), else NULL. */
int npk_ov_put(NpkOverlay *ov, uint64_t row, const void *p, void **old) {
  uint64_t h, used;
  *old = NULL;
  if (ov->hcap) {
    for (h = ov_hash(row, ov->hcap);; h = (h + 1) & (ov->hcap - 1)) {
      if (ov->keys[h] == row) {
        unsigned char *d = ov_slot(ov, ov->slot[h]);
        if (!(*old = npk_malloc(ov->row_bytes))) return NPK_NOMEM;
        memcpy(*old, d, ov->row_bytes);
        memcpy(d, p, ov->row_bytes);
        return NPK_OK;
      }
      if (ov->keys[h] == OV_EMPTY) break;
    }
  }
  /* Slots are never reused (a removed row leaves a tombstone), so the slot
  ** count is the number of insertions so far. */
  used = ov->nchunk * ov->per_chunk;
  if (ov->n >= UINT32_MAX - 1) return NPK_NOMEM;
  if ((ov->n + 1) * 2 > ov->hcap && ov_grow(ov)) return NPK_NOMEM;
  if (ov->n >= used) {
    unsigned char **ch = npk_realloc(ov->chunks, (ov->nchunk + 1) * sizeof *ch);
    if (!ch) return NPK_NOMEM;
    ov->chunks = ch;
    if (!(ch[ov->nchunk] = npk_malloc(ov->per_chunk * ov->row_bytes)))
      return NPK_NOMEM;
    ov->nchunk++;
  }
  for (h = ov_hash(row, ov->hcap); ov->keys[h] < OV_TOMB;
       h = (h + 1) & (ov->hcap - 1)) {}
  ov->keys[h] = row;
  ov->slot[h] = (uint32_t)ov->n;
  memcpy(ov_slot(ov, (uint32_t)ov->n), p, ov->row_bytes);
  ov->n++;
  return NPK_OK;
}

void npk_ov_remove(NpkOverlay *ov, uint64_t row) {
  uint64_t h;
  if (!ov->hcap) return;
  for (h = ov_hash(row, ov->hcap);; h = (h + 1) & (ov->hcap - 1)) {
    if (ov->keys[h] == row) {
      ov->keys[h] = OV_TOMB;
      return;
    }
    if (ov->keys[h] == OV_EMPTY) return;
  }
}

void npk_ov_free(NpkStore *st, NpkOverlay *ov) {
  if (!ov) return;
  /* Row pointers into the overlay may still be held by a reader. */
  for (uint64_t c = 0; c < ov->nchunk; c++) npk_retire(st, ov->chunks[c], 0);
  npk_free(ov->chunks);
  npk_free(ov->keys);
  npk_free(ov->slot);
  npk_free(ov);
}

int npk_ov_next(const NpkOverlay *ov, uint64_t *pos, uint64_t *row,
                const void **bytes) {
  for (; *pos < ov->hcap; (*pos)++) {
    uint64_t h = *pos;
    if (ov->keys[h] >= OV_TOMB) continue;
    *row = ov->keys[h];
    *bytes = ov_slot(ov, ov->slot[h]);
    (*pos)++;
    return 1;
  }
  return 0;
}
