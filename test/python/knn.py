#!/usr/bin/python3
"""knn.py - KNN queries through the virtual table, numpack_knn and
numpack_distance against a NumPy brute force.

For every metric and element type it fits (l2, l2sq, cosine, dot over
float32, float64, float16, int8, uint8; hamming and jaccard over uint8
packed bits and bool), on an array with deleted rows and exact ties: k
below and above the live row count, rowid IN lists, rowid ranges and both,
a transaction's uncommitted appends, replacements and deletions (seen by
the query, gone after ROLLBACK), and each form of query (JSON text, a row
BLOB, an .npy of another dtype).  The data are small whole numbers, so
every sum is exact: the rowids must be the reference's, in its order
(distance, then rowid), and the distances equal to float rounding.  One
array is large enough for the scan to use several threads.

Usage: /usr/bin/python3 knn.py [MODULE [TMPDIR]]
"""
import json
import os

import numpy as np

from npktest import args, check, connect, finish, npy, unnpy

module, tmp = args()
store = os.path.join(tmp, "knn.npk")
db = connect(module)
rng = np.random.default_rng(7)

FLOAT_METRICS = ["l2", "l2sq", "cosine", "dot"]
FLOAT_TYPES = ["float32", "float64", "float16", "int8", "uint8"]


def ref_dist(metric, rows, q):
    """Distances of ROWS (n, d) to Q (d,) in float64, as the README says."""
    if metric in ("hamming", "jaccard"):
        a = np.unpackbits(rows.astype(np.uint8), axis=1) if rows.dtype != np.bool_ \
            else rows.astype(np.uint8)
        b = np.unpackbits(q.astype(np.uint8)) if rows.dtype != np.bool_ \
            else q.astype(np.uint8)
        if metric == "hamming":
            return (a != b).sum(axis=1).astype(np.float64)
        inter = (a & b).sum(axis=1)
        union = (a | b).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, 1.0 - inter / np.maximum(union, 1), 0.0)
    x = rows.astype(np.float64)
    qq = q.astype(np.float64)
    if metric == "l2":
        return np.sqrt(((x - qq) ** 2).sum(axis=1))
    if metric == "l2sq":
        return ((x - qq) ** 2).sum(axis=1)
    if metric == "dot":
        return -(x @ qq)
    xn = np.sqrt((x * x).sum(axis=1))
    qn = np.sqrt((qq * qq).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((xn > 0) & (qn > 0), 1.0 - (x @ qq) / (xn * qn), 1.0)


def reference(model, metric, q, k, cand=None):
    """[(rowid, distance)] of the K nearest live rows of MODEL (rowid ->
    row, None when deleted), among CAND rowids if given."""
    ids = [r for r, v in enumerate(model) if v is not None
           and (cand is None or r in cand)]
    if not ids:
        return []
    rows = np.stack([model[r] for r in ids])
    d = ref_dist(metric, rows, q)
    order = np.lexsort((np.array(ids), d))[:k]
    return [(ids[i], float(d[i])) for i in order]


def agree(got, want, what):
    ok = len(got) == len(want) and all(
        g[0] == w[0] and abs(g[1] - w[1]) <= 1e-6 * max(1.0, abs(w[1]))
        for g, w in zip(got, want))
    if not ok:
        print("  got ", got[:6], len(got))
        print("  want", want[:6], len(want))
    return check(ok, what)


def make_rows(dtype, n, d):
    if dtype == "bool":
        return rng.integers(0, 2, (n, d)).astype(np.bool_)
    lo = 0 if dtype == "uint8" else -6
    hi = 256 if dtype == "uint8" and d < 8 else 7
    a = rng.integers(lo, hi, (n, d)).astype(dtype)
    return a


def knn(table, q, k, metric=None, where="", params=()):
    sql = ("SELECT rowid, distance FROM %s WHERE row MATCH ? AND k = ?%s%s "
           "ORDER BY distance" % (table, " AND metric = ?" if metric else "",
                                  where))
    p = (q, k) + ((metric,) if metric else ()) + tuple(params)
    return [(r, d) for r, d in db.execute(sql, p)]


def case(dtype, metric):
    name = "a_%s_%s" % (dtype, metric)
    bits = metric in ("hamming", "jaccard")
    d = 5 if bits and dtype == "uint8" else 13
    n = 300
    a = make_rows(dtype, n, d)
    a[[10, 50, 290]] = a[200]          # exact ties
    a[3] = 0                           # an all-zero row
    db.execute("SELECT numpack_save(?, ?, ?)", (store, name, npy(a)))
    db.execute("CREATE VIRTUAL TABLE %s USING numpack(store='%s', layout=blob)"
               % (name, store))
    model = [row.copy() for row in a]
    db.execute("DELETE FROM %s WHERE rowid %% 7 = 3" % name)
    for r in range(3, n, 7):
        model[r] = None
    tag = "%s/%s" % (dtype, metric)
    for trial in range(3):
        q = a[200].copy() if trial == 0 else make_rows(dtype, 1, d)[0]
        if trial == 0:
            q[0] = (not q[0]) if dtype == "bool" else (q[0] ^ 1 if bits else 2)
        qj = json.dumps([int(x) for x in q.astype(np.int64)])
        for k in (1, 7, 1000):
            agree(knn(name, qj, k, metric), reference(model, metric, q, k),
                  "%s json k=%d" % (tag, k))
        agree(knn(name, q.tobytes(), 9, metric),
              reference(model, metric, q, 9), "%s row blob" % tag)
        agree(knn(name, npy(q.astype(np.float64 if not bits else np.uint8)), 9,
                  metric), reference(model, metric, q, 9), "%s npy" % tag)
        cand = sorted(set(int(x) for x in rng.integers(0, n + 20, 30)))
        agree(knn(name, qj, 5, metric,
                  " AND rowid IN (%s)" % ",".join(map(str, cand))),
              reference(model, metric, q, 5, set(cand)), "%s IN" % tag)
        agree(knn(name, qj, 1000, metric,
                  " AND rowid IN (%s)" % ",".join(map(str, cand))),
              reference(model, metric, q, 1000, set(cand)), "%s IN all" % tag)
        agree(knn(name, qj, 6, metric, " AND rowid BETWEEN ? AND ?", (40, 120)),
              reference(model, metric, q, 6, set(range(40, 121))),
              "%s range" % tag)
        agree(knn(name, qj, 6, metric, " AND rowid > ? AND rowid IN (%s)"
                  % ",".join(map(str, cand)), (100,)),
              reference(model, metric, q, 6, set(c for c in cand if c > 100)),
              "%s range and IN" % tag)
    # numpack_knn: several queries in one pass give what each gives alone;
    # idx is the logical index of the row.
    qs = make_rows(dtype, 5, d)
    got = {}
    live_before = np.cumsum([0] + [v is not None for v in model])
    for qi, rank, rowid, idx, dist in db.execute(
            "SELECT query, rank, rowid, idx, distance FROM "
            "numpack_knn(?, ?, ?, ?, ?)", (store, name, npy(qs), 6, metric)):
        got.setdefault(qi, []).append((rowid, dist))
        check(idx == live_before[rowid] and rank == len(got[qi]) - 1,
              "%s numpack_knn idx/rank" % tag)
    for qi in range(5):
        agree(got.get(qi, []), reference(model, metric, qs[qi], 6),
              "%s numpack_knn query %d" % (tag, qi))
    # numpack_distance on .npy vectors of the dtype.
    for _ in range(3):
        x, y = make_rows(dtype, 2, d)
        dist, = db.execute("SELECT numpack_distance(?, ?, ?)",
                           (npy(x), npy(y), metric)).fetchone()
        want = ref_dist(metric, x[None, :], y)[0]
        check(abs(dist - want) <= 1e-6 * max(1, abs(want)),
              "%s numpack_distance %r %r" % (tag, dist, want))
    # The transaction's own changes are seen, and gone after ROLLBACK.
    q = make_rows(dtype, 1, d)[0]
    qj = json.dumps([int(x) for x in q.astype(np.int64)])
    db.execute("BEGIN")
    extra = make_rows(dtype, 4, d)
    extra[0] = q
    for row in extra:
        db.execute("INSERT INTO %s(row) VALUES (?)" % name, (row.tobytes(),))
    db.execute("UPDATE %s SET row = ? WHERE rowid = 1" % name, (q.tobytes(),))
    db.execute("DELETE FROM %s WHERE rowid = 200" % name)
    pending = model + [row.copy() for row in extra]
    pending[1] = q.copy()
    pending[200] = None
    agree(knn(name, qj, 8, metric), reference(pending, metric, q, 8),
          "%s uncommitted" % tag)
    agree(knn(name, qj, 4, metric, " AND rowid >= ?", (250,)),
          reference(pending, metric, q, 4, set(range(250, 400))),
          "%s uncommitted range" % tag)
    db.execute("ROLLBACK")
    agree(knn(name, qj, 8, metric), reference(model, metric, q, 8),
          "%s rolled back" % tag)
    # The table's default metric.
    db.execute("CREATE VIRTUAL TABLE %s_m USING numpack(store='%s', array='%s',"
               " layout=blob, metric=%s)" % (name, store, name, metric))
    agree(knn(name + "_m", qj, 5), reference(model, metric, q, 5),
          "%s default metric" % tag)
    db.execute("DROP TABLE %s_m" % name)


for dt in FLOAT_TYPES:
    for m in FLOAT_METRICS:
        case(dt, m)
for dt in ("uint8", "bool"):
    for m in ("hamming", "jaccard"):
        case(dt, m)

# A larger array: the scan is split over threads; results as one thread.
big = rng.standard_normal((120000, 16)).astype(np.float32)
db.execute("SELECT numpack_save(?, 'big', ?)", (store, npy(big)))
db.execute("CREATE VIRTUAL TABLE big USING numpack(store='%s', layout=blob)"
           % store)
db.execute("DELETE FROM big WHERE rowid % 5 = 0")
q = rng.standard_normal(16).astype(np.float32)
got = knn("big", q.tobytes(), 10)
live = np.array([r for r in range(len(big)) if r % 5])
dist = np.sqrt(((big[live] - q) ** 2).sum(axis=1, dtype=np.float32))
top = live[np.argsort(dist, kind="stable")[:10]]
check([r for r, _ in got] == list(top), "big: rowids as NumPy's")
check(np.allclose([x for _, x in got],
                  np.sort(dist)[:10], rtol=1e-5), "big: distances")
# 300 queries in one call.
qs = rng.standard_normal((300, 16)).astype(np.float32)
rows = db.execute("SELECT query, rowid FROM numpack_knn(?, 'big', ?, 3)",
                  (store, npy(qs))).fetchall()
check(len(rows) == 900, "big batch: 3 rows per query")
for qi in (0, 150, 299):
    dist = ((big[live] - qs[qi]) ** 2).sum(axis=1, dtype=np.float32)
    check([r for q, r in rows if q == qi] ==
          list(live[np.argsort(dist, kind="stable")[:3]]),
          "big batch: query %d" % qi)

raise SystemExit(finish())
