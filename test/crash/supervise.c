/*
** supervise.c — the crash atomicity harness: starts the crasher (crasher.c)
** on one store again and again, kills it at random moments, and checks after
** every kill that the store opens as it was before or after the
** transaction that was being committed, never in between.
**
**   supervise [-k KILLS] [-s SEED] [-c CRASHER] [-d DIR] [-v]
**
** -k KILLS    how many crashes to check (default $CRASH_KILLS, else 200)
** -s SEED     master seed (default $CRASH_SEED, else from the clock); every
**             run's own seed, mode and timing are printed on failure
** -c CRASHER  the crasher program (default: "crasher" next to this one)
** -d DIR      where to make the work directory (default $TMPDIR, else /tmp)
** -v          one line per run
**
** How a run ends, chosen at random for each:
**   timed   SIGKILL 0-30 ms after the crasher reports it is ready
**   aimed   SIGKILL at a random point of the 1st-3rd commit: after the
**           crasher reports the commit starting, within 1.3 times the
**           average commit duration seen so far
**   early   SIGKILL 0-4 ms after fork: during exec, open or recovery
**   step    npk_test_crash_at(STEP) for STEP 1-10, armed for one of the
**           first transactions: the crasher dies exactly before that step
** After a kill that left a hot journal, the recovery itself is sometimes
** interrupted: a crasher that only opens the store is killed within about
** the time an open with recovery takes.
**
** After each crash, with the crasher dead, the store is opened afresh in
** this process, read (refused if a journal is hot: readers never recover),
** recovered by an empty write transaction, and checked:
**   - the state's checksum equals the "pre" or the "post" of the last
**     transaction in the crasher's log (only "post" once the log says
**     "done"; the state checked last time when the log is empty);
**   - the same checksum comes out of reading the files directly
**     (catalog, data files, bitmaps), independently of the engine;
**   - no journal is left, and every file of the directory is known: the
**     catalog, the lock file, and the data file and bitmap of an array;
**   - catalog sizes agree with shapes; bitmaps agree with shapes.
**
** Prints a summary, then "N passed, N failed" (N counting crashes checked,
** plus crasher runs that failed) as the last line.  Exit status 1 on any
** failure; the work directory is then kept, with a copy of the store as
** the crash left it for each failure (fail-<run>/).
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crashlib.h"

#define MAX_FAIL_REPORTS 10
#define MAX_FAILURES 25

enum { M_TIMED, M_AIMED, M_EARLY, M_STEP, M_COUNT };
static const char *const mode_names[] = {"timed", "aimed", "early", "step"};

static const char *crasher_path;
static char work[PATH_MAX], store[PATH_MAX], logpath[PATH_MAX];
static int verbose;

/* Statistics. */
static struct {
  long runs, checked, checked_ok, failed, crasher_failed;
  long mode[M_COUNT], step[11];
  long out_none, out_before, out_after, out_same, out_done;
  long hot_journal, strays_before_open;
  long victims, victims_killed, victim_journal_left;
  long longer_data, empty_bitmaps;
  long commits;
  double commit_us_sum;
  double commit_ema, open_ema;  /* microseconds */
  long exited_before_kill;
} S;

static int nfail_reported;

static void fail_note(const char *fmt, ...) {
  va_list ap;
  if (nfail_reported >= MAX_FAIL_REPORTS) return;
  printf("    ");
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
}

/* ---- small file helpers ------------------------------------------------- */

/* DST = DIR "/" NAME, cut short (never overflowing) if it does not fit. */
static void pjoin(char *dst, size_t n, const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  if (a > n - 2) a = n - 2;
  memcpy(dst, dir, a);
  dst[a] = '/';
  if (b > n - a - 2) b = n - a - 2;
  memcpy(dst + a + 1, name, b);
  dst[a + 1 + b] = 0;
}

static unsigned char *read_all(const char *path, size_t *pn) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat sb;
  unsigned char *p;
  size_t done = 0;
  if (fd < 0) return NULL;
  if (fstat(fd, &sb) != 0) {
    close(fd);
    return NULL;
  }
  p = malloc((size_t)sb.st_size + 1);
  while (p && done < (size_t)sb.st_size) {
    ssize_t r = read(fd, p + done, (size_t)sb.st_size - done);
    if (r <= 0) break;
    done += (size_t)r;
  }
  close(fd);
  if (p) p[done] = 0;
  *pn = done;
  return p;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

