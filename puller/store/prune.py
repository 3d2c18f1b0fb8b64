"""``pypull rmi`` and ``pypull prune``: take names out of the store, then reclaim the space of
blobs no name reaches.

Prune is a mark and sweep, as containerd's garbage collector is. The roots are every entry of
``index.json`` (the digest it points at, and the digest the registry served when that differs:
the Docker form kept beside its OCI form, the index a platform was chosen from) and every digest
in a live lease (``lease``'s docstring: what running pulls, copies and pushes rely on). From the
roots, manifests and indexes are read to their children, configs, layers and subjects; nothing
else is parsed. Everything in ``blobs/`` that is neither marked nor leased is deleted.

The whole mark and sweep runs under ``gc.lock`` held exclusively, leases read first and
``index.json`` second: a pull tags its image before it gives up its lease, so whatever finished
in between is seen in one or the other.

A prune that cannot be sure does nothing: an ``index.json`` it cannot read, a lease it cannot
read, or a manifest a root reaches that does not match its digest (what it lists is then
unknown) stops it with an error before anything is deleted.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass

from ..errors import InvalidDigest, StoreError
from ..oci.digest import Digest, digest_of, parse_digest
from ..oci.manifest import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_MANIFEST_SIZE,
    OCI_CONFIG,
    descriptors_in,
    listed,
)
from .blobinfo import blob_info
from .blobs import INGEST
from .files import store_error
from .layout import RESOLVED_ANNOTATION, Store, as_store
from .lease import exclusive, live_leases

__all__ = ["PruneResult", "Pruned", "prune", "rmi"]

#: Partial downloads untouched this long belong to pulls nobody is going to finish.
DEFAULT_PARTIALS_AGE = 24 * 3600.0
#: A hidden temporary of ``ingest/`` untouched this long has no writer (see ``_old_temporary``):
#: unlike a partial download, nothing resumes it, so it need not wait for the partials' age.
TEMPORARY_AGE = 3600.0
_READABLE = (*MANIFEST_TYPES, *INDEX_TYPES)
_CONFIG_TYPES = (OCI_CONFIG, "application/vnd.docker.container.image.v1+json")
_ARCHIVES = ("tar", "gzip", "zstd")


@dataclass(frozen=True, slots=True)
class Pruned:
    """One thing deleted (or, in a dry run, that would be): a blob, a partial download, or a
    temporary file a killed process left in ``ingest/`` (no digest)."""

    kind: str  # "blob", "partial" or "temporary"
    digest: Digest | None
    size: int
    path: str


@dataclass(frozen=True, slots=True)
class PruneResult:
    removed: tuple[Pruned, ...]
    dry_run: bool

    @property
    def reclaimed(self) -> int:
        """Bytes freed (or that would be): the files' sizes."""
        return sum(p.size for p in self.removed)

    def to_json(self) -> str:
        """What ``pypull prune --json`` prints: ``to_dict()`` as JSON text."""
        return json.dumps(self.to_dict())

    def to_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "removed": [
                {"kind": p.kind, "digest": p.digest and str(p.digest), "size": p.size}
                for p in self.removed
            ],
            "reclaimed": self.reclaimed,
        }


def rmi(names: Iterable[str], store: Store | str | os.PathLike[str] | None = None) -> list[str]:
    """Remove each reference (as written: ``redis`` is ``docker.io/library/redis:latest``) from
    the store's ``index.json``; the normalized names that were not there. Blobs stay until a
    prune."""
    from ..oci.reference import parse

    store = as_store(store)
    missing = []
    for text in names:
        name = str(parse(text))
        if not store.untag(name):
            missing.append(name)
    return missing


def prune(
    store: Store | str | os.PathLike[str] | None = None,
    *,
    dry_run: bool = False,
    partials_older_than: float = DEFAULT_PARTIALS_AGE,
    now: float | None = None,
) -> PruneResult:
    """Delete the blobs no image in ``index.json`` reaches and no running pypull relies on,
    partial downloads not touched for ``partials_older_than`` seconds that no pull is
    writing, and scratch files of killed processes not touched for ``TEMPORARY_AGE``.
    ``dry_run``: the same answer, nothing deleted."""
    store = as_store(store)
    if store.lstat((), "blobs") is None:
        return PruneResult((), dry_run)  # no store: nothing to reclaim
    removed: list[Pruned] = []
    with exclusive(store):
        keep = live_leases(store, remove_stale=not dry_run)
        keep |= _reachable(store, _roots(store))
        removed += _sweep(store, keep, dry_run)
    removed += _old_partials(
        store, partials_older_than, time.time() if now is None else now, dry_run
    )
    if not dry_run:  # the record of where blobs live: rows not seen for long
        blob_info(store).prune(now=now)
    return PruneResult(tuple(removed), dry_run)


# -- mark ------------------------------------------------------------------------------------------


def _roots(store: Store) -> list[tuple[Digest, str | None]]:
    """Every entry of index.json, named or not (another tool's entries count too), and the
    digest each was resolved from."""
    roots: list[tuple[Digest, str | None]] = []
    for entry in store.read_index()["manifests"]:
        roots += descriptors_in([entry])
        annotations = entry.get("annotations") if isinstance(entry, dict) else None
        if isinstance(annotations, dict):
            served = descriptors_in([{"digest": annotations.get(RESOLVED_ANNOTATION)}])
            roots += [(digest, None) for digest, _ in served]
    return roots


