"""test_threads.py - connections in several threads of one process, on one
store, at the same time.

All connections of a process share one store object (its catalog, open
files, mappings and retired mappings), each connection with its own locks
and transactions, and Python's sqlite3 module lets SQLite run without the
interpreter lock, so these threads really run at once:

  transfers  threads move amounts between the 16 rows of `acct` inside
             BEGIN ... COMMIT, one through the table (UPDATE), one through
             the functions (numpack_getitem + numpack_replace), one through
             both; the rows' total never changes in a committed state
  readers    threads check that total through the table, numpack_load,
             numpack_getitem (of one row, and of all 16 at once without
             the lock, outside a transaction) and a join looking each row
             up by rowid (without the lock, outside a transaction), and
             inside BEGIN that two reads agree
  appenders  threads append (thread, seq) rows to `log`, through INSERT and
             through numpack_append, while
  cleaner    a thread deletes every row whose seq is a multiple of 10 and
             compacts `log` now and then (which moves the data file)

At the end every appended row is there exactly once, in its thread's order,
unless it was to be deleted, and the total of `acct` is what it was.  Busy
errors are retried as an application would; any other error fails.  Each
thread declares the tables in a database of its own: in memory (reads lock
per statement, so a transfer that read an old total must be refused, not
lose an update), in a file in rollback-journal mode (a transaction's reads
hold the store), or in a file in WAL mode.
"""
import io
import os
import random
import sqlite3
import threading

import numpy as np
import pytest

from npktest import check, npy

ACCOUNTS = 16
START = 1000
TRANSFERS = 100     # per transfer thread
READS = 100         # per reader thread
APPENDS = 180       # rows per appender thread


def _conn(module, store):
    mode = _conn.mode
    path = ":memory:"
    if mode != "memory":
        _conn.count += 1
        path = os.path.join(os.path.dirname(store), "c%d.db" % _conn.count)
    db = sqlite3.connect(path, isolation_level=None, timeout=30,
                         check_same_thread=False)
    if mode == "wal":
        db.execute("PRAGMA journal_mode=WAL")
    db.enable_load_extension(True)
    db.load_extension(module)
    db.enable_load_extension(False)
    for name in ("acct", "log"):
        db.execute("CREATE VIRTUAL TABLE %s USING numpack(store='%s', "
                   "array='%s')" % (name, store, name))
    return db


def _busy(e):
    """Busy, locked, or refused for having read an older state."""
    name = getattr(e, "sqlite_errorname", "")
    return name.startswith("SQLITE_BUSY") or name == "SQLITE_LOCKED"


def _try(db, work, stats):
    """WORK(db)'s result, or None when it was busy (and is rolled back)."""
    try:
        return work(db)
    except sqlite3.OperationalError as e:
        if db.in_transaction:
            db.execute("ROLLBACK")
        if not _busy(e):
            raise
        stats["busy"] += 1
        return None


def _retrying(db, work, stats):
    """Run WORK(db) in one transaction, again while it is busy."""
    def txn(db):
        db.execute("BEGIN")
        work(db)
        db.execute("COMMIT")
        return True
    while _try(db, txn, stats) is None:
        pass


def _value(db, store, row):
    blob = db.execute("SELECT numpack_getitem(?, 'acct', ?)",
                      (store, str(row))).fetchone()[0]
    return int(np.load(io.BytesIO(blob)))  # a scalar index: a 0-d array


def _transfer(module, store, how, seed, stats):
    db = _conn(module, store)
    rng = random.Random(seed)

    def by_table(db, a, b, x):
        db.execute("UPDATE acct SET value = value - ? WHERE rowid = ?",
                   (x, a))
        db.execute("UPDATE acct SET value = value + ? WHERE rowid = ?",
                   (x, b))

    def by_functions(db, a, b, x):
        va, vb = _value(db, store, a), _value(db, store, b)
        db.execute("SELECT numpack_replace(?, 'acct', ?, ?)",
                   (store, npy(np.array([va - x, vb + x], np.int64)),
                    "[%d, %d]" % (a, b)))

    for i in range(TRANSFERS):
        a, b = rng.sample(range(ACCOUNTS), 2)
        x = rng.randint(1, 50)
        step = {"table": by_table, "functions": by_functions,
                "both": by_table if i % 2 else by_functions}[how]
        _retrying(db, lambda db: step(db, a, b, x), stats)
        stats["transfers"] += 1
    db.close()


