"""The directory an image is unpacked into, written to only through descriptors: a layer is a
tar written by someone else, so every entry is applied as if it were hostile.

* Every path operation is relative to a directory descriptor opened with ``O_NOFOLLOW``. A
  name is cleaned lexically as if rooted at ``/`` (``../x`` and ``/x`` land at ``DIR/x``), and
  its parent is walked component by component; a symlink met on the way (made by this layer or
  an earlier one, chains included) is expanded against DIR as the root, as containerd's
  ``fs.RootPath`` does, and the walk restarts from DIR. The entry itself is created at its
  final name with ``O_EXCL | O_NOFOLLOW`` (whatever was there is removed first), so no link
  and no check-then-use race leads outside DIR. A hard link's target is resolved the same way.
* Everything is written into a new directory beside DIR (mode 0700 until done, so no other
  user can race us inside it), renamed to DIR only when the caller is done (``new_directory``).
  A failure removes it: no DIR is left behind.
* What grows with a layer's entries is what containerd and umoci keep too: the paths this
  layer created (a whiteout applies to lower layers only), and the mtime of each directory and
  the mode of each directory that is not ``u+rwx`` (both applied at the end, so that a later
  layer can write into a 0555 directory as a non-root user); those paths together are refused
  past ``MAX_TRACKED``.
* Time is linear in the layer: resolving names costs a layer at most ``LOOKUP_BASE`` directory
  lookups plus ``LOOKUPS_PER_ENTRY`` an entry, so entries sent one by one through chains of
  deep symlinks are refused rather than resolved for hours.
* Device nodes and ownership other than the caller's are applied only as root; otherwise they
  are skipped and counted, as umoci's rootless mode does, and so are ``security.*`` xattrs.
  Unlike umoci, and as GNU tar, a file whose owner (group) was not kept loses its setuid
  (setgid) bit.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import UnpackError
from .oci.layer import MAX_NAME, OPAQUE, WHITEOUT, clean, join
from .tar.reader import REGULAR, Entry, Source
from .text import shown

__all__ = ["LOOKUPS_PER_ENTRY", "LOOKUP_BASE", "MAX_LINKS", "MAX_TRACKED", "Tree", "new_directory"]

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


class Tree:
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
                        created = join([*done, part])
                        self._drop(self.dir_modes, created)
                        self._drop(self.dir_times, created)
                        sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    except OSError as e:
                        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                            raise
                        st = _lstat(fd, part)
                        if st is None or not stat.S_ISLNK(st.st_mode):
                            raise UnpackError(
                                f"{where}: {shown(join([*done, part]))} is not a directory"
                            ) from None
                        links += 1
                        if links > MAX_LINKS:
                            raise UnpackError(
                                f"{where}: too many levels of symbolic links at "
                                f"{shown(join([*done, part]))}"
                            ) from None
                        target = os.readlink(part, dir_fd=fd)
                        base = [] if target.startswith("/") else done
                        restart = clean(join([*base, target, *todo[i + 1 :]]), where)
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

    def apply(self, entry: Entry, src: Source, where: str) -> None:
        self.lookups += LOOKUPS_PER_ENTRY
        parts = clean(entry.name, where)
        at = f"{where}: {shown(entry.name)}"
        if not parts:  # the root itself: only its mode and time are the layer's to set
            if entry.kind != b"5":
                raise UnpackError(f"{at}: the root of the image is not a directory")
            self.root_mode = entry.mode
            self.dir_times[""] = entry.mtime_ns
            return
        base = parts[-1]
        try:
            if base.startswith(WHITEOUT):
                self.whiteout(parts, at)
                return
            found = self.parent(parts, at, create=True)
            assert found is not None
            fd, resolved = found
            path = join([*resolved, base])
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

    def _apply(self, parent: int, base: str, path: str, e: Entry, src: Source, at: str) -> None:
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
                os.fchmod(fd, self._own(fd, None, e))
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
                mode = self._own(None, (parent, base), e)
                os.chmod(f"/proc/self/fd/{fd}", mode)
                os.utime(f"/proc/self/fd/{fd}", ns=(e.mtime_ns, e.mtime_ns))
            finally:
                os.close(fd)

    def _hard_link(
        self, parent: int, base: str, existing: os.stat_result | None, e: Entry, at: str
    ) -> None:
        target = clean(e.linkname, at)
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

    def _own(self, fd: int | None, at: tuple[int, str] | None, e: Entry) -> int:
        """The entry's owner: as root always; otherwise counted as skipped when not ours.
        Returns the mode a file or node is to get: without setuid when its owner was not
        kept, without setgid when its group was not, as GNU tar does: a root's ``4755``
        program must not become a setuid program of the user who unpacked it. (A
        directory's mode is set apart and keeps its bits: setgid there only says which
        group new files get.)"""
        mode = e.mode
        if not self.as_root:
            if (e.uid, e.gid) != (self.uid, self.gid):
                self.skipped_owners += 1
            if e.uid != self.uid:
                mode &= ~stat.S_ISUID
            if e.gid != self.gid:
                mode &= ~stat.S_ISGID
            return mode
        if fd is not None:
            os.fchown(fd, e.uid, e.gid)
        elif at is not None:
            os.chown(at[1], e.uid, e.gid, dir_fd=at[0], follow_symlinks=False)
        return mode

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
        if base != OPAQUE and base.startswith(WHITEOUT + WHITEOUT):
            return  # aufs's own metadata (.wh..wh.plnk ...): nothing of the image
        found = self.parent(parts, at, create=False)
        if found is None:
            return  # nothing there to hide
        fd, resolved = found
        try:
            if base == OPAQUE:
                self._hide_lower(fd, resolved)
                return
            name = base[len(WHITEOUT) :]
            if name in ("", ".", ".."):
                raise UnpackError(f"{at}: a whiteout that names nothing")
            path = join([*resolved, name])
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
        here = join(resolved)
        if here in self.cleared:
            return
        self.cleared.add(here)
        for child in _names(fd):
            path = join([*resolved, child.name])
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


@contextmanager
def new_directory(dest: Path) -> Iterator[int]:
    """A new directory to fill, as a descriptor: made beside ``dest`` (mode 0700, so no other
    user can race us inside it) and renamed to ``dest`` when the block ends; removed, with all
    it holds, when the block raises. ``dest`` must not exist."""
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
            try:
                yield root_fd
            finally:
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
