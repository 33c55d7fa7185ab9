"""
report.py — turns the results into bench/results/results.md (a Markdown
report: the machine, one table per group of cases with times, ratios and
targets, the Python binding's table with the SQL functions' figures and
NumPack's published ones next to its own, per-row costs next to the
page-cache bandwidth, and notes), results.json (every repetition's raw figure) and ratios.png (a bar chart of
numpack ÷ baseline).  It measures nothing, except for describing the machine.
"""
import json
import os
import platform
import sqlite3
import subprocess

import numpy as np

from benchlib import median

# ---- the machine ----------------------------------------------------------


def _first(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _filesystem(path):
    """(fstype, device, mount point) of the mount holding PATH."""
    path = os.path.realpath(path)
    best = ("?", "?", "")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) \
                        and len(mnt) >= len(best[2]):
                    best = (fstype, dev, mnt)
    except OSError:
        pass
    return best


def machine(cfg, vec0_version):
    mem_kb = int(_first("/proc/meminfo", "MemTotal").split()[0])
    fstype, dev, mnt = _filesystem(cfg.work)
    try:
        nproc = subprocess.run(["nproc"], capture_output=True,
                               text=True).stdout.strip()
    except OSError:
        nproc = str(os.cpu_count())
    return {
        "nproc": nproc,
        "cpu": _first("/proc/cpuinfo", "model name"),
        "memory_gib": round(mem_kb / 2**20, 1),
        "filesystem": "%s on %s (mounted at %s)" % (fstype, dev, mnt),
        "kernel": "%s %s" % (platform.system(), platform.release()),
        "sqlite": sqlite3.sqlite_version,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpack": cfg.version,
        "sqlite_vec": vec0_version or ("n/a (%s)" % cfg.vec0_why),
    }


# ---- formatting -----------------------------------------------------------


def fmt_time(s):
    if s is None:
        return "n/a"
    if s < 1e-3:
        return "%.1f µs" % (s * 1e6)
    if s < 1:
        return "%.3g ms" % (s * 1e3)
    return "%.2f s" % s


def fmt_value(r, v):
    if v is None:
        return "n/a"
    return "%.1f %s" % (v, r.unit) if r.unit != "s" else fmt_time(v)


def fmt_ratio(x):
    if x is None:
        return "n/a"
    if x < 1:
        return "%.3g (%.1f× faster)" % (x, 1 / x)
    return "%.3g" % x


def fmt_met(m):
    return "–" if m is None else ("yes" if m else "**no**")


def _reps(xs):
    return "" if not xs or len(xs) < 2 else " ×%d" % len(xs)


def _groups(results):
    seen = []
    for r in results:
        if r.group not in seen:
            seen.append(r.group)
    return seen


