"""The sync file of ``pypull sync FILE``: which images go where, as TOML. Its example is
``pypull sync --help``'s (``cli.SYNC_EPILOG``), kept there alone so that the help shows it
without importing this module.

References are parsed as pulls parse them (``redis`` is ``docker.io/library/redis``). The rules
of an entry, each broken one an error:

* ``source`` without a tag or digest is a repository: the tags its registry lists, those that
  some ``tags`` regex matches whole (no ``tags``: every tag) and no ``exclude`` regex matches
  whole, that are versions ``semver`` allows (``semver.py`` says which tags are versions), and
  with ``newest = N`` the N highest versions of those; ``target`` is then a repository too (no
  tag, no digest) and each tag keeps its name. The regexes are RE2's (``select.py``): one RE2
  cannot run in time linear in the tag (a backreference, lookaround) is refused.
* ``source = "REGISTRY/PREFIX/*"`` is a namespace: every repository the registry's catalog
  lists under ``PREFIX/`` (``repositories``, a regex, matched whole against the path below the
  prefix, may narrow it), each a repository entry into ``target`` plus that path
  (``SyncEntry.expand``, at run time). The registry is named, the prefix given, and the target
  does not lie inside the namespace on the same registry.
* ``source`` with a tag or digest is one image, and the tag filters have nothing to choose
  from. ``target`` may give the image a tag of its own; without one the image keeps the
  source's tag, or, when the source names only a digest, is pushed by that digest, untagged (as
  ``pypull copy`` does). With ``platforms`` the copy is a new index of another digest, so a
  digest-only source then needs a tag in ``target``.
* ``target`` never names a digest (what is pushed decides it), and is not the source itself.
* No two entries may write one target tag, or each run would write it twice, in turn: the
  later entry is refused where that can be decided without the source's tag lists, which is
  when a tag can be named that both select (an image's tag; a repository's ``tags`` regex that
  is a plain name such as ``latest`` or ``7\\.0`` and not excluded), or both select every tag
  (no filter), or the same filters (regexes, ``semver``, ``newest``). Two other selections are
  left to the run, which fails the later of two copies to one tag (``Copier.copy_all``); so are
  a namespace's repositories, known only from the catalog.

``SyncEntry.source`` and ``.target`` of a repository entry have neither tag nor digest; those of
a one-image entry say exactly what is read and what is written (``Reference.identifier``).

Every mistake is one line in ``config.toml``'s style (``puller.config``), a ``SyncFileError``
(a ``ConfigError``): ``FILE:LINE: sync.KEY: what is wrong``, the line that of the key, or of its
``[[sync]]`` when the key is missing; text quoted from the file is escaped and bounded
(``text.shown``).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from ..errors import InvalidReference, SyncFileError
from ..oci.manifest import Platform, parse_platform
from ..oci.reference import Reference, names_image, parse, valid_tag
from ..text import shown
from .select import Regex, compile_regex, newest, shard_name, shard_of
from .semver import Constraint, parse_constraint, parse_version

__all__ = [
    "MAX_PATTERN_LENGTH",
    "MAX_TAG_LENGTH",
    "NAMESPACE_SUFFIX",
    "SyncEntry",
    "SyncFileError",
    "in_shard",
    "load_sync_file",
    "parse_sync_text",
]

#: The longest ``tags``/``exclude`` regex accepted, in characters.
MAX_PATTERN_LENGTH = 1000
#: The distribution spec's bound on a tag; a longer "tag" from a registry is selected by nothing.
MAX_TAG_LENGTH = 128

_KEYS = (
    "source",
    "target",
    "tags",
    "exclude",
    "platforms",
    "referrers",
    "delete",
    "ratelimit",
    "semver",
    "newest",
    "repositories",
)
#: What ends a namespace's source: ``REGISTRY/PREFIX/*``.
NAMESPACE_SUFFIX = "/*"
#: What an entry does at its source's rate-limit reserve: defer the image (the default), or
#: wait for the window to reset.
RATELIMIT_MODES = ("defer", "wait")
#: A table header, [name] or [[name]] (group 1: "[" for the latter), as config.TomlFile reads them.
_HEADER = re.compile(r"\[(\[?)\s*(.*?)\s*\]\]?\s*(#.*)?")
#: tomllib's (and tomli's) way of saying where: "... (at line 3, column 7)".
_TOML_WHERE = re.compile(r"\(at line (\d+), column \d+\)")
#: A ``tags`` regex that matches one tag only: letters, digits, ``_`` and ``-``, and ``.`` or
#: ``-`` escaped (as ``re.escape`` writes a tag).
_PLAIN_NAME = re.compile(r"(?:[A-Za-z0-9_-]|\\[.-])+")


@dataclass(frozen=True, slots=True)
class SyncEntry:
    """One ``[[sync]]``: ``source`` into ``target``, ``line`` where it starts in the file."""

    source: Reference
    target: Reference
    #: a tag is copied if one of these matches it whole (none: every tag), ...
    tags: tuple[Regex, ...] = ()
    #: ... and none of these does, ...
    exclude: tuple[Regex, ...] = ()
    #: ... and it is a version this allows (None: any tag), ...
    semver: Constraint | None = None
    #: ... and among the ``newest`` highest versions of the tags the above keep (None: all)
    newest: int | None = None
    #: the platforms copied (an index of these only); none: every platform, digests unchanged
    platforms: tuple[Platform, ...] = ()
    line: int = 0
    #: copy each image's referrers (signatures, SBOMs) after it ...
    referrers: bool = False
    #: ... only those of these artifact types (none: every type)
    artifact_types: tuple[str, ...] = ()
    #: delete the target's tags in the selection that the source no longer has
    delete: bool = False
    #: at the source's rate-limit reserve: "defer" the image, or "wait" for the reset
    ratelimit: str = "defer"
    #: ``source`` is a namespace (``REGISTRY/PREFIX/*``): every repository under it, from the
    #: registry's catalog, into ``target`` plus its path below the prefix (``expand``)
    namespace: bool = False
    #: a namespace's repositories are those whose path below the prefix this matches whole
    repositories: Regex | None = None

    @property
    def is_repository(self) -> bool:
        """Whether ``source`` is a repository (its tags, filtered), not one image."""
        return self.source.tag is None and self.source.digest is None

    def selects(self, tag: str) -> bool:
        """Whether ``tag`` of the source repository passes the filters of single tags: some
        ``tags`` regex matches it whole (or there are none), no ``exclude`` regex does, and
        with ``semver`` it is a version the constraint allows (with ``newest``, a version).
        ``newest`` then chooses among the tags that pass (``chosen``).

        The regexes are RE2's (``select``): time linear in the tag, whatever the pattern. A
        tag longer than the spec's 128 characters is selected by nothing, unmatched.
        """
        if len(tag) > MAX_TAG_LENGTH:
            return False
        if self.tags and not any(p.fullmatch(tag) for p in self.tags):
            return False
        if any(p.fullmatch(tag) for p in self.exclude):
            return False
        if self.semver is None and self.newest is None:
            return True
        version = parse_version(tag)
        if version is None:
            return False
        return self.semver is None or self.semver.allows(version)

    def chosen(self, tags: list[str]) -> list[str]:
        """Of ``tags`` (those ``selects`` passes), the ones copied: all, or with ``newest``
        the tags of the N highest versions, in the order given."""
        if self.newest is None:
            return tags
        keep = set(newest(tags, self.newest))
        return [tag for tag in tags if tag in keep]

    def expand(self, paths: list[str]) -> tuple[list[SyncEntry], list[str]]:
        """A namespace entry's repository entries, one for each of ``paths`` (the source
        registry's catalog) under its prefix that ``repositories`` selects: source
        ``REGISTRY/PREFIX/SUB``, target the entry's target plus ``/SUB``. And the paths under
        the prefix that make no valid reference (a registry may list anything). A path listed
        twice (pages that overlap) is one repository."""
        prefix = self.source.path + "/"
        entries: list[SyncEntry] = []
        invalid: list[str] = []
        for path in dict.fromkeys(paths):
            below = path[len(prefix) :] if path.startswith(prefix) else ""
            if not below or (self.repositories and not self.repositories.fullmatch(below)):
                continue
            try:
                source = dataclasses.replace(parse(f"{self.source.domain}/{path}"), tag=None)
                target = dataclasses.replace(parse(f"{self.target.name}/{below}"), tag=None)
            except InvalidReference:
                invalid.append(path)
                continue
            if source.path != path or ":" in path or "@" in path:
                invalid.append(path)
                continue
            entries.append(
                dataclasses.replace(
                    self, source=source, target=target, namespace=False, repositories=None
                )
            )
        return entries, invalid

    def writes(self, tag: str) -> bool:
        """Whether this entry may write ``tag`` of its target repository: the tag of its one
        image, or a tag of the source repository it selects (if the source has it)."""
        if not self.is_repository:
            return tag == self.target.tag
        return valid_tag(tag) and self.selects(tag)

    def named_tags(self) -> tuple[str, ...]:
        """The tags of the target this entry names outright: its image's tag, or the ``tags``
        regexes that are plain names (``latest``, ``7\\.0``)."""
        if not self.is_repository:
            return () if self.target.tag is None else (self.target.tag,)
        plain = (p.pattern for p in self.tags if _PLAIN_NAME.fullmatch(p.pattern))
        return tuple(re.sub(r"\\(.)", r"\1", pattern) for pattern in plain)


def in_shard(entries: Sequence[SyncEntry], index: int, count: int) -> list[SyncEntry]:
    """The ``entries`` of part ``index`` of ``count`` (``sync --shard I/N``): by their target
    repository's name, or by the namespace's target an entry's target lies below
    (``select.shard_name``), so that N runs split a file with none run twice."""
    namespaces = [e.target.name for e in entries if e.namespace]
    return [e for e in entries if shard_of(shard_name(e.target.name, namespaces), count) == index]


def load_sync_file(path: str | PathLike[str]) -> list[SyncEntry]:
    """The entries of the sync file at ``path``, in file order; ``SyncFileError`` says what is
    wrong, and where."""
    from ..config import read_bounded  # here: ``import puller`` reads no configuration

    name = str(path)
    text = read_bounded(path, name, "a sync file", error=SyncFileError)
    return parse_sync_text(text, name)


def parse_sync_text(text: str, name: str = "<sync file>") -> list[SyncEntry]:
    """The entries of a sync file's ``text``; ``name`` is the file that errors name."""
    from ..config import parse_toml  # here: ``import puller`` reads no configuration

    try:
        doc = parse_toml(text)
    except ValueError as e:  # a TOMLDecodeError, or nesting too deep
        said = shown(str(e))
        where = _TOML_WHERE.search(said)
        line = where.group(1) if where else len(text.splitlines()) or 1  # "at end of document"
        at = f"{_name(name)}:{line}"
        raise SyncFileError(f"{at}: invalid TOML: {said}") from None
    return _entries(_Lines(name, text), doc)


