"""Blob downloads: bounded concurrency, in-flight dedup by digest, streaming verification.

The event loop only receives bytes; each chunk is hashed and written by a worker thread
(hashlib releases the GIL on large buffers) while the loop already receives the next one, so one
layer's hashing never stalls another layer's download. Memory per download is about two chunks.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import TypeVar

from .errors import (
    CredentialError,
    PullError,
    RegistryError,
    SizeMismatch,
    StoreError,
    Unreachable,
    VerificationError,
)
from .events import (
    Event,
    EventCallback,
    LayerDownloaded,
    LayerFailed,
    LayerProgress,
    LayerRetrying,
    LayerVerifying,
    LayerWaiting,
    LayerWaitingForProcess,
    ignore,
)
from .oci.digest import Digest
from .oci.manifest import Descriptor
from .registry.client import RegistryClient
from .registry.endpoint import Endpoint, try_in_turn
from .registry.retry import RetryPolicy, with_retries
from .store.blobs import BlobWriter
from .store.layout import Store

T = TypeVar("T")
CHUNK_SIZE = 1 << 20
#: How often a process waiting for another process's download of the same blob looks again.
LOCK_POLL_INTERVAL = 0.05


class _Inflight:
    """A download in progress, and the pulls waiting for it (each gets its events); ``slot``:
    the limit on downloads at once that each attempt's transfer takes, None for none."""

    __slots__ = ("slot", "subscribers", "task")

    def __init__(self, slot: asyncio.Semaphore | None) -> None:
        self.slot = slot
        self.task: asyncio.Task[bool] | None = None
        self.subscribers: list[EventCallback] = []

    def emit(self, event: Event) -> None:
        for callback in list(self.subscribers):
            callback(event)


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
        retry: RetryPolicy | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._client = client
        self._store = store
        self._slots = asyncio.Semaphore(max_concurrent)
        self._chunk_size = chunk_size
        self._durable = durable
        self._retry = retry or RetryPolicy()
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

        A download already under way for the same digest is joined rather than repeated. If it
        fails, this call tries once more on its own repository and endpoints, which may differ.
        ``limited=False`` skips the concurrency limit, for small blobs (a config) that should not
        queue behind layers.
        """
        while True:
            if self._store.has(desc.digest):
                return False
            entry = self._inflight.get(desc.digest)
            owner = entry is None
            if entry is None:
                slot = self._slots if limited else None
                entry = self._inflight[desc.digest] = _Inflight(slot)
                entry.task = asyncio.ensure_future(self._download(desc, path, endpoints, entry))
                entry.task.add_done_callback(
                    functools.partial(self._forget_done, desc.digest, entry)
                )
            assert entry.task is not None
            entry.subscribers.append(on_event)
            try:
                # Shielded: one waiter giving up must not cancel the download for the others.
                downloaded = await asyncio.shield(entry.task)
            except asyncio.CancelledError:
                entry.subscribers.remove(on_event)
                if not entry.subscribers and not entry.task.done():
                    # Nobody else waits: stop it, and let it remove its partial file before our
                    # cancellation completes. Forget it now so a later fetch starts afresh.
                    self._forget(desc.digest, entry)
                    entry.task.cancel()
                    await asyncio.wait([entry.task])
                raise
            except PullError:
                entry.subscribers.remove(on_event)
                if owner:
                    raise
                self._forget(desc.digest, entry)
                continue  # the owner's repository or endpoints failed; ours may not
            entry.subscribers.remove(on_event)
            return owner and downloaded

    def _forget_done(self, digest: Digest, entry: _Inflight, task: asyncio.Task[bool]) -> None:
        self._forget(digest, entry)
        if not task.cancelled():
            # Every waiter may have given up (another layer failed the pull first): the error
            # is theirs to see, not asyncio's "exception was never retrieved" on stderr.
            task.exception()

    def _forget(self, digest: Digest, entry: _Inflight) -> None:
        if self._inflight.get(digest) is entry:
            del self._inflight[digest]

    async def _download(
        self,
        desc: Descriptor,
        path: str,
        endpoints: Sequence[Endpoint],
        entry: _Inflight,
    ) -> bool:
        """Take the digest's cross-process lock, then (``_transfer``) a download slot, in that
        order, so a blob another process is fetching does not hold a slot while we wait for it."""
        try:
            lock = self._store.blob_lock(desc.digest)
            if not lock.try_acquire():
                entry.emit(LayerWaitingForProcess(desc.digest, lock.holder))
                while not lock.try_acquire():
                    # flock has no async wait, and a thread blocked in it cannot be cancelled.
                    await asyncio.sleep(LOCK_POLL_INTERVAL)
            try:
                if self._store.has(desc.digest):  # the other process stored it
                    return False
                await self._download_locked(desc, path, endpoints, entry)
                return True
            finally:
                lock.release()
        except PullError as e:
            entry.emit(LayerFailed(desc.digest, e))
            raise

    async def _download_locked(
        self, desc: Descriptor, path: str, endpoints: Sequence[Endpoint], entry: _Inflight
    ) -> None:
        def retrying(attempt: int, delay: float, error: PullError) -> None:
            entry.emit(LayerRetrying(desc.digest, delay, attempt, error))

        await with_retries(
            self._retry,
            lambda: try_in_turn(
                endpoints,
                lambda ep: self._download_from(ep, desc, path, entry),
                fatal=(StoreError, CredentialError),  # the same for every mirror
            ),
            retrying,
        )

    async def _download_from(
        self, endpoint: Endpoint, desc: Descriptor, path: str, entry: _Inflight
    ) -> None:
        """Resume the partial left by an earlier attempt, if any. If the resumed blob does not
        verify, the partial was bad: drop it and fetch the blob once more from zero."""
        resuming = self._store.partial_size(desc.digest) > 0
        try:
            await self._transfer(endpoint, desc, path, entry, resume=True)
        except (VerificationError, _StartOver) as e:
            if not resuming:
                raise _unexpected(e, endpoint) from None
            try:
                await self._transfer(endpoint, desc, path, entry, resume=False)
            except _StartOver as again:  # a 206 to a request without Range: a bad answer
                raise _unexpected(again, endpoint) from None

    async def _transfer(
        self, endpoint: Endpoint, desc: Descriptor, path: str, entry: _Inflight, resume: bool
    ) -> None:
        """One attempt: open the partial, receive, commit. The download slot (``entry.slot``) is
        held from the opening to the last byte received, not through the commit's fsyncs: the
        next blob's request goes out meanwhile (a 20 MB pull of 8 layers took 159 ms against
        165, medians of 60 runs). A retry's back-off waits without a slot too."""
        loop = asyncio.get_running_loop()
        slot = entry.slot
        if slot is not None:
            if slot.locked():
                entry.emit(LayerWaiting(desc.digest))
            await slot.acquire()
        try:
            writer: BlobWriter = await _finish_in_worker(
                loop.run_in_executor(
                    None, self._store.writer, desc.digest, desc.size, endpoint.url, resume
                ),
                cleanup=lambda w: w.close(),
            )
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        pending: asyncio.Future[object] | None = None
        try:
            try:
                if writer.offset < desc.size:  # a complete partial (killed before the rename)
                    await self._receive(endpoint, desc, path, entry, writer)  # is not fetched
            finally:
                if slot is not None:
                    slot.release()
                    slot = None
            entry.emit(LayerVerifying(desc.digest))
            pending = loop.run_in_executor(None, writer.commit, self._durable)
            await pending
        except BaseException as e:
            if pending is not None:
                await _settle(pending)  # the worker still holds the file: let it finish first
            if isinstance(e, (VerificationError, StoreError, _StartOver)):
                writer.abort()  # wrong content, a full disk, or no prefix of the blob: drop it
            else:
                writer.close()  # a dropped connection or Ctrl-C: keep the partial to resume
            raise
        entry.emit(LayerDownloaded(desc.digest))

    async def _receive(
        self, endpoint: Endpoint, desc: Descriptor, path: str, entry: _Inflight, w: BlobWriter
    ) -> None:
        """Stream the rest of the blob (from ``w.size``) into ``w``; every worker call is awaited
        before this returns or raises, so the caller may close the file afterwards."""
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[object] | None = None
        try:
            async with self._client.open_blob(
                endpoint, path, desc.digest, self._chunk_size, w.size
            ) as body:
                if body.total is not None and body.total != desc.size:
                    raise SizeMismatch(
                        f"size mismatch for {desc.digest} from {endpoint.url}: the registry "
                        f"sends {body.total} bytes, the manifest says {desc.size}",
                        expected=str(desc.size),
                        got=str(body.total),
                        url=endpoint.url,
                    )
                if body.start != w.size:
                    if body.start != 0:
                        raise _StartOver(
                            f"{endpoint.url} answered a Range request for {desc.digest} with "
                            f"bytes from {body.start}; starting over"
                        )
                    pending = loop.run_in_executor(None, w.restart)  # Range ignored: from zero
                    await pending
                received = w.size

                def progress(n: int) -> None:
                    nonlocal received
                    received += n
                    entry.emit(LayerProgress(desc.digest, received, desc.size))

                await body.pour(w.write, progress)
        except RegistryError as e:
            if e.status == 416:  # our partial is no prefix of this blob (as long or longer)
                raise _StartOver(f"{endpoint.url} refused to resume {desc.digest}") from e
            if e.status == 206:  # a partial answer we cannot place
                raise _StartOver(str(e)) from e
            raise
        finally:
            if pending is not None:
                await _settle(pending)
        if w.size < desc.size:
            # The body ended early without a transport error (no Content-Length, a short 206):
            # a cut connection, not wrong content; keep what we have and resume.
            raise Unreachable(
                f"download of {desc.digest} from {endpoint.url} ended after {w.size} of "
                f"{desc.size} bytes",
                url=endpoint.url,
            )


class _StartOver(Exception):
    """The partial cannot be resumed from this server: drop it, and try again from zero."""


def _unexpected(e: Exception, endpoint: Endpoint) -> PullError:
    """A fresh download cannot need starting over; if a server makes it, it is a bad answer."""
    if isinstance(e, PullError):
        return e
    return RegistryError(f"{e} (for a download from the start)", url=endpoint.url)


async def _settle(future: asyncio.Future[object]) -> None:
    """Wait until a worker-thread call is over, whatever it raised and however often we are
    cancelled meanwhile: the caller re-raises its own exception afterwards."""
    while not future.done():
        with suppress(BaseException):
            await asyncio.shield(future)


async def _finish_in_worker(future: asyncio.Future[T], cleanup: Callable[[T], object]) -> T:
    """Await a worker thread's result; if we are cancelled meanwhile, clean up what it made."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with suppress(BaseException):
            cleanup(await future)
        raise
