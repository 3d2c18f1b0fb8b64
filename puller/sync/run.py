"""Running a sync file's entries: each entry's pairs (its image, or the tags of its source that
its filters select; a namespace's entry first becomes one entry per repository its registry's
catalog lists under the prefix), then every pair of every entry copied in one
``Copier.copy_all``, ``-j`` at once rather than entry after entry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from ..copying import Copier, CopyResult, Pair, failed
from ..errors import PullError
from ..referring import referrer_options, without_referrer_tags
from ..tasks import map_limited
from ..text import shown
from .file import NAMESPACE_SUFFIX, SyncEntry

__all__ = ["sync_entries"]

#: A namespace's repositories whose tags are listed at once.
LISTINGS_AT_ONCE = 8


async def sync_entries(
    copier: Copier,
    entries: Sequence[SyncEntry],
    path: str,
    *,
    report: Callable[[CopyResult], None],
    allow_empty: bool = False,
    fail_fast: bool = False,
    **options: Any,
) -> list[CopyResult]:
    """Copy what every entry of the file at ``path`` selects; ``report`` hears each result as
    it ends. ``options`` are ``Copier.copy_all``'s (an entry's own platforms win over
    ``options["platforms"]``)."""

    async def pairs_of(entry: SyncEntry, empty: bool) -> tuple[list[Pair], list[CopyResult]]:
        own = {
            "platforms": entry.platforms or options.get("platforms", ()),
            "by": f"the entry at {path}:{entry.line}",  # named if another writes its tag
            **referrer_options(entry.referrers, entry.artifact_types, options),
        }
        if entry.ratelimit == "wait":  # else --ratelimit's (the file's default is "defer")
            own["ratelimit"] = entry.ratelimit
        if not entry.is_repository:
            return [(entry.source, entry.target, own)], []  # its target says what to write
        select: Callable[[str], bool] = entry.selects
        if own["referrers"]:  # their tags come with the images they refer to
            select = without_referrer_tags(entry.selects)
        try:
            pairs, lost = await copier.tag_pairs(entry.source, entry.target, select)
        except PullError as e:
            return [], [failed(str(entry.source), str(entry.target), e)]
        chosen = set(entry.chosen([source.tag for source, *_ in pairs if source.tag]))
        pairs = [pair for pair in pairs if pair[0].tag in chosen]  # newest = N
        if not pairs and not lost and not empty:
            return [], [no_match(path, entry)]
        return [(source, target, own) for source, target, *_ in pairs], lost

    async def selected(entry: SyncEntry) -> tuple[list[Pair], list[CopyResult]]:
        if not entry.namespace:
            return await pairs_of(entry, allow_empty)
        try:
            repositories, lost = await expand(copier, entry)
        except PullError as e:
            return [], [failed(f"{entry.source}{NAMESPACE_SUFFIX}", str(entry.target), e)]
        pairs: list[Pair] = []
        for found, missed in await map_limited(
            LISTINGS_AT_ONCE, repositories, lambda e: pairs_of(e, True)
        ):
            pairs += found
            lost += missed
        if not pairs and not lost and not allow_empty:
            return [], [no_match(path, entry)]
        return pairs, lost

    pairs: list[Pair] = []
    results: list[CopyResult] = []
    for found, lost in await asyncio.gather(*(selected(e) for e in entries)):
        pairs += found
        for result in lost:
            report(result)
        results += lost
    if fail_fast and results:
        return results
    results += await copier.copy_all(pairs, each=report, fail_fast=fail_fast, **options)
    return results


async def expand(copier: Copier, entry: SyncEntry) -> tuple[list[SyncEntry], list[CopyResult]]:
    """A namespace entry's repository entries (``SyncEntry.expand``) over its registry's
    catalog, and a "failed" result for each path under the prefix that is no valid name."""
    paths = await copier.repositories_of(entry.source)
    repositories, invalid = entry.expand(paths)
    lost = [
        CopyResult(
            f"{entry.source.domain}/{shown(path, 200)}",
            str(entry.target),
            "failed",
            error="the catalog lists a repository name that is not valid",
            code="protocol",
        )
        for path in invalid
    ]
    return repositories, lost


def no_match(path: str, entry: SyncEntry) -> CopyResult:
    """A repository entry whose filters select none of its source's tags (a namespace's: no
    tag of any repository under it)."""
    if entry.namespace:
        source = f"{entry.source}{NAMESPACE_SUFFIX}"
        what = f"no tag of the repositories under {shown(source)}"
    else:
        source, what = str(entry.source), "none of the source's tags"
    return CopyResult(
        source,
        str(entry.target),
        "failed",
        error=f"the entry at {shown(path)}:{entry.line} selects {what} (check its tags, "
        "exclude, semver, newest and repositories; --allow-empty lets an empty entry pass)",
        code="no-match",
    )
