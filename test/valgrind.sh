#!/bin/sh
# valgrind.sh — the Tcl test scripts under valgrind's memcheck (make
# check-valgrind).  Fails when memcheck reports an error or a definite leak
# in any script.  The scripts' own results are shown but do not decide: under
# valgrind, SQLite's text-to-REAL conversion loses the last bits of values
# near DBL_MAX (valgrind computes long double in 64 bits), which a few
# exact-value tests notice.
#
# The scripts run on SQLite's testfixture (test/testfixture.sh), as in make
# check; their results are the "N errors out of M tests" lines.
#
# Environment: NUMPACK_SO, NUMPACK_SRCDIR (set by make), VALGRIND_TESTS
# (default: every test/*.test), NUMPACK_TESTFIXTURE_DIR (default: what
# test/testfixture.sh prints), NUMPACK_TCLSH (default: tclsh).
set -u
srcdir=${NUMPACK_SRCDIR:-$(dirname "$0")/..}
work=${TMPDIR:-/tmp}/numpack-valgrind.$$
tests=${VALGRIND_TESTS:-$(ls "$srcdir"/test/*.test)}
bad=0
if ! command -v valgrind >/dev/null 2>&1; then
  echo "valgrind.sh: valgrind is not installed (apt-get install valgrind)"
  exit 1
fi
fixture=${NUMPACK_TESTFIXTURE_DIR:-$(sh "$srcdir/test/testfixture.sh")} || exit 1
export NUMPACK_TESTFIXTURE_DIR=$fixture NUMPACK_TCLSH=${NUMPACK_TCLSH:-tclsh}
for t in $tests; do
  name=$(basename "$t" .test)
  dir=$work/$name
  mkdir -p "$dir"
  (cd "$dir" && NUMPACK_TESTTMP=$dir valgrind -q --error-exitcode=99 \
      --leak-check=full --errors-for-leak-kinds=definite \
      --show-leak-kinds=definite "$fixture/testfixture" "$t" > out 2>&1)
  rc=$?
  result=$(grep -E '^[0-9]+ (passed|errors out of)' "$dir/out" | tail -n 1)
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
