"""A re-pull of an image the store holds incompletely (a blob removed by ``verify --repair`` or by
hand) fetches what is missing and says so, instead of ``Image is up to date``; one the store holds
whole stays cheap: a HEAD, no GET."""

from __future__ import annotations

from pathlib import Path

import pytest

import puller
from fixtures.images import Image, make_image
from puller.oci.digest import parse_digest
from puller.store.layout import Store
from tests.support.fakeregistry import start_fake


def image(name: str) -> Image:
    return make_image(f"test/{name}", "1", layers=3)


async def test_a_whole_image_is_up_to_date_with_a_head_and_no_get(store: Path) -> None:
    img = image("whole")
    async with start_fake([img]) as fake:
        await puller.pull(fake.ref(img), store=store)
        before = len(fake.log)
        again = await puller.pull(fake.ref(img), store=store)
        seen = list(fake.log)[before:]
    assert again.up_to_date
    assert [r.method for r in seen if r.kind in ("manifest", "blob")] == ["HEAD"]


@pytest.mark.parametrize("which", ["layer", "config"])
async def test_a_missing_blob_is_fetched_again_and_the_image_is_not_up_to_date(
    store: Path, which: str
) -> None:
    img = image(f"missing-{which}")
    m = img.manifests[0]
    blob = m.layers[1] if which == "layer" else m.config
    async with start_fake([img]) as fake:
        await puller.pull(fake.ref(img), store=store)
        Store(store).blob_path(parse_digest(blob.digest)).unlink()
        again = await puller.pull(fake.ref(img), store=store)
        fetched = [r.target for r in fake.log.blob_gets()]
    assert not again.up_to_date
    assert [str(d) for d in again.downloaded] == [blob.digest]
    assert fetched.count(blob.digest) == 2
    assert Store(store).blob_path(parse_digest(blob.digest)).read_bytes() == blob.data


async def test_a_missing_manifest_is_fetched_again_and_the_image_is_not_up_to_date(
    store: Path,
) -> None:
    img = image("missing-manifest")
    async with start_fake([img]) as fake:
        await puller.pull(fake.ref(img), store=store)
        path = Store(store).blob_path(parse_digest(img.digest))
        path.unlink()
        again = await puller.pull(fake.ref(img), store=store)
    assert not again.up_to_date
    assert path.read_bytes() == img.manifests[0].raw
