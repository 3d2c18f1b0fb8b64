"""Images in the store: the ``index.json`` entry a reference names, the platform's manifest and
the config, each read bounded and verified. What every operation that reads a stored image
shares (inspect, unpack, export, save).

Everything read here may have been written by someone else (a registry, another user of a
shared store): manifests through ``Store.read_manifest`` (bounded, verified), configs to at most
``MAX_CONFIG_SIZE`` and checked against their digest. The caller holds the store's lease, so
what ``has()`` found stays until it is read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from ..errors import InvalidDigest, ManifestError, NotFound, PlatformNotFound, PullError
from ..oci.digest import Digest, parse_digest, verify_bytes
from ..oci.manifest import (
    REF_NAME_ANNOTATION,
    Descriptor,
    Index,
    Manifest,
    Platform,
    host_platform,
    parse_manifest,
    select_platform,
)
from ..oci.reference import Reference, parse
from .layout import RESOLVED_ANNOTATION, Store

__all__ = [
    "MAX_CONFIG_SIZE",
    "ManifestReader",
    "check_config_size",
    "check_platform",
    "config_document",
    "config_platform",
    "find_entry",
    "local_image",
    "platform_manifest",
    "read_config",
    "stored_image",
    "stored_manifest",
]

#: An image config is a few KiB (tens with a long history); a larger one is a mistake or an
#: attack, and is never read into memory.
MAX_CONFIG_SIZE = 8 << 20


class ManifestReader(Protocol):
    """What reading a manifest takes: a ``Store``, or a load's ``Staging`` in front of one."""

    @property
    def root(self) -> Path: ...

    def has(self, digest: Digest) -> bool: ...

    def read_manifest(self, digest: Digest, size: int | None = None) -> bytes: ...


def stored_manifest(
    store: ManifestReader, desc: Descriptor, what: str
) -> tuple[bytes, Manifest | Index]:
    """The manifest ``desc`` names, read from the store (bounded, verified) and parsed; for
    every command that reads an image out of the store."""
    if not store.has(desc.digest):
        raise NotFound(f"{what}: the store {store.root} lacks its manifest {desc.digest}")
    raw = store.read_manifest(desc.digest, desc.size)
    return raw, parse_manifest(raw, desc.media_type, f"{what} in the store")


def platform_manifest(
    store: Store, entry: Descriptor, want: Platform | None, what: str
) -> tuple[Descriptor, bytes, Manifest]:
    """The image manifest an entry stands for: itself, or for an index the child of ``want``
    (default: this machine's platform), as stored."""
    raw, parsed = stored_manifest(store, entry, what)
    if isinstance(parsed, Manifest):
        return entry, raw, parsed
    chosen = select_platform(parsed, want or host_platform(), what)
    raw, child = stored_manifest(store, chosen, what)
    if isinstance(child, Index):
        raise ManifestError(f"{what}: an index in an index; nested indexes are not supported")
    return chosen, raw, child


def read_config(store: Store, desc: Descriptor, what: str) -> bytes:
    """The config blob, read to at most ``MAX_CONFIG_SIZE`` and verified."""
    check_config_size(desc, what)
    if not store.has(desc.digest):
        raise NotFound(f"{what}: the store {store.root} lacks its config {desc.digest}")
    raw = store.read_blob(desc.digest, desc.size + 1)
    verify_bytes(raw, desc.digest, desc.size, str(store.blob_path(desc.digest)))
    return raw


def check_config_size(desc: Descriptor, what: str) -> None:
    if desc.size > MAX_CONFIG_SIZE:
        raise ManifestError(
            f"{what}: its config {desc.digest} is {desc.size} bytes, over the "
            f"{MAX_CONFIG_SIZE >> 20} MiB pypull reads"
        )


