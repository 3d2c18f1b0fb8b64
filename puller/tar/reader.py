"""Tar archives as streams, for ``pypull save`` and ``pypull load``: headers written and read
one member at a time, contents copied through in chunks, nothing held whole in memory.

Written here rather than with ``tarfile`` because an archive given to ``load`` may come from an
attacker, and ``tarfile`` reads a pax or GNU long-name header of any claimed size into memory,
and keeps every member's ``TarInfo`` of a stream. This reader bounds both: extended headers to
``MAX_EXTENDED`` bytes, members to ``MAX_MEMBERS``, and keeps nothing of a member once past it.
It never touches the disk: names are data, checked by ``clean_name``, never paths opened.

Pure (standard library and ``errors``); imports nothing else of ours.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import PullError
from ..text import shown

__all__ = [
    "MAX_EXTENDED",
    "MAX_MEMBERS",
    "MAX_NAME",
    "ArchiveError",
    "Member",
    "TarReader",
    "TarWriter",
]

BLOCK = 512
#: A pax header or GNU long name larger than this is no docker or OCI archive's: refused.
MAX_EXTENDED = 1 << 20
#: An image archive holds a few files per blob; a million members is no image archive.
MAX_MEMBERS = 1_000_000
CHUNK = 1 << 20
#: Longest member name or link target (Linux's PATH_MAX): the loader keeps every name it
#: reads, and a 1 MiB pax path per member (a few KiB of gzip each) held gigabytes.
MAX_NAME = 4096

REGULAR = "file"
DIRECTORY = "dir"
LINK = "link"  # a symbolic or hard link: another name for a member, to be resolved by name
_REGULAR_TYPES = (b"0", b"\0", b"7")
_LINK_TYPES = (b"1", b"2")


class ArchiveError(PullError):
    """An archive that is not a tar of an image, or that tries something (a path out of the
    archive, a header of gigabytes)."""


@dataclass(frozen=True, slots=True)
class Member:
    name: str  # clean: relative, no "..", no "." components, no trailing slash
    kind: str  # REGULAR, DIRECTORY or LINK
    size: int
    target: str  # a LINK's target, resolved against the archive's root and clean


def clean_name(name: str, where: str) -> str:
    """``name`` normalized, or ``ArchiveError`` for an absolute name, one with ``..``, or one
    longer than ``MAX_NAME``."""
    if len(name) > MAX_NAME:
        raise ArchiveError(f"{where}: a member name of {len(name)} characters, over {MAX_NAME}")
    if name.startswith("/") or "\0" in name:
        raise ArchiveError(f"{where}: member '{shown(name, 200)}' has an absolute name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{where}: member '{shown(name, 200)}' has '..' in its name")
    return "/".join(parts)


def _octal(field: bytes, what: str, where: str) -> int:
    if field[:1] and field[0] & 0x80:  # base-256, for sizes of 8 GiB and more
        if field[0] != 0x80:
            raise ArchiveError(f"{where}: a negative or oversized {what} in a tar header")
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" \0")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ArchiveError(f"{where}: not a tar archive (bad {what} field)") from None


def _pax(data: bytes, where: str) -> dict[str, str]:
    """The records of a pax extended header: ``"<len> key=value\\n"`` each."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ArchiveError(f"{where}: a malformed pax header") from None
        if space < 0 or length <= 0 or pos + length > len(data):
            raise ArchiveError(f"{where}: a malformed pax header")
        record = data[space + 1 : pos + length]
        key, eq, value = record.rstrip(b"\n").partition(b"=")
        if not eq:
            raise ArchiveError(f"{where}: a malformed pax header")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


