/*
** store_alloc.c — the allocator every source of src/ allocates through
** (alloc.h): libc's by default, the host's once npk_set_allocator() was
** called (the extension's entry point gives it SQLite's).  The test build
** of the engine can make the Nth allocation fail (fault kinds "malloc" and
** "oom", armed in store_io.c, which hands this file its hook), so that
** the unit tests reach the out-of-memory paths
** without SQLite.
**
** It also keeps the reserve of a commit (npk_reserve_begin): memory set
** aside before a commit changes the first file of a store, from which
** allocations are served while the backend fails, so that a commit, once
** it has changed files, always completes or puts them back, whatever
** memory is left.
**
** This is the only file that may call malloc, realloc and free.
*/
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
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

static uint64_t libc_size(void *p) { return malloc_usable_size(p); }

static const NpkAllocator libc_allocator = {libc_malloc, libc_realloc, free,
                                            libc_size};
static const NpkAllocator *allocator = &libc_allocator;

/* The test build's fault hooks (store_io.c) set this while a "malloc" or
** "oom" fault is armed: nonzero makes the allocation fail.  The hook is
** given from above, so that this lowest file calls nothing higher. */
static int (*fault_hook)(void);

void npk_alloc_fault_hook(int (*fn)(void)) { fault_hook = fn; }

static int alloc_fault(void) { return fault_hook && fault_hook(); }

void npk_set_allocator(const NpkAllocator *a) {
  if (!a) a = &libc_allocator;
  /* Set again by every connection's load, while others allocate. */
  if (allocator != a) allocator = a;
}

/* ---- the reserve ---- */

/* One reserve: a block of the backend's, handed out from its start; freed
** when it is closed and the last allocation from it is freed. */
typedef struct Reserve Reserve;
struct Reserve {
  Reserve *next; /* list of reserves not yet freed */
  size_t size;   /* bytes after this header */
  size_t used;   /* bytes handed out */
  size_t live;   /* allocations not yet freed */
  int open;      /* npk_reserve_end not yet called */
  int depth;     /* npk_reserve_begin calls not yet ended */
};

/* Each allocation from a reserve is preceded by its size, padded so that
** the allocation is aligned as sqlite3_malloc's are (8 bytes). */
typedef union ResHdr ResHdr;
union ResHdr {
  size_t n;
  uint64_t u;
  double d;
  void *p;
};

/* Where a reserve's bytes start: after its header, aligned as above. */
#define RES_OFF ((sizeof(Reserve) + sizeof(ResHdr) - 1) & ~(sizeof(ResHdr) - 1))

static pthread_mutex_t reserve_mu = PTHREAD_MUTEX_INITIALIZER;
static Reserve *reserves;             /* every reserve not yet freed */
static int nreserves;                 /* their count, read without the lock */
static _Thread_local Reserve *active; /* this thread's open reserve */

static unsigned char *res_data(Reserve *r) {
  return (unsigned char *)r + RES_OFF;
}

/* The reserve P was allocated from, or NULL; with reserve_mu held. */
static Reserve *res_owner(const void *p) {
  for (Reserve *r = reserves; r; r = r->next) {
    const unsigned char *d = res_data(r);
    if ((const unsigned char *)p >= d && (const unsigned char *)p < d + r->size)
      return r;
  }
  return NULL;
}

/* Unlink and free R when nothing of it is in use; with reserve_mu held. */
static void res_maybe_free(Reserve *r) {
  if (r->open || r->live) return;
  for (Reserve **pp = &reserves; *pp; pp = &(*pp)->next) {
    if (*pp == r) {
      *pp = r->next;
      break;
    }
  }
  __atomic_store_n(&nreserves, nreserves - 1, __ATOMIC_RELAXED);
  allocator->xFree(r);
}

