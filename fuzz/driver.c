/*
** driver.c — replays inputs through a fuzz target without libFuzzer, so
** that the corpus runs under any C compiler as part of "make check".
**
**   fuzz_NAME [FILE-OR-DIRECTORY ...]
**
** Each file named, and each file directly inside each directory named
** (sorted; names starting with "." and README files skipped), is read into
** a buffer of exactly its size and passed to LLVMFuzzerTestOneInput.
** Without arguments it replays DIR/corpus/NAME and DIR/regressions/NAME,
** where DIR is $NUMPACK_FUZZ_DIR, or else the fuzz directory of the source
** tree this program was built from.
**
** Each file is also run cut short at every length (up to 4 KB) and with
** NUMPACK_FUZZ_MUTATIONS (default 32) deterministic small mutations, so
** that the smoke test probes around the seeds even without libFuzzer.
** When NUMPACK_TESTTMP names a directory (test/runner.tcl sets it), each
** derived input is first written to its file "derived-input", which the
** runner keeps when the program fails: a reproducer to copy into
** fuzz/regressions/NAME.
**
** A target aborts on a broken invariant, and the sanitizers (when built
** with them) abort on a memory error: either kills this program, and the
** line "run FILE" printed before each input names the culprit.  Otherwise
** the last line is "N passed, N failed", counting input files (an
** unreadable file or an empty corpus is a failure), as test/runner.tcl
** expects.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

#ifndef NPK_FUZZ_DIR
#define NPK_FUZZ_DIR "fuzz"
#endif

/* Inputs derived from each file by cutting it short, up to this length. */
#define PREFIX_MAX 4096

static int passed, failed;
static long mutations = 32;       /* NUMPACK_FUZZ_MUTATIONS */
static char *derived_path;        /* where derived inputs are saved, or NULL */
static unsigned long long derived;  /* derived inputs run */

/* Read PATH whole into a buffer of exactly its size (*PN bytes). */
static unsigned char *read_file(const char *path, size_t *pn) {
  FILE *f = fopen(path, "rb");
  unsigned char *p = NULL;
  long len;
  if (!f) return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 &&
      fseek(f, 0, SEEK_SET) == 0) {
    /* A zero-byte input still gets its own (empty) allocation, so that
    ** reading even its first byte is caught by AddressSanitizer. */
    p = malloc(len ? (size_t)len : 1);
    if (p && fread(p, 1, (size_t)len, f) != (size_t)len) {
      free(p);
      p = NULL;
    }
    *pn = (size_t)len;
  }
  fclose(f);
  return p;
}

/* Run N bytes at P, copied into an allocation of exactly N bytes. */
static void run_derived(const unsigned char *p, size_t n) {
  unsigned char *q = malloc(n ? n : 1);
  if (!q) return;
  if (n) memcpy(q, p, n);
  if (derived_path) {
    int fd = open(derived_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                  0644);
    if (fd >= 0) {
      if (n && write(fd, q, n) != (ssize_t)n) {
        /* Only a convenience: the run goes on without it. */
      }
      close(fd);
    }
  }
  LLVMFuzzerTestOneInput(q, n);
  free(q);
  derived++;
}