# -- checking -------------------------------------------------------------------------------------


class _Lines:
    """Where things are in the file, for the errors: ``config.TomlFile`` finds a ``key =`` line,
    the table headers here find where a table (``[[sync]]``, a stray ``[other]``) starts."""

    def __init__(self, name: str, text: str) -> None:
        self.name = _name(name)
        from ..config import TomlFile  # here: ``import puller`` reads no configuration

        self.file = TomlFile(Path(name), text)
        #: (line, dotted name without quotes) of each [table] and [[table]] header
        self.headers: list[tuple[int, str]] = []
        starts = []
        for number, raw in enumerate(self.file.lines, 1):
            header = _HEADER.fullmatch(raw.strip())
            if header:
                dotted = re.sub(r"\s*\.\s*", ".", re.sub("[\"']", "", header.group(2)))
                self.headers.append((number, dotted))
                if header.group(1) and dotted == "sync":
                    starts.append(number)
        # sync = [{...}, ...] (inline tables) has no headers: its entries start at "sync ="
        self.starts = starts or [self.file.line_of((), "sync") or 1]

    def start(self, nth: int) -> int:
        return self.starts[min(nth, len(self.starts) - 1)]

    def _table(self, dotted: str, after: int = 0) -> int | None:
        """The first header at or after line ``after`` of table ``dotted`` or one inside it."""
        for number, name in self.headers:
            if number >= after and (name == dotted or name.startswith(dotted + ".")):
                return number
        return None

    def error(self, nth: int | None, key: str, message: str) -> SyncFileError:
        """``FILE:LINE: KEY: message``: the line of ``key`` (a ``key =`` or a ``[key]``) at the
        top (``nth`` None) or in the ``nth`` entry, else that of the entry."""
        if nth is None:
            line = self.file.line_of((), key) or self._table(key)
            name = shown(key, 80)
        else:
            start = self.start(nth)
            line = self.file.line_of(("sync",), key, nth) or self._table(f"sync.{key}", start)
            line = line or start
            name = f"sync.{shown(key, 80)}"
        at = f"{self.name}:{line}" if line else self.name
        return SyncFileError(shown(f"{at}: {name}: {message}", None))


