"""Configuration as a user sees it: defaults < TOML file < PYPULL_* environment < flags, where each
value came from, one-line errors that name the file, the line and the key, and ``pypull config``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from puller.config import Config, load, render
from puller.errors import ConfigError
from puller.http.proxy import UnusableProxy
from puller.registry.endpoint import DOCKER_HUB_URL, Endpoint
from puller.store.layout import default_store_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
BOTH = frozenset({"pull", "resolve"})
TOP_KEYS = ("store", "max_concurrent_downloads", "max_download_attempts", "timeout", "platform")


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def line_no(path: Path, needle: str, nth: int = 0) -> int:
    """The 1-based number of the ``nth`` line of ``path`` that starts with ``needle``."""
    lines = path.read_text().splitlines()
    hits = [i for i, text in enumerate(lines, 1) if text.strip().startswith(needle)]
    return hits[nth]


def load_error(
    path: Path | None = None, env: dict[str, str] | None = None, flags: dict[str, Any] | None = None
) -> str:
    with pytest.raises(ConfigError) as info:
        load(flags or {}, env or {}, path)
    message = str(info.value)
    assert "\n" not in message, "configuration errors are one line"
    return message


def effective(config: Config) -> dict[str, Any]:
    """What a pull would use, without where it came from."""
    return {
        "store": config.store,
        "max_concurrent_downloads": config.max_concurrent_downloads,
        "max_download_attempts": config.max_download_attempts,
        "timeout": config.timeout,
        "platform": config.platform,
        "mirror_only": config.mirror_only,
        "registries": config.registries,
    }


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    path = tmp_path / "example-ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    return path


@pytest.fixture
def full(tmp_path: Path, ca: Path) -> Path:
    """Every setting, two Docker Hub mirrors and one registry with its own server."""
    return write(
        tmp_path / "config.toml",
        f"""
        # pypull, every setting
        store = "{tmp_path / "images"}"
        max_concurrent_downloads = 7
        max_download_attempts = 2
        timeout = 12
        platform = "linux/arm64/v8"
        mirror_only = true

        [[registry."docker.io".mirror]]          # first
        url = "10.0.0.5:5000"
        capabilities = ["pull", "resolve"]
        insecure = true

        [[registry."docker.io".mirror]]
        url = "https://mirror.example/"
        capabilities = ["pull"]
        skip_verify = true
        ca_file = "{ca}"

        [registry."registry.example:5000"]
        server = "registry.example:5000"
        insecure = true
        upload_chunk_mib = 8
        """,
    )


# -- defaults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attr", "value"),
    [
        ("store", default_store_path),  # called in the test: each test has its own data home
        ("max_concurrent_downloads", 3),
        ("max_download_attempts", 5),
        ("timeout", 30.0),
        ("platform", None),
        ("mirror_only", False),
    ],
)
def test_defaults(tmp_path: Path, attr: str, value: Any) -> None:
    value = value() if callable(value) else value
    config = load({}, {}, tmp_path / "missing.toml")
    assert getattr(config, attr) == value
    assert type(getattr(config, attr)) is type(value)
    assert config.sources[attr] == "default"


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = load({}, {}, tmp_path / "missing.toml")
    assert config.registries == {}
    assert config.file == tmp_path / "missing.toml"
    assert config.file_found is False
    assert config.registry("docker.io").mirrors == ()
    assert config.registry("docker.io").server is None


def test_an_empty_file_is_all_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", "# nothing yet\n")
    config = load({}, {}, path)
    assert config.file_found is True
    assert effective(config) == effective(load({}, {}, tmp_path / "missing.toml"))
    assert set(config.sources.values()) == {"default"}


# -- the file ------------------------------------------------------------------------------------


def test_full_file_values(full: Path, tmp_path: Path) -> None:
    config = load({}, {}, full)
    assert config.file == full
    assert config.file_found is True
    assert config.store == tmp_path / "images"
    assert config.max_concurrent_downloads == 7
    assert config.max_download_attempts == 2
    assert config.timeout == 12.0
    assert isinstance(config.timeout, float)
    assert config.platform == "linux/arm64/v8"
    assert config.mirror_only is True


def test_full_file_endpoints(full: Path, ca: Path) -> None:
    config = load({}, {}, full)
    assert set(config.registries) == {"docker.io", "registry.example:5000"}
    hub = config.registry("docker.io")
    assert hub.server is None  # no server keys: derived from the name
    assert hub.mirrors == (
        # a bare host is plain HTTP when marked insecure
        Endpoint("http://10.0.0.5:5000", mirror=True, capabilities=BOTH, insecure=True),
        Endpoint(
            "https://mirror.example",  # trailing slash dropped
            mirror=True,
            capabilities=frozenset({"pull"}),
            skip_verify=True,
            ca_file=str(ca),
        ),
    )
    example = config.registry("registry.example:5000")
    assert example.mirrors == ()
    assert example.server == Endpoint(
        "http://registry.example:5000", capabilities=BOTH, insecure=True
    )
    assert example.server.mirror is False


@pytest.mark.parametrize(
    ("key", "needle", "nth"),
    [
        ("store", "store =", 0),
        ("max_concurrent_downloads", "max_concurrent_downloads", 0),
        ("max_download_attempts", "max_download_attempts", 0),
        ("timeout", "timeout", 0),
        ("platform", "platform", 0),
        ("mirror_only", "mirror_only", 0),
        ("registry.docker.io.mirror.0", "url =", 0),
        ("registry.docker.io.mirror.1", "url =", 1),
        ("registry.registry.example:5000.server", "server =", 0),
    ],
)
def test_full_file_sources(full: Path, key: str, needle: str, nth: int) -> None:
    config = load({}, {}, full)
    assert config.sources[key] == f"{full}:{line_no(full, needle, nth)}"


@pytest.mark.parametrize("kind", ["mirror", "server"])
@pytest.mark.parametrize(
    ("url", "insecure", "expected"),
    [
        ("mirror.example", False, "https://mirror.example"),
        ("mirror.example:5000", True, "http://mirror.example:5000"),
        ("10.0.0.5:5000", False, "https://10.0.0.5:5000"),  # private is not loopback
        ("localhost:5000", False, "http://localhost:5000"),
        ("127.0.0.1:5000", False, "http://127.0.0.1:5000"),
        ("[::1]:5000", False, "http://[::1]:5000"),
        ("http://mirror.example", False, "http://mirror.example"),  # an explicit scheme stays
        ("https://localhost:5000", True, "https://localhost:5000"),
        ("https://mirror.example:443/", False, "https://mirror.example:443"),
        ("https://mirror.example/v2", False, "https://mirror.example"),
    ],
)
def test_scheme_rules(tmp_path: Path, kind: str, url: str, insecure: bool, expected: str) -> None:
    flag = "insecure = true" if insecure else ""
    if kind == "mirror":
        text = f'[[registry."docker.io".mirror]]\nurl = "{url}"\n{flag}\n'
    else:
        text = f'[registry."r.example"]\nserver = "{url}"\n{flag}\n'
    config = load({}, {}, write(tmp_path / "config.toml", text))
    reg = config.registry("docker.io" if kind == "mirror" else "r.example")
    endpoint = reg.mirrors[0] if kind == "mirror" else reg.server
    assert endpoint is not None
    assert endpoint.url == expected
    assert endpoint.insecure is insecure
    assert endpoint.mirror is (kind == "mirror")


@pytest.mark.parametrize(
    ("name", "body", "url", "source_key"),
    [
        # no server given: the name says where, and docker.io means Docker Hub's API host
        ("docker.io", "skip_verify = true", DOCKER_HUB_URL, "skip_verify"),
        ("r.example", "skip_verify = true", "https://r.example", "skip_verify"),
        ("r.example", "insecure = true", "http://r.example", "insecure"),
        ("localhost:5000", "skip_verify = false", "http://localhost:5000", "skip_verify"),
        ("r.example", 'server = "https://api.r.example"', "https://api.r.example", "server"),
    ],
)
def test_registry_server(tmp_path: Path, name: str, body: str, url: str, source_key: str) -> None:
    path = write(tmp_path / "config.toml", f'[registry."{name}"]\n{body}\n')
    config = load({}, {}, path)
    server = config.registry(name).server
    assert server is not None
    assert server.url == url
    assert config.sources[f"registry.{name}.server"] == f"{path}:2"


def test_literal_quoted_table_names(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        """
        [registry.'docker.io']
        skip_verify = true
        [[registry.'docker.io'.mirror]]
        url = "https://mirror.example"
        """,
    )
    config = load({}, {}, path)
    assert config.registry("docker.io").mirrors[0].url == "https://mirror.example"
    assert config.sources["registry.docker.io.server"] == f"{path}:2"
    assert config.sources["registry.docker.io.mirror.0"] == f"{path}:4"


# -- precedence ----------------------------------------------------------------------------------

# key: (file line, environment (variable, text), flag (name, value), value at each level)
LEVELS: dict[str, tuple[str, tuple[str, str], tuple[str, Any], tuple[Any, Any, Any]]] = {
    "store": (
        'store = "/from/file"',
        ("PYPULL_STORE", "/from/env"),
        ("--store", "/from/flag"),
        (Path("/from/file"), Path("/from/env"), Path("/from/flag")),
    ),
    "max_concurrent_downloads": (
        "max_concurrent_downloads = 2",
        ("PYPULL_MAX_CONCURRENT_DOWNLOADS", "4"),
        ("--max-concurrent-downloads", 6),
        (2, 4, 6),
    ),
    "max_download_attempts": (
        "max_download_attempts = 1",
        ("PYPULL_MAX_DOWNLOAD_ATTEMPTS", "9"),
        ("--max-download-attempts", 3),
        (1, 9, 3),
    ),
    "timeout": (
        "timeout = 10",
        ("PYPULL_TIMEOUT", "20.5"),
        ("--timeout", 0.25),
        (10.0, 20.5, 0.25),
    ),
    "platform": (
        'platform = "linux/amd64"',
        ("PYPULL_PLATFORM", "linux/arm64"),
        ("--platform", "linux/arm/v7"),
        ("linux/amd64", "linux/arm64", "linux/arm/v7"),
    ),
    "mirror_only": (  # the environment can turn off what the file turned on
        "mirror_only = true",
        ("PYPULL_MIRROR_ONLY", "false"),
        ("--mirror-only", True),
        (True, False, True),
    ),
}


@pytest.mark.parametrize("level", ["file", "env", "flag"])
@pytest.mark.parametrize("key", list(LEVELS))
def test_precedence(tmp_path: Path, key: str, level: str) -> None:
    file_line, (var, text), (flag, flag_value), values = LEVELS[key]
    path = write(
        tmp_path / "config.toml",
        f'{file_line}\n[[registry."docker.io".mirror]]\nurl = "https://mirror.example"\n',
    )
    env = {var: text} if level in ("env", "flag") else {}
    flags = {key: flag_value} if level == "flag" else {}
    config = load(flags, env, path)
    expected = values[("file", "env", "flag").index(level)]
    assert getattr(config, key) == expected
    assert config.sources[key] == {"file": f"{path}:1", "env": f"${var}", "flag": flag}[level]
    # nothing else moved
    others = {k: v for k, v in config.sources.items() if k != key and k in LEVELS}
    assert set(others.values()) == {"default"}


def test_flags_that_are_not_given_change_nothing(full: Path) -> None:
    """The CLI passes None for every flag not on the command line; False is --no-mirror-only,
    which does override the file."""
    not_given = dict.fromkeys(LEVELS, None) | {"mirror": None, "mirror_only": None}
    assert load(not_given, {}, full) == load({}, {}, full)
    if load({}, {}, full).mirror_only:
        off = load({"mirror_only": False}, {}, full)
        assert off.mirror_only is False and off.sources["mirror_only"] == "--mirror-only"


@pytest.mark.parametrize("var", sorted({v for _, (v, _), _, _ in LEVELS.values()}))
def test_an_empty_variable_is_unset(full: Path, var: str) -> None:
    assert load({}, {var: ""}, full) == load({}, {}, full)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", True),
        ("true", True),
        ("True", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("NO", False),
        ("off", False),
    ],
)
def test_mirror_only_variable(tmp_path: Path, text: str, value: bool) -> None:
    env = {"PYPULL_MIRROR_ONLY": text, "PYPULL_MIRROR": "https://mirror.example"}
    assert load({}, env, tmp_path / "missing.toml").mirror_only is value


@pytest.mark.parametrize(
    ("env", "flags", "urls", "source"),
    [
        ({}, {}, ["http://10.0.0.5:5000", "https://mirror.example"], None),
        (
            {"PYPULL_MIRROR": " a.example , localhost:5000,,http://b.example:8080/ "},
            {},
            ["https://a.example", "http://localhost:5000", "http://b.example:8080"],
            "$PYPULL_MIRROR",
        ),
        (
            {"PYPULL_MIRROR": "a.example,b.example"},
            {"mirror": ["https://c.example"]},
            ["https://c.example"],
            "--mirror",
        ),
        (
            {},
            {"mirror": ["c.example", "d.example"]},
            ["https://c.example", "https://d.example"],
            "--mirror",
        ),
    ],
)
def test_mirrors_replace_docker_hub_mirrors(
    full: Path, env: dict[str, str], flags: dict[str, Any], urls: list[str], source: str | None
) -> None:
    config = load(flags, env, full)
    hub = config.registry("docker.io")
    assert [m.url for m in hub.mirrors] == urls
    assert all(m.mirror for m in hub.mirrors)
    for i in range(len(urls)):
        expected = source or f"{full}:{line_no(full, 'url =', i)}"
        assert config.sources[f"registry.docker.io.mirror.{i}"] == expected
    # other registries keep their configuration
    assert config.registry("registry.example:5000") == load({}, {}, full).registry(
        "registry.example:5000"
    )


def test_mirror_variable_keeps_the_docker_hub_server(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        '[registry."docker.io"]\nserver = "https://hub.internal"\n'
        '[[registry."docker.io".mirror]]\nurl = "https://old.example"\n',
    )
    config = load({}, {"PYPULL_MIRROR": "https://new.example"}, path)
    hub = config.registry("docker.io")
    assert [m.url for m in hub.mirrors] == ["https://new.example"]
    assert hub.server is not None and hub.server.url == "https://hub.internal"


# -- which file ----------------------------------------------------------------------------------


def test_pypull_config_chooses_the_file(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "pypull").mkdir(parents=True)
    write(xdg / "pypull" / "config.toml", "timeout = 1\n")  # not read
    chosen = write(tmp_path / "elsewhere.toml", "timeout = 2\n")
    config = load({}, {"PYPULL_CONFIG": str(chosen), "XDG_CONFIG_HOME": str(xdg)})
    assert (config.file, config.file_found, config.timeout) == (chosen, True, 2.0)
    assert config.sources["timeout"] == f"{chosen}:1"


def test_xdg_config_home_is_the_default_place(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "pypull").mkdir(parents=True)
    path = write(xdg / "pypull" / "config.toml", "timeout = 1\n")
    config = load({}, {"XDG_CONFIG_HOME": str(xdg)})
    assert (config.file, config.file_found, config.timeout) == (path, True, 1.0)


@pytest.mark.parametrize(
    ("env", "relative"),
    [
        ({}, ".config/pypull/config.toml"),
        ({"XDG_CONFIG_HOME": "relative/dir"}, ".config/pypull/config.toml"),  # ignored
        ({"XDG_CONFIG_HOME": "~/xdg"}, "xdg/pypull/config.toml"),
        ({"PYPULL_CONFIG": "~/my.toml"}, "my.toml"),
        ({"PYPULL_CONFIG": ""}, ".config/pypull/config.toml"),
    ],
)
def test_file_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], relative: str
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = load({}, env)
    assert config.file == tmp_path / relative
    assert config.file_found is False  # a missing file is fine: defaults


# -- errors --------------------------------------------------------------------------------------

MIRROR = '[[registry."docker.io".mirror]]\n'


@pytest.mark.parametrize(
    ("text", "line", "key", "says"),
    [
        (
            "timeout = 5\nmax_concurent_downloads = 4\n",
            2,
            "max_concurent_downloads",
            "unknown key (known: http_proxy, https_proxy, max_concurrent_downloads, "
            "max_download_attempts, mirror_only, no_proxy, platform, proxy, rate_limit_reserve, "
            "registry, store, timeout)",
        ),
        ('"tiemout" = 5\n', 1, "tiemout", "unknown key"),
        (
            '[registry."registry.example:5000"]\nserver = "registry.example:5000"\n'
            "insecur = true\n",
            3,
            "registry.registry.example:5000.insecur",
            "unknown key (known: ca_file, insecure, max_concurrent_requests, "
            "max_requests_per_second, mirror, no_proxy, proxy, server, skip_verify, "
            "upload_chunk_mib)",
        ),
        (
            '[registry."docker.io"]\ncapabilities = ["pull"]\n',
            2,
            "registry.docker.io.capabilities",
            "unknown key",
        ),
        (
            f'{MIRROR}url = "https://a.example"\nskip_verfy = true\n',
            3,
            "registry.docker.io.mirror.skip_verfy",
            "unknown key (known: ca_file, capabilities, insecure, skip_verify, url)",
        ),
        # the second [[...mirror]], not the first
        (
            f'{MIRROR}url = "https://a.example"\ninsecure = true\n\n'
            f'{MIRROR}url = "https://b.example"\nsecure = true\n',
            7,
            "registry.docker.io.mirror.secure",
            "unknown key",
        ),
        # the same typo in both: the first is reported, at its own line
        (
            f'{MIRROR}url = "https://a.example"\ncaps = ["pull"]\n'
            f'{MIRROR}url = "https://b.example"\ncaps = ["pull"]\n',
            3,
            "registry.docker.io.mirror.caps",
            "unknown key",
        ),
        # the second mirror's bad URL, not the first mirror's good one
        (
            f'{MIRROR}url = "https://a.example"\n{MIRROR}url = "ftp://b.example"\n',
            4,
            "registry.docker.io.mirror.url",
            "invalid mirror URL 'ftp://b.example'",
        ),
        ('timeout = "fast"\n', 1, "timeout", "expected a positive number, got 'fast'"),
        ("timeout = 0\n", 1, "timeout", "expected a positive number, got 0"),
        ("timeout = -1.5\n", 1, "timeout", "expected a positive number, got -1.5"),
        ("timeout = nan\n", 1, "timeout", "expected a positive number, got nan"),
        (
            "max_concurrent_downloads = 0\n",
            1,
            "max_concurrent_downloads",
            "expected a positive int, got 0",
        ),
        (
            "max_concurrent_downloads = 2.5\n",
            1,
            "max_concurrent_downloads",
            "expected a positive int, got 2.5",
        ),
        (
            "max_download_attempts = true\n",
            1,
            "max_download_attempts",
            "expected a positive int, got True",
        ),
        ('mirror_only = "yes"\n', 1, "mirror_only", "expected a bool, got 'yes'"),
        ("store = 5\n", 1, "store", "expected a str, got 5"),
        (
            'platform = "linux"\n',
            1,
            "platform",
            "invalid platform 'linux': expected os/arch[/variant]",
        ),
        ('platform = "linux//v7"\n', 1, "platform", "invalid platform"),
        ("platform = 386\n", 1, "platform", "expected a str, got 386"),
        (
            f'{MIRROR}url = "https://mirror.example/some/path"\n',
            2,
            "registry.docker.io.mirror.url",
            "give no path, /v2/ is added",
        ),
        (
            f'{MIRROR}url = "ftp://mirror.example"\n',
            2,
            "registry.docker.io.mirror.url",
            "expected http://host[:port] or https://...",
        ),
        pytest.param(
            f'{MIRROR}url = "https://"\n',
            2,
            "registry.docker.io.mirror.url",
            "invalid mirror URL",
        ),
        (f"{MIRROR}url = 5000\n", 2, "registry.docker.io.mirror.url", "expected a str, got 5000"),
        (
            f'{MIRROR}url = "https://m.example"\ncapabilities = ["pull", "push"]\n',
            3,
            "registry.docker.io.mirror.capabilities",
            "unknown capability 'push' (pull, resolve)",
        ),
        (
            f'{MIRROR}url = "https://m.example"\ncapabilities = ["resolve"]\n',
            3,
            "registry.docker.io.mirror.capabilities",
            "a mirror needs at least 'pull'",
        ),
        (
            f'{MIRROR}url = "https://m.example"\ncapabilities = []\n',
            3,
            "registry.docker.io.mirror.capabilities",
            "a mirror needs at least 'pull'",
        ),
        (
            f'{MIRROR}url = "https://m.example"\ncapabilities = "pull"\n',
            3,
            "registry.docker.io.mirror.capabilities",
            "expected a list of strings",
        ),
        (
            f'{MIRROR}url = "https://m.example"\ninsecure = "yes"\n',
            3,
            "registry.docker.io.mirror.insecure",
            "expected a bool, got 'yes'",
        ),
        (
            f'{MIRROR}url = "https://m.example"\nca_file = "/no/such/ca.pem"\n',
            3,
            "registry.docker.io.mirror.ca_file",
            "no such file '/no/such/ca.pem'",
        ),
        (
            '[registry."r.example"]\nca_file = "/no/such/ca.pem"\n',
            2,
            "registry.r.example.ca_file",
            "no such file '/no/such/ca.pem'",
        ),
        (
            '[registry."r.example"]\nserver = "https://r.example/api"\n',
            2,
            "registry.r.example.server",
            "give no path",
        ),
        (
            '[registry."r.example"]\nserver = 5\n',
            2,
            "registry.r.example.server",
            "expected a str, got 5",
        ),
        (
            '[registry."r.example"]\nskip_verify = 1\n',
            2,
            "registry.r.example.skip_verify",
            "expected a bool, got 1",
        ),
        ("registry = 5\n", 1, "registry", 'expected tables [registry."NAME"]'),
        (
            '[registry]\n"docker.io" = "https://m.example"\n',
            2,
            "registry.docker.io",
            "expected a table",
        ),
        (
            '[registry."docker.io"]\nmirror = "https://m.example"\n',
            2,
            "registry.docker.io.mirror",
            'expected [[registry."NAME".mirror]] tables',
        ),
        (
            '[registry."docker.io"]\nmirror = ["https://m.example"]\n',
            2,
            "registry.docker.io.mirror",
            'expected [[registry."NAME".mirror]] tables',
        ),
        (
            '[registry."docker.io"]\nmirror = [1]\n',
            2,
            "registry.docker.io.mirror",
            'expected [[registry."NAME".mirror]] tables',
        ),
        ("[registry.'docker.io']\nsever = 'x'\n", 2, "registry.docker.io.sever", "unknown key"),
    ],
)
def test_file_errors(tmp_path: Path, text: str, line: int, key: str, says: str) -> None:
    path = write(tmp_path / "config.toml", text)
    message = load_error(path)
    assert message.startswith(f"{path}:{line}: {key}: "), message
    assert says in message


@pytest.mark.parametrize(
    "url",
    [
        "https://alice:hunter2secret@mirror.example",
        "http://alice:hunter2secret@10.0.0.5:5000",
        "alice:hunter2secret@mirror.example",
        "ftp://alice:hunter2secret@mirror.example/path",
    ],
)
def test_credentials_in_a_mirror_url_are_refused_and_not_echoed(tmp_path: Path, url: str) -> None:
    path = write(tmp_path / "config.toml", f'{MIRROR}url = "{url}"\n')
    message = load_error(path)
    assert message.startswith(f"{path}:2: registry.docker.io.mirror.url: "), message
    assert "credentials do not belong in a mirror URL" in message
    assert "hunter2secret" not in message
    for where in ({"PYPULL_MIRROR": url}, None):
        message = load_error(
            tmp_path / "missing.toml", where or {}, None if where else {"mirror": [url]}
        )
        assert "credentials do not belong" in message
        assert "hunter2secret" not in message


def test_a_mirror_without_url(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml", f'{MIRROR}url = "https://a.example"\n{MIRROR}insecure = true\n'
    )
    message = load_error(path)
    assert message.startswith(f"{path}: registry.docker.io.mirror #2: ")
    assert "url is missing" in message


@pytest.mark.parametrize(
    ("text", "toml_says"),
    [
        ("timeout = 5\nstore = \n", "(at line 2, column"),
        ("timeout = 5\ntimeout = 6\n", "(at line 2, column"),
        ('[[registry."docker.io".mirror]\nurl = "x"\n', "(at line 1, column"),
        ('store = "unterminated\n', "(at line 1, column"),
    ],
)
def test_invalid_toml(tmp_path: Path, text: str, toml_says: str) -> None:
    path = write(tmp_path / "config.toml", text)
    message = load_error(path)
    assert message.startswith(f"{path}: invalid TOML: ")
    assert toml_says in message


def test_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'store = "\xff"\n')
    assert load_error(path).startswith(f"{path}: cannot read: ")
    directory = tmp_path / "dir.toml"
    directory.mkdir()
    assert load_error(directory).startswith(f"{directory}: cannot read: ")


@pytest.mark.parametrize(
    ("var", "text", "says"),
    [
        ("PYPULL_TIMEOUT", "abc", "could not convert"),
        ("PYPULL_TIMEOUT", "0", "expected a positive number"),
        ("PYPULL_TIMEOUT", "-3", "expected a positive number"),
        ("PYPULL_TIMEOUT", "nan", "expected a positive number"),
        ("PYPULL_MAX_CONCURRENT_DOWNLOADS", "2.5", "invalid literal"),
        ("PYPULL_MAX_CONCURRENT_DOWNLOADS", "0", "expected a positive number"),
        ("PYPULL_MAX_DOWNLOAD_ATTEMPTS", "many", "invalid literal"),
        ("PYPULL_PLATFORM", "linux", "invalid platform 'linux'"),
        ("PYPULL_MIRROR_ONLY", "maybe", "expected true or false"),
    ],
)
def test_environment_errors(tmp_path: Path, var: str, text: str, says: str) -> None:
    message = load_error(tmp_path / "missing.toml", {var: text})
    assert message.startswith(f"${var}: {text!r}: "), message
    assert says in message


@pytest.mark.parametrize(
    ("env", "flags", "prefix", "says"),
    [
        (
            {"PYPULL_MIRROR": "https://a.example,ftp://b.example"},
            {},
            "$PYPULL_MIRROR: ",
            "invalid mirror URL 'ftp://b.example'",
        ),
        ({"PYPULL_MIRROR": "https://a.example/path"}, {}, "$PYPULL_MIRROR: ", "give no path"),
        ({}, {"mirror": ["ftp://b.example"]}, "--mirror: ", "invalid mirror URL"),
    ],
)
def test_mirror_errors_outside_the_file(
    tmp_path: Path, env: dict[str, str], flags: dict[str, Any], prefix: str, says: str
) -> None:
    message = load_error(tmp_path / "missing.toml", env, flags)
    assert message.startswith(prefix), message
    assert says in message


@pytest.mark.parametrize(
    ("text", "env", "flags", "where"),
    [
        ("mirror_only = true\n", {}, {}, "{path}:1"),
        ("", {"PYPULL_MIRROR_ONLY": "yes"}, {}, "$PYPULL_MIRROR_ONLY"),
        ("", {}, {"mirror_only": True}, "--mirror-only"),
        # a registry table with a server is not a mirror
        (
            'mirror_only = true\n[registry."r.example"]\nserver = "https://r.example"\n',
            {},
            {},
            "{path}:1",
        ),
    ],
)
def test_mirror_only_needs_a_mirror(
    tmp_path: Path, text: str, env: dict[str, str], flags: dict[str, Any], where: str
) -> None:
    path = write(tmp_path / "config.toml", text)
    message = load_error(path, env, flags)
    assert message == f"mirror_only ({where.format(path=path)}) needs at least one mirror"


@pytest.mark.parametrize(
    ("text", "env", "flags"),
    [
        (f'mirror_only = true\n{MIRROR}url = "https://m.example"\n', {}, {}),
        ('mirror_only = true\n[[registry."ghcr.io".mirror]]\nurl = "https://m.example"\n', {}, {}),
        ("mirror_only = true\n", {"PYPULL_MIRROR": "https://m.example"}, {}),
        ("", {}, {"mirror_only": True, "mirror": ["https://m.example"]}),
    ],
)
def test_mirror_only_with_a_mirror_anywhere(
    tmp_path: Path, text: str, env: dict[str, str], flags: dict[str, Any]
) -> None:
    path = write(tmp_path / "config.toml", text)
    assert load(flags, env, path).mirror_only is True


# -- render --------------------------------------------------------------------------------------


def reload(config: Config, tmp_path: Path) -> Config:
    """``render``'s output, loaded as a configuration file of its own."""
    path = tmp_path / "rendered.toml"
    path.write_text(render(config), encoding="utf-8")
    return load({}, {}, path)


