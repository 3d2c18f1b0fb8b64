"""``pull()``: reference -> manifest -> missing blobs -> store. The public Python API.

    result = await puller.pull("redis:latest", store="/var/lib/images",
                               mirrors=["http://127.0.0.1:5000"], on_event=print)

``Puller`` keeps one HTTP session and one downloader across many pulls, so layers that several
images share are fetched once, even when the pulls run concurrently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from .config import RegistryConfig
from .download import Downloader
from .errors import (
    InvalidDigest,
    ManifestError,
    PlatformNotFound,
    PullError,
    RegistryError,
    StoreError,
)
from .events import (
    EventCallback,
    Finished,
    LayerComplete,
    LayerExists,
    LayerPulling,
    Resolved,
    Retrying,
    ignore,
)
from .http.client import ProxyFor
from .http.proxy import ProxyConfig
from .oci.digest import Digest, digest_of, parse_digest, verify_bytes
from .oci.manifest import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    Platform,
    host_platform,
    parse_manifest,
    parse_platform,
    select_platform,
    to_oci,
)
from .oci.reference import Reference, parse
from .registry.auth import Credentials
from .registry.client import ManifestResponse, RegistryClient
from .registry.credentials import CredentialError
from .registry.endpoint import Endpoint, endpoint_for_domain, normalize_mirror, try_in_turn
from .registry.retry import RetryPolicy, with_retries
from .store.layout import RESOLVED_ANNOTATION, Store, as_store

DEFAULT_CONCURRENCY = 3
#: Child manifests of one index held in memory at once, in bytes (their descriptors' sizes), as
#: copies bound them: a hostile index may name thousands.
MAX_CHILDREN_BYTES = 64 << 20
#: Child manifests of one index fetched at once.
CHILD_FETCHES = 4

R = TypeVar("R")


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


@dataclass(frozen=True, slots=True)
class _Child:
    """A child manifest of an index pulled whole: its place in the served index, its descriptor
    there, and its bytes as served."""

    position: int
    descriptor: Descriptor
    raw: bytes
    manifest: Manifest


@dataclass(frozen=True, slots=True)
class _ResolvedAll:
    digest: Digest
    raw: bytes
    parsed: Manifest | Index
    children: tuple[_Child, ...]  # empty when ``parsed`` is a Manifest
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class _Resolved:
    digest: Digest
    manifest_digest: Digest
    manifest: Manifest
    raws: tuple[tuple[Digest, bytes], ...]  # manifests to store: (digest, raw bytes)
    platform: Platform | None
    endpoint: Endpoint
    failed: tuple[Endpoint, ...] = ()  # endpoints that could not resolve the reference


class Puller:
    """Pulls into one store through one HTTP session; use ``async with``."""

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
        """``registries`` (from ``puller.config``) gives each registry name its mirrors and
        server; ``mirrors`` and ``upstreams`` are shorthands for Docker Hub's mirrors and for a
        registry's server URL. ``credentials`` (by registry name) win over
        ``credential_lookup`` (e.g. docker's config.json); both go only to the endpoint that
        registry name is for, never to a mirror of it."""
        self.store = as_store(store)
        self._registries = dict(registries or {})
        if mirrors:
            hub = self._registries.get("docker.io", RegistryConfig("docker.io"))
            hub_mirrors = tuple(normalize_mirror(m) for m in mirrors)
            self._registries["docker.io"] = replace(hub, mirrors=hub_mirrors)
        for name, url in (upstreams or {}).items():
            old = self._registries.get(name, RegistryConfig(name))
            server = Endpoint(url.rstrip("/"), registry=name)
            self._registries[name] = replace(old, server=server)
        if mirror_only and not any(r.mirrors for r in self._registries.values()):
            raise ValueError("mirror_only needs at least one mirror")
        self._mirror_only = mirror_only
        if proxies is None:
            from_env = ProxyConfig.from_env(os.environ)

            def proxies(_: str | None) -> ProxyConfig:
                return from_env

        self._proxies = proxies
        self._client = RegistryClient(
            credentials=credentials,
            lookup=credential_lookup,
            timeout=timeout,
            proxies=self._proxy_rule,
        )
        self._retry = RetryPolicy(attempts=max_download_attempts, base_delay=retry_delay)
        self._lease: AbstractContextManager[None] | None = None
        self._downloader = Downloader(
            self._client,
            self.store,
            max_concurrent=max_concurrent_downloads,
            durable=durable,
            retry=self._retry,
        )

    async def __aenter__(self) -> Puller:
        # What these pulls find in the store or put there stays, whatever a prune in another
        # process decides, until they are over (``Store.lease``).
        self._lease = self.store.lease()
        self._lease.__enter__()
        return self

    @property
    def client(self) -> RegistryClient:
        """The one registry client of these pulls (copies use it too)."""
        return self._client

    @property
    def retry(self) -> RetryPolicy:
        return self._retry

    def _proxy_rule(self, endpoint: Endpoint) -> ProxyFor:
        """The proxy rule of the registry an endpoint serves: its own server, or a mirror
        configured under it."""
        name = endpoint.registry
        if name is None:
            name = next((r.name for r in self._registries.values() if endpoint in r.mirrors), None)
        return self._proxies(name).for_url

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._client.close()
        finally:
            lease, self._lease = self._lease, None
            if lease is not None:
                lease.__exit__(None, None, None)

    def registry(self, domain: str) -> RegistryConfig:
        """How ``domain`` is configured (its defaults when it is not)."""
        return self._registries.get(domain, RegistryConfig(domain))

    def server(self, ref: Reference) -> Endpoint:
        """The registry's own server, never a mirror: where logins and copies write."""
        reg = self._registries.get(ref.domain, RegistryConfig(ref.domain))
        server = reg.server or endpoint_for_domain(ref.domain)
        if server.registry is None:
            server = dataclasses.replace(server, registry=ref.domain)
        return server

    def endpoints(self, ref: Reference, resolve: bool = False) -> tuple[Endpoint, ...]:
        """Where to ask, in order: the registry's mirrors, then its own server (unless
        ``mirror_only``). With ``resolve``, only endpoints that may be asked what a tag is."""
        reg = self._registries.get(ref.domain, RegistryConfig(ref.domain))
        server = self.server(ref)
        mirrors = tuple(m for m in reg.mirrors if m.can_resolve or not resolve)
        if self._mirror_only and reg.mirrors:
            return mirrors
        return (*mirrors, server)

    # -- manifest resolution -----------------------------------------------------------------------

    async def _fetch_verified(
        self, endpoint: Endpoint, ref: Reference, expected: Descriptor | None = None
    ) -> tuple[Digest, ManifestResponse]:
        resp = await self._client.get_manifest(endpoint, ref)
        where = f"{endpoint.url} ({ref})"
        if ref.digest is not None:
            verify_bytes(resp.raw, ref.digest, expected.size if expected else None, where)
            return ref.digest, resp
        if resp.digest:
            try:
                claimed = parse_digest(resp.digest)
            except InvalidDigest as e:
                raise ManifestError(
                    f"{endpoint.url} sent an invalid Docker-Content-Digest for {ref}: {e}"
                ) from None
            verify_bytes(resp.raw, claimed, None, where)
        return digest_of(resp.raw), resp

    async def _stored_manifest(
        self, digest: Digest, content_type: str | None, url: str
    ) -> ManifestResponse | None:
        """The manifest ``digest`` from the store, if it is there, small and verifies (a file
        in the store may have been written by someone else)."""
        loop = asyncio.get_running_loop()

        def read() -> bytes | None:
            if not self.store.has(digest):
                return None
            try:
                return self.store.read_manifest(digest)
            except (OSError, PullError):
                return None

        raw = await loop.run_in_executor(None, read)
        return None if raw is None else ManifestResponse(raw, content_type, str(digest), url)

    async def _head_first(self, endpoint: Endpoint, ref: Reference) -> ManifestResponse | None:
        """A re-pull of a tag asks what it points at by HEAD (Docker Hub counts a GET of a
        manifest as a pull, a HEAD not) and takes the manifest from the store when it holds
        it; None: GET it as usual."""
        if ref.digest is not None:
            return None
        try:
            known = await asyncio.get_running_loop().run_in_executor(
                None, self.store.lookup, str(ref)
            )
        except StoreError:
            return None  # no store yet, or an unreadable one: the pull says so when it writes
        if known is None:
            return None
        head = await self._client.head_manifest(endpoint, ref)
        if head is None:
            return None
        return await self._stored_manifest(head.digest, head.media_type, endpoint.url)

    async def _top(
        self, endpoint: Endpoint, ref: Reference
    ) -> tuple[Digest, ManifestResponse, Manifest | Index, bool]:
        """What the reference names, parsed: from the store when a HEAD says it holds it (the
        last item says so), else fetched and verified."""
        stored = await self._head_first(endpoint, ref)
        if stored is not None:
            digest, resp = parse_digest(stored.digest or ""), stored
        else:
            digest, resp = await self._fetch_verified(endpoint, ref)
        return (
            digest,
            resp,
            parse_manifest(resp.raw, resp.content_type, str(ref)),
            stored is not None,
        )

    async def _resolve_at(self, endpoint: Endpoint, ref: Reference, want: Platform) -> _Resolved:
        digest, resp, parsed, from_store = await self._top(endpoint, ref)
        if isinstance(parsed, Manifest):
            return _Resolved(digest, digest, parsed, ((digest, resp.raw),), None, endpoint)
        chosen = select_platform(parsed, want, str(ref))
        child_ref = dataclasses.replace(ref, tag=None, digest=chosen.digest)
        held = None
        if from_store:  # the index came from the store: its child may too
            held = await self._stored_manifest(chosen.digest, chosen.media_type, endpoint.url)
        if held is not None:
            child_digest, child = chosen.digest, held
        else:
            child_digest, child = await self._fetch_verified(endpoint, child_ref, chosen)
        manifest = parse_manifest(child.raw, child.content_type, f"{ref} ({want})")
        if isinstance(manifest, Index):
            raise ManifestError(
                f"index {ref} lists another index for {want}; nested indexes are not supported"
            )
        return _Resolved(
            digest,
            child_digest,
            manifest,
            ((child_digest, child.raw), (digest, resp.raw)),
            chosen.platform,
            endpoint,
        )

    async def _resolve_all_at(self, endpoint: Endpoint, ref: Reference) -> _ResolvedAll:
        """The reference's manifest and, for an index, every child, attestations (platform
        ``unknown/unknown``) included: the stored index names them, so a push of it needs them;
        children the store holds are read from it, the rest fetched ``CHILD_FETCHES`` at a time
        and verified."""
        digest, resp, parsed, _ = await self._top(endpoint, ref)
        if isinstance(parsed, Manifest):
            return _ResolvedAll(digest, resp.raw, parsed, (), endpoint)
        wanted = list(enumerate(parsed.manifests))
        if sum(d.size for _, d in wanted) > MAX_CHILDREN_BYTES:
            raise ManifestError(
                f"index {ref} lists {len(wanted)} manifests of over "
                f"{MAX_CHILDREN_BYTES >> 20} MiB in all: refused"
            )
        slots = asyncio.Semaphore(CHILD_FETCHES)

        async def child(position: int, desc: Descriptor) -> _Child:
            where = f"{ref} ({desc.platform or desc.digest})"
            async with slots:
                held = await self._stored_manifest(desc.digest, desc.media_type, endpoint.url)
                if held is None:
                    child_ref = dataclasses.replace(ref, tag=None, digest=desc.digest)
                    _, held = await self._fetch_verified(endpoint, child_ref, desc)
            manifest = parse_manifest(held.raw, held.content_type, where)
            if isinstance(manifest, Index):
                raise ManifestError(
                    f"index {ref} lists another index ({desc.digest}); nested indexes are not "
                    "supported"
                )
            return _Child(position, desc, held.raw, manifest)

        children = await _all_of(child(i, d) for i, d in wanted)
        return _ResolvedAll(digest, resp.raw, parsed, tuple(children), endpoint)

    async def resolve(
        self, ref: Reference, want: Platform, on_event: EventCallback = ignore
    ) -> _Resolved:
        """Try each endpoint in order, and all of them again after a temporary failure; an
        index without the platform is the same everywhere."""
        resolved, failed = await self._resolving(
            ref, lambda endpoint: self._resolve_at(endpoint, ref, want), on_event
        )
        return dataclasses.replace(resolved, failed=failed)

    async def _resolving(
        self,
        ref: Reference,
        at: Callable[[Endpoint], Awaitable[R]],
        on_event: EventCallback,
    ) -> tuple[R, tuple[Endpoint, ...]]:
        """``at`` each endpoint in turn, and all again after a temporary failure; with the
        endpoints that failed before the one that answered."""
        failed: list[Endpoint] = []

        async def attempt(endpoint: Endpoint) -> tuple[R, tuple[Endpoint, ...]]:
            try:
                resolved = await at(endpoint)
            except PullError:
                failed.append(endpoint)
                raise
            return resolved, tuple(failed)

        # a tag is only asked of endpoints that may resolve; a digest of any of them
        endpoints = self.endpoints(ref, resolve=ref.digest is None)
        if not endpoints:
            raise RegistryError(
                f"no endpoint may resolve the tag of {ref}: the mirrors of {ref.domain} are "
                "pull-only and mirror_only is set; pull it by digest"
            )
        return await with_retries(
            self._retry,
            lambda: try_in_turn(endpoints, attempt, fatal=(PlatformNotFound, CredentialError)),
            lambda attempt, delay, error: on_event(Retrying(ref, delay, attempt, error)),
        )

    async def tags(self, reference: str | Reference) -> list[str]:
        """Every tag of the reference's repository, as the registry lists them (following its
        ``Link`` pages), asked of the endpoints that may resolve tags. A registry may list
        anything: check each with ``reference.valid_tag`` before use."""
        ref = reference if isinstance(reference, Reference) else parse(reference)
        endpoints = self.endpoints(ref, resolve=True)
        if not endpoints:
            raise RegistryError(
                f"no endpoint may list the tags of {ref.name}: the mirrors of {ref.domain} are "
                "pull-only and mirror_only is set"
            )
        return await with_retries(
            self._retry,
            lambda: try_in_turn(endpoints, lambda e: self._client.list_tags(e, ref.path)),
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
        found, failed = await self._resolving(
            ref, lambda endpoint: self._resolve_all_at(endpoint, ref), on_event
        )
        if isinstance(found.parsed, Manifest):
            one = _Resolved(
                found.digest,
                found.digest,
                found.parsed,
                ((found.digest, found.raw),),
                None,
                found.endpoint,
                failed,
            )
            single = await self._pull_resolved(ref, one, on_event)
            return AllPlatformsResult(
                ref,
                single.digest,
                _stored_form(found.parsed, found.digest, found.raw)[0],
                (PlatformImage(None, found.digest, single.config, single.layers),),
                single.downloaded,
                single.up_to_date,
                single.endpoint,
            )

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
            self._blob_endpoints(ref, failed),
            on_event,
        )

        raws: list[tuple[Digest, bytes]] = [(found.digest, found.raw)]
        entries: list[dict[str, Any]] = []
        served = json.loads(found.raw)["manifests"]  # parse_manifest read it: a list
        converted = found.parsed.media_type != OCI_INDEX
        for child in children:
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
        up_to_date = await self._record(
            ref,
            raws,
            Descriptor(OCI_INDEX, top_digest, len(top_raw)),
            found.digest,
            found.endpoint,
            downloaded,
        )
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
            top_digest,
            images,
            tuple(downloaded),
            up_to_date,
            found.endpoint.url,
        )

    async def _pull_resolved(
        self, ref: Reference, resolved: _Resolved, on_event: EventCallback
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
        up_to_date = await self._record(
            ref, raws, entry, resolved.digest, resolved.endpoint, downloaded
        )
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
            )
        )

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
        nothing was downloaded."""
        loop = asyncio.get_running_loop()
        name = str(ref)
        previous = await loop.run_in_executor(None, self.store.lookup, name)
        for mdigest, raw in dict(raws).items():
            await loop.run_in_executor(None, self.store.put_bytes, mdigest, raw, endpoint.url)
        if resolved != entry.digest:
            entry = replace(entry, annotations={RESOLVED_ANNOTATION: str(resolved)})
        up_to_date = (
            not downloaded
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


async def _all_of(coroutines: Iterable[Awaitable[R]]) -> list[R]:
    """All of them at once, results in order; the first failure cancels the rest."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


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
