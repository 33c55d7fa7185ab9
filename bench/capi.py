"""
capi.py — just enough of SQLite's C API, through ctypes, to time numpack's
functions without Python's sqlite3 module in the way: that module copies
every bound BLOB (SQLITE_TRANSIENT) and every fetched one into a new bytes
object, which for 512 MB costs more than the function itself.  Here a BLOB
is bound SQLITE_STATIC from memory the caller owns, and a BLOB result is
read where SQLite holds it, as a C application would.

It uses the libsqlite3 Python's own module is linked with, so the numpack
module loads into the same SQLite library as in every other case.
"""
import ctypes
import ctypes.util

SQLITE_OK = 0
SQLITE_ROW = 100
SQLITE_DONE = 101
_OPEN_FLAGS = 0x02 | 0x04  # READWRITE | CREATE
_TRANSIENT = ctypes.c_void_p(-1)

_lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
_p = ctypes.c_void_p
_lib.sqlite3_open_v2.argtypes = [ctypes.c_char_p, ctypes.POINTER(_p),
                                 ctypes.c_int, ctypes.c_char_p]
_lib.sqlite3_close_v2.argtypes = [_p]
_lib.sqlite3_errmsg.argtypes = [_p]
_lib.sqlite3_errmsg.restype = ctypes.c_char_p
_lib.sqlite3_enable_load_extension.argtypes = [_p, ctypes.c_int]
_lib.sqlite3_load_extension.argtypes = [_p, ctypes.c_char_p, ctypes.c_char_p,
                                        ctypes.POINTER(ctypes.c_char_p)]
_lib.sqlite3_exec.argtypes = [_p, ctypes.c_char_p, _p, _p, _p]
_lib.sqlite3_prepare_v2.argtypes = [_p, ctypes.c_char_p, ctypes.c_int,
                                    ctypes.POINTER(_p), _p]
_lib.sqlite3_bind_text.argtypes = [_p, ctypes.c_int, ctypes.c_char_p,
                                   ctypes.c_int, _p]
_lib.sqlite3_bind_blob64.argtypes = [_p, ctypes.c_int, _p, ctypes.c_uint64, _p]
_lib.sqlite3_step.argtypes = [_p]
_lib.sqlite3_reset.argtypes = [_p]
_lib.sqlite3_finalize.argtypes = [_p]
_lib.sqlite3_column_blob.argtypes = [_p, ctypes.c_int]
_lib.sqlite3_column_blob.restype = _p
_lib.sqlite3_column_bytes.argtypes = [_p, ctypes.c_int]


class Error(Exception):
    pass


class Connection:
    """One sqlite3* with the numpack module loaded."""

    def __init__(self, path: str, module: str):
        self.db = _p()
        if _lib.sqlite3_open_v2(path.encode(), ctypes.byref(self.db),
                                _OPEN_FLAGS, None) != SQLITE_OK:
            raise Error("cannot open %s" % path)
        _lib.sqlite3_enable_load_extension(self.db, 1)
        err = ctypes.c_char_p()
        if _lib.sqlite3_load_extension(self.db, module.encode(), None,
                                       ctypes.byref(err)) != SQLITE_OK:
            raise Error("cannot load %s: %s" % (module, err.value))

    def _check(self, rc, what):
        if rc not in (SQLITE_OK, SQLITE_ROW, SQLITE_DONE):
            raise Error("%s: %s" % (what, _lib.sqlite3_errmsg(self.db).decode()))

    def exec(self, sql: str):
        self._check(_lib.sqlite3_exec(self.db, sql.encode(), None, None, None),
                    sql)

    def prepare(self, sql: str) -> "Statement":
        stmt = _p()
        self._check(_lib.sqlite3_prepare_v2(self.db, sql.encode(), -1,
                                            ctypes.byref(stmt), None), sql)
        return Statement(self, stmt)

    def close(self):
        _lib.sqlite3_close_v2(self.db)


class Statement:
    """A prepared statement; text parameters are copied, BLOB parameters
    are bound SQLITE_STATIC from an address the caller keeps alive."""

    def __init__(self, con: Connection, stmt):
        self.con, self.stmt = con, stmt

    def bind_text(self, i: int, s: str):
        _lib.sqlite3_bind_text(self.stmt, i, s.encode(), -1, _TRANSIENT)

    def bind_blob_static(self, i: int, address: int, n: int):
        _lib.sqlite3_bind_blob64(self.stmt, i, address, n, None)

    def step(self) -> bool:
        rc = _lib.sqlite3_step(self.stmt)
        self.con._check(rc, "step")
        return rc == SQLITE_ROW

    def column_blob(self, i: int):
        """(address, length) of a BLOB column, valid until reset."""
        return (_lib.sqlite3_column_blob(self.stmt, i) or 0,
                _lib.sqlite3_column_bytes(self.stmt, i))

    def reset(self):
        _lib.sqlite3_reset(self.stmt)

    def finalize(self):
        _lib.sqlite3_finalize(self.stmt)
