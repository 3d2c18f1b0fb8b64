"""Prune while others pull: leases keep what a running pull relies on, so every pull completes
and the store verifies, however the two interleave."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.images import Image, make_image, make_layer
from fixtures.registry import Registry, push, running_registry
from puller.oci.digest import digest_of
from puller.store.layout import Store
from puller.store.prune import prune
from tests.support.helpers import run_pypull

pytestmark = pytest.mark.e2e  # the real registry, pulled from while prune runs

#: Rounds of the stress test; PYPULL_STRESS_ROUNDS raises it for a soak run.
ROUNDS = int(os.environ.get("PYPULL_STRESS_ROUNDS", "12"))

PRUNE_LOOP = textwrap.dedent(
    """
    import sys, pathlib
    from puller.store.prune import prune
    store, stop = sys.argv[1], pathlib.Path(sys.argv[2])
    runs = 0
    while not stop.exists():
        prune(store, partials_older_than=0)
        runs += 1
    print(runs)
    """
)


def overlapping() -> list[Image]:
    """Four images of 6 small layers: every pair shares some, none shares all."""
    shared = [
        make_layer("race", i, 2048, whiteout_of=f"tmp/scratch-{i - 1}.txt" if i else None)
        for i in range(6)
    ]
    picks = [(0, 1, 2), (1, 2, 3), (2, 3, 4), (0, 3, 5)]
    return [
        make_image(
            f"race/img{n}",
            "1",
            layers=6,
            layer_size=2048,
            shared_layers=tuple(shared[i] for i in pick),
        )
        for n, pick in enumerate(picks)
    ]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, list[Image]]]:
    images = overlapping()
    with running_registry(tmp_path_factory.mktemp("race-registry")) as reg:
        for image in images:
            push(reg.url, image)
        yield reg, images


def test_pulls_complete_and_the_store_verifies_while_prune_runs_in_a_loop(
    source: tuple[Registry, list[Image]], store: Path, tmp_path: Path
) -> None:
    reg, images = source
    refs = [f"{reg.host}/{image.repository}:{image.tag}" for image in images]
    prunes = 0
    for round_ in range(ROUNDS):
        if round_:  # every blob garbage again: the pulls find some present, fetch the rest
            assert run_pypull("rmi", "--store", store, *refs).returncode == 0
        stop = tmp_path / f"stop-{round_}"
        looping = subprocess.Popen(
            [sys.executable, "-c", PRUNE_LOOP, str(store), str(stop)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            pulls = [
                subprocess.Popen(
                    [sys.executable, "-m", "puller", "--store", str(store), "-q", ref],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for ref in refs
            ]
            for ref, pull in zip(refs, pulls, strict=True):
                out, err = pull.communicate(timeout=120)
                assert pull.returncode == 0, f"round {round_}: {ref}: {err}"
        finally:
            stop.touch()
            out, _ = looping.communicate(timeout=60)
        assert looping.returncode == 0
        prunes += int(out)
        verify = run_pypull("verify", "--store", store)
        assert verify.returncode == 0, f"round {round_}: {verify.stdout}"
    assert prunes >= ROUNDS  # the prunes did run alongside
    assert not list((store / ".pypull" / "leases").iterdir())  # every pull gave its lease up


def test_a_live_lease_keeps_an_unreferenced_blob_and_a_dead_one_does_not(tmp_path: Path) -> None:
    root = tmp_path / "store"
    data = b"a blob no image names"
    digest = digest_of(data)
    writer = Store(root)
    writer.put_bytes(digest, data)  # no lease: garbage at once
    assert [p.digest for p in prune(root).removed] == [digest]

    holder = Store(root)
    with holder.lease():
        holder.put_bytes(digest, data)
        leases = list((root / ".pypull" / "leases").iterdir())
        assert len(leases) == 1 and leases[0].read_text() == f"{digest}\n"
        assert prune(root).removed == ()
        assert holder.has(digest)
    assert not list((root / ".pypull" / "leases").iterdir())
    assert [p.digest for p in prune(root).removed] == [digest]

    # A lease whose process died (nobody holds its lock) protects nothing and is cleared.
    (root / ".pypull" / "leases" / "4242-dead").write_text(f"{digest}\n")
    writer.put_bytes(digest, data)
    assert [p.digest for p in prune(root, dry_run=True).removed] == [digest]
    assert (root / ".pypull" / "leases" / "4242-dead").exists()  # a dry run changes nothing
    assert [p.digest for p in prune(root).removed] == [digest]
    assert not (root / ".pypull" / "leases" / "4242-dead").exists()


def test_a_lease_in_a_store_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "none"
    store = Store(root)
    with store.lease():
        assert not store.has(digest_of(b"x"))
    assert not root.exists()


def test_a_store_that_cannot_take_a_lease_is_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A carried store on read-only media: pushing from it must not fail for want of a lease."""
    root = tmp_path / "store"
    data = b"carried"
    digest = digest_of(data)
    Store(root).put_bytes(digest, data)
    original = Store.open_dir

    def read_only(self: Store, parts: tuple[str, ...], create: bool = False) -> int:
        if create and parts[-1] == "leases":
            raise OSError(errno.EROFS, "Read-only file system")
        return original(self, parts, create)

    monkeypatch.setattr(Store, "open_dir", read_only)
    store = Store(root)
    with store.lease():
        assert store.has(digest)
        assert store.read_blob(digest) == data
    assert not (root / ".pypull" / "leases").exists()


def test_a_manifest_read_under_a_lease_keeps_what_it_lists(tmp_path: Path) -> None:
    """unpack, save and push read an image's manifest, then its blobs one by one: an rmi and
    a prune in between must not take the blobs they have not reached yet."""
    root = tmp_path / "store"
    writer = Store(root)
    layer, config = b"layer bytes", b"{}"
    for data in (layer, config):
        writer.put_bytes(digest_of(data), data)
    manifest = (
        '{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",'
        f' "config": {{"mediaType": "application/vnd.oci.image.config.v1+json",'
        f' "digest": "{digest_of(config)}", "size": 2}},'
        f' "layers": [{{"mediaType": "application/vnd.oci.image.layer.v1.tar",'
        f' "digest": "{digest_of(layer)}", "size": 11}}]}}'
    ).encode()
    writer.put_bytes(digest_of(manifest), manifest)  # no index.json entry: all garbage

    reader = Store(root)
    with reader.lease():
        assert reader.read_manifest(digest_of(manifest)) == manifest
        assert prune(root).removed == ()  # the layer and config were not touched yet
        assert reader.read_blob(digest_of(layer)) == layer
    gone = {p.digest for p in prune(root).removed}
    assert gone == {digest_of(manifest), digest_of(layer), digest_of(config)}
