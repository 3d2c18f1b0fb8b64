"""``pull()``: reference -> manifest -> missing blobs -> store. The public Python API.

    result = await puller.pull("redis:latest", store="/var/lib/images",
                               mirrors=["http://127.0.0.1:5000"], on_event=print)

``Puller`` keeps one HTTP session and one downloader across many pulls, so layers that several
images share are fetched once, even when the pulls run concurrently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .events import (
    EventCallback,
    Finished,
    LayerComplete,
    LayerExists,
    LayerPulling,
    Resolved,
    ignore,
)
from .http.proxy import ProxyConfig
from .oci.digest import Digest, digest_of
from .oci.manifest import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    Platform,
    host_platform,
    parse_platform,
    to_oci,
)
from .oci.reference import Reference, parse
from .registry.auth import Credentials
from .registry.endpoint import Endpoint, RegistryConfig
from .session import ResolvedAll, ResolvedImage, Session
from .store.layout import RESOLVED_ANNOTATION, Store
from .tasks import blocking

if TYPE_CHECKING:
    import asyncio

DEFAULT_CONCURRENCY = 3


@dataclass(frozen=True, slots=True)
class PullResult:
    reference: Reference
    digest: Digest  # what the reference resolved to: an index for multi-platform images
    manifest_digest: Digest  # the platform's image manifest
    config: Descriptor
    layers: tuple[Descriptor, ...]
    downloaded: tuple[Digest, ...]  # blobs this pull fetched (layers and config)
    up_to_date: bool  # the store already had this reference at this digest
    endpoint: str  # base URL that served the manifest


@dataclass(frozen=True, slots=True)
class PlatformImage:
    """One platform's image of an index pulled whole."""

    platform: Platform | None  # as the index names it (None: the reference named one manifest)
    manifest_digest: Digest  # the manifest as served
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class AllPlatformsResult:
    """What ``Puller.pull_all_platforms`` stored: every platform of the image."""

    reference: Reference
    digest: Digest  # what the reference resolved to: the index as served
    stored_digest: Digest  # what index.json's entry points at (an OCI index, or the manifest)
    images: tuple[PlatformImage, ...]  # attestations (platform unknown/unknown) included
    downloaded: tuple[Digest, ...]  # blobs this pull fetched (layers and configs)
    up_to_date: bool
    endpoint: str


