"""The store as a tool for scripts: what an image is (``inspect``), which tags a repository has
(``tags``), which images the store holds (``images``). Each answer is a typed record; only the CLI
turns it into text.

    info = await puller.inspect("redis:7", store="./store")
    print(info.digest, info.architecture, info.to_dict()["Env"])

``ImageInfo.to_dict()`` (``to_json()``: the same as JSON text) has the shape ``skopeo
inspect`` prints (``Name``, ``Digest``, ``RepoTags``, ``Created``, ``DockerVersion``, ``Labels``,
``Architecture``, ``Variant`` when set, ``Os``, ``Layers``, ``LayersData``, ``Env``), plus
``Entrypoint``, ``Cmd``, ``WorkingDir`` and ``User`` from the config, so a script written
against skopeo reads it unchanged.

Everything read here may have been written by someone else (a registry, another user of a shared
store): manifests are read through ``Store.read_manifest`` (bounded, verified), configs to at most
``MAX_CONFIG_SIZE`` and checked against their digest, and every blob through the ``Store`` API
under a lease (``Store.lease``), so a concurrent ``pypull prune`` never takes a blob between the
look and the read. ``inspect`` with
``remote`` asks the registry through the mirrors and credentials a pull uses and writes nothing:
it asks for the manifest (and the platform's manifest, for an index) and the config blob, no layer.

The network stack is imported only by ``remote`` and ``tags``: ``images`` and a local ``inspect``
read files only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import InvalidDigest, PlatformNotFound, PullError
from .oci.digest import Digest, parse_digest
from .oci.manifest import (
    MANIFEST_TYPES,
    REF_NAME_ANNOTATION,
    Descriptor,
    Index,
    Manifest,
    Platform,
    host_platform,
    parse_manifest,
    parse_platform,
    select_platform,
)
from .oci.reference import Reference, parse
from .store.images import (
    MAX_CONFIG_SIZE,
    check_config_size,
    check_platform,
    config_document,
    stored_image,
    stored_manifest,
)
from .store.layout import RESOLVED_ANNOTATION, Store, as_store
from .tasks import blocking

if TYPE_CHECKING:
    from .session import Session

__all__ = [
    "MAX_CONFIG_SIZE",
    "ImageInfo",
    "ImageRecord",
    "images",
    "inspect",
    "inspect_sync",
    "tags",
    "tags_sync",
]


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """One image, as ``pypull inspect`` describes it.

    ``digest`` is what the reference resolved to when it was pulled (an index, for a
    multi-platform image); ``manifest`` and ``raw`` are the platform's manifest as the registry
    served it when that is known (a Docker v2 manifest stays Docker), else as stored.
    """

    reference: Reference
    digest: Digest
    repo_tags: tuple[str, ...]
    manifest_digest: Digest
    manifest: Manifest
    created: str | None
    docker_version: str
    labels: dict[str, str] | None
    architecture: str
    os: str
    variant: str | None
    env: tuple[str, ...] | None
    entrypoint: tuple[str, ...] | None
    cmd: tuple[str, ...] | None
    working_dir: str
    user: str
    raw: bytes = field(repr=False)
    raw_config: bytes = field(repr=False)

    @property
    def name(self) -> str:
        """The repository, normalized: ``docker.io/library/redis``."""
        return self.reference.name

    @property
    def config(self) -> Descriptor:
        return self.manifest.config

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        return self.manifest.layers

    def to_json(self, indent: int | None = 4) -> str:
        """What ``pypull inspect`` prints: ``to_dict()`` as JSON text (indented as skopeo's)."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_dict(self) -> dict[str, Any]:
        """skopeo's field names and types: ``null`` for absent lists and maps, ``""`` for
        absent strings, ``Variant`` left out when empty (as skopeo's ``omitempty``)."""
        out: dict[str, Any] = {
            "Name": self.name,
            "Digest": str(self.digest),
            "RepoTags": list(self.repo_tags),
            "Created": self.created,
            "DockerVersion": self.docker_version,
            "Labels": None if self.labels is None else dict(self.labels),
            "Architecture": self.architecture,
        }
        if self.variant:
            out["Variant"] = self.variant
        out["Os"] = self.os
        out["Layers"] = [str(d.digest) for d in self.layers]
        out["LayersData"] = [
            {
                "MIMEType": d.media_type,
                "Digest": str(d.digest),
                "Size": d.size,
                "Annotations": dict(d.annotations) if d.annotations else None,
            }
            for d in self.layers
        ]
        out["Env"] = _list(self.env)
        out["Entrypoint"] = _list(self.entrypoint)
        out["Cmd"] = _list(self.cmd)
        out["WorkingDir"] = self.working_dir
        out["User"] = self.user
        return out


def _list(value: tuple[str, ...] | None) -> list[str] | None:
    return None if value is None else list(value)


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image of the store (one ``index.json`` entry), as ``pypull images`` lists it.

    ``id`` is the config's digest (docker's image ID) and ``size`` the bytes of config and
    layers as stored, compressed: what the image takes on disk and on the wire, not its
    unpacked size (which no manifest records). For an entry that is an index (``pull
    --all-platforms``) both are those of this machine's platform (of its first platform when it
    has none for this machine); ``platforms`` lists what it holds. Both are None when the store
    lacks the image's manifest or it cannot be read.
    """

    reference: Reference
    digest: Digest
    id: Digest | None
    size: int | None
    platforms: tuple[str, ...] = ()

    def to_json(self) -> str:
        """One line of ``pypull images --format json``: ``to_dict()`` as JSON text."""
        return json.dumps(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The fields of one line of ``pypull images --format json``."""
        return {
            "Name": str(self.reference),
            "Repository": self.reference.familiar_name,
            "Tag": self.reference.tag,
            "Digest": str(self.digest),
            "ID": None if self.id is None else str(self.id),
            "Size": self.size,
            "Platforms": list(self.platforms),
        }


