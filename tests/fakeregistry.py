"""A fault-injecting fake registry: the read side of the OCI distribution API, in-process.

The real ``docker-registry`` (``fixtures.registry``) is the reference for what a registry says; this
fake is for what a real registry will not do on demand: ask for Basic or Bearer auth, revoke tokens
mid-pull, fail a path N times, serve wrong bytes, drop the connection. It runs on a free loopback
port inside the test's own event loop::

    async with start_fake([redis()], auth="bearer") as fake:
        fake.inject(f"/blobs/{digest}$", Status(503, times=2))
        run = await run_pypull(fake.ref(redis()), store=tmp_path / "store")  # 127.0.0.1:PORT/...
        refused = fake.log.blob_gets(status=503)

Because the server shares the test's loop, the CLI must not be run with a blocking
``subprocess.run`` (that would freeze the server): :func:`run_pypull` runs it with
``asyncio.create_subprocess_exec``.

Request pipeline, outermost first::

    log  ->  auth (401 + challenge)  ->  faults matching the path  ->  route
    (and send streamed bodies)                                    (/v2/, manifests, blobs, /token)

Every request is logged, including those answered 401 and those whose connection a fault drops.
Faults run after the auth check, so a fault's budget is spent only on requests that carry valid auth
(the ``/token`` endpoint is never behind auth, so faults on it apply to every token request).

Blob answers honour ``Range`` (206 + ``Content-Range``; 416 when unsatisfiable) and are
:class:`StreamedBody` objects: not yet sent when a fault sees them, so a fault can change the body
or cut it short (:class:`ResetMidBody`, :class:`StallMidBody`, :class:`Truncate`); the log
middleware streams them once every fault has had its say, and records how many body bytes went out
(:attr:`LoggedRequest.sent`). The same faults turn a manifest or error answer into a streamed one.
:func:`start_origin` runs a second, auth-free server holding only blobs, for :class:`RedirectTo`.

:class:`Trickle` sends a body a few bytes at a time, slowly but never silent for long. With
``tls`` (an ``ssl.SSLContext``) the fake serves HTTPS, and :attr:`FakeRegistry.url` and the
default token realm say ``https://``.

The server cancels a handler when its client disconnects (aiohttp's ``handler_cancellation``), so a
stalled or gated answer ends as soon as the client gives up, and never delays anything after it.

A fault is any ``async (request, handler) -> response`` callable, where ``handler`` produces the
normal answer; it may answer instead (an error status), alter the normal answer (wrong bytes),
act around it (revoke tokens once a manifest is served), or never answer (drop the connection).
:class:`CountedFault` is a base for faults that fire ``times`` times and then let requests through;
subclass it and implement :meth:`CountedFault.inject` to add a new kind of fault.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
import socket
import ssl
import struct
import sys
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias, TypeVar

from aiohttp import web
from multidict import CIMultiDict, MultiDict

from fixtures.images import Image

__all__ = [
    "After",
    "AuthMode",
    "CompletedRun",
    "Corrupt",
    "CountedFault",
    "DropConnection",
    "FakeRegistry",
    "Fault",
    "Handler",
    "IgnoreRange",
    "LoggedRequest",
    "Oversize",
    "RedirectTo",
    "Replace",
    "RequestLog",
    "ResetMidBody",
    "RetryAfter",
    "StallMidBody",
    "Status",
    "StreamedBody",
    "Trickle",
    "Truncate",
    "error_body",
    "run_pypull",
    "start_fake",
    "start_origin",
]

AuthMode: TypeAlias = Literal["basic", "bearer"] | None
Handler: TypeAlias = Callable[[web.Request], Awaitable[web.StreamResponse]]

_MANIFEST_PATH = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$")
_BLOB_PATH = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)$")
_RANGE = re.compile(r"^bytes=(?P<start>\d*)-(?P<end>\d*)$")
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
#: set while the server shuts down, so stalled answers end instead of holding the shutdown up
_CLOSING = web.AppKey("closing", asyncio.Event)


def error_body(code: str, message: str, status: int, **headers: str) -> web.Response:
    """A registry-style JSON error: ``{"errors":[{"code":..., "message":...}]}``."""
    doc = {"errors": [{"code": code, "message": message, "detail": None}]}
    return web.json_response(doc, status=status, headers=headers or None)


# -- streamed answers ------------------------------------------------------------------------------


class Content(Protocol):
    """A body: ``bytes``, or anything with a length that slices to bytes (generated on demand)."""

    def __len__(self) -> int: ...

    def __getitem__(self, key: slice, /) -> bytes: ...


Ending: TypeAlias = Literal["close", "reset", "stall"]


class StreamedBody(web.StreamResponse):
    """An answer whose body the fake writes itself, ``chunk_size`` bytes at a time, once every
    fault has had its say. Until then a fault may change it:

    - ``data``: the body; ``length``: the Content-Length announced (None: ``len(data)``);
    - :meth:`cut`: stop after some bytes and end the connection instead of finishing;
    - :meth:`trickle`: send the body a few bytes at a time, pausing between them.

    ``sent`` counts the body bytes written. Before a cut answer ends the connection, every byte
    written is handed to the kernel and, before a reset, acknowledged by the client (Linux), so a
    client that keeps reading receives exactly the bytes before the cut.
    """

    chunk_size = 64 * 1024

    def __init__(
        self,
        data: Content,
        *,
        status: int = 200,
        reason: str | None = None,
        headers: Mapping[str, str] | CIMultiDict[str] | None = None,
        length: int | None = None,
    ) -> None:
        super().__init__(status=status, reason=reason, headers=headers)
        self.data = data
        self.length = length
        self.sent = 0
        self.stop: int | None = None
        self.ending: Ending = "close"
        self.stall_seconds: float | None = None
        #: (bytes, seconds): send this many bytes, then pause this long (None: at full speed)
        self.pace: tuple[int, float] | None = None

    @classmethod
    def of(cls, resp: web.StreamResponse) -> StreamedBody | None:
        """``resp`` as a streamed answer not yet sent: itself, or a ``web.Response`` with a bytes
        body converted (status, reason and headers kept); None when neither."""
        if isinstance(resp, StreamedBody):
            return None if resp.prepared else resp
        if isinstance(resp, web.Response) and not resp.prepared and isinstance(resp.body, bytes):
            headers = CIMultiDict(resp.headers)
            headers.popall("Content-Length", None)
            return cls(resp.body, status=resp.status, reason=resp.reason, headers=headers)
        return None

    def cut(self, after: int, ending: Ending, seconds: float | None = None) -> None:
        """Send only the first ``after`` bytes of the body (the announced length is unchanged),
        then close the connection cleanly (``"close"``: FIN), reset it (``"reset"``: RST), or
        stall for ``seconds`` (None: until the client leaves or the server closes) and reset it
        (``"stall"``)."""
        if after < 0:
            raise ValueError("after must be >= 0")
        self.stop, self.ending, self.stall_seconds = after, ending, seconds

    def trickle(self, size: int, every: float) -> None:
        """Send the body ``size`` bytes at a time with a pause of ``every`` seconds after each
        piece (the announced length is unchanged), until it is all sent, the client leaves or
        the server closes."""
        if size < 1 or every < 0:
            raise ValueError("size must be >= 1 and every >= 0")
        self.pace = (size, every)

    def content(self) -> bytes:
        """The whole body as bytes."""
        return bytes(self.data[0 : len(self.data)])

    async def send(
        self, request: web.Request, progress: Callable[[int], object] | None = None
    ) -> None:
        """Write status, headers and body, calling ``progress(sent)`` after each chunk. When cut,
        the connection is gone afterwards, and this raises ``asyncio.CancelledError``, as aiohttp
        does for a client that went away."""
        total = len(self.data)
        self.content_length = total if self.length is None else self.length
        transport = request.transport
        if self.stop is not None and transport is not None:
            # drain() then waits until every byte written has been handed to the kernel.
            transport.set_write_buffer_limits(high=0)
        await self.prepare(request)
        if request.method == "HEAD":
            await self.write_eof()
            return
        stop = total if self.stop is None else min(self.stop, total)
        size = self.chunk_size if self.pace is None else self.pace[0]
        while self.sent < stop:
            chunk = self.data[self.sent : min(self.sent + size, stop)]
            await self.write(chunk)
            self.sent += len(chunk)
            if progress is not None:
                progress(self.sent)
            if self.pace is not None and self.sent < stop:
                await _stall(request, self.pace[1])
                if _closing(request).is_set():  # the server closes: end this answer too
                    if request.transport is not None:
                        request.transport.abort()
                    raise asyncio.CancelledError
        if self.stop is None:
            await self.write_eof()
            return
        await request.writer.drain()
        if self.ending == "stall":
            await _stall(request, self.stall_seconds)
        transport = request.transport
        if transport is not None:
            if self.ending == "close":
                transport.close()  # FIN after anything still queued
            else:
                await _acknowledged(request, transport)  # a RST drops what is still queued
                _reset(transport)
        raise asyncio.CancelledError


def _closing(request: web.Request) -> asyncio.Event:
    closing = request.app.get(_CLOSING)
    return asyncio.Event() if closing is None else closing  # None: not FakeRegistry.app()'s


async def _stall(request: web.Request, seconds: float | None) -> None:
    """Wait ``seconds``, or until the server closes. A client that disconnects cancels the
    handler (``handler_cancellation``), and with it this wait."""
    with suppress(asyncio.TimeoutError):
        await asyncio.wait_for(_closing(request).wait(), seconds)


def _unacknowledged(sock: Any) -> int:
    """Bytes sent on ``sock`` that the peer has not acknowledged yet (Linux ``SIOCOUTQ``); 0 where
    that cannot be asked."""
    try:
        import fcntl
        import termios

        out = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4)
    except (ImportError, AttributeError, OSError):
        return 0
    return int(struct.unpack("i", out)[0])


async def _acknowledged(request: web.Request, transport: asyncio.Transport) -> None:
    """Wait until the client has acknowledged every byte sent, or the server closes. There is no
    event for that, so this polls; a client that disconnects cancels it (``handler_cancellation``).
    """
    sock = transport.get_extra_info("socket")
    closing = _closing(request)
    while sock is not None and not closing.is_set() and _unacknowledged(sock) > 0:
        await asyncio.sleep(0.001)


def _reset(transport: asyncio.Transport) -> None:
    """Close with RST rather than FIN (``SO_LINGER`` 0): the client reads ECONNRESET."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Unsatisfiable(Exception):
    pass


