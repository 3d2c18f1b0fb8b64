"""``pypull sync FILE`` and ``pypull push`` between two real registries, the target behind
htpasswd with its credentials in docker's config.json: every tag and child byte for byte (read
back by skopeo), each shared blob sent once, a second run that only asks (no manifest GET at the
source, nothing written to the target), platform filters, ``--missing``, and pushes from the
store of a Docker v2 image and of a multi-platform index."""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from fixtures.images import Image, docker_media, make_image, make_index, multiplatform, shared_pair
from fixtures.registry import PASSWORD, USER, Registry, push, running_registry
from puller.copying import SOURCE_DIGEST_ANNOTATION
from puller.sync.file import load_sync_file
from puller.targetlock import hold
from tests.support import fakeregistry
from tests.support.auth import basic_auth, write_docker_config
from tests.support.fakeregistry import CountedFault, Handler, start_fake
from tests.support.helpers import AccessLog, on_a_terminal, raw, run_pypull


def docker_list() -> Image:
    """A Docker manifest list over two Docker v2 manifests."""
    children = [
        make_image(
            "library/dlist", "latest", layers=2, family="docker", seed=f"dlist/{arch}",
            platform=("linux", arch, None),
        ).manifests[0]
        for arch in ("amd64", "386")
    ]  # fmt: skip
    return make_index("library/dlist", "latest", children, "docker")


def three() -> Image:
    """An OCI index of three platforms, 2 layers each."""
    children = [
        make_image(
            "library/three", "1", layers=2, seed=f"three/{arch}", platform=("linux", arch, None)
        ).manifests[0]
        for arch in ("amd64", "arm64", "s390x")
    ]
    return make_index("library/three", "1", children, "oci")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A source registry of its own (its log is read by these tests alone)."""
    config = {"log": {"accesslog": {"disabled": False}}}
    with running_registry(tmp_path_factory.mktemp("sync-source"), extra_config=config) as reg:
        multi = multiplatform()
        for tag in ("latest", "7.0", "7.0-rc1", "6.2"):
            push(reg.url, multi, tag=tag)
        push(reg.url, docker_list())
        push(reg.url, three())
        for image in (*shared_pair(), docker_media()):
            push(reg.url, image)
        yield reg


@pytest.fixture(autouse=True)
def target_credentials(target: Registry) -> None:
    write_docker_config({"auths": {target.host: {"auth": basic_auth(USER, PASSWORD)}}})


def write_sync_file(path: Path, source: Registry, target: Registry, prefix: str) -> Path:
    path.write_text(
        f"""# the team's mirror
[[sync]]
source = "{source.host}/library/multi"
target = "{target.host}/{prefix}/multi"
tags = ["7\\\\..*", "latest"]
exclude = [".*-rc.*"]

[[sync]]
source = "{source.host}/library/dlist"
target = "{target.host}/{prefix}/dlist"

[[sync]]
source = "{source.host}/library/app-a:1"
target = "{target.host}/{prefix}/app-a"

