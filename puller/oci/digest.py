"""Content digests: a validated value type and a streaming verifier.

A digest names a file on disk (``blobs/<algorithm>/<hex>``), so validation is a security boundary:
only known algorithms and exact-length lowercase hex get through, never ``sha256:../../etc``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from ..errors import DigestMismatch, InvalidDigest, SizeMismatch

_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True, slots=True)
class Digest:
    """``algorithm:hex``, e.g. ``sha256:e3b0c442…``."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        # A Digest names a file under blobs/: no way to build one that is not algorithm:hex.
        length = _HEX_LENGTH.get(self.algorithm)
        if length is None:
            raise InvalidDigest(
                f"{self.algorithm}:{self.hex}",
                f"unsupported algorithm {self.algorithm!r} (want sha256 or sha512)",
            )
        if len(self.hex) != length or not _HEX.fullmatch(self.hex):
            raise InvalidDigest(
                f"{self.algorithm}:{self.hex}",
                f"{self.algorithm} needs {length} lowercase hex digits",
            )

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def short(self) -> str:
        """The 12-hex id docker shows for a layer or image."""
        return self.hex[:12]

    def hasher(self) -> Any:
        return hashlib.new(self.algorithm)


def parse_digest(text: str) -> Digest:
    """Parse and validate ``algorithm:hex``; raise ``InvalidDigest`` otherwise."""
    if not isinstance(text, str):
        raise InvalidDigest(repr(text), "not a string")
    algorithm, sep, hexpart = text.partition(":")
    if not sep:
        raise InvalidDigest(text, "expected algorithm:hex")
    return Digest(algorithm, hexpart)


def digest_of(data: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())


class Verifier:
    """Hashes bytes as they stream past and checks size and digest at the end.

    ``update`` may run in a worker thread: hashlib releases the GIL on large buffers, which is what
    lets one layer hash while the event loop receives another.
    """

    __slots__ = ("_hash", "expected", "expected_size", "size", "where")

    def __init__(self, expected: Digest, expected_size: int | None, where: str = "") -> None:
        self.expected = expected
        self.expected_size = expected_size
        self.where = where
        self._hash = expected.hasher()
        self.size = 0

    def update(self, chunk: bytes | memoryview) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)
        if self.expected_size is not None and self.size > self.expected_size:
            self._too_long()

    def _too_long(self) -> None:
        assert self.expected_size is not None
        raise SizeMismatch(
            f"size mismatch for {self.expected}{self._from()}: "
            f"got more than the expected {self.expected_size} bytes",
            expected=str(self.expected_size),
            got=f">{self.expected_size}",
            url=self.where,
        )

    def _from(self) -> str:
        return f" from {self.where}" if self.where else ""

    def verify(self) -> None:
        """Raise ``SizeMismatch`` or ``DigestMismatch`` unless the stream was exactly right."""
        if self.expected_size is not None and self.size != self.expected_size:
            raise SizeMismatch(
                f"size mismatch for {self.expected}{self._from()}: "
                f"expected {self.expected_size} bytes, got {self.size}",
                expected=str(self.expected_size),
                got=str(self.size),
                url=self.where,
            )
        got = Digest(self.expected.algorithm, self._hash.hexdigest())
        if got != self.expected:
            raise DigestMismatch(
                f"digest mismatch for {self.expected}{self._from()}: got {got}",
                expected=str(self.expected),
                got=str(got),
                url=self.where,
            )


def verify_bytes(data: bytes, expected: Digest, size: int | None = None, where: str = "") -> None:
    v = Verifier(expected, size, where)
    v.update(data)
    v.verify()
