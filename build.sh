#!/usr/bin/env bash
# build.sh — one command from a fresh checkout on Debian 12 to a built
# extension: installs the missing build and test packages, generates and
# runs configure, builds, then optionally runs the demo or the test suite.
#
#   ./build.sh          build only
#   ./build.sh demo     build, then run sql/demo.sql in the sqlite3 shell
#   ./build.sh test     build, then run every test (make check), then the
#                       whole suite again built with AddressSanitizer and
#                       UndefinedBehaviorSanitizer (build-sanitize/), and
#                       build once more with clang and -Werror (build-clang/)
#
# Extra arguments after the command go to configure on its first run,
# e.g. ./build.sh test --enable-sanitizers (in a clean tree).
set -euo pipefail
cd "$(dirname "$0")"

action=${1:-build}
[ $# -gt 0 ] && shift
case $action in
  build|demo|test) ;;
  *) echo "usage: $0 [build|demo|test] [configure options]" >&2; exit 2 ;;
esac

packages=(autoconf autoconf-archive automake libtool pkg-config
          libsqlite3-dev sqlite3 tcl libsqlite3-tcl python3-numpy
          python3-pytest python3-dask python3-distributed make gcc clang
          clang-format
          dpkg-dev tcl8.6-dev)

install_missing() {
  local missing=() p sudo=
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "build.sh: not a Debian system; install these yourself:" \
         "${packages[*]}" >&2
    return 0
  fi
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
      | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "build.sh: installing ${missing[*]}" >&2
  $sudo apt-get update
  $sudo env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
}

install_missing
[ -x configure ] || ./autogen.sh
[ -f Makefile ] || ./configure "$@"
make -j"$(nproc 2>/dev/null || echo 2)"

# make check in directory $1, its output kept in $2; the exit status is
# make's, not tee's.
check_in() {
  (cd "$1" && make check) 2>&1 | tee "$2"
  return "${PIPESTATUS[0]}"
}

# The "N passed, N failed" line a check run ended with, as "N N".
counts() {
  sed -n 's/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed.*/\1 \2/p' "$1" | tail -n 1
}

case $action in
  demo) exec sqlite3 -bail :memory: -cmd '.load ./numpack' < sql/demo.sql ;;
  test)
    log=$(mktemp -d)
    trap 'rm -rf "$log"' EXIT
    status=0
    check_in . "$log/plain" || status=1
    # The same suite built with the sanitizers, from the distribution's
    # files in a tree of its own, so that this tree's build stays as it is.
    echo "build.sh: building again with --enable-sanitizers in build-sanitize/"
    rm -rf build-sanitize
    make distdir distdir=build-sanitize >/dev/null
    (cd build-sanitize && ./configure --enable-sanitizers >/dev/null &&
     make -j"$(nproc 2>/dev/null || echo 2)" >/dev/null) || status=1
    check_in build-sanitize "$log/sanitize" || status=1
    # A second compiler, every warning an error: the build is one test.
    echo "build.sh: building with clang -Werror in build-clang/"
    rm -rf build-clang
    make distdir distdir=build-clang >/dev/null
    if (cd build-clang && ./configure CC=clang >/dev/null &&
        make -j"$(nproc 2>/dev/null || echo 2)" CFLAGS='-O2 -g -Werror' all \
          >"$log/clang" 2>&1); then
      echo "build.sh: clang -Werror build: 1 passed, 0 failed"; pc=1; fc=0
    else
      tail -n 30 "$log/clang"
      echo "build.sh: clang -Werror build: 0 passed, 1 failed"; pc=0; fc=1
      status=1
    fi
    read -r p1 f1 <<<"$(counts "$log/plain")"
    read -r p2 f2 <<<"$(counts "$log/sanitize")"
    echo "plain build: ${p1:-0} passed, ${f1:-?} failed;" \
         "sanitizer build: ${p2:-0} passed, ${f2:-?} failed;" \
         "clang -Werror build: $pc passed, $fc failed"
    [ -n "${f1:-}" ] && [ -n "${f2:-}" ] || status=1
    echo "$(( ${p1:-0} + ${p2:-0} + pc )) passed, $(( ${f1:-0} + ${f2:-0} + fc + (status && !${f1:-0} && !${f2:-0} && !fc) )) failed"
    exit $status
    ;;
esac