def _entries(lines: _Lines, doc: dict[str, Any]) -> list[SyncEntry]:
    for key in doc:
        if key != "sync":
            raise lines.error(None, key, _unknown(key, ("sync",)))
    specs = doc.get("sync")
    if specs is None:
        raise SyncFileError(f"{lines.name}: no [[sync]] entries: nothing to sync")
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise lines.error(None, "sync", "expected [[sync]] tables")
    if not specs:
        raise lines.error(None, "sync", "no entries: nothing to sync")
    entries = [_entry(lines, nth, spec) for nth, spec in enumerate(specs)]
    _refuse_collisions(lines, entries)
    return entries


def _refuse_collisions(lines: _Lines, entries: list[SyncEntry]) -> None:
    """Refuse the first entry that writes a target tag an earlier entry writes, where that can
    be told from the file alone (``_collision``); the message names both entries' lines."""
    earlier: dict[str, list[tuple[int, SyncEntry]]] = {}
    for nth, entry in enumerate(entries):
        same_repository = earlier.setdefault(entry.target.name, [])
        for first_nth, first in same_repository:
            what = _collision(first, entry)
            if what is not None:
                at = f"{lines.name}:{lines.start(first_nth)}"
                raise lines.error(
                    nth,
                    "target",
                    f"writes {what}, as the entry at {at} does: one tag, one entry (two would"
                    " overwrite each other on every run)",
                )
        same_repository.append((nth, entry))


