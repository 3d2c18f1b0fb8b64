"""Pulls that survive faults: a table of what a registry or the network does wrong, and what the
pull must do about it. Driven through the Python API with short waits (``retry_delay``), asserted
on the outcome, the store, and what the fake registry saw."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import puller
from fixtures.images import Image, make_image
from puller import events as ev
from puller.oci.digest import parse_digest
from puller.store.layout import Store
from tests.support.fakeregistry import (
    Answer,
    Corrupt,
    CountedFault,
    FakeRegistry,
    Handler,
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
from tests.support.helpers import partials, refs

LAYER = 512 * 1024  # big enough that a fault can land mid-body
CUT = 200 * 1024


def stored(store: Path) -> set[str]:
    blobs = store / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in blobs.iterdir()} if blobs.exists() else set()


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
        # the fake shares this event loop: leave it time to answer the other requests
        out = await pull(fake, image, store, timeout=2.0)
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


async def test_a_layer_told_to_wait_lets_the_next_layer_have_its_download_slot(
    store: Path,
) -> None:
    # One slot (-j 1): the layer asked first gets a 429 and a second's wait, and the other
    # layer is fetched during that wait rather than after it.
    image = big_image("slot")
    layers = {d.digest for d in image.manifests[0].layers}
    once = RetryAfter(429, 1)  # one fault for both: it fires on whichever is asked first
    async with start_fake([image]) as fake:
        for digest in layers:
            fake.inject(digest, once)
        out = await pull(fake, image, store, max_concurrent_downloads=1)
        gets = [(r.target, r.status) for r in fake.log.blob_gets() if r.target in layers]
    assert out.error is None, out.error
    (waited, _), (other, _), _ = gets
    assert gets == [(waited, 429), (other, 200), (waited, 200)]
    assert other != waited


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


# -- what an earlier review found -----------------------------------------------------------------


class RangeFrom(CountedFault):
    """Answers a ranged request with 206 and the blob from ``start``, whatever was asked."""

    def __init__(self, data: bytes, start: int) -> None:
        super().__init__(times=None)
        self.data, self.start = data, start

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if "Range" not in request.headers:
            return await handler(request)
        return await super().__call__(request, handler)

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        total = len(self.data)
        return web.Response(
            status=206,
            body=self.data[self.start :],
            headers={"Content-Range": f"bytes {self.start}-{total - 1}/{total}"},
        )


class EndsEarly(CountedFault):
    """A chunked 200 that ends cleanly after ``keep`` bytes: no error, just too little."""

    def __init__(self, data: bytes, keep: int) -> None:
        super().__init__(times=1)
        self.data, self.keep = data, keep

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = web.StreamResponse(status=200)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(self.data[: self.keep])
        await resp.write_eof()
        return resp


class Signal(CountedFault):
    """Sets ``seen`` when a matching request arrives, and lets it through."""

    def __init__(self) -> None:
        super().__init__(times=None)
        self.seen = asyncio.Event()

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.seen.set()
        return await handler(request)


async def test_a_partial_that_is_already_complete_is_committed_without_a_request(
    store: Path,
) -> None:
    image = big_image("complete")
    layer = image.manifests[0].layers[0]
    w = Store(store).writer(parse_digest(layer.digest), layer.size)
    w.write(layer.data)
    w.close()  # as if killed between the last write and the rename
    async with start_fake([image]) as fake:
        out = await pull(fake, image, store, max_download_attempts=1)
        tries = [r for r in fake.log.blob_gets() if r.target == layer.digest]
    assert out.error is None, out.error
    assert tries == []
    assert layer.digest in stored(store)


@pytest.mark.parametrize(("start", "second_range"), [(0, CUT), (CUT + 10, None)])
async def test_a_206_from_the_wrong_offset_restarts_instead_of_sticking(
    start: int, second_range: int | None, store: Path
) -> None:
    image = big_image("wrongrange")
    layer = image.manifests[0].layers[0]
    async with start_fake([image]) as fake:
        fake.inject(layer.digest, ResetMidBody(CUT))
        fake.inject(layer.digest, RangeFrom(layer.data, start))
        out = await pull(fake, image, store)
        tries = [r for r in fake.log.blob_gets() if r.target == layer.digest]
    assert out.error is None, out.error
    assert layer.digest in stored(store) and partials(store) == set()
    assert tries[1].range_start == CUT
    if second_range is None:  # dropped the partial and asked again from zero
        assert tries[-1].range_start is None


async def test_a_body_that_ends_early_without_an_error_is_resumed(store: Path) -> None:
    image = big_image("early")
    layer = image.manifests[0].layers[0]
    async with start_fake([image]) as fake:
        fake.inject(layer.digest, EndsEarly(layer.data, CUT))
        out = await pull(fake, image, store)
        tries = [r for r in fake.log.blob_gets() if r.target == layer.digest]
    assert out.error is None, out.error
    assert "ended after" in str(out.retries()[0].error)
    assert [t.range_start for t in tries] == [None, CUT]


async def test_a_mirror_404_does_not_stop_retrying_an_upstream_that_dropped_once(
    store: Path,
) -> None:
    image = big_image("mirror")
    layer = image.manifests[0].layers[0]
    async with start_fake([image]) as mirror, start_fake([image]) as upstream:
        mirror.inject(layer.digest, Status(404, times=None, code="BLOB_UNKNOWN"))
        upstream.inject(layer.digest, ResetMidBody(CUT))
        out = await pull_hub(image, store, mirrors=[mirror.url], upstream=upstream.url)
    assert out.error is None, out.error
    assert layer.digest in stored(store)


async def test_a_blob_locked_by_another_process_does_not_hold_a_download_slot(
    store: Path,
) -> None:
    image = big_image("locked")
    first, second = image.manifests[0].layers
    lock = Store(store).blob_lock(parse_digest(first.digest))
    assert lock.try_acquire()  # another pypull is downloading it
    async with start_fake([image]) as fake:
        seen = fake.inject(second.digest, Signal())
        task = asyncio.ensure_future(pull(fake, image, store, max_concurrent_downloads=1))
        # With one slot, the second layer still gets it (bounded: if the waiting layer held
        # the slot, this would never happen).
        await asyncio.wait_for(seen.seen.wait(), timeout=30)
        lock.release()  # the other process gave up without storing it
        out = await task
    assert out.error is None, out.error
    assert {first.digest, second.digest} <= stored(store)
    assert any(isinstance(e, ev.LayerWaiting) and str(e.digest) == first.digest for e in out.events)
    # ... as waiting for that process, whose pid its lock file gives (this process's here).
    waited = [e for e in out.events if isinstance(e, ev.LayerWaitingForProcess)]
    assert [(str(e.digest), e.pid) for e in waited] == [(first.digest, os.getpid())]


async def pull_hub(image: Image, store: Path, *, mirrors: list[str], upstream: str) -> Outcome:
    """Pull ``image`` as a Docker Hub image through ``mirrors``, with ``upstream`` standing in
    for Docker Hub itself (nothing leaves this machine)."""
    events: list[ev.Event] = []
    try:
        result = await puller.pull(
            image.reference,
            store=store,
            mirrors=mirrors,
            upstreams={"docker.io": upstream},
            retry_delay=0.01,
            on_event=events.append,
        )
    except puller.PullError as e:
        return Outcome(None, e, events)
    return Outcome(result, None, events)


async def test_a_progress_callback_that_raises_os_error_is_not_blamed_on_the_registry(
    store: Path,
) -> None:
    """An OSError from the caller's own callback (a closed pipe, say) is the caller's: it comes
    back unchanged, with no retry, rather than as the registry being unreachable."""
    image = big_image("callback")
    events: list[ev.Event] = []

    def on_event(event: ev.Event) -> None:
        events.append(event)
        if isinstance(event, ev.LayerProgress):
            raise BrokenPipeError(32, "the caller's progress pipe")

    async with start_fake([image]) as fake:
        with pytest.raises(BrokenPipeError):
            await puller.pull(fake.ref(image), store=store, on_event=on_event, retry_delay=0.01)
    assert not [e for e in events if isinstance(e, ev.LayerRetrying)]


async def test_a_429_that_says_the_quota_is_spent_fails_at_once_with_the_registrys_word(
    store: Path,
) -> None:
    """Docker Hub's ``ratelimit-remaining: 0``: the quota comes back in hours, so retrying is
    for nothing; the registry's own message says what to do."""
    image = big_image("quota")
    message = "You have reached your pull rate limit. Upgrade or wait"
    async with start_fake([image]) as fake:
        fake.inject(
            "/manifests/",
            Status(
                429,
                times=None,
                code="TOOMANYREQUESTS",
                message=message,
                headers={"RateLimit-Remaining": "0;w=21600", "RateLimit-Limit": "100;w=21600"},
            ),
        )
        run = await run_pypull(fake.ref(image), store=store)
        asked = len(fake.log.manifest_gets())
    assert run.returncode == 1
    assert "Retrying" not in run.stdout + run.stderr
    assert asked == 1
    (line,) = run.stderr.splitlines()
    assert message in line and "ratelimit-remaining: 0" in line


async def test_a_429_with_quota_left_is_still_retried(store: Path) -> None:
    image = big_image("quota-left")
    async with start_fake([image]) as fake:
        fake.inject(
            "/manifests/",
            Status(429, code="TOOMANYREQUESTS", headers={"RateLimit-Remaining": "3;w=21600"}),
        )
        out = await pull(fake, image, store)
        manifests = fake.log.manifest_gets()
    assert out.error is None
    assert [r.status for r in manifests][:2] == [429, 200]
