"""The fixtures can be trusted: deterministic images, real layers, a registry that serves them."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from fixtures import images
from fixtures.registry import Registry, push, render_config
from tests.support.helpers import umoci_unpack


def _get(registry: Registry, path: str, accept: str = "") -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=10)
    conn.request("GET", path, headers={"Accept": accept} if accept else {})
    return conn.getresponse()


def _members(blob: images.Blob) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob.data))) as tar:
        return tar.getmembers()


def test_same_arguments_give_byte_identical_images() -> None:
    first = images.make_image("library/redis", "latest", layers=8)
    second = images.make_image("library/redis", "latest", layers=8)
    assert first.raw == second.raw
    assert [b.digest for b in first.blobs] == [b.digest for b in second.blobs]
    assert first.digest == images.redis().digest


def test_distinct_images_have_distinct_content() -> None:
    digests = [blob.digest for image in images.all_images() for blob in image.blobs]
    shared = {layer.digest for layer in images.shared_pair()[0].manifests[0].layers[:5]}
    assert len(set(digests)) == len(digests) - len(shared)


def test_redis_has_eight_layers_and_config_diff_ids_match_uncompressed_tars() -> None:
    image = images.redis()
    assert image.media_type == images.OCI_MANIFEST
    (manifest,) = image.manifests
    assert len(manifest.layers) == 8
    config = json.loads(manifest.config.data)
    expected = [
        "sha256:" + hashlib.sha256(gzip.decompress(b.data)).hexdigest() for b in manifest.layers
    ]
    assert config["rootfs"] == {"type": "layers", "diff_ids": expected}
    assert len(config["history"]) == 8
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    doc = json.loads(image.raw)
    assert doc["schemaVersion"] == 2
    assert doc["config"] == manifest.config.descriptor()
    assert doc["layers"] == [layer.descriptor() for layer in manifest.layers]


def test_layers_hold_files_a_directory_a_symlink_and_a_whiteout() -> None:
    lower, upper = images.redis().manifests[0].layers[:2]
    members = {m.name: m for m in _members(upper)}
    assert members["opt/layer-1"].isdir()
    assert members["opt/layer-1/payload.bin"].isfile()
    assert members["opt/layer-1/current"].issym()
    assert members["tmp/.wh.scratch-0.txt"].isfile()
    assert "tmp/scratch-0.txt" in {m.name for m in _members(lower)}
    assert not any(".wh." in m.name for m in _members(lower))


def test_layer_size_sets_the_payload_size() -> None:
    blob = images.make_layer("size", 0, 300_000)
    members = {m.name: m for m in _members(blob)}
    assert members["opt/layer-0/payload.bin"].size == 300_000
    assert blob.size > 300_000  # random payload does not compress


def test_shared_pair_shares_its_first_five_layers() -> None:
    a, b = (image.manifests[0] for image in images.shared_pair())
    assert [x.digest for x in a.layers[:5]] == [x.digest for x in b.layers[:5]]
    assert not {x.digest for x in a.layers[5:]} & {x.digest for x in b.layers[5:]}
    assert len(a.layers) == len(b.layers) == 8
    assert a.config.digest != b.config.digest


def test_multiplatform_is_an_oci_index_with_one_child_per_platform() -> None:
    image = images.multiplatform()
    doc = json.loads(image.raw)
    assert image.media_type == doc["mediaType"] == images.OCI_INDEX
    assert [entry["platform"] for entry in doc["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]
    amd, arm = image.manifest_for("linux", "amd64"), image.manifest_for("linux", "arm64", "v8")
    assert [e["digest"] for e in doc["manifests"]] == [amd.digest, arm.digest]
    assert len(amd.layers) == len(arm.layers) == 3
    assert not {x.digest for x in amd.layers} & {x.digest for x in arm.layers}
    assert json.loads(arm.config.data)["variant"] == "v8"
    with pytest.raises(LookupError):
        image.manifest_for("linux", "s390x")


def test_docker_media_uses_docker_media_types() -> None:
    (manifest,) = images.docker_media().manifests
    doc = json.loads(manifest.raw)
    assert doc["mediaType"] == images.DOCKER_MANIFEST
    assert doc["config"]["mediaType"] == images.DOCKER_CONFIG
    assert {layer["mediaType"] for layer in doc["layers"]} == {images.DOCKER_LAYER}
    assert len(doc["layers"]) == 4


def test_registry_config_is_rendered_as_yaml() -> None:
    text = render_config({"a": {"b": True, "c": ["x", 1]}, "d": {}})
    assert text == 'a:\n  b: true\n  c:\n    - "x"\n    - 1\nd: {}\n'


def test_registry_serves_the_pushed_manifest_and_blobs_unchanged(registry: Registry) -> None:
    image = images.redis()
    response = _get(registry, "/v2/library/redis/manifests/latest", images.OCI_MANIFEST)
    assert response.status == 200
    assert response.read() == image.raw
    assert response.headers["Docker-Content-Digest"] == image.digest
    assert response.headers["Content-Type"] == images.OCI_MANIFEST
    layer = image.manifests[0].layers[3]
    response = _get(registry, f"/v2/library/redis/blobs/{layer.digest}")
    assert response.status == 200
    assert response.read() == layer.data
    assert registry.blob_data_path(layer.digest).read_bytes() == layer.data


def test_registry_serves_a_blob_corrupted_on_disk_as_is(registry: Registry) -> None:
    layer = images.redis().manifests[0].layers[0]
    path = registry.blob_data_path(layer.digest)
    corrupted = bytes([layer.data[0] ^ 0xFF]) + layer.data[1:]
    try:
        path.write_bytes(corrupted)
        response = _get(registry, f"/v2/library/redis/blobs/{layer.digest}")
        assert response.read() == corrupted
    finally:
        path.write_bytes(layer.data)


def test_push_under_another_name_and_pushing_twice_is_harmless(registry: Registry) -> None:
    image = images.docker_media()
    push(registry.url, image, "pypull/copy", "v1")
    push(registry.url, image, "pypull/copy", "v1")
    response = _get(registry, "/v2/pypull/copy/manifests/v1", images.DOCKER_MANIFEST)
    assert response.read() == image.raw


@pytest.mark.skipif(
    not shutil.which("skopeo") or not shutil.which("umoci"), reason="skopeo or umoci missing"
)
def test_pulled_index_unpacks_with_umoci(registry: Registry, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--override-arch",
            "arm64",
            "--override-variant",
            "v8",
            f"docker://{registry.host}/library/multi:latest",
            f"oci:{layout}:multi",
        ],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    rootfs = umoci_unpack(f"{layout}:multi", tmp_path / "b")
    assert (rootfs / "opt/layer-2/current").is_symlink()
    assert sorted(p.name for p in (rootfs / "tmp").iterdir()) == ["scratch-2.txt"]
