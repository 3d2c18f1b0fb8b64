"""One writer per target repository on this machine: ``pypull sync``, ``copy`` and ``push``
hold a lock per repository they write to, so two overlapping runs (an hourly cron job that
outlasts its hour) do not both upload everything: the second waits, and then finds the target
up to date.

A lock is ``flock`` on a file, so a process that dies (by SIGKILL or a power cut too) lets go of
it. The files live in ``lock_dir()``:

* ``$XDG_RUNTIME_DIR/pypull``: the user's runtime directory, on a RAM disk, gone at logout;
* else ``/run/user/<uid>/pypull`` when that directory is the user's: what a login session's
  ``XDG_RUNTIME_DIR`` names, so a cron job (cron sets no such variable) and a terminal meet;
* else ``<temp dir>/pypull-<uid>`` (``$TMPDIR``, else ``/tmp``).

The directory is made ``0700``, and one another user owns or may write to is refused (a lock
file someone else can replace is no lock). A file's name is the SHA-256 of the repository's
name, never built from the name. Files are kept after use (a line each: the repository and the
holder's pid, for whoever looks), so no unlink can race a waiter into locking a lost file.

Several locks are taken in one order (sorted by name) and held until the run ends, so two runs
cannot each hold a lock the other waits for. Pure standard library; blocking (a waiting
process has nothing else to do, and Ctrl-C interrupts the wait).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from .errors import LockError, TargetBusy
from .text import shown

__all__ = ["hold", "lock_dir", "lock_path"]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: O_NONBLOCK: a FIFO planted at a lock's name must not hang the open (it is then refused).
_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC


def lock_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where the locks are (the module's docstring says why there)."""
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime):  # the XDG spec: a relative path is invalid and must be ignored
        return Path(runtime) / "pypull"
    uid = os.geteuid()
    session = Path(f"/run/user/{uid}")
    with contextlib.suppress(OSError):
        st = os.lstat(session)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == uid:
            return session / "pypull"
    return Path(tempfile.gettempdir()) / f"pypull-{uid}"


def lock_path(repository: str, directory: Path | None = None) -> Path:
    """The lock file of ``repository`` (``registry/path``, as ``Reference.name`` gives it)."""
    digest = hashlib.sha256(repository.encode("utf-8", "surrogatepass")).hexdigest()
    return (directory or lock_dir()) / f"{digest}.lock"


@contextlib.contextmanager
def hold(
    repositories: Iterable[str],
    *,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
    directory: Path | None = None,
) -> Iterator[None]:
    """Hold the lock of each of ``repositories`` (taken in sorted order) for the ``with``
    block. A lock another process holds is waited for, ``on_wait`` told of the repository
    first; without ``wait``, ``TargetBusy`` names it (and no lock stays taken)."""
    where = directory or lock_dir()
    fds: list[int] = []
    try:
        dir_fd = _open_dir(where)
        try:
            for repository in sorted(set(repositories)):
                fds.append(_lock(dir_fd, where, repository, wait, on_wait))
        finally:
            os.close(dir_fd)
        yield
    finally:
        # Closing a file's only descriptor lets go of its flock. Last taken, first let go: a
        # waiter for the first lock then finds every other free, and waits (and says so) once.
        for fd in reversed(fds):
            os.close(fd)


def _open_dir(path: Path) -> int:
    """The lock directory, made if need be; refused unless it is ours and only we may write."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC)
    except OSError as e:
        # O_NOFOLLOW | O_DIRECTORY at a link: ELOOP, or on Linux ENOTDIR
        link = e.errno in (errno.ELOOP, errno.ENOTDIR) and path.is_symlink()
        reason = "a symbolic link" if link else e.strerror or str(e)
        message = f"cannot use {shown(str(path))} for locks: {reason}"
        raise LockError(message, path=str(path)) from None
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        os.close(fd)
        raise LockError(
            f"cannot use {shown(str(path))} for locks: it is not only yours to write (owner uid"
            f" {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}); remove it, or set"
            " XDG_RUNTIME_DIR",
            path=str(path),
        )
    return fd


def _lock(
    dir_fd: int,
    where: Path,
    repository: str,
    wait: bool,
    on_wait: Callable[[str], None] | None,
) -> int:
    path = lock_path(repository, where)
    try:
        fd = os.open(path.name, _FILE_FLAGS, 0o600, dir_fd=dir_fd)
    except OSError as e:
        message = f"cannot lock {shown(str(path))}: {e.strerror or e}"
        raise LockError(message, path=str(path)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LockError(f"cannot lock {shown(str(path))}: not a regular file", path=str(path))
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    raise TargetBusy(repository, path=str(path)) from None
                if on_wait is not None:
                    on_wait(repository)
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:  # a file system without locks (ENOLCK), say
            message = f"cannot lock {shown(str(path))}: {e.strerror or e}"
            raise LockError(message, path=str(path)) from None
        with contextlib.suppress(OSError):  # for whoever looks; the lock holds without it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{repository}\npid {os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd
