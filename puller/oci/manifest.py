"""Manifests and indexes of both media-type families, and platform selection.

Parsing is strict on what decides where bytes go (digests, sizes, media types) and lenient on the
rest, because registries in the wild add fields; anything we cannot pull correctly is refused here,
before a single blob is requested.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidDigest, ManifestError, PlatformNotFound
from .digest import Digest, parse_digest, verify_bytes

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
#: What we send as Accept: the distribution registry answers 404 to an OCI manifest request that
#: does not accept OCI, so every type we can parse is listed.
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

#: The distribution registry's own limit; a larger "manifest" is an attack or a mistake.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024


def checked_manifest(raw: bytes, digest: Digest, size: int | None, where: str) -> bytes:
    """``raw``, read to at most ``MAX_MANIFEST_SIZE + 1`` bytes from a file anyone may have
    written, as fit to parse: within the bound, and the bytes ``digest`` (and ``size``, when
    given) name; else the error says so about ``where``."""
    if len(raw) > MAX_MANIFEST_SIZE:
        raise ManifestError(f"{where}: a manifest over {MAX_MANIFEST_SIZE >> 20} MiB")
    verify_bytes(raw, digest, size, where)
    return raw


REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)

    def normalized(self) -> Platform:
        """containerd's normalization, so ``linux/aarch64`` finds ``linux/arm64/v8`` and
        ``linux/armv7l`` finds ``linux/arm/v7``."""
        arch = self.architecture.lower()
        variant = self.variant.lower() if self.variant else None
        arch, implied = _ARCH_ALIASES.get(arch, (arch, None))
        variant = variant or implied
        if arch == "arm64" and variant in ("v8", "8"):
            variant = None
        elif arch == "arm":
            variant = {"5": "v5", "6": "v6", "7": "v7", "8": "v8"}.get(variant or "", variant)
            variant = variant or "v7"
        elif arch == "amd64" and variant == "v1":
            variant = None
        return Platform(self.os.lower(), arch, variant)

    def matches(self, other: Platform) -> bool:
        return self.normalized() == other.normalized()


#: machine/arch names -> (GOARCH, implied variant), as containerd's platforms package maps them.
_ARCH_ALIASES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "aarch64": ("arm64", None),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "armv5l": ("arm", "v5"),
    "armv6l": ("arm", "v6"),
    "armv7l": ("arm", "v7"),
    "armv8l": ("arm", "v8"),
    "i386": ("386", None),
    "i486": ("386", None),
    "i586": ("386", None),
    "i686": ("386", None),
}


def parse_platform(text: str) -> Platform:
    """``os/arch[/variant]``, as docker's ``--platform``."""
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/amd64")
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def host_platform() -> Platform:
    """linux/<this machine's architecture>: images are Linux images whatever the host runs.
    ``os.uname()`` is what ``platform.machine()`` reads on POSIX, without the ``platform``
    module's import (some 2 ms of a pull's start-up, its regexes included)."""
    return Platform("linux", os.uname().machine.lower()).normalized()


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """The descriptor as the OCI image spec spells it (a dict: ``to_json`` gives the text)."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.platform is not None:
            p: dict[str, str] = {
                "architecture": self.platform.architecture,
                "os": self.platform.os,
            }
            if self.platform.variant:
                p["variant"] = self.platform.variant
            out["platform"] = p
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_json(self) -> str:
        """``to_dict()`` as JSON text."""
        return json.dumps(self.to_dict())


@dataclass(frozen=True, slots=True)
class Manifest:
    """A single-platform image manifest (OCI or Docker v2)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class Index:
    """An OCI image index or a Docker manifest list."""

    media_type: str
    manifests: tuple[Descriptor, ...]


def parse_descriptor(obj: Any, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: descriptor is not an object")
    media_type = obj.get("mediaType")
    size = obj.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestError(f"{where}: descriptor has no mediaType")
    # bool is an int in Python; a size of true is as malformed as a size of "12".
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"{where}: descriptor has an invalid size {size!r}")
    try:
        digest = parse_digest(obj.get("digest"))  # type: ignore[arg-type]
    except InvalidDigest as e:
        raise ManifestError(f"{where}: {e}") from None
    platform = None
    p = obj.get("platform")
    if isinstance(p, dict):
        os_, arch, variant = p.get("os"), p.get("architecture"), p.get("variant")
        if isinstance(os_, str) and isinstance(arch, str):
            platform = Platform(os_, arch, variant if isinstance(variant, str) else None)
    ann = obj.get("annotations")
    annotations = {str(k): str(v) for k, v in ann.items()} if isinstance(ann, dict) else {}
    return Descriptor(media_type, digest, size, platform, annotations)


