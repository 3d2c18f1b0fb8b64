"""``puller.http`` against a crafted raw HTTP server on loopback: the server reads each request
head (and records it), then writes exactly the bytes a test chose, when it chose to."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Awaitable
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from puller.http.client import MAX_REDIRECTS, Client, get
from puller.http.connection import Response
from puller.http.errors import (
    BadRequest,
    BadURL,
    BodyTimeout,
    TooManyRedirects,
    Unsupported,
    WireError,
)
from puller.http.message import MAX_HEAD
from tests.support.rawhttp import (
    HANG,
    RELAXED,
    Handler,
    RawServer,
    Sink,
    ThreadedServer,
    body_bytes,
    chunk,
    chunked_head,
    http,
    reply,
    request_headers,
    request_lines,
    routed,
    trusting,
    within,
)


async def fetch(url: str, *, timeout: float = RELAXED, **kwargs: int) -> Response:
    return await within(get(url, {}, tls=None, timeout=timeout, **kwargs))


async def pour_into(resp: Response, sink: Sink, chunk_size: int = 1 << 20) -> None:
    try:
        await within(resp.pour(sink.write, sink.progress, chunk_size))
    finally:
        resp.release()


# -- Content-Length bodies -----------------------------------------------------------------------


async def test_content_length_body_intact_in_order_across_many_buffers() -> None:
    body = body_bytes(1 << 20)
    async with RawServer(reply(http(body=body))) as server:
        resp = await fetch(server.url("/blob"))
        assert resp.status == 200
        assert resp.content_length == len(body)
        assert not resp.chunked
        sink = Sink()
        await pour_into(resp, sink, chunk_size=1024)
    assert sink.overlaps == 0
    assert bytes(sink.data) == body
    assert sink.calls >= len(body) // 4096  # many buffers, not one
    assert sum(sink.progress_calls) == len(body)
    assert len(sink.progress_calls) == sink.calls
    assert threading.get_ident() not in sink.write_threads  # writes run in a worker thread
    assert sink.progress_threads == {threading.get_ident()}  # progress runs on the loop


async def test_body_in_tiny_pieces_with_pauses() -> None:
    body = bytes(range(256)) * 2
    pieces = [body[i : i + 5] for i in range(0, len(body), 5)]
    head = http(headers=[f"Content-Length: {len(body)}"])
    # The head itself also comes in pieces, split inside its final CRLF CRLF.
    async with RawServer(reply(head[:-3], head[-3:-1], head[-1:], *pieces, pause=0.002)) as server:
        resp = await fetch(server.url())
        sink = Sink()
        await pour_into(resp, sink, chunk_size=64)
    assert bytes(sink.data) == body
    assert sum(sink.progress_calls) == len(body)
    assert sink.overlaps == 0


async def test_head_split_byte_by_byte() -> None:
    full = http(headers=["X-Split: yes"], body=b"payload")
    async with RawServer(reply(*[full[i : i + 1] for i in range(len(full))], pause=0.001)) as s:
        resp = await fetch(s.url())
        assert resp.headers.get("x-split") == "yes"
        sink = Sink()
        await pour_into(resp, sink)
    assert bytes(sink.data) == b"payload"


@pytest.mark.parametrize("same_write", [True, False], ids=["with-head", "later"])
async def test_bytes_after_content_length_are_ignored(same_write: bool) -> None:
    body = b"0123456789"
    junk = b"JUNK" * 1000
    if same_write:
        parts = [http(body=body) + junk]
    else:
        parts = [http(headers=[f"Content-Length: {len(body)}"]), body + junk]
    # The connection stays open: pour must end on the length, not on the close.
    async with RawServer(reply(*parts, pause=0.02, then_stall=True)) as server:
        resp = await fetch(server.url())
        sink = Sink()
        await pour_into(resp, sink, chunk_size=64 * 1024)
    assert bytes(sink.data) == body
    assert sum(sink.progress_calls) == len(body)


async def test_empty_content_length_body() -> None:
    async with RawServer(reply(http(body=b""), then_stall=True)) as server:
        resp = await fetch(server.url())
        sink = Sink()
        await pour_into(resp, sink)
    assert sink.data == b""
    assert sum(sink.progress_calls) == 0


async def test_short_body_raises_after_writing_what_came() -> None:
    body = body_bytes(10_000)
    sent = body[:3000]
    head = http(headers=[f"Content-Length: {len(body)}"])
    async with RawServer(reply(head + sent[:100], sent[100:], pause=0.02)) as server:
        resp = await fetch(server.url())
        sink = Sink()
        with pytest.raises(ConnectionResetError):
            await pour_into(resp, sink, chunk_size=1024)
    assert bytes(sink.data) == sent
    assert sum(sink.progress_calls) == len(sent)


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "", "5, 6", "1" * 21, "9" * 5000])
async def test_invalid_content_length_raises_wire_error_with_the_head(value: str) -> None:
    async with RawServer(reply(http(headers=[f"Content-Length: {value}"]) + b"hello")) as server:
        with pytest.raises(WireError):
            await fetch(server.url())


async def test_equal_content_lengths_in_a_list_are_one_length() -> None:
    async with RawServer(reply(http(headers=["Content-Length: 5, 5"]) + b"hello")) as server:
        resp = await fetch(server.url())
        assert resp.content_length == 5
        assert await within(resp.read(100)) == b"hello"
        resp.release()


async def test_content_length_superscript_digit_raises_wire_error() -> None:
    async with RawServer(reply(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nhi")) as server:
        with pytest.raises(WireError):
            await fetch(server.url())


# -- chunked bodies ------------------------------------------------------------------------------


async def test_chunked_body_with_extensions_trailer_split_framing() -> None:
    chunks = [b"hello", b" ", b"world" * 10, bytes(range(26)), b"z" * 300]
    sizes = ["5;foo=bar", "1 ; a=b;c", "32", "1A", "12C"]  # hex upper-case: 0x1A, 0x12C
    assert [int(s.split(";")[0], 16) for s in sizes] == [len(c) for c in chunks]
    parts: list[bytes] = [chunked_head()]
    for data, size in zip(chunks, sizes, strict=True):
        # The framing goes one byte per TCP write, so every CRLF is split; the data in one.
        parts += [bytes([b]) for b in f"{size}\r\n".encode()]
        parts.append(data)
        parts += [b"\r", b"\n"]
    parts += [bytes([b]) for b in b"0\r\nX-Trailer: 1\r\n\r\n"]
    # The connection stays open after the trailer: the last chunk ends the body.
    async with RawServer(reply(*parts, pause=0.001, then_stall=True)) as server:
        resp = await fetch(server.url())
        assert resp.chunked
        assert resp.content_length is None
        sink = Sink()
        await pour_into(resp, sink, chunk_size=64)
    assert bytes(sink.data) == b"".join(chunks)
    assert sum(sink.progress_calls) == len(sink.data)
    assert sink.overlaps == 0


async def test_chunked_body_in_one_write() -> None:
    chunks = [body_bytes(70_000, seed=s) for s in range(3)]
    raw = chunked_head() + b"".join(chunk(c) for c in chunks) + b"0\r\n\r\n"
    async with RawServer(reply(raw, then_stall=True)) as server:
        resp = await fetch(server.url())
        sink = Sink()
        await pour_into(resp, sink, chunk_size=4096)
    assert bytes(sink.data) == b"".join(chunks)
    assert sum(sink.progress_calls) == len(sink.data)
    assert sink.overlaps == 0


async def test_transfer_encoding_case() -> None:
    async with RawServer(reply(http(headers=["Transfer-Encoding: Chunked"]) + b"0\r\n\r\n")) as s:
        resp = await fetch(s.url())
        assert resp.chunked
        resp.release()


@pytest.mark.parametrize("coding", ["gzip, chunked", "identity"])
async def test_unsupported_transfer_encoding_raises_wire_error(coding: str) -> None:
    """RFC 9112 dropped "identity"; h11 refuses it, and so do we."""
    async with RawServer(reply(http(headers=[f"Transfer-Encoding: {coding}"]))) as server:
        with pytest.raises(Unsupported):
            await fetch(server.url())


@pytest.mark.parametrize("size", [b"zz", b"+5", b"0x5", b"-1", b"", b"5 5", b"1" * 16])
async def test_malformed_chunk_size_raises_wire_error(size: bytes) -> None:
    rest = size + b"\r\nhello\r\n0\r\n\r\n"
    async with RawServer(reply(chunked_head() + chunk(b"first"), rest, pause=0.05)) as server:
        resp = await fetch(server.url())
        sink = Sink()
        with pytest.raises(WireError):
            await pour_into(resp, sink)
    assert bytes(sink.data) == b"first"  # what came before the bad line was written


@pytest.mark.parametrize("size", [b"zz", b"+5", b"0x5"])
async def test_malformed_chunk_size_in_one_read_raises_wire_error(size: bytes) -> None:
    raw = chunked_head() + chunk(b"first") + size + b"\r\nhello\r\n0\r\n\r\n"
    async with RawServer(reply(raw, then_stall=True)) as server:
        resp = await fetch(server.url())
        sink = Sink()
        with pytest.raises(WireError):
            await pour_into(resp, sink)
    # The good chunk decoded in the same read as the bad line may be dropped, never mangled.
    assert b"first".startswith(bytes(sink.data))


async def test_chunk_longer_than_its_size_raises_wire_error() -> None:
    raw = chunked_head() + b"3\r\nabcdef\r\n0\r\n\r\n"
    async with RawServer(reply(raw, then_stall=True)) as server:
        resp = await fetch(server.url())
        with pytest.raises(WireError):
            await pour_into(resp, Sink())


async def test_chunked_connection_closed_before_last_chunk() -> None:
    raw = chunked_head() + chunk(b"hello") + b"7\r\nab"
    async with RawServer(reply(raw)) as server:
        resp = await fetch(server.url())
        sink = Sink()
        with pytest.raises(ConnectionError):
            await pour_into(resp, sink)
    assert bytes(sink.data) == b"helloab"


async def test_chunked_connection_closed_before_trailer_end() -> None:
    raw = chunked_head() + chunk(b"hello") + b"0\r\nX-Trailer: 1\r\n"
    async with RawServer(reply(raw)) as server:
        resp = await fetch(server.url())
        sink = Sink()
        with pytest.raises(OSError):
            await pour_into(resp, sink)
    assert bytes(sink.data) == b"hello"


# -- bodies ending with the connection -----------------------------------------------------------


async def test_body_without_length_ends_at_close() -> None:
    body = body_bytes(200_000)
    async with RawServer(reply(http(), body[:50_000], body[50_000:], pause=0.01)) as server:
        resp = await fetch(server.url())
        assert resp.content_length is None
        assert not resp.chunked
        sink = Sink()
        await pour_into(resp, sink, chunk_size=4096)
    assert bytes(sink.data) == body
    assert sum(sink.progress_calls) == len(body)
    assert sink.overlaps == 0


async def test_empty_body_without_length() -> None:
    async with RawServer(reply(http())) as server:
        resp = await fetch(server.url())
        sink = Sink()
        await pour_into(resp, sink)
    assert sink.data == b""


# -- response heads ------------------------------------------------------------------------------


async def test_headers_case_insensitive_first_wins() -> None:
    raw = http(
        404,
        ["X-Thing: first", "x-thing: second", "X-THING: third", "Content-Type:  a/b  ", "Empty:"],
        body=b"",
        reason="Not Found",
    )
    async with RawServer(reply(raw)) as server:
        resp = await fetch(server.url())
        resp.release()
    assert resp.status == 404
    assert resp.headers.get("x-thing") == "first"
    assert resp.headers.get("X-Thing") == "first"
    assert resp.headers.get("content-type") == "a/b"
    assert resp.headers.get("EMPTY") == ""
    assert resp.headers.get("missing") is None
    assert resp.headers.get("missing", "fallback") == "fallback"
    assert resp.url == server.url()


async def test_status_line_without_reason_and_http_1_0() -> None:
    async with RawServer(reply(b"HTTP/1.0 204\r\n\r\n")) as server:
        resp = await fetch(server.url())
        resp.release()
    assert resp.status == 204


@pytest.mark.parametrize(
    "status_line",
    [b"HTTP/2 200 OK", b"ICY 200 OK", b"HTTP/1.1 20 OK", b"HTTP/1.1 abc", b"garbage", b""],
)
async def test_malformed_status_line_raises_wire_error(status_line: bytes) -> None:
    raw = status_line + b"\r\nContent-Length: 0\r\n\r\n"
    async with RawServer(reply(raw, then_stall=True)) as server:
        with pytest.raises(WireError):
            await fetch(server.url())


@pytest.mark.parametrize("line", [b"NoColonHere", b" Folded: x", b"Name : v", b": no-name"])
async def test_malformed_header_line_raises_wire_error(line: bytes) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + line + b"\r\n\r\n"
    async with RawServer(reply(raw, then_stall=True)) as server:
        with pytest.raises(WireError):
            await fetch(server.url())


def padding_headers(total: int) -> bytes:
    """Header lines adding up to at least ``total`` bytes."""
    line = b"X-Pad: " + b"a" * 120 + b"\r\n"
    return line * (total // len(line) + 1)


async def test_unterminated_head_over_max_head_raises_without_hanging() -> None:
    raw = b"HTTP/1.1 200 OK\r\n" + padding_headers(MAX_HEAD + 1000)
    async with RawServer(reply(raw, then_stall=True)) as server:
        started = time.monotonic()
        with pytest.raises(WireError):
            await fetch(server.url())
    assert time.monotonic() - started < 2


async def test_endless_head_raises_without_hanging() -> None:
    async def endless(writer: asyncio.StreamWriter, head: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        while True:
            writer.write(padding_headers(4000))
            await writer.drain()
            await asyncio.sleep(0.001)

    async with RawServer(endless) as server:
        with pytest.raises(WireError):
            await fetch(server.url())


async def test_complete_head_over_max_head_raises_wire_error() -> None:
    raw = http(headers=["X-Pad: " + "a" * 120] * (MAX_HEAD // 128 + 8), body=b"")
    assert len(raw) > MAX_HEAD + 500
    assert raw.index(b"\r\n\r\n") == len(raw) - 4
    # MAX_HEAD bytes, then the rest of the head (with its blank line) in one small write.
    parts = raw[:MAX_HEAD], raw[MAX_HEAD:]
    async with RawServer(reply(*parts, pause=0.02, then_stall=True)) as server:
        with pytest.raises(WireError):
            resp = await fetch(server.url())
            resp.release()


# -- redirects -----------------------------------------------------------------------------------

SECRETS = {"Authorization": "Bearer secret", "Range": "bytes=5-"}


async def test_redirect_same_origin_keeps_authorization_and_range() -> None:
    routes = {"/start": http(307, ["Location: /final"], body=b""), "/final": http(body=b"ok")}
    async with RawServer(routed(routes)) as server:
        resp = await within(get(server.url("/start"), SECRETS, tls=None, timeout=RELAXED))
        sink = Sink()
        await pour_into(resp, sink)
    assert resp.status == 200
    assert resp.url == server.url("/final")
    assert bytes(sink.data) == b"ok"
    assert len(server.heads) == 2
    for head in server.heads:
        headers = request_headers(head)
        assert headers["authorization"] == "Bearer secret"
        assert headers["range"] == "bytes=5-"
    assert request_lines(server.heads[1])[0] == "GET /final HTTP/1.1"


@pytest.mark.parametrize("auth_name", ["Authorization", "authorization"])
async def test_redirect_to_other_port_drops_authorization_keeps_range(auth_name: str) -> None:
    async with RawServer(routed({"/blob": http(body=b"data")})) as other:
        target = other.url("/blob")
        routes = {"/start": http(302, [f"Location: {target}"], body=b"")}
        async with RawServer(routed(routes)) as first:
            headers = {auth_name: "Bearer secret", "Range": "bytes=5-"}
            resp = await within(get(first.url("/start"), headers, tls=None, timeout=RELAXED))
            sink = Sink()
            await pour_into(resp, sink)
    assert bytes(sink.data) == b"data"
    assert resp.url == target
    assert request_headers(first.heads[0])["authorization"] == "Bearer secret"
    (head,) = other.heads
    sent = request_headers(head)
    assert "authorization" not in sent
    assert sent["range"] == "bytes=5-"
    assert sent["host"] == f"127.0.0.1:{other.port}"


async def test_redirect_back_to_first_origin_does_not_restore_authorization() -> None:
    async with RawServer(routed({})) as first, RawServer(routed({})) as b:
        first.handler = routed(
            {"/a": http(302, [f"Location: {b.url('/b')}"], b""), "/c": http(body=b"c")}
        )
        b.handler = routed({"/b": http(302, [f"Location: {first.url('/c')}"], b"")})
        resp = await within(get(first.url("/a"), SECRETS, tls=None, timeout=RELAXED))
        resp.release()
    assert resp.status == 200
    assert "authorization" in request_headers(first.heads[0])
    assert "authorization" not in request_headers(b.heads[0])
    assert "authorization" not in request_headers(first.heads[1])


def endless_redirects() -> Handler:
    async def handler(writer: asyncio.StreamWriter, head: bytes) -> None:
        n = int(head.split(b" ", 2)[1].decode().lstrip("/") or 0)
        writer.write(http(301, [f"Location: /{n + 1}"], body=b"moved"))
        await writer.drain()

    return handler


async def test_more_than_max_redirects_raises() -> None:
    async with RawServer(endless_redirects()) as server:
        with pytest.raises(TooManyRedirects):
            await fetch(server.url("/0"))
    assert server.connections == MAX_REDIRECTS + 1
    assert issubclass(TooManyRedirects, WireError)


async def test_max_redirects_exactly_is_followed() -> None:
    async def handler(writer: asyncio.StreamWriter, head: bytes) -> None:
        n = int(head.split(b" ", 2)[1].decode().lstrip("/"))
        if n < MAX_REDIRECTS:
            writer.write(http(308, [f"Location: /{n + 1}"], body=b""))
        else:
            writer.write(http(body=b"there"))
        await writer.drain()

    async with RawServer(handler) as server:
        resp = await fetch(server.url("/0"))
        sink = Sink()
        await pour_into(resp, sink)
    assert bytes(sink.data) == b"there"
    assert resp.url == server.url(f"/{MAX_REDIRECTS}")


async def test_max_redirects_argument() -> None:
    async with RawServer(endless_redirects()) as server:
        with pytest.raises(TooManyRedirects):
            await fetch(server.url("/0"), max_redirects=2)
    assert server.connections == 3


async def test_redirect_status_without_location_is_returned() -> None:
    async with RawServer(reply(http(302, body=b""))) as server:
        resp = await fetch(server.url())
        resp.release()
    assert resp.status == 302


@pytest.mark.parametrize(
    "location",
    [
        b"/next\nX-Injected: yes",
        b"/next\rX-Injected: yes",
        b"/a b HTTP/1.1\nX-Injected: yes",
        b"/next?q=1 2\n\nX-Injected: yes",
        b"/next\x0bX-Injected:\x0cyes\x85\x00",
        b"  /next\tX-Injected: yes  ",
    ],
)
async def test_redirect_location_cannot_inject_headers(location: bytes) -> None:
    """A Location with control bytes is refused with the head; one with only spaces and tabs is
    followed with them percent-encoded."""
    first = b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\nLocation: " + location + b"\r\n\r\n"
    answers = [first, http(body=b"ok")]

    async def handler(writer: asyncio.StreamWriter, head: bytes) -> None:
        writer.write(answers.pop(0) if answers else http(500, body=b""))
        await writer.drain()

    async with RawServer(handler) as server:
        if any(b < 0x20 and b != 0x09 for b in location):
            with pytest.raises(WireError, match="control byte"):
                await fetch(server.url("/start"))
            assert len(server.heads) == 1
            return
        resp = await fetch(server.url("/start"))
        resp.release()
    assert resp.status == 200
    assert len(server.heads) == 2
    head = server.heads[1]
    # Every CR and LF of the request is part of a CRLF line end; every other byte is printable.
    assert head.count(b"\r") == head.count(b"\n") == head.count(b"\r\n")
    assert all(0x20 <= b < 0x7F for b in head.replace(b"\r\n", b""))
    lines = request_lines(head)
    method, target, version = lines[0].split(" ")
    assert (method, version) == ("GET", "HTTP/1.1")
    assert target.startswith("/")
    assert set(request_headers(head)) == {"host", "connection"}
    assert not any(line.lower().startswith("x-injected") for line in lines)


@pytest.mark.parametrize(
    "location",
    ["ftp://127.0.0.1/x", "file:///etc/passwd", "javascript:alert(1)", "gopher://127.0.0.1:1/"],
)
async def test_redirect_to_non_http_scheme_raises_bad_url(location: str) -> None:
    async with RawServer(reply(http(302, [f"Location: {location}"], body=b""))) as server:
        with pytest.raises(BadURL):
            await fetch(server.url())
    assert server.connections == 1


async def test_redirect_with_bad_port_raises_bad_url() -> None:
    async with RawServer(reply(http(302, ["Location: http://127.0.0.1:99999999/"], b""))) as s:
        with pytest.raises(BadURL):
            await fetch(s.url())


# -- the request ---------------------------------------------------------------------------------


async def test_request_head() -> None:
    async with RawServer(reply(http(body=b""))) as server:
        headers = {"Authorization": "Bearer t", "Accept": "application/json"}
        url = server.url("/v2/lib/x/blobs/sha256:abc?n=1&last=a")
        resp = await within(get(url, headers, tls=None, timeout=RELAXED))
        resp.release()
    (head,) = server.heads
    lines = request_lines(head)
    assert lines[0] == "GET /v2/lib/x/blobs/sha256:abc?n=1&last=a HTTP/1.1"
    assert request_headers(head) == {
        "host": f"127.0.0.1:{server.port}",
        "connection": "close",
        "authorization": "Bearer t",
        "accept": "application/json",
    }


async def test_request_target_is_percent_encoded_and_defaults_to_slash() -> None:
    async with RawServer(reply(http(body=b""))) as server:
        for url in [server.url("/a b/\u00e9"), f"http://127.0.0.1:{server.port}"]:
            resp = await fetch(url)
            resp.release()
    assert request_lines(server.heads[0])[0] == "GET /a%20b/%C3%A9 HTTP/1.1"
    assert request_lines(server.heads[1])[0] == "GET / HTTP/1.1"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Value": "a\r\nEvil: 1"},
        {"X-Value": "a\nb"},
        {"X-Value": "a\rb"},
        {"X-Name\r\nEvil": "1"},
        {"Authorization": "Bearer t\n"},
    ],
)
async def test_header_with_cr_or_lf_raises_before_sending(headers: dict[str, str]) -> None:
    async with RawServer(reply(http(body=b""))) as server:
        with pytest.raises(WireError):
            await within(get(server.url(), headers, tls=None, timeout=RELAXED))
        await asyncio.sleep(0.05)  # time for a connection, had one been made, to be accepted
    assert server.connections == 0
    assert server.heads == []


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "http:///path", "127.0.0.1:80/x", ""])
async def test_bad_url_raises(url: str) -> None:
    with pytest.raises(BadURL):
        await fetch(url)


async def test_release_closes_the_connection() -> None:
    closed = asyncio.Event()

    async def handler(writer: asyncio.StreamWriter, head: bytes) -> None:
        writer.write(http(headers=["Content-Length: 100000"]) + b"x" * 100)
        await writer.drain()
        await asyncio.sleep(0.05)
        try:
            while True:
                writer.write(b"x" * 1000)
                await writer.drain()
                await asyncio.sleep(0.01)
        except ConnectionError:
            closed.set()

    async with RawServer(handler) as server:
        resp = await fetch(server.url())
        resp.release()
        await within(closed.wait(), 2)


async def test_pour_twice_raises() -> None:
    async with RawServer(reply(http(body=b"abc"))) as server:
        resp = await fetch(server.url())
        sink = Sink()
        await pour_into(resp, sink)
        with pytest.raises(RuntimeError):
            await within(resp.pour(sink.write, sink.progress))
    assert bytes(sink.data) == b"abc"


# -- timeouts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["length", "chunked", "until-close"])
async def test_body_stall_raises_body_timeout_after_writing_what_came(framing: str) -> None:
    sent = body_bytes(3000)
    if framing == "length":
        raw = http(headers=["Content-Length: 10000"]) + sent
    elif framing == "chunked":
        raw = chunked_head() + chunk(sent[:2000]) + b"1000\r\n" + sent[2000:]
    else:
        raw = http() + sent
    async with RawServer(reply(raw, then_stall=True)) as server:
        resp = await fetch(server.url(), timeout=0.3)
        sink = Sink()
        started = time.monotonic()
        with pytest.raises(BodyTimeout) as caught:
            await pour_into(resp, sink, chunk_size=1024)
        elapsed = time.monotonic() - started
    assert isinstance(caught.value, asyncio.TimeoutError)
    assert isinstance(caught.value, TimeoutError)
    assert 0.25 <= elapsed < 1.5
    assert bytes(sink.data) == sent


@pytest.mark.parametrize("sent", [b"", b"HTTP/1.1 200 OK\r\nContent-Le"], ids=["none", "part"])
async def test_stall_before_answering_raises_timeout(sent: bytes) -> None:
    async with RawServer(reply(sent, then_stall=True)) as server:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await fetch(server.url(), timeout=0.3)
        elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.5


async def test_slow_but_steady_body_does_not_time_out() -> None:
    """Over the minimum rate: 1 s in all, never 0.3 s without a byte."""
    body = body_bytes(40 * 1024)
    pieces = [body[i : i + 2048] for i in range(0, len(body), 2048)]
    head = http(headers=[f"Content-Length: {len(body)}"])
    async with RawServer(reply(head, *pieces, pause=0.05)) as server:
        resp = await fetch(server.url(), timeout=0.3)
        sink = Sink()
        await pour_into(resp, sink)
    assert bytes(sink.data) == body


async def test_trickling_body_stalls_under_the_minimum_rate() -> None:
    """A byte every 0.05 s keeps a connection from ever being silent for the read timeout, but
    20 bytes a second is no download: it fails after about one timeout, having written what
    came (a resume starts there)."""
    body = body_bytes(2000)
    head = http(headers=[f"Content-Length: {len(body)}"])
    async with RawServer(reply(head, *[bytes([b]) for b in body], pause=0.05)) as server:
        resp = await fetch(server.url(), timeout=0.3)
        sink = Sink()
        with pytest.raises(BodyTimeout, match="stalled"):
            await within(pour_into(resp, sink))
    assert 0 < len(sink.data) < len(body)
    assert bytes(sink.data) == body[: len(sink.data)]


async def test_trickling_head_fails_by_its_deadline() -> None:
    """A byte of the head every 0.05 s: never silent for 0.3 s, but the whole head must come
    within two timeouts."""
    raw = http(body=b"x" * 10, headers=["X-Pad: " + "a" * 200])
    async with RawServer(reply(*[bytes([b]) for b in raw], pause=0.05)) as server:
        with pytest.raises(BodyTimeout, match="within"):
            await within(fetch(server.url(), timeout=0.3))


async def test_trickling_small_body_fails_by_its_deadline() -> None:
    body = b"x" * 200
    raw = http(headers=[f"Content-Length: {len(body)}"])
    async with RawServer(reply(raw, *[bytes([b]) for b in body], pause=0.05)) as server:
        resp = await fetch(server.url(), timeout=0.3)
        with pytest.raises(BodyTimeout, match="within"):
            await within(resp.read(1000))
        resp.release()


async def test_slow_write_mid_body_is_not_a_timeout() -> None:
    """The first write takes longer than the timeout while the other buffers fill up and reading
    is paused: that wait for the disk is not counted."""
    body = body_bytes(16 * 1024)
    async with RawServer(reply(http(body=body), then_stall=True)) as server:
        resp = await fetch(server.url(), timeout=0.3)
        sink = Sink(delays=[0.5])
        await pour_into(resp, sink, chunk_size=1024)
    assert bytes(sink.data) == body
    assert sink.overlaps == 0


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_slow_writer_is_not_a_timeout(framing: str) -> None:
    body = body_bytes(3 * 1024)  # three writes of 0.2 s after the last byte has come
    if framing == "length":
        head, raw = http(headers=[f"Content-Length: {len(body)}"]), body
    else:
        head = chunked_head()
        raw = b"".join(chunk(body[i : i + 1024]) for i in range(0, 3072, 1024)) + b"0\r\n\r\n"
    # The body comes after the head (not in the read that ends the head), all at once.
    async with RawServer(reply(head, raw, pause=0.05, then_stall=True)) as server:
        resp = await fetch(server.url(), timeout=0.3)
        sink = Sink(delay=0.2)
        await pour_into(resp, sink, chunk_size=1024)
    assert bytes(sink.data) == body


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_slow_writer_of_a_body_that_came_with_the_head_is_not_a_timeout(
    framing: str,
) -> None:
    body = body_bytes(3 * 1024)
    if framing == "length":
        raw = http(body=body)
    else:
        raw = chunked_head() + b"".join(chunk(body[i : i + 1024]) for i in range(0, 3072, 1024))
        raw += b"0\r\n\r\n"
    async with RawServer(reply(raw, then_stall=True)) as server:
        resp = await fetch(server.url(), timeout=0.3)
        sink = Sink(delay=0.2)
        await pour_into(resp, sink, chunk_size=1024)
    assert bytes(sink.data) == body


# -- failing writes and callbacks ----------------------------------------------------------------


class DigestMismatch(Exception):
    pass


@pytest.mark.parametrize(
    "error", [OSError(28, "No space left on device"), DigestMismatch("bad digest")]
)
async def test_failing_write_raises_that_error_and_stops_writing(error: Exception) -> None:
    body = body_bytes(64 * 1024)
    calls: list[int] = []
    kept = bytearray()

    def write(view: memoryview) -> None:
        calls.append(len(view))
        if len(calls) == 3:
            raise error
        kept.extend(view)

    async with RawServer(reply(http(body=body), then_stall=True)) as server:
        resp = await fetch(server.url())
        with pytest.raises(type(error)) as caught:
            await within(resp.pour(write, lambda n: None, 1024))
        assert caught.value is error
        assert len(calls) == 3
        await asyncio.sleep(0.1)
        resp.release()
    assert len(calls) == 3  # nothing written after the failure
    assert bytes(kept) == body[: len(kept)]


async def test_failing_progress_raises_that_error() -> None:
    error = DigestMismatch("progress")
    sink = Sink()

    def progress(n: int) -> None:
        raise error

    async with RawServer(reply(http(body=body_bytes(10_000)), then_stall=True)) as server:
        resp = await fetch(server.url())
        with pytest.raises(DigestMismatch) as caught:
            await within(resp.pour(sink.write, progress, 1024))
        calls = sink.calls
        await asyncio.sleep(0.05)
        resp.release()
    assert caught.value is error
    assert sink.calls == calls == 1


async def test_progress_sums_to_body_length() -> None:
    body = body_bytes(50_000)
    raw = chunked_head() + chunk(body[:12345]) + chunk(body[12345:]) + b"0\r\n\r\n"
    for answer in [http(body=body), raw]:
        async with RawServer(reply(answer)) as server:
            resp = await fetch(server.url())
            sink = Sink()
            await pour_into(resp, sink, chunk_size=3000)
        assert sum(sink.progress_calls) == len(body)
        assert all(n > 0 for n in sink.progress_calls)
        assert bytes(sink.data) == body


# -- cancellation --------------------------------------------------------------------------------


class GatedSink:
    """A write that blocks in its worker thread until ``gate`` is set, and records when each call
    started and returned."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.starts: list[float] = []
        self.returns: list[float] = []
        self.data = bytearray()

    def write(self, view: memoryview) -> None:
        self.starts.append(time.monotonic())
        self.entered.set()
        self.gate.wait(HANG)
        self.data += view
        self.returns.append(time.monotonic())


