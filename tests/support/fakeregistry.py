"""A fault-injecting fake registry: the OCI distribution API, pulls and pushes, in-process.

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

The push side: ``POST /v2/<name>/blobs/uploads/`` (202 and a session; ``?mount=&from=`` 201
when the other repository holds the blob, else a session; ``?digest=`` with a body: 201),
``PATCH`` (``Content-Range: START-END`` must start where the session ends: else 416), ``PUT
?digest=`` (the rest of the body, if any; the digest is checked: 201 + Docker-Content-Digest),
``GET`` of a session (204 + ``Range: 0-N``), ``DELETE`` of a session and of a manifest
(``deletes``), ``PUT`` of manifests (every blob or child they name must be in the repository:
else 400 ``MANIFEST_BLOB_UNKNOWN``) and ``GET /v2/<name>/tags/list`` (``n``, and a ``Link``
with an opaque token when there is more), and ``GET /v2/_catalog`` (every repository, one page).
Every session ``Location`` carries ``?_state=<opaque>``, and a session request without it is
refused (400 ``BLOB_UPLOAD_INVALID``), as distribution does. Request bodies are read as they
arrive and a session keeps what arrived, so :class:`CutRequestBody` can end a connection
mid-upload and leave the bytes before the cut in the session. :meth:`FakeRegistry.blob`,
:meth:`FakeRegistry.manifest` and :meth:`FakeRegistry.tags` show what was pushed.

A fault is any ``async (request, handler) -> response`` callable, where ``handler`` produces the
normal answer; it may answer instead (an error status), alter the normal answer (wrong bytes),
act around it (revoke tokens once a manifest is served), or never answer (drop the connection).
:class:`CountedFault` is a base for faults that fire ``times`` times and then let requests through;
subclass it and implement :meth:`CountedFault.inject` to add a new kind of fault.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import json
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
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias, TypeVar
from urllib.parse import quote, urlencode

from aiohttp import web
from multidict import CIMultiDict, MultiDict

from fixtures.images import Image
from tests.support.jsonlines import check_run

__all__ = [
    "FOREIGN_LAYER_TYPES",
    "After",
    "AuthMode",
    "CompletedRun",
    "Corrupt",
    "CountedFault",
    "CutRequestBody",
    "DropAnswer",
    "DropConnection",
    "FakeRegistry",
    "Fault",
    "Handler",
    "IgnoreRange",
    "Later",
    "LoggedRequest",
    "Oversize",
    "RedirectTo",
    "Replace",
    "RequestLog",
    "ResetMidBody",
    "RetryAfter",
    "StallMidBody",
    "Status",
    "StoreNothing",
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
_UPLOAD_PATH = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<session>[^/]*)$")
_TAGS_PATH = re.compile(r"^/v2/(?P<name>.+)/tags/list$")
_REFERRERS_PATH = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)$")
_CONTENT_RANGE = re.compile(r"^(?P<start>\d{1,20})-(?P<end>\d{1,20})$")
_RANGE = re.compile(r"^bytes=(?P<start>\d*)-(?P<end>\d*)$")
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
#: The largest manifest a PUT may carry (distribution's limit).
_MAX_MANIFEST = 4 << 20
#: set while the server shuts down, so stalled answers end instead of holding the shutdown up
_CLOSING = web.AppKey("closing", asyncio.Event)
#: set by CutRequestBody: how many request body bytes to take in before ending the connection
_CUT_AFTER = web.RequestKey("cut_after", int)
#: Set by ``StoreNothing``: the upload is answered as stored, and nothing is kept.
_STORE_NOTHING = web.RequestKey("store_nothing", bool)


def error_body(
    code: str, message: str, status: int, *, detail: object = None, **headers: str
) -> web.Response:
    """A registry-style JSON error: ``{"errors":[{"code":..., "message":..., "detail":...}]}``."""
    doc = {"errors": [{"code": code, "message": message, "detail": detail}]}
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
    #: request body bytes an upload (PATCH, PUT, POST) took in, cut or not; None for others
    received: int | None = None
    #: path and query exactly as sent (still percent-encoded)
    raw_path: str = ""
    #: the headers of the answer (None: no answer was sent)
    answer_headers: CIMultiDict[str] | None = None
    #: the loop's clock when the request arrived, and when the fake was done with it (a
    #: streamed body sent; None: not yet)
    arrived: float = 0.0
    ended: float | None = None

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
    def kind(
        self,
    ) -> Literal["ping", "manifest", "blob", "upload", "tags", "referrers", "token", "other"]:
        """``upload``: a blob upload's POST and its session's requests."""
        if self.path in ("/v2", "/v2/"):
            return "ping"
        if self.path == "/token":
            return "token"
        if _UPLOAD_PATH.match(self.path):
            return "upload"
        if _TAGS_PATH.match(self.path):
            return "tags"
        if _REFERRERS_PATH.match(self.path):
            return "referrers"
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


#: the request's log entry, for handlers that record what they received
_ENTRY = web.RequestKey("entry", LoggedRequest)


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

    def uploads(self, method: str | None = None, status: int | None = None) -> list[LoggedRequest]:
        return self.select("upload", method=method, status=status)

    def most_at_once(self) -> int:
        """The most requests the fake was busy with at one time (arrived, not yet ended)."""
        edges = sorted(
            [(r.arrived, 1) for r in self._entries]
            + [(r.ended, -1) for r in self._entries if r.ended is not None],
            key=lambda edge: (edge[0], edge[1]),  # an end before a start at the same instant
        )
        busy = most = 0
        for _, step in edges:
            busy += step
            most = max(most, busy)
        return most


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


class DropAnswer(CountedFault):
    """Let the request do what it does (a blob committed, a manifest stored), then close the
    connection without sending the answer: the client cannot know it went through."""

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        await handler(request)
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError


class CutRequestBody(CountedFault):
    """Take in the first ``after`` bytes of an upload's request body (PATCH, PUT, POST), keep them
    in the session as a registry keeps what arrived, then end the connection without an answer.
    A body of ``after`` bytes or fewer is taken in whole before the cut: the answer is what is
    lost. Only for upload requests; others pass through (and are not counted)."""

    def __init__(self, after: int, times: int | None = 1) -> None:
        super().__init__(times)
        if after < 0:
            raise ValueError("after must be >= 0")
        self.after = after

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _UPLOAD_PATH.match(request.path):
            return await handler(request)
        return await super().__call__(request, handler)

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request[_CUT_AFTER] = self.after
        return await handler(request)


class StoreNothing(CountedFault):
    """Answer a blob upload's closing request (the PUT of a session, a monolithic POST) 201
    with the blob's ``Docker-Content-Digest``, as if stored, and keep nothing: a target that
    lost the blob, or never wrote it. Other requests pass through (and are not counted)."""

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _UPLOAD_PATH.match(request.path) or request.method not in ("PUT", "POST"):
            return await handler(request)
        if request.method == "POST" and "digest" not in request.query:
            return await handler(request)  # opens a session; the PUT that closes it is lost
        return await super().__call__(request, handler)

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request[_STORE_NOTHING] = True
        return await handler(request)


class Later:
    """Let the first ``skip`` requests that reach it through untouched, then apply ``fault``:
    say, a 416 to the second PATCH of an upload, not the first."""

    def __init__(self, fault: Fault, skip: int = 1) -> None:
        self.fault = fault
        self.skip = skip
        self.seen = 0

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.seen += 1
        if self.seen <= self.skip:
            return await handler(request)
        return await self.fault(request, handler)


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
    query: re.Pattern[str] | None = None

    def applies(self, request: web.Request) -> bool:
        return (
            (self.method is None or self.method == request.method)
            and self.pattern.search(request.path) is not None
            and (self.query is None or self.query.search(request.query_string) is not None)
        )


# -- the registry ----------------------------------------------------------------------------------


@dataclass
class _Repo:
    #: tag or digest -> (media type, raw bytes, digest)
    manifests: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _Upload:
    """An open upload session: what arrived so far."""

    name: str
    data: bytearray = field(default_factory=bytearray)
    #: a PATCH chunk shorter than the stated minimum arrived: only a closing PUT may follow
    short_chunk: bool = False


def _sha256(data: bytes | bytearray) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _state_token(session: str, offset: int) -> str:
    """An opaque ``_state`` (distribution's is a signed blob of JSON): base64 with ``+/=``, so a
    client that does not keep the query exactly as given breaks it."""
    doc = json.dumps({"session": session, "offset": offset}).encode()
    return base64.b64encode(b"\xfb\xff" + doc).decode()


def _state_session(token: str) -> str | None:
    try:
        raw = base64.b64decode(token, validate=True)
        session = json.loads(raw[2:])["session"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None
    return session if isinstance(session, str) else None


def _granted(scopes: Iterable[str], name: str, actions: Iterable[str]) -> bool:
    """Whether ``scopes`` (``repository:NAME:ACTIONS`` strings) allow every one of ``actions``
    on repository ``name``."""
    have: set[str] = set()
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        repo, _, allowed = rest.rpartition(":")
        if kind == "repository" and repo == name:
            have.update(allowed.split(","))
    return set(actions) <= have


#: Layers a registry is not sent (Windows base layers): docker's and OCI's media types.
FOREIGN_LAYER_TYPES = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
)


def _referenced(doc: Any) -> tuple[list[str], list[str]]:
    """The blobs (config, layers) and child manifests a manifest or index names."""
    if not isinstance(doc, dict):
        return [], []

    def digests(entries: Any) -> list[str]:
        if not isinstance(entries, list):
            return []
        return [str(e.get("digest")) for e in entries if isinstance(e, dict)]

    layers = [
        layer
        for layer in (doc.get("layers") if isinstance(doc.get("layers"), list) else [])
        # Foreign layers live at their URLs: distribution does not look for them.
        if not (isinstance(layer, dict) and layer.get("mediaType") in FOREIGN_LAYER_TYPES)
    ]
    blobs = digests([doc.get("config"), *layers])
    return blobs, digests(doc.get("manifests"))


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

    Pushes (a push needs ``pull`` and ``push`` on the repository, and a mount ``pull`` on the
    ``from`` repository too, as distribution asks):

    - ``pushers``: the users who may push (None: everyone, anonymous included). With
      ``"bearer"`` the token endpoint grants the others ``pull`` only and a push answers 401
      ``DENIED`` with an ``insufficient_scope`` challenge; with ``"basic"`` it answers 403
      ``DENIED``.
    - ``upload_location``: session ``Location`` headers are ``"relative"`` (``/v2/...``) or
      ``"absolute"`` (``http://127.0.0.1:PORT/v2/...``); either way with ``?_state=``.
    - ``mounts``: False answers every mount with a plain upload session (202), as a registry
      without cross-repository mounts.
    - ``max_put``: a PUT whose body is larger is answered 413 (None: no limit).
    - ``chunk_min_length``: stated as ``OCI-Chunk-Min-Length`` on sessions; a PATCH after a
      chunk shorter than that is refused (400 ``BLOB_UPLOAD_INVALID``).
    - ``tags_page``: the page size of a tag listing that asks for none (None: every tag).
    - ``deletes``: how ``DELETE /v2/<name>/manifests/<reference>`` is answered: ``"tag"``
      deletes a tag alone and a digest with every tag pointing there (202); ``"digest"`` is
      distribution 2.8: a tag answered 400 ``DIGEST_INVALID``, a digest deleted; ``"none"``
      answers 405 ``UNSUPPORTED`` (distribution without ``storage.delete.enabled``).

    OCI 1.1 referrers (off by default: distribution 2.8 has no Referrers API, and answers its
    path 404):

    - ``referrers_api``: serve ``GET /v2/<name>/referrers/<digest>``, an image index of the
      manifests in the repository whose ``subject`` is the digest (``artifactType`` from the
      manifest's, else its config's media type; its annotations), filtered by
      ``?artifactType=`` with ``OCI-Filters-Applied: artifactType``; and answer the PUT of a
      manifest with a ``subject`` with ``OCI-Subject: <its digest>``.
    - ``referrers_page``: descriptors a referrers page holds; more follow in pages of a
      ``Link`` (None: every one on one page).

    Docker Hub's pull quota:

    - ``ratelimit_remaining``: when not None, manifest HEAD and GET answers carry
      ``ratelimit-limit: <ratelimit_limit>;w=21600`` and ``ratelimit-remaining: <N>;w=21600``;
      each manifest GET answered 200 takes one off (a HEAD does not, as on Docker Hub), and
      once it is 0 manifest GETs are answered 429 ``TOOMANYREQUESTS`` (with the headers).
    - ``ratelimit_limit``: the quota announced (default 100).
    - ``ratelimit_reset``: when not None, those answers also carry ``ratelimit-reset: <N>``
      (seconds until the window resets, the IETF draft's header).
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
        pushers: Collection[str] | None = None,
        upload_location: Literal["relative", "absolute"] = "relative",
        mounts: bool = True,
        max_put: int | None = None,
        chunk_min_length: int | None = None,
        tags_page: int | None = None,
        referrers_api: bool = False,
        referrers_page: int | None = None,
        ratelimit_remaining: int | None = None,
        ratelimit_limit: int = 100,
        ratelimit_reset: int | None = None,
        deletes: Literal["tag", "digest", "none"] = "tag",
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
        self.pushers = pushers
        self.upload_location = upload_location
        self.mounts = mounts
        self.max_put = max_put
        self.chunk_min_length = chunk_min_length
        self.tags_page = tags_page
        self.referrers_api = referrers_api
        self.referrers_page = referrers_page
        self.ratelimit_remaining = ratelimit_remaining
        self.ratelimit_limit = ratelimit_limit
        self.ratelimit_reset = ratelimit_reset
        self.deletes = deletes
        self.log = RequestLog()
        #: token -> the scopes it grants; only tokens in here are accepted
        self.tokens: dict[str, frozenset[str]] = {}
        #: every token issued, in order, including revoked ones
        self.issued: list[str] = []
        self._token_ids = itertools.count(1)
        self._repos: dict[str, _Repo] = {}
        #: open upload sessions by id
        self.uploads: dict[str, _Upload] = {}
        self._upload_ids = itertools.count(1)
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

    def add_manifest(self, repository: str, image: Image, *, tagged: bool = True) -> None:
        """``add_image``, untagged unless ``tagged`` (a referrer is found by its subject)."""
        self.add_image(image, repository)
        if not tagged:
            del self._repos[repository].manifests[image.tag]

    def blob(self, repository: str, digest: str) -> bytes | None:
        """The blob ``repository`` holds under ``digest`` (pushed or served), or None."""
        repo = self._repos.get(repository)
        return repo.blobs.get(digest) if repo is not None else None

    def manifest(self, repository: str, reference: str) -> bytes | None:
        """The raw manifest ``repository`` holds under a tag or digest, or None."""
        repo = self._repos.get(repository)
        found = repo.manifests.get(reference) if repo is not None else None
        return found[1] if found is not None else None

    def tags(self, repository: str) -> list[str]:
        """The repository's tags, sorted (what ``GET .../tags/list`` lists)."""
        repo = self._repos.get(repository)
        if repo is None:
            return []
        return sorted(ref for ref in repo.manifests if not ref.startswith("sha256:"))

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

    def inject(
        self, path: str, fault: F, *, method: str | None = "GET", query: str | None = None
    ) -> F:
        """Apply ``fault`` to requests whose path matches the regex ``path`` (``re.search``),
        whose method is ``method`` (None: any) and, if ``query`` is given, whose query string
        (as sent, still percent-encoded) matches that regex. Several faults on one request nest
        in the order they were injected, the first outermost. Returns ``fault`` so a test can
        read ``hits``."""
        compiled = re.compile(query) if query is not None else None
        self._rules.append(_Rule(re.compile(path), method, fault, compiled))
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
            app.router.add_get("/v2/_catalog", self._catalog)
            app.router.add_get(r"/v2/{name:.+}/manifests/{reference}", self._manifest)
            app.router.add_put(r"/v2/{name:.+}/manifests/{reference}", self._put_manifest)
            app.router.add_get(r"/v2/{name:.+}/tags/list", self._tags)
            app.router.add_get(r"/v2/{name:.+}/referrers/{digest}", self._referrers)
            app.router.add_post(r"/v2/{name:.+}/blobs/uploads/", self._start_upload)
            session = r"/v2/{name:.+}/blobs/uploads/{session}"
            app.router.add_patch(session, self._patch_upload)
            app.router.add_put(session, self._finish_upload)
            app.router.add_get(session, self._upload_status)
            app.router.add_delete(session, self._cancel_upload)
            app.router.add_delete(r"/v2/{name:.+}/manifests/{reference}", self._delete_manifest)
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
            request.method,
            request.path,
            MultiDict(request.query),
            CIMultiDict(request.headers),
            raw_path=request.raw_path,
            arrived=asyncio.get_running_loop().time(),
        )
        self.log.append(entry)
        request[_ENTRY] = entry
        try:
            return await self._answer(request, handler, entry)
        finally:
            entry.ended = asyncio.get_running_loop().time()

    async def _answer(
        self, request: web.Request, handler: Handler, entry: LoggedRequest
    ) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except web.HTTPException as e:
            entry.status = e.status
            entry.answer_headers = CIMultiDict(e.headers)
            raise
        entry.status = resp.status
        entry.answer_headers = CIMultiDict(resp.headers)
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
        pushing = request.method not in ("GET", "HEAD")
        # (repository, actions) this request needs, as distribution asks: a mount also reads
        # the repository it mounts from.
        needs: list[tuple[str, tuple[str, ...]]] = []
        if name:
            needs.append((name, ("pull", "push") if pushing else ("pull",)))
            source = request.query.get("from") if request.query.get("mount") else None
            if pushing and source and source != name:
                needs.append((source, ("pull",)))
        header = request.headers.get("Authorization", "")
        if self.auth == "basic":
            user = self._basic_user(header)
            if user is None:
                return error_body(
                    "UNAUTHORIZED",
                    "authentication required",
                    401,
                    **{"WWW-Authenticate": 'Basic realm="fake"'},
                )
            if pushing and name and not self._may_push(user):
                return error_body("DENIED", "requested access to the resource is denied", 403)
            return await handler(request)
        scheme, _, token = header.partition(" ")
        granted = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if granted is not None and all(_granted(granted, n, a) for n, a in needs):
            return await handler(request)
        scope = " ".join(f"repository:{n}:{','.join(a)}" for n, a in needs)
        challenge = f'Bearer realm="{self.realm}",service="{self.service}"'
        if scope:
            challenge += f',scope="{scope}"'
        if granted is not None:
            challenge += ',error="insufficient_scope"'
        if granted is not None and pushing:
            code, message = "DENIED", "requested access to the resource is denied"
        else:
            code, message = "UNAUTHORIZED", "authentication required"
        return error_body(code, message, 401, **{"WWW-Authenticate": challenge})

    @web.middleware
    async def _fault_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        chain = handler
        for rule in reversed(self._rules):
            if rule.applies(request):
                chain = _bind(rule.fault, chain)
        return await chain(request)

    def _basic_ok(self, header: str) -> bool:
        return self._basic_user(header) is not None

    def _basic_user(self, header: str) -> str | None:
        """The user whose valid Basic credentials ``header`` carries, else None."""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if sep and user in self.users and self.users[user] == password:
            return user
        return None

    def _may_push(self, user: str | None) -> bool:
        return self.pushers is None or (user is not None and user in self.pushers)

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
        may_push = self._may_push(self._basic_user(request.headers.get("Authorization", "")))
        scopes = set()
        for scope in (s for param in request.query.getall("scope", []) for s in param.split()):
            if not may_push and scope.startswith("repository:"):
                head, _, actions = scope.rpartition(":")
                kept = [a for a in actions.split(",") if a != "push"]
                scope = f"{head}:{','.join(kept)}"
            scopes.add(scope)
        self.tokens[token] = frozenset(scopes)
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
        resp = await self._manifest_answer(request)
        if self.ratelimit_remaining is not None:
            counted = request.method == "GET" and resp.status == 200
            if counted and self.ratelimit_remaining <= 0:
                resp = error_body(
                    "TOOMANYREQUESTS",
                    "You have reached your pull rate limit. You may increase the limit by "
                    "authenticating and upgrading: https://www.docker.com/increase-rate-limit",
                    429,
                )
            elif counted:
                self.ratelimit_remaining -= 1
            resp.headers["ratelimit-limit"] = f"{self.ratelimit_limit};w=21600"
            resp.headers["ratelimit-remaining"] = f"{max(self.ratelimit_remaining, 0)};w=21600"
            if self.ratelimit_reset is not None:
                resp.headers["ratelimit-reset"] = str(self.ratelimit_reset)
        return resp

    async def _manifest_answer(self, request: web.Request) -> web.Response:
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

    # -- the push side ----------------------------------------------------------------------------

    async def _put_manifest(self, request: web.Request) -> web.StreamResponse:
        name, reference = request.match_info["name"], request.match_info["reference"]
        if (request.content_length or 0) > _MAX_MANIFEST:
            return error_body("SIZE_INVALID", "manifest too large", 413)
        raw = b""
        while len(raw) <= _MAX_MANIFEST:  # read(n) gives what has arrived, up to n
            more = await request.content.read(_MAX_MANIFEST + 1 - len(raw))
            if not more:
                break
            raw += more
        if len(raw) > _MAX_MANIFEST:
            return error_body("SIZE_INVALID", "manifest too large", 413)
        try:
            doc = json.loads(raw)
        except ValueError:
            return error_body("MANIFEST_INVALID", "manifest invalid", 400)
        digest = _sha256(raw)
        if reference.startswith("sha256:") and reference != digest:
            return error_body("DIGEST_INVALID", "provided digest did not match", 400)
        repo = self._repos.setdefault(name, _Repo())
        blobs, children = _referenced(doc)
        for wanted, held in ((blobs, repo.blobs), (children, repo.manifests)):
            missing = [d for d in wanted if d not in held]
            if missing:
                return error_body(
                    "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", 400, detail=missing[0]
                )
        media_type = request.headers.get("Content-Type") or str(doc.get("mediaType") or "")
        repo.manifests[reference] = repo.manifests[digest] = (media_type, raw, digest)
        headers = {
            "Location": self._location(f"/v2/{name}/manifests/{digest}"),
            "Docker-Content-Digest": digest,
        }
        subject = doc.get("subject") if isinstance(doc, dict) else None
        if self.referrers_api and isinstance(subject, dict):
            headers["OCI-Subject"] = str(subject.get("digest"))
        return web.Response(status=201, headers=headers)

    async def _referrers(self, request: web.Request) -> web.StreamResponse:
        if not self.referrers_api:
            return web.Response(status=404, text="404 page not found")
        name, subject = request.match_info["name"], request.match_info["digest"]
        wanted = request.query.get("artifactType")
        repo = self._repos.get(name, _Repo())
        found = []
        for media_type, raw, digest in {v[2]: v for v in repo.manifests.values()}.values():
            doc = json.loads(raw)
            if not isinstance(doc.get("subject"), dict) or doc["subject"].get("digest") != subject:
                continue
            kind = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
            if wanted is not None and kind != wanted:
                continue
            entry = {"mediaType": media_type, "digest": digest, "size": len(raw)}
            entry.update({"artifactType": kind} if kind else {})
            entry.update({"annotations": doc["annotations"]} if doc.get("annotations") else {})
            found.append(entry)
        found.sort(key=lambda e: str(e["digest"]))
        headers = {"Content-Type": _OCI_INDEX}
        if wanted is not None:
            headers["OCI-Filters-Applied"] = "artifactType"
        start = int(request.query.get("start", "0") or 0)
        if self.referrers_page is not None and len(found) > start + self.referrers_page:
            found = found[start : start + self.referrers_page]
            more = {"start": str(start + self.referrers_page)}
            more.update({"artifactType": wanted} if wanted is not None else {})
            headers["Link"] = f'</v2/{name}/referrers/{subject}?{urlencode(more)}>; rel="next"'
        else:
            found = found[start:]
        doc = {"schemaVersion": 2, "mediaType": _OCI_INDEX, "manifests": found}
        return web.Response(body=json.dumps(doc).encode(), headers=headers)

    async def _delete_manifest(self, request: web.Request) -> web.StreamResponse:
        name, reference = request.match_info["name"], request.match_info["reference"]
        by_digest = reference.startswith("sha256:")
        if self.deletes == "none":
            return error_body("UNSUPPORTED", "The operation is unsupported.", 405)
        if self.deletes == "digest" and not by_digest:
            return error_body(
                "DIGEST_INVALID", "provided digest did not match uploaded content", 400
            )
        repo = self._repos.get(name)
        found = repo.manifests.get(reference) if repo is not None else None
        if repo is None or found is None:
            return error_body("MANIFEST_UNKNOWN", "manifest unknown", 404)
        if by_digest:
            for ref in [r for r, held in repo.manifests.items() if held[2] == reference]:
                del repo.manifests[ref]
        else:
            del repo.manifests[reference]
        return web.Response(status=202)

    async def _catalog(self, request: web.Request) -> web.StreamResponse:
        """Every repository, sorted, on one page (``GET /v2/_catalog``)."""
        return web.json_response({"repositories": sorted(self._repos)})

    async def _tags(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in self._repos:
            return error_body("NAME_UNKNOWN", "repository name not known to registry", 404)
        tags = self.tags(name)
        after = request.query.get("last")
        token = request.query.get("next")
        if token is not None:  # the opaque token of our own Link
            try:
                after = base64.b64decode(token, validate=True)[2:].decode()[len("after:") :]
            except (binascii.Error, UnicodeDecodeError):
                return error_body("PAGINATION_NUMBER_INVALID", "invalid pagination token", 400)
        if after is not None:
            tags = [t for t in tags if t > after]
        n = request.query.get("n")
        size = int(n) if n and n.isdigit() else self.tags_page
        headers = {}
        if size is not None and len(tags) > size:
            tags = tags[:size]
            token = base64.b64encode(b"\xfb\xff" + f"after:{tags[-1]}".encode()).decode()
            page = f"n={size}&next={quote(token, safe='')}"
            headers["Link"] = f'</v2/{name}/tags/list?{page}>; rel="next"'
        return web.json_response({"name": name, "tags": tags}, headers=headers)

    def _location(self, path: str) -> str:
        return path if self.upload_location == "relative" else self.url + path

    def _session_answer(self, session: str, status: int) -> web.Response:
        """A session's state: where it goes on (``Location`` with a fresh ``_state``) and what
        it holds (``Range: 0-N``, distribution's ``0-0`` when empty)."""
        upload = self.uploads[session]
        size = len(upload.data)
        state = quote(_state_token(session, size), safe="")
        headers = {
            "Location": self._location(f"/v2/{upload.name}/blobs/uploads/{session}?_state={state}"),
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": session,
        }
        if self.chunk_min_length is not None:
            headers["OCI-Chunk-Min-Length"] = str(self.chunk_min_length)
        return web.Response(status=status, headers=headers)

    def _stored(self, name: str, digest: str) -> web.Response:
        return web.Response(
            status=201,
            headers={
                "Location": self._location(f"/v2/{name}/blobs/{digest}"),
                "Docker-Content-Digest": digest,
            },
        )

    def _commit(
        self, request: web.Request, name: str, digest: str, data: bytes | bytearray
    ) -> web.Response:
        if _sha256(data) != digest:
            return error_body(
                "DIGEST_INVALID", "provided digest did not match uploaded content", 400
            )
        if not request.get(_STORE_NOTHING, False):
            self._repos.setdefault(name, _Repo()).blobs[digest] = bytes(data)
        return self._stored(name, digest)

    async def _start_upload(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        mount, source = request.query.get("mount"), request.query.get("from")
        if mount and source and self.mounts:
            data = self.blob(source, mount)
            if data is not None:
                self._repos.setdefault(name, _Repo()).blobs[mount] = data
                return self._stored(name, mount)
        session = f"session-{next(self._upload_ids)}"
        upload = self.uploads[session] = _Upload(name)
        digest = request.query.get("digest")
        if digest and not mount:  # a monolithic POST: the whole blob in this request
            await self._receive(request, upload)
            del self.uploads[session]
            return self._commit(request, name, digest, upload.data)
        return self._session_answer(session, 202)

    def _session(self, request: web.Request) -> tuple[str, _Upload] | web.Response:
        """The session a request names, or the error answer: unknown (404), another
        repository's or without its ``_state`` (400)."""
        session = request.match_info["session"]
        upload = self.uploads.get(session)
        if upload is None or upload.name != request.match_info["name"]:
            return error_body("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", 404)
        if _state_session(request.query.get("_state", "")) != session:
            return error_body("BLOB_UPLOAD_INVALID", "blob upload invalid: bad _state", 400)
        return session, upload

    async def _receive(self, request: web.Request, upload: _Upload) -> int:
        """Append the request body to ``upload`` as it arrives; returns how many bytes. With a
        :class:`CutRequestBody` on the request, end the connection after its bytes instead."""
        entry = request.get(_ENTRY)
        cut = request.get(_CUT_AFTER)
        received = 0
        if entry is not None:
            entry.received = 0
        async for data in request.content.iter_any():
            if cut is not None:
                data = data[: cut - received]
            upload.data += data
            received += len(data)
            if entry is not None:
                entry.received = received
            if cut is not None and received >= cut:
                break
        if cut is not None:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        return received

    async def _patch_upload(self, request: web.Request) -> web.StreamResponse:
        found = self._session(request)
        if isinstance(found, web.Response):
            return found
        session, upload = found
        value = request.headers.get("Content-Range")
        if value is not None:
            m = _CONTENT_RANGE.match(value.strip())
            if m is None:
                return error_body("BLOB_UPLOAD_INVALID", f"bad Content-Range {value!r}", 400)
            start, end = int(m["start"]), int(m["end"])
            if start != len(upload.data) or end < start:
                return self._session_answer(session, 416)
            if request.content_length is not None and request.content_length != end - start + 1:
                return error_body("BLOB_UPLOAD_INVALID", "Content-Range and length differ", 400)
        if upload.short_chunk:
            return error_body(
                "BLOB_UPLOAD_INVALID",
                f"a chunk before this one was under OCI-Chunk-Min-Length {self.chunk_min_length}",
                400,
            )
        received = await self._receive(request, upload)
        if self.chunk_min_length is not None and received < self.chunk_min_length:
            upload.short_chunk = True  # only the last chunk may be short
        return self._session_answer(session, 202)

    async def _finish_upload(self, request: web.Request) -> web.StreamResponse:
        found = self._session(request)
        if isinstance(found, web.Response):
            return found
        session, upload = found
        digest = request.query.get("digest")
        if not digest:
            return error_body("DIGEST_INVALID", "digest missing", 400)
        if self.max_put is not None and (request.content_length or 0) > self.max_put:
            return error_body("SIZE_INVALID", "request entity too large", 413)
        await self._receive(request, upload)
        del self.uploads[session]
        return self._commit(request, upload.name, digest, upload.data)

    async def _upload_status(self, request: web.Request) -> web.StreamResponse:
        found = self._session(request)
        if isinstance(found, web.Response):
            return found
        return self._session_answer(found[0], 204)

    async def _cancel_upload(self, request: web.Request) -> web.StreamResponse:
        found = self._session(request)
        if isinstance(found, web.Response):
            return found
        del self.uploads[found[0]]
        return web.Response(status=204)


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
    root = str(Path(__file__).resolve().parents[2])
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
    run = CompletedRun(proc.returncode, out.decode(), err.decode())
    check_run(argv, run.stdout)  # --format json: each line as the README says
    return run
