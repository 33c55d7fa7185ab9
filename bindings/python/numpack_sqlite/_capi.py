"""Just enough of SQLite's C API, through ctypes, to move whole arrays
without Python's sqlite3 module in the way: that module copies every bound
BLOB (SQLITE_TRANSIENT) and every fetched one into a new bytes object, which
for a large array costs more than reading it.  Here a BLOB is bound
SQLITE_STATIC from memory the caller owns, and a BLOB result is read where
SQLite holds it, as a C application would.

It uses the shared libsqlite3 (the one Python's own module is linked with
on Debian); ``available()`` is False where there is none, and callers then
stay with the sqlite3 module.
"""
import ctypes
import ctypes.util

SQLITE_OK = 0
SQLITE_ROW = 100
SQLITE_DONE = 101
SQLITE_LIMIT_LENGTH = 0
_OPEN_FLAGS = 0x02 | 0x04  # READWRITE | CREATE
_TRANSIENT = ctypes.c_void_p(-1)


def _load_library():
    try:
        return ctypes.CDLL(ctypes.util.find_library("sqlite3")
                           or "libsqlite3.so.0")
    except OSError:
        return None


_lib = _load_library()
_p = ctypes.c_void_p


def available():
    """True when the shared SQLite library could be loaded."""
    return _lib is not None


def _declare():
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
    _lib.sqlite3_clear_bindings.argtypes = [_p]
    _lib.sqlite3_finalize.argtypes = [_p]
    _lib.sqlite3_column_blob.argtypes = [_p, ctypes.c_int]
    _lib.sqlite3_column_blob.restype = _p
    _lib.sqlite3_column_bytes.argtypes = [_p, ctypes.c_int]
    _lib.sqlite3_free.argtypes = [_p]
    _lib.sqlite3_limit.argtypes = [_p, ctypes.c_int, ctypes.c_int]
    _lib.sqlite3_next_stmt.argtypes = [_p, _p]
    _lib.sqlite3_next_stmt.restype = _p


if _lib is not None:
    _declare()


# Names of the primary result codes, as sqlite3.Error.sqlite_errorname
# gives them.
_CODE_NAMES = dict(enumerate((
    "SQLITE_OK", "SQLITE_ERROR", "SQLITE_INTERNAL", "SQLITE_PERM",
    "SQLITE_ABORT", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_NOMEM",
    "SQLITE_READONLY", "SQLITE_INTERRUPT", "SQLITE_IOERR", "SQLITE_CORRUPT",
    "SQLITE_NOTFOUND", "SQLITE_FULL", "SQLITE_CANTOPEN", "SQLITE_PROTOCOL",
    "SQLITE_EMPTY", "SQLITE_SCHEMA", "SQLITE_TOOBIG", "SQLITE_CONSTRAINT",
    "SQLITE_MISMATCH", "SQLITE_MISUSE", "SQLITE_NOLFS", "SQLITE_AUTH",
    "SQLITE_FORMAT", "SQLITE_RANGE", "SQLITE_NOTADB")))


class Error(Exception):
    """An SQLite error, with ``sqlite_errorcode`` (the primary result code)
    and ``sqlite_errorname`` as sqlite3.Error has them, so that one mapping
    to NumPack's exceptions serves both."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.sqlite_errorcode = code
        self.sqlite_errorname = _CODE_NAMES.get(code)


class Connection:
    """One sqlite3* with the numpack module loaded."""

    def __init__(self, path: str, module: str):
        self.db = _p()
        self._limits = {}   # what set_limit last set, by limit
        rc = _lib.sqlite3_open_v2(path.encode(), ctypes.byref(self.db),
                                  _OPEN_FLAGS, None)
        if rc != SQLITE_OK:
            _lib.sqlite3_close_v2(self.db)
            raise Error("cannot open %s" % path, rc)
        _lib.sqlite3_enable_load_extension(self.db, 1)
        err = ctypes.c_char_p()
        rc = _lib.sqlite3_load_extension(self.db, module.encode(), None,
                                         ctypes.byref(err))
        if rc != SQLITE_OK:
            msg = (err.value or b"").decode("utf-8", "replace")
            _lib.sqlite3_free(ctypes.cast(err, _p))
            _lib.sqlite3_close_v2(self.db)
            raise Error("cannot load %s: %s" % (module, msg), rc)

    def _check(self, rc):
        if rc not in (SQLITE_OK, SQLITE_ROW, SQLITE_DONE):
            msg = _lib.sqlite3_errmsg(self.db).decode("utf-8", "replace")
            raise Error(msg, rc & 0xff)

    def exec(self, sql: str):
        self._check(_lib.sqlite3_exec(self.db, sql.encode(), None, None, None))

    def set_limit(self, which: int, value: int):
        """Set a limit; a value it already has costs no call into SQLite."""
        if self._limits.get(which) != value:
            _lib.sqlite3_limit(self.db, which, value)
            self._limits[which] = value

    def prepare(self, sql: str) -> "Statement":
        stmt = _p()
        self._check(_lib.sqlite3_prepare_v2(self.db, sql.encode(), -1,
                                            ctypes.byref(stmt), None))
        return Statement(self, stmt)

    def statements(self) -> int:
        """Prepared statements not yet finalized on this connection."""
        n, s = 0, _lib.sqlite3_next_stmt(self.db, None)
        while s:
            n += 1
            s = _lib.sqlite3_next_stmt(self.db, s)
        return n

    def close(self):
        _lib.sqlite3_close_v2(self.db)


class Statement:
    """A prepared statement; text parameters are copied, BLOB parameters
    are bound SQLITE_STATIC from an address the caller keeps alive."""

    def __init__(self, con: Connection, stmt):
        self.con, self.stmt = con, stmt

    def bind_text(self, i: int, s: str):
        self.con._check(_lib.sqlite3_bind_text(self.stmt, i, s.encode(), -1,
                                               _TRANSIENT))

    def bind_blob_static(self, i: int, address: int, n: int):
        """Bind N bytes at ADDRESS without a copy: they must stay as they
        are until reset().  N must not be 0 (a NULL address binds NULL)."""
        self.con._check(_lib.sqlite3_bind_blob64(self.stmt, i, address, n,
                                                 None))

    def step(self) -> bool:
        rc = _lib.sqlite3_step(self.stmt)
        self.con._check(rc)
        return rc == SQLITE_ROW

    def column_blob(self, i: int):
        """(address, length) of a BLOB column, valid until reset."""
        return (_lib.sqlite3_column_blob(self.stmt, i) or 0,
                _lib.sqlite3_column_bytes(self.stmt, i))

    def reset(self):
        """Reset, and forget the parameters: no pointer bound without a
        copy outlives the call it was bound for."""
        _lib.sqlite3_reset(self.stmt)
        _lib.sqlite3_clear_bindings(self.stmt)

    def finalize(self):
        _lib.sqlite3_finalize(self.stmt)


class Row:
    """Owns STMT and the row it has stepped to: the memory of its columns
    stays valid until this object is collected, which finalizes STMT.  A
    connection closed meanwhile (sqlite3_close_v2) waits for it."""

    def __init__(self, stmt: Statement):
        self.stmt = stmt

    def __del__(self):
        try:
            if self.stmt is not None:
                self.stmt.finalize()
        except Exception:
            pass
        self.stmt = None
