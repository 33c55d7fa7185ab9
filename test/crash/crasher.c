/*
** crasher.c — the victim of the crash harness: runs random write
** transactions on a store until it is killed (or has run as many as it was
** asked to), and writes down before every commit what the store must look
** like if the commit does, or does not, happen.
**
**   crasher [-n NTXN] [-c STEP -t TXN] [-p FD] DIR LOG SEED
**
** DIR is the store (created if missing), LOG the expectation log, SEED picks
** the transactions.  Each transaction does 1 to 5 operations (append,
** replace, delete rows, compact, save, clone, drop, rarely reset) over the
** store's few small arrays of various dtypes, sometimes inside a savepoint
** that is rolled back or released, and sometimes ends in ROLLBACK.  A
** transaction of one operation is often run without npk_begin, as the
** operation's own autocommit transaction.
**
** The expected states come from an in-memory model of the store, loaded
** from the store at start and changed alongside the engine.  Before each
** commit the log gets, synced,
**     <txn> pre=<checksum before> post=<checksum after>
** and after it returns
**     <txn> done
** (checksums as in crashlib.h, 16 hex digits).  Before committing an
** explicit transaction the crasher also checks that the engine's view
** inside the transaction matches the model.
**
** -n NTXN   stop after NTXN transactions (default: run until killed;
**           0 opens the store, recovers it if needed with an empty
**           write transaction, and exits)
** -c STEP -t TXN   arm npk_test_crash_at(STEP) just before transaction TXN
**           commits: the process then _exits with 77 at that commit step
**           (or at a later commit, if that one has nothing to write)
** -v        when done, print how many of each operation ran (stderr)
** -p FD     report progress on file descriptor FD, one line each:
**           "O" before opening the store, "R <us> <journal>" once it is
**           open (microseconds taken; 1 if a journal was there before),
**           "Y" when ready, "B <txn>" before each commit and
**           "E <txn> <us>" after it (microseconds the commit took).
**
** Runs with an odd SEED commit without fsync, as under SQLite's PRAGMA
** synchronous=OFF: a killed process must leave the store as atomic as a
** synced one, since what it wrote is in the page cache all the same.
**
** Exit status: see CL_EXIT_* in crashlib.h.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crashlib.h"

#define MAXARR 8

/* Names an array can have; the store holds 3 to 5 of them most of the time. */
static const char *const name_pool[] = {"alpha", "beta", "gamma",
                                        "delta", "eps",  "zeta"};
#define NPOOL (int)(sizeof name_pool / sizeof name_pool[0])

static const int dtype_pool[] = {
  NPK_BOOL, NPK_UINT8, NPK_INT16, NPK_UINT32, NPK_INT64,
  NPK_FLOAT16, NPK_FLOAT32, NPK_FLOAT64, NPK_COMPLEX64, NPK_COMPLEX128,
};
#define NDTYPE (int)(sizeof dtype_pool / sizeof dtype_pool[0])

/* Row shapes: ndim - 1 trailing dimensions. */
static const struct {
  uint32_t ndim;
  uint64_t dims[2];
} rowshape_pool[] = {{1, {0, 0}}, {2, {3, 0}}, {2, {5, 0}}, {3, {2, 2}}};
#define NROWSHAPE (int)(sizeof rowshape_pool / sizeof rowshape_pool[0])

/* ---- the model ---------------------------------------------------------- */

typedef struct MArr {
  char name[NPK_MAX_NAME + 1];
  int dtype;
  uint32_t ndim;
  uint64_t shape[NPK_MAX_NDIM];  /* shape[0]: physical rows */
  size_t rb;                     /* bytes per row */
  unsigned char *data;           /* shape[0] * rb bytes */
  unsigned char *live;           /* shape[0] flags */
  uint64_t nlive;
} MArr;

typedef struct Model {
  int n;
  MArr a[MAXARR];
} Model;

static void die(int code, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "crasher: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  fflush(stderr);
  _exit(code);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die(CL_EXIT_ENGINE, "out of memory");
  return p;
}

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) die(CL_EXIT_ENGINE, "out of memory");
  return p;
}

static void marr_free(MArr *a) {
  free(a->data);
  free(a->live);
  a->data = a->live = NULL;
}

static void model_free(Model *m) {
  for (int i = 0; i < m->n; i++) marr_free(&m->a[i]);
  m->n = 0;
}

