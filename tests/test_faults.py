"""Hostile and failing registries, through the fake registry: what the user sees, what the store
keeps. Each failure must be one `Error:` line, exit 1, and no partial file left anywhere."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

import puller
from fixtures.images import Image, make_image, make_layer, make_manifest
from tests.support.fakeregistry import (
    Answer,
    CountedFault,
    Handler,
    Replace,
    Status,
    run_pypull,
    start_fake,
)
from tests.support.helpers import partials, refs


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ")
    assert "bug in pypull" not in stderr
    return lines[0]


def nothing_partial(store: Path, *, except_of: Image | None = None) -> None:
    """No partial download is left, except resumable ones of ``except_of``'s blobs (downloads
    that were cut short because another layer failed)."""
    allowed = {b.digest for b in except_of.blobs} if except_of else set()
    assert partials(store) <= allowed


class Gate(CountedFault):
    """Holds every matching request until released, so a test can act while a download is
    under way; ``entered`` is set when the first request arrives."""

    def __init__(self) -> None:
        super().__init__(times=None)
        self.entered = asyncio.Event()
        self.opened = asyncio.Event()

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.entered.set()
        await self.opened.wait()
        return await handler(request)


def image_with_layers(name: str, layers: list[int], shared_seed: str = "shared") -> Image:
    """An image whose layers are ``make_layer(shared_seed, i)`` for each i, repeats allowed."""
    blobs = [make_layer(shared_seed, i) for i in layers]
    manifest = make_manifest(blobs, seed=name)
    return Image(name, "1", manifest.media_type, manifest.raw, (manifest,))


async def test_a_missing_later_layer_fails_cleanly_and_leaves_no_partial_file(
    store: Path,
) -> None:
    image = make_image("test/missing", "1", layers=4)
    missing = image.manifests[0].layers[2]
    async with start_fake([image]) as fake:
        fake.inject(missing.digest, Status(404, times=None, code="BLOB_UNKNOWN"))
        run = await run_pypull(fake.ref(image), store=store)
    assert run.returncode == 1
    line = one_error_line(run.stderr)
    assert line.startswith(f"Error: blob {missing.digest} not found")
    nothing_partial(store, except_of=image)
    assert missing.digest not in partials(store)
    assert refs(store) == []
    assert missing.digest[7:] not in {p.name for p in (store / "blobs" / "sha256").glob("*")}


async def test_a_layer_listed_twice_is_downloaded_and_reported_once(store: Path) -> None:
    image = image_with_layers("test/twice", [0, 1, 0])
    ids = [layer.digest[7:19] for layer in image.manifests[0].layers]
    async with start_fake([image]) as fake:
        run = await run_pypull(fake.ref(image), store=store)
        assert run.returncode == 0, run.stderr
        assert len(fake.log.blob_gets()) == 3  # two layers and the config
    complete = [line for line in run.stdout.splitlines() if line.endswith("Pull complete")]
    assert complete == [f"{ids[0]}: Pull complete", f"{ids[1]}: Pull complete"]


NESTED = b"[" * 200_000  # json.loads raises RecursionError on this, not ValueError


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "is not valid JSON: nested too deeply"), (404, "not found: HTTP 404")],
    ids=["as-manifest", "as-error-body"],
)
async def test_deeply_nested_json_is_refused_as_invalid_not_a_crash(
    status: int, expected: str, store: Path
) -> None:
    image = make_image("test/nested", "1", layers=1)
    async with start_fake([image]) as fake:
        fake.inject("/manifests/", Answer(status, NESTED, "application/json"))
        run = await run_pypull(fake.ref(image), store=store)
    assert run.returncode == 1
    assert expected in one_error_line(run.stderr)
    assert not store.exists()


async def test_a_blob_of_the_wrong_length_is_refused_before_it_is_written(store: Path) -> None:
    image = make_image("test/short", "1", layers=2)
    layer = image.manifests[0].layers[0]
    async with start_fake([image]) as fake:
        fake.inject(layer.digest, Replace(layer.data[:100], times=None))
        run = await run_pypull(fake.ref(image), store=store)
    assert run.returncode == 1
    assert one_error_line(run.stderr) == (
        f"Error: size mismatch for {layer.digest} from {fake.url}: the registry sends 100 bytes, "
        f"the manifest says {layer.size}"
    )
    nothing_partial(store, except_of=image)
    assert layer.digest not in partials(store)


async def test_a_tag_whose_docker_content_digest_disagrees_is_refused(store: Path) -> None:
    image, other = make_image("test/dcd", "1", layers=1), make_image("test/dcd2", "1", layers=1)
    async with start_fake([image]) as fake:
        fake.inject("/manifests/1$", Replace(other.raw, times=None))
        run = await run_pypull(fake.ref(image), store=store)
    assert run.returncode == 1
    line = one_error_line(run.stderr)
    assert line.startswith(f"Error: digest mismatch for {image.digest} from {fake.url}")
    assert f"got {other.digest}" in line
    assert not store.exists()


async def test_a_token_realm_elsewhere_over_plain_http_is_refused(store: Path) -> None:
    """A registry cannot send our credentials to another host over plain HTTP; nothing is
    requested from the realm at all (it is not even on this machine)."""
    image = make_image("test/realm", "1", layers=1)
    async with start_fake([image], auth="bearer", realm="http://192.0.2.1/token") as fake:
        run = await run_pypull("--creds", "u:p", fake.ref(image), store=store)
        assert fake.log.token_requests() == []
    assert run.returncode == 1
    assert "refusing token realm http://192.0.2.1/token" in one_error_line(run.stderr)


# -- concurrent pulls sharing a download ----------------------------------------------------------


async def test_a_pull_joining_a_shared_download_survives_the_other_pull_being_cancelled(
    store: Path,
) -> None:
    a, b = image_with_layers("test/a", [0, 1]), image_with_layers("test/b", [0, 2])
    shared = a.manifests[0].layers[0].digest
    async with start_fake([a, b]) as fake, puller.Puller(store) as p:
        gate = fake.inject(shared, Gate())
        pull_a = asyncio.ensure_future(p.pull(fake.ref(a)))
        await gate.entered.wait()  # A is downloading the shared layer
        own = fake.inject(b.manifests[0].layers[1].digest, Gate())
        pull_b = asyncio.ensure_future(p.pull(fake.ref(b)))
        # B's layers are fetched in order, so once its own layer is asked for, B has joined.
        await own.entered.wait()
        pull_a.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pull_a
        gate.opened.set()
        own.opened.set()
        result = await pull_b
    assert str(result.digest) == b.digest
    assert [r.target for r in fake.log.blob_gets()].count(shared) == 1  # B used A's download
    assert refs(store) == [fake.ref(b)]
    nothing_partial(store, except_of=a)  # A's own layer, cut short, may be resumed later


async def test_a_pull_starting_after_a_cancelled_one_downloads_afresh(store: Path) -> None:
    a, b = image_with_layers("test/a", [0, 1]), image_with_layers("test/b", [0, 2])
    shared = a.manifests[0].layers[0].digest
    async with start_fake([a, b]) as fake, puller.Puller(store) as p:
        gate = fake.inject(shared, Gate())
        pull_a = asyncio.ensure_future(p.pull(fake.ref(a)))
        await gate.entered.wait()
        pull_a.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pull_a
        gate.opened.set()
        result = await p.pull(fake.ref(b))
    assert str(result.digest) == b.digest
    nothing_partial(store, except_of=a)


async def test_a_joined_download_that_fails_is_retried_from_the_joiners_own_registry(
    store: Path,
) -> None:
    a, b = image_with_layers("test/a", [0, 1]), image_with_layers("test/b", [0, 2])
    shared = a.manifests[0].layers[0].digest
    async with start_fake([a]) as broken, start_fake([b]) as good, puller.Puller(store) as p:
        gate = broken.inject(shared, Gate())
        broken.inject(shared, Status(404, times=None, code="BLOB_UNKNOWN"))
        pull_a = asyncio.ensure_future(p.pull(broken.ref(a)))
        await gate.entered.wait()
        own = good.inject(b.manifests[0].layers[1].digest, Gate())
        pull_b = asyncio.ensure_future(p.pull(good.ref(b)))
        await own.entered.wait()  # B has joined A's download of the shared layer
        gate.opened.set()
        own.opened.set()
        with pytest.raises(puller.NotFound):
            await pull_a
        result = await pull_b
    assert str(result.digest) == b.digest
    assert [r.target for r in good.log.blob_gets()].count(shared) == 1
