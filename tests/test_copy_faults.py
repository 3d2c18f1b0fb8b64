"""Copies into a registry that does what real ones do on the push side: token auth with push
scopes, mounts answered with a session or a 401, a 413 to one large PUT with a minimum chunk
length, relative and absolute session URLs with an opaque ``_state``, uploads cut off or refused
mid-way (resumed where the session stands, or started anew), a blob HEAD answered 500 for good
(the blob is uploaded), manifests naming blobs the registry lacks, 429s, paginated tag lists, and
a registry that does not let us push. Asserted on what a user sees: the exit status, the one
line of a failure, the bytes at the target, and what the fake registry was asked."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import re
from collections.abc import AsyncIterator, Callable
from urllib.parse import urljoin

import pytest
from aiohttp import web

from fixtures.images import Image, make_image, redis
from puller.errors import QuotaExhausted, RegistryError
from puller.oci.digest import digest_of
from puller.oci.reference import parse
from puller.registry.client import RegistryClient
from puller.registry.endpoint import Endpoint
from puller.registry.upload import MAX_UPLOAD_RESUMES
from tests.support.auth import basic_auth, write_docker_config
from tests.support.fakeregistry import (
    Answer,
    CountedFault,
    CutRequestBody,
    DropAnswer,
    FakeRegistry,
    Handler,
    Later,
    LoggedRequest,
    RetryAfter,
    Status,
    StoreNothing,
    run_pypull,
    start_fake,
)

USERS = {"alice": "s3cr3t"}
MiB = 1 << 20


def creds_for(fake: FakeRegistry, user: str = "alice") -> None:
    """docker's config.json holds ``user``'s credentials for ``fake`` (and nothing else)."""
    write_docker_config({"auths": {fake.host: {"auth": basic_auth(user, USERS[user])}}})


async def copy(*args: str) -> tuple[int, list[str]]:
    """``pypull copy ARGS``: the exit status and the lines it printed (stderr must be empty)."""
    run = await run_pypull("copy", *args)
    assert "Traceback" not in run.stderr, run.stderr
    return run.returncode, run.lines


def assert_copied(
    fake: FakeRegistry, repository: str, image: Image, tag: str | None = None
) -> None:
    """The target holds the image byte for byte: its manifest under the tag and every blob."""
    assert fake.manifest(repository, tag or image.tag) == image.raw
    for blob in image.blobs:
        assert fake.blob(repository, blob.digest) == blob.data, blob.digest


def session_of(r: LoggedRequest) -> str:
    return r.path.rsplit("/", 1)[1]


def session_trail(log: list[LoggedRequest], session: str) -> list[LoggedRequest]:
    """The POST that opened ``session`` and every request on it, in order."""

    def opened(r: LoggedRequest) -> bool:
        said = r.answer_headers.get("Docker-Upload-UUID") if r.answer_headers else None
        return r.method == "POST" and said == session

    return [r for r in log if session_of(r) == session or opened(r)]


def followed(log: list[LoggedRequest], base: str) -> None:
    """Every request of an upload session went exactly where the last answer that named a
    ``Location`` said, resolved against its request, query string (``_state``) and all."""
    where = None
    for r in log:
        if session_of(r):
            assert where is not None, r
            assert base + re.sub(r"[?&]digest=[^&]*$", "", r.raw_path) == where, r
        location = r.answer_headers.get("Location") if r.answer_headers else None
        if location and r.status in (202, 204, 416):  # (a 201's is the blob's)
            where = urljoin(base + r.raw_path, location)


def blob_bytes(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def pieces(data: bytes, size: int = 64 * 1024) -> Callable[[], AsyncIterator[bytes]]:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(0, len(data), size):
            yield data[i : i + size]

    return gen


# -- auth ----------------------------------------------------------------------------------------


async def test_a_push_asks_for_push_on_the_target_and_credentials_go_to_its_realm_only() -> None:
    image = redis()
    async with (
        start_fake([image], auth="bearer") as source,
        start_fake(
            auth="bearer", users=USERS, token_requires_auth=True, pushers={"alice"}
        ) as target,
    ):
        creds_for(target)
        status, lines = await copy(source.ref(image), f"{target.host}/mirror/redis")

        assert status == 0, lines
        assert lines[0].startswith(
            f"{source.ref(image)} -> {target.host}/mirror/redis:latest: copied (9 uploaded, "
        )
        assert_copied(target, "mirror/redis", image)
        tokens = target.log.token_requests()
        assert tokens and all(t.status == 200 for t in tokens)
        assert {s for t in tokens for s in t.query.getall("scope")} == {
            "repository:mirror/redis:pull,push"
        }
        assert {t.authorization for t in tokens} == {"Basic " + basic_auth("alice", "s3cr3t")}
        # The source's realm is asked anonymously for a pull token; no password goes anywhere
        # but the target's realm.
        assert [t.query.getall("scope") for t in source.log.token_requests()] == [
            ["repository:library/redis:pull"]
        ]
        assert all(r.authorization is None for r in source.log.token_requests())
        everything = [*source.log, *target.log]
        basic = [r for r in everything if (r.authorization or "").startswith("Basic")]
        assert basic == tokens


@pytest.mark.parametrize("how", ["bearer-401", "basic-403", "anonymous-403"])
async def test_a_registry_that_does_not_allow_the_push_says_denied_in_one_line(how: str) -> None:
    image = redis()
    knobs: dict[str, object] = {"users": USERS, "pushers": set()}
    if how == "bearer-401":
        knobs["auth"] = "bearer"  # the token server grants alice pull only
    elif how == "basic-403":
        knobs["auth"] = "basic"
    async with start_fake([image]) as source, start_fake(**knobs) as target:
        if how == "anonymous-403":
            target.inject("/blobs/uploads/", Status(403, None, code="DENIED"), method="POST")
        else:
            creds_for(target)
        status, lines = await copy(source.ref(image), f"{target.host}/mirror/redis")

        assert status == 1
        (line,) = lines
        head = f"{source.ref(image)} -> {target.host}/mirror/redis:latest: failed: "
        denied = f"denied: {target.host} does not allow push to mirror/redis"
        if how == "anonymous-403":
            hint = f" (no credentials sent: pypull login {target.host})"
            assert line == head + denied + hint
        else:
            assert line == head + denied
        refused = target.log.uploads("POST")
        assert refused and {r.status for r in refused} == {401 if how == "bearer-401" else 403}
        assert target.manifest("mirror/redis", "latest") is None
        assert not target.log.uploads("PUT") and not target.log.uploads("PATCH")


# -- mounts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mounts", [True, False])
async def test_a_mount_answered_with_a_session_goes_on_in_that_session(mounts: bool) -> None:
    """A copy inside one registry mounts each blob from the source repository; a registry that
    answers the mount with an upload session (202) gets the blob in that very session."""
    image = redis()
    async with start_fake([image], auth="bearer", mounts=mounts) as fake:
        status, lines = await copy(fake.ref(image), f"{fake.host}/mirror/redis")

        assert status == 0, lines
        counts = "0 uploaded, 9 mounted" if mounts else "9 uploaded, 0 mounted"
        assert f": copied ({counts}, 0 existing" in lines[0]
        assert_copied(fake, "mirror/redis", image)
        posts = fake.log.uploads("POST")
        assert {r.query.get("from") for r in posts} == {"library/redis"}
        assert sorted(
            r.query["mount"] for r in posts if r.status is not None and r.status < 300
        ) == (sorted(b.digest for b in image.blobs))
        if mounts:
            assert {r.status for r in fake.log.uploads() if r.status != 401} == {201}
            return
        # Each mount's session, and no other, carried its blob: one PUT each, where it said.
        sessions = {r.answer_headers["Docker-Upload-UUID"]: r for r in posts if r.status == 202}
        puts = fake.log.uploads("PUT", status=201)
        assert sorted(session_of(r) for r in puts) == sorted(sessions)
        for put in puts:
            mount = sessions[session_of(put)]
            assert put.query["digest"] == mount.query["mount"]
            followed([mount, put], fake.url)


async def test_a_harbor_style_401_to_a_mount_falls_back_to_a_plain_upload() -> None:
    image = redis()
    async with start_fake([image], auth="bearer") as fake:
        challenge = (
            f'Bearer realm="{fake.realm}",service="fake",'
            'scope="repository:mirror/redis:pull,push repository:library/redis:pull"'
        )
        refusal = Status(
            401,
            None,
            code="UNAUTHORIZED",
            message="unauthorized to access repository: library/redis, action: pull",
            headers={"WWW-Authenticate": challenge},
        )
        fake.inject("/blobs/uploads/$", refusal, method="POST", query="mount=")
        status, lines = await copy(fake.ref(image), f"{fake.host}/mirror/redis")

        assert status == 0, lines
        assert ": copied (9 uploaded, 0 mounted, 0 existing" in lines[0]
        assert_copied(fake, "mirror/redis", image)
        posts = fake.log.uploads("POST")
        assert {r.status for r in posts if "mount" in r.query} == {401}
        plain = [r for r in posts if "mount" not in r.query and r.status != 401]
        assert len(plain) == len(image.blobs) and {r.status for r in plain} == {202}


# -- the shape of uploads ------------------------------------------------------------------------


async def test_a_413_to_one_put_turns_into_chunks_of_at_least_the_stated_minimum() -> None:
    minimum = 9 * MiB + 7  # over pypull's own 8 MiB chunks
    image = make_image("team/big", "1", layers=1, layer_size=20 * MiB, seed="big")
    layer = image.manifests[0].layers[0]
    async with (
        start_fake([image]) as source,
        start_fake(max_put=MiB, chunk_min_length=minimum) as target,
    ):
        status, lines = await copy(source.ref(image), f"{target.host}/team/big")

        assert status == 0, lines
        assert_copied(target, "team/big", image)
        uploads = [r for r in target.log.uploads() if r.method != "POST" or r.status != 202]
        refused = [r for r in uploads if r.status == 413]
        assert [r.query["digest"] for r in refused] == [layer.digest]
        patches = target.log.uploads("PATCH")
        ranges = [r.headers["Content-Range"] for r in patches]
        assert all(re.fullmatch(r"\d+-\d+", v) for v in ranges), ranges  # no "bytes " prefix
        spans = [tuple(map(int, v.split("-"))) for v in ranges]
        assert spans[0][0] == 0 and spans[-1][1] == layer.size - 1
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(spans))
        assert all(end - start + 1 >= minimum for start, end in spans[:-1])
        assert len(patches) == 3 and {r.status for r in patches} == {202}
        assert [r.received for r in patches] == [end - start + 1 for start, end in spans]
        closing = target.log.uploads("PUT", status=201)
        assert {r.query["digest"] for r in closing} == {b.digest for b in image.blobs}
        followed(session_trail(target.log.uploads(), session_of(patches[0])), target.url)


@pytest.mark.parametrize("where", ["relative", "absolute"])
async def test_session_urls_relative_or_absolute_are_followed_with_their_query(where: str) -> None:
    data = blob_bytes(2 * MiB + 5)
    digest = digest_of(data)
    async with start_fake(upload_location=where) as fake, RegistryClient(timeout=5) as client:
        how = await client.upload_blob(
            Endpoint(fake.url), "team/app", digest, len(data), pieces(data), chunk_size=MiB
        )

        assert how == "uploaded"
        assert fake.blob("team/app", str(digest)) == data
        log = fake.log.uploads()
        assert [(r.method, r.status) for r in log] == [
            ("POST", 202),
            ("PATCH", 202),
            ("PATCH", 202),
            ("PATCH", 202),
            ("PUT", 201),
        ]
        location = log[0].answer_headers["Location"] if log[0].answer_headers else ""
        assert location.startswith("/v2/" if where == "relative" else f"{fake.url}/v2/")
        assert all("_state" in r.query for r in log[1:])
        followed(log, fake.url)


# -- uploads cut off or refused mid-way ------------------------------------------------------------


async def upload(fake: FakeRegistry, data: bytes, chunk_size: int | None = MiB) -> str:
    async with RegistryClient(timeout=5) as client:
        return await client.upload_blob(
            Endpoint(fake.url),
            "team/app",
            digest_of(data),
            len(data),
            pieces(data),
            chunk_size=chunk_size,
        )


def trail(fake: FakeRegistry) -> list[tuple[str, int | None, str | None]]:
    """Each upload request: method, status, and the Content-Range of a PATCH."""
    return [(r.method, r.status, r.headers.get("Content-Range")) for r in fake.log.uploads()]


@pytest.mark.parametrize("session", ["there", "gone"])
async def test_a_chunk_answered_416_asks_the_session_and_goes_on_or_starts_anew(
    session: str,
) -> None:
    """The session says where it stands (204 + Range): on from there, nothing sent twice. It
    is gone (404): a new session, from the start."""
    data = blob_bytes(3 * MiB)
    async with start_fake() as fake:
        fake.inject("/blobs/uploads/.", Later(Status(416), skip=1), method="PATCH")
        if session == "gone":
            gone = Status(404, code="BLOB_UPLOAD_UNKNOWN", message="blob upload unknown")
            fake.inject("/blobs/uploads/.", gone)
        assert await upload(fake, data) == "uploaded"

        assert fake.blob("team/app", str(digest_of(data))) == data
        m = MiB
        refused = [
            ("POST", 202, None),
            ("PATCH", 202, f"0-{m - 1}"),
            ("PATCH", 416, f"{m}-{2 * m - 1}"),
        ]
        if session == "there":
            rest = [("GET", 204, None), ("PATCH", 202, f"{m}-{2 * m - 1}")]
        else:
            rest = [("GET", 404, None), *refused[:2], ("PATCH", 202, f"{m}-{2 * m - 1}")]
        assert trail(fake) == [
            *refused,
            *rest,
            ("PATCH", 202, f"{2 * m}-{3 * m - 1}"),
            ("PUT", 201, None),
        ]
        followed(fake.log.uploads(), fake.url)


async def test_a_chunk_cut_off_mid_way_goes_on_from_the_last_byte_the_session_holds() -> None:
    data = blob_bytes(3 * MiB)
    cut = 300_001
    async with start_fake() as fake:
        fake.inject("/blobs/uploads/.", Later(CutRequestBody(cut), skip=1), method="PATCH")
        assert await upload(fake, data) == "uploaded"

        assert fake.blob("team/app", str(digest_of(data))) == data
        m, k = MiB, MiB + cut
        assert trail(fake) == [
            ("POST", 202, None),
            ("PATCH", 202, f"0-{m - 1}"),
            ("PATCH", None, f"{m}-{2 * m - 1}"),  # no answer: the connection ended
            ("GET", 204, None),
            ("PATCH", 202, f"{k}-{k + m - 1}"),  # not one byte sent twice
            ("PATCH", 202, f"{k + m}-{3 * m - 1}"),
            ("PUT", 201, None),
        ]
        assert fake.log.uploads("GET")[0].answer_headers["Range"] == f"0-{k - 1}"  # type: ignore[index]


async def test_one_put_cut_off_mid_way_goes_on_in_chunks_from_where_the_session_stands() -> None:
    data = blob_bytes(3 * MiB)
    cut = 1_000_003
    async with start_fake() as fake:
        fake.inject("/blobs/uploads/.", CutRequestBody(cut), method="PUT")
        assert await upload(fake, data, chunk_size=None) == "uploaded"

        assert fake.blob("team/app", str(digest_of(data))) == data
        assert trail(fake) == [
            ("POST", 202, None),
            ("PUT", None, None),
            ("GET", 204, None),
            ("PATCH", 202, f"{cut}-{len(data) - 1}"),
            ("PUT", 201, None),
        ]
        assert fake.log.uploads("PUT")[0].received == cut


async def test_a_lost_answer_to_the_closing_put_is_not_an_upload_again() -> None:
    data = blob_bytes(2 * MiB)
    async with start_fake() as fake:
        fake.inject("/blobs/uploads/.", DropAnswer(), method="PUT")
        assert await upload(fake, data) == "uploaded"

        assert fake.blob("team/app", str(digest_of(data))) == data
        # The session is gone (the blob was committed): its HEAD says it is there.
        assert trail(fake) == [
            ("POST", 202, None),
            ("PATCH", 202, f"0-{MiB - 1}"),
            ("PATCH", 202, f"{MiB}-{2 * MiB - 1}"),
            ("PUT", None, None),
            ("GET", 404, None),
        ]
        heads = fake.log.select("blob", method="HEAD")
        assert [r.status for r in heads] == [200]


class SessionSays(CountedFault):
    """A session GET answered 204 with this ``Range``."""

    def __init__(self, value: str) -> None:
        super().__init__(times=None)
        self.value = value

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await handler(request)
        return web.Response(
            status=204, headers={"Range": self.value, "Location": resp.headers["Location"]}
        )


async def test_a_session_that_claims_more_than_was_sent_is_not_believed() -> None:
    data = blob_bytes(3 * MiB)
    async with start_fake() as fake:
        fake.inject("/blobs/uploads/.", Later(Status(416), skip=1), method="PATCH")
        fake.inject("/blobs/uploads/.", SessionSays(f"0-{3 * MiB - 1}"))
        with pytest.raises(RegistryError) as caught:
            await upload(fake, data)

        assert str(caught.value) == (
            f"upload of {digest_of(data)} to team/app: {fake.host} says the session holds "
            f"{3 * MiB} bytes, but only {2 * MiB} were sent"
        )
        assert not fake.log.uploads("PUT")
        assert fake.blob("team/app", str(digest_of(data))) is None


async def test_a_session_that_keeps_refusing_chunks_is_given_up_on() -> None:
    data = blob_bytes(2 * MiB)
    async with start_fake() as fake:
        fake.inject("/blobs/uploads/.", Status(416, None), method="PATCH")
        with pytest.raises(RegistryError) as caught:
            await upload(fake, data)

        assert caught.value.status == 416
        assert "refused the bytes 0-" in str(caught.value)
        assert len(fake.log.uploads("PATCH")) == MAX_UPLOAD_RESUMES + 1
        assert len(fake.log.uploads("GET")) == MAX_UPLOAD_RESUMES


async def test_a_copy_whose_upload_is_cut_off_completes_without_sending_it_again() -> None:
    image = make_image("team/app", "1", layers=1, layer_size=3 * MiB, seed="cut")
    layer = image.manifests[0].layers[0]
    cut = 1_234_567
    async with start_fake([image]) as source, start_fake() as target:
        target.inject(
            "/blobs/uploads/.", CutRequestBody(cut), method="PUT", query=f"digest={layer.digest}"
        )
        status, lines = await copy(source.ref(image), f"{target.host}/team/app")

        assert status == 0, lines
        assert_copied(target, "team/app", image)
        to_layer = [r for r in target.log.uploads() if r.method != "POST"]
        patches = [r for r in to_layer if r.method == "PATCH"]
        assert [r.headers["Content-Range"] for r in patches] == [f"{cut}-{layer.size - 1}"]
        assert len(target.log.uploads("POST")) == len(image.blobs)  # no upload started twice


# -- blob HEADs at the target -------------------------------------------------------------------


async def test_a_blob_head_answered_500_for_good_is_not_known_there_and_the_blob_is_uploaded() -> (
    None
):
    """After a full disk, distribution leaves 0-byte link files and answers 500 to a HEAD of
    those blobs on every run: after its retries the HEAD means "not there", and an upload (its
    closing PUT checked against the digest) mends the repository."""
    image = redis()
    layer = image.manifests[0].layers[2]
    async with start_fake([image]) as source, start_fake() as target:
        broken = Status(500, times=None, code="UNKNOWN", headers={"Retry-After": "0"})
        target.inject(f"/blobs/{layer.digest}$", broken, method="HEAD")
        dst = f"{target.host}/mirror/redis"
        status, lines = await copy("--json", "--max-download-attempts", "3", source.ref(image), dst)

        assert status == 0, lines
        (doc,) = [json.loads(line) for line in lines]
        assert (doc["status"], doc["error"]) == ("copied", None)
        assert doc["blobs"] == {"uploaded": len(image.blobs), "mounted": 0, "existing": 0}
        assert_copied(target, "mirror/redis", image)
        heads = target.log.select("blob", method="HEAD", path=f"/blobs/{layer.digest}$")
        assert [r.status for r in heads] == [500] * 3  # its usual retries, no more
        # A normal upload: one session, closed by a PUT with the digest, answered 201.
        puts = target.log.uploads("PUT")
        assert [r.status for r in puts if r.query.get("digest") == layer.digest] == [201]
        assert len(target.log.uploads("POST")) == len(image.blobs)


async def test_a_blob_head_refused_403_still_fails_the_copy_and_uploads_nothing_of_it() -> None:
    image = redis()
    layer = image.manifests[0].layers[2]
    async with start_fake([image]) as source, start_fake() as target:
        target.inject(f"/blobs/{layer.digest}$", Status(403, times=None), method="HEAD")
        status, lines = await copy(source.ref(image), f"{target.host}/mirror/redis")

        assert status == 1, lines
        (line,) = lines
        assert line.endswith(f"/blobs/{layer.digest}: unauthorized: HTTP 403"), line
        heads = target.log.select("blob", method="HEAD", path=f"/blobs/{layer.digest}$")
        assert [r.status for r in heads] == [403]  # not retried
        assert target.blob("mirror/redis", layer.digest) is None
        assert target.manifest("mirror/redis", "latest") is None


# -- manifests -----------------------------------------------------------------------------------


async def test_a_manifest_naming_a_blob_the_target_lacks_fails_in_one_line_naming_it() -> None:
    """A target whose HEAD says it holds a blob it does not (a stale cache): the manifest PUT
    is refused with MANIFEST_BLOB_UNKNOWN, and the line says which blob, where."""
    image = redis()
    layer = image.manifests[0].layers[3]
    async with start_fake([image]) as source, start_fake() as target:
        target.inject(f"/blobs/{layer.digest}$", Answer(200, b"", "text/plain"), method="HEAD")
        status, lines = await copy(source.ref(image), f"{target.host}/mirror/redis")

        assert status == 1
        (line,) = lines
        assert line == (
            f"{source.ref(image)} -> {target.host}/mirror/redis:latest: failed: manifest latest "
            f"refused by {target.host}: mirror/redis does not hold blob {layer.digest} it names "
            "(MANIFEST_BLOB_UNKNOWN)"
        )
        assert target.manifest("mirror/redis", "latest") is None
        assert [r.status for r in target.log.select("manifest", method="PUT")] == [400]


@pytest.mark.parametrize("detail", [True, False])
async def test_a_blob_the_target_answered_201_but_did_not_store_is_named_as_lost(
    detail: bool,
) -> None:
    """A target that answers 201 to a layer's upload and keeps nothing: the copy fails at the
    manifest PUT, and the line names the blob the target lost and the target, whether or not
    the registry's error says which blob it missed (a HEAD of each finds it)."""
    image = redis()
    layer = image.manifests[0].layers[2]
    async with start_fake([image]) as source, start_fake() as target:
        hex_ = layer.digest.split(":")[1]
        lose = target.inject(r"/blobs/uploads/", StoreNothing(), method=None, query=hex_)
        if not detail:
            put = Status(400, code="MANIFEST_BLOB_UNKNOWN", message="blob unknown to registry")
            target.inject(r"/manifests/", put, method="PUT")
        status, lines = await copy(source.ref(image), f"{target.host}/mirror/redis")

        assert status == 1
        assert lose.hits == 1
        (line,) = lines
        assert line == (
            f"{source.ref(image)} -> {target.host}/mirror/redis:latest: failed: manifest latest "
            f"refused by {target.host}: {target.host}/mirror/redis lost blob {layer.digest}, "
            "placed there before the manifest: a HEAD finds it missing (MANIFEST_BLOB_UNKNOWN)"
        )
        assert target.blob("mirror/redis", layer.digest) is None
        assert target.manifest("mirror/redis", "latest") is None


