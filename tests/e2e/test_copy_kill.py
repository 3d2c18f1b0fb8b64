"""``kill -9`` in the middle of a 300 MB layer's copy, then the same command: it completes and
the target holds the source's image byte for byte (the acceptance line of issue 10)."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.images import Blob, Image, make_manifest
from fixtures.registry import Registry, push, running_registry
from tests.support.helpers import run_pypull

MiB = 1024 * 1024
LAYER_MIB = 300
#: Killed once the target holds this much of the layer's upload: well inside it, either side.
KILL_AT = LAYER_MIB * MiB // 3


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, bytes, str]]:
    """A registry of its own holding ``kill/big:1``: a config and one 300 MB layer.

    The layer is a repeated random MiB with an uncompressed-tar media type: the registries
    neither compress nor look inside it, and it takes a tenth of a second to make, where a
    real 300 MB tar+gzip layer takes two. Yields the registry, the manifest's bytes and the
    layer's digest (not the 300 MB, which the tests need no more).
    """
    layer = Blob("application/vnd.oci.image.layer.v1.tar", os.urandom(MiB) * LAYER_MIB)
    manifest = make_manifest([layer], seed="copy-kill")
    image = Image("kill/big", "1", manifest.media_type, manifest.raw, (manifest,))
    with running_registry(tmp_path_factory.mktemp("kill-source")) as reg:
        push(reg.url, image)
        pushed = image.raw, layer.digest
        del image, manifest, layer
        yield reg, *pushed


def status_of(registry: Registry, method: str, path: str) -> int:
    """The status of a bodiless request to the registry (http.client: no proxy variables)."""
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=30)
    try:
        conn.request(method, path, headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        return conn.getresponse().status
    finally:
        conn.close()


def uploaded(registry: Registry, repository: str) -> int:
    """Bytes in the registry's unfinished upload sessions of ``repository``."""
    uploads = registry.storage / "docker/registry/v2/repositories" / repository / "_uploads"
    total = 0
    for data in uploads.glob("*/data"):
        try:
            total += data.stat().st_size
        except FileNotFoundError:  # the session completed (or went) between glob and stat
            continue
    return total


def raw(registry: Registry, name: str) -> bytes:
    """What ``skopeo inspect --raw`` reads at ``registry``/``name``."""
    return subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{name}"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout


def test_a_copy_killed_mid_layer_completes_when_run_again(
    source: tuple[Registry, bytes, str], tmp_path: Path
) -> None:
    src, manifest, layer = source
    with running_registry(tmp_path / "target") as target:
        argv = ["copy", f"{src.host}/kill/big:1", f"{target.host}/kill/big:1"]
        first = subprocess.Popen(
            [sys.executable, "-m", "puller", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        seen = 0  # bytes of the layer at the target when it was killed
        try:
            deadline = time.monotonic() + 60
            while first.poll() is None and time.monotonic() < deadline:
                seen = uploaded(target, "kill/big")
                if seen >= KILL_AT:
                    first.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.005)  # polling the target's disk: there is no event to wait on
        finally:
            if first.poll() is None and seen < KILL_AT:
                first.kill()  # stuck: not the kill under test
            out, err = first.communicate(timeout=30)
        assert seen >= KILL_AT and first.returncode == -signal.SIGKILL, (
            f"the copy was not killed mid-upload (exit {first.returncode}, {seen} bytes at the"
            f" target):\n{out!r}\n{err!r}"
        )
        # Killed before it finished: the target has neither the tag nor the layer.
        assert status_of(target, "HEAD", "/v2/kill/big/manifests/1") == 404
        assert status_of(target, "HEAD", f"/v2/kill/big/blobs/{layer}") == 404

        again = run_pypull(*argv, timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert ": copied (" in again.stdout, again.stdout
        assert raw(target, "kill/big:1") == raw(src, "kill/big:1") == manifest
        assert status_of(target, "HEAD", f"/v2/kill/big/blobs/{layer}") == 200
