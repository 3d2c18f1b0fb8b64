"""How the store touches a file: never through a link, created 0666 (directories 0777) minus
the umask, written whole; and how an ``OSError`` there is told, as a one-line ``StoreError``.

Why a store must be handled so is in ``puller.store.layout``'s docstring. Nothing here knows
the layout: callers name the directories and files. ``StoreDirs`` is what the modules below
``Store`` (blobs, leases) use of it, so that they need not import the module that imports them.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import IO, Any, Protocol

from ..errors import StoreError

#: Files are created 0666 and directories 0777; the kernel takes off the umask (or applies the
#: directory's default ACL), as for every other tool's files.
FILE_MODE = 0o666
DIR_MODE = 0o777
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
#: Every open of a file in the store. O_NONBLOCK: a FIFO planted at a file's name must not hang
#: the open; it is then refused as not a regular file (on a regular file the flag does nothing).
FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
#: A scratch name that is a link again after we removed one this many times in a row is an attack.
_LINK_RETRIES = 10


class StoreDirs(Protocol):
    """A store's root and its directories, each opened through no link (``open_dir``):
    ``puller.store.layout.Store`` is one."""

    @property
    def root(self) -> Path: ...

    def open_dir(self, parts: tuple[str, ...], create: bool = False) -> int: ...

    def directory(
        self, parts: tuple[str, ...], create: bool = False
    ) -> AbstractContextManager[int]: ...

    def lstat(self, parts: tuple[str, ...], name: str) -> os.stat_result | None: ...


def store_error(action: str, path: Path, e: OSError) -> StoreError:
    """``cannot <action> <path>: <reason>``, the store's one way of telling an ``OSError``."""
    reason = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        reason = "no space left on device"
    return StoreError(f"cannot {action} {path}: {reason}", path=str(path))


