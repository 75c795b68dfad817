"""The butler extra stays optional: nothing else imports LSST code, and without it one line says
how to get it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_BLOCK_LSST = """
import sys
class _NoLsst:
    def find_spec(self, name, path=None, target=None):
        if name == "lsst" or name.startswith("lsst."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NoLsst())
"""


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "argv", [["--help"], ["ingest", "--help"], ["publish", "butler", "--help"], ["demo", "--help"]]
)
def test_help_imports_no_lsst_module(argv: list[str]) -> None:
    code = """
import sys
from calibreg_cli.main import app
try:
    app(sys.argv[1:], prog_name="calibreg")
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
loaded = sorted(m for m in sys.modules if m == "lsst" or m.startswith("lsst."))
print("LSSTMODULES", loaded)
"""
    res = _run(code, *argv)
    assert res.returncode == 0, res.stderr
    assert "LSSTMODULES []" in res.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["ingest", "butler", "repo", "-i", "LSSTCam", "-c", "some/run"],
        ["publish", "butler", "1", "repo", "--run", "u/me/x"],
    ],
)
def test_without_the_extra_the_butler_commands_say_how_to_get_it(argv, tmp_path) -> None:
    code = (
        _BLOCK_LSST + "from calibreg_cli.main import app\napp(sys.argv[1:], prog_name='calibreg')"
    )
    res = _run(code, *argv, "--db", f"sqlite:///{tmp_path / 'none.sqlite3'}")
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0, res.stderr  # one line, no traceback
    assert "pip install 'calibreg[butler]'" in res.stderr
