"""The body side of a connection: the buffers a body is read into, the writer it is poured to,
the flow control between them, and the read timeout.

Bodies go from the socket straight into a few reusable buffers (``asyncio.BufferedProtocol``:
one ``recv_into`` per read, no copies in Python), and a worker thread hashes and writes each full
buffer while the loop fills the next. aiohttp read into fresh ``bytes`` of at most 256 KiB and
joined them again, with a timer reschedule per read: on a 1 GB pull that cost as much CPU as
hashing every byte, and importing it was a third of pypull's start-up.

``Pouring`` holds the state of a connection and of its current exchange; ``connection.Connection``
derives from it and adds the protocol callbacks that fill its buffers, the head and the request.
"""

from __future__ import annotations

import asyncio
import fcntl
import re
import sys
import termios
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import cast

from .errors import BodyTimeout, MalformedAnswer, WireError
from .message import MAX_HEAD, Chunk, Head

#: Buffers per body: one filling, one queued, one being hashed and written.
BUFFERS = 3
#: For a writer on the loop (``Response.pour_on_loop``: a blob copied to another registry), a
#: buffer is held until the kernel has taken it for the upload: one filling, one being sent, of
#: 2 MiB. On 2 cores, a 1 GB copy between loopback registries took 1.19 CPU s against 1.30
#: with three of 1 MiB (8 rounds); three of 2 MiB, or two of 4 MiB, cost as much as the old
#: way: the fewer bytes in flight, the more of them the hashing finds in the cache.
LOOP_BUFFERS = 2
LOOP_CHUNK = 2 << 20
#: A blob body slower than this, averaged over the read timeout, is stalled (bytes per second).
MIN_RATE = 1024
#: How many times the read timeout a head or a small body may take in all, however it trickles.
DEADLINE_FACTOR = 2
#: How many times the read timeout one request may take up to its final head, every redirect,
#: connection, TLS handshake and proxy tunnel included.
REQUEST_DEADLINE_FACTOR = 4

Write = Callable[[memoryview], None]
#: A writer on the event loop: it may keep the view until the future it returns is done (the
#: piece is then passed on without a copy); None: done with it already.
LoopWrite = Callable[[memoryview], "asyncio.Future[None] | None"]


