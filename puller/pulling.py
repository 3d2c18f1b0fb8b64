"""``pull()``: reference -> manifest -> missing blobs -> store. The public Python API.

    result = await puller.pull("redis:latest", store="/var/lib/images",
                               mirrors=["http://127.0.0.1:5000"], on_event=print)

``Puller`` keeps one HTTP session and one downloader across many pulls, so layers that several
images share are fetched once, even when the pulls run concurrently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace

from .auth import Credentials
from .config import RegistryConfig
from .credentials import CredentialError
from .digest import Digest, digest_of, parse_digest, verify_bytes
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
from .manifest import (
    DOCKER_MANIFEST,
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
from .proxy import ProxyConfig
from .reference import Reference, parse
from .registry import (
    Endpoint,
    ManifestResponse,
    RegistryClient,
    endpoint_for_domain,
    normalize_mirror,
    try_in_turn,
)
from .retry import RetryPolicy, with_retries
from .store import RESOLVED_ANNOTATION, Store, default_store_path
from .wire import ProxyFor

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
        if store is None:
            store = default_store_path()
        self.store = store if isinstance(store, Store) else Store(store)
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

    async def _resolve_at(self, endpoint: Endpoint, ref: Reference, want: Platform) -> _Resolved:
        stored = await self._head_first(endpoint, ref)
        if stored is not None:
            digest, resp = parse_digest(stored.digest or ""), stored
        else:
            digest, resp = await self._fetch_verified(endpoint, ref)
        parsed = parse_manifest(resp.raw, resp.content_type, str(ref))
        if isinstance(parsed, Manifest):
            return _Resolved(digest, digest, parsed, ((digest, resp.raw),), None, endpoint)
        chosen = select_platform(parsed, want, str(ref))
        child_ref = dataclasses.replace(ref, tag=None, digest=chosen.digest)
        held = None
        if stored is not None:  # the index came from the store: its child may too
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

    async def resolve(
        self, ref: Reference, want: Platform, on_event: EventCallback = ignore
    ) -> _Resolved:
        """Try each endpoint in order, and all of them again after a temporary failure; an
        index without the platform is the same everywhere."""
        failed: list[Endpoint] = []

        async def attempt(endpoint: Endpoint) -> _Resolved:
            try:
                resolved = await self._resolve_at(endpoint, ref, want)
            except PullError:
                failed.append(endpoint)
                raise
            return dataclasses.replace(resolved, failed=tuple(failed))

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

    # -- pull ------------------------------------------------------------------------------------

    async def pull(
        self,
        reference: str | Reference,
        *,
        platform: str | Platform | None = None,
        on_event: EventCallback = ignore,
    ) -> PullResult:
        ref = reference if isinstance(reference, Reference) else parse(reference)
        if isinstance(platform, str):
            platform = parse_platform(platform)
        want = platform or host_platform()

        resolved = await self.resolve(ref, want, on_event)
        manifest = resolved.manifest
        layers = manifest.layers
        first = self.endpoints(ref, resolve=ref.digest is None)[0].url  # resolve() checked
        on_event(
            Resolved(
                ref,
                resolved.digest,
                resolved.endpoint.url,
                tuple(d.digest for d in layers),
                first if first != resolved.endpoint.url else "",
            )
        )

        # Blobs: mirrors first (a pull-only mirror was never asked for the manifest), and
        # endpoints that already failed us last.
        endpoints = tuple(e for e in self.endpoints(ref) if e not in resolved.failed) + tuple(
            e for e in self.endpoints(ref) if e in resolved.failed
        )
        missing: dict[Digest, Descriptor] = {}
        for d in layers:
            if self.store.has(d.digest) and d.digest not in missing:
                on_event(LayerExists(d.digest))
            elif d.digest not in missing:
                missing[d.digest] = d
                on_event(LayerPulling(d.digest))

        downloaded = await self._fetch_blobs(ref, manifest, missing, endpoints, on_event)

        loop = asyncio.get_running_loop()
        name = str(ref)
        previous = await loop.run_in_executor(None, self.store.lookup, name)
        raws = list(resolved.raws)
        # What index.json points at: the manifest as served, or its OCI form for a Docker one.
        stored_type, stored_digest, stored_size = (
            manifest.media_type,
            resolved.manifest_digest,
            len(resolved.raws[0][1]),
        )
        if manifest.media_type == DOCKER_MANIFEST:
            oci, oci_raw = to_oci(manifest)
            stored_type, stored_digest, stored_size = (
                oci.media_type,
                digest_of(oci_raw),
                len(oci_raw),
            )
            raws.append((stored_digest, oci_raw))
        for mdigest, raw in raws:
            await loop.run_in_executor(
                None, self.store.put_bytes, mdigest, raw, resolved.endpoint.url
            )
        entry = Descriptor(
            stored_type,
            stored_digest,
            stored_size,
            resolved.platform,
            {RESOLVED_ANNOTATION: str(resolved.digest)} if resolved.digest != stored_digest else {},
        )
        up_to_date = (
            not downloaded
            and previous is not None
            and previous.digest == entry.digest
            and previous.annotations.get(RESOLVED_ANNOTATION, str(previous.digest))
            == str(resolved.digest)
        )
        await loop.run_in_executor(None, self.store.tag, name, entry)
        on_event(Finished(ref, resolved.digest, up_to_date))
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

    async def _fetch_blobs(
        self,
        ref: Reference,
        manifest: Manifest,
        missing: Mapping[Digest, Descriptor],
        endpoints: Sequence[Endpoint],
        on_event: EventCallback,
    ) -> list[Digest]:
        """Download config and missing layers concurrently; report ``Pull complete`` bottom first,
        as each layer and all below it are in the store. The first failure cancels the rest."""
        started: dict[Digest, asyncio.Task[bool]] = {}
        # Largest first: they take the download slots in the order they start, and the pull
        # lasts at least as long as its largest layer, so that one must not start last.
        for digest, desc in sorted(missing.items(), key=lambda item: -item[1].size):
            started[digest] = asyncio.ensure_future(
                self._downloader.fetch(desc, ref.path, endpoints, on_event)
            )
        tasks = {digest: started[digest] for digest in missing}
        config = manifest.config
        if config.digest not in tasks:
            tasks[config.digest] = asyncio.ensure_future(
                self._downloader.fetch(config, ref.path, endpoints, limited=False)
            )

        order = list(dict.fromkeys(d.digest for d in manifest.layers if d.digest in missing))
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
