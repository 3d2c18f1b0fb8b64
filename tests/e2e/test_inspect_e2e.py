"""``pypull inspect`` and ``pypull images`` end to end: images pulled from the real registry, and
stores written by hand as ``pull --all-platforms`` leaves them, described as skopeo describes them,
byte-exact ``--raw``/``--config``, ``--remote`` that asks for no layer and writes nothing, and
what scripts parse (``images --format json``, ``images -q``)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import puller
from fixtures.images import (
    DOCKER_LAYER,
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    docker_media,
    make_image,
    make_index,
    multiplatform,
    redis,
)
from fixtures.registry import Registry
from puller.oci.digest import digest_of, parse_digest
from puller.oci.manifest import DOCKER_MANIFEST, Descriptor, Manifest, host_platform, parse_manifest
from puller.oci.manifest import to_oci as manifest_to_oci
from puller.store.layout import RESOLVED_ANNOTATION, Store
from tests.support.helpers import AccessLog, run_pypull

#: What skopeo 1.9 (Debian 12) prints for an OCI layout and pypull must print alike; Name and
#: RepoTags differ by design (skopeo's oci: transport has neither), LayersData and Variant are
#: newer skopeo's and absent from this one.
SHARED = ("Digest", "Created", "DockerVersion", "Labels", "Architecture", "Os", "Layers", "Env")


def pulled(registry: Registry, store: Path, image: Image) -> str:
    """Pull ``image`` from the real registry into ``store``; its full reference."""
    name = f"{registry.host}/{image.reference}"
    run = run_pypull("--store", store, "-q", name)
    assert run.returncode == 0, run.stderr
    return name


def inspect_json(*args: str | Path) -> dict[str, Any]:
    run = run_pypull("inspect", *args)
    assert run.returncode == 0, run.stderr
    doc: dict[str, Any] = json.loads(run.stdout)
    return doc


def skopeo_inspect(location: str) -> dict[str, Any]:
    done = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", location],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def raw_bytes(*args: str | Path) -> bytes:
    """What ``pypull inspect ARGS`` writes, as bytes (``--raw``, ``--config``)."""
    done = subprocess.run(
        [sys.executable, "-m", "puller", "inspect", *map(str, args)],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def host_child(image: Image) -> Any:
    host = host_platform()
    try:
        return image.manifest_for(host.os, host.architecture)
    except LookupError:
        pytest.skip(f"the fixture has no manifest for this machine ({host})")


# -- inspect: the store --------------------------------------------------------------------------


def test_inspect_of_a_pulled_oci_image_matches_skopeo_on_the_fields_they_share(
    registry: Registry, store: Path
) -> None:
    image = redis()
    name = pulled(registry, store, image)
    ours = inspect_json("--store", store, name)
    theirs = skopeo_inspect(f"oci:{store}:{name}")

    assert {k: ours[k] for k in SHARED} == {k: theirs[k] for k in SHARED}
    assert ours["Name"] == f"{registry.host}/library/redis"
    assert ours["RepoTags"] == ["latest"]
    assert "Variant" not in ours  # skopeo's omitempty
    config = json.loads(image.manifests[0].config.data)
    assert ours["Cmd"] == config["config"]["Cmd"] == ["/bin/sh"]
    assert ours["Entrypoint"] is None and ours["User"] == "" and ours["WorkingDir"] == "/"
    assert ours["LayersData"] == [
        {"MIMEType": layer.media_type, "Digest": layer.digest, "Size": layer.size,
         "Annotations": None}
        for layer in image.manifests[0].layers
    ]  # fmt: skip


def test_inspect_of_a_docker_image_shows_the_digest_and_manifest_the_registry_served(
    registry: Registry, store: Path
) -> None:
    image = docker_media()
    name = pulled(registry, store, image)
    ours = inspect_json("--store", store, name)
    theirs = skopeo_inspect(f"docker://{name}")

    # The store keeps it in OCI form, but what the user saw at pull time is the Docker digest.
    assert ours["Digest"] == theirs["Digest"] == image.digest
    for key in ("Name", "RepoTags", *SHARED):
        assert ours[key] == theirs[key], key
    assert {d["MIMEType"] for d in ours["LayersData"]} == {DOCKER_LAYER}

    served = raw_bytes("--raw", "--store", store, name)
    assert served == image.raw and sha256(served) == ours["Digest"]
    config = raw_bytes("--config", "--store", store, name)
    assert config == image.manifests[0].config.data
    assert sha256(config) == image.manifests[0].config.digest


def test_raw_and_config_of_one_platform_of_an_index_are_its_bytes(
    registry: Registry, store: Path
) -> None:
    image = multiplatform()
    child = host_child(image)
    name = pulled(registry, store, image)
    ours = inspect_json("--store", store, name)

    assert ours["Digest"] == image.digest  # the tag resolved to the index
    assert ours["Layers"] == [layer.digest for layer in child.layers]
    assert ours == {
        **skopeo_inspect(f"docker://{name}"),
        **{k: ours[k] for k in _OURS_ONLY if k in ours},
    }
    manifest = raw_bytes("--raw", "--store", store, name)
    assert manifest == child.raw and sha256(manifest) == child.digest
    assert raw_bytes("--config", "--raw", "--store", store, name) == child.config.data


#: Fields newer skopeo versions and pypull print that skopeo 1.9 does not.
_OURS_ONLY = ("LayersData", "Variant", "Entrypoint", "Cmd", "WorkingDir", "User")


def test_an_image_not_in_the_store_is_one_line_and_status_1(
    registry: Registry, store: Path
) -> None:
    missing = run_pypull("inspect", "--store", store, f"{registry.host}/library/redis")
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.splitlines() == [
        f"Error: {registry.host}/library/redis:latest: not in the store {store} "
        "(pull it first, or use --remote)"
    ]
    assert not store.exists()  # asking does not make a store

    pulled(registry, store, redis())
    other = run_pypull("inspect", "--store", store, f"{registry.host}/library/redis:7")
    assert other.returncode == 1 and len(other.stderr.splitlines()) == 1
    wrong = run_pypull(
        "inspect", "--store", store, "--platform", "linux/s390x", f"{registry.host}/library/redis"
    )
    assert wrong.returncode == 1
    assert wrong.stderr == (
        f"Error: no manifest for platform linux/s390x in {registry.host}/library/redis:latest "
        "(available: linux/amd64)\n"
    )


def test_an_image_is_found_by_the_digest_its_pull_showed(registry: Registry, store: Path) -> None:
    image = docker_media()
    name = pulled(registry, store, image)
    by_digest = inspect_json("--store", store, f"{name.rsplit(':', 1)[0]}@{image.digest}")
    assert by_digest == inspect_json("--store", store, name)


def test_a_config_that_does_not_verify_is_refused_in_one_line(
    registry: Registry, store: Path
) -> None:
    image = redis()
    name = pulled(registry, store, image)
    config = image.manifests[0].config
    path = store / "blobs" / "sha256" / config.digest.split(":")[1]
    path.write_bytes(config.data.replace(b"/bin/sh", b"/bin/xx"))

    run = run_pypull("inspect", "--store", store, name)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.startswith(f"Error: digest mismatch for {config.digest}")
    assert len(run.stderr.splitlines()) == 1


# -- inspect --remote -----------------------------------------------------------------------------


def test_remote_asks_for_the_manifests_and_the_config_only_and_writes_nothing(
    registry: Registry, store: Path
) -> None:
    image = multiplatform()
    child = image.manifest_for("linux", "arm64")
    name = f"{registry.host}/{image.reference}"
    log = AccessLog(registry)
    run = run_pypull("inspect", "--remote", "--platform", "linux/arm64", "--store", store, name)

    assert run.returncode == 0, run.stderr
    assert not store.exists()
    repo = f"/v2/{image.repository}"
    assert log.requests() == [
        ("GET", f"{repo}/manifests/{image.tag}"),
        ("GET", f"{repo}/manifests/{child.digest}"),
        ("GET", f"{repo}/blobs/{child.config.digest}"),
    ]
    remote = json.loads(run.stdout)
    assert remote["Digest"] == image.digest
    assert remote["Architecture"] == "arm64" and remote["Variant"] == "v8"
    assert remote["Layers"] == [layer.digest for layer in child.layers]
    assert remote["RepoTags"] == []  # as skopeo --no-tags: `pypull tags` lists them

    # What it says is what a pull then puts in the store.
    assert run_pypull("--store", store, "--platform", "linux/arm64", name).returncode == 0
    local = inspect_json("--store", store, name)
    assert {**local, "RepoTags": []} == remote


def test_remote_of_an_image_the_store_holds_costs_one_head(registry: Registry, store: Path) -> None:
    image = multiplatform()
    name = pulled(registry, store, image)
    before = sorted(p.name for p in (store / "blobs" / "sha256").iterdir())
    index = (store / "index.json").read_bytes()
    log = AccessLog(registry)
    remote = inspect_json("--remote", "--store", store, name)

    # What the tag points at is asked by HEAD (not counted as a pull by Docker Hub); what the
    # store holds by that digest is the same bytes, so nothing else is asked for.
    assert log.requests() == [("HEAD", f"/v2/{image.repository}/manifests/{image.tag}")]
    assert {**inspect_json("--store", store, name), "RepoTags": []} == remote
    assert sorted(p.name for p in (store / "blobs" / "sha256").iterdir()) == before
    assert (store / "index.json").read_bytes() == index
    assert list((store / ".pypull" / "leases").iterdir()) == []  # given back on the way out


def test_remote_raw_is_the_platform_manifest_the_registry_serves(registry: Registry) -> None:
    image = docker_media()
    name = f"{registry.host}/{image.reference}"
    raw = raw_bytes("--remote", "--raw", name)
    assert raw == image.raw
    assert raw_bytes("--remote", "--config", name) == image.manifests[0].config.data


# -- stores written as `pull --all-platforms` leaves them ---------------------------------------


def store_all_platforms(store: Path, name: str, image: Image) -> Descriptor:
    """What ``pull --all-platforms`` leaves, written by hand (that code is on another branch):
    the entry is an OCI index of the platforms' manifests in OCI form, annotated with the
    served index's digest when that differs; the served index and manifests are kept too."""
    held = Store(store)
    children = []
    for m in image.manifests:
        for blob in m.blobs:
            held.put_bytes(parse_digest(blob.digest), blob.data)
        held.put_bytes(parse_digest(m.digest), m.raw)
        raw = m.raw
        if m.media_type == DOCKER_MANIFEST:
            parsed = parse_manifest(m.raw, m.media_type)
            assert isinstance(parsed, Manifest)
            raw = manifest_to_oci(parsed)[1]
            held.put_bytes(digest_of(raw), raw)
        children.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": str(digest_of(raw)),
                "size": len(raw),
                "platform": m.platform,
            }
        )
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}
    # An OCI index of OCI manifests is kept as served; anything else in OCI form.
    index = image.raw if image.media_type == OCI_INDEX else json.dumps(doc).encode()
    held.put_bytes(parse_digest(image.digest), image.raw)
    held.put_bytes(digest_of(index), index)
    served = {RESOLVED_ANNOTATION: image.digest} if str(digest_of(index)) != image.digest else {}
    entry = Descriptor(OCI_INDEX, digest_of(index), len(index), None, served)
    held.tag(name, entry)
    return entry


