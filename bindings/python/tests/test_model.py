"""A randomized model test: random sequences of save / append / replace /
drop (rows and arrays) / update / clone / reset and the batch modes, applied
to the binding and to plain NumPy arrays (the model), compared after every
step: member list, shapes, and every array bit for bit, through load(),
and now and then through getitem(), load(lazy=True) and stream_load().

Indexes are logical, as NumPack's are: after rows are dropped, index i is
the i-th live row, which is what np.delete leaves in the model.
"""
import numpy as np
import pytest

from numpack_sqlite import NumPack

DTYPES = [np.float32, np.float64, np.int64, np.uint8, np.int16, np.bool_,
          np.float16, np.complex64, np.uint64]
ROW_SHAPES = [(), (3,), (2, 2)]
NAMES = ["a", "b", "c", "d"]
STEPS = 200


class Undo(Exception):
    """Raised inside a batch block to make it fail."""


def rows(rng, n, dtype, rshape):
    shape = (n,) + tuple(rshape)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if dt.kind in "iu":
        lim = np.iinfo(dt)
        return rng.integers(max(lim.min, -1000), min(lim.max, 1000), shape,
                            endpoint=True).astype(dt)
    if dt.kind == "c":
        return (rng.standard_normal(shape) +
                1j * rng.standard_normal(shape)).astype(dt)
    return rng.standard_normal(shape).astype(dt)


def index(rng, n, unique=False, bad=False):
    """A random index object of every kind NumPack takes, for N live rows;
    out of range when BAD."""
    if bad:
        k = int(rng.integers(n, n + 5)) * (1 if rng.random() < 0.5 else -1)
        k = k if k >= 0 else k - 1
        return [0, k] if (n and rng.random() < 0.5) else k
    kind = int(rng.integers(0, 6))
    if kind == 0 and n:
        i = int(rng.integers(-n, n))
        return np.int64(i) if rng.random() < 0.3 else i
    if kind in (1, 2) and n:
        k = int(rng.integers(0, min(n, 6) + 1))
        pick = rng.choice(n, size=k, replace=not unique)
        pick = np.where(rng.random(k) < 0.3, pick - n, pick)
        return pick if kind == 2 else pick.tolist()
    if kind == 3 and n:
        start = None if rng.random() < 0.3 else int(rng.integers(-n - 2, n + 2))
        stop = None if rng.random() < 0.3 else int(rng.integers(-n - 2, n + 2))
        step = None if rng.random() < 0.4 else int(rng.choice([1, 2, 3, -1,
                                                               -2]))
        return slice(start, stop, step)
    if kind == 4:
        return []
    return slice(None) if n else []


def positions(n, idx):
    return np.atleast_1d(np.arange(n)[idx])


def same(got, want):
    got = np.asarray(got)
    return got.dtype == want.dtype and got.shape == want.shape and \
        got.tobytes() == want.tobytes()


