"""
cases_write.py — changing rows through SQL, and compaction:

  insert   100k single-row INSERTs of 512-byte float32 rows in one
           transaction (the one-row statement executed 100k times), into a
           new numpack table in blob layout, a new native table of BLOB
           rows, and a new sqlite-vec vec0(emb float[128]) table; each in a
           fresh database (and store), COMMIT included
  delete   DELETE FROM t WHERE rowid IN (SELECT id FROM temp.ids), 10% of
           the rows chosen at random, in one statement, on a copy of the
           full array (numpack_clone) against a copy of the native BLOB-row
           database; COMMIT (autocommit) included
  compact  numpack_compact on that numpack copy, right after the delete,
           against `cp` of the store's data file (and cp + fsync, since
           compaction is durable)

Copies are made outside the timing; before each timed step the disk is
settled (os.sync) and memory warmed (benchlib.prepare).  All databases run
with SQLite's defaults (rollback journal, synchronous=FULL).
"""
import os
import shutil
import subprocess

import numpy as np

from benchlib import (REPORT, Result, Timer, at_most, check_same, connect,
                      count_text, faster, interleaved, prepare, scalar,
                      sql_str)

INSERT_REPS = 3
DELETE_REPS = 3


def _fresh(*paths):
    for p in paths:
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)
        for suffix in ("-journal", "-wal", "-shm"):
            if os.path.exists(p + suffix):
                os.remove(p + suffix)


def inserts(cfg, ds):
    k = cfg.rows(100_000)
    rows = [(ds.arr[i].tobytes(),) for i in range(k)]
    db, store = cfg.path("ins.db"), cfg.path("ins.npk")
    setups = {
        "numpack": ([cfg.numpack_so],
                    "CREATE VIRTUAL TABLE ins USING numpack(store=%s, "
                    "array='ins', dtype=float32, shape=(128), layout=blob)"
                    % sql_str(store),
                    "INSERT INTO ins(row) VALUES (?)"),
        "blob": ([], "CREATE TABLE ins(row BLOB)",
                 "INSERT INTO ins(row) VALUES (?)"),
    }
    if cfg.vec0_so:
        setups["vec0"] = ([cfg.vec0_so],
                          "CREATE VIRTUAL TABLE ins USING vec0(emb float[128])",
                          "INSERT INTO ins(emb) VALUES (?)")

    def contender(name):
        exts, create, insert = setups[name]

        def run(rep):
            _fresh(db, store)
            con = connect(db, *exts)
            con.execute(create)
            prepare(cfg)
            with Timer() as t:
                con.execute("BEGIN")
                con.executemany(insert, rows)
                con.execute("COMMIT")
            check_same("rows inserted", got=scalar(
                con, "SELECT count(*) FROM ins"), want=k)
            con.close()
            _fresh(db, store)
            return t.seconds
        return run

    times = interleaved(INSERT_REPS, {n: contender(n) for n in setups})
    return [
        Result("Writes", "%s single-row INSERTs in one transaction "
               "(blob layout, 512-byte rows)" % count_text(k),
               times["numpack"], "native table of BLOB rows", times["blob"],
               at_most(1.0), vec0=times.get("vec0"), vec_case=True, rows=k,
               short="INSERT rows",
               notes=["sqlite-vec: `INSERT INTO v(emb) VALUES (?)` into a "
                      "new vec0(emb float[128]) table"]),
    ]


def deletes_and_compaction(cfg, ds, rng):
    k = max(1, ds.n // 10)
    db = cfg.path("del.db")
    copy = cfg.path("copy.npkd")
    times = {"numpack": [], "blob": [], "compact": [], "cp": [],
             "cp+fsync": []}
    for rep in range(DELETE_REPS):
        ids = [(int(i),) for i in rng.choice(ds.n, size=k, replace=False)]

        # numpack: a copy of the array, then DELETE, then compaction.
        _fresh(db)
        con = connect(db, cfg.numpack_so)
        scalar(con, "SELECT numpack_clone(?, 'base', 'del')", (ds.store,))
        con.execute("CREATE VIRTUAL TABLE d USING numpack(store=%s, "
                    "array='del')" % sql_str(ds.store))
        _id_table(con, ids)
        prepare(cfg)
        with Timer() as t:
            cur = con.execute("DELETE FROM d WHERE rowid IN "
                              "(SELECT id FROM temp.ids)")
        times["numpack"].append(t.seconds)
        check_same("rows deleted", got=cur.rowcount, want=k)
        prepare(cfg)
        with Timer() as t:
            removed = scalar(con, "SELECT numpack_compact(?, 'del')",
                             (ds.store,))
        times["compact"].append(t.seconds)
        check_same("rows compacted", got=removed, want=k)
        check_same("rows left", got=scalar(con, "SELECT count(*) FROM d"),
                   want=ds.n - k)
        con.execute("DROP TABLE d")
        con.close()
        _fresh(db)

        # native: a copy of the BLOB-row database, then DELETE.
        shutil.copyfile(ds.nblob_db, db)
        con = connect(db)
        _id_table(con, ids)
        prepare(cfg)
        with Timer() as t:
            cur = con.execute("DELETE FROM nblob WHERE rowid IN "
                              "(SELECT id FROM temp.ids)")
        times["blob"].append(t.seconds)
        check_same("rows deleted, native", got=cur.rowcount, want=k)
        con.close()
        _fresh(db)

        # compaction's baselines: copy the data file.
        for name, sync in (("cp", False), ("cp+fsync", True)):
            prepare(cfg)
            with Timer() as t:
                subprocess.run(["cp", ds.data_file, copy], check=True)
                if sync:
                    fd = os.open(copy, os.O_RDONLY)
                    os.fsync(fd)
                    os.close(fd)
            times[name].append(t.seconds)
            _fresh(copy)
    mb = os.path.getsize(ds.data_file) / 1e6
    return [
        Result("Writes", "DELETE 10%% random rows (%s) in one statement "
               "(`WHERE rowid IN (SELECT id FROM temp.ids)`)" % count_text(k),
               times["numpack"], "native table of BLOB rows", times["blob"],
               faster(5), rows=k, short="DELETE 10%"),
        Result("Writes", "`numpack_compact` after 10%% deleted (%.0f MB "
               "array)" % mb, times["compact"], "`cp` of the data file",
               times["cp"], at_most(2), short="compact vs cp"),
        Result("Writes", "`numpack_compact` after 10% deleted (same)",
               times["compact"], "`cp` + `fsync` of the data file",
               times["cp+fsync"], REPORT, short="compact vs cp+fsync"),
    ]


def _id_table(con, ids):
    con.execute("CREATE TEMP TABLE ids(id INTEGER PRIMARY KEY)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO temp.ids VALUES (?)", ids)
    con.execute("COMMIT")


def run(cfg, ds, log):
    rng = np.random.default_rng(11)
    log("- inserts")
    out = inserts(cfg, ds)
    log("- delete and compaction")
    out += deletes_and_compaction(cfg, ds, rng)
    return out
