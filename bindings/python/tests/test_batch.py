"""batch_mode() and writable_batch_mode()."""
import os

import numpy as np
import pytest

from numpack_sqlite import NumPack


class Boom(Exception):
    pass


def commits(npk):
    return npk.get_io_stats()["commits"]


def other_view(path):
    """What another connection sees of the store."""
    with NumPack(path) as other:
        return {n: other.load(n) for n in other.get_member_list()}


# ---- batch_mode ---------------------------------------------------------------

def test_batch_caches_and_commits_once(path, npk):
    npk.save({"a": np.arange(4.0), "b": np.zeros(2)})
    c0 = commits(npk)
    with npk.batch_mode() as bm:
        assert bm.npk is npk
        first = npk.load("a")
        for _ in range(10):
            arr = npk.load("a")
            assert arr is first                  # the cached array itself
            arr += 1
            npk.save({"a": arr})
        npk.save({"new": np.ones((2, 2))})
        assert npk.has_array("new") and npk.get_shape("new") == (2, 2)
        assert npk.get_member_list() == ["a", "b", "new"]
        assert commits(npk) == c0                # nothing written yet
        assert list(other_view(path)) == ["a", "b"]
        assert np.array_equal(other_view(path)["a"], np.arange(4.0))
    assert commits(npk) == c0 + 1                # one commit for it all
    view = other_view(path)
    assert np.array_equal(view["a"], np.arange(4.0) + 10)
    assert np.array_equal(view["new"], np.ones((2, 2)))


def test_batch_mixes_with_every_method(npk):
    npk.save({"a": np.arange(6.0)})
    with npk.batch_mode():
        arr = npk.load("a")
        arr[0] = 100
        npk.save({"a": arr})
        assert npk.getitem("a", 0) == 100        # written out first
        npk.append({"a": [6.0]})
        assert npk.load("a").tolist() == [100, 1, 2, 3, 4, 5, 6]
        npk.drop("a", [1])
        npk.replace({"a": -1.0}, -1)
        npk.clone("a", "c")
        npk.update("a")
        assert [b.tolist() for b in npk.stream_load("c", 3)] == \
            [[100, 2, 3], [4, 5, -1]]
        assert npk.get_metadata()["arrays"]["a"]["shape"] == [6]
    assert npk.load("a").tolist() == [100, 2, 3, 4, 5, -1]
    assert npk.load("c").tolist() == [100, 2, 3, 4, 5, -1]


def test_batch_exception_writes_nothing(path, npk):
    npk.save({"a": np.arange(3)})
    with pytest.raises(Boom):
        with npk.batch_mode():
            arr = npk.load("a")
            arr *= 5
            npk.save({"a": arr, "n": np.ones(3)})
            npk.append({"a": [9]})
            npk.drop("a", 0)
            npk.get_metadata()                   # flushed into the txn
            raise Boom()
    assert npk.get_member_list() == ["a"]
    assert npk.load("a").tolist() == [0, 1, 2]
    assert list(other_view(path)) == ["a"]


def test_batch_on_an_empty_store(path, npk):
    with npk.batch_mode():
        npk.save({"x": np.arange(3), "y": np.ones(2)})
    assert npk.get_member_list() == ["x", "y"]
    npk.reset()
    with pytest.raises(Boom):
        with npk.batch_mode():
            npk.save({"x": np.arange(3), "y": np.ones(2)})
            npk.get_metadata()   # writes x alone (no array to join), then y
            raise Boom()
    assert npk.get_member_list() == []           # x is dropped again


def test_batch_memory_limit_flushes_into_the_transaction(path, npk):
    npk.save({"a": np.zeros(10)})
    big = np.ones((300, 1024))                   # 2.4 MB
    with npk.batch_mode(memory_limit=1):
        npk.save({"big": big})                   # over the limit: written
        assert npk._cache == {}
        assert list(other_view(path)) == ["a"]   # but not committed
        npk.save({"big2": big[:10]})
        assert "big2" in npk._cache
    assert np.array_equal(npk.load("big"), big)
    assert np.array_equal(npk.load("big2"), big[:10])


