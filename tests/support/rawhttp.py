"""One raw HTTP/1.1 server on loopback for the tests of ``puller.http`` and ``puller.registry``:
it writes exactly the bytes a test chose, when it chose to. ``RawServer`` reads one request head
per connection and hands the writer to a handler; ``KeepAliveServer`` serves many requests per
connection (heads and Content-Length bodies) with the answers a handler returns. Also the pieces
of a response (``http``, ``chunk``), a ``Sink`` for response bodies, and ``within``."""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")
S = TypeVar("S", bound="ThreadedServer")

#: The timeout given to ``get`` where a test does not want one to fire.
RELAXED = 5.0
#: How long a test waits for something that must happen promptly, before it calls it a hang.
HANG = 5.0

#: Writes to the connection of one request, whose head it is given.
Handler = Callable[[asyncio.StreamWriter, bytes], Awaitable[None]]
#: What an ``answers`` handler returns: the bytes to send (then, with "close", close the
#: connection), or None to close the connection without an answer.
Answer = bytes | tuple[bytes, str] | None
AnswerHandler = Callable[[bytes, bytes], Awaitable[Answer]]


# -- the raw server --------------------------------------------------------------------------------


class RawServer:
    """A loopback server that writes what the test chose. With ``handler``, each connection
    carries one request: its head is read and recorded, the handler writes to the connection
    when and what it likes, and the connection closes when it returns. With ``answers``, each
    connection carries any number of requests (a head and a Content-Length body each, recorded
    in ``requests``), each answered with what ``answers`` returns: bytes, ``(bytes, "close")``
    to close after them, or None to close without an answer. ``host`` is "127.0.0.1" or "::1"."""

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        answers: AnswerHandler | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        if (handler is None) == (answers is None):
            raise TypeError("give a handler or answers, not both")
        self.handler = handler
        self.answers = answers
        self.host = host
        self.heads: list[bytes] = []
        self.requests: list[tuple[bytes, bytes]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        port: int = self._port
        return port

    def url(self, path: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def close_idle(self) -> None:
        """Close every connection from the server's side, as a server's idle timeout does."""
        for writer in self.writers:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self.writers.append(writer)
        try:
            if self.handler is not None:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                await self.handler(writer, head)
            else:
                await self._answer_each(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _answer_each(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        assert self.answers is not None
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            self.requests.append((head, body))
            answer = await self.answers(head, body)
            if answer is None:
                return
            writer.write(answer[0] if isinstance(answer, tuple) else answer)
            await writer.drain()
            if isinstance(answer, tuple):
                return


def answering(answer: Callable[[bytes], bytes]) -> Handler:
    """A handler that writes ``answer(head)`` and closes."""

    async def handler(writer: asyncio.StreamWriter, head: bytes) -> None:
        writer.write(answer(head))
        await writer.drain()

    return handler


def reply(*parts: bytes, pause: float = 0.0, then_stall: bool = False) -> Handler:
    """A handler that writes ``parts`` one after the other (``pause`` seconds apart), then closes
    the connection, or keeps it open until the test ends."""

    async def handler(writer: asyncio.StreamWriter, head: bytes) -> None:
        for i, part in enumerate(parts):
            if i and pause:
                await asyncio.sleep(pause)
            writer.write(part)
            await writer.drain()
        if then_stall:
            await asyncio.Event().wait()

    return handler


def routed(routes: dict[str, bytes]) -> Handler:
    """A handler answering by request path; an unknown path gets a 404."""

    async def handler(writer: asyncio.StreamWriter, head: bytes) -> None:
        path = head.split(b" ", 2)[1].decode()
        writer.write(routes.get(path, http(404, body=b"")))
        await writer.drain()

    return handler


def http(
    status: int = 200,
    headers: Sequence[str] = (),
    body: bytes | None = None,
    reason: str = "X",
) -> bytes:
    """A response: status line, ``headers``, and, if ``body`` is given, its Content-Length and
    the body."""
    lines = [f"HTTP/1.1 {status} {reason}", *headers]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked_head(*headers: str) -> bytes:
    return http(200, ["Transfer-Encoding: chunked", *headers])


def chunk(data: bytes, size: str | None = None) -> bytes:
    return (size or f"{len(data):x}").encode() + b"\r\n" + data + b"\r\n"


def request_lines(head: bytes) -> list[str]:
    assert head.endswith(b"\r\n\r\n")
    return head[:-4].decode("latin-1").split("\r\n")


def request_headers(head: bytes) -> dict[str, str]:
    """The request's headers by lower-cased name (each must be there once)."""
    found: dict[str, str] = {}
    for line in request_lines(head)[1:]:
        name, _, value = line.partition(": ")
        assert name.lower() not in found, head
        found[name.lower()] = value
    return found


def body_bytes(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


async def within(awaitable: Awaitable[T], seconds: float = HANG) -> T:
    """``awaitable``, or a test failure (not a hung suite) if it takes longer than ``seconds``."""
    return await asyncio.wait_for(awaitable, seconds)


# -- the writer side -----------------------------------------------------------------------------


class Sink:
    """A ``write`` for ``pour`` that keeps what it is given and checks that calls never overlap
    and run off the loop's thread; ``progress`` records what it is told, and on which thread."""

    def __init__(self, delay: float = 0.0, delays: Iterable[float] = ()) -> None:
        self.data = bytearray()
        self.calls = 0
        self.overlaps = 0
        self.write_threads: set[int] = set()
        self.progress_calls: list[int] = []
        self.progress_threads: set[int] = set()
        self._lock = threading.Lock()
        self._delay = delay
        self._delays = list(delays)  # per call, before falling back to ``delay``

    def write(self, view: memoryview) -> None:
        if not self._lock.acquire(blocking=False):
            self.overlaps += 1
            raise AssertionError("two write calls at once")
        try:
            self.write_threads.add(threading.get_ident())
            delay = self._delays[self.calls] if self.calls < len(self._delays) else self._delay
            self.calls += 1
            if delay:
                time.sleep(delay)
            self.data += view  # a copy: the buffer is reused once write returns
        finally:
            self._lock.release()

    def progress(self, n: int) -> None:
        self.progress_threads.add(threading.get_ident())
        self.progress_calls.append(n)


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def always(answer: bytes | tuple[bytes, str]) -> AnswerHandler:
    async def handler(head: bytes, body: bytes) -> Answer:
        return answer

    return handler


class ThreadedServer:
    """A blocking loopback server in a thread of its own, so that it sends, reads and closes at
    its own pace whatever the test's event loop is doing. A subclass serves each accepted
    connection in ``serve`` (the socket is closed after it); what it raises is kept in
    ``errors``. ``scheme`` names the URL's; ``rcvbuf`` bounds what the kernel takes in ahead of
    the server."""

    scheme = "http"

    def __init__(self, *, rcvbuf: int | None = None) -> None:
        self.errors: list[BaseException] = []
        self.closed_at: list[float] = []  # when each connection was closed, by time.monotonic()
        self._listener = socket.create_server(("127.0.0.1", 0))
        if rcvbuf is not None:  # before listen's handshakes: accepted sockets inherit it
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._listener.settimeout(0.05)  # to see stop
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self: S) -> S:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(HANG)
        self._listener.close()

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://127.0.0.1:{self._listener.getsockname()[1]}{path}"

    def serve(self, raw: socket.socket) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            with raw:
                raw.settimeout(HANG * 4)
                try:
                    self.serve(raw)
                except (OSError, ssl.SSLError) as e:
                    self.errors.append(e)
            self.closed_at.append(time.monotonic())
