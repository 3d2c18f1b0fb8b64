"""Copying images into a registry, byte for byte: the index and every child keep their digests.
The order is go-containerregistry's ``remote.Write``: blobs, then child manifests by digest, then
the tag, so a target tag never points at content the target does not hold.

Where the image comes from is a ``Source``: another registry (``RegistrySource``, through the
configured mirrors and credentials, as a pull) or the local store (``StoreSource``: ``pypull
push``), regclient's shape, so a copy and a push are one code path. Blobs stream from the source to
the target hashed on the way (bounded memory, no local copy), and a blob that does not verify
fails before its upload completes. Nothing is written when both sides already agree, and that is
found out by HEADs: a registry that counts pulls (Docker Hub) does not count them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .errors import ManifestError, NotFound, PullError, RegistryError, StoreError
from .http.message import Chunk
from .oci.digest import Digest, Verifier, digest_of, parse_digest
from .oci.manifest import (
    Descriptor,
    Index,
    Manifest,
    Platform,
    parse_manifest,
    select_platform,
)
from .oci.reference import Reference, valid_tag
from .registry.auth import push_scope
from .registry.client import RegistryClient
from .registry.endpoint import Endpoint, try_in_turn
from .registry.retry import with_retries
from .store.layout import RESOLVED_ANNOTATION, Store
from .text import shown

if TYPE_CHECKING:
    from .pulling import Puller

T = TypeVar("T")
A = TypeVar("A")

#: Child manifests of one index held in memory at once, in bytes (their descriptors' sizes).
MAX_CHILDREN_BYTES = 64 << 20


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


#: An image whose manifests are still to be fetched from the source (what its pull quota counts)
#: is deferred when that quota has fallen below this.
DEFAULT_RATE_LIMIT_RESERVE = 10
#: On a platform-filtered index: the digest of the source index it was made from, so that the
#: next run can tell "unchanged" from a HEAD at the source and a GET at the target.
SOURCE_DIGEST_ANNOTATION = "io.pypull.source.digest"
#: What a copy can come to, in the order a summary lists them.
STATUSES = ("copied", "up-to-date", "would-copy", "deferred", "failed")
#: Layers a registry must not be sent: they live at the URLs their descriptor names.
_FOREIGN = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)
_READ_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class CopyResult:
    """What one copy did: ``status`` is one of ``STATUSES``."""

    source: str
    target: str
    status: str
    digest: str | None = None
    uploaded: int = 0
    mounted: int = 0
    existing: int = 0
    bytes_uploaded: int = 0
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "digest": self.digest,
            "status": self.status,
            "blobs": {
                "uploaded": self.uploaded,
                "mounted": self.mounted,
                "existing": self.existing,
            },
            "bytes_uploaded": self.bytes_uploaded,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Found:
    """A manifest as a source holds it: the bytes as served, their digest and parse, and
    ``origin``, where its children and blobs are to be fetched from (source-specific)."""

    digest: Digest
    raw: bytes
    media_type: str
    parsed: Manifest | Index
    origin: Any = None


Content = Callable[[], AsyncIterator[Chunk]]
#: (source, target), or (source, target, options of its own for ``Copier.copy``)
Pair = tuple[Reference, Reference] | tuple[Reference, Reference, dict[str, Any]]


class Source(Protocol):
    """Where a copy reads an image."""

    async def head(self, ref: Reference) -> Digest | None:
        """What ``ref`` points at, as cheaply as can be asked; None: unknown (fetch it)."""

    async def manifest(self, ref: Reference) -> Found:
        """The manifest ``ref`` points at, verified."""

    async def child(self, found: Found, ref: Reference, desc: Descriptor) -> tuple[bytes, str]:
        """A child manifest of the index ``found``, verified: its bytes and media type."""

    def content(self, found: Found, ref: Reference, blob: Descriptor) -> Content:
        """The blob's bytes from its start, verified on the way (callable again for a retry)."""

    def remaining(self, ref: Reference) -> int | None:
        """What is left of the source's pull quota, when it has said."""

    async def known(self, digest: Digest) -> bytes | None:
        """The index ``digest`` if it is at hand without asking the source (the store)."""

    async def remember(self, found: Found) -> None:
        """Keep the index ``found`` at hand for ``known`` (the next run's comparison)."""


