/*
** store_overlay.c — the overlay of replaced rows: a transaction's new bytes
** for rows of the committed region, kept (an open-addressing hash from row
** number to a slot in fixed-size chunks) until the commit writes them in
** place.  Readers of the transaction look here first; the overlay is
** retired whole, not freed, because a reader may still hold a row pointer
** into it.
**
** The first NPK_SPILL_BUDGET bytes of rows are kept in memory.  Beyond it
** the chunks are cut from mappings of a spill file, an unnamed file in the
** store's directory whose blocks are allocated before they are mapped: an
** UPDATE of every row of a large array then costs page cache, which the
** kernel writes out and takes back under pressure, not the array's size in
** process memory.  Where the file system offers no unnamed file or cannot
** allocate ahead, the rows stay in memory, as before.  The spill file's
** mappings are guarded against SIGBUS as the data files' are: a page the
** disk fails to give back becomes zeros and a counted fault, and from then
** on the overlay refuses to be read or committed (npk_ov_check).
*/
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "store_int.h"

#define OV_EMPTY UINT64_MAX

#define OV_TOMB (UINT64_MAX - 1)

NpkOverlay *npk_ov_new(uint64_t row_bytes) {
  NpkOverlay *ov = npk_calloc(1, sizeof *ov);
  if (!ov) return NULL;
  if (!(ov->note = npk_retire_note())) {
    npk_free(ov);
    return NULL;
  }
  ov->row_bytes = row_bytes;
  ov->per_chunk = row_bytes >= (1u << 20) ? 1 : (1u << 20) / row_bytes;
  ov->spill_fd = -1;
  ov->new_undo = SIZE_MAX;
  return ov;
}

/* Each mapping of the spill file is this long at least, cut into chunks:
** a mapping per chunk would meet the kernel's limit on a process's
** mappings (65530) at 64 GB of rows. */
#define SPILL_REGION (64u << 20)

/* Map one more region of the spill file (opened on first use), its blocks
** allocated first.  NPK_NOFILE, no error set, when the file system cannot
** give one. */
static int spill_region(NpkStore *st, NpkOverlay *ov, uint64_t bytes,
                        NpkErr *e) {
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), off;
  unsigned char **r, *p;
  int *slots, rc;
  if (ov->nregion == 0) {
    uint64_t len = bytes > SPILL_REGION ? bytes : SPILL_REGION;
    ov->region_len = (len + page - 1) / page * page;
    if (ov->spill_fd < 0 && (rc = npk_io_spill_open(st, &ov->spill_fd, e)))
      return rc;
  }
  if (!(r = npk_realloc(ov->region, (ov->nregion + 1) * sizeof *r)))
    return npk_err(e, NPK_NOMEM, "out of memory");
  ov->region = r;
  if (!(slots = npk_realloc(ov->rslot, (ov->nregion + 1) * sizeof *slots)))
    return npk_err(e, NPK_NOMEM, "out of memory");
  ov->rslot = slots;
  off = ov->nregion * ov->region_len;
  if ((rc = npk_io_spill_grow(st, ov->spill_fd, off, ov->region_len, e)))
    return rc;
  p = mmap(NULL, (size_t)ov->region_len, PROT_READ | PROT_WRITE, MAP_SHARED,
           ov->spill_fd, (off_t)off);
  if (p == MAP_FAILED)
    return npk_err_sys(e, errno, "cannot map a temporary file in", st->dir);
  /* The store's count of spill faults, not one of the overlay's: a retired
  ** mapping stays registered until it is unmapped, after the overlay is
  ** gone.  Only the session writing is told of it (npk_map_faults). */
  slots[ov->nregion] =
      npk_guard_add_rw(p, (size_t)ov->region_len, &st->spill_faults, 1);
  if (slots[ov->nregion] < 0) {
    munmap(p, (size_t)ov->region_len);
    return npk_err(e, NPK_NOMEM,
                   "cannot map a temporary file in %s: no room to guard the "
                   "mapping",
                   st->dir);
  }
  r[ov->nregion++] = p;
  ov->region_left = ov->region_len / bytes;
  return NPK_OK;
}

