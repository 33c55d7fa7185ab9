"""
cases_small.py — the per-statement cost of small reads, the operations an
application runs most often, on data of its own (an N x 4 float32 array,
N = 200,000 x BENCH_SCALE, at least 20,000):

  lookup    SELECT c1 FROM t WHERE rowid = ?, prepared once, 5,000 random
            rowids from Python, autocommit, on a numpack table declared in an
            on-disk database, against a native rowid table of 4 REAL columns
            holding the same numbers in that same database
  in txn    the same loop inside BEGIN ... COMMIT
  join      SELECT sum(t.c1) FROM temp.ids JOIN t ON t.rowid = ids.id, 20,000
            random ids, against the same join onto the native table
  metadata  numpack_shape(store, name), numpack_metadata(store) and
            SELECT * FROM numpack_arrays(store), 500 calls each, against
            numpack_version() called as often

Each row also reports the system calls one statement makes, numpack and
baseline, counted by perf stat (else strace -c -f) around a run of the
statement in a child process (less a run of no statements), when either
is installed.

Small writes, NumPack's most frequent change, on an M x 10 float32 array
(M = 1,000,000 x BENCH_SCALE, at least 20,000), each call its own
transaction through the SQL functions:

  replace   SELECT numpack_replace(store, 'w', npy, '[i, ...]'), 100 random
            rows, against a[idx] = rows on an open np.memmap(mode='r+') of
            the same data (no flush)
  append    SELECT numpack_append(store, 'w', npy), 100 rows, against
            m[n:n+100] = rows on an open np.memmap(mode='r+') of a file made
            long enough beforehand (a memmap cannot grow; no flush)

each at PRAGMA synchronous=OFF (NumPack's own durability: no fsync; target
<= 5x the memmap) and at synchronous=FULL (durable when the call returns),
each repetition of either side starting with the disk settled (os.sync,
as before every other write case): the pages it writes are then clean, as
those of an array not written in the last few seconds are, and the first
store into each costs a page fault on both sides.  A further row, for
information, repeats the synchronous=OFF replacement with the pages still
dirty from the repetition before (no sync between): the memmap's change is
then a few stores into writable pages, about a quarter of its settled
time, while numpack's call keeps its fixed cost (locks, journal, catalog).
reported against the memmap change followed by flush() (msync), with the
fsyncs of each commit as numpack_io_stats reports them
(last_commit_fsyncs) and the system calls of one call (strace, as above).
At the end the store must hold what the memmaps hold.

  drop      SELECT numpack_drop(store, 'd', '[i, ...]'), 100 random live
            rows of an array that already has deleted rows (its bitmap is
            patched in place), against DELETE FROM t WHERE rowid IN (100
            rowids) on a native table of 40-byte BLOB rows in an on-disk
            database, at both synchronous levels, reported (no target) with
            the fsyncs per commit and the system calls of one call.
"""
import io
import json
import os
import shutil

import numpy as np

from benchlib import (REPORT, Result, Timer, at_most, connect, count_text,
                      faster, interleaved, scalar, settle_disk, sql_str,
                      syscalls_per_call)
from datagen import npy_bytes

REPS = 5
LOOKUPS = 5000
JOIN_IDS = 20000
CALLS = 500
WRITE_CALLS = 40             # calls timed together in a small-write rep
WRITE_ROWS = 100             # rows replaced or appended by one call


def _setup(cfg):
    n = cfg.rows(200_000, minimum=JOIN_IDS)
    rng = np.random.default_rng(13)
    arr = rng.random((n, 4), dtype=np.float32)
    db, store = cfg.path("small.db"), cfg.path("small.npk")
    for p in (db, db + "-journal"):
        if os.path.exists(p):
            os.remove(p)
    shutil.rmtree(store, ignore_errors=True)
    con = connect(db, cfg.numpack_so)
    con.execute("SELECT numpack_save(?, 't', ?)", (store, npy_bytes(arr)))
    con.execute("CREATE VIRTUAL TABLE t USING numpack(store=%s)"
                % sql_str(store))
    con.execute("CREATE TABLE nt(c0 REAL, c1 REAL, c2 REAL, c3 REAL)")
    con.execute("BEGIN")
    con.execute("INSERT INTO nt(rowid, c0, c1, c2, c3) "
                "SELECT rowid, c0, c1, c2, c3 FROM t")
    con.execute("COMMIT")
    return con, db, store, n, rng


