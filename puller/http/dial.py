"""Dialling a host: its addresses looked up (families interleaved, RFC 8305 section 4), then a TCP
connection to the first that answers, Happy Eyeballs style.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable
from contextlib import suppress
from typing import TypeVar

from .errors import BadURL, CannotResolve

#: RFC 8305's "Connection Attempt Delay": the next address is tried if the last has not
#: connected by then.
HAPPY_EYEBALLS_DELAY = 0.25

P = TypeVar("P", bound=asyncio.BaseProtocol)


async def dial(host: str, port: int, factory: Callable[[], P]) -> P:
    """A TCP connection to ``host``, Happy Eyeballs style (RFC 8305: addresses of both
    families interleaved, the next tried after ``HAPPY_EYEBALLS_DELAY`` or as soon as the
    last failed), on any event loop (uvloop has no ``happy_eyeballs_delay``). The attempts
    that lose are aborted."""
    loop = asyncio.get_running_loop()
    addresses = await resolve(host, port)
    if len(addresses) == 1:
        _, conn = await loop.create_connection(factory, addresses[0], port)
        return conn
    errors: list[BaseException] = []
    winner: P | None = None
    pending: set[asyncio.Task[tuple[asyncio.Transport, P]]] = set()
    try:
        for address in addresses:
            task = asyncio.ensure_future(loop.create_connection(factory, address, port))
            pending.add(task)
            done, _ = await asyncio.wait(
                pending, timeout=HAPPY_EYEBALLS_DELAY, return_when=asyncio.FIRST_COMPLETED
            )
            winner = _first_success(done, pending, errors)
            if winner is not None:
                return winner
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            winner = _first_success(done, pending, errors)
            if winner is not None:
                return winner
    finally:
        for task in pending:
            task.cancel()
        for task in pending:
            with suppress(BaseException):
                late, _ = await task
                late.abort()
    raise errors[0] if errors else ConnectionError(f"cannot connect to {host}")


def _first_success(
    done: set[asyncio.Task[tuple[asyncio.Transport, P]]],
    pending: set[asyncio.Task[tuple[asyncio.Transport, P]]],
    errors: list[BaseException],
) -> P | None:
    winner = None
    for task in done:
        pending.discard(task)
        error = task.exception()
        if error is not None:
            errors.append(error)
        elif winner is None:
            winner = task.result()[1]
        else:
            task.result()[0].abort()
    return winner


async def resolve(host: str, port: int) -> list[str]:
    """The host's addresses, families interleaved (RFC 8305 section 4). A name that does not
    exist fails at once; a temporary resolver failure (also what a machine without a reachable
    resolver says for every name) is asked once more, not by the whole retry policy."""
    if _IP_LITERAL.fullmatch(host):
        return [host]  # nothing to look up (and no resolver thread to start for it)
    loop = asyncio.get_running_loop()
    for attempt in range(2):
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            break
        except socket.gaierror as e:
            if e.errno == socket.EAI_AGAIN and attempt == 0:
                await asyncio.sleep(0.5)
                continue
            detail = "temporary failure in name resolution" if e.errno == socket.EAI_AGAIN else ""
            raise CannotResolve(host, detail) from e
        except UnicodeError:  # the IDNA codec refuses it (an empty label, say)
            raise BadURL(f"invalid host name {host[:200]!r}") from None
    by_family: dict[int, list[str]] = {}
    for family, _, _, _, sockaddr in infos:
        address = str(sockaddr[0])
        if family == socket.AF_INET6 and len(sockaddr) >= 4 and sockaddr[3]:
            address = f"{address.partition('%')[0]}%{sockaddr[3]}"
        found = by_family.setdefault(family, [])
        if address not in found:
            found.append(address)
    if not by_family:
        raise CannotResolve(host)
    ordered: list[str] = []
    lists = list(by_family.values())
    for i in range(max(len(x) for x in lists)):
        ordered.extend(x[i] for x in lists if i < len(x))
    return ordered


#: Dotted-quad IPv4 and IPv6 (the client has vetted the characters of a host): no lookup needed.
_IP_LITERAL = re.compile(r"(\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(%[\w.-]+)?")
