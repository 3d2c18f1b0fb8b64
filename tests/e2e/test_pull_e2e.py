"""End to end against the real distribution registry: what a user of `pypull` sees and gets.

Every test runs the real command (``python -m puller``) and checks its output, its exit code, the
OCI layout it leaves, and, through the registry's access log, which requests reached the registry.
Docker Hub images go through ``--mirror URL --mirror-only`` so nothing ever leaves loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import puller
from fixtures.images import (
    Image,
    docker_media,
    make_image,
    make_layer,
    make_manifest,
    multiplatform,
    redis,
    shared_pair,
)
from fixtures.registry import Registry, free_port, push
from tests.support.helpers import AccessLog, on_a_terminal, partials, run_pypull

OCI_REF_NAME = "org.opencontainers.image.ref.name"


def hub_args(registry: Registry) -> list[str]:
    return ["--mirror", registry.url, "--mirror-only"]


def layer_ids(image: Image, platform: tuple[str, str, str | None] | None = None) -> list[str]:
    m = image.manifest_for(*platform) if platform else image.manifests[0]
    return [layer.digest.split(":")[1][:12] for layer in m.layers]


def index_entries(store: Path) -> dict[str, dict[str, object]]:
    doc = json.loads((store / "index.json").read_text())
    return {e["annotations"][OCI_REF_NAME]: e for e in doc["manifests"]}


def blob_files(store: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (store / "blobs" / "sha256").iterdir()}


def unique_image(layers: int = 3, family: str = "oci") -> Image:
    """An image no other test shares, for tests that corrupt what the registry serves."""
    name = f"test/{uuid.uuid4().hex[:12]}"
    return make_image(name, "v1", layers=layers, family=family)  # type: ignore[arg-type]


# -- the core path --------------------------------------------------------------------------------


def test_pull_through_mirror_prints_docker_lines_and_a_readable_oci_layout(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    image = redis()
    ids = layer_ids(image)
    run = run_pypull(*hub_args(registry), "--store", store, "redis:latest")

    assert run.returncode == 0, run.stderr
    assert "\r" not in run.stdout  # not a terminal: plain lines, never a bar
    lines = run.stdout.splitlines()
    assert lines[0] == "latest: Pulling from library/redis"
    assert [line for line in lines if line.endswith(": Pulling fs layer")] == [
        f"{i}: Pulling fs layer" for i in ids
    ]
    # the concurrency limit is 3, and the largest layers go first: every other layer waits
    sizes = {i: len(x.data) for i, x in zip(ids, image.manifests[0].layers, strict=True)}
    by_size = sorted(ids, key=lambda i: -sizes[i])
    assert [line for line in lines if line.endswith(": Waiting")] == [
        f"{i}: Waiting" for i in by_size[3:]
    ]
    for i in ids:
        assert lines.index(f"{i}: Verifying Checksum") < lines.index(f"{i}: Download complete")
        assert lines.index(f"{i}: Download complete") < lines.index(f"{i}: Pull complete")
    assert [line for line in lines if line.endswith("Pull complete")] == [
        f"{i}: Pull complete" for i in ids
    ]  # bottom layer first, like docker
    assert lines[-3:] == [
        f"Digest: {image.digest}",
        "Status: Downloaded newer image for redis:latest",
        "docker.io/library/redis:latest",
    ]
    assert run.stderr == ""

    # The store is an OCI layout that skopeo reads.
    assert json.loads((store / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    entry = index_entries(store)["docker.io/library/redis:latest"]
    assert entry["digest"] == image.digest
    assert blob_files(store) == {b.digest for b in image.blobs} | {image.digest}
    assert partials(store) == set()
    out = tmp_path / "skopeo-dir"
    copy = subprocess.run(
        ["skopeo", "copy", f"oci:{store}:docker.io/library/redis:latest", f"dir:{out}"],
        capture_output=True,
        text=True,
    )
    assert copy.returncode == 0, copy.stderr
    assert json.loads((out / "manifest.json").read_bytes()) == json.loads(image.raw)


def test_second_pull_is_up_to_date_and_requests_no_blob(registry: Registry, store: Path) -> None:
    ids = layer_ids(redis())
    assert run_pypull(*hub_args(registry), "--store", store, "redis").returncode == 0
    log = AccessLog(registry)
    run = run_pypull(*hub_args(registry), "--store", store, "redis")

    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "Using default tag: latest"
    assert [line for line in lines if ": " in line and line[:12] in ids] == [
        f"{i}: Already exists" for i in ids
    ]
    assert "Status: Image is up to date for redis:latest" in lines
    assert log.blob_requests() == []
    # Docker Hub counts a manifest GET as a pull, a HEAD not: a re-pull asks by HEAD only.
    assert [m for m, p in log.requests() if "/manifests/" in p] == ["HEAD"]


def test_an_up_to_date_pull_imports_only_what_it_uses(registry: Registry, store: Path) -> None:
    """Start-up is most of an up-to-date pull's time: a registry that asks for no credentials
    costs no credential store, and the pull loads no other operation's modules."""
    ref = f"{registry.host}/library/redis:latest"
    assert run_pypull("--store", store, ref).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPULL_")}
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "puller", "-q", "--store", store, ref],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in run.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "puller.pulling" in imported
    unused = {
        "platform",  # host_platform() reads os.uname()
        "tempfile",
        "puller.registry.credentials",
        "puller.copying",
        "puller.inspecting",
        "puller.archive",
        "puller.unpacking",
        "puller.store.prune",
        "tarfile",
    }
    assert imported & unused == set()


