"""The fake registry itself, through a plain aiohttp client: Range answers, the mid-body faults,
redirects to an auth-free origin. These pin down what each fault puts on the wire (and how
aiohttp's client reacts), so tests of pypull built on them can trust what they inject."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict

from fixtures.images import make_image
from tests.support.fakeregistry import (
    Corrupt,
    DropConnection,
    FakeRegistry,
    IgnoreRange,
    LoggedRequest,
    Oversize,
    RedirectTo,
    Replace,
    ResetMidBody,
    RetryAfter,
    StallMidBody,
    Truncate,
    start_fake,
    start_origin,
)

# One layer of ~300 KB: several 64 KiB chunks, so a cut can fall mid-body and mid-chunk.
IMAGE = make_image("test/fake", "1", layers=1, layer_size=300_000)
LAYER = IMAGE.manifests[0].layers[0]
DATA = LAYER.data
SIZE = len(DATA)


@dataclass
class Got:
    """What a client got: the answer's status and headers, the body bytes read before the body
    ended or failed, and the exception that ended it (None: the body was complete)."""

    status: int | None = None
    headers: CIMultiDictProxy[str] | CIMultiDict[str] = field(default_factory=CIMultiDict)
    body: bytes = b""
    error: BaseException | None = None
    history: tuple[aiohttp.ClientResponse, ...] = ()
    url: str = ""


async def get(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    timeout: aiohttp.ClientTimeout | None = None,
) -> Got:
    got = Got()
    body = bytearray()
    async with aiohttp.ClientSession(
        auto_decompress=False, timeout=timeout or aiohttp.ClientTimeout(total=30)
    ) as session:
        try:
            async with session.request(method, url, headers=headers) as resp:
                got.status, got.headers, got.history = resp.status, resp.headers, resp.history
                got.url = str(resp.url)
                async for chunk in resp.content.iter_any():
                    body += chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            got.error = e
    got.body = bytes(body)
    return got


def blob_url(fake: FakeRegistry, digest: str = LAYER.digest) -> str:
    return f"{fake.url}/v2/{IMAGE.repository}/blobs/{digest}"


def manifest_url(fake: FakeRegistry) -> str:
    return f"{fake.url}/v2/{IMAGE.repository}/manifests/{IMAGE.tag}"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- Range --------------------------------------------------------------------------------------


async def test_a_whole_blob_is_streamed_with_its_length_and_accept_ranges() -> None:
    async with start_fake([IMAGE]) as fake:
        got = await get(blob_url(fake))
    assert (got.status, got.error, got.body) == (200, None, DATA)
    assert got.headers["Content-Length"] == str(SIZE)
    assert got.headers["Accept-Ranges"] == "bytes"
    assert got.headers["Docker-Content-Digest"] == LAYER.digest
    assert "Content-Range" not in got.headers
    (entry,) = fake.log.blob_gets()
    assert (entry.status, entry.sent, entry.range_start) == (200, SIZE, None)


@pytest.mark.parametrize(
    ("range_", "start", "stop"),
    [
        ("bytes=1000-", 1000, SIZE),
        ("bytes=70000-", 70000, SIZE),
        ("bytes=10-19", 10, 20),
        ("bytes=0-0", 0, 1),
        (f"bytes={SIZE - 5}-{SIZE + 100}", SIZE - 5, SIZE),  # an end past the blob is clamped
        (f"bytes={SIZE - 1}-", SIZE - 1, SIZE),
        ("bytes=-100", SIZE - 100, SIZE),  # the last 100 bytes
    ],
)
async def test_a_satisfiable_range_is_answered_206_with_the_slice(
    range_: str, start: int, stop: int
) -> None:
    async with start_fake([IMAGE]) as fake:
        got = await get(blob_url(fake), headers={"Range": range_})
    assert (got.status, got.error) == (206, None)
    assert got.body == DATA[start:stop]
    assert got.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{SIZE}"
    assert got.headers["Content-Length"] == str(stop - start)
    assert got.headers["Accept-Ranges"] == "bytes"
    assert got.headers["Docker-Content-Digest"] == LAYER.digest
    (entry,) = fake.log.blob_gets()
    assert entry.sent == stop - start
    assert entry.range_start == (None if range_.startswith("bytes=-") else start)


@pytest.mark.parametrize("range_", [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0"])
async def test_a_range_past_the_end_is_answered_416_with_the_total(range_: str) -> None:
    async with start_fake([IMAGE]) as fake:
        got = await get(blob_url(fake), headers={"Range": range_})
    assert got.status == 416
    assert got.headers["Content-Range"] == f"bytes */{SIZE}"


@pytest.mark.parametrize("range_", ["bytes=20-10", "bytes=0-1,5-6", "items=0-5", "bytes=-"])
async def test_a_range_that_is_not_one_byte_range_is_ignored(range_: str) -> None:
    async with start_fake([IMAGE]) as fake:
        got = await get(blob_url(fake), headers={"Range": range_})
    assert (got.status, got.body) == (200, DATA)


async def test_a_head_request_for_a_blob_announces_its_length_without_a_body() -> None:
    async with start_fake([IMAGE]) as fake:
        got = await get(blob_url(fake), method="HEAD")
    assert (got.status, got.body, got.error) == (200, b"", None)
    assert got.headers["Content-Length"] == str(SIZE)


@pytest.mark.parametrize(
    ("header", "start"),
    [
        (None, None),
        ("bytes=0-", 0),
        ("bytes=123-", 123),
        ("bytes=5-9", 5),
        (" bytes=7- ", 7),
        ("bytes=-100", None),
        ("bytes=1-2,5-6", None),
        ("garbage", None),
    ],
)
def test_range_start_reads_the_first_byte_a_request_asks_for(
    header: str | None, start: int | None
) -> None:
    headers = CIMultiDict({"Range": header} if header is not None else {})
    assert LoggedRequest("GET", "/v2/x/blobs/y", MultiDict(), headers).range_start == start


# -- faults that act mid-body ---------------------------------------------------------------------


@pytest.mark.parametrize("after", [0, 1000, 100_000])
async def test_reset_mid_body_sends_after_bytes_then_resets(after: int) -> None:
    async with start_fake([IMAGE]) as fake:
        fault = fake.inject("/blobs/", ResetMidBody(after))
        first = await get(blob_url(fake))
        second = await get(blob_url(fake))
    assert first.status == 200
    assert first.headers["Content-Length"] == str(SIZE)  # the full length is announced
    assert first.body == DATA[:after]
    # aiohttp: ClientPayloadError "Response payload is not completed: <ContentLengthError ...>.
    # ConnectionResetError(104, ...)", its __cause__ the ContentLengthError.
    assert isinstance(first.error, aiohttp.ClientPayloadError)
    assert "ConnectionResetError" in str(first.error)
    assert (second.status, second.body, second.error) == (200, DATA, None)
    assert fault.hits == 1
    assert [(r.status, r.sent) for r in fake.log.blob_gets()] == [(200, after), (200, SIZE)]


async def test_reset_mid_body_cuts_a_ranged_answer_after_bytes_of_the_slice() -> None:
    async with start_fake([IMAGE]) as fake:
        fake.inject("/blobs/", ResetMidBody(500))
        got = await get(blob_url(fake), headers={"Range": "bytes=1000-"})
    assert got.status == 206
    assert got.headers["Content-Length"] == str(SIZE - 1000)
    assert got.body == DATA[1000:1500]
    assert isinstance(got.error, aiohttp.ClientPayloadError)


@pytest.mark.parametrize("keep", [0, 1000, 100_000])
async def test_truncate_sends_fewer_bytes_than_announced_then_closes(keep: int) -> None:
    async with start_fake([IMAGE]) as fake:
        fake.inject("/blobs/", Truncate(keep))
        got = await get(blob_url(fake))
        again = await get(blob_url(fake))
    assert got.status == 200
    assert got.headers["Content-Length"] == str(SIZE)
    assert got.body == DATA[:keep]
    # aiohttp: ClientPayloadError "Response payload is not completed: <ContentLengthError ...>"
    # (a clean close: no ConnectionResetError in it).
    assert isinstance(got.error, aiohttp.ClientPayloadError)
    assert isinstance(got.error.__cause__, aiohttp.http_exceptions.ContentLengthError)
    assert "ConnectionResetError" not in str(got.error)
    assert again.body == DATA


async def test_stall_mid_body_makes_a_client_read_timeout_fire_after_the_bytes_sent() -> None:
    async with start_fake([IMAGE]) as fake:
        fake.inject("/blobs/", StallMidBody(100_000, seconds=60))
        got = await get(blob_url(fake), timeout=aiohttp.ClientTimeout(sock_read=0.2))
        again = await get(blob_url(fake))
    # The test ending at once (not after 60 s) shows the stall was cancelled when the client
    # gave up and disconnected.
    assert got.status == 200
    assert got.body == DATA[:100_000]
    # aiohttp: SocketTimeoutError, a ServerTimeoutError and an asyncio.TimeoutError.
    assert isinstance(got.error, aiohttp.ServerTimeoutError)
    assert isinstance(got.error, asyncio.TimeoutError)
    assert again.body == DATA


async def test_a_stalled_answer_ends_with_a_reset_when_the_server_closes() -> None:
    async with (
        start_fake([IMAGE]) as fake,
        aiohttp.ClientSession(auto_decompress=False) as session,
    ):
        fault = fake.inject("/blobs/", StallMidBody(1000, seconds=None))
        async with session.get(blob_url(fake)) as stalled:
            assert await stalled.content.readexactly(1000) == DATA[:1000]
            await fake.close()  # would wait for the stall to end, were it not cut short
            with pytest.raises(aiohttp.ClientPayloadError):
                await stalled.read()
    assert fault.hits == 1
    assert fake.log.blob_gets()[0].sent == 1000


async def test_a_stall_that_runs_out_ends_with_a_reset() -> None:
    async with start_fake([IMAGE]) as fake:
        fake.inject("/blobs/", StallMidBody(1000, seconds=0))
        got = await get(blob_url(fake))
    assert got.body == DATA[:1000]
    assert isinstance(got.error, aiohttp.ClientPayloadError)
    assert "ConnectionResetError" in str(got.error)


async def test_ignore_range_answers_a_ranged_request_with_the_whole_blob() -> None:
    async with start_fake([IMAGE]) as fake:
        fault = fake.inject("/blobs/", IgnoreRange())
        plain = await get(blob_url(fake))
        ranged = await get(blob_url(fake), headers={"Range": "bytes=1000-"})
    assert (ranged.status, ranged.body) == (200, DATA)
    assert "Content-Range" not in ranged.headers
    assert "Accept-Ranges" not in ranged.headers
    assert plain.headers["Accept-Ranges"] == "bytes"  # not a ranged request: untouched
    assert fault.hits == 1
    assert [r.range_start for r in fake.log.blob_gets()] == [None, 1000]  # as the client sent it


async def test_ignore_range_then_reset_mid_body_compose() -> None:
    async with start_fake([IMAGE]) as fake:
        fake.inject("/blobs/", IgnoreRange())
        fake.inject("/blobs/", ResetMidBody(200))
        got = await get(blob_url(fake), headers={"Range": "bytes=1000-"})
    assert got.status == 200
    assert got.body == DATA[:200]
    assert isinstance(got.error, aiohttp.ClientPayloadError)


async def test_mid_body_faults_cut_a_manifest_too() -> None:
    async with start_fake([IMAGE]) as fake:
        fake.inject("/manifests/", Truncate(10))
        got = await get(manifest_url(fake))
    assert got.status == 200
    assert got.headers["Content-Length"] == str(len(IMAGE.raw))
    assert got.headers["Content-Type"] == IMAGE.media_type
    assert got.headers["Docker-Content-Digest"] == IMAGE.digest
    assert got.body == IMAGE.raw[:10]
    assert isinstance(got.error, aiohttp.ClientPayloadError)


async def test_replace_and_corrupt_alter_a_streamed_blob() -> None:
    async with start_fake([IMAGE]) as fake:
        fake.inject("/blobs/", Replace(b"other bytes"))
        replaced = await get(blob_url(fake))
        fake.inject("/blobs/", Corrupt())
        corrupted = await get(blob_url(fake))
    assert replaced.body == b"other bytes"
    assert replaced.headers["Content-Length"] == "11"
    assert corrupted.body == DATA[:-1] + bytes([DATA[-1] ^ 0xFF])


async def test_aiohttp_retries_a_get_once_when_the_connection_drops_before_an_answer() -> None:
    """Worth knowing when injecting DropConnection: aiohttp's ClientSession resends an idempotent
    request once, on a new connection, after ServerDisconnectedError (even on a fresh one), so
    one drop is invisible to it and two surface as ServerDisconnectedError."""
    async with start_fake([IMAGE]) as fake:
        fake.inject("/blobs/", DropConnection(times=1))
        once = await get(blob_url(fake))
        assert [r.status for r in fake.log.blob_gets()] == [None, 200]
        fake.log.clear()
        fake.inject("/blobs/", DropConnection(times=2))
        twice = await get(blob_url(fake))
        assert [r.status for r in fake.log.blob_gets()] == [None, None]
    assert (once.status, once.body) == (200, DATA)
    assert twice.status is None
    assert isinstance(twice.error, aiohttp.ServerDisconnectedError)


# -- faults that answer instead -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "retry_after", "code"),
    [
        (RetryAfter(), 429, "0", "TOOMANYREQUESTS"),
        (RetryAfter(503, seconds=7), 503, "7", "UNAVAILABLE"),
        (RetryAfter(seconds="Wed, 21 Oct 2015 07:28:00 GMT"), 429, None, "TOOMANYREQUESTS"),
    ],
)
async def test_retry_after_answers_with_the_header_and_a_registry_error(
    fault: RetryAfter, status: int, retry_after: str | None, code: str
) -> None:
    async with start_fake([IMAGE]) as fake:
        fake.inject("/blobs/", fault)
        refused = await get(blob_url(fake))
        then = await get(blob_url(fake))
    assert refused.status == status
    assert refused.headers["Retry-After"] == (retry_after or str(fault.seconds))
    assert json.loads(refused.body)["errors"][0]["code"] == code
    assert (then.status, then.body) == (200, DATA)


@pytest.mark.parametrize("size", [28, 1000, 5 * 1024 * 1024 + 1])
async def test_oversize_serves_a_manifest_of_exactly_size_bytes_of_json(size: int) -> None:
    async with start_fake([IMAGE]) as fake:
        fault = fake.inject("/manifests/", Oversize(size))
        got = await get(manifest_url(fake))
    assert (got.status, got.error) == (200, None)
    assert len(got.body) == size == fault.size
    assert got.headers["Content-Length"] == str(size)
    assert json.loads(got.body)["schemaVersion"] == 2
    assert got.headers["Content-Type"] == IMAGE.media_type
    assert "Docker-Content-Digest" not in got.headers


def test_oversize_refuses_a_size_too_small_for_its_json() -> None:
    with pytest.raises(ValueError):
        Oversize(27)


# -- redirects to an origin -----------------------------------------------------------------------


async def test_a_redirected_blob_is_served_by_the_origin_without_credentials() -> None:
    creds = basic("alice", "s3cr3t")
    async with (
        start_fake([IMAGE], auth="basic", users={"alice": "s3cr3t"}) as fake,
        start_origin([IMAGE]) as origin,
    ):
        fake.inject("/blobs/", RedirectTo(origin.url))
        got = await get(
            blob_url(fake) + "?signed=1", headers={"Authorization": creds, "Range": "bytes=10-"}
        )
    (hop,) = got.history
    assert hop.status == 307
    assert hop.headers["Location"] == blob_url(origin) + "?signed=1"
    assert got.url == blob_url(origin) + "?signed=1"
    assert (got.status, got.body) == (206, DATA[10:])
    (asked,) = fake.log.blob_gets()
    assert (asked.status, asked.authorization) == (307, creds)
    (served,) = origin.log.blob_gets()
    # aiohttp drops Authorization on a redirect to another origin (host:port); Range stays.
    assert (served.status, served.authorization, served.range_start) == (206, None, 10)
    assert served.query["signed"] == "1"


async def test_redirect_to_keeps_the_status_it_is_given() -> None:
    async with start_fake([IMAGE]) as fake, start_origin([IMAGE]) as origin:
        fake.inject("/blobs/", RedirectTo(origin.url + "/", status=302, times=1))
        got = await get(blob_url(fake))
        direct = await get(blob_url(fake))
    assert [r.status for r in got.history] == [302]
    assert got.body == DATA
    assert direct.history == ()


async def test_the_origin_serves_blobs_and_nothing_else() -> None:
    async with start_origin([IMAGE]) as origin:
        ping = await get(f"{origin.url}/v2/")
        manifest = await get(manifest_url(origin))
        missing = await get(blob_url(origin, "sha256:" + "0" * 64))
        blob = await get(blob_url(origin))
    assert (ping.status, manifest.status, missing.status) == (404, 404, 404)
    assert (blob.status, blob.body) == (200, DATA)
    assert len(origin.log) == 4


async def test_faults_apply_at_the_origin_too() -> None:
    async with start_fake([IMAGE]) as fake, start_origin([IMAGE]) as origin:
        fake.inject("/blobs/", RedirectTo(origin.url))
        origin.inject("/blobs/", ResetMidBody(1234))
        got = await get(blob_url(fake))
    assert got.body == DATA[:1234]
    assert isinstance(got.error, aiohttp.ClientPayloadError)
    assert origin.log.blob_gets()[0].sent == 1234