/* A small deterministic generator for the mutations (xorshift64). */
static uint64_t next_rand(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Run the inputs derived from P (N bytes): prefixes and mutations. */
static void run_variants(const unsigned char *p, size_t n) {
  static const unsigned char special[] = {
    0x00, 0x01, 0x7f, 0x80, 0xff, '0', '9', '-', ':', ',', '[', ']', '{',
    '}', '"', '\\', '\'', '(', ')', ' ', '\n', '.', '/'};
  uint64_t seed = 0x9E3779B97F4A7C15ull ^ n;
  unsigned char *q;
  for (size_t i = 0; i < n; i++) seed = seed * 0x100000001B3ull ^ p[i];
  if (!seed) seed = 1;
  for (size_t k = 0; k < n && k < PREFIX_MAX; k++) run_derived(p, k);
  q = malloc(n + 2);
  if (!q || n == 0) {
    free(q);
    return;
  }
  for (long m = 0; m < mutations; m++) {
    uint64_t r = next_rand(&seed);
    size_t at = (size_t)(r >> 8) % n, len = n;
    memcpy(q, p, n);
    switch (r & 7) {
      case 0: case 1:                              /* flip one bit */
        q[at] ^= (unsigned char)(1u << (r >> 4 & 7));
        break;
      case 2: case 3:                              /* a telling byte */
        q[at] = special[(r >> 40) % sizeof special];
        break;
      case 4:                                      /* drop a byte */
        memmove(q + at, q + at + 1, n - at - 1);
        len = n - 1;
        break;
      case 5:                                      /* repeat a byte */
        memmove(q + at + 1, q + at, n - at);
        len = n + 1;
        break;
      case 6:                                      /* a byte +- 1 */
        q[at] = (unsigned char)(q[at] + ((r >> 4 & 1) ? 1 : -1));
        break;
      default: {                                   /* overwrite 4 bytes */
        for (size_t i = at; i < at + 4 && i < n; i++)
          q[i] = (unsigned char)(r >> (8 * (i - at)));
        break;
      }
    }
    run_derived(q, len);
  }
  free(q);
}

static void run_file(const char *path) {
  size_t n = 0;
  unsigned char *p = read_file(path, &n);
  if (!p) {
    printf("FAIL %s: cannot read: %s\n", path, strerror(errno));
    failed++;
    return;
  }
  printf("run %s (%zu bytes)\n", path, n);
  fflush(stdout);
  LLVMFuzzerTestOneInput(p, n);
  run_variants(p, n);
  free(p);
  passed++;
}

static int skipped(const char *name) {
  return name[0] == '.' || strncmp(name, "README", 6) == 0;
}

/* Run PATH, a file or a directory of files; returns the inputs run. */
static int run_path(const char *path) {
  struct stat st;
  struct dirent **ents;
  int n, ran = 0;
  if (stat(path, &st) != 0) {
    printf("FAIL %s: %s\n", path, strerror(errno));
    failed++;
    return 0;
  }
  if (!S_ISDIR(st.st_mode)) {
    run_file(path);
    return 1;
  }
  n = scandir(path, &ents, NULL, alphasort);
  if (n < 0) {
    printf("FAIL %s: cannot list: %s\n", path, strerror(errno));
    failed++;
    return 0;
  }
  for (int i = 0; i < n; i++) {
    size_t len = strlen(path) + strlen(ents[i]->d_name) + 2;
    char *full = malloc(len);
    if (full && !skipped(ents[i]->d_name)) {
      snprintf(full, len, "%s/%s", path, ents[i]->d_name);
      if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
        run_file(full);
        ran++;
      }
    }
    free(full);
    free(ents[i]);
  }
  free(ents);
  return ran;
}

int main(int argc, char **argv) {
  const char *env;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if ((env = getenv("NUMPACK_FUZZ_MUTATIONS")) && *env)
    mutations = strtol(env, NULL, 10);
  if ((env = getenv("NUMPACK_TESTTMP")) && *env) {
    size_t len = strlen(env) + sizeof "/derived-input";
    if ((derived_path = malloc(len)))
      snprintf(derived_path, len, "%s/derived-input", env);
  }
  if (argc > 1) {
    for (int i = 1; i < argc; i++) run_path(argv[i]);
  } else {
    const char *dir = getenv("NUMPACK_FUZZ_DIR");
    static const char *const kinds[] = {"corpus", "regressions"};
    if (!dir || !*dir) dir = NPK_FUZZ_DIR;
    for (int k = 0; k < 2; k++) {
      size_t len = strlen(dir) + strlen(kinds[k]) + strlen(npk_fuzz_target) + 3;
      char *path = malloc(len);
      int ran;
      if (!path) return 2;
      snprintf(path, len, "%s/%s/%s", dir, kinds[k], npk_fuzz_target);
      ran = run_path(path);
      if (k == 0 && ran == 0) {
        printf("FAIL %s: no seed inputs\n", path);
        failed++;
      }
      free(path);
    }
  }
  printf("%llu derived inputs\n", derived);
  printf("%d passed, %d failed\n", passed, failed);
  free(derived_path);
  return failed ? 1 : 0;
}
