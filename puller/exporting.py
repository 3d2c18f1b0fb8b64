"""Exporting: the flattened filesystem of an image as one tar, streamed (``pypull export``).

    with open("redis.tar", "wb") as out:
        result = puller.export("redis:7", out, store="./store")

The layers are read top first (as crane's ``mutate.Extract`` does), each through
``layers.Pipeline`` and so verified as it is read, and each path is written once, without
whiteouts: nothing is unpacked to disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

from .layers import Pipeline, each_entry, image_layers
from .oci.layer import OPAQUE, WHITEOUT, clean, join
from .oci.manifest import Platform, parse_platform
from .oci.reference import Reference, parse
from .store.images import stored_layers
from .store.layout import Store, as_store
from .tar.reader import DIRECTORY, HARD_LINK, Entry, Source
from .tar.writer import TarWriter

__all__ = ["Exported", "export"]


@dataclass(frozen=True, slots=True)
class Exported:
    """What an export wrote: layers read, entries written, bytes of file content."""

    layers: int
    files: int
    bytes: int


class Flattener:
    """The union of the layers, read top layer first (as crane's ``mutate.Extract`` does): an
    entry is written unless an upper layer wrote the same path, whited it out, made one of its
    directories opaque, or replaced one of its directories by something else. What grows with
    the entry count: the paths written so far, as an unpacker's tree would hold them.

    A hard link written before its target (the target is in a lower layer) waits until the
    target comes; a target that an upper layer hid is written under the link's own name."""

    def __init__(self, out: BinaryIO) -> None:
        self._tar = TarWriter(out)
        self.seen: dict[str, bool] = {}  # path -> is a directory
        self.gone: set[str] = set()
        self.opaque: set[str] = set()
        self._pending_gone: set[str] = set()
        self._pending_opaque: set[str] = set()
        self._waiting: dict[str, list[Entry]] = {}  # link target -> links to it
        self.files = 0
        self.bytes = 0

    def end_layer(self) -> None:
        """A layer's whiteouts and opaque markers hide only what lies below it."""
        self.gone |= self._pending_gone
        self.opaque |= self._pending_opaque
        self._pending_gone, self._pending_opaque = set(), set()

    def _hidden(self, parts: list[str]) -> bool:
        path = join(parts)
        if path in self.seen or path in self.gone:
            return True
        end = -1
        for _ in range(len(parts) - 1):  # each directory above, as a slice of ``path``
            end = path.index("/", end + 1)
            above = path[:end]
            if above in self.gone or above in self.opaque or self.seen.get(above) is False:
                return True
        return False

    def add(self, entry: Entry, src: Source, where: str) -> None:
        parts = clean(entry.name, where)
        if not parts:
            return  # the root: a tar of a filesystem names what is in it
        base = parts[-1]
        if base.startswith(WHITEOUT):
            if base == OPAQUE:
                self._pending_opaque.add(join(parts[:-1]))
            elif not base.startswith(WHITEOUT + WHITEOUT):
                self._pending_gone.add(join([*parts[:-1], base[len(WHITEOUT) :]]))
            return
        path = join(parts)
        hidden = self._hidden(parts)
        if hidden and entry.kind != DIRECTORY:
            # Not a directory in this layer: whatever lower layers hold under it is gone too.
            self._pending_gone.add(path)
        if entry.kind == HARD_LINK:
            target = join(clean(entry.linkname, where))
            entry.linkname = target
            # A link is its target's inode: unpack ignores its xattrs, and a link waiting for
            # its target must not hold a MiB of them each.
            entry.xattrs = {}
            if not hidden:
                self.seen[path] = False
                entry.name = path
                if target in self.seen:
                    self._write(entry, src)
                else:
                    self._waiting.setdefault(target, []).append(entry)
            return
        links = self._waiting.pop(path, [])
        if hidden:
            if not links:
                return
            # Hidden here, yet linked from above: the first link carries the content.
            first, links = links[0], links[1:]
            entry.name = first.name
            path = first.name
        else:
            self.seen[path] = entry.kind == DIRECTORY
            entry.name = path
        self._write(entry, src)
        for link in links:
            link.linkname = path
            self._write(link, src)

    def _write(self, entry: Entry, src: Source) -> None:
        self._tar.entry(entry)
        if entry.size:
            for piece in src.chunks(entry.size):
                self._tar.data(piece)
            self._tar.end_member(entry.size)
            self.bytes += entry.size
        self.files += 1

    def finish(self) -> None:
        """The end-of-archive blocks. Links whose target no layer held are left out, as an
        unpack would refuse them."""
        self._tar.close()


def _export_image(
    store: Store, ref: Reference, out: BinaryIO, platform: Platform | None
) -> Exported:
    what = str(ref)
    layers = image_layers(stored_layers(store, ref, platform), str(ref))
    top_first = list(reversed(layers))
    numbers = list(range(len(layers), 0, -1))
    flat = Flattener(out)
    with Pipeline(store, top_first, what, numbers) as pipeline:
        for i in range(len(layers)):
            each_entry(pipeline, i, flat.add)
            flat.end_layer()
    flat.finish()
    return Exported(len(layers), flat.files, flat.bytes)


def export(
    image: str | Reference,
    out: BinaryIO,
    *,
    store: str | os.PathLike[str] | Store | None = None,
    platform: str | Platform | None = None,
) -> Exported:
    """Write the flattened filesystem of ``image`` to ``out`` as one tar, streamed: top layer
    first, each entry once, no whiteouts. Blocking. Every layer is verified as it is read; an
    error raised after some entries were written leaves a partial tar in ``out`` (the CLI's
    ``-o FILE`` writes beside FILE and renames, so it leaves none)."""
    ref = image if isinstance(image, Reference) else parse(image)
    want = parse_platform(platform) if isinstance(platform, str) else platform
    held = as_store(store)
    with held.lease():
        return _export_image(held, ref, out, want)
