"""The per-call short cuts: .npy headers read and written without NumPy's
parser, index lists passed as BLOBs of int64 values, replace and append of one
array that do not ask the catalog first, and durable=False.  Each must give
exactly what the general way gives."""
import io
import json

import numpy as np
import pytest

from numpack_sqlite import NumPack, _sql

DTYPES = ["?", "u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8",
          "f2", "f4", "f8", "c8", "c16"]
SHAPES = [(0,), (1,), (7,), (0, 3), (5, 3), (2, 3, 4), (3, 1, 1, 2)]


def _dtypes():
    for d in DTYPES:
        dt = np.dtype(d)
        yield dt
        if dt.itemsize > 1:
            yield dt.newbyteorder(">")


def _sample(dt, shape, seed=0):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    if dt.kind == "b":
        a = rng.integers(0, 2, n).astype(dt)
    elif dt.kind in "iu":
        a = rng.integers(0, 100, n).astype(dt)
    elif dt.kind == "c":
        a = (rng.random(n) + 1j * rng.random(n)).astype(dt)
    else:
        a = rng.random(n).astype(dt)
    return a.reshape(shape)


def _npy(a):
    f = io.BytesIO()
    np.save(f, a)
    return f.getvalue()


# ---- .npy headers --------------------------------------------------------

def test_encode_is_np_save_byte_for_byte():
    for dt in _dtypes():
        for shape in SHAPES:
            a = _sample(dt, shape)
            assert bytes(_sql.encode(a)) == _npy(a), (dt, shape)


def test_encode_header_of_long_shapes():
    """Shapes whose dimensions have many digits, as NumPy writes them."""
    for shape in [(10**15, 2), (2**40,), (3, 10**12, 5), (1,) * 32]:
        a = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32),
                                            shape=shape,
                                            strides=(0,) * len(shape))
        f = io.BytesIO()
        np.lib.format._write_array_header(
            f, np.lib.format.header_data_from_array_1_0(a), None)
        assert _sql._header_bytes(a) == f.getvalue(), shape[:3]


def test_decode_gives_what_np_load_gives():
    for dt in _dtypes():
        for shape in SHAPES:
            a = _sample(dt, shape, seed=1)
            for stored in (a, np.asfortranarray(a)):
                blob = _npy(stored)
                want = np.load(io.BytesIO(blob))
                got = _sql.decode(blob)
                assert got.dtype == want.dtype and got.shape == want.shape
                assert got.tobytes() == np.ascontiguousarray(want).tobytes()
                assert got.flags.writeable and got.flags.c_contiguous
                assert _sql.decode(bytearray(blob)).tobytes() == \
                    got.tobytes()


def test_decode_of_other_header_layouts():
    """Headers NumPy accepts but does not write (keys in another order,
    other spacing, version 2.0) go to NumPy's own parser."""
    a = np.arange(12, dtype="<i4").reshape(3, 4)
    for text, version in [
            ("{'shape': (3, 4), 'fortran_order': False, 'descr': '<i4'}", 1),
            ("{'descr':'<i4','fortran_order':False,'shape':(3,4)}", 1),
            ("{'descr': '<i4', 'fortran_order': False, 'shape': (3, 4), }",
             2)]:
        prefix = 10 if version == 1 else 12
        pad = 64 - (prefix + len(text) + 1) % 64
        body = (text + " " * pad + "\n").encode()
        head = b"\x93NUMPY" + bytes([version, 0]) + \
            len(body).to_bytes(prefix - 8, "little")
        blob = head + body + a.tobytes()
        assert np.array_equal(np.load(io.BytesIO(blob)), a)
        got = _sql.decode(blob)
        assert got.dtype == a.dtype and np.array_equal(got, a), text
    with pytest.raises(ValueError):
        _sql.decode(b"not an npy at all")


def test_decode_at_uses_the_fast_header():
    import ctypes
    for dt in _dtypes():
        a = _sample(dt, (4, 3), seed=2)
        blob = _npy(a)
        buf = ctypes.create_string_buffer(blob, len(blob))
        got = _sql.decode_at(ctypes.addressof(buf), len(blob))
        assert got.dtype == a.dtype and np.array_equal(got, a)


# ---- index lists -----------------------------------------------------------

