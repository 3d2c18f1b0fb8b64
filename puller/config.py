"""One configuration, merged once: defaults < TOML file < environment < command-line flags.

    # ~/.config/pypull/config.toml  ($PYPULL_CONFIG, else $XDG_CONFIG_HOME/pypull/config.toml)
    store = "/var/lib/pypull"
    max_concurrent_downloads = 3
    max_download_attempts = 5
    timeout = 30
    platform = "linux/amd64"
    mirror_only = false
    rate_limit_reserve = 10                  # sync: defer images when fewer pulls are left
    proxy = "http://proxy.example:3128"      # for http:// and https:// (or http_proxy, https_proxy)
    no_proxy = ["internal.example", "10.0.0.0/8"]    # or "internal.example,10.0.0.0/8"

    [[registry."docker.io".mirror]]          # tried in order, before the registry itself
    url = "http://10.0.0.5:5000"
    capabilities = ["pull", "resolve"]       # "pull" only: asked for content by digest, not tags
    insecure = true                          # plain HTTP, credentials allowed over it

    [registry."registry.example:5000"]
    server = "https://registry.example:5000" # where the registry's API lives (default: its name)
    ca_file = "/etc/pypull/example-ca.pem"
    skip_verify = false
    proxy = ""                               # its own proxy ("": none), for its mirrors too
    no_proxy = "cache.internal.example"      # its own NO_PROXY list
    upload_chunk_mib = 16                    # pushes to it in PATCH chunks of 16 MiB
    max_requests_per_second = 5              # every command: at most 5 requests a second to it
    max_concurrent_requests = 4              # and at most 4 at once (a blob's whole stream)

Proxies follow docker's rules (``puller.http.proxy``): ``$HTTP_PROXY``, ``$HTTPS_PROXY`` and
``$NO_PROXY`` (upper case first) override the file's ``proxy``/``http_proxy``/``https_proxy`` and
``no_proxy``, each on its own; a registry's own ``proxy``/``no_proxy`` override both for every
request made to pull from it (its server, its mirrors, its token realm, its blob redirects).

Every value remembers where it came from, so ``pypull config`` can say, and every mistake in the
file is reported with the file, the line and the key.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any, Literal, overload

from .errors import ConfigError
from .http.hosts import is_loopback
from .http.proxy import Proxy, ProxyConfig, UnusableProxy, parse_proxy, redact
from .oci.manifest import parse_platform
from .registry.endpoint import Endpoint, RegistryConfig, endpoint_for_domain, normalize_mirror
from .registry.limits import PER_SECOND_RANGE, rate_in_range
from .store.layout import default_store_path
from .text import shown

CAPABILITIES = frozenset({"pull", "resolve"})

DEFAULTS: dict[str, Any] = {
    "max_concurrent_downloads": 3,
    "max_download_attempts": 5,
    "timeout": 30.0,
    "platform": None,
    "mirror_only": False,
    "rate_limit_reserve": 10,
}
#: The proxy settings: ``proxy`` is both ``http_proxy`` and ``https_proxy``.
_PROXY_KEYS = ("proxy", "http_proxy", "https_proxy", "no_proxy")
#: Each proxy setting's environment variables, the first one set (not empty) winning, as in Go.
_PROXY_ENV = {
    "http_proxy": ("HTTP_PROXY", "http_proxy"),
    "https_proxy": ("HTTPS_PROXY", "https_proxy"),
    "no_proxy": ("NO_PROXY", "no_proxy"),
}
_TOP_KEYS = {"store", *DEFAULTS, "registry", *_PROXY_KEYS}
#: A registry's request limits (``registry.limits``), and what each must be.
_LIMIT_KEYS = {
    "max_requests_per_second": "positive number",
    "max_concurrent_requests": "positive int",
}
_REGISTRY_KEYS = {
    "server",
    "insecure",
    "ca_file",
    "skip_verify",
    "mirror",
    "proxy",
    "no_proxy",
    "upload_chunk_mib",
    *_LIMIT_KEYS,
}
#: A PATCH chunk is held in memory whole: at most this (registry.upload's MAX_CHUNK).
_MAX_UPLOAD_CHUNK_MIB = 64
_MIRROR_KEYS = {"url", "capabilities", "insecure", "ca_file", "skip_verify"}


@dataclass(frozen=True)
class Config:
    store: Path
    max_concurrent_downloads: int
    max_download_attempts: int
    timeout: float
    platform: str | None
    mirror_only: bool
    registries: dict[str, RegistryConfig]
    #: copies: images still to be fetched are deferred when the source has fewer pulls left
    rate_limit_reserve: int = 10
    #: where each setting came from: "default", "FILE:LINE", "$VAR", "--flag"
    sources: dict[str, str] = field(default_factory=dict)
    file: Path | None = None
    file_found: bool = False
    #: the global proxy settings: the file's, then the environment's
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    _proxies: dict[str, ProxyConfig] = field(default_factory=dict, repr=False, compare=False)

    def registry(self, name: str) -> RegistryConfig:
        return self.registries.get(name) or RegistryConfig(name)

    def proxies(self, registry: str | None = None) -> ProxyConfig:
        """The proxy settings for requests made to pull from ``registry`` (a name such as
        ``docker.io``; None: the global ones): its own ``proxy``/``no_proxy`` if it has them."""
        reg = self.registries.get(registry) if registry else None
        if reg is None or (reg.proxy is None and reg.no_proxy is None):
            return self.proxy
        cached = self._proxies.get(reg.name)
        if cached is None:
            p, own = self.proxy, reg.proxy is not None
            source = self.sources.get(f"registry.{reg.name}.proxy", "")
            no_proxy_source = self.sources.get(f"registry.{reg.name}.no_proxy", "")
            cached = self._proxies[reg.name] = ProxyConfig(
                http_proxy=reg.proxy if reg.proxy is not None else p.http_proxy,
                https_proxy=reg.proxy if reg.proxy is not None else p.https_proxy,
                no_proxy=reg.no_proxy if reg.no_proxy is not None else p.no_proxy,
                http_proxy_source=source if own else p.http_proxy_source,
                https_proxy_source=source if own else p.https_proxy_source,
                no_proxy_source=no_proxy_source if reg.no_proxy is not None else p.no_proxy_source,
            )
        return cached

    def proxy_for(self, registry: str | None, url: str) -> Proxy | None:
        """The proxy for a request to ``url`` made to pull from ``registry``; None: direct.

        Raises ``puller.http.proxy.UnusableProxy`` (a ``PullError``) if that proxy is unusable.
        """
        return self.proxies(registry).for_url(url)


def config_file(env: Mapping[str, str] = os.environ) -> Path:
    explicit = env.get("PYPULL_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.path.expanduser(env.get("XDG_CONFIG_HOME", ""))
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
    return base / "pypull" / "config.toml"


# -- reading the file -----------------------------------------------------------------------------


class TomlFile:
    """The TOML text, for error messages that point at a line (of a config or sync file)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, table: tuple[str, ...], key: str, nth: int = 0) -> int | None:
        """The line of ``key = ...`` in ``[table]`` (the ``nth`` one, for ``[[table]]``)."""
        want = ".".join(table)
        current, seen = "", -1
        for number, raw in enumerate(self.lines, 1):
            line = raw.strip()
            header = re.fullmatch(r"\[\[?\s*(.*?)\s*\]\]?\s*(#.*)?", line)
            if header:
                current = re.sub(r"\s*\.\s*", ".", re.sub("[\"']", "", header.group(1)))
                if current == want:
                    seen += 1
                continue
            here = current == "" if not table else (current == want and seen == nth)
            if here and re.match(rf"""["']?{re.escape(key)}["']?\s*=""", line):
                return number
        return None

    def where(self, table: tuple[str, ...], key: str, nth: int = 0) -> str:
        line = self.line_of(table, key, nth)
        return f"{self.path}:{line}" if line else str(self.path)

    def error(self, table: tuple[str, ...], key: str, message: str, nth: int = 0) -> ConfigError:
        name = ".".join((*table, key)) if table else key
        return ConfigError(f"{self.where(table, key, nth)}: {name}: {message}")


