"""Registry auth end to end: the real command (and the Python API) against the fake registry.

Each test checks what a user sees (stdout, the one-line ``Error:``, the exit code, the store) and,
through the fake's request log, what reached the registry: which requests carried which
``Authorization``, and how often a token was fetched for which scope.
Every pull names the fake by its loopback address, so nothing ever leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import pytest

import puller
from fixtures.images import Image, make_image, redis
from tests.support.fakeregistry import (
    After,
    CompletedRun,
    Corrupt,
    DropConnection,
    FakeRegistry,
    Replace,
    Status,
    run_pypull,
    start_fake,
)

OCI_REF_NAME = "org.opencontainers.image.ref.name"
USERS = {"alice": "s3cr3t"}
CREDS = "alice:s3cr3t"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def layer_ids(image: Image) -> list[str]:
    return [layer.digest.split(":")[1][:12] for layer in image.manifests[0].layers]


def index_names(store: Path) -> set[str]:
    """The references recorded in the store's index.json (none when there is no index)."""
    path = store / "index.json"
    if not path.exists():
        return set()
    doc = json.loads(path.read_text())
    return {e.get("annotations", {}).get(OCI_REF_NAME) for e in doc["manifests"]}


def blob_files(store: Path) -> set[str]:
    blobs = store / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in blobs.iterdir()} if blobs.exists() else set()


def assert_pulled(run: CompletedRun, fake: FakeRegistry, image: Image, store: Path) -> None:
    """The command succeeded, said so in docker's words, and left the image in the store."""
    ref = fake.ref(image)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    lines = run.lines
    assert lines[0] == f"{image.tag}: Pulling from {image.repository}"
    assert [line for line in lines if line.endswith(": Pull complete")] == [
        f"{i}: Pull complete" for i in layer_ids(image)
    ]
    assert lines[-3:] == [
        f"Digest: {image.digest}",
        f"Status: Downloaded newer image for {ref}",
        ref,
    ]
    assert ref in index_names(store)
    assert blob_files(store) == {b.digest for b in image.blobs} | {image.digest}


def assert_failed(run: CompletedRun, store: Path, fake: FakeRegistry, image: Image) -> str:
    """Exit 1, exactly one ``Error:`` line on stderr, no index entry; returns the message."""
    assert run.returncode == 1, run.stdout
    assert len(run.error_lines) == 1, run.stderr
    assert run.error_lines[0].startswith("Error: ")
    assert "Traceback" not in run.stderr
    assert fake.ref(image) not in index_names(store)
    return run.error_lines[0]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


# -- Bearer tokens ---------------------------------------------------------------------------------


async def test_anonymous_bearer_pull_fetches_one_token_and_sends_it_with_every_blob(
    store: Path,
) -> None:
    image = redis()
    async with start_fake([image], auth="bearer") as fake:
        run = await run_pypull(fake.ref(image), store=store)

        assert_pulled(run, fake, image, store)
        tokens = fake.log.token_requests()
        assert len(tokens) == 1  # cached for the whole pull: one scope, one token
        assert tokens[0].query.getall("scope") == ["repository:library/redis:pull"]
        assert tokens[0].query.getall("service") == ["fake"]
        assert tokens[0].authorization is None  # anonymous: no credentials to send
        assert tokens[0].status == 200
        token = fake.issued[0]

        # The first manifest request is anonymous and challenged; the retry carries the token.
        manifests = fake.log.manifest_gets()
        assert [(m.authorization, m.status) for m in manifests] == [
            (None, 401),
            (f"Bearer {token}", 200),
        ]
        blobs = fake.log.blob_gets()
        assert sorted(b.target or "" for b in blobs) == sorted(b.digest for b in image.blobs)
        assert all(b.authorization == f"Bearer {token}" for b in blobs), [
            b.authorization for b in blobs
        ]
        assert all(b.status == 200 for b in blobs)


async def test_bearer_with_creds_sends_them_to_the_token_endpoint_only(store: Path) -> None:
    image = redis()
    async with start_fake([image], auth="bearer", users=USERS, token_requires_auth=True) as fake:
        run = await run_pypull("--creds", CREDS, fake.ref(image), store=store)

        assert_pulled(run, fake, image, store)
        tokens = fake.log.token_requests()
        assert [(t.authorization, t.status) for t in tokens] == [(basic("alice", "s3cr3t"), 200)]
        # The password never goes to the registry itself, only the token does.
        v2 = [r for r in fake.log if r.kind != "token"]
        assert all(not (r.authorization or "").startswith("Basic") for r in v2)
        assert all(r.authorization == f"Bearer {fake.issued[0]}" for r in v2 if r.status == 200)