def test_int_lists_give_the_same_rows_as_arrays(npk):
    a = np.arange(40, dtype=np.int64).reshape(20, 2)
    npk.save({"a": a})
    for idx in ([3, 0, -1, 19, 3], (5, -20), [], [7]):
        want = a[np.asarray(idx, dtype=np.int64)] if idx else a[:0]
        for form in (idx, np.asarray(idx, dtype=np.int64)):
            got = npk.getitem("a", form)
            assert got.shape == want.shape and np.array_equal(got, want)


def test_index_lists_refused_as_before(npk):
    npk.save({"a": np.arange(10)})
    for bad in ([True, False], [1.0], [[1]], ["1"], [1, None],
                [-(2**63) - 1]):
        with pytest.raises(ValueError, match="indexes must be"):
            npk.getitem("a", bad)
    for far in ([2**63], [2**64 - 1], [10], [-11]):
        with pytest.raises(IndexError):
            npk.getitem("a", far)
    assert npk.getitem("a", [np.int64(2), 3]).tolist() == [2, 3]


def test_getitem_of_every_dtype_and_shape(npk):
    for k, dt in enumerate(_dtypes()):
        for shape in [(9,), (9, 3), (9, 2, 2)]:
            a = _sample(dt, shape, seed=k)
            npk.save({"x": a})
            for idx in ([0, 8, 4, 4], [-1], [], 5, slice(1, 7, 2)):
                want = a[idx] if not isinstance(idx, list) else \
                    a[np.asarray(idx, dtype=np.int64)]
                got = npk.getitem("x", idx)
                assert got.dtype == a.dtype.newbyteorder("<")
                assert got.shape == want.shape and np.array_equal(got, want)


# ---- replace and append without asking the catalog ---------------------------

@pytest.fixture
def catalog_calls(npk, monkeypatch):
    """How many times the binding asked numpack_arrays about one array."""
    calls = []
    real = npk._info

    def counted(name):
        calls.append(name)
        return real(name)
    monkeypatch.setattr(npk, "_info", counted)
    return calls


def test_replace_and_append_of_the_arrays_dtype_skip_the_catalog(
        npk, catalog_calls):
    a = np.arange(30, dtype=np.float32).reshape(10, 3)
    npk.save({"a": a})
    new = np.full((2, 3), -1, np.float32)
    npk.replace({"a": new}, [1, 4])
    npk.replace({"a": new[0]}, 7)
    npk.append({"a": new})
    assert catalog_calls == []
    a[[1, 4]] = new
    a[7] = new[0]
    assert np.array_equal(npk.load("a"), np.concatenate([a, new]))


def test_replace_of_every_dtype_and_value_form(npk, catalog_calls):
    """Every form the extension takes as it is gives NumPy's assignment."""
    for k, dt in enumerate(_dtypes()):
        a = _sample(dt, (8, 3), seed=k)
        npk.save({"r": a})
        model = a.copy()
        cases = [
            ([1, 5], _sample(dt, (2, 3), seed=k + 50)),      # one per row
            ([0, 2, 6], _sample(dt, (3,), seed=k + 51)),     # one row
            ([3, 4], _sample(dt, (1, 3), seed=k + 52)),      # one row, 2-D
            (slice(0, 8, 3), np.asarray(_sample(dt, (1,), seed=k + 53)[0])),
            (-1, _sample(dt, (3,), seed=k + 54)),            # an int index
            (2, _sample(dt, (1, 3), seed=k + 55)),
            ([7, 7], _sample(dt, (2, 3), seed=k + 56)),      # last one wins
            ([], _sample(dt, (0, 3), seed=k + 57)),
        ]
        for idx, v in cases:
            npk.replace({"r": v}, idx)
            if isinstance(idx, int):
                model[idx] = v.reshape(3)
            elif isinstance(idx, list):
                model[np.asarray(idx, dtype=np.intp)] = v
            else:
                model[idx] = v
            got = npk.load("r")
            assert got.dtype == a.dtype.newbyteorder("<")
            assert np.array_equal(got, model), (dt, idx)
        app = _sample(dt, (2, 3), seed=k + 60)
        npk.append({"r": app})
        model = np.concatenate([model, app])
        assert np.array_equal(npk.load("r"), model), dt
    # Of the nine writes per dtype, at most two take the general way: a 0-d
    # value over rows of three (the extension fills rows from a one-element
    # row, not from a 0-d array) and big-endian appends (the raw form is
    # little-endian).
    assert set(catalog_calls) <= {"r"}
    assert len(catalog_calls) <= 2 * len(list(_dtypes()))


