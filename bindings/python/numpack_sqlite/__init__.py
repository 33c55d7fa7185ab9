"""numpack_sqlite: NumPack's Python API (the NumPack class) as a thin binding
over the numpack SQLite extension.

    from numpack_sqlite import NumPack

    with NumPack('data.npk', drop_if_exists=True) as npk:
        npk.save({'features': features})
        rows = npk.getitem('features', [0, 10, 20])

The store is the same ``.npk`` directory NumPack 0.7 reads and writes, and
the same store the extension's SQL functions and virtual table work on.
"""
import gc
import os as _os
import platform

from ._numpack import NumPack, BACKEND_TYPE
from ._lazy import LazyArray
from ._batch import BatchModeContext, WritableBatchMode
from ._sql import (NumPackError, ArrayNotFoundError, RowIndexError,
                   WrongTypeError)

# The project's one version source (the top-level VERSION file, linked
# into the package), which the extension reports as numpack_version().
with open(_os.path.join(_os.path.dirname(__file__), "VERSION")) as _f:
    __version__ = _f.read().strip()
del _f

__all__ = ["NumPack", "LazyArray", "BatchModeContext", "WritableBatchMode",
           "NumPackError", "ArrayNotFoundError", "RowIndexError",
           "WrongTypeError", "BACKEND_TYPE", "force_cleanup_windows_handles",
           "get_backend_info", "__version__"]


def force_cleanup_windows_handles():
    """NumPack's module function for releasing file handles on Windows;
    here nothing holds a handle past its call but what the garbage
    collector frees.  True, as NumPack's."""
    gc.collect()
    return True


def get_backend_info():
    """NumPack's description of the backend: its type, the platform and
    the package version."""
    return {"backend_type": BACKEND_TYPE, "platform": platform.system(),
            "is_windows": platform.system().lower() == "windows",
            "version": __version__}