def _collision(a: SyncEntry, b: SyncEntry) -> str | None:
    """What two entries to one target repository both write, when that can be told without the
    source's tag lists: a tag one of them names that both write, or every tag, or the tags of
    the same regexes. None: they cannot collide, or only their sources' tag lists can tell.

    A namespace writes below its target, never the target itself, and which repositories only
    the catalog says: it meets only a namespace of the same source, which lists the same."""
    if (a.namespace or b.namespace) and (a.namespace, a.source) != (b.namespace, b.source):
        return None
    where = f"{a.target.name}/*" if a.namespace else a.target.name
    for tag in (*a.named_tags(), *b.named_tags()):
        if a.writes(tag) and b.writes(tag) and a.repositories == b.repositories:
            return f"{where}:{tag}"
    if not (a.is_repository and b.is_repository):
        return None  # an image writes its one named tag: checked above
    if _selection(a) == _selection(b):
        if _selection(a) == _selection(SyncEntry(a.source, a.target)):
            return f"every tag of {where}"
        return f"the same tags of {where} (the same {', '.join(_FILTERS)})"
    return None


#: What chooses a repository entry's tags (and a namespace's repositories).
_FILTERS = ("tags", "exclude", "semver", "newest", "repositories")


def _selection(entry: SyncEntry) -> tuple[object, ...]:
    """The filters as written: equal ones select the same tags (of the same repositories)."""
    return (
        frozenset(p.pattern for p in entry.tags),
        frozenset(p.pattern for p in entry.exclude),
        None if entry.semver is None else entry.semver.text,
        entry.newest,
        None if entry.repositories is None else entry.repositories.pattern,
    )


