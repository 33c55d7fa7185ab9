"""
cases_headline.py — NumPack's headline operations on a 1M x 10 float32
array (40 MB at full scale), through the SQL functions, against keeping the
array in one .npy file and rewriting it (np.load the whole file, change it,
np.save):

  replace        numpack_replace(store, name, npy, '[i, ...]'), 100 random
                 rows                  vs  load, a[idx] = new, save
  random access  np.load(BytesIO(numpack_getitem(store, name, '[i, ...]'))),
                 100 random rows       vs  np.load(file)[idx]
                                       (and np.load(file, mmap_mode='r')[idx])
  full load      numpack_load + np.load(BytesIO)  vs  np.load(file)
  append         numpack_append(store, name, npy), 100 rows
                                       vs  load, concatenate, save

numpack's writes are durable (synced) when they return; np.save is not.
Both arrays receive the same changes, so they stay equal (checked).  Each
operation runs once untimed on both sides before its repetitions.
"""
import io
import json

import numpy as np

from benchlib import (Result, Timer, connect, count_text, interleaved,
                      scalar, warm_memory)
from datagen import npy_bytes

REPS = 7
K = 100


def run(cfg, ds, log):
    log("- NumPack headline operations")
    rng = np.random.default_rng(3)
    n = cfg.rows(1_000_000)
    arr = rng.random((n, 10), dtype=np.float32)
    store, npy_file = cfg.path("headline.npk"), cfg.path("headline.npy")
    con = connect(":memory:", cfg.numpack_so)
    scalar(con, "SELECT numpack_save(?, 'h', ?)", (store, npy_bytes(arr)))
    np.save(npy_file, arr)
    del arr

    idx = [np.sort(rng.choice(n, size=K, replace=False)) for _ in range(REPS)]
    new = [rng.random((K, 10), dtype=np.float32) for _ in range(REPS)]
    fetched = {}

    def timed(fn):
        def run_(rep):
            with Timer() as t:
                fn(rep)
            return t.seconds
        return run_

    def npk_replace(rep):
        scalar(con, "SELECT numpack_replace(?, 'h', ?, ?)",
               (store, npy_bytes(new[rep]), json.dumps(idx[rep].tolist())))

    def np_replace(rep):
        a = np.load(npy_file)
        a[idx[rep]] = new[rep]
        np.save(npy_file, a)

    def npk_getitem(rep):
        fetched["numpack"] = np.load(io.BytesIO(scalar(
            con, "SELECT numpack_getitem(?, 'h', ?)",
            (store, json.dumps(idx[rep].tolist())))))

    def np_getitem(rep):
        fetched["numpy"] = np.load(npy_file)[idx[rep]]

    def np_getitem_mmap(rep):
        fetched["mmap"] = np.array(np.load(npy_file, mmap_mode="r")[idx[rep]])

    def npk_load(rep):
        fetched["numpack"] = np.load(io.BytesIO(scalar(
            con, "SELECT numpack_load(?, 'h')", (store,))))

    def np_load(rep):
        fetched["numpy"] = np.load(npy_file)

    def npk_append(rep):
        scalar(con, "SELECT numpack_append(?, 'h', ?)",
               (store, npy_bytes(new[rep])))

    def np_append(rep):
        a = np.load(npy_file)
        np.save(npy_file, np.concatenate([a, new[rep]]))

    def same():
        for k in fetched:
            if not np.array_equal(fetched[k], fetched["numpack"]):
                raise AssertionError("headline: %s differs from numpack" % k)
        fetched.clear()

    out = []
    ops = [
        ("replace %d random rows" % K, "npy rewrite: load, assign, save",
         npk_replace, np_replace, "replace 100 rows"),
        ("random access %d rows (`numpack_getitem`, JSON index list)" % K,
         "`np.load(file)[idx]`", npk_getitem, np_getitem,
         "getitem 100 rows"),
        ("random access %d rows (same)" % K,
         "`np.load(file, mmap_mode='r')[idx]`", npk_getitem, np_getitem_mmap,
         "getitem 100 rows vs mmap"),
        ("full load (`numpack_load` + `np.load(BytesIO)`)",
         "`np.load(file)`", npk_load, np_load, "full load, 10 columns"),
        ("append %d rows" % K, "npy rewrite: load, concatenate, save",
         npk_append, np_append, "append 100 rows"),
    ]
    group = "Headline (%s × 10)" % count_text(n)
    for case, base_name, npk, base, short in ops:
        warm_memory(256 << 20)
        npk(0), base(0)  # untimed first run of each
        times = interleaved(REPS, {"numpack": timed(npk),
                                   "base": timed(base)})
        if fetched:
            same()
        out.append(Result(group, case, times["numpack"], base_name,
                          times["base"], short=short))
    whole = np.load(io.BytesIO(scalar(con, "SELECT numpack_load(?, 'h')",
                                      (store,))))
    if not np.array_equal(whole, np.load(npy_file)):
        raise AssertionError("headline: the arrays drifted apart")
    con.close()
    return out