def _read(module, store, stats, bad):
    db = _conn(module, store)
    total = ACCOUNTS * START

    def by_table(db):
        return db.execute("SELECT sum(value) FROM acct").fetchone()[0]

    def by_load(db):
        blob = db.execute("SELECT numpack_load(?, 'acct')",
                          (store,)).fetchone()[0]
        return int(np.load(io.BytesIO(blob)).sum())

    def by_lookups(db):
        # Each row looked up by rowid, outside a transaction without the
        # store's lock: still one state for the whole statement.
        ids = ",".join("(%d)" % r for r in range(ACCOUNTS))
        return db.execute("WITH ids(id) AS (VALUES %s) SELECT sum(a.value) "
                          "FROM ids JOIN acct AS a ON a.rowid = ids.id"
                          % ids).fetchone()[0]

    def by_getitem(db):
        # Every row in one call, outside a transaction: read without the
        # store's lock, one state for all of them.
        blob = db.execute("SELECT numpack_getitem(?, 'acct', ?)",
                          (store, str(list(range(ACCOUNTS))))).fetchone()[0]
        return int(np.load(io.BytesIO(blob)).sum())

    def twice(db):
        # Statements of one transaction read one state only where the
        # transaction holds the store (rollback-journal mode).
        db.execute("BEGIN")
        one = by_table(db)
        two = sum(_value(db, store, r) for r in range(ACCOUNTS))
        db.execute("COMMIT")
        if _conn.mode == "disk" and one != two:
            bad.append("one transaction read %d, then %d" % (one, two))
        return one

    for i in range(READS):
        got = _try(db, (by_table, by_load, twice, by_lookups,
                        by_getitem)[i % 5], stats)
        if got is None:
            continue
        stats["reads"] += 1
        if got != total:
            bad.append("read a total of %d" % got)
    db.close()


def _append(module, store, tid, stats):
    db = _conn(module, store)
    seq = 0
    while seq < APPENDS:
        n = 1 if tid == 0 else 3
        rows = [(tid, s) for s in range(seq, seq + n)]

        def work(db):
            if tid == 0:
                db.execute("INSERT INTO log(c0, c1) VALUES (?, ?)", rows[0])
            else:
                db.execute("SELECT numpack_append(?, 'log', ?)",
                           (store, npy(np.array(rows, np.int64))))
        _retrying(db, work, stats)
        seq += n
    db.close()


def _clean(module, store, appenders, stats):
    db = _conn(module, store)
    rounds = 0
    while True:
        last = not any(t.is_alive() for t in appenders)

        def work(db):
            db.execute("DELETE FROM log WHERE c1 % 10 = 0")
            if rounds % 4 == 3 or last:
                db.execute("SELECT numpack_compact(?, 'log')", (store,))
        _retrying(db, work, stats)
        rounds += 1
        stats["cleanings"] += 1
        if last:
            break
    db.close()


def _run(target, args, errors):
    def body():
        try:
            target(*args)
        except Exception as e:   # reported by the main thread
            errors.append("%s: %r" % (target.__name__, e))
    t = threading.Thread(target=body)
    t.start()
    return t


@pytest.mark.parametrize("mode", ["memory", "disk", "wal"])
def test_threads(module, tmp, mode):
    _conn.mode, _conn.count = mode, 0
    store = tmp + "/st"
    main = sqlite3.connect(":memory:", isolation_level=None)
    main.enable_load_extension(True)
    main.load_extension(module)
    main.execute("SELECT numpack_save(?, 'acct', ?)",
                 (store, npy(np.full(ACCOUNTS, START, np.int64))))
    main.execute("SELECT numpack_save(?, 'log', ?)",
                 (store, npy(np.zeros((0, 2), np.int64))))

    stats = {"busy": 0, "transfers": 0, "reads": 0, "cleanings": 0}
    errors, bad = [], []
    workers = [_run(_transfer, (module, store, how, seed, stats), errors)
               for seed, how in enumerate(("table", "functions", "both"))]
    workers += [_run(_read, (module, store, stats, bad), errors)
                for _ in range(2)]
    appenders = [_run(_append, (module, store, tid, stats), errors)
                 for tid in range(2)]
    workers += appenders
    workers.append(_run(_clean, (module, store, appenders, stats), errors))
    for t in workers:
        t.join(120)
    check(not any(t.is_alive() for t in workers), "every thread finished")
    check(errors == [], "no thread failed: %s" % errors[:5])
    check(bad == [], "every read saw a committed total: %s" % bad[:5])
    check(stats["transfers"] == 3 * TRANSFERS,
          "every transfer committed (%d)" % stats["transfers"])
    check(stats["reads"] > 0, "the readers read (%d)" % stats["reads"])
    check(stats["cleanings"] >= 1, "the cleaner ran (%d)" % stats["cleanings"])

    acct = np.load(io.BytesIO(main.execute(
        "SELECT numpack_load(?, 'acct')", (store,)).fetchone()[0]))
    check(int(acct.sum()) == ACCOUNTS * START,
          "the total is unchanged: %d" % acct.sum())
    check(not np.array_equal(acct, np.full(ACCOUNTS, START)),
          "the transfers changed the rows")

    log = np.load(io.BytesIO(main.execute(
        "SELECT numpack_load(?, 'log')", (store,)).fetchone()[0]))
    for tid in range(2):
        seqs = log[log[:, 0] == tid, 1].tolist()
        want = [s for s in range(APPENDS) if s % 10]
        check(seqs == want, "thread %d's rows, once each, in order (%d of %d)"
              % (tid, len(seqs), len(want)))
    check(len(log) == 2 * len([s for s in range(APPENDS) if s % 10]),
          "no other row in log (%d)" % len(log))
    # What another process would read: the files on disk agree.
    other = sqlite3.connect(":memory:")
    other.enable_load_extension(True)
    other.load_extension(module)
    again = np.load(io.BytesIO(other.execute(
        "SELECT numpack_load(?, 'log')", (store,)).fetchone()[0]))
    check(np.array_equal(again, log), "a new connection reads the same log")
