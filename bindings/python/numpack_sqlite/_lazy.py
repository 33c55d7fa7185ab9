"""LazyArray: load(name, lazy=True), an array whose rows are read on demand
from read-only memory mappings of the array's data files.

Where the rows are comes from the extension, in one statement that reads
one committed state: numpack_files(store, name) gives the data files in
row order (absolute paths, offsets and row counts, checked by the engine
against the store and the catalog) and each file's live rows as a bitmap.
The binding maps those files; it reads no manifest or deletion bitmap of
the store itself.
"""
import json
import mmap
import operator

import numpy as np

from ._sql import NumPackError

# Files replaced between the statement and their mapping (a compaction or
# a save by another connection) send the binding back to the statement;
# a store that keeps changing that fast is reported after this many tries.
_ATTEMPTS = 3

_LAYOUT = ("SELECT file, offset, first_row, rows, live, dtype, shape "
           "FROM numpack_files(?, ?)")


def _le(dtype):
    """DTYPE in the store's byte order (little-endian)."""
    return np.dtype(dtype).newbyteorder("<")


def _map(path, offset, dtype, rows, row_shape):
    """A read-only mapping of ROWS rows of PATH from byte OFFSET, or None
    if the file no longer holds them (it changed since it was described)."""
    shape = (rows,) + tuple(row_shape)
    if rows * int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize == 0:
        return np.empty(shape, dtype)
    try:
        return np.memmap(path, dtype=dtype, mode="r", offset=offset,
                         shape=shape)
    except (FileNotFoundError, ValueError):   # gone, or now too short
        return None


def _live(files):
    """Physical indexes of the live rows (int64) of the numpack_files rows
    FILES, or None when every row is live.  A file's bitmap has bit i%8 of
    byte i/8 set when its row i is live; rows past its end are deleted."""
    if all(f[4] is None for f in files):
        return None
    parts = []
    for _, _, first, rows, live, *_ in files:
        if live is None:
            parts.append(np.arange(first, first + rows, dtype=np.int64))
        else:
            bits = np.unpackbits(np.frombuffer(live, np.uint8),
                                 bitorder="little")[:rows]
            parts.append(first + np.flatnonzero(bits).astype(np.int64))
    return np.concatenate(parts)


def open_lazy(npk, name):
    """The LazyArray of NAME in the open NumPack NPK."""
    args = (npk._path, name)
    for _ in range(_ATTEMPTS):
        layout = npk._q(_LAYOUT, args)
        dtype = _le(layout[0][5])
        shape = tuple(json.loads(layout[0][6]))
        rows, row_shape = shape[0], shape[1:]
        files = [f for f in layout if f[0] is not None]
        maps = [_map(f[0], f[1], dtype, f[3], row_shape) for f in files]
        if not files:       # a manifest listing no segment: no rows
            maps = [np.empty((0,) + row_shape, dtype)]
        # What was mapped is what was described: no file was replaced in
        # between (the layout would have changed with it).
        if any(m is None for m in maps) or npk._q(_LAYOUT, args) != layout:
            continue
        return LazyArray(name, dtype, row_shape, maps, _live(files), rows)
    raise NumPackError(f'array "{name}" kept changing (or its files do not '
                       "match the catalog) while it was being mapped")


def _row_number(key, n):
    """KEY as a row number in [0, N) when it is an integer, else None; a
    bool or an integer out of range is an IndexError, as NumPy's."""
    if isinstance(key, (bool, np.bool_)):
        raise IndexError("a bool is not a row index")
    if not isinstance(key, (int, np.integer)):
        return None
    i = operator.index(key)
    if i < -n or i >= n:
        raise IndexError(f"index {i} is out of range for {n} rows")
    return i % n


