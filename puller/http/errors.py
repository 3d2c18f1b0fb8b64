"""The exceptions of the HTTP client, in one tree.

    WireError                     the server's answer is not HTTP/1.x we can read
    ├── MalformedAnswer           it breaks HTTP/1.1's rules: its head, or its chunked framing
    ├── TooManyRedirects          more redirects than ``max_redirects``
    ├── BadURL                    a URL (perhaps from a redirect) that is not http(s)://host[:port]/...
    ├── BadRequest                what we were to send cannot be sent (a line break in a header)
    ├── Unsupported               an answer in a form not read here (a coding other than chunked)
    ├── BadRedirect               a redirect refused: from https to plain http
    ├── CannotResolve             a host name without an address (host)
    ├── ProxyError                the proxy refused to carry the request (status, permanent)
    └── RedirectCertificateError  a redirect's target failed certificate verification (host, url)
    BodyTimeout                   (an ``asyncio.TimeoutError``) no byte for the read timeout, a
                                  stalled body, or a head or small body past its deadline

The client also lets ``OSError`` (refused, reset), ``ssl.SSLError`` and ``asyncio.TimeoutError``
through; ``registry.status`` turns all of them into pypull's errors. ``proxy.UnusableProxy`` (a
``PullError``) is a setting that cannot be used, raised where settings are read, not by the client.

Imports nothing of ours, so every module of the package may import it.
"""

from __future__ import annotations

import asyncio


class WireError(Exception):
    """The server's answer is not HTTP/1.x we can read."""


class MalformedAnswer(WireError):
    """The answer breaks HTTP/1.1's rules: a head no parser should accept (a control byte, a bad
    or conflicting Content-Length, too many or too long lines) or chunked framing that is not.
    The software that wrote it writes it again: asking again does not help."""


class TooManyRedirects(WireError):
    pass


class BadURL(WireError):
    """A URL (perhaps from a redirect) that is not http(s)://host[:port]/..."""


class BadRequest(WireError):
    """What we were to send cannot be sent (a header value with a line break, say); asking again
    would not help."""


class Unsupported(WireError):
    """An answer in a form this module does not read (a transfer coding other than chunked)."""


class BadRedirect(WireError):
    """A redirect we refuse to follow (from https to plain http, for content not checked by
    digest)."""


class CannotResolve(WireError):
    """A host name with no address: asking again will not help (a temporary resolver failure
    has been retried once already)."""

    def __init__(self, host: str, detail: str = "") -> None:
        self.host = host
        super().__init__(f"cannot resolve {host}" + (f": {detail}" if detail else ""))


class ProxyError(WireError):
    """The proxy refused to carry the request (``status``: its answer, 0 if it gave none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        self.status = status
        super().__init__(message)

    @property
    def permanent(self) -> bool:
        return self.status in (401, 403, 405, 407)


class RedirectCertificateError(WireError):
    """A redirect's target (another host) failed certificate verification."""

    def __init__(self, host: str, url: str, reason: str) -> None:
        self.host = host
        self.url = url
        super().__init__(f"the TLS certificate of {host} (a redirect from {url}) {reason}")


class BodyTimeout(asyncio.TimeoutError):
    """No byte arrived for the read timeout (time spent waiting on our own disk not counted),
    the body came slower than ``MIN_RATE``, or a head or small body missed its deadline."""

    def __init__(self, reason: str = "timed out") -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason
