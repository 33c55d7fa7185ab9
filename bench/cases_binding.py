"""
cases_binding.py — what the Python binding (bindings/python, the
numpack_sqlite package) adds to the SQL functions it calls, per call and
per array size:

  per call   npk.getitem(name, idx_list), npk.replace({name: rows},
             idx_list) and npk.append({name: rows}) of 100 rows of a
             200k x 32 float32 array (scaled), against the SQL statement the
             binding runs, its result fetched as bytes, undecoded: "the SQL
             function underneath".  The index list becomes JSON text in the
             timing (json.dumps, as any Python caller of the function must
             do); the rows' .npy or raw bytes are made beforehand.  Writes
             without fsync on both sides (the binding's durable=False,
             PRAGMA synchronous=OFF on the SQL connection), so that what the
             binding adds is not hidden behind a sync.
             Each repetition is the mean of a loop of calls.
  whole      npk.load(name) against np.load of the same array's .npy file,
             npk.save({name: arr}) against np.save + fsync (the binding's
             saves are durable), and NumPack(..., durable=False).save
             against np.save alone, at 1 MB and 25 MB (N x 32 float32, fixed
             sizes, whatever BENCH_SCALE); the 512 MB rows are
             cases_array's.  Each saves into a store it keeps open (as an
             application would), a new array every time: the array is
             removed again after the timing (numpack_drop), as the .npy
             file is.
  floor      the system calls of that synced save alone, made by a C
             program (syncfloor.c) in the same order, against write +
             fsync of the same bytes in C: what the commit's syncs cost
             with no code of numpack's or Python's around them.  Measured
             turn about with each other, in a pass after the others.

Both sides of a per-call row work on stores of their own holding the same
array, receive the same changes and are compared at the end.
"""
import ctypes
import io
import json
import os
import shutil

import numpy as np

from benchlib import (REPORT, Result, Timer, at_most, binding, connect,
                      count_text, interleaved, prepare, scalar, settle_disk)
from datagen import npy_bytes

GROUP = "Python binding: per call and per array size"
K = 100
CALL_REPS = 25         # repetitions of each per-call loop
CALLS = 40             # calls per repetition (their mean is the figure)
# rows of 32 float32, label, repetitions: a 1 MB save takes about a
# millisecond, which the host's noise moves by as much, so it is repeated
# more often
SIZES = [(8192, "1 MB", 31), (200_000, "25 MB", 7)]


