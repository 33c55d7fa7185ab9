/*
** numpack.h — public interface of the numpack SQLite extension, for C
** programs that link the extension statically (libnumpack.a) instead of
** loading numpack.so at run time.
**
** Two ways to use it, after linking libnumpack.a and SQLite:
**
**   1. Every connection opened afterwards gets the extension:
**
**        sqlite3_auto_extension((void(*)(void))sqlite3_numpack_init);
**
**   2. One connection only:
**
**        char *zErr = 0;
**        if( sqlite3_numpack_init(db, &zErr, 0)!=SQLITE_OK ){
**          ... report zErr, then sqlite3_free(zErr) ...
**        }
**
** The third argument is ignored in a static build (libnumpack.a is compiled
** with SQLITE_CORE and calls SQLite directly).  Programs that load the
** shared library never need this header: SQLite finds the entry point by
** name ("numpack.so" -> sqlite3_numpack_init).
*/
#ifndef NUMPACK_H
#define NUMPACK_H

#include <sqlite3.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Register the numpack functions and virtual table modules on DB.
** Returns SQLITE_OK, or an error code with a message in *pzErrMsg that the
** caller frees with sqlite3_free(). */
int sqlite3_numpack_init(sqlite3 *db, char **pzErrMsg,
                         const sqlite3_api_routines *pApi);

#ifdef __cplusplus
}
#endif

#endif /* NUMPACK_H */
