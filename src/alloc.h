/*
** alloc.h — the one allocator of the extension and its engine.  Every
** allocation of src/ goes through these functions (test/lint_alloc.sh
** checks it), so that a host can take them over: loaded into SQLite the
** extension points them at sqlite3_malloc64 and friends, which makes SQLite's
** memory accounting and fault injection reach the engine too; without
** SQLite (the engine's unit tests, programs using the engine alone) they are
** libc's.
**
** Unlike malloc, a request for 0 bytes returns a unique pointer (never NULL
** on success), and npk_realloc(p, 0) keeps P allocated: NULL always means
** "out of memory", whatever the backend does with 0.
*/
#ifndef NPK_ALLOC_H
#define NPK_ALLOC_H

#include <stddef.h>
#include <stdint.h>

void *npk_malloc(size_t n);
/* Zeroed COUNT * SIZE bytes, NULL when the product overflows. */
void *npk_calloc(size_t count, size_t size);
void *npk_realloc(void *p, size_t n);
void npk_free(void *p);
char *npk_strdup(const char *s);

/* The backend: functions with the contracts of sqlite3_malloc64,
** sqlite3_realloc64, sqlite3_free and sqlite3_msize (xSize may be NULL).  Set it
** before the first allocation, and never again once memory it handed out
** may still be live (memory must be freed by the backend that allocated
** it); NULL restores libc's. */
typedef struct NpkAllocator NpkAllocator;
struct NpkAllocator {
  void *(*xMalloc)(uint64_t n);
  void *(*xRealloc)(void *p, uint64_t n);
  void (*xFree)(void *p);
  uint64_t (*xSize)(void *p);
};
void npk_set_allocator(const NpkAllocator *a);

/* A reserve of N bytes for this thread, until npk_reserve_end: while it
** lasts, an allocation the backend fails is served from it (a block freed
** once the reserve ended and all it served is freed).  For the stretch of
** a commit that must not fail for lack of memory: NPK_NOMEM (before
** anything is done) when the reserve itself cannot be had.  Calls nest. */
int npk_reserve_begin(size_t n);
void npk_reserve_end(void);

#endif /* NPK_ALLOC_H */
