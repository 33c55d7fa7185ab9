/*
** store_write.c — the write operations of a store, NumPack's methods: save,
** append, replace, delete rows, drop, clone, compact (NumPack's update) and
** reset.  Each checks all of its input first, then changes the session's
** pending state (see store_txn.c) under an undo record; outside a
** transaction each is a transaction of its own.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_int.h"

/* ---- helpers --------------------------------------------------------- */

static int check_name(NpkSession *s, const char *name) {
  if (!npk_name_valid(name))
    return npk_err(&s->err, NPK_ERROR,
                   "invalid array name \"%s\": names are 1 to %d bytes of "
                   "UTF-8 without '/' or \"..\"",
                   name ? name : "(null)", NPK_MAX_NAME);
  return NPK_OK;
}

static int check_shape(NpkSession *s, const char *name, int dtype,
                       uint32_t ndim, const uint64_t *shape, uint64_t *total) {
  uint64_t rb;
  if (npk_dtype_size(dtype) == 0)
    return npk_err(&s->err, NPK_ERROR, "array \"%s\": unknown dtype code %d",
                   name, dtype);
  if (ndim < 1 || ndim > NPK_MAX_NDIM)
    return npk_err(&s->err, NPK_ERROR, "array \"%s\": ndim %u is outside 1..%d",
                   name, ndim, NPK_MAX_NDIM);
  if (shape[0] > NPK_MAX_ROWS)
    return npk_err(&s->err, NPK_ERROR,
                   "array \"%s\": %llu rows, more than "
                   "2^63-1",
                   name, (unsigned long long)shape[0]);
  if (npk_shape_bytes(dtype, ndim, shape, &rb, total))
    return npk_err(&s->err, NPK_ERROR, "array \"%s\": shape is too large",
                   name);
  return NPK_OK;
}

/* Position of NAME in the transaction's catalog, or NPK_NOTFOUND. */
static int find_pos(NpkSession *s, const char *name, int *pi) {
  *pi = name ? npk_catalog_find(&s->txn->cat, name) : -1;
  if (*pi < 0)
    return npk_err(&s->err, NPK_NOTFOUND, "no array \"%s\" in store %s",
                   name ? name : "(null)", s->store->dir);
  return NPK_OK;
}

/* The same, for an operation on the array's rows: its files are opened
** and checked first.  A data file another program cut short is refused
** before the transaction first changes the array, as a read refuses it
** (an append would fill the missing rows with zeros): here when SIZES is
** set, else by the caller, through the fstat it makes of the file anyway
** (npk_file_check_writable).  The transaction's own copy was checked when
** it was made. */
static int locate(NpkSession *s, const char *name, int sizes, int *pi) {
  NpkArray *a;
  int rc = find_pos(s, name, pi);
  if (rc) return rc;
  a = npk_cat_at(&s->txn->cat, *pi);
  if ((rc = npk_array_ready(s, a))) return rc;
  return a->pending || !sizes ? NPK_OK : npk_array_check_sizes(s, a);
}

/* Put A in place of the I-th array (or at the end when I < 0), with undo:
** a version of an array in its place is undone by putting the old one
** back (no copy of a catalog of thousands of arrays), an array added by
** restoring the whole catalog. */
static int put_array(NpkSession *s, int i, NpkArray *a) {
  NpkCatalog *cat = &s->txn->cat;
  int rc;
  /* The chunk of position I is copied (if shared) before anything
  ** changes, so that running out of memory for it changes nothing. */
  if (i >= 0 && npk_catalog_own(s->store, cat, i))
    rc = npk_err(&s->err, NPK_NOMEM, "out of memory");
  else if (i < 0) rc = npk_undo_catalog(s);
  else
    rc = npk_undo_push(s, NPK_U_SLOT, npk_cat_at(cat, i), (uint64_t)i, 0, NULL);
  if (rc) {
    npk_array_unref(s->store, a);
    return rc;
  }
  /* An array added goes after the committed ones, where the commit looks
  ** for added arrays anyway (pair_slots). */
  if (i >= 0) npk_txn_slot(s, i);
  if (i < 0) {
    if (npk_catalog_add(s->store, cat, a)) {
      npk_array_unref(s->store, a);
      return npk_err(&s->err, NPK_NOMEM, "out of memory");
    }
    return NPK_OK;
  }
  npk_array_unref(s->store, npk_catalog_put(cat, i, a));
  return NPK_OK;
}

