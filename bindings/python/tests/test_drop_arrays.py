"""drop(name) of whole arrays, as NumPack 0.7 does it: every row is marked
deleted and the array stays (listed, 0 rows, same dtype and row shape)
until update() reclaims its space; names of no array are ignored.  The SQL
function numpack_drop(store, name) still removes the array."""
import os

import numpy as np
import pytest

from numpack_sqlite import NumPack


class Boom(Exception):
    pass


def catalog(sql, path):
    """numpack_arrays' (rows, live_rows, deleted_rows) per array."""
    return {r[0]: r[1:] for r in sql.execute(
        "SELECT name, rows, live_rows, deleted_rows FROM numpack_arrays(?)",
        (str(path),))}


def assert_dropped(npk, name, dtype, row_shape):
    assert name in npk.get_member_list()
    assert npk.has_array(name)
    assert npk.get_shape(name) == (0,) + row_shape
    got = npk.load(name)
    assert got.dtype == dtype and got.shape == (0,) + row_shape
    lazy = npk.load(name, lazy=True)
    assert lazy.shape == (0,) + row_shape and len(lazy) == 0
    assert lazy.to_numpy().dtype == dtype
    assert list(npk.stream_load(name, buffer_size=2)) == []
    assert npk.getitem(name, []).shape == (0,) + row_shape


def test_drop_marks_every_row_deleted(path, npk, sql):
    npk.save({"m": np.arange(24, dtype=np.float32).reshape(4, 2, 3),
              "k": np.arange(5, dtype=np.int16)})
    npk.drop("m")
    assert npk.get_member_list() == ["m", "k"]
    assert_dropped(npk, "m", np.float32, (2, 3))
    assert np.array_equal(npk.load("k"), np.arange(5, dtype=np.int16))
    # The rows are only marked deleted, as NumPack leaves reclaiming them
    # to compaction; another connection sees the same.
    assert catalog(sql, path)["m"] == (4, 0, 4)
    with NumPack(path) as other:
        assert_dropped(other, "m", np.float32, (2, 3))


def test_drop_again_and_empty_arrays(npk):
    npk.save({"e": np.zeros((0, 3), np.uint8), "a": np.ones(3)})
    npk.drop("e")
    npk.drop(["a", "a"])
    npk.drop("a")
    assert_dropped(npk, "e", np.uint8, (3,))
    assert_dropped(npk, "a", np.float64, ())


def test_save_and_append_over_a_dropped_array(npk):
    npk.save({"a": np.arange(6.0).reshape(3, 2)})
    npk.drop("a")
    npk.append({"a": np.full((1, 2), 7.0)})
    assert npk.load("a").tolist() == [[7.0, 7.0]]
    npk.drop("a")
    npk.save({"a": np.arange(3, dtype=np.int8)})      # any dtype and shape
    assert npk.get_shape("a") == (3,)
    assert npk.load("a").tolist() == [0, 1, 2]
    assert npk.load("a", lazy=True).to_numpy().tolist() == [0, 1, 2]


def test_update_reclaims_the_space(path, npk, sql):
    npk.save({"a": np.arange(1000.0).reshape(250, 4)})
    meta = npk.get_metadata()
    data = os.path.join(meta["base_dir"], meta["arrays"]["a"]["data_file"])
    assert os.path.getsize(data) == 8000
    npk.drop("a")
    assert os.path.getsize(data) == 8000                # still there
    npk.update("a")
    assert catalog(sql, path)["a"] == (0, 0, 0)
    assert os.path.getsize(data) == 0
    assert_dropped(npk, "a", np.float64, (4,))


def test_missing_names_are_ignored(path, npk, sql):
    npk.save({"a": np.arange(3), "b": np.arange(4)})
    before = catalog(sql, path)
    stamp = npk.get_modify_time("a")
    npk.drop("nope")
    npk.drop(["nope", "other"])
    npk.drop([])
    assert catalog(sql, path) == before
    assert npk.get_modify_time("a") == stamp
    assert not npk.has_array("nope")
    npk.drop(["nope", "b", "other"])                    # the others go
    assert catalog(sql, path) == {"a": (3, 3, 0), "b": (4, 0, 4)}
    assert npk.get_member_list() == ["a", "b"]
    # Row drops still refuse a missing array.
    with pytest.raises(KeyError, match="nope"):
        npk.drop("nope", [0])


def test_drop_in_batch_mode(path, npk, sql):
    npk.save({"a": np.arange(4.0), "b": np.arange(3)})
    with npk.batch_mode():
        arr = npk.load("a")
        arr += 1
        npk.save({"a": arr, "new": np.ones((2, 2), np.float32)})
        npk.drop(["a", "new", "nope"])
        assert npk.get_member_list() == ["a", "b", "new"]
        assert npk.has_array("new")
        assert npk.get_shape("a") == (0,)
        assert npk.get_shape("new") == (0, 2)
        assert npk.load("new").shape == (0, 2)
        assert npk.load("new").dtype == np.float32
        npk.save({"b": npk.load("b") * 2})
    assert catalog(sql, path) == {"a": (4, 0, 4), "b": (3, 3, 0),
                                  "new": (2, 0, 2)}
    assert_dropped(npk, "new", np.float32, (2,))
    assert npk.load("b").tolist() == [0, 2, 4]


def test_drop_in_batch_mode_then_save_over_it(npk):
    npk.save({"a": np.arange(4.0)})
    with npk.batch_mode():
        npk.drop("a")
        assert npk.load("a").size == 0
        npk.save({"a": np.arange(2.0)})
        assert npk.get_shape("a") == (2,)
    assert npk.load("a").tolist() == [0.0, 1.0]


def test_failed_batch_keeps_the_rows(path, npk, sql):
    npk.save({"a": np.arange(4.0)})
    with pytest.raises(Boom):
        with npk.batch_mode():
            npk.drop("a")
            assert npk.get_shape("a") == (0,)
            raise Boom()
    assert catalog(sql, path)["a"] == (4, 4, 0)
    assert npk.load("a").tolist() == [0.0, 1.0, 2.0, 3.0]


def test_writable_batch_mode_sees_a_dropped_array(npk):
    npk.save({"a": np.arange(4.0), "b": np.arange(3.0)})
    npk.drop("a")
    with npk.writable_batch_mode() as wb:
        assert wb.load("a").shape == (0,)
        npk.drop("b")
        assert wb.load("b").shape == (0,)
    assert_dropped(npk, "a", np.float64, ())
    assert_dropped(npk, "b", np.float64, ())


def test_sql_drop_still_removes_the_array(path, npk, sql):
    npk.save({"a": np.arange(3), "b": np.arange(3)})
    npk.drop("a")
    sql.execute("SELECT numpack_drop(?, 'b')", (str(path),))
    assert npk.get_member_list() == ["a"]
    assert not npk.has_array("b")
    with pytest.raises(KeyError, match='"b"'):
        npk.load("b")
