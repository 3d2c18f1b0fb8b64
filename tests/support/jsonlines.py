"""The README's JSON schema, read from the README itself, and the check every ``--format json``
run of the test suite goes through.

``run_pypull`` (both of them: ``helpers`` and ``fakeregistry``) hands its argv and stdout to
``check_run``: when the run asked for JSON, every stdout line must be an object whose ``event``
the README's table lists for that command, with exactly the fields listed (those marked ``?``
may be absent), ``v`` 1, and a ``code`` from the README's list of codes (an ``error`` or
``problem`` line always has one; a record, when it failed or was deferred). ``CHECKED`` counts the
lines and runs checked; ``tests/conftest.py`` reports the count at the end of the session and
fails a session that made JSON runs but checked no line, so a check that stopped seeing the
runs cannot pass in silence.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

from puller.cli.main import COMMANDS as TABLE

README = Path(__file__).resolve().parents[2] / "README.md"

#: Lines checked, by command; ``runs``: the JSON runs seen.
CHECKED: Counter[str] = Counter()

#: The commands, as ``pypull`` knows them (a first word that is none of them means ``pull``).
COMMANDS = list(TABLE)

_FIELD = re.compile(r"`([A-Za-z_][\w-]*)(\??)`")


@dataclass(frozen=True)
class Shape:
    required: frozenset[str]
    optional: frozenset[str]


@dataclass(frozen=True)
class Schema:
    #: (command, event) -> its fields
    events: dict[tuple[str, str], Shape]
    codes: frozenset[str]


def _table(text: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first table after ``heading``, header and rule left out."""
    after = text.split(f"\n{heading}\n", 1)[1]
    rows = []
    started = False
    for line in after.splitlines():
        if line.startswith("|"):
            started = True
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif started:
            break
    return rows[2:]


@cache
def schema() -> Schema:
    """The schema the README documents (``### Every JSON line``, ``### Error codes``)."""
    text = README.read_text(encoding="utf-8")
    events: dict[tuple[str, str], Shape] = {}
    for commands, event, fields, _ in _table(text, "### Every JSON line"):
        names = _FIELD.findall(fields)
        shape = Shape(
            frozenset(n for n, opt in names if not opt), frozenset(n for n, opt in names if opt)
        )
        kind = event.strip("`")
        which = (
            COMMANDS if commands == "every command" else [c.strip() for c in commands.split(",")]
        )
        for command in which:
            assert command in COMMANDS, f"README's JSON table names no command {command!r}"
            events[(command, kind)] = shape
    codes = frozenset(row[0].strip("`") for row in _table(text, "### Error codes"))
    assert events and codes, "the README's JSON tables are missing"
    return Schema(events, codes)


def command_of(argv: Sequence[str]) -> str:
    """The command ``pypull ARGV`` runs: its first word when that is a command, else pull."""
    return argv[0] if argv and argv[0] in COMMANDS else "pull"


def wants_json(argv: Sequence[str]) -> bool:
    return (
        "--json" in argv
        or "--format=json" in argv
        or any(a == "--format" and b == "json" for a, b in pairwise(argv))
    )


def check_line(command: str, line: str) -> dict[str, Any]:
    """One stdout line of ``pypull COMMAND --format json``, checked against the README's table;
    an ``AssertionError`` says what is wrong with it."""
    where = f"pypull {command} --format json printed {line[:300]!r}"
    try:
        obj = json.loads(line)
    except ValueError:
        raise AssertionError(f"{where}: not JSON") from None
    assert isinstance(obj, dict), f"{where}: not an object"
    event = obj.get("event")
    assert obj.get("v") == 1, f'{where}: no "v": 1'
    known = schema()
    shape = known.events.get((command, str(event)))
    assert shape is not None, f"{where}: the README lists no event {event!r} for {command}"
    keys = set(obj) - {"event", "v"}
    missing = shape.required - keys
    unknown = keys - shape.required - shape.optional
    assert not missing, f"{where}: missing {sorted(missing)}"
    assert not unknown, f"{where}: fields the README does not list: {sorted(unknown)}"
    if event in ("error", "problem"):  # a failure: always a code
        code = obj.get("code")
        assert code in known.codes, f"{where}: code {code!r} is not in the README"
    elif "code" in obj:
        failed = obj.get("status") in ("failed", "deferred")
        if obj.get("status") == "delete-skipped":  # the code of the listing that failed, if one
            assert obj["code"] is None or obj["code"] in known.codes, f"{where}: unknown code"
        else:
            assert (obj["code"] in known.codes) if failed else obj["code"] is None, (
                f"{where}: a failed record needs a code from the README's list, others null"
            )
    return obj


def check_run(argv: Sequence[str], stdout: str) -> int:
    """Every stdout line of a ``--format json`` run checked (``inspect`` prints one document,
    not lines); how many."""
    argv = [str(a) for a in argv]
    if not wants_json(argv):
        return 0
    command = command_of(argv)
    if command == "inspect":
        return 0
    CHECKED["runs"] += 1
    lines = stdout.splitlines()
    for line in lines:
        check_line(command, line)
    CHECKED[command] += len(lines)
    return len(lines)
