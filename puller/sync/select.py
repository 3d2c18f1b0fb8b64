"""What a sync entry selects, apart from the file's syntax: its tag regexes run by RE2 (time
linear in the tag, whatever the pattern), the newest versions of a tag list, and which part of
a sharded run an entry belongs to.

Why RE2: Python's ``re`` backtracks, so ``(\\d+\\.?)+`` against a 24-character tag a registry
lists takes half a second, twice that per character more; the registry, not the file's
author, chooses the tag. RE2 (``google-re2``) matches in time linear in the tag, and refuses
at compile time what it cannot run so: backreferences (``\\1``, ``(?P=name)``), lookaround
(``(?=``, ``(?!``, ``(?<=``, ``(?<!``), possessive repetition (``a++``) and ``\\Z`` (RE2
spells it ``\\z``). Its ``\\d``, ``\\w`` and ``\\s`` are ASCII, which is all a tag holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

from .semver import parse_version

__all__ = ["Regex", "compile_regex", "newest", "shard_name", "shard_of"]


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print each refused pattern on stderr
    return options


_OPTIONS = _options()


@dataclass(frozen=True, slots=True)
class Regex:
    """A regex RE2 runs; equal when written alike."""

    pattern: str
    _compiled: Any = field(compare=False, repr=False)

    def fullmatch(self, text: str) -> bool:
        """Whether the regex matches all of ``text``."""
        return self._compiled.fullmatch(text) is not None

    def __str__(self) -> str:
        return self.pattern


def compile_regex(pattern: str) -> Regex:
    """``pattern`` compiled by RE2; ``ValueError`` says why RE2 refuses it."""
    try:
        return Regex(pattern, re2.compile(pattern, _OPTIONS))
    except re2.error as e:
        said = e.args[0] if e.args else ""
        why = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
        raise ValueError(why or "refused by RE2") from None


def newest(tags: Iterable[str], count: int) -> list[str]:
    """The ``count`` tags of the highest versions among ``tags`` (tags that are no version
    are left out), highest last; of two tags of one version (``7.2``, ``7.2.0``) the one
    later in ASCII order counts as the higher."""
    ranked = sorted(
        (version.key, tag) for tag in tags if (version := parse_version(tag)) is not None
    )
    return [tag for _, tag in ranked[-count:]] if count > 0 else []


def shard_of(name: str, count: int) -> int:
    """Which of ``count`` shards (1 to ``count``) the repository ``name`` belongs to: a hash
    of the name (SHA-256), so the same on every run and every machine."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def shard_name(target: str, namespaces: Iterable[str]) -> str:
    """What an entry to the repository ``target`` is sharded by: its name, or the outermost of
    the ``namespaces``' targets it is or lies below (whose repositories the catalog names at run
    time: an entry below one may write, and delete, where the namespace writes, so both run in
    one part, under one lock)."""
    around = [n for n in namespaces if target == n or target.startswith(f"{n}/")]
    return min(around, key=len) if around else target
