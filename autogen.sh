#!/bin/sh
# autogen.sh — generate configure and Makefile.in from a git checkout.
set -e
cd "$(dirname "$0")"
# aclocal wants the macro directory to exist before libtoolize fills it.
mkdir -p m4
exec autoreconf -fi
