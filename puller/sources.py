"""Where a copy reads an image: the ``Source`` protocol and the manifest it answers (``Found``),
and the local store as a source (``StoreSource``: ``pypull push``). A registry as a source is
``RegistrySource``, over a ``session.Session``: regclient's shape, one interface for a
registry and an OCI layout, so a copy and a push are one code path.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .errors import NotFound, PullError
from .oci.digest import Digest, parse_digest
from .oci.manifest import Descriptor, Index, Manifest, parse_manifest
from .oci.reference import Reference
from .registry.endpoint import Endpoint, try_in_turn
from .store.layout import RESOLVED_ANNOTATION, Store
from .streams import Content, from_store

if TYPE_CHECKING:
    from .session import Session


@dataclass(frozen=True, slots=True)
class Found:
    """A manifest as a source holds it: the bytes as served, their digest and parse, and
    ``origin``, where its children and blobs are to be fetched from (source-specific)."""

    digest: Digest
    raw: bytes
    media_type: str
    parsed: Manifest | Index
    origin: Any = None


class Source(Protocol):
    """Where a copy reads an image."""

    async def head(self, ref: Reference) -> Digest | None:
        """What ``ref`` points at, as cheaply as can be asked; None: unknown (fetch it)."""

    async def manifest(self, ref: Reference) -> Found:
        """The manifest ``ref`` points at, verified."""

    async def child(self, found: Found, ref: Reference, desc: Descriptor) -> tuple[bytes, str]:
        """A child manifest of the index ``found``, verified: its bytes and media type."""

    def content(self, found: Found, ref: Reference, blob: Descriptor) -> Content:
        """The blob's bytes from its start, verified on the way (callable again for a retry)."""

    def remaining(self, ref: Reference) -> int | None:
        """What is left of the source's pull quota, when it has said."""

    async def known(self, digest: Digest) -> bytes | None:
        """The index ``digest`` if it is at hand without asking the source (the store)."""

    async def remember(self, found: Found) -> None:
        """Keep the index ``found`` at hand for ``known`` (the next run's comparison)."""


class StoreSource:
    """Images in the local store (``pypull push``): the manifest bytes the registry served,
    which the store keeps beside their OCI form, so the digest is the one the pull showed.
    Every file is verified as it is read: the store may have been written by someone else."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def head(self, ref: Reference) -> Digest | None:
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, self._resolved, ref)

    def _resolved(self, ref: Reference) -> Digest:
        if ref.digest is not None:
            if not self._store.has(ref.digest):
                raise NotFound(f"{ref}: not in the store {self._store.root}")
            return ref.digest
        entry = self._store.lookup(str(ref))
        if entry is None:
            raise NotFound(f"{ref}: not in the store {self._store.root} (pull it first)")
        resolved = entry.annotations.get(RESOLVED_ANNOTATION)
        return entry.digest if resolved is None else parse_digest(resolved)

    async def manifest(self, ref: Reference) -> Found:
        import asyncio

        def read() -> Found:
            digest = self._resolved(ref)
            raw = self._manifest_bytes(digest, None, str(ref))
            parsed = parse_manifest(raw, None, f"{ref} in the store")
            return Found(digest, raw, parsed.media_type, parsed)

        return await asyncio.get_running_loop().run_in_executor(None, read)

    def _manifest_bytes(self, digest: Digest, size: int | None, what: str) -> bytes:
        if not self._store.has(digest):
            raise NotFound(f"{what}: the store {self._store.root} lacks its manifest {digest}")
        return self._store.read_manifest(digest, size)

    async def child(self, found: Found, ref: Reference, desc: Descriptor) -> tuple[bytes, str]:
        import asyncio

        def read() -> bytes:
            if not self._store.has(desc.digest):
                platform = f" {desc.platform}" if desc.platform else ""
                raise NotFound(
                    f"{ref}: the store holds only some platforms of it; the{platform} manifest "
                    f"{desc.digest} is missing (pull it with --platform"
                    f"{platform or ' OS/ARCH'}, or push chosen platforms with --platform)"
                )
            return self._manifest_bytes(desc.digest, desc.size, str(ref))

        raw = await asyncio.get_running_loop().run_in_executor(None, read)
        return raw, desc.media_type

    def content(self, found: Found, ref: Reference, blob: Descriptor) -> Content:
        if not self._store.has(blob.digest):
            raise NotFound(
                f"{ref}: the store {self._store.root} lacks blob {blob.digest} (pull the image "
                "again to fetch it)"
            )
        return lambda: from_store(self._store, blob)

    def remaining(self, ref: Reference) -> int | None:
        return None

    async def known(self, digest: Digest) -> bytes | None:
        import asyncio

        def read() -> bytes | None:
            try:
                return self._manifest_bytes(digest, None, str(digest))
            except PullError:
                return None

        return await asyncio.get_running_loop().run_in_executor(None, read)

    async def remember(self, found: Found) -> None:
        pass  # it is in the store already


class RegistrySource:
    """Images in a registry, asked through its mirrors in turn, as a pull asks (a ``Session``).
    A blob already in the local store is read from there, not fetched."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._client = session.client

    async def head(self, ref: Reference) -> Digest | None:
        sources = self._session.endpoints(ref, resolve=ref.digest is None)
        head = await self._session.retried(
            lambda: try_in_turn(sources, lambda e: self._client.head_manifest(e, ref)),
        )
        return None if head is None else head.digest

    async def manifest(self, ref: Reference) -> Found:
        sources = self._session.endpoints(ref, resolve=ref.digest is None)
        return await self._session.retried(lambda: try_in_turn(sources, self._at(ref)))

    def _at(self, ref: Reference) -> Callable[[Endpoint], Awaitable[Found]]:
        async def fetch(endpoint: Endpoint) -> Found:
            digest, resp = await self._session.fetch_manifest(endpoint, ref)
            parsed = parse_manifest(resp.raw, resp.content_type, str(ref))
            media_type = resp.content_type or parsed.media_type
            return Found(digest, resp.raw, media_type, parsed, endpoint)

        return fetch

    async def child(self, found: Found, ref: Reference, desc: Descriptor) -> tuple[bytes, str]:
        child_ref = dataclasses.replace(ref, tag=None, digest=desc.digest)
        fetch = functools.partial(self._session.fetch_manifest, found.origin, child_ref, desc)
        _, resp = await self._session.retried(fetch)
        return resp.raw, resp.content_type or desc.media_type

    def content(self, found: Found, ref: Reference, blob: Descriptor) -> Content:
        return self._session.blob_content(found.origin, ref.path, blob)

    def remaining(self, ref: Reference) -> int | None:
        seen = [self._client.rate_limits.get(e.host) for e in self._session.endpoints(ref)]
        known = [n for n in seen if n is not None]
        return min(known) if known else None

    async def known(self, digest: Digest) -> bytes | None:
        store = self._session.store
        stored = await self._session.stored_manifest(digest, None, str(store.root))
        return None if stored is None else stored.raw

    async def remember(self, found: Found) -> None:
        """Into the store, as a pull keeps an index: content-addressed and verified, so a
        later run can tell the platform's manifest from a HEAD alone."""
        import asyncio

        where = found.origin.url if isinstance(found.origin, Endpoint) else ""
        with suppress(OSError, PullError):  # no store to keep it in: the next run GETs it
            await asyncio.get_running_loop().run_in_executor(
                None, self._session.store.put_bytes, found.digest, found.raw, where
            )
