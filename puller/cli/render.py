"""What the terminal shows: the renderers of a pull's events (plain lines, bars on a terminal,
JSON lines), the bar of a copy, error lines, and the sizes, counts and JSON the commands print.
tqdm is imported only when a bar is drawn."""

from __future__ import annotations

import math
import shutil
import sys
from typing import TYPE_CHECKING, Any, TextIO

from ..text import shown

if TYPE_CHECKING:
    from ..events import Event
    from ..oci.reference import Reference

#: An error line's bound, in characters after ``Error: ``: room for our own words and URLs
#: around a few hundred characters of what a registry, helper or config file said. A cut
#: message keeps its last ``ERROR_TAIL`` characters, where a reason often stands.
ERROR_LIMIT = 600
ERROR_TAIL = 150


def one_line(e: BaseException) -> str:
    """An error's message as one printable line of bounded length: every message may quote
    outside text (registry bodies and headers, helper stderr), so every one goes through
    ``shown``."""
    text = " ".join(str(e).split())
    return shown(text, ERROR_LIMIT, tail=ERROR_TAIL) if text else type(e).__name__


def print_error(e: BaseException, debug: bool, hint: str = "") -> None:
    """``Error: ...`` on stderr, and ``hint`` (``login_hint``) after it; with ``debug``
    (--debug), the traceback before it."""
    if debug:
        import traceback

        # Whole (a traceback is for debugging), but escaped: a hostile registry's message must
        # not drive the terminal of whoever debugs it, and an escaped ESC is clearer to read.
        for line in traceback.format_exception(type(e), e, e.__traceback__):
            for part in line.splitlines():
                print(shown(part, None), file=sys.stderr)
    print(f"Error: {one_line(e)}{hint}", file=sys.stderr, flush=True)


def login_hint(code: str | None, registry: str | None, flag: str = "", said: str = "") -> str:
    """What to do about a registry that wants credentials or refused them: ``; log in with
    `pypull login REGISTRY` (or give --creds USERNAME:PASSWORD)``; nothing for other codes, or
    when the message ``said`` it already."""
    if code not in ("unauthorized", "denied") or not registry or "pypull login" in said:
        return ""
    alternative = f" (or give {flag} USERNAME:PASSWORD)" if flag else ""
    return f"; log in with `pypull login {shown(registry, 200)}`{alternative}"


def registry_of(e: BaseException) -> str | None:
    """The host of the registry an error came from (its URL's), if it names one."""
    from urllib.parse import urlsplit

    url = getattr(e, "url", "") or ""
    return (urlsplit(url).netloc or None) if "://" in url else None


def emit(obj: dict[str, Any]) -> None:
    """One line of ``--format json`` on stdout."""
    print(json_text(obj), flush=True)


def error_event(e: BaseException, reference: str | None = None) -> dict[str, Any]:
    """The ``error`` line of ``--format json``: its stable ``code`` (``errors.CODES``) and
    message, and the image it concerns when there is one."""
    from ..errors import error_code
    from ..events import SCHEMA_VERSION, message

    obj: dict[str, Any] = {"event": "error", "v": SCHEMA_VERSION, "code": error_code(e)}
    if reference is not None:
        obj["reference"] = reference
    obj["message"] = message(e)
    return obj


def human_size(n: float) -> str:
    """docker's HumanSize: decimal units, 3 significant digits (``117MB``, ``5.59kB``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}"
        n /= 1000
    raise AssertionError("unreachable")


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def json_text(value: object, indent: int | None = None) -> str:
    """JSON of outside text, safe on a terminal: json escapes every control character and
    everything outside ASCII (bidi overrides, C1 controls) but DEL, escaped here."""
    import json

    return json.dumps(value, indent=indent).replace("\x7f", "\\u007f")


# -- a pull ---------------------------------------------------------------------------------------


class PlainRenderer:
    """docker's words, one line per state change; no bars, no carriage returns."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def __call__(self, event: Event) -> None:
        from .. import events as ev

        if isinstance(event, ev.Resolved):
            if event.first_choice:  # URLs from the configuration or the command line
                endpoint, first = shown(event.endpoint), shown(event.first_choice)
                self.line(f"Using {endpoint} ({first} did not answer)")
            self.line(f"{_what(event.reference)}: Pulling from {event.reference.path}")
        elif isinstance(event, ev.Retrying):
            what, error = _what(event.reference), one_line(event.error)
            self.line(f"{what}: {_retrying(event.delay)} ({error})")
        elif isinstance(event, ev.LayerRetrying):
            self.line(f"{event.layer_id}: {_retrying(event.delay)}")
        elif isinstance(event, ev.LayerEvent):
            word = _LAYER_WORDS.get(type(event).__name__)
            if word:
                self.line(f"{event.layer_id}: {word}")
        elif isinstance(event, ev.Finished):
            self.line(f"Digest: {event.digest}")
            status = "Image is up to date for" if event.up_to_date else "Downloaded newer image for"
            self.line(f"Status: {status} {event.reference.familiar}")

    def close(self) -> None:
        pass


def _what(ref: Reference) -> str:
    """What docker puts before ``: Pulling from``: the tag, or the digest."""
    return ref.tag if ref.digest is None and ref.tag else str(ref.digest)


def _retrying(delay: float) -> str:
    seconds = max(1, math.ceil(delay))
    return f"Retrying in {seconds} second{'s' * (seconds != 1)}"


_LAYER_WORDS = {
    "LayerExists": "Already exists",
    "LayerPulling": "Pulling fs layer",
    "LayerWaiting": "Waiting",
    "LayerWaitingForProcess": "Waiting",
    "LayerVerifying": "Verifying Checksum",
    "LayerDownloaded": "Download complete",
    "LayerComplete": "Pull complete",
}


