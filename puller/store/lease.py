"""Leases and the gc lock: what keeps ``pypull prune`` off the blobs a running pypull relies on.

Blobs that no image in ``index.json`` reaches are garbage to ``pypull prune``, yet a pull
relies on blobs before it tags them (a layer it found present, one it is downloading). So a
process using the store holds a lease, as containerd's clients do: a file in
``.pypull/leases/`` that it keeps ``flock``-ed for as long as it runs, listing every digest it
has asked about, read or written. It adds a digest before it looks (holding ``gc.lock``
shared); prune holds ``gc.lock`` exclusively from reading the leases to its last deletion, so
whatever a pull saw present stays present until that pull ends, and a lease nobody holds any
more (its process died) is stale and removed.

Whoever deletes blobs (prune, ``verify --repair``) does so inside ``exclusive``, after reading
``live_leases``, and never deletes a digest one of them lists.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..errors import InvalidDigest, StoreError
from ..oci.digest import Digest, parse_digest
from .files import FILE_FLAGS, StoreDirs, new_file, open_scratch, store_error

#: The directory of the leases, below the store's root.
LEASES = (".pypull", "leases")
#: The gc lock, in ``.pypull/``.
GC_LOCK = "gc.lock"
#: A lease that cannot be created for these reasons is done without: see ``Lease.hold``.
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
#: A lease holds one digest a line (72 bytes for sha256): this is a million of them. A larger
#: file is not ours, and a collector that cannot read all of a live lease must not go on.
MAX_LEASE_SIZE = 72 << 20


@contextmanager
def gc_lock(store: StoreDirs, shared: bool) -> Iterator[None]:
    """``gc.lock``: shared to add to a lease, exclusive to prune."""
    path = store.root / ".pypull" / GC_LOCK
    with store.directory((".pypull",), create=not shared) as pypull:
        fd = open_scratch(pypull, GC_LOCK, path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def exclusive(store: StoreDirs) -> Iterator[None]:
    """``gc.lock`` held exclusively, as a ``StoreError`` if it cannot be: no lease grows
    meanwhile, so what ``live_leases`` read stays all that running processes rely on."""
    try:
        with gc_lock(store, shared=False):
            yield
    except OSError as e:
        raise store_error("lock", store.root / ".pypull", e) from e


def live_leases(store: StoreDirs, remove_stale: bool) -> set[Digest]:
    """The digests of every live lease (read under ``exclusive``); a lease whose holder is gone
    (we can lock it) is removed if ``remove_stale``."""
    path = store.root.joinpath(*LEASES)
    held: set[Digest] = set()
    try:
        with store.directory(LEASES) as leases:
            for name in os.listdir(leases):
                held |= _read_lease(leases, name, path / name, remove_stale)
    except FileNotFoundError:
        return held  # no process has ever held a lease here
    except OSError as e:
        raise store_error("read", path, e) from e
    return held


def _read_lease(leases: int, name: str, path: Path, remove_stale: bool) -> set[Digest]:
    try:
        fd = os.open(name, os.O_RDONLY | FILE_FLAGS, dir_fd=leases)
    except FileNotFoundError:
        return set()  # released meanwhile
    except OSError as e:
        if e.errno == errno.ELOOP:
            return set()  # a link is no lease of ours (verify reports links)
        raise
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return set()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: its process is running
        else:
            if remove_stale:
                with suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=leases)
            return set()
        raw = f.read(MAX_LEASE_SIZE + 1)
    if len(raw) > MAX_LEASE_SIZE:
        raise StoreError(f"{path}: a lease over {MAX_LEASE_SIZE >> 20} MiB; nothing removed")
    held = set()
    for line in raw.decode("ascii", "replace").splitlines():
        with suppress(InvalidDigest):
            held.add(parse_digest(line))
    return held


class _Everything(set[Digest]):
    """The held set of a lease that could not be made: asks nothing more."""

    def __contains__(self, item: object) -> bool:
        return True


class Lease:
    """What one ``Store`` object relies on (see the module's docstring): ``leases/<pid>-<hex>``,
    a digest a line, locked by us from creation until ``release``. Created on the first digest
    held in a store that exists: a store that is not there has nothing to protect."""

    def __init__(self, store: StoreDirs) -> None:
        self._store = store
        self._dir_fd: int | None = None
        self._fd: int | None = None
        self._name = ""
        self._held: set[Digest] = set()
        self._mutex = threading.Lock()  # the store is used from the loop and worker threads

    def hold(self, digests: Iterable[Digest]) -> None:
        new = [d for d in dict.fromkeys(digests) if d not in self._held]
        if not new:
            return
        with self._mutex:
            new = [d for d in new if d not in self._held]
            if not new:
                return
            if self._fd is None and self._store.lstat((), ".pypull") is None:
                return
            line = "".join(f"{d}\n" for d in new).encode()
            try:
                with gc_lock(self._store, shared=True):
                    if self._fd is None:
                        self._open()  # under gc.lock: prune never sees it unlocked
                    assert self._fd is not None
                    if os.write(self._fd, line) != len(line):  # a short write to a tiny file:
                        raise OSError(errno.ENOSPC, "no space left on device")  # a full disk
            except OSError as e:
                if self._fd is None and e.errno in READ_ONLY:
                    # A store we cannot write (a carried store on read-only media, someone
                    # else's): we only read it, and cannot stop its owner's prune anyway.
                    self._held = _Everything()
                    return
                raise store_error("record a lease in", self._store.root / ".pypull", e) from e
            self._held.update(new)

    def _open(self) -> None:
        dir_fd = self._store.open_dir(LEASES, create=True)
        try:
            fd, name = new_file(
                lambda: f"{os.getpid()}-{os.urandom(6).hex()}", os.O_WRONLY | os.O_APPEND, dir_fd
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else has it
            except BaseException:
                os.close(fd)
                with suppress(OSError):
                    os.unlink(name, dir_fd=dir_fd)
                raise
        except BaseException:
            os.close(dir_fd)
            raise
        self._dir_fd, self._fd, self._name = dir_fd, fd, name

    def release(self) -> None:
        with self._mutex:
            if self._fd is None or self._dir_fd is None:
                return
            with suppress(OSError):
                os.unlink(self._name, dir_fd=self._dir_fd)  # while still locked: never stale
            os.close(self._fd)
            os.close(self._dir_fd)
            self._fd = self._dir_fd = None
            self._held.clear()