async def test_bearer_with_wrong_creds_fails_with_one_error_line_and_no_image(store: Path) -> None:
    image = redis()
    async with start_fake([image], auth="bearer", users=USERS, token_requires_auth=True) as fake:
        run = await run_pypull("--creds", "alice:wrong", fake.ref(image), store=store)

        message = assert_failed(run, store, fake, image)
        assert f"{fake.url}/token" in message
        assert message.startswith("Error: unauthorized: ")
        assert "refused the credentials" in message
        assert "401" in message
        assert "wrong" not in run.stderr + run.stdout  # the password is never echoed
        assert [(t.authorization, t.status) for t in fake.log.token_requests()] == [
            (basic("alice", "wrong"), 401)
        ]
        assert fake.log.blob_gets() == []
        assert blob_files(store) == set()


async def test_bearer_without_creds_when_the_token_endpoint_wants_them_says_they_are_required(
    store: Path,
) -> None:
    """No credentials were sent, so none were "refused": say that they are required."""
    image = redis()
    async with start_fake([image], auth="bearer", users=USERS, token_requires_auth=True) as fake:
        run = await run_pypull(fake.ref(image), store=store)

        message = assert_failed(run, store, fake, image)
        assert [(t.authorization, t.status) for t in fake.log.token_requests()] == [(None, 401)]
        assert fake.log.blob_gets() == []
        assert "refused the credentials" not in message
        assert message.startswith(
            f"Error: unauthorized: {fake.host} requires a username and password"
        )


async def test_token_answered_as_access_token_works(store: Path) -> None:
    image = redis()
    async with start_fake([image], auth="bearer", token_field="access_token") as fake:
        run = await run_pypull(fake.ref(image), store=store)

        assert_pulled(run, fake, image, store)
        assert len(fake.log.token_requests()) == 1
        assert {b.authorization for b in fake.log.blob_gets()} == {f"Bearer {fake.issued[0]}"}


@pytest.mark.parametrize(
    ("token_field", "expires_in"),
    [("both", 300), ("token", None), ("token", 0), ("access_token", None)],
)
async def test_token_response_variants_give_one_cached_token_for_the_pull(
    store: Path, token_field: str, expires_in: int | None
) -> None:
    image = redis()
    async with start_fake(
        [image], auth="bearer", token_field=token_field, expires_in=expires_in
    ) as fake:
        result = await puller.pull(fake.ref(image), store=store)

        assert str(result.digest) == image.digest
        assert len(fake.log.token_requests()) == 1
        assert {b.authorization for b in fake.log.blob_gets()} == {f"Bearer {fake.issued[0]}"}


async def test_token_revoked_mid_pull_is_replaced_and_the_pull_completes(store: Path) -> None:
    image = redis()
    async with start_fake([image], auth="bearer") as fake:
        revoke = fake.inject("/manifests/", After(fake.revoke_tokens))
        run = await run_pypull(fake.ref(image), store=store)

        assert_pulled(run, fake, image, store)
        assert revoke.hits == 1
        first, *later = fake.issued
        assert later, "no new token was fetched after the first was revoked"
        assert all(t.status == 200 for t in fake.log.token_requests())
        blobs = fake.log.blob_gets()
        # Blob requests made with the revoked token were refused, then retried with a new one.
        refused = [b for b in blobs if b.status == 401]
        assert refused
        assert {b.authorization for b in refused} == {f"Bearer {first}"}
        served = fake.log.blob_gets(status=200)
        assert sorted(b.target or "" for b in served) == sorted(b.digest for b in image.blobs)
        assert all(b.authorization in {f"Bearer {t}" for t in later} for b in served)


async def test_tokens_are_fetched_once_per_repository_scope(store: Path) -> None:
    first = make_image("team/one", "v1", layers=2)
    second = make_image("team/two", "v1", layers=2)
    async with start_fake([first, second], auth="bearer") as fake:
        async with puller.Puller(store) as client:
            await client.pull(fake.ref(first))
            await client.pull(fake.ref(second))
            await client.pull(fake.ref(first))  # up to date: the cached token is reused

        assert {fake.ref(first), fake.ref(second)} <= index_names(store)
        scopes = [t.query.getall("scope") for t in fake.log.token_requests()]
        assert scopes == [["repository:team/one:pull"], ["repository:team/two:pull"]]
        # A token for one repository is never sent to the other.
        for r in fake.log.select(status=200, path="^/v2/team/"):
            granted = fake.tokens[(r.authorization or "").removeprefix("Bearer ")]
            repository = "/".join(r.path.split("/")[2:4])
            assert granted == {f"repository:{repository}:pull"}


# -- Basic auth ------------------------------------------------------------------------------------


async def test_basic_auth_with_creds_pulls(store: Path) -> None:
    image = redis()
    async with start_fake([image], auth="basic", users=USERS) as fake:
        run = await run_pypull("--creds", CREDS, fake.ref(image), store=store)

        assert_pulled(run, fake, image, store)
        assert fake.log.token_requests() == []
        blobs = fake.log.blob_gets()
        assert len(blobs) == len(image.blobs)
        assert {b.authorization for b in blobs} == {basic("alice", "s3cr3t")}


