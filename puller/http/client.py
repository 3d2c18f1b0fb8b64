"""The one HTTP/1.1 client of the program: every request pypull makes (tokens, manifests, blobs,
HEADs, uploads) goes through ``Client.request``, so the rules live in one place: the connection
pool, proxies, TLS per origin, redirects, timeouts and limits.

The package's modules, from the bottom: ``errors`` (its exceptions), ``message`` (heads and
bodies as data), ``heads`` (a response head parsed, a request head encoded), ``pour`` (a body
read into reused buffers and poured to a writer, the read timeout), ``connection`` (the request
and head side of a connection, and ``Response``), ``dial`` (name resolution, Happy Eyeballs),
then this module; ``proxy`` and ``hosts`` hold the rules for proxies and addresses.

Only ``registry`` uses the client; it keeps auth, errors and retries in one place.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable, Mapping
from typing import NamedTuple, Protocol
from urllib.parse import quote, urljoin, urlsplit

from .connection import Connection, Copying, PoolKey, Response
from .dial import dial
from .errors import (
    BadRedirect,
    BadRequest,
    BadURL,
    BodyTimeout,
    CannotResolve,
    ProxyError,
    RedirectCertificateError,
    TooManyRedirects,
    WireError,
)
from .heads import encode_head, header_lines
from .message import RequestBody
from .pour import REQUEST_DEADLINE_FACTOR

MAX_REDIRECTS = 10
#: Idle keep-alive connections kept per origin, and for how long (servers close theirs after
#: 60 s or more: nginx 75, Go 90 or never, the distribution registry never).
MAX_IDLE_PER_ORIGIN = 8
IDLE_SECONDS = 30.0


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


#: Redirect statuses; 303 turns the request into a GET.
_REDIRECTS = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: What may stay as it is in a request target; everything else (spaces, controls, non-ASCII
#: from a hostile Location) is percent-encoded, so no header can be smuggled into the request.
_TARGET_SAFE = "/?&=:@%+-._~!$'()*,;[]"
#: A DNS name (IDNs come as punycode) or an IP literal (IPv6 without its brackets, maybe a zone).
_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+(%[A-Za-z0-9._-]+)?")


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
        self._idle: dict[PoolKey, list[Connection]] = {}

    async def close(self) -> None:
        for conns in list(self._idle.values()):
            for conn in list(conns):
                conn.close()
        self._idle.clear()

    # -- the pool ------------------------------------------------------------------------------

    def _checkout(self, key: PoolKey) -> Connection | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            conn.leave_pool()
            if conn.usable and conn.quiet():
                return conn
            conn.close()
        return None

    def _checkin(self, conn: Connection) -> None:
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

    def _forget(self, conn: Connection) -> None:
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
        lines += header_lines(headers)
        if isinstance(body, bytes):
            length = len(body)
        if body is not None:
            if length is None:
                raise BadRequest("a streamed request body needs its length")
            lines.append(f"Content-Length: {length}")
        elif method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: 0")
        request = encode_head(lines)
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
            return Response(conn, head, url, method, self._checkin if self._max_idle else None)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(
        self,
        target: _Target,
        proxy: ProxyLike | None,
        context: ssl.SSLContext | None,
        deadline: float | None,
    ) -> Connection:
        loop = asyncio.get_running_loop()
        host, port = (proxy.host, proxy.port) if proxy is not None else (target.host, target.port)

        def factory() -> Connection:
            return Connection(loop, self.timeout)

        try:
            conn = await asyncio.wait_for(dial(host, port, factory), self._left(deadline))
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
                conn.send(encode_head(lines))
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
                        Copying(conn),
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
