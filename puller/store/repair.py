"""``pypull verify --repair``: remove what ``verify`` found damaged or foreign in ``blobs/``, so
that the next pull of the images that use it fetches it again.

What goes: a blob whose content does not hash to its name or cannot be read (``DAMAGED``), a
regular file in ``blobs/`` that no digest names, and a symbolic link there (``FOREIGN``: the
link itself, never what it points at). What stays: everything else ``verify`` reports (a link
outside ``blobs/``, ``index.json``, a directory in ``blobs/``: a person's to look at), and a
blob a live lease holds: a running pypull relies on it, and pull, prune and repair agree
through leases (``lease``) as containerd's clients and collector do.

The removal runs under ``gc.lock`` held exclusively, the leases read first, as prune's sweep
does; each file is looked at again there before it goes, so one a pull replaced meanwhile (a
link it renamed a verified blob over) is left alone. Only a damaged blob is hashed again, and
only it: a verify of the whole store is not redone under the lock.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError
from ..oci.digest import Digest
from .files import FILE_FLAGS
from .layout import Store
from .lease import exclusive, live_leases
from .verify import DAMAGED, FOREIGN, Problem, Report

__all__ = ["Repair", "Repaired", "repair_store"]

#: Read size for hashing a damaged blob again.
CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Repaired:
    """One problem ``repair_store`` acted on: ``removed``, or left with the ``reason`` why."""

    problem: Problem
    removed: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Repair:
    """What ``repair_store`` did with each problem it could act on."""

    done: tuple[Repaired, ...]

    @property
    def removed(self) -> tuple[Problem, ...]:
        return tuple(r.problem for r in self.done if r.removed)

    @property
    def kept(self) -> tuple[Repaired, ...]:
        return tuple(r for r in self.done if not r.removed)


def removable(problem: Problem) -> bool:
    """Whether ``repair_store`` acts on ``problem``: a damaged or foreign file in ``blobs/``."""
    return problem.kind in (DAMAGED, FOREIGN)


def repair_store(store: Store, report: Report) -> Repair:
    """Remove each damaged or foreign file of ``report`` (``verify_store``'s, of this store)
    that is still so, unless a live lease holds its digest. Nothing else is touched."""
    todo = [p for p in report.problems if removable(p)]
    if not todo:
        return Repair(())
    done = []
    with exclusive(store):
        leased = live_leases(store, remove_stale=False)  # stale ones are prune's to remove
        for problem in todo:
            if problem.digest is not None and problem.digest in leased:
                done.append(Repaired(problem, False, "a running pypull is using it"))
                continue
            done.append(_remove(store, problem))
    return Repair(tuple(done))


def _remove(store: Store, problem: Problem) -> Repaired:
    path = Path(problem.path)
    try:
        with store.directory(path.parent.relative_to(store.root).parts) as fd:
            why = _why_not(fd, path.name, problem)
            if why:
                return Repaired(problem, False, why)
            os.unlink(path.name, dir_fd=fd)  # never follows a link: removes the link itself
    except FileNotFoundError:
        return Repaired(problem, False, "gone already")
    except StoreError as e:  # a directory above it became a link: not ours to go through
        return Repaired(problem, False, str(e))
    except OSError as e:
        return Repaired(problem, False, f"cannot remove it: {e.strerror or e}")
    return Repaired(problem, True)


def _why_not(fd: int, name: str, problem: Problem) -> str:
    """Why the file ``name`` (in the directory ``fd``) is no longer to be removed, or ""."""
    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        return "a directory: remove it by hand"
    if problem.kind == DAMAGED:
        if not stat.S_ISREG(st.st_mode):
            return "no longer a file"
        if problem.digest is not None and _intact(fd, name, problem.digest):
            return "intact now"
    elif stat.S_ISREG(st.st_mode) and problem.digest is not None:
        return "a blob now, not a link"  # a pull renamed a verified blob over the link
    return ""


def _intact(dir_fd: int, name: str, digest: Digest) -> bool:
    """Whether the file now hashes to ``digest`` (no longer damaged); unreadable is not."""
    h = digest.hasher()
    try:
        fd = os.open(name, os.O_RDONLY | FILE_FLAGS, dir_fd=dir_fd)
        with open(fd, "rb", buffering=0) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except OSError:
        return False
    hexdigest: str = h.hexdigest()
    return hexdigest == digest.hex
