"""The store as a user (or skopeo) sees it on disk: an OCI image layout that holds verified blobs
only, whose index.json keeps every tag however many threads or processes write it at once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from puller.errors import DigestMismatch, InvalidDigest, SizeMismatch, StoreError
from puller.oci.digest import Digest, digest_of
from puller.oci.manifest import OCI_MANIFEST, REF_NAME_ANNOTATION, Descriptor, Platform
from puller.store.layout import Store, default_store_path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = b'{"layers": "pretend this is a manifest"}\n'
DIGEST = digest_of(DATA)
WHERE = "http://127.0.0.1:5000/v2/app/blobs/" + str(DIGEST)


def files_under(root: Path) -> list[str]:
    """Every regular file below ``root``, as sorted relative paths (empty if ``root`` is absent)."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def manifest_descriptor(seed: str, size: int = 100, **kw: Any) -> Descriptor:
    return Descriptor(OCI_MANIFEST, digest_of(seed.encode()), size, **kw)


def read_index(root: Path) -> dict[str, Any]:
    doc = json.loads((root / "index.json").read_bytes())
    assert isinstance(doc, dict)
    return doc


def ref_names(root: Path) -> list[str]:
    return [e["annotations"][REF_NAME_ANNOTATION] for e in read_index(root)["manifests"]]


# --- creation: nothing until the first write --------------------------------------------------


def test_a_store_that_is_only_read_creates_nothing(store: Path) -> None:
    s = Store(store)
    assert not s.has(DIGEST)
    assert s.entries() == []
    assert s.lookup("docker.io/library/redis:latest") is None
    assert str(store) in repr(s)
    assert s.blob_path(DIGEST) == store / "blobs" / "sha256" / DIGEST.hex
    assert not store.exists()


def test_reading_a_missing_blob_names_its_path_and_creates_nothing(store: Path) -> None:
    with pytest.raises(StoreError) as info:
        Store(store).read_blob(DIGEST)
    path = str(store / "blobs" / "sha256" / DIGEST.hex)
    assert path in str(info.value)
    assert info.value.path == path
    assert not store.exists()


def test_put_bytes_of_wrong_content_leaves_no_store_behind(store: Path) -> None:
    with pytest.raises(DigestMismatch):
        Store(store).put_bytes(DIGEST, b"not the manifest")
    assert not store.exists()


# --- the layout after a write -----------------------------------------------------------------


def test_put_bytes_writes_an_oci_image_layout(store: Path) -> None:
    Store(store).put_bytes(DIGEST, DATA)

    assert json.loads((store / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    index = read_index(store)
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert index["manifests"] == []
    assert (store / "blobs" / "sha256" / DIGEST.hex).read_bytes() == DATA
    assert files_under(store / "blobs") == [f"sha256/{DIGEST.hex}"]
    assert files_under(store / ".pypull" / "ingest") == []


def test_put_bytes_is_readable_back_and_idempotent(store: Path) -> None:
    s = Store(store)
    s.put_bytes(DIGEST, DATA)
    s.put_bytes(DIGEST, DATA)
    assert Store(store).has(DIGEST)
    assert Store(store).read_blob(DIGEST) == DATA
    assert files_under(store / "blobs") == [f"sha256/{DIGEST.hex}"]


def test_put_bytes_of_wrong_content_stores_nothing(store: Path) -> None:
    with pytest.raises(DigestMismatch) as info:
        Store(store).put_bytes(DIGEST, b"not the manifest", WHERE)
    assert WHERE in str(info.value)
    assert files_under(store / "blobs") == []
    assert files_under(store / ".pypull" / "ingest") == []
    assert not Store(store).has(DIGEST)


def test_a_second_store_object_reuses_an_existing_layout(store: Path) -> None:
    s = Store(store)
    s.tag("a", manifest_descriptor("a"))
    Store(store).put_bytes(DIGEST, DATA)  # ensure_layout on an existing store: keeps index.json
    assert ref_names(store) == ["a"]


# --- BlobWriter: only verified content reaches blobs/ -----------------------------------------


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([DATA], id="one-chunk"),
        pytest.param([DATA[:7], DATA[7:20], DATA[20:]], id="three-chunks"),
        pytest.param([memoryview(DATA)], id="memoryview"),
    ],
)
@pytest.mark.parametrize(
    "size", [pytest.param(len(DATA), id="sized"), pytest.param(None, id="unsized")]
)
def test_writer_commits_verified_content_into_blobs(
    store: Path, chunks: list[bytes], size: int | None
) -> None:
    w = Store(store).writer(DIGEST, size)
    for c in chunks:
        w.write(c)
    assert w.size == len(DATA)
    target = w.commit(durable=False)
    assert target == store / "blobs" / "sha256" / DIGEST.hex
    assert target.read_bytes() == DATA
    assert files_under(store / ".pypull" / "ingest") == []


