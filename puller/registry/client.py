"""The registry client: the only module that knows the registry API's URLs and auth. Every
request it makes, token endpoints included, goes through ``http.client.Client``.

It speaks the read side of the OCI distribution API (manifests and blobs), answers auth challenges
(Bearer tokens from the realm, or Basic), and turns every failure into a ``RegistryError`` whose
message names what was asked for and where.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import NoReturn, TypeVar
from urllib.parse import quote, urlencode, urljoin, urlsplit

from ..errors import (
    InvalidDigest,
    ManifestError,
    RegistryError,
    Unauthorized,
    Unreachable,
)
from ..http.client import Client, ProxyFor, default_tls, same_origin
from ..http.connection import Response
from ..http.errors import (
    CannotResolve,
    RedirectCertificateError,
    WireError,
)
from ..http.message import Chunk, Headers, RequestBody
from ..http.pour import LoopWrite, Write
from ..oci.digest import Digest, digest_of, parse_digest
from ..oci.manifest import ACCEPT, MAX_MANIFEST_SIZE
from ..oci.reference import Reference
from ..text import shown
from .auth import (
    Credentials,
    pull_scope,
    push_scope,
)
from .endpoint import BASE_HEADERS, Endpoint
from .status import (
    error_body,
    error_detail,
    number,
    raise_for_status,
    raise_status,
    remaining,
    tls_error,
    transport_error,
)
from .token import Authorizer

A = TypeVar("A")
R = TypeVar("R")


#: One page of a tag listing; a registry's pages are at most a few hundred KiB.
MAX_TAGS_PAGE = 4 << 20
#: Pages of one listing, and tags in all: bounds for a registry whose Link never ends.
MAX_TAG_PAGES = 10_000
MAX_TAGS = 1_000_000
#: Chunks of a PATCH upload when the registry states no minimum, and the most we hold for one.
DEFAULT_CHUNK = 8 << 20
MAX_CHUNK = 64 << 20
#: Times one upload asks its session where it stands and goes on from there (after a 416, or a
#: request cut off) before it gives up, and a retry, if any, starts it afresh.
MAX_UPLOAD_RESUMES = 3


@dataclass(frozen=True, slots=True)
class ManifestResponse:
    raw: bytes
    content_type: str | None
    digest: str | None  # Docker-Content-Digest, unvalidated
    url: str


class RegistryClient:
    """One HTTP session, shared by every pull of a process, with a token cache."""

    def __init__(
        self,
        *,
        credentials: Mapping[str, Credentials] | None = None,
        lookup: Callable[[str], Credentials | None] | None = None,
        timeout: float = 30.0,
        proxies: Callable[[Endpoint], ProxyFor | None] | None = None,
    ) -> None:
        """``credentials`` by registry name win over ``lookup(name)`` (docker's config.json);
        either is asked only for the endpoint's own name, so a mirror never gets the
        credentials of the registry it mirrors. ``proxies(endpoint)`` picks the proxy rule
        for the requests made on an endpoint's behalf, its token endpoint and redirects
        included (see ``proxy``); without it, every request goes direct."""
        self._ssl: dict[tuple[bool, str | None], ssl.SSLContext] = {}
        self._timeout = timeout
        self._proxies = proxies
        self.http = Client(timeout=timeout)
        self.auth = Authorizer(credentials, lookup, self._token_request, self._tls)
        #: The last ``ratelimit-remaining`` each host sent (Docker Hub's pull quota).
        self.rate_limits: dict[str, int] = {}

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.close()

    # -- auth and TLS ---------------------------------------------------------------------------

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

    def _proxy_for(self, endpoint: Endpoint) -> ProxyFor | None:
        return self._proxies(endpoint) if self._proxies else None

    async def _token_request(
        self,
        endpoint: Endpoint,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        tls: ssl.SSLContext | None,
    ) -> Response:
        """A request to a token endpoint on ``endpoint``'s behalf: no redirects."""
        return await self.http.request(
            method,
            url,
            headers,
            body=body,
            tls=tls,
            max_redirects=0,
            proxy_for=self._proxy_for(endpoint),
        )

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

    @asynccontextmanager
    async def _request(
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
                # A redirect target's 401 is not the registry's: its challenge must not choose
                # where our credentials go.
                if resp.status == 401 and attempt == 0 and ours and same_origin(resp.url, url):
                    challenge = resp.headers.get("WWW-Authenticate")
                    if auth and auth == self.auth.header(endpoint, scope):
                        self.auth.drop(endpoint, scope)  # expired or revoked
                    resp.release()
                    await self.auth.authenticate(endpoint, scope, challenge, url)
                    continue
                left = remaining(resp.headers.get("ratelimit-remaining"))
                if left is not None and ours:
                    self.rate_limits[endpoint.host] = left
                yield resp
                return
            finally:
                resp.release()
        raise AssertionError("unreachable")  # pragma: no cover

    # -- API --------------------------------------------------------------------------------------

    async def check_login(self, endpoint: Endpoint) -> None:
        """What ``docker login`` does: ``GET /v2/`` with the credentials; raise unless 200.

        A registry that answers without asking for credentials cannot tell good ones from bad,
        so that is an error too: nothing unchecked gets stored."""
        url = f"{endpoint.url}/v2/"
        probe = await self._send(endpoint, url, {})
        probe.release()
        if probe.status == 200:
            raise RegistryError(
                f"{endpoint.url} does not ask for credentials, so they cannot be checked; "
                "nothing stored",
                status=200,
                url=url,
            )
        async with self._request(endpoint, "", url, {}) as resp:
            if resp.status != 200:
                await raise_for_status(resp, f"login to {endpoint.credentials_name}", url)

    async def get_manifest(self, endpoint: Endpoint, ref: Reference) -> ManifestResponse:
        url = f"{endpoint.url}/v2/{ref.path}/manifests/{ref.identifier}"
        pinned = ref.digest is not None  # checked against it: may come over plain http
        async with self._request(
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
        async with self._request(endpoint, path, url, headers, downgrade=True) as resp:
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
        async with self._request(
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

    async def blob_exists(
        self, endpoint: Endpoint, path: str, digest: Digest, *, scope: str | None = None
    ) -> bool:
        """Whether the repository holds the blob (HEAD: 200 yes, 404 no)."""
        url = f"{endpoint.url}/v2/{path}/blobs/{digest}"
        async with self._request(endpoint, path, url, {}, method="HEAD", scope=scope) as resp:
            if resp.status == 200:
                return True
            if resp.status == 404:
                return False
            await raise_for_status(resp, f"blob {digest}", url)

    async def list_tags(
        self, endpoint: Endpoint, path: str, *, page_size: int | None = None
    ) -> list[str]:
        """Every tag of a repository, following ``Link: <...>; rel="next"`` exactly as given
        (relative or absolute, with whatever opaque token it carries), on the registry's own
        origin only: a Link elsewhere would take our credentials along."""
        url = f"{endpoint.url}/v2/{path}/tags/list"
        if page_size:
            url += f"?n={page_size}"
        tags: list[str] = []
        seen = {url}
        for _ in range(MAX_TAG_PAGES):
            async with self._request(endpoint, path, url, {"Accept": "application/json"}) as resp:
                if resp.status != 200:
                    await raise_for_status(resp, f"tags of {path}", url)
                try:
                    body = await resp.read(MAX_TAGS_PAGE + 1)
                except (OSError, asyncio.TimeoutError, WireError) as e:
                    raise transport_error(f"reading tags from {url} failed", url, e) from e
                link = resp.headers.get("Link")
            if len(body) > MAX_TAGS_PAGE:
                raise RegistryError(f"tags of {path} from {url}: a page over 4 MiB", url=url)
            tags.extend(_tag_page(body, path, url))
            if len(tags) > MAX_TAGS:
                raise RegistryError(f"tags of {path} from {url}: over {MAX_TAGS} tags", url=url)
            following = _next_link(link)
            if following is None:
                return tags
            try:
                url = urljoin(url, following)
            except ValueError:
                raise RegistryError(
                    f"tags of {path}: an invalid Link {following[:200]!r}"
                ) from None
            if not same_origin(url, endpoint.url):
                raise RegistryError(
                    f"tags of {path}: {endpoint.url} links to another origin ({url[:200]})",
                    url=url,
                )
            if url in seen:
                raise RegistryError(f"tags of {path}: the Link pages go round in a circle", url=url)
            seen.add(url)
        raise RegistryError(f"tags of {path}: more than {MAX_TAG_PAGES} pages", url=url)

    async def upload_blob(
        self,
        endpoint: Endpoint,
        path: str,
        digest: Digest,
        size: int,
        content: Callable[[], AsyncIterable[Chunk]],
        *,
        mount_from: str | None = None,
        chunk_size: int | None = None,
    ) -> str:
        """Put a blob into ``path``: ``"mounted"`` from ``mount_from`` (another repository of
        the same registry) when the registry can, else ``"uploaded"``.

        The POST earns the push token before any byte of the body is sent. The body goes in
        one streamed PUT; if the registry refuses that (413), or ``chunk_size`` asks for it,
        in PATCH chunks of at least its ``OCI-Chunk-Min-Length``, counting what was sent
        rather than trusting its ``Range``. ``content()`` yields the blob from its start, and
        may be called again: an upload cut off mid-body (or a chunk answered 416) asks the
        session what it holds and goes on from there, reading ``content()`` afresh and
        skipping what the session has; a session that is gone is started anew.
        """
        scope = push_scope(path)
        base = f"{endpoint.url}/v2/{path}/blobs/uploads/"
        if mount_from:
            query = urlencode({"mount": str(digest), "from": mount_from})
            session: _Session | None = None
            try:
                async with self._request(
                    endpoint, path, f"{base}?{query}", {}, method="POST", scope=scope
                ) as resp:
                    if resp.status == 201:
                        return "mounted"
                    if resp.status == 202:  # an upload session instead: continue there
                        session = _upload_session(resp, base)
            except Unreachable:
                raise
            except RegistryError:
                pass  # any refusal of the mount (a Harbor 401, say): a plain upload
            if session is not None:
                return await self._upload_into(
                    endpoint, path, digest, size, content, session, chunk_size
                )
        session = await self._open_upload(endpoint, path, digest)
        return await self._upload_into(endpoint, path, digest, size, content, session, chunk_size)

    async def _open_upload(self, endpoint: Endpoint, path: str, digest: Digest) -> _Session:
        """POST a new upload session (which earns the push token before any body is sent)."""
        base = f"{endpoint.url}/v2/{path}/blobs/uploads/"
        async with self._request(
            endpoint, path, base, {}, method="POST", scope=push_scope(path)
        ) as resp:
            if resp.status != 202:
                await self._raise_push_status(resp, endpoint, path, f"upload of {digest}", base)
            return _upload_session(resp, base)

    async def _upload_into(
        self,
        endpoint: Endpoint,
        path: str,
        digest: Digest,
        size: int,
        content: Callable[[], AsyncIterable[Chunk]],
        session: _Session,
        chunk_size: int | None,
    ) -> str:
        """Send the blob into ``session``: one PUT unless ``chunk_size`` or a 413 asks for
        chunks; after an interruption, on from what the session holds (at most
        ``MAX_UPLOAD_RESUMES`` times)."""
        up = _Upload(endpoint, path, digest, size, content)
        up.begin(session)
        whole = chunk_size is None
        resumes = 0
        while True:
            try:
                if whole and up.offset == 0:
                    if await self._put_whole(up):
                        return "uploaded"
                    # Too large for one request: a new session, in chunks.
                    whole = False
                    up.begin(await self._open_upload(endpoint, path, digest))
                    continue
                await self._put_chunks(up, chunk_size)
                return "uploaded"
            except _Interrupted as stop:
                resumes += 1
                if resumes > MAX_UPLOAD_RESUMES:
                    raise stop.error from None
                held = await self._upload_status(up)
                if held is not None:
                    up.offset = held
                    continue
                if up.reached >= size and await self.blob_exists(
                    endpoint, path, digest, scope=push_scope(path)
                ):
                    return "uploaded"  # the closing PUT went through; its answer did not
                up.begin(await self._open_upload(endpoint, path, digest))

    async def _put_whole(self, up: _Upload) -> bool:
        """The blob in one streamed PUT that closes the session; False if the registry wants
        chunks (413)."""
        url = _with_digest(up.url, up.digest)
        theirs: list[BaseException] = []  # what content() raised: the source's, not the target's
        bodies: list[AsyncIterator[Chunk]] = []  # (a second after a 401)

        def body() -> AsyncIterator[Chunk]:
            bodies.append(_counted(up, theirs))
            return bodies[-1]

        try:
            async with self._request(
                up.endpoint,
                up.path,
                url,
                {"Content-Type": "application/octet-stream"},
                method="PUT",
                scope=push_scope(up.path),
                body=body,
                length=up.size,
            ) as resp:
                if resp.status == 413:
                    return False
                await self._closed(resp, up, url)
                return True
        except Unreachable as e:
            if e in theirs or e.__cause__ in theirs:
                raise
            raise _Interrupted(e) from e
        finally:
            for sent in bodies:  # a body cut short: its source stops now, not when collected
                await _close(sent)

    async def _put_chunks(self, up: _Upload, chunk_size: int | None) -> None:
        """PATCH the blob from ``up.offset`` on, then PUT to close the session. A chunk
        answered 416, or any request cut off, raises ``_Interrupted``."""
        where = f"{up.what} to {up.path}"
        step = max(chunk_size or DEFAULT_CHUNK, up.min_chunk)
        if step > MAX_CHUNK:
            raise RegistryError(
                f"{where}: {up.endpoint.url} wants chunks of at least {up.min_chunk} bytes, "
                f"over the {MAX_CHUNK >> 20} MiB pypull holds at once",
                url=up.url,
            )
        if up.offset < up.size:  # (all there already: only the closing PUT was lost)
            source = up.content()
            try:
                async for chunk in _rechunked(_skipped(source, up.offset), step):
                    await self._patch(up, chunk)
            finally:
                await _close(source)
        if up.offset != up.size:
            raise RegistryError(f"{where}: {up.offset} of {up.size} bytes to send")
        url = _with_digest(up.url, up.digest)
        try:
            async with self._request(
                up.endpoint, up.path, url, {}, method="PUT", scope=push_scope(up.path)
            ) as resp:
                await self._closed(resp, up, url)
        except Unreachable as e:
            raise _Interrupted(e) from e

    async def _patch(self, up: _Upload, chunk: bytes) -> None:
        """Send the next chunk (``up.offset`` on) and go where the answer says."""
        start, end = up.offset, up.offset + len(chunk)
        if end > up.size:
            raise RegistryError(f"{up.what} to {up.path}: more than the {up.size} bytes due")
        up.reached = max(up.reached, end)
        url = up.url
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{end - 1}",
        }
        try:
            async with self._request(
                up.endpoint,
                up.path,
                url,
                headers,
                method="PATCH",
                scope=push_scope(up.path),
                body=_constant(chunk),
                length=len(chunk),
            ) as resp:
                if resp.status == 416:
                    raise _Interrupted(
                        RegistryError(
                            f"{up.what} to {up.path}: {up.endpoint.host} refused the bytes "
                            f"{start}-{end - 1} (HTTP 416)",
                            status=416,
                            url=url,
                        )
                    )
                if resp.status != 202:
                    await self._raise_push_status(resp, up.endpoint, up.path, up.what, url)
                up.url = _upload_session(resp, url).url
        except Unreachable as e:
            raise _Interrupted(e) from e
        up.offset = end

    async def _closed(self, resp: Response, up: _Upload, url: str) -> None:
        """Check the answer to the PUT that closes an upload session."""
        if resp.status not in (200, 201, 204):
            await self._raise_push_status(resp, up.endpoint, up.path, up.what, url)
        _check_digest(resp, up.digest, f"blob {up.digest} at {up.path}", url)

    async def _upload_status(self, up: _Upload) -> int | None:
        """How many bytes the session holds (GET: ``204`` and ``Range: 0-N``), never more
        than were sent to it; None when it cannot go on (gone, or it does not say)."""
        url = up.url
        async with self._request(up.endpoint, up.path, url, {}, scope=push_scope(up.path)) as resp:
            if resp.status in (401, 403, 429) or resp.status >= 500:
                await self._raise_push_status(resp, up.endpoint, up.path, up.what, url)
            if resp.status not in (200, 204):
                return None  # 404 BLOB_UPLOAD_UNKNOWN, or a registry that cannot say
            held = _upload_range(resp.headers.get("Range"))
            if held is None:
                return None
            if held > up.reached:
                raise RegistryError(
                    f"{up.what} to {up.path}: {up.endpoint.host} says the session holds "
                    f"{held} bytes, but only {up.reached} were sent",
                    url=url,
                )
            if resp.headers.get("Location"):
                up.url = _upload_session(resp, url).url
            min_chunk = number(resp.headers.get("OCI-Chunk-Min-Length") or "")
            up.min_chunk = max(up.min_chunk, min_chunk or 0)
            return held

    async def put_manifest(
        self, endpoint: Endpoint, path: str, reference: str, raw: bytes, media_type: str
    ) -> Digest:
        """PUT a manifest by tag or digest, with its own media type; the registry's
        ``Docker-Content-Digest`` must be the bytes' digest."""
        url = f"{endpoint.url}/v2/{path}/manifests/{reference}"
        digest = digest_of(raw)
        async with self._request(
            endpoint,
            path,
            url,
            {"Content-Type": media_type},
            method="PUT",
            scope=push_scope(path),
            body=lambda: raw,
            length=len(raw),
        ) as resp:
            if resp.status not in (200, 201, 204):
                await self._raise_push_status(resp, endpoint, path, f"manifest {reference}", url)
            _check_digest(resp, digest, f"manifest {reference} of {path}", url)
        return digest

    async def _raise_push_status(
        self, resp: Response, endpoint: Endpoint, path: str, what: str, url: str
    ) -> NoReturn:
        """The error a refused push request means: ``what`` (``upload of sha256:…``,
        ``manifest 1.0``) was to go to ``path`` on ``endpoint``."""
        body = await error_body(resp)
        creds = self.auth.known(endpoint)
        _raise_push_error(resp.status, resp.headers, body, endpoint.host, path, what, url, creds)


@dataclass(frozen=True, slots=True)
class ManifestHead:
    digest: Digest
    media_type: str | None
    size: int | None


@dataclass(frozen=True, slots=True)
class _Session:
    url: str  # where the upload goes on
    min_chunk: int  # OCI-Chunk-Min-Length, or 0


@dataclass(slots=True)
class _Upload:
    """One blob on its way into a registry, and where it stands."""

    endpoint: Endpoint
    path: str
    digest: Digest
    size: int
    content: Callable[[], AsyncIterable[Chunk]]  # the blob from its start, each time called
    url: str = ""  # the session's latest Location
    min_chunk: int = 0
    offset: int = 0  # bytes the session holds, as far as we know
    reached: int = 0  # the most bytes sent into the session: it cannot hold more

    @property
    def what(self) -> str:
        return f"upload of {self.digest}"

    def begin(self, session: _Session) -> None:
        """Start over in ``session``."""
        self.url, self.min_chunk, self.offset, self.reached = session.url, session.min_chunk, 0, 0


class _Interrupted(Exception):
    """An upload request cut off, or a chunk refused with 416: ask the session."""

    def __init__(self, error: RegistryError) -> None:
        super().__init__(str(error))
        self.error = error


def _upload_range(value: str | None) -> int | None:
    """How many bytes an upload session's ``Range: 0-N`` says it holds: N + 1, except that
    ``0-0`` is distribution's answer for an empty session (and for one byte: then the chunk
    from 0 is refused again until the resumes run out). None when it is not of that form."""
    m = _UPLOAD_RANGE.fullmatch((value or "").strip())
    if m is None:
        return None
    end = int(m[1])
    return end + 1 if end else 0


_UPLOAD_RANGE = re.compile(r"(?:bytes=)?0-([0-9]{1,20})")


def _upload_session(resp: Response, request_url: str) -> _Session:
    """The session an upload answer names: its ``Location`` resolved against the request URL,
    relative or absolute, query kept."""
    location = resp.headers.get("Location")
    if not location:
        raise RegistryError(f"{request_url}: an upload answer without a Location", url=request_url)
    try:
        url = urljoin(request_url, location.strip())
    except ValueError:
        raise RegistryError(f"{request_url}: an invalid Location {location[:200]!r}") from None
    return _Session(url, number(resp.headers.get("OCI-Chunk-Min-Length") or "") or 0)


def _with_digest(url: str, digest: Digest) -> str:
    return url + ("&" if urlsplit(url).query else "?") + "digest=" + quote(str(digest), safe=":")


def _check_digest(resp: Response, digest: Digest, what: str, url: str) -> None:
    said = resp.headers.get("Docker-Content-Digest")
    if said is not None and said.strip() != str(digest):
        raise RegistryError(f"{what}: the registry stored {said[:80]!r}, not {digest}", url=url)


def _constant(data: bytes) -> Callable[[], bytes]:
    return lambda: data


async def _counted(up: _Upload, raised: list[BaseException]) -> AsyncIterator[Chunk]:
    """The blob from its start as a request body, raising ``up.reached`` by each piece before
    it goes out, and noting in ``raised`` what ``up.content()`` raised."""
    n = 0
    source = up.content()
    try:
        async for data in source:
            n += len(data)
            up.reached = max(up.reached, n)
            yield data
    except Exception as e:
        raised.append(e)
        raise
    finally:
        await _close(source)


async def _skipped(source: AsyncIterable[Chunk], skip: int) -> AsyncIterator[Chunk]:
    """``source`` without its first ``skip`` bytes."""
    async for data in source:
        if skip >= len(data):
            skip -= len(data)
            continue
        yield data[skip:] if skip else data
        skip = 0


async def _close(source: AsyncIterable[Chunk]) -> None:
    """End an async generator now (its cleanup runs), not when it is collected."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()


async def _rechunked(source: AsyncIterable[Chunk], size: int) -> AsyncIterator[bytes]:
    """``source`` in pieces of ``size`` bytes (the last may be shorter); memory: one piece."""
    pending = bytearray()
    async for data in source:
        pending += data
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


def _next_link(value: str | None) -> str | None:
    """The target of ``rel="next"`` in a Link header (RFC 8288), as given (a comma inside
    ``<...>`` is part of the URL)."""
    for target, params in _LINK.findall(value or ""):
        rels = [p.strip().replace(" ", "").lower() for p in params.split(";")]
        if 'rel="next"' in rels or "rel=next" in rels:
            return str(target)
    return None


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^,;]*)*)")


def _tag_page(body: bytes, path: str, url: str) -> list[str]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise RegistryError(f"tags of {path} from {url}: not JSON", url=url) from None
    tags = doc.get("tags") if isinstance(doc, dict) else None
    if tags is None:
        return []  # a repository without tags says null
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RegistryError(f"tags of {path} from {url}: no list of tags", url=url)
    return tags


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


def _raise_push_error(
    status: int,
    headers: Headers,
    body: bytes,
    host: str,
    path: str,
    what: str,
    url: str,
    creds: Credentials | None,
) -> NoReturn:
    """The error a refused push means, in words: who refused, what, and why."""
    code, message = error_detail(body)
    if status in (401, 403):
        said = f": {shown(message, 200)}" if message and code not in _DENIALS else ""
        hint = "" if creds else f" (no credentials sent: pypull login {host})"
        raise Unauthorized(
            f"denied: {host} does not allow push to {path}{said}{hint}",
            status=status,
            code=code,
            url=url,
        )
    if code == "MANIFEST_BLOB_UNKNOWN":
        blob = _error_digest(body)
        raise RegistryError(
            f"{what} refused by {host}: {path} does not hold "
            f"{f'blob {blob}' if blob else 'a blob'} it names (MANIFEST_BLOB_UNKNOWN)",
            status=status,
            code=code,
            url=url,
        )
    raise_status(status, headers, body, f"{what} to {path}", url)


#: Codes whose message only says "denied" again.
_DENIALS = frozenset({"DENIED", "UNAUTHORIZED"})


def _error_digest(body: bytes) -> str | None:
    """The digest in the first error's ``detail`` (distribution's MANIFEST_BLOB_UNKNOWN gives
    it as a string, others as ``{"digest": ...}``), if it is one."""
    try:
        detail = json.loads(body)["errors"][0].get("detail")
        if isinstance(detail, dict):
            detail = detail.get("digest")
        return str(parse_digest(detail)) if isinstance(detail, str) else None
    except (ValueError, RecursionError, KeyError, IndexError, TypeError, AttributeError):
        return None
