"""Typed progress events: the library reports, the CLI (or a script) decides what to show.

Events arrive on the pulling task's event loop, in order, through a plain callback.
:func:`as_json` gives the stable JSON form that ``pypull pull --format json`` prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .oci.digest import Digest
from .oci.reference import Reference


@dataclass(frozen=True, slots=True)
class Resolved:
    """The reference resolved to a manifest; ``endpoint`` is the base URL that served it."""

    reference: Reference
    digest: Digest
    endpoint: str
    layers: tuple[Digest, ...]
    first_choice: str = ""  # the endpoint asked first, when it was not the one that answered
    sizes: tuple[int, ...] = ()  # each layer's size in bytes, as ``layers`` (not in the JSON)


@dataclass(frozen=True, slots=True)
class Retrying:
    """Resolving the reference failed for a while: the manifest is asked for again after
    ``delay`` seconds."""

    reference: Reference
    delay: float
    attempt: int
    error: Exception


@dataclass(frozen=True, slots=True)
class LayerEvent:
    digest: Digest

    @property
    def layer_id(self) -> str:
        return self.digest.short


# The kinds below add no field: plain subclasses (with no __dict__) keep the base's frozen,
# slotted behaviour, and equality by class, without a dataclass each (0.5 ms of start-up apiece).


class LayerExists(LayerEvent):
    """Already in the store: no request is made for it."""

    __slots__ = ()


class LayerPulling(LayerEvent):
    """Scheduled for download."""

    __slots__ = ()


class LayerWaiting(LayerEvent):
    """Queued behind the concurrency limit."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class LayerWaitingForProcess(LayerWaiting):
    """Another process (another pypull) is downloading this blob into the same store: this
    pull waits for it and then uses its blob. ``pid`` is that process's, when it said."""

    pid: int | None = None


@dataclass(frozen=True, slots=True)
class LayerProgress(LayerEvent):
    current: int
    total: int


@dataclass(frozen=True, slots=True)
class LayerRetrying(LayerEvent):
    """A temporary failure: the download resumes after ``delay`` seconds."""

    delay: float
    attempt: int  # the attempt that failed, 1-based
    error: Exception


class LayerVerifying(LayerEvent):
    """All bytes received; size and digest are being checked."""

    __slots__ = ()


class LayerDownloaded(LayerEvent):
    """Verified and renamed into the store."""

    __slots__ = ()


class LayerComplete(LayerEvent):
    """This layer and every layer below it are in the store (reported bottom first)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class LayerFailed(LayerEvent):
    error: Exception


@dataclass(frozen=True, slots=True)
class Finished:
    reference: Reference
    digest: Digest
    up_to_date: bool
    downloaded: tuple[Digest, ...] = ()  # blobs this pull fetched (layers and configs)


Event = (
    Resolved
    | Retrying
    | LayerExists
    | LayerPulling
    | LayerWaiting
    | LayerWaitingForProcess
    | LayerProgress
    | LayerRetrying
    | LayerVerifying
    | LayerDownloaded
    | LayerComplete
    | LayerFailed
    | Finished
)
EventCallback = Callable[[Event], None]


def ignore(_: Event) -> None:
    """The default callback."""


#: The ``"v"`` of every JSON event: raised only when a field changes meaning or goes away
#: (fields may be added within a version).
SCHEMA_VERSION = 1
#: A JSON message's bound, in characters: a registry's error body may be 64 kB.
MESSAGE_LIMIT = 2000


def message(error: BaseException) -> str:
    """An error as a JSON message: one line, at most ``MESSAGE_LIMIT`` characters."""
    return " ".join(str(error).split())[:MESSAGE_LIMIT]


def as_json(event: Event) -> dict[str, Any] | None:
    """The event as ``pypull pull --format json`` prints it, or None for the kinds that form
    leaves out (the steps of a download between "pulling" and "complete": progress says more).
    Layers are named by their full digest."""
    kind: str
    fields: dict[str, Any]
    if isinstance(event, Resolved):
        kind = "resolved"
        fields = {
            "reference": str(event.reference),
            "digest": str(event.digest),
            "endpoint": event.endpoint,
            "layers": [str(d) for d in event.layers],
        }
    elif isinstance(event, (Retrying, LayerRetrying)):
        kind = "retrying"
        fields = (
            {"reference": str(event.reference)}
            if isinstance(event, Retrying)
            else {"layer": str(event.digest)}
        )
        fields |= {"delay": event.delay, "attempt": event.attempt, "message": message(event.error)}
    elif isinstance(event, LayerExists):
        kind, fields = "exists", {"layer": str(event.digest)}
    elif isinstance(event, LayerProgress):
        kind = "progress"
        fields = {"layer": str(event.digest), "current": event.current, "total": event.total}
    elif isinstance(event, LayerComplete):
        kind, fields = "complete", {"layer": str(event.digest)}
    elif isinstance(event, Finished):
        kind = "done"
        fields = {
            "reference": str(event.reference),
            "digest": str(event.digest),
            "up_to_date": event.up_to_date,
            "downloaded": [str(d) for d in event.downloaded],
        }
    else:
        return None
    return {"event": kind, "v": SCHEMA_VERSION, **fields}
