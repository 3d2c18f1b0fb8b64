"""Running a sync file's entries: each entry's pairs (its image, or the tags of its source that
its filters select; a namespace's entry first becomes one entry per repository its registry's
catalog lists under the prefix), then every pair of every entry copied in one
``Copier.copy_all``, ``-j`` at once rather than entry after entry; then, entry by entry, the
deletion step of those with ``delete = true`` (``sync.delete``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from ..copying import Copier, CopyResult, Pair, failed
from ..errors import PullError
from ..oci.reference import Reference
from ..referring import referrer_options, without_referrer_tags
from ..registry.endpoint import Endpoint
from ..tasks import map_limited
from ..text import shown
from .delete import delete_dropped, delete_gone, gone_tags, skipped, source_tags, split_listed
from .file import NAMESPACE_SUFFIX, SyncEntry

__all__ = ["sync_entries", "sync_listed"]

#: A namespace's repositories whose tags are listed at once.
LISTINGS_AT_ONCE = 8
#: Why an entry (or a namespace's repository) that selects none of its source's tags deletes
#: nothing: a source that lists none (emptied, or broken) must not empty the mirror.
_SELECTS_NONE = "the entry selects none of the source's tags (--allow-empty lets it delete)"


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
    #: the source's complete tag list of each entry whose deletion step is to run, and why
    #: it may delete nothing (a namespace's repository that selects none of its tags)
    listings: list[tuple[SyncEntry, Callable[[str], bool], list[str], str | None]] = []
    leaves: list[SyncEntry] = []  # the entries of one repository or image (a namespace's too)
    unlisted: list[SyncEntry] = []  # the namespaces whose catalog could not be read

    async def pairs_of(entry: SyncEntry, empty: bool) -> tuple[list[Pair], list[CopyResult]]:
        leaves.append(entry)
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
        listed, extra = await _listing(copier, entry)
        if extra and listed is None and _server_only(copier, entry.source):
            return [], extra  # listed once, failed: not again with the same retries
        try:
            pairs, lost = await copier.tag_pairs(entry.source, entry.target, select, tags=listed)
        except PullError as e:
            return [], [failed(str(entry.source), str(entry.target), e), *extra]
        chosen = set(entry.chosen([source.tag for source, *_ in pairs if source.tag]))
        pairs = [pair for pair in pairs if pair[0].tag in chosen]  # newest = N
        none = not pairs and not lost and not allow_empty  # never taken for "delete all"
        if none and not empty:
            skips = [skipped(*_ends(entry), _SELECTS_NONE)] if entry.delete else []
            return [], [no_match(path, entry), *skips]
        if listed is not None:  # a namespace's repository: its step deletes nothing either
            listings.append((entry, select, listed, _SELECTS_NONE if none else None))
        return [(source, target, own) for source, target, *_ in pairs], lost + extra

    async def selected(entry: SyncEntry) -> tuple[list[Pair], list[CopyResult]]:
        if not entry.namespace:
            return await pairs_of(entry, allow_empty)
        try:
            repositories, lost = await expand(copier, entry)
        except PullError as e:
            unlisted.append(entry)
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
    if fail_fast and any(r.status == "failed" for r in results):
        return results
    results += await copier.copy_all(pairs, each=report, fail_fast=fail_fast, **options)
    written = {(t.name, t.tag) for _, t, *_ in pairs if t.tag is not None}
    for entry, select, listed, refused in listings:
        if fail_fast and any(r.status == "failed" for r in results):
            done = [skipped(*_ends(entry), "an image failed, and --fail-fast")]
        else:
            mine = {tag for name, tag in written if name == entry.target.name}
            dry_run = bool(options.get("dry_run"))
            select = _not_theirs(entry, leaves, select)
            refused = refused or _below_unlisted(entry, unlisted)
            done = await _delete(copier, entry, select, listed, mine, dry_run, refused)
        for result in done:
            report(result)
        results += done
    return results


async def expand(copier: Copier, entry: SyncEntry) -> tuple[list[SyncEntry], list[CopyResult]]:
    """A namespace entry's repository entries (``SyncEntry.expand``) over its registry's
    catalog, and a "failed" result for each path under the prefix that is no valid name."""
    paths = await copier.repositories_of(entry.source)
    session = copier.session
    if _origin(session.server(entry.source)) == _origin(session.server(entry.target)):
        # The target on the source's server under another name (a [registry] alias, another
        # case, :443): its own copies are in the catalog, and are never copied again.
        inside = entry.target.path
        paths = [p for p in paths if p != inside and not p.startswith(f"{inside}/")]
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
    copier: Copier,
    entry: SyncEntry,
    select: Callable[[str], bool],
    listed: list[str],
    written: set[str],
    dry_run: bool,
    refused: str | None = None,
) -> list[CopyResult]:
    """The entry's deletion step: the target's tags that ``select`` takes (the entry's
    selection; with referrers copied, less the referrer schemes' tags, which follow their
    images: the target's ``sha256-<hex>`` index may list what others pushed, and a source with
    the Referrers API lists no such tag) that its source no longer has. With ``refused`` (why
    nothing may be deleted), a step that would delete a tag is ``delete-skipped`` instead."""
    try:
        gone = await gone_tags(copier, entry.target, listed, select, written)
    except PullError as e:
        return [failed(str(entry.source), str(entry.target), e)]
    if refused is not None:
        return [skipped(*_ends(entry), refused)] if gone else []
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


def _not_theirs(
    entry: SyncEntry, leaves: Sequence[SyncEntry], select: Callable[[str], bool]
) -> Callable[[str], bool]:
    """``select`` less the tags another entry to ``entry``'s target repository may write: that
    entry's, even when its source failed to list them today (then this run writes none)."""
    others = [e for e in leaves if e is not entry and e.target.name == entry.target.name]
    if not others:
        return select
    return lambda tag: select(tag) and not any(other.writes(tag) for other in others)


def _below_unlisted(entry: SyncEntry, unlisted: Sequence[SyncEntry]) -> str | None:
    """Why ``entry`` may delete nothing when its target lies below a namespace's whose catalog
    could not be read: which of its tags that namespace writes, only the catalog could say."""
    for namespace in unlisted:
        if entry.target.name.startswith(f"{namespace.target.name}/"):
            source = shown(f"{namespace.source}{NAMESPACE_SUFFIX}")
            return f"the catalog of {source}, which may write to it, could not be read"
    return None


def _origin(endpoint: Endpoint) -> tuple[str, str, int | None]:
    """Where ``endpoint`` is, however it is spelt: scheme, host (lower case), port."""
    parts = urlsplit(endpoint.url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _server_only(copier: Copier, source: Reference) -> bool:
    """Whether the source's own server is the one endpoint that lists its tags."""
    session = copier.session
    return session.endpoints(source, resolve=True) == (session.server(source),)


def _repository(ref: Reference) -> Reference:
    return replace(ref, tag=None, digest=None)


def _ends(entry: SyncEntry) -> tuple[Reference, Reference]:
    return entry.source, entry.target


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
