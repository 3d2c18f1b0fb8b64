"""``pypull tags``: a repository's tags at the real registry and at the fake one, whose listing
comes in pages linked by opaque tokens; through a mirror and with credentials as a pull goes (and
``inspect --remote`` with them too); a reference with a tag is refused."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import puller
from fixtures.images import make_image
from fixtures.registry import Registry, push, running_registry
from tests.support.fakeregistry import run_pypull as run_pypull_async
from tests.support.fakeregistry import start_fake
from tests.support.helpers import AccessLog, run_pypull

TAGS = ["1.0", "1.1", "2.0", "2.0-rc1", "latest"]


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry holding ``team/app`` under every tag of ``TAGS``."""
    with running_registry(
        tmp_path_factory.mktemp("tags"), extra_config={"log": {"accesslog": {"disabled": False}}}
    ) as reg:
        image = make_image("team/app", "1.0", layers=1, seed="tags")
        for tag in TAGS:
            push(reg.url, image, tag=tag)
        yield reg


def skopeo_tags(registry: Registry, repository: str) -> list[str]:
    done = subprocess.run(
        ["skopeo", "list-tags", "--tls-verify=false", f"docker://{registry.host}/{repository}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    tags: list[str] = json.loads(done.stdout)["Tags"]
    return tags


def test_tags_lists_every_tag_of_a_real_registry_in_its_order(tagged: Registry) -> None:
    log = AccessLog(tagged)
    run = run_pypull("tags", f"{tagged.host}/team/app")
    assert run.returncode == 0, run.stderr
    assert log.requests() == [("GET", "/v2/team/app/tags/list")]  # nothing but the listing
    assert sorted(run.stdout.splitlines()) == TAGS
    assert run.stdout.splitlines() == skopeo_tags(tagged, "team/app")

    as_json = run_pypull("tags", "--format", "json", f"{tagged.host}/team/app")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {
        "event": "tags",
        "v": 1,
        "repository": f"{tagged.host}/team/app",
        "tags": run.stdout.splitlines(),
    }


def test_tags_goes_through_a_mirror_as_a_pull_does(tagged: Registry) -> None:
    # Docker Hub's library/app, served by the mirror only: nothing leaves loopback.
    run = run_pypull("tags", "--mirror", tagged.url, "--mirror-only", "team/app")
    assert run.returncode == 0, run.stderr
    assert sorted(run.stdout.splitlines()) == TAGS


def test_a_reference_with_a_tag_or_digest_is_refused(tagged: Registry) -> None:
    for ref in (f"{tagged.host}/team/app:1.0", f"{tagged.host}/team/app@sha256:{'a' * 64}"):
        run = run_pypull("tags", ref)
        assert run.returncode == 2
        assert run.stdout == ""
        *usage, error = run.stderr.splitlines()
        assert usage[0].startswith("usage: pypull tags ")  # the command's usage, not pypull's
        assert error == f"pypull tags: error: {ref}: give a repository, without a tag or digest"


def test_a_repository_the_registry_does_not_know_is_one_line(tagged: Registry) -> None:
    run = run_pypull("tags", f"{tagged.host}/team/nothing")
    assert run.returncode == 1
    assert run.stdout == ""
    assert len(run.stderr.splitlines()) == 1
    assert run.stderr.startswith("Error: tags of team/nothing not found")


async def test_tags_follows_every_page_the_registry_links_to() -> None:
    image = make_image("team/app", "v0", layers=1, seed="tag-pages")
    async with start_fake(tags_page=2) as fake:
        for tag in TAGS:
            fake.add_image(dataclasses.replace(image, tag=tag))
        run = await run_pypull_async("tags", f"{fake.host}/team/app")

        assert run.returncode == 0, run.stderr
        assert run.lines == TAGS
        listings = fake.log.select("tags")
        assert len(listings) == 3  # 2 + 2 + 1
        for before, after in itertools.pairwise(listings):
            link = (before.answer_headers or {}).get("Link", "")
            assert link == f'<{after.raw_path}>; rel="next"'  # followed exactly as given

        assert await puller.tags(f"{fake.host}/team/app") == TAGS


async def test_a_hostile_tag_is_printed_escaped_on_its_own_line() -> None:
    image = make_image("team/app", "v0", layers=1, seed="tag-hostile")
    async with start_fake([image]) as fake:
        fake.add_image(dataclasses.replace(image, tag="evil\n\x1b[2Jtag"))
        run = await run_pypull_async("tags", f"{fake.host}/team/app")

        assert run.returncode == 0, run.stderr
        assert run.lines == ["evil\\n\\x1b[2Jtag", "v0"]
        as_json = await run_pypull_async("tags", "--json", f"{fake.host}/team/app")
        assert json.loads(as_json.stdout)["tags"] == ["evil\n\x1b[2Jtag", "v0"]
        assert "\x1b" not in as_json.stdout


async def test_tags_and_remote_inspect_send_credentials_as_a_pull_does(tmp_path: Path) -> None:
    image = make_image("team/private", "1", layers=1, seed="tags-auth")
    users = {"alice": "s3cr3t"}
    async with start_fake([image], auth="bearer", users=users, token_requires_auth=True) as fake:
        repo = f"{fake.host}/team/private"
        refused = await run_pypull_async("tags", repo)
        assert refused.returncode == 1 and len(refused.error_lines) == 1

        listed = await run_pypull_async("tags", "--creds", "alice:s3cr3t", repo)
        assert listed.returncode == 0, listed.stderr
        assert listed.lines == ["1"]

        # docker's config.json, as `pypull login` writes it, serves inspect --remote too.
        auth = base64.b64encode(b"alice:s3cr3t").decode()
        config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({"auths": {fake.host: {"auth": auth}}}))
        store = tmp_path / "store"
        fake.log.clear()
        run = await run_pypull_async("inspect", "--remote", f"{repo}:1", store=store)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["Digest"] == image.digest
        assert [r.target for r in fake.log.blob_gets()] == [image.manifests[0].config.digest]
        assert not store.exists()
