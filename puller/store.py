"""The local store: an OCI image layout on disk.

    STORE/oci-layout            {"imageLayoutVersion": "1.0.0"}
    STORE/index.json            one entry per pulled reference (org.opencontainers.image.ref.name)
    STORE/blobs/sha256/<hex>    configs, manifests, layers: verified content only
    STORE/.pypull/ingest/       partial downloads (one per digest, resumable) and their locks,
                                renamed into blobs/ only after verification
    STORE/.pypull/index.lock    serialises read-modify-write of index.json between processes

The only way into ``blobs/`` is ``BlobWriter.commit`` or ``put_bytes``, and both verify size and
digest first, so nothing unverified ever becomes visible. ``index.json`` is rewritten atomically
(temp file + rename) under an exclusive lock, so concurrent pulls cannot lose each other's entries.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from .digest import Digest, Verifier, verify_bytes
from .errors import ManifestError, StoreError
from .manifest import REF_NAME_ANNOTATION, Descriptor, parse_descriptor

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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobLock:
    """One digest's download, locked across processes (``flock`` on ``ingest/<digest>.lock``).

    The lock file is removed on release, so a waiter that locked a file which has since been
    unlinked must notice and lock the new one: ``try_acquire`` compares inodes for that.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never blocks."""
        try:
            for _ in range(_LOCK_RETRIES):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held = os.fstat(fd)
                    try:
                        now = os.stat(self.path)
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
                    self._fd = fd
                    return True
                os.close(fd)  # the holder released and removed it meanwhile: lock the new one
        except OSError as e:
            raise _store_error("lock", self.path, e) from e
        raise StoreError(f"cannot lock {self.path}: it keeps being replaced", path=str(self.path))

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()  # while still holding it: see try_acquire
        except OSError:
            pass  # gone already, or not ours to remove: the next holder's inode check copes
        finally:
            os.close(self._fd)
            self._fd = None


class BlobWriter:
    """A partial download at ``ingest/<algorithm>-<hex>.partial`` that becomes a blob only if it
    verifies. Only the holder of the digest's ``BlobLock`` may open one.

    An existing partial (from an interrupted run) is kept and re-hashed, so the download can
    resume where it stopped; ``offset`` says how many bytes that is.

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
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
            raise
        self.offset = self._verifier.size
        self._written_back = self.offset

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
        view = memoryview(chunk)
        try:
            # An unbuffered write may write less than asked (a nearly full disk, a file size
            # limit): the hash covers every byte, so the file must too.
            while view:
                written = self._file.write(view)
                if not written:
                    raise OSError(errno.ENOSPC, "no space left on device")
                view = view[written:]
        except OSError as e:
            raise _store_error("write", self.path, e) from e
        if self._verifier.size - self._written_back >= WRITEBACK_STEP:
            _start_writeback(
                self._file.fileno(), self._written_back, self._verifier.size - self._written_back
            )
            self._written_back = self._verifier.size

    def commit(self, durable: bool = True) -> Path:
        """Verify, fsync, rename into ``blobs/``; a partial that fails to verify is removed."""
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
                if durable:
                    os.fsync(self._file.fileno())
                self._file.close()
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.path, target)
                if durable:
                    _fsync_dir(target.parent)
            except OSError as e:
                raise _store_error("store blob", target, e) from e
            return target
        except BaseException:
            self.abort()
            raise

    def close(self) -> None:
        """Keep the partial for a later resume (unless nothing was received)."""
        with suppress(OSError):
            self._file.close()
        if self._verifier.size == 0:
            with suppress(FileNotFoundError):
                self.path.unlink()

    def abort(self) -> None:
        """Remove the partial: its content is wrong, or the disk is full."""
        self.close()
        with suppress(FileNotFoundError):
            self.path.unlink()


class Store:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs"
        self.ingest_dir = self.root / ".pypull" / "ingest"
        self.index_path = self.root / "index.json"
        self._lock_path = self.root / ".pypull" / "index.lock"
        self._layout_ready = False

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- layout -----------------------------------------------------------------------------------

    def ensure_layout(self) -> None:
        """Create the layout on first write: a failed pull of a bad reference leaves no store."""
        if self._layout_ready:
            return
        try:
            for d in (self.blobs_dir / "sha256", self.ingest_dir):
                d.mkdir(parents=True, exist_ok=True)
            layout = self.root / "oci-layout"
            if not layout.exists():
                self._atomic_write(layout, json.dumps(OCI_LAYOUT).encode())
            if not self.index_path.exists():
                with self._index_lock():
                    if not self.index_path.exists():
                        self._write_index([])
        except OSError as e:
            raise _store_error("create store at", self.root, e) from e
        self._layout_ready = True

    def _atomic_write(self, path: Path, data: bytes, tmp_dir: Path | None = None) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=tmp_dir or path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)

    # -- blobs -----------------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        # Digest validated algorithm and hex on parse, so this cannot escape blobs/.
        return self.blobs_dir / digest.algorithm / digest.hex

    def has(self, digest: Digest) -> bool:
        return self.blob_path(digest).is_file()

    def partial_path(self, digest: Digest) -> Path:
        return self.ingest_dir / f"{digest.algorithm}-{digest.hex}.partial"

    def partial_size(self, digest: Digest) -> int:
        """Bytes of ``digest`` kept from an interrupted download (0 if none)."""
        try:
            return self.partial_path(digest).stat().st_size
        except OSError:
            return 0

    def blob_lock(self, digest: Digest) -> BlobLock:
        self.ensure_layout()
        return BlobLock(self.ingest_dir / f"{digest.algorithm}-{digest.hex}.lock")

    def writer(
        self, digest: Digest, size: int | None, where: str = "", resume: bool = True
    ) -> BlobWriter:
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
        target = self.blob_path(digest)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._atomic_write(target, data, tmp_dir=self.ingest_dir)
        except OSError as e:
            raise _store_error("store blob", target, e) from e

    def read_blob(self, digest: Digest) -> bytes:
        path = self.blob_path(digest)
        try:
            return path.read_bytes()
        except OSError as e:
            raise _store_error("read", path, e) from e

    # -- index.json -------------------------------------------------------------------------------

    @contextmanager
    def _index_lock(self) -> Iterator[None]:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _read_index_doc(self) -> dict[str, Any]:
        try:
            raw = self.index_path.read_bytes()
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
        self._atomic_write(self.index_path, json.dumps(doc, indent=2).encode() + b"\n")

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
        try:
            with self._index_lock():
                doc = self._read_index_doc()
                kept = [
                    e
                    for e in doc["manifests"]
                    if not (
                        isinstance(e, dict)
                        and isinstance(e.get("annotations"), dict)
                        and e["annotations"].get(REF_NAME_ANNOTATION) == name
                    )
                ]
                entry = descriptor.to_json()
                entry.setdefault("annotations", {})[REF_NAME_ANNOTATION] = name
                kept.append(entry)
                self._write_index(kept)
        except OSError as e:
            raise _store_error("update", self.index_path, e) from e
