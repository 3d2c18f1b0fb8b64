"""A sync's deletion step (``delete = true`` in an entry, ``--delete`` with ``--to``): after the
copies, the target tags in the selection that the source no longer lists are deleted.

The safety rules, each a guard below:

* only tags of the entry's own target repository, and only those the selection takes
  (``select``), never one this run's copies write (``written``), never one the source lists;
* only from a complete list of the source's tags, asked of the source registry's own server,
  never a mirror (a pull-through cache may list only what it holds, and distribution's falls back
  to its own tags when the upstream fails: a list that looks whole and is not). A listing that
  fails (an error, a rate limit, a page that failed) skips the whole step: ``delete-skipped``;
* a registry that cannot delete a tag alone (distribution 2.8) gets a DELETE by digest only when
  every tag of the repository that points at that digest, or at an index naming it, is itself to
  be deleted; otherwise the tag is left, ``kept-shared``;
* a dry run (and ``sync --check``) lists and compares only: ``would-delete``, nothing sent.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import urlsplit

from ..copying import Copier, CopyResult, failed
from ..errors import NotFound, PullError, RegistryError, error_code
from ..oci.digest import Digest, digest_of
from ..oci.manifest import INDEX_TYPES
from ..oci.reference import Reference, valid_tag
from ..registry.delete import delete_manifest, delete_scope
from ..registry.endpoint import Endpoint
from ..tasks import map_limited
from ..text import shown

__all__ = [
    "DELETE_STATUSES",
    "delete_dropped",
    "delete_gone",
    "gone_tags",
    "skipped",
    "source_tags",
    "split_listed",
]

#: What a deletion step's records say (``copying.STATUSES`` lists them too, for a summary,
#: where they are counted only when there are any).
DELETE_STATUSES = ("deleted", "would-delete", "kept-shared", "delete-skipped")
#: HEADs (and index GETs) at once while finding which tags share a digest.
_AT_ONCE = 8


async def source_tags(copier: Copier, source: Reference) -> list[str]:
    """Every tag of ``source``'s repository, listed at its registry's own server (never a
    mirror), every ``Link`` page of it; raises what the listing met, so that a list short of
    complete is never taken for the source's."""
    session = copier.session
    server = session.server(source)
    if server not in session.endpoints(source, resolve=True):
        raise RegistryError(
            f"the tags of {source.name} may be listed by its mirrors only (mirror_only), and a "
            "mirror's list may be partial: nothing is deleted"
        )
    client = session.client
    return await session.retried(lambda: client.list_tags(server, source.path))


def skipped(source: Reference, target: Reference, why: PullError | str) -> CopyResult:
    """The record of a deletion step left out: ``why`` (the source's listing failed, say)."""
    message = why if isinstance(why, str) else str(why)
    url = getattr(why, "url", "") or ""
    host = urlsplit(url).netloc if "://" in url else None
    return CopyResult(
        str(source),
        str(target),
        "delete-skipped",
        error=f"nothing deleted in {target.name}: {message}",
        code=None if isinstance(why, str) else error_code(why),
        registry=host or None,
    )


async def gone_tags(
    copier: Copier,
    target: Reference,
    listed: Iterable[str],
    select: Callable[[str], bool],
    written: Iterable[str],
) -> list[str]:
    """The tags of ``target``'s repository that ``select`` takes, that the source (its complete
    list ``listed``) no longer has, and that this run does not write (``written``), sorted. A
    repository not there has none."""
    session = copier.session
    to = session.server(target)
    try:
        tags = await session.retried(lambda: session.client.list_tags(to, target.path))
    except NotFound:
        return []
    keep = {*listed, *written}
    return sorted({t for t in tags if valid_tag(t) and select(t) and t not in keep})


