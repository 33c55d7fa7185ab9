/*
** numpack.c — the extension's entry point, sqlite3_numpack_init(), which
** registers every SQL function and module on a connection, and the one
** function that lives here, numpack_version().
**
** This is the only source with SQLITE_EXTENSION_INIT1 (the definition of
** the sqlite3_api pointer); the others see it through numpack_int.h.
**
** Loading:   .load ./numpack                     (sqlite3 shell)
**            SELECT load_extension('./numpack');
** Static:    see numpack.h (sqlite3_auto_extension).
*/
#include "numpack_int.h"
#include "numpack.h"

SQLITE_EXTENSION_INIT1

/*
** numpack_version() -> the extension's version string, e.g. '0.1.0'.
** It reads nothing and writes nothing, so it is safe for a schema to use
** (SQLITE_INNOCUOUS) and constant (SQLITE_DETERMINISTIC).
*/
static void npk_version_func(sqlite3_context *ctx, int argc,
                             sqlite3_value **argv) {
  (void)argc;
  (void)argv;
  sqlite3_result_text(ctx, NPK_VERSION, -1, SQLITE_STATIC);
}

static int npk_register_version(sqlite3 *db) {
  return sqlite3_create_function(
      db, "numpack_version", 0,
      SQLITE_UTF8 | SQLITE_INNOCUOUS | SQLITE_DETERMINISTIC, 0,
      npk_version_func, 0, 0);
}

/* The engine allocates through SQLite, so that SQLite's memory limits,
** accounting and out-of-memory simulation reach every allocation of the
** extension.  Set before the first allocation (the engine allocates nothing
** until a connection uses it) and to the same functions by every later
** connection: the API routines are one process's SQLite's. */
static void *npk_sqlite_malloc(uint64_t n) { return sqlite3_malloc64(n); }
static void *npk_sqlite_realloc(void *p, uint64_t n) {
  return sqlite3_realloc64(p, n);
}
static void npk_sqlite_free(void *p) { sqlite3_free(p); }
static uint64_t npk_sqlite_size(void *p) { return sqlite3_msize(p); }

static const NpkAllocator npk_sqlite_allocator = {
    npk_sqlite_malloc, npk_sqlite_realloc, npk_sqlite_free, npk_sqlite_size};

/* Everything the extension adds to a connection, in registration order. */
static int (*const npk_register[])(sqlite3 *) = {
    npk_register_version, npk_conn_register, npk_vtab_register,
    npk_func_register,    npk_tvf_register,  npk_knn_sql_register,
};

#ifdef _WIN32
__declspec(dllexport)
#endif
    int sqlite3_numpack_init(sqlite3 *db, char **pzErrMsg,
                             const sqlite3_api_routines *pApi) {
  int rc = SQLITE_OK;
  int i;
  int n = (int)(sizeof(npk_register) / sizeof(npk_register[0]));
  SQLITE_EXTENSION_INIT2(pApi);
  npk_set_allocator(&npk_sqlite_allocator);
  for (i = 0; rc == SQLITE_OK && i < n; i++) {
    rc = npk_register[i](db);
  }
  if (rc != SQLITE_OK && pzErrMsg) {
    /* The loader reports this message; without it the user would see only
    ** "error during initialization". */
    *pzErrMsg = sqlite3_mprintf("numpack: %s", sqlite3_errmsg(db));
  }
  return rc;
}
