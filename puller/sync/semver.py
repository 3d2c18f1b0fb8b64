"""Semantic versions in tags, and the version constraints of a sync entry's ``semver`` key, as
skopeo sync reads them (Masterminds semver v3: ``NewVersion`` and ``NewConstraint``).

Which tags are versions (``parse_version``): ``[v]MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD]``
whole, at most ``MAX_TAG_LENGTH`` characters, where

* MAJOR, MINOR and PATCH are ASCII digits, each below 2**64; a missing MINOR or PATCH is 0
  (``7`` is 7.0.0, ``7.2`` is 7.2.0) and leading zeros are read as the number (``2024.01`` is
  2024.1.0), as Masterminds' ``NewVersion`` reads them;
* PRERELEASE and BUILD are dot-separated identifiers of ``[0-9A-Za-z-]``, none empty; a
  numeric PRERELEASE identifier has no leading zero (``1.0.0-01`` is no version);
* only a lowercase ``v`` may lead.

So ``7``, ``7.2``, ``v7.2.4``, ``7.2.4-rc1``, ``7.2.4-alpine`` are versions (the last two
pre-releases), and ``latest``, ``7.2.4.1``, ``7.2-x.`` and ``V7`` are not. Versions order as
semver 2.0.0 says: by the numbers, a pre-release below its release, pre-release identifiers
compared one by one (numbers numerically and below words, words in ASCII order, a shorter
list first when one is a prefix of the other); BUILD is ignored.

A constraint (``parse_constraint``) is alternatives joined by ``||``, each comparisons joined
by commas or spaces, all of which must hold. A comparison is an operator and a version in
which MINOR and PATCH may be missing or wildcards (``x``, ``X``, ``*``; ``*`` alone is every
version); a "partial" version stands for the range of versions it covers:

    =1.2.3  1.2.3    exactly 1.2.3              =1.2  1.2  1.2.x   >=1.2.0 <1.3.0
    !=1.2.3          all but 1.2.3              !=1.2              outside >=1.2.0 <1.3.0
    >1.2.3           above 1.2.3                >1.2               >=1.3.0
    >=1.2  =>1.2     >=1.2.0                    <1.2               <1.2.0
    <=1.2.3  =<1.2.3 up to 1.2.3                <=1.2              <1.3.0
    ~1.2.3  ~>1.2.3  >=1.2.3 <1.3.0             ~1.2  ~1.2.x       >=1.2.0 <1.3.0
    ~1  ~1.x         >=1.0.0 <2.0.0             ~0.0.0  ~*  *      every version
    ^1.2.3  ^1.2  ^1 >=1.2.3 <2.0.0 (>=1.2.0, >=1.0.0)             ^*  every version
    ^0.2.3           >=0.2.3 <0.3.0             ^0.0.3             >=0.0.3 <0.0.4
    ^0.0             >=0.0.0 <0.1.0             ^0                 >=0.0.0 <1.0.0
    1.2 - 1.4.5      >=1.2 <=1.4.5 (a hyphen range: spaces around the hyphen)

Pre-releases: an alternative none of whose comparisons names a pre-release matches no
pre-release at all (``>=7.2`` does not take ``7.3.0-rc1``, nor ``7.2.4-alpine``); one that
names one (``>=7.2.0-0``) takes pre-releases wherever its comparisons hold. The end of the
range a partial version, ``~`` or ``^`` covers excludes the next release's pre-releases too
(``<1.3.0`` in the table is below ``1.3.0-0``); an explicit ``<1.3.0`` compares, so it takes
``1.3.0-rc1`` where pre-releases are taken.

Where this differs from Masterminds v3.4 it is where Masterminds contradicts its own table:
``!=`` is exactly what ``=`` is not (Masterminds lets ``!=4.1-alpha`` take ``4.1.0``),
``^*``, ``>*``, ``<=*`` and ``!=*`` mean what ``*`` says (every version; none above it; every
version; none), and a number after a wildcard (``1.x.3``) is refused, not ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MAX_CONSTRAINT_LENGTH",
    "Constraint",
    "Version",
    "parse_constraint",
    "parse_version",
]

#: The longest ``semver`` constraint accepted, in characters.
MAX_CONSTRAINT_LENGTH = 500
#: The distribution spec's bound on a tag: a longer one is no version.
MAX_TAG_LENGTH = 128
_LIMIT = 1 << 64  # MAJOR, MINOR, PATCH and numeric pre-release identifiers are below it

_IDS = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_VERSION = re.compile(rf"v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?(?:-({_IDS}))?(?:\+({_IDS}))?")
_PART = r"[0-9]+|[xX*]"
#: A version in a constraint: its parts may be missing or wildcards.
_SPEC = rf"v?({_PART})(?:\.({_PART}))?(?:\.({_PART}))?(?:-({_IDS}))?(?:\+({_IDS}))?"
#: One comparison, at a position: the operator (longest first) and the version.
_COMPARISON = re.compile(rf"\s*(!=|>=|=>|<=|=<|~>|>|<|=|~|\^)?\s*(?:{_SPEC})", re.ASCII)
#: A hyphen range's " - " after its first version.
_HYPHEN = re.compile(r"\s+-\s+", re.ASCII)
#: What may follow a comparison: the end, or a separator (spaces, or a comma and spaces).
_SEPARATOR = re.compile(r"\s*,\s*|\s+|\s*$", re.ASCII)


@dataclass(frozen=True, slots=True)
class Version:
    """A version read from a tag; ``key`` orders versions by semver precedence."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[object, ...]:
        """Sorts as semver 2.0.0 orders versions: a release above its pre-releases, numeric
        identifiers below words and compared as numbers, a shorter list first."""
        pre = tuple((0, int(p), "") if _numeric(p) else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, not self.prerelease, pre)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        return f"{text}-{'.'.join(self.prerelease)}" if self.prerelease else text