/* Storage for the next chunk, in *PP: memory while the rows fit the
** budget (or no spill file can be had), else the next piece of the spill
** file's last region. */
static int ov_chunk(NpkStore *st, NpkOverlay *ov, unsigned char **pp,
                    NpkErr *e) {
  uint64_t bytes = ov->per_chunk * ov->row_bytes;
  int rc;
  if (ov->nregion == 0 && !ov->no_spill &&
      (ov->nchunk + 1) * bytes > npk_spill_budget()) {
    rc = spill_region(st, ov, bytes, e);
    if (rc == NPK_NOFILE) ov->no_spill = 1;
    else if (rc) return rc;
  } else if (ov->nregion && ov->region_left == 0) {
    /* Unnamed files came, allocating ahead went: that is an error now. */
    if ((rc = spill_region(st, ov, bytes, e)) == NPK_NOFILE)
      rc = npk_err(e, NPK_IOERR, "cannot allocate a temporary file in %s",
                   st->dir);
    if (rc) return rc;
  }
  if (ov->nregion) {
    uint64_t per = ov->region_len / bytes;
    *pp = ov->region[ov->nregion - 1] + (per - ov->region_left) * bytes;
    ov->region_left--;
    return NPK_OK;
  }
  if (!(*pp = npk_malloc(bytes))) return npk_err(e, NPK_NOMEM, "out of memory");
  ov->nmem++;
  return NPK_OK;
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
** malloc'd copy of its previous bytes (for undo), else NULL; with OLD NULL
** (an undo putting bytes back) none is made, so that nothing can fail. */
int npk_ov_put(NpkStore *st, NpkOverlay *ov, uint64_t row, const void *p,
               void **old, NpkErr *e) {
  uint64_t h, used;
  int rc;
  if (old) *old = NULL;
  if (ov->hcap) {
    for (h = ov_hash(row, ov->hcap);; h = (h + 1) & (ov->hcap - 1)) {
      if (ov->keys[h] == row) {
        unsigned char *d = ov_slot(ov, ov->slot[h]);
        if (old && !(*old = npk_malloc(ov->row_bytes)))
          return npk_err(e, NPK_NOMEM, "out of memory");
        if (old) memcpy(*old, d, ov->row_bytes);
        memcpy(d, p, ov->row_bytes);
        return NPK_OK;
      }
      if (ov->keys[h] == OV_EMPTY) break;
    }
  }
  /* Slots are never reused (a removed row leaves a tombstone), so the slot
  ** count is the number of insertions so far. */
  used = ov->nchunk * ov->per_chunk;
  if (ov->n >= UINT32_MAX - 1 || ((ov->n + 1) * 2 > ov->hcap && ov_grow(ov)))
    return npk_err(e, NPK_NOMEM, "out of memory");
  if (ov->n >= used) {
    unsigned char **ch = npk_realloc(ov->chunks, (ov->nchunk + 1) * sizeof *ch);
    if (!ch) return npk_err(e, NPK_NOMEM, "out of memory");
    ov->chunks = ch;
    if ((rc = ov_chunk(st, ov, &ch[ov->nchunk], e))) return rc;
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

void npk_ov_drop_from(NpkOverlay *ov, uint64_t from) {
  for (uint64_t h = 0; h < ov->hcap; h++)
    if (ov->keys[h] < OV_TOMB && ov->slot[h] >= from) ov->keys[h] = OV_TOMB;
}

void npk_ov_free(NpkStore *st, NpkOverlay *ov) {
  NpkRetired *note;
  if (!ov) return;
  /* Row pointers into the overlay may still be held by a reader: it goes
  ** whole, when no session is pinned. */
  if (__atomic_load_n(&st->pins, __ATOMIC_RELAXED) == 0) {
    npk_ov_release(ov);
    return;
  }
  note = ov->note;
  ov->note = NULL;
  note->kind = NPK_RET_OVERLAY;
  note->p = ov;
  npk_retired_push(st, note);
}

void npk_ov_release(NpkOverlay *ov) {
  for (uint64_t c = 0; c < ov->nmem; c++) npk_free(ov->chunks[c]);
  for (uint64_t r = 0; r < ov->nregion; r++)
    npk_block_release(ov->region[r], (size_t)ov->region_len);
  /* The spill file goes with its last mapping. */
  if (ov->spill_fd >= 0) close(ov->spill_fd);
  npk_free(ov->note);
  npk_free(ov->region);
  npk_free(ov->rslot);
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

int npk_ov_check(NpkStore *st, NpkOverlay *ov, const char *name, NpkErr *e) {
  /* The handler marks the slot before it counts the fault: a count seen
  ** here has its mark visible. */
  uint64_t faults = __atomic_load_n(&st->spill_faults, __ATOMIC_ACQUIRE);
  if (ov->nregion == 0) return NPK_OK;
  if (!ov->damaged && faults != ov->faults_seen) {
    for (uint64_t r = 0; r < ov->nregion; r++)
      if (npk_guard_hit(ov->rslot[r])) ov->damaged = 1;
    ov->faults_seen = faults;
  }
  if (!ov->damaged) return NPK_OK;
  return npk_err(e, NPK_IOERR,
                 "rows of array \"%s\" replaced in this transaction were "
                 "lost to a disk error in their temporary file in %s; the "
                 "transaction cannot commit and must be rolled back",
                 name, st->dir);
}
