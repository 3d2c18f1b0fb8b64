"""Hostile HTTP, end to end: the real command against servers on 127.0.0.1 that break HTTP/1.1 on
purpose (raw asyncio servers write the bytes themselves) or abuse it within the rules (the fake
registry): token answers without end, servers that trickle, lengths of thousands of digits, heads
no parser should accept, redirects that leave the trust of a registry, names that do not exist, and
a connection per request.

What a user must see: one ``Error:`` line and exit 1, soon, with bounded memory; or, when a mirror
is the hostile one, the pull served by the next endpoint.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from fixtures.certs import self_signed
from fixtures.images import Image, make_image, redis
from fixtures.registry import Registry
from puller.oci.digest import parse_digest
from puller.store.layout import Store
from tests.support.fakeregistry import (
    CompletedRun,
    CountedFault,
    Handler,
    RedirectTo,
    Trickle,
    run_pypull,
    start_fake,
    start_origin,
)
from tests.support.helpers import refs
from tests.support.helpers import run_pypull as run_pypull_sync

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
#: a generous bound for a command that must not hang: no speed is asserted
HANG_GUARD = 30.0


# -- what the user sees --------------------------------------------------------------------------


def one_error_line(run: CompletedRun) -> str:
    """Exit 1 and exactly one ``Error:`` line on stderr, not blamed on pypull; returns it."""
    assert run.returncode == 1, (run.stdout, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("Error: "), run.stderr
    assert "bug in pypull" not in run.stderr
    return lines[0]


def stored(store: Path) -> set[str]:
    blobs = store / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in blobs.iterdir()} if blobs.exists() else set()


def write_pypull_config(text: str) -> None:
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "pypull" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def mirrors_of(upstream_host: str, *urls: str) -> None:
    """Configure ``urls`` as the mirrors of the loopback registry ``upstream_host``, in order."""
    write_pypull_config(
        "".join(f'[[registry."{upstream_host}".mirror]]\nurl = "{url}"\n' for url in urls)
    )


_PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call([sys.executable, '-m', 'puller', *sys.argv[2:]])\n"
    "with open(sys.argv[1], 'w') as f:\n"
    "    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


async def run_pypull_peak_rss(
    *args: str, store: Path, timeout: float = HANG_GUARD
) -> tuple[CompletedRun, int]:
    """``run_pypull``, and the command's peak resident memory in bytes (``ru_maxrss`` of a
    process whose only child it is)."""
    report = store.parent / "peak-rss"
    run = await run_pypull(
        *args, store=store, timeout=timeout, launcher=("-c", _PEAK_RSS, str(report))
    )
    return run, int(report.read_text()) * KIB


# -- raw servers -----------------------------------------------------------------------------------

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A TCP server on 127.0.0.1 whose every byte ``serve(reader, writer)`` writes itself; counts
    the connections it accepts. Leaving the ``async with`` ends every connection."""

    def __init__(self, serve: Serve) -> None:
        self._serve = serve
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._serving: set[asyncio.Future[None]] = set()
        self.connections = 0
        self.port = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._serving):
            task.cancel()
        await asyncio.gather(*self._serving, *self._connections, return_exceptions=True)
        await self._server.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio logs an error when the task it runs this in is cancelled, so the serving runs
        # in a task of its own, which is what __aexit__ cancels.
        self.connections += 1
        this = asyncio.current_task()
        assert this is not None
        serving = asyncio.ensure_future(self._serve(reader, writer))
        self._connections.add(this)
        self._serving.add(serving)
        try:
            await asyncio.wait([serving])
        finally:
            self._serving.discard(serving)
            self._connections.discard(this)
            writer.close()
        if not serving.cancelled():
            error = serving.exception()
            expected = (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)
            if error is not None and not isinstance(error, expected):
                raise error


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str] | None:
    """``(method, path)`` of the next request (its headers read and ignored); None at the end."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    return method, target.split("?", 1)[0]


def gone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """The client has closed the connection (or it broke)."""
    return writer.is_closing() or reader.at_eof()


async def trickle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, every: float
) -> None:
    """Send ``data`` one byte at a time, ``every`` seconds apart, while the client stays."""
    for i in range(len(data)):
        if gone(reader, writer):
            return
        writer.write(data[i : i + 1])
        await writer.drain()
        await asyncio.sleep(every)  # the server's pace, not a wait for anything


def head(status: str, *headers: str) -> list[str]:
    return [f"HTTP/1.1 {status}", *headers]


def render(lines: list[str], body: bytes) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


Mangle = Callable[[list[str], bytes], bytes]


def image_server(image: Image, mangle: Mangle = render) -> RawServer:
    """A registry (one connection per request) serving ``image`` by tag and digest, every answer
    written by ``mangle(head lines, body)``; the head lines carry a correct Content-Length."""
    routes: dict[str, tuple[str, bytes, str]] = {}
    top = f"/v2/{image.repository}/manifests/"
    routes[top + image.tag] = routes[top + image.digest] = (
        image.media_type,
        image.raw,
        image.digest,
    )
    for manifest in image.manifests:
        routes[top + manifest.digest] = (manifest.media_type, manifest.raw, manifest.digest)
        for blob in manifest.blobs:
            blob_path = f"/v2/{image.repository}/blobs/{blob.digest}"
            routes[blob_path] = ("application/octet-stream", blob.data, blob.digest)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        if request is None:
            return
        method, path = request
        if path in ("/v2/", "/v2"):
            found: tuple[str, bytes, str] | None = ("application/json", b"{}", "")
        else:
            found = routes.get(path)
        status = "200 OK" if found else "404 Not Found"
        media_type, body, digest = found or ("application/json", b'{"errors":[]}', "")
        lines = head(status, f"Content-Type: {media_type}", f"Content-Length: {len(body)}")
        if digest:
            lines.append(f"Docker-Content-Digest: {digest}")
        lines.append("Connection: close")
        writer.write(mangle(lines, b"" if method == "HEAD" else body))
        await writer.drain()

    return RawServer(serve)


def small_image(name: str, layers: int = 2, layer_size: int = 4 * KIB) -> Image:
    return make_image(f"test/{name}", "1", layers=layers, layer_size=layer_size)


# == Row 2: a token endpoint's answer is bounded ==================================================


def endless_token(*, chunked: bool, total: int = GIB) -> Serve:
    """A token endpoint answering 200 with a JSON body of ``total`` bytes (announced by
    Content-Length, or chunked with no length), as fast as the client takes it."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await read_request(reader) is None:
            return
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
        writer.write(render(head("200 OK", "Content-Type: application/json", framing), b""))
        piece = b"a" * MIB
        sent = 0
        while sent < total and not gone(reader, writer):
            data = b'{"token":"' + piece[10:] if sent == 0 else piece[: total - sent]
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data)
            await writer.drain()
            sent += len(data)
        if chunked and not gone(reader, writer):
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    return serve


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length-1GiB", "chunked-endless"])
async def test_a_token_answer_over_1_mib_fails_the_pull_with_the_limit_and_little_memory(
    chunked: bool, store: Path
) -> None:
    image = small_image("bigtoken", layers=1)
    async with RawServer(endless_token(chunked=chunked)) as tokens:
        realm = f"{tokens.url}/token"
        async with start_fake([image], auth="bearer", realm=realm) as fake:
            run, peak = await run_pypull_peak_rss(
                "--timeout", "5", "--max-download-attempts", "1", fake.ref(image), store=store
            )
    assert peak < 200 * MIB, f"peak RSS {peak // MIB} MiB; {run.stderr}"
    line = one_error_line(run)
    assert realm in line
    assert any(limit in line for limit in ("1 MiB", "1048576", "1,048,576")), line
    assert refs(store) == []


