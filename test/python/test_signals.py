"""test_signals.py - the SIGBUS handler the extension installs once it maps a
data file: a file cut short under a scan fails that statement only (not
statements on other stores), and signals that are not faults in the
extension's mappings are handled as they would be without it: ignored when
the program ignores SIGBUS, passed to the program's own handler, fatal by
default.  Each case runs in a child process of its own, since the handler
is installed once per process; each is a case.
"""
import os
import subprocess
import sys
import textwrap

from npktest import check

CHILD_HEAD = """
import os, signal, sqlite3, sys
db = sqlite3.connect(":memory:", isolation_level=None)
db.enable_load_extension(True)
db.load_extension(sys.argv[1])
def table(name, store, n):
    db.execute("CREATE VIRTUAL TABLE %s USING numpack(store='%s', dtype=int64)"
               % (name, store))
    db.execute("BEGIN")
    db.executemany("INSERT INTO %s VALUES (?)" % name, [(i,) for i in range(n)])
    db.execute("COMMIT")
"""


def child(body, module, tmp):
    """Run BODY after CHILD_HEAD in a fresh interpreter: (status, output)."""
    script = os.path.join(tmp, "child.py")
    with open(script, "w") as f:
        f.write(CHILD_HEAD + textwrap.dedent(body))
    p = subprocess.run([sys.executable, script, module], cwd=tmp,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    return p.returncode, p.stdout.decode(errors="replace")


def test_cut_fails_only_its_store(module, tmp):
    """A cut under one store's scan fails that scan, not another store's."""
    rc, out = child("""
        table("x", "x.npk", 5000)
        table("y", "y.npk", 5000)
        def cut(rowid):
            if rowid == 100:
                os.truncate("y.npk/data_y.npkd", 0)
            return 0
        db.create_function("cut", 1, cut)
        other = db.execute("SELECT value FROM x")
        first = other.fetchone()[0]
        try:
            db.execute("SELECT value, cut(rowid) FROM y").fetchall()
            print("y: no error")
        except sqlite3.DatabaseError as e:
            print("y:", type(e).__name__, "shortened" in str(e))
        rest = [r[0] for r in other.fetchall()]
        print("x:", first + sum(rest) == sum(range(5000)), len(rest) + 1)
    """, module, tmp)
    check(rc == 0 and "y: DatabaseError True" in out and "x: True 5000" in out,
          "a cut fails only its own store's statements: %d %s" % (rc, out))


def test_sig_ign_respected(module, tmp):
    """A program that ignores SIGBUS still ignores a sent one."""
    rc, out = child("""
        signal.signal(signal.SIGBUS, signal.SIG_IGN)
        table("t", "ign.npk", 10)
        print(db.execute("SELECT sum(value) FROM t").fetchone()[0])
        os.kill(os.getpid(), signal.SIGBUS)
        print("survived")
    """, module, tmp)
    check(rc == 0 and "45" in out and "survived" in out,
          "SIG_IGN is respected: %d %s" % (rc, out))


def test_own_handler_called(module, tmp):
    """The program's own handler gets the signals that are not ours."""
    rc, out = child("""
        got = []
        signal.signal(signal.SIGBUS, lambda s, f: got.append(s))
        table("t", "own.npk", 10)
        db.execute("SELECT sum(value) FROM t").fetchone()
        os.kill(os.getpid(), signal.SIGBUS)
        print("handled", got == [signal.SIGBUS])
    """, module, tmp)
    check(rc == 0 and "handled True" in out,
          "the program's handler is called: %d %s" % (rc, out))


def test_unhandled_sigbus_fatal(module, tmp):
    """Nobody handles it: the process ends as it would without numpack."""
    rc, out = child("""
        table("t", "dfl.npk", 10)
        db.execute("SELECT sum(value) FROM t").fetchone()
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGBUS)
        print("survived")
    """, module, tmp)
    check(rc != 0 and "survived" not in out,
          "an unhandled SIGBUS still ends the process: %d %s" % (rc, out))
