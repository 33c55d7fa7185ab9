#!/bin/sh
# valgrind.sh — the Tcl test scripts under valgrind's memcheck (make
# check-valgrind).  Fails when memcheck reports an error or a definite leak
# in any script.  The scripts' own results are shown but do not decide: under
# valgrind, SQLite's text-to-REAL conversion loses the last bits of values
# near DBL_MAX (valgrind computes long double in 64 bits), which a few
# exact-value tests notice.
#
# Environment: NUMPACK_SO, NUMPACK_SRCDIR (set by make), VALGRIND_TESTS
# (default: every test/*.test).
set -u
srcdir=${NUMPACK_SRCDIR:-$(dirname "$0")/..}
work=${TMPDIR:-/tmp}/numpack-valgrind.$$
tests=${VALGRIND_TESTS:-$(ls "$srcdir"/test/*.test)}
bad=0
if ! command -v valgrind >/dev/null 2>&1; then
  echo "valgrind.sh: valgrind is not installed (apt-get install valgrind)"
  exit 1
fi
for t in $tests; do
  name=$(basename "$t" .test)
  dir=$work/$name
  mkdir -p "$dir"
  (cd "$dir" && NUMPACK_TESTTMP=$dir valgrind -q --error-exitcode=99 \
      --leak-check=full --errors-for-leak-kinds=definite \
      --show-leak-kinds=definite tclsh "$t" > out 2>&1)
  rc=$?
  result=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$dir/out" | tail -n 1)
  if [ $rc -eq 99 ] || grep -q '^==[0-9]*==' "$dir/out"; then
    echo "$name: memcheck errors ($result)"
    grep '^==[0-9]*==' "$dir/out" | head -40
    bad=1
  else
    echo "$name: memcheck clean ($result)"
  fi
done
rm -rf "$work"
exit $bad
