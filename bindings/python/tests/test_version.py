"""One version for the whole project: the top-level VERSION file is what
configure gives the extension (numpack_version()), what the package
reports and what packaging reads."""
from pathlib import Path

import numpack_sqlite

TOP = Path(__file__).resolve().parents[3]


def test_package_version_is_the_extensions(sql):
    (v,) = sql.execute("SELECT numpack_version()").fetchone()
    assert numpack_sqlite.__version__ == v


def test_package_version_is_the_version_file():
    assert numpack_sqlite.__version__ == (TOP / "VERSION").read_text().strip()


def test_packaging_reads_the_same_file():
    text = (TOP / "bindings" / "python" / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text
    assert 'version = {file = "numpack_sqlite/VERSION"}' in text
    assert not any(line.startswith('version = "') for line in text.splitlines())
