/*
** dtype.c — the element types of a NumPack array: the table of catalog
** codes with their sizes, NumPy names and .npy descr strings, the parser
** for dtype names given in SQL, and exact IEEE 754 half-precision
** conversions (float16 has no C type we can rely on).
**
** This file has no SQLite dependency; it is part of the store engine.
*/
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dtype.h"

/* One row per catalog code, in code order, so the code is the index. */
static const struct NpkDtypeDef {
  const char *z_name;  /* NumPy's name */
  const char *z_short; /* NumPy's kind+size code, without byte order */
  const char *z_descr; /* descr as written in a little-endian .npy header */
  int n_byte;          /* item size */
} npk_dtypes[NPK_NDTYPE] = {
    {"bool", "b1", "|b1", 1},      {"uint8", "u1", "|u1", 1},
    {"uint16", "u2", "<u2", 2},    {"uint32", "u4", "<u4", 4},
    {"uint64", "u8", "<u8", 8},    {"int8", "i1", "|i1", 1},
    {"int16", "i2", "<i2", 2},     {"int32", "i4", "<i4", 4},
    {"int64", "i8", "<i8", 8},     {"float16", "f2", "<f2", 2},
    {"float32", "f4", "<f4", 4},   {"float64", "f8", "<f8", 8},
    {"complex64", "c8", "<c8", 8}, {"complex128", "c16", "<c16", 16},
};

/* Python's and NumPy's aliases for the default types of each kind, which
** users write as often as the sized names.  "int" is int64 and "complex"
** complex128 as on every 64-bit Linux NumPy; single-letter type characters
** ('b', 'B', 'h', ...) are not accepted because their meaning varies by
** platform and 'b' (int8) is easily mistaken for bool. */
static const struct NpkDtypeAlias {
  const char *z_alias;
  int dtype;
} npk_aliases[] = {
    {"float", NPK_FLOAT64},  {"double", NPK_FLOAT64},
    {"single", NPK_FLOAT32}, {"half", NPK_FLOAT16},
    {"int", NPK_INT64},      {"complex", NPK_COMPLEX128},
};

static int npk_valid_code(int dtype) {
  return dtype >= 0 && dtype < NPK_NDTYPE;
}

int npk_dtype_size(int dtype) {
  return npk_valid_code(dtype) ? npk_dtypes[dtype].n_byte : 0;
}

const char *npk_dtype_name(int dtype) {
  return npk_valid_code(dtype) ? npk_dtypes[dtype].z_name : 0;
}

const char *npk_dtype_descr(int dtype) {
  return npk_valid_code(dtype) ? npk_dtypes[dtype].z_descr : 0;
}

/*
** Accepted spellings, all case-sensitive as NumPy's are:
**
**   NumPy names     bool uint8 uint16 uint32 uint64 int8 int16 int32 int64
**                   float16 float32 float64 complex64 complex128
**   aliases         float double (float64), single (float32), half
**                   (float16), int (int64), complex (complex128)
**   short codes     b1 u1 u2 u4 u8 i1 i2 i4 i8 f2 f4 f8 c8 c16
**   descr forms     a short code prefixed by '<' (little-endian, any type)
**                   or '|' (no byte order; only the one-byte types), as
**                   .npy headers write them: "<f4", "|u1"
**
** Big-endian descrs (">f4") and native order ("=f4") return -1: the store
** is little-endian on disk, and accepting them would silently reinterpret
** the bytes.
*/
int npk_dtype_from_name(const char *name) {
  int i;
  if (name == 0) return -1;
  for (i = 0; i < NPK_NDTYPE; i++) {
    if (strcmp(name, npk_dtypes[i].z_name) == 0) return i;
    if (strcmp(name, npk_dtypes[i].z_short) == 0) return i;
  }
  for (i = 0; i < (int)(sizeof(npk_aliases) / sizeof(npk_aliases[0])); i++) {
    if (strcmp(name, npk_aliases[i].z_alias) == 0) return npk_aliases[i].dtype;
  }
  if (name[0] == '<' || name[0] == '|') {
    for (i = 0; i < NPK_NDTYPE; i++) {
      if (strcmp(name + 1, npk_dtypes[i].z_short) != 0) continue;
      if (name[0] == '|' && npk_dtypes[i].n_byte != 1) return -1;
      return i;
    }
  }
  return -1;
}

int npk_dtype_is_integer(int dtype) {
  return dtype >= NPK_BOOL && dtype <= NPK_INT64;
}

int npk_dtype_is_float(int dtype) {
  return dtype >= NPK_FLOAT16 && dtype <= NPK_FLOAT64;
}

