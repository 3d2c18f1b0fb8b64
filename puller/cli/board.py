"""A pull on a terminal as docker shows it: one fixed line per layer for the whole pull, each
with its layer ID and state, and a line for the whole pull (layers done, bytes, rate), drawn
by tqdm (a bar per line, at a fixed position) and redrawn by a ``Ticker`` while bytes move.

Lines are one column short of the terminal's width (bars shrink, lines never wrap: a line that
fills the last column leaves the cursor in the terminal's pending-wrap state and the next line
starts askew). When the pull is over, or interrupted, the bars are cleared, bottom first (tqdm
misplaces the cursor when a bar above another one closes first), and each layer's last state
is written as a plain line, so nothing of a bar remains and the cursor is at column 0.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ..events import LayerEvent
    from ..oci.digest import Digest

#: How often a ``Ticker`` redraws (seconds): at least twice a second.
TICK = 0.25
#: A layer's states (besides downloading and retrying), by the event that brings them.
STATES = {
    "LayerExists": "Already exists",
    "LayerPulling": "Pulling fs layer",
    "LayerWaiting": "Waiting",
    "LayerVerifying": "Verifying Checksum",
    "LayerDownloaded": "Download complete",
    "LayerComplete": "Pull complete",
    "LayerFailed": "Download failed",
}
DONE = ("Already exists", "Download complete", "Pull complete")
DOWNLOADING = "Downloading"
#: A downloading layer's line: ``6900ab66c9ff: Downloading [=====>     ]  12.1MB/30.4MB``.
BAR_FORMAT = "{desc} [{bar}] {n_fmt}B/{total_fmt}B"
BAR_CHARS = " >="  # docker's bar: '=' filled, '>' its head
#: The widest a line gets on a wide terminal (docker's bar is 50 columns).
MAX_WIDTH = 100
TOTAL_FORMAT = "{desc}  {n_fmt}B/{total_fmt}B  {rate_fmt}"


class Ticker:
    """Calls ``tick`` every ``TICK`` seconds from a daemon thread until ``stop``: tqdm draws
    only when told, and a bar must move while bytes move even if no event comes."""

    def __init__(self, tick: Callable[[], None]) -> None:
        self._tick = tick
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pypull-ticker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(TICK):
            try:
                self._tick()
            except Exception:  # a closed terminal: drawing is not worth a traceback
                return

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


class AtColumnZero:
    """The terminal tqdm draws on, with the cursor put back at column 0 after each drawing:
    where tqdm leaves it, at the end of a full line, the ``^C`` a terminal echoes for Ctrl-C
    would wrap and shift every line below it."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, text: str) -> int:
        return self._out.write(text)

    def flush(self) -> None:
        self._out.write("\r")
        self._out.flush()


@dataclass
class _Layer:
    layer_id: str
    size: int
    state: str = "Waiting"
    current: int = 0
    bar: Any = None  # its tqdm bar, when it has a line on the screen

    def text(self) -> str:
        """The line once bars are gone: the state, and for a download cut short its bytes."""
        if self.state == DOWNLOADING:
            from .render import human_size

            done, size = human_size(self.current), human_size(self.size)
            return f"{self.layer_id}: {DOWNLOADING} {done}/{size}"
        return f"{self.layer_id}: {self.state}"


