"""``delete = true`` in a sync file, ``sync --to --delete`` and ``sync --check``, against the fake
registry: which target tags a deletion step deletes (by tag, or by digest on a registry that
cannot delete a tag alone), which it keeps (outside the selection, written by this run, sharing
a digest), that an incomplete source list deletes nothing, and what ``--check`` asks."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fixtures.images import Image, make_image, make_index
from tests.support.fakeregistry import Answer, FakeRegistry, Status, run_pypull, start_fake


def image(tag: str, seed: str | None = None, repository: str = "library/app") -> Image:
    return make_image(repository, tag, layers=1, layer_size=512, seed=seed or f"app/{tag}")


def sync_file(
    tmp_path: Path, source: FakeRegistry, target: FakeRegistry, extra: str = "delete = true"
) -> Path:
    path = tmp_path / "sync.toml"
    path.write_text(
        f"""[[sync]]
source = "{source.host}/library/app"
target = "{target.host}/mirror/app"
tags = ["1\\\\..*"]
{extra}
"""
    )
    return path


def seed_target(target: FakeRegistry, images: Iterable[Image]) -> None:
    for one in images:
        target.add_image(one, "mirror/app")


def records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def by_status(docs: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for doc in docs:
        if doc["event"] == "image":
            out.setdefault(doc["status"], []).append(doc["target"].rsplit(":", 1)[-1])
    return out


def deletes(target: FakeRegistry) -> list[str]:
    return [r.path.rsplit("/", 1)[-1] for r in target.log if r.method == "DELETE"]


async def test_a_target_tag_the_source_dropped_is_deleted_and_one_outside_the_selection_kept(
    tmp_path: Path,
) -> None:
    async with start_fake([image("1.0"), image("1.1")]) as source, start_fake() as target:
        seed_target(target, [image("1.0-rc1"), image("2.0"), image("1.1")])
        run = await run_pypull("sync", "--json", sync_file(tmp_path, source, target))
        assert run.returncode == 0, run.stdout + run.stderr
        statuses = by_status(records(run.stdout))
        assert statuses == {"copied": ["1.0"], "up-to-date": ["1.1"], "deleted": ["1.0-rc1"]}
        assert target.tags("mirror/app") == ["1.0", "1.1", "2.0"]  # 2.0: not selected, kept
        assert deletes(target) == ["1.0-rc1"]  # by tag: the registry can
        summary = records(run.stdout)[-1]
        assert summary["deleted"] == 1 and summary["images"] == 3


async def test_without_delete_nothing_is_deleted(tmp_path: Path) -> None:
    async with start_fake([image("1.0")]) as source, start_fake() as target:
        seed_target(target, [image("1.0-rc1")])
        run = await run_pypull("sync", sync_file(tmp_path, source, target, extra=""))
        assert run.returncode == 0, run.stdout + run.stderr
        assert target.tags("mirror/app") == ["1.0", "1.0-rc1"]
        assert deletes(target) == []


async def test_a_registry_that_deletes_by_digest_only_gets_the_digest_when_no_other_tag_holds_it(
    tmp_path: Path,
) -> None:
    """distribution 2.8: a DELETE by tag is answered 400; the digest is deleted when only tags to
    be deleted point there, else the tag is kept-shared (the tag 2.0 outside the selection holds
    1.0-rc2's digest)."""
    rc1, rc2 = image("1.0-rc1"), image("1.0-rc2", seed="shared")
    async with start_fake([image("1.0")]) as source, start_fake(deletes="digest") as target:
        seed_target(target, [rc1, rc2, image("2.0", seed="shared")])
        run = await run_pypull("sync", "--json", sync_file(tmp_path, source, target))
        assert run.returncode == 0, run.stdout + run.stderr
        docs = records(run.stdout)
        statuses = by_status(docs)
        assert statuses["deleted"] == ["1.0-rc1"]
        assert statuses["kept-shared"] == ["1.0-rc2"]
        kept = next(d for d in docs if d.get("status") == "kept-shared")
        assert "2.0" in kept["error"] and kept["code"] is None
        assert target.tags("mirror/app") == ["1.0", "1.0-rc2", "2.0"]
        assert rc1.digest in deletes(target)
        assert rc2.digest not in deletes(target)


async def test_two_dropped_tags_of_one_digest_go_with_one_delete_by_digest(tmp_path: Path) -> None:
    a, b = image("1.0-rc1", seed="same"), image("1.0-rc2", seed="same")
    async with start_fake([image("1.0")]) as source, start_fake(deletes="digest") as target:
        seed_target(target, [a, b])
        run = await run_pypull("sync", "--json", sync_file(tmp_path, source, target))
        assert run.returncode == 0, run.stdout + run.stderr
        assert by_status(records(run.stdout))["deleted"] == ["1.0-rc1", "1.0-rc2"]
        assert target.tags("mirror/app") == ["1.0"]
        assert [d for d in deletes(target) if d.startswith("sha256:")] == [a.digest]


async def test_a_registry_that_does_not_delete_fails_the_tag_saying_so(tmp_path: Path) -> None:
    async with start_fake([image("1.0")]) as source, start_fake(deletes="none") as target:
        seed_target(target, [image("1.0-rc1")])
        run = await run_pypull("sync", sync_file(tmp_path, source, target))
        assert run.returncode == 1, run.stdout + run.stderr
        assert "does not delete manifests" in run.stderr
        assert "storage.delete.enabled" in run.stderr
        assert target.tags("mirror/app") == ["1.0", "1.0-rc1"]


async def test_a_source_tag_list_that_fails_midway_deletes_nothing_and_exits_1(
    tmp_path: Path,
) -> None:
    """The second page of the source's listing answers 429 every time: the deletion step is
    skipped and reported, whatever the first page said."""
    two = [image("1.0"), image("1.1")]
    async with start_fake(two, tags_page=1) as source, start_fake() as target:
        seed_target(target, [image("1.0-rc1"), image("1.1")])
        source.inject("/tags/list", Status(429, times=None), query="next=")
        path = sync_file(tmp_path, source, target)
        run = await run_pypull("sync", "--json", "--max-download-attempts", "1", path)
        assert run.returncode == 1, run.stdout + run.stderr
        docs = records(run.stdout)
        assert "delete-skipped" in by_status(docs)
        skipped = next(d for d in docs if d.get("status") == "delete-skipped")
        assert skipped["code"] == "rate-limited"
        assert "nothing deleted" in skipped["error"]
        assert target.tags("mirror/app") == ["1.0-rc1", "1.1"]
        assert deletes(target) == []
        assert "Error:" in run.stderr


async def test_an_unreachable_source_deletes_nothing_and_exits_1(tmp_path: Path) -> None:
    async with start_fake() as gone:
        pass  # its port is closed now
    async with start_fake() as target:
        seed_target(target, [image("1.0-rc1")])
        path = sync_file(tmp_path, gone, target)
        run = await run_pypull("sync", "--json", "--max-download-attempts", "1", path)
        assert run.returncode == 1, run.stdout + run.stderr
        docs = records(run.stdout)
        assert set(by_status(docs)) == {"failed", "delete-skipped"}
        skipped = next(d for d in docs if d.get("status") == "delete-skipped")
        assert skipped["code"] == "unreachable"
        assert deletes(target) == [] and target.tags("mirror/app") == ["1.0-rc1"]


async def test_a_tag_another_entry_writes_is_never_deleted(tmp_path: Path) -> None:
    """Entry 1 selects every 1.x tag, its source has no 1.5; entry 2 copies 1.5 from another
    repository into the same target (regexes the file alone cannot tell meet): this run writes
    1.5, so entry 1's deletion step leaves it."""
    other = image("1.5", repository="library/other")
    async with start_fake([image("1.0"), other]) as source, start_fake() as target:
        seed_target(target, [image("1.0-rc1")])
        path = sync_file(tmp_path, source, target)
        path.write_text(
            path.read_text()
            + f"""
[[sync]]
source = "{source.host}/library/other"
target = "{target.host}/mirror/app"
tags = ["[0-9.]+"]
"""
        )
        run = await run_pypull("sync", "--json", path)
        assert run.returncode == 0, run.stdout + run.stderr
        assert by_status(records(run.stdout))["deleted"] == ["1.0-rc1"]
        assert target.tags("mirror/app") == ["1.0", "1.5"]


async def test_dry_run_says_would_delete_and_sends_no_delete(tmp_path: Path) -> None:
    async with start_fake([image("1.0")]) as source, start_fake() as target:
        seed_target(target, [image("1.0"), image("1.0-rc1")])
        run = await run_pypull("sync", "--json", "--dry-run", sync_file(tmp_path, source, target))
        assert run.returncode == 0, run.stdout + run.stderr
        assert by_status(records(run.stdout)) == {
            "up-to-date": ["1.0"],
            "would-delete": ["1.0-rc1"],
        }
        assert deletes(target) == []


async def test_check_exits_0_in_sync_and_1_after_a_new_source_tag_asking_only_heads_and_lists(
    tmp_path: Path,
) -> None:
    async with start_fake([image("1.0"), image("1.1")]) as source, start_fake() as target:
        path = sync_file(tmp_path, source, target)
        first = await run_pypull("sync", path)
        assert first.returncode == 0, first.stdout + first.stderr
        source.log.clear()
        target.log.clear()

        synced = await run_pypull("sync", "--check", path)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        asked = [(r.method, r.kind) for r in (*source.log, *target.log)]
        assert sorted(asked) == sorted(
            [("GET", "tags")] * 2  # the source's list, the target's (for the deletion step)
            + [("HEAD", "manifest")] * 4  # each tag at both ends
        )

        source.add_image(image("1.2"))
        source.log.clear()
        target.log.clear()
        behind = await run_pypull("sync", "--check", "--json", path)
        assert behind.returncode == 1, behind.stdout + behind.stderr
        assert by_status(records(behind.stdout))["would-copy"] == ["1.2"]
        assert {r.method for r in (*source.log, *target.log)} <= {"GET", "HEAD"}
        assert not [r for r in (*source.log, *target.log) if r.method == "GET" and r.kind != "tags"]
        assert target.tags("mirror/app") == ["1.0", "1.1"]  # nothing copied


async def test_check_exits_1_when_a_tag_would_be_deleted(tmp_path: Path) -> None:
    async with start_fake([image("1.0")]) as source, start_fake() as target:
        seed_target(target, [image("1.0"), image("1.0-rc1")])
        run = await run_pypull("sync", "--check", sync_file(tmp_path, source, target))
        assert run.returncode == 1, run.stdout + run.stderr
        assert "would delete" in run.stdout
        assert target.tags("mirror/app") == ["1.0", "1.0-rc1"]


async def test_to_with_delete_deletes_an_image_the_source_no_longer_lists(tmp_path: Path) -> None:
    async with start_fake([image("1.0")]) as source, start_fake() as target:
        target.add_image(image("1.0-rc1"), "m/library/app")
        target.add_image(image("0.9"), "m/library/app")
        refs = [f"{source.host}/library/app:{tag}" for tag in ("1.0", "1.0-rc1")]
        run = await run_pypull("sync", "--json", "--delete", "--to", f"{target.host}/m", *refs)
        assert run.returncode == 0, run.stdout + run.stderr
        assert by_status(records(run.stdout)) == {"copied": ["1.0"], "deleted": ["1.0-rc1"]}
        assert target.tags("m/library/app") == ["0.9", "1.0"]  # 0.9: not named, kept


async def test_delete_with_a_sync_file_is_a_usage_error(tmp_path: Path) -> None:
    async with start_fake() as source, start_fake() as target:
        run = await run_pypull("sync", "--delete", sync_file(tmp_path, source, target))
    assert run.returncode == 2
    assert "delete = true" in run.stderr


async def test_a_manifest_another_tags_index_names_is_kept_shared(tmp_path: Path) -> None:
    """Deleting 1.0-rc1's digest would break the index at ``multi`` that names it as a child:
    a registry that deletes by digest only keeps it."""
    rc1 = image("1.0-rc1")
    multi = make_index("library/app", "multi", [rc1.manifests[0]])
    async with start_fake([image("1.0")]) as source, start_fake(deletes="digest") as target:
        seed_target(target, [rc1, multi])
        run = await run_pypull("sync", "--json", sync_file(tmp_path, source, target))
        assert run.returncode == 0, run.stdout + run.stderr
        assert by_status(records(run.stdout))["kept-shared"] == ["1.0-rc1"]
        assert "multi" in run.stdout
        assert [d for d in deletes(target) if d.startswith("sha256:")] == []
        assert target.tags("mirror/app") == ["1.0", "1.0-rc1", "multi"]


async def test_a_target_behind_tokens_is_asked_for_delete_beside_push(tmp_path: Path) -> None:
    async with start_fake([image("1.0")]) as source, start_fake(auth="bearer") as target:
        seed_target(target, [image("1.0-rc1")])
        run = await run_pypull("sync", sync_file(tmp_path, source, target))
        assert run.returncode == 0, run.stdout + run.stderr
        assert target.tags("mirror/app") == ["1.0"]
        asked = [r.query.get("scope", "") for r in target.log.token_requests()]
        assert "repository:mirror/app:pull,push,delete" in asked


async def test_the_source_list_of_a_deletion_comes_from_its_own_server_not_a_mirror(
    tmp_path: Path,
) -> None:
    """A mirror that lists only part of the source (a pull-through cache lists what it holds)
    decides nothing: 1.1, which the mirror lacks, is not deleted at the target."""
    async with (
        start_fake([image("1.0"), image("1.1")]) as source,
        start_fake([image("1.0")]) as mirror,
        start_fake() as target,
    ):
        config = Path(os.environ["XDG_CONFIG_HOME"]) / "pypull" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f'[[registry."{source.host}".mirror]]\n'
            f'url = "http://{mirror.host}"\ncapabilities = ["pull", "resolve"]\n'
        )
        seed_target(target, [image("1.0"), image("1.1"), image("1.0-rc1")])
        run = await run_pypull("sync", "--json", sync_file(tmp_path, source, target))
        assert run.returncode == 0, run.stdout + run.stderr
        assert by_status(records(run.stdout))["deleted"] == ["1.0-rc1"]
        assert target.tags("mirror/app") == ["1.0", "1.1"]
        assert mirror.log.select("manifest")  # the copies' HEADs: the mirror is in use
        assert mirror.log.select("tags") == []  # one listing, at the source's own server


