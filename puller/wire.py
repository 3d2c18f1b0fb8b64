"""A minimal HTTP/1.1 GET for blob bodies: bytes go from the socket straight into a few reusable
buffers (``asyncio.BufferedProtocol``: one ``recv_into`` per read, no copies in Python), and a
worker thread hashes and writes each full buffer while the loop fills the next.

Why not aiohttp for this one request: it reads into fresh ``bytes`` of at most 256 KiB, feeds them
through its parser into a stream reader, and joins them again into the chunk size asked for, with
several Python calls and a timer reschedule per read. On a 1 GB pull that cost as much CPU as
hashing every byte. And a pull that needs no token never imports aiohttp, which is a third of
pypull's start-up: so manifests and ``/v2/`` probes come through here too. aiohttp is left the
token endpoints (form POSTs, query encoding), which it does well and which are not hot.

Only ``registry`` uses this module; it keeps auth, errors and retries in one place.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from urllib.parse import quote, urljoin, urlsplit

#: Longest status line plus headers we accept; a registry's are well under 2 KiB.
MAX_HEAD = 64 * 1024
MAX_REDIRECTS = 10
#: Buffers per body: one filling, one queued, one being hashed and written.
BUFFERS = 3

Chunk = bytes | bytearray | memoryview
Write = Callable[[memoryview], None]


class WireError(Exception):
    """The server's answer is not HTTP/1.x we can read."""


class TooManyRedirects(WireError):
    pass


class BadURL(WireError):
    """A URL (perhaps from a redirect) that is not http(s)://host[:port]/..."""


class BodyTimeout(asyncio.TimeoutError):
    """No byte arrived for the read timeout (time spent waiting on our own disk not counted)."""

    def __str__(self) -> str:
        return "timed out"


