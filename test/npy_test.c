/*
** npy_test.c — unit tests of src/npy.c, the .npy codec: the headers it
** writes are byte-identical to NumPy 1.24's np.save, images NumPy writes
** parse back (versions 1.0, 2.0 and 3.0, big-endian data), every refusal
** gives its message, and no truncated or damaged image crashes the parser.
**
** Run on its own (no Python needed; the expected bytes below were produced
** by NumPy 1.24 and are kept as literals):
**
**   gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Isrc \
**       src/npy.c src/dtype.c test/npy_test.c -o npy_test && ./npy_test
**
** With NPK_NPY_DIR set to a directory made by "test/npy_roundtrip.py
** --write DIR", it also parses every file NumPy wrote there and writes
** c_*.npy files for the script's --check to load back with np.load;
** "test/npy_roundtrip.py ./npy_test" does all three steps.  The program
** prints which of the two it did.
*/
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "dtype.h"
#include "npy.h"


/* ------------------------------------------------------------ helpers */

/* The data bytes every test array (and npy_roundtrip.py) uses: byte I is
** (I*131 + 7) mod 256, or its low bit for bool, whose bytes must be 0/1. */
static void fill_pattern(unsigned char *p, uint64_t n, int dtype){
  uint64_t i;
  for(i=0; i<n; i++){
    unsigned char b = (unsigned char)((i*131 + 7) & 0xff);
    p[i] = dtype==NPK_BOOL ? (unsigned char)(b & 1) : b;
  }
}

static uint64_t product(uint32_t ndim, const uint64_t *shape){
  uint64_t n = 1;
  uint32_t k;
  for(k=0; k<ndim; k++) n *= shape[k];
  return n;
}

/*
** Build an .npy image by hand: version MAJOR.0, the dict text DICT padded
** with spaces to a multiple of ALIGN bytes and '\n', then NDATA bytes of
** DATA.  Returns a malloc'd buffer and its length in *PN.
*/
static unsigned char *build_align(int major, const char *dict,
                                  const void *data, size_t ndata,
                                  size_t align, size_t *pn){
  size_t nPrefix = major==1 ? 10 : 12;
  size_t nDict = strlen(dict);
  size_t nTotal = nPrefix + nDict + 1;
  size_t nHeader;
  unsigned char *p;
  if( nTotal % align ) nTotal += align - nTotal % align;
  nHeader = nTotal - nPrefix;
  p = malloc(nTotal + ndata + 1);
  memcpy(p, "\223NUMPY", 6);
  p[6] = (unsigned char)major;
  p[7] = 0;
  p[8] = (unsigned char)(nHeader & 0xff);
  p[9] = (unsigned char)(nHeader>>8);
  if( nPrefix==12 ){
    p[10] = (unsigned char)(nHeader>>16);
    p[11] = (unsigned char)(nHeader>>24);
  }
  memcpy(p+nPrefix, dict, nDict);
  memset(p+nPrefix+nDict, ' ', nHeader-nDict-1);
  p[nTotal-1] = '\n';
  if( ndata ) memcpy(p+nTotal, data, ndata);
  *pn = nTotal + ndata;
  return p;
}

static unsigned char *build(const char *dict, const void *data, size_t ndata,
                            size_t *pn){
  return build_align(1, dict, data, ndata, 64, pn);
}

/* Parse a hand-built image of DICT with NDATA zero bytes of data. */
static int parse_dict(int major, const char *dict, size_t ndata, NpkNpy *p,
                      NpkErr *e){
  unsigned char *data = calloc(ndata+1, 1);
  size_t n;
  unsigned char *img = build_align(major, dict, data, ndata, 64, &n);
  int rc = npk_npy_parse(img, n, p, e);
  free(img);
  free(data);
  return rc;
}

