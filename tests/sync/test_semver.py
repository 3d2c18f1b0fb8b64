"""Which tags are versions, how they order, and what a ``semver`` constraint takes: skopeo
sync's reading (Masterminds semver v3), checked against Masterminds' own table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from puller.sync.semver import (
    MAX_CONSTRAINT_LENGTH,
    Version,
    parse_constraint,
    parse_version,
)


@pytest.mark.parametrize(
    ("tag", "version"),
    [
        ("1.2.3", Version(1, 2, 3)),
        ("v1.2.3", Version(1, 2, 3)),
        ("7", Version(7, 0, 0)),
        ("7.2", Version(7, 2, 0)),
        ("2024.01.05", Version(2024, 1, 5)),  # leading zeros read as the number
        ("1.2.3-rc.1", Version(1, 2, 3, ("rc", "1"))),
        ("7.2.4-alpine", Version(7, 2, 4, ("alpine",))),
        ("7.2-alpine3.19", Version(7, 2, 0, ("alpine3", "19"))),
        ("1.0.0-x-y", Version(1, 0, 0, ("x-y",))),
        ("1.2.3+build.5", Version(1, 2, 3)),
        ("1.2.3-0", Version(1, 2, 3, ("0",))),
    ],
)
def test_tags_that_are_versions(tag: str, version: Version) -> None:
    assert parse_version(tag) == version


@pytest.mark.parametrize(
    "tag",
    [
        "latest",
        "",
        "v",
        "V1.2.3",  # only a lowercase v
        "1.2.3.4",
        "1.2.",
        ".1",
        "1..2",
        "1.2.3-",
        "1.2.3-rc..1",
        "1.2.3-01",  # a numeric pre-release identifier with a leading zero
        "1.2.3+",
        "-1",
        "1.2.3 ",
        "\uff11.\uff12.\uff13",  # fullwidth digits
        "18446744073709551616",  # 2**64
        "1." + "1" * 130,  # over 128 characters
        "sha256-" + "ab" * 32,
    ],
)
def test_tags_that_are_not_versions(tag: str) -> None:
    assert parse_version(tag) is None


def test_versions_order_as_semver_says() -> None:
    ordered = [
        "1.0.0-0",
        "1.0.0-1",
        "1.0.0-2",
        "1.0.0-10",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.2",
        "1.9.0",
        "1.10.0",
        "1.11.0",
        "2",
        "10.0.0",
    ]
    versions = [parse_version(t) for t in ordered]
    keys = [v.key for v in versions if v is not None]
    assert len(keys) == len(ordered)
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


def test_build_metadata_and_a_leading_v_do_not_change_the_order() -> None:
    keys = {parse_version(t).key for t in ("1.2.3", "v1.2.3", "1.2.3+a", "1.02.3")}  # type: ignore[union-attr]
    assert len(keys) == 1


# Masterminds semver v3.4.0's TestConstraintsCheck, all but one row ("!=4.1-alpha" against
# 4.1.0, which Masterminds takes although its own "=4.1-alpha" takes 4.1.0 too): constraint,
# version, whether the constraint takes it.
MASTERMINDS = [
    row.rsplit("|", 2)
    for row in """\
