"""
benchlib.py — shared plumbing of the benchmark suite; it measures nothing
itself.

  * Config: what bench/run.sh hands over in the environment (the module, the
    helper extensions, the scratch and results directories, BENCH_SCALE).
  * connect(): an SQLite connection in autocommit mode with extensions loaded.
  * binding(): the Python binding of this source tree (bindings/python).
  * interleaved(): runs several contenders turn about, repetition after
    repetition, so that drifts of the machine hit all of them alike.
  * Timer, median, settle_disk(), warm_memory(), prepare(): the measuring
    instruments and the conditions every timed step starts from.
  * Result: one line of the report (a case, numpack's figure, its baseline,
    the target; for the Python binding's cases also the SQL functions'
    figure and a published one), and Target, which knows whether a ratio
    meets it.
"""
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Optional


# The Python binding: bindings/python of this source tree.
BINDING_DIR = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))


def binding():
    """The numpack_sqlite package of this source tree."""
    if BINDING_DIR not in sys.path:
        sys.path.insert(0, BINDING_DIR)
    import numpack_sqlite
    return numpack_sqlite


# ---- configuration --------------------------------------------------------

@dataclass
class Config:
    numpack_so: str           # the module under test
    blobsum_so: str           # blob_f32_at(), the BLOB-row baseline helper
    syncfloor_so: str         # syncfloor.c: a synced save's system calls
    vec0_so: Optional[str]    # sqlite-vec, or None
    vec0_why: str             # why sqlite-vec is missing, when it is
    work: str                 # scratch directory (removed by run.sh)
    results: str              # where results.md / ratios.png go
    scale: float              # BENCH_SCALE
    version: str              # numpack's version string
    warm_bytes: int = 256 << 20   # memory touched by prepare()

    def rows(self, n: int, minimum: int = 1000) -> int:
        """N scaled by BENCH_SCALE, never below MINIMUM."""
        return max(minimum, int(round(n * self.scale)))

    def path(self, *parts: str) -> str:
        return os.path.join(self.work, *parts)


def config_from_env() -> Config:
    env = os.environ
    try:
        scale = float(env.get("BENCH_SCALE", "1.0"))
    except ValueError:
        raise SystemExit("BENCH_SCALE must be a number, not %r"
                         % env["BENCH_SCALE"])
    if not scale > 0:
        raise SystemExit("BENCH_SCALE must be positive")
    vec0 = env.get("BENCH_VEC0_SO") or None
    return Config(
        numpack_so=env["NUMPACK_SO"],
        blobsum_so=env["BENCH_BLOBSUM_SO"],
        syncfloor_so=env["BENCH_SYNCFLOOR_SO"],
        vec0_so=vec0,
        vec0_why=env.get("BENCH_VEC0_WHY", "") if not vec0 else "",
        work=env["BENCH_WORK"],
        results=env["BENCH_RESULTS"],
        scale=scale,
        version=env.get("NUMPACK_VERSION", "?"),
    )


# ---- SQLite ---------------------------------------------------------------

def connect(path: str, *extensions: str) -> sqlite3.Connection:
    """A connection in autocommit mode (BEGIN/COMMIT are explicit) with the
    given loadable extensions."""
    con = sqlite3.connect(path, isolation_level=None)
    if extensions:
        con.enable_load_extension(True)
        for so in extensions:
            con.load_extension(so)
        con.enable_load_extension(False)
    return con


def scalar(con: sqlite3.Connection, sql: str, params=()):
    return con.execute(sql, params).fetchone()[0]


def sql_str(s: str) -> str:
    """S as an SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


# ---- instruments ----------------------------------------------------------

class Timer:
    """with Timer() as t: ...   then t.seconds"""

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        return False


def interleaved(reps: int, contenders: dict, reverse_odd=False) -> dict:
    """Run each contender once per repetition, in turn.  A contender is a
    function of the repetition number that does its own untimed setup and
    returns the seconds of its timed part.  With REVERSE_ODD, odd
    repetitions run them in the reverse order, so that with three or more
    none always follows the same one.  Returns {name: [seconds, ...]}."""
    times = {name: [] for name in contenders}
    order = list(contenders)
    for rep in range(reps):
        for name in (order[::-1] if reverse_odd and rep % 2 else order):
            times[name].append(contenders[name](rep))
    return times


def timed(fn):
    """A contender for interleaved(): FN(rep) timed, in seconds."""
    def run_(rep):
        with Timer() as t:
            fn(rep)
        return t.seconds
    return run_


def count_text(n: int) -> str:
    """100000 -> '100k', 1000000 -> '1M', 2500 -> '2.5k'."""
    for div, suffix in ((1_000_000, "M"), (1000, "k")):
        if n >= div:
            return "%g%s" % (round(n / div, 2), suffix)
    return str(n)


def median(xs):
    return statistics.median(xs) if xs else None


def settle_disk():
    """Flush dirty pages so one case's write-back does not land in the next
    case's timing."""
    os.sync()


