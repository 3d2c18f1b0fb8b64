"""The one HTTP/1.1 client of the program: every request pypull makes (tokens, manifests, blobs,
HEADs, uploads) goes through ``Client.request``, so the rules live in one place: the connection
pool, proxies, TLS per origin, redirects, timeouts and limits.

Bodies go from the socket straight into a few reusable buffers (``asyncio.BufferedProtocol``:
one ``recv_into`` per read, no copies in Python), and a worker thread hashes and writes each full
buffer while the loop fills the next. aiohttp read into fresh ``bytes`` of at most 256 KiB and
joined them again, with a timer reschedule per read: on a 1 GB pull that cost as much CPU as
hashing every byte, and importing it was a third of pypull's start-up.

Heads are parsed by h11 (a maintained, strict RFC 9112 parser), plus the refusals h11 does not
make itself (see ``parse_head``); bodies with a length keep the fast path above.

Only ``registry`` uses this module; it keeps auth, errors and retries in one place.
"""

from __future__ import annotations

import asyncio
import fcntl
import re
import select
import socket
import ssl
import sys
import termios
from collections import deque
from collections.abc import AsyncIterable, Callable, Mapping
from contextlib import suppress
from typing import NamedTuple, Protocol, cast
from urllib.parse import quote, urljoin, urlsplit

#: Longest status line plus headers we accept; a registry's are well under 2 KiB.
MAX_HEAD = 64 * 1024
#: RFC 9112 leaves these to the client; servers (nginx, Go) use similar ones.
MAX_HEADER_LINES = 100
MAX_HEADER_LINE = 8 * 1024
#: A Content-Length of more digits is no size a registry serves (2**64 has 20).
MAX_LENGTH_DIGITS = 20
MAX_REDIRECTS = 10
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
#: Idle keep-alive connections kept per origin, and for how long (servers close theirs after
#: 60 s or more: nginx 75, Go 90 or never, the distribution registry never).
MAX_IDLE_PER_ORIGIN = 8
IDLE_SECONDS = 30.0
#: RFC 8305's "Connection Attempt Delay": the next address is tried if the last has not
#: connected by then.
HAPPY_EYEBALLS_DELAY = 0.25

Chunk = bytes | bytearray | memoryview
Write = Callable[[memoryview], None]
#: A writer on the event loop: it may keep the view until the future it returns is done (the
#: piece is then passed on without a copy); None: done with it already.
LoopWrite = Callable[[memoryview], "asyncio.Future[None] | None"]
RequestBody = bytes | AsyncIterable[Chunk]


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


class BadRedirect(WireError):
    """A redirect we refuse to follow (from https to plain http, for content not checked by
    digest)."""


class CannotResolve(WireError):
    """A host name with no address: asking again will not help (a temporary resolver failure
    has been retried once already)."""

    def __init__(self, host: str, detail: str = "") -> None:
        self.host = host
        super().__init__(f"cannot resolve {host}" + (f": {detail}" if detail else ""))


class ProxyError(WireError):
    """The proxy refused to carry the request (``status``: its answer, 0 if it gave none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        self.status = status
        super().__init__(message)

    @property
    def permanent(self) -> bool:
        return self.status in (401, 403, 405, 407)


class RedirectCertificateError(WireError):
    """A redirect's target (another host) failed certificate verification."""

    def __init__(self, host: str, url: str, reason: str) -> None:
        self.host = host
        self.url = url
        super().__init__(f"the TLS certificate of {host} (a redirect from {url}) {reason}")


class BodyTimeout(asyncio.TimeoutError):
    """No byte arrived for the read timeout (time spent waiting on our own disk not counted),
    the body came slower than ``MIN_RATE``, or a head or small body missed its deadline."""

    def __init__(self, reason: str = "timed out") -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class Headers:
    """Response headers, looked up case-insensitively; the first of repeated ones wins."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        self._items.setdefault(name.lower(), value)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._items.get(name.lower(), default)


class Head(NamedTuple):
    """A response's status line and headers, and how its body is delimited."""

    status: int
    headers: Headers
    #: "none", "length", "chunked" or "eof" (the body ends when the connection does)
    framing: str
    length: int | None
    keep_alive: bool


