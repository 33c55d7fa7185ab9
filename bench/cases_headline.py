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

The same operations are also done through NumPack's own Python API, the
numpack_sqlite binding (bindings/python), on a second store holding the
same array:

  replace        npk.replace({'h': rows}, idx_list)
  random access  npk.getitem('h', idx_list)
                 npk.load('h', lazy=True)[idx_list]  (opening the lazy array
                                       each time, as written)
                 lazy[idx_list]        (a LazyArray opened once, indexing only)
  full load      npk.load('h')
  append         npk.append({'h': rows})

They run turn about with the SQL functions and the .npy file, in the same
repetitions, and are reported in a table of their own next to NumPack 0.7's
published figures for these operations (measured by NumPack on Apple
Silicon, quoted, not measured here).

numpack's writes are durable (synced) when they return, through the SQL
functions and through the binding alike; np.save is not.  Whoever follows
the .npy rewrite pays for part of its write-back (the next fsync commits
the file system's journal), so the order of the contenders is reversed
every other repetition (SQL functions, .npy file, binding; then binding,
.npy file, SQL functions): each numpack side follows the rewrite half of
the time, and the rewrite always follows a numpack write.  All three copies
receive the same changes, so they stay equal: an in-memory NumPy model is
kept alongside, every binding result is compared with it after its timed
call (every repetition), the SQL functions' results with the .npy file's
(last repetition), and the three stores with the model at the end.  Each
operation runs once untimed on every side before its repetitions.
"""
import io
import json

import numpy as np

from benchlib import (Result, Timer, binding, connect, count_text, interleaved,
                      scalar, timed, warm_memory)
from datagen import npy_bytes

REPS = 15
K = 100

# NumPack 0.7's published figures for these operations on 1M x 10 float32
# (Apple Silicon), as quoted; none of them is measured here.
PUBLISHED = {
    "replace": "0.040 ms",
    "append": "0.054 ms",
    "random": "0.004 ms",
    "load": "4.0 ms",
}
PUBLISHED_WHERE = "Apple Silicon"


def run(cfg, ds, log):
    log("- NumPack headline operations (SQL functions and Python binding)")
    numpack_sqlite = binding()
    rng = np.random.default_rng(3)
    n = cfg.rows(1_000_000)
    model = rng.random((n, 10), dtype=np.float32)
    store, npy_file = cfg.path("headline.npk"), cfg.path("headline.npy")
    bstore = cfg.path("headline-binding.npk")
    con = connect(":memory:", cfg.numpack_so)
    scalar(con, "SELECT numpack_save(?, 'h', ?)", (store, npy_bytes(model)))
    np.save(npy_file, model)
    npk = numpack_sqlite.NumPack(bstore, drop_if_exists=True,
                                 warn_no_context=False,
                                 module=cfg.numpack_so)
    npk.open()
    npk.save({"h": model})
    state = {"model": model}
    del model

    idx = [np.sort(rng.choice(n, size=K, replace=False)) for _ in range(REPS)]
    idx_list = [i.tolist() for i in idx]
    new = [rng.random((K, 10), dtype=np.float32) for _ in range(REPS)]
    fetched = {}

    def checked(fn, check):
        """FN timed; then, untimed, CHECK(rep, what FN returned)."""
        def run_(rep):
            with Timer() as t:
                got = fn(rep)
            check(rep, got)
            return t.seconds
        return run_

    def must_equal(what, got, want):
        if got.shape != want.shape or got.dtype != want.dtype or \
                not np.array_equal(got, want):
            raise AssertionError("headline: %s differs from the model" % what)

    # -- the SQL functions and the .npy file --------------------------------

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

    # -- the binding, checked against the model -----------------------------

    def b_replace(rep):
        npk.replace({"h": new[rep]}, idx_list[rep])

    def b_replace_check(rep, _):
        state["model"][idx[rep]] = new[rep]
        must_equal("npk.replace", npk.getitem("h", idx_list[rep]), new[rep])

    def b_getitem(rep):
        return npk.getitem("h", idx_list[rep])

    def b_lazy(rep):
        return npk.load("h", lazy=True)[idx_list[rep]]

    held = {}

    def b_held(rep):
        return held["lazy"][idx_list[rep]]

    def b_rows_check(what):
        def check(rep, got):
            must_equal(what, got, state["model"][idx[rep]])
        return check

    def b_load(rep):
        return npk.load("h")

    def b_load_check(rep, got):
        must_equal("npk.load", got, state["model"])

    def b_append(rep):
        npk.append({"h": new[rep]})

    def b_append_check(rep, _):
        state["model"] = np.concatenate([state["model"], new[rep]])
        m = len(state["model"])
        if npk.get_shape("h") != state["model"].shape:
            raise AssertionError("headline: npk.append: shape %r, model %r"
                                 % (npk.get_shape("h"), state["model"].shape))
        must_equal("npk.append", npk.getitem("h", slice(m - K, m)), new[rep])

    def same():
        for k in fetched:
            if not np.array_equal(fetched[k], fetched["numpack"]):
                raise AssertionError("headline: %s differs from numpack" % k)
        fetched.clear()

    # (case, baseline, SQL function contender, baseline contender, chart
    #  label, binding contenders: [(published figure's key, case, fn,
    #  check, chart label)])
    ops = [
        ("replace %d random rows" % K, "npy rewrite: load, assign, save",
         npk_replace, np_replace, "replace 100 rows",
         [("replace", "`npk.replace({'h': rows}, idx_list)`", b_replace,
           b_replace_check, "replace 100 rows")]),
        ("random access %d rows (`numpack_getitem`, JSON index list)" % K,
         "`np.load(file)[idx]`", npk_getitem, np_getitem,
         "getitem 100 rows",
         [("random", "`npk.getitem('h', idx_list)`", b_getitem,
           b_rows_check("npk.getitem"), "getitem 100 rows")]),
        ("random access %d rows (same)" % K,
         "`np.load(file, mmap_mode='r')[idx]`", npk_getitem, np_getitem_mmap,
         "getitem 100 rows vs mmap",
         [("random", "`npk.load('h', lazy=True)[idx_list]`", b_lazy,
           b_rows_check("npk.load(lazy=True)[idx]"),
           "lazy load + 100 rows vs mmap"),
          ("random", "`lazy[idx_list]` (LazyArray opened once, indexing "
           "only)", b_held, b_rows_check("lazy[idx]"),
           "held lazy, 100 rows vs mmap")]),
        ("full load (`numpack_load` + `np.load(BytesIO)`)",
         "`np.load(file)`", npk_load, np_load, "full load, 10 columns",
         [("load", "`npk.load('h')`", b_load, b_load_check,
           "full load")]),
        ("append %d rows" % K, "npy rewrite: load, concatenate, save",
         npk_append, np_append, "append 100 rows",
         [("append", "`npk.append({'h': rows})`", b_append,
           b_append_check, "append 100 rows")]),
    ]
    n_text = count_text(n)
    group = "Headline (%s × 10)" % n_text
    bgroup = "NumPack's Python API through the binding (%s × 10)" % n_text
    out, bout = [], []
    for case, base_name, sqlf, base, short, bind in ops:
        warm_memory(256 << 20)
        if b_held in [b[2] for b in bind]:
            held["lazy"] = npk.load("h", lazy=True)
        contenders = {"numpack": timed(sqlf), "base": timed(base)}
        for j, (_, _, fn, check, _) in enumerate(bind):
            contenders["binding%d" % j] = checked(fn, check)
        for run_ in contenders.values():
            run_(0)  # untimed first run of each
        times = interleaved(REPS, contenders, reverse_odd=True)
        if fetched:
            same()
        out.append(Result(group, case, times["numpack"], base_name,
                          times["base"], short=short))
        for j, (key, label, _, _, bshort) in enumerate(bind):
            bout.append(Result(
                bgroup, label, times["binding%d" % j], base_name,
                times["base"], short="binding: " + bshort,
                sql=times["numpack"], published=PUBLISHED[key],
                published_where=PUBLISHED_WHERE))
        held.clear()

    whole = np.load(io.BytesIO(scalar(con, "SELECT numpack_load(?, 'h')",
                                      (store,))))
    must_equal("the .npy file", np.load(npy_file), state["model"])
    must_equal("the SQL functions' store", whole, state["model"])
    must_equal("the binding's store", npk.load("h"), state["model"])
    npk.close()
    con.close()
    return out + bout
