"""Dask arrays over NumPack stores: from_store() reads an array of a store
as a dask.array, chunk by chunk where the chunks are computed (a worker
process, another machine that sees the same directory); to_store() writes
a dask.array into a store as one transaction.

A graph reads one committed state.  from_store() records the array's
commit identity (the catalog's modification time, in microseconds, of its
last commit, its row counts, dtype and shape) when the graph is built.
Each chunk task opens a read transaction on a connection of its own (a
private database file, so that SQLite holds its lock for the transaction
and the extension keeps the store's read lock with it: every call inside
sees one committed state), reads its rows with numpack_getitem, reads the
array's identity in the same transaction, and raises StoreChangedError
when it differs.  So a computation gives exactly the state the graph was
built on, or fails; it never mixes two commits.  Build the graph again to
read the new state; compute_consistent() does so until one computation
sees no commit.

Requires dask (and distributed for a cluster); importing numpack_sqlite
does not import this module.
"""
import atexit
import json
import os
import sqlite3
import tempfile
import threading
from dataclasses import dataclass

import numpy as np

import dask
import dask.array as da
from dask.array.core import normalize_chunks
from dask.base import tokenize

from . import _sql
from ._numpack import NumPack
from ._sql import ArrayNotFoundError, NumPackError, sql_error

__all__ = ["from_store", "to_store", "compute_consistent",
           "StoreChangedError"]

# Room left for the .npy header when a chunk is read in pieces that fit
# SQLite's limit on the length of one value.
_HEADROOM = 1 << 16


class StoreChangedError(NumPackError):
    """The array was changed by a commit after the graph reading it was
    built: the graph's chunks would mix two states of the store."""


@dataclass(frozen=True)
class _Source:
    """What a chunk task needs: where the array is and which committed
    state of it the graph was built on (picklable, sent to workers)."""
    path: str
    name: str
    module: object       # the extension, as the caller named it (or None)
    identity: tuple      # see _identity()
    dtype: str
    row_shape: tuple


_IDENTITY_SQL = ("SELECT dtype, shape, rows, live_rows, deleted_rows, "
                 "modify_time FROM numpack_arrays(?) WHERE name = ?")


def _identity(con, path, name):
    """The array's commit identity on CON: (dtype, shape with deleted rows,
    rows, live rows, deleted rows, modification time in microseconds).
    Every commit that changes the array changes its modification time."""
    try:
        rows = con.execute(_IDENTITY_SQL, (path, name)).fetchall()
    except sqlite3.Error as e:
        raise sql_error(e) from e
    if not rows:
        raise ArrayNotFoundError(f'no array "{name}" in store {path}')
    return tuple(rows[0])


# ---- connections of the process that computes chunks ------------------------
#
# A chunk's reads must be one committed state.  The extension keeps the
# store's read lock for a whole transaction only while SQLite holds its own
# lock on the connection's main database file (an in-memory database has
# none), so each thread's connection has a small database file of its own,
# made once per process and removed at exit.

_local = threading.local()
_files = {}
_files_lock = threading.Lock()


def _scratch_file():
    """This process's private database file (the connections only take its
    lock; nothing is written to it)."""
    pid = os.getpid()
    with _files_lock:
        f = _files.get(pid)
        if f is None:
            fd, f = tempfile.mkstemp(prefix="numpack-dask-", suffix=".db")
            os.close(fd)
            _files[pid] = f
            atexit.register(_remove, f, pid)
        return f


def _remove(path, pid):
    if os.getpid() == pid:
        try:
            os.unlink(path)
        except OSError:
            pass


def _connection(module):
    """This thread's connection for reading chunks, the extension loaded."""
    cache = getattr(_local, "cons", None)
    if cache is None or _local.pid != os.getpid():
        cache = _local.cons = {}
        _local.pid = os.getpid()
    con = cache.get(module)
    if con is None:
        mem, found = _sql.connect(module)
        mem.close()
        con = sqlite3.connect(_scratch_file(), isolation_level=None,
                              check_same_thread=False)
        con.enable_load_extension(True)
        con.load_extension(found)
        con.enable_load_extension(False)
        con.execute(f"PRAGMA busy_timeout = {_sql.BUSY_TIMEOUT_MS}")
        cache[module] = con
    return con


