"""numpack_sqlite.dask: stores as dask arrays, computed by a cluster of two
worker processes (distributed.LocalCluster) on this machine.

- from_store() equals NumPy on the same data (deleted rows skipped, every
  dtype kind, 1-D to 3-D, chunks along every axis, empty arrays), reads
  nothing but the catalog when the graph is built and only a chunk's rows
  when a chunk is computed;
- a graph reads the committed state it was built on: any commit to the
  array afterwards (replace, append, drop, save, update, removal) makes
  its chunks raise StoreChangedError, also when the commit lands while the
  graph runs on the cluster, and a result is never a mix of two states;
- to_store() writes in one transaction, chunks in order: other
  connections see nothing of it before the end, and an error (a chunk that
  fails to compute) leaves nothing: no new array, an old one unchanged.
"""
import os
import threading
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
import dask  # noqa: E402

from numpack_sqlite import NumPack  # noqa: E402
from numpack_sqlite.dask import (  # noqa: E402
    StoreChangedError, compute_consistent, from_store, to_store, _read_rows)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1,
        dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def _live(a, dropped):
    return np.delete(a, dropped, axis=0)


def _stats(path, key):
    with NumPack(path) as n:
        return n.get_io_stats()[key]


# ---- from_store -------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32", "int16", "uint64",
                                   "bool", "complex64"])
def test_from_store_equals_numpy(client, path, rng, dtype):
    a = (rng.random((101, 4, 3)) * 100).astype(dtype)
    drop = [0, 7, 8, 50, 100]
    with NumPack(path, drop_if_exists=True) as n:
        n.save({"a": a, "v": a[:, 0, 0].copy()})
        n.drop("a", drop)
        n.drop("v", drop)
    want = _live(a, drop)
    x = from_store(path, "a", chunks=(10, 3, 2))
    assert x.shape == want.shape and x.dtype == want.dtype
    assert x.numblocks == (10, 2, 2)
    got = x.compute()
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(x[5:37, 2, 1:].compute(),
                                  want[5:37, 2, 1:])
    if dtype != "bool":
        np.testing.assert_allclose(x.sum(axis=0).compute(),
                                   want.sum(axis=0), rtol=1e-5)
    v = from_store(path, "v", chunks=17)
    np.testing.assert_array_equal(v.compute(), want[:, 0, 0])
    np.testing.assert_array_equal((v[::3] * 2).compute(), want[::3, 0, 0] * 2)


def test_from_store_default_chunks_keep_rows_whole(client, path):
    a = np.arange(200 * 7, dtype=np.int32).reshape(200, 7)
    with NumPack(path, drop_if_exists=True) as n:
        n.save({"a": a})
    x = from_store(path, "a")
    assert x.chunks[1] == (7,)
    np.testing.assert_array_equal(x.compute(), a)
    y = from_store(path, "a", chunks={0: 64})
    assert y.chunks == ((64, 64, 64, 8), (7,))
    np.testing.assert_array_equal(y.compute(), a)


def test_from_store_empty_and_dropped_arrays(client, path):
    with NumPack(path, drop_if_exists=True) as n:
        n.save({"e": np.zeros((0, 3), np.float32),
                "d": np.ones((5, 2, 2), np.int8)})
        n.drop("d")  # every row marked deleted, as NumPack drops arrays
    e = from_store(path, "e", chunks=4)
    assert e.shape == (0, 3)
    got = e.compute()
    assert got.shape == (0, 3) and got.dtype == np.float32
    d = from_store(path, "d")
    assert d.shape == (0, 2, 2)
    assert d.compute().shape == (0, 2, 2)


def test_from_store_missing(path, tmp_path):
    with NumPack(path, drop_if_exists=True) as n:
        n.save({"a": np.arange(3)})
    with pytest.raises(KeyError, match='no array "b"'):
        from_store(path, "b")
    nowhere = tmp_path / "nowhere.npk"
    with pytest.raises(RuntimeError, match="does not exist"):
        from_store(nowhere, "a")
    assert not nowhere.exists()


