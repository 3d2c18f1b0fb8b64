"""A layer's entry names as the OCI image spec reads them: whiteouts, opaque markers, and a
name cleaned to a path under the root (``..`` stops there), bounded in length and depth."""

from __future__ import annotations

from ..errors import UnpackError
from ..text import shown

#: Longest name or link target, cleaned, in bytes (Linux's PATH_MAX).
MAX_NAME = 4096
#: Deepest path, in directories: bounds the work of one entry and the descriptors held open.
MAX_DEPTH = 512
#: ``.wh.NAME`` hides NAME of lower layers; ``.wh..wh..opq`` its directory's lower content.
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def clean(name: str, where: str) -> list[str]:
    """The components of ``name`` cleaned as if rooted at DIR: ``..`` stops at the root."""
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME:
        raise UnpackError(f"{where}: a name longer than {MAX_NAME} bytes: {shown(name)}")
    if "\0" in name:
        raise UnpackError(f"{where}: a name with a NUL byte: {shown(name)}")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    if len(parts) > MAX_DEPTH:
        raise UnpackError(f"{where}: a name deeper than {MAX_DEPTH} directories: {shown(name)}")
    return parts


def join(parts: list[str]) -> str:
    return "/".join(parts)
