"""Per-registry request limits (config.toml's ``max_requests_per_second`` and
``max_concurrent_requests`` in a ``[registry."NAME"]`` table): read and checked with the file's
one-line errors, shown by ``pypull config``, and honoured by every request to that registry's
server: turns ``1 / rate`` apart, at most K requests in flight (a blob's whole stream counting as
one), a request made while its task holds a slot riding on it rather than waiting for itself."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from fixtures.images import make_image
from puller.config import load, render
from puller.copying import Copier
from puller.errors import ConfigError
from puller.oci.reference import parse
from puller.pulling import Puller
from puller.registry.endpoint import RegistryConfig
from puller.registry.limits import Limiter, RequestLimits, limits_by_host
from tests.support.fakeregistry import FakeRegistry, Trickle, start_fake


class Clock:
    """A clock that moves only when slept on: turns are checked without waiting for them."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# -- the configuration ----------------------------------------------------------------------------


def test_the_limits_of_a_registry_are_read_and_shown_with_their_line(tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        """
        [registry."ghcr.io"]
        max_requests_per_second = 2.5
        max_concurrent_requests = 3
        """,
    )
    config = load({}, {}, path)
    reg = config.registry("ghcr.io")
    assert (reg.max_requests_per_second, reg.max_concurrent_requests) == (2.5, 3)
    shown = render(config)
    assert "max_requests_per_second = 2.5" in shown and f"{path}:2" in shown
    assert "max_concurrent_requests = 3" in shown and f"{path}:3" in shown
    assert limits_by_host(config.registries.values()) == {"ghcr.io": RequestLimits(2.5, 3)}


def test_docker_hub_s_limits_apply_to_its_api_server_and_a_mirror_has_its_own() -> None:
    hub = RegistryConfig("docker.io", max_concurrent_requests=2)
    mirror = RegistryConfig("10.0.0.5:5000", max_requests_per_second=1)
    assert limits_by_host([hub, mirror, RegistryConfig("quay.io")]) == {
        "registry-1.docker.io": RequestLimits(None, 2),
        "10.0.0.5:5000": RequestLimits(1, None),
    }


#: What a rate out of range is told: one request a minute is the slowest pace taken.
_RATE_RANGE = "expected a finite number of at least 1/60 (one request a minute)"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("max_requests_per_second = 0", "expected a positive number, got 0"),
        ("max_requests_per_second = -1.5", "expected a positive number, got -1.5"),
        ('max_requests_per_second = "5"', "expected a positive number, got '5'"),
        ("max_requests_per_second = nan", "expected a positive number, got nan"),
        ("max_requests_per_second = 1e-300", f"{_RATE_RANGE}, got 1e-300"),
        ("max_requests_per_second = 0.0000001", f"{_RATE_RANGE}, got 1e-07"),
        ("max_requests_per_second = 0.0166", f"{_RATE_RANGE}, got 0.0166"),
        ("max_requests_per_second = inf", f"{_RATE_RANGE}, got inf"),
        ("max_requests_per_second = -inf", "expected a positive number, got -inf"),
        ("max_concurrent_requests = 0", "expected a positive int, got 0"),
        ("max_concurrent_requests = 1.5", "expected a positive int, got 1.5"),
        ("max_concurrent_requests = true", "expected a positive int, got True"),
    ],
)
def test_a_limit_that_is_no_limit_is_an_error_naming_the_file_line_and_key(
    tmp_path: Path, text: str, says: str
) -> None:
    path = config_file(tmp_path, f'[registry."ghcr.io"]\nserver = "ghcr.io"\n{text}\n')
    with pytest.raises(ConfigError) as info:
        load({}, {}, path)
    key = text.split(" ", 1)[0]
    assert str(info.value) == f"{path}:3: registry.ghcr.io.{key}: {says}"


@pytest.mark.parametrize("rate", ["0.0167", "1", "1e300"])
def test_a_rate_from_one_request_a_minute_up_is_taken(tmp_path: Path, rate: str) -> None:
    path = config_file(tmp_path, f'[registry."ghcr.io"]\nmax_requests_per_second = {rate}\n')
    assert load({}, {}, path).registry("ghcr.io").max_requests_per_second == float(rate)


def test_limits_that_are_no_limits_are_refused_by_the_library_too() -> None:
    for rate in (0, 1e-300, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="max_requests_per_second must be a finite number"):
            RequestLimits(per_second=rate)
    with pytest.raises(ValueError, match="max_concurrent_requests must be at least 1"):
        RequestLimits(concurrent=0)


# -- the limiter ----------------------------------------------------------------------------------


async def test_turns_at_one_host_are_one_over_the_rate_apart_in_the_order_asked() -> None:
    clock = Clock()
    limiter = Limiter({"r": RequestLimits(per_second=4)}, clock=clock, sleep=clock.sleep)
    order: list[int] = []

    async def one(i: int) -> None:
        async with limiter.slot("r"):
            order.append(i)

    await asyncio.gather(*(one(i) for i in range(5)))
    assert order == [0, 1, 2, 3, 4]
    assert clock.slept == [0.25, 0.5, 0.75, 1.0]  # the first goes at once
    async with limiter.slot("elsewhere"):  # a host without limits: no wait
        pass
    assert len(clock.slept) == 4