def parse_manifest(
    raw: bytes, content_type: str | None = None, where: str = ""
) -> Manifest | Index:
    """Parse manifest bytes as served; ``content_type`` is the response's Content-Type, if any.

    ``where`` names the source in error messages (a URL or a reference).
    """
    at = f" from {where}" if where else ""
    if len(raw) > MAX_MANIFEST_SIZE:
        raise ManifestError(
            f"manifest{at} is {len(raw)} bytes, over the {MAX_MANIFEST_SIZE} byte limit"
        )
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:  # deep nesting raises RecursionError
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise ManifestError(f"manifest{at} is not valid JSON: {reason}") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"manifest{at} is not a JSON object")

    declared = doc.get("mediaType")
    ct = (content_type or "").split(";")[0].strip().lower() or None
    if ct in ("application/json", "text/plain", "application/octet-stream"):
        ct = None  # generic types carry no claim to check against
    if declared is not None and not isinstance(declared, str):
        raise ManifestError(f"manifest{at} has a non-string mediaType")
    if declared and ct and declared != ct:
        raise ManifestError(f"manifest{at}: mediaType {declared} disagrees with Content-Type {ct}")
    media_type = declared or ct
    if media_type is None:
        # OCI allows mediaType to be absent; infer it from the shape as the spec's guidance says.
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST

    if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED) or doc.get("schemaVersion") == 1:
        raise ManifestError(
            f"manifest{at} is Docker schema 1, which is deprecated and not supported; "
            "push the image again with a current client"
        )
    if doc.get("schemaVersion") != 2:
        raise ManifestError(f"manifest{at} has schemaVersion {doc.get('schemaVersion')!r}, want 2")

    if media_type in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError(f"index{at} has no manifests list")
        return Index(
            media_type,
            tuple(parse_descriptor(e, f"index{at} entry {i}") for i, e in enumerate(entries)),
        )
    if media_type in MANIFEST_TYPES:
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise ManifestError(f"manifest{at} has no layers list")
        return Manifest(
            media_type,
            parse_descriptor(doc.get("config"), f"manifest{at} config"),
            tuple(parse_descriptor(e, f"manifest{at} layer {i}") for i, e in enumerate(layers)),
        )
    raise ManifestError(f"manifest{at} has unsupported media type {media_type!r}")


def select_platform(index: Index, wanted: Platform, where: str = "") -> Descriptor:
    """The first image manifest in ``index`` for ``wanted``; ``PlatformNotFound`` lists the rest."""
    available: list[str] = []
    for d in index.manifests:
        if d.platform is None:
            continue
        if d.platform.matches(wanted) and d.media_type in MANIFEST_TYPES:
            return d
        if d.platform.os != "unknown":  # attestation manifests, not platforms a user can ask for
            available.append(str(d.platform))
    raise PlatformNotFound(str(wanted), available, where)


#: Docker media types and their OCI twins: the bytes are the same, only the label differs.
_DOCKER_TO_OCI = {
    "application/vnd.docker.container.image.v1+json": OCI_CONFIG,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": (
        "application/vnd.oci.image.layer.v1.tar+gzip"
    ),
    "application/vnd.docker.image.rootfs.diff.tar": "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    ),
}


def to_oci(manifest: Manifest) -> tuple[Manifest, bytes]:
    """The OCI form of a Docker v2 manifest, as ``skopeo copy`` writes it into an OCI layout.

    skopeo and umoci only read OCI manifests from a layout, so a Docker image is recorded in the
    store by this converted manifest; config and layer bytes are unchanged.
    """

    def convert(d: Descriptor) -> Descriptor:
        return Descriptor(
            _DOCKER_TO_OCI.get(d.media_type, d.media_type), d.digest, d.size, None, d.annotations
        )

    oci = Manifest(OCI_MANIFEST, convert(manifest.config), tuple(map(convert, manifest.layers)))
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": oci.config.to_dict(),
        "layers": [d.to_dict() for d in oci.layers],
    }
    return oci, json.dumps(doc, separators=(",", ":")).encode()


#: Keys of a manifest or index whose values are descriptors, or lists of them.
_DESCRIPTOR_KEYS = ("config", "subject")
_DESCRIPTOR_LIST_KEYS = ("layers", "manifests", "blobs")


def listed(doc: dict[str, object]) -> list[tuple[Digest, str | None]]:
    """What a manifest or index of any kind (an artifact's too) refers to, by digest and media
    type: its config, subject, layers, manifests and blobs. Read leniently, for keeping blobs
    (prune, leases), never for pulling."""
    found: list[object] = [doc.get(key) for key in _DESCRIPTOR_KEYS]
    for key in _DESCRIPTOR_LIST_KEYS:
        value = doc.get(key)
        if isinstance(value, list):
            found += value
    return descriptors_in(found)


def descriptors_in(found: list[object]) -> list[tuple[Digest, str | None]]:
    """The digest and media type of each descriptor in ``found``. Anything without a valid
    digest names nothing that could be in ``blobs/``, so it is passed over, not an error."""
    out = []
    for d in found:
        if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
            continue
        try:
            digest = parse_digest(d["digest"])
        except InvalidDigest:
            continue
        media_type = d.get("mediaType")
        out.append((digest, media_type if isinstance(media_type, str) else None))
    return out