/* A new array object with NAME, its data in a new temporary file. */
static int new_fresh(NpkSession *s, const char *name, int dtype, uint32_t ndim,
                     const uint64_t *shape, NpkArray **pa) {
  NpkStore *st = s->store;
  char tmpname[64];
  NpkArray *a = npk_array_new(name, dtype, ndim, shape);
  int rc;
  *pa = NULL;
  if (!a) return npk_err(&s->err, NPK_NOMEM, "out of memory");
  a->data_file = npk_malloc(strlen(name) + 11);
  a->seg = npk_calloc(1, sizeof *a->seg);
  snprintf(tmpname, sizeof tmpname, "npktmp-%ld-%u", (long)getpid(),
           ++s->txn->tmpseq);
  if (!a->data_file || !a->seg) {
    npk_array_unref(st, a);
    return npk_err(&s->err, NPK_NOMEM, "out of memory");
  }
  sprintf(a->data_file, "data_%s.npkd", name);
  if (!s->txn->marked) {
    rc = npk_lock_mark(s, NPK_MARK_NEWFILES);
    if (rc) {
      npk_array_unref(st, a);
      return rc;
    }
    s->txn->marked = 1;
  }
  rc = npk_file_open(st, tmpname, 1, &a->seg[0].file, &s->err);
  if (rc) {
    npk_array_unref(st, a);
    return rc;
  }
  a->nseg = 1;
  a->seg[0].rows = shape[0];
  a->pending = 1;
  a->fresh = 1;
  *pa = a;
  return NPK_OK;
}

/* Copy rows of SRC into the fresh array DST's file: every physical row, or
** only the live ones (compaction).  Overlay rows are taken from memory. */
static int copy_rows(NpkSession *s, NpkArray *src, NpkArray *dst,
                     int live_only) {
  NpkStore *st = s->store;
  NpkFile *to = dst->seg[0].file;
  uint64_t rb = src->row_bytes, out = 0;
  int rc = NPK_OK;
  if ((rc = npk_file_use(st, to, &s->err))) return rc;
  if (!live_only && !src->ov) {
    /* File to file, in pieces so that an interrupt is heard. */
    static const uint64_t piece = UINT64_C(1) << 26;
    for (int i = 0; i < src->nseg && rc == NPK_OK; i++) {
      NpkFile *from = src->seg[i].file;
      uint64_t n = src->seg[i].rows * rb, at = src->seg[i].first_row * rb;
      if ((rc = npk_file_flush(st, from, &s->err)) ||
          (rc = npk_file_use(st, from, &s->err)))
        break;
      for (uint64_t done = 0; rc == NPK_OK && done < n; done += piece) {
        uint64_t len = n - done < piece ? n - done : piece;
        rc = npk_check_interrupt(s);
        if (rc == NPK_OK)
          rc = npk_io_copy(st, from->fd, done, len, to->fd, at + done, to->path,
                           &s->err);
      }
      npk_file_done(from);
    }
    out = src->shape[0];
  } else if (rb > 0) {
    uint64_t chunk = rb >= (1u << 22) ? 1 : (1u << 22) / rb, pos = 0;
    uint64_t total = live_only ? npk_live_rows(src) : src->shape[0];
    unsigned char *buf;
    buf = npk_malloc((size_t)(chunk * rb));
    if (!buf) rc = npk_err(&s->err, NPK_NOMEM, "out of memory");
    if (rc == NPK_OK)
      rc = npk_io_reserve(st, to->fd, 0, total * rb, to->path, &s->err);
    while (rc == NPK_OK && out < total &&
           (rc = npk_check_interrupt(s)) == NPK_OK) {
      uint64_t n = total - out < chunk ? total - out : chunk;
      rc = live_only ? npk_array_copy_live(s, src, &pos, n, buf)
                     : npk_array_copy_range(s, src, out, n, buf);
      if (rc == NPK_OK)
        rc = npk_io_pwrite_bulk(st, to->fd, buf, (size_t)(n * rb), out * rb,
                                to->path, &s->err);
      out += n;
    }
    npk_free(buf);
  } else {
    out = live_only ? npk_live_rows(src) : src->shape[0];
  }
  npk_file_done(to);
  if (rc) return rc;
  to->size = out * rb;
  dst->shape[0] = out;
  dst->seg[0].rows = out;
  return NPK_OK;
}

