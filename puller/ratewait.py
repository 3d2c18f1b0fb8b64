"""``ratelimit = "wait"``: a copy that meets a source whose pull quota is below the reserve waits
for the quota's window to reset, rather than deferring the image, when the source has said when
that is (``registry.quota``) and it is within ``max_wait`` seconds. Images that meet one host's
low quota at once share one wait (one notice); after it the host's count is forgotten, so the
next manifest GET says anew what is left.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from .registry.client import RegistryClient

#: What the reserve does by default ("defer"), and what else it may do.
RATELIMIT_MODES = ("defer", "wait")
#: ``--max-wait``: the longest a copy waits for a source's quota to come back, in seconds.
DEFAULT_MAX_WAIT = 300.0


@dataclass(frozen=True, slots=True)
class QuotaWait:
    """A wait begun: ``host``'s quota is down to ``remaining`` (below ``reserve``), and its
    window resets in ``seconds``."""

    host: str
    remaining: int
    reserve: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The ``--format json`` line (``"event": "ratelimit-wait"``)."""
        from .events import SCHEMA_VERSION

        return {
            "event": "ratelimit-wait",
            "v": SCHEMA_VERSION,
            "registry": self.host,
            "remaining": self.remaining,
            "reserve": self.reserve,
            "seconds": round(self.seconds, 3),
        }

    def line(self) -> str:
        return (
            f"Waiting {duration(self.seconds)} for {self.host}'s pull quota to reset "
            f"({self.remaining} left, rate_limit_reserve {self.reserve})"
        )


def checked_mode(ratelimit: str) -> str:
    """``ratelimit`` if it is one of ``RATELIMIT_MODES``, else a ``ValueError``."""
    if ratelimit not in RATELIMIT_MODES:
        modes = ", ".join(RATELIMIT_MODES)
        raise ValueError(f"ratelimit must be one of {modes}, not {ratelimit!r}")
    return ratelimit


def duration(seconds: float) -> str:
    """``45s``, ``5m30s``, ``6h0m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    return f"{s // 3600}h{s % 3600 // 60}m"


class QuotaWaiter:
    """The waits of one run, for one client's hosts; ``sleep`` and ``clock`` (``time.monotonic``,
    the client's) are for tests."""

    def __init__(
        self,
        client: RegistryClient,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        on_wait: Callable[[QuotaWait], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import asyncio  # here: importing the copier loads no asyncio

        self._client = client
        self._max_wait = max_wait
        self._on_wait = on_wait
        self._sleep = sleep or asyncio.sleep
        self._clock = clock
        self._waits: dict[str, asyncio.Future[None]] = {}

    async def wait(self, hosts: Iterable[str], reserve: int) -> str | None:
        """Wait until the quota of the lowest of ``hosts`` (those that said) resets; None when
        it has (or nothing is low), else why the image is deferred instead (to follow "N pulls
        left at the source (...)")."""
        import asyncio

        counts = self._client.rate_limits
        low = [(counts[h], h) for h in hosts if h in counts and counts[h] < reserve]
        if not low:
            return None
        left, host = min(low)
        waiting = self._waits.get(host)
        if waiting is None:
            at = self._client.rate_resets.get(host)
            if at is None:
                return "it did not say when its window resets"
            seconds = at - self._clock()
            if seconds > self._max_wait:
                return (
                    f"its window resets in {duration(seconds)}, over --max-wait "
                    f"{duration(self._max_wait)}"
                )
            waiting = self._waits[host] = asyncio.ensure_future(
                self._waited(host, QuotaWait(host, left, reserve, max(seconds, 0.0)))
            )
        await asyncio.shield(waiting)
        return None

    async def _waited(self, host: str, wait: QuotaWait) -> None:
        try:
            if wait.seconds > 0:
                if self._on_wait is not None:
                    self._on_wait(wait)
                await self._sleep(wait.seconds)
            # Reset: what is left now, the next answer says.
            self._client.rate_limits.pop(host, None)
            self._client.rate_resets.pop(host, None)
        finally:
            del self._waits[host]