async def test_cancel_during_write_waits_for_the_write() -> None:
    sink = GatedSink()
    finished: list[float] = []
    head = http(headers=[f"Content-Length: {1 << 20}"])
    async with RawServer(reply(head + body_bytes(64 * 1024), then_stall=True)) as server:
        resp = await fetch(server.url())
        task = asyncio.create_task(resp.pour(sink.write, lambda n: None, 4096))
        task.add_done_callback(lambda t: finished.append(time.monotonic()))
        try:
            assert await asyncio.to_thread(sink.entered.wait, HANG)
            await asyncio.sleep(0.05)  # the other buffers fill meanwhile
            task.cancel()
            await asyncio.sleep(0.1)
            assert not task.done()  # the write is still running: pour must not be over
            assert sink.returns == []
        finally:
            sink.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await within(task)
        ended = len(sink.starts)
        await asyncio.sleep(0.1)
        resp.release()
    assert len(sink.returns) >= 1
    assert finished and finished[0] >= sink.returns[-1]
    assert len(sink.starts) == len(sink.returns) == ended  # no write after pour finished
    assert all(start <= finished[0] for start in sink.starts)


@pytest.mark.parametrize("framing", ["length", "until-close"])
async def test_cancel_while_reading_writes_nothing_afterwards(framing: str) -> None:
    sink = GatedSink()
    sink.gate.set()
    head = http(headers=["Content-Length: 1000"]) if framing == "length" else http()
    # The 100 bytes come after the head (bytes that come with it are written at once).
    async with RawServer(reply(head, b"x" * 100, pause=0.1, then_stall=True)) as server:
        resp = await fetch(server.url())
        task = asyncio.create_task(resp.pour(sink.write, lambda n: None, 1024))
        await asyncio.sleep(0.3)  # the 100 bytes are in the buffer; no write yet: not full
        assert sink.starts == []
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await within(task)
        await asyncio.sleep(0.1)
        resp.release()
    assert sink.starts == []  # pour is over: its caller may have closed the file