# The child that strace watches: ARGV = module, db, store, sql, count,
# mode ("auto", "txn" or "call"), then the rowids to bind, if any.
_CHILD = r"""
import sqlite3, sys
so, db, store, sql, count, mode = sys.argv[1:7]
con = sqlite3.connect(db, isolation_level=None)
con.enable_load_extension(True)
con.load_extension(so)
cur = con.cursor()
args = (store,) if mode == "call" and "?" in sql else ()
cur.execute("SELECT count(*) FROM t").fetchall()   # opens the store
if "temp.arrays" in sql:
    con.execute("CREATE VIRTUAL TABLE temp.arrays USING numpack_arrays")
if "temp.arrays_copy" in sql:
    con.execute("CREATE TEMP TABLE arrays_copy AS "
                "SELECT * FROM temp.arrays(?)", (store,))
if mode == "txn":
    con.execute("BEGIN")
    cur.execute("SELECT c1 FROM t WHERE rowid = 0").fetchall()
for i in range(int(count)):
    if "rowid = ?" in sql:
        args = ((i * 7919) % 20000,)
    cur.execute(sql, args).fetchall()
if mode == "txn":
    con.execute("COMMIT")
"""


def _syscalls(cfg, db, store, sql, mode, count=200):
    """System calls per statement, or None without strace."""
    return syscalls_per_call(
        cfg, "small", _CHILD,
        lambda k: [cfg.numpack_so, db, store, sql, str(k), mode], count)


def _calls_note(cfg, db, store, np_sql, base_sql, mode):
    a = _syscalls(cfg, db, store, np_sql, mode)
    b = _syscalls(cfg, db, store, base_sql, mode)
    if a is None or b is None:
        return "system calls per statement: not counted (no strace)"
    return ("system calls per statement (perf stat, else strace -c -f): "
            "numpack %.1f, "
            "baseline %.1f" % (a, b))


def lookups(cfg, con, db, store, n, rng, txn):
    id_sets = [rng.integers(0, n, size=LOOKUPS).tolist() for _ in range(REPS)]
    queries = {"numpack": "SELECT c1 FROM t WHERE rowid = ?",
               "native": "SELECT c1 FROM nt WHERE rowid = ?"}
    sums = {}

    def contender(name):
        cur = con.cursor()
        sql = queries[name]

        def run(rep):
            got = 0.0
            with Timer() as t:
                if txn:
                    con.execute("BEGIN")
                for r in id_sets[rep]:
                    cur.execute(sql, (r,))
                    got += cur.fetchone()[0]
                if txn:
                    con.execute("COMMIT")
            sums[name] = got
            return t.seconds
        return run

    times = interleaved(REPS, {k: contender(k) for k in queries})
    assert abs(sums["numpack"] - sums["native"]) < 1e-3 * LOOKUPS
    mode = "txn" if txn else "auto"
    note = _calls_note(cfg, db, store, queries["numpack"], queries["native"],
                       mode)
    if txn:
        return Result("Small reads", "%d prepared rowid lookups "
                      "(`SELECT c1 FROM t WHERE rowid=?`) inside one "
                      "`BEGIN ... COMMIT`, table declared in an on-disk "
                      "database" % LOOKUPS, times["numpack"],
                      "native rowid table, 4 REAL columns", times["native"],
                      at_most(1.5), rows=LOOKUPS, short="lookups in BEGIN",
                      notes=[note, "the store is locked once for the "
                             "transaction: every statement reads the same "
                             "state of it"])
    return Result("Small reads", "%d prepared rowid lookups "
                  "(`SELECT c1 FROM t WHERE rowid=?`), autocommit, table "
                  "declared in an on-disk database" % LOOKUPS,
                  times["numpack"], "native rowid table, 4 REAL columns",
                  times["native"], at_most(1.2), rows=LOOKUPS,
                  short="lookups, autocommit",
                  notes=[note, "each lookup copies its row without the "
                         "store's read lock, checking the lock file's commit "
                         "mark and count (read from its mapping) around the "
                         "copy; the catalog and data file are looked at "
                         "(stat, fstat) once per millisecond, for programs "
                         "that ignore the lock; SQLite's own lock on the "
                         "database file remains"])


