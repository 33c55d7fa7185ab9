/*
** store_guard.c — surviving a data file shortened under a live mapping.
**
** Readers touch rows through read-only shared mappings of the data files.
** If another program (one that ignores numpack's lock: NumPack itself, a
** stray truncate) shortens a file while a statement reads it, touching a
** page past the new end raises SIGBUS, whose default action kills the
** process.  Checking the size before every row would cost a system call per
** row, and still leave a window.  Instead every mapping is registered here
** with its store's fault counter, and a SIGBUS handler recognises a fault
** inside a registered mapping: it maps a page of zeros over the faulting
** page, so the access completes, and counts the fault in that counter.
** Readers take their store's count before they touch mapped bytes and
** compare after (npk_map_check), reporting NPK_CORRUPT rather than
** returning the zeros; other stores' statements are not disturbed.  A
** mapping that took a fault is marked, so that the next statement maps the
** file afresh.  Faults anywhere else go to the handler installed before
** ours, or to the default action.
**
** The handler only reads slots and calls mmap(): no locks, no allocation.
** Slots are added and removed under a mutex; each carries a sequence number
** that is odd while the slot changes, and the handler uses a slot only if
** it read the same even number before and after reading the slot, so that
** it never acts on a slot half rewritten for another mapping.
*/
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "store_int.h"

#define CHUNK_SLOTS 256
#define MAX_CHUNKS  256

/* One registered mapping: bytes [lo, hi). */
typedef struct GuardSlot GuardSlot;
struct GuardSlot {
  unsigned seq;    /* odd while the slot is being changed */
  uintptr_t lo;    /* first byte, 0 when the slot is free */
  uintptr_t hi;    /* one past the last byte, 0 when free */
  uint64_t *count; /* the owner's fault counter */
  int hit;         /* a page of it was replaced by zeros */
  int rw;          /* mapped for writing: the zeros take writes */
};

static GuardSlot *chunks[MAX_CHUNKS]; /* slot storage, grown by chunks */
static int nchunks;                   /* chunks allocated */
static pthread_mutex_t guard_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;
static struct sigaction prev_action; /* SIGBUS handler before ours */
static uintptr_t page_size;          /* read once: sysconf is not safe in
                                     ** a signal handler */
static int installed;                /* our handler is in place */

/* Replace the page holding ADDR by zeros if ADDR lies in a registered
** mapping; return 1 if it did. */
static int absorb(uintptr_t addr) {
  int n = __atomic_load_n(&nchunks, __ATOMIC_ACQUIRE);
  for (int c = 0; c < n; c++) {
    GuardSlot *g = __atomic_load_n(&chunks[c], __ATOMIC_ACQUIRE);
    for (int i = 0; i < CHUNK_SLOTS; i++) {
      unsigned seq = __atomic_load_n(&g[i].seq, __ATOMIC_ACQUIRE);
      uintptr_t lo, hi;
      uint64_t *count;
      void *page;
      int prot;
      if (seq & 1) continue;
      lo = __atomic_load_n(&g[i].lo, __ATOMIC_ACQUIRE);
      hi = __atomic_load_n(&g[i].hi, __ATOMIC_ACQUIRE);
      count = __atomic_load_n(&g[i].count, __ATOMIC_ACQUIRE);
      prot = __atomic_load_n(&g[i].rw, __ATOMIC_ACQUIRE)
                 ? PROT_READ | PROT_WRITE
                 : PROT_READ;
      if (__atomic_load_n(&g[i].seq, __ATOMIC_ACQUIRE) != seq) continue;
      if (!(lo && lo <= addr && addr < hi)) continue;
      page = (void *)(addr & ~(page_size - 1));
      if (mmap(page, page_size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
               -1, 0) == MAP_FAILED)
        return 0;
      __atomic_store_n(&g[i].hit, 1, __ATOMIC_RELEASE);
      __atomic_fetch_add(count, 1, __ATOMIC_RELEASE);
      return 1;
    }
  }
  return 0;
}

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
  int saved = errno;
  /* Raised by a memory access, not sent by kill() or the kernel. */
  int fault = si && si->si_code > 0 && si->si_code != SI_KERNEL;
  if (fault && si->si_code == BUS_ADRERR && absorb((uintptr_t)si->si_addr)) {
    errno = saved;
    return;
  }
  errno = saved;
  /* SIG_IGN and SIG_DFL first: they share storage with sa_sigaction, and
  ** SA_SIGINFO may be set alongside them. */
  if (prev_action.sa_handler == SIG_IGN && !fault) return;
  if (prev_action.sa_handler != SIG_DFL && prev_action.sa_handler != SIG_IGN) {
    if (prev_action.sa_flags & SA_SIGINFO)
      prev_action.sa_sigaction(sig, si, uc);
    else prev_action.sa_handler(sig);
    return;
  }
  /* The default action, as if we were not here.  A fault simply happens
  ** again on return; a sent signal is blocked while this runs and is
  ** delivered on return. */
  signal(sig, SIG_DFL);
  if (!fault) raise(sig);
}

