"""An image's layers as unpack and export read them (found in the store by
``store.images.stored_layers``): read, inflated and verified in threads while the caller takes
their tar entries one by one.

    layers = image_layers(stored_layers(store, ref, platform), str(ref))
    with Pipeline(store, layers, what) as pipeline:
        for i in range(len(layers)):
            each_entry(pipeline, i, handle)    # handle(entry, source, where), then the digests

The pipeline: a reader thread reads and hashes the compressed blob, a decompressor thread
inflates it (zlib and zstandard release the GIL), a hasher thread hashes what it inflated
(hashlib releases the GIL on large buffers), and the calling thread parses tar headers and
writes. Bounded queues join them, so the next layer is read, inflated and hashed while this one
is written, and memory is bounded whatever a layer holds: the bytes stream in chunks of
``CHUNK``, the decompressors give at most ``CHUNK`` at a time (no bomb fills memory), and the
tar reader holds one entry's extended headers, at most ``LAYER_POLICY.max_meta`` bytes.

Each layer is checked against its compressed digest and against the config's
``rootfs.diff_ids``; a tar error is reported after those digests, which say more when they do
not match. Names from a layer are cleaned here as if rooted at ``/`` (``clean``: ``../x`` and
``/x`` are ``x``), at most ``MAX_NAME`` bytes and ``MAX_DEPTH`` directories deep; whiteouts
(``WHITEOUT``, ``OPAQUE``) are the OCI image spec's.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, BinaryIO

from .errors import DigestMismatch, UnpackError
from .oci.digest import Digest
from .oci.manifest import Descriptor
from .store.layout import Store
from .tar.compression import check_magic, inflated, of_media_type
from .tar.errors import TarError, Truncated
from .tar.reader import Entry, Policy, Source, entries
from .text import shown

__all__ = ["LAYER_POLICY", "Layer", "Pipeline", "each_entry", "image_layers"]

#: Bytes per piece of the pipeline: large enough that hashing and inflating release the GIL for
#: long stretches, small enough that the queues hold a few MiB at most.
CHUNK = 1 << 20
#: Pieces waiting between two stages.
QUEUE_DEPTH = 4
#: What a layer may make unpack and export hold: one entry's extended headers at most 1 MiB,
#: 64 global PAX records; no bound on its entries (what grows with them is bounded apart).
LAYER_POLICY = Policy()


# -- the image ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layer:
    descriptor: Descriptor
    diff_id: Digest
    compression: str  # "gzip", "zstd" or "" (a plain tar)


def _compression(media_type: str, what: str) -> str:
    compression = of_media_type(media_type)
    if compression is None:
        raise UnpackError(f"{what}: layer media type {shown(media_type)} is not a tar pypull reads")
    return compression


def image_layers(stored: list[tuple[Descriptor, Digest]], what: str) -> list[Layer]:
    """The image's layers (``store.images.stored_layers``), each with how it is compressed."""
    return [Layer(d, i, _compression(d.media_type, what)) for d, i in stored]


# -- the pipeline: read + hash, inflate, hash, each in a thread ---------------------------------


class _Stop(Exception):
    """The consumer has gone: a producer thread ends quietly."""


@dataclass(slots=True)
class _End:
    """The end of one layer's bytes, with what its producers found."""

    layer: int
    compressed: Digest | None = None
    uncompressed: Digest | None = None
    error: BaseException | None = None


class _Pipe:
    """A bounded queue that a stopped pipeline never blocks on."""

    def __init__(self, stop: threading.Event) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_DEPTH)
        self._stop = stop

    def put(self, item: Any) -> None:
        while True:
            if self._stop.is_set():
                raise _Stop
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self) -> Any:
        while True:
            if self._stop.is_set():
                raise _Stop
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                continue


