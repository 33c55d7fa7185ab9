"""
cases_array.py — whole-array input and output, N x 128 float32 (512 MB at
full scale):

  save    SELECT numpack_save(store, name, ?) with the .npy bytes bound,
          against np.save to a file, and np.save + fsync (numpack's save is
          durable: data, catalog and directory are synced before it returns)
  load    numpack_load + np.load(BytesIO) into a NumPy array, against
          np.load from the file; the SQL call alone is reported too
  C API   the same two functions called through SQLite's C API (the
          binding's _capi.py),
          as a C program would: the bytes bound without a copy, the result
          read where SQLite holds it (and once copied into a new ndarray);
          numpack_save also under PRAGMA synchronous=OFF, which skips
          fsync as np.save does; and NumPack.save (durable, and with
          durable=False) and NumPack.load of the Python binding, which take
          that path (its rows at 1 and 25 MB are cases_binding.py's)
  stream  SELECT length(npy) FROM numpack_stream(store, name, 65536) over a
          2 GB array, consumed to the end in a fresh process
          (stream_probe.py): the peak increase of RssAnon is the figure;
          once more with batches a quarter the size, to show how the peak
          follows the batch size
  page    `cat data_file > /dev/null` on a warm file: the page-cache read
          bandwidth, the physical limit of every load and scan here

Before every timed step the disk is settled (os.sync) and memory warmed
(benchlib.prepare); each contender writes a fresh file or store, removed
afterwards outside the timing.  Two driver floors show what Python's sqlite3
module alone costs for 512 MB: binding the bytes (SELECT length(?)) and
fetching a BLOB of that size (SELECT zeroblob(n)).
"""
import ctypes
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from benchlib import (REPORT, Result, Target, Timer, at_most, binding,
                      connect, interleaved, prepare, scalar, settle_disk)

SAVE_REPS = 5
LOAD_REPS = 5
STREAM_REPS = 3
CAT_REPS = 5
STREAM_BATCH = 65536
HERE = os.path.dirname(os.path.abspath(__file__))
capi = binding()._capi


def page_cache_bandwidth(path: str):
    """Seconds per `cat PATH > /dev/null` once the file is in the cache."""
    cmd = ["sh", "-c", 'cat "$1" > /dev/null', "cat", path]
    subprocess.run(cmd, check=True)  # warm the cache
    times = []
    for _ in range(CAT_REPS):
        with Timer() as t:
            subprocess.run(cmd, check=True)
        times.append(t.seconds)
    return times


