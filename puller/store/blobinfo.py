"""Where blobs were seen: per registry, the repositories that held each blob, most recent first.

    STORE/.pypull/blobinfo.db   an SQLite database (stdlib ``sqlite3``)

A pull, a copy and a push record the repositories they read each blob from or put it into; a
copy or a push into a repository that lacks a blob then asks the registry to mount it from the
repository recorded last (``POST …/blobs/uploads/?mount=D&from=REPO``) instead of sending it
again, across runs, as skopeo's blob-info cache does. The record is only a hint and is never
trusted beyond that mount attempt: a registry that refuses the mount (the repository is gone,
or no longer has the blob, or the registry does not mount) gets a plain upload, and the stale
row is forgotten.

* Concurrent processes: every write is one short ``BEGIN IMMEDIATE`` transaction under
  SQLite's own file locking (a rollback journal, no shared memory, so a group-shared store
  works as it does for the other files), waiting up to ``BUSY_TIMEOUT`` seconds for another
  writer. A write that still cannot get in is dropped: a lost hint costs an upload, no more.
* Bounded: at most ``max_rows`` rows (``DEFAULT_MAX_ROWS``); the least recently seen go first.
  ``pypull prune`` also drops rows not seen for ``STALE_AFTER`` seconds.
* Never a crash: a file that is not this database (corrupt, another schema version, a link, a
  directory) is moved aside or ignored and the record rebuilt; any SQLite error on the way is a
  hint not given. Writes skip the fsyncs (``synchronous=OFF``): a record torn by a power cut
  reads as corrupt and is rebuilt.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PullError
from ..oci.digest import Digest
from ..oci.reference import valid_repository

if TYPE_CHECKING:
    import sqlite3

    from .layout import Store

__all__ = ["DEFAULT_MAX_ROWS", "FILENAME", "BlobInfo", "Sightings", "blob_info"]

FILENAME = "blobinfo.db"
SCHEMA_VERSION = 1
DEFAULT_MAX_ROWS = 50_000
BUSY_TIMEOUT = 5.0
STALE_AFTER = 90 * 24 * 3600.0
_MAX_NAME = 255  # a registry's URL or a repository's path longer than this is not recorded
_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    registry TEXT NOT NULL,
    digest TEXT NOT NULL,
    repository TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (registry, digest, repository)
);
CREATE INDEX IF NOT EXISTS seen_at ON seen (at);
"""


def blob_info(store: Store) -> BlobInfo:
    """The record of ``store`` (``STORE/.pypull/blobinfo.db``), its directory opened as the
    store opens its own: through no link."""
    return BlobInfo(
        store.root / ".pypull" / FILENAME,
        directory=lambda create: store.open_dir((".pypull",), create=create),
    )