class Pipeline:
    """Every layer's uncompressed bytes, in order, with an ``_End`` after each; the digests are
    computed in threads while the caller writes."""

    def __init__(
        self, store: Store, layers: list[Layer], what: str, numbers: list[int] | None = None
    ) -> None:
        self._store = store
        self._layers = layers
        self._what = what
        #: Each layer's number in the image, for messages (export reads them top first).
        self._numbers = numbers or list(range(1, len(layers) + 1))
        self.stop = threading.Event()
        self._raw = _Pipe(self.stop)  # compressed chunks, then _End(compressed=...)
        self.out = _Pipe(self.stop)  # uncompressed chunks, then _End (to the writer)
        self._hash_in = _Pipe(self.stop)  # uncompressed chunks, then _End (to the hasher)
        self._hashed: list[_Pipe] = [_Pipe(self.stop) for _ in layers]
        self._threads = [
            threading.Thread(target=self._guard(self._read), name="unpack-read", daemon=True),
            threading.Thread(target=self._guard(self._inflate), name="unpack-inflate", daemon=True),
            threading.Thread(target=self._guard(self._hash), name="unpack-hash", daemon=True),
        ]

    def where(self, i: int) -> str:
        return f"{self._what}: layer {self._numbers[i]} ({self._layers[i].descriptor.digest})"

    def __enter__(self) -> Pipeline:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join()

    def _guard(self, work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except _Stop:
                pass
            except BaseException as e:  # handed to the writer, which raises it
                with suppress(_Stop):
                    self.out.put(e)

        return run

    def _read(self) -> None:
        for i, layer in enumerate(self._layers):
            desc = layer.descriptor
            h = hashlib.new(desc.digest.algorithm)
            size = 0
            wrong: UnpackError | None = None
            f: BinaryIO = self._store.open_blob(desc.digest)
            with f:
                while True:
                    chunk = f.read(CHUNK)
                    if size == 0:
                        try:
                            check_magic(chunk, layer.compression, self.where(i))
                        except TarError as e:
                            wrong = UnpackError(str(e))  # unless the blob was changed: see below
                    if not chunk:
                        break
                    size += len(chunk)
                    h.update(chunk)
                    if wrong is None:
                        self._raw.put(chunk)
            end = _End(i, compressed=Digest(desc.digest.algorithm, h.hexdigest()))
            if wrong is not None:
                self._check_compressed(end)
                raise wrong
            self._raw.put(end)

    def _compressed_of(self, i: int, ends: list[_End]) -> Iterator[bytes]:
        while True:
            item = self._raw.get()
            if isinstance(item, _End):
                ends.append(item)
                return
            yield item

    def _inflate(self) -> None:
        for i, layer in enumerate(self._layers):
            ends: list[_End] = []
            chunks = inflated(self._compressed_of(i, ends), layer.compression, self.where(i))
            try:
                for out in chunks:
                    self._hash_in.put(out)
                    self.out.put(out)
            except TarError as e:
                # Bytes that do not inflate: a blob changed in the store says more, if it was.
                for _ in self._compressed_of(i, ends) if not ends else ():
                    pass
                self._check_compressed(ends[0])
                raise UnpackError(str(e)) from None
            if not ends:  # zstd may stop before the source's end marker: drain to it
                for _ in self._compressed_of(i, ends):
                    pass
            self._hash_in.put(ends[0])
            end = self._hashed[i].get()
            self.out.put(end)

    def _hash(self) -> None:
        for i, layer in enumerate(self._layers):
            h = hashlib.new(layer.diff_id.algorithm)
            while True:
                item = self._hash_in.get()
                if isinstance(item, _End):
                    item.uncompressed = Digest(layer.diff_id.algorithm, h.hexdigest())
                    self._hashed[i].put(item)
                    break
                h.update(item)

    def _check_compressed(self, end: _End) -> None:
        layer = self._layers[end.layer]
        if end.compressed != layer.descriptor.digest:
            where = self.where(end.layer)
            raise DigestMismatch(
                f"{where}: the stored blob's digest is {end.compressed}",
                expected=str(layer.descriptor.digest),
                got=str(end.compressed),
                url=where,
            )

    def verify(self, end: _End) -> None:
        """Raise ``DigestMismatch`` unless layer ``end.layer`` was what the image says."""
        layer = self._layers[end.layer]
        where = self.where(end.layer)
        self._check_compressed(end)
        if end.uncompressed != layer.diff_id:
            raise DigestMismatch(
                f"{where}: its uncompressed digest is {end.uncompressed}, but the config's "
                f"diff_id is {layer.diff_id}",
                expected=str(layer.diff_id),
                got=str(end.uncompressed),
                url=where,
            )


class _Input:
    """One layer's uncompressed bytes as the tar reader wants them: exact reads, chunks of
    file content without copies, and the ``_End`` that follows."""

    def __init__(self, pipe: _Pipe, where: str) -> None:
        self._pipe = pipe
        self._where = where
        self._buf = memoryview(b"")
        self.end: _End | None = None
        #: A producer thread failed: nothing more will come, so there is nothing to drain.
        self.failed = False
        #: Bytes of the tar handed out (``Source.offset``).
        self.offset = 0

    def _fill(self) -> bool:
        if self.end is not None:
            return False
        item = self._pipe.get()
        if isinstance(item, BaseException):
            self.failed = True
            raise item
        if isinstance(item, _End):
            self.end = item
            return False
        self._buf = memoryview(item)
        return True

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes (small: headers); fewer only at the layer's end."""
        if len(self._buf) >= n:
            out = bytes(self._buf[:n])
            self._buf = self._buf[n:]
            self.offset += n
            return out
        parts = [bytes(self._buf)]
        got = len(self._buf)
        self._buf = memoryview(b"")
        while got < n and self._fill():
            take = self._buf[: n - got]
            parts.append(bytes(take))
            got += len(take)
            self._buf = self._buf[len(take) :]
        self.offset += got
        return b"".join(parts)

    def chunks(self, n: int) -> Iterator[memoryview]:
        """The next ``n`` bytes, as they come; raises if the layer ends first."""
        while n:
            if not self._buf and not self._fill():
                raise Truncated(f"{self._where}: the archive ends in the middle of a member")
            take = self._buf[:n]
            self._buf = self._buf[len(take) :]
            n -= len(take)
            self.offset += len(take)
            yield take

    def drain(self) -> _End:
        """Everything left of the layer (a tar's trailing blocks are hashed too)."""
        self._buf = memoryview(b"")
        while self._fill():
            self._buf = memoryview(b"")
        assert self.end is not None
        return self.end


def each_entry(pipeline: Pipeline, i: int, handle: Callable[[Entry, Source, str], None]) -> None:
    """``handle`` each entry of the pipeline's layer ``i``, then check the layer's digests."""
    where = pipeline.where(i)
    src = _Input(pipeline.out, where)
    try:
        for entry in entries(src, where, LAYER_POLICY):
            handle(entry, src, where)
    except (UnpackError, TarError) as e:
        if src.failed:
            raise
        # A digest that does not match says more than the tar error it caused.
        pipeline.verify(src.drain())
        if isinstance(e, TarError):
            raise UnpackError(str(e)) from None
        raise
    pipeline.verify(src.drain())