long long npk_bool_bad(const void *p, unsigned long long n) {
  const unsigned char *b = (const unsigned char *)p;
  unsigned long long i = 0;
  unsigned char any = 0;
  /* Whole blocks first: the common all-valid case without a branch per
  ** byte. */
  for (; i + 64 <= n; i += 64) {
    for (int k = 0; k < 64; k++) any |= b[i + k];
    if (any > 1) break;
  }
  for (; i < n; i++) {
    if (b[i] > 1) return (long long)i;
  }
  return -1;
}

/*
** Half precision: 1 sign bit, 5 exponent bits (bias 15), 10 fraction bits.
** Both conversions work on the bit patterns rather than with floating
** arithmetic, so that they are exact whatever the FPU's rounding mode and
** so that NaN payloads survive (a float16 NaN comes back with the same
** fraction bits after a trip through double).
*/
static uint64_t npk_double_bits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof(u));
  return u;
}

static double npk_bits_double(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof(d));
  return d;
}

double npk_half_to_double(unsigned short h) {
  uint64_t sign = (uint64_t)(h >> 15) << 63;
  int exp = (h >> 10) & 0x1f;
  uint64_t frac = h & 0x3ff;
  if (exp == 0x1f) {
    /* Infinity or NaN: keep the fraction as the top of the double's. */
    return npk_bits_double(sign | ((uint64_t)0x7ff << 52) | (frac << 42));
  }
  if (exp == 0) {
    int shift = 0;
    if (frac == 0) return npk_bits_double(sign);
    /* Subnormal half: every one is a normal double.  Shift the fraction
    ** left until its leading 1 reaches the implicit-bit position. */
    while ((frac & 0x400) == 0) {
      frac <<= 1;
      shift++;
    }
    frac &= 0x3ff;
    exp = 1 - shift;
  }
  return npk_bits_double(sign | ((uint64_t)(exp - 15 + 1023) << 52) |
                         (frac << 42));
}

/*
** Round SIG right by SHIFT bits (1 <= SHIFT <= 63) to nearest, ties to
** even.  A carry out of the fraction is fine for the callers: it moves
** the result to the next binade (or to infinity), which is what IEEE
** rounding does.
*/
static uint64_t npk_round_shift(uint64_t sig, int shift) {
  uint64_t kept = sig >> shift;
  uint64_t rest = sig & (((uint64_t)1 << shift) - 1);
  uint64_t half = (uint64_t)1 << (shift - 1);
  if (rest > half || (rest == half && (kept & 1))) kept++;
  return kept;
}

unsigned short npk_double_to_half(double d) {
  uint64_t u = npk_double_bits(d);
  unsigned short sign = (unsigned short)((u >> 63) << 15);
  int exp = (int)((u >> 52) & 0x7ff);
  uint64_t frac = u & (((uint64_t)1 << 52) - 1);
  int e;

  if (exp == 0x7ff) {
    if (frac == 0) return sign | 0x7c00;
    /* NaN: keep the top fraction bits; if they are all zero the payload
    ** lived only in the low bits, and a quiet NaN stands in for it. */
    frac >>= 42;
    return sign | 0x7c00 | (frac ? (unsigned short)frac : 0x200);
  }
  if (exp == 0) {
    /* Zero or a double subnormal (< 2^-1022): far below half's smallest
    ** subnormal (2^-24), so it rounds to a signed zero. */
    return sign;
  }
  e = exp - 1023;                   /* unbiased exponent */
  if (e > 15) return sign | 0x7c00; /* >= 65536: overflows to inf */
  if (e >= -14) {
    /* Normal range.  Rounding 1.frac to 10 fraction bits may carry into
    ** the exponent, up to 0x7c00 (inf) for values >= 65520. */
    uint64_t r = npk_round_shift(((uint64_t)(e + 15) << 52) | frac, 42);
    return sign | (unsigned short)r;
  } else {
    /* Subnormal range: the result is round(value / 2^-24) with the full
    ** 53-bit significand.  value = sig * 2^(e-52), so shift by 28-e.  A
    ** carry to 0x400 gives the smallest normal, which is correct. */
    uint64_t sig = frac | ((uint64_t)1 << 52);
    int shift = 28 - e;           /* >= 43 since e <= -15 */
    if (shift >= 64) return sign; /* < 2^-35: rounds to zero */
    return sign | (unsigned short)npk_round_shift(sig, shift);
  }
}

const char *npk_row_shape_text(const uint64_t *shape, uint32_t ndim, int numpy,
                               char *buf, size_t cap) {
  size_t n = 1;
  if (cap < 4) return "";
  buf[0] = '(';
  buf[1] = 0;
  for (uint32_t d = 1; d < ndim && n + 24 < cap; d++) {
    snprintf(buf + n, cap - n, "%s%llu",
             d == 1  ? ""
             : numpy ? ", "
                     : ",",
             (unsigned long long)shape[d]);
    n += strlen(buf + n);
  }
  snprintf(buf + n, cap - n, numpy && ndim == 2 ? ",)" : ")");
  return buf;
}
