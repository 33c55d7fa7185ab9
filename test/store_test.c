/*
** store_test.c — unit tests of the store engine: the on-disk format byte by
** byte, reading stores written by hand, damaged stores, and every operation.
**
** Build: gcc -std=c11 -D_GNU_SOURCE -Isrc test/store_test.c <engine> -lpthread
*/
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "store_testutil.h"

/* ---- small helpers --------------------------------------------------- */

/* Save a 1-D (COLS == 0) or 2-D array. */
static int save2(NpkSession *s, const char *name, int dtype, uint64_t rows,
                 uint64_t cols, const void *data) {
  uint64_t shape[2] = {rows, cols};
  return npk_save(s, name, dtype, cols ? 2 : 1, shape, data);
}

static int append2(NpkSession *s, const char *name, int dtype, uint64_t rows,
                   uint64_t cols, const void *data) {
  uint64_t shape[2] = {rows, cols};
  return npk_append(s, name, dtype, cols ? 2 : 1, shape, data);
}

/* npk_array_info inside its own read; the name is copied into NAMEBUF. */
static int info_of(NpkSession *s, const char *name, NpkArrayInfo *out) {
  int rc = npk_read_begin(s);
  if (rc != NPK_OK) return rc;
  rc = npk_array_info(s, name, out);
  npk_read_end(s);
  return rc;
}

static int count_of(NpkSession *s) {
  int n = -1;
  if (npk_read_begin(s) != NPK_OK) return -1;
  if (npk_array_count(s, &n) != NPK_OK) n = -1;
  npk_read_end(s);
  return n;
}

/* Number of rows of NAME whose liveness or bytes differ from the expected
** DATA/LIVE (LIVE NULL: all live); -1 if the shape differs. */
static long rows_mismatch(NpkSession *s, const char *name,
                          const unsigned char *data, const unsigned char *live,
                          uint64_t rows, size_t row_bytes) {
  long bad = 0;
  NpkArrayInfo info;
  if (npk_read_begin(s) != NPK_OK) return -1;
  if (npk_array_info(s, name, &info) != NPK_OK || info.rows != rows ||
      info.row_bytes != row_bytes) {
    npk_read_end(s);
    return -1;
  }
  for (uint64_t r = 0; r < rows; r++) {
    int want_live = live ? live[r] : 1;
    if (npk_row_live(s, name, r) != want_live) { bad++; continue; }
    if (!want_live) continue;
    const void *p = NULL;
    if (npk_row_ptr(s, name, r, &p) != NPK_OK || !p ||
        memcmp(p, data + r * row_bytes, row_bytes) != 0)
      bad++;
  }
  npk_read_end(s);
  return bad;
}

/* Release everything and open DIR again. */
static NpkSession *reopen(const char *dir, NpkStore **st, NpkSession *s) {
  tu_close(*st, s);
  return tu_open(dir, 0, st);
}

/* ---- creating and opening -------------------------------------------- */

static void test_create_empty(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st, *st2 = NULL;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK(s != NULL);
  size_t n = 0;
  unsigned char *cat = tu_read_file(P(t.dir, TU_CATALOG), &n);
  Buf want = {0};
  put_u32(&want, TU_MAGIC);
  put_u32(&want, 1);
  put_u64(&want, 0);
  put_u32(&want, 0);
  CHECK_EQ(n, 20);
  CHECK(cat && n == 20 && memcmp(cat, want.p, 20) == 0);
  CHECK(cat && memcmp(cat, "NPKB", 4) == 0);
  CHECK_EQ(count_of(s), 0);
  const char *d = npk_store_dir(st);
  CHECK(d != NULL && strstr(d, "store") != NULL);
  CHECK(npk_session_store(s) == st);
  /* A second open of the same directory shares the object. */
  char *err = NULL;
  CHECK_EQ(npk_store_open(t.dir, 0, &st2, &err), NPK_OK);
  CHECK(st2 == st);
  free(err);
  if (st2) npk_store_release(st2);
  /* No journal or temporary file after creation. */
  Snap sn;
  tu_snap(t.dir, &sn);
  CHECK_EQ(sn.n, 1);
  tu_snap_free(&sn);
  tu_close(st, s);
  /* Reopen without CREATE. */
  s = tu_open(t.dir, 0, &st);
  CHECK_EQ(count_of(s), 0);
  tu_close(st, s);
  free(cat);
  buf_free(&want);
  tu_tmp_done(&t);
}

static void test_open_missing(void) {
  Tmp t;
  tu_tmp_init(&t);
  tu_expect_open_fail(t.dir, 0, NPK_NOFILE, NULL, NULL, 0, __LINE__);
  CHECK(!tu_exists(t.dir));
  tu_expect_open_fail(t.dir, NPK_OPEN_READONLY, NPK_NOFILE, NULL, NULL, 0,
                      __LINE__);
  CHECK(!tu_exists(t.dir));
  /* CREATE makes the directory and an empty catalog. */
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE | NPK_OPEN_DROP, &st);
  CHECK(s != NULL);
  CHECK_EQ(tu_file_size(P(t.dir, TU_CATALOG)), 20);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* ---- the format, byte by byte ---------------------------------------- */

static void test_byte_exact_format(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  int16_t a[6] = {1, -2, 3, -4, 5, -6};
  double b[2] = {1.5, -2.25};
  uint64_t t0 = tu_now_us();
  CHECK_EQ(save2(s, "a", NPK_INT16, 3, 2, a), NPK_OK);
  CHECK_EQ(save2(s, "b", NPK_FLOAT64, 2, 0, b), NPK_OK);
  uint64_t del = 1;
  CHECK_EQ(npk_delete_rows(s, "a", &del, 1), NPK_OK);
  uint64_t t1 = tu_now_us();

  /* Expected catalog, built from the format description. */
  CatEntry e[2];
  memset(e, 0, sizeof e);
  e[0].name = "a"; e[0].ndim = 2; e[0].dims[0] = 3; e[0].dims[1] = 2;
  e[0].dtype = NPK_INT16;
  e[1].name = "b"; e[1].ndim = 1; e[1].dims[0] = 2; e[1].dtype = NPK_FLOAT64;
  Buf want = {0};
  size_t off[2];
  tu_cat_build(&want, e, 2, off);
  /* The same, spelled out field by field for the first array. */
  CHECK_EQ(want.n, 20 + 79 + 71);
  CHECK_EQ(off[0], 20 + 4 + 1 + 4 + 16 + 4 + 11);
  CHECK_EQ(get_u64(want.p + 8), 12 + 16);

  size_t n = 0;
  unsigned char *cat = tu_read_file(P(t.dir, TU_CATALOG), &n);
  CHECK_EQ(n, want.n);
  if (cat && n == want.n) {
    for (int i = 0; i < 2; i++) {
      uint64_t mt = get_u64(cat + off[i]);
      CHECK(mt + 2000000 >= t0 && mt <= t1 + 2000000);
      set_u64(want.p + off[i], mt);
    }
    for (size_t i = 0; i < n; i++) {
      if (cat[i] != want.p[i]) {
        printf("  catalog byte %zu: got %02x want %02x\n", i, cat[i],
               want.p[i]);
        CHECK(cat[i] == want.p[i]);
        break;
      }
    }
  }

  /* Data files: raw little-endian rows, no header. */
  static const unsigned char da[12] = {1, 0, 0xFE, 0xFF, 3, 0, 0xFC, 0xFF,
                                       5, 0, 0xFA, 0xFF};
  Buf db = {0};
  put_u64(&db, 0x3FF8000000000000ull);
  put_u64(&db, 0xC002000000000000ull);
  size_t na = 0, nb = 0, nd = 0;
  unsigned char *fa = tu_read_file(P(t.dir, "data_a.npkd"), &na);
  unsigned char *fb = tu_read_file(P(t.dir, "data_b.npkd"), &nb);
  CHECK(fa && na == 12 && memcmp(fa, da, 12) == 0);
  CHECK(fb && nb == 16 && memcmp(fb, db.p, 16) == 0);

  /* Bitmap: 3 rows, 1 deleted, one word 0b101. */
  Buf dm = {0};
  put_u64(&dm, 3);
  put_u64(&dm, 1);
  put_u64(&dm, 5);
  unsigned char *fd = tu_read_file(P(t.dir, "deleted_a.npkb"), &nd);
  CHECK(fd && nd == 24 && memcmp(fd, dm.p, 24) == 0);
  CHECK(!tu_exists(P(t.dir, "deleted_b.npkb")));

  /* Exactly these four files (besides the lock file). */
  Snap sn;
  tu_snap(t.dir, &sn);
  CHECK_EQ(sn.n, 4);
  for (int i = 0; i < sn.n; i++) {
    const char *nm = sn.name[i];
    CHECK(!strcmp(nm, TU_CATALOG) || !strcmp(nm, "data_a.npkd") ||
          !strcmp(nm, "data_b.npkd") || !strcmp(nm, "deleted_a.npkb"));
  }
  tu_snap_free(&sn);

  tu_close(st, s);
  free(cat); free(fa); free(fb); free(fd);
  buf_free(&want); buf_free(&db); buf_free(&dm);
  tu_tmp_done(&t);
}

/* ---- a store written by hand ----------------------------------------- */