def test_values_that_need_converting_take_the_general_way(npk):
    npk.save({"f": np.zeros((4, 2), np.float32),
              "i": np.zeros((4, 2), np.int16)})
    npk.replace({"f": np.ones((2, 2))}, [0, 1])            # float64 -> f4
    npk.replace({"f": [[5, 6]]}, 3)                        # a list
    npk.replace({"i": np.array([7, 8], dtype=np.int64)}, [2])
    npk.replace({"f": np.full((2, 1), 9, np.float32)}, [1, 2])  # broadcast
    npk.append({"f": np.ones((1, 2))})
    npk.append({"i": [[1, 2]]})
    assert npk.load("f").tolist() == [[1, 1], [9, 9], [9, 9], [5, 6],
                                      [1, 1]]
    assert npk.load("i").tolist() == [[0, 0], [0, 0], [7, 8], [0, 0],
                                      [1, 2]]
    assert npk.load("i").dtype == np.int16


def test_refusals_are_as_before(npk):
    npk.save({"f": np.zeros((4, 2), np.float32),
              "i": np.zeros((4, 2), np.int16)})
    with pytest.raises(ValueError, match="same_kind"):
        npk.replace({"i": np.ones((1, 2))}, [0])
    with pytest.raises(ValueError, match="same_kind"):
        npk.append({"i": np.ones((1, 2))})
    with pytest.raises(ValueError, match="do not fit"):
        npk.replace({"f": np.ones((3, 2), np.float32)}, [0, 1])
    with pytest.raises(ValueError, match="cannot append rows of shape"):
        npk.append({"f": np.ones((1, 3), np.float32)})
    with pytest.raises(ValueError, match="cannot append rows of shape"):
        npk.append({"f": np.ones(2, np.float32)})
    with pytest.raises(KeyError, match="nosuch"):
        npk.replace({"nosuch": np.ones((1, 2), np.float32)}, [0])
    with pytest.raises(KeyError, match="nosuch"):
        npk.append({"nosuch": np.ones((1, 2), np.float32)})
    with pytest.raises(IndexError):
        npk.replace({"f": np.ones((1, 2), np.float32)}, [4])
    assert not npk.load("f").any() and not npk.load("i").any()
    assert npk.get_shape("f") == (4, 2)


def test_one_array_in_a_batch_is_written_in_its_transaction(npk, sql):
    npk.save({"a": np.zeros((3, 2), np.float32)})
    with pytest.raises(RuntimeError, match="boom"):
        with npk.batch_mode():
            npk.replace({"a": np.ones((1, 2), np.float32)}, [0])
            npk.append({"a": np.ones((1, 2), np.float32)})
            raise RuntimeError("boom")
    assert npk.load("a").tolist() == [[0, 0]] * 3


# ---- durable=False -------------------------------------------------------------

def _fsyncs(npk):
    return npk.get_io_stats()["fsyncs"]


@pytest.mark.parametrize("durable", [True, False])
def test_durable_false_commits_without_fsync(path, durable):
    kw = {} if durable else {"durable": False}
    with NumPack(path, drop_if_exists=True, **kw) as npk:
        before = _fsyncs(npk)
        npk.save({"a": np.arange(20, dtype=np.float32).reshape(10, 2)})
        npk.save({"b": np.zeros(3), "c": np.ones(3)})     # one transaction
        npk.append({"a": np.ones((1, 2), np.float32)})
        npk.replace({"a": np.zeros((1, 2), np.float32)}, [0])
        npk.drop("a", [1])
        with npk.batch_mode():
            npk.save({"b": np.full(3, 7.0)})
        npk.update("a")
        grew = _fsyncs(npk) - before
        assert (grew > 0) if durable else (grew == 0), grew
        assert npk.get_io_stats()["commits"] >= 7
    with NumPack(path) as npk:                  # all of it was committed
        assert npk.load("a").tolist() == [[0, 0]] + \
            [[float(i), float(i + 1)] for i in range(4, 20, 2)] + [[1, 1]]
        assert npk.load("b").tolist() == [7.0] * 3


def test_durable_is_keyword_only(path):
    with pytest.raises(TypeError):
        NumPack(path, False, False, None, False, None, False)


