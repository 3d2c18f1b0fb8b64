"""Benchmark: pypull against skopeo and python-dxf on the same real registry, in one run.

    python3 tests/bench/bench.py [--rounds 3] [--quick] [--baseline REV] [--cases pull,copy,sync]

Starts the real registry on loopback, pushes deterministic images (about 1 GB in 8 layers,
20 MB in 8 layers, two images sharing 5 of 8 layers), then runs each tool once per round, in
an order that turns from round to round (so drift of a noisy machine, and running first, hit
every tool alike), with no dirty pages left from the run before, and prints medians: wall time,
ratio to skopeo measured pair by pair, peak RSS, and CPU seconds of the client and of the
registry. pypull's writes are durable (fsync before rename) and timed; python-dxf's are not.
``--baseline REV`` adds pypull's rows for that git revision, run in the same rounds: whether a
change made pypull slower is read from one run, not from a table made on another day.

The ``https+auth sync`` rows (case ``tls``) sync each image into a target behind TLS from a CA
of its own and htpasswd auth, as teams run their registries, ``pypull sync --to`` against
``skopeo sync``, and check every layer at the target byte for byte afterwards.
The ``copy`` rows copy the same images registry to registry, ``pypull copy`` against ``skopeo
copy docker:// docker://``, each run into a target registry started afresh on empty storage
(their "reg CPU" is the target's). The ``sync`` rows time an unchanged sync of 10 tags (the
second of two into the same target): ``pypull sync --to``, which must only ask HEADs, against
``skopeo sync``. The ratios to skopeo are of wall time and of the client's CPU seconds, pair by
pair; the issue's targets are checked at the end.

On this VM, whatever runs first after gigabytes were written and deleted is slow for seconds
(hashing 32 MiB took 3.8 times as long right after, 1.2 times as long 10 s later: the host
still at work, unseen in /proc/stat), so a full run's copy and unpack rows are noisier than
``--cases copy,sync`` or ``--cases unpack`` alone. The pulls' files are deleted right after
their rows rather than at the round's end, which made the copy rows after them steadier.
Not part of the test suite: it takes minutes and its numbers are for reading.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import functools
import gc
import hashlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fixtures.images import Blob, Image, make_image, make_layer, make_manifest  # noqa: E402
from fixtures.registry import (  # noqa: E402
    PASSWORD,
    USER,
    Registry,
    push,
    running_registry,
    running_secure_registry,
)

MiB = 1024 * 1024
BIG_LAYERS = [512, 160, 128, 96, 64, 32, 16, 8]  # MiB: ~1 GB, one layer over half of it
SMALL_LAYERS = [6, 4, 3, 2, 2, 1, 1, 1]  # MiB: ~20 MB
SYNC_TAGS = 10
MANY_TAGS = 100
#: The issue's targets for copies and syncs: (row, what, at most).
TARGETS = [
    ("20 MB: pypull cold", "wall / skopeo's", 1.0),
    ("1 GB: pypull cold", "wall / skopeo's", 0.40),
    ("20 MB copy into a new repository: pypull", "wall / skopeo's", 1.0),
    ("20 MB copy into a new repository: pypull", "bytes uploaded", 0),
    (f"{MANY_TAGS} tags, unchanged sync: pypull", "wall / skopeo's", 0.5),
    ("start-up: pypull --version", "wall s", 0.050),
    ("1 GB copy: pypull", "wall / skopeo's", 0.80),
    ("1 GB copy: pypull", "client CPU / skopeo's", 0.40),
    ("1 GB copy: pypull", "peak RSS MB", 64),
    (f"{SYNC_TAGS} tags, unchanged sync: pypull", "wall s", 1.0),
    ("1 GB https+auth sync: pypull", "peak RSS MB", 64),
    ("1 GB unpack: pypull", "wall / umoci's", 0.30),
    ("1 GB unpack: pypull", "peak RSS MB", 64),
]

DXF_PULL = """
import sys
from dxf import DXF
host, repo, out = sys.argv[1], sys.argv[2], sys.argv[3]
d = DXF(host, repo, insecure=True)
for i, digest in enumerate(sys.argv[4:]):
    with open(f"{out}/{i}", "wb") as f:
        for chunk in d.pull_blob(digest, chunk_size=1 << 20):
            f.write(chunk)