class Pouring(asyncio.BufferedProtocol):
    """A connection's state, and its answer's body poured to a writer: one ``write`` at a time,
    in order, from at most ``buffers`` buffers; reading pauses while every buffer waits for the
    writer. Runs on the loop; only ``write`` calls go to worker threads (see ``pour``).
    ``connection.Connection`` is the one subclass: the protocol callbacks that fill these
    buffers, the head and the request are there.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._transport: asyncio.Transport | None = None  # writes and closes: TLS or TCP
        self._tcp: asyncio.Transport | None = None  # paused and resumed for flow control
        self._lost = False
        self._lost_exc: Exception | None = None
        self._broken = False  # closed by us, or bytes came that belong to no answer
        self._idle = False  # in the pool
        self._idle_timer: asyncio.TimerHandle | None = None
        self._on_idle_end: Callable[[], None] | None = None
        self._write_ready: asyncio.Future[None] | None = None  # set while writing is paused
        self._new_exchange("GET")

    def _new_exchange(self, method: str) -> None:
        self._method = method
        self._head_buf = bytearray(4096)
        self._scratch = bytearray(4096)  # see get_buffer
        self._head_len = 0
        self._interim = 0  # bytes of 1xx answers skipped so far
        self._head: asyncio.Future[Head] = self._loop.create_future()
        self._leftover = b""  # body bytes that came with the head
        self._backlog: deque[bytes] = deque()  # TLS: bytes that came while there was no room
        self._deferred_loss: tuple[Exception | None] | None = None  # lost behind the backlog
        self._last_read = self._loop.time()
        self._watchdog: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # loop time by which the head or small body is in
        self._deadline_span = DEADLINE_FACTOR * self._timeout  # for the message
        self._rate_window: tuple[float, int] | None = None  # (start, bytes then): a blob body
        self._received = 0  # bytes received in this exchange
        self._queued = 0  # our bytes in the kernel's send queue at the watchdog's last look
        self._reading_body = False
        # pour's state
        self._remaining: int | None = None  # bytes of the body still to come, if known
        self._until_eof = False  # no length, not chunked: the body ends with the connection
        self._dechunker: Dechunker | None = None
        self._chunk_size = 0
        self._buffers = BUFFERS
        self._free: list[bytearray] = []
        self._allocated = 0
        self._buf: bytearray | None = None
        self._pos = 0
        self._queue: deque[Chunk] = deque()
        self._busy: asyncio.Future[None] | None = None
        self._write: Write | LoopWrite = _discard
        self._progress: Callable[[int], None] = _ignore
        self._inline = False
        self._on_loop = False
        self._done: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None  # a write failed: stop, raise this
        self._peer_error: BaseException | None = None  # the peer failed: raise after the writes
        self._held = False  # reading paused because every buffer waits for the disk
        self._stopped = False  # pour has returned or is returning: no more writes may start
        self._complete = False  # the whole body was read and written
        self._truncated = False  # read() stopped at its limit before the body's end

    @property
    def transport(self) -> asyncio.Transport:
        assert self._transport is not None
        return self._transport

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the next bytes received go: ``Connection`` says (its head, or these buffers)."""
        raise NotImplementedError

    async def pour(
        self,
        head: Head,
        write: Write | LoopWrite,
        progress: Callable[[int], None],
        chunk_size: int,
        inline: bool = False,
        cap: int | None = None,
        *,
        on_loop: bool = False,
        buffers: int = BUFFERS,
    ) -> None:
        """The body to ``write``; with ``cap``, stop after that many bytes. ``inline``: on the
        loop, within a deadline (a small body); ``on_loop``: on the loop, ``write`` maybe
        returning a future that holds the buffer (see ``Response.pour_on_loop``); ``buffers``
        of ``chunk_size`` at most."""
        if self._reading_body:
            raise RuntimeError("the body is being read already")
        chunked = head.framing == "chunked"
        length = 0 if head.framing == "none" else head.length
        self._truncated = cap is not None and (length is None or length > cap)
        self._reading_body = True
        now = self._loop.time()
        self._last_read = now
        if inline:
            self._deadline = now + DEADLINE_FACTOR * self._timeout if self._timeout else None
            self._deadline_span = DEADLINE_FACTOR * self._timeout
        else:
            self._deadline = None
            self._rate_window = (now, self._received)
        self._until_eof = length is None and not chunked
        self._remaining = length if cap is None or length is None else min(length, cap)
        if self._remaining is None and not chunked:
            self._remaining = cap  # reached, or the connection ends first: both are the end
        self._chunk_size = max(1, chunk_size)
        self._buffers = max(1, buffers)
        self._write, self._progress = write, progress
        self._inline, self._on_loop = inline, on_loop
        self._done = self._loop.create_future()
        leftover, self._leftover = self._leftover, b""
        if chunked:
            self._dechunker = Dechunker(cap)
            self._dechunked(leftover, len(leftover))
        else:
            if self._remaining is not None:
                if len(leftover) > self._remaining and not self._truncated:
                    self._broken = True  # more than the body: the connection is out of step
                leftover = leftover[: self._remaining]
                self._remaining -= len(leftover)
            if leftover:
                self._queue.append(leftover)
            # No buffer for a body that came whole with the head: an empty view to fill would
            # spin the copying path (TLS) forever.
            self._buf = self._take_buffer() if self._remaining != 0 else None
        self._drain_backlog()
        if self._lost:
            self._body_lost()
        elif self._remaining == 0:
            self._flush()
        else:
            self._arm()
            if not self._held and not self._backlog:
                self._resume()
        self._submit()
        self._finish_if_drained()
        try:
            await self._done
            self._complete = True
        finally:
            # Cancelled, or failed: stop reading, and wait for the worker to let go of the file.
            # Read to its end: the connection may carry another request.
            self._stopped = True
            self._queue.clear()
            self._backlog.clear()
            if not self._complete:
                self.close()
            # A loop-side writer holds no file: its piece keeps its own buffer alive.
            while self._busy is not None and not self._busy.done() and not self._on_loop:
                with suppress(BaseException):
                    await asyncio.shield(self._busy)

    def close(self) -> None:
        self._broken = True
        self._disarm()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._transport is not None and not self._lost:
            self._transport.abort()  # unread body bytes: the connection cannot be reused

    # -- flow ------------------------------------------------------------------------------------

    def _pause(self) -> None:
        if self._tcp is not None and not self._lost:
            self._tcp.pause_reading()

    def _resume(self) -> None:
        if self._tcp is not None and not self._lost:
            self._tcp.resume_reading()

    def _has_room(self) -> bool:
        """Whether received bytes have somewhere to go now (the copying path)."""
        if self._stopped:
            return True  # thrown away into the scratch buffer
        if not self._reading_body:
            return not self._head.done()  # after the head, bytes wait for pour
        return self._dechunker is not None or self._buf is not None or self._remaining == 0

    def _take_in(self, data: bytes) -> None:
        view = memoryview(data)
        i = 0
        while i < len(view):
            if not self._has_room():
                self._backlog.appendleft(bytes(view[i:]))
                self._pause()
                return
            buf = self.get_buffer(-1)
            n = min(len(buf), len(view) - i)
            if n == 0:  # no room after all: never loop on an empty buffer
                buf.release()
                self._backlog.appendleft(bytes(view[i:]))
                self._pause()
                return
            buf[:n] = view[i : i + n]
            buf.release()  # before buffer_updated, which may grow the head buffer
            self.buffer_updated(n)
            i += n

    def _drain_backlog(self) -> None:
        while self._backlog and self._has_room():
            self._take_in(self._backlog.popleft())
        if not self._backlog and self._deferred_loss is not None:
            (exc,) = self._deferred_loss
            self._deferred_loss = None
            self.connection_lost(exc)

    def _body_lost(self) -> None:
        """The connection ended while reading the body."""
        if self._until_eof and self._lost_exc is None:
            self._remaining = 0  # a body delimited by the end of the connection
            self._flush()
            self._finish_if_drained()
        elif self._remaining != 0:
            self._peer_failed(self._lost_exc or ConnectionResetError(self._short_body()))

    # -- body machinery --------------------------------------------------------------------------

    def _take_buffer(self) -> bytearray | None:
        if self._free:
            return self._free.pop()
        if self._allocated < self._buffers:
            self._allocated += 1
            return bytearray(self._chunk_size)
        return None

    def _flush(self) -> None:
        """Queue the filled part of the current buffer, and find the next one to fill."""
        if self._dechunker is not None:
            self._submit()
            return
        if self._buf is not None and self._pos:
            self._queue.append(memoryview(self._buf)[: self._pos])
            self._buf = None
            self._pos = 0
        elif self._buf is not None and self._remaining == 0:
            self._free.append(self._buf)  # never filled: the body ended without it
            self._buf = None
        if self._remaining == 0:
            self._disarm()  # the body is all here: what is left to wait for is our disk
            self._pause()
        elif self._buf is None and not self._lost:
            self._buf = self._take_buffer()
            if self._buf is None:
                self._pause()  # every buffer waits for the disk
                self._held = True
        self._submit()

    def _submit(self) -> None:
        """Start the next write, unless one is running: writes happen one at a time, in order."""
        if self._busy is not None or not self._queue or self._failure or self._stopped:
            return
        chunk = self._queue.popleft()
        view = chunk if isinstance(chunk, memoryview) else memoryview(chunk)
        if self._inline or self._on_loop:
            busy: asyncio.Future[None] = self._loop.create_future()
            try:
                held = self._write(view)
            except Exception as e:  # handed on like a worker thread's exception
                busy.set_exception(e)
            else:
                if isinstance(held, asyncio.Future):
                    busy = held  # the buffer is the writer's until then
                else:
                    busy.set_result(None)
        else:
            busy = self._loop.run_in_executor(None, cast(Write, self._write), view)
        self._busy = busy
        busy.add_done_callback(lambda f: self._written(f, chunk))

    def _written(self, future: asyncio.Future[None], chunk: Chunk) -> None:
        self._busy = None
        if future.cancelled() or self._stopped:
            return
        error = future.exception()
        if error is not None:
            self._failure = error  # our disk or our verifier: nothing more is written
            self._queue.clear()
            self.close()
            self._finish_if_drained()
            return
        if isinstance(chunk, memoryview) and isinstance(chunk.obj, bytearray):
            self._free.append(chunk.obj)
        try:
            self._progress(len(chunk))
        except Exception as e:  # a callback's bug must end pour, not leave it waiting
            self._failure = e
            self._queue.clear()
            self.close()
            self._finish_if_drained()
            return
        if self._held:
            if self._dechunker is None and self._buf is None:
                self._buf = self._take_buffer()
            ready = self._buf is not None if self._dechunker is None else len(self._queue) < 2
            if ready:
                self._held = False
                self._drain_backlog()
                if not self._held and not self._backlog and self._remaining != 0:
                    self._resume()
        self._submit()
        self._finish_if_drained()

    def _dechunked(self, raw: bytes | bytearray, nbytes: int) -> None:
        """Received bytes of a chunked body: queue the data in them (copied: chunked blob bodies
        are rare, so this path is simple rather than fast)."""
        assert self._dechunker is not None
        pieces = self._dechunker.feed(raw, nbytes)
        if pieces:
            self._queue.append(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        if self._dechunker.error is not None:
            self._peer_failed(self._dechunker.error)
            return
        if self._dechunker.done:
            if self._dechunker.extra:
                self._broken = True  # bytes after the last chunk: the connection is out of step
            self._remaining = 0
            self._disarm()
            self._pause()
        elif len(self._queue) >= self._buffers:
            self._pause()  # the disk is behind: let the queue drain
            self._held = True
        self._submit()
        self._finish_if_drained()

    def _peer_failed(self, error: BaseException) -> None:
        """The connection broke or stalled: write what arrived (a resume starts after it), then
        raise. The first failure is the one reported."""
        if self._peer_error is None:
            self._peer_error = error
        self._flush()
        self.close()
        self._lost = True
        self._finish_if_drained()

    def _finish_if_drained(self) -> None:
        """Settle ``pour`` once no write is queued or running."""
        if self._done is None or self._done.done() or self._queue or self._busy is not None:
            return
        error = self._failure or self._peer_error
        if error is not None:
            self._disarm()
            self._done.set_exception(error)
        elif self._remaining == 0:
            self._disarm()
            self._done.set_result(None)

    def _short_body(self) -> str:
        return "the server closed the connection before the whole body arrived"

    # -- read timeout ----------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._timeout and self._watchdog is None:
            self._watchdog = self._loop.call_later(self._timeout, self._check)

    def _disarm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _check(self) -> None:
        """Rescheduled rather than reset on every read: one timer per timeout, not per recv.

        Three rules: no byte for the read timeout; a head or small body not all in by its
        deadline, however it trickles; a blob body under ``MIN_RATE`` over a read timeout.
        Time spent waiting for our own disk counts for none of them."""
        self._watchdog = None
        now = self._loop.time()
        if self._held or self._backlog:
            self._last_read = now  # waiting for our disk, not for the peer
            if self._rate_window is not None:
                self._rate_window = (now, self._received)
        if not self._head.done():
            queued = self._unsent()[2]
            if queued and queued != self._queued:
                # Our request is still leaving on a slow line: the answer cannot have come
                # yet, so neither its silence nor its deadline counts from before.
                self._last_read = now
                if self._deadline is not None:
                    self._deadline = now + self._deadline_span
            self._queued = queued
        idle = now - self._last_read
        error = None
        next_check = self._timeout - idle
        if idle >= self._timeout:
            error = BodyTimeout()
        elif self._deadline is not None:
            if now >= self._deadline:
                error = BodyTimeout(f"no complete answer within {self._deadline_span:g} s")
            next_check = min(next_check, self._deadline - now)
        elif self._rate_window is not None:
            since, received = self._rate_window
            if now - since >= self._timeout:
                if self._received - received < MIN_RATE * (now - since):
                    error = BodyTimeout(
                        f"stalled: under {MIN_RATE // 1024} KiB/s for {self._timeout:g} s"
                    )
                self._rate_window = (now, self._received)
                since = now
            next_check = min(next_check, since + self._timeout - now)
        if error is None:
            self._watchdog = self._loop.call_later(max(next_check, 0.001), self._check)
            return
        if not self._head.done():
            self._head.set_exception(error)
            self.close()
        elif self._reading_body:
            self._peer_failed(error)

    def _unsent(self) -> tuple[int, int, int]:
        """Where the request's bytes wait: in the transport (TLS: not yet encrypted or passed
        down), in the TCP transport below TLS, and in the kernel's send queue (sent, not yet
        acknowledged). The kernel's moves most finely: a reader slower than half the send
        buffer per timeout leaves the transports' alone for longer than that."""
        tcp = self._tcp if self._tcp is not None else self.transport
        below = tcp.get_write_buffer_size() if tcp is not self._transport else 0
        queued = 0
        sock = tcp.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError, ValueError):
                buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
                queued = int.from_bytes(buf, sys.byteorder, signed=True)
        return self.transport.get_write_buffer_size(), below, queued


