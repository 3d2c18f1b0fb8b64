"""Which proxy a request goes through, decided as docker, containerd and skopeo decide it.

Their rules are Go's ``golang.org/x/net/http/httpproxy``, and so are these:

* ``HTTP_PROXY`` is for ``http://`` URLs, ``HTTPS_PROXY`` for ``https://`` URLs, ``NO_PROXY``
  lists the hosts that go direct. Each is read in upper case first, then in lower case; an empty
  variable counts as unset (:meth:`ProxyConfig.from_env`).
* A proxy without a scheme is ``http://`` (``proxy.example:3128``); without a port, port 80.
  Only ``http://`` proxies are supported (``https://`` needs TLS inside TLS, ``socks5://`` another
  protocol): any other scheme is refused with one line naming where the value came from.
  Credentials in the URL (``http://user:p%40ss@proxy:3128``) are percent-decoded and go only to
  the proxy, as ``Proxy-Authorization`` (:meth:`Proxy.authorization`); ``repr()`` and ``str()``
  never show the password.
* ``localhost`` and loopback IP literals (``127.0.0.0/8``, ``::1``) always go direct. Host names
  are never resolved to decide.
* ``NO_PROXY`` is a comma-separated list, matched case-insensitively:

  ========================  ===========================================================
  ``*``                     every host goes direct
  ``example.com``           ``example.com`` and every subdomain (``a.b.example.com``)
  ``.example.com``          subdomains only, not ``example.com`` itself
  ``*.example.com``         the same as ``.example.com``
  ``10.1.2.3``, ``::1``     that IP, only when the URL's host is written as an IP literal
  ``10.0.0.0/8``            IPs in the range, only when the URL's host is an IP literal
  ``example.com:5000``      with a port: only requests to that port (default 80 / 443)
  ``10.1.2.3:5000``         ``[2001:db8::1]:5000`` for IPv6
  ========================  ===========================================================

  Entries that fit none of these are ignored, as Go ignores them.

A bad proxy value in the environment is reported when a request would use it (a loopback pull
still works with an unusable ``HTTPS_PROXY`` meant for other programs); :meth:`ProxyConfig.check`
reports it at once.

Pure and standard library only; imports nothing of ours but ``errors``.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ..errors import PullError

__all__ = [
    "DEFAULT_PORTS",
    "Proxy",
    "ProxyConfig",
    "UnusableProxy",
    "parse_proxy",
    "redact",
]

#: The port of a URL that names none, by scheme (Go's ``portMap`` for the request URL).
DEFAULT_PORTS = {"http": 80, "https": 443}

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class UnusableProxy(PullError, ValueError):
    """A proxy setting that cannot be used: unsupported scheme, no host, a bad port.

    ``where`` names the variable or the configuration key (``$HTTPS_PROXY``,
    ``/etc/pypull.toml:3: proxy``); the value in the message has its password masked.
    """

    def __init__(self, where: str, value: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        shown = redact(value)
        if len(shown) > 200:
            shown = shown[:200] + "…"
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}{shown!r}: {reason}")


def redact(value: str) -> str:
    """``value`` with the password of a URL's user info replaced by ``***``.

    Everything before the last ``@`` counts as user info, so a password is masked even when it
    holds an unescaped ``/`` or ``@``: ``http://u:p/w@h`` -> ``http://u:***@h``.
    """
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
    at = rest.rfind("@")
    if at < 0:
        return value
    user, colon, _ = rest[:at].partition(":")
    return f"{scheme}{sep}{user}{':***' if colon else ''}{rest[at:]}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True, slots=True, repr=False)
class Proxy:
    """An ``http://`` proxy: where to connect, and the credentials it wants, if any."""

    url: str  # "http://host:port": scheme, host and port only, never credentials
    scheme: str  # "http"
    host: str  # a name or an IP, without brackets
    port: int
    username: str | None = None  # percent-decoded
    password: str | None = None  # percent-decoded; never shown

    @property
    def netloc(self) -> str:
        """``host:port``, an IPv6 host in brackets."""
        return f"{_bracketed(self.host)}:{self.port}"

    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` value (``Basic ...``), or None without credentials.

        As Go: a user without a password is sent with an empty one.
        """
        if self.username is None:
            return None
        pair = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def connect_request(self, host: str, port: int) -> bytes:
        """The ``CONNECT host:port`` request that opens a tunnel to an ``https://`` target."""
        if not host or any(c in host for c in " \t\r\n/@") or not 0 < port < 65536:
            raise ValueError(f"not a host and port to tunnel to: {host!r}, {port!r}")
        target = f"{_bracketed(host.strip('[]'))}:{port}"
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        auth = self.authorization()
        if auth:
            lines.append(f"Proxy-Authorization: {auth}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")

    def __str__(self) -> str:
        """The URL, with the user name but the password masked: ``http://u:***@proxy:3128``."""
        if self.username is None:
            return self.url
        secret = ":***" if self.password is not None else ""
        return f"{self.scheme}://{self.username}{secret}@{self.netloc}"

    def __repr__(self) -> str:
        return f"Proxy({str(self)!r})"


def parse_proxy(value: str, where: str = "") -> Proxy:
    """A proxy URL as Go reads one; ``where`` names its origin in the error.

    ``host:port`` means ``http://host:port``; the port defaults to 80; a path is ignored.
    Raises :class:`UnusableProxy` for a scheme other than ``http://``, no host or a bad port.
    """
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise UnusableProxy(where, value, f"not a proxy URL ({e})") from None
    scheme = parts.scheme.lower()
    if scheme != "http":
        raise UnusableProxy(
            where,
            value,
            f"{scheme}:// proxies are not supported (only http:// proxies; an http:// proxy"
            " tunnels https:// with CONNECT)",
        )
    host = parts.hostname or ""
    if not host or any(c.isspace() or not c.isprintable() or c in "/\\@" for c in host):
        raise UnusableProxy(where, value, "not a proxy URL (no host)")
    if ":" in host:  # brackets: only an IPv6 literal is allowed inside
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise UnusableProxy(where, value, "not a proxy URL (bad IPv6 address)") from None
    if port == 0:
        raise UnusableProxy(where, value, "not a proxy URL (port 0)")
    port = port or DEFAULT_PORTS["http"]
    username = None if parts.username is None else unquote(parts.username)
    password = None if parts.password is None else unquote(parts.password)
    return Proxy(f"http://{_bracketed(host)}:{port}", "http", host, port, username, password)


# -- NO_PROXY -------------------------------------------------------------------------------------


def _ascii(host: str) -> str:
    """An internationalized name in its ASCII (punycode) form, as Go's ``idnaASCII``."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _ip(text: str) -> _IPAddress | None:
    """``text`` as an IP address (an IPv4-mapped IPv6 one as IPv4), or None for a name."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _split_host_port(entry: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``: ``host:port`` or ``[v6]:port``; None without a port."""
    if entry.startswith("["):
        end = entry.find("]")
        if end < 0 or entry[end + 1 : end + 2] != ":":
            return None
        return entry[1:end], entry[end + 2 :]
    if entry.count(":") != 1:
        return None
    host, _, port = entry.partition(":")
    return host, port


def _port(text: str) -> int | None:
    """A NO_PROXY entry's port: None for any port, -1 for one that no request can have."""
    if not text:
        return None
    return int(text) if text.isdigit() and len(text) <= 5 else -1


@dataclass(frozen=True, slots=True)
class _NoProxy:
    """NO_PROXY, parsed: Go's ``allMatch``, ``cidrMatch`` / ``ipMatch`` and ``domainMatch``."""

    everything: bool = False
    networks: tuple[tuple[_IPNetwork, int | None], ...] = ()
    domains: tuple[tuple[str, int | None, bool], ...] = ()  # (".suffix", port, match the bare)

    @classmethod
    def parse(cls, text: str) -> _NoProxy:
        networks: list[tuple[_IPNetwork, int | None]] = []
        domains: list[tuple[str, int | None, bool]] = []
        for raw in text.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                return cls(everything=True)
            if "/" in entry:  # 10.0.0.0/8, 2001:db8::/32
                try:
                    net = ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    pass
                else:
                    networks.append((net, None))
                    continue
            split = _split_host_port(entry)
            host, port = split if split is not None else (entry, "")
            host = host.strip("[]") if host.startswith("[") and host.endswith("]") else host
            if not host:
                continue  # ":80": no host, ignored
            ip = _ip(host)
            if ip is not None:
                networks.append((ipaddress.ip_network(ip), _port(port)))
                continue
            if host.startswith("*."):
                host = host[1:]
            bare = not host.startswith(".")  # "example.com" also matches example.com itself
            suffix = "." + _ascii(host if bare else host[1:])
            domains.append((suffix, _port(port), bare))
        return cls(False, tuple(networks), tuple(domains))

    def matches(self, host: str, ip: _IPAddress | None, port: int | None) -> bool:
        if self.everything:
            return True
        if ip is not None:  # IP literals match IP and CIDR entries only, never names
            return any(
                ip.version == net.version and ip in net and (want is None or want == port)
                for net, want in self.networks
            )
        return any(
            (host.endswith(suffix) or (bare and host == suffix[1:]))
            and (want is None or want == port)
            for suffix, want, bare in self.domains
        )


# -- the configuration ----------------------------------------------------------------------------


def _env_any(env: Mapping[str, str], *names: str) -> tuple[str, str]:
    """The first of ``names`` set to a non-empty value, and ``$NAME``; Go's ``getEnvAny``."""
    for name in names:
        value = env.get(name, "")
        if value:
            return value, f"${name}"
    return "", ""


def _parsed(value: str, where: str) -> Proxy | UnusableProxy | None:
    if not value.strip():
        return None
    try:
        return parse_proxy(value, where)
    except UnusableProxy as e:
        return e


@dataclass(frozen=True, slots=True, repr=False)
class ProxyConfig:
    """``HTTP_PROXY``, ``HTTPS_PROXY`` and ``NO_PROXY`` values, and the choice they make per URL.

    The ``*_source`` fields name where each value came from (``$HTTPS_PROXY``,
    ``/etc/pypull.toml:3``) for error messages and ``pypull config``. An empty value is unset.
    """

    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""
    http_proxy_source: str = ""
    https_proxy_source: str = ""
    no_proxy_source: str = ""
    _http: Proxy | UnusableProxy | None = field(init=False, compare=False, default=None)
    _https: Proxy | UnusableProxy | None = field(init=False, compare=False, default=None)
    _bypass: _NoProxy = field(init=False, compare=False, default=_NoProxy())

    def __post_init__(self) -> None:
        http_where = self.http_proxy_source or "http_proxy"
        https_where = self.https_proxy_source or "https_proxy"
        object.__setattr__(self, "_http", _parsed(self.http_proxy, http_where))
        object.__setattr__(self, "_https", _parsed(self.https_proxy, https_where))
        object.__setattr__(self, "_bypass", _NoProxy.parse(self.no_proxy))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProxyConfig:
        """The upper-case variable if it is set and not empty, else the lower-case one."""
        http, http_source = _env_any(env, "HTTP_PROXY", "http_proxy")
        https, https_source = _env_any(env, "HTTPS_PROXY", "https_proxy")
        no_proxy, no_proxy_source = _env_any(env, "NO_PROXY", "no_proxy")
        return cls(http, https, no_proxy, http_source, https_source, no_proxy_source)

    @property
    def http(self) -> Proxy | None:
        """The proxy for ``http://`` URLs; raises :class:`UnusableProxy` if it is unusable."""
        return _usable(self._http)

    @property
    def https(self) -> Proxy | None:
        """The proxy for ``https://`` URLs; raises :class:`UnusableProxy` if it is unusable."""
        return _usable(self._https)

    @property
    def problems(self) -> tuple[UnusableProxy, ...]:
        """What is wrong with the proxy values, without raising."""
        return tuple(p for p in (self._http, self._https) if isinstance(p, UnusableProxy))

    def check(self) -> None:
        """Raise :class:`UnusableProxy` now if either proxy value is unusable."""
        if self.problems:
            raise self.problems[0]

    def bypasses(self, url: str) -> bool:
        """True if ``url`` goes direct whatever the proxies: loopback, or matched by NO_PROXY."""
        parts = urlsplit(url)
        host = _ascii(unquote(parts.hostname or ""))
        if not host:
            return False
        ip = _ip(host)
        if host == "localhost" or (ip is not None and ip.is_loopback):
            return True
        try:
            port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
        except ValueError:
            port = None
        return self._bypass.matches(host, ip, port)

    def for_url(self, url: str) -> Proxy | None:
        """The proxy a request for ``url`` goes through, or None to connect directly.

        Raises :class:`UnusableProxy` when the proxy that applies cannot be used.
        """
        scheme = urlsplit(url).scheme.lower()
        chosen = self._https if scheme == "https" else self._http if scheme == "http" else None
        if chosen is None or self.bypasses(url):
            return None
        return _usable(chosen)

    def __repr__(self) -> str:
        return (
            f"ProxyConfig(http_proxy={redact(self.http_proxy)!r},"
            f" https_proxy={redact(self.https_proxy)!r}, no_proxy={self.no_proxy!r})"
        )


def _usable(parsed: Proxy | UnusableProxy | None) -> Proxy | None:
    if isinstance(parsed, UnusableProxy):
        raise parsed
    return parsed
