"""A store that cannot be turned against its owner, and that others can share: links planted in
it by whoever else can write there never make pypull read, write, truncate or create anything
outside it, and what pypull creates has the modes other tools give (0666/0777 minus the umask)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fixtures.images import redis
from fixtures.registry import Registry
from puller.errors import StoreError
from puller.oci.digest import digest_of, parse_digest
from puller.oci.manifest import OCI_MANIFEST, Descriptor
from puller.store.layout import Store
from tests.support.helpers import partials, run_pypull

DATA = b'{"layers": "pretend this is a layer"}\n'
DIGEST = digest_of(DATA)
#: An mtime no write of ours can produce, so an unchanged one shows the file was not written.
OLD = 1_000_000_000
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory of the store's owner, outside the store: what a planted link aims at."""
    d = tmp_path / "outside"
    d.mkdir()
    return d


def victim(outside: Path, name: str = "victim", content: bytes = b"precious " * 100) -> Path:
    """A file of the owner's, with an old mtime."""
    path = outside / name
    path.write_bytes(content)
    os.utime(path, (OLD, OLD))
    return path


def assert_untouched(path: Path, content: bytes = b"precious " * 100) -> None:
    assert path.read_bytes() == content
    assert path.stat().st_mtime == OLD


def is_regular_file(path: Path) -> bool:
    return not path.is_symlink() and path.is_file()


def with_dirs(store: Path) -> Store:
    """An existing store, as a planted link finds it."""
    s = Store(store)
    s.ensure_layout()
    return s


# --- a link at a partial download --------------------------------------------------------------


def test_a_link_at_a_partial_is_replaced_and_the_file_it_points_at_is_untouched(
    store: Path, outside: Path
) -> None:
    target = victim(outside)
    s = with_dirs(store)
    s.partial_path(DIGEST).symlink_to(target)

    assert s.partial_size(DIGEST) == 0  # a link holds no download of ours
    w = s.writer(DIGEST, len(DATA))
    assert w.offset == 0  # what the link points at was not taken as a partial
    w.write(DATA)
    blob = w.commit(durable=False)

    assert_untouched(target)
    assert sorted(os.listdir(outside)) == ["victim"]
    assert is_regular_file(blob) and blob.read_bytes() == DATA
    assert os.listdir(s.ingest_dir) == []


def test_a_dangling_link_at_a_partial_creates_nothing_where_it_points(
    store: Path, outside: Path
) -> None:
    s = with_dirs(store)
    s.partial_path(DIGEST).symlink_to(outside / "created")

    w = s.writer(DIGEST, len(DATA))
    w.write(DATA[:10])
    w.close()  # interrupted: the partial stays, in the store

    assert os.listdir(outside) == []
    assert is_regular_file(s.partial_path(DIGEST))
    assert s.partial_size(DIGEST) == 10


def test_a_pull_over_planted_partial_links_leaves_their_targets_alone(
    registry: Registry, store: Path, outside: Path
) -> None:
    image = redis()
    ingest = store / ".pypull" / "ingest"
    ingest.mkdir(parents=True)
    targets = []
    for n, layer in enumerate(image.manifests[0].layers):
        target = victim(outside, f"victim-{n}")
        (ingest / f"sha256-{layer.digest.split(':')[1]}.partial").symlink_to(target)
        targets.append(target)

    run = run_pypull("--mirror", registry.url, "--mirror-only", "--store", store, "redis")

    assert run.returncode == 0, run.stderr
    for target in targets:
        assert_untouched(target)
    assert sorted(os.listdir(outside)) == [f"victim-{n}" for n in range(len(targets))]
    for layer in image.manifests[0].layers:
        blob = store / "blobs" / "sha256" / layer.digest.split(":")[1]
        assert is_regular_file(blob) and blob.read_bytes() == layer.data
    assert partials(store) == set()
    verify = run_pypull("verify", "--store", store)
    assert verify.returncode == 0, verify.stdout
    assert verify.stdout.endswith(": no problems\n")


NOT_A_FILE_SNIPPET = """
import sys
from puller.oci.digest import parse_digest
from puller.errors import StoreError
from puller.store.layout import Store

try:
    Store(sys.argv[1]).writer(parse_digest(sys.argv[2]), 10)
except StoreError as e:
    print(e)
"""