def _check_type(
    f: TomlFile, table: tuple[str, ...], key: str, value: Any, kind: str, nth: int = 0
) -> Any:
    ok = {
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "positive int": isinstance(value, int) and not isinstance(value, bool) and value >= 1,
        "whole number": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
        "positive number": isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value > 0,
    }[kind]
    if not ok:
        raise f.error(table, key, f"expected a {kind}, got {value!r}", nth)
    return value


def _proxy_setting(f: TomlFile, table: tuple[str, ...], key: str, value: Any) -> str:
    """A proxy URL (checked, "" for none) or a NO_PROXY list (a string or a list of strings)."""
    if key == "no_proxy":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return ",".join(value)
        if not isinstance(value, str):
            raise f.error(table, key, f"expected a string or a list of strings, got {value!r}")
        return value
    _check_type(f, table, key, value, "str")
    if value.strip():
        try:
            parse_proxy(value)
        except UnusableProxy as e:
            raise f.error(table, key, str(e)) from None
    return str(value)


def _endpoint(
    f: TomlFile,
    table: tuple[str, ...],
    spec: Mapping[str, Any],
    url: str,
    mirror: bool,
    nth: int = 0,
) -> Endpoint:
    url_key = "url" if mirror else "server"
    for key in ("insecure", "skip_verify"):
        if key in spec:
            _check_type(f, table, key, spec[key], "bool", nth)
    insecure = bool(spec.get("insecure", False))
    if "://" not in url:  # a bare host: plain HTTP only on loopback or when marked insecure
        url = ("http" if insecure or is_loopback(url) else "https") + "://" + url
    try:
        base = normalize_mirror(url).url
    except ValueError as e:
        raise f.error(table, url_key, str(e), nth) from None
    caps = spec.get("capabilities", sorted(CAPABILITIES))
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise f.error(table, "capabilities", "expected a list of strings", nth)
    unknown = set(caps) - CAPABILITIES
    if unknown:
        raise f.error(
            table, "capabilities", f"unknown capability {sorted(unknown)[0]!r} (pull, resolve)", nth
        )
    if "pull" not in caps:
        raise f.error(table, "capabilities", "a mirror needs at least 'pull'", nth)
    ca_file = spec.get("ca_file")
    if ca_file is not None:
        _check_type(f, table, "ca_file", ca_file, "str", nth)
        if not Path(ca_file).expanduser().is_file():
            raise f.error(table, "ca_file", f"no such file {ca_file!r}", nth)
    return Endpoint(
        base,
        mirror=mirror,
        capabilities=frozenset(caps),
        insecure=insecure,
        skip_verify=bool(spec.get("skip_verify", False)),
        ca_file=str(Path(ca_file).expanduser()) if ca_file else None,
    )


