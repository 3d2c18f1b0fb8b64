"""Per-registry request limits (config.toml's ``max_requests_per_second`` and
``max_concurrent_requests``, regsync's ``reqPerSec`` and ``reqConcurrent``): one ``Limiter`` per
client, so every command and every image of a run share them.

A request to a limited host takes a slot (a semaphore of ``concurrent`` slots) and then its turn
(``1 / per_second`` seconds after the previous request's turn), and holds the slot until its
answer is released: a blob's download or upload holds it for the whole stream, which is what
"concurrent" means to the registry. What one request leads to rides on its slot: the redirects
the HTTP client follows (a CDN), and a request made while the same task already holds a slot at
that host (a copy within one registry reads the source blob while its upload's PUT is open),
which would otherwise wait for itself with one slot. A task that holds slots at several hosts
takes them in the order of the hosts' names, as locks are taken in one order: a request to a
host that sorts before one whose slot its task holds rides on that slot rather than wait (a PUT
to the target that reads the source, and a chunked upload that reads the source before each
PATCH to the target, would otherwise wait for each other). A token request counts against the
limits of the registry it is made for, wherever its token server is (``RegistryClient``): it
rides on the slot of the request whose 401 asked for it, so the one task fetching a token, which
the others wait for, never waits for a slot.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .endpoint import RegistryConfig

#: The slowest pace taken: one request a minute. A pull is a handful of requests (token,
#: manifest, config, each layer), so even this makes one image take minutes; a slower rate is a
#: mistake (a unit mixed up, ``1e-300``) that would leave a command waiting forever, not a pace.
MIN_PER_SECOND = 1 / 60
#: How a rate out of range is refused (config.toml's error says the same).
PER_SECOND_RANGE = "a finite number of at least 1/60 (one request a minute)"


def rate_in_range(rate: float) -> bool:
    """Whether ``rate`` is a pace: positive is not enough (1e-300 waits forever, inf is none)."""
    return rate >= MIN_PER_SECOND and math.isfinite(rate)


#: The hosts whose slot the running task (and the tasks it started) holds.
_HELD: ContextVar[frozenset[str]] = ContextVar("pypull_limit_slots", default=frozenset())


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """How hard pypull may ask one registry: None is no limit."""

    per_second: float | None = None
    concurrent: int | None = None

    def __post_init__(self) -> None:
        rate = self.per_second
        if rate is not None and not rate_in_range(rate):
            raise ValueError(f"max_requests_per_second must be {PER_SECOND_RANGE}, not {rate}")
        if self.concurrent is not None and self.concurrent < 1:
            raise ValueError(f"max_concurrent_requests must be at least 1, not {self.concurrent}")

    @property
    def any(self) -> bool:
        return self.per_second is not None or self.concurrent is not None


class Limiter:
    """The limits of each host (``host[:port]``, as ``Endpoint.host``); a host without any is
    asked freely. ``clock`` and ``sleep`` are for tests."""

    def __init__(
        self,
        limits: Mapping[str, RequestLimits] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._limits = {host: lim for host, lim in (limits or {}).items() if lim.any}
        self._clock = clock
        self._sleep = sleep
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._next: dict[str, float] = {}  # host -> the earliest time of its next turn

    def limits(self, host: str) -> RequestLimits | None:
        return self._limits.get(host)

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        """A request to ``host`` may be sent inside this (and its answer read)."""
        limits = self._limits.get(host)
        if limits is None:
            yield
            return
        held = _HELD.get()
        if limits.concurrent is None or (held and host <= max(held)):
            await self._turn(host, limits)
            yield
            return
        slots = self._slots.get(host)
        if slots is None:
            slots = self._slots[host] = asyncio.Semaphore(limits.concurrent)
        async with slots:
            token = _HELD.set(held | {host})
            try:
                await self._turn(host, limits)
                yield
            finally:
                _HELD.reset(token)

    async def _turn(self, host: str, limits: RequestLimits) -> None:
        """Wait for this request's turn: turns are ``1 / per_second`` apart, in the order asked
        (reserved before waiting, so waiters do not race)."""
        if limits.per_second is None:
            return
        now = self._clock()
        turn = max(now, self._next.get(host, now))
        self._next[host] = turn + 1.0 / limits.per_second
        if turn > now:
            await self._sleep(turn - now)


def limits_by_host(registries: Iterable[RegistryConfig]) -> dict[str, RequestLimits]:
    """The limits of each configured registry, by the host of its own server (where its API
    lives: ``registry-1.docker.io`` for ``docker.io``). A mirror is another server: it has the
    limits of a ``[registry."HOST"]`` table of its own host, if there is one."""
    limits: dict[str, RequestLimits] = {}
    for reg in registries:
        own = RequestLimits(reg.max_requests_per_second, reg.max_concurrent_requests)
        if own.any:
            limits[reg.own_server().host] = own
    return limits
