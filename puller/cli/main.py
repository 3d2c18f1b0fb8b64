"""The ``pypull`` command: the top-level parser, the table of commands, exit statuses.

Each command group has a module of its own (pull, copy, store, inspect, unpack, config, login),
its options beside its handler; what the terminal shows is in ``render``. Only this package
prints. Heavy imports (tqdm, the network stack) happen inside the handlers, so that
``pypull --help`` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .options import Subparsers

PROG = "pypull"
#: sysexits.h: a temporary failure, to be tried again later (--no-wait met a busy target).
EX_TEMPFAIL = 75

#: Every command, in the order ``pypull --help`` lists them, and the module of this package and
#: the function in it that adds its subparser; each subparser names its handler
#: (``set_defaults(handler=...)``), which returns the exit status. A command imports only its own
#: module: ``pypull pull`` never loads what ``sync`` or ``save`` need.
COMMANDS: dict[str, tuple[str, str]] = {
    "pull": ("pull", "add_pull"),
    "copy": ("copy", "add_copy"),
    "push": ("copy", "add_push"),
    "sync": ("copy", "add_sync"),
    "images": ("store", "add_images"),
    "inspect": ("inspect", "add_inspect"),
    "tags": ("inspect", "add_tags"),
    "unpack": ("unpack", "add_unpack"),
    "export": ("unpack", "add_export"),
    "rmi": ("store", "add_rmi"),
    "prune": ("store", "add_prune"),
    "verify": ("store", "add_verify"),
    "save": ("store", "add_save"),
    "load": ("store", "add_load"),
    "config": ("config", "add_config"),
    "login": ("login", "add_login"),
    "logout": ("login", "add_logout"),
}

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


class _VersionAction(argparse.Action):
    """Looks the version up only when asked: importlib.metadata costs 10-20 ms at every start."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(f"{PROG} {_version()}")
        parser.exit()


def _version() -> str:
    from .. import __version__

    return __version__


def _adder(command: str) -> Callable[[Subparsers], None]:
    """What adds ``command``'s subparser, its module imported now."""
    import importlib

    module, function = COMMANDS[command]
    adder: Callable[[Subparsers], None] = getattr(
        importlib.import_module(f"{__package__}.{module}"), function
    )
    return adder


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of the command ``only`` alone."""
    from .options import HelpFormatter

    top = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, formatter_class=HelpFormatter)
    top.add_argument("--version", action=_VersionAction, nargs=0, help="show the version and exit")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS if only is None else (only,):
        _adder(command)(sub)
    return top


def edits(a: str, b: str) -> int:
    """The edit distance of two words: insertions, deletions, substitutions, and swaps of two
    neighbours (``imgaes``), one edit each."""
    d = [[i + j if not i * j else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(
                d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])
            )
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def mistyped_command(word: str) -> str | None:
    """The command ``word`` is a typo of: not a command itself, within two edits of one, and
    without what an image name of a registry would have (``/ : @ .``); else None."""
    if word in COMMANDS or word.startswith("-") or any(c in word for c in "/:@."):
        return None
    distance, best = min((edits(word.lower(), name), name) for name in COMMANDS)
    return best if distance <= 2 else None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list == ["--version"]:  # at once: no parser, no command module
        print(f"{PROG} {_version()}")
        return 0
    if not args_list:
        build_parser().print_help(sys.stderr)
        return 2
    if args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help", "--version"):
        typo = mistyped_command(args_list[0])
        if typo is not None:  # refused before anything is asked of a registry
            from ..text import shown

            word = shown(args_list[0], 100)
            print(
                f'Error: unknown command "{word}" (did you mean "{typo}"? to pull an image of '
                f"that name: {PROG} pull {word})",
                file=sys.stderr,
            )
            return 2
        args_list.insert(0, "pull")  # `pypull redis` means `pypull pull redis`, as the docs say
    from .options import bare_tls_verify

    args_list = bare_tls_verify(args_list)  # `--tls-verify IMAGE`: true, and IMAGE
    top = build_parser(args_list[0] if args_list[0] in COMMANDS else None)
    args, extra = top.parse_known_args(args_list)
    if args.command is None:
        top.print_help()
        return 0
    if extra:  # the command's own usage, not the top level's
        args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from ..errors import PullError, TargetBusy
    from .common import UsageError

    try:
        status: int = args.handler(args)
        return status
    except UsageError as e:
        args.command_parser.error(str(e))  # exits 2, after the command's usage
        raise AssertionError("unreachable") from None
    except KeyboardInterrupt as e:
        # At column 0 on a terminal: over the "^C" it echoed, not after it.
        print(
            "\rError: interrupted" if sys.stderr.isatty() else "Error: interrupted", file=sys.stderr
        )
        _json_error(args, e)
        return 130
    except TargetBusy as e:  # --no-wait: "try again later", as sysexits' EX_TEMPFAIL says
        _failed(args, e)
        return EX_TEMPFAIL
    except BrokenPipeError:
        # The reader went away (`pypull ... | head -1`): nothing to say, and nowhere to say it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except PullError as e:
        _failed(args, e)
        return 1
    except Exception as e:
        # A bug of ours: still one line (and a hint) unless --debug asks for the traceback.
        _failed(args, e)
        if not args.debug:
            print(
                "(this is a bug in pypull; run again with --debug for the traceback)",
                file=sys.stderr,
            )
        return 1


def _failed(args: argparse.Namespace, e: Exception) -> None:
    """A command that failed as a whole: its ``Error:`` line (saying how to log in, when a
    registry wants credentials), and with --format json its ``error`` line on stdout."""
    from ..errors import error_code
    from .render import login_hint, print_error, registry_of

    flag = "--creds" if hasattr(args, "creds") else ""
    print_error(e, args.debug, login_hint(error_code(e), registry_of(e), flag, str(e)))
    _json_error(args, e)


def _json_error(args: argparse.Namespace, e: BaseException) -> None:
    if getattr(args, "format", None) == "json":
        from .render import emit, error_event

        with contextlib.suppress(OSError):  # stdout is gone: the Error line said it
            emit(error_event(e))


def run() -> None:
    """The console script: ``main``, then out without the interpreter's teardown when nothing
    is left for it to do. Tearing down every module cost 15-20 ms here, a tenth of a 20 MB
    pull; what it would do that matters (flush the standard streams, run ``atexit``
    handlers, join threads) is done first. A thread still running, a stream that cannot be
    flushed, or a profiler, tracer or ``python -i`` waiting for the end takes the usual way out,
    which reports it as before."""
    _fill_standard_descriptors()
    status = main()
    import atexit
    import threading

    if (
        threading.active_count() > 1
        or sys.getprofile() is not None
        or sys.gettrace() is not None
        or sys.flags.inspect
        or not _flushed()
    ):
        sys.exit(status)
    atexit._run_exitfuncs()
    if not _flushed():  # what an exit function printed
        sys.exit(status)
    os._exit(status)


def _flushed() -> bool:
    """Whether stdout and stderr (None when closed at start) took what they held."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: the interpreter reports it
            return False
    return True


def _fill_standard_descriptors() -> None:
    """/dev/null on a standard descriptor that is closed (`pypull ... >&-`, a daemon's child):
    otherwise the next socket or file takes the number, and libuv (uvloop) aborts the process
    when it closes a descriptor of 2 or below. Python left the stream None; it becomes that
    /dev/null, so what is printed to it is dropped rather than a crash."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:  # a lower one was free after all: not ours to fill
                os.close(opened)
                continue
            if getattr(sys, name) is None:
                setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))  # noqa: SIM115
