#!/bin/sh
# fuzz/run.sh — "make fuzz": builds each fuzz target with clang's libFuzzer
# and the sanitizers in fuzz/libfuzzer/ (under the build tree), then runs
# each for FUZZ_SECONDS seconds on a working corpus that starts from
# fuzz/corpus/NAME.  What it finds is saved in fuzz/regressions/NAME, which
# make check replays from then on (fuzz/driver.c).  Installs nothing:
# without clang or its fuzzer runtime it names the Debian packages.
#
# make passes, in the environment:
#   FUZZ_TARGETS   target names (fuzz/fuzz_NAME.c)      FUZZ_SECONDS
#   FUZZ_ARGS      more libFuzzer options               FUZZ_CC  FUZZ_CFLAGS
#   NPK_SOURCES    the engine's sources, relative to the source tree
#   SRCDIR BUILDDIR  the trees; PTHREAD_CFLAGS PTHREAD_LIBS LIBM
set -e
out=$BUILDDIR/fuzz/libfuzzer
cflags="$FUZZ_CFLAGS -std=c11 -include $BUILDDIR/config.h -I$SRCDIR/src $PTHREAD_CFLAGS"

if ! command -v "$FUZZ_CC" >/dev/null 2>&1; then
  echo "make fuzz needs clang with libFuzzer:"
  echo "  apt-get install clang libclang-rt-14-dev  (Debian)"
  exit 1
fi
mkdir -p "$out/obj"
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n)' \
  '{ (void)d; (void)n; return 0; }' >"$out/probe.c"
if ! $FUZZ_CC $FUZZ_CFLAGS -fsanitize=fuzzer "$out/probe.c" -o "$out/probe" \
    >"$out/probe.log" 2>&1; then
  cat "$out/probe.log"
  echo "$FUZZ_CC cannot link -fsanitize=fuzzer: the libFuzzer runtime"
  echo "is missing (Debian: apt-get install libclang-rt-14-dev)"
  exit 1
fi

for s in $NPK_SOURCES; do
  echo "  CC (fuzz) $s"
  $FUZZ_CC $cflags -fsanitize=fuzzer-no-link -c "$SRCDIR/$s" \
    -o "$out/obj/$(basename "$s" .c).o"
done
for t in $FUZZ_TARGETS; do
  echo "  CCLD (fuzz) $out/fuzz_$t"
  $FUZZ_CC $cflags -fsanitize=fuzzer "$SRCDIR/fuzz/fuzz_$t.c" \
    "$SRCDIR/fuzz/fuzz_dir.c" "$out"/obj/*.o -o "$out/fuzz_$t" \
    $PTHREAD_LIBS $LIBM
done

status=0
found=
for t in $FUZZ_TARGETS; do
  work=$out/corpus/$t
  crashes=$SRCDIR/fuzz/regressions/$t
  log=$out/fuzz_$t.log
  dict=
  test -f "$SRCDIR/fuzz/$t.dict" && dict=-dict=$SRCDIR/fuzz/$t.dict
  mkdir -p "$work" "$crashes"
  echo "fuzz_$t: $FUZZ_SECONDS s (log $log)"
  if UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "$out/fuzz_$t" -max_total_time="$FUZZ_SECONDS" -timeout=10 \
       -print_final_stats=1 -artifact_prefix="$crashes/" $dict $FUZZ_ARGS \
       "$work" "$SRCDIR/fuzz/corpus/$t" >"$log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" | sed 's/^/  /'
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
      "$log" | sed 's/^/  /'
  else
    status=1
    found="$found $t"
    echo "  FOUND A BUG:"
    grep -E 'ERROR|invariant failed|Test unit written|^ *#[0-9]+ 0x' "$log" \
      | head -40 | sed 's/^/  /'
  fi
done
if test $status != 0; then
  echo "make fuzz: bugs found in:$found; the inputs are in"
  echo "fuzz/regressions/<target>/ (minimize with the target's"
  echo "-minimize_crash=1 -runs=100000 and keep the smallest)"
fi
exit $status
