#!/usr/bin/python3
"""model.py - a randomized test of the SQL functions against a NumPy model.

The model is a dict of arrays holding the live rows of each array of the
store, so indexes into it are NumPack's logical indexes.  A fixed seed
drives a few hundred random steps: numpack_save, numpack_append (sometimes
with the wrong dtype or row shape), numpack_replace with an integer, a list
or a slice, numpack_drop of rows and of arrays (a missing name drops
nothing), numpack_compact, numpack_clone, numpack_getitem, out-of-range
indexes, and transactions that write through a table and a function and
then COMMIT or ROLLBACK.  After every step numpack_load and numpack_shape
of every array and the rows of numpack_arrays must agree with the model;
now and then a second connection checks what is committed.

Usage: /usr/bin/python3 model.py [MODULE [TMPDIR [SEED [STEPS]]]]
Prints one line per failure and "N passed, M failed"; exits 1 on failure.
"""
import json
import os
import random
import sqlite3
import sys

import numpy as np

from npktest import (DTYPES, args, check, connect, finish, npy, same,
                     unnpy)

ROW_SHAPES = [(), (3,), (2, 2)]
NAMES = ["a", "b", "c", "d", "e"]
TX = "tx"              # the array behind the table used in transactions

class Model:
    def __init__(self, db, db2, store, seed):
        self.db = db
        self.db2 = db2
        self.store = store
        self.r = random.Random(seed)
        self.rng = np.random.default_rng(seed)
        self.arrays = {}     # name -> live rows
        self.phys = {}       # name -> physical rows, None when not known
        self.step = 0

    # ---- SQL --------------------------------------------------------------

    def sql(self, query, *args):
        return self.db.execute(query, args).fetchone()[0]

    def fails(self, query, *args, words=()):
        """Run QUERY, which must fail with a message holding WORDS."""
        try:
            self.sql(query, *args)
        except sqlite3.Error as e:
            return check(all(w in str(e) for w in words),
                         "step %d: %s: message %r lacks %r"
                         % (self.step, query, str(e), words))
        return check(False, "step %d: %s was accepted" % (self.step, query))

    # ---- random values ----------------------------------------------------

    def data(self, dtype, shape):
        dt = np.dtype(dtype)
        n = int(np.prod(shape))
        if dt.kind == "b":
            a = self.rng.integers(0, 2, n).astype(bool)
        elif dt.kind in "ui":
            info = np.iinfo(dt)
            a = self.rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
        elif dt.kind == "f":
            a = (self.rng.standard_normal(n) * 100).astype(dt)
            if n and self.r.random() < 0.3:
                a[self.r.randrange(n)] = np.nan
        else:
            a = (self.rng.standard_normal(n)
                 + 1j * self.rng.standard_normal(n)).astype(dt)
        return a.reshape(shape)

    def index(self, n, kind=None, unique=False):
        """A random index over N live rows: (SQL argument, NumPy index,
        scalar).  Lists have no repeats when UNIQUE."""
        kind = kind or self.r.choice(["int", "list", "slice"])
        if kind == "int" and n:
            i = self.r.randrange(-n, n)
            return i, i, True
        if kind == "list" or (kind == "int" and not n):
            k = self.r.randint(0, min(n, 5))
            rows = self.r.sample(range(n), k)
            if not unique and rows and self.r.random() < 0.3:
                rows.append(rows[0])
            rows = [i - n if self.r.random() < 0.3 else i for i in rows]
            return json.dumps(rows), np.array(rows, dtype=np.intp), False
        a = self.r.randint(-n - 2, n + 2)
        b = self.r.randint(-n - 2, n + 2)
        step = self.r.choice([1, 1, 1, 2, 3, -1, -2])
        text = "%s:%s" % (self.r.choice([a, ""]), self.r.choice([b, ""]))
        if step != 1:
            text += ":%d" % step
        parts = text.split(":")
        sl = slice(*[int(p) if p else None for p in parts])
        return text, sl, False

    def out_of_range(self, n):
        """An index argument with at least one row out of range."""
        bad = self.r.choice([n, n + 3, -n - 1])
        if self.r.random() < 0.5:
            return bad
        return json.dumps([0, bad] if n else [bad])

    def name(self, existing=True):
        names = sorted(self.arrays) if existing else NAMES
        return self.r.choice(names) if names else None

    # ---- operations -------------------------------------------------------

    def op_save(self):
        name = self.r.choice(NAMES)
        dtype = self.r.choice(DTYPES)
        shape = (self.r.randint(0, 20),) + self.r.choice(ROW_SHAPES)
        a = self.data(dtype, shape)
        check(self.sql("SELECT numpack_save(?, ?, ?)", self.store, name, npy(a))
              == shape[0], "step %d: save returns the rows" % self.step)
        self.arrays[name] = a
        self.phys[name] = shape[0]

    def op_append(self):
        name = self.name()
        if name is None:
            return
        a = self.arrays[name]
        k = self.r.randint(0, 6)
        if self.r.random() < 0.15:
            # The wrong dtype or row shape: refused, nothing changes.
            if self.r.random() < 0.5:
                dtype = self.r.choice([d for d in DTYPES if d != a.dtype.name])
                rows = self.data(dtype, (k,) + a.shape[1:])
            else:
                shape = self.r.choice([s for s in ROW_SHAPES + [(5,)]
                                       if s != a.shape[1:]])
                rows = self.data(a.dtype, (k,) + shape)
            self.fails("SELECT numpack_append(?, ?, ?)", self.store, name,
                       npy(rows), words=('"%s"' % name,))
            return
        rows = self.data(a.dtype, (k,) + a.shape[1:])
        if a.dtype.itemsize > 1 and self.r.random() < 0.2:
            rows_in = rows.astype(rows.dtype.newbyteorder(">"))
        else:
            rows_in = rows
        check(self.sql("SELECT numpack_append(?, ?, ?)", self.store, name,
                       npy(rows_in)) == k,
              "step %d: append returns the rows" % self.step)
        self.arrays[name] = np.concatenate([a, rows])
        if self.phys[name] is not None:
            self.phys[name] += k

    def op_replace(self):
        name = self.name()
        if name is None:
            return
        a = self.arrays[name]
        n = a.shape[0]
        if n and self.r.random() < 0.1:
            vals = self.data(a.dtype, (1,) + a.shape[1:])
            self.fails("SELECT numpack_replace(?, ?, ?, ?)", self.store, name,
                       npy(vals), self.out_of_range(n), words=("range",))
            return
        arg, idx, scalar = self.index(n, unique=True)
        k = len(range(n)[idx]) if isinstance(idx, slice) else (
            1 if scalar else len(idx))
        if scalar and self.r.random() < 0.5:
            vals = self.data(a.dtype, a.shape[1:])       # the row alone
        else:
            vals = self.data(a.dtype, (k,) + a.shape[1:])
        check(self.sql("SELECT numpack_replace(?, ?, ?, ?)", self.store, name,
                       npy(vals), arg) == k,
              "step %d: replace %s returns %d" % (self.step, arg, k))
        a = a.copy()
        a[idx] = vals.reshape(a.shape[1:]) if scalar else vals
        self.arrays[name] = a

    def op_drop_rows(self):
        name = self.name()
        if name is None:
            return
        a = self.arrays[name]
        n = a.shape[0]
        if self.r.random() < 0.1:
            self.fails("SELECT numpack_drop(?, ?, ?)", self.store, name,
                       self.out_of_range(n), words=("range",))
            return
        arg, idx, scalar = self.index(n, unique=True)
        rows = sorted({i % n for i in np.atleast_1d(np.arange(n)[idx])}) if n else []
        got = self.sql("SELECT numpack_drop(?, ?, ?)", self.store, name, arg)
        check(got == len(rows), "step %d: drop rows %s of %s returns %r, not %d"
              % (self.step, arg, name, got, len(rows)))
        self.arrays[name] = np.delete(a, rows, axis=0)

    def op_compact(self):
        name = self.name()
        if name is None:
            return
        got = self.sql("SELECT numpack_compact(?, ?)", self.store, name)
        live = self.arrays[name].shape[0]
        if self.phys[name] is not None:
            check(got == self.phys[name] - live,
                  "step %d: compact %s returns %r, not %d"
                  % (self.step, name, got, self.phys[name] - live))
        self.phys[name] = live

    def op_clone(self):
        src = self.name()
        if src is None:
            return
        dst = self.r.choice(NAMES)
        if dst in self.arrays:
            self.fails("SELECT numpack_clone(?, ?, ?)", self.store, src, dst,
                       words=('"%s"' % dst,))
            return
        self.sql("SELECT numpack_clone(?, ?, ?)", self.store, src, dst)
        self.arrays[dst] = self.arrays[src].copy()
        self.phys[dst] = None

    def op_drop_array(self):
        names = [n for n in self.arrays if n != TX]
        if not names:
            return
        pick = self.r.sample(sorted(names), self.r.randint(1, min(2, len(names))))
        if self.r.random() < 0.2:
            missing = [n for n in NAMES if n not in self.arrays]
            if missing:
                arg = json.dumps(pick + [self.r.choice(missing)])
                self.fails("SELECT numpack_drop(?, ?)", self.store, arg,
                           words=("no array",))
                return
        arg = pick[0] if len(pick) == 1 and self.r.random() < 0.5 else json.dumps(pick)
        check(self.sql("SELECT numpack_drop(?, ?)", self.store, arg) == len(pick),
              "step %d: drop %s" % (self.step, arg))
        for n in pick:
            del self.arrays[n]
            del self.phys[n]

    def op_getitem(self):
        name = self.name()
        if name is None:
            return
        a = self.arrays[name]
        n = a.shape[0]
        if self.r.random() < 0.1:
            self.fails("SELECT numpack_getitem(?, ?, ?)", self.store, name,
                       self.out_of_range(n), words=("range",))
            return
        arg, idx, scalar = self.index(n)
        got = unnpy(self.sql("SELECT numpack_getitem(?, ?, ?)", self.store,
                             name, arg))
        check(same(a[idx], got), "step %d: getitem %s %s" % (self.step, name, arg))

    def op_transaction(self):
        """Write through the table and a function in one transaction, then
        COMMIT or ROLLBACK."""
        v = int(self.rng.integers(-1000, 1000))
        others = [n for n in self.arrays if n != TX]
        other = self.r.choice(sorted(others)) if others else None
        self.db.execute("BEGIN")
        self.db.execute("INSERT INTO t_tx VALUES(?)", (v,))
        tx = np.concatenate([self.arrays[TX], np.array([v], dtype=np.int64)])
        changed = {TX: tx}
        if other is not None:
            a = self.arrays[other]
            rows = self.data(a.dtype, (2,) + a.shape[1:])
            self.sql("SELECT numpack_append(?, ?, ?)", self.store, other, npy(rows))
            changed[other] = np.concatenate([a, rows])
        # Inside, both writes are seen.
        for name, a in changed.items():
            check(same(a, unnpy(self.sql("SELECT numpack_load(?, ?)", self.store,
                                         name))),
                  "step %d: inside the transaction, %s" % (self.step, name))
        if self.r.random() < 0.5:
            self.db.execute("COMMIT")
            for name, a in changed.items():
                grown = a.shape[0] - self.arrays[name].shape[0]
                self.arrays[name] = a
                if self.phys[name] is not None:
                    self.phys[name] += grown
        else:
            self.db.execute("ROLLBACK")

    def op_errors(self):
        """Errors that change nothing."""
        choice = self.r.randrange(4)
        missing = [n for n in NAMES if n not in self.arrays]
        if choice == 0 and missing:
            m = self.r.choice(missing)
            self.fails("SELECT numpack_load(?, ?)", self.store, m,
                       words=('"%s"' % m,))
        elif choice == 1 and missing:
            m = self.r.choice(missing)
            self.fails("SELECT numpack_append(?, ?, ?)", self.store, m,
                       npy(np.zeros(2, dtype=np.int32)), words=('"%s"' % m,))
        elif choice == 2 and missing:
            m = self.r.choice(missing)
            self.fails("SELECT numpack_clone(?, ?, ?)", self.store, m, "zz",
                       words=('"%s"' % m,))
        else:
            name = self.name()
            if name:
                self.fails("SELECT numpack_replace(?, ?, ?, 0)", self.store, name,
                           npy(np.array(["x"])), words=("<U1",))

    # ---- checking ---------------------------------------------------------

    def verify(self, db=None, what="after"):
        db = db or self.db
        tag = "step %d (%s)" % (self.step, what)
        listed = {row[0]: row[1:] for row in db.execute(
            "SELECT name, rows, live_rows, deleted_rows FROM numpack_arrays(?)",
            (self.store,))}
        if not check(sorted(listed) == sorted(self.arrays),
                     "%s: arrays %s, model %s" % (tag, sorted(listed),
                                                  sorted(self.arrays))):
            return
        for name, a in self.arrays.items():
            rows, live, deleted = listed[name]
            check(live == a.shape[0] and rows - deleted == live,
                  "%s: %s numpack_arrays rows %d live %d deleted %d, model %d"
                  % (tag, name, rows, live, deleted, a.shape[0]))
            if self.phys[name] is not None:
                check(rows == self.phys[name], "%s: %s has %d physical rows, "
                      "model %d" % (tag, name, rows, self.phys[name]))
            got = unnpy(db.execute("SELECT numpack_load(?, ?)",
                                   (self.store, name)).fetchone()[0])
            check(same(a, got), "%s: numpack_load %s differs" % (tag, name))
            shape = db.execute("SELECT numpack_shape(?, ?)",
                               (self.store, name)).fetchone()[0]
            check(json.loads(shape) == list(a.shape),
                  "%s: numpack_shape %s is %s, model %s"
                  % (tag, name, shape, a.shape))

    def run(self, steps):
        self.sql("SELECT numpack_open(?, 1)", self.store)
        self.sql("SELECT numpack_save(?, ?, ?)", self.store, TX,
                 npy(np.arange(3, dtype=np.int64)))
        self.arrays[TX] = np.arange(3, dtype=np.int64)
        self.phys[TX] = 3
        self.db.execute("CREATE VIRTUAL TABLE t_tx USING numpack(store='%s', "
                        "array='%s')" % (self.store.replace("'", "''"), TX))
        ops = [(self.op_save, 8), (self.op_append, 16), (self.op_replace, 14),
               (self.op_drop_rows, 14), (self.op_compact, 5), (self.op_clone, 6),
               (self.op_drop_array, 4), (self.op_getitem, 14),
               (self.op_transaction, 6), (self.op_errors, 5)]
        funcs = [f for f, _ in ops]
        weights = [w for _, w in ops]
        for self.step in range(1, steps + 1):
            op = self.r.choices(funcs, weights)[0]
            try:
                op()
            except sqlite3.Error as e:
                check(False, "step %d: %s: %s" % (self.step, op.__name__, e))
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
            self.verify()
            if self.step % 50 == 0:
                self.verify(self.db2, "second connection")
        check(self.sql("SELECT numpack_open(?)", self.store) == len(self.arrays),
              "numpack_open counts the arrays")


def main():
    module, tmp = args()
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 20240611
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    store = os.path.join(tmp, "model.npk")
    db, db2 = connect(module), connect(module)
    Model(db, db2, store, seed).run(steps)
    db.close()
    db2.close()
    return finish()


if __name__ == "__main__":
    sys.exit(main())
