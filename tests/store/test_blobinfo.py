"""The record of where blobs live (``.pypull/blobinfo.db``): most recent first, shared by
concurrent processes without losing rows, bounded, pruned, and never a crash when its file is
corrupt, of another schema, a link or a directory."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from puller.oci.digest import Digest, parse_digest
from puller.store.blobinfo import BlobInfo, Sightings, blob_info
from puller.store.layout import Store
from puller.store.prune import prune

REG = "http://127.0.0.1:5000"


def digest(n: int) -> Digest:
    return parse_digest(f"sha256:{n:064x}")


def test_the_repositories_a_blob_was_seen_in_come_back_most_recent_first(tmp_path: Path) -> None:
    info = BlobInfo(tmp_path / "blobinfo.db")
    assert info.where(REG, digest(1)) == []  # no record yet: no hint, and no file made
    assert not (tmp_path / "blobinfo.db").exists()
    info.seen(REG, [(digest(1), "a/old")])
    info.seen(REG, [(digest(1), "b/new"), (digest(2), "b/new")])
    assert info.where(REG, digest(1)) == ["b/new", "a/old"]
    assert info.where("http://elsewhere:5000", digest(1)) == []  # per registry
    info.seen(REG, [(digest(1), "a/old")])  # seen again: the most recent now
    assert info.where(REG, digest(1)) == ["a/old", "b/new"]
    info.forget(REG, digest(1), "a/old")
    assert info.where(REG, digest(1)) == ["b/new"]


def _writer(path: str, worker: int, count: int) -> None:
    info = BlobInfo(path)
    for i in range(count):
        info.seen(REG, [(digest(worker * 1000 + i), f"repo/{worker}")])


def test_concurrent_processes_writing_at_once_lose_no_row(tmp_path: Path) -> None:
    path = str(tmp_path / ".pypull" / "blobinfo.db")
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_writer, args=(path, w, 40)) for w in range(6)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    info = BlobInfo(path)
    assert info.rows() == 6 * 40
    assert info.where(REG, digest(3 * 1000 + 7)) == ["repo/3"]


def test_the_record_keeps_at_most_max_rows_dropping_the_least_recently_seen(
    tmp_path: Path,
) -> None:
    info = BlobInfo(tmp_path / "blobinfo.db", max_rows=10)
    for i in range(25):
        info.seen(REG, [(digest(i), "r")])
    assert info.rows() == 10
    assert info.where(REG, digest(24)) == ["r"]
    assert info.where(REG, digest(14)) == []
    assert info.where(REG, digest(15)) == ["r"]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.write_bytes(b"not a database at all" * 200), id="garbage"),
        pytest.param(lambda p: p.write_bytes(b""), id="empty"),
        pytest.param(
            lambda p: sqlite3.connect(p).executescript(
                "CREATE TABLE seen (x); PRAGMA user_version = 99;"
            ),
            id="another-schema",
        ),
        pytest.param(
            lambda p: sqlite3.connect(p).executescript(
                "CREATE TABLE other (x); PRAGMA user_version = 1;"
            ),
            id="right-version-wrong-tables",
        ),
    ],
)
def test_a_record_that_is_not_one_gives_no_hint_and_is_rebuilt(
    tmp_path: Path, damage: Callable[[Path], object]
) -> None:
    path = tmp_path / "blobinfo.db"
    damage(path)
    info = BlobInfo(path)
    assert info.where(REG, digest(1)) == []
    info.seen(REG, [(digest(1), "a/b")])
    info.forget(REG, digest(2), "a/b")
    info.prune()
    # Rebuilt, unless the file claims this schema (then its wrong tables are only not read).
    assert info.where(REG, digest(1)) in (["a/b"], [])


def test_a_link_or_a_directory_at_the_record_is_never_followed_nor_a_crash(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.db"
    path = tmp_path / "blobinfo.db"
    path.symlink_to(elsewhere)
    info = BlobInfo(path)
    assert info.where(REG, digest(1)) == []
    info.seen(REG, [(digest(1), "a/b")])
    assert not elsewhere.exists()
    assert not path.is_symlink() and info.where(REG, digest(1)) == ["a/b"]
    path.unlink()
    path.mkdir()
    info.seen(REG, [(digest(1), "a/b")])
    assert info.where(REG, digest(1)) == [] and path.is_dir()


def test_prune_drops_rows_not_seen_for_long_and_a_store_prune_does_it(tmp_path: Path) -> None:
    info = BlobInfo(tmp_path / "blobinfo.db")
    info.seen(REG, [(digest(1), "r"), (digest(2), "r")])
    assert info.prune(older_than=3600, now=os.path.getmtime(info.path) + 7200) == 2
    assert info.rows() == 0

    store = Store(tmp_path / "store")
    store.ensure_layout()
    record = blob_info(store)
    record.seen(REG, [(digest(1), "r")])
    with sqlite3.connect(record.path) as db:
        db.execute("UPDATE seen SET at = 0")
    prune(store)
    assert record.rows() == 0


def test_a_link_at_the_store_s_pypull_directory_is_not_followed(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.ensure_layout()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pypull = tmp_path / "store" / ".pypull"
    shutil.rmtree(pypull, ignore_errors=True)
    pypull.symlink_to(elsewhere)
    record = blob_info(store)
    record.seen(REG, [(digest(1), "a/b")])  # no crash, and nothing written through the link
    assert record.where(REG, digest(1)) == []
    assert list(elsewhere.iterdir()) == []


def test_the_store_s_record_is_made_in_its_pypull_directory(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    record = blob_info(store)
    assert record.where(REG, digest(1)) == []
    record.seen(REG, [(digest(1), "a/b")])
    assert record.where(REG, digest(1)) == ["a/b"]
    assert (tmp_path / "store" / ".pypull" / "blobinfo.db").is_file()


@pytest.mark.parametrize(
    "repository", ["a/b?mount=x&from=c", "../../v2/other", "a/b#frag", "A/B", "a//b", "a/b/"]
)
def test_a_record_written_by_someone_else_never_suggests_a_name_that_is_no_repository(
    tmp_path: Path, repository: str
) -> None:
    info = BlobInfo(tmp_path / "blobinfo.db")
    info.seen(REG, [(digest(1), "good/repo")])
    with sqlite3.connect(info.path) as db:
        db.execute("INSERT INTO seen VALUES (?, ?, ?, ?)", (REG, str(digest(1)), repository, 9e18))
    db.close()
    assert info.where(REG, digest(1)) == ["good/repo"]


def test_a_record_with_a_trigger_of_someone_else_s_is_not_run_but_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "blobinfo.db"
    BlobInfo(path).seen(REG, [(digest(1), "a/b")])
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE ran (x);"
            "CREATE TRIGGER t AFTER INSERT ON seen BEGIN INSERT INTO ran VALUES (1); END;"
            "CREATE VIEW v AS SELECT * FROM seen;"
        )
    db.close()
    info = BlobInfo(path)
    assert info.where(REG, digest(1)) == []  # not this record: no hint from it
    info.seen(REG, [(digest(2), "c/d")])
    assert info.where(REG, digest(2)) == ["c/d"]
    with sqlite3.connect(path) as db:
        kinds = {row[0] for row in db.execute("SELECT type FROM sqlite_master")}
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert kinds == {"table", "index"} and "ran" not in names  # rebuilt: the trigger never ran


def test_a_record_another_process_holds_locked_is_left_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that waited past the busy timeout took the lock's "database is locked" for
    a corrupt file and removed the record (another process's open one): every hint gone."""
    import puller.store.blobinfo

    path = tmp_path / "blobinfo.db"
    info = BlobInfo(path)
    info.seen(REG, [(digest(1), "a/b")])
    monkeypatch.setattr(puller.store.blobinfo, "BUSY_TIMEOUT", 0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    info.seen(REG, [(digest(2), "c/d")])  # cannot get in: a hint lost, no more
    other.execute("INSERT INTO seen VALUES (?, ?, ?, ?)", (REG, str(digest(3)), "e/f", 1e9))
    other.execute("COMMIT")
    other.close()
    assert info.where(REG, digest(1)) == ["a/b"]
    assert info.where(REG, digest(3)) == ["e/f"]


def test_a_record_someone_switched_to_wal_is_rebuilt_with_a_rollback_journal(
    tmp_path: Path,
) -> None:
    """WAL mode is kept in the file and needs a shared-memory file beside it, which a reader
    of a read-only or group-shared store cannot make: the record is a rollback-journal one."""
    path = tmp_path / "blobinfo.db"
    info = BlobInfo(path)
    info.seen(REG, [(digest(1), "a/b")])
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = WAL")
    db.close()
    info.seen(REG, [(digest(2), "c/d")])
    assert info.where(REG, digest(2)) == ["c/d"]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    db.close()


async def test_a_hint_refused_in_a_run_is_not_offered_again_whatever_reads_land_later(
    tmp_path: Path,
) -> None:
    """A mount from the record's repository was refused for one image; another image's
    look-up of the same blob, landing after that, must not bring the hint back."""
    info = BlobInfo(tmp_path / "record.db")
    info.seen("http://r", [(digest(1), "rec/old")])
    run = Sightings(info)
    assert await run.where("http://r", digest(1), "t/a") == ("rec/old", False)
    run.refused("http://r", digest(1), "rec/old")
    await run.read("http://r", [digest(1)], "t/b")
    assert await run.where("http://r", digest(1), "t/b") == (None, False)


def test_the_record_says_the_target_held_a_blob_however_many_newer_rows_name_others(
    tmp_path: Path,
) -> None:
    info = BlobInfo(tmp_path / "record.db")
    for repo in ("t/one", "x/a", "x/b", "x/c", "x/d"):  # t/one's row is the oldest
        info.seen("http://r", [(digest(1), repo)])
    others, there = info.where_each("http://r", [digest(1)], "t/one")[digest(1)]
    assert there
    assert len(others) == 3 and "t/one" not in others