@pytest.mark.parametrize(
    ("env", "flags"),
    [
        ({}, {}),
        ({"PYPULL_TIMEOUT": "7.5", "PYPULL_MIRROR": "a.example,localhost:5000"}, {}),
        ({"PYPULL_MIRROR_ONLY": "0"}, {"store": "/flag/store", "platform": "linux/arm/v7"}),
    ],
)
def test_render_round_trips(
    full: Path, tmp_path: Path, env: dict[str, str], flags: dict[str, Any]
) -> None:
    config = load(flags, env, full)
    assert effective(reload(config, tmp_path)) == effective(config)


def test_render_of_the_defaults_round_trips(tmp_path: Path) -> None:
    config = load({}, {}, tmp_path / "missing.toml")
    doc = tomllib.loads(render(config))
    assert doc == {
        "store": str(default_store_path()),
        "max_concurrent_downloads": 3,
        "max_download_attempts": 5,
        "timeout": 30.0,
        "mirror_only": False,  # platform: not set, so not there
        "rate_limit_reserve": 10,
    }
    assert effective(reload(config, tmp_path)) == effective(config)


def test_render_parses_to_the_effective_values(full: Path, ca: Path, tmp_path: Path) -> None:
    doc = tomllib.loads(render(load({}, {}, full)))
    assert doc == {
        "store": str(tmp_path / "images"),
        "max_concurrent_downloads": 7,
        "max_download_attempts": 2,
        "timeout": 12.0,
        "platform": "linux/arm64/v8",
        "mirror_only": True,
        "rate_limit_reserve": 10,
        "registry": {
            "docker.io": {
                "mirror": [
                    {
                        "url": "http://10.0.0.5:5000",
                        "capabilities": ["pull", "resolve"],
                        "insecure": True,
                    },
                    {
                        "url": "https://mirror.example",
                        "capabilities": ["pull"],
                        "skip_verify": True,
                        "ca_file": str(ca),
                    },
                ]
            },
            "registry.example:5000": {
                "server": "http://registry.example:5000",
                "insecure": True,
                "upload_chunk_mib": 8,
            },
        },
    }