def save_cases(cfg, ds, log):
    con = connect(":memory:", cfg.numpack_so)
    store, npy_out = cfg.path("save.npk"), cfg.path("save.npy")

    def numpack(rep):
        prepare(cfg)
        with Timer() as t:
            scalar(con, "SELECT numpack_save(?, 'saved', ?)", (store, ds.npy))
        shutil.rmtree(store)
        return t.seconds

    def np_save(rep):
        prepare(cfg)
        with Timer() as t:
            np.save(npy_out, ds.arr)
        os.remove(npy_out)
        return t.seconds

    def np_save_fsync(rep):
        prepare(cfg)
        with Timer() as t:
            with open(npy_out, "wb") as f:
                np.save(f, ds.arr)
                f.flush()
                os.fsync(f.fileno())
        os.remove(npy_out)
        return t.seconds

    def bind_floor(rep):
        prepare(cfg)
        with Timer() as t:
            scalar(con, "SELECT length(?)", (ds.npy,))
        return t.seconds

    cdb = capi.Connection(cfg.path("capi.db"), cfg.numpack_so)
    csave = cdb.prepare("SELECT numpack_save(?, 'saved', ?)")
    npy = np.frombuffer(ds.npy, dtype=np.uint8)

    def capi_save(synchronous):
        def run(rep):
            cdb.exec("PRAGMA synchronous=%s" % synchronous)
            prepare(cfg)
            with Timer() as t:
                csave.bind_text(1, store)
                csave.bind_blob_static(2, npy.ctypes.data, npy.nbytes)
                csave.step()
                csave.reset()
            shutil.rmtree(store)
            return t.seconds
        return run

    def binding_save(durable):
        def run(rep):
            prepare(cfg)
            with binding().NumPack(store, drop_if_exists=True,
                                   durable=durable) as npk:
                with Timer() as t:
                    npk.save({"saved": ds.arr})
            shutil.rmtree(store)
            return t.seconds
        return run

    times = interleaved(SAVE_REPS, {"numpack": numpack, "np.save": np_save,
                                    "fsync": np_save_fsync,
                                    "floor": bind_floor,
                                    "capi": capi_save("FULL"),
                                    "capi_off": capi_save("OFF"),
                                    "binding": binding_save(True),
                                    "binding_off": binding_save(False)})
    csave.finalize()
    cdb.close()
    settle_disk()
    with Timer() as ser:
        buf = io.BytesIO()
        np.save(buf, ds.arr)
    del buf
    con.close()
    mb = ds.arr.nbytes / 1e6
    note = ("the .npy bytes are made before the timing; making them "
            "(np.save to BytesIO) takes a further %.0f ms" % (ser.seconds * 1e3))
    return [
        Result("Whole arrays", "save whole array, %.0f MB "
               "(`numpack_save` with the npy bytes bound)" % mb,
               times["numpack"], "`np.save` to a file", times["np.save"],
               at_most(1.2), short="save vs np.save", notes=[note]),
        Result("Whole arrays", "save whole array, %.0f MB (same)" % mb,
               times["numpack"], "`np.save` + `fsync`", times["fsync"],
               REPORT, short="save vs np.save+fsync"),
        Result("Whole arrays", "driver floor: `SELECT length(?)` with the "
               "same bytes bound (handing them to SQLite from Python)",
               times["floor"], "`np.save` to a file", times["np.save"],
               REPORT, short="floor: bind npy bytes"),
        Result("Whole arrays", "`numpack_save` through SQLite's C API (bytes "
               "bound `SQLITE_STATIC`), synced", times["capi"],
               "`np.save` + `fsync`", times["fsync"], REPORT,
               short="C API save vs np.save+fsync"),
        Result("Whole arrays", "`numpack_save` through SQLite's C API, "
               "`PRAGMA synchronous=OFF` (no fsync, as `np.save`)",
               times["capi_off"], "`np.save` to a file", times["np.save"],
               at_most(1.2), short="C API save, sync off, vs np.save"),
        Result("Whole arrays", "`NumPack(store).save({name: arr})` of the "
               "Python binding (the raw form through the C API), synced",
               times["binding"], "`np.save` + `fsync`", times["fsync"],
               at_most(1.2), short="binding save vs np.save+fsync"),
        Result("Whole arrays", "`NumPack(store, durable=False).save({name: "
               "arr})` of the Python binding (no fsync, as NumPack)",
               times["binding_off"], "`np.save` to a file", times["np.save"],
               at_most(1.2), short="binding save, durable=False"),
    ]


def load_cases(cfg, ds, log):
    con = connect(":memory:", cfg.numpack_so)
    sql_only = []
    nbytes = len(ds.npy)

    def numpack(rep):
        prepare(cfg)
        with Timer() as t:
            with Timer() as q:
                blob = scalar(con, "SELECT numpack_load(?, 'base')",
                              (ds.store,))
            arr = np.load(io.BytesIO(blob))
        sql_only.append(q.seconds)
        if rep == 0 and not np.array_equal(arr, ds.arr):
            raise AssertionError("numpack_load returned other data")
        return t.seconds

    def np_load(rep):
        prepare(cfg)
        with Timer() as t:
            arr = np.load(ds.npy_file)
        if rep == 0 and not np.array_equal(arr, ds.arr):
            raise AssertionError("np.load returned other data")
        return t.seconds

    def fetch_floor(rep):
        prepare(cfg)
        with Timer() as t:
            blob = scalar(con, "SELECT zeroblob(?)", (nbytes,))
        del blob
        return t.seconds

    cdb = capi.Connection(":memory:", cfg.numpack_so)
    cload = cdb.prepare("SELECT numpack_load(?, 'base')")
    header = nbytes - ds.arr.nbytes
    in_place = []

    def capi_load(rep):
        prepare(cfg)
        with Timer() as t:
            with Timer() as q:
                cload.bind_text(1, ds.store)
                cload.step()
                addr, n = cload.column_blob(0)
            arr = np.empty(ds.arr.shape, dtype=ds.arr.dtype)
            ctypes.memmove(arr.ctypes.data, addr + header, arr.nbytes)
        if rep == 0 and (n != nbytes or not np.array_equal(arr, ds.arr)):
            raise AssertionError("numpack_load (C API) returned other data")
        cload.reset()
        in_place.append(q.seconds)
        return t.seconds

    npk = binding().NumPack(ds.store)
    npk.open()

    def binding_load(rep):
        prepare(cfg)
        with Timer() as t:
            arr = npk.load("base")
        if rep == 0 and not np.array_equal(arr, ds.arr):
            raise AssertionError("NumPack.load returned other data")
        return t.seconds

    numpack(-1), np_load(-1)  # warm both files into the page cache
    sql_only.clear()
    times = interleaved(LOAD_REPS, {"numpack": numpack, "np.load": np_load,
                                    "floor": fetch_floor, "capi": capi_load,
                                    "binding": binding_load})
    npk.close()
    cload.finalize()
    cdb.close()
    con.close()
    mb = ds.arr.nbytes / 1e6
    return [
        Result("Whole arrays", "load whole array into NumPy, %.0f MB "
               "(`numpack_load` + `np.load(BytesIO)`)" % mb,
               times["numpack"], "`np.load` from the file", times["np.load"],
               at_most(1.5), short="load vs np.load"),
        Result("Whole arrays", "`SELECT numpack_load(...)` alone, to Python "
               "bytes", sql_only, "`np.load` from the file", times["np.load"],
               REPORT, short="numpack_load alone"),
        Result("Whole arrays", "driver floor: `SELECT zeroblob(%.0f MB)` "
               "fetched into Python bytes" % (nbytes / 1e6), times["floor"],
               "`np.load` from the file", times["np.load"], REPORT,
               short="floor: fetch a BLOB"),
        Result("Whole arrays", "`numpack_load` through SQLite's C API, "
               "result read where SQLite holds it", in_place,
               "`np.load` from the file", times["np.load"], at_most(1.5),
               short="C API load"),
        Result("Whole arrays", "`numpack_load` through SQLite's C API, "
               "result copied into a new ndarray", times["capi"],
               "`np.load` from the file", times["np.load"], REPORT,
               short="C API load into ndarray"),
        Result("Whole arrays", "`NumPack(store).load(name)` of the Python "
               "binding (`numpack_load` through the C API, its result used "
               "in place as the ndarray)", times["binding"],
               "`np.load` from the file", times["np.load"], at_most(1.5),
               short="binding load"),
    ]


