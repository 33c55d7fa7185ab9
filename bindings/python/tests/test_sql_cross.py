"""A store written through the binding reads back through SQL (the SQL
functions and the virtual table), and a store written through SQL reads
back through the binding."""
import io

import numpy as np
import pytest

from numpack_sqlite import NumPack


def npy(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def unnpy(blob):
    return np.load(io.BytesIO(blob))


def test_binding_to_sql_functions(path, sql, rng):
    f = rng.random((50, 4)).astype(np.float32)
    labels = rng.integers(0, 10, 50).astype(np.int16)
    with NumPack(path, drop_if_exists=True) as npk:
        npk.save({"features": f, "labels": labels})
        npk.drop("features", [0, 10, -1])
        npk.replace({"labels": np.int16(-5)}, 3)
        npk.append({"labels": np.array([7, 8], np.int16)})
    store = str(path)
    f_live = np.delete(f, [0, 10, 49], axis=0)
    labels[3] = -5
    labels = np.concatenate([labels, [7, 8]]).astype(np.int16)
    got = unnpy(sql.execute("SELECT numpack_load(?, 'features')",
                            (store,)).fetchone()[0])
    assert got.dtype == np.float32 and np.array_equal(got, f_live)
    got = unnpy(sql.execute("SELECT numpack_load(?, 'labels')",
                            (store,)).fetchone()[0])
    assert np.array_equal(got, labels)
    rows = sql.execute("SELECT name, dtype, shape, rows, live_rows, "
                       "deleted_rows FROM numpack_arrays(?)",
                       (store,)).fetchall()
    assert rows == [("features", "float32", "[50,4]", 50, 47, 3),
                    ("labels", "int16", "[52]", 52, 52, 0)]
    # Logical indexes in SQL too: row 0 is the first live row.
    got = unnpy(sql.execute("SELECT numpack_getitem(?, 'features', 0)",
                            (store,)).fetchone()[0])
    assert np.array_equal(got, f[1])


def test_binding_to_virtual_table(path, sql, rng):
    f = rng.random((20, 3))
    with NumPack(path, drop_if_exists=True) as npk:
        npk.save({"f": f, "v": np.arange(5, dtype=np.uint8)})
        npk.drop("f", [2, 3])
    sql.execute(f"CREATE VIRTUAL TABLE f USING numpack(store='{path}')")
    sql.execute(f"CREATE VIRTUAL TABLE v USING numpack(store='{path}', "
                "readonly=1)")
    rows = sql.execute("SELECT rowid, c0, c1, c2 FROM f").fetchall()
    assert [r[0] for r in rows] == [i for i in range(20) if i not in (2, 3)]
    assert np.array_equal(np.array([r[1:] for r in rows]),
                          np.delete(f, [2, 3], axis=0))
    # OFFSET counts live rows, as the binding's indexes do.
    assert sql.execute("SELECT rowid FROM f LIMIT 1 OFFSET 2").fetchone() \
        == (4,)
    assert sql.execute("SELECT sum(value) FROM v").fetchone() == (10,)


def test_sql_to_binding(path, sql):
    store = str(path)
    sql.execute(f"CREATE VIRTUAL TABLE pts USING numpack(store='{store}', "
                "dtype=float64, shape=(2))")
    sql.executemany("INSERT INTO pts(c0, c1) VALUES (?, ?)",
                    [(i, 10.0 * i) for i in range(10)])
    sql.execute("DELETE FROM pts WHERE rowid IN (1, 5)")
    sql.execute("UPDATE pts SET c1 = -1 WHERE rowid = 6")
    sql.execute("SELECT numpack_save(?, 'ids', ?)",
                (store, npy(np.arange(4, dtype=np.uint32))))
    want = np.array([(i, 10.0 * i) for i in range(10)])
    want[6, 1] = -1
    want = np.delete(want, [1, 5], axis=0)
    with NumPack(path) as npk:
        assert npk.get_member_list() == ["pts", "ids"]
        assert npk.get_shape("pts") == (8, 2)
        assert np.array_equal(npk.load("pts"), want)
        assert np.array_equal(npk.load("pts", lazy=True)[:], want)
        assert np.array_equal(npk.getitem("pts", [1, -1]), want[[1, -1]])
        assert npk.load("ids").dtype == np.uint32
        meta = npk.get_metadata()["arrays"]["pts"]
        assert meta["shape"] == [10, 2]           # physical, as NumPack's
        npk.update("pts")
    rows = sql.execute("SELECT rowid, c0 FROM pts").fetchall()
    assert rows == [(i, want[i, 0]) for i in range(8)]   # renumbered


def test_sql_rollback_is_invisible(path, sql):
    with NumPack(path, drop_if_exists=True) as npk:
        npk.save({"t": np.arange(3.0)})
    sql.execute(f"CREATE VIRTUAL TABLE t USING numpack(store='{path}')")
    sql.execute("BEGIN")
    sql.execute("INSERT INTO t(value) VALUES (99)")
    sql.execute("DELETE FROM t WHERE rowid = 0")
    with NumPack(path) as npk:      # another connection: sees no change
        assert np.array_equal(npk.load("t"), [0.0, 1.0, 2.0])
    sql.execute("ROLLBACK")
    with NumPack(path) as npk:
        assert np.array_equal(npk.load("t"), [0.0, 1.0, 2.0])
    sql.execute("INSERT INTO t(value) VALUES (99)")
    with NumPack(path) as npk:
        assert np.array_equal(npk.load("t"), [0.0, 1.0, 2.0, 99.0])


@pytest.mark.parametrize("dtype", ["bool", "uint8", "uint16", "uint32",
                                   "uint64", "int8", "int16", "int32",
                                   "int64", "float16", "float32", "float64",
                                   "complex64", "complex128"])
def test_every_dtype_both_ways(path, sql, rng, dtype):
    a = (rng.random((6, 2)) * 100).astype(dtype)
    with NumPack(path, drop_if_exists=True) as npk:
        npk.save({"x": a})
    blob = sql.execute("SELECT numpack_load(?, 'x')", (str(path),)).fetchone()[0]
    got = unnpy(blob)
    assert got.dtype == np.dtype(dtype) and got.tobytes() == a.tobytes()
    sql.execute("SELECT numpack_save(?, 'y', ?)", (str(path), npy(a[::-1])))
    with NumPack(path) as npk:
        got = npk.load("y")
        assert got.dtype == np.dtype(dtype)
        assert got.tobytes() == np.ascontiguousarray(a[::-1]).tobytes()
        assert npk.load("y", lazy=True)[1:3].tobytes() == \
            np.ascontiguousarray(a[::-1][1:3]).tobytes()


def test_batch_is_invisible_to_sql_until_the_end(path, sql):
    store = str(path)
    with NumPack(path, drop_if_exists=True) as npk:
        npk.save({"a": np.zeros(4), "b": np.ones(2)})
        with npk.batch_mode():
            npk.save({"a": np.full(4, 7.0), "new": np.arange(3)})
            npk.append({"b": np.array([5.0])})
            npk.drop("b", 0)
            npk.get_metadata()    # writes the cached arrays out, in the
            #                       batch's transaction
            names = [r[0] for r in sql.execute(
                "SELECT name FROM numpack_arrays(?)", (store,))]
            assert names == ["a", "b"]
            got = unnpy(sql.execute("SELECT numpack_load(?, 'a')",
                                    (store,)).fetchone()[0])
            assert np.array_equal(got, np.zeros(4))
        names = [r[0] for r in sql.execute(
            "SELECT name FROM numpack_arrays(?)", (store,))]
        assert names == ["a", "b", "new"]
        got = unnpy(sql.execute("SELECT numpack_load(?, 'b')",
                                (store,)).fetchone()[0])
        assert np.array_equal(got, [1.0, 5.0])


def test_writable_batch_is_invisible_to_sql_until_the_end(path, sql):
    store = str(path)
    with NumPack(path, drop_if_exists=True) as npk:
        npk.save({"a": np.zeros((4, 2))})
        with npk.writable_batch_mode() as wb:
            arr = wb.load("a")
            arr[1] = 3
            got = unnpy(sql.execute("SELECT numpack_load(?, 'a')",
                                    (store,)).fetchone()[0])
            assert not got.any()
        got = unnpy(sql.execute("SELECT numpack_load(?, 'a')",
                                (store,)).fetchone()[0])
        assert np.array_equal(got, [[0, 0], [3, 3], [0, 0], [0, 0]])


def test_sql_writer_waits_for_batch(path, sql):
    """A batch holds the store's write lock: a writer elsewhere waits
    (here: gives up at once with busy_timeout 0)."""
    import sqlite3
    with NumPack(path, drop_if_exists=True) as npk:
        npk.save({"a": np.zeros(2)})
        sql.execute("PRAGMA busy_timeout = 0")
        with npk.batch_mode():
            with pytest.raises(sqlite3.OperationalError):
                sql.execute("SELECT numpack_save(?, 'z', ?)",
                            (str(path), npy(np.zeros(1))))
        sql.execute("SELECT numpack_save(?, 'z', ?)",
                    (str(path), npy(np.zeros(1))))
        assert npk.get_member_list() == ["a", "z"]
