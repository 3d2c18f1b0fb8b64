"""Unpacking: an image's layers applied in order to a directory, as a container runtime would.

    result = puller.unpack("redis:7", "./rootfs", store="./store")
    print(result.layers, result.files, result.skipped_devices)

A layer is a tar written by someone else, so everything here is built for hostile input:

* Every path operation is relative to a directory descriptor opened with ``O_NOFOLLOW``. A
  name is cleaned lexically as if rooted at ``/`` (``../x`` and ``/x`` land at ``DIR/x``), and
  its parent is walked component by component; a symlink met on the way (made by this layer or
  an earlier one, chains included) is expanded against DIR as the root, as containerd's
  ``fs.RootPath`` does, and the walk restarts from DIR. The entry itself is created at its
  final name with ``O_EXCL | O_NOFOLLOW`` (whatever was there is removed first), so no link
  and no check-then-use race leads outside DIR. A hard link's target is resolved the same way.
* Everything is unpacked into a new directory beside DIR (mode 0700 until done, so no other
  user can race us inside it), which is renamed to DIR only when every layer verified: its
  compressed digest, and its uncompressed digest against the config's ``rootfs.diff_ids``. A
  failure removes it: no DIR is left behind.
* Memory is bounded whatever a layer holds: the bytes stream through bounded queues in chunks
  of ``CHUNK``; the decompressors are asked for at most ``CHUNK`` at a time (no bomb fills
  memory); a PAX or GNU long-name header is read only up to ``tar.reader.MAX_META``; names and link
  targets are at most ``MAX_NAME`` bytes and ``MAX_DEPTH`` directories deep. What grows with
  a layer's entries is what containerd and umoci keep too: the paths this layer created (a
  whiteout applies to lower layers only), and the mtime of each directory and the mode of each
  directory that is not ``u+rwx`` (both applied at the end, so that a later layer can write
  into a 0555 directory as a non-root user); those paths together are refused past
  ``MAX_TRACKED``.
* Time is linear in the layer: resolving names costs a layer at most ``LOOKUP_BASE`` directory
  lookups plus ``LOOKUPS_PER_ENTRY`` an entry, so entries sent one by one through chains of
  deep symlinks are refused rather than resolved for hours.
* Device nodes and ownership other than the caller's are applied only as root; otherwise they
  are skipped and counted, as umoci's rootless mode does, and so are ``security.*`` xattrs.

The pipeline: a reader thread reads and hashes the compressed blob, a decompressor thread
inflates it (zlib and zstandard release the GIL), a hasher thread hashes what it inflated
(hashlib releases the GIL on large buffers), and the calling thread parses tar headers and
writes files. Bounded queues join them, so the next layer is read, inflated and hashed while
this one is written.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .errors import DigestMismatch, InvalidDigest, ManifestError, NotFound, PullError
from .oci.digest import Digest, parse_digest
from .oci.manifest import Descriptor, Platform, parse_platform
from .oci.reference import Reference, parse
from .store.images import local_image
from .store.layout import Store, as_store
from .tar.compression import check_magic, inflated, of_media_type
from .tar.errors import TarError, Truncated
from .tar.reader import REGULAR, Entry, Policy, entries
from .tar.writer import TarWriter
from .text import shown

__all__ = ["Exported", "UnpackError", "Unpacked", "export", "unpack"]

#: Bytes per piece of the pipeline: large enough that hashing and inflating release the GIL for
#: long stretches, small enough that the queues hold a few MiB at most.
CHUNK = 1 << 20
#: Pieces waiting between two stages.
QUEUE_DEPTH = 4
#: Longest name or link target, cleaned, in bytes (Linux's PATH_MAX).
MAX_NAME = 4096
#: Deepest path, in directories: bounds the work of one entry and the descriptors held open.
MAX_DEPTH = 512
#: Symlinks expanded while resolving one name (Linux's own limit).
MAX_LINKS = 40
#: Directory lookups one layer may spend resolving names: a base, and this much more per entry.
#: An ordinary entry costs its depth at most (none when it shares the last entry's directory);
#: a hostile layer that sends every entry through a chain of deep symlinks runs out instead of
#: running for hours.
LOOKUP_BASE = 1 << 16
LOOKUPS_PER_ENTRY = 256
#: What the paths the tree remembers may take (this layer's names, directories' modes and
#: times), counting each path's bytes plus ``PATH_OVERHEAD`` for the str and its slot: long
#: names that compress 150:1 must not turn a small layer into gigabytes of memory.
MAX_TRACKED = 256 << 20
PATH_OVERHEAD = 128

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
#: What a layer may make unpack and export hold: one entry's extended headers at most 1 MiB,
#: 64 global PAX records; no bound on its entries (what grows with them is bounded apart).
LAYER_POLICY = Policy()
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


class UnpackError(PullError):
    """A layer that cannot or must not be unpacked: a bad tar, an entry that would escape, a
    type pypull does not write; or a directory that cannot be written."""


@dataclass(frozen=True, slots=True)
class Unpacked:
    """What an unpack did: layers applied, entries written (of every kind), bytes of file
    content written, and what was skipped because the caller is not root."""

    path: Path
    layers: int
    files: int
    bytes: int
    skipped_devices: int = 0
    skipped_owners: int = 0
    skipped_xattrs: int = 0


# -- the image ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Layer:
    descriptor: Descriptor
    diff_id: Digest
    compression: str  # "gzip", "zstd" or "" (a plain tar)


def _compression(media_type: str, what: str) -> str:
    compression = of_media_type(media_type)
    if compression is None:
        raise UnpackError(f"{what}: layer media type {shown(media_type)} is not a tar pypull reads")
    return compression


def _image_layers(store: Store, ref: Reference, platform: Platform | None) -> list[_Layer]:
    """The image's layers, each with its diff_id, all in the store (and held by its lease)."""
    what = str(ref)
    manifest, config = local_image(store, ref, platform)
    layers = _layers(manifest.layers, config, what)
    for i, layer in enumerate(layers):
        if not store.has(layer.descriptor.digest):
            raise NotFound(
                f"{what}: the store {store.root} lacks its layer {i + 1} "
                f"{layer.descriptor.digest} (pull it again)"
            )
    return layers