[[sync]]
source = "{source.host}/library/app-b:1"
target = "{target.host}/{prefix}/app-b"
"""
    )
    return path


def statuses(stdout: str) -> tuple[dict[str, str], dict[str, object]]:
    docs = [json.loads(line) for line in stdout.splitlines()]
    assert docs[-1]["event"] == "summary"
    return {d["target"]: d["status"] for d in docs[:-1]}, docs[-1]


def failures(stdout: str) -> list[str]:
    """The lines (plain or JSON) of the images that failed: what an assertion should show."""
    return [line for line in stdout.splitlines() if '"failed"' in line or ": failed: " in line]


def writes(log: AccessLog) -> list[tuple[str, str]]:
    return [(m, p) for m, p in log.requests() if m in ("PUT", "POST", "PATCH", "DELETE")]


def manifest_gets(log: AccessLog) -> list[str]:
    return [p for m, p in log.requests() if m == "GET" and "/manifests/" in p]


def test_a_sync_file_copies_every_tag_and_child_byte_for_byte_and_a_second_run_only_asks(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    sync = write_sync_file(tmp_path / "sync.toml", source, target, "m")
    target_log = AccessLog(target)
    run = run_pypull("sync", sync, "--json")
    assert run.returncode == 0, failures(run.stdout) or run.stderr
    status, summary = statuses(run.stdout)
    t = target.host
    assert status == {
        f"{t}/m/multi:7.0": "copied",
        f"{t}/m/multi:latest": "copied",
        f"{t}/m/dlist:latest": "copied",
        f"{t}/m/app-a:1": "copied",
        f"{t}/m/app-b:1": "copied",
    }  # 6.2 and 7.0-rc1 are filtered out
    assert summary["copied"] == 5 and summary["failed"] == 0

    uploads = Counter(
        p.split("digest=")[1].split("&")[0].replace("%3A", ":")
        for m, p in target_log.requests()
        if m == "PUT" and "/blobs/uploads/" in p
    )
    assert uploads and max(uploads.values()) == 1, uploads  # a shared blob went once
    a, b = shared_pair()
    every_blob = {x.digest for image in (multiplatform(), docker_list(), a, b) for x in image.blobs}
    assert set(uploads) <= every_blob
    assert len(uploads) + sum(m == "POST" and "mount=" in p for m, p in target_log.requests()) >= (
        len(every_blob)
    )

    for name, image in (
        ("multi:7.0", multiplatform()),
        ("multi:latest", multiplatform()),
        ("dlist:latest", docker_list()),
        ("app-a:1", a),
        ("app-b:1", b),
    ):
        assert raw(target, f"m/{name}", creds=True) == raw(source, f"library/{name}") == image.raw
        repo = name.split(":")[0]
        for child in image.manifests if image.is_index else ():
            at_target = raw(target, f"m/{repo}@{child.digest}", creds=True)
            assert at_target == child.raw

    source_log, target_log = AccessLog(source), AccessLog(target)
    again = run_pypull("sync", sync, "--json")
    assert again.returncode == 0, again.stderr
    status, summary = statuses(again.stdout)
    assert set(status.values()) == {"up-to-date"} and len(status) == 5
    assert manifest_gets(source_log) == []  # Docker Hub would count none of it as a pull
    assert writes(target_log) == []


def test_platforms_write_an_annotated_index_and_then_cost_no_source_get(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    sync = tmp_path / "two.toml"
    sync.write_text(
        f'[[sync]]\nsource = "{source.host}/library/three:1"\n'
        f'target = "{target.host}/two/three"\nplatforms = ["linux/arm64", "linux/s390x"]\n'
    )
    run = run_pypull("sync", sync)
    assert run.returncode == 0, run.stderr
    assert ": copied (6 uploaded" in run.stdout  # two children's configs and layers only
    index = json.loads(raw(target, "two/three:1", creds=True))
    chosen = [three().manifest_for("linux", arch) for arch in ("arm64", "s390x")]
    assert [m["digest"] for m in index["manifests"]] == [c.digest for c in chosen]
    assert index["annotations"][SOURCE_DIGEST_ANNOTATION] == three().digest
    for child in chosen:
        assert raw(target, f"two/three@{child.digest}", creds=True) == child.raw

    source_log, target_log = AccessLog(source), AccessLog(target)
    again = run_pypull("sync", sync)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0].endswith(": up to date")
    assert manifest_gets(source_log) == []
    assert writes(target_log) == []


def test_missing_lists_the_target_once_and_never_asks_the_source(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    sync = write_sync_file(tmp_path / "sync.toml", source, target, "miss")
    first = run_pypull("sync", sync)
    assert first.returncode == 0, failures(first.stdout) or first.stderr
    source_log, target_log = AccessLog(source), AccessLog(target)
    again = run_pypull("sync", "--missing", sync, "--json")
    assert again.returncode == 0, again.stderr
    status, _ = statuses(again.stdout)
    assert set(status.values()) == {"up-to-date"}
    # The repositories' tags are listed at the source (which tags to copy), nothing else.
    assert sorted(p for _, p in source_log.requests()) == [
        "/v2/library/dlist/tags/list",
        "/v2/library/multi/tags/list",
    ]
    lists = [
        p for _, p, code, _ in target_log.entries() if p.endswith("/tags/list") and code == 200
    ]
    assert sorted(lists) == [
        f"/v2/miss/{r}/tags/list" for r in ("app-a", "app-b", "dlist", "multi")
    ]
    assert writes(target_log) == []


def test_a_dry_run_of_a_sync_file_writes_nothing(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    sync = write_sync_file(tmp_path / "sync.toml", source, target, "dry")
    target_log = AccessLog(target)
    run = run_pypull("sync", sync, "--dry-run")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "5 images: 5 would copy"
    assert writes(target_log) == []


def test_a_sync_file_error_names_its_line_and_key(tmp_path: Path) -> None:
    sync = tmp_path / "bad.toml"
    sync.write_text('[[sync]]\nsource = "redis"\ntarget = "r.example/redis"\ntag = ["7"]\n')
    run = run_pypull("sync", sync)
    assert run.returncode == 1
    assert run.stderr.startswith(f"Error: {sync}:4: sync.tag: unknown key"), run.stderr
    assert run.stdout == ""


def test_two_entries_whose_regexes_meet_at_one_tag_the_later_fails_and_the_tag_stays(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    # Two regexes: the file alone cannot tell that both select 7.0; the run can.
    sync = tmp_path / "clash.toml"
    sync.write_text(
        f'[[sync]]\nsource = "{source.host}/library/multi"\ntarget = "{target.host}/clash/multi"\n'
        'tags = ["7\\\\..*"]\nexclude = [".*-rc.*"]\n\n'
        f'[[sync]]\nsource = "{source.host}/library/multi"\ntarget = "{target.host}/clash/multi"\n'
        'tags = ["[0-9.]+"]\nplatforms = ["linux/arm64"]\n'
    )
    multi, arm = f"{source.host}/library/multi", multiplatform().manifest_for("linux", "arm64")
    clash = f"{target.host}/clash/multi"
    for run_number in (1, 2):
        target_log = AccessLog(target)
        run = run_pypull("sync", sync)
        assert run.returncode == 1, run.stdout + run.stderr
        *lines, summary = run.stdout.splitlines()
        refused = (
            f"{multi}:7.0 -> {clash}:7.0: failed: tag 7.0 is written by the entry at {sync}:1"
            " in this run already: one writer per tag"
        )
        assert refused in lines, lines
        done = "copied (" if run_number == 1 else "up to date"
        assert any(line.startswith(f"{multi}:7.0 -> {clash}:7.0: {done}") for line in lines), lines
        assert any(line.startswith(f"{multi}:6.2 -> {clash}:6.2: {done}") for line in lines)
        assert len(lines) == 3
        # The first entry's image stands, and stays: the second run writes nothing.
        assert raw(target, "clash/multi:7.0", creds=True) == multiplatform().raw
        assert raw(target, "clash/multi:6.2", creds=True) == arm.raw
        if run_number == 2:
            assert writes(target_log) == []
            assert summary == "3 images: 2 up to date, 1 failed"


# -- pypull push ----------------------------------------------------------------------------------


def test_push_sends_the_bytes_the_source_served_for_a_docker_v2_image(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    name = f"{source.host}/library/dockerimg:latest"
    assert run_pypull("pull", "--store", store, name).returncode == 0
    run = run_pypull("push", "--store", store, name, f"{target.host}/pushed/dockerimg")
    assert run.returncode == 0, run.stderr
    assert ": copied (5 uploaded" in run.stdout
    assert raw(target, "pushed/dockerimg:latest", creds=True) == docker_media().raw
    assert raw(source, "library/dockerimg:latest") == docker_media().raw

    target_log = AccessLog(target)
    again = run_pypull("push", "--store", store, name, f"{target.host}/pushed/dockerimg")
    assert again.stdout.rstrip().endswith(": up to date"), again.stdout + again.stderr
    assert writes(target_log) == []


def test_push_of_a_multi_platform_index_needs_every_platform_in_the_store(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    name = f"{source.host}/library/multi:latest"
    assert run_pypull("pull", "--store", store, "--platform", "linux/amd64", name).returncode == 0
    half = run_pypull("push", "--store", store, name, f"{target.host}/pushed/multi")
    assert half.returncode == 1
    assert "the store holds only some platforms" in half.stdout
    assert "--platform linux/arm64" in half.stdout
    assert "Traceback" not in half.stderr
    amd = run_pypull(
        "push", "--store", store, "--platform", "linux/amd64", name, f"{target.host}/pushed/amd"
    )
    assert amd.returncode == 0, amd.stdout + amd.stderr
    amd64 = multiplatform().manifest_for("linux", "amd64")
    assert raw(target, "pushed/amd:latest", creds=True) == amd64.raw

    assert run_pypull("pull", "--store", store, "--platform", "linux/arm64", name).returncode == 0
    run = run_pypull("push", "--store", store, name, f"{target.host}/pushed/multi")
    assert run.returncode == 0, run.stdout + run.stderr
    image = multiplatform()
    assert raw(target, "pushed/multi:latest", creds=True) == image.raw
    for child in image.manifests:
        assert raw(target, f"pushed/multi@{child.digest}", creds=True) == child.raw


def test_push_of_an_image_not_in_the_store_says_so(target: Registry, tmp_path: Path) -> None:
    run = run_pypull(
        "push", "--store", tmp_path / "empty", "redis:7", f"{target.host}/pushed/redis"
    )
    assert run.returncode == 1
    assert "not in the store" in run.stdout and "pull it first" in run.stdout


def test_on_a_terminal_a_run_bar_counts_images_and_the_lines_remain(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    screen = on_a_terminal(
        *("sync", "--to", f"{target.host}/tty"),
        *(f"{source.host}/library/app-a:1", f"{source.host}/library/dockerimg"),
    )
    assert "/2 images |" in screen  # the bar: images done of 2
    assert f"-> {target.host}/tty/library/app-a:1: copied (" in screen
    assert f"-> {target.host}/tty/library/dockerimg:latest: copied (" in screen
    assert "2 images: 2 copied" in screen
    # A sync file's total is known once its repositories' tags are listed.
    sync = write_sync_file(tmp_path / "sync.toml", source, target, "ttyfile")
    screen = on_a_terminal("sync", str(sync))
    assert "/5 images |" in screen and "5 images: 5 copied" in screen


def test_one_platform_is_tagged_as_its_manifest_and_then_costs_no_source_get(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    src, dst = f"{source.host}/library/multi:latest", f"{target.host}/one/multi"
    run = run_pypull("copy", "--store", store, "--platform", "linux/arm64", src, dst)
    assert run.returncode == 0, run.stderr
    arm = multiplatform().manifest_for("linux", "arm64")
    assert run.stdout.startswith(f"{src} -> {dst}:latest: copied (4 uploaded"), run.stdout
    assert raw(target, "one/multi:latest", creds=True) == arm.raw

    source_log, target_log = AccessLog(source), AccessLog(target)
    again = run_pypull("copy", "--store", store, "--platform", "linux/arm64", src, dst)
    assert again.stdout == f"{src} -> {dst}:latest: up to date\n", again.stdout + again.stderr
    assert manifest_gets(source_log) == []  # the index the first run kept says which child
    assert writes(target_log) == []
    # Without the index at hand (another machine), the comparison costs one GET, no write.
    elsewhere = run_pypull(
        "copy", "--store", tmp_path / "other", "--platform", "linux/arm64", src, dst
    )
    assert elsewhere.stdout.endswith(": up to date\n"), elsewhere.stdout + elsewhere.stderr
    assert writes(target_log) == []


def test_an_entry_that_fails_does_not_stop_the_others(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    sync = tmp_path / "mixed.toml"
    sync.write_text(
        f'[[sync]]\nsource = "{source.host}/library/nothing"\n'
        f'target = "{target.host}/mixed/nothing"\n\n'
        f'[[sync]]\nsource = "{source.host}/library/app-a:1"\n'
        f'target = "{target.host}/mixed/app-a"\n'
    )
    run = run_pypull("sync", sync)
    assert run.returncode == 1
    *lines, summary = run.stdout.splitlines()
    copied, failed = sorted(lines)
    assert failed.startswith(f"{source.host}/library/nothing") and ": failed: " in failed
    assert "not found" in failed or "unknown" in failed, failed
    assert copied.startswith(f"{source.host}/library/app-a:1 -> ") and ": copied (" in copied
    assert summary == "2 images: 1 copied, 1 failed"


def test_blobs_already_in_the_store_are_uploaded_from_it(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    name = f"{source.host}/library/app-a:1"
    assert run_pypull("pull", "--store", store, name).returncode == 0
    source_log = AccessLog(source)
    run = run_pypull("copy", "--store", store, name, f"{target.host}/fromstore/app-a")
    assert run.returncode == 0, run.stdout + run.stderr
    assert ": copied (9 uploaded" in run.stdout
    assert source_log.blob_requests() == []  # every blob came from the store
    assert raw(target, "fromstore/app-a:1", creds=True) == shared_pair()[0].raw


def test_a_corrupt_blob_in_the_store_is_never_completed_at_the_target(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    name = f"{source.host}/library/app-b:1"
    assert run_pypull("pull", "--store", store, name).returncode == 0
    layer = shared_pair()[1].manifests[0].layers[-1]
    path = store / "blobs" / "sha256" / layer.digest.removeprefix("sha256:")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    run = run_pypull("copy", "--store", store, name, f"{target.host}/corrupt/app-b")
    assert run.returncode == 1
    assert ": failed: " in run.stdout and str(path) in run.stdout, run.stdout
    blob = f"{target.url}/v2/corrupt/app-b/blobs/{layer.digest}"
    request = urllib.request.Request(blob, method="HEAD")
    request.add_header("Authorization", f"Basic {basic_auth(USER, PASSWORD)}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 404  # the upload never completed


# -- one run at a time per target repository ------------------------------------------------------


def started(*args: str | Path) -> subprocess.Popen[bytes]:
    """``python -m puller ARGS`` started, not waited for, as ``run_pypull`` runs it; its pipes
    unbuffered, so that a line read off stderr leaves the rest for ``communicate``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPULL_")}
    return subprocess.Popen(
        [sys.executable, "-m", "puller", *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
        env=env,
    )


def first_line(proc: subprocess.Popen[bytes]) -> str:
    """The first line ``proc`` writes on stderr (a minute at most, not to hang the suite)."""
    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], 60)
    assert ready, "nothing on stderr within a minute"
    return proc.stderr.readline().decode()