async def test_a_429_to_a_manifest_put_is_waited_out_and_tried_again() -> None:
    image = redis()
    async with start_fake([image]) as source, start_fake() as target:
        target.inject("/manifests/latest$", RetryAfter(429, seconds=1), method="PUT")
        status, lines = await copy(source.ref(image), f"{target.host}/mirror/redis")

        assert status == 0, lines
        assert_copied(target, "mirror/redis", image)
        assert [r.status for r in target.log.select("manifest", method="PUT")] == [429, 201]


# -- tag listings --------------------------------------------------------------------------------


async def test_all_tags_follows_paginated_listings_with_opaque_tokens() -> None:
    image = make_image("team/app", "v0", layers=1, seed="tags")
    tags = ["1.0", "1.1", "2.0", "2.0-rc/1", "latest"]
    async with start_fake(tags_page=2) as source, start_fake() as target:
        for tag in tags:
            source.add_image(dataclasses.replace(image, tag=tag))
        status, lines = await copy("--all-tags", f"{source.host}/team/app", f"{target.host}/m/app")

        listings = source.log.select("tags")
        assert [r.status for r in listings] == [200, 200, 200]
        assert listings[0].raw_path == "/v2/team/app/tags/list"
        for before, after in itertools.pairwise(listings):
            link = (before.answer_headers or {}).get("Link", "")
            assert link == f'<{after.raw_path}>; rel="next"'
            assert "%" in after.raw_path  # the token, percent-encoded, went back as it came
        valid = [t for t in tags if "/" not in t]
        assert target.tags("m/app") == valid
        for tag in valid:
            assert_copied(target, "m/app", image, tag)
        assert status == 1  # "2.0-rc/1" is no tag name
        assert lines[-1] == "5 images: 4 copied, 1 failed"


