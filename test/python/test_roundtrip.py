"""test_roundtrip.py - every dtype and shape through numpack, bit for bit.

For each of the 14 dtypes and for 1-D, 2-D, 3-D and zero-row arrays:
np.save bytes -> numpack_save -> numpack_load -> np.load must give the same
array (same dtype, shape and bits: NaNs, -0.0 and all), and the BLOB must be
byte for byte what np.save wrote; then numpack_append, numpack_getitem with
an integer, a list and a slice, numpack_stream and the virtual table
(layout=blob: each row's BLOB is arr[i].tobytes()) are checked against NumPy.

One case per dtype and shape (each on a store of its own, with data drawn
from a generator seeded by the case), one for the arrays refused and one
for SQLite's BLOB length limit.
"""
import os
import sqlite3

import numpy as np
import pytest

from npktest import DTYPES, check, connect, npy, same, unnpy

SHAPES = [(7,), (5, 3), (4, 2, 3), (0,), (0, 3), (1,), (3, 1, 1, 2)]

def make(rng, dtype, shape):
    """Random data of DTYPE with the awkward values of each kind."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape))
    if dt.kind == "b":
        a = rng.integers(0, 2, n).astype(bool)
    elif dt.kind in "ui":
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
        if n >= 2:
            a[0], a[1] = info.min, info.max
    elif dt.kind == "f":
        a = (rng.standard_normal(n) * 1000).astype(dt)
        special = np.array([np.nan, -0.0, np.inf, -np.inf], dtype=dt)
        a[:min(n, 4)] = special[:min(n, 4)]
    else:
        a = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dt)
        if n >= 2:
            a[0] = complex(np.nan, -0.0)
            a[1] = complex(np.inf, 1.5)
    return a.reshape(shape)


@pytest.fixture
def store(module, tmp):
    """A connection and an empty store in the case's directory."""
    db = connect(module)
    path = os.path.join(tmp, "roundtrip.npk")
    db.execute("SELECT numpack_open(?, 1)", (path,))
    yield db, path
    db.close()


