"""
driver.py — the benchmark suite's entry point (run by bench/run.sh with
Debian's /usr/bin/python3, whose sqlite3 module can load extensions).

Makes the data (datagen.py), runs every group of cases — whole arrays
(cases_array.py), SQL reads (cases_sql.py), SQL writes and compaction
(cases_write.py), NumPack's headline operations through the SQL functions
and through the Python binding (cases_headline.py), the per-statement cost
of small reads (cases_small.py), a store of many arrays
(cases_many.py), vector search (cases_knn.py) — and
writes the report (report.py): the Markdown table on stdout and in
results/results.md, raw figures in results/results.json, the ratio chart in
results/ratios.png.

Environment (set by run.sh): NUMPACK_SO, BENCH_BLOBSUM_SO, BENCH_VEC0_SO or
BENCH_VEC0_WHY, BENCH_WORK, BENCH_RESULTS, BENCH_SCALE, NUMPACK_VERSION;
BENCH_ONLY=binding,headline (names of cases_*.py, comma-separated) runs
only those groups, for a quick look at one part while working on it.
"""
import os
import sys
import time

import cases_array
import cases_binding
import cases_headline
import cases_knn
import cases_small
import cases_many
import cases_sql
import cases_write
import datagen
import report
from benchlib import Timer, config_from_env, connect, scalar


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def vec0_version(cfg):
    if not cfg.vec0_so:
        return None
    try:
        con = connect(":memory:", cfg.vec0_so)
        v = scalar(con, "SELECT vec_version()")
        con.close()
        return v
    except Exception as e:  # a broken download must not stop the run
        cfg.vec0_why = "%s does not load: %s" % (cfg.vec0_so, e)
        cfg.vec0_so = None
        return None


def main():
    t0 = time.perf_counter()
    cfg = config_from_env()
    os.makedirs(cfg.work, exist_ok=True)
    os.makedirs(cfg.results, exist_ok=True)
    vec_version = vec0_version(cfg)
    if not cfg.vec0_so:
        log("sqlite-vec columns: n/a (%s)" % cfg.vec0_why)

    log("making the data (BENCH_SCALE=%g)" % cfg.scale)
    ds = datagen.make(cfg, log)
    # Enough for the largest step: a 512 MB array held three times over.
    cfg.warm_bytes = max(256 << 20, 3 * ds.arr.nbytes)

    results = []
    groups = (cases_array, cases_sql, cases_write, cases_headline,
              cases_binding, cases_small, cases_many, cases_knn)
    only = [g.strip() for g in os.environ.get("BENCH_ONLY", "").split(",")
            if g.strip()]
    if only:
        names = {g.__name__[len("cases_"):]: g for g in groups}
        unknown = [g for g in only if g not in names]
        if unknown:
            raise SystemExit("BENCH_ONLY: no group %s (there are: %s)"
                             % (", ".join(unknown), ", ".join(names)))
        groups = [names[g] for g in only]
    for group in groups:
        with Timer() as t:
            results += group.run(cfg, ds, log)
        log("  (%s: %.1f s)" % (group.__name__, t.seconds))

    elapsed = time.perf_counter() - t0
    info = report.machine(cfg, vec_version)
    md = report.markdown(cfg, ds, results, info, elapsed,
                         vec_on=cfg.vec0_so is not None)
    with open(os.path.join(cfg.results, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(cfg.results, "results.json"), "w") as f:
        f.write(report.raw_json(cfg, results, info, elapsed) + "\n")
    print(md)
    png = os.path.join(cfg.results, "ratios.png")
    why = report.chart(results, png)
    if why:
        log("ratios.png skipped: %s" % why)
    else:
        log("wrote %s" % png)
    log("wrote %s" % os.path.join(cfg.results, "results.md"))


if __name__ == "__main__":
    main()
