#!/bin/sh
# test/lint_alloc.sh — every allocation of src/ goes through alloc.h's
# npk_malloc/npk_calloc/npk_realloc/npk_free/npk_strdup (or SQLite's own
# allocator in the SQLite layer), so that a host's allocator and SQLite's
# fault injection reach all of them.  Prints each direct call of libc's
# allocator outside src/store_alloc.c and fails if there is one.  A call
# that must stay libc's says so with a "/* libc */" comment on its line.
#
#   test/lint_alloc.sh [SRCDIR]      SRCDIR: the top of the source tree
set -eu
top=${1:-$(dirname "$0")/..}
# Calls, not words in comments: the name right after a character that
# cannot end an identifier or member, then "(".  Comment lines (starting
# with "**" or "/*") are skipped.
found=$(grep -nE '(^|[^A-Za-z0-9_.>])(malloc|calloc|realloc|free|strdup|strndup|reallocarray|asprintf|vasprintf)[[:space:]]*\(' \
          "$top"/src/*.c "$top"/src/*.h |
        grep -v '^[^:]*/store_alloc\.c:' |
        grep -vE '^[^:]*:[0-9]+:[[:space:]]*(\*\*|/\*)' |
        grep -v '/\* libc \*/' || true)
if [ -n "$found" ]; then
  echo "direct calls of libc's allocator (use npk_malloc & co., alloc.h):"
  echo "$found"
  exit 1
fi
exit 0