def per_call(cfg, log):
    numpack_sqlite = binding()
    rng = np.random.default_rng(13)
    n = cfg.rows(200_000)
    model = rng.random((n, 32), dtype=np.float32)
    sstore, bstore = cfg.path("percall-sql.npk"), cfg.path("percall-bind.npk")
    con = connect(":memory:", cfg.numpack_so)
    con.execute("PRAGMA synchronous=OFF")
    scalar(con, "SELECT numpack_save(?, 'g', ?)", (sstore, npy_bytes(model)))
    npk = numpack_sqlite.NumPack(bstore, drop_if_exists=True,
                                 warn_no_context=False, durable=False,
                                 module=cfg.numpack_so)
    npk.open()
    npk.save({"g": model})

    reps = CALL_REPS * CALLS + CALLS
    idx = [np.sort(rng.choice(n, size=K, replace=False)).tolist()
           for _ in range(reps)]
    new = [rng.random((K, 32), dtype=np.float32) for _ in range(reps)]
    new_npy = [bytes(npy_bytes(v)) for v in new]
    raw_shape = "[%d,32]" % K
    sql_got, bind_got = [], []

    def loop(fn):
        state = {"i": 0}

        def run_(rep):
            start = state["i"]
            state["i"] += CALLS
            with Timer() as t:
                for i in range(start, start + CALLS):
                    fn(i)
            return t.seconds / CALLS
        return run_

    def s_getitem(i):
        r = con.execute("SELECT numpack_getitem(?, 'g', ?)",
                        (sstore, json.dumps(idx[i]))).fetchone()[0]
        if i % CALLS == 0:
            sql_got.append(r)

    def b_getitem(i):
        r = npk.getitem("g", idx[i])
        if i % CALLS == 0:
            bind_got.append(r)

    def s_replace(i):
        con.execute("SELECT numpack_replace(?, 'g', ?, ?)",
                    (sstore, new_npy[i], json.dumps(idx[i]))).fetchone()

    def b_replace(i):
        npk.replace({"g": new[i]}, idx[i])

    def s_append(i):
        con.execute("SELECT numpack_append(?, 'g', ?, 'float32', ?)",
                    (sstore, new[i], raw_shape)).fetchone()

    def b_append(i):
        npk.append({"g": new[i]})

    out = []
    n_text = count_text(n)
    for what, label, sfn, bfn in [
            ("getitem", "`npk.getitem('g', idx_list)`, %d random rows" % K,
             s_getitem, b_getitem),
            ("replace", "`npk.replace({'g': rows}, idx_list)`, %d random "
             "rows, `durable=False`" % K, s_replace, b_replace),
            ("append", "`npk.append({'g': rows})`, %d rows, "
             "`durable=False`" % K, s_append, b_append)]:
        log("  per call: %s" % what)
        contenders = {"sql": loop(sfn), "binding": loop(bfn)}
        for run_ in contenders.values():
            run_(-1)       # untimed first loop of each
        times = interleaved(CALL_REPS, contenders, reverse_odd=True)
        sql_stmt, how = {
            "getitem": ("numpack_getitem(store, name, json)",
                        "`json.dumps(idx_list)` timed"),
            "replace": ("numpack_replace(store, name, npy, json)",
                        "`json.dumps(idx_list)` timed, the rows' .npy made "
                        "beforehand, `synchronous=OFF`"),
            "append": ("numpack_append(store, name, raw, dtype, shape)",
                       "the rows' bytes made beforehand, "
                       "`synchronous=OFF`")}[what]
        out.append(Result(
            GROUP, "%s on %s × 32 float32" % (label, n_text),
            times["binding"], "`SELECT %s`, %s, result left as bytes" % (
                sql_stmt, how),
            times["sql"], at_most(1.5), short="binding %s / SQL" % what,
            notes=["mean of %d calls per repetition" % CALLS]))

    for s, b in zip(sql_got, bind_got):
        if not np.array_equal(np.load(io.BytesIO(s)), b):
            raise AssertionError("binding: getitem differs from the SQL call")
    want = np.load(io.BytesIO(scalar(con, "SELECT numpack_load(?, 'g')",
                                     (sstore,))))
    if not np.array_equal(npk.load("g"), want):
        raise AssertionError("binding: the two stores differ")
    npk.close()
    con.close()
    shutil.rmtree(sstore)
    shutil.rmtree(bstore)
    return out


