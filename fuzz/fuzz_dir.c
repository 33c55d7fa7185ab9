/*
** fuzz_dir.c — the file helpers fuzz_dir.h declares, shared by the fuzz
** targets that build a store directory and check what changed in it.
*/
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "fuzz_dir.h"

const char *fuzz_path(const char *a, const char *b) {
  static char ring[4][1400];
  static int next;
  char *p = ring[next++ % 4];
  snprintf(p, sizeof ring[0], "%s/%s", a, b);
  return p;
}

void fuzz_write_file(const char *path, const void *p, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(n == 0 || write(fd, p, n) == (ssize_t)n);
  close(fd);
}

void fuzz_remove_tree(const char *path) {
  struct stat sb;
  if (lstat(path, &sb) != 0) return;
  if (S_ISDIR(sb.st_mode)) {
    /* PATH may be one of fuzz_path's buffers, which the calls below
    ** reuse. */
    char *copy = strdup(path);
    DIR *d;
    struct dirent *de;
    FUZZ_CHECK(copy != NULL);
    d = opendir(copy);
    while (d && (de = readdir(d)) != NULL) {
      if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
        continue;
      fuzz_remove_tree(fuzz_path(copy, de->d_name));
    }
    if (d) closedir(d);
    rmdir(copy);
    free(copy);
  } else {
    unlink(path);
  }
}

static const char *made_root; /* fuzz_make_root's, for remove_root */

static void remove_root(void) { fuzz_remove_tree(made_root); }

void fuzz_make_root(char *root, size_t n, const char *tmp,
                    const char *prefix) {
  snprintf(root, n, "%s/%s.XXXXXX", tmp, prefix);
  FUZZ_CHECK(mkdtemp(root) != NULL);
  made_root = root;
  atexit(remove_root);
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void fuzz_snapshot(const char *dir, const char *skip, int bytes, NpkBuf *b) {
  char *names[128];
  int n = 0;
  DIR *d = opendir(dir);
  struct dirent *de;
  FUZZ_CHECK(d != NULL);
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
        (skip && strncmp(de->d_name, skip, strlen(skip)) == 0))
      continue;
    FUZZ_CHECK(n < 128);
    names[n++] = strdup(de->d_name);
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof names[0], cmp_name);
  for (int i = 0; i < n; i++) {
    char path[1400], buf[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    npk_buf_put(b, names[i], strlen(names[i]) + 1);
    FUZZ_CHECK(lstat(path, &sb) == 0);
    if (S_ISDIR(sb.st_mode)) {
      npk_buf_put(b, "d", 1);
      fuzz_snapshot(path, NULL, bytes, b);
    } else if (S_ISLNK(sb.st_mode)) {
      ssize_t k = readlink(path, buf, sizeof buf);
      npk_buf_put(b, "l", 1);
      if (k > 0) npk_buf_put(b, buf, (size_t)k);
    } else if (S_ISREG(sb.st_mode)) {
      npk_buf_put(b, "f", 1);
      npk_buf_u64(b, (uint64_t)sb.st_size);
      if (bytes && sb.st_size <= (1 << 20)) {
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        ssize_t k;
        FUZZ_CHECK(fd >= 0);
        while ((k = read(fd, buf, sizeof buf)) > 0)
          npk_buf_put(b, buf, (size_t)k);
        close(fd);
      } else {
        npk_buf_put(b, &sb.st_mtim, sizeof sb.st_mtim);
        npk_buf_put(b, &sb.st_ctim, sizeof sb.st_ctim);
        npk_buf_u64(b, (uint64_t)sb.st_ino);
      }
    } else {
      npk_buf_put(b, "o", 1);
    }
    npk_buf_put(b, "", 1);
    free(names[i]);
  }
}
