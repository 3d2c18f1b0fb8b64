"""Which hosts are this machine or an internal network, in every spelling the resolver accepts,
and which token realms a registry may send us to."""

from __future__ import annotations

import random
import socket
from collections.abc import Mapping

import pytest

from puller.http.hosts import (
    bare_host,
    internal_address,
    ip_of,
    is_loopback,
    realm_refusal,
    resolve_host,
)

# -- spellings of an address ----------------------------------------------------------------------

#: (spelling, the IPv4 address glibc's inet_aton, and so the resolver, reads it as)
IPV4_FORMS = [
    ("127.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0X7F000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0x7f.0.0.0x1", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("10.1", "10.0.0.1"),
    ("167772161", "10.0.0.1"),
    ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
    ("169.16689662", "169.254.169.254"),
    ("4294967295", "255.255.255.255"),
    ("1.16777215", "1.255.255.255"),
    ("8.8.8.8", "8.8.8.8"),
]
NOT_IPV4 = ["4294967296", "1.16777216", "256.1", "08", "0x", "00x1", "1..1", "1.2.3.4.5", ""]


@pytest.mark.parametrize(("spelling", "address"), IPV4_FORMS)
def test_ip_of_reads_every_inet_aton_form(spelling: str, address: str) -> None:
    assert str(ip_of(spelling)) == address
    # the same reading as the C library's, which the resolver and connect() use
    assert socket.inet_ntoa(socket.inet_aton(spelling)) == address


@pytest.mark.parametrize("text", NOT_IPV4)
def test_ip_of_refuses_what_inet_aton_refuses(text: str) -> None:
    assert ip_of(text) is None
    with pytest.raises(OSError):
        socket.inet_aton(text)


def test_ip_of_agrees_with_inet_aton_on_many_generated_spellings() -> None:
    rng = random.Random(9)
    for _ in range(20_000):
        text = "".join(rng.choice("0017789xXaf.") for _ in range(rng.randint(1, 14)))
        if text.endswith("."):
            continue  # ip_of drops a final dot, as a resolver does for a name
        try:
            expected: str | None = socket.inet_ntoa(socket.inet_aton(text))
        except OSError:
            expected = None
        got = ip_of(text)
        assert (str(got) if got is not None else None) == expected, text


@pytest.mark.parametrize(
    ("host", "bare"),
    [
        ("[::1]:5000", "::1"),
        ("[fe80::1%25eth0]:443", "fe80::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("Registry.Example.:443", "registry.example"),
        ("localhost.", "localhost"),
        ("127.1:5000", "127.1"),
    ],
)
def test_bare_host(host: str, bare: str) -> None:
    assert bare_host(host) == bare


LOOPBACK = [
    "localhost",
    "LOCALHOST:5000",
    "localhost.",
    "127.0.0.1",
    "127.0.0.1:5000",
    "127.1",
    "127.1:5000",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "0x7f.1",
    "127.255.255.254",
    "::1",
    "[::1]:5000",
    "::ffff:127.0.0.1",
    "[::ffff:7f00:1]:80",
    "::127.0.0.1",
]
NOT_LOOPBACK = ["registry.example", "10.0.0.1", "0", "8.8.8.8", "::", "::2:1", "foo.localhost"]


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_in_every_spelling(host: str) -> None:
    assert is_loopback(host)
    assert internal_address(host)


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_not_loopback(host: str) -> None:
    assert not is_loopback(host)


INTERNAL = [
    *LOOPBACK,
    "foo.localhost",
    "10.0.0.1",
    "10.1",
    "167772161",
    "172.16.0.1",
    "192.168.1.1",
    "0xc0a80101",
    "169.254.169.254",  # cloud metadata
    "0xa9fea9fe",
    "100.64.0.1",  # shared (carrier-grade NAT)
    "0.0.0.0",
    "0",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",  # documentation
    "::",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fe80::1%eth0",
    "[fe80::1%25eth0]:443",
    "ff02::1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::10.0.0.1",
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
]
PUBLIC = [
    "8.8.8.8",
    "134744072",  # 8.8.8.8
    "1.1.1.1:443",
    "2606:4700:4700::1111",
    "[2606:4700:4700::1111]:443",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # what DNS64 answers for 8.8.8.8
    "2002:808:808::1",
    "registry.example",  # a name: resolved by realm_refusal, not here
    "localhost.example",
]


@pytest.mark.parametrize("host", INTERNAL)
def test_internal_addresses_in_every_spelling(host: str) -> None:
    assert internal_address(host)


@pytest.mark.parametrize("host", PUBLIC)
def test_public_addresses_and_names_are_not_internal(host: str) -> None:
    assert not internal_address(host)


# -- token realms ---------------------------------------------------------------------------------


class FakeResolver:
    """Answers from a table; a name not in it does not resolve (as gaierror)."""

    def __init__(self, table: Mapping[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


DNS = FakeResolver(
    {
        "registry.example": ["34.120.1.10"],
        "auth.example": ["34.120.1.7", "2a00:1450:4001::7"],
        "public.example": ["8.8.8.8", "2606:4700:4700::1111"],
        "sneaky.example": ["8.8.8.8", "10.0.0.1"],
        "rebind.example": ["127.0.0.1"],
        "metadata.example": ["169.254.169.254"],
        "mapped.example": ["::ffff:127.0.0.1"],
        "linklocal.example": ["fe80::1%eth0"],
        "garbage.example": ["not-an-address"],
        "corp-registry.internal": ["10.1.2.3"],
        "corp-auth.internal": ["10.1.2.4"],
        "dual.example": ["8.8.4.4", "10.9.9.9"],
        "empty.example": [],
    }
)
PUBLIC_REGISTRY = "https://public.example"
HTTPS_ONLY = "tokens are fetched over HTTPS, except from a plain-HTTP registry's own host"


@pytest.mark.parametrize(
    ("endpoint", "plain_http", "realm", "refusal"),
    [
        # the rules as they were: scheme, and internal address literals
        (PUBLIC_REGISTRY, False, "https://auth.example/token", None),
        (PUBLIC_REGISTRY, False, "http://auth.example/token", HTTPS_ONLY),
        (PUBLIC_REGISTRY, False, "ftp://auth.example/token", "not an https:// URL"),
        (PUBLIC_REGISTRY, False, "https:///token", "not an https:// URL"),
        (PUBLIC_REGISTRY, False, "token", "not an https:// URL"),
        (PUBLIC_REGISTRY, False, "https://[::1/token", "not a valid URL"),
        ("http://127.0.0.1:5000", True, "http://127.0.0.1:5000/token", None),
        ("http://127.0.0.1:5000", True, "http://localhost:5001/token", None),
        ("http://127.0.0.1:5000", True, "http://10.0.0.1/token", HTTPS_ONLY),
        ("http://corp:5000", True, "http://corp:5001/token", None),
        ("http://corp:5000", True, "http://other:5001/token", HTTPS_ONLY),
        (
            PUBLIC_REGISTRY,
            False,
            "https://10.0.0.1/token",
            "10.0.0.1 is an internal address and public.example is not",
        ),
        # ... and every other spelling of an internal address
        *[
            (
                PUBLIC_REGISTRY,
                False,
                f"https://{host}/token",
                f"{host.strip('[]')} is an internal address and public.example is not",
            )
            for host in (
                "127.1",
                "2130706433",
                "0x7f000001",
                "0177.0.0.1",
                "0x7f.1",
                "0",
                "[::ffff:127.0.0.1]",
                "[::ffff:a9fe:a9fe]",
                "[fe80::1%25eth0]",
                "localhost",
                "admin.localhost",
            )
        ],
        # a registry on loopback or an internal network may use an internal realm
        ("http://127.0.0.1:5000", True, "https://10.0.0.1/token", None),
        ("https://10.0.0.5", False, "https://10.0.0.1/token", None),
        ("https://[::1]:5000", False, "https://127.1/token", None),
        # names: every address they resolve to is checked
        (PUBLIC_REGISTRY, False, "https://auth.example/token", None),
        (
            PUBLIC_REGISTRY,
            False,
            "https://rebind.example/token",
            "rebind.example resolves to 127.0.0.1, an internal address, "
            "and public.example is not internal",
        ),
        (
            PUBLIC_REGISTRY,
            False,
            "https://sneaky.example/token",
            "sneaky.example resolves to 10.0.0.1, an internal address, "
            "and public.example is not internal",
        ),
        (
            PUBLIC_REGISTRY,
            False,
            "https://metadata.example/token",
            "metadata.example resolves to 169.254.169.254, an internal address, "
            "and public.example is not internal",
        ),
        (
            "https://registry.example:443",
            False,
            "https://mapped.example/token",
            "mapped.example resolves to ::ffff:127.0.0.1, an internal address, "
            "and registry.example is not internal",
        ),
        (
            PUBLIC_REGISTRY,
            False,
            "https://linklocal.example/token",
            "linklocal.example resolves to fe80::1%eth0, an internal address, "
            "and public.example is not internal",
        ),
        (
            PUBLIC_REGISTRY,
            False,
            "https://garbage.example/token",
            "garbage.example resolves to not-an-address, an internal address, "
            "and public.example is not internal",
        ),
        # a name that does not resolve, or to nothing: the token request fails on its own
        (PUBLIC_REGISTRY, False, "https://nowhere.example/token", None),
        (PUBLIC_REGISTRY, False, "https://empty.example/token", None),
        # a registry whose own name resolves only to internal addresses is internal
        ("https://corp-registry.internal", False, "https://corp-auth.internal/token", None),
        # ... but one with a public address too is not
        (
            "https://dual.example",
            False,
            "https://corp-auth.internal/token",
            "corp-auth.internal resolves to 10.1.2.4, an internal address, "
            "and dual.example is not internal",
        ),
        # the registry's own host is its own business
        ("https://dual.example", False, "https://dual.example:8443/token", None),
    ],
)
async def test_realm_refusal(
    endpoint: str, plain_http: bool, realm: str, refusal: str | None
) -> None:
    assert await realm_refusal(endpoint, plain_http, realm, DNS) == refusal


async def test_a_realm_on_the_registrys_own_host_or_an_address_literal_is_not_resolved() -> None:
    resolver = FakeResolver({})
    assert await realm_refusal(PUBLIC_REGISTRY, False, "https://public.example/t", resolver) is None
    assert await realm_refusal(PUBLIC_REGISTRY, False, "https://8.8.8.8/t", resolver) is None
    assert resolver.asked == []


async def test_a_hostile_realm_host_is_shown_escaped_in_the_refusal() -> None:
    resolver = FakeResolver({"evil\x1b\x07\u202e.example": ["10.0.0.1"]})
    realm = "https://evil\x1b\x07\u202e.example/"
    refusal = await realm_refusal(PUBLIC_REGISTRY, False, realm, resolver)
    assert refusal == (
        "evil\\x1b\\x07\\u202e.example resolves to 10.0.0.1, an internal address, "
        "and public.example is not internal"
    )


async def test_the_default_resolver_resolves_localhost_to_loopback() -> None:
    addresses = await resolve_host("localhost")
    assert addresses
    assert all(is_loopback(a) for a in addresses)
    refusal = await realm_refusal(PUBLIC_REGISTRY, False, "https://localhost./token")
    assert refusal == "localhost. is an internal address and public.example is not"
