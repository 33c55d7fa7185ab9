#!/bin/sh
# test/tsan.sh — "make tsan": the C tests that run threads, built again with
# ThreadSanitizer in tsan/ (under the build tree) and run.  Sessions of one
# store in several threads share its catalog, mappings, retire list,
# descriptor list, guard slots and counters; this is what finds two of them
# touching one thing unordered.  Not part of make check: the build takes
# about half a minute and the runs a few seconds, on top of the usual one.
#
# make passes, in the environment:
#   TSAN_CC        a compiler with -fsanitize=thread (gcc or clang)
#   TSAN_CFLAGS    its flags
#   NPK_SOURCES    the engine's sources, relative to the source tree
#   NPK_SQL_SOURCES  the SQLite layer's (built with SQLITE_CORE, as in
#                  libnumpack.a); SQLITE3_CFLAGS SQLITE3_LIBS
#   SRCDIR BUILDDIR  the trees; PTHREAD_CFLAGS PTHREAD_LIBS LIBM
#
# Each program is a test; a report of ThreadSanitizer fails it.  The store
# tests are run for their thread cases only (NUMPACK_CTEST_ONLY): the rest
# start no thread.
set -e
out=$BUILDDIR/tsan
cflags="$TSAN_CFLAGS -std=c11 -include $BUILDDIR/config.h -I$SRCDIR/src $PTHREAD_CFLAGS"

mkdir -p "$out/obj" "$out/obj-sql"
echo 'int main(void) { return 0; }' >"$out/probe.c"
if ! $TSAN_CC $TSAN_CFLAGS "$out/probe.c" -o "$out/probe" \
    >"$out/probe.log" 2>&1; then
  cat "$out/probe.log"
  echo "$TSAN_CC cannot link -fsanitize=thread: its runtime is missing"
  echo "(Debian: apt-get install libtsan2 for gcc, libclang-rt-14-dev for clang)"
  exit 1
fi
# gcc warns that it does not model fences; the engine's fences order reads
# of the lock file's words, which are atomic loads it does model.
if $TSAN_CC $TSAN_CFLAGS -Wno-tsan -Werror "$out/probe.c" -o "$out/probe" \
    >/dev/null 2>&1; then
  cflags="$cflags -Wno-tsan"
fi

for s in $NPK_SOURCES; do
  echo "  CC (tsan) $s"
  # The tests use the engine's test hooks, which store_io.c holds.
  $TSAN_CC $cflags -DNPK_TEST_HOOKS -c "$SRCDIR/$s" \
    -o "$out/obj/$(basename "$s" .c).o"
done
for s in $NPK_SQL_SOURCES; do
  echo "  CC (tsan) $s"
  $TSAN_CC $cflags $SQLITE3_CFLAGS -DSQLITE_CORE -c "$SRCDIR/$s" \
    -o "$out/obj-sql/$(basename "$s" .c).o"
done

status=0
passed=0
failed=0
for run in "threads_test" "sql_threads_test" "knn_test" \
    "store_txn_test test_rank_threads"; do
  set -- $run
  t=$1
  shift
  echo "  CCLD (tsan) $out/$t"
  if test "$t" = sql_threads_test; then
    # Through SQL: the SQLite layer too, and SQLite (not instrumented,
    # its mutexes seen through pthreads).
    $TSAN_CC $cflags $SQLITE3_CFLAGS "$SRCDIR/test/$t.c" "$out"/obj-sql/*.o \
      "$out"/obj/*.o -o "$out/$t" $SQLITE3_LIBS $PTHREAD_LIBS $LIBM
  else
    $TSAN_CC $cflags "$SRCDIR/test/$t.c" "$out"/obj/*.o -o "$out/$t" \
      $PTHREAD_LIBS $LIBM
  fi
  log=$out/$t.log
  if (cd "$out" && NUMPACK_CTEST_ONLY="$*" \
        TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
        "./$t") >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "ok $t: $(tail -n 1 "$log")"
  else
    failed=$((failed + 1))
    status=1
    echo "FAIL $t (log $log):"
    grep -E 'WARNING: ThreadSanitizer|^FAIL|^ *#[0-9]+ ' "$log" | head -40 |
      sed 's/^/  /'
  fi
done
echo "tsan: $passed passed, $failed failed"
exit $status