class Headers:
    """Response headers, looked up case-insensitively; the first of repeated ones wins, as with
    ``aiohttp``'s ``headers.get``."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        self._items.setdefault(name.lower(), value)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._items.get(name.lower(), default)


class Response:
    """A response whose head has been read; the body is read by ``pour`` or ``read``."""

    def __init__(self, conn: _Connection, status: int, headers: Headers, url: str) -> None:
        self._conn = conn
        self.status = status
        self.headers = headers
        self.url = url

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None:
            return None
        if not value.isdigit():
            raise WireError(f"invalid Content-Length {value!r}")
        return int(value)

    @property
    def chunked(self) -> bool:
        coding = self.headers.get("Transfer-Encoding")
        if coding is None or coding.strip().lower() == "identity":
            return False
        if coding.strip().lower() != "chunked":
            raise WireError(f"unsupported Transfer-Encoding {coding!r}")
        return True

    async def pour(
        self, write: Write, progress: Callable[[int], None], chunk_size: int = 1 << 20
    ) -> None:
        """Stream the body to ``write`` in order, one call at a time in a worker thread, then
        return. Every ``write`` call has returned before this returns or raises. If the peer
        stops early, what arrived is written before the error is raised (for a resume)."""
        chunked = self.chunked
        length = None if chunked else self.content_length
        await self._conn.pour(length, chunked, write, progress, chunk_size)

    async def read(self, limit: int) -> bytes:
        """At most ``limit`` bytes of the body (an error message), read on the loop."""
        got = bytearray()
        chunked = self.chunked
        length = None if chunked else self.content_length
        await self._conn.pour(length, chunked, got.extend, _ignore, 16 * 1024, True, limit)
        return bytes(got[:limit])

    def release(self) -> None:
        """Close the connection (one request per connection: nothing to return to a pool)."""
        self._conn.close()


def _ignore(_: int) -> None:
    pass


async def get(
    url: str,
    headers: dict[str, str],
    *,
    tls: ssl.SSLContext | None,
    timeout: float,
    max_redirects: int = MAX_REDIRECTS,
) -> Response:
    """GET ``url``, following redirects as aiohttp does (Authorization is dropped when the origin
    changes; Range is kept). The caller must ``release`` the response."""
    for _ in range(max_redirects + 1):
        resp = await _get_once(url, headers, tls, timeout)
        location = resp.headers.get("Location")
        if resp.status not in (301, 302, 303, 307, 308) or not location:
            return resp
        resp.release()
        target = urljoin(url, location.strip())
        if _origin(target) != _origin(url):
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        url = target
    raise TooManyRedirects(f"more than {max_redirects} redirects")


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        port = -1
    return parts.scheme, parts.hostname, port


_DEFAULT_PORTS = {"http": 80, "https": 443}
#: What may stay as it is in a request target; everything else (spaces, controls, non-ASCII
#: from a hostile Location) is percent-encoded, so no header can be smuggled into the request.
_TARGET_SAFE = "/?&=:@%+-._~!$'()*,;[]"


async def _get_once(
    url: str, headers: dict[str, str], tls: ssl.SSLContext | None, timeout: float
) -> Response:
    parts = urlsplit(url)
    try:
        given_port = parts.port
    except ValueError:
        raise BadURL(f"invalid URL {url}") from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise BadURL(f"invalid URL {url}")
    host = parts.hostname
    port = given_port or _DEFAULT_PORTS[parts.scheme]
    use_tls = parts.scheme == "https"
    authority = f"[{host}]" if ":" in host else host
    if given_port is not None and given_port != _DEFAULT_PORTS[parts.scheme]:
        authority += f":{given_port}"
    target = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_TARGET_SAFE)
    lines = [f"GET {target} HTTP/1.1", f"Host: {authority}", "Connection: close"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise WireError(f"invalid header {name}")
        lines.append(f"{name}: {value}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    loop = asyncio.get_running_loop()
    context = (tls or ssl.create_default_context()) if use_tls else None
    transport, conn = await asyncio.wait_for(
        loop.create_connection(
            lambda: _Connection(loop, timeout),
            host,
            port,
            ssl=context,
            server_hostname=host.rstrip(".") if context else None,
        ),
        timeout,
    )
    try:
        transport.write(request)
        status, response_headers = await conn.head()
    except BaseException:
        conn.close()
        raise
    return Response(conn, status, response_headers, url)


def _parse_head(head: bytes) -> tuple[int, Headers]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit() or len(code) != 3:
        raise WireError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers = Headers()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise WireError(f"malformed header line {line[:80]!r}")
        headers.add(name, value.strip())
    return int(code), headers


class _Connection(asyncio.BufferedProtocol):
    """One request's connection: reads the head into a small buffer, then the body into the
    buffers of ``pour``. Runs on the loop; only ``write`` calls go to worker threads."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._transport: asyncio.Transport | None = None
        self._head_buf = bytearray(4096)
        self._scratch = bytearray(4096)  # see get_buffer
        self._head_len = 0
        self._head: asyncio.Future[tuple[int, Headers]] = loop.create_future()
        self._leftover = b""  # body bytes that came with the head
        self._lost = False
        self._last_read = loop.time()
        self._watchdog: asyncio.TimerHandle | None = None
        self._reading_body = False
        # pour's state
        self._remaining: int | None = None  # bytes of the body still to come, if known
        self._until_eof = False  # no length, not chunked: the body ends with the connection
        self._dechunker: _Dechunker | None = None
        self._chunk_size = 0
        self._free: list[bytearray] = []
        self._allocated = 0
        self._buf: bytearray | None = None
        self._pos = 0
        self._queue: deque[Chunk] = deque()
        self._busy: asyncio.Future[None] | None = None
        self._write: Write = _discard
        self._progress: Callable[[int], None] = _ignore
        self._inline = False
        self._done: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None  # a write failed: stop, raise this
        self._peer_error: BaseException | None = None  # the peer failed: raise after the writes
        self._held = False  # reading paused because every buffer waits for the disk

    # -- asyncio protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._arm()

    def get_buffer(self, sizehint: int) -> memoryview:
        if not self._reading_body:
            if self._head_len == len(self._head_buf):
                self._head_buf.extend(bytes(len(self._head_buf)))
            return memoryview(self._head_buf)[self._head_len :]
        if self._dechunker is not None:
            return memoryview(self._dechunker.raw)
        if self._buf is None:
            # Reading is paused while no buffer is free and once the body is complete; bytes
            # the transport still hands over (past Content-Length) are thrown away.
            return memoryview(self._scratch)
        end = self._chunk_size
        if self._remaining is not None:
            end = min(end, self._pos + self._remaining)
        return memoryview(self._buf)[self._pos : end]

    def buffer_updated(self, nbytes: int) -> None:
        self._last_read = self._loop.time()
        if self._reading_body:
            if self._dechunker is not None:
                self._dechunked(self._dechunker.raw, nbytes)
                return
            if self._buf is None:
                return  # into the scratch buffer: see get_buffer
            self._pos += nbytes
            if self._remaining is not None:
                self._remaining -= nbytes
            if self._pos == self._chunk_size or self._remaining == 0:
                self._flush()
            return
        start = max(0, self._head_len - 3)
        self._head_len += nbytes
        end = self._head_buf.find(b"\r\n\r\n", start, self._head_len)
        if end < 0:
            if self._head_len > MAX_HEAD:
                self._fail_head(WireError(f"response head over {MAX_HEAD} bytes"))
            return
        assert self._transport is not None
        self._transport.pause_reading()  # until pour decides where the body goes
        self._leftover = bytes(self._head_buf[end + 4 : self._head_len])
        try:
            parsed = _parse_head(bytes(self._head_buf[:end]))
        except WireError as e:
            self._fail_head(e)
            return
        self._disarm()
        if not self._head.done():
            self._head.set_result(parsed)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._disarm()
        if not self._head.done():
            self._head.set_exception(
                exc or ConnectionResetError("the server closed the connection before answering")
            )
            self._head.exception()  # retrieved: a caller that gave up must not log it
        if self._reading_body:
            if self._until_eof and exc is None:
                self._remaining = 0  # a body delimited by the end of the connection
                self._flush()
                self._finish_if_drained()
            elif self._remaining != 0:
                self._peer_failed(exc or ConnectionResetError(self._short_body()))

    # -- API ---------------------------------------------------------------------------------

    async def head(self) -> tuple[int, Headers]:
        return await self._head

    async def pour(
        self,
        length: int | None,
        chunked: bool,
        write: Write,
        progress: Callable[[int], None],
        chunk_size: int,
        inline: bool = False,
        cap: int | None = None,
    ) -> None:
        """The body to ``write``; with ``cap``, stop after that many bytes."""
        if self._reading_body:
            raise RuntimeError("the body is being read already")
        self._reading_body = True
        self._until_eof = length is None and not chunked
        self._remaining = length if cap is None or length is None else min(length, cap)
        if self._remaining is None and not chunked:
            self._remaining = cap  # reached, or the connection ends first: both are the end
        self._chunk_size = max(1, chunk_size)
        self._write, self._progress, self._inline = write, progress, inline
        self._done = self._loop.create_future()
        leftover, self._leftover = self._leftover, b""
        if chunked:
            self._dechunker = _Dechunker(cap)
            self._dechunked(leftover, len(leftover))
        else:
            if self._remaining is not None:
                leftover = leftover[: self._remaining]
                self._remaining -= len(leftover)
            if leftover:
                self._queue.append(leftover)
            self._buf = self._take_buffer()
        if self._remaining == 0 or self._lost:
            if self._lost and self._remaining != 0 and not self._until_eof:
                self._peer_failed(ConnectionResetError(self._short_body()))
            else:
                self._remaining = 0
                self._flush()
                self._finish_if_drained()
        else:
            self._submit()
            self._arm()
            assert self._transport is not None
            if not self._held:
                self._transport.resume_reading()
        try:
            await self._done
        finally:
            # Cancelled, or failed: stop reading, and wait for the worker to let go of the file.
            self._queue.clear()
            self.close()
            while self._busy is not None and not self._busy.done():
                with suppress(BaseException):
                    await asyncio.shield(self._busy)

    def close(self) -> None:
        self._disarm()
        if self._transport is not None and not self._lost:
            self._transport.abort()  # unread body bytes: the connection cannot be reused

    # -- body machinery --------------------------------------------------------------------------

    def _take_buffer(self) -> bytearray | None:
        if self._free:
            return self._free.pop()
        if self._allocated < BUFFERS:
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
        if self._remaining == 0:
            if self._transport is not None and not self._lost:
                self._transport.pause_reading()  # the body is complete
        elif self._buf is None and not self._lost:
            self._buf = self._take_buffer()
            if self._buf is None and self._transport is not None:
                self._transport.pause_reading()  # every buffer waits for the disk
                self._held = True
        self._submit()

    def _submit(self) -> None:
        """Start the next write, unless one is running: writes happen one at a time, in order."""
        if self._busy is not None or not self._queue or self._failure is not None:
            return
        chunk = self._queue.popleft()
        view = chunk if isinstance(chunk, memoryview) else memoryview(chunk)
        if self._inline:
            busy: asyncio.Future[None] = self._loop.create_future()
            try:
                self._write(view)
                busy.set_result(None)
            except Exception as e:  # handed on like a worker thread's exception
                busy.set_exception(e)
        else:
            busy = self._loop.run_in_executor(None, self._write, view)
        self._busy = busy
        busy.add_done_callback(lambda f: self._written(f, chunk))

    def _written(self, future: asyncio.Future[None], chunk: Chunk) -> None:
        self._busy = None
        if future.cancelled():
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
            if ready and self._transport is not None and not self._lost:
                self._held = False
                self._transport.resume_reading()
        self._submit()
        self._finish_if_drained()

    def _dechunked(self, raw: Chunk, nbytes: int) -> None:
        """Received bytes of a chunked body: queue the data in them (copied: chunked blob bodies
        are rare, so this path is simple rather than fast)."""
        assert self._dechunker is not None
        try:
            pieces = self._dechunker.feed(raw, nbytes)
        except WireError as e:
            self._peer_failed(e)
            return
        self._queue.extend(pieces)
        if self._dechunker.done:
            self._remaining = 0
            if self._transport is not None and not self._lost:
                self._transport.pause_reading()
        elif len(self._queue) >= BUFFERS and self._transport is not None and not self._lost:
            self._transport.pause_reading()  # the disk is behind: let the queue drain
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
        elif self._remaining == 0 or (self._remaining is None and self._lost):
            self._disarm()
            self._done.set_result(None)

    def _short_body(self) -> str:
        return "the server closed the connection before the whole body arrived"

    def _fail_head(self, error: Exception) -> None:
        if not self._head.done():
            self._head.set_exception(error)
        self.close()

    # -- read timeout ----------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._timeout and self._watchdog is None:
            self._watchdog = self._loop.call_later(self._timeout, self._check)

    def _disarm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _check(self) -> None:
        """Rescheduled rather than reset on every read: one timer per timeout, not per recv."""
        self._watchdog = None
        now = self._loop.time()
        if self._held:
            self._last_read = now  # waiting for our disk, not for the peer
        idle = now - self._last_read
        if idle < self._timeout:
            self._watchdog = self._loop.call_later(self._timeout - idle, self._check)
            return
        error = BodyTimeout()
        if not self._head.done():
            self._head.set_exception(error)
            self.close()
        elif self._reading_body:
            self._peer_failed(error)


