"""When to try again, and how long to wait first.

Only temporary failures are retried (connection trouble, a truncated body, 408/429/5xx); a 404 or
a digest mismatch will not change by asking again. Waits grow exponentially with jitter, so that
many clients hitting a struggling registry do not come back in lockstep, and a registry's
``Retry-After`` is honoured up to a cap.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import PullError, QuotaExhausted, RegistryError, Unreachable

T = TypeVar("T")

#: Statuses that say "not now" rather than "no".
TEMPORARY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_temporary(error: PullError) -> bool:
    """True if asking again may help: for an error that stands for several endpoints (a mirror
    said 404, the upstream's connection dropped), if it may help with any of them."""
    if error.attempts:
        return any(_temporary(e) for e in error.attempts)
    return _temporary(error)


def _temporary(error: PullError) -> bool:
    if isinstance(error, Unreachable):
        return True
    if isinstance(error, QuotaExhausted):
        return False
    return isinstance(error, RegistryError) and error.status in TEMPORARY_STATUSES


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5  # in all, the first included
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")

    def delay(
        self, attempt: int, error: PullError, rand: Callable[[], float] = random.random
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        retry_after = error.retry_after if isinstance(error, RegistryError) else None
        if retry_after is not None and math.isfinite(retry_after):
            return min(max(retry_after, 0.0), self.max_retry_after)
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return float(backoff * (0.5 + rand() / 2))


async def with_retries(
    policy: RetryPolicy,
    operation: Callable[[], Awaitable[T]],
    on_retry: Callable[[int, float, PullError], None] = lambda *_: None,
) -> T:
    """Run ``operation`` until it succeeds, fails for good, or runs out of attempts.

    ``on_retry(attempt, delay, error)`` is called before each wait, so the user sees why.
    """
    import asyncio

    attempt = 1
    while True:
        try:
            return await operation()
        except PullError as e:
            if attempt >= policy.attempts or not is_temporary(e):
                raise
            delay = policy.delay(attempt, e)
            on_retry(attempt, delay, e)
            await asyncio.sleep(delay)
            attempt += 1
