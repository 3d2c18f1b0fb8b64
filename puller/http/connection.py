"""A connection and the response read on it: ``Connection`` sends a request and reads the head
of its answer (the body is ``pour``'s side, which it derives from), keeps what the pool needs to
know, and ``Response`` is what a caller gets: the head, the body to pour or read, ``release``.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Callable
from typing import cast

from .errors import BadRequest, BodyTimeout, MalformedAnswer, ProxyError, WireError
from .heads import parse_head
from .message import MAX_HEAD, Head, RequestBody
from .pour import (
    DEADLINE_FACTOR,
    LOOP_BUFFERS,
    LOOP_CHUNK,
    REQUEST_DEADLINE_FACTOR,
    LoopWrite,
    Pouring,
    Write,
)

#: What the pool keeps idle connections by: scheme, host, port, the proxy and whose
#: credentials opened its tunnel, and the TLS context.
PoolKey = tuple[str, str, int, str | None, int]


class Connection(Pouring):
    """One request's connection: reads the head into a small buffer, then the body into the
    buffers of ``pour``. Runs on the loop; only ``write`` calls go to worker threads.

    Over TLS, asyncio's TLS layer feeds a ``BufferedProtocol`` only one buffer when the server
    closes while our reading is paused, and drops the rest (CPython 3.11 sslproto); its copying
    path hands over everything. So TLS goes through ``Copying`` and ``data_received``, which
    copies into the same buffers (TLS has copied the bytes once already), and flow control
    pauses the TCP transport underneath, which the TLS layer never reads past.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        super().__init__(loop, timeout)
        self.key: PoolKey | None = None

    # -- asyncio protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports do not derive from asyncio's classes
        self._transport = self._tcp = cast(asyncio.Transport, transport)

    def secured(self, transport: asyncio.Transport) -> None:
        """TLS is set up on the connection: write and close through ``transport`` from now."""
        self._transport = transport

    def pause_writing(self) -> None:
        if self._write_ready is None:
            self._write_ready = self._loop.create_future()

    def resume_writing(self) -> None:
        ready, self._write_ready = self._write_ready, None
        if ready is not None and not ready.done():
            ready.set_result(None)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._idle:
            return memoryview(self._scratch)
        if not self._reading_body:
            if self._head_len == len(self._head_buf):
                self._head_buf.extend(bytes(len(self._head_buf)))
            return memoryview(self._head_buf)[self._head_len :]
        if self._dechunker is not None:
            return memoryview(self._dechunker.raw)
        if self._buf is None or self._remaining == 0:
            # Reading is paused while no buffer is free and once the body is complete; bytes
            # the transport still hands over (past Content-Length) are thrown away.
            return memoryview(self._scratch)
        end = self._chunk_size
        if self._remaining is not None:
            end = min(end, self._pos + self._remaining)
        return memoryview(self._buf)[self._pos : end]

    def buffer_updated(self, nbytes: int) -> None:
        self._last_read = self._loop.time()
        self._received += nbytes
        if self._idle:
            self.close()  # bytes that answer nothing: the connection is not ours to trust
            return
        if self._reading_body:
            if self._dechunker is not None:
                self._dechunked(self._dechunker.raw, nbytes)
                return
            if self._buf is None:
                if self._remaining == 0 or self._stopped:
                    self._broken = True  # past the body's end: the connection is out of step
                return  # into the scratch buffer: see get_buffer
            self._pos += nbytes
            if self._remaining is not None:
                self._remaining -= nbytes
            if self._pos == self._chunk_size or self._remaining == 0:
                self._flush()
            return
        if self._head.done():
            return  # a failed head: the connection is closing
        self._head_len += nbytes
        start = 0
        while True:
            end = self._head_buf.find(b"\r\n\r\n", start, self._head_len)
            if (end < 0 and self._head_len - start > MAX_HEAD) or end + 4 - start > MAX_HEAD:
                self._fail_head(MalformedAnswer(f"response head over {MAX_HEAD} bytes"))
                return
            if end < 0:
                if start:  # drop the interim heads already read
                    self._interim += start
                    if self._interim > MAX_HEAD:
                        self._fail_head(MalformedAnswer(f"interim answers over {MAX_HEAD} bytes"))
                        return
                    # A new buffer: the transport may still hold a view of this one.
                    rest = self._head_buf[start : self._head_len]
                    self._head_buf = bytearray(max(4096, 2 * len(rest)))
                    self._head_buf[: len(rest)] = rest
                    self._head_len = len(rest)
                return
            try:
                parsed = parse_head(bytes(self._head_buf[start:end]), self._method)
            except WireError as e:
                self._fail_head(e)
                return
            start = end + 4
            if not 100 <= parsed.status < 200:
                break
            if self._interim + start > MAX_HEAD:
                self._fail_head(MalformedAnswer(f"interim answers over {MAX_HEAD} bytes"))
                return
            # An interim answer (103 Early Hints from a CDN): the real one follows.
        self._pause()  # until pour decides where the body goes
        self._leftover = bytes(self._head_buf[start : self._head_len])
        self._disarm()
        self._head.set_result(parsed)

    def data_received(self, data: bytes) -> None:
        """The copying path (TLS): into the same buffers as ``recv_into`` would."""
        if self._idle:
            self.close()  # bytes that answer nothing: the connection is not ours to trust
            return
        if self._backlog or not self._has_room():
            self._backlog.append(data)
            self._pause()
            return
        self._take_in(data)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._backlog and not self._stopped:
            self._deferred_loss = (exc,)  # the end comes after the bytes still to place
            return
        self._lost = True
        self._lost_exc = exc
        self._disarm()
        ready, self._write_ready = self._write_ready, None
        if ready is not None and not ready.done():
            ready.set_exception(exc or ConnectionResetError("the server closed the connection"))
            ready.exception()
        if self._idle:
            self._end_idle()
            return
        if not self._head.done():
            self._head.set_exception(
                exc or ConnectionResetError("the server closed the connection before answering")
            )
            self._head.exception()  # retrieved: a caller that gave up must not log it
        if self._reading_body and not self._stopped:
            self._body_lost()

    # -- API ---------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return not (self._lost or self._broken or self._backlog or self._deferred_loss)

    def quiet(self) -> bool:
        """Nothing waits to be read on the socket: no bytes a server sent after its answer (or
        before our next request) and no close, which reading would find only after the next
        request had gone out and been answered by them."""
        sock = self._tcp.get_extra_info("socket") if self._tcp is not None else None
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    @property
    def answered(self) -> bool:
        """Whether any byte of an answer came in this exchange."""
        return self._received > 0

    def begin(self, method: str) -> None:
        """A new request on this connection: its answer's state starts afresh."""
        if not self.usable:
            raise ConnectionResetError("the connection is closed")
        self._new_exchange(method)
        self._resume()

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    async def send_body(self, body: RequestBody, length: int) -> None:
        """Write a request body, waiting while the transport holds what it cannot hand to the
        kernel yet. A server that answers before the body is all sent (a 401, a 413) ends the
        sending; the connection is then not reused.

        A streamed body's piece is wholly out of the transport's hands (in the kernel's, or
        encrypted by TLS) before the next is asked for, so a piece may be a view of a buffer its
        producer fills again (a blob copied from one registry to another goes through without a
        copy). The kernel's send buffer, full behind it, keeps the line busy meanwhile; TLS
        bounds what it holds by its own TCP transport's marks."""
        if isinstance(body, bytes):
            self.transport.write(body)
            await self._drain()
            return
        sent = 0
        self._pause_while_held()
        try:
            async for chunk in body:
                if self._head.done() or self._lost:
                    self._broken = True
                    return
                sent += len(chunk)
                if sent > length:
                    self._broken = True
                    raise BadRequest(f"the request body is longer than its length ({length})")
                self.transport.write(chunk)
                await self._drain()
        finally:
            if not self._lost:
                self.transport.set_write_buffer_limits()
        if sent != length:
            self._broken = True
            raise BadRequest(f"the request body ended at {sent} of {length} bytes")

    def _pause_while_held(self) -> None:
        """Marks at which writing pauses once the transport holds a byte and resumes once it
        holds none. TCP transports (asyncio's, uvloop's) pause at ``size > high``, their TLS
        transports at ``size >= high``: ``high=0`` would pause TLS for good with nothing
        buffered (uploads over TLS stalled a timeout per piece), ``high=1`` would let TCP keep a
        byte of a piece unnoticed. Each checks its marks when they are set, so an empty
        transport that pauses at once tells which kind it is."""
        transport = self.transport
        for high in (0, 1):
            transport.set_write_buffer_limits(high=high, low=0)
            if self._write_ready is None or transport.get_write_buffer_size():
                return

    async def _drain(self) -> None:
        """Wait while writing is paused and the transport holds something (a transport that
        pauses with nothing held has nothing to wait for). Only a whole read timeout in which
        nothing moved on is the server's fault: a slow line still drains."""
        transport = self.transport
        seen: tuple[int, int, int] | None = None
        while (ready := self._write_ready) is not None and transport.get_write_buffer_size():
            if seen is None:
                seen = self._unsent()
            try:
                await asyncio.wait_for(asyncio.shield(ready), self._timeout or None)
            except asyncio.TimeoutError:
                now = self._unsent()
                if now == seen:
                    self._broken = True
                    raise BodyTimeout(
                        f"the server stopped reading the request body (nothing taken for "
                        f"{self._timeout:g} s)"
                    ) from None
                seen = now
            else:
                seen = None

    async def head(self, deadline: float | None = None) -> Head:
        """The answer's head, within ``DEADLINE_FACTOR`` read timeouts of asking for it, and by
        the request's ``deadline``."""
        if not self._head.done() and self._timeout:
            now = self._loop.time()
            self._last_read = now
            self._deadline = now + DEADLINE_FACTOR * self._timeout
            self._deadline_span = DEADLINE_FACTOR * self._timeout
            if deadline is not None and deadline < self._deadline:
                self._deadline = deadline
                self._deadline_span = REQUEST_DEADLINE_FACTOR * self._timeout
            self._arm()
        return await self._head

    def tunnel_open(self) -> None:
        """A proxy's 2xx to CONNECT: from here the bytes are the target's (TLS)."""
        if self._leftover or self._backlog:
            raise ProxyError("the proxy sent bytes after its answer to CONNECT")
        self._disarm()

    def reusable(self, head: Head) -> bool:
        """Whether the answer is over and the connection may carry the next request."""
        if not self.usable or self._idle or not head.keep_alive or self._backlog:
            return False
        if not self._reading_body:
            # Unread: reusable only when nothing of a body is still to come (an auth
            # challenge's few bytes arrive with its head: the token request reuses the line).
            expected = 0 if head.framing == "none" else head.length
            return head.framing in ("none", "length") and len(self._leftover) == expected
        return self._complete and not self._truncated

    def enter_pool(self, seconds: float, on_end: Callable[[], None]) -> None:
        """Idle in the pool: reading on, so that a close by the server is seen at once."""
        self._idle = True
        self._on_idle_end = on_end
        self._disarm()
        self._idle_timer = self._loop.call_later(seconds, self._end_idle)
        self._resume()

    def leave_pool(self) -> None:
        self._idle = False
        self._on_idle_end = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _end_idle(self) -> None:
        on_end = self._on_idle_end
        self.leave_pool()
        if on_end is not None:
            on_end()  # out of the pool, closed
        self.close()

    def _fail_head(self, error: Exception) -> None:
        if not self._head.done():
            self._head.set_exception(error)
        self.close()


