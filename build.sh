#!/usr/bin/env bash
# build.sh — one command from a fresh checkout on Debian 12 to a built
# extension: installs the missing build and test packages, generates and
# runs configure, builds, then optionally runs the demo or the test suite.
#
#   ./build.sh          build only
#   ./build.sh demo     build, then run sql/demo.sql in the sqlite3 shell
#   ./build.sh test     build, then run every test (make check)
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

packages=(autoconf automake libtool pkg-config libsqlite3-dev sqlite3 tcl
          libsqlite3-tcl python3-numpy python3-pytest make gcc)

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

case $action in
  demo) exec sqlite3 -bail :memory: -cmd '.load ./numpack' < sql/demo.sql ;;
  test) exec make check ;;
esac