def test_render_says_where_each_value_comes_from(full: Path) -> None:
    config = load(
        {"max_download_attempts": 4}, {"PYPULL_TIMEOUT": "9", "PYPULL_MIRROR": "m.example"}, full
    )
    lines = render(config).splitlines()
    assert lines[0] == f"# configuration file: {full}"

    def source(prefix: str) -> str:
        [line] = [line for line in lines if line.startswith(prefix)]
        text, _, comment = line.partition(" # ")
        assert text.strip(), line
        return comment

    assert source("store = ") == f"{full}:{line_no(full, 'store =')}"
    assert source("max_concurrent_downloads = 7") == f"{full}:{line_no(full, 'max_concurrent')}"
    assert source("max_download_attempts = 4") == "--max-download-attempts"
    assert source("timeout = 9.0") == "$PYPULL_TIMEOUT"
    assert source("platform = ") == f"{full}:{line_no(full, 'platform')}"
    assert source("mirror_only = true") == f"{full}:{line_no(full, 'mirror_only')}"
    assert source('[[registry."docker.io".mirror]]') == "$PYPULL_MIRROR"
    assert source('server = "http://registry.example:5000"') == (
        f"{full}:{line_no(full, 'server =')}"
    )
    assert source('[registry."registry.example:5000"]') == ""  # a table header: no comment


