"""test_example.py - numpack from Python: save a NumPy array into a store,
query it with SQL, and get it back.  (The README quotes the part between
the EXAMPLE markers.)  The example runs once, in a directory of its own;
each of its results is a case.
"""
import os

import pytest

from npktest import check


def run_example(module):
    """The README's example, as written there; its results."""
    # --- EXAMPLE ---
    import io
    import sqlite3

    import numpy as np

    db = sqlite3.connect(":memory:")
    db.enable_load_extension(True)
    db.load_extension(module)          # e.g. "./.libs/numpack.so"

    # Save an ndarray as the array "features" of the store data.npk.
    features = np.arange(12, dtype=np.float32).reshape(4, 3)
    npy = io.BytesIO()
    np.save(npy, features)
    db.execute("SELECT numpack_save('data.npk', 'features', ?)", (npy.getvalue(),))

    # Query it with SQL: one row per array row, one column per element.
    db.execute("CREATE VIRTUAL TABLE features USING numpack(store='data.npk')")
    (mean,) = db.execute("SELECT avg(c0) FROM features").fetchone()
    (shape,) = db.execute("SELECT numpack_shape('data.npk', 'features')").fetchone()

    # Get it back as an ndarray.
    (blob,) = db.execute("SELECT numpack_load('data.npk', 'features')").fetchone()
    back = np.load(io.BytesIO(blob))
    # --- END EXAMPLE ---
    return {
        "avg(c0)": mean == features[:, 0].mean(),
        "shape": shape == "[4,3]",
        "round trip": back.dtype == features.dtype
        and np.array_equal(back, features),
        "same bytes as np.save": blob == npy.getvalue(),
    }


@pytest.fixture(scope="module")
def results(module, tmp_path_factory):
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("example"))
    try:
        yield run_example(module)
    finally:
        os.chdir(old)


@pytest.mark.parametrize("what", ["avg(c0)", "shape", "round trip",
                                  "same bytes as np.save"])
def test_example(results, what):
    check(results[what], what)
