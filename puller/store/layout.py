"""The local store: an OCI image layout on disk.

    STORE/oci-layout            {"imageLayoutVersion": "1.0.0"}
    STORE/index.json            one entry per pulled reference (org.opencontainers.image.ref.name)
    STORE/blobs/sha256/<hex>    configs, manifests, layers: verified content only
    STORE/.pypull/ingest/       partial downloads (one per digest, resumable) and their locks,
                                renamed into blobs/ only after verification
    STORE/.pypull/index.lock    serialises read-modify-write of index.json between processes
    STORE/.pypull/leases/       one file per process using the store: the digests it relies on
    STORE/.pypull/gc.lock       taken shared to add to a lease, exclusively by ``pypull prune``

The only way into ``blobs/`` is ``BlobWriter.commit`` or ``put_bytes``, and both verify size and
digest first, so nothing unverified ever becomes visible. ``index.json`` is rewritten atomically
(temp file + rename) under an exclusive lock, so concurrent pulls cannot lose each other's entries.

A store can be shared (a group, setgid directories), so whoever else can write to it must not be
able to turn it against its owner. Hence:

* No link inside the store is ever followed. Every directory below the root is opened one
  component at a time with ``O_NOFOLLOW | O_DIRECTORY`` relative to the one above it, and every
  file is then opened, created, renamed and removed relative to that directory's descriptor, with
  ``O_NOFOLLOW``: a link at a name is an error or is replaced, never a way elsewhere. A directory
  of the store that is a link (``blobs/sha256``, ``.pypull/ingest``, ...) is refused with a
  one-line ``StoreError`` naming it. The root itself may be a link: the user chose that path.
* A link (or a dangling one) at a partial download or a lock is a name in pypull's own scratch
  directory that nothing but pypull writes, whose content pypull throws away freely (a lock file
  is removed on every release, a partial that fails to verify is dropped): it can only be a
  mistake or an attack, and holds nothing worth keeping. So the link itself is unlinked (which
  never touches what it points at) and a fresh regular file created in its place, and the pull
  goes on: refusing would let anyone who can write there stop every pull until someone cleans
  up by hand, and would protect nothing more. Anything else there that is not a regular file (a
  directory, a FIFO) is refused with an error naming it.
* ``index.json`` and ``oci-layout`` hold the store's content, so a link there is not repaired but
  refused when read (``pypull verify`` reports it). A link at a blob's path is not a blob:
  ``has()`` says no, and storing the blob replaces the link (a rename never follows one).
* Files are created 0666 and directories 0777, minus the umask, as other tools create them: the
  kernel applies the umask (or a directory's default ACL) at creation, so under umask 022 others
  can read the store and under 002 a group can share it, lock files included. Temporary files
  are made with ``O_CREAT | O_EXCL`` rather than ``mkstemp`` (which makes them 0600), so no
  ``fchmod`` and no reading of the process-global umask is needed.

Blobs that no image in ``index.json`` reaches are garbage to ``pypull prune``, yet a pull
relies on blobs before it tags them (a layer it found present, one it is downloading). So a
process using the store holds a *lease*, as containerd's clients do: a file in
``.pypull/leases/`` that it keeps ``flock``-ed for as long as it runs, listing every digest it
has asked about, read or written. It adds a digest before it looks (holding ``gc.lock`` shared);
prune holds ``gc.lock`` exclusively from reading the leases to its last deletion, so whatever a
pull saw present stays present until that pull ends, and a lease nobody holds any more (its
process died) is stale and removed.

Who can write to a shared store can still write wrong content into it, as with any shared
directory: ``pypull verify`` re-hashes every blob and reports that.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import IO, Any, BinaryIO

from ..errors import DigestMismatch, ManifestError, StoreError
from ..oci.digest import Digest, Verifier, verify_bytes
from ..oci.manifest import (
    MAX_MANIFEST_SIZE,
    REF_NAME_ANNOTATION,
    Descriptor,
    listed,
    parse_descriptor,
)

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
#: A lock file replaced this many times in a row while we try to take it is a bug, not a race.
_LOCK_RETRIES = 1000
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
#: Annotation on an index.json entry: the digest the reference resolved to (an index, when the
#: image is multi-platform; the entry itself points at the platform's manifest).
RESOLVED_ANNOTATION = "io.pypull.resolved.digest"


def default_store_path() -> Path:
    """``$PYPULL_STORE``, else ``$XDG_DATA_HOME/pypull``, else ``~/.local/share/pypull``."""
    env = os.environ.get("PYPULL_STORE")
    if env:
        return Path(env).expanduser()
    xdg = os.path.expanduser(os.environ.get("XDG_DATA_HOME", ""))
    # The XDG spec: a relative path is invalid and must be ignored.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "pypull"


def as_store(store: Store | str | os.PathLike[str] | None) -> Store:
    """What the API's ``store=`` arguments take: a Store, a path, or None for the default."""
    if isinstance(store, Store):
        return store
    return Store(default_store_path() if store is None else store)


