"""
cases_many.py — a store of many arrays against a store of one:

  insert   one-row autocommit INSERTs (`INSERT INTO t(value) VALUES (?)`,
           an int64 array of 4 rows) through a numpack table on one array
           of a store of 10,000 such arrays, against the same statement on
           the only array of a one-array store; each repetition times
           INSERTS statements on each in turn (SQLite's defaults: on-disk
           database, synchronous=FULL), and again with synchronous=OFF
           (NumPack's own durability), where the catalog's cost is not
           hidden behind fsync

  save     numpack_save of a new one-row array (synchronous=OFF) into the
           same two stores, turn about, each under a name of its own; with
           np.save of a new .npy into a directory of 10,000 such files
           against an empty one beside it, the file system's own share of
           making a file in a large directory

The number of arrays is not scaled by BENCH_SCALE (it is the point).  The
notes give the descriptors the process holds after reading every array of
the big store once (numpack_arrays and numpack_load of each): data files are
opened when used and closed when least recently used, never one per array;
and the system calls of one INSERT in each store (perf stat, else strace
-c -f, around a run of INSERTs in a child process, less a run of none),
when either is installed.
"""
import os
import struct

from benchlib import REPORT, Result, Timer, at_most, check_same, connect, \
    interleaved, scalar, sql_str, syscalls_per_call

ARRAYS = 10_000
INSERTS = 20
REPS = 7


def _fds():
    return len(os.listdir("/proc/self/fd"))


def _make_store(cfg, path, n):
    """A store of N int64 arrays a0..a{N-1} of 4 rows, in one transaction
    (a numpack table on the store lets numpack_save take part in it)."""
    con = connect(":memory:", cfg.numpack_so)
    con.execute("PRAGMA synchronous=OFF")
    con.execute("CREATE VIRTUAL TABLE a0 USING numpack(store=%s, array='a0', "
                "dtype=int64)" % sql_str(path))
    con.execute("BEGIN")
    con.executemany("INSERT INTO a0(value) VALUES (?)", [(k,) for k in range(4)])
    for i in range(1, n):
        raw = struct.pack("<4q", 10 * i, 10 * i + 1, 10 * i + 2, 10 * i + 3)
        con.execute("SELECT numpack_save(?, ?, ?, 'int64', '[4]')",
                    (path, "a%d" % i, raw))
    con.execute("COMMIT")
    con.close()


# The child that strace watches: ARGV = module, database, store, array,
# synchronous level, count of one-row INSERTs.
_CHILD = r"""
import sqlite3, sys
so, db, store, arr, sync, count = sys.argv[1:7]
con = sqlite3.connect(db, isolation_level=None)
con.enable_load_extension(True)
con.load_extension(so)
con.execute("CREATE VIRTUAL TABLE IF NOT EXISTS s USING numpack(store='%s', "
            "array='%s')" % (store.replace("'", "''"), arr))
con.execute("PRAGMA synchronous=" + sync)
con.execute("SELECT count(*) FROM s").fetchone()
for k in range(int(count)):
    con.execute("INSERT INTO s(value) VALUES (?)", (k,))
"""


def _syscalls(cfg, store, arr, sync, count=50):
    """System calls of one INSERT, or None without strace."""
    db = cfg.path("many_strace.db")
    return syscalls_per_call(
        cfg, "many", _CHILD,
        lambda k: [cfg.numpack_so, db, store, arr, sync, str(k)], count)


