/*
** fuzz_npy.c — fuzz target for npk_npy_parse, the reader of the .npy
** BLOBs every array arrives in.
**
** Beyond "no crash":
**   - a refused image leaves the output untouched and says why, in a
**     message that starts with "npy: " and is NUL-terminated;
**   - an accepted one has a known dtype, ndim <= 32, count the product of
**     the shape, data_bytes == count * item size, and its data is the last
**     data_bytes bytes of the input;
**   - the header npk_npy_header writes for the parsed dtype and shape is a
**     multiple of 64 bytes long, as npk_npy_header_size says, and parses
**     back (with the same data) to the same dtype, shape and data;
**   - big-endian data byte-swapped twice is the data again;
**   - accepted bool data holds only 0 and 1;
**   - Fortran order is flagged only where it differs from C order, and
**     npk_npy_to_c puts every element where C order has it (checked on an
**     array of element numbers of the same shape).
*/
#include <string.h>

#include "fuzz.h"
#include "npy.h"

const char npk_fuzz_target[] = "npy";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  NpkNpy p, q;
  NpkErr e;
  uint64_t count = 1;
  size_t hlen, item;
  unsigned char *img;
  int rc;

  memset(&p, 0xA5, sizeof p);
  memset(&e, 'x', sizeof e);
  rc = npk_npy_parse(data, size, &p, &e);
  if (rc != 0) {
    const unsigned char *raw = (const unsigned char *)&p;
    FUZZ_CHECK(rc == NPK_ERROR && e.rc == rc);
    FUZZ_CHECK(memchr(e.msg, 0, sizeof e.msg) != NULL);
    FUZZ_CHECK(strncmp(e.msg, "numpack: npy: ", 14) == 0);
    FUZZ_CHECK(strncmp(npk_err_text(&e), "npy: ", 5) == 0);
    for (size_t i = 0; i < sizeof p; i++) FUZZ_CHECK(raw[i] == 0xA5);
    return 0;
  }
  FUZZ_CHECK(e.rc == NPK_OK && e.msg[0] == 0);

  item = (size_t)npk_dtype_size(p.dtype);
  FUZZ_CHECK(item > 0);
  FUZZ_CHECK(p.big_endian == 0 || p.big_endian == 1);
  FUZZ_CHECK(item > 1 || p.big_endian == 0);
  FUZZ_CHECK(p.ndim <= NPK_MAX_NDIM_NPY);
  for (uint32_t k = 0; k < p.ndim; k++) {
    FUZZ_CHECK(p.shape[k] <= (uint64_t)INT64_MAX);
    if (p.shape[k] && count) FUZZ_CHECK(count <= UINT64_MAX / p.shape[k]);
    count *= p.shape[k];
  }
  for (uint32_t k = p.ndim; k < NPK_MAX_NDIM_NPY; k++)
    FUZZ_CHECK(p.shape[k] == 0);
  FUZZ_CHECK(p.count == count);
  FUZZ_CHECK(p.count <= (uint64_t)INT64_MAX / item);
  FUZZ_CHECK(p.data_bytes == p.count * item);
  FUZZ_CHECK(p.data_bytes <= size);
  FUZZ_CHECK(p.data == data + size - p.data_bytes);

  /* The header NumPy would write for it, then the same data. */
  hlen = npk_npy_header_size(p.dtype, p.ndim, p.shape);
  FUZZ_CHECK(hlen > 0 && hlen % 64 == 0);
  img = malloc(hlen + (size_t)p.data_bytes + 1);
  if (!img) return 0;
  FUZZ_CHECK(npk_npy_header(p.dtype, p.ndim, p.shape, img, hlen - 1) == 0);
  FUZZ_CHECK(npk_npy_header(p.dtype, p.ndim, p.shape, img, hlen) == hlen);
  FUZZ_CHECK(img[hlen - 1] == '\n');
  if (p.data_bytes) memcpy(img + hlen, p.data, (size_t)p.data_bytes);
  memset(&q, 0, sizeof q);
  rc = npk_npy_parse(img, hlen + (size_t)p.data_bytes, &q, &e);
  if (rc) fprintf(stderr, "re-parse: %s\n", e.msg);
  FUZZ_CHECK(rc == 0);
  FUZZ_CHECK(q.dtype == p.dtype);
  FUZZ_CHECK(q.big_endian == 0);
  FUZZ_CHECK(q.ndim == p.ndim);
  FUZZ_CHECK(memcmp(q.shape, p.shape, sizeof q.shape) == 0);
  FUZZ_CHECK(q.count == p.count && q.data_bytes == p.data_bytes);
  FUZZ_CHECK(q.data == img + hlen);

  /* Swapping is its own inverse, in place or not. */
  if (p.big_endian && p.data_bytes) {
    unsigned char *sw = malloc((size_t)p.data_bytes);
    if (sw) {
      npk_npy_swap(sw, p.data, p.count, p.dtype);
      npk_npy_swap(sw, sw, p.count, p.dtype);
      FUZZ_CHECK(memcmp(sw, p.data, (size_t)p.data_bytes) == 0);
      free(sw);
    }
  }
  if (p.dtype == NPK_BOOL)
    for (uint64_t i = 0; i < p.data_bytes; i++) FUZZ_CHECK(p.data[i] <= 1);

  if (p.fortran) {
    int big = 0;
    for (uint32_t k = 0; k < p.ndim; k++) big += p.shape[k] > 1;
    FUZZ_CHECK(big > 1 && p.count > 0);
  }
  if (p.fortran && p.count <= 4096) {
    /* Element numbers in Fortran order: element (i0, i1, ...) holds
    ** i0 + d0*i1 + d0*d1*i2 + ...; after npk_npy_to_c the element at
    ** C position c, whose multi-index comes from c, must hold that. */
    uint64_t *f = malloc((size_t)p.count * 8), *c = malloc((size_t)p.count * 8);
    if (f && c) {
      NpkNpy r = p;
      for (uint64_t i = 0; i < p.count; i++) f[i] = i;
      r.dtype = NPK_UINT64;
      r.data = (const unsigned char *)f;
      r.data_bytes = p.count * 8;
      npk_npy_to_c(c, &r);
      for (uint64_t pos = 0; pos < p.count; pos++) {
        uint64_t rest = pos, want = 0, stride = 1, idx[NPK_MAX_NDIM_NPY];
        for (uint32_t k = p.ndim; k-- > 0;) {
          idx[k] = rest % p.shape[k];
          rest /= p.shape[k];
        }
        for (uint32_t k = 0; k < p.ndim; k++) {
          want += idx[k] * stride;
          stride *= p.shape[k];
        }
        FUZZ_CHECK(c[pos] == want);
      }
    }
    free(f);
    free(c);
  }
  free(img);
  return 0;
}
