"""Registry access for a reference: what pull, copy, push, inspect and tags share.

A ``Session`` holds one store, one ``RegistryClient`` (its connections, tokens and credentials)
and one retry policy. For a reference it knows where to ask and in which order (the registry's
mirrors, then its own server, ``endpoints``; where copies and logins write, ``server``), fetches
manifests verified against their digest (``fetch_manifest``, or ``stored_manifest`` when the
store already holds one), resolves a reference to one platform's image (``resolve``) or to every
child of its index (``resolve_all``), lists tags (``tags``) and reads blobs verified
(``blob_content``, ``read_blob``). The operations use its public methods only; a
``pulling.Puller`` is a Session that also pulls, and copies, ``inspect`` and ``tags`` take either.

    async with Session(store="./store", mirrors=["http://127.0.0.1:5000"]) as session:
        print(await session.tags("redis"))
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from .errors import (
    CredentialError,
    InvalidDigest,
    ManifestError,
    PlatformNotFound,
    PullError,
    RegistryError,
    StoreError,
)
from .events import EventCallback, Retrying, ignore
from .http.proxy import ProxyConfig
from .oci.digest import Digest, digest_of, parse_digest, verify_bytes
from .oci.manifest import (
    Descriptor,
    Index,
    Manifest,
    Platform,
    parse_manifest,
    select_platform,
)
from .oci.reference import Reference, parse
from .registry.auth import Credentials
from .registry.endpoint import (
    Endpoint,
    RegistryConfig,
    normalize_mirror,
    try_in_turn,
)
from .registry.retry import RetryPolicy, with_retries
from .store.layout import Store, as_store
from .streams import Content, from_registry, from_store
from .tasks import all_of

if TYPE_CHECKING:
    from .http.client import ProxyFor
    from .registry.client import ManifestResponse, RegistryClient

#: Child manifests of one index held in memory at once, in bytes (their descriptors' sizes): a
#: hostile index may name thousands.
MAX_CHILDREN_BYTES = 64 << 20
#: Child manifests of one index fetched at once.
CHILD_FETCHES = 4

R = TypeVar("R")
S = TypeVar("S", bound="Session")


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """One platform's image, as a reference resolved to it."""

    digest: Digest  # what the reference resolved to: an index for multi-platform images
    manifest_digest: Digest  # the platform's image manifest
    manifest: Manifest
    raws: tuple[tuple[Digest, bytes], ...]  # manifests to store: (digest, raw bytes)
    platform: Platform | None  # as the index names it (None: the reference named one manifest)
    endpoint: Endpoint  # where it was resolved
    failed: tuple[Endpoint, ...] = ()  # endpoints that could not resolve the reference


@dataclass(frozen=True, slots=True)
class ChildManifest:
    """A child manifest of an index resolved whole: its place in the served index, its
    descriptor there, and its bytes as served."""

    position: int
    descriptor: Descriptor
    raw: bytes
    manifest: Manifest


@dataclass(frozen=True, slots=True)
class ResolvedAll:
    """What a reference names with every child of its index (``Session.resolve_all``)."""

    digest: Digest
    raw: bytes
    parsed: Manifest | Index
    children: tuple[ChildManifest, ...]  # empty when ``parsed`` is a Manifest
    endpoint: Endpoint
    failed: tuple[Endpoint, ...] = ()  # endpoints that could not resolve the reference


