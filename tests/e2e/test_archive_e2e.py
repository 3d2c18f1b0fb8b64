"""``pypull save`` and ``pypull load`` end to end: images pulled from the real registry, saved to
one archive that skopeo reads both as ``oci-archive:`` (the store's manifest and layer digests)
and as ``docker-archive:`` (the config's diff_ids, as ``docker load`` names layers), loaded into
an empty store that ``pypull verify``, ``pypull images`` and ``umoci`` accept; and archives
skopeo writes in docker's older layout loaded as docker would."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pty
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import puller
from fixtures.images import (
    Image,
    docker_media,
    make_layer,
    make_manifest,
    multiplatform,
    redis,
    shared_pair,
)
from fixtures.registry import Registry, push
from puller.oci.reference import parse
from tests.support.helpers import run_pypull, umoci_unpack


def pulled(
    registry: Registry, store: Path, *images: Image, all_platforms: bool = False
) -> list[str]:
    names = [f"{registry.host}/{image.reference}" for image in images]
    flags = ["--all-platforms"] if all_platforms else []
    run = run_pypull("--store", store, "-q", *flags, *names)
    assert run.returncode == 0, run.stderr
    return names


def save_bytes(*args: str) -> subprocess.CompletedProcess[bytes]:
    """``pypull save ARGS`` with its stdout as bytes; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", "puller", "save", *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done


def skopeo(*args: str) -> str:
    done = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def skopeo_inspect(location: str, *, raw: bool = False) -> Any:
    return json.loads(skopeo("inspect", *(["--raw"] if raw else []), location))


def store_entry(store: Path, name: str) -> dict[str, Any]:
    doc = json.loads((store / "index.json").read_text())
    for entry in doc["manifests"]:
        if entry["annotations"]["org.opencontainers.image.ref.name"] == str(parse(name)):
            return dict(entry)
    raise AssertionError(f"{name} not in {store}")


