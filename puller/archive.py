"""``pypull save`` and ``pypull load``: images of the store as one tar archive, and back.

The archive is the one ``docker save`` has written since Docker 25: an OCI image layout
(``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``) with docker's ``manifest.json`` and
``repositories`` beside it, so ``docker load``, ``skopeo copy docker-archive:FILE`` and
``skopeo copy oci-archive:FILE`` all read it::

    oci-layout  index.json  manifest.json  repositories  blobs/sha256/<hex>...

The metadata comes first (a reader that streams learns what follows before it arrives), then
every blob once, however many images share it, copied from the store in chunks and checked
against its digest on the way: the archive's size is known from the manifests, so nothing is
staged in a temporary copy.

``index.json`` names each image as the store does (``org.opencontainers.image.ref.name`` and
containerd's ``io.containerd.image.name`` both the full reference, ``docker.io/library/redis:7``),
so ``skopeo copy oci-archive:FILE:docker.io/library/redis:7 ...`` finds it by the name the
store's own layout answers to. An entry keeps ``io.pypull.resolved.digest`` and the manifest the
registry served, so a store loaded from the archive describes the image as the first one did.

``manifest.json`` is docker's view: one item per single-platform image, whose ``Layers`` are the
layer blobs as the store holds them, compressed. Docker's loader (moby ``image/tarexport``,
``loadLayer``: ``archive.DecompressStream`` before the layer is registered and its diff_id
checked) and skopeo's ``docker-archive:`` reader (containers/image ``docker/internal/tarfile``:
``GetBlob`` auto-decompresses, and the manifest it makes names layers by the config's diff_ids)
both decompress what they read, and Docker 25 with the containerd store writes its compressed
blobs there the same way. So one blob serves both views; uncompressed copies would double the
archive and the time to write it. A multi-platform image (``pull --all-platforms``) is saved
whole in the OCI view (its index and every platform the store holds) but has no
``manifest.json`` item: docker's view is one image per item, and only a containerd-backed
docker reads the index.

``load`` reads such an archive, or the older ``docker save`` layout (``manifest.json`` naming
``<id>/layer.tar`` or ``<hex>.tar`` layers and a ``<hex>.json`` config, no ``index.json``),
streamed: members arrive in any order, so each member that may be an image's content
(``declared``: what index.json and the manifests name, with their sizes, or while they are
still to come a name such content has) is hashed into a hidden file of the store's ingest area
as it comes (``store.staging``), out of sight; a member named by a digest
(``blobs/sha256/<hex>``, ``<hex>.json``) must have that digest. Only when the whole archive is
read and every image it names is complete are the blobs its images use renamed into
``blobs/`` and the names added to ``index.json``; whatever else was staged, and everything on a
failure (Ctrl-C too), is removed: a bad archive leaves the store as it was. A legacy image gets
an OCI manifest made here (layers ``application/vnd.oci.image.layer.v1.tar``, ``+gzip`` or
``+zstd`` by their first bytes, named by their own digest), checked against the config's
``rootfs.diff_ids`` as docker checks them.

An archive may be written by an attacker: member names are never paths on this machine (no
file is made outside the store), names with ``..`` or a leading ``/`` and links out of the
archive are refused, ``index.json`` and ``manifest.json`` are read to at most
``MAX_MANIFEST_SIZE``, configs to ``MAX_CONFIG_SIZE``, headers as ``tar.reader`` bounds them,
and every name printed goes through ``text.shown``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .declared import MAX_HOPS, Declared, clean_name, named_digest
from .errors import ArchiveError, InvalidDigest, ManifestError, NotFound, PullError, StoreError
from .oci.digest import Digest, Verifier, digest_of, parse_digest, verify_bytes
from .oci.manifest import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_MANIFEST_SIZE,
    OCI_CONFIG,
    OCI_MANIFEST,
    REF_NAME_ANNOTATION,
    Descriptor,
    Index,
    Manifest,
    parse_descriptor,
)
from .oci.reference import Reference, parse
from .outfile import output_file
from .store.images import MAX_CONFIG_SIZE, ManifestReader, find_entry, stored_manifest
from .store.layout import OCI_LAYOUT, RESOLVED_ANNOTATION, Store, as_store
from .store.staging import Staging
from .tar.compression import compression_of, inflated
from .tar.errors import TarError
from .tar.members import DIR, LINK, members
from .tar.reader import CHUNK, Policy, StreamSource
from .tar.writer import TarWriter
from .text import shown

__all__ = ["ArchiveError", "LoadResult", "LoadedImage", "SaveResult", "SavedImage", "load", "save"]

#: An image archive holds a few files per blob; a million members is no image archive.
MAX_MEMBERS = 1_000_000
#: What an archive may make ``load`` hold: one member's extended headers at most 1 MiB, as many
#: headers as ``MAX_MEMBERS``.
_POLICY = Policy(max_headers=MAX_MEMBERS)
#: containerd's name for an image, which docker 25+ writes and its containerd store reads.
CONTAINERD_NAME = "io.containerd.image.name"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
#: Members of a docker archive that nothing reads any more (the pre-1.10 image format).
_IGNORED = ("oci-layout", "repositories")
_IGNORED_BASENAMES = ("VERSION", "json")


# -- save -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SavedImage:
    """One image written: its name, and the digest ``index.json`` points at (an index, for a
    multi-platform image). ``docker`` says whether ``manifest.json`` lists it."""

    reference: Reference
    digest: Digest
    docker: bool


@dataclass(frozen=True, slots=True)
class SaveResult:
    images: tuple[SavedImage, ...]
    blobs: int  # distinct blobs written, each once
    size: int  # bytes of the archive


@dataclass
class _Plan:
    """What an archive holds, known before its first byte is written."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    saved: list[SavedImage] = field(default_factory=list)
    # digest -> (size, bytes when already read and verified: a manifest)
    blobs: dict[Digest, tuple[int, bytes | None]] = field(default_factory=dict)
    docker: dict[tuple[Digest, tuple[Digest, ...]], list[str]] = field(default_factory=dict)


