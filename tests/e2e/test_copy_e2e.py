"""``pypull copy`` from the real registry to a second real registry that wants credentials:
byte-for-byte manifests (read back by skopeo), blobs sent once, mounts, a second copy that only
asks HEADs, dry runs, JSON, and a source whose blob does not verify."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fixtures.images import Image, make_image, multiplatform, redis, shared_pair
from fixtures.registry import PASSWORD, USER, Registry, push, running_registry
from puller.copying import Copier
from puller.errors import DigestMismatch
from puller.oci.manifest import Descriptor, Manifest, parse_manifest
from puller.oci.reference import parse
from puller.pulling import Puller
from puller.registry.auth import Credentials
from puller.registry.client import RegistryClient
from puller.registry.endpoint import Endpoint
from puller.streams import from_registry
from tests.support.auth import basic_auth, write_docker_config
from tests.support.fakeregistry import Corrupt, start_fake
from tests.support.fakeregistry import run_pypull as run_pypull_async
from tests.support.helpers import AccessLog, raw, run_pypull


@pytest.fixture(autouse=True)
def target_credentials(target: Registry) -> None:
    write_docker_config({"auths": {target.host: {"auth": basic_auth(USER, PASSWORD)}}})


def test_an_image_is_copied_byte_for_byte_and_a_second_copy_only_asks(
    registry: Registry, target: Registry
) -> None:
    source, dest = f"{registry.host}/library/redis:latest", f"{target.host}/mirror/redis"
    run = run_pypull("copy", source, dest)
    assert run.returncode == 0, run.stderr
    prefix = f"{source} -> {dest}:latest: copied (9 uploaded, 0 mounted, 0 existing, "
    assert run.stdout.startswith(prefix), run.stdout
    assert re.fullmatch(r"[0-9.]+[kMG]?B\)\n", run.stdout[len(prefix) :]), run.stdout
    assert raw(target, "mirror/redis:latest", creds=True) == raw(registry, "library/redis:latest")

    source_log, target_log = AccessLog(registry), AccessLog(target)
    again = run_pypull("copy", source, dest)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"{source} -> {dest}:latest: up to date\n"
    assert [m for m, p in source_log.requests() if "/manifests/" in p] == ["HEAD"]
    assert [m for m, _ in target_log.requests() if m in ("PUT", "POST", "PATCH")] == []


def test_every_platform_of_an_index_keeps_its_digest(registry: Registry, target: Registry) -> None:
    image = multiplatform()
    run = run_pypull("copy", f"{registry.host}/library/multi:latest", f"{target.host}/m/multi")
    assert run.returncode == 0, run.stderr
    assert raw(target, "m/multi:latest", creds=True) == image.raw
    for child in image.manifests:
        assert raw(target, f"m/multi@{child.digest}", creds=True) == child.raw


async def test_layers_two_images_share_go_once_and_are_mounted_into_the_second(
    registry: Registry, target: Registry
) -> None:
    first, second = shared_pair()
    log = AccessLog(target)
    async with Puller(credential_lookup=_target_creds(target)) as puller:
        copier = Copier(puller)
        one = await copier.copy(
            parse(f"{registry.host}/library/app-a:1"), parse(f"{target.host}/shared/a:1")
        )
        two = await copier.copy(
            parse(f"{registry.host}/library/app-b:1"), parse(f"{target.host}/shared/b:1")
        )
    assert one.status == two.status == "copied", (one.error, two.error)
    assert (one.uploaded, one.mounted) == (9, 0)
    assert (two.uploaded, two.mounted) == (4, 5)  # its config and 3 layers; the 5 shared
    puts = [p for m, p in log.requests() if m == "PUT" and "/blobs/uploads/" in p]
    assert len(puts) == len({*first.blobs, *second.blobs}) == 13
    assert raw(target, "shared/b:1", creds=True) == second.raw


def _target_creds(target: Registry) -> Callable[[str], Credentials | None]:
    def lookup(name: str) -> Credentials | None:
        return Credentials(USER, PASSWORD) if name == target.host else None

    return lookup


def test_a_dry_run_compares_and_writes_nothing(registry: Registry, target: Registry) -> None:
    log = AccessLog(target)
    run = run_pypull(
        "copy", "--dry-run", "--json", f"{registry.host}/library/dockerimg", f"{target.host}/d/img"
    )
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["status"] == "would-copy"
    assert doc["digest"].startswith("sha256:")
    assert doc["blobs"] == {"uploaded": 0, "mounted": 0, "existing": 0}
    assert [m for m, _ in log.requests() if m in ("PUT", "POST", "PATCH")] == []


def test_a_missing_source_fails_with_one_line_and_status_1(
    registry: Registry, target: Registry
) -> None:
    run = run_pypull("copy", f"{registry.host}/library/nothere:1", f"{target.host}/x/y")
    assert run.returncode == 1
    (line,) = run.stdout.splitlines()
    assert line.startswith(f"{registry.host}/library/nothere:1 -> {target.host}/x/y:1: failed: ")
    assert "not found" in line


async def test_a_blob_that_does_not_verify_never_completes_its_upload(target: Registry) -> None:
    image = redis()
    layer = image.manifests[0].layers[0]
    async with start_fake([image]) as fake:
        fake.inject(layer.digest, Corrupt(times=None))
        run = await run_pypull_async(
            "copy", "--max-download-attempts", "1", fake.ref(image), f"{target.host}/bad/redis"
        )
    assert run.returncode == 1, run.stdout
    assert "digest mismatch" in run.stdout
    probe = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            f"{USER}:{PASSWORD}",
            f"docker://{target.host}/bad/redis:latest",
        ],
        capture_output=True,
        timeout=60,
    )
    assert probe.returncode != 0  # no tag points at an image the target does not hold


def test_a_copy_writes_to_the_target_registry_itself_never_to_its_mirror() -> None:
    """With mirror_only, pulls use only the mirrors; a copy's target is still the registry."""
    puller = Puller(mirrors=["http://127.0.0.1:9"], mirror_only=True)
    ref = parse("docker.io/me/app:1")
    assert [e.url for e in puller.endpoints(ref)] == ["http://127.0.0.1:9"]
    assert puller.server(ref).url == "https://registry-1.docker.io"