class LazyArray:
    """The live rows of one array, read on demand from a read-only memory
    mapping of its data file.  Indexes are logical (they count live rows).

    A LazyArray is a snapshot of which rows exist when load() returned:
    later appends, deletions, saves and compactions are not seen (a save or
    a compaction writes a new file; the mapping keeps the old one, which
    stays readable).  Rows replaced in place by a later commit may show
    their new values.  It stays usable after the NumPack is closed.
    """

    def __init__(self, name, dtype, row_shape, maps, live, rows):
        self._name = name
        self._dtype = np.dtype(dtype)
        self._row_shape = tuple(row_shape)
        self._maps = maps
        self._starts = np.cumsum([0] + [len(m) for m in maps[:-1]])
        self._live = live
        self._n = rows if live is None else len(live)
        self._reads = 0

    # ---- array attributes ------------------------------------------------

    @property
    def shape(self):
        return (self._n,) + self._row_shape

    @property
    def dtype(self):
        return self._dtype

    @property
    def ndim(self):
        return 1 + len(self._row_shape)

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def itemsize(self):
        return self._dtype.itemsize

    @property
    def nbytes(self):
        return self.size * self.itemsize

    def __len__(self):
        return self._n

    def __repr__(self):
        return (f"LazyArray(name={self._name!r}, shape={self.shape}, "
                f"dtype={self._dtype})")

    # ---- reading -----------------------------------------------------------

    def _gather(self, phys):
        """Rows at physical indexes PHYS (1-D int64): a new ndarray."""
        if len(self._maps) == 1:
            return np.array(self._maps[0][phys])
        out = np.empty((len(phys),) + self._row_shape, self._dtype)
        seg = np.searchsorted(self._starts, phys, side="right") - 1
        for s in np.unique(seg):
            m = seg == s
            out[m] = self._maps[s][phys[m] - self._starts[s]]
        return out

    def _rows(self, pos):
        """Rows at logical positions POS (int64 array of any shape, already
        checked): a new ndarray of shape POS.shape + row shape."""
        flat = pos.reshape(-1)
        phys = flat if self._live is None else self._live[flat]
        return self._gather(phys).reshape(pos.shape + self._row_shape)

    def _positions(self, key):
        """Logical positions selected by an integer array or bool mask."""
        a = np.asarray(key)
        if a.dtype == bool:
            if a.shape != (self._n,):
                raise IndexError(f"boolean index of shape {a.shape} does not "
                                 f"match {self._n} rows")
            return np.flatnonzero(a).astype(np.int64)
        if a.size == 0:
            return np.zeros(a.shape, np.int64)
        if a.dtype.kind not in "iu":
            raise IndexError("arrays used as indices must be of integer "
                             f"(or boolean) type, not {a.dtype}")
        a = a.astype(np.int64)
        a = np.where(a < 0, a + self._n, a)
        if a.min() < 0 or a.max() >= self._n:
            raise IndexError(f"index out of range for {self._n} rows")
        return a

    def _first(self, key):
        """Apply KEY to the first axis; (result, whether the axis is gone)."""
        i = _row_number(key, self._n)
        if i is not None:
            p = i if self._live is None else int(self._live[i])
            if len(self._maps) == 1:
                return np.array(self._maps[0][p]), True
            return self._gather(np.array([p], np.int64))[0], True
        if isinstance(key, slice):
            if self._live is None and len(self._maps) == 1:
                return np.array(self._maps[0][key]), False
            pos = np.arange(*key.indices(self._n), dtype=np.int64)
            return self._rows(pos), False
        return self._rows(self._positions(key)), False

    def __getitem__(self, key):
        self._reads += 1
        if isinstance(key, tuple):
            if any(k is Ellipsis or k is None for k in key):
                return self.to_numpy()[key]
            if not key:
                return self.to_numpy()
            rows, dropped = self._first(key[0])
            rest = key[1:]
            if not rest:
                return rows
            return rows[rest] if dropped else rows[(slice(None),) + rest]
        if key is Ellipsis:
            return self.to_numpy()
        rows, dropped = self._first(key)
        if dropped and rows.ndim == 0:
            return rows[()]  # a NumPy scalar, as a 1-D ndarray gives
        return rows

    def __iter__(self):
        step = max(1, (1 << 20) // max(1, self.itemsize *
                                        int(np.prod(self._row_shape))))
        for start in range(0, self._n, step):
            chunk = self[start:start + step]
            for row in chunk:
                yield row

    def to_numpy(self):
        """All live rows as an ndarray."""
        return self[:]

    def __array__(self, dtype=None, *args, **kwargs):
        a = self.to_numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    # ---- shape changes -------------------------------------------------------

    def reshape(self, *shape):
        """A LazyArray view of the same elements (C order) in SHAPE (a
        tuple, a list or ints; one -1 is inferred), as NumPack's reshape
        returns; nothing is read.  This array is left unchanged."""
        if not shape:
            raise TypeError("reshape() needs a shape")
        if len(shape) == 1:
            shape = shape[0]
        # NumPy's own rules and errors, on an array of zero-byte elements
        # (no memory whatever the shape).
        new = np.empty(self.shape, np.dtype([])).reshape(shape).shape
        return _Reshaped(getattr(self, "_base", self), new)

    def transpose(self, *axes):
        """The live rows read into an ndarray, transposed as NumPy does."""
        return self.to_numpy().transpose(*axes)

    @property
    def T(self):
        return self.to_numpy().T

    # ---- NumPack's row access methods ---------------------------------------
    #
    # NumPack's LazyArray offers these next to indexing (its tests call
    # them); here each is the indexing it names.

    def vectorized_gather(self, indices):
        """Rows at logical INDICES (a list or integer array): a new
        ndarray, as lazy[indices]."""
        return self[np.asarray(list(indices) if not isinstance(
            indices, np.ndarray) else indices, dtype=np.int64)]

    def parallel_boolean_index(self, mask):
        """The rows where MASK (a list or array of bools, one per row) is
        true; ValueError when its length is not the number of rows."""
        m = np.asarray(mask, dtype=bool)
        if m.shape != (len(self),):
            raise ValueError(f"Mask length doesn't match array length "
                             f"({m.size} for {len(self)} rows)")
        return self[m]

    boolean_index_production = parallel_boolean_index
    boolean_index_adaptive_algorithm = parallel_boolean_index

    def choose_optimal_algorithm(self, mask):
        """NumPack names the strategy it would take for MASK by the share
        of rows selected; the same names, for code that logs them."""
        m = np.asarray(mask, dtype=bool)
        share = m.mean() if m.size else 0.0
        if share < 0.01:
            return "ZeroCopy"
        if share > 0.9:
            return "Vectorized"
        return "Parallel" if share > 0.5 else "Adaptive"

    def mega_batch_get_rows(self, indices, batch_size):
        """The rows at INDICES as a list of row ndarrays, read BATCH_SIZE
        at a time."""
        size = operator.index(batch_size)
        if size < 0:
            raise OverflowError("can't convert negative int to unsigned")
        idx = np.asarray(list(indices), dtype=np.int64)
        step = max(size, 1)
        rows = []
        for k in range(0, len(idx), step):
            rows.extend(self[idx[k:k + step]])
        return rows

    _WARMUP = {"sequential": "MADV_SEQUENTIAL", "random": "MADV_RANDOM",
               "boolean": "MADV_WILLNEED", "heavy": "MADV_WILLNEED"}

    def intelligent_warmup(self, workload_hint):
        """Tell the kernel how the mapping will be read ("sequential",
        "random", "boolean" or "heavy", NumPack's hints; anything else is
        a ValueError).  Advice only: where madvise is missing nothing is
        done."""
        advice = self._WARMUP.get(workload_hint)
        if advice is None:
            raise ValueError(f"Invalid workload hint {workload_hint!r}: "
                             "sequential, random, boolean or heavy")
        flag = getattr(mmap, advice, None)
        for m in getattr(self, "_base", self)._maps:
            mm = getattr(m, "_mmap", None)
            if flag is None or mm is None or not hasattr(mm, "madvise"):
                continue
            try:
                mm.madvise(flag)
            except (OSError, ValueError):
                pass

    def get_performance_stats(self):
        """NumPack's (name, value) list.  The binding keeps no cache of its
        own (the kernel's page cache serves the mapping): every read counts
        as a miss, and the cache sizes are 0."""
        return [("cache_hits", 0.0), ("cache_misses", float(self._reads)),
                ("hit_rate", 0.0), ("cache_blocks", 0.0),
                ("current_cache_size", 0.0), ("max_cache_size", 0.0)]

    # ---- arithmetic, as NumPack's LazyArray ---------------------------------
    #
    # Operators read the live rows and give NumPy's result, a new ndarray
    # (in-place operators too: `lazy += 1` rebinds the name to an ndarray,
    # as in NumPack).  Bitwise operators are refused with NumPack's
    # TypeError on float and complex arrays.

    def _bitwise_ok(self):
        if self._dtype.kind in "fc":
            raise TypeError("Bitwise operations are only supported for "
                            f"integer arrays, not {self._dtype}")

    __hash__ = object.__hash__


