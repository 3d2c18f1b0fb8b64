"""The sync file of ``pypull sync FILE``: what each ``[[sync]]`` means (sources and targets
normalised as pulls do, tag filters, platforms, the line it starts at), and one-line errors that
name the file, the line and the key, as ``config.toml``'s do."""

from __future__ import annotations

import concurrent.futures
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from puller.config import MAX_FILE_SIZE
from puller.errors import ConfigError
from puller.oci.manifest import Platform
from puller.oci.reference import Reference
from puller.sync.file import (
    MAX_PATTERN_LENGTH,
    SyncEntry,
    SyncFileError,
    load_sync_file,
    parse_sync_text,
)

DIGEST = "sha256:" + "ab" * 32
EXAMPLE = r"""
# mirror what the cluster runs
[[sync]]
source = "docker.io/library/redis"           # a repository: its tags, filtered below
target = "registry.internal:5000/mirror/redis"
tags = ["7\\..*", "latest"]                   # regexes, each matched against the whole tag
exclude = [".*-rc.*"]
platforms = ["linux/amd64", "linux/arm64"]   # default: all, digests unchanged

[[sync]]
source = "ghcr.io/org/app:1.4.2"             # one image; the target keeps its tag
target = "registry.internal:5000/mirror/app"
"""


def entries(text: str) -> list[SyncEntry]:
    return parse_sync_text(textwrap.dedent(text).lstrip("\n"), "sync.toml")


def entry(source: str, target: str, extra: str = "") -> SyncEntry:
    (only,) = entries(f'[[sync]]\nsource = "{source}"\ntarget = "{target}"\n{extra}')
    return only


def error(text: str, name: str = "sync.toml") -> str:
    with pytest.raises(SyncFileError) as info:
        parse_sync_text(textwrap.dedent(text).lstrip("\n"), name)
    message = str(info.value)
    assert "\n" not in message, "sync file errors are one line"
    return message


# -- what an entry means --------------------------------------------------------------------------


def test_the_example_file() -> None:
    redis, app = entries(EXAMPLE)
    assert redis.source == Reference("docker.io", "library/redis", None, None)
    assert str(redis.source) == "docker.io/library/redis"
    assert str(redis.target) == "registry.internal:5000/mirror/redis"
    assert (redis.target.tag, redis.target.digest) == (None, None)
    assert [p.pattern for p in redis.tags] == [r"7\..*", "latest"]
    assert [p.pattern for p in redis.exclude] == [".*-rc.*"]
    assert redis.platforms == (Platform("linux", "amd64"), Platform("linux", "arm64"))
    assert redis.is_repository
    assert redis.line == 2

    assert str(app.source) == "ghcr.io/org/app:1.4.2"
    assert str(app.target) == "registry.internal:5000/mirror/app:1.4.2"
    assert (app.tags, app.exclude, app.platforms) == ((), (), ())
    assert not app.is_repository
    assert app.line == 9


def test_entries_are_frozen_values() -> None:
    redis, _ = entries(EXAMPLE)
    with pytest.raises(AttributeError):
        redis.line = 3  # type: ignore[misc]
    assert redis == entries(EXAMPLE)[0]
    assert not hasattr(redis, "__dict__")


@pytest.mark.parametrize(
    ("tag", "selected"),
    [
        ("7.2", True),
        ("7.2.4-alpine", True),
        ("latest", True),
        ("7.2-rc1", False),  # excluded
        ("7", False),  # "7\..*" needs the dot
        ("17.0", False),  # matched whole, not searched
        ("latest-2", False),
        ("6.2", False),
    ],
)
def test_tags_and_exclude_match_whole_tags(tag: str, selected: bool) -> None:
    redis, _ = entries(EXAMPLE)
    assert redis.selects(tag) is selected


def test_without_tags_every_tag_not_excluded_is_selected() -> None:
    e = entry("redis", "r.example/redis", 'exclude = ["nightly.*"]\n')
    assert e.tags == ()
    assert e.selects("7.2") and e.selects("anything_at-all")
    assert not e.selects("nightly-2024")
    assert entry("redis", "r.example/redis").selects("x")


def test_a_tag_longer_than_the_spec_allows_is_selected_by_nothing() -> None:
    e = entry("redis", "r.example/redis", 'tags = ["a*", "(a+)+b"]\n')
    assert e.selects("a" * 128)
    assert not e.selects("a" * 129)
    assert not e.selects("a" * 10_000)