def _byte_range(header: str | None, total: int) -> tuple[int, int] | None:
    """``(start, stop)`` that a ``Range`` header asks of ``total`` bytes; None when there is no
    header or it is not a single byte range (then the whole body is served, as RFC 9110 says).
    Raises :class:`_Unsatisfiable` when the range lies past the end."""
    m = _RANGE.match(header.strip()) if header is not None else None
    if m is None or not (m["start"] or m["end"]):
        return None
    if not m["start"]:  # bytes=-K: the last K bytes
        suffix = int(m["end"])
        if suffix == 0 or total == 0:
            raise _Unsatisfiable
        return max(0, total - suffix), total
    start = int(m["start"])
    if m["end"] and int(m["end"]) < start:
        return None  # invalid, so ignored
    if start >= total:
        raise _Unsatisfiable
    end = int(m["end"]) if m["end"] else total - 1
    return start, min(end, total - 1) + 1


class _JSONPadding:
    """``size`` bytes of valid JSON, ``{"schemaVersion":2,"pad":"xxx…"}``, made on demand."""

    head = b'{"schemaVersion":2,"pad":"'
    tail = b'"}'

    def __init__(self, size: int) -> None:
        if size < len(self.head) + len(self.tail):
            raise ValueError(f"size must be >= {len(self.head) + len(self.tail)}")
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: slice, /) -> bytes:
        start, stop, step = key.indices(self.size)
        if step != 1:
            raise ValueError("step must be 1")
        pad_end = self.size - len(self.tail)
        out = self.head[start:stop]
        lo, hi = max(start, len(self.head)), min(stop, pad_end)
        if hi > lo:
            out += b"x" * (hi - lo)
        if stop > pad_end:
            out += self.tail[max(start, pad_end) - pad_end : stop - pad_end]
        return out


