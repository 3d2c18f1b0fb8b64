"""Outside text made safe to print: what a registry, a token server, a credential helper, a config
file or the store says reaches the terminal only through :func:`shown`.

A registry controls its error messages, its ``WWW-Authenticate`` realm, the platform names of its
indexes; printed raw, an escape sequence in them can clear the screen, retitle the window, rewrite
earlier lines, or (with a bidi override) make a line read differently from what it says, and a
hostile index can make one error line hundreds of kilobytes long. :func:`shown` escapes every
character a terminal could act on instead of showing, and bounds the length::

    shown("\\x1b]0;owned\\x07\\x1b[2J")  ->  "\\\\x1b]0;owned\\\\x07\\\\x1b[2J"
    shown("x" * 10_000)                 ->  "xxx…" (300 characters in all)

Escaped are the C0 controls (``\\x00``-``\\x1f``, tab and newline included: a shown text is one
line), DEL, the C1 controls (``\\x80``-``\\x9f``, ``\\x9b`` is a one-byte CSI), the Unicode format
characters (bidi embeddings, overrides and isolates such as U+202E, zero-width joiners, the BOM),
the line and paragraph separators, and lone surrogates (bytes that were not UTF-8). They are shown
as Python writes them: ``\\n``, ``\\x1b``, ``\\u202e``, ``\\U000e0001``. A backslash itself is
left alone, so paths and regexes stay readable; text that spells ``\\x1b`` out reads the same as an
escaped ESC, which is harmless.

Pure and standard library only; imports nothing of ours.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["ELLIPSIS", "LIMIT", "escape", "shown"]

#: The default bound on a shown text, in characters, the escapes counted as written.
LIMIT = 300
#: Marks where a text was cut.
ELLIPSIS = "…"

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: General categories escaped beyond the C0/DEL/C1 controls (category Cc).
_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _category(ch: str) -> str:
    import unicodedata  # only for text outside ASCII: most output never needs it

    return unicodedata.category(ch)


def _escaped(ch: str) -> str:
    """``ch`` itself, or its escape when a terminal could act on it."""
    code = ord(ch)
    if 0x20 <= code < 0x7F:  # the common case, without a table lookup
        return ch
    if code < 0x7F or _category(ch) in _CATEGORIES:
        named = _NAMED.get(ch)
        if named:
            return named
        if code <= 0xFF:
            return f"\\x{code:02x}"
        if code <= 0xFFFF:
            return f"\\u{code:04x}"
        return f"\\U{code:08x}"
    return ch


def escape(text: str) -> str:
    """``text`` with every control, format and separator character escaped; no length bound."""
    return "".join(map(_escaped, text))


def _take(pieces: Iterator[str], budget: int) -> tuple[list[str], bool]:
    """Whole pieces from ``pieces`` while they fit in ``budget`` characters; True if all fit."""
    taken: list[str] = []
    used = 0
    for piece in pieces:
        if used + len(piece) > budget:
            return taken, False
        taken.append(piece)
        used += len(piece)
    return taken, True


def shown(text: str, limit: int | None = LIMIT, *, tail: int = 0) -> str:
    """``text`` escaped as the module says and cut to at most ``limit`` characters (None: no
    bound). A cut text ends with ``…``, or, with ``tail``, keeps its last ``tail`` characters
    after the ``…`` (for messages whose end says what went wrong). An escape is never cut in
    half. Work is bounded by ``limit``, not by the length of ``text``."""
    if limit is None:
        return escape(text)
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    tail = max(0, min(tail, limit - 1))
    # Everything fits: the common case, found without escaping more than limit + 1 characters.
    whole, fits = _take(map(_escaped, text), limit)
    if fits:
        return "".join(whole)
    end: list[str] = []
    if tail:
        end, _ = _take(map(_escaped, reversed(text)), tail)
        end.reverse()
    head, _ = _take(iter(whole), limit - len(ELLIPSIS) - sum(map(len, end)))
    return "".join(head) + ELLIPSIS + "".join(end)
