/*
** element.h — conversion of one array element to and from an SQL value
** (element.c).
*/
#ifndef NPK_ELEMENT_H
#define NPK_ELEMENT_H

#include "dtype.h"

/* Set CTX's result to the element of type DTYPE at P. */
void npk_element_result(sqlite3_context *ctx, int dtype,
                        const unsigned char *p);
/* Write V as an element of DTYPE to OUT: SQLITE_OK, SQLITE_MISMATCH (wrong
** kind of value) or SQLITE_RANGE (does not fit). */
int npk_element_encode(sqlite3_value *v, int dtype, unsigned char *out);
/* Declared column type for DTYPE ("INTEGER", "REAL", ...). */
const char *npk_column_type(int dtype);

#endif /* NPK_ELEMENT_H */
