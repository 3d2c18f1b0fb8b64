"""What an HTTP answer, or its absence, means in pypull's errors: a registry's error answer
(status, ``errors[0].code`` and message, ``Retry-After``, Docker Hub's quota header) raised as
``NotFound``, ``Unauthorized``, ``QuotaExhausted`` or ``RegistryError``; a failure below HTTP
(refused, reset, a timeout, a TLS handshake cut off) as ``Unreachable``, which is retried, or, when
asking again cannot help (a certificate, a malformed answer, a name that does not resolve), as
``RegistryError``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from typing import NoReturn, Protocol

from ..errors import (
    NotFound,
    QuotaExhausted,
    RegistryError,
    TLSFailure,
    Unauthorized,
    Unreachable,
)
from ..http.errors import (
    BadRedirect,
    BadRequest,
    BadURL,
    BodyTimeout,
    CannotResolve,
    MalformedAnswer,
    ProxyError,
    RedirectCertificateError,
    TooManyRedirects,
    Unsupported,
    WireError,
)
from ..http.message import MAX_LENGTH_DIGITS, Headers


class Answer(Protocol):
    """What the mapping reads of an answer (an ``http.connection.Response``)."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Headers: ...
    async def read(self, limit: int) -> bytes: ...


async def raise_for_status(resp: Answer, what: str, url: str) -> NoReturn:
    raise_status(resp.status, resp.headers, await error_body(resp), what, url)


async def error_body(resp: Answer) -> bytes:
    """The first 64 KiB of an error answer's body (what a registry says is in there)."""
    try:
        return await resp.read(64 * 1024)
    except (OSError, asyncio.TimeoutError, WireError):
        return b""


#: What Go's net/http (the distribution registry's server) answers a plain-HTTP request on a
#: TLS port with, as a 400.
_HTTPS_ONLY = b"Client sent an HTTP request to an HTTPS server"


def raise_status(status: int, headers: Headers, body: bytes, what: str, url: str) -> NoReturn:
    """The error a registry's non-success answer means, with its own message if it sent one."""
    code, message = error_detail(body)
    detail = message or (code.lower().replace("_", " ") if code else None)
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status == 404 or code in ("MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN"):
        raise NotFound(
            f"{what} not found: {detail or 'HTTP 404'}", status=status, code=code, url=url
        )
    if status == 429 and _quota_spent(headers.get("RateLimit-Remaining")):
        raise QuotaExhausted(
            f"{what} at {url}: {detail or 'HTTP 429'} (ratelimit-remaining: 0)",
            status=status,
            code=code,
            url=url,
            retry_after=retry_after,
        )
    if status in (401, 403):
        raise Unauthorized(
            f"{what} at {url}: unauthorized: {detail or f'HTTP {status}'}",
            status=status,
            code=code,
            url=url,
        )
    if status == 400 and url.startswith("http://") and _HTTPS_ONLY in body:
        detail = (
            "the server speaks HTTPS only and was asked over plain HTTP: set its server to "
            "https:// in config.toml, or give --tls-verify=false (copy: --src-/--dest-tls-verify)"
        )
    raise RegistryError(
        f"{what} at {url}: HTTP {status}" + (f": {detail}" if detail else ""),
        status=status,
        code=code,
        url=url,
        retry_after=retry_after,
    )


def error_detail(body: bytes) -> tuple[str | None, str | None]:
    """The first ``{"errors":[{"code","message"}]}`` entry of a registry error body."""
    try:
        doc = json.loads(body)
        err = doc["errors"][0]
        code = err.get("code")
        message = err.get("message")
        return (
            code if isinstance(code, str) else None,
            message if isinstance(message, str) else None,
        )
    except (ValueError, RecursionError, KeyError, IndexError, TypeError, AttributeError):
        return None, None


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        import email.utils  # 4 ms of start-up, for an HTTP date that seldom comes

        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now())


def number(text: str) -> int | None:
    """A decimal of at most 20 digits (no blob is larger), else None: never a 5,000-digit
    int() that Python refuses."""
    if text.isascii() and text.isdigit() and len(text) <= MAX_LENGTH_DIGITS:
        return int(text)
    return None


def remaining(value: str | None) -> int | None:
    """``ratelimit-remaining: 76;w=21600`` (Docker Hub): 76 pulls left in the window."""
    if value is None:
        return None
    return number(value.split(";", 1)[0].strip())


def _quota_spent(value: str | None) -> bool:
    """``ratelimit-remaining: 0;w=21600`` (Docker Hub): nothing left of the quota."""
    return remaining(value) == 0


def broken_link(e: RegistryError) -> bool:
    """A 5xx to a HEAD of a blob: counted as "not there". Distribution, after a full disk,
    leaves empty link files and answers 500 to a HEAD of those blobs for good, and only an
    upload mends them (its closing PUT's digest check still guards the bytes)."""
    return e.status is not None and 500 <= e.status <= 599


def _permanent(e: BaseException) -> bool:
    """A transport failure that asking again will not cure. A malformed answer is one: the
    server (or the proxy in front of it) that wrote a control byte or a second Content-Length
    into a head writes it again, so retrying only adds the backoff's seconds before the same
    error; a mirror that sends one hands over to the next endpoint without a retry."""
    if isinstance(e, ProxyError):
        return e.permanent
    return isinstance(
        e,
        (
            ssl.SSLCertVerificationError,
            TooManyRedirects,
            BadURL,
            BadRequest,
            Unsupported,
            BadRedirect,
            CannotResolve,
            RedirectCertificateError,
            MalformedAnswer,
        ),
    )


def tls_error(what: str, url: str, e: ssl.SSLError) -> RegistryError:
    if isinstance(e, ssl.SSLEOFError):  # cut off mid-handshake: may pass
        return transport_error(what, url, e)
    # A TLS handshake that fails (plain HTTP on the port, no common protocol, a
    # certificate) fails the same way next time.
    return TLSFailure(f"{what}: {_why(e)}", url=url)


def transport_error(what: str, url: str, e: BaseException) -> RegistryError:
    """A failure below HTTP: ``Unreachable`` (retried) unless it is one that cannot pass."""
    if isinstance(e, (ssl.SSLCertVerificationError, RedirectCertificateError)):
        return TLSFailure(f"{what}: {_why(e)}", url=url)
    if _permanent(e):
        return RegistryError(f"{what}: {_why(e)}", url=url)
    timed_out = isinstance(e, (asyncio.TimeoutError, TimeoutError))
    return Unreachable(f"{what}: {_why(e)}", url=url, timed_out=timed_out)


def _why(e: BaseException) -> str:
    """An exception as a few words."""
    if isinstance(e, BodyTimeout):
        return str(e)
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    if isinstance(e, TooManyRedirects):
        return "too many redirects"
    if isinstance(e, ssl.SSLCertVerificationError) and e.verify_message:
        return f"certificate verify failed: {e.verify_message}"
    text = str(e) or type(e).__name__
    return text.splitlines()[0] if text else type(e).__name__