static void rm_rf(const char *path) {
  struct stat sb;
  if (lstat(path, &sb) != 0) return;
  if (S_ISDIR(sb.st_mode)) {
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
      char sub[PATH_MAX];
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      pjoin(sub, sizeof sub, path, e->d_name);
      rm_rf(sub);
    }
    if (d) closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

/* Copy file A to B. */
static void copy_file(const char *a, const char *b) {
  size_t n;
  unsigned char *p = read_all(a, &n);
  if (p) {
    int fd = open(b, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      if (write(fd, p, n) != (ssize_t)n) perror(b);
      close(fd);
    }
    free(p);
  }
}

/* Copy the regular files of directory FROM into a new directory TO. */
static void copy_dir(const char *from, const char *to) {
  DIR *d = opendir(from);
  struct dirent *e;
  rm_rf(to);
  mkdir(to, 0755);
  while (d && (e = readdir(d)) != NULL) {
    char a[PATH_MAX], b[PATH_MAX];
    if (e->d_name[0] == '.') continue;
    pjoin(a, sizeof a, from, e->d_name);
    pjoin(b, sizeof b, to, e->d_name);
    copy_file(a, b);
  }
  if (d) closedir(d);
}

/* Files that only a crashed commit leaves: temporary data files, backups,
** temporary catalog or bitmap files. */
static int count_strays(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;
  while (d && (e = readdir(d)) != NULL) {
    const char *f = e->d_name;
    if (!strncmp(f, "npktmp-", 7) || strstr(f, "-npkbak") || strstr(f, "-tmp"))
      n++;
  }
  if (d) closedir(d);
  return n;
}

/* ---- the expectation log ------------------------------------------------ */

typedef struct Expect {
  int nlines;          /* lines in the log */
  long long last_txn;  /* transaction of the last line, 0 if none */
  int last_done;       /* the last line says "done" */
  uint64_t pre, post;  /* of the last transaction */
  int ok;              /* the log is well formed and chained */
  char why[200];
} Expect;

/* Read the log; CURRENT is the state before the crasher started. */
static void read_log(uint64_t current, Expect *x) {
  size_t n;
  unsigned char *p = read_all(logpath, &n);
  char *line, *save = NULL;
  long long want_txn = 1;
  int want_done = 0;
  uint64_t chain = current;
  memset(x, 0, sizeof *x);
  x->ok = 1;
  if (!p) return;  /* no log: no transaction got that far */
  if (n && p[n - 1] != '\n') {
    x->ok = 0;
    snprintf(x->why, sizeof x->why, "the log ends in a partial line");
  }
  for (line = strtok_r((char *)p, "\n", &save); line && x->ok;
       line = strtok_r(NULL, "\n", &save)) {
    long long t;
    unsigned long long a, b;
    char tail[16];
    x->nlines++;
    if (sscanf(line, "%lld pre=%llx post=%llx", &t, &a, &b) == 3 &&
        !want_done && t == want_txn) {
      if (a != chain) {
        x->ok = 0;
        snprintf(x->why, sizeof x->why,
                 "txn %lld: pre=%016llx but the state before was %016llx", t,
                 a, (unsigned long long)chain);
        break;
      }
      x->last_txn = t;
      x->pre = a;
      x->post = b;
      x->last_done = 0;
      want_done = 1;
    } else if (sscanf(line, "%lld %15s", &t, tail) == 2 &&
               !strcmp(tail, "done") && want_done && t == want_txn) {
      x->last_done = 1;
      chain = x->post;
      want_done = 0;
      want_txn++;
    } else {
      x->ok = 0;
      snprintf(x->why, sizeof x->why, "log line %d is out of place: \"%.60s\"",
               x->nlines, line);
    }
  }
  free(p);
}

/* ---- reading the store ------------------------------------------------- */

typedef struct Seen {
  uint64_t engine_sum;   /* through the engine */
  uint64_t file_sum;     /* from the files */
  int ok;
  char why[400];
} Seen;

static void seen_fail(Seen *v, const char *fmt, ...) {
  va_list ap;
  size_t n = strlen(v->why);
  if (n >= sizeof v->why - 2) return;
  if (n) {
    v->why[n++] = ';';
    v->why[n++] = ' ';
    v->why[n] = 0;
  }
  va_start(ap, fmt);
  vsnprintf(v->why + n, sizeof v->why - n, fmt, ap);
  va_end(ap);
  v->ok = 0;
}

static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p) {
  return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Item sizes of the dtype codes, from the format description. */
static const int item_size[14] = {1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 4, 8, 8, 16};

#define MAXFILES 64

/* Read the store's files without the engine: parse the catalog, check its
** sizes, read the rows and bitmaps, and checksum the whole.  KNOWN gets the
** names of the files that belong to the store. */
static void read_files(Seen *v, char known[][NPK_MAX_NAME + 32], int *nknown) {
  char path[PATH_MAX];
  size_t n, o = 0;
  unsigned char *cat;
  uint32_t count;
  uint64_t total, sum_sizes = 0;
  ClSum c;

  *nknown = 0;
  snprintf(known[(*nknown)++], NPK_MAX_NAME + 32, "%s", CL_CATALOG);
  snprintf(known[(*nknown)++], NPK_MAX_NAME + 32, "%s", CL_LOCK);
  snprintf(known[(*nknown)++], NPK_MAX_NAME + 32, "%s", CL_SPARE);
  snprintf(known[(*nknown)++], NPK_MAX_NAME + 32, "%s", CL_JOURNAL);
  pjoin(path, sizeof path, store, CL_CATALOG);
  cat = read_all(path, &n);
  if (!cat) {
    seen_fail(v, "no catalog");
    return;
  }
#define NEED(k) \
  do { \
    if (n - o < (size_t)(k)) { \
      seen_fail(v, "catalog truncated at byte %zu", o); \
      free(cat); \
      return; \
    } \
  } while (0)
  NEED(20);
  if (le32(cat) != 0x424B504Eu || le32(cat + 4) != 1) {
    seen_fail(v, "catalog header is wrong");
    free(cat);
    return;
  }
  total = le64(cat + 8);
  count = le32(cat + 16);
  o = 20;
  cl_sum_init(&c);
  cl_sum_count(&c, count);
  for (uint32_t i = 0; i < count; i++) {
    char name[NPK_MAX_NAME + 1], file[256];
    uint32_t len, ndim;
    uint64_t shape[NPK_MAX_NDIM], size, rb, rows, nlive, bm_rows = 0;
    unsigned dtype;
    unsigned char *data = NULL, *bm = NULL;
    size_t ndata = 0, nbm = 0;

    NEED(4);
    len = le32(cat + o);
    o += 4;
    if (len > NPK_MAX_NAME) {
      seen_fail(v, "array %u: name of %u bytes", i, len);
      break;
    }
    NEED(len);
    memcpy(name, cat + o, len);
    name[len] = 0;
    o += len;
    NEED(4);
    ndim = le32(cat + o);
    o += 4;
    if (ndim < 1 || ndim > NPK_MAX_NDIM) {
      seen_fail(v, "%s: ndim %u", name, ndim);
      break;
    }
    NEED(8 * ndim);
    for (uint32_t k = 0; k < ndim; k++, o += 8) shape[k] = le64(cat + o);
    NEED(4);
    len = le32(cat + o);
    o += 4;
    if (len >= 200) {
      seen_fail(v, "%s: data file name of %u bytes", name, len);
      break;
    }
    NEED(len);
    memcpy(file, cat + o, len);
    file[len] = 0;
    o += len;
    NEED(8 + 8 + 1 + 1 + 4 + 8 + 8 + 1);
    o += 8;  /* modification time */
    size = le64(cat + o);
    o += 8;
    dtype = cat[o++];
    if (cat[o++] != 0) seen_fail(v, "%s: compression flag set", name);
    o += 4 + 8 + 8;
    if (cat[o++] != 0) seen_fail(v, "%s: block info flag set", name);
    if (dtype >= 14) {
      seen_fail(v, "%s: dtype code %u", name, dtype);
      break;
    }
    rb = (uint64_t)item_size[dtype];
    for (uint32_t k = 1; k < ndim; k++) rb *= shape[k];
    rows = shape[0];
    if (size != rows * rb)
      seen_fail(v, "%s: catalog size %llu for %llu rows of %llu bytes", name,
                (unsigned long long)size, (unsigned long long)rows,
                (unsigned long long)rb);
    sum_sizes += size;
    {
      char want[NPK_MAX_NAME + 16];
      snprintf(want, sizeof want, "data_%s.npkd", name);
      if (strcmp(file, want) != 0)
        seen_fail(v, "%s: data file \"%s\"", name, file);
    }
    if (*nknown + 2 <= MAXFILES) {
      snprintf(known[(*nknown)++], NPK_MAX_NAME + 32, "%s", file);
      snprintf(known[(*nknown)++], NPK_MAX_NAME + 32, "deleted_%s.npkb", name);
    }

    pjoin(path, sizeof path, store, file);
    data = read_all(path, &ndata);
    if (!data) {
      seen_fail(v, "%s: no data file %s", name, file);
      data = calloc(1, rows * rb + 1);
    } else if (ndata < rows * rb) {
      seen_fail(v, "%s: data file has %zu bytes, %llu rows need %llu", name,
                ndata, (unsigned long long)rows,
                (unsigned long long)(rows * rb));
      data = realloc(data, rows * rb + 1);
      memset(data + ndata, 0, rows * rb - ndata);
    } else if (ndata > rows * rb) {
      S.longer_data++;
    }

    {
      char bmname[NPK_MAX_NAME + 16];
      snprintf(bmname, sizeof bmname, "deleted_%s.npkb", name);
      pjoin(path, sizeof path, store, bmname);
    }
    bm = read_all(path, &nbm);
    nlive = rows;
    if (bm) {
      uint64_t deleted, words, pop = 0;
      if (nbm < 16) {
        seen_fail(v, "%s: bitmap of %zu bytes", name, nbm);
        nbm = 0;
      } else {
        bm_rows = le64(bm);
        deleted = le64(bm + 8);
        words = (bm_rows + 63) / 64;
        if (nbm != 16 + 8 * words) {
          seen_fail(v, "%s: bitmap of %zu bytes for %llu rows", name, nbm,
                    (unsigned long long)bm_rows);
          if (nbm < 16 + 8 * words) bm_rows = (nbm - 16) / 8 * 64;
        }
        if (bm_rows != rows)
          seen_fail(v, "%s: bitmap covers %llu rows of %llu", name,
                    (unsigned long long)bm_rows, (unsigned long long)rows);
        for (uint64_t r = 0; r < bm_rows; r++)
          pop += (bm[16 + 8 * (r / 64) + (r % 64) / 8] >> (r % 8)) & 1;
        if (bm_rows % 64 && 16 + 8 * words <= nbm) {
          uint64_t last = le64(bm + 16 + 8 * (words - 1));
          if (last >> (bm_rows % 64))
            seen_fail(v, "%s: bitmap padding bits set", name);
        }
        if (deleted != bm_rows - pop)
          seen_fail(v, "%s: bitmap says %llu deleted, its bits %llu", name,
                    (unsigned long long)deleted,
                    (unsigned long long)(bm_rows - pop));
        if (deleted == 0) S.empty_bitmaps++;
        nlive = 0;
        for (uint64_t r = 0; r < rows; r++)
          nlive += r < bm_rows &&
                   ((bm[16 + 8 * (r / 64) + (r % 64) / 8] >> (r % 8)) & 1);
      }
    }
    cl_sum_array(&c, name, (int)dtype, ndim, shape, nlive);
    for (uint64_t r = 0; r < rows; r++) {
      int live = !bm || (r < bm_rows &&
                         ((bm[16 + 8 * (r / 64) + (r % 64) / 8] >> (r % 8)) & 1));
      cl_sum_row(&c, live, data + r * rb, (size_t)rb);
    }
    free(data);
    free(bm);
  }
#undef NEED
  if (v->ok && o != n) seen_fail(v, "%zu bytes after the catalog's arrays", n - o);
  if (v->ok && total != sum_sizes)
    seen_fail(v, "catalog total %llu, arrays %llu", (unsigned long long)total,
              (unsigned long long)sum_sizes);
  v->file_sum = c.h;
  free(cat);
}

/* Open the store afresh and look at it every way. */
static void inspect(Seen *v) {
  char *err = NULL, path[PATH_MAX];
  char known[MAXFILES][NPK_MAX_NAME + 32];
  int nknown = 0, rc, n = 0;
  NpkStore *st = NULL;
  NpkSession *s = NULL;
  DIR *d;
  struct dirent *e;

  memset(v, 0, sizeof *v);
  v->ok = 1;
  rc = npk_store_open(store, 0, &st, &err);
  if (rc != NPK_OK) {
    seen_fail(v, "open: rc=%d %s", rc, err ? err : "");
    free(err);
    return;
  }
  free(err);
  if ((rc = npk_session_open(st, &s)) != NPK_OK) {
    seen_fail(v, "session: rc=%d", rc);
    npk_store_release(st);
    return;
  }
  /* Reading never plays a journal back: a reader is refused while one is
  ** hot, and the next write transaction recovers the store. */
  pjoin(path, sizeof path, store, CL_JOURNAL);
  rc = npk_read_begin(s);
  if (rc == NPK_OK) npk_read_end(s);
  else if (rc != NPK_BUSY || !cl_journal_hot(path))
    seen_fail(v, "reader before recovery: rc=%d %s", rc, npk_errmsg(s));
  if ((rc = npk_begin(s)) != NPK_OK || (rc = npk_rollback(s)) != NPK_OK)
    seen_fail(v, "recovery: rc=%d %s", rc, npk_errmsg(s));
  rc = npk_read_begin(s);
  if (rc == NPK_OK) {
    rc = cl_sum_session(s, &v->engine_sum);
    if (rc != NPK_OK) seen_fail(v, "reading: rc=%d %s", rc, npk_errmsg(s));
    if (npk_array_count(s, &n) != NPK_OK) n = 0;
    for (int i = 0; i < n; i++) {
      NpkArrayInfo info;
      NpkView view;
      char name[NPK_MAX_NAME + 1];
      if (npk_array_info_at(s, i, &info) != NPK_OK) continue;
      snprintf(name, sizeof name, "%s", info.name);
      if ((rc = npk_view(s, name, &view)) != NPK_OK)
        seen_fail(v, "view of %s: rc=%d %s", name, rc, npk_errmsg(s));
    }
    npk_read_end(s);
  } else {
    seen_fail(v, "read lock: rc=%d %s", rc, npk_errmsg(s));
  }
  npk_session_close(s);
  npk_store_release(st);

  pjoin(path, sizeof path, store, CL_JOURNAL);
  if (cl_journal_hot(path)) seen_fail(v, "journal left after open");

  read_files(v, known, &nknown);
  if (v->ok && v->file_sum != v->engine_sum)
    seen_fail(v, "files say %016llx, the engine %016llx",
              (unsigned long long)v->file_sum,
              (unsigned long long)v->engine_sum);

  d = opendir(store);
  while (d && (e = readdir(d)) != NULL) {
    int ok = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    for (int i = 0; i < nknown && !ok; i++) ok = !strcmp(e->d_name, known[i]);
    if (!ok) seen_fail(v, "unknown file %s", e->d_name);
  }
  if (d) closedir(d);
}

/* ---- running the crasher --------------------------------------------- */

typedef struct Child {
  pid_t pid;
  int fd;            /* progress pipe, read end */
  char buf[4096];
  size_t nbuf;
  int eof;
  long ready, begins, opens;  /* lines seen */
} Child;

static pid_t spawn(Child *c, char *const extra[]) {
  int p[2];
  char *argv[16];
  int n = 0;
  memset(c, 0, sizeof *c);
  if (pipe2(p, O_CLOEXEC) != 0) {
    perror("pipe");
    exit(2);
  }
  fflush(stdout);
  fflush(stderr);
  c->pid = fork();
  if (c->pid < 0) {
    perror("fork");
    exit(2);
  }
  if (c->pid == 0) {
    if (dup2(p[1], 3) < 0) _exit(126);
    argv[n++] = (char *)crasher_path;
    argv[n++] = "-p";
    argv[n++] = "3";
    while (*extra) argv[n++] = *extra++;
    argv[n] = NULL;
    execv(crasher_path, argv);
    perror(crasher_path);
    _exit(127);
  }
  close(p[1]);
  c->fd = p[0];
  return c->pid;
}

/* Take in one progress line. */
static void on_line(Child *c, const char *line) {
  unsigned long long us = 0;
  long long t;
  int j = 0;
  switch (line[0]) {
    case 'Y': c->ready++; break;
    case 'B': c->begins++; break;
    case 'O': c->opens++; break;
    case 'E':
      if (sscanf(line, "E %lld %llu", &t, &us) == 2) {
        S.commits++;
        S.commit_us_sum += (double)us;
        S.commit_ema = S.commit_ema ? 0.9 * S.commit_ema + 0.1 * (double)us
                                    : (double)us;
      }
      break;
    case 'R':
      if (sscanf(line, "R %llu %d", &us, &j) == 2 && j)
        S.open_ema = S.open_ema ? 0.8 * S.open_ema + 0.2 * (double)us
                                : (double)us;
      break;
  }
}

/* Read what is there (waiting up to TIMEOUT_MS for something); 0 on EOF. */
static int pump(Child *c, int timeout_ms) {
  struct pollfd pf = {c->fd, POLLIN, 0};
  ssize_t r;
  if (c->eof) return 0;
  if (poll(&pf, 1, timeout_ms) <= 0) return 1;
  r = read(c->fd, c->buf + c->nbuf, sizeof c->buf - c->nbuf - 1);
  if (r <= 0) {
    c->eof = 1;
    return 0;
  }
  c->nbuf += (size_t)r;
  for (;;) {
    char *nl = memchr(c->buf, '\n', c->nbuf);
    size_t k;
    if (!nl) break;
    *nl = 0;
    on_line(c, c->buf);
    k = (size_t)(nl - c->buf) + 1;
    memmove(c->buf, c->buf + k, c->nbuf - k);
    c->nbuf -= k;
  }
  if (c->nbuf == sizeof c->buf - 1) c->nbuf = 0;
  return 1;
}

/* Wait until *COUNTER reaches WANT; 0 if the child ended or time ran out. */
static int wait_count(Child *c, const long *counter, long want, int timeout_ms) {
  uint64_t end = cl_now_us() + (uint64_t)timeout_ms * 1000u;
  while (*counter < want) {
    uint64_t now = cl_now_us();
    if (now >= end || !pump(c, (int)((end - now) / 1000u) + 1)) break;
  }
  return *counter >= want;
}

static void sleep_us(uint64_t us) {
  struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Kill (if KILL) and reap the child; returns the wait status. */
static int finish(Child *c, int kill_it) {
  int status = 0;
  if (kill_it) kill(c->pid, SIGKILL);
  while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR) {
  }
  while (pump(c, 0) && !c->eof) {
  }
  close(c->fd);
  return status;
}

/* Wait for the child to end by itself, at most TIMEOUT_MS, then kill it. */
static int finish_wait(Child *c, int timeout_ms, int *hung) {
  uint64_t end = cl_now_us() + (uint64_t)timeout_ms * 1000u;
  *hung = 0;
  while (!c->eof && cl_now_us() < end) pump(c, 50);
  if (!c->eof) {
    *hung = 1;
    return finish(c, 1);
  }
  return finish(c, 0);
}

static void describe_status(int status, char *out, size_t n) {
  if (WIFEXITED(status))
    snprintf(out, n, "exit %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(out, n, "signal %d", WTERMSIG(status));
  else
    snprintf(out, n, "status 0x%x", status);
}

/* ---- main ------------------------------------------------------------ */

int main(int argc, char **argv) {
  long kills = 200;
  uint64_t seed, t_start;
  const char *base = getenv("TMPDIR");
  char self_dir[PATH_MAX], crasher_buf[PATH_MAX];
  int opt, keep = 0;
  uint64_t current;
  ClRand rng;
  Seen v;

  if (getenv("CRASH_KILLS") && *getenv("CRASH_KILLS"))
    kills = atol(getenv("CRASH_KILLS"));
  if (getenv("CRASH_SEED") && *getenv("CRASH_SEED"))
    seed = strtoull(getenv("CRASH_SEED"), NULL, 0);
  else
    seed = (cl_now_us() ^ ((uint64_t)getpid() << 32)) % 1000000007u;
  snprintf(self_dir, sizeof self_dir, "%s", argv[0]);
  {
    char *slash = strrchr(self_dir, '/');
    if (slash) *slash = 0;
    else snprintf(self_dir, sizeof self_dir, ".");
  }
  pjoin(crasher_buf, sizeof crasher_buf, self_dir, "crasher");
  crasher_path = crasher_buf;
  while ((opt = getopt(argc, argv, "k:s:c:d:v")) != -1) {
    switch (opt) {
      case 'k': kills = atol(optarg); break;
      case 's': seed = strtoull(optarg, NULL, 0); break;
      case 'c': crasher_path = optarg; break;
      case 'd': base = optarg; break;
      case 'v': verbose = 1; break;
      default:
        fprintf(stderr,
                "usage: supervise [-k KILLS] [-s SEED] [-c CRASHER] [-d DIR] [-v]\n");
        return 2;
    }
  }
  if (!base || !*base) base = "/tmp";
  if (access(crasher_path, X_OK) != 0) {
    printf("crash: no crasher program at %s\n", crasher_path);
    printf("0 passed, 1 failed\n");
    return 1;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  snprintf(work, sizeof work, "%s/npkcrash.XXXXXX", base);
  if (!mkdtemp(work)) {
    perror(work);
    return 2;
  }
  pjoin(store, sizeof store, work, "store");
  pjoin(logpath, sizeof logpath, work, "expect.log");
  rng.s = seed;
  printf("crash: seed %llu, %ld crashes to check, work directory %s\n",
         (unsigned long long)seed, kills, work);

  {
    NpkStore *st = NULL;
    char *err = NULL;
    if (npk_store_open(store, NPK_OPEN_CREATE, &st, &err) != NPK_OK) {
      printf("crash: cannot create %s: %s\n", store, err ? err : "");
      printf("0 passed, 1 failed\n");
      return 1;
    }
    free(err);
    npk_store_release(st);
  }
  inspect(&v);
  if (!v.ok) {
    printf("crash: the new store is wrong: %s\n", v.why);
    printf("0 passed, 1 failed\n");
    return 1;
  }
  current = v.engine_sum;
  S.commit_ema = 0;
  t_start = cl_now_us();

  for (long run = 1; S.checked < kills && run <= kills * 3 + 20 &&
                     S.failed < MAX_FAILURES;
       run++) {
    uint64_t run_seed = cl_rand(&rng);
    int mode, status, hung = 0, killed, journal, victim = 0;
    long step = 0, step_txn = 0, aim_nth = 0;
    uint64_t delay = 0;
    char seedarg[32], steparg[8], txnarg[24], ntxnarg[24], how[64];
    char detail[160];
    Child c;
    Expect x;

    uint64_t pick = cl_below(&rng, 100);
    mode = pick < 10 ? M_EARLY : pick < 58 ? M_TIMED : pick < 82 ? M_AIMED
                                                               : M_STEP;
    S.runs++;
    S.mode[mode]++;
    unlink(logpath);
    /* The store as the run found it, to replay the run's transactions. */
    {
      char snap[PATH_MAX];
      pjoin(snap, sizeof snap, work, "before-run");
      copy_dir(store, snap);
    }
    snprintf(seedarg, sizeof seedarg, "%llu", (unsigned long long)run_seed);

    if (mode == M_STEP) {
      step = (long)cl_range(&rng, 1, 10);
      step_txn = (long)cl_range(&rng, 1, 4);
      snprintf(steparg, sizeof steparg, "%ld", step);
      snprintf(txnarg, sizeof txnarg, "%ld", step_txn);
      snprintf(ntxnarg, sizeof ntxnarg, "%ld", step_txn + 40);
      char *extra[] = {"-c", steparg, "-t", txnarg, "-n", ntxnarg, store,
                       logpath, seedarg, NULL};
      spawn(&c, extra);
      status = finish_wait(&c, 30000, &hung);
      snprintf(detail, sizeof detail, "step %ld armed at txn %ld", step,
               step_txn);
    } else {
      char *extra[] = {store, logpath, seedarg, NULL};
      spawn(&c, extra);
      if (mode == M_EARLY) {
        delay = cl_below(&rng, 4000);
        sleep_us(delay);
        snprintf(detail, sizeof detail, "killed %llu us after fork",
                 (unsigned long long)delay);
      } else if (!wait_count(&c, &c.ready, 1, 10000)) {
        hung = !c.eof;
        snprintf(detail, sizeof detail, "never ready");
      } else if (mode == M_TIMED) {
        delay = cl_below(&rng, 30000);
        sleep_us(delay);
        snprintf(detail, sizeof detail, "killed %llu us after ready",
                 (unsigned long long)delay);
      } else {
        double span = S.commit_ema > 0 ? S.commit_ema * 1.3 : 3000;
        aim_nth = (long)cl_range(&rng, 1, 3);
        delay = cl_below(&rng, (uint64_t)span + 1);
        if (wait_count(&c, &c.begins, aim_nth, 10000)) sleep_us(delay);
        else hung = !c.eof;
        snprintf(detail, sizeof detail,
                 "killed %llu us into commit %ld (average commit %.0f us)",
                 (unsigned long long)delay, aim_nth, S.commit_ema);
      }
      status = finish(&c, 1);
    }

    killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    describe_status(status, how, sizeof how);
    if (hung || !(killed || (WIFEXITED(status) &&
                             (WEXITSTATUS(status) == CL_EXIT_CRASH ||
                              WEXITSTATUS(status) == CL_EXIT_DONE)))) {
      S.crasher_failed++;
      S.failed++;
      if (nfail_reported < MAX_FAIL_REPORTS)
        printf("FAIL run %ld: crasher %s%s (mode %s, seed %s, %s)\n", run,
               hung ? "hung, then " : "", how, mode_names[mode], seedarg,
               detail);
      nfail_reported++;
      /* The store may still be checked: fall through. */
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == CL_EXIT_DONE &&
               mode != M_STEP) {
      S.exited_before_kill++;
    }
    if (mode == M_STEP && WIFEXITED(status) &&
        WEXITSTATUS(status) == CL_EXIT_CRASH)
      S.step[step]++;

    /* The store as the crash left it, for a failure report. */
    {
      char snap[PATH_MAX];
      pjoin(snap, sizeof snap, work, "last-crash");
      copy_dir(store, snap);
    }
    {
      char jp[PATH_MAX];
      pjoin(jp, sizeof jp, store, CL_JOURNAL);
      journal = cl_journal_hot(jp);
      S.hot_journal += journal;
      S.strays_before_open += count_strays(store) > 0;
      /* Sometimes interrupt the recovery too. */
      if (journal && cl_chance(&rng, 30)) {
        Child vc;
        char *extra[] = {"-n", "0", store, logpath, seedarg, NULL};
        double span = S.open_ema > 0 ? S.open_ema * 1.5 : 2000;
        uint64_t d = cl_below(&rng, (uint64_t)span + 1);
        int vs;
        victim = 1;
        S.victims++;
        spawn(&vc, extra);
        if (wait_count(&vc, &vc.opens, 1, 10000)) sleep_us(d);
        vs = finish(&vc, 1);
        if (WIFSIGNALED(vs) && WTERMSIG(vs) == SIGKILL) S.victims_killed++;
        else if (!WIFEXITED(vs) || WEXITSTATUS(vs) != CL_EXIT_DONE) {
          char vh[64];
          describe_status(vs, vh, sizeof vh);
          S.crasher_failed++;
          S.failed++;
          if (nfail_reported < MAX_FAIL_REPORTS)
            printf("FAIL run %ld: recovering open %s\n", run, vh);
          nfail_reported++;
        }
        if (exists(jp)) S.victim_journal_left++;
      }
    }

    if (!(killed || (WIFEXITED(status) && (WEXITSTATUS(status) == CL_EXIT_CRASH ||
                                           WEXITSTATUS(status) == CL_EXIT_DONE))))
      {
        /* A failed crasher: only resynchronise with whatever is there. */
        inspect(&v);
        if (v.ok) current = v.engine_sum;
        continue;
      }

    read_log(current, &x);
    inspect(&v);
    int crashed = killed || WEXITSTATUS(status) == CL_EXIT_CRASH;
    int ok = v.ok && x.ok;
    const char *outcome = "?";
    if (ok) {
      if (x.last_txn == 0) {
        ok = v.engine_sum == current;
        outcome = "no transaction logged";
        if (ok) S.out_none += crashed;
      } else if (x.last_done) {
        ok = v.engine_sum == x.post;
        outcome = "after (commit returned)";
        if (ok) S.out_done += crashed;
      } else if (v.engine_sum == x.pre && x.pre == x.post) {
        outcome = "unchanged (pre = post)";
        S.out_same += crashed;
      } else if (v.engine_sum == x.pre) {
        outcome = "before";
        S.out_before += crashed;
      } else if (v.engine_sum == x.post) {
        outcome = "after";
        S.out_after += crashed;
      } else {
        ok = 0;
      }
    }
    if (crashed) S.checked++;
    if (crashed && ok) S.checked_ok++;
    if (verbose)
      printf("run %ld: %s, %s, %s, txn %lld%s%s: %s%s\n", run, mode_names[mode],
             detail, how, x.last_txn, x.last_done ? " done" : "",
             journal ? ", hot journal" : "", ok ? outcome : "WRONG",
             victim ? " (recovery interrupted once)" : "");
    if (!ok) {
      char fdir[PATH_MAX], snap[PATH_MAX], cmd[PATH_MAX];
      S.failed++;
      if (nfail_reported < MAX_FAIL_REPORTS) {
        printf("FAIL run %ld: mode %s, crasher seed %s, %s; crasher %s\n", run,
               mode_names[mode], seedarg, detail, how);
        fail_note("last logged txn %lld%s, pre=%016llx post=%016llx; "
                  "state before the run %016llx",
                  x.last_txn, x.last_done ? " (done)" : "",
                  (unsigned long long)x.pre, (unsigned long long)x.post,
                  (unsigned long long)current);
        fail_note("after open: engine %016llx, files %016llx; journal at "
                  "crash: %s%s",
                  (unsigned long long)v.engine_sum,
                  (unsigned long long)v.file_sum, journal ? "yes" : "no",
                  victim ? " (recovery interrupted once)" : "");
        if (!x.ok) fail_note("log: %s", x.why);
        if (!v.ok) fail_note("store: %s", v.why);
        {
          char fname[32];
          snprintf(fname, sizeof fname, "fail-%ld", run);
          pjoin(fdir, sizeof fdir, work, fname);
        }
        pjoin(snap, sizeof snap, work, "last-crash");
        rename(snap, fdir);
        pjoin(cmd, sizeof cmd, fdir, "expect.log");
        copy_file(logpath, cmd);
        pjoin(snap, sizeof snap, work, "before-run");
        pjoin(cmd, sizeof cmd, fdir, "before");
        rename(snap, cmd);
        if (mode == M_STEP)
          fail_note("replay: copy %s to a new directory D, then run "
                    "crasher -c %ld -t %ld -n %ld D D.log %s",
                    cmd, step, step_txn, step_txn + 40, seedarg);
        else
          fail_note("replay the same transactions: copy %s to a new "
                    "directory D, then run crasher D D.log %s (and kill it)",
                    cmd, seedarg);
        fail_note("the store as the crash left it: %s (before the run: "
                  "its before/)", fdir);
      }
      nfail_reported++;
      keep = 1;
    }
    if (v.ok) current = v.engine_sum;
  }

  double secs = (double)(cl_now_us() - t_start) / 1e6;
  printf("crash: %ld runs, %ld crashes checked in %.1f s\n", S.runs, S.checked,
         secs);
  printf("  modes: timed %ld, aimed %ld, early %ld, step %ld (by step 1-10:",
         S.mode[M_TIMED], S.mode[M_AIMED], S.mode[M_EARLY], S.mode[M_STEP]);
  for (int k = 1; k <= 10; k++) printf(" %ld", S.step[k]);
  printf(")\n");
  printf("  outcomes: before %ld, after %ld, after a returned commit %ld, "
         "unchanged (pre = post) %ld, before any transaction %ld\n",
         S.out_before, S.out_after, S.out_done, S.out_same, S.out_none);
  printf("  hot journal left by %ld crashes; stray files by %ld; recovery "
         "interrupted %ld times (%ld killed, journal still there %ld)\n",
         S.hot_journal, S.strays_before_open, S.victims, S.victims_killed,
         S.victim_journal_left);
  printf("  commits reported %ld, mean %.0f us; data files longer than their "
         "rows %ld; bitmaps with nothing deleted %ld\n",
         S.commits, S.commits ? S.commit_us_sum / (double)S.commits : 0.0,
         S.longer_data, S.empty_bitmaps);
  if (S.exited_before_kill)
    printf("  crasher finished before its kill %ld times\n",
           S.exited_before_kill);
  if (S.checked < kills && S.failed == 0) {
    printf("crash: only %ld crashes in %ld runs\n", S.checked, S.runs);
    S.failed++;
  }
  if (keep || S.failed) {
    printf("crash: files kept in %s\n", work);
  } else {
    rm_rf(work);
  }
  printf("%ld passed, %ld failed\n", S.checked_ok, S.failed);
  return S.failed ? 1 : 0;
}
