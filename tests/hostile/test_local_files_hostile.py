"""Local files that never end or nest without end: ``pypull -f /dev/zero``, a
``$PYPULL_CONFIG`` of ``/dev/zero``, and a 5,000-deep TOML array in ``config.toml`` or a sync
file. Each ends within seconds on one ``Error:`` line that names the file, not with the memory
filled or a ``RecursionError`` reported as a bug."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.helpers import run_pypull

#: Seconds a run may take: the bounded read of 1 MiB and its refusal take a fraction of one.
DEADLINE = 10
#: Deeper than tomllib's recursion can go (it fails near 250 levels, at the default limit).
DEPTH = 5000


def one_error_line(stderr: str) -> str:
    """The one line ``pypull`` printed, checked to be an ``Error:`` and not a bug report."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr[:2000]
    assert lines[0].startswith("Error: "), lines[0]
    assert "bug in pypull" not in stderr
    return lines[0]


def test_an_image_list_that_never_ends_is_refused_after_1_mib() -> None:
    run = run_pypull("-f", "/dev/zero", "--store", "/nonexistent", timeout=DEADLINE)
    assert run.returncode == 1
    assert one_error_line(run.stderr) == (
        "Error: cannot read the image list /dev/zero: larger than 1 MiB: not a list of images"
    )


def test_a_config_file_that_never_ends_is_refused_after_1_mib() -> None:
    run = run_pypull("config", env={"PYPULL_CONFIG": "/dev/zero"}, timeout=DEADLINE)
    assert run.returncode == 1
    assert one_error_line(run.stderr) == (
        "Error: /dev/zero: larger than 1 MiB: not a configuration file"
    )


@pytest.mark.parametrize("nested", ["[" * DEPTH + "]" * DEPTH, "{a = " * DEPTH + "}" * DEPTH])
def test_a_config_file_nested_5000_deep_is_one_error_line(tmp_path: Path, nested: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f"timeout = {nested}\n")
    run = run_pypull("config", env={"PYPULL_CONFIG": str(config)}, timeout=DEADLINE)
    assert run.returncode == 1
    assert one_error_line(run.stderr) == (
        f"Error: {config}: invalid TOML: arrays or tables nested too deeply"
    )


def test_a_sync_file_nested_5000_deep_is_one_error_line(tmp_path: Path) -> None:
    sync = tmp_path / "sync.toml"
    nested = "[" * DEPTH + "]" * DEPTH
    sync.write_text(f'[[sync]]\nsource = "redis"\ntarget = "localhost:1/x"\nplatforms = {nested}\n')
    run = run_pypull("sync", sync, "--store", tmp_path / "store", timeout=DEADLINE)
    assert run.returncode == 1
    line = one_error_line(run.stderr)
    assert line.startswith(f"Error: {sync}:"), line
    assert line.endswith(": invalid TOML: arrays or tables nested too deeply"), line
