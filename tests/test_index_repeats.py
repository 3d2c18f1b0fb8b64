"""An index that lists the same child manifest many times (a registry that served 15,000 repeats
made pypull GET the child 15,000 times): each child is fetched once, by a copy and by a pull of
every platform, while the index written at the target keeps the source's bytes, repeats and all."""

from __future__ import annotations

import json
from pathlib import Path

from fixtures.images import OCI_INDEX, Image, make_image
from puller.copying import Copier
from puller.oci.manifest import parse_platform
from puller.oci.reference import parse
from puller.pulling import Puller
from tests.support.fakeregistry import start_fake

REPEATS = 1_000


def repeated(times: int = REPEATS) -> Image:
    """``library/rep:1``: an OCI index naming one linux/amd64 manifest ``times`` times, and one
    linux/arm64 manifest once."""
    amd = make_image("library/rep", "1", layers=1, layer_size=512, seed="amd").manifests[0]
    arm = make_image(
        "library/rep", "1", layers=1, layer_size=512, seed="arm", platform=("linux", "arm64", None)
    ).manifests[0]
    entries = [amd.descriptor(platform=amd.platform)] * times
    entries.append(arm.descriptor(platform=arm.platform))
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    return Image("library/rep", "1", OCI_INDEX, raw, (amd, arm))


async def test_a_copy_fetches_and_puts_a_child_listed_many_times_once(tmp_path: Path) -> None:
    image = repeated()
    amd, arm = image.manifests
    async with start_fake([image]) as source, start_fake() as target:
        async with Puller(tmp_path / "store") as puller:
            result = await Copier(puller).copy(
                parse(source.ref(image)), parse(f"{target.host}/m/rep:1")
            )
        assert result.status == "copied", result.error
        gets = [r.target for r in source.log.manifest_gets()]
        assert sorted(gets) == sorted(["1", amd.digest, arm.digest])
        puts = [r.path for r in target.log if r.method == "PUT" and "/manifests/" in r.path]
        assert sorted(puts) == sorted(
            f"/v2/m/rep/manifests/{ref}" for ref in ("1", amd.digest, arm.digest)
        )
        assert target.log.select("blob", method="GET") == []
        tagged = target.log.select("manifest", method="PUT", path="/manifests/1$")
        assert len(tagged) == 1
    assert target.manifest("m/rep", "1") == image.raw  # repeats and all


async def test_a_platform_filtered_copy_of_repeats_fetches_the_child_once(tmp_path: Path) -> None:
    image = repeated()
    amd, arm = image.manifests
    platforms = (parse_platform("linux/amd64"), parse_platform("linux/arm64"))
    async with start_fake([image]) as source, start_fake() as target:
        async with Puller(tmp_path / "store") as puller:
            result = await Copier(puller).copy(
                parse(source.ref(image)), parse(f"{target.host}/m/rep:1"), platforms=platforms
            )
        assert result.status == "copied", result.error
        assert sorted(r.target or "" for r in source.log.manifest_gets()) == sorted(
            ["1", amd.digest, arm.digest]
        )
        written = json.loads(target.manifest("m/rep", "1") or b"")
    assert [m["digest"] for m in written["manifests"]] == [amd.digest] * REPEATS + [arm.digest]


async def test_a_pull_of_every_platform_fetches_a_child_listed_many_times_once(
    tmp_path: Path,
) -> None:
    image = repeated()
    amd, arm = image.manifests
    async with start_fake([image]) as source, Puller(tmp_path / "store") as puller:
        result = await puller.pull_all_platforms(source.ref(image))
        gets = [r.target for r in source.log.manifest_gets()]
        blob_gets = [r.target for r in source.log.blob_gets()]
    assert sorted(gets) == sorted(["1", amd.digest, arm.digest])
    assert sorted(blob_gets) == sorted({b.digest for b in image.blobs})
    assert len(result.images) == REPEATS + 1
