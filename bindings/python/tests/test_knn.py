"""top_k and multi_query_top_k: the K nearest live rows of a stored array,
computed by the extension, against NumPy brute force: logical indexes as
getitem takes them (after deletions), distances, every metric, batch mode's
pending rows, and the errors."""
import numpy as np
import pytest

from numpack_sqlite import NumPack


def brute(a, q, k, metric):
    x = a.astype(np.float64)
    qq = np.asarray(q, np.float64).reshape(-1)
    if metric == "l2":
        d = np.sqrt(((x - qq) ** 2).sum(axis=1))
    elif metric == "l2sq":
        d = ((x - qq) ** 2).sum(axis=1)
    elif metric == "dot":
        d = -(x @ qq)
    elif metric == "cosine":
        d = 1 - (x @ qq) / (np.linalg.norm(x, axis=1) * np.linalg.norm(qq))
    elif metric == "hamming":
        d = (np.unpackbits(a, axis=1) !=
             np.unpackbits(np.asarray(q, np.uint8))).sum(axis=1).astype(float)
    order = np.lexsort((np.arange(len(d)), d))[:k]
    return order, d[order]


@pytest.mark.parametrize("metric", ["l2", "l2sq", "cosine", "dot"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int8"])
def test_top_k_matches_numpy(npk, rng, metric, dtype):
    a = rng.integers(-5, 6, (400, 8)).astype(dtype)
    a[0] = 1  # no zero rows for cosine
    a[np.abs(a.astype(float)).sum(axis=1) == 0] = 1
    npk.save({"v": a})
    q = rng.integers(-5, 6, 8)
    idx, dist = npk.top_k("v", q, 10, metric=metric)
    want_i, want_d = brute(a, q, 10, metric)
    assert idx.dtype == np.int64 and idx.shape == (10,)
    assert list(idx) == list(want_i)
    np.testing.assert_allclose(dist, want_d, rtol=1e-6, atol=1e-9)


def test_logical_indexes_after_deletion(npk, rng):
    a = rng.standard_normal((1000, 16)).astype(np.float32)
    npk.save({"v": a})
    npk.drop("v", list(range(0, 1000, 3)))
    live = np.delete(a, list(range(0, 1000, 3)), axis=0)
    q = rng.standard_normal(16).astype(np.float32)
    idx, dist = npk.top_k("v", q, 5)
    d = np.sqrt(((live - q) ** 2).sum(axis=1, dtype=np.float32))
    assert list(idx) == list(np.argsort(d, kind="stable")[:5])
    # What getitem gives at those indexes is what was nearest.
    rows = npk.getitem("v", idx.tolist())
    np.testing.assert_allclose(np.sqrt(((rows - q) ** 2).sum(axis=1)), dist,
                               rtol=1e-5)


def test_multi_query(npk, rng):
    a = rng.standard_normal((3000, 32)).astype(np.float32)
    npk.save({"v": a})
    qs = rng.standard_normal((20, 32)).astype(np.float32)
    idx, dist = npk.multi_query_top_k("v", qs, 4, metric="cosine")
    assert idx.shape == (20, 4) and dist.shape == (20, 4)
    for i in range(20):
        one_i, one_d = npk.top_k("v", qs[i], 4, metric="cosine")
        assert list(idx[i]) == list(one_i)
        np.testing.assert_array_equal(dist[i], one_d)
        want_i, _ = brute(a, qs[i], 4, "cosine")
        assert list(idx[i]) == list(want_i)


def test_multi_query_of_no_query(npk, rng):
    # As NumPy answers an empty batch: arrays of shape (0, min(k, live
    # rows)), not an error; the width of the queries is still checked.
    a = rng.standard_normal((30, 8)).astype(np.float32)
    npk.save({"v": a})
    npk.drop("v", [0, 1])
    idx, dist = npk.multi_query_top_k("v", np.zeros((0, 8), np.float32), 4)
    assert idx.shape == (0, 4) and idx.dtype == np.int64
    assert dist.shape == (0, 4) and dist.dtype == np.float64
    idx, dist = npk.multi_query_top_k("v", np.zeros((0, 8)), 100)
    assert idx.shape == (0, 28) and dist.shape == (0, 28)
    with pytest.raises(ValueError):
        npk.multi_query_top_k("v", np.zeros((0, 7), np.float32), 4)
    with pytest.raises(ValueError):
        npk.multi_query_top_k("v", np.zeros((0, 8), np.float32), 0)
    with pytest.raises(KeyError):
        npk.multi_query_top_k("nope", np.zeros((0, 8), np.float32), 4)


def test_k_beyond_rows_and_hamming(npk, rng):
    a = rng.integers(0, 256, (50, 4)).astype(np.uint8)
    npk.save({"bits": a})
    q = a[7].copy()
    idx, dist = npk.top_k("bits", q, 1000, metric="hamming")
    assert len(idx) == 50
    assert idx[0] == 7 and dist[0] == 0
    want_i, want_d = brute(a, q, 50, "hamming")
    assert list(idx) == list(want_i)
    np.testing.assert_array_equal(dist, want_d)


def test_batch_mode_sees_pending_rows(path, rng):
    a = rng.standard_normal((100, 4)).astype(np.float32)
    with NumPack(path, drop_if_exists=True) as npk:
        npk.save({"v": a})
        with npk.batch_mode():
            npk.append({"v": np.full((1, 4), 9, np.float32)})
            idx, dist = npk.top_k("v", [9, 9, 9, 9], 1)
            assert idx[0] == 100 and dist[0] == 0


def test_errors(npk, rng):
    npk.save({"v": rng.standard_normal((10, 4)).astype(np.float32)})
    with pytest.raises(ValueError):
        npk.top_k("v", [1, 2, 3, 4], 0)
    with pytest.raises(ValueError):
        npk.top_k("v", [1, 2, 3, 4], 2.5)
    with pytest.raises(Exception, match="the rows have 4"):
        npk.top_k("v", [1, 2, 3], 2)
    with pytest.raises(Exception, match="unknown metric"):
        npk.top_k("v", [1, 2, 3, 4], 2, metric="manhattan")
    with pytest.raises(Exception, match="hamming needs uint8"):
        npk.top_k("v", [1, 2, 3, 4], 2, metric="hamming")
    with pytest.raises(KeyError):
        npk.top_k("missing", [1, 2, 3, 4], 2)