def _read_rows(src, start, stop):
    """Logical rows START..STOP-1 of SRC's array, checked to be of the
    committed state the graph was built on."""
    con = _connection(src.module)
    con.execute("BEGIN")
    try:
        # SQLite's lock on the main database for the transaction: from the
        # first read on, the store is held too, and every call below sees
        # the same committed state.
        con.execute("SELECT count(*) FROM sqlite_master").fetchall()
        try:
            limit = con.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
        except AttributeError:      # Python < 3.11: SQLite's default
            limit = 1_000_000_000
        row_bytes = int(np.prod(src.row_shape, dtype=np.int64)) * \
            np.dtype(src.dtype).itemsize
        step = max(1, (limit - _HEADROOM) // max(row_bytes, 1))
        parts = []
        for a in range(start, max(stop, start + 1), step):
            b = min(a + step, stop)
            try:
                blob = con.execute("SELECT numpack_getitem(?, ?, ?)",
                                   (src.path, src.name, f"{a}:{b}")
                                   ).fetchone()[0]
            except sqlite3.Error as e:
                raise sql_error(e) from e
            parts.append(_sql.decode(blob))
        # Asked after the first read: the transaction's state, the one the
        # rows came from.
        now = _identity(con, src.path, src.name)
    except KeyError:
        raise StoreChangedError(
            f'array "{src.name}" of store {src.path} was removed after the '
            "graph reading it was built; build it again") from None
    finally:
        con.execute("COMMIT")
    if now != src.identity:
        raise StoreChangedError(
            f'array "{src.name}" of store {src.path} was changed by a commit '
            "after the graph reading it was built (its chunks would mix two "
            "states); build the graph again to read the new state")
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _read_block(src, rows, rest):
    """One block: logical rows ROWS (start, stop), cut along the other axes
    by the slices REST."""
    block = _read_rows(src, *rows)
    return block[(slice(None),) + tuple(slice(*s) for s in rest)]


def _bounds(chunks):
    """(start, stop) of each chunk of one axis."""
    out, start = [], 0
    for c in chunks:
        out.append((start, start + c))
        start += c
    return out


def from_store(path, name, chunks="auto", *, module=None):
    """A dask.array of the live rows of array NAME of the store at PATH, as
    committed when it is called.

    CHUNKS is dask's: a shape, an int (every axis), a dict by axis, or
    "auto" (the default: rows in chunks of dask's preferred size, each row
    whole).  Nothing is read now but the array's catalog entry (and its
    deletion bitmap, for the live row count); each chunk reads its rows
    (logical indexes, deleted rows skipped) with numpack_getitem where it
    is computed.  A chunk raises StoreChangedError when the array
    was changed by a commit since this call: a graph gives the state it was
    built on or fails, never a mix of two.  PATH must name the store where
    the chunks are computed too (an absolute path is kept).  MODULE is the
    extension, as for NumPack(module=...)."""
    path = os.path.abspath(os.fspath(path))
    con, _found = _sql.connect(module)
    try:
        ident = _identity(con, path, name)
    finally:
        con.close()
    dtype = np.dtype(ident[0])
    shape = (int(ident[3]),) + tuple(json.loads(ident[1]))[1:]
    if chunks == "auto":
        chunks = {0: "auto"}
    chunks = normalize_chunks(chunks, shape, dtype=dtype)
    src = _Source(path, name, module, ident, dtype.str, shape[1:])
    key = "numpack-" + tokenize(path, name, ident, chunks)
    rows = _bounds(chunks[0])
    others = [_bounds(c) for c in chunks[1:]]
    dsk = {}
    for idx in np.ndindex(*[len(c) for c in chunks]):
        rest = tuple(others[d][i] for d, i in enumerate(idx[1:]))
        dsk[(key,) + idx] = (_read_block, src, rows[idx[0]], rest)
    return da.Array(dsk, key, chunks, dtype=dtype,
                    meta=np.empty((0,) * len(shape), dtype))


def compute_consistent(build, retries=3, **kwargs):
    """Compute the collection BUILD() returns (a graph made with
    from_store), building it again when a commit changed an array it reads
    while it ran: the result is of one committed state, the one of its
    last build.  After RETRIES rebuilds StoreChangedError is raised.
    KWARGS go to dask.compute."""
    for attempt in range(retries + 1):
        try:
            return dask.compute(build(), **kwargs)[0]
        except StoreChangedError:
            if attempt == retries:
                raise


def to_store(darr, path, name, *, module=None, durable=True, window=1):
    """Write the dask array DARR (at least 1-D) into the store at PATH as
    array NAME (created, or replaced as save() replaces), in one
    transaction: its chunks of rows are computed in order (WINDOW at a
    time, with the current scheduler) and appended one after another.
    Either the whole array is committed or, on any error, nothing is: an
    array NAME that existed keeps its old rows."""
    if not isinstance(darr, da.Array):
        darr = da.asarray(darr)
    if darr.ndim == 0:
        raise ValueError(f'array "{name}": a 0-d array has no rows; '
                         "reshape it to (1,)")
    dtype = _sql.check_dtype(darr.dtype, f'array "{name}"')
    if any(np.isnan(c) for c in darr.chunks[0]):
        raise ValueError(f'array "{name}": the dask array has chunks of '
                         "unknown size (compute_chunk_sizes() first)")
    window = max(1, int(window))
    n = darr.numblocks[0]
    with NumPack(path, module=module, durable=durable) as npk:
        # One unit of work: every call below is one transaction, rolled
        # back if anything raises (a chunk's computation included).
        with npk._lock, npk._unit():
            first = True
            for i in range(0, n, window):
                blocks = dask.compute(*[darr.blocks[j]
                                        for j in range(i, min(i + window, n))])
                for block in blocks:
                    block = np.ascontiguousarray(block, dtype=dtype)
                    if first:
                        npk.save({name: block})
                        first = False
                    elif len(block):
                        npk.append({name: block})