class BlobInfo:
    """The blob-location record at ``path``: ``seen`` feeds it, ``where`` reads it.
    ``directory(create)``, if given, opens the directory of ``path`` and returns its descriptor
    (the file is then reached through that descriptor, ``/proc/self/fd/N/NAME``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_rows: int = DEFAULT_MAX_ROWS,
        directory: Callable[[bool], int] | None = None,
    ) -> None:
        self.path = Path(path)
        self.max_rows = max_rows
        self._directory = directory

    def seen(self, registry: str, entries: Iterable[tuple[Digest, str]]) -> None:
        """Record that each (blob, repository) of ``entries`` is held at ``registry`` now."""
        self.update([(registry, digest, repository) for digest, repository in entries])

    def forget(self, registry: str, digest: Digest, repository: str) -> None:
        """A mount from ``repository`` was refused: do not suggest it for this blob again."""
        self.update((), [(registry, digest, repository)])

    def update(
        self,
        seen: Iterable[tuple[str, Digest, str]],
        forget: Iterable[tuple[str, Digest, str]] = (),
    ) -> None:
        """In one transaction: each (registry, blob, repository) of ``seen`` is held there now;
        each of ``forget`` is not."""
        now = time.time()
        rows = [(r, str(d), repo, now) for r, d, repo in seen if _fits(r) and _fits(repo)]
        gone = [(r, str(d), repo) for r, d, repo in forget]
        if not rows and not gone:
            return
        insert = (
            "INSERT INTO seen (registry, digest, repository, at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (registry, digest, repository) DO UPDATE SET at = excluded.at"
        )
        delete = "DELETE FROM seen WHERE registry = ? AND digest = ? AND repository = ?"

        def change(db: sqlite3.Connection) -> None:
            db.executemany(delete, gone)
            if rows:
                db.executemany(insert, rows)
                self._bound(db)

        self._write(change, create=bool(rows))

    def where(self, registry: str, digest: Digest, limit: int = 3) -> list[str]:
        """The repositories of ``registry`` that held ``digest``, most recently seen first
        (none when the record is missing or unreadable)."""
        return self.where_each(registry, [digest], None, limit)[digest][0]

    def where_each(
        self, registry: str, digests: Iterable[Digest], target: str | None, limit: int = 3
    ) -> dict[Digest, tuple[list[str], bool]]:
        """For each of ``digests``: up to ``limit`` repositories other than ``target`` that
        held it, most recently seen first, and whether ``target`` did (however long ago).
        Read through one connection: an image's blobs at once, where a connection each cost
        about 1 ms."""
        found: dict[Digest, tuple[list[str], bool]] = {d: ([], False) for d in digests}
        with self._connected(create=False) as db:
            if db is None:
                return found
            query = (
                "SELECT repository FROM seen WHERE registry = ? AND digest = ? "
                "ORDER BY repository = ? DESC, at DESC LIMIT ?"
            )
            for digest in found:
                try:
                    rows = db.execute(query, (registry, str(digest), target, limit + 1)).fetchall()
                except Exception:  # a hint not given, whatever SQLite says
                    return found
                # The file may have been written by anyone: only a repository's name goes
                # into the mount's URL.
                names = [r[0] for r in rows if isinstance(r[0], str) and valid_repository(r[0])]
                others = [n for n in names if n != target][:limit]
                found[digest] = (others, target is not None and target in names)
            return found

    def prune(self, older_than: float = STALE_AFTER, now: float | None = None) -> int:
        """Drop rows not seen for ``older_than`` seconds; how many went."""
        cutoff = (time.time() if now is None else now) - older_than
        gone: list[int] = []

        def drop(db: sqlite3.Connection) -> None:
            gone.append(db.execute("DELETE FROM seen WHERE at < ?", (cutoff,)).rowcount)

        self._write(drop, create=False)
        return sum(gone)

    def rows(self) -> int:
        """How many rows the record holds (0 when there is none)."""
        with self._connected(create=False) as db:
            try:
                return (
                    0 if db is None else int(db.execute("SELECT count(*) FROM seen").fetchone()[0])
                )
            except Exception:
                return 0

    # -- the file ---------------------------------------------------------------------------------

    def _bound(self, db: sqlite3.Connection) -> None:
        (count,) = db.execute("SELECT count(*) FROM seen").fetchone()
        if count > self.max_rows:
            db.execute(
                "DELETE FROM seen WHERE rowid IN (SELECT rowid FROM seen ORDER BY at LIMIT ?)",
                (count - self.max_rows,),
            )

    def _write(self, change: Callable[[sqlite3.Connection], object], create: bool = True) -> None:
        """Run ``change(db)`` in one immediate transaction; on any failure, nothing."""
        with self._connected(create=create) as db:
            if db is None:
                return
            try:
                db.execute("BEGIN IMMEDIATE")
                change(db)
                db.execute("COMMIT")
            except Exception:  # a lost hint costs an upload, no more
                with suppress(Exception):
                    db.execute("ROLLBACK")

    @contextmanager
    def _connected(self, create: bool) -> Iterator[sqlite3.Connection | None]:
        """``_open`` for the ``with`` block (None: no record to be had), the directory's
        descriptor held open as long as the connection."""
        fd = None
        try:
            if self._directory is not None:
                fd = self._directory(create)
        except (OSError, PullError):  # no store yet, or a link where .pypull/ should be
            yield None
            return
        try:
            via = Path(f"/proc/self/fd/{fd}")  # Linux; elsewhere the path, checked above
            path = via / self.path.name if fd is not None and via.is_dir() else self.path
            db = self._open(path, create)
            try:
                yield db
            finally:
                if db is not None:
                    db.close()
        finally:
            if fd is not None:
                os.close(fd)

    def _open(self, path: Path, create: bool) -> sqlite3.Connection | None:
        """A connection to a database of this schema at ``path``, made (or remade in place of
        a file that is not one) when ``create``; None when there is none to be had."""
        import sqlite3

        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                return None
            st = None
        except OSError:
            return None
        if st is not None and not stat.S_ISREG(st.st_mode):
            if not (create and stat.S_ISLNK(st.st_mode)):
                return None
            with suppress(OSError):  # a link in pypull's scratch directory: replaced
                os.unlink(path)
            st = None
        if st is None:  # made here, 0666 minus the umask as the store's files are (SQLite
            try:  # would make it 0644, and its journal takes the database's mode)
                path.parent.mkdir(parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                os.close(os.open(path, flags, 0o666))
            except FileExistsError:
                pass  # another process made it meanwhile
            except OSError:
                return None
        for attempt in range(2):
            try:
                db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
            except Exception:
                return None
            try:
                if _ready(db, create):
                    return db
                db.close()
                return None
            except sqlite3.OperationalError:
                # Locked by another writer past BUSY_TIMEOUT, or not writable: a record
                # that may be sound, and in use. No hint this time.
                db.close()
                return None
            except sqlite3.DatabaseError:
                db.close()
                if not create or attempt:
                    return None
                self._set_aside(path)
        return None

    @staticmethod
    def _set_aside(path: Path) -> None:
        """Remove a file that is not this record (and its journal), so it is made anew."""
        for name in (path, Path(f"{path}-journal")):
            with suppress(OSError):
                os.unlink(name)


def _ready(db: sqlite3.Connection, create: bool) -> bool:
    """Whether ``db`` has this schema (made now, if empty and ``create``). A database of
    another version raises ``DatabaseError`` so that it is rebuilt."""
    import sqlite3

    db.execute("PRAGMA trusted_schema = OFF")
    db.execute("PRAGMA synchronous = OFF")
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version == SCHEMA_VERSION:
        if _objects(db) != _schema_objects():
            # A trigger or a view, or another table, is SQL of whoever wrote the file, run by
            # our writes: not this record.
            raise sqlite3.DatabaseError("a record whose schema is not this one")
        (mode,) = db.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() == "wal":  # kept in the file: shared memory, not ours to make
            raise sqlite3.DatabaseError("a record in WAL mode")
        return True
    if not create:
        return False
    db.execute("BEGIN IMMEDIATE")  # another process may be making it at this moment
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version != SCHEMA_VERSION:
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if version != 0 or tables:
                raise sqlite3.DatabaseError(f"a record of schema {version}, not {SCHEMA_VERSION}")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        with suppress(Exception):
            db.execute("ROLLBACK")
        raise
    return True


def _objects(db: sqlite3.Connection) -> list[tuple[object, ...]]:
    """What the schema of ``db`` is made of, as SQLite keeps it."""
    return sorted(
        db.execute("SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master").fetchall(),
        key=repr,
    )


@cache
def _schema_objects() -> list[tuple[object, ...]]:
    """``_objects`` of a record made by this version."""
    import sqlite3

    db = sqlite3.connect(":memory:")
    try:
        db.executescript(_SCHEMA)
        return _objects(db)
    finally:
        db.close()


def _fits(name: str) -> bool:
    return 0 < len(name) <= _MAX_NAME and name.isprintable()


class Sightings:
    """One run's use of the record: what it saw is kept in memory and written in one
    transaction by ``flush``; look-ups and writes run off the event loop."""

    def __init__(self, info: BlobInfo) -> None:
        self.info = info
        self._seen: dict[str, dict[tuple[Digest, str], None]] = {}
        self._refused: list[tuple[str, Digest, str]] = []
        # What the record said, per (registry, blob, target repository), read once a run;
        # and the hints a registry refused in this run, never offered again.
        self._read: dict[tuple[str, Digest, str], tuple[list[str], bool]] = {}
        self._gone: set[tuple[str, Digest, str]] = set()

    def saw(self, registry: str, digest: Digest, repository: str) -> None:
        """``registry``'s ``repository`` holds ``digest`` (it was read there or put there)."""
        self._seen.setdefault(registry, {})[(digest, repository)] = None

    def refused(self, registry: str, digest: Digest, repository: str) -> None:
        """A mount of ``digest`` from ``repository`` was refused: the record's hint was stale."""
        self._seen.get(registry, {}).pop((digest, repository), None)
        self._refused.append((registry, digest, repository))
        self._gone.add((registry, digest, repository))

    async def read(self, registry: str, digests: Iterable[Digest], target: str) -> None:
        """Look ``digests`` up in the record at once (an image's blobs), for ``where``."""
        import asyncio

        wanted = [d for d in dict.fromkeys(digests) if (registry, d, target) not in self._read]
        if wanted:
            found = await asyncio.get_running_loop().run_in_executor(
                None, self.info.where_each, registry, wanted, target
            )
            for digest, answer in found.items():  # a look-up that raced this one stands
                self._read.setdefault((registry, digest, target), answer)

    async def where(self, registry: str, digest: Digest, target: str) -> tuple[str | None, bool]:
        """The repository of ``registry`` most recently seen holding ``digest`` other than
        ``target``, if the record knows one and no mount from it was refused in this run; and
        whether the record saw ``target`` holding it."""
        await self.read(registry, [digest], target)
        others, there = self._read[(registry, digest, target)]
        hint = next((r for r in others if (registry, digest, r) not in self._gone), None)
        return hint, there

    async def flush(self) -> None:
        """Write what was seen and refused since the last flush."""
        import asyncio

        seen, self._seen = self._seen, {}
        refused, self._refused = self._refused, []
        if seen or refused:
            await asyncio.get_running_loop().run_in_executor(None, self.write, seen, refused)

    def write(
        self,
        seen: dict[str, dict[tuple[Digest, str], None]],
        refused: list[tuple[str, Digest, str]],
    ) -> None:
        rows = [(registry, d, repo) for registry, entries in seen.items() for d, repo in entries]
        self.info.update(rows, refused)