def _discard(_: memoryview) -> None:
    pass


_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")


class _Dechunker:
    """Decodes ``Transfer-Encoding: chunked`` (RFC 9112 section 7.1) from raw bytes as they
    come; ``done`` after the last chunk and the trailer (ignored), or after ``cap`` data bytes."""

    MAX_LINE = 4096

    def __init__(self, cap: int | None) -> None:
        self.raw = bytearray(64 * 1024)  # the transport reads into this
        self.done = False
        self._cap = cap
        self._given = 0
        self._line = bytearray()
        self._left = 0  # data bytes left in the current chunk
        self._state = "size"  # size, data, data-end, trailer

    def feed(self, raw: Chunk, n: int) -> list[bytes]:
        """The data in ``raw[:n]``."""
        data = memoryview(raw)
        pieces: list[bytes] = []
        i = 0
        while i < n and not self.done:
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
            end = raw.find(b"\n", i, n) if not isinstance(raw, memoryview) else -1
            if end < 0:
                self._line += data[i:n]
                i = n
            else:
                self._line += data[i:end]
                i = end + 1
                self._line_done(bytes(self._line).rstrip(b"\r"))
                self._line.clear()
            if len(self._line) > self.MAX_LINE:
                raise WireError("malformed chunked body: a line over 4096 bytes")
        return pieces

    def _line_done(self, line: bytes) -> None:
        if self._state == "size":
            size = line.split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size):
                raise WireError(f"malformed chunked body: chunk size {size[:20]!r}")
            self._left = int(size, 16)
            self._state = "data" if self._left else "trailer"
        elif self._state == "data-end":
            if line:
                raise WireError("malformed chunked body: no line end after a chunk")
            self._state = "size"
        elif not line:  # the empty line that ends the trailer
            self.done = True
