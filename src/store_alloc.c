/*
** store_alloc.c — the allocator every source of src/ allocates through
** (alloc.h): libc's by default, the host's once npk_set_allocator() was
** called (the extension's entry point gives it SQLite's).  The test build
** of the engine can make the Nth allocation fail (fault kind "malloc"), so
** that the unit tests reach the out-of-memory paths without SQLite.
**
** This is the only file that may call malloc, realloc and free.
*/
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "store_int.h"

static void *libc_malloc(uint64_t n) {
  return n > SIZE_MAX ? NULL : malloc((size_t)n);
}

static void *libc_realloc(void *p, uint64_t n) {
  return n > SIZE_MAX ? NULL : realloc(p, (size_t)n);
}

static const NpkAllocator libc_allocator = {libc_malloc, libc_realloc, free};
static const NpkAllocator *allocator = &libc_allocator;

void npk_set_allocator(const NpkAllocator *a) {
  allocator = a ? a : &libc_allocator;
}

void *npk_malloc(size_t n) {
  if (npk_test_fault_check("malloc")) return NULL;
  /* Never 0: sqlite3_malloc64(0) returns NULL, which would read as a
  ** failure. */
  return allocator->xMalloc(n ? n : 1);
}

void *npk_calloc(size_t count, size_t size) {
  void *p;
  if (size && count > SIZE_MAX / size) return NULL;
  p = npk_malloc(count * size);
  if (p) memset(p, 0, count * size);
  return p;
}

void *npk_realloc(void *p, size_t n) {
  if (!p) return npk_malloc(n);
  if (npk_test_fault_check("malloc")) return NULL;
  /* Never 0: sqlite3_realloc64(p, 0) frees P. */
  return allocator->xRealloc(p, n ? n : 1);
}

void npk_free(void *p) {
  if (p) allocator->xFree(p);
}

char *npk_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = npk_malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}
