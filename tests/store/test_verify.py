"""``verify_store``: what a user auditing a store after a crash is told, line by line.

Stores are built by hand from the fixture images, then damaged the way disks and people damage
them; each test asserts the exact lines ``pypull verify`` would print.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from fixtures.images import Manifest as FixtureManifest
from fixtures.images import make_image, multiplatform
from puller.errors import StoreError
from puller.oci.digest import Digest, digest_of, parse_digest
from puller.oci.manifest import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Descriptor
from puller.store.layout import Store
from puller.store.verify import DAMAGED, FOREIGN, MISSING, Problem, Report, verify_store
from tests.support.helpers import run_pypull

REF = "docker.io/library/app:1"
IMAGE = make_image("library/app", "1", layers=3)
MANIFEST = IMAGE.manifests[0]
M = parse_digest(MANIFEST.digest)
C = parse_digest(MANIFEST.config.digest)
L0, L1, L2 = (parse_digest(b.digest) for b in MANIFEST.layers)


def put_manifest(s: Store, m: FixtureManifest) -> Descriptor:
    """Store a manifest with its config and layers, as a pull does; return its descriptor."""
    for blob in m.blobs:
        s.put_bytes(parse_digest(blob.digest), blob.data)
    s.put_bytes(parse_digest(m.digest), m.raw)
    return Descriptor(m.media_type, parse_digest(m.digest), m.size)


def lines(report: Report) -> list[str]:
    return [str(p) for p in report.problems]


@pytest.fixture
def app(store: Path) -> Store:
    """A store holding ``docker.io/library/app:1`` (3 layers), intact."""
    s = Store(store)
    s.tag(REF, put_manifest(s, MANIFEST))
    return s


# --- a healthy store ---------------------------------------------------------------------------


def test_a_clean_store_has_no_problems_and_counts_what_it_checked(store: Path) -> None:
    s = Store(store)
    s.tag(REF, put_manifest(s, MANIFEST))
    docker = make_image("library/dockerimg", "latest", layers=2, family="docker")
    s.tag("docker.io/library/dockerimg:latest", put_manifest(s, docker.manifests[0]))
    seen: list[Digest] = []

    report = verify_store(s, on_blob=seen.append)

    assert report == Report(blobs=9, images=2, partials=0, problems=())
    assert report.ok
    every_blob = {parse_digest(b.digest) for b in (*MANIFEST.blobs, *docker.manifests[0].blobs)}
    assert set(seen) == every_blob | {M, parse_digest(docker.digest)}
    assert len(seen) == 9


def test_a_partial_download_is_counted_not_a_problem(app: Store) -> None:
    layer = MANIFEST.layers[1]
    w = app.writer(L1, layer.size)
    w.write(layer.data[:100])
    (app.ingest_dir / f"sha256-{L1.hex}.lock").touch()  # a download's lock is not a partial
    try:
        report = verify_store(app)
    finally:
        w.abort()
    assert report == Report(blobs=5, images=1, partials=1, problems=())


def test_a_store_that_does_not_exist_is_an_error_and_is_not_created(store: Path) -> None:
    with pytest.raises(StoreError) as info:
        verify_store(Store(store))
    assert str(info.value) == f"no store at {store}"
    assert info.value.path == str(store)
    assert not store.exists()


def test_an_empty_directory_is_not_a_store(store: Path) -> None:
    store.mkdir()
    report = verify_store(Store(store))
    assert lines(report) == [
        f"{store}/oci-layout is missing",
        f"{store}/blobs is missing",
        f"{store}/index.json is missing",
    ]
    assert (report.blobs, report.images, report.ok) == (0, 0, False)


# --- damaged blobs -----------------------------------------------------------------------------


def flip_byte(path: Path) -> bytes:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(data)
    return bytes(data)


def test_a_flipped_byte_in_a_layer_names_the_blob_and_what_it_hashes_to(app: Store) -> None:
    path = app.blob_path(L1)
    damaged = flip_byte(path)

    report = verify_store(app)

    assert lines(report) == [
        f"corrupt blob {L1}: content hashes to {digest_of(damaged)}; used by {REF}"
    ]
    assert report.problems[0].path == str(path)
    assert (report.problems[0].kind, report.problems[0].digest) == (DAMAGED, L1)
    assert report.problems[0].images == (REF,)
    assert report.blobs == 5


def test_a_damaged_blob_names_every_image_that_uses_it(app: Store) -> None:
    other = make_image("library/other", "2", layers=1, shared_layers=(MANIFEST.layers[1],))
    app.tag("docker.io/library/other:2", put_manifest(app, other.manifests[0]))
    damaged = flip_byte(app.blob_path(L1))

    assert lines(verify_store(app)) == [
        f"corrupt blob {L1}: content hashes to {digest_of(damaged)}; "
        f"used by {REF}, docker.io/library/other:2"
    ]


def test_a_damaged_blob_no_image_uses_is_said_to_be_unused(app: Store) -> None:
    app.untag(REF)
    damaged = flip_byte(app.blob_path(L1))

    assert lines(verify_store(app)) == [
        f"corrupt blob {L1}: content hashes to {digest_of(damaged)}; unused: no image uses it"
    ]


def test_a_missing_layer_names_the_reference_and_the_layer(app: Store) -> None:
    app.blob_path(L2).unlink()

    report = verify_store(app)

    assert report.problems == (
        Problem(
            str(app.blob_path(L2)),
            f"{REF}: layer {L2} is missing",
            "not-found",
            MISSING,
            L2,
            (REF,),
        ),
    )
    assert (report.blobs, report.images) == (4, 1)
    assert report.incomplete == (REF,)


def test_a_truncated_config_is_both_corrupt_and_the_wrong_size(app: Store) -> None:
    path = app.blob_path(C)
    data = MANIFEST.config.data[:-10]
    path.write_bytes(data)

    assert lines(verify_store(app)) == [
        f"corrupt blob {C}: content hashes to {digest_of(data)}; used by {REF}",
        f"{REF}: config {C} is {len(data)} bytes, expected {MANIFEST.config.size}",
    ]


def test_a_corrupt_manifest_is_reported_once_and_not_followed(app: Store) -> None:
    damaged = flip_byte(app.blob_path(M))
    # What its (unreadable) references point at must not add problems of their own.
    app.blob_path(L0).unlink()

    assert lines(verify_store(app)) == [
        f"corrupt blob {M}: content hashes to {digest_of(damaged)}; used by {REF}"
    ]


STRAYS: dict[str, Callable[[Path], Path]] = {
    "a file in blobs/sha256 not named by a digest": lambda b: b / "sha256" / "notes.txt",
    "uppercase hex": lambda b: b / "sha256" / C.hex.upper(),
    "a short hex": lambda b: b / "sha256" / C.hex[:12],
    "an unsupported algorithm": lambda b: b / "md5" / ("0" * 32),
    "a file directly in blobs/": lambda b: b / "README",
    "a leftover temp file": lambda b: b / "sha256" / f".{C.hex}.tmp",
}


@pytest.mark.parametrize("where", STRAYS.values(), ids=STRAYS.keys())
def test_an_unexpected_file_in_blobs_is_named_by_its_path(
    app: Store, where: Callable[[Path], Path]
) -> None:
    path = where(app.blobs_dir)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"something else")

    report = verify_store(app)

    line = f"unexpected file in blobs/: {path}"
    assert report.problems == (Problem(str(path), line, "storage", FOREIGN),)
    assert report.blobs == 5


def test_a_directory_named_like_a_blob_is_unexpected_and_not_walked(app: Store) -> None:
    path = app.blobs_dir / "sha256" / digest_of(b"x").hex
    (path / "inside").mkdir(parents=True)
    (path / "inside" / "file").write_bytes(b"x")

    assert lines(verify_store(app)) == [f"unexpected file in blobs/: {path}"]


# --- oci-layout and index.json -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (None, "{path} is missing"),
        (
            b'{"imageLayoutVersion": "2.0.0"}',
            "{path} says imageLayoutVersion '2.0.0', expected 1.0.0",
        ),
        (b"[]", "{path} says imageLayoutVersion None, expected 1.0.0"),
        (
            b"{",
            "{path} is not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
    ],
    ids=["missing", "another version", "not an object", "not JSON"],
)
def test_a_bad_oci_layout_file(app: Store, content: bytes | None, line: str) -> None:
    path = app.root / "oci-layout"
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)

    report = verify_store(app)

    assert report.problems == (Problem(str(path), line.format(path=path), "storage"),)


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b"not json", "{path} is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        (b'{"manifests": {}}', "{path} has no manifests list"),
    ],
    ids=["not JSON", "no manifests list"],
)
def test_an_unreadable_index_json_is_a_problem_not_an_exception(
    app: Store, content: bytes, line: str
) -> None:
    app.index_path.write_bytes(content)

    report = verify_store(app)

    path = app.index_path
    assert report.problems == (Problem(str(path), line.format(path=path), "storage"),)
    assert (report.blobs, report.images) == (5, 0)


def test_entries_a_pull_would_skip_are_named_and_untagged_ones_still_checked(app: Store) -> None:
    missing = digest_of(b"a manifest nobody stored")
    entries = [
        {"mediaType": OCI_MANIFEST, "digest": str(missing), "size": 10},
        {"mediaType": OCI_MANIFEST, "digest": "sha256:nope", "size": 10},
        {"mediaType": OCI_MANIFEST, "digest": str(M), "size": "x"},
    ]
    app.index_path.write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))

    report = verify_store(app)

    assert lines(report) == [
        f"{app.index_path} entry 1: invalid digest 'sha256:nope': "
        "sha256 needs 64 lowercase hex digits",
        f"{app.index_path} entry 2: descriptor has an invalid size 'x'",
        f"untagged {missing}: manifest {missing} is missing",
    ]
    assert report.images == 1


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (
            lambda d: dataclasses.replace(d, size=d.size + 1),
            f"manifest {M} is {MANIFEST.size} bytes, expected {MANIFEST.size + 1}",
        ),
        (
            lambda d: dataclasses.replace(d, media_type=DOCKER_MANIFEST),
            f"manifest {M} has mediaType {OCI_MANIFEST}, but its descriptor says {DOCKER_MANIFEST}",
        ),
    ],
    ids=["size", "media type"],
)
def test_an_index_json_entry_that_disagrees_with_its_manifest(
    store: Path, change: Callable[[Descriptor], Descriptor], line: str
) -> None:
    s = Store(store)
    s.tag(REF, change(put_manifest(s, MANIFEST)))

    assert lines(verify_store(s)) == [f"{REF}: {line}"]


def test_a_manifest_blob_that_does_not_parse(app: Store) -> None:
    junk = b"not a manifest"
    d = digest_of(junk)
    app.put_bytes(d, junk)
    app.tag(REF, Descriptor(OCI_MANIFEST, d, len(junk)))

    assert lines(verify_store(app)) == [
        f"{REF}: manifest from {d} is not valid JSON: Expecting value: line 1 column 1 (char 0)"
    ]


# --- multi-platform index entries --------------------------------------------------------------

MULTI = multiplatform()
MULTI_REF = "docker.io/library/multi:latest"
INDEX = parse_digest(MULTI.digest)


def put_index(s: Store, children: tuple[int, ...]) -> None:
    """The index of ``library/multi`` tagged, with only the ``children`` pulled."""
    for child in children:
        put_manifest(s, MULTI.manifests[child])
    s.put_bytes(INDEX, MULTI.raw)
    s.tag(MULTI_REF, Descriptor(OCI_INDEX, INDEX, MULTI.size))


def test_an_index_with_one_platform_pulled_is_clean(store: Path) -> None:
    s = Store(store)
    put_index(s, (1,))

    report = verify_store(s)

    assert report == Report(blobs=6, images=1, partials=0, problems=())


def test_an_index_with_no_platform_pulled_is_a_problem(store: Path) -> None:
    s = Store(store)
    put_index(s, ())

    report = verify_store(s)

    assert report.problems == (
        Problem(
            str(s.blob_path(INDEX)),
            f"{MULTI_REF}: none of the 2 manifests of index {INDEX} is present",
            "not-found",
            MISSING,
            INDEX,
            (MULTI_REF,),
        ),
    )


def test_a_problem_inside_a_pulled_platform_names_the_platform(store: Path) -> None:
    s = Store(store)
    put_index(s, (0, 1))
    layer = parse_digest(MULTI.manifests[1].layers[2].digest)
    s.blob_path(layer).unlink()

    assert lines(verify_store(s)) == [f"{MULTI_REF} (linux/arm64/v8): layer {layer} is missing"]


# --- symbolic links: never followed, always reported -------------------------------------------


def link_line(path: Path, target: Path) -> str:
    return f"{path} is a symbolic link to {target}: pypull does not follow links in its store"


def move_out(path: Path, outside: Path) -> Path:
    """Replace ``path`` by a link to the same thing moved outside the store; return the target."""
    outside.mkdir(exist_ok=True)
    target = outside / path.name
    path.rename(target)
    path.symlink_to(target, target_is_directory=target.is_dir())
    return target


def test_a_layer_linked_to_a_file_outside_is_reported_even_with_the_right_bytes(
    app: Store, tmp_path: Path
) -> None:
    path = app.blob_path(L1)
    target = move_out(path, tmp_path / "outside")

    report = verify_store(app)

    assert lines(report) == [
        f"{link_line(path, target)}; used by {REF}",
        f"{REF}: layer {L1} is missing",
    ]
    assert report.problems[0].path == str(path)
    assert report.blobs == 4  # not hashed through the link


@pytest.mark.parametrize(
    ("where", "extra"),
    [
        pytest.param(lambda s: s.index_path, [], id="index.json"),
        pytest.param(lambda s: s.root / "oci-layout", [], id="oci-layout"),
        pytest.param(
            lambda s: s.blobs_dir / "sha256", [f"{REF}: manifest {M} is missing"], id="blobs-sha256"
        ),
        pytest.param(lambda s: s.root / ".pypull", [], id="pypull-dir"),
    ],
)
def test_a_part_of_the_store_moved_out_behind_a_link_is_reported(
    app: Store, tmp_path: Path, where: Callable[[Store], Path], extra: list[str]
) -> None:
    path = where(app)
    target = move_out(path, tmp_path / "outside")

    assert lines(verify_store(app)) == [link_line(path, target), *extra]


def test_a_dangling_link_at_a_partial_is_reported_and_not_counted(
    app: Store, tmp_path: Path
) -> None:
    path = app.partial_path(L1)
    path.symlink_to(tmp_path / "nowhere")

    report = verify_store(app)

    assert lines(report) == [link_line(path, tmp_path / "nowhere")]
    assert report.partials == 0


def test_pypull_verify_prints_the_link_and_exits_1(app: Store, tmp_path: Path) -> None:
    path = app.blob_path(L1)
    target = move_out(path, tmp_path / "outside")

    run = run_pypull("verify", "--store", app.root)

    assert run.returncode == 1, run.stderr
    assert run.stdout.splitlines() == [
        f"{link_line(path, target)}; used by {REF}",
        f"{REF}: layer {L1} is missing",
        "4 blobs, 1 image, 0 partial downloads: 2 problems",
        f"To fetch what is missing: pypull pull {REF}",  # a pull replaces the link, too
    ]


def test_pypull_verify_json_gives_each_problem_the_code_of_what_is_wrong(app: Store) -> None:
    flip_byte(app.blob_path(L0))
    app.blob_path(L2).unlink()
    stray = app.blobs_dir / "sha256" / "notes.txt"
    stray.write_text("not a blob")

    run = run_pypull("verify", "--store", app.root, "--format", "json")

    assert run.returncode == 1, run.stderr
    *problems, summary = map(json.loads, run.stdout.splitlines())
    assert summary["problems"] == len(problems) == 3
    assert {(p["path"], p["code"]) for p in problems} == {
        (str(app.blob_path(L0)), "digest-mismatch"),  # content not what its name says
        (str(app.blob_path(L2)), "not-found"),  # a layer the image needs; a pull fetches it
        (str(stray), "storage"),  # a file pypull did not put there
    }


# --- at the same time as a prune ---------------------------------------------------------------


def test_a_prune_started_during_a_verify_waits_for_it_and_the_verify_sees_every_blob(
    app: Store,
) -> None:
    import threading

    from puller.store.prune import prune, rmi

    pruned: list[object] = []
    pruner = threading.Thread(target=lambda: pruned.append(prune(app.root)))

    def first_hashed(_: Digest) -> None:
        if pruner.ident is None:  # the image goes away mid-verify: every blob is now garbage
            assert rmi([REF], app) == []
            pruner.start()
            pruner.join(0.5)
            assert pruner.is_alive(), "prune did not wait for the verify"

    report = verify_store(app, on_blob=first_hashed)
    assert (lines(report), report.blobs) == ([], 5)  # as the store was when verify began
    pruner.join(10)
    assert pruned and not any((app.root / "blobs" / "sha256").iterdir())