async def test_check_of_a_source_that_cannot_be_compared_exits_1(tmp_path: Path) -> None:
    async with start_fake() as gone:
        pass
    async with start_fake() as target:
        seed_target(target, [image("1.0")])
        path = sync_file(tmp_path, gone, target, extra="")
        run = await run_pypull("sync", "--check", "--max-download-attempts", "1", path)
        assert run.returncode == 1, run.stdout + run.stderr
        assert "Error:" in run.stderr


async def test_to_with_delete_under_fail_fast_deletes_nothing_after_a_failure(
    tmp_path: Path,
) -> None:
    async with start_fake([image("1.0")]) as source, start_fake() as target:
        target.add_image(image("1.0-rc1"), "m/library/app")
        refs = [f"{source.host}/library/{name}" for name in ("app:1.0-rc1", "missing:1")]
        run = await run_pypull(
            "sync", "--json", "--delete", "--fail-fast", "--to", f"{target.host}/m", *refs
        )
        assert run.returncode == 1, run.stdout + run.stderr
        skips = {
            d["target"]: d["error"]
            for d in records(run.stdout)
            if d.get("status") == "delete-skipped"
        }
        # library/missing: its listing failed (not found: never taken for "no tags");
        # library/app: not run after the failure
        assert "not found" in skips[f"{target.host}/m/library/missing"]
        assert "--fail-fast" in skips[f"{target.host}/m/library/app"]
        assert target.tags("m/library/app") == ["1.0-rc1"]


