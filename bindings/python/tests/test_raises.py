"""Every row of the reference's "Raises" tables, and the errors the binding
adds where the reference is silent (documented in README.md)."""
import numpy as np
import pytest

from numpack_sqlite import NumPack


@pytest.fixture
def full(npk):
    npk.save({"a": np.arange(10.0), "m": np.ones((4, 3), np.float32)})
    return npk


A = {"a": np.arange(3.0)}

# The methods whose Raises table has "RuntimeError: If instance is not
# opened or closed", with a call that would otherwise succeed.
RUNTIME_ROWS = {
    "save": lambda n: n.save(A),
    "load": lambda n: n.load("a"),
    "replace": lambda n: n.replace({"a": np.zeros(1)}, [0]),
    "append": lambda n: n.append(A),
    "drop": lambda n: n.drop("a", [0]),
}
# Every other method behaves the same way.
OTHER_CALLS = {
    "load_lazy": lambda n: n.load("a", lazy=True),
    "getitem": lambda n: n.getitem("a", 0),
    "stream_load": lambda n: n.stream_load("a"),
    "get_shape": lambda n: n.get_shape("a"),
    "get_member_list": lambda n: n.get_member_list(),
    "has_array": lambda n: n.has_array("a"),
    "get_modify_time": lambda n: n.get_modify_time("a"),
    "get_metadata": lambda n: n.get_metadata(),
    "clone": lambda n: n.clone("a", "b"),
    "reset": lambda n: n.reset(),
    "update": lambda n: n.update("a"),
    "batch_mode": lambda n: n.batch_mode().__enter__(),
    "writable_batch_mode": lambda n: n.writable_batch_mode().__enter__(),
    "__getitem__": lambda n: n["a"],
    "__iter__": lambda n: iter(n),
}
ALL_CALLS = {**RUNTIME_ROWS, **OTHER_CALLS}


@pytest.mark.parametrize("method", list(ALL_CALLS))
def test_runtime_error_not_opened(path, method):
    npk = NumPack(path)
    with pytest.raises(RuntimeError, match="not opened"):
        ALL_CALLS[method](npk)


@pytest.mark.parametrize("method", list(ALL_CALLS))
def test_runtime_error_closed(path, method):
    with NumPack(path) as npk:
        npk.save(A)
    assert npk.is_closed
    with pytest.raises(RuntimeError, match="not opened or has been closed"):
        ALL_CALLS[method](npk)
    npk.open()                    # and it works again once reopened
    ALL_CALLS[method](npk)
    npk.close()


@pytest.mark.parametrize("method", list(ALL_CALLS))
def test_runtime_error_strict_context_mode(path, method):
    with NumPack(path) as npk:
        npk.save(A)
    npk = NumPack(path, strict_context_mode=True)
    npk.open()
    with pytest.raises(RuntimeError, match="strict context mode"):
        ALL_CALLS[method](npk)
    npk.close()
    with npk:
        ALL_CALLS[method](npk)


NOT_DICTS = [[("a", np.zeros(2))], (("a", np.zeros(2)),), np.zeros(3), None,
             "a", 5]


# NumPack's messages, which callers match on; extra detail may follow.
NOT_DICT_TEXT = r"^arrays must be a dictionary"
BAD_INDEX_TEXT = r"^The indexes must be int or list or numpy\.ndarray or slice"
# NumPack's drop() has words of its own for it.
BAD_DROP_INDEX_TEXT = (r"^The indexes must be int, list, tuple, "
                       r"numpy\.ndarray or slice")
BAD_INDEXES = ["1", 1.5, {1}, [1.5], True, np.array([[1]]), np.array([0.5]),
               object()]


@pytest.mark.parametrize("batch", [None, "batch_mode"])
def test_not_dict_has_numpacks_text(full, batch):
    ctx = getattr(full, batch)() if batch else None
    if ctx:
        ctx.__enter__()
    for call in (lambda: full.save([1]), lambda: full.append(None),
                 lambda: full.replace("a", 0)):
        with pytest.raises(ValueError, match=NOT_DICT_TEXT):
            call()
    if ctx:
        ctx.__exit__(None, None, None)
    with full.writable_batch_mode() as wb:
        with pytest.raises(ValueError, match=NOT_DICT_TEXT):
            wb.save([1])
    assert np.array_equal(full.load("a"), np.arange(10.0))


