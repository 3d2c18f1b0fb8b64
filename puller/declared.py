"""What an image archive declares, learnt as ``pypull load`` reads it, so that only what can be
an image's content is staged (``Declared.wanted``):

* the blobs its ``index.json`` names and, as they arrive, those the manifests and indexes under
  it name, each with its size: a member named by such a digest must have that size, checked
  in its header before a byte of it is written;
* the members its ``manifest.json`` names (docker's view names paths, with no sizes), and the
  members links among them lead to.

A member nothing declares is staged only while a declaration may still come (``docker save``
writes its blobs before ``index.json``, the older layout its layers before ``manifest.json``),
and only under a name such content has; the load commits only what its images use, so what
was staged for nothing goes at the end. Once ``index.json`` and every manifest it reaches are
read, nothing undeclared is written at all.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from .errors import ArchiveError, InvalidDigest, PullError
from .oci.digest import Digest
from .oci.manifest import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    Descriptor,
    Manifest,
    parse_descriptor,
    parse_manifest,
)
from .text import shown

if TYPE_CHECKING:  # the staging reads through to the store; only its shape is needed here
    from .store.images import ManifestReader

__all__ = ["MAX_HOPS", "Declared", "clean_name", "named_digest"]

#: Links followed to find a member (a legacy layer.tar links to another's); more is a loop.
MAX_HOPS = 40
_BLOB_NAME = re.compile(r"blobs/([a-z0-9]+)/([a-f0-9]+)")
_CONFIG_NAME = re.compile(r"([a-f0-9]{64})\.json")
#: Names an image's content has in docker's older layout: a layer's ``<id>/layer.tar``
#: (``docker save``), ``<hex>.tar`` (skopeo), ``<hex>.tar.gz`` (crane) or any other tar,
#: gzip or zstd name, a config's ``<hex>.json`` or ``sha256:<hex>`` (crane).
_LEGACY_NAME = re.compile(r"(.+/)?[^/]+\.(tar|tar\.gz|tgz|tar\.zst|json)|sha256:[a-f0-9]{64}")


def named_digest(name: str, where: str) -> Digest | None:
    """The digest a member's name claims: ``blobs/<algorithm>/<hex>``, or a legacy config's
    ``<hex>.json``."""
    m = _BLOB_NAME.fullmatch(name) or _CONFIG_NAME.fullmatch(name)
    if m is None:
        return None
    try:
        return Digest(m.group(1), m.group(2)) if m.re is _BLOB_NAME else Digest("sha256", m[1])
    except InvalidDigest:
        raise ArchiveError(f"{where}: member '{shown(name, 200)}' names no valid digest") from None


def clean_name(path: str) -> str:
    """A path as ``manifest.json`` gives it, as a member's name (``./a//b`` is ``a/b``)."""
    return "/".join(p for p in path.split("/") if p not in ("", "."))


class Declared:
    """What the archive read so far declares (see the module's docstring)."""

    def __init__(self, reader: ManifestReader, where: str) -> None:
        self._reader = reader
        self._where = where
        self.sizes: dict[Digest, int] = {}
        self.paths: set[str] = set()
        self._unread: dict[Digest, Descriptor] = {}  # manifests named, not yet staged
        self._index = False
        self._docker = False

    def index(self, raw: bytes) -> None:
        """``index.json``: its entries. What is wrong with it is said by the check after the
        archive is read, not here."""
        self._index = True
        for entry in _listed(raw, "manifests"):
            try:
                self._declare(parse_descriptor(entry, "index.json"))
            except PullError:
                continue

    def docker(self, raw: bytes, links: dict[str, str]) -> None:
        """``manifest.json``: the members its images name."""
        self._docker = True
        for item in _listed(raw, None):
            if not isinstance(item, dict) or not isinstance(item.get("Layers") or [], list):
                continue
            for name in [item.get("Config"), *(item.get("Layers") or [])]:
                if isinstance(name, str):
                    self._path(clean_name(name), links)

    def link(self, name: str, target: str, links: dict[str, str]) -> None:
        """A link member: what a declared name links to is declared too."""
        if name in self.paths:
            self._path(target, links)

    def staged(self, digest: Digest) -> None:
        """A blob arrived: a manifest or index declared before it declares its own."""
        desc = self._unread.pop(digest, None)
        if desc is not None:
            self._expand(desc)

    def wanted(self, name: str, size: int) -> bool:
        """Whether to stage the member ``name`` of ``size`` bytes; a size other than the one
        declared for its digest is an error, before it is read."""
        digest = named_digest(name, self._where)
        if digest is not None and digest in self.sizes:
            if size != self.sizes[digest]:
                raise ArchiveError(
                    f"{self._where}: member '{shown(name, 200)}' is {size} bytes; the archive's "
                    f"index and manifests say {digest} is {self.sizes[digest]} bytes"
                )
            return True
        if name in self.paths:
            return True
        if self._index and not self._unread:
            return False  # every blob the index reaches is known, and this is none of them
        if digest is not None:
            return True
        return not self._docker and _LEGACY_NAME.fullmatch(name) is not None

    def _path(self, name: str, links: dict[str, str]) -> None:
        for _ in range(MAX_HOPS):
            self.paths.add(name)
            if name not in links:
                return
            name = links[name]

    def _declare(self, desc: Descriptor) -> None:
        if desc.digest in self.sizes:
            return
        self.sizes[desc.digest] = desc.size
        if desc.media_type in MANIFEST_TYPES or desc.media_type in INDEX_TYPES:
            if self._reader.has(desc.digest):
                self._expand(desc)
            else:
                self._unread[desc.digest] = desc

    def _expand(self, desc: Descriptor) -> None:
        try:
            raw = self._reader.read_manifest(desc.digest, desc.size)
            parsed = parse_manifest(raw, desc.media_type, self._where)
        except PullError:
            return  # said by the check after the archive is read
        if isinstance(parsed, Manifest):
            children = [parsed.config, *parsed.layers]
        else:
            children = list(parsed.manifests)
        for child in children:
            self._declare(child)


def _listed(raw: bytes, key: str | None) -> list[Any]:
    """The list at ``key`` of a JSON object (the document itself if None); [] if none."""
    try:
        doc = json.loads(raw)
        found = doc if key is None else doc.get(key)
    except (ValueError, RecursionError, AttributeError):
        return []
    return found if isinstance(found, list) else []