# == Row 3: a server that trickles cannot hold a request for hours ================================

#: One attempt, and a one-second read timeout: a trickle must fail the pull within seconds.
ONE_QUICK_ATTEMPT = ("--timeout", "1", "--max-download-attempts", "1")


async def test_a_response_head_trickled_a_byte_at_a_time_fails_the_pull_instead_of_hanging(
    store: Path,
) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await read_request(reader) is not None:
            await trickle(reader, writer, b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000, 0.5)

    async with RawServer(serve) as slow:
        run = await run_pypull(
            *ONE_QUICK_ATTEMPT,
            f"{slow.host}/test/slowhead:1",
            store=store,
            timeout=HANG_GUARD,
        )
    assert slow.host in one_error_line(run)
    assert refs(store) == []


async def test_a_manifest_body_trickled_a_byte_at_a_time_fails_the_pull_instead_of_hanging(
    store: Path,
) -> None:
    image = small_image("slowmanifest")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await read_request(reader) is None:
            return
        lines = head(
            "200 OK",
            f"Content-Type: {image.media_type}",
            f"Content-Length: {len(image.raw)}",
            f"Docker-Content-Digest: {image.digest}",
        )
        writer.write(render(lines, b""))
        await trickle(reader, writer, image.raw, 0.5)

    async with RawServer(serve) as slow:
        run = await run_pypull(
            *ONE_QUICK_ATTEMPT,
            f"{slow.host}/{image.reference}",
            store=store,
            timeout=HANG_GUARD,
        )
    assert slow.host in one_error_line(run)
    assert refs(store) == []