def warm_memory(nbytes: int):
    """Touch NBYTES of fresh memory and free it again.

    On a virtual machine whose host takes back memory the guest has left
    free for a while (virtio-balloon free page reporting), the first touch
    of such memory costs a host page fault: several times the cost of the
    work being measured.  Touching and freeing memory just before a timed
    step leaves warm pages at the head of the free lists, so that the
    buffers and page-cache pages the step allocates are ordinary memory,
    whichever contender runs.  Elsewhere it costs a fraction of a second."""
    import numpy as np
    buf = np.ones(max(1, nbytes // 8), dtype=np.float64)
    del buf


def prepare(cfg: "Config"):
    """Before a timed step that writes or allocates a lot: settle the disk,
    then warm the memory."""
    settle_disk()
    warm_memory(cfg.warm_bytes)


def check_same(what: str, **answers):
    """Every contender must compute the same answer, or the timing compares
    different work."""
    vals = list(answers.values())
    for v in vals[1:]:
        same = (abs(v - vals[0]) <= 1e-6 * max(1.0, abs(vals[0]))
                if isinstance(v, float) else v == vals[0])
        if not same:
            raise AssertionError("%s: answers differ: %r" % (what, answers))


# ---- results --------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """A goal for numpack ÷ baseline (times: lower is better), or for an
    absolute figure (kind 'below')."""
    text: str                  # as stated, e.g. "≥ 5× faster"
    kind: str = "ratio_max"    # 'ratio_max' | 'below' | 'report'
    limit: float = 0.0

    def met(self, ratio, value) -> Optional[bool]:
        if self.kind == "ratio_max":
            return None if ratio is None else ratio <= self.limit
        if self.kind == "below":
            return None if value is None else value < self.limit
        return None


def faster(x: float) -> Target:
    """numpack at least X times faster than the baseline."""
    return Target("≥ %g× faster" % x, "ratio_max", 1.0 / x)


def at_most(x: float) -> Target:
    """numpack takes at most X times the baseline's time."""
    return Target("≤ %g×" % x, "ratio_max", x)


REPORT = Target("report", "report")


@dataclass
class Result:
    group: str                          # section of the report
    case: str                           # what is measured
    numpack: Optional[list]             # seconds (or the figure) per rep
    baseline_name: str = "–"
    baseline: Optional[list] = None
    target: Target = REPORT
    vec0: Optional[list] = None         # sqlite-vec seconds, when measured
    vec_case: bool = False              # sqlite-vec has this case (n/a if
                                        # it could not be had)
    unit: str = "s"                     # 's' or 'MB'
    rows: Optional[int] = None          # rows touched, for ns/row
    short: str = ""                     # label in the chart
    notes: list = field(default_factory=list)
    # The Python binding's table: the same operation through the SQL
    # functions (seconds per rep) and the figure published for it elsewhere
    # (quoted as text, not measured here), with where it was published.
    sql: Optional[list] = None
    published: Optional[str] = None
    published_where: str = ""

    @property
    def np_med(self):
        return median(self.numpack) if self.numpack else None

    @property
    def sql_med(self):
        return median(self.sql) if self.sql else None

    @property
    def base_med(self):
        return median(self.baseline) if self.baseline else None

    @property
    def vec_med(self):
        return median(self.vec0) if self.vec0 else None

    @property
    def ratio(self):
        if self.np_med is None or not self.base_med:
            return None
        return self.np_med / self.base_med

    @property
    def vec_ratio(self):
        if self.np_med is None or not self.vec_med:
            return None
        return self.np_med / self.vec_med

    @property
    def met(self):
        return self.target.met(self.ratio, self.np_med)


def _perf_counts_syscalls() -> bool:
    """perf can count the system calls of a process (its syscall tracepoint
    is readable here)."""
    if not shutil.which("perf"):
        return False
    r = subprocess.run(["perf", "stat", "-e", "raw_syscalls:sys_enter", "-x,",
                        "true"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    return r.returncode == 0 and "raw_syscalls:sys_enter" in r.stderr


def syscalls_per_call(cfg: "Config", name: str, child: str, argv, count: int):
    """System calls of one of COUNT calls made by the Python script CHILD: a
    run of COUNT calls less a run of none, divided by COUNT.  Counted by
    perf's syscall tracepoint where it can, which leaves the calls at their
    own speed; else by strace -c -f, which slows every system call some
    twentyfold (so that the store's 1 ms recheck interval passes every few
    statements, and lookups that take no lock at full speed take it more
    often).  ARGV(k) gives the script's arguments for a run of k calls.
    None without either tool, or when a run fails."""
    use_perf = _perf_counts_syscalls()
    if not use_perf and not shutil.which("strace"):
        return None
    script = cfg.path(name + "_child.py")
    out = cfg.path(name + "_strace.txt")
    with open(script, "w") as f:
        f.write(child)

    def total(k):
        tool = (["perf", "stat", "-e", "raw_syscalls:sys_enter", "-x,", "-o",
                 out] if use_perf else ["strace", "-f", "-c", "-o", out])
        subprocess.run(tool + [sys.executable, script] + argv(k),
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        with open(out) as f:
            for line in f:
                parts = line.split() if not use_perf else line.split(",")
                if use_perf and len(parts) > 2 and \
                        parts[2] == "raw_syscalls:sys_enter":
                    return int(parts[0])
                if not use_perf and len(parts) >= 4 and parts[-1] == "total":
                    return int(parts[3])
        return 0
    try:
        return (total(count) - total(0)) / count
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None
