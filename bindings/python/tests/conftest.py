"""Shared fixtures of the binding's tests.

The package is imported from the source tree (bindings/python); the
extension is $NUMPACK_SO, else the source tree's .libs/numpack.so, else the
installed numpack (the binding's own rule, numpack_sqlite._sql).
"""
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from numpack_sqlite import NumPack  # noqa: E402
from numpack_sqlite._sql import module_candidates  # noqa: E402


def open_sql():
    """A plain sqlite3 connection with the extension loaded, as any
    application would open one."""
    last = None
    for cand in module_candidates():
        con = sqlite3.connect(":memory:", isolation_level=None)
        con.enable_load_extension(True)
        try:
            con.load_extension(cand)
            con.execute("PRAGMA busy_timeout = 10000")
            return con
        except sqlite3.Error as e:
            last = e
            con.close()
    raise RuntimeError(f"cannot load the numpack extension: {last}")


@pytest.fixture
def sql():
    con = open_sql()
    yield con
    con.close()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "data.npk"


@pytest.fixture
def npk(path):
    with NumPack(path, drop_if_exists=True) as n:
        yield n


@pytest.fixture
def rng():
    return np.random.default_rng(20240607)