def join(cfg, con, db, store, n, rng):
    con.execute("CREATE TEMP TABLE IF NOT EXISTS ids(id INTEGER)")
    con.execute("DELETE FROM temp.ids")
    con.executemany("INSERT INTO temp.ids VALUES (?)",
                    [(int(i),) for i in rng.integers(0, n, size=JOIN_IDS)])
    queries = {"numpack": "SELECT sum(t.c1) FROM temp.ids JOIN t "
                          "ON t.rowid = ids.id",
               "native": "SELECT sum(nt.c1) FROM temp.ids JOIN nt "
                         "ON nt.rowid = ids.id"}
    sums = {}

    def contender(name):
        def run(rep):
            with Timer() as t:
                sums[name] = con.execute(queries[name]).fetchone()[0]
            return t.seconds
        return run

    times = interleaved(REPS, {k: contender(k) for k in queries})
    assert abs(sums["numpack"] - sums["native"]) < 1e-3 * JOIN_IDS
    return Result("Small reads", "`SELECT sum(t.c1) FROM (%d ids) JOIN t ON "
                  "t.rowid = id`" % JOIN_IDS, times["numpack"],
                  "native rowid table, 4 REAL columns", times["native"],
                  faster(1.5), rows=JOIN_IDS, short="join of 20k ids",
                  notes=["the store is locked once for the statement, not "
                         "once per outer row"])


def metadata(cfg, con, db, store):
    con.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.arrays "
                "USING numpack_arrays")
    # The same row kept in an ordinary TEMP table: what SQLite and Python
    # cost for one row of eight columns, with no virtual table at all.
    con.execute("DROP TABLE IF EXISTS temp.arrays_copy")
    con.execute("CREATE TEMP TABLE arrays_copy AS "
                "SELECT * FROM temp.arrays(?)", (store,))
    queries = {"shape": ("SELECT numpack_shape(?, 't')", (store,)),
               "metadata": ("SELECT numpack_metadata(?)", (store,)),
               "arrays": ("SELECT * FROM numpack_arrays(?)", (store,)),
               "arrays_temp": ("SELECT * FROM temp.arrays(?)", (store,)),
               "json_each": ("SELECT * FROM json_each('[1]')", ()),
               "row_copy": ("SELECT * FROM temp.arrays_copy", ()),
               "version": ("SELECT numpack_version()", ())}

    def contender(name):
        sql, args = queries[name]
        cur = con.cursor()

        def run(rep):
            with Timer() as t:
                for _ in range(CALLS):
                    cur.execute(sql, args).fetchall()
            return t.seconds
        return run

    times = interleaved(REPS, {k: contender(k) for k in queries},
                        reverse_odd=True)
    rows = (
        ("shape", "`numpack_shape(store, name)`", at_most(3), []),
        ("metadata", "`numpack_metadata(store)` (every array's name, "
         "shape, dtype, file and time as JSON), one array", at_most(3),
         ["the store's listing as a scalar call: no table, so no lock on "
          "the database file"]),
        ("arrays", "`SELECT * FROM numpack_arrays(store)`, one array",
         at_most(3),
         ["a table-valued function is a table of the main database: SQLite "
          "takes its own lock on the database file for the statement, which "
          "a scalar function call does not"]),
        ("arrays_temp", "`SELECT * FROM temp.arrays(store)`, one array "
         "(`CREATE VIRTUAL TABLE temp.arrays USING numpack_arrays`)",
         at_most(3),
         ["a table of TEMP leaves the main database file unlocked"]),
        ("json_each", "SQLite's floor for any table-valued function of an "
         "on-disk database: `SELECT * FROM json_each('[1]')` (built in)",
         REPORT, []),
        ("row_copy", "SQLite's and Python's floor for that row: the same "
         "eight columns from an ordinary TEMP table (`SELECT * FROM "
         "temp.arrays_copy`), no virtual table",
         REPORT, []))
    out = []
    for name, label, target, extra in rows:
        note = _calls_note(cfg, db, store, queries[name][0],
                           queries["version"][0], "call")
        out.append(Result("Small reads", "%s, %d calls" % (label, CALLS),
                          times[name], "`numpack_version()` as often",
                          times["version"], target, rows=CALLS,
                          short=name, notes=[note] + extra))
    return out