def parse_head(block: bytes, method: str = "GET") -> Head:
    """One response head (status line and header lines, without the blank line that ends it),
    parsed by h11, plus the refusals h11 does not make: it lets ``Transfer-Encoding`` override a
    ``Content-Length``, accepts control bytes other than NUL in values, and limits only the
    whole head. Raises ``WireError``."""
    import h11  # 7 ms of import, paid by the first request

    lines = block.split(b"\r\n")
    if len(lines) - 1 > MAX_HEADER_LINES:
        raise WireError(f"malformed response: more than {MAX_HEADER_LINES} header lines")
    for line in lines:
        if len(line) > MAX_HEADER_LINE:
            raise WireError(f"malformed response: a header line over {MAX_HEADER_LINE} bytes")
        if _CONTROL.search(line):
            raise WireError(f"malformed response: a control byte in {_shown(line)}")
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD + 4)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "h")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(block + b"\r\n\r\n")
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as e:
        if _unsupported_coding(lines):
            raise Unsupported(f"unsupported Transfer-Encoding: {e}") from None
        raise WireError(f"malformed response: {e}") from None
    if not isinstance(event, (h11.Response, h11.InformationalResponse)):  # pragma: no cover
        raise WireError("malformed response: no complete head")
    headers = Headers()
    coding = None
    tokens: set[bytes] = set()
    lengths: list[bytes] = []
    for name, value in event.headers:
        headers.add(name.decode("latin-1"), value.decode("latin-1"))
        if name == b"transfer-encoding":
            coding = value.lower()
        elif name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
        if name == b"content-length":  # h11 has unfolded, merged and matched them
            if len(value) > MAX_LENGTH_DIGITS:  # (h11 0.16 checks this too; older ones did not)
                raise WireError(f"malformed response: invalid Content-Length {_shown(value)}")
            lengths.append(value)
    status = event.status_code
    length = int(lengths[0]) if lengths else None
    if coding is not None and length is not None:
        raise WireError("malformed response: both Content-Length and Transfer-Encoding")
    method = method.upper()
    no_body = status < 200 or status in (204, 304) or method == "HEAD"
    if no_body or (method == "CONNECT" and status < 300):  # a tunnel, not a body
        framing, length = "none", None
    elif coding is not None:
        framing = "chunked"
    elif length is not None:
        framing = "length"
    else:
        framing = "eof"
    keep_alive = event.http_version == b"1.1" and b"close" not in tokens and framing != "eof"
    return Head(status, headers, framing, length, keep_alive)


def _unsupported_coding(lines: list[bytes]) -> bool:
    """Whether well-formed Transfer-Encoding fields name a coding other than one chunked (h11
    refuses it with the rest: this tells the two apart without reading h11's message)."""
    codings = [
        value.strip().lower()
        for name, colon, value in (line.partition(b":") for line in lines[1:])
        if colon and name.lower() == b"transfer-encoding"
    ]
    return len(codings) > 1 or any(coding != b"chunked" for coding in codings)


#: Bytes no head may carry: C0 controls but HTAB, and DEL.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _shown(data: bytes) -> str:
    return repr(data[:60])[1:]


