"""``pypull verify``: audit a store after a crash, a full disk, or someone else's hands.

Two passes. The first re-hashes every file in ``blobs/`` against the digest that names it, since
that is the one promise the layout makes. The second walks ``index.json`` down through manifests
to configs and layers, checking only that each blob is present at the size its descriptor says:
the first pass already vouched for the content, so nothing is hashed twice.

Before both, every symbolic link below the root is reported, wherever it is (``blobs/``,
``index.json``, ``oci-layout``, ``.pypull/``): pypull never makes one and never follows one (see
``layout``), so a link is someone's mistake or an attempt to make pypull read or write outside the
store. Nothing is read through a link: a linked blob is not hashed, and an image whose blob is a
link is also reported incomplete, as a pull would see it.

A prune started during a verify waits for it (``Store.unpruned``): blobs vanishing mid-run
would be reported as damage.

A problem with a blob names the images that use it: the references in ``index.json`` whose
indexes and manifests (those the store holds and that are whole) list it; a blob none of them
lists is said to be unused. Each problem also says what kind it is, so that ``repair`` can
remove what is damaged or foreign and leave the rest, and a caller can tell a store a pull
completes (only blobs of images missing) from one that needs a person.

Findings are returned as ``Problem`` values, never raised: a user wants every problem of a store
in one run, not the first. Only a store that is not there at all is an error.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import InvalidDigest, ManifestError, StoreError, error_code
from ..oci.digest import Digest, parse_digest
from ..oci.manifest import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_MANIFEST_SIZE,
    REF_NAME_ANNOTATION,
    Descriptor,
    Index,
    parse_descriptor,
    parse_manifest,
)
from .files import FILE_FLAGS
from .layout import OCI_LAYOUT, Store

__all__ = ["DAMAGED", "FOREIGN", "MISSING", "Problem", "Report", "verify_store"]

#: A blob whose content is not what its name says, or that cannot be read: ``repair`` removes it.
DAMAGED = "damaged"
#: A file or link in ``blobs/`` that pypull did not put there: ``repair`` removes it.
FOREIGN = "foreign"
#: A blob an image needs that is not in the store: a pull of the image fetches it again.
MISSING = "missing"

#: Read size for re-hashing: large enough for hashlib to release the GIL, small enough that a
#: multi-gigabyte layer costs two buffers of memory, one per worker.
CHUNK = 1024 * 1024
#: Two hashing threads keep a disk and a second core busy without starving the rest of the host.
WORKERS = 2


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a store.

    ``path`` is the file concerned (for a missing blob, where it should be), kept apart from the
    message so a tool can act on it; the message already names the digest and reference.
    ``code`` is its key of ``errors.CODES``, as every failure of ``--format json`` carries one:
    ``digest-mismatch`` for content or a size that is not what the name or descriptor says,
    ``not-found`` for a blob an image needs, ``protocol`` for a manifest (or index.json entry)
    pypull refuses, ``storage`` for the rest (the store's own files, what cannot be read).
    ``kind`` is ``DAMAGED``, ``FOREIGN``, ``MISSING`` or ``""`` (anything else: a link outside
    ``blobs/``, ``index.json``, a manifest that disagrees with its descriptor); ``digest`` the
    blob concerned, when there is one; ``images`` the references that use it.
    """

    path: str
    message: str
    code: str
    kind: str = ""
    digest: Digest | None = None
    images: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Report:
    """What ``verify_store`` looked at and what it found; ``ok`` when it found nothing."""

    blobs: int  # blobs re-hashed
    images: int  # index.json entries checked
    partials: int  # resumable partial downloads in .pypull/ingest (not problems)
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def incomplete(self) -> tuple[str, ...]:
        """The images that lack a blob (a pull of each fetches it again), in order."""
        return tuple(dict.fromkeys(i for p in self.problems if p.kind == MISSING for i in p.images))


def verify_store(store: Store, *, on_blob: Callable[[Digest], None] | None = None) -> Report:
    """Check ``store`` and report every problem found; raise ``StoreError`` only if it is absent.

    ``on_blob`` is called with each blob's digest once it has been re-hashed, in the caller's
    thread, so a CLI can show progress through a store of large layers.
    """
    if not store.root.is_dir():
        raise StoreError(f"no store at {store.root}", path=str(store.root))
    problems: list[Problem] = []
    users: dict[Digest, list[str]] = {}
    with store.unpruned():  # a prune meanwhile would make blobs seem to vanish
        problems += _find_links(store)
        problems += _check_layout_file(store)
        hashed, corrupt, found = _check_blobs(store, on_blob)
        problems += found
        entries, found = _index_entries(store)
        problems += found
        for label, entry in entries:
            walk = _Walk(store, label, corrupt, users)
            problems += walk.check(label, "manifest", entry)
    # A manifest may list a blob twice (empty layers): say each thing once.
    unique = tuple(dict.fromkeys(_name_users(p, users) for p in problems))
    return Report(hashed, len(entries), _count_partials(store), unique)