def _npy(a):
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


# The child that strace watches for small writes: ARGV = module, store,
# op ("replace" or "append"), synchronous level, count.
_WRITE_CHILD = r"""
import io, json, sqlite3, sys
import numpy as np
so, store, op, sync, count = sys.argv[1:6]
con = sqlite3.connect(":memory:", isolation_level=None)
con.enable_load_extension(True)
con.load_extension(so)
con.execute("PRAGMA synchronous=" + sync)
b = io.BytesIO()
np.save(b, np.ones((%d, 10), dtype=np.float32))
val = b.getvalue()
idx = json.dumps(list(range(0, 200 * %d, 200)))
con.execute("SELECT numpack_shape(?, 'w')", (store,)).fetchone()
for i in range(int(count)):
    if op == "replace":
        con.execute("SELECT numpack_replace(?, 'w', ?, ?)",
                    (store, val, idx)).fetchone()
    elif op == "drop":
        con.execute("SELECT numpack_drop(?, 'd', ?)", (store, idx)).fetchone()
    else:
        con.execute("SELECT numpack_append(?, 'w', ?)", (store, val)).fetchone()
""" % (WRITE_ROWS, WRITE_ROWS)


def _write_syscalls(cfg, store, op, sync, count=50):
    """System calls of one small-write call, or None without strace."""
    return syscalls_per_call(
        cfg, "small_write", _WRITE_CHILD,
        lambda k: [cfg.numpack_so, store, op, sync, str(k)], count)