def _layers(manifest_layers: tuple[Descriptor, ...], config: bytes, what: str) -> list[_Layer]:
    """The manifest's layers, each with its diff_id from the config."""
    try:
        doc = json.loads(config)
        diff_ids = doc["rootfs"]["diff_ids"]
        if not isinstance(diff_ids, list):
            raise TypeError
        ids = [parse_digest(d) for d in diff_ids]
    except (ValueError, KeyError, TypeError, RecursionError, InvalidDigest):
        raise ManifestError(f"{what}: its config has no valid rootfs.diff_ids") from None
    if len(ids) != len(manifest_layers):
        raise ManifestError(
            f"{what}: its config lists {len(ids)} diff_ids for {len(manifest_layers)} layers"
        )
    return [
        _Layer(d, i, _compression(d.media_type, what))
        for d, i in zip(manifest_layers, ids, strict=True)
    ]


# -- the pipeline: read + hash, inflate, hash, each in a thread ---------------------------------


class _Stop(Exception):
    """The consumer has gone: a producer thread ends quietly."""


@dataclass(slots=True)
class _End:
    """The end of one layer's bytes, with what its producers found."""

    layer: int
    compressed: Digest | None = None
    uncompressed: Digest | None = None
    error: BaseException | None = None


class _Pipe:
    """A bounded queue that a stopped pipeline never blocks on."""

    def __init__(self, stop: threading.Event) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_DEPTH)
        self._stop = stop

    def put(self, item: Any) -> None:
        while True:
            if self._stop.is_set():
                raise _Stop
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self) -> Any:
        while True:
            if self._stop.is_set():
                raise _Stop
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                continue


