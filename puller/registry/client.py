"""The registry client: the only place that knows the registry API's URLs and auth. Every
request it makes, token endpoints included, goes through ``http.client.Client``.

It speaks the read side of the OCI distribution API (manifests, blobs, tags) here, the write side
in ``upload`` (``RegistryClient`` derives from ``upload.Uploads``), answers auth challenges
(``token``: Bearer tokens from the realm, or Basic), and turns every failure into a
``RegistryError`` whose message names what was asked for and where (``status``). Endpoints and
failover among them are ``endpoint``'s.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from ..errors import InvalidDigest, ManifestError, RegistryError
from ..http.client import Client, ProxyFor, default_tls, same_origin
from ..http.connection import Response
from ..http.errors import CannotResolve, RedirectCertificateError, WireError
from ..http.message import RequestBody
from ..http.pour import LoopWrite, Write
from ..oci.digest import Digest, parse_digest
from ..oci.manifest import ACCEPT, MAX_MANIFEST_SIZE
from ..oci.reference import Reference
from .auth import Credentials, pull_scope
from .endpoint import BASE_HEADERS, Endpoint
from .limits import Limiter, RequestLimits
from .links import next_page
from .quota import reset_in
from .status import number, raise_for_status, remaining, tls_error, transport_error
from .token import Authorizer
from .upload import Uploads

A = TypeVar("A")
R = TypeVar("R")

#: One page of a tag listing; a registry's pages are at most a few hundred KiB.
MAX_TAGS_PAGE = 4 << 20
#: Pages of one listing, and tags in all: bounds for a registry whose Link never ends.
MAX_TAG_PAGES = 10_000
MAX_TAGS = 1_000_000
#: The bytes of one listing's pages in all: a million tags of 128 characters, not 10,000 pages
#: of one 4 MiB name each (40 GiB held).
MAX_LISTING_BYTES = 256 << 20
#: Repositories asked for per catalog page, and in all (a sync's namespaces).
CATALOG_PAGE = 1000
MAX_REPOSITORIES = 100_000
CATALOG_SCOPE = "registry:catalog:*"


@dataclass(frozen=True, slots=True)
class ManifestResponse:
    raw: bytes
    content_type: str | None
    digest: str | None  # Docker-Content-Digest, unvalidated
    url: str


@dataclass(frozen=True, slots=True)
class ManifestHead:
    digest: Digest
    media_type: str | None
    size: int | None


class RegistryClient(Uploads):
    """One HTTP session, shared by every pull of a process, with a token cache."""

    def __init__(
        self,
        *,
        credentials: Mapping[str, Credentials] | None = None,
        lookup: Callable[[str], Credentials | None] | None = None,
        timeout: float = 30.0,
        proxies: Callable[[Endpoint], ProxyFor | None] | None = None,
        limits: Mapping[str, RequestLimits] | None = None,
    ) -> None:
        """``credentials`` by registry name win over ``lookup(name)`` (docker's config.json);
        either is asked only for the endpoint's own name, so a mirror never gets the
        credentials of the registry it mirrors. ``proxies(endpoint)`` picks the proxy rule
        for the requests made on an endpoint's behalf, its token endpoint and redirects
        included (see ``proxy``); without it, every request goes direct. ``limits`` by host
        (``Endpoint.host``) pace and bound the requests to it (``limits.Limiter``)."""
        self._ssl: dict[tuple[bool, str | None], ssl.SSLContext] = {}
        self._timeout = timeout
        self._proxies = proxies
        self.http = Client(timeout=timeout)
        self.auth = Authorizer(credentials, lookup, self._token_request, self._tls)
        #: ``max_requests_per_second`` and ``max_concurrent_requests`` by host (``limits``)
        self.limiter = Limiter(limits)
        #: The last ``ratelimit-remaining`` each host sent (Docker Hub's pull quota).
        self.rate_limits: dict[str, int] = {}
        self.referrers_api: dict[str, bool] = {}
        #: When each host's quota window resets, as it said (``quota``), on ``time.monotonic``.
        self.rate_resets: dict[str, float] = {}

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.close()

    # -- auth and TLS ---------------------------------------------------------------------------

    def known_credentials(self, endpoint: Endpoint) -> Credentials | None:
        """The credentials of the endpoint's name, if looked up already (for ``Uploads``)."""
        return self.auth.known(endpoint)

    def ssl_for(self, endpoint: Endpoint) -> ssl.SSLContext | bool:
        """The endpoint's TLS settings: True is the default verification, False none."""
        if endpoint.skip_verify:
            return False
        if endpoint.ca_file is None:
            return True
        key = (False, endpoint.ca_file)
        if key not in self._ssl:
            context = ssl.create_default_context()
            context.load_verify_locations(cafile=endpoint.ca_file)
            self._ssl[key] = context
        return self._ssl[key]

    def _tls(self, endpoint: Endpoint) -> ssl.SSLContext:
        """``ssl_for`` as a context of its own."""
        setting = self.ssl_for(endpoint)
        if isinstance(setting, ssl.SSLContext):
            return setting
        if setting:
            return default_tls()  # the one the HTTP client uses for https redirects too
        key = (setting, None)
        if key not in self._ssl:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self._ssl[key] = context
        return self._ssl[key]

    def _proxy_for(self, endpoint: Endpoint) -> ProxyFor | None:
        return self._proxies(endpoint) if self._proxies else None

    @asynccontextmanager
    async def _token_request(
        self,
        endpoint: Endpoint,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        tls: ssl.SSLContext | None,
    ) -> AsyncIterator[Response]:
        """A request to a token endpoint on ``endpoint``'s behalf: no redirects. It counts
        against the endpoint's limits until its answer is released, as a request to the
        registry: a token server is often the registry's own host, or the part of it that
        rate-limits (Docker Hub's). Made from ``request``, it rides on the slot of the request
        that was challenged (and takes a turn), so the task fetching a token, which others wait
        for, never waits for a slot."""
        async with self.limiter.slot(endpoint.host):
            resp = await self.http.request(
                method,
                url,
                headers,
                body=body,
                tls=tls,
                max_redirects=0,
                proxy_for=self._proxy_for(endpoint),
            )
            try:
                yield resp
            finally:
                resp.release()

    # -- requests ---------------------------------------------------------------------------------

    async def _send(
        self,
        endpoint: Endpoint,
        url: str,
        headers: dict[str, str],
        *,
        method: str = "GET",
        downgrade: bool = False,
        body: RequestBody | None = None,
        length: int | None = None,
    ) -> Response:
        """``downgrade``: the answer is checked against a digest, so an https registry may
        redirect it to plain http (a CDN's http URL). The endpoint's TLS settings are for its
        own origin: on another (a redirect, an upload Location) its ``ca_file`` applies, its
        ``skip_verify`` does not (the HTTP client's rule)."""
        try:
            return await self.http.request(
                method,
                url,
                {**BASE_HEADERS, **headers},
                body=body,
                length=length,
                # Not built for plain HTTP: loading the system's CAs takes 20 ms.
                tls=None if endpoint.plain_http else self._tls(endpoint),
                tls_origin=endpoint.url,
                downgrade=downgrade,
                proxy_for=self._proxy_for(endpoint),
            )
        except CannotResolve as e:
            raise RegistryError(str(e), url=url) from e
        except RedirectCertificateError as e:
            raise RegistryError(
                f"cannot reach {endpoint.url}: {e}; trust its CA with ca_file under "
                f'[registry."{endpoint.credentials_name}"] (skip_verify covers '
                f"{endpoint.host} only)",
                url=url,
            ) from e
        except ssl.SSLError as e:
            raise tls_error(f"cannot reach {endpoint.url}", url, e) from e
        except (OSError, asyncio.TimeoutError, WireError) as e:
            raise transport_error(f"cannot reach {endpoint.url}", url, e) from e

    @asynccontextmanager
    async def request(
        self,
        endpoint: Endpoint,
        path: str,
        url: str,
        headers: Mapping[str, str],
        *,
        method: str = "GET",
        downgrade: bool = False,
        scope: str | None = None,
        body: Callable[[], RequestBody] | None = None,
        length: int | None = None,
    ) -> AsyncIterator[Response]:
        """Send ``url`` with auth; on a 401, authenticate once and try again. An empty ``path``
        asks for no repository scope (``/v2/`` itself); ``scope`` overrides the pull scope.
        ``body`` makes the request's body (called again for the retry after a 401). Credentials
        go only to the endpoint's own origin: an upload ``Location`` elsewhere gets none."""
        if scope is None:
            scope = pull_scope(path) if path else ""
        ours = same_origin(url, endpoint.url)
        if not ours and url.startswith("http:") and not endpoint.plain_http:
            raise RegistryError(
                f"{endpoint.url} sends us to plain HTTP ({url[:200]}): refused", url=url
            )
        for attempt in range(2):
            hdrs = dict(headers)
            await self.auth.fetched(endpoint, scope)  # a new token: wait for it, not for a 401
            auth = self.auth.header(endpoint, scope) if ours else None
            if auth:
                hdrs["Authorization"] = auth
            # The registry's limits: a slot held until the answer is released (a blob's whole
            # stream), or until the token a 401 asks for is fetched (``_token_request``).
            async with self.limiter.slot(endpoint.host):
                resp = await self._send(
                    endpoint,
                    url,
                    hdrs,
                    method=method,
                    downgrade=downgrade,
                    body=body() if body is not None else None,
                    length=length,
                )
                try:
                    # A redirect target's 401 is not the registry's: its challenge must not
                    # choose where our credentials go.
                    challenge = resp.headers.get("WWW-Authenticate")
                    if not (
                        resp.status == 401 and attempt == 0 and ours and same_origin(resp.url, url)
                    ):
                        left = remaining(resp.headers.get("ratelimit-remaining"))
                        if left is not None and ours:
                            self.rate_limits[endpoint.host] = left
                            reset = reset_in(resp.headers, resp.status)
                            if reset is not None:
                                self.rate_resets[endpoint.host] = time.monotonic() + reset
                        yield resp
                        return
                finally:
                    resp.release()
                if auth and auth == self.auth.header(endpoint, scope):
                    self.auth.drop(endpoint, scope)  # expired or revoked
                await self.auth.authenticate(endpoint, scope, challenge, url)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- API --------------------------------------------------------------------------------------

    async def check_login(self, endpoint: Endpoint) -> None:
        """What ``docker login`` does: ``GET /v2/`` with the credentials; raise unless 200.

        A registry that answers without asking for credentials cannot tell good ones from bad,
        so that is an error too: nothing unchecked gets stored."""
        url = f"{endpoint.url}/v2/"
        async with self.limiter.slot(endpoint.host):
            probe = await self._send(endpoint, url, {})
            probe.release()
        if probe.status == 200:
            raise RegistryError(
                f"{endpoint.url} does not ask for credentials, so they cannot be checked; "
                "nothing stored",
                status=200,
                url=url,
            )
        async with self.request(endpoint, "", url, {}) as resp:
            if resp.status != 200:
                await raise_for_status(resp, f"login to {endpoint.credentials_name}", url)

    async def get_manifest(self, endpoint: Endpoint, ref: Reference) -> ManifestResponse:
        url = f"{endpoint.url}/v2/{ref.path}/manifests/{ref.identifier}"
        pinned = ref.digest is not None  # checked against it: may come over plain http
        async with self.request(
            endpoint, ref.path, url, {"Accept": ACCEPT}, downgrade=pinned
        ) as resp:
            if resp.status != 200:
                await raise_for_status(resp, f"manifest for {ref}", url)
            try:
                length = resp.content_length
                if length is not None and length > MAX_MANIFEST_SIZE:
                    raise ManifestError(
                        f"manifest for {ref} from {url} is {length} bytes, "
                        f"over the {MAX_MANIFEST_SIZE} byte limit"
                    )
                raw = await resp.read(MAX_MANIFEST_SIZE + 1)
            except (OSError, asyncio.TimeoutError, WireError) as e:
                raise transport_error(f"reading manifest from {url} failed", url, e) from e
            if len(raw) > MAX_MANIFEST_SIZE:
                raise ManifestError(
                    f"manifest for {ref} from {url} is over the {MAX_MANIFEST_SIZE} byte limit"
                )
            return ManifestResponse(
                raw,
                resp.headers.get("Content-Type"),
                resp.headers.get("Docker-Content-Digest"),
                url,
            )

    @asynccontextmanager
    async def open_blob(
        self,
        endpoint: Endpoint,
        path: str,
        digest: Digest,
        chunk_size: int = 1 << 20,
        offset: int = 0,
    ) -> AsyncIterator[BlobStream]:
        """The blob's body, from ``offset`` when the server honours Range (``BlobStream.start``
        says where the body really starts: a server may ignore Range and send everything). A
        416 to a Range request is raised as a RegistryError with status 416.

        Redirects (to a CDN) are followed, keeping Range but dropping Authorization when the
        origin changes.
        """
        url = f"{endpoint.url}/v2/{path}/blobs/{digest}"
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        async with self.request(endpoint, path, url, headers, downgrade=True) as resp:
            if resp.status not in (200, 206):
                await raise_for_status(resp, f"blob {digest}", url)
            try:
                start, total = _body_span(resp, resp.content_length, offset, url)
            except _NoBody:  # a 206 we did not ask for
                await raise_for_status(resp, f"blob {digest}", url)
            except WireError as e:  # a Content-Length that is no number
                raise transport_error(f"blob {digest} from {url}", url, e) from e
            yield BlobStream(resp, url, chunk_size, start, total)

    # -- the write side and listings (mirror syncing) --------------------------------------------

    async def head_manifest(
        self, endpoint: Endpoint, ref: Reference, *, scope: str | None = None
    ) -> ManifestHead | None:
        """What the tag (or digest) points at, by HEAD: a registry that counts pulls (Docker
        Hub) does not count it. None when the answer cannot say (405, or no valid
        ``Docker-Content-Digest``): then GET it, as containerd does. A 404 raises NotFound."""
        url = f"{endpoint.url}/v2/{ref.path}/manifests/{ref.identifier}"
        async with self.request(
            endpoint, ref.path, url, {"Accept": ACCEPT}, method="HEAD", scope=scope
        ) as resp:
            if resp.status == 405:
                return None
            if resp.status != 200:
                await raise_for_status(resp, f"manifest for {ref}", url)
            try:
                digest = parse_digest(resp.headers.get("Docker-Content-Digest") or "")
            except InvalidDigest:
                return None
            return ManifestHead(
                digest,
                resp.headers.get("Content-Type"),
                number(resp.headers.get("Content-Length") or ""),
            )

    async def list_tags(
        self, endpoint: Endpoint, path: str, *, page_size: int | None = None
    ) -> list[str]:
        """Every tag of a repository, following ``Link: <...>; rel="next"`` exactly as given
        (relative or absolute, with whatever opaque token it carries), on the registry's own
        origin only: a Link elsewhere would take our credentials along."""
        url = f"{endpoint.url}/v2/{path}/tags/list"
        if page_size:
            url += f"?n={page_size}"
        return await self._listing(endpoint, path, url, f"tags of {path}", "tags", MAX_TAGS)

    async def list_repositories(
        self, endpoint: Endpoint, *, page_size: int = CATALOG_PAGE
    ) -> list[str]:
        """Every repository the registry's catalog lists (``GET /v2/_catalog``, the
        ``registry:catalog:*`` scope), its ``Link`` pages followed as ``list_tags`` follows
        them, at most ``MAX_REPOSITORIES``. A registry may list anything: check each path."""
        url = f"{endpoint.url}/v2/_catalog?n={page_size}"
        what = f"the catalog of {endpoint.url}"
        return await self._listing(
            endpoint, "", url, what, "repositories", MAX_REPOSITORIES, scope=CATALOG_SCOPE
        )

    async def _listing(
        self,
        endpoint: Endpoint,
        path: str,
        url: str,
        what: str,
        key: str,
        limit: int,
        *,
        scope: str | None = None,
    ) -> list[str]:
        """The strings under ``key`` of every page of a listing (tags, a catalog), from
        ``url`` on, following the ``Link`` pages on the endpoint's origin, bounded."""
        items: list[str] = []
        seen = {url}
        held = 0
        headers = {"Accept": "application/json"}
        for _ in range(MAX_TAG_PAGES):
            async with self.request(endpoint, path, url, headers, scope=scope) as resp:
                if resp.status != 200:
                    await raise_for_status(resp, what, url)
                try:
                    body = await resp.read(MAX_TAGS_PAGE + 1)
                except (OSError, asyncio.TimeoutError, WireError) as e:
                    raise transport_error(f"reading {what} from {url} failed", url, e) from e
                link = resp.headers.get("Link")
            if len(body) > MAX_TAGS_PAGE:
                raise RegistryError(f"{what} from {url}: a page over 4 MiB", url=url)
            held += len(body)
            if held > MAX_LISTING_BYTES:
                bound = f"{MAX_LISTING_BYTES >> 20} MiB"
                raise RegistryError(f"{what} from {url}: pages over {bound} in all", url=url)
            items.extend(_page(body, what, key, url))
            if len(items) > limit:
                raise RegistryError(f"{what} from {url}: over {limit} {key}", url=url)
            following = next_page(url, link, endpoint.url, seen, what)
            if following is None:
                return items
            url = following
        raise RegistryError(f"{what}: more than {MAX_TAG_PAGES} pages", url=url)


def _page(body: bytes, what: str, key: str, url: str) -> list[str]:
    """The list of strings under ``key`` in one page of a listing."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise RegistryError(f"{what} from {url}: not JSON", url=url) from None
    items = doc.get(key) if isinstance(doc, dict) else None
    if items is None:
        return []  # a repository without tags says null
    if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
        raise RegistryError(f"{what} from {url}: no list of {key}", url=url)
    return items


class _NoBody(Exception):
    """The answer is not (part of) the blob."""


def _body_span(resp: Response, length: int | None, offset: int, url: str) -> tuple[int, int | None]:
    """Where the body starts in the blob, and the blob's whole size if the answer says."""
    if resp.status == 200:
        return 0, length
    if resp.status == 206 and offset:
        value = resp.headers.get("Content-Range")
        start, total = _content_range(value)
        if start is None:
            raise RegistryError(
                f"blob at {url}: a 206 answer without a usable Content-Range ({value!r})",
                status=206,
                url=url,
            )
        return start, total  # start may not be offset
    raise _NoBody


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes START-END/TOTAL`` -> (START, TOTAL); TOTAL may be ``*``."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    size = None if total == "*" else number(total)
    if size is None and total != "*":
        return None, None  # a total that is no size: the whole answer is suspect
    return number(span.partition("-")[0]), size


class BlobStream:
    """A blob's body; ``pour`` sends it to a writer and turns transport failures into
    ``Unreachable``."""

    def __init__(
        self, resp: Response, url: str, chunk_size: int, start: int, total: int | None
    ) -> None:
        self._resp = resp
        self.url = url
        self._chunk_size = chunk_size
        self.start = start  # offset in the blob of the first byte of this body
        self.total = total  # the whole blob's size as the server announces it, if it does

    async def pour(self, write: Write, progress: Callable[[int], None]) -> None:
        """Call ``write`` (blocking: it runs in a worker thread) with the body's bytes in order,
        one call at a time, and ``progress`` (on the loop) with the size of each written piece.
        Every ``write`` has returned before this returns or raises, so the caller may close the
        file afterwards; what arrived before a transport failure has been written."""
        ours: list[BaseException] = []  # what write or progress raised: not the network's fault
        await self._mapped(
            self._resp.pour(_recording(write, ours), _recording(progress, ours), self._chunk_size),
            ours,
        )

    async def pour_on_loop(self, write: LoopWrite) -> None:
        """``pour`` with a writer on the loop that may hold each piece until the future it
        returns is done (``Response.pour_on_loop``, in pieces of ``http.pour.LOOP_CHUNK``)."""
        ours: list[BaseException] = []
        await self._mapped(self._resp.pour_on_loop(_recording(write, ours), _ignore), ours)

    async def _mapped(self, pouring: Awaitable[None], ours: list[BaseException]) -> None:
        try:
            await pouring
        except (asyncio.TimeoutError, OSError, WireError) as e:
            if any(e is mine for mine in ours):
                raise
            raise transport_error(f"download from {self.url} failed", self.url, e) from e


def _recording(call: Callable[[A], R], raised: list[BaseException]) -> Callable[[A], R]:
    """``call``, noting in ``raised`` what it raises (the caller's failure, not the peer's)."""

    def recorded(arg: A) -> R:
        try:
            return call(arg)
        except BaseException as e:
            raised.append(e)
            raise

    return recorded


def _ignore(_: int) -> None:
    pass