async def test_a_blob_is_passed_on_only_up_to_its_last_piece_until_it_verifies() -> None:
    """A corrupt source blob: the upload gets every piece but the last, then the error, so
    even a target that checks no digest never receives the whole (wrong) blob."""
    image = make_image("library/held", "1", layers=1, layer_size=3 << 20, seed="held")
    layer = image.manifests[0].layers[0]
    descriptor = next(d for d in _layers(image) if str(d.digest) == layer.digest)
    got = bytearray()
    async with start_fake([image]) as fake, RegistryClient(timeout=5) as client:
        fake.inject(layer.digest, Corrupt(times=None))
        with pytest.raises(DigestMismatch):
            async for piece in from_registry(
                client, Endpoint(fake.url), "library/held", descriptor
            ):
                got += piece
    assert 0 < len(got) < layer.size
    assert bytes(got) == layer.data[: len(got)]


def _layers(image: Image) -> list[Descriptor]:
    manifest = parse_manifest(image.manifests[0].raw, image.manifests[0].media_type, "held")
    assert isinstance(manifest, Manifest)
    return list(manifest.layers)


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An open registry holding one repository under three tags."""
    with running_registry(tmp_path_factory.mktemp("tagged")) as reg:
        image = make_image("team/app", "1.0", layers=2, seed="tagged")
        for tag in ("1.0", "1.1", "latest"):
            push(reg.url, image, tag=tag)
        yield reg


def test_all_tags_copies_each_with_a_line_and_a_summary(tagged: Registry, target: Registry) -> None:
    src, dst = f"{tagged.host}/team/app", f"{target.host}/all/app"
    run = run_pypull("copy", "--all-tags", src, dst)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert sorted(line.split(": ")[1].split(" ")[0] for line in lines[:-1]) == ["copied"] * 3
    assert lines[-1] == "3 images: 3 copied"
    for tag in ("1.0", "1.1", "latest"):
        assert raw(target, f"all/app:{tag}", creds=True) == raw(tagged, f"team/app:{tag}")

    again = run_pypull("copy", "--all-tags", "--json", src, dst)
    assert again.returncode == 0, again.stderr
    docs = [json.loads(line) for line in again.stdout.splitlines()]
    assert [d["status"] for d in docs[:-1]] == ["up-to-date"] * 3
    assert docs[-1] == {
        "event": "summary",
        "v": 1,
        "images": 3,
        **{"copied": 0, "up-to-date": 3, "would-copy": 0, "deferred": 0, "failed": 0},
    }


def test_all_tags_takes_repositories_not_tags(tagged: Registry, target: Registry) -> None:
    run = run_pypull("copy", "--all-tags", f"{tagged.host}/team/app:1.0", f"{target.host}/x")
    assert run.returncode == 2
    assert run.stderr.startswith("usage: pypull copy ")
    assert "pypull copy: error: --all-tags copies repositories" in run.stderr


# -- pypull sync --to PREFIX -------------------------------------------------------------------


def test_sync_puts_each_image_under_the_prefix_and_mounts_what_they_share(
    registry: Registry, target: Registry
) -> None:
    prefix = f"{target.host}/sync"
    a, b = f"{registry.host}/library/app-a:1", f"{registry.host}/library/app-b:1"
    run = run_pypull("sync", "--to", prefix, a, b)
    assert run.returncode == 0, run.stderr
    *lines, summary = run.stdout.splitlines()
    assert summary == "2 images: 2 copied"
    # The two go at once, so either may send a shared blob; the other mounts it.
    counts = {}
    for line in lines:
        m = re.fullmatch(
            r"(\S+) -> (\S+): copied \((\d+) uploaded, (\d+) mounted, 0 existing, .*\)", line
        )
        assert m, line
        counts[m[1]] = (m[2], int(m[3]), int(m[4]))
    assert counts[a][0] == f"{prefix}/library/app-a:1"
    assert counts[b][0] == f"{prefix}/library/app-b:1"
    assert counts[a][1] + counts[a][2] == 9 and counts[b][1] + counts[b][2] == 9
    assert counts[a][1] + counts[b][1] == 13  # the 5 shared blobs went once
    assert counts[a][2] + counts[b][2] == 5
    _, second_image = shared_pair()
    assert raw(target, "sync/library/app-b:1", creds=True) == second_image.raw


def test_sync_reads_a_list_and_a_dry_run_writes_nothing(
    registry: Registry, target: Registry, tmp_path: Path
) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text(
        f"# what the team needs\n{registry.host}/library/redis  # the cache\n\n"
        f"{registry.host}/library/dockerimg:latest\n"
    )
    log = AccessLog(target)
    run = run_pypull("sync", "--to", f"{target.host}/dry", "-f", listing, "--dry-run", "--json")
    assert run.returncode == 0, run.stderr
    docs = [json.loads(line) for line in run.stdout.splitlines()]
    assert sorted(d["target"] for d in docs[:-1]) == [
        f"{target.host}/dry/library/dockerimg:latest",
        f"{target.host}/dry/library/redis:latest",
    ]
    assert [d["status"] for d in docs[:-1]] == ["would-copy", "would-copy"]
    assert docs[-1] == {
        "event": "summary",
        "v": 1,
        "images": 2,
        **{"copied": 0, "up-to-date": 0, "would-copy": 2, "deferred": 0, "failed": 0},
    }
    assert [m for m, _ in log.requests() if m in ("PUT", "POST", "PATCH")] == []


def test_sync_goes_on_past_a_failure_unless_fail_fast(registry: Registry, target: Registry) -> None:
    missing, good = f"{registry.host}/library/gone:1", f"{registry.host}/library/redis"
    prefix = f"{target.host}/ff"
    run = run_pypull("sync", "--to", prefix, missing, good)
    assert run.returncode == 1
    lines = sorted(run.stdout.splitlines()[:-1])
    assert lines[0].startswith(f"{missing} -> ") and ": failed: " in lines[0]
    assert lines[1].startswith(f"{good}:latest -> ") and ": copied (" in lines[1]
    assert run.stdout.splitlines()[-1] == "2 images: 1 copied, 1 failed"
    # One image at a time, so that the failure comes first and the other is never started.
    fast = run_pypull("sync", "--fail-fast", "-j", "1", "--to", f"{prefix}2", missing, good)
    assert fast.returncode == 1
    assert fast.stdout.splitlines()[-1] == "1 image: 1 failed"


def test_a_source_with_tag_and_digest_is_read_by_digest_and_written_under_its_tag(
    registry: Registry, target: Registry
) -> None:
    image = redis()
    src = f"{registry.host}/library/redis:latest@{image.digest}"
    run = run_pypull("copy", src, f"{target.host}/pinned/redis")
    assert run.returncode == 0, run.stderr
    assert f"-> {target.host}/pinned/redis:latest: copied (" in run.stdout
    assert raw(target, "pinned/redis:latest", creds=True) == image.raw


# -- a target that wants credentials -------------------------------------------------------------


def test_a_copy_without_credentials_for_the_target_says_how_to_log_in(
    registry: Registry, target: Registry
) -> None:
    write_docker_config({"auths": {}})  # no credentials for the target, which wants them
    source, dest = f"{registry.host}/library/redis:latest", f"{target.host}/nocreds/redis:latest"
    run = run_pypull("copy", source, dest)
    assert run.returncode == 1
    assert run.stdout.startswith(f"{source} -> {dest}: failed: ")
    (error,) = run.stderr.splitlines()
    assert error.startswith(f"Error: {source} -> {dest}: ")
    assert error.endswith(
        f"; log in with `pypull login {target.host}` (or give --dest-creds USERNAME:PASSWORD)"
    )

    as_json = run_pypull("copy", "--format", "json", source, dest)
    assert as_json.returncode == 1
    record = json.loads(as_json.stdout)
    assert (record["event"], record["status"], record["code"]) == (
        "image",
        "failed",
        "unauthorized",
    )
    assert as_json.stderr == run.stderr
