"""What an HTTP/1.1 message is made of, as the client sees it: the limits on a head, response
``Headers`` and ``Head``, and the types of bodies. Data only: parsing and encoding heads is
``heads``, reading bodies ``pour``.

Imports nothing of ours, so every module of the package may import it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import NamedTuple

#: Longest status line plus headers we accept; a registry's are well under 2 KiB.
MAX_HEAD = 64 * 1024
#: RFC 9112 leaves these to the client; servers (nginx, Go) use similar ones.
MAX_HEADER_LINES = 100
MAX_HEADER_LINE = 8 * 1024
#: A Content-Length of more digits is no size a registry serves (2**64 has 20).
MAX_LENGTH_DIGITS = 20

Chunk = bytes | bytearray | memoryview
RequestBody = bytes | AsyncIterable[Chunk]


class Headers:
    """Response headers, looked up case-insensitively; the first of repeated ones wins."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        self._items.setdefault(name.lower(), value)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._items.get(name.lower(), default)


class Head(NamedTuple):
    """A response's status line and headers, and how its body is delimited."""

    status: int
    headers: Headers
    #: "none", "length", "chunked" or "eof" (the body ends when the connection does)
    framing: str
    length: int | None
    keep_alive: bool
