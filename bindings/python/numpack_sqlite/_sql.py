"""The translation layer: finding and loading the extension, arrays to and
from .npy BLOBs, Python index objects to the extension's index arguments,
and the extension's errors to NumPack's exceptions.

Nothing here touches the store's files: every read and write of array data
goes through the SQL functions of the extension.
"""
import array
import ctypes
import io
import operator
import os
import re
import sqlite3
import sys
from pathlib import Path

import numpy as np

# Milliseconds a statement waits for another connection's lock on the store
# before it fails (PRAGMA busy_timeout).
BUSY_TIMEOUT_MS = 10000

# The dtypes the store holds (NumPack 0.7's codes 0..13), by (kind, itemsize).
_SUPPORTED = {
    ("b", 1),
    ("u", 1), ("u", 2), ("u", 4), ("u", 8),
    ("i", 1), ("i", 2), ("i", 4), ("i", 8),
    ("f", 2), ("f", 4), ("f", 8),
    ("c", 8), ("c", 16),
}


class NumPackError(RuntimeError):
    """An error of the store that is not a bad argument: a damaged file, an
    I/O error, a lock that could not be had in time.  ``sqlite_errorname``
    holds SQLite's name of the error code (``SQLITE_CORRUPT``, ...)."""

    def __init__(self, message, sqlite_errorname=None):
        super().__init__(message)
        self.sqlite_errorname = sqlite_errorname


# NumPack raises different exception types for the same mistake depending on
# the method (a missing array is a KeyError to load() and getitem(), a
# ValueError to append() and a RuntimeError to update(); a row out of range
# a RuntimeError to getitem() and a ValueError to replace(); a wrong index
# or value type a TypeError where its Rust core refuses it, else a
# ValueError).  The binding raises one type per mistake, derived from each
# of them, so that an except clause written against NumPack catches it.

class ArrayNotFoundError(KeyError, ValueError, RuntimeError):
    """No array of that name in the store."""


def no_array(name, path):
    """The error for a missing array, in the extension's words, so that a
    missing name reads the same whichever method (or SQL call) found it."""
    return ArrayNotFoundError(f'numpack: no array "{name}" in store {path}')


class RowIndexError(IndexError, ValueError, RuntimeError):
    """A row index out of range."""


class WrongTypeError(ValueError, TypeError):
    """An argument of the wrong type or dtype."""


class _TooBig(Exception):
    """A value over SQLite's BLOB limit (SQLITE_TOOBIG); handled inside the
    binding by splitting the work, never seen by callers."""


# ---- the extension ----------------------------------------------------

def _repo_build():
    """The module of the source tree this package sits in, if built:
    bindings/python/numpack_sqlite/../../../.libs/numpack.so."""
    here = Path(__file__).resolve().parent
    return here.parent.parent.parent / ".libs" / "numpack.so"


def module_candidates(module=None):
    """Where to load the extension from, in order of preference."""
    if module is not None:
        return [os.fspath(module)]
    env = os.environ.get("NUMPACK_SO")
    if env:
        return [env]
    build = _repo_build()
    out = [str(build)] if build.exists() else []
    out.append("numpack")  # installed: the dynamic loader finds numpack.so
    return out


def connect(module=None):
    """A private in-memory connection with the numpack extension loaded,
    and the path it was loaded from."""
    errors = []
    for cand in module_candidates(module):
        con = sqlite3.connect(":memory:", isolation_level=None,
                              check_same_thread=False)
        try:
            con.enable_load_extension(True)
            con.load_extension(cand)
            con.enable_load_extension(False)
        except AttributeError:
            con.close()
            raise RuntimeError(
                "this Python's sqlite3 module cannot load extensions "
                "(built without enable_load_extension); use a Python whose "
                "sqlite3 can, such as Debian's /usr/bin/python3") from None
        except sqlite3.Error as e:
            con.close()
            errors.append(f"{cand}: {e}")
            continue
        con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return con, cand
    raise RuntimeError(
        "cannot load the numpack SQLite extension ("
        + "; ".join(errors)
        + "); build it (make) or install it (make install), or give its "
        "path with NumPack(..., module=PATH) or the NUMPACK_SO variable")


# ---- errors -----------------------------------------------------------

