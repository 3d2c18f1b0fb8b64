"""The file a command's ``-o`` names (``pypull save -o``, ``pypull export -o``).

A regular file is written whole or not at all: a new temporary file beside it, fsynced, then
renamed over it, so a failed write leaves no partial archive and an old one stays whole until
the new one is. Through a symbolic link the link's target is the file replaced and the link
stays, as docker does with its config.json.

Anything else that already has the name is written in place: a named pipe, ``/dev/null``, a
device. A rename would put a regular file where it was (as root, over ``/dev/null`` itself),
and a reader waiting on a pipe would never see a byte. ``/dev/stdout``, ``/dev/fd/N`` and
``/proc/self/fd/N`` (or a link to one) are the descriptor this process already has, written as
it is: into the pipe, or into the file the shell opened, appending for ``>>``, never replacing
it. A terminal is refused, as it is for standard output, and a directory is an error.
"""

from __future__ import annotations

import contextlib
import os
import re
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
    fd = _descriptor_named(name)
    if fd is not None:
        # /dev/stdout and the like: the descriptor this process already has, as the shell
        # opened it (appending for >>, into a file the shell may write around it), never the
        # file it leads to, renamed over.
        try:
            f = os.fdopen(os.dup(fd), "wb")
        except OSError as e:
            raise _cannot(name, e) from None
        with _in_place(f, name, what) as out:
            yield out
        return
    try:
        st: os.stat_result | None = os.stat(name)
    except FileNotFoundError:
        st = None  # a new file (or a dangling link: its target is made)
    except OSError as e:
        raise _cannot(name, e) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise PullError(f"cannot write {shown(name)}: it is a directory")
    if st is None or stat.S_ISREG(st.st_mode):
        with _replaced(name, os.path.realpath(name), st) as out:
            yield out
        return
    try:
        f = open(name, "wb")  # noqa: SIM115 (closed by _in_place)
    except OSError as e:
        raise _cannot(name, e) from None
    with _in_place(f, name, what) as out:
        yield out


#: The names of a descriptor of this process's own: /dev/stdout, /dev/fd/N, /proc/self/fd/N.
_FD_NAME = re.compile(r"/(?:dev|proc/self)/fd/([0-9]{1,9})")
_STD_NAMES = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}


def _descriptor_named(name: str) -> int | None:
    """The descriptor ``name`` leads to, following links one by one (a link of one's own to
    /dev/stdout too); None for any other file."""
    path = os.path.abspath(name)
    for _ in range(40):  # the kernel's own bound on links followed
        m = _FD_NAME.fullmatch(path)
        if m is not None:
            return int(m[1])
        if path in _STD_NAMES:
            return _STD_NAMES[path]
        try:
            link = os.readlink(path)
        except OSError:
            return None  # not a link, or nothing there
        path = os.path.normpath(os.path.join(os.path.dirname(path), link))
    return None


@contextlib.contextmanager
def _in_place(f: BinaryIO, name: str, what: str) -> Iterator[BinaryIO]:
    """``f`` written where it is: a pipe, a device, the descriptor standard output is."""
    try:
        if f.isatty():
            raise PullError(f"refusing to write {what} to the terminal {shown(name)}")
        yield f
        f.flush()
    except OSError as e:  # a pipe whose reader left, a full device
        raise _cannot(name, e) from None
    finally:
        # A failed flush is not tried again by close, over the error already raised.
        with contextlib.suppress(OSError):
            f.close()


@contextlib.contextmanager
def _replaced(name: str, target: str, old: os.stat_result | None) -> Iterator[BinaryIO]:
    """A temporary file beside ``target``, renamed over it once written and fsynced; it keeps
    the mode of the file it replaces (``old``), as an archive made private stays private."""
    folder, base = os.path.split(target)

    def fresh() -> str:
        return os.path.join(folder, f".{base}.{os.urandom(6).hex()}.tmp")

    try:
        fd, tmp = new_file(fresh, os.O_WRONLY)
    except OSError as e:
        raise _cannot(name, e) from None
    try:
        if old is not None:
            os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o777)
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
