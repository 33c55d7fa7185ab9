/*
** element.c — one array element as an SQL value and back.
**
** Reading: bool and integers are INTEGER; a uint64 above 2^63-1 (which no
** SQLite INTEGER can hold) is TEXT with its exact decimal digits; floats
** are REAL (float16 and float32 widen exactly).  Complex elements have no
** SQL scalar form and are read through the row BLOB only.
**
** Writing is strict, as NumPy's safe casting: an INTEGER must fit the type;
** a REAL goes into an integer column only when it is a whole number in
** range; TEXT only as the decimal digits of a uint64; NULL and BLOB never.
** Floats take INTEGER or REAL; a value beyond float32's or float16's range
** is refused rather than turned into infinity.
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numpack_int.h"
#include "element.h"

static void put_le(unsigned char *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

void npk_element_result(sqlite3_context *ctx, int dtype,
                        const unsigned char *p) {
  switch (dtype) {
    case NPK_BOOL: sqlite3_result_int(ctx, p[0] != 0); break;
    case NPK_UINT8:
    case NPK_UINT16:
    case NPK_UINT32: {
      int n = npk_dtype_size(dtype);
      sqlite3_result_int64(ctx, (sqlite3_int64)get_le(p, n));
      break;
    }
    case NPK_UINT64: {
      uint64_t v = get_le(p, 8);
      if (v <= (uint64_t)INT64_MAX) {
        sqlite3_result_int64(ctx, (sqlite3_int64)v);
      } else {
        char buf[24];
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
        sqlite3_result_text(ctx, buf, -1, SQLITE_TRANSIENT);
      }
      break;
    }
    case NPK_INT8: sqlite3_result_int(ctx, (signed char)p[0]); break;
    case NPK_INT16: sqlite3_result_int(ctx, (int16_t)get_le(p, 2)); break;
    case NPK_INT32: sqlite3_result_int(ctx, (int32_t)get_le(p, 4)); break;
    case NPK_INT64:
      sqlite3_result_int64(ctx, (sqlite3_int64)get_le(p, 8));
      break;
    case NPK_FLOAT16:
      sqlite3_result_double(ctx,
                            npk_half_to_double((unsigned short)get_le(p, 2)));
      break;
    case NPK_FLOAT32: {
      float f;
      memcpy(&f, p, 4);
      sqlite3_result_double(ctx, f);
      break;
    }
    case NPK_FLOAT64: {
      double d;
      memcpy(&d, p, 8);
      sqlite3_result_double(ctx, d);
      break;
    }
    default: sqlite3_result_null(ctx); break;
  }
}

/* The exact integer value of V, if it has one: INTEGER, a whole REAL, or
** decimal TEXT (for uint64 values above INT64_MAX).  Sets *NEG for values
** below zero; the magnitude goes to *MAG. */
static int exact_integer(sqlite3_value *v, int allow_text, int *neg,
                         uint64_t *mag) {
  switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER: {
      sqlite3_int64 i = sqlite3_value_int64(v);
      *neg = i < 0;
      *mag = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
      return 1;
    }
    case SQLITE_FLOAT: {
      double d = sqlite3_value_double(v);
      if (!(d == floor(d)) || fabs(d) >= 18446744073709551616.0) return 0;
      *neg = d < 0;
      *mag = (uint64_t)fabs(d);
      return 1;
    }
    case SQLITE_TEXT: {
      const unsigned char *s = sqlite3_value_text(v);
      uint64_t x = 0;
      if (!allow_text || !s || !*s) return 0;
      for (; *s; s++) {
        if (*s < '0' || *s > '9' || x > (UINT64_MAX - (*s - '0')) / 10)
          return 0;
        x = x * 10 + (uint64_t)(*s - '0');
      }
      *neg = 0;
      *mag = x;
      return 1;
    }
    default: return 0;
  }
}

int npk_element_encode(sqlite3_value *v, int dtype, unsigned char *out) {
  int type = sqlite3_value_type(v), neg, n = npk_dtype_size(dtype);
  uint64_t mag;
  if (type == SQLITE_NULL || type == SQLITE_BLOB) return SQLITE_MISMATCH;
  switch (dtype) {
    case NPK_BOOL:
      if (!exact_integer(v, 0, &neg, &mag) || (neg && mag) || mag > 1)
        return SQLITE_MISMATCH;
      out[0] = (unsigned char)mag;
      return SQLITE_OK;
    case NPK_UINT8:
    case NPK_UINT16:
    case NPK_UINT32:
    case NPK_UINT64: {
      uint64_t max = n == 8 ? UINT64_MAX : (UINT64_C(1) << (8 * n)) - 1;
      if (!exact_integer(v, dtype == NPK_UINT64, &neg, &mag))
        return SQLITE_MISMATCH;
      if ((neg && mag) || mag > max) return SQLITE_RANGE;
      put_le(out, mag, n);
      return SQLITE_OK;
    }
    case NPK_INT8:
    case NPK_INT16:
    case NPK_INT32:
    case NPK_INT64: {
      uint64_t lim = UINT64_C(1) << (8 * n - 1);
      if (!exact_integer(v, 0, &neg, &mag)) return SQLITE_MISMATCH;
      if (neg ? mag > lim : mag > lim - 1) return SQLITE_RANGE;
      put_le(out, neg ? (uint64_t)0 - mag : mag, n);
      return SQLITE_OK;
    }
    case NPK_FLOAT16:
    case NPK_FLOAT32:
    case NPK_FLOAT64: {
      double d;
      if (type != SQLITE_INTEGER && type != SQLITE_FLOAT)
        return SQLITE_MISMATCH;
      d = sqlite3_value_double(v);
      if (dtype == NPK_FLOAT64) {
        memcpy(out, &d, 8);
      } else if (dtype == NPK_FLOAT32) {
        float f = (float)d;
        if (isinf(f) && !isinf(d)) return SQLITE_RANGE;
        memcpy(out, &f, 4);
      } else {
        unsigned short h = npk_double_to_half(d);
        if ((h & 0x7C00) == 0x7C00 && !(h & 0x3FF) && !isinf(d))
          return SQLITE_RANGE;
        put_le(out, h, 2);
      }
      return SQLITE_OK;
    }
    default: return SQLITE_MISMATCH;
  }
}

const char *npk_column_type(int dtype) {
  if (npk_dtype_is_float(dtype)) return "REAL";
  if (dtype == NPK_UINT64) return ""; /* INTEGER or, above 2^63-1, TEXT */
  if (npk_dtype_is_integer(dtype)) return "INTEGER";
  return "BLOB";
}
