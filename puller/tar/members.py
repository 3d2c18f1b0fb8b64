"""A tar's entries as an image archive's members (``pypull load``): names that are data, never
paths on this machine, so every one is relative and clean (``..`` and a leading ``/`` are
refused, not resolved), and links are names of other members, resolved against the archive's
root. Regular files, directories and links only: a device or a FIFO is no part of an image
archive.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from ..text import shown
from .errors import TarError
from .reader import DIRECTORY, HARD_LINK, REGULAR, SYMLINK, Policy, Source, entries

__all__ = ["DIR", "FILE", "LINK", "MAX_NAME", "Member", "clean_name", "members"]

#: Longest member name or link target, in bytes (Linux's PATH_MAX): the loader keeps every
#: name it reads, and a 1 MiB PAX path per member (a few KiB of gzip each) held gigabytes.
MAX_NAME = 4096

FILE = "file"
DIR = "dir"
LINK = "link"  # a symbolic or hard link: another name for a member, to be resolved by name


@dataclass(frozen=True, slots=True)
class Member:
    name: str  # clean: relative, no "..", no "." components, no trailing slash
    kind: str  # FILE, DIR or LINK
    size: int
    target: str  # a LINK's target, resolved against the archive's root and clean


def clean_name(name: str, where: str) -> str:
    """``name`` normalized, or ``TarError`` for an absolute name, one with ``..``, or one
    longer than ``MAX_NAME`` bytes."""
    length = len(name.encode("utf-8", "surrogateescape"))
    if length > MAX_NAME:
        raise TarError(f"{where}: a member name of {length} bytes, over {MAX_NAME}")
    if name.startswith("/") or "\0" in name:
        raise TarError(f"{where}: member '{shown(name, 200)}' has an absolute name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise TarError(f"{where}: member '{shown(name, 200)}' has '..' in its name")
    return "/".join(parts)


def members(source: Source, where: str, policy: Policy) -> Iterator[Member]:
    """The members of the archive ``source`` holds; a member's ``size`` bytes are read through
    ``source.chunks`` before the next (or skipped)."""
    for entry in entries(source, where, policy):
        clean = clean_name(entry.name, where)
        if entry.kind in REGULAR:
            yield Member(clean, FILE, entry.size, "")
        elif entry.kind == DIRECTORY:
            yield Member(clean, DIR, 0, "")
        elif entry.kind in (HARD_LINK, SYMLINK):
            yield Member(clean, LINK, 0, _target(clean, entry.linkname, entry.kind, where))
        else:
            raise TarError(
                f"{where}: member '{shown(clean, 200)}' is a special file "
                f"(type '{shown(entry.kind.decode('latin-1'))}'), not part of an image archive"
            )


def _target(name: str, link: str, kind: bytes, where: str) -> str:
    """A link's target as a member name: a symbolic link is relative to its own directory, a
    hard link to the root."""
    base = posixpath.dirname(name) if kind == SYMLINK else ""
    length = len(link.encode("utf-8", "surrogateescape"))
    if length > MAX_NAME:
        raise TarError(
            f"{where}: link '{shown(name, 200)}' has a target of {length} bytes, over {MAX_NAME}"
        )
    if link.startswith("/"):
        raise TarError(f"{where}: link '{shown(name, 200)}' points at an absolute path")
    joined = posixpath.normpath(posixpath.join(base, link)) if link else ""
    if not link or joined == ".." or joined.startswith("../"):
        raise TarError(f"{where}: link '{shown(name, 200)}' points out of the archive")
    return joined