@pytest.mark.parametrize("make", [Path.mkdir, os.mkfifo], ids=["directory", "fifo"])
def test_a_partial_that_is_not_a_regular_file_is_refused_by_name(
    store: Path, make: Callable[[Path], object]
) -> None:
    s = with_dirs(store)
    make(s.partial_path(DIGEST))

    # In a process of its own, bounded: reading a FIFO as a partial would wait for ever.
    run = subprocess.run(
        [sys.executable, "-c", NOT_A_FILE_SNIPPET, str(store), str(DIGEST)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )

    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{s.partial_path(DIGEST)} is not a regular file\n"


# --- a link at a lock ----------------------------------------------------------------------------


def test_a_dangling_link_at_a_blob_lock_creates_nothing_where_it_points(
    store: Path, outside: Path
) -> None:
    s = with_dirs(store)
    lock = s.blob_lock(DIGEST)
    lock.path.symlink_to(outside / "created")

    assert lock.try_acquire()
    assert not s.blob_lock(DIGEST).try_acquire()  # still a lock: on the file put in its place
    lock.release()

    assert os.listdir(outside) == []
    assert os.listdir(s.ingest_dir) == []


def test_a_dangling_link_at_the_index_lock_creates_nothing_where_it_points(
    store: Path, outside: Path
) -> None:
    (store / ".pypull").mkdir(parents=True)
    (store / ".pypull" / "index.lock").symlink_to(outside / "created")

    Store(store).tag("app:1", Descriptor(OCI_MANIFEST, DIGEST, len(DATA)))

    assert os.listdir(outside) == []
    assert Store(store).lookup("app:1") is not None


# --- a link instead of a directory of the store --------------------------------------------------

DIRS = [("blobs",), ("blobs", "sha256"), (".pypull",), (".pypull", "ingest")]


@pytest.mark.parametrize("parts", DIRS, ids=["/".join(p) for p in DIRS])
@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda s: s.put_bytes(DIGEST, DATA), id="put_bytes"),
        pytest.param(lambda s: s.writer(DIGEST, len(DATA)).commit(), id="writer"),
        pytest.param(lambda s: s.blob_lock(DIGEST).try_acquire(), id="lock"),
    ],
)
def test_a_directory_of_the_store_that_is_a_link_is_refused_by_name(
    store: Path, outside: Path, parts: tuple[str, ...], write: object
) -> None:
    link = store.joinpath(*parts)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)

    with pytest.raises(StoreError) as info:
        write(Store(store))  # type: ignore[operator]

    assert str(info.value) == (
        f"{link} is a symbolic link: pypull does not follow links inside its store"
    )
    assert info.value.path == str(link)
    assert os.listdir(outside) == []


def test_a_blob_is_never_renamed_through_a_link_planted_during_its_download(
    store: Path, outside: Path
) -> None:
    s = Store(store)
    w = s.writer(DIGEST, len(DATA))
    w.write(DATA)
    blobs = store / "blobs" / "sha256"
    blobs.rename(store / "blobs" / "elsewhere")
    blobs.symlink_to(outside, target_is_directory=True)

    with pytest.raises(StoreError) as info:
        w.commit(durable=False)

    assert str(blobs) in str(info.value) and "symbolic link" in str(info.value)
    assert os.listdir(outside) == []
    assert s.partial_size(DIGEST) == 0  # not stored: the download is dropped, as on any failure


# --- a link in blobs/ ----------------------------------------------------------------------------


def test_a_link_at_a_blob_is_not_the_blob_and_storing_it_replaces_only_the_link(
    store: Path, outside: Path
) -> None:
    target = victim(outside, content=DATA)  # the right bytes, even: still not a blob of ours
    s = with_dirs(store)
    s.blob_path(DIGEST).symlink_to(target)

    assert not s.has(DIGEST)
    with pytest.raises(StoreError) as info:
        s.read_blob(DIGEST)
    assert str(info.value) == (
        f"{s.blob_path(DIGEST)} is a symbolic link: pypull does not follow links inside its store"
    )

    s.put_bytes(DIGEST, DATA)

    assert s.has(DIGEST) and is_regular_file(s.blob_path(DIGEST))
    assert_untouched(target, DATA)