def whole(cfg, log):
    numpack_sqlite = binding()
    rng = np.random.default_rng(17)
    out = []
    for rows, size, reps in SIZES:
        log("  whole arrays: %s" % size)
        arr = rng.random((rows, 32), dtype=np.float32)
        npy_file, out_file = cfg.path("bw.npy"), cfg.path("bw-out.npy")
        store = cfg.path("bw.npk")
        np.save(npy_file, arr)
        npk = numpack_sqlite.NumPack(store, drop_if_exists=True,
                                     warn_no_context=False,
                                     module=cfg.numpack_so)
        npk.open()
        npk.save({"w": arr})
        loops = max(1, (8 << 20) // arr.nbytes)   # small loads: mean of a loop

        def np_load(rep):
            prepare(cfg)
            with Timer() as t:
                for _ in range(loops):
                    got = np.load(npy_file)
                    del got
            return t.seconds / loops

        def b_load(rep):
            prepare(cfg)
            with Timer() as t:
                for _ in range(loops):
                    got = npk.load("w")
                    del got
            if rep == 0 and not np.array_equal(npk.load("w"), arr):
                raise AssertionError("binding: load returned other data")
            return t.seconds / loops

        def np_save(fsync):
            def run_(rep):
                prepare(cfg)
                with Timer() as t:
                    with open(out_file, "wb") as f:
                        np.save(f, arr)
                        if fsync:
                            f.flush()
                            os.fsync(f.fileno())
                os.remove(out_file)
                return t.seconds
            return run_

        savers = {d: numpack_sqlite.NumPack(
            cfg.path("bw-save-%d.npk" % d), drop_if_exists=True,
            warn_no_context=False, durable=d, module=cfg.numpack_so)
            for d in (True, False)}

        # The binding's drop() marks rows deleted (NumPack's drop): the
        # next save would then write over an existing array, replacing its
        # data file and freeing the old one inside the timing, while the
        # .npy file is removed outside it.  numpack_drop removes the array.
        remover = connect(":memory:", cfg.numpack_so)

        def b_save(durable):
            s = savers[durable]

            def run_(rep):
                prepare(cfg)
                with Timer() as t:
                    s.save({"w": arr})
                scalar(remover, "SELECT numpack_drop(?, 'w')", (s._path,))
                return t.seconds
            return run_

        for s in savers.values():
            s.open()
            b_save(s._durable)(-1)   # its connections opened, untimed
        np_load(-1), b_load(-1)     # both files into the page cache
        times = interleaved(reps, {
            "np.load": np_load, "load": b_load,
            "np.save+fsync": np_save(True), "save": b_save(True),
            "np.save": np_save(False), "save_off": b_save(False)})
        # The floor pair in a pass of its own: its files and syncs are not to
        # weigh on the contenders above.
        floor = SyncFloor(cfg, arr, out_file)
        times.update(interleaved(reps, {
            "floor": floor.commit, "floor_base": floor.write_fsync}))
        floor.close()
        npk.close()
        remover.close()
        shutil.rmtree(store)
        for s in savers.values():
            path = s._path
            s.close()
            shutil.rmtree(path)
        os.remove(npy_file)
        settle_disk()
        mb = arr.nbytes / 1e6
        shape = "%s × 32 float32, %.1f MB" % (count_text(rows), mb)
        out += [
            Result(GROUP, "`npk.load(name)`, %s" % shape, times["load"],
                   "`np.load` from the file", times["np.load"],
                   at_most(1.5), short="binding load %s" % size),
            Result(GROUP, "`npk.save({name: arr})`, synced, %s" % shape,
                   times["save"], "`np.save` + `fsync`",
                   times["np.save+fsync"], at_most(1.2),
                   short="binding save %s vs np.save+fsync" % size),
            Result(GROUP, "`NumPack(..., durable=False).save({name: arr})`, "
                   "%s" % shape, times["save_off"], "`np.save` to a file",
                   times["np.save"], at_most(1.2),
                   short="binding save %s, durable=False" % size),
            Result(GROUP, "The same commit's system calls alone, in C, "
                   "%s: a new data file, five syncs (journal, data file, "
                   "directory, catalog, idle journal)" % shape,
                   times["floor"], "`write` + `fsync` of the same bytes "
                   "to a new file, in C", times["floor_base"], REPORT,
                   short="sync floor %s" % size),
        ]
    return out


class SyncFloor:
    """bench/syncfloor.c as two contenders: the system calls of a synced
    save of a new array, with no numpack code around them, and its
    baseline's write + fsync, both in C."""

    def __init__(self, cfg, arr, out_file):
        lib = ctypes.CDLL(cfg.syncfloor_so)
        lib.floor_open.argtypes = [ctypes.c_char_p]
        lib.floor_commit.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.floor_write_fsync.argtypes = [ctypes.c_char_p, ctypes.c_void_p,
                                          ctypes.c_size_t]
        self.lib, self.cfg, self.arr = lib, cfg, arr
        self.dir = cfg.path("syncfloor")
        self.out = out_file.encode()
        self.check(lib.floor_open(self.dir.encode()), "open")

    @staticmethod
    def check(rc, what):
        if rc:
            raise OSError(rc, "syncfloor: %s: %s" % (what, os.strerror(rc)))

    def commit(self, rep):
        prepare(self.cfg)
        with Timer() as t:
            rc = self.lib.floor_commit(self.arr.ctypes.data, self.arr.nbytes)
        self.check(rc, "commit")
        self.check(self.lib.floor_undo(), "undo")
        return t.seconds

    def write_fsync(self, rep):
        prepare(self.cfg)
        with Timer() as t:
            rc = self.lib.floor_write_fsync(self.out, self.arr.ctypes.data,
                                            self.arr.nbytes)
        self.check(rc, "write")
        os.remove(self.out)
        return t.seconds

    def close(self):
        self.lib.floor_close()
        shutil.rmtree(self.dir)


def run(cfg, ds, log):
    log("- Python binding: per call and per array size")
    return per_call(cfg, log) + whole(cfg, log)
