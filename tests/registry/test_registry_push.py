"""The registry client's write side and listings (the ground mirror syncing stands on), against
the real distribution registry: uploads in one PUT and in PATCH chunks, cross-repository mounts,
manifests by tag, HEADs, and tag listings page by page; and what a registry's Link may not do."""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fixtures.images import make_image
from fixtures.registry import Registry, push, running_registry
from puller.errors import NotFound, RegistryError
from puller.oci.digest import digest_of, parse_digest
from puller.oci.reference import parse
from puller.registry.client import RegistryClient
from puller.registry.endpoint import Endpoint
from tests.support.helpers import AccessLog
from tests.support.rawhttp import Answer, RawServer, http


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry of this module's own, written to by its tests."""
    access_log = {"log": {"accesslog": {"disabled": False}}}
    with running_registry(tmp_path_factory.mktemp("target"), extra_config=access_log) as reg:
        yield reg


def blob_bytes(n: int) -> bytes:
    return random.Random(n).randbytes(n)


def pieces(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(0, len(data), size):
            yield data[i : i + size]

    return gen()


async def fetch_blob(client: RegistryClient, endpoint: Endpoint, path: str, digest: str) -> bytes:
    got = bytearray()
    async with client.open_blob(endpoint, path, parse_digest(digest)) as body:
        await body.pour(got.extend, lambda _: None)
    return bytes(got)


async def test_a_blob_uploaded_in_one_put_is_stored_and_found(target: Registry) -> None:
    data = blob_bytes(3 << 20)
    digest = digest_of(data)
    endpoint = Endpoint(target.url)
    log = AccessLog(target)
    async with RegistryClient(timeout=10) as client:
        assert not await client.blob_exists(endpoint, "push/one", digest)
        how = await client.upload_blob(
            endpoint, "push/one", digest, len(data), lambda: pieces(data)
        )
        assert how == "uploaded"
        assert await client.blob_exists(endpoint, "push/one", digest)
        assert await fetch_blob(client, endpoint, "push/one", str(digest)) == data
    methods = [m for m, path in log.requests() if "/blobs/uploads/" in path]
    assert methods == ["POST", "PUT"]


async def test_a_blob_uploaded_in_chunks_is_stored_whole(target: Registry) -> None:
    data = blob_bytes(1_000_003)  # not a multiple of the chunk
    digest = digest_of(data)
    endpoint = Endpoint(target.url)
    log = AccessLog(target)
    async with RegistryClient(timeout=10) as client:
        how = await client.upload_blob(
            endpoint, "push/chunks", digest, len(data), lambda: pieces(data), chunk_size=300_000
        )
        assert how == "uploaded"
        assert await fetch_blob(client, endpoint, "push/chunks", str(digest)) == data
    methods = [m for m, path in log.requests() if "/blobs/uploads/" in path]
    assert methods == ["POST", "PATCH", "PATCH", "PATCH", "PATCH", "PUT"]


async def test_a_blob_in_another_repository_is_mounted_not_sent(target: Registry) -> None:
    data = blob_bytes(2 << 20)
    digest = digest_of(data)
    endpoint = Endpoint(target.url)
    async with RegistryClient(timeout=10) as client:
        await client.upload_blob(endpoint, "push/source", digest, len(data), lambda: pieces(data))
        log = AccessLog(target)
        how = await client.upload_blob(
            endpoint,
            "push/mounted",
            digest,
            len(data),
            lambda: pieces(data),
            mount_from="push/source",
        )
        assert how == "mounted"
        assert await client.blob_exists(endpoint, "push/mounted", digest)
    assert [m for m, _ in log.requests() if m in ("PUT", "PATCH")] == []


async def test_a_mount_from_a_repository_without_the_blob_becomes_an_upload(
    target: Registry,
) -> None:
    data = blob_bytes(100_001)
    digest = digest_of(data)
    endpoint = Endpoint(target.url)
    async with RegistryClient(timeout=10) as client:
        how = await client.upload_blob(
            endpoint, "push/nomount", digest, len(data), lambda: pieces(data), mount_from="x/y"
        )
        assert how == "uploaded"
        assert await fetch_blob(client, endpoint, "push/nomount", str(digest)) == data


async def test_a_manifest_put_by_tag_reads_back_byte_for_byte_and_heads_to_its_digest(
    target: Registry,
) -> None:
    image = make_image("push/image", "v1", layers=2, seed="push-manifest")
    endpoint = Endpoint(target.url)
    ref = parse(f"{target.host}/push/image:v1")
    async with RegistryClient(timeout=10) as client:
        for blob in image.blobs:
            data = blob.data
            await client.upload_blob(
                endpoint,
                "push/image",
                parse_digest(blob.digest),
                len(data),
                lambda d=data: pieces(d),
            )
        digest = await client.put_manifest(
            endpoint, "push/image", "v1", image.raw, image.media_type
        )
        assert str(digest) == image.digest
        head = await client.head_manifest(endpoint, ref)
        got = await client.get_manifest(endpoint, ref)
    assert head is not None and str(head.digest) == image.digest
    assert head.size == len(image.raw)
    assert got.raw == image.raw


async def test_a_manifest_whose_blobs_are_missing_is_refused_with_the_registrys_word(
    target: Registry,
) -> None:
    image = make_image("push/orphan", "v1", layers=1, seed="push-orphan")
    async with RegistryClient(timeout=10) as client:
        with pytest.raises(RegistryError) as caught:
            await client.put_manifest(
                Endpoint(target.url), "push/orphan", "v1", image.raw, image.media_type
            )
    assert caught.value.code == "MANIFEST_BLOB_UNKNOWN"
    assert "\n" not in str(caught.value)


async def test_head_of_a_missing_tag_is_not_found(target: Registry) -> None:
    async with RegistryClient(timeout=10) as client:
        with pytest.raises(NotFound):
            await client.head_manifest(Endpoint(target.url), parse(f"{target.host}/push/none:x"))


async def test_every_tag_is_listed_across_pages(target: Registry) -> None:
    image = make_image("push/tags", "t0", layers=1, seed="push-tags")
    tags = [f"t{i}" for i in range(7)]
    for tag in tags:
        push(target.url, image, tag=tag)
    async with RegistryClient(timeout=10) as client:
        log = AccessLog(target)
        got = await client.list_tags(Endpoint(target.url), "push/tags", page_size=2)
    assert sorted(got) == sorted(tags)
    # (this registry version answers n=2 with every tag at once: the pages are tested below)
    assert [p for _, p in log.requests() if "/tags/list" in p] == ["/v2/push/tags/tags/list?n=2"]


# -- what a registry's answers may not do --------------------------------------------------------


def tag_pages(pages: dict[str, tuple[list[str], str | None]]) -> RawServer:
    """A registry that answers each tag-list target with its page and Link."""

    async def handler(head: bytes, body: bytes) -> Answer:
        target = head.split(b" ")[1].decode()
        tags, link = pages.get(target, ([], None))
        headers = [f"Link: {link}"] if link else []
        names = ",".join(f'"{t}"' for t in tags)
        return http(body=f'{{"name":"r","tags":[{names}]}}'.encode(), headers=headers)

    return RawServer(answers=handler)


async def test_link_is_followed_as_given_relative_and_absolute_with_opaque_tokens() -> None:
    pages: dict[str, tuple[list[str], str | None]] = {}
    async with tag_pages(pages) as server:
        pages["/v2/r/tags/list"] = (
            ["a", "b"],
            '</v2/r/tags/list?last=b&n=2&x=%2Fopaque>; rel="next"',
        )
        pages["/v2/r/tags/list?last=b&n=2&x=%2Fopaque"] = (
            ["c"],
            f'<{server.url("/v2/r/tags/list?page=3")}>; rel="next"',
        )
        pages["/v2/r/tags/list?page=3"] = (["d"], None)
        async with RegistryClient(timeout=5) as client:
            got = await client.list_tags(Endpoint(server.url("").rstrip("/")), "r")
    assert got == ["a", "b", "c", "d"]


@pytest.mark.parametrize("where", ["other-origin", "circle"])
async def test_a_link_elsewhere_or_in_a_circle_is_refused(where: str) -> None:
    pages: dict[str, tuple[list[str], str | None]] = {}
    async with tag_pages(pages) as server:
        if where == "other-origin":
            link = '<http://127.0.0.2:1/v2/r/tags/list?steal=1>; rel="next"'
        else:
            link = '</v2/r/tags/list>; rel="next"'
        pages["/v2/r/tags/list"] = (["a"], link)
        async with RegistryClient(timeout=5) as client:
            with pytest.raises(RegistryError, match=r"another origin|circle"):
                await client.list_tags(Endpoint(server.url("").rstrip("/")), "r")
    assert server.connections == 1


async def test_a_registry_that_refuses_head_leaves_it_to_a_get() -> None:
    server = RawServer(answers=lambda head, body: _answer(http(405, body=b"")))
    async with server, RegistryClient(timeout=5) as client:
        got = await client.head_manifest(
            Endpoint(server.url("").rstrip("/")), parse(f"127.0.0.1:{server.port}/r:1")
        )
    assert got is None


async def _answer(data: bytes) -> Answer:
    return data


async def test_a_comma_inside_a_link_target_is_part_of_it() -> None:
    pages: dict[str, tuple[list[str], str | None]] = {}
    async with tag_pages(pages) as server:
        pages["/v2/r/tags/list"] = (["a"], '</v2/r/tags/list?token=x,y>; rel="next"')
        pages["/v2/r/tags/list?token=x,y"] = (["b"], None)
        async with RegistryClient(timeout=5) as client:
            got = await client.list_tags(Endpoint(server.url("").rstrip("/")), "r")
    assert got == ["a", "b"]


async def test_a_registry_that_wants_huge_chunks_is_refused_not_buffered() -> None:
    """After a 413 to the single PUT, chunks of at least OCI-Chunk-Min-Length: a registry that
    asks for an exabyte gets a one-line refusal, not the whole blob held in memory."""

    async def handler(head: bytes, body: bytes) -> Answer:
        if head.startswith(b"POST "):
            return http(202, headers=["Location: /up/1", "OCI-Chunk-Min-Length: " + "9" * 18])
        return http(413, body=b"")

    data = blob_bytes(100_000)
    async with RawServer(answers=handler) as server, RegistryClient(timeout=5) as client:
        with pytest.raises(RegistryError, match="64 MiB"):
            await client.upload_blob(
                Endpoint(server.url("").rstrip("/")),
                "r",
                digest_of(data),
                len(data),
                lambda: pieces(data),
            )
    assert not any(head.startswith(b"PATCH") for head, _ in server.requests)


async def test_skip_verify_does_not_cover_an_upload_location_on_another_host(
    tls_cert: tuple[Path, Path],
) -> None:
    """A registry trusted with skip_verify answers the upload POST with a Location on another
    origin whose certificate nobody vouches for: not one byte of the blob goes there."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_cert)
    received: list[bytes] = []

    async def foreign(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            received.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(http(201, body=b""))
        writer.close()

    elsewhere = await asyncio.start_server(foreign, "127.0.0.1", 0, ssl=context)
    port = elsewhere.sockets[0].getsockname()[1]

    async def registry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(http(202, headers=[f"Location: https://localhost:{port}/up/1"], body=b""))
            await writer.drain()
        writer.close()

    own = await asyncio.start_server(registry, "127.0.0.1", 0, ssl=context)
    endpoint = Endpoint(f"https://127.0.0.1:{own.sockets[0].getsockname()[1]}", skip_verify=True)
    data = blob_bytes(10_000)
    try:
        async with RegistryClient(timeout=5) as client:
            with pytest.raises(RegistryError, match=rf"localhost:{port}.*ca_file"):
                await client.upload_blob(
                    endpoint, "r", digest_of(data), len(data), lambda: pieces(data)
                )
    finally:
        own.close()
        elsewhere.close()
    assert received == []