*|1.2.3|true
~0.0.0|1.2.3|true
0.x.x|1.2.3|false
0.0.x|1.2.3|false
0.0.0|1.2.3|false
^0.0.0|1.2.3|false
= 2.0|1.2.3|false
= 2.0|2.0.0|true
4.1|4.1.0|true
4.1.x|4.1.3|true
1.x|1.4|true
!=4.1|4.1.0|false
!=4.1-alpha|4.1.0-alpha|false
!=4.1-alpha|4.1.1-alpha|false
!=4.1|5.1.0|true
!=4.x|5.1.0|true
!=4.x|4.1.0|false
!=4.1.x|4.2.0|true
!=4.2.x|4.2.3|false
>1.1|4.1.0|true
>1.1|1.1.0|false
<1.1|0.1.0|true
<1.1|1.1.0|false
<1.1|1.1.1|false
<1.x|1.1.1|false
<1.x|0.1.1|true
<1.x|2.0.0|false
<1.1.x|1.2.1|false
<1.1.x|1.1.500|false
<1.1.x|1.0.500|true
<1.2.x|1.1.1|true
>=1.1|4.1.0|true
>=1.1|4.1.0-beta|false
>=1.1|1.1.0|true
>=1.1|0.0.9|false
<=1.1|0.1.0|true
<=1.1|0.1.0-alpha|false
<=1.1-a|0.1.0-alpha|true
<=1.1|1.1.0|true
<=1.x|1.1.0|true
<=2.x|3.0.0|false
<=1.1|1.1.1|true
<=1.1.x|1.2.500|false
<=4.5|3.4.0|true
<=4.5|3.7.0|true
<=4.5|4.6.3|false
>1.1, <2|1.1.1|false
>1.1, <2|1.2.1|true
>1.1, <3|4.3.2|false
>=1.1, <2, !=1.2.3|1.2.3|false
>1.1 <2|1.1.1|false
>1.1 <2|1.2.1|true
>1.1    <3|4.3.2|false
>=1.1    <2    !=1.2.3|1.2.3|false
>=1.1, <2, !=1.2.3 || > 3|4.1.2|true
>=1.1, <2, !=1.2.3 || > 3|3.1.2|false
>=1.1, <2, !=1.2.3 || >= 3|3.0.0|true
>=1.1, <2, !=1.2.3 || > 3|3.0.0|false
>=1.1, <2, !=1.2.3 || > 3|1.2.3|false
> 1.1, <     2|1.1.1|false
>   1.1, <2|1.2.1|true
>= 1.1 <2 != 1.2.3 || > 3|4.1.2|true
>= 1.0.0  <= 2.0.0-beta|1.0.1-beta|true
>= 1.0.0  <= 2.0.0-beta|1.0.1|true
>= 1.0.0  <= 2.0.0-beta|3.0.0|false
>= 1.0.0  <= 2.0.0-beta || > 3|1.0.1-beta|true
>= 1.0.0  <= 2.0.0-beta || > 3|3.0.1-beta|false
>= 1.0.0  <= 2.0.0-beta != 1.0.1 || > 3|1.0.1-beta|true
>= 1.0.0  <= 2.0.0-beta != 1.0.1-beta || > 3|1.0.1-beta|false
>= 1.0.0-0  <= 2.0.0|1.0.1-beta|true
1.1 - 2|1.1.1|true
1.5.0 - 4.5|3.7.0|true
1.1-3|4.3.2|false
^1.1|1.1.1|true
^1.1|4.3.2|false
^1.x|1.1.1|true
^2.x|1.1.1|false
^1.x|2.1.1|false
^1.x|1.1.1-beta1|false
^1.1.2-alpha|1.2.1-beta1|true
^1.2.x-alpha|1.1.1-beta1|false
^0.0.1|0.0.1|true
^0.0.1|0.3.1|false
~*|2.1.1|true
~1|2.1.1|false
~1|1.3.5|true
~1|1.4|true
~1.x|2.1.1|false
~1.x|1.3.5|true
~1.x|1.4|true
~1.1|1.1.1|true
~1.1|1.1.1-alpha|false
~1.1-alpha|1.1.1-beta|true
~1.1.1-beta|1.1.1-alpha|false
~1.1.1-beta|1.1.1|true
~1.2.3|1.2.5|true
~1.2.3|1.2.2|false
~1.2.3|1.3.2|false
~1.1|1.2.3|false
~1.3|2.4.5|false
1.0.0 - 2.0.0 <=2.0.0|1.5.0|true
1.0.0 - 2.0.0, <=2.0.0|1.5.0|true
""".splitlines()
]


@pytest.mark.parametrize(("constraint", "tag", "takes"), MASTERMINDS)
def test_constraints_as_masterminds_checks_them(constraint: str, tag: str, takes: str) -> None:
    version = parse_version(tag)
    assert version is not None
    assert parse_constraint(constraint).allows(version) is (takes == "true")


ISSUE_TAGS = ["1.0.0", "1.2.0", "1.10.0", "2.0.0", "latest"]


@pytest.mark.parametrize(
    ("constraint", "taken"),
    [
        (">=1.2.0, <2.0.0", ["1.2.0", "1.10.0"]),
        (">=1.2.0 <2.0.0", ["1.2.0", "1.10.0"]),
        (">= 7.2, < 8", []),
        ("^1.2", ["1.2.0", "1.10.0"]),
        ("~1.2.0", ["1.2.0"]),
        ("~1", ["1.0.0", "1.2.0", "1.10.0"]),
        ("1.2 - 1.10", ["1.2.0", "1.10.0"]),
        ("1.x", ["1.0.0", "1.2.0", "1.10.0"]),
        ("*", ["1.0.0", "1.2.0", "1.10.0", "2.0.0"]),
        ("<1.2 || >=2", ["1.0.0", "2.0.0"]),
        ("!=1.2.0, <2", ["1.0.0", "1.10.0"]),
        ("v1.10.0", ["1.10.0"]),
        (">1.2", ["1.10.0", "2.0.0"]),
        ("<=1.2", ["1.0.0", "1.2.0"]),
    ],
)
def test_constraints_over_the_issues_tags(constraint: str, taken: list[str]) -> None:
    c = parse_constraint(constraint)
    assert [t for t in ISSUE_TAGS if (v := parse_version(t)) and c.allows(v)] == taken


@pytest.mark.parametrize(
    ("constraint", "tag", "takes"),
    [
        ("~1.2.3", "1.2.3", True),
        ("~1.2.3", "1.3.0", False),
        ("~1", "1.99.0", True),
        ("^1.2.3", "1.99.99", True),
        ("^1.2.3", "2.0.0", False),
        ("^0.2.3", "0.2.9", True),
        ("^0.2.3", "0.3.0", False),
        ("^0.0.3", "0.0.3", True),
        ("^0.0.3", "0.0.4", False),
        ("^0", "0.9.9", True),
        ("^0", "1.0.0", False),
        ("^*", "9.0.0", True),
        ("~*", "9.0.0", True),
        (">*", "9.0.0", False),
        ("<=*", "9.0.0", True),
        ("!=*", "9.0.0", False),
        ("1.2 - 1.4.5", "1.4.5", True),
        ("1.2 - 1.4.5", "1.4.6", False),
        ("1.2 - 1.4", "1.4.9", True),  # a partial upper end covers its range
        ("=>1.2, =<1.4.5", "1.3.0", True),
        ("~>1.2.3", "1.2.9", True),
        # the end of the range a partial version, ~ or ^ covers excludes the next release's
        # pre-releases even where they are taken; an explicit < compares, as Masterminds does
        ("<=1.x-0", "2.0.0-rc1", False),
        (">=1.0.0-0, <2", "2.0.0-rc1", True),
        (">=1.0.0-0, <2", "1.5.0-rc1", True),
        ("^1.0.0-0", "2.0.0-alpha", False),
        # docker's variant tags are pre-releases: only a constraint that names one takes them
        (">=7.2", "7.2.4-alpine", False),
        (">=7.2.0-0 <8", "7.2.4-alpine", True),
    ],
)
def test_tilde_caret_ranges_and_wildcards(constraint: str, tag: str, takes: bool) -> None:
    version = parse_version(tag)
    assert version is not None
    assert parse_constraint(constraint).allows(version) is takes


@pytest.mark.parametrize(
    ("constraint", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("latest", "expected a comparison"),
        (">=1.2,", "a comma with no comparison after it"),
        (",>=1.2", "expected a comparison"),
        (">=1 || ", "an empty alternative"),
        ("|| >=1", "an empty alternative"),
        ("1.x.3", "a number after a wildcard"),
        (">=1.2.3abc", "expected a comma, a space or the end"),
        (">=1.2.3 -", "expected a comparison"),
        (">= 1.0 - 2", "a hyphen range has no operator"),
        ("1.0 - >=2", "expected a comparison"),
        (">=1.0.0-01", "leading zero"),
        (">=18446744073709551616", "over 2**64"),
        (">>1", "expected a comparison"),
        ("(>=1)", "expected a comparison"),
        (">=1" + " " * MAX_CONSTRAINT_LENGTH, "characters long"),
    ],
)
def test_invalid_constraints_say_why(constraint: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_constraint(constraint)
    assert says in str(info.value)
    assert "\n" not in str(info.value)


def test_a_constraint_is_a_value_that_keeps_its_text() -> None:
    assert parse_constraint(">=1.2, <2") == parse_constraint(">=1.2, <2")
    assert str(parse_constraint(">=1.2, <2")) == ">=1.2, <2"


VERSIONS = st.builds(
    lambda n, pre: f"{n[0]}.{n[1]}.{n[2]}" + (f"-{pre}" if pre else ""),
    st.tuples(*[st.integers(0, 12)] * 3),
    st.sampled_from(["", "0", "1", "alpha", "alpha.1", "rc.2", "beta"]),
)


@given(st.text(max_size=140))
def test_any_text_is_a_version_or_none(text: str) -> None:
    version = parse_version(text)
    assert version is None or parse_version(str(version)) == version


@given(st.text(max_size=60))
def test_any_constraint_text_parses_or_says_why(text: str) -> None:
    try:
        parse_constraint(text)
    except ValueError as e:
        assert str(e) and "\n" not in str(e)


@given(VERSIONS, VERSIONS)
def test_not_equal_takes_what_equal_leaves(a: str, b: str) -> None:
    va = parse_version(a)
    assert va is not None
    equal = parse_constraint(f"={b}").allows(va)
    pre = "-" in b or "-" in a
    if not pre:
        assert parse_constraint(f"!={b}").allows(va) is not equal
    assert equal is (parse_version(a) == parse_version(b))


@given(VERSIONS, VERSIONS, VERSIONS)
def test_a_hyphen_range_is_two_comparisons(low: str, high: str, tag: str) -> None:
    version = parse_version(tag)
    assert version is not None
    hyphen = parse_constraint(f"{low} - {high}").allows(version)
    assert hyphen is parse_constraint(f">={low}, <={high}").allows(version)


@given(VERSIONS, VERSIONS)
def test_comparisons_agree_with_the_order(a: str, b: str) -> None:
    va, vb = parse_version(a), parse_version(b)
    assert va is not None and vb is not None
    both = f"-0 <{b}-0" if "-" in a or "-" in b else ""
    for op, holds in ((">", va.key > vb.key), ("<", va.key < vb.key), (">=", va.key >= vb.key)):
        if both:
            continue  # pre-releases: only taken where the constraint names one
        assert parse_constraint(f"{op}{b}").allows(va) is holds