/* A fresh copy of SRC named NAME: all rows (with SRC's bitmap), or only the
** live rows (no bitmap). */
static int fresh_copy(NpkSession *s, NpkArray *src, const char *name,
                      int live_only, NpkArray **pa) {
  NpkArray *a;
  int rc = new_fresh(s, name, src->dtype, src->ndim, src->shape, &a);
  if (rc) return rc;
  rc = copy_rows(s, src, a, live_only);
  if (rc == NPK_OK && !live_only && src->bm) {
    if (!(a->bm = npk_bm_copy(src->bm)))
      rc = npk_err(&s->err, NPK_NOMEM, "out of memory");
    a->bm_dirty = 1;
  }
  if (rc) {
    npk_array_unref(s->store, a);
    return rc;
  }
  *pa = a;
  return NPK_OK;
}

/* The session's own modifiable copy of the I-th array, its rows in one
** plain file: a segmented array is rewritten into data_<name>.npkd first. */
static int pend(NpkSession *s, int i, NpkArray **pa) {
  NpkCatalog *cat = &s->txn->cat;
  NpkArray *c = npk_cat_at(cat, i), *a;
  int rc;
  if (c->segmented) {
    rc = fresh_copy(s, c, c->name, 0, &a);
    if (rc == NPK_OK) rc = put_array(s, i, a);
    if (rc) return rc;
    *pa = a;
    return NPK_OK;
  }
  if (c->pending) {
    *pa = c;
    return NPK_OK;
  }
  a = npk_array_new(c->name, c->dtype, c->ndim, c->shape);
  if (!a) return npk_err(&s->err, NPK_NOMEM, "out of memory");
  a->data_file = npk_strdup(c->data_file);
  a->seg = npk_malloc(sizeof *a->seg);
  if (!a->data_file || !a->seg) goto oom;
  a->mtime = c->mtime;
  a->seg[0] = c->seg[0];
  a->seg[0].file->refs++;
  a->nseg = 1;
  if (c->bm && !(a->bm = npk_bm_copy(c->bm))) goto oom;
  a->has_bm_file = c->has_bm_file;
  a->bm_id = c->bm_id;
  a->pending = 1;
  a->base_rows = c->shape[0];
  rc = put_array(s, i, a);
  if (rc) return rc;
  *pa = a;
  return NPK_OK;
oom:
  npk_array_unref(s->store, a);
  return npk_err(&s->err, NPK_NOMEM, "out of memory");
}

/* Every row in ROWS exists and is live in A. */
static int check_rows(NpkSession *s, NpkArray *a, const uint64_t *rows,
                      uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    if (rows[i] >= a->shape[0])
      return npk_err(&s->err, NPK_RANGE,
                     "row %llu of \"%s\" is out of range (%llu rows)",
                     (unsigned long long)rows[i], a->name,
                     (unsigned long long)a->shape[0]);
    if (a->bm && !npk_bm_get(a->bm, rows[i]))
      return npk_err(&s->err, NPK_RANGE, "row %llu of \"%s\" is deleted",
                     (unsigned long long)rows[i], a->name);
  }
  return NPK_OK;
}