def test_a_partial_download_lives_outside_blobs(store: Path) -> None:
    s = Store(store)
    w = s.writer(DIGEST, len(DATA))
    w.write(DATA[:10])
    assert files_under(store / "blobs") == []
    assert not s.has(DIGEST)
    assert w.path.parent == store / ".pypull" / "ingest"
    assert w.path.read_bytes() == DATA[:10]
    w.abort()


def _stored_nothing(store: Path) -> None:
    assert files_under(store / "blobs") == []
    assert files_under(store / ".pypull" / "ingest") == []
    assert not Store(store).has(DIGEST)


# content fed to the writer, the error commit() raises, words its message must contain
BAD_AT_COMMIT = [
    pytest.param(
        DATA.upper(), DigestMismatch, ["digest mismatch", "got sha256:"], id="wrong-bytes"
    ),
    pytest.param(
        DATA[:-1],
        SizeMismatch,
        [f"expected {len(DATA)} bytes, got {len(DATA) - 1}"],
        id="one-byte-short",
    ),
    pytest.param(b"", SizeMismatch, [f"expected {len(DATA)} bytes, got 0"], id="nothing"),
]


@pytest.mark.parametrize(("content", "error", "words"), BAD_AT_COMMIT)
def test_writer_refuses_bad_content_at_commit_and_leaves_nothing(
    store: Path, content: bytes, error: type[Exception], words: list[str]
) -> None:
    w = Store(store).writer(DIGEST, len(DATA), WHERE)
    w.write(content)
    with pytest.raises(error) as info:
        w.commit()
    for word in words:
        assert word in str(info.value)
    assert str(DIGEST) in str(info.value) and WHERE in str(info.value)
    _stored_nothing(store)


def test_writer_refuses_a_long_body_as_soon_as_it_runs_long(store: Path) -> None:
    w = Store(store).writer(DIGEST, len(DATA), WHERE)
    w.write(DATA)
    with pytest.raises(SizeMismatch, match=f"more than the expected {len(DATA)} bytes"):
        w.write(b"!")
    assert files_under(store / "blobs") == []
    w.abort()
    _stored_nothing(store)


def test_abort_removes_the_partial_file_and_may_be_repeated(store: Path) -> None:
    w = Store(store).writer(DIGEST, len(DATA))
    w.write(DATA[:5])
    assert w.path.exists()
    w.abort()
    assert not w.path.exists()
    w.abort()
    _stored_nothing(store)


def test_an_interrupted_download_resumes_where_it_stopped(store: Path) -> None:
    s = Store(store)
    first = s.writer(DIGEST, len(DATA))
    assert first.offset == 0
    first.write(DATA[:10])
    first.close()  # Ctrl-C, a dropped connection: the partial stays
    assert s.partial_size(DIGEST) == 10
    assert not s.has(DIGEST)

    again = s.writer(DIGEST, len(DATA))
    assert again.offset == 10  # re-hashed from disk, so the digest check still covers it all
    again.write(DATA[10:])
    again.commit(durable=False)
    assert s.read_blob(DIGEST) == DATA
    assert files_under(store / ".pypull" / "ingest") == []


def test_a_resumed_partial_with_wrong_bytes_fails_verification_and_is_removed(store: Path) -> None:
    s = Store(store)
    w = s.writer(DIGEST, len(DATA))
    w.write(b"X" * 10)
    w.close()
    again = s.writer(DIGEST, len(DATA))
    again.write(DATA[10:])
    with pytest.raises(DigestMismatch):
        again.commit(durable=False)
    assert s.partial_size(DIGEST) == 0 and not s.has(DIGEST)


def test_a_partial_longer_than_the_blob_starts_over(store: Path) -> None:
    s = Store(store)
    w = s.writer(DIGEST, None)
    w.write(DATA + b"extra")
    w.close()
    again = s.writer(DIGEST, len(DATA))
    assert again.offset == 0
    assert s.partial_size(DIGEST) == 0


def test_restart_drops_what_was_received(store: Path) -> None:
    s = Store(store)
    w = s.writer(DIGEST, len(DATA))
    w.write(b"junk")
    w.restart()  # the server ignored Range and sends the whole blob again
    w.write(DATA)
    w.commit(durable=False)
    assert s.read_blob(DIGEST) == DATA


