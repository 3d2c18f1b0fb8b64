"""The tar package's errors: a tar, or the compression around one, that pypull will not read.

    PullError
    └── TarError       not a tar, or one that tries something (a header of gigabytes, a number
        │              out of range, a type pypull does not read); bytes that do not inflate
        └── Truncated  the tar ends inside a header or an entry's content

Each message names where (the archive or layer, and the byte). The operations raise them as
their own errors (``UnpackError``, ``ArchiveError``), after checking the digests that may say
more.
"""

from __future__ import annotations

from ..errors import PullError

__all__ = ["TarError", "Truncated"]


class TarError(PullError):
    """A tar, or compressed bytes, that pypull refuses to read."""


class Truncated(TarError):
    """The tar ends inside a header or an entry's content."""
