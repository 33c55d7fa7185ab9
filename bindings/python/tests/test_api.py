"""The rest of the API: opening and closing, indexes, atomic multi-array
writes, values over SQLite's BLOB limit, threads."""
import gc
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from numpack_sqlite import NumPack, BACKEND_TYPE


# ---- opening and closing -------------------------------------------------------

def test_open_close_idempotent(path):
    npk = NumPack(path)
    assert npk.is_closed and not npk.is_opened
    assert not path.exists()                      # not opened automatically
    npk.open()
    npk.open()
    assert npk.is_opened and not npk.is_closed and path.is_dir()
    npk.save({"a": np.arange(3)})
    npk.close()
    npk.close()
    assert npk.is_closed
    npk.open()                                    # reopen
    assert npk.load("a").tolist() == [0, 1, 2]
    npk.close(force_gc=True)


def test_drop_if_exists_on_first_open_only(path):
    with NumPack(path) as npk:
        npk.save({"old": np.zeros(1)})
    npk = NumPack(path, drop_if_exists=True)
    with npk:
        assert npk.get_member_list() == []
        npk.save({"new": np.zeros(1)})
    with npk:                                     # second open keeps it
        assert npk.get_member_list() == ["new"]


def test_creates_missing_parents_and_takes_paths(tmp_path, monkeypatch):
    deep = tmp_path / "x" / "y" / "s.npk"
    with NumPack(deep) as npk:
        npk.save({"a": np.zeros(2)})
    assert (deep / "metadata.npkm").exists()
    monkeypatch.chdir(tmp_path)
    npk = NumPack("rel.npk")
    npk.open()
    monkeypatch.chdir(deep)                       # the path was fixed at open
    npk.save({"a": np.zeros(2)})
    npk.close()
    assert (tmp_path / "rel.npk" / "data_a.npkd").exists()
    assert repr(npk) == "NumPack(rel.npk, status=closed)"


def test_force_gc_on_close(path, monkeypatch):
    calls = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append(1))
    NumPack(path, force_gc_on_close=True).open()
    n = NumPack(path, force_gc_on_close=True)
    n.open()
    n.close()
    assert calls == [1]
    n.open()
    n.close(force_gc=False)
    assert calls == [1]
    m = NumPack(path)
    m.open()
    m.close(force_gc=True)
    assert calls == [1, 1]


def test_del_closes(path):
    npk = NumPack(path)
    npk.open()
    con = npk._con
    del npk
    gc.collect()
    with pytest.raises(sqlite3.ProgrammingError):
        con.execute("SELECT 1")


def test_properties_and_special_methods(npk):
    assert npk.backend_type == BACKEND_TYPE == "sqlite-c"
    npk.save({"a": np.arange(2), "b": np.zeros((2, 2))})
    assert np.array_equal(npk["b"], np.zeros((2, 2)))
    assert list(npk) == ["a", "b"]
    assert repr(npk).endswith(", arrays=2)")


def test_io_stats(path):
    npk = NumPack(path)
    assert npk.get_io_stats() == {"stats_available": False}
    with npk:
        before = npk.get_io_stats()
        npk.save({"a": np.zeros(1000)})
        after = npk.get_io_stats()
    assert after["backend_type"] == "sqlite-c" and after["stats_available"]
    assert after["bytes_written"] - before["bytes_written"] >= 8000
    assert after["commits"] == before["commits"] + 1
    assert after["fsyncs"] > before["fsyncs"]


def test_modify_time_and_metadata(npk):
    npk.save({"a": np.zeros(3, np.int8)})
    t0 = npk.get_modify_time("a")
    assert isinstance(t0, int) and t0 > 10 ** 15     # microseconds
    npk.drop("a", 0)
    assert npk.get_modify_time("a") > t0
    meta = npk.get_metadata()
    assert set(meta) == {"arrays", "base_dir", "total_arrays"}
    assert meta["base_dir"] == npk._path and meta["total_arrays"] == 1
    assert meta["arrays"]["a"] == {
        "shape": [3], "data_file": "data_a.npkd",
        "last_modified": npk.get_modify_time("a"), "size_bytes": 3,
        "dtype": "int8"}


# ---- indexes ---------------------------------------------------------------

def test_getitem_shapes(npk):
    m = np.arange(24.0).reshape(6, 4)
    npk.save({"m": m, "v": np.arange(5)})
    assert npk.getitem("m", 2).shape == (4,)
    assert npk.getitem("m", [2]).shape == (1, 4)
    assert npk.getitem("m", []).shape == (0, 4)
    assert npk.getitem("v", 1).shape == () and npk.getitem("v", 1) == 1
    for idx in [slice(None, None, -1), slice(4, 0, -2), slice(-1, None, -3),
                slice(None, 2), slice(1, None, 2), np.array([5, 0, -6]),
                (1, 3)]:
        assert np.array_equal(npk.getitem("m", idx), m[list(idx)]
                              if isinstance(idx, tuple) else m[idx]), idx


