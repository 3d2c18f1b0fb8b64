"""Copying images into a registry, byte for byte: the index and every child keep their digests.
The order is go-containerregistry's ``remote.Write``: blobs, then child manifests by digest, then
the tag, so a target tag never points at content the target does not hold.

Where the image comes from is a ``Source`` (``puller.sources``): another registry
(``RegistrySource``, through a ``Session``: the configured mirrors and credentials, as a pull) or
the local store (``sources.StoreSource``: ``pypull push``), regclient's shape, so a copy and a
push are one code path. Blobs stream from the source to the target hashed on the way (bounded
memory, no local copy), and a blob that does not verify fails before its upload completes.
Nothing is written when both sides already agree, and that is found out by HEADs: a registry
that counts pulls (Docker Hub) does not count them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import (
    ManifestError,
    NotFound,
    PullError,
    QuotaExhausted,
    RegistryError,
)
from .oci.digest import Digest, digest_of, parse_digest
from .oci.manifest import (
    Descriptor,
    Index,
    Manifest,
    Platform,
    parse_manifest,
    select_platform,
)
from .oci.reference import Reference, valid_tag
from .outcome import STATUSES as STATUSES
from .outcome import CopyResult as CopyResult
from .outcome import failed as failed
from .ratewait import DEFAULT_MAX_WAIT, QuotaWait, QuotaWaiter, checked_mode
from .registry.auth import push_scope
from .registry.endpoint import Endpoint
from .registry.status import broken_link
from .session import MAX_CHILDREN_BYTES, Session
from .sources import Found, Source
from .sources import RegistrySource as RegistrySource  # importable from here, as before
from .sources import StoreSource as StoreSource
from .store.blobinfo import Sightings, blob_info
from .streams import counted
from .tasks import map_limited
from .text import shown

if TYPE_CHECKING:
    import asyncio

    from .registry.client import RegistryClient

T = TypeVar("T")


def default_jobs() -> int:
    """Blobs moved at once, across every image of a run (``-j``): this machine's CPUs, from 2
    to 4. A copy spends its CPU on hashing and on the kernel's copies, so streams beyond the
    cores only interleave: on 2 cores, 2 streams moved a 1 GB image between loopback
    registries in 0.95 of the time and 0.93 of the CPU seconds of 4 (crane's default is the
    CPU count too)."""
    try:
        cpus = len(os.sched_getaffinity(0))  # a container's cpuset, as Go's GOMAXPROCS sees it
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 2
    return min(4, max(2, cpus))


#: Blobs of one image asked about at once (a HEAD at the target, a mount): round trips, not CPU,
#: so more than ``jobs``; only uploads take one of the ``jobs`` slots.
ASKS = 8

#: Images of a ``copy_all`` in flight at once: an unchanged one costs two HEADs (round trips, not
#: CPU), and the blobs of those that change still move ``jobs`` at a time. Under the default
#: ``rate_limit_reserve`` (10): the images that pass its check together spend at most this many.
IMAGES = 8

#: An image whose manifests are still to be fetched from the source (what its pull quota counts)
#: is deferred when that quota has fallen below this.
DEFAULT_RATE_LIMIT_RESERVE = 10
#: On a platform-filtered index: the digest of the source index it was made from, so that the
#: next run can tell "unchanged" from a HEAD at the source and a GET at the target.
SOURCE_DIGEST_ANNOTATION = "io.pypull.source.digest"
#: Layers a registry must not be sent: they live at the URLs their descriptor names.
_FOREIGN = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)


#: (source, target), or (source, target, options of its own for ``Copier.copy``)
Pair = tuple[Reference, Reference] | tuple[Reference, Reference, dict[str, Any]]


@dataclass
class _Tally:
    uploaded: int = 0
    mounted: int = 0
    existing: int = 0
    bytes_uploaded: int = 0


@dataclass
class _Job:
    """One image's copy: where from, what was found there, and where to."""

    origin: Source
    found: Found
    source: Reference
    to: Endpoint
    target: Reference
    tally: _Tally = field(default_factory=_Tally)


@dataclass
class _Plan:
    """What goes to the target: child manifests by digest, then the top manifest by tag."""

    digest: Digest
    raw: bytes
    media_type: str
    children: list[Descriptor] = field(default_factory=list)
    single: Descriptor | None = None  # one platform of an index: the tag is its manifest