class LayerBoard:
    """The lines of one pull's layers (in the manifest's order) and its total line."""

    def __init__(self, out: TextIO, layers: Sequence[tuple[Digest, int]]) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._out = out
        self._screen = AtColumnZero(out)
        columns, rows = shutil.get_terminal_size()
        self._rows = rows
        self._width = max(20, min(columns - 1, MAX_WIDTH))
        self._lock = threading.Lock()  # the ticker reads what the event loop changes
        self._layers: dict[Digest, _Layer] = {}
        for digest, size in layers:
            self._layers.setdefault(digest, _Layer(digest.short, size))
        # Lines the screen has room for: the total's, the cursor's and one above them; more
        # layers than that are counted on the total line but get no line of their own.
        room = max(1, rows - 3)
        self._bars: list[Any] = []
        for layer in list(self._layers.values())[:room]:
            layer.bar = self._bar(len(self._bars), "{desc}", layer.size or None)
            layer.bar.set_description_str(layer.text(), refresh=True)
        self._total = self._bar(len(self._bars), TOTAL_FORMAT, self._to_fetch() or None)
        self._retitle()
        self._ticker = Ticker(self._tick)

    def _bar(self, position: int, bar_format: str, total: int | None) -> Any:
        bar = self._tqdm(
            total=total,
            position=position,
            leave=False,
            file=self._screen,
            ncols=self._width,
            nrows=self._rows,
            bar_format=bar_format,
            ascii=BAR_CHARS,
            unit="B",
            unit_scale=True,
            unit_divisor=1000,  # docker's units: MB, not MiB
            mininterval=0.1,
        )
        self._bars.append(bar)
        return bar

    def _to_fetch(self) -> int:
        return sum(x.size for x in self._layers.values() if x.state != "Already exists")

    def _retitle(self) -> None:
        """The total line's words: ``8 layers: 3 done, 1 downloading, 4 waiting``, shortened
        (waiting, then downloading left out) to leave room for bytes and rate."""
        states = [x.state for x in self._layers.values()]
        done = sum(s in DONE for s in states)
        busy = sum(s in (DOWNLOADING, "Verifying Checksum") for s in states)
        parts = [f"{len(states)} layers: {done} done"]
        if busy:
            parts.append(f"{busy} downloading")
        if len(states) - done - busy:
            parts.append(f"{len(states) - done - busy} waiting")
        room = self._width - 26  # "  120MB/120MB  18.2MB/s"
        while len(parts) > 1 and len(", ".join(parts)) > room:
            parts.pop()
        self._total.set_description_str(", ".join(parts), refresh=True)

    def on_event(self, event: LayerEvent, state: str | None) -> None:
        """A layer's event: ``state`` is its new state's words (None for progress)."""
        from .. import events as ev

        layer = self._layers.get(event.digest)
        if layer is None:
            return
        with self._lock:
            if isinstance(event, ev.LayerProgress):
                self._progress(layer, event.current, event.total)
                return
            if state is None:
                return
            before = layer.state
            layer.state = state
            if layer.bar is not None:
                layer.bar.bar_format = "{desc}"
                layer.bar.set_description_str(layer.text(), refresh=True)
            if "Already exists" in (before, state):
                self._total.total = self._to_fetch() or None
            if (before in DONE) != (state in DONE) or DOWNLOADING in (before, state):
                self._retitle()

    def _progress(self, layer: _Layer, current: int, total: int) -> None:
        self._total.update(max(0, current - layer.current))
        layer.current, layer.size = current, total
        bar = layer.bar
        if layer.state != DOWNLOADING:
            layer.state = DOWNLOADING
            self._retitle()
            if bar is not None:
                bar.reset(total=total or None)
                bar.bar_format = BAR_FORMAT
                bar.set_description_str(f"{layer.layer_id}: {DOWNLOADING}", refresh=False)
                bar.n = current
                bar.refresh()  # at once: tqdm's own update waits for its interval
                return
        if bar is not None:
            bar.update(current - bar.n)

    def _tick(self) -> None:
        with self._lock:
            for layer in self._layers.values():
                if layer.state == DOWNLOADING and layer.bar is not None:
                    layer.bar.refresh()
            self._total.refresh()

    def finish(self) -> None:
        """Clear the bars (bottom first) and write each layer's last state as a plain line."""
        self._ticker.stop()
        with self._lock:
            for bar in reversed(self._bars):
                bar.close()
            self._bars.clear()
            self._out.write("".join(f"\r\x1b[K{x.text()}\n" for x in self._layers.values()))
            self._out.flush()
