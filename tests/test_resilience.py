"""Pulls that survive faults: a table of what a registry or the network does wrong, and what the
pull must do about it. Driven through the Python API with short waits (``retry_delay``), asserted
on the outcome, the store, and what the fake registry saw."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import puller
from fixtures.images import Image, make_image
from puller import events as ev

from .fakeregistry import (
    Answer,
    Corrupt,
    FakeRegistry,
    IgnoreRange,
    Oversize,
    RedirectTo,
    Replace,
    ResetMidBody,
    RetryAfter,
    StallMidBody,
    Status,
    Truncate,
    run_pypull,
    start_fake,
    start_origin,
)
from .helpers import partials

LAYER = 512 * 1024  # big enough that a fault can land mid-body
CUT = 200 * 1024


def stored(store: Path) -> set[str]:
    blobs = store / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in blobs.iterdir()} if blobs.exists() else set()


def refs(store: Path) -> list[str]:
    index = store / "index.json"
    if not index.exists():
        return []
    doc = json.loads(index.read_text())
    return [m["annotations"]["org.opencontainers.image.ref.name"] for m in doc["manifests"]]


@dataclass
class Outcome:
    result: puller.PullResult | None
    error: puller.PullError | None
    events: list[ev.Event] = field(default_factory=list)

    def retries(self) -> list[ev.LayerRetrying]:
        return [e for e in self.events if isinstance(e, ev.LayerRetrying)]


async def pull(fake: FakeRegistry, image: Image, store: Path, **kw: Any) -> Outcome:
    events: list[ev.Event] = []
    options: dict[str, Any] = {"retry_delay": 0.01, "timeout": 5.0, **kw}
    try:
        result = await puller.pull(fake.ref(image), store=store, on_event=events.append, **options)
    except puller.PullError as e:
        return Outcome(None, e, events)
    return Outcome(result, None, events)


def big_image(name: str) -> Image:
    return make_image(f"test/{name}", "1", layers=2, layer_size=LAYER)


# -- faults a pull recovers from ------------------------------------------------------------------

Recover = Callable[[FakeRegistry, str], object]

RECOVERED: list[Any] = [
    pytest.param(lambda f, d: f.inject(d, ResetMidBody(CUT)), "resume", id="reset-mid-blob"),
    pytest.param(lambda f, d: f.inject(d, Truncate(CUT)), "resume", id="truncated-body"),
    pytest.param(lambda f, d: f.inject(d, Status(500)), "fresh", id="500-then-ok"),
    pytest.param(lambda f, d: f.inject(d, Status(503)), "fresh", id="503-then-ok"),
    pytest.param(lambda f, d: f.inject(d, RetryAfter(429, 0)), "fresh", id="429-retry-after"),
    pytest.param(
        lambda f, d: (f.inject(d, IgnoreRange()), f.inject(d, ResetMidBody(CUT))),
        "restart",
        id="range-ignored-restarts",
    ),
]


@pytest.mark.parametrize(("fault", "second_request"), RECOVERED)
async def test_a_layer_download_recovers(fault: Recover, second_request: str, store: Path) -> None:
    image = big_image("recover")
    layer = image.manifests[0].layers[1]
    async with start_fake([image]) as fake:
        fault(fake, layer.digest)
        out = await pull(fake, image, store)
        gets = fake.log.blob_gets()
    assert out.error is None, out.error
    assert layer.digest in stored(store)
    assert partials(store) == set()
    assert refs(store) == [fake.ref(image)]
    tries = [r for r in gets if r.target == layer.digest]
    assert len(tries) == 2
    assert [e.attempt for e in out.retries()] == [1]
    if second_request == "resume":
        assert tries[1].range_start is not None and tries[1].range_start > 0
        assert tries[1].status == 206
    elif second_request == "restart":
        assert tries[1].range_start is not None and tries[1].status == 200
    else:
        assert tries[1].range_start is None


async def test_a_stalled_download_times_out_and_resumes(store: Path) -> None:
    image = big_image("stall")
    layer = image.manifests[0].layers[1]
    async with start_fake([image]) as fake:
        fake.inject(layer.digest, StallMidBody(CUT, seconds=None))
        out = await pull(fake, image, store, timeout=0.5)
        tries = [r for r in fake.log.blob_gets() if r.target == layer.digest]
    assert out.error is None, out.error
    assert "timed out" in str(out.retries()[0].error)
    assert tries[1].range_start == CUT
    assert layer.digest in stored(store)


async def test_429_waits_as_long_as_retry_after_says(store: Path) -> None:
    image = big_image("wait")
    layer = image.manifests[0].layers[0]
    async with start_fake([image]) as fake:
        fake.inject(layer.digest, RetryAfter(429, 1))
        out = await pull(fake, image, store)
    assert out.error is None
    assert [e.delay for e in out.retries()] == [1.0]


async def test_a_manifest_503_is_retried(store: Path) -> None:
    image = big_image("manifest503")
    async with start_fake([image]) as fake:
        fake.inject("/manifests/", Status(503))
        out = await pull(fake, image, store)
        manifests = fake.log.manifest_gets()
    assert out.error is None
    assert [r.status for r in manifests][:2] == [503, 200]


async def test_a_cross_origin_redirect_never_carries_the_authorization_header(
    store: Path,
) -> None:
    image = big_image("redirect")
    async with start_origin([image]) as cdn, start_fake([image], auth="bearer") as fake:
        fake.inject("/blobs/", RedirectTo(cdn.url))
        out = await pull(fake, image, store)
        at_registry = fake.log.blob_gets()
        at_cdn = cdn.log.blob_gets()
    assert out.error is None, out.error
    assert {b.digest for b in image.blobs} <= stored(store)
    assert at_registry and all(r.authorization for r in at_registry if r.status == 307)
    assert at_cdn and all(r.authorization is None for r in at_cdn)


# -- faults that end the pull ---------------------------------------------------------------------


async def test_wrong_bytes_fail_at_once_and_store_nothing(store: Path) -> None:
    image = big_image("wrong")
    layer = image.manifests[0].layers[0]
    async with start_fake([image]) as fake:
        fake.inject(layer.digest, Corrupt(times=None))
        out = await pull(fake, image, store)
        tries = [r for r in fake.log.blob_gets() if r.target == layer.digest]
    assert isinstance(out.error, puller.DigestMismatch)
    assert out.error.expected == layer.digest
    assert len(tries) == 1  # a fresh download that does not verify is not retried
    assert layer.digest not in stored(store) | partials(store)
    assert refs(store) == []


async def test_a_resumed_download_that_does_not_verify_is_fetched_once_more_from_zero(
    store: Path,
) -> None:
    image = big_image("badresume")
    layer = image.manifests[0].layers[0]
    async with start_fake([image]) as fake:
        bad = bytes([layer.data[0] ^ 0xFF]) + layer.data[1:]
        fake.inject(layer.digest, ResetMidBody(CUT))
        fake.inject(layer.digest, Replace(bad, times=1))  # the first, partial body is wrong
        out = await pull(fake, image, store)
        tries = [r for r in fake.log.blob_gets() if r.target == layer.digest]
    assert out.error is None, out.error
    assert [t.range_start for t in tries] == [None, CUT, None]
    assert layer.digest in stored(store)


@pytest.mark.parametrize(
    ("make_fault", "error", "words"),
    [
        (lambda layer: Replace(layer.data[:1000], times=None), puller.SizeMismatch, "sends 1000"),
        (lambda layer: Replace(layer.data + b"x", times=None), puller.SizeMismatch, "size"),
        (lambda layer: Status(404, times=None), puller.NotFound, "not found"),
        (lambda layer: Status(403, times=None), puller.Unauthorized, "unauthorized"),
    ],
    ids=["shorter-than-descriptor", "longer-than-descriptor", "404", "403"],
)
async def test_permanent_blob_failures_are_not_retried(
    make_fault: Callable[[Any], Any], error: type[Exception], words: str, store: Path
) -> None:
    image = big_image("permanent")
    layer = image.manifests[0].layers[0]
    async with start_fake([image]) as fake:
        fake.inject(layer.digest, make_fault(layer))
        out = await pull(fake, image, store)
        tries = [r for r in fake.log.blob_gets() if r.target == layer.digest]
    assert isinstance(out.error, error), out.error
    assert words in str(out.error)
    assert len(tries) == 1
    assert out.retries() == []
    assert layer.digest not in stored(store) and refs(store) == []


async def test_attempts_are_bounded(store: Path) -> None:
    image = big_image("bounded")
    layer = image.manifests[0].layers[0]
    async with start_fake([image]) as fake:
        fake.inject(layer.digest, Status(500, times=None))
        out = await pull(fake, image, store, max_download_attempts=3)
        tries = [r for r in fake.log.blob_gets() if r.target == layer.digest]
    assert isinstance(out.error, puller.RegistryError) and out.error.status == 500
    assert len(tries) == 3
    assert [e.attempt for e in out.retries()] == [1, 2]


async def test_a_10_mb_manifest_is_refused_and_nothing_is_stored(store: Path) -> None:
    image = big_image("huge")
    async with start_fake([image]) as fake:
        fake.inject("/manifests/", Oversize(10 * 1024 * 1024))
        out = await pull(fake, image, store)
    assert isinstance(out.error, puller.ManifestError)
    assert "over the 4194304 byte limit" in str(out.error)
    assert not store.exists()


async def test_a_path_traversal_digest_is_refused_and_nothing_is_written(
    store: Path, tmp_path: Path
) -> None:
    image = big_image("traversal")
    evil = json.loads(image.raw)
    evil["layers"][0]["digest"] = "sha256:../../../../escaped"
    async with start_fake([image]) as fake:
        fake.inject("/manifests/", Answer(200, json.dumps(evil).encode(), image.media_type))
        out = await pull(fake, image, store)
        assert fake.log.blob_gets() == []
    assert isinstance(out.error, puller.ManifestError)
    assert "invalid digest 'sha256:../../../../escaped'" in str(out.error)
    assert not store.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("repository", "tag", "detail"),
    [
        ("library/nosuch", "latest", "repository name not known to registry"),
        ("test/known", "nosuch", "manifest unknown"),
    ],
)
async def test_a_registry_error_body_becomes_a_readable_error(
    repository: str, tag: str, detail: str, store: Path
) -> None:
    image = make_image("test/known", "1", layers=1)
    async with start_fake([image]) as fake:
        out = await pull(fake, make_image(repository, tag, layers=1), store)
    assert isinstance(out.error, puller.NotFound)
    assert str(out.error) == f"manifest for {fake.host}/{repository}:{tag} not found: {detail}"
    assert not store.exists()


# -- what the terminal shows ----------------------------------------------------------------------


async def test_the_cli_says_retrying_in_n_seconds(store: Path) -> None:
    image = big_image("cli")
    layer = image.manifests[0].layers[0]
    async with start_fake([image]) as fake:
        fake.inject(layer.digest, Status(503))
        run = await run_pypull(fake.ref(image), store=store)
    assert run.returncode == 0, run.stderr
    assert f"{layer.digest[7:19]}: Retrying in 1 second" in run.lines
    assert f"{layer.digest[7:19]}: Pull complete" in run.lines
