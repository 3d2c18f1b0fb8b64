"""Benchmark: pypull against skopeo and python-dxf on the same real registry, in one run.

    python3 tests/bench/bench.py [--rounds 3] [--quick] [--baseline REV]

Starts the real registry on loopback, pushes deterministic images (about 1 GB in 8 layers,
20 MB in 8 layers, two images sharing 5 of 8 layers), then runs each tool once per round, in
an order that turns from round to round (so drift of a noisy machine, and running first, hit
every tool alike), with no dirty pages left from the run before, and prints medians: wall time,
ratio to skopeo measured pair by pair, peak RSS, and CPU seconds of the client and of the
registry. pypull's writes are durable (fsync before rename) and timed; python-dxf's are not.
``--baseline REV`` adds pypull's rows for that git revision, run in the same rounds: whether a
change made pypull slower is read from one run, not from a table made on another day.
Not part of the test suite: it takes minutes and its numbers are for reading.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fixtures.images import Blob, Image, make_layer, make_manifest  # noqa: E402
from fixtures.registry import Registry, push, running_registry  # noqa: E402

MiB = 1024 * 1024
BIG_LAYERS = [512, 160, 128, 96, 64, 32, 16, 8]  # MiB: ~1 GB, one layer over half of it
SMALL_LAYERS = [6, 4, 3, 2, 2, 1, 1, 1]  # MiB: ~20 MB

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


def registry_cpu() -> float:
    """CPU seconds used so far by every docker-registry process (only ours run here)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"docker-registry" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
    return total


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


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    # Each run starts with no dirty pages: python-dxf leaves 1 GB of unwritten data behind (it
    # does not fsync), and the kernel would write it out during whichever run comes next.
    os.sync()
    before = registry_cpu()
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
    return Run(wall, float(cpu), int(rss_kb) / 1024, registry_cpu() - before)


