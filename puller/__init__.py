"""pypull: a fast, correct, pure-Python pull client for container images.

    import asyncio, puller
    result = asyncio.run(puller.pull("redis:latest", store="./store"))
    print(result.digest, [str(layer.digest) for layer in result.layers])
    info = asyncio.run(puller.inspect("redis:latest", store="./store"))   # ImageInfo
    print(info.architecture, info.to_json()["Layers"], [r.id for r in puller.images("./store")])
    puller.save(["redis:latest"], "redis.tar", store="./store")          # SaveResult
    print([str(i.reference) for i in puller.load("redis.tar", store="./other").images])

(The orchestration lives in ``puller.pulling``, not ``puller.pull``: importing a submodule binds
its name on the package, which would hide the ``pull`` function.)

Names are imported on first use, so that ``import puller`` (and the CLI's ``--help``) stays fast:
the network stack is loaded only when a pull starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .archive import LoadedImage, LoadResult, SavedImage, SaveResult, load, save
    from .copying import Copier, CopyResult, RegistrySource
    from .errors import (
        ArchiveError,
        DigestMismatch,
        InvalidDigest,
        InvalidReference,
        ManifestError,
        NotFound,
        PlatformNotFound,
        PullError,
        QuotaExhausted,
        RegistryError,
        SizeMismatch,
        StoreError,
        Unauthorized,
        UnpackError,
        Unreachable,
        VerificationError,
    )
    from .exporting import Exported, export
    from .inspecting import ImageInfo, ImageRecord, images, inspect, tags
    from .oci.digest import Digest, parse_digest
    from .oci.manifest import Descriptor, Platform
    from .oci.reference import Reference
    from .oci.reference import parse as parse_reference
    from .pulling import AllPlatformsResult, PlatformImage, Puller, PullResult, pull
    from .registry.auth import Credentials
    from .sources import StoreSource
    from .store.layout import Store
    from .store.prune import Pruned, PruneResult, prune, rmi
    from .syncfile import SyncEntry, load_sync_file
    from .unpacking import Unpacked, unpack

_EXPORTS = {
    "ArchiveError": "errors",
    "LoadResult": "archive",
    "LoadedImage": "archive",
    "SaveResult": "archive",
    "SavedImage": "archive",
    "load": "archive",
    "save": "archive",
    "Credentials": "registry.auth",
    "Copier": "copying",
    "CopyResult": "copying",
    "RegistrySource": "copying",
    "StoreSource": "sources",
    "Digest": "oci.digest",
    "parse_digest": "oci.digest",
    "DigestMismatch": "errors",
    "InvalidDigest": "errors",
    "InvalidReference": "errors",
    "ManifestError": "errors",
    "NotFound": "errors",
    "PlatformNotFound": "errors",
    "PullError": "errors",
    "RegistryError": "errors",
    "SizeMismatch": "errors",
    "StoreError": "errors",
    "QuotaExhausted": "errors",
    "Unauthorized": "errors",
    "Unreachable": "errors",
    "VerificationError": "errors",
    "ImageInfo": "inspecting",
    "ImageRecord": "inspecting",
    "images": "inspecting",
    "inspect": "inspecting",
    "tags": "inspecting",
    "Descriptor": "oci.manifest",
    "Platform": "oci.manifest",
    "Pruned": "store.prune",
    "PruneResult": "store.prune",
    "prune": "store.prune",
    "rmi": "store.prune",
    "AllPlatformsResult": "pulling",
    "PlatformImage": "pulling",
    "Puller": "pulling",
    "PullResult": "pulling",
    "pull": "pulling",
    "Reference": "oci.reference",
    "parse_reference": "oci.reference",
    "Store": "store.layout",
    "SyncEntry": "syncfile",
    "load_sync_file": "syncfile",
    "Exported": "exporting",
    "UnpackError": "errors",
    "Unpacked": "unpacking",
    "export": "exporting",
    "unpack": "unpacking",
}
_RENAMED = {"parse_reference": "parse"}

__all__ = [
    "AllPlatformsResult",
    "ArchiveError",
    "Copier",
    "CopyResult",
    "Credentials",
    "Descriptor",
    "Digest",
    "DigestMismatch",
    "Exported",
    "ImageInfo",
    "ImageRecord",
    "InvalidDigest",
    "InvalidReference",
    "LoadResult",
    "LoadedImage",
    "ManifestError",
    "NotFound",
    "Platform",
    "PlatformImage",
    "PlatformNotFound",
    "PruneResult",
    "Pruned",
    "PullError",
    "PullResult",
    "Puller",
    "QuotaExhausted",
    "Reference",
    "RegistryError",
    "RegistrySource",
    "SaveResult",
    "SavedImage",
    "SizeMismatch",
    "Store",
    "StoreError",
    "StoreSource",
    "SyncEntry",
    "Unauthorized",
    "UnpackError",
    "Unpacked",
    "Unreachable",
    "VerificationError",
    "export",
    "images",
    "inspect",
    "load",
    "load_sync_file",
    "parse_digest",
    "parse_reference",
    "prune",
    "pull",
    "rmi",
    "save",
    "tags",
    "unpack",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'puller' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), _RENAMED.get(name, name))
    globals()[name] = value
    return value
