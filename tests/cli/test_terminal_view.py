"""What a person sees on a terminal: ``pypull`` run on a real pseudo-terminal (``pexpect``),
its output rendered by a terminal emulator (``pyte``), against the fault-injecting registry
(in a thread of its own: pexpect blocks) whose blob bodies trickle, so that a pull is
mid-way for a few seconds. No test sleeps to synchronise: each waits, with a generous
deadline, for the screen to show something."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")
pyte = pytest.importorskip("pyte")

from fixtures.images import Image, make_image  # noqa: E402
from puller.oci.digest import parse_digest  # noqa: E402
from puller.store.layout import Store  # noqa: E402
from tests.support.fakeregistry import FakeRegistry, Trickle, start_fake  # noqa: E402
from tests.support.helpers import partials  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ROWS = 30
DEADLINE = 60.0
#: Blob bodies 8 kB every 50 ms: a 200 kB layer takes over a second.
SLOW = (8192, 0.05)
BAR_CHARS = re.compile(r"\[[ =>]*\]|\|")


def image(name: str, layers: int = 4) -> Image:
    return make_image(f"tty/{name}", "1", layers=layers, layer_size=200_000)


def layer_ids(img: Image) -> list[str]:
    return [layer.digest.split(":")[1][:12] for layer in img.manifests[0].layers]


@contextmanager
def fake_in_a_thread(
    images: list[Image], setup: Callable[[FakeRegistry], object] = lambda _: None
) -> Iterator[FakeRegistry]:
    """A fake registry serving from its own thread and event loop for the ``with`` block;
    ``setup`` runs on that loop before the first request (to inject faults)."""
    started: concurrent.futures.Future[FakeRegistry] = concurrent.futures.Future()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with start_fake(images) as fake:
            setup(fake)
            started.set_result(fake)
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield started.result(timeout=DEADLINE)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(DEADLINE)
        loop.close()


class Terminal:
    """``python -m puller ARGS`` on a pseudo-terminal of ``columns`` columns, as a screen."""

    def __init__(self, columns: int, *args: str | Path) -> None:
        self.columns = columns
        self.screen = pyte.Screen(columns, ROWS)
        self._stream = pyte.ByteStream(self.screen)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYPULL_")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        env.pop("COLUMNS", None)
        env.pop("LINES", None)
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "puller", *map(str, args)],
            dimensions=(ROWS, columns),
            env=env,
            cwd=str(ROOT),
        )
        self.ended = False

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display if line.strip()]

    def _read(self, timeout: float) -> None:
        try:
            self._stream.feed(self.child.read_nonblocking(65536, timeout=timeout))
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            self.ended = True

    def drain(self) -> list[str]:
        """The screen's lines once what the program wrote so far is read."""
        deadline = time.monotonic() + DEADLINE
        before = None
        while before != self.screen.display and not self.ended and time.monotonic() < deadline:
            before = list(self.screen.display)
            self._read(0.05)
        return self.lines()

    def wait_for(self, what: str, seen: Callable[[list[str]], bool]) -> list[str]:
        """The screen's lines once ``seen`` holds for them (``what`` names it on a timeout)."""
        deadline = time.monotonic() + DEADLINE
        while not seen(self.lines()):
            if self.ended or time.monotonic() > deadline:
                raise AssertionError(f"never saw {what}:\n" + "\n".join(self.lines()))
            self._read(0.1)
        return self.lines()

    def finish(self) -> int:
        """Read to the end; the exit status (128 + N for a signal N)."""
        deadline = time.monotonic() + DEADLINE
        while not self.ended:
            assert time.monotonic() < deadline, "\n".join(self.lines())
            self._read(0.2)
        self.child.close()
        if self.child.signalstatus is not None:
            return 128 + int(self.child.signalstatus)
        return int(self.child.exitstatus)


def layer_lines(lines: list[str], ids: list[str]) -> dict[str, list[str]]:
    return {i: [line for line in lines if line.startswith(f"{i}: ")] for i in ids}


def mid_pull(ids: list[str]) -> Callable[[list[str]], bool]:
    """Every layer on a line of its own, one of them downloading with its bar, and the
    pull's line."""

    def seen(lines: list[str]) -> bool:
        mine = layer_lines(lines, ids)
        return (
            all(len(v) == 1 for v in mine.values())
            and any("Downloading [" in v[0] for v in mine.values())
            and any(line.startswith(f"{len(ids)} layers: ") for line in lines)
        )

    return seen


def receiving(ids: list[str]) -> Callable[[list[str]], bool]:
    """``mid_pull``, and a layer that has bytes on disk already: its bar counts more than 0B
    (a layer is shown downloading as its answer starts, before a byte of it was written)."""
    seen_mid = mid_pull(ids)

    def seen(lines: list[str]) -> bool:
        received = (
            re.search(r"\] ([\d.]+)k?B/", line) for line in lines if "Downloading [" in line
        )
        return seen_mid(lines) and any(m is not None and float(m[1]) > 0 for m in received)

    return seen


def slow(fake: FakeRegistry) -> None:
    fake.inject("/blobs/", Trickle(*SLOW))


