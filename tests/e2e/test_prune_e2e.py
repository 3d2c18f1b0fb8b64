"""``pypull rmi`` and ``pypull prune`` against a real registry and a real store: what goes is
exactly what no remaining image uses, and the rest still reads with skopeo and umoci."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.images import Image, docker_media, make_image, make_layer
from fixtures.registry import Registry, push, running_registry
from tests.support.helpers import run_pypull, umoci_unpack


def three_images() -> tuple[Image, Image, Image]:
    """Three images over one 3-layer base; ``b`` also shares a layer with ``a``, and has one
    layer of its own."""
    base = tuple(
        make_layer("prune-base", i, 4096, whiteout_of=f"tmp/scratch-{i - 1}.txt" if i else None)
        for i in range(3)
    )
    a = make_image("prune/a", "1", layers=5, layer_size=4096, shared_layers=base)
    b = make_image(
        "prune/b", "1", layers=5, layer_size=4096, shared_layers=(*base, a.manifests[0].layers[3])
    )
    c = make_image("prune/c", "1", layers=4, layer_size=4096, shared_layers=base)
    return a, b, c


@pytest.fixture(scope="module")
def source(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Registry, tuple[Image, ...]]]:
    images = (*three_images(), docker_media())
    with running_registry(tmp_path_factory.mktemp("prune-registry")) as reg:
        for image in images:
            push(reg.url, image)
        yield reg, images


def pulled(reg: Registry, store: Path, *images: Image) -> None:
    for image in images:
        run = run_pypull("--store", store, "-q", f"{reg.host}/{image.repository}:{image.tag}")
        assert run.returncode == 0, run.stderr


def blobs(store: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (store / "blobs" / "sha256").iterdir()}


def image_blobs(image: Image) -> set[str]:
    m = image.manifests[0]
    return {m.digest, m.config.digest, *(layer.digest for layer in m.layers)}


def test_rmi_then_prune_deletes_exactly_what_only_that_image_used(
    source: tuple[Registry, tuple[Image, ...]], store: Path, tmp_path: Path
) -> None:
    reg, (a, b, c, _) = source
    pulled(reg, store, a, b, c)
    before = blobs(store)
    assert before == image_blobs(a) | image_blobs(b) | image_blobs(c)

    rmi = run_pypull("rmi", "--store", store, f"{reg.host}/prune/b:1")
    assert rmi.returncode == 0, rmi.stderr
    assert rmi.stdout == f"Untagged: {reg.host}/prune/b:1\n"
    assert blobs(store) == before  # blobs stay until a prune

    only_b = image_blobs(b) - image_blobs(a) - image_blobs(c)
    assert len(only_b) == 3  # b's manifest, config and own layer: the shared ones stay
    dry = run_pypull("prune", "--store", store, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    listed = {line.split()[2] for line in dry.stdout.splitlines() if line.startswith("Would")}
    assert listed == only_b
    assert dry.stdout.splitlines()[-1].startswith("Total reclaimable space: ")
    assert blobs(store) == before  # a dry run deletes nothing

    done = run_pypull("prune", "--store", store)
    assert done.returncode == 0, done.stderr
    deleted = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("Deleted")}
    assert deleted == only_b
    assert blobs(store) == before - only_b

    for image in (a, c):  # the others read with the reference tools
        ref = f"{reg.host}/{image.repository}:{image.tag}"
        inspect = subprocess.run(
            ["skopeo", "inspect", f"oci:{store}:{ref}"], capture_output=True, text=True
        )
        assert inspect.returncode == 0, inspect.stderr
        assert json.loads(inspect.stdout)["Layers"] == [
            layer.digest for layer in image.manifests[0].layers
        ]
        bundle = tmp_path / image.repository.replace("/", "-")
        rootfs = umoci_unpack(f"{store}:{ref}", bundle)
        assert (rootfs / "opt" / f"layer-{len(image.manifests[0].layers) - 1}").is_dir()
    verify = run_pypull("verify", "--store", store)
    assert verify.returncode == 0, verify.stdout
    again = run_pypull("prune", "--store", store)
    assert again.stdout == "Total reclaimed space: 0B\n"


def test_prune_keeps_the_docker_manifest_as_served_beside_its_oci_form(
    source: tuple[Registry, tuple[Image, ...]], store: Path
) -> None:
    reg, (*_, docker) = source
    pulled(reg, store, docker)
    before = blobs(store)
    assert docker.manifests[0].digest in before  # the served bytes, for push and Digest:
    done = run_pypull("prune", "--store", store)
    assert done.stdout == "Total reclaimed space: 0B\n", done.stdout
    assert blobs(store) == before
    ref = f"{reg.host}/{docker.repository}:{docker.tag}"
    assert run_pypull("rmi", "--store", store, ref).returncode == 0
    gone = run_pypull("prune", "--store", store, "--json")
    *removed, summary = [json.loads(line) for line in gone.stdout.splitlines()]
    assert {r["event"] for r in removed} == {"removed"} and summary["event"] == "summary"
    assert {r["digest"] for r in removed} == before
    assert summary["reclaimed"] == sum(r["size"] for r in removed) > 0
    assert (summary["removed"], summary["dry_run"]) == (len(removed), False)
    assert blobs(store) == set()


def test_rmi_of_a_name_not_in_the_store_says_so_and_removes_the_others(
    source: tuple[Registry, tuple[Image, ...]], store: Path
) -> None:
    reg, (a, b, *_) = source
    pulled(reg, store, a, b)
    run = run_pypull(
        "rmi", "--store", store, f"{reg.host}/prune/nothing:1", f"{reg.host}/prune/a:1"
    )
    assert run.returncode == 1
    assert run.stderr == f"Error: No such image: {reg.host}/prune/nothing:1\n"
    assert run.stdout == f"Untagged: {reg.host}/prune/a:1\n"
    names = [
        e["annotations"]["org.opencontainers.image.ref.name"]
        for e in json.loads((store / "index.json").read_text())["manifests"]
    ]
    assert names == [f"{reg.host}/prune/b:1"]


def test_prune_takes_old_partials_and_leaves_fresh_ones(
    source: tuple[Registry, tuple[Image, ...]], store: Path
) -> None:
    reg, (a, *_) = source
    pulled(reg, store, a)
    ingest = store / ".pypull" / "ingest"
    old, fresh = ingest / f"sha256-{'1' * 64}.partial", ingest / f"sha256-{'2' * 64}.partial"
    old.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"y" * 10)
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    run = run_pypull("prune", "--store", store)
    assert run.stdout.splitlines() == [
        f"Deleted: partial download sha256:{'1' * 64} (1kB)",
        "Total reclaimed space: 1kB",
    ]
    assert not old.exists() and fresh.exists()
    run = run_pypull("prune", "--store", store, "--partials-older-than", "0")
    assert not fresh.exists(), run.stdout
    bad = run_pypull("prune", "--store", store, "--partials-older-than", "soon")
    assert bad.returncode == 2 and "not a duration" in bad.stderr


def test_prune_refuses_a_store_it_cannot_be_sure_of(
    source: tuple[Registry, tuple[Image, ...]], store: Path
) -> None:
    reg, (a, *_) = source
    pulled(reg, store, a)
    stray = store / "blobs" / "sha256" / ("3" * 64)
    stray.write_bytes(b"garbage")
    manifest = store / "blobs" / "sha256" / a.manifests[0].digest.split(":")[1]
    manifest.chmod(0o644)
    manifest.write_bytes(manifest.read_bytes().replace(b'"layers"', b'"layerz"'))
    run = run_pypull("prune", "--store", store)
    assert run.returncode == 1
    assert "does not match its digest" in run.stderr and "nothing pruned" in run.stderr
    assert len(run.stderr.splitlines()) == 1
    assert stray.exists()


def test_the_python_api_removes_and_prunes_with_typed_records(
    source: tuple[Registry, tuple[Image, ...]], store: Path
) -> None:
    import puller

    reg, (a, _, c, _) = source
    pulled(reg, store, a, c)
    missing = puller.rmi([f"{reg.host}/prune/c:1", f"{reg.host}/prune/zzz"], store=store)
    assert missing == [f"{reg.host}/prune/zzz:latest"]
    dry = puller.prune(store, dry_run=True)
    assert isinstance(dry, puller.PruneResult) and dry.dry_run
    only_c = image_blobs(c) - image_blobs(a)
    assert {str(p.digest) for p in dry.removed} == only_c
    assert all(isinstance(p, puller.Pruned) and p.kind == "blob" for p in dry.removed)
    assert dry.reclaimed == sum(p.size for p in dry.removed) > 0
    done = puller.prune(store)
    assert done.removed == dry.removed and not done.dry_run
    assert blobs(store) == image_blobs(a)


def test_prune_takes_temporaries_a_killed_process_left_once_nobody_writes_them(
    source: tuple[Registry, tuple[Image, ...]], store: Path
) -> None:
    reg, (a, *_) = source
    pulled(reg, store, a)
    ingest = store / ".pypull" / "ingest"
    dead, live = ingest / ".staged-0123456789abcdef", ingest / ".index.json.fedcba9876543210"
    dead.write_bytes(b"z" * 2000)
    live.write_bytes(b"being written")
    for path, age in ((dead, 2 * 86400), (live, 600)):
        os.utime(path, (time.time() - age, time.time() - age))
    run = run_pypull("prune", "--store", store, "--partials-older-than", "0", "--json")
    removed = json.loads(run.stdout.splitlines()[0])
    assert removed == {
        "event": "removed",
        "v": 1,
        "kind": "temporary",
        "digest": None,
        "size": 2000,
    }
    assert not dead.exists()
    assert live.exists()  # ten minutes old: its writer may still be at it
    text = run_pypull("prune", "--store", store, "--dry-run")
    assert text.stdout == "Total reclaimable space: 0B\n"


def killed_load(store: Path, blobs: int) -> list[Path]:
    """``pypull load`` of an archive whose blobs come first (docker 25's order), killed with
    SIGKILL once it has staged ``blobs`` of them: what it left in ``.pypull/ingest``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(blobs):
            data = f"blob {i}".encode() * 500
            info = tarfile.TarInfo(f"blobs/sha256/{hashlib.sha256(data).hexdigest()}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        head = out.getvalue()  # before the archive's end: the load waits for more
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPULL_")}
    load = subprocess.Popen(
        [sys.executable, "-m", "puller", "load", "--store", str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert load.stdin is not None
    try:
        load.stdin.write(head)
        load.stdin.flush()
        deadline = time.monotonic() + 60
        while len(list((store / ".pypull" / "ingest").glob(".staged-*"))) < blobs:
            assert time.monotonic() < deadline and load.poll() is None, "nothing staged"
            time.sleep(0.05)
    finally:
        load.send_signal(signal.SIGKILL)
        load.wait()
        load.stdin.close()
    return sorted((store / ".pypull" / "ingest").glob(".staged-*"))


@pytest.mark.parametrize("flags", [[], ["--partials-older-than", "7d"]])
def test_prune_takes_a_killed_load_s_staged_files_after_an_hour(
    store: Path, flags: list[str]
) -> None:
    """A load's staged files are never resumed, unlike a partial download: the first prune
    once they are an hour old takes them, whatever age partials are kept to (24 h by default),
    and a partial download of the same age stays."""
    staged = killed_load(store, 2)
    assert len(staged) == 2
    partial = store / ".pypull" / "ingest" / f"sha256-{'4' * 64}.partial"
    partial.write_bytes(b"p" * 100)
    for path in (*staged, partial):
        os.utime(path, (time.time() - 50 * 60,) * 2)
    run = run_pypull("prune", "--store", store, *flags)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "Total reclaimed space: 0B\n"  # fifty minutes: maybe still written
    for path in (*staged, partial):
        os.utime(path, (time.time() - 2 * 3600,) * 2)
    run = run_pypull("prune", "--store", store, *flags)
    assert run.returncode == 0, run.stderr
    deleted = sorted(line.rpartition(" (")[0] for line in run.stdout.splitlines()[:-1])
    assert deleted == [f"Deleted: temporary file {path}" for path in staged]
    assert not any(path.exists() for path in staged)
    assert partial.exists()