def _store_error(action: str, path: Path, e: OSError) -> StoreError:
    reason = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        reason = "no space left on device"
    return StoreError(f"cannot {action} {path}: {reason}", path=str(path))


#: Dirty data handed to the disk while a download runs, so that the fsync before the rename
#: waits only for the tail: on a 1 GB write, fsync at the end took 0.3-0.4 s; started every
#: 32 MiB it took 0.01 s, and the writes themselves were no slower.
WRITEBACK_STEP = 32 << 20
_SYNC_FILE_RANGE_WRITE = 2
_sync_file_range: Any = None


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """``sync_file_range(SYNC_FILE_RANGE_WRITE)``: start writing a range out, without waiting.
    Linux only (via libc); elsewhere the final fsync does all of it."""
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
    if _sync_file_range:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)  # a hint: errors ignored


#: Files are created 0666 and directories 0777; the kernel takes off the umask (or applies the
#: directory's default ACL), as for every other tool's files.
FILE_MODE = 0o666
DIR_MODE = 0o777
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
#: Every open of a file in the store. O_NONBLOCK: a FIFO planted at a file's name must not hang
#: the open; it is then refused as not a regular file (on a regular file the flag does nothing).
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
_INGEST = (".pypull", "ingest")
_LEASES = (".pypull", "leases")
GC_LOCK = "gc.lock"
#: A scratch name that is a link again after we removed one this many times in a row is an attack.
_LINK_RETRIES = 10


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


