/*
** index.h — NumPack index arguments: an integer, a JSON array of integers,
** or a "start:stop" slice, counting live rows (NumPack's logical index).
*/
#ifndef NPK_INDEX_H
#define NPK_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* A parsed index: a list of logical rows, or a slice kept as its first
** row, step and count, so that "0:" over 2^62 rows costs no memory. */
typedef struct NpkIndex NpkIndex;
struct NpkIndex {
  uint64_t *rows; /* the rows of a list or an integer
                  ** (npk_malloc'd; npk_index_free), or NULL
                  ** for a slice */
  uint64_t n;     /* rows selected */
  uint64_t first; /* slice: the first row selected */
  int64_t step;   /* slice: to the next row; < 0 walks back */
  int scalar;     /* one bare integer */
};

/* Parse TEXT as an index over NLIVE live rows into IX, as npk_index_parse
** does, but a slice is never listed: MAX bounds only the rows of a list
** (a slice of any length is accepted). */
int npk_index_parse_ix(const char *text, size_t n, uint64_t nlive, uint64_t max,
                       NpkIndex *ix, NpkErr *e);
/* IX from N bytes at P of little-endian int64 values, each taken as an
** integer of a JSON list is (what a program holding the indices as
** numbers passes without spelling them out): NPK_ERROR when N is not a
** multiple of 8, else as npk_index_parse_ix. */
int npk_index_int64(const void *p, size_t n, uint64_t nlive, uint64_t max,
                    NpkIndex *ix, NpkErr *e);
/* The K-th row of IX (K < ix->n). */
uint64_t npk_index_row(const NpkIndex *ix, uint64_t k);
void npk_index_free(NpkIndex *ix);

/* Parse TEXT as an index over NLIVE live rows.  On success *PP holds *PN
** logical row numbers (npk_malloc'd; npk_free()) in the order given.
** Integers may be negative (counting from the end) and must be in range;
** slices follow Python: "a:b", ":b", "a:", "a:b:step" (step != 0; "::-1"
** reverses), bounds clamped.
** *SCALAR is set when TEXT is one bare integer (NumPy then drops the first
** dimension).  MAX bounds the rows selected.  On failure returns one of
** the engine's codes, with its message in E:
**   NPK_RANGE   an integer is out of range
**   NPK_TOOBIG  more than MAX rows: the list is never built, so a huge
**               slice costs no memory
**   NPK_ERROR   not an index (or a slice step of 0)
**   NPK_NOMEM   out of memory */
int npk_index_parse(const char *text, size_t n, uint64_t nlive, uint64_t max,
                    uint64_t **pp, uint64_t *pn, int *scalar, NpkErr *e);

/* Sort the N row numbers at P and drop repeats; the new count. */
uint64_t npk_rows_sort_unique(uint64_t *p, uint64_t n);

/* One integer index (possibly negative) resolved against NLIVE rows:
** NPK_OK, or NPK_RANGE with a message in E. */
int npk_index_one(int64_t i, uint64_t nlive, uint64_t *out, NpkErr *e);

#endif /* NPK_INDEX_H */
