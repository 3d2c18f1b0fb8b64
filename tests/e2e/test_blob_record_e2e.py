"""The record of where blobs live, across runs: a copy into a new repository of a registry that
already holds the layers in another one mounts them from there (the record of an earlier copy
or pull says where) and uploads nothing; a stale hint, or a registry that refuses mounts, costs
a plain upload and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.images import redis
from fixtures.registry import PASSWORD, USER, Registry
from puller.oci.digest import parse_digest
from puller.store.blobinfo import blob_info
from puller.store.layout import as_store
from tests.support.auth import basic_auth, write_docker_config
from tests.support.fakeregistry import Status, start_fake
from tests.support.fakeregistry import run_pypull as run_pypull_async
from tests.support.helpers import AccessLog, run_pypull


@pytest.fixture(autouse=True)
def target_credentials(target: Registry) -> None:
    write_docker_config({"auths": {target.host: {"auth": basic_auth(USER, PASSWORD)}}})


def copied(run_stdout: str) -> str:
    """The counts of a copy's line: "N uploaded, N mounted, N existing"."""
    return run_stdout.split(": copied (", 1)[1].rsplit(", ", 1)[0]


def test_a_copy_into_a_new_repository_mounts_what_an_earlier_run_put_elsewhere(
    registry: Registry, target: Registry
) -> None:
    source = f"{registry.host}/library/redis:latest"
    first = run_pypull("copy", source, f"{target.host}/rec/first")
    assert first.returncode == 0, first.stderr
    assert copied(first.stdout) == "9 uploaded, 0 mounted, 0 existing"

    log = AccessLog(target)
    again = run_pypull("copy", source, f"{target.host}/rec/second")  # another process
    assert again.returncode == 0, again.stderr
    assert copied(again.stdout) == "0 uploaded, 9 mounted, 0 existing"
    assert [p for m, p in log.requests() if m in ("PUT", "PATCH") and "/blobs/" in p] == []
    assert all("from=rec%2Ffirst" in p for m, p in log.requests() if m == "POST"), log.requests()
    # The record said where: each mount went first, with no HEAD of the blob before it.
    assert [p for m, p in log.requests() if m == "HEAD" and "/blobs/" in p] == []


def test_a_pull_tells_a_later_copy_where_the_layers_are(
    registry: Registry, target: Registry, tmp_path: Path
) -> None:
    source = f"{registry.host}/library/redis:latest"
    seeded = run_pypull(
        "copy", source, f"{target.host}/rec/pulled", env={"PYPULL_STORE": str(tmp_path)}
    )
    assert seeded.returncode == 0, seeded.stderr  # its record is in a store not used below
    pulled = run_pypull("pull", f"{target.host}/rec/pulled:latest")
    assert pulled.returncode == 0, pulled.stderr
    copy = run_pypull("copy", source, f"{target.host}/rec/after-pull")
    assert copy.returncode == 0, copy.stderr
    assert copied(copy.stdout) == "0 uploaded, 9 mounted, 0 existing"


def test_a_record_naming_a_repository_without_the_blob_costs_an_upload_and_is_forgotten(
    registry: Registry, target: Registry
) -> None:
    image = redis()
    record = blob_info(as_store(None))
    record.seen(target.url, [(parse_digest(b.digest), "gone/repo") for b in image.blobs])
    run = run_pypull("copy", f"{registry.host}/library/redis:latest", f"{target.host}/rec/stale")
    assert run.returncode == 0, run.stderr
    assert copied(run.stdout) == "9 uploaded, 0 mounted, 0 existing"
    for blob in image.blobs:
        assert record.where(target.url, parse_digest(blob.digest)) == ["rec/stale"]


def test_a_stale_hint_for_blobs_the_repository_already_holds_uploads_nothing(
    registry: Registry, target: Registry, tmp_path: Path
) -> None:
    """The mount goes first on a hint; refused, the repository is asked before a byte is sent,
    and holds them: nothing uploaded, the sessions the refusals opened are ended."""
    image = redis()
    source = f"{registry.host}/library/redis:latest"
    first = run_pypull(
        "copy", source, f"{target.host}/rec/holds:one", env={"PYPULL_STORE": str(tmp_path)}
    )
    assert first.returncode == 0, first.stderr  # its record is in a store not used below
    record = blob_info(as_store(None))
    record.seen(target.url, [(parse_digest(b.digest), "gone/repo") for b in image.blobs])

    log = AccessLog(target)
    run = run_pypull("copy", source, f"{target.host}/rec/holds:two")
    assert run.returncode == 0, run.stderr
    assert copied(run.stdout) == "0 uploaded, 0 mounted, 9 existing"
    requests = log.requests()
    assert [p for m, p in requests if m in ("PUT", "PATCH") and "/blobs/" in p] == []
    assert len([p for m, p in requests if m == "DELETE" and "/blobs/uploads/" in p]) == 9
    for blob in image.blobs:
        assert record.where(target.url, parse_digest(blob.digest)) == ["rec/holds"]