def test_close_inside_batch_writes_it(path):
    npk = NumPack(path, drop_if_exists=True)
    npk.open()
    npk.save({"a": np.zeros(2)})
    bm = npk.batch_mode()
    bm.__enter__()
    npk.save({"a": np.ones(2)})
    npk.close()
    bm.__exit__(None, None, None)                # nothing left to do
    assert np.array_equal(other_view(path)["a"], np.ones(2))


def test_batch_drop_and_reset(npk):
    npk.save({"a": np.zeros(2), "b": np.ones(2)})
    with npk.batch_mode():
        npk.save({"c": np.arange(2)})
        npk.drop("c")
        npk.drop(["a"])
        assert npk.get_member_list() == ["a", "b", "c"]
        assert npk.get_shape("a") == (0,) and npk.get_shape("c") == (0,)
    assert npk.get_member_list() == ["a", "b", "c"]
    assert npk.load("a").size == 0 and npk.load("c").size == 0
    with npk.batch_mode():
        npk.save({"d": np.arange(2)})
        npk.reset()
        assert npk.get_member_list() == []
        npk.save({"e": np.arange(2)})
    assert npk.get_member_list() == ["e"]


# ---- writable_batch_mode ----------------------------------------------------

def test_writable_writes_changed_rows_only(path, npk, rng):
    a = rng.random((1000, 8))
    a[5] = np.nan                                # NaN rows are not "changed"
    npk.save({"a": a})
    stats0 = npk.get_io_stats()
    raw = open(os.path.join(npk._path, "data_a.npkd"), "rb").read()
    with npk.writable_batch_mode() as wb:
        arr = wb.load("a")
        assert isinstance(arr, np.memmap) and arr.mode == "c"
        assert wb.load("a") is arr
        arr[[3, 500, 999]] *= 2
        arr[7, 0] = -1
        arr[8] = arr[8]                          # same bytes: not changed
        # The data file is untouched until the end of the block.
        assert open(os.path.join(npk._path, "data_a.npkd"), "rb").read() \
            == raw
        assert np.array_equal(other_view(path)["a"], a, equal_nan=True)
    stats = npk.get_io_stats()
    assert stats["rows_replaced"] - stats0["rows_replaced"] == 4
    assert stats["commits"] - stats0["commits"] == 1
    want = a.copy()
    want[[3, 500, 999]] *= 2
    want[7, 0] = -1
    assert np.array_equal(npk.load("a"), want, equal_nan=True)


def test_writable_with_deleted_rows_and_several_arrays(npk):
    npk.save({"a": np.arange(10), "b": np.zeros((3, 2), np.float32)})
    npk.drop("a", [0, 4])
    with npk.writable_batch_mode() as wb:
        a = wb.load("a")
        assert not isinstance(a, np.memmap)      # live rows, in memory
        assert a.tolist() == [1, 2, 3, 5, 6, 7, 8, 9]
        a[3] = 50                                # logical row 3
        b = wb.load("b")
        b[:, 1] = 7
    assert npk.load("a").tolist() == [1, 2, 3, 50, 6, 7, 8, 9]
    assert npk.load("b").tolist() == [[0, 7]] * 3


def test_writable_exception_writes_nothing(npk):
    npk.save({"a": np.arange(5)})
    stats0 = npk.get_io_stats()
    with pytest.raises(Boom):
        with npk.writable_batch_mode() as wb:
            wb.load("a")[:] = 0
            raise Boom()
    assert npk.load("a").tolist() == [0, 1, 2, 3, 4]
    assert npk.get_io_stats()["rows_replaced"] == stats0["rows_replaced"]


def test_writable_save(npk):
    npk.save({"a": np.arange(4), "b": np.arange(3)})
    with npk.writable_batch_mode() as wb:
        a = wb.load("a")
        a += 1
        wb.save({"a": a})                         # the same object: no-op
        wb.save({"b": [7, 8, 9]})                 # copied into the array
        with pytest.raises(ValueError, match="shape"):
            wb.save({"b": [1, 2]})
        with pytest.raises(ValueError, match="dictionary"):
            wb.save([("b", [1, 2, 3])])
        with pytest.raises(KeyError):
            wb.load("nope")
    assert npk.load("a").tolist() == [1, 2, 3, 4]
    assert npk.load("b").tolist() == [7, 8, 9]


