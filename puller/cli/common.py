"""What the command handlers share: the configuration their options override, a Puller for a
registry, the event loop, image lists and usage errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import PullError
from ..oci.reference import Reference, parse

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from ..config import Config
    from ..registry.auth import Credentials
    from ..registry.credentials import CredentialStore
    from ..registry.endpoint import RegistryConfig
    from ..session import Session

T = TypeVar("T")
S = TypeVar("S", bound="Session")


class UsageError(Exception):
    """A combination of arguments argparse cannot refuse itself: ``main`` reports it as
    argparse reports its own (the usage, ``pypull: error: ...``, exit status 2)."""


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, on uvloop when it is installed (``pip install 'pypull[uvloop]'``): a 1 GB
    pull took 8% less time with it in one series here (1.20 s against 1.30 s, medians of 6),
    though the benchmark's asyncio row is within noise of it. Optional;
    ``PYPULL_EVENT_LOOP=asyncio`` turns it off."""
    import asyncio  # here, not at the top: `pypull --help` needs no event loop

    choice = os.environ.get("PYPULL_EVENT_LOOP", "").strip().lower()
    if choice not in ("", "asyncio", "uvloop"):
        main.close()
        raise PullError(f"PYPULL_EVENT_LOOP={choice}: expected asyncio or uvloop")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                main.close()
                raise PullError(
                    "PYPULL_EVENT_LOOP=uvloop, but uvloop is not installed "
                    "(pip install 'pypull[uvloop]')"
                ) from None
        else:
            run = getattr(uvloop, "run", None)  # uvloop 0.18 and later (Debian 12 has 0.17)
            if run is not None:
                result: T = run(main)
                return result
    return asyncio.run(main)


def load_config(args: argparse.Namespace) -> Config:
    """Defaults < file < environment < these flags (a flag not given is None)."""
    from ..config import load

    return load(
        {
            "store": getattr(args, "store", None),
            "mirror": getattr(args, "mirror", None),
            "mirror_only": getattr(args, "mirror_only", None),
            "max_concurrent_downloads": getattr(args, "max_concurrent_downloads", None),
            "max_download_attempts": getattr(args, "max_download_attempts", None),
            "timeout": getattr(args, "timeout", None),
            "platform": getattr(args, "platform", None),
        }
    )


def credential_lookup() -> Callable[[str], Credentials | None] | None:
    """docker's config.json (``$DOCKER_CONFIG``), read once, when a registry first asks."""
    cache: list[CredentialStore] = []

    def lookup(name: str) -> Credentials | None:
        if not cache:
            # Imported here: a pull from a registry that never asks for credentials does
            # without it (and without tempfile).
            from ..registry.credentials import CredentialStore

            cache.append(CredentialStore.load())
        return cache[0].lookup(name)

    return lookup


