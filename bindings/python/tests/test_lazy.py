"""load(name, lazy=True): a LazyArray over a read-only memory mapping of
the data file that honours deleted rows (logical indexes)."""
import json
import os
import struct

import numpy as np
import pytest

from numpack_sqlite import LazyArray, NumPack
from numpack_sqlite._sql import NumPackError


@pytest.fixture
def deleted(npk, rng):
    """An array of 100 rows of which 13 are dropped, and its model."""
    a = rng.random((100, 4)).astype(np.float32)
    npk.save({"a": a})
    gone = [0, 1, 2, 17, 50, 51, 63, 64, 65, 97, 98, 99, 40]
    npk.drop("a", gone)
    return npk, np.delete(a, gone, axis=0)


def test_lazy_honours_deleted_rows(deleted):
    npk, m = deleted
    lz = npk.load("a", lazy=True)
    assert isinstance(lz, LazyArray)
    assert lz.shape == m.shape == (87, 4) and len(lz) == 87
    assert lz.dtype == np.float32 and lz.ndim == 2
    assert lz.size == m.size and lz.nbytes == m.nbytes and lz.itemsize == 4
    assert np.array_equal(lz.to_numpy(), m)
    assert np.array_equal(np.asarray(lz), m)
    assert np.asarray(lz, dtype=np.float64).dtype == np.float64
    assert np.array_equal(np.stack(list(lz)), m)
    # The bitmap really is there: the data file still holds 100 rows.
    assert os.path.getsize(os.path.join(npk._path, "data_a.npkd")) == 1600
    assert os.path.exists(os.path.join(npk._path, "deleted_a.npkb"))


INDEXES = [0, -1, 5, np.int32(7), slice(None), slice(3, 30, 4),
           slice(None, None, -3), slice(-5, None), slice(100, 200),
           [0, 86, 3, 3], np.array([1, -2]), [], np.array([], np.int64),
           np.array([[0, 1], [2, 3]]), (5, 2), (slice(1, 4), 0),
           ([1, 2], slice(None, 2)), (Ellipsis, 1), (), Ellipsis]


@pytest.mark.parametrize("idx", INDEXES, ids=repr)
def test_lazy_indexing_matches_numpy(deleted, idx):
    npk, m = deleted
    lz = npk.load("a", lazy=True)
    got, want = lz[idx], m[idx]
    assert np.shape(got) == np.shape(want)
    assert np.array_equal(got, want)
    assert not isinstance(got, np.memmap)   # results do not pin the mapping


def test_lazy_bool_mask(deleted):
    npk, m = deleted
    lz = npk.load("a", lazy=True)
    mask = np.arange(len(m)) % 3 == 0
    assert np.array_equal(lz[mask], m[mask])
    with pytest.raises(IndexError):
        lz[mask[:-1]]


@pytest.mark.parametrize("idx", [87, -88, [0, 87], np.array([-100])],
                         ids=repr)
def test_lazy_index_errors(deleted, idx):
    npk, _ = deleted
    with pytest.raises(IndexError):
        npk.load("a", lazy=True)[idx]


def test_lazy_one_dimensional_gives_scalars(npk):
    npk.save({"v": np.arange(5, dtype=np.int64)})
    npk.drop("v", [1])
    lz = npk.load("v", lazy=True)
    assert lz[1] == 2 and isinstance(lz[1], np.integer)
    assert lz.shape == (4,) and list(lz) == [0, 2, 3, 4]


def test_lazy_is_a_snapshot(npk):
    a = np.arange(10.0)
    npk.save({"a": a})
    lz = npk.load("a", lazy=True)
    npk.append({"a": [10.0]})
    npk.drop("a", [0])
    assert lz.shape == (10,) and np.array_equal(lz[:], a)   # not seen
    npk.replace({"a": [-1.0]}, [0])    # in place: the mapping shows it
    assert lz[1] == -1.0
    before = lz[:]
    npk.update("a")                    # a new file; the old one stays mapped
    npk.save({"a": np.zeros(3)})
    assert np.array_equal(lz[:], before)
    npk.close()                        # and it outlives the NumPack
    assert np.array_equal(lz[:], before)


def test_lazy_empty_and_zero_width(npk):
    npk.save({"e": np.zeros((0, 3), np.int8), "z": np.zeros((4, 0))})
    e = npk.load("e", lazy=True)
    assert e.shape == (0, 3) and e[:].shape == (0, 3)
    with pytest.raises(IndexError):
        e[0]
    z = npk.load("z", lazy=True)
    assert z.shape == (4, 0) and z[1:3].shape == (2, 0)