def test_from_store_reads_nothing_up_front(path):
    a = np.arange(1000 * 64, dtype=np.float64).reshape(1000, 64)
    with NumPack(path, drop_if_exists=True) as n:
        n.save({"a": a})
        n.drop("a", [3])
    before = _stats(path, "bytes_read")
    x = from_store(path, "a", chunks=100)
    built = _stats(path, "bytes_read")
    # The catalog only (tens of bytes per array), not the 512 KB of data.
    assert built - before < 4096
    # One chunk, computed in this process, reads its own rows only.
    with dask.config.set(scheduler="synchronous"):
        part = x.blocks[4].compute()
    read = _stats(path, "bytes_read") - built
    np.testing.assert_array_equal(part, _live(a, [3])[400:500])
    assert 100 * 64 * 8 <= read < 2 * 100 * 64 * 8


# ---- one committed state ----------------------------------------------------

def _change_replace(n):
    n.replace({"a": np.full(4, -1.0)}, [0])


def _change_append(n):
    n.append({"a": np.zeros((1, 4))})


def _change_drop_rows(n):
    n.drop("a", [1])


def _change_save(n):
    n.save({"a": np.zeros((40, 4))})


def _change_update(n):
    n.update("a")


def _change_drop_array(n):
    n.drop("a")


def _change_reset(n):
    n.reset()


@pytest.mark.parametrize("change", [
    _change_replace, _change_append, _change_drop_rows, _change_save,
    _change_update, _change_drop_array, _change_reset])
def test_graph_refuses_a_later_commit(path, change):
    a = np.arange(160, dtype=np.float64).reshape(40, 4)
    with NumPack(path, drop_if_exists=True) as n:
        n.save({"a": a, "other": np.arange(3)})
        n.drop("a", [5])
    x = from_store(path, "a", chunks=10)
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(x.compute(), _live(a, [5]))
        with NumPack(path) as n:
            change(n)
        with pytest.raises(StoreChangedError, match='array "a" of store'):
            x.compute()
        with pytest.raises(StoreChangedError):
            x.blocks[0].compute()
        # A graph built again reads the new state.
        with NumPack(path) as n:
            if n.has_array("a"):
                np.testing.assert_array_equal(
                    from_store(path, "a", chunks=7).compute(), n.load("a"))


def test_commits_to_other_arrays_do_not_matter(path):
    a = np.arange(40.0).reshape(20, 2)
    with NumPack(path, drop_if_exists=True) as n:
        n.save({"a": a, "b": np.arange(5)})
    x = from_store(path, "a", chunks=6)
    with NumPack(path) as n:
        n.append({"b": np.arange(5)})
        n.save({"c": np.ones(3)})
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(x.compute(), a)


def test_chunk_reads_one_state(path, monkeypatch):
    """The identity is read in the chunk's transaction: a commit cannot
    fall between the rows read and the identity checked."""
    a = np.arange(40.0).reshape(20, 2)
    with NumPack(path, drop_if_exists=True) as n:
        n.save({"a": a})
    x = from_store(path, "a", chunks=5)
    src = next(iter(x.dask.values()))[1]
    import numpack_sqlite.dask as nd
    real = nd._identity
    done = []

    def late_identity(con, p, name):
        # Another connection tries to commit between the read and the
        # check: it must wait until the chunk's transaction is over.
        def writer():
            with NumPack(p) as n:
                n.replace({"a": np.zeros(2)}, [0])
            done.append(time.monotonic())
        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.3)
        asked = time.monotonic()
        assert not done
        ident = real(con, p, name)
        late_identity.thread, late_identity.asked = t, asked
        return ident

    monkeypatch.setattr(nd, "_identity", late_identity)
    rows = _read_rows(src, 0, 5)
    monkeypatch.setattr(nd, "_identity", real)
    late_identity.thread.join()
    np.testing.assert_array_equal(rows, a[:5])
    assert done[0] > late_identity.asked
    with pytest.raises(StoreChangedError):
        _read_rows(src, 0, 5)