# The extension reports each mistake with a SQLite result code of its own
# (the README's "Error codes"), whichever function or table met it: the
# exception is chosen by that code alone, never by the message's words.
# Every other code (SQLITE_CANTOPEN for a missing store, SQLITE_IOERR,
# SQLITE_CORRUPT, SQLITE_BUSY, ...) is a failure of the store: NumPackError.
SQLITE_ERROR = 1          # any other bad argument
SQLITE_NOTFOUND = 12      # no such array
SQLITE_TOOBIG = 18        # over SQLite's limit for one value
SQLITE_CONSTRAINT = 19    # the array already exists
SQLITE_MISMATCH = 20      # a value of another dtype, shape or type
SQLITE_RANGE = 25         # a row index out of range

_BY_CODE = {
    SQLITE_ERROR: ValueError,
    SQLITE_NOTFOUND: ArrayNotFoundError,
    SQLITE_TOOBIG: _TooBig,
    SQLITE_CONSTRAINT: ValueError,
    SQLITE_MISMATCH: ValueError,
    SQLITE_RANGE: RowIndexError,
}

# Before Python 3.11 sqlite3.Error has no sqlite_errorcode; its class is
# all the sqlite3 module tells of the code (InternalError is
# SQLITE_NOTFOUND, DataError SQLITE_TOOBIG, IntegrityError SQLITE_CONSTRAINT
# or SQLITE_MISMATCH).  Bad arguments and rows out of range then share
# classes with failures of the store, and are reported as NumPackError.
_BY_CLASS = (
    (sqlite3.InternalError, ArrayNotFoundError),
    (sqlite3.DataError, _TooBig),
    (sqlite3.IntegrityError, ValueError),
)


def error_code(e):
    """The primary SQLite result code of the error E (a sqlite3.Error, or
    the C API's _capi.Error), or None when E does not tell it."""
    code = getattr(e, "sqlite_errorcode", None)
    return None if code is None else code & 0xff


def sql_error(e):
    """The exception a NumPack user expects for the sqlite3 error E."""
    msg = str(e)
    code = error_code(e)
    if code is not None:
        cls = _BY_CODE.get(code)
    else:
        cls = next((c for k, c in _BY_CLASS if isinstance(e, k)), None)
    if cls is None:
        return NumPackError(msg, getattr(e, "sqlite_errorname", None))
    return cls(msg)


# ---- arrays as .npy BLOBs ----------------------------------------------

def check_dtype(dtype, what="array"):
    """Raise ValueError unless the store can hold DTYPE."""
    dt = np.dtype(dtype)
    if dt.fields is not None or dt.subdtype is not None or \
            (dt.kind, dt.itemsize) not in _SUPPORTED:
        raise ValueError(
            f"{what}: dtype {dt} is not supported: the store holds bool, "
            "(u)int8..64, float16/32/64 and complex64/128")
    return dt


def as_array(value, what="array"):
    """VALUE as a C-contiguous ndarray of a dtype the store holds."""
    arr = np.asarray(value)
    if arr.dtype == object:
        raise ValueError(f"{what}: object arrays cannot be stored "
                         "(all elements must be numbers of one dtype)")
    check_dtype(arr.dtype, what)
    if arr.ndim == 0:
        raise ValueError(f"{what}: a 0-d array has no rows; reshape it to "
                         "(1,)")
    return np.ascontiguousarray(arr)


def plain(value):
    """Whether VALUE is an ndarray of a dtype the store holds, which the
    extension can be given as it is: it then takes exactly what the
    conversions of cast() would have left unchanged."""
    if type(value) is not np.ndarray:
        return False
    dt = value.dtype
    return (dt.kind, dt.itemsize) in _SUPPORTED and dt.fields is None


def little_endian(dtype):
    """Whether DTYPE's bytes are little-endian (or single bytes)."""
    order = dtype.byteorder
    return order in "<|" or (order == "=" and sys.byteorder == "little")


_DTYPE_NAMES = {}


