-- functions.sql — one example of each store-level SQL function, in the
-- order of NumPack's methods.  Run it from the build tree:
--   sqlite3 :memory: -cmd '.load ./numpack' < sql/functions.sql
-- Arrays travel as NumPy .npy BLOBs; here they are made in SQL by reading
-- rows back out of the store, so the example needs nothing but sqlite3.
.headers on
.mode line

-- NumPack('fn.npk', drop_if_exists=True): an empty store, 0 arrays.
SELECT numpack_open('fn.npk', 1) AS arrays;

-- Fill an array through a table, then work on it with the functions.
CREATE VIRTUAL TABLE temps USING numpack(store='fn.npk', dtype=float64);
INSERT INTO temps VALUES (20.5), (21.0), (19.5), (22.25), (23.0);

-- load(name): every live row as one .npy BLOB.
SELECT length(numpack_load('fn.npk', 'temps')) AS npy_bytes;

-- save({name: arr}): create or overwrite 'copy' from an .npy BLOB.
SELECT numpack_save('fn.npk', 'copy', numpack_load('fn.npk', 'temps'))
       AS rows_saved;

-- save in the raw form: little-endian bytes, a dtype and the shape as JSON
-- (what a C program binds from an array's own memory): 2 x 2 float32.
SELECT numpack_save('fn.npk', 'grid', x'0000803f000000400000404000008040',
                    'float32', '[2,2]') AS raw_rows_saved;

-- append({name: arr}): same dtype and row shape, rows added at the end.
SELECT numpack_append('fn.npk', 'copy', numpack_getitem('fn.npk', 'temps', '0:2'))
       AS rows_appended;

-- getitem(name, idx): an integer, a JSON list or a start:stop slice.
SELECT hex(numpack_getitem('fn.npk', 'copy', -1)) AS last_row_npy;

-- replace({name: arr}, idx): rows 0 and 1 of 'copy' take 'temps' rows 3, 4.
SELECT numpack_replace('fn.npk', 'copy',
                       numpack_getitem('fn.npk', 'temps', '[3, 4]'), '[0, 1]')
       AS rows_replaced;

-- drop(name, idx): logical rows, so after this the indexes move up.
SELECT numpack_drop('fn.npk', 'copy', '[0, 2]') AS rows_dropped;

-- get_shape(name): the live shape.
SELECT numpack_shape('fn.npk', 'copy') AS shape;

-- update(name): compact away the dropped rows.
SELECT numpack_compact('fn.npk', 'copy') AS rows_removed;

-- clone(src, dst).
SELECT numpack_clone('fn.npk', 'copy', 'copy2') AS rows_cloned;

-- get_member_list / has_array / get_modify_time: the arrays table.
SELECT name, dtype, shape, live_rows, modify_time FROM numpack_arrays('fn.npk');

-- stream_load(name, n): batches of n rows, each an .npy BLOB.
SELECT batch, first, rows, length(npy) AS npy_bytes
  FROM numpack_stream('fn.npk', 'temps', 2);

-- load(name, lazy=True): where the rows are, to map the files yourself:
-- one row per data file, its live rows as a bitmap (NULL: all live).
SELECT offset, first_row, rows, hex(live) AS live_bits, dtype, shape
  FROM numpack_files('fn.npk', 'temps');

-- get_metadata().
SELECT numpack_metadata('fn.npk') AS metadata;

-- get_io_stats().
SELECT numpack_io_stats('fn.npk') AS io_stats;

-- drop(name) and drop([names]).
SELECT numpack_drop('fn.npk', '["copy", "copy2"]') AS arrays_dropped;

-- reset(): every array gone; the table 'temps' is left with no array, so
-- drop it too (DROP TABLE of a table whose array is gone only detaches).
SELECT numpack_reset('fn.npk') AS arrays_removed;
DROP TABLE temps;
SELECT numpack_version() AS version, numpack_sessions() AS open_stores;