def one_of(db):
    def one(sql, *args):
        return db.execute(sql, args).fetchone()[0]
    return one


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES)
def test_roundtrip(store, dtype, shape):
    db, store = store
    one = one_of(db)
    rng = np.random.default_rng([1234, DTYPES.index(dtype), SHAPES.index(shape)])
    name = "%s_%s" % (dtype, "x".join(map(str, shape)))
    tag = "%s %s" % (dtype, shape)
    a = make(rng, dtype, shape)
    blob = npy(a)

    # save and load: the same array, the same bytes.
    check(one("SELECT numpack_save(?, ?, ?)", store, name, blob)
          == shape[0], tag + ": numpack_save returns the row count")
    back = one("SELECT numpack_load(?, ?)", store, name)
    check(back == blob, tag + ": numpack_load bytes differ from np.save")
    check(same(a, unnpy(back)), tag + ": numpack_load array differs")
    check(one("SELECT numpack_shape(?, ?)", store, name)
          == "[%s]" % ",".join(map(str, shape)), tag + ": numpack_shape")
    check(one("SELECT dtype FROM numpack_arrays(?) WHERE name = ?",
              store, name) == dtype, tag + ": numpack_arrays dtype")

    # Big-endian input is stored little-endian.
    if a.dtype.itemsize > 1:
        be = a.astype(a.dtype.newbyteorder(">"))
        one("SELECT numpack_save(?, ?, ?)", store, name + "_be", npy(be))
        check(same(a, unnpy(one("SELECT numpack_load(?, ?)", store,
                                name + "_be"))),
              tag + ": big-endian input")

    # Fortran order (a transposed array's np.save) is stored as the
    # array np.load gives, big-endian too.
    if a.ndim > 1:
        fo = np.asfortranarray(a)
        check(a.size == 0 or b"'fortran_order': True" in npy(fo),
              tag + ": np.save wrote Fortran order")
        one("SELECT numpack_save(?, ?, ?)", store, name + "_f", npy(fo))
        check(one("SELECT numpack_load(?, ?)", store, name + "_f")
              == blob, tag + ": Fortran-order input")
        if a.dtype.itemsize > 1:
            fb = np.asfortranarray(a.astype(a.dtype.newbyteorder(">")))
            one("SELECT numpack_save(?, ?, ?)", store, name + "_fb",
                npy(fb))
            check(one("SELECT numpack_load(?, ?)", store, name + "_fb")
                  == blob, tag + ": big-endian Fortran-order input")

    # append
    extra = make(rng, dtype, (3,) + shape[1:])
    check(one("SELECT numpack_append(?, ?, ?)", store, name, npy(extra))
          == 3, tag + ": numpack_append returns the row count")
    a = np.concatenate([a, extra])
    check(same(a, unnpy(one("SELECT numpack_load(?, ?)", store, name))),
          tag + ": load after append")
    n = a.shape[0]

    # getitem: an integer (the row alone), a list, a slice.
    for i in (0, n - 1, -1, -n, n // 2):
        got = unnpy(one("SELECT numpack_getitem(?, ?, ?)", store, name, i))
        check(same(a[i], got), "%s: getitem %d" % (tag, i))
    for idx in ([0], [n - 1, 0, 1], [-1, -2, 2, 2], []):
        got = unnpy(one("SELECT numpack_getitem(?, ?, ?)", store, name,
                        str(idx)))
        check(same(a[np.array(idx, dtype=np.intp)], got),
              "%s: getitem %s" % (tag, idx))
    for text, sl in (("1:3", slice(1, 3)), (":2", slice(None, 2)),
                     ("-2:", slice(-2, None)), ("0:100", slice(0, 100)),
                     ("::2", slice(None, None, 2)), ("2:2", slice(2, 2))):
        got = unnpy(one("SELECT numpack_getitem(?, ?, ?)", store, name,
                        text))
        check(same(a[sl], got), "%s: getitem %s" % (tag, text))

    # stream: the batches concatenated are the array.
    for batch in (1, 2, 4, 100):
        parts = [unnpy(r[0]) for r in db.execute(
            "SELECT npy FROM numpack_stream(?, ?, ?)",
            (store, name, batch))]
        check(len(parts) == -(-n // batch),
              "%s: stream %d: %d batches" % (tag, batch, len(parts)))
        check(all(p.shape[0] == batch for p in parts[:-1]),
              "%s: stream %d: batch sizes" % (tag, batch))
        joined = np.concatenate(parts) if parts else a[:0]
        check(same(a, joined), "%s: stream %d" % (tag, batch))

    # The virtual table: each row's BLOB is arr[i].tobytes().
    table = "t_" + name
    db.execute("CREATE VIRTUAL TABLE \"%s\" USING numpack(store='%s', "
               "array='%s', layout=blob)" % (table, store, name))
    rows = db.execute('SELECT rowid, row FROM "%s" ORDER BY rowid'
                      % table).fetchall()
    check([r[0] for r in rows] == list(range(n)), tag + ": table rowids")
    check([bytes(r[1]) for r in rows] == [a[i].tobytes() for i in range(n)],
          tag + ": table rows differ from arr[i].tobytes()")

    # Deleting through the table; the functions count live rows.
    if n >= 3:
        db.execute('DELETE FROM "%s" WHERE rowid IN (0, %d)'
                   % (table, n - 2))
        a = np.delete(a, [0, n - 2], axis=0)
        check(same(a, unnpy(one("SELECT numpack_load(?, ?)", store,
                                name))), tag + ": load after DELETE")
        check(same(a[-1], unnpy(one("SELECT numpack_getitem(?, ?, -1)",
                                   store, name))),
              tag + ": getitem after DELETE")
        parts = [unnpy(r[0]) for r in db.execute(
            "SELECT npy FROM numpack_stream(?, ?, 2)", (store, name))]
        check(same(a, np.concatenate(parts)), tag + ": stream after DELETE")
    # DROP TABLE drops the array too, as NumPack's drop(name).
    db.execute('DROP TABLE "%s"' % table)
    check(one("SELECT count(*) FROM numpack_arrays(?) WHERE name = ?",
              store, name) == 0, tag + ": DROP TABLE drops the array")

    # Columns layout for the types SQL has values for.
    if dtype not in ("complex64", "complex128") and shape[0] > 0:
        c = make(rng, dtype, shape)
        cname = name + "_cols"
        one("SELECT numpack_save(?, ?, ?)", store, cname, npy(c))
        db.execute("CREATE VIRTUAL TABLE \"%s\" USING numpack(store='%s', "
                   "array='%s', readonly=1)" % ("c_" + cname, store, cname))
        got = db.execute('SELECT * FROM "%s" ORDER BY rowid'
                         % ("c_" + cname)).fetchall()
        flat = c.reshape(c.shape[0], -1)
        want = []
        for row in flat:
            vals = []
            for v in row:
                if dtype == "uint64" and int(v) > 2**63 - 1:
                    vals.append(str(int(v)))  # exact, as TEXT
                elif dtype == "bool" or np.dtype(dtype).kind in "ui":
                    vals.append(int(v))
                elif np.isnan(v):
                    vals.append(None)
                else:
                    vals.append(float(v))
            want.append(tuple(vals))
        check(got == want, tag + ": columns layout values")
        db.execute('DROP TABLE "%s"' % ("c_" + cname))
        check(one("SELECT count(*) FROM numpack_arrays(?) WHERE name = ?",
                  store, cname) == 1,
              tag + ": DROP TABLE of a readonly table keeps the array")


def test_refused(store):
    """Arrays NumPy writes that the store cannot hold are refused (Fortran
    order is not one of them: see the round trips above)."""
    db, store = store
    one = one_of(db)
    for bad, words in ((np.array(["abc", "de"]), "<U3"),
                       (np.array(5, dtype=np.int32), "0-d"),
                       (np.array([1, None], dtype=object), "O")):
        try:
            one("SELECT numpack_save(?, 'bad', ?)", store, npy(bad))
            check(False, "%r was accepted" % (bad,))
        except sqlite3.Error as e:
            check(words in str(e), "message for %s: %s" % (words, e))
    check(one("SELECT count(*) FROM numpack_arrays(?) WHERE name = 'bad'",
              store) == 0, "refused arrays are not created")


def test_length_limit(store):
    """SQLite's BLOB limit: numpack_load refuses and points to
    numpack_stream, which still works in batches under the limit."""
    db, store = store
    one = one_of(db)
    big = np.arange(500, dtype=np.int64)
    one("SELECT numpack_save(?, 'big', ?)", store, npy(big))
    old = db.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
    db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000)
    try:
        one("SELECT numpack_load(?, 'big')", store)
        check(False, "numpack_load over the length limit was accepted")
    except sqlite3.Error as e:
        check("numpack_stream" in str(e), "too big message: %s" % e)
    parts = [unnpy(r[0]) for r in db.execute(
        "SELECT npy FROM numpack_stream(?, 'big', 100)", (store,))]
    check(same(big, np.concatenate(parts)), "stream under the length limit")
    db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, old)
    check(same(big, unnpy(one("SELECT numpack_load(?, 'big')", store))),
          "load after the limit is raised again")
