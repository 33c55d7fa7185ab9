"""
datagen.py — makes the data every case reads; it measures nothing.

One array of N × 128 float32 (N = 1,000,000 × BENCH_SCALE; 512 MB at full
scale) of seeded random numbers, held in the same form by each contender:

  store.npk / array "base"   the NumPack store (written with numpack_save)
  numpack.db                 an on-disk SQLite database declaring the numpack
                             tables over it: t (columns c0..c127) and
                             tb (layout=blob, one 512-byte BLOB per row)
  base.npy                   the same array as a NumPy file
  nreal.db                   native table nreal: 128 REAL columns per row
  nblob.db                   native table nblob: one 512-byte BLOB per row
  vec.db                     sqlite-vec table v USING vec0(emb float[128])

Rowids are 0..N-1 everywhere.  The native tables and vec0 are filled inside
SQLite from the numpack table (INSERT ... SELECT), with journaling off for
the load only; every database is then measured with SQLite's defaults.
"""
import io
import os
from dataclasses import dataclass

import numpy as np

from benchlib import Config, Timer, connect, scalar, settle_disk, sql_str

DIM = 128
STORE = "store.npk"


@dataclass
class Dataset:
    n: int                 # rows
    arr: np.ndarray        # the array, N x 128 float32
    npy: memoryview        # the array as .npy bytes
    store: str             # store directory
    npk_db: str            # SQLite database declaring t and tb
    npy_file: str          # base.npy
    nreal_db: str
    nblob_db: str
    vec_db: str            # or None without sqlite-vec
    data_file: str         # the store's raw data file of "base"


def npy_bytes(arr: np.ndarray) -> memoryview:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getbuffer()


def column_list(prefix: str = "") -> str:
    return ", ".join("%sc%d" % (prefix, i) for i in range(DIM))


def _load_from_numpack(cfg: Config, db: str, store: str, layout: str):
    """A connection to DB, set up for a bulk load, with temp.src a read-only
    numpack table over the base array."""
    exts = [cfg.numpack_so] + ([cfg.vec0_so] if cfg.vec0_so else [])
    con = connect(db, *exts)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("CREATE VIRTUAL TABLE temp.src USING numpack(store=%s, "
                "array='base', layout=%s, readonly=1)"
                % (sql_str(store), layout))
    return con


def make(cfg: Config, log) -> Dataset:
    n = cfg.rows(1_000_000)
    rng = np.random.default_rng(20240611)
    with Timer() as t:
        arr = rng.random((n, DIM), dtype=np.float32)
        npy = npy_bytes(arr)
    log("  array %d x %d float32 (%.0f MB) in %.1f s"
        % (n, DIM, arr.nbytes / 1e6, t.seconds))

    store = cfg.path(STORE)
    ds = Dataset(n=n, arr=arr, npy=npy, store=store,
                 npk_db=cfg.path("numpack.db"), npy_file=cfg.path("base.npy"),
                 nreal_db=cfg.path("nreal.db"), nblob_db=cfg.path("nblob.db"),
                 vec_db=cfg.path("vec.db") if cfg.vec0_so else None,
                 data_file=os.path.join(store, "data_base.npkd"))

    with Timer() as t:
        con = connect(ds.npk_db, cfg.numpack_so)
        scalar(con, "SELECT numpack_save(?, 'base', ?)", (store, npy))
        con.execute("CREATE VIRTUAL TABLE t USING numpack(store=%s, "
                    "array='base')" % sql_str(store))
        con.execute("CREATE VIRTUAL TABLE tb USING numpack(store=%s, "
                    "array='base', layout=blob)" % sql_str(store))
        con.close()
        np.save(ds.npy_file, arr)
    log("  numpack store and base.npy in %.1f s" % t.seconds)

    with Timer() as t:
        con = _load_from_numpack(cfg, ds.nreal_db, store, "columns")
        con.execute("CREATE TABLE nreal(%s)"
                    % ", ".join("c%d REAL" % i for i in range(DIM)))
        con.execute("BEGIN")
        con.execute("INSERT INTO nreal(rowid, %s) SELECT rowid, %s "
                    "FROM temp.src" % (column_list(), column_list()))
        con.execute("COMMIT")
        con.close()
    log("  native table, 128 REAL columns (%.0f MB) in %.1f s"
        % (os.path.getsize(ds.nreal_db) / 1e6, t.seconds))

    with Timer() as t:
        con = _load_from_numpack(cfg, ds.nblob_db, store, "blob")
        con.execute("CREATE TABLE nblob(row BLOB)")
        con.execute("BEGIN")
        con.execute("INSERT INTO nblob(rowid, row) "
                    "SELECT rowid, row FROM temp.src")
        con.execute("COMMIT")
        con.close()
    log("  native table, BLOB rows (%.0f MB) in %.1f s"
        % (os.path.getsize(ds.nblob_db) / 1e6, t.seconds))

    if ds.vec_db:
        with Timer() as t:
            con = _load_from_numpack(cfg, ds.vec_db, store, "blob")
            con.execute("CREATE VIRTUAL TABLE v USING vec0(emb float[%d])"
                        % DIM)
            con.execute("BEGIN")
            con.execute("INSERT INTO v(rowid, emb) "
                        "SELECT rowid, row FROM temp.src")
            con.execute("COMMIT")
            con.close()
        log("  sqlite-vec table (%.0f MB) in %.1f s"
            % (os.path.getsize(ds.vec_db) / 1e6, t.seconds))

    settle_disk()
    return ds