class _Pipeline:
    """Every layer's uncompressed bytes, in order, with an ``_End`` after each; the digests are
    computed in threads while the caller writes."""

    def __init__(
        self, store: Store, layers: list[_Layer], what: str, numbers: list[int] | None = None
    ) -> None:
        self._store = store
        self._layers = layers
        self._what = what
        #: Each layer's number in the image, for messages (export reads them top first).
        self._numbers = numbers or list(range(1, len(layers) + 1))
        self.stop = threading.Event()
        self._raw = _Pipe(self.stop)  # compressed chunks, then _End(compressed=...)
        self.out = _Pipe(self.stop)  # uncompressed chunks, then _End (to the writer)
        self._hash_in = _Pipe(self.stop)  # uncompressed chunks, then _End (to the hasher)
        self._hashed: list[_Pipe] = [_Pipe(self.stop) for _ in layers]
        self._threads = [
            threading.Thread(target=self._guard(self._read), name="unpack-read", daemon=True),
            threading.Thread(target=self._guard(self._inflate), name="unpack-inflate", daemon=True),
            threading.Thread(target=self._guard(self._hash), name="unpack-hash", daemon=True),
        ]

    def where(self, i: int) -> str:
        return f"{self._what}: layer {self._numbers[i]} ({self._layers[i].descriptor.digest})"

    def __enter__(self) -> _Pipeline:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join()

    def _guard(self, work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except _Stop:
                pass
            except BaseException as e:  # handed to the writer, which raises it
                with suppress(_Stop):
                    self.out.put(e)

        return run

    def _read(self) -> None:
        for i, layer in enumerate(self._layers):
            desc = layer.descriptor
            h = hashlib.new(desc.digest.algorithm)
            size = 0
            wrong: UnpackError | None = None
            f: BinaryIO = self._store.open_blob(desc.digest)
            with f:
                while True:
                    chunk = f.read(CHUNK)
                    if size == 0:
                        try:
                            check_magic(chunk, layer.compression, self.where(i))
                        except TarError as e:
                            wrong = UnpackError(str(e))  # unless the blob was changed: see below
                    if not chunk:
                        break
                    size += len(chunk)
                    h.update(chunk)
                    if wrong is None:
                        self._raw.put(chunk)
            end = _End(i, compressed=Digest(desc.digest.algorithm, h.hexdigest()))
            if wrong is not None:
                self._check_compressed(end)
                raise wrong
            self._raw.put(end)

    def _compressed_of(self, i: int, ends: list[_End]) -> Iterator[bytes]:
        while True:
            item = self._raw.get()
            if isinstance(item, _End):
                ends.append(item)
                return
            yield item

    def _inflate(self) -> None:
        for i, layer in enumerate(self._layers):
            ends: list[_End] = []
            chunks = inflated(self._compressed_of(i, ends), layer.compression, self.where(i))
            try:
                for out in chunks:
                    self._hash_in.put(out)
                    self.out.put(out)
            except TarError as e:
                # Bytes that do not inflate: a blob changed in the store says more, if it was.
                for _ in self._compressed_of(i, ends) if not ends else ():
                    pass
                self._check_compressed(ends[0])
                raise UnpackError(str(e)) from None
            if not ends:  # zstd may stop before the source's end marker: drain to it
                for _ in self._compressed_of(i, ends):
                    pass
            self._hash_in.put(ends[0])
            end = self._hashed[i].get()
            self.out.put(end)

    def _hash(self) -> None:
        for i, layer in enumerate(self._layers):
            h = hashlib.new(layer.diff_id.algorithm)
            while True:
                item = self._hash_in.get()
                if isinstance(item, _End):
                    item.uncompressed = Digest(layer.diff_id.algorithm, h.hexdigest())
                    self._hashed[i].put(item)
                    break
                h.update(item)

    def _check_compressed(self, end: _End) -> None:
        layer = self._layers[end.layer]
        if end.compressed != layer.descriptor.digest:
            where = self.where(end.layer)
            raise DigestMismatch(
                f"{where}: the stored blob's digest is {end.compressed}",
                expected=str(layer.descriptor.digest),
                got=str(end.compressed),
                url=where,
            )

    def verify(self, end: _End) -> None:
        """Raise ``DigestMismatch`` unless layer ``end.layer`` was what the image says."""
        layer = self._layers[end.layer]
        where = self.where(end.layer)
        self._check_compressed(end)
        if end.uncompressed != layer.diff_id:
            raise DigestMismatch(
                f"{where}: its uncompressed digest is {end.uncompressed}, but the config's "
                f"diff_id is {layer.diff_id}",
                expected=str(layer.diff_id),
                got=str(end.uncompressed),
                url=where,
            )


class _Input:
    """One layer's uncompressed bytes as the tar reader wants them: exact reads, chunks of
    file content without copies, and the ``_End`` that follows."""

    def __init__(self, pipe: _Pipe, where: str) -> None:
        self._pipe = pipe
        self._where = where
        self._buf = memoryview(b"")
        self.end: _End | None = None
        #: A producer thread failed: nothing more will come, so there is nothing to drain.
        self.failed = False
        #: Bytes of the tar handed out (``Source.offset``).
        self.offset = 0

    def _fill(self) -> bool:
        if self.end is not None:
            return False
        item = self._pipe.get()
        if isinstance(item, BaseException):
            self.failed = True
            raise item
        if isinstance(item, _End):
            self.end = item
            return False
        self._buf = memoryview(item)
        return True

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes (small: headers); fewer only at the layer's end."""
        if len(self._buf) >= n:
            out = bytes(self._buf[:n])
            self._buf = self._buf[n:]
            self.offset += n
            return out
        parts = [bytes(self._buf)]
        got = len(self._buf)
        self._buf = memoryview(b"")
        while got < n and self._fill():
            take = self._buf[: n - got]
            parts.append(bytes(take))
            got += len(take)
            self._buf = self._buf[len(take) :]
        self.offset += got
        return b"".join(parts)

    def chunks(self, n: int) -> Iterator[memoryview]:
        """The next ``n`` bytes, as they come; raises if the layer ends first."""
        while n:
            if not self._buf and not self._fill():
                raise Truncated(f"{self._where}: the archive ends in the middle of a member")
            take = self._buf[:n]
            self._buf = self._buf[len(take) :]
            n -= len(take)
            self.offset += len(take)
            yield take

    def drain(self) -> _End:
        """Everything left of the layer (a tar's trailing blocks are hashed too)."""
        self._buf = memoryview(b"")
        while self._fill():
            self._buf = memoryview(b"")
        assert self.end is not None
        return self.end


def _clean(name: str, where: str) -> list[str]:
    """The components of ``name`` cleaned as if rooted at DIR: ``..`` stops at the root."""
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME:
        raise UnpackError(f"{where}: a name longer than {MAX_NAME} bytes: {shown(name)}")
    if "\0" in name:
        raise UnpackError(f"{where}: a name with a NUL byte: {shown(name)}")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    if len(parts) > MAX_DEPTH:
        raise UnpackError(f"{where}: a name deeper than {MAX_DEPTH} directories: {shown(name)}")
    return parts


# -- the tree ------------------------------------------------------------------------------------


def _is_dir(st: os.stat_result | None) -> bool:
    return st is not None and stat.S_ISDIR(st.st_mode)


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(parent: int, name: str) -> None:
    """Remove ``name`` of ``parent`` and, for a directory, all it holds (a 0555 one too);
    iteratively (no recursion limit), never through a link."""
    st = _lstat(parent, name)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent)
        return
    stack: list[tuple[int, str, int, Iterator[os.DirEntry[str]]]] = []

    def push(p: int, n: str) -> None:
        fd = os.open(n, _DIR_FLAGS, dir_fd=p)
        try:
            os.fchmod(fd, 0o700)  # we may not remove what a 0555 directory holds otherwise
            stack.append((p, n, fd, _names(fd)))
        except BaseException:
            os.close(fd)
            raise

    push(parent, name)
    try:
        while stack:
            p, n, fd, names = stack[-1]
            child = next(names, None)
            if child is None:
                stack.pop()
                os.close(fd)
                os.rmdir(n, dir_fd=p)
                continue
            if child.is_dir(follow_symlinks=False):
                push(fd, child.name)
            else:
                os.unlink(child.name, dir_fd=fd)
    finally:
        for _, _, fd, _ in stack:
            os.close(fd)