def _name_users(problem: Problem, users: dict[Digest, list[str]]) -> Problem:
    """A problem of a blob in itself (damaged, or a link at its name), with the images that use
    it named; the other problems of a blob are found through an image and name it already."""
    if problem.digest is None or problem.kind not in (DAMAGED, FOREIGN):
        return problem
    images = tuple(dict.fromkeys(users.get(problem.digest, ())))
    used = f"used by {', '.join(images)}" if images else "unused: no image uses it"
    return replace(problem, message=f"{problem.message}; {used}", images=images)


# -- links, anywhere below the root ----------------------------------------------------------


def _find_links(store: Store) -> list[Problem]:
    """Every symbolic link below the root (the root itself may be one: the user chose it), sorted
    by path; a link to a directory is reported, not walked. One in ``blobs/`` is foreign (and a
    link at a blob's name names that blob)."""
    root = store.root
    problems = []
    for top, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(top) / name
            if not path.is_symlink():
                continue
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            in_blobs = path.parent == store.blobs_dir or path.parent.parent == store.blobs_dir
            named = path.parent.parent == store.blobs_dir
            problems.append(
                Problem(
                    str(path),
                    f"{path} is a symbolic link to {target}: "
                    "pypull does not follow links in its store",
                    "storage",
                    FOREIGN if in_blobs else "",
                    _digest_named(path.parent.name, path.name) if named else None,
                )
            )
    return sorted(problems, key=lambda p: p.path)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except OSError:
        return None


def _read_nofollow(path: Path) -> bytes:
    """The content of a regular file, not through a link (``OSError`` otherwise)."""
    fd = os.open(path, os.O_RDONLY | FILE_FLAGS)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return f.read()


# -- oci-layout --------------------------------------------------------------------------------


def _check_layout_file(store: Store) -> list[Problem]:
    path = store.root / "oci-layout"
    want = OCI_LAYOUT["imageLayoutVersion"]
    if path.is_symlink():
        return []  # reported as a link, and not read through it
    try:
        doc = json.loads(_read_nofollow(path))
    except FileNotFoundError:
        return [Problem(str(path), f"{path} is missing", "storage")]
    except OSError as e:
        return [Problem(str(path), f"cannot read {path}: {e.strerror or e}", "storage")]
    except (ValueError, RecursionError) as e:
        return [Problem(str(path), f"{path} is not valid JSON: {e}", "storage")]
    version = doc.get("imageLayoutVersion") if isinstance(doc, dict) else None
    if version != want:
        found = f"{path} says imageLayoutVersion {version!r}, expected {want}"
        return [Problem(str(path), found, "storage")]
    return []


# -- blobs/: every file named by its digest, and holding what the name says ---------------------


def _check_blobs(
    store: Store, on_blob: Callable[[Digest], None] | None
) -> tuple[int, set[Digest], list[Problem]]:
    """Re-hash every blob; return how many, which are corrupt, and the problems found."""
    blobs, problems = _list_blobs(store.blobs_dir)
    corrupt: set[Digest] = set()
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="pypull-verify") as pool:
        # map() yields in submission order, so problems come out in path order every run.
        results = pool.map(_hash_file, blobs)
        try:
            for (path, digest), got in zip(blobs, results, strict=True):
                if isinstance(got, OSError):
                    corrupt.add(digest)
                    reason = got.strerror or str(got)
                    message = f"cannot read blob {digest}: {reason}"
                    problems.append(Problem(str(path), message, "storage", DAMAGED, digest))
                elif got != digest.hex:
                    corrupt.add(digest)
                    actual = Digest(digest.algorithm, got)
                    problems.append(
                        Problem(
                            str(path),
                            f"corrupt blob {digest}: content hashes to {actual}",
                            "digest-mismatch",
                            DAMAGED,
                            digest,
                        )
                    )
                if on_blob is not None:
                    on_blob(digest)
        finally:
            # If on_blob raised (Ctrl-C in a CLI), do not hash the rest of the store first.
            pool.shutdown(wait=True, cancel_futures=True)
    return len(blobs), corrupt, problems


