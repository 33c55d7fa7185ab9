"""The NumPack class: NumPack 0.7's Python API over the numpack SQLite
extension.  Each method becomes one or a few calls of the extension's SQL
functions on a private connection; see README.md for the mapping."""
import contextlib
import functools
import gc
import json
import os
import platform
import sqlite3
import sys
import threading
import warnings
from pathlib import Path

import numpy as np

from . import _capi, _sql
from ._batch import BatchModeContext, WritableBatchMode, _BatchBase
from ._lazy import open_lazy
from ._sql import Index, _TooBig, sql_error

BACKEND_TYPE = "sqlite-c"

# Room left for the .npy header and the SQL text around a value when a
# piece of work is cut to fit SQLite's BLOB limit.
_HEADROOM = 1 << 16
# Rows per statement when an index list is spelt out in pieces.
_MAX_LIST = 1 << 20


def _quote(text):
    """TEXT as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper


class NumPack:
    """A NumPack store (a ``.npk`` directory), read and written through the
    numpack SQLite extension.

    The constructor takes NumPack's options; ``module`` (keyword only) is
    the extension to load (default: ``$NUMPACK_SO``, else the ``numpack.so``
    of the source tree this package sits in, else the installed
    ``numpack``).  ``durable=False`` (keyword only) commits without fsync
    (``PRAGMA synchronous=OFF`` on the binding's connections), NumPack's own
    durability: every commit stays atomic if the process dies, but the last
    ones may be lost if the machine does.  The store is not opened until
    ``open()`` or ``with``.
    """

    def __init__(self, filename, drop_if_exists=False,
                 strict_context_mode=False, warn_no_context=None,
                 force_gc_on_close=False, *, module=None, durable=True):
        self._filename = Path(filename)
        self._drop_if_exists = bool(drop_if_exists)
        self._strict_context_mode = bool(strict_context_mode)
        self._force_gc_on_close = bool(force_gc_on_close)
        self._module = module
        self._durable = bool(durable)
        self._context_entered = False
        self._opened = False
        self._closed = False
        self._con = None
        self._path = None          # absolute store path, fixed at open()
        self._module_path = None   # where the extension was loaded from
        # Outside transactions: a second connection through SQLite's C API
        # and its prepared statements (see _direct_stmt); False once it
        # could not be had.
        self._direct = None
        self._lock = threading.RLock()
        # Transactions (see _join): open on the connection, how deeply
        # nested units of work are, what they wrote.
        self._txn = False
        self._unit_depth = 0
        self._wrote = False        # the open transaction has written
        # batch_mode / writable_batch_mode while one is active.
        self._batch = None
        self._cache = {}           # batch_mode: name -> ndarray
        self._dirty = {}           # batch_mode: names saved, not written
        if warn_no_context is None:
            warn_no_context = platform.system().lower() == "windows"
        self._warn_no_context = bool(warn_no_context)
        if not self._strict_context_mode and self._warn_no_context:
            # NumPack's text, word for word: warning filters match on it.
            warnings.warn(
                f"NumPack instance created for '{filename}' is not using "
                "strict context mode. For best reliability on Windows, "
                "please use 'with NumPack(...) as npk:' pattern or set "
                "strict_context_mode=True. This warning can be suppressed by "
                "setting warn_no_context=False.", UserWarning, stacklevel=2)

    # ---- opening and closing -------------------------------------------

    @_locked
    def open(self):
        """Open the store, creating the directory if it does not exist.
        A no-op when already open.  drop_if_exists empties the store on the
        first open only."""
        if self._opened and not self._closed:
            return
        path = os.path.abspath(os.fspath(self._filename))
        con, module_path = _sql.connect(self._module)
        try:
            if not self._durable:
                con.execute("PRAGMA synchronous = OFF")
            con.execute("SELECT numpack_open(?, ?)",
                        (path, 1 if self._drop_if_exists else 0)).fetchall()
        except sqlite3.Error as e:
            con.close()
            raise sql_error(e) from e
        self._con, self._path = con, path
        self._module_path = module_path
        self._opened, self._closed = True, False
        self._drop_if_exists = False

    @_locked
    def close(self, force_gc=None):
        """Close the store (idempotent).  An active batch_mode is written
        out first."""
        if self._closed or not self._opened:
            return
        try:
            if self._batch is not None:
                self._batch._finish(None)
        finally:
            self._end(False)
            try:
                self._close_direct()
                self._con.close()
            finally:
                self._con = None
                self._opened, self._closed = False, True
        if force_gc or (force_gc is None and self._force_gc_on_close):
            gc.collect()

    def __enter__(self):
        if not self._opened or self._closed:
            self.open()
        self._context_entered = True
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        try:
            self.close()
        finally:
            self._context_entered = False
        return False

    def __del__(self):
        try:
            if self._con is not None:
                self._end(False)
                self._con.close()
                self._con = None
        except Exception:
            pass

    def _check(self):
        if not self._opened or self._closed:
            raise RuntimeError(
                f"NumPack instance '{self._filename}' is not opened or has "
                "been closed. Please call open() method first, or use 'with' "
                "statement for automatic management.")
        if self._strict_context_mode and not self._context_entered:
            raise RuntimeError(
                f"NumPack instance '{self._filename}' is in strict context "
                "mode. All operations must be executed within a 'with' "
                "statement:\n  with NumPack(...) as npk:\n      npk.save(...)"
                "\n      npk.load(...)")

    # ---- SQL ----------------------------------------------------------

    def _q(self, sql, args=()):
        """Run SQL; its rows.  Errors become NumPack's exceptions."""
        try:
            return self._con.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            err = sql_error(e)
            if self._txn and not self._con.in_transaction:
                # SQLite ended the transaction itself (I/O error, ...).
                self._end(False)
                if self._batch is not None:
                    self._batch.failed = True
                raise _sql.NumPackError(
                    f"the transaction was rolled back: {e}",
                    getattr(e, "sqlite_errorname", None)) from e
            raise err from e

    def _one(self, sql, args=()):
        return self._q(sql, args)[0][0]

    def _limit(self):
        """SQLite's limit on the length of one BLOB or text value."""
        try:
            return self._con.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
        except AttributeError:      # Python < 3.11: SQLite's default
            return 1_000_000_000

    def _fit_rows(self, row_bytes):
        """Rows of ROW_BYTES that fit in one value, and whose indexes fit
        in one JSON list (up to 21 characters each)."""
        room = max(self._limit() - _HEADROOM, 1)
        return max(1, min(room // max(row_bytes, 21), _MAX_LIST))

    def _write(self, sql, args=()):
        """Run a writing SQL call, inside the open transaction if a batch or
        a unit of work wants one."""
        wants = self._batch is not None or self._unit_depth
        if self._batch is not None and self._batch.failed:
            raise _sql.NumPackError(
                "the batch's transaction was rolled back after an error; "
                "nothing of the batch was written")
        if wants and not self._txn:
            self._join()
        rows = self._q(sql, args)
        if self._txn:
            self._wrote = True
        return rows

    def _alone(self):
        """Whether a call runs on its own: no transaction, unit of work or
        batch is open."""
        return not (self._txn or self._unit_depth or self._batch is not None)

    def _try_write(self, sql, args):
        """Run a writing SQL call that passes values as they are, without
        asking the catalog for the array's dtype and shape first: the
        extension refuses any dtype or row shape but the array's own, and
        refuses before it changes anything.  True when it was done; False
        when it refused the arguments, for the caller to take the way that
        converts and checks them (and raises what a bad argument raises
        there).  Only on its own (_alone()): a refusal inside a transaction
        must not be a second chance."""
        try:
            self._q(sql, args)
            return True
        except (ValueError, KeyError, IndexError, _TooBig):
            # A refused argument: each has a code of its own (sql_error);
            # I/O errors, locks not granted and damaged files are
            # NumPackError, and raised.
            return False

    # ---- transactions ---------------------------------------------------
    #
    # Inside the connection's transaction the extension's writing functions
    # join it on their own.  _join() makes the store join at once, empty
    # or not (INSERT INTO numpack_txn), so that the whole unit or batch
    # sees one store no other connection writes to; COMMIT or ROLLBACK
    # then ends everything the calls did.

    def _names(self):
        return [r[0] for r in self._q("SELECT name FROM numpack_arrays(?)",
                                       (self._path,))]

    def _join(self):
        """Open the store's transaction on the connection."""
        if self._txn:
            return
        con = self._con
        try:
            con.execute("BEGIN")
            con.execute("INSERT INTO numpack_txn VALUES (?)", (self._path,))
        except sqlite3.Error as e:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise sql_error(e) from e
        self._txn, self._wrote = True, False

    def _end(self, commit):
        """COMMIT (or ROLLBACK) the transaction _join() opened."""
        if not self._txn:
            return
        con = self._con
        self._txn, self._wrote = False, False
        try:
            if con.in_transaction:
                con.execute("COMMIT" if commit else "ROLLBACK")
        except sqlite3.Error as e:
            if con.in_transaction:
                try:
                    con.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise sql_error(e) from e

    @contextlib.contextmanager
    def _savepoint(self):
        """A call's writes inside the open transaction (a batch's, or an
        outer call's): undone alone if the call fails, as the extension
        undoes a failing function call."""
        con = self._con
        con.execute("SAVEPOINT numpack_call")
        try:
            yield
        except BaseException:
            if self._txn and con.in_transaction:
                con.execute("ROLLBACK TO numpack_call")
                con.execute("RELEASE numpack_call")
            raise
        else:
            con.execute("RELEASE numpack_call")

    @contextlib.contextmanager
    def _unit(self, multi=True):
        """Make the writes inside one transaction: all or nothing."""
        if not multi:
            yield
            return
        if self._txn or self._unit_depth or self._batch is not None:
            self._unit_depth += 1
            try:
                if self._txn:
                    with self._savepoint():
                        yield
                else:
                    yield
            finally:
                self._unit_depth -= 1
            return
        self._unit_depth = 1
        try:
            yield
        except BaseException:
            self._end(False)
            raise
        else:
            self._end(True)
        finally:
            self._unit_depth = 0

    # ---- information -----------------------------------------------------

    def _info(self, name):
        """numpack_arrays' row for NAME as a dict, or None."""
        rows = self._q(
            "SELECT dtype, shape, rows, live_rows, deleted_rows, modify_time "
            "FROM numpack_arrays(?) WHERE name = ?", (self._path, name))
        if not rows:
            return None
        dtype, shape, nrows, live, deleted, mtime = rows[0]
        shape = tuple(json.loads(shape))
        return {"dtype": np.dtype(dtype), "shape": shape, "rows": nrows,
                "live_rows": live, "deleted_rows": deleted,
                "modify_time": mtime, "row_shape": shape[1:],
                "row_bytes": int(np.prod(shape[1:], dtype=np.int64)) *
                np.dtype(dtype).itemsize}

    def _need(self, name):
        info = self._info(name)
        if info is None:
            raise _sql.no_array(name, self._path)
        return info

    def _metadata(self):
        return json.loads(self._one("SELECT numpack_metadata(?)",
                                    (self._path,)))

    # ---- whole arrays through the C API ----------------------------------
    #
    # Outside transactions, save() of one array and load() go through a
    # second connection opened with SQLite's C API (_capi): the array's own
    # memory is bound to numpack_save's raw form without a copy, and
    # numpack_load's BLOB is copied once, straight into the new ndarray,
    # where the sqlite3 module would copy each way once more (into a bytes
    # object) on top of the .npy encoding.  The second connection commits
    # on its own and sees committed states, as this one does while no
    # transaction is open.  It keeps this connection's limit on the length
    # of a value, so that what is too big for one value is cut in pieces
    # either way.  Where the C API cannot be had, nothing changes.

    def _direct_stmt(self, sql):
        """SQL prepared on the C API connection (opened on first use) and
        kept for reuse, or None when there is none or a transaction is open
        here."""
        con = self._direct_con()
        if con is None:
            return None
        stmts = self._direct[1]
        stmt = stmts.get(sql)
        if stmt is None:
            stmt = stmts[sql] = con.prepare(sql)
        return stmt

    def _direct_con(self):
        """The C API connection (opened on first use), or None when there
        is none or a transaction is open here."""
        if self._txn or self._unit_depth or self._batch is not None:
            return None
        if self._direct is None:
            self._direct = False
            con = None
            try:
                if _capi.available():
                    con = _capi.Connection(":memory:", self._module_path)
                    con.exec("PRAGMA busy_timeout = %d"
                             % _sql.BUSY_TIMEOUT_MS)
                    if not self._durable:
                        con.exec("PRAGMA synchronous = OFF")
                    self._direct = (con, {})
            except _capi.Error:
                if con is not None:
                    con.close()
        if not self._direct:
            return None
        con = self._direct[0]
        con.set_limit(_capi.SQLITE_LIMIT_LENGTH, self._limit())
        return con

    def _load_direct(self, name):
        """NAME's live rows, or None when the C API is not to be used.

        The array is the BLOB numpack_load returned, used where it lies (a
        writable mapping of the extension's own): a statement of its own
        keeps the row alive until the array (and every view of it) is
        gone, so the 512 MB are read from the file once and never copied."""
        con = self._direct_con()
        if con is None:
            return None
        try:
            stmt = con.prepare("SELECT numpack_load(?, ?)")
        except _capi.Error as e:
            raise sql_error(e) from None
        keeper = _capi.Row(stmt)
        try:
            stmt.bind_text(1, self._path)
            stmt.bind_text(2, name)
            stmt.step()
            return _sql.decode_at(*stmt.column_blob(0), keeper=keeper)
        except _capi.Error as e:
            raise sql_error(e) from None

    def _save_direct(self, name, arr):
        """Save the C-contiguous ARR as NAME; False when the C API is not
        to be used (then nothing was done)."""
        if arr.nbytes == 0:
            return False
        stmt = self._direct_stmt("SELECT numpack_save(?, ?, ?, ?, ?)")
        if stmt is None:
            return False
        if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and
                                          sys.byteorder == "big"):
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        try:
            stmt.bind_text(1, self._path)
            stmt.bind_text(2, name)
            stmt.bind_blob_static(3, arr.ctypes.data, arr.nbytes)
            stmt.bind_text(4, _sql.dtype_name(arr.dtype))
            stmt.bind_text(5, _sql.json_shape(arr.shape))
            stmt.step()
        except _capi.Error as e:
            raise sql_error(e) from None
        finally:
            stmt.reset()
        return True

    def _close_direct(self):
        if self._direct:
            con, stmts = self._direct
            for stmt in stmts.values():
                stmt.finalize()
            con.close()
        self._direct = None

    # ---- batch_mode's cache --------------------------------------------

    def _sync(self, names=None):
        """Write out the arrays batch_mode holds unsaved (NAMES, or all)."""
        if not self._dirty:
            return
        todo = [n for n in (self._dirty if names is None else names)
                if n in self._dirty]
        for name in list(todo):
            self._save_one(name, self._cache[name])
            self._dirty.pop(name, None)

    def _evict(self, names):
        for name in names:
            self._cache.pop(name, None)
            self._dirty.pop(name, None)

    def _check_memory(self):
        limit = getattr(self._batch, "memory_limit", None)
        if limit is None:
            return
        used = sum(a.nbytes for a in self._cache.values())
        if used > limit * 1024 * 1024:
            self._sync()
            self._cache.clear()

    # ---- the API --------------------------------------------------------

    @_locked
    def save(self, arrays):
        """Save arrays (create or overwrite), all in one transaction."""
        self._check()
        if not isinstance(arrays, dict):
            raise ValueError("arrays must be a dictionary")
        items = []
        for name, value in arrays.items():
            if not isinstance(name, str):
                raise _sql.WrongTypeError(
                    f"array names must be str, not {name!r}")
            if isinstance(self._batch, _BatchBase) and \
                    self._batch.caching and value is self._cache.get(name):
                items.append((name, value))
                continue
            items.append((name, _sql.as_array(value, f'array "{name}"')))
        if isinstance(self._batch, _BatchBase) and self._batch.caching:
            for name, arr in items:
                self._cache[name] = arr
                self._dirty[name] = None
            self._check_memory()
            return
        with self._unit(len(items) > 1):
            for name, arr in items:
                self._save_one(name, arr)

    def _save_one(self, name, arr):
        arr = np.ascontiguousarray(arr)
        try:
            if self._save_direct(name, arr):
                return
        except _TooBig:
            pass
        blob = _sql.encode(arr)
        if len(blob) <= self._limit():
            try:
                self._write("SELECT numpack_save(?, ?, ?)",
                            (self._path, name, blob))
                return
            except _TooBig:
                pass
        del blob
        # Too big for one value: the first rows, then appends.
        row_bytes = arr[0:1].nbytes if len(arr) else 0
        n = self._fit_rows(row_bytes)
        with self._unit():
            self._write("SELECT numpack_save(?, ?, ?)",
                        (self._path, name, _sql.encode(arr[:n])))
            for start in range(n, len(arr), n):
                self._write("SELECT numpack_append(?, ?, ?)",
                            (self._path, name,
                             _sql.encode(arr[start:start + n])))

    @_locked
    def load(self, array_name, lazy=False):
        """The array's live rows: an ndarray, or with lazy=True a LazyArray
        over a read-only memory mapping of its data file."""
        self._check()
        if isinstance(self._batch, _BatchBase) and self._batch.caching:
            arr = self._cache.get(array_name)
            if arr is None:
                arr = self._load(array_name)
                self._cache[array_name] = arr
                self._check_memory()
            return arr
        if lazy and not self._txn:
            return open_lazy(self, array_name)
        return self._load(array_name)

    def _load(self, name):
        try:
            arr = self._load_direct(name)
            if arr is not None:
                return arr
            return _sql.decode(self._one("SELECT numpack_load(?, ?)",
                                         (self._path, name)))
        except _TooBig:
            pass
        # Over the BLOB limit: fill the array from numpack_stream, which
        # reads one committed state.
        info = self._need(name)
        out = np.empty((info["live_rows"],) + info["row_shape"],
                       info["dtype"])
        n = self._fit_rows(info["row_bytes"])
        cur = self._con.cursor()
        try:
            cur.execute("SELECT first, npy FROM numpack_stream(?, ?, ?)",
                        (self._path, name, n))
            for first, blob in cur:
                part = _sql.decode(blob)
                out[first:first + len(part)] = part
        except sqlite3.Error as e:
            raise sql_error(e) from e
        finally:
            cur.close()
        return out

    @_locked
    def replace(self, arrays, indexes):
        """Replace rows at logical INDEXES (int, list, ndarray or slice)."""
        self._check()
        if not isinstance(arrays, dict):
            raise ValueError("arrays must be a dictionary")
        ix = Index(indexes)  # a bad index type is refused before anything
        self._sync(list(arrays))
        self._evict(list(arrays))
        if len(arrays) == 1 and self._alone():
            (name, value), = arrays.items()
            room = self._limit() - _HEADROOM
            if _sql.plain(value) and ix.sql is not None and \
                    value.nbytes + _sql.arg_size(ix.sql) < room and \
                    self._try_write("SELECT numpack_replace(?, ?, ?, ?)",
                                    (self._path, name, _sql.encode(
                                        np.ascontiguousarray(value)),
                                     ix.sql)):
                return
        with self._unit(len(arrays) > 1):
            for name, value in arrays.items():
                self._replace_one(name, value, Index(indexes))

    def _replace_one(self, name, value, ix):
        info = self._need(name)
        live, rshape = info["live_rows"], info["row_shape"]
        if ix.needs_count:
            ix.resolve(live)
        values = _sql.cast(value, info["dtype"], f'array "{name}"')
        want = rshape if ix.scalar else (ix.count(live),) + rshape
        if ix.scalar and values.shape == (1,) + rshape:
            values = values.reshape(rshape)
        if values.shape != want:
            try:
                values = np.broadcast_to(values, want)
            except ValueError:
                raise ValueError(
                    f'array "{name}": values of shape {values.shape} do not '
                    f"fit the {want[0] if not ix.scalar else 1} selected "
                    f"row(s) of shape {rshape}") from None
        values = np.ascontiguousarray(values)
        blob = _sql.encode(values)
        if len(blob) <= self._limit() and \
                _sql.arg_size(ix.sql) <= self._limit() - _HEADROOM:
            try:
                self._write("SELECT numpack_replace(?, ?, ?, ?)",
                            (self._path, name, blob, ix.sql))
                return
            except _TooBig:
                pass
        del blob
        self._replace_positions(name, ix.positions(live),
                                values.reshape((-1,) + rshape),
                                info["row_bytes"])

    def _replace_positions(self, name, pos, values, row_bytes):
        """numpack_replace of rows at logical positions POS, in pieces."""
        n = self._fit_rows(row_bytes)
        with self._unit(len(pos) > n):
            for k in range(0, len(pos), n):
                self._write("SELECT numpack_replace(?, ?, ?, ?)",
                            (self._path, name,
                             _sql.encode(
                                 np.ascontiguousarray(values[k:k + n])),
                             _sql.positions_sql(pos[k:k + n])))

    @_locked
    def append(self, arrays):
        """Append rows to existing arrays (same dtype kind and row shape)."""
        self._check()
        if not isinstance(arrays, dict):
            raise ValueError("arrays must be a dictionary")
        self._sync(list(arrays))
        self._evict(list(arrays))
        if len(arrays) == 1 and self._alone():
            (name, value), = arrays.items()
            if _sql.plain(value) and value.ndim and \
                    0 < value.nbytes < self._limit() - _HEADROOM and \
                    _sql.little_endian(value.dtype) and \
                    self._try_write("SELECT numpack_append(?, ?, ?, ?, ?)",
                                    (self._path, name,
                                     np.ascontiguousarray(value),
                                     _sql.dtype_name(value.dtype),
                                     _sql.json_shape(value.shape))):
                return
        with self._unit(len(arrays) > 1):
            for name, value in arrays.items():
                info = self._need(name)
                arr = np.ascontiguousarray(
                    _sql.cast(value, info["dtype"], f'array "{name}"'))
                if arr.shape[1:] != info["row_shape"] or \
                        arr.ndim != len(info["shape"]):
                    raise ValueError(
                        f'cannot append rows of shape {arr.shape[1:]} to '
                        f'array "{name}" with rows of shape '
                        f'{info["row_shape"]}')
                n = self._fit_rows(info["row_bytes"])
                with self._unit(len(arr) > n):
                    for k in range(0, max(len(arr), 1), n):
                        self._write("SELECT numpack_append(?, ?, ?)",
                                    (self._path, name,
                                     _sql.encode(arr[k:k + n])))

    @_locked
    def drop(self, array_name, indexes=None):
        """Drop whole arrays (indexes=None) or rows at logical INDEXES.

        As NumPack 0.7 does, dropping a whole array marks every row
        deleted: the array stays listed with 0 rows (save() over it works)
        until update() reclaims its space, and names of no array are
        ignored."""
        self._check()
        names = [array_name] if isinstance(array_name, str) else array_name
        if not isinstance(names, (list, tuple)) or \
                not all(isinstance(n, str) for n in names):
            raise _sql.WrongTypeError(
                "array_name must be a str or a list of str")
        names = list(names)
        ix = None if indexes is None else \
            Index(indexes, _sql.BAD_DROP_INDEX)
        self._sync(names)
        self._evict(names)
        if ix is None:
            self._drop_rows_of(names)
            return
        arg = names[0] if len(names) == 1 else json.dumps(names)
        if not ix.needs_count and \
                _sql.arg_size(ix.sql) <= self._limit() - _HEADROOM:
            try:
                self._write("SELECT numpack_drop(?, ?, ?)",
                            (self._path, arg, ix.sql))
                return
            except _TooBig:
                pass
        with self._unit(len(names) > 1):
            for name in names:
                info = self._need(name)
                sub = Index(indexes).resolve(info["live_rows"])
                if _sql.arg_size(sub.sql) <= self._limit() - _HEADROOM:
                    try:
                        self._write("SELECT numpack_drop(?, ?, ?)",
                                    (self._path, name, sub.sql))
                        continue
                    except _TooBig:
                        pass
                self._drop_positions(name, sub.positions(info["live_rows"]),
                                     info["row_bytes"])

    def _drop_rows_of(self, names):
        """Mark every row of the arrays NAMES deleted, in one call; the
        names of no array are left out (numpack_drop would refuse them)."""
        present = set(self._names())
        found = [n for n in dict.fromkeys(names) if n in present]
        if not found:
            return
        arg = found[0] if len(found) == 1 else json.dumps(found)
        self._write("SELECT numpack_drop(?, ?, '0:')", (self._path, arg))

    def _drop_positions(self, name, pos, row_bytes):
        """Drop rows at logical positions POS in pieces, highest first, so
        that each piece's positions still mean the rows they meant."""
        pos = np.unique(pos)[::-1]
        n = self._fit_rows(row_bytes)
        with self._unit(len(pos) > n):
            for k in range(0, len(pos), n):
                self._write("SELECT numpack_drop(?, ?, ?)",
                            (self._path, name,
                             _sql.positions_sql(pos[k:k + n][::-1])))

    @_locked
    def getitem(self, array_name, indexes):
        """Rows at logical INDEXES; an int index drops the first dimension,
        as NumPy does."""
        self._check()
        if self._alone():
            arr = self._getitem_list(array_name, indexes)
            if arr is not None:
                return arr
        ix = Index(indexes)
        self._sync([array_name])
        info = None
        if ix.needs_count:
            info = self._need(array_name)
            ix.resolve(info["live_rows"])
        if _sql.arg_size(ix.sql) <= self._limit() - _HEADROOM:
            try:
                return _sql.decode(self._one(
                    "SELECT numpack_getitem(?, ?, ?)",
                    (self._path, array_name, ix.sql)))
            except _TooBig:
                pass
        # Too many rows for one value: in pieces.
        info = info or self._need(array_name)
        pos = ix.positions(info["live_rows"])
        n = self._fit_rows(info["row_bytes"])
        parts = [_sql.decode(self._one(
            "SELECT numpack_getitem(?, ?, ?)",
            (self._path, array_name, _sql.positions_sql(pos[k:k + n]))))
            for k in range(0, len(pos), n)]
        if not parts:
            return np.empty((0,) + info["row_shape"], info["dtype"])
        return np.concatenate(parts)

    def _getitem_list(self, name, indexes):
        """getitem of a list of Python ints, the common case, at the cost of
        the SQL call: the list goes as a BLOB of int64 values, whose range
        the extension checks as Index would.  None when INDEXES is anything
        else or the call fails: the general way then does it again, and
        raises what it raises."""
        ix = _sql.int_list_blob(indexes)
        if ix is None:
            return None
        try:
            blob = self._con.execute(
                "SELECT numpack_getitem(?, ?, ?)",
                (self._path, name, ix)).fetchone()[0]
        except sqlite3.Error as e:
            if _sql.error_code(e) in (_sql.SQLITE_ERROR, _sql.SQLITE_RANGE,
                                      _sql.SQLITE_TOOBIG):
                return None
            raise sql_error(e) from e
        return _sql.decode(blob)

    @_locked
    def top_k(self, array_name, query, k, metric="l2"):
        """The K live rows of ARRAY_NAME nearest to QUERY (one row's
        elements, any shape of that size) under METRIC (l2, l2sq, cosine,
        dot, hamming, jaccard), nearest first, ties by position: a pair of
        NumPy arrays (logical indexes as getitem takes them, distances),
        each of min(K, live rows) entries.  Exact; the extension computes
        it in one pass over the stored rows."""
        q = np.asarray(query)
        idx, dist = self._top_k(array_name, q.reshape(1, q.size), k, metric)
        return idx[0], dist[0]

    @_locked
    def multi_query_top_k(self, array_name, queries, k, metric="l2"):
        """top_k for every row of QUERIES (shape (q, d), or (d,) for one)
        in one pass over the array: two arrays of shape (q, min(K, live
        rows)), indexes and distances."""
        q = np.asarray(queries)
        if q.ndim <= 1:
            q = q.reshape(1, q.size)
        # Not reshape(len(q), -1): NumPy cannot infer -1 for 0 queries.
        return self._top_k(array_name,
                           q.reshape(len(q), int(np.prod(q.shape[1:]))), k,
                           metric)

    def _top_k(self, name, q, k, metric):
        self._check()
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) \
                or k <= 0:
            raise ValueError(f"k must be a positive int, not {k!r}")
        if not isinstance(metric, str):
            raise ValueError(f"metric must be a str, not {metric!r}")
        if q.dtype.kind not in "biuf":
            raise TypeError(f"a query holds numbers, not {q.dtype}")
        self._sync([name])
        rows = self._q(
            "SELECT query, idx, distance FROM numpack_knn(?, ?, ?, ?, ?)",
            (self._path, name, _sql.encode(np.ascontiguousarray(q)), int(k),
             metric))
        # No query: the extension checked the array and the query's width
        # and answered with no row; the shape is still (0, min(k, live)).
        n = len(rows) // len(q) if len(q) else \
            min(int(k), self._need(name)["live_rows"])
        idx = np.empty((len(q), n), np.int64)
        dist = np.empty((len(q), n), np.float64)
        if rows:
            idx[...] = np.fromiter((r[1] for r in rows), np.int64,
                                   len(rows)).reshape(len(q), n)
            dist[...] = np.fromiter((r[2] for r in rows), np.float64,
                                    len(rows)).reshape(len(q), n)
        return idx, dist

    @_locked
    def stream_load(self, array_name, buffer_size=None):
        """An iterator of batches of BUFFER_SIZE rows (1 when None)."""
        self._check()
        if buffer_size is not None:
            if isinstance(buffer_size, bool) or \
                    not isinstance(buffer_size, (int, np.integer)):
                raise _sql.WrongTypeError(
                    "buffer_size must be an int or None")
            if buffer_size <= 0:
                raise ValueError("buffer_size must be greater than 0")
        want = int(buffer_size) if buffer_size is not None else 1
        self._sync([array_name])
        info = self._need(array_name)
        step = min(want, self._fit_rows(info["row_bytes"]))
        cur = self._con.cursor()
        try:
            cur.execute("SELECT npy FROM numpack_stream(?, ?, ?)",
                        (self._path, array_name, step))
        except sqlite3.Error as e:
            cur.close()
            raise sql_error(e) from e
        return self._stream(cur, want, step, info)

    def _stream(self, cur, want, step, info):
        try:
            if step == want:
                for (blob,) in cur:
                    yield _sql.decode(blob)
                return
            # Batches bigger than one value: gather pieces.
            parts, have = [], 0
            for (blob,) in cur:
                parts.append(_sql.decode(blob))
                have += len(parts[-1])
                while have >= want:
                    cat = np.concatenate(parts) if len(parts) > 1 \
                        else parts[0]
                    rest = cat[want:]
                    yield cat[:want].copy() if len(rest) else cat
                    parts, have = ([rest] if len(rest) else []), len(rest)
            if parts:
                yield np.concatenate(parts)
        except sqlite3.Error as e:
            raise sql_error(e) from e
        finally:
            cur.close()

    @_locked
    def get_shape(self, array_name):
        """The shape of the array's live rows."""
        self._check()
        if array_name in self._cache:
            return tuple(self._cache[array_name].shape)
        return tuple(json.loads(self._one("SELECT numpack_shape(?, ?)",
                                          (self._path, array_name))))

    @_locked
    def get_member_list(self):
        """The array names, in the catalog's order."""
        self._check()
        names = self._names()
        return names + [n for n in self._cache if n not in names]

    @_locked
    def has_array(self, array_name):
        self._check()
        return array_name in self._cache or array_name in self._names()

    @_locked
    def get_modify_time(self, array_name):
        """Last modification, in microseconds since the epoch (the
        catalog's value), or None when there is no such array."""
        self._check()
        self._sync([array_name])
        info = self._info(array_name)
        return None if info is None else int(info["modify_time"])

    @_locked
    def get_metadata(self):
        """The catalog as NumPack's dict: arrays (shape with deleted rows,
        data_file, last_modified, size_bytes, dtype), base_dir,
        total_arrays."""
        self._check()
        self._sync()
        return self._metadata()

    @_locked
    def clone(self, source_name, target_name):
        self._check()
        self._sync([source_name, target_name])
        self._write("SELECT numpack_clone(?, ?, ?)",
                    (self._path, source_name, target_name))

    @_locked
    def reset(self):
        """Remove every array."""
        self._check()
        self._evict(list(self._cache))
        self._write("SELECT numpack_reset(?)", (self._path,))

    @_locked
    def update(self, array_name):
        """Compact the array: remove the rows dropped so far for good."""
        self._check()
        self._sync([array_name])
        self._write("SELECT numpack_compact(?, ?)", (self._path, array_name))

    @_locked
    def get_io_stats(self):
        """The extension's I/O counters for this store (this process).
        Never refused, as NumPack's is not: without an open store (or
        outside ``with`` under strict_context_mode, which reads nothing of
        the arrays) it is NumPack 0.5's answer, which names no backend."""
        if not self._opened or self._closed:
            return {"stats_available": False}
        stats = json.loads(self._one("SELECT numpack_io_stats(?)",
                                     (self._path,)))
        stats["stats_available"] = True
        return stats

    def batch_mode(self, memory_limit=None):
        """A context in which loads and saves go through an in-memory cache
        and everything is written in one transaction at the end."""
        return BatchModeContext(self, memory_limit=memory_limit)

    def writable_batch_mode(self):
        """A context whose load() gives arrays to change in place; the rows
        changed are written back in one transaction at the end."""
        return WritableBatchMode(self)

    # ---- properties and special methods ----------------------------------

    @property
    def backend_type(self):
        return BACKEND_TYPE

    @property
    def is_opened(self):
        return self._opened and not self._closed

    @property
    def is_closed(self):
        return self._closed or not self._opened

    def __getitem__(self, key):
        return self.load(key)

    def __iter__(self):
        return iter(self.get_member_list())

    def __repr__(self):
        """NumPack 0.5's text: the array count while open, else the status
        (the backend is no longer part of it; see backend_type)."""
        if self.is_opened:
            try:
                n = len(self.get_member_list())
                return f"NumPack({self._filename}, arrays={n})"
            except Exception:
                pass
        status = "opened" if self.is_opened else "closed"
        return f"NumPack({self._filename}, status={status})"