async def test_check_with_to_and_delete_exits_1_for_a_tag_the_source_dropped(
    tmp_path: Path,
) -> None:
    async with start_fake([image("1.0")]) as source, start_fake() as target:
        target.add_image(image("1.0"), "m/library/app")
        target.add_image(image("1.0-rc1"), "m/library/app")
        refs = [f"{source.host}/library/app:{tag}" for tag in ("1.0", "1.0-rc1")]
        dst = f"{target.host}/m"
        run = await run_pypull("sync", "--check", "--json", "--delete", "--to", dst, *refs)
        assert run.returncode == 1, run.stdout + run.stderr
        assert by_status(records(run.stdout)) == {
            "up-to-date": ["1.0"],
            "would-delete": ["1.0-rc1"],
        }
        assert deletes(target) == []
        in_sync = await run_pypull("sync", "--check", "--to", dst, refs[0])
        assert in_sync.returncode == 0, in_sync.stdout + in_sync.stderr


def namespace_file(tmp_path: Path, source: FakeRegistry, target: FakeRegistry) -> Path:
    path = tmp_path / "sync.toml"
    path.write_text(
        f"""[[sync]]
source = "{source.host}/team/*"
target = "{target.host}/mirror"
tags = ["1\\\\..*"]
delete = true
"""
    )
    return path


