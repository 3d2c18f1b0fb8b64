"""The compression of a layer or an archive: gzip and zstd, told by their first bytes (or a
media type), and inflated in bounded steps.

A small layer may inflate to gigabytes: at most ``CHUNK`` bytes come out per step whatever goes
in, so it costs time, never memory; a zstd frame asking for a window over ``ZSTD_MAX_WINDOW`` is
refused rather than allocated.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import IO, cast

from .errors import TarError

__all__ = ["CHUNK", "check_magic", "compression_of", "inflated", "of_media_type"]

#: Bytes out per step of inflating: large enough that zlib and zstandard release the GIL for
#: long stretches, small enough that a bomb fills no memory.
CHUNK = 1 << 20
#: zstd's own default: a frame asking for a larger window is refused rather than allocated.
ZSTD_MAX_WINDOW = 1 << 27

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def compression_of(head: bytes) -> str:
    """The compression a layer's first bytes show: "gzip", "zstd", or "" (a plain tar, as far
    as they say)."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    return "zstd" if head.startswith(_ZSTD_MAGIC) else ""


def of_media_type(media_type: str) -> str | None:
    """The compression a layer's media type names ("gzip", "zstd", or "" for a plain tar), or
    None when it names no tar."""
    for suffix in ("+gzip", ".gzip"):
        if media_type.endswith(suffix):
            return "gzip"
    if media_type.endswith("+zstd"):
        return "zstd"
    if media_type.endswith((".tar", "tar")):
        return ""
    return None


def check_magic(head: bytes, compression: str, where: str) -> None:
    """``TarError`` unless the first bytes ``head`` show the ``compression`` a media type
    said."""
    found = compression_of(head)
    if found != compression:
        said = compression or "an uncompressed tar"
        got = found or "not compressed"
        raise TarError(f"{where}: its media type says {said}, but its bytes are {got}")


def inflated(chunks: Iterator[bytes], compression: str, where: str) -> Iterator[bytes]:
    """The bytes of ``chunks`` uncompressed (``compression`` as ``compression_of`` names it),
    at most ``CHUNK`` out per step whatever goes in: a small layer that inflates to gigabytes
    costs time, never memory. ``TarError`` naming ``where`` when they are not valid."""
    if compression == "gzip":
        return _inflate_gzip(chunks, where)
    if compression == "zstd":
        return _inflate_zstd(chunks, where)
    return chunks


def _inflate_gzip(chunks: Iterator[bytes], where: str) -> Iterator[bytes]:
    """gzip members one after another, at most ``CHUNK`` out per step whatever goes in."""
    inflater = zlib.decompressobj(31)
    started = False
    for chunk in chunks:
        data: bytes = chunk
        while data:
            if inflater.eof:
                data = inflater.unused_data + data
                inflater = zlib.decompressobj(31)
            started = True
            try:
                out = inflater.decompress(data, CHUNK)
            except zlib.error as e:
                raise TarError(f"{where}: not valid gzip: {e}") from None
            if out:
                yield out
            data = inflater.unconsumed_tail
            if inflater.eof:
                data = inflater.unused_data + data
                inflater = zlib.decompressobj(31)
                started = False
        # Output left inside zlib when the tail was consumed exactly at the bound.
        while started and not inflater.eof and not inflater.unconsumed_tail:
            try:
                out = inflater.decompress(b"", CHUNK)
            except zlib.error as e:
                raise TarError(f"{where}: not valid gzip: {e}") from None
            if not out:
                break
            yield out
    if started and not inflater.eof:
        raise TarError(f"{where}: the gzip stream is truncated")


class _ChunkReader:
    """A file-like over an iterator of chunks, for zstandard's stream reader."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def read(self, n: int = -1) -> bytes:
        return next(self._chunks, b"")


def _inflate_zstd(chunks: Iterator[bytes], where: str) -> Iterator[bytes]:
    import zstandard

    reader = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(
        cast(IO[bytes], _ChunkReader(chunks)),  # it only calls read()
        read_size=CHUNK,
        read_across_frames=True,
    )
    while True:
        try:
            out = reader.read(CHUNK)
        except zstandard.ZstdError as e:
            raise TarError(f"{where}: not valid zstd: {e}") from None
        if not out:
            return
        yield out