class RegistrySource:
    """Images in a registry, asked through its mirrors in turn, as a pull asks. A blob already
    in the local store is read from there, not fetched."""

    def __init__(self, puller: Puller) -> None:
        self._puller = puller
        self._client = puller.client

    async def head(self, ref: Reference) -> Digest | None:
        sources = self._puller.endpoints(ref, resolve=ref.digest is None)
        head = await _retried(
            self._puller,
            lambda: try_in_turn(sources, lambda e: self._client.head_manifest(e, ref)),
        )
        return None if head is None else head.digest

    async def manifest(self, ref: Reference) -> Found:
        sources = self._puller.endpoints(ref, resolve=ref.digest is None)
        return await _retried(self._puller, lambda: try_in_turn(sources, self._at(ref)))

    def _at(self, ref: Reference) -> Callable[[Endpoint], Awaitable[Found]]:
        async def fetch(endpoint: Endpoint) -> Found:
            digest, resp = await self._puller._fetch_verified(endpoint, ref)
            parsed = parse_manifest(resp.raw, resp.content_type, str(ref))
            media_type = resp.content_type or parsed.media_type
            return Found(digest, resp.raw, media_type, parsed, endpoint)

        return fetch

    async def child(self, found: Found, ref: Reference, desc: Descriptor) -> tuple[bytes, str]:
        child_ref = dataclasses.replace(ref, tag=None, digest=desc.digest)
        fetch = functools.partial(self._puller._fetch_verified, found.origin, child_ref, desc)
        _, resp = await _retried(self._puller, fetch)
        return resp.raw, resp.content_type or desc.media_type

    def content(self, found: Found, ref: Reference, blob: Descriptor) -> Content:
        store = self._puller.store
        try:
            local = store.has(blob.digest)
        except (OSError, StoreError):
            local = False
        if local:
            return lambda: _from_store(store, blob)
        return lambda: _piped(self._client, found.origin, ref.path, blob)

    def remaining(self, ref: Reference) -> int | None:
        seen = [self._client.rate_limits.get(e.host) for e in self._puller.endpoints(ref)]
        known = [n for n in seen if n is not None]
        return min(known) if known else None

    async def known(self, digest: Digest) -> bytes | None:
        stored = await self._puller._stored_manifest(digest, None, str(self._puller.store.root))
        return None if stored is None else stored.raw

    async def remember(self, found: Found) -> None:
        """Into the store, as a pull keeps an index: content-addressed and verified, so a
        later run can tell the platform's manifest from a HEAD alone."""
        where = found.origin.url if isinstance(found.origin, Endpoint) else ""
        with suppress(OSError, PullError):  # no store to keep it in: the next run GETs it
            await asyncio.get_running_loop().run_in_executor(
                None, self._puller.store.put_bytes, found.digest, found.raw, where
            )


