/*
** catalog_test.c — the in-memory catalog's copy-on-write sharing
** (store_catalog.c): a copy shares the chunks of positions and the name
** index of the catalog it copies; changing the copy (an entry replaced,
** an array added or removed) copies only what it changes, never writes a
** piece the other catalog holds, and an allocation that fails changes
** nothing.  The store-level guarantees built on it (rollback, savepoints,
** a failed commit in a store of many arrays) are in store_txn_test.c.
*/
#include "store_testutil.h"
#include "store_int.h"

/* More than three chunks, the last one partly used. */
#define NARR (3 * NPK_CAT_CHUNK + 10)

static NpkArray *arr(const char *name, uint64_t rows) {
  uint64_t shape[1] = {rows};
  NpkArray *a = npk_array_new(name, NPK_INT32, 1, shape);
  if (a) a->data_file = npk_strdup("data_x.npkd");
  return a;
}

/* A catalog of NARR arrays "a0".."a{NARR-1}", array i of i rows. */
static void build(NpkCatalog *cat) {
  char name[16];
  memset(cat, 0, sizeof *cat);
  for (int i = 0; i < NARR; i++) {
    snprintf(name, sizeof name, "a%d", i);
    CHECK_EQ(npk_catalog_add(NULL, cat, arr(name, (uint64_t)i)), NPK_OK);
  }
}

/* CAT is the catalog build() makes: names and rows in order, each found
** at its place, each array held by REFS references. */
static int is_built(const NpkCatalog *cat, int refs) {
  char name[16];
  if (cat->n != NARR) return 0;
  for (int i = 0; i < NARR; i++) {
    const NpkArray *a = npk_cat_at(cat, i);
    snprintf(name, sizeof name, "a%d", i);
    if (strcmp(a->name, name) != 0 || a->shape[0] != (uint64_t)i ||
        a->refs != refs || npk_catalog_find(cat, name) != i)
      return 0;
  }
  return 1;
}

/* A copy shares every chunk and the index; clearing it gives them back. */
static void test_copy_shares(void) {
  NpkCatalog c, t;
  build(&c);
  CHECK(is_built(&c, 1));
  CHECK_EQ(npk_catalog_copy(&c, &t), NPK_OK);
  CHECK_EQ(t.nch, c.nch);
  for (int k = 0; k < c.nch; k++) {
    CHECK(t.ch[k] == c.ch[k]);
    CHECK_EQ(c.ch[k]->refs, 2);
  }
  CHECK(t.idx == c.idx);
  CHECK_EQ(c.idx->refs, 2);
  /* The arrays are held by the chunks, not once per catalog. */
  CHECK(is_built(&t, 1));
  npk_catalog_clear(NULL, &t);
  CHECK_EQ(c.ch[0]->refs, 1);
  CHECK_EQ(c.idx->refs, 1);
  CHECK(is_built(&c, 1));
  npk_catalog_clear(NULL, &c);
}

/* Replacing one entry of the copy copies its chunk alone; the original
** keeps its entry, and gets its chunk back whole when the copy goes. */
static void test_put_copies_one_chunk(void) {
  NpkCatalog c, t;
  int i = NPK_CAT_CHUNK + 5;
  NpkArray *old;
  build(&c);
  CHECK_EQ(npk_catalog_copy(&c, &t), NPK_OK);
  CHECK_EQ(npk_catalog_own(NULL, &t, i), NPK_OK);
  CHECK(t.ch[1] != c.ch[1]);
  CHECK_EQ(t.ch[1]->refs, 1);
  CHECK_EQ(c.ch[1]->refs, 1);
  for (int k = 0; k < c.nch; k++)
    if (k != 1) CHECK(t.ch[k] == c.ch[k]);
  /* The arrays of the copied chunk gained the new chunk's reference. */
  CHECK_EQ(npk_cat_at(&c, i)->refs, 2);
  CHECK_EQ(npk_cat_at(&c, 0)->refs, 1);
  /* Owned already: nothing more is copied. */
  {
    NpkCatChunk *own = t.ch[1];
    CHECK_EQ(npk_catalog_own(NULL, &t, i + 1), NPK_OK);
    CHECK(t.ch[1] == own);
  }
  old = npk_catalog_put(&t, i, arr("a69", 1000));
  CHECK(old == npk_cat_at(&c, i));
  npk_array_unref(NULL, old);
  CHECK_EQ(npk_cat_at(&t, i)->shape[0], 1000);
  CHECK_EQ(npk_catalog_find(&t, "a69"), i);
  CHECK_EQ(npk_cat_at(&c, i)->shape[0], (uint64_t)i);
  CHECK_EQ(npk_catalog_find(&c, "a69"), i);
  npk_catalog_clear(NULL, &t);
  CHECK(is_built(&c, 1));
  npk_catalog_clear(NULL, &c);
}

