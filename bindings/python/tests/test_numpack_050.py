"""NumPack 0.5.0's observable behaviour, checked on the binding.

Read from BirchKwok/NumPack at commit 3e642ff1 (``__version__ = "0.5.0"``,
the newest NumPack Python layer readable here): ``python/numpack/__init__.py``
and its test suite ``python/numpack/tests/test_drop_scenarios.py``.  The
scenarios of that suite are written anew here against the binding; where
NumPack 0.7 (as the binding follows it) differs from 0.5.0, the test says so
and checks 0.7's behaviour.
"""
import numpy as np
import pytest

import numpack_sqlite
from numpack_sqlite import NumPack

DTYPES = [np.bool_, np.uint8, np.int16, np.int32, np.int64, np.uint64,
          np.float16, np.float32, np.float64, np.complex64, np.complex128]


def sample(dtype, shape, seed=7):
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 100, size=shape).astype(dtype)
    if np.issubdtype(dtype, np.complexfloating):
        return (rng.random(shape) + 1j * rng.random(shape)).astype(dtype)
    return rng.random(shape).astype(dtype)


# ---- drop of rows -------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ix", [5, [0, 5, 9], np.array([2, 7]), (2, 5, 8)],
                         ids=["int", "list", "ndarray", "tuple"])
def test_drop_rows_every_index_form(npk, dtype, ix):
    data = sample(dtype, (10, 4))
    npk.save({"d": data})
    npk.drop("d", ix)
    want = np.delete(data, ix if not isinstance(ix, tuple) else list(ix),
                     axis=0)
    assert npk.get_shape("d") == want.shape
    got = npk.load("d")
    assert got.dtype == dtype and np.array_equal(got, want)


def test_drop_duplicates_counted_once_and_empty_list_drops_nothing(npk):
    data = np.arange(100, dtype=np.float32).reshape(10, 10)
    npk.save({"d": data})
    npk.drop("d", [])
    assert npk.get_shape("d") == (10, 10)
    npk.drop("d", [0, 0, 1, 1, 2])
    assert npk.get_shape("d") == (7, 10)
    assert np.array_equal(npk.load("d"), data[3:])


def test_consecutive_drops_use_logical_indexes(npk):
    data = np.arange(1000, dtype=np.float32).reshape(100, 10)
    npk.save({"d": data})
    want = data
    for ix in ([0, 1, 2], [5, 10], [20, 30, 40]):
        npk.drop("d", ix)
        want = np.delete(want, ix, axis=0)
        assert npk.get_shape("d") == want.shape
    assert np.array_equal(npk.load("d"), want)


def test_drop_then_append_replace_update(npk):
    data = np.arange(1000, dtype=np.float32).reshape(100, 10)
    npk.save({"d": data})
    npk.drop("d", list(range(80, 100)))
    npk.append({"d": np.full((30, 10), 999, np.float32)})
    assert npk.get_shape("d") == (110, 10)
    npk.replace({"d": np.full((1, 10), 888, np.float32)}, 1)
    got = npk.load("d")
    assert np.all(got[1] == 888) and np.all(got[80:] == 999)
    assert np.array_equal(got[2:80], data[2:80])
    npk.update("d")
    assert npk.get_shape("d") == (110, 10)
    assert np.array_equal(npk.load("d"), got)


def test_drop_in_batch_mode_and_after(npk):
    data = np.arange(500, dtype=np.float32).reshape(50, 10)
    npk.save({"d": data})
    with npk.batch_mode():
        npk.drop("d", [5, 10, 15])
        assert npk.get_shape("d") == (47, 10)
        assert np.array_equal(npk.load("d"),
                              np.delete(data, [5, 10, 15], axis=0))
    assert npk.load("d").shape == (47, 10)


def test_drop_persists_across_reopen_3d(path):
    data = np.random.default_rng(1).random((50, 4, 3)).astype(np.float32)
    with NumPack(path, drop_if_exists=True) as npk:
        npk.save({"d": data})
        npk.drop("d", [5, 10, 15])
    with NumPack(path) as npk:
        assert npk.get_shape("d") == (47, 4, 3)
        assert np.array_equal(npk.load("d"),
                              np.delete(data, [5, 10, 15], axis=0))


def test_getitem_and_lazy_follow_the_live_rows(npk):
    data = np.random.default_rng(2).random((1000, 10)).astype(np.float32)
    npk.save({"d": data})
    npk.drop("d", [10, 20, 30, 40, 50])
    eager = npk.load("d")
    lazy = npk.load("d", lazy=True)
    assert eager.shape == lazy.shape == (995, 10)
    for i in (0, 5, 100, 500, 900):
        assert np.array_equal(lazy[i], eager[i])
        assert np.array_equal(npk.getitem("d", i), eager[i])