# -- read ----------------------------------------------------------------------------------------


async def read(raw: bytes, limit: int) -> bytes:
    # The connection stays open: read must stop at the limit, not wait for more.
    async with RawServer(reply(raw, then_stall=True)) as server:
        resp = await fetch(server.url())
        try:
            return await within(resp.read(limit))
        finally:
            resp.release()


async def test_read_limits_a_long_content_length_body() -> None:
    body = body_bytes(100_000)
    assert await read(http(body=body), 1000) == body[:1000]


async def test_read_limits_a_chunked_body() -> None:
    body = body_bytes(5000)
    raw = chunked_head() + b"".join(chunk(body[i : i + 300]) for i in range(0, 5000, 300))
    assert await read(raw, 1000) == body[:1000]


async def test_read_limits_an_until_close_body() -> None:
    body = body_bytes(100_000)
    assert await read(http() + body, 1000) == body[:1000]


async def test_read_returns_a_short_body_whole() -> None:
    assert await read(http(body=b"short"), 1000) == b"short"
    raw = chunked_head() + chunk(b"sh") + chunk(b"ort") + b"0\r\n\r\n"
    assert await read(raw, 1000) == b"short"
    async with RawServer(reply(http() + b"short")) as server:
        resp = await fetch(server.url())
        assert await within(resp.read(1000)) == b"short"
        resp.release()