/* Adding to the copy: the original's chunks and index stay as they were,
** and the new name is in the copy's index only. */
static void test_add_to_copy(void) {
  NpkCatalog c, t;
  build(&c);
  CHECK_EQ(npk_catalog_copy(&c, &t), NPK_OK);
  CHECK_EQ(npk_catalog_add(NULL, &t, arr("new", 7)), NPK_OK);
  CHECK_EQ(t.n, NARR + 1);
  CHECK_EQ(npk_catalog_find(&t, "new"), NARR);
  CHECK_EQ(npk_catalog_find(&c, "new"), -1);
  CHECK(t.idx != c.idx);
  CHECK(t.ch[c.nch - 1] != c.ch[c.nch - 1]);
  CHECK(is_built(&c, 1) == 0); /* the last chunk's arrays are held twice */
  npk_catalog_clear(NULL, &t);
  CHECK(is_built(&c, 1));
  npk_catalog_clear(NULL, &c);
}

/* Removing from the copy moves the later arrays up in the copy alone. */
static void test_remove_from_copy(void) {
  NpkCatalog c, t;
  char name[16];
  build(&c);
  CHECK_EQ(npk_catalog_copy(&c, &t), NPK_OK);
  CHECK_EQ(npk_catalog_remove(NULL, &t, 5), NPK_OK);
  CHECK_EQ(t.n, NARR - 1);
  CHECK_EQ(npk_catalog_find(&t, "a5"), -1);
  for (int i = 0; i < NARR - 1; i++) {
    snprintf(name, sizeof name, "a%d", i < 5 ? i : i + 1);
    CHECK_EQ(npk_catalog_find(&t, name), i);
  }
  npk_catalog_clear(NULL, &t);
  CHECK(is_built(&c, 1));
  /* Down to one array past a chunk, then less: the emptied chunk goes. */
  CHECK_EQ(npk_catalog_copy(&c, &t), NPK_OK);
  while (t.n > NPK_CAT_CHUNK) CHECK_EQ(npk_catalog_remove(NULL, &t, 0), NPK_OK);
  CHECK_EQ(t.nch, 1);
  CHECK_EQ(npk_catalog_remove(NULL, &t, 0), NPK_OK);
  CHECK_EQ(t.nch, 1);
  CHECK_EQ(npk_catalog_find(&t, "a0"), -1);
  snprintf(name, sizeof name, "a%d", NARR - 1);
  CHECK_EQ(npk_catalog_find(&t, name), NPK_CAT_CHUNK - 2);
  npk_catalog_clear(NULL, &t);
  CHECK(is_built(&c, 1));
  npk_catalog_clear(NULL, &c);
}

/* Every allocation of a change made to fail in turn: the change reports
** NPK_NOMEM and leaves both catalogs as they were. */
static void test_out_of_memory(void) {
  NpkCatalog c, t;
  int fired = 0;
  build(&c);
  for (int op = 0; op < 4; op++) {
    for (int nth = 1; nth < 10; nth++) {
      NpkArray *a = arr("new", 3);
      int rc;
      if (op != 3) CHECK_EQ(npk_catalog_copy(&c, &t), NPK_OK);
      npk_test_fault("malloc", nth, ENOMEM);
      switch (op) {
        case 0: rc = npk_catalog_own(NULL, &t, 2 * NPK_CAT_CHUNK); break;
        case 1: rc = npk_catalog_add(NULL, &t, a); break;
        case 2: rc = npk_catalog_remove(NULL, &t, 3); break;
        default: rc = npk_catalog_copy(&c, &t); break;
      }
      npk_test_fault("malloc", 0, 0);
      if (op != 1 || rc) npk_array_unref(NULL, a);
      if (rc) {
        fired++;
        CHECK_EQ(rc, NPK_NOMEM);
        if (op == 3) CHECK(t.n == 0 && t.ch == NULL);
        else {
          /* Chunks may have been copied: the same arrays in them. */
          for (int k = 0; k < NARR; k++)
            CHECK(npk_cat_at(&t, k) == npk_cat_at(&c, k));
          CHECK_EQ(t.n, NARR);
        }
      }
      if (op != 3 || rc == NPK_OK) npk_catalog_clear(NULL, &t);
      CHECK(is_built(&c, 1));
      if (rc == NPK_OK) break;
    }
  }
  CHECK(fired >= 4);
  npk_catalog_clear(NULL, &c);
}

int main(void) {
  RUN(test_copy_shares);
  RUN(test_put_copies_one_chunk);
  RUN(test_add_to_copy);
  RUN(test_remove_from_copy);
  RUN(test_out_of_memory);
  return CTEST_END();
}
