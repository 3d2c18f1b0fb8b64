"""The local store: an OCI image layout on disk.

    STORE/oci-layout            {"imageLayoutVersion": "1.0.0"}
    STORE/index.json            one entry per pulled reference (org.opencontainers.image.ref.name)
    STORE/blobs/sha256/<hex>    configs, manifests, layers: verified content only
    STORE/.pypull/ingest/       partial downloads (one per digest, resumable) and their locks,
                                renamed into blobs/ only after verification
    STORE/.pypull/index.lock    serialises read-modify-write of index.json between processes
    STORE/.pypull/leases/       one file per process using the store: the digests it relies on
    STORE/.pypull/gc.lock       taken shared to add to a lease, exclusively by ``pypull prune``
    STORE/.pypull/blobinfo.db   where blobs were seen at registries, a hint for mounts (blobinfo)

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
process using the store holds a *lease* (``lease``'s docstring), which prune leaves alone.

Who can write to a shared store can still write wrong content into it, as with any shared
directory: ``pypull verify`` re-hashes every blob and reports that.

``Store`` is here; the file handling it is built on is in ``files``, blobs coming in in
``blobs``, leases and the gc lock in ``lease``.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import ManifestError, StoreError
from ..oci.digest import Digest, verify_bytes
from ..oci.manifest import (
    MAX_MANIFEST_SIZE,
    REF_NAME_ANNOTATION,
    Descriptor,
    checked_manifest,
    listed,
    parse_descriptor,
)
from .blobs import INGEST, BlobLock, BlobWriter
from .files import atomic_write, lexists, open_dir, open_regular, open_scratch, store_error
from .lease import GC_LOCK, LEASES, READ_ONLY, Lease, gc_lock

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
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


class Store:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs"
        self.ingest_dir = self.root / ".pypull" / "ingest"
        self.index_path = self.root / "index.json"
        self._lock_path = self.root / ".pypull" / "index.lock"
        self._layout_ready = False
        self._lease: Lease | None = None
        self._lease_users = 0
        self._lease_mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- directories, never through a link ------------------------------------------------------

    def open_dir(self, parts: tuple[str, ...], create: bool = False) -> int:
        """A descriptor of ``root/parts...``, opened through no link (``files.open_dir``),
        created if missing and ``create``; the caller closes it. Every directory of this store
        is opened here (a test stands in for a read-only store by replacing it)."""
        return open_dir(self.root, parts, create)

    @contextmanager
    def directory(self, parts: tuple[str, ...], create: bool = False) -> Iterator[int]:
        """``open_dir`` for the ``with`` block."""
        fd = self.open_dir(parts, create)
        try:
            yield fd
        finally:
            os.close(fd)

    def lstat(self, parts: tuple[str, ...], name: str) -> os.stat_result | None:
        """``lstat`` of ``root/parts.../name`` through no link; None if it cannot be had."""
        try:
            with self.directory(parts) as fd:
                return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except (OSError, StoreError):
            return None

    # -- layout -----------------------------------------------------------------------------------

    def ensure_layout(self) -> None:
        """Create the layout on first write: a failed pull of a bad reference leaves no store."""
        if self._layout_ready:
            return
        try:
            for parts in (("blobs", "sha256"), INGEST):
                os.close(self.open_dir(parts, create=True))
            with self.directory(()) as root:
                if not lexists(root, "oci-layout"):
                    atomic_write(root, "oci-layout", json.dumps(OCI_LAYOUT).encode())
                if not lexists(root, self.index_path.name):
                    with self._index_lock():
                        if not lexists(root, self.index_path.name):
                            self._write_index([])
        except OSError as e:
            raise store_error("create store at", self.root, e) from e
        self._layout_ready = True

    @contextmanager
    def whole_or_unmade(self) -> Iterator[None]:
        """For a write that is whole or nothing (``pypull load``): when the store does not
        exist yet (no directory, or an empty one), an error or Ctrl-C in the block removes the
        layout it made and the directories made for it, so bad input leaves no empty store
        behind. Only what is still as ``ensure_layout`` made it goes (``_unmake``)."""
        made = _missing_from(self.root)
        fresh = made is not None or _empty_dir(self.root)
        try:
            yield
        except BaseException:
            if fresh:
                self._unmake(made)
            raise

    def _unmake(self, made: Path | None) -> None:
        """Remove an unused layout, and ``root`` up to ``made`` when those were made for it.
        Directories go by ``rmdir``, which fails on one another process has written to, and
        an ``index.json`` with an entry stops it too: a store that someone else began to use
        meanwhile is left as it is."""
        self._layout_ready = False  # the next write here makes it again
        with suppress(OSError, StoreError):
            for parts in (INGEST, LEASES, ("blobs", "sha256"), ("blobs",)):
                self._remove(parts[:-1], parts[-1], os.rmdir)
            if self.read_index()["manifests"]:
                return
            for name in (self.index_path.name, "oci-layout"):
                self._remove((), name, os.unlink)
            for name in (self._lock_path.name, GC_LOCK):
                self._remove((".pypull",), name, os.unlink)
            self._remove((), ".pypull", os.rmdir)
            if made is not None:
                for path in (self.root, *self.root.parents):
                    os.rmdir(path)
                    if path == made:
                        break

    def _remove(self, parts: tuple[str, ...], name: str, remove: Callable[..., object]) -> None:
        """``remove`` (``os.unlink``, ``os.rmdir``) ``root/parts.../name``, through no link;
        gone already is fine."""
        with suppress(FileNotFoundError), self.directory(parts) as fd:
            remove(name, dir_fd=fd)

    # -- leases (see ``lease``) ------------------------------------------------------------------

    @contextmanager
    def lease(self) -> Iterator[None]:
        """While held (re-entrant), every blob this object asks about, reads or writes stays in
        the store, whatever a concurrent ``pypull prune`` decides, until the last holder
        leaves. A ``Puller`` holds one for its lifetime."""
        with self._lease_mutex:
            if self._lease is None:
                self._lease = Lease(self)
            self._lease_users += 1
        try:
            yield
        finally:
            with self._lease_mutex:
                self._lease_users -= 1
                if not self._lease_users and self._lease is not None:
                    self._lease.release()
                    self._lease = None

    def hold(self, *digests: Digest) -> None:
        """Add ``digests`` to this object's lease, when it holds one (``lease``): from now on,
        a prune leaves them."""
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
            st = self.lstat((), ".pypull")
            if st is not None and stat.S_ISDIR(st.st_mode):
                try:
                    stack.enter_context(gc_lock(self, shared=True))
                except StoreError:
                    pass
                except OSError as e:
                    if e.errno not in READ_ONLY:
                        raise store_error("lock", self.root / ".pypull" / GC_LOCK, e) from e
            yield

    # -- blobs -----------------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        # Digest validated algorithm and hex on parse, so this cannot escape blobs/.
        return self.blobs_dir / digest.algorithm / digest.hex

    def has(self, digest: Digest) -> bool:
        """Whether the blob is stored: a regular file, reached through no link (a link at its
        name, or at a directory above it, is not a blob). Under a lease, the answer holds."""
        self.hold(digest)
        st = self.lstat(("blobs", digest.algorithm), digest.hex)
        return st is not None and stat.S_ISREG(st.st_mode)

    def partial_path(self, digest: Digest) -> Path:
        return self.ingest_dir / f"{digest.algorithm}-{digest.hex}.partial"

    def partial_size(self, digest: Digest) -> int:
        """Bytes of ``digest`` kept from an interrupted download (0 if none)."""
        st = self.lstat(INGEST, self.partial_path(digest).name)
        return st.st_size if st is not None and stat.S_ISREG(st.st_mode) else 0

    def blob_lock(self, digest: Digest) -> BlobLock:
        self.ensure_layout()
        return BlobLock(self, self.ingest_dir / f"{digest.algorithm}-{digest.hex}.lock")

    def writer(
        self, digest: Digest, size: int | None, where: str = "", resume: bool = True
    ) -> BlobWriter:
        self.ensure_layout()
        self.hold(digest)  # before the blob exists: a prune must not take it once it does
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
        self.hold(digest)
        target = self.blob_path(digest)
        try:
            with (
                self.directory(("blobs", digest.algorithm), create=True) as blobs,
                self.directory(INGEST, create=True) as ingest,
            ):
                atomic_write(blobs, target.name, data, tmp_dir_fd=ingest)
        except OSError as e:
            raise store_error("store blob", target, e) from e

    def open_blob(self, digest: Digest) -> BinaryIO:
        """The blob's file for reading: a regular file, reached through no link."""
        self.hold(digest)
        path = self.blob_path(digest)
        try:
            with self.directory(("blobs", digest.algorithm)) as blobs:
                fd = open_regular(blobs, digest.hex, path, os.O_RDONLY)
            return os.fdopen(fd, "rb")
        except OSError as e:
            raise store_error("read", path, e) from e

    def read_blob(self, digest: Digest, limit: int = -1) -> bytes:
        """The blob's bytes (at most ``limit`` of them, when given)."""
        with self.open_blob(digest) as f:
            try:
                return f.read(limit)
            except OSError as e:
                raise store_error("read", self.blob_path(digest), e) from e

    def read_manifest(self, digest: Digest, size: int | None = None) -> bytes:
        """The manifest ``digest``, verified (and of ``size`` bytes, when given): a file in the
        store may have been written by someone else, so it is read to at most
        ``MAX_MANIFEST_SIZE`` and checked before anyone parses it."""
        raw = self.read_blob(digest, MAX_MANIFEST_SIZE + 1)
        checked_manifest(raw, digest, size, str(self.blob_path(digest)))
        if self._lease is not None:
            # Whoever reads a manifest goes on to what it lists (unpack, save, push): held from
            # now, those stay even if the image is removed and pruned while they are read.
            try:
                doc = json.loads(raw)
            except (ValueError, RecursionError):
                doc = None
            if isinstance(doc, dict):
                self.hold(*(d for d, _ in listed(doc)))
        return raw

    # -- index.json -------------------------------------------------------------------------------

    @contextmanager
    def _index_lock(self) -> Iterator[None]:
        with self.directory((".pypull",), create=True) as pypull:
            fd = open_scratch(pypull, self._lock_path.name, self._lock_path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def read_index(self) -> dict[str, Any]:
        """index.json as it is, every entry kept (another tool's, one that does not parse);
        an empty index if there is none."""
        try:
            with self.directory(()) as root:
                fd = open_regular(root, self.index_path.name, self.index_path, os.O_RDONLY)
            with os.fdopen(fd, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
        except OSError as e:
            raise store_error("read", self.index_path, e) from e
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
        with self.directory(()) as root:
            atomic_write(root, self.index_path.name, json.dumps(doc, indent=2).encode() + b"\n")

    def entries(self) -> list[Descriptor]:
        """The index.json entries, skipping any we cannot parse (another tool may have added it)."""
        out = []
        for i, e in enumerate(self.read_index()["manifests"]):
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
        entry = descriptor.to_dict()
        entry.setdefault("annotations", {})[REF_NAME_ANNOTATION] = name
        self._rewrite_index(name, entry)

    def tag_many(self, named: list[tuple[str, Descriptor]]) -> None:
        """``tag`` for each pair, in one rewrite of index.json: all of the names or none (an
        archive's images), and the time of one rewrite, not of one per name."""
        self.ensure_layout()
        entries: dict[str, dict[str, Any]] = {}
        for name, descriptor in named:
            entry = descriptor.to_dict()
            entry.setdefault("annotations", {})[REF_NAME_ANNOTATION] = name
            entries.pop(name, None)  # the last one given wins, as with tag() in turn
            entries[name] = entry
        try:
            with self._index_lock():
                doc = self.read_index()
                kept = [
                    e
                    for e in doc["manifests"]
                    if not (isinstance(ref := _ref_name(e), str) and ref in entries)
                ]
                self._write_index([*kept, *entries.values()])
        except OSError as e:
            raise store_error("update", self.index_path, e) from e

    def untag(self, name: str) -> bool:
        """Remove ``name`` from index.json (its blobs stay until a prune); False if it was not
        there. A store that does not exist is left so."""
        if self.lstat((), self.index_path.name) is None:
            return False
        return self._rewrite_index(name, None)

    def _rewrite_index(self, name: str, entry: dict[str, Any] | None) -> bool:
        """Drop the entries named ``name`` and add ``entry``, under the index lock; whether
        any was dropped."""
        try:
            with self._index_lock():
                doc = self.read_index()
                kept = [e for e in doc["manifests"] if _ref_name(e) != name]
                dropped = len(kept) != len(doc["manifests"])
                if entry is not None:
                    kept.append(entry)
                if dropped or entry is not None:
                    self._write_index(kept)
                return dropped
        except OSError as e:
            raise store_error("update", self.index_path, e) from e


def _missing_from(root: Path) -> Path | None:
    """The topmost of ``root`` and its parents that does not exist, or None if ``root`` does."""
    top = None
    for path in (root, *root.parents):
        if os.path.lexists(path):
            break
        top = path
    return top


def _empty_dir(path: Path) -> bool:
    try:
        return not os.listdir(path)
    except OSError:
        return False


def _ref_name(entry: object) -> object:
    """An index.json entry's reference name, if it has one (other tools' entries may not)."""
    if isinstance(entry, dict) and isinstance(entry.get("annotations"), dict):
        return entry["annotations"].get(REF_NAME_ANNOTATION)
    return None
