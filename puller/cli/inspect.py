"""``pypull inspect`` (an image, from the store or its registry) and ``pypull tags`` (a
repository's tags at its registry): what is there, as JSON or lines."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..oci.reference import names_image, parse
from ..text import shown
from .common import UsageError, load_config, make_session, run_async
from .options import (
    add_command,
    add_common,
    add_creds,
    add_debug,
    add_format,
    add_platform,
    add_settings,
)
from .render import emit, json_text

if TYPE_CHECKING:
    import argparse

    from ..inspecting import ImageInfo
    from .options import Subparsers

INSPECT_EPILOG = """\
examples:
  pypull inspect redis:7
  pypull inspect --platform linux/arm64 redis:7 | jq .Layers
  pypull inspect --raw redis:7 | sha256sum
  pypull inspect --remote --mirror http://127.0.0.1:5000 redis:7

An image the store does not hold is an error (exit status 1). --remote lists no tags (RepoTags
is [], as skopeo inspect --no-tags): `pypull tags REPOSITORY` does.
"""


def _add_query_options(p: argparse.ArgumentParser) -> None:
    """What `inspect --remote` and `tags` need to reach a registry as a pull does."""
    add_settings(p, pulls=False)
    add_creds(p)


def add_inspect(sub: Subparsers) -> None:
    inspect = add_command(
        sub,
        "inspect",
        help="describe an image (from the store, or --remote from its registry) as JSON",
        description="Print what an image is as JSON, in the shape `skopeo inspect` prints: "
        "Name, Digest (what the reference resolved to when pulled: an index for a "
        "multi-platform image), RepoTags (the tags the store holds for the repository), "
        "Created, DockerVersion, Labels, Architecture, Variant (when set), Os, Layers, "
        "LayersData, Env, and the config's Entrypoint, Cmd, WorkingDir and User. An image "
        "pulled with every platform is described for this machine's platform, or --platform's.",
        epilog=INSPECT_EPILOG,
    )
    inspect.add_argument("image", metavar="IMAGE", help="an image in the store, as it was pulled")
    inspect.add_argument(
        "--raw",
        action="store_true",
        help="print the platform's manifest, byte for byte as the registry served it (as "
        "stored when the store does not keep the served form)",
    )
    inspect.add_argument(
        "--config", action="store_true", help="print the image's config, byte for byte"
    )
    add_platform(
        inspect,
        "the platform of a multi-platform image to describe (default: linux/<this machine>); "
        "an image of one other platform is an error",
    )
    inspect.add_argument(
        "--remote",
        action="store_true",
        help="ask the registry (through the configured mirrors and credentials, as a pull) "
        "instead of the store: the manifest and the config only, no layer; nothing is written",
    )
    add_format(
        inspect, "the document (the only form; for scripts that pass it to every command)", None
    )
    _add_query_options(inspect)
    add_common(inspect, "to read (with --remote: only for what it already holds; never written)")
    inspect.set_defaults(handler=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from ..inspecting import inspect

    ref = parse(args.image)
    config = load_config(args)

    # --platform only, not the configuration's: a platform asked for must be there (the
    # configured one is what to pull, and would make every single-platform image an error).
    async def describe() -> ImageInfo:
        if not args.remote:
            return await inspect(ref, store=config.store, platform=args.platform)
        from ..session import Session

        async with make_session(
            Session, config, args.creds, ref.domain, tls_verify=args.tls_verify
        ) as puller:
            return await inspect(ref, remote=True, platform=args.platform, puller=puller)

    info = run_async(describe())
    if args.config or args.raw:
        # The bytes themselves, as skopeo --raw prints them: data for a pipe, not text.
        sys.stdout.buffer.write(info.raw_config if args.config else info.raw)
        sys.stdout.buffer.flush()
        return 0
    print(json_text(info.to_dict(), indent=4))
    return 0


def add_tags(sub: Subparsers) -> None:
    tags = add_command(
        sub,
        "tags",
        help="list the tags of a repository at its registry",
        description="List the tags of REPOSITORY at its registry, one per line, in the order "
        "the registry lists them, following every page it links to. Asked through the "
        "configured mirrors and credentials, as a pull.",
        epilog="examples:\n"
        "  pypull tags redis\n"
        "  pypull tags --format json registry.internal:5000/team/app\n"
        '\n--format json prints one line: {"event": "tags", "v": 1, "repository", "tags": [...]}',
    )
    tags.add_argument(
        "repository", metavar="REPOSITORY", help="a repository, without a tag or digest"
    )
    add_format(tags, 'one line, {"event": "tags", "v": 1, "repository", "tags": [...]}')
    _add_query_options(tags)
    add_debug(tags)
    tags.set_defaults(handler=_cmd_tags)


def _cmd_tags(args: argparse.Namespace) -> int:
    from ..inspecting import tags

    if names_image(args.repository):
        raise UsageError(f"{shown(args.repository)}: give a repository, without a tag or digest")
    ref = parse(args.repository)

    async def listing() -> list[str]:
        from ..session import Session

        async with make_session(
            Session, load_config(args), args.creds, ref.domain, tls_verify=args.tls_verify
        ) as puller:
            return await tags(ref, puller=puller)

    found = run_async(listing())
    if args.format == "json":
        from ..events import SCHEMA_VERSION

        emit({"event": "tags", "v": SCHEMA_VERSION, "repository": ref.name, "tags": found})
    else:
        for tag in found:  # a registry's list may hold anything: one escaped line each
            print(shown(tag, None))
    return 0
