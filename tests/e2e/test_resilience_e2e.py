"""Interrupted, concurrent and starved pulls against the real registry.

A pull killed with SIGKILL resumes where it stopped; several `pypull` processes share one store;
a full disk or an unwritable store gives a one-line error. `pypull verify` is the judge of the
store each time.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from fixtures.images import make_image, multiplatform, redis, shared_pair
from fixtures.registry import Registry, push
from tests.support.helpers import AccessLog, partials, run_pypull

BIG_LAYER = 160 * 1024 * 1024


def ref_names(store: Path) -> set[str]:
    doc = json.loads((store / "index.json").read_text())
    return {m["annotations"]["org.opencontainers.image.ref.name"] for m in doc["manifests"]}


def verify_clean(store: Path) -> str:
    run = run_pypull("verify", "--store", store)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1].endswith(": no problems")
    return run.stdout


def pypull_argv(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "puller", *map(str, args)]


def test_a_pull_killed_mid_layer_resumes_with_range_and_completes(
    registry: Registry, store: Path
) -> None:
    image = make_image(f"test/big-{uuid.uuid4().hex[:8]}", "1", layers=1, layer_size=BIG_LAYER)
    push(registry.url, image)
    layer = image.manifests[0].layers[0]
    ref = f"{registry.host}/{image.reference}"
    partial = store / ".pypull" / "ingest" / f"sha256-{layer.digest[7:]}.partial"

    proc = subprocess.Popen(
        pypull_argv("-q", "--store", store, ref),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Wait (bounded) until a good part of the layer is on disk, then pull the plug.
    for _ in range(3000):
        if partial.exists() and partial.stat().st_size > layer.size // 8:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.005)  # the other process's progress has no event to wait on
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial.exists(), "the pull finished before it could be killed mid-layer"
    kept = partial.stat().st_size
    assert 0 < kept < layer.size, "the kill should land mid-layer"

    log = AccessLog(registry)
    again = run_pypull("--store", store, ref)
    assert again.returncode == 0, again.stderr
    # The registry may log the killed request late, as it notices the client gone: the last
    # GET of the layer is the second run's.
    blob_gets = [e for e in log.entries() if e[0] == "GET" and e[1].endswith(layer.digest)]
    assert 1 <= len(blob_gets) <= 2
    _, _, status, sent = blob_gets[-1]
    assert status == 206  # asked with Range: bytes=<kept>-
    assert sent <= layer.size - kept  # fewer bytes the second time
    assert partials(store) == set()
    assert ref in ref_names(store)
    verify_clean(store)


def test_four_processes_pulling_overlapping_images_into_one_store(
    registry: Registry, store: Path
) -> None:
    a, b = shared_pair()
    jobs = [["redis", "app-a:1"], ["app-b:1", "redis"], ["app-a:1", "multi"], ["app-b:1"]]
    log = AccessLog(registry)
    procs = [
        subprocess.Popen(
            pypull_argv("-q", "--mirror", registry.url, "--mirror-only", "--store", store, *job),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for job in jobs
    ]
    outcomes = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        for stream in (p.stdout, p.stderr):
            if stream:
                stream.close()
    assert outcomes == [(0, "")] * 4
    assert ref_names(store) == {
        "docker.io/library/redis:latest",
        "docker.io/library/app-a:1",
        "docker.io/library/app-b:1",
        "docker.io/library/multi:latest",
    }
    # The per-blob lock makes the second process wait for the first, then find the blob stored.
    wanted = {blob.digest for image in (redis(), a, b) for blob in image.blobs}
    wanted |= {blob.digest for blob in multiplatform().manifest_for("linux", "amd64").blobs}
    fetched = [path.rsplit("/", 1)[1] for method, path in log.requests() if "/blobs/" in path]
    assert sorted(fetched) == sorted(wanted)
    assert partials(store) == set()
    verify_clean(store)


def _limit_file_size(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_disk_is_a_one_line_error_and_leaves_no_blob(
    registry: Registry, store: Path
) -> None:
    image = make_image(f"test/full-{uuid.uuid4().hex[:8]}", "1", layers=2, layer_size=256 * 1024)
    push(registry.url, image)
    run = subprocess.run(
        pypull_argv("--store", store, f"{registry.host}/{image.reference}"),
        capture_output=True,
        text=True,
        preexec_fn=lambda: _limit_file_size(64 * 1024),
    )
    assert run.returncode == 1
    [line] = run.stderr.splitlines()
    assert line.startswith(f"Error: cannot write {store}/.pypull/ingest/sha256-")
    assert line.endswith(".partial: File too large")
    stored = {f"sha256:{p.name}" for p in (store / "blobs" / "sha256").iterdir()}
    layers = {layer.digest for layer in image.manifests[0].layers}
    assert not stored & layers
    # the layer that hit the limit is not kept; blobs cut short by its failure may be (resumable)
    assert partials(store) <= {b.digest for b in image.blobs}
    assert len(partials(store) & layers) < len(layers)
    verify_clean(store)  # whatever did get stored is whole


def test_an_unwritable_store_is_a_one_line_error(tmp_path: Path, registry: Registry) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    run = run_pypull("--store", blocker / "store", f"{registry.host}/library/redis")
    assert run.returncode == 1
    assert run.stderr == f"Error: cannot create store at {blocker}/store: Not a directory\n"


def test_verify_reports_a_corrupt_blob_and_exits_1(registry: Registry, store: Path) -> None:
    assert run_pypull("--store", store, f"{registry.host}/library/redis").returncode == 0
    verify_clean(store)
    layer = redis().manifests[0].layers[3]
    path = store / "blobs" / "sha256" / layer.digest[7:]
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    run = run_pypull("verify", "--store", store)
    assert run.returncode == 1
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"corrupt blob {layer.digest}: content hashes to sha256:")
    assert lines[0].endswith(f"; used by {registry.host}/library/redis:latest")
    assert lines[-1].endswith(": 1 problem")


def test_a_damaged_layer_is_repaired_by_verify_repair_and_a_pull(
    registry: Registry, store: Path
) -> None:
    ref = f"{registry.host}/library/redis:latest"
    assert run_pypull("--store", store, ref).returncode == 0
    layer = redis().manifests[0].layers[2]
    path = store / "blobs" / "sha256" / layer.digest[7:]
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    verify = run_pypull("verify", "--store", store)
    assert verify.returncode == 1
    assert verify.stdout.splitlines()[0].endswith(f"; used by {ref}")

    repair = run_pypull("verify", "--repair", "--store", store)
    assert repair.returncode == 3, repair.stdout + repair.stderr
    lines = repair.stdout.splitlines()
    assert lines[0].startswith(f"Removed: corrupt blob {layer.digest}: ")
    assert f"{ref}: layer {layer.digest} is missing" in lines
    assert lines[-1] == f"To fetch what is missing: pypull pull {ref}"
    assert not path.exists()

    log = AccessLog(registry)
    pull = run_pypull("--store", store, ref)
    assert pull.returncode == 0, pull.stderr
    assert f"{layer.digest[7:19]}: Pull complete" in pull.stdout.splitlines()
    assert f"Status: Downloaded newer image for {ref}" in pull.stdout
    assert log.blob_requests() == [layer.digest]
    assert path.read_bytes() == layer.data
    verify_clean(store)
