"""Client as a user of many requests sees it: connections kept alive and reused (and when
not), request bodies, answers without bodies, name resolution, Happy Eyeballs. Each test talks to
a raw loopback server that counts the connections it accepts."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from puller.http.client import Client
from puller.http.errors import BadRequest, BodyTimeout, CannotResolve
from tests.support.rawhttp import (
    HANG,
    Answer,
    RawServer,
    Sink,
    always,
    body_bytes,
    http,
    trusting,
    within,
)


async def test_sequential_requests_share_one_connection() -> None:
    async with RawServer(answers=always(http(body=b"hello"))) as server:
        client = Client(timeout=5)
        for _ in range(5):
            assert await get_all(client, server.url()) == (200, b"hello")
        await client.close()
    assert server.connections == 1
    assert len(server.requests) == 5
    assert b"connection: close" not in server.requests[0][0].lower()


async def get_all(client: Client, url: str, method: str = "GET") -> tuple[int, bytes]:
    resp = await within(client.request(method, url, {}))
    try:
        return resp.status, await within(resp.read(1 << 20))
    finally:
        resp.release()


# -- keep-alive ----------------------------------------------------------------------------------


async def test_blob_poured_to_its_end_leaves_the_connection_for_the_next() -> None:
    body = body_bytes(3 << 20)
    async with RawServer(answers=always(http(body=body))) as server:
        client = Client(timeout=5)
        for _ in range(3):
            resp = await within(client.request("GET", server.url(), {}))
            sink = Sink()
            await within(resp.pour(sink.write, sink.progress))
            resp.release()
            assert bytes(sink.data) == body
        await client.close()
    assert server.connections == 1


async def test_concurrent_requests_open_one_connection_each_then_reuse_them() -> None:
    gate = asyncio.Event()

    async def slow(head: bytes, body: bytes) -> Answer:
        await gate.wait()
        return http(body=b"x")

    async with RawServer(answers=slow) as server:
        client = Client(timeout=5)
        first = [asyncio.ensure_future(get_all(client, server.url())) for _ in range(3)]
        await asyncio.sleep(0.1)
        gate.set()
        await within(asyncio.gather(*first))
        await within(asyncio.gather(*(get_all(client, server.url()) for _ in range(3))))
        await client.close()
    assert server.connections == 3


@pytest.mark.parametrize(
    "answer",
    [
        http(body=b"bye", headers=["Connection: close"]),
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye",
        (b"HTTP/1.1 200 OK\r\n\r\nbye", "close"),  # ends with the connection
    ],
    ids=["connection-close", "http-1.0", "until-close"],
)
async def test_an_answer_that_ends_the_connection_is_not_reused(
    answer: bytes | tuple[bytes, str],
) -> None:
    async with RawServer(answers=always(answer)) as server:
        client = Client(timeout=5)
        for _ in range(2):
            resp = await within(client.request("GET", server.url(), {}))
            assert await within(resp.read(100)) == b"bye"
            resp.release()
        await client.close()
    assert server.connections == 2


async def test_a_body_left_unread_closes_the_connection() -> None:
    body = body_bytes(256 * 1024)  # more than comes in the read that ends the head
    async with RawServer(answers=always(http(body=body))) as server:
        client = Client(timeout=5)
        resp = await within(client.request("GET", server.url(), {}))
        resp.release()  # body never read
        assert await get_all(client, server.url()) == (200, body)
        resp = await within(client.request("GET", server.url(), {}))
        assert await within(resp.read(4)) == body[:4]  # stopped at a limit: not at the end
        resp.release()
        assert await get_all(client, server.url()) == (200, body)
        await client.close()
    assert server.connections == 3


async def test_an_unread_body_that_came_with_its_head_leaves_the_connection_reusable() -> None:
    """A 401's few bytes come in the same read as its head: releasing it unread costs nothing,
    and the retried request (with a token) goes on the same connection."""

    async def handler(head: bytes, body: bytes) -> Answer:
        if len(server.requests) == 1:
            return http(401, body=b'{"errors":[]}', headers=["WWW-Authenticate: Basic"])
        return http(body=b"ok")

    async with RawServer(answers=handler) as server:
        client = Client(timeout=5)
        resp = await within(client.request("GET", server.url(), {}))
        assert resp.status == 401
        await asyncio.sleep(0.05)  # the body is in
        resp.release()
        assert await get_all(client, server.url()) == (200, b"ok")
        await client.close()
    assert server.connections == 1


async def test_bytes_past_the_body_make_the_connection_unusable() -> None:
    """A server that sends more than it announced is out of step: the next answer on that
    connection could be anything, so the connection is dropped."""
    async with RawServer(answers=always(http(body=b"abc") + b"GARBAGE")) as server:
        client = Client(timeout=5)
        for _ in range(2):
            assert await get_all(client, server.url()) == (200, b"abc")
        await client.close()
    assert server.connections == 2


async def test_an_idle_connection_closed_by_the_server_is_not_used() -> None:
    async with RawServer(answers=always(http(body=b"ok"))) as server:
        client = Client(timeout=5)
        assert await get_all(client, server.url()) == (200, b"ok")
        server.close_idle()
        await asyncio.sleep(0.1)  # the close reaches the client, which reads while idle
        assert await get_all(client, server.url()) == (200, b"ok")
        await client.close()
    assert server.connections == 2


async def test_a_stale_connection_is_retried_once_for_get_and_head() -> None:
    """The server closes the kept connection just as the next request goes out (it answers
    the second request on a connection with nothing): the client asks once more, on a new one."""

    async def handler(head: bytes, body: bytes) -> Answer:
        if len(server.requests) == 2:
            return None
        return http(body=b"ok") if not head.startswith(b"HEAD") else http(headers=["X: y"])

    for method in ("GET", "HEAD"):
        async with RawServer(answers=handler) as server:
            client = Client(timeout=5)
            assert (await get_all(client, server.url(), method))[0] == 200
            assert (await get_all(client, server.url(), method))[0] == 200
            await client.close()
        assert server.connections == 2
        assert len(server.requests) == 3


async def test_a_request_with_a_body_is_never_sent_twice_by_the_pool() -> None:
    async def handler(head: bytes, body: bytes) -> Answer:
        return None if len(server.requests) == 2 else http(201, body=b"")

    async with RawServer(answers=handler) as server:
        client = Client(timeout=5)
        resp = await within(client.request("PUT", server.url(), {}, body=b"first"))
        resp.release()
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await within(client.request("PUT", server.url(), {}, body=b"second"))
        await client.close()
    assert [body for _, body in server.requests] == [b"first", b"second"]


async def test_idle_connections_are_closed_after_a_while() -> None:
    async with RawServer(answers=always(http(body=b"ok"))) as server:
        client = Client(timeout=5, idle_seconds=0.1)
        assert await get_all(client, server.url()) == (200, b"ok")
        await asyncio.sleep(0.3)
        assert await get_all(client, server.url()) == (200, b"ok")
        await client.close()
    assert server.connections == 2


async def test_idle_connections_per_origin_are_bounded() -> None:
    gate = asyncio.Event()

    async def slow(head: bytes, body: bytes) -> Answer:
        await gate.wait()
        return http(body=b"x")

    async with RawServer(answers=slow) as server:
        client = Client(timeout=5, max_idle_per_origin=2)
        first = [asyncio.ensure_future(get_all(client, server.url())) for _ in range(4)]
        await asyncio.sleep(0.1)
        gate.set()
        await within(asyncio.gather(*first))
        await within(asyncio.gather(*(get_all(client, server.url()) for _ in range(4))))
        await client.close()
    assert server.connections == 6  # 4, then 2 reused and 2 new


# -- answers without a body ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        ("HEAD", http(headers=["Content-Length: 100"])),
        ("GET", http(304, headers=["Content-Length: 100"])),
        ("GET", http(204, headers=["Content-Length: 100"])),
    ],
    ids=["head", "304", "204"],
)
async def test_answers_without_a_body_do_not_wait_for_one(method: str, answer: bytes) -> None:
    """A 304 with Content-Length: 100 used to wait out the timeout for 100 bytes that never
    come; it has no body (RFC 9110 6.4.1), and its connection carries the next request."""
    async with RawServer(answers=always(answer)) as server:
        client = Client(timeout=30)
        for _ in range(2):
            resp = await within(client.request(method, server.url(), {}), 2)
            assert resp.content_length is None
            assert await within(resp.read(1000), 2) == b""
            resp.release()
        await client.close()
    assert server.connections == 1


# -- request bodies ------------------------------------------------------------------------------


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]
        await asyncio.sleep(0)


async def test_a_streamed_body_arrives_whole_with_its_length() -> None:
    data = body_bytes(5 << 20)
    async with RawServer(answers=always(http(201, headers=["Location: /next?x=1"], body=b""))) as s:
        client = Client(timeout=5)
        resp = await within(
            client.request(
                "PUT", s.url("/up"), {}, body=chunks_of(data, 64 * 1024), length=len(data)
            )
        )
        assert resp.status == 201
        assert resp.headers.get("Location") == "/next?x=1"
        resp.release()
        await client.close()
    ((head, body),) = s.requests
    assert head.startswith(b"PUT /up HTTP/1.1\r\n")
    assert f"Content-Length: {len(data)}".encode() in head
    assert body == data


async def test_a_streamed_body_longer_than_its_length_is_refused() -> None:
    async with RawServer(answers=always(http(201, body=b""))) as server:
        client = Client(timeout=5)
        with pytest.raises(BadRequest):
            await within(
                client.request("PUT", server.url(), {}, body=chunks_of(b"x" * 100, 10), length=50)
            )
        await client.close()


async def test_a_streamed_body_is_not_sent_again_on_a_redirect() -> None:
    async with RawServer(answers=always(http(307, headers=["Location: /b"], body=b""))) as server:
        client = Client(timeout=5)
        resp = await within(
            client.request("PUT", server.url("/a"), {}, body=chunks_of(b"data", 2), length=4)
        )
        assert resp.status == 307  # for the caller to decide: the body is gone
        resp.release()
        await client.close()
    assert len(server.requests) == 1


async def test_an_early_answer_ends_the_upload() -> None:
    """A server that refuses a body (413, or 401) as soon as it sees the head: the client stops
    sending, returns that answer, and does not reuse the connection."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(http(413, body=b"too large", headers=["Connection: close"]))
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(100_000):
            yield b"x" * 65536
            await asyncio.sleep(0)

    client = Client(timeout=5)
    try:
        resp = await within(
            client.request("PUT", f"http://127.0.0.1:{port}/", {}, body=endless(), length=1 << 40)
        )
        assert resp.status == 413
        resp.release()
    finally:
        await client.close()
        server.close()