def _slow(block):
    time.sleep(0.25)
    return block


def test_commit_while_the_graph_runs(client, path):
    """Twelve chunks read one after another on two workers (each followed
    by a pause), a commit landing halfway: the result is the old state or
    StoreChangedError, never a mix; here it is the error."""
    a = np.arange(1200, dtype=np.float64).reshape(120, 10)
    with NumPack(path, drop_if_exists=True) as n:
        n.save({"a": a})
    x = from_store(path, "a", chunks=10)
    y = x.map_blocks(_slow, dtype=x.dtype)
    warm = x.map_blocks(_slow, dtype=x.dtype, name="warm-up")
    np.testing.assert_array_equal(client.compute(warm).result(), a)

    fut = client.compute(y)
    time.sleep(0.7)
    assert not fut.done()
    with NumPack(path) as n:
        n.replace({"a": -a[:60]}, slice(0, 60))
    with pytest.raises(StoreChangedError):
        fut.result()
    # Whenever the commit lands, a result is one state or the other.
    np.testing.assert_array_equal(
        client.compute(from_store(path, "a")).result()[:60], -a[:60])
    for delay in (0.0, 0.2, 0.5):
        z = from_store(path, "a", chunks=10)
        old = client.compute(z).result()
        fut = client.compute(z.map_blocks(_slow, dtype=z.dtype))
        time.sleep(delay)
        with NumPack(path) as n:
            n.replace({"a": n.load("a")[::-1].copy()}, slice(None))
        try:
            got = fut.result()
        except StoreChangedError:
            continue
        np.testing.assert_array_equal(got, old)


# ---- to_store ---------------------------------------------------------------

def test_to_store_round_trip(client, path, rng):
    a = rng.random((97, 3, 2)).astype(np.float32)
    x = da.from_array(a, chunks=((10, 1, 40, 20, 26), (2, 1), (1, 1)))
    with NumPack(path, drop_if_exists=True) as n:
        n.save({"old": np.arange(4)})
    to_store(x * 2, path, "b")
    with NumPack(path) as n:
        assert n.get_member_list() == ["old", "b"]
        got = n.load("b")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, a * 2)
    # Over an existing array, as save() replaces it; WINDOW chunks at once.
    to_store(da.arange(50, chunks=7), path, "b", window=3)
    with NumPack(path) as n:
        np.testing.assert_array_equal(n.load("b"), np.arange(50))
    # From a store into the same array of the same store: the chunks read
    # the committed state while the transaction replaces it.
    to_store(from_store(path, "b", chunks=9) + 1, path, "b")
    with NumPack(path) as n:
        np.testing.assert_array_equal(n.load("b"), np.arange(50) + 1)


def test_to_store_empty_and_new_store(client, tmp_path):
    p = tmp_path / "fresh.npk"
    to_store(da.zeros((0, 4), chunks=2, dtype=np.int16), p, "e")
    to_store(da.ones((6,), chunks=4, dtype=bool), p, "f")
    with NumPack(p) as n:
        e = n.load("e")
        assert e.shape == (0, 4) and e.dtype == np.int16
        np.testing.assert_array_equal(n.load("f"), np.ones(6, bool))


def _checks_invisible(path, name):
    def check(block):
        # Runs on a worker while to_store's transaction is open: the
        # committed state has none of it.
        with NumPack(path) as n:
            if n.has_array(name):
                raise AssertionError("to_store's rows seen before commit")
        return block
    return check


def test_to_store_is_one_transaction(client, path):
    with NumPack(path, drop_if_exists=True) as n:
        n.save({"other": np.arange(3)})
    x = da.arange(30, chunks=5)
    to_store(x.map_blocks(_checks_invisible(str(path), "n"), dtype=x.dtype),
             path, "n")
    with NumPack(path) as n:
        np.testing.assert_array_equal(n.load("n"), np.arange(30))


class Boom(Exception):
    pass


