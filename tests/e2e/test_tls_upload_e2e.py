"""``pypull copy``, ``push`` and ``sync`` into the real registry as operations teams run it:
behind TLS from a CA of its own (made here with openssl) and htpasswd auth, trusted through
``ca_file`` and logged into with ``pypull login`` (or docker's ``config.json``). Blobs from 1
byte to over 100 MB, in one streamed PUT and in PATCH chunks, on the default event loop (uvloop
where installed) and on plain asyncio; every blob at the target hashes to its digest."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.images import Blob, Image, make_layer, make_manifest
from fixtures.registry import (
    PASSWORD,
    USER,
    Registry,
    push,
    running_registry,
    running_secure_registry,
)
from tests.support.auth import (
    basic_auth,
    write_docker_config,
    write_pypull_config,
)
from tests.support.helpers import raw, run_pypull

MiB = 1024 * 1024
RAW_LAYER = "application/vnd.oci.image.layer.v1.tar"
#: Around the pieces a copy hands the TLS layer (2 MiB) and past where uploads used to stall.
SIZES = [1, 64 * 1024 + 1, 2 * MiB - 1, 2 * MiB + 3, 12 * MiB]
BIG = 110 * MiB


def tls_image() -> Image:
    """A single-platform image whose blobs span 1 byte to over 100 MB."""
    rng = random.Random("tls-upload")
    layers = [Blob(RAW_LAYER, rng.randbytes(size)) for size in SIZES]
    layers.append(make_layer("tls-upload", len(SIZES), BIG))
    manifest = make_manifest(layers, seed="tls-upload")
    return Image("big/tls", "1", manifest.media_type, manifest.raw, (manifest,))


@pytest.fixture(scope="module")
def image() -> Image:
    return tls_image()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, image: Image) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("tls-source")) as reg:
        push(reg.url, image)
        yield reg


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    """The target: HTTPS with a certificate from the test's own CA, htpasswd auth."""
    with running_secure_registry(tmp_path_factory.mktemp("tls-target")) as secured:
        yield secured


def trust_and_login(target: Registry, ca: Path, chunk_mib: int | None = None) -> None:
    """config.toml trusts the CA (and maybe uploads in PATCH chunks); config.json logs in."""
    options = f'server = "https://{target.host}"\nca_file = "{ca}"\n'
    if chunk_mib is not None:
        options += f"upload_chunk_mib = {chunk_mib}\n"
    write_pypull_config(f'[registry."{target.host}"]\n{options}')
    write_docker_config({"auths": {target.host: {"auth": basic_auth(USER, PASSWORD)}}})


def login(target: Registry) -> subprocess.CompletedProcess[str]:
    """``pypull login -u USER --password-stdin HOST``, as the README's set-up does it."""
    argv = [sys.executable, "-m", "puller", "login", "-u", USER, "--password-stdin", target.host]
    return subprocess.run(argv, input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)


def assert_identical_at(target: Registry, repository: str, tag: str, image: Image) -> None:
    """The tag names the image's manifest, and every blob the registry keeps is the source's."""
    assert raw(target, f"{repository}:{tag}", creds=True) == image.raw
    for blob in image.blobs:
        data = target.blob_data_path(blob.digest)
        h = hashlib.sha256()
        with data.open("rb") as f:
            while piece := f.read(4 * MiB):
                h.update(piece)
        assert (data.stat().st_size, "sha256:" + h.hexdigest()) == (blob.size, blob.digest)