def small_writes(cfg, log):
    rng = np.random.default_rng(5)
    n = cfg.rows(1_000_000, minimum=JOIN_IDS)
    base = rng.random((n, 10), dtype=np.float32)
    store = cfg.path("smallw.npk")
    shutil.rmtree(store, ignore_errors=True)
    rfile, afile = cfg.path("smallw-r.npy"), cfg.path("smallw-a.bin")
    con = connect(":memory:", cfg.numpack_so)
    scalar(con, "SELECT numpack_save(?, 'w', ?)", (store, _npy(base)))
    np.save(rfile, base)
    mr = np.load(rfile, mmap_mode="r+")
    # Room for every append of every repetition and first run.
    cap = n + 2 * 2 * (REPS + 1) * WRITE_CALLS * WRITE_ROWS
    ma = np.memmap(afile, dtype=np.float32, mode="w+", shape=(cap, 10))
    ma[:n] = base
    ma.flush()
    del base

    idx = [np.sort(rng.choice(n, size=WRITE_ROWS, replace=False))
           for _ in range(WRITE_CALLS)]
    idx_json = [json.dumps(i.tolist()) for i in idx]
    vals = [rng.random((WRITE_ROWS, 10), dtype=np.float32)
            for _ in range(WRITE_CALLS)]
    vals_npy = [_npy(v) for v in vals]
    state = {"rows": n, "mm_rows": n}

    def npk(op, level, settle):
        def run_(rep):
            con.execute("PRAGMA synchronous=%s" % level)
            if settle:
                settle_disk()
            with Timer() as t:
                for i in range(WRITE_CALLS):
                    if op == "replace":
                        con.execute("SELECT numpack_replace(?, 'w', ?, ?)",
                                    (store, vals_npy[i], idx_json[i]))
                    else:
                        con.execute("SELECT numpack_append(?, 'w', ?)",
                                    (store, vals_npy[i]))
            if op == "append":
                state["rows"] += WRITE_CALLS * WRITE_ROWS
            return t.seconds / WRITE_CALLS
        return run_

    def mm(op, flush, settle):
        def run_(rep):
            at = state["mm_rows"]
            if settle:
                settle_disk()
            with Timer() as t:
                for i in range(WRITE_CALLS):
                    if op == "replace":
                        mr[idx[i]] = vals[i]
                        if flush:
                            mr.flush()
                    else:
                        ma[at:at + WRITE_ROWS] = vals[i]
                        at += WRITE_ROWS
                        if flush:
                            ma.flush()
            state["mm_rows"] = at
            return t.seconds / WRITE_CALLS
        return run_

    def measure(contenders):
        for run_ in contenders.values():
            run_(0)  # an untimed first run of each
        return interleaved(REPS, contenders)

    out = []
    group = "Small writes (%s × 10 float32, each call a transaction)" \
        % count_text(n)
    for op, what, base_name in (
            ("replace", "`numpack_replace` %d random rows" % WRITE_ROWS,
             "`np.memmap(mode='r+')`: `a[idx] = rows`"),
            ("append", "`numpack_append` %d rows" % WRITE_ROWS,
             "`np.memmap(mode='r+')`: `m[n:n+%d] = rows`" % WRITE_ROWS)):
        for level, flush in (("OFF", False), ("FULL", True)):
            log("- small writes: %s, synchronous=%s" % (op, level))
            t = measure({"numpack": npk(op, level, True),
                         "memmap": mm(op, flush, True)})
            fsyncs = scalar(con, "SELECT json_extract(numpack_io_stats(?), "
                            "'$.last_commit_fsyncs')", (store,))
            # Counted on a copy: the counting runs write rows of their own.
            copy = cfg.path("smallw-strace.npk")
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(store, copy)
            calls = _write_syscalls(cfg, copy, op, level)
            shutil.rmtree(copy, ignore_errors=True)
            note = ("system calls per call (perf stat, else strace -c -f): "
                    "%s"
                    % ("not counted (no strace)" if calls is None
                       else "%.1f" % calls))
            if level == "OFF":
                out.append(Result(group, "%s, `synchronous=OFF`" % what,
                                  t["numpack"], base_name + " (no flush)",
                                  t["memmap"], at_most(5), rows=WRITE_ROWS,
                                  short="%s 100 rows, sync OFF" % op,
                                  notes=[note]))
            else:
                out.append(Result(group, "%s, `synchronous=FULL` (%s fsyncs "
                                  "per commit)" % (what, fsyncs),
                                  t["numpack"], base_name + " + `flush()`",
                                  t["memmap"], REPORT, rows=WRITE_ROWS,
                                  short="%s 100 rows, sync FULL" % op,
                                  notes=[note, "fsyncs per commit "
                                         "(numpack_io_stats "
                                         "last_commit_fsyncs): %s" % fsyncs]))
            if level == "OFF" and op == "replace":
                log("- small writes: replace, pages left dirty")
                w = measure({"numpack": npk(op, level, False),
                             "memmap": mm(op, flush, False)})
                out.append(Result(group, "%s, `synchronous=OFF`, the pages "
                                  "still dirty from the repetition before "
                                  "(no sync between)" % what,
                                  w["numpack"], base_name + " (no flush), "
                                  "the same", w["memmap"], REPORT,
                                  rows=WRITE_ROWS,
                                  short="%s 100 rows, sync OFF, dirty "
                                  "pages" % op))
    out += _small_deletes(cfg, log, con, store, n, rng, group)
    # The store holds what the memmaps hold: the replaced rows in mr, the
    # appended ones in ma past the first N.
    got = np.load(io.BytesIO(scalar(con, "SELECT numpack_load(?, 'w')",
                                    (store,))))
    if state["rows"] != state["mm_rows"] or got.shape[0] != state["rows"]:
        raise AssertionError("small writes: %d rows in the store, %d in the "
                             "memmap" % (got.shape[0], state["mm_rows"]))
    if not (np.array_equal(got[:n], mr) and
            np.array_equal(got[n:], ma[n:state["mm_rows"]])):
        raise AssertionError("small writes: the store differs from the "
                             "memmaps")
    con.close()
    return out