# -- reading the store ----------------------------------------------------------------------------


def _same_image(a: Manifest, b: Manifest) -> bool:
    return a.config.digest == b.config.digest and [d.digest for d in a.layers] == [
        d.digest for d in b.layers
    ]


def _served(
    store: Store, entry: Descriptor, stored: Manifest, platform: Platform, what: str
) -> tuple[Digest, bytes, Manifest] | None:
    """The platform's manifest as the registry served it, when the store keeps it: the
    resolved digest itself (a Docker v2 image, stored in OCI form), or that index's child for
    ``platform``. Only a manifest of the same config and layers counts."""
    try:
        resolved = parse_digest(entry.annotations.get(RESOLVED_ANNOTATION, ""))
    except InvalidDigest:
        return None
    try:
        if not store.has(resolved):
            return None
        raw = store.read_manifest(resolved)
        parsed = parse_manifest(raw, None, what)
        digest = resolved
        if isinstance(parsed, Index):
            child = select_platform(parsed, platform, what)
            if not store.has(child.digest):
                return None
            raw = store.read_manifest(child.digest, child.size)
            parsed = parse_manifest(raw, child.media_type, what)
            digest = child.digest
    except PullError:
        return None  # not what we thought it was: the stored form is the answer
    if isinstance(parsed, Manifest) and _same_image(parsed, stored):
        return digest, raw, parsed
    return None


def _repo_tags(store: Store, ref: Reference) -> tuple[str, ...]:
    """The tags the store holds for ``ref``'s repository, sorted."""
    found: set[str] = set()
    for entry in store.entries():
        try:
            other = parse(entry.annotations.get(REF_NAME_ANNOTATION, ""))
        except PullError:
            continue
        if other.name == ref.name and other.tag is not None:
            found.add(other.tag)
    return tuple(sorted(found))


def _local(store: Store, ref: Reference, platform: Platform | None) -> ImageInfo:
    with store.lease():  # what has() found stays until it is read, whatever a prune decides
        return _described(store, ref, platform)


def _described(store: Store, ref: Reference, platform: Platform | None) -> ImageInfo:
    what = str(ref)
    entry, chosen, raw, manifest, config_raw = stored_image(
        store, ref, platform, ", or use --remote"
    )
    info = _from_config(config_raw, what)
    actual = Platform(info["os"], info["architecture"], info["variant"])
    if chosen is entry:
        check_platform(platform, actual, what)
    digest = chosen.digest
    served = _served(store, entry, manifest, chosen.platform or actual, what)
    if served is not None:
        digest, raw, manifest = served
    try:
        resolved = parse_digest(entry.annotations.get(RESOLVED_ANNOTATION, str(entry.digest)))
    except InvalidDigest:
        resolved = entry.digest
    return ImageInfo(
        reference=ref,
        digest=resolved,
        repo_tags=_repo_tags(store, ref),
        manifest_digest=digest,
        manifest=manifest,
        raw=raw,
        raw_config=config_raw,
        **info,
    )


# -- the config -----------------------------------------------------------------------------------