def _lexists(dir_fd: int, name: str) -> bool:
    """Whether ``name`` exists in ``dir_fd`` (a link counts as existing: it is not followed)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


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


def _open_regular(dir_fd: int, name: str, path: Path, flags: int) -> int:
    """Open the regular file ``name`` of ``dir_fd``; a link there is an error, never followed."""
    try:
        fd = os.open(name, flags | _FILE_FLAGS, FILE_MODE, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:  # O_NOFOLLOW met a link at the last (and only) component
            raise _link_error(path) from None
        raise
    return _check_regular(fd, path)


def _open_scratch(dir_fd: int, name: str, path: Path) -> int:
    """Open (creating it if need be) a partial download or a lock file, read-write.

    A link at the name was not made by pypull (see the module's docstring): the link itself is
    unlinked, never what it points at, and a regular file is created in its place.
    """
    for _ in range(_LINK_RETRIES):
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | _FILE_FLAGS, FILE_MODE, dir_fd=dir_fd)
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
    flags |= os.O_CREAT | os.O_EXCL | _FILE_FLAGS
    for _ in range(100):
        name = name_of()
        try:
            return os.open(name, flags, FILE_MODE, dir_fd=dir_fd), name
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no free name for a new file")


def _write_all(file: IO[bytes], chunk: bytes | memoryview, path: Path) -> None:
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
        raise _store_error("write", path, e) from e


class BlobLock:
    """One digest's download, locked across processes (``flock`` on ``ingest/<digest>.lock``).

    The lock file is removed on release, so a waiter that locked a file which has since been
    unlinked must notice and lock the new one: ``try_acquire`` compares inodes for that.
    """

    def __init__(self, store: Store, path: Path) -> None:
        self.path = path
        self._store = store
        self._fd: int | None = None
        self._dir_fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never blocks."""
        name = self.path.name
        try:
            dir_fd = self._store._open_dir(_INGEST, create=True)
            try:
                for _ in range(_LOCK_RETRIES):
                    fd = _open_scratch(dir_fd, name, self.path)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        held = os.fstat(fd)
                        try:
                            now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                            same = (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
                        except FileNotFoundError:
                            same = False
                    except BlockingIOError:
                        os.close(fd)
                        return False
                    except BaseException:
                        os.close(fd)
                        raise
                    if same:
                        self._fd, self._dir_fd = fd, dir_fd
                        return True
                    os.close(fd)  # the holder released and removed it meanwhile: lock the new one
            finally:
                if self._dir_fd != dir_fd:
                    os.close(dir_fd)
        except OSError as e:
            raise _store_error("lock", self.path, e) from e
        raise StoreError(f"cannot lock {self.path}: it keeps being replaced", path=str(self.path))

    def release(self) -> None:
        if self._fd is None or self._dir_fd is None:
            return
        try:
            os.unlink(self.path.name, dir_fd=self._dir_fd)  # while still holding it: see above
        except OSError:
            pass  # gone already, or not ours to remove: the next holder's inode check copes
        finally:
            os.close(self._fd)
            os.close(self._dir_fd)
            self._fd = self._dir_fd = None


class BlobWriter:
    """A partial download at ``ingest/<algorithm>-<hex>.partial`` that becomes a blob only if it
    verifies. Only the holder of the digest's ``BlobLock`` may open one.

    An existing partial (from an interrupted run) is kept and re-hashed, so the download can
    resume where it stopped; ``offset`` says how many bytes that is. A link at the partial's name
    is removed and the download starts from zero (see the module's docstring).

    Blocking by design: ``write`` hashes and writes in one call, meant for a worker thread, so the
    event loop never waits on hashing or the disk.
    """

    def __init__(
        self, store: Store, digest: Digest, size: int | None, where: str = "", resume: bool = True
    ) -> None:
        self._store = store
        self.digest = digest
        self._expected_size = size
        self._where = where
        self._verifier = Verifier(digest, size, where)
        self.path = store.partial_path(digest)
        try:
            store.ensure_layout()
            # Held until the file is closed: the rename into blobs/ names the partial in the
            # very directory it was opened in.
            self._dir_fd: int | None = store._open_dir(_INGEST, create=True)
            try:
                fd = _open_scratch(self._dir_fd, self.path.name, self.path)
            except BaseException:
                self._close_dir()
                raise
        except OSError as e:
            raise _store_error("write to", store.ingest_dir, e) from e
        self._file: IO[bytes] = os.fdopen(fd, "r+b", buffering=0)
        try:
            if resume:
                self._rehash()
            else:
                self.restart()
        except BaseException:
            self._file.close()
            self._close_dir()
            raise
        self.offset = self._verifier.size
        self._written_back = self.offset

    def _close_dir(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def _rehash(self) -> None:
        """Feed what is already on disk through the verifier; a partial longer than the blob is
        garbage and starts over."""
        try:
            self._file.seek(0)
            while chunk := self._file.read(1 << 20):
                if self._expected_size is not None and (
                    self._verifier.size + len(chunk) > self._expected_size
                ):
                    self.restart()
                    return
                self._verifier.update(chunk)
        except OSError as e:
            raise _store_error("read", self.path, e) from e

    def restart(self) -> None:
        """Drop what was received so far (a server that ignored Range sends the whole blob)."""
        try:
            self._file.seek(0)
            self._file.truncate()
        except OSError as e:
            raise _store_error("write", self.path, e) from e
        self._verifier = Verifier(self.digest, self._expected_size, self._where)
        self._written_back = 0

    @property
    def size(self) -> int:
        return self._verifier.size

    def write(self, chunk: bytes | memoryview) -> None:
        self._verifier.update(chunk)  # raises SizeMismatch as soon as the body runs long
        _write_all(self._file, chunk, self.path)
        if self._verifier.size - self._written_back >= WRITEBACK_STEP:
            _start_writeback(
                self._file.fileno(), self._written_back, self._verifier.size - self._written_back
            )
            self._written_back = self._verifier.size

    def commit(self, durable: bool = True) -> Path:
        """Verify, fsync, rename into ``blobs/`` (``Store._place``); a partial that fails to
        verify is removed."""
        try:
            self._verifier.verify()
            target = self._store.blob_path(self.digest)
            try:
                on_disk = os.fstat(self._file.fileno()).st_size
                if (
                    on_disk != self._verifier.size
                ):  # belt and braces: what we hashed is what we have
                    raise OSError(
                        errno.EIO, f"{on_disk} bytes on disk, {self._verifier.size} received"
                    )
                self._store._place(self._file, self._dir_fd, self.path.name, self.digest, durable)
            except OSError as e:
                raise _store_error("store blob", target, e) from e
            self._close_dir()
            return target
        except BaseException:
            self.abort()
            raise

    def close(self) -> None:
        """Keep the partial for a later resume (unless nothing was received)."""
        with suppress(OSError):
            self._file.close()
        if self._verifier.size == 0:
            self._unlink()
        self._close_dir()

    def abort(self) -> None:
        """Remove the partial: its content is wrong, or the disk is full."""
        with suppress(OSError):
            self._file.close()
        self._unlink()
        self._close_dir()

    def _unlink(self) -> None:
        if self._dir_fd is not None:
            with suppress(FileNotFoundError):
                os.unlink(self.path.name, dir_fd=self._dir_fd)
            return
        with suppress(FileNotFoundError, StoreError), self._store._dir(_INGEST) as ingest:
            os.unlink(self.path.name, dir_fd=ingest)


class StagedBlob:
    """Content whose digest is known only once all of it has been read (a layer of an archive
    given to ``pypull load``, named by a path, not a digest): written to a fresh scratch file of
    ``ingest/``, hashed as it goes, and renamed into ``blobs/`` by ``commit`` under the digest
    its bytes have, so what lands there is verified by construction. ``expected`` (a name
    that claims a digest) makes any other digest an error. No ``BlobLock`` is needed, as for
    ``put_bytes``: the name is unique, and writers of one digest write the same bytes.

    Blocking, as ``BlobWriter`` is. Use it as a context manager: leaving without ``commit``
    removes the scratch file.
    """

    def __init__(self, store: Store, expected: Digest | None = None, where: str = "") -> None:
        self._store = store
        self.expected = expected
        self._where = where
        self._hash = expected.hasher() if expected else hashlib.sha256()
        self.size = 0
        self.digest: Digest | None = None
        store.ensure_layout()
        try:
            self._dir_fd: int | None = store._open_dir(_INGEST, create=True)
            fd, self.name = new_file(  # hidden: a temporary, no download
                lambda: f".staged-{os.urandom(8).hex()}", os.O_RDWR, self._dir_fd
            )
        except OSError as e:
            self._close_dir()
            raise _store_error("write to", store.ingest_dir, e) from e
        self._file: IO[bytes] = os.fdopen(fd, "wb", buffering=0)

    def __enter__(self) -> StagedBlob:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._dir_fd is not None:
            self.abort()

    def _close_dir(self) -> None:
        if getattr(self, "_dir_fd", None) is not None:
            assert self._dir_fd is not None
            os.close(self._dir_fd)
            self._dir_fd = None

    def write(self, chunk: bytes | memoryview) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)
        _write_all(self._file, chunk, self._store.ingest_dir / self.name)

    def content_digest(self) -> Digest:
        """The digest of what was written so far."""
        algorithm = self.expected.algorithm if self.expected else "sha256"
        return Digest(algorithm, self._hash.copy().hexdigest())

    def commit(self) -> Digest:
        """Name the content by its digest in ``blobs/`` (checked against ``expected``)."""
        try:
            got = self.content_digest()
            if self.expected is not None and got != self.expected:
                at = f" from {self._where}" if self._where else ""
                raise DigestMismatch(
                    f"digest mismatch for {self.expected}{at}: got {got}",
                    expected=str(self.expected),
                    got=str(got),
                    url=self._where,
                )
            self._store._hold(got)  # before it is visible: a prune must not take it
            target = self._store.blob_path(got)
            try:
                self._store._place(self._file, self._dir_fd, self.name, got)
            except OSError as e:
                raise _store_error("store blob", target, e) from e
            self._close_dir()
            self.digest = got
            return got
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        with suppress(OSError):
            self._file.close()
        if self._dir_fd is not None:
            with suppress(OSError):
                os.unlink(self.name, dir_fd=self._dir_fd)
        self._close_dir()


#: A lease that cannot be created for these reasons is done without: see ``_Lease.hold``.
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


class _Everything(set[Digest]):
    """The held set of a lease that could not be made: asks nothing more."""

    def __contains__(self, item: object) -> bool:
        return True


class _Lease:
    """What one ``Store`` object relies on (see the module's docstring): ``leases/<pid>-<hex>``,
    a digest a line, locked by us from creation until ``release``. Created on the first digest
    held in a store that exists: a store that is not there has nothing to protect."""

    def __init__(self, store: Store) -> None:
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
            if self._fd is None and self._store._lstat((), ".pypull") is None:
                return
            line = "".join(f"{d}\n" for d in new).encode()
            try:
                with self._store._gc_lock(shared=True):
                    if self._fd is None:
                        self._open()  # under gc.lock: prune never sees it unlocked
                    assert self._fd is not None
                    if os.write(self._fd, line) != len(line):  # a short write to a tiny file:
                        raise OSError(errno.ENOSPC, "no space left on device")  # a full disk
            except OSError as e:
                if self._fd is None and e.errno in _READ_ONLY:
                    # A store we cannot write (a carried store on read-only media, someone
                    # else's): we only read it, and cannot stop its owner's prune anyway.
                    self._held = _Everything()
                    return
                raise _store_error("record a lease in", self._store.root / ".pypull", e) from e
            self._held.update(new)

    def _open(self) -> None:
        dir_fd = self._store._open_dir(_LEASES, create=True)
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


class Store:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs"
        self.ingest_dir = self.root / ".pypull" / "ingest"
        self.index_path = self.root / "index.json"
        self._lock_path = self.root / ".pypull" / "index.lock"
        self._layout_ready = False
        self._lease: _Lease | None = None
        self._lease_users = 0
        self._lease_mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- directories, never through a link ------------------------------------------------------

    def _open_dir(self, parts: tuple[str, ...], create: bool = False) -> int:
        """A descriptor of ``root/parts...``, each part opened relative to the one above with
        ``O_NOFOLLOW``, so none can be a link (``StoreError`` naming it if one is); created
        (0777 minus the umask) if missing and ``create``. The root itself may be a link."""
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
        path = self.root
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

    def _place(
        self, file: IO[bytes], dir_fd: int | None, name: str, digest: Digest, durable: bool = True
    ) -> None:
        """Close the verified temporary ``name`` (in the directory ``dir_fd``) and rename it into
        ``blobs/`` as ``digest``; ``durable``: fsync the file before and the directory after.

        The rename goes to the descriptor of ``blobs/<algorithm>``, opened without following
        links, and a rename replaces a link at its target name rather than following it: the
        blob cannot land anywhere but in the store."""
        if durable:
            os.fsync(file.fileno())
        file.close()
        if dir_fd is None:
            raise OSError(errno.EBADF, "the temporary file's directory was closed")
        with self._dir(("blobs", digest.algorithm), create=True) as blobs:
            os.replace(name, self.blob_path(digest).name, src_dir_fd=dir_fd, dst_dir_fd=blobs)
            if durable:
                os.fsync(blobs)

    @contextmanager
    def _dir(self, parts: tuple[str, ...], create: bool = False) -> Iterator[int]:
        fd = self._open_dir(parts, create)
        try:
            yield fd
        finally:
            os.close(fd)

    # -- layout -----------------------------------------------------------------------------------

    def ensure_layout(self) -> None:
        """Create the layout on first write: a failed pull of a bad reference leaves no store."""
        if self._layout_ready:
            return
        try:
            for parts in (("blobs", "sha256"), _INGEST):
                os.close(self._open_dir(parts, create=True))
            with self._dir(()) as root:
                if not _lexists(root, "oci-layout"):
                    _atomic_write(root, "oci-layout", json.dumps(OCI_LAYOUT).encode())
                if not _lexists(root, self.index_path.name):
                    with self._index_lock():
                        if not _lexists(root, self.index_path.name):
                            self._write_index([])
        except OSError as e:
            raise _store_error("create store at", self.root, e) from e
        self._layout_ready = True

    # -- leases (see the module's docstring) ------------------------------------------------------

    @contextmanager
    def lease(self) -> Iterator[None]:
        """While held (re-entrant), every blob this object asks about, reads or writes stays in
        the store, whatever a concurrent ``pypull prune`` decides, until the last holder
        leaves. A ``Puller`` holds one for its lifetime."""
        with self._lease_mutex:
            if self._lease is None:
                self._lease = _Lease(self)
            self._lease_users += 1
        try:
            yield
        finally:
            with self._lease_mutex:
                self._lease_users -= 1
                if not self._lease_users and self._lease is not None:
                    self._lease.release()
                    self._lease = None

    def _hold(self, *digests: Digest) -> None:
        lease = self._lease
        if lease is not None:
            lease.hold(digests)

    @contextmanager
    def unpruned(self) -> Iterator[None]:
        """While held, no ``pypull prune`` deletes anything here: ``gc.lock`` is held shared,
        and a prune holds it exclusive from its first read to its last unlink, so it waits.
        For reading the whole store as of one moment (``verify``), where a lease per blob would
        be a line per blob. Nothing is created: a store without ``.pypull/`` has had no prune
        (a first one, started now, is not waited for). A store we cannot write gets nothing,
        its owner's prune not being ours to stop; nor does one whose ``.pypull/`` or
        ``gc.lock`` is a link or no regular file, which no prune gets past either."""
        with ExitStack() as stack:
            st = self._lstat((), ".pypull")
            if st is not None and stat.S_ISDIR(st.st_mode):
                try:
                    stack.enter_context(self._gc_lock(shared=True))
                except StoreError:
                    pass
                except OSError as e:
                    if e.errno not in _READ_ONLY:
                        raise _store_error("lock", self.root / ".pypull" / GC_LOCK, e) from e
            yield

    @contextmanager
    def _gc_lock(self, shared: bool) -> Iterator[None]:
        """``gc.lock``: shared to add to a lease, exclusive to prune."""
        path = self.root / ".pypull" / GC_LOCK
        with self._dir((".pypull",), create=not shared) as pypull:
            fd = _open_scratch(pypull, GC_LOCK, path)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- blobs -----------------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        # Digest validated algorithm and hex on parse, so this cannot escape blobs/.
        return self.blobs_dir / digest.algorithm / digest.hex

    def _lstat(self, parts: tuple[str, ...], name: str) -> os.stat_result | None:
        """``lstat`` of ``root/parts.../name`` through no link; None if it cannot be had."""
        try:
            with self._dir(parts) as fd:
                return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except (OSError, StoreError):
            return None

    def has(self, digest: Digest) -> bool:
        """Whether the blob is stored: a regular file, reached through no link (a link at its
        name, or at a directory above it, is not a blob). Under a lease, the answer holds."""
        self._hold(digest)
        st = self._lstat(("blobs", digest.algorithm), digest.hex)
        return st is not None and stat.S_ISREG(st.st_mode)

    def partial_path(self, digest: Digest) -> Path:
        return self.ingest_dir / f"{digest.algorithm}-{digest.hex}.partial"

    def partial_size(self, digest: Digest) -> int:
        """Bytes of ``digest`` kept from an interrupted download (0 if none)."""
        st = self._lstat(_INGEST, self.partial_path(digest).name)
        return st.st_size if st is not None and stat.S_ISREG(st.st_mode) else 0

    def blob_lock(self, digest: Digest) -> BlobLock:
        self.ensure_layout()
        return BlobLock(self, self.ingest_dir / f"{digest.algorithm}-{digest.hex}.lock")

    def writer(
        self, digest: Digest, size: int | None, where: str = "", resume: bool = True
    ) -> BlobWriter:
        self.ensure_layout()
        self._hold(digest)  # before the blob exists: a prune must not take it once it does
        return BlobWriter(self, digest, size, where, resume)

    def put_bytes(self, digest: Digest, data: bytes, where: str = "") -> None:
        """Store small content (a manifest) held in memory, verified like any download.

        Written through a unique temporary file, so no lock is needed: concurrent writers of the
        same digest write the same bytes and the last rename wins.
        """
        if self.has(digest):
            return
        verify_bytes(data, digest, len(data), where)  # before the layout is created, not after
        self.ensure_layout()
        self._hold(digest)
        target = self.blob_path(digest)
        try:
            with (
                self._dir(("blobs", digest.algorithm), create=True) as blobs,
                self._dir(_INGEST, create=True) as ingest,
            ):
                _atomic_write(blobs, target.name, data, tmp_dir_fd=ingest)
        except OSError as e:
            raise _store_error("store blob", target, e) from e

    def open_blob(self, digest: Digest) -> BinaryIO:
        """The blob's file for reading: a regular file, reached through no link."""
        self._hold(digest)
        path = self.blob_path(digest)
        try:
            with self._dir(("blobs", digest.algorithm)) as blobs:
                fd = _open_regular(blobs, digest.hex, path, os.O_RDONLY)
            return os.fdopen(fd, "rb")
        except OSError as e:
            raise _store_error("read", path, e) from e

    def read_blob(self, digest: Digest, limit: int = -1) -> bytes:
        """The blob's bytes (at most ``limit`` of them, when given)."""
        with self.open_blob(digest) as f:
            try:
                return f.read(limit)
            except OSError as e:
                raise _store_error("read", self.blob_path(digest), e) from e

    def read_manifest(self, digest: Digest, size: int | None = None) -> bytes:
        """The manifest ``digest``, verified (and of ``size`` bytes, when given): a file in the
        store may have been written by someone else, so it is read to at most
        ``MAX_MANIFEST_SIZE`` and checked before anyone parses it."""
        path = self.blob_path(digest)
        raw = self.read_blob(digest, MAX_MANIFEST_SIZE + 1)
        if len(raw) > MAX_MANIFEST_SIZE:
            raise ManifestError(f"{path}: a manifest over {MAX_MANIFEST_SIZE >> 20} MiB")
        verify_bytes(raw, digest, size, str(path))
        if self._lease is not None:
            # Whoever reads a manifest goes on to what it lists (unpack, save, push): held from
            # now, those stay even if the image is removed and pruned while they are read.
            try:
                doc = json.loads(raw)
            except (ValueError, RecursionError):
                doc = None
            if isinstance(doc, dict):
                self._hold(*(d for d, _ in listed(doc)))
        return raw

    # -- index.json -------------------------------------------------------------------------------

    @contextmanager
    def _index_lock(self) -> Iterator[None]:
        with self._dir((".pypull",), create=True) as pypull:
            fd = _open_scratch(pypull, self._lock_path.name, self._lock_path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _read_index_doc(self) -> dict[str, Any]:
        try:
            with self._dir(()) as root:
                fd = _open_regular(root, self.index_path.name, self.index_path, os.O_RDONLY)
            with os.fdopen(fd, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
        except OSError as e:
            raise _store_error("read", self.index_path, e) from e
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise StoreError(
                f"{self.index_path} is not valid JSON: {e}", path=str(self.index_path)
            ) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
            raise StoreError(f"{self.index_path} has no manifests list", path=str(self.index_path))
        return doc

    def _write_index(self, manifests: list[dict[str, Any]]) -> None:
        doc = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests}
        with self._dir(()) as root:
            _atomic_write(root, self.index_path.name, json.dumps(doc, indent=2).encode() + b"\n")

    def entries(self) -> list[Descriptor]:
        """The index.json entries, skipping any we cannot parse (another tool may have added it)."""
        out = []
        for i, e in enumerate(self._read_index_doc()["manifests"]):
            try:
                out.append(parse_descriptor(e, f"{self.index_path} entry {i}"))
            except ManifestError:
                continue
        return out

    def lookup(self, name: str) -> Descriptor | None:
        for d in self.entries():
            if d.annotations.get(REF_NAME_ANNOTATION) == name:
                return d
        return None

    def tag(self, name: str, descriptor: Descriptor) -> None:
        """Point ``name`` at ``descriptor`` in index.json, replacing what it pointed at."""
        self.ensure_layout()
        entry = descriptor.to_json()
        entry.setdefault("annotations", {})[REF_NAME_ANNOTATION] = name
        self._rewrite_index(name, entry)

    def tag_many(self, named: list[tuple[str, Descriptor]]) -> None:
        """``tag`` for each pair, in one rewrite of index.json: all of the names or none (an
        archive's images), and the time of one rewrite, not of one per name."""
        self.ensure_layout()
        entries: dict[str, dict[str, Any]] = {}
        for name, descriptor in named:
            entry = descriptor.to_json()
            entry.setdefault("annotations", {})[REF_NAME_ANNOTATION] = name
            entries.pop(name, None)  # the last one given wins, as with tag() in turn
            entries[name] = entry
        try:
            with self._index_lock():
                doc = self._read_index_doc()
                kept = [
                    e
                    for e in doc["manifests"]
                    if not (isinstance(ref := _ref_name(e), str) and ref in entries)
                ]
                self._write_index([*kept, *entries.values()])
        except OSError as e:
            raise _store_error("update", self.index_path, e) from e

    def untag(self, name: str) -> bool:
        """Remove ``name`` from index.json (its blobs stay until a prune); False if it was not
        there. A store that does not exist is left so."""
        if self._lstat((), self.index_path.name) is None:
            return False
        return self._rewrite_index(name, None)

    def _rewrite_index(self, name: str, entry: dict[str, Any] | None) -> bool:
        """Drop the entries named ``name`` and add ``entry``, under the index lock; whether
        any was dropped."""
        try:
            with self._index_lock():
                doc = self._read_index_doc()
                kept = [e for e in doc["manifests"] if _ref_name(e) != name]
                dropped = len(kept) != len(doc["manifests"])
                if entry is not None:
                    kept.append(entry)
                if dropped or entry is not None:
                    self._write_index(kept)
                return dropped
        except OSError as e:
            raise _store_error("update", self.index_path, e) from e


def _ref_name(entry: object) -> object:
    """An index.json entry's reference name, if it has one (other tools' entries may not)."""
    if isinstance(entry, dict) and isinstance(entry.get("annotations"), dict):
        return entry["annotations"].get(REF_NAME_ANNOTATION)
    return None


def _atomic_write(dir_fd: int, name: str, data: bytes, tmp_dir_fd: int | None = None) -> None:
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