def _operator(op, bitwise=False, reflected=False):
    def method(self, other):
        if bitwise:
            self._bitwise_ok()
        a = self.to_numpy()
        return op(other, a) if reflected else op(a, other)
    method.__name__ = op.__name__
    return method


def _unary(op, bitwise=False):
    def method(self):
        if bitwise:
            self._bitwise_ok()
        return op(self.to_numpy())
    method.__name__ = op.__name__
    return method


for _name, _op, _bit in (
        ("add", operator.add, False), ("sub", operator.sub, False),
        ("mul", operator.mul, False), ("truediv", operator.truediv, False),
        ("floordiv", operator.floordiv, False), ("mod", operator.mod, False),
        ("pow", operator.pow, False), ("matmul", operator.matmul, False),
        ("and", operator.and_, True), ("or", operator.or_, True),
        ("xor", operator.xor, True), ("lshift", operator.lshift, True),
        ("rshift", operator.rshift, True)):
    setattr(LazyArray, f"__{_name}__", _operator(_op, _bit))
    setattr(LazyArray, f"__r{_name}__", _operator(_op, _bit, True))
    setattr(LazyArray, f"__i{_name}__", _operator(_op, _bit))
for _name, _op in (("eq", operator.eq), ("ne", operator.ne),
                   ("lt", operator.lt), ("le", operator.le),
                   ("gt", operator.gt), ("ge", operator.ge)):
    setattr(LazyArray, f"__{_name}__", _operator(_op))