class StoreSource:
    """Images in the local store (``pypull push``): the manifest bytes the registry served,
    which the store keeps beside their OCI form, so the digest is the one the pull showed.
    Every file is verified as it is read: the store may have been written by someone else."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def head(self, ref: Reference) -> Digest | None:
        return await asyncio.get_running_loop().run_in_executor(None, self._resolved, ref)

    def _resolved(self, ref: Reference) -> Digest:
        if ref.digest is not None:
            if not self._store.has(ref.digest):
                raise NotFound(f"{ref}: not in the store {self._store.root}")
            return ref.digest
        entry = self._store.lookup(str(ref))
        if entry is None:
            raise NotFound(f"{ref}: not in the store {self._store.root} (pull it first)")
        resolved = entry.annotations.get(RESOLVED_ANNOTATION)
        return entry.digest if resolved is None else parse_digest(resolved)

    async def manifest(self, ref: Reference) -> Found:
        def read() -> Found:
            digest = self._resolved(ref)
            raw = self._manifest_bytes(digest, None, str(ref))
            parsed = parse_manifest(raw, None, f"{ref} in the store")
            return Found(digest, raw, parsed.media_type, parsed)

        return await asyncio.get_running_loop().run_in_executor(None, read)

    def _manifest_bytes(self, digest: Digest, size: int | None, what: str) -> bytes:
        if not self._store.has(digest):
            raise NotFound(f"{what}: the store {self._store.root} lacks its manifest {digest}")
        return self._store.read_manifest(digest, size)

    async def child(self, found: Found, ref: Reference, desc: Descriptor) -> tuple[bytes, str]:
        def read() -> bytes:
            if not self._store.has(desc.digest):
                platform = f" {desc.platform}" if desc.platform else ""
                raise NotFound(
                    f"{ref}: the store holds only some platforms of it; the{platform} manifest "
                    f"{desc.digest} is missing (pull it with --platform"
                    f"{platform or ' OS/ARCH'}, or push chosen platforms with --platform)"
                )
            return self._manifest_bytes(desc.digest, desc.size, str(ref))

        raw = await asyncio.get_running_loop().run_in_executor(None, read)
        return raw, desc.media_type

    def content(self, found: Found, ref: Reference, blob: Descriptor) -> Content:
        if not self._store.has(blob.digest):
            raise NotFound(
                f"{ref}: the store {self._store.root} lacks blob {blob.digest} (pull the image "
                "again to fetch it)"
            )
        return lambda: _from_store(self._store, blob)

    def remaining(self, ref: Reference) -> int | None:
        return None

    async def known(self, digest: Digest) -> bytes | None:
        def read() -> bytes | None:
            try:
                return self._manifest_bytes(digest, None, str(digest))
            except PullError:
                return None

        return await asyncio.get_running_loop().run_in_executor(None, read)

    async def remember(self, found: Found) -> None:
        pass  # it is in the store already


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
        puller: Puller,
        *,
        jobs: int | None = None,
        rate_limit_reserve: int = DEFAULT_RATE_LIMIT_RESERVE,
        on_bytes: Callable[[int], None] | None = None,
        on_planned: Callable[[int], None] | None = None,
    ) -> None:
        """``puller`` gives the endpoints, verified manifest fetches, client and retries;
        ``jobs`` blobs move at once (default: ``default_jobs()``); ``on_bytes`` hears of each
        piece uploaded, and ``on_planned`` of how many images a ``copy_all`` is about to copy
        (a progress bar's total)."""
        self._puller = puller
        self._client: RegistryClient = puller.client
        self.registry_source = RegistrySource(puller)
        self.store = puller.store
        self._jobs = jobs = jobs or default_jobs()
        self._slots = asyncio.Semaphore(jobs)
        self._reserve = rate_limit_reserve
        self._on_bytes = on_bytes
        self._on_planned = on_planned
        self._placed: dict[tuple[str, Digest], str] = {}  # (target registry, blob) -> repository
        self._moving: dict[tuple[str, Digest], asyncio.Event] = {}
        self._manifest_locks: dict[tuple[str, str, Digest], asyncio.Lock] = {}
        self._manifests_placed: set[tuple[str, str, Digest]] = set()
        self._target_tags: dict[tuple[str, str], asyncio.Task[frozenset[str]]] = {}

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
    ) -> CopyResult:
        """Copy ``source`` to ``target``: every platform, or only ``platforms`` (one: the
        target's tag is its manifest; several: an index of just those, which records the
        source's digest). With
        ``missing``, a tag the target already has is left alone without asking the source.
        ``origin`` is where ``source`` is read (default: its registry). Errors become a
        "failed" result."""
        src, dst = str(source), str(target)
        try:
            return await self._copy(
                source, target, origin or self.registry_source, dry_run, platforms, missing
            )
        except PullError as e:
            return CopyResult(src, dst, "failed", error=str(e))

    async def copy_all(
        self,
        pairs: Iterable[Pair],
        *,
        each: Callable[[CopyResult], None] = lambda _: None,
        fail_fast: bool = False,
        **options: Any,
    ) -> list[CopyResult]:
        """Copy each (source, target) pair, ``jobs`` images at once (their blobs share the
        ``jobs`` transfer slots); ``each`` hears of each result as it ends, and the results
        come back in the pairs' order. A pair may carry
        its own options, over ``options`` (a sync file entry's platforms). With
        ``fail_fast``, no image starts after one has failed.

        One target tag is written once: a later pair to a tag an earlier pair writes fails
        without a request, unless both come from the same ``by`` (an option of a pair: who asks
        for it, such as a sync file entry's "the entry at FILE:LINE"; default: its source), so
        two writers cannot leave the tag to whichever ends last."""
        pending = list(pairs)
        stop = False
        writers: dict[str, str] = {}  # target tag -> its first writer's by
        if self._on_planned is not None:
            self._on_planned(len(pending))

        async def one(pair: Pair) -> CopyResult | None:
            nonlocal stop
            if stop:
                return None  # not started: an earlier image failed under fail_fast
            source, target, *own = pair
            mine = {**options, **(own[0] if own else {})}
            by = str(mine.pop("by", None) or f"the copy of {source}")
            # Claimed before the first await: pairs start in order, so the earlier pair wins.
            first = writers.setdefault(str(target), by) if target.tag is not None else by
            if first != by:
                result = CopyResult(
                    str(source),
                    str(target),
                    "failed",
                    error=f"tag {target.tag} is written by {first} in this run already: one"
                    " writer per tag",
                )
            else:
                result = await self.copy(source, target, **mine)
            each(result)
            if fail_fast and result.status == "failed":
                stop = True
            return result

        return [r for r in await _each(self._jobs, pending, one) if r is not None]

    async def tags_of(self, source: Reference) -> list[str]:
        """Every tag of ``source``'s repository, following the registry's ``Link`` pages (the
        listing pulls use too: ``Puller.tags``)."""
        return await self._puller.tags(source)

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
        self, source: Reference, target: Reference, select: Callable[[str], bool] = lambda _: True
    ) -> tuple[list[Pair], list[CopyResult]]:
        """A (source, target) pair for each tag of ``source``'s repository that ``select``
        takes, and a "failed" result for each listed tag that is not a valid tag name."""
        pairs: list[Pair] = []
        failed: list[CopyResult] = []
        for tag in await self.tags_of(source):
            if not valid_tag(tag):
                name = f"{source.name}:{shown(tag, 80)}"
                failed.append(CopyResult(name, str(target), "failed", error="not a valid tag name"))
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
    ) -> CopyResult:
        src, dst = str(source), str(target)
        to = self._puller.server(target)  # the target registry's own server, never a mirror
        if missing and target.tag is not None and target.tag in await self._tags_at(to, target):
            return CopyResult(src, dst, "up-to-date")
        there = await self._head(to, target)
        if there is not None:
            here = await origin.head(source)
            if here is not None and here == there:
                return CopyResult(src, dst, "up-to-date", str(there))
            if here is not None and len(platforms) == 1:
                if await _platform_of(origin, here, platforms[0]) == there:
                    return CopyResult(src, dst, "up-to-date", str(there))
            elif here is not None and platforms and await self._made_from(to, target) == here:
                return CopyResult(src, dst, "up-to-date", str(there))
        # Only now does the copy cost quota (manifest GETs at the source): the HEADs above cost
        # none, so an image already in sync is up to date however little is left.
        left = origin.remaining(source)
        if left is not None and left < self._reserve:
            return CopyResult(
                src,
                dst,
                "deferred",
                error=f"{left} pulls left at the source (rate_limit_reserve {self._reserve})",
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
        children = await _each(self._jobs, plan.children, lambda d: origin.child(found, source, d))
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
        await _each(self._jobs, list(blobs.values()), lambda blob: self._blob(job, blob))
        tally = job.tally
        await _each(
            self._jobs,
            list(zip(plan.children, children, strict=True)),
            lambda child: self._put(to, target.path, str(child[0].digest), *child[1]),
        )
        await self._put(to, target.path, target.identifier, plan.raw, plan.media_type)
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

    async def _put(
        self, to: Endpoint, path: str, reference: str, raw: bytes, media_type: str
    ) -> None:
        """PUT a manifest, one PUT of the same bytes into a repository at a time: two tags of
        one image copied at once write the same children, and the distribution registry
        answers concurrent writes of one manifest with DIGEST_INVALID. A child already
        placed by this run is not sent again."""
        key = (to.url, path, digest_of(raw))
        by_digest = reference == str(key[2])
        async with self._manifest_locks.setdefault(key, asyncio.Lock()):
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
        key = (job.to.url, blob.digest)
        while (moving := self._moving.get(key)) is not None:
            await moving.wait()  # another image is moving it: then a HEAD or mount does
        done = self._moving[key] = asyncio.Event()
        try:
            async with self._slots:
                await self._move(job, blob)
        finally:
            del self._moving[key]
            done.set()

    async def _move(self, job: _Job, blob: Descriptor) -> None:
        to, path, tally = job.to, job.target.path, job.tally
        key = (to.url, blob.digest)
        if await self._target_has(to, path, blob.digest):
            tally.existing += 1
            self._placed.setdefault(key, path)
            return
        elsewhere = self._placed.get(key)
        origin = job.found.origin
        if elsewhere is None and isinstance(origin, Endpoint) and origin.url == to.url:
            elsewhere = job.source.path  # the same registry: the source repository has it
        content = job.origin.content(job.found, job.source, blob)
        if self._on_bytes is not None:
            content = _counted(content, self._on_bytes)
        mib = self._puller.registry(job.target.domain).upload_chunk_mib
        how = await self._retried(
            lambda: self._client.upload_blob(
                to,
                path,
                blob.digest,
                blob.size,
                content,
                mount_from=elsewhere,
                chunk_size=mib << 20 if mib else None,
            )
        )
        self._placed[key] = path
        if how == "mounted":
            tally.mounted += 1
        else:
            tally.uploaded += 1
            tally.bytes_uploaded += blob.size

    async def _target_has(self, to: Endpoint, path: str, digest: Digest) -> bool:
        """Whether the target's repository holds the blob, by HEAD. A 5xx that outlasts the
        retries counts as "no": distribution, after a full disk, leaves empty link files and
        answers 500 to a HEAD of those blobs for good, and only an upload mends them (its
        closing PUT's digest check still guards the bytes). Other refusals keep their meaning."""
        scope = push_scope(path)
        try:
            return await self._retried(
                lambda: self._client.blob_exists(to, path, digest, scope=scope)
            )
        except RegistryError as e:
            if e.status is not None and 500 <= e.status <= 599:
                return False
            raise

    async def _retried(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await _retried(self._puller, operation)


def _plan(found: Found, platforms: Sequence[Platform], where: str) -> _Plan:
    """The manifests to write: the source's as they are; for one platform, its manifest; for
    several, an index of only those that records the source index's digest
    (``SOURCE_DIGEST_ANNOTATION``)."""
    parsed = found.parsed
    if isinstance(parsed, Manifest):  # one platform already: copied as it is
        return _Plan(found.digest, found.raw, found.media_type)
    if not platforms:
        return _Plan(found.digest, found.raw, found.media_type, list(parsed.manifests))
    if len(platforms) == 1:
        desc = select_platform(parsed, platforms[0], where)
        return _Plan(desc.digest, b"", desc.media_type, single=desc)
    chosen = [
        d
        for d in parsed.manifests
        if d.platform is not None and any(d.platform.matches(p) for p in platforms)
    ]
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


async def _retried(puller: Puller, operation: Callable[[], Awaitable[T]]) -> T:
    return await with_retries(puller.retry, operation)


async def _each(limit: int, items: Sequence[A], work: Callable[[A], Awaitable[T]]) -> list[T]:
    """``work`` on each item, at most ``limit`` at a time (a hostile manifest may name
    thousands), the results in order; the first failure cancels the rest (and is raised)."""
    results: dict[int, T] = {}
    todo = iter(enumerate(items))

    async def worker() -> None:
        for i, item in todo:
            results[i] = await work(item)

    await _all(worker() for _ in range(min(limit, len(items))))
    return [results[i] for i in range(len(items))]


async def _all(coroutines: Iterable[Awaitable[Any]]) -> None:
    """All of them at once; the first failure cancels the rest (and is raised)."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _counted(content: Content, on_bytes: Callable[[int], None]) -> Content:
    async def counted() -> AsyncIterator[Chunk]:
        async for piece in content():
            on_bytes(len(piece))
            yield piece

    return counted


async def _from_store(store: Store, blob: Descriptor) -> AsyncIterator[bytes]:
    """The blob's file, verified on the way; the last piece is held back until it has."""
    loop = asyncio.get_running_loop()
    path = store.blob_path(blob.digest)
    verifier = Verifier(blob.digest, blob.size, str(path))
    f = await loop.run_in_executor(None, store.open_blob, blob.digest)
    try:
        held: bytes | None = None
        while True:
            try:
                piece = await loop.run_in_executor(None, f.read, _READ_SIZE)
            except OSError as e:
                raise StoreError(f"cannot read {path}: {e.strerror or e}") from None
            if not piece:
                break
            verifier.update(piece)
            if held is not None:
                yield held
            held = piece
        verifier.verify()
        if held is not None:
            yield held
    finally:
        f.close()


async def _piped(
    client: RegistryClient, endpoint: Endpoint, path: str, blob: Descriptor
) -> AsyncIterator[Chunk]:
    """The blob's bytes from the source, verified on the way, without a copy or a thread hop:
    each piece is a view of the source connection's buffer, hashed on the loop and handed on;
    the buffer goes back to the source connection once the piece is sent (the wire hands a
    streamed body's piece to the kernel before it asks for the next). The last piece alone is
    copied and held back until the whole blob has verified, so a blob that does not never
    completes its upload."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[memoryview, asyncio.Future[None]] | bytes | BaseException | None]
    queue = asyncio.Queue()
    verifier = Verifier(blob.digest, blob.size, endpoint.url)
    holding: list[asyncio.Future[None]] = []

    def write(view: memoryview) -> asyncio.Future[None] | None:
        verifier.update(view)
        if verifier.size >= blob.size:  # the last piece (or too many bytes: verify says so)
            queue.put_nowait(bytes(view))
            return None
        sent: asyncio.Future[None] = loop.create_future()
        holding.append(sent)
        queue.put_nowait((view, sent))
        return sent

    async def produce() -> None:
        try:
            async with client.open_blob(endpoint, path, blob.digest) as body:
                await body.pour_on_loop(write)
            verifier.verify()
        except BaseException as e:
            queue.put_nowait(e)
            if not isinstance(e, Exception):
                raise
        else:
            queue.put_nowait(None)

    task = asyncio.ensure_future(produce())
    held: bytes | None = None
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                if held is not None:
                    yield held
                return
            if isinstance(item, bytes):
                held = item
                continue
            view, sent = item
            try:
                yield view
            finally:
                holding.remove(sent)
                sent.set_result(None)
    finally:
        for sent in holding:  # nobody will send these: the buffers may go
            if not sent.done():
                sent.cancel()
        task.cancel()
        await asyncio.wait({task})
