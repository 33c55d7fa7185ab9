/*
** store_name.c — which names a store accepts: array names (as NumPack
** writes them, valid UTF-8 without '/' or ".."), file paths from a catalog
** or a segment manifest (relative, inside the store), and the names the
** engine keeps for its own files, which no array may claim.
*/
#include <string.h>

#include "store_int.h"

/* What a data or segment file name F would clash with, or NULL: the
** engine's own files, and the names it gives backups, new files and
** bitmaps (a commit would overwrite them, opening a store would sweep
** some away). */
const char *npk_reserved_name(const char *f) {
  size_t n = strlen(f);
  if (strcmp(f, NPK_CATALOG) == 0 || strcmp(f, NPK_CATALOG "-tmp") == 0)
    return "the store's catalog";
  if (strcmp(f, NPK_LOCKFILE) == 0) return "the store's lock file";
  if (strcmp(f, NPK_JOURNAL) == 0 || strcmp(f, NPK_JOURNAL_SPARE) == 0)
    return "the store's journal";
  if (n > 7 && strcmp(f + n - 7, "-npkbak") == 0)
    return "a name kept for the backups of a commit";
  if (strchr(f, '/')) return NULL;
  if (strncmp(f, "npktmp-", 7) == 0)
    return "a name kept for the new files of a commit";
  if (strncmp(f, "deleted_", 8) == 0 &&
      ((n > 13 && strcmp(f + n - 5, ".npkb") == 0) ||
       (n > 17 && strcmp(f + n - 9, ".npkb-tmp") == 0)))
    return "a name kept for deletion bitmaps";
  return NULL;
}

/* Valid UTF-8, no overlong forms or surrogates. */
static int utf8_valid(const unsigned char *s) {
  while (*s) {
    unsigned c = *s, need, min;
    uint32_t cp;
    if (c < 0x80) {
      s++;
      continue;
    }
    if ((c & 0xE0) == 0xC0) need = 1, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) need = 2, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) need = 3, cp = c & 0x07, min = 0x10000;
    else return 0;
    for (unsigned i = 1; i <= need; i++) {
      if ((s[i] & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    s += need + 1;
  }
  return 1;
}

int npk_name_valid(const char *name) {
  size_t n;
  if (!name) return 0;
  n = strlen(name);
  if (n == 0 || n > NPK_MAX_NAME) return 0;
  if (strchr(name, '/') || strstr(name, "..")) return 0;
  return utf8_valid((const unsigned char *)name);
}

/* A path from the catalog or a manifest must stay inside the store. */
int npk_relpath_valid(const char *p) {
  const char *s = p;
  if (!*p || *p == '/' || strlen(p) > NPK_MAX_RELPATH) return 0;
  while (*s) {
    const char *e = strchr(s, '/');
    size_t len = e ? (size_t)(e - s) : strlen(s);
    if (len == 0 || (len == 2 && s[0] == '.' && s[1] == '.') ||
        (len == 1 && s[0] == '.'))
      return 0;
    if (!e) break;
    s = e + 1;
  }
  return utf8_valid((const unsigned char *)p);
}