static void test_read_handmade(void) {
  Tmp t;
  tu_tmp_init(&t);
  mkdir(t.dir, 0755);
  CatEntry e[4];
  memset(e, 0, sizeof e);
  int32_t plain[4] = {7, -8, 9, 100000};
  unsigned char wd[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  unsigned char wlive[5] = {1, 0, 1, 0, 1};
  float blk[4] = {0.5f, -1.0f, 3.25f, 1e10f};
  int64_t segv[5] = {11, 12, 13, 14, 15};
  e[0].name = "plain"; e[0].ndim = 1; e[0].dims[0] = 4; e[0].dtype = NPK_INT32;
  e[0].mtime = 1700000000123456ull;
  e[1].name = "withdel"; e[1].ndim = 2; e[1].dims[0] = 5; e[1].dims[1] = 2;
  e[1].dtype = NPK_UINT8; e[1].mtime = 1700000000000002ull;
  e[2] = tu_seg_entry();
  e[3].name = "blk"; e[3].ndim = 2; e[3].dims[0] = 2; e[3].dims[1] = 2;
  e[3].dtype = NPK_FLOAT32; e[3].block_info = 1; e[3].mtime = 5;
  Buf cat = {0}, bm = {0};
  tu_cat_build(&cat, e, 4, NULL);
  tu_write_buf(P(t.dir, TU_CATALOG), &cat);
  tu_write_file(P(t.dir, "data_plain.npkd"), plain, sizeof plain);
  tu_write_file(P(t.dir, "data_withdel.npkd"), wd, sizeof wd);
  tu_bitmap_build(&bm, wlive, 5);
  tu_write_buf(P(t.dir, "deleted_withdel.npkb"), &bm);
  tu_seg_write(t.dir);
  tu_write_file(P(t.dir, "data_blk.npkd"), blk, sizeof blk);
  Snap before, after;
  tu_snap(t.dir, &before);

  NpkStore *st;
  NpkSession *s = tu_open(t.dir, 0, &st);
  CHECK(s != NULL);
  if (s) {
    CHECK_EQ(count_of(s), 4);
    static const char *order[4] = {"plain", "withdel", "s", "blk"};
    CHECK_EQ(npk_read_begin(s), NPK_OK);
    for (int i = 0; i < 4; i++) {
      NpkArrayInfo in;
      CHECK_EQ(npk_array_info_at(s, i, &in), NPK_OK);
      CHECK(in.name && !strcmp(in.name, order[i]));
    }
    NpkArrayInfo in;
    CHECK_EQ(npk_array_info(s, "plain", &in), NPK_OK);
    CHECK_EQ(in.dtype, NPK_INT32);
    CHECK_EQ(in.ndim, 1);
    CHECK_EQ(in.shape[0], 4);
    CHECK_EQ(in.rows, 4);
    CHECK_EQ(in.live_rows, 4);
    CHECK_EQ(in.row_bytes, 4);
    CHECK_EQ(in.modify_time, 1700000000123456ll);
    CHECK(in.data_file && !strcmp(in.data_file, "data_plain.npkd"));
    CHECK_EQ(in.segmented, 0);
    CHECK_EQ(npk_array_info(s, "withdel", &in), NPK_OK);
    CHECK_EQ(in.dtype, NPK_UINT8);
    CHECK_EQ(in.ndim, 2);
    CHECK_EQ(in.shape[1], 2);
    CHECK_EQ(in.rows, 5);
    CHECK_EQ(in.live_rows, 3);
    CHECK_EQ(in.row_bytes, 2);
    CHECK_EQ(npk_array_info(s, "s", &in), NPK_OK);
    CHECK_EQ(in.dtype, NPK_INT64);
    CHECK_EQ(in.rows, 5);
    CHECK_EQ(in.live_rows, 5);
    CHECK_EQ(in.segmented, 1);
    CHECK(in.data_file && !strcmp(in.data_file, "data_s.npkseg"));
    CHECK_EQ(in.modify_time, 1600000000000001ll);
    CHECK_EQ(npk_array_info(s, "blk", &in), NPK_OK);
    CHECK_EQ(in.dtype, NPK_FLOAT32);
    CHECK_EQ(in.rows, 2);
    CHECK_EQ(in.row_bytes, 8);
    CHECK_EQ(in.modify_time, 5);
    CHECK_EQ(npk_array_info(s, "nope", &in), NPK_NOTFOUND);

    const void *p = NULL;
    for (uint64_t r = 0; r < 4; r++) {
      CHECK(npk_row_ptr(s, "plain", r, &p) == NPK_OK && p &&
            memcmp(p, &plain[r], 4) == 0);
    }
    CHECK_EQ(npk_row_ptr(s, "plain", 4, &p), NPK_RANGE);
    for (uint64_t r = 0; r < 5; r++) {
      CHECK_EQ(npk_row_live(s, "withdel", r), wlive[r]);
      if (wlive[r])
        CHECK(npk_row_ptr(s, "withdel", r, &p) == NPK_OK && p &&
              memcmp(p, wd + 2 * r, 2) == 0);
      CHECK(npk_row_ptr(s, "s", r, &p) == NPK_OK && p &&
            memcmp(p, &segv[r], 8) == 0);
    }
    CHECK_EQ(npk_row_live(s, "withdel", 5), 0);
    uint64_t phys = 99;
    CHECK(npk_logical_to_physical(s, "withdel", 0, &phys) == NPK_OK &&
          phys == 0);
    CHECK(npk_logical_to_physical(s, "withdel", 1, &phys) == NPK_OK &&
          phys == 2);
    CHECK(npk_logical_to_physical(s, "withdel", 2, &phys) == NPK_OK &&
          phys == 4);
    CHECK_EQ(npk_logical_to_physical(s, "withdel", 3, &phys), NPK_RANGE);
    CHECK(npk_next_live(s, "withdel", 1, &phys) == NPK_OK && phys == 2);
    CHECK(npk_next_live(s, "withdel", 5, &phys) == NPK_OK && phys == 5);
    CHECK(npk_logical_to_physical(s, "s", 4, &phys) == NPK_OK && phys == 4);
    for (uint64_t r = 0; r < 2; r++)
      CHECK(npk_row_ptr(s, "blk", r, &p) == NPK_OK && p &&
            memcmp(p, blk + 2 * r, 8) == 0);
    npk_read_end(s);
  }
  tu_close(st, s);
  /* Reading changed nothing. */
  tu_snap(t.dir, &after);
  CHECK(tu_snap_eq(&before, &after));
  tu_snap_free(&before);
  tu_snap_free(&after);
  buf_free(&cat);
  buf_free(&bm);
  tu_tmp_done(&t);
}

/* ---- every dtype ------------------------------------------------------ */

static void test_every_dtype(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  unsigned char data[NPK_NDTYPE][5 * 3 * 16];
  for (int d = 0; d < NPK_NDTYPE; d++) {
    size_t nb = (size_t)15 * tu_itemsize[d];
    tu_fill(data[d], nb, 100 + d);
    if (d == NPK_BOOL)
      for (size_t i = 0; i < nb; i++) data[d][i] &= 1;
    char name[16];
    snprintf(name, sizeof name, "t%d", d);
    CHECK_EQ(save2(s, name, d, 5, 3, data[d]), NPK_OK);
  }
  /* Forget every cached state. */
  s = reopen(t.dir, &st, s);
  CHECK_EQ(count_of(s), NPK_NDTYPE);
  CatParsed *c = tu_cat_read(t.dir);
  CHECK(c != NULL);
  for (int d = 0; d < NPK_NDTYPE; d++) {
    char name[16], file[32];
    snprintf(name, sizeof name, "t%d", d);
    snprintf(file, sizeof file, "data_t%d.npkd", d);
    size_t rb = (size_t)3 * tu_itemsize[d];
    NpkArrayInfo in;
    CHECK_EQ(info_of(s, name, &in), NPK_OK);
    CHECK_EQ(in.dtype, d);
    CHECK_EQ(in.ndim, 2);
    CHECK_EQ(in.shape[1], 3);
    CHECK_EQ(rows_mismatch(s, name, data[d], NULL, 5, rb), 0);
    CHECK_EQ(tu_file_size(P(t.dir, file)), (long long)(5 * rb));
    if (c) {
      int i = tu_cat_find(c, name);
      CHECK_EQ(i, d);
      if (i >= 0) {
        CHECK_EQ(c->e[i].dtype, d);
        CHECK_EQ(c->e[i].size, 5 * rb);
        CHECK_EQ(c->e[i].ndim, 2);
        CHECK(!strcmp(c->e[i].data_file, file));
      }
    }
  }
  free(c);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* ---- operations ------------------------------------------------------- */

static void test_save_overwrite(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  int16_t a[6] = {1, 2, 3, 4, 5, 6};
  double b[4] = {0.25, 0.5, 0.75, 1.0};
  int32_t z[2] = {42, 43};
  CHECK_EQ(save2(s, "a", NPK_INT16, 3, 2, a), NPK_OK);
  CHECK_EQ(save2(s, "z", NPK_INT32, 2, 0, z), NPK_OK);
  uint64_t r = 1;
  CHECK_EQ(npk_delete_rows(s, "a", &r, 1), NPK_OK);
  CHECK(tu_exists(P(t.dir, "deleted_a.npkb")));
  /* Overwrite with another dtype and shape. */
  CHECK_EQ(save2(s, "a", NPK_FLOAT64, 4, 0, b), NPK_OK);
  CHECK(!tu_exists(P(t.dir, "deleted_a.npkb")));
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, "a", &in), NPK_OK);
  CHECK_EQ(in.dtype, NPK_FLOAT64);
  CHECK_EQ(in.ndim, 1);
  CHECK_EQ(in.rows, 4);
  CHECK_EQ(in.live_rows, 4);
  CHECK_EQ(in.row_bytes, 8);
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)b, NULL, 4, 8), 0);
  CHECK_EQ(tu_file_size(P(t.dir, "data_a.npkd")), 32);
  /* An overwritten array keeps its place in the catalog. */
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  CHECK(npk_array_info_at(s, 0, &in) == NPK_OK && !strcmp(in.name, "a"));
  npk_read_end(s);
  s = reopen(t.dir, &st, s);
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)b, NULL, 4, 8), 0);
  CHECK_EQ(rows_mismatch(s, "z", (unsigned char *)z, NULL, 2, 4), 0);
  CatParsed *c = tu_cat_read(t.dir);
  CHECK(c && c->count == 2 && !strcmp(c->e[0].name, "a") &&
        c->e[0].dtype == NPK_FLOAT64 && c->e[0].ndim == 1 &&
        c->e[0].dims[0] == 4 && c->e[0].size == 32 && c->total == 40);
  free(c);
  /* Overwriting with a smaller array shrinks the data file. */
  CHECK_EQ(save2(s, "a", NPK_FLOAT64, 1, 0, b), NPK_OK);
  CHECK_EQ(tu_file_size(P(t.dir, "data_a.npkd")), 8);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_append(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  int32_t v[21];
  for (int i = 0; i < 21; i++) v[i] = i * 1000 - 7;
  CHECK_EQ(save2(s, "a", NPK_INT32, 2, 3, v), NPK_OK);
  CHECK_EQ(append2(s, "a", NPK_INT32, 3, 3, v + 6), NPK_OK);
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, "a", &in), NPK_OK);
  CHECK_EQ(in.rows, 5);
  CHECK_EQ(in.shape[0], 5);
  CHECK_EQ(in.shape[1], 3);
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)v, NULL, 5, 12), 0);
  CHECK_EQ(tu_file_size(P(t.dir, "data_a.npkd")), 60);
  size_t n;
  unsigned char *f = tu_read_file(P(t.dir, "data_a.npkd"), &n);
  CHECK(f && n == 60 && memcmp(f, v, 60) == 0);
  free(f);
  /* Appending 0 rows changes nothing. */
  CHECK_EQ(append2(s, "a", NPK_INT32, 0, 3, v), NPK_OK);
  CHECK_EQ(info_of(s, "a", &in), NPK_OK);
  CHECK_EQ(in.rows, 5);
  /* Appending to an array with a bitmap extends the bitmap. */
  uint64_t r = 0;
  CHECK_EQ(npk_delete_rows(s, "a", &r, 1), NPK_OK);
  CHECK_EQ(append2(s, "a", NPK_INT32, 2, 3, v + 15), NPK_OK);
  unsigned char live[7] = {0, 1, 1, 1, 1, 1, 1};
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)v, live, 7, 12), 0);
  f = tu_read_file(P(t.dir, "deleted_a.npkb"), &n);
  CHECK(f && n == 24 && get_u64(f) == 7 && get_u64(f + 8) == 1 &&
        get_u64(f + 16) == 0x7E);
  free(f);
  s = reopen(t.dir, &st, s);
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)v, live, 7, 12), 0);
  CatParsed *c = tu_cat_read(t.dir);
  CHECK(c && c->count == 1 && c->e[0].dims[0] == 7 && c->e[0].size == 84);
  free(c);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_append_mismatch(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  int64_t v[32];
  tu_fill(v, sizeof v, 3);
  uint64_t sh3[3] = {2, 2, 2};
  CHECK_EQ(save2(s, "a", NPK_INT32, 2, 3, v), NPK_OK);
  CHECK_EQ(npk_save(s, "c", NPK_UINT8, 3, sh3, v), NPK_OK);
  Snap before, after;
  tu_snap(t.dir, &before);
  CHECK_EQ(append2(s, "a", NPK_INT64, 1, 3, v), NPK_MISMATCH);
  CHECK_EQ(append2(s, "a", NPK_UINT32, 1, 3, v), NPK_MISMATCH);
  CHECK_EQ(append2(s, "a", NPK_INT32, 1, 4, v), NPK_MISMATCH);
  CHECK_EQ(append2(s, "a", NPK_INT32, 3, 0, v), NPK_MISMATCH);
  uint64_t sh[3] = {1, 3, 1};
  CHECK_EQ(npk_append(s, "a", NPK_INT32, 3, sh, v), NPK_MISMATCH);
  uint64_t sh4[3] = {1, 2, 3};
  CHECK_EQ(npk_append(s, "c", NPK_UINT8, 3, sh4, v), NPK_MISMATCH);
  uint64_t sh5[2] = {1, 4};
  CHECK_EQ(npk_append(s, "c", NPK_UINT8, 2, sh5, v), NPK_MISMATCH);
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, "a", &in), NPK_OK);
  CHECK_EQ(in.rows, 2);
  CHECK_EQ(in.dtype, NPK_INT32);
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)v, NULL, 2, 12), 0);
  CHECK_EQ(info_of(s, "c", &in), NPK_OK);
  CHECK_EQ(in.rows, 2);
  tu_snap(t.dir, &after);
  CHECK(tu_snap_eq(&before, &after));
  tu_snap_free(&after);
  /* The right dtype and row shape still work, also for 3-D arrays. */
  uint64_t sh6[3] = {1, 2, 2};
  CHECK_EQ(npk_append(s, "c", NPK_UINT8, 3, sh6, v), NPK_OK);
  CHECK_EQ(info_of(s, "c", &in), NPK_OK);
  CHECK_EQ(in.rows, 3);
  tu_snap_free(&before);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_replace(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  int32_t v[12], nv[6];
  for (int i = 0; i < 12; i++) v[i] = i + 1;
  for (int i = 0; i < 6; i++) nv[i] = -100 - i;
  CHECK_EQ(save2(s, "a", NPK_INT32, 6, 2, v), NPK_OK);
  uint64_t rows[3] = {4, 1, 5};
  CHECK_EQ(npk_replace_rows(s, "a", rows, 3, nv), NPK_OK);
  memcpy(v + 8, nv, 8);
  memcpy(v + 2, nv + 2, 8);
  memcpy(v + 10, nv + 4, 8);
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)v, NULL, 6, 8), 0);
  size_t n;
  unsigned char *f = tu_read_file(P(t.dir, "data_a.npkd"), &n);
  CHECK(f && n == 48 && memcmp(f, v, 48) == 0);
  free(f);
  CHECK(!tu_exists(P(t.dir, "deleted_a.npkb")));
  s = reopen(t.dir, &st, s);
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)v, NULL, 6, 8), 0);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_replace_delete_errors(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  int32_t v[12], nv[6];
  for (int i = 0; i < 12; i++) v[i] = i + 1;
  for (int i = 0; i < 6; i++) nv[i] = -1 - i;
  CHECK_EQ(save2(s, "a", NPK_INT32, 6, 2, v), NPK_OK);
  Snap before, after;
  tu_snap(t.dir, &before);
  /* The last row is out of range: the first must not change. */
  uint64_t r1[2] = {0, 6};
  CHECK_EQ(npk_replace_rows(s, "a", r1, 2, nv), NPK_RANGE);
  uint64_t r2[2] = {1, UINT64_MAX};
  CHECK_EQ(npk_replace_rows(s, "a", r2, 2, nv), NPK_RANGE);
  uint64_t r3[2] = {2, 6};
  CHECK_EQ(npk_delete_rows(s, "a", r3, 2), NPK_RANGE);
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)v, NULL, 6, 8), 0);
  tu_snap(t.dir, &after);
  CHECK(tu_snap_eq(&before, &after));
  CHECK(!tu_exists(P(t.dir, "deleted_a.npkb")));
  tu_snap_free(&before);
  tu_snap_free(&after);

  /* Deleted rows can be neither replaced nor deleted again. */
  uint64_t d = 3;
  CHECK_EQ(npk_delete_rows(s, "a", &d, 1), NPK_OK);
  unsigned char live[6] = {1, 1, 1, 0, 1, 1};
  tu_snap(t.dir, &before);
  uint64_t r4[2] = {2, 3};
  CHECK_EQ(npk_replace_rows(s, "a", r4, 2, nv), NPK_RANGE);
  CHECK_EQ(npk_delete_rows(s, "a", r4, 2), NPK_RANGE);
  uint64_t r5[1] = {3};
  CHECK_EQ(npk_delete_rows(s, "a", r5, 1), NPK_RANGE);
  CHECK_EQ(npk_replace_rows(s, "a", r5, 1, nv), NPK_RANGE);
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)v, live, 6, 8), 0);
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, "a", &in), NPK_OK);
  CHECK_EQ(in.live_rows, 5);
  tu_snap(t.dir, &after);
  CHECK(tu_snap_eq(&before, &after));
  tu_snap_free(&before);
  tu_snap_free(&after);
  /* The same inside a transaction: the pending state is left as it was. */
  CHECK_EQ(npk_begin(s), NPK_OK);
  uint64_t r6[1] = {4};
  CHECK_EQ(npk_replace_rows(s, "a", r6, 1, nv), NPK_OK);
  memcpy(v + 8, nv, 8);
  CHECK_EQ(npk_replace_rows(s, "a", r1, 2, nv + 2), NPK_RANGE);
  CHECK_EQ(npk_delete_rows(s, "a", r3, 2), NPK_RANGE);
  CHECK_EQ(npk_replace_rows(s, "a", r4, 2, nv + 2), NPK_RANGE);
  CHECK_EQ(npk_in_txn(s), 1);
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)v, live, 6, 8), 0);
  CHECK_EQ(npk_commit(s), NPK_OK);
  s = reopen(t.dir, &st, s);
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)v, live, 6, 8), 0);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_delete(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  unsigned char v[10];
  for (int i = 0; i < 10; i++) v[i] = (unsigned char)(200 + i);
  CHECK_EQ(save2(s, "a", NPK_UINT8, 10, 1, v), NPK_OK);
  CHECK(!tu_exists(P(t.dir, "deleted_a.npkb")));
  uint64_t rows[3] = {9, 2, 5};
  CHECK_EQ(npk_delete_rows(s, "a", rows, 3), NPK_OK);
  unsigned char live[10] = {1, 1, 0, 1, 1, 0, 1, 1, 1, 0};
  CHECK_EQ(rows_mismatch(s, "a", v, live, 10, 1), 0);
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, "a", &in), NPK_OK);
  CHECK_EQ(in.rows, 10);
  CHECK_EQ(in.live_rows, 7);
  size_t n;
  unsigned char *f = tu_read_file(P(t.dir, "deleted_a.npkb"), &n);
  CHECK(f && n == 24 && get_u64(f) == 10 && get_u64(f + 8) == 3 &&
        get_u64(f + 16) == 0x1DB);
  free(f);
  /* The data file is untouched by deletions. */
  f = tu_read_file(P(t.dir, "data_a.npkd"), &n);
  CHECK(f && n == 10 && memcmp(f, v, 10) == 0);
  free(f);
  uint64_t r0 = 0;
  CHECK_EQ(npk_delete_rows(s, "a", &r0, 1), NPK_OK);
  live[0] = 0;
  f = tu_read_file(P(t.dir, "deleted_a.npkb"), &n);
  CHECK(f && n == 24 && get_u64(f) == 10 && get_u64(f + 8) == 4 &&
        get_u64(f + 16) == 0x1DA);
  free(f);
  /* The catalog keeps the physical shape. */
  CatParsed *c = tu_cat_read(t.dir);
  CHECK(c && c->count == 1 && c->e[0].dims[0] == 10 && c->e[0].size == 10);
  free(c);
  s = reopen(t.dir, &st, s);
  CHECK_EQ(rows_mismatch(s, "a", v, live, 10, 1), 0);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_drop(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  int32_t v[4] = {1, 2, 3, 4};
  CHECK_EQ(save2(s, "a", NPK_INT32, 4, 0, v), NPK_OK);
  CHECK_EQ(save2(s, "b", NPK_INT32, 2, 0, v), NPK_OK);
  uint64_t r = 1;
  CHECK_EQ(npk_delete_rows(s, "a", &r, 1), NPK_OK);
  CHECK_EQ(npk_drop(s, "a"), NPK_OK);
  CHECK(!tu_exists(P(t.dir, "data_a.npkd")));
  CHECK(!tu_exists(P(t.dir, "deleted_a.npkb")));
  CHECK(tu_exists(P(t.dir, "data_b.npkd")));
  CHECK_EQ(count_of(s), 1);
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, "a", &in), NPK_NOTFOUND);
  CatParsed *c = tu_cat_read(t.dir);
  CHECK(c && c->count == 1 && !strcmp(c->e[0].name, "b") && c->total == 8);
  free(c);
  CHECK_EQ(npk_drop(s, "a"), NPK_NOTFOUND);
  CHECK_HAS(npk_errmsg(s), "a");
  s = reopen(t.dir, &st, s);
  CHECK_EQ(count_of(s), 1);
  CHECK_EQ(info_of(s, "a", &in), NPK_NOTFOUND);
  CHECK_EQ(rows_mismatch(s, "b", (unsigned char *)v, NULL, 2, 4), 0);
  /* The name can be used again. */
  CHECK_EQ(save2(s, "a", NPK_INT32, 1, 0, v), NPK_OK);
  CHECK_EQ(info_of(s, "a", &in), NPK_OK);
  CHECK_EQ(in.rows, 1);
  CHECK_EQ(in.live_rows, 1);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_clone(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  int16_t v[8] = {10, 11, 20, 21, 30, 31, 40, 41};
  int16_t w[2] = {-5, -6};
  CHECK_EQ(save2(s, "a", NPK_INT16, 4, 2, v), NPK_OK);
  CHECK_EQ(save2(s, "b", NPK_INT16, 1, 2, w), NPK_OK);
  uint64_t r = 1;
  CHECK_EQ(npk_delete_rows(s, "a", &r, 1), NPK_OK);
  unsigned char alive[4] = {1, 0, 1, 1};
  CHECK_EQ(npk_clone(s, "a", "c"), NPK_OK);
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, "c", &in), NPK_OK);
  CHECK_EQ(in.dtype, NPK_INT16);
  CHECK_EQ(in.ndim, 2);
  CHECK_EQ(in.shape[1], 2);
  CHECK_EQ(in.live_rows, 3);
  CHECK(in.data_file && !strcmp(in.data_file, "data_c.npkd"));
  /* Same live rows in the same order. */
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  for (uint64_t k = 0; k < 3; k++) {
    uint64_t pa = 0, pc = 0;
    const void *ra = NULL, *rc = NULL;
    CHECK_EQ(npk_logical_to_physical(s, "a", k, &pa), NPK_OK);
    CHECK_EQ(npk_logical_to_physical(s, "c", k, &pc), NPK_OK);
    CHECK_EQ(npk_row_ptr(s, "a", pa, &ra), NPK_OK);
    CHECK_EQ(npk_row_ptr(s, "c", pc, &rc), NPK_OK);
    CHECK(ra && rc && memcmp(ra, rc, 4) == 0);
  }
  npk_read_end(s);
  /* The clone goes at the end of the catalog. */
  CatParsed *c = tu_cat_read(t.dir);
  CHECK(c && c->count == 3 && !strcmp(c->e[2].name, "c") &&
        !strcmp(c->e[2].data_file, "data_c.npkd"));
  free(c);
  /* Errors: existing target, missing source, invalid target. */
  Snap before, after;
  tu_snap(t.dir, &before);
  CHECK_EQ(npk_clone(s, "a", "b"), NPK_EXISTS);
  CHECK_EQ(npk_clone(s, "a", "c"), NPK_EXISTS);
  CHECK_EQ(npk_clone(s, "ghost_src", "d"), NPK_NOTFOUND);
  CHECK_HAS(npk_errmsg(s), "ghost_src");
  CHECK_EQ(npk_clone(s, "a", "x/y"), NPK_ERROR);
  CHECK_EQ(npk_clone(s, "a", ".."), NPK_ERROR);
  tu_snap(t.dir, &after);
  CHECK(tu_snap_eq(&before, &after));
  tu_snap_free(&before);
  tu_snap_free(&after);
  CHECK_EQ(rows_mismatch(s, "b", (unsigned char *)w, NULL, 1, 4), 0);
  /* Changing the clone leaves the source alone, and the other way round. */
  Buf dc = {0}, d2 = {0};
  int16_t nw[2] = {99, 98};
  uint64_t pc0 = 0;
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  CHECK_EQ(npk_logical_to_physical(s, "c", 0, &pc0), NPK_OK);
  npk_read_end(s);
  CHECK_EQ(npk_replace_rows(s, "c", &pc0, 1, nw), NPK_OK);
  CHECK_EQ(append2(s, "c", NPK_INT16, 1, 2, nw), NPK_OK);
  uint64_t pc1 = 0;
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  CHECK_EQ(npk_logical_to_physical(s, "c", 1, &pc1), NPK_OK);
  npk_read_end(s);
  CHECK_EQ(npk_delete_rows(s, "c", &pc1, 1), NPK_OK);
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)v, alive, 4, 4), 0);
  CHECK_EQ(info_of(s, "c", &in), NPK_OK);
  CHECK_EQ(in.live_rows, 3);
  uint64_t ra = 0;
  CHECK_EQ(npk_replace_rows(s, "a", &ra, 1, w), NPK_OK);
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  const void *p = NULL;
  CHECK(npk_row_ptr(s, "c", pc0, &p) == NPK_OK && p && memcmp(p, nw, 4) == 0);
  npk_read_end(s);
  /* Everything survives a reopen. */
  CHECK_EQ(tu_dump(s, &dc, 1), NPK_OK);
  s = reopen(t.dir, &st, s);
  CHECK_EQ(tu_dump(s, &d2, 1), NPK_OK);
  CHECK_DUMP_EQ(&d2, &dc);
  buf_free(&dc); buf_free(&d2);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* The interrupt source is asked before each piece of a long copy; when it
