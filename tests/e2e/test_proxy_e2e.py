"""End to end through a real forward proxy: ``pypull`` behind ``tinyproxy`` (``fixtures.proxy``).

Every test runs the real command with ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` or the
``proxy``/``http_proxy``/``https_proxy``/``no_proxy`` keys of ``config.toml``, against the real
registry (plain HTTP, or HTTPS with a self-signed certificate) or the fake one (to see the headers
that reach a registry), and reads the proxy's log to tell what went through it.

How a loopback registry gets a proxied name
-------------------------------------------

Go's rule, which pypull follows (``puller/http/proxy.py``), sends ``localhost`` and loopback IP
literals (``127.0.0.0/8``, ``::1``) direct, whatever the proxy variables say; so a registry at
``127.0.0.1:PORT`` never goes through a proxy. It must be addressed by a name that is not
``localhost`` and not an IP literal, yet that the *proxy* resolves to ``127.0.0.1``, without
touching ``/etc/hosts`` or DNS. The candidates, and why they were not taken:

* ``registry.localhost``: only resolves where nss-myhostname is configured (not on Debian's
  default ``hosts: files dns``, not here);
* the machine's host name: Debian's installer maps it to ``127.0.1.1``, but Docker and most CI
  containers map it to the container's own non-loopback address (where the registry, listening
  on ``127.0.0.1`` only, is not), and some machines do not map it at all;
* tinyproxy options (``Upstream``, ``ReversePath``) rewrite where a request goes but still
  resolve the name, and cannot make a ``CONNECT`` tunnel reach another host.

The name used is **``127.1``**, the short ``inet_aton`` spelling of ``127.0.0.1``. It is not an
IP literal by Go's ``net.ParseIP`` nor Python's ``ipaddress`` (both want four parts), so by the
rules it is a host *name* like any other, and ``127.1:PORT`` is a valid registry name in a docker
reference. Yet glibc's ``getaddrinfo``, which tinyproxy calls, reads numbers-and-dots forms with
``inet_aton`` before it asks any NSS source: ``127.1`` resolves to ``127.0.0.1`` on every glibc
system (a fresh Debian, a container, CI as root) with no ``/etc/hosts`` entry and no DNS.
A pypull that resolved the target itself (it must not: the proxy does) would not be caught by
this name alone, so the tests also check that every request the registry logged was one the proxy
logged. :func:`test_the_name_goes_through_the_proxy_by_the_rules_and_resolves_to_loopback`
checks the premise itself and says which part broke if it ever does.

pypull itself reads ``127.1`` as loopback where it judges *addresses* (``puller.http.hosts``: plain
HTTP by default, token realms), as docker does by what a name resolves to; the proxy decision is
Go's, on the URL's text. So the tests say the scheme outright (``insecure = true``, or
``server = "https://..."``) instead of relying on either default.

The registry's certificate is made here, for ``DNS:127.1`` (``fixtures.certs`` makes one for the
IP ``127.0.0.1``, which a client speaking to ``127.1`` does not accept).
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.images import Image, make_image, redis
from fixtures.proxy import RunningProxy, running_proxy
from fixtures.registry import Registry, running_tls_registry
from puller.http.proxy import ProxyConfig
from tests.support.fakeregistry import run_pypull as run_pypull_async
from tests.support.fakeregistry import start_fake
from tests.support.helpers import AccessLog, run_pypull

#: A host name for 127.0.0.1 that only a resolver reads as such (see the module docstring).
NAME = "127.1"
PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy")
USER, PASSWORD = "alice", "s3cretPW"
#: A proxy request line in tinyproxy's log: ``GET http://127.1:5000/v2/... HTTP/1.1``.
_ABSOLUTE = re.compile(r"^([A-Z]+) http://([^/\s]+)(/\S*) HTTP/1\.[01]$")


@pytest.fixture(autouse=True)
def no_proxy_from_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pypull processes see only the proxy variables a test gives them."""
    for var in (*PROXY_VARS, "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def write_config(text: str) -> Path:
    """The pypull configuration file every run of this test reads (conftest's
    ``XDG_CONFIG_HOME``; both CLI runners drop ``PYPULL_*``-variables they are not given)."""
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "pypull" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def insecure(host: str) -> str:
    """Settings that make pypull speak plain HTTP to ``host``, whether or not it counts
    ``127.1`` as loopback (plain HTTP by default) or as a name (HTTPS by default)."""
    return f'[registry."{host}"]\ninsecure = true\n'


def layer_ids(image: Image) -> list[str]:
    return [layer.digest.split(":")[1][:12] for layer in image.manifests[0].layers]


def proxied(proxy: RunningProxy, host: str) -> list[tuple[str, str]]:
    """``(method, path)`` of each absolute-form request the proxy got for ``host``; fails on any
    other request line (a request for another host, or one not in absolute form)."""
    out = []
    for line in proxy.requests():
        m = _ABSOLUTE.match(line)
        assert m and m.group(2) == host, f"unexpected request through the proxy: {line!r}"
        out.append((m.group(1), m.group(3)))
    return out


def assert_pulled(run: subprocess.CompletedProcess[str], image: Image) -> None:
    assert run.returncode == 0, run.stderr
    pulled = [line for line in run.stdout.splitlines() if line.endswith(": Pull complete")]
    assert sorted(pulled) == sorted(f"{i}: Pull complete" for i in layer_ids(image))
    assert "Retrying" not in run.stdout


def assert_one_error_line(run: subprocess.CompletedProcess[str], *words: str) -> str:
    """The run failed (exit 1) with exactly one ``Error:`` line on stderr, holding ``words``,
    and did not retry; returns the line."""
    returncode, stdout, stderr = run.returncode, run.stdout, run.stderr
    assert returncode == 1, (stdout, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "Retrying" not in stdout
    assert "Traceback" not in stderr
    return lines[0]


# -- the premise ----------------------------------------------------------------------------------


def test_the_name_goes_through_the_proxy_by_the_rules_and_resolves_to_loopback() -> None:
    proxies = ProxyConfig(http_proxy="http://proxy.invalid:3128")
    assert proxies.for_url(f"http://{NAME}:5000/v2/") is not None, (
        f"puller.http.proxy sends {NAME} direct: these tests need another proxied loopback name"
    )
    addresses = {info[4][0] for info in socket.getaddrinfo(NAME, 80, type=socket.SOCK_STREAM)}
    assert addresses == {"127.0.0.1"}, f"this libc does not read {NAME} as 127.0.0.1"


# -- plain HTTP through the proxy -----------------------------------------------------------------


@pytest.mark.parametrize("source", ["HTTP_PROXY", "http_proxy", "config"])
def test_plain_http_pull_of_eight_layers_goes_through_the_proxy(
    registry: Registry, store: Path, tmp_path: Path, source: str
) -> None:
    host = f"{NAME}:{registry.port}"
    image = redis()
    with running_proxy(tmp_path) as proxy:
        env = {}
        if source == "config":
            write_config(f'http_proxy = "{proxy.url}"\n' + insecure(host))
        else:
            write_config(insecure(host))
            env[source] = proxy.url
        seen = AccessLog(registry)
        run = run_pypull("--store", store, f"{host}/library/redis:latest", env=env)
        through = proxied(proxy, host)

    assert_pulled(run, image)
    assert f"Status: Downloaded newer image for {host}/library/redis:latest" in run.stdout
    assert ("GET", "/v2/library/redis/manifests/latest") in through
    blobs = {path.rsplit("/", 1)[1] for method, path in through if "/blobs/" in path}
    manifest = image.manifests[0]
    assert blobs == {layer.digest for layer in manifest.layers} | {manifest.config.digest}
    # every request that reached the registry came through the proxy: none went direct
    assert Counter(seen.requests()) == Counter(through)


@pytest.mark.parametrize("where", ["env-name", "env-name-and-port", "registry-config"])
def test_no_proxy_naming_the_registry_bypasses_the_proxy(
    registry: Registry, store: Path, tmp_path: Path, where: str
) -> None:
    host = f"{NAME}:{registry.port}"
    with running_proxy(tmp_path) as proxy:
        env = {"HTTP_PROXY": proxy.url}
        if where == "registry-config":
            # the registry's own no_proxy overrides $NO_PROXY (which names another host)
            write_config(insecure(host) + f'no_proxy = ["elsewhere.example", "{NAME}"]\n')
            env["NO_PROXY"] = "elsewhere.example"
        else:
            write_config(insecure(host))
            env["NO_PROXY"] = f"elsewhere.example, {host if where.endswith('port') else NAME}"
        seen = AccessLog(registry)
        run = run_pypull("--store", store, f"{host}/library/redis:latest", env=env)
        requests = proxy.requests()

    assert_pulled(run, redis())
    assert requests == []
    assert ("GET", "/v2/library/redis/manifests/latest") in seen.requests()


def test_no_proxy_for_another_port_does_not_bypass_the_proxy(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    host = f"{NAME}:{registry.port}"
    write_config(insecure(host))
    with running_proxy(tmp_path) as proxy:
        env = {"HTTP_PROXY": proxy.url, "NO_PROXY": f"{NAME}:{registry.port + 1}"}
        run = run_pypull("--store", store, f"{host}/library/redis:latest", env=env)
        through = proxied(proxy, host)
    assert_pulled(run, redis())
    assert ("GET", "/v2/library/redis/manifests/latest") in through


def test_https_proxy_alone_does_not_carry_plain_http(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    host = f"{NAME}:{registry.port}"
    write_config(insecure(host))
    with running_proxy(tmp_path) as proxy:
        run = run_pypull(
            "--store", store, f"{host}/library/redis:latest", env={"HTTPS_PROXY": proxy.url}
        )
        requests = proxy.requests()
    assert_pulled(run, redis())
    assert requests == []


# -- proxy credentials ----------------------------------------------------------------------------


def test_a_proxy_wanting_credentials_without_them_is_one_line_naming_the_proxy_and_407(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    host = f"{NAME}:{registry.port}"
    write_config(insecure(host))
    with running_proxy(tmp_path, auth=(USER, PASSWORD)) as proxy:
        seen = AccessLog(registry)
        run = run_pypull(
            "--store", store, f"{host}/library/redis:latest", env={"HTTP_PROXY": proxy.url}
        )
        requests = proxy.requests()
    line = assert_one_error_line(run, "proxy", proxy.url, "407")
    assert "Proxy Authentication Required" in line
    assert len(requests) == 1  # asked once: a 407 does not get better by asking again
    assert seen.requests() == []
    assert not (store / "index.json").exists()


def test_wrong_proxy_credentials_fail_in_one_line_without_showing_the_password(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    """tinyproxy (1.11) answers wrong credentials with ``401`` and ``WWW-Authenticate``, not
    ``407``: over plain HTTP that is indistinguishable from the registry's own 401, so only
    "one line, not retried, no password" is asked here (over CONNECT the proxy is named, below)."""
    host = f"{NAME}:{registry.port}"
    write_config(insecure(host))
    wrong = "wrongPW123"
    with running_proxy(tmp_path, auth=(USER, PASSWORD)) as proxy:
        url = proxy.url.replace("http://", f"http://{USER}:{wrong}@")
        seen = AccessLog(registry)
        run = run_pypull("--store", store, f"{host}/library/redis:latest", env={"HTTP_PROXY": url})
    assert_one_error_line(run)
    assert wrong not in run.stdout + run.stderr
    assert seen.requests() == []


def test_proxy_credentials_in_the_url_work_and_never_reach_the_registry(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    host = f"{NAME}:{registry.port}"
    write_config(insecure(host))
    with running_proxy(tmp_path, auth=(USER, PASSWORD)) as proxy:
        seen = AccessLog(registry)
        run = run_pypull(
            "--store",
            store,
            f"{host}/library/redis:latest",
            env={"HTTP_PROXY": proxy.url_with_auth},
        )
        through = proxied(proxy, host)
    assert_pulled(run, redis())
    assert PASSWORD not in run.stdout + run.stderr
    assert Counter(seen.requests()) == Counter(through)
    assert PASSWORD not in registry.log_path.read_text(errors="replace")


def _secrets() -> list[str]:
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return [PASSWORD, basic]


@pytest.mark.parametrize("route", ["through-proxy", "no-proxy-direct"])
async def test_the_registry_never_sees_proxy_authorization_nor_the_proxy_password(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    """With bearer auth on the registry, its token realm on the same proxied name: the
    registry's ``Authorization`` still goes to it, the proxy's credentials to the proxy alone.
    Direct (NO_PROXY), no request carries them at all: pypull, not tinyproxy, keeps them back."""
    image = make_image("proxied/app", "v1", layers=3)
    with running_proxy(tmp_path, auth=(USER, PASSWORD)) as proxy:
        async with start_fake([image], auth="bearer") as fake:
            host = f"{NAME}:{fake.port}"
            fake.realm = f"http://{host}/token"
            write_config(insecure(host))
            monkeypatch.setenv("HTTP_PROXY", proxy.url_with_auth)
            if route == "no-proxy-direct":
                monkeypatch.setenv("NO_PROXY", NAME)
            run = await run_pypull_async(f"{host}/{image.reference}", store=store)
            logged = list(fake.log)
        requests = proxy.requests()

    assert run.returncode == 0, run.stderr
    assert run.stdout.count(": Pull complete") == 3
    assert logged
    for entry in logged:
        assert "Proxy-Authorization" not in entry.headers, (entry.method, entry.path)
        for value in entry.headers.values():
            for secret in _secrets():
                assert secret not in value, (entry.method, entry.path, value)
    assert any(e.kind == "token" for e in logged)
    blobs = [e for e in logged if e.kind == "blob"]
    assert blobs and all((e.authorization or "").startswith("Bearer ") for e in blobs)
    if route == "through-proxy":
        assert len(requests) == len(logged)  # the token request went through it too
    else:
        assert requests == []


# -- HTTPS through a CONNECT tunnel ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    """The real registry over HTTPS with a self-signed certificate for the name ``127.1``."""
    work = tmp_path_factory.mktemp("proxy-tls")
    with running_tls_registry(work, redis(), NAME) as (registry, cert):
        yield registry, cert


def tls_settings(host: str, cert: Path) -> str:
    """HTTPS to ``host``, trusting ``cert`` (the scheme said outright: a bare loopback name
    may default to plain HTTP)."""
    return f'[registry."{host}"]\nserver = "https://{host}"\nca_file = "{cert}"\n'


@pytest.mark.parametrize("source", ["config", "env"])
def test_https_pull_goes_through_a_connect_tunnel(
    tls_registry: tuple[Registry, Path], store: Path, tmp_path: Path, source: str
) -> None:
    registry, cert = tls_registry
    host = f"{NAME}:{registry.port}"
    with running_proxy(tmp_path) as proxy:
        env = {}
        if source == "config":
            write_config(f'https_proxy = "{proxy.url}"\n' + tls_settings(host, cert))
        else:
            write_config(tls_settings(host, cert))
            env["HTTPS_PROXY"] = proxy.url
        run = run_pypull("--store", store, f"{host}/library/redis:latest", env=env)
        requests = proxy.requests()
    assert_pulled(run, redis())
    assert requests, "nothing went through the proxy"
    assert set(requests) == {f"CONNECT {host} HTTP/1.1"}


def test_https_through_a_proxy_wanting_credentials(
    tls_registry: tuple[Registry, Path], store: Path, tmp_path: Path
) -> None:
    registry, cert = tls_registry
    host = f"{NAME}:{registry.port}"
    write_config(tls_settings(host, cert))
    ref = f"{host}/library/redis:latest"
    wrong = proxy_url = ""
    with running_proxy(tmp_path, auth=(USER, PASSWORD)) as proxy:
        proxy_url = proxy.url
        refused = run_pypull("--store", store, ref, env={"HTTPS_PROXY": proxy.url})
        wrong = proxy.url.replace("http://", f"http://{USER}:wrongPW123@")
        rejected = run_pypull("--store", store, ref, env={"HTTPS_PROXY": wrong})
        before = len(proxy.requests())
        run = run_pypull("--store", store, ref, env={"HTTPS_PROXY": proxy.url_with_auth})
        requests = proxy.requests()
    line = assert_one_error_line(refused, "proxy", proxy_url, "407", host)
    assert "Proxy Authentication Required" in line
    assert requests[:before] == [f"CONNECT {host} HTTP/1.1"] * 2  # each refusal asked once
    # tinyproxy answers wrong credentials 401 (see above): still the proxy's refusal, named so
    assert_one_error_line(rejected, "proxy", proxy_url, "refused", host, "401")
    assert "wrongPW123" not in rejected.stderr
    assert_pulled(run, redis())
    assert PASSWORD not in run.stdout + run.stderr
    assert requests[before:] and set(requests[before:]) == {f"CONNECT {host} HTTP/1.1"}


# -- proxies that cannot or will not carry the pull ------------------------------------------------


@pytest.mark.parametrize("source", ["env", "config"])
def test_a_socks5_proxy_for_https_is_refused_in_one_line(
    tls_registry: tuple[Registry, Path], store: Path, source: str
) -> None:
    registry, cert = tls_registry
    host = f"{NAME}:{registry.port}"
    value = "socks5://127.0.0.1:1"
    env = {}
    if source == "env":
        write_config(tls_settings(host, cert))
        env["HTTPS_PROXY"] = value
        where = "$HTTPS_PROXY"
    else:
        path = write_config(f'https_proxy = "{value}"\n' + tls_settings(host, cert))
        where = f"{path}:1"
    run = run_pypull("--store", store, f"{host}/library/redis:latest", env=env)
    assert_one_error_line(run, where, value, "socks5:// proxies are not supported")
    assert not (store / "index.json").exists()


def test_an_unusable_https_proxy_does_not_stop_a_loopback_pull(
    registry: Registry, store: Path
) -> None:
    """Loopback goes direct whatever the proxies say, so one meant for other programs (and
    unusable here) is not even looked at."""
    env = {"HTTPS_PROXY": "socks5://127.0.0.1:1", "HTTP_PROXY": "socks5://127.0.0.1:1"}
    run = run_pypull("--store", store, f"{registry.host}/library/redis:latest", env=env)
    assert_pulled(run, redis())


def test_a_proxy_refusing_the_tunnel_is_one_line_naming_the_proxy(
    tls_registry: tuple[Registry, Path], store: Path, tmp_path: Path
) -> None:
    registry, cert = tls_registry
    host = f"{NAME}:{registry.port}"
    write_config(tls_settings(host, cert))
    # tunnels to port 443 only: a CONNECT to the registry's port is answered 403
    with running_proxy(tmp_path, connect_ports=[443]) as proxy:
        run = run_pypull(
            "--store", store, f"{host}/library/redis:latest", env={"HTTPS_PROXY": proxy.url}
        )
        requests = proxy.requests()
    assert_one_error_line(run, "proxy", proxy.url, "refused", host, "403")
    assert requests == [f"CONNECT {host} HTTP/1.1"]
    assert not (store / "index.json").exists()


def test_a_proxy_filtering_a_plain_http_request_is_one_line(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    """A forwarding proxy's refusal of a plain-HTTP request is an HTTP answer like the
    registry's own (for Go and docker too): one line with its status, not retried."""
    host = f"{NAME}:{registry.port}"
    write_config(insecure(host))
    rules = tmp_path / "filter"
    rules.write_text("")  # no rule allows anything
    extra = [f'Filter "{rules}"', "FilterDefaultDeny Yes"]
    with running_proxy(tmp_path, extra_config=extra) as proxy:
        seen = AccessLog(registry)
        run = run_pypull(
            "--store", store, f"{host}/library/redis:latest", env={"HTTP_PROXY": proxy.url}
        )
        requests = proxy.requests()
    assert_one_error_line(run, "403")
    assert len(requests) == 1
    assert seen.requests() == []


# -- pypull config --------------------------------------------------------------------------------


def test_config_shows_each_proxy_with_its_source_and_the_password_masked() -> None:
    path = write_config(
        'http_proxy = "http://bob:fileS3cret@proxy.example:3128"\n'
        'no_proxy = ["internal.example", "10.0.0.0/8"]\n'
        '[registry."r.example:5000"]\n'
        'proxy = "http://carol:regS3cret@proxy.example:3129"\n'
        'no_proxy = "cache.example"\n'
    )
    env = {"HTTPS_PROXY": "http://alice:p%40ssEnvS3cret@proxy.example:8080"}
    run = run_pypull("config", env=env)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    top, _, registry_part = out.partition('[registry."r.example:5000"]')
    assert registry_part, out

    def line(text: str, start: str) -> str:
        found = [x for x in text.splitlines() if x.startswith(start)]
        assert len(found) == 1, out
        return found[0]

    http = line(top, "http_proxy = ")
    assert '"http://bob:***@proxy.example:3128"' in http and f"# {path}:1" in http
    https = line(top, "https_proxy = ")
    assert '"http://alice:***@proxy.example:8080"' in https and "# $HTTPS_PROXY" in https
    no_proxy = line(top, "no_proxy = ")
    assert '"internal.example,10.0.0.0/8"' in no_proxy and f"# {path}:2" in no_proxy
    own = line(registry_part, "proxy = ")
    assert '"http://carol:***@proxy.example:3129"' in own and f"# {path}:4" in own
    own_no_proxy = line(registry_part, "no_proxy = ")
    assert '"cache.example"' in own_no_proxy and f"# {path}:5" in own_no_proxy
    for secret in ("fileS3cret", "regS3cret", "EnvS3cret", "p%40ss", "p@ss"):
        assert secret not in out + run.stderr


def test_config_with_proxy_from_the_environment_for_both_schemes() -> None:
    env = {
        "HTTP_PROXY": "http://u:pw1@proxy.example:3128",
        "HTTPS_PROXY": "http://u:pw1@proxy.example:3128",
        "NO_PROXY": f"{NAME},internal.example",
    }
    run = run_pypull("config", env=env)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    proxy = [x for x in lines if x.startswith("proxy = ")]
    assert len(proxy) == 1, run.stdout
    assert '"http://u:***@proxy.example:3128"' in proxy[0]
    assert "$HTTP_PROXY" in proxy[0] and "$HTTPS_PROXY" in proxy[0]
    assert any(x.startswith(f'no_proxy = "{NAME},internal.example"') for x in lines), run.stdout
    assert "pw1" not in run.stdout + run.stderr


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_proxy_that_cannot_be_reached_is_named_in_the_error(
    tls_registry: tuple[Registry, Path], store: Path, scheme: str
) -> None:
    registry, cert = tls_registry
    host = f"{NAME}:{registry.port}"
    write_config(insecure(host) if scheme == "http" else tls_settings(host, cert))
    dead = "http://127.0.0.1:1"  # nothing listens on port 1
    run = run_pypull(
        "--max-download-attempts",
        "1",
        "--store",
        store,
        f"{host}/library/redis:latest",
        env={f"{scheme.upper()}_PROXY": dead},
    )
    assert run.returncode == 1, run.stderr
    assert "proxy" in run.stderr and "127.0.0.1:1" in run.stderr, run.stderr