def test_negative_step_replace_and_drop(npk):
    v = np.arange(10)
    npk.save({"v": v})
    npk.replace({"v": [90, 70, 50]}, slice(9, 4, -2))
    v[9:4:-2] = [90, 70, 50]
    assert np.array_equal(npk.load("v"), v)
    npk.drop("v", slice(None, None, -3))
    v = np.delete(v, np.arange(10)[::-3])
    assert np.array_equal(npk.load("v"), v)


def test_replace_broadcasts_like_numpy(npk):
    m = np.zeros((5, 3))
    npk.save({"m": m})
    npk.replace({"m": 1.0}, slice(0, 2))
    npk.replace({"m": [7.0, 8.0, 9.0]}, [3, 4])
    npk.replace({"m": [[5.0, 5.0, 5.0]]}, 2)          # one row with its axis
    m[0:2] = 1.0
    m[[3, 4]] = [7.0, 8.0, 9.0]
    m[2] = 5.0
    assert np.array_equal(npk.load("m"), m)


def test_drop_rows_of_several_arrays(npk):
    npk.save({"a": np.arange(5), "b": np.arange(5) * 10})
    npk.drop(["a", "b"], [0, -1])
    assert npk.load("a").tolist() == [1, 2, 3]
    assert npk.load("b").tolist() == [10, 20, 30]
    npk.drop(("a", "b"), slice(None, None, -2))
    assert npk.load("a").tolist() == [2]
    npk.drop(["a", "b"])                 # every row: NumPack keeps them
    assert npk.get_member_list() == ["a", "b"]
    assert npk.get_shape("a") == (0,) and npk.get_shape("b") == (0,)


def test_values_are_cast_like_numpy(npk):
    npk.save({"f": np.zeros(3, np.float32), "i": np.zeros(3, np.int32)})
    npk.replace({"f": np.array([1.5])}, [0])         # float64 -> float32
    npk.append({"f": [2.5], "i": np.array([7], np.int8)})
    assert npk.load("f").dtype == np.float32
    assert npk.load("f").tolist() == [1.5, 0, 0, 2.5]
    assert npk.load("i").tolist() == [0, 0, 0, 7]
    with pytest.raises(ValueError):
        npk.append({"i": [1.5]})                     # float into int


# ---- atomic writes of several arrays -----------------------------------------

def test_save_of_several_arrays_is_atomic(npk):
    npk.save({"keep": np.zeros(2)})
    with pytest.raises(ValueError, match="invalid array name"):
        npk.save({"x": np.ones(3), "y": np.ones(3), "bad/name": np.ones(3)})
    assert npk.get_member_list() == ["keep"]


def test_save_of_several_arrays_on_an_empty_store(npk):
    with pytest.raises(ValueError, match="invalid array name"):
        npk.save({"x": np.ones(3), "bad/name": np.ones(3)})
    assert npk.get_member_list() == []
    npk.save({"x": np.ones(3), "y": np.zeros(2)})
    assert npk.get_member_list() == ["x", "y"]


def test_append_and_replace_of_several_arrays_are_atomic(npk):
    npk.save({"a": np.zeros(2), "b": np.zeros((2, 2))})
    with pytest.raises(ValueError):
        npk.append({"a": np.ones(3), "b": np.ones((1, 3))})
    assert npk.get_shape("a") == (2,)
    npk.save({"c": np.zeros(1)})
    with pytest.raises(IndexError):
        npk.replace({"a": 5.0, "c": 5.0}, 1)       # c has one row only
    assert npk.load("a").tolist() == [0, 0]
    with pytest.raises(KeyError):
        npk.replace({"a": 5.0, "nope": 1.0}, 0)
    assert npk.load("a").tolist() == [0, 0]


# ---- values over SQLite's BLOB limit -----------------------------------------

@pytest.fixture
def small_limit(npk):
    """SQLite's limit on one value lowered to 100 kB: every operation must
    cut its work in pieces."""
    if not hasattr(npk._con, "setlimit"):
        pytest.skip("Connection.setlimit needs Python 3.11")
    npk._con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100_000)
    return npk


