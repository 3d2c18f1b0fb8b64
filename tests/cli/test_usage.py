"""The command line as a user meets it before any request: usage errors exit 2 with the
command's usage, a malformed reference is one line, ``--help`` explains, ``python -m puller``
is the same command. Nothing here needs a registry."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.helpers import run_pypull


@pytest.mark.parametrize("image", ["redis:7", "redis@sha256:" + "a" * 64])
def test_all_tags_with_a_tag_or_digest_is_a_usage_error(image: str, store: Path) -> None:
    run = run_pypull("--store", store, "-a", image)
    assert run.returncode == 2
    assert "a tag can't be used with --all-tags/-a" in run.stderr
    assert not store.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--all-platforms", "--platform", "linux/amd64", "redis"], "leave out --platform"),
        (["-q", "--format", "json", "redis"], "cannot be combined"),
        (["--format", "yaml", "redis"], "invalid choice"),
    ],
)
def test_conflicting_options_are_usage_errors(args: list[str], message: str, store: Path) -> None:
    run = run_pypull("--store", store, *args)
    assert run.returncode == 2
    assert message in run.stderr and "usage:" in run.stderr


def test_help_shows_each_new_option_with_an_example() -> None:
    run = run_pypull("pull", "--help")
    assert run.returncode == 0
    for option in ("-f FILE", "--all-tags", "--all-platforms", "--format {text,json}"):
        assert option in run.stdout
    for example in (
        "pypull -f images.txt",
        "pypull -a ",
        "pypull --all-platforms ",
        "--format json",
    ):
        assert example in run.stdout.split("examples:")[1]


def test_invalid_reference_is_a_one_line_error(store: Path) -> None:
    run = run_pypull("--store", store, "Redis:latest")
    assert run.returncode == 1
    assert run.stderr.startswith("Error: invalid reference 'Redis:latest': ")
    assert "lowercase" in run.stderr
    assert len(run.stderr.splitlines()) == 1
    assert not store.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--platform", "linux", "redis"],
        ["-j", "0", "redis"],
        ["--bogus", "redis"],
        ["pull"],
        ["--mirror", "http://alice:secret@127.0.0.1:5000", "redis"],
        ["--mirror-only", "redis"],
        ["--creds", "u:p", "127.0.0.1:1/a", "127.0.0.1:2/b"],
    ],
    ids=[
        "bad-platform",
        "zero-concurrency",
        "unknown-option",
        "no-image",
        "mirror-url-with-credentials",
        "mirror-only-without-mirror",
        "creds-for-two-registries",
    ],
)
def test_usage_errors_exit_2(args: list[str], store: Path) -> None:
    run = run_pypull("--store", store, *args) if args != ["pull"] else run_pypull("pull")
    assert run.returncode == 2
    assert "usage:" in run.stderr
    assert "secret" not in run.stderr
    assert not store.exists()


def test_help_explains_the_commands() -> None:
    run = run_pypull("--help")
    assert run.returncode == 0
    assert "pypull images" in run.stdout and "--help" in run.stdout
    pull_help = run_pypull("pull", "--help").stdout
    for option in ("--mirror", "--platform", "--store", "-j", "-q", "exit status"):
        assert option in pull_help


def test_python_m_puller_is_the_same_command() -> None:
    console = subprocess.run(["pypull", "--version"], capture_output=True, text=True)
    module = run_pypull("--version")
    assert console.returncode == module.returncode == 0
    assert console.stdout == module.stdout and module.stdout.startswith("pypull ")


def test_the_version_pypull_shows_is_pyproject_s() -> None:
    import puller

    tomllib = pytest.importorskip("tomllib")

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert puller.__version__ == version
    assert run_pypull("--version").stdout == f"pypull {version}\n"