# -- the request log -------------------------------------------------------------------------------


@dataclass
class LoggedRequest:
    """One request as it arrived, and the status the fake answered (None: no answer was sent)."""

    method: str
    path: str
    query: MultiDict[str]
    headers: CIMultiDict[str]
    status: int | None = None
    #: body bytes written for a streamed answer (a blob, or an answer a mid-body fault cut);
    #: None for other answers
    sent: int | None = None

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")

    @property
    def range_start(self) -> int | None:
        """N of a ``Range: bytes=N-`` or ``bytes=N-M`` header; None without one (or for a suffix
        range ``bytes=-K``)."""
        m = _RANGE.match(self.headers.get("Range", "").strip())
        return int(m["start"]) if m and m["start"] else None

    @property
    def kind(self) -> Literal["ping", "manifest", "blob", "token", "other"]:
        if self.path in ("/v2", "/v2/"):
            return "ping"
        if self.path == "/token":
            return "token"
        if _MANIFEST_PATH.match(self.path):
            return "manifest"
        if _BLOB_PATH.match(self.path):
            return "blob"
        return "other"

    @property
    def target(self) -> str | None:
        """The blob digest, or the manifest tag or digest, that the path names."""
        m = _BLOB_PATH.match(self.path) or _MANIFEST_PATH.match(self.path)
        return m.group(m.lastindex or 0) if m else None