def blob_json(store: Path, digest: str) -> Any:
    return json.loads((store / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())


def members(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return tar.getnames()


def docker_items(archive: Path) -> Any:
    """The archive's manifest.json: docker's view."""
    with tarfile.open(archive) as tar:
        f = tar.extractfile("manifest.json")
        assert f is not None
        return json.loads(f.read())


def test_save_is_read_by_skopeo_as_an_oci_archive_and_as_a_docker_archive(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    (name,) = pulled(registry, store, redis())
    archive = tmp_path / "redis.tar"
    run = run_pypull("save", "--store", store, "-o", archive, name)
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""

    entry = store_entry(store, name)
    manifest = blob_json(store, entry["digest"])
    # OCI view: the store's manifest, byte for byte, found by the name the store gives it.
    oci = f"oci-archive:{archive}:{parse(name)}"
    assert skopeo_inspect(oci)["Digest"] == entry["digest"]
    assert skopeo_inspect(oci)["Layers"] == [d["digest"] for d in manifest["layers"]]
    assert skopeo_inspect(f"oci-archive:{archive}")["Digest"] == entry["digest"]  # the only one
    # docker view: layers named by their uncompressed digests, as docker load names them.
    config = blob_json(store, manifest["config"]["digest"])
    docker = skopeo_inspect(f"docker-archive:{archive}")
    assert docker["Layers"] == config["rootfs"]["diff_ids"]
    assert docker_items(archive) == [
        {
            "Config": "blobs/sha256/" + manifest["config"]["digest"].split(":")[1],
            "RepoTags": [parse(name).familiar],  # 127.0.0.1:PORT/library/redis:latest
            "Layers": ["blobs/sha256/" + d["digest"].split(":")[1] for d in manifest["layers"]],
        }
    ]
    copied = tmp_path / "copied"
    skopeo("copy", f"docker-archive:{archive}", f"dir:{copied}")
    assert (
        json.loads((copied / "manifest.json").read_text())["config"]["digest"]
        == (manifest["config"]["digest"])
    )


def test_load_of_a_saved_archive_gives_a_store_verify_passes(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    names = pulled(registry, store, redis(), docker_media())
    archive = tmp_path / "two.tar"
    assert run_pypull("save", "--store", store, "-o", archive, *names).returncode == 0
    other = tmp_path / "other"
    run = run_pypull("load", "--store", other, "-i", archive)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [f"Loaded image: {parse(n).familiar}" for n in names]
    verify = run_pypull("verify", "--store", other)
    assert verify.returncode == 0, verify.stdout
    assert "no problems" in verify.stdout
    # The same images, described alike: the digest the registry served included.
    for listing in (run_pypull("images", "--store", s, "--format", "json") for s in (store, other)):
        assert listing.returncode == 0, listing.stderr
    before = run_pypull("images", "--store", store, "--format", "json").stdout
    after = run_pypull("images", "--store", other, "--format", "json").stdout
    assert after == before
    for name in names:
        assert store_entry(other, name) == store_entry(store, name)


def test_several_images_share_their_blobs_once(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    a, b = shared_pair()
    names = pulled(registry, store, a, b)
    archive = tmp_path / "apps.tar"
    assert run_pypull("save", "--store", store, "-o", archive, *names).returncode == 0
    blobs = [m for m in members(archive) if m.startswith("blobs/sha256/") and len(m) > 14]
    assert len(blobs) == len(set(blobs))
    expected = {
        d for image in (a, b) for m in image.manifests for d in (m.digest, m.config.digest)
    } | {layer.digest for image in (a, b) for m in image.manifests for layer in m.layers}
    assert {"sha256:" + m.rsplit("/", 1)[1] for m in blobs} == expected
    # Both images in both views, each found by its name.
    docker = docker_items(archive)
    assert sorted(tag for item in docker for tag in item["RepoTags"]) == sorted(
        parse(n).familiar for n in names
    )
    for name in names:
        assert skopeo_inspect(f"docker-archive:{archive}:{parse(name).familiar}")["Layers"]
        skopeo_inspect(f"oci-archive:{archive}:{parse(name)}")


def test_multi_platform_index_is_saved_whole_in_the_oci_view(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    image = multiplatform()
    (name,) = pulled(registry, store, image, all_platforms=True)
    archive = tmp_path / "multi.tar"
    assert run_pypull("save", "--store", store, "-o", archive, name).returncode == 0
    raw = skopeo_inspect(f"oci-archive:{archive}:{parse(name)}", raw=True)
    assert [m["digest"] for m in raw["manifests"]] == [m.digest for m in image.manifests]
    assert docker_items(archive) == []
    other = tmp_path / "other"
    run = run_pypull("load", "--store", other, archive)
    assert run.returncode == 0, run.stderr
    assert run_pypull("verify", "--store", other).returncode == 0
    for platform in ("linux/amd64", "linux/arm64"):
        info = run_pypull("inspect", "--store", other, "--platform", platform, name)
        assert info.returncode == 0, info.stderr


def test_save_to_stdout_and_load_from_stdin(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    (name,) = pulled(registry, store, redis())
    saved = save_bytes("--store", str(store), name)
    other = tmp_path / "other"
    loaded = subprocess.run(
        [sys.executable, "-m", "puller", "load", "--store", str(other)],
        input=gzip.compress(saved.stdout, 1),  # docker load takes a gzipped archive too
        capture_output=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.decode() == f"Loaded image: {parse(name).familiar}\n"
    assert run_pypull("verify", "--store", other).returncode == 0


def test_a_failed_save_leaves_no_file(registry: Registry, store: Path, tmp_path: Path) -> None:
    (name,) = pulled(registry, store, redis())
    layer = redis().manifests[0].layers[2].digest
    path = store / "blobs" / "sha256" / layer.split(":")[1]
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    archive = tmp_path / "redis.tar"
    run = run_pypull("save", "--store", store, "-o", archive, name)
    assert run.returncode == 1
    assert run.stderr.startswith("Error: digest mismatch for " + layer)
    assert len(run.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == [store]
    missing = run_pypull("save", "--store", store, "-o", archive, "nope:1")
    assert missing.returncode == 1
    assert "not in the store" in missing.stderr
    assert not archive.exists()


def test_load_of_a_legacy_docker_archive_written_by_skopeo(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    (name,) = pulled(registry, store, docker_media())
    archive = tmp_path / "legacy.tar"
    skopeo("copy", f"oci:{store}:{parse(name)}", f"docker-archive:{archive}:dockerimg:v1")
    assert "index.json" not in members(archive)
    other = tmp_path / "other"
    run = run_pypull("load", "--store", other, archive)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "Loaded image: dockerimg:v1\n"
    assert run_pypull("verify", "--store", other).returncode == 0
    loaded = skopeo_inspect(f"oci:{other}:docker.io/library/dockerimg:v1")
    config = blob_json(
        store, blob_json(store, store_entry(store, name)["digest"])["config"]["digest"]
    )
    assert loaded["Layers"] == config["rootfs"]["diff_ids"]
    rootfs = umoci_unpack(f"{other}:docker.io/library/dockerimg:v1", tmp_path / "bundle")
    assert rootfs.is_dir()


def test_python_api(registry: Registry, store: Path, tmp_path: Path) -> None:
    (name,) = pulled(registry, store, redis())
    archive = tmp_path / "redis.tar"
    saved = puller.save([name], archive, store=store)
    assert [str(i.reference) for i in saved.images] == [str(parse(name))]
    assert saved.size == archive.stat().st_size
    result = puller.load(archive, store=tmp_path / "other")
    assert isinstance(result, puller.LoadResult)
    assert [str(i.reference) for i in result.images] == [str(parse(name))]
    assert result.format == "oci"
    assert result.blobs == saved.blobs


@pytest.mark.parametrize("flag", [[], ["-i"]])
def test_umoci_unpacks_a_loaded_store(
    registry: Registry, store: Path, tmp_path: Path, flag: list[str]
) -> None:
    (name,) = pulled(registry, store, redis())
    archive = tmp_path / "redis.tar"
    assert run_pypull("save", "--store", store, "-o", archive, name).returncode == 0
    other = tmp_path / "other"
    assert run_pypull("load", "--store", other, *flag, archive).returncode == 0
    umoci_unpack(f"{other}:{parse(name)}", tmp_path / "bundle")


def test_save_refuses_a_terminal_as_stdout(registry: Registry, store: Path) -> None:
    (name,) = pulled(registry, store, redis())
    main, child = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "puller", "save", "--store", str(store), "-o", "-", name],
            stdout=child,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=60,
        )
    finally:
        os.close(child)
        os.close(main)
    assert done.returncode == 1
    assert done.stderr == (
        "Error: refusing to write an archive to a terminal: use -o FILE, or redirect\n"
    )


def _read_fifo(fifo: Path, into: list[bytes]) -> threading.Thread:
    """A reader of ``fifo`` in the background, as `pypull save -o fifo` users have one."""

    def read() -> None:
        with open(fifo, "rb") as f:
            into.append(f.read())

    reader = threading.Thread(target=read, daemon=True)  # left blocked if nothing ever writes
    reader.start()
    return reader


@pytest.mark.parametrize("command", ["save", "export"])
def test_a_named_pipe_given_to_o_is_written_into_not_replaced(
    registry: Registry, store: Path, tmp_path: Path, command: str
) -> None:
    (name,) = pulled(registry, store, redis())
    whole = tmp_path / "whole.tar"
    assert run_pypull(command, "--store", store, "-o", whole, name).returncode == 0
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = _read_fifo(fifo, got)

    run = run_pypull(command, "--store", store, "-o", fifo, name)

    assert run.returncode == 0, run.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the pipe, not a regular file
    reader.join(30)
    assert got == [whole.read_bytes()]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([store.name, "whole.tar", "pipe"])


def test_tens_of_megabytes_saved_into_a_named_pipe_arrive_whole(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    # Far past a pipe's 64 KiB: every write waits for the reader, as `pypull save -o fifo`
    # feeding `ssh host pypull load` does.
    layer = make_layer("fifo-tens-of-mb", 0, 40 << 20)
    manifest = make_manifest([layer], seed="fifo-tens-of-mb")
    image = Image("big/fifo", "1", manifest.media_type, manifest.raw, (manifest,))
    push(registry.url, image)
    (name,) = pulled(registry, store, image)
    whole = tmp_path / "whole.tar"
    assert run_pypull("save", "--store", store, "-o", whole, name).returncode == 0
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = _read_fifo(fifo, got)

    run = run_pypull("save", "--store", store, "-o", fifo, name)

    assert run.returncode == 0, run.stderr
    reader.join(60)
    assert whole.stat().st_size > 40 << 20
    assert [hashlib.sha256(b).hexdigest() for b in got] == [
        hashlib.sha256(whole.read_bytes()).hexdigest()
    ]


def test_o_dev_stdout_writes_the_archive_to_standard_output(
    registry: Registry, store: Path
) -> None:
    # /dev/stdout is a link to /proc/self/fd/1, which is named here: the same path through the
    # same code, and a regression fails at the rename into /proc rather than, as root,
    # putting a regular file in /dev.
    (name,) = pulled(registry, store, redis())
    to_stdout = save_bytes("--store", str(store), name)
    named = save_bytes("--store", str(store), "-o", "/proc/self/fd/1", name)
    assert named.stdout == to_stdout.stdout != b""


def test_o_dev_stdout_appends_to_the_file_the_shell_opened(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    # `pypull save -o /dev/stdout IMAGE >> log`: into the file as opened, after what it held,
    # not a new file renamed over it. Named as /proc/self/fd/1, for the reason above.
    (name,) = pulled(registry, store, redis())
    whole = save_bytes("--store", str(store), name).stdout
    log = tmp_path / "log"
    log.write_bytes(b"earlier\n")
    log.chmod(0o600)
    argv = ["save", "--store", str(store), "-o", "/proc/self/fd/1", name]
    with open(log, "ab") as out:
        run = subprocess.run(
            [sys.executable, "-m", "puller", *argv],
            stdout=out,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
    assert run.returncode == 0, run.stderr
    assert log.read_bytes() == b"earlier\n" + whole
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_a_replaced_archive_keeps_the_mode_of_the_old_one(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    (name,) = pulled(registry, store, redis())
    archive = tmp_path / "private.tar"
    archive.write_bytes(b"older")
    archive.chmod(0o600)
    assert run_pypull("save", "--store", store, "-o", archive, name).returncode == 0
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert "index.json" in members(archive)


@pytest.mark.parametrize("command", ["save", "export"])
def test_a_full_device_is_one_error_line(store: Path, registry: Registry, command: str) -> None:
    (name,) = pulled(registry, store, redis())
    run = run_pypull(command, "--store", store, "-o", "/dev/full", name)
    assert run.returncode == 1
    assert run.stderr == "Error: cannot write /dev/full: No space left on device\n"


def test_o_through_a_symbolic_link_replaces_the_target_and_keeps_the_link(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    (name,) = pulled(registry, store, redis())
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "redis.tar"
    target.write_bytes(b"an older archive")
    link = tmp_path / "redis.tar"
    link.symlink_to("real/redis.tar")

    run = run_pypull("save", "--store", store, "-o", link, name)

    assert run.returncode == 0, run.stderr
    assert link.is_symlink() and os.readlink(link) == "real/redis.tar"
    assert "index.json" in members(target)
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["redis.tar"]


def test_a_terminal_given_to_o_is_refused(registry: Registry, store: Path) -> None:
    (name,) = pulled(registry, store, redis())
    main, child = pty.openpty()
    tty = os.ttyname(child)
    try:
        run = run_pypull("save", "--store", store, "-o", tty, name)
    finally:
        os.close(child)
        os.close(main)
    assert run.returncode == 1
    assert run.stderr == f"Error: refusing to write an archive to the terminal {tty}\n"


def _tar(members: list[tuple[str, bytes | str]]) -> bytes:
    """A tar of regular files (bytes) and symbolic links (str: the target), in this order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def _layer(text: str) -> bytes:
    return _tar([(f"etc/{text}.txt", text.encode())])


def _config(*layers: bytes) -> bytes:
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    return json.dumps(doc).encode()


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_load_of_docker_save_before_docker_25(tmp_path: Path, store: Path) -> None:
    """The layout docker save wrote from 1.10 to 24: ``<id>/layer.tar`` (a layer two images
    share is a link to the first copy), ``<id>/json``, ``<config>.json``, ``manifest.json``
    last."""
    base, top_a, top_b = _layer("base"), _layer("a"), _layer("b")
    config_a, config_b = _config(base, top_a), _config(base, top_b)
    manifest = [
        {
            "Config": f"{_hex(config_a)}.json",
            "RepoTags": ["a:1"],
            "Layers": ["1/layer.tar", "2/layer.tar"],
        },
        {
            "Config": f"{_hex(config_b)}.json",
            "RepoTags": ["b:1", "quay.io/x/b:2"],
            "Layers": ["3/layer.tar", "4/layer.tar"],
        },
    ]
    archive = tmp_path / "old.tar"
    archive.write_bytes(
        _tar(
            [
                ("1/VERSION", b"1.0"),
                ("1/json", b"{}"),
                ("1/layer.tar", base),
                ("2/layer.tar", top_a),
                ("3/layer.tar", "../1/layer.tar"),
                ("4/layer.tar", top_b),
                (f"{_hex(config_a)}.json", config_a),
                (f"{_hex(config_b)}.json", config_b),
                ("manifest.json", json.dumps(manifest).encode()),
                ("repositories", b"{}"),
            ]
        )
    )
    run = run_pypull("load", "--store", store, archive)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "Loaded image: a:1",
        "Loaded image: b:1",
        "Loaded image: quay.io/x/b:2",
    ]
    assert run_pypull("verify", "--store", store).returncode == 0
    info = json.loads(run_pypull("inspect", "--store", store, "quay.io/x/b:2").stdout)
    assert info["Layers"] == ["sha256:" + _hex(base), "sha256:" + _hex(top_b)]
    assert [d["MIMEType"] for d in info["LayersData"]] == [
        "application/vnd.oci.image.layer.v1.tar"
    ] * 2


def test_load_of_docker_25_save(tmp_path: Path, store: Path) -> None:
    """Docker 25+: an OCI layout whose ref.name is a bare tag and whose name is containerd's
    annotation, or only in manifest.json's RepoTags."""
    layer = _layer("only")
    config = _config(layer)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + _hex(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": "sha256:" + _hex(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    entry = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:" + _hex(manifest),
        "size": len(manifest),
    }
    named = {
        **entry,
        "annotations": {
            "io.containerd.image.name": "docker.io/library/busy:1",
            "org.opencontainers.image.ref.name": "1",
        },
    }
    bare = {**entry, "annotations": {"org.opencontainers.image.ref.name": "2"}}
    docker = [
        {
            "Config": f"blobs/sha256/{_hex(config)}",
            "RepoTags": ["busy:2"],
            "Layers": [f"blobs/sha256/{_hex(layer)}"],
        }
    ]
    archive = tmp_path / "d25.tar"
    archive.write_bytes(
        _tar(
            [
                (f"blobs/sha256/{_hex(layer)}", layer),
                (f"blobs/sha256/{_hex(config)}", config),
                (f"blobs/sha256/{_hex(manifest)}", manifest),
                (
                    "index.json",
                    json.dumps({"schemaVersion": 2, "manifests": [named, bare]}).encode(),
                ),
                ("manifest.json", json.dumps(docker).encode()),
                ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ]
        )
    )
    run = run_pypull("load", "--store", store, archive)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["Loaded image: busy:1", "Loaded image: busy:2"]
    assert run_pypull("verify", "--store", store).returncode == 0


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_member_names_are_read(tmp_path: Path, store: Path, fmt: int) -> None:
    """Names past the 100 bytes of a tar header, as GNU tar and pax write them."""
    layer = _layer("long")
    config = _config(layer)
    long = "d" * 150 + "/layer.tar"
    item = {"Config": f"{_hex(config)}.json", "RepoTags": ["long:1"], "Layers": [long]}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in (
            (long, layer),
            (f"{_hex(config)}.json", config),
            ("manifest.json", json.dumps([item]).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "long.tar"
    archive.write_bytes(out.getvalue())
    run = run_pypull("load", "--store", store, archive)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "Loaded image: long:1\n"


def test_a_failed_save_keeps_the_file_it_would_have_replaced(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    (name,) = pulled(registry, store, redis())
    archive = tmp_path / "redis.tar"
    archive.write_bytes(b"the old archive")
    run = run_pypull("save", "--store", store, "-o", archive, name, "not-pulled:1")
    assert run.returncode == 1
    assert archive.read_bytes() == b"the old archive"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["redis.tar", "store"]


def test_an_image_saved_by_digest_is_loaded_by_digest(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    image = redis()
    by_digest = f"{registry.host}/{image.repository}@{image.digest}"
    run = run_pypull("--store", store, "-q", by_digest)
    assert run.returncode == 0, run.stderr
    archive = tmp_path / "pinned.tar"
    assert run_pypull("save", "--store", store, "-o", archive, by_digest).returncode == 0
    assert docker_items(archive)[0]["RepoTags"] == []  # docker loads it without a name
    other = tmp_path / "other"
    loaded = run_pypull("load", "--store", other, archive)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == f"Loaded image: {parse(by_digest).familiar}\n"
    info = run_pypull("inspect", "--store", other, by_digest)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["Digest"] == image.digest


@pytest.fixture
def podman_root() -> Iterator[Path]:
    """A storage of podman's own, under a short path (podman refuses a runroot over 50
    characters, which pytest's tmp_path is)."""
    path = Path(tempfile.mkdtemp(prefix="pypull-podman-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def podman(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """podman on the storage under ``root`` (vfs: no overlay mount is needed, and no container
    runs), so that the machine's own images are neither read nor touched."""
    argv = [
        "podman",
        *("--root", str(root / "storage"), "--runroot", str(root / "run")),
        *("--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"),
        *("--events-backend", "file", "--tmpdir", str(root / "tmp")),
        *args,
    ]
    env = {**os.environ, "TMPDIR": str(root)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_podman_loads_what_save_writes(
    registry: Registry, store: Path, tmp_path: Path, podman_root: Path
) -> None:
    """The project's promise: ``podman load`` reads what ``pypull save`` writes, and lists the
    image under its name, with its config as its ID and the config's layers."""
    (name,) = pulled(registry, store, redis())
    archive = tmp_path / "redis.tar"
    assert run_pypull("save", "--store", store, "-o", archive, name).returncode == 0
    loaded = podman(podman_root, "load", "-i", str(archive))
    assert loaded.returncode == 0, loaded.stderr
    entry = store_entry(store, name)
    manifest = blob_json(store, entry["digest"])
    config = blob_json(store, manifest["config"]["digest"])
    listed = podman(podman_root, "images", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    (image,) = json.loads(listed.stdout)
    assert image["Names"] == [str(parse(name))]
    assert image["Id"] == manifest["config"]["digest"].split(":")[1]
    inspected = podman(podman_root, "image", "inspect", str(parse(name)))
    assert inspected.returncode == 0, inspected.stderr
    (details,) = json.loads(inspected.stdout)
    assert details["RootFS"]["Layers"] == config["rootfs"]["diff_ids"]
    assert len(details["RootFS"]["Layers"]) == len(manifest["layers"]) == 8
