"""The ``pypull`` command: argument parsing, rendering of events, exit codes.

The only module that prints. Heavy imports (tqdm) happen inside the commands, so that
``pypull --help`` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import sys
import traceback
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from ..errors import PullError, TargetBusy
from ..oci.reference import Reference, names_image, parse
from ..text import shown

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..config import Config
    from ..copying import Copier, CopyResult
    from ..events import Event
    from ..inspecting import ImageInfo, ImageRecord
    from ..pulling import AllPlatformsResult, Puller, PullResult
    from ..registry.auth import Credentials
    from ..syncfile import SyncEntry

PROG = "pypull"
#: sysexits.h: a temporary failure, to be tried again later (--no-wait met a busy target).
EX_TEMPFAIL = 75
COMMANDS = (
    "pull",
    "copy",
    "push",
    "sync",
    "images",
    "rmi",
    "prune",
    "inspect",
    "tags",
    "unpack",
    "export",
    "verify",
    "save",
    "load",
    "config",
    "login",
    "logout",
)

DESCRIPTION = """\
Pull container images from a registry into a local OCI image layout, like `docker pull`
without a daemon: layers already in the store are skipped, the rest are downloaded
concurrently and verified against their SHA-256 digest before they become visible.

commands:
  pypull [pull] [options] IMAGE... | -f FILE pull images (the default command)
  pypull copy SOURCE TARGET                  copy an image from a registry to a registry
  pypull push IMAGE TARGET                   push an image from the store to a registry
  pypull sync FILE | --to PREFIX IMAGE...    keep a registry stocked with images (mirroring)
  pypull images [REPOSITORY[:TAG]]           list the images in the store (-q, --format json)
  pypull inspect [--remote] IMAGE            an image's digest, platform, layers, config as JSON
  pypull tags REPOSITORY                     list a repository's tags at its registry
  pypull unpack IMAGE DIR | -                the image's files: its layers applied to a new DIR
  pypull export IMAGE [-o FILE]              the image's files as one tar, streamed
  pypull rmi IMAGE...                        remove images from the store's index
  pypull prune [--dry-run]                   delete blobs no image uses, old partials
  pypull verify                              re-hash every blob, check every image is whole
  pypull save -o FILE IMAGE...               write images to a tar docker load and skopeo read
  pypull load [-i] FILE                      read such a tar (or docker save's) into the store
  pypull config                              show the effective configuration and its sources
  pypull login [-u USER] [--password-stdin] [REGISTRY]   store credentials as docker login does
  pypull logout [REGISTRY]                   remove them

Run `pypull COMMAND --help` (e.g. `pypull sync --help`) for the options of each.
"""

#: A copy or sync run that failed nothing but deferred some images: "come back later", which
#: cron can tell from done (0) and from failed (1).
EXIT_DEFERRED = 3
#: The exit statuses of copy and sync, as _copying decides them.
COPY_EXIT = """\
exit status: 0 when no image failed or was deferred, 1 when any failed (the others are still
copied), 3 when none failed but some were deferred (come back later: cron can tell a run that
is done from one that is not), 75 when --no-wait met a target repository another pypull is
writing to, 2 on a usage error.
"""

SYNC_EPILOG = (
    """\
the sync file (TOML):
  [[sync]]
  source = "docker.io/library/redis"            # a repository: its tags, filtered below
  target = "registry.internal:5000/mirror/redis"
  tags = ["7\\\\..*", "latest"]                    # regexes, each matched against the whole tag
  exclude = [".*-rc.*"]
  platforms = ["linux/amd64", "linux/arm64"]    # default: all, digests unchanged
  [[sync]]
  source = "ghcr.io/org/app:1.4.2"              # one image; the target keeps its tag
  target = "registry.internal:5000/mirror/app"

statuses: copied, up-to-date (nothing fetched or written), would-copy (--dry-run), deferred (the
source's pull quota is below rate_limit_reserve: not fetched; images found up to date by HEADs,
which cost no quota, are up-to-date however little is left), failed

Two entries that write one target tag are refused when the file is read, with both lines, where
the file alone tells (a tag either names that both select, every tag twice, the same regexes);
otherwise, when two regexes meet at a tag the sources list, the later entry's copy of it fails.

One run at a time writes to a target repository: each is locked for the run, a dry run aside
(flock on a file in $XDG_RUNTIME_DIR/pypull, else /run/user/UID/pypull, else /tmp/pypull-UID;
a killed run lets go). Another run waits, saying so in one line on stderr, and then finds what
the first copied up to date; with --no-wait it exits 75 at once. copy and push lock alike.

"""
    + COPY_EXIT
    + """
examples:
  pypull sync /etc/pypull/sync.toml --json
  pypull sync --to registry.internal:5000/mirror redis:7 postgres:16
  pypull sync --to registry.internal:5000/mirror -f images.txt
"""
)

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

--format json prints one JSON object a line on stdout and nothing else: {"event": KIND,
"v": 1, ...} with KIND one of resolved, exists, progress, complete, retrying, done, error,
summary; layers are named by their full digest (the README lists every field).

The store is an OCI image layout (oci-layout, index.json, blobs/sha256/...) that skopeo, umoci
and other OCI tools read: skopeo copy oci:STORE:docker.io/library/redis:latest dir:/tmp/redis

exit status: 0 when every image was pulled, 1 when any pull failed (the others are still
pulled; several images end with a summary line), 2 on a usage error.
"""


IMAGES_EPILOG = """\
examples:
  pypull images redis
  pypull images -q                       # image IDs, one per image
  pypull images --format json | jq -r 'select(.Size > 100000000) | .Name'

--format json prints one object per line: {"Name": "docker.io/library/redis:7", "Repository":
"redis", "Tag": "7", "Digest": "sha256:...", "ID": "sha256:...", "Size": 41234567,
"Platforms": []}; ID and Size are null when the store lacks the image's manifest, Platforms
lists the platforms of an image pulled with every platform.
"""

INSPECT_EPILOG = """\
examples:
  pypull inspect redis:7
  pypull inspect --platform linux/arm64 redis:7 | jq .Layers
  pypull inspect --raw redis:7 | sha256sum
  pypull inspect --remote --mirror http://127.0.0.1:5000 redis:7

An image the store does not hold is an error (exit status 1). --remote lists no tags (RepoTags
is [], as skopeo inspect --no-tags): `pypull tags REPOSITORY` does.
"""


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return n


def _positive_float(text: str) -> float:
    try:
        n = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not n > 0:
        raise argparse.ArgumentTypeError(f"{text} is not greater than 0")
    return n


def _platform(text: str) -> str:
    from ..oci.manifest import parse_platform

    try:
        parse_platform(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _mirror(text: str) -> str:
    from ..registry.endpoint import normalize_mirror

    try:
        normalize_mirror(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _creds(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise argparse.ArgumentTypeError("expected USERNAME:PASSWORD")
    return user, password


def _add_store(p: argparse.ArgumentParser, what: str = "to pull into") -> None:
    p.add_argument(
        "--store",
        metavar="DIR",
        help=f"the OCI image layout {what} "
        "(default: $PYPULL_STORE, else $XDG_DATA_HOME/pypull, else ~/.local/share/pypull)",
    )


def _add_platform(
    p: argparse.ArgumentParser,
    text: str = "the platform of a multi-platform image (default: linux/<this machine>)",
) -> None:
    """``--platform``, one platform (copy's, which repeats, is its own)."""
    p.add_argument("--platform", type=_platform, metavar="OS/ARCH[/VARIANT]", help=text)


def _add_common(p: argparse.ArgumentParser, what: str = "to pull into") -> None:
    _add_store(p, what)
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def _add_settings(p: argparse.ArgumentParser, *, pulls: bool = True) -> None:
    """The options that override the configuration file and PYPULL_* variables; without
    ``pulls``, those of copies (every platform, one blob at a time: no --platform, no -j)."""
    p.add_argument(
        "--mirror",
        action="append",
        default=None,
        type=_mirror,
        metavar="URL",
        help="registry mirror for Docker Hub images, tried before Docker Hub itself, in the "
        "order given (repeatable); http:// for a plain-HTTP mirror",
    )
    p.add_argument(
        "--mirror-only",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="never fall back from a registry's mirrors to the registry itself "
        "(--no-mirror-only undoes mirror_only from the configuration)",
    )
    if pulls:
        _add_platform(
            p, "platform to pull from a multi-platform image (default: linux/<this machine>)"
        )
        p.add_argument(
            "-j",
            "--max-concurrent-downloads",
            type=_positive_int,
            default=None,
            metavar="N",
            help="layers downloaded at once (default: 3)",
        )
    p.add_argument(
        "--max-download-attempts",
        type=_positive_int,
        default=None,
        metavar="N",
        help="attempts per layer and manifest before a temporary failure (connection trouble, "
        "429, 5xx) is given up on; a cut-off download resumes where it stopped (default: 5)",
    )
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="a connection that cannot be made, or goes silent, for this long is dropped and "
        "the download retried where it stopped; an answer's head, a manifest or a token must "
        "come within twice this, a layer at 1 KiB/s or more over this (default: 30)",
    )


def _add_query_options(p: argparse.ArgumentParser) -> None:
    """What `inspect --remote` and `tags` need to reach a registry as a pull does."""
    _add_settings(p, pulls=False)
    p.add_argument(
        "--creds",
        type=_creds,
        metavar="USERNAME:PASSWORD",
        help="credentials for the image's registry (not sent to mirrors)",
    )


def _add_copy_options(p: argparse.ArgumentParser, json_help: str) -> None:
    """What `copy`, `push` and `sync` share."""
    p.add_argument(
        "--dry-run", action="store_true", help="compare and say what would be done; write nothing"
    )
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument(
        "--missing",
        action="store_true",
        help="list the target's tags once and leave those it has alone without asking the "
        "source (for tags that never change)",
    )
    p.add_argument(
        "--platform",
        action="append",
        type=_platform,
        metavar="OS/ARCH[/VARIANT]",
        help="copy only this platform of a multi-platform image: the target's tag is then its "
        "manifest; repeated, an index of just those, recording the source's digest (default: "
        "every platform, digests unchanged)",
    )
    p.add_argument(
        "-j",
        "--jobs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="blobs (and images) moved at once (default: this machine's CPUs, 2 to 4)",
    )
    p.add_argument("--fail-fast", action="store_true", help="start no image after one has failed")
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="when another pypull is writing to a target repository, exit at once with status "
        "75 instead of waiting for it to finish",
    )
    _add_settings(p, pulls=False)
    _add_common(p, "blobs are read from when it has them (and push reads images from)")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    top = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, formatter_class=fmt)
    top.add_argument("--version", action=_VersionAction, nargs=0, help="show the version and exit")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")

    pull = sub.add_parser(
        "pull",
        help="pull images into the store",
        description="Pull images into the local store.",
        epilog=PULL_EPILOG,
        formatter_class=fmt,
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
    pull.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: docker's lines (default); json: one JSON object per event a line on "
        "stdout, nothing else there",
    )
    _add_settings(pull)
    pull.add_argument(
        "--creds",
        type=_creds,
        metavar="USERNAME:PASSWORD",
        help="credentials for the image's registry (not sent to mirrors)",
    )
    pull.add_argument(
        "-q", "--quiet", action="store_true", help="print only the reference of each image pulled"
    )
    _add_common(pull)

    copy = sub.add_parser(
        "copy",
        help="copy an image from one registry to another, byte for byte",
        description="Copy an image from one registry to another: every platform of a "
        "multi-platform image, the index and each child keeping their digests. Blobs stream "
        "from the source to the target, verified on the way; blobs the target has are skipped "
        "and blobs in another of its repositories are mounted. When both sides already hold "
        "the same digest (asked by HEAD: a registry that counts pulls does not count it), "
        "nothing is fetched or written. The source goes through the configured mirrors and "
        "credentials; the target is reached directly, with its credentials from docker's "
        "config.json.",
        epilog="examples:\n"
        "  pypull copy redis:7 registry.internal:5000/mirror/redis\n"
        "  pypull copy --json --dry-run ghcr.io/org/app:1.4.2 registry.internal:5000/app:1.4.2\n"
        "\nstatuses: copied, up-to-date, would-copy (--dry-run), deferred (the source's pull quota "
        "is\nbelow rate_limit_reserve: see `pypull sync --help`), failed\n\n" + COPY_EXIT,
        formatter_class=fmt,
    )
    copy.add_argument("source", metavar="SOURCE", help="the image to copy")
    copy.add_argument(
        "target",
        metavar="TARGET",
        help="where to copy it; without a tag, the source's tag",
    )
    copy.add_argument(
        "-a",
        "--all-tags",
        action="store_true",
        help="every tag of SOURCE's repository into TARGET's (both given without a tag); a line "
        "per image, then a summary",
    )
    _add_copy_options(
        copy,
        'one JSON object: {"source", "target", "digest", "status", "blobs": {"uploaded", '
        '"mounted", "existing"}, "bytes_uploaded", "error"} per image; with --all-tags, then '
        '{"summary": {"copied", "up-to-date", "would-copy", "deferred", "failed"}}',
    )

    push = sub.add_parser(
        "push",
        help="push an image from the store to a registry",
        description="Push an image from the local store to a registry (pull on one machine, "
        "carry the store, push on another). The manifest bytes the source registry served go "
        "out as they were (the store keeps them beside their OCI form), so the digest `pypull "
        "pull` showed is the digest at the target. A multi-platform image needs every platform "
        "in the store (pull each with --platform), or push the ones it has with --platform.",
        epilog="examples:\n"
        "  pypull pull --store ./carry redis:7 && pypull push --store ./carry redis:7 "
        "registry.internal:5000/mirror/redis",
        formatter_class=fmt,
    )
    push.add_argument("image", metavar="IMAGE", help="an image in the store, as it was pulled")
    push.add_argument("target", metavar="TARGET", help="where to push it; without a tag, IMAGE's")
    _add_copy_options(push, "one JSON object, as `pypull copy --json`")

    sync = sub.add_parser(
        "sync",
        help="keep a registry stocked with images: a sync file, or images under a prefix",
        description="Copy everything FILE describes, as `pypull copy` does: unchanged images "
        "cost HEADs only (no manifest GET at the source, nothing written), blobs shared between "
        "images are sent once and mounted into the other repositories, and -j images move at "
        "once. With --to, copy each IMAGE to PREFIX plus its repository path instead (redis:7 "
        "-> PREFIX/library/redis:7). One line per image as it ends, then a summary; exit "
        "status 1 if any image failed, 3 if none failed but some were deferred, 75 if "
        "--no-wait met a target repository another pypull is writing to (below).",
        epilog=SYNC_EPILOG,
        formatter_class=fmt,
    )
    sync.add_argument(
        "images",
        nargs="*",
        metavar="FILE | IMAGE",
        help="the sync file (TOML, below); with --to, images to copy",
    )
    sync.add_argument("--to", metavar="PREFIX", help="registry[/path] the IMAGEs go under")
    sync.add_argument(
        "-f",
        "--file",
        metavar="LIST",
        help="with --to: read images from LIST too, one a line, # comments; - for stdin",
    )
    _add_copy_options(
        sync, 'one JSON object per image, as `pypull copy --json`, then {"summary": {...}}'
    )

    images = sub.add_parser(
        "images",
        help="list the images in the store",
        description="List the images in the store, like `docker images`. IMAGE ID is the "
        "config's digest. SIZE (COMPRESSED) counts the config and layers as stored and sent, "
        "compressed: docker shows the unpacked size, which no manifest records. An image pulled "
        "with every platform is one row, with the ID and size of this machine's platform (of "
        "its first platform when it has none for this machine).",
        epilog=IMAGES_EPILOG,
        formatter_class=fmt,
    )
    images.add_argument(
        "repository",
        nargs="?",
        metavar="REPOSITORY[:TAG]",
        help="show only this repository (and tag)",
    )
    images.add_argument("--digests", action="store_true", help="show the digest of each image")
    images.add_argument(
        "-q", "--quiet", action="store_true", help="print only image IDs, one per image"
    )
    images.add_argument(
        "--no-trunc", action="store_true", help="print whole image IDs (sha256:...), not 12 digits"
    )
    images.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="json: one JSON object per image per line (JSON Lines), sizes in bytes",
    )
    _add_common(images, "to list")

    inspect = sub.add_parser(
        "inspect",
        help="describe an image (from the store, or --remote from its registry) as JSON",
        description="Print what an image is as JSON, in the shape `skopeo inspect` prints: "
        "Name, Digest (what the reference resolved to when pulled: an index for a "
        "multi-platform image), RepoTags (the tags the store holds for the repository), "
        "Created, DockerVersion, Labels, Architecture, Variant (when set), Os, Layers, "
        "LayersData, Env, and the config's Entrypoint, Cmd, WorkingDir and User. An image "
        "pulled with every platform is described for this machine's platform, or --platform's.",
        epilog=INSPECT_EPILOG,
        formatter_class=fmt,
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
    _add_platform(
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
    _add_query_options(inspect)
    _add_common(inspect, "to read (with --remote: only for what it already holds; never written)")

    tags = sub.add_parser(
        "tags",
        help="list the tags of a repository at its registry",
        description="List the tags of REPOSITORY at its registry, one per line, in the order "
        "the registry lists them, following every page it links to. Asked through the "
        "configured mirrors and credentials, as a pull.",
        epilog="examples:\n"
        "  pypull tags redis\n"
        "  pypull tags --json registry.internal:5000/team/app",
        formatter_class=fmt,
    )
    tags.add_argument(
        "repository", metavar="REPOSITORY", help="a repository, without a tag or digest"
    )
    tags.add_argument("--json", action="store_true", help="print one JSON list of the tags")
    _add_query_options(tags)
    tags.add_argument("--debug", action="store_true", help="show tracebacks of errors")

    unpack = sub.add_parser(
        "unpack",
        help="apply an image's layers to a new directory: its root filesystem",
        description="Apply IMAGE's layers (gzip, zstd or plain tar) in order to DIR, with "
        "whiteouts and opaque directories as the OCI image spec says; each layer is checked "
        "against its digest and the config's diff_id while it is written. DIR must not exist: "
        "the files go to a new directory beside it, renamed to DIR once every layer verified, "
        "so a failure leaves no DIR. Nothing is written outside DIR, whatever a layer holds. "
        "As a non-root user, device nodes, ownership other than yours and security.* xattrs "
        "are skipped, and counted in the summary.",
        epilog="example:\n  pypull redis:7 && pypull unpack redis:7 ./rootfs",
        formatter_class=fmt,
    )
    unpack.add_argument("image", metavar="IMAGE", help="an image in the store, as it was pulled")
    unpack.add_argument(
        "dest",
        metavar="DIR",
        help="the directory to create; - writes the flattened filesystem to stdout as one tar "
        "instead (as pypull export does)",
    )
    _add_platform(unpack)
    _add_common(unpack, "to read")

    export = sub.add_parser(
        "export",
        help="write an image's flattened filesystem as one tar",
        description="Write the files IMAGE's layers make, flattened (each path once, no "
        "whiteouts), as one tar, streamed: to FILE, or to stdout when it is not a terminal. "
        "Every layer is checked against its digest and diff_id as it is read. With -o, the tar "
        "is written beside FILE and renamed once complete, so a failure leaves no FILE; on "
        "stdout a failure ends the stream early, with an error and exit status 1.",
        epilog="examples:\n  pypull export redis:7 -o redis.tar\n"
        "  pypull export redis:7 | tar -t | head",
        formatter_class=fmt,
    )
    export.add_argument("image", metavar="IMAGE", help="an image in the store, as it was pulled")
    export.add_argument("-o", "--output", metavar="FILE", help="the tar to write")
    _add_platform(export)
    _add_common(export, "to read")

    rmi = sub.add_parser(
        "rmi",
        help="remove images from the store's index (their blobs go at the next prune)",
        description="Remove each IMAGE's name from the store, as `docker rmi` does: "
        "`pypull rmi redis` removes docker.io/library/redis:latest. Its blobs stay until "
        "`pypull prune`, which deletes those no other image uses. A name not in the store is "
        "an error (exit status 1); the others are still removed.",
        epilog="example:\n  pypull rmi redis:7 127.0.0.1:5000/team/app:1.4 && pypull prune",
        formatter_class=fmt,
    )
    rmi.add_argument("images", nargs="+", metavar="IMAGE")
    _add_common(rmi, "to remove the names from")

    prune = sub.add_parser(
        "prune",
        help="delete blobs no image uses, and old partial downloads",
        description="Delete every blob that no image in the store's index.json reaches "
        "(through indexes, manifests, configs and layers, every platform), and partial "
        "downloads not written to for --partials-older-than. Safe while other pypull "
        "processes pull, copy or push with the same store: what they rely on is kept. "
        "Prints each deletion and the space reclaimed.",
        epilog="examples:\n  pypull prune --dry-run\n  pypull prune --partials-older-than 1h",
        formatter_class=fmt,
    )
    prune.add_argument(
        "-n", "--dry-run", action="store_true", help="list what would be deleted; delete nothing"
    )
    prune.add_argument(
        "--partials-older-than",
        type=_duration,
        metavar="AGE",
        help="partial downloads untouched for AGE go: 30m, 24h (default), 7d, 0 for all",
    )
    prune.add_argument("--json", action="store_true", help="print one JSON object instead")
    prune.add_argument("-q", "--quiet", action="store_true", help="print only the total reclaimed")
    _add_common(prune, "to prune")

    verify = sub.add_parser(
        "verify",
        help="re-hash every blob and check every image in the store is complete",
        description="Re-hash every blob in the store and check that every image in index.json "
        "has its manifest, config and layers. Prints one line per problem; exit status 1 if "
        "there is any. Partial downloads are counted, not problems: a later pull resumes them.",
        formatter_class=fmt,
    )
    _add_common(verify, "to check")

    save = sub.add_parser(
        "save",
        help="write images from the store to one tar archive (docker save's format)",
        description="Write each IMAGE from the store to one tar archive, as `docker save` "
        "(25 and later) writes it: an OCI image layout (oci-layout, index.json, blobs/) with "
        "docker's manifest.json beside it, so `docker load`, `pypull load`, and skopeo as "
        "docker-archive: and oci-archive: all read it. Blobs shared by several images are "
        "written once. A multi-platform image (pull --all-platforms) is saved with every "
        "platform the store holds, in the OCI view only (docker's manifest.json lists "
        "single-platform images). Each blob is checked against its digest as it is copied; "
        "FILE appears only once the archive is complete.",
        epilog="examples:\n"
        "  pypull save -o redis.tar redis:7\n"
        "  pypull save -o apps.tar 127.0.0.1:5000/app-a:1 127.0.0.1:5000/app-b:1\n"
        "  pypull save redis:7 | ssh airgapped pypull load\n"
        "  skopeo copy oci-archive:redis.tar:docker.io/library/redis:7 dir:redis",
        formatter_class=fmt,
    )
    save.add_argument("images", nargs="+", metavar="IMAGE")
    save.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the archive to write (default, or -: stdout, which must not be a terminal)",
    )
    _add_common(save, "to save from")

    load = sub.add_parser(
        "load",
        help="read images from a tar archive (pypull save's or docker save's) into the store",
        description="Read an archive written by `pypull save` or `docker save` (any version; "
        "gzipped too) into the store, as `docker load` does, and print each image loaded. "
        "Every blob is verified against its digest before it enters the store; the images "
        "are named only once the whole archive is read and each is complete, so a bad "
        "archive names nothing.",
        epilog="examples:\n"
        "  pypull load -i redis.tar\n"
        "  pypull load < redis.tar\n"
        "  docker save redis:7 | pypull load",
        formatter_class=fmt,
    )
    load.add_argument("file", nargs="?", metavar="FILE", help="the archive (default: stdin)")
    load.add_argument("-i", "--input", metavar="FILE", help="the archive, as docker load takes it")
    load.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    _add_common(load, "to load into")

    config = sub.add_parser(
        "config",
        help="show the effective configuration and where each value comes from",
        description="Print the configuration pypull would use: defaults, overridden by the file "
        "($PYPULL_CONFIG, else $XDG_CONFIG_HOME/pypull/config.toml), by PYPULL_* environment "
        "variables, and by the options given here.",
        formatter_class=fmt,
    )
    _add_common(config)
    _add_settings(config)

    login = sub.add_parser(
        "login",
        help="check credentials with a registry and store them in docker's config.json",
        description="Log in to a registry (default: docker.io) as `docker login` does: the "
        "credentials are checked with the registry, then stored in $DOCKER_CONFIG/config.json "
        "(~/.docker/config.json), or in the credential helper config.json names.",
        formatter_class=fmt,
    )
    login.add_argument("registry", nargs="?", default="docker.io", metavar="REGISTRY")
    login.add_argument("-u", "--username", help="username (asked for on a terminal if absent)")
    login.add_argument("-p", "--password", help="password (prefer --password-stdin)")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    logout = sub.add_parser(
        "logout",
        help="remove a registry's credentials from docker's config.json",
        description="Remove the stored credentials of a registry (default: docker.io).",
        formatter_class=fmt,
    )
    logout.add_argument("registry", nargs="?", default="docker.io", metavar="REGISTRY")
    logout.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return top


class _VersionAction(argparse.Action):
    """Looks the version up only when asked: importlib.metadata costs 10-20 ms at every start."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(f"{PROG} {_version()}")
        parser.exit()


T = TypeVar("T")


def _run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, on uvloop when it is installed (``pip install 'pypull[uvloop]'``): a 1 GB
    pull took 8% less time with it in one series here (1.20 s against 1.30 s, medians of 6),
    though the benchmark's asyncio row is within noise of it. Optional;
    ``PYPULL_EVENT_LOOP=asyncio`` turns it off."""
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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pypull")
    except PackageNotFoundError:
        return "0+unknown"


#: An error line's bound, in characters after ``Error: ``: room for our own words and URLs
#: around a few hundred characters of what a registry, helper or config file said. A cut
#: message keeps its last ``_ERROR_TAIL`` characters, where a reason often stands.
_ERROR_LIMIT = 600
_ERROR_TAIL = 150


def _one_line(e: BaseException) -> str:
    """An error's message as one printable line of bounded length: every message may quote
    outside text (registry bodies and headers, helper stderr), so every one goes through
    ``shown``."""
    text = " ".join(str(e).split())
    return shown(text, _ERROR_LIMIT, tail=_ERROR_TAIL) if text else type(e).__name__


# -- rendering ------------------------------------------------------------------------------------


class PlainRenderer:
    """docker's words, one line per state change; no bars, no carriage returns."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def __call__(self, event: Event) -> None:
        from .. import events as ev

        if isinstance(event, ev.Resolved):
            if event.first_choice:  # URLs from the configuration or the command line
                endpoint, first = shown(event.endpoint), shown(event.first_choice)
                self.line(f"Using {endpoint} ({first} did not answer)")
            self.line(f"{_what(event.reference)}: Pulling from {event.reference.path}")
        elif isinstance(event, ev.Retrying):
            what, error = _what(event.reference), _one_line(event.error)
            self.line(f"{what}: {_retrying(event.delay)} ({error})")
        elif isinstance(event, ev.LayerRetrying):
            self.line(f"{event.layer_id}: {_retrying(event.delay)}")
        elif isinstance(event, ev.LayerEvent):
            word = _LAYER_WORDS.get(type(event).__name__)
            if word:
                self.line(f"{event.layer_id}: {word}")
        elif isinstance(event, ev.Finished):
            self.line(f"Digest: {event.digest}")
            status = "Image is up to date for" if event.up_to_date else "Downloaded newer image for"
            self.line(f"Status: {status} {event.reference.familiar}")

    def close(self) -> None:
        pass


def _what(ref: Reference) -> str:
    """What docker puts before ``: Pulling from``: the tag, or the digest."""
    return ref.tag if ref.digest is None and ref.tag else str(ref.digest)


def _retrying(delay: float) -> str:
    seconds = max(1, math.ceil(delay))
    return f"Retrying in {seconds} second{'s' * (seconds != 1)}"


_LAYER_WORDS = {
    "LayerExists": "Already exists",
    "LayerPulling": "Pulling fs layer",
    "LayerWaiting": "Waiting",
    "LayerVerifying": "Verifying Checksum",
    "LayerDownloaded": "Download complete",
    "LayerComplete": "Pull complete",
}
#: On a terminal these are shown by the progress bars instead.
_BAR_STATES = {"LayerPulling", "LayerWaiting", "LayerVerifying", "LayerDownloaded"}


class TtyRenderer(PlainRenderer):
    """A tqdm bar per downloading layer; the final lines as in plain mode.

    Bars live in slots that are reused and closed only at the end, bottom slot last: tqdm
    misplaces the cursor when a bar above another one closes first, which garbles later lines.
    """

    def __init__(self, out: TextIO) -> None:
        super().__init__(out)
        from tqdm import tqdm

        self._tqdm = tqdm
        self._slots: list[Any] = []
        self._active: dict[Any, Any] = {}  # digest -> bar

    def line(self, text: str) -> None:
        self._tqdm.write(text, file=self.out)

    def _bar_for(self, layer_id: str, total: int) -> Any:
        busy = {id(b) for b in self._active.values()}
        bar = next((b for b in self._slots if id(b) not in busy), None)
        if bar is None:
            bar = self._tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                leave=False,
                file=self.out,
                # One column short of the width: a bar that fills the last column leaves the
                # cursor in the terminal's pending-wrap state and the next line starts askew.
                ncols=max(40, shutil.get_terminal_size().columns - 1),
            )
            self._slots.append(bar)
        else:
            bar.bar_format = None
            bar.reset(total=total)
        bar.set_description_str(f"{layer_id}: Downloading", refresh=False)
        return bar

    def _release(self, digest: Any) -> None:
        bar = self._active.pop(digest, None)
        if bar is not None:
            bar.bar_format = "{desc}"  # an idle slot shows an empty line
            bar.set_description_str("", refresh=True)

    def __call__(self, event: Event) -> None:
        from .. import events as ev

        if isinstance(event, ev.LayerProgress):
            bar = self._active.get(event.digest)
            if bar is None:
                bar = self._active[event.digest] = self._bar_for(event.layer_id, event.total)
            bar.update(event.current - bar.n)
        elif isinstance(event, ev.LayerVerifying):
            bar = self._active.get(event.digest)
            if bar is not None:
                bar.set_description_str(f"{event.layer_id}: Verifying Checksum")
        elif isinstance(event, (ev.LayerDownloaded, ev.LayerFailed)):
            self._release(event.digest)
        elif type(event).__name__ not in _BAR_STATES:
            super().__call__(event)

    def close(self) -> None:
        for bar in reversed(self._slots):
            bar.close()
        self._slots.clear()
        self._active.clear()


class JsonRenderer(PlainRenderer):
    """``--format json``: one JSON object per event a line (``events.as_json``), nothing else
    on stdout. Progress is thinned to one line per layer every ``EVERY`` seconds (and
    the last); ``ensure_ascii`` escapes every character outside ASCII, so text from a registry
    reaches a terminal only as ``\\uXXXX``."""

    EVERY = 0.25  # seconds between two progress lines of one layer

    def __init__(self, out: TextIO) -> None:
        super().__init__(out)
        self._shown_at: dict[object, float] = {}  # layer digest -> when its progress was printed

    def emit(self, obj: dict[str, Any]) -> None:
        import json

        self.out.write(json.dumps(obj, ensure_ascii=True) + "\n")
        self.out.flush()

    def line(self, text: str) -> None:
        """Human words ("Using default tag") have no place among the JSON lines."""

    def __call__(self, event: Event) -> None:
        import time

        from .. import events as ev

        if isinstance(event, ev.LayerProgress):
            now = time.monotonic()
            last = self._shown_at.get(event.digest)
            if event.current < event.total and last is not None and now - last < self.EVERY:
                return
            self._shown_at[event.digest] = now
        obj = ev.as_json(event)
        if obj is not None:
            self.emit(obj)

    def error(self, reference: str, message: str) -> None:
        from ..events import SCHEMA_VERSION

        self.emit(
            {"event": "error", "v": SCHEMA_VERSION, "reference": reference, "message": message}
        )


# -- commands -------------------------------------------------------------------------------------


#: What one image of a pull came to, in the order the summary counts them.
_OUTCOMES = ("downloaded", "up to date", "failed")


async def _pull_all(args: argparse.Namespace, refs: list[tuple[str, Reference]]) -> int:
    """Each image in turn (with ``--all-tags``, each tag of each repository), through one
    Puller; a summary when there were several; exit 1 if any failed."""
    config = _config(args)
    args.platform = config.platform

    outcomes: list[str] = []
    async with _puller(
        config,
        args.creds,
        refs[0][1].domain,  # --creds: one registry, checked by _cmd_pull
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
        _pull_failed(args, ref.name, e)
        outcomes.append("failed")
        return []
    out = []
    for tag in tags:
        if valid_tag(tag):
            out.append(dataclasses.replace(ref, tag=tag, digest=None))
        else:  # anything a registry lists: shown escaped and cut, in JSON too
            name = f"{ref.name}:{shown(tag, 80)}"
            _pull_failed(args, name, PullError(f"{name}: not a valid tag name"))
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
        print(f"{_plural(len(outcomes), 'image')} pulled: {said}", flush=True)


def _pull_failed(args: argparse.Namespace, reference: str, e: PullError) -> None:
    """An image that failed: the error line on stderr, and with --format json its event."""
    _error(e, args.debug)
    if args.format == "json":
        from ..events import message

        JsonRenderer(sys.stdout).error(reference, message(e))


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
        _pull_failed(args, str(ref), e)
        return "failed"
    if renderer:
        renderer.close()
    if args.format != "json":
        print(str(result.reference), flush=True)
    return "up to date" if result.up_to_date else "downloaded"


def _error(e: BaseException, debug: bool) -> None:
    if debug:
        # Whole (a traceback is for debugging), but escaped: a hostile registry's message must
        # not drive the terminal of whoever debugs it, and an escaped ESC is clearer to read.
        for line in traceback.format_exception(type(e), e, e.__traceback__):
            for part in line.splitlines():
                print(shown(part, None), file=sys.stderr)
    print(f"Error: {_one_line(e)}", file=sys.stderr, flush=True)


def _config(args: argparse.Namespace) -> Config:
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


def _credential_lookup() -> Callable[[str], Credentials | None] | None:
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


def _any_configured_mirror() -> bool:
    from ..config import load

    try:
        return any(r.mirrors for r in load().registries.values())
    except PullError:
        return False  # the pull itself reports what is wrong with the configuration


def _check_pull_args(top: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Combinations argparse cannot express; a violation is a usage error (exit 2)."""
    if not args.images and not args.file:
        top.error("no image to pull: give IMAGE arguments or -f FILE")
    if args.mirror_only and not args.mirror and not _any_configured_mirror():
        top.error("--mirror-only needs at least one --mirror (or a mirror in the configuration)")
    if args.all_platforms and args.platform:
        top.error("--all-platforms pulls every platform: leave out --platform")
    if args.quiet and args.format == "json":
        top.error("--quiet and --format json cannot be combined")


def _cmd_pull(args: argparse.Namespace, top: argparse.ArgumentParser) -> int:
    """The IMAGE arguments, then FILE's (an error names its FILE:LINE), parsed before any is
    pulled."""
    listed: list[tuple[str | None, str]] = [(None, text) for text in args.images]
    if args.file:
        listed += _image_list(args.file)
    if not listed:
        top.error(f"{shown(args.file, 200)} names no image")
    refs: list[tuple[str, Reference]] = []
    for where, text in listed:
        try:
            ref = _parsed(where, text)
        except PullError as e:
            _error(e, args.debug)
            return 1
        if args.all_tags and names_image(text):
            at = f"{shown(where, 200)}: " if where else ""
            top.error(f"{at}{shown(text, 200)}: a tag can't be used with --all-tags/-a")
        refs.append((text, ref))
    if args.creds:
        registries = {ref.domain for _, ref in refs}
        if len(registries) > 1:
            top.error(
                "--creds applies to one registry, but the images name several: "
                + ", ".join(sorted(registries))
            )
    return _run(_pull_all(args, refs))


def _parsed(where: str | None, text: str) -> Reference:
    """``parse``, its error prefixed with ``where`` the reference was read (FILE:LINE)."""
    try:
        return parse(text)
    except PullError as e:
        if where is None:
            raise
        raise PullError(f"{where}: {e}") from None


def _copy_options(args: argparse.Namespace) -> dict[str, Any]:
    """The per-image options of copy, push and sync, for ``Copier.copy``."""
    from ..oci.manifest import parse_platform

    return {
        "dry_run": args.dry_run,
        "missing": args.missing,
        "platforms": tuple(parse_platform(p) for p in args.platform or ()),
    }


def _cmd_copy(args: argparse.Namespace) -> int:
    source = parse(args.source)
    target = parse(args.target)
    if args.all_tags and (names_image(args.source) or names_image(args.target)):
        print(
            "Error: --all-tags copies repositories: give SOURCE and TARGET without a tag",
            file=sys.stderr,
        )
        return 2
    if not names_image(args.target):  # the source's tag (or digest) goes with it
        target = _with_identifier(target, source)
    options = _copy_options(args)

    async def work(copier: Copier, report: Callable[[CopyResult], None]) -> list[CopyResult]:
        if args.all_tags:
            return await copier.copy_tags(
                source, target, each=report, fail_fast=args.fail_fast, **options
            )
        return await copier.copy_all([(source, target)], each=report, **options)

    return _copying(args, work, [target], summary=args.all_tags)


def _with_identifier(target: Reference, source: Reference) -> Reference:
    """The source's tag, else its digest: ``redis:7@sha256:...`` is read by digest and
    written as ``:7``."""
    import dataclasses

    return dataclasses.replace(target, tag=source.tag, digest=None if source.tag else source.digest)


def _cmd_push(args: argparse.Namespace) -> int:
    source = parse(args.image)
    target = parse(args.target)
    if not names_image(args.target):
        target = _with_identifier(target, source)
    options = _copy_options(args)

    async def work(copier: Copier, report: Callable[[CopyResult], None]) -> list[CopyResult]:
        from ..copying import StoreSource

        origin = StoreSource(copier.store)
        return await copier.copy_all([(source, target)], each=report, origin=origin, **options)

    return _copying(args, work, [target], summary=False)


def _cmd_sync(args: argparse.Namespace) -> int:
    """A sync file, or the short form: each IMAGE into PREFIX plus its repository path."""
    if args.to is None:
        if args.file or len(args.images) != 1:
            print(
                "Error: give one sync FILE, or --to PREFIX with images (IMAGE... or -f LIST)",
                file=sys.stderr,
            )
            return 2
        return _sync_file(args, args.images[0])
    texts: list[tuple[str | None, str]] = [(None, text) for text in args.images]
    if args.file:
        texts += _image_list(args.file)
    if not texts:
        print("Error: no images to sync: give IMAGE arguments or -f LIST", file=sys.stderr)
        return 2
    prefix = args.to.rstrip("/")
    pairs = []
    for where, text in texts:
        source = _parsed(where, text)
        pairs.append((source, parse(f"{prefix}/{source.path}{source.suffix}")))
    options = _copy_options(args)

    async def work(copier: Copier, report: Callable[[CopyResult], None]) -> list[CopyResult]:
        return await copier.copy_all(pairs, each=report, fail_fast=args.fail_fast, **options)

    return _copying(args, work, [target for _, target in pairs], summary=True)


def _sync_file(args: argparse.Namespace, path: str) -> int:
    """Every [[sync]] entry of the file: a repository's tags that its filters select, or one
    image; the entry's platforms, else --platform."""
    from ..syncfile import load_sync_file

    entries = load_sync_file(path)
    options = _copy_options(args)

    async def work(copier: Copier, report: Callable[[CopyResult], None]) -> list[CopyResult]:
        """Every entry's images in one run, ``-j`` at once (not entry after entry)."""
        from ..copying import CopyResult, Pair

        async def pairs_of(entry: SyncEntry) -> tuple[list[Pair], list[CopyResult]]:
            own = {
                "platforms": entry.platforms or options["platforms"],
                "by": f"the entry at {path}:{entry.line}",  # named if another writes its tag
            }
            if not entry.is_repository:
                return [(entry.source, entry.target, own)], []  # its target says what to write
            try:
                pairs, failed = await copier.tag_pairs(entry.source, entry.target, entry.selects)
            except PullError as e:
                return [], [
                    CopyResult(str(entry.source), str(entry.target), "failed", error=str(e))
                ]
            return [(source, target, own) for source, target, *_ in pairs], failed

        pairs: list[Pair] = []
        results: list[CopyResult] = []
        for found, failed in await asyncio.gather(*(pairs_of(e) for e in entries)):
            pairs += found
            for result in failed:
                report(result)
            results += failed
        if args.fail_fast and results:
            return results
        results += await copier.copy_all(pairs, each=report, fail_fast=args.fail_fast, **options)
        return results

    return _copying(args, work, [entry.target for entry in entries], summary=True)


def _image_list(path: str) -> list[tuple[str | None, str]]:
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


class _CopyBar:
    """On a terminal: one bar for the run (images done, bytes sent), lines above it."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._bar = tqdm(total=None, unit="image", file=sys.stderr, leave=False)
        self._sent = 0

    def line(self, text: str) -> None:
        self._tqdm.write(text, file=sys.stdout)
        if self._bar.total is not None and self._bar.n >= self._bar.total:
            self._bar.total = self._bar.n + 1  # a failure before any copy was planned
        self._bar.update(1)

    def planned(self, n: int) -> None:
        self._bar.total = (self._bar.total or 0) + n
        self._bar.refresh()

    def sent(self, n: int) -> None:
        self._sent += n
        self._bar.set_postfix_str(f"{_human_size(self._sent)} sent", refresh=False)

    def close(self) -> None:
        self._bar.close()


def _copying(
    args: argparse.Namespace,
    work: Callable[[Copier, Callable[[CopyResult], None]], Awaitable[list[CopyResult]]],
    targets: Sequence[Reference],
    *,
    summary: bool,
) -> int:
    """Run copies with one Puller and one Copier (mounts across images), printing a line (or a
    JSON object) per image as it ends, and a summary; exit 1 if any failed. The ``targets``'
    repositories are locked for the run (not for a dry run, which writes nothing): another
    pypull writing to one is waited for, or with --no-wait, ``TargetBusy``."""
    config = _config(args)
    if args.dry_run:
        return _copies(args, config, work, summary=summary)
    from ..targetlock import hold

    def waiting(repository: str) -> None:
        print(
            f"Waiting for another pypull to finish writing to {shown(repository)}",
            file=sys.stderr,
            flush=True,
        )

    with hold((t.name for t in targets), wait=not args.no_wait, on_wait=waiting):
        return _copies(args, config, work, summary=summary)


def _copies(
    args: argparse.Namespace,
    config: Config,
    work: Callable[[Copier, Callable[[CopyResult], None]], Awaitable[list[CopyResult]]],
    *,
    summary: bool,
) -> int:
    import json

    from ..copying import STATUSES, Copier

    bar = _CopyBar() if not args.json and sys.stderr.isatty() else None
    rate_limits: dict[str, int] = {}

    def report(result: CopyResult) -> None:
        if args.json:
            print(json.dumps(result.as_json()), flush=True)
        elif bar is not None:
            bar.line(shown(_copy_line(result), 1000))
        else:
            print(shown(_copy_line(result), 1000), flush=True)

    async def run() -> list[CopyResult]:
        async with _puller(config) as puller:
            copier = Copier(
                puller,
                jobs=args.jobs,
                rate_limit_reserve=config.rate_limit_reserve,
                on_bytes=bar.sent if bar is not None else None,
                on_planned=bar.planned if bar is not None else None,
            )
            try:
                return await work(copier, report)
            finally:
                rate_limits.update(copier.rate_limits)

    try:
        results = _run(run())
    finally:
        if bar is not None:
            bar.close()
    if summary:
        counts: dict[str, Any] = {s: sum(r.status == s for r in results) for s in STATUSES}
        if args.json:
            if rate_limits:
                counts["ratelimit_remaining"] = rate_limits
            print(json.dumps({"summary": counts}), flush=True)
        else:
            said = ", ".join(f"{n} {s.replace('-', ' ')}" for s, n in counts.items() if n)
            quota = "".join(
                f"; {shown(host, 100)} ratelimit-remaining {n}" for host, n in rate_limits.items()
            )
            print(f"{_plural(len(results), 'image')}: {said or 'nothing to do'}{quota}", flush=True)
    statuses = {r.status for r in results}
    if "failed" in statuses:
        return 1
    return EXIT_DEFERRED if "deferred" in statuses else 0


def _copy_line(result: CopyResult) -> str:
    """``SOURCE -> TARGET: copied (5 uploaded, 3 mounted, 2 existing, 41.2 MB)``."""
    head = f"{result.source} -> {result.target}"
    if result.status in ("failed", "deferred") and result.error:
        return f"{head}: {result.status}: {result.error}"
    if result.status != "copied":
        return f"{head}: {result.status.replace('-', ' ')}"
    size = _human_size(result.bytes_uploaded)
    return (
        f"{head}: copied ({result.uploaded} uploaded, {result.mounted} mounted, "
        f"{result.existing} existing, {size})"
    )


def _human_size(n: float) -> str:
    """docker's HumanSize: decimal units, 3 significant digits (``117MB``, ``5.59kB``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _cmd_images(args: argparse.Namespace) -> int:
    from ..inspecting import images

    want: Reference | None = None
    want_tag = False
    if args.repository:
        want = parse(args.repository)
        want_tag = names_image(args.repository)
    records = [
        r
        for r in images(_config(args).store)
        if want is None
        or (
            r.reference.name == want.name
            and (not want_tag or (r.reference.tag, r.reference.digest) == (want.tag, want.digest))
        )
    ]
    if args.format == "json":
        for record in records:
            print(_json_text(record.to_json()))
        return 0

    def image_id(record: ImageRecord) -> str:
        if record.id is None:
            return "<missing>"
        return str(record.id) if args.no_trunc else record.id.short

    if args.quiet:
        for record in records:
            print(image_id(record))
        return 0
    rows = [
        (
            r.reference.familiar_name,
            r.reference.tag or "<none>",
            str(r.digest),
            image_id(r),
            "<missing>" if r.size is None else _human_size(r.size),
        )
        for r in records
    ]
    header = ["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "SIZE (COMPRESSED)"]
    cols = [0, 1, 2, 3, 4] if args.digests else [0, 1, 3, 4]
    table = [[header[c] for c in cols]] + [[r[c] for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _json_text(value: object, indent: int | None = None) -> str:
    """JSON of outside text, safe on a terminal: json escapes every control character and
    everything outside ASCII (bidi overrides, C1 controls) but DEL, escaped here."""
    import json

    return json.dumps(value, indent=indent).replace("\x7f", "\\u007f")


def _puller(
    config: Config, creds: tuple[str, str] | None = None, domain: str = "", **more: Any
) -> Puller:
    """A Puller with the configuration's mirrors, proxies, timeouts and docker's credentials,
    and ``creds`` (--creds) for ``domain``'s registry alone: one for every command."""
    from ..pulling import Puller
    from ..registry.auth import Credentials

    return Puller(
        config.store,
        registries=config.registries,
        mirror_only=config.mirror_only,
        credentials={domain: Credentials(*creds)} if creds else None,
        credential_lookup=_credential_lookup(),
        timeout=config.timeout,
        max_download_attempts=config.max_download_attempts,
        proxies=config.proxies,
        **more,
    )


def _cmd_inspect(args: argparse.Namespace) -> int:
    from ..inspecting import inspect

    ref = parse(args.image)
    config = _config(args)

    # --platform only, not the configuration's: a platform asked for must be there (the
    # configured one is what to pull, and would make every single-platform image an error).
    async def describe() -> ImageInfo:
        if not args.remote:
            return await inspect(ref, store=config.store, platform=args.platform)
        async with _puller(config, args.creds, ref.domain) as puller:
            return await inspect(ref, remote=True, platform=args.platform, puller=puller)

    info = _run(describe())
    if args.config or args.raw:
        # The bytes themselves, as skopeo --raw prints them: data for a pipe, not text.
        sys.stdout.buffer.write(info.raw_config if args.config else info.raw)
        sys.stdout.buffer.flush()
        return 0
    print(_json_text(info.to_json(), indent=4))
    return 0


def _cmd_tags(args: argparse.Namespace) -> int:
    from ..inspecting import tags

    if names_image(args.repository):
        print(
            f"Error: {shown(args.repository)}: give a repository, without a tag or digest",
            file=sys.stderr,
        )
        return 2
    ref = parse(args.repository)

    async def listing() -> list[str]:
        async with _puller(_config(args), args.creds, ref.domain) as puller:
            return await tags(ref, puller=puller)

    found = _run(listing())
    if args.json:
        print(_json_text(found))
    else:
        for tag in found:  # a registry's list may hold anything: one escaped line each
            print(shown(tag, None))
    return 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


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
    from ..pulling import Puller
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
    config = _config(args)
    # The registry's own server, as a pull would reach it (a login never goes to a mirror).
    server = Puller(config.store, registries=config.registries).server(parse_ref(f"{name}/x"))

    async def check() -> None:
        async with RegistryClient(
            credentials={name: creds},
            timeout=config.timeout,
            proxies=lambda _: config.proxies(name).for_url,
        ) as client:
            await client.check_login(server)

    _run(check())
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


def _cmd_config(args: argparse.Namespace) -> int:
    from ..config import render

    # Values from the file and the environment, escaped but whole: this is where to read them.
    for line in render(_config(args)).splitlines():
        print(shown(line, None))
    return 0


def _duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``24h``, ``7d``: seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if not (0 <= value < math.inf):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 24h or 7d")
    return value * units[unit]


def _cmd_rmi(args: argparse.Namespace) -> int:
    from ..store.layout import Store

    store = Store(_config(args).store)
    status = 0
    for text in args.images:
        try:
            ref = parse(text)
            removed = store.untag(str(ref))
        except PullError as e:
            _error(e, args.debug)
            status = 1
            continue
        if removed:
            print(f"Untagged: {ref.familiar}")
        else:
            print(f"Error: No such image: {shown(text)}", file=sys.stderr)
            status = 1
    return status


def _cmd_export(args: argparse.Namespace, output: str | None) -> int:
    from ..unpacking import export

    store = _config(args).store
    if output is None or output == "-":
        if sys.stdout.isatty():
            print("Error: refusing to write a tar to a terminal: use -o FILE", file=sys.stderr)
            return 2
        export(args.image, sys.stdout.buffer, store=store, platform=args.platform)
        sys.stdout.buffer.flush()
        return 0
    target = os.path.abspath(output)
    tmp = os.path.join(
        os.path.dirname(target), f".{os.path.basename(target)}.pypull-{os.urandom(6).hex()}"
    )
    try:
        f = open(tmp, "xb")  # noqa: SIM115 (closed below, before the rename)
    except OSError as e:
        print(f"Error: cannot write {shown(output)}: {e.strerror}", file=sys.stderr)
        return 1
    try:
        with f:
            done = export(args.image, f, store=store, platform=args.platform)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    print(
        f"Exported {_plural(done.layers, 'layer')} to {shown(output)}: "
        f"{_plural(done.files, 'file')}, {_human_size(done.bytes)}"
    )
    return 0


def _cmd_unpack(args: argparse.Namespace) -> int:
    from ..unpacking import unpack

    if args.dest == "-":
        return _cmd_export(args, None)

    done = unpack(args.image, args.dest, store=_config(args).store, platform=args.platform)
    skipped = [
        _plural(n, word)
        for n, word in (
            (done.skipped_devices, "device node"),
            (done.skipped_owners, "ownership"),
            (done.skipped_xattrs, "xattr"),
        )
        if n
    ]
    note = f"; skipped as not root: {', '.join(skipped)}" if skipped else ""
    print(
        f"Unpacked {_plural(done.layers, 'layer')} into {shown(str(done.path))}: "
        f"{_plural(done.files, 'file')}, {_human_size(done.bytes)}{note}"
    )
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    import json

    from ..store.layout import Store
    from ..store.prune import prune

    age = args.partials_older_than
    result = prune(
        Store(_config(args).store),
        dry_run=args.dry_run,
        **({} if age is None else {"partials_older_than": age}),
    )
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    verb = "Would delete" if result.dry_run else "Deleted"
    if not args.quiet:
        for item in result.removed:
            if item.digest is None:
                what = f"temporary file {shown(item.path)}"
            else:
                what = ("partial download " if item.kind == "partial" else "") + str(item.digest)
            print(f"{verb}: {what} ({_human_size(item.size)})")
    total = "Total reclaimable space" if result.dry_run else "Total reclaimed space"
    print(f"{total}: {_human_size(result.reclaimed)}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from ..store.layout import Store
    from ..store.verify import verify_store

    report = verify_store(Store(_config(args).store))
    for problem in report.problems:  # may quote file names and JSON from the store
        print(shown(str(problem), _ERROR_LIMIT, tail=_ERROR_TAIL))
    summary = (
        f"{_plural(report.blobs, 'blob')}, {_plural(report.images, 'image')}, "
        f"{_plural(report.partials, 'partial download')}: "
        + ("no problems" if report.ok else _plural(len(report.problems), "problem"))
    )
    print(summary)
    return 0 if report.ok else 1


def _cmd_save(args: argparse.Namespace) -> int:
    from ..archive import save
    from ..store.layout import Store

    store = Store(_config(args).store)
    if args.output not in (None, "-"):
        save(args.images, args.output, store=store)
        return 0
    if sys.stdout.isatty():
        raise PullError("refusing to write an archive to a terminal: use -o FILE, or redirect")
    sys.stdout.flush()
    save(args.images, sys.stdout.buffer, store=store)
    sys.stdout.buffer.flush()
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    from ..archive import load
    from ..store.layout import Store

    if args.file is not None and args.input is not None:
        raise PullError("give the archive once: as FILE or as -i FILE")
    path = args.input if args.input is not None else args.file
    source: Any = sys.stdin.buffer if path in (None, "-") else path
    if source is sys.stdin.buffer and sys.stdin.isatty():
        raise PullError("no archive given: use -i FILE, or redirect one to stdin")
    result = load(source, store=Store(_config(args).store))
    if not args.quiet:
        for image in result.images:
            print(f"Loaded image: {image.reference.familiar}")
        for digest in result.untagged:
            print(f"Loaded image ID: {digest}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    if not args_list:
        top.print_help(sys.stderr)
        return 2
    if args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help", "--version"):
        args_list.insert(0, "pull")  # `pypull redis` means `pypull pull redis`, as the docs say
    args = top.parse_args(args_list)
    if args.command is None:
        top.print_help()
        return 0
    if args.command == "pull":
        _check_pull_args(top, args)
    try:
        if args.command == "copy":
            return _cmd_copy(args)
        if args.command == "sync":
            return _cmd_sync(args)
        if args.command == "push":
            return _cmd_push(args)
        if args.command == "images":
            return _cmd_images(args)
        if args.command == "rmi":
            return _cmd_rmi(args)
        if args.command == "prune":
            return _cmd_prune(args)
        if args.command == "inspect":
            return _cmd_inspect(args)
        if args.command == "tags":
            return _cmd_tags(args)
        if args.command == "unpack":
            return _cmd_unpack(args)
        if args.command == "export":
            return _cmd_export(args, args.output)
        if args.command == "verify":
            return _cmd_verify(args)
        if args.command == "save":
            return _cmd_save(args)
        if args.command == "load":
            return _cmd_load(args)
        if args.command == "config":
            return _cmd_config(args)
        if args.command == "login":
            return _cmd_login(args)
        if args.command == "logout":
            return _cmd_logout(args)
        return _cmd_pull(args, top)
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        return 130
    except TargetBusy as e:  # --no-wait: "try again later", as sysexits' EX_TEMPFAIL says
        _error(e, args.debug)
        return EX_TEMPFAIL
    except BrokenPipeError:
        # The reader went away (`pypull ... | head -1`): nothing to say, and nowhere to say it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except PullError as e:
        _error(e, args.debug)
        return 1
    except Exception as e:
        # A bug of ours: still one line (and a hint) unless --debug asks for the traceback.
        _error(e, args.debug)
        if not args.debug:
            print(
                "(this is a bug in pypull; run again with --debug for the traceback)",
                file=sys.stderr,
            )
        return 1


def run() -> None:
    sys.exit(main())
