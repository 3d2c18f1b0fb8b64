"""Registry authentication as pure logic: challenges, token responses, a token cache.

No I/O here, so every rule is testable without a network; ``registry.token`` does the requests.
"""

from __future__ import annotations

import base64
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import Unauthorized

#: Tokens without ``expires_in`` are valid for 60 s, per the distribution token spec.
DEFAULT_TOKEN_LIFETIME = 60
#: Refresh a little early so a token does not expire between the check and the request.
_EXPIRY_MARGIN = 5

_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never print a password into a log or traceback
        return f"Credentials(username={self.username!r}, password=***)"

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # lowercased: "bearer" or "basic"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parse_challenge(header: str) -> Challenge:
    """Parse one ``WWW-Authenticate`` value: ``Bearer realm="...",service="...",scope="..."``."""
    header = header.strip()
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return Challenge(scheme.lower(), params)


def pull_scope(path: str) -> str:
    return f"repository:{path}:pull"


def push_scope(path: str) -> str:
    return f"repository:{path}:pull,push"


def parse_token_response(body: Any, realm: str) -> tuple[str, float]:
    """Return ``(token, lifetime_seconds)`` from a token endpoint's JSON answer."""
    if not isinstance(body, dict):
        raise Unauthorized(f"token endpoint {realm} returned no JSON object", url=realm)
    token = body.get("token") or body.get("access_token")
    if not isinstance(token, str) or not token:
        raise Unauthorized(f"token endpoint {realm} returned no token", url=realm)
    lifetime = body.get("expires_in")
    if (
        not isinstance(lifetime, (int, float))
        or isinstance(lifetime, bool)
        or not math.isfinite(lifetime)  # json.loads accepts NaN and Infinity
        or lifetime <= 0
    ):
        lifetime = DEFAULT_TOKEN_LIFETIME
    return token, float(lifetime)


class TokenCache:
    """Bearer tokens keyed by (registry, scope), dropped when they expire."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}

    def get(self, registry: str, scope: str) -> str | None:
        entry = self._tokens.get((registry, scope))
        if entry is None:
            return None
        token, expires = entry
        if self._clock() >= expires:
            del self._tokens[(registry, scope)]
            return None
        return token

    def put(self, registry: str, scope: str, token: str, lifetime: float) -> None:
        expires = self._clock() + max(lifetime - _EXPIRY_MARGIN, 1.0)
        self._tokens[(registry, scope)] = (token, expires)

    def drop(self, registry: str, scope: str) -> None:
        self._tokens.pop((registry, scope), None)