def docker_multi() -> Image:
    children = [
        make_image(
            "team/dmulti", "1", layers=2, family="docker", platform=p, seed=f"dmulti/{p[1]}"
        ).manifests[0]
        for p in (("linux", "amd64", None), ("linux", "arm64", "v8"))
    ]
    return make_index("team/dmulti", "1", children, "docker")


def test_an_all_platforms_entry_is_described_for_this_machine_or_platform(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    image = docker_multi()
    name = "registry.example:5000/team/dmulti:1"
    store_all_platforms(store, name, image)
    child = host_child(image)

    ours = inspect_json("--store", store, name)
    assert ours["Digest"] == image.digest  # the served Docker list, not the OCI index stored
    assert ours["Layers"] == [layer.digest for layer in child.layers]
    assert ours["RepoTags"] == ["1"]
    # The platform's manifest as served: Docker, with the digest the list names.
    assert raw_bytes("--raw", "--store", store, name) == child.raw
    assert raw_bytes("--config", "--store", store, name) == child.config.data

    arm = inspect_json("--store", store, "--platform", "linux/arm64/v8", name)
    assert (arm["Architecture"], arm["Variant"]) == ("arm64", "v8")
    assert arm["Layers"] == [x.digest for x in image.manifest_for("linux", "arm64").layers]

    none = run_pypull("inspect", "--store", store, "--platform", "linux/ppc64le", name)
    assert none.returncode == 1
    assert none.stderr.startswith("Error: no manifest for platform linux/ppc64le in ")


def test_an_oci_all_platforms_entry_agrees_with_skopeo(tmp_path: Path) -> None:
    store = tmp_path / "store"
    image = multiplatform()
    name = "registry.example:5000/library/multi:latest"
    entry = store_all_platforms(store, name, image)
    host_child(image)

    ours = inspect_json("--store", store, name)
    theirs = skopeo_inspect(f"oci:{store}:{name}")
    # Both name the index the entry is (the tag's digest), and describe this machine's platform.
    assert {k: ours[k] for k in SHARED} == {k: theirs[k] for k in SHARED}
    assert ours["Digest"] == image.digest == str(entry.digest)
    assert RESOLVED_ANNOTATION not in entry.annotations


# -- images ---------------------------------------------------------------------------------------


def test_images_json_is_one_object_per_line_and_quiet_prints_ids(
    registry: Registry, store: Path
) -> None:
    pulled(registry, store, redis())
    pulled(registry, store, docker_media())
    multi = docker_multi()
    store_all_platforms(store, "registry.example:5000/team/dmulti:1", multi)
    child = host_child(multi)

    run = run_pypull("images", "--format", "json", "--store", store)
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert all((row.pop("event"), row.pop("v")) == ("image", 1) for row in rows)
    by_name = {row["Name"]: row for row in rows}
    redis_row = by_name[f"{registry.host}/library/redis:latest"]
    config = redis().manifests[0].config
    assert redis_row == {
        "Name": f"{registry.host}/library/redis:latest",
        "Repository": f"{registry.host}/library/redis",
        "Tag": "latest",
        "Digest": redis().digest,
        "ID": config.digest,
        "Size": config.size + sum(layer.size for layer in redis().manifests[0].layers),
        "Platforms": [],
    }
    assert by_name[f"{registry.host}/library/dockerimg:latest"]["Digest"] == docker_media().digest
    index_row = by_name["registry.example:5000/team/dmulti:1"]  # one row for every platform
    assert index_row["ID"] == child.config.digest
    assert index_row["Size"] == sum(blob.size for blob in child.blobs)
    assert index_row["Platforms"] == ["linux/amd64", "linux/arm64/v8"]
    assert index_row["Digest"] == multi.digest

    quiet = run_pypull("images", "-q", "--store", store)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.splitlines() == [row["ID"][7:19] for row in rows]
    whole = run_pypull(
        "images", "-q", "--no-trunc", "--store", store, f"{registry.host}/library/redis"
    )
    assert whole.stdout == f"{config.digest}\n"


def test_images_table_says_its_size_is_compressed(registry: Registry, store: Path) -> None:
    pulled(registry, store, redis())
    run = run_pypull("images", "--store", store)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].endswith("   SIZE (COMPRESSED)")
    assert "compressed" in run_pypull("images", "--help").stdout


