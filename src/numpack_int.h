/*
** numpack_int.h — shared declarations of the SQLite-facing sources of the
** extension (everything except the store engine, which knows nothing of
** SQLite).
**
** Every such source includes this header instead of <sqlite3ext.h>, so that
** all of them reach SQLite through the one sqlite3_api pointer defined in
** numpack.c (SQLITE_EXTENSION_INIT1).  In a static build (SQLITE_CORE) the
** INIT macros expand to nothing and the calls go straight to SQLite.
**
** The build force-includes config.h (-include), so sources need not.
*/
#ifndef NPK_NUMPACK_INT_H
#define NPK_NUMPACK_INT_H

#include <sqlite3ext.h>

#include "alloc.h"
#include "store.h"
SQLITE_EXTENSION_INIT3

/* Version of the extension, from configure (PACKAGE_VERSION).  A build
** without configure still compiles, and says so when asked. */
#ifdef PACKAGE_VERSION
#define NPK_VERSION PACKAGE_VERSION
#else
#define NPK_VERSION "unknown"
#endif

/*
** Registration functions, one per source file that adds SQL objects.  Each
** returns an SQLite result code and is called once per connection, in this
** order, from the npk_register[] table in numpack.c; a file that is not
** written yet is simply not listed there.
*/
int npk_vtab_register(sqlite3 *db); /* vtab.c: the numpack module */
int npk_func_register(sqlite3 *db); /* func.c: numpack_save() ... */
int npk_tvf_register(sqlite3 *db);  /* tvf.c: numpack_arrays, numpack_stream */
int npk_knn_sql_register(sqlite3 *db); /* knn_sql.c: numpack_distance,
                                       ** numpack_knn */
int npk_conn_register(sqlite3 *db);

/* An array's shape as JSON, "[first, d1, d2, ...]", appended to S (func.c);
** FIRST is the row count to report (physical or live). */
void npk_json_shape(
    sqlite3_str *s, const NpkArrayInfo *a,
    uint64_t first); /* conn.c: numpack_sessions(), close hook */

#endif /* NPK_NUMPACK_INT_H */
