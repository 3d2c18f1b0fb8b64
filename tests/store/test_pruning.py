"""What prune counts as reachable, on layouts written by hand: entries of other tools, artifact
manifests of kinds pypull does not pull, and entries that name nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from puller.errors import StoreError
from puller.oci.digest import Digest, digest_of
from puller.store.layout import Store
from puller.store.prune import prune

ARTIFACT = "application/vnd.example.artifact.manifest.v1+json"


def put(store: Store, data: bytes) -> Digest:
    digest = digest_of(data)
    store.put_bytes(digest, data)
    return digest


def descriptor(media_type: str, digest: Digest, size: int) -> dict[str, object]:
    return {"mediaType": media_type, "digest": str(digest), "size": size}


def write_index(root: Path, manifests: list[object]) -> None:
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))


def test_an_artifact_manifest_of_an_unknown_kind_keeps_what_it_lists(tmp_path: Path) -> None:
    store = Store(tmp_path)
    payload = put(store, b"signature payload")
    config = put(store, b"{}")
    subject = put(store, b'{"schemaVersion": 2}')
    artifact = json.dumps(
        {
            "mediaType": ARTIFACT,
            "config": descriptor("application/vnd.example.config", config, 2),
            "blobs": [descriptor("application/octet-stream", payload, 17)],
            "subject": descriptor("application/vnd.oci.image.manifest.v1+json", subject, 20),
        }
    ).encode()
    root = put(store, artifact)
    garbage = put(store, b"nobody's")
    write_index(tmp_path, [descriptor(ARTIFACT, root, len(artifact))])
    assert [p.digest for p in prune(store).removed] == [garbage]
    assert all(store.has(d) for d in (payload, config, subject, root))


def test_entries_that_name_nothing_are_passed_over(tmp_path: Path) -> None:
    store = Store(tmp_path)
    kept = put(store, b"kept")
    garbage = put(store, b"garbage")
    write_index(
        tmp_path,
        [
            "not a descriptor",
            {"digest": "sha256:tooshort"},
            {"mediaType": "application/octet-stream", "digest": str(kept), "size": 4},
            {"digest": 42, "annotations": {"io.pypull.resolved.digest": ["x"]}},
        ],
    )
    assert [p.digest for p in prune(store).removed] == [garbage]
    assert store.has(kept)


def test_an_index_json_that_does_not_parse_stops_the_prune(tmp_path: Path) -> None:
    store = Store(tmp_path)
    blob = put(store, b"some blob")
    (tmp_path / "index.json").write_text("{ not json")
    with pytest.raises(StoreError, match=r"index\.json is not valid JSON"):
        prune(store)
    assert store.has(blob)


def test_a_manifest_too_large_to_read_stops_the_prune(tmp_path: Path) -> None:
    store = Store(tmp_path)
    big = b"[" + b" " * (4 << 20) + b"]"
    digest = put(store, big)
    other = put(store, b"other")
    write_index(
        tmp_path, [descriptor("application/vnd.oci.image.manifest.v1+json", digest, len(big))]
    )
    with pytest.raises(StoreError, match="a manifest over 4 MiB; nothing pruned"):
        prune(store)
    assert store.has(other)


def test_links_and_strays_in_blobs_are_left_for_verify(tmp_path: Path) -> None:
    store = Store(tmp_path)
    write_index(tmp_path, [])
    target = tmp_path / "outside"
    target.write_text("not the store's")
    blobs = tmp_path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (blobs / ("a" * 64)).symlink_to(target)
    (blobs / "README").write_text("a stray name")
    assert prune(store).removed == ()
    assert target.exists() and (blobs / "README").exists()