"""

#: The floor of any asyncio client on this machine: the manifest, then each blob (three at a
#: time, as pypull), hashed and written, and nothing else: no store, no fsync, no retries, no
#: checks but the digest, the interpreter's own asyncio loop. What pypull costs above it is
#: pypull's; what this costs above skopeo is Python's start-up and asyncio's import.
ASYNCIO_FLOOR = """
import asyncio, hashlib, json, os, sys
host, repo, out = sys.argv[1], sys.argv[2], sys.argv[3]
name, port = host.rsplit(":", 1)
ACCEPT = ("application/vnd.oci.image.manifest.v1+json,"
          "application/vnd.docker.distribution.manifest.v2+json")
async def get(path):
    reader, writer = await asyncio.open_connection(name, int(port))
    writer.write(f"GET {path} HTTP/1.1\\r\\nHost: {host}\\r\\nAccept: {ACCEPT}\\r\\n"
                 "Connection: close\\r\\n\\r\\n".encode())
    head = await reader.readuntil(b"\\r\\n\\r\\n")
    assert head.split(b" ", 2)[1] == b"200", head
    return reader, writer
async def blob(digest, slots):
    async with slots:
        reader, writer = await get(f"/v2/{repo}/blobs/{digest}")
        h = hashlib.sha256()
        with open(os.path.join(out, digest[7:]), "wb") as f:
            while chunk := await reader.read(1 << 20):
                h.update(chunk)
                f.write(chunk)
        writer.close()
        assert "sha256:" + h.hexdigest() == digest
async def main():
    reader, writer = await get(f"/v2/{repo}/manifests/1")
    manifest = json.loads(await reader.read())
    writer.close()
    slots = asyncio.Semaphore(3)
    digests = [manifest["config"]["digest"], *(l["digest"] for l in manifest["layers"])]
    await asyncio.gather(*(blob(d, slots) for d in digests))
asyncio.run(main())
"""
#: A pypull row whose ratio is read beside that floor's, in the targets.
FLOORS = {"20 MB: pypull cold": "20 MB: asyncio floor"}


def image_of(name: str, sizes_mib: list[int], seed: str, shared: tuple[Blob, ...] = ()) -> Image:
    layers = list(shared) + [
        make_layer(seed, i, size * MiB)
        for i, size in enumerate(sizes_mib[len(shared) :], len(shared))
    ]
    manifest = make_manifest(layers, seed=seed)
    return Image(name, "1", manifest.media_type, manifest.raw, (manifest,))


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float
    registry_cpu: float
    uploaded: int = 0  # bytes a target registry's storage gained (the mount rows)


def registry_cpu(match: bytes = b"docker-registry") -> float:
    """CPU seconds used so far by every docker-registry process (only ours run here), or by
    those whose command line holds ``match``."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"docker-registry" not in cmdline or match not in cmdline:
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
    return total


def cpu_of(reg: Registry) -> Callable[[], float]:
    """The CPU seconds of that one registry (its command line names its own config file)."""
    config = str(reg.log_path.parent / "config.yml").encode()
    return lambda: registry_cpu(config)


#: Runs the measured command and reports its rusage. Being a fresh, small process, it keeps the
#: benchmark's own memory out of the child's peak RSS (a forked child starts with its parent's).
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_utime + usage.ru_stime, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def timed(
    argv: list[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    *,
    registry: Callable[[], float] = registry_cpu,
    expect: str | None = None,
) -> Run:
    """One run of ``argv``; ``registry`` counts the CPU seconds of the registry that matters,
    ``expect`` is a piece of output without which the run did not do what it is timed for."""
    # Each run starts with no dirty pages: python-dxf leaves 1 GB of unwritten data behind (it
    # does not fsync), and the kernel would write it out during whichever run comes next.
    os.sync()
    before = registry()
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *argv],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    wall = time.perf_counter() - start
    cpu, rss_kb, code = proc.stdout.split()[-3:]
    if int(code) != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{proc.stderr}")
    if expect is not None and expect not in proc.stdout:
        raise SystemExit(f"no {expect!r} from {' '.join(argv)}:\n{proc.stdout}{proc.stderr}")
    return Run(wall, float(cpu), int(rss_kb) / 1024, registry() - before)