def test_lazy_after_every_row_dropped(npk):
    npk.save({"a": np.arange(3)})
    npk.drop("a", [0, 1, 2])
    lz = npk.load("a", lazy=True)
    assert lz.shape == (0,) and lz[:].shape == (0,)


def test_lazy_in_a_batch_is_eager(npk):
    """In a batch the store's own transaction may differ from its files:
    load(lazy=True) gives the ndarray then (NumPack's batch_mode also
    returns its cached arrays)."""
    npk.save({"a": np.arange(3)})
    with npk.batch_mode():
        assert isinstance(npk.load("a", lazy=True), np.ndarray)
    with npk.writable_batch_mode():
        assert isinstance(npk.load("a", lazy=True), np.ndarray)
    assert isinstance(npk.load("a", lazy=True), LazyArray)


# ---- a segmented array (NumPack 0.7 stores big arrays in segments) --------

def _catalog_set_data_file(store, name, data_file):
    """Rewrite metadata.npkm with NAME's data file changed (the format in
    the README, "On-disk format")."""
    path = os.path.join(store, "metadata.npkm")
    with open(path, "rb") as f:
        b = f.read()
    out = bytearray(b[:20])
    (count,) = struct.unpack_from("<I", b, 16)
    p = 20
    for _ in range(count):
        start = p
        (n,) = struct.unpack_from("<I", b, p)
        this = b[p + 4:p + 4 + n].decode()
        p += 4 + n
        (ndim,) = struct.unpack_from("<I", b, p)
        p += 4 + 8 * ndim
        head = b[start:p]
        (n,) = struct.unpack_from("<I", b, p)
        df = b[p + 4:p + 4 + n].decode()
        p += 4 + n
        tail_start = p
        p += 8 + 8 + 1 + 1 + 4 + 8 + 8
        flag = b[p]
        p += 1
        if flag:
            p += 1 + 8 + 8
            (k,) = struct.unpack_from("<I", b, p)
            p += 4 + 24 * k
        if this == name:
            df = data_file
        enc = df.encode()
        out += head + struct.pack("<I", len(enc)) + enc + b[tail_start:p]
    with open(path, "wb") as f:
        f.write(out)


def test_lazy_reads_segmented_arrays(path, rng):
    a = rng.random((10, 3)).astype(np.float32)
    with NumPack(path, drop_if_exists=True) as npk:
        npk.save({"seg": a, "other": np.arange(2)})
    store = str(path)
    raw = open(os.path.join(store, "data_seg.npkd"), "rb").read()
    segs = [("data_seg.0.npkd", 0, 4), ("data_seg.1.npkd", 4, 10)]
    for fname, lo, hi in segs:
        with open(os.path.join(store, fname), "wb") as f:
            f.write(raw[lo * 12:hi * 12])
    with open(os.path.join(store, "data_seg.npkseg"), "w") as f:
        json.dump({"version": 1, "segments": [
            {"file": fn, "rows": hi - lo, "bytes": (hi - lo) * 12}
            for fn, lo, hi in segs]}, f)
    os.unlink(os.path.join(store, "data_seg.npkd"))
    _catalog_set_data_file(store, "seg", "data_seg.npkseg")
    with NumPack(path) as npk:
        assert npk.get_metadata()["arrays"]["seg"]["data_file"] == \
            "data_seg.npkseg"
        assert np.array_equal(npk.load("seg"), a)            # read in C
        npk.drop("seg", [3])  # the first write makes it one file again
        npk.save({"seg2": npk.load("seg")})
        m = np.delete(a, 3, axis=0)
        lz = npk.load("seg", lazy=True)
        assert np.array_equal(lz[[0, 3, 8]], m[[0, 3, 8]])
    # A store still segmented: one mapping per file numpack_files names.
    for fname, lo, hi in segs:
        with open(os.path.join(store, fname), "wb") as f:
            f.write(raw[lo * 12:hi * 12])
    with open(os.path.join(store, "data_seg.npkseg"), "w") as f:
        json.dump({"version": 1, "segments": [
            {"file": fn, "rows": hi - lo, "bytes": (hi - lo) * 12}
            for fn, lo, hi in segs]}, f)
    with NumPack(path) as npk:
        npk.save({"seg": a})
    os.unlink(os.path.join(store, "data_seg.npkd"))
    _catalog_set_data_file(store, "seg", "data_seg.npkseg")
    with NumPack(path) as npk:
        lz = npk.load("seg", lazy=True)
        assert len(lz._maps) == 2                 # one mapping per segment
        assert lz.shape == (10, 3)
        assert np.array_equal(lz[:], a)
        assert np.array_equal(lz[2:7], a[2:7])
        assert np.array_equal(lz[[9, 0, 4, 3]], a[[9, 0, 4, 3]])
        assert np.array_equal(lz[5], a[5])


