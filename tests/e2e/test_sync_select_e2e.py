"""``pypull sync FILE`` choosing what to copy, between two real registries: ``semver`` and
``newest`` over a repository's tags (the issue's acceptance), a hostile tag against a regex
that backtracks for hours in Python's ``re`` (RE2 answers at once), ``--shard I/N`` splitting
a file, and a namespace ``REGISTRY/PREFIX/*`` read from the source registry's catalog."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.images import make_image
from fixtures.registry import PASSWORD, USER, Registry, push, running_registry
from puller.sync.select import shard_of
from tests.support.auth import basic_auth, write_docker_config
from tests.support.helpers import raw, run_pypull

VERSIONS = ["1.0.0", "1.2.0", "1.10.0", "2.0.0", "latest"]
#: 41 characters that keep (\d+\.?)+ backtracking to the last one: Python's re would take
#: most of a day over them, RE2 microseconds
HOSTILE = "1" * 40 + "a"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A source registry of its own: app's versions, and a namespace team/ with neighbours."""
    with running_registry(tmp_path_factory.mktemp("select-source")) as reg:
        app = make_image("app", "1.0.0", layers=1, layer_size=64)
        for tag in (*VERSIONS, HOSTILE):
            push(reg.url, app, tag=tag)
        for repository in ("team/x", "team/y/z", "teams/no", "other/team/no"):
            push(reg.url, make_image(repository, "1", layers=1, layer_size=64))
        yield reg


@pytest.fixture(autouse=True)
def target_credentials(target: Registry) -> None:
    write_docker_config({"auths": {target.host: {"auth": basic_auth(USER, PASSWORD)}}})


def targets(stdout: str) -> dict[str, str]:
    """Each image's target and status, from ``--format json``'s lines."""
    docs = [json.loads(line) for line in stdout.splitlines()]
    assert docs[-1]["event"] == "summary"
    return {d["target"]: d["status"] for d in docs[:-1]}


def test_semver_and_newest_choose_among_the_sources_tags(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    sync = tmp_path / "sync.toml"
    sync.write_text(
        f"""[[sync]]
source = "{source.host}/app"
target = "{target.host}/sv/range"
semver = ">=1.2.0, <2.0.0"

[[sync]]
source = "{source.host}/app"
target = "{target.host}/sv/newest"
semver = ">=1.0.0"
newest = 2
"""
    )
    run = run_pypull("sync", sync, "--format", "json")
    assert run.returncode == 0, run.stderr
    t = target.host
    assert targets(run.stdout) == {
        f"{t}/sv/range:1.2.0": "copied",
        f"{t}/sv/range:1.10.0": "copied",
        f"{t}/sv/newest:1.10.0": "copied",
        f"{t}/sv/newest:2.0.0": "copied",
    }


def test_a_hostile_tag_against_a_backtracking_regex_is_matched_at_once(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    sync = tmp_path / "sync.toml"
    sync.write_text(
        f'[[sync]]\nsource = "{source.host}/app"\ntarget = "{target.host}/hostile/app"\n'
        'tags = ["(\\\\d+\\\\.?)+"]\n'
    )
    run = run_pypull("sync", sync, "--dry-run", "--format", "json", timeout=60)  # a hang guard
    assert run.returncode == 0, run.stderr
    assert sorted(targets(run.stdout)) == sorted(
        f"{target.host}/hostile/app:{v}" for v in VERSIONS if v != "latest"
    )


def test_the_shards_of_a_six_entry_file_are_disjoint_and_together_all_six(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    sync = tmp_path / "six.toml"
    names = ["redis", "postgres", "nginx", "alpine", "busybox", "team/app"]
    sync.write_text(
        "".join(
            f'[[sync]]\nsource = "{source.host}/app:1.0.0"\ntarget = "{target.host}/six/{n}"\n'
            for n in names
        )
    )
    shards = []
    for shard in ("1/2", "2/2"):
        run = run_pypull("sync", sync, "--shard", shard, "--dry-run", "--format", "json")
        assert run.returncode == 0, run.stderr
        shards.append(set(targets(run.stdout)))
    one, two = shards
    assert not one & two
    assert one | two == {f"{target.host}/six/{n}:1.0.0" for n in names}
    # Which part each falls in is the README's rule (SHA-256 of the target repository's name),
    # so another machine splits the file alike. The registry's port is in the name: with some
    # ports every entry falls in one part, which is no failure.
    part = {n: shard_of(f"{target.host}/six/{n}", 2) for n in names}
    assert one == {f"{target.host}/six/{n}:1.0.0" for n in names if part[n] == 1}
    # the same split on every run
    again = run_pypull("sync", sync, "--shard", "1/2", "--dry-run", "--format", "json")
    assert set(targets(again.stdout)) == one


def test_a_namespace_copies_every_repository_under_its_prefix(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    sync = tmp_path / "ns.toml"
    sync.write_text(f'[[sync]]\nsource = "{source.host}/team/*"\ntarget = "{target.host}/ns"\n')
    run = run_pypull("sync", sync, "--format", "json")
    assert run.returncode == 0, run.stderr
    assert targets(run.stdout) == {
        f"{target.host}/ns/x:1": "copied",
        f"{target.host}/ns/y/z:1": "copied",
    }
    for sub, repository in (("x", "team/x"), ("y/z", "team/y/z")):
        image = make_image(repository, "1", layers=1, layer_size=64)
        assert raw(target, f"ns/{sub}:1", creds=True) == image.raw

    again = run_pypull("sync", sync)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "2 images: 2 up to date"


def test_repositories_narrows_a_namespace_and_an_empty_one_fails_unless_allowed(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    sync = tmp_path / "ns.toml"
    entry = f'[[sync]]\nsource = "{source.host}/team/*"\ntarget = "{target.host}/narrow"\n'
    sync.write_text(entry + 'repositories = "y/.*"\n')
    run = run_pypull("sync", sync, "--dry-run", "--format", "json")
    assert run.returncode == 0, run.stderr
    assert targets(run.stdout) == {f"{target.host}/narrow/y/z:1": "would-copy"}

    sync.write_text(entry + 'repositories = "nothing"\n')
    empty = run_pypull("sync", sync, "--dry-run")
    assert empty.returncode == 1
    assert f"the entry at {sync}:1 selects no tag of the repositories under" in empty.stderr
    assert run_pypull("sync", sync, "--dry-run", "--allow-empty").returncode == 0