def dtype_name(dtype):
    """DTYPE's name, as the raw forms take it: NumPy builds the name anew on
    each ``dtype.name`` (about 1.6 us), which a call of 100 rows notices."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = dtype.name
    return name


def json_shape(shape):
    """SHAPE as the JSON list the raw forms take."""
    return "[" + ",".join(map(str, shape)) + "]"


def cast(value, dtype, what="values"):
    """VALUE converted to DTYPE, the dtype of the array it goes into.

    NumPy's "same_kind" rule decides (float64 into float32 is fine, float
    into an integer array is not); Python ints (not NumPy arrays) may also
    go into any integer dtype whose range holds them."""
    dtype = np.dtype(dtype)
    a = np.asarray(value)
    if a.dtype == object:
        raise ValueError(f"{what}: object arrays cannot be stored "
                         "(all elements must be numbers of one dtype)")
    if a.dtype == dtype:
        return a
    if np.can_cast(a.dtype, dtype, "same_kind"):
        return a.astype(dtype)
    if not isinstance(value, np.ndarray) and a.dtype.kind in "iub" and \
            dtype.kind in "iu":
        lim = np.iinfo(dtype)
        if a.size == 0 or (a.min() >= lim.min and a.max() <= lim.max):
            return a.astype(dtype)
    raise WrongTypeError(f"{what}: cannot store {a.dtype} values in an "
                         f"array of dtype {dtype} (NumPy's same_kind casting "
                         "rule)")


# NumPy's .npy header is a Python dict literal, which np.lib.format parses
# with the tokenizer and ast.literal_eval: over 100 us, several times what
# the extension takes to fetch 100 rows.  The extension (and np.save) always
# write it in one fixed layout, which a regular expression reads in a
# microsecond or two; anything else goes to NumPy's parser.
_NPY_MAGIC = b"\x93NUMPY"
_HEADER_RE = re.compile(
    rb"\{'descr': '([<>|=][a-zA-Z][0-9]{1,2})', 'fortran_order': "
    rb"(True|False), 'shape': \(((?:[0-9]{1,19}(?:, [0-9]{1,19})*,?)?)\), "
    rb"\} *\n")
# Headers read lately: their bytes -> what _parse_header_bytes made of them.
_HEADERS = {}
# dtypes of the descrs seen, and the descr of each dtype written.
_DESCR_DTYPES = {}
_DTYPE_DESCRS = {}
# NumPy pads the header so that shape[0] can grow to this many digits in
# place, then to a multiple of this alignment.
_GROWTH_DIGITS = 21
_ALIGN = 64


def _descr_dtype(descr):
    dt = _DESCR_DTYPES.get(descr)
    if dt is None:
        dt = np.dtype(descr.decode("ascii"))
        if dt.fields is not None or dt.subdtype is not None:
            raise ValueError(descr)
        if len(_DESCR_DTYPES) < 256:
            _DESCR_DTYPES[descr] = dt
    return dt


def _parse_header(prefix):
    """(shape, fortran, dtype, data offset) of the .npy bytes starting with
    PREFIX (at least the whole header, or all there is)."""
    if type(prefix) is bytes and len(prefix) >= 10 and prefix[6] == 1:
        # Repeated calls return the same header (same rows, same array):
        # the last ones read are kept, by their exact bytes.
        end = 10 + (prefix[8] | (prefix[9] << 8))
        key = prefix[:end]
        hit = _HEADERS.get(key)
        if hit is None:
            hit = _parse_header_bytes(key)
            if len(_HEADERS) >= 64:
                _HEADERS.clear()
            _HEADERS[key] = hit
        return hit
    return _parse_header_bytes(prefix)


def _parse_header_bytes(prefix):
    if type(prefix) is not bytes:
        mv = memoryview(prefix).cast("B")
        head = bytes(mv[:12])
        n = 10 + int.from_bytes(head[8:10], "little") if head[6:7] == b"\x01" \
            else 12 + int.from_bytes(head[8:12], "little")
        prefix = bytes(mv[:n])
    if prefix[:6] != _NPY_MAGIC or len(prefix) < 10:
        raise ValueError("no .npy magic")
    if prefix[6] == 1:
        end = 10 + (prefix[8] | (prefix[9] << 8))
        m = _HEADER_RE.fullmatch(prefix, 10, end)
    else:
        end = 12 + int.from_bytes(prefix[8:12], "little")
        m = _HEADER_RE.fullmatch(prefix, 12, end)
    if m is not None and end <= len(prefix):
        descr, fortran, dims = m.groups()
        dtype = _DESCR_DTYPES.get(descr)
        if dtype is None:
            try:
                dtype = _descr_dtype(descr)
            except (TypeError, ValueError):
                m = None
        if m is not None:
            shape = tuple(map(int, dims.rstrip(b",").split(b", "))) \
                if dims else ()
            return shape, fortran == b"True", dtype, end
    # Any other layout NumPy accepts.
    f = io.BytesIO(prefix[:end])
    shape, fortran, dtype = _header(f)
    return shape, fortran, dtype, f.tell()


def _header_bytes(arr):
    """The .npy header np.save writes for the C-contiguous array ARR,
    byte for byte."""
    dt = arr.dtype
    descr = _DTYPE_DESCRS.get(dt)
    if descr is None:
        descr = np.lib.format.dtype_to_descr(dt)
        if len(_DTYPE_DESCRS) < 256:
            _DTYPE_DESCRS[dt] = descr
    shape = arr.shape
    text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (
        descr, shape)
    if shape:
        text += " " * (_GROWTH_DIGITS - len(repr(shape[0])))
    n = len(text) + 1
    pad = _ALIGN - (10 + n) % _ALIGN
    if n + pad <= 0xffff:
        head = _NPY_MAGIC + b"\x01\x00" + (n + pad).to_bytes(2, "little")
    else:
        pad = _ALIGN - (12 + n) % _ALIGN
        head = _NPY_MAGIC + b"\x02\x00" + (n + pad).to_bytes(4, "little")
    return head + (text + " " * pad + "\n").encode("latin1")


def encode(arr):
    """The .npy bytes of the C-contiguous array ARR, built with one copy."""
    out = bytearray(_header_bytes(arr))
    if arr.nbytes:
        out += arr.reshape(-1).view(np.uint8).data
    return out


def _header(f):
    """(shape, fortran, dtype) of the .npy header at file F's position."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _nbytes(shape, dtype):
    count = 1
    for d in shape:
        count *= d
    return count * dtype.itemsize