class Copier:
    """Copies images with one client. A blob placed in, or found in, a repository of a target
    registry is mounted from there into the next repository that needs it, not sent again;
    two images that need the same blob at once wait for one transfer."""

    def __init__(
        self,
        session: Session,
        *,
        jobs: int | None = None,
        rate_limit_reserve: int = DEFAULT_RATE_LIMIT_RESERVE,
        on_bytes: Callable[[int], None] | None = None,
        on_planned: Callable[[int], None] | None = None,
        ratelimit: str = "defer",
        max_wait: float = DEFAULT_MAX_WAIT,
        on_wait: Callable[[QuotaWait], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """``session`` (a ``Puller`` is one) gives the endpoints, verified manifest fetches,
        client and retries; ``jobs`` blobs move at once (default: ``default_jobs()``);
        ``on_bytes`` hears of each piece uploaded, and ``on_planned`` of how many images a
        ``copy_all`` is about to copy (a progress bar's total). ``ratewait`` says what
        ``ratelimit``, ``max_wait``, ``on_wait`` (each wait) and ``sleep`` (tests) do."""
        import asyncio

        self._session = session
        self._client: RegistryClient = session.client
        self.registry_source = RegistrySource(session)
        self.store = session.store
        self._images = jobs or max(default_jobs(), IMAGES)  # a -j given: that many images too
        self._jobs = jobs = jobs or default_jobs()
        self._slots = asyncio.Semaphore(jobs)  # uploads: they cost CPU
        self._asks = asyncio.Semaphore(ASKS)  # mounts: a request each, costing only a round trip
        self._reserve = rate_limit_reserve
        self._ratelimit = checked_mode(ratelimit)
        self._quota = QuotaWaiter(self._client, max_wait=max_wait, on_wait=on_wait, sleep=sleep)
        self._on_bytes = on_bytes
        self._on_planned = on_planned
        self._placed: dict[tuple[str, Digest], str] = {}  # (target registry, blob) -> repository
        self._sightings = Sightings(blob_info(self.store))  # the same, across runs: a hint
        self._moving: dict[tuple[str, Digest], asyncio.Event] = {}
        self._manifest_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._manifests_placed: set[tuple[str, str, Digest]] = set()
        self._target_tags: dict[tuple[str, str], asyncio.Task[frozenset[str]]] = {}

    @property
    def session(self) -> Session:
        """The session the copies go through: endpoints, client, retries."""
        return self._session

    @property
    def rate_limits(self) -> dict[str, int]:
        """The last ``ratelimit-remaining`` each source host sent."""
        return dict(self._client.rate_limits)

    async def copy(
        self,
        source: Reference,
        target: Reference,
        *,
        dry_run: bool = False,
        platforms: Sequence[Platform] = (),
        missing: bool = False,
        origin: Source | None = None,
        ratelimit: str | None = None,
    ) -> CopyResult:
        """Copy ``source`` to ``target``: every platform, or only ``platforms`` (one: the
        target's tag is its manifest; several: an index of just those, which records the
        source's digest). With
        ``missing``, a tag the target already has is left alone without asking the source.
        ``origin`` is where ``source`` is read (default: its registry); ``ratelimit``
        ("defer" or "wait": then a 429 for a spent quota is waited out too, and the copy
        tried once more). Errors become a "failed" result."""
        src, dst = str(source), str(target)
        wait = checked_mode(ratelimit or self._ratelimit) == "wait"
        args = (source, target, origin or self.registry_source, dry_run, platforms, missing, wait)
        try:
            try:
                return await self._copy(*args)
            except QuotaExhausted:
                if not wait or await self._quota_wait(args[2], source) is not None:
                    raise
            return await self._copy(*args)
        except PullError as e:
            return failed(src, dst, e)
        finally:
            await self._sightings.flush()

    async def copy_all(
        self,
        pairs: Iterable[Pair],
        *,
        each: Callable[[CopyResult], None] = lambda _: None,
        fail_fast: bool = False,
        **options: Any,
    ) -> list[CopyResult]:
        """Copy each (source, target) pair, ``jobs`` images at once if given, else ``IMAGES``
        (most are answered by two HEADs); their blobs share the ``jobs`` transfer slots;
        ``each`` hears of each result as it ends, and the results
        come back in the pairs' order. A pair may carry
        its own options, over ``options`` (a sync file entry's platforms). With
        ``fail_fast``, no image starts after one has failed. With ``referrers`` (and
        ``artifact_types``), each image's referrers follow it (``referring``), each a result
        of its own after the image's.

        One target tag is written once: a later pair to a tag an earlier pair writes fails
        without a request, unless both come from the same ``by`` (an option of a pair: who asks
        for it, such as a sync file entry's "the entry at FILE:LINE"; default: its source), so
        two writers cannot leave the tag to whichever ends last."""
        from .referring import Referrers

        pending = list(pairs)
        stop = False
        writers: dict[str, str] = {}  # target tag -> its first writer's by
        walk = Referrers(self, self._session, failed)  # shared: one subject's referrers once a run
        if self._on_planned is not None:
            self._on_planned(len(pending))

        async def one(pair: Pair) -> list[CopyResult]:
            nonlocal stop
            if stop:
                return []  # not started: an earlier image failed under fail_fast
            source, target, *own = pair
            mine = {**options, **(own[0] if own else {})}
            by = str(mine.pop("by", None) or f"the copy of {source}")
            referrers = bool(mine.pop("referrers", False))
            types = tuple(mine.pop("artifact_types", ()))
            # Claimed before the first await: pairs start in order, so the earlier pair wins.
            first = writers.setdefault(str(target), by) if target.tag is not None else by
            if first != by:
                result = CopyResult(
                    str(source),
                    str(target),
                    "failed",
                    error=f"tag {target.tag} is written by {first} in this run already: one"
                    " writer per tag",
                    code="invalid-input",
                )
            else:
                result = await self.copy(source, target, **mine)
            each(result)
            if fail_fast and result.status == "failed":
                stop = True
            if not referrers:
                return [result]
            more = await walk.of_image(source, target, result, types, mine, each)
            if fail_fast and any(r.status == "failed" for r in more):
                stop = True
            return [result, *more]

        return [r for rs in await map_limited(self._images, pending, one) for r in rs]

    async def tags_of(self, source: Reference) -> list[str]:
        """Every tag of ``source``'s repository, following the registry's ``Link`` pages (the
        listing pulls use too: ``Session.tags``)."""
        return await self._session.tags(source)

    async def repositories_of(self, registry: Reference) -> list[str]:
        """Every repository path the catalog of ``registry``'s registry lists
        (``Session.repositories``): what a sync's namespace chooses from."""
        return await self._session.repositories(registry)

    async def copy_tags(
        self,
        source: Reference,
        target: Reference,
        *,
        each: Callable[[CopyResult], None] = lambda _: None,
        select: Callable[[str], bool] = lambda _: True,
        fail_fast: bool = False,
        **options: Any,
    ) -> list[CopyResult]:
        """Every tag of ``source``'s repository that ``select`` takes, into ``target``'s."""
        pairs, results = await self.tag_pairs(source, target, select)
        for result in results:
            each(result)
        results += await self.copy_all(pairs, each=each, fail_fast=fail_fast, **options)
        return results

    async def tag_pairs(
        self,
        source: Reference,
        target: Reference,
        select: Callable[[str], bool] = lambda _: True,
        tags: Sequence[str] | None = None,
    ) -> tuple[list[Pair], list[CopyResult]]:
        """A (source, target) pair for each tag of ``source``'s repository that ``select``
        takes, and a "failed" result for each listed tag that is not a valid tag name;
        ``tags``: the repository's tags, listed already (default: ``tags_of``); a tag listed
        twice (pages that overlap) is one pair."""
        pairs: list[Pair] = []
        failed: list[CopyResult] = []
        for tag in dict.fromkeys(await self.tags_of(source) if tags is None else tags):
            if not valid_tag(tag):
                name = f"{source.name}:{shown(tag, 80)}"
                failed.append(
                    CopyResult(
                        name, str(target), "failed", error="not a valid tag name", code="protocol"
                    )
                )
            elif select(tag):
                pairs.append(
                    (
                        dataclasses.replace(source, tag=tag, digest=None),
                        dataclasses.replace(target, tag=tag, digest=None),
                    )
                )
        return pairs, failed

    async def _copy(
        self,
        source: Reference,
        target: Reference,
        origin: Source,
        dry_run: bool,
        platforms: Sequence[Platform],
        missing: bool,
        wait: bool = False,
    ) -> CopyResult:
        src, dst = str(source), str(target)
        to = self._session.server(target)  # the target registry's own server, never a mirror
        if missing and target.tag is not None and target.tag in await self._tags_at(to, target):
            return CopyResult(src, dst, "up-to-date")
        there = await self._head(to, target)
        if there is None and dry_run and not platforms:  # a HEAD says what a copy would be
            here = await origin.head(source)
            if here is not None:
                return CopyResult(src, dst, "would-copy", str(here))
        if there is not None:
            here = await origin.head(source)
            if here is not None and here == there:
                return CopyResult(src, dst, "up-to-date", str(there))
            if here is not None and len(platforms) == 1:
                if await _platform_of(origin, here, platforms[0]) == there:
                    return CopyResult(src, dst, "up-to-date", str(there))
            elif here is not None and platforms and await self._made_from(to, target) == here:
                return CopyResult(src, dst, "up-to-date", str(there))
            if here is not None and dry_run and not platforms:  # no GET: the HEADs differ
                return CopyResult(src, dst, "would-copy", str(here))
        # Only now does the copy cost quota (manifest GETs at the source): the HEADs above cost
        # none, so an image already in sync is up to date however little is left.
        left = origin.remaining(source)
        if left is not None and left < self._reserve:
            why = "" if not wait else await self._quota_wait(origin, source)
            if why is not None:
                return CopyResult(
                    src,
                    dst,
                    "deferred",
                    error=f"{left} pulls left at the source (rate_limit_reserve {self._reserve})"
                    + (f"; {why}" if why else ""),
                    code="rate-limited",
                )
        found = await origin.manifest(source)
        plan = _plan(found, platforms, src)
        if there is not None and there == plan.digest:
            return CopyResult(src, dst, "up-to-date", str(plan.digest))
        if dry_run:
            return CopyResult(src, dst, "would-copy", str(plan.digest))
        held = sum(d.size for d in plan.children)
        if held > MAX_CHILDREN_BYTES:
            raise ManifestError(
                f"{src}: its index names {len(plan.children)} manifests of {held} bytes in all, "
                f"over the {MAX_CHILDREN_BYTES >> 20} MiB pypull holds at once"
            )
        children = await map_limited(
            self._jobs, plan.children, lambda d: origin.child(found, source, d)
        )
        manifests: list[Manifest] = []
        if plan.single is not None:  # one platform: its manifest is the tag's
            plan.raw, plan.media_type = await origin.child(found, source, plan.single)
            manifests.append(_single(plan.raw, plan.media_type, f"{source} ({plan.digest})"))
            await origin.remember(found)
        elif isinstance(found.parsed, Manifest):
            manifests.append(found.parsed)
        for desc, (child_raw, child_type) in zip(plan.children, children, strict=True):
            manifests.append(_single(child_raw, child_type, f"{source} ({desc.digest})"))
        blobs: dict[Digest, Descriptor] = {}
        for manifest in manifests:
            for blob in (manifest.config, *manifest.layers):
                if blob.media_type not in _FOREIGN:
                    blobs.setdefault(blob.digest, blob)
        job = _Job(origin, found, source, to, target)
        await self._sightings.read(to.url, blobs, target.path)  # the record's hints, at once
        await map_limited(ASKS, list(blobs.values()), lambda blob: self._blob(job, blob))
        tally = job.tally
        await map_limited(
            self._jobs,
            list(zip(plan.children, children, strict=True)),
            lambda child: self.put_manifest(to, target.path, str(child[0].digest), *child[1]),
        )
        await self.put_manifest(to, target.path, target.identifier, plan.raw, plan.media_type)
        return CopyResult(
            src,
            dst,
            "copied",
            str(plan.digest),
            tally.uploaded,
            tally.mounted,
            tally.existing,
            tally.bytes_uploaded,
        )

    async def _quota_wait(self, origin: Source, source: Reference) -> str | None:
        """``ratelimit = "wait"``: None once the source's quota has reset, else why not."""
        hosts = [e.host for e in self._session.endpoints(source)]
        is_registry = origin is self.registry_source
        return await self._quota.wait(hosts, self._reserve) if is_registry else ""

    async def put_manifest(
        self, to: Endpoint, path: str, reference: str, raw: bytes, media_type: str
    ) -> None:
        """PUT a manifest (every manifest a run writes goes through here, the referrers' index
        tags too), one manifest PUT into a repository at a time: the distribution
        registry answers concurrent manifest writes into one repository with DIGEST_INVALID
        now and then (two tags of one image writing the same children; an index whose children
        it reads while another image's PUT writes one of them: 2 runs in 12 of two sync entries
        into one repository, under load). Blobs still move in parallel; a child already placed
        by this run is not sent again."""
        import asyncio

        key = (to.url, path, digest_of(raw))
        by_digest = reference == str(key[2])
        async with self._manifest_locks.setdefault((to.url, path), asyncio.Lock()):
            if by_digest and key in self._manifests_placed:
                return
            put = self._client.put_manifest
            await self._retried(functools.partial(put, to, path, reference, raw, media_type))
            self._manifests_placed.add(key)

    async def _head(self, endpoint: Endpoint, ref: Reference) -> Digest | None:
        """What the target's tag points at (a GET when its HEAD does not say)."""
        scope = push_scope(ref.path)
        try:
            head = await self._retried(
                lambda: self._client.head_manifest(endpoint, ref, scope=scope)
            )
            if head is not None:
                return head.digest
            resp = await self._retried(lambda: self._client.get_manifest(endpoint, ref))
        except NotFound:
            return None
        return digest_of(resp.raw)

    async def _made_from(self, endpoint: Endpoint, ref: Reference) -> Digest | None:
        """The source digest a platform-filtered index at the target records (a GET of the
        small index, at the user's own registry)."""
        try:
            resp = await self._retried(lambda: self._client.get_manifest(endpoint, ref))
            annotations = json.loads(resp.raw).get("annotations") or {}
            return parse_digest(str(annotations.get(SOURCE_DIGEST_ANNOTATION, "")))
        except (PullError, ValueError, AttributeError):
            return None

    async def _tags_at(self, endpoint: Endpoint, ref: Reference) -> frozenset[str]:
        """The target repository's tags, listed once a run (a repository not there yet: none)."""
        import asyncio

        key = (endpoint.url, ref.path)
        task = self._target_tags.get(key)
        if task is None:

            async def listing() -> frozenset[str]:
                try:
                    tags = await self._retried(lambda: self._client.list_tags(endpoint, ref.path))
                except NotFound:
                    return frozenset()
                return frozenset(tags)

            task = self._target_tags[key] = asyncio.ensure_future(listing())
        return await asyncio.shield(task)

    async def _blob(self, job: _Job, blob: Descriptor) -> None:
        import asyncio

        key = (job.to.url, blob.digest)
        while (moving := self._moving.get(key)) is not None:
            await moving.wait()  # another image is moving it: then a HEAD or mount does
        done = self._moving[key] = asyncio.Event()
        try:
            await self._move(job, blob)
        finally:
            del self._moving[key]
            done.set()

    async def _move(self, job: _Job, blob: Descriptor) -> None:
        to, path, tally = job.to, job.target.path, job.tally
        key = (to.url, blob.digest)
        origin = job.found.origin
        if isinstance(origin, Endpoint):
            self._sightings.saw(origin.url, blob.digest, job.source.path)
        placed = self._placed.get(key)  # where this run put or found it: sure
        if placed is None and isinstance(origin, Endpoint) and origin.url == to.url:
            placed = job.source.path  # the same registry: the source repository has it
        # Where an earlier run saw it (store/blobinfo.py), a hint. With only that, and the
        # record not placing it in the target repository itself, the mount goes first and the
        # HEAD only if the registry refuses it (the cron run bringing a new tag into a new
        # repository); otherwise the HEAD goes first, as it always did.
        hinted, there = await self._sightings.where(to.url, blob.digest, path)
        asked = placed is not None or hinted is None or there
        if asked and await self._target_has(to, path, blob.digest):
            tally.existing += 1
            self._placed.setdefault(key, path)
            self._sightings.saw(to.url, blob.digest, path)
            return
        elsewhere = placed or hinted
        content = job.origin.content(job.found, job.source, blob)
        if self._on_bytes is not None:
            content = counted(content, self._on_bytes)
        mib = self._session.registry(job.target.domain).upload_chunk_mib
        # A mount takes no upload slot; one refused turns into an upload in the same call, so up
        # to ASKS such uploads may run at once beside the -j slots (a registry refusing mounts).
        async with self._slots if elsewhere is None else self._asks:
            how = await self._retried(
                lambda: self._client.upload_blob(
                    to,
                    path,
                    blob.digest,
                    blob.size,
                    content,
                    mount_from=elsewhere,
                    chunk_size=mib << 20 if mib else None,
                    asked=asked,
                )
            )
        self._placed[key] = path
        self._sightings.saw(to.url, blob.digest, path)
        if how != "mounted" and elsewhere is not None:  # the mount was refused: a stale hint
            self._sightings.refused(to.url, blob.digest, elsewhere)
        if how == "mounted":
            tally.mounted += 1
        elif how == "existing":  # the repository had it after all (asked once refused)
            tally.existing += 1
        else:
            tally.uploaded += 1
            tally.bytes_uploaded += blob.size

    async def _target_has(self, to: Endpoint, path: str, digest: Digest) -> bool:
        """Whether the target's repository holds the blob, by HEAD. A 5xx that outlasts the
        retries counts as "no" (``registry.status.broken_link``); other refusals keep their
        meaning."""
        scope = push_scope(path)
        try:
            return await self._retried(
                lambda: self._client.blob_exists(to, path, digest, scope=scope)
            )
        except RegistryError as e:
            if broken_link(e):
                return False
            raise

    async def _retried(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await self._session.retried(operation)


def _plan(found: Found, platforms: Sequence[Platform], where: str) -> _Plan:
    """The manifests to write: the source's as they are; for one platform, its manifest; for
    several, an index of only those that records the source index's digest
    (``SOURCE_DIGEST_ANNOTATION``)."""
    parsed = found.parsed
    if isinstance(parsed, Manifest):  # one platform already: copied as it is
        return _Plan(found.digest, found.raw, found.media_type)
    if not platforms:
        return _Plan(found.digest, found.raw, found.media_type, _once(parsed.manifests))
    if len(platforms) == 1:
        desc = select_platform(parsed, platforms[0], where)
        return _Plan(desc.digest, b"", desc.media_type, single=desc)
    chosen = _once(
        d
        for d in parsed.manifests
        if d.platform is not None and any(d.platform.matches(p) for p in platforms)
    )
    if not chosen:
        have = ", ".join(sorted({str(d.platform) for d in parsed.manifests if d.platform}))
        wanted = ", ".join(str(p) for p in platforms)
        raise ManifestError(f"{where} has no {wanted} (it has {have or 'no platforms named'})")
    keep = {str(d.digest) for d in chosen}
    doc = json.loads(found.raw)
    doc["manifests"] = [m for m in doc["manifests"] if m.get("digest") in keep]
    annotations = doc.get("annotations")
    doc["annotations"] = {
        **(annotations if isinstance(annotations, dict) else {}),
        SOURCE_DIGEST_ANNOTATION: str(found.digest),
    }
    raw = json.dumps(doc, indent=3).encode()
    return _Plan(digest_of(raw), raw, found.media_type, chosen)


def _once(children: Iterable[Descriptor]) -> list[Descriptor]:
    """Each child manifest once, in the index's order: an index may list one digest many times
    (its bytes, repeats and all, are written as they are), and each is fetched and put once."""
    first: dict[Digest, Descriptor] = {}
    for d in children:
        first.setdefault(d.digest, d)
    return list(first.values())


def _single(raw: bytes, media_type: str, where: str) -> Manifest:
    manifest = parse_manifest(raw, media_type, where)
    if isinstance(manifest, Index):
        raise ManifestError(f"{where} nests an index in an index: not supported")
    return manifest


async def _platform_of(origin: Source, digest: Digest, platform: Platform) -> Digest | None:
    """The digest of ``platform``'s manifest in the index ``digest``, when the index is at
    hand without asking the source (a single-platform copy's next run: no GET at the source)."""
    raw = await origin.known(digest)
    if raw is None:
        return None
    try:
        parsed = parse_manifest(raw, None, str(digest))
        if isinstance(parsed, Index):
            return select_platform(parsed, platform).digest
    except PullError:
        pass
    return None