# -- the Python API -------------------------------------------------------------------------------


def test_the_python_api_returns_records(registry: Registry, store: Path) -> None:
    image = docker_media()
    name = pulled(registry, store, image)

    info = asyncio.run(puller.inspect(name, store=store))
    assert isinstance(info, puller.ImageInfo)
    assert str(info.digest) == image.digest
    assert info.raw == image.raw and info.raw_config == image.manifests[0].config.data
    assert info.to_dict() == inspect_json("--store", store, name)
    with pytest.raises(puller.NotFound):
        asyncio.run(puller.inspect(f"{registry.host}/library/nothing", store=store))

    records = puller.images(store)
    assert [str(r.reference) for r in records] == [name]
    assert isinstance(records[0], puller.ImageRecord)
    assert str(records[0].id) == image.manifests[0].config.digest


# -- a store written by someone else --------------------------------------------------------------


def store_one(store: Path, name: str, config: bytes, *, config_size: int | None = None) -> None:
    """An image of ``config`` and no layer, written by hand; ``config_size`` is what its
    manifest claims (default: the truth)."""
    held = Store(store)
    held.put_bytes(digest_of(config), config)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": str(digest_of(config)),
            "size": len(config) if config_size is None else config_size,
        },
        "layers": [],
    }
    manifest = json.dumps(doc).encode()
    held.put_bytes(digest_of(manifest), manifest)
    held.tag(name, Descriptor(OCI_MANIFEST, digest_of(manifest), len(manifest)))


