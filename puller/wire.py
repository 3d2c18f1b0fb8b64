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
from typing import cast
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


class BadRequest(WireError):
    """What we were to send cannot be sent (a header value with a line break, say); asking again
    would not help."""


class Unsupported(WireError):
    """An answer in a form this module does not read (a transfer coding other than chunked)."""


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
        """None for a chunked body: its Content-Length, if any, must be ignored (RFC 9112 6.3)."""
        value = self.headers.get("Content-Length")
        if value is None or self.chunked:
            return None
        if not (value.isascii() and value.isdigit()):
            raise WireError(f"invalid Content-Length {value!r}")
        return int(value)

    @property
    def chunked(self) -> bool:
        coding = self.headers.get("Transfer-Encoding")
        if coding is None or coding.strip().lower() == "identity":
            return False
        if coding.strip().lower() != "chunked":
            raise Unsupported(f"unsupported Transfer-Encoding {coding!r}")
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
        try:
            target = urljoin(url, location.strip())
        except ValueError:  # an unbalanced [ in an IPv6 host, say
            raise BadURL(f"invalid redirect to {location[:200]!r}") from None
        if _origin(target) != _origin(url):
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        url = target
    raise TooManyRedirects(f"more than {max_redirects} redirects")


def same_origin(a: str, b: str) -> bool:
    return _origin(a) == _origin(b)


def _origin(url: str) -> tuple[str, str | None, int | None]:
    try:
        parts = urlsplit(url)
        return parts.scheme, parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return "", url, -1  # unparseable: an origin of its own


_DEFAULT_PORTS = {"http": 80, "https": 443}
#: What may stay as it is in a request target; everything else (spaces, controls, non-ASCII
#: from a hostile Location) is percent-encoded, so no header can be smuggled into the request.
_TARGET_SAFE = "/?&=:@%+-._~!$'()*,;[]"


async def _get_once(
    url: str, headers: dict[str, str], tls: ssl.SSLContext | None, timeout: float
) -> Response:
    try:
        parts = urlsplit(url)
        given_port = parts.port
    except ValueError:
        raise BadURL(f"invalid URL {url[:200]!r}") from None
    host = parts.hostname or ""
    labels = host.rstrip(".").split(".") if ":" not in host else []
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not _HOST.fullmatch(host)
        or any(not 0 < len(label) <= 63 for label in labels)
    ):
        raise BadURL(f"invalid URL {url[:200]!r}")  # before any lookup of a hostile name
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
            raise BadRequest(f"invalid header {name}: a line break in it")
        lines.append(f"{name}: {value}")
    try:
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise BadRequest("invalid header: characters outside Latin-1") from None

    loop = asyncio.get_running_loop()
    try:
        transport, conn = await asyncio.wait_for(
            loop.create_connection(lambda: _Connection(loop, timeout), host, port), timeout
        )
    except UnicodeError:  # the name lookup's IDNA codec refuses it (an empty label, say)
        raise BadURL(f"invalid host name in {url[:200]!r}") from None
    channel: asyncio.BaseTransport = transport
    try:
        if use_tls:
            secured = await asyncio.wait_for(
                loop.start_tls(
                    transport,
                    _Copying(conn),
                    tls or default_tls(),
                    server_hostname=host.rstrip("."),
                ),
                timeout,
            )
            if secured is None:  # pragma: no cover - only when the loop is closing
                raise ConnectionResetError("the connection closed during the TLS handshake")
            conn.secured(secured)
            channel = secured
        cast(asyncio.WriteTransport, channel).write(request)
        status, response_headers = await conn.head()
    except BaseException:
        conn.close()
        raise
    return Response(conn, status, response_headers, url)


_tls_default: ssl.SSLContext | None = None


def default_tls() -> ssl.SSLContext:
    """The system's CAs, loaded once (20 ms) and only when a URL is https."""
    global _tls_default
    if _tls_default is None:
        _tls_default = ssl.create_default_context()
    return _tls_default