class Puller(Session):
    """Pulls into one store through one HTTP session; use ``async with``.

    The pull operation, and a ``Session`` itself (endpoints, credentials, verified fetches, tags):
    copies, ``inspect`` and ``tags`` take a Puller as their session (``Copier(puller)``), so one
    client, store lease and retry policy serve them all."""

    def __init__(
        self,
        store: str | os.PathLike[str] | Store | None = None,
        *,
        mirrors: Iterable[str] = (),
        mirror_only: bool = False,
        upstreams: Mapping[str, str] | None = None,
        registries: Mapping[str, RegistryConfig] | None = None,
        credentials: Mapping[str, Credentials] | None = None,
        credential_lookup: Callable[[str], Credentials | None] | None = None,
        max_concurrent_downloads: int = DEFAULT_CONCURRENCY,
        timeout: float = 30.0,
        durable: bool = True,
        max_download_attempts: int = 5,
        retry_delay: float = 1.0,
        proxies: Callable[[str | None], ProxyConfig] | None = None,
    ) -> None:
        """The session's options (``Session``), and for the downloads: at most
        ``max_concurrent_downloads`` layers at once, ``durable`` (each blob on disk before it
        is renamed into the store)."""
        super().__init__(
            store,
            mirrors=mirrors,
            mirror_only=mirror_only,
            upstreams=upstreams,
            registries=registries,
            credentials=credentials,
            credential_lookup=credential_lookup,
            timeout=timeout,
            max_download_attempts=max_download_attempts,
            retry_delay=retry_delay,
            proxies=proxies,
        )
        from .download import Downloader  # here: ``import puller`` loads no HTTP client

        self._downloader = Downloader(
            self.client,
            self.store,
            max_concurrent=max_concurrent_downloads,
            durable=durable,
            retry=self.retry,
        )

    # -- pull ------------------------------------------------------------------------------------

    async def pull(
        self,
        reference: str | Reference,
        *,
        platform: str | Platform | None = None,
        on_event: EventCallback = ignore,
    ) -> PullResult:
        """One platform of the image (default: linux/<this machine>); index.json's entry
        points at its manifest in OCI form."""
        ref = reference if isinstance(reference, Reference) else parse(reference)
        if isinstance(platform, str):
            platform = parse_platform(platform)
        want = platform or host_platform()
        return await self._pull_resolved(ref, await self.resolve(ref, want, on_event), on_event)

    async def pull_all_platforms(
        self, reference: str | Reference, *, on_event: EventCallback = ignore
    ) -> AllPlatformsResult:
        """Every platform of the image, as ``skopeo copy --all`` stores it: the index and
        each child with its config and layers (a layer two platforms share is fetched once).

        index.json's entry points at an OCI index whose children are each platform's manifest
        in OCI form (a Docker child converted, an OCI one unchanged), each keeping its
        platform; when nothing needed converting, at the served index itself. Attestations
        (platform ``unknown/unknown``) are pulled too, as skopeo does. A reference that names
        one manifest is stored as ``pull`` stores it."""
        ref = reference if isinstance(reference, Reference) else parse(reference)
        found = await self.resolve_all(ref, on_event)
        if isinstance(found.parsed, Manifest):
            return await self._pull_single(ref, found, found.parsed, on_event)
        children = found.children
        # by digest: two children may name one layer under a Docker and an OCI media type
        layers = _unique(d for c in children for d in c.manifest.layers)
        self._announce(ref, found.digest, found.endpoint, layers, on_event)
        missing = self._missing(layers, on_event)
        downloaded = await self._fetch_blobs(
            ref,
            _unique(c.manifest.config for c in children),
            layers,
            missing,
            self._blob_endpoints(ref, found.failed),
            on_event,
        )
        raws, top = _stored_index(found)
        noted = self._note(found.endpoint, ref, (*(c.manifest.config for c in children), *layers))
        up_to_date = await self._record(ref, raws, top, found.digest, found.endpoint, downloaded)
        await noted
        on_event(Finished(ref, found.digest, up_to_date, tuple(downloaded)))
        images = tuple(
            PlatformImage(
                c.descriptor.platform,
                c.descriptor.digest,
                c.manifest.config,
                c.manifest.layers,
            )
            for c in children
        )
        return AllPlatformsResult(
            ref,
            found.digest,
            top.digest,
            images,
            tuple(downloaded),
            up_to_date,
            found.endpoint.url,
        )

    async def _pull_single(
        self, ref: Reference, found: ResolvedAll, manifest: Manifest, on_event: EventCallback
    ) -> AllPlatformsResult:
        """``pull_all_platforms`` of a reference that names one manifest: stored as ``pull``
        stores it."""
        one = ResolvedImage(
            found.digest,
            found.digest,
            manifest,
            ((found.digest, found.raw),),
            None,
            found.endpoint,
            found.failed,
        )
        single = await self._pull_resolved(ref, one, on_event)
        return AllPlatformsResult(
            ref,
            single.digest,
            _stored_form(manifest, found.digest, found.raw)[0],
            (PlatformImage(None, found.digest, single.config, single.layers),),
            single.downloaded,
            single.up_to_date,
            single.endpoint,
        )

    async def _pull_resolved(
        self, ref: Reference, resolved: ResolvedImage, on_event: EventCallback
    ) -> PullResult:
        """Fetch what one platform's image lacks, store its manifests, point the name at it."""
        manifest = resolved.manifest
        layers = manifest.layers
        self._announce(ref, resolved.digest, resolved.endpoint, layers, on_event)
        missing = self._missing(layers, on_event)
        downloaded = await self._fetch_blobs(
            ref,
            (manifest.config,),
            layers,
            missing,
            self._blob_endpoints(ref, resolved.failed),
            on_event,
        )
        raws = list(resolved.raws)
        # What index.json points at: the manifest as served, or its OCI form for a Docker one.
        stored_digest, stored_raw = _stored_form(
            manifest, resolved.manifest_digest, resolved.raws[0][1]
        )
        if stored_digest != resolved.manifest_digest:
            raws.append((stored_digest, stored_raw))
        entry = Descriptor(
            OCI_MANIFEST if stored_digest != resolved.manifest_digest else manifest.media_type,
            stored_digest,
            len(stored_raw),
            resolved.platform,
        )
        noted = self._note(resolved.endpoint, ref, (manifest.config, *layers))
        up_to_date = await self._record(
            ref, raws, entry, resolved.digest, resolved.endpoint, downloaded
        )
        await noted
        on_event(Finished(ref, resolved.digest, up_to_date, tuple(downloaded)))
        return PullResult(
            ref,
            resolved.digest,
            resolved.manifest_digest,
            manifest.config,
            layers,
            tuple(downloaded),
            up_to_date,
            resolved.endpoint.url,
        )

    def _announce(
        self,
        ref: Reference,
        digest: Digest,
        endpoint: Endpoint,
        layers: Sequence[Descriptor],
        on_event: EventCallback,
    ) -> None:
        first = self.endpoints(ref, resolve=ref.digest is None)[0].url  # resolving checked
        on_event(
            Resolved(
                ref,
                digest,
                endpoint.url,
                tuple(d.digest for d in layers),
                first if first != endpoint.url else "",
                tuple(d.size for d in layers),
            )
        )

    def _note(
        self, endpoint: Endpoint, ref: Reference, blobs: Iterable[Descriptor]
    ) -> asyncio.Future[None]:
        """Record, beside the index's update, where the image's blobs live (``store/blobinfo.py``):
        a later copy or push to that registry mounts them from there."""
        import asyncio

        from .store.blobinfo import blob_info

        entries = [(d.digest, ref.path) for d in blobs]
        info = blob_info(self.store)
        return asyncio.get_running_loop().run_in_executor(None, info.seen, endpoint.url, entries)

    def _blob_endpoints(self, ref: Reference, failed: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
        """Mirrors first (a pull-only mirror was never asked for the manifest), and endpoints
        that already failed us last."""
        every = self.endpoints(ref)
        return tuple(e for e in every if e not in failed) + tuple(e for e in every if e in failed)

    def _missing(
        self, layers: Sequence[Descriptor], on_event: EventCallback
    ) -> dict[Digest, Descriptor]:
        """The layers the store lacks, each reported once: "exists" or "pulling"."""
        missing: dict[Digest, Descriptor] = {}
        for d in layers:
            if self.store.has(d.digest) and d.digest not in missing:
                on_event(LayerExists(d.digest))
            elif d.digest not in missing:
                missing[d.digest] = d
                on_event(LayerPulling(d.digest))
        return missing

    async def _record(
        self,
        ref: Reference,
        raws: Sequence[tuple[Digest, bytes]],
        entry: Descriptor,
        resolved: Digest,
        endpoint: Endpoint,
        downloaded: Sequence[Digest],
    ) -> bool:
        """Store the manifests, then point the name at ``entry`` (annotated with the digest the
        reference resolved to when that differs); True if the name already pointed there and
        nothing was downloaded, a manifest included (one removed by ``verify --repair`` or by
        hand is stored again, and that is no "up to date")."""
        import asyncio

        loop = asyncio.get_running_loop()
        name = str(ref)
        previous = await loop.run_in_executor(None, self.store.lookup, name)
        manifests = dict(raws)
        had = await loop.run_in_executor(None, lambda: all(map(self.store.has, manifests)))
        for mdigest, raw in manifests.items():
            await loop.run_in_executor(None, self.store.put_bytes, mdigest, raw, endpoint.url)
        if resolved != entry.digest:
            entry = replace(entry, annotations={RESOLVED_ANNOTATION: str(resolved)})
        up_to_date = (
            not downloaded
            and had
            and previous is not None
            and previous.digest == entry.digest
            and previous.annotations.get(RESOLVED_ANNOTATION, str(previous.digest)) == str(resolved)
        )
        await loop.run_in_executor(None, self.store.tag, name, entry)
        return up_to_date

    async def _fetch_blobs(
        self,
        ref: Reference,
        configs: Sequence[Descriptor],
        layers: Sequence[Descriptor],
        missing: Mapping[Digest, Descriptor],
        endpoints: Sequence[Endpoint],
        on_event: EventCallback,
    ) -> list[Digest]:
        """Download configs and missing layers concurrently; report ``Pull complete`` in
        ``layers``' order (bottom first), as each layer and all before it are in the store. The
        first failure cancels the rest."""
        import asyncio

        started: dict[Digest, asyncio.Task[bool]] = {}
        # Largest first: they take the download slots in the order they start, and the pull
        # lasts at least as long as its largest layer, so that one must not start last.
        for digest, desc in sorted(missing.items(), key=lambda item: -item[1].size):
            started[digest] = asyncio.ensure_future(
                self._downloader.fetch(desc, ref.path, endpoints, on_event)
            )
        tasks = {digest: started[digest] for digest in missing}
        for config in configs:
            if config.digest not in tasks:
                tasks[config.digest] = asyncio.ensure_future(
                    self._downloader.fetch(config, ref.path, endpoints, limited=False)
                )

        order = list(dict.fromkeys(d.digest for d in layers if d.digest in missing))
        reported = 0

        def report(_: object = None) -> None:
            nonlocal reported
            while reported < len(order):
                t = tasks[order[reported]]
                if not t.done() or t.cancelled() or t.exception() is not None:
                    return
                on_event(LayerComplete(order[reported]))
                reported += 1

        for digest in order:
            tasks[digest].add_done_callback(report)
        try:
            await asyncio.gather(*tasks.values())
        except BaseException:
            for t in tasks.values():
                t.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            raise
        report()
        return [d for d, t in tasks.items() if t.result()]


def _unique(descriptors: Iterable[Descriptor]) -> tuple[Descriptor, ...]:
    """The first descriptor of each digest, in order."""
    first: dict[Digest, Descriptor] = {}
    for d in descriptors:
        first.setdefault(d.digest, d)
    return tuple(first.values())


def _stored_form(manifest: Manifest, digest: Digest, raw: bytes) -> tuple[Digest, bytes]:
    """The manifest as the store records it: as served, or its OCI form for a Docker one
    (skopeo and umoci read only OCI manifests from a layout)."""
    if manifest.media_type != DOCKER_MANIFEST:
        return digest, raw
    _, oci_raw = to_oci(manifest)
    return digest_of(oci_raw), oci_raw


def _stored_index(found: ResolvedAll) -> tuple[list[tuple[Digest, bytes]], Descriptor]:
    """The manifests an index pulled whole stores (the index and each child as served, and
    each child's OCI form when it differs), and what index.json's entry points at: an OCI index
    of the children in OCI form, each with its platform and annotations as served; the served
    index itself when nothing needed converting."""
    raws: list[tuple[Digest, bytes]] = [(found.digest, found.raw)]
    entries: list[dict[str, Any]] = []
    served = json.loads(found.raw)["manifests"]  # parse_manifest read it: a list
    converted = found.parsed.media_type != OCI_INDEX
    for child in found.children:
        raws.append((child.descriptor.digest, child.raw))
        digest, raw = _stored_form(child.manifest, child.descriptor.digest, child.raw)
        if digest != child.descriptor.digest:
            raws.append((digest, raw))
            converted = True
        entry: dict[str, Any] = {
            "mediaType": OCI_MANIFEST,
            "digest": str(digest),
            "size": len(raw),
        }
        source = served[child.position]
        for key in ("platform", "annotations"):  # as served: os.version, os.features too
            if isinstance(source.get(key), dict):
                entry[key] = source[key]
        entries.append(entry)
    top_digest, top_raw = found.digest, found.raw
    if converted:
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX}
        doc["manifests"] = entries
        top_raw = json.dumps(doc, separators=(",", ":")).encode()
        top_digest = digest_of(top_raw)
        raws.append((top_digest, top_raw))
    return raws, Descriptor(OCI_INDEX, top_digest, len(top_raw))


async def pull(
    reference: str | Reference,
    *,
    store: str | os.PathLike[str] | Store | None = None,
    mirrors: Iterable[str] = (),
    mirror_only: bool = False,
    upstreams: Mapping[str, str] | None = None,
    platform: str | Platform | None = None,
    credentials: Mapping[str, Credentials] | None = None,
    max_concurrent_downloads: int = DEFAULT_CONCURRENCY,
    timeout: float = 30.0,
    max_download_attempts: int = 5,
    retry_delay: float = 1.0,
    on_event: EventCallback = ignore,
) -> PullResult:
    """Pull one image into ``store`` (default: ``$PYPULL_STORE`` or ``~/.local/share/pypull``)."""
    async with Puller(
        store,
        mirrors=mirrors,
        mirror_only=mirror_only,
        upstreams=upstreams,
        credentials=credentials,
        max_concurrent_downloads=max_concurrent_downloads,
        timeout=timeout,
        max_download_attempts=max_download_attempts,
        retry_delay=retry_delay,
    ) as puller:
        return await puller.pull(reference, platform=platform, on_event=on_event)


#: ``pull`` for code that is not async: ``puller.pull_sync("redis:7", store="./store")``.
pull_sync = blocking(pull, "pull_sync")
