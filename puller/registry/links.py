"""``Link`` headers (RFC 8288) of paged registry listings: tags, referrers."""

from __future__ import annotations

import re


def next_link(value: str | None) -> str | None:
    """The target of ``rel="next"`` in a Link header (RFC 8288), as given (a comma inside
    ``<...>`` is part of the URL)."""
    for target, params in _LINK.findall(value or ""):
        rels = [p.strip().replace(" ", "").lower() for p in params.split(";")]
        if 'rel="next"' in rels or "rel=next" in rels:
            return str(target)
    return None


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^,;]*)*)")
