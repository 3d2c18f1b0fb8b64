"""``pypull pull`` (also ``pypull IMAGE...``): its options, the checks argparse cannot make,
and the run: each image in turn, its events rendered, a summary when there were several."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..errors import PullError, RegistryError
from ..oci.reference import Reference, names_image
from ..text import shown
from .common import (
    UsageError,
    image_list,
    load_config,
    make_session,
    one_registry,
    parsed,
    run_async,
)
from .options import add_command, add_common, add_creds, add_format, add_settings
from .render import (
    JsonRenderer,
    PlainRenderer,
    TtyRenderer,
    login_hint,
    plural,
    print_error,
    registry_of,
)

if TYPE_CHECKING:
    import argparse

    from ..pulling import AllPlatformsResult, Puller, PullResult
    from .options import Subparsers

PULL_EPILOG = """\
examples:
  pypull redis:latest
  pypull --mirror http://127.0.0.1:5000 redis            # Docker Hub images via a mirror
  pypull --platform linux/arm64/v8 alpine:3.20
  pypull localhost:5000/team/app@sha256:<64 hex digits>
  pypull --all-platforms alpine:3.20                     # the index and every platform
  pypull -a localhost:5000/team/app                      # every tag of the repository
  pypull -f images.txt                                   # one image a line, # comments
  printf 'redis:7\\nalpine:3.20\\n' | pypull -f -
  pypull --format json redis | jq -c 'select(.event == "done")'

--format json (or --json) prints one JSON object a line on stdout and nothing else:
{"event": KIND, "v": 1, ...} with KIND one of resolved, exists, progress, complete, retrying,
done, error, summary; layers are named by their full digest; an error has a stable "code"
(not-found, unauthorized, unreachable, timeout, invalid-reference, ...: the README lists
every field and code).

The store is an OCI image layout (oci-layout, index.json, blobs/sha256/...) that skopeo, umoci
and other OCI tools read: skopeo copy oci:STORE:docker.io/library/redis:latest dir:/tmp/redis