async def test_a_blob_trickled_at_100_bytes_a_second_counts_as_stalled_and_fails_the_pull(
    store: Path,
) -> None:
    image = small_image("slowblob", layers=1, layer_size=256 * KIB)
    layer = image.manifests[0].layers[0]
    async with start_fake([image]) as fake:
        fake.inject(layer.digest, Trickle(50, 0.5))  # 100 B/s: 45 minutes for the layer
        run = await run_pypull(
            *ONE_QUICK_ATTEMPT,
            fake.ref(image),
            store=store,
            timeout=HANG_GUARD,
        )
    assert fake.url in one_error_line(run)
    assert refs(store) == []
    assert layer.digest not in stored(store)


# == Rows 4 and 6: heads a client must refuse, and a mirror that sends them hands over ============


def _replace_length(value: str) -> Mangle:
    def mangle(lines: list[str], body: bytes) -> bytes:
        return render([f"Content-Length: {value}" if _is_length(x) else x for x in lines], body)

    return mangle


def _is_length(line: str) -> bool:
    return line.lower().startswith("content-length:")


def _add(*extra: str) -> Mangle:
    def mangle(lines: list[str], body: bytes) -> bytes:
        return render([lines[0], *extra, *lines[1:]], body)

    return mangle


def _second_length(lines: list[str], body: bytes) -> bytes:
    """The right Content-Length, then a different one: RFC 9112 6.3 says the message is
    invalid (reading the first alone is what a request smuggler counts on)."""
    return render([*lines, f"Content-Length: {len(body) + 7}"], body)


def _length_and_chunked(lines: list[str], body: bytes) -> bytes:
    """Content-Length together with Transfer-Encoding: chunked (the body is chunked)."""
    framed = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n" if body else b"0\r\n\r\n"
    return render([*lines, "Transfer-Encoding: chunked"], framed)


def _zero_padded_length(lines: list[str], body: bytes) -> bytes:
    return _replace_length(str(len(body)).zfill(25))(lines, body)


def _long_line(lines: list[str], body: bytes) -> bytes:
    return _add("X-Long: " + "a" * (9 * KIB))(lines, body)


def _many_lines(lines: list[str], body: bytes) -> bytes:
    return _add(*(f"X-Pad-{i}: v" for i in range(101)))(lines, body)


HOSTILE_HEADS = [
    pytest.param(_replace_length("9" * 5000), id="content-length-5000-digits"),
    pytest.param(_second_length, id="two-different-content-lengths"),
    pytest.param(_length_and_chunked, id="content-length-and-transfer-encoding"),
    pytest.param(_zero_padded_length, id="content-length-over-20-digits"),
    pytest.param(_add("X-Note: a\x00b"), id="nul-in-a-value"),
    pytest.param(_add("X-Note: a\x01b"), id="control-byte-in-a-value"),
    pytest.param(_add("X-No\x00te: v"), id="nul-in-a-name"),
    pytest.param(_add("X-No\x07te: v"), id="control-byte-in-a-name"),
    pytest.param(_many_lines, id="over-100-header-lines"),
    pytest.param(_long_line, id="a-header-line-over-8-KiB"),
]


@pytest.mark.parametrize("mangle", HOSTILE_HEADS)
async def test_a_mirror_sending_a_malformed_head_hands_over_to_the_next_endpoint(
    mangle: Mangle, store: Path
) -> None:
    image = small_image("malformed")
    async with image_server(image, mangle) as hostile, start_fake([image]) as upstream:
        mirrors_of(upstream.host, hostile.url)
        run = await run_pypull(
            "--timeout", "5", "--max-download-attempts", "1", upstream.ref(image), store=store
        )
    assert run.returncode == 0, run.stderr
    assert f"Using {upstream.url} ({hostile.url} did not answer)" in run.lines
    assert refs(store) == [upstream.ref(image)]
    assert upstream.log.manifest_gets(status=200)


@pytest.mark.parametrize("mangle", HOSTILE_HEADS)
async def test_a_malformed_head_from_the_only_endpoint_fails_the_pull_with_one_line(
    mangle: Mangle, store: Path
) -> None:
    image = small_image("malformed")
    async with image_server(image, mangle) as hostile, start_fake([image]) as upstream:
        mirrors_of(upstream.host, hostile.url)
        run = await run_pypull(
            "--mirror-only",
            "--timeout",
            "5",
            "--max-download-attempts",
            "1",
            upstream.ref(image),
            store=store,
        )
        assert upstream.log.manifest_gets() == []
    assert hostile.url in one_error_line(run)
    assert refs(store) == []


