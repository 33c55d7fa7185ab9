"""Every writing method inside batch_mode, on a store with arrays and on an
empty one: the block is one transaction on the store from its start (one
commit; other connections see nothing of it and cannot write the store
until it ends), an exception leaving the block undoes everything it did,
and a call that fails inside the block leaves nothing of itself.  The
reference for each case is the same calls made outside any batch on a twin
store."""
import io
import sqlite3

import numpy as np
import pytest

from numpack_sqlite import NumPack

from conftest import open_sql


class Boom(Exception):
    pass


A = np.array([1, 2, 3], dtype=np.int32)
B = np.array([10, 20], dtype=np.int32)
V = np.array([7, 8], dtype=np.int32)


def prelude(n):
    """What the store with arrays holds; the empty store's block makes it
    first."""
    n.save({"a": A, "b": B})
    n.drop("a", [0])


# One call of each writing method (and the extension function it ends in).
OPS = {
    "save_new": lambda n: n.save({"c": V}),              # numpack_save
    "save_over": lambda n: n.save({"a": V}),             # numpack_save
    "append": lambda n: n.append({"a": V}),              # numpack_append
    "replace": lambda n: n.replace({"a": V[:1]}, [1]),   # numpack_replace
    "drop_rows": lambda n: n.drop("a", [0]),             # numpack_drop rows
    "drop_array": lambda n: n.drop("b"),                 # numpack_drop '0:'
    "clone": lambda n: n.clone("a", "c"),                # numpack_clone
    "update": lambda n: n.update("a"),                   # numpack_compact
    "reset": lambda n: n.reset(),                        # numpack_reset
}

# A call of the same method that fails (None: the method has no failing
# call that reaches the store: drop ignores missing names, as NumPack does).
BAD = {
    "save_new": lambda n: n.save({"bad/name": V}),
    "save_over": lambda n: n.save({"a/": V}),
    "append": lambda n: n.append({"a": np.zeros((1, 3), np.int32)}),
    "replace": lambda n: n.replace({"a": V[:1]}, [50]),
    "drop_rows": lambda n: n.drop("a", [50]),
    "drop_array": None,
    "clone": lambda n: n.clone("a", "b"),
    "update": lambda n: n.update("missing"),
    "reset": None,
}


def view(path):
    """What another connection sees of the store: name -> live rows."""
    with NumPack(path) as other:
        return {k: other.load(k).tolist() for k in other.get_member_list()}


def commits(npk):
    return npk.get_io_stats()["commits"]


def npy(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def other_write(path):
    """Another connection's write, not waiting: None, or its error."""
    con = open_sql()
    try:
        con.execute("PRAGMA busy_timeout = 0")
        con.execute("SELECT numpack_save(?, 'z', ?)",
                    (str(path), npy(V))).fetchall()
        con.execute("SELECT numpack_drop(?, 'z')", (str(path),)).fetchall()
        return None
    except sqlite3.Error as e:
        return str(e)
    finally:
        con.close()


def fresh(path, kind):
    with NumPack(path, drop_if_exists=True) as n:
        if kind == "arrays":
            prelude(n)


def reference(tmp_path, kind, op):
    """(before, after the prelude, after the call): the twin store's
    states, each call committed on its own."""
    twin = tmp_path / "twin.npk"
    fresh(twin, kind)
    before = view(twin)
    with NumPack(twin) as n:
        if kind == "empty":
            prelude(n)
        mid = view(twin)
        op(n)
    return before, mid, view(twin)


KINDS = ["arrays", "empty"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(OPS))
def test_commit(tmp_path, kind, name):
    path = tmp_path / "s.npk"
    before, _, after = reference(tmp_path, kind, OPS[name])
    fresh(path, kind)
    with NumPack(path) as npk:
        c0 = commits(npk)
        with npk.batch_mode():
            if kind == "empty":
                prelude(npk)
            OPS[name](npk)
            assert view(path) == before
            assert "locked" in (other_write(path) or "")
        # One commit (or none, when the block changed nothing a reader
        # sees: a compaction, a reset of what the block itself wrote).
        assert commits(npk) - c0 in ((1,) if after != before else (0, 1))
    assert view(path) == after
    assert other_write(path) is None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(OPS))
def test_rollback(tmp_path, kind, name):
    path = tmp_path / "s.npk"
    before, _, _ = reference(tmp_path, kind, OPS[name])
    fresh(path, kind)
    with NumPack(path) as npk:
        c0 = commits(npk)
        with pytest.raises(Boom):
            with npk.batch_mode():
                if kind == "empty":
                    prelude(npk)
                OPS[name](npk)
                npk.get_metadata()      # saves kept in memory written too
                raise Boom
        assert commits(npk) == c0
        assert view(path) == before
        assert other_write(path) is None
        npk.save({"z": V})              # usable again, outside any batch
    assert view(path)["z"] == V.tolist()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", [k for k in OPS if BAD[k]])
def test_failing_call(tmp_path, kind, name):
    """The failing call raises inside the block (and the block, which
    catches it, commits the rest), or, for a save that batch_mode keeps in
    memory, at the block's end (and the block writes nothing)."""
    path = tmp_path / "s.npk"
    before, mid, _ = reference(tmp_path, kind, OPS[name])
    fresh(path, kind)
    inside = False
    with NumPack(path) as npk:
        c0 = commits(npk)
        try:
            with npk.batch_mode():
                if kind == "empty":
                    prelude(npk)
                try:
                    BAD[name](npk)
                except (ValueError, KeyError, IndexError):
                    inside = True
        except (ValueError, KeyError, IndexError):
            assert not inside
            assert commits(npk) == c0
            assert view(path) == before
        else:
            assert inside
            assert commits(npk) == c0 + (kind == "empty")
            assert view(path) == mid
        assert other_write(path) is None


def test_no_scratch_database(npk):
    """The batch joins the store without attaching anything to the
    connection, on a store with arrays as on an empty one."""
    with npk.batch_mode():
        npk.reset()
        assert [r[1] for r in npk._con.execute("PRAGMA database_list")] \
            == ["main"]
        assert len(npk._con.execute("SELECT * FROM numpack_txn")
                   .fetchall()) == 1
    npk.save({"a": V})
    with npk.batch_mode():
        assert [r[1] for r in npk._con.execute("PRAGMA database_list")] \
            == ["main"]


@pytest.mark.parametrize("kind", KINDS)
def test_failing_call_of_several_arrays(tmp_path, kind):
    """A call that writes several arrays and fails on a later one leaves
    nothing of itself in the block's transaction, which goes on."""
    path = tmp_path / "s.npk"
    _, mid, _ = reference(tmp_path, kind, OPS["append"])
    fresh(path, kind)
    with NumPack(path) as npk:
        with npk.batch_mode():
            if kind == "empty":
                prelude(npk)
            with pytest.raises(KeyError):
                npk.append({"a": V, "missing": V})
            with pytest.raises(ValueError):
                npk.replace({"b": V[:1], "a": np.zeros((1, 2), np.int32)},
                            [0])
            assert npk.load("a").tolist() == A[1:].tolist()
            npk.append({"b": V})
    assert view(path) == dict(mid, b=B.tolist() + V.tolist())