def parse_version(tag: str) -> Version | None:
    """The version ``tag`` is (the module's grammar), or None when it is none."""
    if len(tag) > MAX_TAG_LENGTH:
        return None
    m = _VERSION.fullmatch(tag)
    if m is None:
        return None
    numbers = [int(p) if p is not None else 0 for p in m.group(1, 2, 3)]
    pre = tuple(m.group(4).split(".")) if m.group(4) else ()
    if any(n >= _LIMIT for n in numbers) or not _valid_prerelease(pre):
        return None
    return Version(numbers[0], numbers[1], numbers[2], pre)


def _numeric(identifier: str) -> bool:
    """A pre-release identifier compared as a number (Masterminds: one ``ParseUint`` reads)."""
    return identifier.isascii() and identifier.isdigit() and int(identifier) < _LIMIT


def _valid_prerelease(pre: tuple[str, ...]) -> bool:
    return not any(p.isdigit() and len(p) > 1 and p[0] == "0" for p in pre)


# -- constraints ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Bound:
    """One side of a range: ``version`` itself included or not."""

    version: Version
    included: bool


@dataclass(frozen=True, slots=True)
class _Range:
    """The versions from ``low`` to ``high`` (None: unbounded); ``negated``: all others."""

    low: _Bound | None
    high: _Bound | None
    negated: bool = False

    def holds(self, v: Version) -> bool:
        inside = True
        if self.low is not None:
            low = self.low.version.key
            inside = v.key > low or (self.low.included and v.key == low)
        if inside and self.high is not None:
            high = self.high.version.key
            inside = v.key < high or (self.high.included and v.key == high)
        return inside != self.negated


@dataclass(frozen=True, slots=True)
class _Group:
    """Comparisons that must all hold; ``prereleases``: one of them names a pre-release, so
    pre-release versions may match."""

    ranges: tuple[_Range, ...]
    prereleases: bool

    def holds(self, v: Version) -> bool:
        if v.prerelease and not self.prereleases:
            return False
        return all(r.holds(v) for r in self.ranges)


@dataclass(frozen=True, slots=True)
class Constraint:
    """A ``semver`` constraint: ``text`` as written, and what it means."""

    text: str
    groups: tuple[_Group, ...]

    def allows(self, version: Version) -> bool:
        """Whether ``version`` satisfies some alternative of the constraint."""
        return any(g.holds(version) for g in self.groups)

    def __str__(self) -> str:
        return self.text


def parse_constraint(text: str) -> Constraint:
    """The constraint ``text`` says (the module's grammar); ``ValueError`` says why not."""
    if len(text) > MAX_CONSTRAINT_LENGTH:
        raise ValueError(f"{len(text)} characters long (at most {MAX_CONSTRAINT_LENGTH})")
    if not text.strip():
        raise ValueError("empty: leave semver out to take every tag")
    return Constraint(text, tuple(_group(part) for part in text.split("||")))


