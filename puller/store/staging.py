"""An archive's content on its way into the store (``pypull load``): staged out of sight,
checked, and committed whole or not at all (``Staging``)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO, Protocol

from ..errors import DigestMismatch, StoreError
from ..oci.digest import Digest
from ..oci.manifest import MAX_MANIFEST_SIZE, checked_manifest
from .blobs import INGEST, BlobStore, place
from .files import new_file, open_regular, store_error, write_all

__all__ = ["Staging", "StagingStore"]


class StagingStore(BlobStore, Protocol):
    """What ``Staging`` reads through to when a blob is not staged (``layout.Store``)."""

    @property
    def root(self) -> Path: ...

    def has(self, digest: Digest) -> bool: ...

    def open_blob(self, digest: Digest) -> BinaryIO: ...

    def read_manifest(self, digest: Digest, size: int | None = None) -> bytes: ...


class Staging:
    """What an archive brings (``pypull load``), each blob named by its digest only once
    read: hashed as it is written to a hidden scratch file of ``ingest/`` (``add``), and kept
    there, out of sight, until the whole archive is read and its images checked; ``commit``
    then renames what they need into ``blobs/``. Leaving the ``with`` block removes every
    scratch file not committed, whatever ended it (an error, Ctrl-C): a failed load leaves
    nothing of the archive in the store. Reads (``has``, ``open_blob``, ``read_manifest``...)
    see the staged blobs first, then the store's, so the images are checked before anything
    is committed. No ``BlobLock`` is needed, as for ``put_bytes``: the names are unique, and
    writers of one digest write the same bytes.

    ``pypull prune`` removes a hidden scratch file untouched for an hour (a killed process's):
    ``touch`` keeps a long load's files fresh. Blocking, as ``BlobWriter`` is.
    """

    #: Seconds between two ``touch``es that touch the files again.
    TOUCH_EVERY = 600.0

    def __init__(self, store: StagingStore) -> None:
        self._store = store
        #: digest -> (scratch name, size)
        self.staged: dict[Digest, tuple[str, int]] = {}
        self._touched = time.monotonic()
        store.ensure_layout()
        try:
            self._dir_fd: int | None = store.open_dir(INGEST, create=True)
        except OSError as e:
            raise store_error("write to", store.ingest_dir, e) from e

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def root(self) -> Path:
        return self._store.root

    def _dir(self) -> int:
        if self._dir_fd is None:
            raise StoreError("a load's staging was used after it closed")
        return self._dir_fd

    def add(
        self, chunks: Iterable[bytes], expected: Digest | None, where: str, size: int | None = None
    ) -> Digest:
        """Stage ``chunks``; their digest (which must be ``expected``, when given). ``size``,
        when known before a byte is read (a member's header says it), must fit in the space
        the store's disk has left: what cannot be staged whole is refused unwritten, rather
        than filling the disk first (a gzip of a few MB can claim a terabyte of zeros, and an
        index can declare that size)."""
        if size is not None:
            self._room(size, where)
        hasher = expected.hasher() if expected else hashlib.sha256()
        try:
            fd, name = new_file(lambda: f".staged-{os.urandom(8).hex()}", os.O_WRONLY, self._dir())
        except OSError as e:
            raise store_error("write to", self._store.ingest_dir, e) from e
        size = 0
        try:
            with os.fdopen(fd, "wb", buffering=0) as f:
                for chunk in chunks:
                    self.touch()  # one long member: what was staged before it is in use
                    hasher.update(chunk)
                    size += len(chunk)
                    write_all(f, chunk, self._store.ingest_dir / name)
            got = Digest(expected.algorithm if expected else "sha256", hasher.hexdigest())
            if expected is not None and got != expected:
                raise DigestMismatch(
                    f"digest mismatch for {expected} from {where}: got {got}",
                    expected=str(expected),
                    got=str(got),
                    url=where,
                )
        except BaseException:
            with suppress(OSError):
                os.unlink(name, dir_fd=self._dir())
            raise
        if got in self.staged:  # the same content twice: one copy is enough
            with suppress(OSError):
                os.unlink(name, dir_fd=self._dir())
        else:
            self.staged[got] = (name, size)
        return got

    def _room(self, size: int, where: str) -> None:
        try:
            st = os.fstatvfs(self._dir())
        except OSError:
            return  # a file system that cannot say: the write's own ENOSPC still stops it
        free = st.f_bavail * st.f_frsize
        if size > free:
            raise StoreError(
                f"{where} is {size} bytes; the store's disk has {free} bytes free: not loaded",
                path=str(self._store.ingest_dir),
            )

    def put_bytes(self, digest: Digest, data: bytes, where: str = "") -> None:
        """Stage small content held in memory (a manifest made here)."""
        if not self.has(digest):
            self.add([data], digest, where)

    def size(self, digest: Digest) -> int:
        """A staged blob's size, or the store's blob's."""
        if digest in self.staged:
            return self.staged[digest][1]
        with self._store.open_blob(digest) as f:
            return os.fstat(f.fileno()).st_size

    def has(self, digest: Digest) -> bool:
        return digest in self.staged or self._store.has(digest)

    def blob_path(self, digest: Digest) -> Path:
        if digest in self.staged:
            return self._store.ingest_dir / self.staged[digest][0]
        return self._store.blob_path(digest)

    def open_blob(self, digest: Digest) -> BinaryIO:
        if digest not in self.staged:
            return self._store.open_blob(digest)
        path = self.blob_path(digest)
        try:
            fd = open_regular(self._dir(), path.name, path, os.O_RDONLY)
        except OSError as e:
            raise store_error("read", path, e) from e
        return os.fdopen(fd, "rb")

    def read_blob(self, digest: Digest, limit: int = -1) -> bytes:
        with self.open_blob(digest) as f:
            try:
                return f.read(limit)
            except OSError as e:
                raise store_error("read", self.blob_path(digest), e) from e

    def read_manifest(self, digest: Digest, size: int | None = None) -> bytes:
        """As ``Store.read_manifest``: bounded and verified, a staged one too."""
        if digest not in self.staged:
            return self._store.read_manifest(digest, size)
        raw = self.read_blob(digest, MAX_MANIFEST_SIZE + 1)
        return checked_manifest(raw, digest, size, str(self.blob_path(digest)))

    def touch(self) -> None:
        """Mark the scratch files as in use (see the class's docstring), now and then."""
        now = time.monotonic()
        if now - self._touched < self.TOUCH_EVERY:
            return
        self._touched = now
        for name, _ in self.staged.values():
            with suppress(OSError):
                os.utime(name, dir_fd=self._dir(), follow_symlinks=False)

    def commit(self, digests: Iterable[Digest]) -> int:
        """Rename the staged ``digests`` into ``blobs/`` (fsynced), in the order given; the
        others stay staged, for ``close`` to remove. Returns how many the store lacked."""
        placed = 0
        for digest in digests:
            if digest not in self.staged:
                continue
            name = self.staged[digest][0]
            self._store.hold(digest)  # before it is visible: a prune must not take it
            target = self._store.blob_path(digest)
            try:
                if self._store.has(digest):
                    continue  # another writer's, meanwhile: the same bytes
                fd = open_regular(self._dir(), name, self._store.ingest_dir / name, os.O_RDONLY)
                place(self._store, os.fdopen(fd, "rb"), self._dir(), name, digest)
            except OSError as e:
                raise store_error("store blob", target, e) from e
            del self.staged[digest]
            placed += 1
        return placed

    def close(self) -> None:
        """Remove every scratch file not committed."""
        if self._dir_fd is None:
            return
        for name, _ in self.staged.values():
            with suppress(OSError):
                os.unlink(name, dir_fd=self._dir_fd)
        self.staged.clear()
        os.close(self._dir_fd)
        self._dir_fd = None
