"""Settings a copy reads from config.toml, against the fault-injecting registry: a source that
counts pulls, as Docker Hub does (what is left of the quota is shown in the summary, images whose
manifests are still to be fetched are ``deferred`` once it falls below ``rate_limit_reserve``
while images the HEADs find in sync stay ``up-to-date``, a run that deferred any exits 3, a
quota already spent fails at once with the registry's message), and a target configured for
chunked uploads."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from fixtures.images import Image, make_image
from puller.copying import default_jobs
from tests.support.fakeregistry import FOREIGN_LAYER_TYPES, Status, run_pypull, start_fake


def images(n: int) -> list[Image]:
    return [make_image(f"library/img{i}", "1", layers=1, layer_size=2048) for i in range(n)]


def config(text: str) -> None:
    """config.toml where the command will look for it ($XDG_CONFIG_HOME, set per test)."""
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "pypull" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(("cpus", "jobs"), [(1, 2), (2, 2), (3, 3), (64, 4)])
def test_blobs_at_once_default_to_the_cpus_this_process_may_use_from_2_to_4(
    monkeypatch: pytest.MonkeyPatch, cpus: int, jobs: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cpus)))
    assert default_jobs() == jobs


async def test_images_not_started_are_deferred_below_the_reserve() -> None:
    some = images(5)
    async with start_fake(some, ratelimit_remaining=12) as source, start_fake() as target:
        refs = [f"{source.host}/{image.reference}" for image in some]
        run = await run_pypull("sync", "-j", "1", "--json", "--to", f"{target.host}/m", *refs)
        assert run.returncode == 3, run.stderr  # deferred: not a failure, not done either
        docs = [json.loads(line) for line in run.lines]
        # Each copy GETs one manifest at the source: 12 -> 11 -> 10 -> 9, and 9 < 10.
        assert [d["status"] for d in docs[:-1]] == ["copied"] * 3 + ["deferred"] * 2
        assert "9 pulls left" in docs[-2]["error"]
        assert docs[-1]["event"] == "summary" and docs[-1]["deferred"] == 2
        assert docs[-1]["ratelimit_remaining"] == {source.host: 9}
        assert {d["code"] for d in docs[:-1] if d["status"] == "deferred"} == {"rate-limited"}
        assert source.ratelimit_remaining == 9  # nothing was spent on the deferred ones
        assert sorted(
            r.path for r in target.log if r.method == "PUT" and "/manifests/" in r.path
        ) == [f"/v2/m/library/img{i}/manifests/1" for i in range(3)]


async def test_images_in_sync_stay_up_to_date_below_the_reserve_with_no_manifest_get() -> None:
    """HEADs cost no quota: images the HEADs find in sync are up to date however little is
    left; only those still to be fetched are deferred, and then the run exits 3."""
    some = images(4)
    async with start_fake(some, ratelimit_remaining=100) as source, start_fake() as target:
        refs = [f"{source.host}/{image.reference}" for image in some]
        dst = f"{target.host}/m"
        first = await run_pypull("sync", "--to", dst, *refs[:2])
        assert first.returncode == 0, first.stdout + first.stderr
        source.ratelimit_remaining = 5
        source.log.clear()

        done = await run_pypull("sync", "--json", "--to", dst, *refs[:2])
        assert done.returncode == 0, done.stdout + done.stderr  # all in sync: done
        assert [json.loads(line)["status"] for line in done.lines[:-1]] == ["up-to-date"] * 2

        run = await run_pypull("sync", "-j", "1", "--json", "--to", dst, *refs)
        assert run.returncode == 3, run.stdout + run.stderr
        docs = [json.loads(line) for line in run.lines]
        assert [(d["source"], d["status"]) for d in docs[:-1]] == [
            (refs[0], "up-to-date"),
            (refs[1], "up-to-date"),
            (refs[2], "deferred"),
            (refs[3], "deferred"),
        ]
        assert docs[2]["error"] == "5 pulls left at the source (rate_limit_reserve 10)"
        assert docs[-1] == {
            "event": "summary",
            "v": 1,
            "images": 4,
            "copied": 0,
            "up-to-date": 2,
            "would-copy": 0,
            "deferred": 2,
            "failed": 0,
            "ratelimit_remaining": {source.host: 5},
        }
        assert source.log.manifest_gets() == []  # the HEADs said it all: no pull counted
        assert source.ratelimit_remaining == 5
        assert [target.manifest(f"m/library/img{i}", "1") is None for i in range(4)] == [
            False,
            False,
            True,
            True,
        ]


async def test_an_image_changed_at_the_source_is_deferred_by_copy_with_exit_status_3() -> None:
    """The HEADs differ, so the copy would need the manifest: that GET is what is deferred."""
    image = images(1)[0]
    old = make_image("library/img0", "1", layers=1, layer_size=2048, seed="old")
    async with start_fake([image], ratelimit_remaining=5) as source, start_fake() as target:
        target.add_image(old, "m/library/img0")
        ref, dst = f"{source.host}/{image.reference}", f"{target.host}/m/library/img0"
        run = await run_pypull("copy", ref, dst)
        assert run.returncode == 3, run.stdout + run.stderr
        assert run.lines == [
            f"{ref} -> {dst}:1: deferred: 5 pulls left at the source (rate_limit_reserve 10)"
        ]
        assert [r.method for r in source.log if r.kind == "manifest"] == ["HEAD"]
        assert target.manifest("m/library/img0", "1") == old.raw


async def test_a_run_that_deferred_some_and_failed_one_exits_1() -> None:
    some = images(3)
    async with start_fake(some, ratelimit_remaining=100) as source, start_fake() as target:
        refs = [f"{source.host}/{image.reference}" for image in some]
        dst = f"{target.host}/m"
        first = await run_pypull("sync", "--to", dst, refs[0])
        assert first.returncode == 0, first.stdout + first.stderr
        source.ratelimit_remaining = 5
        refused = Status(403, times=None, code="DENIED", message="requested access is denied")
        target.inject("^/v2/m/library/img1/", refused, method=None)

        run = await run_pypull("sync", "-j", "1", "--to", dst, *refs)
        assert run.returncode == 1, run.stdout + run.stderr  # a failure outranks a deferral
        assert run.lines[0] == f"{refs[0]} -> {dst}/library/img0:1: up to date"
        assert run.lines[1].startswith(f"{refs[1]} -> {dst}/library/img1:1: failed: ")
        assert run.lines[2] == (
            f"{refs[2]} -> {dst}/library/img2:1: deferred: 5 pulls left at the source "
            "(rate_limit_reserve 10)"
        )
        assert run.lines[3] == (
            f"3 images: 1 up to date, 1 deferred, 1 failed; {source.host} ratelimit-remaining 5"
        )
        assert len(run.lines) == 4


async def test_the_summary_line_shows_what_is_left() -> None:
    some = images(2)
    async with start_fake(some, ratelimit_remaining=100) as source, start_fake() as target:
        refs = [f"{source.host}/{image.reference}" for image in some]
        run = await run_pypull("sync", "--to", f"{target.host}/m", *refs)
        assert run.returncode == 0, run.stderr
        assert run.lines[-1] == f"2 images: 2 copied; {source.host} ratelimit-remaining 98"


async def test_a_reserve_of_zero_defers_nothing_and_a_spent_quota_fails_at_once() -> None:
    config("rate_limit_reserve = 0\n")
    some = images(1)
    async with start_fake(some, ratelimit_remaining=0) as source, start_fake() as target:
        run = await run_pypull("copy", f"{source.host}/{some[0].reference}", f"{target.host}/m")
        assert run.returncode == 1
        assert "You have reached your pull rate limit" in run.stdout
        assert "ratelimit-remaining: 0" in run.stdout
        gets = [r for r in source.log if r.method == "GET" and "/manifests/" in r.path]
        assert len(gets) == 1, gets  # not retried: asking again cannot help


async def test_a_registry_configured_for_chunks_gets_patch_chunks_and_no_large_put() -> None:
    image = make_image("library/big", "1", layers=1, layer_size=3 * (1 << 20) + 5)
    async with start_fake([image]) as source, start_fake() as target:
        config(f'[registry."{target.host}"]\nupload_chunk_mib = 1\n')
        run = await run_pypull("copy", f"{source.host}/{image.reference}", f"{target.host}/m")
        assert run.returncode == 0, run.stdout + run.stderr
        layer = image.manifests[0].layers[-1]
        sizes = [r.received or 0 for r in target.log.uploads("PATCH")]
        # The config (570 bytes) in one chunk; the layer in 1 MiB chunks and the rest.
        assert sorted(sizes) == sorted(
            [len(image.manifests[0].config.data), *[1 << 20] * 3, len(layer.data) - (3 << 20)]
        ), sizes
        puts = target.log.uploads("PUT")
        assert puts and max(r.received or 0 for r in puts) == 0  # closing PUTs, no body
        assert target.blob("m", layer.digest) == layer.data


async def test_a_chunk_size_over_what_pypull_holds_is_a_config_error() -> None:
    config('[registry."r.example"]\nupload_chunk_mib = 65\n')
    run = await run_pypull("copy", "r.example/a:1", "r.example/b")
    assert run.returncode == 1
    assert run.stderr.startswith("Error: ") and "registry.r.example.upload_chunk_mib" in run.stderr
    assert "at most 64" in run.stderr


def with_foreign_layer(image: Image) -> Image:
    """``image`` with a Windows-style foreign layer added: named by URL, held by no registry."""
    manifest = image.manifests[0]
    doc = json.loads(manifest.raw)
    doc["layers"].insert(
        0,
        {
            "mediaType": FOREIGN_LAYER_TYPES[0],
            "digest": "sha256:" + "ab" * 32,
            "size": 1234,
            "urls": ["https://foreign.invalid/layer.tar.gz"],
        },
    )
    raw = json.dumps(doc).encode()
    child = dataclasses.replace(manifest, raw=raw)
    return dataclasses.replace(image, raw=raw, manifests=(child,))


async def test_a_foreign_layer_is_neither_fetched_nor_uploaded() -> None:
    image = with_foreign_layer(make_image("library/win", "1", layers=2, family="docker"))
    async with start_fake([image]) as source, start_fake() as target:
        run = await run_pypull("copy", f"{source.host}/{image.reference}", f"{target.host}/m")
        assert run.returncode == 0, run.stdout + run.stderr
        assert ": copied (3 uploaded" in run.stdout  # the config and two layers
        assert not any("ab" * 32 in r.path for r in [*source.log, *target.log])
        assert target.manifest("m", "1") is not None


async def test_registries_whose_head_cannot_say_are_asked_by_get_and_nothing_is_written() -> None:
    """A HEAD answered 405 (or without Docker-Content-Digest) gets a GET, as containerd does."""
    image = make_image("library/app", "1", layers=1, layer_size=2048)
    async with start_fake([image]) as source, start_fake() as target:
        ref, dst = f"{source.host}/{image.reference}", f"{target.host}/m"
        first = await run_pypull("copy", ref, dst)
        assert first.returncode == 0, first.stdout + first.stderr
        target.inject("/manifests/", Status(405, times=None), method="HEAD")
        source.inject("/manifests/", Status(405, times=None), method="HEAD")
        seen = len(list(target.log))
        again = await run_pypull("copy", ref, dst)
        assert again.stdout == f"{ref} -> {dst}:1: up to date\n", again.stdout + again.stderr
        later = list(target.log)[seen:]
        assert [r.method for r in later if "/manifests/" in r.path] == ["HEAD", "GET"]
        assert [r for r in later if r.method in ("PUT", "POST", "PATCH")] == []