class ProxyLike(Protocol):
    """What ``proxy.Proxy`` gives the client: where to connect, and what to tell it."""

    @property
    def url(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    def authorization(self) -> str | None: ...


ProxyFor = Callable[[str], ProxyLike | None]


class Response:
    """A response whose head has been read; the body is read by ``pour`` or ``read``, and
    ``release`` hands the connection back (to the pool if the body was read to its end)."""

    def __init__(
        self, conn: _Connection, head: Head, url: str, method: str, client: Client | None
    ) -> None:
        self._conn = conn
        self._head = head
        self._client = client
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
        if self._client is not None and conn.reusable(self._head):
            self._client._checkin(conn)
        else:
            conn.close()


def _ignore(_: int) -> None:
    pass


#: Redirect statuses; 303 turns the request into a GET.
_REDIRECTS = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: What may stay as it is in a request target; everything else (spaces, controls, non-ASCII
#: from a hostile Location) is percent-encoded, so no header can be smuggled into the request.
_TARGET_SAFE = "/?&=:@%+-._~!$'()*,;[]"
#: A DNS name (IDNs come as punycode) or an IP literal (IPv6 without its brackets, maybe a zone).
_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+(%[A-Za-z0-9._-]+)?")

PoolKey = tuple[str, str, int, str | None, int]


class _Target(NamedTuple):
    scheme: str
    host: str  # without brackets
    port: int
    authority: str  # for Host: and CONNECT
    target: str  # path and query, percent-encoded


def _split(url: str) -> _Target:
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
    authority = f"[{host}]" if ":" in host else host
    if given_port is not None and given_port != _DEFAULT_PORTS[parts.scheme]:
        authority += f":{given_port}"
    target = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_TARGET_SAFE)
    return _Target(parts.scheme, host, port, authority, target)


def same_origin(a: str, b: str) -> bool:
    return _origin(a) == _origin(b)


def _origin(url: str) -> tuple[str, str | None, int | None]:
    try:
        parts = urlsplit(url)
        return parts.scheme, parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return "", url, -1  # unparseable: an origin of its own


def _encode_head(lines: list[str]) -> bytes:
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise BadRequest("invalid header: characters outside Latin-1") from None


def _header_lines(headers: Mapping[str, str]) -> list[str]:
    lines = []
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise BadRequest(f"invalid header {name}: a line break in it")
        lines.append(f"{name}: {value}")
    return lines


class Client:
    """Keeps connections alive per origin (scheme, host, port, proxy, TLS settings) and makes
    every request of the program. ``timeout`` is the read timeout; heads and small bodies get
    ``DEADLINE_FACTOR`` times it in all, blob bodies must keep above ``MIN_RATE``.

    ``proxy_for(url)`` names the proxy for a URL (None: direct); each request may give its own.
    """

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        proxy_for: ProxyFor | None = None,
        pool: bool = True,
        max_idle_per_origin: int = MAX_IDLE_PER_ORIGIN,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.timeout = timeout
        self._proxy_for = proxy_for
        self._max_idle = max_idle_per_origin if pool else 0
        self._idle_seconds = idle_seconds
        self._idle: dict[PoolKey, list[_Connection]] = {}

    async def close(self) -> None:
        for conns in list(self._idle.values()):
            for conn in list(conns):
                conn.close()
        self._idle.clear()

    # -- the pool ------------------------------------------------------------------------------

    def _checkout(self, key: PoolKey) -> _Connection | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            conn.leave_pool()
            if conn.usable and conn.quiet():
                return conn
            conn.close()
        return None

    def _checkin(self, conn: _Connection) -> None:
        key = conn.key
        if key is None or self._max_idle == 0:
            conn.close()
            return
        conns = self._idle.setdefault(key, [])
        if len(conns) >= self._max_idle:
            conn.close()
            return
        conns.append(conn)
        conn.enter_pool(self._idle_seconds, lambda: self._forget(conn))

    def _forget(self, conn: _Connection) -> None:
        conns = self._idle.get(conn.key) if conn.key is not None else None
        if conns is not None and conn in conns:
            conns.remove(conn)
        conn.close()

    # -- requests ------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        body: RequestBody | None = None,
        length: int | None = None,
        tls: ssl.SSLContext | None = None,
        tls_origin: str | None = None,
        max_redirects: int = MAX_REDIRECTS,
        downgrade: bool = False,
        proxy_for: ProxyFor | None = None,
    ) -> Response:
        """Send a request and read the answer's head; the caller must ``release`` the response.

        Redirects are followed (``max_redirects=0``: not): Authorization is dropped when the
        origin changes, Range is kept; 303 turns the request into a GET. A request with a
        streamed body is never sent twice, so its redirects are returned, not followed.
        From https, a redirect to plain http is refused unless ``downgrade`` (content that is
        verified by digest anyway).

        ``tls`` is for ``tls_origin`` (default: the first URL's origin). On other origins (where
        a redirect or an upload Location leads), a context that verifies (a private CA: a
        registry's storage is often signed by the same one) is used as it is, and one that does
        not verify is not: a registry's ``skip_verify`` does not cover the hosts it sends us to.

        A streamed ``body`` needs ``length`` (sent as Content-Length); ``bytes`` carry theirs.
        """
        method = method.upper()
        trusted = tls_origin or url
        proxy_for = proxy_for or self._proxy_for
        deadline = None
        if self.timeout and (body is None or isinstance(body, bytes)):
            # (a streamed body may take as long as it takes: its head has its own deadline)
            deadline = asyncio.get_running_loop().time() + REQUEST_DEADLINE_FACTOR * self.timeout
        for _ in range(max_redirects + 1):
            hop_tls = tls
            if not same_origin(url, trusted) and tls is not None and not _verifies(tls):
                hop_tls = None
            try:
                resp = await self._exchange(
                    method, url, headers, body, length, hop_tls, proxy_for, deadline
                )
            except ssl.SSLCertVerificationError as e:
                if same_origin(url, trusted):
                    raise
                target = _split(url)
                reason = e.verify_message or str(e)
                raise RedirectCertificateError(target.authority, trusted, f"fails: {reason}") from e
            location = resp.headers.get("Location")
            if (
                resp.status not in _REDIRECTS
                or not location
                or max_redirects == 0
                or (body is not None and not isinstance(body, bytes))
            ):
                return resp
            resp.release()
            try:
                target_url = urljoin(url, location.strip())
            except ValueError:  # an unbalanced [ in an IPv6 host, say
                raise BadURL(f"invalid redirect to {location[:200]!r}") from None
            if url.startswith("https:") and target_url.startswith("http:") and not downgrade:
                raise BadRedirect(
                    f"refusing a redirect from https to plain http ({target_url[:200]})"
                )
            if _origin(target_url) != _origin(url):
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if resp.status == 303 and method != "HEAD":
                method, body, length = "GET", None, None
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            url = target_url
        raise TooManyRedirects(f"more than {max_redirects} redirects")

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: RequestBody | None,
        length: int | None,
        tls: ssl.SSLContext | None,
        proxy_for: ProxyFor | None,
        deadline: float | None,
    ) -> Response:
        target = _split(url)
        proxy = proxy_for(url) if proxy_for is not None else None
        https = target.scheme == "https"
        context = (tls or default_tls()) if https else None
        key: PoolKey = (
            target.scheme,
            target.host.lower(),
            target.port,
            # the proxy and whose credentials opened the tunnel
            f"{proxy.url} {proxy.authorization() or ''}" if proxy is not None else None,
            id(context) if context is not None else 0,
        )
        lines = [f"{method} {target.target} HTTP/1.1", f"Host: {target.authority}"]
        if not self._max_idle:
            lines.append("Connection: close")  # nothing to keep it for
        if proxy is not None and not https:
            # absolute-form to a forwarding proxy; its credentials go to it alone
            lines[0] = f"{method} http://{target.authority}{target.target} HTTP/1.1"
            auth = proxy.authorization()
            if auth:
                lines.append(f"Proxy-Authorization: {auth}")
        lines += _header_lines(headers)
        if isinstance(body, bytes):
            length = len(body)
        if body is not None:
            if length is None:
                raise BadRequest("a streamed request body needs its length")
            lines.append(f"Content-Length: {length}")
        elif method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: 0")
        request = _encode_head(lines)
        replayable = body is None and method in ("GET", "HEAD")
        for attempt in range(2):
            conn = self._checkout(key) if attempt == 0 else None
            reused = conn is not None
            if conn is None:
                conn = await self._connect(target, proxy, context, deadline)
                conn.key = key
            try:
                conn.begin(method)
                conn.send(request)
                if body is not None:
                    await conn.send_body(body, length or 0)
                head = await conn.head(deadline)
            except (ConnectionError, asyncio.IncompleteReadError) as e:
                conn.close()
                if reused and replayable and not conn.answered:
                    continue  # the server closed the idle connection as we sent: once more
                raise e
            except BaseException:
                conn.close()
                raise
            if proxy is not None and not https and head.status == 407:
                conn.close()
                raise ProxyError(
                    f"proxy {proxy.url} refused the request: HTTP 407 Proxy Authentication "
                    "Required",
                    407,
                )
            return Response(conn, head, url, method, self if self._max_idle else None)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(
        self,
        target: _Target,
        proxy: ProxyLike | None,
        context: ssl.SSLContext | None,
        deadline: float | None,
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        host, port = (proxy.host, proxy.port) if proxy is not None else (target.host, target.port)
        try:
            conn = await asyncio.wait_for(self._dial(host, port), self._left(deadline))
        except (OSError, asyncio.TimeoutError, CannotResolve) as e:
            if proxy is None:
                raise
            reason = "timed out" if isinstance(e, asyncio.TimeoutError) else str(e)
            raise ProxyError(f"cannot reach proxy {proxy.url}: {reason}") from e
        try:
            if proxy is not None and context is not None:
                lines = [
                    f"CONNECT {target.authority}:{target.port} HTTP/1.1"
                    if ":" not in target.authority.rpartition("]")[2]
                    else f"CONNECT {target.authority} HTTP/1.1",
                    f"Host: {target.authority}",
                ]
                auth = proxy.authorization()
                if auth:
                    lines.append(f"Proxy-Authorization: {auth}")
                conn.begin("CONNECT")
                conn.send(_encode_head(lines))
                try:
                    head = await conn.head(deadline)
                except (OSError, asyncio.TimeoutError, WireError) as e:
                    raise ProxyError(f"proxy {proxy.url} did not open a tunnel: {e}") from e
                if not 200 <= head.status < 300:
                    reason = " Proxy Authentication Required" if head.status == 407 else ""
                    raise ProxyError(
                        f"proxy {proxy.url} refused to connect to {target.authority}: "
                        f"HTTP {head.status}{reason}",
                        head.status,
                    )
                conn.tunnel_open()
            if context is not None:
                secured = await asyncio.wait_for(
                    loop.start_tls(
                        conn.transport,
                        _Copying(conn),
                        context,
                        server_hostname=target.host.rstrip("."),
                    ),
                    self._left(deadline),
                )
                if secured is None:  # pragma: no cover - only when the loop is closing
                    raise ConnectionResetError("the connection closed during the TLS handshake")
                conn.secured(secured)
        except BaseException:
            conn.close()
            raise
        return conn

    def _left(self, deadline: float | None) -> float | None:
        """The read timeout, or less if the request's deadline comes first."""
        timeout = self.timeout or None
        if deadline is None:
            return timeout
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise BodyTimeout(
                f"no complete answer within {REQUEST_DEADLINE_FACTOR * self.timeout:g} s"
            )
        return left if timeout is None else min(timeout, left)

    async def _dial(self, host: str, port: int) -> _Connection:
        """A TCP connection to ``host``, Happy Eyeballs style (RFC 8305: addresses of both
        families interleaved, the next tried after ``HAPPY_EYEBALLS_DELAY`` or as soon as the
        last failed), on any event loop (uvloop has no ``happy_eyeballs_delay``)."""
        loop = asyncio.get_running_loop()
        addresses = await _resolve(host, port)

        def factory() -> _Connection:
            return _Connection(loop, self.timeout)

        if len(addresses) == 1:
            _, conn = await loop.create_connection(factory, addresses[0], port)
            return conn
        errors: list[BaseException] = []
        winner: _Connection | None = None
        pending: set[asyncio.Task[tuple[asyncio.Transport, _Connection]]] = set()
        try:
            for address in addresses:
                task = asyncio.ensure_future(loop.create_connection(factory, address, port))
                pending.add(task)
                done, _ = await asyncio.wait(
                    pending, timeout=HAPPY_EYEBALLS_DELAY, return_when=asyncio.FIRST_COMPLETED
                )
                winner = _first_success(done, pending, errors)
                if winner is not None:
                    return winner
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                winner = _first_success(done, pending, errors)
                if winner is not None:
                    return winner
        finally:
            for task in pending:
                task.cancel()
            for task in pending:
                with suppress(BaseException):
                    _, late = await task
                    late.close()
        raise errors[0] if errors else ConnectionError(f"cannot connect to {host}")


def _first_success(
    done: set[asyncio.Task[tuple[asyncio.Transport, _Connection]]],
    pending: set[asyncio.Task[tuple[asyncio.Transport, _Connection]]],
    errors: list[BaseException],
) -> _Connection | None:
    winner = None
    for task in done:
        pending.discard(task)
        error = task.exception()
        if error is not None:
            errors.append(error)
        elif winner is None:
            winner = task.result()[1]
        else:
            task.result()[1].close()
    return winner


async def _resolve(host: str, port: int) -> list[str]:
    """The host's addresses, families interleaved (RFC 8305 section 4). A name that does not
    exist fails at once; a temporary resolver failure (also what a machine without a reachable
    resolver says for every name) is asked once more, not by the whole retry policy."""
    if _IP_LITERAL.fullmatch(host):
        return [host]  # nothing to look up (and no resolver thread to start for it)
    loop = asyncio.get_running_loop()
    for attempt in range(2):
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            break
        except socket.gaierror as e:
            if e.errno == socket.EAI_AGAIN and attempt == 0:
                await asyncio.sleep(0.5)
                continue
            detail = "temporary failure in name resolution" if e.errno == socket.EAI_AGAIN else ""
            raise CannotResolve(host, detail) from e
        except UnicodeError:  # the IDNA codec refuses it (an empty label, say)
            raise BadURL(f"invalid host name {host[:200]!r}") from None
    by_family: dict[int, list[str]] = {}
    for family, _, _, _, sockaddr in infos:
        address = str(sockaddr[0])
        if family == socket.AF_INET6 and len(sockaddr) >= 4 and sockaddr[3]:
            address = f"{address.partition('%')[0]}%{sockaddr[3]}"
        found = by_family.setdefault(family, [])
        if address not in found:
            found.append(address)
    if not by_family:
        raise CannotResolve(host)
    ordered: list[str] = []
    lists = list(by_family.values())
    for i in range(max(len(x) for x in lists)):
        ordered.extend(x[i] for x in lists if i < len(x))
    return ordered


#: Dotted-quad IPv4 and IPv6 (``_split`` has vetted the characters): no lookup needed.
_IP_LITERAL = re.compile(r"(\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(%[\w.-]+)?")


def _verifies(context: ssl.SSLContext) -> bool:
    return context.verify_mode != ssl.CERT_NONE and context.check_hostname


async def get(
    url: str,
    headers: dict[str, str],
    *,
    tls: ssl.SSLContext | None,
    timeout: float,
    max_redirects: int = MAX_REDIRECTS,
) -> Response:
    """One GET on a connection of its own, closed on ``release`` (no pool)."""
    client = Client(timeout=timeout, pool=False)
    return await client.request("GET", url, headers, tls=tls, max_redirects=max_redirects)


_tls_default: ssl.SSLContext | None = None


def default_tls() -> ssl.SSLContext:
    """The system's CAs, loaded once (20 ms) and only when a URL is https."""
    global _tls_default
    if _tls_default is None:
        _tls_default = ssl.create_default_context()
    return _tls_default


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
        self._lost = False
        self._lost_exc: Exception | None = None
        self._broken = False  # closed by us, or bytes came that belong to no answer
        self._idle = False  # in the pool
        self._idle_timer: asyncio.TimerHandle | None = None
        self._on_idle_end: Callable[[], None] | None = None
        self._write_ready: asyncio.Future[None] | None = None  # set while writing is paused
        self.key: PoolKey | None = None
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
        self._dechunker: _Dechunker | None = None
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
                parsed = parse_head(bytes(self._head_buf[start:end]), self._method)
            except WireError as e:
                self._fail_head(e)
                return
            start = end + 4
            if not 100 <= parsed.status < 200:
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
    def transport(self) -> asyncio.Transport:
        assert self._transport is not None
        return self._transport

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
            self._dechunker = _Dechunker(cap)
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

    def pause_writing(self) -> None:
        self._conn.pause_writing()

    def resume_writing(self) -> None:
        self._conn.resume_writing()


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
                raise WireError("malformed chunked body: a line over 4096 bytes")
        if self.done and self._cap is None:
            self.extra += n - i

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
