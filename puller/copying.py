"""Copying an image from one registry to another, byte for byte: the index and every child keep
their digests. The order is go-containerregistry's ``remote.Write``: blobs, then child manifests
by digest, then the tag, so a target tag never points at content the target does not hold.

A copy is a pull whose sink is a registry upload: the source side goes through the configured
mirrors and credentials (``Puller``), blobs stream from the source to the target hashed on the
way (bounded memory, no local copy), and a blob that does not verify fails before the upload
completes. Nothing is written when both sides already agree, and that is found out by HEADs:
a registry that counts pulls (Docker Hub) does not count them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .auth import push_scope
from .digest import Digest, Verifier
from .errors import ManifestError, NotFound, PullError
from .manifest import Descriptor, Index, Manifest, parse_manifest
from .reference import Reference, valid_tag
from .registry import Endpoint, ManifestHead, RegistryClient, try_in_turn
from .retry import with_retries
from .text import shown

if TYPE_CHECKING:
    from .pulling import Puller

T = TypeVar("T")

#: Pieces of a blob in flight between its download and its upload (1 MiB each).
PIPE_DEPTH = 4
#: What a copy can come to, in the order a summary lists them.
STATUSES = ("copied", "up-to-date", "would-copy", "failed")


@dataclass(frozen=True, slots=True)
class CopyResult:
    """What one copy did: ``status`` is "copied", "up-to-date", "would-copy" or "failed"."""

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


@dataclass
class _Tally:
    uploaded: int = 0
    mounted: int = 0
    existing: int = 0
    bytes_uploaded: int = 0


class Copier:
    """Copies images with one client: a blob placed in, or found in, a repository of a target
    registry is mounted from there into the next repository that needs it, not sent again."""

    def __init__(self, puller: Puller) -> None:
        """``puller`` gives the endpoints, verified manifest fetches, client and retries."""
        self._puller = puller
        self._client: RegistryClient = puller.client
        self._placed: dict[tuple[str, Digest], str] = {}  # (target registry, blob) -> repository

    async def copy(
        self, source: Reference, target: Reference, *, dry_run: bool = False
    ) -> CopyResult:
        """Copy ``source`` to ``target`` (every platform); errors become a "failed" result."""
        src, dst = str(source), str(target)
        try:
            return await self._copy(source, target, dry_run)
        except PullError as e:
            return CopyResult(src, dst, "failed", error=str(e))

    async def copy_tags(
        self,
        source: Reference,
        target: Reference,
        *,
        dry_run: bool = False,
        each: Callable[[CopyResult], None] = lambda _: None,
    ) -> list[CopyResult]:
        """Every tag of ``source``'s repository into ``target``'s, one after the other (a blob
        the first image placed is mounted into the others); ``each`` hears of each result as
        it comes. The tag listing follows the registry's ``Link`` pages."""
        endpoints = self._puller.endpoints(source, resolve=True)
        tags: list[str] = await self._retried(
            lambda: try_in_turn(endpoints, lambda e: self._client.list_tags(e, source.path))
        )
        results = []
        for tag in tags:
            src = dataclasses.replace(source, tag=tag, digest=None)
            dst = dataclasses.replace(target, tag=tag, digest=None)
            if valid_tag(tag):
                result = await self.copy(src, dst, dry_run=dry_run)
            else:
                name = f"{source.name}:{shown(tag, 80)}"
                result = CopyResult(name, str(target), "failed", error="not a valid tag name")
            each(result)
            results.append(result)
        return results

    async def _copy(self, source: Reference, target: Reference, dry_run: bool) -> CopyResult:
        src, dst = str(source), str(target)
        puller = self._puller
        to = puller.server(target)  # the target registry's own server, never a mirror
        sources = puller.endpoints(source, resolve=source.digest is None)
        there = await self._head(to, target)
        if there is not None:
            here = await self._retried(
                lambda: try_in_turn(sources, lambda e: self._client.head_manifest(e, source))
            )
            if here is not None and here.digest == there.digest:
                return CopyResult(src, dst, "up-to-date", str(there.digest))
        endpoint, digest, raw, media_type, parsed = await self._retried(
            lambda: try_in_turn(sources, lambda e: self._manifest_at(e, source))
        )
        if there is not None and there.digest == digest:
            return CopyResult(src, dst, "up-to-date", str(digest))
        if dry_run:
            return CopyResult(src, dst, "would-copy", str(digest))
        children: list[tuple[Descriptor, bytes, str]] = []
        manifests: list[Manifest] = []
        if isinstance(parsed, Index):
            for desc in parsed.manifests:
                child_ref = dataclasses.replace(source, tag=None, digest=desc.digest)
                _, child = await self._retried(
                    functools.partial(puller._fetch_verified, endpoint, child_ref, desc)
                )
                manifest = parse_manifest(
                    child.raw, child.content_type, f"{source} ({desc.digest})"
                )
                if isinstance(manifest, Index):
                    raise ManifestError(f"{source} nests an index in an index: not supported")
                children.append((desc, child.raw, child.content_type or desc.media_type))
                manifests.append(manifest)
        else:
            manifests.append(parsed)
        tally = _Tally()
        seen: set[Digest] = set()
        for manifest in manifests:
            for blob in (manifest.config, *manifest.layers):
                if blob.digest not in seen:
                    seen.add(blob.digest)
                    await self._blob(endpoint, source, to, target, blob, tally)
        put = self._client.put_manifest
        for desc, child_raw, child_type in children:
            await self._retried(
                functools.partial(put, to, target.path, str(desc.digest), child_raw, child_type)
            )
        await self._retried(
            lambda: self._client.put_manifest(to, target.path, target.identifier, raw, media_type)
        )
        return CopyResult(
            src,
            dst,
            "copied",
            str(digest),
            tally.uploaded,
            tally.mounted,
            tally.existing,
            tally.bytes_uploaded,
        )

    async def _head(self, endpoint: Endpoint, ref: Reference) -> ManifestHead | None:
        try:
            return await self._retried(
                lambda: self._client.head_manifest(endpoint, ref, scope=push_scope(ref.path))
            )
        except NotFound:
            return None

    async def _manifest_at(
        self, endpoint: Endpoint, ref: Reference
    ) -> tuple[Endpoint, Digest, bytes, str, Manifest | Index]:
        digest, resp = await self._puller._fetch_verified(endpoint, ref)
        parsed = parse_manifest(resp.raw, resp.content_type, str(ref))
        media_type = resp.content_type or parsed.media_type
        return endpoint, digest, resp.raw, media_type, parsed

    async def _blob(
        self,
        source_endpoint: Endpoint,
        source: Reference,
        to: Endpoint,
        target: Reference,
        blob: Descriptor,
        tally: _Tally,
    ) -> None:
        key = (to.url, blob.digest)
        scope = push_scope(target.path)
        if await self._retried(
            lambda: self._client.blob_exists(to, target.path, blob.digest, scope=scope)
        ):
            tally.existing += 1
            self._placed.setdefault(key, target.path)
            return
        elsewhere = self._placed.get(key)

        def content() -> AsyncIterator[bytes]:
            return _piped(self._client, source_endpoint, source.path, blob)

        how = await self._retried(
            lambda: self._client.upload_blob(
                to, target.path, blob.digest, blob.size, content, mount_from=elsewhere
            )
        )
        self._placed[key] = target.path
        if how == "mounted":
            tally.mounted += 1
        else:
            tally.uploaded += 1
            tally.bytes_uploaded += blob.size

    async def _retried(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await with_retries(self._puller.retry, operation)


async def _piped(
    client: RegistryClient, endpoint: Endpoint, path: str, blob: Descriptor
) -> AsyncIterator[bytes]:
    """The blob's bytes from the source, verified on the way. The last piece is held back
    until the whole blob has verified, so a blob that does not never completes its upload."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(PIPE_DEPTH)
    verifier = Verifier(blob.digest, blob.size, endpoint.url)
    stopped = False

    def write(view: memoryview) -> None:  # in a worker thread
        if stopped:
            raise asyncio.CancelledError
        data = bytes(view)
        verifier.update(data)
        asyncio.run_coroutine_threadsafe(queue.put(data), loop).result()

    async def produce() -> None:
        try:
            async with client.open_blob(endpoint, path, blob.digest) as body:
                await body.pour(write, _ignore)
            verifier.verify()
        except BaseException as e:
            await queue.put(e)
            if not isinstance(e, Exception):
                raise
        else:
            await queue.put(None)

    task = asyncio.ensure_future(produce())
    held: bytes | None = None
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if held is not None:
                yield held
            if item is None:
                return
            held = item
    finally:
        stopped = True
        task.cancel()
        while not task.done():  # let a writer blocked on a full queue go
            while not queue.empty():
                queue.get_nowait()
            await asyncio.wait({task}, timeout=0.05)


def _ignore(_: int) -> None:
    pass