def test_closing_a_writer_that_received_nothing_leaves_no_file(store: Path) -> None:
    s = Store(store)
    s.writer(DIGEST, len(DATA)).close()
    assert files_under(store / ".pypull" / "ingest") == []


def test_a_blob_lock_is_exclusive_and_leaves_no_file_behind(store: Path) -> None:
    s = Store(store)
    first, second = s.blob_lock(DIGEST), s.blob_lock(DIGEST)
    assert first.try_acquire()
    assert not second.try_acquire()  # another open file: as another process would see it
    first.release()
    assert files_under(store / ".pypull" / "ingest") == []
    assert second.try_acquire()
    second.release()


def test_a_blob_lock_is_exclusive_across_processes(store: Path) -> None:
    s = Store(store)
    lock = s.blob_lock(DIGEST)
    assert lock.try_acquire()
    probe = (
        "import sys; from puller.store.layout import Store; "
        "from puller.oci.digest import parse_digest; "
        f"sys.exit(0 if Store(sys.argv[1]).blob_lock(parse_digest('{DIGEST}')).try_acquire() "
        "else 3)"
    )
    held = subprocess.run([sys.executable, "-c", probe, str(store)], cwd=REPO_ROOT)
    lock.release()
    free = subprocess.run([sys.executable, "-c", probe, str(store)], cwd=REPO_ROOT)
    assert (held.returncode, free.returncode) == (3, 0)


# --- tags in index.json -----------------------------------------------------------------------


def test_tag_adds_an_entry_named_by_the_ref_name_annotation(store: Path) -> None:
    s = Store(store)
    d = manifest_descriptor(
        "redis", 1234, platform=Platform("linux", "arm64", "v8"), annotations={"x": "y"}
    )
    s.tag("docker.io/library/redis:latest", d)

    [entry] = read_index(store)["manifests"]
    assert entry == {
        "mediaType": OCI_MANIFEST,
        "digest": str(d.digest),
        "size": 1234,
        "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        "annotations": {"x": "y", REF_NAME_ANNOTATION: "docker.io/library/redis:latest"},
    }
    assert d.annotations == {"x": "y"}  # the caller's descriptor is not changed
    assert json.loads((store / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}


def test_lookup_finds_a_tag_and_only_that_tag(store: Path) -> None:
    s = Store(store)
    d = manifest_descriptor("redis")
    s.tag("docker.io/library/redis:latest", d)
    found = Store(store).lookup("docker.io/library/redis:latest")
    assert found == d
    assert found is not None
    assert found.annotations[REF_NAME_ANNOTATION] == "docker.io/library/redis:latest"
    assert Store(store).lookup("docker.io/library/redis:7") is None
    assert Store(store).lookup("redis") is None  # names are stored normalized, matched exactly


def test_retagging_a_name_replaces_its_entry(store: Path) -> None:
    s = Store(store)
    s.tag("app:latest", manifest_descriptor("old"))
    s.tag("app:latest", manifest_descriptor("new"))
    assert ref_names(store) == ["app:latest"]
    found = s.lookup("app:latest")
    assert found is not None and found.digest == digest_of(b"new")


def test_different_names_coexist(store: Path) -> None:
    s = Store(store)
    for name in ("a:1", "a:2", "b:1"):
        s.tag(name, manifest_descriptor(name))
    s.tag("a:2", manifest_descriptor("a:2 again"))
    assert sorted(ref_names(store)) == ["a:1", "a:2", "b:1"]
    assert [d.annotations[REF_NAME_ANNOTATION] for d in s.entries()] == ["a:1", "b:1", "a:2"]
    assert {n: s.lookup(n).digest for n in ("a:1", "b:1")} == {  # type: ignore[union-attr]
        "a:1": digest_of(b"a:1"),
        "b:1": digest_of(b"b:1"),
    }


def test_entries_other_tools_wrote_are_kept_and_unparsable_ones_skipped(store: Path) -> None:
    foreign = {"mediaType": OCI_MANIFEST, "digest": str(digest_of(b"umoci")), "size": 5}
    broken = {"mediaType": OCI_MANIFEST, "digest": "sha256:../../etc/passwd", "size": 5}
    store.mkdir()
    (store / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "manifests": [foreign, broken, "junk"]})
    )
    s = Store(store)
    assert [d.digest for d in s.entries()] == [digest_of(b"umoci")]
    s.tag("app:latest", manifest_descriptor("app"))
    manifests = read_index(store)["manifests"]
    assert manifests[:3] == [foreign, broken, "junk"]  # not ours to drop
    assert manifests[3]["annotations"] == {REF_NAME_ANNOTATION: "app:latest"}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        pytest.param(b"{half", "is not valid JSON", id="invalid-json"),
        pytest.param(b"[]", "has no manifests list", id="not-an-object"),
        pytest.param(b'{"schemaVersion": 2}', "has no manifests list", id="no-manifests"),
    ],
)
def test_a_corrupt_index_json_is_reported_with_its_path(
    store: Path, content: bytes, words: str
) -> None:
    store.mkdir()
    (store / "index.json").write_bytes(content)
    s = Store(store)
    for action in (s.entries, lambda: s.lookup("x"), lambda: s.tag("x", manifest_descriptor("x"))):
        with pytest.raises(StoreError) as info:
            action()
        assert str(store / "index.json") in str(info.value)
        assert words in str(info.value)
        assert info.value.path == str(store / "index.json")
    assert (store / "index.json").read_bytes() == content  # a failed tag does not overwrite it