# -- names and addresses -------------------------------------------------------------------------


def failing_lookups(monkeypatch: pytest.MonkeyPatch, errors: list[int]) -> list[str]:
    """Make the loop's name lookups fail with ``errors`` in turn (then succeed)."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    calls: list[str] = []

    async def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(str(host))
        if errors:
            code = errors.pop(0)
            raise socket.gaierror(code, "lookup failed")
        return await real("127.0.0.1", *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return calls


async def test_a_name_that_does_not_exist_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = failing_lookups(monkeypatch, [socket.EAI_NONAME])
    client = Client(timeout=5)
    with pytest.raises(CannotResolve, match=r"cannot resolve no\.such\.example$"):
        await within(client.request("GET", "http://no.such.example:5000/v2/", {}))
    assert calls == ["no.such.example"]


async def test_a_temporary_resolver_failure_is_asked_once_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with RawServer(answers=always(http(body=b"ok"))) as server:
        calls = failing_lookups(monkeypatch, [socket.EAI_AGAIN])
        client = Client(timeout=5)
        url = f"http://registry.example:{server.port}/"
        assert await get_all(client, url) == (200, b"ok")
        assert calls == ["registry.example", "registry.example"]
        calls = failing_lookups(monkeypatch, [socket.EAI_AGAIN, socket.EAI_AGAIN])
        with pytest.raises(CannotResolve, match="temporary failure"):
            await within(client.request("GET", f"http://other.example:{server.port}/", {}))
        assert calls == ["other.example", "other.example"]
        await client.close()


async def test_happy_eyeballs_a_blackholed_first_address_costs_a_fraction_of_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A host whose first address (say IPv6 over a broken route) never answers the SYN: the
    second is tried after ``HAPPY_EYEBALLS_DELAY``, not after the whole connect timeout."""
    loop = asyncio.get_running_loop()
    real_connect = loop.create_connection
    attempts: list[str] = []

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::1", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    async def create_connection(factory: Any, host: Any = None, *args: Any, **kw: Any) -> Any:
        attempts.append(str(host))
        if host == "2001:db8::1":
            await asyncio.Event().wait()  # a SYN nobody answers
        return await real_connect(factory, host, *args, **kw)

    async with RawServer(answers=always(http(body=b"ok"))) as server:
        monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(loop, "create_connection", create_connection)
        client = Client(timeout=60)
        url = f"http://dual.example:{server.port}/"
        assert await within(get_all(client, url), HANG) == (200, b"ok")
        await client.close()
    assert attempts == ["2001:db8::1", "127.0.0.1"]