async def test_a_namespace_repository_whose_source_tags_are_none_selected_deletes_nothing(
    tmp_path: Path,
) -> None:
    # team/app lists 1.x; team/db lists only 2.0 now: as a one-repository entry, it would fail
    # no-match and delete nothing, and so it does under a namespace
    source_images = [image("1.0", repository="team/app"), image("2.0", repository="team/db")]
    async with start_fake(source_images) as source, start_fake() as target:
        target.add_image(image("1.0", repository="team/app"), "mirror/app")
        target.add_image(image("1.0", seed="db", repository="team/db"), "mirror/db")
        target.add_image(image("1.1", seed="db1", repository="team/db"), "mirror/db")
        run = await run_pypull("sync", "--json", namespace_file(tmp_path, source, target))
        assert target.tags("mirror/db") == ["1.0", "1.1"], run.stdout
        assert deletes(target) == []
        docs = records(run.stdout)
        skipped = [d for d in docs if d.get("status") == "delete-skipped"]
        assert [d["target"] for d in skipped] == [f"{target.host}/mirror/db"]
        assert run.returncode == 1


async def test_a_namespace_that_selects_nothing_fails_no_match_and_deletes_nothing(
    tmp_path: Path,
) -> None:
    async with start_fake([image("2.0", repository="team/db")]) as source, start_fake() as target:
        target.add_image(image("1.0", repository="team/db"), "mirror/db")
        run = await run_pypull("sync", "--json", namespace_file(tmp_path, source, target))
        assert run.returncode == 1
        assert "no-match" in run.stdout
        assert target.tags("mirror/db") == ["1.0"]
        assert deletes(target) == []