/* A bitmap of A may cover NBITS rows: always for an array with bytes (its
** data file bounds the bitmap to an eighth of it), up to
** NPK_MAX_ZW_BITMAP_ROWS for a zero-width array, which has no data to
** bound it.  WHAT names the refused operation. */
static int bm_room(NpkSession *s, const NpkArray *a, uint64_t nbits,
                   const char *what) {
  if (a->row_bytes || nbits <= NPK_MAX_ZW_BITMAP_ROWS) return NPK_OK;
  return npk_err(&s->err, NPK_ERROR,
                 "cannot %s array \"%s\": its rows "
                 "hold no bytes, and a deletion bitmap of %llu rows is over "
                 "the limit of %llu for such an array",
                 what, a->name, (unsigned long long)nbits,
                 (unsigned long long)NPK_MAX_ZW_BITMAP_ROWS);
}

/* ---- operations ------------------------------------------------------ */

int npk_save(NpkSession *s, const char *name, int dtype, uint32_t ndim,
             const uint64_t *shape, const void *data) {
  NpkArray *a = NULL;
  uint64_t total;
  int autoc, lvl, i, rc;
  if ((rc = check_name(s, name)) ||
      (rc = check_shape(s, name, dtype, ndim, shape, &total)) ||
      (rc = npk_scan_check(s, name, "save over")))
    return rc;
  if ((rc = npk_op_begin(s, &autoc, &lvl))) return rc;
  rc = new_fresh(s, name, dtype, ndim, shape, &a);
  if (rc == NPK_OK && total) {
    NpkFile *f = a->seg[0].file;
    rc = npk_file_use(s->store, f, &s->err);
    if (rc == NPK_OK) {
      rc = npk_io_reserve(s->store, f->fd, 0, total, f->path, &s->err);
      /* Its way to the disk starts at once: the commit's syncs of the
      ** directory and the journal then run while it is written. */
      if (rc == NPK_OK)
        rc = npk_io_pwrite_bulk(s->store, f->fd, data, (size_t)total, 0,
                                f->path, &s->err);
      npk_file_done(f);
    }
    f->size = total;
  }
  if (rc == NPK_OK) {
    i = npk_catalog_find(&s->txn->cat, name);
    rc = put_array(s, i, a);
  } else if (a) {
    npk_array_unref(s->store, a);
  }
  return npk_op_end(s, autoc, lvl, rc);
}

