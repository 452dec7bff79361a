"""``scripts/bootstrap`` and the Python it runs on: a .venv made by an older (or a removed) Python is
rebuilt, and an interpreter older than 3.11 is refused with what to install.

The script runs in a copy of the repository's shape (``scripts/bootstrap`` and a pyproject.toml)
with a stand-in ``PYTHON`` that records what it is asked, so nothing is downloaded: the stand-in
answers the version check as 3.11 and makes a venv whose ``python`` logs its pip calls.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

STAND_IN = """#!/bin/sh
# a Python 3.11 that only knows what scripts/bootstrap asks of it
case "$1" in
  --version) echo "Python 3.11.7" ;;
  -c) exit 0 ;;
  -m) [ "$2" = venv ] || exit 2
      mkdir -p "$3/bin"
      printf 'home = /stand-in\\nversion = 3.11.7\\n' > "$3/pyvenv.cfg"
      printf '#!/bin/sh\\n[ "$1" = -c ] && exit 0\\necho "$*" >> "%s/pip.log"\\n' "$PWD/$3" > "$3/bin/python"
      chmod +x "$3/bin/python" ;;
esac
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "bootstrap", tmp_path / "scripts" / "bootstrap")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    python = tmp_path / "python3.11"
    python.write_text(STAND_IN)
    python.chmod(0o755)
    return python


def _old_venv(tmp_path: Path, how: str) -> None:
    """A .venv left by Python 3.10: its interpreter still runs (a real 3.10 if this machine has
    one, else a script answering like one), or is gone (a dangling link)."""
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (tmp_path / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.10.12\n")
    (tmp_path / ".venv" / ".loist-installed").touch()  # installed once: only a rebuild installs again
    old = bin_dir / "python"
    real = shutil.which("python3.10")
    if how == "removed":
        old.symlink_to("/nonexistent/python3.10")
    elif real and subprocess.run([real, "-V"], capture_output=True).returncode == 0:
        old.symlink_to(real)
    else:
        old.write_text("#!/bin/sh\n[ \"$1\" = -c ] && exit 1\necho 'Python 3.10.12'\n")
        old.chmod(0o755)


@pytest.mark.parametrize("how", ["runs", "removed"])
def test_a_venv_of_an_older_python_is_rebuilt(tmp_path: Path, how: str) -> None:
    python = _project(tmp_path)
    _old_venv(tmp_path, how)
    done = subprocess.run([str(tmp_path / "scripts" / "bootstrap")], env={"PATH": "/usr/bin:/bin", "PYTHON": str(python)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "bootstrap: .venv was made by Python 3.10.12; rebuilding it with Python 3.11.7" in done.stderr
    assert "version = 3.11.7" in (tmp_path / ".venv" / "pyvenv.cfg").read_text()
    pip = (tmp_path / ".venv" / "pip.log").read_text()
    assert "-m pip install -q -e .[dev]" in pip
    assert (tmp_path / ".venv" / ".loist-installed").is_file()

    again = subprocess.run([str(tmp_path / "scripts" / "bootstrap")], env={"PATH": "/usr/bin:/bin", "PYTHON": str(python)},
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "rebuilding" not in again.stderr  # a good venv is kept


def test_an_older_python_is_refused_with_what_to_install(tmp_path: Path) -> None:
    _project(tmp_path)
    old = tmp_path / "python3.10"
    old.write_text("#!/bin/sh\n[ \"$1\" = -c ] && exit 1\necho 'Python 3.10.12'\n")
    old.chmod(0o755)
    done = subprocess.run([str(tmp_path / "scripts" / "bootstrap")], env={"PATH": "/usr/bin:/bin", "PYTHON": str(old)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Loist needs Python 3.11 or newer" in done.stderr and "Python 3.10.12" in done.stderr
    assert "apt-get install python3.11 python3.11-venv" in done.stderr
    assert not (tmp_path / ".venv").exists()