static void install(void) {
  struct sigaction sa;
  page_size = (uintptr_t)sysconf(_SC_PAGESIZE);
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGBUS, &sa, &prev_action) == 0) installed = 1;
}

/* A writable mapping's faulting write lands in the page of zeros instead
** (a full disk refusing a page, a file cut short by another program): the
** writer learns of it from the fault count, as readers do, and must not
** trust the file. */
int npk_guard_add_rw(const void *p, size_t len, uint64_t *count, int rw) {
  int slot = -1;
  pthread_once(&guard_once, install);
  if (!installed) return -1;
  pthread_mutex_lock(&guard_mu);
  for (int c = 0; slot < 0; c++) {
    GuardSlot *g;
    if (c == nchunks) {
      /* libc's, not npk_calloc: the chunks live as long as the process
      ** (the signal handler reads them), past any host's allocator. */
      if (c == MAX_CHUNKS || !(g = calloc(CHUNK_SLOTS, sizeof *g))) /* libc */
        break;
      __atomic_store_n(&chunks[c], g, __ATOMIC_RELEASE);
      __atomic_store_n(&nchunks, c + 1, __ATOMIC_RELEASE);
    }
    g = chunks[c];
    for (int i = 0; i < CHUNK_SLOTS; i++) {
      if (g[i].lo) continue;
      __atomic_fetch_add(&g[i].seq, 1, __ATOMIC_ACQ_REL);
      __atomic_store_n(&g[i].hit, 0, __ATOMIC_RELEASE);
      __atomic_store_n(&g[i].rw, rw, __ATOMIC_RELEASE);
      __atomic_store_n(&g[i].count, count, __ATOMIC_RELEASE);
      __atomic_store_n(&g[i].lo, (uintptr_t)p, __ATOMIC_RELEASE);
      __atomic_store_n(&g[i].hi, (uintptr_t)p + len, __ATOMIC_RELEASE);
      __atomic_fetch_add(&g[i].seq, 1, __ATOMIC_ACQ_REL);
      slot = c * CHUNK_SLOTS + i;
      break;
    }
  }
  pthread_mutex_unlock(&guard_mu);
  return slot;
}

int npk_guard_add(const void *p, size_t len, uint64_t *count) {
  return npk_guard_add_rw(p, len, count, 0);
}

void npk_guard_remove(const void *p) {
  pthread_mutex_lock(&guard_mu);
  for (int c = 0; c < nchunks; c++) {
    GuardSlot *g = chunks[c];
    for (int i = 0; i < CHUNK_SLOTS; i++) {
      if (g[i].lo != (uintptr_t)p) continue;
      __atomic_fetch_add(&g[i].seq, 1, __ATOMIC_ACQ_REL);
      __atomic_store_n(&g[i].hi, 0, __ATOMIC_RELEASE);
      __atomic_store_n(&g[i].lo, 0, __ATOMIC_RELEASE);
      __atomic_fetch_add(&g[i].seq, 1, __ATOMIC_ACQ_REL);
      pthread_mutex_unlock(&guard_mu);
      return;
    }
  }
  pthread_mutex_unlock(&guard_mu);
}

int npk_guard_hit(int slot) {
  if (slot < 0 ||
      slot / CHUNK_SLOTS >= __atomic_load_n(&nchunks, __ATOMIC_ACQUIRE))
    return 0;
  return __atomic_load_n(&chunks[slot / CHUNK_SLOTS][slot % CHUNK_SLOTS].hit,
                         __ATOMIC_ACQUIRE);
}

uint64_t npk_map_faults(NpkSession *s) {
  /* A spill file holds the rows of the one open transaction: a page of it
  ** lost concerns that transaction's reads and commit, not the statements
  ** of other sessions reading the store's files. */
  uint64_t n = __atomic_load_n(&s->store->map_faults, __ATOMIC_ACQUIRE);
  n += s->spill_own;
  if (s->txn)
    n += __atomic_load_n(&s->store->spill_faults, __ATOMIC_ACQUIRE) -
         s->spill_base;
  return n;
}