int npk_append(NpkSession *s, const char *name, int dtype, uint32_t ndim,
               const uint64_t *shape, const void *data) {
  NpkArray *a;
  NpkFile *f;
  uint64_t total, old;
  int autoc, lvl, i, rc;
  if ((rc = npk_op_begin(s, &autoc, &lvl))) return rc;
  if ((rc = locate(s, name, 0, &i))) goto done;
  a = npk_cat_at(&s->txn->cat, i);
  if ((rc = check_shape(s, name, dtype, ndim, shape, &total))) goto done;
  if (dtype != a->dtype) {
    rc = npk_err(&s->err, NPK_MISMATCH,
                 "cannot append %s rows to array \"%s\" of dtype %s",
                 npk_dtype_name(dtype), name, npk_dtype_name(a->dtype));
    goto done;
  }
  if (ndim != a->ndim ||
      memcmp(shape + 1, a->shape + 1, (ndim - 1) * sizeof *shape) != 0) {
    rc = npk_err(&s->err, NPK_MISMATCH,
                 "cannot append to array \"%s\": row shape differs", name);
    goto done;
  }
  {
    /* The rows after the append must still make a shape (check_shape):
    ** rows without bytes add up without growing any file. */
    uint64_t grown[NPK_MAX_NDIM], rb;
    memcpy(grown, a->shape, ndim * sizeof *grown);
    if (__builtin_add_overflow(a->shape[0], shape[0], &grown[0]) ||
        npk_shape_bytes(dtype, ndim, grown, &rb, NULL)) {
      rc = npk_err(&s->err, NPK_ERROR,
                   "array \"%s\": appending %llu rows to %llu makes too many "
                   "rows (more than 2^63-1, or more bytes)",
                   name, (unsigned long long)shape[0],
                   (unsigned long long)a->shape[0]);
      goto done;
    }
  }
  if (shape[0] == 0) goto done;
  if (a->bm && (rc = bm_room(s, a, a->shape[0] + shape[0], "append to")))
    goto done;
  if ((rc = pend(s, i, &a))) goto done;
  f = a->seg[0].file;
  if (!a->fresh && (rc = npk_txn_grow(s, a))) goto done;
  old = a->shape[0];
  rc = npk_file_append(s->store, f, data, (size_t)total, old * a->row_bytes,
                       &s->err);
  if (rc == NPK_OK)
    rc = npk_undo_push(s, NPK_U_ROWS, a, old, a->bm ? a->bm->nbits : 0, NULL);
  if (rc) goto done;
  if (f->size < (old + shape[0]) * a->row_bytes)
    npk_file_set_size(f, (old + shape[0]) * a->row_bytes);
  a->shape[0] += shape[0];
  a->seg[0].rows = a->shape[0];
  if (a->bm) {
    /* A short bitmap's deleted tail stays deleted; the new rows are live. */
    if (npk_bm_extend(a->bm, old, 0) || npk_bm_extend(a->bm, a->shape[0], 1)) {
      a->shape[0] = old;
      a->seg[0].rows = old;
      rc = npk_err(&s->err, NPK_NOMEM, "out of memory");
      goto done;
    }
    a->bm_dirty = 1;
  }
  s->txn->counts.appended += shape[0];
done:
  return npk_op_end(s, autoc, lvl, rc);
}

/* Undo for the rows about to be put in A's overlay for the first time:
** rows added since the innermost savepoint share one record, which takes
** out every slot from the first of them on (a record per row cost 72 bytes
** per row, for as long as its statement or savepoint lasted). */
static int undo_new_row(NpkSession *s, NpkArray *a) {
  NpkTxn *t = s->txn;
  NpkOverlay *ov = a->ov;
  size_t pos = ov->new_undo;
  if (t->nsp == 0) return NPK_OK;
  if (pos < t->nundo && pos >= t->sp[t->nsp - 1].undo_pos &&
      t->undo[pos].op == NPK_U_OVLNEW && t->undo[pos].arr == a)
    return NPK_OK;
  ov->new_undo = t->nundo;
  return npk_undo_push(s, NPK_U_OVLNEW, a, ov->n, 0, NULL);
}

