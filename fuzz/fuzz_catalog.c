/*
** fuzz_catalog.c — fuzz target for npk_catalog_parse, the reader of
** metadata.npkm (SPEC §2).
**
** Beyond "no crash, no leak, no read past the input":
**   - a refused catalog leaves the catalog empty and says NPK_CORRUPT (or
**     NPK_NOMEM) with a message; an accepted one never comes from fewer
**     bytes than a header;
**   - every accepted array is sane: valid name, 1..32 dims, a data file
**     inside the store, row_bytes agreeing with dtype and shape, the
**     segmented flag agreeing with the file name;
**   - npk_catalog_encode of an accepted catalog parses back to the same
**     arrays, and encoding that again gives the same bytes;
**   - the encoding is the input minus the block-info records it dropped
**     (each at least 21 bytes), so never longer than the input.
*/
#include <string.h>

#include "fuzz.h"
#include "store_int.h"

const char npk_fuzz_target[] = "catalog";

/* Check one parsed array on its own. */
static void check_array(const NpkArray *a) {
  uint64_t rb, total;
  size_t fl;
  FUZZ_CHECK(a->refs == 1);
  FUZZ_CHECK(a->name && npk_name_valid(a->name));
  FUZZ_CHECK(a->dtype >= 0 && a->dtype < NPK_NDTYPE);
  FUZZ_CHECK(a->ndim >= 1 && a->ndim <= NPK_MAX_NDIM);
  FUZZ_CHECK(npk_shape_bytes(a->dtype, a->ndim, a->shape, &rb, &total) ==
             NPK_OK);
  FUZZ_CHECK(rb == a->row_bytes);
  FUZZ_CHECK(total <= (uint64_t)INT64_MAX);
  FUZZ_CHECK(a->data_file && npk_relpath_valid(a->data_file));
  fl = strlen(a->data_file);
  FUZZ_CHECK(a->segmented ==
             (fl > 7 && strcmp(a->data_file + fl - 7, ".npkseg") == 0));
  FUZZ_CHECK(a->nseg == 0 && a->seg == NULL && a->bm == NULL);
  FUZZ_CHECK(!a->pending && a->ov == NULL);
}

/* The two arrays describe the same thing. */
static void check_same(const NpkArray *a, const NpkArray *b) {
  FUZZ_CHECK(strcmp(a->name, b->name) == 0);
  FUZZ_CHECK(a->dtype == b->dtype);
  FUZZ_CHECK(a->ndim == b->ndim);
  FUZZ_CHECK(memcmp(a->shape, b->shape, a->ndim * sizeof a->shape[0]) == 0);
  FUZZ_CHECK(a->row_bytes == b->row_bytes);
  FUZZ_CHECK(strcmp(a->data_file, b->data_file) == 0);
  FUZZ_CHECK(a->mtime == b->mtime);
  FUZZ_CHECK(a->segmented == b->segmented);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  NpkCatalog cat, again;
  NpkBuf enc = {0}, enc2 = {0};
  NpkErr e;
  int rc;

  memset(&e, 0, sizeof e);
  rc = npk_catalog_parse(data, size, &cat, &e);
  if (rc != NPK_OK) {
    FUZZ_CHECK(rc == NPK_CORRUPT || rc == NPK_NOMEM);
    FUZZ_CHECK(e.rc == rc);
    FUZZ_CHECK(strncmp(e.msg, "numpack: ", 9) == 0 && e.msg[9] != 0);
    FUZZ_CHECK(memchr(e.msg, 0, sizeof e.msg) != NULL);
    FUZZ_CHECK(cat.n == 0 && cat.ch == NULL);
    return 0;
  }

  /* The header was there and said what a catalog says. */
  FUZZ_CHECK(size >= 20);
  FUZZ_CHECK(npk_get_u32(data) == NPK_CAT_MAGIC);
  FUZZ_CHECK(npk_get_u32(data + 4) == NPK_CAT_VERSION);
  FUZZ_CHECK((uint64_t)cat.n == npk_get_u32(data + 16));
  for (int i = 0; i < cat.n; i++) {
    const char *name = npk_cat_at(&cat, i)->name;
    check_array(npk_cat_at(&cat, i));
    for (int j = 0; j < i; j++)
      FUZZ_CHECK(strcmp(name, npk_cat_at(&cat, j)->name) != 0);
  }

  /* Encode, parse the encoding, compare. */
  FUZZ_CHECK(npk_catalog_encode(&cat, &enc) == NPK_OK);
  FUZZ_CHECK(enc.n <= size);
  FUZZ_CHECK(enc.n == size || size - enc.n >= 21);
  memset(&e, 0, sizeof e);
  rc = npk_catalog_parse(enc.p, enc.n, &again, &e);
  if (rc != NPK_OK) fprintf(stderr, "re-parse: %s\n", e.msg);
  FUZZ_CHECK(rc == NPK_OK);
  FUZZ_CHECK(again.n == cat.n);
  for (int i = 0; i < cat.n; i++)
    check_same(npk_cat_at(&cat, i), npk_cat_at(&again, i));
  FUZZ_CHECK(npk_catalog_encode(&again, &enc2) == NPK_OK);
  FUZZ_CHECK(enc2.n == enc.n && memcmp(enc2.p, enc.p, enc.n) == 0);

  npk_buf_free(&enc);
  npk_buf_free(&enc2);
  npk_catalog_clear(NULL, &again);
  npk_catalog_clear(NULL, &cat);
  return 0;
}
