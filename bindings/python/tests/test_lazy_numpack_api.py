"""LazyArray's operators and row access methods, as NumPack's LazyArray has
them (its own tests call them): operators give NumPy's result on the live
rows as a new ndarray, in-place ones too; bitwise ones refuse float and
complex arrays with NumPack's TypeError; vectorized_gather,
parallel_boolean_index (and its two aliases), mega_batch_get_rows,
choose_optimal_algorithm, intelligent_warmup and get_performance_stats
behave as NumPack's.  Every case on an array with deleted rows (logical
rows) and on a reshaped view."""
import operator

import numpy as np
import pytest

DTYPES = [np.bool_, np.int8, np.uint16, np.int32, np.int64, np.float16,
          np.float32, np.float64, np.complex64]


def _values(dtype, shape, rng):
    if dtype == np.bool_:
        return rng.random(shape) > 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(1, 50, shape).astype(dtype)
    return (rng.random(shape) * 10 + 1).astype(dtype)


@pytest.fixture
def lazy_and_data(npk, rng):
    def make(dtype=np.float32, shape=(12, 4), drop=(0, 5)):
        data = _values(dtype, shape, rng)
        npk.save({"x": data})
        npk.drop("x", list(drop))
        return npk.load("x", lazy=True), np.delete(data, list(drop), axis=0)
    return make


def _same(got, want):
    assert isinstance(got, np.ndarray)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


ARITH = [operator.add, operator.sub, operator.mul, operator.truediv,
         operator.floordiv, operator.mod, operator.pow]


@pytest.mark.parametrize("dtype", DTYPES)
def test_arithmetic_and_comparison(lazy_and_data, dtype):
    lazy, data = lazy_and_data(dtype)
    scalar = True if dtype == np.bool_ else (
        2 if np.issubdtype(dtype, np.integer) else 2.5)
    with np.errstate(all="ignore"):
        for op in ARITH:
            if dtype == np.bool_ and op in (operator.sub, operator.pow):
                continue
            if np.issubdtype(dtype, np.complexfloating) and \
                    op in (operator.floordiv, operator.mod):
                continue
            try:
                want = op(data, scalar)
            except TypeError:
                with pytest.raises(TypeError):
                    op(lazy, scalar)
                continue
            _same(op(lazy, scalar), want)
            _same(op(scalar, lazy), op(scalar, data))
            _same(op(lazy, data), op(data, data))
            _same(op(lazy, lazy), op(data, data))
    for op in (operator.eq, operator.ne, operator.lt, operator.le,
               operator.gt, operator.ge):
        if np.issubdtype(dtype, np.complexfloating) and \
                op not in (operator.eq, operator.ne):
            continue
        _same(op(lazy, scalar), op(data, scalar))
        _same(op(scalar, lazy), op(scalar, data))
    if dtype != np.bool_:
        _same(-lazy, -data)
        _same(+lazy, +data)
    _same(abs(lazy), abs(data))


def test_chains_and_numpy_functions(lazy_and_data):
    lazy, data = lazy_and_data(np.float32)
    _same((lazy + 2) * 3 - 1, (data + 2) * 3 - 1)
    _same((lazy > 2) & (lazy < 8), (data > 2) & (data < 8))
    _same(np.sqrt(lazy ** 2 + 1), np.sqrt(data ** 2 + 1))
    _same(lazy @ data.T, data @ data.T)
    _same(data.T @ lazy, data.T @ data)


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.bool_])
def test_bitwise(lazy_and_data, dtype):
    lazy, data = lazy_and_data(dtype)
    other = True if dtype == np.bool_ else 3
    for op in (operator.and_, operator.or_, operator.xor):
        _same(op(lazy, other), op(data, other))
        _same(op(other, lazy), op(other, data))
    if dtype != np.bool_:
        _same(lazy << 1, data << 1)
        _same(lazy >> 1, data >> 1)
    _same(~lazy, ~data)


@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_bitwise_refused_on_floats(lazy_and_data, dtype):
    lazy, _ = lazy_and_data(dtype)
    for call in (lambda: lazy & 1, lambda: 1 | lazy, lambda: lazy ^ 1,
                 lambda: lazy << 1, lambda: ~lazy):
        with pytest.raises(TypeError, match="Bitwise operations are only "
                           "supported for integer arrays"):
            call()


def test_in_place_operators_give_ndarrays(lazy_and_data, npk):
    lazy, data = lazy_and_data(np.float32)
    lazy += 2.5
    _same(lazy, data + 2.5)
    again = npk.load("x", lazy=True)
    again *= 2.5
    _same(again, data * 2.5)
    np.testing.assert_array_equal(npk.load("x"), data)   # store unchanged


def test_reshaped_views_have_them_too(lazy_and_data):
    lazy, data = lazy_and_data(np.int32, (12, 4), (3,))
    view = lazy.reshape(-1, 2)
    want = data.reshape(-1, 2)
    _same(view * 2, want * 2)
    _same(view & 1, want & 1)
    _same(view.vectorized_gather([0, 5, 21]), want[[0, 5, 21]])


def test_row_access_methods(lazy_and_data):
    lazy, data = lazy_and_data(np.float64, (30, 3), (1, 2, 29))
    idx = [0, 10, 26, 3, -1]
    _same(lazy.vectorized_gather(idx), data[idx])
    _same(lazy.vectorized_gather(np.array(idx)), data[idx])
    _same(lazy.vectorized_gather([]), data[[]])
    with pytest.raises(IndexError):
        lazy.vectorized_gather([27])
    mask = np.arange(len(data)) % 3 == 0
    for name in ("parallel_boolean_index", "boolean_index_production",
                 "boolean_index_adaptive_algorithm"):
        _same(getattr(lazy, name)(mask), data[mask])
        _same(getattr(lazy, name)(mask.tolist()), data[mask])
        with pytest.raises(ValueError, match="Mask length"):
            getattr(lazy, name)([True, False])
    rows = lazy.mega_batch_get_rows(idx, 2)
    assert isinstance(rows, list) and len(rows) == len(idx)
    for got, i in zip(rows, idx):
        _same(got, data[i])
    assert len(lazy.mega_batch_get_rows(idx, 0)) == len(idx)
    with pytest.raises((ValueError, TypeError, OverflowError)):
        lazy.mega_batch_get_rows([0, 1], -1)
    for m, name in ((np.zeros(len(data), bool), "ZeroCopy"),
                    (np.ones(len(data), bool), "Vectorized"),
                    (np.arange(len(data)) < 20, "Parallel"),
                    (mask, "Adaptive")):
        assert lazy.choose_optimal_algorithm(m) == name


def test_warmup_and_stats(lazy_and_data):
    lazy, data = lazy_and_data(np.float32, (100, 8), ())
    for hint in ("sequential", "random", "boolean", "heavy"):
        assert lazy.intelligent_warmup(hint) is None
    with pytest.raises(ValueError, match="hint"):
        lazy.intelligent_warmup("invalid_hint")
    _same(lazy[10:20], data[10:20])
    stats = lazy.get_performance_stats()
    assert [k for k, _ in stats] == [
        "cache_hits", "cache_misses", "hit_rate", "cache_blocks",
        "current_cache_size", "max_cache_size"]
    assert all(isinstance(v, float) for _, v in stats)
    assert dict(stats)["cache_misses"] >= 1


def test_no_astype_or_copy(lazy_and_data):
    # NumPack's LazyArray has neither (its tests say so): np.asarray first.
    lazy, _ = lazy_and_data()
    assert not hasattr(lazy, "astype") and not hasattr(lazy, "copy")
    assert hash(lazy) == hash(lazy)
