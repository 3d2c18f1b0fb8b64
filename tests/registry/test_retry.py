"""The retry policy: what is retried, how long to wait, and when to give up."""

from __future__ import annotations

import email.utils

import pytest

from puller.errors import (
    DigestMismatch,
    ManifestError,
    NotFound,
    PullError,
    RegistryError,
    SizeMismatch,
    Unauthorized,
    Unreachable,
)
from puller.registry.retry import RetryPolicy, is_temporary, with_retries
from puller.registry.status import parse_retry_after


@pytest.mark.parametrize(
    ("error", "temporary"),
    [
        (Unreachable("connection reset"), True),
        (Unreachable("timed out"), True),
        *[(RegistryError("x", status=s), True) for s in (408, 429, 500, 502, 503, 504)],
        *[(RegistryError("x", status=s), False) for s in (400, 405, 416, 501)],
        (NotFound("x", status=404), False),
        (Unauthorized("x", status=401), False),
        (Unauthorized("x", status=403), False),
        (DigestMismatch("x", expected="a", got="b"), False),
        (SizeMismatch("x", expected="1", got="2"), False),
        (ManifestError("x"), False),
    ],
    ids=lambda v: type(v).__name__ + (f"-{v.status}" if isinstance(v, RegistryError) else ""),
)
def test_only_temporary_failures_are_retried(error: PullError, temporary: bool) -> None:
    assert is_temporary(error) is temporary


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (" 120 ", 120.0),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),  # in the past: now
        (None, None),
        ("", None),
        ("-5", None),
        ("soon", None),
        ("1.5", None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=lambda: NOW) == seconds


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    error = Unreachable("reset")
    lows = [policy.delay(n, error, rand=lambda: 0.0) for n in range(1, 7)]
    highs = [policy.delay(n, error, rand=lambda: 1.0) for n in range(1, 7)]
    assert highs == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert lows == [h / 2 for h in highs]  # jitter keeps clients from coming back in lockstep


def test_retry_after_wins_over_backoff_but_is_capped() -> None:
    policy = RetryPolicy(base_delay=1.0, max_retry_after=60.0)
    assert policy.delay(1, RegistryError("x", status=429, retry_after=0.0)) == 0.0
    assert policy.delay(3, RegistryError("x", status=503, retry_after=12.0)) == 12.0
    assert policy.delay(1, RegistryError("x", status=429, retry_after=3600.0)) == 60.0


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


async def test_with_retries_stops_after_the_last_attempt_and_reports_each_wait() -> None:
    calls: list[int] = []
    waits: list[tuple[int, float]] = []

    async def always_503() -> None:
        calls.append(1)
        raise RegistryError("busy", status=503, retry_after=0.0)

    with pytest.raises(RegistryError, match="busy"):
        await with_retries(
            RetryPolicy(attempts=3), always_503, lambda n, d, e: waits.append((n, d))
        )
    assert len(calls) == 3
    assert waits == [(1, 0.0), (2, 0.0)]


async def test_with_retries_gives_up_at_once_on_a_permanent_failure() -> None:
    calls: list[int] = []

    async def not_found() -> None:
        calls.append(1)
        raise NotFound("nope", status=404)

    with pytest.raises(NotFound):
        await with_retries(RetryPolicy(attempts=5), not_found)
    assert len(calls) == 1


async def test_with_retries_returns_the_first_success() -> None:
    outcomes: list[Exception | str] = [Unreachable("reset"), "ok"]

    async def flaky() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert await with_retries(RetryPolicy(base_delay=0.0), flaky) == "ok"