#: A file pypull reads whole (``config.toml``, a sync file, a ``-f`` list of images) larger than
#: this is refused: each is kilobytes, and ``/dev/zero`` or an endless pipe would fill the memory.
MAX_FILE_SIZE = 1024 * 1024


@overload
def read_bounded(
    path: str | PathLike[str] | int,
    name: str,
    what: str,
    *,
    missing_ok: Literal[False] = False,
    error: type[ConfigError] = ConfigError,
) -> str: ...
@overload
def read_bounded(
    path: str | PathLike[str] | int,
    name: str,
    what: str,
    *,
    missing_ok: bool,
    error: type[ConfigError] = ConfigError,
) -> str | None: ...
def read_bounded(
    path: str | PathLike[str] | int,
    name: str,
    what: str,
    *,
    missing_ok: bool = False,
    error: type[ConfigError] = ConfigError,
) -> str | None:
    """The UTF-8 text of the local file at ``path`` (a descriptor: read from it, left open),
    ``MAX_FILE_SIZE`` bytes at most, the one bounded read of a file pypull reads whole. An
    ``error`` (a ``ConfigError``) that starts with ``name`` (escaped) says why it cannot be
    read, or that the file is larger and so not ``what`` ("a sync file"). With ``missing_ok``
    a file that does not exist is ``None``."""
    shown_name = shown(name, None)
    try:
        with open(path, "rb", closefd=not isinstance(path, int)) as f:
            data = f.read(MAX_FILE_SIZE + 1)
    except FileNotFoundError as e:
        if missing_ok:
            return None
        raise error(f"{shown_name}: cannot read: {shown(e.strerror or str(e))}") from None
    except OSError as e:
        raise error(f"{shown_name}: cannot read: {shown(e.strerror or str(e))}") from None
    if len(data) > MAX_FILE_SIZE:
        raise error(f"{shown_name}: larger than {MAX_FILE_SIZE >> 20} MiB: not {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(
            f"{shown_name}: cannot read: not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from None


def parse_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads(text)``; a ``ValueError`` (``TOMLDecodeError`` is one) says what it
    refuses, nesting too deep for its recursion among them (a 5,000-deep array)."""
    # Imported here: most runs have no configuration file, and every start-up millisecond counts.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ValueError("arrays or tables nested too deeply") from None


def _read_file(path: Path) -> tuple[dict[str, Any], TomlFile] | None:
    text = read_bounded(path, str(path), "a configuration file", missing_ok=True)
    if text is None:
        return None
    f = TomlFile(path, text)
    try:
        return parse_toml(text), f
    except ValueError as e:
        raise ConfigError(f"{shown(str(path), None)}: invalid TOML: {shown(str(e))}") from None


def _from_file(
    doc: dict[str, Any],
    f: TomlFile,
    values: dict[str, Any],
    sources: dict[str, str],
    registries: dict[str, RegistryConfig],
) -> None:
    for key, value in doc.items():
        if key not in _TOP_KEYS:
            raise f.error((), key, f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
        if key in ("registry", *_PROXY_KEYS):
            continue
        kind = {
            "store": "str",
            "platform": "str",
            "mirror_only": "bool",
            "timeout": "positive number",
            "rate_limit_reserve": "whole number",
        }.get(key, "positive int")
        _check_type(f, (), key, value, kind)
        if key == "platform":
            try:
                parse_platform(value)
            except ValueError as e:
                raise f.error((), key, str(e)) from None
        values[key] = float(value) if key == "timeout" else value
        sources[key] = f.where((), key)
    # "proxy" is both proxies; "http_proxy"/"https_proxy" beat it wherever they are in the file
    for key in _PROXY_KEYS:
        if key in doc:
            value = _proxy_setting(f, (), key, doc[key])
            for target in ("http_proxy", "https_proxy") if key == "proxy" else (key,):
                values[target] = value
                sources[target] = f.where((), key)
    regs = doc.get("registry", {})
    if not isinstance(regs, dict):
        raise f.error((), "registry", 'expected tables [registry."NAME"]')
    for name, spec in regs.items():
        table = ("registry", name)
        if not isinstance(spec, dict):
            raise f.error(("registry",), name, "expected a table")
        for key in spec:
            if key not in _REGISTRY_KEYS:
                raise f.error(
                    table, key, f"unknown key (known: {', '.join(sorted(_REGISTRY_KEYS))})"
                )
        mirrors = []
        specs = spec.get("mirror", [])
        if not isinstance(specs, list):
            raise f.error(table, "mirror", 'expected [[registry."NAME".mirror]] tables')
        for nth, m in enumerate(specs):
            mtable = (*table, "mirror")
            if not isinstance(m, dict):
                raise f.error(table, "mirror", 'expected [[registry."NAME".mirror]] tables')
            for key in m:
                if key not in _MIRROR_KEYS:
                    raise f.error(
                        mtable, key, f"unknown key (known: {', '.join(sorted(_MIRROR_KEYS))})", nth
                    )
            if "url" not in m:
                raise ConfigError(f"{f.path}: registry.{name}.mirror #{nth + 1}: url is missing")
            _check_type(f, mtable, "url", m["url"], "str", nth)
            mirrors.append(_endpoint(f, mtable, m, m["url"], True, nth))
            sources[f"registry.{name}.mirror.{nth}"] = f.where(mtable, "url", nth)
        server = None
        chunk_mib = None
        if "upload_chunk_mib" in spec:
            chunk_mib = _check_type(
                f, table, "upload_chunk_mib", spec["upload_chunk_mib"], "positive int"
            )
            if chunk_mib > _MAX_UPLOAD_CHUNK_MIB:
                raise f.error(table, "upload_chunk_mib", f"at most {_MAX_UPLOAD_CHUNK_MIB}")
            sources[f"registry.{name}.upload_chunk_mib"] = f.where(table, "upload_chunk_mib")
        if any(k in spec for k in ("server", "insecure", "ca_file", "skip_verify")):
            default = endpoint_for_domain(name).url if name == "docker.io" else name
            url: str = _check_type(f, table, "server", spec.get("server", default), "str")
            options = {
                k: v
                for k, v in spec.items()
                if k not in ("mirror", "upload_chunk_mib", *_LIMIT_KEYS, *_PROXY_KEYS)
            }
            server = _endpoint(f, table, options, url, False)
            key = "server" if "server" in spec else next(k for k in options if k != "server")
            sources[f"registry.{name}.server"] = f.where(table, key)
        limits = _limits(f, table, spec, sources)
        proxy: dict[str, str | None] = {"proxy": None, "no_proxy": None}
        for key in proxy:
            if key in spec:
                proxy[key] = _proxy_setting(f, table, key, spec[key])
                sources[f"registry.{name}.{key}"] = f.where(table, key)
        registries[name] = RegistryConfig(
            name,
            tuple(mirrors),
            server,
            proxy=proxy["proxy"],
            no_proxy=proxy["no_proxy"],
            upload_chunk_mib=chunk_mib,
            **limits,
        )


def _limits(
    f: TomlFile, table: tuple[str, ...], spec: Mapping[str, Any], sources: dict[str, str]
) -> dict[str, Any]:
    """A registry's request limits (``_LIMIT_KEYS``), checked, their lines noted."""
    limits = {k: _check_type(f, table, k, spec[k], t) for k, t in _LIMIT_KEYS.items() if k in spec}
    rate = limits.get("max_requests_per_second")
    if rate is not None and not rate_in_range(rate):
        says = f"expected {PER_SECOND_RANGE}, got {rate!r}"
        raise f.error(table, "max_requests_per_second", says)
    for key in limits:
        sources[".".join((*table, key))] = f.where(table, key)
    return limits


# -- merging --------------------------------------------------------------------------------------

_ENV = {
    "PYPULL_STORE": "store",
    "PYPULL_MAX_CONCURRENT_DOWNLOADS": "max_concurrent_downloads",
    "PYPULL_MAX_DOWNLOAD_ATTEMPTS": "max_download_attempts",
    "PYPULL_TIMEOUT": "timeout",
    "PYPULL_PLATFORM": "platform",
    "PYPULL_MIRROR_ONLY": "mirror_only",
    "PYPULL_RATE_LIMIT_RESERVE": "rate_limit_reserve",
}


def _parse_env(var: str, key: str, text: str) -> Any:
    try:
        if key == "store":
            return text
        if key == "platform":
            parse_platform(text)
            return text
        if key == "mirror_only":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError("expected true or false")
        number = float(text) if key == "timeout" else int(text)
        if key == "rate_limit_reserve" and number == 0:
            return 0
        if not number > 0:  # also rejects nan
            raise ValueError("expected a positive number")
        return number
    except ValueError as e:
        raise ConfigError(f"${var}: {text!r}: {e}") from None


def load(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] = os.environ,
    path: Path | None = None,
) -> Config:
    """Defaults, then the file, then the environment, then ``flags`` (None values are unset).

    ``flags["mirror"]`` is a list of Docker Hub mirror URLs (``--mirror``), replacing any
    configured for docker.io, as ``$PYPULL_MIRROR`` (comma-separated) does.
    """
    flags = dict(flags or {})
    values: dict[str, Any] = dict(DEFAULTS)
    sources = dict.fromkeys(DEFAULTS, "default")
    values["store"] = None
    sources["store"] = "default"
    for key in _PROXY_ENV:
        values[key], sources[key] = "", "default"
    registries: dict[str, RegistryConfig] = {}
    file = path or config_file(env)
    parsed = _read_file(file)
    if parsed is not None:
        _from_file(*parsed, values, sources, registries)

    for var, key in _ENV.items():
        if env.get(var):
            values[key] = _parse_env(var, key, env[var])
            sources[key] = f"${var}"
    for key, names in _PROXY_ENV.items():  # checked when a request would use them (http.proxy)
        for var in names:
            if env.get(var):
                values[key], sources[key] = env[var], f"${var}"
                break
    hub_mirrors: list[str] | None = None
    hub_source = ""
    if env.get("PYPULL_MIRROR"):
        hub_mirrors = [m.strip() for m in env["PYPULL_MIRROR"].split(",") if m.strip()]
        hub_source = "$PYPULL_MIRROR"
    if flags.get("mirror"):
        hub_mirrors, hub_source = list(flags["mirror"]), "--mirror"
    if hub_mirrors is not None:
        try:
            endpoints = tuple(normalize_mirror(m) for m in hub_mirrors)
        except ValueError as e:
            raise ConfigError(f"{hub_source}: {e}") from None
        hub = registries.get("docker.io", RegistryConfig("docker.io"))
        registries["docker.io"] = replace(hub, mirrors=endpoints)
        for i in range(len(endpoints)):
            sources[f"registry.docker.io.mirror.{i}"] = hub_source

    for key, flag in (
        ("store", "--store"),
        ("max_concurrent_downloads", "--max-concurrent-downloads"),
        ("max_download_attempts", "--max-download-attempts"),
        ("timeout", "--timeout"),
        ("platform", "--platform"),
        ("mirror_only", "--mirror-only"),
    ):
        if flags.get(key) is not None:
            values[key] = flags[key]
            sources[key] = flag

    if values["store"] is None:
        values["store"] = default_store_path()
    store = Path(values["store"]).expanduser()
    if values["mirror_only"] and not any(r.mirrors for r in registries.values()):
        raise ConfigError(f"mirror_only ({sources['mirror_only']}) needs at least one mirror")
    return Config(
        store=store,
        max_concurrent_downloads=int(values["max_concurrent_downloads"]),
        max_download_attempts=int(values["max_download_attempts"]),
        timeout=float(values["timeout"]),
        platform=values["platform"],
        mirror_only=bool(values["mirror_only"]),
        registries=registries,
        rate_limit_reserve=int(values["rate_limit_reserve"]),
        sources=sources,
        file=file,
        file_found=parsed is not None,
        proxy=ProxyConfig(
            values["http_proxy"],
            values["https_proxy"],
            values["no_proxy"],
            sources["http_proxy"],
            sources["https_proxy"],
            sources["no_proxy"],
        ),
    )


