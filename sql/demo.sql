-- demo.sql — a first tour of numpack for SQLite (run by ./build.sh demo).
-- It builds a small store, demo.npk, in the current directory: a NumPack
-- store that the NumPack Python library can open as well.
.headers on
.mode box

SELECT 'numpack ' || numpack_version() || ' on SQLite ' || sqlite_version()
       AS version;

-- Start from an empty store (drop_if_exists = 1), as NumPack(path, True).
SELECT numpack_open('demo.npk', 1) AS arrays_before;

-- One array of 3-D points: each row is 3 float32 values.
CREATE VIRTUAL TABLE points USING numpack(
  store='demo.npk', dtype=float32, shape=(3), columns='x,y,z');

-- INSERT appends rows; the rowid is the row's index in the array.
INSERT INTO points VALUES (0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1),
                          (1, 1, 1), (2, 2, 2), (3, 3, 3), (4, 4, 4);
SELECT rowid, x, y, z FROM points;

-- Plain SQL over the array.
SELECT count(*) AS n, avg(x) AS mean_x, max(z) AS max_z FROM points;

-- UPDATE replaces values in place; DELETE marks rows deleted in the bitmap.
UPDATE points SET y = -1 WHERE rowid = 2;
DELETE FROM points WHERE x = y AND y = z AND x > 2;
SELECT rowid, x, y, z FROM points;

-- The whole row as little-endian bytes (the hidden column "row").
SELECT rowid, hex(row) AS row_bytes FROM points WHERE rowid = 1;

-- Lookups by rowid, IN lists, ranges and LIMIT/OFFSET never scan the array.
EXPLAIN QUERY PLAN SELECT * FROM points WHERE rowid IN (1, 4);
SELECT rowid FROM points ORDER BY rowid LIMIT 2 OFFSET 3;

-- A transaction: everything inside is undone by ROLLBACK.
BEGIN;
INSERT INTO points VALUES (9, 9, 9);
DELETE FROM points;
SELECT count(*) AS inside_transaction FROM points;
ROLLBACK;
SELECT count(*) AS after_rollback FROM points;

-- Store-level view: shapes count deleted rows until compaction.
SELECT name, dtype, shape, rows, live_rows, deleted_rows
  FROM numpack_arrays('demo.npk');

-- Compaction (NumPack's update) removes deleted rows and renumbers.
SELECT numpack_compact('demo.npk', 'points') AS rows_removed;
SELECT name, shape, rows, live_rows FROM numpack_arrays('demo.npk');

-- Arrays as NumPy .npy BLOBs: clone, read rows by logical index.
SELECT numpack_clone('demo.npk', 'points', 'backup') AS rows_cloned;
SELECT length(numpack_getitem('demo.npk', 'backup', '0:2')) AS npy_bytes;
SELECT batch, first, rows, length(npy) AS npy_bytes
  FROM numpack_stream('demo.npk', 'backup', 4);

-- NumPack's get_metadata().
SELECT json_extract(numpack_metadata('demo.npk'), '$.arrays.points') AS points;
SELECT numpack_shape('demo.npk', 'points') AS shape;

-- Vector search: the 3 rows nearest to a query, exact, as sqlite-vec's
-- vec0 spells it; rowid filters apply before the top k.
SELECT rowid, round(distance, 3) AS distance FROM points
 WHERE row MATCH '[1, 1, 1]' AND k = 3 ORDER BY distance;
SELECT rowid, round(distance, 3) AS cosine_distance FROM points
 WHERE row MATCH '[1, 0, 0]' AND k = 2 AND metric = 'cosine'
   AND rowid BETWEEN 1 AND 4;

-- Writing functions inside a transaction join it: ROLLBACK undoes them.
BEGIN;
SELECT numpack_drop('demo.npk', 'backup') AS dropped_inside;
ROLLBACK;
SELECT name FROM numpack_arrays('demo.npk') ORDER BY name;
