"""One convention for scripts, before any registry: a mistyped command is refused at once, a
command's usage error shows that command's usage, every command that prints data takes
``--format json`` and ``--json``, and the check of JSON lines (``tests/support/jsonlines``) is
itself checked: it reads the README's tables, refuses what they do not list, and sees the runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from puller.cli.main import mistyped_command
from puller.errors import CODES
from puller.store.layout import Store
from tests.support import jsonlines
from tests.support.helpers import run_pypull

#: The commands that print data, each with what --format json takes there.
DATA_COMMANDS = ("pull", "images", "tags", "copy", "push", "sync", "prune", "verify", "load", "rmi")


def test_a_mistyped_command_is_refused_at_once_with_the_command_it_resembles() -> None:
    run = run_pypull("imags", timeout=10)  # nothing is asked of Docker Hub: no time to wait
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr == (
        'Error: unknown command "imags" (did you mean "images"? to pull an image of that name: '
        "pypull pull imags)\n"
    )


@pytest.mark.parametrize(
    ("word", "command"),
    [
        ("imags", "images"),
        ("imgaes", "images"),
        ("pul", "pull"),
        ("syncc", "sync"),
        ("invpect", "inspect"),
        ("redis", None),
        ("alpine", None),
        ("library/imags", None),
        ("imags:1", None),
        ("imags@sha256", None),
        ("registry.local", None),
        ("--format", None),
    ],
)
def test_only_a_word_within_two_edits_of_a_command_and_no_image_syntax_is_a_typo(
    word: str, command: str | None
) -> None:
    assert mistyped_command(word) == command


def test_pull_of_a_name_like_a_command_is_still_possible(store: Path) -> None:
    run = run_pypull("pull", "--store", store, "--format", "json", "Imags", timeout=30)
    assert run.returncode == 1  # a pull was attempted: the reference is refused, not the command
    assert json.loads(run.stdout)["code"] == "invalid-reference"


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["images", "--bogus"], "images"),
        (["tags", "redis:7"], "tags"),
        (["sync"], "sync"),
        (["copy", "-a", "a/b:1", "c/d"], "copy"),
        (["--bogus", "redis"], "pull"),
        (["verify", "--format", "yaml"], "verify"),
    ],
)
def test_a_usage_error_prints_the_usage_of_its_command(args: list[str], command: str) -> None:
    run = run_pypull(*args, timeout=30)
    assert run.returncode == 2
    assert run.stderr.startswith(f"usage: pypull {command} "), run.stderr
    assert f"pypull {command}: error: " in run.stderr


@pytest.mark.parametrize("command", DATA_COMMANDS)
def test_every_command_that_prints_data_takes_format_json_and_json(command: str) -> None:
    run = run_pypull(command, "--help")
    assert run.returncode == 0
    assert re.search(r"--format \{(text|table),json\}", run.stdout), run.stdout
    assert "--json " in run.stdout


def test_jobs_is_j_everywhere_and_pull_keeps_its_long_name() -> None:
    for command in ("pull", "copy", "push", "sync"):
        assert "-j N, --jobs N" in run_pypull(command, "--help").stdout
    assert "--max-concurrent-downloads N" in run_pypull("pull", "--help").stdout
    run = run_pypull("pull", "--jobs", "0", "redis")
    assert run.returncode == 2 and "0 is not at least 1" in run.stderr


def test_the_json_of_the_store_commands_follows_the_convention(store: Path) -> None:
    before = jsonlines.CHECKED["verify"] + jsonlines.CHECKED["rmi"]
    rmi = run_pypull("rmi", "--store", store, "--json", "redis:7")
    assert rmi.returncode == 1
    assert rmi.stderr == "Error: No such image: redis:7\n"
    assert json.loads(rmi.stdout) == {
        "event": "error",
        "v": 1,
        "code": "not-found",
        "reference": "redis:7",
        "message": "No such image: redis:7",
    }
    missing = run_pypull("verify", "--store", store, "--format", "json")
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["code"] == "storage"
    Store(store).ensure_layout()
    verify = run_pypull("verify", "--store", store, "--format", "json")
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout) == {
        "event": "summary",
        "v": 1,
        "blobs": 0,
        "images": 0,
        "partials": 0,
        "problems": 0,
    }
    assert jsonlines.CHECKED["verify"] + jsonlines.CHECKED["rmi"] == before + 3  # each seen


# -- the check of every JSON line ------------------------------------------------------------------


def test_the_readme_lists_every_code_the_program_gives() -> None:
    assert jsonlines.schema().codes == set(CODES)


def test_the_readme_table_names_an_event_for_every_command_that_prints_data() -> None:
    listed = {command for command, _ in jsonlines.schema().events}
    assert set(DATA_COMMANDS) <= listed


@pytest.mark.parametrize(
    ("command", "line", "wrong"),
    [
        ("pull", "not json", "not JSON"),
        ("pull", "[1]", "not an object"),
        ("pull", '{"event": "done", "reference": "r", "digest": "d"}', 'no "v": 1'),
        ("pull", '{"event": "party", "v": 1}', "no event 'party'"),
        ("tags", '{"event": "tags", "v": 1, "tags": []}', "missing ['repository']"),
        ("tags", '{"event": "tags", "v": 1, "repository": "r", "tags": [], "x": 1}', "['x']"),
        ("pull", '{"event": "error", "v": 1, "code": "oops", "message": "m"}', "code 'oops'"),
        ("verify", '{"event": "problem", "v": 1, "path": "p", "message": "m"}', "['code']"),
        (
            "verify",
            '{"event": "problem", "v": 1, "code": "oops", "path": "p", "message": "m"}',
            "code 'oops'",
        ),
        ("rmi", '{"event": "summary", "v": 1}', "no event 'summary' for rmi"),
    ],
)
def test_the_check_refuses_a_line_the_readme_does_not_describe(
    command: str, line: str, wrong: str
) -> None:
    with pytest.raises(AssertionError, match=re.escape(wrong)):
        jsonlines.check_line(command, line)


def test_a_failed_record_needs_a_code_and_others_none() -> None:
    record = {
        "event": "image",
        "v": 1,
        "source": "a",
        "target": "b",
        "digest": None,
        "status": "failed",
        "blobs": {},
        "bytes_uploaded": 0,
        "error": "no",
        "code": None,
    }
    with pytest.raises(AssertionError, match="needs a code"):
        jsonlines.check_line("copy", json.dumps(record))
    jsonlines.check_line("copy", json.dumps(record | {"code": "not-found"}))
    jsonlines.check_line("sync", json.dumps(record | {"status": "copied", "error": None}))


def test_run_pypull_checks_each_line_of_a_json_run(store: Path) -> None:
    before = jsonlines.CHECKED["pull"]
    run = run_pypull("--store", store, "--json", "UPPER/Case:1", "alsoBAD")
    assert run.returncode == 1
    assert jsonlines.CHECKED["pull"] == before + 1  # the first reference stops the run
    assert jsonlines.check_run(["pull", "--format", "json"], run.stdout + run.stdout) == 2
    assert jsonlines.check_run(["pull"], "not json") == 0  # a text run is not JSON
