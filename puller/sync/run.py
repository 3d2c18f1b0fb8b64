"""Running a sync file's entries: each entry's pairs (its image, or the tags of its source that
its filters select), then every pair of every entry copied in one ``Copier.copy_all``, ``-j``
at once rather than entry after entry; then, entry by entry, the deletion step of those with
``delete = true`` (``sync.delete``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ..copying import Copier, CopyResult, Pair, failed
from ..errors import PullError
from ..oci.reference import Reference
from ..text import shown
from .delete import delete_dropped, delete_gone, gone_tags, skipped, source_tags, split_listed
from .file import SyncEntry

__all__ = ["sync_entries", "sync_listed"]


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
    """Copy what every entry of the file at ``path`` selects, then run the deletion step of
    each entry with ``delete`` (``sync.delete``); ``report`` hears each result as it ends.
    ``options`` are ``Copier.copy_all``'s (an entry's own platforms win over
    ``options["platforms"]``)."""
    #: the source's complete tag list of each entry whose deletion step is to run
    listings: dict[int, list[str]] = {}

    async def pairs_of(nth: int, entry: SyncEntry) -> tuple[list[Pair], list[CopyResult]]:
        own = {
            "platforms": entry.platforms or options.get("platforms", ()),
            "by": f"the entry at {path}:{entry.line}",  # named if another writes its tag
        }
        if not entry.is_repository:
            return [(entry.source, entry.target, own)], []  # its target says what to write
        listed, extra = await _listing(copier, entry)
        if extra and listed is None and _server_only(copier, entry.source):
            return [], extra  # listed once, failed: not again with the same retries
        try:
            pairs, lost = await copier.tag_pairs(
                entry.source, entry.target, entry.selects, tags=listed
            )
        except PullError as e:
            return [], [failed(str(entry.source), str(entry.target), e), *extra]
        if not pairs and not lost and not allow_empty:
            why = "the entry selects none of the source's tags (--allow-empty lets it delete)"
            skips = [skipped(*_ends(entry), why)] if entry.delete else []
            return [], [no_match(path, entry), *skips]
        if listed is not None:
            listings[nth] = listed
        return [(source, target, own) for source, target, *_ in pairs], lost + extra

    pairs: list[Pair] = []
    results: list[CopyResult] = []
    for found, lost in await asyncio.gather(*(pairs_of(n, e) for n, e in enumerate(entries))):
        pairs += found
        for result in lost:
            report(result)
        results += lost
    if fail_fast and any(r.status == "failed" for r in results):
        return results
    results += await copier.copy_all(pairs, each=report, fail_fast=fail_fast, **options)
    written = {(t.name, t.tag) for _, t, *_ in pairs if t.tag is not None}
    for nth, listed in listings.items():
        entry = entries[nth]
        if fail_fast and any(r.status == "failed" for r in results):
            done = [skipped(*_ends(entry), "an image failed, and --fail-fast")]
        else:
            mine = {tag for name, tag in written if name == entry.target.name}
            done = await _delete(copier, entry, listed, mine, bool(options.get("dry_run")))
        for result in done:
            report(result)
        results += done
    return results


async def _listing(copier: Copier, entry: SyncEntry) -> tuple[list[str] | None, list[CopyResult]]:
    """For an entry with ``delete``: the source's complete tag list, or the records of a
    listing that failed (the entry's "failed" when its own server is all there is to ask,
    and its "delete-skipped")."""
    if not entry.delete:
        return None, []
    try:
        return await source_tags(copier, entry.source), []
    except PullError as e:
        skip = skipped(*_ends(entry), e)
        if _server_only(copier, entry.source):
            return None, [failed(str(entry.source), str(entry.target), e), skip]
        return None, [skip]


async def _delete(
    copier: Copier, entry: SyncEntry, listed: list[str], written: set[str], dry_run: bool
) -> list[CopyResult]:
    """The entry's deletion step: the target's selected tags that its source no longer has."""
    try:
        gone = await gone_tags(copier, entry.target, listed, entry.selects, written)
    except PullError as e:
        return [failed(str(entry.source), str(entry.target), e)]
    return await delete_gone(copier, entry.source, entry.target, gone, dry_run=dry_run)


async def sync_listed(
    copier: Copier,
    pairs: Sequence[tuple[Reference, Reference]],
    report: Callable[[CopyResult], None],
    *,
    fail_fast: bool = False,
    **options: Any,
) -> list[CopyResult]:
    """``sync --to PREFIX --delete IMAGE...``: the images copied, except those whose tag the
    source repository no longer lists and the target has, which are deleted after the copies
    (``sync.delete.split_listed``)."""
    keep, drop, results = await split_listed(copier, pairs)
    for result in results:
        report(result)
    results += await copier.copy_all(keep, each=report, fail_fast=fail_fast, **options)
    if fail_fast and any(r.status == "failed" for r in results):
        repositories = {(s.name, t.name): (s, t) for s, t in drop}
        why = "--fail-fast: an image failed"
        done = [skipped(_repository(s), _repository(t), why) for s, t in repositories.values()]
    else:
        dry_run = bool(options.get("dry_run"))
        done = await delete_dropped(copier, drop, (t for _, t in keep), dry_run=dry_run)
    for result in done:
        report(result)
    return results + done


def _server_only(copier: Copier, source: Reference) -> bool:
    """Whether the source's own server is the one endpoint that lists its tags."""
    session = copier.session
    return session.endpoints(source, resolve=True) == (session.server(source),)


def _repository(ref: Reference) -> Reference:
    return replace(ref, tag=None, digest=None)


def _ends(entry: SyncEntry) -> tuple[Reference, Reference]:
    return entry.source, entry.target


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
