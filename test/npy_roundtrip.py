#!/usr/bin/python3
"""npy_roundtrip.py — checks the .npy codec (src/npy.c) against NumPy itself,
in both directions: files NumPy writes must parse in C to the right dtype,
shape and data, and files the C writer makes must load with np.load, byte
for byte as np.save would have written them.

It needs only NumPy (Debian's python3-numpy; run it with /usr/bin/python3)
and a built test/npy_test.  Usage:

  /usr/bin/python3 test/npy_roundtrip.py PATH/TO/npy_test
      all three steps in a temporary directory: write NumPy's files, run
      npy_test with NPK_NPY_DIR set to it, then load the files it wrote

  /usr/bin/python3 test/npy_roundtrip.py --write DIR
      only write NumPy's files and DIR/manifest.txt
      (then: NPK_NPY_DIR=DIR ./npy_test)
  /usr/bin/python3 test/npy_roundtrip.py --check DIR
      only load the c_*.npy files npy_test wrote, per DIR/c_manifest.txt

manifest.txt (read by npy_test) has one line per NumPy-written file:

  ok NAME DTYPE NDIM D1 .. Dn   NAME.npy parses to this; NAME.raw holds its
                                data as the store keeps it (C order,
                                little-endian)
  refuse NAME WORDS...          NAME.npy is refused with a message holding
                                WORDS

Exit status 0 when everything matched.
"""
import io
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
from numpy.lib import format as npformat

# The 14 dtypes in catalog-code order (src/dtype.h).
DTYPES = ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16",
          "int32", "int64", "float16", "float32", "float64", "complex64",
          "complex128"]
SHAPES = [(), (0,), (5,), (3, 4), (2, 3, 4), (0, 7)]


def pattern(nbytes, dtype):
    """The data bytes npy_test.c's fill_pattern() writes."""
    b = bytes(((i * 131 + 7) & 0xff) for i in range(nbytes))
    if np.dtype(dtype) == np.bool_:
        b = bytes(x & 1 for x in b)
    return b


def sample(dtype, shape, seed):
    """An array of arbitrary bit patterns (NaNs and all) of DTYPE; bools
    hold only 0 and 1, as they must."""
    dt = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.random.default_rng(seed).integers(
        0, 256, count * dt.itemsize, dtype=np.uint8)
    if dt == np.bool_:
        raw &= 1
    return raw.view(dt.newbyteorder("<")).reshape(shape).astype(dt)


def shape_words(shape):
    return " ".join([str(len(shape))] + [str(d) for d in shape])


class Writer:
    """Writes NAME.npy (and NAME.raw) files and the manifest lines."""

    def __init__(self, directory):
        self.dir = directory
        self.lines = []

    def path(self, name, ext):
        return os.path.join(self.dir, name + ext)

    def ok(self, name, image, dtype, shape, little_c_bytes):
        with open(self.path(name, ".npy"), "wb") as f:
            f.write(image)
        with open(self.path(name, ".raw"), "wb") as f:
            f.write(little_c_bytes)
        self.lines.append("ok %s %s %s" % (name, dtype, shape_words(shape)))

    def refuse(self, name, image, words):
        with open(self.path(name, ".npy"), "wb") as f:
            f.write(image)
        self.lines.append("refuse %s %s" % (name, words))

    def finish(self):
        with open(os.path.join(self.dir, "manifest.txt"), "w") as f:
            f.write("\n".join(self.lines) + "\n")
        return len(self.lines)


def saved(a, version=None):
    """The image np.save (or write_array with VERSION) makes of A."""
    b = io.BytesIO()
    if version is None:
        np.save(b, a, allow_pickle=True)
    else:
        npformat.write_array(b, a, version=version, allow_pickle=True)
    return b.getvalue()


def handmade(d, data, version=(1, 0)):
    """An image with header dict D, as NumPy's own header writer formats
    it, and DATA: for headers np.save never writes for a real array
    (Fortran order on 1-D data, '=' byte order)."""
    b = io.BytesIO()
    npformat._write_array_header(b, d, version)
    return b.getvalue() + data


def little_c(a):
    """A's data as the store keeps it: C order, little-endian."""
    return np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()