def test_big_values_are_cut_in_pieces(small_limit, rng):
    npk = small_limit
    a = rng.random((5000, 8))                      # 320 kB
    npk.save({"a": a})                             # on an empty store
    assert np.array_equal(npk.load("a"), a)
    npk.append({"a": a[:3000]})
    a = np.concatenate([a, a[:3000]])
    assert np.array_equal(npk.load("a"), a)
    idx = rng.permutation(len(a))[:4000]
    assert np.array_equal(npk.getitem("a", idx), a[idx])
    assert np.array_equal(npk.getitem("a", slice(10, 7000)), a[10:7000])
    npk.replace({"a": a[idx] * 2}, idx)
    a[idx] *= 2
    assert np.array_equal(npk.load("a"), a)
    npk.drop("a", list(range(0, 8000, 3)))
    a = np.delete(a, range(0, 8000, 3), axis=0)
    assert np.array_equal(npk.load("a"), a)
    parts = list(npk.stream_load("a", buffer_size=2500))
    assert [len(p) for p in parts] == [2500, 2500, 333]
    assert np.array_equal(np.concatenate(parts), a)
    with npk.writable_batch_mode() as wb:
        w = wb.load("a")
        w[:] = -w
    assert np.array_equal(npk.load("a"), -a)
    npk.save({"a": a, "b": a})                     # replaces, atomically
    assert np.array_equal(npk.load("b"), a)


def test_big_save_failure_leaves_nothing(small_limit):
    npk = small_limit
    big = np.zeros((5000, 8))
    with pytest.raises(ValueError):
        npk.save({"a": big, "bad/name": big})
    assert npk.get_member_list() == []


# ---- threads -------------------------------------------------------------------

def test_one_instance_shared_by_threads(npk):
    errors = []

    def work(i):
        try:
            a = np.full((50, 4), i, np.int32)
            for _ in range(5):
                npk.save({f"t{i}": a})
                npk.append({f"t{i}": a[:1]})
                assert np.array_equal(npk.load(f"t{i}")[:50], a)
        except Exception as e:           # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(npk.get_member_list()) == ["t0", "t1", "t2", "t3"]
    assert all(npk.get_shape(f"t{i}") == (51, 4) for i in range(4))


def test_two_instances_on_one_store(path):
    with NumPack(path, drop_if_exists=True) as a, NumPack(path) as b:
        a.save({"x": np.arange(3)})
        assert b.load("x").tolist() == [0, 1, 2]
        b.drop("x", 0)
        assert a.get_shape("x") == (2,)


def test_module_argument(path, tmp_path, monkeypatch):
    from numpack_sqlite._sql import module_candidates
    so = module_candidates()[0]
    monkeypatch.setenv("NUMPACK_SO", str(tmp_path / "missing.so"))
    with pytest.raises(RuntimeError, match="missing.so"):
        NumPack(path).open()
    with NumPack(path, module=so) as npk:       # the argument wins
        npk.save({"a": np.zeros(1)})
    assert Path(so).exists() or so == "numpack"
    assert os.path.isdir(path)


def test_awkward_paths_and_names(tmp_path):
    """Quotes, commas, parentheses and '=' in the store path and the array
    names reach the extension intact (the transaction's helper table
    quotes them in its CREATE VIRTUAL TABLE)."""
    path = tmp_path / "we'ird, (dir)=x" / "da ta.npk"
    names = ["it's", "a,b", "c=d (e)", "ünï"]
    with NumPack(path, drop_if_exists=True) as npk:
        npk.save({n: np.arange(i + 1) for i, n in enumerate(names)})
        with npk.batch_mode():
            for n in names:
                npk.save({n: npk.load(n) * 2})
        with npk.writable_batch_mode() as wb:
            wb.load("it's")[0] = 9
        assert npk.get_member_list() == names
        assert npk.load("it's").tolist() == [9]
        assert npk.load("ünï", lazy=True)[:].tolist() == [0, 2, 4, 6]


def test_many_small_rows_over_the_limit(small_limit):
    """1-byte rows: the index lists, not the values, are what is big."""
    npk = small_limit
    v = np.arange(200_000) % 251
    npk.save({"v": v.astype(np.uint8)})
    idx = np.arange(0, 200_000, 2)[::-1]
    npk.replace({"v": np.zeros(len(idx), np.uint8)}, idx)
    v[idx] = 0
    assert np.array_equal(npk.getitem("v", idx[::-1]), v[idx[::-1]])
    npk.drop("v", idx)
    assert np.array_equal(npk.load("v"), np.delete(v, idx))


# ---- load through SQLite's C API -------------------------------------------

