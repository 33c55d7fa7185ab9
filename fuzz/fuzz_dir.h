/*
** fuzz_dir.h — files and directories for the fuzz targets that build a
** store directory (journal, store): paths, writing a file, removing a
** tree, and a snapshot of a tree to tell whether anything in it changed.
*/
#ifndef NPK_FUZZ_DIR_H
#define NPK_FUZZ_DIR_H

#include <stddef.h>

#include "store_int.h"

/* A fresh directory TMP/PREFIX.XXXXXX, its name into ROOT (room N),
** removed with everything in it when the process exits. */
void fuzz_make_root(char *root, size_t n, const char *tmp, const char *prefix);
/* "A/B" in one of 4 rotating buffers. */
const char *fuzz_path(const char *a, const char *b);
/* PATH created afresh (or emptied) holding the N bytes at P. */
void fuzz_write_file(const char *path, const void *p, size_t n);
/* PATH and everything under it removed, never following a link. */
void fuzz_remove_tree(const char *path);
/* Append to B every entry under DIR, sorted, except those whose names
** start with SKIP (if not NULL): its name, type, and the target of a link
** or, if BYTES, the bytes of a file of at most 1 MiB, else its inode, size
** and times (which any write moves, even one that leaves the bytes as
** they were; a file a journal lengthened may be sparse terabytes). */
void fuzz_snapshot(const char *dir, const char *skip, int bytes, NpkBuf *b);

#endif /* NPK_FUZZ_DIR_H */