exit status: 0 when every image was pulled, 1 when any pull failed (the others are still
pulled; several images end with a summary line), 2 on a usage error.
"""

#: What one image of a pull came to, in the order the summary counts them.
_OUTCOMES = ("downloaded", "up to date", "failed")


def add_pull(sub: Subparsers) -> None:
    pull = add_command(
        sub,
        "pull",
        help="pull images into the store",
        description="Pull images into the local store.",
        epilog=PULL_EPILOG,
    )
    pull.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="image reference: NAME[:TAG] or NAME@sha256:DIGEST",
    )
    pull.add_argument(
        "-f",
        "--file",
        metavar="FILE",
        help="read images from FILE too: one a line, # comments and blank lines ignored; "
        "- for stdin",
    )
    pull.add_argument(
        "-a",
        "--all-tags",
        action="store_true",
        help="pull every tag of each IMAGE's repository (IMAGE given without a tag or digest), "
        "as docker pull -a",
    )
    pull.add_argument(
        "--all-platforms",
        action="store_true",
        help="store the index and every platform's image with its layers (as skopeo copy "
        "--all), not one platform; attestation manifests too",
    )
    add_format(pull, "one JSON object per event a line on stdout, nothing else there")
    add_settings(pull)
    add_creds(pull)
    pull.add_argument(
        "-q", "--quiet", action="store_true", help="print only the reference of each image pulled"
    )
    add_common(pull)
    pull.set_defaults(handler=_cmd_pull)


def _any_configured_mirror() -> bool:
    from ..config import load

    try:
        return any(r.mirrors for r in load().registries.values())
    except PullError:
        return False  # the pull itself reports what is wrong with the configuration


def _check_pull_args(args: argparse.Namespace) -> None:
    """Combinations argparse cannot express; a violation is a usage error (exit 2)."""
    if not args.images and not args.file:
        raise UsageError("no image to pull: give IMAGE arguments or -f FILE")
    if args.mirror_only and not args.mirror and not _any_configured_mirror():
        raise UsageError(
            "--mirror-only needs at least one --mirror (or a mirror in the configuration)"
        )
    if args.all_platforms and args.platform:
        raise UsageError("--all-platforms pulls every platform: leave out --platform")
    if args.quiet and args.format == "json":
        raise UsageError("--quiet and --format json cannot be combined")


def _cmd_pull(args: argparse.Namespace) -> int:
    """The IMAGE arguments, then FILE's (an error names its FILE:LINE), parsed before any is
    pulled."""
    _check_pull_args(args)
    listed: list[tuple[str | None, str]] = [(None, text) for text in args.images]
    if args.file:
        listed += image_list(args.file)
    if not listed:
        raise UsageError(f"{shown(args.file, 200)} names no image")
    refs: list[tuple[str, Reference]] = []
    for where, text in listed:
        try:
            ref = parsed(where, text)
        except PullError as e:
            _pull_failed(args, text, e)
            return 1
        if args.all_tags and names_image(text):
            at = f"{shown(where, 200)}: " if where else ""
            raise UsageError(f"{at}{shown(text, 200)}: a tag can't be used with --all-tags/-a")
        refs.append((text, ref))
    one_registry("--creds", args.creds, args.tls_verify, (ref.domain for _, ref in refs))
    return run_async(_pull_all(args, refs))


async def _pull_all(args: argparse.Namespace, refs: list[tuple[str, Reference]]) -> int:
    """Each image in turn (with ``--all-tags``, each tag of each repository), through one
    Puller; a summary when there were several; exit 1 if any failed."""
    config = load_config(args)
    args.platform = config.platform

    outcomes: list[str] = []
    from ..pulling import Puller

    async with make_session(
        Puller,
        config,
        args.creds,
        refs[0][1].domain,  # --creds, --tls-verify: one registry, checked by _cmd_pull
        tls_verify=args.tls_verify,
        max_concurrent_downloads=config.max_concurrent_downloads,
    ) as puller:
        for text, ref in refs:
            if not args.all_tags:
                outcomes.append(await _pull_one(puller, args, text, ref))
                continue
            for tagged in await _tags_to_pull(puller, args, ref, outcomes):
                outcomes.append(await _pull_one(puller, args, str(tagged), tagged))
    if len(outcomes) > 1:
        _summary(args, outcomes)
    return 1 if "failed" in outcomes else 0


async def _tags_to_pull(
    puller: Puller, args: argparse.Namespace, ref: Reference, outcomes: list[str]
) -> list[Reference]:
    """``--all-tags``: the repository's tags as references; a listing that fails, or a listed
    tag that is not a tag, counts as a failed image."""
    import dataclasses

    from ..oci.reference import valid_tag

    try:
        tags = await puller.tags(ref)
    except PullError as e:
        _pull_failed(args, ref.name, e, ref.domain)
        outcomes.append("failed")
        return []
    out = []
    for tag in tags:
        if valid_tag(tag):
            out.append(dataclasses.replace(ref, tag=tag, digest=None))
        else:  # anything a registry lists: shown escaped and cut, in JSON too
            name = f"{ref.name}:{shown(tag, 80)}"
            _pull_failed(args, name, RegistryError(f"{name}: not a valid tag name"))
            outcomes.append("failed")
    return out


def _summary(args: argparse.Namespace, outcomes: list[str]) -> None:
    """``3 images pulled: 2 downloaded, 1 up to date, 0 failed`` (or its JSON object)."""
    counts = {o: outcomes.count(o) for o in _OUTCOMES}
    if args.format == "json":
        from ..events import SCHEMA_VERSION

        JsonRenderer(sys.stdout).emit(
            {
                "event": "summary",
                "v": SCHEMA_VERSION,
                "images": len(outcomes),
                **{o.replace(" ", "_"): n for o, n in counts.items()},
            }
        )
    elif not args.quiet:
        said = ", ".join(f"{n} {o}" for o, n in counts.items())
        print(f"{plural(len(outcomes), 'image')} pulled: {said}", flush=True)


def _pull_failed(
    args: argparse.Namespace, reference: str, e: PullError, domain: str | None = None
) -> None:
    """An image that failed: the error line on stderr (with what to do about credentials),
    and with --format json its event."""
    from ..errors import error_code

    hint = login_hint(error_code(e), domain or registry_of(e), "--creds", str(e))
    print_error(e, args.debug, hint)
    if args.format == "json":
        JsonRenderer(sys.stdout).error(reference, e)


async def _pull_one(puller: Puller, args: argparse.Namespace, text: str, ref: Reference) -> str:
    """Pull one image, rendering its events; what it came to (one of ``_OUTCOMES``)."""
    out = sys.stdout
    renderer: PlainRenderer | None = None
    if args.format == "json":
        renderer = JsonRenderer(out)
    elif not args.quiet:
        renderer = TtyRenderer(out) if out.isatty() else PlainRenderer(out)
    if renderer and not names_image(text):
        renderer.line(f"Using default tag: {ref.tag}")
    result: PullResult | AllPlatformsResult | None = None
    on_event = renderer or (lambda _: None)
    try:
        if args.all_platforms:
            result = await puller.pull_all_platforms(ref, on_event=on_event)
        else:
            result = await puller.pull(ref, platform=args.platform, on_event=on_event)
    except PullError as e:
        if renderer:
            renderer.close()
        _pull_failed(args, str(ref), e, ref.domain)
        return "failed"
    except BaseException:  # Ctrl-C: the terminal's lines are finished before its error line
        if renderer:
            renderer.close()
        raise
    if renderer:
        renderer.close()
    if args.format != "json":
        print(str(result.reference), flush=True)
    return "up to date" if result.up_to_date else "downloaded"
