"""Hostile layers fed straight to the unpacker's tar reader and tree (no registry): bounds on
what a layer can make pypull hold in memory or spend time on, and escapes tried on the real
filesystem."""

from __future__ import annotations

import tarfile
import time
from collections.abc import Iterator

import pytest

from fixtures.layers import E, tar_of
from puller import unpacking
from puller.unpacking import MAX_META, UnpackError


class _Feed:
    """What the pipeline hands the tar reader: a layer's bytes in chunks, then its end."""

    def __init__(self, data: bytes) -> None:
        self._items: list[object] = [data[i : i + 65536] for i in range(0, len(data), 65536)]
        self._items.append(unpacking._End(0))

    def get(self) -> object:
        return self._items.pop(0)


def entries(data: bytes) -> Iterator[unpacking._Entry]:
    src = unpacking._Input(_Feed(data))  # type: ignore[arg-type]
    yield from unpacking._entries(src, "layer")


def extended(kind: bytes, records: list[tuple[bytes, bytes]]) -> bytes:
    """A raw PAX header (``x`` or ``g``) of ``records``."""
    body = b""
    for key, value in records:
        rest = b" " + key + b"=" + value + b"\n"
        n = len(rest) + 1
        while len(str(n)) + len(rest) != n:
            n += 1
        body += str(n).encode() + rest
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = kind
    info.size = len(body)
    return info.tobuf(tarfile.USTAR_FORMAT) + body + bytes(-len(body) % 512)


def test_pax_headers_one_after_another_are_bounded_together() -> None:
    """Each under the bound, but they accumulated: 1 GiB held for 1 MiB of gzip."""
    headers = b"".join(
        extended(tarfile.XHDTYPE, [(b"k%d" % i + b"a" * (MAX_META // 2), b"")]) for i in range(3)
    )
    with pytest.raises(UnpackError, match="PAX headers of one entry over 1 MiB"):
        list(entries(headers + tar_of([E("f", data=b"x")])))


def test_global_pax_keys_count_toward_the_bound() -> None:
    headers = b"".join(
        extended(tarfile.XGLTYPE, [(b"k%d" % i + b"a" * (MAX_META // 2), b"")]) for i in range(3)
    )
    with pytest.raises(UnpackError, match="global PAX headers over"):
        list(entries(headers + tar_of([E("f", data=b"x")])))


def test_a_global_pax_header_of_many_records_is_refused() -> None:
    """Its records were merged into every later entry's: 1 MiB of them cost 20 ms an entry, so a
    layer of small entries took hours."""
    records = [(b"%x" % i, b"") for i in range(100_000)]
    data = extended(tarfile.XGLTYPE, records) + tar_of([E(f"f{i}") for i in range(500)])
    started = time.monotonic()
    with pytest.raises(UnpackError, match="global PAX headers"):
        list(entries(data))
    assert time.monotonic() - started < 2


def test_a_few_global_records_still_apply() -> None:
    data = extended(tarfile.XGLTYPE, [(b"comment", b"git archive"), (b"uid", b"7")])
    got = list(entries(data + tar_of([E("f"), E("g")])))
    assert [(e.name, e.uid) for e in got] == [("f", 7), ("g", 7)]
