#!/bin/sh
# test/testfixture.sh — SQLite's own test harness for the SQLite this
# system has: builds `testfixture` from the Debian source package of the
# installed libsqlite3 (the same version, so its planner and its fault
# injection are the ones the extension meets), once, and prints the cache
# directory holding `testfixture` and SQLite's `test/` (tester.tcl,
# malloc_common.tcl).
#
#   test/testfixture.sh            prints the directory, building if needed
#
# The source comes through apt with a private configuration (sources,
# state and cache under the cache directory; the system's apt setup is
# read, never changed): the system's own archives, as deb-src.  apt checks
# the archive's signatures and dpkg-source the package's checksums.
#
# Cache: $NUMPACK_TESTFIXTURE_CACHE, or ~/.cache/numpack (XDG_CACHE_HOME);
# one directory per SQLite source version.  Where the source package cannot
# be had (not Debian), build testfixture from SQLite's source tree of the
# installed version (`./configure --with-tcl=... && make testfixture`) and
# point NUMPACK_TESTFIXTURE_DIR at a directory holding `testfixture` and
# that tree's `test/`.
set -eu

say() { printf 'testfixture.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

if [ -n "${NUMPACK_TESTFIXTURE_DIR:-}" ]; then
  [ -x "$NUMPACK_TESTFIXTURE_DIR/testfixture" ] &&
    [ -f "$NUMPACK_TESTFIXTURE_DIR/test/tester.tcl" ] ||
    die "NUMPACK_TESTFIXTURE_DIR=$NUMPACK_TESTFIXTURE_DIR has no testfixture and test/tester.tcl"
  echo "$NUMPACK_TESTFIXTURE_DIR"
  exit 0
fi

command -v dpkg-query >/dev/null 2>&1 ||
  die "not a Debian system: set NUMPACK_TESTFIXTURE_DIR (see the top of $0)"
version=$(dpkg-query -W -f='${source:Version}' libsqlite3-dev 2>/dev/null) ||
  die "libsqlite3-dev is not installed"
cache=${NUMPACK_TESTFIXTURE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/numpack}
dir=$cache/testfixture-$version
if [ -x "$dir/testfixture" ] && [ -f "$dir/test/tester.tcl" ]; then
  echo "$dir"
  exit 0
fi

for tool in apt-get dpkg-source make gcc; do
  command -v $tool >/dev/null 2>&1 || die "$tool is needed (apt-get install dpkg-dev make gcc)"
done
[ -f /usr/include/tcl8.6/tcl.h ] || [ -f /usr/include/tcl/tcl.h ] ||
  die "Tcl headers are needed (apt-get install tcl8.6-dev)"

work=$cache/build-$version.$$
rm -rf "$work"
mkdir -p "$work/apt/sources.list.d" "$work/apt/state/lists/partial" \
         "$work/apt/cache/archives/partial"
trap 'rm -rf "$work"' EXIT

# The system's archives, as source archives.
: > "$work/apt/sources.list"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] || continue
  sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" >> "$work/apt/sources.list"
done
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  sed 's/^Types:.*/Types: deb-src/' "$f" > "$work/apt/sources.list.d/${f##*/}"
done

apt_private() {
  apt-get -q -o Dir::Etc::SourceList="$work/apt/sources.list" \
    -o Dir::Etc::SourceParts="$work/apt/sources.list.d" \
    -o Dir::State="$work/apt/state" -o Dir::Cache="$work/apt/cache" \
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
}

say "fetching the source of sqlite3 $version"
apt_private update >&2 || die "apt-get update with the source archives failed"
(cd "$work" && apt_private source --download-only "sqlite3=$version") >&2 ||
  die "cannot download the source package sqlite3=$version"
(cd "$work" && dpkg-source -x ./*.dsc src) >/dev/null 2>&1 ||
  die "cannot unpack the source package (or its checksums do not match)"

say "building testfixture (about a minute)"
mkdir "$work/bld"
tcl=/usr/lib/tcl8.6
[ -d "$tcl" ] || tcl=$(dirname "$(find /usr/lib -name tclConfig.sh | head -n 1)")
(cd "$work/bld" && ../src/configure --with-tcl="$tcl" >/dev/null &&
 make -j"$(nproc 2>/dev/null || echo 2)" testfixture >/dev/null 2>&1) ||
  die "building testfixture failed (in $work/bld)"

mkdir -p "$cache"
rm -rf "$dir.new"
mkdir "$dir.new"
cp "$work/bld/testfixture" "$dir.new/"
cp -R "$work/src/test" "$dir.new/test"
rm -rf "$dir"
mv "$dir.new" "$dir"
echo "$dir"
