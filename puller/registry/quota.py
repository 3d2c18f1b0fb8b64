"""When a registry's pull quota comes back: the headers that say when its window resets.

``RateLimit-Reset: 60`` (the IETF draft's, seconds from now) is the best word; a 429's
``Retry-After`` is next; Docker Hub says neither, only the window its quota spans
(``ratelimit-limit: 100;w=21600``: 100 pulls per 21,600 seconds), whose length is then the
longest one may have to wait.
"""

from __future__ import annotations

import math

from ..http.message import Headers
from .status import number, parse_retry_after


def reset_in(headers: Headers, status: int) -> float | None:
    """Seconds from now until the quota the answer speaks of resets; None: it does not say."""
    reset = number((headers.get("RateLimit-Reset") or "").strip())
    if reset is not None:
        return float(reset)
    if status == 429:
        after = parse_retry_after(headers.get("Retry-After"))
        if after is not None and math.isfinite(after):
            return after
    for name in ("RateLimit-Limit", "RateLimit-Remaining"):
        window = _window(headers.get(name))
        if window is not None:
            return float(window)
    return None


def _window(value: str | None) -> int | None:
    """``100;w=21600`` -> 21600."""
    for param in (value or "").split(";")[1:]:
        key, _, val = param.partition("=")
        if key.strip().lower() == "w":
            return number(val.strip())
    return None
