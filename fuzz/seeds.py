#!/usr/bin/python3
# seeds.py — writes the seed corpus fuzz/corpus/<target>/ of the fuzz
# targets: small valid inputs of each format and a few damaged ones, so that
# fuzzing starts from every branch of the parsers.  Run once from the top
# of the source tree with a python3 that has NumPy (the .npy seeds are
# written by NumPy itself):
#
#   /usr/bin/python3 fuzz/seeds.py
#
# The files are committed; re-running rewrites them identically.

import io
import os
import shutil
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- catalog (metadata.npkm) ----------------------------------------------

ITEM = [1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 4, 8, 8, 16]


def s(text):
    b = text.encode("utf-8")
    return struct.pack("<I", len(b)) + b


def entry(name, dtype, shape, data_file=None, mtime=1700000000000000,
          block=None, size=None, compression=0, ndim=None):
    if data_file is None:
        data_file = "data_%s.npkd" % name
    if size is None:
        size = ITEM[dtype]
        for d in shape:
            size *= d
    out = s(name)
    out += struct.pack("<I", len(shape) if ndim is None else ndim)
    out += b"".join(struct.pack("<Q", d) for d in shape)
    out += s(data_file)
    out += struct.pack("<QQBBIQQ", mtime, size, dtype, compression, 0, 0, 0)
    if block is None:
        out += b"\x00"
    else:
        enabled, bsize, triples = block
        out += b"\x01" + struct.pack("<BQQI", enabled, bsize, len(triples),
                                     len(triples))
        out += b"".join(struct.pack("<QQQ", *t) for t in triples)
    return out


def catalog(entries, magic=0x424B504E, version=1, count=None):
    total = 0
    body = b"".join(entries)
    n = len(entries) if count is None else count
    return struct.pack("<IIQI", magic, version, total, n) + body


def catalogs():
    t = "catalog"
    write(t, "empty.npkm", catalog([]))
    write(t, "one_f32.npkm", catalog([entry("a", 10, [10, 3])]))
    write(t, "two_blockinfo.npkm", catalog([
        entry("ids", 8, [5]),
        entry("mask", 0, [0, 4], block=(1, 4096, [(0, 0, 64), (64, 64, 64)])),
    ]))
    write(t, "segmented.npkm", catalog([
        entry("big", 11, [1000, 2], data_file="data_big.npkseg"),
        entry("c", 13, [2, 2, 2], block=(0, 0, [])),
    ]))
    write(t, "every_dtype.npkm", catalog([
        entry("t%d" % d, d, [3, 2]) for d in range(14)]))
    write(t, "utf8_name.npkm", catalog([
        entry("caf\u00e9_\u6570\u636e", 4, [2], data_file="sub/dir/x.npkd")]))
    # Damaged ones.
    good = catalog([entry("a", 10, [10, 3])])
    write(t, "bad_truncated.npkm", good[:-5])
    write(t, "bad_header_short.npkm", good[:15])
    write(t, "bad_magic.npkm", catalog([], magic=0x12345678))
    write(t, "bad_version.npkm", catalog([], version=2))
    write(t, "bad_trailing.npkm", good + b"\x00")
    write(t, "bad_size.npkm", catalog([entry("a", 10, [10, 3], size=7)]))
    write(t, "bad_dotdot.npkm", catalog([entry("a", 1, [1],
                                               data_file="../x.npkd")]))
    write(t, "bad_abs.npkm", catalog([entry("a", 1, [1],
                                            data_file="/etc/passwd")]))
    write(t, "bad_dup.npkm", catalog([entry("a", 1, [1]), entry("a", 1, [1])]))
    write(t, "bad_dtype.npkm", catalog([entry("a", 14, [1], size=1)]))
    write(t, "bad_compressed.npkm", catalog([entry("a", 1, [1],
                                                   compression=1)]))
    write(t, "bad_ndim0.npkm", catalog([entry("a", 1, [], size=1)]))
    write(t, "bad_count.npkm", catalog([entry("a", 1, [1])], count=2))
    write(t, "bad_overflow.npkm", catalog([entry("a", 13, [1 << 62, 4],
                                                 size=0)]))


# ---- bitmap (deleted_<name>.npkb) -----------------------------------------