def test_a_second_run_waits_for_the_first_and_then_uploads_no_blob(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    sync = write_sync_file(tmp_path / "sync.toml", source, target, "overlap")
    repositories = sorted({entry.target.name for entry in load_sync_file(sync)})
    waiting = f"Waiting for another pypull to finish writing to {repositories[0]}\n"
    target_log = AccessLog(target)
    # The test holds the locks as a run in progress would, so that both runs surely start while
    # they are held: the one that takes them next runs first, and the other waits for it.
    with hold(repositories):
        runs = [started("sync", sync, "--json") for _ in range(2)]
        assert [first_line(run) for run in runs] == [waiting, waiting]
    outcomes = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outcomes
    assert [err.decode() for _, err in outcomes] == ["", ""]  # the one line, read above
    images = [[json.loads(line) for line in out.splitlines()[:-1]] for out, _ in outcomes]
    first, second = sorted(images, key=lambda run: run[0]["status"])  # "copied" < "up-to-date"
    assert [image["status"] for image in first] == ["copied"] * 5
    assert [image["status"] for image in second] == ["up-to-date"] * 5
    # Every blob upload and mount the target saw is one the first run reports: the second, once
    # it had the locks, found the target up to date and only asked.
    # (Only this test's repositories: the registry logs a request when it has answered it, so a
    # PUT an earlier test's client gave up on halfway can land in this test's part of the log.)
    requests = [(m, p) for m, p in target_log.requests() if p.startswith("/v2/overlap/")]
    uploads = [p for m, p in requests if m == "PUT" and "/blobs/uploads/" in p]
    mounts = [p for m, p in requests if m == "POST" and "mount=" in p]
    assert len(uploads) == sum(image["blobs"]["uploaded"] for image in first) > 0
    assert len(mounts) == sum(image["blobs"]["mounted"] for image in first)
    assert sum(image["blobs"]["uploaded"] for image in second) == 0


def test_no_wait_exits_75_naming_the_busy_repository_and_asks_nothing(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    sync = write_sync_file(tmp_path / "sync.toml", source, target, "busy")
    busy = f"{target.host}/busy/dlist"
    target_log = AccessLog(target)
    with hold([busy]):
        runs = [
            run_pypull("sync", sync, "--no-wait", "--json"),
            run_pypull("copy", "--no-wait", f"{source.host}/library/dlist:latest", busy),
        ]
    for run in runs:
        assert run.returncode == 75, run.stdout + run.stderr
        assert run.stderr == f"Error: {busy} is busy: another pypull is writing to it\n"
    assert json.loads(runs[0].stdout) == {
        "event": "error",
        "v": 1,
        "code": "busy",
        "message": f"{busy} is busy: another pypull is writing to it",
    }
    assert runs[1].stdout == ""
    assert target_log.requests() == []
    # The locks it took before it met the busy one were let go: a run now has them all.
    again = run_pypull("sync", sync, "--no-wait")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines()[-1] == "5 images: 5 copied"


def test_a_dry_run_neither_waits_nor_locks(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    sync = write_sync_file(tmp_path / "sync.toml", source, target, "dryheld")
    with hold(entry.target.name for entry in load_sync_file(sync)):
        run = run_pypull("sync", sync, "--dry-run", "--no-wait")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "5 images: 5 would copy"


class Held(CountedFault):
    """Holds the first matching request unanswered until its client goes; ``reached`` is set
    once it has one."""

    def __init__(self) -> None:
        super().__init__(times=1)
        self.reached = asyncio.Event()

    async def inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.reached.set()
        await asyncio.Event().wait()  # the server cancels this when the client goes
        raise AssertionError("unreachable")


async def test_a_run_killed_while_it_writes_leaves_the_repository_free(
    target: Registry, tmp_path: Path
) -> None:
    image = make_image("library/killed", "1", layers=2, seed="killed")
    async with start_fake([image]) as fake:
        held = fake.inject("/manifests/", Held(), method=None)
        dst = f"{target.host}/killed/app"
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "puller", "copy", fake.ref(image), dst),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await asyncio.wait_for(held.reached.wait(), 60)  # it holds the lock: it is copying
            busy = await fakeregistry.run_pypull("copy", "--no-wait", fake.ref(image), dst)
            assert busy.returncode == 75, busy.stdout + busy.stderr
            assert busy.stderr == f"Error: {dst} is busy: another pypull is writing to it\n"
        finally:
            proc.kill()  # SIGKILL: nothing of pypull's runs to let go of anything
            await proc.wait()
        after = await fakeregistry.run_pypull("copy", "--no-wait", fake.ref(image), dst)
    assert after.returncode == 0, after.stdout + after.stderr
    assert after.stdout.startswith(f"{fake.ref(image)} -> {dst}:1: copied ("), after.stdout


def test_an_entry_whose_filters_select_no_tag_fails_unless_allow_empty(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    sync = tmp_path / "sync.toml"
    sync.write_text(
        f"""[[sync]]
source = "{source.host}/library/multi"
target = "{target.host}/empty/multi"
tags = ["8\\\\..*"]
"""
    )
    run = run_pypull("sync", sync, "--format", "json")
    assert run.returncode == 1
    record, summary = (json.loads(line) for line in run.stdout.splitlines())
    assert (record["status"], record["code"]) == ("failed", "no-match")
    assert record["target"] == f"{target.host}/empty/multi"
    assert summary["failed"] == 1
    (error,) = run.stderr.splitlines()
    assert error.startswith(f"Error: {source.host}/library/multi -> {target.host}/empty/multi: ")
    assert f"the entry at {sync}:1 selects none of the source's tags" in error

    allowed = run_pypull("sync", sync, "--allow-empty")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout == "0 images: nothing to do\n"