@pytest.mark.parametrize("columns", [120, 60])
def test_a_pull_shows_a_line_per_layer_and_ends_with_pull_complete_lines(
    columns: int, store: Path
) -> None:
    img = image(f"pull{columns}")
    ids = layer_ids(img)
    with fake_in_a_thread([img], slow) as fake:
        tty = Terminal(columns, "pull", "--store", store, fake.ref(img))
        lines = tty.wait_for("a line per layer, one downloading", mid_pull(ids))
        # Nothing on the screen but the header, the layers' lines and the pull's line; none
        # wider than the terminal (a wrapped line would start with something else).
        for line in lines:
            assert line.startswith((*ids, "1: Pulling from", f"{len(ids)} layers: ")), lines
        downloading = next(line for line in lines if "Downloading [" in line)
        assert re.search(r"\[[ =>]+\] [\d.]+k?B/20\dkB$", downloading), downloading
        total = next(line for line in lines if line.startswith(f"{len(ids)} layers: "))
        assert re.search(r"B/8\d\dkB  [\d.?]+[kMG]?B/s$", total), total  # any rate, its unit
        status = tty.finish()
        lines = tty.lines()
    assert status == 0, lines
    assert {i: v for i, v in layer_lines(lines, ids).items()} == {
        i: [f"{i}: Pull complete"] for i in ids
    }
    assert not [line for line in lines if BAR_CHARS.search(line)], lines
    assert not any(line.startswith(f"{len(ids)} layers: ") for line in lines), lines
    assert lines[-1] == fake.ref(img)


def test_ctrl_c_mid_pull_finishes_the_display_then_says_interrupted(store: Path) -> None:
    img = image("interrupt")
    ids = layer_ids(img)
    with fake_in_a_thread([img], slow) as fake:
        tty = Terminal(60, "pull", "--store", store, fake.ref(img))
        tty.wait_for("a line per layer, one with bytes received", receiving(ids))
        tty.child.sendintr()
        status = tty.finish()
        lines = tty.lines()
    assert status == 130, lines
    assert lines[-1].startswith("Error: interrupted"), lines
    assert sum(line.startswith("Error:") for line in lines) == 1, lines
    assert not [line for line in lines if BAR_CHARS.search(line)], lines
    assert all(len(v) == 1 for v in layer_lines(lines, ids).values()), lines
    assert tty.screen.cursor.x == 0
    assert partials(store)  # what was received is kept, to resume


def test_a_layer_another_pypull_fetches_says_so_with_its_pid(store: Path) -> None:
    img = image("locked", layers=2)
    ids = layer_ids(img)
    lock = Store(store).blob_lock(parse_digest(img.manifests[0].layers[0].digest))
    assert lock.try_acquire()  # this process stands for the other pypull
    try:
        with fake_in_a_thread([img]) as fake:
            tty = Terminal(60, "pull", "--store", store, fake.ref(img))
            waiting = f"{ids[0]}: Waiting for another pypull (pid {os.getpid()})"
            tty.wait_for(repr(waiting), lambda lines: waiting in lines)
            lock.release()  # it gave up without storing the blob: this pull fetches it
            status = tty.finish()
            lines = tty.lines()
    finally:
        lock.release()
    assert status == 0, lines
    assert layer_lines(lines, ids) == {i: [f"{i}: Pull complete"] for i in ids}


def test_the_copy_bar_moves_while_bytes_move(store: Path) -> None:
    img = image("copy", layers=3)
    with fake_in_a_thread([img], slow) as source, fake_in_a_thread([]) as target:
        tty = Terminal(60, "copy", source.ref(img), f"{target.host}/copied/app:1")

        def bar(lines: list[str]) -> str:
            return next((line for line in lines if " images |" in line), "")

        first = bar(tty.wait_for("the copy's bar", lambda lines: "/1 images |" in bar(lines)))
        time.sleep(1)  # the acceptance's "two screenshots a second apart", not a synchronisation
        second = bar(tty.drain())
        assert second and second != first, (first, second)
        assert re.search(r"\| [\d.]+k?B sent", second), second
        status = tty.finish()
        lines = tty.lines()
    assert status == 0, lines
    screen = "".join(tty.screen.display)  # the image's line, wrapped at 60 columns
    assert f"{source.ref(img)} -> {target.host}/copied/app:1: copied (" in screen, lines
    assert not any(" images |" in line for line in lines), lines


@pytest.mark.parametrize("command", ["pull", "copy", "sync"])
def test_help_on_an_80_column_terminal_fits_it(command: str) -> None:
    # The width comes from the terminal itself here (no COLUMNS), as people run --help.
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "puller", command, "--help"],
        dimensions=(ROWS, 80),
        env=env,
        cwd=str(ROOT),
        encoding="utf-8",
        timeout=DEADLINE,
    )
    text = child.read()
    child.close()
    assert child.exitstatus == 0, text
    prose = [line for line in text.splitlines() if not line[:1].isspace()]
    assert len(prose) > 10
    assert [line for line in prose if len(line) > 80] == []