def decode_at(address, n, keeper=None):
    """The array of the N .npy bytes at ADDRESS (memory SQLite holds): a
    writable ndarray.  With KEEPER, an object that keeps the memory alive
    for as long as it lives, the array uses the memory where it is;
    otherwise it is a fresh array, filled with one copy."""
    head = ctypes.string_at(address, min(n, 256))
    if len(head) < 12 or head[:6] != _NPY_MAGIC or \
            head[6:7] not in (b"\x01", b"\x02", b"\x03"):
        raise NumPackError("numpack_load returned no .npy header")
    hlen = (10 + int.from_bytes(head[8:10], "little") if head[6] == 1
            else 12 + int.from_bytes(head[8:12], "little"))
    if hlen > len(head):
        head = ctypes.string_at(address, min(n, hlen))
    try:
        shape, fortran, dtype, off = _parse_header(head)
    except ValueError as e:
        raise NumPackError("numpack_load returned a bad .npy header: %s"
                           % e) from None
    order = "F" if fortran else "C"
    nbytes = _nbytes(shape, np.dtype(dtype))
    if off != hlen or n - hlen != nbytes:
        raise NumPackError("numpack_load returned %d bytes for an array of "
                           "%d" % (n - hlen, nbytes))
    if keeper is not None and nbytes:
        buf = (ctypes.c_char * nbytes).from_address(address + hlen)
        buf._keeper = keeper
        return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)
    arr = np.empty(shape, dtype=dtype, order=order)
    if nbytes:
        ctypes.memmove(arr.ctypes.data, address + hlen, nbytes)
    return arr


def decode(blob):
    """The array of the .npy bytes BLOB: a fresh, writable ndarray."""
    shape, fortran, dtype, off = _parse_header(blob)
    count = 1
    for d in shape:
        count *= d
    arr = np.frombuffer(blob, dtype=dtype, count=count, offset=off)
    return arr.reshape(shape, order="F" if fortran else "C").copy()


# ---- index arguments -----------------------------------------------------

# NumPack's own words, which callers match on; the detail follows them.
# Its drop() names the types it takes in words of its own.
BAD_INDEX = "The indexes must be int or list or numpy.ndarray or slice"
BAD_DROP_INDEX = ("The indexes must be int, list, tuple, numpy.ndarray "
                  "or slice")


def _as_int(v, what):
    if isinstance(v, (bool, np.bool_)):
        raise WrongTypeError(f"{what} must be an integer, not {v!r}")
    try:
        return operator.index(v)
    except TypeError:
        raise WrongTypeError(f"{what} must be an integer, not {v!r}") from None