@pytest.mark.parametrize("mangle", HOSTILE_HEADS)
async def test_a_malformed_head_is_not_retried_even_with_attempts_to_spare(
    mangle: Mangle, store: Path
) -> None:
    """The README's promise: a malformed answer from the only endpoint fails at once. With the
    default five attempts, one request is made (its server would write the same head again),
    nothing says ``Retrying``, and the one line names the server and what was wrong."""
    image = small_image("malformed")
    async with image_server(image, mangle) as hostile:
        run = await run_pypull(
            "--timeout", "5", f"{hostile.host}/{image.repository}:{image.tag}", store=store
        )
        asked = hostile.connections
    line = one_error_line(run)
    assert asked == 1, run.stderr
    assert "Retrying" not in run.stdout
    assert hostile.url in line
    assert "malformed response" in line
    assert refs(store) == []


class HugeContentRange(CountedFault):
    """Answer every request 206 with ``data`` from the offset a ``Range`` asks for (else from 0)
    and a Content-Range whose total has 5,000 digits: a mirror that cannot serve that blob."""

    def __init__(self, data: bytes) -> None:
        super().__init__(times=None)
        self.data = data

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        asked = request.headers.get("Range", "").removeprefix("bytes=").partition("-")[0]
        start = int(asked) if asked.isdigit() else 0
        headers = {
            "Content-Range": f"bytes {start}-{len(self.data) - 1}/{'9' * 5000}",
            "Content-Type": "application/octet-stream",
        }
        return web.Response(status=206, body=self.data[start:], headers=headers)


def keep_partial(store: Path, digest: str, size: int, data: bytes) -> None:
    """Leave ``data`` as an interrupted download of ``digest`` in the store, to be resumed."""
    writer = Store(store).writer(parse_digest(digest), size)
    writer.write(data)
    writer.close()


@pytest.mark.parametrize("only_the_mirror", [False, True], ids=["hands-over", "mirror-only"])
@pytest.mark.parametrize("resumed", [True, False], ids=["resumed", "unasked-206"])
async def test_a_blob_206_with_a_5000_digit_content_range_is_the_mirrors_failure(
    resumed: bool, only_the_mirror: bool, store: Path
) -> None:
    """Resumed (a partial is kept, so the mirror is asked with Range) or not (a 206 nobody asked
    for): either way the mirror's answer is unusable, and the next endpoint serves the layer."""
    image = small_image("hugerange", layers=1, layer_size=64 * KIB)
    layer = image.manifests[0].layers[0]
    if resumed:
        keep_partial(store, layer.digest, layer.size, layer.data[:1000])
    async with start_fake([image]) as mirror, start_fake([image]) as upstream:
        mirror.inject(layer.digest, HugeContentRange(layer.data))
        mirrors_of(upstream.host, mirror.url)
        run = await run_pypull(
            *(["--mirror-only"] if only_the_mirror else []),
            "--timeout",
            "5",
            "--max-download-attempts",
            "1",
            upstream.ref(image),
            store=store,
        )
        asked = [r for r in mirror.log.blob_gets() if r.target == layer.digest]
        from_upstream = [r for r in upstream.log.blob_gets() if r.target == layer.digest]
    assert asked and asked[0].range_start == (1000 if resumed else None)
    if only_the_mirror:
        assert mirror.url in one_error_line(run)
        assert refs(store) == []
    else:
        assert run.returncode == 0, run.stderr
        assert from_upstream
        assert layer.digest in stored(store)
        assert refs(store) == [upstream.ref(image)]


