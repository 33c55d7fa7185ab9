"""test_two_conns.py - two connections of one process on one store.

All connections of a process share one store object (and its open data
files), so one connection's uncommitted work must survive another's reads.
For every kind of write (INSERT, UPDATE, DELETE through the table;
numpack_append, numpack_replace, numpack_drop of rows, numpack_save then
numpack_append through the functions), on an array with 0 and with 5
committed rows, connection A writes twice inside BEGIN while connection B
reads between every step (through the table and through numpack_load);
A must keep seeing its own rows, B only the committed ones, and after
COMMIT or ROLLBACK both, and a third connection opened afresh, see the
same rows.  Each kind x committed rows x COMMIT/ROLLBACK is a case of 20
checks (560 in all).
"""
import os
import sqlite3

import numpy as np
import pytest

from npktest import check, connect, npy, unnpy

KINDS = ["insert", "update", "delete", "append", "replace", "drop", "save"]


class Rows:
    """The model: value per physical row, None for a deleted row."""

    def __init__(self, values):
        self.v = list(values)

    def copy(self):
        return Rows(self.v)

    def live(self):
        return [(i, x) for i, x in enumerate(self.v) if x is not None]

    def physical(self, logical):
        return [i for i, x in enumerate(self.v) if x is not None][logical]


def write(kind, db, store, rows, k):
    """Apply write number K of KIND through DB and to the model ROWS."""
    val = 100 * (k + 1)
    if kind == "insert":
        db.execute("INSERT INTO e(value) VALUES (?)", (val,))
        rows.v.append(val)
    elif kind == "update":
        db.execute("INSERT INTO e(value) VALUES (?)", (val,))
        rows.v.append(val)
        r = rows.physical(-1 - k % 2 if len(rows.live()) > 1 else -1)
        db.execute("UPDATE e SET value = ? WHERE rowid = ?", (val + 1, r))
        rows.v[r] = val + 1
    elif kind == "delete":
        db.execute("INSERT INTO e(value) VALUES (?), (?)", (val, val + 2))
        rows.v += [val, val + 2]
        r = rows.physical(0)
        db.execute("DELETE FROM e WHERE rowid = ?", (r,))
        rows.v[r] = None
    elif kind == "append":
        db.execute("DELETE FROM e WHERE 0")  # joins the store's transaction
        db.execute("SELECT numpack_append(?, 'e', ?)",
                   (store, npy(np.array([val, val + 1], np.int32))))
        rows.v += [val, val + 1]
    elif kind == "replace":
        db.execute("INSERT INTO e(value) VALUES (?)", (val,))
        rows.v.append(val)
        db.execute("SELECT numpack_replace(?, 'e', ?, '0')",
                   (store, npy(np.array([val + 3], np.int32))))
        rows.v[rows.physical(0)] = val + 3
    elif kind == "drop":
        db.execute("INSERT INTO e(value) VALUES (?), (?)", (val, val + 4))
        rows.v += [val, val + 4]
        db.execute("SELECT numpack_drop(?, 'e', '0')", (store,))
        rows.v[rows.physical(0)] = None
    elif kind == "save":
        db.execute("DELETE FROM e WHERE 0")
        if k == 0:
            db.execute("SELECT numpack_save(?, 'e', ?)",
                       (store, npy(np.zeros(0, np.int32))))
            rows.v = []
        db.execute("SELECT numpack_append(?, 'e', ?)",
                   (store, npy(np.array([val], np.int32))))
        rows.v.append(val)
    else:
        raise ValueError(kind)


def sees(db, store, rows, what):
    """DB reads exactly the live rows of ROWS, through the table and
    through numpack_load."""
    try:
        got = db.execute("SELECT rowid, value FROM e ORDER BY rowid").fetchall()
        loaded = unnpy(db.execute("SELECT numpack_load(?, 'e')",
                                  (store,)).fetchone()[0])
    except sqlite3.Error as e:
        return check(False, "%s: %s" % (what, e))
    want = rows.live()
    return (check(got == want, "%s: table rows %r, expected %r" % (what, got, want))
            and check(loaded.tolist() == [x for _, x in want],
                      "%s: numpack_load %r, expected %r"
                      % (what, loaded.tolist(), want)))


@pytest.mark.parametrize("end", ["COMMIT", "ROLLBACK"])
@pytest.mark.parametrize("base", [0, 5])
@pytest.mark.parametrize("kind", KINDS)
def test_two_conns(module, tmp, kind, base, end):
    name = "%s-%d-%s" % (kind, base, end)
    dbpath = os.path.join(tmp, name + ".db")
    store = os.path.join(tmp, name + ".npk")
    a = connect(module, dbpath)
    a.execute("CREATE VIRTUAL TABLE e USING numpack(store='%s', dtype=int32)"
              % store)
    for i in range(base):
        a.execute("INSERT INTO e(value) VALUES (?)", (i + 1,))
    committed = Rows(range(1, base + 1))
    b = connect(module, dbpath)
    sees(b, store, committed, name + ": B before")
    mine = committed.copy()
    a.execute("BEGIN")
    for k in range(2):
        try:
            write(kind, a, store, mine, k)
        except sqlite3.Error as e:
            check(False, "%s: write %d: %s" % (name, k, e))
            a.close()
            b.close()
            return
        sees(b, store, committed, "%s: B after write %d" % (name, k))
        sees(a, store, mine, "%s: A after write %d and B's read" % (name, k))
        sees(b, store, committed, "%s: B after A's read %d" % (name, k))
    try:
        a.execute(end)
    except sqlite3.Error as e:
        check(False, "%s: %s: %s" % (name, end, e))
    final = mine if end == "COMMIT" else committed
    sees(a, store, final, name + ": A after " + end)
    sees(b, store, final, name + ": B after " + end)
    c = connect(module, dbpath)
    sees(c, store, final, name + ": a new connection after " + end)
    for db in (a, b, c):
        db.close()