def test_index_json_that_is_a_link_is_refused_not_read_or_replaced(
    store: Path, outside: Path
) -> None:
    s = with_dirs(store)
    target = victim(outside, content=s.index_path.read_bytes())
    s.index_path.unlink()
    s.index_path.symlink_to(target)

    with pytest.raises(StoreError) as info:
        Store(store).tag("app:1", Descriptor(OCI_MANIFEST, DIGEST, len(DATA)))

    assert str(info.value) == (
        f"{s.index_path} is a symbolic link: pypull does not follow links inside its store"
    )
    assert s.index_path.is_symlink()
    assert target.stat().st_mtime == OLD


# --- the mode of what a pull creates: 0666/0777 minus the umask ------------------------------

MODES_SNIPPET = """
import json, stat, sys
from pathlib import Path
from puller.oci.digest import digest_of
from puller.oci.manifest import OCI_MANIFEST, Descriptor
from puller.store.layout import Store

root = Path(sys.argv[1])
s = Store(root)
layer = b"a layer"
w = s.writer(digest_of(layer), len(layer))
w.write(layer)
w.commit(durable=False)
manifest = b"a manifest"
s.put_bytes(digest_of(manifest), manifest)
s.tag("app:1", Descriptor(OCI_MANIFEST, digest_of(manifest), len(manifest)))
w = s.writer(digest_of(b"partial"), 7)
w.write(b"par")
w.close()
lock = s.blob_lock(digest_of(b"another layer"))
assert lock.try_acquire()
paths = [root, *root.rglob("*")]
print(json.dumps({str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in paths}))
lock.release()
"""

UMASKS = [
    pytest.param(0o022, 0o644, 0o755, id="umask-022-others-read"),
    pytest.param(0o002, 0o664, 0o775, id="umask-002-a-group-shares"),
]


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), UMASKS)
def test_every_file_and_directory_of_the_store_follows_the_umask(
    store: Path, umask: int, file_mode: int, dir_mode: int
) -> None:
    run = subprocess.run(
        [sys.executable, "-c", MODES_SNIPPET, str(store)],
        capture_output=True,
        text=True,
        umask=umask,
        cwd=REPO_ROOT,
    )
    assert run.returncode == 0, run.stderr
    modes: dict[str, int] = json.loads(run.stdout)

    layer, manifest = digest_of(b"a layer").hex, digest_of(b"a manifest").hex
    expected_files = {
        "oci-layout",
        "index.json",
        f"blobs/sha256/{layer}",
        f"blobs/sha256/{manifest}",
        ".pypull/index.lock",
        f".pypull/ingest/sha256-{digest_of(b'partial').hex}.partial",
        f".pypull/ingest/sha256-{digest_of(b'another layer').hex}.lock",
    }
    expected_dirs = {".", "blobs", "blobs/sha256", ".pypull", ".pypull/ingest"}
    assert set(modes) == expected_files | expected_dirs
    assert {p: oct(modes[p]) for p in expected_files} == dict.fromkeys(
        expected_files, oct(file_mode)
    )
    assert {p: oct(modes[p]) for p in expected_dirs} == dict.fromkeys(expected_dirs, oct(dir_mode))


def test_a_pull_under_umask_002_leaves_a_store_a_group_can_share(
    registry: Registry, store: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPULL_")}
    run = subprocess.run(
        [
            *(sys.executable, "-m", "puller", "--mirror", registry.url, "--mirror-only"),
            *("--store", str(store), "-q", "redis"),
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        umask=0o002,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr

    image = redis()
    manifest = store / "blobs" / "sha256" / parse_digest(image.digest).hex
    assert manifest.exists()
    modes = {
        str(p.relative_to(store)): oct(p.lstat().st_mode & 0o7777)
        for p in [store, *store.rglob("*")]
    }
    wrong = {p: m for p, m in modes.items() if m != ("0o775" if (store / p).is_dir() else "0o664")}
    assert wrong == {}
    assert {"index.json", "oci-layout", ".pypull/index.lock"} <= set(modes)
    assert len([p for p in modes if p.startswith("blobs/sha256/")]) == len(image.blobs) + 1