static void marr_copy(MArr *dst, const MArr *src) {
  *dst = *src;
  dst->data = xmalloc(src->rb * src->shape[0]);
  memcpy(dst->data, src->data, src->rb * src->shape[0]);
  dst->live = xmalloc(src->shape[0]);
  memcpy(dst->live, src->live, src->shape[0]);
}

static void model_copy(Model *dst, const Model *src) {
  dst->n = src->n;
  for (int i = 0; i < src->n; i++) marr_copy(&dst->a[i], &src->a[i]);
}

static MArr *model_find(Model *m, const char *name) {
  for (int i = 0; i < m->n; i++)
    if (strcmp(m->a[i].name, name) == 0) return &m->a[i];
  return NULL;
}

static uint64_t model_sum(const Model *m) {
  ClSum c;
  cl_sum_init(&c);
  cl_sum_count(&c, (uint64_t)m->n);
  for (int i = 0; i < m->n; i++) {
    const MArr *a = &m->a[i];
    cl_sum_array(&c, a->name, a->dtype, a->ndim, a->shape, a->nlive);
    for (uint64_t r = 0; r < a->shape[0]; r++)
      cl_sum_row(&c, a->live[r], a->data + r * a->rb, a->rb);
  }
  return c.h;
}

/* The model of what session S sees now. */
static void model_load(NpkSession *s, Model *m) {
  int n = 0, rc;
  m->n = 0;
  if ((rc = npk_read_begin(s)) != NPK_OK ||
      (rc = npk_array_count(s, &n)) != NPK_OK)
    die(CL_EXIT_ENGINE, "reading the store: rc=%d %s", rc, npk_errmsg(s));
  if (n > MAXARR) die(CL_EXIT_MISMATCH, "%d arrays in the store", n);
  for (int i = 0; i < n; i++) {
    NpkArrayInfo info;
    MArr *a = &m->a[i];
    if ((rc = npk_array_info_at(s, i, &info)) != NPK_OK)
      die(CL_EXIT_ENGINE, "array %d: rc=%d %s", i, rc, npk_errmsg(s));
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", info.name);
    a->dtype = info.dtype;
    a->ndim = info.ndim;
    memcpy(a->shape, info.shape, sizeof a->shape);
    a->rb = (size_t)info.row_bytes;
    a->nlive = info.live_rows;
    a->data = xmalloc(a->rb * info.rows);
    a->live = xmalloc(info.rows);
    m->n = i + 1;
    for (uint64_t r = 0; r < info.rows; r++) {
      const void *row;
      a->live[r] = (unsigned char)npk_row_live(s, a->name, r);
      if (!a->live[r]) {
        memset(a->data + r * a->rb, 0, a->rb);
        continue;
      }
      if ((rc = npk_row_ptr(s, a->name, r, &row)) != NPK_OK)
        die(CL_EXIT_ENGINE, "row %llu of %s: rc=%d %s",
            (unsigned long long)r, a->name, rc, npk_errmsg(s));
      memcpy(a->data + r * a->rb, row, a->rb);
    }
  }
  npk_read_end(s);
}

/* ---- operations ------------------------------------------------------- */

enum { OP_APPEND, OP_REPLACE, OP_DELETE, OP_COMPACT, OP_SAVE, OP_CLONE,
       OP_DROP, OP_RESET, OP_COUNT };
static const char *const op_names[] = {"append", "replace", "delete",
                                       "compact", "save", "clone",
                                       "drop", "reset"};
/* How often each is picked, when it applies. */
static const unsigned op_weight[] = {26, 16, 16, 8, 12, 7, 7, 1};

typedef struct Op {
  int kind;
  char name[NPK_MAX_NAME + 1];
  char name2[NPK_MAX_NAME + 1];  /* clone's target */
  int dtype;                     /* save */
  uint32_t ndim;
  uint64_t shape[NPK_MAX_NDIM];  /* append/save: rows + row shape */
  uint64_t n;                    /* replace/delete: row count */
  uint64_t *rows;                /* replace/delete: physical rows */
  unsigned char *data;           /* append/save/replace: row bytes */
} Op;

static void op_free(Op *op) {
  free(op->rows);
  free(op->data);
  op->rows = NULL;
  op->data = NULL;
}

static void fill_rows(ClRand *r, unsigned char *p, size_t n, int dtype) {
  for (size_t i = 0; i < n; i++) {
    p[i] = (unsigned char)(cl_rand(r) >> 56);
    if (dtype == NPK_BOOL) p[i] &= 1;
  }
}