def _list_blobs(blobs_dir: Path) -> tuple[list[tuple[Path, Digest]], list[Problem]]:
    """``blobs/<algorithm>/<hex>`` files, sorted; anything else under ``blobs/`` is a problem.

    Nothing but ``BlobWriter.commit`` puts files here, so a stray file means another tool or a
    person did, and pypull will never read or clean it up.
    """
    st = _lstat(blobs_dir)
    if st is not None and stat.S_ISLNK(st.st_mode):
        return [], []  # reported as a link, and not listed through it
    if st is None or not stat.S_ISDIR(st.st_mode):
        return [], [Problem(str(blobs_dir), f"{blobs_dir} is missing", "storage")]
    found: list[tuple[Path, Digest]] = []
    problems: list[Problem] = []

    def stray(path: Path, st: os.stat_result | None) -> None:
        # ``repair`` removes it, unless it is a directory: that is left to a person.
        kind = "" if st is None or stat.S_ISDIR(st.st_mode) else FOREIGN
        problems.append(Problem(str(path), f"unexpected file in blobs/: {path}", "storage", kind))

    for top in _listdir(blobs_dir, problems):
        st = _lstat(top)
        if st is not None and stat.S_ISLNK(st.st_mode):
            continue  # reported as a link
        if st is None or not stat.S_ISDIR(st.st_mode):
            stray(top, st)
            continue
        for path in _listdir(top, problems):
            st = _lstat(path)
            if st is not None and stat.S_ISLNK(st.st_mode):
                continue  # reported as a link, and never hashed through it
            digest = _digest_named(top.name, path.name)
            if digest is None or st is None or not stat.S_ISREG(st.st_mode):
                stray(path, st)  # a directory too: it is reported whole, not walked
            else:
                found.append((path, digest))
    return found, problems


def _listdir(path: Path, problems: list[Problem]) -> list[Path]:
    try:
        return sorted(path.iterdir())
    except OSError as e:
        problems.append(Problem(str(path), f"cannot list {path}: {e.strerror or e}", "storage"))
        return []


def _digest_named(algorithm: str, name: str) -> Digest | None:
    try:
        return parse_digest(f"{algorithm}:{name}")
    except InvalidDigest:
        return None


def _hash_file(blob: tuple[Path, Digest]) -> str | OSError:
    """The hex digest of the file by its name's algorithm, read 1 MiB at a time (in a worker)."""
    path, digest = blob
    h = digest.hasher()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    try:
        # Not through a link (one may have been planted since the listing), and not a FIFO.
        fd = os.open(path, os.O_RDONLY | FILE_FLAGS)
        with open(fd, "rb", buffering=0) as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{path} is not a regular file")
            while n := f.readinto(buf):
                h.update(view[:n])
    except OSError as e:
        return e
    hexdigest: str = h.hexdigest()
    return hexdigest


# -- index.json and everything reachable from it ------------------------------------------------


def _index_entries(store: Store) -> tuple[list[tuple[str, Descriptor]], list[Problem]]:
    """The entries to check, each with the label messages name it by, and index.json's problems."""
    path = store.index_path
    st = _lstat(path)
    if st is not None and stat.S_ISLNK(st.st_mode):
        return [], []  # reported as a link, and not read through it
    if st is None or not stat.S_ISREG(st.st_mode):
        # entries() reads a missing index.json as empty, but the layout requires the file.
        return [], [Problem(str(path), f"{path} is missing", "storage")]
    try:
        entries = store.entries()
    except StoreError as e:
        return [], [Problem(str(path), str(e), error_code(e))]
    problems = []
    # entries() skips entries it cannot parse, which suits a pull; an audit names them.
    for i, raw in enumerate(_raw_entries(path)):
        try:
            parse_descriptor(raw, f"{path} entry {i}")
        except ManifestError as e:
            problems.append(Problem(str(path), str(e), error_code(e)))
    labelled = [
        (e.annotations.get(REF_NAME_ANNOTATION) or f"untagged {e.digest}", e) for e in entries
    ]
    return labelled, problems


def _raw_entries(path: Path) -> Iterator[object]:
    try:
        doc = json.loads(_read_nofollow(path))
        yield from doc["manifests"]
    except (OSError, ValueError, RecursionError, KeyError, TypeError):
        return  # changed since entries() read it; what entries() returned is what we check