for _name, _op, _bit in (("neg", operator.neg, False),
                         ("pos", operator.pos, False),
                         ("abs", operator.abs, False),
                         ("invert", operator.invert, True)):
    setattr(LazyArray, f"__{_name}__", _unary(_op, _bit))
del _name, _op, _bit


class _Reshaped(LazyArray):
    """A reshape of a LazyArray: the base's live rows read as one flat
    sequence of elements (C order) cut into rows of another shape.  A view
    row is read from the base rows its elements fall in, so a slice of
    view rows reads a run of base rows and nothing more."""

    def __init__(self, base, shape):
        self._base = base
        self._name, self._dtype = base._name, base._dtype
        self._shape = tuple(shape)
        self._n = self._shape[0] if self._shape else 1
        self._row_shape = self._shape[1:]
        self._rv = int(np.prod(self._row_shape, dtype=np.int64))
        self._rb = int(np.prod(base._row_shape, dtype=np.int64))
        self._reads = 0

    @property
    def shape(self):
        return self._shape

    @property
    def ndim(self):
        return len(self._shape)

    def __len__(self):
        if not self._shape:
            raise TypeError("len() of unsized object")
        return self._n

    def __repr__(self):
        return (f"LazyArray(name={self._name!r}, shape={self._shape}, "
                f"dtype={self._dtype})")

    def __getitem__(self, key):
        if not self._shape:
            return self._span(0, 1).reshape(())[key]
        return super().__getitem__(key)

    def __iter__(self):
        if not self._shape:
            raise TypeError("iteration over a 0-d array")
        return super().__iter__()

    def to_numpy(self):
        if not self._shape:
            return self._span(0, 1).reshape(())
        return self[:]

    def _span(self, a, b):
        """View rows A..B-1 (a contiguous run): a new ndarray."""
        out = (max(b - a, 0),) + self._row_shape
        if b <= a or self._rv == 0 or self._rb == 0:
            return np.empty(out, self._dtype)
        lo, hi = a * self._rv, b * self._rv
        first, last = lo // self._rb, (hi - 1) // self._rb
        flat = self._base[first:last + 1].reshape(-1)
        off = first * self._rb
        return flat[lo - off:hi - off].reshape(out)

    def _rows(self, pos):
        flat = pos.reshape(-1)
        if len(flat) and (len(flat) == 1 or (np.diff(flat) == 1).all()):
            return self._span(int(flat[0]), int(flat[-1]) + 1) \
                .reshape(pos.shape + self._row_shape)
        if not len(flat) or self._rv == 0:
            return np.empty(pos.shape + self._row_shape, self._dtype)
        elem = flat[:, None] * self._rv + np.arange(self._rv, dtype=np.int64)
        brow, inv = np.unique(elem // self._rb, return_inverse=True)
        rows = self._base._rows(brow).reshape(len(brow), self._rb)
        out = rows[inv.reshape(elem.shape), elem % self._rb]
        return out.reshape(pos.shape + self._row_shape)

    def _first(self, key):
        i = _row_number(key, self._n)
        if i is not None:
            return self._span(i, i + 1)[0], True
        if isinstance(key, slice):
            start, stop, step = key.indices(self._n)
            if step == 1:
                return self._span(start, stop), False
            return self._rows(np.arange(start, stop, step,
                                        dtype=np.int64)), False
        return self._rows(self._positions(key)), False