def test_a_multi_platform_re_pull_asks_only_by_head(registry: Registry, store: Path) -> None:
    ref = f"{registry.host}/library/multi:latest"
    first = run_pypull("--store", store, "--platform", "linux/arm64", ref)
    assert first.returncode == 0, first.stderr
    log = AccessLog(registry)
    run = run_pypull("--store", store, "--platform", "linux/arm64", ref)
    assert run.returncode == 0, run.stderr
    assert f"Status: Image is up to date for {ref}" in run.stdout.splitlines()
    assert [m for m, p in log.requests() if "/manifests/" in p] == ["HEAD"]


def test_a_re_pull_after_the_tag_moved_fetches_the_new_manifest(
    registry: Registry, store: Path
) -> None:
    """The HEAD says another digest, which the store does not hold: it is fetched."""
    ref = f"{registry.host}/library/moving:1"
    push(registry.url, make_image("library/moving", "1", layers=1, seed="moving-a"))
    assert run_pypull("--store", store, ref).returncode == 0
    push(registry.url, make_image("library/moving", "1", layers=1, seed="moving-b"))
    log = AccessLog(registry)
    run = run_pypull("--store", store, ref)
    assert run.returncode == 0, run.stderr
    assert "Status: Downloaded newer image for " + ref in run.stdout.splitlines()
    assert [m for m, p in log.requests() if "/manifests/" in p] == ["HEAD", "GET"]


