"""``pypull verify --repair``: what it removes (damaged blobs, files pypull did not put in
``blobs/``), what it never removes (a blob a running pypull holds, anything outside
``blobs/``), and what it says and exits with."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fixtures.images import make_image
from puller.oci.digest import digest_of, parse_digest
from puller.oci.manifest import Descriptor
from puller.store.layout import Store
from puller.store.repair import repair_store
from puller.store.verify import DAMAGED, MISSING, verify_store
from tests.support.helpers import run_pypull

REF = "docker.io/library/app:1"
IMAGE = make_image("library/app", "1", layers=3)
MANIFEST = IMAGE.manifests[0]
M = parse_digest(MANIFEST.digest)
L0, L1, L2 = (parse_digest(b.digest) for b in MANIFEST.layers)


@pytest.fixture
def app(store: Path) -> Store:
    """A store holding ``docker.io/library/app:1`` (3 layers), intact."""
    s = Store(store)
    for blob in MANIFEST.blobs:
        s.put_bytes(parse_digest(blob.digest), blob.data)
    s.put_bytes(M, MANIFEST.raw)
    s.tag(REF, Descriptor(MANIFEST.media_type, M, MANIFEST.size))
    return s


def flip_byte(path: Path) -> bytes:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(data)
    return bytes(data)


def test_a_damaged_layer_is_removed_and_the_image_then_only_lacks_it(app: Store) -> None:
    flip_byte(app.blob_path(L1))

    repair = repair_store(app, verify_store(app))

    assert [(p.kind, p.digest) for p in repair.removed] == [(DAMAGED, L1)]
    assert not app.blob_path(L1).exists()
    after = verify_store(app)
    assert [(p.kind, p.digest, p.images) for p in after.problems] == [(MISSING, L1, (REF,))]
    assert after.incomplete == (REF,)


def test_a_damaged_blob_a_running_pypull_holds_is_left(app: Store) -> None:
    flip_byte(app.blob_path(L1))
    report = verify_store(app)
    running = Store(app.root)  # another process's Store, as far as the lease's lock goes
    with running.lease():
        running.has(L1)  # recorded in its lease

        repair = repair_store(app, report)

    assert repair.removed == ()
    assert [(k.problem.digest, k.reason) for k in repair.kept] == [
        (L1, "a running pypull is using it")
    ]
    assert app.blob_path(L1).exists()
    # once it has ended, the blob goes
    assert [p.digest for p in repair_store(app, verify_store(app)).removed] == [L1]


def test_a_blob_made_whole_since_the_verify_is_left(app: Store) -> None:
    path = app.blob_path(L1)
    good = path.read_bytes()
    flip_byte(path)
    report = verify_store(app)
    path.write_bytes(good)

    repair = repair_store(app, report)

    assert [k.reason for k in repair.kept] == ["intact now"]
    assert path.read_bytes() == good


def test_foreign_files_and_links_in_blobs_go_and_what_a_link_points_at_stays(
    app: Store, tmp_path: Path
) -> None:
    stray = app.blobs_dir / "sha256" / "notes.txt"
    stray.write_bytes(b"mine")
    outside = tmp_path / "outside"
    outside.write_bytes(MANIFEST.layers[2].data)
    app.blob_path(L2).unlink()
    app.blob_path(L2).symlink_to(outside)
    directory = app.blobs_dir / "sha256" / digest_of(b"x").hex
    directory.mkdir()

    repair = repair_store(app, verify_store(app))

    assert sorted(p.path for p in repair.removed) == sorted([str(stray), str(app.blob_path(L2))])
    assert not os.path.lexists(app.blob_path(L2)) and not stray.exists()
    assert outside.read_bytes() == MANIFEST.layers[2].data
    assert directory.is_dir()  # left to a person
    assert [k.reason for k in repair.kept] == []  # a directory is not offered for removal


def test_nothing_outside_blobs_is_touched(app: Store, tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    app.index_path.rename(target)
    app.index_path.symlink_to(target)

    repair = repair_store(app, verify_store(app))

    assert repair.done == ()
    assert app.index_path.is_symlink()


# --- the command ---------------------------------------------------------------------------------


def test_pypull_verify_names_the_image_and_repair_says_what_it_removed(app: Store) -> None:
    damaged = flip_byte(app.blob_path(L1))

    run = run_pypull("verify", "--store", app.root)

    assert run.returncode == 1, run.stderr
    assert run.stdout.splitlines() == [
        f"corrupt blob {L1}: content hashes to {digest_of(damaged)}; used by {REF}",
        "5 blobs, 1 image, 0 partial downloads: 1 problem",
    ]

    run = run_pypull("verify", "--repair", "--store", app.root)

    assert run.returncode == 3, run.stderr
    assert run.stdout.splitlines() == [
        f"Removed: corrupt blob {L1}: content hashes to {digest_of(damaged)}; used by {REF}",
        f"{REF}: layer {L1} is missing",
        "4 blobs, 1 image, 0 partial downloads: 1 problem",
        f"To fetch what is missing: pypull pull {REF}",
    ]


def test_pypull_verify_repair_of_an_unused_blob_leaves_a_clean_store_and_exits_0(
    app: Store,
) -> None:
    app.untag(REF)
    flip_byte(app.blob_path(L1))

    run = run_pypull("verify", "--repair", "--store", app.root)

    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1] == "4 blobs, 0 images, 0 partial downloads: no problems"
    assert run.stdout.splitlines()[0].endswith("; unused: no image uses it")


def test_pypull_verify_repair_of_a_clean_store_changes_nothing(app: Store) -> None:
    run = run_pypull("verify", "--repair", "--store", app.root)

    assert run.returncode == 0, run.stderr
    assert run.stdout == "5 blobs, 1 image, 0 partial downloads: no problems\n"