def test_render_every_setting_line_has_a_source(tmp_path: Path) -> None:
    lines = render(load({}, {}, tmp_path / "missing.toml")).splitlines()
    assert lines[0] == f"# configuration file: {tmp_path / 'missing.toml'} (not found)"
    assert len(lines) == 10
    for line in lines[1:]:
        assert line.endswith(" # default"), line
    assert lines[5].startswith("# platform is not set ")
    assert lines[8].startswith("# proxy is not set ")
    assert lines[9].startswith("# no_proxy is not set ")


def test_render_quotes_strings(tmp_path: Path) -> None:
    """Paths are free text: a quote or a backslash must not break the TOML."""
    odd = tmp_path / 'a "quoted" dir\\with\tbackslash'
    odd.mkdir()
    ca = odd / "ca.pem"
    ca.write_text("x")
    path = write(
        tmp_path / "config.toml",
        f"{MIRROR}url = 'https://m.example'\nca_file = '''{ca}'''\n",
    )
    config = load({}, {"PYPULL_STORE": str(odd / "store")}, path)
    assert config.registry("docker.io").mirrors[0].ca_file == str(ca)
    doc = tomllib.loads(render(config))
    assert doc["store"] == str(odd / "store")
    assert doc["registry"]["docker.io"]["mirror"][0]["ca_file"] == str(ca)
    assert effective(reload(config, tmp_path)) == effective(config)