class Copying(asyncio.Protocol):
    """Hands a TLS connection's bytes to ``Connection.data_received`` (see its docstring)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def data_received(self, data: bytes) -> None:
        self._conn.data_received(data)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._conn.connection_lost(exc)

    def pause_writing(self) -> None:
        self._conn.pause_writing()

    def resume_writing(self) -> None:
        self._conn.resume_writing()


class Response:
    """A response whose head has been read; the body is read by ``pour`` or ``read``, and
    ``release`` hands the connection back (to the pool if the body was read to its end)."""

    def __init__(
        self,
        conn: Connection,
        head: Head,
        url: str,
        method: str,
        checkin: Callable[[Connection], None] | None,
    ) -> None:
        self._conn = conn
        self._head = head
        self._checkin = checkin  # where a reusable connection goes back to
        self.status = head.status
        self.headers = head.headers
        self.url = url
        self.method = method
        self._released = False

    @property
    def content_length(self) -> int | None:
        """None for a chunked body: its Content-Length, if any, must be ignored (RFC 9112 6.3)."""
        return self._head.length

    @property
    def chunked(self) -> bool:
        return self._head.framing == "chunked"

    async def pour(
        self, write: Write, progress: Callable[[int], None], chunk_size: int = 1 << 20
    ) -> None:
        """Stream the body to ``write`` in order, one call at a time in a worker thread, then
        return. Every ``write`` call has returned before this returns or raises. If the peer
        stops early, what arrived is written before the error is raised (for a resume). A body
        slower than ``MIN_RATE`` over the read timeout is a ``BodyTimeout``."""
        await self._conn.pour(self._head, write, progress, chunk_size)

    async def pour_on_loop(self, write: LoopWrite, progress: Callable[[int], None]) -> None:
        """``pour``, but ``write`` runs on the loop, and a buffer (``LOOP_CHUNK``) goes back to
        the socket only when the future ``write`` returned for it is done: for a writer that
        hands each piece on (a copy to another registry) rather than blocking on a disk. No
        thread hop per piece: that cost a copy more CPU than anything but hashing and the
        kernel."""
        await self._conn.pour(
            self._head, write, progress, LOOP_CHUNK, on_loop=True, buffers=LOOP_BUFFERS
        )

    async def read(self, limit: int) -> bytes:
        """At most ``limit`` bytes of the body (a manifest, a token, an error message), read on
        the loop, within ``DEADLINE_FACTOR`` times the read timeout in all."""
        got = bytearray()
        await self._conn.pour(self._head, got.extend, _ignore, 16 * 1024, True, limit)
        return bytes(got[:limit])

    def release(self) -> None:
        """Give the connection back: to the pool when its answer was read to the end and the
        server keeps it open, else closed."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        if self._checkin is not None and conn.reusable(self._head):
            self._checkin(conn)
        else:
            conn.close()


def _ignore(_: int) -> None:
    pass