def test_text_from_a_config_reaches_the_terminal_escaped(tmp_path: Path) -> None:
    store = tmp_path / "store"
    hostile = "\x1b]0;owned\x07\x1b[2J\u202e\x7f\x9b"
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": 12,  # not a string: absent, as a field of the wrong type
        "config": {"Labels": {"evil": hostile}, "Env": ["A=1", 2], "User": hostile},
    }
    store_one(store, "registry.example/team/evil:1", json.dumps(config).encode())
    run = run_pypull("inspect", "--store", store, "registry.example/team/evil:1")

    assert run.returncode == 0, run.stderr
    assert all(ch == "\n" or 0x20 <= ord(ch) < 0x7F for ch in run.stdout)
    doc = json.loads(run.stdout)
    assert doc["Labels"] == {"evil": hostile} and doc["User"] == hostile  # the data, intact
    assert doc["Created"] is None and doc["Env"] is None


def test_a_config_the_manifest_says_is_huge_is_not_read(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store_one(store, "registry.example/team/big:1", b"{}", config_size=1 << 40)
    run = run_pypull("inspect", "--store", store, "registry.example/team/big:1")
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.splitlines() == [
        f"Error: registry.example/team/big:1: its config {digest_of(b'{}')} is {1 << 40} bytes, "
        "over the 8 MiB pypull reads"
    ]


def test_remote_platform_of_a_single_platform_image_must_be_its_own(registry: Registry) -> None:
    name = f"{registry.host}/{redis().reference}"
    run = run_pypull("inspect", "--remote", "--platform", "linux/arm64", name)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr == (
        f"Error: no manifest for platform linux/arm64 in {name} (available: linux/amd64)\n"
    )


def test_images_lists_an_image_whose_manifest_is_missing_without_id_or_size(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    store_one(store, "registry.example/team/whole:1", json.dumps({"os": "linux"}).encode())
    gone = digest_of(b"a manifest that is not there")
    Store(store).tag("registry.example/team/gone:1", Descriptor(OCI_MANIFEST, gone, 28))

    rows = [
        json.loads(line)
        for line in run_pypull("images", "--format", "json", "--store", store).stdout.splitlines()
    ]
    assert [(r["Name"], r["ID"] is None, r["Size"] is None) for r in rows] == [
        ("registry.example/team/gone:1", True, True),
        ("registry.example/team/whole:1", False, False),
    ]
    table = run_pypull("images", "--store", store)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[1].split() == [
        "registry.example/team/gone",
        "1",
        "<missing>",
        "<missing>",
    ]
    missing = run_pypull("inspect", "--store", store, "registry.example/team/gone:1")
    assert missing.returncode == 1
    assert missing.stderr == (
        f"Error: registry.example/team/gone:1: the store {store} lacks its manifest {gone}\n"
    )
