"""``shown``: outside text is printed with every character a terminal could act on escaped, and
cut to a bounded length."""

from __future__ import annotations

import pytest

from puller.text import ELLIPSIS, LIMIT, escape, shown


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("plain text: HTTP 500", "plain text: HTTP 500"),
        ("", ""),
        # OSC (retitle the window) and CSI (clear the screen)
        ("\x1b]0;owned\x07\x1b[2J", "\\x1b]0;owned\\x07\\x1b[2J"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("\x00\x01\x1f", "\\x00\\x01\\x1f"),
        ("del\x7f", "del\\x7f"),
        # C1 controls: \x9b is a one-character CSI, \x9d an OSC, \x85 a next-line
        ("\x9b2J\x9d0;x\x9c\x85", "\\x9b2J\\x9d0;x\\x9c\\x85"),
        # bidi overrides, embeddings and isolates, zero-width characters, the BOM
        ("abc\u202egnp.exe", "abc\\u202egnp.exe"),
        (
            "\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069",
            "".join(
                f"\\u{c:04x}"
                for c in (0x202A, 0x202B, 0x202C, 0x202D, 0x2066, 0x2067, 0x2068, 0x2069)
            ),
        ),
        ("a\u200bb\u200dc\ufeff", "a\\u200bb\\u200dc\\ufeff"),
        ("\u2028\u2029", "\\u2028\\u2029"),
        # a tag character (astral, format) and a lone surrogate (undecodable bytes)
        ("\U000e0041", "\\U000e0041"),
        (b"\xff".decode("utf-8", "surrogateescape"), "\\udcff"),
        # what a terminal shows as itself stays: accents, CJK, emoji, a backslash
        ("café 日本 🐳 C:\\path", "café 日本 🐳 C:\\path"),
        ("\xa0\xe9", "\xa0\xe9"),
    ],
)
def test_control_and_format_characters_are_escaped(raw: str, expected: str) -> None:
    assert shown(raw) == expected
    assert escape(raw) == expected


def test_short_text_is_not_cut() -> None:
    assert shown("x" * LIMIT) == "x" * LIMIT


def test_long_text_is_cut_with_an_ellipsis() -> None:
    out = shown("x" * 312_000)
    assert len(out) == LIMIT
    assert out == "x" * (LIMIT - 1) + ELLIPSIS


@pytest.mark.parametrize("limit", [1, 2, 10, 299, 1000])
def test_the_limit_counts_escapes_as_written(limit: int) -> None:
    out = shown("\x1b[2J" * 10_000, limit)
    assert len(out) <= limit
    assert out.endswith(ELLIPSIS)
    assert "\x1b" not in out


def test_an_escape_is_never_cut_in_half() -> None:
    # "ab" then \x1b (4 characters) does not fit in 5 with the ellipsis: it is dropped whole
    assert shown("ab\x1bcdef", 5) == "ab" + ELLIPSIS
    assert shown("\x1b" * 3, 9) == "\\x1b\\x1b" + ELLIPSIS


def test_tail_keeps_the_end_of_a_cut_text() -> None:
    text = "refusing token realm " + "a" * 5000 + ": not an https:// URL"
    out = shown(text, 100, tail=25)
    assert len(out) == 100
    assert out.startswith("refusing token realm aaa")
    assert out.endswith(ELLIPSIS + "aaaa: not an https:// URL")


def test_tail_does_nothing_when_the_text_fits() -> None:
    assert shown("short", 100, tail=50) == "short"


def test_tail_escapes_too() -> None:
    out = shown("x" * 1000 + "\x1b[2J", 50, tail=10)
    assert out.endswith(ELLIPSIS + "xxx\\x1b[2J")
    assert len(out) == 50
    assert "\x1b" not in out


def test_no_limit_escapes_everything_and_cuts_nothing() -> None:
    assert shown("\x1b" * 1000, None) == "\\x1b" * 1000


def test_a_limit_below_one_is_a_mistake() -> None:
    with pytest.raises(ValueError):
        shown("x", 0)
