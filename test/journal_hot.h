/*
** journal_hot.h — one test rule for "may this journal be hot", shared by
** the unit tests (store_testutil.h) and the crash harness (crash/), as
** the engine's npk_journal_exists decides it: anything at the journal's
** name but its idle file, a regular file kept between commits whose first
** eight bytes are not a magic ("NPKJRNL1" or "NPKJRNL2").
*/
#ifndef NPK_JOURNAL_HOT_H
#define NPK_JOURNAL_HOT_H

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* 1 when the journal at PATH may be hot. */
static __attribute__((unused)) int test_journal_hot(const char *path) {
  struct stat sb;
  unsigned char m[8];
  FILE *f;
  int hot;
  if (lstat(path, &sb) != 0) return 0;
  if (!S_ISREG(sb.st_mode)) return 1;
  if (!(f = fopen(path, "rb"))) return 1;
  hot = fread(m, 1, 8, f) == 8 && memcmp(m, "NPKJRNL", 7) == 0;
  fclose(f);
  return hot;
}

#endif
