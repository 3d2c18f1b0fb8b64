"""Running a sync file's entries: each entry's pairs (its image, or the tags of its source that
its filters select), then every pair of every entry copied in one ``Copier.copy_all``, ``-j``
at once rather than entry after entry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from ..copying import Copier, CopyResult, Pair, failed
from ..errors import PullError
from ..text import shown
from .file import SyncEntry

__all__ = ["sync_entries"]


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

    async def pairs_of(entry: SyncEntry) -> tuple[list[Pair], list[CopyResult]]:
        own = {
            "platforms": entry.platforms or options.get("platforms", ()),
            "by": f"the entry at {path}:{entry.line}",  # named if another writes its tag
        }
        if entry.ratelimit == "wait":  # else --ratelimit's (the file's default is "defer")
            own["ratelimit"] = entry.ratelimit
        if not entry.is_repository:
            return [(entry.source, entry.target, own)], []  # its target says what to write
        try:
            pairs, lost = await copier.tag_pairs(entry.source, entry.target, entry.selects)
        except PullError as e:
            return [], [failed(str(entry.source), str(entry.target), e)]
        if not pairs and not lost and not allow_empty:
            return [], [no_match(path, entry)]
        return [(source, target, own) for source, target, *_ in pairs], lost

    pairs: list[Pair] = []
    results: list[CopyResult] = []
    for found, lost in await asyncio.gather(*(pairs_of(e) for e in entries)):
        pairs += found
        for result in lost:
            report(result)
        results += lost
    if fail_fast and results:
        return results
    results += await copier.copy_all(pairs, each=report, fail_fast=fail_fast, **options)
    return results


def no_match(path: str, entry: SyncEntry) -> CopyResult:
    """A repository entry whose filters select none of its source's tags."""
    return CopyResult(
        str(entry.source),
        str(entry.target),
        "failed",
        error=f"the entry at {shown(path)}:{entry.line} selects none of the source's tags "
        "(check its tags and exclude; --allow-empty lets an empty entry pass)",
        code="no-match",
    )
