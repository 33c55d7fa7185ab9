/*
** embed.c — how an application that links SQLite itself uses numpack
** without loading a shared library: link libnumpack.a, register the
** extension once with sqlite3_auto_extension(), and every connection opened
** afterwards has it.
**
**   cc embed.c -I/usr/local/include /usr/local/lib/libnumpack.a \
**      -lsqlite3 -lm -pthread -o embed
**
** Prints the extension's version; exits non-zero if anything fails.
*/
#include <stdio.h>

#include <sqlite3.h>
#include "numpack.h"

int main(void){
  sqlite3 *db = 0;
  sqlite3_stmt *stmt = 0;
  int rc;

  /* The cast is the documented idiom: auto_extension takes a generic
  ** function pointer and calls it with the init signature. */
  rc = sqlite3_auto_extension((void(*)(void))sqlite3_numpack_init);
  if( rc!=SQLITE_OK ){
    fprintf(stderr, "sqlite3_auto_extension: %s\n", sqlite3_errstr(rc));
    return 1;
  }
  rc = sqlite3_open(":memory:", &db);
  if( rc!=SQLITE_OK ){
    fprintf(stderr, "sqlite3_open: %s\n", db ? sqlite3_errmsg(db)
                                             : sqlite3_errstr(rc));
    sqlite3_close(db);
    return 1;
  }
  rc = sqlite3_prepare_v2(db, "SELECT numpack_version()", -1, &stmt, 0);
  if( rc==SQLITE_OK ) rc = sqlite3_step(stmt);
  if( rc!=SQLITE_ROW || sqlite3_column_text(stmt, 0)==0 ){
    fprintf(stderr, "SELECT numpack_version(): %s\n", sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return 1;
  }
  printf("numpack %s (SQLite %s)\n",
         (const char*)sqlite3_column_text(stmt, 0), sqlite3_libversion());
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return 0;
}
