"""The extension's error codes, as Python sees them, and the exceptions the
binding makes of them: one SQLite result code per kind of mistake, the same
through a function and a table-valued function, and one exception type per
code, chosen by the code alone (never by the words of the message)."""
import sqlite3
import sys

import numpy as np
import pytest

from numpack_sqlite import (ArrayNotFoundError, NumPack, NumPackError,
                            RowIndexError)
from numpack_sqlite import _sql

needs_codes = pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="sqlite3.Error.sqlite_errorcode needs Python 3.11")


@pytest.fixture
def store(sql, tmp_path):
    """s.npk with "a": int8 rows of 2 (4 rows), "f": float64 (2 rows)."""
    path = str(tmp_path / "s.npk")
    sql.execute("SELECT numpack_save(?, 'a', x'0102030405060708', 'int8', "
                "'[4,2]')", (path,))
    sql.execute("SELECT numpack_save(?, 'f', zeroblob(16), 'float64', "
                "'[2]')", (path,))
    return path


# Each kind of mistake: SQL calls that make it (with ? for the store), its
# code's name, and the exception the binding raises for it.
CASES = {
    "no_array": (
        ["SELECT numpack_load(?, 'nope')",
         "SELECT numpack_getitem(?, 'nope', 0)",
         "SELECT numpack_clone(?, 'nope', 'b')",
         "SELECT * FROM numpack_stream(?, 'nope', 10)"],
        "SQLITE_NOTFOUND", ArrayNotFoundError),
    "row_out_of_range": (
        ["SELECT numpack_getitem(?, 'a', 4)",
         "SELECT numpack_getitem(?, 'a', '[0, -5]')",
         "SELECT numpack_drop(?, 'a', 9)"],
        "SQLITE_RANGE", RowIndexError),
    "mismatch": (
        ["SELECT numpack_append(?, 'a', zeroblob(8), 'float64', '[1]')",
         "SELECT numpack_append(?, 'a', x'010203', 'int8', '[1,3]')",
         "SELECT numpack_load(?, 1)",
         "SELECT * FROM numpack_stream(?, 'a', 0)"],
        "SQLITE_MISMATCH", ValueError),
    "exists": (
        ["SELECT numpack_clone(?, 'a', 'f')"],
        "SQLITE_CONSTRAINT", ValueError),
    "bad_argument": (
        ["SELECT numpack_getitem(?, 'a', 'abc')",
         "SELECT numpack_save(?, 'a/b', x'01', 'int8', '[1]')",
         "SELECT numpack_save(?, 'x', x'01', 'int7', '[1]')"],
        "SQLITE_ERROR", ValueError),
}


def failure(sql, query, *args):
    with pytest.raises(sqlite3.Error) as info:
        sql.execute(query, args).fetchall()
    return info.value


@needs_codes
@pytest.mark.parametrize("case", list(CASES))
def test_code_and_exception(sql, store, case):
    queries, name, exc = CASES[case]
    for q in queries:
        e = failure(sql, q, store)
        assert e.sqlite_errorname == name, (q, str(e))
        mapped = _sql.sql_error(e)
        assert type(mapped) is exc, (q, mapped)
        assert mapped.args[0] == str(e)


@needs_codes
def test_no_store(sql, tmp_path):
    """A store that is not there, or a directory that is no store, is
    SQLITE_CANTOPEN through functions and table-valued functions alike: a
    failure of the store (NumPackError), not a bad argument."""
    (tmp_path / "empty").mkdir()
    for path in (str(tmp_path / "none"), str(tmp_path / "empty")):
        for q in ("SELECT numpack_load(?, 'a')",
                  "SELECT * FROM numpack_arrays(?)",
                  "SELECT * FROM numpack_stream(?, 'a', 1)"):
            e = failure(sql, q, path)
            assert e.sqlite_errorname == "SQLITE_CANTOPEN", (q, str(e))
            mapped = _sql.sql_error(e)
            assert type(mapped) is NumPackError
            assert mapped.sqlite_errorname == "SQLITE_CANTOPEN"


@needs_codes
def test_too_big(sql, store):
    """Over SQLite's length limit: SQLITE_TOOBIG, which the binding handles
    itself by splitting the work."""
    sql.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 64)
    e = failure(sql, "SELECT numpack_load(?, 'a')", store)
    assert e.sqlite_errorname == "SQLITE_TOOBIG"
    assert isinstance(_sql.sql_error(e), _sql._TooBig)


