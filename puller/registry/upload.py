"""The write side of the registry client: blobs into a repository (mounted from another one, or
uploaded in one streamed PUT or in PATCH chunks, resumed where an upload session stands after an
interruption) and manifests, as go-containerregistry's ``remote/write.go`` does it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import quote, urlencode, urljoin, urlsplit

from ..errors import PullError, RegistryError, Unauthorized, Unreachable
from ..http.connection import Response
from ..http.message import Chunk, Headers
from ..oci.digest import Digest, digest_of, parse_digest
from ..text import shown
from .auth import Credentials, push_scope
from .endpoint import Endpoint
from .status import (
    broken_link,
    error_body,
    error_detail,
    number,
    raise_for_status,
    raise_status,
)

#: Chunks of a PATCH upload when the registry states no minimum, and the most we hold for one.
DEFAULT_CHUNK = 8 << 20
MAX_CHUNK = 64 << 20
#: Times one upload asks its session where it stands and goes on from there (after a 416, or a
#: request cut off) before it gives up, and a retry, if any, starts it afresh.
MAX_UPLOAD_RESUMES = 3


class Uploads:
    """Blob and manifest uploads, and whether a repository holds a blob: the write side of
    ``client.RegistryClient``, which derives from this class and provides ``request`` (one
    request with auth, a 401 answered) and ``known_credentials`` (for the hint in a refusal).
    """

    request: Callable[..., AbstractAsyncContextManager[Response]]
    known_credentials: Callable[[Endpoint], Credentials | None]
    #: Whether a registry (by base URL) has the Referrers API, as its answer to the PUT of a
    #: manifest with a ``subject`` said (``OCI-Subject``); not there: not known yet.
    referrers_api: dict[str, bool]

    async def blob_exists(
        self, endpoint: Endpoint, path: str, digest: Digest, *, scope: str | None = None
    ) -> bool:
        """Whether the repository holds the blob (HEAD: 200 yes, 404 no)."""
        url = f"{endpoint.url}/v2/{path}/blobs/{digest}"
        async with self.request(endpoint, path, url, {}, method="HEAD", scope=scope) as resp:
            if resp.status == 200:
                return True
            if resp.status == 404:
                return False
            await raise_for_status(resp, f"blob {digest}", url)

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
        asked: bool = True,
    ) -> str:
        """Put a blob into ``path``: ``"mounted"`` from ``mount_from`` (another repository of
        the same registry) when the registry can, else ``"uploaded"``. ``asked=False``: the
        caller mounts without first asking whether ``path`` holds the blob (a round trip saved
        per blob when a record says where it is); a refused mount then asks (HEAD) before any
        byte is sent, and ``"existing"`` is the answer if it does.

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
                async with self.request(
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
            if not asked:
                try:
                    held = await self._holds(endpoint, path, digest, scope)
                except Exception:
                    if session is not None:  # a retry starts over, with a session of its own
                        await self._cancel(endpoint, path, session)
                    raise
                if held:
                    if session is not None:
                        await self._cancel(endpoint, path, session)
                    return "existing"
            if session is not None:
                return await self._upload_into(
                    endpoint, path, digest, size, content, session, chunk_size
                )
        session = await self._open_upload(endpoint, path, digest)
        return await self._upload_into(endpoint, path, digest, size, content, session, chunk_size)

    async def _holds(self, endpoint: Endpoint, path: str, digest: Digest, scope: str) -> bool:
        """``blob_exists``, a 5xx counting as "no" (``status.broken_link``)."""
        try:
            return await self.blob_exists(endpoint, path, digest, scope=scope)
        except RegistryError as e:
            if broken_link(e):
                return False
            raise

    async def _cancel(self, endpoint: Endpoint, path: str, session: _Session) -> None:
        """End an upload session not needed after all (DELETE); the registry's own expiry
        ends it otherwise, so a refusal is no failure."""
        with suppress(PullError):  # Unreachable too: a best effort
            async with self.request(
                endpoint, path, session.url, {}, method="DELETE", scope=push_scope(path)
            ):
                pass

    async def _open_upload(self, endpoint: Endpoint, path: str, digest: Digest) -> _Session:
        """POST a new upload session (which earns the push token before any body is sent)."""
        base = f"{endpoint.url}/v2/{path}/blobs/uploads/"
        async with self.request(
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
            async with self.request(
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
            async with self.request(
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
            async with self.request(
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
        async with self.request(up.endpoint, up.path, url, {}, scope=push_scope(up.path)) as resp:
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
        ``Docker-Content-Digest`` must be the bytes' digest. Refused with
        ``MANIFEST_BLOB_UNKNOWN``, the blobs it names are asked for (``_lost_blob``)."""
        url = f"{endpoint.url}/v2/{path}/manifests/{reference}"
        what = f"manifest {reference}"
        digest = digest_of(raw)
        refused: Callable[[], NoReturn] | None = None
        async with self.request(
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
                body = await error_body(resp)
                creds = self.known_credentials(endpoint)
                args = (resp.status, resp.headers, body, endpoint.host, path, what, url, creds)
                refused = functools.partial(_raise_push_error, *args)
                if resp.status in (401, 403) or error_detail(body)[0] != "MANIFEST_BLOB_UNKNOWN":
                    refused()
            else:
                _check_digest(resp, digest, f"{what} of {path}", url)
                if resp.headers.get("OCI-Subject"):
                    self.referrers_api[endpoint.url] = True
                elif has_subject(raw):
                    self.referrers_api[endpoint.url] = False
        if refused is not None:  # asked once this answer is done with, on the same connection
            await self._lost_blob(endpoint, path, raw, _error_digest(body), what, (args[0], url))
            refused()
        return digest

    async def _lost_blob(
        self,
        endpoint: Endpoint,
        path: str,
        raw: bytes,
        named: str | None,
        what: str,
        answer: tuple[int, str],
    ) -> None:
        """Raise naming the first blob of the refused manifest ``raw`` that a HEAD finds
        missing (the one the registry's error ``named`` first): every blob was placed before
        the manifest, so the registry lost it, or answered 201 to its upload without storing
        it, and this is where that shows. ``answer``: the refusal's status and URL. Returns
        when none is missing (a HEAD that says yes to a blob the registry lacks) or ``raw``
        is no single image's manifest."""
        blobs = _blobs_named(raw)
        blobs.sort(key=lambda d: str(d) != named)
        missing: list[Digest] = []
        for d in dict.fromkeys(blobs):
            try:
                if not await self.blob_exists(endpoint, path, d, scope=push_scope(path)):
                    missing.append(d)
            except PullError:
                continue  # a HEAD that fails says nothing either way
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise RegistryError(
                f"{what} refused by {endpoint.host}: {endpoint.host}/{path} lost blob "
                f"{missing[0]}{more}, placed there before the manifest: a HEAD finds it "
                "missing (MANIFEST_BLOB_UNKNOWN)",
                status=answer[0],
                code="MANIFEST_BLOB_UNKNOWN",
                url=answer[1],
            )

    async def _raise_push_status(
        self, resp: Response, endpoint: Endpoint, path: str, what: str, url: str
    ) -> NoReturn:
        """The error a refused push request means: ``what`` (``upload of sha256:…``,
        ``manifest 1.0``) was to go to ``path`` on ``endpoint``."""
        body = await error_body(resp)
        creds = self.known_credentials(endpoint)
        _raise_push_error(resp.status, resp.headers, body, endpoint.host, path, what, url, creds)


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


def has_subject(raw: bytes) -> bool:
    """Whether a manifest's bytes name a ``subject`` (cheap: most manifests do not)."""
    if b'"subject"' not in raw:
        return False
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and isinstance(doc.get("subject"), dict)


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


def _blobs_named(raw: bytes) -> list[Digest]:
    """The config and layers an image manifest we wrote names (none for an index, whose
    children are manifests): the few fields read here, not the whole parse of ``oci``."""
    try:
        doc = json.loads(raw)
        found = [doc["config"], *doc["layers"]]
        return [parse_digest(d["digest"]) for d in found]
    except (ValueError, RecursionError, KeyError, IndexError, TypeError, AttributeError):
        return []


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