def _walk(
    store: ManifestReader, desc: Descriptor, what: str, into: dict[Digest, tuple[int, bytes | None]]
) -> Manifest | Index:
    """Add ``desc`` and everything it needs to ``into``: a manifest's config and layers (all
    required), an index's children that the store holds (at least one)."""
    raw, parsed = stored_manifest(store, desc, what)
    into[desc.digest] = (len(raw), raw)
    if isinstance(parsed, Manifest):
        for kind, d in (("config", parsed.config), *(("layer", d) for d in parsed.layers)):
            if not store.has(d.digest):
                raise NotFound(f"{what}: the store {store.root} lacks its {kind} {d.digest}")
            size = into.setdefault(d.digest, (d.size, None))[0]
            if size != d.size:
                raise ManifestError(
                    f"{what}: its manifests say {d.digest} is {size} and {d.size} bytes"
                )
        return parsed
    present = [
        c
        for c in parsed.manifests
        if (c.media_type in MANIFEST_TYPES or c.media_type in INDEX_TYPES) and store.has(c.digest)
    ]
    if not present:
        raise NotFound(f"{what}: the store {store.root} holds none of the manifests of its index")
    for child in present:
        if child.digest not in into:
            _walk(store, child, what, into)
    return parsed


def _plan(store: Store, refs: Sequence[Reference]) -> _Plan:
    plan = _Plan()
    for ref in refs:
        what = str(ref)
        entry = find_entry(store, ref)
        if entry is None:
            raise NotFound(f"{what}: not in the store {store.root} (pull it first)")
        top = _walk(store, entry, what, plan.blobs)
        annotations = {REF_NAME_ANNOTATION: str(ref), CONTAINERD_NAME: str(ref)}
        served = _served(store, entry, what)
        if served is not None:
            digest, blobs = served
            plan.blobs.update((d, v) for d, v in blobs.items() if d not in plan.blobs)
            annotations[RESOLVED_ANNOTATION] = str(digest)
        desc = Descriptor(entry.media_type, entry.digest, entry.size, entry.platform, annotations)
        plan.entries.append(desc.to_dict())
        if isinstance(top, Manifest):
            key = (top.config.digest, tuple(d.digest for d in top.layers))
            tags = plan.docker.setdefault(key, [])
            tag = f"{ref.familiar_name}:{ref.tag}"
            if ref.tag is not None and tag not in tags:
                tags.append(tag)
        plan.saved.append(SavedImage(ref, entry.digest, isinstance(top, Manifest)))
    return plan


