"""What a release holds: the sdist and the wheel ``python -m build`` makes from this checkout, and
the wheel installed into a clean venv. Slow-ish (an isolated build, a venv, pip): e2e."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The sdist and the wheel, and what the build printed."""
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (sdist,) = out.glob(f"pypull-{VERSION}.tar.gz")
    (wheel,) = out.glob(f"pypull-{VERSION}-py3-none-any.whl")
    return sdist, wheel, build.stdout + build.stderr


def _package_files() -> set[str]:
    """The package's files as git knows them: every module and py.typed."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "puller"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "puller/py.typed" in listed
    return {name for name in listed if name.endswith((".py", "py.typed"))}


def test_the_build_warns_of_nothing_deprecated(dist: tuple[Path, Path, str]) -> None:
    output = dist[2]
    assert "deprecat" not in output.lower(), output


def test_the_wheel_holds_the_package_its_types_and_the_license_only(
    dist: tuple[Path, Path, str],
) -> None:
    with zipfile.ZipFile(dist[1]) as whl:
        names = set(whl.namelist())
        info = f"pypull-{VERSION}.dist-info/"
        metadata = whl.read(info + "METADATA").decode()
        license_text = whl.read(info + "licenses/LICENSE").decode()
    assert {n for n in names if n.startswith("puller/")} == _package_files()
    assert names - _package_files() == {
        info + "METADATA",
        info + "WHEEL",
        info + "RECORD",
        info + "entry_points.txt",
        info + "top_level.txt",
        info + "licenses/LICENSE",
    }
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert "License-File: LICENSE" in metadata.splitlines()
    assert license_text == (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text


def test_the_sdist_holds_the_sources_and_the_license_and_no_tests(
    dist: tuple[Path, Path, str],
) -> None:
    with tarfile.open(dist[0]) as sdist:
        top = f"pypull-{VERSION}/"
        members = sdist.getmembers()
        files = {m.name.removeprefix(top) for m in members if m.isfile()}
        license_file = sdist.extractfile(top + "LICENSE")
        assert license_file is not None
        license_text = license_file.read().decode()
    assert all(m.name.startswith(top) or m.name == top.rstrip("/") for m in members)
    assert license_text == (ROOT / "LICENSE").read_text()
    assert {f for f in files if f.startswith("puller/")} == _package_files()
    # No tests (they need fixtures/ and the real tools): none half-shipped to fail collection.
    rest = {f for f in files if not f.startswith(("puller/", "pypull.egg-info/"))}
    assert rest == {
        "LICENSE",
        "MANIFEST.in",
        "PKG-INFO",
        "README.md",
        "pyproject.toml",
        "setup.cfg",
    }
    assert not any(PurePosixPath(f).name.startswith("test") for f in files)
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)


def test_the_wheel_installs_into_a_clean_venv_and_runs(
    dist: tuple[Path, Path, str], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(dist[1])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    # Run from elsewhere than the checkout, so that nothing is imported from its puller/.
    version = subprocess.run(
        [str(venv / "bin" / "pypull"), "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert (version.returncode, version.stdout, version.stderr) == (0, f"pypull {VERSION}\n", "")
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import puller; print(puller.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv)