def _calls_note(cfg, big, one, sync):
    a = _syscalls(cfg, big, "a%d" % (ARRAYS // 2), sync)
    b = _syscalls(cfg, one, "a0", sync)
    if a is None or b is None:
        return "system calls per INSERT: not counted (no strace)"
    return ("system calls per INSERT (perf stat, else strace -c -f): %.1f in "
            "the store of "
            "%s arrays, %.1f in the one-array store"
            % (a, "{:,}".format(ARRAYS), b))


def inserts(cfg):
    big, one = cfg.path("many.npk"), cfg.path("one.npk")
    _make_store(cfg, big, ARRAYS)
    _make_store(cfg, one, 1)
    fds0 = _fds()
    cons = {}
    for name, store, arr in (("many", big, "a%d" % (ARRAYS // 2)),
                             ("one", one, "a0")):
        db = cfg.path("%s.db" % name)
        con = connect(db, cfg.numpack_so)
        con.execute("CREATE VIRTUAL TABLE t USING numpack(store=%s, "
                    "array=%s)" % (sql_str(store), sql_str(arr)))
        cons[name] = con

    def contender(name):
        con = cons[name]

        def run(rep):
            with Timer() as t:
                for k in range(INSERTS):
                    con.execute("INSERT INTO t(value) VALUES (?)", (k,))
            return t.seconds / INSERTS
        return run

    out = {}
    for sync in ("FULL", "OFF"):
        for con in cons.values():
            con.execute("PRAGMA synchronous=%s" % sync)
        out[sync] = interleaved(REPS, {n: contender(n) for n in cons})
    rows = 4 + 2 * REPS * INSERTS
    for name, con in cons.items():
        check_same("rows after the inserts (%s)" % name,
                   got=scalar(con, "SELECT count(*) FROM t"), want=rows)

    # Every array once: the listing, then each one loaded.
    con = cons["many"]
    check_same("arrays listed", got=scalar(
        con, "SELECT count(*) FROM numpack_arrays(?)", (big,)), want=ARRAYS)
    for i in range(ARRAYS):
        con.execute("SELECT numpack_load(?, ?)", (big, "a%d" % i)).fetchone()
    held = _fds() - fds0
    for c in cons.values():
        c.close()
    note = ("descriptors held by the process after reading all %s arrays "
            "once: %d more than before the stores were opened (two "
            "databases and their stores' lock and catalog files included)"
            % ("{:,}".format(ARRAYS), held))
    # Counted after the checks: the counting runs insert rows of their own.
    calls = {sync: _calls_note(cfg, big, one, sync) for sync in ("FULL", "OFF")}
    return [
        Result("Many arrays", "one-row autocommit INSERT, store of %s arrays "
               "(synchronous=FULL)" % "{:,}".format(ARRAYS), out["FULL"]["many"],
               "same in a one-array store", out["FULL"]["one"], at_most(2),
               short="INSERT, 10k arrays", notes=[note, calls["FULL"]]),
        Result("Many arrays", "one-row autocommit INSERT, store of %s arrays "
               "(synchronous=OFF)" % "{:,}".format(ARRAYS), out["OFF"]["many"],
               "same in a one-array store", out["OFF"]["one"], at_most(2),
               short="INSERT, 10k arrays, sync off", notes=[calls["OFF"]]),
    ]


SAVES = 50


def saves(cfg):
    """A new array saved into the big store and into the small one; np.save
    of a new file into a full directory and into an empty one."""
    import numpy as np
    big, one = cfg.path("many.npk"), cfg.path("one.npk")
    full, empty = cfg.path("many_npy"), cfg.path("one_npy")
    os.makedirs(full, exist_ok=True)
    os.makedirs(empty, exist_ok=True)
    row = np.arange(4, dtype=np.int64)
    for i in range(ARRAYS):
        np.save(os.path.join(full, "a%d.npy" % i), row)
    con = connect(":memory:", cfg.numpack_so)
    con.execute("PRAGMA synchronous=OFF")
    raw = row.tobytes()

    def numpack(store):
        def run(rep):
            with Timer() as t:
                for k in range(SAVES):
                    con.execute("SELECT numpack_save(?, ?, ?, 'int64', '[4]')",
                                (store, "n%d_%d" % (rep, k), raw))
            return t.seconds / SAVES
        return run

    def npy(d):
        def run(rep):
            with Timer() as t:
                for k in range(SAVES):
                    np.save(os.path.join(d, "n%d_%d.npy" % (rep, k)), row)
            return t.seconds / SAVES
        return run

    out = interleaved(REPS, {"many": numpack(big), "one": numpack(one),
                             "npy_many": npy(full), "npy_one": npy(empty)})
    check_same("arrays after the saves", got=scalar(
        con, "SELECT count(*) FROM numpack_arrays(?)", (big,)),
        want=ARRAYS + REPS * SAVES)
    con.close()
    return [
        Result("Many arrays", "`numpack_save` of a new one-row array, store "
               "of %s arrays (synchronous=OFF)" % "{:,}".format(ARRAYS),
               out["many"], "same in a one-array store", out["one"], REPORT,
               short="save new array, 10k arrays"),
        Result("Many arrays", "the file system's share: `np.save` of a new "
               ".npy into a directory of %s .npy files"
               % "{:,}".format(ARRAYS), out["npy_many"],
               "same into an empty directory", out["npy_one"], REPORT,
               short="np.save, 10k files"),
    ]


def run(cfg, ds, log):
    log("- one-row inserts in a store of %d arrays" % ARRAYS)
    out = inserts(cfg)
    log("- new arrays saved into a store of %d arrays" % ARRAYS)
    return out + saves(cfg)