# -- TLS: a server that closes right after the response ------------------------------------------


class ClosingTLSServer(ThreadedServer):
    """A TLS server on loopback, in a thread of its own so that it sends and closes whatever the
    test's loop is doing. For each connection it reads the request head, writes ``answer`` and
    then at once (as Go and nginx do after a ``Connection: close`` response) a close_notify if
    ``notify``, and closes the socket."""

    scheme = "https"

    def __init__(self, cert: Path, key: Path, answer: bytes, *, notify: bool) -> None:
        super().__init__()
        self.answer = answer
        self.notify = notify
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert, key)

    def serve(self, raw: socket.socket) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self._context.wrap_bio(incoming, outgoing, server_side=True)
        request = b""
        while b"\r\n\r\n" not in request:
            try:
                request += tls.read(64 * 1024)
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                data = raw.recv(64 * 1024)
                if not data:
                    return
                incoming.write(data)
        tls.write(self.answer)
        raw.sendall(outgoing.read())
        if self.notify:
            with suppress(ssl.SSLWantReadError):  # the peer's close_notify: not waited for
                tls.unwrap()
            raw.sendall(outgoing.read())


TLS_SIZES = [30_000, 300_000, 3_000_000]


@pytest.mark.parametrize("notify", [True, False], ids=["close_notify", "fin"])
@pytest.mark.parametrize("size", TLS_SIZES, ids=lambda n: f"{n // 1000}KB")
async def test_tls_close_right_after_the_body_read_gets_it_all(
    tls_cert: tuple[Path, Path], size: int, notify: bool
) -> None:
    body = body_bytes(size)
    with ClosingTLSServer(*tls_cert, http(body=body), notify=notify) as server:
        resp = await within(get(server.url(), {}, tls=trusting(tls_cert[0]), timeout=RELAXED))
        try:
            assert resp.content_length == size
            assert await within(resp.read(4 << 20)) == body
        finally:
            resp.release()
    assert server.errors == []


