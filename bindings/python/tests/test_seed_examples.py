"""Every example of the NumPack class API reference, run as written.

Each snippet below is the reference's text unchanged.  The examples import
``from numpack import NumPack``: here ``numpack`` is this binding
(numpack_sqlite), and they run in a fresh temporary directory, so their
``'data.npk'`` is a store of the test's own.  The names the reference leaves
to the reader (``data``, ``new_row``, ``new_rows``, ``process``, the arrays
``'array'``, ``'temp_array'``, ...) are given values first; the checks after
each snippet are the test's.

One change is needed: the save example's ``np.array([0, 1, 0, 1, ...])``
holds a literal Ellipsis, which makes an object array no store can hold.
It is run as written (and refused with ValueError), then with the
Ellipsis removed.
"""
import sys

import numpy as np
import pytest

import numpack_sqlite
from numpack_sqlite import NumPack, LazyArray


EXAMPLES = {}

EXAMPLES["constructor"] = '''\
from numpack import NumPack

# Basic usage
npk = NumPack('data.npk')

# With options
npk = NumPack(
    'data.npk',
    drop_if_exists=True,
    strict_context_mode=True
)
'''

EXAMPLES["open"] = '''\
npk = NumPack('data.npk')
npk.open()
# ... operations ...
npk.close()
'''

EXAMPLES["close"] = '''\
npk = NumPack('data.npk')
npk.open()
npk.save({'array': data})
npk.close()
'''

EXAMPLES["save"] = '''\
import numpy as np
from numpack import NumPack

with NumPack('data.npk', drop_if_exists=True) as npk:
    npk.save({
        'features': np.random.rand(1000, 128),
        'labels': np.array([0, 1, 0, 1, ...])
    })
'''

EXAMPLES["load"] = '''\
with NumPack('data.npk') as npk:
    # Eager loading
    features = npk.load('features')
    
    # Lazy loading (memory-mapped)
    lazy_features = npk.load('features', lazy=True)
'''

EXAMPLES["replace"] = '''\
with NumPack('data.npk') as npk:
    # Replace single row
    npk.replace({'features': new_row}, 0)
    
    # Replace multiple rows
    npk.replace({'features': new_rows}, [0, 5, 10])
    
    # Replace range
    npk.replace({'features': new_rows}, slice(0, 10))
'''

EXAMPLES["append"] = '''\
with NumPack('data.npk') as npk:
    # Append new rows
    new_data = np.random.rand(100, 128)
    npk.append({'features': new_data})
'''

EXAMPLES["drop"] = '''\
with NumPack('data.npk') as npk:
    # Drop entire array
    npk.drop('temp_array')
    
    # Drop multiple arrays
    npk.drop(['array1', 'array2'])
    
    # Drop specific rows
    npk.drop('features', [0, 1, 2])
'''

EXAMPLES["getitem"] = '''\
with NumPack('data.npk') as npk:
    # Get single row
    row = npk.getitem('features', 0)
    
    # Get multiple rows
    rows = npk.getitem('features', [0, 10, 20])
    
    # Get range
    rows = npk.getitem('features', slice(0, 100))
'''

EXAMPLES["stream_load"] = '''\
with NumPack('data.npk') as npk:
    for batch in npk.stream_load('features', buffer_size=10000):
        process(batch)
'''

EXAMPLES["get_shape"] = '''\
with NumPack('data.npk') as npk:
    shape = npk.get_shape('features')
    print(f"Shape: {shape}")  # e.g., (1000, 128)
'''

EXAMPLES["get_member_list"] = '''\
with NumPack('data.npk') as npk:
    arrays = npk.get_member_list()
    print(arrays)  # ['features', 'labels']
'''

EXAMPLES["has_array"] = '''\
with NumPack('data.npk') as npk:
    if npk.has_array('features'):
        data = npk.load('features')
'''

EXAMPLES["get_metadata"] = '''\
with NumPack('data.npk') as npk:
    metadata = npk.get_metadata()
    print(metadata['arrays'])
'''

EXAMPLES["clone"] = '''\
with NumPack('data.npk') as npk:
    npk.clone('original', 'backup')
'''

EXAMPLES["reset"] = '''\
with NumPack('data.npk') as npk:
    npk.reset()
    print(npk.get_member_list())  # []
'''

EXAMPLES["update"] = '''\
with NumPack('data.npk') as npk:
    npk.drop('features', [0, 1, 2, 100, 200])
    npk.update('features')  # Reclaim disk space
'''

EXAMPLES["get_io_stats"] = '''\
with NumPack('data.npk') as npk:
    stats = npk.get_io_stats()
    print(stats['backend_type'])  # 'rust'
'''

EXAMPLES["batch_mode"] = '''\
with NumPack('data.npk') as npk:
    with npk.batch_mode():
        for i in range(100):
            arr = npk.load('array')
            arr *= 2
            npk.save({'array': arr})
'''

EXAMPLES["writable_batch_mode"] = '''\
with NumPack('data.npk') as npk:
    with npk.writable_batch_mode() as wb:
        arr = wb.load('array')
        arr *= 2  # Direct modification
'''

