"""
stream_probe.py — the memory probe of the stream case, run by
cases_array.py in a fresh process so that nothing else lives in its heap.

  stream_probe.py NUMPACK_SO STORE ARRAY BATCH_ROWS

Consumes SELECT length(npy) FROM numpack_stream(STORE, ARRAY, BATCH_ROWS) to
the end while a thread reads RssAnon from /proc/self/status every
millisecond (Python's sqlite3 module lets other threads run while SQLite
works).  Prints one JSON object: RssAnon before the query and at its peak
(KiB), the seconds taken, the batches and the bytes of .npy returned.
"""
import json
import sqlite3
import sys
import threading
import time


def rss_anon_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("no RssAnon in /proc/self/status")


def main():
    so, store, name, batch = sys.argv[1], sys.argv[2], sys.argv[3], \
        int(sys.argv[4])
    con = sqlite3.connect(":memory:")
    con.enable_load_extension(True)
    con.load_extension(so)

    before = rss_anon_kb()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_anon_kb())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    batches = nbytes = 0
    t0 = time.perf_counter()
    try:
        for (length,) in con.execute(
                "SELECT length(npy) FROM numpack_stream(?, ?, ?)",
                (store, name, batch)):
            batches += 1
            nbytes += length
    finally:
        seconds = time.perf_counter() - t0
        done.set()
        sampler.join()
    peak[0] = max(peak[0], rss_anon_kb())
    print(json.dumps({"before_kb": before, "peak_kb": peak[0],
                      "seconds": seconds, "batches": batches,
                      "bytes": nbytes}))


if __name__ == "__main__":
    main()
