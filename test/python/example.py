#!/usr/bin/python3
"""example.py - numpack from Python: save a NumPy array into a store, query
it with SQL, and get it back.  (The README quotes the part between the
EXAMPLE markers.)

Usage: /usr/bin/python3 example.py [MODULE [TMPDIR]]
"""
import os
import sys
import tempfile

module = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                         os.environ.get("NUMPACK_SO", "./.libs/numpack.so"))
os.chdir(sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp())

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

results = [
    ("avg(c0)", mean == features[:, 0].mean()),
    ("shape", shape == "[4,3]"),
    ("round trip", back.dtype == features.dtype and np.array_equal(back, features)),
    ("same bytes as np.save", blob == npy.getvalue()),
]
for what, ok in results:
    if not ok:
        print("FAIL", what)
failed = sum(not ok for _, ok in results)
print("%d passed, %d failed" % (len(results) - failed, failed))
sys.exit(1 if failed else 0)
