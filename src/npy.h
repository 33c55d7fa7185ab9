/*
** npy.h — the NumPy .npy codec: parsing an .npy image into its dtype, shape
** and data, writing the header NumPy's np.save writes for an array, and the
** byte swapping that turns big-endian data into the store's little-endian.
**
** Arrays cross the SQL boundary as .npy BLOBs, so this is how every array
** enters and leaves the extension.  Like dtype.c it has no SQLite
** dependency; it is part of the engine layer.
*/
#ifndef NPK_NPY_H
#define NPK_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "store.h"

/* The most dimensions accepted.  NumPy 1.x allows 32 (2.x allows 64, but
** the store's catalog holds 32).  This is the same definition as store.h's,
** token for token, so including both headers is fine, and a change to one
** without the other draws the compiler's "redefined" diagnostic. */
#define NPK_MAX_NDIM     32 /* NumPy's own limit */
#define NPK_MAX_NDIM_NPY NPK_MAX_NDIM

/* A parsed .npy image: header fields plus where the data starts. */
typedef struct NpkNpy NpkNpy;
struct NpkNpy {
  int dtype;      /* NPK_* code */
  int big_endian; /* data is big-endian: convert before storing */
  int fortran;    /* data is in Fortran order (first index
                  ** fastest) and that differs from C order:
                  ** npk_npy_to_c before storing */
  uint32_t ndim;  /* 0 for a scalar array */
  uint64_t shape[NPK_MAX_NDIM_NPY]; /* entries past ndim are zero */
  uint64_t count;                   /* elements: product of shape */
  const unsigned char *data; /* points into the input; may be unaligned */
  uint64_t data_bytes;       /* count * item size */
};

/*
** Parse BLOB (N bytes).  NPK_OK on success; otherwise NPK_ERROR and E holds
** a message such as "numpack: npy: dtype '<U5' is not supported
** (strings)" (npk_err_text gives it from "npy:" on).  OUT is written only
** on success.  Versions 1.0, 2.0 and 3.0 are read.  The data must be
** exactly count * item size bytes; count * item size is at most INT64_MAX.
*/
int npk_npy_parse(const void *blob, size_t n, NpkNpy *out, NpkErr *e);

/*
** The header NumPy 1.24's np.save writes for a C-order little-endian array
** of DTYPE with NDIM dimensions SHAPE: written to OUT (room for CAP bytes);
** returns its length, a multiple of 64 (version 1.0, or 2.0 if the header
** would not fit 65535 bytes).  Returns 0 if CAP is too small, DTYPE is not
** a known code or NDIM exceeds NPK_MAX_NDIM; nothing useful is in OUT then.
** The data (count * item size bytes) follows the header directly.
*/
size_t npk_npy_header(int dtype, uint32_t ndim, const uint64_t *shape,
                      unsigned char *out, size_t cap);
/* V in decimal, without a NUL, in BUF (at least 20 bytes); its length.
** The headers and the functions' JSON are put together with it where
** printf's cost would show in a call that returns little. */
size_t npk_u64_text(char *buf, uint64_t v);
/* The length npk_npy_header would return with an unlimited CAP. */
size_t npk_npy_header_size(int dtype, uint32_t ndim, const uint64_t *shape);

/*
** Rewrite P's Fortran-order data in C order (row-major, as the store keeps
** it) into DST, P->data_bytes long and not overlapping P->data.  Bytes
** are moved as they are; swap afterwards if P->big_endian.
*/
void npk_npy_to_c(void *dst, const NpkNpy *p);

/*
** Byte-swap COUNT items of DTYPE from SRC to DST (which may be equal, or
** must not overlap otherwise).  Complex items swap each half separately, as
** they are two floats.  One-byte types are copied unchanged; an unknown
** DTYPE does nothing.
*/
void npk_npy_swap(void *dst, const void *src, uint64_t count, int dtype);

#endif /* NPK_NPY_H */