def test_results_do_not_go_through_numpys_header_parser(npk, monkeypatch):
    """getitem, load and stream_load read the extension's headers with the
    binding's own reader (NumPy's costs more than the SQL call)."""
    npk.save({"a": np.arange(12, dtype=np.int32).reshape(6, 2)})

    def refuse(*args, **kwargs):
        raise AssertionError("NumPy's .npy header parser was used")
    monkeypatch.setattr(np.lib.format, "read_array_header_1_0", refuse)
    monkeypatch.setattr(np.lib.format, "read_array_header_2_0", refuse)
    assert npk.getitem("a", [5, 0]).tolist() == [[10, 11], [0, 1]]
    assert npk.load("a").sum() == 66
    assert [b.tolist() for b in npk.stream_load("a", 4)] == \
        [[[0, 1], [2, 3], [4, 5], [6, 7]], [[8, 9], [10, 11]]]


# ---- getitem of a list of ints ---------------------------------------------------

def test_getitem_of_an_int_list_is_one_sql_call(npk, monkeypatch):
    """A list of Python ints goes to numpack_getitem as a BLOB of its int64
    values, without the general translation (Index) or a catalog query."""
    import numpack_sqlite._numpack as mod
    a = np.arange(30, dtype=np.float32).reshape(10, 3)
    npk.save({"a": a})
    made, sent = [], []
    real = npk._con

    class Spy:
        def __getattr__(self, name):
            return getattr(real, name)

        def execute(self, sql, params=()):
            if "numpack_getitem" in sql:
                sent.append(params[2])
            return real.execute(sql, params)
    monkeypatch.setattr(npk, "_con", Spy())

    class Counted(mod.Index):
        __slots__ = ()

        def __init__(self, idx):
            made.append(idx)
            super().__init__(idx)
    monkeypatch.setattr(mod, "Index", Counted)
    for idx in ([9, 0, -1, 3, 3], [], [-10]):
        got = npk.getitem("a", idx)
        assert got.shape == (len(idx), 3)
        assert np.array_equal(got, a[np.asarray(idx, dtype=np.intp)])
    assert made == []
    assert sent == [np.asarray(idx, "<i8").tobytes()
                    for idx in ([9, 0, -1, 3, 3], [], [-10])]


class _Digits:
    """Not an integer, though its repr looks like one."""

    def __repr__(self):
        return "1"


def test_getitem_of_other_lists_as_before(npk):
    a = np.arange(10)
    npk.save({"a": a})
    # Mixed types, NumPy integers, bools with ints: NumPy's conversion,
    # as before.
    assert npk.getitem("a", [np.int64(2), 3]).tolist() == [2, 3]
    assert npk.getitem("a", [np.uint8(4)]).tolist() == [4]
    assert npk.getitem("a", [True, 2]).tolist() == [1, 2]
    for bad in ([_Digits()], [1.0], [True], [None], [[1]], ["1"],
                [1, 2.5], [2**64 + 5]):
        with pytest.raises(ValueError, match="indexes must be"):
            npk.getitem("a", bad)
    for far in ([10], [-11], [2**63], [2**63 - 1], [-(2**63)]):
        with pytest.raises(IndexError):
            npk.getitem("a", far)
    with pytest.raises(KeyError, match="nosuch"):
        npk.getitem("nosuch", [0])
    with pytest.raises(ValueError, match="indexes must be"):
        npk.getitem("nosuch", [1.5])        # the index is refused first
    assert npk.getitem("a", [9]).tolist() == [9]   # still usable


def test_short_cuts_over_the_blob_limit(npk):
    """Values and results over SQLite's limit on one value go the general
    way, in pieces, whichever short cut was tried first."""
    import sqlite3
    if not hasattr(npk._con, "setlimit"):
        pytest.skip("Connection.setlimit needs Python 3.11")
    npk._con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100_000)
    rng = np.random.default_rng(5)
    a = rng.random((5000, 8))                            # 320 kB
    npk.save({"a": a})
    idx = rng.permutation(len(a))[:3000].tolist()        # a list of ints
    assert np.array_equal(npk.getitem("a", idx), a[idx])
    new = rng.random((3000, 8))
    npk.replace({"a": new}, idx)
    a[idx] = new
    npk.append({"a": new})
    a = np.concatenate([a, new])
    assert np.array_equal(npk.load("a"), a)