def find_entry(store: Store, ref: Reference) -> Descriptor | None:
    """The entry for ``ref``; by digest, also an entry of its repository pulled by tag that
    resolved to (or is) that digest."""
    entry = store.lookup(str(ref))
    if entry is not None or ref.digest is None:
        return entry
    for candidate in store.entries():
        name = candidate.annotations.get(REF_NAME_ANNOTATION, "")
        try:
            if parse(name).name != ref.name:
                continue
        except PullError:
            continue
        resolved = candidate.annotations.get(RESOLVED_ANNOTATION)
        if ref.digest == candidate.digest or resolved == str(ref.digest):
            return candidate
    return None


def stored_image(
    store: Store, ref: Reference, platform: Platform | None, advice: str
) -> tuple[Descriptor, Descriptor, bytes, Manifest, bytes]:
    """``ref``'s index.json entry, the descriptor of its platform's manifest (the entry itself
    for a single-platform image), that manifest's bytes and parse, and its config's bytes.
    ``advice`` ends the message of an image the store lacks."""
    what = str(ref)
    entry = find_entry(store, ref)
    if entry is None:
        raise NotFound(f"{what}: not in the store {store.root} (pull it first{advice})")
    chosen, raw, manifest = platform_manifest(store, entry, platform, what)
    return entry, chosen, raw, manifest, read_config(store, manifest.config, what)


def local_image(store: Store, ref: Reference, platform: Platform | None) -> tuple[Manifest, bytes]:
    """The platform's manifest of ``ref`` in ``store`` and its config's bytes (bounded and
    verified), as ``inspect`` finds them: for what reads the image's layers (unpack, export).
    The caller holds the store's lease, so the blobs stay for the reads that follow."""
    what = str(ref)
    entry, chosen, _, manifest, config_raw = stored_image(store, ref, platform, "")
    if chosen is entry:
        check_platform(platform, config_platform(config_document(config_raw, what)), what)
    return manifest, config_raw


def check_platform(wanted: Platform | None, actual: Platform, what: str) -> None:
    """A platform asked of a single-platform image must be its own: describing another one
    instead would answer a different question (a pull, which has to pull something, does)."""
    if wanted is not None and not actual.matches(wanted):
        raise PlatformNotFound(str(wanted), [str(actual)], what)


def config_document(raw: bytes, what: str) -> dict[str, Any]:
    """An image config's JSON object, or ``ManifestError``."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise ManifestError(f"{what}: its config is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{what}: its config is not a JSON object")
    return doc


def config_platform(doc: dict[str, Any]) -> Platform:
    """The platform a config says it is for; values of the wrong type count as absent."""

    def string(key: str) -> str:
        value = doc.get(key)
        return value if isinstance(value, str) else ""

    return Platform(string("os"), string("architecture"), string("variant") or None)


def stored_layers(
    store: Store, ref: Reference, platform: Platform | None
) -> list[tuple[Descriptor, Digest]]:
    """The image's layers with their diff_ids from its config, every one in the store (and
    held by its lease)."""
    what = str(ref)
    manifest, config = local_image(store, ref, platform)
    layers = _with_diff_ids(manifest.layers, config, what)
    for i, (layer, _) in enumerate(layers):
        if not store.has(layer.digest):
            raise NotFound(
                f"{what}: the store {store.root} lacks its layer {i + 1} "
                f"{layer.digest} (pull it again)"
            )
    return layers


def _with_diff_ids(
    manifest_layers: tuple[Descriptor, ...], config: bytes, what: str
) -> list[tuple[Descriptor, Digest]]:
    """The manifest's layers, each with its diff_id from the config."""
    try:
        doc = json.loads(config)
        diff_ids = doc["rootfs"]["diff_ids"]
        if not isinstance(diff_ids, list):
            raise TypeError
        ids = [parse_digest(d) for d in diff_ids]
    except (ValueError, KeyError, TypeError, RecursionError, InvalidDigest):
        raise ManifestError(f"{what}: its config has no valid rootfs.diff_ids") from None
    if len(ids) != len(manifest_layers):
        raise ManifestError(
            f"{what}: its config lists {len(ids)} diff_ids for {len(manifest_layers)} layers"
        )
    return list(zip(manifest_layers, ids, strict=True))
