"""Coroutines run together: all at once (``all_of``), or at most so many at a time
(``map_limited``); in both the first failure cancels the rest and is raised, and the results come
back in order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

A = TypeVar("A")
R = TypeVar("R")


async def all_of(coroutines: Iterable[Awaitable[R]]) -> list[R]:
    """All of them at once, results in order; the first failure cancels the rest."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def map_limited(limit: int, items: Sequence[A], work: Callable[[A], Awaitable[R]]) -> list[R]:
    """``work`` on each item, at most ``limit`` at a time (a hostile manifest may name
    thousands), the results in order; the first failure cancels the rest (and is raised)."""
    results: dict[int, R] = {}
    todo = iter(enumerate(items))

    async def worker() -> None:
        for i, item in todo:
            results[i] = await work(item)

    await all_of(worker() for _ in range(min(limit, len(items))))
    return [results[i] for i in range(len(items))]