async def test_happy_eyeballs_a_refused_first_address_moves_on_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()

    async with RawServer(answers=always(http(body=b"ok"))) as server:
        # Nothing listens on 127.0.0.2 at the server's port: that address refuses at once.

        async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
            ]

        monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
        client = Client(timeout=60)
        assert await get_all(client, f"http://two.example:{server.port}/") == (200, b"ok")
        await client.close()
    assert server.connections == 1


# -- what a review found, as a hostile server would use it ---------------------------------------


async def test_a_redirect_followed_by_a_smuggled_answer_is_not_taken_for_the_next_hop() -> None:
    """The 302's head fills the head buffer exactly and a forged answer follows it in the same
    write: the next hop must get its own answer, not the bytes left behind."""

    async def handler(head: bytes, body: bytes) -> Answer:
        if head.startswith(b"GET /a "):
            redirect = b"HTTP/1.1 302 Found\r\nLocation: /b\r\nContent-Length: 0\r\nX-Pad: "
            redirect += b"p" * (4096 - len(redirect) - 4) + b"\r\n\r\n"
            return redirect + http(body=b"SMUGGLED")
        return http(body=b"real")

    async with RawServer(answers=handler) as server:
        client = Client(timeout=5)
        status, body = await get_all(client, server.url("/a"))
        await client.close()
    assert (status, body) == (200, b"real")
    assert [head.split(b"\r\n")[0] for head, _ in server.requests] == [
        b"GET /a HTTP/1.1",
        b"GET /b HTTP/1.1",
    ]