async def test_basic_auth_without_creds_says_credentials_are_required(store: Path) -> None:
    image = redis()
    async with start_fake([image], auth="basic", users=USERS) as fake:
        run = await run_pypull(fake.ref(image), store=store)

        message = assert_failed(run, store, fake, image)
        assert message == (
            f"Error: unauthorized: {fake.host} requires a username and password; log in with "
            f"`pypull login {fake.host}` (or give --creds USERNAME:PASSWORD)"
        )
        assert [(m.authorization, m.status) for m in fake.log] == [(None, 401)]


async def test_basic_auth_with_wrong_password_is_unauthorized(store: Path) -> None:
    image = redis()
    async with start_fake([image], auth="basic", users=USERS) as fake:
        run = await run_pypull("--creds", "alice:wrong", fake.ref(image), store=store)

        message = assert_failed(run, store, fake, image)
        assert "unauthorized" in message.lower()
        assert "wrong" not in run.stderr
        assert fake.log.blob_gets() == []


# -- the Python API --------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["basic", "bearer"])
async def test_python_api_pulls_with_credentials(store: Path, auth: str) -> None:
    image = redis()
    async with start_fake([image], auth=auth, users={"u": "p"}, token_requires_auth=True) as fake:
        result = await puller.pull(
            fake.ref(image),
            store=store,
            credentials={fake.host: puller.Credentials("u", "p")},
        )

        manifest = image.manifests[0]
        assert [str(d.digest) for d in result.layers] == [b.digest for b in manifest.layers]
        assert [d.size for d in result.layers] == [b.size for b in manifest.layers]
        assert str(result.digest) == image.digest
        assert str(result.config.digest) == manifest.config.digest
        assert set(map(str, result.downloaded)) == {b.digest for b in image.blobs}
        assert result.endpoint == fake.url
        assert not result.up_to_date
        assert fake.ref(image) in index_names(store)
        if auth == "bearer":
            assert [t.authorization for t in fake.log.token_requests()] == [basic("u", "p")]


async def test_python_api_without_credentials_raises_unauthorized(store: Path) -> None:
    image = redis()
    async with start_fake([image], auth="basic", users={"u": "p"}) as fake:
        with pytest.raises(puller.Unauthorized) as info:
            await puller.pull(fake.ref(image), store=store)
        assert info.value.status == 401
        assert fake.ref(image) not in index_names(store)


# -- the fake registry itself: what other suites rely on -------------------------------------------


async def test_fake_registry_serves_errors_and_faults_as_documented() -> None:
    image = redis()
    blob = image.blobs[-1]
    async with start_fake([image]) as fake, aiohttp.ClientSession() as http:
        base = f"{fake.url}/v2/library/redis"

        async def get(path: str, method: str = "GET") -> tuple[int, bytes]:
            async with http.request(method, base + path) as resp:
                return resp.status, await resp.read()

        async with http.head(f"{base}/manifests/latest") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == image.media_type
            assert resp.headers["Docker-Content-Digest"] == image.digest
            assert resp.content_length == len(image.raw)
        assert await get(f"/manifests/{image.digest}") == (200, image.raw)
        status, body = await get("/manifests/nope")
        assert (status, json.loads(body)["errors"][0]["code"]) == (404, "MANIFEST_UNKNOWN")
        status, body = await get(f"/blobs/sha256:{'0' * 64}")
        assert (status, json.loads(body)["errors"][0]["code"]) == (404, "BLOB_UNKNOWN")

        failing = fake.inject(f"/blobs/{blob.digest}$", Status(503, times=2))
        assert [(await get(f"/blobs/{blob.digest}"))[0] for _ in range(3)] == [503, 503, 200]
        assert failing.hits == 2 and failing.exhausted

        fake.inject("/blobs/", Corrupt())
        status, body = await get(f"/blobs/{blob.digest}")
        assert status == 200 and len(body) == blob.size and body != blob.data
        fake.inject("/blobs/", Replace(b"other bytes"))
        assert await get(f"/blobs/{blob.digest}") == (200, b"other bytes")
        assert await get(f"/blobs/{blob.digest}") == (200, blob.data)

        fake.inject("/manifests/", DropConnection(times=None))
        with pytest.raises(aiohttp.ClientError):
            await get("/manifests/latest")
        fake.clear_faults()
        assert await get("/manifests/latest") == (200, image.raw)

        assert [r.status for r in fake.log.select("manifest", path="/latest$")][-2:] == [None, 200]
        assert len(fake.log.blob_gets(status=503)) == 2


async def test_fake_registry_bearer_challenge_names_realm_service_and_scope() -> None:
    async with start_fake([redis()], auth="bearer") as fake, aiohttp.ClientSession() as http:
        resp = await http.get(f"{fake.url}/v2/library/redis/manifests/latest")
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == (
            f'Bearer realm="{fake.url}/token",service="fake",scope="repository:library/redis:pull"'
        )
        assert (await resp.json())["errors"][0]["code"] == "UNAUTHORIZED"
