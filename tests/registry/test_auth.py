"""Registry auth as pure logic: challenges, token responses, the token cache, credentials."""

from __future__ import annotations

from typing import Any

import pytest

from puller.errors import PullError, RegistryError, Unauthorized
from puller.registry.auth import (
    DEFAULT_TOKEN_LIFETIME,
    Challenge,
    Credentials,
    TokenCache,
    parse_challenge,
    parse_token_response,
    pull_scope,
)

# -- WWW-Authenticate ------------------------------------------------------------------------------

CHALLENGES: list[tuple[str, str, dict[str, str]]] = [
    # Docker Hub's exact challenge
    (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/redis:pull"',
        "bearer",
        {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:library/redis:pull",
        },
    ),
    # spaces after commas and around "=", as some registries send
    (
        'Bearer realm="https://r.example/token", service="r.example" , scope = "repository:a:pull"',
        "bearer",
        {"realm": "https://r.example/token", "service": "r.example", "scope": "repository:a:pull"},
    ),
    # a quoted comma is part of the value (several actions in one scope)
    (
        'Bearer realm="https://r.example/token",scope="repository:team/app:pull,push"',
        "bearer",
        {"realm": "https://r.example/token", "scope": "repository:team/app:pull,push"},
    ),
    # escaped quotes and backslashes inside a quoted string
    (
        r'Bearer realm="https://r.example/token",error="say \"hi\"",path="a\\b"',
        "bearer",
        {"realm": "https://r.example/token", "error": 'say "hi"', "path": "a\\b"},
    ),
    # unquoted (token) values end at a comma
    (
        "Bearer realm=https://r.example/token,service=r.example",
        "bearer",
        {"realm": "https://r.example/token", "service": "r.example"},
    ),
    # an empty quoted value is kept as empty
    (
        'Bearer realm="https://r.example/token",scope=""',
        "bearer",
        {"realm": "https://r.example/token", "scope": ""},
    ),
    # the scheme and parameter names are case-insensitive: both come back lowercased
    (
        'BEARER Realm="https://r.example/token",SERVICE="svc"',
        "bearer",
        {"realm": "https://r.example/token", "service": "svc"},
    ),
    ('bEaReR realm="x"', "bearer", {"realm": "x"}),
    # Basic, with and without a realm
    ('Basic realm="Registry Realm"', "basic", {"realm": "Registry Realm"}),
    ('basic realm="fake"', "basic", {"realm": "fake"}),
    ("Basic", "basic", {}),
    # surrounding whitespace is ignored
    ('  Basic realm="fake"  ', "basic", {"realm": "fake"}),
    # the error parameter of an insufficient-scope challenge is kept
    (
        'Bearer realm="https://r.example/token",error="insufficient_scope"',
        "bearer",
        {"realm": "https://r.example/token", "error": "insufficient_scope"},
    ),
    # parsing stops at trailing garbage instead of inventing parameters
    (
        'Bearer realm="https://r.example/token" garbage',
        "bearer",
        {"realm": "https://r.example/token"},
    ),
]


@pytest.mark.parametrize(("header", "scheme", "params"), CHALLENGES)
def test_parse_challenge(header: str, scheme: str, params: dict[str, str]) -> None:
    challenge = parse_challenge(header)
    assert challenge == Challenge(scheme, params)
    assert challenge.realm == params.get("realm")


def test_challenge_without_realm_has_none() -> None:
    assert parse_challenge('Bearer service="x"').realm is None


def test_pull_scope() -> None:
    assert pull_scope("library/redis") == "repository:library/redis:pull"


# -- token responses -------------------------------------------------------------------------------

REALM = "https://auth.example/token"

TOKEN_RESPONSES: list[tuple[Any, str, float]] = [
    ({"token": "abc", "expires_in": 300}, "abc", 300.0),
    ({"access_token": "abc", "expires_in": 300}, "abc", 300.0),
    # both given (Docker Hub does this): either is the same token, "token" wins
    ({"token": "t", "access_token": "a", "expires_in": 120}, "t", 120.0),
    # an empty "token" falls through to "access_token"
    ({"token": "", "access_token": "a"}, "a", float(DEFAULT_TOKEN_LIFETIME)),
    # expires_in absent, zero, negative, a bool, a string or null: the spec's default of 60 s
    ({"token": "abc"}, "abc", 60.0),
    ({"token": "abc", "expires_in": 0}, "abc", 60.0),
    ({"token": "abc", "expires_in": -5}, "abc", 60.0),
    ({"token": "abc", "expires_in": True}, "abc", 60.0),
    ({"token": "abc", "expires_in": False}, "abc", 60.0),
    ({"token": "abc", "expires_in": "300"}, "abc", 60.0),
    ({"token": "abc", "expires_in": None}, "abc", 60.0),
    # NaN and Infinity (Python's json accepts both) are no lifetime either: a NaN expiry would
    # never compare as passed, so the cache would keep the token forever
    ({"token": "abc", "expires_in": float("nan")}, "abc", 60.0),
    ({"token": "abc", "expires_in": float("inf")}, "abc", 60.0),
    # fractional lifetimes are kept
    ({"token": "abc", "expires_in": 2.5}, "abc", 2.5),
]