/* N distinct live rows of A, chosen at random. */
static uint64_t *pick_live(ClRand *r, const MArr *a, uint64_t n) {
  uint64_t *rows = xmalloc(n * sizeof *rows);
  for (uint64_t k = 0; k < n; k++) {
    uint64_t row;
    int dup;
    do {
      row = cl_below(r, a->shape[0]);
      dup = !a->live[row];
      for (uint64_t j = 0; j < k && !dup; j++) dup = rows[j] == row;
    } while (dup);
    rows[k] = row;
  }
  return rows;
}

static const char *free_name(ClRand *r, Model *m) {
  const char *cand[NPOOL];
  int nc = 0;
  for (int i = 0; i < NPOOL; i++)
    if (!model_find(m, name_pool[i])) cand[nc++] = name_pool[i];
  return nc ? cand[cl_below(r, (uint64_t)nc)] : NULL;
}

/* Choose an operation that applies to the model M, with its arguments. */
static void op_plan(ClRand *r, Model *m, int allow_reset, Op *op) {
  memset(op, 0, sizeof *op);
  for (;;) {
    unsigned total = 0, pick;
    int kind = 0;
    for (int k = 0; k < OP_COUNT; k++) total += op_weight[k];
    pick = (unsigned)cl_below(r, total);
    while (pick >= op_weight[kind]) pick -= op_weight[kind++];
    /* Fewer than 3 arrays: mostly create one. */
    if (m->n < 3 && cl_chance(r, 60)) kind = OP_SAVE;
    if (m->n == 0 && kind != OP_SAVE) continue;
    MArr *a = m->n ? &m->a[cl_below(r, (uint64_t)m->n)] : NULL;
    op->kind = kind;
    switch (kind) {
      case OP_APPEND: {
        uint64_t n = cl_chance(r, 10) ? cl_range(r, 20, 70) : cl_range(r, 1, 6);
        if (a->shape[0] > 300) continue;
        snprintf(op->name, sizeof op->name, "%s", a->name);
        op->dtype = a->dtype;
        op->ndim = a->ndim;
        memcpy(op->shape, a->shape, sizeof op->shape);
        op->shape[0] = n;
        op->data = xmalloc(n * a->rb);
        fill_rows(r, op->data, n * a->rb, a->dtype);
        return;
      }
      case OP_REPLACE:
      case OP_DELETE: {
        uint64_t max = kind == OP_REPLACE ? 4 : 3;
        if (a->nlive == 0) continue;
        if (max > a->nlive) max = a->nlive;
        snprintf(op->name, sizeof op->name, "%s", a->name);
        op->n = cl_range(r, 1, max);
        op->rows = pick_live(r, a, op->n);
        if (kind == OP_REPLACE) {
          op->data = xmalloc(op->n * a->rb);
          fill_rows(r, op->data, op->n * a->rb, a->dtype);
        }
        return;
      }
      case OP_COMPACT:
      case OP_DROP:
        if (kind == OP_DROP && m->n <= 3) continue;
        snprintf(op->name, sizeof op->name, "%s", a->name);
        return;
      case OP_SAVE: {
        const char *name = NULL;
        int rs = (int)cl_below(r, NROWSHAPE);
        uint64_t rb;
        if (m->n < 5 && (m->n < 3 || cl_chance(r, 35))) name = free_name(r, m);
        if (!name && m->n) name = a->name;
        if (!name) continue;
        snprintf(op->name, sizeof op->name, "%s", name);
        op->dtype = dtype_pool[cl_below(r, NDTYPE)];
        op->ndim = rowshape_pool[rs].ndim;
        op->shape[0] = cl_chance(r, 5) ? 0 : cl_range(r, 1, 24);
        rb = (uint64_t)npk_dtype_size(op->dtype);
        for (uint32_t k = 1; k < op->ndim; k++) {
          op->shape[k] = rowshape_pool[rs].dims[k - 1];
          rb *= op->shape[k];
        }
        op->data = xmalloc((size_t)(op->shape[0] * rb));
        fill_rows(r, op->data, (size_t)(op->shape[0] * rb), op->dtype);
        return;
      }
      case OP_CLONE: {
        const char *dst = m->n < 5 ? free_name(r, m) : NULL;
        if (!dst) continue;
        snprintf(op->name, sizeof op->name, "%s", a->name);
        snprintf(op->name2, sizeof op->name2, "%s", dst);
        return;
      }
      case OP_RESET:
        if (!allow_reset) continue;
        return;
    }
  }
}

