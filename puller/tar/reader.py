"""The one tar reader of pypull: a layer (``unpack``, ``export``) and an image archive (``load``)
are read here, one header at a time, with the bounds on hostile input passed in by the caller
(``Policy``).

Written here rather than with ``tarfile`` because every tar pypull reads may come from an
attacker, and ``tarfile`` reads a PAX or GNU long-name header of any claimed size into memory,
and keeps every member's ``TarInfo`` of a stream. This reader holds one entry's extended headers
at a time, at most ``Policy.max_meta`` bytes of them, and nothing of an entry once past it. It
never touches the disk: names are data, and what they mean is the caller's (an archive refuses
``..``, an unpacker resolves names inside its directory).

Where pypull once had two readers with different rules, the stricter one is kept (each pinned
by a test in ``tests/tar/test_reader.py``):

* The header checksum is the unsigned sum POSIX defines. A signed sum (historic Sun tar; GNU
  tar and Go still accept one) is refused: no tool that writes images writes one.
* A number in base-256 starts with 0x80 (positive) or 0xFF (negative); only a time may be
  negative. An octal number may not be negative either. Every numeric field is read and
  checked, also the ones a caller does not use: ids and device numbers are 32-bit.
* PAX headers that follow one another add up to one entry's records, bounded together; global
  PAX records apply to every later entry, at most ``Policy.max_global_records`` of them. A PAX
  record ends in a newline, and only NULs may follow the last one.
* The name prefix is read only under the POSIX magic ``ustar\\0``: a GNU header keeps times
  there.
* Types 1 to 6 (links, devices, directories, FIFOs) are a header only, whatever their size
  field says, as Go's ``archive/tar`` (and so containerd and umoci) read them.
* Sparse files, unknown types, and a NUL in a link target or an xattr name are refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from ..text import shown
from .errors import TarError, Truncated

__all__ = [
    "BLOCK",
    "CHUNK",
    "DIRECTORY",
    "HARD_LINK",
    "MAX_META",
    "REGULAR",
    "SYMLINK",
    "Entry",
    "Policy",
    "Source",
    "StreamSource",
    "entries",
]

BLOCK = 512
#: Bytes read at a time from a stream.
CHUNK = 1 << 20
#: A PAX header or GNU long name/link larger than this is refused, never read into memory.
MAX_META = 1 << 20
#: Records of global PAX headers (git archive writes one): each applies to every later entry.
MAX_GLOBAL_RECORDS = 64

REGULAR = (b"0", b"\0", b"7")
HARD_LINK = b"1"
SYMLINK = b"2"
DIRECTORY = b"5"
#: Every type read: regular files, links, character and block devices, directories, FIFOs.
KNOWN = (*REGULAR, HARD_LINK, SYMLINK, b"3", b"4", DIRECTORY, b"6")
_EXTENDED = (b"x", b"g", b"L", b"K")
_ZERO = bytes(BLOCK)
_USTAR = b"ustar\0"
#: Times beyond what nanoseconds in 64 bits hold are clamped (the year 2262); ids and device
#: numbers are 32 bits, and (uid_t)-1 means "unchanged" to chown.
_MAX_NS = (1 << 63) - 1
_MAX_ID = (1 << 32) - 1
_XATTR_PREFIXES = ("SCHILY.xattr.", "LIBARCHIVE.xattr.")


@dataclass(frozen=True, slots=True)
class Policy:
    """What a caller lets a tar make pypull hold: one entry's extended headers (PAX records, a
    long name or link) and the global PAX records, in bytes and records; and, for a tar whose
    every header the caller keeps something of, the headers read (extended ones included)."""

    max_meta: int = MAX_META
    max_global_records: int = MAX_GLOBAL_RECORDS
    max_headers: int | None = None


@dataclass(slots=True)
class Entry:
    """One entry, its extended headers applied. ``size`` is what follows of content: 0 but for
    a regular file. The name and link target are as written (not cleaned)."""

    name: str
    kind: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: str
    devmajor: int
    devminor: int
    xattrs: dict[str, bytes] = field(default_factory=dict)


class Source(Protocol):
    """A tar's bytes, as the reader and an entry's consumer take them."""

    #: Bytes read so far.
    offset: int

    def read(self, n: int) -> bytes:
        """``n`` bytes (a header); fewer only at the end."""
        ...

    def chunks(self, n: int) -> Iterator[bytes | memoryview]:
        """The next ``n`` bytes as they come; ``Truncated`` if the tar ends first."""
        ...


class StreamSource:
    """A tar read from a file or a pipe, ``CHUNK`` bytes at a time; ``where`` names it."""

    def __init__(self, stream: BinaryIO, where: str) -> None:
        self._stream = stream
        self._where = where
        self.offset = 0

    def read(self, n: int) -> bytes:
        parts = []
        got = 0
        while got < n:
            chunk = self._stream.read(n - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        self.offset += got
        return b"".join(parts)

    def chunks(self, n: int) -> Iterator[bytes]:
        while n:
            chunk = self._stream.read(min(n, CHUNK))
            if not chunk:
                raise Truncated(f"{self._where}: the archive ends in the middle of a member")
            n -= len(chunk)
            self.offset += len(chunk)
            yield chunk


def entries(source: Source, where: str, policy: Policy) -> Iterator[Entry]:
    """The entries of the tar ``source`` holds, in order; ``where`` names it in errors. The
    consumer reads (or not) ``size`` bytes of each through ``source.chunks`` before asking for
    the next: what it leaves is skipped. Stops at the first zero block or at the end of the
    bytes (a tar without its end blocks is accepted, as Go's reader does)."""
    return _Reader(source, where, policy).entries()


class _Reader:
    def __init__(self, source: Source, where: str, policy: Policy) -> None:
        self._source = source
        self._where = where
        self._policy = policy
        self._header_at = 0
        self._headers = 0
        self._global: dict[str, bytes] = {}
        self._pax: dict[str, bytes] = {}
        self._long_name: str | None = None
        self._long_link: str | None = None

    def _at(self) -> str:
        return f"{self._where} at byte {self._header_at}"

    def entries(self) -> Iterator[Entry]:
        src = self._source
        while True:
            self._header_at = src.offset
            block = src.read(BLOCK)
            if len(block) < BLOCK:
                if block:
                    raise Truncated(f"{self._where}: the archive ends in the middle of a member")
                return
            if block == _ZERO:
                return
            entry = self._header(block)
            if entry is None:
                continue
            before = src.offset
            yield entry
            left = entry.size - (src.offset - before) + -entry.size % BLOCK
            if left:  # what the consumer left of the content, and the padding
                for _ in src.chunks(left):
                    pass

    def _header(self, block: bytes) -> Entry | None:
        """The entry ``block`` begins, or None for an extended header (read and kept)."""
        try:
            stored = self._number(block[148:156], "checksum")
        except TarError:
            stored = -1
        if stored != sum(block[:148]) + 8 * 0x20 + sum(block[156:]):
            raise TarError(f"{self._at()}: not a tar archive (bad header checksum)")
        limit = self._policy.max_headers
        if limit is not None:
            self._headers += 1
            if self._headers > limit:
                raise TarError(f"{self._where}: more than {limit} members")
        kind = block[156:157]
        size = self._number(block[124:136], "size")
        if kind in _EXTENDED:
            self._extended(kind, size)
            return None
        records = {**self._global, **self._pax} if self._global else self._pax
        entry = Entry(
            name=self._name(block, records),
            kind=kind,
            mode=self._number(block[100:108], "mode") & 0o7777,
            uid=self._number(block[108:116], "uid"),
            gid=self._number(block[116:124], "gid"),
            size=size,
            mtime_ns=self._number(block[136:148], "mtime", signed=True) * 1_000_000_000,
            linkname=_text(block[157:257]) if self._long_link is None else self._long_link,
            devmajor=self._number(block[329:337], "devmajor"),
            devminor=self._number(block[337:345], "devminor"),
        )
        if records:
            self._apply(entry, records)
        self._pax, self._long_name, self._long_link = {}, None, None
        self._check(entry)
        return entry

    def _number(self, raw: bytes, what: str, signed: bool = False) -> int:
        """A numeric field: octal digits, or GNU base-256 (0x80 then the number; 0xFF then
        the rest of a negative one, for a ``signed`` field only)."""
        if raw and raw[0] & 0x80:
            if raw[0] == 0x80:
                return int.from_bytes(raw[1:], "big")
            if raw[0] == 0xFF and signed:
                return int.from_bytes(raw, "big", signed=True)
            raise TarError(f"{self._at()}: a negative or oversized {what} in a tar header")
        text = raw.split(b"\0", 1)[0].strip(b" \0")
        if not text:
            return 0
        try:
            value = int(text, 8)
        except ValueError:
            raise TarError(f"{self._at()}: not a tar archive (bad {what} field)") from None
        if value < 0 and not signed:
            raise TarError(f"{self._at()}: a negative or oversized {what} in a tar header")
        return value

    def _extended(self, kind: bytes, size: int) -> None:
        """A PAX header (``x`` for the next entry, ``g`` for every later one) or a GNU long
        name (``L``) or link (``K``), read whole: it is at most ``max_meta`` bytes."""
        limit = self._policy.max_meta
        if size > limit:
            raise TarError(
                f"{self._at()}: an extended tar header of {size} bytes, over the "
                f"{limit >> 20} MiB pypull reads"
            )
        data = b"".join(bytes(c) for c in self._source.chunks(size + -size % BLOCK))[:size]
        if kind == b"x":
            # Several may come one after another: together they are one entry's header.
            self._pax.update(_pax(data, self._at()))
            if _meta_size(self._pax) > limit:
                raise TarError(f"{self._at()}: PAX headers of one entry over {limit >> 20} MiB")
        elif kind == b"g":
            # Merged into every later entry's records: few, or each entry costs them all.
            self._global.update(_pax(data, self._at()))
            most = self._policy.max_global_records
            if _meta_size(self._global) > limit or len(self._global) > most:
                raise TarError(
                    f"{self._at()}: global PAX headers over {limit >> 20} MiB or {most} records"
                )
        elif kind == b"L":
            self._long_name = _text(data)
        else:
            self._long_link = _text(data)

    def _name(self, block: bytes, records: dict[str, bytes]) -> str:
        """The entry's name: a PAX path, else a GNU long name, else the header's (with the
        POSIX prefix)."""
        if "path" in records:
            return records["path"].decode("utf-8", "surrogateescape")
        if self._long_name is not None:
            return self._long_name
        name = _text(block[0:100])
        if block[257:263] == _USTAR:
            prefix = _text(block[345:500])
            if prefix:
                return f"{prefix}/{name}"
        return name

    def _apply(self, entry: Entry, records: dict[str, bytes]) -> None:
        """What PAX records say of an entry: link target, size, ids, time, xattrs."""
        if any(k.startswith("GNU.sparse.") for k in records):
            raise TarError(f"{self._at()}: a sparse file; pypull does not read sparse tar entries")
        if "linkpath" in records:
            entry.linkname = records["linkpath"].decode("utf-8", "surrogateescape")
        for key in ("size", "uid", "gid", "mtime"):
            if key not in records:
                continue
            try:
                number = _pax_time(records[key]) if key == "mtime" else int(records[key])
            except ValueError:
                raise TarError(f"{self._at()}: a malformed PAX {key}") from None
            if key == "size" and number < 0:  # a negative size would be "read" forever
                raise TarError(f"{self._at()}: a malformed PAX size")
            setattr(entry, "mtime_ns" if key == "mtime" else key, number)
        for key, value in records.items():
            for prefix in _XATTR_PREFIXES:
                if key.startswith(prefix):
                    entry.xattrs[key[len(prefix) :]] = value

    def _check(self, entry: Entry) -> None:
        """Refuse what no caller can hold; clamp the time; a header-only type has no
        content."""
        # What the system cannot hold: an error here, not an OverflowError from chown or utime.
        entry.mtime_ns = max(-_MAX_NS, min(entry.mtime_ns, _MAX_NS))
        for what in ("uid", "gid", "devmajor", "devminor"):
            number = getattr(entry, what)
            if not 0 <= number < _MAX_ID:
                raise TarError(f"{self._at()}: {shown(entry.name)}: {what} {number} out of range")
        if "\0" in entry.linkname or any("\0" in k for k in entry.xattrs):
            # The system takes neither: a ValueError out of symlink or setxattr otherwise.
            raise TarError(
                f"{self._at()}: {shown(entry.name)}: a link target or xattr name with a NUL"
            )
        if entry.kind not in REGULAR:
            if entry.kind not in KNOWN:
                raise TarError(
                    f"{self._at()}: {shown(entry.name)}: tar entry type "
                    f"{shown(repr(entry.kind))} is not one pypull reads"
                )
            entry.size = 0  # links, devices, directories, FIFOs: a header only


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax(data: bytes, at: str) -> dict[str, bytes]:
    """PAX records (``LEN KEY=VALUE\\n``); values are kept as bytes. Only NULs may follow the
    last record."""
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            if data[pos:].strip(b"\0") == b"":
                break
            raise TarError(f"{at}: a malformed PAX header")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarError(f"{at}: a malformed PAX header") from None
        record = data[space + 1 : pos + length]
        if length <= 0 or pos + length > len(data) or not record.endswith(b"\n"):
            raise TarError(f"{at}: a malformed PAX header")
        key, eq, value = record[:-1].partition(b"=")
        if not eq:
            raise TarError(f"{at}: a malformed PAX header")
        out[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return out


def _meta_size(records: dict[str, bytes]) -> int:
    return sum(len(k) + len(v) for k, v in records.items())


def _pax_time(raw: bytes) -> int:
    whole, _, frac = raw.decode("ascii").partition(".")
    ns = int(whole) * 1_000_000_000
    if frac:
        part = int((frac + "000000000")[:9])
        ns += -part if whole.startswith("-") else part
    return ns
