"""Option pieces more than one command takes: argument types, --store, --platform, --debug, the
settings that override the configuration, the command-line credentials and TLS (--creds,
--tls-verify; copy's --src-creds, --dest-creds, --src-tls-verify, --dest-tls-verify, as skopeo
spells them); and ``add_command``, a subparser as every
command's is made."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


#: A --*tls-verify and its value as argparse writes them.
_TLS_SHOWN = re.compile(r"(--(?:src-|dest-)?tls-verify) \[(true\|false)\]")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs filled to the terminal's width (at most 100 columns) paragraph
    by paragraph, except a paragraph with indented lines (examples, a sync file), kept as
    written; and a --*tls-verify shown as it is given: ``--tls-verify[=true|false]``, since a
    value must be attached or a boolean word (argparse writes ``--tls-verify [true|false]``,
    which suggests any next word is its value).

    Descriptions were one line of up to 600 characters, and epilogs were broken by hand at 100
    columns: an 80-column terminal broke both again, mid-word."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        width = min(width, 100)
        paragraphs = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.split("\n")
            if any(line[:1].isspace() for line in lines):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                words = " ".join(paragraph.split())
                paragraphs.append(
                    textwrap.fill(
                        words,
                        width,
                        initial_indent=indent,
                        subsequent_indent=indent,
                        break_on_hyphens=False,  # --dry-run, up-to-date stay whole
                        break_long_words=False,
                    )
                )
        return "\n\n".join(paragraphs)

    def format_help(self) -> str:
        # As long as what it replaces, so argparse's alignment and wrapping still hold.
        return _TLS_SHOWN.sub(r"\1[=\2]", super().format_help())


def add_command(
    sub: Subparsers, name: str, *, help: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """The subparser of command ``name``; its description and epilog are printed as written.
    It names itself (``command_parser``), so that a usage error found later prints its usage."""
    p = sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=HelpFormatter,
    )
    p.set_defaults(command_parser=p)
    return p


def add_format(p: argparse.ArgumentParser, json_help: str, text: str | None = "text") -> None:
    """``--format {text,json}`` (``text`` names the default, None: JSON only) and ``--json``,
    its alias: every command that prints data takes both spellings."""
    choices = ("json",) if text is None else (text, "json")
    p.add_argument(
        "--format",
        choices=choices,
        default=None if text is None else text,
        help=f"json: {json_help}; the README lists every field"
        + ("" if text is None else f" (default: {text})"),
    )
    p.add_argument(
        "--json",
        dest="format",
        action="store_const",
        const="json",
        help="the same as --format json",
    )


def positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return n


def positive_float(text: str) -> float:
    try:
        n = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not n > 0:
        raise argparse.ArgumentTypeError(f"{text} is not greater than 0")
    return n


def checked_platform(text: str) -> str:
    """``os/arch[/variant]``, as given, once it parses."""
    from ..oci.manifest import parse_platform

    try:
        parse_platform(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def checked_mirror(text: str) -> str:
    """A mirror's URL, as given, once it is one."""
    from ..registry.endpoint import normalize_mirror

    try:
        normalize_mirror(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def user_and_password(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise argparse.ArgumentTypeError("expected USERNAME:PASSWORD")
    return user, password


def add_store(p: argparse.ArgumentParser, what: str = "to pull into") -> None:
    p.add_argument(
        "--store",
        metavar="DIR",
        help=f"the OCI image layout {what} "
        "(default: $PYPULL_STORE, else $XDG_DATA_HOME/pypull, else ~/.local/share/pypull)",
    )


def add_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def add_platform(
    p: argparse.ArgumentParser,
    text: str = "the platform of a multi-platform image (default: linux/<this machine>)",
) -> None:
    """``--platform``, one platform (copy's, which repeats, is its own)."""
    p.add_argument("--platform", type=checked_platform, metavar="OS/ARCH[/VARIANT]", help=text)


def add_common(p: argparse.ArgumentParser, what: str = "to pull into") -> None:
    add_store(p, what)
    add_debug(p)


#: The words a --*tls-verify takes as its value, and what each means.
_TLS_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
#: Every spelling of the flag (``_add_access`` makes each).
TLS_FLAGS = ("--tls-verify", "--src-tls-verify", "--dest-tls-verify")


def tls_verify_value(text: str) -> bool:
    """``true`` or ``false`` (skopeo's ``--tls-verify=false``; 1/0, yes/no too)."""
    try:
        return _TLS_WORDS[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError("expected true or false") from None


def bare_tls_verify(argv: Sequence[str]) -> list[str]:
    """``argv`` with each bare --*tls-verify that no boolean word follows made
    ``--*tls-verify=true``: the flag is skopeo's boolean, so ``--tls-verify IMAGE`` means true
    and IMAGE, where argparse's optional value (``nargs="?"``) would take IMAGE as the value.
    Nothing after ``--`` is touched: it is all positional."""
    out: list[str] = []
    for i, word in enumerate(argv):
        if word == "--":
            return out + list(argv[i:])
        following = argv[i + 1 : i + 2]
        if word in TLS_FLAGS and not any(w.strip().lower() in _TLS_WORDS for w in following):
            word += "=true"
        out.append(word)
    return out


#: What a --*-tls-verify=false does, for the help of each.
_TLS_OFF = (
    "=false: HTTPS without checking the certificate of {whose} alone (its mirrors keep their "
    "settings; a loopback name, plain HTTP by default, is then reached over HTTPS too); =true, "
    "or the flag alone: check it even where the configuration says skip_verify (default: the "
    "configuration)"
)


def _add_access(p: argparse.ArgumentParser, prefix: str, whose: str) -> None:
    p.add_argument(
        f"--{prefix}creds",
        type=user_and_password,
        metavar="USERNAME:PASSWORD",
        help=f"credentials for {whose} alone, sent to its own server only (never to a mirror, "
        "nor to a host it redirects to); they win over docker's config.json",
    )
    p.add_argument(
        f"--{prefix}tls-verify",
        type=tls_verify_value,
        nargs="?",
        const=True,
        default=None,
        metavar="true|false",
        help=_TLS_OFF.format(whose=whose),
    )


def add_creds(p: argparse.ArgumentParser) -> None:
    """``--creds`` and ``--tls-verify``: the one registry a command reaches."""
    _add_access(p, "", "the image's registry")


def add_copy_access(p: argparse.ArgumentParser, *, source: bool = True) -> None:
    """``--dest-creds`` and ``--dest-tls-verify`` for the target's registry; with ``source``
    (copy and sync; not push, whose source is the store) ``--src-creds`` and
    ``--src-tls-verify`` for the source's."""
    if source:
        _add_access(p, "src-", "the source's registry")
    _add_access(p, "dest-", "the target's registry")


def add_settings(p: argparse.ArgumentParser, *, pulls: bool = True) -> None:
    """The options that override the configuration file and PYPULL_* variables; without
    ``pulls``, those of copies (every platform, one blob at a time: no --platform, no -j)."""
    p.add_argument(
        "--mirror",
        action="append",
        default=None,
        type=checked_mirror,
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
        add_platform(
            p, "platform to pull from a multi-platform image (default: linux/<this machine>)"
        )
        p.add_argument(
            "-j",
            "--jobs",
            "--max-concurrent-downloads",
            dest="max_concurrent_downloads",
            type=positive_int,
            default=None,
            metavar="N",
            help="layers downloaded at once (default: 3)",
        )
    p.add_argument(
        "--max-download-attempts",
        type=positive_int,
        default=None,
        metavar="N",
        help="attempts per layer and manifest before a temporary failure (connection trouble, "
        "429, 5xx) is given up on; a cut-off download resumes where it stopped (default: 5)",
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="a connection that cannot be made, or goes silent, for this long is dropped and "
        "the download retried where it stopped; an answer's head, a manifest or a token must "
        "come within twice this, a layer at 1 KiB/s or more over this (default: 30)",
    )