class Run:
    def __init__(self, rng, path):
        self.rng = rng
        self.path = path
        self.npk = NumPack(path, drop_if_exists=True)
        self.npk.open()
        self.model = {}
        self.log = []

    def rand_array(self):
        r = self.rng
        dt = DTYPES[int(r.integers(len(DTYPES)))]
        rs = ROW_SHAPES[int(r.integers(len(ROW_SHAPES)))]
        return rows(r, int(r.integers(0, 13)), dt, rs)

    def some(self):
        return list(self.model)[int(self.rng.integers(len(self.model)))]

    # ---- operations --------------------------------------------------------

    def op_save(self):
        k = 1 if self.rng.random() < 0.7 else 2
        names = self.rng.choice(NAMES, size=k, replace=False).tolist()
        arrays = {n: self.rand_array() for n in names}
        self.npk.save(arrays)
        self.model.update({n: a.copy() for n, a in arrays.items()})

    def op_append(self):
        name = self.some()
        m = self.model[name]
        if self.rng.random() < 0.1:
            bad = rows(self.rng, 2, m.dtype, m.shape[1:] + (2,))
            with pytest.raises(ValueError):
                self.npk.append({name: bad})
            return
        new = rows(self.rng, int(self.rng.integers(0, 7)), m.dtype,
                   m.shape[1:])
        self.npk.append({name: new})
        self.model[name] = np.concatenate([m, new])

    def op_replace(self):
        name = self.some()
        m = self.model[name]
        n = len(m)
        if self.rng.random() < 0.1:
            with pytest.raises(IndexError):
                self.npk.replace({name: rows(self.rng, 1, m.dtype,
                                             m.shape[1:])[0]},
                                 index(self.rng, n, bad=True) if n else 0)
            return
        idx = index(self.rng, n, unique=True)
        k = len(positions(n, idx))
        scalar = isinstance(idx, (int, np.integer))
        values = rows(self.rng, 1 if scalar else k, m.dtype, m.shape[1:])
        if scalar:
            values = values[0]
        elif k > 1 and self.rng.random() < 0.2:
            values = values[0]          # one row, broadcast as NumPy does
        self.npk.replace({name: values}, idx)
        m[idx] = values

    def op_drop_rows(self):
        name = self.some()
        m = self.model[name]
        n = len(m)
        if self.rng.random() < 0.1:
            with pytest.raises(IndexError):
                self.npk.drop(name, index(self.rng, n, bad=True))
            return
        idx = index(self.rng, n)
        self.npk.drop(name, idx)
        self.model[name] = np.delete(m, positions(n, idx), axis=0)

    def op_drop_arrays(self):
        names = list(self.rng.choice(list(self.model),
                                     size=min(len(self.model),
                                              int(self.rng.integers(1, 3))),
                                     replace=False))
        if self.rng.random() < 0.3:
            names.append("missing")     # ignored, as NumPack ignores it
        self.npk.drop(names[0] if len(names) == 1 else names)
        for n in names:
            if n in self.model:         # NumPack keeps it with 0 rows
                self.model[n] = self.model[n][:0]

    def op_update(self):
        self.npk.update(self.some())

    def op_clone(self):
        src = self.some()
        dst = NAMES[int(self.rng.integers(len(NAMES)))] + \
            ("" if self.rng.random() < 0.5 else "_copy")
        if dst in self.model:
            with pytest.raises(ValueError):
                self.npk.clone(src, dst)
            return
        self.npk.clone(src, dst)
        self.model[dst] = self.model[src].copy()

    def op_reset(self):
        self.npk.reset()
        self.model.clear()

    def op_batch(self):
        name = self.some()
        fail = self.rng.random() < 0.2
        saved = {k: v.copy() for k, v in self.model.items()}
        try:
            with self.npk.batch_mode():
                for _ in range(int(self.rng.integers(1, 4))):
                    arr = self.npk.load(name)
                    fresh = rows(self.rng, len(arr), arr.dtype, arr.shape[1:])
                    arr[...] = fresh
                    self.npk.save({name: arr})
                    self.model[name] = arr.copy()
                if self.rng.random() < 0.5:
                    m = self.model[name]
                    new = rows(self.rng, 2, m.dtype, m.shape[1:])
                    self.npk.append({name: new})
                    self.model[name] = np.concatenate([m, new])
                if fail:
                    raise Undo()
        except Undo:
            self.model = saved

    def op_writable(self):
        name = self.some()
        fail = self.rng.random() < 0.2
        try:
            with self.npk.writable_batch_mode() as wb:
                arr = wb.load(name)
                n = len(arr)
                if n:
                    pick = self.rng.choice(n, size=min(n, 3), replace=False)
                    arr[pick] = rows(self.rng, len(pick), arr.dtype,
                                     arr.shape[1:])
                if fail:
                    raise Undo()
                self.model[name] = np.array(arr)
        except Undo:
            pass

    def op_reopen(self):
        self.npk.close()
        self.npk = NumPack(self.path)
        self.npk.open()

    # ---- reads that must agree with the model -----------------------------

    def op_read(self):
        name = self.some()
        m = self.model[name]
        n = len(m)
        idx = index(self.rng, n)
        assert same(self.npk.getitem(name, idx), m[idx]), (name, idx)
        lazy = self.npk.load(name, lazy=True)
        assert lazy.shape == m.shape and len(lazy) == n
        assert same(lazy.to_numpy(), m)
        assert same(np.asarray(lazy[idx]), np.asarray(m[idx])), (name, idx)
        size = int(self.rng.integers(1, 5))
        parts = list(self.npk.stream_load(name, buffer_size=size))
        assert all(len(p) == size for p in parts[:-1])
        got = np.concatenate(parts) if parts else m[:0]
        assert same(got, m)

    def check(self):
        npk = self.npk
        assert sorted(npk.get_member_list()) == sorted(self.model)
        for name, m in self.model.items():
            assert npk.get_shape(name) == m.shape, name
            assert same(npk.load(name), m), name

    OPS = [("save", 14), ("append", 12), ("replace", 14), ("drop_rows", 12),
           ("drop_arrays", 4), ("update", 5), ("clone", 5), ("reset", 1),
           ("batch", 5), ("writable", 6), ("reopen", 2), ("read", 12)]

    def step(self):
        names = [o for o, _ in self.OPS]
        w = np.array([w for _, w in self.OPS], float)
        while True:
            op = names[int(self.rng.choice(len(names), p=w / w.sum()))]
            if self.model or op == "save":
                break
        self.log.append(op)
        getattr(self, "op_" + op)()


@pytest.mark.parametrize("seed", [11, 12, 13, 14, 15])
def test_model(tmp_path, seed):
    run = Run(np.random.default_rng(seed), tmp_path / f"model{seed}.npk")
    try:
        for i in range(STEPS):
            run.step()
            run.check()
    except BaseException as e:
        raise AssertionError(f"seed {seed}, step {len(run.log)}: "
                             f"{run.log[-8:]}") from e
    finally:
        run.npk.close()
    # Every kind of operation took place.
    assert {o for o, _ in Run.OPS} <= set(run.log) | {"reset"}
