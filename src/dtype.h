/*
** dtype.h — the 14 element types a NumPack array can hold: their catalog
** codes, item sizes, names and NumPy .npy descr strings.
*/
#ifndef NPK_DTYPE_H
#define NPK_DTYPE_H

#include <stddef.h>
#include <stdint.h>

/* Dtype codes, exactly as stored in the catalog (SPEC §2). */
#define NPK_BOOL       0
#define NPK_UINT8      1
#define NPK_UINT16     2
#define NPK_UINT32     3
#define NPK_UINT64     4
#define NPK_INT8       5
#define NPK_INT16      6
#define NPK_INT32      7
#define NPK_INT64      8
#define NPK_FLOAT16    9
#define NPK_FLOAT32    10
#define NPK_FLOAT64    11
#define NPK_COMPLEX64  12
#define NPK_COMPLEX128 13
#define NPK_NDTYPE     14

/* Item size in bytes, or 0 if DTYPE is not a known code. */
int npk_dtype_size(int dtype);
/* NumPy's name ("float32"), or NULL if DTYPE is not a known code. */
const char *npk_dtype_name(int dtype);
/* NumPy's little-endian descr ("<f4", "|u1"), or NULL. */
const char *npk_dtype_descr(int dtype);
/* The code for a NumPy name ("float32", "f4", "uint8", ...), or -1. */
int npk_dtype_from_name(const char *name);
/* 1 for the integer and bool codes, 0 otherwise. */
int npk_dtype_is_integer(int dtype);
/* 1 for float16/32/64. */
int npk_dtype_is_float(int dtype);

/* Bool elements are one byte, 0 or 1, as NumPy writes them.  The index of
** the first of the N bytes at P that is neither, or -1 if all are. */
long long npk_bool_bad(const void *p, unsigned long long n);

/* The row shape SHAPE[1..NDIM-1] of an array (SHAPE[0], the row count,
** left out) into BUF of CAP bytes: "(3,4)" as shape= spells it, or with
** NUMPY in NumPy's tuple notation, "(3, 4)" and "(3,)".  Returns BUF. */
const char *npk_row_shape_text(const uint64_t *shape, uint32_t ndim, int numpy,
                               char *buf, size_t cap);

/* IEEE 754 half precision conversions (round to nearest even). */
double npk_half_to_double(unsigned short h);
unsigned short npk_double_to_half(double d);

#endif /* NPK_DTYPE_H */