# --- concurrency --------------------------------------------------------------------------------


def _tag_many(root: Path, prefix: str, count: int, start: threading.Barrier | None = None) -> None:
    s = Store(root)
    if start is not None:
        start.wait()
    for i in range(count):
        s.tag(f"{prefix}:{i}", manifest_descriptor(f"{prefix}:{i}"))


def test_concurrent_tags_from_threads_keep_every_entry(store: Path) -> None:
    threads, per_thread = 8, 10
    start = threading.Barrier(threads)
    workers = [
        threading.Thread(target=_tag_many, args=(store, f"t{n}", per_thread, start))
        for n in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    expected = sorted(f"t{n}:{i}" for n in range(threads) for i in range(per_thread))
    assert sorted(ref_names(store)) == expected
    assert files_under(store / ".pypull" / "ingest") == []


TAG_SNIPPET = """
import sys
from puller.oci.digest import digest_of
from puller.oci.manifest import OCI_MANIFEST, Descriptor
from puller.store.layout import Store

root, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = Store(root)
for i in range(count):
    name = f"{prefix}:{i}"
    store.tag(name, Descriptor(OCI_MANIFEST, digest_of(name.encode()), 100))
"""


def test_concurrent_tags_from_processes_keep_every_entry(store: Path) -> None:
    # The store does not exist yet: the processes also race to create the layout.
    processes, per_process = 4, 15
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TAG_SNIPPET, str(store), f"p{n}", str(per_process)],
            cwd=REPO_ROOT,
            stderr=subprocess.PIPE,
        )
        for n in range(processes)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    expected = sorted(f"p{n}:{i}" for n in range(processes) for i in range(per_process))
    assert sorted(ref_names(store)) == expected
    assert json.loads((store / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}


def test_index_json_is_never_seen_half_written(store: Path) -> None:
    Store(store).tag("seed:0", manifest_descriptor("seed"))
    writers, per_writer = 4, 15
    workers = [
        threading.Thread(target=_tag_many, args=(store, f"w{n}", per_writer))
        for n in range(writers)
    ]
    for w in workers:
        w.start()
    seen, reads = 1, 0
    # Read for as long as the writers run, bounded by a count rather than a clock.
    while any(w.is_alive() for w in workers) and reads < 200_000:
        raw = (store / "index.json").read_bytes()
        doc = json.loads(raw)  # a torn write fails here
        count = len(doc["manifests"])
        assert count >= seen, f"index.json went from {seen} entries to {count}"
        seen = count
        reads += 1
    for w in workers:
        w.join()
    assert reads > 0
    assert len(ref_names(store)) == 1 + writers * per_writer


# --- errors ---------------------------------------------------------------------------------------


@pytest.fixture
def unwritable(tmp_path: Path) -> Path:
    """A store path under a regular file: not creatable even by root (chmod does not stop root)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    return blocker / "store"


WRITES = [
    pytest.param(lambda s: s.put_bytes(DIGEST, DATA), id="put_bytes"),
    pytest.param(lambda s: s.writer(DIGEST, len(DATA)), id="writer"),
    pytest.param(lambda s: s.tag("app:latest", manifest_descriptor("app")), id="tag"),
    pytest.param(lambda s: s.ensure_layout(), id="ensure_layout"),
]


@pytest.mark.parametrize("write", WRITES)
def test_an_unwritable_store_raises_store_error_naming_the_path(
    unwritable: Path, write: Any
) -> None:
    with pytest.raises(StoreError) as info:
        write(Store(unwritable))
    message = str(info.value)
    assert str(unwritable) in message
    assert message.startswith("cannot ")
    assert "Not a directory" in message
    assert str(unwritable) in info.value.path
    assert (unwritable.parent).read_text() == "not a directory"


def test_reading_tags_of_an_unusable_store_path_names_the_path(unwritable: Path) -> None:
    s = Store(unwritable)
    assert not s.has(DIGEST)
    with pytest.raises(StoreError) as info:
        s.lookup("app:latest")
    assert str(unwritable / "index.json") in str(info.value)
    assert "Not a directory" in str(info.value)


# --- default_store_path -----------------------------------------------------------------------

DEFAULTS = [
    pytest.param(
        {"PYPULL_STORE": "/srv/images", "XDG_DATA_HOME": "/xdg"},
        "/srv/images",
        id="PYPULL_STORE-wins",
    ),
    pytest.param({"PYPULL_STORE": "~/images"}, "/home/u/images", id="PYPULL_STORE-tilde"),
    pytest.param(
        {"PYPULL_STORE": "", "XDG_DATA_HOME": "/xdg"},
        "/xdg/pypull",
        id="empty-PYPULL_STORE-ignored",
    ),
    pytest.param({"XDG_DATA_HOME": "/xdg"}, "/xdg/pypull", id="XDG_DATA_HOME"),
    pytest.param({"XDG_DATA_HOME": "~/data"}, "/home/u/data/pypull", id="XDG_DATA_HOME-tilde"),
    pytest.param({}, "/home/u/.local/share/pypull", id="home-default"),
    pytest.param(
        {"XDG_DATA_HOME": ""}, "/home/u/.local/share/pypull", id="empty-XDG_DATA_HOME-ignored"
    ),
    pytest.param(
        {"XDG_DATA_HOME": "relative/data"},
        "/home/u/.local/share/pypull",
        id="relative-XDG_DATA_HOME-ignored",
    ),
]


@pytest.mark.parametrize(("env", "expected"), DEFAULTS)
def test_default_store_path(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    for var in ("PYPULL_STORE", "XDG_DATA_HOME"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert default_store_path() == Path(expected)


@pytest.mark.parametrize(
    ("algorithm", "hex_"),
    [("sha256", "../../etc/passwd"), ("sha256", "../" + "a" * 61), ("../x", "a" * 64), ("", "")],
)
def test_no_digest_can_name_a_path_outside_blobs(algorithm: str, hex_: str) -> None:
    """Digest validates on construction, so blob_path can trust every Digest it is given."""
    with pytest.raises(InvalidDigest):
        Store("/s").blob_path(Digest(algorithm, hex_))


def test_sha512_blobs_live_under_their_own_algorithm() -> None:
    assert Store("/s").blob_path(Digest("sha512", "a" * 128)) == Path(
        "/s/blobs/sha512/" + "a" * 128
    )


class _ShortWrites:
    """A file whose writes take at most 7 bytes at a time, as a nearly full disk may."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def write(self, data: Any) -> int:
        return int(self.real.write(bytes(data[:7])))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_short_writes_are_completed_so_the_file_holds_what_was_hashed(store: Path) -> None:
    s = Store(store)
    w = s.writer(DIGEST, len(DATA))
    w._file = _ShortWrites(w._file)  # type: ignore[assignment]
    w.write(DATA)
    w.commit(durable=False)
    assert s.read_blob(DIGEST) == DATA


def test_a_file_shorter_than_what_was_hashed_is_never_committed(store: Path) -> None:
    s = Store(store)
    w = s.writer(DIGEST, len(DATA))
    w.write(DATA)
    w._file.truncate(10)  # bytes lost between write and commit
    with pytest.raises(StoreError, match="10 bytes on disk, 41 received"):
        w.commit(durable=False)
    assert not s.has(DIGEST) and s.partial_size(DIGEST) == 0


LOCK_STRESS = """
import os, sys
from puller.store.layout import Store
from puller.oci.digest import parse_digest
store, digest, rounds = Store(sys.argv[1]), parse_digest(sys.argv[2]), int(sys.argv[3])
owner = store.ingest_dir / "owner"
violations = done = 0
while done < rounds:
    lock = store.blob_lock(digest)
    if not lock.try_acquire():
        continue
    try:  # while we hold the lock nobody else may
        fd = os.open(owner, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
        os.unlink(owner)
    except FileExistsError:
        violations += 1
    lock.release()
    done += 1
print(violations)
"""


def test_the_blob_lock_excludes_other_processes_while_its_file_is_replaced(store: Path) -> None:
    """Each release removes the lock file; a process that locked the removed file must notice
    and lock the new one, or two processes would write one partial at once."""
    Store(store).ensure_layout()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOCK_STRESS, str(store), str(DIGEST), "300"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outs == ["0", "0", "0"]