def _from_config(raw: bytes, what: str) -> dict[str, Any]:
    """The fields of ``ImageInfo`` a config gives; values of the wrong type count as absent
    (another tool's config may carry anything)."""
    doc = config_document(raw, what)
    inner = doc.get("config")
    if not isinstance(inner, dict):
        inner = {}
    labels = inner.get("Labels")
    return {
        "created": _string(doc.get("created")) or None,
        "docker_version": _string(doc.get("docker_version")),
        "labels": (
            {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else None
        ),
        "architecture": _string(doc.get("architecture")),
        "os": _string(doc.get("os")),
        "variant": _string(doc.get("variant")) or None,
        "env": _strings(inner.get("Env")),
        "entrypoint": _strings(inner.get("Entrypoint")),
        "cmd": _strings(inner.get("Cmd")),
        "working_dir": _string(inner.get("WorkingDir")),
        "user": _string(inner.get("User")),
    }


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


# -- the registry ---------------------------------------------------------------------------------


async def _remote(session: Session, ref: Reference, platform: Platform | None) -> ImageInfo:
    """As a pull resolves (``Session.resolve``: HEAD first when the store knows the tag, then
    the manifest and the platform's child), and the config as a copy reads a blob
    (``Session.read_blob``: verified, from the store when it has it). No layer is asked for and
    nothing is written."""
    what = str(ref)
    resolved = await session.resolve(ref, platform or host_platform())
    manifest = resolved.manifest
    raw = resolved.raws[0][1]
    config = manifest.config
    check_config_size(config, what)
    config_raw = await session.read_blob(ref, config, resolved.endpoint)
    info = _from_config(config_raw, what)
    if resolved.platform is None:  # not chosen from an index
        check_platform(platform, Platform(info["os"], info["architecture"], info["variant"]), what)
    return ImageInfo(
        reference=ref,
        digest=resolved.digest,
        repo_tags=(),
        manifest_digest=resolved.manifest_digest,
        manifest=manifest,
        raw=raw,
        raw_config=config_raw,
        **info,
    )


# -- the public functions -------------------------------------------------------------------------


def _reference(image: str | Reference) -> Reference:
    return image if isinstance(image, Reference) else parse(image)


def _platform(platform: str | Platform | None) -> Platform | None:
    return parse_platform(platform) if isinstance(platform, str) else platform


async def inspect(
    image: str | Reference,
    *,
    store: str | os.PathLike[str] | Store | None = None,
    platform: str | Platform | None = None,
    remote: bool = False,
    puller: Session | None = None,
    **options: Any,
) -> ImageInfo:
    """Describe ``image``: from the store (default), or with ``remote`` from its registry,
    through ``puller`` (a ``Session``, such as a ``Puller``; or a ``Session(store, **options)``
    made for the call: ``mirrors``, ``registries``, ``credentials``...). ``platform`` picks the
    child of a multi-platform image (default: this machine's); a single-platform image of
    another platform raises ``PlatformNotFound``. The store read is ``puller``'s when it is
    given. An image the store lacks raises ``NotFound``."""
    import asyncio

    ref = _reference(image)
    want = _platform(platform)
    if remote:
        if puller is not None:
            return await _remote(puller, ref, want)
        from .session import Session

        async with Session(store, **options) as made:
            return await _remote(made, ref, want)
    held = puller.store if puller is not None else as_store(store)
    return await asyncio.get_running_loop().run_in_executor(None, _local, held, ref, want)


async def tags(
    repository: str | Reference,
    *,
    puller: Session | None = None,
    store: str | os.PathLike[str] | Store | None = None,
    **options: Any,
) -> list[str]:
    """The registry's tags of ``repository``, in the order it lists them, every ``Link`` page
    followed; asked through its mirrors and credentials as a pull is (``puller``: a
    ``Session``, such as a ``Puller``; or a ``Session(store, **options)`` made for the call). A
    tag or digest in ``repository`` is ignored here; the CLI refuses one, as ``skopeo
    list-tags`` does."""
    ref = _reference(repository)
    if puller is not None:
        return await puller.tags(ref)
    from .session import Session

    async with Session(store, **options) as made:
        return await made.tags(ref)


def images(store: str | os.PathLike[str] | Store | None = None) -> list[ImageRecord]:
    """Every named image of the store, sorted by repository and tag. Blocking: it reads each
    image's manifest (bounded and verified), never a layer."""
    held = as_store(store)
    records = []
    with held.lease():  # as _local: a concurrent prune leaves what is being read
        for entry in held.entries():
            try:
                ref = parse(entry.annotations.get(REF_NAME_ANNOTATION, ""))
            except PullError:
                continue  # unnamed, or a name that is no reference: not one of ours to list
            try:
                resolved = parse_digest(
                    entry.annotations.get(RESOLVED_ANNOTATION, str(entry.digest))
                )
            except InvalidDigest:
                resolved = entry.digest
            records.append(_record(held, entry, ref, resolved))
    records.sort(key=lambda r: (r.reference.familiar_name, r.reference.tag or "", str(r.digest)))
    return records


def _record(store: Store, entry: Descriptor, ref: Reference, resolved: Digest) -> ImageRecord:
    what = str(ref)
    try:
        _, parsed = stored_manifest(store, entry, what)
        platforms: tuple[str, ...] = ()
        if isinstance(parsed, Index):
            platforms = tuple(
                str(d.platform)
                for d in parsed.manifests
                if d.platform is not None and d.platform.os != "unknown"
            )
            _, parsed = stored_manifest(store, _default_child(parsed, what), what)
    except PullError:
        return ImageRecord(ref, resolved, None, None)
    if not isinstance(parsed, Manifest):  # an index in an index: not an image pypull reads
        return ImageRecord(ref, resolved, None, None, platforms)
    manifest = parsed
    size = manifest.config.size + sum(d.size for d in manifest.layers)
    return ImageRecord(ref, resolved, manifest.config.digest, size, platforms)


def _default_child(index: Index, what: str) -> Descriptor:
    """This machine's platform in ``index``, else its first image manifest."""
    try:
        return select_platform(index, host_platform(), what)
    except PlatformNotFound:
        for d in index.manifests:
            if d.media_type in MANIFEST_TYPES:
                return d
        raise


#: ``inspect`` and ``tags`` for code that is not async (``images`` blocks already).
inspect_sync = blocking(inspect, "inspect_sync")
tags_sync = blocking(tags, "tags_sync")
