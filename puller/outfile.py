"""The file a command's ``-o`` names (``pypull save -o``, ``pypull export -o``).

A regular file is written whole or not at all: a new temporary file beside it, fsynced, then
renamed over it, so a failed write leaves no partial archive and an old one stays whole until
the new one is. Through a symbolic link the link's target is the file replaced and the link
stays, as docker does with its config.json.

Anything else that already has the name is written in place: a named pipe, ``/dev/stdout``,
``/dev/null``, a device. A rename would put a regular file where it was (as root, over
``/dev/stdout`` or ``/dev/null`` themselves), and a reader waiting on a pipe would never see a
byte. A terminal is refused, as it is for standard output, and a directory is an error.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

from .errors import PullError
from .store.files import new_file
from .text import shown


@contextlib.contextmanager
def output_file(path: str | os.PathLike[str], what: str = "an archive") -> Iterator[BinaryIO]:
    """A binary stream for ``path``; for a regular file, what was written is in place once the
    block ends without an exception, and nothing is otherwise. ``what``: for the refusal of a
    terminal."""
    name = os.fspath(path)
    try:
        st: os.stat_result | None = os.stat(name)
    except FileNotFoundError:
        st = None  # a new file (or a dangling link: its target is made)
    except OSError as e:
        raise _cannot(name, e) from None
    target = os.path.realpath(name)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise PullError(f"cannot write {shown(name)}: it is a directory")
    # /dev/stdout redirected to a file is a regular file reached through /proc/self/fd: the
    # shell holds it open, so it is written where it is, as `cat > /dev/stdout` would.
    if st is None or (stat.S_ISREG(st.st_mode) and not target.startswith("/proc/")):
        with _replaced(name, target) as f:
            yield f
        return
    try:
        f = open(name, "wb")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise _cannot(name, e) from None
    with f:
        if f.isatty():
            raise PullError(f"refusing to write {what} to the terminal {shown(name)}")
        try:
            yield f
            f.flush()
        except OSError as e:  # a pipe whose reader left, a full device
            raise _cannot(name, e) from None


@contextlib.contextmanager
def _replaced(name: str, target: str) -> Iterator[BinaryIO]:
    folder, base = os.path.split(target)

    def fresh() -> str:
        return os.path.join(folder, f".{base}.{os.urandom(6).hex()}.tmp")

    try:
        fd, tmp = new_file(fresh, os.O_WRONLY)
    except OSError as e:
        raise _cannot(name, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _cannot(name, e) from None
        raise


def _cannot(name: str, e: OSError) -> PullError:
    return PullError(f"cannot write {shown(name)}: {e.strerror or e}")