def _served(
    store: Store, entry: Descriptor, what: str
) -> tuple[Digest, dict[Digest, tuple[int, bytes | None]]] | None:
    """The manifest the registry served (``io.pypull.resolved.digest``) and what it reaches,
    when the store holds all of it; else None, and the archive carries the stored form only."""
    try:
        resolved = parse_digest(entry.annotations.get(RESOLVED_ANNOTATION, ""))
    except InvalidDigest:
        return None
    if resolved == entry.digest or not store.has(resolved):
        return None
    found: dict[Digest, tuple[int, bytes | None]] = {}
    try:
        raw = store.read_manifest(resolved)
        desc = Descriptor(_media_type(raw), resolved, len(raw))
        _walk(store, desc, what, found)
    except PullError:
        return None
    return resolved, found


def _media_type(raw: bytes) -> str:
    """A stored manifest's own ``mediaType`` (already verified and bounded by the caller)."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise ManifestError("the served manifest is not JSON") from None
    value = doc.get("mediaType") if isinstance(doc, dict) else None
    if isinstance(value, str):
        return value
    return "application/vnd.oci.image.index.v1+json" if "manifests" in doc else OCI_MANIFEST


def _metadata(plan: _Plan) -> list[tuple[str, bytes]]:
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPES[0], "manifests": plan.entries}
    manifest = []
    repositories: dict[str, dict[str, str]] = {}
    for (config, layers), tags in plan.docker.items():
        manifest.append(
            {
                "Config": f"blobs/{config.algorithm}/{config.hex}",
                "RepoTags": tags,
                "Layers": [f"blobs/{d.algorithm}/{d.hex}" for d in layers],
            }
        )
        for tag in tags:
            name, _, t = tag.rpartition(":")
            # docker's legacy "top layer ID"; nothing reads it but the pre-1.10 loader.
            repositories.setdefault(name, {})[t] = layers[-1].hex if layers else config.hex
    return [
        ("oci-layout", json.dumps(OCI_LAYOUT).encode()),
        ("index.json", json.dumps(index).encode()),
        ("manifest.json", json.dumps(manifest).encode()),
        ("repositories", json.dumps(repositories).encode()),
    ]


def _write(store: Store, plan: _Plan, out: BinaryIO) -> int:
    tar = TarWriter(out)
    for name, doc in _metadata(plan):
        tar.file(name, doc)
    tar.directory("blobs")
    tar.directory("blobs/sha256")
    for digest, (size, content) in plan.blobs.items():
        name = f"blobs/{digest.algorithm}/{digest.hex}"
        if content is not None:
            tar.file(name, content)
            continue
        tar.header(name, size)
        path = str(store.blob_path(digest))
        verifier = Verifier(digest, size, path)
        with store.open_blob(digest) as f:
            left = size
            while left:
                try:
                    chunk = f.read(min(CHUNK, left))
                except OSError as e:
                    raise StoreError(f"cannot read {path}: {e.strerror or e}", path=path) from e
                if not chunk:
                    break
                verifier.update(chunk)
                tar.data(chunk)
                left -= len(chunk)
        verifier.verify()  # a blob changed in the store since it was pulled: run pypull verify
        tar.end_member(size)
    tar.close()
    return tar.size


def save(
    images: Sequence[str | Reference],
    output: str | os.PathLike[str] | BinaryIO,
    *,
    store: str | os.PathLike[str] | Store | None = None,
) -> SaveResult:
    """Write ``images`` from the store to ``output`` (a path, or a binary stream such as
    ``sys.stdout.buffer``) as one archive (see the module's docstring). Blocking. An image the
    store lacks, or lacks part of, raises ``NotFound`` before anything is written; a blob that
    no longer matches its digest raises ``DigestMismatch`` and, for a path, leaves no file."""
    held = as_store(store)
    refs = list(dict.fromkeys(r if isinstance(r, Reference) else parse(r) for r in images))
    with held.lease():  # a concurrent prune leaves what is being saved
        plan = _plan(held, refs)
        if isinstance(output, (str, os.PathLike)):
            with output_file(output) as f:
                size = _write(held, plan, f)
        else:
            size = _write(held, plan, output)
    return SaveResult(tuple(plan.saved), len(plan.blobs), size)


# -- load -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadedImage:
    """One name added to the store, and the digest its ``index.json`` entry points at."""

    reference: Reference
    digest: Digest


@dataclass(frozen=True, slots=True)
class LoadResult:
    images: tuple[LoadedImage, ...]
    untagged: tuple[Digest, ...]  # images without a name (their config digest, docker's ID)
    blobs: int  # blobs the store did not have before
    format: str  # "oci" (index.json) or "docker" (manifest.json only)


@dataclass(frozen=True, slots=True)
class _Blob:
    digest: Digest
    size: int


class _Loader:
    def __init__(self, staging: Staging, where: str) -> None:
        self.store = staging  # blobs staged from the archive, then the store's
        self.where = where
        self.files: dict[str, _Blob] = {}
        self.links: dict[str, str] = {}
        self.docs: dict[str, bytes] = {}
        self.declared = Declared(staging, where)
        #: Blobs the archive's images use, each once, in the order met (manifests first).
        self.used: dict[Digest, Any] = {}
        # What was read of the store once, by digest: a 4 MiB manifest.json or index.json can
        # name one config or manifest of megabytes tens of thousands of times.
        self._walked: dict[tuple[Digest, int, str], Manifest | Index] = {}
        self._configs: dict[Digest, list[Digest]] = {}
        self._layers: dict[Digest, tuple[str, Digest]] = {}

    # -- reading the archive

    def read(self, stream: BinaryIO) -> None:
        source = StreamSource(stream, self.where)
        try:
            self._read(source)
        except TarError as e:
            raise ArchiveError(str(e)) from None

    def _read(self, source: StreamSource) -> None:
        for member in members(source, self.where, _POLICY):
            self.store.touch()
            if member.kind == DIR:
                continue
            if member.kind == LINK:
                self.links[member.name] = member.target
                self.declared.link(member.name, member.target, self.links)
                continue
            name = member.name
            if name in ("index.json", "manifest.json"):
                if name in self.docs:
                    raise ArchiveError(f"{self.where}: {name} appears twice")
                if member.size > MAX_MANIFEST_SIZE:
                    raise ArchiveError(
                        f"{self.where}: its {name} is {member.size} bytes, over the "
                        f"{MAX_MANIFEST_SIZE >> 20} MiB pypull reads"
                    )
                doc = self.docs[name] = b"".join(source.chunks(member.size))
                if name == "index.json":
                    self.declared.index(doc)
                else:
                    self.declared.docker(doc, self.links)
            elif name in _IGNORED or name.rpartition("/")[2] in _IGNORED_BASENAMES:
                continue
            else:
                self._member(source, name, member.size)

    def _member(self, source: StreamSource, name: str, size: int) -> None:
        """Stage a member that may be an image's content (``Declared.wanted``); read past
        the others unwritten."""
        expected = named_digest(name, self.where)
        if expected is not None and self.store.has(expected):
            # A verified copy is there, and these bytes go unused; its size is the one to
            # trust, not the member's.
            self.files[name] = _Blob(expected, self.store.size(expected))
        elif self.declared.wanted(name, size):
            what = f"{self.where}: {shown(name)}"
            digest = self.store.add(source.chunks(size), expected, what, size)
            self.declared.staged(digest)
            self.files[name] = _Blob(digest, self.store.size(digest))
            return
        for _ in source.chunks(size):
            pass

    def resolve(self, path: str, what: str) -> _Blob:
        """The member ``path`` names, through links (clean, relative to the archive's root)."""
        name = clean_name(path)
        for _ in range(MAX_HOPS):
            if name in self.files:
                return self.files[name]
            if name not in self.links:
                raise ArchiveError(f"{self.where}: {what} names '{shown(path, 200)}', not in it")
            name = self.links[name]
        raise ArchiveError(f"{self.where}: {what}: links to '{shown(path, 200)}' go round")

    # -- the images

    def images(self) -> tuple[list[tuple[Reference, Descriptor]], list[Digest], str]:
        if "index.json" in self.docs:
            return (*self._oci(), "oci")
        if "manifest.json" in self.docs:
            return (*self._legacy(), "docker")
        raise ArchiveError(
            f"{self.where}: neither index.json nor manifest.json: not an image archive"
        )

    def _json(self, name: str) -> Any:
        try:
            return json.loads(self.docs[name])
        except (ValueError, RecursionError):
            raise ArchiveError(f"{self.where}: its {name} is not valid JSON") from None

    def _docker_items(self) -> list[dict[str, Any]]:
        if "manifest.json" not in self.docs:
            return []
        doc = self._json("manifest.json")
        if not isinstance(doc, list) or not all(isinstance(i, dict) for i in doc):
            raise ArchiveError(f"{self.where}: its manifest.json is not a list of images")
        return doc

    def _repo_tags(self, item: dict[str, Any], what: str) -> list[Reference]:
        tags = item.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ArchiveError(f"{self.where}: {what}: RepoTags is not a list of names")
        return [self._reference(t, what) for t in tags]

    def _reference(self, text: str, what: str) -> Reference:
        try:
            return parse(text)
        except PullError as e:
            raise ArchiveError(f"{self.where}: {what}: {e}") from None

    def _oci(self) -> tuple[list[tuple[Reference, Descriptor]], list[Digest]]:
        doc = self._json("index.json")
        entries = doc.get("manifests") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            raise ArchiveError(f"{self.where}: its index.json has no manifests list")
        # Names docker's view gives a config, for an entry index.json leaves unnamed.
        by_config: dict[str, list[dict[str, Any]]] = {}
        for item in self._docker_items():
            if isinstance(item.get("Config"), str):
                by_config.setdefault(item["Config"], []).append(item)
        named: list[tuple[Reference, Descriptor]] = []
        untagged: list[Digest] = []
        for i, raw_entry in enumerate(entries):
            what = f"index.json entry {i}"
            try:
                entry = parse_descriptor(raw_entry, what)
            except ManifestError as e:
                raise ArchiveError(f"{self.where}: {e}") from None
            top = self._complete(entry, what)
            names = self._names(entry, what)
            if not names and isinstance(top, Manifest):
                for item in by_config.get(f"blobs/sha256/{top.config.digest.hex}", []):
                    names += self._repo_tags(item, f"manifest.json for {what}")
            kept = {}
            with contextlib.suppress(InvalidDigest):
                resolved = parse_digest(entry.annotations.get(RESOLVED_ANNOTATION, ""))
                if resolved != entry.digest:
                    kept[RESOLVED_ANNOTATION] = str(resolved)
            stored = Descriptor(entry.media_type, entry.digest, entry.size, entry.platform, kept)
            named += [(ref, stored) for ref in names]
            if not names:
                untagged.append(top.config.digest if isinstance(top, Manifest) else entry.digest)
        self._check_sizes()
        return named, untagged

    def _check_sizes(self) -> None:
        """Each blob the images use is the size their manifests give it: a member staged
        before the manifest that names it was not checked against it (``Declared.wanted``)."""
        for digest, (size, _) in self.used.items():
            got = self.store.size(digest)
            if got != size:
                raise ArchiveError(
                    f"{self.where}: {digest} is {got} bytes; the archive's manifests say {size}"
                )

    def _names(self, entry: Descriptor, what: str) -> list[Reference]:
        """containerd's name, else the OCI ref name when it is a reference (``redis:7``), not a
        bare tag (``7``, which is all docker writes there)."""
        name = entry.annotations.get(CONTAINERD_NAME)
        if name is None:
            ref_name = entry.annotations.get(REF_NAME_ANNOTATION, "")
            name = ref_name if ("/" in ref_name or ":" in ref_name) else None
        return [] if name is None else [self._reference(name, what)]

    def _complete(self, desc: Descriptor, what: str) -> Manifest | Index:
        """The manifest or index ``desc`` names, with everything it needs in the store."""
        key = (desc.digest, desc.size, desc.media_type)  # all three checked by the walk
        if key not in self._walked:
            self._walked[key] = self._walk(desc, what)
        return self._walked[key]

    def _walk(self, desc: Descriptor, what: str) -> Manifest | Index:
        if desc.media_type not in MANIFEST_TYPES and desc.media_type not in INDEX_TYPES:
            raise ArchiveError(f"{self.where}: {what} is a {shown(desc.media_type)}, no image")
        try:
            return _walk(self.store, desc, f"{self.where}: {what}", self.used)
        except NotFound as e:
            message = str(e).replace(f"the store {self.store.root}", "the archive")
            raise ArchiveError(message) from None

    def _legacy(self) -> tuple[list[tuple[Reference, Descriptor]], list[Digest]]:
        named: list[tuple[Reference, Descriptor]] = []
        untagged: list[Digest] = []
        for i, item in enumerate(self._docker_items()):
            what = f"manifest.json image {i}"
            config_path, layer_paths = item.get("Config"), item.get("Layers")
            if not isinstance(config_path, str) or not isinstance(layer_paths, list):
                raise ArchiveError(f"{self.where}: {what} has no Config or no Layers")
            if not all(isinstance(p, str) for p in layer_paths):
                raise ArchiveError(f"{self.where}: {what}: Layers is not a list of paths")
            config = self.resolve(config_path, what)
            diff_ids = self._diff_ids(config, what)
            if len(diff_ids) != len(layer_paths):
                raise ArchiveError(
                    f"{self.where}: {what} has {len(layer_paths)} layers, its config "
                    f"{len(diff_ids)} diff_ids"
                )
            layers = []
            for n, (path, diff_id) in enumerate(zip(layer_paths, diff_ids, strict=True)):
                blob = self.resolve(path, what)
                media_type, got = self._uncompressed(blob)
                if got != diff_id:
                    raise ArchiveError(
                        f"{self.where}: {what}: layer {n} ({shown(path, 200)}) is {got} "
                        f"uncompressed; its config says {diff_id}"
                    )
                layers.append(Descriptor(media_type, blob.digest, blob.size))
            doc = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": Descriptor(OCI_CONFIG, config.digest, config.size).to_dict(),
                "layers": [d.to_dict() for d in layers],
            }
            raw = json.dumps(doc, separators=(",", ":")).encode()
            digest = digest_of(raw)
            self.store.put_bytes(digest, raw, self.where)
            self.used.update(dict.fromkeys([digest, config.digest, *(d.digest for d in layers)]))
            entry = Descriptor(OCI_MANIFEST, digest, len(raw))
            refs = self._repo_tags(item, what)
            named += [(ref, entry) for ref in refs]
            if not refs:
                untagged.append(config.digest)
        return named, untagged

    def _diff_ids(self, config: _Blob, what: str) -> list[Digest]:
        if config.digest not in self._configs:
            self._configs[config.digest] = self._read_diff_ids(config, what)
        return self._configs[config.digest]

    def _read_diff_ids(self, config: _Blob, what: str) -> list[Digest]:
        if config.size > MAX_CONFIG_SIZE:
            raise ArchiveError(
                f"{self.where}: {what}: its config is {config.size} bytes, over the "
                f"{MAX_CONFIG_SIZE >> 20} MiB pypull reads"
            )
        raw = self.store.read_blob(config.digest, MAX_CONFIG_SIZE + 1)
        verify_bytes(raw, config.digest, config.size, str(self.store.blob_path(config.digest)))
        try:
            doc = json.loads(raw)
            ids = doc["rootfs"]["diff_ids"]
            if not isinstance(ids, list):
                raise TypeError
            return [parse_digest(d) for d in ids]
        except (ValueError, RecursionError, KeyError, TypeError):
            raise ArchiveError(f"{self.where}: {what}: its config has no rootfs.diff_ids") from None

    def _uncompressed(self, blob: _Blob) -> tuple[str, Digest]:
        """A layer's media type and digest uncompressed (its diff_id): docker's loader takes
        a layer.tar compressed too (crane writes them gzipped), so a gzip or zstd one is
        hashed inflated and keeps its compression in its media type."""
        if blob.digest not in self._layers:
            self._layers[blob.digest] = self._inflated(blob)
        return self._layers[blob.digest]

    def _inflated(self, blob: _Blob) -> tuple[str, Digest]:
        with self.store.open_blob(blob.digest) as f:
            compression = compression_of(f.read(4))
            if not compression:
                return OCI_LAYER, blob.digest
            f.seek(0)
            hasher = hashlib.sha256()
            try:
                where = f"{self.where}: {blob.digest}"
                for piece in inflated(iter(lambda: f.read(CHUNK), b""), compression, where):
                    hasher.update(piece)
            except TarError as e:
                raise ArchiveError(str(e)) from None
            return f"{OCI_LAYER}+{compression}", Digest("sha256", hasher.hexdigest())


@contextlib.contextmanager
def _opened(source: str | os.PathLike[str] | BinaryIO) -> Iterator[tuple[BinaryIO, str]]:
    """The archive as a stream, inflated when it is gzipped (as ``docker load`` takes it)."""
    if isinstance(source, (str, os.PathLike)):
        where = str(source)
        try:
            raw: BinaryIO = open(source, "rb")  # noqa: SIM115 (closed below)
        except OSError as e:
            raise PullError(f"cannot read {shown(where)}: {e.strerror or e}") from None
    else:
        where = str(getattr(source, "name", "the archive"))
        raw = source
    try:
        buffered: Any = raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[type-var,unused-ignore]
        if buffered.peek(2)[:2] == b"\x1f\x8b":
            inflated: Any = gzip.GzipFile(fileobj=buffered, mode="rb")
            yield inflated, where
        else:
            yield buffered, where
    finally:
        if isinstance(source, (str, os.PathLike)):
            raw.close()


def load(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    store: str | os.PathLike[str] | Store | None = None,
) -> LoadResult:
    """Read an archive (``pypull save``'s, ``docker save``'s of any version; see the module's
    docstring) from ``source`` (a path or a binary stream) into the store, every blob
    verified, and name its images there. Blocking. A bad archive raises ``ArchiveError`` (or
    a ``VerificationError`` for a blob that does not match its name), names nothing, and
    leaves no store where there was none."""
    held = as_store(store)
    with (
        _opened(source) as (stream, where),
        held.whole_or_unmade(),
        held.lease(),
        Staging(held) as staging,
    ):
        loader = _Loader(staging, shown(where))
        try:
            loader.read(stream)
        except (OSError, EOFError, zlib.error) as e:
            reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
            raise ArchiveError(f"cannot read {shown(where)}: {reason}") from None
        named, untagged, kind = loader.images()
        # What the images use, manifests last; what nothing uses goes with the staging.
        written = staging.commit(reversed(list(loader.used)))
        if named:
            held.tag_many([(str(ref), entry) for ref, entry in named])
    return LoadResult(
        tuple(LoadedImage(ref, entry.digest) for ref, entry in named),
        tuple(untagged),
        written,
        kind,
    )
