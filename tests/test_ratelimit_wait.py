"""``ratelimit = "wait"`` (``--ratelimit wait``, or a sync entry's own): an image that meets a
source whose pull quota is below ``rate_limit_reserve`` waits for the quota's window to reset, as
the registry says it will (``RateLimit-Reset``, a 429's ``Retry-After``, Docker Hub's ``;w=``
window), for at most ``--max-wait`` seconds, and is then copied; a reset further off defers it as
before, saying how long the wait would have been. Images that meet the low quota at once share
one wait, announced once (a line on stderr, or a ``ratelimit-wait`` JSON line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.images import Image, make_image
from puller.copying import Copier, CopyResult
from puller.http.message import Headers
from puller.oci.reference import parse
from puller.pulling import Puller
from puller.ratewait import QuotaWait, duration
from puller.registry.quota import reset_in
from tests.support.fakeregistry import FakeRegistry, run_pypull, start_fake


def images(n: int) -> list[Image]:
    return [make_image(f"library/img{i}", "1", layers=1, layer_size=1024) for i in range(n)]


class Sleeps:
    """``sleep`` that does not: records how long it was asked to, and the quota comes back."""

    def __init__(self, fake: FakeRegistry) -> None:
        self.fake = fake
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.fake.ratelimit_remaining = 100


async def copy_each(
    tmp_path: Path,
    source: FakeRegistry,
    target: FakeRegistry,
    some: list[Image],
    *,
    jobs: int = 1,
    own: dict[str, str] | None = None,
    **options: object,
) -> tuple[list[CopyResult], list[QuotaWait], Sleeps]:
    sleeps = Sleeps(source)
    waits: list[QuotaWait] = []
    async with Puller(tmp_path / "store") as p:
        copier = Copier(p, jobs=jobs, on_wait=waits.append, sleep=sleeps, **options)  # type: ignore[arg-type]
        pairs = [
            (parse(source.ref(i)), parse(f"{target.host}/m/{i.reference}"), dict(own or {}))
            for i in some
        ]
        results = await copier.copy_all(pairs)
    return results, waits, sleeps


@pytest.mark.parametrize(
    ("headers", "status", "seconds"),
    [
        ({"RateLimit-Reset": "42", "ratelimit-limit": "100;w=21600"}, 200, 42.0),
        ({"Retry-After": "17", "ratelimit-limit": "100;w=21600"}, 429, 17.0),
        ({"Retry-After": "17", "ratelimit-limit": "100;w=21600"}, 200, 21600.0),
        ({"ratelimit-remaining": "5;w=3600"}, 200, 3600.0),
        ({"ratelimit-remaining": "5"}, 200, None),
        ({"RateLimit-Reset": "soon"}, 200, None),
    ],
)
def test_when_the_quota_resets_is_read_from_the_registry_s_headers(
    headers: dict[str, str], status: int, seconds: float | None
) -> None:
    answer = Headers()
    for name, value in headers.items():
        answer.add(name, value)
    assert reset_in(answer, status) == seconds


@pytest.mark.parametrize(
    ("seconds", "said"), [(0.4, "0s"), (45, "45s"), (300, "5m"), (330, "5m30s"), (21600, "6h0m")]
)
def test_durations_are_said_briefly(seconds: float, said: str) -> None:
    assert duration(seconds) == said


async def test_an_image_below_the_reserve_waits_for_the_reset_and_is_copied(
    tmp_path: Path,
) -> None:
    some = images(3)
    async with (
        start_fake(some, ratelimit_remaining=11, ratelimit_reset=40) as source,
        start_fake() as target,
    ):
        results, waits, sleeps = await copy_each(tmp_path, source, target, some, ratelimit="wait")
        # 11 -> 10 -> 9: the third meets 9 < 10, waits the 40 s the registry said, goes on.
        assert [r.status for r in results] == ["copied"] * 3, [r.error for r in results]
        assert len(sleeps.asked) == 1 and 39 < sleeps.asked[0] <= 40
        assert [(w.host, w.remaining, w.reserve) for w in waits] == [(source.host, 9, 10)]
        assert source.ratelimit_remaining == 99  # the quota that came back paid for the third


async def test_a_reset_beyond_max_wait_defers_saying_how_long_it_would_have_been(
    tmp_path: Path,
) -> None:
    some = images(2)
    async with (
        start_fake(some, ratelimit_remaining=10, ratelimit_reset=600) as source,
        start_fake() as target,
    ):
        results, waits, sleeps = await copy_each(
            tmp_path, source, target, some, ratelimit="wait", max_wait=300
        )
    assert [r.status for r in results] == ["copied", "deferred"]
    assert results[1].code == "rate-limited"
    assert results[1].error == (
        "9 pulls left at the source (rate_limit_reserve 10); its window resets in 10m, over "
        "--max-wait 5m"
    )
    assert sleeps.asked == [] and waits == []


async def test_docker_hub_s_six_hour_window_is_over_the_default_max_wait(tmp_path: Path) -> None:
    some = images(2)
    async with start_fake(some, ratelimit_remaining=10) as source, start_fake() as target:
        results, _, sleeps = await copy_each(tmp_path, source, target, some, ratelimit="wait")
    assert [r.status for r in results] == ["copied", "deferred"]
    assert (results[1].error or "").endswith("its window resets in 6h0m, over --max-wait 5m")
    assert sleeps.asked == []


async def test_without_wait_an_image_below_the_reserve_is_deferred_as_before(
    tmp_path: Path,
) -> None:
    some = images(2)
    async with (
        start_fake(some, ratelimit_remaining=10, ratelimit_reset=1) as source,
        start_fake() as target,
    ):
        results, _, sleeps = await copy_each(tmp_path, source, target, some)
    assert [r.status for r in results] == ["copied", "deferred"]
    assert results[1].error == "9 pulls left at the source (rate_limit_reserve 10)"
    assert sleeps.asked == []


async def test_a_429_for_a_spent_quota_is_waited_out_and_the_copy_tried_again(
    tmp_path: Path,
) -> None:
    """Someone else spent the quota: the first manifest GET is refused (429, nothing left),
    saying when it comes back; the copy waits for that, then asks again."""
    some = images(1)
    async with (
        start_fake(some, ratelimit_remaining=0, ratelimit_reset=20) as source,
        start_fake() as target,
    ):
        results, waits, sleeps = await copy_each(tmp_path, source, target, some, ratelimit="wait")
        assert [r.status for r in results] == ["copied"], [r.error for r in results]
        assert len(sleeps.asked) == 1 and 19 < sleeps.asked[0] <= 20
        assert [(w.remaining, w.reserve) for w in waits] == [(0, 10)]
        assert [r.status for r in source.log.manifest_gets()] == [429, 200]


async def test_without_wait_a_429_for_a_spent_quota_fails_the_image(tmp_path: Path) -> None:
    some = images(1)
    async with (
        start_fake(some, ratelimit_remaining=0, ratelimit_reset=20) as source,
        start_fake() as target,
    ):
        results, _, sleeps = await copy_each(tmp_path, source, target, some)
    assert [(r.status, r.code) for r in results] == [("failed", "rate-limited")]
    assert sleeps.asked == []


async def test_a_pair_s_own_ratelimit_wait_overrides_the_copier_s_defer(tmp_path: Path) -> None:
    some = images(2)
    async with (
        start_fake(some, ratelimit_remaining=10, ratelimit_reset=5) as source,
        start_fake() as target,
    ):
        results, waits, _ = await copy_each(
            tmp_path, source, target, some, own={"ratelimit": "wait"}
        )
    assert [r.status for r in results] == ["copied", "copied"]
    assert len(waits) == 1


async def test_images_that_meet_the_low_quota_at_once_share_one_wait(tmp_path: Path) -> None:
    some = images(6)
    async with (
        start_fake(some[:1], ratelimit_remaining=10, ratelimit_reset=30) as source,
        start_fake() as target,
    ):
        for image in some[1:]:
            source.add_image(image)
        # One copy first: the quota is then known to be 9, below the reserve.
        first, _, _ = await copy_each(tmp_path, source, target, some[:1])
        assert first[0].status == "copied"
        sleeps = Sleeps(source)
        waits: list[QuotaWait] = []
        async with Puller(tmp_path / "store") as p:
            copier = Copier(p, jobs=4, ratelimit="wait", on_wait=waits.append, sleep=sleeps)
            await copier.registry_source.head(parse(source.ref(some[0])))  # learns "9 left"
            pairs = [(parse(source.ref(i)), parse(f"{target.host}/m/{i.reference}")) for i in some]
            results = await copier.copy_all(pairs)
    assert [r.status for r in results] == ["up-to-date"] + ["copied"] * 5
    assert len(sleeps.asked) == 1 and len(waits) == 1


def test_the_command_line_offers_the_modes_and_default_the_library_has() -> None:
    from puller.cli.main import build_parser
    from puller.ratewait import DEFAULT_MAX_WAIT, RATELIMIT_MODES

    for command in ("copy", "sync"):
        args = build_parser().parse_args([command, "a", "b", "--ratelimit", "wait"])
        assert args.max_wait == DEFAULT_MAX_WAIT and args.ratelimit in RATELIMIT_MODES


def test_an_unknown_ratelimit_is_refused() -> None:
    from puller.ratewait import checked_mode

    with pytest.raises(ValueError, match="ratelimit must be one of defer, wait, not 'later'"):
        checked_mode("later")


# -- the command line (a real one-second wait) -----------------------------------------------------


async def test_sync_ratelimit_wait_prints_a_json_line_for_the_wait_and_copies(
    tmp_path: Path,
) -> None:
    some = images(2)
    async with (
        start_fake(some, ratelimit_remaining=10, ratelimit_reset=1) as source,
        start_fake() as target,
    ):
        refs = [source.ref(i) for i in some]
        run = await run_pypull(
            "sync", "-j", "1", "--json", "--ratelimit", "wait", "--to", f"{target.host}/m", *refs
        )
        assert run.returncode == 0, run.stdout + run.stderr
        docs = [json.loads(line) for line in run.lines]
    waits = [d for d in docs if d["event"] == "ratelimit-wait"]
    assert waits == [
        {
            "event": "ratelimit-wait",
            "v": 1,
            "registry": source.host,
            "remaining": 9,
            "reserve": 10,
            "seconds": waits[0]["seconds"],
        }
    ]
    assert 0 < waits[0]["seconds"] <= 1
    assert [d["status"] for d in docs if d["event"] == "image"] == ["copied", "copied"]


async def test_a_sync_file_entry_that_says_wait_waits_with_a_line_on_stderr(
    tmp_path: Path,
) -> None:
    some = images(2)
    async with (
        start_fake(some, ratelimit_remaining=10, ratelimit_reset=1) as source,
        start_fake() as target,
    ):
        entries = "".join(
            f'[[sync]]\nsource = "{source.ref(i)}"\ntarget = "{target.host}/m/{i.reference}"\n'
            'ratelimit = "wait"\n'
            for i in some
        )
        path = tmp_path / "sync.toml"
        path.write_text(entries)
        run = await run_pypull("sync", "-j", "1", path)
        assert run.returncode == 0, run.stdout + run.stderr
    assert (
        f"Waiting 1s for {source.host}'s pull quota to reset (9 left, rate_limit_reserve 10)"
        in run.stderr.splitlines()
    )
    assert run.stdout.splitlines()[-1] == "2 images: 2 copied; " + (
        f"{source.host} ratelimit-remaining 8"
    )


async def test_max_wait_bounds_the_wait_on_the_command_line(tmp_path: Path) -> None:
    some = images(2)
    async with (
        start_fake(some, ratelimit_remaining=10, ratelimit_reset=30) as source,
        start_fake() as target,
    ):
        refs = [source.ref(i) for i in some]
        run = await run_pypull(
            "sync", "-j", "1", "--ratelimit", "wait", "--max-wait", "10", "--to", target.host, *refs
        )
    assert run.returncode == 3, run.stdout + run.stderr
    assert run.stdout.splitlines()[1].endswith(
        ": deferred: 9 pulls left at the source (rate_limit_reserve 10); its window resets in "
        "30s, over --max-wait 10s"
    )
    assert "Waiting" not in run.stderr


async def test_an_entry_s_wait_holds_for_its_images_referrers_too(tmp_path: Path) -> None:
    from fixtures.images import make_artifact

    app = make_image("library/app", "1", layers=1, layer_size=1024, seed="signed")
    sig = make_artifact(
        "library/app", "sig", app.manifests[0].descriptor(), "application/x-sig", b"signature"
    )
    async with (
        start_fake([app], referrers_api=True, ratelimit_remaining=10, ratelimit_reset=40) as src,
        start_fake() as target,
    ):
        src.add_manifest("library/app", sig, tagged=False)
        own = {"ratelimit": "wait", "referrers": True}  # a sync entry's own (the run's: defer)
        results, waits, sleeps = await copy_each(tmp_path, src, target, [app], own=own)  # type: ignore[arg-type]
        # The image's GET leaves 9 < 10: its signature waits as the image would have.
        assert [(r.status, r.referrer_of) for r in results] == [
            ("copied", None),
            ("copied", app.digest),
        ], [r.error for r in results]
        assert len(sleeps.asked) == 1 and len(waits) == 1