class TarReader:
    """The members of a tar read from ``stream``, in order, each to be read (``read``) or
    passed over before the next; ``where`` names the archive in errors."""

    def __init__(self, stream: BinaryIO, where: str) -> None:
        self._stream = stream
        self.where = where
        self._left = 0  # data bytes of the current member not yet read
        self._pad = 0
        self.offset = 0  # bytes of the archive consumed

    def _read_exact(self, n: int) -> bytes:
        parts = []
        while n:
            chunk = self._stream.read(min(n, CHUNK))
            if not chunk:
                raise ArchiveError(f"{self.where}: the archive ends in the middle of a member")
            parts.append(chunk)
            n -= len(chunk)
            self.offset += len(chunk)
        return b"".join(parts)

    def read(self, n: int = CHUNK) -> bytes:
        """Up to ``n`` bytes of the current member; b"" at its end."""
        n = min(n, self._left)
        if n <= 0:
            return b""
        chunk = self._stream.read(n)
        if not chunk:
            raise ArchiveError(f"{self.where}: the archive ends in the middle of a member")
        self._left -= len(chunk)
        self.offset += len(chunk)
        return chunk

    def _finish_member(self) -> None:
        while self._left:
            self.read()
        if self._pad:
            self._read_exact(self._pad)
            self._pad = 0

    def _data(self, size: int, what: str) -> bytes:
        if size > MAX_EXTENDED:
            raise ArchiveError(
                f"{self.where}: a {what} of {size} bytes, over the {MAX_EXTENDED >> 10} KiB "
                "pypull reads"
            )
        data = self._read_exact(size)
        self._read_exact(-size % BLOCK)
        return data

    def members(self) -> Iterator[Member]:
        count = 0
        pax: dict[str, str] = {}
        long_name: str | None = None
        long_link: str | None = None
        while True:
            self._finish_member()
            header = self._stream.read(BLOCK)
            if len(header) < BLOCK and header:
                header += self._read_exact(BLOCK - len(header))
            self.offset += len(header)
            if not header or header == bytes(BLOCK):
                return  # the end (an archive cut at a member boundary reads as a short one)
            at = f"{self.where} at byte {self.offset - BLOCK}"
            stored = _octal(header[148:156], "checksum", at)
            summed = sum(header[:148]) + 8 * 0x20 + sum(header[156:])
            if stored != summed:
                raise ArchiveError(f"{at}: not a tar archive (bad header checksum)")
            count += 1
            if count > MAX_MEMBERS:
                raise ArchiveError(f"{self.where}: more than {MAX_MEMBERS} members")
            kind = header[156:157]
            size = _octal(header[124:136], "size", at)
            if kind in (b"x", b"g"):
                records = _pax(self._data(size, "pax header"), at)
                if kind == b"x":
                    pax = records
                continue
            if kind in (b"L", b"K"):
                text = self._data(size, "long name").split(b"\0", 1)[0]
                decoded = text.decode("utf-8", "surrogateescape")
                if kind == b"L":
                    long_name = decoded
                else:
                    long_link = decoded
                continue
            name = header[:100].split(b"\0", 1)[0]
            if header[257:262] == b"ustar" and header[345:500].strip(b"\0"):
                name = header[345:500].split(b"\0", 1)[0] + b"/" + name
            text_name = pax.get("path", long_name or name.decode("utf-8", "surrogateescape"))
            link = pax.get(
                "linkpath",
                long_link or header[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape"),
            )
            if "size" in pax:
                try:
                    size = int(pax["size"])
                except ValueError:
                    raise ArchiveError(f"{at}: a malformed pax size") from None
                if size < 0:  # a negative size would be "read" forever
                    raise ArchiveError(f"{at}: a malformed pax size")
            pax, long_name, long_link = {}, None, None
            clean = clean_name(text_name, self.where)
            self._left = size if kind not in (b"1", b"2", b"5") else 0
            self._pad = -self._left % BLOCK
            if kind in _REGULAR_TYPES:
                yield Member(clean, REGULAR, size, "")
            elif kind == b"5":
                yield Member(clean, DIRECTORY, 0, "")
            elif kind in _LINK_TYPES:
                # A symbolic link is relative to its own directory, a hard link to the root.
                base = posixpath.dirname(clean) if kind == b"2" else ""
                if len(link) > MAX_NAME:
                    raise ArchiveError(
                        f"{self.where}: link '{shown(clean, 200)}' has a target of "
                        f"{len(link)} characters, over {MAX_NAME}"
                    )
                if link.startswith("/"):
                    raise ArchiveError(
                        f"{self.where}: link '{shown(clean, 200)}' points at an absolute path"
                    )
                joined = posixpath.normpath(posixpath.join(base, link)) if link else ""
                if not link or joined == ".." or joined.startswith("../"):
                    raise ArchiveError(
                        f"{self.where}: link '{shown(clean, 200)}' points out of the archive"
                    )
                yield Member(clean, LINK, 0, joined)
            else:
                raise ArchiveError(
                    f"{self.where}: member '{shown(clean, 200)}' is a special file "
                    f"(type '{shown(kind.decode('latin-1'))}'), not part of an image archive"
                )


class TarWriter:
    """A tar written to ``out`` member by member (pax format, as docker writes it; every
    member owned by root with mtime 0, so that one content gives one archive)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.size = 0

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self.size += len(data)

    def directory(self, name: str) -> None:
        info = tarfile.TarInfo(name.rstrip("/") + "/")
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        self._write(info.tobuf(tarfile.PAX_FORMAT))

    def header(self, name: str, size: int) -> None:
        """A regular file's header; its ``size`` bytes go through ``data`` next, then ``end``."""
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        self._write(info.tobuf(tarfile.PAX_FORMAT))

    def data(self, chunk: bytes | memoryview) -> None:
        self._write(chunk)

    def end_member(self, size: int) -> None:
        self._write(bytes(-size % BLOCK))

    def file(self, name: str, content: bytes) -> None:
        self.header(name, len(content))
        self.data(content)
        self.end_member(len(content))

    def close(self) -> None:
        """The two zero blocks that end an archive."""
        self._write(bytes(2 * BLOCK))