/* Apply OP to the model. */
static void op_model(Model *m, const Op *op) {
  MArr *a = op->kind == OP_RESET ? NULL : model_find(m, op->name);
  switch (op->kind) {
    case OP_APPEND: {
      uint64_t old = a->shape[0], n = op->shape[0];
      a->shape[0] += n;
      a->data = xrealloc(a->data, a->rb * a->shape[0]);
      a->live = xrealloc(a->live, a->shape[0]);
      memcpy(a->data + old * a->rb, op->data, n * a->rb);
      memset(a->live + old, 1, n);
      a->nlive += n;
      break;
    }
    case OP_REPLACE:
      for (uint64_t k = 0; k < op->n; k++)
        memcpy(a->data + op->rows[k] * a->rb, op->data + k * a->rb, a->rb);
      break;
    case OP_DELETE:
      for (uint64_t k = 0; k < op->n; k++) a->live[op->rows[k]] = 0;
      a->nlive -= op->n;
      break;
    case OP_COMPACT: {
      uint64_t out = 0;
      for (uint64_t r = 0; r < a->shape[0]; r++) {
        if (!a->live[r]) continue;
        memmove(a->data + out * a->rb, a->data + r * a->rb, a->rb);
        a->live[out++] = 1;
      }
      a->shape[0] = out;
      break;
    }
    case OP_SAVE: {
      MArr *t = a ? a : &m->a[m->n++];
      uint64_t rb = (uint64_t)npk_dtype_size(op->dtype);
      if (a) marr_free(a);
      memset(t, 0, sizeof *t);
      snprintf(t->name, sizeof t->name, "%s", op->name);
      t->dtype = op->dtype;
      t->ndim = op->ndim;
      memcpy(t->shape, op->shape, sizeof t->shape);
      for (uint32_t k = 1; k < op->ndim; k++) rb *= op->shape[k];
      t->rb = (size_t)rb;
      t->data = xmalloc(t->rb * t->shape[0]);
      memcpy(t->data, op->data, t->rb * t->shape[0]);
      t->live = xmalloc(t->shape[0]);
      memset(t->live, 1, t->shape[0]);
      t->nlive = t->shape[0];
      break;
    }
    case OP_CLONE: {
      /* Every physical row and the deletion bitmap are copied. */
      MArr *t = &m->a[m->n++];
      marr_copy(t, a);
      snprintf(t->name, sizeof t->name, "%s", op->name2);
      break;
    }
    case OP_DROP: {
      int i = (int)(a - m->a);
      marr_free(a);
      memmove(&m->a[i], &m->a[i + 1], (size_t)(m->n - i - 1) * sizeof *a);
      m->n--;
      break;
    }
    case OP_RESET:
      model_free(m);
      break;
  }
}

static long op_count[OP_COUNT];

/* Apply OP through the engine. */
static int op_engine(NpkSession *s, const Op *op) {
  op_count[op->kind]++;
  switch (op->kind) {
    case OP_APPEND:
      return npk_append(s, op->name, op->dtype, op->ndim, op->shape, op->data);
    case OP_REPLACE:
      return npk_replace_rows(s, op->name, op->rows, op->n, op->data);
    case OP_DELETE:
      return npk_delete_rows(s, op->name, op->rows, op->n);
    case OP_COMPACT:
      return npk_compact(s, op->name);
    case OP_SAVE:
      return npk_save(s, op->name, op->dtype, op->ndim, op->shape, op->data);
    case OP_CLONE:
      return npk_clone(s, op->name, op->name2);
    case OP_DROP:
      return npk_drop(s, op->name);
    case OP_RESET:
      return npk_reset(s);
  }
  return NPK_MISUSE;
}

static void describe(const Op *op, char *out, size_t n) {
  switch (op->kind) {
    case OP_APPEND:
      snprintf(out, n, "append %llu rows to %s", (unsigned long long)op->shape[0],
               op->name);
      break;
    case OP_REPLACE:
    case OP_DELETE:
      snprintf(out, n, "%s %llu rows of %s (first %llu)", op_names[op->kind],
               (unsigned long long)op->n, op->name,
               (unsigned long long)op->rows[0]);
      break;
    case OP_SAVE:
      snprintf(out, n, "save %s dtype %d ndim %u rows %llu", op->name,
               op->dtype, op->ndim, (unsigned long long)op->shape[0]);
      break;
    case OP_CLONE:
      snprintf(out, n, "clone %s to %s", op->name, op->name2);
      break;
    default:
      snprintf(out, n, "%s %s", op_names[op->kind], op->name);
  }
}