async def test_a_catalog_that_lists_a_repository_twice_syncs_and_deletes_it_once(
    tmp_path: Path,
) -> None:
    async with start_fake([image("1.0", repository="team/app")]) as source, start_fake() as target:
        target.add_image(image("1.0-rc1", repository="team/app"), "mirror/app")
        twice = json.dumps({"repositories": ["team/app", "team/app"]}).encode()
        source.inject("/v2/_catalog", Answer(200, twice, "application/json"))
        run = await run_pypull("sync", "--json", namespace_file(tmp_path, source, target))
        assert run.returncode == 0, run.stdout + run.stderr
        statuses = by_status(records(run.stdout))
        assert statuses == {"copied": ["1.0"], "deleted": ["1.0-rc1"]}
        assert deletes(target) == ["1.0-rc1"]


async def test_a_tag_list_that_names_a_tag_twice_copies_it_once(tmp_path: Path) -> None:
    async with start_fake([image("1.0")]) as source, start_fake() as target:
        twice = json.dumps({"name": "library/app", "tags": ["1.0", "1.0"]}).encode()
        source.inject("/tags/list", Answer(200, twice, "application/json"))
        run = await run_pypull("sync", "--json", sync_file(tmp_path, source, target))
        assert run.returncode == 0, run.stdout + run.stderr
        assert by_status(records(run.stdout)) == {"copied": ["1.0"]}


async def test_a_tag_another_entry_to_the_repository_selects_is_kept_when_its_source_fails(
    tmp_path: Path,
) -> None:
    async with start_fake([image("1.0")]) as source, start_fake() as target:
        seed_target(target, [image("1.0"), image("1.5-patched", seed="patched")])
        path = sync_file(tmp_path, source, target)
        # The second entry's source is gone today: this run writes none of its tags, and
        # 1.5-patched, which the first entry's filters select too, is still the second's.
        path.write_text(
            path.read_text()
            + f"""
[[sync]]
source = "{source.host}/library/patched"
target = "{target.host}/mirror/app"
tags = ["1\\\\.5-.*"]
"""
        )
        run = await run_pypull("sync", "--json", path)
        assert run.returncode == 1  # the second entry failed
        assert target.tags("mirror/app") == ["1.0", "1.5-patched"], run.stdout
        assert deletes(target) == []