/* ----------------------------------------------------- NumPy's headers
** Generated once by NumPy 1.24.2 (np.save of np.zeros(shape, dtype), or
** np.lib.format.write_array_header_1_0 where the array is too big to
** allocate), cut at the header's '\n'. */
static const struct NumpyHeader {
  int dtype;
  uint32_t ndim;
  uint64_t shape[NPK_MAX_NDIM];
  size_t len;
  const char *bytes;
} numpyHeaders[] = {
  /* Every dtype in every shape. */
  { 0, 0, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|b1', 'fortran_order': False, 'shape':"
    " (), }                                                              \n" },
  { 0, 1, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|b1', 'fortran_order': False, 'shape':"
    " (0,), }                                                            \n" },
  { 0, 1, { 5 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|b1', 'fortran_order': False, 'shape':"
    " (5,), }                                                            \n" },
  { 0, 2, { 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|b1', 'fortran_order': False, 'shape':"
    " (3, 4), }                                                          \n" },
  { 0, 3, { 2, 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|b1', 'fortran_order': False, 'shape':"
    " (2, 3, 4), }                                                       \n" },
  { 0, 2, { 0, 7 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|b1', 'fortran_order': False, 'shape':"
    " (0, 7), }                                                          \n" },
  { 1, 0, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|u1', 'fortran_order': False, 'shape':"
    " (), }                                                              \n" },
  { 1, 1, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|u1', 'fortran_order': False, 'shape':"
    " (0,), }                                                            \n" },
  { 1, 1, { 5 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|u1', 'fortran_order': False, 'shape':"
    " (5,), }                                                            \n" },
  { 1, 2, { 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|u1', 'fortran_order': False, 'shape':"
    " (3, 4), }                                                          \n" },
  { 1, 3, { 2, 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|u1', 'fortran_order': False, 'shape':"
    " (2, 3, 4), }                                                       \n" },
  { 1, 2, { 0, 7 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|u1', 'fortran_order': False, 'shape':"
    " (0, 7), }                                                          \n" },
  { 2, 0, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u2', 'fortran_order': False, 'shape':"
    " (), }                                                              \n" },
  { 2, 1, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u2', 'fortran_order': False, 'shape':"
    " (0,), }                                                            \n" },
  { 2, 1, { 5 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u2', 'fortran_order': False, 'shape':"
    " (5,), }                                                            \n" },
  { 2, 2, { 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u2', 'fortran_order': False, 'shape':"
    " (3, 4), }                                                          \n" },
  { 2, 3, { 2, 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u2', 'fortran_order': False, 'shape':"
    " (2, 3, 4), }                                                       \n" },
  { 2, 2, { 0, 7 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u2', 'fortran_order': False, 'shape':"
    " (0, 7), }                                                          \n" },
  { 3, 0, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u4', 'fortran_order': False, 'shape':"
    " (), }                                                              \n" },
  { 3, 1, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u4', 'fortran_order': False, 'shape':"
    " (0,), }                                                            \n" },
  { 3, 1, { 5 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u4', 'fortran_order': False, 'shape':"
    " (5,), }                                                            \n" },
  { 3, 2, { 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u4', 'fortran_order': False, 'shape':"
    " (3, 4), }                                                          \n" },
  { 3, 3, { 2, 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u4', 'fortran_order': False, 'shape':"
    " (2, 3, 4), }                                                       \n" },
  { 3, 2, { 0, 7 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u4', 'fortran_order': False, 'shape':"
    " (0, 7), }                                                          \n" },
  { 4, 0, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u8', 'fortran_order': False, 'shape':"
    " (), }                                                              \n" },
  { 4, 1, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u8', 'fortran_order': False, 'shape':"
    " (0,), }                                                            \n" },
  { 4, 1, { 5 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u8', 'fortran_order': False, 'shape':"
    " (5,), }                                                            \n" },
  { 4, 2, { 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u8', 'fortran_order': False, 'shape':"
    " (3, 4), }                                                          \n" },
  { 4, 3, { 2, 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u8', 'fortran_order': False, 'shape':"
    " (2, 3, 4), }                                                       \n" },
  { 4, 2, { 0, 7 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<u8', 'fortran_order': False, 'shape':"
    " (0, 7), }                                                          \n" },
  { 5, 0, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|i1', 'fortran_order': False, 'shape':"
    " (), }                                                              \n" },
  { 5, 1, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|i1', 'fortran_order': False, 'shape':"
    " (0,), }                                                            \n" },
  { 5, 1, { 5 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|i1', 'fortran_order': False, 'shape':"
    " (5,), }                                                            \n" },
  { 5, 2, { 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|i1', 'fortran_order': False, 'shape':"
    " (3, 4), }                                                          \n" },
  { 5, 3, { 2, 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|i1', 'fortran_order': False, 'shape':"
    " (2, 3, 4), }                                                       \n" },
  { 5, 2, { 0, 7 }, 128,
    "\223NUMPY\001\000v\000{'descr': '|i1', 'fortran_order': False, 'shape':"
    " (0, 7), }                                                          \n" },
  { 6, 0, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i2', 'fortran_order': False, 'shape':"
    " (), }                                                              \n" },
  { 6, 1, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i2', 'fortran_order': False, 'shape':"
    " (0,), }                                                            \n" },
  { 6, 1, { 5 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i2', 'fortran_order': False, 'shape':"
    " (5,), }                                                            \n" },
  { 6, 2, { 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i2', 'fortran_order': False, 'shape':"
    " (3, 4), }                                                          \n" },
  { 6, 3, { 2, 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i2', 'fortran_order': False, 'shape':"
    " (2, 3, 4), }                                                       \n" },
  { 6, 2, { 0, 7 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i2', 'fortran_order': False, 'shape':"
    " (0, 7), }                                                          \n" },
  { 7, 0, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i4', 'fortran_order': False, 'shape':"
    " (), }                                                              \n" },
  { 7, 1, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i4', 'fortran_order': False, 'shape':"
    " (0,), }                                                            \n" },
  { 7, 1, { 5 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i4', 'fortran_order': False, 'shape':"
    " (5,), }                                                            \n" },
  { 7, 2, { 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i4', 'fortran_order': False, 'shape':"
    " (3, 4), }                                                          \n" },
  { 7, 3, { 2, 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i4', 'fortran_order': False, 'shape':"
    " (2, 3, 4), }                                                       \n" },
  { 7, 2, { 0, 7 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i4', 'fortran_order': False, 'shape':"
    " (0, 7), }                                                          \n" },
  { 8, 0, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i8', 'fortran_order': False, 'shape':"
    " (), }                                                              \n" },
  { 8, 1, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i8', 'fortran_order': False, 'shape':"
    " (0,), }                                                            \n" },
  { 8, 1, { 5 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i8', 'fortran_order': False, 'shape':"
    " (5,), }                                                            \n" },
  { 8, 2, { 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i8', 'fortran_order': False, 'shape':"
    " (3, 4), }                                                          \n" },
  { 8, 3, { 2, 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i8', 'fortran_order': False, 'shape':"
    " (2, 3, 4), }                                                       \n" },
  { 8, 2, { 0, 7 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i8', 'fortran_order': False, 'shape':"
    " (0, 7), }                                                          \n" },
  { 9, 0, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f2', 'fortran_order': False, 'shape':"
    " (), }                                                              \n" },
  { 9, 1, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f2', 'fortran_order': False, 'shape':"
    " (0,), }                                                            \n" },
  { 9, 1, { 5 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f2', 'fortran_order': False, 'shape':"
    " (5,), }                                                            \n" },
  { 9, 2, { 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f2', 'fortran_order': False, 'shape':"
    " (3, 4), }                                                          \n" },
  { 9, 3, { 2, 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f2', 'fortran_order': False, 'shape':"
    " (2, 3, 4), }                                                       \n" },
  { 9, 2, { 0, 7 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f2', 'fortran_order': False, 'shape':"
    " (0, 7), }                                                          \n" },
  { 10, 0, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f4', 'fortran_order': False, 'shape':"
    " (), }                                                              \n" },
  { 10, 1, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f4', 'fortran_order': False, 'shape':"
    " (0,), }                                                            \n" },
  { 10, 1, { 5 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f4', 'fortran_order': False, 'shape':"
    " (5,), }                                                            \n" },
  { 10, 2, { 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f4', 'fortran_order': False, 'shape':"
    " (3, 4), }                                                          \n" },
  { 10, 3, { 2, 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f4', 'fortran_order': False, 'shape':"
    " (2, 3, 4), }                                                       \n" },
  { 10, 2, { 0, 7 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f4', 'fortran_order': False, 'shape':"
    " (0, 7), }                                                          \n" },
  { 11, 0, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f8', 'fortran_order': False, 'shape':"
    " (), }                                                              \n" },
  { 11, 1, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f8', 'fortran_order': False, 'shape':"
    " (0,), }                                                            \n" },
  { 11, 1, { 5 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f8', 'fortran_order': False, 'shape':"
    " (5,), }                                                            \n" },
  { 11, 2, { 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f8', 'fortran_order': False, 'shape':"
    " (3, 4), }                                                          \n" },
  { 11, 3, { 2, 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f8', 'fortran_order': False, 'shape':"
    " (2, 3, 4), }                                                       \n" },
  { 11, 2, { 0, 7 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<f8', 'fortran_order': False, 'shape':"
    " (0, 7), }                                                          \n" },
  { 12, 0, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<c8', 'fortran_order': False, 'shape':"
    " (), }                                                              \n" },
  { 12, 1, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<c8', 'fortran_order': False, 'shape':"
    " (0,), }                                                            \n" },
  { 12, 1, { 5 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<c8', 'fortran_order': False, 'shape':"
    " (5,), }                                                            \n" },
  { 12, 2, { 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<c8', 'fortran_order': False, 'shape':"
    " (3, 4), }                                                          \n" },
  { 12, 3, { 2, 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<c8', 'fortran_order': False, 'shape':"
    " (2, 3, 4), }                                                       \n" },
  { 12, 2, { 0, 7 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<c8', 'fortran_order': False, 'shape':"
    " (0, 7), }                                                          \n" },
  { 13, 0, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<c16', 'fortran_order': False, 'shape'"
    ": (), }                                                             \n" },
  { 13, 1, { 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<c16', 'fortran_order': False, 'shape'"
    ": (0,), }                                                           \n" },
  { 13, 1, { 5 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<c16', 'fortran_order': False, 'shape'"
    ": (5,), }                                                           \n" },
  { 13, 2, { 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<c16', 'fortran_order': False, 'shape'"
    ": (3, 4), }                                                         \n" },
  { 13, 3, { 2, 3, 4 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<c16', 'fortran_order': False, 'shape'"
    ": (2, 3, 4), }                                                      \n" },
  { 13, 2, { 0, 7 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<c16', 'fortran_order': False, 'shape'"
    ": (0, 7), }                                                         \n" },
  /* Text ends on a 64-byte boundary: NumPy adds a whole 64 bytes of padding. */
  { 10, 14, { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 100 }, 192,
    "\223NUMPY\001\000\266\000{'descr': '<f4', 'fortran_order': False, 'shap"
    "e': (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 100), }                    "
    "                                                                \n" },
  /* The most dimensions. */
  { 8, 32,
    { 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
      3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3 }, 192,
    "\223NUMPY\001\000\266\000{'descr': '<i8', 'fortran_order': False, 'shap"
    "e': (3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, "
    "3, 3, 3, 3, 3, 3, 3, 3, 3, 3), }                                \n" },
  /* A 19-digit first dimension leaves 2 spaces of growth room. */
  { 8, 2, { UINT64_C(1000000000000000000), 0 }, 128,
    "\223NUMPY\001\000v\000{'descr': '<i8', 'fortran_order': False, 'shape':"
    " (1000000000000000000, 0), }                                        \n" },
};
#define NHEADER ((int)(sizeof numpyHeaders / sizeof numpyHeaders[0]))

/* ------------------------------------------------------ NumPy's files
** Whole images written by NumPy 1.24.2, as the comment above each says. */
/* np.lib.format.write_array(f, np.array([1, -2, 300], '<i2'),
**                           version=(2, 0)) */
static const char npyV2[] =
  "\223NUMPY\002\000t\000\000\000{'descr': '<i2', 'fortran_order': False, 's"
  "hape': (3,), }                                                          "
  "\n\001\000\376\377,\001";
/* np.lib.format.write_array(f, np.array([1.5, -2.0], '<f4'),
**                           version=(3, 0)) */
static const char npyV3[] =
  "\223NUMPY\003\000t\000\000\000{'descr': '<f4', 'fortran_order': False, 's"
  "hape': (2,), }                                                          "
  "\n\000\000\300?\000\000\000\300";
/* np.save(f, np.array([1.0, -2.5], '>f8')) */
static const char npyBigF8[] =
  "\223NUMPY\001\000v\000{'descr': '>f8', 'fortran_order': False, 'shape': ("
  "2,), }                                                            \n?\360"
  "\000\000\000\000\000\000\300\004\000\000\000\000\000\000";
/* np.save(f, np.array([1+2j, -0.5j], '>c8')) */
static const char npyBigC8[] =
  "\223NUMPY\001\000v\000{'descr': '>c8', 'fortran_order': False, 'shape': ("
  "2,), }                                                            \n?\200"
  "\000\000@\000\000\000\200\000\000\000\277\000\000\000";
/* np.save(f, np.asfortranarray(np.arange(6, dtype='<i2')
**                                .reshape(2, 3))) */
static const char npyFortran[] =
  "\223NUMPY\001\000v\000{'descr': '<i2', 'fortran_order': True, 'shape': (2"
  ", 3), }                                                           \n\000"
  "\000\003\000\001\000\004\000\002\000\005\000";
/* np.save(f, np.arange(12, dtype='<f8').reshape(3, 4)) */
static const char npyF8x34[] =
  "\223NUMPY\001\000v\000{'descr': '<f8', 'fortran_order': False, 'shape': ("
  "3, 4), }                                                          \n\000"
  "\000\000\000\000\000\000\000\000\000\000\000\000\000\360?\000\000\000\000"
  "\000\000\000@\000\000\000\000\000\000\010@\000\000\000\000\000\000\020@"
  "\000\000\000\000\000\000\024@\000\000\000\000\000\000\030@\000\000\000"
  "\000\000\000\034@\000\000\000\000\000\000 @\000\000\000\000\000\000\042@"
  "\000\000\000\000\000\000$@\000\000\000\000\000\000&@";

/* The length of a literal image (the literal's own NUL excluded). */
#define LEN(a) (sizeof(a) - 1)

/* ------------------------------------------------------------- writing */

/* npk_npy_header writes exactly NumPy's bytes, and says how many. */
static void test_header_matches_numpy(void){
  int i;
  for(i=0; i<NHEADER; i++){
    const struct NumpyHeader *h = &numpyHeaders[i];
    unsigned char buf[512];
    size_t n;
    CHECK_EQ(npk_npy_header_size(h->dtype, h->ndim, h->shape), h->len);
    memset(buf, 0xee, sizeof buf);
    n = npk_npy_header(h->dtype, h->ndim, h->shape, buf, sizeof buf);
    CHECK_EQ(n, h->len);
    CHECK_EQ(n % 64, 0);
    if( n==h->len && memcmp(buf, h->bytes, n)!=0 ){
      printf("  header %d differs: %.*s\n", i, (int)n, (const char*)buf+10);
      CHECK(0);
    }
    /* Exactly enough room is enough; one byte less is not. */
    CHECK_EQ(npk_npy_header(h->dtype, h->ndim, h->shape, buf, h->len),
             h->len);
    CHECK_EQ(npk_npy_header(h->dtype, h->ndim, h->shape, buf, h->len-1), 0);
  }
}

/* Arguments the writer refuses with 0. */
static void test_header_bad_args(void){
  uint64_t shape[NPK_MAX_NDIM+1];
  unsigned char buf[1024];
  int i;
  for(i=0; i<=NPK_MAX_NDIM; i++) shape[i] = 2;
  CHECK_EQ(npk_npy_header_size(-1, 1, shape), 0);
  CHECK_EQ(npk_npy_header_size(NPK_NDTYPE, 1, shape), 0);
  CHECK_EQ(npk_npy_header_size(NPK_INT8, NPK_MAX_NDIM+1, shape), 0);
  CHECK(npk_npy_header_size(NPK_INT8, NPK_MAX_NDIM, shape)>0);
  CHECK_EQ(npk_npy_header(NPK_INT8, NPK_MAX_NDIM+1, shape, buf, sizeof buf),
           0);
  CHECK_EQ(npk_npy_header(NPK_INT8, 1, shape, 0, 1000), 0);
  CHECK_EQ(npk_npy_header(NPK_INT8, 1, shape, buf, 0), 0);
  CHECK_EQ(npk_npy_header_size(NPK_INT8, 1, 0), 0);
  /* A scalar needs no shape array. */
  CHECK_EQ(npk_npy_header_size(NPK_INT8, 0, 0), 128);
  /* The largest uint64 still formats (NumPy could not hold it, but the
  ** writer does not judge). */
  shape[0] = UINT64_MAX;
  CHECK_EQ(npk_npy_header_size(NPK_INT8, 1, shape), 128);
}

/* ------------------------------------------------------------- parsing */

/* Check a successful parse: fields consistent with each other and the
** input.  Used on everything that parses, including damaged images. */
static void check_invariants(const unsigned char *img, size_t n,
                             const NpkNpy *p){
  uint32_t k;
  uint64_t count = 1;
  CHECK(p->dtype>=0 && p->dtype<NPK_NDTYPE);
  CHECK(p->ndim<=NPK_MAX_NDIM);
  CHECK(p->big_endian==0 || p->big_endian==1);
  for(k=0; k<p->ndim && k<NPK_MAX_NDIM; k++) count *= p->shape[k];
  CHECK(count==p->count);
  CHECK(p->data_bytes==p->count*(uint64_t)npk_dtype_size(p->dtype));
  CHECK(p->data>=img+10 && p->data<=img+n);
  CHECK((uint64_t)(img+n-p->data)==p->data_bytes);
}

/* Every written header, followed by its data, parses back to its array. */
static void test_parse_roundtrip(void){
  int i;
  for(i=0; i<NHEADER; i++){
    const struct NumpyHeader *h = &numpyHeaders[i];
    uint64_t count = product(h->ndim, h->shape);
    uint64_t nData;
    unsigned char *img;
    NpkNpy p;
    NpkErr e;
    int rc;
    uint32_t k;
    if( count>1000000 ) continue;        /* too big to build */
    nData = count * (uint64_t)npk_dtype_size(h->dtype);
    img = malloc(h->len + nData + 1);
    CHECK_EQ(npk_npy_header(h->dtype, h->ndim, h->shape, img, h->len),
             h->len);
    fill_pattern(img+h->len, nData, h->dtype);
    memset(&p, 0, sizeof p);
    rc = npk_npy_parse(img, h->len+nData, &p, &e);
    CHECK_EQ(rc, 0);
    if( rc==0 ){
      CHECK_EQ(p.dtype, h->dtype);
      CHECK_EQ(p.big_endian, 0);
      CHECK_EQ(p.ndim, h->ndim);
      for(k=0; k<h->ndim; k++) CHECK_EQ(p.shape[k], h->shape[k]);
      for(; k<NPK_MAX_NDIM; k++) CHECK_EQ(p.shape[k], 0);
      CHECK_EQ(p.count, count);
      CHECK_EQ(p.data_bytes, nData);
      CHECK(p.data==img+h->len);
      check_invariants(img, h->len+nData, &p);
    }else{
      printf("  %s\n", e.msg);
    }
    free(img);
  }
}

/* Images NumPy wrote: versions 2.0 and 3.0, and C-order data. */
static void test_parse_numpy_files(void){
  NpkNpy p;
  NpkErr e;
  const unsigned char *v2 = (const unsigned char*)npyV2;
  const unsigned char *v3 = (const unsigned char*)npyV3;
  int16_t i16[3];
  float f32[2];
  double f64[12];
  int i;

  CHECK_EQ(npk_npy_parse(npyV2, LEN(npyV2), &p, &e), 0);
  CHECK_EQ(p.dtype, NPK_INT16);
  CHECK_EQ(p.ndim, 1);
  CHECK_EQ(p.shape[0], 3);
  CHECK_EQ(p.data_bytes, 6);
  CHECK(p.data==v2+128);
  memcpy(i16, p.data, sizeof i16);
  CHECK(i16[0]==1 && i16[1]==-2 && i16[2]==300);

  CHECK_EQ(npk_npy_parse(npyV3, LEN(npyV3), &p, &e), 0);
  CHECK_EQ(p.dtype, NPK_FLOAT32);
  CHECK_EQ(p.ndim, 1);
  CHECK_EQ(p.shape[0], 2);
  CHECK(p.data==v3+128);
  memcpy(f32, p.data, sizeof f32);
  CHECK(f32[0]==1.5f && f32[1]==-2.0f);

  CHECK_EQ(npk_npy_parse(npyF8x34, LEN(npyF8x34), &p, &e), 0);
  CHECK_EQ(p.dtype, NPK_FLOAT64);
  CHECK_EQ(p.ndim, 2);
  CHECK(p.shape[0]==3 && p.shape[1]==4);
  CHECK_EQ(p.count, 12);
  memcpy(f64, p.data, sizeof f64);
  for(i=0; i<12; i++) CHECK(f64[i]==(double)i);
}

/* Header spellings NumPy reads and other writers (or older NumPy, or
** Python 2) produce. */
static void test_parse_spellings(void){
  static const struct {
    int major;
    const char *dict;
    int dtype;
    int big;
    uint32_t ndim;
    uint64_t d0, d1;
  } aCase[] = {
    /* Double quotes, other key orders, no trailing comma, extra spaces. */
    { 1, "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (3, 4)}",
      NPK_FLOAT32, 0, 2, 3, 4 },
    { 1, "{'shape': (3, 4), 'descr': '<f4', 'fortran_order': False}",
      NPK_FLOAT32, 0, 2, 3, 4 },
    { 1, "{ 'fortran_order' :False ,'shape':( 3 ,4 , ) ,'descr':'<f4' , }",
      NPK_FLOAT32, 0, 2, 3, 4 },
    { 1, "  {'descr':'<f4','fortran_order':False,'shape':(3,4)}",
      NPK_FLOAT32, 0, 2, 3, 4 },
    { 1, "{'descr':\t'<f4',\t'fortran_order': False, 'shape': (12,)}",
      NPK_FLOAT32, 0, 1, 12, 0 },
    /* Python 2's longs. */
    { 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 4L), }",
      NPK_FLOAT32, 0, 2, 3, 4 },
    { 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (12L,), }",
      NPK_FLOAT32, 0, 1, 12, 0 },
    /* Scalars and empty arrays. */
    { 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
      NPK_FLOAT64, 0, 0, 0, 0 },
    { 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 5), }",
      NPK_FLOAT64, 0, 2, 0, 5 },
    /* Bool and one-byte spellings. */
    { 1, "{'descr': '|b1', 'fortran_order': False, 'shape': (4,), }",
      NPK_BOOL, 0, 1, 4, 0 },
    { 1, "{'descr': '?', 'fortran_order': False, 'shape': (4,), }",
      NPK_BOOL, 0, 1, 4, 0 },
    { 1, "{'descr': '|?', 'fortran_order': False, 'shape': (4,), }",
      NPK_BOOL, 0, 1, 4, 0 },
    { 1, "{'descr': '>b1', 'fortran_order': False, 'shape': (4,), }",
      NPK_BOOL, 0, 1, 4, 0 },
    { 1, "{'descr': '<u1', 'fortran_order': False, 'shape': (4,), }",
      NPK_UINT8, 0, 1, 4, 0 },
    { 1, "{'descr': '>i1', 'fortran_order': False, 'shape': (4,), }",
      NPK_INT8, 0, 1, 4, 0 },
    { 1, "{'descr': '=u1', 'fortran_order': False, 'shape': (4,), }",
      NPK_UINT8, 0, 1, 4, 0 },
    /* Byte orders of wider types ('=' is this machine's: little-endian on
    ** every platform the tests run on, checked below). */
    { 1, "{'descr': '=i4', 'fortran_order': False, 'shape': (4,), }",
      NPK_INT32, 0, 1, 4, 0 },
    { 1, "{'descr': 'i4', 'fortran_order': False, 'shape': (4,), }",
      NPK_INT32, 0, 1, 4, 0 },
    { 1, "{'descr': '>i4', 'fortran_order': False, 'shape': (4,), }",
      NPK_INT32, 1, 1, 4, 0 },
    { 1, "{'descr': '>c16', 'fortran_order': False, 'shape': (4,), }",
      NPK_COMPLEX128, 1, 1, 4, 0 },
    { 1, "{'descr': '>f2', 'fortran_order': False, 'shape': (4,), }",
      NPK_FLOAT16, 1, 1, 4, 0 },
    /* Fortran order where it is the same bytes as C order. */
    { 1, "{'descr': '<i2', 'fortran_order': True, 'shape': (6,), }",
      NPK_INT16, 0, 1, 6, 0 },
    { 1, "{'descr': '<i2', 'fortran_order': True, 'shape': (1, 6), }",
      NPK_INT16, 0, 2, 1, 6 },
    { 1, "{'descr': '<i2', 'fortran_order': True, 'shape': (6, 1), }",
      NPK_INT16, 0, 2, 6, 1 },
    { 1, "{'descr': '<i2', 'fortran_order': True, 'shape': (0, 6), }",
      NPK_INT16, 0, 2, 0, 6 },
    { 1, "{'descr': '<i2', 'fortran_order': True, 'shape': (), }",
      NPK_INT16, 0, 0, 0, 0 },
    /* Version 3.0: UTF-8, same syntax. */
    { 3, "{'descr': '<u8', 'fortran_order': False, 'shape': (2, 2), }",
      NPK_UINT64, 0, 2, 2, 2 },
  };
  const uint16_t one = 1;
  int i;
  CHECK(*(const unsigned char*)&one==1);    /* the '=' cases assume it */
  for(i=0; i<(int)(sizeof aCase/sizeof aCase[0]); i++){
    NpkNpy p;
    NpkErr e;
    uint64_t shape[2];
    uint64_t nData;
    int rc;
    shape[0] = aCase[i].d0;
    shape[1] = aCase[i].d1;
    nData = product(aCase[i].ndim, shape)
          * (uint64_t)npk_dtype_size(aCase[i].dtype);
    rc = parse_dict(aCase[i].major, aCase[i].dict, (size_t)nData, &p, &e);
    if( rc ) printf("  case %d: %s\n", i, e.msg);
    CHECK_EQ(rc, 0);
    if( rc ) continue;
    CHECK_EQ(p.dtype, aCase[i].dtype);
    CHECK_EQ(p.big_endian, aCase[i].big);
    CHECK_EQ(p.ndim, aCase[i].ndim);
    if( p.ndim>0 ) CHECK_EQ(p.shape[0], aCase[i].d0);
    if( p.ndim>1 ) CHECK_EQ(p.shape[1], aCase[i].d1);
    CHECK_EQ(p.data_bytes, nData);
  }
}

/* Headers padded the way NumPy before 1.9 did (to 16 bytes) still parse:
** the data need not start on a 64-byte boundary. */
static void test_parse_old_alignment(void){
  unsigned char data[6] = { 1, 0, 2, 0, 3, 0 };
  size_t n;
  NpkNpy p;
  NpkErr e;
  unsigned char *img = build_align(1,
      "{'descr': '<i2', 'fortran_order': False, 'shape': (3,), }",
      data, sizeof data, 16, &n);
  CHECK_EQ(n % 16, 6);
  CHECK((n-6) % 64!=0);
  CHECK_EQ(npk_npy_parse(img, n, &p, &e), 0);
  CHECK_EQ(p.count, 3);
  CHECK(p.data && memcmp(p.data, data, 6)==0);
  free(img);
}

/* ---------------------------------------------------------- big-endian */

static void test_big_endian(void){
  NpkNpy p;
  NpkErr e;
  double f64[2];
  float c64[4];
  unsigned char buf[64];

  CHECK_EQ(npk_npy_parse(npyBigF8, LEN(npyBigF8), &p, &e), 0);
  CHECK_EQ(p.dtype, NPK_FLOAT64);
  CHECK_EQ(p.big_endian, 1);
  CHECK_EQ(p.count, 2);
  npk_npy_swap(f64, p.data, p.count, p.dtype);
  CHECK(f64[0]==1.0 && f64[1]==-2.5);

  /* Complex: each float swapped on its own, real part still first. */
  CHECK_EQ(npk_npy_parse(npyBigC8, LEN(npyBigC8), &p, &e), 0);
  CHECK_EQ(p.dtype, NPK_COMPLEX64);
  CHECK_EQ(p.big_endian, 1);
  CHECK_EQ(p.count, 2);
  memcpy(buf, p.data, 16);
  npk_npy_swap(buf, buf, p.count, p.dtype);      /* in place */
  memcpy(c64, buf, 16);
  CHECK(c64[0]==1.0f && c64[1]==2.0f && c64[2]==0.0f && c64[3]==-0.5f);
}

/* The swap of every width, in place and not, and on unaligned data. */
static void test_swap(void){
  static const unsigned char src[17] = {
    0x01,0x02,0x03,0x04,0x05,0x06,0x07,0x08,
    0x09,0x0a,0x0b,0x0c,0x0d,0x0e,0x0f,0x10, 0x11 };
  unsigned char dst[40];
  unsigned char back[40];
  int dt;

  npk_npy_swap(dst, src, 2, NPK_INT16);
  CHECK(memcmp(dst, "\002\001\004\003", 4)==0);
  npk_npy_swap(dst, src, 1, NPK_UINT32);
  CHECK(memcmp(dst, "\004\003\002\001", 4)==0);
  npk_npy_swap(dst, src, 1, NPK_FLOAT64);
  CHECK(memcmp(dst, "\010\007\006\005\004\003\002\001", 8)==0);
  npk_npy_swap(dst, src, 1, NPK_COMPLEX64);
  CHECK(memcmp(dst, "\004\003\002\001\010\007\006\005", 8)==0);
  npk_npy_swap(dst, src, 1, NPK_COMPLEX128);
  CHECK(memcmp(dst, "\010\007\006\005\004\003\002\001"
                    "\020\017\016\015\014\013\012\011", 16)==0);
  /* One-byte types copy; an unknown code touches nothing. */
  memset(dst, 0, sizeof dst);
  npk_npy_swap(dst, src, 3, NPK_UINT8);
  CHECK(memcmp(dst, src, 3)==0 && dst[3]==0);
  npk_npy_swap(dst, src, 3, 99);
  CHECK(memcmp(dst, src, 3)==0 && dst[3]==0);
  npk_npy_swap(dst, src, 0, NPK_FLOAT64);

  /* Swapping twice is the identity for every type, on unaligned buffers
  ** and in place. */
  for(dt=0; dt<NPK_NDTYPE; dt++){
    int sz = npk_dtype_size(dt);
    unsigned char *u = dst+1;            /* deliberately unaligned */
    memcpy(u, src, 16);
    npk_npy_swap(back+3, u, (uint64_t)(16/sz), dt);
    npk_npy_swap(back+3, back+3, (uint64_t)(16/sz), dt);
    CHECK(memcmp(back+3, src, 16)==0);
    if( sz>1 ) CHECK(memcmp(u, src, 16)==0);   /* source untouched */
  }
}

/* ------------------------------------------------------------ refusals */

static void expect_refusal(int major, const char *dict, size_t ndata,
                           const char *frag1, const char *frag2){
  NpkNpy p;
  NpkErr e;
  int rc;
  memset(&e, 'x', sizeof e);
  rc = parse_dict(major, dict, ndata, &p, &e);
  CHECK(rc!=0);
  if( rc==0 ){
    printf("  accepted: %s\n", dict);
    return;
  }
  CHECK_HAS(e.msg, "npy: ");
  CHECK_HAS(e.msg, frag1);
  if( frag2 ) CHECK_HAS(e.msg, frag2);
}

static void test_refuse_dtypes(void){
  static const struct { const char *descr; const char *frag; } aBad[] = {
    { "'|O'",                    "objects" },
    { "'<U5'",                   "strings" },
    { "'|S3'",                   "strings" },
    { "'|a3'",                   "strings" },
    { "'<M8[ns]'",               "datetimes" },
    { "'<m8[s]'",                "timedeltas" },
    { "'|V8'",                   "void" },
    { "'<f16'",                  "float" },
    { "'<c32'",                  "complex" },
    { "'<i16'",                  "integer" },
    { "'<b2'",                   "bool" },
    { "'<f'",                    "float" },
    { "'f4 '",                   "float" },
    { "'<x4'",                   "unknown" },
    { "''",                      "empty" },
    { "'<'",                     "empty" },
    { "'float32'",               "float" },
    { "'<f4<'",                  "float" },
  };
  char dict[256];
  int i;
  for(i=0; i<(int)(sizeof aBad/sizeof aBad[0]); i++){
    char name[64];
    snprintf(dict, sizeof dict,
             "{'descr': %s, 'fortran_order': False, 'shape': (3,), }",
             aBad[i].descr);
    /* The message names the descr, quotes included. */
    snprintf(name, sizeof name, "dtype %s", aBad[i].descr);
    expect_refusal(1, dict, 3*8, name, aBad[i].frag);
  }
  /* Structured and sub-array descrs, quoted in the message. */
  expect_refusal(1, "{'descr': [('x', '<f4'), ('y', '<i2')], "
                 "'fortran_order': False, 'shape': (3,), }", 18,
                 "dtype [('x', '<f4')", "structured");
  expect_refusal(1, "{'descr': [('a]\\')', '<f4')], "
                 "'fortran_order': False, 'shape': (3,), }", 12,
                 "dtype [", "structured");
  expect_refusal(1, "{'descr': ('<f4', (2,)), "
                 "'fortran_order': False, 'shape': (3,), }", 24,
                 "dtype ('<f4'", "sub-array");
  /* A multi-byte type without a byte order. */
  expect_refusal(1, "{'descr': '|f4', 'fortran_order': False, "
                 "'shape': (3,), }", 12, "'|f4'", "byte order");
  /* Not a string at all. */
  expect_refusal(1, "{'descr': 5, 'fortran_order': False, "
                 "'shape': (3,), }", 12, "quoted string", 0);
  /* Long descrs are cut short in the message, and unprintable bytes
  ** replaced, so the message stays readable. */
  expect_refusal(1, "{'descr': '<U5\001xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                 "xxxxxxxxxxxxxxxxxxxxx', 'fortran_order': False, "
                 "'shape': (3,), }", 12, "'<U5?xxx", "...' is not supported");
}

/* Fortran order is read and rewritten in C order, as np.load would give
** the array: 2-D from np.save itself, and 3-D against an index formula. */
static void test_fortran_to_c(void){
  NpkNpy p;
  NpkErr e;
  int16_t out[6];
  CHECK_EQ(npk_npy_parse(npyFortran, LEN(npyFortran), &p, &e), 0);
  CHECK_EQ(p.fortran, 1);
  CHECK_EQ(p.ndim, 2);
  npk_npy_to_c(out, &p);
  for(int i=0; i<6; i++) CHECK_EQ(out[i], i);

  /* shape (2, 3, 4): element (i, j, k) is at i + 2j + 6k in Fortran
  ** order and at 12i + 4j + k in C order. */
  enum { D0 = 2, D1 = 3, D2 = 4 };
  static int32_t f[D0*D1*D2], c[D0*D1*D2];
  for(int i=0; i<D0; i++) for(int j=0; j<D1; j++) for(int k=0; k<D2; k++)
    f[i + D0*j + D0*D1*k] = 100*i + 10*j + k;
  memset(&p, 0, sizeof p);
  p.dtype = NPK_INT32;
  p.ndim = 3;
  p.shape[0] = D0; p.shape[1] = D1; p.shape[2] = D2;
  p.count = D0*D1*D2;
  p.data = (const unsigned char*)f;
  p.data_bytes = sizeof f;
  p.fortran = 1;
  npk_npy_to_c(c, &p);
  int bad = 0;
  for(int i=0; i<D0; i++) for(int j=0; j<D1; j++) for(int k=0; k<D2; k++)
    bad += c[D1*D2*i + D2*j + k] != 100*i + 10*j + k;
  CHECK_EQ(bad, 0);
}

static void test_refuse_fortran(void){
  /* Python's other truths are not bools to NumPy either. */
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': 1, "
                 "'shape': (3,), }", 12, "True or False", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': Falsey, "
                 "'shape': (3,), }", 12, "True or False", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': false, "
                 "'shape': (3,), }", 12, "True or False", 0);
}

static void test_refuse_data_size(void){
  unsigned char data[16] = { 0 };
  size_t n;
  NpkNpy p;
  NpkErr e;
  const char *dict = "{'descr': '<f4', 'fortran_order': False, "
                     "'shape': (3,), }";
  unsigned char *img;

  img = build(dict, data, 13, &n);
  CHECK(npk_npy_parse(img, n, &p, &e)!=0);
  CHECK_HAS(e.msg, "npy: 13 bytes of data, shape needs 12");
  free(img);

  img = build(dict, data, 11, &n);
  CHECK(npk_npy_parse(img, n, &p, &e)!=0);
  CHECK_HAS(e.msg, "npy: 11 bytes of data, shape needs 12");
  free(img);

  img = build(dict, data, 0, &n);
  CHECK(npk_npy_parse(img, n, &p, &e)!=0);
  CHECK_HAS(e.msg, "npy: 0 bytes of data, shape needs 12");
  free(img);

  /* An empty array has no data; one stray byte is still an error. */
  img = build("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }",
              data, 1, &n);
  CHECK(npk_npy_parse(img, n, &p, &e)!=0);
  CHECK_HAS(e.msg, "1 bytes of data, shape needs 0");
  free(img);
}

static void test_refuse_shapes(void){
  char dict[512];
  size_t k;
  int i, nd;
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (3), }", 12, "not a tuple", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': 3, }", 12, "tuple", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': [3], }", 12, "tuple", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (-3,), }", 12, "negative", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (3,,), }", 12, "dimension", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (,), }", 0, "dimension", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (3 4), }", 48, "',' or ')'", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (3.0,), }", 12, "',' or ')'", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (0x3,), }", 12, "after a dimension", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (03,), }", 12, "leading zero", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (3,", 12, "ends where", 0);
  /* 'L' only in the versions Python 2 could have written. */
  expect_refusal(3, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (3L,), }", 12, "after a dimension", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (3l,), }", 12, "after a dimension", 0);
  /* Sizes beyond int64, in one dimension or in the product; NumPy refuses
  ** (2**62, 0) of int64 too ("array is too big"). */
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (9223372036854775808,), }", 0, "too large", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (99999999999999999999999,), }", 0, "too large", 0);
  expect_refusal(1, "{'descr': '<u1', 'fortran_order': False, "
                 "'shape': (4294967296, 4294967296), }", 0, "too large", 0);
  expect_refusal(1, "{'descr': '<i8', 'fortran_order': False, "
                 "'shape': (4611686018427387904, 0), }", 0, "too large", 0);
  expect_refusal(1, "{'descr': '<i8', 'fortran_order': False, "
                 "'shape': (1152921504606846976,), }", 0, "too large", 0);
  /* 32 dimensions parse; 33 do not. */
  for(nd=32; nd<=33; nd++){
    NpkNpy p;
    NpkErr e;
    k = (size_t)snprintf(dict, sizeof dict,
                 "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for(i=0; i<nd; i++) k += (size_t)snprintf(dict+k, sizeof dict-k, "1, ");
    snprintf(dict+k, sizeof dict-k, "), }");
    if( nd==32 ){
      CHECK_EQ(parse_dict(1, dict, 4, &p, &e), 0);
      CHECK_EQ(p.ndim, 32);
    }else{
      expect_refusal(1, dict, 4, "more than 32 dimensions", 0);
    }
  }
}

static void test_refuse_dicts(void){
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False}", 12,
                 "lacks 'shape'", 0);
  expect_refusal(1, "{'shape': (3,), 'fortran_order': False}", 12,
                 "lacks 'descr'", 0);
  expect_refusal(1, "{'shape': (3,), 'descr': '<f4'}", 12,
                 "lacks 'fortran_order'", 0);
  expect_refusal(1, "{}", 0, "lacks 'descr'", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (3,), 'descr': '<f8'}", 12, "'descr' appears twice",
                 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (3,), 'extra': 1}", 12, "unexpected key 'extra'", 0);
  expect_refusal(1, "{'Descr': '<f4', 'fortran_order': False, "
                 "'shape': (3,), }", 12, "unexpected key 'Descr'", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (3,), }}", 12, "padding after", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (3,), } x", 12, "padding after", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (3,),, }", 12, "quoted string", 0);
  expect_refusal(1, "{'descr': '<f4' 'fortran_order': False, "
                 "'shape': (3,), }", 12, "',' or '}'", 0);
  expect_refusal(1, "{'descr' '<f4', 'fortran_order': False, "
                 "'shape': (3,), }", 12, "':'", 0);
  expect_refusal(1, "{'descr\": '<f4', 'fortran_order': False, "
                 "'shape': (3,), }", 12, "descr", 0);
  expect_refusal(1, "{'de\\x73cr': '<f4', 'fortran_order': False, "
                 "'shape': (3,), }", 12, "escapes", 0);
  expect_refusal(1, "['descr', '<f4']", 12, "'{'", 0);
  expect_refusal(1, "", 0, "'{'", 0);
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (3,), ", 12, "ends where", 0);
  /* The newline belongs at the very end of the padding. */
  expect_refusal(1, "{'descr': '<f4', 'fortran_order': False,\n"
                 "'shape': (3,), }", 12, "malformed header", 0);
}

static void test_refuse_prefix(void){
  unsigned char img[256];
  NpkNpy p;
  NpkErr e;
  size_t n = LEN(npyF8x34);

  memcpy(img, npyF8x34, 128);
  CHECK(npk_npy_parse("PK\003\004", 4, &p, &e)!=0);
  CHECK_HAS(e.msg, "not a .npy image");
  CHECK(npk_npy_parse(0, 0, &p, &e)!=0);
  CHECK_HAS(e.msg, "not a .npy image");
  CHECK(npk_npy_parse(0, 10, &p, &e)!=0);
  CHECK_HAS(e.msg, "npy: ");
  img[0] = 0x92;
  CHECK(npk_npy_parse(img, n, &p, &e)!=0);
  CHECK_HAS(e.msg, "not a .npy image");
  img[0] = 0x93;

  /* Versions: only 1.0, 2.0 and 3.0 exist. */
  img[6] = 4;
  CHECK(npk_npy_parse(img, 128, &p, &e)!=0);
  CHECK_HAS(e.msg, "version 4.0 is not supported");
  img[6] = 1; img[7] = 1;
  CHECK(npk_npy_parse(img, 128, &p, &e)!=0);
  CHECK_HAS(e.msg, "version 1.1");
  img[6] = 0; img[7] = 0;
  CHECK(npk_npy_parse(img, 128, &p, &e)!=0);
  CHECK_HAS(e.msg, "version 0.0");
  img[6] = 1; img[7] = 0;

  /* A header length beyond the image, or with no newline at its end. */
  img[8] = 0xff; img[9] = 0xff;
  CHECK(npk_npy_parse(img, 128, &p, &e)!=0);
  CHECK_HAS(e.msg, "truncated header");
  img[8] = 117; img[9] = 0;
  CHECK(npk_npy_parse(img, 128, &p, &e)!=0);
  CHECK_HAS(e.msg, "newline");
  img[8] = 0;
  CHECK(npk_npy_parse(img, 10, &p, &e)!=0);
  CHECK_HAS(e.msg, "newline");
}

/* An error is NPK_ERROR with the message in the NpkErr, "npy:" after the
** engine's prefix; success leaves NPK_OK and an empty message. */
static void test_error_report(void){
  static const char notNpy[] = "NUMPY, but no magic";
  NpkNpy p;
  NpkErr e;
  memset(&e, 'x', sizeof e);
  CHECK_EQ(npk_npy_parse(notNpy, sizeof notNpy - 1, &p, &e), NPK_ERROR);
  CHECK_EQ(e.rc, NPK_ERROR);
  CHECK(strncmp(e.msg, "numpack: npy: no", 16)==0);
  CHECK(strncmp(npk_err_text(&e), "npy: no", 7)==0);
  memset(&e, 'x', sizeof e);
  CHECK_EQ(npk_npy_parse(npyV2, LEN(npyV2), &p, &e), NPK_OK);
  CHECK_EQ(e.rc, NPK_OK);
  CHECK_EQ(e.msg[0], 0);
}

/* ---------------------------------------------------- damaged images */

/* Parse IMG (N bytes) and every prefix of it; whatever succeeds must be
** consistent, and if ONLY_WHOLE nothing but the whole image may succeed.
** (Damaged images may legitimately parse short: a shape digit turned to 0
** makes the header alone a whole image.)  The parse works on a malloc'd
** copy of exactly the prefix so that AddressSanitizer sees any read past
** the end.  Returns the number of prefixes that parsed. */
static int parse_prefixes(const unsigned char *img, size_t n, int only_whole){
  size_t len;
  int nOk = 0;
  for(len=0; len<=n; len++){
    unsigned char *copy = malloc(len ? len : 1);
    NpkNpy p;
    NpkErr e;
    int rc;
    memcpy(copy, img, len);
    rc = npk_npy_parse(copy, len, &p, &e);
    if( rc==0 ){
      nOk++;
      check_invariants(copy, len, &p);
      if( only_whole ) CHECK(len==n);
    }else{
      CHECK(strncmp(npk_err_text(&e), "npy: ", 5)==0);
    }
    free(copy);
  }
  return nOk;
}

static void test_truncations(void){
  unsigned char *img;
  size_t n;
  unsigned char data[24];
  fill_pattern(data, sizeof data, NPK_INT16);
  CHECK_EQ(parse_prefixes((const unsigned char*)npyF8x34, LEN(npyF8x34), 1),
           1);
  CHECK_EQ(parse_prefixes((const unsigned char*)npyV2, LEN(npyV2), 1), 1);
  CHECK_EQ(parse_prefixes((const unsigned char*)npyV3, LEN(npyV3), 1), 1);
  CHECK_EQ(parse_prefixes((const unsigned char*)npyBigC8, LEN(npyBigC8), 1),
           1);
  /* An empty array: the header alone is the whole image. */
  img = build("{'descr': '<i2', 'fortran_order': False, 'shape': (0,), }",
              0, 0, &n);
  CHECK_EQ(parse_prefixes(img, n, 1), 1);
  free(img);
  img = build("{'shape': (3L, 4L), \"descr\": '>i2', 'fortran_order': False}",
              data, sizeof data, &n);
  CHECK_EQ(parse_prefixes(img, n, 1), 1);
  free(img);
}

/* Damage the header of a valid image byte by byte: every value at every
** position (whole image), then a set of damaging values with every prefix,
** then random multi-byte damage.  Nothing may crash or read out of bounds,
** and what still parses must be consistent. */
static void test_garbage(void){
  static const unsigned char aSpecial[] = {
    0x00, 0xff, 0x80, '\n', '\'', '"', '\\', '(', ')', '[', ']', '{', '}',
    ',', ':', ' ', 'L', '0', '9', '-', '<', '>', '|', '=', '?',
  };
  const unsigned char *orig = (const unsigned char*)npyF8x34;
  size_t n = LEN(npyF8x34);
  unsigned char *img = malloc(n);
  size_t pos;
  int v;
  int nOk = 0;
  uint32_t seed = 12345;
  int iter;

  for(pos=0; pos<128; pos++){
    for(v=0; v<256; v++){
      NpkNpy p;
      NpkErr e;
      memcpy(img, orig, n);
      img[pos] = (unsigned char)v;
      if( npk_npy_parse(img, n, &p, &e)==0 ){
        nOk++;
        check_invariants(img, n, &p);
      }else{
        CHECK(strncmp(npk_err_text(&e), "npy: ", 5)==0);
      }
    }
  }
  /* At least the 128 cases that rewrite a byte with its own value parse. */
  CHECK(nOk>=128);

  for(pos=0; pos<128; pos++){
    for(v=0; v<(int)sizeof aSpecial; v++){
      memcpy(img, orig, n);
      if( img[pos]==aSpecial[v] ) continue;
      img[pos] = aSpecial[v];
      parse_prefixes(img, n, 0);
    }
  }

  for(iter=0; iter<20000; iter++){
    NpkNpy p;
    NpkErr e;
    int k, nDamage;
    memcpy(img, orig, n);
    seed = seed*1103515245u + 12345u;
    nDamage = 1 + (int)((seed>>16) % 6);
    for(k=0; k<nDamage; k++){
      seed = seed*1103515245u + 12345u;
      pos = (seed>>16) % 128;
      seed = seed*1103515245u + 12345u;
      img[pos] = (seed>>20)&1 ? aSpecial[(seed>>16) % sizeof aSpecial]
                              : (unsigned char)(seed>>16);
    }
    if( npk_npy_parse(img, n, &p, &e)==0 ){
      check_invariants(img, n, &p);
    }
  }
  free(img);
}

/* ------------------------------------------------- NumPy-written files */

static unsigned char *read_file(const char *path, size_t *pn){
  FILE *f = fopen(path, "rb");
  unsigned char *buf = 0;
  size_t cap = 0, n = 0;
  if( f==0 ) return 0;
  for(;;){
    size_t got;
    if( n==cap ){
      cap = cap ? cap*2 : 65536;
      buf = realloc(buf, cap);
    }
    got = fread(buf+n, 1, cap-n, f);
    if( got==0 ) break;
    n += got;
  }
  fclose(f);
  *pn = n;
  return buf ? buf : malloc(1);
}

static int write_file(const char *path, const void *a, size_t n,
                      const void *b, size_t nb){
  FILE *f = fopen(path, "wb");
  int ok;
  if( f==0 ) return 1;
  ok = fwrite(a, 1, n, f)==n && (nb==0 || fwrite(b, 1, nb, f)==nb);
  return (fclose(f)==0 && ok) ? 0 : 1;
}

/*
** DIR/manifest.txt, written by npy_roundtrip.py, has one line per file:
**
**   ok NAME DTYPE NDIM D1 .. Dn     NAME.npy must parse to this, and its
**                                   data, in little-endian C order, must
**                                   equal NAME.raw
**   refuse NAME WORDS...            NAME.npy must be refused with a
**                                   message containing WORDS
*/
static int check_numpy_dir(const char *dir){
  char path[4096];
  char line[1024];
  FILE *f;
  int nFile = 0;
  snprintf(path, sizeof path, "%s/manifest.txt", dir);
  f = fopen(path, "r");
  CHECK(f!=0);
  if( f==0 ){
    printf("  cannot open %s\n", path);
    return 0;
  }
  while( fgets(line, sizeof line, f) ){
    char kind[16], name[256];
    int off = 0;
    unsigned char *img, *raw = 0;
    size_t n, nRaw = 0;
    NpkNpy p;
    NpkErr e;
    int rc;
    line[strcspn(line, "\n")] = 0;
    if( line[0]==0 || line[0]=='#' ) continue;
    if( sscanf(line, "%15s %255s %n", kind, name, &off)!=2 ){
      printf("  bad manifest line: %s\n", line);
      CHECK(0);
      continue;
    }
    nFile++;
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    img = read_file(path, &n);
    CHECK(img!=0);
    if( img==0 ){
      printf("  cannot read %s\n", path);
      continue;
    }
    rc = npk_npy_parse(img, n, &p, &e);
    if( strcmp(kind, "refuse")==0 ){
      CHECK(rc!=0);
      if( rc ){
        CHECK_HAS(e.msg, line+off);
      }else{
        printf("  %s was accepted\n", name);
      }
    }else{
      char zDtype[32];
      unsigned ndim = 0;
      int k, used = 0;
      const char *z = line+off;
      CHECK(strcmp(kind, "ok")==0);
      if( rc ) printf("  %s: %s\n", name, e.msg);
      CHECK_EQ(rc, 0);
      if( sscanf(z, "%31s %u %n", zDtype, &ndim, &used)<2 ){
        CHECK(0);
      }else if( rc==0 ){
        CHECK_EQ(p.dtype, npk_dtype_from_name(zDtype));
        CHECK_EQ(p.ndim, ndim);
        z += used;
        for(k=0; k<(int)ndim && k<NPK_MAX_NDIM; k++){
          unsigned long long d = 0;
          if( sscanf(z, "%llu %n", &d, &used)<1 ){
            CHECK(0);
            break;
          }
          z += used;
          CHECK_EQ(p.shape[k], d);
        }
        snprintf(path, sizeof path, "%s/%s.raw", dir, name);
        raw = read_file(path, &nRaw);
        CHECK(raw!=0);
        if( raw ){
          unsigned char *conv = malloc(p.data_bytes ? p.data_bytes : 1);
          CHECK_EQ(nRaw, p.data_bytes);
          if( p.big_endian ){
            npk_npy_swap(conv, p.data, p.count, p.dtype);
          }else{
            memcpy(conv, p.data, p.data_bytes);
          }
          if( nRaw==p.data_bytes && memcmp(conv, raw, nRaw)!=0 ){
            printf("  %s: data differs\n", name);
            CHECK(0);
          }
          free(conv);
        }
        free(raw);
      }
    }
    free(img);
  }
  fclose(f);
  return nFile;
}

/* Write c_<dtype>_<n>.npy for every dtype and test shape, with the pattern
** data, and c_manifest.txt naming them, for npy_roundtrip.py to load. */
static int write_c_files(const char *dir){
  static const struct { uint32_t ndim; uint64_t shape[3]; } aShape[] = {
    { 0, {0} }, { 1, {0} }, { 1, {5} }, { 2, {3, 4} }, { 3, {2, 3, 4} },
    { 2, {0, 7} },
  };
  char path[4096];
  FILE *m;
  int nFile = 0;
  int dt, s;
  snprintf(path, sizeof path, "%s/c_manifest.txt", dir);
  m = fopen(path, "w");
  CHECK(m!=0);
  if( m==0 ) return 0;
  for(dt=0; dt<NPK_NDTYPE; dt++){
    for(s=0; s<(int)(sizeof aShape/sizeof aShape[0]); s++){
      unsigned char hdr[256];
      uint64_t nData = product(aShape[s].ndim, aShape[s].shape)
                     * (uint64_t)npk_dtype_size(dt);
      unsigned char *data = malloc(nData+1);
      size_t nHdr = npk_npy_header(dt, aShape[s].ndim, aShape[s].shape,
                                   hdr, sizeof hdr);
      uint32_t k;
      CHECK(nHdr>0);
      fill_pattern(data, nData, dt);
      snprintf(path, sizeof path, "%s/c_%s_%d.npy", dir,
               npk_dtype_name(dt), s);
      CHECK_EQ(write_file(path, hdr, nHdr, data, (size_t)nData), 0);
      fprintf(m, "c_%s_%d %s %u", npk_dtype_name(dt), s, npk_dtype_name(dt),
              aShape[s].ndim);
      for(k=0; k<aShape[s].ndim; k++){
        fprintf(m, " %" PRIu64, aShape[s].shape[k]);
      }
      fprintf(m, "\n");
      free(data);
      nFile++;
    }
  }
  CHECK_EQ(fclose(m), 0);
  return nFile;
}

static const char *numpyDir;

static void test_numpy_dir(void){
  int nRead = check_numpy_dir(numpyDir);
  int nWritten = write_c_files(numpyDir);
  CHECK(nRead>0);
  printf("  NPK_NPY_DIR=%s: %d NumPy files checked, %d files written\n",
         numpyDir, nRead, nWritten);
}

int main(void){
  RUN(test_header_matches_numpy);
  RUN(test_header_bad_args);
  RUN(test_parse_roundtrip);
  RUN(test_parse_numpy_files);
  RUN(test_parse_spellings);
  RUN(test_parse_old_alignment);
  RUN(test_big_endian);
  RUN(test_swap);
  RUN(test_refuse_dtypes);
  RUN(test_fortran_to_c);
  RUN(test_refuse_fortran);
  RUN(test_refuse_data_size);
  RUN(test_refuse_shapes);
  RUN(test_refuse_dicts);
  RUN(test_refuse_prefix);
  RUN(test_error_report);
  RUN(test_truncations);
  RUN(test_garbage);
  numpyDir = getenv("NPK_NPY_DIR");
  if( numpyDir && numpyDir[0] ){
    RUN(test_numpy_dir);
  }else{
    printf("NPK_NPY_DIR not set: NumPy-written files not checked "
           "(see test/npy_roundtrip.py)\n");
  }
  return CTEST_END();
}
