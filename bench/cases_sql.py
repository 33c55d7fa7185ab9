"""
cases_sql.py — reading an N x 128 float32 array with SQL queries:

  scan    SELECT sum(c0) FROM t on the numpack table (columns layout),
          against a native table of 128 REAL columns holding the same
          numbers, and against a native table of one 512-byte BLOB per row
          read with the C function blob_f32_at(row, 0) (blobsum.c); the
          numpack blob layout with that same function, and sqlite-vec's
          vec0 table read the same way (SELECT sum(blob_f32_at(emb, 0))
          FROM v: every row's vector is fetched), are reported next to them
  lookup  SELECT row FROM t WHERE rowid = ?, prepared once and executed for
          100k random rowids from Python, one row fetched each time (native:
          the BLOB-row table; sqlite-vec: SELECT emb FROM v WHERE rowid = ?);
          the same loop around SELECT ? is the driver's own floor; the
          numpack table is declared in an on-disk database (numpack.db), and
          again in the TEMP schema (temp.tt), reported apart
  IN      SELECT count(*) FROM t WHERE rowid IN (10k random ids), the list
          written out as literal SQL text (new ids, so a new statement to
          prepare, every repetition)

All contenders get the same ids in the same repetition and must return the
same answers.  Caches are warm: every table is read once before the timing.
"""
import numpy as np

from benchlib import (REPORT, Result, Timer, check_same, connect,
                      count_text, faster, interleaved, scalar, sql_str)

SCAN_REPS = 5
LOOKUP_REPS = 3
IN_REPS = 10


def _connections(cfg, ds):
    cons = {
        "numpack": connect(ds.npk_db, cfg.numpack_so, cfg.blobsum_so),
        "real": connect(ds.nreal_db),
        "blob": connect(ds.nblob_db, cfg.blobsum_so),
    }
    cons["numpack"].execute("CREATE VIRTUAL TABLE temp.tt USING numpack("
                            "store=%s, array='base')" % sql_str(ds.store))
    if ds.vec_db:
        cons["vec0"] = connect(ds.vec_db, cfg.vec0_so, cfg.blobsum_so)
    return cons


def scans(cfg, ds, cons):
    queries = {
        "numpack": (cons["numpack"], "SELECT sum(c0) FROM t"),
        "numpack_blob": (cons["numpack"],
                         "SELECT sum(blob_f32_at(row, 0)) FROM tb"),
        "real": (cons["real"], "SELECT sum(c0) FROM nreal"),
        "blob": (cons["blob"], "SELECT sum(blob_f32_at(row, 0)) FROM nblob"),
    }
    if "vec0" in cons:
        queries["vec0"] = (cons["vec0"],
                           "SELECT sum(blob_f32_at(emb, 0)) FROM v")
    answers = {}

    def contender(name):
        con, sql = queries[name]

        def run(rep):
            with Timer() as t:
                answers[name] = scalar(con, sql)
            return t.seconds
        return run

    contenders = {name: contender(name) for name in queries}
    for run in contenders.values():
        run(-1)  # warm the page cache
    times = interleaved(SCAN_REPS, contenders)
    check_same("sum of column 0", **answers)
    check_same("sum of column 0, numpy", numpack=answers["numpack"],
               numpy=float(ds.arr[:, 0].astype(np.float64).sum()))
    vec = times.get("vec0")
    return [
        Result("Scans", "`SELECT sum(c0) FROM t` (columns layout)",
               times["numpack"], "native table, 128 REAL columns",
               times["real"], faster(5), rows=ds.n,
               short="sum(c0) vs REAL cols"),
        Result("Scans", "`SELECT sum(c0) FROM t` (columns layout)",
               times["numpack"], "native table, BLOB rows + "
               "`blob_f32_at(row, 0)`", times["blob"], faster(2), vec0=vec,
               vec_case=True, rows=ds.n, short="sum(c0) vs BLOB rows",
               notes=["sqlite-vec: `SELECT sum(blob_f32_at(emb, 0)) FROM v`"
                      " — reads every row's vector out of vec0 and sums its "
                      "element 0 with the same C function"]),
        Result("Scans", "`SELECT sum(blob_f32_at(row, 0)) FROM tb` "
               "(blob layout)", times["numpack_blob"], "native table, BLOB "
               "rows + `blob_f32_at(row, 0)`", times["blob"], REPORT,
               vec0=vec, rows=ds.n, short="blob_f32_at: blob layout"),
    ]