** says stop, compaction and clone fail with NPK_INTERRUPT in the middle
** and leave the store as it was. */
static int intr_calls, intr_at;
static int intr_source(void *arg) {
  (void)arg;
  return ++intr_calls >= intr_at;
}

static void test_interrupt_copy(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  /* 3M int32 rows: 12 MB, three 4 MiB pieces through memory. */
  enum { N = 3000000 };
  int32_t *v = malloc(N * sizeof *v);
  CHECK(v != NULL);
  if (!v) return;
  for (int i = 0; i < N; i++) v[i] = i;
  uint64_t shape[1] = {N}, del[2] = {1, N - 1};
  CHECK_EQ(npk_save(s, "a", NPK_INT32, 1, shape, v), NPK_OK);
  CHECK_EQ(npk_delete_rows(s, "a", del, 2), NPK_OK);
  Snap before, after;
  tu_snap(t.dir, &before);

  npk_set_interrupt_source(s, intr_source, NULL);
  intr_calls = 0;
  intr_at = 3;
  CHECK_EQ(npk_compact(s, "a"), NPK_INTERRUPT);
  CHECK_EQ(intr_calls, 3);
  CHECK_HAS(npk_errmsg(s), "interrupted");
  /* A clone copies file to file, asked every 64 MiB: here once. */
  intr_calls = 0;
  intr_at = 1;
  CHECK_EQ(npk_clone(s, "a", "b"), NPK_INTERRUPT);
  CHECK_EQ(intr_calls, 1);
  tu_snap(t.dir, &after);
  CHECK(tu_snap_eq(&before, &after));
  tu_snap_free(&after);

  /* Inside a transaction only the interrupted operation is undone. */
  uint64_t five = 5;
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(npk_delete_rows(s, "a", &five, 1), NPK_OK);
  intr_calls = 0;
  intr_at = 1;
  CHECK_EQ(npk_compact(s, "a"), NPK_INTERRUPT);
  CHECK_EQ(npk_commit(s), NPK_OK);
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, "a", &in), NPK_OK);
  CHECK_EQ(in.rows, N);
  CHECK_EQ(in.live_rows, N - 3);

  /* A source that lets it run: asked before each of the three pieces. */
  intr_calls = 0;
  intr_at = 1000;
  CHECK_EQ(npk_compact(s, "a"), NPK_OK);
  CHECK_EQ(intr_calls, 3);
  CHECK_EQ(info_of(s, "a", &in), NPK_OK);
  CHECK_EQ(in.rows, N - 3);
  CHECK_EQ(in.live_rows, N - 3);
  tu_snap_free(&before);
  free(v);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_compact(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  uint32_t v[20], live_v[14];
  for (int i = 0; i < 20; i++) v[i] = 0xA0000000u + (uint32_t)i;
  CHECK_EQ(save2(s, "a", NPK_UINT32, 10, 2, v), NPK_OK);
  CHECK_EQ(save2(s, "b", NPK_UINT32, 3, 0, v), NPK_OK);
  uint64_t del[3] = {2, 5, 9};
  CHECK_EQ(npk_delete_rows(s, "a", del, 3), NPK_OK);
  int k = 0;
  for (int r = 0; r < 10; r++) {
    if (r == 2 || r == 5 || r == 9) continue;
    live_v[2 * k] = v[2 * r];
    live_v[2 * k + 1] = v[2 * r + 1];
    k++;
  }
  CHECK_EQ(npk_compact(s, "a"), NPK_OK);
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, "a", &in), NPK_OK);
  CHECK_EQ(in.rows, 7);
  CHECK_EQ(in.live_rows, 7);
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)live_v, NULL, 7, 8), 0);
  CHECK(!tu_exists(P(t.dir, "deleted_a.npkb")));
  CHECK_EQ(tu_file_size(P(t.dir, "data_a.npkd")), 56);
  CatParsed *c = tu_cat_read(t.dir);
  CHECK(c && c->count == 2 && !strcmp(c->e[0].name, "a") &&
        c->e[0].dims[0] == 7 && c->e[0].size == 56 && c->total == 56 + 12);
  free(c);
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  for (uint64_t q = 0; q < 7; q++) {
    uint64_t ph = 99;
    CHECK(npk_logical_to_physical(s, "a", q, &ph) == NPK_OK && ph == q);
  }
  npk_read_end(s);
  s = reopen(t.dir, &st, s);
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)live_v, NULL, 7, 8), 0);
  /* Compacting an array without deletions keeps it. */
  CHECK_EQ(npk_compact(s, "b"), NPK_OK);
  CHECK_EQ(rows_mismatch(s, "b", (unsigned char *)v, NULL, 3, 4), 0);
  /* Compacting an array whose rows are all deleted empties it. */
  uint64_t all[3] = {0, 1, 2};
  CHECK_EQ(npk_delete_rows(s, "b", all, 3), NPK_OK);
  CHECK_EQ(npk_compact(s, "b"), NPK_OK);
  CHECK_EQ(info_of(s, "b", &in), NPK_OK);
  CHECK_EQ(in.rows, 0);
  CHECK_EQ(in.live_rows, 0);
  CHECK(!tu_exists(P(t.dir, "deleted_b.npkb")));
  CHECK(tu_file_size(P(t.dir, "data_b.npkd")) <= 0);
  CHECK_EQ(npk_compact(s, "ghost_array"), NPK_NOTFOUND);
  CHECK_HAS(npk_errmsg(s), "ghost_array");
  s = reopen(t.dir, &st, s);
  CHECK_EQ(info_of(s, "b", &in), NPK_OK);
  CHECK_EQ(in.rows, 0);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_reset(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  int32_t v[4] = {1, 2, 3, 4};
  CHECK_EQ(save2(s, "a", NPK_INT32, 4, 0, v), NPK_OK);
  CHECK_EQ(save2(s, "b", NPK_INT32, 4, 0, v), NPK_OK);
  CHECK_EQ(save2(s, "c", NPK_INT32, 4, 0, v), NPK_OK);
  uint64_t r = 0;
  CHECK_EQ(npk_delete_rows(s, "b", &r, 1), NPK_OK);
  CHECK_EQ(npk_reset(s), NPK_OK);
  CHECK_EQ(count_of(s), 0);
  Snap sn;
  tu_snap(t.dir, &sn);
  CHECK_EQ(sn.n, 1);
  CHECK(sn.n >= 1 && !strcmp(sn.name[0], TU_CATALOG) && sn.len[0] == 20);
  tu_snap_free(&sn);
  /* Still usable. */
  CHECK_EQ(save2(s, "b", NPK_INT32, 2, 0, v), NPK_OK);
  s = reopen(t.dir, &st, s);
  CHECK_EQ(count_of(s), 1);
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, "b", &in), NPK_OK);
  CHECK_EQ(in.rows, 2);
  CHECK_EQ(in.live_rows, 2);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_open_drop(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  int32_t v[4] = {1, 2, 3, 4};
  CHECK_EQ(save2(s, "a", NPK_INT32, 4, 0, v), NPK_OK);
  CHECK_EQ(save2(s, "b", NPK_INT32, 4, 0, v), NPK_OK);
  uint64_t r = 0;
  CHECK_EQ(npk_delete_rows(s, "b", &r, 1), NPK_OK);
  tu_close(st, s);
  /* CREATE alone keeps an existing store. */
  s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  CHECK_EQ(count_of(s), 2);
  tu_close(st, s);
  s = tu_open(t.dir, NPK_OPEN_CREATE | NPK_OPEN_DROP, &st);
  CHECK_EQ(count_of(s), 0);
  CHECK(!tu_exists(P(t.dir, "data_a.npkd")));
  CHECK(!tu_exists(P(t.dir, "data_b.npkd")));
  CHECK(!tu_exists(P(t.dir, "deleted_b.npkb")));
  CHECK_EQ(tu_file_size(P(t.dir, TU_CATALOG)), 20);
  s = reopen(t.dir, &st, s);
  CHECK_EQ(count_of(s), 0);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_array_order(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  int32_t v[2] = {1, 2};
  CHECK_EQ(save2(s, "c", NPK_INT32, 2, 0, v), NPK_OK);
  CHECK_EQ(save2(s, "a", NPK_INT32, 2, 0, v), NPK_OK);
  CHECK_EQ(save2(s, "b", NPK_INT32, 2, 0, v), NPK_OK);
  CHECK_EQ(save2(s, "a", NPK_INT8, 1, 0, v), NPK_OK);     /* overwrite */
  CHECK_EQ(append2(s, "c", NPK_INT32, 1, 0, v), NPK_OK);
  CHECK_EQ(npk_drop(s, "c"), NPK_OK);
  CHECK_EQ(save2(s, "c", NPK_INT32, 2, 0, v), NPK_OK);
  CHECK_EQ(npk_clone(s, "a", "d"), NPK_OK);
  static const char *want[4] = {"a", "b", "c", "d"};
  CHECK_EQ(count_of(s), 4);
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  NpkArrayInfo in;
  for (int i = 0; i < 4; i++) {
    CHECK_EQ(npk_array_info_at(s, i, &in), NPK_OK);
    CHECK(in.name && !strcmp(in.name, want[i]));
  }
  CHECK(npk_array_info_at(s, 4, &in) != NPK_OK);
  CHECK(npk_array_info_at(s, -1, &in) != NPK_OK);
  npk_read_end(s);
  CatParsed *c = tu_cat_read(t.dir);
  CHECK(c && c->count == 4);
  for (int i = 0; c && i < 4; i++) CHECK(!strcmp(c->e[i].name, want[i]));
  free(c);
  s = reopen(t.dir, &st, s);
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  for (int i = 0; i < 4; i++) {
    CHECK_EQ(npk_array_info_at(s, i, &in), NPK_OK);
    CHECK(in.name && !strcmp(in.name, want[i]));
  }
  npk_read_end(s);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_missing_array(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  int32_t v[2] = {1, 2};
  uint64_t r = 0;
  CHECK_EQ(save2(s, "present", NPK_INT32, 2, 0, v), NPK_OK);
  Snap before, after;
  tu_snap(t.dir, &before);
  CHECK_EQ(append2(s, "ghost_array", NPK_INT32, 1, 0, v), NPK_NOTFOUND);
  CHECK_HAS(npk_errmsg(s), "ghost_array");
  CHECK_EQ(npk_replace_rows(s, "ghost_array", &r, 1, v), NPK_NOTFOUND);
  CHECK_HAS(npk_errmsg(s), "ghost_array");
  CHECK_EQ(npk_delete_rows(s, "ghost_array", &r, 1), NPK_NOTFOUND);
  CHECK_HAS(npk_errmsg(s), "ghost_array");
  CHECK_EQ(npk_drop(s, "ghost_array"), NPK_NOTFOUND);
  CHECK_HAS(npk_errmsg(s), "ghost_array");
  CHECK_EQ(npk_compact(s, "ghost_array"), NPK_NOTFOUND);
  CHECK_HAS(npk_errmsg(s), "ghost_array");
  CHECK_EQ(npk_clone(s, "ghost_array", "copy"), NPK_NOTFOUND);
  CHECK_HAS(npk_errmsg(s), "ghost_array");
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, "ghost_array", &in), NPK_NOTFOUND);
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  const void *p;
  uint64_t ph;
  CHECK_EQ(npk_row_ptr(s, "ghost_array", 0, &p), NPK_NOTFOUND);
  CHECK_EQ(npk_row_live(s, "ghost_array", 0), 0);
  CHECK(npk_logical_to_physical(s, "ghost_array", 0, &ph) != NPK_OK);
  npk_read_end(s);
  tu_snap(t.dir, &after);
  CHECK(tu_snap_eq(&before, &after));
  tu_snap_free(&before);
  tu_snap_free(&after);
  CHECK_EQ(count_of(s), 1);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_names(void) {
  char longest[NPK_MAX_NAME + 1], toolong[NPK_MAX_NAME + 2];
  memset(longest, 'n', NPK_MAX_NAME);
  longest[NPK_MAX_NAME] = 0;
  memset(toolong, 'n', NPK_MAX_NAME + 1);
  toolong[NPK_MAX_NAME + 1] = 0;
  static const char *bad[] = {
    "", "a/b", "/abs", "..", "../x", "x/..", "a..b", "..x", "x..",
    "\xff", "ab\xc3", "\xc0\xaf", "\xed\xa0\x80", "a\xfe" "b",
  };
  static const char *good[] = {"a", "features", "x_1", "caf\xc3\xa9",
                               "A-B", "\xe6\x95\xb0"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (npk_name_valid(bad[i])) printf("  accepted bad name #%zu\n", i);
    CHECK_EQ(npk_name_valid(bad[i]), 0);
  }
  CHECK_EQ(npk_name_valid(toolong), 0);
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    CHECK_EQ(npk_name_valid(good[i]), 1);
  CHECK_EQ(npk_name_valid(longest), 1);

  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  int32_t v[3] = {1, 2, 3};
  CHECK_EQ(save2(s, "ok", NPK_INT32, 3, 0, v), NPK_OK);
  Snap before, after;
  tu_snap(t.dir, &before);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK_EQ(save2(s, bad[i], NPK_INT32, 3, 0, v), NPK_ERROR);
    CHECK_EQ(npk_clone(s, "ok", bad[i]), NPK_ERROR);
  }
  CHECK_EQ(save2(s, toolong, NPK_INT32, 3, 0, v), NPK_ERROR);
  CHECK_EQ(npk_clone(s, "ok", toolong), NPK_ERROR);
  tu_snap(t.dir, &after);
  CHECK(tu_snap_eq(&before, &after));
  CHECK(!tu_exists(P(t.root, "data_x.npkd")));
  tu_snap_free(&before);
  tu_snap_free(&after);
  CHECK_EQ(count_of(s), 1);
  /* The longest name fits every file name the store makes for it. */
  CHECK_EQ(save2(s, longest, NPK_INT32, 3, 0, v), NPK_OK);
  uint64_t r = 1;
  CHECK_EQ(npk_delete_rows(s, longest, &r, 1), NPK_OK);
  char bm[300];
  snprintf(bm, sizeof bm, "deleted_%s.npkb", longest);
  CHECK(tu_exists(P(t.dir, bm)));
  CHECK_EQ(save2(s, "caf\xc3\xa9", NPK_INT32, 3, 0, v), NPK_OK);
  s = reopen(t.dir, &st, s);
  CHECK_EQ(count_of(s), 3);
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, longest, &in), NPK_OK);
  CHECK_EQ(in.live_rows, 2);
  CHECK_EQ(info_of(s, "caf\xc3\xa9", &in), NPK_OK);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_readonly(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  int32_t v[4] = {1, 2, 3, 4};
  CHECK_EQ(save2(s, "a", NPK_INT32, 4, 0, v), NPK_OK);
  CHECK_EQ(save2(s, "b", NPK_INT32, 4, 0, v), NPK_OK);
  tu_close(st, s);
  Snap before, after;
  tu_snap(t.dir, &before);
  s = tu_open(t.dir, NPK_OPEN_READONLY, &st);
  uint64_t r = 0;
  CHECK_EQ(save2(s, "c", NPK_INT32, 4, 0, v), NPK_READONLY);
  CHECK_EQ(save2(s, "a", NPK_INT32, 4, 0, v), NPK_READONLY);
  CHECK_EQ(append2(s, "a", NPK_INT32, 1, 0, v), NPK_READONLY);
  CHECK_EQ(npk_replace_rows(s, "a", &r, 1, v + 3), NPK_READONLY);
  CHECK_EQ(npk_delete_rows(s, "a", &r, 1), NPK_READONLY);
  CHECK_EQ(npk_drop(s, "a"), NPK_READONLY);
  CHECK_EQ(npk_clone(s, "a", "c"), NPK_READONLY);
  CHECK_EQ(npk_compact(s, "a"), NPK_READONLY);
  CHECK_EQ(npk_reset(s), NPK_READONLY);
  if (npk_begin(s) == NPK_OK) {
    CHECK_EQ(append2(s, "a", NPK_INT32, 1, 0, v), NPK_READONLY);
    npk_rollback(s);
  }
  CHECK_EQ(npk_in_txn(s), 0);
  /* Reads work. */
  CHECK_EQ(count_of(s), 2);
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)v, NULL, 4, 4), 0);
  tu_close(st, s);
  tu_snap(t.dir, &after);
  CHECK(tu_snap_eq(&before, &after));
  tu_snap_free(&before);
  tu_snap_free(&after);
  tu_tmp_done(&t);
}