class TtyRenderer(PlainRenderer):
    """docker's view: from ``Resolved`` to ``Finished`` (or ``close``), a fixed line per layer
    and one for the pull (``board.LayerBoard``); plain lines above and after it."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(out)
        from tqdm import tqdm

        self._tqdm = tqdm
        self._board: Any = None  # a board.LayerBoard while the layers are on the screen

    def line(self, text: str) -> None:
        self._tqdm.write(text, file=self.out)

    def __call__(self, event: Event) -> None:
        from .. import events as ev

        if isinstance(event, ev.Resolved):
            super().__call__(event)
            self.close()
            from .board import LayerBoard

            sizes = event.sizes or (0,) * len(event.layers)
            self._board = LayerBoard(self.out, list(zip(event.layers, sizes, strict=True)))
        elif isinstance(event, ev.LayerEvent) and self._board is not None:
            self._board.on_event(event, _layer_state(event))
        elif isinstance(event, ev.Finished):
            self.close()
            super().__call__(event)
        else:
            super().__call__(event)

    def close(self) -> None:
        """Finish the board: bars cleared, each layer's last state a plain line, the cursor at
        column 0 (also when the pull failed or was interrupted, before its error line)."""
        board, self._board = self._board, None
        if board is not None:
            board.finish()


def _layer_state(event: Event) -> str | None:
    """A layer event's words on its line (None for progress, which moves the bar)."""
    from .. import events as ev
    from .board import STATES

    if isinstance(event, ev.LayerWaitingForProcess):
        return "Waiting for another pypull" + (f" (pid {event.pid})" if event.pid else "")
    if isinstance(event, ev.LayerRetrying):
        return _retrying(event.delay)
    return STATES.get(type(event).__name__)


class JsonRenderer(PlainRenderer):
    """``--format json``: one JSON object per event a line (``events.as_json``), nothing else
    on stdout. Progress is thinned to one line per layer every ``EVERY`` seconds (and
    the last); ``ensure_ascii`` escapes every character outside ASCII, so text from a registry
    reaches a terminal only as ``\\uXXXX``."""

    EVERY = 0.25  # seconds between two progress lines of one layer

    def __init__(self, out: TextIO) -> None:
        super().__init__(out)
        self._shown_at: dict[object, float] = {}  # layer digest -> when its progress was printed

    def emit(self, obj: dict[str, Any]) -> None:
        import json

        self.out.write(json.dumps(obj, ensure_ascii=True) + "\n")
        self.out.flush()

    def line(self, text: str) -> None:
        """Human words ("Using default tag") have no place among the JSON lines."""

    def __call__(self, event: Event) -> None:
        import time

        from .. import events as ev

        if isinstance(event, ev.LayerProgress):
            now = time.monotonic()
            last = self._shown_at.get(event.digest)
            if event.current < event.total and last is not None and now - last < self.EVERY:
                return
            self._shown_at[event.digest] = now
        obj = ev.as_json(event)
        if obj is not None:
            self.emit(obj)

    def error(self, reference: str, error: BaseException) -> None:
        self.emit(error_event(error, reference))


# -- a copy ---------------------------------------------------------------------------------------


class CopyBar:
    """On a terminal: one bar for the run (images done of planned, bytes sent and their rate),
    redrawn by a ``board.Ticker`` while bytes move; a line above it per image as it ends."""

    FORMAT = "{n_fmt}/{total_fmt} images |{bar}| {desc} [{elapsed}]"

    def __init__(self) -> None:
        import threading
        import time

        from tqdm import tqdm

        from .board import AtColumnZero, Ticker

        self._tqdm = tqdm
        self._clock = time.monotonic
        columns = shutil.get_terminal_size().columns
        self._bar = tqdm(
            total=None,
            unit="image",
            file=AtColumnZero(sys.stderr),
            leave=False,
            bar_format=self.FORMAT,
            ncols=max(20, min(columns - 1, 100)),  # one short: see board's docstring
        )
        self._bar.set_description_str("0B sent", refresh=True)
        self._sent = 0
        self._samples = [(self._clock(), 0)]  # (when, bytes sent by then): the rate's window
        self._mutex = threading.Lock()
        self._ticker = Ticker(self._tick)

    def line(self, text: str) -> None:
        with self._mutex:
            self._tqdm.write(text, file=sys.stdout)
            if self._bar.total is not None and self._bar.n >= self._bar.total:
                self._bar.total = self._bar.n + 1  # a failure before any copy was planned
            self._bar.update(1)

    def note(self, text: str) -> None:
        """A line on stderr above the bar, counting no image."""
        with self._mutex:
            self._tqdm.write(text, file=sys.stderr)

    def planned(self, n: int) -> None:
        with self._mutex:
            self._bar.total = (self._bar.total or 0) + n
            self._bar.refresh()

    def sent(self, n: int) -> None:
        self._sent += n  # drawn by the ticker

    def _tick(self) -> None:
        """The bytes and their rate over the last few seconds, redrawn."""
        now, sent = self._clock(), self._sent
        recent = [s for s in self._samples if now - s[0] <= 3.0][-12:]
        self._samples = [*recent, (now, sent)]
        then, before = self._samples[0]
        said = f"{human_size(sent)} sent"
        if now - then > 0.2:
            said += f", {human_size((sent - before) / (now - then))}/s"
        with self._mutex:
            self._bar.set_description_str(said, refresh=False)
            self._bar.refresh()

    def close(self) -> None:
        self._ticker.stop()
        with self._mutex:
            self._bar.close()