@pytest.mark.parametrize("index", BAD_INDEXES, ids=repr)
def test_bad_index_type_has_numpacks_text(full, index):
    with pytest.raises(ValueError, match=BAD_INDEX_TEXT):
        full.replace({"a": np.zeros(1)}, index)
    with pytest.raises(ValueError, match=BAD_INDEX_TEXT):
        full.getitem("a", index)
    with pytest.raises(ValueError, match=BAD_DROP_INDEX_TEXT):
        full.drop("a", index)
    assert np.array_equal(full.load("a"), np.arange(10.0))


@pytest.mark.parametrize("value", NOT_DICTS, ids=repr)
def test_save_value_error_not_dict(full, value):
    with pytest.raises(ValueError, match="dictionary"):
        full.save(value)


@pytest.mark.parametrize("value", NOT_DICTS, ids=repr)
def test_replace_value_error_not_dict(full, value):
    with pytest.raises(ValueError, match="dictionary"):
        full.replace(value, 0)
    assert np.array_equal(full.load("a"), np.arange(10.0))


@pytest.mark.parametrize("value", NOT_DICTS, ids=repr)
def test_append_value_error_not_dict(full, value):
    with pytest.raises(ValueError, match="dictionary"):
        full.append(value)
    assert full.get_shape("a") == (10,)


BAD_INDEXES = [1.0, "0", {"a": 1}, {0, 1}, [0.5, 1.5], [True, False],
               np.array([[0, 1]]), np.array([0.0]), True, object(),
               [[0, 1]], ["x"], slice(0.5, 2)]


@pytest.mark.parametrize("idx", BAD_INDEXES, ids=repr)
def test_replace_value_error_index_type(full, idx):
    with pytest.raises(ValueError, match="indexes|integer"):
        full.replace({"a": np.zeros(1)}, idx)
    assert np.array_equal(full.load("a"), np.arange(10.0))


@pytest.mark.parametrize("idx", BAD_INDEXES, ids=repr)
def test_drop_value_error_index_type(full, idx):
    with pytest.raises(ValueError, match="indexes|integer"):
        full.drop("a", idx)
    assert full.get_shape("a") == (10,)


@pytest.mark.parametrize("idx", BAD_INDEXES, ids=repr)
def test_getitem_value_error_index_type(full, idx):
    with pytest.raises(ValueError, match="indexes|integer"):
        full.getitem("a", idx)


@pytest.mark.parametrize("size", [0, -1, -100])
def test_stream_load_value_error_buffer_size(full, size):
    with pytest.raises(ValueError, match="buffer_size"):
        full.stream_load("a", buffer_size=size)


def test_stream_load_buffer_size_none_is_one_row(full):
    batches = list(full.stream_load("a"))
    assert len(batches) == 10 and all(b.shape == (1,) for b in batches)


def test_load_key_error(full):
    with pytest.raises(KeyError, match="nope"):
        full.load("nope")
    with pytest.raises(KeyError, match="nope"):
        full.load("nope", lazy=True)
    with pytest.raises(KeyError):
        full["nope"]


def test_clone_key_error_source_missing(full):
    with pytest.raises(KeyError, match="nope"):
        full.clone("nope", "b")
    assert not full.has_array("b")


def test_clone_value_error_target_exists(full):
    with pytest.raises(ValueError, match="already exists"):
        full.clone("a", "m")
    assert full.get_shape("m") == (4, 3)


# ---- beyond the tables: the binding's own choices --------------------------

@pytest.mark.parametrize("call", [
    lambda n: n.getitem("nope", 0),
    lambda n: n.get_shape("nope"),
    lambda n: n.replace({"nope": np.zeros(1)}, 0),
    lambda n: n.append({"nope": np.zeros(1)}),
    lambda n: n.drop("nope", [0]),
    lambda n: n.update("nope"),
    lambda n: n.stream_load("nope"),
], ids=["getitem", "get_shape", "replace", "append", "drop_rows",
        "update", "stream_load"])
def test_missing_array_is_key_error(full, call):
    with pytest.raises(KeyError, match="nope"):
        call(full)


def test_missing_array_modify_time_is_none(full):
    assert full.get_modify_time("nope") is None
    assert not full.has_array("nope")


