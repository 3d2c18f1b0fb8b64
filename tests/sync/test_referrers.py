"""Referrers copied with their images (``--referrers``, a sync entry's ``referrers``), against
the fault-injecting registry: found through the Referrers API (filtered by ``artifactType``, by
the registry or here), else the ``sha256-<hex>`` index tag; cosign's ``.sig`` tags; referrers of
referrers; the target's index tag merged where it has no API; an unchanged re-run that only
asks; and a source whose listings go round, never end, or lie."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web

from fixtures.images import Image, make_artifact, make_image, multiplatform, referrers_index
from puller.referring import is_referrer_tag
from tests.support.fakeregistry import (
    Answer,
    CountedFault,
    Handler,
    LoggedRequest,
    run_pypull,
    start_fake,
)

SPDX = "application/spdx+json"
SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
WRITES = ("PUT", "POST", "PATCH", "DELETE")


def signed_app() -> tuple[Image, Image, Image, Image]:
    """``library/app:1``, its SBOM, a signature of it, and a signature of the SBOM."""
    app = make_image("library/app", "1", layers=2, seed="referrers/app")
    sbom = make_artifact("library/app", "sbom", app.manifests[0].descriptor(), SPDX, b'{"spdx":1}')
    sig = make_artifact("library/app", "sig", app.manifests[0].descriptor(), SIG, b"signature")
    sbom_sig = make_artifact(
        "library/app", "sbom-sig", sbom.manifests[0].descriptor(), SIG, b"signature of the sbom"
    )
    return app, sbom, sig, sbom_sig


def records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def writes(log: list[LoggedRequest] | Any) -> list[LoggedRequest]:
    return [r for r in log if r.method in WRITES]


async def test_referrers_api_copies_every_referrer_and_theirs_and_a_rerun_only_asks() -> None:
    app, sbom, sig, sbom_sig = signed_app()
    async with (
        start_fake([app], referrers_api=True) as src,
        start_fake(referrers_api=True) as dst,
    ):
        for artifact in (sbom, sig, sbom_sig):
            src.add_manifest("library/app", artifact, tagged=False)
        args = ("copy", "--referrers", "--format", "json", src.ref(app), f"{dst.host}/m/app:1")
        run = await run_pypull(*args)
        assert run.returncode == 0, run.stdout + run.stderr
        docs = records(run.stdout)
        assert [d["status"] for d in docs] == ["copied"] * 4
        assert "referrer_of" not in docs[0]
        of = {d["digest"]: d["referrer_of"] for d in docs[1:]}
        assert of == {sbom.digest: app.digest, sig.digest: app.digest, sbom_sig.digest: sbom.digest}
        for artifact in (sbom, sig, sbom_sig):
            assert dst.manifest("m/app", artifact.digest) == artifact.raw
            for blob in artifact.blobs:
                assert dst.blob("m/app", blob.digest) == blob.data
        assert not [t for t in dst.tags("m/app") if is_referrer_tag(t)]  # it has the API

        src.log.clear()
        dst.log.clear()
        again = await run_pypull(*args)
        assert again.returncode == 0, again.stdout + again.stderr
        assert [d["status"] for d in records(again.stdout)] == ["up-to-date"] * 4
        assert writes(dst.log) == []
        assert src.log.manifest_gets() == []  # a HEAD each, and one listing per subject
        listings = src.log.select("referrers", method="GET")
        assert len(listings) == 4  # the image, its two referrers, the SBOM's signature
        assert len(src.log.select("tags")) == 1  # cosign's tags: one listing a run


async def test_an_artifact_type_filter_is_sent_and_applied_even_when_the_registry_ignores_it(
    tmp_path: Path,
) -> None:
    app, sbom, sig, _ = signed_app()
    async with (
        start_fake([app], referrers_api=True) as src,
        start_fake(referrers_api=True) as dst,
    ):
        for artifact in (sbom, sig):
            src.add_manifest("library/app", artifact, tagged=False)
        sync = tmp_path / "sync.toml"
        sync.write_text(
            f'[[sync]]\nsource = "{src.ref(app)}"\ntarget = "{dst.host}/m/app"\n'
            f'referrers = ["{SPDX}"]\n'
        )
        run = await run_pypull("sync", sync, "--format", "json")
        assert run.returncode == 0, run.stdout + run.stderr
        asked = src.log.select("referrers")
        assert [r.query.get("artifactType") for r in asked] == [SPDX, SPDX]
        assert asked[0].answer_headers is not None
        assert asked[0].answer_headers.get("OCI-Filters-Applied") == "artifactType"
        assert dst.manifest("m/app", sbom.digest) == sbom.raw
        assert dst.manifest("m/app", sig.digest) is None

        # A registry that lists every type whatever the query says: filtered here.
        src.inject("/referrers/", IgnoreFilter())
        run = await run_pypull("sync", sync.rename(tmp_path / "again.toml"), "--format", "json")
        assert run.returncode == 0, run.stdout + run.stderr
        assert dst.manifest("m/app", sig.digest) is None
        assert [d["status"] for d in records(run.stdout)[:-1]] == ["up-to-date"] * 2


class IgnoreFilter(CountedFault):
    """The listing without its query: every artifact type, no ``OCI-Filters-Applied``."""

    def __init__(self) -> None:
        super().__init__(times=None)

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request.clone(rel_url=request.path))


async def test_a_target_without_the_api_gets_the_index_tag_merged_with_what_it_had() -> None:
    app, sbom, _, _ = signed_app()
    other = make_artifact("library/app", "x", app.manifests[0].descriptor(), SIG, b"theirs")
    async with start_fake([app]) as src, start_fake() as dst:  # neither has the API
        src.add_manifest("library/app", sbom, tagged=False)
        src.add_image(referrers_index("library/app", app.digest, [sbom]))
        cosign = make_image("library/app", app.digest.replace(":", "-") + ".sig", layers=1)
        src.add_image(cosign)
        # Someone else's referrer, in the target's index tag already.
        dst.add_manifest("m/app", other, tagged=False)
        dst.add_image(referrers_index("m/app", app.digest, [other]))
        tag = app.digest.replace(":", "-")
        run = await run_pypull(
            "copy", "--referrers", "--format", "json", src.ref(app), f"{dst.host}/m/app:1"
        )
        assert run.returncode == 0, run.stdout + run.stderr
        docs = records(run.stdout)
        assert [(d["target"], d["status"]) for d in docs] == [
            (f"{dst.host}/m/app:1", "copied"),
            (f"{dst.host}/m/app@{sbom.digest}", "copied"),
            (f"{dst.host}/m/app:{tag}.sig", "copied"),
        ]
        assert dst.manifest("m/app", sbom.digest) == sbom.raw
        assert dst.manifest("m/app", f"{tag}.sig") == cosign.raw
        index = json.loads(dst.manifest("m/app", tag) or b"")
        assert [m["digest"] for m in index["manifests"]] == [other.digest, sbom.digest]
        assert index["manifests"][1]["artifactType"] == SPDX
        # Not its own images: the tags of the schemes are not copied as such.
        assert "sha256-" not in " ".join(d["source"] for d in docs if "referrer_of" not in d)

        dst.log.clear()
        again = await run_pypull("copy", "--referrers", src.ref(app), f"{dst.host}/m/app:1")
        assert again.returncode == 0, again.stdout + again.stderr
        assert writes(dst.log) == []
        assert all("up to date" in line for line in again.lines), again.lines
        assert f"(referrer of {app.digest})" in again.lines[1]


async def test_each_child_of_an_index_has_its_referrers_copied_and_a_dry_run_lists_them(
    tmp_path: Path,
) -> None:
    image = multiplatform()
    child = image.manifests[1]
    sbom = make_artifact(image.repository, "sbom", child.descriptor(), SPDX, b"child sbom")
    async with start_fake([image], referrers_api=True) as src, start_fake() as dst:
        src.add_manifest(image.repository, sbom, tagged=False)
        target = f"{dst.host}/m/multi:{image.tag}"
        store = tmp_path / "store"
        dry = await run_pypull(
            "copy", "--referrers", "--dry-run", "--json", src.ref(image), target, store=store
        )
        assert dry.returncode == 0, dry.stdout + dry.stderr
        # A dry run writes nothing: not the index it read to find the children, not anywhere.
        assert not [p for p in (store / "blobs").rglob("*") if p.is_file()]
        assert [(d["status"], d.get("referrer_of")) for d in records(dry.stdout)] == [
            ("would-copy", None),
            ("would-copy", child.digest),
        ]
        assert writes(dst.log) == []
        run = await run_pypull("copy", "--referrers", "--json", src.ref(image), target)
        assert run.returncode == 0, run.stdout + run.stderr
        assert dst.manifest("m/multi", sbom.digest) == sbom.raw
        # The target has no API: the child's index tag lists the SBOM.
        index = json.loads(dst.manifest("m/multi", child.digest.replace(":", "-")) or b"")
        assert [m["digest"] for m in index["manifests"]] == [sbom.digest]


async def test_a_repository_entry_leaves_the_referrer_tags_to_their_images(tmp_path: Path) -> None:
    app, sbom, _, _ = signed_app()
    async with start_fake([app]) as src, start_fake() as dst:
        src.add_manifest("library/app", sbom, tagged=False)
        src.add_image(referrers_index("library/app", app.digest, [sbom]))
        sync = tmp_path / "sync.toml"
        sync.write_text(
            f'[[sync]]\nsource = "{src.host}/library/app"\ntarget = "{dst.host}/m/app"\n'
            "referrers = true\n"
        )
        run = await run_pypull("sync", sync, "--format", "json")
        assert run.returncode == 0, run.stdout + run.stderr
        docs = records(run.stdout)
        assert [(d["status"], d.get("referrer_of")) for d in docs[:-1]] == [
            ("copied", None),
            ("copied", app.digest),
        ]
        assert docs[-1]["images"] == 2


async def test_listings_that_go_round_never_end_or_lie_fail_the_referrer_not_the_image() -> None:
    app, sbom, _, _ = signed_app()
    async with start_fake([app], referrers_api=True) as src, start_fake() as dst:
        src.add_manifest("library/app", sbom, tagged=False)
        # The SBOM's listing names the image as its referrer: a circle, followed once.
        loop = {"schemaVersion": 2, "manifests": [app.manifests[0].descriptor()]}
        src.inject(f"/referrers/{sbom.digest}$", Answer(200, json.dumps(loop).encode(), "x"))
        run = await run_pypull("copy", "--referrers", "--json", src.ref(app), f"{dst.host}/m/a:1")
        assert run.returncode == 0, run.stdout + run.stderr
        docs = records(run.stdout)
        assert [(d["status"], d.get("referrer_of")) for d in docs] == [
            ("copied", None),
            ("copied", app.digest),
            ("up-to-date", sbom.digest),  # the image itself: at the target, not walked again
        ]

        # Pages that link to themselves, and a descriptor without a digest.
        src.clear_faults()
        src.log.clear()
        src.inject("/referrers/", EndlessPages())
        run = await run_pypull("copy", "--referrers", "--json", src.ref(app), f"{dst.host}/m/b:1")
        assert run.returncode == 1
        failed = records(run.stdout)[1]
        assert failed["status"] == "failed" and failed["referrer_of"] == app.digest
        assert "circle" in failed["error"] and len(src.log.select("referrers")) == 2
        src.clear_faults()
        bad = {"manifests": [{"mediaType": "x", "size": 1}]}
        src.inject("/referrers/", Answer(200, json.dumps(bad).encode(), "x"))
        run = await run_pypull("copy", "--referrers", "--json", src.ref(app), f"{dst.host}/m/c:1")
        assert run.returncode == 1
        failed = records(run.stdout)[1]
        assert failed["code"] == "protocol" and "valid digest" in failed["error"]
        assert dst.manifest("m/c", "1") == app.raw  # the image itself is copied


class InvalidLink(CountedFault):
    """An empty page whose ``Link`` is no URL at all (an IPv6 host left open)."""

    def __init__(self) -> None:
        super().__init__(times=None)

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        return web.json_response(
            {"schemaVersion": 2, "manifests": []},
            headers={"Link": '<http://[::1/v2/x>; rel="next"'},
        )


async def test_a_listing_whose_link_is_no_url_fails_the_referrer_in_one_line() -> None:
    app, sbom, _, _ = signed_app()
    async with start_fake([app], referrers_api=True) as src, start_fake() as dst:
        src.add_manifest("library/app", sbom, tagged=False)
        src.inject("/referrers/", InvalidLink())
        run = await run_pypull("copy", "--referrers", "--json", src.ref(app), f"{dst.host}/m/a:1")
        assert run.returncode == 1, run.stdout + run.stderr
        image, failed = records(run.stdout)
        assert image["status"] == "copied"
        assert failed["status"] == "failed" and failed["referrer_of"] == app.digest
        assert "an invalid Link" in failed["error"], failed
        assert "bug" not in run.stderr, run.stderr


class EndlessPages(CountedFault):
    """An empty page whose ``Link`` names the page itself."""

    def __init__(self) -> None:
        super().__init__(times=None)

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        return web.json_response(
            {"schemaVersion": 2, "manifests": []},
            headers={"Link": f'<{request.path}?page=1>; rel="next"'},
        )


async def test_two_tags_of_one_image_copy_its_referrers_once_and_nesting_is_bounded() -> None:
    app = make_image("library/app", "1", layers=1, seed="referrers/deep")
    chain = [app]
    for depth in range(6):  # a signature of a signature of ... of the image
        subject = chain[-1].manifests[0].descriptor()
        chain.append(make_artifact("library/app", f"s{depth}", subject, SIG, b"%d" % depth))
    async with start_fake([app], referrers_api=True) as src, start_fake() as dst:
        for artifact in chain[1:]:
            src.add_manifest("library/app", artifact, tagged=False)
        src.add_image(Image("library/app", "2", app.media_type, app.raw, app.manifests))
        sync_args = ("sync", "--referrers", "--format", "json", "--to", f"{dst.host}/m")
        run = await run_pypull(*sync_args, f"{src.host}/library/app:1", f"{src.host}/library/app:2")
        docs = records(run.stdout)[:-1]
        referrers = [d for d in docs if "referrer_of" in d]
        # Each subject's referrers once (not once per tag); four deep, then a failure that
        # says so, for that referrer alone.
        assert [d["status"] for d in docs if "referrer_of" not in d] == ["copied", "copied"]
        assert [d["status"] for d in referrers] == ["copied"] * 4 + ["failed"]
        assert "4 deep" in referrers[-1]["error"]
        assert run.returncode == 1


async def test_a_target_index_tag_that_is_no_index_is_left_alone_and_said() -> None:
    app, sbom, _, _ = signed_app()
    async with start_fake([app], referrers_api=True) as src, start_fake() as dst:
        src.add_manifest("library/app", sbom, tagged=False)
        squatter = make_image("m/app", app.digest.replace(":", "-"), layers=1, seed="squat")
        dst.add_image(squatter)
        run = await run_pypull("copy", "--referrers", src.ref(app), f"{dst.host}/m/app:1")
        assert run.returncode == 1
        assert dst.manifest("m/app", squatter.tag) == squatter.raw
        assert dst.manifest("m/app", sbom.digest) == sbom.raw
        assert "is no referrers index: left as it is" in run.stderr


async def test_a_listing_in_pages_is_followed_to_its_end() -> None:
    app, sbom, sig, _ = signed_app()
    async with start_fake([app], referrers_api=True, referrers_page=1) as src, start_fake() as dst:
        for artifact in (sbom, sig):
            src.add_manifest("library/app", artifact, tagged=False)
        run = await run_pypull("copy", "--referrers", src.ref(app), f"{dst.host}/m/app:1")
        assert run.returncode == 0, run.stdout + run.stderr
        assert dst.manifest("m/app", sbom.digest) == sbom.raw
        assert dst.manifest("m/app", sig.digest) == sig.raw
        pages = src.log.select("referrers", path=app.digest)
        assert [r.query.get("start") for r in pages] == [None, "1"]


async def test_deletion_leaves_the_index_tag_a_referrers_sync_made_at_the_target(
    tmp_path: Path,
) -> None:
    """A source with the Referrers API lists no ``sha256-<hex>`` tag; the target without it
    gets one from the copy. ``delete = true`` must not take that for a tag the source dropped."""
    app, sbom, _, _ = signed_app()
    async with start_fake([app], referrers_api=True) as src, start_fake() as dst:
        src.add_manifest("library/app", sbom, tagged=False)
        sync = tmp_path / "sync.toml"
        sync.write_text(
            f'[[sync]]\nsource = "{src.host}/library/app"\ntarget = "{dst.host}/m/app"\n'
            "referrers = true\ndelete = true\n"
        )
        tag = app.digest.replace(":", "-")
        for _ in range(2):  # the second run finds the tag there, and the source without it
            run = await run_pypull("sync", "--format", "json", str(sync))
            assert run.returncode == 0, run.stdout + run.stderr
            statuses = [d["status"] for d in records(run.stdout) if d.get("event") == "image"]
            assert "deleted" not in statuses, run.stdout
            index = json.loads(dst.manifest("m/app", tag) or b"")
            assert [m["digest"] for m in index["manifests"]] == [sbom.digest]


async def test_a_listing_that_names_a_referrer_twice_copies_and_indexes_it_once() -> None:
    app, sbom, _, _ = signed_app()
    async with start_fake([app], referrers_api=True) as src, start_fake() as dst:
        src.add_manifest("library/app", sbom, tagged=False)
        entry = sbom.manifests[0].descriptor(artifactType=SPDX)
        twice = {"schemaVersion": 2, "manifests": [entry, entry]}
        src.inject(f"/referrers/{app.digest}$", Answer(200, json.dumps(twice).encode(), "x"))
        run = await run_pypull("copy", "--referrers", "--json", src.ref(app), f"{dst.host}/m/a:1")
        assert run.returncode == 0, run.stdout + run.stderr
        docs = records(run.stdout)
        assert [(d["status"], d.get("referrer_of")) for d in docs] == [
            ("copied", None),
            ("copied", app.digest),
        ]
        index = json.loads(dst.manifest("m/a", app.digest.replace(":", "-")) or b"")
        assert [m["digest"] for m in index["manifests"]] == [sbom.digest]


async def test_an_index_tag_a_run_failed_to_write_is_written_by_the_next() -> None:
    app, sbom, _, _ = signed_app()
    async with start_fake([app], referrers_api=True) as src, start_fake() as dst:
        src.add_manifest("library/app", sbom, tagged=False)
        tag = app.digest.replace(":", "-")
        refused = Answer(400, b'{"errors": [{"code": "MANIFEST_INVALID"}]}', "application/json")
        dst.inject(f"/manifests/{tag}$", refused, method="PUT")
        first = await run_pypull("copy", "--referrers", src.ref(app), f"{dst.host}/m/app:1")
        assert first.returncode == 1  # the SBOM copied, the target's index tag not written
        assert dst.manifest("m/app", sbom.digest) == sbom.raw and dst.manifest("m/app", tag) is None
        dst.clear_faults()
        again = await run_pypull("copy", "--referrers", src.ref(app), f"{dst.host}/m/app:1")
        assert again.returncode == 0, again.stdout + again.stderr
        index = json.loads(dst.manifest("m/app", tag) or b"null")
        assert index is not None, "the SBOM, up to date, never reaches the index tag"
        assert [m["digest"] for m in index["manifests"]] == [sbom.digest]