/* A data file cut short by another program while rows are read through
** the mapping: no SIGBUS reaches the process, the reads see zeros and
** npk_map_check reports it; after the file is restored, a new read maps
** afresh and sees the real bytes.  A SIGBUS from a mapping that is not the
** engine's still reaches the handler the program installed before. */
static sigjmp_buf foreign_jmp;
static volatile sig_atomic_t foreign_seen;
static void foreign_handler(int sig) {
  (void)sig;
  foreign_seen = 1;
  siglongjmp(foreign_jmp, 1);
}

/* The program's own SIGBUS handler, in place before the engine maps
** anything (main calls this first), as an application's would be. */
static void install_foreign_handler(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = foreign_handler;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, NULL);
}

static void test_cut_under_mapping(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  enum { N = 4096 };
  static int32_t v[N];
  for (int i = 0; i < N; i++) v[i] = i + 1;
  CHECK_EQ(save2(s, "a", NPK_INT32, N, 0, v), NPK_OK);
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/data_a.npkd", t.dir);
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  uint64_t mark = npk_map_faults(s);
  const void *p = NULL;
  CHECK_EQ(npk_row_ptr(s, "a", 10, &p), NPK_OK);
  CHECK_EQ(*(const int32_t *)p, 11);
  CHECK_EQ(npk_map_check(s, mark, "a"), NPK_OK);
  CHECK_EQ(truncate(path, 0), 0);
  CHECK_EQ(npk_row_ptr(s, "a", N - 1, &p), NPK_OK);
  CHECK_EQ(*(const volatile int32_t *)p, 0);
  CHECK_EQ(npk_map_check(s, mark, "a"), NPK_CORRUPT);
  CHECK_HAS(npk_errmsg(s), "data_a.npkd was shortened by another program "
                           "while array \"a\" was being read (0 of its "
                           "16384 bytes left)");
  npk_read_end(s);
  /* Restored: the zeros stay in the old mapping only. */
  FILE *f = fopen(path, "wb");
  CHECK(f && fwrite(v, 4, N, f) == N);
  if (f) fclose(f);
  CHECK_EQ(rows_mismatch(s, "a", (unsigned char *)v, NULL, N, 4), 0);
  /* Cut and grown back while a row is read: the page was lost as to a read
  ** error, and the file is whole again: SQLITE_IOERR, not damage. */
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  mark = npk_map_faults(s);
  CHECK_EQ(npk_row_ptr(s, "a", N - 1, &p), NPK_OK);
  CHECK_EQ(truncate(path, 0), 0);
  CHECK_EQ(*(const volatile int32_t *)p, 0);
  CHECK_EQ(truncate(path, N * 4), 0);
  CHECK_EQ(npk_map_check(s, mark, "a"), NPK_IOERR);
  CHECK_HAS(npk_errmsg(s), "could not be read while array \"a\" was being "
                           "read");
  npk_read_end(s);
  tu_close(st, s);

  /* A foreign mapping of a file cut short. */
  snprintf(path, sizeof path, "%s/foreign", t.dir);
  int fd = open(path, O_RDWR | O_CREAT, 0644);
  CHECK(fd >= 0 && ftruncate(fd, 8192) == 0);
  volatile unsigned char *m = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, 0);
  CHECK(m != MAP_FAILED);
  CHECK_EQ(ftruncate(fd, 0), 0);
  foreign_seen = 0;
  if (sigsetjmp(foreign_jmp, 1) == 0) (void)m[4096];
  CHECK_EQ(foreign_seen, 1);
  munmap((void *)m, 8192);
  close(fd);
  tu_tmp_done(&t);
}

static void test_modify_time(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  int32_t v[4] = {1, 2, 3, 4};
  uint64_t t0 = tu_now_us();
  CHECK_EQ(save2(s, "a", NPK_INT32, 4, 0, v), NPK_OK);
  CHECK_EQ(save2(s, "b", NPK_INT32, 4, 0, v), NPK_OK);
  uint64_t t1 = tu_now_us();
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, "a", &in), NPK_OK);
  uint64_t ma = in.modify_time;
  CHECK(ma + 1000000 >= t0 && ma <= t1 + 1000000);
  CHECK_EQ(info_of(s, "b", &in), NPK_OK);
  uint64_t mb = in.modify_time;
  CatParsed *c = tu_cat_read(t.dir);
  CHECK(c && c->e[0].mtime == ma && c->e[1].mtime == mb);
  free(c);
  usleep(30000);
  uint64_t t2 = tu_now_us();
  CHECK_EQ(append2(s, "a", NPK_INT32, 1, 0, v), NPK_OK);
  uint64_t t3 = tu_now_us();
  CHECK_EQ(info_of(s, "a", &in), NPK_OK);
  CHECK(in.modify_time > ma);
  CHECK(in.modify_time + 1000000 >= t2 && in.modify_time <= t3 + 1000000);
  uint64_t ma2 = in.modify_time;
  /* Another array's time is not touched. */
  CHECK_EQ(info_of(s, "b", &in), NPK_OK);
  CHECK_EQ(in.modify_time, mb);
  usleep(30000);
  uint64_t r = 0;
  CHECK_EQ(npk_delete_rows(s, "a", &r, 1), NPK_OK);
  CHECK_EQ(info_of(s, "a", &in), NPK_OK);
  CHECK(in.modify_time > ma2);
  ma2 = in.modify_time;
  s = reopen(t.dir, &st, s);
  CHECK_EQ(info_of(s, "a", &in), NPK_OK);
  CHECK_EQ(in.modify_time, ma2);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* ---- logical and physical rows ---------------------------------------- */

/* Compare logical_to_physical, next_live and row_live with LIVE for every
** row; returns the number of mismatches. */
static long check_live_maps(NpkSession *s, const char *name,
                            const unsigned char *live, uint64_t rows) {
  long bad = 0;
  uint64_t k = 0, ph = 0;
  if (npk_read_begin(s) != NPK_OK) return 1;
  NpkArrayInfo in;
  if (npk_array_info(s, name, &in) != NPK_OK || in.rows != rows) bad++;
  for (uint64_t r = 0; r < rows; r++) {
    if (npk_row_live(s, name, r) != live[r]) bad++;
    if (!live[r]) continue;
    if (npk_logical_to_physical(s, name, k, &ph) != NPK_OK || ph != r) bad++;
    k++;
  }
  if (in.live_rows != k) bad++;
  if (npk_logical_to_physical(s, name, k, &ph) != NPK_RANGE) bad++;
  if (npk_logical_to_physical(s, name, k + 1000, &ph) != NPK_RANGE) bad++;
  if (npk_row_live(s, name, rows) != 0) bad++;
  /* next_live, scanning from the end */
  uint64_t next = rows;
  for (uint64_t r = rows + 1; r-- > 0;) {
    if (r < rows && live[r]) next = r;
    uint64_t got = 12345;
    if (npk_next_live(s, name, r, &got) != NPK_OK || got != next) bad++;
  }
  npk_read_end(s);
  if (bad) printf("  %s: %ld live-map mismatches\n", name, bad);
  return bad;
}

/* The bitmap file must match LIVE exactly. */
static int check_bitmap_file(const char *dir, const char *name,
                             const unsigned char *live, uint64_t rows) {
  char f[300];
  snprintf(f, sizeof f, "deleted_%s.npkb", name);
  size_t n;
  unsigned char *got = tu_read_file(P(dir, f), &n);
  Buf want = {0};
  tu_bitmap_build(&want, live, rows);
  int ok = got && n == want.n && memcmp(got, want.p, n) == 0;
  free(got);
  buf_free(&want);
  return ok;
}