class Index:
    """A Python index translated for the extension.

    ``sql`` is the SQL argument: an int, a JSON array text or a
    "start:stop[:step]" slice text.  ``count(nlive)`` is the number of rows
    it selects from an array of NLIVE live rows, ``scalar`` whether it is a
    single integer (NumPy drops the first dimension then).
    """

    __slots__ = ("sql", "scalar", "_kind", "_value")

    def __init__(self, idx, words=BAD_INDEX):
        if isinstance(idx, (bool, np.bool_)):
            raise WrongTypeError(f"{words} (of int); "
                                 f"got a bool ({idx!r})")
        if isinstance(idx, (int, np.integer)):
            self._set("int", int(idx), int(idx), True)
            return
        if isinstance(idx, slice):
            start, stop, step = (
                None if v is None else _as_int(v, f"slice {what}")
                for v, what in ((idx.start, "start"), (idx.stop, "stop"),
                                (idx.step, "step")))
            if step == 0:
                raise ValueError("slice step cannot be zero")
            s = slice(start, stop, step)
            text = ("" if start is None else str(start)) + ":" + \
                ("" if stop is None else str(stop))
            if step is not None:
                text += f":{step}"
            # A negative step is spelt out as a list once the row count is
            # known (resolve()); the extension takes positive steps only.
            self._set("slice", s, text if (step or 1) > 0 else None, False)
            return
        blob = int_list_blob(idx)
        if blob is not None:
            self._set("list", idx, blob, False)
            return
        if isinstance(idx, (list, tuple, np.ndarray)):
            a = np.asarray(idx)
            if a.ndim == 0 and isinstance(idx, np.ndarray) and \
                    a.dtype.kind in "iu":
                self._set("int", int(a), int(a), True)
                return
            if a.ndim != 1:
                raise WrongTypeError(f"{words} (of int); got an "
                                     f"array of {a.ndim} dimensions")
            if a.size and a.dtype.kind not in "iu":
                raise WrongTypeError(f"{words} (of int); got "
                                     f"elements of dtype {a.dtype}")
            if a.dtype.kind == "u" and a.size and \
                    int(a.max()) > _INT64_MAX:
                raise RowIndexError(f"index {a.max()} is out of range")
            a = a.astype(np.int64, copy=False) if a.size else \
                np.empty(0, np.int64)
            self._set("list", a, _int64_blob(a), False)
            return
        raise WrongTypeError(f"{words} (of int); "
                             f"got {type(idx).__name__}")

    def _set(self, kind, value, sql, scalar):
        self._kind, self._value = kind, value
        self.sql, self.scalar = sql, scalar

    @property
    def needs_count(self):
        """Whether resolve() needs the live row count."""
        return self.sql is None

    def resolve(self, nlive):
        """Fill in sql for an index that depends on the row count."""
        if self._kind == "slice" and self.sql is None:
            rows = np.arange(*self._value.indices(nlive), dtype=np.int64)
            self._set("list", rows, _int64_blob(rows), False)
        return self

    def count(self, nlive):
        if self._kind == "int":
            return 1
        if self._kind == "slice":
            return len(range(*self._value.indices(nlive)))
        return len(self._value)

    def positions(self, nlive):
        """The logical positions selected, as an int64 array (negative
        values counted from the end; range checks are the extension's)."""
        if self._kind == "int":
            v = self._value
            return np.array([v + nlive if v < 0 else v], dtype=np.int64)
        if self._kind == "slice":
            return np.arange(*self._value.indices(nlive), dtype=np.int64)
        v = np.asarray(self._value, dtype=np.int64)
        return np.where(v < 0, v + nlive, v)


_INT64_MAX = (1 << 63) - 1


def int_list_blob(idx):
    """The index argument for IDX as a BLOB of int64 values (the extension
    reads it as the JSON list of the same integers) when IDX is a list or
    tuple of Python ints and nothing else, within int64, else None: packing
    the numbers costs less than spelling them out, and the extension reads
    them without parsing."""
    if type(idx) is tuple:
        idx = list(idx)
    elif type(idx) is not list:
        return None
    if idx and (type(idx[0]) is not int or len({*map(type, idx)}) > 1):
        return None
    try:
        return array.array("q", idx).tobytes()
    except OverflowError:
        return None


def _int64_blob(a):
    """The index argument listing the int64 values of A, as a BLOB."""
    return a.astype("<i8", copy=False).tobytes()


def arg_size(v):
    """Bytes the index argument V takes in a statement's value."""
    return len(v) if isinstance(v, (bytes, str)) else len(str(v))


def positions_sql(pos):
    """The index argument selecting logical positions POS (int64 array):
    a slice text when they are one ascending run, else their BLOB."""
    n = len(pos)
    if n and int(pos[-1]) - int(pos[0]) == n - 1 and \
            (n == 1 or bool(np.all(np.diff(pos) == 1))):
        return f"{int(pos[0])}:{int(pos[-1]) + 1}"
    return _int64_blob(pos)
