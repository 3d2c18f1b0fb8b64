"""Mirrors, configuration and credentials as users set them up: a real pull-through cache, a real
registry behind htpasswd, docker's config.json and credential helpers, and the promise that a
registry's credentials never reach its mirror."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from fixtures.images import make_image, redis
from fixtures.registry import (
    PASSWORD,
    USER,
    Registry,
    free_port,
    push,
    running_registry,
    running_tls_registry,
)
from tests.support.auth import basic_auth, write_docker_config, write_pypull_config
from tests.support.fakeregistry import Status, start_fake
from tests.support.fakeregistry import run_pypull as run_pypull_async
from tests.support.helpers import run_pypull

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


# -- a registry behind htpasswd (Basic auth) ------------------------------------------------------


@pytest.fixture(scope="module")
def locked_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The real registry with htpasswd auth, holding redis:latest (seeded before auth is on)."""
    storage = tmp_path_factory.mktemp("locked")
    with running_registry(storage) as open_registry:
        push(open_registry.url, redis())
    auth = {"auth": {"htpasswd": {"realm": "pypull-test", "path": str(FIXTURES / "htpasswd")}}}
    with running_registry(storage, extra_config=auth) as registry:
        yield registry


def test_basic_auth_without_credentials_is_unauthorized(
    locked_registry: Registry, store: Path
) -> None:
    run = run_pypull("--store", store, f"{locked_registry.host}/library/redis")
    assert run.returncode == 1
    host = locked_registry.host
    assert run.stderr == (
        f"Error: unauthorized: {host} requires a username and password; log in with "
        f"`pypull login {host}` (or give --creds USERNAME:PASSWORD)\n"
    )


def test_basic_auth_with_credentials_from_docker_config_json(
    locked_registry: Registry, store: Path
) -> None:
    write_docker_config({"auths": {locked_registry.host: {"auth": basic_auth(USER, PASSWORD)}}})
    run = run_pypull("--store", store, f"{locked_registry.host}/library/redis")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("Pull complete") == 8


def test_basic_auth_with_wrong_credentials_says_unauthorized(
    locked_registry: Registry, store: Path
) -> None:
    write_docker_config({"auths": {locked_registry.host: {"auth": basic_auth(USER, "nope")}}})
    run = run_pypull("--store", store, f"{locked_registry.host}/library/redis")
    assert run.returncode == 1
    assert run.stderr.startswith("Error: ") and "unauthorized" in run.stderr
    assert "nope" not in run.stderr


def test_basic_auth_with_a_credential_helper_on_path(
    locked_registry: Registry, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-pypulltest"
    asked = tmp_path / "asked"
    helper.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = get ] || exit 1\ncat > {asked}\n'
        f'printf \'{{"ServerURL":"%s","Username":"{USER}","Secret":"{PASSWORD}"}}\' '
        f'"$(cat {asked})"\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    write_docker_config({"credHelpers": {locked_registry.host: "pypulltest"}})
    run = run_pypull("--store", store, f"{locked_registry.host}/library/redis")
    assert run.returncode == 0, run.stderr
    assert asked.read_text().strip() == locked_registry.host  # the protocol: server on stdin


def test_login_checks_and_stores_credentials_then_logout_removes_them(
    locked_registry: Registry, store: Path
) -> None:
    def login(password: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "puller",
                "login",
                "-u",
                USER,
                "--password-stdin",
                locked_registry.host,
            ],
            input=password + "\n",
            capture_output=True,
            text=True,
        )

    bad = login("nope")
    assert bad.returncode == 1 and "unauthorized" in bad.stderr
    config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    assert not config.exists()

    good = login(PASSWORD)
    assert good.returncode == 0, good.stderr
    assert good.stdout == "Login Succeeded\n"
    stored = json.loads(config.read_text())
    assert stored["auths"][locked_registry.host] == {"auth": basic_auth(USER, PASSWORD)}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert run_pypull("--store", store, f"{locked_registry.host}/library/redis").returncode == 0

    out = run_pypull("logout", locked_registry.host)
    assert (
        out.returncode == 0
        and out.stdout == f"Removing login credentials for {locked_registry.host}\n"
    )
    assert locked_registry.host not in json.loads(config.read_text()).get("auths", {})


# -- Bearer tokens with config.json ---------------------------------------------------------------