def _group(text: str) -> _Group:
    """One alternative: comparisons joined by commas or spaces, hyphen ranges among them."""
    if not text.strip():
        raise ValueError("an empty alternative beside ||")
    ranges: list[_Range] = []
    prereleases = False
    pos = 0
    while pos < len(text):
        op, spec, pos = _comparison(text, pos)
        hyphen = _HYPHEN.match(text, pos)
        if hyphen and op is None:
            _, upper, pos = _comparison(text, hyphen.end(), hyphen=True)
            found = [(">=", spec), ("<=", upper)]
        elif hyphen:
            raise ValueError(f"{text[: hyphen.end()].strip()!r}: a hyphen range has no operator")
        else:
            found = [(op or "=", spec)]
        for operator, version in found:
            prereleases = prereleases or bool(version.base.prerelease)
            ranges.extend(_ranges(operator, version))
        separator = _SEPARATOR.match(text, pos)
        if separator is None or (separator.end() == pos and pos < len(text)):
            raise ValueError(f"{_near(text, pos)}: expected a comma, a space or the end")
        if "," in separator.group() and separator.end() == len(text):
            raise ValueError("a comma with no comparison after it")
        pos = separator.end()
    return _Group(tuple(ranges), prereleases)


@dataclass(frozen=True, slots=True)
class _Spec:
    """A constraint's version: ``base`` with wildcards as 0, ``given`` its leading numbers
    (0: ``*``, 1: ``1``/``1.x``, 2: ``1.2``/``1.2.x``, 3: ``1.2.3``)."""

    base: Version
    given: int

    def upper(self) -> Version | None:
        """The lowest version above the range it covers (None: no end; itself when whole)."""
        b = self.base
        if self.given == 0:
            return None
        if self.given == 1:
            return Version(b.major + 1, 0, 0, ("0",))
        if self.given == 2:
            return Version(b.major, b.minor + 1, 0, ("0",))
        return b


def _comparison(text: str, pos: int, hyphen: bool = False) -> tuple[str | None, _Spec, int]:
    m = _COMPARISON.match(text, pos)
    if m is None or (hyphen and m.group(1)):
        raise ValueError(f"{_near(text, pos)}: expected a comparison such as >=1.2.3")
    parts = m.group(2, 3, 4)
    given = 0
    for part in parts:
        if part is None or part in "xX*":
            break
        given += 1
    if any(p is not None and p not in "xX*" for p in parts[given:]):
        raise ValueError(f"{m.group().strip()!r}: a number after a wildcard")
    numbers = [int(p) for p in parts[:given]] + [0] * (3 - given)
    pre = tuple(m.group(5).split(".")) if m.group(5) else ()
    if any(n >= _LIMIT for n in numbers):
        raise ValueError(f"{m.group().strip()!r}: a number over 2**64")
    if not _valid_prerelease(pre):
        raise ValueError(f"{m.group().strip()!r}: a numeric pre-release with a leading zero")
    return m.group(1), _Spec(Version(numbers[0], numbers[1], numbers[2], pre), given), m.end()


def _ranges(op: str, spec: _Spec) -> list[_Range]:
    """What ``op`` and ``spec`` admit, as ranges that must all hold."""
    base, upper = spec.base, spec.upper()
    whole = spec.given == 3
    below = _Range(None, _Bound(upper, whole)) if upper is not None else None
    if op in ("=", "!="):
        ranges = [_Range(_Bound(base, True), below.high if below else None)]
        if op == "!=":
            return [_Range(r.low, r.high, negated=True) for r in ranges]
        return ranges
    if op == ">":
        if upper is None:
            return [_Range(None, None, negated=True)]  # nothing is above every version
        return [_Range(_Bound(upper, not whole), None)]
    if op in (">=", "=>"):
        return [_Range(_Bound(base, True), None)]
    if op == "<":
        return [_Range(None, _Bound(base, False))]
    if op in ("<=", "=<"):
        return [below] if below is not None else []
    if op in ("~", "~>"):
        return _tilde(spec)
    return _caret(spec)


def _tilde(spec: _Spec) -> list[_Range]:
    b = spec.base
    if spec.given == 0 or (spec.given == 3 and b == Version(0, 0, 0)):
        return []  # every version
    if spec.given == 1:
        high = Version(b.major + 1, 0, 0, ("0",))
    else:
        high = Version(b.major, b.minor + 1, 0, ("0",))
    return [_Range(_Bound(b, True), _Bound(high, False))]


def _caret(spec: _Spec) -> list[_Range]:
    b = spec.base
    if spec.given == 0:
        return []  # every version
    if b.major > 0 or spec.given == 1:
        high = Version(b.major + 1, 0, 0, ("0",))
    elif b.minor > 0 or spec.given == 2:
        high = Version(0, b.minor + 1, 0, ("0",))
    else:
        high = Version(0, 0, b.patch + 1, ("0",))
    return [_Range(_Bound(b, True), _Bound(high, False))]


def _near(text: str, pos: int) -> str:
    """Where parsing stopped, for a message: the text from there, bounded, quoted."""
    rest = text[pos:].strip() or text.strip()
    return f"at {rest[:40]!r}"