def bitmap(rows, dead=(), deleted=None, pad=False, extra=b""):
    nw = (rows + 63) // 64
    words = [0] * nw
    for r in range(rows):
        if r not in dead:
            words[r // 64] |= 1 << (r % 64)
    if pad and rows % 64:
        words[-1] |= 1 << 63
    if deleted is None:
        deleted = len(set(dead) & set(range(rows)))
    return (struct.pack("<QQ", rows, deleted) +
            b"".join(struct.pack("<Q", w) for w in words) + extra)


def bitmaps():
    t = "bitmap"
    write(t, "rows0.npkb", bitmap(0))
    write(t, "rows63_live.npkb", bitmap(63))
    write(t, "rows64_dead3.npkb", bitmap(64, dead={0, 31, 63}))
    write(t, "rows65_dead_last.npkb", bitmap(65, dead={64}))
    write(t, "rows65_all_dead.npkb", bitmap(65, dead=set(range(65))))
    write(t, "rows600_sparse.npkb",
          bitmap(600, dead=set(range(0, 600)) - {5, 511, 512, 599}))
    write(t, "rows1100_every3.npkb", bitmap(1100, dead=set(range(0, 1100, 3))))
    write(t, "bad_padding.npkb", bitmap(65, pad=True))
    write(t, "bad_deleted_count.npkb", bitmap(64, dead={1}, deleted=2))
    write(t, "bad_length.npkb", bitmap(64, extra=b"\x00" * 8))
    write(t, "bad_short.npkb", bitmap(64)[:12])
    write(t, "bad_huge_rows.npkb", struct.pack("<QQ", (1 << 64) - 1, 0))


# ---- segment manifest (data_<name>.npkseg) --------------------------------

def segments():
    t = "segment"
    w = lambda n, x: write(t, n, x)
    w("one.npkseg", '{"version":1,"segments":[{"file":"data_a.0.npkd",'
                    '"rows":100,"bytes":800}]}')
    w("two.npkseg", '{\n  "version": 1,\n  "segments": [\n'
                    '    {"file": "seg/a_0.npkd", "rows": 65536, '
                    '"bytes": 524288},\n'
                    '    {"file": "seg/a_1.npkd", "rows": 3, "bytes": 24}\n'
                    '  ]\n}\n')
    w("empty.npkseg", '{"segments":[],"version":1}')
    w("extra_keys.npkseg", '{"version":1,"created":"2024-01-01",'
                           '"meta":{"x":[1,2.5e3,-4,true,false,null]},'
                           '"segments":[{"bytes":0,"rows":0,"file":'
                           '"caf\\u00e9\\/x.npkd","crc":null}]}')
    w("bad_version.npkseg", '{"version":2,"segments":[]}')
    w("bad_dotdot.npkseg", '{"version":1,"segments":[{"file":"../x",'
                           '"rows":1,"bytes":1}]}')
    w("bad_abs.npkseg", '{"version":1,"segments":[{"file":"/x",'
                        '"rows":1,"bytes":1}]}')
    w("bad_missing_rows.npkseg", '{"version":1,"segments":[{"file":"x",'
                                 '"bytes":1}]}')
    w("bad_trailing.npkseg", '{"version":1,"segments":[]} x')
    w("bad_float.npkseg", '{"version":1,"segments":[{"file":"x",'
                          '"rows":1.0,"bytes":1}]}')
    w("bad_deep.npkseg", '{"version":1,"x":' + "[" * 100 + "]" * 100 +
      ',"segments":[]}')
    w("bad_nul_escape.npkseg", '{"version":1,"segments":[{"file":"a\\u0000",'
                               '"rows":1,"bytes":1}]}')
    w("bad_truncated.npkseg", '{"version":1,"segments":[{"file":"x","ro')


# ---- .npy ------------------------------------------------------------------

def npy_bytes(arr, version=None, fortran=False):
    f = io.BytesIO()
    if fortran:
        arr = np.asfortranarray(arr)
    if version is None:
        np.save(f, arr, allow_pickle=False)
    else:
        np.lib.format.write_array(f, arr, version=version, allow_pickle=False)
    return f.getvalue()


def npys():
    t = "npy"
    w = lambda n, a, **k: write(t, n, npy_bytes(a, **k))
    w("bool_3.npy", np.array([True, False, True]))
    w("u1_2x3.npy", np.arange(6, dtype=np.uint8).reshape(2, 3))
    w("i2_big.npy", np.arange(4, dtype=">i2"))
    w("i4_scalar.npy", np.array(7, dtype="<i4"))
    w("i8_empty.npy", np.zeros((0,), dtype=np.int64))
    w("i8_0x3.npy", np.zeros((0, 3), dtype=np.int64))
    w("u8_1x1x2.npy", np.array([[[1, 2]]], dtype=np.uint64))
    w("f2_4.npy", np.linspace(0, 1, 4).astype(np.float16))
    w("f4_2x2.npy", np.array([[1.5, -2], [np.inf, np.nan]], dtype=np.float32))
    w("f8_big.npy", np.array([1.0, 2.0], dtype=">f8"))
    w("c8_2.npy", np.array([1 + 2j, 3 - 4j], dtype=np.complex64))
    w("c16_big.npy", np.array([1 + 2j], dtype=">c16"))
    w("i1_v2.npy", np.array([-1, 2, -3], dtype=np.int8), version=(2, 0))
    w("u2_v3.npy", np.array([1, 2], dtype="<u2"), version=(3, 0))
    w("f4_fortran_1d.npy", np.arange(3, dtype=np.float32), fortran=True)
    w("f4_fortran_2d.npy", np.arange(6, dtype=np.float32).reshape(2, 3),
      fortran=True)
    w("i2_fortran_3d_big.npy",
      np.arange(24, dtype=">i2").reshape(2, 3, 4), fortran=True)
    w("b1_2x2.npy", np.array([[True, False], [False, True]]))
    # Refused ones.
    w("bad_bool_byte.npy", np.array([0, 1, 2], dtype=np.uint8).view(np.bool_))
    w("bad_unicode.npy", np.array(["ab", "c"]))
    w("bad_structured.npy", np.zeros(2, dtype=[("x", "<i4"), ("y", "<f8")]))
    w("bad_datetime.npy", np.array(["2020-01-01"], dtype="datetime64[D]"))
    good = npy_bytes(np.arange(4, dtype=np.int32))
    write(t, "bad_truncated_data.npy", good[:-1])
    write(t, "bad_extra_data.npy", good + b"\x00")
    write(t, "bad_truncated_header.npy", good[:40])
    bad_ver = bytearray(good)
    bad_ver[6] = 4
    write(t, "bad_version.npy", bytes(bad_ver))
    # Python 2's long dimension and a '|' on a 4-byte type, by hand.
    def header(text, major=1):
        text = text + " " * (63 - (len(text) + 10) % 64) + "\n"
        ln = struct.pack("<H", len(text)) if major == 1 else \
            struct.pack("<I", len(text))
        return b"\x93NUMPY" + bytes([major, 0]) + ln + text.encode("latin-1")
    write(t, "long_dim.npy", header("{'descr': '<i2', 'fortran_order': "
                                    "False, 'shape': (2L,), }") + b"\1\0\2\0")
    write(t, "bad_pipe_f4.npy", header("{'descr': '|f4', 'fortran_order': "
                                       "False, 'shape': (1,), }") + b"\0" * 4)
    write(t, "bad_shape_not_tuple.npy", header(
        "{'descr': '<u1', 'fortran_order': False, 'shape': (3), }") + b"abc")


# ---- index arguments -------------------------------------------------------

def indexes():
    t = "index"
    cases = {
        "int": "7", "neg": "-1", "plus": "+2", "ws_int": "  4 \n",
        "list": "[0, 5, -2]", "list_empty": "[]", "list_ws": "[ -1 ,0 ]",
        "slice": "2:10", "slice_head": ":3", "slice_tail": "-5:",
        "slice_step": "0:100:10", "slice_all_step": "::2",
        "slice_empty_step": "1:4:", "slice_neg_bounds": "-9:-2",
        "int64_max": "9223372036854775807",
        "int64_min": "-9223372036854775808",
        "bad_overflow": "9223372036854775808", "bad_step0": "1:2:0",
        "bad_step_neg": "::-1", "bad_word": "abc", "bad_list_open": "[1,",
        "bad_list_trailing_comma": "[1,]", "bad_float": "1.5",
        "bad_two_colon_words": "a:b", "bad_empty": "",
    }
    for name, text in cases.items():
        write(t, name + ".txt", text)


# ---- journal records (metadata.npkm-journal) ---------------------------------
# fuzz_journal adds the header; the store it plays them in links "evil",
# "sub", "dangling" and "real/link" to files outside, and "hard" is a hard
# link to one (fuzz_journal.c).

def jpath(kind, path):
    b = path.encode("utf-8")
    return kind.encode() + struct.pack("<I", len(b)) + b


def journals():
    t = "journal"
    empty_catalog = struct.pack("<IIQI", 0x424B504E, 1, 0, 0)
    write(t, "valid.bin",
          jpath("T", "data_a.npkd") + struct.pack("<Q", 4) +
          jpath("R", "data_a.npkd") + struct.pack("<QQ", 0, 4) + b"abcd" +
          jpath("C", "metadata.npkm") + struct.pack("<BQ", 1,
                                                    len(empty_catalog)) +
          empty_catalog +
          jpath("L", "a") + b"\x01" +
          jpath("X", "npktmp-1-1") +
          jpath("C", "deleted_a.npkb") + struct.pack("<BQ", 0, 0) +
          jpath("L", "real/new") + b"\x00" +
          jpath("R", "real/x") + struct.pack("<QQ", 2, 3) + b"XYZ")
    write(t, "trunc_link.bin", jpath("T", "evil") + struct.pack("<Q", 0))
    write(t, "region_link.bin",
          jpath("R", "evil") + struct.pack("<QQ", 8, 6) + b"HACKED")
    write(t, "content_link.bin",
          jpath("C", "evil") + struct.pack("<BQ", 1, 3) + b"new")
    write(t, "create_via_dir.bin",
          jpath("C", "sub/created") + struct.pack("<BQ", 1, 3) + b"new")
    write(t, "remove_via_dir.bin", jpath("X", "sub/victim2"))
    write(t, "rename_via_dir.bin", jpath("L", "sub/victim2") + b"\x01")
    write(t, "unlink_via_dir.bin", jpath("L", "sub/victim2") + b"\x00")
    write(t, "trunc_via_dir.bin",
          jpath("T", "sub/data") + struct.pack("<Q", 0))
    write(t, "trunc_nested_link.bin",
          jpath("T", "real/link") + struct.pack("<Q", 0))
    write(t, "region_dangling.bin",
          jpath("R", "dangling") + struct.pack("<QQ", 0, 3) + b"new")
    write(t, "trunc_hardlink.bin", jpath("T", "hard") + struct.pack("<Q", 0))
    write(t, "region_hardlink.bin",
          jpath("R", "hard") + struct.pack("<QQ", 8, 6) + b"HACKED")
    write(t, "remove_lock.bin", jpath("X", "metadata.npkm-lock"))
    write(t, "unlink_lock.bin", jpath("L", "metadata.npkm-lock") + b"\x00")
    write(t, "unlink_journal.bin",
          jpath("L", "metadata.npkm-journal") + b"\x00")


# ---- KNN query vectors ------------------------------------------------------

def knn_head(text, metric, many, dtype, dim):
    """The three bytes fuzz_knn reads first: form, type, element count."""
    return bytes([text | metric << 1 | many << 4, dtype, dim - 1])


def knns():
    t = "knn"
    # dtype slots: 0 float32, 1 float64, 2 float16, 3 int8, 4 uint8, 5 bool
    write(t, "json_f32.bin", knn_head(1, 0, 0, 0, 3) + b"[0.5, -1, 2e3]")
    write(t, "json_many.bin",
          knn_head(1, 1, 1, 1, 2) + b" [[1, 2], [3.25, 4], [0, 0]] ")
    write(t, "json_bool.bin", knn_head(1, 4, 0, 5, 4) + b"[true,false,0,1]")
    write(t, "json_u8_bits.bin", knn_head(1, 5, 1, 4, 2) + b"[[255,0],[1,2]]")
    write(t, "json_bad.bin", knn_head(1, 0, 0, 0, 3) + b"[1, 2,, 3]")
    write(t, "raw_f32.bin",
          knn_head(0, 0, 1, 0, 2) + struct.pack("<4f", 1, 2, 1, 2.5))
    write(t, "raw_i8.bin", knn_head(0, 2, 0, 3, 4) + bytes([1, 255, 3, 128]))
    write(t, "npy_f64.bin", knn_head(0, 0, 1, 0, 3) +
          npy_bytes(np.arange(6, dtype="<f8").reshape(2, 3)))
    write(t, "npy_be.bin", knn_head(0, 3, 0, 1, 4) +
          npy_bytes(np.arange(4, dtype=">i4")))
    write(t, "npy_fortran.bin", knn_head(0, 1, 1, 0, 2) +
          npy_bytes(np.arange(6, dtype="<f4").reshape(3, 2), fortran=True))
    write(t, "npy_u8_bits.bin", knn_head(0, 4, 1, 4, 2) +
          npy_bytes(np.array([[1, 2], [3, 4]], dtype="u1")))


# ---- whole stores (fuzz_store) ----------------------------------------------
# fuzz_store builds a store from a description (the comment at the top of
# fuzz_store.c): 4 bytes of flags and states, 16 bytes per array, the
# journal and lock blobs, then operations.

# dtype codes
BOOL, U8, I32, I64, F16, F32, F64, C128 = 0, 1, 7, 8, 9, 10, 11, 13
# where the rows are (mode bits 0-2) and what the data file is (bits 6-7)
OWN, SEG, TABLE, OTHER, MISSING = 0, 2, 3, 4, 5
LINK, HARD, DIR = 1 << 6, 2 << 6, 3 << 6
SIZE_LIES, HUGE, BLOCK = 8, 16, 32
# bitmaps
BM_NONE, BM_RIGHT, BM_SHORT, BM_COUNT, BM_PAD, BM_LEN, BM_LONG = \
    0, 3, 4, 5, 6, 7, 8
BM_LINK, BM_DIR, BM_EMPTY = 9, 10, 11
# operations: reads (op, array, arg), writes (0x80 + op, array, arg, ...),
# transactions
ROW, LOGICAL, COPY, VIEW, STREAM, FILES, KNN, UNLOCKED = range(8)
APPEND, REPLACE, DELETE, SLICE, DROP, COMPACT, CLONE, SAVE = \
    (0x80 + i for i in range(8))
BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ROLLBACK_TO, RELEASE, RECOVER, REOPEN = \
    (0xC0 + i for i in range(8))
# files changed behind the engine's back (array, argument)
CUT, GROW, NO_BITMAP, OLD_CATALOG = 0xE0, 0xE1, 0xE2, 0xE3
READS = bytes([ROW, 0, 0, ROW, 0, 0xF8, LOGICAL, 0, 3, COPY, 0, 1, 4,
               VIEW, 0, 0, STREAM, 0, 3, FILES, 0, 0, KNN, 0, 0,
               UNLOCKED, 0, 2])


def arr(name=0, dtype=I64, ndim=1, rows=10, dims=0, mode=OWN, pick=0,
        delta=0, seed=1, bm=BM_NONE, bseed=0, nseg=0, seg=(0, 0, 0, 0)):
    return bytes([name, dtype, ndim - 1, rows, dims, mode, pick,
                  delta & 0xFF, seed, bm, bseed, nseg]) + bytes(seg)


def store(arrays, ops=b"", flags=0, lock=0, journal=0, jr=b"", lk=b""):
    return (bytes([flags, lock, journal, len(arrays)]) + b"".join(arrays) +
            struct.pack("<H", len(jr)) + jr + bytes([len(lk)]) + lk + ops)


def stores():
    t = "store"
    write(t, "one_int64.bin", store([arr()], READS))
    write(t, "vectors_bitmap.bin",
          store([arr(dtype=F32, ndim=2, rows=12, dims=4, bm=BM_RIGHT,
                     bseed=6)],
                READS + bytes([APPEND, 0, 1, REPLACE, 0, 2, DELETE, 0, 3,
                               VIEW, 0, 0, KNN, 0, 0, REOPEN]) + READS))
    write(t, "txn.bin",
          store([arr(), arr(name=1, dtype=U8, ndim=3, rows=5, dims=2 | 3 << 3)],
                bytes([BEGIN, APPEND, 0, 2, SAVEPOINT, DELETE, 1, 0,
                       ROLLBACK_TO, REPLACE, 1, 4, SAVE, 2, 3, 1, F64,
                       CLONE, 0, 4, COMMIT, REOPEN]) + READS))
    write(t, "segments.bin",
          store([arr(mode=SEG, rows=9, nseg=2, seg=(3, 2, 0, 0))],
                READS + bytes([APPEND, 0, 0, COMPACT, 0, 0]) + READS))
    write(t, "segments_lie.bin",
          store([arr(mode=SEG, rows=9, nseg=2 | 4 | 32, seg=(3, 2, 0, 0))],
                READS))
    write(t, "shared_file.bin",
          store([arr(), arr(name=1, mode=OTHER)], READS))
    write(t, "zero_width.bin",
          store([arr(dtype=I32, ndim=2, dims=0, mode=HUGE, pick=4 << 5,
                     bm=BM_SHORT, bseed=3)],
                READS + bytes([SLICE, 0, 0, 1, 7, DELETE, 0, 0xFB,
                               APPEND, 0, 0, COMPACT, 0, 0]) + READS))
    write(t, "short_data.bin", store([arr(delta=-1)], READS))
    write(t, "long_data.bin", store([arr(delta=9, bm=BM_COUNT)], READS))
    write(t, "size_lies.bin", store([arr(mode=SIZE_LIES)], READS))
    write(t, "bad_bitmaps.bin",
          store([arr(bm=BM_PAD, bseed=2), arr(name=1, bm=BM_LEN),
                 arr(name=2, bm=BM_LONG)], READS))
    write(t, "links.bin",
          store([arr(mode=LINK), arr(name=1, mode=HARD, dtype=U8, rows=35),
                 arr(name=2, mode=TABLE, pick=1)],
                READS + bytes([APPEND, 1, 0, REPLACE, 1, 0, DELETE, 1, 1,
                               DROP, 0, 0]) + READS))
    write(t, "link_bitmap_dir.bin",
          store([arr(bm=BM_LINK), arr(name=1, mode=DIR),
                 arr(name=2, bm=BM_DIR)],
                READS + bytes([DELETE, 0, 1, APPEND, 2, 0])))
    jr = (jpath("T", "data_a.npkd") + struct.pack("<Q", 16) +
          jpath("R", "data_a.npkd") + struct.pack("<QQ", 0, 4) + b"abcd" +
          jpath("R", "evil") + struct.pack("<QQ", 0, 4) + b"evil")
    write(t, "hot_journal.bin",
          store([arr()], READS + bytes([RECOVER]) + READS +
                bytes([APPEND, 0, 0]), journal=1, jr=jr))
    write(t, "hot_journal_readonly.bin",
          store([arr()], READS + bytes([APPEND, 0, 0]), flags=1, journal=1,
                jr=jr))
    write(t, "lock_states.bin",
          store([arr()], READS + bytes([APPEND, 0, 1, REOPEN]),
                lock=2, lk=bytes(64) + struct.pack("<QQ", 1, 5)))
    write(t, "lock_link.bin",
          store([arr()], READS + bytes([APPEND, 0, 1]), lock=3))
    write(t, "journal_dir.bin",
          store([arr()], READS + bytes([APPEND, 0, 1]), journal=5, lock=4))
    write(t, "readonly_writes.bin",
          store([arr(bm=BM_RIGHT, bseed=1)],
                READS + bytes([APPEND, 0, 1, DELETE, 0, 0, DROP, 0, 0,
                               SAVE, 1, 2, 1, I32]), flags=1))
    write(t, "leftovers.bin",
          store([arr(dtype=C128, ndim=2, rows=3, dims=2)],
                bytes([BEGIN, APPEND, 0, 0, ROLLBACK, APPEND, 0, 0]) + READS,
                flags=4 | 2))
    write(t, "block_info_names.bin",
          store([arr(mode=BLOCK, name=4), arr(name=5, dtype=F16, ndim=2,
                                               dims=3),
                 arr(name=6)], READS))
    write(t, "unknown_dtype.bin", store([arr(dtype=0xF3)], READS))
    write(t, "tampered.bin",
          store([arr(dtype=F32, ndim=2, rows=40, dims=4, bm=BM_RIGHT,
                     bseed=5), arr(name=1)],
                READS + bytes([VIEW, 0, 0, CUT, 0, 0xFE]) + READS +
                bytes([VIEW, 0, 0, STREAM, 0, 2, KNN, 0, 0,
                       APPEND, 0, 1, GROW, 1, 3]) + READS +
                bytes([NO_BITMAP, 0, 0, DELETE, 0, 1, OLD_CATALOG, 0, 0,
                       SAVE, 0, 2, 1, I64]) + READS))
    write(t, "empty.bin",
          store([], bytes([SAVE, 0, 4, 2, I64]) + READS +
                bytes([CLONE, 0, 1, REOPEN]) + READS))


def main():
    for t in ("catalog", "bitmap", "segment", "npy", "index", "journal",
              "knn", "store"):
        shutil.rmtree(os.path.join(CORPUS, t), ignore_errors=True)
    catalogs()
    bitmaps()
    segments()
    npys()
    indexes()
    journals()
    knns()
    stores()
    return 0


if __name__ == "__main__":
    sys.exit(main())