def _parse_head(head: bytes) -> tuple[int, Headers]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, _ = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not _STATUS.fullmatch(code):
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
    buffers of ``pour``. Runs on the loop; only ``write`` calls go to worker threads.

    Over TLS, asyncio's TLS layer feeds a ``BufferedProtocol`` only one buffer when the server
    closes while our reading is paused, and drops the rest (CPython 3.11 sslproto); its copying
    path hands over everything. So TLS goes through ``_Copying`` and ``data_received``, which
    copies into the same buffers (TLS has copied the bytes once already), and flow control
    pauses the TCP transport underneath, which the TLS layer never reads past.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._transport: asyncio.Transport | None = None  # writes and closes: TLS or TCP
        self._tcp: asyncio.Transport | None = None  # paused and resumed for flow control
        self._head_buf = bytearray(4096)
        self._scratch = bytearray(4096)  # see get_buffer
        self._head_len = 0
        self._interim = 0  # bytes of 1xx answers skipped so far
        self._head: asyncio.Future[tuple[int, Headers]] = loop.create_future()
        self._leftover = b""  # body bytes that came with the head
        self._backlog: deque[bytes] = deque()  # TLS: bytes that came while there was no room
        self._deferred_loss: tuple[Exception | None] | None = None  # lost behind the backlog
        self._lost = False
        self._lost_exc: Exception | None = None
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
        self._stopped = False  # pour has returned or is returning: no more writes may start

    # -- asyncio protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports do not derive from asyncio's classes
        self._transport = self._tcp = cast(asyncio.Transport, transport)
        self._arm()

    def secured(self, transport: asyncio.Transport) -> None:
        """TLS is set up on the connection: write and close through ``transport`` from now."""
        self._transport = transport

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
        if self._head.done():
            return  # a failed head: the connection is closing
        self._head_len += nbytes
        start = 0
        while True:
            end = self._head_buf.find(b"\r\n\r\n", start, self._head_len)
            if (end < 0 and self._head_len - start > MAX_HEAD) or end + 4 - start > MAX_HEAD:
                self._fail_head(WireError(f"response head over {MAX_HEAD} bytes"))
                return
            if end < 0:
                if start:  # drop the interim heads already read
                    self._interim += start
                    if self._interim > MAX_HEAD:
                        self._fail_head(WireError(f"interim answers over {MAX_HEAD} bytes"))
                        return
                    # A new buffer: the transport may still hold a view of this one.
                    rest = self._head_buf[start : self._head_len]
                    self._head_buf = bytearray(max(4096, 2 * len(rest)))
                    self._head_buf[: len(rest)] = rest
                    self._head_len = len(rest)
                return
            try:
                parsed = _parse_head(bytes(self._head_buf[start:end]))
            except WireError as e:
                self._fail_head(e)
                return
            start = end + 4
            if not 100 <= parsed[0] < 200:
                break
            if self._interim + start > MAX_HEAD:
                self._fail_head(WireError(f"interim answers over {MAX_HEAD} bytes"))
                return
            # An interim answer (103 Early Hints from a CDN): the real one follows.
        self._pause()  # until pour decides where the body goes
        self._leftover = bytes(self._head_buf[start : self._head_len])
        self._disarm()
        self._head.set_result(parsed)

    def data_received(self, data: bytes) -> None:
        """The copying path (TLS): into the same buffers as ``recv_into`` would."""
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
        if not self._head.done():
            self._head.set_exception(
                exc or ConnectionResetError("the server closed the connection before answering")
            )
            self._head.exception()  # retrieved: a caller that gave up must not log it
        if self._reading_body and not self._stopped:
            self._body_lost()

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
        finally:
            # Cancelled, or failed: stop reading, and wait for the worker to let go of the file.
            self._stopped = True
            self._queue.clear()
            self._backlog.clear()
            self.close()
            while self._busy is not None and not self._busy.done():
                with suppress(BaseException):
                    await asyncio.shield(self._busy)

    def close(self) -> None:
        self._disarm()
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
            self._remaining = 0
            self._disarm()
            self._pause()
        elif len(self._queue) >= BUFFERS:
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
        if self._held or self._backlog:
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


class _Copying(asyncio.Protocol):
    """Hands a TLS connection's bytes to ``_Connection.data_received`` (see its docstring)."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn

    def data_received(self, data: bytes) -> None:
        self._conn.data_received(data)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._conn.connection_lost(exc)


def _discard(_: memoryview) -> None:
    pass


_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_STATUS = re.compile(r"[1-9][0-9][0-9]")
#: A DNS name (IDNs come as punycode) or an IP literal (IPv6 without its brackets, maybe a zone).
_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+(%[A-Za-z0-9._-]+)?")


class _Dechunker:
    """Decodes ``Transfer-Encoding: chunked`` (RFC 9112 section 7.1) from raw bytes as they
    come; ``done`` after the last chunk and the trailer (ignored), or after ``cap`` data bytes."""

    MAX_LINE = 4096

    def __init__(self, cap: int | None) -> None:
        self.raw = bytearray(64 * 1024)  # the transport reads into this
        self.done = False
        self.error: WireError | None = None  # malformed: what came before it is still returned
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
                raise WireError("malformed chunked body: a line over 4096 bytes")

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
        else:
            self._trailer += len(line) + 2
            if self._trailer > MAX_HEAD:
                raise WireError(f"malformed chunked body: a trailer over {MAX_HEAD} bytes")