EXAMPLES["__getitem__"] = '''\
arr = npk['features']  # Equivalent to npk.load('features')
'''

EXAMPLES["__iter__"] = '''\
for name in npk:
    print(name)
'''

EXAMPLES["context_manager"] = '''\
with NumPack('data.npk') as npk:
    # Auto-opens on enter, auto-closes on exit
    pass
'''

EXAMPLES["__repr__"] = '''\
print(npk)  # NumPack(data.npk, arrays=2, backend=rust)
'''


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A directory with a 'data.npk' store holding the arrays the examples
    name, and a namespace with the names they leave to the reader."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "numpack", numpack_sqlite)
    rng = np.random.default_rng(7)
    arrays = {
        "features": rng.random((1000, 128)),
        "labels": rng.integers(0, 2, 1000),
        "array": np.arange(100, dtype=np.float64),
        "temp_array": np.zeros(4),
        "array1": np.ones((3, 2)),
        "array2": np.ones(5, np.int32),
        "original": rng.random((10, 3)),
    }
    with NumPack("data.npk", drop_if_exists=True) as npk:
        npk.save(arrays)
    batches = []
    ns = {
        "np": np,
        "NumPack": NumPack,
        "data": rng.random((50, 4)),
        "new_row": rng.random(128),
        # One row, so that NumPy's broadcasting fits it to the three rows
        # and to the ten rows the example replaces with the same name.
        "new_rows": rng.random((1, 128)),
        "process": batches.append,
    }
    return ns, arrays, batches


def run(name, ns):
    exec(compile(EXAMPLES[name], f"<example {name}>", "exec"), ns)
    return ns


def reopen():
    return NumPack("data.npk")


def test_constructor(env):
    ns, _, _ = env
    run("constructor", ns)
    npk = ns["npk"]
    assert npk.is_closed and not npk.is_opened   # not opened automatically
    with pytest.raises(RuntimeError):
        npk.get_member_list()
    npk.open()
    with pytest.raises(RuntimeError, match="strict context"):
        npk.get_member_list()                    # strict_context_mode
    npk.close()
    with npk:
        assert npk.get_member_list() == []       # drop_if_exists


def test_open(env):
    ns, arrays, _ = env
    run("open", ns)
    assert ns["npk"].is_closed
    with reopen() as npk:
        assert sorted(npk.get_member_list()) == sorted(arrays)


def test_close(env):
    ns, _, _ = env
    run("close", ns)
    assert ns["npk"].is_closed
    with reopen() as npk:
        assert np.array_equal(npk.load("array"), ns["data"])


def test_save_as_written_is_refused(env):
    ns, _, _ = env
    with pytest.raises(ValueError, match="object"):
        run("save", ns)


def test_save_without_ellipsis(env):
    ns, _, _ = env
    fixed = EXAMPLES["save"].replace("np.array([0, 1, 0, 1, ...])",
                                     "np.array([0, 1, 0, 1])")
    assert fixed != EXAMPLES["save"]
    exec(compile(fixed, "<example save, without the Ellipsis>", "exec"), ns)
    with reopen() as npk:
        assert npk.get_member_list() == ["features", "labels"]
        assert npk.get_shape("features") == (1000, 128)
        assert np.array_equal(npk.load("labels"), [0, 1, 0, 1])


def test_load(env):
    ns, arrays, _ = env
    run("load", ns)
    assert np.array_equal(ns["features"], arrays["features"])
    lazy = ns["lazy_features"]
    assert isinstance(lazy, LazyArray)
    assert lazy.shape == (1000, 128) and lazy.dtype == np.float64
    assert np.array_equal(lazy[5], arrays["features"][5])
    assert np.array_equal(np.asarray(lazy), arrays["features"])


def test_replace(env):
    ns, arrays, _ = env
    run("replace", ns)
    want = arrays["features"].copy()
    want[0] = ns["new_row"]
    want[[0, 5, 10]] = ns["new_rows"]
    want[slice(0, 10)] = ns["new_rows"]
    with reopen() as npk:
        assert np.array_equal(npk.load("features"), want)


def test_append(env):
    ns, arrays, _ = env
    run("append", ns)
    with reopen() as npk:
        got = npk.load("features")
    assert got.shape == (1100, 128)
    assert np.array_equal(got[:1000], arrays["features"])
    assert np.array_equal(got[1000:], ns["new_data"])


def test_drop(env):
    ns, arrays, _ = env
    run("drop", ns)
    with reopen() as npk:
        # As NumPack 0.7, the dropped arrays stay, with every row deleted.
        assert npk.get_member_list() == list(arrays)
        for name in ("temp_array", "array1", "array2"):
            assert npk.get_shape(name) == (0,) + arrays[name].shape[1:]
            assert npk.load(name).dtype == arrays[name].dtype
        assert np.array_equal(npk.load("features"), arrays["features"][3:])


def test_getitem(env):
    ns, arrays, _ = env
    run("getitem", ns)
    f = arrays["features"]
    assert np.array_equal(ns["row"], f[0])
    assert np.array_equal(ns["rows"], f[0:100])
    with reopen() as npk:
        assert np.array_equal(npk.getitem("features", [0, 10, 20]),
                              f[[0, 10, 20]])