@pytest.mark.parametrize("chunk_size", [1 << 20, 64 * 1024], ids=["1MiB", "64KiB"])
@pytest.mark.parametrize("notify", [True, False], ids=["close_notify", "fin"])
@pytest.mark.parametrize("size", TLS_SIZES, ids=lambda n: f"{n // 1000}KB")
async def test_tls_close_right_after_the_body_pour_gets_it_all(
    tls_cert: tuple[Path, Path], size: int, notify: bool, chunk_size: int
) -> None:
    body = body_bytes(size)
    with ClosingTLSServer(*tls_cert, http(body=body), notify=notify) as server:
        resp = await within(get(server.url(), {}, tls=trusting(tls_cert[0]), timeout=RELAXED))
        sink = Sink()
        await pour_into(resp, sink, chunk_size)
    assert bytes(sink.data) == body
    assert sum(sink.progress_calls) == size
    assert sink.overlaps == 0
    assert server.errors == []


class TimedSink(Sink):
    """A ``Sink`` that also records, after each write, when it returned and the bytes so far."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(delay)
        self.written: list[tuple[float, int]] = []

    def write(self, view: memoryview) -> None:
        super().write(view)
        self.written.append((time.monotonic(), len(self.data)))


@pytest.mark.parametrize("notify", [True, False], ids=["close_notify", "fin"])
async def test_tls_close_while_a_slow_writer_holds_reading_paused(
    tls_cert: tuple[Path, Path], notify: bool
) -> None:
    """The server has sent everything and closed while most of the body still waits behind a
    slow disk (reading paused): it must all arrive, none lost with the connection."""
    body = body_bytes(3_000_000)
    chunk_size = 64 * 1024
    with ClosingTLSServer(*tls_cert, http(body=body), notify=notify) as server:
        resp = await within(get(server.url(), {}, tls=trusting(tls_cert[0]), timeout=RELAXED))
        sink = TimedSink(delay=0.05)  # 46 writes: 2.3 s at least
        try:
            await within(resp.pour(sink.write, sink.progress, chunk_size), 30)
        finally:
            resp.release()
    assert bytes(sink.data) == body
    assert sink.overlaps == 0
    assert server.errors == []
    (closed,) = server.closed_at
    written_by_then = max((n for t, n in sink.written if t <= closed), default=0)
    # When the server closed, far more than pour's buffers was still to be written.
    assert len(body) - written_by_then > 8 * chunk_size


# -- chunked trailers ----------------------------------------------------------------------------


def endless_trailer(writer: asyncio.StreamWriter, head: bytes) -> Awaitable[None]:
    """The last chunk, then trailer lines for as long as the client listens."""

    async def handler() -> None:
        writer.write(chunked_head() + chunk(b"{}") + b"0\r\n")
        while True:
            writer.write(b"X-Pad: " + b"a" * 1000 + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.001)

    return handler()


async def test_endless_trailer_makes_pour_raise_promptly() -> None:
    async with RawServer(endless_trailer) as server:
        resp = await fetch(server.url())
        sink = Sink()
        started = time.monotonic()
        with pytest.raises(WireError):
            await pour_into(resp, sink)
        elapsed = time.monotonic() - started
    assert elapsed < RELAXED / 2  # the bytes keep coming: the read timeout never fires
    assert bytes(sink.data) == b"{}"  # what came before it was written


async def test_endless_trailer_makes_read_raise_promptly() -> None:
    async with RawServer(endless_trailer) as server:
        resp = await fetch(server.url())
        started = time.monotonic()
        try:
            with pytest.raises(WireError):
                await within(resp.read(4 << 20))
        finally:
            resp.release()
        elapsed = time.monotonic() - started
    assert elapsed < RELAXED / 2


# -- interim answers and status codes ------------------------------------------------------------

EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"


async def test_early_hints_in_the_same_read_as_the_answer_are_skipped() -> None:
    final = http(headers=["X-Real: yes"], body=b"hello", reason="OK")
    async with RawServer(reply(EARLY_HINTS + final, then_stall=True)) as server:
        resp = await fetch(server.url())
        assert resp.status == 200
        assert resp.headers.get("X-Real") == "yes"
        assert resp.headers.get("Link") is None  # the interim head's headers are not the answer's
        assert resp.content_length == 5
        sink = Sink()
        await pour_into(resp, sink)
    assert bytes(sink.data) == b"hello"


@pytest.mark.parametrize("split", ["after-103", "inside-200"])
async def test_early_hints_in_a_read_of_their_own_are_skipped(split: str) -> None:
    final = http(headers=["X-Real: yes"], body=b"hello", reason="OK")
    cut = 0 if split == "after-103" else 10
    parts = EARLY_HINTS + final[:cut], final[cut:]
    async with RawServer(reply(*parts, pause=0.05, then_stall=True)) as server:
        resp = await fetch(server.url())
        assert resp.status == 200
        assert resp.headers.get("X-Real") == "yes"
        assert resp.headers.get("Link") is None
        sink = Sink()
        await pour_into(resp, sink)
    assert bytes(sink.data) == b"hello"


async def test_endless_early_hints_raise_promptly() -> None:
    async def endless(writer: asyncio.StreamWriter, head: bytes) -> None:
        while True:
            writer.write(EARLY_HINTS * 100)
            await writer.drain()
            await asyncio.sleep(0.001)

    async with RawServer(endless) as server:
        started = time.monotonic()
        with pytest.raises(WireError):
            await fetch(server.url())
    assert time.monotonic() - started < RELAXED / 2  # the bytes keep coming: no read timeout


@pytest.mark.parametrize("code", [b"2000", b"200000", b"1000", b"099"])
async def test_status_code_of_other_than_three_digits_raises_wire_error(code: bytes) -> None:
    raw = b"HTTP/1.1 " + code + b" OK\r\nContent-Length: 0\r\n\r\n"
    async with RawServer(reply(raw, then_stall=True)) as server:
        with pytest.raises(WireError):
            await fetch(server.url())


# -- hosts -----------------------------------------------------------------------------------------


def record_lookups_and_connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every name lookup and connection attempt from now on (each still goes ahead)."""
    calls: list[str] = []
    loop = asyncio.get_running_loop()
    real_getaddrinfo = socket.getaddrinfo
    real_loop_getaddrinfo = loop.getaddrinfo
    real_create_connection = loop.create_connection

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(f"socket.getaddrinfo({host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    async def loop_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(f"loop.getaddrinfo({host!r})")
        return await real_loop_getaddrinfo(host, *args, **kwargs)

    async def create_connection(factory: Any, host: Any = None, *args: Any, **kw: Any) -> Any:
        calls.append(f"loop.create_connection({host!r})")
        return await real_create_connection(factory, host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(loop, "getaddrinfo", loop_getaddrinfo)
    monkeypatch.setattr(loop, "create_connection", create_connection)
    return calls


@pytest.mark.parametrize("host", ["a b", "a\x00b", "a\x7fb", "127.0.0.1\x00.evil"])
async def test_host_with_space_or_control_raises_bad_url_without_lookup(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with RawServer(reply(http(body=b"ok"))) as server:
        calls = record_lookups_and_connections(monkeypatch)
        for url in [f"http://{host}/v2/", f"https://{host}:{server.port}/v2/"]:
            with pytest.raises(BadURL):
                await fetch(url)
        assert calls == []
        # The recording works: a name that is fine is connected to (and looked up, which uvloop
        # does in C, out of the recorder's sight).
        resp = await fetch(f"http://localhost:{server.port}/")
        resp.release()
    assert resp.status == 200
    assert "loop.getaddrinfo('localhost')" in calls
    assert server.connections == 1


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
async def test_ipv6_literal_host() -> None:
    async with RawServer(reply(http(body=b"six")), host="::1") as server:
        resp = await fetch(server.url("/v2/"))
        assert resp.status == 200
        sink = Sink()
        await pour_into(resp, sink)
    assert bytes(sink.data) == b"six"
    (head,) = server.heads
    assert request_lines(head)[0] == "GET /v2/ HTTP/1.1"
    assert request_headers(head)["host"] == f"[::1]:{server.port}"


# -- chunked with a Content-Length ---------------------------------------------------------------


CHUNKED_WITH_LENGTH = (
    http(headers=["Content-Length: 5", "Transfer-Encoding: chunked"])
    + chunk(b"hello")
    + chunk(b" chunked")
    + chunk(b" world")
    + b"0\r\n\r\n"
)


async def test_chunked_with_content_length_is_refused() -> None:
    """RFC 9112 6.3 lets a client treat it as an error (it is how requests are smuggled), and a
    mirror that sends it then hands over to the next."""
    async with RawServer(reply(CHUNKED_WITH_LENGTH, then_stall=True)) as server:
        with pytest.raises(WireError, match="both Content-Length and Transfer-Encoding"):
            await fetch(server.url())


# -- headers outside Latin-1 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{"X-Value": "caf\u20ac"}, {"Authorization": "Bearer \u0127"}, {"X-\u20ac": "1"}],
)
async def test_header_outside_latin_1_raises_bad_request_before_sending(
    headers: dict[str, str],
) -> None:
    async with RawServer(reply(http(body=b""))) as server:
        with pytest.raises(BadRequest):
            await within(get(server.url(), headers, tls=None, timeout=RELAXED))
        await asyncio.sleep(0.05)  # time for a connection, had one been made, to be accepted
    assert server.connections == 0
    assert server.heads == []


@pytest.mark.parametrize("host", ["a..b", "x" * 64 + ".example", ".a"])
async def test_a_redirect_to_a_host_name_the_lookup_refuses_is_bad_url(host: str) -> None:
    """Names the resolver's IDNA codec refuses (an empty label, a label over 63 characters)."""
    raw = http(302, headers=[f"Location: http://{host}/x"], body=b"")
    async with RawServer(reply(raw)) as server:
        with pytest.raises(BadURL):
            await fetch(server.url())


# -- streamed request bodies over TCP and TLS: flow control -----------------------------------


class UploadSink(ThreadedServer):
    """A blocking server in a thread of its own (so that it reads at its pace whatever the test's
    loop does): per connection it reads a request with a Content-Length body, ``per_read`` bytes
    every ``pause`` seconds, up to ``read_limit`` body bytes (then it stops reading and holds the
    connection), and answers 201 with the body's sha256 in ``X-Sha256``. ``rcvbuf`` bounds what
    its kernel takes in ahead of it."""

    def __init__(
        self,
        cert: tuple[Path, Path] | None,
        *,
        per_read: int = 1 << 20,
        pause: float = 0.0,
        read_limit: int | None = None,
        rcvbuf: int | None = None,
    ) -> None:
        super().__init__(rcvbuf=rcvbuf)
        self.per_read, self.pause, self.read_limit = per_read, pause, read_limit
        self._context: ssl.SSLContext | None = None
        if cert is not None:
            self.scheme = "https"
            self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._context.load_cert_chain(*cert)

    def serve(self, raw: socket.socket) -> None:
        conn = self._context.wrap_socket(raw, server_side=True) if self._context else raw
        with conn:
            self._upload(conn)

    def _upload(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(64 * 1024)
        head, _, body = data.partition(b"\r\n\r\n")
        fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:])
        length = int(next(v for k, v in fields.items() if k.lower() == b"content-length"))
        digest = hashlib.sha256(body)
        got = len(body)
        while got < length:
            if self.read_limit is not None and got >= self.read_limit:
                self.stop.wait()  # a server that stopped reading, connection held open
                return
            piece = conn.recv(min(self.per_read, length - got))
            if not piece:
                return
            digest.update(piece)
            got += len(piece)
            if self.pause:
                time.sleep(self.pause)  # the server's pace, not a synchronisation
        conn.sendall(http(201, [f"X-Sha256: {digest.hexdigest()}"], body=b""))


PIECE = 2 << 20


async def reused_buffer_pieces(data: bytes) -> Any:
    """``data`` in ``PIECE``-sized views of one buffer, refilled as soon as the next piece is
    asked for (as a blob copied between registries goes): a piece the transport still held when
    it was refilled would go out wrong."""
    buffer = bytearray(PIECE)
    for start in range(0, len(data), PIECE):
        piece = data[start : start + PIECE]
        buffer[: len(piece)] = piece
        yield memoryview(buffer)[: len(piece)]
        buffer[:] = bytes(len(buffer))  # what the producer's next fill would do


async def upload(sink: UploadSink, data: bytes, tls: ssl.SSLContext | None, timeout: float) -> str:
    client = Client(timeout=timeout, pool=False)
    resp = await client.request(
        "PUT", sink.url("/upload"), {}, body=reused_buffer_pieces(data), length=len(data), tls=tls
    )
    try:
        assert resp.status == 201
        return resp.headers.get("X-Sha256") or ""
    finally:
        resp.release()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("secure", [True, False], ids=["tls", "tcp"])
async def test_a_streamed_body_of_reused_pieces_arrives_intact_without_waiting_out_timeouts(
    tls_cert: tuple[Path, Path], secure: bool
) -> None:
    # TLS paused the writer after every piece with nothing buffered and resumed it only on the
    # next event: each piece waited out the timeout (the whole 20 MB, 10 of them).
    data = body_bytes(10 * PIECE + 12345)
    with UploadSink(tls_cert if secure else None) as sink:
        tls = trusting(tls_cert[0]) if secure else None
        assert await within(upload(sink, data, tls, timeout=3.0), 20) == sha256_hex(data)
    assert sink.errors == []


@pytest.mark.parametrize("secure", [True, False], ids=["tls", "tcp"])
async def test_a_slow_reader_is_not_a_server_that_stopped_reading(
    tls_cert: tuple[Path, Path], secure: bool
) -> None:
    # 16 KiB (a TLS record) every 5 ms into a small receive buffer: a 2 MiB piece takes over
    # half a second to go, longer than the 0.5 s timeout, while the server never stops taking
    # bytes; and the last bytes are still on their way when the answer is awaited.
    data = body_bytes(6 * PIECE)
    slow = UploadSink(tls_cert if secure else None, per_read=1 << 14, pause=0.005, rcvbuf=1 << 16)
    with slow as sink:
        tls = trusting(tls_cert[0]) if secure else None
        assert await within(upload(sink, data, tls, timeout=0.5), 60) == sha256_hex(data)


@pytest.mark.parametrize("secure", [True, False], ids=["tls", "tcp"])
async def test_a_server_that_stops_reading_the_body_is_named_after_a_timeout_of_no_progress(
    tls_cert: tuple[Path, Path], secure: bool
) -> None:
    data = body_bytes(24 * PIECE)  # more than the kernel's buffers on both sides hold
    with UploadSink(tls_cert if secure else None, read_limit=PIECE) as sink:
        tls = trusting(tls_cert[0]) if secure else None
        with pytest.raises(BodyTimeout, match="stopped reading the request body"):
            await within(upload(sink, data, tls, timeout=0.5), 30)
