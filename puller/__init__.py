"""pypull: a fast, correct, pure-Python pull client for container images.

Coroutine functions (``await`` them, or run them with ``asyncio.run``): ``pull``, ``inspect``,
``tags``, and the methods of ``Puller`` and ``Copier`` that talk to a registry. Each of the first
three has a blocking twin for code that is not async, with the same arguments and result:
``pull_sync``, ``inspect_sync``, ``tags_sync`` (``run(coroutine)`` runs any other one to its end).
Everything else blocks and needs no event loop: ``images``, ``rmi``, ``prune``, ``save``, ``load``,
``unpack``, ``export``, ``load_sync_file``, ``parse_reference``, ``parse_digest``.

    import puller
    result = puller.pull_sync("redis:latest", store="./store")             # PullResult
    print(result.digest, [str(layer.digest) for layer in result.layers])
    info = puller.inspect_sync("redis:latest", store="./store")            # ImageInfo
    print(info.architecture, info.to_dict()["Layers"], info.to_json())    # dict; JSON text
    print([r.id for r in puller.images("./store")])                        # ImageRecord
    puller.save(["redis:latest"], "redis.tar", store="./store")            # SaveResult
    print([str(i.reference) for i in puller.load("redis.tar", store="./other").images])

Records have ``to_dict()`` (the dict the command line prints as JSON) and ``to_json()`` (that as
JSON text). Every error is a ``PullError``.

(The orchestration lives in ``puller.pulling``, not ``puller.pull``: importing a submodule binds
its name on the package, which would hide the ``pull`` function.)

``import puller`` imports every name below and stays cheap: the modules load no event loop, TLS,
HTTP client or tar reader until a function needs them.
"""

from __future__ import annotations

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
from .inspecting import (
    ImageInfo,
    ImageRecord,
    images,
    inspect,
    inspect_sync,
    tags,
    tags_sync,
)
from .oci.digest import Digest, parse_digest
from .oci.manifest import Descriptor, Platform
from .oci.reference import Reference
from .oci.reference import parse as parse_reference
from .pulling import AllPlatformsResult, PlatformImage, Puller, PullResult, pull, pull_sync
from .registry.auth import Credentials
from .sources import StoreSource
from .store.layout import Store
from .store.prune import Pruned, PruneResult, prune, rmi
from .syncfile import SyncEntry, load_sync_file
from .tasks import run
from .unpacking import Unpacked, unpack

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
    "inspect_sync",
    "load",
    "load_sync_file",
    "parse_digest",
    "parse_reference",
    "prune",
    "pull",
    "pull_sync",
    "rmi",
    "run",
    "save",
    "tags",
    "tags_sync",
    "unpack",
]