def test_stream_load(env):
    ns, arrays, batches = env
    run("stream_load", ns)
    assert [b.shape for b in batches] == [(1000, 128)]
    assert np.array_equal(batches[0], arrays["features"])


def test_get_shape(env, capsys):
    ns, _, _ = env
    run("get_shape", ns)
    assert ns["shape"] == (1000, 128)
    assert capsys.readouterr().out == "Shape: (1000, 128)\n"


def test_get_member_list(env, capsys):
    ns, arrays, _ = env
    run("get_member_list", ns)
    assert ns["arrays"] == list(arrays)
    assert capsys.readouterr().out == f"{list(arrays)}\n"


def test_has_array(env):
    ns, arrays, _ = env
    run("has_array", ns)
    assert np.array_equal(ns["data"], arrays["features"])


def test_get_metadata(env, capsys):
    ns, arrays, _ = env
    run("get_metadata", ns)
    meta = ns["metadata"]
    assert list(meta["arrays"]) == list(arrays)
    f = meta["arrays"]["features"]
    assert f["shape"] == [1000, 128] and f["dtype"] == "float64"
    assert f["data_file"] == "data_features.npkd"
    assert f["size_bytes"] == 1000 * 128 * 8
    assert meta["total_arrays"] == len(arrays)
    assert capsys.readouterr().out.startswith("{'features': {")


def test_clone(env):
    ns, arrays, _ = env
    run("clone", ns)
    with reopen() as npk:
        assert np.array_equal(npk.load("backup"), arrays["original"])
        assert np.array_equal(npk.load("original"), arrays["original"])


def test_reset(env, capsys):
    ns, _, _ = env
    run("reset", ns)
    assert capsys.readouterr().out == "[]\n"


def test_update(env):
    ns, arrays, _ = env
    run("update", ns)
    want = np.delete(arrays["features"], [0, 1, 2, 100, 200], axis=0)
    with reopen() as npk:
        assert np.array_equal(npk.load("features"), want)
        meta = npk.get_metadata()["arrays"]["features"]
        assert meta["shape"] == [995, 128]   # compacted: no deleted rows


def test_get_io_stats(env, capsys):
    ns, _, _ = env
    run("get_io_stats", ns)
    # The comment says 'rust': this backend says what it is.
    assert capsys.readouterr().out == "sqlite-c\n"
    assert ns["stats"]["bytes_read"] >= 0


def test_batch_mode(env):
    ns, arrays, _ = env
    run("batch_mode", ns)
    with reopen() as npk:
        assert np.array_equal(npk.load("array"), arrays["array"] * 2 ** 100)


def test_writable_batch_mode(env):
    ns, arrays, _ = env
    run("writable_batch_mode", ns)
    with reopen() as npk:
        assert np.array_equal(npk.load("array"), arrays["array"] * 2)


def test_special_getitem(env):
    ns, arrays, _ = env
    with NumPack("data.npk") as npk:
        ns["npk"] = npk
        run("__getitem__", ns)
    assert np.array_equal(ns["arr"], arrays["features"])


def test_special_iter(env, capsys):
    ns, arrays, _ = env
    with NumPack("data.npk") as npk:
        ns["npk"] = npk
        run("__iter__", ns)
    assert capsys.readouterr().out.split() == list(arrays)


def test_special_context_manager(env):
    ns, _, _ = env
    run("context_manager", ns)
    assert ns["npk"].is_closed


def test_special_repr(env, capsys):
    ns, arrays, _ = env
    with NumPack("data.npk") as npk:
        ns["npk"] = npk
        run("__repr__", ns)
    out = capsys.readouterr().out
    # The reference's comment shows 0.4's text, which named the backend;
    # NumPack 0.5's __repr__ no longer does, and neither does the binding.
    assert out == f"NumPack(data.npk, arrays={len(arrays)})\n"
    assert repr(npk) == "NumPack(data.npk, status=closed)"


def test_every_example_is_run():
    names = {n[len("test_"):] for n in globals() if n.startswith("test_")}
    for example in EXAMPLES:
        key = example.strip("_")
        assert any(key in n for n in names), example


def test_class_definition_signature():
    """The reference's class definition: the same parameters and defaults
    (this binding adds only the keyword-only ``module``)."""
    import inspect
    params = inspect.signature(NumPack.__init__).parameters
    assert [(p.name, p.default) for p in params.values()][1:6] == [
        ("filename", inspect.Parameter.empty), ("drop_if_exists", False),
        ("strict_context_mode", False), ("warn_no_context", None),
        ("force_gc_on_close", False)]
    assert params["module"].kind is inspect.Parameter.KEYWORD_ONLY
    close = inspect.signature(NumPack.close).parameters
    assert close["force_gc"].default is None
    assert inspect.signature(NumPack.load).parameters["lazy"].default is False
    assert inspect.signature(NumPack.drop).parameters["indexes"].default \
        is None
    assert inspect.signature(
        NumPack.stream_load).parameters["buffer_size"].default is None
    assert inspect.signature(
        NumPack.batch_mode).parameters["memory_limit"].default is None