def render(config: Config) -> str:
    """The effective configuration as TOML, each value with where it came from."""

    def line(text: str, source: str) -> str:
        return f"{text:<56} # {source}"

    found = "" if config.file_found else " (not found)"
    out = [f"# configuration file: {config.file}{found}"]
    for key in ("store", *DEFAULTS):
        value = getattr(config, key)
        if value is None:
            text = f"# {key} is not set"
        elif isinstance(value, bool):
            text = f"{key} = {str(value).lower()}"
        elif isinstance(value, (int, float)):
            text = f"{key} = {value}"
        else:
            text = f"{key} = {_quote(str(value))}"
        out.append(line(text, config.sources.get(key, "default")))
    out.extend(_render_proxies(config, line))
    for name, reg in sorted(config.registries.items()):
        limits = {k: getattr(reg, k) for k in _LIMIT_KEYS if getattr(reg, k) is not None}
        own = (reg.server, reg.proxy, reg.no_proxy, reg.upload_chunk_mib, *limits.values())
        if any(v is not None for v in own):
            out.append("")
            out.append(f'[registry."{name}"]')
        if reg.server is not None:
            out.append(
                line(
                    f"server = {_quote(reg.server.url)}",
                    config.sources.get(f"registry.{name}.server", ""),
                )
            )
            out.extend(_endpoint_options(reg.server))
        for key in ("proxy", "no_proxy"):
            value = getattr(reg, key)
            if value is not None:
                shown = f"{key} = {_quote(redact(value) if key == 'proxy' else value)}"
                out.append(line(shown, config.sources.get(f"registry.{name}.{key}", "")))
        if reg.upload_chunk_mib is not None:
            source = config.sources.get(f"registry.{name}.upload_chunk_mib", "")
            out.append(line(f"upload_chunk_mib = {reg.upload_chunk_mib}", source))
        for key, value in limits.items():
            out.append(line(f"{key} = {value}", config.sources.get(f"registry.{name}.{key}", "")))
        for i, m in enumerate(reg.mirrors):
            out.append("")
            out.append(
                line(
                    f'[[registry."{name}".mirror]]',
                    config.sources.get(f"registry.{name}.mirror.{i}", ""),
                )
            )
            out.append(f"url = {_quote(m.url)}")
            out.append(f"capabilities = {sorted(m.capabilities)!r}".replace("'", '"'))
            out.extend(_endpoint_options(m))
    return "\n".join(out) + "\n"