@pytest.mark.parametrize(("body", "token", "lifetime"), TOKEN_RESPONSES)
def test_parse_token_response(body: Any, token: str, lifetime: float) -> None:
    assert parse_token_response(body, REALM) == (token, lifetime)


def test_default_token_lifetime_is_the_specs_60_seconds() -> None:
    assert DEFAULT_TOKEN_LIFETIME == 60


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"expires_in": 300},
        {"token": ""},
        {"token": None},
        {"token": 123},
        {"access_token": ["abc"]},
        {"details": "incorrect username or password"},
        [],
        ["abc"],
        "abc",
        None,
    ],
)
def test_token_response_without_a_token_is_unauthorized(body: Any) -> None:
    with pytest.raises(Unauthorized) as info:
        parse_token_response(body, REALM)
    assert REALM in str(info.value)
    assert info.value.url == REALM
    assert isinstance(info.value, RegistryError)
    assert isinstance(info.value, PullError)


# -- the token cache -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_cached_token_is_returned_until_shortly_before_it_expires() -> None:
    clock = FakeClock()
    cache = TokenCache(clock=clock)
    cache.put("r.example", "repository:a:pull", "tok", 60)
    assert cache.get("r.example", "repository:a:pull") == "tok"
    clock.now += 54.9
    assert cache.get("r.example", "repository:a:pull") == "tok"
    clock.now += 0.1  # 55 s: refreshed a little early (5 s margin)
    assert cache.get("r.example", "repository:a:pull") is None
    # and stays gone even if the clock were to go back
    clock.now -= 30
    assert cache.get("r.example", "repository:a:pull") is None


def test_tokens_are_keyed_by_registry_and_scope() -> None:
    cache = TokenCache(clock=FakeClock())
    cache.put("r.example", "repository:a:pull", "a", 300)
    cache.put("r.example", "repository:b:pull", "b", 300)
    cache.put("other.example", "repository:a:pull", "c", 300)
    assert cache.get("r.example", "repository:a:pull") == "a"
    assert cache.get("r.example", "repository:b:pull") == "b"
    assert cache.get("other.example", "repository:a:pull") == "c"
    assert cache.get("r.example", "repository:c:pull") is None
    assert cache.get("third.example", "repository:a:pull") is None


def test_a_newer_token_replaces_the_old_one() -> None:
    clock = FakeClock()
    cache = TokenCache(clock=clock)
    cache.put("r", "s", "old", 10)
    clock.now += 4
    cache.put("r", "s", "new", 300)
    clock.now += 100
    assert cache.get("r", "s") == "new"


def test_drop_forgets_one_token() -> None:
    cache = TokenCache(clock=FakeClock())
    cache.put("r", "s", "tok", 300)
    cache.put("r", "t", "other", 300)
    cache.drop("r", "s")
    cache.drop("r", "never-cached")  # no error
    assert cache.get("r", "s") is None
    assert cache.get("r", "t") == "other"


@pytest.mark.parametrize("lifetime", [0.5, 1, 5, 6])
def test_short_lived_token_is_usable_for_at_least_a_second(lifetime: float) -> None:
    clock = FakeClock()
    cache = TokenCache(clock=clock)
    cache.put("r", "s", "tok", lifetime)
    clock.now += 0.99
    assert cache.get("r", "s") == "tok"
    clock.now += max(lifetime - 5, 1.0)
    assert cache.get("r", "s") is None


# -- credentials -----------------------------------------------------------------------------------


def test_credentials_repr_hides_the_password() -> None:
    creds = Credentials("alice", "s3cr3t-pa55")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds]), repr({"host": creds})):
        assert "s3cr3t-pa55" not in text
        assert "alice" in text
        assert "***" in text


@pytest.mark.parametrize(
    ("username", "password", "header"),
    [
        ("u", "p", "Basic dTpw"),
        ("alice", "s3cr3t", "Basic YWxpY2U6czNjcjN0"),
        # a colon in the password is kept: only the first colon separates
        ("bob", "a:b", "Basic Ym9iOmE6Yg=="),
        ("user", "", "Basic dXNlcjo="),
        # non-ASCII is sent as UTF-8
        ("jos\u00e9", "\u00fc", "Basic am9zw6k6w7w="),
    ],
)
def test_credentials_basic_header(username: str, password: str, header: str) -> None:
    assert Credentials(username, password).basic() == header


def test_credentials_are_immutable_values() -> None:
    creds = Credentials("u", "p")
    assert creds == Credentials("u", "p")
    assert hash(creds) == hash(Credentials("u", "p"))
    with pytest.raises(AttributeError):
        creds.password = "other"  # type: ignore[misc]