LOOPS = {"default-loop": {}, "asyncio": {"PYPULL_EVENT_LOOP": "asyncio"}}


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("chunk_mib", [None, 4], ids=["streamed", "chunked"])
def test_copy_into_a_tls_registry_with_auth_moves_every_blob_size_intact(
    source: Registry,
    secure: tuple[Registry, Path],
    image: Image,
    loop: str,
    chunk_mib: int | None,
) -> None:
    target, ca = secure
    trust_and_login(target, ca, chunk_mib)
    repository = f"copy/{loop}-{chunk_mib or 'put'}"
    run = run_pypull(
        "copy", "--json", "--timeout", "10", "--max-download-attempts", "1",
        f"{source.host}/{image.reference}", f"{target.host}/{repository}:1",
        env=LOOPS[loop],
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    record = json.loads(run.stdout.splitlines()[0])
    assert record["status"] == "copied"
    assert record["blobs"]["uploaded"] == len(image.blobs)
    assert record["bytes_uploaded"] == sum(blob.size for blob in image.blobs)
    assert_identical_at(target, repository, "1", image)


def test_push_of_a_stored_image_into_a_tls_registry_with_auth(
    source: Registry, secure: tuple[Registry, Path], image: Image, store: Path
) -> None:
    target, ca = secure
    trust_and_login(target, ca)
    reference = f"{source.host}/{image.reference}"
    pulled = run_pypull("--store", store, reference)
    assert pulled.returncode == 0, pulled.stderr
    run = run_pypull(
        "push", "--store", store, "--timeout", "10", reference, f"{target.host}/push/tls:1"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert ": copied (" in run.stdout
    assert_identical_at(target, "push/tls", "1", image)


@pytest.mark.parametrize("loop", LOOPS)
def test_sync_into_a_tls_registry_with_auth_then_nothing_to_do(
    source: Registry,
    secure: tuple[Registry, Path],
    image: Image,
    tmp_path: Path,
    loop: str,
) -> None:
    target, ca = secure
    write_pypull_config(f'[registry."{target.host}"]\nserver = "https://{target.host}"\n')
    untrusted = login(target)
    assert untrusted.returncode == 1 and "certificate" in untrusted.stderr
    write_pypull_config(
        f'[registry."{target.host}"]\nserver = "https://{target.host}"\nca_file = "{ca}"\n'
    )
    logged_in = login(target)
    assert logged_in.returncode == 0 and logged_in.stdout == "Login Succeeded\n", logged_in.stderr
    sync_file = tmp_path / "sync.toml"
    sync_file.write_text(
        f'[[sync]]\nsource = "{source.host}/{image.repository}"\n'
        f'target = "{target.host}/sync/{loop}"\n'
    )
    first = run_pypull("sync", "--json", "--timeout", "10", sync_file, env=LOOPS[loop])
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(first.stdout.splitlines()[0])["status"] == "copied"
    assert_identical_at(target, f"sync/{loop}", "1", image)
    again = run_pypull("sync", "--json", sync_file, env=LOOPS[loop])
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout.splitlines()[0])["status"] == "up-to-date"


def test_sync_with_delete_and_check_against_a_tls_registry_with_auth(
    source: Registry, secure: tuple[Registry, Path], image: Image, tmp_path: Path
) -> None:
    """The mirror step as a team runs it: a tag the source no longer has is deleted from the
    HTTPS+htpasswd target (by digest: distribution 2.8 refuses a tag alone), one outside the
    entry's selection stays, the image's 110 MB layer arrives intact, and ``sync --check``
    then says "in sync" (exit 0)."""
    target, ca = secure
    trust_and_login(target, ca)
    repository = "mirror/delete"
    smalls = {}
    for tag in ("old", "keep-me"):  # at the target only: the source's repository never had them
        small = make_manifest([Blob(RAW_LAYER, f"{tag} upstream".encode())], seed=f"tls-{tag}")
        smalls[tag] = small.raw
        push(source.url, Image("small/tls", tag, small.media_type, small.raw, (small,)))
        put = run_pypull(
            "copy", f"{source.host}/small/tls:{tag}", f"{target.host}/{repository}:{tag}"
        )
        assert put.returncode == 0, put.stdout + put.stderr
    sync_file = tmp_path / "sync.toml"
    sync_file.write_text(
        f'[[sync]]\nsource = "{source.host}/{image.repository}"\n'
        f'target = "{target.host}/{repository}"\nexclude = ["keep-.*"]\ndelete = true\n'
    )
    run = run_pypull("sync", "--json", "--timeout", "10", sync_file)
    assert run.returncode == 0, run.stdout + run.stderr
    statuses = {
        json.loads(line)["target"]: json.loads(line)["status"]
        for line in run.stdout.splitlines()[:-1]
    }
    assert statuses == {
        f"{target.host}/{repository}:1": "copied",
        f"{target.host}/{repository}:old": "deleted",
    }, run.stdout
    assert_identical_at(target, repository, "1", image)
    assert raw(target, f"{repository}:keep-me", creds=True) == smalls["keep-me"]
    tags = run_pypull("tags", "--format", "json", f"{target.host}/{repository}")
    assert tags.returncode == 0, tags.stderr
    assert sorted(json.loads(tags.stdout)["tags"]) == ["1", "keep-me"]
    check = run_pypull("sync", "--check", sync_file)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_quiet_sync_into_a_tls_registry_with_auth_says_nothing_until_it_fails(
    source: Registry, secure: tuple[Registry, Path], image: Image
) -> None:
    # `pypull sync -q` from cron: the 110 MB image goes over HTTPS with auth and nothing is
    # printed; credentials the registry refuses give the Error line alone, and exit status 1.
    target, ca = secure
    trust_and_login(target, ca)
    reference = f"{source.host}/{image.reference}"
    run = run_pypull("sync", "-q", "--to", f"{target.host}/quiet", reference)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    assert_identical_at(target, f"quiet/{image.repository}", image.tag, image)
    write_docker_config({"auths": {target.host: {"auth": basic_auth(USER, "not-the-password")}}})
    refused = run_pypull("sync", "-q", "--to", f"{target.host}/refused", reference)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.startswith(f"Error: {reference} -> {target.host}/refused/"), refused
    assert "unauthorized" in refused.stderr.lower() or "401" in refused.stderr, refused
