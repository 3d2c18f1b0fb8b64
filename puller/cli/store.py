"""The commands of the store itself: ``images``, ``rmi``, ``prune``, ``verify``, and ``save`` and
``load`` (its images to and from a tar archive)."""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING, Any

from ..errors import PullError
from ..oci.reference import Reference, names_image, parse
from ..text import shown
from .common import load_config
from .options import add_command, add_common, add_format
from .render import (
    ERROR_LIMIT,
    ERROR_TAIL,
    emit,
    error_event,
    human_size,
    plural,
    print_error,
)

if TYPE_CHECKING:
    from ..inspecting import ImageRecord
    from ..store.verify import Report
    from .options import Subparsers

IMAGES_EPILOG = """\
examples:
  pypull images redis
  pypull images -q                       # image IDs, one per image
  pypull images --format json | jq -r 'select(.Size > 100000000) | .Name'

--format json (or --json) prints one object per line: {"event": "image", "v": 1, "Name":
"docker.io/library/redis:7", "Repository": "redis", "Tag": "7", "Digest": "sha256:...", "ID":
"sha256:...", "Size": 41234567, "Platforms": []}; ID and Size are null when the store lacks the
image's manifest, Platforms lists the platforms of an image pulled with every platform.
"""


def add_images(sub: Subparsers) -> None:
    images = add_command(
        sub,
        "images",
        help="list the images in the store",
        description="List the images in the store, like `docker images`. IMAGE ID is the "
        "config's digest. SIZE (COMPRESSED) counts the config and layers as stored and sent, "
        "compressed: docker shows the unpacked size, which no manifest records. An image pulled "
        "with every platform is one row, with the ID and size of this machine's platform (of "
        "its first platform when it has none for this machine).",
        epilog=IMAGES_EPILOG,
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
    add_format(images, "one JSON object per image a line, sizes in bytes", "table")
    add_common(images, "to list")
    images.set_defaults(handler=_cmd_images)


def _cmd_images(args: argparse.Namespace) -> int:
    from ..inspecting import images

    want: Reference | None = None
    want_tag = False
    if args.repository:
        want = parse(args.repository)
        want_tag = names_image(args.repository)
    records = [
        r
        for r in images(load_config(args).store)
        if want is None
        or (
            r.reference.name == want.name
            and (not want_tag or (r.reference.tag, r.reference.digest) == (want.tag, want.digest))
        )
    ]
    if args.format == "json":
        from ..events import SCHEMA_VERSION

        for record in records:
            emit({"event": "image", "v": SCHEMA_VERSION, **record.to_dict()})
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
            "<missing>" if r.size is None else human_size(r.size),
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


def add_rmi(sub: Subparsers) -> None:
    rmi = add_command(
        sub,
        "rmi",
        help="remove images from the store's index (their blobs go at the next prune)",
        description="Remove each IMAGE's name from the store, as `docker rmi` does: "
        "`pypull rmi redis` removes docker.io/library/redis:latest. Its blobs stay until "
        "`pypull prune`, which deletes those no other image uses. A name not in the store is "
        "an error (exit status 1); the others are still removed.",
        epilog="example:\n  pypull rmi redis:7 127.0.0.1:5000/team/app:1.4 && pypull prune",
    )
    rmi.add_argument("images", nargs="+", metavar="IMAGE")
    add_format(rmi, '{"event": "untagged", "v": 1, "reference"} per name removed, an error each')
    add_common(rmi, "to remove the names from")
    rmi.set_defaults(handler=_cmd_rmi)


def _cmd_rmi(args: argparse.Namespace) -> int:
    from ..errors import NotFound
    from ..events import SCHEMA_VERSION
    from ..store.layout import Store

    store = Store(load_config(args).store)
    status = 0
    as_json = args.format == "json"
    for text in args.images:
        try:
            ref = parse(text)
            if not store.untag(str(ref)):
                raise NotFound(f"No such image: {shown(text)}")
        except PullError as e:
            print_error(e, args.debug)
            if as_json:
                emit(error_event(e, text))
            status = 1
            continue
        if as_json:
            emit({"event": "untagged", "v": SCHEMA_VERSION, "reference": str(ref)})
        else:
            print(f"Untagged: {ref.familiar}")
    return status


def add_prune(sub: Subparsers) -> None:
    prune = add_command(
        sub,
        "prune",
        help="delete blobs no image uses, and old partial downloads",
        description="Delete every blob that no image in the store's index.json reaches "
        "(through indexes, manifests, configs and layers, every platform), and partial "
        "downloads not written to for --partials-older-than, and scratch files a killed "
        "process left (a load's staged blobs) untouched for an hour. Safe while other pypull "
        "processes pull, copy or push with the same store: what they rely on is kept. "
        "Prints each deletion and the space reclaimed.",
        epilog="examples:\n  pypull prune --dry-run\n  pypull prune --partials-older-than 1h",
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
    add_format(
        prune,
        '{"event": "removed", "v": 1, "kind", "digest", "size"} a file, then {"event": '
        '"summary", "v": 1, "dry_run", "removed", "reclaimed"}',
    )
    prune.add_argument("-q", "--quiet", action="store_true", help="print only the total reclaimed")
    add_common(prune, "to prune")
    prune.set_defaults(handler=_cmd_prune)


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


def _cmd_prune(args: argparse.Namespace) -> int:
    from ..store.layout import Store
    from ..store.prune import prune

    age = args.partials_older_than
    result = prune(
        Store(load_config(args).store),
        dry_run=args.dry_run,
        **({} if age is None else {"partials_older_than": age}),
    )
    if args.format == "json":
        from ..events import SCHEMA_VERSION

        doc = result.to_dict()
        files: list[dict[str, Any]] = doc.pop("removed")  # type: ignore[assignment]
        for file in files:
            emit({"event": "removed", "v": SCHEMA_VERSION, **file})
        emit({"event": "summary", "v": SCHEMA_VERSION, **doc, "removed": len(files)})
        return 0
    verb = "Would delete" if result.dry_run else "Deleted"
    if not args.quiet:
        for item in result.removed:
            if item.digest is None:
                what = f"temporary file {shown(item.path)}"
            else:
                what = ("partial download " if item.kind == "partial" else "") + str(item.digest)
            print(f"{verb}: {what} ({human_size(item.size)})")
    total = "Total reclaimable space" if result.dry_run else "Total reclaimed space"
    print(f"{total}: {human_size(result.reclaimed)}")
    return 0


VERIFY_EPILOG = """\
exit status:
  0  no problem (with --repair: none left after it)
  1  a problem pypull cannot repair: a link outside blobs/, a bad index.json or oci-layout, a
     directory in blobs/; without --repair, also a damaged or foreign blob
  3  the only problems are blobs missing from the images named: `pypull pull IMAGE` fetches
     them again (after --repair, what it removed from an image is missing so)

examples:
  pypull verify
  pypull verify --repair && echo clean
"""


def add_verify(sub: Subparsers) -> None:
    verify = add_command(
        sub,
        "verify",
        help="re-hash every blob and check every image in the store is complete",
        description="Re-hash every blob in the store and check that every image in index.json "
        "has its manifest, config and layers. Prints one line per problem, a damaged blob "
        "with the images that use it (or `unused`). Partial downloads are counted, not "
        "problems: a later pull resumes them.",
        epilog=VERIFY_EPILOG,
    )
    verify.add_argument(
        "--repair",
        action="store_true",
        help="remove damaged blobs and files in blobs/ pypull did not put there (never what a "
        "running pypull is using), then check again; a pull of the images named fetches "
        "what they lack",
    )
    add_format(
        verify,
        '{"event": "problem", "v": 1, "code", "path", "message"} a problem, then '
        '{"event": "summary", "v": 1, "blobs", "images", "partials", "problems"}',
    )
    add_common(verify, "to check")
    verify.set_defaults(handler=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    from ..store.layout import Store
    from ..store.repair import repair_store
    from ..store.verify import verify_store

    store = Store(load_config(args).store)
    report = verify_store(store)
    removed: list[str] = []
    if args.repair and not report.ok:
        repair = repair_store(store, report)
        removed = [f"Removed: {problem}" for problem in repair.removed]
        removed += [f"Not removed: {kept.problem}: {kept.reason}" for kept in repair.kept]
        if repair.removed:
            report = verify_store(store)
    if args.format == "json":
        from ..events import SCHEMA_VERSION

        v = SCHEMA_VERSION
        for line in removed:
            emit({"event": "repair", "v": v, "message": line})
        for problem in report.problems:
            emit(
                {
                    "event": "problem",
                    "v": v,
                    "code": problem.code,
                    "path": problem.path,
                    "message": problem.message,
                }
            )
        counts = {"blobs": report.blobs, "images": report.images, "partials": report.partials}
        emit({"event": "summary", "v": v, **counts, "problems": len(report.problems)})
        return _verify_status(report)
    for line in removed:
        _say(line)
    for problem in report.problems:
        _say(str(problem))
    summary = (
        f"{plural(report.blobs, 'blob')}, {plural(report.images, 'image')}, "
        f"{plural(report.partials, 'partial download')}: "
        + ("no problems" if report.ok else plural(len(report.problems), "problem"))
    )
    print(summary)
    names = [i for i in report.incomplete if not i.startswith("untagged ")]
    if names and not report.ok:
        print(f"To fetch what is missing: pypull pull {' '.join(shown(i) for i in names)}")
    return _verify_status(report)


def _verify_status(report: Report) -> int:
    """0: clean; 3: only blobs missing from images a pull by name fetches again; else 1."""
    from ..store.verify import MISSING

    if report.ok:
        return 0
    names = [i for i in report.incomplete if not i.startswith("untagged ")]
    fetchable = all(p.kind == MISSING for p in report.problems)
    return 3 if names and fetchable and len(names) == len(report.incomplete) else 1


def _say(line: str) -> None:
    """A line that may quote file names and JSON from the store, made safe to print."""
    print(shown(line, ERROR_LIMIT, tail=ERROR_TAIL))


def add_save(sub: Subparsers) -> None:
    save = add_command(
        sub,
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
    )
    save.add_argument("images", nargs="+", metavar="IMAGE")
    save.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the archive to write (default, or -: stdout, which must not be a terminal)",
    )
    add_common(save, "to save from")
    save.set_defaults(handler=_cmd_save)


def _cmd_save(args: argparse.Namespace) -> int:
    from ..archive import save
    from ..store.layout import Store

    store = Store(load_config(args).store)
    if args.output not in (None, "-"):
        save(args.images, args.output, store=store)
        return 0
    if sys.stdout.isatty():
        raise PullError("refusing to write an archive to a terminal: use -o FILE, or redirect")
    sys.stdout.flush()
    save(args.images, sys.stdout.buffer, store=store)
    sys.stdout.buffer.flush()
    return 0


def add_load(sub: Subparsers) -> None:
    load = add_command(
        sub,
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
    )
    load.add_argument("file", nargs="?", metavar="FILE", help="the archive (default: stdin)")
    load.add_argument("-i", "--input", metavar="FILE", help="the archive, as docker load takes it")
    load.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    add_format(
        load,
        '{"event": "loaded", "v": 1, "reference", "digest"} an image (reference null for one '
        "without a name)",
    )
    add_common(load, "to load into")
    load.set_defaults(handler=_cmd_load)


def _cmd_load(args: argparse.Namespace) -> int:
    from ..archive import load
    from ..store.layout import Store

    if args.file is not None and args.input is not None:
        raise PullError("give the archive once: as FILE or as -i FILE")
    path = args.input if args.input is not None else args.file
    source: Any = sys.stdin.buffer if path in (None, "-") else path
    if source is sys.stdin.buffer and sys.stdin.isatty():
        raise PullError("no archive given: use -i FILE, or redirect one to stdin")
    result = load(source, store=Store(load_config(args).store))
    if args.format == "json":
        from ..events import SCHEMA_VERSION

        loaded: list[tuple[str | None, Any]] = [(str(i.reference), i.digest) for i in result.images]
        loaded += [(None, d) for d in result.untagged]
        for name, id_ in loaded:
            emit({"event": "loaded", "v": SCHEMA_VERSION, "reference": name, "digest": str(id_)})
        return 0
    if not args.quiet:
        for image in result.images:
            print(f"Loaded image: {image.reference.familiar}")
        for digest in result.untagged:
            print(f"Loaded image ID: {digest}")
    return 0