# -- the command ---------------------------------------------------------------------------------


def pypull(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "puller", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_config_prints_merged_settings(full: Path, tmp_path: Path) -> None:
    result = pypull(
        "config",
        "--store",
        str(tmp_path / "flag-store"),
        PYPULL_CONFIG=str(full),
        PYPULL_TIMEOUT="4",
    )
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[0] == f"# configuration file: {full}"
    expected = [
        (f'store = "{tmp_path / "flag-store"}"', "--store"),
        ("max_concurrent_downloads = 7", f"{full}:{line_no(full, 'max_concurrent')}"),
        ("max_download_attempts = 2", f"{full}:{line_no(full, 'max_download')}"),
        ("timeout = 4.0", "$PYPULL_TIMEOUT"),
        ('platform = "linux/arm64/v8"', f"{full}:{line_no(full, 'platform')}"),
        ("mirror_only = true", f"{full}:{line_no(full, 'mirror_only')}"),
        ('[[registry."docker.io".mirror]]', f"{full}:{line_no(full, 'url =', 0)}"),
        ('[[registry."docker.io".mirror]]', f"{full}:{line_no(full, 'url =', 1)}"),
        ('server = "http://registry.example:5000"', f"{full}:{line_no(full, 'server =')}"),
    ]
    annotated = [
        (text.strip(), comment) for text, _, comment in (line.partition(" # ") for line in lines)
    ]
    for pair in expected:
        assert pair in annotated, pair
    assert tomllib.loads(result.stdout)["registry"]["docker.io"]["mirror"][0]["url"] == (
        "http://10.0.0.5:5000"
    )


def test_cli_config_mirror_flag(tmp_path: Path) -> None:
    result = pypull("config", "--mirror", "m.example", PYPULL_CONFIG=str(tmp_path / "missing.toml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith(f"{tmp_path / 'missing.toml'} (not found)")
    assert '[[registry."docker.io".mirror]]' in result.stdout
    assert any(
        line.startswith('[[registry."docker.io".mirror]]') and line.endswith("# --mirror")
        for line in result.stdout.splitlines()
    )
    assert 'url = "https://m.example"' in result.stdout


def test_cli_config_uses_xdg_config_home() -> None:
    """The conftest points XDG_CONFIG_HOME at an empty directory: no file there."""
    xdg = Path(os.environ["XDG_CONFIG_HOME"])
    result = pypull("config")
    assert result.returncode == 0, result.stderr
    expected = f"# configuration file: {xdg / 'pypull' / 'config.toml'} (not found)"
    assert result.stdout.splitlines()[0] == expected


@pytest.mark.parametrize(
    ("text", "env", "error"),
    [
        (
            "timeout = 5\nmax_concurent_downloads = 4\n",
            {},
            "Error: {path}:2: max_concurent_downloads: unknown key (known: ",
        ),
        (
            f'{MIRROR}url = "https://a.example"\n{MIRROR}url = "https://b.example"\nmirrors = 1\n',
            {},
            "Error: {path}:5: registry.docker.io.mirror.mirrors: unknown key (known: ",
        ),
        ("timeout = ", {}, "Error: {path}: invalid TOML: "),
        ("", {"PYPULL_TIMEOUT": "abc"}, "Error: $PYPULL_TIMEOUT: 'abc': "),
        (
            '[registry."ghcr.io"]\nmax_requests_per_second = 1e-300\n',
            {},
            "Error: {path}:2: registry.ghcr.io.max_requests_per_second: expected a finite number "
            "of at least 1/60 (one request a minute), got 1e-300\n",
        ),
    ],
)
def test_cli_config_errors(tmp_path: Path, text: str, env: dict[str, str], error: str) -> None:
    path = write(tmp_path / "config.toml", text)
    result = pypull("config", PYPULL_CONFIG=str(path), **env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(error.format(path=path)), result.stderr
    assert result.stderr.count("\n") == 1, "one line"
    assert "bug in pypull" not in result.stderr


# -- proxies -------------------------------------------------------------------------------------

NO_ENV_PROXY = dict.fromkeys(
    ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"), ""
)
HUB = "https://registry-1.docker.io/v2/"


def proxy_url(config: Config, registry: str | None, url: str) -> str | None:
    proxy = config.proxy_for(registry, url)
    return None if proxy is None else proxy.url


def test_proxy_keys_in_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        """
        proxy = "proxy.example:3128"
        no_proxy = ["internal.example", "10.0.0.0/8"]
        """,
    )
    config = load({}, {}, path)
    assert proxy_url(config, "docker.io", HUB) == "http://proxy.example:3128"
    assert proxy_url(config, "docker.io", "http://10.0.0.5:5000/v2/") is None
    assert proxy_url(config, None, "http://mirror.example/v2/") == "http://proxy.example:3128"
    assert proxy_url(config, "r.internal.example", "https://r.internal.example/v2/") is None
    assert proxy_url(config, "localhost:5000", "http://localhost:5000/v2/") is None
    assert config.sources["http_proxy"] == config.sources["https_proxy"] == f"{path}:1"
    assert config.sources["no_proxy"] == f"{path}:2"
    assert config.proxy.no_proxy == "internal.example,10.0.0.0/8"


@pytest.mark.parametrize(
    "text",
    [
        'proxy = "http://both:1"\nhttps_proxy = "http://tls:2"\n',
        'https_proxy = "http://tls:2"\nproxy = "http://both:1"\n',
    ],
)
def test_http_proxy_and_https_proxy_keys_beat_proxy(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "config.toml", text)
    config = load({}, {}, path)
    assert proxy_url(config, None, "https://ghcr.io/v2/") == "http://tls:2"
    assert proxy_url(config, None, "http://ghcr.io/v2/") == "http://both:1"
    assert config.sources["https_proxy"] == f"{path}:{line_no(path, 'https_proxy')}"
    assert config.sources["http_proxy"] == f"{path}:{line_no(path, 'proxy')}"


def test_proxy_variables_override_the_file_one_by_one(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", 'proxy = "http://file:1"\nno_proxy = "file.example"\n')
    env = {"HTTPS_PROXY": "http://upper:2", "https_proxy": "http://lower:3", "no_proxy": "x.net"}
    config = load({}, env, path)
    assert proxy_url(config, None, "https://ghcr.io/v2/") == "http://upper:2"
    assert proxy_url(config, None, "http://ghcr.io/v2/") == "http://file:1"
    assert proxy_url(config, None, "https://file.example/v2/") == "http://upper:2"
    assert proxy_url(config, None, "https://x.net/v2/") is None
    assert (config.sources["https_proxy"], config.sources["http_proxy"]) == (
        "$HTTPS_PROXY",
        f"{path}:1",
    )
    assert config.sources["no_proxy"] == "$no_proxy"
    # an empty variable is unset, as Go reads it
    config = load({}, {"HTTPS_PROXY": "", "NO_PROXY": ""}, path)
    assert proxy_url(config, None, "https://ghcr.io/v2/") == "http://file:1"
    assert proxy_url(config, None, "https://file.example/v2/") is None


def test_without_a_file_the_environment_decides(tmp_path: Path) -> None:
    config = load({}, {"https_proxy": "proxy.example:3128"}, tmp_path / "missing.toml")
    assert proxy_url(config, "ghcr.io", "https://ghcr.io/v2/") == "http://proxy.example:3128"
    assert proxy_url(config, "ghcr.io", "http://ghcr.io/v2/") is None
    assert load({}, {}, tmp_path / "missing.toml").proxy_for("ghcr.io", HUB) is None


def test_a_registry_has_its_own_proxy_settings(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        """
        proxy = "http://global:1"
        no_proxy = "internal.example"

        [registry."ghcr.io"]
        proxy = "http://alice:s3cret@ghcr-proxy:2"

        [registry."quay.io"]
        proxy = ""

        [registry."docker.io"]
        no_proxy = "cache.example"

        [[registry."docker.io".mirror]]
        url = "https://cache.example"
        """,
    )
    config = load({}, {"HTTPS_PROXY": "http://env:3"}, path)
    # its own proxy, for every request made for it, wherever it goes (a token realm, a CDN)...
    ghcr = config.proxy_for("ghcr.io", "https://ghcr.io/v2/")
    assert ghcr is not None and ghcr.url == "http://ghcr-proxy:2"
    assert (ghcr.username, ghcr.password) == ("alice", "s3cret")
    assert proxy_url(config, "ghcr.io", "https://pkg-containers.githubusercontent.com/") == (
        "http://ghcr-proxy:2"
    )
    assert proxy_url(config, "ghcr.io", "https://r.internal.example/") is None  # global no_proxy
    assert proxy_url(config, "quay.io", "https://quay.io/v2/") is None  # "": none
    # ...its own NO_PROXY list, which its mirrors are matched against too
    assert proxy_url(config, "docker.io", "https://cache.example/v2/") is None
    assert proxy_url(config, "docker.io", HUB) == "http://env:3"
    assert proxy_url(config, "docker.io", "https://r.internal.example/") == "http://env:3"
    # other registries: the global settings, the environment winning over the file
    assert proxy_url(config, "gcr.io", "https://gcr.io/v2/") == "http://env:3"
    assert proxy_url(config, "gcr.io", "http://gcr.io/v2/") == "http://global:1"
    assert config.proxies("gcr.io") is config.proxy
    assert config.sources["registry.ghcr.io.proxy"] == f"{path}:{line_no(path, 'proxy = ', 1)}"
    assert config.sources["registry.docker.io.no_proxy"] == f"{path}:{line_no(path, 'no_proxy', 1)}"


def test_mirror_variable_keeps_the_docker_hub_proxy(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", '[registry."docker.io"]\nproxy = "http://hub:1"\n')
    config = load({"mirror": ["https://new.example"]}, {}, path)
    assert config.registry("docker.io").proxy == "http://hub:1"
    assert proxy_url(config, "docker.io", "https://new.example/v2/") == "http://hub:1"


@pytest.mark.parametrize(
    ("text", "line", "key", "says"),
    [
        (
            'timeout = 5\nproxy = "socks5://u:hunter2secret@proxy.example:1080"\n',
            2,
            "proxy",
            "'socks5://u:***@proxy.example:1080': socks5:// proxies are not supported (only"
            " http:// proxies;",
        ),
        (
            'https_proxy = "https://proxy.example:3128"\n',
            1,
            "https_proxy",
            "'https://proxy.example:3128': https:// proxies are not supported",
        ),
        ('http_proxy = "http://proxy.example:http"\n', 1, "http_proxy", "not a proxy URL ("),
        ("proxy = 3128\n", 1, "proxy", "expected a str, got 3128"),
        ("no_proxy = 5\n", 1, "no_proxy", "expected a string or a list of strings, got 5"),
        ('no_proxy = ["a", 1]\n', 1, "no_proxy", "expected a string or a list of strings"),
        (
            '[registry."ghcr.io"]\nserver = "ghcr.io"\nproxy = "socks5://p:1080"\n',
            3,
            "registry.ghcr.io.proxy",
            "socks5:// proxies are not supported",
        ),
        (
            '[registry."ghcr.io"]\nno_proxy = {a = 1}\n',
            2,
            "registry.ghcr.io.no_proxy",
            "expected a string or a list of strings",
        ),
        (
            '[registry."ghcr.io"]\nhttps_proxy = "http://p:1"\n',
            2,
            "registry.ghcr.io.https_proxy",
            "unknown key (known: ca_file, insecure, max_concurrent_requests, "
            "max_requests_per_second, mirror, no_proxy, proxy, server, skip_verify, "
            "upload_chunk_mib)",
        ),
    ],
)
def test_proxy_errors_in_the_file(
    tmp_path: Path, text: str, line: int, key: str, says: str
) -> None:
    path = write(tmp_path / "config.toml", text)
    message = load_error(path)
    assert message.startswith(f"{path}:{line}: {key}: "), message
    assert says in message, message
    assert "hunter2secret" not in message


def test_an_unusable_proxy_variable_fails_only_the_requests_that_would_use_it(
    tmp_path: Path,
) -> None:
    """HTTPS_PROXY=socks5://... is for other programs: a pull from a local registry still works,
    and one that needs the proxy fails with one line naming the variable."""
    config = load({}, {"HTTPS_PROXY": "socks5://u:hunter2@p:1080"}, tmp_path / "missing.toml")
    assert config.proxy_for("localhost:5000", "https://localhost:5000/v2/") is None
    assert config.proxy_for("docker.io", "http://10.0.0.5:5000/v2/") is None
    with pytest.raises(UnusableProxy) as info:
        config.proxy_for("docker.io", HUB)
    assert str(info.value).startswith("$HTTPS_PROXY: 'socks5://u:***@p:1080': socks5:// proxies")
    assert "hunter2" not in str(info.value)


def proxy_lines(text: str) -> dict[str, str]:
    """The top-level proxy lines of ``render``: the setting (or ``# x is not set``) -> source."""
    out = {}
    for line in text.splitlines():
        if line.startswith("["):
            break
        setting, _, source = line.partition(" # ")
        if re.match(r"(# )?(proxy|http_proxy|https_proxy|no_proxy) ", setting):
            out[setting.strip()] = source
    return out


def test_render_shows_the_proxy_settings_and_their_sources(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        """
        proxy = "http://alice:hunter2@proxy.example:3128"
        no_proxy = ["internal.example", "10.0.0.0/8"]

        [registry."ghcr.io"]
        proxy = "http://bob:hunter3@ghcr-proxy:2"
        no_proxy = ""
        """,
    )
    text = render(load({}, {}, path))
    assert "hunter2" not in text and "hunter3" not in text
    assert proxy_lines(text) == {
        'proxy = "http://alice:***@proxy.example:3128"': f"{path}:1",
        'no_proxy = "internal.example,10.0.0.0/8"': f"{path}:2",
    }
    lines = text.splitlines()
    table = lines.index('[registry."ghcr.io"]')
    assert lines[table + 1].startswith('proxy = "http://bob:***@ghcr-proxy:2"  ')
    assert lines[table + 1].endswith(f" # {path}:5")
    assert lines[table + 2].startswith('no_proxy = ""  ')
    assert lines[table + 2].endswith(f" # {path}:6")
    doc = tomllib.loads(text)
    assert doc["registry"]["ghcr.io"] == {"proxy": "http://bob:***@ghcr-proxy:2", "no_proxy": ""}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"HTTPS_PROXY": "http://p:1", "http_proxy": "http://p:1"},
            {
                'proxy = "http://p:1"': "$http_proxy, $HTTPS_PROXY",
                "# no_proxy is not set": "default",
            },
        ),
        (
            {"HTTPS_PROXY": "p:1", "NO_PROXY": "*"},
            {
                "# http_proxy is not set": "default",
                'https_proxy = "p:1"': "$HTTPS_PROXY",
                'no_proxy = "*"': "$NO_PROXY",
            },
        ),
        (
            {"https_proxy": "socks5://u:pw@p:1080"},
            {
                "# http_proxy is not set": "default",
                'https_proxy = "socks5://u:***@p:1080"': "$https_proxy (not usable: socks5://"
                " proxies are not supported (only http:// proxies; an http:// proxy tunnels"
                " https:// with CONNECT))",
                "# no_proxy is not set": "default",
            },
        ),
    ],
)
def test_render_shows_the_proxy_variables(
    tmp_path: Path, env: dict[str, str], expected: dict[str, str]
) -> None:
    assert proxy_lines(render(load({}, env, tmp_path / "missing.toml"))) == expected


def test_render_round_trips_the_proxy_settings(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        """
        http_proxy = "http://plain:1"
        no_proxy = "internal.example"
        [registry."ghcr.io"]
        proxy = ""
        [registry."docker.io"]
        no_proxy = "cache.example"
        [[registry."docker.io".mirror]]
        url = "https://cache.example"
        """,
    )
    config = load({}, {"HTTPS_PROXY": "http://tls:2"}, path)
    again = reload(config, tmp_path)
    assert effective(again) == effective(config)
    for attr in ("http_proxy", "https_proxy", "no_proxy"):
        assert getattr(again.proxy, attr) == getattr(config.proxy, attr)
    for name in ("ghcr.io", "docker.io", "quay.io"):
        for url in ("https://cache.example/", HUB, "http://x.example/", "https://ghcr.io/"):
            assert again.proxy_for(name, url) == config.proxy_for(name, url)


def test_cli_config_shows_proxies_with_masked_passwords(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        '[registry."ghcr.io"]\nproxy = "http://bob:hunter3@ghcr-proxy:2"\n',
    )
    result = pypull(
        "config",
        PYPULL_CONFIG=str(path),
        **{**NO_ENV_PROXY, "https_proxy": "http://alice:hunter2@proxy.example:3128"},
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert "hunter2" not in result.stdout and "hunter3" not in result.stdout
    annotated = [
        (text.strip(), comment)
        for text, _, comment in (line.partition(" # ") for line in result.stdout.splitlines())
    ]
    assert ("# http_proxy is not set", "default") in annotated
    assert ('https_proxy = "http://alice:***@proxy.example:3128"', "$https_proxy") in annotated
    assert ("# no_proxy is not set", "default") in annotated
    assert ('proxy = "http://bob:***@ghcr-proxy:2"', f"{path}:2") in annotated


def test_cli_config_refuses_an_unusable_proxy_in_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", 'proxy = "socks5://u:hunter2@p:1080"\n')
    result = pypull("config", PYPULL_CONFIG=str(path), **NO_ENV_PROXY)
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: {path}:1: proxy: 'socks5://u:***@p:1080': socks5:// proxies are not supported"
        " (only http:// proxies; an http:// proxy tunnels https:// with CONNECT)\n"
    )
