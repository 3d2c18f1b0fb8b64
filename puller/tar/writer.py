"""Tars written as streams, member by member: ``pypull save``'s archives and ``pypull export``'s
flattened filesystem. Headers are ``tarfile``'s (PAX format, as docker writes them); contents
go straight through in the caller's chunks, so nothing is held whole in memory.
"""

from __future__ import annotations

from typing import BinaryIO

from .reader import BLOCK, DIRECTORY, Entry

__all__ = ["TarWriter"]


class TarWriter:
    """A tar written to ``out`` member by member (PAX format, as docker writes it). What
    ``directory``, ``header`` and ``file`` write is owned by root with mtime 0, so that one
    content gives one archive; ``entry`` writes an entry as it was read."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.size = 0

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self.size += len(data)

    def directory(self, name: str) -> None:
        import tarfile  # here: ``import puller`` needs no tarfile

        info = tarfile.TarInfo(name.rstrip("/") + "/")
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        self._write(info.tobuf(tarfile.PAX_FORMAT))

    def header(self, name: str, size: int) -> None:
        """A regular file's header; its ``size`` bytes go through ``data`` next, then ``end``."""
        import tarfile

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

    def entry(self, entry: Entry) -> None:
        """The header of an entry as the reader gave it (its xattrs as ``SCHILY.xattr``
        records); a regular file's ``entry.size`` bytes go through ``data`` next, then
        ``end_member``."""
        import tarfile

        info = tarfile.TarInfo(entry.name + ("/" if entry.kind == DIRECTORY else ""))
        info.type = entry.kind if entry.kind != b"\0" else tarfile.REGTYPE
        info.mode = entry.mode
        info.uid, info.gid = entry.uid, entry.gid
        info.size = entry.size
        info.mtime = entry.mtime_ns // 1_000_000_000
        info.linkname = entry.linkname
        info.devmajor, info.devminor = entry.devmajor, entry.devminor
        info.pax_headers = {
            "SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape")
            for k, v in entry.xattrs.items()
        }
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