@pytest.mark.parametrize("call", [
    lambda n: n.getitem("a", 10),
    lambda n: n.getitem("a", -11),
    lambda n: n.getitem("a", [0, 10]),
    lambda n: n.replace({"a": np.zeros(1)}, 10),
    lambda n: n.drop("a", [3, 99]),
], ids=["getitem", "getitem_negative", "getitem_list", "replace", "drop"])
def test_index_out_of_range_is_index_error(full, call):
    with pytest.raises(IndexError, match="out of range"):
        call(full)
    assert np.array_equal(full.load("a"), np.arange(10.0))


@pytest.mark.parametrize("arrays", [
    {"a/b": np.zeros(2)}, {"..": np.zeros(2)}, {"": np.zeros(2)},
    {"x": np.array(["s"])}, {"x": np.array([1, "a"], dtype=object)},
    {"x": np.float64(3.0)}, {1: np.zeros(2)},
    {"x": np.zeros(2, dtype=np.longdouble)},
], ids=["slash", "dotdot", "empty", "strings", "objects", "0-d", "int name",
        "longdouble"])
def test_bad_arrays_are_value_errors(full, arrays):
    with pytest.raises(ValueError):
        full.save(arrays)
    assert full.get_member_list() == ["a", "m"]


def test_append_mismatch_is_value_error(full):
    with pytest.raises(ValueError, match="shape"):
        full.append({"m": np.ones((2, 4), np.float32)})
    with pytest.raises(ValueError, match="dtype"):
        full.append({"a": np.array([1.5j])})
    with pytest.raises(ValueError, match="dtype"):
        full.append({"a": np.array(["text"])})
    assert full.get_shape("a") == (10,) and full.get_shape("m") == (4, 3)


def test_replace_mismatch_is_value_error(full):
    with pytest.raises(ValueError, match="shape"):
        full.replace({"m": np.ones((2, 4), np.float32)}, [0, 1])
    with pytest.raises(ValueError, match="dtype"):
        full.replace({"a": np.array([1 + 1j])}, 0)
    with pytest.raises(ValueError, match="dtype"):
        full.replace({"m": np.ones(3) * 1.5j}, 0)


def test_replace_integer_range_is_checked(npk):
    npk.save({"u": np.zeros(3, np.uint8)})
    npk.replace({"u": [7, 255]}, [0, 1])           # Python ints that fit
    assert npk.load("u").tolist() == [7, 255, 0]
    with pytest.raises(ValueError):
        npk.replace({"u": [256]}, [2])
    with pytest.raises(ValueError):
        npk.replace({"u": np.array([1], np.int64)}, [2])   # not same_kind
    npk.replace({"u": np.array([9], np.uint8)}, [2])
    assert npk.load("u").tolist() == [7, 255, 9]


def test_drop_names_must_be_strings(full):
    with pytest.raises(ValueError, match="array_name"):
        full.drop(5)
    with pytest.raises(ValueError, match="array_name"):
        full.drop(["a", 5])


def test_batch_modes_of_different_kinds_do_not_nest(full):
    with full.batch_mode():
        with pytest.raises(RuntimeError, match="other kind"):
            full.writable_batch_mode().__enter__()
    with full.writable_batch_mode():
        with pytest.raises(RuntimeError, match="other kind"):
            full.batch_mode().__enter__()


def test_a_batch_block_cannot_be_entered_twice(full):
    for make in (full.batch_mode, full.writable_batch_mode):
        block = make()
        with block:
            with pytest.raises(RuntimeError, match="already active"):
                block.__enter__()
            with make() as inner:
                with pytest.raises(RuntimeError, match="already active"):
                    inner.__enter__()
    assert np.array_equal(full.load("a"), np.arange(10.0))


def test_memory_limit_must_be_positive(full):
    for bad in (0, -1, "10", True):
        with pytest.raises(ValueError, match="memory_limit"):
            full.batch_mode(memory_limit=bad)


def test_bad_module_is_runtime_error(path, tmp_path):
    npk = NumPack(path, module=str(tmp_path / "no-such-module.so"))
    with pytest.raises(RuntimeError, match="cannot load the numpack"):
        npk.open()
    assert npk.is_closed


def test_warn_no_context(path):
    with pytest.warns(UserWarning, match="strict context mode"):
        NumPack(path, warn_no_context=True)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NumPack(path, warn_no_context=True, strict_context_mode=True)
        NumPack(path)   # default: warns on Windows only