int npk_replace_rows(NpkSession *s, const char *name, const uint64_t *rows,
                     uint64_t n, const void *data) {
  NpkArray *a;
  int autoc, lvl, i, rc;
  if ((rc = npk_op_begin(s, &autoc, &lvl))) return rc;
  if ((rc = locate(s, name, 0, &i))) goto done;
  if ((rc = check_rows(s, npk_cat_at(&s->txn->cat, i), rows, n))) goto done;
  if (n == 0 || npk_cat_at(&s->txn->cat, i)->row_bytes == 0) goto done;
  if ((rc = pend(s, i, &a))) goto done;
  /* Rows are replaced in place at COMMIT: the file must take writes, and
  ** still hold the committed rows. */
  if (!a->fresh && (rc = npk_file_check_writable(
                        s->store, a->seg[0].file, a->name,
                        a->base_rows * a->row_bytes, NULL, &s->err)))
    goto done;
  for (uint64_t k = 0; k < n && rc == NPK_OK; k++) {
    const unsigned char *src = (const unsigned char *)data + k * a->row_bytes;
    uint64_t row = rows[k];
    void *old = NULL;
    if (!a->fresh && row < a->base_rows) {
      if (!a->ov && !(a->ov = npk_ov_new(a->row_bytes))) {
        rc = npk_err(&s->err, NPK_NOMEM, "out of memory");
        break;
      }
      /* The row's undo first (or room for it): once the row has changed,
      ** its record must not fail.  The record for new rows is made whether
      ** or not this row is one: it takes out only slots given from now on,
      ** and the overlay is then searched once per row. */
      if ((rc = undo_new_row(s, a)) || (rc = npk_undo_room(s))) break;
      if ((rc = npk_ov_put(s->store, a->ov, row, src, &old, &s->err))) break;
      if (old) rc = npk_undo_push(s, NPK_U_OVL, a, row, 0, old);
    } else {
      const void *cur;
      NpkFile *f = a->seg[0].file;
      uint64_t mark = npk_map_faults(s);
      rc = npk_array_row(s, a, row, &cur);
      if (rc == NPK_OK && s->txn->nsp) {
        if (!(old = npk_malloc((size_t)a->row_bytes)))
          rc = npk_err(&s->err, NPK_NOMEM, "out of memory");
        else memcpy(old, cur, (size_t)a->row_bytes);
        if (rc == NPK_OK) rc = npk_map_check(s, mark, a->name);
      }
      if (rc == NPK_OK) rc = npk_file_flush(s->store, f, &s->err);
      if (rc == NPK_OK && (rc = npk_file_use(s->store, f, &s->err)) == NPK_OK) {
        rc = npk_io_pwrite(s->store, f->fd, src, (size_t)a->row_bytes,
                           row * a->row_bytes, f->path, &s->err);
        npk_file_done(f);
      }
      if (rc == NPK_OK) rc = npk_undo_push(s, NPK_U_TAIL, a, row, 0, old);
      else npk_free(old);
    }
  }
  /* A page of the spill file lost while the rows were put. */
  if (rc == NPK_OK && a->ov)
    rc = npk_ov_check(s->store, a->ov, a->name, &s->err);
  if (rc == NPK_OK) s->txn->counts.replaced += n;
done:
  return npk_op_end(s, autoc, lvl, rc);
}

int npk_delete_rows(NpkSession *s, const char *name, const uint64_t *rows,
                    uint64_t n) {
  NpkArray *a;
  uint64_t *cleared = NULL, ncleared = 0;
  int autoc, lvl, i, rc;
  if ((rc = npk_op_begin(s, &autoc, &lvl))) return rc;
  if ((rc = locate(s, name, 1, &i))) goto done;
  if ((rc = check_rows(s, npk_cat_at(&s->txn->cat, i), rows, n))) goto done;
  if (n == 0) goto done;
  if (!npk_cat_at(&s->txn->cat, i)->bm &&
      (rc = bm_room(s, npk_cat_at(&s->txn->cat, i),
                    npk_cat_at(&s->txn->cat, i)->shape[0], "delete rows of")))
    goto done;
  if ((rc = pend(s, i, &a))) goto done;
  if (!a->bm) {
    if (!(a->bm = npk_bm_new(a->shape[0], 1))) {
      rc = npk_err(&s->err, NPK_NOMEM, "out of memory");
      goto done;
    }
    if ((rc = npk_undo_push(s, NPK_U_BMNEW, a, 0, (uint64_t)a->bm_dirty, NULL)))
      goto done;
  }
  if (s->txn->nsp && !(cleared = npk_malloc((size_t)n * sizeof *cleared))) {
    rc = npk_err(&s->err, NPK_NOMEM, "out of memory");
    goto done;
  }
  for (uint64_t k = 0; k < n; k++) {
    if (!npk_bm_get(a->bm, rows[k])) continue; /* listed twice */
    npk_bm_set(a->bm, rows[k], 0);
    if (cleared) cleared[ncleared] = rows[k];
    ncleared++;
  }
  rc =
      npk_undo_push(s, NPK_U_BITS, a, ncleared, (uint64_t)a->bm_dirty, cleared);
  a->bm_dirty = 1;
  s->txn->counts.deleted += ncleared;
done:
  return npk_op_end(s, autoc, lvl, rc);
}