static void test_logical_random(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  enum { N = 10000 };
  static uint16_t v[N];
  static unsigned char live[N];
  for (int i = 0; i < N; i++) v[i] = (uint16_t)(i * 7);
  memset(live, 1, N);
  CHECK_EQ(save2(s, "r", NPK_UINT16, N, 0, v), NPK_OK);
  uint64_t st_rand = 12345;
  static uint64_t batch[N];
  for (int b = 0; b < 4; b++) {
    int n = 0;
    for (int j = 0; j < 800; j++) {
      uint64_t r = tu_rand(&st_rand) % N;
      if (!live[r]) continue;
      live[r] = 0;
      batch[n++] = r;     /* unsorted on purpose */
    }
    CHECK_EQ(npk_delete_rows(s, "r", batch, (uint64_t)n), NPK_OK);
  }
  /* A run of deleted rows spanning whole words. */
  int n = 0;
  for (int r = 640; r < 900; r++)
    if (live[r]) { live[r] = 0; batch[n++] = (uint64_t)r; }
  CHECK_EQ(npk_delete_rows(s, "r", batch, (uint64_t)n), NPK_OK);
  CHECK_EQ(check_live_maps(s, "r", live, N), 0);
  CHECK(check_bitmap_file(t.dir, "r", live, N));

  /* Pending deletions inside a transaction are seen by the writer. */
  static unsigned char live2[N];
  memcpy(live2, live, N);
  n = 0;
  for (int j = 0; j < 500; j++) {
    uint64_t r = tu_rand(&st_rand) % N;
    if (!live2[r]) continue;
    live2[r] = 0;
    batch[n++] = r;
  }
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(npk_delete_rows(s, "r", batch, (uint64_t)n), NPK_OK);
  CHECK_EQ(check_live_maps(s, "r", live2, N), 0);
  CHECK_EQ(npk_rollback(s), NPK_OK);
  CHECK_EQ(check_live_maps(s, "r", live, N), 0);
  CHECK_EQ(npk_delete_rows(s, "r", batch, (uint64_t)n), NPK_OK);
  CHECK_EQ(check_live_maps(s, "r", live2, N), 0);
  CHECK(check_bitmap_file(t.dir, "r", live2, N));
  s = reopen(t.dir, &st, s);
  CHECK_EQ(check_live_maps(s, "r", live2, N), 0);
  CHECK_EQ(rows_mismatch(s, "r", (unsigned char *)v, live2, N, 2), 0);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_bitmap_boundaries(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  static const uint64_t sizes[] = {63, 64, 65, 128, 129};
  static const uint64_t sets[][6] = {
    {62}, {63}, {64}, {65}, {127}, {128}, {62, 63, 64, 65, 127, 128},
  };
  static const int setlen[] = {1, 1, 1, 1, 1, 1, 6};
  unsigned char v[129], live[129];
  for (int i = 0; i < 129; i++) v[i] = (unsigned char)i;
  for (size_t zi = 0; zi < sizeof sizes / sizeof sizes[0]; zi++) {
    uint64_t N = sizes[zi];
    for (size_t si = 0; si < sizeof setlen / sizeof setlen[0]; si++) {
      uint64_t rows[6];
      int n = 0;
      memset(live, 1, sizeof live);
      for (int j = 0; j < setlen[si]; j++)
        if (sets[si][j] < N) { rows[n++] = sets[si][j]; live[sets[si][j]] = 0; }
      if (n == 0) continue;
      CHECK_EQ(save2(s, "w", NPK_UINT8, N, 0, v), NPK_OK);
      CHECK_EQ(npk_delete_rows(s, "w", rows, (uint64_t)n), NPK_OK);
      long bad = check_live_maps(s, "w", live, N);
      if (bad) printf("  size %llu set %zu\n", (unsigned long long)N, si);
      CHECK_EQ(bad, 0);
      CHECK_EQ(tu_file_size(P(t.dir, "deleted_w.npkb")),
               (long long)(16 + 8 * ((N + 63) / 64)));
      CHECK(check_bitmap_file(t.dir, "w", live, N));
      /* Appending across the word boundary keeps the bitmap exact. */
      if (N == 64 && si == 1) {
        CHECK_EQ(append2(s, "w", NPK_UINT8, 1, 0, v + 64), NPK_OK);
        live[64] = 1;
        CHECK_EQ(check_live_maps(s, "w", live, 65), 0);
        CHECK(check_bitmap_file(t.dir, "w", live, 65));
      }
    }
  }
  /* Every row of a 64-row array deleted. */
  uint64_t all[64];
  for (int i = 0; i < 64; i++) all[i] = (uint64_t)i;
  memset(live, 0, sizeof live);
  CHECK_EQ(save2(s, "w", NPK_UINT8, 64, 0, v), NPK_OK);
  CHECK_EQ(npk_delete_rows(s, "w", all, 64), NPK_OK);
  CHECK_EQ(check_live_maps(s, "w", live, 64), 0);
  CHECK(check_bitmap_file(t.dir, "w", live, 64));
  s = reopen(t.dir, &st, s);
  CHECK_EQ(check_live_maps(s, "w", live, 64), 0);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* A bitmap covering fewer rows than the array: rows past it are not live. */
static void test_bitmap_short_legal(void) {
  Tmp t;
  tu_tmp_init(&t);
  mkdir(t.dir, 0755);
  CatEntry e;
  memset(&e, 0, sizeof e);
  e.name = "x"; e.ndim = 1; e.dims[0] = 70; e.dtype = NPK_UINT8; e.mtime = 1;
  unsigned char v[72], live[72];
  for (int i = 0; i < 72; i++) v[i] = (unsigned char)(i + 1);
  memset(live, 1, sizeof live);
  live[5] = 0;
  Buf cat = {0}, bm = {0};
  tu_cat_build(&cat, &e, 1, NULL);
  tu_bitmap_build(&bm, live, 64);
  tu_write_buf(P(t.dir, TU_CATALOG), &cat);
  tu_write_buf(P(t.dir, "deleted_x.npkb"), &bm);
  tu_write_file(P(t.dir, "data_x.npkd"), v, 70);
  for (int i = 64; i < 70; i++) live[i] = 0;
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, 0, &st);
  CHECK(s != NULL);
  if (s) {
    CHECK_EQ(check_live_maps(s, "x", live, 70), 0);
    NpkArrayInfo in;
    CHECK_EQ(info_of(s, "x", &in), NPK_OK);
    CHECK_EQ(in.live_rows, 63);
    CHECK_EQ(in.rows, 70);
    /* Appending extends the bitmap; the rows it did not cover stay dead. */
    CHECK_EQ(append2(s, "x", NPK_UINT8, 2, 0, v + 70), NPK_OK);
    live[70] = live[71] = 1;
    CHECK_EQ(check_live_maps(s, "x", live, 72), 0);
    CHECK(check_bitmap_file(t.dir, "x", live, 72));
    s = reopen(t.dir, &st, s);
    CHECK_EQ(check_live_maps(s, "x", live, 72), 0);
    CHECK_EQ(rows_mismatch(s, "x", v, live, 72, 1), 0);
  }
  tu_close(st, s);
  buf_free(&cat);
  buf_free(&bm);
  tu_tmp_done(&t);
}

/* ---- counters, empty arrays, segmented arrays ------------------------- */

static void test_stats(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  NpkStats a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  npk_store_stats(st, &a);
  int32_t v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  CHECK_EQ(save2(s, "a", NPK_INT32, 4, 0, v), NPK_OK);
  CHECK_EQ(append2(s, "a", NPK_INT32, 3, 0, v), NPK_OK);
  npk_store_stats(st, &b);
  CHECK(b.commits >= a.commits + 2);
  CHECK(b.rows_appended >= a.rows_appended + 3);
  CHECK(b.bytes_written >= a.bytes_written + 28);
  CHECK(b.fsyncs > a.fsyncs);
  a = b;
  uint64_t rows[2] = {0, 1};
  CHECK_EQ(npk_replace_rows(s, "a", rows, 2, v), NPK_OK);
  CHECK_EQ(npk_delete_rows(s, "a", rows, 1), NPK_OK);
  npk_store_stats(st, &b);
  CHECK_EQ(b.rows_replaced, a.rows_replaced + 2);
  CHECK_EQ(b.rows_deleted, a.rows_deleted + 1);
  CHECK_EQ(b.commits, a.commits + 2);
  CHECK(b.bytes_written > a.bytes_written);
  a = b;
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(append2(s, "a", NPK_INT32, 1, 0, v), NPK_OK);
  CHECK_EQ(npk_rollback(s), NPK_OK);
  npk_store_stats(st, &b);
  CHECK_EQ(b.rollbacks, a.rollbacks + 1);
  CHECK_EQ(b.commits, a.commits);
  CHECK_EQ(b.rows_appended, a.rows_appended);
  /* Counters belong to the store object: a fresh one starts at zero. */
  s = reopen(t.dir, &st, s);
  npk_store_stats(st, &a);
  CHECK_EQ(a.commits, 0);
  CHECK_EQ(a.rows_appended, 0);
  CHECK_EQ(a.rollbacks, 0);
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, "a", &in), NPK_OK);
  CHECK_EQ(in.live_rows, 6);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_zero_rows(void) {
  Tmp t;
  tu_tmp_init(&t);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
  float f[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  CHECK_EQ(save2(s, "e", NPK_FLOAT32, 0, 4, f), NPK_OK);
  CHECK_EQ(save2(s, "e1", NPK_INT8, 0, 0, f), NPK_OK);
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, "e", &in), NPK_OK);
  CHECK_EQ(in.rows, 0);
  CHECK_EQ(in.live_rows, 0);
  CHECK_EQ(in.ndim, 2);
  CHECK_EQ(in.shape[1], 4);
  CHECK_EQ(in.row_bytes, 16);
  CHECK(tu_file_size(P(t.dir, "data_e.npkd")) <= 0);
  CatParsed *c = tu_cat_read(t.dir);
  CHECK(c && c->count == 2 && c->e[0].ndim == 2 && c->e[0].dims[0] == 0 &&
        c->e[0].dims[1] == 4 && c->e[0].size == 0);
  free(c);
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  uint64_t ph = 0;
  const void *p;
  CHECK_EQ(npk_logical_to_physical(s, "e", 0, &ph), NPK_RANGE);
  CHECK(npk_next_live(s, "e", 0, &ph) == NPK_OK && ph == 0);
  CHECK_EQ(npk_row_ptr(s, "e", 0, &p), NPK_RANGE);
  npk_read_end(s);
  s = reopen(t.dir, &st, s);
  CHECK_EQ(info_of(s, "e", &in), NPK_OK);
  CHECK_EQ(in.rows, 0);
  CHECK_EQ(info_of(s, "e1", &in), NPK_OK);
  CHECK_EQ(in.ndim, 1);
  CHECK_EQ(append2(s, "e", NPK_FLOAT32, 3, 4, f), NPK_OK);
  CHECK_EQ(append2(s, "e1", NPK_INT8, 0, 0, f), NPK_OK);
  CHECK_EQ(rows_mismatch(s, "e", (unsigned char *)f, NULL, 3, 16), 0);
  s = reopen(t.dir, &st, s);
  CHECK_EQ(rows_mismatch(s, "e", (unsigned char *)f, NULL, 3, 16), 0);
  CHECK_EQ(tu_file_size(P(t.dir, "data_e.npkd")), 48);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* Write to a segmented array: it becomes one .npkd file. */
static void test_segmented_write(void) {
  int64_t base[5] = {11, 12, 13, 14, 15};
  for (int op = 0; op < 4; op++) {
    Tmp t;
    tu_tmp_init(&t);
    tu_seg_store(t.dir);
    NpkStore *st;
    NpkSession *s = tu_open(t.dir, 0, &st);
    if (!s) { tu_close(st, s); tu_tmp_done(&t); continue; }
    int64_t want[7];
    unsigned char live[7] = {1, 1, 1, 1, 1, 1, 1};
    uint64_t rows = 5;
    memcpy(want, base, sizeof base);
    int64_t extra[2] = {-1, -2};
    uint64_t r = 3;
    switch (op) {
      case 0:
        CHECK_EQ(append2(s, "s", NPK_INT64, 2, 0, extra), NPK_OK);
        want[5] = -1; want[6] = -2; rows = 7;
        break;
      case 1:
        CHECK_EQ(npk_replace_rows(s, "s", &r, 1, extra), NPK_OK);
        want[3] = -1;
        break;
      case 2:
        CHECK_EQ(npk_delete_rows(s, "s", &r, 1), NPK_OK);
        live[3] = 0;
        break;
      case 3:
        CHECK_EQ(npk_delete_rows(s, "s", &r, 1), NPK_OK);
        CHECK_EQ(npk_compact(s, "s"), NPK_OK);
        want[3] = 15; rows = 4;
        break;
    }
    int f0 = ctest_case_failures;
    for (int pass = 0; pass < 2; pass++) {
      CHECK_EQ(rows_mismatch(s, "s", (unsigned char *)want, live, rows, 8), 0);
      NpkArrayInfo in;
      CHECK_EQ(info_of(s, "s", &in), NPK_OK);
      CHECK_EQ(in.segmented, 0);
      CHECK(in.data_file && !strcmp(in.data_file, "data_s.npkd"));
      CatParsed *c = tu_cat_read(t.dir);
      CHECK(c && c->count == 1 && !strcmp(c->e[0].data_file, "data_s.npkd") &&
            c->e[0].dims[0] == rows);
      free(c);
      CHECK_EQ(tu_file_size(P(t.dir, "data_s.npkd")), (long long)(rows * 8));
      s = reopen(t.dir, &st, s);
      if (!s) break;
    }
    static const char *opname[4] = {"append", "replace", "delete", "compact"};
    if (ctest_case_failures != f0) printf("  (segmented %s)\n", opname[op]);
    tu_close(st, s);
    tu_tmp_done(&t);
  }
}

/* Operation OP of test_segdir_sync_faults on the segmented array "s":
** drop it, save over it, replace a row (which rewrites it), or compact
** it (NumPack deleted row 1: compaction rewrites it too). */
static int segdir_op(NpkSession *s, int op) {
  int64_t v[2] = {7, 8}, r = 99;
  uint64_t shape[1] = {2}, row = 2;
  switch (op) {
    case 0: return npk_drop(s, "s");
    case 1: return npk_save(s, "s", NPK_INT64, 1, shape, v);
    case 2: return npk_replace_rows(s, "s", &row, 1, &r);
    default: return npk_compact(s, "s");
  }
}

/* A segmented array whose segment files lie in a subdirectory, as NumPack
** may keep them, dropped, saved over, rewritten by a replaced row or by
** compaction, with the Nth sync failing for every N: the commit's syncs of
** that subdirectory (for the backups' entries before the journal, for the
** removals before the commit point) fail like any sync, leaving the array
** whole, its segment files in place and no hot journal or backup; the
** operation then works. */
static void test_segdir_sync_faults(void) {
  static const char *const opname[4] = {"drop", "save", "replace",
                                        "compact"};
  int64_t want[5] = {11, 12, 13, 14, 15};
  int64_t saved[2] = {7, 8}, replaced[5] = {11, 12, 99, 14, 15};
  int64_t compacted[4] = {11, 13, 14, 15};
  unsigned char live[5] = {1, 0, 1, 1, 1};
  for (int op = 0; op < 4; op++) {
    int fired = 0;
    for (int nth = 1; nth <= 20; nth++) {
      Tmp t;
      NpkStore *st;
      NpkSession *s;
      NpkStats before, after;
      int rc, f0 = ctest_case_failures;
      const unsigned char *had = op == 3 ? live : NULL;
      tu_tmp_init(&t);
      tu_seg_store(t.dir);
      tu_seg_into(t.dir, "segs");
      if (op == 3) {
        Buf bm = {0};
        tu_bitmap_build(&bm, live, 5);
        tu_write_buf(P(t.dir, "deleted_s.npkb"), &bm);
        buf_free(&bm);
      }
      s = tu_open(t.dir, 0, &st);
      if (!s) {
        tu_tmp_done(&t);
        break;
      }
      npk_store_stats(st, &before);
      npk_test_fault("fsync", nth, EIO);
      rc = segdir_op(s, op);
      npk_test_fault("fsync", 0, 0);
      if (rc != NPK_OK) {
        fired++;
        CHECK_EQ(rc, NPK_IOERR);
        CHECK(!tu_journal_hot(t.dir));
        CHECK(tu_exists(P(t.dir, "segs/seg_s_0.bin")));
        CHECK(tu_exists(P(t.dir, "segs/seg_s_1.bin")));
        CHECK(!tu_exists(P(t.dir, "segs/seg_s_0.bin-npkbak")));
        CHECK(!tu_exists(P(t.dir, "segs/seg_s_1.bin-npkbak")));
        CHECK_EQ(rows_mismatch(s, "s", (unsigned char *)want, had, 5, 8), 0);
        s = reopen(t.dir, &st, s);
        CHECK(s != NULL);
        if (s)
          CHECK_EQ(rows_mismatch(s, "s", (unsigned char *)want, had, 5, 8),
                   0);
        if (s) CHECK_EQ(segdir_op(s, op), NPK_OK);
      } else if (op == 0) {
        npk_store_stats(st, &after);
        /* The store's directory, the catalog and the journal twice, the
        ** subdirectory twice, and the fresh journal's zeroed header before
        ** it takes the journal's name. */
        CHECK_EQ(after.last_commit_fsyncs, 7);
        CHECK_EQ(after.fsyncs - before.fsyncs, 7);
      }
      if (s) {
        if (op == 0) CHECK_EQ(count_of(s), 0);
        if (op == 1)
          CHECK_EQ(rows_mismatch(s, "s", (unsigned char *)saved, NULL, 2, 8),
                   0);
        if (op == 2)
          CHECK_EQ(
              rows_mismatch(s, "s", (unsigned char *)replaced, NULL, 5, 8), 0);
        if (op == 3)
          CHECK_EQ(
              rows_mismatch(s, "s", (unsigned char *)compacted, NULL, 4, 8), 0);
        CHECK(!tu_exists(P(t.dir, "deleted_s.npkb-npkbak")));
        CHECK(!tu_journal_hot(t.dir));
        CHECK(!tu_exists(P(t.dir, "segs/seg_s_0.bin")));
        CHECK(!tu_exists(P(t.dir, "segs/seg_s_1.bin")));
        CHECK(!tu_exists(P(t.dir, "segs/seg_s_0.bin-npkbak")));
        CHECK(!tu_exists(P(t.dir, "segs/seg_s_1.bin-npkbak")));
        CHECK(!tu_exists(P(t.dir, "data_s.npkseg")));
      }
      if (ctest_case_failures != f0)
        printf("  (%s, fsync fault %d)\n", opname[op], nth);
      tu_close(st, s);
      tu_tmp_done(&t);
      if (rc == NPK_OK) break;
    }
    CHECK(fired >= 2);
  }
}