/* ---- the log and progress reports --------------------------------------- */

static int log_fd = -1;
static int progress_fd = -1;

static void log_line(const char *fmt, ...) {
  char line[200];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (write(log_fd, line, (size_t)n) != n || fdatasync(log_fd) != 0)
    die(CL_EXIT_LOG, "cannot write the log: %s", strerror(errno));
}

static void progress(const char *fmt, ...) {
  char line[100];
  va_list ap;
  int n;
  if (progress_fd < 0) return;
  va_start(ap, fmt);
  n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  /* Never block on a supervisor that is not listening. */
  if (write(progress_fd, line, (size_t)n) < 0) progress_fd = -1;
}

/* ---- main ------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: crasher [-n NTXN] [-c STEP -t TXN] [-p FD] [-v] DIR LOG "
          "SEED\n");
  exit(CL_EXIT_USAGE);
}

static void check_view(NpkSession *s, const Model *m, uint64_t txn) {
  uint64_t got = 0, want = model_sum(m);
  int rc = cl_sum_session(s, &got);
  if (rc != NPK_OK)
    die(CL_EXIT_ENGINE, "txn %llu: reading inside the transaction: rc=%d %s",
        (unsigned long long)txn, rc, npk_errmsg(s));
  if (got != want)
    die(CL_EXIT_MISMATCH,
        "txn %llu: the transaction sees %016llx, the model %016llx",
        (unsigned long long)txn, (unsigned long long)got,
        (unsigned long long)want);
}

static int sync_never(void *arg) {
  (void)arg;
  return 0;
}

int main(int argc, char **argv) {
  long long ntxn = LLONG_MAX, crash_txn = 0;
  int crash_step = 0, opt, rc, stats = 0;
  long ntxn_explicit = 0, nsavepoint = 0, nrollback = 0;
  const char *dir, *logpath;
  char *err = NULL, jpath[PATH_MAX + 32];
  uint64_t seed, t0;
  ClRand rng;
  NpkStore *st = NULL;
  NpkSession *s = NULL;
  Model m = {0};

  while ((opt = getopt(argc, argv, "n:c:t:p:v")) != -1) {
    switch (opt) {
      case 'n': ntxn = atoll(optarg); break;
      case 'c': crash_step = atoi(optarg); break;
      case 't': crash_txn = atoll(optarg); break;
      case 'p': progress_fd = atoi(optarg); break;
      case 'v': stats = 1; break;
      default: usage();
    }
  }
  if (argc - optind != 3) usage();
  dir = argv[optind];
  logpath = argv[optind + 1];
  seed = strtoull(argv[optind + 2], NULL, 0);
  rng.s = seed * UINT64_C(0x2545F4914F6CDD1D) + 1;
  if (progress_fd >= 0) fcntl(progress_fd, F_SETFL, O_NONBLOCK);
  alarm(120);  /* never outlive a supervisor that lost track */

  snprintf(jpath, sizeof jpath, "%s/%s", dir, CL_JOURNAL);
  int had_journal = cl_journal_hot(jpath);
  progress("O\n");
  t0 = cl_now_us();
  rc = npk_store_open(dir, NPK_OPEN_CREATE, &st, &err);
  if (rc != NPK_OK)
    die(CL_EXIT_ENGINE, "open %s: rc=%d %s", dir, rc, err ? err : "");
  free(err);
  if ((rc = npk_session_open(st, &s)) != NPK_OK)
    die(CL_EXIT_ENGINE, "session: rc=%d", rc);
  npk_set_busy_timeout(s, 5000);
  if (seed & 1) npk_set_sync_source(s, sync_never, NULL);
  /* Readers never play a journal back: the first write transaction does. */
  if ((rc = npk_begin(s)) != NPK_OK || (rc = npk_rollback(s)) != NPK_OK)
    die(CL_EXIT_ENGINE, "recovery: rc=%d %s", rc, npk_errmsg(s));
  progress("R %llu %d\n", (unsigned long long)(cl_now_us() - t0), had_journal);
  if (ntxn == 0) {
    npk_session_close(s);
    npk_store_release(st);
    return CL_EXIT_DONE;
  }
  model_load(s, &m);

  log_fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) die(CL_EXIT_LOG, "cannot open %s: %s", logpath, strerror(errno));
  progress("Y\n");

  for (long long txn = 1; txn <= ntxn; txn++) {
    Model before = {0}, saved = {0};
    int nops = (int)cl_range(&rng, 1, 5);
    int autoc = nops == 1 && cl_chance(&rng, 50);
    int rollback = !autoc && cl_chance(&rng, 5);
    int sp_at = !autoc && cl_chance(&rng, 15) ? (int)cl_below(&rng, (uint64_t)nops) : -1;
    int sp_undo = cl_chance(&rng, 50), sp_level = -1;
    uint64_t pre = model_sum(&m), post;
    char what[800];

    if (autoc) {
      Op op;
      op_plan(&rng, &m, 0, &op);
      op_model(&m, &op);
      post = model_sum(&m);
      log_line("%lld pre=%016llx post=%016llx\n", txn,
               (unsigned long long)pre, (unsigned long long)post);
      if (crash_step && txn == crash_txn) npk_test_crash_at(crash_step);
      progress("B %lld\n", txn);
      t0 = cl_now_us();
      rc = op_engine(s, &op);
      if (rc != NPK_OK) {
        describe(&op, what, sizeof what);
        die(CL_EXIT_ENGINE, "txn %lld: %s (autocommit): rc=%d %s", txn, what,
            rc, npk_errmsg(s));
      }
      progress("E %lld %llu\n", txn, (unsigned long long)(cl_now_us() - t0));
      log_line("%lld done\n", txn);
      op_free(&op);
      continue;
    }

    ntxn_explicit++;
    nrollback += rollback;
    nsavepoint += sp_at >= 0;
    model_copy(&before, &m);
    if ((rc = npk_begin(s)) != NPK_OK)
      die(CL_EXIT_ENGINE, "txn %lld: begin: rc=%d %s", txn, rc, npk_errmsg(s));
    for (int k = 0; k < nops; k++) {
      Op op;
      if (k == sp_at) {
        if ((rc = npk_savepoint(s, &sp_level)) != NPK_OK)
          die(CL_EXIT_ENGINE, "txn %lld: savepoint: rc=%d %s", txn, rc,
              npk_errmsg(s));
        model_copy(&saved, &m);
      }
      op_plan(&rng, &m, 1, &op);
      op_model(&m, &op);
      rc = op_engine(s, &op);
      if (rc != NPK_OK) {
        describe(&op, what, sizeof what);
        die(CL_EXIT_ENGINE, "txn %lld op %d: %s: rc=%d %s", txn, k + 1, what,
            rc, npk_errmsg(s));
      }
      op_free(&op);
    }
    if (sp_level >= 0) {
      if (sp_undo) {
        rc = npk_rollback_to(s, sp_level);
        if (rc == NPK_OK) rc = npk_release(s, sp_level);
        model_free(&m);
        m = saved;
        memset(&saved, 0, sizeof saved);
      } else {
        rc = npk_release(s, sp_level);
      }
      if (rc != NPK_OK)
        die(CL_EXIT_ENGINE, "txn %lld: %s savepoint: rc=%d %s", txn,
            sp_undo ? "rolling back to the" : "releasing the", rc,
            npk_errmsg(s));
    }
    check_view(s, &m, (uint64_t)txn);
    if (rollback) {
      model_free(&m);
      m = before;
      memset(&before, 0, sizeof before);
    }
    post = model_sum(&m);
    log_line("%lld pre=%016llx post=%016llx\n", txn, (unsigned long long)pre,
             (unsigned long long)post);
    if (crash_step && txn == crash_txn) npk_test_crash_at(crash_step);
    progress("B %lld\n", txn);
    t0 = cl_now_us();
    rc = rollback ? npk_rollback(s) : npk_commit(s);
    if (rc != NPK_OK)
      die(CL_EXIT_ENGINE, "txn %lld: %s: rc=%d %s", txn,
          rollback ? "rollback" : "commit", rc, npk_errmsg(s));
    progress("E %lld %llu\n", txn, (unsigned long long)(cl_now_us() - t0));
    log_line("%lld done\n", txn);
    model_free(&before);
    model_free(&saved);
  }
  if (stats) {
    fprintf(stderr, "crasher: %lld transactions (%ld explicit, %ld with a "
            "savepoint, %ld rolled back); operations:", ntxn, ntxn_explicit,
            nsavepoint, nrollback);
    for (int k = 0; k < OP_COUNT; k++)
      fprintf(stderr, " %s %ld", op_names[k], op_count[k]);
    fprintf(stderr, "; %d arrays at the end\n", m.n);
  }
  model_free(&m);
  npk_session_close(s);
  npk_store_release(st);
  return CL_EXIT_DONE;
}
