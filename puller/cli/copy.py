"""``pypull copy``, ``push`` and ``sync``: registry to registry (or store to registry), one line
or JSON object per image, a summary, the target repositories locked for the run."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..errors import PullError
from ..oci.reference import Reference, names_image, parse
from ..text import shown
from .common import (
    Access,
    UsageError,
    copy_access,
    image_list,
    load_config,
    make_session,
    parsed,
    run_async,
)
from .options import (
    add_command,
    add_common,
    add_copy_access,
    add_format,
    add_settings,
    checked_platform,
    positive_int,
)
from .render import CopyBar, emit, human_size, login_hint, plural

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable, Sequence

    from ..config import Config
    from ..copying import Copier, CopyResult
    from ..ratewait import QuotaWait
    from .options import Subparsers

    Work = Callable[[Copier, Callable[[CopyResult], None]], Awaitable[list[CopyResult]]]

#: A copy or sync run that failed nothing but deferred some images: "come back later", which
#: cron can tell from done (0) and from failed (1).
EXIT_DEFERRED = 3
#: The exit statuses of copy and sync, as _copying decides them.
COPY_EXIT = """\
exit status: 0 when no image failed or was deferred, 1 when any failed (the others are still
copied) or a deletion step was skipped, 3 when none failed but some were deferred (come back
later: cron can tell a run that is done from one that is not), 75 when --no-wait met a target
repository another pypull is writing to, 2 on a usage error.
"""

SYNC_EPILOG = (
    """\
the sync file (TOML):
  [[sync]]
  source = "docker.io/library/redis"            # a repository: its tags, filtered below
  target = "registry.internal:5000/mirror/redis"
  tags = ["7\\\\..*", "latest"]                    # regexes (RE2), matched against the whole tag
  exclude = [".*-rc.*"]
  platforms = ["linux/amd64", "linux/arm64"]    # default: all, digests unchanged
  referrers = true                              # signatures, SBOMs too (or a list of types)
  [[sync]]
  source = "docker.io/library/postgres"
  target = "registry.internal:5000/mirror/postgres"
  semver = ">=15, <17"                          # versions, as skopeo sync's constraints say
  newest = 3                                    # the 3 highest of what the filters keep
  [[sync]]
  source = "registry.example.com/team/*"        # every repository under team/ (the catalog)
  target = "registry.internal:5000/mirror/team" # team/a/b -> mirror/team/a/b
  repositories = "app.*"                        # optional: the path below team/, matched whole
  [[sync]]
  source = "ghcr.io/org/app:1.4.2"              # one image; the target keeps its tag
  target = "registry.internal:5000/mirror/app"

statuses: copied, up-to-date (nothing fetched or written), would-copy (--dry-run), deferred (the
source's pull quota is below rate_limit_reserve: not fetched; images found up to date by HEADs,
which cost no quota, are up-to-date however little is left; with --ratelimit wait, or an entry's
ratelimit = "wait", only when its reset is over --max-wait away), failed (with an Error: line on
stderr, and in JSON a stable "code": not-found, unauthorized, denied, no-match, ...); and of
the deletion step: deleted, would-delete (--dry-run, --check), kept-shared, delete-skipped

Deleting what left the source (opt-in): with delete = true in a repository entry, after the
copies the target's tags that the entry's tags/exclude select and that the source no longer
lists are deleted. Never a tag outside the entry's target repository or its selection, nor one
this run writes; never from an incomplete list: the source's tags are listed at its own
server (not a mirror), and a listing that fails (an error, a rate limit, a page) skips the
whole step (delete-skipped, exit status 1). A registry that deletes by digest only
(distribution 2.8) gets a DELETE by digest when no other tag points at that digest, nor at an
index naming it; otherwise the tag is left (kept-shared). With --to, --delete deletes an
IMAGE's tag from the target when its source repository no longer lists it, instead of copying.

--check compares only (HEADs and tag lists; no manifest GET but a platform filter's index
and, with referrers, each image's, from the source when it would be copied; nothing written,
no locks): exit status 0 when every image is up-to-date and nothing would be
deleted, 1 when anything would be copied or deleted, or could not be compared (failed,
deferred, delete-skipped), 2 on a usage error. A monitoring probe, as regsync's check.

An entry whose filters select none of the source's tags fails (code no-match), so that a
mistyped regex does not mirror nothing in silence; --allow-empty lets it pass. A regex RE2
cannot run in linear time (backreferences, lookaround) is refused when the file is read.

