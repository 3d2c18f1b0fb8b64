"""A source whose referrers fan out (each referrer with referrers of its own, down to the depth
bound) cannot make one image's copy copy without end: the referrers walked below one image are
bounded in all, and past the bound each subject fails, saying so."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.images import Image, make_artifact, make_image
from puller import referring
from puller.copying import Copier
from puller.oci.reference import parse
from puller.pulling import Puller
from tests.support.fakeregistry import start_fake

SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"


def fanned(app: Image, wide: int, deep: int) -> list[Image]:
    """``wide`` signatures of ``app``, ``wide`` of each of those, and so on ``deep`` levels."""
    level, every = [app], []
    for depth in range(deep):
        below = []
        for n, subject in enumerate(level):
            for i in range(wide):
                payload = f"{depth}/{n}/{i}".encode()
                below.append(
                    make_artifact(
                        "library/app",
                        f"s{depth}-{n}-{i}",
                        subject.manifests[0].descriptor(),
                        SIG,
                        payload,
                    )
                )
        every += below
        level = below
    return every


async def test_the_referrers_below_one_image_are_bounded_in_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(referring, "MAX_IMAGE_REFERRERS", 5)
    app = make_image("library/app", "1", layers=1, layer_size=256, seed="fan")
    async with start_fake([app], referrers_api=True) as src, start_fake() as dst:
        for artifact in fanned(app, 3, 2):  # 3 + 9 referrers
            src.add_manifest("library/app", artifact, tagged=False)
        async with Puller(tmp_path / "store") as puller:
            results = await Copier(puller).copy_all(
                [(parse(src.ref(app)), parse(f"{dst.host}/m/app:1"))], referrers=True
            )
    copied = [r for r in results if r.referrer_of is not None and r.status == "copied"]
    failed = [r for r in results if r.status == "failed"]
    assert len(copied) <= 5
    assert failed and all("over 5 referrers below" in (r.error or "") for r in failed)
    assert results[0].status == "copied"  # the image itself
