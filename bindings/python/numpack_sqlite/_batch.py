"""batch_mode() and writable_batch_mode(): one transaction on the store for
the whole ``with`` block (see README.md, "Batch modes")."""
import numpy as np



class _BatchBase:
    """What the NumPack methods need to know of an active batch."""
    caching = False
    memory_limit = None
    failed = False

    def _finish(self, exc):
        raise NotImplementedError


def _enter(npk, batch):
    """Begin BATCH, or make it join the active batch of its own kind (as
    NumPack lets a batch block run inside another); True if it joined."""
    npk._check()
    outer = npk._batch
    if outer is not None:
        if outer is batch or batch._outer is not None:
            raise RuntimeError("this batch block is already active")
        if type(outer) is not type(batch):
            raise RuntimeError(
                "a batch mode of the other kind is already active on this "
                "NumPack instance; only blocks of the same kind nest")
        batch._outer = outer
        return True
    npk._batch = batch
    npk._cache, npk._dirty = {}, {}
    try:
        # Begin now, so that the whole block sees one store no other
        # connection writes to.
        npk._join()
    except BaseException:
        npk._batch = None
        raise
    return False


def _leave(npk, commit):
    """End the batch's transaction."""
    try:
        npk._end(commit)
    finally:
        npk._batch = None
        npk._cache, npk._dirty = {}, {}


class _Block(_BatchBase):
    """The ``with`` protocol both batch modes share: begin on entry, and
    on exit commit (or, after an exception, roll back) through _finish."""

    _outer = None   # the active block this nested one joined

    def __enter__(self):
        with self.npk._lock:
            _enter(self.npk, self)
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        with self.npk._lock:
            outer = self._outer
            if outer is not None:
                # A nested block only ends its part of the outer block's
                # transaction, which the outermost block commits.  One
                # transaction cannot keep what came before the error and
                # drop the rest, so an error leaving it fails them all.
                self._outer = None
                if exc_type is not None and self.npk._batch is outer:
                    outer.failed = True
            elif self.npk._batch is self:
                self._finish(exc_type)
        return False


class BatchModeContext(_Block):
    """NumPack.batch_mode(memory_limit): load() and save() work on an
    in-memory cache (load returns the cached array itself, save only marks
    it to be written); at the end of the block the saved arrays are written
    and everything the block did is committed as one transaction.  If the
    block raises, nothing of it is written.

    memory_limit (MB, soft): when the cached arrays exceed it, the saved
    ones are written into the open transaction and the cache is emptied.
    """

    caching = True

    def __init__(self, numpack_instance, memory_limit=None):
        self.npk = numpack_instance
        if memory_limit is not None and (
                isinstance(memory_limit, bool) or
                not isinstance(memory_limit, (int, float)) or
                memory_limit <= 0):
            raise ValueError("memory_limit must be a positive number of MB "
                             "or None")
        self.memory_limit = memory_limit
        self.failed = False

    def _finish(self, exc_type):
        npk = self.npk
        commit = exc_type is None and not self.failed
        try:
            if commit:
                npk._sync()
        except BaseException:
            _leave(npk, False)
            raise
        _leave(npk, commit)


class WritableBatchMode(_Block):
    """NumPack.writable_batch_mode(): load(name) returns an ndarray to
    change in place.  An array without deleted rows is a copy-on-write
    mapping of its data file (pages are copied only when written); one with
    deleted rows is an in-memory copy of its live rows.  At the end of the
    block the rows that differ (byte for byte) from the store are written
    with numpack_replace, and the transaction that has been open since the
    block began is committed: atomic and durable.  If the block raises,
    nothing is written.  Shapes cannot change in this mode.
    """

    def __init__(self, numpack_instance):
        self.npk = numpack_instance
        self.failed = False
        self._arrays = {}   # name -> (ndarray, mapped?)

    def load(self, array_name):
        """The array to modify in place (the same object on every call)."""
        if self._outer is not None:
            return self._outer.load(array_name)
        npk = self.npk
        with npk._lock:
            if npk._batch is not self:
                raise RuntimeError("this writable batch mode is not active")
            if array_name in self._arrays:
                return self._arrays[array_name][0]
            info = npk._need(array_name)
            arr = None
            if not info["deleted_rows"] and not npk._wrote:
                arr = self._map(array_name, info)
            mapped = arr is not None
            if arr is None:
                arr = npk._load(array_name)
            self._arrays[array_name] = (arr, mapped)
            return arr

    def _map(self, name, info):
        """A copy-on-write mapping of NAME's data file (the one file the
        extension names, its size checked), or None."""
        npk = self.npk
        if info["rows"] == 0 or info["row_bytes"] == 0:
            return None
        files = npk._q("SELECT file, offset, rows FROM numpack_files(?, ?)",
                       (npk._path, name))
        if len(files) != 1 or files[0][2] != info["rows"]:
            return None
        path, offset, rows = files[0]
        shape = (rows,) + info["row_shape"]
        dtype = info["dtype"].newbyteorder("<")
        return np.memmap(path, dtype=dtype, mode="c", offset=offset,
                         shape=shape)

    def save(self, arrays):
        """Copy ARRAYS into the loaded arrays (a no-op for the arrays load()
        returned, which are already changed in place)."""
        if not isinstance(arrays, dict):
            raise ValueError("arrays must be a dictionary")
        for name, value in arrays.items():
            arr = self.load(name)
            if value is arr:
                continue
            value = np.asarray(value)
            if value.shape != arr.shape:
                raise ValueError(
                    f'array "{name}": writable batch mode cannot change the '
                    f"shape {arr.shape} to {value.shape}")
            arr[...] = value

    def _finish(self, exc_type):
        npk = self.npk
        commit = exc_type is None and not self.failed
        try:
            if commit:
                # Find every change first: the comparison reads the files,
                # which must not have been written in this transaction yet.
                todo = [self._changes(name, arr, mapped)
                        for name, (arr, mapped) in self._arrays.items()]
                for args in todo:
                    if args is not None:
                        npk._replace_positions(*args)
        except BaseException:
            self._arrays.clear()
            _leave(npk, False)
            raise
        self._arrays.clear()
        _leave(npk, commit)

    def _changes(self, name, arr, mapped):
        """(name, logical positions, rows, row bytes) of the rows of ARR
        that differ from the store, or None."""
        npk = self.npk
        info = npk._need(name)
        if (info["live_rows"],) + info["row_shape"] != arr.shape:
            raise RuntimeError(
                f'array "{name}" changed shape during writable batch mode '
                f"({arr.shape} loaded, now {info['live_rows']} rows)")
        n, rb = arr.shape[0], info["row_bytes"]
        if n == 0 or rb == 0:
            return None
        if mapped and not npk._wrote:
            # Nothing has been written in the transaction: the store's rows
            # are the file's, which no other connection can change while
            # the transaction is open.
            orig = self._map(name, info)
        else:
            orig = npk._load(name)
        mine = np.ascontiguousarray(arr).view(np.uint8).reshape(n, rb)
        theirs = np.ascontiguousarray(orig).view(np.uint8).reshape(n, rb)
        step = max(1, (64 << 20) // rb)
        changed = [np.flatnonzero((mine[k:k + step] !=
                                   theirs[k:k + step]).any(axis=1)) + k
                   for k in range(0, n, step)]
        pos = np.concatenate(changed).astype(np.int64)
        del orig, theirs
        if not len(pos):
            return None
        values = np.ascontiguousarray(np.asarray(arr)[pos]) \
            if len(pos) < n else np.ascontiguousarray(np.asarray(arr))
        return name, pos, values, rb