int npk_delete_slice(NpkSession *s, const char *name, uint64_t first,
                     uint64_t step, uint64_t count) {
  NpkArray *a;
  NpkBitmap *old = NULL;
  uint64_t live, p = 0, *cleared = NULL;
  int autoc, lvl, i, rc, tail, by_rows;
  if ((rc = npk_op_begin(s, &autoc, &lvl))) return rc;
  if ((rc = locate(s, name, 1, &i))) goto done;
  a = npk_cat_at(&s->txn->cat, i);
  live = npk_live_rows(a);
  if (count == 0) goto done;
  if (step == 0 || first >= live || count - 1 > (live - 1 - first) / step) {
    rc = npk_err(&s->err, NPK_RANGE,
                 "%llu rows from index %llu, %llu apart, "
                 "are out of range for \"%s\" (%llu rows)",
                 (unsigned long long)count, (unsigned long long)first,
                 (unsigned long long)step, name, (unsigned long long)live);
    goto done;
  }
  /* Every live row from FIRST on, of a zero-width array: the bitmap ends
  ** before them, rows past a bitmap's count being deleted. */
  tail = a->row_bytes == 0 && step == 1 && count == live - first;
  if (!a->bm &&
      (rc = bm_room(s, a, tail ? first : a->shape[0], "delete rows of")))
    goto done;
  if ((rc = pend(s, i, &a))) goto done;
  if (!a->bm) {
    /* No bitmap: logical indexes are physical rows. */
    if (!(a->bm = npk_bm_new(tail ? first : a->shape[0], 1))) {
      rc = npk_err(&s->err, NPK_NOMEM, "out of memory");
      goto done;
    }
    if ((rc = npk_undo_push(s, NPK_U_BMNEW, a, 0, (uint64_t)a->bm_dirty, NULL)))
      goto done;
    if (tail) goto deleted;
  }
  if (npk_bm_select(a->bm, first, &p)) {
    rc = npk_err(&s->err, NPK_NOMEM, "out of memory");
    goto done;
  }
  /* A savepoint takes the rows back from the smaller record: the list of
  ** rows cleared (8 bytes each), or a copy of the bitmap (a bit a row). */
  by_rows = !tail && count <= (a->bm->nbits + 63) / 64;
  if (s->txn->nsp && by_rows &&
      !(cleared = npk_malloc((size_t)count * sizeof *cleared))) {
    rc = npk_err(&s->err, NPK_NOMEM, "out of memory");
    goto done;
  }
  if (s->txn->nsp && !by_rows && !(old = npk_bm_copy(a->bm))) {
    rc = npk_err(&s->err, NPK_NOMEM, "out of memory");
    goto done;
  }
  /* Recorded before any bit changes, so that a failure leaves none
  ** changed; the list is filled in below. */
  if ((rc = by_rows ? npk_undo_push(s, NPK_U_BITS, a, count,
                                    (uint64_t)a->bm_dirty, cleared)
                    : npk_undo_push(s, NPK_U_BMSWAP, a, 0,
                                    (uint64_t)a->bm_dirty, old)))
    goto done;
  if (tail) {
    npk_bm_truncate(a->bm, p);
    goto deleted;
  }
  for (uint64_t k = 0; k < count; k++) {
    npk_bm_set(a->bm, p, 0);
    if (cleared) cleared[k] = p;
    if (k + 1 < count) p = npk_bm_skip(a->bm, p + 1, step - 1);
  }
deleted:
  a->bm_dirty = 1;
  s->txn->counts.deleted += count;
done:
  return npk_op_end(s, autoc, lvl, rc);
}