def dxf_python() -> str:
    env_dir = Path(tempfile.gettempdir()) / "pypull-bench-dxf-venv"
    python = env_dir / "bin" / "python"
    if not python.exists():
        venv.create(env_dir, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "python-dxf"], check=True)
    return str(python)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a 100 MB image instead of 1 GB")
    parser.add_argument(
        "--baseline", metavar="REV", help="also run pypull as of this git revision, alongside"
    )
    args = parser.parse_args()
    for tool in ("skopeo", "/usr/bin/docker-registry"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install -y skopeo docker-registry")

    big_sizes = [s // 10 or 1 for s in BIG_LAYERS] if args.quick else BIG_LAYERS
    python = sys.executable
    dxf = dxf_python()
    # What pip does on install: without it, an editable checkout under PYTHONDONTWRITEBYTECODE
    # compiles every module at every start (30 ms here), which no installed pypull does.
    subprocess.run([python, "-m", "compileall", "-q", str(ROOT / "puller")], check=True)
    work = Path(tempfile.mkdtemp(prefix="pypull-bench-"))
    baseline = None
    if args.baseline:
        baseline = (args.baseline, work / "baseline")
        baseline[1].mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.baseline, "puller"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(baseline[1])], input=archive, check=True)
        subprocess.run([python, "-m", "compileall", "-q", str(baseline[1])], check=True)
    rows: dict[str, list[Run]] = {}
    ratios: dict[str, list[float]] = {}
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
            gc.collect()
            for rnd in range(args.rounds):
                print(f"round {rnd + 1}/{args.rounds}", flush=True)
                for label, image in (("100 MB" if args.quick else "1 GB", big), ("20 MB", small)):
                    where = work / f"r{rnd}"
                    one_round(label, image, reg, where, python, dxf, rows, ratios, rnd, baseline)
                store = work / f"r{rnd}" / "shared"
                ref = f"{reg.host}/{first.repository}:1"
                timed([python, "-m", "puller", "-q", "--store", str(store), ref])
                rows.setdefault("shared: pypull 2nd image", []).append(
                    timed(
                        [
                            python,
                            "-m",
                            "puller",
                            "-q",
                            "--store",
                            str(store),
                            f"{reg.host}/{second.repository}:1",
                        ]
                    )
                )
                shutil.rmtree(work / f"r{rnd}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(rows, ratios)
    return 0


@dataclass(frozen=True)
class Pushed:
    repository: str
    layers: tuple[str, ...]


def pushed(reg: Registry, image: Image) -> Pushed:
    push(reg.url, image)
    return Pushed(image.repository, tuple(layer.digest for layer in image.manifests[0].layers))


def one_round(
    label: str,
    image: Pushed,
    reg: Registry,
    work: Path,
    python: str,
    dxf: str,
    rows: dict[str, list[Run]],
    ratios: dict[str, list[float]],
    rnd: int,
    baseline: tuple[str, Path] | None = None,
) -> None:
    """Each tool once; the order turns round by round, so no tool always runs first."""
    work.mkdir(parents=True, exist_ok=True)  # skopeo wants its destination's parent to exist
    ref = f"{reg.host}/{image.repository}:1"
    store = work / label.replace(" ", "") / "store"
    runs: dict[str, Callable[[], Run]] = {
        "pypull cold": lambda: timed([python, "-m", "puller", "-q", "--store", str(store), ref]),
        "pypull up to date": lambda: timed(
            [python, "-m", "puller", "-q", "--store", str(store), ref]
        ),
        "skopeo copy": lambda: timed(
            [
                "skopeo",
                "copy",
                "-q",
                "--src-tls-verify=false",
                f"docker://{ref}",
                f"oci:{work}/{label.replace(' ', '')}-skopeo:x",
            ]
        ),
        "python-dxf 1 MiB": lambda: timed(
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
    # pypull's asyncio-loop run: what uvloop (used when installed) is worth, on the big image.
    asyncio_store = work / label.replace(" ", "") / "store-asyncio"
    if label != "20 MB":
        runs["pypull cold, asyncio loop"] = lambda: timed(
            [python, "-m", "puller", "-q", "--store", str(asyncio_store), ref],
            env={"PYPULL_EVENT_LOOP": "asyncio"},
        )
    if baseline is not None:
        # Run from its own directory: ``python -m`` puts the current directory first on the path.
        rev, tree = baseline
        old_store = work / label.replace(" ", "") / "store-baseline"
        old_argv = [python, "-m", "puller", "-q", "--store", str(old_store), ref]
        old_env = {"PYTHONPATH": str(tree)}
        runs[f"pypull cold @{rev}"] = lambda: timed(old_argv, old_env, tree)
        runs[f"pypull up to date @{rev}"] = lambda: timed(old_argv, old_env, tree)
    # Units keep pypull's up-to-date run right after its cold one.
    units = [
        ["pypull cold", "pypull up to date"],
        *([name] for name in runs if "pypull" not in name),
    ]
    if baseline is not None:
        units.append([f"pypull cold @{baseline[0]}", f"pypull up to date @{baseline[0]}"])
    units += [[name] for name in runs if name.startswith("pypull cold, ")]
    turn = rnd % len(units)
    got: dict[str, Run] = {}
    for unit in units[turn:] + units[:turn]:
        for name in unit:
            got[name] = runs[name]()
    got = {name: got[name] for name in runs}  # rows in a fixed order
    for name, run in got.items():
        rows.setdefault(f"{label}: {name}", []).append(run)
        ratios.setdefault(f"{label}: {name}", []).append(run.wall / got["skopeo copy"].wall)


def mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def report(rows: dict[str, list[Run]], ratios: dict[str, list[float]]) -> None:
    head = f"{'case':<34} {'wall s':>8} {'/skopeo':>8} {'RSS MB':>8} {'CPU s':>7} {'reg CPU':>8}"
    print()
    print(head)
    print("-" * len(head))
    for name, runs in rows.items():
        ratio = f"{statistics.median(ratios[name]):.2f}" if name in ratios else "-"
        print(
            f"{name:<34} {statistics.median(r.wall for r in runs):>8.2f} {ratio:>8} "
            f"{max(r.rss_mb for r in runs):>8.0f} {statistics.median(r.cpu for r in runs):>7.2f} "
            f"{statistics.median(r.registry_cpu for r in runs):>8.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