static void *res_alloc(Reserve *r, size_t n) {
  size_t need;
  ResHdr *h;
  /* Never 0 bytes: a size of 0 would read as "not from a reserve". */
  if (n == 0) n = 1;
  need = sizeof(ResHdr) + ((n + sizeof(ResHdr) - 1) & ~(sizeof(ResHdr) - 1));
  if (n > r->size || r->size - r->used < need) return NULL;
  h = (ResHdr *)(res_data(r) + r->used);
  h->n = n;
  r->used += need;
  pthread_mutex_lock(&reserve_mu);
  r->live++;
  pthread_mutex_unlock(&reserve_mu);
  return h + 1;
}

/* Free P if it came from a reserve (1), else leave it (0). */
static int res_free(void *p) {
  Reserve *r;
  if (__atomic_load_n(&nreserves, __ATOMIC_RELAXED) == 0) return 0;
  pthread_mutex_lock(&reserve_mu);
  r = res_owner(p);
  if (r) {
    r->live--;
    res_maybe_free(r);
  }
  pthread_mutex_unlock(&reserve_mu);
  return r != NULL;
}

/* The size of P if it came from a reserve, else 0. */
static size_t res_size(const void *p) {
  Reserve *r;
  if (__atomic_load_n(&nreserves, __ATOMIC_RELAXED) == 0) return 0;
  pthread_mutex_lock(&reserve_mu);
  r = res_owner(p);
  pthread_mutex_unlock(&reserve_mu);
  return r ? ((const ResHdr *)p - 1)->n : 0;
}

int npk_reserve_begin(size_t n) {
  Reserve *r;
  if (active) {
    active->depth++;
    return NPK_OK;
  }
  if (alloc_fault()) return NPK_NOMEM;
  r = allocator->xMalloc(RES_OFF + n);
  if (!r) return NPK_NOMEM;
  memset(r, 0, sizeof *r);
  r->size = n;
  r->open = 1;
  r->depth = 1;
  pthread_mutex_lock(&reserve_mu);
  r->next = reserves;
  reserves = r;
  __atomic_store_n(&nreserves, nreserves + 1, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&reserve_mu);
  active = r;
  return NPK_OK;
}

void npk_reserve_end(void) {
  Reserve *r = active;
  if (!r || --r->depth > 0) return;
  active = NULL;
  pthread_mutex_lock(&reserve_mu);
  r->open = 0;
  res_maybe_free(r);
  pthread_mutex_unlock(&reserve_mu);
}

/* ---- allocation ---- */

void *npk_malloc(size_t n) {
  void *p = NULL;
  /* Never 0: sqlite3_malloc64(0) returns NULL, which would read as a
  ** failure. */
  if (!alloc_fault()) p = allocator->xMalloc(n ? n : 1);
  if (!p && active) p = res_alloc(active, n);
  return p;
}

void *npk_calloc(size_t count, size_t size) {
  void *p;
  if (size && count > SIZE_MAX / size) return NULL;
  p = npk_malloc(count * size);
  if (p) memset(p, 0, count * size);
  return p;
}

void *npk_realloc(void *p, size_t n) {
  size_t old;
  void *q = NULL;
  if (!p) return npk_malloc(n);
  if ((old = res_size(p)) != 0) {
    /* From a reserve: moved out of it, to the backend if it can. */
    if ((q = npk_malloc(n)) != NULL) {
      memcpy(q, p, old < n ? old : n);
      res_free(p);
    }
    return q;
  }
  /* Never 0: sqlite3_realloc64(p, 0) frees P. */
  if (!alloc_fault()) q = allocator->xRealloc(p, n ? n : 1);
  if (!q && active && allocator->xSize && (q = res_alloc(active, n)) != NULL) {
    old = allocator->xSize(p);
    memcpy(q, p, old < n ? old : n);
    allocator->xFree(p);
  }
  return q;
}

void npk_free(void *p) {
  if (p && !res_free(p)) allocator->xFree(p);
}

char *npk_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = npk_malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}