class RequestLog:
    """Every request the fake received, in arrival order."""

    def __init__(self) -> None:
        self._entries: list[LoggedRequest] = []

    def append(self, entry: LoggedRequest) -> None:
        self._entries.append(entry)

    def clear(self) -> None:
        self._entries.clear()

    def __iter__(self) -> Iterator[LoggedRequest]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, i: int) -> LoggedRequest:
        return self._entries[i]

    def select(
        self,
        kind: str | None = None,
        *,
        method: str | None = None,
        status: int | None = None,
        path: str | None = None,
    ) -> list[LoggedRequest]:
        """Requests of a kind (``ping``, ``manifest``, ``blob``, ``token``, ``other``), method,
        answered status and path regex (``re.search``); None matches anything."""
        return [
            r
            for r in self._entries
            if (kind is None or r.kind == kind)
            and (method is None or r.method == method)
            and (status is None or r.status == status)
            and (path is None or re.search(path, r.path))
        ]

    def blob_gets(self, status: int | None = None) -> list[LoggedRequest]:
        return self.select("blob", method="GET", status=status)

    def manifest_gets(self, status: int | None = None) -> list[LoggedRequest]:
        return self.select("manifest", method="GET", status=status)

    def token_requests(self, status: int | None = None) -> list[LoggedRequest]:
        return self.select("token", status=status)


# -- faults ----------------------------------------------------------------------------------------


class Fault(Protocol):
    """Answers ``request`` in place of, around or by way of ``handler`` (the normal answer)."""

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse: ...


class CountedFault:
    """A fault that fires on the first ``times`` requests it sees (None: on all of them) and then
    passes requests through untouched. ``hits`` counts how often it fired."""

    def __init__(self, times: int | None = 1) -> None:
        self.times = times
        self.hits = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.exhausted:
            return await handler(request)
        self.hits += 1
        return await self.inject(request, handler)

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raise NotImplementedError


