"""A blob's bytes as an async stream, verified on the way: from the store (``from_store``) or from
a registry (``from_registry``). The last piece is held back until the whole blob has verified, so
a blob that does not verify never completes the upload it feeds. ``Content`` makes such a stream
from the blob's start, again for each retry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from .errors import StoreError
from .http.message import Chunk
from .oci.digest import Verifier
from .oci.manifest import Descriptor
from .registry.endpoint import Endpoint

if TYPE_CHECKING:
    import asyncio

if TYPE_CHECKING:  # the client is handed in: the streams sit beside it, not above it
    from .registry.client import RegistryClient
    from .store.layout import Store

#: The blob's bytes from its start, verified on the way (callable again for a retry).
Content = Callable[[], AsyncIterator[Chunk]]
#: How much of a stored blob one read takes.
READ_SIZE = 1 << 20


def counted(content: Content, on_bytes: Callable[[int], None]) -> Content:
    """The same bytes, each piece's length told to ``on_bytes`` as it passes."""

    async def told() -> AsyncIterator[Chunk]:
        async for piece in content():
            on_bytes(len(piece))
            yield piece

    return told


async def from_store(store: Store, blob: Descriptor) -> AsyncIterator[bytes]:
    """The blob's file, verified on the way; the last piece is held back until it has."""
    import asyncio

    loop = asyncio.get_running_loop()
    path = store.blob_path(blob.digest)
    verifier = Verifier(blob.digest, blob.size, str(path))
    f = await loop.run_in_executor(None, store.open_blob, blob.digest)
    try:
        held: bytes | None = None
        while True:
            try:
                piece = await loop.run_in_executor(None, f.read, READ_SIZE)
            except OSError as e:
                raise StoreError(f"cannot read {path}: {e.strerror or e}") from None
            if not piece:
                break
            verifier.update(piece)
            if held is not None:
                yield held
            held = piece
        verifier.verify()
        if held is not None:
            yield held
    finally:
        f.close()


async def from_registry(
    client: RegistryClient, endpoint: Endpoint, path: str, blob: Descriptor
) -> AsyncIterator[Chunk]:
    """The blob's bytes from the source, verified on the way, without a copy or a thread hop:
    each piece is a view of the source connection's buffer, hashed on the loop and handed on;
    the buffer goes back to the source connection once the piece is sent (the wire hands a
    streamed body's piece to the kernel before it asks for the next). The last piece alone is
    copied and held back until the whole blob has verified, so a blob that does not never
    completes its upload."""
    import asyncio

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[memoryview, asyncio.Future[None]] | bytes | BaseException | None]
    queue = asyncio.Queue()
    verifier = Verifier(blob.digest, blob.size, endpoint.url)
    holding: list[asyncio.Future[None]] = []

    def write(view: memoryview) -> asyncio.Future[None] | None:
        verifier.update(view)
        if verifier.size >= blob.size:  # the last piece (or too many bytes: verify says so)
            queue.put_nowait(bytes(view))
            return None
        sent: asyncio.Future[None] = loop.create_future()
        holding.append(sent)
        queue.put_nowait((view, sent))
        return sent

    async def produce() -> None:
        try:
            async with client.open_blob(endpoint, path, blob.digest) as body:
                await body.pour_on_loop(write)
            verifier.verify()
        except BaseException as e:
            queue.put_nowait(e)
            if not isinstance(e, Exception):
                raise
        else:
            queue.put_nowait(None)

    task = asyncio.ensure_future(produce())
    held: bytes | None = None
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                if held is not None:
                    yield held
                return
            if isinstance(item, bytes):
                held = item
                continue
            view, sent = item
            try:
                yield view
            finally:
                holding.remove(sent)
                sent.set_result(None)
    finally:
        for sent in holding:  # nobody will send these: the buffers may go
            if not sent.done():
                sent.cancel()
        task.cancel()
        await asyncio.wait({task})
