"""Blob downloads: bounded concurrency, in-flight dedup by digest, streaming verification.

The event loop only receives bytes; each chunk is hashed and written by a worker thread
(hashlib releases the GIL on large buffers) while the loop already receives the next one, so one
layer's hashing never stalls another layer's download. Memory per download is about two chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import suppress

from .digest import Digest
from .errors import ManifestError, PullError, Unreachable, VerificationError
from .events import (
    EventCallback,
    LayerDownloaded,
    LayerProgress,
    LayerVerifying,
    LayerWaiting,
    ignore,
)
from .manifest import Descriptor
from .registry import Endpoint, RegistryClient
from .store import BlobWriter, Store

CHUNK_SIZE = 1 << 20


def pick_error(errors: Sequence[PullError]) -> PullError:
    """The error most worth showing after every endpoint failed.

    Someone serving wrong bytes matters more than a registry saying no, which matters more than an
    upstream we could not reach at all (a mirror's 404 explains more than an offline fallback).
    """

    def rank(e: PullError) -> int:
        if isinstance(e, VerificationError):
            return 3
        if isinstance(e, ManifestError):
            return 2
        if isinstance(e, Unreachable):
            return 0
        return 1

    best = errors[0]
    for e in errors[1:]:
        if rank(e) >= rank(best):
            best = e
    return best


class _Inflight:
    """A download in progress and how many pulls wait for it."""

    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[bool]) -> None:
        self.task = task
        self.waiters = 0


class Downloader:
    """Shared by every pull of a ``Puller`` so that a blob two images share is fetched once."""

    def __init__(
        self,
        client: RegistryClient,
        store: Store,
        *,
        max_concurrent: int = 3,
        chunk_size: int = CHUNK_SIZE,
        durable: bool = True,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._client = client
        self._store = store
        self._slots = asyncio.Semaphore(max_concurrent)
        self._chunk_size = chunk_size
        self._durable = durable
        self._inflight: dict[Digest, _Inflight] = {}

    async def fetch(
        self,
        desc: Descriptor,
        path: str,
        endpoints: Sequence[Endpoint],
        on_event: EventCallback = ignore,
        *,
        limited: bool = True,
    ) -> bool:
        """Make sure ``desc`` is in the store; True if this call downloaded it.

        ``limited=False`` skips the concurrency limit, for small blobs (a config) that should not
        queue behind layers.
        """
        if self._store.has(desc.digest):
            return False
        entry = self._inflight.get(desc.digest)
        owner = entry is None
        if entry is None:
            task = asyncio.ensure_future(self._download(desc, path, endpoints, on_event, limited))
            entry = self._inflight[desc.digest] = _Inflight(task)
            task.add_done_callback(lambda _: self._inflight.pop(desc.digest, None))
        entry.waiters += 1
        try:
            # Shielded: one waiter giving up must not cancel the download for the others.
            downloaded = await asyncio.shield(entry.task)
        except asyncio.CancelledError:
            entry.waiters -= 1
            if entry.waiters == 0 and not entry.task.done():
                entry.task.cancel()
                # Let it remove its partial file before our cancellation completes.
                await asyncio.wait([entry.task])
            raise
        entry.waiters -= 1
        return owner and downloaded

    async def _download(
        self,
        desc: Descriptor,
        path: str,
        endpoints: Sequence[Endpoint],
        on_event: EventCallback,
        limited: bool,
    ) -> bool:
        if not limited:
            return await self._try_endpoints(desc, path, endpoints, on_event)
        if self._slots.locked():
            on_event(LayerWaiting(desc.digest))
        async with self._slots:
            return await self._try_endpoints(desc, path, endpoints, on_event)

    async def _try_endpoints(
        self, desc: Descriptor, path: str, endpoints: Sequence[Endpoint], on_event: EventCallback
    ) -> bool:
        errors: list[PullError] = []
        for endpoint in endpoints:
            if self._store.has(desc.digest):  # another process stored it while we queued
                return False
            try:
                await self._download_from(endpoint, desc, path, on_event)
                return True
            except PullError as e:
                errors.append(e)
        raise pick_error(errors)

    async def _download_from(
        self, endpoint: Endpoint, desc: Descriptor, path: str, on_event: EventCallback
    ) -> None:
        loop = asyncio.get_running_loop()
        async with self._client.open_blob(endpoint, path, desc.digest, self._chunk_size) as body:
            writer: BlobWriter = await loop.run_in_executor(
                None, self._store.writer, desc.digest, desc.size, endpoint.url
            )
            pending: asyncio.Future[None] | None = None
            received = 0
            try:
                async for chunk in body:
                    if pending is not None:
                        await pending
                    pending = loop.run_in_executor(None, writer.write, chunk)
                    received += len(chunk)
                    on_event(LayerProgress(desc.digest, received, desc.size))
                if pending is not None:
                    await pending
                    pending = None
                on_event(LayerVerifying(desc.digest))
                await loop.run_in_executor(None, writer.commit, self._durable)
            except BaseException:
                if pending is not None and not pending.done():
                    # The worker may still hold the file; let it finish before removing the file.
                    with suppress(BaseException):
                        await asyncio.shield(pending)
                writer.abort()
                raise
        on_event(LayerDownloaded(desc.digest))