/* A child process opens the store in DIR and runs OP on it, dying just
** before commit step STEP (npk_test_crash_at); its wait status. */
static int die_at(const char *dir, int step, int (*op)(NpkSession *)) {
  int status = 0;
  pid_t pid;
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    NpkStore *cst;
    NpkSession *cs = tu_open(dir, 0, &cst);
    if (!cs) _exit(10);
    npk_test_crash_at(step);
    _exit(op(cs) == NPK_OK ? 0 : 11);
  }
  waitpid(pid, &status, 0);
  return status;
}

static int drop_s(NpkSession *s) { return npk_drop(s, "s"); }

/* A writer that dies at each step of a drop of the segmented array whose
** segment files lie in a subdirectory: before the commit point the next
** writer plays the journal back (renaming a backup over a segment file not
** yet removed, its own hard link, leaves the backup), after it the backups
** of the removed files remain.  Either way the next writer's sweep removes
** the backups in the subdirectory as it does in the store's own
** directory, so no copy of the rows stays behind. */
static void test_segdir_crash_backups(void) {
  int64_t want[5] = {11, 12, 13, 14, 15};
  for (int step = 1; step <= 8; step++) {
    Tmp t;
    NpkStore *st;
    NpkSession *s;
    int status = 0, f0 = ctest_case_failures;
    int64_t v[1] = {5};
    uint64_t shape[1] = {1};
    tu_tmp_init(&t);
    tu_seg_store(t.dir);
    tu_seg_into(t.dir, "segs");
    status = die_at(t.dir, step, drop_s);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 77);
    s = tu_open(t.dir, 0, &st);
    CHECK(s != NULL);
    if (s) {
      CHECK_EQ(npk_save(s, "x", NPK_INT64, 1, shape, v), NPK_OK);
      CHECK(!tu_journal_hot(t.dir));
      if (step <= 6) {
        CHECK_EQ(count_of(s), 2);
        CHECK_EQ(rows_mismatch(s, "s", (unsigned char *)want, NULL, 5, 8), 0);
      } else {
        CHECK_EQ(count_of(s), 1);
        CHECK(!tu_exists(P(t.dir, "segs/seg_s_0.bin")));
        CHECK(!tu_exists(P(t.dir, "segs/seg_s_1.bin")));
      }
    }
    CHECK(!tu_exists(P(t.dir, "segs/seg_s_0.bin-npkbak")));
    CHECK(!tu_exists(P(t.dir, "segs/seg_s_1.bin-npkbak")));
    CHECK(!tu_exists(P(t.dir, "data_s.npkseg-npkbak")));
    if (ctest_case_failures != f0) printf("  (crash at step %d)\n", step);
    tu_close(st, s);
    tu_tmp_done(&t);
  }
}

/* What npk_data_files gives for one array: up to 4 files, and the first
** word of its bitmap (read while the read lasts). */
typedef struct FilesSeen FilesSeen;
struct FilesSeen {
  int n;             /* files given */
  char path[4][512]; /* their paths */
  NpkDataFile f[4];  /* and the rest */
  uint64_t word0;    /* the bitmap's first word, or 0 without one */
};

static int ends_with(const char *s, const char *tail) {
  size_t n = strlen(s), k = strlen(tail);
  return n >= k && !strcmp(s + n - k, tail);
}

static int files_seen(void *arg, const NpkDataLayout *l, int i,
                      const NpkDataFile *f) {
  FilesSeen *fs = arg;
  if (i != fs->n || i >= 4) return NPK_ERROR;
  if (l->live && l->covered) fs->word0 = l->live[0];
  snprintf(fs->path[i], sizeof fs->path[i], "%s", f->path);
  fs->f[i] = *f;
  fs->n++;
  return NPK_OK;
}

/* npk_data_files of NAME inside its own read. */
static int files_of(NpkSession *s, const char *name, NpkDataLayout *l,
                    FilesSeen *fs) {
  int rc = npk_read_begin(s);
  memset(fs, 0, sizeof *fs);
  if (rc) return rc;
  rc = npk_data_files(s, name, l, files_seen, fs);
  npk_read_end(s);
  return rc;
}

/* The data files of a segmented array, then of the plain file a deletion
** makes of it, with its bitmap; refusals: outside a read, a missing array,
** an array the session's transaction changed. */
static void test_data_files(void) {
  Tmp t;
  NpkStore *st;
  NpkSession *s;
  NpkDataLayout l;
  FilesSeen fs;
  uint64_t r = 3;
  tu_tmp_init(&t);
  tu_seg_store(t.dir);
  s = tu_open(t.dir, 0, &st);
  if (!s) {
    tu_tmp_done(&t);
    return;
  }
  CHECK_EQ(files_of(s, "s", &l, &fs), NPK_OK);
  CHECK_EQ(l.nfiles, 2);
  CHECK_EQ(fs.n, 2);
  CHECK(l.live == NULL);
  CHECK(fs.path[0][0] == '/' && ends_with(fs.path[0], "/seg_s_0.bin"));
  CHECK(ends_with(fs.path[1], "/seg_s_1.bin"));
  CHECK(fs.f[0].offset == 0 && fs.f[0].first_row == 0 && fs.f[0].rows == 3);
  CHECK(fs.f[1].offset == 0 && fs.f[1].first_row == 3 && fs.f[1].rows == 2);
  /* Outside a read, and a missing array. */
  CHECK_EQ(npk_data_files(s, "s", &l, files_seen, &fs), NPK_MISUSE);
  CHECK_EQ(files_of(s, "nope", &l, &fs), NPK_NOTFOUND);
  /* Changed by the open transaction: refused, naming the array. */
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(npk_delete_rows(s, "s", &r, 1), NPK_OK);
  CHECK_EQ(npk_data_files(s, "s", &l, files_seen, &fs), NPK_ERROR);
  CHECK(strstr(npk_errmsg(s), "\"s\" has changes not yet committed"));
  CHECK_EQ(npk_commit(s), NPK_OK);
  /* Committed: one plain file, row 3 deleted in the bitmap. */
  CHECK_EQ(files_of(s, "s", &l, &fs), NPK_OK);
  CHECK_EQ(fs.n, 1);
  CHECK(ends_with(fs.path[0], "/data_s.npkd"));
  CHECK(fs.f[0].first_row == 0 && fs.f[0].rows == 5);
  CHECK(l.live != NULL && l.covered == 5);
  CHECK_EQ(fs.word0, 0x17);
  /* A file cut short: NPK_CORRUPT naming it. */
  CHECK_EQ(truncate(P(t.dir, "data_s.npkd"), 32), 0);
  s = reopen(t.dir, &st, s);
  if (s) {
    CHECK_EQ(files_of(s, "s", &l, &fs), NPK_CORRUPT);
    CHECK(strstr(npk_errmsg(s), "data_s.npkd"));
  }
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* A segmented array of more segment files than any fixed table would
** hold: rewriting it removes every one of them, and a crash after they are
** removed puts every one back (the journal lists them all). */
#define MANY_SEGS 4100
static int save_m(NpkSession *s) {
  static const int64_t v[2] = {7, 8};
  uint64_t shape[1] = {2};
  return npk_save(s, "m", NPK_INT64, 1, shape, v);
}

static void test_segmented_many(void) {
  for (int crash = 0; crash < 2; crash++) {
    Tmp t;
    tu_tmp_init(&t);
    mkdir(t.dir, 0755);
    tu_seg_write_many(t.dir, MANY_SEGS);
    int64_t v[2] = {7, 8};
    uint64_t shape[1] = {2};
    if (crash) {
      /* Die just before step 5, after step 4 removed the segments. */
      int status = die_at(t.dir, 5, save_m);
      CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 77);
      CHECK(tu_journal_hot(t.dir));
      CHECK_EQ(tu_seg_count_many(t.dir, MANY_SEGS), 0);
    }
    NpkStore *st;
    NpkSession *s = tu_open(t.dir, 0, &st);
    CHECK(s != NULL);
    if (s && crash) {
      /* Recovery (by the next writer) restored the segmented array,
      ** segment files and all. */
      NpkArrayInfo in;
      CHECK_EQ(npk_recover(s), NPK_OK);
      CHECK_EQ(tu_seg_count_many(t.dir, MANY_SEGS), MANY_SEGS);
      CHECK_EQ(info_of(s, "m", &in), NPK_OK);
      CHECK_EQ(in.rows, MANY_SEGS);
      CHECK_EQ(in.segmented, 1);
      CHECK(!tu_journal_hot(t.dir));
    } else if (s) {
      CHECK_EQ(npk_save(s, "m", NPK_INT64, 1, shape, v), NPK_OK);
      CHECK_EQ(tu_seg_count_many(t.dir, MANY_SEGS), 0);
      CHECK(!tu_exists(P(t.dir, "data_m.npkseg")));
      CHECK_EQ(rows_mismatch(s, "m", (unsigned char *)v, NULL, 2, 8), 0);
    }
    tu_close(st, s);
    tu_tmp_done(&t);
  }
}

/* ---- zero-width arrays and slices --------------------------------------- */