def _small_deletes(cfg, log, con, store, n, rng, group):
    """numpack_drop of WRITE_ROWS random live rows of an array with deleted
    rows (its bitmap patched in place) against a DELETE of as many rows by
    rowid from a native table of BLOB rows in an on-disk database, each call
    its own transaction, at both synchronous levels."""
    scalar(con, "SELECT numpack_save(?, 'd', ?)",
           (store, _npy(np.zeros((n, 10), dtype=np.float32))))
    scalar(con, "SELECT numpack_drop(?, 'd', 0)", (store,))
    db = cfg.path("smalld.db")
    if os.path.exists(db):
        os.remove(db)
    nat = connect(db, cfg.numpack_so)
    nat.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, r BLOB)")
    nat.execute("BEGIN")
    blob = bytes(40)
    nat.executemany("INSERT INTO t VALUES (?, ?)",
                    ((i, blob) for i in range(n)))
    nat.execute("COMMIT")
    order = rng.permutation(n)
    state = {"live": n - 1, "next": 0}

    def npk(level):
        def run_(rep):
            con.execute("PRAGMA synchronous=%s" % level)
            args = []
            for _ in range(WRITE_CALLS):
                pos = rng.choice(state["live"], size=WRITE_ROWS,
                                 replace=False)
                state["live"] -= WRITE_ROWS
                args.append(json.dumps(np.sort(pos).tolist()))
            settle_disk()
            with Timer() as t:
                for a in args:
                    con.execute("SELECT numpack_drop(?, 'd', ?)", (store, a))
            return t.seconds / WRITE_CALLS
        return run_

    def native(level):
        def run_(rep):
            nat.execute("PRAGMA synchronous=%s" % level)
            args = []
            for _ in range(WRITE_CALLS):
                ids = order[state["next"]:state["next"] + WRITE_ROWS]
                state["next"] += WRITE_ROWS
                args.append(json.dumps(ids.tolist()))
            settle_disk()
            with Timer() as t:
                for a in args:
                    nat.execute("DELETE FROM t WHERE rowid IN "
                                "(SELECT value FROM json_each(?))", (a,))
            return t.seconds / WRITE_CALLS
        return run_

    out = []
    what = "`numpack_drop` %d random rows of an array with deleted rows" \
        % WRITE_ROWS
    for level in ("OFF", "FULL"):
        log("- small writes: drop, synchronous=%s" % level)
        contenders = {"numpack": npk(level), "native": native(level)}
        for run_ in contenders.values():
            run_(0)
        t = interleaved(REPS, contenders)
        fsyncs = scalar(con, "SELECT json_extract(numpack_io_stats(?), "
                        "'$.last_commit_fsyncs')", (store,))
        copy = cfg.path("smalld-strace.npk")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(store, copy)
        calls = _write_syscalls(cfg, copy, "drop", level)
        shutil.rmtree(copy, ignore_errors=True)
        notes = ["system calls per call (perf stat, else strace -c -f): %s"
                 % ("not counted (no strace)" if calls is None
                    else "%.1f" % calls),
                 "fsyncs per commit (numpack_io_stats last_commit_fsyncs): %s"
                 % fsyncs]
        out.append(Result(group, "%s, `synchronous=%s` (%s fsyncs per "
                          "commit)" % (what, level, fsyncs), t["numpack"],
                          "native table of BLOB rows in an on-disk database: "
                          "`DELETE ... WHERE rowid IN` %d rowids" % WRITE_ROWS,
                          t["native"], REPORT, rows=WRITE_ROWS,
                          short="drop 100 rows, sync %s" % level,
                          notes=notes))
    live = scalar(con, "SELECT json_extract(numpack_shape(?, 'd'), '$[0]')",
                  (store,))
    if live != state["live"]:
        raise AssertionError("small deletes: %s live rows, %d expected"
                             % (live, state["live"]))
    nat.close()
    os.remove(db)
    return out


def run(cfg, ds, log):
    con, db, store, n, rng = _setup(cfg)
    out = []
    log("- lookups, autocommit and in a transaction")
    out.append(lookups(cfg, con, db, store, n, rng, False))
    out.append(lookups(cfg, con, db, store, n, rng, True))
    log("- join")
    out.append(join(cfg, con, db, store, n, rng))
    log("- metadata calls")
    out += metadata(cfg, con, db, store)
    con.close()
    out += small_writes(cfg, log)
    return out