def markdown(cfg, ds, results, info, elapsed, vec_on):
    L = []
    w = L.append
    w("# numpack benchmarks")
    w("")
    w("**Machine:** %s CPUs, %s; %s GiB memory; %s; %s."
      % (info["nproc"], info["cpu"], info["memory_gib"], info["filesystem"],
         info["kernel"]))
    w("")
    w("**Software:** SQLite %s (Python %s `sqlite3` module), NumPy %s, "
      "numpack %s, sqlite-vec %s."
      % (info["sqlite"], info["python"], info["numpy"], info["numpack"],
         info["sqlite_vec"]))
    w("")
    w("**Run:** BENCH_SCALE=%g: %s rows × 128 float32 (%.0f MB). Every "
      "figure is the median of the repetitions (×n after a figure); all "
      "contenders run in the same process, turn about, on the same disk, "
      "with data in the page cache. The whole run took %.1f min."
      % (cfg.scale, format(ds.n, ","), ds.arr.nbytes / 1e6, elapsed / 60))
    w("")
    w("**Method:** the data are made by the run itself (seeded random "
      "numbers); the numpack tables are declared in an on-disk SQLite "
      "database, as an application would keep them, and every database runs "
      "with SQLite's defaults (rollback journal, synchronous=FULL, 2 MB page "
      "cache, no mmap). numpack's writes are durable when they return "
      "(fsync), NumPy's and `cp`'s are not: variants with fsync are shown. "
      "Before each timed step that writes or allocates much, the disk is "
      "settled (`sync`) and %.0f MB of memory is touched and freed, because "
      "on a virtual machine whose host reclaims memory the guest leaves free "
      "(virtio-balloon free page reporting) the first touch of such memory "
      "costs a host fault, which otherwise swamps what is measured. Queries "
      "run through Python's `sqlite3` module; the driver floors show what "
      "that module alone costs." % (cfg.warm_bytes / 1e6))
    w("")
    w("**Reading the ratios:** numpack ÷ baseline divides numpack's time by "
      "the baseline's, so **lower is better**: below 1 numpack is faster "
      "(0.25 = 4× faster), above 1 it is slower. Targets are written as "
      "stated (\"≥ 5× faster\" means a ratio ≤ 0.2; \"≤ 1.2×\" means a ratio "
      "≤ 1.2).")
    w("")
    limit = [r for r in results if r.group == "Physical limit"]
    for g in _groups(results):
        if g == "Physical limit":
            continue
        if any(r.sql is not None for r in results if r.group == g):
            binding_table(w, g, [r for r in results if r.group == g],
                          cfg.scale)
            continue
        w("## %s" % g)
        w("")
        head = ["Case", "numpack", "Baseline", "baseline", "numpack ÷ baseline",
                "Target", "Met"]
        if any(r.vec0 or r.vec_case for r in results if r.group == g):
            head += ["sqlite-vec", "numpack ÷ sqlite-vec"]
        w("| " + " | ".join(head) + " |")
        w("|" + "---|" * len(head))
        for r in results:
            if r.group != g:
                continue
            cells = [r.case, fmt_value(r, r.np_med) + _reps(r.numpack),
                     r.baseline_name,
                     fmt_value(r, r.base_med) + _reps(r.baseline)
                     if r.baseline else "–",
                     fmt_ratio(r.ratio), r.target.text, fmt_met(r.met)]
            if len(head) > 7:
                if r.vec0:
                    cells += [fmt_time(r.vec_med) + _reps(r.vec0),
                              fmt_ratio(r.vec_ratio)]
                else:
                    cells += ["n/a", "n/a"] if r.vec_case else ["–", "–"]
            w("| " + " | ".join(cells) + " |")
        w("")
        if not vec_on and len(head) > 7:
            w("sqlite-vec: n/a (%s)." % cfg.vec0_why)
            w("")

    w("## Per-row costs and the physical limit")
    w("")
    if limit:
        cat = median(limit[0].numpack)
        size = os.path.getsize(ds.data_file)
        bw = size / cat
        w("Page-cache read bandwidth: %s — %s, **%.2f GB/s**, i.e. %.1f ns "
          "per 512-byte row. Whole-array figures at that bandwidth:"
          % (limit[0].case, fmt_time(cat), bw / 1e9,
             cat / ds.n * 1e9))
        w("")
        w("| Operation | time | GB/s |")
        w("|---|---|---|")
        w("| `cat` (page cache → /dev/null) | %s | %.2f |"
          % (fmt_time(cat), bw / 1e9))
        seen = set()
        for r in results:
            if r.group == "Whole arrays" and r.unit == "s":
                for who, t in (("numpack: " + r.case, r.np_med),
                               ("baseline: " + r.baseline_name, r.base_med)):
                    if t and who not in seen:
                        seen.add(who)
                        w("| %s | %s | %.2f |" % (who, fmt_time(t),
                                                 size / t / 1e9))
        w("")
    w("| Per-row figure | numpack ns/row | baseline ns/row | "
      "sqlite-vec ns/row |")
    w("|---|---|---|---|")
    for r in results:
        if not r.rows or r.unit != "s":
            continue

        def per(t, missing="–"):
            return format(round(t / r.rows * 1e9, 1), ",") if t else missing
        w("| %s — vs %s | %s | %s | %s |"
          % (r.case, r.baseline_name, per(r.np_med), per(r.base_med),
             per(r.vec_med, "n/a" if r.vec_case else "–")))
    w("")

    notes = [(r, n) for r in results for n in r.notes]
    if notes:
        w("## Notes")
        w("")
        for r, n in notes:
            w("- *%s*: %s" % (r.short or r.case, n))
        w("")

    w("## Targets")
    w("")
    judged = [r for r in results if r.met is not None]
    w("%d of %d targets met." % (sum(1 for r in judged if r.met), len(judged)))
    w("")
    for r in judged:
        got = fmt_ratio(r.ratio) if r.target.kind == "ratio_max" \
            else fmt_value(r, r.np_med)
        against = " (vs %s)" % r.baseline_name if r.baseline else ""
        w("- %s %s%s: %s, target %s"
          % ("met:" if r.met else "**missed:**", r.short or r.case,
             against, got, r.target.text))
    w("")
    return "\n".join(L)


def fmt_ms(s):
    """Seconds as milliseconds, three significant digits."""
    if s is None:
        return "n/a"
    ms = s * 1e3
    return "%.3g ms" % ms if ms >= 1 else "%.3f ms" % ms if ms >= 0.01 \
        else "%.4f ms" % ms