async def test_a_namespace_whose_catalog_fails_keeps_another_entry_from_deleting_below_it(
    tmp_path: Path,
) -> None:
    async with start_fake([image("1.0")]) as source, start_fake() as target:
        seed_target(target, [image("1.0"), image("1.5", seed="theirs")])
        source.inject("/v2/_catalog", Answer(403, b'{"errors": []}', "application/json"))
        path = sync_file(tmp_path, source, target)
        # team/app -> mirror/app may have written 1.5: the catalog cannot say today
        path.write_text(
            path.read_text()
            + f'\n[[sync]]\nsource = "{source.host}/team/*"\ntarget = "{target.host}/mirror"\n'
        )
        run = await run_pypull("sync", "--json", path)
        assert run.returncode == 1
        assert target.tags("mirror/app") == ["1.0", "1.5"], run.stdout
        skipped = [d for d in records(run.stdout) if d.get("status") == "delete-skipped"]
        assert [d["target"] for d in skipped] == [f"{target.host}/mirror/app"]
        assert "the catalog of" in skipped[0]["error"]


async def test_a_namespace_never_copies_its_own_copies_under_another_name_of_its_server(
    tmp_path: Path,
) -> None:
    async with start_fake([image("1.0", repository="team/app")]) as source:
        config = Path(os.environ["XDG_CONFIG_HOME"]) / "pypull" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(f'[registry."alias.test"]\nserver = "http://{source.host}"\n')
        path = tmp_path / "sync.toml"
        # alias.test is the source's own server: team/copy lies inside team/*
        path.write_text(
            f'[[sync]]\nsource = "{source.host}/team/*"\ntarget = "alias.test/team/copy"\n'
        )
        for _ in range(2):
            run = await run_pypull("sync", "--json", path)
            assert run.returncode == 0, run.stdout + run.stderr
        assert source.tags("team/copy/app") == ["1.0"]
        assert source.tags("team/copy/copy/app") == []


async def test_an_entry_below_a_namespace_s_target_runs_in_the_namespace_s_shard(
    tmp_path: Path,
) -> None:
    from puller.sync.select import shard_of

    images = [image("1.0", repository="team/app"), image("1.0", repository="library/other")]
    async with start_fake(images) as source, start_fake() as target:
        # parts where the two targets' own names fall apart
        count = next(
            n
            for n in range(2, 50)
            if shard_of(f"{target.host}/mirror", n) != shard_of(f"{target.host}/mirror/other", n)
        )
        path = tmp_path / "sync.toml"
        path.write_text(
            f'[[sync]]\nsource = "{source.host}/team/*"\ntarget = "{target.host}/mirror"\n'
            f'[[sync]]\nsource = "{source.host}/library/other"\n'
            f'target = "{target.host}/mirror/other"\n'
        )
        parts = []
        for index in range(1, count + 1):
            run = await run_pypull("sync", "--check", "--json", "--shard", f"{index}/{count}", path)
            parts.append({d["target"] for d in records(run.stdout) if d["event"] == "image"})
        # mirror/other is where the namespace would write team/other: one part has both
        assert sorted(map(len, parts)) == [0] * (count - 1) + [2], parts


async def test_a_bare_404_to_a_delete_is_no_deletion(tmp_path: Path) -> None:
    """A registry (or a proxy in front) without the DELETE route answers 404 "page not found":
    not the registry saying the manifest is unknown, and the tag is still there."""
    async with start_fake([image("1.0")]) as source, start_fake() as target:
        seed_target(target, [image("1.0-rc1")])
        bare = Answer(404, b"404 page not found\n", "text/plain")
        target.inject("/manifests/", bare, method="DELETE")
        run = await run_pypull("sync", "--json", sync_file(tmp_path, source, target))
        assert target.tags("mirror/app") == ["1.0", "1.0-rc1"]
        assert by_status(records(run.stdout)).get("deleted") is None, run.stdout
        assert run.returncode == 1
