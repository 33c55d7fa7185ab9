/*
** blobsum.c — a tiny SQLite loadable extension used by the benchmarks as the
** baseline for scanning float32 rows kept in ordinary BLOB columns:
**
**   blob_f32_at(blob, i)  ->  element i of a little-endian float32 BLOB, as
**                             REAL; NULL when the BLOB is NULL or too short.
**
** "SELECT sum(blob_f32_at(row, 0)) FROM t" is then the native-table
** counterpart of "SELECT sum(c0) FROM t" on a numpack table.  It measures
** nothing by itself.
**
** Build:  gcc -O2 -shared -fPIC -o blobsum.so blobsum.c
*/
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

#include <string.h>

static void blob_f32_at(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  const unsigned char *p = sqlite3_value_blob(argv[0]);
  sqlite3_int64 n = sqlite3_value_bytes(argv[0]);
  sqlite3_int64 i = sqlite3_value_int64(argv[1]);
  float f;
  (void)argc;
  if (!p || i < 0 || (i + 1) * 4 > n) {
    sqlite3_result_null(ctx);
    return;
  }
  memcpy(&f, p + i * 4, sizeof f);  /* the benchmark runs on little-endian */
  sqlite3_result_double(ctx, (double)f);
}

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_blobsum_init(sqlite3 *db, char **pzErrMsg,
                         const sqlite3_api_routines *pApi) {
  (void)pzErrMsg;
  SQLITE_EXTENSION_INIT2(pApi);
  return sqlite3_create_function(
      db, "blob_f32_at", 2,
      SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, 0, blob_f32_at, 0,
      0);
}
