"""``pypull login`` and ``pypull logout``: a registry's credentials in docker's config.json (or
the credential helper it names), checked with the registry before they are stored."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..text import shown
from .common import load_config, run_async
from .options import add_command, add_debug

if TYPE_CHECKING:
    import argparse

    from .options import Subparsers


def add_login(sub: Subparsers) -> None:
    login = add_command(
        sub,
        "login",
        help="check credentials with a registry and store them in docker's config.json",
        description="Log in to a registry (default: docker.io) as `docker login` does: the "
        "credentials are checked with the registry, then stored in $DOCKER_CONFIG/config.json "
        "(~/.docker/config.json), or in the credential helper config.json names.",
    )
    login.add_argument("registry", nargs="?", default="docker.io", metavar="REGISTRY")
    login.add_argument("-u", "--username", help="username (asked for on a terminal if absent)")
    login.add_argument("-p", "--password", help="password (prefer --password-stdin)")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add_debug(login)
    login.set_defaults(handler=_cmd_login)


def add_logout(sub: Subparsers) -> None:
    logout = add_command(
        sub,
        "logout",
        help="remove a registry's credentials from docker's config.json",
        description="Remove the stored credentials of a registry (default: docker.io).",
    )
    logout.add_argument("registry", nargs="?", default="docker.io", metavar="REGISTRY")
    add_debug(logout)
    logout.set_defaults(handler=_cmd_logout)


def _registry_name(text: str) -> str:
    """``docker.io``, ``localhost:5000``; a URL as docker accepts it is cut to its host."""
    from urllib.parse import urlsplit

    text = text.strip()
    if "://" in text:
        text = urlsplit(text).netloc
    text = text.split("/")[0]
    return "docker.io" if text in ("index.docker.io", "registry-1.docker.io") else text


def _cmd_login(args: argparse.Namespace) -> int:
    import getpass

    from ..oci.reference import parse as parse_ref
    from ..registry.auth import Credentials
    from ..registry.client import RegistryClient
    from ..registry.credentials import CredentialStore

    name = _registry_name(args.registry)
    username = args.username
    if username is None:
        if not sys.stdin.isatty():
            print("Error: give --username when stdin is not a terminal", file=sys.stderr)
            return 2
        username = input("Username: ")
    if args.password_stdin:
        password = sys.stdin.read().rstrip("\n")
    elif args.password is not None:
        password = args.password
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        print("Error: give --password-stdin when stdin is not a terminal", file=sys.stderr)
        return 2
    creds = Credentials(username, password)
    config = load_config(args)
    # The registry's own server, as a pull would reach it (a login never goes to a mirror).
    server = config.registry(parse_ref(f"{name}/x").domain).own_server()

    async def check() -> None:
        from ..registry.limits import limits_by_host

        async with RegistryClient(
            credentials={name: creds},
            timeout=config.timeout,
            proxies=lambda _: config.proxies(name).for_url,
            limits=limits_by_host(config.registries.values()),
        ) as client:
            await client.check_login(server)

    run_async(check())
    CredentialStore.load().login(name, creds)
    print("Login Succeeded")
    return 0


def _cmd_logout(args: argparse.Namespace) -> int:
    from ..registry.credentials import CredentialStore

    name = _registry_name(args.registry)
    if CredentialStore.load().logout(name):
        print(f"Removing login credentials for {shown(name)}")
    else:
        print(f"Not logged in to {shown(name)}")
    return 0
