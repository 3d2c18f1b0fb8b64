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

``dir(puller)`` and ``help(puller)`` list every name below; each module is imported when one of
its names is first used, so that ``import puller`` (and with it every ``pypull`` command, whose
``--help`` needs none of them) stays cheap.
"""

from __future__ import annotations

import importlib

#: pyproject.toml's version (a test keeps the two equal): ``pypull --version`` reads it here,
#: as importlib.metadata would cost 10-20 ms at every start.
__version__ = "0.1.0"
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .archive import LoadedImage, LoadResult, SavedImage, SaveResult, load, save
    from .copying import Copier
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
    from .outcome import CopyResult
    from .pulling import AllPlatformsResult, PlatformImage, Puller, PullResult, pull, pull_sync
    from .registry.auth import Credentials
    from .sources import RegistrySource, StoreSource
    from .store.layout import Store
    from .store.prune import Pruned, PruneResult, prune, rmi
    from .sync.file import SyncEntry, load_sync_file
    from .tasks import run
    from .unpacking import Unpacked, unpack

#: Each public name: the module that defines it (relative to this package), and its name there.
_EXPORTS: dict[str, tuple[str, str]] = {
    "AllPlatformsResult": ("pulling", "AllPlatformsResult"),
    "ArchiveError": ("errors", "ArchiveError"),
    "Copier": ("copying", "Copier"),
    "CopyResult": ("outcome", "CopyResult"),
    "Credentials": ("registry.auth", "Credentials"),
    "Descriptor": ("oci.manifest", "Descriptor"),
    "Digest": ("oci.digest", "Digest"),
    "DigestMismatch": ("errors", "DigestMismatch"),
    "Exported": ("exporting", "Exported"),
    "ImageInfo": ("inspecting", "ImageInfo"),
    "ImageRecord": ("inspecting", "ImageRecord"),
    "InvalidDigest": ("errors", "InvalidDigest"),
    "InvalidReference": ("errors", "InvalidReference"),
    "LoadResult": ("archive", "LoadResult"),
    "LoadedImage": ("archive", "LoadedImage"),
    "ManifestError": ("errors", "ManifestError"),
    "NotFound": ("errors", "NotFound"),
    "Platform": ("oci.manifest", "Platform"),
    "PlatformImage": ("pulling", "PlatformImage"),
    "PlatformNotFound": ("errors", "PlatformNotFound"),
    "PruneResult": ("store.prune", "PruneResult"),
    "Pruned": ("store.prune", "Pruned"),
    "PullError": ("errors", "PullError"),
    "PullResult": ("pulling", "PullResult"),
    "Puller": ("pulling", "Puller"),
    "QuotaExhausted": ("errors", "QuotaExhausted"),
    "Reference": ("oci.reference", "Reference"),
    "RegistryError": ("errors", "RegistryError"),
    "RegistrySource": ("sources", "RegistrySource"),
    "SaveResult": ("archive", "SaveResult"),
    "SavedImage": ("archive", "SavedImage"),
    "SizeMismatch": ("errors", "SizeMismatch"),
    "Store": ("store.layout", "Store"),
    "StoreError": ("errors", "StoreError"),
    "StoreSource": ("sources", "StoreSource"),
    "SyncEntry": ("sync.file", "SyncEntry"),
    "Unauthorized": ("errors", "Unauthorized"),
    "UnpackError": ("errors", "UnpackError"),
    "Unpacked": ("unpacking", "Unpacked"),
    "Unreachable": ("errors", "Unreachable"),
    "VerificationError": ("errors", "VerificationError"),
    "export": ("exporting", "export"),
    "images": ("inspecting", "images"),
    "inspect": ("inspecting", "inspect"),
    "inspect_sync": ("inspecting", "inspect_sync"),
    "load": ("archive", "load"),
    "load_sync_file": ("sync.file", "load_sync_file"),
    "parse_digest": ("oci.digest", "parse_digest"),
    "parse_reference": ("oci.reference", "parse"),
    "prune": ("store.prune", "prune"),
    "pull": ("pulling", "pull"),
    "pull_sync": ("pulling", "pull_sync"),
    "rmi": ("store.prune", "rmi"),
    "run": ("tasks", "run"),
    "save": ("archive", "save"),
    "tags": ("inspecting", "tags"),
    "tags_sync": ("inspecting", "tags_sync"),
    "unpack": ("unpacking", "unpack"),
}

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


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use and kept (PEP 562)."""
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """What ``dir(puller)`` and ``help(puller)`` show: the API, loaded or not."""
    return sorted(set(globals()) | set(__all__))
