"""The README's first command on a stock machine: from a fresh clone, with PATH reduced to the
system's directories (no pyenv, no venv of the caller), so Debian's own externally managed
python3 is the one it meets. It makes .venv/ in the clone, installs pypull there and pulls.

Slow (a venv and a pip install): e2e. A clone holds what is committed, not the working tree."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _stock_environment(home: Path) -> dict[str, str]:
    """What a user's login gives a command under ``env -i``: the system PATH and a HOME. The
    HOME is new (no pypull or docker configuration of this machine's user is read), but pip is
    configured as the user's is: their pip.conf files and the PIP_* variables come along, as
    does their pip cache (only for speed)."""
    env = {"PATH": SYSTEM_PATH, "HOME": str(home)}
    real_home = Path.home()
    for conf in (".config/pip/pip.conf", ".pip/pip.conf"):
        if (real_home / conf).is_file():
            (home / conf).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(real_home / conf, home / conf)
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
    cache = Path(os.environ.get("XDG_CACHE_HOME") or real_home / ".cache") / "pip"
    env.setdefault("PIP_CACHE_DIR", str(cache))
    return env


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(tmp_path / "pypull")], check=True)
    return tmp_path / "pypull"


def test_the_first_command_pulls_with_the_system_python_from_a_fresh_clone(
    clone: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    run = subprocess.run(
        [
            "/usr/bin/env",
            "-i",
            *(f"{k}={v}" for k, v in _stock_environment(home).items()),
            "bash",
            "fixtures/demo.sh",
        ],
        cwd=clone,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    lines = out.splitlines()
    complete = [i for i, line in enumerate(lines) if line.endswith(": Pull complete")]
    exists = [i for i, line in enumerate(lines) if line.endswith(": Already exists")]
    assert (len(complete), len(exists)) == (8, 8), out
    assert max(complete) < min(exists), out
    # The venv is in the clone, made from the system's python3 (the first on the system PATH)...
    python3 = shutil.which("python3", path=SYSTEM_PATH)
    assert python3 is not None
    cfg = (clone / ".venv" / "pyvenv.cfg").read_text()
    assert f"home = {Path(python3).parent}" in cfg.splitlines(), cfg
    # ...and git-ignored: the run leaves the clone clean.
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True
    )
    assert status.stdout == ""