def _render_proxies(config: Config, line: Callable[[str, str], str]) -> list[str]:
    """``proxy`` (or ``http_proxy`` and ``https_proxy`` when they differ) and ``no_proxy``,
    a password masked, an unusable proxy said so next to its source."""
    p, sources = config.proxy, config.sources

    def proxy_line(key: str, value: str, source: str) -> str:
        if not value:
            return line(f"# {key} is not set", source)
        try:
            parse_proxy(value)
        except UnusableProxy as e:
            source += f" (not usable: {e.reason})"
        return line(f"{key} = {_quote(redact(value))}", source)

    out = []
    if p.http_proxy == p.https_proxy:
        both = dict.fromkeys((sources["http_proxy"], sources["https_proxy"]))
        out.append(proxy_line("proxy", p.http_proxy, ", ".join(both)))
    else:
        out.append(proxy_line("http_proxy", p.http_proxy, sources["http_proxy"]))
        out.append(proxy_line("https_proxy", p.https_proxy, sources["https_proxy"]))
    text = f"no_proxy = {_quote(p.no_proxy)}" if p.no_proxy else "# no_proxy is not set"
    out.append(line(text, sources["no_proxy"]))
    return out


def _endpoint_options(e: Endpoint) -> list[str]:
    out = []
    if e.insecure:
        out.append("insecure = true")
    if e.skip_verify:
        out.append("skip_verify = true")
    if e.ca_file:
        out.append(f"ca_file = {_quote(e.ca_file)}")
    return out


def _quote(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; DEL must be escaped too)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