def lookups(cfg, ds, cons, rng):
    k = cfg.rows(100_000)
    id_sets = [rng.integers(0, ds.n, size=k).tolist()
               for _ in range(LOOKUP_REPS)]
    queries = {
        "numpack": (cons["numpack"], "SELECT row FROM t WHERE rowid = ?"),
        "temp": (cons["numpack"], "SELECT row FROM temp.tt WHERE rowid = ?"),
        "blob": (cons["blob"], "SELECT row FROM nblob WHERE rowid = ?"),
        "floor": (cons["numpack"], "SELECT ?"),
    }
    if "vec0" in cons:
        queries["vec0"] = (cons["vec0"], "SELECT emb FROM v WHERE rowid = ?")
    checks = {}

    def contender(name):
        con, sql = queries[name]
        cur = con.cursor()

        def run(rep):
            ids = id_sets[rep]
            got = 0
            with Timer() as t:
                for r in ids:
                    cur.execute(sql, (r,))
                    got += len(cur.fetchone()) if name != "floor" else 1
            checks[name] = got
            return t.seconds
        return run

    contenders = {name: contender(name) for name in queries}
    times = interleaved(LOOKUP_REPS, contenders)
    for name in ("temp", "blob", "vec0"):
        if name in checks:
            check_same("lookups", numpack=checks["numpack"],
                       other=checks[name])
    for r in id_sets[0][:50]:
        check_same("row %d" % r, numpack=bytes(scalar(
            cons["numpack"], "SELECT row FROM t WHERE rowid = ?", (r,))),
            numpy=ds.arr[r].tobytes())
    floor = np.median(times["floor"])
    return [
        Result("Lookups", "%s random rowid lookups (prepared "
               "`SELECT row FROM t WHERE rowid=?`)" % count_text(k),
               times["numpack"], "native rowid table, BLOB rows",
               times["blob"], faster(1.5), vec0=times.get("vec0"),
               vec_case=True, rows=k,
               short="rowid lookups",
               notes=["the Python loop itself (`SELECT ?` executed as "
                      "often) takes %.0f ms, %.2f µs per lookup, on every "
                      "side; without it numpack ÷ native would be %.2f"
                      % (floor * 1e3, floor / k * 1e6,
                         (np.median(times["numpack"]) - floor)
                         / max(1e-9, np.median(times["blob"]) - floor)),
                      "every statement on a table declared in an on-disk "
                      "database also takes SQLite's own shared lock on that "
                      "database file (fcntl calls, a read of its change "
                      "counter, journal checks); numpack's lookup itself "
                      "takes no lock"]),
        Result("Lookups", "same, numpack table declared in the TEMP schema "
               "(`CREATE VIRTUAL TABLE temp.tt ...`)", times["temp"],
               "native rowid table, BLOB rows", times["blob"], REPORT,
               rows=k, short="rowid lookups, TEMP table",
               notes=["a table in TEMP leaves the on-disk database untouched "
                      "by the query: no lock is taken at all"]),
    ]


def in_lists(cfg, ds, cons, rng):
    k = min(cfg.rows(10_000, 100), ds.n)
    id_lists = {}
    for rep in range(IN_REPS):
        ids = ",".join(map(str, rng.choice(ds.n, size=k, replace=False)))
        id_lists[rep] = ids
    queries = {
        "numpack": (cons["numpack"], "SELECT count(*) FROM t WHERE rowid IN "
                    "(%s)"),
        "blob": (cons["blob"], "SELECT count(*) FROM nblob WHERE rowid IN "
                 "(%s)"),
    }

    def contender(name):
        con, sql = queries[name]

        def run(rep):
            text = sql % id_lists[rep]
            with Timer() as t:
                n = scalar(con, text)
            check_same("IN count", got=n, want=k)
            return t.seconds
        return run

    times = interleaved(IN_REPS, {name: contender(name) for name in queries})
    return [
        Result("Lookups", "`SELECT count(*) FROM t WHERE rowid IN (%s "
               "ids)`, literal list, prepared each time" % count_text(k),
               times["numpack"], "native rowid table, BLOB rows",
               times["blob"], faster(1.5), rows=k, short="rowid IN (10k)"),
    ]


def run(cfg, ds, log):
    rng = np.random.default_rng(7)
    cons = _connections(cfg, ds)
    out = []
    log("- scans")
    out += scans(cfg, ds, cons)
    log("- rowid lookups")
    out += lookups(cfg, ds, cons, rng)
    log("- rowid IN lists")
    out += in_lists(cfg, ds, cons, rng)
    for con in cons.values():
        con.close()
    return out
