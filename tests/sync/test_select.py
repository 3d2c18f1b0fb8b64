"""What a sync entry selects beyond its regexes: ``semver`` and ``newest`` over a tag list (the
issue's acceptance), RE2 regexes, the shards of a file, and a namespace's repositories."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from puller.cli.copy import SYNC_EPILOG
from puller.oci.reference import Reference
from puller.sync.file import SyncEntry, SyncFileError, in_shard, parse_sync_text
from puller.sync.select import compile_regex, newest, shard_of
from puller.sync.semver import parse_version

TAGS = ["1.0.0", "1.2.0", "1.10.0", "2.0.0", "latest"]


def entries(text: str) -> list[SyncEntry]:
    return parse_sync_text(textwrap.dedent(text).lstrip("\n"), "sync.toml")


def entry(extra: str, source: str = "r.example/app", target: str = "s.example/app") -> SyncEntry:
    (only,) = entries(f'[[sync]]\nsource = "{source}"\ntarget = "{target}"\n{extra}\n')
    return only


def selected(e: SyncEntry, tags: list[str]) -> list[str]:
    """What a run copies of ``tags``: the tags each passes, then ``newest`` among them."""
    return e.chosen([t for t in tags if e.selects(t)])


@pytest.mark.parametrize(
    ("extra", "taken"),
    [
        # the issue's acceptance
        ('semver = ">=1.2.0, <2.0.0"', ["1.2.0", "1.10.0"]),
        ('semver = ">=1.0.0"\nnewest = 2', ["1.10.0", "2.0.0"]),
        # newest alone: the highest versions among the tags that are versions
        ("newest = 3", ["1.2.0", "1.10.0", "2.0.0"]),
        ("newest = 10", ["1.0.0", "1.2.0", "1.10.0", "2.0.0"]),
        # with tags and exclude: newest chooses among what they keep
        ('tags = ["1\\\\..*"]\nnewest = 2', ["1.2.0", "1.10.0"]),
        ('exclude = ["2\\\\..*"]\nnewest = 1', ["1.10.0"]),
        ('tags = ["1\\\\..*", "latest"]\nsemver = "^1.2"', ["1.2.0", "1.10.0"]),
        ('exclude = ["1\\\\.10\\\\..*"]\nsemver = "~1"', ["1.0.0", "1.2.0"]),
        # a tag that is no version is never a semver match
        ('semver = "*"', ["1.0.0", "1.2.0", "1.10.0", "2.0.0"]),
        ('tags = ["latest"]', ["latest"]),
    ],
)
def test_semver_and_newest_over_the_issues_tags(extra: str, taken: list[str]) -> None:
    assert selected(entry(extra), TAGS) == taken


def test_variant_tags_are_pre_releases_and_newest_ranks_them_below_their_release() -> None:
    tags = ["7.2.4", "7.2.4-alpine", "7.2.5-rc1", "7.4.0", "8.0-rc1", "v7.3"]
    assert selected(entry('semver = ">=7.2, <8"'), tags) == ["7.2.4", "7.4.0", "v7.3"]
    assert selected(entry('semver = ">=7.2.0-0, <8.0.0-0"\nnewest = 4'), tags) == [
        "7.2.4",
        "7.2.5-rc1",
        "7.4.0",
        "v7.3",
    ]  # 7.2.4-alpine is below 7.2.4; an explicit <8 would take 8.0-rc1 too, as Masterminds does
    assert "8.0-rc1" in selected(entry('semver = ">=7.2.0-0, <8"'), tags)
    assert selected(entry("newest = 2"), tags) == ["7.4.0", "8.0-rc1"]  # pre-releases count
    assert selected(entry('newest = 2\nsemver = "*"'), tags) == ["7.4.0", "v7.3"]


def test_newest_keeps_the_order_given_and_ranks_two_tags_of_one_version() -> None:
    assert newest(["1.2", "v1.2.0", "1.2.0", "0.9", "x"], 2) == ["1.2.0", "v1.2.0"]
    assert newest(["b", "a"], 3) == []
    assert newest(["1", "2"], 0) == []
    e = entry("newest = 2")
    assert e.chosen(["3", "1", "2"]) == ["3", "2"]


@given(
    st.lists(st.sampled_from([*TAGS, "0.1", "v3", "3.0.0-rc1", "x-1"]), unique=True),
    st.integers(1, 6),
)
def test_newest_takes_at_most_n_versions_and_none_below_one_it_leaves(
    tags: list[str], count: int
) -> None:
    e = entry(f"newest = {count}")
    taken = selected(e, tags)
    assert len(taken) <= count and set(taken) <= set(tags)
    assert all(e.selects(t) for t in taken)
    left = [t for t in tags if e.selects(t) and t not in taken]
    lowest = min((key(t) for t in taken), default=None)
    assert not left or (len(taken) == count and all(key(t) <= lowest for t in left))  # type: ignore[operator]


def key(tag: str) -> tuple[object, ...]:
    version = parse_version(tag)
    assert version is not None
    return (version.key, tag)


def test_a_semver_or_newest_selection_collides_like_the_same_regexes() -> None:
    same = 'semver = ">=1.2"\nnewest = 3'
    text = f"""
        [[sync]]
        source = "r.example/a"
        target = "s.example/m"
        {same}
        [[sync]]
        source = "r.example/b"
        target = "s.example/m"
        {same}
        """
    with pytest.raises(SyncFileError, match=r"sync.toml:8: sync.target: writes the same tags"):
        entries(text)
    # another constraint, or another count: only the tag lists can tell
    assert len(entries(text.replace("newest = 3", "newest = 2", 1))) == 2
    assert len(entries(text.replace(">=1.2", ">=1.3", 1))) == 2
    # a plain tag that both select is refused: it may be written twice
    both = entries_error(
        '[[sync]]\nsource = "r.example/a"\ntarget = "s.example/m"\nsemver = "^1"\n'
        '[[sync]]\nsource = "r.example/b:1.2.0"\ntarget = "s.example/m"\n'
    )
    assert "writes s.example/m:1.2.0" in both


def entries_error(text: str) -> str:
    with pytest.raises(SyncFileError) as info:
        entries(text)
    return str(info.value)


# -- RE2 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("(a)\\1", "invalid escape sequence: \\1"),
        ("(?P<v>a)(?P=v)", "invalid perl operator: (?P"),
        ("(?=a)a", "invalid perl operator: (?="),
        ("(?!a)b", "invalid perl operator: (?!"),
        ("(?<=a)b", "invalid perl operator: (?<="),
        ("(?<!a)b", "invalid perl operator: (?<!"),
        ("a++", "bad repetition operator: ++"),
        ("a\\Z", "invalid escape sequence: \\Z"),
    ],
)
def test_what_re2_cannot_run_is_refused_saying_why(pattern: str, why: str) -> None:
    with pytest.raises(
        ValueError,
    ) as info:
        compile_regex(pattern)
    assert str(info.value) == why


def test_re2_regexes_match_whole_tags_and_are_values() -> None:
    r = compile_regex("7\\.[0-9]+")
    assert r.fullmatch("7.2") and not r.fullmatch("7.2-rc1") and not r.fullmatch("17.2")
    assert r == compile_regex("7\\.[0-9]+") and str(r) == "7\\.[0-9]+"
    assert compile_regex("\\d+").fullmatch("12") and not compile_regex("\\d").fullmatch("\u0663")


# -- shards ---------------------------------------------------------------------------------------


def six() -> list[SyncEntry]:
    return entries(
        "".join(
            f'[[sync]]\nsource = "r.example/{name}"\ntarget = "s.example/mirror/{name}"\n'
            for name in ("redis", "postgres", "nginx", "alpine", "busybox", "team/app")
        )
    )


def test_the_shards_of_six_entries_are_disjoint_and_together_all_six() -> None:
    all_six = six()
    one, two = in_shard(all_six, 1, 2), in_shard(all_six, 2, 2)
    assert one and two
    assert not {e.line for e in one} & {e.line for e in two}
    assert sorted(e.line for e in one + two) == [e.line for e in all_six]


@given(st.lists(st.text(min_size=1, max_size=40), unique=True, max_size=30), st.integers(1, 9))
def test_every_name_is_in_exactly_one_shard(names: list[str], count: int) -> None:
    for name in names:
        part = shard_of(name, count)
        assert 1 <= part <= count
        assert [i for i in range(1, count + 1) if shard_of(name, count) == i] == [part]


def test_a_shard_is_the_same_on_every_run_and_machine() -> None:
    # SHA-256 of the name, not Python's per-process hash(): numbers fixed for good, since
    # changing them would move repositories between the cron jobs of a running fleet
    assert [shard_of(f"s.example/mirror/{n}", 3) for n in "abcdef"] == [3, 1, 1, 2, 2, 3]
    assert shard_of("s.example/mirror/redis", 1) == 1


# -- namespaces -----------------------------------------------------------------------------------


def namespace(extra: str = "", source: str = "r.example:5000/team/*") -> SyncEntry:
    return entry(extra, source=source, target="s.example/mirror/team-copy")


def test_a_namespace_entry() -> None:
    e = namespace('tags = ["1\\\\..*"]\nsemver = "^1"')
    assert e.namespace and e.is_repository
    assert e.source == Reference("r.example:5000", "team", None, None)
    assert e.target == Reference("s.example", "mirror/team-copy", None, None)
    assert [p.pattern for p in e.tags] == ["1\\..*"]


def test_a_namespace_expands_to_the_repositories_below_its_prefix() -> None:
    e = namespace('tags = ["1\\\\..*"]')
    catalog = ["team/a", "team/a/b", "teams/x", "team", "other/team/c", "team/y/z"]
    expanded, invalid = e.expand(catalog)
    assert [(str(x.source), str(x.target)) for x in expanded] == [
        ("r.example:5000/team/a", "s.example/mirror/team-copy/a"),
        ("r.example:5000/team/a/b", "s.example/mirror/team-copy/a/b"),
        ("r.example:5000/team/y/z", "s.example/mirror/team-copy/y/z"),
    ]
    assert invalid == []
    assert all(not x.namespace and x.tags == e.tags and x.line == e.line for x in expanded)


def test_repositories_narrows_a_namespace_by_the_path_below_its_prefix() -> None:
    e = namespace('repositories = "a(/.*)?"')
    expanded, _ = e.expand(["team/a", "team/a/b", "team/ab", "team/b/a"])
    assert [x.source.path for x in expanded] == ["team/a", "team/a/b"]


def test_catalog_paths_that_make_no_reference_are_returned_not_expanded() -> None:
    e = namespace()
    hostile = [
        "team/UPPER",
        "team/a:tag",
        "team/a@sha256:" + "0" * 64,
        "team/a//b",
        "team/" + "x" * 300,
        "team/ok",
    ]
    expanded, invalid = e.expand(hostile)
    assert [x.source.path for x in expanded] == ["team/ok"]
    assert invalid == hostile[:-1]


# -- the examples users copy ----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def readme_sync_files() -> list[str]:
    """The TOML blocks with [[sync]] entries in the README's mirror-syncing section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Mirror syncing", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```toml\n(.*?)```", section, re.S)
    return [b for b in blocks if "[[sync]]" in b]