def _reachable(store: Store, roots: list[tuple[Digest, str | None]]) -> set[Digest]:
    """The roots and everything their manifests reach, present or not."""
    marked: set[Digest] = set()
    todo = list(roots)
    while todo:
        digest, media_type = todo.pop()
        if digest in marked:
            continue
        marked.add(digest)
        if media_type is not None and _opaque(media_type):
            continue  # a config or a layer: lists nothing
        doc = _manifest_doc(store, digest, media_type in _READABLE)
        if doc is not None:
            todo += listed(doc)
    return marked


def _opaque(media_type: str) -> bool:
    """A config or a layer (of any image format): blobs that list no other blob."""
    return media_type in _CONFIG_TYPES or "layer" in media_type or media_type.endswith(_ARCHIVES)


def _manifest_doc(store: Store, digest: Digest, strict: bool) -> dict[str, object] | None:
    """The JSON of a manifest or index, or None if the blob is absent (an index's other
    platforms) or, not ``strict`` (a root's served form, an artifact of a kind pypull does not
    know), is not one. A manifest of a kind pypull reads that does not match its digest or
    does not parse stops the prune: what it really lists is unknown."""
    path = store.blob_path(digest)
    st = store.lstat(("blobs", digest.algorithm), digest.hex)
    if st is None or not stat.S_ISREG(st.st_mode):
        return None
    if st.st_size > MAX_MANIFEST_SIZE:
        problem = f"a manifest over {MAX_MANIFEST_SIZE >> 20} MiB"
    else:
        try:
            raw = store.read_blob(digest, MAX_MANIFEST_SIZE + 1)
        except StoreError as e:
            raise StoreError(f"{e}; nothing pruned", path=str(path)) from None
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):
            doc = None
        if digest_of(raw, digest.algorithm) != digest:
            problem = "does not match its digest; run pypull verify"
        elif isinstance(doc, dict):
            return doc
        else:
            problem = "is not a manifest"
    if strict:
        raise StoreError(f"{path} {problem}; nothing pruned", path=str(path))
    return None


# -- sweep -----------------------------------------------------------------------------------------


def _sweep(store: Store, keep: set[Digest], dry_run: bool) -> list[Pruned]:
    """Every regular file of ``blobs/<algorithm>/`` named by a digest not in ``keep``. Other
    names (links, strays) are left for ``pypull verify`` to report."""
    removed = []
    try:
        with store.directory(("blobs",)) as blobs:
            algorithms = sorted(os.listdir(blobs))
    except OSError as e:
        raise store_error("read", store.blobs_dir, e) from e
    for algorithm in algorithms:
        try:
            with store.directory(("blobs", algorithm)) as fd:
                for name in sorted(os.listdir(fd)):
                    try:
                        digest = parse_digest(f"{algorithm}:{name}")
                    except InvalidDigest:
                        continue
                    if digest in keep:
                        continue
                    try:
                        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # another prune took it
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    if not dry_run:
                        with suppress(FileNotFoundError):
                            os.unlink(name, dir_fd=fd)
                    removed.append(Pruned("blob", digest, st.st_size, str(store.blob_path(digest))))
        except StoreError:
            continue  # a link, or not a directory: not ours to walk (verify reports it)
        except OSError as e:
            raise store_error("prune", store.blobs_dir / algorithm, e) from e
    return removed


def _old_temporary(store: Store, ingest: int, name: str, now: float, dry_run: bool) -> list[Pruned]:
    """A hidden scratch file (a small write's, a blob a load was staging) of a process killed
    before it renamed or removed it. Nothing locks those, but a writer keeps touching its
    file (``Staging.touch``), so one untouched for ``TEMPORARY_AGE`` is dead, whatever age
    partials are kept to: nothing resumes it."""
    try:
        st = os.stat(name, dir_fd=ingest, follow_symlinks=False)
    except FileNotFoundError:
        return []
    if not stat.S_ISREG(st.st_mode) or st.st_mtime > now - TEMPORARY_AGE:
        return []
    if not dry_run:
        with suppress(FileNotFoundError):
            os.unlink(name, dir_fd=ingest)
    return [Pruned("temporary", None, st.st_size, str(store.ingest_dir / name))]


def _old_partials(store: Store, older_than: float, now: float, dry_run: bool) -> list[Pruned]:
    """Partial downloads last written before ``now - older_than`` whose download lock is free
    (a pull writing one holds it)."""
    removed = []
    try:
        with store.directory(INGEST) as ingest:
            names = sorted(os.listdir(ingest))
            for name in names:
                if name.startswith(".") and not name.endswith(".lock"):
                    removed += _old_temporary(store, ingest, name, now, dry_run)
                    continue
                if not name.endswith(".partial"):
                    continue
                algorithm, _, rest = name[: -len(".partial")].partition("-")
                try:
                    digest = parse_digest(f"{algorithm}:{rest}")
                except InvalidDigest:
                    continue
                try:
                    st = os.stat(name, dir_fd=ingest, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # completed or dropped meanwhile
                if not stat.S_ISREG(st.st_mode) or st.st_mtime > now - older_than:
                    continue
                lock = store.blob_lock(digest)
                if not lock.try_acquire():
                    continue  # being downloaded right now
                try:
                    try:  # again, now that no pull can write it: one may have just now
                        st = os.stat(name, dir_fd=ingest, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if st.st_mtime > now - older_than:
                        continue
                    if not dry_run:
                        with suppress(FileNotFoundError):
                            os.unlink(name, dir_fd=ingest)
                finally:
                    lock.release()
                removed.append(
                    Pruned("partial", digest, st.st_size, str(store.partial_path(digest)))
                )
    except FileNotFoundError:
        return removed
    except StoreError:
        return removed  # a link where ingest should be: verify reports it
    except OSError as e:
        raise store_error("prune", store.ingest_dir, e) from e
    return removed