# == Row 7: a registry's TLS settings stop at its own origin ======================================


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Two unrelated self-signed certificates for 127.0.0.1: the registry's and a CDN's."""
    return {
        name: self_signed(tmp_path_factory.mktemp(f"cert-{name}")) for name in ("registry", "cdn")
    }


def server_tls(cert: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)
    return context


def registry_settings(host: str, *options: str) -> str:
    return f'[registry."{host}"]\nserver = "https://{host}"\n' + "".join(f"{o}\n" for o in options)


async def test_skip_verify_does_not_extend_to_a_blob_redirect_to_another_https_host(
    certs: dict[str, tuple[Path, Path]], store: Path
) -> None:
    image = small_image("cdn")
    async with (
        start_fake([image], tls=server_tls(certs["registry"])) as registry,
        start_origin([image], tls=server_tls(certs["cdn"])) as cdn,
    ):
        registry.inject("/blobs/", RedirectTo(cdn.url))
        write_pypull_config(registry_settings(registry.host, "skip_verify = true"))
        run = await run_pypull(
            "--timeout", "5", "--max-download-attempts", "1", registry.ref(image), store=store
        )
        assert registry.log.blob_gets(status=307)  # the redirect was given
        assert cdn.log.blob_gets() == []  # nothing asked over a connection nobody vouched for
    line = one_error_line(run)
    assert cdn.host in line
    assert "ca_file" in line
    assert refs(store) == []


async def test_a_tag_redirected_from_https_to_plain_http_is_refused(
    certs: dict[str, tuple[Path, Path]], store: Path
) -> None:
    image = small_image("downgrade")
    cert = certs["registry"][0]
    async with (
        start_fake([image], tls=server_tls(certs["registry"])) as registry,
        start_fake([image]) as plain,
    ):
        registry.inject(f"/manifests/{image.tag}$", RedirectTo(plain.url))
        write_pypull_config(registry_settings(registry.host, f'ca_file = "{cert}"'))
        run = await run_pypull(
            "--timeout", "5", "--max-download-attempts", "1", registry.ref(image), store=store
        )
        assert registry.log.manifest_gets(status=307)
        assert plain.log.manifest_gets() == []  # the tag is never asked over plain HTTP
    assert plain.url in one_error_line(run)
    assert refs(store) == []


async def test_a_blob_redirected_from_https_to_plain_http_is_followed(
    certs: dict[str, tuple[Path, Path]], store: Path
) -> None:
    """Content named by its digest is verified whatever carries it (a regression guard)."""
    image = small_image("plaincdn")
    cert = certs["registry"][0]
    async with (
        start_fake([image], tls=server_tls(certs["registry"])) as registry,
        start_origin([image]) as cdn,
    ):
        registry.inject("/blobs/", RedirectTo(cdn.url))
        write_pypull_config(registry_settings(registry.host, f'ca_file = "{cert}"'))
        run = await run_pypull("--timeout", "5", registry.ref(image), store=store)
        served = cdn.log.blob_gets(status=200)
    assert run.returncode == 0, run.stderr
    assert len(served) == len(image.blobs)
    assert refs(store) == [registry.ref(image)]


# == Row 12: a name that does not resolve is not a dropped connection =============================


def test_a_registry_name_that_does_not_resolve_fails_at_once_without_retrying(
    store: Path,
) -> None:
    host = "nosuchhost.invalid"
    try:
        socket.getaddrinfo(host, 443)
    except socket.gaierror as e:
        no_such_name = e.errno == socket.EAI_NONAME
    else:
        pytest.skip(f"this machine's resolver answers for {host}")
    done = run_pypull_sync("--store", store, "--timeout", "1", f"{host}:5000/x:1", timeout=60)
    run = CompletedRun(done.returncode, done.stdout, done.stderr)
    assert f"cannot resolve {host}" in one_error_line(run)
    retrying = [line for line in run.lines if "Retrying" in line]
    # Without a resolver every name is a temporary failure (EAI_AGAIN): asked once more at most.
    assert len(retrying) <= (0 if no_such_name else 1), run.stdout


# == Row 13: connections are kept alive ===========================================================


class CountingRelay:
    """A TCP relay on 127.0.0.1 to ``port`` that counts the connections clients open through it
    (TLS passes through untouched)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server = RawServer(self._relay)

    @property
    def connections(self) -> int:
        return self.server.connections

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(64 * KIB):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@asynccontextmanager
async def relay_to(port: int) -> AsyncIterator[CountingRelay]:
    relay = CountingRelay(port)
    async with relay.server:
        yield relay


async def test_an_8_layer_pull_over_plain_http_reuses_connections(
    registry: Registry, store: Path
) -> None:
    async with relay_to(registry.port) as relay:
        run = await run_pypull("-j", "3", f"{relay.host}/library/redis:latest", store=store)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("Pull complete") == 8
    assert relay.connections <= 5, f"{relay.connections} connections"


async def test_an_8_layer_pull_over_tls_with_a_token_reuses_connections(
    certs: dict[str, tuple[Path, Path]], store: Path
) -> None:
    image = redis()
    tls_cert = certs["registry"]
    async with start_fake([image], auth="bearer", tls=server_tls(tls_cert)) as fake:
        async with relay_to(fake.port) as relay:
            fake.realm = f"https://{relay.host}/token"  # the token comes through the relay too
            write_pypull_config(registry_settings(relay.host, f'ca_file = "{tls_cert[0]}"'))
            run = await run_pypull("-j", "3", f"{relay.host}/{image.reference}", store=store)
        assert fake.log.token_requests(status=200)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("Pull complete") == 8
    assert relay.connections <= 5, f"{relay.connections} connections"
