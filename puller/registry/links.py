"""``Link`` headers (RFC 8288) of paged registry listings: tags, the catalog, referrers."""

from __future__ import annotations

import re
from urllib.parse import urljoin

from ..errors import RegistryError
from ..http.client import same_origin


def next_link(value: str | None) -> str | None:
    """The target of ``rel="next"`` in a Link header (RFC 8288), as given (a comma inside
    ``<...>`` is part of the URL)."""
    for target, params in _LINK.findall(value or ""):
        rels = [p.strip().replace(" ", "").lower() for p in params.split(";")]
        if 'rel="next"' in rels or "rel=next" in rels:
            return str(target)
    return None


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^,;]*)*)")


def next_page(url: str, link: str | None, origin: str, seen: set[str], what: str) -> str | None:
    """The page after ``url``: its ``Link`` header's ``rel="next"`` resolved against it (None:
    ``url`` was the last). Only on ``origin``, where the credentials go (a Link elsewhere would
    take them along), and never a page already in ``seen``, which it joins; else a
    ``RegistryError`` about ``what`` (``tags of library/redis``)."""
    following = next_link(link)
    if following is None:
        return None
    try:
        url = urljoin(url, following)
    except ValueError:
        raise RegistryError(f"{what}: an invalid Link {following[:200]!r}") from None
    if not same_origin(url, origin):
        raise RegistryError(f"{what}: {origin} links to another origin ({url[:200]})", url=url)
    if url in seen:
        raise RegistryError(f"{what}: the Link pages go round in a circle", url=url)
    seen.add(url)
    return url
