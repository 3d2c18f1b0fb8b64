"""The command line as a user meets it before any request: usage errors exit 2 with the
command's usage, a malformed reference is one line, ``--help`` explains, ``python -m puller``
is the same command. Nothing here needs a registry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.images import redis
from fixtures.registry import Registry
from puller.cli.main import COMMANDS
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
    # The console script installed beside the interpreter running the tests (.venv/bin/pypull
    # under `bash fixtures/test.sh`), not whichever pypull is first on PATH.
    script = Path(sys.executable).parent / "pypull"
    console = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    module = run_pypull("--version")
    assert console.returncode == module.returncode == 0
    assert console.stdout == module.stdout and module.stdout.startswith("pypull ")


@pytest.mark.parametrize(
    ("shard", "message"),
    [
        ("0/2", "argument --shard: 0/2: I runs from 1 to N"),
        ("3/2", "argument --shard: 3/2: I runs from 1 to N"),
        ("1/0", "argument --shard: 1/0: I runs from 1 to N"),
        ("2", "argument --shard: '2' is not I/N, such as 1/3"),
        ("a/b", "is not I/N"),
        ("-1/2", "is not I/N"),
        ("\u0661/2", "is not I/N"),  # an Arabic-Indic one
    ],
)
def test_a_shard_that_is_not_i_of_n_is_a_usage_error(
    shard: str, message: str, tmp_path: Path
) -> None:
    run = run_pypull("sync", f"--shard={shard}", tmp_path / "sync.toml")
    assert run.returncode == 2
    assert message in run.stderr and "usage:" in run.stderr


def test_a_shard_splits_a_sync_file_not_images_under_a_prefix() -> None:
    run = run_pypull("sync", "--shard", "1/2", "--to", "r.example/mirror", "redis:7")
    assert run.returncode == 2
    assert "--shard splits a sync FILE's entries: leave it out with --to" in run.stderr


def test_the_version_pypull_shows_is_pyproject_s() -> None:
    import puller

    tomllib = pytest.importorskip("tomllib")

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert puller.__version__ == version
    assert run_pypull("--version").stdout == f"pypull {version}\n"


# -- leaving ---------------------------------------------------------------------------------------


def test_a_stdout_closed_from_the_start_is_no_crash_at_the_end() -> None:
    # `pypull --version >&-`: Python starts with sys.stdout None; the end must not trip on it.
    run = subprocess.run(
        [sys.executable, "-m", "puller", "--version"],
        capture_output=False,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: os.close(1),
        timeout=60,
    )
    assert (run.returncode, run.stderr) == (0, b"")


def test_a_profiler_run_of_pypull_still_writes_its_profile(tmp_path: Path) -> None:
    # The quick exit (no interpreter teardown) is not taken under a profiler or tracer.
    out = tmp_path / "pypull.prof"
    run = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "puller", "--version"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert out.stat().st_size > 0


def test_a_pull_with_stdout_closed_pulls(registry: Registry, store: Path) -> None:
    # `pypull IMAGE >&-`: the first socket would take descriptor 1, and uvloop aborts the
    # process when it closes a descriptor of 2 or below (exit status 134 before).
    name = f"{registry.host}/{redis().reference}"
    run = subprocess.run(
        [sys.executable, "-m", "puller", "--store", str(store), name],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: os.close(1),
        timeout=120,
    )
    assert (run.returncode, run.stderr) == (0, b"")
    assert run_pypull("verify", "--store", store).returncode == 0


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_fits_an_80_column_terminal(command: str | None) -> None:
    # Prose is filled to the width; only indented lines (examples, a sync file) are as written.
    argv = [sys.executable, "-m", "puller", *([command] if command else []), "--help"]
    run = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"}, timeout=60
    )
    assert run.returncode == 0, run.stderr
    prose = [line for line in run.stdout.splitlines() if not line[:1].isspace()]
    assert [line for line in prose if len(line) > 80] == []
    assert [line for line in prose if line[-2:-1].isalpha() and line.endswith("-")] == []