async def test_a_tls_body_that_ends_with_the_head_buffer_then_one_more_byte_does_not_spin(
    tls_cert: tuple[Path, Path],
) -> None:
    """Head and body fill exactly the 4096 bytes read with the head, then one stray byte: the
    body is read and the call returns (it used to spin the event loop forever)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %05d\r\n\r\n"
        n = 4096 - len(head % 0)
        writer.write((head % n) + b"x" * n + b"!")
        await writer.drain()
        await asyncio.sleep(HANG)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_cert)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    client = Client(timeout=5)
    try:
        resp = await within(
            client.request("GET", f"https://127.0.0.1:{port}/", {}, tls=trusting(tls_cert[0]))
        )
        body = await within(resp.read(1 << 20))
        resp.release()
    finally:
        await client.close()
        server.close()
    assert body == b"x" * len(body) and len(body) > 4000


async def test_a_chain_of_slow_redirects_ends_by_the_requests_deadline() -> None:
    """Each 302 trickles in under two timeouts, so no single head misses its own deadline; the
    request as a whole still ends within four timeouts instead of eleven hops of two."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await reader.readuntil(b"\r\n\r\n")
            n = int(request.split(b" ")[1].strip(b"/") or b"0")
            head = b"HTTP/1.1 302 Found\r\nLocation: /%d\r\nContent-Length: 0\r\n\r\n" % (n + 1)
            for i in range(0, len(head), 10):
                await asyncio.sleep(0.1)
                writer.write(head[i : i + 10])
                await writer.drain()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Client(timeout=0.5)
    try:
        with pytest.raises(BodyTimeout, match="within 2 s"):
            await within(client.request("GET", f"http://127.0.0.1:{port}/0", {}))
    finally:
        await client.close()
        server.close()