def test_dropping_every_row_by_index_keeps_the_array(npk):
    # NumPack 0.5.0 removed an array whose rows were all dropped; 0.7
    # marks rows deleted and keeps the array, as a whole-array drop does.
    npk.save({"d": np.arange(20, dtype=np.int32).reshape(10, 2)})
    npk.drop("d", list(range(10)))
    assert npk.get_member_list() == ["d"] and npk.has_array("d")
    assert npk.get_shape("d") == (0, 2)


def test_drop_of_a_missing_array_is_silent(npk):
    npk.save({"a": np.zeros((3, 2))})
    npk.drop("nonexistent")
    npk.drop(["nonexistent", "a"])
    assert npk.get_member_list() == ["a"] and npk.get_shape("a") == (0, 2)


@pytest.mark.parametrize("bad", [2.5, "x", {1: 2}, [1.5]])
def test_drop_bad_index_type_uses_numpacks_drop_text(npk, bad):
    npk.save({"a": np.arange(10)})
    with pytest.raises(ValueError, match=r"^The indexes must be int, list, "
                       r"tuple, numpy\.ndarray or slice"):
        npk.drop("a", bad)
    assert npk.get_shape("a") == (10,)


def test_other_methods_keep_their_own_index_text(npk):
    npk.save({"a": np.arange(10)})
    for call in (lambda: npk.getitem("a", "x"),
                 lambda: npk.replace({"a": np.zeros(1)}, 2.5)):
        with pytest.raises(ValueError, match=r"^The indexes must be int or "
                           r"list or numpy\.ndarray or slice"):
            call()


# ---- the instance -------------------------------------------------------

def test_repr_as_numpack_050(path):
    npk = NumPack(path, drop_if_exists=True)
    assert repr(npk) == f"NumPack({path}, status=closed)"
    with npk:
        npk.save({"a": np.zeros(2), "b": np.zeros(3)})
        assert repr(npk) == f"NumPack({path}, arrays=2)"
    assert repr(npk) == f"NumPack({path}, status=closed)"


def test_io_stats_of_a_closed_instance_as_numpack_050(path):
    npk = NumPack(path)
    assert npk.get_io_stats() == {"stats_available": False}
    with npk:
        assert npk.get_io_stats()["stats_available"] is True
    assert npk.get_io_stats() == {"stats_available": False}


def test_open_is_idempotent_and_drops_only_the_first_time(path):
    with NumPack(path) as npk:
        npk.save({"old": np.zeros(2)})
    npk = NumPack(path, drop_if_exists=True)
    npk.open()
    assert npk.get_member_list() == []
    npk.save({"a": np.ones(2)})
    npk.open()                                  # already open: nothing
    npk.close()
    npk.open()                                  # reopened: nothing dropped
    assert npk.get_member_list() == ["a"]
    npk.close()


def test_clone_errors(npk):
    npk.save({"a": np.zeros(2), "b": np.ones(2)})
    with pytest.raises(KeyError):
        npk.clone("missing", "c")
    with pytest.raises(ValueError):
        npk.clone("a", "b")
    npk.clone("a", "c")
    assert np.array_equal(npk.load("c"), np.zeros(2))


def test_context_is_checked_before_arguments(path):
    npk = NumPack(path)
    # NumPack checks the instance first: a closed one refuses with
    # RuntimeError even when an argument is bad too.
    for call in (lambda: npk.stream_load("a", 0),
                 lambda: npk.save([1]),
                 lambda: npk.replace({"a": 1}, "x"),
                 lambda: npk.drop("a", 2.5),
                 lambda: npk.has_array("a")):
        with pytest.raises(RuntimeError, match="not opened"):
            call()


def test_append_and_replace_errors(npk):
    npk.save({"a": np.zeros((10, 4), np.float32)})
    with pytest.raises(ValueError):
        npk.append({"a": np.zeros((3, 5), np.float32)})
    with pytest.raises(Exception):
        npk.replace({"a": np.ones((5, 4), np.float32)}, slice(20, 25))
    assert npk.get_shape("a") == (10, 4)
    assert not npk.load("a").any()


def test_force_cleanup_windows_handles_returns_true():
    assert numpack_sqlite.force_cleanup_windows_handles() is True


# ---- a missing array ----------------------------------------------------

def _missing_calls(npk):
    return {
        "load": lambda: npk.load("zz"),
        "load lazy": lambda: npk.load("zz", lazy=True),
        "getitem": lambda: npk.getitem("zz", [0]),
        "get_shape": lambda: npk.get_shape("zz"),
        "replace": lambda: npk.replace({"zz": np.zeros((1, 2))}, 0),
        "append": lambda: npk.append({"zz": np.zeros((1, 2))}),
        "drop rows": lambda: npk.drop("zz", [0]),
        "update": lambda: npk.update("zz"),
        "clone": lambda: npk.clone("zz", "y"),
        "stream_load": lambda: npk.stream_load("zz", 2),
    }