def dxf_python() -> str:
    env_dir = Path(tempfile.gettempdir()) / "pypull-bench-dxf-venv"
    python = env_dir / "bin" / "python"
    if not python.exists():
        venv.create(env_dir, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "python-dxf"], check=True)
    return str(python)


CASES = ("pull", "copy", "sync", "unpack", "tls", "mount", "sync100", "startup")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a 100 MB image instead of 1 GB")
    parser.add_argument(
        "--baseline", metavar="REV", help="also run pypull as of this git revision, alongside"
    )
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"which rows, comma-separated (default: {','.join(CASES)})",
    )
    parser.add_argument(
        "--copy-jobs",
        type=int,
        default=None,
        metavar="N",
        help="pypull copy -j N, when its --help shows -j (default: none given, its own default)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="every run as it ends")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    if cases - set(CASES):
        parser.error(f"--cases: unknown {','.join(sorted(cases - set(CASES)))}")
    for tool in ("skopeo", "/usr/bin/docker-registry", "umoci"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install -y skopeo docker-registry umoci")

    big_sizes = [s // 10 or 1 for s in BIG_LAYERS] if args.quick else BIG_LAYERS
    python = sys.executable
    dxf = dxf_python() if "pull" in cases else ""
    # What pip does on install: without it, an editable checkout under PYTHONDONTWRITEBYTECODE
    # compiles every module at every start (30 ms here), which no installed pypull does.
    subprocess.run([python, "-m", "compileall", "-q", str(ROOT / "puller")], check=True)
    work = Path(tempfile.mkdtemp(prefix="pypull-bench-"))
    pypull = Pypull(python, {}, None, args.copy_jobs)
    baseline = None
    if args.baseline:
        tree = work / "baseline"
        tree.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.baseline, "puller"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        subprocess.run([python, "-m", "compileall", "-q", str(tree)], check=True)
        # Run from its own directory: ``python -m`` puts the current directory first on the path.
        baseline = (args.baseline, Pypull(python, {"PYTHONPATH": str(tree)}, tree, args.copy_jobs))
    big_label = "100 MB" if args.quick else "1 GB"
    try:
        with running_registry(work / "registry") as reg:
            print(f"generating and pushing images to {reg.url} ...", flush=True)
            # Only names and digests are kept: a child forked from a parent holding a gigabyte
            # of layers would report the parent's memory as its own peak RSS.
            big = pushed(reg, image_of("bench/big", big_sizes, "bench-big"))
            small = pushed(reg, image_of("bench/small", SMALL_LAYERS, "bench-small"))
            base = tuple(make_layer("bench-shared", i, 2 * MiB) for i in range(5))
            first = pushed(reg, image_of("bench/first", [2] * 8, "bench-first", base))
            second = pushed(reg, image_of("bench/second", [2] * 8, "bench-second", base))
            del base
            if "sync" in cases:
                for tag in range(1, SYNC_TAGS + 1):
                    tagged = make_image("bench/sync", str(tag), layers=3, layer_size=256 << 10)
                    push(reg.url, tagged)
            if "sync100" in cases:
                for tag in range(1, MANY_TAGS + 1):
                    tagged = make_image("bench/many", str(tag), layers=2, layer_size=16 << 10)
                    push(reg.url, tagged)
            gc.collect()
            bench = Bench(reg, pypull, baseline, args.verbose)
            for rnd in range(args.rounds):
                print(f"round {rnd + 1}/{args.rounds}", flush=True)
                where = work / f"r{rnd}"
                for label, image in ((big_label, big), ("20 MB", small)):
                    if "pull" in cases:
                        one_round(bench, label, image, where, dxf, rnd)
                    if "copy" in cases:
                        copy_round(bench, label, image, where, rnd)
                    if "tls" in cases:
                        tls_round(bench, label, image, where, rnd)
                if "sync" in cases:
                    sync_round(bench, where, rnd)
                if "sync100" in cases:
                    sync_round(bench, where, rnd, "bench/many", MANY_TAGS)
                if "mount" in cases:
                    mount_round(bench, "20 MB", small, where, rnd)
                if "startup" in cases:
                    startup_round(bench, rnd)
                if "unpack" in cases:
                    unpack_round(bench, big_label, big, where, rnd)
                if "pull" in cases:
                    store = str(where / "shared")
                    pypull.timed("-q", "--store", store, f"{reg.host}/{first.repository}:1")
                    bench.rows.setdefault("shared: pypull 2nd image", []).append(
                        pypull.timed(
                            "-q",
                            "--store",
                            store,
                            f"{reg.host}/{second.repository}:1",
                            registry=cpu_of(reg),
                        )
                    )
                shutil.rmtree(where, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(bench.rows, bench.ratios)
    # Another busy process on the machine slows every tool, but not alike: say so.
    print(f"\nload average at the end (1, 5, 15 min): {os.getloadavg()}")
    check_targets(bench.rows, bench.ratios)
    return 0


@dataclass(frozen=True)
class Pypull:
    """How to run one pypull: this checkout's, or a baseline's from its own tree."""

    python: str
    env: dict[str, str]
    cwd: Path | None
    copy_jobs: int | None

    def argv(self, *args: str) -> list[str]:
        return [self.python, "-m", "puller", *args]

    def timed(
        self,
        *args: str,
        registry: Callable[[], float] = registry_cpu,
        expect: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Run:
        env = {**self.env, **(env or {})}
        return timed(self.argv(*args), env, self.cwd, registry=registry, expect=expect)

    @functools.cached_property
    def copy_options(self) -> list[str]:
        """``-j N`` when asked for and this pypull's copy takes it (blobs at once), else
        nothing: its own default."""
        if self.copy_jobs is None:
            return []
        done = subprocess.run(
            self.argv("copy", "--help"),
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **self.env},
            cwd=self.cwd,
        )
        return ["-j", str(self.copy_jobs)] if re.search(r"(^|\s)-j\b", done.stdout) else []


@dataclass
class Bench:
    """What the rounds share: the source registry, the pypulls, and the rows so far."""

    reg: Registry
    pypull: Pypull
    baseline: tuple[str, Pypull] | None
    verbose: bool = False
    rows: dict[str, list[Run]] = field(default_factory=dict)
    #: Per row, per round: (wall time, client CPU seconds) over skopeo's in the same round.
    ratios: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def record(self, label: str, got: dict[str, Run], skopeo: str) -> None:
        """One round's runs as rows, with their ratios to skopeo's run ``got[skopeo]``."""
        for name, run in got.items():
            if self.verbose:
                print(
                    f"  {label}: {name}: {run.wall:.2f} s, {run.cpu:.2f} CPU s,"
                    f" {run.rss_mb:.0f} MB, registry {run.registry_cpu:.2f} CPU s",
                    flush=True,
                )
            self.rows.setdefault(f"{label}: {name}", []).append(run)
            self.ratios.setdefault(f"{label}: {name}", []).append(
                (run.wall / got[skopeo].wall, run.cpu / got[skopeo].cpu)
            )


@dataclass(frozen=True)
class Pushed:
    repository: str
    layers: tuple[str, ...]


def pushed(reg: Registry, image: Image) -> Pushed:
    push(reg.url, image)
    return Pushed(image.repository, tuple(layer.digest for layer in image.manifests[0].layers))


def one_round(bench: Bench, label: str, image: Pushed, work: Path, dxf: str, rnd: int) -> None:
    """Each tool once; the order turns round by round, so no tool always runs first."""
    reg, python, baseline = bench.reg, bench.pypull.python, bench.baseline
    # The source registry's own CPU: other docker-registry processes on the machine (a test
    # suite's) are none of this run's business.
    measured = functools.partial(timed, registry=cpu_of(reg))
    work.mkdir(parents=True, exist_ok=True)  # skopeo wants its destination's parent to exist
    ref = f"{reg.host}/{image.repository}:1"
    store = work / label.replace(" ", "") / "store"
    runs: dict[str, Callable[[], Run]] = {
        "pypull cold": lambda: measured([python, "-m", "puller", "-q", "--store", str(store), ref]),
        "pypull up to date": lambda: measured(
            [python, "-m", "puller", "-q", "--store", str(store), ref]
        ),
        "skopeo copy": lambda: measured(
            [
                "skopeo",
                "copy",
                "-q",
                "--src-tls-verify=false",
                f"docker://{ref}",
                f"oci:{work}/{label.replace(' ', '')}-skopeo:x",
            ]
        ),
        "python-dxf 1 MiB": lambda: measured(
            [
                dxf,
                "-c",
                DXF_PULL,
                reg.host,
                image.repository,
                str(mkdir(work / f"{label.replace(' ', '')}-dxf")),
                *image.layers,
            ]
        ),
    }
    if label == "20 MB":
        runs["asyncio floor"] = lambda: measured(
            [
                python,
                "-c",
                ASYNCIO_FLOOR,
                reg.host,
                image.repository,
                str(mkdir(work / f"{label.replace(' ', '')}-floor")),
            ]
        )
    # pypull's asyncio-loop run: what uvloop (used when installed) is worth, on the big image.
    asyncio_store = work / label.replace(" ", "") / "store-asyncio"
    if label != "20 MB":
        runs["pypull cold, asyncio loop"] = lambda: measured(
            [python, "-m", "puller", "-q", "--store", str(asyncio_store), ref],
            env={"PYPULL_EVENT_LOOP": "asyncio"},
        )
    if baseline is not None:
        rev, old = baseline
        old_store = work / label.replace(" ", "") / "store-baseline"
        old_args = ["-q", "--store", str(old_store), ref]
        runs[f"pypull cold @{rev}"] = lambda: old.timed(*old_args, registry=cpu_of(reg))
        runs[f"pypull up to date @{rev}"] = lambda: old.timed(*old_args, registry=cpu_of(reg))
    # Units keep pypull's up-to-date run right after its cold one.
    units = [
        ["pypull cold", "pypull up to date"],
        *([name] for name in runs if "pypull" not in name),
    ]
    if baseline is not None:
        units.append([f"pypull cold @{baseline[0]}", f"pypull up to date @{baseline[0]}"])
    units += [[name] for name in runs if name.startswith("pypull cold, ")]
    bench.record(label, in_turns(runs, units, rnd), "skopeo copy")
    # What the pulls wrote goes now, not at the round's end: it is not kept for the copy and
    # unpack rows that follow.
    for name in os.listdir(work):
        if name.startswith(label.replace(" ", "")):
            shutil.rmtree(work / name, ignore_errors=True)
    os.sync()


def in_turns(
    runs: dict[str, Callable[[], Run]], units: list[list[str]], rnd: int
) -> dict[str, Run]:
    """Every run once, unit by unit, starting at a unit that turns round by round; the results
    in the order of ``runs`` (rows in a fixed order)."""
    turn = rnd % len(units)
    got: dict[str, Run] = {}
    for unit in units[turn:] + units[:turn]:
        for name in unit:
            got[name] = runs[name]()
    return {name: got[name] for name in runs}


@contextlib.contextmanager
def fresh_registry(storage: Path) -> Iterator[Registry]:
    """A target registry started on empty storage, removed after."""
    shutil.rmtree(storage, ignore_errors=True)
    try:
        with running_registry(storage) as reg:
            yield reg
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def copy_round(bench: Bench, label: str, image: Pushed, work: Path, rnd: int) -> None:
    """Registry to registry: each tool once into a target registry of its own, started on
    empty storage (its start is not timed); the order turns round by round."""
    source = f"{bench.reg.host}/{image.repository}:1"

    def into_fresh(copy: Callable[[str, Registry], Run]) -> Callable[[], Run]:
        def run() -> Run:
            with fresh_registry(work / "target") as target:
                return copy(f"{target.host}/{image.repository}:1", target)

        return run

    def pypull_copy(tool: Pypull) -> Callable[[], Run]:
        return into_fresh(
            lambda dest, target: tool.timed(
                "copy", *tool.copy_options, source, dest, registry=cpu_of(target), expect="copied"
            )
        )

    runs: dict[str, Callable[[], Run]] = {
        "pypull": pypull_copy(bench.pypull),
        "skopeo": into_fresh(
            lambda dest, target: timed(
                [
                    "skopeo",
                    "copy",
                    "-q",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                    f"docker://{source}",
                    f"docker://{dest}",
                ],
                registry=cpu_of(target),
            )
        ),
    }
    if bench.baseline is not None:
        rev, old = bench.baseline
        runs[f"pypull @{rev}"] = pypull_copy(old)
    bench.record(f"{label} copy", in_turns(runs, [[name] for name in runs], rnd), "skopeo")


def sync_round(
    bench: Bench, work: Path, rnd: int, repository: str = "bench/sync", tags: int = SYNC_TAGS
) -> None:
    """The second of two syncs of the source's ``repository`` tags into a fresh target: nothing
    has changed, so pypull must only ask HEADs. skopeo sync does the same work its way."""
    reg, pypull = bench.reg, bench.pypull
    images = [f"{reg.host}/{repository}:{tag}" for tag in range(1, tags + 1)]

    def pypull_sync() -> Run:
        with fresh_registry(work / "target") as target:
            argv = ["sync", "--to", f"{target.host}/mirror", *images]
            pypull.timed(*argv, expect=f"{tags} images: {tags} copied")
            return pypull.timed(
                *argv, registry=cpu_of(target), expect=f"{tags} images: {tags} up to date"
            )

    def skopeo_sync() -> Run:
        with fresh_registry(work / "target") as target:
            argv = [
                "skopeo",
                "sync",
                "--src",
                "docker",
                "--dest",
                "docker",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                f"{reg.host}/{repository}",
                f"{target.host}/mirror",
            ]
            timed(argv)
            return timed(argv, registry=cpu_of(target))

    runs = {"pypull": pypull_sync, "skopeo sync": skopeo_sync}
    got = in_turns(runs, [[name] for name in runs], rnd)
    bench.record(f"{tags} tags, unchanged sync", got, "skopeo sync")


def mount_round(bench: Bench, label: str, image: Pushed, work: Path, rnd: int) -> None:
    """A copy into a new repository of a registry that already holds the image's layers in
    another one, put there by an earlier run of the same tool (not timed), whose record (pypull's
    ``.pypull/blobinfo.db``, skopeo's blob-info cache) says where: each tool into a target
    started afresh. pypull must upload nothing; "uploaded" counts the layers' bytes the target's
    storage gained in the timed run (the registry keeps one copy of a blob, so a mount adds
    none and an upload adds its size once)."""
    source = f"{bench.reg.host}/{image.repository}:1"

    def held_elsewhere(copy: Callable[[str], Run]) -> Callable[[], Run]:
        def run() -> Run:
            shutil.rmtree(work / "mount-store", ignore_errors=True)
            with fresh_registry(work / "target") as target:
                copy(f"{target.host}/earlier/run:1")
                before = stored_bytes(target)
                done = copy(f"{target.host}/new{rnd}/repository:1")
                return dataclasses.replace(done, uploaded=stored_bytes(target) - before)

        return run

    def pypull(tool: Pypull) -> Callable[[str], Run]:
        env = {"PYPULL_STORE": str(work / "mount-store")}
        return lambda dest: tool.timed("copy", source, dest, expect="copied", env=env)

    def skopeo(dest: str) -> Run:
        flags = ["--src-tls-verify=false", "--dest-tls-verify=false"]
        return timed(["skopeo", "copy", "-q", *flags, f"docker://{source}", f"docker://{dest}"])

    runs: dict[str, Callable[[], Run]] = {
        "pypull": held_elsewhere(pypull(bench.pypull)),
        "skopeo": held_elsewhere(skopeo),
    }
    if bench.baseline is not None:
        rev, old = bench.baseline
        runs[f"pypull @{rev}"] = held_elsewhere(pypull(old))
    got = in_turns(runs, [[name] for name in runs], rnd)
    bench.record(f"{label} copy into a new repository", got, "skopeo")


def stored_bytes(reg: Registry) -> int:
    """The bytes of every blob a registry's storage holds."""
    blobs = reg.storage / "docker" / "registry" / "v2" / "blobs"
    return sum(p.stat().st_size for p in blobs.rglob("data") if p.is_file())


def startup_round(bench: Bench, rnd: int) -> None:
    """``pypull --version`` against ``python -c pass``: what the command costs before it does
    anything. Timed without the launcher (whose own start would double the figure)."""

    def quick(argv: list[str], env: dict[str, str], cwd: Path | None) -> Callable[[], Run]:
        def run() -> Run:
            cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(
                argv, env={**os.environ, **env}, cwd=cwd, check=True, capture_output=True
            )
            wall = time.perf_counter() - start
            now = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = now.ru_utime + now.ru_stime - cpu.ru_utime - cpu.ru_stime
            return Run(wall, used, 0.0, 0.0)

        return run

    python, tool = bench.pypull.python, bench.pypull
    runs: dict[str, Callable[[], Run]] = {
        "pypull --version": quick(tool.argv("--version"), tool.env, tool.cwd),
        "python -c pass": quick([python, "-c", "pass"], {}, None),
    }
    if bench.baseline is not None:
        rev, old = bench.baseline
        runs[f"pypull --version @{rev}"] = quick(old.argv("--version"), old.env, old.cwd)
    for _ in range(5):  # a few, as each is short
        got = in_turns(runs, [[name] for name in runs], rnd)
        bench.record("start-up", got, "python -c pass")


def tls_round(bench: Bench, label: str, image: Pushed, work: Path, rnd: int) -> None:
    """Into a registry as teams run one: HTTPS from a CA of its own and htpasswd auth, started
    afresh for each tool. ``pypull sync --to`` (trusting the CA through config.toml, logged in
    through config.json) against ``skopeo sync`` (--dest-cert-dir, --dest-creds); after each
    run, every layer at the target is hashed against its digest (not timed)."""
    source = f"{bench.reg.host}/{image.repository}:1"

    def into_secure(sync: Callable[[Registry, Path, Path], Run]) -> Callable[[], Run]:
        def run() -> Run:
            where = work / "secure"
            shutil.rmtree(where, ignore_errors=True)
            where.mkdir(parents=True)
            try:
                with running_secure_registry(where) as (target, ca):
                    done = sync(target, ca, where)
                    for digest in image.layers:
                        check_blob(target.blob_data_path(digest), digest)
                    return done
            finally:
                shutil.rmtree(where, ignore_errors=True)

        return run

    def pypull_sync(tool: Pypull) -> Callable[[], Run]:
        def sync(target: Registry, ca: Path, where: Path) -> Run:
            config = where / "config.toml"
            config.write_text(
                f'[registry."{target.host}"]\nserver = "https://{target.host}"\nca_file = "{ca}"\n'
            )
            docker = mkdir(where / "docker")
            auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            logins = {"auths": {target.host: {"auth": auth}}}
            (docker / "config.json").write_text(json.dumps(logins))
            env = {"PYPULL_CONFIG": str(config), "DOCKER_CONFIG": str(docker)}
            argv = ["sync", *tool.copy_options, "--to", f"{target.host}/mirror", source]
            return tool.timed(*argv, registry=cpu_of(target), expect="1 copied", env=env)

        return into_secure(sync)

    def skopeo_sync(target: Registry, ca: Path, where: Path) -> Run:
        certs = mkdir(where / "certs")
        shutil.copy(ca, certs / "ca.crt")
        argv = [
            "skopeo", "sync", "--src", "docker", "--dest", "docker", "--src-tls-verify=false",
            "--dest-cert-dir", str(certs), "--dest-creds", f"{USER}:{PASSWORD}",
            source, f"{target.host}/mirror",
        ]  # fmt: skip
        return timed(argv, registry=cpu_of(target))

    runs: dict[str, Callable[[], Run]] = {
        "pypull": pypull_sync(bench.pypull),
        "skopeo sync": into_secure(skopeo_sync),
    }
    if bench.baseline is not None:
        rev, old = bench.baseline
        runs[f"pypull @{rev}"] = pypull_sync(old)
    got = in_turns(runs, [[name] for name in runs], rnd)
    bench.record(f"{label} https+auth sync", got, "skopeo sync")


def check_blob(path: Path, digest: str) -> None:
    """The target keeps exactly the bytes of ``digest``: else the run did not do its job."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while piece := f.read(4 * MiB):
            h.update(piece)
    if "sha256:" + h.hexdigest() != digest:
        raise SystemExit(f"{path} does not hash to {digest}")


def unpack_round(bench: Bench, label: str, image: Pushed, work: Path, rnd: int) -> None:
    """The image pulled into a store (not timed), then unpacked from it by each tool into a new
    directory; the order turns round by round. Ratios are to umoci's run."""
    ref = f"{bench.reg.host}/{image.repository}:1"
    store = work / "unpack-store"
    bench.pypull.timed("-q", "--store", str(store), ref)
    out = work / "unpacked"

    def fresh(run: Callable[[Path], Run]) -> Callable[[], Run]:
        def go() -> Run:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            try:
                return run(out)
            finally:
                shutil.rmtree(out, ignore_errors=True)

        return go

    runs: dict[str, Callable[[], Run]] = {
        "pypull": fresh(
            lambda o: bench.pypull.timed(
                "unpack", "--store", str(store), ref, str(o / "rootfs"), expect="Unpacked"
            )
        ),
        "umoci --rootless": fresh(
            lambda o: timed(
                ["umoci", "unpack", "--rootless", "--image", f"{store}:{ref}", str(o / "bundle")]
            )
        ),
    }
    if bench.baseline is not None:
        rev, old = bench.baseline
        runs[f"pypull @{rev}"] = fresh(
            lambda o: old.timed("unpack", "--store", str(store), ref, str(o / "rootfs"))
        )
    got = in_turns(runs, [[name] for name in runs], rnd)
    bench.record(f"{label} unpack", got, "umoci --rootless")


def mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def report(rows: dict[str, list[Run]], ratios: dict[str, list[tuple[float, float]]]) -> None:
    head = (
        f"{'case':<52} {'wall s':>7} {'/ref':>8} {'RSS MB':>7} {'CPU s':>6} {'CPU/ref':>7}"
        f" {'reg CPU':>8}"
    )
    print()
    print("/ref, CPU/ref: over skopeo's run in the same round (the unpack rows: over umoci's)")
    print(head)
    print("-" * len(head))
    for name, runs in rows.items():
        wall, cpu = (
            (f"{statistics.median(r[i] for r in ratios[name]):.2f}" for i in (0, 1))
            if name in ratios
            else ("-", "-")
        )
        print(
            f"{name:<52} {statistics.median(r.wall for r in runs):>7.2f} {wall:>8} "
            f"{max(r.rss_mb for r in runs):>7.0f} {statistics.median(r.cpu for r in runs):>6.2f} "
            f"{cpu:>7} {statistics.median(r.registry_cpu for r in runs):>8.2f}"
        )


def check_targets(rows: dict[str, list[Run]], ratios: dict[str, list[tuple[float, float]]]) -> None:
    """The issue's targets for the rows this run has: median ratios, median wall, peak RSS."""
    lines = []
    for name, what, limit in TARGETS:
        if name not in rows:
            continue
        if what in ("wall / skopeo's", "wall / umoci's"):
            got = statistics.median(r[0] for r in ratios[name])
        elif what == "client CPU / skopeo's":
            got = statistics.median(r[1] for r in ratios[name])
        elif what == "peak RSS MB":
            got = max(r.rss_mb for r in rows[name])
        elif what == "bytes uploaded":
            got = max(r.uploaded for r in rows[name])
        else:
            got = statistics.median(r.wall for r in rows[name])
        verdict = "met" if got <= limit else "MISSED"
        floor = FLOORS.get(name)
        if floor in ratios and what == "wall / skopeo's":
            least = statistics.median(r[0] for r in ratios[floor])
            verdict += f" (a bare asyncio client's: {least:.2f})"
        lines.append(f"{name}: {what} {got:.2f} (at most {limit}): {verdict}")
    if lines:
        print()
        print("targets:")
        print("\n".join(f"  {line}" for line in lines))


if __name__ == "__main__":
    sys.exit(main())