async def delete_gone(
    copier: Copier,
    source: Reference,
    target: Reference,
    gone: Sequence[str],
    *,
    dry_run: bool = False,
) -> list[CopyResult]:
    """Delete each tag of ``gone`` from ``target``'s repository (``gone_tags``): by tag, or
    where the registry cannot, by digest when no tag but those of ``gone`` holds the digest
    (else ``kept-shared``). One record per tag: ``deleted``, ``kept-shared``, ``failed``, or
    with ``dry_run`` ``would-delete`` (nothing sent)."""
    named = [(dataclasses.replace(source, tag=t), dataclasses.replace(target, tag=t)) for t in gone]
    if dry_run:
        return [CopyResult(str(s), str(t), "would-delete") for s, t in named]
    repository = _Repository(copier, target)
    results: dict[str, CopyResult] = {}
    for src, dst in named:
        tag = str(dst.tag)
        if tag in results:  # deleted with a digest an earlier tag shared
            continue
        try:
            if repository.by_tag and await repository.delete(tag):
                results[tag] = CopyResult(str(src), str(dst), "deleted")
                continue
            repository.by_tag = False
            results.update(await repository.delete_by_digest(source, tag, gone))
        except PullError as e:
            results[tag] = failed(str(src), str(dst), e)
    return [results[str(t.tag)] for _, t in named]


class _Repository:
    """The target repository of a deletion step: how its registry deletes, and which of its tags
    point at which digests (found once, when a DELETE by tag is refused)."""

    def __init__(self, copier: Copier, target: Reference) -> None:
        self._session = copier.session
        self._target = target
        self._to: Endpoint = self._session.server(target)
        #: False once the registry answered a DELETE by tag with 400 or 405
        self.by_tag = True
        #: tag -> its digest, and digest -> the tags whose index names it
        self._digests: dict[str, Digest] | None = None
        self._named_by: dict[Digest, set[str]] = {}

    async def delete(self, reference: str) -> bool:
        client, to, path = self._session.client, self._to, self._target.path
        return await self._session.retried(lambda: delete_manifest(client, to, path, reference))

    async def delete_by_digest(
        self, source: Reference, tag: str, gone: Sequence[str]
    ) -> dict[str, CopyResult]:
        """``tag``'s digest deleted, and with it every tag of ``gone`` pointing there; or
        ``tag`` kept-shared, naming the tags that hold its digest."""
        digests = await self._map()
        digest = digests.get(tag)
        src = str(dataclasses.replace(source, tag=tag))
        dst = str(dataclasses.replace(self._target, tag=tag))
        if digest is None:  # not there any more: nothing to delete
            return {tag: CopyResult(src, dst, "deleted")}
        same = {t for t, d in digests.items() if d == digest}
        holders = same | self._named_by.get(digest, set())
        others = sorted(holders - set(gone))
        if others:
            shown_others = ", ".join(shown(t, 80) for t in others[:5])
            more = f" and {len(others) - 5} more" if len(others) > 5 else ""
            return {
                tag: CopyResult(
                    src,
                    dst,
                    "kept-shared",
                    str(digest),
                    error=f"{self._to.host} deletes only by digest, and {digest} is also"
                    f" {shown_others}{more}: left in place",
                )
            }
        if not await self.delete(str(digest)):  # a registry that refuses a digest too
            raise RegistryError(f"{self._to.host} refused to delete {digest} of {dst}")
        for t in same:
            del digests[t]
        deleted = sorted(same & set(gone))
        return {
            t: CopyResult(
                str(dataclasses.replace(source, tag=t)),
                str(dataclasses.replace(self._target, tag=t)),
                "deleted",
                str(digest),
            )
            for t in deleted
        }

    async def _map(self) -> dict[str, Digest]:
        """Every tag's digest (HEAD; a GET where HEAD does not say), and the children of every
        index among them, listed afresh: after this run's copies."""
        if self._digests is not None:
            return self._digests
        session, to, path = self._session, self._to, self._target.path
        tags = await session.retried(lambda: session.client.list_tags(to, path))
        found = await map_limited(_AT_ONCE, tags, self._digest_of)
        self._digests = {t: d for t, (d, _) in zip(tags, found, strict=True) if d is not None}
        for tag, (_, children) in zip(tags, found, strict=True):
            for child in children:
                self._named_by.setdefault(child, set()).add(tag)
        return self._digests

    async def _digest_of(self, tag: str) -> tuple[Digest | None, tuple[Digest, ...]]:
        """What ``tag`` points at (None: not there), and the children when it is an index."""
        client, to = self._session.client, self._to
        ref = dataclasses.replace(self._target, tag=tag, digest=None)
        scope = delete_scope(ref.path)
        try:
            head = await self._session.retried(lambda: client.head_manifest(to, ref, scope=scope))
            if head is not None and head.media_type not in (None, *INDEX_TYPES):
                return head.digest, ()
            resp = await self._session.retried(lambda: client.get_manifest(to, ref))
        except NotFound:
            return None, ()
        return digest_of(resp.raw), _children(resp.raw)


