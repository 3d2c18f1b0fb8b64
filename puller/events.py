"""Typed progress events: the library reports, the CLI (or a script) decides what to show.

Events arrive on the pulling task's event loop, in order, through a plain callback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .digest import Digest
from .reference import Reference


@dataclass(frozen=True, slots=True)
class Resolved:
    """The reference resolved to a manifest; ``endpoint`` is the base URL that served it."""

    reference: Reference
    digest: Digest
    endpoint: str
    layers: tuple[Digest, ...]
    first_choice: str = ""  # the endpoint asked first, when it was not the one that answered


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


Event = (
    Resolved
    | Retrying
    | LayerExists
    | LayerPulling
    | LayerWaiting
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
