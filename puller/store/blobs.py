"""Blobs coming into the store: a download's lock and partial file (``BlobLock``,
``BlobWriter``), and the one rename into ``blobs/`` (``place``) they and an archive's
content (``staging.Staging``) all end in, after verification.

Partial downloads and scratch files live in ``.pypull/ingest/`` (``INGEST``); nothing
unverified is ever renamed into ``blobs/`` (see ``puller.store.layout``'s docstring).
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import suppress
from pathlib import Path
from typing import IO, Protocol

from ..errors import StoreError
from ..oci.digest import Digest, Verifier
from .files import StoreDirs, WriteBehind, open_scratch, store_error, write_all

#: Partial downloads, their locks, and scratch files, below the store's root.
INGEST = (".pypull", "ingest")
#: A lock file replaced this many times in a row while we try to take it is a bug, not a race.
_LOCK_RETRIES = 1000


class BlobStore(StoreDirs, Protocol):
    """What a blob coming in uses of its store (``puller.store.layout.Store``)."""

    @property
    def ingest_dir(self) -> Path: ...

    def ensure_layout(self) -> None: ...

    def blob_path(self, digest: Digest) -> Path: ...

    def partial_path(self, digest: Digest) -> Path: ...

    def hold(self, *digests: Digest) -> None: ...


class BlobLock:
    """One digest's download, locked across processes (``flock`` on ``ingest/<digest>.lock``).

    The lock file is removed on release, so a waiter that locked a file which has since been
    unlinked must notice and lock the new one: ``try_acquire`` compares inodes for that.

    The holder writes its pid into the file, for a waiter to name (``holder``): a hint for
    people only, never trusted for anything else.
    """

    def __init__(self, store: BlobStore, path: Path) -> None:
        self.path = path
        #: After a ``try_acquire`` that failed: the pid the holder wrote, if any.
        self.holder: int | None = None
        self._store = store
        self._fd: int | None = None
        self._dir_fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never blocks."""
        name = self.path.name
        try:
            dir_fd = self._store.open_dir(INGEST, create=True)
            try:
                for _ in range(_LOCK_RETRIES):
                    fd = open_scratch(dir_fd, name, self.path)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        held = os.fstat(fd)
                        try:
                            now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                            same = (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
                        except FileNotFoundError:
                            same = False
                    except BlockingIOError:
                        self.holder = _pid_in(fd)
                        os.close(fd)
                        return False
                    except BaseException:
                        os.close(fd)
                        raise
                    if same:
                        self._fd, self._dir_fd = fd, dir_fd
                        _write_pid(fd)
                        return True
                    os.close(fd)  # the holder released and removed it meanwhile: lock the new one
            finally:
                if self._dir_fd != dir_fd:
                    os.close(dir_fd)
        except OSError as e:
            raise store_error("lock", self.path, e) from e
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


def _write_pid(fd: int) -> None:
    """Our pid in the lock file we hold, for a waiting process to show."""
    with suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _pid_in(fd: int) -> int | None:
    """The pid a lock file's holder wrote into it; None if none is there (yet)."""
    try:
        text = os.pread(fd, 16, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and 0 < int(text) < 1 << 31 else None


class BlobWriter:
    """A partial download at ``ingest/<algorithm>-<hex>.partial`` that becomes a blob only if it
    verifies. Only the holder of the digest's ``BlobLock`` may open one.

    An existing partial (from an interrupted run) is kept and re-hashed, so the download can
    resume where it stopped; ``offset`` says how many bytes that is. A link at the partial's name
    is removed and the download starts from zero (see ``layout``'s docstring).

    Blocking by design: ``write`` hashes and writes in one call, meant for a worker thread, so the
    event loop never waits on hashing or the disk.
    """

    def __init__(
        self,
        store: BlobStore,
        digest: Digest,
        size: int | None,
        where: str = "",
        resume: bool = True,
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
            self._dir_fd: int | None = store.open_dir(INGEST, create=True)
            try:
                fd = open_scratch(self._dir_fd, self.path.name, self.path)
            except BaseException:
                self._close_dir()
                raise
        except OSError as e:
            raise store_error("write to", store.ingest_dir, e) from e
        self._file: IO[bytes] = os.fdopen(fd, "r+b", buffering=0)
        self._behind = WriteBehind(fd)
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
        self._behind.reset(self.offset)

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
            raise store_error("read", self.path, e) from e

    def restart(self) -> None:
        """Drop what was received so far (a server that ignored Range sends the whole blob)."""
        try:
            self._file.seek(0)
            self._file.truncate()
        except OSError as e:
            raise store_error("write", self.path, e) from e
        self._verifier = Verifier(self.digest, self._expected_size, self._where)
        self._behind.reset(0)

    @property
    def size(self) -> int:
        return self._verifier.size

    def write(self, chunk: bytes | memoryview) -> None:
        self._verifier.update(chunk)  # raises SizeMismatch as soon as the body runs long
        write_all(self._file, chunk, self.path)
        try:
            self._behind.wrote(self._verifier.size)
        except OSError as e:  # the disk failed to take what was written
            raise store_error("write", self.path, e) from e

    def commit(self, durable: bool = True) -> Path:
        """Verify, fsync, rename into ``blobs/`` (``place``); a partial that fails to
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
                place(self._store, self._file, self._dir_fd, self.path.name, self.digest, durable)
            except OSError as e:
                raise store_error("store blob", target, e) from e
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
        with suppress(FileNotFoundError, StoreError), self._store.directory(INGEST) as ingest:
            os.unlink(self.path.name, dir_fd=ingest)


def place(
    store: BlobStore,
    file: IO[bytes],
    dir_fd: int | None,
    name: str,
    digest: Digest,
    durable: bool = True,
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
    with store.directory(("blobs", digest.algorithm), create=True) as blobs:
        os.replace(name, store.blob_path(digest).name, src_dir_fd=dir_fd, dst_dir_fd=blobs)
        if durable:
            os.fsync(blobs)
