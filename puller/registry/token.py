"""The auth of a registry client: whose credentials go where, and the answer to a 401.

A challenge names Basic (the credentials go with every request to that host from then on) or
Bearer: a token for the scope is fetched from the realm (the distribution project's token
spec: GET with the credentials, or POST to exchange docker's identity token), vetted first
(``http.hosts.realm_refusal``), one fetch at a time per host and scope, and cached for its
lifetime. The credentials of a registry name are asked for once (``lookup``: docker's
config.json) and never sent over plain HTTP off loopback unless the endpoint is marked
``insecure``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..errors import RegistryError, Unauthorized
from ..http.connection import Response
from ..http.errors import WireError
from ..http.hosts import is_loopback, realm_refusal
from .auth import Credentials, TokenCache, parse_challenge, parse_token_response
from .endpoint import BASE_HEADERS, USER_AGENT, Endpoint
from .status import tls_error, transport_error

#: The username docker's config.json gives an identity token (an OAuth2 refresh token).
IDENTITY_TOKEN_USER = "<token>"
#: A token answer is a few KiB; a token endpoint is any https host a registry names.
MAX_TOKEN_RESPONSE = 1 << 20

#: Sends a request to a token endpoint on an endpoint's behalf (its proxy, no redirects, its
#: request limits): ``(endpoint, method, url, headers, body, tls)`` -> the answer, released on
#: leaving (the limits hold until then).
TokenRequest = Callable[
    [Endpoint, str, str, dict[str, str], bytes | None, ssl.SSLContext | None],
    AbstractAsyncContextManager[Response],
]


class Authorizer:
    """Credentials per registry name, tokens per host and scope, the hosts that asked for Basic,
    and the answer to a challenge. ``send`` makes the token requests and ``tls(endpoint)``
    gives an endpoint's TLS settings, for a realm on its own host (both ``RegistryClient``'s).
    """

    def __init__(
        self,
        credentials: Mapping[str, Credentials] | None,
        lookup: Callable[[str], Credentials | None] | None,
        send: TokenRequest,
        tls: Callable[[Endpoint], ssl.SSLContext],
    ) -> None:
        self._credentials: dict[str, Credentials | None] = dict(credentials or {})
        self._lookup = lookup
        self._tokens = TokenCache()
        self._token_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._basic_hosts: set[str] = set()  # hosts that challenged with Basic
        self._send = send
        self._tls = tls

    def header(self, endpoint: Endpoint, scope: str) -> str | None:
        """The Authorization a request to ``endpoint`` for ``scope`` carries, if any."""
        token = self._tokens.get(endpoint.host, scope)
        if token is not None:
            return f"Bearer {token}"
        if endpoint.host in self._basic_hosts:
            creds = self.known(endpoint)
            return creds.basic() if creds else None
        return None

    def known(self, endpoint: Endpoint) -> Credentials | None:
        """The credentials of the endpoint's name, if they have been looked up and exist."""
        return self._credentials.get(endpoint.credentials_name)

    async def credentials_for(self, endpoint: Endpoint, url: str) -> Credentials | None:
        name = endpoint.credentials_name
        if name not in self._credentials:
            found = None
            if self._lookup is not None:
                found = await asyncio.get_running_loop().run_in_executor(None, self._lookup, name)
            self._credentials[name] = found
        creds = self._credentials[name]
        if (
            creds
            and endpoint.plain_http
            and not endpoint.insecure
            and not is_loopback(endpoint.host)
        ):
            raise Unauthorized(
                f"unauthorized: refusing to send the credentials for {name} to {endpoint.url} over "
                "plain HTTP; set insecure = true for it in the configuration if that is intended",
                url=url,
            )
        return creds

    async def fetched(self, endpoint: Endpoint, scope: str) -> None:
        """Wait while a token for ``scope`` on the endpoint's host is being fetched."""
        fetching = self._token_locks.get((endpoint.host, scope))
        if fetching is not None and fetching.locked():
            async with fetching:
                pass

    def drop(self, endpoint: Endpoint, scope: str) -> None:
        """Forget the token for ``scope`` (expired or revoked)."""
        self._tokens.drop(endpoint.host, scope)

    async def authenticate(
        self, endpoint: Endpoint, scope: str, header: str | None, url: str
    ) -> None:
        """Answer a 401 challenge so that the retried request carries valid auth."""
        if not header:
            raise Unauthorized(
                f"{url}: unauthorized (no WWW-Authenticate challenge)", status=401, url=url
            )
        challenge = parse_challenge(header)
        creds = await self.credentials_for(endpoint, url)
        if challenge.scheme == "basic":
            if creds is None:
                raise Unauthorized(
                    f"unauthorized: {endpoint.host} requires a username and password",
                    status=401,
                    url=url,
                )
            self._basic_hosts.add(endpoint.host)
            return
        if challenge.scheme != "bearer":
            raise Unauthorized(f"{url}: unsupported auth scheme {challenge.scheme!r}", url=url)
        realm = challenge.realm
        if not realm:
            raise Unauthorized(f"{url}: Bearer challenge without a realm", url=url)
        refusal = await realm_refusal(endpoint.url, endpoint.plain_http, realm)
        if refusal:
            raise Unauthorized(f"{url}: refusing token realm {realm}: {refusal}", url=url)
        lock = self._token_locks.setdefault((endpoint.host, scope), asyncio.Lock())
        async with lock:
            if self._tokens.get(endpoint.host, scope) is not None:
                return  # another request fetched it while we waited
            params = {}
            asked = challenge.params.get("scope")
            if asked and not _covers(scope, asked):
                params["scope"] = asked
            elif scope:  # (a login check asks for none)
                # A HEAD before a push is challenged for pull: ask for pull,push at once.
                params["scope"] = scope
            if "service" in challenge.params:
                params["service"] = challenge.params["service"]
            # No redirects: the realm was vetted, a Location it answers with was not, and a
            # refresh token travels in the body, which a redirect would carry anywhere. The
            # endpoint's TLS settings apply when the realm is on the endpoint's own host.
            same_host = urlsplit(realm).netloc == endpoint.host
            tls = self._tls(endpoint) if same_host and not endpoint.plain_http else None
            headers = dict(BASE_HEADERS)
            body: bytes | None = None
            if creds is not None and creds.username == IDENTITY_TOKEN_USER:
                # docker login's identity token is an OAuth2 refresh token (distribution's
                # token spec, "oauth.md"): exchange it by POST.
                method, url = "POST", realm
                form = {
                    **params,
                    "grant_type": "refresh_token",
                    "refresh_token": creds.password,
                    "client_id": USER_AGENT.split("/")[0],
                }
                body = urlencode(form).encode("ascii")
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                method = "GET"
                query = urlencode(params)
                url = realm + (("&" if urlsplit(realm).query else "?") + query if query else "")
                if creds:
                    headers["Authorization"] = creds.basic()
            sending = self._send(endpoint, method, url, headers, body, tls)
            body_text = await self._token_answer(realm, sending)
            if isinstance(body_text, int):
                status = body_text
                if status in (401, 403):
                    raise Unauthorized(
                        f"unauthorized: token endpoint {realm} refused the credentials "
                        f"for {endpoint.host}: HTTP {status}"
                        if creds
                        else f"unauthorized: {endpoint.host} requires a username and "
                        f"password (token endpoint {realm} answered HTTP {status})",
                        status=status,
                        url=realm,
                    )
                raise RegistryError(
                    f"token endpoint {realm} answered HTTP {status}", status=status, url=realm
                )
            try:
                doc: Any = json.loads(body_text)
            except (ValueError, RecursionError):
                doc = None
            token, lifetime = parse_token_response(doc, realm)
            self._tokens.put(endpoint.host, scope, token, lifetime)

    async def _token_answer(
        self, realm: str, sending: AbstractAsyncContextManager[Response]
    ) -> bytes | int:
        """The token endpoint's body, or its status when that is not 200. At most
        ``MAX_TOKEN_RESPONSE`` bytes are read, whatever it sends."""
        async with AsyncExitStack() as answer:
            try:
                resp = await answer.enter_async_context(sending)
            except ssl.SSLError as e:
                raise tls_error(f"cannot reach token endpoint {realm}", realm, e) from e
            except (OSError, asyncio.TimeoutError, WireError) as e:
                raise transport_error(f"cannot reach token endpoint {realm}", realm, e) from e
            return await self._token_body(realm, resp)

    async def _token_body(self, realm: str, resp: Response) -> bytes | int:
        try:
            if resp.status != 200:
                return resp.status
            length = resp.content_length
            too_large = RegistryError(
                f"token endpoint {realm} sent more than 1 MiB, the most a token answer may have",
                url=realm,
            )
            if length is not None and length > MAX_TOKEN_RESPONSE:
                raise too_large
            data = await resp.read(MAX_TOKEN_RESPONSE + 1)
            if len(data) > MAX_TOKEN_RESPONSE:
                raise too_large
            return data
        except (OSError, asyncio.TimeoutError, WireError) as e:
            raise transport_error(f"reading from token endpoint {realm} failed", realm, e) from e


def _covers(ours: str, asked: str) -> bool:
    """Whether the scope we want (``repository:NAME:pull,push``) grants every action of each
    scope a challenge asks for, so that one token serves both."""
    kind, _, rest = ours.partition(":")
    name, _, actions = rest.rpartition(":")
    have = set(actions.split(","))
    for scope in asked.split():
        k, _, r = scope.partition(":")
        n, _, a = r.rpartition(":")
        if (k, n) != (kind, name) or not set(a.split(",")) <= have:
            return False
    return bool(ours)