class Status(CountedFault):
    """Answer ``status`` (with a registry error body when ``code`` is given) instead of the
    normal answer."""

    def __init__(
        self,
        status: int,
        times: int | None = 1,
        *,
        code: str | None = None,
        message: str = "injected fault",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(times)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.code is not None:
            return error_body(self.code, self.message, self.status, **self.headers)
        return web.Response(status=self.status, text=self.message, headers=self.headers)


class Replace(CountedFault):
    """Serve ``data`` as the body of the normal answer, keeping its status and headers (so a
    blob's ``Docker-Content-Digest`` no longer matches)."""

    def __init__(self, data: bytes, times: int | None = 1) -> None:
        super().__init__(times)
        self.data = data

    def alter(self, body: bytes) -> bytes:
        return self.data

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await handler(request)
        if isinstance(resp, StreamedBody) and not resp.prepared:
            resp.data = self.alter(resp.content())
            resp.length = None
            return resp
        if not isinstance(resp, web.Response) or not isinstance(resp.body, bytes):
            return resp
        body = resp.body
        headers = CIMultiDict(resp.headers)
        headers.pop("Content-Length", None)
        return web.Response(status=resp.status, body=self.alter(body), headers=headers)


class Corrupt(Replace):
    """Serve the normal body with its last byte flipped: same length, wrong digest."""

    def __init__(self, times: int | None = 1) -> None:
        super().__init__(b"", times)

    def alter(self, body: bytes) -> bytes:
        return body[:-1] + bytes([body[-1] ^ 0xFF]) if body else b"\x00"


class DropConnection(CountedFault):
    """Close the connection without sending a response."""

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            transport.abort()
        # Nothing can be sent on an aborted transport; aiohttp treats this as a client going away.
        raise asyncio.CancelledError


class After:
    """Run ``action`` after the first ``times`` normal answers with ``status`` have been
    produced (they are still sent): e.g. revoke every token once the manifest is served."""

    def __init__(self, action: Callable[[], object], *, status: int = 200, times: int = 1) -> None:
        self.action = action
        self.status = status
        self.times = times
        self.hits = 0

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await handler(request)
        if resp.status == self.status and self.hits < self.times:
            self.hits += 1
            self.action()
        return resp


class Answer(CountedFault):
    """Answer with this status, body and Content-Type, and nothing else (no
    Docker-Content-Digest: what a registry or proxy that does not send one looks like)."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        super().__init__(times=None)
        self.response = (status, body, content_type)

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        status, body, content_type = self.response
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})


class ResetMidBody(CountedFault):
    """Send the headers (with the full Content-Length) and the first ``after`` bytes of the body,
    then reset the connection (RST). Works on any answer with a body, not only blobs."""

    def __init__(self, after: int, times: int | None = 1) -> None:
        super().__init__(times)
        self.after = after

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await handler(request)
        streamed = StreamedBody.of(resp)
        if streamed is None:
            return resp
        streamed.cut(self.after, "reset")
        return streamed


class StallMidBody(CountedFault):
    """Send the headers and the first ``after`` bytes, then send nothing for ``seconds`` (None:
    until the client disconnects or the server closes), then reset the connection."""

    def __init__(self, after: int, seconds: float | None, times: int | None = 1) -> None:
        super().__init__(times)
        self.after = after
        self.seconds = seconds

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await handler(request)
        streamed = StreamedBody.of(resp)
        if streamed is None:
            return resp
        streamed.cut(self.after, "stall", self.seconds)
        return streamed


class Trickle(CountedFault):
    """Send the headers (with the full Content-Length) at once, then the body ``size`` bytes at a
    time with a pause of ``every`` seconds after each piece: a server that is slow but never
    silent for long. Works on any answer with a body, not only blobs."""

    def __init__(self, size: int, every: float, times: int | None = None) -> None:
        super().__init__(times)
        self.size = size
        self.every = every

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await handler(request)
        streamed = StreamedBody.of(resp)
        if streamed is None:
            return resp
        streamed.trickle(self.size, self.every)
        return streamed


class Truncate(CountedFault):
    """Send the headers (with the full Content-Length) and the first ``keep`` bytes, then close
    the connection cleanly (FIN): the client gets fewer bytes than announced."""

    def __init__(self, keep: int, times: int | None = 1) -> None:
        super().__init__(times)
        self.keep = keep

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await handler(request)
        streamed = StreamedBody.of(resp)
        if streamed is None:
            return resp
        streamed.cut(self.keep, "close")
        return streamed


class IgnoreRange(CountedFault):
    """Answer a ranged request as a server without Range support: 200 and the whole body, no
    ``Accept-Ranges``. Requests without a ``Range`` header pass through and are not counted."""

    def __init__(self, times: int | None = None) -> None:
        super().__init__(times)

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if "Range" not in request.headers:
            return await handler(request)
        return await super().__call__(request, handler)

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        headers = CIMultiDict(request.headers)
        headers.popall("Range", None)
        resp = await handler(request.clone(headers=headers))
        if not resp.prepared:
            resp.headers.popall("Accept-Ranges", None)
        return resp


class RedirectTo(CountedFault):
    """Answer ``status`` with ``Location: <base_url><path and query of the request>``, as a
    registry that serves its blobs from a CDN or object store (see :func:`start_origin`)."""

    def __init__(self, base_url: str, status: int = 307, times: int | None = None) -> None:
        super().__init__(times)
        self.base_url = base_url.rstrip("/")
        self.status = status

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        location = self.base_url + request.raw_path
        return web.Response(status=self.status, text=location, headers={"Location": location})


class RetryAfter(CountedFault):
    """Answer ``status`` with ``Retry-After: <seconds>`` (an int, or an HTTP-date string) and a
    registry error: ``TOOMANYREQUESTS`` for 429, ``UNAVAILABLE`` otherwise."""

    def __init__(self, status: int = 429, seconds: int | str = 0, times: int | None = 1) -> None:
        super().__init__(times)
        self.status = status
        self.seconds = seconds

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.status == 429:
            code, message = "TOOMANYREQUESTS", "too many requests"
        else:
            code, message = "UNAVAILABLE", "service unavailable"
        return error_body(code, message, self.status, **{"Retry-After": str(self.seconds)})


class Oversize(CountedFault):
    """Answer 200 with ``size`` bytes of valid JSON (``{"schemaVersion":2,"pad":"xxx…"}``),
    streamed, no ``Docker-Content-Digest``; the Content-Type is the normal answer's when that is
    a 200, else the OCI manifest type. Meant for manifests; the body is made on demand, so a
    large ``size`` costs no memory."""

    def __init__(self, size: int, times: int | None = None) -> None:
        super().__init__(times)
        self.body = _JSONPadding(size)

    @property
    def size(self) -> int:
        return len(self.body)

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        normal = await handler(request)
        media_type = normal.headers.get("Content-Type") if normal.status == 200 else None
        return StreamedBody(self.body, headers={"Content-Type": media_type or _OCI_MANIFEST})


F = TypeVar("F", bound=Fault)


@dataclass
class _Rule:
    pattern: re.Pattern[str]
    method: str | None
    fault: Fault


# -- the registry ----------------------------------------------------------------------------------


@dataclass
class _Repo:
    #: tag or digest -> (media type, raw bytes, digest)
    manifests: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)


class FakeRegistry:
    """The app and its knobs. Knobs are plain attributes and may be changed while it runs.

    - ``auth``: None (anonymous), ``"basic"`` (``users`` checked on every /v2/ request) or
      ``"bearer"`` (tokens from ``realm``, by default this server's ``/token``).
    - ``users``: username -> password, for Basic auth and for a token endpoint with
      ``token_requires_auth``.
    - ``token_requires_auth``: the token endpoint answers 401 unless Basic credentials of
      ``users`` come with the request.
    - ``token_field``: the token endpoint answers ``{"token": ...}``, ``{"access_token": ...}`` or
      both.
    - ``expires_in``: the lifetime the token endpoint announces (None: the key is left out).
      Tokens stay valid on the server until :meth:`revoke_tokens`.
    - ``origin``: serve only ``GET /v2/<name>/blobs/<digest>`` (every other path is a plain 404),
      as the storage a registry redirects blob requests to; see :func:`start_origin`.
    - ``tls``: serve HTTPS with this server-side ``ssl.SSLContext`` (None: plain HTTP); fixed
      once started.
    """

    def __init__(
        self,
        images: Iterable[Image] = (),
        *,
        auth: AuthMode = None,
        users: Mapping[str, str] | None = None,
        token_requires_auth: bool = False,
        token_field: Literal["token", "access_token", "both"] = "token",
        expires_in: int | None = 300,
        service: str = "fake",
        realm: str | None = None,
        origin: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.auth: AuthMode = auth
        self.origin = origin
        self.tls = tls
        self.users: dict[str, str] = dict(users or {})
        self.token_requires_auth = token_requires_auth
        self.token_field = token_field
        self.expires_in = expires_in
        self.service = service
        self._realm = realm
        self.log = RequestLog()
        #: token -> the scopes it grants; only tokens in here are accepted
        self.tokens: dict[str, frozenset[str]] = {}
        #: every token issued, in order, including revoked ones
        self.issued: list[str] = []
        self._token_ids = itertools.count(1)
        self._repos: dict[str, _Repo] = {}
        self._rules: list[_Rule] = []
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.port = 0
        for image in images:
            self.add_image(image)

    # -- content ----------------------------------------------------------------------------------

    def add_image(self, image: Image, repository: str | None = None) -> None:
        """Serve ``image`` under ``repository`` (default: the image's own), by tag and digest."""
        repo = self._repos.setdefault(repository or image.repository, _Repo())
        top = (image.media_type, image.raw, image.digest)
        repo.manifests[image.tag] = top
        repo.manifests[image.digest] = top
        for manifest in image.manifests:
            repo.manifests[manifest.digest] = (manifest.media_type, manifest.raw, manifest.digest)
            for blob in manifest.blobs:
                repo.blobs[blob.digest] = blob.data

    # -- auth knobs -------------------------------------------------------------------------------

    @property
    def realm(self) -> str:
        return self._realm or f"{self.url}/token"

    @realm.setter
    def realm(self, value: str | None) -> None:
        self._realm = value

    def revoke_tokens(self) -> int:
        """Invalidate every token issued so far (as if they expired); returns how many."""
        n = len(self.tokens)
        self.tokens.clear()
        return n

    # -- faults -----------------------------------------------------------------------------------

    def inject(self, path: str, fault: F, *, method: str | None = "GET") -> F:
        """Apply ``fault`` to requests whose path matches the regex ``path`` (``re.search``) and
        whose method is ``method`` (None: any). Several faults on one request nest in the order
        they were injected, the first outermost. Returns ``fault`` so a test can read ``hits``."""
        self._rules.append(_Rule(re.compile(path), method, fault))
        return fault

    def clear_faults(self) -> None:
        self._rules.clear()

    # -- running ----------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: the registry part of a reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls is not None else 'http'}://{self.host}"

    def ref(self, image: Image) -> str:
        """The loopback reference a client pulls ``image`` by: ``127.0.0.1:PORT/repo:tag``."""
        return f"{self.host}/{image.reference}"

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._log_mw, self._auth_mw, self._fault_mw])
        app[_CLOSING] = self._closing
        if not self.origin:
            app.router.add_get("/v2/", self._ping)
            app.router.add_get("/v2", self._ping)
            app.router.add_get("/token", self._token)
            app.router.add_get(r"/v2/{name:.+}/manifests/{reference}", self._manifest)
        app.router.add_get(r"/v2/{name:.+}/blobs/{digest}", self._blob)
        return app

    async def start(self) -> None:
        self._closing.clear()
        # handler_cancellation: a client that disconnects cancels its handler (a stalled or gated
        # answer), rather than leaving it to run on and hold up close().
        self._runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            self._closing.set()  # ends stalled answers (StallMidBody)
            await self._runner.cleanup()
            self._runner = None

    # -- middlewares ------------------------------------------------------------------------------

    @web.middleware
    async def _log_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        entry = LoggedRequest(
            request.method, request.path, MultiDict(request.query), CIMultiDict(request.headers)
        )
        self.log.append(entry)
        try:
            resp = await handler(request)
        except web.HTTPException as e:
            entry.status = e.status
            raise
        entry.status = resp.status
        if isinstance(resp, StreamedBody) and not resp.prepared:
            entry.sent = 0

            def progress(sent: int) -> None:
                entry.sent = sent

            try:
                await resp.send(request, progress)
            except ConnectionError:
                # The client went away mid-body; end the request as aiohttp does for that.
                raise asyncio.CancelledError from None
        return resp

    @web.middleware
    async def _auth_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.auth is None or request.path == "/token":
            return await handler(request)
        name = request.match_info.get("name")
        scope = f"repository:{name}:pull" if name else None
        header = request.headers.get("Authorization", "")
        if self.auth == "basic":
            if self._basic_ok(header):
                return await handler(request)
            return error_body(
                "UNAUTHORIZED",
                "authentication required",
                401,
                **{"WWW-Authenticate": 'Basic realm="fake"'},
            )
        scheme, _, token = header.partition(" ")
        granted = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if granted is not None and (scope is None or scope in granted):
            return await handler(request)
        challenge = f'Bearer realm="{self.realm}",service="{self.service}"'
        if scope:
            challenge += f',scope="{scope}"'
        if granted is not None:
            challenge += ',error="insufficient_scope"'
        return error_body(
            "UNAUTHORIZED", "authentication required", 401, **{"WWW-Authenticate": challenge}
        )

    @web.middleware
    async def _fault_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        chain = handler
        for rule in reversed(self._rules):
            if (rule.method is None or rule.method == request.method) and rule.pattern.search(
                request.path
            ):
                chain = _bind(rule.fault, chain)
        return await chain(request)

    def _basic_ok(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return bool(sep) and user in self.users and self.users[user] == password

    # -- routes -----------------------------------------------------------------------------------

    async def _ping(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})

    async def _token(self, request: web.Request) -> web.StreamResponse:
        if self.token_requires_auth and not self._basic_ok(
            request.headers.get("Authorization", "")
        ):
            return error_body(
                "UNAUTHORIZED", "incorrect username or password", 401
            )  # Docker Hub's auth server also answers 401 here
        token = f"fake-token-{next(self._token_ids)}"
        self.tokens[token] = frozenset(request.query.getall("scope", []))
        self.issued.append(token)
        doc: dict[str, Any] = {}
        if self.token_field in ("token", "both"):
            doc["token"] = token
        if self.token_field in ("access_token", "both"):
            doc["access_token"] = token
        if self.expires_in is not None:
            doc["expires_in"] = self.expires_in
        doc["issued_at"] = "2023-11-14T22:13:20Z"
        return web.json_response(doc)

    async def _manifest(self, request: web.Request) -> web.StreamResponse:
        repo = self._repos.get(request.match_info["name"])
        if repo is None:
            return error_body("NAME_UNKNOWN", "repository name not known to registry", 404)
        found = repo.manifests.get(request.match_info["reference"])
        if found is None:
            return error_body("MANIFEST_UNKNOWN", "manifest unknown", 404)
        media_type, raw, digest = found
        return web.Response(
            body=raw, headers={"Content-Type": media_type, "Docker-Content-Digest": digest}
        )

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        repo = self._repos.get(request.match_info["name"])
        digest = request.match_info["digest"]
        data = repo.blobs.get(digest) if repo is not None else None
        if data is None:
            return error_body("BLOB_UNKNOWN", "blob unknown to registry", 404)
        headers = {"Docker-Content-Digest": digest, "Accept-Ranges": "bytes"}
        total = len(data)
        try:
            wanted = _byte_range(request.headers.get("Range"), total)
        except _Unsatisfiable:
            headers["Content-Range"] = f"bytes */{total}"
            return web.Response(status=416, text="requested range not satisfiable", headers=headers)
        headers["Content-Type"] = "application/octet-stream"
        if wanted is None:
            return StreamedBody(data, headers=headers)
        start, stop = wanted
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{total}"
        return StreamedBody(data[start:stop], status=206, headers=headers)


def _bind(fault: Fault, handler: Handler) -> Handler:
    async def call(request: web.Request) -> web.StreamResponse:
        return await fault(request, handler)

    return call


@asynccontextmanager
async def start_fake(images: Iterable[Image] = (), **knobs: Any) -> AsyncIterator[FakeRegistry]:
    """A running :class:`FakeRegistry` on a free loopback port; ``knobs`` as its constructor's."""
    fake = FakeRegistry(images, **knobs)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@asynccontextmanager
async def start_origin(images: Iterable[Image] = (), **knobs: Any) -> AsyncIterator[FakeRegistry]:
    """A running blob origin: a :class:`FakeRegistry` with ``origin=True`` and no auth, serving
    ``GET /v2/<name>/blobs/<digest>`` (with Range) of ``images`` and nothing else. It has its own
    ``log`` and takes faults like the registry; point :class:`RedirectTo` at its ``url``::

        async with start_fake([image], auth="bearer") as fake, start_origin([image]) as cdn:
            fake.inject("/blobs/", RedirectTo(cdn.url))
            ...
            assert all(r.authorization is None for r in cdn.log)
    """
    async with start_fake(images, auth=None, origin=True, **knobs) as origin:
        yield origin


# -- running the CLI -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompletedRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def error_lines(self) -> list[str]:
        return self.stderr.splitlines()


async def run_pypull(
    *args: str | os.PathLike[str],
    store: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,
    launcher: Sequence[str] = ("-m", "puller"),
) -> CompletedRun:
    """``python -m puller ARGS [--store STORE]`` as a user runs it (not a terminal, no stdin),
    without blocking the event loop that serves the fake registry. ``launcher`` replaces
    ``-m puller`` (a wrapper script that runs it, say)."""
    argv = [str(a) for a in args]
    if store is not None:
        argv += ["--store", str(store)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPULL_")}
    # The checkout's package, not whichever one is installed.
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *launcher,
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(
            f"pypull {' '.join(argv)} did not finish in {timeout} s\n"
            f"stdout: {out.decode(errors='replace')}\nstderr: {err.decode(errors='replace')}"
        ) from None
    assert proc.returncode is not None
    return CompletedRun(proc.returncode, out.decode(), err.decode())