async def test_a_refused_mount_falls_back_to_a_plain_upload(registry: Registry) -> None:
    image = redis()
    async with start_fake([image], mounts=False) as fake:
        record = blob_info(as_store(None))
        record.seen(fake.url, [(parse_digest(b.digest), "library/redis") for b in image.blobs])
        run = await run_pypull_async(
            "copy", f"{registry.host}/library/redis:latest", f"{fake.host}/rec/refused"
        )
        assert run.returncode == 0, run.stderr
        assert copied(run.stdout) == "9 uploaded, 0 mounted, 0 existing"
        mounts = [r for r in fake.log.uploads("POST") if "mount" in r.query]
        assert {r.query["from"] for r in mounts} == {"library/redis"}
        assert {r.status for r in mounts} == {202}
        for blob in image.blobs:
            assert fake.blob("rec/refused", blob.digest) == blob.data
            assert record.where(fake.url, parse_digest(blob.digest)) == ["rec/refused"]


async def test_a_stale_hint_never_displaces_the_source_repository_of_the_same_registry() -> None:
    """Within one registry the source repository holds every blob: that beats a hint."""
    image = redis()
    async with start_fake([image]) as fake:
        record = blob_info(as_store(None))
        record.seen(fake.url, [(parse_digest(b.digest), "gone/repo") for b in image.blobs])
        run = await run_pypull_async(
            "copy", f"{fake.host}/library/redis:latest", f"{fake.host}/new/repo"
        )
        assert run.returncode == 0, run.stderr
        assert copied(run.stdout) == "0 uploaded, 9 mounted, 0 existing"
        assert {r.query["from"] for r in fake.log.uploads("POST")} == {"library/redis"}


async def test_a_hint_is_kept_when_the_record_also_names_a_target_that_lost_the_blob(
    registry: Registry,
) -> None:
    """The record saw the target repository hold the blobs (since deleted) and another
    repository too: the HEAD goes first, says no, and the other repository is mounted from."""
    image = redis()
    async with start_fake([image]) as fake:
        record = blob_info(as_store(None))
        record.seen(fake.url, [(parse_digest(b.digest), "library/redis") for b in image.blobs])
        record.seen(fake.url, [(parse_digest(b.digest), "rec/lost") for b in image.blobs])
        run = await run_pypull_async(
            "copy", f"{registry.host}/library/redis:latest", f"{fake.host}/rec/lost"
        )
        assert run.returncode == 0, run.stderr
        assert copied(run.stdout) == "0 uploaded, 9 mounted, 0 existing"


async def test_a_500_to_the_head_after_a_refused_mount_means_upload(registry: Registry) -> None:
    """As without a hint: distribution answers 500 for good to a HEAD of a blob whose link a
    full disk left empty, and only an upload mends it; no upload session is left open."""
    image = redis()
    async with start_fake([image], mounts=False) as fake:
        record = blob_info(as_store(None))
        record.seen(fake.url, [(parse_digest(b.digest), "library/redis") for b in image.blobs])
        fake.inject("/blobs/sha256:", Status(500, times=None), method="HEAD")
        run = await run_pypull_async(
            "copy", f"{registry.host}/library/redis:latest", f"{fake.host}/rec/mended"
        )
        assert run.returncode == 0, run.stderr
        assert copied(run.stdout) == "9 uploaded, 0 mounted, 0 existing"
        for blob in image.blobs:
            assert fake.blob("rec/mended", blob.digest) == blob.data


async def test_blobs_the_target_repository_holds_count_as_existing_however_old_its_row(
    registry: Registry,
) -> None:
    """The record's newest rows name other repositories; the target's own row is older. The
    HEAD still goes first, and the counts say "existing", not "mounted"."""
    image = redis()
    async with start_fake([image]) as fake:
        first = await run_pypull_async(
            "copy", f"{fake.host}/library/redis:latest", f"{fake.host}/t/one:a"
        )
        assert first.returncode == 0, first.stderr
        record = blob_info(as_store(None))
        for repo in ("x/a", "x/b", "x/c", "library/redis"):  # newer than t/one's rows
            record.seen(fake.url, [(parse_digest(b.digest), repo) for b in image.blobs])
        run = await run_pypull_async(
            "copy", f"{registry.host}/library/redis:latest", f"{fake.host}/t/one:b"
        )
        assert run.returncode == 0, run.stderr
        assert copied(run.stdout) == "0 uploaded, 0 mounted, 9 existing"