def _link_error(path: Path) -> StoreError:
    return StoreError(
        f"{path} is a symbolic link: pypull does not follow links inside its store",
        path=str(path),
    )


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def lexists(dir_fd: int, name: str) -> bool:
    """Whether ``name`` exists in ``dir_fd`` (a link counts as existing: it is not followed)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def open_dir(root: Path, parts: tuple[str, ...], create: bool = False) -> int:
    """A descriptor of ``root/parts...``, each part opened relative to the one above with
    ``O_NOFOLLOW``, so none can be a link (``StoreError`` naming it if one is); created
    (0777 minus the umask) if missing and ``create``. The root itself may be a link."""
    if create:
        root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    path = root
    try:
        for name in parts:
            path = path / name
            if create:
                with suppress(FileExistsError):
                    os.mkdir(name, DIR_MODE, dir_fd=fd)
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(fd, name):
                    raise _link_error(path) from None
                raise
            os.close(fd)
            fd = sub
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_regular(fd: int, path: Path) -> int:
    """``fd`` if it is a regular file; otherwise close it and refuse."""
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise StoreError(f"{path} is not a regular file", path=str(path))
    return fd


def open_regular(dir_fd: int, name: str, path: Path, flags: int) -> int:
    """Open the regular file ``name`` of ``dir_fd``; a link there is an error, never followed."""
    try:
        fd = os.open(name, flags | FILE_FLAGS, FILE_MODE, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:  # O_NOFOLLOW met a link at the last (and only) component
            raise _link_error(path) from None
        raise
    return _check_regular(fd, path)


def open_scratch(dir_fd: int, name: str, path: Path) -> int:
    """Open (creating it if need be) a partial download or a lock file, read-write.

    A link at the name was not made by pypull (see ``layout``'s docstring): the link itself is
    unlinked, never what it points at, and a regular file is created in its place.
    """
    for _ in range(_LINK_RETRIES):
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | FILE_FLAGS, FILE_MODE, dir_fd=dir_fd)
        except OSError as e:
            if e.errno == errno.EISDIR:
                raise StoreError(f"{path} is not a regular file", path=str(path)) from None
            if e.errno != errno.ELOOP:
                raise
            if _is_link(dir_fd, name):
                with suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=dir_fd)  # removes the link, not its target
            continue
        return _check_regular(fd, path)
    raise StoreError(f"{path} keeps being replaced by a symbolic link", path=str(path))


def new_file(name_of: Callable[[], str], flags: int, dir_fd: int | None = None) -> tuple[int, str]:
    """A new file of ours, under the first fresh name ``name_of`` gives: ``O_CREAT | O_EXCL |
    O_NOFOLLOW``, so never someone else's file nor one reached through a link; 0666 minus the
    umask. Temporaries, leases, archives being written."""
    flags |= os.O_CREAT | os.O_EXCL | FILE_FLAGS
    for _ in range(100):
        name = name_of()
        try:
            return os.open(name, flags, FILE_MODE, dir_fd=dir_fd), name
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no free name for a new file")


def write_all(file: IO[bytes], chunk: bytes | memoryview, path: Path) -> None:
    """All of ``chunk``: an unbuffered write may write less than asked (a nearly full disk, a
    file size limit), and the hash beside it covers every byte, so the file must too."""
    view = memoryview(chunk)
    try:
        while view:
            written = file.write(view)
            if not written:
                raise OSError(errno.ENOSPC, "no space left on device")
            view = view[written:]
    except OSError as e:
        raise store_error("write", path, e) from e


def atomic_write(dir_fd: int, name: str, data: bytes, tmp_dir_fd: int | None = None) -> None:
    """Write ``name`` in ``dir_fd`` whole or not at all: a new temporary file (in ``tmp_dir_fd``,
    default the same directory), fsynced, then renamed over ``name``. The temporary file is made
    with ``O_CREAT | O_EXCL | O_NOFOLLOW``, so it is a new file of ours (0666 minus the umask),
    and the rename replaces a link at ``name`` instead of following it."""
    tmp_dir = dir_fd if tmp_dir_fd is None else tmp_dir_fd
    fd, tmp = new_file(lambda: f".{name}.{os.urandom(8).hex()}", os.O_WRONLY, tmp_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, name, src_dir_fd=tmp_dir, dst_dir_fd=dir_fd)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=tmp_dir)
        raise
    os.fsync(dir_fd)


#: sync_file_range's flags: wait for writes of the range already under way, start the rest,
#: wait for those too.
_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4
_sync_file_range: Any = None
#: How much written data is handed to the disk at a time (see ``WriteBehind``).
WRITEBACK_STEP = 32 << 20


#: What ``sync_file_range`` fails with where it cannot be used (a sandbox without the call, a
#: file system without it): then it is not used again, and the fsync does all of it.
_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EINVAL, errno.ESPIPE, errno.EOPNOTSUPP})


def _file_range(fd: int, offset: int, length: int, flags: int) -> None:
    """``sync_file_range`` (Linux, via libc; elsewhere nothing). Its errors are raised as
    ``OSError``: once it has waited, a write error it met is reported to it alone, and the
    fsync after it would succeed over bytes that never reached the disk."""
    global _sync_file_range
    if _sync_file_range is None:
        _sync_file_range = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                function = ctypes.CDLL(None, use_errno=True).sync_file_range
                function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
                _sync_file_range = function
            except (ImportError, OSError, AttributeError):  # no ctypes, or no such call
                pass
    if not _sync_file_range or _sync_file_range(fd, offset, length, flags) == 0:
        return
    import ctypes

    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        _sync_file_range = False
        return
    raise OSError(code, os.strerror(code))


class WriteBehind:
    """Writes a big file out as it grows and drops what is on disk from the page cache.

    Every ``WRITEBACK_STEP`` bytes the new part is handed to the disk, without waiting, so the
    fsync before the rename waits only for the tail (on a 1 GB blob, fsync at the end took
    0.3-0.4 s; started as it went, 0.01 s). The part before that, on disk by then, is dropped
    from the cache: a pull of gigabytes then reuses the same few pages instead of taking fresh
    ones and evicting what the machine's other programs keep cached. On this project's VMs,
    whose host takes back freed memory, fresh pages were most of the cost: writing 1 GB took
    0.3-2.5 s of system time when kept, 0.25 s when dropped behind. The last two or three steps
    stay cached, so a file under 96 MiB is left alone. Where the system lacks these calls
    (anything but Linux), nothing is handed over early and nothing dropped.

    ``wrote`` raises ``OSError`` when writing out failed (see ``_file_range``).
    """

    def __init__(self, fd: int, offset: int = 0) -> None:
        self._fd = fd
        self.reset(offset)

    def reset(self, offset: int) -> None:
        """The file now ends at ``offset`` (a resumed partial, or one truncated to start over);
        what it holds is dropped with the first step (a resume read it all to hash it)."""
        self._handed = self._started = offset
        self._dropped = 0

    def wrote(self, end: int) -> None:
        """The file holds data up to ``end``."""
        if end - self._started < WRITEBACK_STEP:
            return
        _file_range(self._fd, self._started, end - self._started, _WRITE)
        if self._handed > self._dropped:
            # What was handed over the step before last, on disk by now as a rule: one step
            # of slack, so the wait rarely waits.
            length = self._handed - self._dropped
            _file_range(self._fd, self._dropped, length, _WAIT_BEFORE | _WRITE | _WAIT_AFTER)
            if _sync_file_range and hasattr(os, "posix_fadvise"):
                # Dirty pages are never dropped, and it is advice: no data is lost either way.
                with suppress(OSError):
                    os.posix_fadvise(self._fd, self._dropped, length, os.POSIX_FADV_DONTNEED)
            self._dropped = self._handed
        self._handed, self._started = self._started, end