async def test_at_most_k_requests_hold_a_slot_at_once() -> None:
    limiter = Limiter({"r": RequestLimits(concurrent=2)})
    busy = most = 0
    release = asyncio.Event()

    async def one() -> None:
        nonlocal busy, most
        async with limiter.slot("r"):
            busy += 1
            most = max(most, busy)
            await release.wait()
            busy -= 1

    tasks = [asyncio.ensure_future(one()) for _ in range(6)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert busy == 2  # the rest wait for a slot
    release.set()
    await asyncio.gather(*tasks)
    assert most == 2


async def test_a_request_made_while_holding_a_slot_rides_on_it() -> None:
    """One slot: a PUT whose body reads the source blob from the same registry, and a task that
    holds slots at two hosts, take them in one order (no task waits for itself or a cycle)."""
    limiter = Limiter({"a": RequestLimits(concurrent=1), "b": RequestLimits(concurrent=1)})

    async def nested(outer: str, inner: str) -> None:
        async with limiter.slot(outer):
            await asyncio.sleep(0)
            async with limiter.slot(inner):
                await asyncio.sleep(0)

    await asyncio.wait_for(
        asyncio.gather(nested("a", "a"), nested("a", "b"), nested("b", "a"), nested("b", "b")), 5
    )


# -- every request to the registry ---------------------------------------------------------------


def _limited(fake: FakeRegistry, **limits: float) -> dict[str, RegistryConfig]:
    return {fake.host: RegistryConfig(fake.host, **limits)}  # type: ignore[arg-type]


async def test_a_pull_keeps_at_most_k_requests_in_flight_each_blob_stream_holding_one(
    tmp_path: Path,
) -> None:
    image = make_image("library/many", "1", layers=6, layer_size=64 << 10)
    async with start_fake([image]) as fake:
        fake.inject("/blobs/", Trickle(16 << 10, 0.02))
        async with Puller(tmp_path / "free") as p:
            await p.pull(fake.ref(image))
        unlimited = fake.log.most_at_once()
        fake.log.clear()
        registries = _limited(fake, max_concurrent_requests=2)
        async with Puller(tmp_path / "limited", registries=registries) as p:
            await p.pull(fake.ref(image))
        assert len(fake.log.blob_gets()) == 7
        assert fake.log.most_at_once() <= 2
    assert unlimited >= 3  # pulls do fetch several blobs at once: the limit is what held them


async def test_a_copy_s_requests_to_a_limited_target_are_paced_and_bounded(tmp_path: Path) -> None:
    image = make_image("library/paced", "1", layers=4, layer_size=4096)
    async with start_fake([image]) as source, start_fake() as target:
        registries = _limited(target, max_requests_per_second=50, max_concurrent_requests=1)
        async with Puller(tmp_path / "store", registries=registries) as p:
            result = await Copier(p, jobs=4).copy(
                parse(source.ref(image)), parse(f"{target.host}/m/paced:1")
            )
        assert result.status == "copied", result.error
        assert target.log.most_at_once() == 1
        arrivals = [r.arrived for r in target.log]
        # Sent 1/50 s apart: N requests span (N - 1) / 50 s at least. The fake shares the
        # test's loop, so one arrival may be seen late and the next early: only half is asked.
        assert len(arrivals) > 10
        assert arrivals[-1] - arrivals[0] >= (len(arrivals) - 1) / 50 / 2


@pytest.mark.parametrize("auth", [None, "bearer"])
async def test_a_copy_within_one_registry_limited_to_one_request_does_not_wait_for_itself(
    tmp_path: Path, auth: str | None
) -> None:
    """Mounts refused: each blob is read from the registry while its upload's PUT is open (with
    Bearer auth, a token fetch for the source's scope may start inside that PUT's slot, while
    other copies wait for the token with or without one: none waits for a slot it cannot get)."""
    image = make_image("library/self", "1", layers=3, layer_size=4096)
    async with start_fake([image], mounts=False, auth=auth) as fake:
        registries = _limited(fake, max_concurrent_requests=1)
        async with Puller(tmp_path / "store", registries=registries) as p:
            copier = Copier(p, jobs=4)
            result = await asyncio.wait_for(
                copier.copy(parse(fake.ref(image)), parse(f"{fake.host}/other/self:1")), 30
            )
        assert result.status == "copied", result.error
        assert result.uploaded == 4


# -- token requests -------------------------------------------------------------------------------


async def test_token_requests_count_against_the_registry_s_concurrent_requests(
    tmp_path: Path,
) -> None:
    """Two pulls at once from a registry that asks for Bearer tokens (its /token on the same
    server, as a registry whose auth server is what rate-limits): with one slot, no token
    request is in flight beside another request."""
    images = [make_image(f"library/tok{i}", "1", layers=3, layer_size=16 << 10) for i in range(2)]
    async with start_fake(images, auth="bearer") as fake:
        fake.inject("/blobs/", Trickle(4 << 10, 0.01))
        fake.inject("^/token$", Trickle(16, 0.01))  # a slow token server: overlaps would show
        registries = _limited(fake, max_concurrent_requests=1)
        async with Puller(tmp_path / "store", registries=registries) as p:
            await asyncio.wait_for(asyncio.gather(*(p.pull(fake.ref(i)) for i in images)), 60)
        assert len(fake.log.token_requests(status=200)) == 2  # one per repository
        assert fake.log.most_at_once() == 1


async def test_token_requests_take_their_turns_at_the_registry_s_rate(tmp_path: Path) -> None:
    """Every request the server saw, token requests included, took a turn ``1 / rate`` after
    the one before (a clock that moves only when slept on counts the turns)."""
    image = make_image("library/turns", "1", layers=2, layer_size=4096)
    async with start_fake([image], auth="bearer") as fake:
        async with Puller(tmp_path / "store") as p:
            clock = Clock()
            limits = {fake.host: RequestLimits(per_second=4)}
            p.client.limiter = Limiter(limits, clock=clock, sleep=clock.sleep)
            await p.pull(fake.ref(image))
        assert fake.log.token_requests(status=200)
        assert len(clock.slept) == len(fake.log) - 1  # the first goes at once
        assert clock.slept == [n / 4 for n in range(1, len(fake.log))]