class FakeError(Exception):
    """A sqlite3-like error with a chosen code and message."""

    def __init__(self, message, code, name):
        super().__init__(message)
        self.sqlite_errorcode, self.sqlite_errorname = code, name


def test_by_code_not_words():
    """The code decides, whatever the message says: an I/O error whose
    message reads like a missing array is a NumPackError, and a missing
    array is ArrayNotFoundError however it is worded.  Extended codes count
    by their primary code."""
    e = _sql.sql_error(FakeError('numpack: no array "a": out of range, '
                                 'already exists, invalid array name',
                                 10, "SQLITE_IOERR"))
    assert type(e) is NumPackError and e.sqlite_errorname == "SQLITE_IOERR"
    assert type(_sql.sql_error(FakeError("gone", 12, "SQLITE_NOTFOUND"))) \
        is ArrayNotFoundError
    assert type(_sql.sql_error(FakeError("far", 25, "SQLITE_RANGE"))) \
        is RowIndexError
    assert type(_sql.sql_error(FakeError("twice", 1555,
                                         "SQLITE_CONSTRAINT_PRIMARYKEY"))) \
        is ValueError
    assert type(_sql.sql_error(FakeError("string or blob too big", 1,
                                         "SQLITE_ERROR"))) is ValueError


def test_binding_exceptions(npk, tmp_path):
    """Through the binding, each kind of mistake the extension finds raises
    the type NumPack users catch."""
    npk.save({"a": np.arange(6, dtype=np.int8).reshape(3, 2)})
    with pytest.raises(KeyError):
        npk.load("nope")
    with pytest.raises(ArrayNotFoundError):
        npk.getitem("nope", 0)
    with pytest.raises(IndexError):
        npk.getitem("a", 3)
    with pytest.raises(RowIndexError):
        npk.drop("a", [7])
    with pytest.raises(ValueError):
        npk.clone("a", "a")
    with pytest.raises(ValueError):
        npk.append({"a": np.zeros((1, 3), np.int8)})
    # Nothing of it changed the array.
    assert np.array_equal(npk.load("a"),
                          np.arange(6, dtype=np.int8).reshape(3, 2))
    notdir = tmp_path / "file"
    notdir.write_bytes(b"")
    with pytest.raises(NumPackError) as info:
        NumPack(notdir).open()
    assert info.value.sqlite_errorname == "SQLITE_CANTOPEN"


def test_without_codes():
    """Before Python 3.11 a sqlite3.Error has no code: the sqlite3 module's
    exception class, which it chose by the code, stands in for it."""
    cases = [(sqlite3.InternalError, ArrayNotFoundError),
             (sqlite3.DataError, _sql._TooBig),
             (sqlite3.IntegrityError, ValueError),
             (sqlite3.OperationalError, NumPackError),
             (sqlite3.DatabaseError, NumPackError)]
    for cls, exc in cases:
        e = cls('numpack: no array "a" in store /s')
        assert not hasattr(e, "sqlite_errorcode")
        assert type(_sql.sql_error(e)) is exc, cls


@needs_codes
def test_table_codes(sql, store):
    """A numpack table reports the same codes as the functions, and Python
    sees SQLite's extended code where there is one."""
    sql.execute(f"CREATE VIRTUAL TABLE t USING numpack(store='{store}', "
                "array='a')")
    e = failure(sql, f"CREATE VIRTUAL TABLE n USING numpack(store='{store}', "
                "array='nope')")
    assert e.sqlite_errorname == "SQLITE_NOTFOUND"
    assert e.sqlite_errorcode == 12
    e = failure(sql, "INSERT INTO t VALUES ('abc', 1)")
    assert e.sqlite_errorname == "SQLITE_MISMATCH"
    e = failure(sql, "INSERT INTO t(rowid, c0, c1) VALUES (0, 1, 1)")
    assert e.sqlite_errorname == "SQLITE_CONSTRAINT_PRIMARYKEY"
    assert type(_sql.sql_error(e)) is ValueError
    sql.execute("SELECT numpack_drop(?, 'a')", (store,))
    e = failure(sql, "SELECT * FROM t")
    assert e.sqlite_errorname == "SQLITE_NOTFOUND"
    assert type(_sql.sql_error(e)) is ArrayNotFoundError
    sql.execute("DROP TABLE t")