/* The sanitizers reserve terabytes of address space: no cap under them. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CAP_AS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CAP_AS 0
#endif
#endif
#ifndef CAP_AS
#define CAP_AS 1
#endif

/* Run FN in a child whose address space is capped at 512 MB, so that an
** allocation sized by a crafted row count fails there instead of taking
** the machine: the child's checks count as this case's. */
static void capped_child(void (*fn)(void)) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit rl = {512ull << 20, 512ull << 20};
    if (CAP_AS && setrlimit(RLIMIT_AS, &rl) != 0) _exit(100);
    ctest_case_failures = 0;
    fn();
    fflush(stdout);
    _exit(ctest_case_failures ? 1 : 0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    printf("  capped child: status 0x%x\n", status);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static const char *zw_dir;

/* A crafted entry of 2^40 zero-width rows with a 64-row bitmap opens with
** memory for 64 bits, not 2^40; rows past the bitmap are deleted. */
static void zw_crafted_body(void) {
  NpkStore *st;
  NpkSession *s = tu_open(zw_dir, 0, &st);
  NpkArrayInfo in;
  NpkView v;
  uint64_t rows = 1ull << 40, r = 0, zero[1] = {0};
  CHECK(s != NULL);
  if (!s) return;
  CHECK_EQ(info_of(s, "w", &in), NPK_OK);
  CHECK_EQ(in.rows, rows);
  CHECK_EQ(in.live_rows, 64);
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  CHECK_EQ(npk_view(s, "w", &v), NPK_OK);
  CHECK_EQ(v.rows, 64);                 /* a scan stops where the bits do */
  CHECK_EQ(v.live_rows, 64);
  CHECK_EQ(npk_row_live(s, "w", 63), 1);
  CHECK_EQ(npk_row_live(s, "w", 64), 0);
  CHECK_EQ(npk_row_live(s, "w", rows - 1), 0);
  CHECK_EQ(npk_next_live(s, "w", 64, &r), NPK_OK);
  CHECK_EQ(r, rows);
  CHECK_EQ(npk_physical_to_logical(s, "w", rows, &r), NPK_OK);
  CHECK_EQ(r, 64);
  CHECK_EQ(npk_logical_to_physical(s, "w", 63, &r), NPK_OK);
  CHECK_EQ(r, 63);
  r = 0;
  CHECK_EQ(npk_copy_live_rows(s, "w", &r, 64, zero), NPK_OK);
  npk_read_end(s);
  /* Every row from 60 on: four live rows go, the file stays short. */
  CHECK_EQ(npk_delete_slice(s, "w", 60, 1, 4), NPK_OK);
  CHECK_EQ(tu_file_size(P(zw_dir, "deleted_w.npkb")), 24);
  CHECK_EQ(npk_delete_slice(s, "w", 0, 2, 30), NPK_OK);
  CHECK_EQ(info_of(s, "w", &in), NPK_OK);
  CHECK_EQ(in.live_rows, 30);
  /* Appending would need 2^40 bits: refused, naming the array. */
  uint64_t one[2] = {1, 0};
  CHECK_EQ(npk_append(s, "w", NPK_FLOAT32, 2, one, zero), NPK_ERROR);
  CHECK_HAS(npk_errmsg(s), "\"w\"");
  CHECK_EQ(npk_compact(s, "w"), NPK_OK);
  CHECK_EQ(info_of(s, "w", &in), NPK_OK);
  CHECK_EQ(in.rows, 30);
  CHECK_EQ(in.live_rows, 30);
  tu_close(st, s);
}

static void test_zero_width_crafted(void) {
  Tmp t;
  tu_tmp_init(&t);
  mkdir(t.dir, 0755);
  tu_zero_width_write(t.dir, 1ull << 40, 64);
  zw_dir = t.dir;
  capped_child(zw_crafted_body);
  tu_tmp_done(&t);
}

/* Rows of a zero-width array of 2^62 rows: dropping those from an index
** on costs a bitmap of the rows before it; others would need 2^59 bytes
** and are refused, as is any row count over 2^63-1. */
static void zw_huge_body(void) {
  NpkStore *st;
  NpkSession *s = tu_open(zw_dir, NPK_OPEN_CREATE, &st);
  NpkArrayInfo in;
  uint64_t huge = 1ull << 62, shape[2] = {huge, 0}, r = 5;
  CHECK(s != NULL);
  if (!s) return;
  /* uint8: NumPy's limit (nonzero sizes times the item size fit int64)
  ** allows 2^62 such rows. */
  CHECK_EQ(npk_save(s, "z", NPK_UINT8, 2, shape, ""), NPK_OK);
  CHECK_EQ(npk_delete_rows(s, "z", &r, 1), NPK_ERROR);
  CHECK_HAS(npk_errmsg(s), "over the limit");
  CHECK_EQ(npk_delete_slice(s, "z", 0, 2, huge / 2), NPK_ERROR);
  CHECK_EQ(npk_delete_slice(s, "z", 10, 1, huge - 11), NPK_ERROR);
  CHECK(!tu_exists(P(zw_dir, "deleted_z.npkb")));
  CHECK_EQ(npk_delete_slice(s, "z", 10, 1, huge - 10), NPK_OK);
  CHECK_EQ(tu_file_size(P(zw_dir, "deleted_z.npkb")), 24);
  CHECK_EQ(info_of(s, "z", &in), NPK_OK);
  CHECK_EQ(in.rows, huge);
  CHECK_EQ(in.live_rows, 10);
  /* Inside a transaction, rolled back to a savepoint: all live again. */
  int lvl;
  CHECK_EQ(npk_begin(s), NPK_OK);
  CHECK_EQ(npk_savepoint(s, &lvl), NPK_OK);
  CHECK_EQ(npk_delete_slice(s, "z", 0, 1, 10), NPK_OK);
  CHECK_EQ(info_of(s, "z", &in), NPK_OK);
  CHECK_EQ(in.live_rows, 0);
  CHECK_EQ(npk_rollback_to(s, lvl), NPK_OK);
  CHECK_EQ(info_of(s, "z", &in), NPK_OK);
  CHECK_EQ(in.live_rows, 10);
  CHECK_EQ(npk_commit(s), NPK_OK);
  s = reopen(zw_dir, &st, s);
  CHECK(s != NULL);
  if (!s) return;
  CHECK_EQ(info_of(s, "z", &in), NPK_OK);
  CHECK_EQ(in.live_rows, 10);
  CHECK_EQ(npk_delete_slice(s, "z", 0, 1, 10), NPK_OK);
  CHECK_EQ(tu_file_size(P(zw_dir, "deleted_z.npkb")), 16);
  /* Row counts past 2^63-1, saved or reached by appending. */
  shape[0] = 1ull << 63;
  CHECK_EQ(npk_save(s, "z", NPK_FLOAT32, 2, shape, ""), NPK_ERROR);
  CHECK_HAS(npk_errmsg(s), "more than 2^63-1");
  shape[0] = (1ull << 63) - 1;
  CHECK_EQ(npk_save(s, "y", NPK_INT8, 2, shape, ""), NPK_OK);
  shape[0] = 1;
  CHECK_EQ(npk_append(s, "y", NPK_INT8, 2, shape, ""), NPK_ERROR);
  CHECK_HAS(npk_errmsg(s), "more than 2^63-1");
  CHECK_EQ(info_of(s, "y", &in), NPK_OK);
  CHECK_EQ(in.rows, (1ull << 63) - 1);
  tu_close(st, s);
}

static void test_zero_width_huge(void) {
  Tmp t;
  tu_tmp_init(&t);
  zw_dir = t.dir;
  capped_child(zw_huge_body);
  tu_tmp_done(&t);
}

/* npk_delete_slice deletes the rows npk_delete_rows would, for slices
** forwards over live and deleted rows, and a savepoint takes it back. */
static void test_delete_slice(void) {
  static const uint64_t cases[][3] = {
    {0, 1, 700}, {3, 1, 10}, {0, 7, 100}, {5, 64, 10}, {699, 1, 1},
    {1, 2, 350}, {100, 1, 600}, {0, 699, 2}, {64, 1, 64}, {2, 5, 0},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    Tmp t;
    tu_tmp_init(&t);
    NpkStore *st;
    NpkSession *s = tu_open(t.dir, NPK_OPEN_CREATE, &st);
    uint32_t vals[1000];
    uint64_t shape[1] = {1000}, pre[100], list[700], n = 0;
    for (int i = 0; i < 1000; i++) vals[i] = (uint32_t)i;
    CHECK_EQ(npk_save(s, "a", NPK_UINT32, 1, shape, vals), NPK_OK);
    CHECK_EQ(npk_save(s, "b", NPK_UINT32, 1, shape, vals), NPK_OK);
    /* Some rows already deleted: every third of the first 300. */
    for (int i = 0; i < 100; i++) pre[i] = (uint64_t)i * 3;
    CHECK_EQ(npk_delete_rows(s, "a", pre, 100), NPK_OK);
    CHECK_EQ(npk_delete_rows(s, "b", pre, 100), NPK_OK);
    uint64_t first = cases[c][0], step = cases[c][1], count = cases[c][2];
    CHECK_EQ(npk_read_begin(s), NPK_OK);
    for (uint64_t k = 0; k < count; k++)
      CHECK_EQ(npk_logical_to_physical(s, "b", first + k * step, &list[n++]),
               NPK_OK);
    npk_read_end(s);
    int lvl;
    CHECK_EQ(npk_begin(s), NPK_OK);
    CHECK_EQ(npk_savepoint(s, &lvl), NPK_OK);
    CHECK_EQ(npk_delete_slice(s, "a", first, step, count), NPK_OK);
    CHECK_EQ(npk_rollback_to(s, lvl), NPK_OK);
    for (int r = 0; r < 1000; r++)
      CHECK_EQ(npk_row_live(s, "a", (uint64_t)r), r >= 300 || r % 3 != 0);
    CHECK_EQ(npk_delete_slice(s, "a", first, step, count), NPK_OK);
    CHECK_EQ(npk_delete_rows(s, "b", list, n), NPK_OK);
    CHECK_EQ(npk_commit(s), NPK_OK);
    int f0 = ctest_case_failures;
    for (int r = 0; r < 1000; r++)
      CHECK_EQ(npk_row_live(s, "a", (uint64_t)r), npk_row_live(s, "b", (uint64_t)r));
    CHECK_EQ(tu_file_size(P(t.dir, "deleted_a.npkb")),
             tu_file_size(P(t.dir, "deleted_b.npkb")));
    /* Past the end: refused, nothing changed. */
    CHECK_EQ(npk_delete_slice(s, "a", 0, 1, 1000), NPK_RANGE);
    CHECK_EQ(npk_delete_slice(s, "a", 0, 0, 1), NPK_RANGE);
    if (ctest_case_failures != f0)
      printf("  (slice %llu, %llu, %llu)\n", (unsigned long long)first,
             (unsigned long long)step, (unsigned long long)count);
    tu_close(st, s);
    tu_tmp_done(&t);
  }
}

/* ---- direct views ----------------------------------------------------- */

/* The view of NAME agrees with npk_row_live/npk_row_ptr; returns the number
** of disagreements.  Sets *HAS_BASE. */
static long view_mismatch(NpkSession *s, const char *name, int *has_base) {
  long bad = 0;
  NpkView v;
  NpkArrayInfo in;
  memset(&v, 0, sizeof v);
  if (npk_view(s, name, &v) != NPK_OK) return 1000;
  if (npk_array_info(s, name, &in) != NPK_OK) return 1000;
  if (v.rows != in.rows || v.live_rows != in.live_rows ||
      v.row_bytes != in.row_bytes || v.dtype != in.dtype)
    bad++;
  uint64_t live = 0;
  for (uint64_t r = 0; r < v.rows; r++) {
    int want = npk_row_live(s, name, r);
    int got = v.live ? (int)((v.live[r / 64] >> (r % 64)) & 1) : 1;
    if (got != want) bad++;
    live += (uint64_t)got;
    const void *p = NULL;
    if (want && v.base) {
      if (npk_row_ptr(s, name, r, &p) != NPK_OK || !p ||
          memcmp(p, v.base + r * v.row_bytes, v.row_bytes) != 0)
        bad++;
    }
  }
  if (live != v.live_rows) bad++;
  *has_base = v.base != NULL;
  return bad;
}

static void test_view_and_change_count(void) {
  Tmp t;
  tu_tmp_init(&t);
  tu_seg_store(t.dir);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, 0, &st);
  if (!s) { tu_close(st, s); tu_tmp_done(&t); return; }
  int32_t v[200];
  for (int i = 0; i < 200; i++) v[i] = i * 3;
  CHECK_EQ(save2(s, "a", NPK_INT32, 100, 2, v), NPK_OK);
  int has_base = 0;
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  CHECK_EQ(view_mismatch(s, "a", &has_base), 0);
  CHECK_EQ(has_base, 1);
  CHECK_EQ(view_mismatch(s, "s", &has_base), 0);
  NpkView vw;
  CHECK_EQ(npk_view(s, "ghost_array", &vw), NPK_NOTFOUND);
  uint64_t c0 = npk_change_count(s);
  CHECK_EQ(npk_change_count(s), c0);      /* reads do not move it */
  npk_read_end(s);
  uint64_t del[4] = {0, 63, 64, 99};
  CHECK_EQ(npk_delete_rows(s, "a", del, 4), NPK_OK);
  uint64_t c1 = npk_change_count(s);
  CHECK(c1 != c0);
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  CHECK_EQ(view_mismatch(s, "a", &has_base), 0);
  CHECK_EQ(npk_view(s, "a", &vw), NPK_OK);
  CHECK(vw.live != NULL);
  CHECK_EQ(vw.live_rows, 96);
  npk_read_end(s);
  /* Inside a transaction: pending replacements, appends and deletions. */
  CHECK_EQ(npk_begin(s), NPK_OK);
  uint64_t rep[2] = {5, 70};
  CHECK_EQ(npk_replace_rows(s, "a", rep, 2, v + 100), NPK_OK);
  uint64_t c2 = npk_change_count(s);
  CHECK(c2 != c1);
  CHECK_EQ(append2(s, "a", NPK_INT32, 3, 2, v), NPK_OK);
  CHECK(npk_change_count(s) != c2);
  uint64_t d2 = 101;
  CHECK_EQ(npk_delete_rows(s, "a", &d2, 1), NPK_OK);
  CHECK_EQ(view_mismatch(s, "a", &has_base), 0);
  CHECK_EQ(npk_view(s, "a", &vw), NPK_OK);
  CHECK_EQ(vw.rows, 103);
  CHECK_EQ(vw.live_rows, 98);
  CHECK_EQ(npk_commit(s), NPK_OK);
  CHECK_EQ(npk_read_begin(s), NPK_OK);
  CHECK_EQ(view_mismatch(s, "a", &has_base), 0);
  npk_read_end(s);
  tu_close(st, s);
  tu_tmp_done(&t);
}

/* ---- damaged stores ---------------------------------------------------- */

/* The base of the damage tests: arrays x int32 (3,2) and y float64 (4,). */
static void base_entries(CatEntry e[2]) {
  memset(e, 0, 2 * sizeof *e);
  e[0].name = "x"; e[0].ndim = 2; e[0].dims[0] = 3; e[0].dims[1] = 2;
  e[0].dtype = NPK_INT32; e[0].mtime = 1700000000000000ull;
  e[1].name = "y"; e[1].ndim = 1; e[1].dims[0] = 4;
  e[1].dtype = NPK_FLOAT64; e[1].mtime = 1700000000000001ull;
}

static void base_files(const char *dir) {
  unsigned char d[32];
  mkdir(dir, 0755);
  tu_fill(d, sizeof d, 77);
  tu_write_file(P(dir, "data_x.npkd"), d, 24);
  tu_write_file(P(dir, "data_y.npkd"), d, 32);
}

/* Opening DIR must fail with NPK_CORRUPT (with and without CREATE, and
** read-only), naming FRAG (or FRAG2 when ANY), and change nothing. */
static void expect_corrupt(const char *dir, const char *frag,
                           const char *frag2, int any, int line) {
  Snap before, after;
  tu_snap(dir, &before);
  tu_expect_open_fail(dir, 0, NPK_CORRUPT, frag, frag2, any, line);
  tu_expect_open_fail(dir, NPK_OPEN_CREATE, NPK_CORRUPT, frag, frag2, any,
                      line);
  tu_expect_open_fail(dir, NPK_OPEN_READONLY, NPK_CORRUPT, frag, frag2, any,
                      line);
  tu_snap(dir, &after);
  if (!tu_snap_eq(&before, &after)) {
    ctest_case_failures++;
    printf("FAIL line %d: a failed open changed the store\n", line);
  }
  tu_snap_free(&before);
  tu_snap_free(&after);
}

/* Array NAME of DIR is damaged in its own files: the store opens (with and
** without CREATE, and read-only) and array OTHER reads, but every use of
** NAME is NPK_CORRUPT naming FRAG, and nothing changes on disk.  Opening a
** store of thousands of arrays opens none of their files. */
static void expect_corrupt_array(const char *dir, const char *name,
                                 const char *other, const char *frag,
                                 int line) {
  static const int modes[] = {0, NPK_OPEN_CREATE, NPK_OPEN_READONLY};
  Snap before, after;
  tu_snap(dir, &before);
  for (int m = 0; m < 3; m++) {
    NpkStore *st;
    NpkSession *s = tu_open(dir, modes[m], &st);
    NpkArrayInfo in;
    if (!s) continue;
    for (int k = 0; k < 2; k++) {
      int rc = info_of(s, name, &in);
      const char *msg = npk_errmsg(s);
      if (rc != NPK_CORRUPT || !strstr(msg, frag)) {
        ctest_case_failures++;
        printf("FAIL line %d: array %s: rc=%d (%s), wanted %d naming %s\n",
               line, name, rc, msg, NPK_CORRUPT, frag);
      }
    }
    if (info_of(s, other, &in) != NPK_OK) {
      ctest_case_failures++;
      printf("FAIL line %d: array %s: %s\n", line, other, npk_errmsg(s));
    }
    tu_close(st, s);
  }
  tu_snap(dir, &after);
  if (!tu_snap_eq(&before, &after)) {
    ctest_case_failures++;
    printf("FAIL line %d: using a damaged array changed the store\n", line);
  }
  tu_snap_free(&before);
  tu_snap_free(&after);
}

/* Write the base data files and the catalog of entries E, expect damage. */
static void corrupt_entries(const CatEntry *e, int n, const char *frag,
                            int line) {
  Tmp t;
  tu_tmp_init(&t);
  base_files(t.dir);
  Buf cat = {0};
  tu_cat_build(&cat, e, n, NULL);
  tu_write_buf(P(t.dir, TU_CATALOG), &cat);
  buf_free(&cat);
  expect_corrupt(t.dir, frag, NULL, 0, line);
  tu_tmp_done(&t);
}

static void corrupt_bytes(const Buf *cat, int line) {
  Tmp t;
  tu_tmp_init(&t);
  base_files(t.dir);
  tu_write_buf(P(t.dir, TU_CATALOG), cat);
  expect_corrupt(t.dir, TU_CATALOG, NULL, 0, line);
  tu_tmp_done(&t);
}

static void test_base_valid(void) {
  /* The base of the damage tests opens cleanly (else those prove nothing). */
  Tmp t;
  tu_tmp_init(&t);
  base_files(t.dir);
  CatEntry e[2];
  base_entries(e);
  Buf cat = {0};
  tu_cat_build(&cat, e, 2, NULL);
  tu_write_buf(P(t.dir, TU_CATALOG), &cat);
  buf_free(&cat);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, 0, &st);
  CHECK_EQ(count_of(s), 2);
  tu_close(st, s);
  tu_tmp_done(&t);
}

static void test_corrupt_header(void) {
  CatEntry e[2];
  base_entries(e);
  Buf good = {0};
  tu_cat_build(&good, e, 2, NULL);
  Buf b = {0};
  buf_put(&b, good.p, good.n);
  b.p[0] ^= 0x20;                            /* magic */
  corrupt_bytes(&b, __LINE__);
  memcpy(b.p, good.p, good.n);
  memcpy(b.p, "BPKN", 4);                    /* magic byte-swapped */
  corrupt_bytes(&b, __LINE__);
  memcpy(b.p, good.p, good.n);
  b.p[4] = 2;                                /* version 2 */
  corrupt_bytes(&b, __LINE__);
  b.p[4] = 0;                                /* version 0 */
  corrupt_bytes(&b, __LINE__);
  memcpy(b.p, good.p, good.n);
  b.p[19] = 0x80;                            /* count 2^31 + 2 */
  corrupt_bytes(&b, __LINE__);
  memcpy(b.p, good.p, good.n);
  b.p[16] = 3;                               /* count 3: truncated entry */
  corrupt_bytes(&b, __LINE__);
  buf_free(&b);
  buf_free(&good);
}

static void test_corrupt_truncated(void) {
  CatEntry e[2];
  base_entries(e);
  Buf good = {0};
  tu_cat_build(&good, e, 2, NULL);
  Tmp t;
  tu_tmp_init(&t);
  base_files(t.dir);
  int failures_before = ctest_case_failures;
  for (size_t len = 0; len < good.n; len++) {
    tu_write_file(P(t.dir, TU_CATALOG), good.p, len);
    int f0 = ctest_case_failures;
    expect_corrupt(t.dir, TU_CATALOG, NULL, 0, __LINE__);
    if (ctest_case_failures != f0)
      printf("  (catalog truncated to %zu of %zu bytes)\n", len, good.n);
    if (ctest_case_failures - failures_before > 20) break;
  }
  /* The full file is fine. */
  tu_write_buf(P(t.dir, TU_CATALOG), &good);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, 0, &st);
  CHECK_EQ(count_of(s), 2);
  tu_close(st, s);
  buf_free(&good);
  tu_tmp_done(&t);
}