class Session:
    """Registry access through one client, for one store; use ``async with``."""

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
        timeout: float = 30.0,
        max_download_attempts: int = 5,
        retry_delay: float = 1.0,
        proxies: Callable[[str | None], ProxyConfig] | None = None,
    ) -> None:
        """``registries`` (from ``puller.config``) gives each registry name its mirrors and
        server; ``mirrors`` and ``upstreams`` are shorthands for Docker Hub's mirrors and for a
        registry's server URL. ``credentials`` (by registry name) win over
        ``credential_lookup`` (e.g. docker's config.json); both go only to the endpoint that
        registry name is for, never to a mirror of it. ``max_download_attempts`` and
        ``retry_delay`` make the retry policy of every request."""
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
        from .registry.client import RegistryClient  # here: ``import puller`` loads no HTTP
        from .registry.limits import limits_by_host

        self._client = RegistryClient(
            credentials=credentials,
            lookup=credential_lookup,
            timeout=timeout,
            proxies=self._proxy_rule,
            limits=limits_by_host(self._registries.values()),
        )
        self._retry = RetryPolicy(attempts=max_download_attempts, base_delay=retry_delay)
        self._lease: AbstractContextManager[None] | None = None

    async def __aenter__(self: S) -> S:
        # What this session finds in the store or puts there stays, whatever a prune in another
        # process decides, until it is over (``Store.lease``).
        self._lease = self.store.lease()
        self._lease.__enter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._client.close()
        finally:
            lease, self._lease = self._lease, None
            if lease is not None:
                lease.__exit__(None, None, None)

    @property
    def client(self) -> RegistryClient:
        """The one registry client of this session (pulls and copies use it)."""
        return self._client

    @property
    def retry(self) -> RetryPolicy:
        return self._retry

    async def retried(self, operation: Callable[[], Awaitable[R]]) -> R:
        """``operation``, again after a temporary failure, as the retry policy says."""
        return await with_retries(self._retry, operation)

    def _proxy_rule(self, endpoint: Endpoint) -> ProxyFor:
        """The proxy rule of the registry an endpoint serves: its own server, or a mirror
        configured under it."""
        name = endpoint.registry
        if name is None:
            name = next((r.name for r in self._registries.values() if endpoint in r.mirrors), None)
        return self._proxies(name).for_url

    # -- where to ask ------------------------------------------------------------------------------

    def registry(self, domain: str) -> RegistryConfig:
        """How ``domain`` is configured (its defaults when it is not)."""
        return self._registries.get(domain, RegistryConfig(domain))

    def server(self, ref: Reference) -> Endpoint:
        """The registry's own server, never a mirror: where logins and copies write."""
        return self._registries.get(ref.domain, RegistryConfig(ref.domain)).own_server()

    def endpoints(self, ref: Reference, resolve: bool = False) -> tuple[Endpoint, ...]:
        """Where to ask, in order: the registry's mirrors, then its own server (unless
        ``mirror_only``). With ``resolve``, only endpoints that may be asked what a tag is."""
        reg = self._registries.get(ref.domain, RegistryConfig(ref.domain))
        server = self.server(ref)
        mirrors = tuple(m for m in reg.mirrors if m.can_resolve or not resolve)
        if self._mirror_only and reg.mirrors:
            return mirrors
        return (*mirrors, server)

    # -- manifests ---------------------------------------------------------------------------------

    async def fetch_manifest(
        self, endpoint: Endpoint, ref: Reference, expected: Descriptor | None = None
    ) -> tuple[Digest, ManifestResponse]:
        """The manifest ``ref`` names at ``endpoint``, verified: against the digest of ``ref``
        (and the size ``expected`` gives), or against the Docker-Content-Digest the registry
        sends; with the digest it has."""
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

    async def stored_manifest(
        self, digest: Digest, content_type: str | None, url: str
    ) -> ManifestResponse | None:
        """The manifest ``digest`` from the store, if it is there, small and verifies (a file
        in the store may have been written by someone else)."""
        import asyncio

        loop = asyncio.get_running_loop()

        def read() -> bytes | None:
            if not self.store.has(digest):
                return None
            try:
                return self.store.read_manifest(digest)
            except (OSError, PullError):
                return None

        raw = await loop.run_in_executor(None, read)
        from .registry.client import ManifestResponse

        return None if raw is None else ManifestResponse(raw, content_type, str(digest), url)

    async def _head_first(self, endpoint: Endpoint, ref: Reference) -> ManifestResponse | None:
        """A re-pull of a tag asks what it points at by HEAD (Docker Hub counts a GET of a
        manifest as a pull, a HEAD not) and takes the manifest from the store when it holds
        it; None: GET it as usual."""
        import asyncio

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
        return await self.stored_manifest(head.digest, head.media_type, endpoint.url)

    async def _top(
        self, endpoint: Endpoint, ref: Reference
    ) -> tuple[Digest, ManifestResponse, Manifest | Index, bool]:
        """What the reference names, parsed: from the store when a HEAD says it holds it (the
        last item says so), else fetched and verified."""
        stored = await self._head_first(endpoint, ref)
        if stored is not None:
            digest, resp = parse_digest(stored.digest or ""), stored
        else:
            digest, resp = await self.fetch_manifest(endpoint, ref)
        return (
            digest,
            resp,
            parse_manifest(resp.raw, resp.content_type, str(ref)),
            stored is not None,
        )

    # -- resolving a reference ---------------------------------------------------------------------

    async def resolve(
        self, ref: Reference, want: Platform, on_event: EventCallback = ignore
    ) -> ResolvedImage:
        """Try each endpoint in order, and all of them again after a temporary failure; an
        index without the platform is the same everywhere."""
        resolved, failed = await self._resolving(
            ref, lambda endpoint: self._resolve_at(endpoint, ref, want), on_event
        )
        return dataclasses.replace(resolved, failed=failed)

    async def resolve_all(self, ref: Reference, on_event: EventCallback = ignore) -> ResolvedAll:
        """The reference's manifest and, for an index, every child, as ``resolve`` asks the
        endpoints."""
        resolved, failed = await self._resolving(
            ref, lambda endpoint: self._resolve_all_at(endpoint, ref), on_event
        )
        return dataclasses.replace(resolved, failed=failed)

    async def _resolve_at(
        self, endpoint: Endpoint, ref: Reference, want: Platform
    ) -> ResolvedImage:
        digest, resp, parsed, from_store = await self._top(endpoint, ref)
        if isinstance(parsed, Manifest):
            return ResolvedImage(digest, digest, parsed, ((digest, resp.raw),), None, endpoint)
        chosen = select_platform(parsed, want, str(ref))
        child_ref = dataclasses.replace(ref, tag=None, digest=chosen.digest)
        held = None
        if from_store:  # the index came from the store: its child may too
            held = await self.stored_manifest(chosen.digest, chosen.media_type, endpoint.url)
        if held is not None:
            child_digest, child = chosen.digest, held
        else:
            child_digest, child = await self.fetch_manifest(endpoint, child_ref, chosen)
        manifest = parse_manifest(child.raw, child.content_type, f"{ref} ({want})")
        if isinstance(manifest, Index):
            raise ManifestError(
                f"index {ref} lists another index for {want}; nested indexes are not supported"
            )
        return ResolvedImage(
            digest,
            child_digest,
            manifest,
            ((child_digest, child.raw), (digest, resp.raw)),
            chosen.platform,
            endpoint,
        )

    async def _resolve_all_at(self, endpoint: Endpoint, ref: Reference) -> ResolvedAll:
        """The reference's manifest and, for an index, every child, attestations (platform
        ``unknown/unknown``) included: the stored index names them, so a push of it needs them;
        children the store holds are read from it, the rest fetched ``CHILD_FETCHES`` at a time
        and verified."""
        import asyncio

        digest, resp, parsed, _ = await self._top(endpoint, ref)
        if isinstance(parsed, Manifest):
            return ResolvedAll(digest, resp.raw, parsed, (), endpoint)
        wanted = list(enumerate(parsed.manifests))
        if sum(d.size for _, d in wanted) > MAX_CHILDREN_BYTES:
            raise ManifestError(
                f"index {ref} lists {len(wanted)} manifests of over "
                f"{MAX_CHILDREN_BYTES >> 20} MiB in all: refused"
            )
        slots = asyncio.Semaphore(CHILD_FETCHES)
        # A child the index lists many times is fetched once: the first position's fetch
        # serves the rest.
        first: dict[Digest, asyncio.Future[ChildManifest]] = {}

        async def child(position: int, desc: Descriptor) -> ChildManifest:
            if desc.digest in first:
                return dataclasses.replace(
                    await asyncio.shield(first[desc.digest]), position=position, descriptor=desc
                )
            first[desc.digest] = fetching = asyncio.ensure_future(fetch(position, desc))
            return await fetching

        async def fetch(position: int, desc: Descriptor) -> ChildManifest:
            where = f"{ref} ({desc.platform or desc.digest})"
            async with slots:
                held = await self.stored_manifest(desc.digest, desc.media_type, endpoint.url)
                if held is None:
                    child_ref = dataclasses.replace(ref, tag=None, digest=desc.digest)
                    _, held = await self.fetch_manifest(endpoint, child_ref, desc)
            manifest = parse_manifest(held.raw, held.content_type, where)
            if isinstance(manifest, Index):
                raise ManifestError(
                    f"index {ref} lists another index ({desc.digest}); nested indexes are not "
                    "supported"
                )
            return ChildManifest(position, desc, held.raw, manifest)

        children = await all_of(child(i, d) for i, d in wanted)
        return ResolvedAll(digest, resp.raw, parsed, tuple(children), endpoint)

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

    # -- tags and blobs ----------------------------------------------------------------------------

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
        return await self.retried(
            lambda: try_in_turn(endpoints, lambda e: self._client.list_tags(e, ref.path)),
        )

    async def repositories(self, ref: Reference) -> list[str]:
        """Every repository path the catalog of ``ref``'s registry lists (following its
        ``Link`` pages), asked of the registry's own server: a mirror's catalog is the
        mirror's. A registry may list anything: check each path before use."""
        server = self.server(ref)
        return await self.retried(lambda: self._client.list_repositories(server))

    def blob_content(self, endpoint: Endpoint, path: str, blob: Descriptor) -> Content:
        """The blob's bytes, verified on the way: from the store when it holds the blob, else
        from the repository ``path`` at ``endpoint``."""
        try:
            local = self.store.has(blob.digest)
        except (OSError, StoreError):
            local = False
        if local:
            return lambda: from_store(self.store, blob)
        return lambda: from_registry(self._client, endpoint, path, blob)

    async def read_blob(self, ref: Reference, blob: Descriptor, first: Endpoint) -> bytes:
        """A small blob whole (a config), verified: from the store when it holds it, else from
        ``first`` and then the reference's other endpoints in turn, retried."""
        endpoints = (first, *(e for e in self.endpoints(ref) if e != first))

        async def read(endpoint: Endpoint) -> bytes:
            content = self.blob_content(endpoint, ref.path, blob)
            return b"".join([bytes(piece) async for piece in content()])

        return await self.retried(lambda: try_in_turn(endpoints, read))
