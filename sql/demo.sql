-- demo.sql — a first look at the extension (run by ./build.sh demo).
SELECT 'numpack ' || numpack_version() || ' on SQLite ' || sqlite_version();
