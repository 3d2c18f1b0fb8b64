"""What the command handlers share: the configuration their options override, a Puller for a
registry, the event loop, image lists and usage errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import PullError
from ..oci.reference import Reference, parse

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from ..config import Config
    from ..registry.auth import Credentials
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
    try:
        from ..registry.credentials import CredentialStore
    except ImportError:  # pragma: no cover
        return None
    cache: list[CredentialStore] = []

    def lookup(name: str) -> Credentials | None:
        if not cache:
            cache.append(CredentialStore.load())
        return cache[0].lookup(name)

    return lookup


def make_session(
    kind: type[S],
    config: Config,
    creds: tuple[str, str] | None = None,
    domain: str = "",
    **more: Any,
) -> S:
    """A ``kind`` of session (a ``Session``, or a ``Puller`` to pull: the command imports the
    class, so that what it runs is its own import) with the
    configuration's mirrors, proxies, timeouts and docker's credentials, and ``creds``
    (--creds) for ``domain``'s registry alone: one for every command."""
    from ..registry.auth import Credentials

    return kind(
        config.store,
        registries=config.registries,
        mirror_only=config.mirror_only,
        credentials={domain: Credentials(*creds)} if creds else None,
        credential_lookup=credential_lookup(),
        timeout=config.timeout,
        max_download_attempts=config.max_download_attempts,
        proxies=config.proxies,
        **more,
    )


def image_list(path: str) -> list[tuple[str | None, str]]:
    """``(FILE:LINE, image)`` for each image of a list: one a line, ``#`` comments and blank
    lines skipped; ``-`` is stdin (named ``<stdin>``)."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise PullError(f"cannot read the image list {path}: {e}") from None
    name = "<stdin>" if path == "-" else path
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
