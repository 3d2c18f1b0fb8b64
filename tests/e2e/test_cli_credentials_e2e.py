"""Credentials and TLS on the command line, as skopeo spells them: ``--dest-creds`` and
``--dest-tls-verify=false`` reach a TLS registry with htpasswd auth with no configuration file
at all; ``--creds`` goes to the registry named and nowhere else (not its mirror, not the host a
blob is redirected to); and the password is in no output of any run."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.images import Image, make_image
from fixtures.registry import (
    PASSWORD,
    USER,
    Registry,
    push,
    running_registry,
    running_secure_registry,
)
from tests.support.auth import basic_auth, write_pypull_config
from tests.support.fakeregistry import RedirectTo, start_fake, start_origin
from tests.support.fakeregistry import run_pypull as run_pypull_async
from tests.support.helpers import run_pypull

CREDS = f"{USER}:{PASSWORD}"


@pytest.fixture(scope="module")
def image() -> Image:
    return make_image("creds/app", "1", layers=2)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, image: Image) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("creds-source")) as reg:
        push(reg.url, image)
        yield reg


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """HTTPS with a certificate from a CA nobody trusts here, htpasswd auth."""
    with running_secure_registry(tmp_path_factory.mktemp("creds-target")) as (reg, _ca):
        yield reg


def no_configuration() -> None:
    """Neither config.toml nor docker's config.json exists: the flags are all there is."""
    assert not Path(os.environ["DOCKER_CONFIG"], "config.json").exists()
    config = Path(os.environ["XDG_CONFIG_HOME"], "pypull", "config.toml")
    assert "PYPULL_CONFIG" not in os.environ and not config.exists()


def test_copy_into_a_tls_registry_with_auth_from_flags_alone(
    source: Registry, secure: Registry, image: Image
) -> None:
    no_configuration()
    src, dest = f"{source.host}/{image.reference}", f"{secure.host}/flags/app"
    run = run_pypull(
        "copy", "--dest-creds", CREDS, "--dest-tls-verify=false", "--max-download-attempts", "1",
        src, dest,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith(f"{src} -> {dest}:1: copied (")
    again = run_pypull(
        "copy", "--json", "--dest-creds", CREDS, "--dest-tls-verify", "false", src, dest
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["status"] == "up-to-date"
    for out in (run.stdout, run.stderr, again.stdout, again.stderr):
        assert PASSWORD not in out


def test_copy_into_a_tls_registry_without_the_flags_names_the_problem(
    source: Registry, secure: Registry, image: Image
) -> None:
    no_configuration()
    src, dest = f"{source.host}/{image.reference}", f"{secure.host}/noflags/app"
    common = ("copy", "--max-download-attempts", "1", "--timeout", "5", src, dest)
    no_creds = run_pypull(*common[:1], "--dest-tls-verify=false", *common[1:])
    assert no_creds.returncode == 1
    assert "unauthorized" in no_creds.stdout and secure.host in no_creds.stdout
    verified = run_pypull(*common[:1], "--dest-creds", CREDS, "--dest-tls-verify=true", *common[1:])
    assert verified.returncode == 1  # a loopback name is plain HTTP unless told otherwise
    assert f"{src} -> {dest}:1: failed: " in verified.stdout
    for out in (no_creds.stdout, no_creds.stderr, verified.stdout, verified.stderr):
        assert PASSWORD not in out


def test_sync_from_several_registries_refuses_src_creds(tmp_path: Path) -> None:
    run = run_pypull(
        "sync", "--to", "127.0.0.1:9/mirror", "--src-creds", CREDS, "redis:7", "quay.io/org/app:1"
    )
    assert run.returncode == 2
    assert (
        "--src-creds applies to one registry, but the images name several: docker.io, quay.io"
        in run.stderr
    )
    assert PASSWORD not in run.stdout + run.stderr


async def test_pull_creds_go_to_the_registry_never_to_its_mirror(store: Path) -> None:
    image = make_image("test/guarded", "1", layers=3)
    async with (
        start_fake([image]) as mirror,
        start_fake([image], auth="basic", users={USER: PASSWORD}) as upstream,
    ):
        layer = image.manifests[0].layers[1]
        from tests.support.fakeregistry import Status

        mirror.inject(layer.digest, Status(404, times=None, code="BLOB_UNKNOWN"))
        write_pypull_config(f'[[registry."{upstream.host}".mirror]]\nurl = "{mirror.url}"\n')
        run = await run_pypull_async("pull", "--creds", CREDS, upstream.ref(image), store=store)
        assert run.returncode == 0, run.stderr
        assert mirror.log.manifest_gets()
        assert [r for r in mirror.log if r.authorization] == []
        upstream_gets = upstream.log.blob_gets(status=200)
    assert [r.target for r in upstream_gets] == [layer.digest]  # the one the mirror lacked
    assert all(r.authorization == f"Basic {basic_auth(USER, PASSWORD)}" for r in upstream_gets)
    assert PASSWORD not in run.stdout + run.stderr


async def test_pull_creds_do_not_follow_a_blob_redirect_to_another_host(store: Path) -> None:
    image = make_image("test/redirected", "1", layers=2)
    async with (
        start_fake([image], auth="basic", users={USER: PASSWORD}) as registry,
        start_origin([image]) as cdn,
    ):
        registry.inject("/blobs/", RedirectTo(cdn.url))
        run = await run_pypull_async(
            "pull", "--format", "json", "--creds", CREDS, registry.ref(image), store=store
        )
        assert run.returncode == 0, run.stderr
        assert len(cdn.log.blob_gets(status=200)) == 3  # config and layers, from the CDN
        assert [r for r in cdn.log if r.authorization] == []
        basic = f"Basic {basic_auth(USER, PASSWORD)}"
        assert registry.log.manifest_gets() and all(
            r.authorization == basic for r in registry.log.manifest_gets(status=200)
        )
    assert PASSWORD not in run.stdout + run.stderr


def test_pull_from_a_tls_registry_with_creds_and_tls_verify_false(
    source: Registry, secure: Registry, image: Image, store: Path
) -> None:
    no_configuration()
    src, dest = f"{source.host}/{image.reference}", f"{secure.host}/pulled/app:1"
    flags = ("--dest-creds", CREDS, "--dest-tls-verify=false")
    assert run_pypull("copy", *flags, src, dest).returncode == 0
    plain = run_pypull("pull", "--store", store, "--creds", CREDS, dest)
    assert plain.returncode == 1
    assert "HTTPS only" in plain.stderr and "--tls-verify=false" in plain.stderr
    run = run_pypull("pull", "--store", store, "--creds", CREDS, "--tls-verify=false", dest)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("Pull complete") == 2
    for out in (plain.stdout, plain.stderr, run.stdout, run.stderr):
        assert PASSWORD not in out