def _segmented(path, a, cuts, gone=()):
    """A store at PATH holding array "seg" (A) as NumPack 0.7 writes a big
    one: segment files cut at rows CUTS, a .npkseg manifest, and a deletion
    bitmap for the rows GONE."""
    with NumPack(path, drop_if_exists=True) as npk:
        npk.save({"seg": a, "other": np.arange(2)})
    store = str(path)
    rb = a.itemsize * int(np.prod(a.shape[1:]))
    raw = open(os.path.join(store, "data_seg.npkd"), "rb").read()
    bounds = [0] + list(cuts) + [len(a)]
    segs = []
    for k, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        fname = f"data_seg.{k}.npkd"
        with open(os.path.join(store, fname), "wb") as f:
            f.write(raw[lo * rb:hi * rb])
        segs.append({"file": fname, "rows": hi - lo, "bytes": (hi - lo) * rb})
    with open(os.path.join(store, "data_seg.npkseg"), "w") as f:
        json.dump({"version": 1, "segments": segs}, f)
    os.unlink(os.path.join(store, "data_seg.npkd"))
    _catalog_set_data_file(store, "seg", "data_seg.npkseg")
    if gone:
        live = np.ones(len(a), bool)
        live[list(gone)] = False
        words = np.packbits(live, bitorder="little")
        words = np.concatenate([words, np.zeros(-len(words) % 8, np.uint8)])
        with open(os.path.join(store, "deleted_seg.npkb"), "wb") as f:
            f.write(struct.pack("<QQ", len(a), len(gone)) + words.tobytes())


def test_lazy_segmented_with_deleted_rows(path, rng):
    """Deleted rows on both sides of a segment boundary, and a segment
    whose rows are all deleted: logical indexes skip them all."""
    a = rng.random((200, 3))
    gone = [0, 63, 64, 69, 70, 71, 72, 150] + list(range(100, 140))
    _segmented(path, a, [70, 100, 140], gone)
    m = np.delete(a, gone, axis=0)
    with NumPack(path) as npk:
        assert np.array_equal(npk.load("seg"), m)            # read in C
        lz = npk.load("seg", lazy=True)
        assert len(lz._maps) == 4 and lz.shape == m.shape
        assert np.array_equal(lz[:], m)
        assert np.array_equal(lz[[0, 61, 62, 100, -1]], m[[0, 61, 62, 100, -1]])
        assert np.array_equal(lz[55:70], m[55:70])
        assert np.array_equal(lz[::7], m[::7])


def test_lazy_reads_no_manifest_or_bitmap_itself(path, rng, monkeypatch):
    """The extension reads the manifest and the bitmap (numpack_files):
    the binding opens the data files it maps, and nothing else."""
    import builtins
    import io
    a = rng.random((50, 2)).astype(np.float32)
    _segmented(path, a, [20], gone=[3, 30])
    opened = []
    for mod, attr in ((builtins, "open"), (io, "open"), (os, "open")):
        real = getattr(mod, attr)

        def spy(file, *args, _real=real, **kwargs):
            opened.append(os.fspath(file) if not isinstance(file, int)
                          else file)
            return _real(file, *args, **kwargs)
        monkeypatch.setattr(mod, attr, spy)
    with NumPack(path) as npk:
        opened.clear()
        lz = npk.load("seg", lazy=True)
        seen = [os.path.basename(f) for f in opened if isinstance(f, str)]
    monkeypatch.undo()
    assert np.array_equal(lz[:], np.delete(a, [3, 30], axis=0))
    assert not [f for f in seen if f.endswith((".npkb", ".npkseg"))], seen
    assert sorted(set(seen)) == ["data_seg.0.npkd", "data_seg.1.npkd"], seen


@pytest.mark.parametrize("damage", ["short", "bitmap"])
def test_lazy_refuses_a_damaged_array(path, rng, damage):
    """A data file shorter than its rows, a bitmap that does not add up:
    load(lazy=True) maps nothing and raises the engine's SQLITE_CORRUPT
    naming the file.  (A manifest naming a file outside the store is
    refused when the store is opened: test/files.test.)"""
    with NumPack(path, drop_if_exists=True) as npk:
        npk.save({"p": rng.random((10, 2))})
        npk.drop("p", [1])
    store = str(path)
    if damage == "short":
        named = "data_p.npkd"
        with open(os.path.join(store, named), "r+b") as f:
            f.truncate(150)
    else:
        named = "deleted_p.npkb"
        with open(os.path.join(store, named), "wb") as f:
            f.write(struct.pack("<QQ", 10, 5) + b"\xfd\x03" + bytes(6))
    with NumPack(path) as npk:
        with pytest.raises(NumPackError) as e:
            npk.load("p", lazy=True)
    assert e.value.sqlite_errorname == "SQLITE_CORRUPT"
    assert named in str(e.value)


