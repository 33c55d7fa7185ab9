"""npktest.py - what the pytest modules of test/python/ share: the dtypes,
the check counter, exact array comparison, .npy conversion, and a
connection with the extension loaded.

check() records a condition without stopping the test, so that one case
reports every check it failed; conftest.py fails the case when any did
(and when it made none).  finish() prints the counts for a module run as a
script (test_differential.py's command line, for make stress)."""
import io
import os
import sqlite3

import numpy as np

DTYPES = ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16",
          "int32", "int64", "float16", "float32", "float64", "complex64",
          "complex128"]

_counts = {"passed": 0, "failed": 0}
_failed = []


def check(cond, what):
    """Count one check; print it when it fails."""
    if cond:
        _counts["passed"] += 1
    else:
        _counts["failed"] += 1
        _failed.append(what)
        print("FAIL", what)
    return cond


def failures():
    """Checks failed so far."""
    return _counts["failed"]


def reset_checks():
    """Start counting afresh (before each test case)."""
    _counts["passed"] = _counts["failed"] = 0
    del _failed[:]


def checks():
    """(checks passed, descriptions of the checks failed) since the reset."""
    return _counts["passed"], list(_failed)


def finish():
    """Print the closing "N passed, M failed" line; the exit status."""
    print("%d passed, %d failed" % (_counts["passed"], _counts["failed"]))
    return 1 if _counts["failed"] else 0


def bits(a):
    """The array's bits as unsigned integers of its item size, so that
    comparisons are exact for NaN and -0.0."""
    a = np.ascontiguousarray(a)
    size = a.dtype.itemsize
    if size == 16:
        return a.view(np.uint64)
    return a.view(np.dtype("u%d" % size))


def same(a, b):
    """Same dtype, same shape, same bits."""
    return (isinstance(b, np.ndarray) and a.dtype == b.dtype
            and a.shape == b.shape and np.array_equal(bits(a), bits(b)))


def npy(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def unnpy(blob):
    return np.load(io.BytesIO(blob))


def module_path():
    """The module: $NUMPACK_SO, else ./.libs/numpack.so."""
    return os.path.abspath(os.environ.get("NUMPACK_SO") or
                           "./.libs/numpack.so")


def connect(module, path=":memory:"):
    """A connection to PATH (in memory by default) in autocommit mode with
    MODULE loaded."""
    db = sqlite3.connect(path, isolation_level=None)
    db.enable_load_extension(True)
    db.load_extension(module)
    db.enable_load_extension(False)
    return db
