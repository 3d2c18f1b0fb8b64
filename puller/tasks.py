"""Coroutines run together: all at once (``all_of``), or at most so many at a time
(``map_limited``); in both the first failure cancels the rest and is raised, and the results come
back in order. And the other way round, a coroutine run to its end from code that is not async
(``run``, ``blocking``: the API's ``*_sync`` twins).

asyncio is imported inside the functions: ``import puller`` (and ``pypull --help``) loads no event
loop."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, ParamSpec, TypeVar

A = TypeVar("A")
R = TypeVar("R")
P = ParamSpec("P")


async def all_of(coroutines: Iterable[Awaitable[R]]) -> list[R]:
    """All of them at once, results in order; the first failure cancels the rest."""
    import asyncio

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


def run(main: Coroutine[Any, Any, R]) -> R:
    """``main`` run to its end on a new event loop (``asyncio.run``), for code that is not
    async. Refused (``RuntimeError``) inside a running event loop: there, ``await`` it."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main)
    name = getattr(main, "__qualname__", "the coroutine")
    main.close()
    raise RuntimeError(
        f"a blocking call of {name} inside a running event loop: await {name}(...) instead"
    )


def blocking(function: Callable[P, Coroutine[Any, Any, R]], name: str) -> Callable[P, R]:
    """The blocking twin of the coroutine function ``function``, named ``name``: the same
    arguments and result, run by ``run``."""

    @functools.wraps(function)
    def twin(*args: P.args, **kwargs: P.kwargs) -> R:
        return run(function(*args, **kwargs))

    twin.__name__ = twin.__qualname__ = name
    twin.__doc__ = (
        f"Blocking: ``{function.__name__}`` (a coroutine function) run to its end on a new "
        f"event loop; the same arguments and result. Not for use inside a running event loop "
        f"(there, ``await puller.{function.__name__}(...)``).\n\n{function.__doc__ or ''}"
    )
    return twin
