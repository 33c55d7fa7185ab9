"""test_memory.py - what a large transaction costs in process memory.

Rows a transaction replaces are held until COMMIT; past 32 MB they go to an
unnamed spill file in the store's directory (page cache, which the kernel
writes out and takes back), not to the process's own memory.  An UPDATE of
every row of a 128 MB array through the table, and a numpack_replace of
every row, each inside BEGIN, must keep the process's anonymous memory
(RssAnon) under 100 MB above where it started: the 32 MB kept in memory,
the row table and the statement's undo records.  Holding every row would
take more than 128 MB.  (Only where rows spill: ext2/3/4, XFS, tmpfs;
elsewhere, and under AddressSanitizer, the rows alone are checked.)  So
must the COMMIT, which writes the rows' old
bytes to the journal a piece at a time (building the journal in memory
took 128 MB more).  The rows read inside the transaction, after COMMIT
and after ROLLBACK are checked too.
"""
import json
import threading
import time

import numpy as np

from npktest import check, connect, module_path, npy, unnpy

ROWS, COLS = 262144, 128          # float32: 128 MB
LIMIT_MB = 100


def spills_on(path):
    """Whether rows spill on the file system holding PATH: ext2/3/4, XFS
    and tmpfs (elsewhere they stay in memory, and so must the test's
    expectation)."""
    best, kind = "", ""
    with open("/proc/mounts") as f:
        for line in f:
            mnt, fstype = line.split()[1:3]
            if (str(path) + "/").startswith(mnt.rstrip("/") + "/") and \
                    len(mnt) > len(best):
                best, kind = mnt, fstype
    return kind in ("ext2", "ext3", "ext4", "xfs", "tmpfs")


def under_asan():
    """AddressSanitizer pads every allocation and keeps freed memory in
    quarantine: the process's memory then measures the sanitizer.  The
    sanitizer build checks the rows only; the plain build, which CI runs
    too, checks the memory."""
    with open("/proc/self/maps") as f:
        return any("libasan" in line for line in f)


def rss_anon_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no RssAnon in /proc/self/status")


class Peak:
    """The highest RssAnon seen while the block runs, sampled every 2 ms."""

    def __enter__(self):
        self.peak = rss_anon_mb()
        self._stop = False
        self._thread = threading.Thread(target=self._run)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, rss_anon_mb())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, rss_anon_mb())


def make_store(db, store):
    db.execute("SELECT numpack_save(?, 'a', zeroblob(?), 'float32', ?)",
               (store, ROWS * COLS * 4, json.dumps([ROWS, COLS])))


def all_rows_are(db, store, value):
    a = unnpy(db.execute("SELECT numpack_load(?, 'a')",
                         (store,)).fetchone()[0])
    return a.shape == (ROWS, COLS) and bool((a == value).all())


def spill_case(tmp_path, how):
    store = str(tmp_path / "m.npk")
    db = connect(module_path())
    db.execute("PRAGMA synchronous=OFF")
    make_store(db, store)
    db.execute("CREATE VIRTUAL TABLE temp.t USING numpack(store=%r, "
               "array='a', layout='blob')" % store)
    row = np.full(COLS, 2.0, np.float32).tobytes()
    # numpack_replace's arguments are the caller's memory, made first.
    args = (store, npy(np.full((ROWS, COLS), 2.0, np.float32)),
            json.dumps(list(range(ROWS)))) if how == "replace" else None
    start = rss_anon_mb()
    db.execute("BEGIN")
    with Peak() as p:
        if how == "update":
            db.execute("UPDATE t SET row = ?", (row,))
        else:
            db.execute("SELECT numpack_replace(?, 'a', ?, ?)", args)
    # SQLite's own copy of the bound BLOB (the sqlite3 module binds it
    # transient, and its cached statement keeps it bound) is the caller's.
    bound = len(args[1]) / 2.0 ** 20 if args else 0
    grew = p.peak - start - bound
    measured = spills_on(tmp_path) and not under_asan()
    if measured:
        check(grew < LIMIT_MB, "%s of 128 MB: RssAnon grew by %.0f MB "
              "inside the transaction (limit %d)" % (how, grew, LIMIT_MB))
    first = db.execute("SELECT row FROM t WHERE rowid = ?",
                       (ROWS - 1,)).fetchone()[0]
    check(first == row, "%s: the last row read inside the transaction" % how)
    with Peak() as p:
        db.execute("COMMIT")
    grew = p.peak - start - bound
    if measured:
        check(grew < LIMIT_MB, "%s of 128 MB: RssAnon grew by %.0f MB "
              "during COMMIT, which journals the rows' old bytes (limit %d)"
              % (how, grew, LIMIT_MB))
    check(all_rows_are(db, store, 2.0), "%s: every row after COMMIT" % how)
    db.execute("BEGIN")
    db.execute("UPDATE t SET row = ?",
               (np.full(COLS, 3.0, np.float32).tobytes(),))
    db.execute("ROLLBACK")
    check(all_rows_are(db, store, 2.0), "%s: every row after ROLLBACK" % how)
    db.close()


def test_update_spills(tmp_path):
    spill_case(tmp_path, "update")


def test_replace_spills(tmp_path):
    spill_case(tmp_path, "replace")