def _entry(lines: _Lines, nth: int, spec: dict[str, Any]) -> SyncEntry:
    for key in spec:
        if key not in _KEYS:
            raise lines.error(nth, key, _unknown(key, _KEYS))
    for key in ("source", "target"):
        if key not in spec:
            raise lines.error(nth, key, "missing: every [[sync]] needs a source and a target")
        if not isinstance(spec[key], str):
            raise lines.error(nth, key, f"expected a string, got {_quoted(spec[key])}")
    lists = {key: _strings(lines, nth, spec, key) for key in ("tags", "exclude", "platforms")}
    namespace = spec["source"].endswith(NAMESPACE_SUFFIX)
    source = _namespace(lines, nth, spec) if namespace else _reference(lines, nth, spec, "source")
    target = _reference(lines, nth, spec, "target")
    one_image = not namespace and names_image(spec["source"])
    if not one_image:
        source = dataclasses.replace(source, tag=None)
    if "repositories" in spec and not namespace:
        raise lines.error(
            nth,
            "repositories",
            "chooses among a namespace's repositories: give the source as REGISTRY/PREFIX/*",
        )
    if one_image:
        for key in ("tags", "exclude", "semver", "newest"):
            if key in spec:
                raise lines.error(
                    nth,
                    key,
                    "the source names one image (a tag or digest): there are no tags to choose"
                    " from; give the source without its tag to sync a repository's tags",
                )
    platforms = tuple(_platform(lines, nth, text) for text in lists["platforms"])

    if target.digest is not None:
        raise lines.error(
            nth, "target", "names a digest: a target is a repository, with a tag or without"
        )
    if names_image(spec["target"]):
        if not one_image:
            raise lines.error(
                nth,
                "target",
                f"has a tag, but the source is a repository whose tags keep their names:"
                f" remove :{shown(str(target.tag), 130)}",
            )
    elif source.tag is not None:  # the image keeps its tag
        target = dataclasses.replace(target, tag=source.tag)
    elif source.digest is not None and not platforms:  # as pypull copy: pushed by its digest
        target = dataclasses.replace(target, tag=None, digest=source.digest)
    elif source.digest is not None:
        raise lines.error(
            nth,
            "target",
            "needs a tag: the source names only a digest, and choosing platforms makes a new"
            " digest, so the copy would be left untagged",
        )
    else:
        target = dataclasses.replace(target, tag=None)
    if source.name == target.name and source.identifier == target.identifier:
        what = "the same image" if one_image else "the same repository"
        raise lines.error(nth, "target", f"is {what} as the source: {shown(str(source), 300)}")
    if (
        namespace
        and source.domain == target.domain
        and f"{target.path}/".startswith(f"{source.path}/")
    ):
        raise lines.error(
            nth,
            "target",
            f"is inside the namespace {shown(source.path, 200)}/* it copies: each run would"
            " copy the last one's copies again",
        )
    referrers, artifact_types = _referrers(lines, nth, spec)
    return SyncEntry(
        source=source,
        target=target,
        tags=tuple(_pattern(lines, nth, "tags", p) for p in lists["tags"]),
        exclude=tuple(_pattern(lines, nth, "exclude", p) for p in lists["exclude"]),
        semver=_semver(lines, nth, spec),
        newest=_newest(lines, nth, spec),
        namespace=namespace,
        repositories=_repositories(lines, nth, spec),
        platforms=platforms,
        line=lines.start(nth),
        referrers=referrers,
        artifact_types=artifact_types,
        delete=_delete(lines, nth, spec, one_image),
        ratelimit=_ratelimit(lines, nth, spec),
    )


def _namespace(lines: _Lines, nth: int, spec: dict[str, Any]) -> Reference:
    """The repository ``REGISTRY/PREFIX`` of a source ``REGISTRY/PREFIX/*``: a registry named
    outright (its catalog is listed), a prefix, no tag and no digest."""
    text = spec["source"][: -len(NAMESPACE_SUFFIX)]
    registry, slash, prefix = text.partition("/")
    if not slash or not prefix or not _is_registry(registry):
        raise lines.error(
            nth,
            "source",
            f"{_quoted(spec['source'])}: a namespace is REGISTRY/PREFIX/*, with the registry"
            " named (its catalog lists the repositories) and a prefix",
        )
    if names_image(text) or "*" in text:
        raise lines.error(
            nth,
            "source",
            f"{_quoted(spec['source'])}: a namespace is repositories: no tag, no digest, one *"
            " at the end",
        )
    source = _reference(lines, nth, {"source": text}, "source")
    return dataclasses.replace(source, tag=None)


def _is_registry(component: str) -> bool:
    """Whether the first component of a name is a registry, as ``docker pull`` tells."""
    return "." in component or ":" in component or component == "localhost"


def _semver(lines: _Lines, nth: int, spec: dict[str, Any]) -> Constraint | None:
    if "semver" not in spec:
        return None
    value = spec["semver"]
    if not isinstance(value, str):
        raise lines.error(nth, "semver", f"expected a string such as '>=7.2, <8', got {value!r}")
    try:
        return parse_constraint(value)
    except ValueError as e:
        raise lines.error(nth, "semver", f"invalid constraint {_quoted(value)}: {e}") from None