# ---- reshape, transpose ---------------------------------------------------------

@pytest.fixture
def gapped(npk):
    """A (10, 6) array with rows 2 and 7 dropped, and its live rows."""
    a = np.arange(60.0).reshape(10, 6)
    npk.save({"g": a})
    npk.drop("g", [2, 7])
    return npk.load("g", lazy=True), np.delete(a, [2, 7], axis=0)


RESHAPE_KEYS = [0, -1, 3, slice(None), slice(1, 3), slice(None, None, 2),
                slice(None, None, -1), [3, 0, 1], np.array([1, 1]),
                np.array([True, False] * 2), (slice(1, 3), 0), Ellipsis]


@pytest.mark.parametrize("shape", [(16, 3), [12, 4], (-1,), 48, (4, -1, 2),
                                   (2, 24), (48, 1), (1, 48), (2, 2, 2, 6)],
                         ids=repr)
def test_lazy_reshape_is_a_lazy_view(gapped, shape):
    lazy, ref = gapped
    view = lazy.reshape(shape)
    want = ref.reshape(shape)
    assert isinstance(view, LazyArray)
    assert view.shape == want.shape and view.ndim == want.ndim
    assert view.size == want.size and view.dtype == want.dtype
    assert len(view) == len(want)
    assert np.array_equal(view.to_numpy(), want)
    assert np.array_equal(np.asarray(view), want)
    for key in RESHAPE_KEYS:
        try:
            expect = want[key]
        except IndexError:
            with pytest.raises(IndexError):
                view[key]
            continue
        got = view[key]
        assert np.shape(got) == np.shape(expect), key
        assert np.array_equal(got, expect), key
    assert np.array_equal(np.stack(list(view)), want)
    assert lazy.shape == (8, 6)                  # the original unchanged
    assert np.array_equal(lazy[:], ref)


def test_lazy_reshape_forms_and_chains(gapped):
    lazy, ref = gapped
    assert lazy.reshape(4, 12).shape == (4, 12)  # NumPy's spelling too
    assert lazy.reshape(np.int64(48)).shape == (48,)
    chained = lazy.reshape(4, 12).reshape(-1).reshape((8, 6))
    assert isinstance(chained, LazyArray) and chained.shape == (8, 6)
    assert np.array_equal(chained[:], ref)
    assert np.array_equal(lazy.reshape(-1).reshape(2, -1)[1],
                          ref.reshape(2, -1)[1])


@pytest.mark.parametrize("shape", [(5,), (-1, -1), (7, -1), (0,), (49,)],
                         ids=repr)
def test_lazy_reshape_refuses_impossible_shapes_as_numpy(gapped, shape):
    lazy, ref = gapped
    with pytest.raises(ValueError) as np_err:
        ref.reshape(shape)
    with pytest.raises(ValueError) as err:
        lazy.reshape(shape)
    assert str(err.value) == str(np_err.value)
    assert lazy.shape == (8, 6)


def test_lazy_reshape_of_one_element_and_empty(npk):
    npk.save({"one": np.array([[7]], np.int32), "none": np.zeros((0, 3))})
    scalar = npk.load("one", lazy=True).reshape(())
    assert scalar.shape == () and scalar.ndim == 0
    assert scalar.to_numpy() == 7 and scalar[()] == 7
    with pytest.raises(TypeError):
        len(scalar)
    empty = npk.load("none", lazy=True).reshape(0, 5)
    assert empty.shape == (0, 5) and empty[:].shape == (0, 5)


def test_lazy_transpose_gives_an_ndarray(gapped, npk):
    lazy, ref = gapped
    for got, want in ((lazy.T, ref.T), (lazy.transpose(), ref.T),
                      (lazy.transpose(1, 0), ref.T),
                      (lazy.reshape(2, 4, 6).transpose(2, 0, 1),
                       ref.reshape(2, 4, 6).transpose(2, 0, 1)),
                      (lazy.reshape(2, 4, 6).T, ref.reshape(2, 4, 6).T)):
        assert isinstance(got, np.ndarray)
        assert got.shape == want.shape and np.array_equal(got, want)
    assert lazy.shape == (8, 6)
    with pytest.raises(ValueError):
        lazy.transpose(0, 0)
