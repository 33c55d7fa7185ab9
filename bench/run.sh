#!/bin/sh
# bench/run.sh — the benchmark suite, run by "make bench".
#
# Measures the numpack module (NUMPACK_SO, set by make) against its
# baselines — NumPy files, native SQLite tables and, when it can be had,
# sqlite-vec's vec0 — on data it makes itself in bench/work/ (on the work
# tree's disk; removed at the end), and writes bench/results/results.md,
# results.json and ratios.png.  The cases are described in bench/*.py.
#
#   BENCH_SCALE=0.05 make bench     row counts × 0.05, for a quick run
#   BENCH_ONLY=binding make bench    only bench/cases_binding.py (any names of
#                                    cases_*.py, comma-separated)
#
# Needs Debian's /usr/bin/python3 with NumPy (its sqlite3 module can load
# extensions) and gcc.  Installs python3-matplotlib with apt-get when it is
# missing and this runs as root; without it the chart is skipped.  sqlite-vec
# 0.1.9 comes from the npm package sqlite-vec-linux-x64 (cached in
# ~/.cache/numpack-bench); without npm its columns read "n/a".
set -eu

here=$(cd "$(dirname "$0")" && pwd)
: "${NUMPACK_SO:=$here/../.libs/numpack.so}"
: "${BENCH_SCALE:=1.0}"
PY=${NUMPACK_PYTHON:-/usr/bin/python3}
VEC_VERSION=0.1.9
VEC_PACKAGE=sqlite-vec-linux-x64
work=$here/work
results=$here/results
cache=${XDG_CACHE_HOME:-$HOME/.cache}/numpack-bench/sqlite-vec-$VEC_VERSION

say() { printf '%s\n' "$*" >&2; }
die() { say "bench: $*"; exit 1; }

test -f "$NUMPACK_SO" || die "no module at $NUMPACK_SO (run make first)"
test -x "$PY" || die "$PY is missing (Debian's python3 is needed)"
"$PY" -c 'import numpy' 2>/dev/null ||
  die "$PY has no NumPy (apt-get install python3-numpy)"
"$PY" -c 'import sqlite3; sqlite3.connect(":memory:").enable_load_extension(True)' \
  2>/dev/null || die "$PY's sqlite3 module cannot load extensions"
command -v gcc >/dev/null 2>&1 ||
  die "gcc is needed for bench/blobsum.c and bench/syncfloor.c"

rm -rf "$work"
mkdir -p "$work" "$results"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# -- the chart needs matplotlib ------------------------------------------
if ! "$PY" -c 'import matplotlib' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing python3-matplotlib for the chart"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q python3-matplotlib >"$work/apt.log" 2>&1 ||
      { apt-get update -q >>"$work/apt.log" 2>&1 &&
        apt-get install -y -q python3-matplotlib >>"$work/apt.log" 2>&1; } ||
      say "could not install python3-matplotlib (see apt-get); no chart"
  else
    say "python3-matplotlib is missing and cannot be installed here; no chart"
  fi
fi

# -- the BLOB-row baseline's C function ---------------------------------
gcc -O2 -shared -fPIC -o "$work/blobsum.so" "$here/blobsum.c" ||
  die "cannot compile bench/blobsum.c (is libsqlite3-dev installed?)"
# -- the floor of a synced save, the same system calls alone --------------
gcc -O2 -shared -fPIC -o "$work/syncfloor.so" "$here/syncfloor.c" ||
  die "cannot compile bench/syncfloor.c"

# -- sqlite-vec, when it can be had ---------------------------------------
vec_so=
vec_why=
fetch_vec() {
  if [ -f "$cache/vec0.so" ]; then
    vec_so=$cache/vec0.so
    return
  fi
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) vec_why="$VEC_PACKAGE is built for Linux x86_64 only"; return ;;
  esac
  command -v npm >/dev/null 2>&1 || { vec_why="npm is not installed"; return; }
  mkdir -p "$work/npm"
  if ! (cd "$work/npm" &&
        npm pack --silent "$VEC_PACKAGE@$VEC_VERSION" >pack.log 2>&1); then
    vec_why="npm pack $VEC_PACKAGE@$VEC_VERSION failed: $(tail -n 1 "$work/npm/pack.log")"
    return
  fi
  (cd "$work/npm" && tar xzf ./*.tgz) || {
    vec_why="cannot unpack the $VEC_PACKAGE package"; return; }
  found=$(find "$work/npm" -name vec0.so | head -n 1)
  [ -n "$found" ] || { vec_why="the $VEC_PACKAGE package holds no vec0.so"; return; }
  mkdir -p "$cache" && cp "$found" "$cache/vec0.so" || {
    vec_so=$found; return; }   # uncached, but usable for this run
  vec_so=$cache/vec0.so
}
fetch_vec
if [ -z "$vec_so" ]; then
  say "sqlite-vec: n/a — $vec_why"
fi

cd "$here"
export PYTHONDONTWRITEBYTECODE=1
NUMPACK_SO=$NUMPACK_SO BENCH_SCALE=$BENCH_SCALE \
BENCH_BLOBSUM_SO=$work/blobsum.so BENCH_SYNCFLOOR_SO=$work/syncfloor.so \
BENCH_VEC0_SO=$vec_so \
BENCH_VEC0_WHY=$vec_why BENCH_WORK=$work BENCH_RESULTS=$results \
  "$PY" "$here/driver.py"