def binding_table(w, g, rows, scale):
    """The Python binding's cases: its figure, the same operation through
    the SQL functions and the .npy file, and NumPack's published figure."""
    where = next((r.published_where for r in rows if r.published_where),
                 "?")
    w("## %s" % g)
    w("")
    w("NumPack's class API (`numpack_sqlite.NumPack`, bindings/python) on the "
      "same operations as the headline table, measured turn about with it "
      "in the same repetitions; its store is a second copy of the same "
      "array, receiving the same changes. Medians; the last column is the "
      "figure NumPack 0.7 publishes for itself on 1M × 10 float32 (%s), "
      "quoted for reference and **not measured here**." % where)
    w("")
    head = ["Operation", "numpack binding", "numpack SQL functions",
            "NumPy .npy file", "binding ÷ SQL functions",
            "NumPack 0.7, published (%s; not measured here)" % where]
    w("| " + " | ".join(head) + " |")
    w("|" + "---|" * len(head))
    for r in rows:
        over = (r.np_med / r.sql_med) if r.np_med and r.sql_med else None
        w("| %s | %s%s | %s%s | %s%s (%s) | %s | %s |"
          % (r.case, fmt_ms(r.np_med), _reps(r.numpack),
             fmt_ms(r.sql_med), _reps(r.sql),
             fmt_ms(r.base_med), _reps(r.baseline), r.baseline_name,
             "n/a" if over is None else "%.2f" % over,
             r.published or "–"))
    w("")
    w("Rows: 100 random rows (sorted, distinct) for replace and random "
      "access, 100 new rows for append; the binding gets the index as a "
      "Python list. The binding's writes are durable (fsync) when they "
      "return, as the SQL functions' are; the .npy rewrite is not. The "
      "contenders run in the order SQL functions, .npy file, binding, and "
      "in the reverse order every other repetition, so that both numpack "
      "sides follow the rewrite (and pay for part of its write-back) "
      "equally often. The lazy "
      "variant `npk.load('h', lazy=True)[idx_list]` includes opening the "
      "LazyArray (reading the catalog, mapping the data file) every time; "
      "`lazy[idx_list]` indexes one LazyArray opened before the "
      "repetitions. The SQL functions' column is `numpack_getitem` for "
      "every random-access row.")
    w("")
    if scale != 1:
        w("This run is scaled (BENCH_SCALE=%g): the published figures are "
          "for 1M rows, these are not." % scale)
        w("")


def raw_json(cfg, results, info, elapsed):
    return json.dumps({
        "machine": info, "scale": cfg.scale, "elapsed_s": elapsed,
        "results": [{
            "group": r.group, "case": r.case, "unit": r.unit,
            "numpack": r.numpack, "baseline_name": r.baseline_name,
            "baseline": r.baseline, "sqlite_vec": r.vec0,
            "ratio": r.ratio, "target": r.target.text, "met": r.met,
            "rows": r.rows, "sql_functions": r.sql,
            "published": r.published,
            "published_where": r.published_where or None}
            for r in results]}, indent=1,
        ensure_ascii=False)


# ---- the chart ------------------------------------------------------------


def chart(results, path):
    """Bar chart of numpack ÷ baseline; returns None or why it was
    skipped."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return "matplotlib is not available (%s)" % e
    rows = [r for r in results if r.ratio is not None]
    if not rows:
        return "no ratios to draw"
    labels = [r.short or r.case for r in rows]
    ratios = [r.ratio for r in rows]
    colors = ["#2e8b57" if r.met else "#c0392b" if r.met is False
              else "#7f8c8d" for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.6))
    y = np.arange(len(rows))[::-1]
    ax.barh(y, ratios, color=colors, height=0.6)
    for yi, r in zip(y, rows):
        ax.text(r.ratio * 1.08, yi, "%.3g" % r.ratio, va="center",
                fontsize=8)
        if r.target.kind == "ratio_max":
            ax.plot([r.target.limit] * 2, [yi - 0.4, yi + 0.4], color="black",
                    linewidth=2)
        if r.vec_ratio:
            ax.plot(r.vec_ratio, yi, marker="o", color="#2c3e50",
                    markerfacecolor="white", markersize=6)
    ax.axvline(1.0, color="#555555", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    lo = min(ratios + [r.target.limit for r in rows
                       if r.target.kind == "ratio_max"]) / 2
    hi = max(ratios + [r.target.limit for r in rows
                       if r.target.kind == "ratio_max"]) * 2.5
    ax.set_xlim(lo, hi)
    ax.set_xlabel("numpack time ÷ baseline time (log scale; lower is "
                  "better, < 1: numpack faster)")
    ax.set_title("numpack ÷ baseline — green: target met, red: missed, "
                 "grey: reported only\nblack tick: target; "
                 "white dot: numpack ÷ sqlite-vec", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None