def _ignore(_: int) -> None:
    pass


def _discard(_: memoryview) -> None:
    pass


_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")


class Dechunker:
    """Decodes ``Transfer-Encoding: chunked`` (RFC 9112 section 7.1) from raw bytes as they
    come; ``done`` after the last chunk and the trailer (ignored), or after ``cap`` data bytes."""

    MAX_LINE = 4096

    def __init__(self, cap: int | None) -> None:
        self.raw = bytearray(64 * 1024)  # the transport reads into this
        self.done = False
        self.error: WireError | None = None  # malformed: what came before it is still returned
        self.extra = 0  # bytes after the body's end
        self._cap = cap
        self._given = 0
        self._line = bytearray()
        self._left = 0  # data bytes left in the current chunk
        self._state = "size"  # size, data, data-end, trailer
        self._trailer = 0  # bytes of trailer fields (ignored, but not without end)

    def feed(self, raw: bytes | bytearray, n: int) -> list[bytes]:
        """The data in ``raw[:n]``; on malformed framing, the data before it, and ``error``."""
        pieces: list[bytes] = []
        try:
            self._feed(raw, n, pieces)
        except WireError as e:
            self.error = e
        return pieces

    def _feed(self, raw: bytes | bytearray, n: int, pieces: list[bytes]) -> None:
        data = memoryview(raw)
        i = 0
        while i < n and not self.done and self.error is None:
            if self._state == "data":
                take = min(self._left, n - i)
                if self._cap is not None:
                    take = min(take, self._cap - self._given)
                pieces.append(bytes(data[i : i + take]))
                self._given += take
                self._left -= take
                i += take
                if self._cap is not None and self._given >= self._cap:
                    self.done = True
                elif not self._left:
                    self._state = "data-end"
                continue
            end = raw.find(b"\n", i, n)
            if end < 0:
                self._line += data[i:n]
                i = n
            else:
                self._line += data[i:end]
                i = end + 1
                self._line_done(bytes(self._line).rstrip(b"\r"))
                self._line.clear()
            if len(self._line) > self.MAX_LINE:
                raise MalformedAnswer("malformed chunked body: a line over 4096 bytes")
        if self.done and self._cap is None:
            self.extra += n - i

    def _line_done(self, line: bytes) -> None:
        if self._state == "size":
            size = line.split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size):
                raise MalformedAnswer(f"malformed chunked body: chunk size {size[:20]!r}")
            self._left = int(size, 16)
            self._state = "data" if self._left else "trailer"
        elif self._state == "data-end":
            if line:
                raise MalformedAnswer("malformed chunked body: no line end after a chunk")
            self._state = "size"
        elif not line:  # the empty line that ends the trailer
            self.done = True
        else:
            self._trailer += len(line) + 2
            if self._trailer > MAX_HEAD:
                raise MalformedAnswer(f"malformed chunked body: a trailer over {MAX_HEAD} bytes")
