"""Where a host name points: this machine, an internal network, or the internet.

A registry names the token realm we send credentials to, so it must not be able to aim them at
this machine or at the network we sit in (a cloud's metadata service at ``169.254.169.254``, an
admin port on ``127.0.0.1``) unless it lives there itself. That check is only as good as its
reading of addresses, and an address has many spellings: glibc's ``inet_aton``, which the
resolver and therefore every connection use, takes ``127.1``, ``2130706433``, ``0x7f000001``,
``0177.0.0.1`` and ``0x7f.1`` for ``127.0.0.1``; IPv6 adds ``::ffff:127.0.0.1`` (mapped),
``::127.0.0.1`` (compatible), ``64:ff9b::7f00:1`` (NAT64), ``2002:7f00:1::`` (6to4) and zone ids
(``fe80::1%eth0``). :func:`ip_of` reads them all; :func:`internal_address` and
:func:`is_loopback` are pure. A name can point anywhere, so :func:`realm_refusal` also resolves a
realm's host and checks every address it gets.

"Internal" is anything not globally routable: loopback, private (RFC 1918, ULA), link-local,
shared (100.64.0.0/10), unspecified (``0.0.0.0`` reaches this machine), multicast, reserved and
documentation ranges; and the names ``localhost`` and ``*.localhost`` (RFC 6761).

Standard library only; imports nothing of ours but ``text``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from ..text import shown

__all__ = [
    "Resolver",
    "bare_host",
    "internal_address",
    "ip_of",
    "is_loopback",
    "realm_refusal",
    "resolve_host",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Resolves a host name to the address strings a connection to it could use.
Resolver = Callable[[str], Awaitable[list[str]]]

#: One dot-separated part as ``inet_aton`` reads it: hex (0x...), octal (0...), or decimal.
_AT0N_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCALHOST = "localhost"


def bare_host(host: str) -> str:
    """``host`` without port, brackets, IPv6 zone id and a final dot, lower-cased:
    ``[::1]:5000`` -> ``::1``, ``Registry.Example.:443`` -> ``registry.example``."""
    h = host.strip()
    if h.startswith("["):
        h = h[1 : h.find("]")] if "]" in h else h[1:]
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    h = h.split("%", 1)[0]  # fe80::1%eth0, or %25eth0 as a URL writes it
    if h.endswith("."):
        h = h[:-1]
    return h.lower()


def _inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address glibc's ``inet_aton`` reads ``text`` as, or None: one to four parts,
    each decimal, octal (leading 0) or hex (0x), the last filling the remaining bytes."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_AT0N_PART.fullmatch(p) for p in parts):
        return None
    try:
        values = [
            int(p[2:], 16) if p[:2] in ("0x", "0X") else int(p, 8 if p[0] == "0" else 10)
            for p in parts
        ]
    except ValueError:  # thousands of digits: too many for int(), far too many for an address
        return None
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (5 - len(values))):
        return None
    n = last
    for i, v in enumerate(head):
        n |= v << (24 - 8 * i)
    return ipaddress.IPv4Address(n)


def ip_of(host: str) -> Address | None:
    """The address ``host`` spells (in any form the resolver takes as numeric), or None for a
    name. ``host`` may carry a port and brackets, as in a URL's netloc."""
    h = bare_host(host)
    try:
        return ipaddress.ip_address(h)
    except ValueError:
        return _inet_aton(h)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and is delivered to: mapped (``::ffff:a.b.c.d``),
    compatible (``::a.b.c.d``), NAT64 (``64:ff9b::a.b.c.d``), 6to4 (``2002:AABB:CCDD::``)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    n = int(ip)
    if n >> 32 == 0 and n > 1:  # ::/96 but not :: and ::1
        return ipaddress.IPv4Address(n)
    if ip in _NAT64:
        return ipaddress.IPv4Address(n & 0xFFFFFFFF)
    return ip.sixtofour