def test_umoci_unpacks_the_store_and_applies_whiteouts(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    assert run_pypull(*hub_args(registry), "--store", store, "redis").returncode == 0
    bundle = tmp_path / "bundle"
    unpack = subprocess.run(
        ["umoci", "unpack", "--image", f"{store}:docker.io/library/redis:latest", str(bundle)],
        capture_output=True,
        text=True,
    )
    assert unpack.returncode == 0, unpack.stderr
    rootfs = bundle / "rootfs"
    assert (rootfs / "opt/layer-7/current").is_symlink()
    assert (rootfs / "tmp/scratch-7.txt").exists()
    assert not (rootfs / "tmp/scratch-6.txt").exists()  # deleted by layer 7's whiteout


def test_quiet_prints_only_the_reference(registry: Registry, store: Path) -> None:
    run = run_pypull(*hub_args(registry), "--store", store, "-q", "redis:latest")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "docker.io/library/redis:latest\n"


def test_images_lists_what_the_store_holds(registry: Registry, store: Path) -> None:
    image = redis()
    assert run_pypull(*hub_args(registry), "--store", store, "redis").returncode == 0
    config = image.manifests[0].config
    run = run_pypull("images", "--digests", "--store", store)
    assert run.returncode == 0, run.stderr
    header, row = run.stdout.splitlines()
    assert header.split() == ["REPOSITORY", "TAG", "DIGEST", "IMAGE", "ID", "SIZE", "(COMPRESSED)"]
    assert row.split()[:4] == ["redis", "latest", image.digest, config.digest[7:19]]
    plain = run_pypull("images", "redis", "--store", store).stdout.splitlines()
    assert plain[1].split()[:3] == ["redis", "latest", config.digest[7:19]]
    assert run_pypull("images", "nginx", "--store", store).stdout.splitlines()[1:] == []


# -- several images -------------------------------------------------------------------------------


def test_shared_layers_are_downloaded_once(registry: Registry, store: Path) -> None:
    _, b = shared_pair()
    assert run_pypull(*hub_args(registry), "--store", store, "app-a:1").returncode == 0
    log = AccessLog(registry)
    run = run_pypull(*hub_args(registry), "--store", store, "app-b:1")

    assert run.returncode == 0, run.stderr
    ids = layer_ids(b)
    lines = run.stdout.splitlines()
    assert [f"{i}: Already exists" for i in ids[:5]] == [x for x in lines if "Already" in x]
    assert [f"{i}: Pull complete" for i in ids[5:]] == [x for x in lines if "Pull complete" in x]
    own = {layer.digest for layer in b.manifests[0].layers[5:]} | {b.manifests[0].config.digest}
    assert sorted(log.blob_requests()) == sorted(own)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_pull_on_either_event_loop(registry: Registry, store: Path, loop: str) -> None:
    """uvloop is used when installed; PYPULL_EVENT_LOOP=asyncio is the plain path."""
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    image = unique_image(layers=3)
    push(registry.url, image)
    ref = f"{registry.host}/{image.repository}:{image.tag}"
    run = run_pypull("--store", store, ref, env={"PYPULL_EVENT_LOOP": loop})
    assert run.returncode == 0, run.stderr
    assert sum("Pull complete" in line for line in run.stdout.splitlines()) == 3
    assert index_entries(store)[ref]["digest"] == image.digest
    verify = run_pypull("verify", "--store", store)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_an_old_uvloop_without_run_falls_back_to_asyncio(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    """Debian 12 packages uvloop 0.17, which has no uvloop.run."""
    fake = tmp_path / "old" / "uvloop"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "0.17.0"\n')
    image = unique_image(layers=2)
    push(registry.url, image)
    ref = f"{registry.host}/{image.repository}:{image.tag}"
    run = run_pypull("--store", store, ref, env={"PYTHONPATH": str(fake.parent)})
    assert run.returncode == 0, run.stderr
    assert index_entries(store)[ref]["digest"] == image.digest


def test_an_unknown_event_loop_is_a_one_line_error(registry: Registry, store: Path) -> None:
    run = run_pypull("--store", store, f"{registry.host}/x/y:1", env={"PYPULL_EVENT_LOOP": "tokio"})
    assert run.returncode == 1
    assert run.stderr == "Error: PYPULL_EVENT_LOOP=tokio: expected asyncio or uvloop\n"
    assert not store.exists()


def test_largest_layers_are_fetched_first(registry: Registry, store: Path) -> None:
    """The pull lasts at least as long as its largest layer: that one must not start last."""
    sizes = [10_000, 300_000, 1_000, 200_000]
    layers = [make_layer("largest-first", i, size) for i, size in enumerate(sizes)]
    manifest = make_manifest(layers, seed="largest-first")
    image = Image("order/largest", "1", manifest.media_type, manifest.raw, (manifest,))
    push(registry.url, image)
    log = AccessLog(registry)
    run = run_pypull("--store", store, "-j", "1", f"{registry.host}/order/largest:1")
    assert run.returncode == 0, run.stderr
    fetched = [d for d in log.blob_requests() if d != manifest.config.digest]
    by_size = sorted(layers, key=lambda layer: -len(layer.data))
    assert fetched == [layer.digest for layer in by_size]
    # ... while the output still reports them bottom first, as docker does
    complete = [x.split(":")[0] for x in run.stdout.splitlines() if "Pull complete" in x]
    assert complete == [layer.digest.split(":")[1][:12] for layer in layers]


async def test_concurrent_pulls_in_one_process_share_downloads(
    registry: Registry, store: Path
) -> None:
    a, b = shared_pair()
    log = AccessLog(registry)
    async with puller.Puller(store, mirrors=[registry.url], mirror_only=True) as p:
        ra, rb = await asyncio.gather(p.pull("app-a:1"), p.pull("app-b:1"))
    assert str(ra.digest) == a.digest and str(rb.digest) == b.digest
    wanted = {blob.digest for blob in a.blobs + b.blobs}
    requested = log.blob_requests()
    assert sorted(requested) == sorted(wanted)  # each blob exactly once, shared ones included
    assert set(index_entries(store)) == {"docker.io/library/app-a:1", "docker.io/library/app-b:1"}


# -- platforms, digests, media types --------------------------------------------------------------


def test_platform_selects_the_arm64_manifest_from_an_index(registry: Registry, store: Path) -> None:
    image = multiplatform()
    arm = image.manifest_for("linux", "arm64", "v8")
    amd = image.manifest_for("linux", "amd64")
    run = run_pypull(
        *hub_args(registry), "--store", store, "--platform", "linux/arm64/v8", "multi:latest"
    )
    assert run.returncode == 0, run.stderr
    assert f"Digest: {image.digest}" in run.stdout.splitlines()  # the index the tag resolved to
    stored = blob_files(store)
    assert {layer.digest for layer in arm.layers} <= stored
    assert not {layer.digest for layer in amd.layers} & stored
    entry = index_entries(store)["docker.io/library/multi:latest"]
    assert entry["digest"] == arm.digest
    assert entry["platform"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}


def test_platform_missing_from_the_index_lists_what_it_has(registry: Registry, store: Path) -> None:
    run = run_pypull(*hub_args(registry), "--store", store, "--platform", "linux/s390x", "multi")
    assert run.returncode == 1
    assert run.stderr.strip() == (
        "Error: no manifest for platform linux/s390x in docker.io/library/multi:latest "
        "(available: linux/amd64, linux/arm64/v8)"
    )
    assert not store.exists()


def test_pull_by_digest(registry: Registry, store: Path) -> None:
    image = redis()
    run = run_pypull(*hub_args(registry), "--store", store, f"redis@{image.digest}")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == f"{image.digest}: Pulling from library/redis"
    assert lines[-1] == f"docker.io/library/redis@{image.digest}"
    assert f"Status: Downloaded newer image for redis@{image.digest}" in lines
    assert index_entries(store)[f"docker.io/library/redis@{image.digest}"]["digest"] == image.digest


def test_pull_by_digest_fails_when_the_registry_serves_other_bytes(
    registry: Registry, store: Path
) -> None:
    image, other = unique_image(), unique_image()
    push(registry.url, image)
    push(registry.url, other)
    data = registry.blob_data_path(image.digest)
    original = data.read_bytes()
    data.write_bytes(other.raw)  # a valid manifest, but not the one the digest names
    try:
        ref = f"{registry.host}/{image.repository}@{image.digest}"
        run = run_pypull("--store", store, ref)
    finally:
        data.write_bytes(original)
    assert run.returncode == 1
    assert run.stderr.startswith(f"Error: digest mismatch for {image.digest} from {registry.url}")
    assert f"got {other.digest}" in run.stderr
    assert len(run.stderr.splitlines()) == 1
    assert not (store / "index.json").exists() or index_entries(store) == {}


def test_docker_media_type_image_is_stored_in_oci_form(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    """skopeo and umoci read only OCI manifests from a layout, so (like `skopeo copy`) the store
    records a Docker v2 image by its OCI form; the Digest line is still the registry's."""
    image = docker_media()
    run = run_pypull(*hub_args(registry), "--store", store, "dockerimg")
    assert run.returncode == 0, run.stderr
    assert f"Digest: {image.digest}" in run.stdout.splitlines()
    entry = index_entries(store)["docker.io/library/dockerimg:latest"]
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["annotations"]["io.pypull.resolved.digest"] == image.digest
    oci = json.loads((store / "blobs" / "sha256" / entry["digest"][7:]).read_bytes())
    original = json.loads(image.raw)
    assert oci["config"]["digest"] == original["config"]["digest"]
    assert [d["digest"] for d in oci["layers"]] == [d["digest"] for d in original["layers"]]
    assert {d["mediaType"] for d in oci["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    }
    copy = subprocess.run(
        ["skopeo", "copy", f"oci:{store}:docker.io/library/dockerimg:latest", f"dir:{tmp_path}/d"],
        capture_output=True,
        text=True,
    )
    assert copy.returncode == 0, copy.stderr


def test_non_hub_registry_is_pulled_directly_over_http_on_loopback(
    registry: Registry, store: Path
) -> None:
    run = run_pypull("--store", store, f"{registry.host}/library/redis:latest")
    assert run.returncode == 0, run.stderr
    assert f"{registry.host}/library/redis:latest" in index_entries(store)


# -- failures -------------------------------------------------------------------------------------


def test_corrupt_blob_fails_stores_nothing_and_a_later_pull_succeeds(
    registry: Registry, store: Path
) -> None:
    image = unique_image()
    push(registry.url, image)
    bad = image.manifests[0].layers[1]
    data = registry.blob_data_path(bad.digest)
    original = data.read_bytes()
    data.write_bytes(bytes(b ^ 0xFF for b in original[:16]) + original[16:])  # same size
    ref = f"{registry.host}/{image.repository}:v1"
    try:
        run = run_pypull("--store", store, ref)
    finally:
        data.write_bytes(original)

    assert run.returncode == 1
    err = run.stderr.strip()
    assert err.startswith(
        f"Error: digest mismatch for {bad.digest} from {registry.url}: got sha256:"
    )
    assert "Traceback" not in run.stderr
    assert bad.digest not in blob_files(store)
    # the bad one is gone; others cut short may stay, to be resumed
    assert partials(store) <= {b.digest for b in image.blobs} - {bad.digest}
    assert index_entries(store) == {}

    again = run_pypull("--store", store, ref)
    assert again.returncode == 0, again.stderr
    assert bad.digest in blob_files(store)
    assert ref in index_entries(store)


def test_manifest_not_found(registry: Registry, store: Path) -> None:
    run = run_pypull(*hub_args(registry), "--store", store, "redis:nosuchtag")
    assert run.returncode == 1
    assert run.stderr == (
        "Error: manifest for docker.io/library/redis:nosuchtag not found: manifest unknown\n"
    )
    assert not store.exists()


def test_unreachable_mirror_is_one_line_and_leaves_no_store(store: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    run = run_pypull("--mirror", dead, "--mirror-only", "--store", store, "redis")
    assert run.returncode == 1
    assert run.stderr.startswith(f"Error: cannot reach {dead}")
    assert len(run.stderr.splitlines()) == 1
    assert not store.exists()


def test_a_dead_mirror_falls_back_to_the_next(registry: Registry, store: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    run = run_pypull("--mirror", dead, *hub_args(registry), "--store", store, "redis")
    assert run.returncode == 0, run.stderr
    assert "docker.io/library/redis:latest" in index_entries(store)


async def test_a_dead_mirror_falls_back_to_the_upstream(registry: Registry, store: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = await puller.pull(
        "redis", store=store, mirrors=[dead], upstreams={"docker.io": registry.url}
    )
    assert result.endpoint == registry.url
    assert [str(d.digest) for d in result.layers] == [
        layer.digest for layer in redis().manifests[0].layers
    ]


def test_terminal_output_shows_bars_and_final_lines(registry: Registry, store: Path) -> None:
    """On a TTY each layer's states are redrawn in place on its line (the screen a person sees
    is tests/cli/test_terminal_view.py's); the Pull complete lines remain."""
    screen = on_a_terminal(*hub_args(registry), "--store", store, "redis")
    for i in layer_ids(redis()):
        assert f"{i}: Pull complete\n" in screen.replace("\r", "")
    assert "Status: Downloaded newer image for redis:latest" in screen