def write_numpy_files(directory):
    w = Writer(directory)
    seed = 1

    # Every dtype in every shape, as np.save writes it.
    for dt in DTYPES:
        for k, shape in enumerate(SHAPES):
            a = sample(dt, shape, seed)
            seed += 1
            w.ok("np_%s_%d" % (dt, k), saved(a), dt, shape, little_c(a))

    # Big-endian data: the C side must report it and swap it.
    for dt in DTYPES:
        for shape in [(5,), (3, 4)]:
            a = sample(dt, shape, seed)
            seed += 1
            big = a.astype(a.dtype.newbyteorder(">"))
            w.ok("be_%s_%d" % (dt, len(shape)), saved(big), dt, shape,
                 little_c(a))

    # Versions 2.0 and 3.0, which np.save only picks for huge headers.
    for version in [(2, 0), (3, 0)]:
        for dt in ["float64", "int16", "complex64", "bool"]:
            a = sample(dt, (3, 4), seed)
            seed += 1
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image = saved(a, version)
            w.ok("v%d_%s" % (version[0], dt), image, dt, (3, 4), little_c(a))

    # The most dimensions NumPy 1.x allows.
    a = sample("int32", (1,) * 31 + (3,), seed)
    w.ok("dims32", saved(a), "int32", a.shape, little_c(a))

    # Fortran order: refused where the bytes differ from C order, accepted
    # where they are the same.
    a = sample("float32", (3, 4), seed)
    w.refuse("fortran_2d", saved(np.asfortranarray(a)),
             "Fortran-order arrays are not supported")
    a = sample("int64", (2, 3, 4), seed)
    w.refuse("fortran_3d", saved(np.asfortranarray(a)), "np.ascontiguousarray")
    a = sample("float64", (6,), seed)
    w.ok("fortran_1d",
         handmade({"descr": "<f8", "fortran_order": True, "shape": (6,)},
                  a.tobytes()), "float64", (6,), little_c(a))
    w.ok("fortran_1x6",
         handmade({"descr": "<f8", "fortran_order": True, "shape": (1, 6)},
                  a.tobytes()), "float64", (1, 6), little_c(a))

    # '=' means the reader's order; np.load agrees.
    a = sample("int32", (4,), seed)
    w.ok("native_i4",
         handmade({"descr": "=i4", "fortran_order": False, "shape": (4,)},
                  a.astype("=i4").tobytes()), "int32", (4,), little_c(a))

    # Types the store cannot hold.
    w.refuse("object", saved(np.array([1, "a", None], dtype=object)),
             "dtype '|O' is not supported (objects)")
    w.refuse("unicode", saved(np.array(["abc", "hello"])),
             "dtype '<U5' is not supported (strings)")
    w.refuse("bytes", saved(np.array([b"ab", b"xyz"])),
             "dtype '|S3' is not supported (strings)")
    w.refuse("structured",
             saved(np.zeros(3, dtype=[("x", "<f4"), ("y", "<i2")])),
             "(structured)")
    w.refuse("datetime", saved(np.array(["2024-01-01"], dtype="M8[ns]")),
             "dtype '<M8[ns]' is not supported (datetimes)")
    w.refuse("timedelta", saved(np.array([5], dtype="m8[s]")),
             "dtype '<m8[s]' is not supported (timedeltas)")
    w.refuse("void", saved(np.zeros(2, dtype="V8")),
             "dtype '|V8' is not supported (raw void data)")
    w.refuse("longdouble", saved(np.zeros(2, dtype=np.longdouble)),
             "is not supported")
    w.refuse("clongdouble", saved(np.zeros(2, dtype=np.clongdouble)),
             "is not supported")

    # Data of the wrong length.
    a = sample("float32", (3,), seed)
    w.refuse("trailing", saved(a) + b"\0", "13 bytes of data, shape needs 12")
    w.refuse("short", saved(a)[:-1], "11 bytes of data, shape needs 12")
    w.refuse("headless", saved(a)[:60], "truncated header")

    return w.finish()


def check_c_files(directory):
    """Load every file npy_test wrote; return the number of failures."""
    failures = 0
    count = 0
    with open(os.path.join(directory, "c_manifest.txt")) as f:
        lines = [l.split() for l in f if l.strip()]
    for words in lines:
        name, dt, ndim = words[0], words[1], int(words[2])
        shape = tuple(int(d) for d in words[3:3 + ndim])
        path = os.path.join(directory, name + ".npy")
        count += 1
        with open(path, "rb") as f:
            image = f.read()
        a = np.load(io.BytesIO(image), allow_pickle=False)
        problems = []
        if a.dtype != np.dtype(dt) or a.dtype.str != np.dtype(dt).str:
            problems.append("dtype %s" % a.dtype.str)
        if a.shape != shape:
            problems.append("shape %r" % (a.shape,))
        if a.tobytes() != pattern(a.nbytes, dt):
            problems.append("data differs")
        # np.save of what was loaded writes the same bytes: the C header
        # is NumPy's own, padding and all.
        if saved(a) != image:
            problems.append("not byte-identical to np.save")
        if problems:
            failures += 1
            print("FAIL %s: %s" % (name, ", ".join(problems)))
    print("%d C-written files loaded by NumPy %s, %d failed"
          % (count, np.__version__, failures))
    if count == 0:
        failures += 1
    return failures


def main(argv):
    if len(argv) == 3 and argv[1] == "--write":
        n = write_numpy_files(argv[2])
        print("%d NumPy files written to %s" % (n, argv[2]))
        return 0
    if len(argv) == 3 and argv[1] == "--check":
        return 1 if check_c_files(argv[2]) else 0
    if len(argv) != 2 or argv[1].startswith("-"):
        sys.stderr.write(__doc__)
        return 2
    program = os.path.abspath(argv[1])
    with tempfile.TemporaryDirectory(prefix="npk-npy-") as directory:
        n = write_numpy_files(directory)
        print("%d NumPy files written" % n)
        env = dict(os.environ, NPK_NPY_DIR=directory)
        run = subprocess.run([program], env=env, stdout=subprocess.PIPE,
                             universal_newlines=True)
        sys.stdout.write(run.stdout)
        if run.returncode != 0 or "NumPy files checked" not in run.stdout:
            print("FAIL %s exited %d" % (program, run.returncode))
            return 1
        return 1 if check_c_files(directory) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
