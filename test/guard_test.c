/*
** guard_test.c — the SIGBUS handler the engine installs when it first maps
** a data file (store_guard.c) leaves every SIGBUS that is not a fault in
** its own mappings to the disposition the program had set before: ignored,
** default (the process dies of SIGBUS), or the program's handler, with or
** without SA_SIGINFO.  The engine installs its handler once per process,
** so each case runs in a child forked before anything was mapped.
*/
#include <signal.h>
#include <sys/wait.h>

#include "store_testutil.h"

static volatile sig_atomic_t handled;  /* the program's handler ran */

static void plain_handler(int sig) { handled = sig; }

static void info_handler(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  handled = si && si->si_signo == sig ? sig : -1;
}

/* Set SIGBUS to HANDLER (plain_handler, SIG_IGN or SIG_DFL; info_handler
** when INFO) with FLAGS, map a data file through the engine, then send
** SIGBUS to ourselves.
** Exits 10 if the program's handler ran, 0 if the process lived on
** without it, 3 if setup failed. */
static void child(void (*handler)(int), int info, int flags, const char *dir) {
  struct sigaction sa;
  NpkStore *st;
  NpkSession *s;
  const void *p;
  int32_t v[4] = {1, 2, 3, 4};
  uint64_t shape[1] = {4};
  memset(&sa, 0, sizeof sa);
  if (info) sa.sa_sigaction = info_handler;
  else sa.sa_handler = handler;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGBUS, &sa, NULL) != 0) _exit(3);
  s = tu_open(dir, NPK_OPEN_CREATE, &st);
  if (!s || npk_save(s, "a", NPK_INT32, 1, shape, v) != NPK_OK ||
      npk_read_begin(s) != NPK_OK || npk_row_ptr(s, "a", 3, &p) != NPK_OK ||
      *(const int32_t *)p != 4)
    _exit(3);
  npk_read_end(s);
  raise(SIGBUS);
  _exit(handled == SIGBUS ? 10 : handled == 0 ? 0 : 4);
}

/* Run one case; the child's wait status. */
static int run(void (*handler)(int), int info, int flags) {
  Tmp t;
  int status = -1;
  pid_t pid;
  tu_tmp_init(&t);
  fflush(stdout);
  pid = fork();
  if (pid == 0) child(handler, info, flags, t.dir);
  if (pid > 0) waitpid(pid, &status, 0);
  tu_tmp_done(&t);
  return status;
}

static void test_ignored(void) {
  int st = run(SIG_IGN, 0, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  /* SA_SIGINFO set alongside SIG_IGN: still ignored. */
  st = run(SIG_IGN, 0, SA_SIGINFO);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_default(void) {
  int st = run(SIG_DFL, 0, 0);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS);
  st = run(SIG_DFL, 0, SA_SIGINFO);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS);
}

static void test_program_handler(void) {
  int st = run(plain_handler, 0, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 10);
  st = run(NULL, 1, SA_SIGINFO);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 10);
}

int main(void) {
  RUN(test_ignored);
  RUN(test_default);
  RUN(test_program_handler);
  return CTEST_END();
}
