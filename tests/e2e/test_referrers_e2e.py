"""Issue 21's referrers acceptance, between two real registries (distribution 2.8, which has no
Referrers API): an image with an SBOM pushed by the ``oras`` client (a client no one here wrote)
with the image as its ``subject`` and listed in the image's ``sha256-<hex>`` index tag, and a
cosign-style signature under the tag ``sha256-<hex>.sig``, synced with ``referrers = true``:
both artifacts at the target by digest (read back by skopeo), the target's index tag listing the
SBOM, the ``.sig`` tag there; a second run writes nothing and fetches no image manifest."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oras.client
import oras.oci
import pytest

from fixtures.images import make_image
from fixtures.registry import Registry, push, running_registry
from tests.support.auth import basic_auth, write_docker_config
from tests.support.helpers import AccessLog, raw, run_pypull

pytestmark = pytest.mark.e2e

SPDX = "application/spdx+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
REPO = "library/signed"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A source registry of its own, with its access log."""
    config = {"log": {"accesslog": {"disabled": False}}}
    with running_registry(tmp_path_factory.mktemp("refs-source"), extra_config=config) as reg:
        yield reg


@pytest.fixture(autouse=True)
def target_credentials(target: Registry) -> None:
    from fixtures.registry import PASSWORD, USER

    write_docker_config({"auths": {target.host: {"auth": basic_auth(USER, PASSWORD)}}})


def oras_push(
    registry: Registry, tag: str, work: Path, payload: bytes, media_type: str, **extra: Any
) -> dict[str, Any]:
    """Push ``payload`` as a one-layer artifact with the ``oras`` client; the manifest pushed."""
    client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    work.mkdir(parents=True, exist_ok=True)
    layer = work / f"{tag}.payload"
    layer.write_bytes(payload)
    config = work / f"{tag}.config"
    config.write_text("{}")
    client.push(
        target=f"{registry.host}/{REPO}:{tag}",
        files=[f"{layer}:{media_type}"],
        manifest_config=f"{config}:{media_type}",
        disable_path_validation=True,
        quiet=True,
        **extra,
    )
    return json.loads(http(registry, f"/v2/{REPO}/manifests/{tag}"))


def http(registry: Registry, path: str, *, body: bytes | None = None, media: str = "") -> bytes:
    headers = {"Accept": f"{OCI_INDEX}, application/vnd.oci.image.manifest.v1+json"}
    if body is not None:
        headers["Content-Type"] = media
    request = urllib.request.Request(
        f"{registry.url}{path}", data=body, headers=headers, method="PUT" if body else "GET"
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return bytes(resp.read())


def digest_of(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_a_signed_image_with_an_sbom_arrives_with_both_and_a_second_run_only_asks(
    source: Registry, target: Registry, tmp_path: Path
) -> None:
    image = make_image(REPO, "1", layers=2, seed="referrers-e2e")
    push(source.url, image)
    subject = oras.oci.Subject(image.media_type, image.digest, image.size)
    sbom = oras_push(source, "sbom-of-1", tmp_path / "oras", b'{"spdxVersion":"SPDX-2.3"}', SPDX,
                     subject=subject)  # fmt: skip
    sbom_raw = http(source, f"/v2/{REPO}/manifests/sbom-of-1")
    sbom_digest = digest_of(sbom_raw)
    assert sbom["subject"]["digest"] == image.digest
    fallback = image.digest.replace(":", "-")
    sig_raw_doc = oras_push(source, f"{fallback}.sig", tmp_path / "oras", b"signed", SIMPLESIGNING)
    sig_raw = http(source, f"/v2/{REPO}/manifests/{fallback}.sig")
    assert sig_raw_doc["layers"][0]["mediaType"] == SIMPLESIGNING
    # distribution 2.8 keeps no referrers: the referrers tag schema's index, as a client
    # without the API writes it.
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": sbom["mediaType"],
                "digest": sbom_digest,
                "size": len(sbom_raw),
                "artifactType": SPDX,
            }
        ],
    }
    http(source, f"/v2/{REPO}/manifests/{fallback}", body=json.dumps(index).encode(),
         media=OCI_INDEX)  # fmt: skip
    sync = tmp_path / "sync.toml"
    sync.write_text(
        f'[[sync]]\nsource = "{source.host}/{REPO}"\ntarget = "{target.host}/r/signed"\n'
        'tags = ["1"]\nreferrers = true\n'
    )

    run = run_pypull("sync", sync, "--format", "json")
    assert run.returncode == 0, run.stdout + run.stderr
    docs = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(d["target"], d["status"], d.get("referrer_of")) for d in docs[:-1]] == [
        (f"{target.host}/r/signed:1", "copied", None),
        (f"{target.host}/r/signed@{sbom_digest}", "copied", image.digest),
        (f"{target.host}/r/signed:{fallback}.sig", "copied", image.digest),
    ]
    assert raw(target, f"r/signed@{sbom_digest}", creds=True) == sbom_raw
    assert raw(target, f"r/signed:{fallback}.sig", creds=True) == sig_raw
    listed = json.loads(raw(target, f"r/signed:{fallback}", creds=True))
    assert [(m["digest"], m.get("artifactType")) for m in listed["manifests"]] == [
        (sbom_digest, SPDX)
    ]

    source_log, target_log = AccessLog(source), AccessLog(target)
    again = run_pypull("sync", sync, "--format", "json")
    assert again.returncode == 0, again.stdout + again.stderr
    statuses = [json.loads(line).get("status") for line in again.stdout.splitlines()[:-1]]
    assert statuses == ["up-to-date"] * 3
    target_asked = Counter(m for m, _ in target_log.requests())
    assert set(target_asked) <= {"GET", "HEAD"}, target_asked
    assert [p for m, p in target_log.requests() if m == "GET" and "/manifests/" in p] == []
    source_asked = source_log.requests()
    manifest_gets = [p for m, p in source_asked if m == "GET" and "/manifests/" in p]
    assert manifest_gets == [f"/v2/{REPO}/manifests/{fallback}"]  # the referrers listing
    # A HEAD for each of the three at each side; at the source also its tags and the probe
    # of its Referrers API (404); at the target also one of the index tag the first run made
    # (a run that copied the SBOM but died before the tag would have left none).
    heads = [f"/manifests/{ref}" for ref in ("1", sbom_digest, f"{fallback}.sig")]
    for log, repo, more in (
        (source_asked, REPO, []),
        (target_log.requests(), "r/signed", [f"/manifests/{fallback}"]),
    ):
        wanted = sorted(f"/v2/{repo}{h}" for h in heads + more)
        assert sorted({p for m, p in log if m == "HEAD"}) == wanted
    assert [p for m, p in source_asked if "/referrers/" in p] == [
        f"/v2/{REPO}/referrers/{image.digest}"
    ]
