"""``delete = true`` and ``sync --check`` between two real distribution 2.8 registries (the target
behind htpasswd, deletion enabled in its config, as ``fixtures.registry`` writes it): a tag
upstream dropped is deleted (by digest: distribution cannot delete a tag alone), one outside the
selection is kept, an unreachable source deletes nothing; ``--check`` exits 0 on a synced file
and 1 after a new source tag, copying nothing and asking only HEADs and tag lists."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.images import Image, make_image
from fixtures.registry import PASSWORD, USER, Registry, free_port, push, running_registry
from tests.support.auth import basic_auth, write_docker_config
from tests.support.helpers import AccessLog, run_pypull

pytestmark = pytest.mark.e2e


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Registry]:
    """A source of its own per test (tags are added to it), with its access log."""
    config = {"log": {"accesslog": {"disabled": False}}}
    with running_registry(tmp_path / "source", extra_config=config) as reg:
        yield reg


@pytest.fixture(autouse=True)
def target_credentials(target: Registry) -> None:
    write_docker_config({"auths": {target.host: {"auth": basic_auth(USER, PASSWORD)}}})


def app(tag: str) -> Image:
    return make_image("library/app", tag, layers=1, layer_size=1024, seed=f"del/{tag}")


def sync_file(path: Path, source: str, target: str) -> Path:
    path.write_text(
        f"""[[sync]]
source = "{source}/library/app"
target = "{target}"
tags = ["1\\\\..*"]
delete = true
"""
    )
    return path


def tags_of(registry: Registry, repository: str) -> list[str]:
    request = urllib.request.Request(f"{registry.url}/v2/{repository}/tags/list")
    request.add_header("Authorization", "Basic " + basic_auth(USER, PASSWORD))
    with urllib.request.urlopen(request) as resp:
        return sorted(json.loads(resp.read())["tags"] or [])


def statuses(stdout: str) -> dict[str, str]:
    docs = [json.loads(line) for line in stdout.splitlines()]
    return {d["target"].rsplit(":", 1)[-1]: d["status"] for d in docs if d["event"] == "image"}


def copy(source: str, target: str) -> None:
    run = run_pypull("copy", source, target)
    assert run.returncode == 0, run.stdout + run.stderr


def drop(registry: Registry, tag: str) -> None:
    """Delete ``library/app:TAG`` at the source (by digest: distribution deletes no tag alone;
    each tag of these tests has a digest of its own)."""
    url = f"{registry.url}/v2/library/app/manifests/{app(tag).digest}"
    with urllib.request.urlopen(urllib.request.Request(url, method="DELETE")) as resp:
        assert resp.status == 202


def test_a_tag_the_source_dropped_is_deleted_one_outside_the_selection_kept(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    dst = f"{target.host}/del/kept"
    for tag in ("1.0", "1.0-rc1", "2.0"):
        push(source.url, app(tag), tag=tag)
        copy(f"{source.host}/library/app:{tag}", f"{dst}:{tag}")
    for tag in ("1.0-rc1", "2.0"):
        drop(source, tag)  # 2.0 is outside the selection: kept however the source changes
    log = AccessLog(target)
    run = run_pypull("sync", "--json", sync_file(tmp_path / "s.toml", source.host, dst))
    assert run.returncode == 0, run.stdout + run.stderr
    assert statuses(run.stdout) == {"1.0": "up-to-date", "1.0-rc1": "deleted"}
    assert tags_of(target, "del/kept") == ["1.0", "2.0"]
    deleted = [p for m, p in log.requests() if m == "DELETE"]
    assert deleted == [  # distribution 2.8 refuses the tag (400), then the digest goes
        "/v2/del/kept/manifests/1.0-rc1",
        f"/v2/del/kept/manifests/{app('1.0-rc1').digest}",
    ]


def test_a_shared_digest_is_kept_and_reported(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    """distribution deletes by digest only, with every tag there: a dropped tag whose digest
    another tag (outside the selection) holds is left, kept-shared."""
    dst = f"{target.host}/del/shared"
    for tag in ("1.0", "1.0-rc1"):
        push(source.url, app(tag), tag=tag)
    copy(f"{source.host}/library/app:1.0-rc1", f"{dst}:1.0-rc1")
    copy(f"{source.host}/library/app:1.0-rc1", f"{dst}:stable")
    drop(source, "1.0-rc1")
    run = run_pypull("sync", "--json", sync_file(tmp_path / "s.toml", source.host, dst))
    assert run.returncode == 0, run.stdout + run.stderr
    assert statuses(run.stdout) == {"1.0": "copied", "1.0-rc1": "kept-shared"}
    assert "stable" in run.stdout
    assert tags_of(target, "del/shared") == ["1.0", "1.0-rc1", "stable"]


def test_an_unreachable_source_deletes_nothing_and_exits_1(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    dst = f"{target.host}/del/unreachable"
    push(source.url, app("1.0-rc1"), tag="1.0-rc1")
    copy(f"{source.host}/library/app:1.0-rc1", f"{dst}:1.0-rc1")
    gone = f"127.0.0.1:{free_port()}"  # nothing listens there
    log = AccessLog(target)
    run = run_pypull(
        "sync",
        "--json",
        "--max-download-attempts",
        "1",
        sync_file(tmp_path / "s.toml", gone, dst),
    )
    assert run.returncode == 1, run.stdout + run.stderr
    docs = [json.loads(line) for line in run.stdout.splitlines()]
    assert sorted(d["status"] for d in docs[:-1]) == ["delete-skipped", "failed"]
    assert "Error:" in run.stderr
    assert [m for m, _ in log.requests() if m == "DELETE"] == []
    assert tags_of(target, "del/unreachable") == ["1.0-rc1"]


def test_check_exits_0_when_synced_and_1_after_a_new_source_tag_copying_nothing(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    repository = "del/check"
    for tag in ("1.0", "1.1"):
        push(source.url, app(tag), tag=tag)
    path = sync_file(tmp_path / "s.toml", source.host, f"{target.host}/{repository}")
    assert run_pypull("sync", path).returncode == 0

    at_source, at_target = AccessLog(source), AccessLog(target)
    synced = run_pypull("sync", "--check", path)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    answered = [e for e in (*at_source.entries(), *at_target.entries()) if e[2] != 401]
    asked = [(m, p.split("?")[0].rsplit("/", 2)[-2]) for m, p, _, _ in answered]
    # the source's tag list, the target's; a HEAD of each tag at each end (beside them only
    # the target's 401 challenges of htpasswd)
    assert sorted(asked) == sorted([("GET", "tags")] * 2 + [("HEAD", "manifests")] * 4)

    push(source.url, app("1.2"), tag="1.2")
    at_target = AccessLog(target)
    behind = run_pypull("sync", "--check", "--json", path)
    assert behind.returncode == 1, behind.stdout + behind.stderr
    assert statuses(behind.stdout)["1.2"] == "would-copy"
    assert {m for m, _ in at_target.requests()} <= {"GET", "HEAD"}
    assert tags_of(target, repository) == ["1.0", "1.1"]  # nothing copied
