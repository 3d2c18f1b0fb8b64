"""`pypull pull` as a tool for scripts, against the real registry (the fake one where a knob is
needed): ``--format json`` events, ``-f FILE`` lists, ``-a`` every tag (Link pages followed),
the summary line and exit status of several images, and ``--all-platforms`` stores that skopeo,
umoci and ``pypull verify`` read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import puller
from fixtures.images import (
    OCI_INDEX,
    Image,
    Manifest,
    make_image,
    make_index,
    make_layer,
    multiplatform,
    redis,
    shared_pair,
)
from fixtures.registry import PASSWORD, USER, Registry, push
from tests.support.auth import basic_auth, write_docker_config
from tests.support.fakeregistry import Answer, Status, start_fake
from tests.support.fakeregistry import run_pypull as run_against_fake
from tests.support.helpers import AccessLog, raw, refs, run_pypull, umoci_unpack

OCI_REF_NAME = "org.opencontainers.image.ref.name"
RESOLVED = "io.pypull.resolved.digest"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def hub_args(registry: Registry) -> list[str]:
    return ["--mirror", registry.url, "--mirror-only"]


def events(stdout: str) -> list[dict[str, Any]]:
    """Every line of stdout as JSON (a line that does not parse fails the test), each with its
    kind and the schema version."""
    docs = [json.loads(line) for line in stdout.splitlines()]
    for doc in docs:
        assert isinstance(doc["event"], str) and doc["v"] == 1, doc
    return docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["event"] == kind]


def index_entry(store: Path, name: str) -> dict[str, Any]:
    doc = json.loads((store / "index.json").read_text())
    (entry,) = [e for e in doc["manifests"] if e["annotations"][OCI_REF_NAME] == name]
    return entry


def blob(store: Path, digest: str) -> bytes:
    return (store / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def blob_files(store: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (store / "blobs" / "sha256").iterdir()}


def pull_with_stdin(*args: str | Path, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPULL_")}
    return subprocess.run(
        [sys.executable, "-m", "puller", *map(str, args)],
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        timeout=120,
    )


def unpack_child(store: Path, descriptor: dict[str, Any], work: Path) -> Path:
    """``umoci unpack --rootless`` of one child of an index in the store; its rootfs.

    umoci resolves a name by walking from its index.json entry to every image manifest it
    reaches (casext.ResolveReference) and refuses more than one ("tag is ambiguous"): it has no
    way to pick a platform. So umoci gets a copy of the layout whose index.json names just this
    child, which is what a user of umoci does with a multi-platform layout too.
    """
    layout = work / f"layout-{descriptor['digest'][7:19]}"
    shutil.copytree(store, layout)
    named = {**descriptor, "annotations": {OCI_REF_NAME: "child"}}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [named]}
    (layout / "index.json").write_text(json.dumps(index))
    return umoci_unpack(f"{layout}:child", work / f"bundle-{descriptor['digest'][7:19]}")


def verify(store: Path) -> None:
    run = run_pypull("verify", "--store", store)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.rstrip().endswith("no problems")


# -- --format json ----------------------------------------------------------------------------


def test_json_gives_a_parsable_line_per_event_and_every_layer_completes_or_exists(
    registry: Registry, store: Path
) -> None:
    image = redis()
    layers = [layer.digest for layer in image.manifests[0].layers]
    assert len(layers) == 8
    run = run_pypull(*hub_args(registry), "--store", store, "--format", "json", "redis")

    assert run.returncode == 0, run.stderr
    docs = events(run.stdout)  # every line of stdout parses: no "Using default tag" line
    (resolved,) = of_kind(docs, "resolved")
    assert resolved["reference"] == "docker.io/library/redis:latest"
    assert resolved["digest"] == image.digest
    assert resolved["endpoint"] == registry.url
    assert resolved["layers"] == layers
    assert [d["layer"] for d in of_kind(docs, "complete")] == layers  # bottom first
    assert of_kind(docs, "exists") == []
    for progress in of_kind(docs, "progress"):
        assert progress["layer"] in layers and 0 < progress["current"] <= progress["total"]
    assert docs[-1] == {
        "event": "done",
        "v": 1,
        "reference": "docker.io/library/redis:latest",
        "digest": image.digest,
        "up_to_date": False,
        "downloaded": docs[-1]["downloaded"],
    }
    assert set(docs[-1]["downloaded"]) == {b.digest for b in image.blobs}

    again = run_pypull(*hub_args(registry), "--store", store, "--format", "json", "redis")
    assert again.returncode == 0, again.stderr
    docs = events(again.stdout)
    assert [d["layer"] for d in of_kind(docs, "exists")] == layers
    assert of_kind(docs, "complete") == of_kind(docs, "progress") == []
    assert docs[-1]["up_to_date"] is True and docs[-1]["downloaded"] == []


def test_json_progress_is_thinned_per_layer_and_ends_at_the_total(monkeypatch: Any) -> None:
    """Hundreds of progress events a second become one line per layer per quarter second,
    and the last one (current == total) is always printed."""
    import io
    import time

    from puller.cli.render import JsonRenderer
    from puller.events import LayerProgress
    from puller.oci.digest import parse_digest

    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    a, b = parse_digest("sha256:" + "a" * 64), parse_digest("sha256:" + "b" * 64)
    out = io.StringIO()
    renderer = JsonRenderer(out)
    for n in range(1, 1001):  # 1000 events over one second, for each of two layers
        clock[0] += 0.001
        renderer(LayerProgress(a, n, 1000))
        renderer(LayerProgress(b, n, 1000))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    for digest in (a, b):
        mine = [d for d in lines if d["layer"] == str(digest)]
        assert 4 <= len(mine) <= 6, mine  # the first, one per 0.25 s, the last
        assert mine[-1]["current"] == mine[-1]["total"] == 1000


async def test_a_hostile_error_message_is_one_parsable_ascii_line(store: Path) -> None:
    image = make_image("test/hostile-json", "1", layers=1)
    hostile = "\x1b]0;owned\x07\x1b[2J\u202eevil"
    async with start_fake([image]) as fake:
        fake.inject(
            "/manifests/", Status(404, times=None, code="MANIFEST_UNKNOWN", message=hostile)
        )
        run = await run_against_fake("--format", "json", fake.ref(image), store=store)
    assert run.returncode == 1
    assert run.stdout.isascii() and run.stdout.count("\n") == 1
    (error,) = events(run.stdout)
    assert error["event"] == "error"
    assert error["reference"] == fake.ref(image)
    assert hostile in error["message"]  # the script gets the text itself, escaped as JSON
    assert run.stderr.startswith("Error: ") and "\x1b" not in run.stderr


async def test_a_retry_is_an_event_with_a_bounded_message(store: Path) -> None:
    image = make_image("test/retry-json", "1", layers=1)
    async with start_fake([image]) as fake:
        fake.inject(
            "/manifests/",
            Status(503, code="UNAVAILABLE", message="\x1b[2J" * 3000, headers={"Retry-After": "0"}),
        )
        run = await run_against_fake("--format", "json", fake.ref(image), store=store)
    assert run.returncode == 0, run.stderr
    assert run.stdout.isascii()
    docs = events(run.stdout)
    (retrying,) = of_kind(docs, "retrying")
    assert retrying["reference"] == fake.ref(image) and retrying["attempt"] == 1
    assert "\x1b[2J" in retrying["message"] and len(retrying["message"]) <= 2000
    assert docs[-1]["event"] == "done"


# -- several images: -f FILE, the summary, the exit status ----------------------------------------


def test_a_file_of_images_pulls_each_and_ends_with_a_summary(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    a, b = shared_pair()
    listing = tmp_path / "images.txt"
    listing.write_text(
        f"# the team's images\n\n{registry.host}/{a.reference}   # app a\n"
        f"  {registry.host}/{b.reference}\n"
    )
    run = run_pypull("--store", store, "-f", listing)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "2 images pulled: 2 downloaded, 0 up to date, 0 failed"
    assert sorted(refs(store)) == sorted(f"{registry.host}/{i.reference}" for i in (a, b))


def test_images_from_stdin_and_arguments_together(registry: Registry, store: Path) -> None:
    a, b = shared_pair()
    first = run_pypull("--store", store, f"{registry.host}/{a.reference}")
    assert first.returncode == 0, first.stderr
    run = pull_with_stdin(
        "--store", store, f"{registry.host}/{a.reference}", "-f", "-",
        stdin=f"{registry.host}/{b.reference}\n",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "2 images pulled: 1 downloaded, 1 up to date, 0 failed"
    assert f"{registry.host}/{b.reference}" in refs(store)


def test_a_bad_line_names_its_file_and_line_and_nothing_is_pulled(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text(f"{registry.host}/{redis().reference}\n# fine so far\nRedis:Latest\n")
    run = run_pypull("--store", store, "-f", listing)
    assert run.returncode == 1
    assert run.stderr.startswith(f"Error: {listing}:3: invalid reference 'Redis:Latest'")
    assert len(run.stderr.splitlines()) == 1
    assert not store.exists()

    stdin = pull_with_stdin("--store", store, "-f", "-", stdin="\n\nUPPER\n")
    assert stdin.returncode == 1
    assert stdin.stderr.startswith("Error: <stdin>:3: invalid reference 'UPPER'")


def test_a_bad_line_of_a_sync_list_names_its_file_and_line_too(tmp_path: Path) -> None:
    listing = tmp_path / "mirror.txt"
    listing.write_text("redis:7\n\nNope!\n")
    run = run_pypull("sync", "--to", "127.0.0.1:1/mirror", "-f", listing)
    assert run.returncode == 1
    assert run.stderr.startswith(f"Error: {listing}:3: invalid reference 'Nope!'")
    assert len(run.stderr.splitlines()) == 1


def test_an_unreadable_or_empty_list_is_a_one_line_error(store: Path, tmp_path: Path) -> None:
    missing = run_pypull("--store", store, "-f", tmp_path / "nope.txt")
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error: cannot read the image list ")
    assert len(missing.stderr.splitlines()) == 1
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n")
    run = run_pypull("--store", store, "-f", empty)
    assert run.returncode == 2
    assert "names no image" in run.stderr


def test_one_failing_image_fails_the_run_but_not_the_others(
    registry: Registry, store: Path
) -> None:
    a, b = shared_pair()
    missing = f"{registry.host}/library/no-such-image:1"
    good = [f"{registry.host}/{a.reference}", f"{registry.host}/{b.reference}"]
    run = run_pypull("--store", store, good[0], missing, good[1])

    assert run.returncode == 1
    assert run.stdout.splitlines()[-1] == "3 images pulled: 2 downloaded, 0 up to date, 1 failed"
    assert run.stderr.startswith(f"Error: manifest for {missing} not found")
    assert sorted(refs(store)) == sorted(good)

    again = run_pypull("--store", store, "--format", "json", good[0], missing, good[1])
    assert again.returncode == 1
    docs = events(again.stdout)
    (error,) = of_kind(docs, "error")
    assert error["reference"] == missing and "not found" in error["message"]
    assert [d["up_to_date"] for d in of_kind(docs, "done")] == [True, True]
    assert docs[-1] == {
        "event": "summary",
        "v": 1,
        "images": 3,
        "downloaded": 0,
        "up_to_date": 2,
        "failed": 1,
    }


# -- -a / --all-tags --------------------------------------------------------------------------


async def test_all_tags_follows_the_link_pages_and_pulls_every_tag(store: Path) -> None:
    tags = ["1.0", "1.1", "2.0", "latest", "rc"]
    images = [make_image("team/app", tag, layers=2) for tag in tags]
    async with start_fake(images, tags_page=2) as fake:
        run = await run_against_fake("-a", f"{fake.host}/team/app", store=store)
        listings = [r for r in fake.log if r.kind == "tags"]
    assert run.returncode == 0, run.stderr
    assert len(listings) == 3  # pages of 2, 2 and 1: each Link followed
    assert sorted(refs(store)) == sorted(f"{fake.host}/team/app:{t}" for t in tags)
    assert run.lines[-1] == "5 images pulled: 5 downloaded, 0 up to date, 0 failed"
    assert "Using default tag" not in run.stdout


async def test_all_tags_with_a_listed_name_that_is_no_tag_pulls_the_rest(store: Path) -> None:
    good = make_image("team/odd", "1", layers=1)
    async with start_fake([good]) as fake:
        body = json.dumps({"name": "team/odd", "tags": ["1", "\x1b[2Jbad tag"]})
        fake.inject("/tags/list", Answer(200, body.encode(), "application/json"))
        run = await run_against_fake("-a", "--format", "json", f"{fake.host}/team/odd", store=store)
    assert run.returncode == 1
    docs = events(run.stdout)
    assert [d["reference"] for d in of_kind(docs, "done")] == [f"{fake.host}/team/odd:1"]
    (error,) = of_kind(docs, "error")
    assert "not a valid tag name" in error["message"] and "\x1b" not in error["message"]
    assert docs[-1]["failed"] == 1 and docs[-1]["downloaded"] == 1


# -- --all-platforms ----------------------------------------------------------------------------


def test_all_platforms_of_an_oci_index_stores_the_index_and_both_children(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    image = multiplatform()
    ref = f"{registry.host}/{image.reference}"
    log = AccessLog(registry)
    run = run_pypull("--store", store, "--all-platforms", ref)

    assert run.returncode == 0, run.stderr
    assert f"Digest: {image.digest}" in run.stdout.splitlines()
    entry = index_entry(store, ref)
    # nothing needed converting: the entry is the served index itself, no annotation
    assert (entry["mediaType"], entry["digest"]) == (OCI_INDEX, image.digest)
    assert RESOLVED not in entry["annotations"]
    assert blob(store, image.digest) == image.raw
    children = {m.digest for m in image.manifests}
    assert blob_files(store) == {image.digest} | children | {b.digest for b in image.blobs}
    inspected = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{store}:{ref}"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert inspected.stdout == image.raw
    verify(store)
    assert sorted(log.blob_requests()) == sorted(b.digest for b in image.blobs)

    for child in json.loads(image.raw)["manifests"]:
        rootfs = unpack_child(store, child, tmp_path)
        platform = child["platform"]
        spec = (platform["os"], platform["architecture"], platform.get("variant"))
        seed = "library/multi:latest/" + "/".join(p for p in spec if p)
        assert (rootfs / "etc/pypull/layer-0.conf").read_text().startswith(f"seed={seed}\n")
        assert (rootfs / "tmp/scratch-2.txt").exists()
        assert not (rootfs / "tmp/scratch-1.txt").exists()  # layer 2's whiteout applied


def docker_list_with_shared_base(repository: str) -> Image:
    """A Docker manifest list of two Docker v2 children that share their first layer."""
    base = make_layer(f"{repository}/base", 0, family="docker")
    children: list[Manifest] = [
        make_image(
            repository, "1", layers=3, family="docker", seed=f"{repository}/{arch}",
            platform=("linux", arch, variant), shared_layers=(base,),
        ).manifests[0]
        for arch, variant in (("amd64", None), ("arm", "v7"))
    ]  # fmt: skip
    return make_index(repository, "1", children, "docker")


def test_all_platforms_of_a_docker_list_stores_an_oci_index_of_converted_children(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    repository = f"test/dlist-{uuid.uuid4().hex[:8]}"
    image = docker_list_with_shared_base(repository)
    push(registry.url, image)
    ref = f"{registry.host}/{image.reference}"
    log = AccessLog(registry)
    run = run_pypull("--store", store, "--format", "json", "--all-platforms", ref)

    assert run.returncode == 0, run.stderr
    docs = events(run.stdout)
    layers = list(dict.fromkeys(b.digest for m in image.manifests for b in m.layers))
    assert len(layers) == 5  # the base once, two of each platform's own
    assert of_kind(docs, "resolved")[0]["layers"] == layers
    assert sorted(d["layer"] for d in of_kind(docs, "complete")) == sorted(layers)
    assert docs[-1]["event"] == "done" and docs[-1]["digest"] == image.digest
    # the shared layer was fetched once
    assert Counter(log.blob_requests()) == Counter(b.digest for b in image.blobs)

    entry = index_entry(store, ref)
    assert entry["mediaType"] == OCI_INDEX
    assert entry["annotations"][RESOLVED] == image.digest != entry["digest"]
    oci_index = json.loads(blob(store, entry["digest"]))
    assert oci_index["mediaType"] == OCI_INDEX
    served = json.loads(image.raw)["manifests"]
    assert [c["platform"] for c in oci_index["manifests"]] == [c["platform"] for c in served]
    stored = {image.digest, entry["digest"]} | {m.digest for m in image.manifests}
    for child, original in zip(oci_index["manifests"], image.manifests, strict=True):
        assert child["mediaType"] == OCI_MANIFEST
        converted = json.loads(blob(store, child["digest"]))
        assert converted["mediaType"] == OCI_MANIFEST
        assert [x["digest"] for x in converted["layers"]] == [b.digest for b in original.layers]
        assert converted["config"]["digest"] == original.config.digest
        stored.add(child["digest"])
        rootfs = unpack_child(store, child, tmp_path)
        arch = original.platform["architecture"]
        assert f"seed={repository}/{arch}\n" in (rootfs / "etc/pypull/layer-2.conf").read_text()
    assert blob_files(store) == stored | {b.digest for b in image.blobs}
    inspected = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{store}:{ref}"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert json.loads(inspected.stdout) == oci_index
    verify(store)

    # A re-pull is up to date and asks by HEAD only; a single-platform pull replaces the entry.
    log = AccessLog(registry)
    again = run_pypull("--store", store, "--all-platforms", ref)
    assert again.returncode == 0, again.stderr
    assert f"Status: Image is up to date for {ref}" in again.stdout.splitlines()
    assert [m for m, p in log.requests() if "/manifests/" in p] == ["HEAD"]
    one = run_pypull("--store", store, "--platform", "linux/arm/v7", ref)
    assert one.returncode == 0, one.stderr
    single = index_entry(store, ref)
    assert single["mediaType"] == OCI_MANIFEST
    assert single["digest"] == oci_index["manifests"][1]["digest"]
    assert single["annotations"][RESOLVED] == image.digest


def test_all_platforms_keeps_attestations_so_the_image_pushes_whole(
    registry: Registry, target: Registry, store: Path
) -> None:
    """skopeo copy --all keeps them; an index stored as served names them, so a push needs
    them (a store without them failed the push)."""
    write_docker_config({"auths": {target.host: {"auth": basic_auth(USER, PASSWORD)}}})
    repository = f"test/attested-{uuid.uuid4().hex[:8]}"
    amd64 = make_image(repository, "1", layers=2, seed=f"{repository}/amd64").manifests[0]
    attestation = make_image(
        repository, "1", layers=1, seed=f"{repository}/att", platform=("unknown", "unknown", None)
    ).manifests[0]
    image = make_index(repository, "1", [amd64, attestation], "oci")
    push(registry.url, image)
    ref = f"{registry.host}/{image.reference}"
    run = run_pypull("--store", store, "--all-platforms", ref)

    assert run.returncode == 0, run.stderr
    assert index_entry(store, ref)["digest"] == image.digest  # the served index, as it is
    assert blob_files(store) == {b.digest for b in image.blobs} | {
        image.digest,
        amd64.digest,
        attestation.digest,
    }
    assert run_pypull("verify", "--store", store).returncode == 0
    pushed = run_pypull("push", "--store", store, ref, f"{target.host}/{repository}")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert raw(target, image.reference, creds=True) == image.raw
    assert raw(target, f"{repository}@{attestation.digest}", creds=True) == attestation.raw


async def test_the_python_api_returns_every_platform(registry: Registry, store: Path) -> None:
    image = multiplatform()
    async with puller.Puller(store) as p:
        result = await p.pull_all_platforms(f"{registry.host}/{image.reference}")
    assert isinstance(result, puller.AllPlatformsResult)
    assert result.digest == result.stored_digest
    assert str(result.digest) == image.digest
    assert [str(i.platform) for i in result.images] == ["linux/amd64", "linux/arm64/v8"]
    for got, want in zip(result.images, image.manifests, strict=True):
        assert str(got.manifest_digest) == want.digest
        assert [str(d.digest) for d in got.layers] == [b.digest for b in want.layers]
    assert sorted(map(str, result.downloaded)) == sorted(b.digest for b in image.blobs)
    assert not result.up_to_date


def test_all_platforms_of_a_single_manifest_stores_it_as_a_plain_pull_does(
    registry: Registry, store: Path
) -> None:
    run = run_pypull(*hub_args(registry), "--store", store, "--all-platforms", "redis")
    assert run.returncode == 0, run.stderr
    entry = index_entry(store, "docker.io/library/redis:latest")
    assert (entry["mediaType"], entry["digest"]) == (OCI_MANIFEST, redis().digest)


def test_push_of_an_all_platforms_pull_sends_the_index_the_registry_served(
    registry: Registry, target: Registry, store: Path
) -> None:
    """The store keeps the served list and children beside their OCI forms, so the whole
    image goes to another registry under the digest the pull showed."""
    write_docker_config({"auths": {target.host: {"auth": basic_auth(USER, PASSWORD)}}})
    repository = f"test/carried-{uuid.uuid4().hex[:8]}"
    image = docker_list_with_shared_base(repository)
    push(registry.url, image)
    ref = f"{registry.host}/{image.reference}"
    assert run_pypull("--store", store, "--all-platforms", ref).returncode == 0

    run = run_pypull("push", "--store", store, ref, f"{target.host}/{repository}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert raw(target, image.reference, creds=True) == image.raw
    for child in image.manifests:
        assert raw(target, f"{repository}@{child.digest}", creds=True) == child.raw


def test_prune_keeps_everything_an_all_platforms_pull_stored(
    registry: Registry, store: Path
) -> None:
    """The served list and its children are reached only through io.pypull.resolved.digest,
    the converted children through the OCI index: prune must keep both, and push needs them."""
    repository = f"test/pruned-{uuid.uuid4().hex[:8]}"
    image = docker_list_with_shared_base(repository)
    push(registry.url, image)
    ref = f"{registry.host}/{image.reference}"
    assert run_pypull("--store", store, "--all-platforms", ref).returncode == 0
    before = blob_files(store)
    assert image.digest in before and all(m.digest in before for m in image.manifests)

    run = run_pypull("prune", "--store", store)
    assert run.returncode == 0, run.stdout + run.stderr
    assert blob_files(store) == before
    verify(store)


# -- what a failure is, for a script: the error event's code ------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_each_failure_has_its_code_in_the_error_event(registry: Registry, store: Path) -> None:
    cases = {
        f"{registry.host}/library/redis:no-such-tag": "not-found",
        f"127.0.0.1:{closed_port()}/team/app:1": "unreachable",
        "UPPER/Case:1": "invalid-reference",
    }
    for reference, code in cases.items():
        run = run_pypull(
            "--store", store, "--format", "json", "--max-download-attempts", "1", reference
        )
        assert run.returncode == 1, run.stdout
        (error,) = events(run.stdout)
        assert error["event"] == "error"
        assert (error["reference"], error["code"]) == (reference, code)
        assert run.stderr.startswith("Error: ")


async def test_a_registry_that_wants_credentials_is_unauthorized_and_names_pypull_login(
    store: Path,
) -> None:
    image = make_image("team/private", "1", layers=1, seed="code-unauthorized")
    users = {"alice": "pw"}
    async with start_fake([image], auth="bearer", users=users, token_requires_auth=True) as fake:
        run = await run_against_fake("--format", "json", fake.ref(image), store=store)
    assert run.returncode == 1
    (error,) = events(run.stdout)
    assert error["code"] == "unauthorized"
    assert f"pypull login {fake.host}" in run.stderr
    assert "--creds USERNAME:PASSWORD" in run.stderr