def install_helper(bin_dir: Path, name: str, user: str, secret: str) -> None:
    """A docker-credential-NAME on PATH that answers ``get`` with these credentials."""
    bin_dir.mkdir(exist_ok=True)
    helper = bin_dir / f"docker-credential-{name}"
    helper.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 1\n'
        f'printf \'{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}\' "$(cat)"\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.parametrize("source", ["config.json", "credential-helper"])
async def test_bearer_auth_with_credentials_from_docker_config(
    source: str, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = make_image("test/private", "1", layers=2)
    async with start_fake(
        [image], auth="bearer", users={USER: PASSWORD}, token_requires_auth=True
    ) as fake:
        if source == "config.json":
            write_docker_config({"auths": {fake.host: {"auth": basic_auth(USER, PASSWORD)}}})
        else:
            monkeypatch.setenv("PATH", os.environ["PATH"])  # restored after the test
            install_helper(tmp_path / "bin", "pypulltest", USER, PASSWORD)
            write_docker_config({"credsStore": "pypulltest"})
        run = await run_pypull_async(fake.ref(image), store=store)
        assert run.returncode == 0, run.stderr
        assert [(t.status, t.authorization) for t in fake.log.token_requests()] == [
            (200, f"Basic {basic_auth(USER, PASSWORD)}")
        ]
        write_docker_config({})
        anonymous = await run_pypull_async(fake.ref(image), store=store.parent / "other")
    assert anonymous.returncode == 1
    assert anonymous.stderr.startswith("Error: unauthorized: ")


# -- a registry's credentials never reach its mirror -----------------------------------------------


@pytest.mark.parametrize(
    ("mirror_has_everything", "mirror_asks"),
    [(True, False), (False, False), (True, True)],
    ids=["mirror-hit", "fallback", "mirror-asks-for-credentials"],
)
async def test_credentials_of_a_registry_never_reach_its_mirror(
    mirror_has_everything: bool, mirror_asks: bool, store: Path
) -> None:
    image = make_image("test/guarded", "1", layers=3)
    layer = image.manifests[0].layers[1]
    asking: dict[str, object] = {"auth": "basic", "users": {USER: PASSWORD}} if mirror_asks else {}
    async with (
        start_fake([image], **asking) as mirror,
        start_fake([image], auth="basic", users={USER: PASSWORD}) as upstream,
    ):
        if not mirror_has_everything:
            mirror.inject(layer.digest, Status(404, times=None, code="BLOB_UNKNOWN"))
        write_docker_config({"auths": {upstream.host: {"auth": basic_auth(USER, PASSWORD)}}})
        write_pypull_config(f'[[registry."{upstream.host}".mirror]]\nurl = "{mirror.url}"\n')
        run = await run_pypull_async(upstream.ref(image), store=store)
        assert run.returncode == 0, run.stderr
        assert mirror.log.manifest_gets()
        assert [r for r in mirror.log if r.authorization] == []  # not once, even when asked
        upstream_gets = upstream.log.blob_gets(status=200)
        mirror_blobs = mirror.log.blob_gets()
    basic = f"Basic {basic_auth(USER, PASSWORD)}"
    if mirror_asks:  # it got no credentials, so everything came from the upstream
        assert mirror_blobs == []
        assert f"Using {upstream.url} ({mirror.url} did not answer)" in run.lines
        assert len(upstream_gets) == 4 and all(r.authorization == basic for r in upstream_gets)
    elif mirror_has_everything:
        assert mirror_blobs and upstream_gets == []
    else:
        assert [r.target for r in upstream_gets] == [layer.digest]
        assert all(r.authorization == basic for r in upstream_gets)


async def test_mirror_only_with_pull_only_mirrors_cannot_resolve_a_tag(store: Path) -> None:
    image = make_image("test/pullonly", "1", layers=1)
    async with start_fake([image]) as mirror, start_fake([image]) as upstream:
        write_pypull_config(
            f'mirror_only = true\n[[registry."{upstream.host}".mirror]]\nurl = "{mirror.url}"\n'
            'capabilities = ["pull"]\n'
        )
        run = await run_pypull_async(upstream.ref(image), store=store)
        by_digest = await run_pypull_async(
            f"{upstream.host}/{image.repository}@{image.digest}", store=store
        )
    assert run.returncode == 1
    assert run.stderr.startswith(f"Error: no endpoint may resolve the tag of {upstream.ref(image)}")
    assert by_digest.returncode == 0, by_digest.stderr  # content by digest is what it is for
    assert upstream.log.manifest_gets() == [] and upstream.log.blob_gets() == []


async def test_login_to_a_registry_that_asks_for_nothing_stores_nothing() -> None:
    async with start_fake([]) as fake:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "puller",
            "login",
            "-u",
            USER,
            "--password-stdin",
            fake.host,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(b"anything\n")
    assert proc.returncode == 1
    assert b"does not ask for credentials" in err and b"Login Succeeded" not in out
    assert not (Path(os.environ["DOCKER_CONFIG"]) / "config.json").exists()


async def test_a_mirror_without_resolve_is_asked_for_content_only(store: Path) -> None:
    image = make_image("test/pullonly", "1", layers=2)
    async with start_fake([image]) as mirror, start_fake([image]) as upstream:
        write_pypull_config(
            f'[[registry."{upstream.host}".mirror]]\nurl = "{mirror.url}"\n'
            'capabilities = ["pull"]\n'
        )
        run = await run_pypull_async(upstream.ref(image), store=store)
        assert run.returncode == 0, run.stderr
        assert mirror.log.manifest_gets() == []  # never asked what the tag is
        assert len(mirror.log.blob_gets()) == 3  # but every blob came from it
        assert [r.target for r in upstream.log.manifest_gets()] == ["1"]
        assert upstream.log.blob_gets() == []


# -- a real pull-through cache ---------------------------------------------------------------------


def test_a_pull_through_cache_serves_while_the_upstream_is_down_and_falls_back_when_it_is(
    tmp_path: Path,
) -> None:
    image = make_image("team/app", "1", layers=3)
    up_port, cache_port = free_port(), free_port()
    up_storage, cache_storage = tmp_path / "upstream", tmp_path / "cache"
    upstream_host = f"127.0.0.1:{up_port}"
    ref = f"{upstream_host}/team/app:1"
    write_pypull_config(
        f'[[registry."{upstream_host}".mirror]]\nurl = "http://127.0.0.1:{cache_port}"\n'
    )
    proxy = {"proxy": {"remoteurl": f"http://{upstream_host}"}}

    def pull(name: str) -> subprocess.CompletedProcess[str]:
        return run_pypull("--store", tmp_path / name, ref)

    with ExitStack() as stack:
        upstream = stack.enter_context(running_registry(up_storage, port=up_port))
        push(upstream.url, image)
        cache = ExitStack()
        cache.enter_context(running_registry(cache_storage, port=cache_port, extra_config=proxy))
        first = pull("first")
        assert first.returncode == 0, first.stderr
        assert "Using " not in first.stdout  # the mirror answered

        stack.close()  # the upstream goes down; the cache still has everything
        second = pull("second")
        assert second.returncode == 0, second.stderr
        assert "Using " not in second.stdout
        cache.close()  # and now the mirror is down too

    with running_registry(up_storage, port=up_port):  # only the upstream is back
        third = pull("third")
    assert third.returncode == 0, third.stderr
    assert f"Using http://{upstream_host} (http://127.0.0.1:{cache_port} did not answer)" in (
        third.stdout.splitlines()
    )
    for name in ("first", "second", "third"):
        doc = json.loads((tmp_path / name / "index.json").read_text())
        assert [m["digest"] for m in doc["manifests"]] == [image.digest]


# -- TLS settings ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    """The real registry over HTTPS with a self-signed certificate for 127.0.0.1."""
    with running_tls_registry(tmp_path_factory.mktemp("tls"), redis()) as (registry, cert):
        yield registry, cert


@pytest.mark.parametrize(
    ("options", "works"),
    [('ca_file = "{cert}"', True), ("skip_verify = true", True), ("", False)],
    ids=["ca-file", "skip-verify", "untrusted"],
)
def test_tls_settings_of_a_registry(
    tls_registry: tuple[Registry, Path], options: str, works: bool, store: Path
) -> None:
    registry, cert = tls_registry
    write_pypull_config(
        f'[registry."{registry.host}"]\nserver = "https://{registry.host}"\n'
        + options.format(cert=cert)
        + "\n"
    )
    run = run_pypull("--store", store, f"{registry.host}/library/redis")
    if works:
        assert run.returncode == 0, run.stderr
        assert run.stdout.count("Pull complete") == 8
    else:
        assert run.returncode == 1
        assert run.stderr.startswith(f"Error: cannot reach https://{registry.host}: ")
        assert "certificate" in run.stderr.lower()
        assert "Retrying" not in run.stdout  # a certificate does not get better by asking again
