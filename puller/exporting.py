"""Exporting: the flattened filesystem of an image as one tar, streamed (``pypull export``).

    with open("redis.tar", "wb") as out:
        result = puller.export("redis:7", out, store="./store")

The layers are read top first (as crane's ``mutate.Extract`` does), each through
``layers.Pipeline`` and so verified as it is read, and each path is written once, without
whiteouts: nothing is unpacked to disk.

A name is written where unpack puts it: with ``x -> sub`` in one layer, a later layer's
``x/f`` is unpacked to ``sub/f`` (the link is followed inside DIR), and a tar that said
``x/f`` beside the link ``x`` could not be extracted. What a layer's name leads to depends on
the links of the layers below it, which a top-first reader has not read yet; so the layers are
read twice: first bottom first, as unpack applies them, keeping only the tree's symlinks
(``LinkedParents``), which names the entries whose directories lead through one; then top
first, writing those under the names unpack gives them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

from . import rootfs
from .errors import UnpackError
from .layers import Pipeline, each_entry, image_layers
from .oci.layer import OPAQUE, WHITEOUT, clean, join
from .oci.manifest import Platform, parse_platform
from .oci.reference import Reference, parse
from .rootfs import LOOKUP_BASE, LOOKUPS_PER_ENTRY, MAX_LINKS, PATH_OVERHEAD
from .store.images import stored_layers
from .store.layout import Store, as_store
from .tar.reader import DIRECTORY, HARD_LINK, SYMLINK, Entry, Source
from .tar.writer import TarWriter
from .text import shown

__all__ = ["Exported", "export"]


@dataclass(frozen=True, slots=True)
class Exported:
    """What an export wrote: layers read, entries written, bytes of file content."""

    layers: int
    files: int
    bytes: int


class LinkedParents:
    """The layers bottom first, as unpack applies them, keeping only the symlinks of the tree
    (with when each was made, and when a directory above lost what it held): ``renamed``
    gives, by (layer, entry), the name and hard link target unpack resolves for each entry
    whose directories lead through a link (``rootfs.Tree.directory``: a link is expanded
    inside DIR, an absolute one from DIR, a chain up to ``MAX_LINKS``). A layer without links
    beneath it costs nothing but its reading; names resolve within the lookup budget unpack
    keeps (``rootfs.LOOKUP_BASE``)."""

    def __init__(self) -> None:
        self.renamed: dict[tuple[int, int], tuple[str, str]] = {}
        #: By layer, each hard link target of that layer and the links to it, in order: a
        #: target an upper layer replaced is read (top first) before those links come.
        self.linked: dict[int, dict[str, list[str]]] = {}
        self._links: dict[str, tuple[str, int]] = {}  # path -> (target, when made)
        self._under: set[str] = set()  # directories a link was ever made in (or below)
        self._removed: dict[str, int] = {}  # such a directory -> when what it held went
        self._now = 0
        self._layer_start = 0
        self._key = (0, 0)
        self._lookups = LOOKUP_BASE
        self._tracked = 0  # bytes of the names kept (see ``rootfs.MAX_TRACKED``)
        #: The last directory resolved, while no link changed since (``_changes``): a layer
        #: lists a directory's files one after another, as ``Tree.parent`` keeps too.
        self._kept: tuple[tuple[str, ...], int, list[str]] | None = None
        self._changes = 0

    def new_layer(self, layer: int) -> None:
        self._now += 1
        self._layer_start = self._now
        self._key = (layer, 0)
        self._lookups = LOOKUP_BASE

    def add(self, entry: Entry, src: Source, where: str) -> None:
        key = self._key
        self._key = (key[0], key[1] + 1)
        self._now += 1
        self._lookups += LOOKUPS_PER_ENTRY
        if not self._links and entry.kind not in (SYMLINK, HARD_LINK):
            return  # no link yet: every name is where it says
        parts = clean(entry.name, where)
        if not parts:
            return
        at = f"{where}: {shown(entry.name)}"
        parent = self._resolve(parts[:-1], at)
        path = join([*parent, parts[-1]])
        target = lexical = join(clean(entry.linkname, where)) if entry.kind == HARD_LINK else ""
        if target:
            found = clean(target, where)
            target = join([*self._resolve(found[:-1], at), found[-1]])
        if path != join(parts) or target != lexical:
            self._track(len(path) + len(target), at)
            self.renamed[key] = (path, target)
        if entry.kind == HARD_LINK and target:
            self._track(len(path) + len(target), at)
            self.linked.setdefault(key[0], {}).setdefault(target, []).append(path)
        if parts[-1].startswith(WHITEOUT):
            self._whiteout(parent, parts[-1])
        elif entry.kind == DIRECTORY:
            self._unlink(path)  # a link there is replaced by a directory
        else:
            self._emptied(path, self._now)  # a directory there is replaced, and all it held
            linked = self._link(target) if entry.kind == HARD_LINK else None
            if entry.kind == SYMLINK or linked is not None:
                self._made(path, entry.linkname if linked is None else linked, at)
            else:
                self._unlink(path)

    def _track(self, size: int, at: str) -> None:
        self._tracked += size + PATH_OVERHEAD
        if self._tracked > rootfs.MAX_TRACKED:
            raise UnpackError(
                f"{at}: the names to remember pass {rootfs.MAX_TRACKED >> 20} MiB; refused"
            )

    def _unlink(self, path: str) -> None:
        if self._links.pop(path, None) is not None:
            self._changes += 1

    def _whiteout(self, parent: list[str], base: str) -> None:
        """As ``Tree.whiteout``: of lower layers only."""
        if base == OPAQUE:
            self._emptied(join(parent), self._layer_start)
        elif not base.startswith(WHITEOUT + WHITEOUT):
            path = join([*parent, base[len(WHITEOUT) :]])
            link = self._links.get(path)
            if link is not None and link[1] < self._layer_start:
                self._unlink(path)
            self._emptied(path, self._layer_start)

    def _made(self, path: str, target: str, at: str) -> None:
        self._track(len(path) + len(target), at)
        self._links[path] = (target, self._now)
        self._changes += 1
        end = len(path)
        while end > 0:
            end = path.rfind("/", 0, end)
            above = path[: max(end, 0)]
            if above in self._under:
                break
            self._under.add(above)

    def _emptied(self, path: str, before: int) -> None:
        """What the directory ``path`` held, if made before ``before``, is gone."""
        if path in self._under:
            self._removed[path] = max(self._removed.get(path, -1), before)
            self._changes += 1

    def _link(self, path: str) -> str | None:
        """The target of the link at ``path``, if one is there now."""
        link = self._links.get(path)
        if link is None:
            return None
        if self._removed:
            end = len(path)
            while end > 0:
                end = path.rfind("/", 0, end)
                if self._removed.get(path[: max(end, 0)], -1) > link[1]:
                    self._unlink(path)  # a directory above it was removed or emptied
                    return None
        return link[0]

    def _resolve(self, parts: list[str], at: str) -> list[str]:
        """The directory ``parts`` leads to, as ``Tree.directory`` walks it."""
        if not self._links:
            return parts
        key = tuple(parts)
        if self._kept is not None and self._kept[:2] == (key, self._changes):
            return list(self._kept[2])
        followed = 0
        todo = parts
        while True:
            done: list[str] = []
            here = ""
            restart = None
            for i, part in enumerate(todo):
                self._lookups -= 1
                if self._lookups < 0:
                    raise UnpackError(
                        f"{at}: the layer's names resolve through too many directories "
                        "and symbolic links; refused"
                    )
                path = f"{here}/{part}" if done else part
                target = self._link(path)
                if target is None:
                    done.append(part)
                    here = path
                    continue
                followed += 1
                if followed > MAX_LINKS:
                    raise UnpackError(f"{at}: too many levels of symbolic links at {shown(path)}")
                base = [] if target.startswith("/") else done
                restart = clean(join([*base, target, *todo[i + 1 :]]), at)
                break
            if restart is None:
                self._kept = (key, self._changes, list(done))
                return done
            todo = restart


class Flattener:
    """The union of the layers, read top layer first (as crane's ``mutate.Extract`` does): an
    entry is written unless an upper layer wrote the same path, whited it out, made one of its
    directories opaque, or replaced one of its directories by something else. What grows with
    the entry count: the paths written so far, as an unpacker's tree would hold them.

    A hard link written before its target (the target is in a lower layer) waits until the
    target comes; a target that an upper layer hid is written under the link's own name. A
    link's target is the file its own layer saw: one an upper layer replaced is not the
    link's (unpack replaces the name, and the link keeps the old inode), so the link waits
    for the target of its own layer or a lower one, or, when that target came earlier in its
    own layer, gets its content (``linked``: ``LinkedParents.linked``)."""

    def __init__(
        self,
        out: BinaryIO,
        renamed: dict[tuple[int, int], tuple[str, str]] | None = None,
        top: int = 0,
        linked: dict[int, dict[str, list[str]]] | None = None,
    ) -> None:
        #: ``LinkedParents.renamed`` and ``.linked``, and the number of the first layer given
        #: (the top one).
        self._renamed = renamed or {}
        self._linked = linked or {}
        self._key = (top, 0)
        self._tar = TarWriter(out)
        self.seen: dict[str, bool] = {}  # path -> is a directory
        self.gone: set[str] = set()
        self.opaque: set[str] = set()
        self._pending_gone: set[str] = set()
        self._pending_opaque: set[str] = set()
        self._waiting: dict[str, list[Entry]] = {}  # link target -> links to it
        self._here: set[str] = set()  # what this layer wrote, but directories
        self._carried: dict[str, str] = {}  # a hidden target of this layer -> who holds it
        #: Each directory something was written into -> the highest layer that did.
        self._parents: dict[str, int] = {}
        self._where = ""
        self.files = 0
        self.bytes = 0

    def end_layer(self) -> None:
        """A layer's whiteouts and opaque markers hide only what lies below it."""
        self.gone |= self._pending_gone
        self.opaque |= self._pending_opaque
        self._pending_gone, self._pending_opaque = set(), set()
        self._here, self._carried = set(), {}
        self._key = (self._key[0] - 1, 0)

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
        key = self._key
        self._key = (key[0], key[1] + 1)
        self._where = where
        if key in self._renamed:
            entry.name, target = self._renamed[key]
            entry.linkname = target or entry.linkname
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
            # Links from above to this name are links to its target's inode.
            waiting = self._waiting.pop(path, [])
            if not hidden:
                self.seen[path] = False
                self._here.add(path)
                entry.name = path
                waiting.insert(0, entry)
            for link in waiting:
                self._link_to(link, target, src)
            return
        links = self._waiting.pop(path, [])
        if hidden and entry.kind != DIRECTORY:
            # Links from above to a link of this layer to this entry: links to it too.
            for name in self._linked.get(self._key[0], {}).get(path, []):
                links += self._waiting.pop(name, [])
        if hidden:
            if not links:
                carrier = self._carrier(path) if entry.kind != DIRECTORY else None
                if carrier is None:
                    return
                # Hidden here, yet linked from later in this layer: that link holds it.
                self.seen[carrier] = False
                self._here.add(carrier)
                self._carried[path] = entry.name = carrier
                self._write(entry, src)
                return
            # Hidden here, yet linked from above: the first link carries the content.
            first, links = links[0], links[1:]
            entry.name = first.name
            self._carried[path] = first.name
            path = first.name
        else:
            self.seen[path] = entry.kind == DIRECTORY
            if entry.kind != DIRECTORY:
                self._here.add(path)
            entry.name = path
        self._write(entry, src)
        for link in links:
            link.linkname = path
            self._write(link, src)

    def _link_to(self, entry: Entry, target: str, src: Source) -> None:
        """Write the hard link ``entry`` to ``target`` as this layer holds it, or wait for it
        (in a lower layer: one an upper layer wrote is not this layer's)."""
        entry.linkname = self._carried.get(target, target)
        if target in self._carried or target in self._here:
            self._write(entry, src)
        else:
            self._waiting.setdefault(target, []).append(entry)

    def _carrier(self, target: str) -> str | None:
        """The first link of this layer to ``target`` that the layers above leave seen."""
        for link in self._linked.get(self._key[0], {}).get(target, []):
            if not self._hidden(link.split("/")):
                return link
        return None

    def _write(self, entry: Entry, src: Source) -> None:
        layer, path = self._key[0], entry.name
        if entry.kind != DIRECTORY and self._parents.get(path, -1) > layer:
            # Unpack refuses this: an upper layer's names lead through a file. GNU tar could
            # not extract it either ("Cannot open: File exists").
            raise UnpackError(
                f"{self._where}: {shown(path)}: a later layer writes into it, and it is no "
                "directory"
            )
        end = len(path)
        while (end := path.rfind("/", 0, end)) > 0:
            if path[:end] in self._parents:
                break
            self._parents[path[:end]] = layer
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
    parents = LinkedParents()
    with Pipeline(store, layers, what) as pipeline:
        for i in range(len(layers)):
            parents.new_layer(i)
            each_entry(pipeline, i, parents.add)
    top_first = list(reversed(layers))
    numbers = list(range(len(layers), 0, -1))
    flat = Flattener(out, parents.renamed, len(layers) - 1, parents.linked)
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
