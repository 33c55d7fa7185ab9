"""conftest.py - what every pytest module of test/python/ gets: the module
under test ($NUMPACK_SO, else ./.libs/numpack.so), a fresh directory per
case (pytest's tmp_path), and the check counter of npktest.py turned into
the case's outcome: a case fails when any of its checks failed (listing
them) or when it made no check at all, so that a case that silently
skipped its work cannot pass.

Options (for make stress and by hand; test_differential.py reads them):
  --seeds A-B      the differential test's seeds (default: 2)
  --steps N        steps per seed (default 300)
  --reconnect N    reopen every connection every N steps (default 25)
  --stats          print the operations the differential test ran
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import npktest  # noqa: E402


def pytest_addoption(parser):
    group = parser.getgroup("numpack", "the differential test")
    # The default seed also catches, within 30 steps, the loss of
    # uncommitted appends after another connection's read when that fix is
    # reverted.
    group.addoption("--seeds", default="2",
                    help="seeds A-B (or one seed) of test_differential.py")
    group.addoption("--steps", type=int, default=300,
                    help="steps per seed of test_differential.py")
    group.addoption("--reconnect", type=int, default=25,
                    help="reopen the connections every N steps")
    group.addoption("--stats", action="store_true",
                    help="print the operations test_differential.py ran")


def seed_range(text):
    """The seeds of "A-B" or "A"."""
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def pytest_generate_tests(metafunc):
    if "seed" in metafunc.fixturenames:
        metafunc.parametrize("seed",
                             seed_range(metafunc.config.getoption("seeds")))


@pytest.fixture(scope="session")
def module():
    """The extension to load; a missing file fails every case at once."""
    path = npktest.module_path()
    if not os.path.exists(path):
        pytest.fail("no module %s: set NUMPACK_SO" % path)
    return path


@pytest.fixture
def tmp(tmp_path):
    """The case's own directory, as a string, also the working directory."""
    old = os.getcwd()
    os.chdir(tmp_path)
    yield str(tmp_path)
    os.chdir(old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Count the case's npktest.check() calls; fail it on any failed one,
    or when it made none."""
    npktest.reset_checks()
    outcome = yield
    passed, failed = npktest.checks()
    npktest.reset_checks()
    if outcome.excinfo is not None:
        return
    if failed:
        shown = "\n  ".join(failed[:50])
        more = ("" if len(failed) <= 50
                else "\n  ... and %d more" % (len(failed) - 50))
        pytest.fail("%d checks failed (%d passed):\n  %s%s"
                    % (len(failed), passed, shown, more), pytrace=False)
    if passed == 0:
        pytest.fail("no check was made", pytrace=False)
