"""Exceptions as NumPack raises them, where its methods differ.

NumPack (read: its Python layer 0.4.5 and the Rust core of that line)
raises a different type for the same mistake depending on the method: a
missing array is a KeyError to load() but a ValueError to append() and a
RuntimeError (its core's error) to update(); a row out of range is a
RuntimeError to getitem() and a ValueError to replace(); a wrong index
type or value dtype is a TypeError where its Rust core refuses it.  The
binding raises one type per mistake, derived from all of these, so that
code written against NumPack catches what it expects, and nothing is
changed by the refused call.
"""
import numpy as np
import pytest

from numpack_sqlite import (ArrayNotFoundError, NumPack, RowIndexError,
                            WrongTypeError)


@pytest.fixture
def full(npk):
    npk.save({"a": np.arange(12.0).reshape(4, 3),
              "i": np.arange(5, dtype=np.int32)})
    return npk


def _state(npk):
    return {n: npk.load(n).tolist() for n in npk.get_member_list()}


@pytest.mark.parametrize("call, numpack_type", [
    (lambda n: n.load("nope"), KeyError),
    (lambda n: n.getitem("nope", [0]), KeyError),
    (lambda n: n.get_shape("nope"), KeyError),
    (lambda n: n.append({"nope": np.zeros((1, 3))}), ValueError),
    (lambda n: n.update("nope"), RuntimeError),
    (lambda n: n.stream_load("nope"), KeyError),
    (lambda n: n.clone("nope", "x"), KeyError),
], ids=["load", "getitem", "get_shape", "append", "update", "stream_load",
        "clone"])
def test_missing_array(full, call, numpack_type):
    before = _state(full)
    for kind in (numpack_type, KeyError, ArrayNotFoundError):
        with pytest.raises(kind, match='no array "nope"'):
            call(full)
    assert _state(full) == before


@pytest.mark.parametrize("call, numpack_type", [
    (lambda n: n.getitem("a", [0, 4]), RuntimeError),
    (lambda n: n.getitem("a", 7), RuntimeError),
    (lambda n: n.replace({"a": np.zeros((1, 3))}, [4]), ValueError),
    (lambda n: n.replace({"a": np.zeros((1, 3))}, -5), ValueError),
], ids=["getitem-list", "getitem-int", "replace-list", "replace-int"])
def test_row_out_of_range(full, call, numpack_type):
    before = _state(full)
    for kind in (numpack_type, IndexError, RowIndexError):
        with pytest.raises(kind, match="out of range"):
            call(full)
    assert _state(full) == before


@pytest.mark.parametrize("call", [
    lambda n: n.getitem("a", [0.5, 1.0]),
    lambda n: n.getitem("a", "0"),
    lambda n: n.replace({"a": np.zeros(3)}, 1.0),
    lambda n: n.drop("a", {0}),
    lambda n: n.replace({"i": np.full(5, 0.5)}, slice(None)),
    lambda n: n.append({"i": np.array([1.5])}),
    lambda n: n.save({0: np.zeros(3)}),
    lambda n: n.drop(7),
    lambda n: n.stream_load("a", "2"),
    lambda n: n.stream_load("a", 2.0),
], ids=["getitem-floats", "getitem-str", "replace-float", "drop-set",
        "replace-dtype", "append-dtype", "save-name", "drop-name",
        "stream-str", "stream-float"])
def test_wrong_types(full, call):
    before = _state(full)
    for kind in (TypeError, ValueError, WrongTypeError):
        with pytest.raises(kind):
            call(full)
    assert _state(full) == before


def test_wrong_index_type_keeps_numpack_text(full):
    with pytest.raises(TypeError, match="The indexes must be int or list"):
        full.getitem("a", "0")


def test_stream_load_checks_at_the_call(full):
    # NumPack's stream_load checks its arguments when called, not when
    # the first batch is asked for.
    for bad in (0, -3):
        with pytest.raises(ValueError, match="greater than 0"):
            full.stream_load("a", bad)
    with pytest.raises(KeyError):
        full.stream_load("nope", 2)
    assert [b.shape for b in full.stream_load("a")] == [(1, 3)] * 4


def test_closed_instance(path):
    n = NumPack(path)
    assert n.get_io_stats() == {"backend_type": "sqlite-c",
                                "stats_available": False}
    with pytest.raises(RuntimeError, match="not opened"):
        n.get_member_list()
    with n:
        n.save({"a": np.arange(3)})
    for call in (lambda: n.load("a"), lambda: list(n), lambda: n["a"],
                 lambda: n.has_array("a"), lambda: n.get_shape("a")):
        with pytest.raises(RuntimeError, match="not opened"):
            call()
    n.close()                                   # idempotent
    with n as again:                            # a closed instance reopens
        assert again.get_member_list() == ["a"]
    assert n.is_closed and not n.is_opened


def test_io_stats_never_refused(path):
    # NumPack's get_io_stats checks nothing, not even strict_context_mode.
    n = NumPack(path, strict_context_mode=True)
    assert n.get_io_stats()["stats_available"] is False
    n.open()
    try:
        with pytest.raises(RuntimeError, match="strict context mode"):
            n.get_member_list()
        stats = n.get_io_stats()
        assert stats["backend_type"] == "sqlite-c"
        assert stats["stats_available"] is True and "commits" in stats
    finally:
        n.close()


def test_module_functions():
    # NumPack's package exports these next to the classes; code (and
    # NumPack's own tests) import them.
    from numpack_sqlite import (BatchModeContext, LazyArray,
                                force_cleanup_windows_handles,
                                get_backend_info)
    import numpack_sqlite
    assert isinstance(BatchModeContext, type) and isinstance(LazyArray, type)
    assert force_cleanup_windows_handles() is True
    info = get_backend_info()
    assert info["backend_type"] == "sqlite-c"
    assert info["version"] == numpack_sqlite.__version__
    assert isinstance(info["platform"], str) and info["is_windows"] is False
    for name in ("NumPack", "LazyArray", "BatchModeContext",
                 "force_cleanup_windows_handles", "get_backend_info"):
        assert name in numpack_sqlite.__all__
