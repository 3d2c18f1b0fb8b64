"""``copy``, ``push`` and ``sync`` with ``-q``, as skopeo copy -q: nothing on success (a cron job
mails nothing), the Error line of what failed, and the exit status as without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.images import Image, make_image
from tests.support.fakeregistry import Status, run_pypull, start_fake


def images(n: int) -> list[Image]:
    return [make_image(f"library/quiet{i}", "1", layers=1, layer_size=2048) for i in range(n)]


async def test_a_quiet_copy_prints_nothing_and_copies() -> None:
    (image,) = images(1)
    async with start_fake([image]) as source, start_fake() as target:
        src, dst = f"{source.host}/{image.reference}", f"{target.host}/m/quiet0:1"
        run = await run_pypull("copy", "-q", src, dst)
        again = await run_pypull("copy", src, dst)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    assert again.stdout.endswith(": up to date\n"), again.stdout  # it was copied


async def test_a_quiet_sync_prints_only_the_error_of_the_image_that_failed() -> None:
    ok, lost = images(2)
    async with start_fake([ok, lost]) as source, start_fake() as target:
        source.inject("/library/quiet1/manifests/", Status(404, times=None))
        refs = [f"{source.host}/{image.reference}" for image in (ok, lost)]
        run = await run_pypull("sync", "-q", "--to", f"{target.host}/m", *refs)
        check = await run_pypull("sync", "--check", "-q", "--to", f"{target.host}/m", refs[0])
    assert run.returncode == 1
    assert run.stdout == ""
    (line,) = run.stderr.splitlines()
    assert line.startswith(f"Error: {refs[1]} -> "), line
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")  # the other is there


@pytest.mark.parametrize("command", ["copy", "push", "sync"])
async def test_quiet_and_json_together_are_a_usage_error(command: str, store: Path) -> None:
    argv = {
        "copy": ["127.0.0.1:1/a:1", "127.0.0.1:1/b:1"],
        "push": ["a:1", "127.0.0.1:1/b:1", "--store", str(store)],
        "sync": ["--to", "127.0.0.1:1/m", "127.0.0.1:1/a:1"],
    }[command]
    run = await run_pypull(command, "-q", "--format", "json", *argv)
    assert run.returncode == 2
    assert "--quiet and --format json cannot be combined" in run.stderr
    assert run.stdout == ""


async def test_a_quiet_sync_says_which_images_were_deferred() -> None:
    # Exit status 3, "come back later": without a line on stderr, cron would mail nothing.
    some = images(2)
    async with start_fake(some, ratelimit_remaining=10) as source, start_fake() as target:
        refs = [f"{source.host}/{image.reference}" for image in some]
        run = await run_pypull("sync", "-q", "-j", "1", "--to", f"{target.host}/m", *refs)
    assert run.returncode == 3, run.stderr
    assert run.stdout == ""
    assert run.stderr and all(": deferred: " in line for line in run.stderr.splitlines())


async def test_quiet_and_dry_run_together_are_a_usage_error() -> None:
    run = await run_pypull("copy", "-q", "--dry-run", "127.0.0.1:1/a:1", "127.0.0.1:1/b:1")
    assert run.returncode == 2
    assert "--quiet and --dry-run cannot be combined" in run.stderr