def test_writable_with_other_writes_in_the_block(npk):
    npk.save({"a": np.arange(4), "b": np.arange(2)})
    with npk.writable_batch_mode() as wb:
        npk.append({"b": [5]})                    # part of the same commit
        a = wb.load("a")                          # after a write: a copy
        assert not isinstance(a, np.memmap)
        a[0] = 9
    assert npk.load("a").tolist() == [9, 1, 2, 3]
    assert npk.load("b").tolist() == [0, 1, 5]
    with pytest.raises(RuntimeError, match="changed shape"):
        with npk.writable_batch_mode() as wb:
            wb.load("a")[0] = 1
            npk.append({"a": [1]})
    assert npk.load("a").tolist() == [9, 1, 2, 3]  # all of it undone


def test_writable_load_outside_block(npk):
    npk.save({"a": np.arange(2)})
    wb = npk.writable_batch_mode()
    with pytest.raises(RuntimeError):
        wb.load("a")


# ---- nested blocks ------------------------------------------------------------

def test_nested_batch_joins_the_outer_block(path, npk):
    npk.save({"a": np.arange(4.0)})
    c0 = commits(npk)
    with npk.batch_mode() as outer:
        a = npk.load("a")
        a += 1
        npk.save({"a": a})
        with npk.batch_mode() as inner:
            assert inner is not outer
            assert npk.load("a") is a            # the outer block's cache
            a += 10
            npk.save({"a": a, "b": np.ones(3)})
        # The inner block's end commits nothing: it is part of the outer.
        assert commits(npk) == c0
        assert list(other_view(path)) == ["a"]
        assert np.array_equal(other_view(path)["a"], np.arange(4.0))
        assert npk.load("a") is a                # still batching
        with npk.batch_mode():
            with npk.batch_mode():               # any depth
                npk.save({"c": np.zeros(2)})
        npk.save({"d": np.full(2, 7.0)})
    assert commits(npk) == c0 + 1
    view = other_view(path)
    assert sorted(view) == ["a", "b", "c", "d"]
    assert np.array_equal(view["a"], np.arange(4.0) + 11)
    assert np.array_equal(view["b"], np.ones(3))
    assert np.array_equal(view["d"], np.full(2, 7.0))


def test_error_out_of_nested_batch_writes_nothing(path, npk):
    npk.save({"a": np.arange(4.0)})
    with pytest.raises(Boom):
        with npk.batch_mode():
            npk.save({"b": np.ones(2)})
            with npk.batch_mode():
                npk.save({"c": np.ones(2)})
                raise Boom()
    assert npk.get_member_list() == ["a"]
    assert list(other_view(path)) == ["a"]


def test_error_caught_inside_the_outer_batch_fails_it(path, npk):
    npk.save({"a": np.arange(4.0)})
    with npk.batch_mode():
        npk.save({"b": np.ones(2)})
        try:
            with npk.batch_mode():
                npk.save({"c": np.ones(2)})
                raise Boom()
        except Boom:
            pass
        with pytest.raises(Exception, match="rolled back"):
            npk.append({"a": np.zeros(1)})
    assert npk.get_member_list() == ["a"]
    assert list(other_view(path)) == ["a"]
    with npk.batch_mode():                       # the next block works
        npk.save({"e": np.ones(1)})
    assert sorted(other_view(path)) == ["a", "e"]


def test_nested_writable_batch_joins_the_outer_block(path, npk):
    npk.save({"a": np.arange(4.0)})
    c0 = commits(npk)
    with npk.writable_batch_mode() as outer:
        a = outer.load("a")
        a[0] = 100
        with npk.writable_batch_mode() as inner:
            assert inner.load("a") is a          # the outer block's array
            a[1] = 200
            inner.save({"a": a})
        assert commits(npk) == c0
        assert np.array_equal(other_view(path)["a"], np.arange(4.0))
        a[2] = 300
    assert commits(npk) == c0 + 1
    assert np.array_equal(other_view(path)["a"], [100.0, 200.0, 300.0, 3.0])