class _Walk:
    """One entry of ``index.json`` walked down to its configs and layers: the problems found,
    and the entry's name recorded in ``users`` for every blob it lists."""

    def __init__(
        self, store: Store, image: str, corrupt: set[Digest], users: dict[Digest, list[str]]
    ) -> None:
        self.store = store
        self.image = image
        self.corrupt = corrupt
        self.users = users
        self.seen: set[Digest] = set()

    def missing(self, path: Path, label: str, kind: str, d: Descriptor) -> Problem:
        return Problem(
            str(path),
            f"{label}: {kind} {d.digest} is missing",
            "not-found",
            MISSING,
            d.digest,
            (self.image,),
        )

    def check(self, label: str, kind: str, d: Descriptor) -> list[Problem]:
        """Check the blob ``d`` points at, and for a manifest or index, what it points at in turn.

        ``kind`` names the blob in messages (manifest, config, layer). The content of a blob in
        ``corrupt`` is not followed: it was reported already, and references read from bytes
        that are not what they should be would only add false problems.
        """
        store = self.store
        self.users.setdefault(d.digest, []).append(self.image)
        path = store.blob_path(d.digest)
        try:
            st = path.lstat()  # a link at a blob's name is no blob: a pull would fetch it again
        except FileNotFoundError:
            return [self.missing(path, label, kind, d)]
        except OSError as e:
            reason = e.strerror or str(e)
            return [
                Problem(str(path), f"{label}: cannot stat {kind} {d.digest}: {reason}", "storage")
            ]
        if not stat.S_ISREG(st.st_mode) or not store.has(d.digest):
            return [self.missing(path, label, kind, d)]
        problems = []
        if st.st_size != d.size:
            problems.append(
                Problem(
                    str(path),
                    f"{label}: {kind} {d.digest} is {st.st_size} bytes, expected {d.size}",
                    "digest-mismatch",
                )
            )
        is_manifest = d.media_type in MANIFEST_TYPES or d.media_type in INDEX_TYPES
        if not is_manifest or d.digest in self.corrupt or d.digest in self.seen:
            return problems  # a config, a layer, or a manifest of a kind pypull does not read
        self.seen.add(d.digest)
        if st.st_size > MAX_MANIFEST_SIZE:
            return [
                *problems,
                Problem(
                    str(path),
                    f"{label}: {kind} {d.digest} is too large to be a manifest",
                    "protocol",
                ),
            ]
        try:
            parsed = parse_manifest(store.read_blob(d.digest), where=str(d.digest))
        except (ManifestError, StoreError) as e:
            return [*problems, Problem(str(path), f"{label}: {e}", error_code(e))]
        if parsed.media_type != d.media_type:
            problems.append(
                Problem(
                    str(path),
                    f"{label}: {kind} {d.digest} has mediaType {parsed.media_type}, "
                    f"but its descriptor says {d.media_type}",
                    "protocol",
                )
            )
        if isinstance(parsed, Index):
            return problems + self.check_index(path, label, d, parsed)
        problems += self.check(label, "config", parsed.config)
        for layer in parsed.layers:
            problems += self.check(label, "layer", layer)
        return problems

    def check_index(self, path: Path, label: str, d: Descriptor, parsed: Index) -> list[Problem]:
        # A pull stores one platform of an index, so absent children are expected; but an
        # index none of whose images is here cannot be run at all.
        present = [
            c
            for c in parsed.manifests
            if (c.media_type in MANIFEST_TYPES or c.media_type in INDEX_TYPES)
            and self.store.has(c.digest)
        ]
        problems = []
        if not present:
            problems.append(
                Problem(
                    str(path),
                    f"{label}: none of the {len(parsed.manifests)} manifests "
                    f"of index {d.digest} is present",
                    "not-found",
                    MISSING,
                    d.digest,
                    (self.image,),
                )
            )
        for child in present:
            where = f"{label} ({child.platform})" if child.platform else label
            problems += self.check(where, "manifest", child)
        return problems


# -- .pypull/ingest -----------------------------------------------------------------------------


def _count_partials(store: Store) -> int:
    """Partial downloads a later pull resumes: worth showing, not wrong.

    Download locks (``*.lock``) and hidden temp files of small writes are not downloads.
    """
    for d in (store.ingest_dir.parent, store.ingest_dir):
        if (st := _lstat(d)) is None or not stat.S_ISDIR(st.st_mode):
            return 0  # absent, or a link (reported as such, and not listed through)
    try:
        names = [
            p
            for p in store.ingest_dir.iterdir()
            if (st := _lstat(p)) is not None and stat.S_ISREG(st.st_mode)
        ]
    except OSError:
        return 0
    return sum(1 for p in names if not p.name.endswith(".lock") and not p.name.startswith("."))
