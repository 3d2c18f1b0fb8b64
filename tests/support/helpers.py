"""Helpers shared by the end-to-end tests: run the real command, read the registry's access log."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path

from fixtures.registry import PASSWORD, USER, Registry
from tests.support.jsonlines import check_run

_REQUEST = re.compile(r'"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP/[\d.]+" (\d+) (\d+|-)')
_BLOB = re.compile(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})$")


def run_pypull(
    *args: str | Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m puller ARGS`` as a user runs it: not a terminal, no stdin; no ``PYPULL_*``
    variables but those in ``env``. The stdout of a ``--format json`` run is checked against
    the README's schema (``jsonlines.check_run``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPULL_")} | (env or {})
    run = subprocess.run(
        [sys.executable, "-m", "puller", *map(str, args)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        timeout=timeout,
    )
    check_run([str(a) for a in args], run.stdout)  # --format json: each line as the README says
    return run


class AccessLog:
    """The requests the real registry logged from the moment this object was made."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.offset = registry.log_path.stat().st_size

    def requests(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request since creation, in log order."""
        return [(method, path) for method, path, _, _ in self.entries()]

    def entries(self) -> list[tuple[str, str, int, int]]:
        """``(method, path, status, bytes sent)`` of every request since creation, in log order.

        The registry writes a log line after it answers, so a sentinel request marks the end: once
        its line is in the log, every earlier answer's line is too.
        """
        sentinel = uuid.uuid4().hex
        try:
            with urllib.request.urlopen(f"{self.registry.url}/v2/?sentinel={sentinel}") as resp:
                resp.read()
        except urllib.error.HTTPError as e:  # a registry that wants credentials logs it too
            e.close()
        for _ in range(500):  # bounded: 5 s at most for the registry to flush a line
            with self.registry.log_path.open("rb") as f:
                f.seek(self.offset)
                text = f.read().decode(errors="replace")
            if sentinel in text:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("the registry did not log the sentinel request")
        out: list[tuple[str, str, int, int]] = []
        for line in text.splitlines():
            m = _REQUEST.search(line)
            if m and sentinel not in m.group(2):
                size = int(m.group(4)) if m.group(4).isdigit() else 0
                out.append((m.group(1), m.group(2), int(m.group(3)), size))
        return out

    def blob_requests(self) -> list[str]:
        """Digests of the blob GETs since creation."""
        return [
            m.group(1)
            for method, path in self.requests()
            if method == "GET" and (m := _BLOB.match(path.split("?")[0]))
        ]


def partials(store: Path) -> set[str]:
    """Digests of the resumable partial downloads a store keeps; nothing else may be there
    (a lock file left behind would mean a lock was never released)."""
    ingest = store / ".pypull" / "ingest"
    if not ingest.exists():
        return set()
    names = {p.name for p in ingest.iterdir()}
    stray = {n for n in names if not (n.startswith("sha256-") and n.endswith(".partial"))}
    assert not stray, f"unexpected files in {ingest}: {sorted(stray)}"
    return {"sha256:" + n[len("sha256-") : -len(".partial")] for n in names}


def refs(store: Path) -> list[str]:
    """The references index.json names (none when the store has no index.json)."""
    index = store / "index.json"
    if not index.exists():
        return []
    doc = json.loads(index.read_text())
    return [m["annotations"]["org.opencontainers.image.ref.name"] for m in doc["manifests"]]


def on_a_terminal(*args: str | Path) -> str:
    """What ``python -m puller ARGS`` shows on a 160-column terminal (a pty); its exit status
    must be 0."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "puller", *map(str, args)],
        stdout=child,
        stderr=child,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "160"},
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    assert proc.wait() == 0
    return b"".join(chunks).decode(errors="replace")


def umoci_unpack(image: str, bundle: Path, *, prefix: Sequence[str] = ()) -> Path:
    """``umoci unpack --rootless --image IMAGE BUNDLE`` (IMAGE is ``LAYOUT:REF``), run after
    ``prefix`` (another user's, say); it must succeed. The bundle's rootfs."""
    argv = [*prefix, "umoci", "unpack", "--rootless", "--image", image, str(bundle)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return bundle / "rootfs"


def raw(registry: Registry, name: str, *, creds: bool = False) -> bytes:
    """What ``skopeo inspect --raw`` reads at ``registry``/``name``."""
    argv = ["skopeo", "inspect", "--raw", "--tls-verify=false"]
    if creds:
        argv += ["--creds", f"{USER}:{PASSWORD}"]
    done = subprocess.run(
        [*argv, f"docker://{registry.host}/{name}"], capture_output=True, check=True, timeout=60
    )
    return done.stdout