# -- the fake's pull quota (Docker Hub's headers) ------------------------------------------------


async def test_the_quota_knob_counts_gets_not_heads_and_says_so_in_docker_hubs_headers() -> None:
    image = redis()
    async with start_fake([image], ratelimit_remaining=2) as fake:
        ref = parse(fake.ref(image))
        endpoint = Endpoint(fake.url)
        async with RegistryClient(timeout=5) as client:
            await client.head_manifest(endpoint, ref)
            assert client.rate_limits == {fake.host: 2}
            await client.get_manifest(endpoint, ref)
            await client.get_manifest(endpoint, ref)
            assert client.rate_limits == {fake.host: 0}
            with pytest.raises(QuotaExhausted):
                await client.get_manifest(endpoint, ref)
        answers = [r.answer_headers for r in fake.log.select("manifest")]
        assert [a["ratelimit-remaining"] for a in answers if a] == [
            "2;w=21600",
            "1;w=21600",
            "0;w=21600",
            "0;w=21600",
        ]
        assert {a["ratelimit-limit"] for a in answers if a} == {"100;w=21600"}


async def test_an_index_naming_more_manifest_bytes_than_pypull_holds_fails_before_fetching() -> (
    None
):
    """A hostile index: 20 children that say they are 4 MiB each (80 MiB to hold at once)."""
    children = [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": f"sha256:{i:064x}",
            "size": 4 << 20,
            "platform": {"os": "linux", "architecture": f"arch{i}"},
        }
        for i in range(20)
    ]
    raw = json.dumps({"schemaVersion": 2, "manifests": children}).encode()
    index = Image("library/huge", "1", "application/vnd.oci.image.index.v1+json", raw, ())
    async with start_fake([index]) as source, start_fake() as target:
        code, lines = await copy(f"{source.host}/library/huge:1", f"{target.host}/m")
        assert code == 1
        assert len(lines) == 1 and "20 manifests of 83886080 bytes" in lines[0], lines
        assert "64 MiB" in lines[0]
        assert [r.path for r in source.log if "/manifests/sha256:" in r.path] == []
        assert [r for r in target.log if r.method in ("PUT", "POST", "PATCH")] == []
