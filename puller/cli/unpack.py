"""``pypull unpack`` (an image's files, its layers applied to a new directory) and ``pypull
export`` (the same files as one tar, streamed)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, BinaryIO

from ..text import shown
from .common import load_config
from .options import add_command, add_common, add_platform
from .render import human_size, plural

if TYPE_CHECKING:
    import argparse

    from .options import Subparsers


def add_unpack(sub: Subparsers) -> None:
    unpack = add_command(
        sub,
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
    )
    unpack.add_argument("image", metavar="IMAGE", help="an image in the store, as it was pulled")
    unpack.add_argument(
        "dest",
        metavar="DIR",
        help="the directory to create; - writes the flattened filesystem to stdout as one tar "
        "instead (as pypull export does)",
    )
    add_platform(unpack)
    add_common(unpack, "to read")
    unpack.set_defaults(handler=_cmd_unpack)


def _cmd_unpack(args: argparse.Namespace) -> int:
    from ..unpacking import unpack

    if args.dest == "-":
        return _export(args, None)

    done = unpack(args.image, args.dest, store=load_config(args).store, platform=args.platform)
    skipped = [
        plural(n, word)
        for n, word in (
            (done.skipped_devices, "device node"),
            (done.skipped_owners, "ownership"),
            (done.skipped_xattrs, "xattr"),
        )
        if n
    ]
    note = f"; skipped as not root: {', '.join(skipped)}" if skipped else ""
    print(
        f"Unpacked {plural(done.layers, 'layer')} into {shown(str(done.path))}: "
        f"{plural(done.files, 'file')}, {human_size(done.bytes)}{note}"
    )
    return 0


def add_export(sub: Subparsers) -> None:
    export = add_command(
        sub,
        "export",
        help="write an image's flattened filesystem as one tar",
        description="Write the files IMAGE's layers make, flattened (each path once, no "
        "whiteouts), as one tar, streamed: to FILE, or to stdout when it is not a terminal. "
        "Every layer is checked against its digest and diff_id as it is read. With -o, the tar "
        "is written beside FILE and renamed once complete, so a failure leaves no FILE; on "
        "stdout a failure ends the stream early, with an error and exit status 1.",
        epilog="examples:\n  pypull export redis:7 -o redis.tar\n"
        "  pypull export redis:7 | tar -t | head",
    )
    export.add_argument("image", metavar="IMAGE", help="an image in the store, as it was pulled")
    export.add_argument("-o", "--output", metavar="FILE", help="the tar to write")
    add_platform(export)
    add_common(export, "to read")
    export.set_defaults(handler=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    return _export(args, args.output)


def _export(args: argparse.Namespace, output: str | None) -> int:
    """The flattened tar to ``output`` (``outfile.output_file``: a regular file is written beside
    it and renamed once complete); to stdout when ``output`` is None or ``-`` (export without
    -o, unpack to ``-``)."""
    from ..exporting import export

    store = load_config(args).store
    if output is None or output == "-":
        if sys.stdout.isatty():
            print("Error: refusing to write a tar to a terminal: use -o FILE", file=sys.stderr)
            return 2
        export(args.image, sys.stdout.buffer, store=store, platform=args.platform)
        sys.stdout.buffer.flush()
        return 0
    from ..outfile import output_file

    with output_file(output, "a tar") as f:
        # -o /dev/stdout: the summary must not land inside the tar.
        said = sys.stderr if _is_stdout(f) else sys.stdout
        done = export(args.image, f, store=store, platform=args.platform)
    print(
        f"Exported {plural(done.layers, 'layer')} to {shown(output)}: "
        f"{plural(done.files, 'file')}, {human_size(done.bytes)}",
        file=said,
    )
    return 0


def _is_stdout(f: BinaryIO) -> bool:
    """Whether ``f`` is the very file standard output is (``-o /dev/stdout``)."""
    if sys.stdout is None:  # closed when pypull started
        return False
    try:
        return os.path.samestat(os.fstat(f.fileno()), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError):
        return False