def _children(raw: bytes) -> tuple[Digest, ...]:
    """The digests an index names (none for a manifest, or for what does not parse)."""
    from ..oci.digest import parse_digest

    try:
        doc = json.loads(raw)
        entries = doc.get("manifests") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            return ()
        return tuple(parse_digest(str(e.get("digest"))) for e in entries if isinstance(e, dict))
    except (ValueError, RecursionError, PullError):
        return ()


async def split_listed(
    copier: Copier, pairs: Sequence[tuple[Reference, Reference]]
) -> tuple[list[tuple[Reference, Reference]], list[tuple[Reference, Reference]], list[CopyResult]]:
    """``sync --to PREFIX --delete IMAGE...``: the pairs to copy, the pairs to delete (an
    image's tag that its source repository no longer lists while the target has it), and the
    records of the repositories whose deletion is skipped (their listing failed). The selection
    of a target repository is the tags the images name for it; an image the source no longer
    has and the target never had is copied (and fails, not found) as without ``--delete``."""
    by_repository: dict[str, list[tuple[Reference, Reference]]] = {}
    for pair in pairs:
        if pair[0].tag is not None and pair[1].tag is not None:
            by_repository.setdefault(pair[0].name, []).append(pair)
    drop: list[tuple[Reference, Reference]] = []
    records: list[CopyResult] = []
    for group in by_repository.values():
        source, target = group[0][0], group[0][1]
        repo_source = dataclasses.replace(source, tag=None, digest=None)
        repo_target = dataclasses.replace(target, tag=None, digest=None)
        try:
            listed = set(await source_tags(copier, source))
            missing = [p for p in group if p[0].tag not in listed]
            there = await gone_tags(copier, target, listed, lambda _: True, ()) if missing else []
        except PullError as e:
            records.append(skipped(repo_source, repo_target, e))
            continue
        drop += [p for p in missing if p[1].tag in there]
    dropped = {(str(s), str(t)) for s, t in drop}
    keep = [p for p in pairs if (str(p[0]), str(p[1])) not in dropped]
    return keep, drop, records


async def delete_dropped(
    copier: Copier,
    drop: Sequence[tuple[Reference, Reference]],
    written: Iterable[Reference],
    *,
    dry_run: bool = False,
) -> list[CopyResult]:
    """The deletion step of ``split_listed``'s pairs to delete, repository by repository, never
    a tag this run's copies wrote (``written``)."""
    kept = {(t.name, t.tag) for t in written}
    groups: dict[tuple[str, str], list[tuple[Reference, Reference]]] = {}
    for source, target in drop:
        if (target.name, target.tag) not in kept:
            groups.setdefault((source.name, target.name), []).append((source, target))
    results: list[CopyResult] = []
    for group in groups.values():
        source = dataclasses.replace(group[0][0], tag=None, digest=None)
        target = dataclasses.replace(group[0][1], tag=None, digest=None)
        gone = sorted({str(t.tag) for _, t in group})
        results += await delete_gone(copier, source, target, gone, dry_run=dry_run)
    return results
