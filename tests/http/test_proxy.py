"""Which proxy a request goes through: the HTTP_PROXY / HTTPS_PROXY / NO_PROXY rules of Go's
``httpproxy`` (what docker, containerd and skopeo follow), the refusal of proxies we cannot speak,
credentials that go only to the proxy and never show, and the real tinyproxy the end-to-end tests
use.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.proxy import RunningProxy, running_proxy
from puller.errors import PullError
from puller.http.proxy import Proxy, ProxyConfig, UnusableProxy, parse_proxy

P = "http://proxy.example:3128"


def chosen(env: dict[str, str], url: str) -> str | None:
    proxy = ProxyConfig.from_env(env).for_url(url)
    return None if proxy is None else proxy.url


# -- which variable applies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        # HTTPS_PROXY for https:// URLs, HTTP_PROXY for http:// URLs, never the other way round
        ({"HTTPS_PROXY": P}, "https://ghcr.io/v2/", P),
        ({"HTTPS_PROXY": P}, "http://ghcr.io/v2/", None),
        ({"HTTP_PROXY": P}, "http://ghcr.io/v2/", P),
        ({"HTTP_PROXY": P}, "https://ghcr.io/v2/", None),
        ({"https_proxy": P}, "https://ghcr.io/v2/", P),
        ({"http_proxy": P}, "http://ghcr.io/v2/", P),
        # the upper-case variable wins over the lower-case one...
        ({"HTTPS_PROXY": P, "https_proxy": "http://lower:1"}, "https://ghcr.io/", P),
        ({"HTTP_PROXY": P, "http_proxy": "http://lower:1"}, "http://ghcr.io/", P),
        # ...unless it is empty, which counts as unset
        ({"HTTPS_PROXY": "", "https_proxy": P}, "https://ghcr.io/", P),
        ({"HTTPS_PROXY": ""}, "https://ghcr.io/", None),
        # no proxy at all; other schemes never go through one
        ({}, "https://ghcr.io/", None),
        ({"HTTP_PROXY": P, "HTTPS_PROXY": P}, "ftp://ghcr.io/", None),
        # ALL_PROXY is curl's, not Go's
        ({"ALL_PROXY": P, "all_proxy": P}, "https://ghcr.io/", None),
    ],
)
def test_which_variable_applies(env: dict[str, str], url: str, expected: str | None) -> None:
    assert chosen(env, url) == expected


@pytest.mark.parametrize(
    ("value", "url", "host", "port"),
    [
        ("proxy.example:3128", "http://proxy.example:3128", "proxy.example", 3128),
        ("proxy.example", "http://proxy.example:80", "proxy.example", 80),
        ("http://proxy.example", "http://proxy.example:80", "proxy.example", 80),
        ("HTTP://Proxy.Example:8080/", "http://proxy.example:8080", "proxy.example", 8080),
        ("10.0.0.1:3128", "http://10.0.0.1:3128", "10.0.0.1", 3128),
        ("[2001:db8::1]:3128", "http://[2001:db8::1]:3128", "2001:db8::1", 3128),
        ("http://[::1]:3128", "http://[::1]:3128", "::1", 3128),
        ("  http://proxy.example:3128  ", "http://proxy.example:3128", "proxy.example", 3128),
    ],
)
def test_a_proxy_without_scheme_is_http(value: str, url: str, host: str, port: int) -> None:
    proxy = parse_proxy(value)
    assert (proxy.url, proxy.scheme, proxy.host, proxy.port) == (url, "http", host, port)
    assert ProxyConfig(https_proxy=value).for_url("https://ghcr.io/") == proxy


# -- NO_PROXY ------------------------------------------------------------------------------------

NO_PROXY_CASES = [
    # a name matches itself and its subdomains, not names that merely end the same way
    ("example.com", "https://example.com/", True),
    ("example.com", "https://registry.example.com/", True),
    ("example.com", "https://a.b.example.com:5000/", True),
    ("example.com", "https://badexample.com/", False),
    ("example.com", "https://example.com.evil.net/", False),
    # a leading dot: subdomains only; "*." is the same
    (".example.com", "https://registry.example.com/", True),
    (".example.com", "https://example.com/", False),
    ("*.example.com", "https://registry.example.com/", True),
    ("*.example.com", "https://example.com/", False),
    # case does not matter, in the entry or in the URL
    ("Example.COM", "https://REGISTRY.example.com/", True),
    # spaces around entries and empty entries are ignored
    (" foo.net , ,example.com ", "https://example.com/", True),
    # a port: only that port; the URL's default port counts
    ("example.com:5000", "https://example.com:5000/", True),
    ("example.com:5000", "https://example.com/", False),
    ("example.com:443", "https://example.com/", True),
    ("example.com:80", "http://example.com/", True),
    ("example.com:443", "http://example.com/", False),
    (".example.com:5000", "https://r.example.com:5000/", True),
    (".example.com:5000", "https://r.example.com:5001/", False),
    # IPs and CIDRs match hosts written as IP literals only: names are never resolved
    ("10.1.2.3", "https://10.1.2.3/", True),
    ("10.1.2.3", "https://10.1.2.4/", False),
    ("10.1.2.3:5000", "https://10.1.2.3:5000/", True),
    ("10.1.2.3:5000", "https://10.1.2.3/", False),
    ("10.0.0.0/8", "https://10.200.3.4:5000/", True),
    ("10.0.0.0/8", "https://11.0.0.1/", False),
    ("10.0.0.0/8", "https://registry.internal/", False),
    ("192.168.1.7/16", "https://192.168.200.1/", True),  # host bits are ignored, as Go does
    # a name entry never matches an IP literal, even when the text would
    ("0.0.1", "https://10.0.0.1/", False),
    # IPv6 literals, with and without a port, and ranges
    ("2001:db8::1", "https://[2001:db8::1]/", True),
    ("[2001:db8::1]", "https://[2001:db8::1]:5000/", True),
    ("[2001:db8::1]:5000", "https://[2001:db8::1]:5000/", True),
    ("[2001:db8::1]:5000", "https://[2001:db8::1]/", False),
    ("2001:db8::/32", "https://[2001:db8:0:1::5]/", True),
    ("2001:db8::/32", "https://[2001:db9::5]/", False),
    ("10.0.0.0/8", "https://[::ffff:10.0.0.1]/", True),  # an IPv4-mapped address is IPv4
    # "*" alone: nothing goes through the proxy
    ("*", "https://ghcr.io/", True),
    ("foo.net,*", "https://10.1.2.3/", True),
    ("*", "https://[2001:db8::1]/", True),
    # entries that fit no form are ignored
    (":5000", "https://example.com:5000/", False),
    ("example.com:http", "https://example.com/", False),
]


@pytest.mark.parametrize(("no_proxy", "url", "direct"), NO_PROXY_CASES)
def test_no_proxy(no_proxy: str, url: str, direct: bool) -> None:
    env = {"HTTPS_PROXY": P, "HTTP_PROXY": P, "NO_PROXY": no_proxy}
    assert chosen(env, url) == (None if direct else P)


@pytest.mark.parametrize(
    ("env", "url", "direct"),
    [
        ({"NO_PROXY": "example.com", "no_proxy": "other.net"}, "https://example.com/", True),
        ({"NO_PROXY": "example.com", "no_proxy": "other.net"}, "https://other.net/", False),
        ({"NO_PROXY": "", "no_proxy": "other.net"}, "https://other.net/", True),
        ({"no_proxy": "other.net"}, "https://other.net/", True),
    ],
)
def test_no_proxy_upper_case_wins(env: dict[str, str], url: str, direct: bool) -> None:
    assert chosen({"HTTPS_PROXY": P, **env}, url) == (None if direct else P)


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost/v2/",
        "https://LOCALHOST:5000/v2/",
        "http://localhost:5000/v2/",
        "https://127.0.0.1/v2/",
        "http://127.0.0.1:5000/v2/",
        "https://127.200.0.9:5000/v2/",
        "https://[::1]/v2/",
        "http://[::1]:5000/v2/",
        "https://[::ffff:127.0.0.1]/v2/",
    ],
)
def test_loopback_always_goes_direct(url: str) -> None:
    env = {"HTTPS_PROXY": P, "HTTP_PROXY": P, "NO_PROXY": "nothing.example"}
    assert chosen(env, url) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost.example.com/",  # a name that starts like localhost is just a name
        "https://foo.localhost/",
        "https://10.0.0.1/",  # private, but not loopback
        "https://[::2]/",
    ],
)
def test_only_localhost_and_loopback_literals_are_special(url: str) -> None:
    assert chosen({"HTTPS_PROXY": P}, url) == P


def test_no_proxy_does_not_resolve_names() -> None:
    """``localhost`` resolves to 127.0.0.1, but a name is matched as a name: a CIDR entry that
    holds an address a name resolves to does not make the name go direct."""
    env = {"HTTPS_PROXY": P, "NO_PROXY": "93.184.0.0/16,127.0.0.0/8"}
    assert chosen(env, "https://example.com/") == P
    assert chosen(env, "https://registry.localdomain/") == P


def test_internationalized_names_match_in_their_ascii_form() -> None:
    env = {"HTTPS_PROXY": P, "NO_PROXY": "bücher.example"}
    assert chosen(env, "https://xn--bcher-kva.example/") is None
    assert chosen(env, "https://r.bücher.example/") is None
    env = {"HTTPS_PROXY": P, "NO_PROXY": "xn--bcher-kva.example"}
    assert chosen(env, "https://bücher.example/") is None


# -- proxies we cannot speak, and bad values -----------------------------------------------------


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"HTTPS_PROXY": "https://proxy.example:3128"},
            "$HTTPS_PROXY: 'https://proxy.example:3128': https:// proxies are not supported"
            " (only http:// proxies;",
        ),
        (
            {"https_proxy": "socks5://proxy.example:1080"},
            "$https_proxy: 'socks5://proxy.example:1080': socks5:// proxies are not supported"
            " (only http:// proxies;",
        ),
        (
            {"HTTPS_PROXY": "socks5h://u:secret@proxy.example:1080"},
            "$HTTPS_PROXY: 'socks5h://u:***@proxy.example:1080': socks5h:// proxies are not",
        ),
        (
            {"HTTPS_PROXY": "http://proxy.example:99999"},
            "$HTTPS_PROXY: 'http://proxy.example:99999': not a proxy URL (",
        ),
        (
            {"HTTPS_PROXY": "http://:3128"},
            "$HTTPS_PROXY: 'http://:3128': not a proxy URL (no host)",
        ),
        (
            {"HTTPS_PROXY": "http://u:se/cret@proxy.example:3128"},
            "$HTTPS_PROXY: 'http://u:***@proxy.example:3128': not a proxy URL (",
        ),
    ],
)
def test_an_unusable_proxy_is_refused_in_one_line(env: dict[str, str], says: str) -> None:
    config = ProxyConfig.from_env(env)
    with pytest.raises(UnusableProxy) as info:
        config.for_url("https://ghcr.io/v2/")
    message = str(info.value)
    assert message.startswith(says), message
    assert "\n" not in message
    assert "secret" not in message and "se/cret" not in message
    assert isinstance(info.value, PullError)  # the command prints it as "Error: ..."
    with pytest.raises(UnusableProxy):
        config.check()
    assert config.problems == (info.value,)


def test_an_unusable_proxy_only_fails_requests_that_would_use_it() -> None:
    """A socks5 HTTPS_PROXY set for other programs does not stop a pull from a local registry,
    nor a plain-HTTP request that HTTP_PROXY covers."""
    config = ProxyConfig.from_env(
        {"HTTPS_PROXY": "socks5://proxy.example:1080", "HTTP_PROXY": P, "NO_PROXY": "internal"}
    )
    assert config.for_url("https://127.0.0.1:5000/v2/") is None
    assert config.for_url("https://registry.internal/v2/") is None
    proxy = config.for_url("http://registry.example/v2/")
    assert proxy is not None and proxy.url == P
    with pytest.raises(UnusableProxy, match=r"^\$HTTPS_PROXY: "):
        config.for_url("https://registry.example/v2/")


def test_parse_proxy_names_where_the_value_came_from() -> None:
    with pytest.raises(UnusableProxy) as info:
        parse_proxy("socks5://p:1080", "/etc/pypull.toml:3: proxy")
    assert str(info.value).startswith("/etc/pypull.toml:3: proxy: 'socks5://p:1080': socks5://")
    assert info.value.where == "/etc/pypull.toml:3: proxy"


# -- credentials ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "user", "password", "authorization"),
    [
        ("http://alice:s3cret@proxy.example:3128", "alice", "s3cret", "Basic YWxpY2U6czNjcmV0"),
        # percent-encoded characters are decoded: "p@ss:w/rd"
        ("alice:p%40ss%3Aw%2Frd@proxy.example:3128", "alice", "p@ss:w/rd", None),
        ("http://d%C3%A9v:x@proxy.example:3128", "dév", "x", None),
        ("http://alice@proxy.example:3128", "alice", None, "Basic YWxpY2U6"),  # "alice:"
        ("http://proxy.example:3128", None, None, None),
    ],
)
def test_credentials_in_the_proxy_url(
    value: str, user: str | None, password: str | None, authorization: str | None
) -> None:
    proxy = parse_proxy(value)
    assert (proxy.username, proxy.password) == (user, password)
    assert proxy.url == "http://proxy.example:3128"  # the address, never the credentials
    if authorization is not None:
        assert proxy.authorization() == authorization
    if user is None:
        assert proxy.authorization() is None


def test_authorization_decodes_to_the_user_and_password() -> None:
    import base64

    proxy = parse_proxy("http://d%C3%A9v:p%40ss@proxy.example:3128")
    value = proxy.authorization()
    assert value is not None and value.startswith("Basic ")
    assert base64.b64decode(value[6:]).decode() == "dév:p@ss"


@pytest.mark.parametrize(
    "value",
    ["http://alice:hunter2@proxy.example:3128", "alice:hunter2@proxy.example:3128"],
)
def test_the_password_is_never_shown(value: str) -> None:
    proxy = parse_proxy(value)
    config = ProxyConfig(https_proxy=value, http_proxy=value)
    for text in (repr(proxy), str(proxy), repr(config), str(config), f"{proxy}", repr([proxy])):
        assert "hunter2" not in text, text
    assert str(proxy) == "http://alice:***@proxy.example:3128"
    assert repr(proxy) == "Proxy('http://alice:***@proxy.example:3128')"
    assert proxy.password == "hunter2"  # still there for the Proxy-Authorization header


def test_connect_request() -> None:
    proxy = parse_proxy("http://alice:s3cret@proxy.example:3128")
    assert proxy.connect_request("registry.example", 443) == (
        b"CONNECT registry.example:443 HTTP/1.1\r\n"
        b"Host: registry.example:443\r\n"
        b"Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n"
    )
    assert parse_proxy("proxy.example:3128").connect_request("2001:db8::1", 5000) == (
        b"CONNECT [2001:db8::1]:5000 HTTP/1.1\r\nHost: [2001:db8::1]:5000\r\n\r\n"
    )
    for host, port in (("evil\r\nX-Injected: 1", 443), ("", 443), ("registry.example", 0)):
        with pytest.raises(ValueError):
            proxy.connect_request(host, port)


def test_proxy_values_are_plain_data() -> None:
    proxy = Proxy("http://proxy.example:3128", "http", "proxy.example", 3128)
    assert proxy == parse_proxy("proxy.example:3128")
    assert proxy.netloc == "proxy.example:3128"
    assert parse_proxy("[2001:db8::1]:3128").netloc == "[2001:db8::1]:3128"
    assert ProxyConfig.from_env({"HTTPS_PROXY": P}) == ProxyConfig.from_env({"HTTPS_PROXY": P})


# -- the real tinyproxy ---------------------------------------------------------------------------


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[str]:
    """A tiny HTTP server on loopback: ``http://127.0.0.1:PORT``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _fetch_through(proxy_url: str, url: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy_url}))
    try:
        with opener.open(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _tunnel(proxy: Proxy, port: int, path: str) -> bytes:
    """``CONNECT 127.0.0.1:port`` through ``proxy``, then ``GET path`` inside the tunnel."""
    with socket.create_connection((proxy.host, proxy.port), timeout=30) as sock:
        sock.sendall(proxy.connect_request("127.0.0.1", port))
        reader = sock.makefile("rb")
        status = reader.readline()
        assert status.split()[1:2] == [b"200"], status
        while reader.readline() not in (b"\r\n", b"\n", b""):
            pass
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        return reader.read()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib would go direct to 127.0.0.1 if the machine's no_proxy said so."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.e2e  # a real tinyproxy
@pytest.mark.usefixtures("no_proxy_env")
def test_tinyproxy_forwards_and_logs_requests(tmp_path: Path, origin: str) -> None:
    with running_proxy(tmp_path) as proxy:
        assert proxy.url.startswith("http://127.0.0.1:")
        assert _fetch_through(proxy.url, origin + "/v2/") == (200, b"hello from /v2/")
        # a tunnel opened with Proxy.connect_request, then plain HTTP inside it
        port = int(origin.rsplit(":", 1)[1])
        assert _tunnel(parse_proxy(proxy.url), port, "/tunnelled").endswith(
            b"\r\n\r\nhello from /tunnelled"
        )
        assert proxy.requests() == [
            f"GET {origin}/v2/ HTTP/1.1",
            f"CONNECT 127.0.0.1:{port} HTTP/1.1",
        ]


@pytest.mark.e2e  # a real tinyproxy
@pytest.mark.usefixtures("no_proxy_env")
def test_tinyproxy_with_basic_auth(tmp_path: Path, origin: str) -> None:
    with running_proxy(tmp_path, auth=("alice", "s3cret")) as proxy:
        assert proxy.url == f"http://127.0.0.1:{proxy.port}"  # no credentials in .url
        assert proxy.url_with_auth == f"http://alice:s3cret@127.0.0.1:{proxy.port}"
        assert _fetch_through(proxy.url, origin + "/anonymous")[0] == 407
        assert _fetch_through(proxy.url_with_auth, origin + "/v2/") == (200, b"hello from /v2/")
        # Proxy.authorization() is what tinyproxy wants on a CONNECT too
        port = int(origin.rsplit(":", 1)[1])
        with pytest.raises(AssertionError, match="407"):
            _tunnel(parse_proxy(proxy.url), port, "/refused")
        tunnelled = _tunnel(parse_proxy(proxy.url_with_auth), port, "/tunnelled")
        assert tunnelled.endswith(b"hello from /tunnelled")
        assert proxy.requests() == [
            f"GET {origin}/anonymous HTTP/1.1",
            f"GET {origin}/v2/ HTTP/1.1",
            f"CONNECT 127.0.0.1:{port} HTTP/1.1",
            f"CONNECT 127.0.0.1:{port} HTTP/1.1",
        ]


@pytest.mark.e2e  # a real tinyproxy
def test_tinyproxy_is_stopped_at_exit(tmp_path: Path) -> None:
    with running_proxy(tmp_path) as proxy:
        running: RunningProxy = proxy
        assert running.process.poll() is None
    assert running.process.poll() is not None
    with pytest.raises(OSError):
        http.client.HTTPConnection(running.host, running.port, timeout=5).connect()