def _fails_at(k):
    def f(block, block_info=None):
        if block_info[0]["chunk-location"][0] == k:
            raise Boom("chunk %d" % k)
        return block
    return f


def test_to_store_failure_leaves_nothing(client, path, tmp_path):
    x = da.arange(40, chunks=5, dtype=np.int64)
    bad = x.map_blocks(_fails_at(5), dtype=x.dtype)
    with NumPack(path, drop_if_exists=True) as n:
        n.save({"keep": np.arange(7.0), "old": np.arange(3)})
        n.drop("keep", [0])
        before = n.get_metadata()
    with pytest.raises(Boom):
        to_store(bad, path, "new")
    with pytest.raises(Boom):
        to_store(bad, path, "old")
    with NumPack(path) as n:
        assert n.get_member_list() == ["keep", "old"]
        np.testing.assert_array_equal(n.load("old"), np.arange(3))
        np.testing.assert_array_equal(n.load("keep"), np.arange(1.0, 7.0))
        assert n.get_metadata() == before
    assert sorted(os.listdir(path)) == sorted(
        f for f in os.listdir(path) if "new" not in f)
    # A store that had no array at all.
    fresh = tmp_path / "fresh.npk"
    with pytest.raises(Boom):
        to_store(bad, fresh, "new")
    with NumPack(fresh) as n:
        assert n.get_member_list() == []


def test_to_store_refusals(path):
    with NumPack(path, drop_if_exists=True) as n:
        n.save({"a": np.arange(3)})
    with pytest.raises(ValueError, match="not supported"):
        to_store(da.from_array(np.array(["x", "y"])), path, "s")
    with pytest.raises(ValueError, match="0-d"):
        to_store(da.from_array(np.float64(1.0)), path, "z")
    x = da.arange(10, chunks=3)
    with pytest.raises(ValueError, match="unknown size"):
        to_store(x[x > 4], path, "u")
    with NumPack(path) as n:
        assert n.get_member_list() == ["a"]


def test_module_named_explicitly(client, path):
    """module= goes with the graph: the workers load that extension."""
    from numpack_sqlite._sql import module_candidates
    so = module_candidates()[0]
    a = np.arange(20.0).reshape(10, 2)
    with NumPack(path, drop_if_exists=True, module=so) as n:
        n.save({"a": a})
    x = from_store(path, "a", chunks=3, module=so)
    np.testing.assert_array_equal(client.compute(x).result(), a)
    to_store(x * 3, path, "b", module=so)
    with NumPack(path, module=so) as n:
        np.testing.assert_array_equal(n.load("b"), a * 3)
    with pytest.raises(RuntimeError, match="cannot load"):
        from_store(path, "a", module="/nonexistent/numpack.so")


def test_compute_consistent_builds_again(client, path):
    """A commit landing while the graph runs: compute_consistent builds it
    again and gives the new state whole."""
    a = np.arange(1200, dtype=np.float64).reshape(120, 10)
    with NumPack(path, drop_if_exists=True) as n:
        n.save({"a": a})
    builds = []

    def build():
        builds.append(1)
        return from_store(path, "a", chunks=10).map_blocks(
            _slow, dtype=np.float64).sum(axis=0)

    def commit_later():
        time.sleep(0.7)
        with NumPack(path) as n:
            n.replace({"a": -a}, slice(None))

    t = threading.Thread(target=commit_later)
    t.start()
    got = compute_consistent(build)
    t.join()
    assert len(builds) == 2
    np.testing.assert_array_equal(got, (-a).sum(axis=0))
    # Without commits: one build; a store that keeps changing: the error.
    builds.clear()
    np.testing.assert_array_equal(compute_consistent(build), (-a).sum(axis=0))
    assert len(builds) == 1

    def always_stale():
        x = from_store(path, "a", chunks=60)
        with NumPack(path) as n:
            n.append({"a": a[:1]})
        return x
    with pytest.raises(StoreChangedError):
        compute_consistent(always_stale, retries=2)