def selects_within(e: SyncEntry, tags: list[str], seconds: float = 10.0) -> list[bool]:
    """``e.selects`` of each tag, in a thread given ``seconds`` (a hang guard, not a bench:
    Python's backtracking re took hours here, RE2 microseconds)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: [e.selects(t) for t in tags]).result(timeout=seconds)


@pytest.mark.parametrize(
    "pattern", ["(\\\\d+\\\\.?)+", "(a+)+b", "(a|aa)+", "(.*a){12}", "(\\\\w+\\\\.?)*x"]
)
def test_a_hostile_tag_against_a_catastrophic_regex_ends(pattern: str) -> None:
    # the case: (\d+\.?)+ against 24 characters took Python's re 0.9 s, doubling per
    # character; 41 characters would take it about a day, 128 longer than the universe has
    e = entry("redis", "r.example/redis", f'tags = ["{pattern}"]\nexclude = ["{pattern}"]\n')
    hostile = ["1" * 40 + "!", "1" * 127 + "!", "a" * 127 + "c", "1." * 63 + "!-"]
    assert selects_within(e, hostile) == [False] * len(hostile)


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("redis", "docker.io/library/redis"),
        ("user/app", "docker.io/user/app"),
        ("index.docker.io/library/redis", "docker.io/library/redis"),
        ("localhost:5000/x", "localhost:5000/x"),
    ],
)
def test_references_are_normalised_as_pulls_do(source: str, name: str) -> None:
    e = entry(source, "localhost:5000/mirror/x")
    assert str(e.source) == name
    assert e.is_repository
    assert (e.source.tag, e.source.digest) == (None, None)


@pytest.mark.parametrize(
    ("source", "target", "read", "written"),
    [
        # the image keeps its tag
        ("redis:7", "r.example/m/redis", "docker.io/library/redis:7", "r.example/m/redis:7"),
        # or takes the target's
        (
            "redis:7",
            "r.example/m/redis:stable",
            "docker.io/library/redis:7",
            "r.example/m/redis:stable",
        ),
        (
            "redis:latest",
            "redis:mine",
            "docker.io/library/redis:latest",
            "docker.io/library/redis:mine",
        ),
        # a digest alone: pushed by that digest, as pypull copy does
        (
            f"redis@{DIGEST}",
            "r.example/m/redis",
            f"docker.io/library/redis@{DIGEST}",
            f"r.example/m/redis@{DIGEST}",
        ),
        (
            f"redis@{DIGEST}",
            "r.example/m/redis:pinned",
            f"docker.io/library/redis@{DIGEST}",
            "r.example/m/redis:pinned",
        ),
        # tag and digest: the digest is read, the tag written
        (
            f"redis:7@{DIGEST}",
            "r.example/m/redis",
            f"docker.io/library/redis:7@{DIGEST}",
            "r.example/m/redis:7",
        ),
    ],
)
def test_one_image(source: str, target: str, read: str, written: str) -> None:
    e = entry(source, target)
    assert not e.is_repository
    assert (str(e.source), str(e.target)) == (read, written)


def test_a_digest_with_platforms_and_a_tagged_target() -> None:
    e = entry(f"redis@{DIGEST}", "r.example/m/redis:7", 'platforms = ["linux/arm/v7"]\n')
    assert e.platforms == (Platform("linux", "arm", "v7"),)
    assert str(e.target) == "r.example/m/redis:7"


def test_entries_written_as_inline_tables() -> None:
    a, b = entries(
        """
        sync = [
          { source = "redis", target = "r.example/redis" },
          { source = "busybox:1", target = "r.example/busybox" },
        ]
        """
    )
    assert (a.line, b.line) == (1, 1)  # the entries have no lines of their own: "sync ="
    assert str(b.target) == "r.example/busybox:1"


def test_quoted_headers_and_comments_are_entry_starts() -> None:
    a, b = entries(
        """
        # first
        [[ "sync" ]]  # quoted
        source = "redis"
        target = "r.example/redis"
        [[sync]]# tight
        source = "busybox"
        target = "r.example/busybox"
        """
    )
    assert (a.line, b.line) == (2, 5)


def test_load_sync_file(tmp_path: Path) -> None:
    path = tmp_path / "mirror.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    assert load_sync_file(path) == parse_sync_text(EXAMPLE, str(path))
    assert load_sync_file(str(path)) == parse_sync_text(EXAMPLE)


# -- errors ---------------------------------------------------------------------------------------

ENTRY = '[[sync]]\nsource = "redis"\ntarget = "r.example/redis"\n'
IMAGE = '[[sync]]\nsource = "redis:7"\ntarget = "r.example/redis"\n'


@pytest.mark.parametrize(
    ("text", "line", "key", "says"),
    [
        # keys
        (
            ENTRY + 'tag = ["7"]\n',
            4,
            "sync.tag",
            "unknown key (did you mean tags? known: delete, exclude, newest, platforms, ratelimit,"
            " referrers, repositories, semver, source, tags, target)",
        ),
        (ENTRY + 'Platforms = ["linux/amd64"]\n', 4, "sync.Platforms", "did you mean platforms?"),
        (ENTRY + "[sync.options]\nfast = true\n", 4, "sync.options", "unknown key"),
        (ENTRY + "options.fast = true\n", 1, "sync.options", "unknown key"),
        (ENTRY + "[[sync.mirror]]\nurl = 'x'\n" + ENTRY, 4, "sync.mirror", "unknown key"),
        ('store = "/x"\n' + ENTRY, 1, "store", "unknown key (known: sync)"),
        (ENTRY + ENTRY + '[[mirror]]\nurl = "x"\n', 7, "mirror", "unknown key (known: sync)"),
        (
            '[[sync]]\ntarget = "r.example/redis"\n',
            1,
            "sync.source",
            "missing: every [[sync]] needs a source and a target",
        ),
        (ENTRY + '[[sync]]\nsource = "redis"\n', 4, "sync.target", "missing"),
        # types
        ('sync = "redis"\n', 1, "sync", "expected [[sync]] tables"),
        (
            '[sync]\nsource = "redis"\ntarget = "r.example/redis"\n',
            1,
            "sync",
            "expected [[sync]] tables",
        ),
        ("sync = [1, 2]\n", 1, "sync", "expected [[sync]] tables"),
        ("sync = []\n", 1, "sync", "no entries: nothing to sync"),
        (
            '[[sync]]\nsource = 7\ntarget = "r.example/redis"\n',
            2,
            "sync.source",
            "expected a string, got 7",
        ),
        (
            '[[sync]]\nsource = "redis"\ntarget = ["a", "b"]\n',
            3,
            "sync.target",
            "expected a string, got ['a', 'b']",
        ),
        (ENTRY + 'tags = "7.*"\n', 4, "sync.tags", "expected a list of strings, got '7.*'"),
        (ENTRY + "exclude = [1]\n", 4, "sync.exclude", "expected a list of strings, got [1]"),
        (ENTRY + 'platforms = "linux/amd64"\n', 4, "sync.platforms", "expected a list of strings"),
        (ENTRY + "tags = []\n", 4, "sync.tags", "is empty: leave tags out to sync every tag"),
        (ENTRY + "platforms = []\n", 4, "sync.platforms", "is empty: leave platforms out"),
        # regexes
        (
            ENTRY + 'tags = ["7", "(7"]\n',
            4,
            "sync.tags",
            "invalid regex '(7': missing ): (7 (regexes run by RE2",
        ),
        (
            ENTRY + "exclude = ['rc[']\n",
            4,
            "sync.exclude",
            "invalid regex 'rc[': missing ]: [",
        ),
        (
            ENTRY + "tags = ['a{2,1}']\n",
            4,
            "sync.tags",
            "invalid regex 'a{2,1}': invalid repetition size: {2,1}",
        ),
        # what RE2 cannot run in time linear in the tag is refused, with the line
        (
            ENTRY + "tags = ['(7)\\.\\1']\n",
            4,
            "sync.tags",
            "invalid regex '(7)\\.\\1': invalid escape sequence: \\1 (regexes run by RE2, in"
            " time linear in the tag: no backreferences, no lookaround)",
        ),
        (
            ENTRY + "exclude = ['(?!7).*']\n",
            4,
            "sync.exclude",
            "invalid regex '(?!7).*': invalid perl operator: (?!",
        ),
        (ENTRY + "tags = ['(?<=v)1']\n", 4, "sync.tags", "invalid perl operator: (?<="),
        (ENTRY + "tags = ['a++']\n", 4, "sync.tags", "bad repetition operator: ++"),
        # semver and newest
        (
            ENTRY + 'semver = ">=7.2,"\n',
            4,
            "sync.semver",
            "invalid constraint '>=7.2,': a comma with no comparison after it",
        ),
        (
            ENTRY + 'semver = "latest"\n',
            4,
            "sync.semver",
            "invalid constraint 'latest': at 'latest': expected a comparison such as >=1.2.3",
        ),
        (ENTRY + 'semver = ""\n', 4, "sync.semver", "empty: leave semver out"),
        (ENTRY + "semver = 7\n", 4, "sync.semver", "expected a string such as '>=7.2, <8', got 7"),
        (ENTRY + 'semver = "1.x.3"\n', 4, "sync.semver", "a number after a wildcard"),
        (ENTRY + "newest = 0\n", 4, "sync.newest", "expected a whole number from 1, got 0"),
        (ENTRY + "newest = true\n", 4, "sync.newest", "expected a whole number from 1, got True"),
        (ENTRY + 'newest = "3"\n', 4, "sync.newest", "expected a whole number from 1, got '3'"),
        (IMAGE + "newest = 3\n", 4, "sync.newest", "the source names one image"),
        (IMAGE + 'semver = "*"\n', 4, "sync.semver", "the source names one image"),
        # namespaces
        (
            '[[sync]]\nsource = "team/*"\ntarget = "r.example/t"\n',
            2,
            "sync.source",
            "'team/*': a namespace is REGISTRY/PREFIX/*, with the registry named",
        ),
        (
            '[[sync]]\nsource = "r.example/*"\ntarget = "s.example/t"\n',
            2,
            "sync.source",
            "a namespace is REGISTRY/PREFIX/*",
        ),
        (
            '[[sync]]\nsource = "r.example/team:7/*"\ntarget = "s.example/t"\n',
            2,
            "sync.source",
            "a namespace is repositories: no tag, no digest, one * at the end",
        ),
        (
            '[[sync]]\nsource = "r.example/*/x/*"\ntarget = "s.example/t"\n',
            2,
            "sync.source",
            "one * at the end",
        ),
        (
            '[[sync]]\nsource = "r.example/Team/*"\ntarget = "s.example/t"\n',
            2,
            "sync.source",
            "invalid reference 'r.example/Team'",
        ),
        (
            '[[sync]]\nsource = "r.example/team/*"\ntarget = "s.example/t:1"\n',
            3,
            "sync.target",
            "has a tag, but the source is a repository",
        ),
        (
            '[[sync]]\nsource = "r.example/team/*"\ntarget = "r.example/team/copy"\n',
            3,
            "sync.target",
            "is inside the namespace team/* it copies",
        ),
        (
            '[[sync]]\nsource = "r.example/team/*"\ntarget = "r.example/team"\n',
            3,
            "sync.target",
            "is the same repository as the source",
        ),
        (
            ENTRY + 'repositories = "a.*"\n',
            4,
            "sync.repositories",
            "chooses among a namespace's repositories: give the source as REGISTRY/PREFIX/*",
        ),
        (
            '[[sync]]\nsource = "r.example/team/*"\ntarget = "s.example/t"\n'
            'repositories = "(a)\\\\1"\n',
            4,
            "sync.repositories",
            "invalid regex '(a)\\1': invalid escape sequence",
        ),
        # platforms
        (
            ENTRY + 'platforms = ["linux/amd64", "linux"]\n',
            4,
            "sync.platforms",
            "invalid platform 'linux': expected os/arch[/variant], e.g. linux/amd64",
        ),
        (
            ENTRY + 'platforms = ["linux//v7"]\n',
            4,
            "sync.platforms",
            "invalid platform 'linux//v7'",
        ),
        # references
        (
            '[[sync]]\nsource = "Redis"\ntarget = "r.example/redis"\n',
            2,
            "sync.source",
            "invalid reference 'Redis'",
        ),
        (
            '[[sync]]\nsource = "redis"\ntarget = "https://r.example/redis"\n',
            3,
            "sync.target",
            "a reference is not a URL",
        ),
        (
            '[[sync]]\nsource = ""\ntarget = "r.example/redis"\n',
            2,
            "sync.source",
            "empty reference",
        ),
        # repository or image
        (
            IMAGE + 'tags = ["7.*"]\n',
            4,
            "sync.tags",
            "the source names one image (a tag or digest): there are no tags to choose from",
        ),
        (
            IMAGE + "exclude = []\n",
            4,
            "sync.exclude",
            "give the source without its tag to sync a repository's tags",
        ),
        (
            '[[sync]]\nsource = "redis"\ntarget = "r.example/redis:7"\n',
            3,
            "sync.target",
            "has a tag, but the source is a repository whose tags keep their names: remove :7",
        ),
        (
            f'[[sync]]\nsource = "redis:7"\ntarget = "r.example/redis@{DIGEST}"\n',
            3,
            "sync.target",
            "names a digest: a target is a repository",
        ),
        (
            f'[[sync]]\nsource = "redis@{DIGEST}"\ntarget = "r.example/redis"\n'
            'platforms = ["linux/amd64"]\n',
            3,
            "sync.target",
            "needs a tag: the source names only a digest, and choosing platforms makes a new",
        ),
        (
            '[[sync]]\nsource = "redis"\ntarget = "docker.io/library/redis"\n',
            3,
            "sync.target",
            "is the same repository as the source: docker.io/library/redis",
        ),
        (
            '[[sync]]\nsource = "redis:7"\ntarget = "redis"\n',
            3,
            "sync.target",
            "is the same image as the source: docker.io/library/redis:7",
        ),
    ],
)
def test_errors_name_the_line_and_the_key(text: str, line: int, key: str, says: str) -> None:
    message = error(text)
    assert message.startswith(f"sync.toml:{line}: {key}: "), message
    assert says in message


@pytest.mark.parametrize("text", ["", "# nothing yet\n"])
def test_a_file_without_entries(text: str) -> None:
    assert error(text) == "sync.toml: no [[sync]] entries: nothing to sync"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (ENTRY + "tags = [\n", 4),
        (ENTRY + 'target = "twice"\n', 4),
        ('[[sync]]\nsource = "unterminated\n', 2),
        ("[[sync]\n", 1),
    ],
)
def test_toml_syntax_errors_say_the_line(text: str, line: int) -> None:
    message = error(text)
    assert message.startswith(f"sync.toml:{line}: invalid TOML: "), message
    assert f"(at line {line}, column" in message or "(at end of document)" in message


def test_the_nth_entry_is_the_one_named() -> None:
    text = ENTRY + "\n" + ENTRY + 'exclude = ["("]\n' + ENTRY
    assert error(text).startswith("sync.toml:8: sync.exclude: invalid regex '('")


def test_a_regex_too_long() -> None:
    long = "a|" * (MAX_PATTERN_LENGTH // 2) + "b"
    message = error(ENTRY + f'tags = ["7", "{long}"]\n')
    assert message.startswith("sync.toml:4: sync.tags: regex 'a|a|"), message
    assert f"is {len(long)} characters long (at most {MAX_PATTERN_LENGTH})" in message
    assert len(message) < 400, "the regex is cut, not repeated whole"
    assert len(entry("redis", "r.example/r", f'tags = ["{"a" * MAX_PATTERN_LENGTH}"]\n').tags) == 1


def test_text_from_the_file_is_escaped() -> None:
    # TOML lets a string or a quoted key hold any character, escapes and bidi overrides included
    message = error(ENTRY + '"ta\\u001b[2Jg" = 1\n')
    assert message.startswith("sync.toml:1: sync.ta\\x1b[2Jg: unknown key"), message
    message = error(ENTRY + 'tags = ["\\u202e(x"]\n')
    assert "invalid regex '\\u202e(x'" in message
    message = error('[[sync]]\nsource = "r\\u001b]0;owned\\u0007"\ntarget = "x.io/y"\n')
    assert message.startswith("sync.toml:2: sync.source: invalid reference"), message
    assert "\x1b" not in message and "\x07" not in message and "\\x1b]0;owned" in message
    message = error("[[sync]]\nsource = 'redis'\ntarget = 'x.io/y'\n\x1b = 1\n")
    assert message.startswith("sync.toml:4: invalid TOML: "), message
    assert "\x1b" not in message
    message = error(ENTRY + "tag = 1\n", name="evil\x1b[2J\n.toml")
    assert message.startswith("evil\\x1b[2J\\n.toml:4: sync.tag: unknown key"), message


def test_a_long_value_is_cut() -> None:
    message = error(f'[[sync]]\nsource = "{"x" * 5000}"\ntarget = "r.example/r"\n')
    assert message.startswith("sync.toml:2: sync.source: invalid reference 'xxx")
    assert len(message) < 800


# -- reading the file -----------------------------------------------------------------------------


def load_error(path: Path | str) -> str:
    with pytest.raises(SyncFileError) as info:
        load_sync_file(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_errors_are_configuration_errors(tmp_path: Path) -> None:
    assert issubclass(SyncFileError, ConfigError)
    path = tmp_path / "s.toml"
    path.write_text(ENTRY + "tag = 1\n")
    assert load_error(path).startswith(f"{path}:4: sync.tag: unknown key")


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert load_error(path) == f"{path}: cannot read: No such file or directory"


def test_a_directory(tmp_path: Path) -> None:
    assert load_error(tmp_path) == f"{tmp_path}: cannot read: Is a directory"


def test_a_file_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text(ENTRY + "#" * MAX_FILE_SIZE + "\n")
    assert load_error(path) == f"{path}: larger than 1 MiB: not a sync file"
    path.write_text(ENTRY + "#" * (MAX_FILE_SIZE - len(ENTRY) - 1) + "\n")
    assert len(load_sync_file(path)) == 1


def test_a_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[[sync]]\nsource = "caf\xe9"\n')
    assert load_error(path) == f"{path}: cannot read: not UTF-8 (byte 0xe9 at offset 22)"


def test_a_path_with_control_characters(tmp_path: Path) -> None:
    path = tmp_path / "a\x1b[2Jb.toml"
    message = load_error(path)
    assert "\x1b" not in message and "a\\x1b[2Jb.toml: cannot read: " in message


# -- any text -------------------------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        "[[sync]]\n",
        "[sync]\n",
        'source = "redis"\n',
        'source = "redis:7"\n',
        f'source = "redis@{DIGEST}"\n',
        'source = "Redis"\n',
        'target = "r.example/m/redis"\n',
        'target = "r.example/m/redis:x"\n',
        'target = "redis"\n',
        'tags = ["7\\\\..*", "("]\n',
        'tags = ["a"]\n',
        "tags = []\n",
        'exclude = [".*rc.*"]\n',
        'platforms = ["linux/amd64"]\n',
        'platforms = ["linux"]\n',
        "tag = 1\n",
        "sync = 1\n",
        "x = 1\n",
        "\x1b\n",
        "\n",
        "# c\n",
        '"\\u202e" = 2\n',
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=12) | st.text(max_size=200))
def test_any_text_gives_entries_or_one_printable_line(text: list[str] | str) -> None:
    """Whatever the file holds, the result is entries, or a ``SyncFileError`` of one line,
    no control or bidi character in it, naming the file."""
    if isinstance(text, list):
        text = "".join(text)
    try:
        result = parse_sync_text(text, "s.toml")
    except SyncFileError as e:
        message = str(e)
        assert message.startswith("s.toml"), message
        assert re.search(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", message) is None
        return
    assert result and all(isinstance(e, SyncEntry) for e in result)
    for e in result:
        assert e.target.digest is None or e.source.digest == e.target.digest
        assert (e.target.tag is None and e.target.digest is None) == e.is_repository


# -- two entries, one target tag ------------------------------------------------------------------


def entry_text(source: str, target: str, extra: str = "") -> str:
    return f'[[sync]]\nsource = "{source}"\ntarget = "{target}"\n{extra}\n'


REPO = "r.example/m/redis"
SEVENS = 'tags = ["7\\\\..*"]'


@pytest.mark.parametrize(
    ("first", "second", "writes"),
    [
        # every tag twice: two whole repositories (one source or two)
        (entry_text("redis", REPO), entry_text("valkey", REPO), f"every tag of {REPO}"),
        (entry_text("redis", REPO), entry_text("redis", REPO), f"every tag of {REPO}"),
        # one image's tag twice, the tag kept or given
        (entry_text("redis:7", REPO), entry_text("valkey:7", REPO), f"{REPO}:7"),
        (entry_text("redis:7", REPO), entry_text("valkey:8", f"{REPO}:7"), f"{REPO}:7"),
        (entry_text(f"redis@{DIGEST}", f"{REPO}:7"), entry_text("redis:7", REPO), f"{REPO}:7"),
        # an image's tag that a repository's regex selects, either way round
        (entry_text("redis", REPO, SEVENS), entry_text("x:7.2", REPO), f"{REPO}:7.2"),
        (entry_text("x:7.2", REPO), entry_text("redis", REPO, SEVENS), f"{REPO}:7.2"),
        (entry_text("redis", REPO, 'exclude = ["rc.*"]'), entry_text("x:7", REPO), f"{REPO}:7"),
        # a plain-name regex (escaped as re.escape writes it) that the other selects
        (
            entry_text("redis", REPO, 'tags = ["7\\\\.0", "8\\\\..*"]'),
            entry_text("valkey", REPO, 'tags = ["[0-9.]+"]'),
            f"{REPO}:7.0",
        ),
        (
            entry_text("redis", REPO, 'tags = ["latest"]'),
            entry_text("valkey", REPO, 'tags = ["latest", "9"]'),
            f"{REPO}:latest",
        ),
        # the same regexes, in another order
        (
            entry_text("redis", REPO, 'tags = ["7\\\\..*", "6\\\\..*"]\nexclude = ["rc.*"]'),
            entry_text("redis", REPO, 'tags = ["6\\\\..*", "7\\\\..*"]\nexclude = ["rc.*"]'),
            f"the same tags of {REPO}",
        ),
        # normalised as pulls are: docker.io/library/x is x
        (
            entry_text("a.example/redis:7", "mirror/redis"),
            entry_text("b.example/redis:7", "docker.io/mirror/redis"),
            "docker.io/mirror/redis:7",
        ),
    ],
)
def test_two_entries_that_write_one_tag_are_refused_naming_both_lines(
    first: str, second: str, writes: str
) -> None:
    text = "# mirror\n\n" + first + "\n" + entry_text("other", "r.example/other") + second
    second_target = text.count("\n", 0, text.index("target", text.rindex("[[sync]]"))) + 1
    message = error(text)
    assert message.startswith(f"sync.toml:{second_target}: sync.target: writes {writes}"), message
    assert "as the entry at sync.toml:3 does: one tag, one entry" in message


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # other repositories, other registries
        (entry_text("redis", REPO), entry_text("redis", "r.example/m/valkey")),
        (entry_text("redis", REPO), entry_text("redis", "s.example/m/redis")),
        # other tags, named
        (entry_text("redis:7", REPO), entry_text("redis:6", REPO)),
        (entry_text("redis:7", REPO), entry_text("valkey:7", f"{REPO}:valkey-7")),
        (entry_text("redis", REPO, 'tags = ["7"]'), entry_text("redis", REPO, 'tags = ["6"]')),
        # a tag the regex does not select, or excludes
        (entry_text("redis", REPO, SEVENS), entry_text("x:8.0", REPO)),
        (entry_text("redis", REPO, 'exclude = ["7"]'), entry_text("x:7", REPO)),
        (
            entry_text("redis", REPO, 'tags = ["latest"]'),
            entry_text("redis", REPO, 'exclude = ["latest"]'),
        ),
        # a named tag that is no valid tag is never listed, so never written
        (entry_text("redis", REPO, 'tags = ["-x"]'), entry_text("redis", REPO, 'tags = [".*"]')),
        # pushed by digest: no tag written at all
        (entry_text(f"redis@{DIGEST}", REPO), entry_text(f"valkey@{DIGEST}", REPO)),
        (entry_text(f"redis@{DIGEST}", REPO), entry_text("valkey", REPO)),
        # two regex selections: only the sources' tag lists can tell (the run does)
        (
            entry_text("redis", REPO, SEVENS),
            entry_text("redis", REPO, 'tags = ["6\\\\..*"]'),
        ),
        (entry_text("redis", REPO), entry_text("valkey", REPO, 'tags = ["v.*"]')),
        (entry_text("redis", REPO, 'exclude = ["v.*"]'), entry_text("valkey", REPO)),
    ],
)
def test_entries_that_cannot_be_shown_to_write_one_tag_are_kept(first: str, second: str) -> None:
    assert len(entries(first + second)) == 2


def test_writes_and_named_tags() -> None:
    image = entry("valkey:8", f"{REPO}:7")
    assert image.named_tags() == ("7",)
    assert image.writes("7") and not image.writes("8")
    assert entry(f"redis@{DIGEST}", REPO).named_tags() == ()
    repo = entry("redis", REPO, 'tags = ["7\\\\.0", "x-y", "x\\\\-z", "7\\\\..*", "a|b"]\n')
    assert repo.named_tags() == ("7.0", "x-y", "x-z")
    assert repo.writes("7.1") and not repo.writes("b.0")
    assert not entry("redis", REPO, 'tags = [".*"]').writes(".hidden")  # not a valid tag