def test_the_readmes_sync_files_and_the_helps_example_are_read_as_they_say() -> None:
    blocks = readme_sync_files()
    assert len(blocks) >= 3
    for block in blocks:
        assert parse_sync_text(block, "README.md")
    example = SYNC_EPILOG.split("the sync file (TOML):\n", 1)[1].split("\n\n", 1)[0]
    redis, postgres, team, app = parse_sync_text(textwrap.dedent(example), "--help")
    assert postgres.semver is not None and postgres.newest == 3
    assert team.namespace and team.repositories is not None
    assert [e.is_repository for e in (redis, postgres, team, app)] == [True, True, True, False]


def test_a_namespace_meets_only_a_namespace_of_the_same_source() -> None:
    ns = '[[sync]]\nsource = "r.example/team/*"\ntarget = "s.example/m"\ntags = ["7"]\n'
    # a namespace writes below s.example/m, never s.example/m:7 itself
    assert len(entries(ns + '[[sync]]\nsource = "r.example/app:7"\ntarget = "s.example/m"\n')) == 2
    other = ns.replace("r.example/team/*", "r.example/crew/*")
    assert len(entries(ns + other)) == 2  # only the catalog can tell
    assert len(entries(ns + ns.replace('tags = ["7"]', 'repositories = "a"\ntags = ["7"]'))) == 2
    assert "writes s.example/m/*:7, as the entry at sync.toml:1 does" in entries_error(ns + ns)
    every = ns.replace('tags = ["7"]\n', "")
    assert "writes every tag of s.example/m/*" in entries_error(every + every)