def stream_case(cfg, ds, log):
    """A 2 GB array (four times the base array), streamed in a fresh
    process."""
    store = cfg.path("big.npk")
    con = connect(":memory:", cfg.numpack_so)
    scalar(con, "SELECT numpack_save(?, 'big', ?)", (store, ds.npy))
    for _ in range(3):
        scalar(con, "SELECT numpack_append(?, 'big', ?)", (store, ds.npy))
    con.close()
    nbytes = 4 * ds.arr.nbytes
    subprocess.run(["sh", "-c", 'cat "$1" > /dev/null', "cat",
                    os.path.join(store, "data_big.npkd")], check=True)

    def probe(batch):
        out = subprocess.run(
            [sys.executable, os.path.join(HERE, "stream_probe.py"),
             cfg.numpack_so, store, "big", str(batch)],
            check=True, capture_output=True, text=True).stdout
        return json.loads(out)

    probes = [probe(STREAM_BATCH) for _ in range(STREAM_REPS)]
    small = probe(STREAM_BATCH // 4)
    shutil.rmtree(store)
    for p in probes:
        if p["bytes"] < nbytes:
            raise AssertionError("the stream returned %d bytes of %d"
                                 % (p["bytes"], nbytes))
    peaks = [(p["peak_kb"] - p["before_kb"]) / 1024 for p in probes]
    secs = [p["seconds"] for p in probes]
    batch_mib = STREAM_BATCH * ds.arr.shape[1] * 4 / 2**20
    return [
        Result("Memory", "stream %.2f GB in %d-row batches: peak RssAnon "
               "increase (`SELECT length(npy) FROM numpack_stream(...)`)"
               % (nbytes / 1e9, STREAM_BATCH),
               [max(peaks)], target=Target("< 64 MiB", "below", 64),
               unit="MiB", short="stream peak MiB",
               notes=["one batch is %.0f MiB of data; the stream took %.2f s "
                      "(median), %.2f GB/s; RssAnon sampled every ms by a "
                      "thread while SQLite runs; the worst of %d runs is "
                      "reported (all: %s MiB)"
                      % (batch_mib, np.median(secs),
                         nbytes / 1e9 / np.median(secs), len(probes),
                         ", ".join("%.1f" % p for p in peaks))]),
        Result("Memory", "same, %d-row batches (%.0f MiB each)"
               % (STREAM_BATCH // 4, batch_mib / 4),
               [(small["peak_kb"] - small["before_kb"]) / 1024],
               unit="MiB", short="stream peak MiB, small batches"),
    ]


def run(cfg, ds, log):
    out = []
    log("- page-cache bandwidth")
    cat = page_cache_bandwidth(ds.data_file)
    out.append(Result("Physical limit", "`cat data_file > /dev/null`, warm, "
                      "%.0f MB" % (os.path.getsize(ds.data_file) / 1e6),
                      cat, short="cat"))
    log("- save")
    out += save_cases(cfg, ds, log)
    log("- load")
    out += load_cases(cfg, ds, log)
    log("- stream")
    out += stream_case(cfg, ds, log)
    return out