def _names(fd: int) -> Iterator[os.DirEntry[str]]:
    """A directory's entries, read as they are needed: never the whole of a huge directory in
    memory. Removing entries already seen is safe while reading (POSIX: every entry neither
    added nor removed is still returned, once)."""
    with os.scandir(fd) as it:
        yield from it


def _join(parts: list[str]) -> str:
    return "/".join(parts)


class _Tree:
    """DIR, written to only through descriptors (see the module's docstring)."""

    def __init__(self, root_fd: int, as_root: bool) -> None:
        self.root = root_fd
        self.as_root = as_root
        self.uid, self.gid = os.geteuid(), os.getegid()
        self.files = 0
        self.bytes = 0
        self.skipped_devices = 0
        self.skipped_owners = 0
        self.skipped_xattrs = 0
        #: Paths this layer wrote: a whiteout or opaque marker hides lower layers' files only.
        self.this_layer: set[str] = set()
        #: Directories whose lower content this layer already removed: a marker repeated a
        #: million times must not walk the same directory a million times.
        self.cleared: set[str] = set()
        #: Directories whose mode lacks u+rwx, and every directory's mtime: set at the end.
        self.dir_modes: dict[str, int] = {}
        self.dir_times: dict[str, int] = {}
        self.root_mode = 0o755
        self._kept: tuple[tuple[str, ...], int, list[str]] | None = None
        self.lookups = LOOKUP_BASE  # left for this layer (see LOOKUP_BASE)
        self.tracked = 0  # bytes the remembered paths take (see MAX_TRACKED)
        self.layer_tracked = 0  # of which this_layer's, given back when the layer ends

    def new_layer(self) -> None:
        """Forget what was only this layer's; the layer's lookup budget starts again."""
        self.this_layer, self.cleared = set(), set()
        self.forget()
        self.lookups = LOOKUP_BASE
        self.tracked -= self.layer_tracked
        self.layer_tracked = 0

    def _track(self, path: str, where: str) -> int:
        """Count ``path`` as remembered; what it costs."""
        cost = len(path) + PATH_OVERHEAD
        self.tracked += cost
        if self.tracked > MAX_TRACKED:
            raise UnpackError(
                f"{where}: the names to remember pass {MAX_TRACKED >> 20} MiB; refused"
            )
        return cost

    def _drop(self, remembered: dict[str, int], path: str) -> None:
        """Forget a directory's saved mode or time, and what it counted."""
        if remembered.pop(path, None) is not None:
            self.tracked -= len(path) + PATH_OVERHEAD

    # -- resolving names inside DIR

    def parent(self, parts: list[str], where: str, create: bool) -> tuple[int, list[str]] | None:
        """An open descriptor of the directory holding ``parts[-1]`` and its resolved path;
        symlinks on the way are expanded inside DIR. None if it does not exist and not
        ``create``.

        The last answer is kept: a layer lists a directory's files one after another, and
        walking from DIR for each cost a third of the time on images of small files. Adding
        names never changes where an existing path leads; removing or replacing one may (a
        directory or a symlink on the way), so every removal forgets it (``_replace``)."""
        key = tuple(parts[:-1])
        kept = self._kept
        if kept is not None and kept[0] == key:
            return os.dup(kept[1]), list(kept[2])
        found = self.directory(parts[:-1], where, create)
        if found is not None:
            self.forget()
            self._kept = (key, os.dup(found[0]), list(found[1]))
        return found

    def forget(self) -> None:
        """Drop the kept directory (see ``parent``)."""
        if self._kept is not None:
            os.close(self._kept[1])
            self._kept = None

    def _replace(self, parent: int, name: str) -> None:
        """Remove what is at ``name`` to make room for an entry."""
        self.forget()
        _remove(parent, name)

    def directory(self, parts: list[str], where: str, create: bool) -> tuple[int, list[str]] | None:
        links = 0
        todo = list(parts)
        while True:
            fd = os.dup(self.root)
            done: list[str] = []
            try:
                restart = None
                for i, part in enumerate(todo):
                    self.lookups -= 1
                    if self.lookups < 0:
                        raise UnpackError(
                            f"{where}: the layer's names resolve through too many directories "
                            "and symbolic links; refused"
                        )
                    try:
                        sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    except FileNotFoundError:
                        if not create:
                            os.close(fd)
                            return None
                        os.mkdir(part, 0o755, dir_fd=fd)
                        # A new directory, not one a lower layer made and a whiteout removed:
                        # that one's mode and time are not this one's.
                        created = _join([*done, part])
                        self._drop(self.dir_modes, created)
                        self._drop(self.dir_times, created)
                        sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    except OSError as e:
                        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                            raise
                        st = _lstat(fd, part)
                        if st is None or not stat.S_ISLNK(st.st_mode):
                            raise UnpackError(
                                f"{where}: {shown(_join([*done, part]))} is not a directory"
                            ) from None
                        links += 1
                        if links > MAX_LINKS:
                            raise UnpackError(
                                f"{where}: too many levels of symbolic links at "
                                f"{shown(_join([*done, part]))}"
                            ) from None
                        target = os.readlink(part, dir_fd=fd)
                        base = [] if target.startswith("/") else done
                        restart = _clean(_join([*base, target, *todo[i + 1 :]]), where)
                        break
                    os.close(fd)
                    fd = sub
                    done.append(part)
                if restart is None:
                    return fd, done
                todo = restart
                os.close(fd)
            except BaseException:
                with suppress(OSError):
                    os.close(fd)
                raise

    # -- applying one entry

    def apply(self, entry: Entry, src: _Input, where: str) -> None:
        self.lookups += LOOKUPS_PER_ENTRY
        parts = _clean(entry.name, where)
        at = f"{where}: {shown(entry.name)}"
        if not parts:  # the root itself: only its mode and time are the layer's to set
            if entry.kind != b"5":
                raise UnpackError(f"{at}: the root of the image is not a directory")
            self.root_mode = entry.mode
            self.dir_times[""] = entry.mtime_ns
            return
        base = parts[-1]
        try:
            if base.startswith(_WHITEOUT):
                self.whiteout(parts, at)
                return
            found = self.parent(parts, at, create=True)
            assert found is not None
            fd, resolved = found
            path = _join([*resolved, base])
            try:
                self._apply(fd, base, path, entry, src, at)
            finally:
                os.close(fd)
        except OSError as e:  # the disk's answer (no space, a name too long): one line
            raise UnpackError(f"{at}: {e.strerror or e}") from None
        if path not in self.this_layer:
            self.layer_tracked += self._track(path, at)
            self.this_layer.add(path)
        self.files += 1

    def _apply(self, parent: int, base: str, path: str, e: Entry, src: _Input, at: str) -> None:
        existing = _lstat(parent, base)
        self._drop(self.dir_modes, path)
        if e.kind == b"5":
            if not _is_dir(existing):
                if existing is not None:
                    self._replace(parent, base)
                os.mkdir(base, 0o700, dir_fd=parent)
            fd = os.open(base, _DIR_FLAGS, dir_fd=parent)
            try:
                self._own(fd, None, e)
                os.fchmod(fd, e.mode | 0o700)
                self._xattrs(fd, e, at)
            finally:
                os.close(fd)
            if e.mode & 0o700 != 0o700:
                if path not in self.dir_modes:
                    self._track(path, at)
                self.dir_modes[path] = e.mode
            if path not in self.dir_times:
                self._track(path, at)
            self.dir_times[path] = e.mtime_ns
            return
        if e.kind == b"1":
            self._hard_link(parent, base, existing, e, at)
            return
        if e.kind in (b"3", b"4") and not self.as_root:
            self.skipped_devices += 1
            return
        if existing is not None:
            self._replace(parent, base)
        if e.kind in REGULAR:
            fd = os.open(base, _NEW_FILE, 0o600, dir_fd=parent)
            try:
                for piece in src.chunks(e.size):
                    while piece:
                        n = os.write(fd, piece)
                        piece = piece[n:]
                self.bytes += e.size
                self._own(fd, None, e)
                os.fchmod(fd, e.mode)
                self._xattrs(fd, e, at)
                os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
            finally:
                os.close(fd)
        elif e.kind == b"2":
            if len(e.linkname.encode("utf-8", "surrogateescape")) > MAX_NAME or not e.linkname:
                raise UnpackError(f"{at}: a symlink target that is empty or too long")
            os.symlink(e.linkname, base, dir_fd=parent)
            self._own(None, (parent, base), e)
            os.utime(base, ns=(e.mtime_ns, e.mtime_ns), dir_fd=parent, follow_symlinks=False)
        else:
            kind = {b"3": stat.S_IFCHR, b"4": stat.S_IFBLK, b"6": stat.S_IFIFO}[e.kind]
            os.mknod(base, kind | 0o600, os.makedev(e.devmajor, e.devminor), dir_fd=parent)
            # Our own new node in a 0700 directory nobody else can enter: no race to follow.
            fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | _CLOEXEC, dir_fd=parent)
            try:
                self._own(None, (parent, base), e)
                os.chmod(f"/proc/self/fd/{fd}", e.mode)
                os.utime(f"/proc/self/fd/{fd}", ns=(e.mtime_ns, e.mtime_ns))
            finally:
                os.close(fd)

    def _hard_link(
        self, parent: int, base: str, existing: os.stat_result | None, e: Entry, at: str
    ) -> None:
        target = _clean(e.linkname, at)
        if not target:
            raise UnpackError(f"{at}: a hard link to the root directory")
        found = self.parent(target, at, create=False)
        if found is None:
            raise UnpackError(f"{at}: its hard link target {shown(e.linkname)} is not in the image")
        tfd, _ = found
        try:
            st = _lstat(tfd, target[-1])
            if st is None:
                raise UnpackError(
                    f"{at}: its hard link target {shown(e.linkname)} is not in the image"
                )
            if stat.S_ISDIR(st.st_mode):
                raise UnpackError(f"{at}: a hard link to a directory ({shown(e.linkname)})")
            if existing is not None:
                if (existing.st_dev, existing.st_ino) == (st.st_dev, st.st_ino):
                    return
                self._replace(parent, base)
            os.link(target[-1], base, src_dir_fd=tfd, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(tfd)

    def _own(self, fd: int | None, at: tuple[int, str] | None, e: Entry) -> None:
        """The entry's owner: as root always; otherwise counted as skipped when not ours."""
        if not self.as_root:
            if (e.uid, e.gid) != (self.uid, self.gid):
                self.skipped_owners += 1
            return
        if fd is not None:
            os.fchown(fd, e.uid, e.gid)
        elif at is not None:
            os.chown(at[1], e.uid, e.gid, dir_fd=at[0], follow_symlinks=False)

    def _xattrs(self, fd: int, e: Entry, at: str) -> None:
        for name, value in e.xattrs.items():
            if not self.as_root and name.startswith("security."):
                self.skipped_xattrs += 1
                continue
            try:
                os.setxattr(fd, name, value)
            except OSError as err:
                if err.errno in (errno.EPERM, errno.ENOTSUP, errno.EACCES):
                    self.skipped_xattrs += 1  # trusted.*, or a filesystem without xattrs
                    continue
                raise UnpackError(f"{at}: xattr {shown(name)}: {err.strerror}") from None

    # -- whiteouts

    def whiteout(self, parts: list[str], at: str) -> None:
        """``.wh.NAME`` removes NAME, ``.wh..wh..opq`` its directory's contents, of lower
        layers only: what this layer wrote (before the marker, or after it) stays."""
        self.forget()
        base = parts[-1]
        if base != _OPAQUE and base.startswith(_WHITEOUT + _WHITEOUT):
            return  # aufs's own metadata (.wh..wh.plnk ...): nothing of the image
        found = self.parent(parts, at, create=False)
        if found is None:
            return  # nothing there to hide
        fd, resolved = found
        try:
            if base == _OPAQUE:
                self._hide_lower(fd, resolved)
                return
            name = base[len(_WHITEOUT) :]
            if name in ("", ".", ".."):
                raise UnpackError(f"{at}: a whiteout that names nothing")
            path = _join([*resolved, name])
            if path not in self.this_layer:
                _remove(fd, name)
            elif _is_dir(_lstat(fd, name)):
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                try:
                    self._hide_lower(sub, [*resolved, name])
                finally:
                    os.close(sub)
        except OSError as e:
            raise UnpackError(f"{at}: {e.strerror or e}") from None
        finally:
            os.close(fd)

    def _hide_lower(self, fd: int, resolved: list[str]) -> None:
        """Remove what lower layers put in the directory ``fd``, keeping this layer's."""
        here = _join(resolved)
        if here in self.cleared:
            return
        self.cleared.add(here)
        for child in _names(fd):
            path = _join([*resolved, child.name])
            if path not in self.this_layer:
                _remove(fd, child.name)
            elif child.is_dir(follow_symlinks=False):
                sub = os.open(child.name, _DIR_FLAGS, dir_fd=fd)
                try:
                    self._hide_lower(sub, [*resolved, child.name])
                finally:
                    os.close(sub)

    # -- the end

    def finish(self) -> None:
        """Directory modes and mtimes, now that no layer writes into them any more; deepest
        first, so a 0555 directory is closed only after what it holds is done."""
        for path in sorted(self.dir_times, key=lambda p: -p.count("/") - (p != "")):
            fd = self._existing_dir(path)
            if fd is None:
                continue
            try:
                mode = self.root_mode if path == "" else self.dir_modes.get(path)
                if mode is not None:
                    os.fchmod(fd, mode)
                ns = self.dir_times[path]
                os.utime(fd, ns=(ns, ns))
            finally:
                os.close(fd)
        if "" not in self.dir_times:
            os.fchmod(self.root, self.root_mode)

    def _existing_dir(self, path: str) -> int | None:
        """The directory at ``path``, through no link, or None if it is no longer one."""
        fd = os.dup(self.root)
        for part in path.split("/") if path else []:
            try:
                sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                os.close(fd)
                return None
            os.close(fd)
            fd = sub
        return fd


# -- unpack --------------------------------------------------------------------------------------


def _apply_layers(pipeline: _Pipeline, tree: _Tree, count: int) -> None:
    for i in range(count):
        tree.new_layer()
        _each_entry(pipeline, i, tree.apply)
    tree.new_layer()


def _each_entry(pipeline: _Pipeline, i: int, handle: Callable[[Entry, _Input, str], None]) -> None:
    """``handle`` each entry of the pipeline's layer ``i``, then check the layer's digests."""
    where = pipeline.where(i)
    src = _Input(pipeline.out, where)
    try:
        for entry in entries(src, where, LAYER_POLICY):
            handle(entry, src, where)
    except (UnpackError, TarError) as e:
        if src.failed:
            raise
        # A digest that does not match says more than the tar error it caused.
        pipeline.verify(src.drain())
        if isinstance(e, TarError):
            raise UnpackError(str(e)) from None
        raise
    pipeline.verify(src.drain())


def _unpack_image(store: Store, ref: Reference, dest: Path, platform: Platform | None) -> Unpacked:
    what = str(ref)
    layers = _image_layers(store, ref, platform)
    dest = Path(os.path.abspath(dest))
    if os.path.lexists(dest):
        raise UnpackError(f"{shown(str(dest))} exists: unpack makes a new directory")
    parent = dest.parent
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    except OSError as e:
        raise UnpackError(f"cannot unpack into {shown(str(parent))}: {e.strerror}") from None
    try:
        tmp = f".{dest.name}.pypull-{os.urandom(6).hex()}"
        try:
            os.mkdir(tmp, 0o700, dir_fd=parent_fd)
            root_fd = os.open(tmp, _DIR_FLAGS, dir_fd=parent_fd)
        except OSError as e:
            raise UnpackError(f"cannot unpack into {shown(str(parent))}: {e.strerror}") from None
        try:
            tree = _Tree(root_fd, as_root=os.geteuid() == 0)
            try:
                with _Pipeline(store, layers, what) as pipeline:
                    _apply_layers(pipeline, tree, len(layers))
                try:
                    tree.finish()
                except OSError as e:
                    raise UnpackError(f"{what}: setting directory modes: {e.strerror}") from None
            finally:
                tree.forget()
                os.close(root_fd)
            try:
                os.rename(tmp, dest.name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
            except OSError as e:
                raise UnpackError(f"cannot create {shown(str(dest))}: {e.strerror}") from None
        except BaseException:
            with suppress(OSError):
                _remove(parent_fd, tmp)
            raise
    finally:
        os.close(parent_fd)
    return Unpacked(
        dest,
        len(layers),
        tree.files,
        tree.bytes,
        tree.skipped_devices,
        tree.skipped_owners,
        tree.skipped_xattrs,
    )


def unpack(
    image: str | Reference,
    dest: str | os.PathLike[str],
    *,
    store: str | os.PathLike[str] | Store | None = None,
    platform: str | Platform | None = None,
) -> Unpacked:
    """Apply the layers of ``image`` (as pulled into ``store``) to the new directory ``dest``.
    Blocking. ``platform`` picks the child of a multi-platform image (default: this
    machine's). Raises ``UnpackError``, ``DigestMismatch``, ``NotFound``..., leaving no
    ``dest`` behind."""
    ref = image if isinstance(image, Reference) else parse(image)
    want = parse_platform(platform) if isinstance(platform, str) else platform
    held = as_store(store)
    with held.lease():  # a concurrent prune leaves every blob read here
        return _unpack_image(held, ref, Path(dest), want)


# -- export: the flattened filesystem as one tar, streamed ---------------------------------------


@dataclass(frozen=True, slots=True)
class Exported:
    """What an export wrote: layers read, entries written, bytes of file content."""

    layers: int
    files: int
    bytes: int


class _Flattener:
    """The union of the layers, read top layer first (as crane's ``mutate.Extract`` does): an
    entry is written unless an upper layer wrote the same path, whited it out, made one of its
    directories opaque, or replaced one of its directories by something else. What grows with
    the entry count: the paths written so far, as an unpacker's tree would hold them.

    A hard link written before its target (the target is in a lower layer) waits until the
    target comes; a target that an upper layer hid is written under the link's own name."""

    def __init__(self, out: BinaryIO) -> None:
        self._tar = TarWriter(out)
        self.seen: dict[str, bool] = {}  # path -> is a directory
        self.gone: set[str] = set()
        self.opaque: set[str] = set()
        self._pending_gone: set[str] = set()
        self._pending_opaque: set[str] = set()
        self._waiting: dict[str, list[Entry]] = {}  # link target -> links to it
        self.files = 0
        self.bytes = 0

    def end_layer(self) -> None:
        """A layer's whiteouts and opaque markers hide only what lies below it."""
        self.gone |= self._pending_gone
        self.opaque |= self._pending_opaque
        self._pending_gone, self._pending_opaque = set(), set()

    def _hidden(self, parts: list[str]) -> bool:
        path = _join(parts)
        if path in self.seen or path in self.gone:
            return True
        end = -1
        for _ in range(len(parts) - 1):  # each directory above, as a slice of ``path``
            end = path.index("/", end + 1)
            above = path[:end]
            if above in self.gone or above in self.opaque or self.seen.get(above) is False:
                return True
        return False

    def add(self, entry: Entry, src: _Input, where: str) -> None:
        parts = _clean(entry.name, where)
        if not parts:
            return  # the root: a tar of a filesystem names what is in it
        base = parts[-1]
        if base.startswith(_WHITEOUT):
            if base == _OPAQUE:
                self._pending_opaque.add(_join(parts[:-1]))
            elif not base.startswith(_WHITEOUT + _WHITEOUT):
                self._pending_gone.add(_join([*parts[:-1], base[len(_WHITEOUT) :]]))
            return
        path = _join(parts)
        hidden = self._hidden(parts)
        if hidden and entry.kind != b"5":
            # Not a directory in this layer: whatever lower layers hold under it is gone too.
            self._pending_gone.add(path)
        if entry.kind == b"1":
            target = _join(_clean(entry.linkname, where))
            entry.linkname = target
            # A link is its target's inode: unpack ignores its xattrs, and a link waiting for
            # its target must not hold a MiB of them each.
            entry.xattrs = {}
            if not hidden:
                self.seen[path] = False
                entry.name = path
                if target in self.seen:
                    self._write(entry, src)
                else:
                    self._waiting.setdefault(target, []).append(entry)
            return
        links = self._waiting.pop(path, [])
        if hidden:
            if not links:
                return
            # Hidden here, yet linked from above: the first link carries the content.
            first, links = links[0], links[1:]
            entry.name = first.name
            path = first.name
        else:
            self.seen[path] = entry.kind == b"5"
            entry.name = path
        self._write(entry, src)
        for link in links:
            link.linkname = path
            self._write(link, src)

    def _write(self, entry: Entry, src: _Input) -> None:
        self._tar.entry(entry)
        if entry.size:
            for piece in src.chunks(entry.size):
                self._tar.data(piece)
            self._tar.end_member(entry.size)
            self.bytes += entry.size
        self.files += 1

    def finish(self) -> None:
        """The end-of-archive blocks. Links whose target no layer held are left out, as an
        unpack would refuse them."""
        self._tar.close()


def _export_image(
    store: Store, ref: Reference, out: BinaryIO, platform: Platform | None
) -> Exported:
    what = str(ref)
    layers = _image_layers(store, ref, platform)
    top_first = list(reversed(layers))
    numbers = list(range(len(layers), 0, -1))
    flat = _Flattener(out)
    with _Pipeline(store, top_first, what, numbers) as pipeline:
        for i in range(len(layers)):
            _each_entry(pipeline, i, flat.add)
            flat.end_layer()
    flat.finish()
    return Exported(len(layers), flat.files, flat.bytes)


def export(
    image: str | Reference,
    out: BinaryIO,
    *,
    store: str | os.PathLike[str] | Store | None = None,
    platform: str | Platform | None = None,
) -> Exported:
    """Write the flattened filesystem of ``image`` to ``out`` as one tar, streamed: top layer
    first, each entry once, no whiteouts. Blocking. Every layer is verified as it is read; an
    error raised after some entries were written leaves a partial tar in ``out`` (the CLI's
    ``-o FILE`` writes beside FILE and renames, so it leaves none)."""
    ref = image if isinstance(image, Reference) else parse(image)
    want = parse_platform(platform) if isinstance(platform, str) else platform
    held = as_store(store)
    with held.lease():
        return _export_image(held, ref, out, want)
