"""The per-phase timeline of one pypull run, for finding what is serial on a small pull's path.

    python3 tests/bench/timeline.py [--runs N] [--baseline DIR] -- ARGS...

Runs ``pypull ARGS`` (e.g. ``-q --store /tmp/s 127.0.0.1:5000/bench/small:1``) in this process
with the registry client's requests, blob commits, the index write and the start of the event
loop timed, from the moment this script starts (Python's own start-up, the same for every run,
comes before it). With ``--runs N`` the store given by ``--store`` is deleted before each run
and the median of each phase is printed; ``--baseline DIR`` (a tree holding another revision's
``puller/``, as ``git archive REV puller | tar -x -C DIR`` makes) runs that one alongside.
Not a test: a tool for reading where the time goes.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PHASES = (
    "event loop started (imports, options, config)",
    "manifest request sent",
    "manifest answered",
    "first blob GET sent",
    "first blob answered",
    "last blob answered",
    "last blob committed (verified, fsynced, renamed)",
    "index written",
    "exit",
)


def traced(args: list[str]) -> dict[str, float]:
    """Run pypull ``args`` here, timed; the phases' times in ms from this call's start."""
    start = time.perf_counter()
    events: list[tuple[float, str]] = []

    def mark(what: str) -> None:
        events.append(((time.perf_counter() - start) * 1000, what))

    import puller.cli.common as common
    import puller.registry.client as client
    import puller.store.blobs as blobs
    import puller.store.layout as layout

    send = client.RegistryClient._send

    async def timed_send(self: Any, endpoint: Any, url: str, headers: Any, **kw: Any) -> Any:
        kind = "manifest" if "/manifests/" in url else "blob" if "/blobs/" in url else "other"
        mark(f"> {kind}")
        resp = await send(self, endpoint, url, headers, **kw)
        mark(f"< {kind}")
        return resp

    def after(method: Callable[..., Any], what: str) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(*a: Any, **kw: Any) -> Any:
            try:
                return method(*a, **kw)
            finally:
                mark(what)

        return wrapper

    run_async = common.run_async

    def timed_run_async(*a: Any, **kw: Any) -> Any:
        mark("loop")
        return run_async(*a, **kw)

    client.RegistryClient._send = timed_send  # type: ignore[method-assign]
    blobs.BlobWriter.commit = after(blobs.BlobWriter.commit, "commit")  # type: ignore[method-assign]
    layout.Store.tag = after(layout.Store.tag, "tag")  # type: ignore[method-assign]
    common.run_async = timed_run_async
    from puller.cli import main, pull

    pull.run_async = timed_run_async  # type: ignore[attr-defined]  # bound by name in the command
    main.main(args)
    mark("exit")

    def first(what: str) -> float:
        return next((t for t, w in events if w == what), float("nan"))

    def last(what: str) -> float:
        return max((t for t, w in events if w == what), default=float("nan"))

    got = (
        first("loop"),
        first("> manifest"),
        first("< manifest"),
        first("> blob"),
        first("< blob"),
        last("< blob"),
        last("commit"),
        last("tag"),
        last("exit"),
    )
    return dict(zip(PHASES, got, strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--baseline", metavar="DIR", help="a tree with another puller/ in it")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="+")
    opts = parser.parse_args()
    if opts.child:
        print(json.dumps(traced(opts.args)))
        return 0
    store = opts.args[opts.args.index("--store") + 1] if "--store" in opts.args else None
    trees = {"this tree": str(ROOT)}
    if opts.baseline:
        trees["baseline"] = opts.baseline
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(opts.runs):
        for name, tree in trees.items():
            if store is not None:
                shutil.rmtree(store, ignore_errors=True)
            os.sync()
            env = {**os.environ, "PYTHONPATH": tree}
            argv = [sys.executable, __file__, "--child", "--", *opts.args]
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
            results[name].append(json.loads(done.stdout.splitlines()[-1]))
    print(f"{'phase (ms from the script start, medians)':<52}" + "".join(f"{n:>12}" for n in trees))
    for phase in PHASES:
        row = [statistics.median(r[phase] for r in results[name]) for name in trees]
        print(f"{phase:<52}" + "".join(f"{v:>12.0f}" for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