@dataclass(frozen=True)
class Access:
    """What the command line says about reaching registries, by registry name: credentials
    (--creds, --src-creds, --dest-creds) and TLS verification (--tls-verify and its src/dest
    forms: False skips it, True insists on it). Each applies to that registry's own server
    alone; its mirrors keep what the configuration says. The repr shows no password."""

    creds: Mapping[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    tls_verify: Mapping[str, bool] = field(default_factory=dict)

    def plus(
        self, domain: str, creds: tuple[str, str] | None, tls_verify: bool | None, what: str
    ) -> Access:
        """This and ``domain``'s; ``what`` names the flags in the error when two disagree
        (--src-creds and --dest-creds for one registry, say)."""
        all_creds, all_tls = dict(self.creds), dict(self.tls_verify)
        if creds is not None and all_creds.setdefault(domain, creds) != creds:
            raise UsageError(f"{what} give {domain} two different credentials")
        if tls_verify is not None and all_tls.setdefault(domain, tls_verify) != tls_verify:
            raise UsageError(f"{what} say both true and false for {domain}")
        return Access(all_creds, all_tls)

    def registries(self, configured: Mapping[str, RegistryConfig]) -> dict[str, RegistryConfig]:
        """The configuration's registries with each ``tls_verify`` applied to the registry's
        own server: ``False`` is HTTPS without certificate checks (the flag implies TLS, as
        skopeo's does: a loopback name's default of plain HTTP becomes HTTPS; a server the
        configuration sets to ``http://`` stays as it is); ``True`` checks even where the
        configuration says ``skip_verify``."""
        import dataclasses

        from ..registry.endpoint import RegistryConfig

        out = dict(configured)
        for domain, verify in self.tls_verify.items():
            reg = out.get(domain, RegistryConfig(domain))
            server = reg.own_server()
            if not verify and reg.server is None and server.plain_http:
                server = dataclasses.replace(server, url=f"https://{server.host}")
            out[domain] = dataclasses.replace(
                reg, server=dataclasses.replace(server, skip_verify=not verify)
            )
        return out


def one_registry(
    label: str, creds: tuple[str, str] | None, tls_verify: bool | None, domains: Iterable[str]
) -> Access:
    """The ``Access`` of flags for one registry (``label``: ``--creds``, ``--src-creds``...)
    when the references name one; a UsageError when they name several and a flag was given."""
    names = sorted(set(domains))
    if creds is None and tls_verify is None:
        return Access()
    if len(names) != 1:
        flag = label if creds is not None else label.replace("creds", "tls-verify")
        raise UsageError(
            f"{flag} applies to one registry, but the images name several: " + ", ".join(names)
        )
    return Access().plus(names[0], creds, tls_verify, label)


def copy_access(
    args: argparse.Namespace, sources: Iterable[Reference], targets: Iterable[Reference]
) -> Access:
    """copy's, push's and sync's --src-creds, --src-tls-verify (the sources' registry; push
    has none) and --dest-creds, --dest-tls-verify (the targets')."""
    source = one_registry(
        "--src-creds",
        getattr(args, "src_creds", None),
        getattr(args, "src_tls_verify", None),
        (ref.domain for ref in sources),
    )
    target = one_registry(
        "--dest-creds", args.dest_creds, args.dest_tls_verify, (ref.domain for ref in targets)
    )
    for domain in target.creds.keys() | target.tls_verify.keys():
        source = source.plus(
            domain,
            target.creds.get(domain),
            target.tls_verify.get(domain),
            "--src-creds and --dest-creds",
        )
    return source


def make_session(
    kind: type[S],
    config: Config,
    creds: tuple[str, str] | None = None,
    domain: str = "",
    *,
    tls_verify: bool | None = None,
    access: Access | None = None,
    **more: Any,
) -> S:
    """A ``kind`` of session (a ``Session``, or a ``Puller`` to pull: the command imports the
    class, so that what it runs is its own import) with the configuration's mirrors, proxies,
    timeouts and docker's credentials, and the command line's ``access``, plus ``creds``
    (--creds) and ``tls_verify`` (--tls-verify) for ``domain``'s registry alone: one for every
    command."""
    from ..registry.auth import Credentials

    access = access or Access()
    if domain:
        access = access.plus(domain, creds, tls_verify, "--creds")
    return kind(
        config.store,
        registries=access.registries(config.registries),
        mirror_only=config.mirror_only,
        credentials={name: Credentials(*pair) for name, pair in access.creds.items()} or None,
        credential_lookup=credential_lookup(),
        timeout=config.timeout,
        max_download_attempts=config.max_download_attempts,
        proxies=config.proxies,
        **more,
    )


def image_list(path: str) -> list[tuple[str | None, str]]:
    """``(FILE:LINE, image)`` for each image of a list: one a line, ``#`` comments and blank
    lines skipped; ``-`` is stdin (named ``<stdin>``)."""
    from ..config import read_bounded
    from ..errors import ConfigError

    name = "<stdin>" if path == "-" else path
    try:
        text = read_bounded(sys.stdin.fileno() if path == "-" else path, name, "a list of images")
    except ConfigError as e:  # "NAME: why", said as the image list's error has always been
        said = f"cannot read the image list {e}".replace(": cannot read: ", ": ", 1)
        raise type(e)(said) from None
    images: list[tuple[str | None, str]] = []
    for number, line in enumerate(text.split("\n"), 1):  # numbered as an editor numbers them
        line = line.split("#", 1)[0].strip()
        if line:
            images.append((f"{name}:{number}", line))
    return images


def parsed(where: str | None, text: str) -> Reference:
    """``parse``, its error prefixed with ``where`` the reference was read (FILE:LINE)."""
    try:
        return parse(text)
    except PullError as e:
        if where is None:
            raise
        raise PullError(f"{where}: {e}") from None
