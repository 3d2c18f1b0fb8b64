"""Where a registry's API is served: an ``Endpoint`` (a base URL and how to treat it), the
endpoint of a registry name or a ``--mirror`` URL, failover among endpoints (``try_in_turn``),
and the headers every request to one carries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from ..errors import PullError, most_relevant
from ..http.hosts import is_loopback

T = TypeVar("T")

#: Where Docker Hub's registry API lives; ``docker.io`` is only its name.
DOCKER_HUB_URL = "https://registry-1.docker.io"
USER_AGENT = "pypull/0.1"
#: On every request. Blobs are verified byte for byte: never let anything encode or decode them.
BASE_HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A base URL that serves the ``/v2/`` API for a reference's repository."""

    url: str  # scheme://host[:port], no trailing slash
    mirror: bool = False
    #: "pull": content by digest; "resolve": may also be asked what a tag points at.
    capabilities: frozenset[str] = frozenset({"pull", "resolve"})
    insecure: bool = False  # configured for plain HTTP: credentials may go over it
    skip_verify: bool = False  # TLS without certificate verification
    ca_file: str | None = None  # extra CA to trust for this endpoint
    #: whose credentials apply: the registry name for a registry's own server (docker.io);
    #: None for a mirror, which only gets credentials stored for its own host
    registry: str | None = None

    @property
    def credentials_name(self) -> str:
        return self.registry or self.host

    @property
    def can_resolve(self) -> bool:
        return "resolve" in self.capabilities

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def plain_http(self) -> bool:
        return self.url.startswith("http://")


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """How to reach one registry name: its mirrors in order, then its own server."""

    name: str
    mirrors: tuple[Endpoint, ...] = ()
    server: Endpoint | None = None  # None: derived from the name
    #: its own proxy for http:// and https:// ("": none) and NO_PROXY list; None: the global one
    proxy: str | None = None
    no_proxy: str | None = None
    #: uploads to it go in PATCH chunks of this many MiB (a proxy in front of it that limits
    #: request bodies); None: one streamed PUT, chunks only when it refuses that (413)
    upload_chunk_mib: int | None = None
    #: requests to its own server: at most this many a second, this many at once (None: no limit)
    max_requests_per_second: float | None = None
    max_concurrent_requests: int | None = None

    def own_server(self) -> Endpoint:
        """The registry's own server, never a mirror: where logins and copies write."""
        server = self.server or endpoint_for_domain(self.name)
        if server.registry is None:
            server = dataclasses.replace(server, registry=self.name)
        return server


def endpoint_for_domain(domain: str) -> Endpoint:
    if domain == "docker.io":
        return Endpoint(DOCKER_HUB_URL, registry=domain)
    scheme = "http" if is_loopback(domain) else "https"
    return Endpoint(f"{scheme}://{domain}", registry=domain)


def normalize_mirror(url: str) -> Endpoint:
    """``--mirror`` takes a URL; a bare host is HTTPS unless it is loopback."""
    url = url.strip()
    if "://" not in url:
        url = f"{'http' if is_loopback(url.rstrip('/')) else 'https'}://{url}"
    parts = urlsplit(url)
    url = url.rstrip("/")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"invalid mirror URL {parts.scheme}://...@{parts.hostname}: credentials do not "
            "belong in a mirror URL"
        )
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"invalid mirror URL {url!r}: expected http://host[:port] or https://...")
    if parts.path.rstrip("/") not in ("", "/v2"):
        raise ValueError(f"invalid mirror URL {url!r}: give no path, /v2/ is added")
    return Endpoint(f"{parts.scheme}://{parts.netloc}", mirror=True)


async def try_in_turn(
    endpoints: Sequence[Endpoint],
    attempt: Callable[[Endpoint], Awaitable[T]],
    fatal: tuple[type[PullError], ...] = (),
) -> T:
    """``attempt`` on each endpoint in order until one succeeds: a mirror that fails in any way
    hands over to the next. ``fatal`` errors would be the same everywhere and end the search."""
    errors: list[PullError] = []
    for endpoint in endpoints:
        try:
            return await attempt(endpoint)
        except fatal:
            raise
        except PullError as e:
            errors.append(e)
    if not errors:
        raise ValueError("no endpoints to try")
    raise most_relevant(errors)