--shard I/N runs the entries whose target repository hashes to part I of N (the same on every
machine): N cron jobs, or an Indexed Job's pods with --shard $((JOB_COMPLETION_INDEX+1))/N,
split one file with no entry run twice and none left out.

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
  pypull sync /etc/pypull/sync.toml --format json
  pypull sync /etc/pypull/sync.toml --shard 2/4
  pypull sync --check /etc/pypull/sync.toml
  pypull sync --to registry.internal:5000/mirror redis:7 postgres:16
  pypull sync --to registry.internal:5000/mirror -f images.txt
"""
)


def _add_copy_options(p: argparse.ArgumentParser, json_help: str) -> None:
    """What `copy`, `push` and `sync` share."""
    p.add_argument(
        "--dry-run", action="store_true", help="compare and say what would be done; write nothing"
    )
    add_format(p, json_help)
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print nothing but errors and deferred images (on stderr), as skopeo copy -q: no "
        "line per image, no summary, no progress, no notice of waiting; the exit status says "
        "how it went (for cron)",
    )
    p.add_argument(
        "--missing",
        action="store_true",
        help="list the target's tags once and leave those it has alone without asking the "
        "source (for tags that never change)",
    )
    p.add_argument(
        "--platform",
        action="append",
        type=checked_platform,
        metavar="OS/ARCH[/VARIANT]",
        help="copy only this platform of a multi-platform image: the target's tag is then its "
        "manifest; repeated, an index of just those, recording the source's digest (default: "
        "every platform, digests unchanged)",
    )
    p.add_argument(
        "-j",
        "--jobs",
        type=positive_int,
        default=None,
        metavar="N",
        help="blobs uploaded at once, and images copied at once (default: this machine's CPUs, "
        "2 to 4, for blobs; 8 images, most of them answered by two HEADs)",
    )
    p.add_argument("--fail-fast", action="store_true", help="start no image after one has failed")
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="when another pypull is writing to a target repository, exit at once with status "
        "75 instead of waiting for it to finish",
    )
    add_settings(p, pulls=False)
    add_common(p, "blobs are read from when it has them (and push reads images from)")


def add_copy(sub: Subparsers) -> None:
    copy = add_command(
        sub,
        "copy",
        help="copy an image from one registry to another, byte for byte",
        description="Copy an image from one registry to another: every platform of a "
        "multi-platform image, the index and each child keeping their digests. Blobs stream "
        "from the source to the target, verified on the way; blobs the target has are skipped "
        "and blobs in another of its repositories are mounted. When both sides already hold "
        "the same digest (asked by HEAD: a registry that counts pulls does not count it), "
        "nothing is fetched or written. The source goes through the configured mirrors and "
        "credentials; the target is reached directly, with its credentials from docker's "
        "config.json (or --dest-creds).",
        epilog="examples:\n"
        "  pypull copy redis:7 registry.internal:5000/mirror/redis\n"
        "  pypull copy --json --dry-run ghcr.io/org/app:1.4.2 registry.internal:5000/app:1.4.2\n"
        "\nstatuses: copied, up-to-date, would-copy (--dry-run), deferred (the source's pull quota "
        "is\nbelow rate_limit_reserve: see `pypull sync --help`), failed\n\n" + COPY_EXIT,
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
        'one JSON object a line: {"event": "image", "v": 1, "source", "target", "digest", '
        '"status", "blobs": {"uploaded", "mounted", "existing"}, "bytes_uploaded", "error", '
        '"code"} per image; with --all-tags, then {"event": "summary", "v": 1, "images", '
        '"copied", "up-to-date", "would-copy", "deferred", "failed"}',
    )
    _add_referrers(copy)
    _add_quota_options(copy)
    add_copy_access(copy)
    copy.set_defaults(handler=_cmd_copy)


def add_push(sub: Subparsers) -> None:
    push = add_command(
        sub,
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
    )
    push.add_argument("image", metavar="IMAGE", help="an image in the store, as it was pulled")
    push.add_argument("target", metavar="TARGET", help="where to push it; without a tag, IMAGE's")
    _add_copy_options(push, "one JSON object, as `pypull copy --format json`")
    add_copy_access(push, source=False)
    push.set_defaults(handler=_cmd_push)


def add_sync(sub: Subparsers) -> None:
    sync = add_command(
        sub,
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
    sync.add_argument(
        "--allow-empty",
        action="store_true",
        help="an entry whose filters select no tag is not a failure",
    )
    sync.add_argument(
        "--shard",
        type=shard,
        metavar="I/N",
        help="with a sync FILE: run only the entries whose target repository falls in part I "
        "of N (a hash of its name: the same on every run and machine), so that N cron jobs or "
        "the pods of a Kubernetes Indexed Job split one file, none left out, none run twice",
    )
    sync.add_argument(
        "--check",
        action="store_true",
        help="compare only (HEADs, tag lists), write nothing: exit 0 when everything is in "
        "sync, 1 when anything would be copied or deleted (below)",
    )
    sync.add_argument(
        "--delete",
        action="store_true",
        help="with --to: delete from the target an IMAGE's tag that its source repository no "
        "longer lists (in a sync file: delete = true per entry; below)",
    )
    _add_copy_options(
        sync,
        'one JSON object per image, as `pypull copy --format json`, then {"event": "summary", ...}',
    )
    _add_referrers(sync)
    _add_quota_options(sync)
    add_copy_access(sync)
    sync.set_defaults(handler=_cmd_sync)


def _add_referrers(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--referrers",
        action="store_true",
        help="copy each image's referrers after it (signatures, SBOMs: the OCI Referrers API, "
        "else the sha256-<hex> index tag; cosign's .sig/.att/.sbom tags), and theirs; a line "
        "each, naming the digest it refers to",
    )


def shard(text: str) -> tuple[int, int]:
    """``I/N`` of ``--shard``: part I (from 1) of N."""
    import argparse

    index, slash, count = text.partition("/")
    if not (slash and all(p.strip().isascii() and p.strip().isdigit() for p in (index, count))):
        raise argparse.ArgumentTypeError(f"{shown(text, 40)!r} is not I/N, such as 1/3")
    i, n = int(index), int(count)
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"{i}/{n}: I runs from 1 to N")
    return i, n


def _add_quota_options(p: argparse.ArgumentParser) -> None:
    """What copy and sync do when a source's pull quota falls below rate_limit_reserve
    (``ratewait``'s ``RATELIMIT_MODES`` and ``DEFAULT_MAX_WAIT``: not imported for a parser)."""
    p.add_argument(
        "--ratelimit",
        choices=("defer", "wait"),
        default=None,
        help="below rate_limit_reserve: defer the image (default), or wait for the source's "
        "quota window to reset (RateLimit-Reset, Retry-After or its ;w= window), up to "
        '--max-wait, then defer (a sync file entry may say ratelimit = "wait" too)',
    )
    p.add_argument(
        "--max-wait",
        type=_seconds,
        default=300.0,
        metavar="SECONDS",
        help="the longest --ratelimit wait waits (default: 300)",
    )


def _seconds(text: str) -> float:
    import argparse
    import math

    try:
        n = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (n >= 0 and math.isfinite(n)):
        raise argparse.ArgumentTypeError(f"{text} is not 0 or more seconds")
    return n


def _copy_options(args: argparse.Namespace) -> dict[str, Any]:
    """The per-image options of copy, push and sync, for ``Copier.copy``."""
    from ..oci.manifest import parse_platform

    return {
        "dry_run": args.dry_run,
        "missing": args.missing,
        "platforms": tuple(parse_platform(p) for p in args.platform or ()),
        "referrers": getattr(args, "referrers", False),
        "ratelimit": getattr(args, "ratelimit", None),
    }


def _cmd_copy(args: argparse.Namespace) -> int:
    source = parse(args.source)
    target = parse(args.target)
    if args.all_tags and (names_image(args.source) or names_image(args.target)):
        raise UsageError("--all-tags copies repositories: give SOURCE and TARGET without a tag")
    if not names_image(args.target):  # the source's tag (or digest) goes with it
        target = _with_identifier(target, source)
    options = _copy_options(args)

    async def work(copier: Copier, report: Callable[[CopyResult], None]) -> list[CopyResult]:
        if args.all_tags:
            from ..referring import without_referrer_tags

            every: Callable[[str], bool] = lambda _: True  # noqa: E731
            select = without_referrer_tags(every) if args.referrers else every
            return await copier.copy_tags(
                source, target, each=report, select=select, fail_fast=args.fail_fast, **options
            )
        return await copier.copy_all([(source, target)], each=report, **options)

    return _copying(args, work, [target], summary=args.all_tags, sources=[source])


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
        from ..sources import StoreSource

        origin = StoreSource(copier.store)
        return await copier.copy_all([(source, target)], each=report, origin=origin, **options)

    return _copying(args, work, [target], summary=False, sources=[])


def _cmd_sync(args: argparse.Namespace) -> int:
    """A sync file, or the short form: each IMAGE into PREFIX plus its repository path."""
    if args.check:
        args.dry_run = True  # compare only: HEADs and tag lists, no locks
    if args.to is None:
        if args.file or len(args.images) != 1:
            raise UsageError("give one sync FILE, or --to PREFIX with images (IMAGE... or -f LIST)")
        if args.delete:
            raise UsageError(
                "--delete goes with --to; in a sync file, give delete = true to each entry "
                "whose target tags may be deleted"
            )
        return _sync_file(args, args.images[0])
    if args.shard is not None:
        raise UsageError("--shard splits a sync FILE's entries: leave it out with --to")
    texts: list[tuple[str | None, str]] = [(None, text) for text in args.images]
    if args.file:
        texts += image_list(args.file)
    if not texts:
        raise UsageError("no images to sync: give IMAGE arguments or -f LIST")
    prefix = args.to.rstrip("/")
    pairs = []
    for where, text in texts:
        source = parsed(where, text)
        pairs.append((source, parse(f"{prefix}/{source.path}{source.suffix}")))
    options = _copy_options(args)

    async def work(copier: Copier, report: Callable[[CopyResult], None]) -> list[CopyResult]:
        if args.delete:
            from ..sync.run import sync_listed

            return await sync_listed(copier, pairs, report, fail_fast=args.fail_fast, **options)
        return await copier.copy_all(pairs, each=report, fail_fast=args.fail_fast, **options)

    targets = [target for _, target in pairs]
    return _copying(args, work, targets, summary=True, sources=[source for source, _ in pairs])


def _sync_file(args: argparse.Namespace, path: str) -> int:
    """Every [[sync]] entry of the file: a repository's tags that its filters select, or one
    image; the entry's platforms, else --platform."""
    from ..sync.file import in_shard, load_sync_file

    entries = load_sync_file(path)
    if args.shard is not None:
        entries = in_shard(entries, *args.shard)
    options = _copy_options(args)

    async def work(copier: Copier, report: Callable[[CopyResult], None]) -> list[CopyResult]:
        from ..sync.run import sync_entries

        return await sync_entries(
            copier,
            entries,
            path,
            report=report,
            allow_empty=args.allow_empty,
            fail_fast=args.fail_fast,
            **options,
        )

    targets = [entry.target for entry in entries]
    return _copying(args, work, targets, summary=True, sources=[e.source for e in entries])


def _copying(
    args: argparse.Namespace,
    work: Work,
    targets: Sequence[Reference],
    *,
    summary: bool,
    sources: Sequence[Reference],
) -> int:
    """Run copies with one Puller and one Copier (mounts across images), printing a line (or a
    JSON object) per image as it ends, and a summary; exit 1 if any failed. The ``targets``'
    repositories are locked for the run (not for a dry run, which writes nothing): another
    pypull writing to one is waited for, or with --no-wait, ``TargetBusy``. The ``sources``'
    and ``targets``' registries take --src-creds and --dest-creds (one each, or a UsageError)."""
    if args.quiet and args.format == "json":
        raise UsageError("--quiet and --format json cannot be combined")
    if args.quiet and args.dry_run and not getattr(args, "check", False):  # --check: its status
        raise UsageError("--quiet and --dry-run cannot be combined (a dry run is for its output)")
    access = copy_access(args, sources, targets)
    config = load_config(args)
    if args.dry_run:
        return _copies(args, config, work, summary=summary, access=access)
    from ..targetlock import hold

    def waiting(repository: str) -> None:
        if args.quiet:
            return
        print(
            f"Waiting for another pypull to finish writing to {shown(repository)}",
            file=sys.stderr,
            flush=True,
        )

    with hold((t.name for t in targets), wait=not args.no_wait, on_wait=waiting):
        return _copies(args, config, work, summary=summary, access=access)


def _copies(
    args: argparse.Namespace, config: Config, work: Work, *, summary: bool, access: Access
) -> int:
    from ..copying import STATUSES, Copier

    as_json = args.format == "json"
    quiet = args.quiet
    bar = CopyBar() if not as_json and not quiet and sys.stderr.isatty() else None
    rate_limits: dict[str, int] = {}

    def report(result: CopyResult) -> None:
        if as_json:
            emit(result.as_json())
        elif quiet:
            if result.status == "deferred":  # no failure, but "come back later" (exit 3)
                print(shown(_copy_line(result), 1000), file=sys.stderr, flush=True)
        elif bar is not None:
            bar.line(shown(_copy_line(result), 1000))
        else:
            print(shown(_copy_line(result), 1000), flush=True)
        if result.status in ("failed", "delete-skipped"):
            print(shown(_error_line(result), 1000), file=sys.stderr, flush=True)

    def waiting(wait: QuotaWait) -> None:
        if as_json:
            emit(wait.to_dict())
        elif quiet:
            pass
        elif bar is not None:
            bar.note(shown(wait.line(), 1000))
        else:
            print(shown(wait.line(), 1000), file=sys.stderr, flush=True)

    async def run() -> list[CopyResult]:
        from ..session import Session

        async with make_session(Session, config, access=access) as puller:
            copier = Copier(
                puller,
                jobs=args.jobs,
                rate_limit_reserve=config.rate_limit_reserve,
                on_bytes=bar.sent if bar is not None else None,
                on_planned=bar.planned if bar is not None else None,
                max_wait=getattr(args, "max_wait", 0.0),
                on_wait=waiting,
            )
            try:
                return await work(copier, report)
            finally:
                rate_limits.update(copier.rate_limits)

    try:
        results = run_async(run())
    finally:
        if bar is not None:
            bar.close()
    if summary:
        from ..sync.delete import DELETE_STATUSES

        counts: dict[str, Any] = {s: sum(r.status == s for r in results) for s in STATUSES}
        counts = {s: n for s, n in counts.items() if n or s not in DELETE_STATUSES}
        if as_json:
            from ..events import SCHEMA_VERSION

            extra = {"ratelimit_remaining": rate_limits} if rate_limits else {}
            emit(
                {"event": "summary", "v": SCHEMA_VERSION, "images": len(results), **counts, **extra}
            )
        elif not quiet:
            said = ", ".join(f"{n} {s.replace('-', ' ')}" for s, n in counts.items() if n)
            quota = "".join(
                f"; {shown(host, 100)} ratelimit-remaining {n}" for host, n in rate_limits.items()
            )
            print(f"{plural(len(results), 'image')}: {said or 'nothing to do'}{quota}", flush=True)
    statuses = {r.status for r in results}
    if getattr(args, "check", False):
        return 0 if statuses <= {"up-to-date"} else 1  # in sync, or not (or cannot tell)
    if statuses & {"failed", "delete-skipped"}:
        return 1
    return EXIT_DEFERRED if "deferred" in statuses else 0


def _error_line(result: CopyResult) -> str:
    """``Error: SOURCE -> TARGET: what went wrong``, and how to log in when a registry wants
    credentials (the target's: --dest-creds; the source's: --src-creds)."""
    registry = result.registry
    flag = "--src-creds"
    for side, option in ((result.target, "--dest-creds"), (result.source, "--src-creds")):
        try:
            domain = parse(side).domain
        except PullError:
            continue
        if registry is None or registry == domain:
            registry, flag = domain, option
            break
    hint = login_hint(result.code, registry, flag, result.error or "")
    return f"Error: {result.source} -> {result.target}: {result.error or result.status}{hint}"


def _copy_line(result: CopyResult) -> str:
    """``SOURCE -> TARGET: copied (5 uploaded, 3 mounted, 2 existing, 41.2 MB)``; a referrer's
    with ``(referrer of DIGEST)`` after TARGET."""
    head = f"{result.source} -> {result.target}"
    if result.referrer_of is not None:
        head += f" (referrer of {result.referrer_of})"
    if result.status in ("failed", "deferred", "kept-shared", "delete-skipped") and result.error:
        return f"{head}: {result.status}: {result.error}"
    if result.status != "copied":
        return f"{head}: {result.status.replace('-', ' ')}"
    size = human_size(result.bytes_uploaded)
    return (
        f"{head}: copied ({result.uploaded} uploaded, {result.mounted} mounted, "
        f"{result.existing} existing, {size})"
    )