def _internal_ip(ip: Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        v4 = _embedded_v4(ip)
        if v4 is not None:  # decided by where it is delivered: DNS64 answers are public too
            return _internal_ip(v4)
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_multicast
        or ip.is_reserved
        or not ip.is_global
    )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and every spelling of 127.0.0.0/8 and ::1 (``127.1``,
    ``0x7f000001``, ``::ffff:127.0.0.1``), with or without a port."""
    h = bare_host(host)
    if h == _LOCALHOST:
        return True
    ip = ip_of(h)
    if isinstance(ip, ipaddress.IPv6Address):
        v4 = _embedded_v4(ip)
        if v4 is not None:
            return v4.is_loopback
    return ip is not None and ip.is_loopback


def internal_address(host: str) -> bool:
    """True when ``host`` (with or without a port) is an address off the internet in any
    spelling, or ``localhost``/``*.localhost``. Other names are False: see
    :func:`realm_refusal` for what they resolve to."""
    h = bare_host(host)
    if h == _LOCALHOST or h.endswith("." + _LOCALHOST):
        return True
    ip = ip_of(h)
    return ip is not None and _internal_ip(ip)


async def resolve_host(host: str) -> list[str]:
    """Every address ``getaddrinfo`` gives for ``host``, as the connection would look it up."""
    import asyncio
    import socket

    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def _resolved(resolve: Resolver, host: str) -> list[str]:
    """The addresses of ``host``, or none when it does not resolve (the request that follows
    fails on its own then)."""
    try:
        return list(await resolve(host))
    except (OSError, ValueError):  # socket.gaierror; UnicodeError for a name IDNA refuses
        return []


def _internal_answer(address: str) -> bool:
    """A resolver's answer that is internal, or that is not an address at all (cannot tell)."""
    ip = ip_of(address)
    return ip is None or _internal_ip(ip)


async def realm_refusal(
    endpoint_url: str,
    plain_http: bool,
    realm: str,
    resolve: Resolver = resolve_host,
) -> str | None:
    """Why a Bearer ``realm`` named by the registry at ``endpoint_url`` must not be contacted,
    or None. ``plain_http``: the endpoint is spoken to over plain HTTP.

    The registry names the realm, and we send credentials there, so:

    * plain HTTP only to the plain-HTTP registry's own host (or loopback to loopback);
    * otherwise ``https://`` with a host;
    * an internal address, however spelt, only for a registry that is internal itself;
    * a realm *name* is resolved with ``resolve`` and every address checked the same way, unless
      it is the registry's own host name. A registry counts as internal when its host is an
      internal address, or a name whose every address is internal. A realm name that does not
      resolve is not refused here: the token request then fails on its own.
    """
    try:
        realm_parts, ep_parts = urlsplit(realm), urlsplit(endpoint_url)
        realm_host, ep_host = realm_parts.hostname or "", ep_parts.hostname or ""
    except ValueError:
        return "not a valid URL"
    same_host = bare_host(realm_host) == bare_host(ep_host)
    if realm_parts.scheme == "http":
        same_place = same_host or (is_loopback(realm_host) and is_loopback(ep_host))
        if not (plain_http and same_place):
            return "tokens are fetched over HTTPS, except from a plain-HTTP registry's own host"
    elif realm_parts.scheme != "https" or not realm_host:
        return "not an https:// URL"
    realm_name, ep_name = shown(realm_host, 100), shown(ep_host, 100)
    if internal_address(ep_host):
        return None  # an internal registry may use an internal token server
    if internal_address(realm_host):
        return f"{realm_name} is an internal address and {ep_name} is not"
    if same_host or ip_of(realm_host) is not None:
        return None  # its own host, or a public address literal: nothing to resolve
    bad = next((a for a in await _resolved(resolve, realm_host) if _internal_answer(a)), None)
    if bad is None:
        return None
    if ip_of(ep_host) is None:
        ep_addresses = await _resolved(resolve, ep_host)
        if ep_addresses and all(map(_internal_answer, ep_addresses)):
            return None  # a registry on the internal network
    return (
        f"{realm_name} resolves to {shown(bad, 60)}, an internal address, "
        f"and {ep_name} is not internal"
    )