def test_load_outside_transactions_goes_through_the_c_api(npk, sql, rng):
    """load() outside a transaction reads numpack_load's BLOB in place (one
    copy); it must give exactly what the SQL function gives."""
    from numpack_sqlite import _sql
    arrays = {
        "f": rng.random((300, 3, 2)).astype(np.float32),
        "i": rng.integers(-9, 9, (0, 4)).astype(np.int16),
        "b": rng.integers(0, 2, 17).astype(np.bool_),
        "c": (rng.random((5, 2)) + 1j * rng.random((5, 2))).astype(np.complex64),
    }
    npk.save(arrays)
    npk.drop("f", [0, 7, 299])
    for name in arrays:
        got = npk.load(name)
        want = _sql.decode(sql.execute("SELECT numpack_load(?, ?)",
                                       (npk._path, name)).fetchone()[0])
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()
        assert got.flags.writeable and got.flags.c_contiguous
    assert npk._direct, "the C API path was not taken"
    with pytest.raises(KeyError, match="nosuch"):
        npk.load("nosuch")
    assert np.array_equal(npk.load("i"), arrays["i"])   # usable after an error


def test_loaded_arrays_keep_their_memory(tmp_path):
    """load() hands out numpack_load's result where it lies: the array
    owns a statement of its own, which lives exactly as long as the array
    (and its views), survives close(), and is finalized when they go."""
    import gc
    from numpack_sqlite import NumPack
    a = np.arange(3000, dtype=np.float64).reshape(1000, 3)
    npk = NumPack(str(tmp_path / "keep.npk"), drop_if_exists=True)
    npk.open()
    npk.save({"a": a})
    first = npk.load("a")
    con = npk._direct[0]
    base = con.statements()
    views = [npk.load("a")[10:20] for _ in range(50)]
    assert con.statements() == base + 50
    del views
    gc.collect()
    assert con.statements() == base
    first[0, 0] = -1.0                      # writable, and only this copy
    assert npk.load("a")[0, 0] == 0.0
    npk.close()
    assert np.array_equal(first[1:], a[1:]) and first[0, 0] == -1.0
    del first
    gc.collect()


def test_load_inside_a_transaction_sees_its_changes(npk):
    npk.save({"a": np.arange(4)})
    with npk.writable_batch_mode() as wb:
        npk.append({"a": np.array([9])})
        assert npk.load("a").tolist() == [0, 1, 2, 3, 9]
        wb.load("a")[0] = 5
    assert npk.load("a").tolist() == [5, 1, 2, 3, 9]


def test_decode_at_refuses_a_short_blob():
    import ctypes
    from numpack_sqlite import _sql
    good = bytes(_sql.encode(np.arange(6, dtype=np.int32)))
    buf = ctypes.create_string_buffer(good, len(good))
    addr = ctypes.addressof(buf)
    assert _sql.decode_at(addr, len(good)).tolist() == list(range(6))
    with pytest.raises(_sql.NumPackError, match="returned 20 bytes"):
        _sql.decode_at(addr, len(good) - 4)
    with pytest.raises(_sql.NumPackError, match="no .npy header"):
        _sql.decode_at(addr + 1, 20)


def test_save_outside_transactions_goes_through_the_c_api(npk, sql, rng):
    """save() of one array outside a transaction binds the array's memory
    to numpack_save's raw form; the store must hold exactly what the .npy
    form would have written."""
    from numpack_sqlite import _sql
    arrays = {
        "f": rng.random((40, 3, 2)).astype(np.float32),
        "be": rng.random((7, 2)).astype(">f8"),               # big-endian
        "b": rng.integers(0, 2, 17).astype(np.bool_),
        "h": rng.random(9).astype(np.float16),
        "c": (rng.random((5, 2)) + 1j * rng.random((5, 2))).astype(np.complex128),
        "u": np.array([0, 2**64 - 1], dtype=np.uint64),
        "t": np.asfortranarray(rng.random((4, 3))),            # made C order
        "z": np.zeros((0, 3), np.int8),                        # no bytes
    }
    for name, a in arrays.items():
        npk.save({name: a})
    assert npk._direct, "the C API path was not taken"
    for name, a in arrays.items():
        blob = sql.execute("SELECT numpack_load(?, ?)",
                           (npk._path, name)).fetchone()[0]
        got = _sql.decode(blob)
        assert got.dtype == a.dtype.newbyteorder("<") and got.shape == a.shape
        assert np.array_equal(got, a)
    with pytest.raises(ValueError, match="invalid array name"):
        npk.save({"bad/name": arrays["f"]})
    assert "bad/name" not in npk.get_member_list()


def test_slices_of_any_size(npk):
    # Python takes slice bounds and steps of any size and clamps them to
    # the rows; so does getitem (and drop), as NumPy's indexing does.
    a = np.arange(5)
    npk.save({"a": a})
    for sl in (slice(0, 10**20), slice(-10**20, 2), slice(None, None, 10**20),
               slice(None, None, -10**20), slice(10**20, None, -1),
               slice(10**20, -10**20, -2)):
        assert npk.getitem("a", sl).tolist() == a[sl].tolist(), sl
    npk.drop("a", slice(-10**20, 2))
    assert npk.load("a").tolist() == [2, 3, 4]