int npk_drop(NpkSession *s, const char *name) {
  NpkCatalog *cat;
  int autoc, lvl, i, rc;
  if ((rc = npk_scan_check(s, name, "drop"))) return rc;
  if ((rc = npk_op_begin(s, &autoc, &lvl))) return rc;
  /* Dropping needs none of the array's files: a damaged one goes too. */
  if ((rc = find_pos(s, name, &i)) || (rc = npk_undo_catalog(s))) goto done;
  cat = &s->txn->cat;
  npk_txn_slot(s, -1);
  if (npk_catalog_remove(s->store, cat, i))
    rc = npk_err(&s->err, NPK_NOMEM, "out of memory");
done:
  return npk_op_end(s, autoc, lvl, rc);
}

int npk_clone(NpkSession *s, const char *src, const char *dst) {
  NpkArray *a;
  int autoc, lvl, i, rc;
  if ((rc = check_name(s, dst))) return rc;
  if ((rc = npk_op_begin(s, &autoc, &lvl))) return rc;
  if ((rc = locate(s, src, 1, &i))) goto done;
  if (npk_catalog_find(&s->txn->cat, dst) >= 0) {
    rc = npk_err(&s->err, NPK_EXISTS, "array \"%s\" already exists in %s", dst,
                 s->store->dir);
    goto done;
  }
  rc = fresh_copy(s, npk_cat_at(&s->txn->cat, i), dst, 0, &a);
  if (rc == NPK_OK) rc = put_array(s, -1, a);
done:
  return npk_op_end(s, autoc, lvl, rc);
}

int npk_compact(NpkSession *s, const char *name) {
  NpkArray *a;
  int autoc, lvl, i, rc;
  if ((rc = npk_scan_check(s, name, "compact"))) return rc;
  if ((rc = npk_op_begin(s, &autoc, &lvl))) return rc;
  if ((rc = locate(s, name, 1, &i))) goto done;
  if (!npk_cat_at(&s->txn->cat, i)->bm)
    goto done; /* nothing deleted, nothing to do */
  rc = fresh_copy(s, npk_cat_at(&s->txn->cat, i), name, 1, &a);
  if (rc == NPK_OK) rc = put_array(s, i, a);
done:
  return npk_op_end(s, autoc, lvl, rc);
}

int npk_reset(NpkSession *s) {
  int autoc, lvl, rc;
  if ((rc = npk_scan_check(s, NULL, "reset the store"))) return rc;
  if ((rc = npk_op_begin(s, &autoc, &lvl))) return rc;
  rc = npk_undo_catalog(s);
  if (rc == NPK_OK) {
    npk_txn_slot(s, -1);
    npk_catalog_clear(s->store, &s->txn->cat);
  }
  return npk_op_end(s, autoc, lvl, rc);
}

/* Opening with NPK_OPEN_DROP wipes the store, which is a write: it lives
** here, above the transactions it runs, not in store.c. */
int npk_store_open(const char *dir, int flags, NpkStore **pp, char **errmsg) {
  NpkStore *st = NULL;
  NpkSession *s;
  int rc = npk_store_attach(dir, flags, &st, errmsg);
  *pp = NULL;
  if (rc || !(flags & NPK_OPEN_DROP)) {
    if (rc == NPK_OK) *pp = st;
    return rc;
  }
  rc = npk_session_open(st, &s);
  if (rc == NPK_OK) {
    s->busy_ms = 5000;
    rc = npk_reset(s);
    if (rc && errmsg) *errmsg = npk_strdup(s->err.msg);
    npk_session_close(s);
  } else if (errmsg) {
    NpkErr e;
    npk_err(&e, rc, "cannot open a session on %s", dir);
    *errmsg = npk_strdup(e.msg);
  }
  if (rc) {
    npk_store_release(st);
    return rc;
  }
  *pp = st;
  return NPK_OK;
}