static void test_corrupt_trailing(void) {
  CatEntry e[2];
  base_entries(e);
  Buf b = {0};
  tu_cat_build(&b, e, 2, NULL);
  put_u8(&b, 0);
  corrupt_bytes(&b, __LINE__);
  put_u64(&b, 0xDEADBEEFull);
  corrupt_bytes(&b, __LINE__);
  buf_free(&b);
  /* Count 1 with two entries written. */
  Buf c = {0};
  tu_cat_build(&c, e, 2, NULL);
  c.p[16] = 1;
  corrupt_bytes(&c, __LINE__);
  buf_free(&c);
}

static void test_corrupt_dtype(void) {
  CatEntry e[2];
  base_entries(e);
  e[1].dtype = 14; e[1].size = 32; e[1].size_given = 1;
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
  e[1].dtype = 255;
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
}

static void test_corrupt_ndim(void) {
  CatEntry e[2];
  base_entries(e);
  e[1].ndim = 0; e[1].size = 32; e[1].size_given = 1;
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
  base_entries(e);
  e[1].ndim = 33;
  for (int k = 1; k < 33; k++) e[1].dims[k] = 1;
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
  /* 32 dimensions are fine. */
  Tmp t;
  tu_tmp_init(&t);
  base_files(t.dir);
  e[1].ndim = 32;
  Buf cat = {0};
  tu_cat_build(&cat, e, 2, NULL);
  tu_write_buf(P(t.dir, TU_CATALOG), &cat);
  buf_free(&cat);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, 0, &st);
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, "y", &in), NPK_OK);
  CHECK_EQ(in.ndim, 32);
  CHECK_EQ(in.rows, 4);
  CHECK_EQ(in.row_bytes, 8);
  tu_close(st, s);
  tu_tmp_done(&t);
  /* A huge ndim with nothing behind it. */
  base_entries(e);
  e[1].ndim = 0xFFFFFFFFu;
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
}

static void test_corrupt_overflow(void) {
  CatEntry e[2];
  base_entries(e);
  e[1].dtype = NPK_INT8; e[1].ndim = 2;
  e[1].dims[0] = 1ull << 40; e[1].dims[1] = 1ull << 30;  /* 2^70 elements */
  e[1].size = 32; e[1].size_given = 1;
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
  e[1].dims[0] = 1ull << 32; e[1].dims[1] = 1ull << 32;  /* wraps to 0 */
  e[1].size = 0;
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
  e[1].dtype = NPK_INT64; e[1].ndim = 1;
  e[1].dims[0] = 1ull << 61;                  /* fits, x 8 bytes wraps */
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
  e[1].dtype = NPK_COMPLEX128; e[1].ndim = 3;
  e[1].dims[0] = 4; e[1].dims[1] = 1ull << 31; e[1].dims[2] = 1ull << 30;
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
}

static void test_corrupt_size_field(void) {
  CatEntry e[2];
  base_entries(e);
  e[0].size = 25; e[0].size_given = 1;
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
  e[0].size = 0;
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
  e[0].size = 24 + (1ull << 32);
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
}

static void test_corrupt_data_file(void) {
  CatEntry e[2];
  base_entries(e);
  Buf cat = {0};
  tu_cat_build(&cat, e, 2, NULL);
  unsigned char d[32] = {0};
  /* Shorter than the shape. */
  Tmp t;
  tu_tmp_init(&t);
  base_files(t.dir);
  tu_write_buf(P(t.dir, TU_CATALOG), &cat);
  tu_write_file(P(t.dir, "data_x.npkd"), d, 23);
  expect_corrupt_array(t.dir, "x", "y", "data_x.npkd", __LINE__);
  tu_write_file(P(t.dir, "data_x.npkd"), d, 0);
  expect_corrupt_array(t.dir, "x", "y", "data_x.npkd", __LINE__);
  tu_write_file(P(t.dir, "data_x.npkd"), d, 24);
  tu_write_file(P(t.dir, "data_y.npkd"), d, 31);
  expect_corrupt_array(t.dir, "y", "x", "data_y.npkd", __LINE__);
  /* Missing altogether. */
  unlink(P(t.dir, "data_y.npkd"));
  expect_corrupt_array(t.dir, "y", "x", "data_y.npkd", __LINE__);
  tu_tmp_done(&t);
  buf_free(&cat);
}

static void test_corrupt_data_path(void) {
  CatEntry e[2];
  Tmp t;
  tu_tmp_init(&t);
  char abs[1200];
  snprintf(abs, sizeof abs, "%s/data_x.npkd", t.dir);
  static const char *paths[] = {
    NULL, "../store/data_x.npkd", "sub/../data_x.npkd", "..", "../data_x.npkd",
    "/etc/passwd", "", "data_x.npkd/..",
  };
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    base_entries(e);
    e[0].data_file = paths[i] ? paths[i] : abs;
    corrupt_entries(e, 2, TU_CATALOG, __LINE__);
  }
  tu_tmp_done(&t);
}

static void test_corrupt_name(void) {
  CatEntry e[2];
  char longname[NPK_MAX_NAME + 2];
  memset(longname, 'q', NPK_MAX_NAME + 1);
  longname[NPK_MAX_NAME + 1] = 0;
  static const char *names[] = {"", "a/b", "..", "\xff", "x\xc3"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    base_entries(e);
    e[0].name = names[i];
    e[0].data_file = "data_x.npkd";
    corrupt_entries(e, 2, TU_CATALOG, __LINE__);
  }
  base_entries(e);
  e[0].name = longname;
  e[0].data_file = "data_x.npkd";
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
  /* An embedded NUL. */
  base_entries(e);
  e[0].name = "x\0z";
  e[0].name_len = 3;
  e[0].data_file = "data_x.npkd";
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
  /* A name longer than the rest of the file. */
  base_entries(e);
  e[1].name = "y";
  Buf b = {0};
  tu_cat_build(&b, e, 2, NULL);
  b.p[20] = 0xFF; b.p[21] = 0xFF; b.p[22] = 0xFF; b.p[23] = 0x7F;
  corrupt_bytes(&b, __LINE__);
  buf_free(&b);
  /* Duplicate names. */
  base_entries(e);
  e[1] = e[0];
  e[1].data_file = "data_y.npkd";
  e[1].ndim = 1; e[1].dims[0] = 8;
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
}

static void test_corrupt_compression(void) {
  CatEntry e[2];
  base_entries(e);
  e[1].compression = 1;
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
  e[1].compression = 255;
  corrupt_entries(e, 2, TU_CATALOG, __LINE__);
}

static void test_corrupt_bitmap(void) {
  CatEntry e[2];
  base_entries(e);
  Buf cat = {0};
  tu_cat_build(&cat, e, 2, NULL);
  Tmp t;
  tu_tmp_init(&t);
  base_files(t.dir);
  tu_write_buf(P(t.dir, TU_CATALOG), &cat);
  char bmp[1200];
  snprintf(bmp, sizeof bmp, "%s/deleted_x.npkb", t.dir);
  Buf b = {0};
  /* A valid bitmap first. */
  put_u64(&b, 3); put_u64(&b, 1); put_u64(&b, 5);
  tu_write_buf(bmp, &b);
  NpkStore *st;
  NpkSession *s = tu_open(t.dir, 0, &st);
  NpkArrayInfo in;
  CHECK_EQ(info_of(s, "x", &in), NPK_OK);
  CHECK_EQ(in.live_rows, 2);
  tu_close(st, s);
  /* One word too many. */
  put_u64(&b, 0);
  tu_write_buf(bmp, &b);
  expect_corrupt_array(t.dir, "x", "y", "deleted_x.npkb", __LINE__);
  /* No word at all. */
  tu_write_file(bmp, b.p, 16);
  expect_corrupt_array(t.dir, "x", "y", "deleted_x.npkb", __LINE__);
  /* Shorter than the header. */
  tu_write_file(bmp, b.p, 8);
  expect_corrupt_array(t.dir, "x", "y", "deleted_x.npkb", __LINE__);
  tu_write_file(bmp, b.p, 0);
  expect_corrupt_array(t.dir, "x", "y", "deleted_x.npkb", __LINE__);
  /* Deleted count disagreeing with the bits. */
  b.n = 0;
  put_u64(&b, 3); put_u64(&b, 2); put_u64(&b, 5);
  tu_write_buf(bmp, &b);
  expect_corrupt_array(t.dir, "x", "y", "deleted_x.npkb", __LINE__);
  /* More rows than the array. */
  b.n = 0;
  put_u64(&b, 4); put_u64(&b, 1); put_u64(&b, 7);
  tu_write_buf(bmp, &b);
  expect_corrupt_array(t.dir, "x", "y", "deleted_x.npkb", __LINE__);
  /* A padding bit set. */
  b.n = 0;
  put_u64(&b, 3); put_u64(&b, 1); put_u64(&b, 5 | 8);
  tu_write_buf(bmp, &b);
  expect_corrupt_array(t.dir, "x", "y", "deleted_x.npkb", __LINE__);
  b.n = 0;
  put_u64(&b, 3); put_u64(&b, 1); put_u64(&b, 5 | (1ull << 63));
  tu_write_buf(bmp, &b);
  expect_corrupt_array(t.dir, "x", "y", "deleted_x.npkb", __LINE__);
  /* A row count whose word count overflows. */
  b.n = 0;
  put_u64(&b, UINT64_MAX); put_u64(&b, 0); put_u64(&b, 7);
  tu_write_buf(bmp, &b);
  expect_corrupt_array(t.dir, "x", "y", "deleted_x.npkb", __LINE__);
  buf_free(&b);
  buf_free(&cat);
  tu_tmp_done(&t);
}

static void test_corrupt_segments(void) {
  static const char *manifests[] = {
    "hello",
    "",
    "{\"version\":1,\"segments\":[{\"file\":\"seg_s_0.bin\",\"rows\":3,"
      "\"bytes\":24}]}",                                   /* rows 3 != 5 */
    "{\"version\":1,\"segments\":[{\"file\":\"seg_s_0.bin\",\"rows\":3,"
      "\"bytes\":24},{\"file\":\"seg_s_1.bin\",\"rows\":3,\"bytes\":24}]}",
    "{\"version\":1,\"segments\":[{\"file\":\"seg_s_0.bin\",\"rows\":3,"
      "\"bytes\":24},{\"file\":\"seg_s_9.bin\",\"rows\":2,\"bytes\":16}]}",
    "{\"version\":1,\"segments\":[{\"file\":\"seg_s_0.bin\",\"rows\":3,"
      "\"bytes\":24},{\"file\":\"../seg_s_1.bin\",\"rows\":2,\"bytes\":16}]}",
    "{\"version\":1,\"segments\":[{\"file\":\"seg_s_0.bin\",\"rows\":3,"
      "\"bytes\":24},{\"file\":\"seg_s_1.bin\",\"rows\":2,\"bytes\":16}",
    "{\"version\":1,\"segments\":[{\"file\":\"seg_s_0.bin\",\"rows\":3,"
      "\"bytes\":24},{\"file\":\"@ABS@\",\"rows\":2,\"bytes\":16}]}",
  };
  static const char *seg_named[] = {NULL, NULL, NULL, NULL, "seg_s_9.bin",
                                    "seg_s_1.bin", NULL, "seg_s_1.bin"};
  for (size_t i = 0; i < sizeof manifests / sizeof manifests[0]; i++) {
    Tmp t;
    tu_tmp_init(&t);
    tu_seg_store(t.dir);
    /* The escaping paths point at a real file outside the store. */
    int64_t v[2] = {14, 15};
    tu_write_file(P(t.root, "seg_s_1.bin"), v, 16);
    char m[1400];
    const char *abs_at = strstr(manifests[i], "@ABS@");
    if (abs_at) {
      snprintf(m, sizeof m, "%.*s%s/seg_s_1.bin%s",
               (int)(abs_at - manifests[i]), manifests[i], t.root,
               abs_at + 5);
    } else {
      snprintf(m, sizeof m, "%s", manifests[i]);
    }
    tu_write_file(P(t.dir, "data_s.npkseg"), m, strlen(m));
    int f0 = ctest_case_failures;
    expect_corrupt(t.dir, "data_s.npkseg", seg_named[i], 1, __LINE__);
    if (ctest_case_failures != f0) printf("  (manifest #%zu)\n", i);
    tu_tmp_done(&t);
  }
  /* A segment file shorter than its byte count, or missing. */
  for (int k = 0; k < 2; k++) {
    Tmp t;
    tu_tmp_init(&t);
    tu_seg_store(t.dir);
    if (k == 0) {
      int64_t v[2] = {14, 15};
      tu_write_file(P(t.dir, "seg_s_1.bin"), v, 15);
    } else {
      unlink(P(t.dir, "seg_s_0.bin"));
    }
    expect_corrupt(t.dir, "data_s.npkseg", k ? "seg_s_0.bin" : "seg_s_1.bin",
                   1, __LINE__);
    tu_tmp_done(&t);
  }
}

/* A catalog entry of more than 2^63-1 rows is damage, even of rows of no
** bytes (nothing else bounds them). */
static void test_corrupt_row_count(void) {
  Tmp t;
  tu_tmp_init(&t);
  mkdir(t.dir, 0755);
  tu_zero_width_write(t.dir, 1ull << 63, 0);
  expect_corrupt(t.dir, TU_CATALOG, "2^63-1", 0, __LINE__);
  tu_tmp_done(&t);
}

int main(void) {
  install_foreign_handler();
  RUN(test_create_empty);
  RUN(test_open_missing);
  RUN(test_byte_exact_format);
  RUN(test_read_handmade);
  RUN(test_every_dtype);
  RUN(test_save_overwrite);
  RUN(test_append);
  RUN(test_append_mismatch);
  RUN(test_replace);
  RUN(test_replace_delete_errors);
  RUN(test_delete);
  RUN(test_drop);
  RUN(test_clone);
  RUN(test_compact);
  RUN(test_interrupt_copy);
  RUN(test_reset);
  RUN(test_open_drop);
  RUN(test_array_order);
  RUN(test_missing_array);
  RUN(test_names);
  RUN(test_readonly);
  RUN(test_modify_time);
  RUN(test_logical_random);
  RUN(test_bitmap_boundaries);
  RUN(test_bitmap_short_legal);
  RUN(test_stats);
  RUN(test_cut_under_mapping);
  RUN(test_zero_rows);
  RUN(test_segmented_write);
  RUN(test_segdir_sync_faults);
  RUN(test_segdir_crash_backups);
  RUN(test_segmented_many);
  RUN(test_data_files);
  RUN(test_zero_width_crafted);
  RUN(test_zero_width_huge);
  RUN(test_delete_slice);
  RUN(test_view_and_change_count);
  RUN(test_base_valid);
  RUN(test_corrupt_header);
  RUN(test_corrupt_truncated);
  RUN(test_corrupt_trailing);
  RUN(test_corrupt_dtype);
  RUN(test_corrupt_ndim);
  RUN(test_corrupt_overflow);
  RUN(test_corrupt_size_field);
  RUN(test_corrupt_data_file);
  RUN(test_corrupt_data_path);
  RUN(test_corrupt_name);
  RUN(test_corrupt_compression);
  RUN(test_corrupt_bitmap);
  RUN(test_corrupt_segments);
  RUN(test_corrupt_row_count);
  return CTEST_END();
}
