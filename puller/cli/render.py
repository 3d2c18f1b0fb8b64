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
    "LayerVerifying": "Verifying Checksum",
    "LayerDownloaded": "Download complete",
    "LayerComplete": "Pull complete",
}
#: On a terminal these are shown by the progress bars instead.
_BAR_STATES = {"LayerPulling", "LayerWaiting", "LayerVerifying", "LayerDownloaded"}


class TtyRenderer(PlainRenderer):
    """A tqdm bar per downloading layer; the final lines as in plain mode.

    Bars live in slots that are reused and closed only at the end, bottom slot last: tqdm
    misplaces the cursor when a bar above another one closes first, which garbles later lines.
    """

    def __init__(self, out: TextIO) -> None:
        super().__init__(out)
        from tqdm import tqdm

        self._tqdm = tqdm
        self._slots: list[Any] = []
        self._active: dict[Any, Any] = {}  # digest -> bar

    def line(self, text: str) -> None:
        self._tqdm.write(text, file=self.out)

    def _bar_for(self, layer_id: str, total: int) -> Any:
        busy = {id(b) for b in self._active.values()}
        bar = next((b for b in self._slots if id(b) not in busy), None)
        if bar is None:
            bar = self._tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                leave=False,
                file=self.out,
                # One column short of the width: a bar that fills the last column leaves the
                # cursor in the terminal's pending-wrap state and the next line starts askew.
                ncols=max(40, shutil.get_terminal_size().columns - 1),
            )
            self._slots.append(bar)
        else:
            bar.bar_format = None
            bar.reset(total=total)
        bar.set_description_str(f"{layer_id}: Downloading", refresh=False)
        return bar

    def _release(self, digest: Any) -> None:
        bar = self._active.pop(digest, None)
        if bar is not None:
            bar.bar_format = "{desc}"  # an idle slot shows an empty line
            bar.set_description_str("", refresh=True)

    def __call__(self, event: Event) -> None:
        from .. import events as ev

        if isinstance(event, ev.LayerProgress):
            bar = self._active.get(event.digest)
            if bar is None:
                bar = self._active[event.digest] = self._bar_for(event.layer_id, event.total)
            bar.update(event.current - bar.n)
        elif isinstance(event, ev.LayerVerifying):
            bar = self._active.get(event.digest)
            if bar is not None:
                bar.set_description_str(f"{event.layer_id}: Verifying Checksum")
        elif isinstance(event, (ev.LayerDownloaded, ev.LayerFailed)):
            self._release(event.digest)
        elif type(event).__name__ not in _BAR_STATES:
            super().__call__(event)

    def close(self) -> None:
        for bar in reversed(self._slots):
            bar.close()
        self._slots.clear()
        self._active.clear()


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
    """On a terminal: one bar for the run (images done, bytes sent), lines above it."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._bar = tqdm(total=None, unit="image", file=sys.stderr, leave=False)
        self._sent = 0

    def line(self, text: str) -> None:
        self._tqdm.write(text, file=sys.stdout)
        if self._bar.total is not None and self._bar.n >= self._bar.total:
            self._bar.total = self._bar.n + 1  # a failure before any copy was planned
        self._bar.update(1)

    def planned(self, n: int) -> None:
        self._bar.total = (self._bar.total or 0) + n
        self._bar.refresh()

    def sent(self, n: int) -> None:
        self._sent += n
        self._bar.set_postfix_str(f"{human_size(self._sent)} sent", refresh=False)

    def close(self) -> None:
        self._bar.close()