def _newest(lines: _Lines, nth: int, spec: dict[str, Any]) -> int | None:
    value = spec.get("newest")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise lines.error(nth, "newest", f"expected a whole number from 1, got {_quoted(value)}")
    return value


def _repositories(lines: _Lines, nth: int, spec: dict[str, Any]) -> Regex | None:
    value = spec.get("repositories")
    if value is None:
        return None
    if not isinstance(value, str):
        raise lines.error(nth, "repositories", f"expected a regex, got {_quoted(value)}")
    return _pattern(lines, nth, "repositories", value)


def _referrers(lines: _Lines, nth: int, spec: dict[str, Any]) -> tuple[bool, tuple[str, ...]]:
    """``referrers = true`` (every artifact type) or a list of artifact types."""
    value = spec.get("referrers", False)
    if isinstance(value, bool):
        return value, ()
    types = _strings(lines, nth, spec, "referrers")
    return True, tuple(types)


def _delete(lines: _Lines, nth: int, spec: dict[str, Any], one_image: bool) -> bool:
    value = spec.get("delete", False)
    if not isinstance(value, bool):
        raise lines.error(nth, "delete", f"expected true or false, got {_quoted(value)}")
    if value and one_image:
        raise lines.error(
            nth,
            "delete",
            "the source names one image: only a repository entry has tags to delete",
        )
    return value


def _ratelimit(lines: _Lines, nth: int, spec: dict[str, Any]) -> str:
    value = spec.get("ratelimit", "defer")
    if value not in RATELIMIT_MODES:
        raise lines.error(
            nth,
            "ratelimit",
            f"expected {' or '.join(map(repr, RATELIMIT_MODES))}, got {_quoted(value)}",
        )
    return str(value)


def _strings(lines: _Lines, nth: int, spec: dict[str, Any], key: str) -> list[str]:
    """The list of strings ``spec[key]`` (absent: none); an empty ``tags`` or ``platforms`` is
    refused, as it would mean "nothing" to some readers and "everything" to others."""
    if key not in spec:
        return []
    value = spec[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise lines.error(nth, key, f"expected a list of strings, got {_quoted(value)}")
    if not value and key == "referrers":
        raise lines.error(nth, key, "is empty: true copies every artifact type, false none")
    if not value and key in ("tags", "platforms"):
        every = "every tag" if key == "tags" else "every platform"
        raise lines.error(nth, key, f"is empty: leave {key} out to sync {every}")
    return value


def _reference(lines: _Lines, nth: int, spec: dict[str, Any], key: str) -> Reference:
    try:
        return parse(spec[key])
    except InvalidReference as e:
        raise lines.error(nth, key, shown(str(e), 400)) from None


def _platform(lines: _Lines, nth: int, text: str) -> Platform:
    try:
        return parse_platform(text)
    except ValueError as e:
        raise lines.error(nth, "platforms", shown(str(e), 200)) from None


def _pattern(lines: _Lines, nth: int, key: str, text: str) -> Regex:
    """A regex of the file, compiled by RE2: one it cannot match in linear time is refused."""
    if len(text) > MAX_PATTERN_LENGTH:
        raise lines.error(
            nth,
            key,
            f"regex {_quoted(text)} is {len(text)} characters long (at most"
            f" {MAX_PATTERN_LENGTH}): one tag is at most {MAX_TAG_LENGTH}",
        )
    try:
        return compile_regex(text)
    except ValueError as e:
        raise lines.error(
            nth,
            key,
            f"invalid regex {_quoted(text)}: {shown(str(e), 200)} (regexes run by RE2, in time"
            " linear in the tag: no backreferences, no lookaround)",
        ) from None


def _unknown(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"unknown key ({hint}known: {', '.join(sorted(known))})"


def _quoted(value: object) -> str:
    """A value from the file, for a message: a string in quotes as written (a regex's
    backslashes single), anything else as Python shows it; escaped and bounded."""
    if isinstance(value, str):
        return f"'{shown(value, 100)}'"
    return shown(repr(value), 100)


def _name(name: str) -> str:
    """The file's name, escaped (a path may hold anything but NUL)."""
    return shown(name, None)