@pytest.mark.parametrize("call", list(_missing_calls(None)))
def test_a_missing_array_reads_the_same_everywhere(npk, path, call):
    # KeyError, as NumPack raises for a name it does not hold; one text,
    # the extension's, whichever method found the name missing.
    npk.save({"a": np.zeros((3, 2))})
    want = f'numpack: no array "zz" in store {path}'
    with pytest.raises(KeyError) as e:
        _missing_calls(npk)[call]()
    assert e.value.args == (want,)
    with npk.writable_batch_mode() as wb:
        with pytest.raises(KeyError) as e:
            wb.load("zz")
        assert e.value.args == (want,)
    assert npk.get_member_list() == ["a"]


def test_dask_names_a_missing_array_the_same_way(path):
    dask_binding = pytest.importorskip("numpack_sqlite.dask")
    with NumPack(path, drop_if_exists=True) as npk:
        npk.save({"a": np.zeros((3, 2))})
    with pytest.raises(KeyError) as e:
        dask_binding.from_store(path, "zz")
    assert e.value.args == (f'numpack: no array "zz" in store {path}',)


def test_state_errors_in_numpacks_words(path):
    npk = NumPack(path)
    with pytest.raises(RuntimeError) as e:
        npk.load("a")
    assert str(e.value) == (
        f"NumPack instance '{path}' is not opened or has been closed. "
        "Please call open() method first, or use 'with' statement for "
        "automatic management.")
    strict = NumPack(path, strict_context_mode=True)
    strict.open()
    try:
        with pytest.raises(RuntimeError) as e:
            strict.get_member_list()
        assert str(e.value) == (
            f"NumPack instance '{path}' is in strict context mode. All "
            "operations must be executed within a 'with' statement:\n"
            "  with NumPack(...) as npk:\n"
            "      npk.save(...)\n"
            "      npk.load(...)")
    finally:
        strict.close()


def test_no_context_warning_in_numpacks_words(path):
    with pytest.warns(UserWarning) as record:
        NumPack(path, warn_no_context=True)
    assert len(record) == 1
    assert str(record[0].message) == (
        f"NumPack instance created for '{path}' is not using strict context "
        "mode. For best reliability on Windows, please use 'with "
        "NumPack(...) as npk:' pattern or set strict_context_mode=True. This "
        "warning can be suppressed by setting warn_no_context=False.")
    assert record[0].filename == __file__       # stacklevel: the caller


# ---- batch modes (NumPack's test_batch_modes.py, test_writable_batch_mode.py)

def test_batch_mode_load_gives_the_cached_object(npk):
    npk.save({"m": np.random.default_rng(3).random((100, 100))})
    with npk.batch_mode():
        assert npk.load("m") is npk.load("m")


def test_batch_mode_keeps_saved_changes_across_append_and_drop(npk):
    # NumPack 0.5.0's append() and drop() inside batch_mode() forget the
    # array's cached, saved changes; the binding writes them first.
    npk.save({"s": np.array([[1.0, 2.0, 3.0]])})
    with npk.batch_mode():
        arr = npk.load("s")
        arr *= 2
        npk.save({"s": arr})
        npk.append({"s": np.array([[10.0, 11.0, 12.0]])})
        assert np.array_equal(npk.load("s"), [[2, 4, 6], [10, 11, 12]])
        npk.drop("s", indexes=[1])
        assert npk.load("s").shape == (1, 3)
    assert np.array_equal(npk.load("s"), [[2.0, 4.0, 6.0]])


def test_batch_mode_empty_and_3d_arrays(npk):
    cube = np.random.default_rng(4).random((10, 20, 30))
    npk.save({"empty": np.zeros((0, 3)), "cube": cube})
    with npk.batch_mode():
        e = npk.load("empty")
        assert e.shape == (0, 3)
        npk.save({"empty": e})
        c = npk.load("cube")
        c *= 2
        npk.save({"cube": c})
    assert npk.get_shape("empty") == (0, 3)
    assert np.allclose(npk.load("cube"), cube * 2)


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.uint64, np.int8,
                                   np.int64, np.float16, np.float32,
                                   np.float64])
def test_writable_batch_mode_views_every_dtype(npk, dtype):
    data = sample(dtype, (50, 6))
    npk.save({"d": data})
    with npk.writable_batch_mode() as wb:
        arr = wb.load("d")
        assert arr.dtype == dtype and not arr.flags["OWNDATA"]
        assert wb.load("d") is arr
        if dtype == np.bool_:
            arr[:] = ~arr
        else:
            arr[10:20] += 1
            arr[:, 0] = 7
    want = data.copy()
    if dtype == np.bool_:
        want = ~want
    else:
        want[10:20] += 1
        want[:, 0] = 7
    got = npk.load("d")
    assert got.dtype == dtype and np.array_equal(got, want)


def test_writable_batch_mode_of_an_empty_array(npk):
    # NumPack 0.5.0 cannot map an empty file (ValueError "cannot mmap an
    # empty file"); the binding gives the empty array.
    npk.save({"empty": np.zeros((0, 3))})
    with npk.writable_batch_mode() as wb:
        arr = wb.load("empty")
        assert arr.shape == (0, 3) and arr.dtype == np.float64
    assert npk.get_shape("empty") == (0, 3)
