"""The layer contracts of pyproject.toml ([tool.importlinter]) hold, and are really checked:
a copy of the package with one upward import added fails `lint-imports`, as `make lint` would."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH first: the package under `root` is the one analysed, not the installed one
    return subprocess.run(
        [str(LINT), str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_package_keeps_its_layers() -> None:
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_an_upward_import_breaks_the_lint(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "bfsdata", tmp_path / "bfsdata", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    kernel = tmp_path / "bfsdata" / "imaging" / "rank.py"
    kernel.write_text(kernel.read_text() + "\nfrom bfsdata.workspace import manifest  # upward\n")
    r = _lint(tmp_path)
    assert r.returncode != 0
    assert "bfsdata.imaging.rank -> bfsdata.workspace.manifest" in r.stdout
