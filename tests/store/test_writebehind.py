"""A big blob written into the store leaves the page cache as it reaches the disk, so a pull of
gigabytes neither fills memory with its own writes nor evicts what other programs keep cached;
the blob itself is whole."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from puller.errors import StoreError
from puller.oci.digest import Digest
from puller.store.files import WRITEBACK_STEP
from puller.store.layout import Store

MiB = 1 << 20
#: A 1 MiB block repeated: cheap to make, and the digest still covers every byte.
BLOCK = hashlib.sha256(b"write-behind").digest() * (MiB // 32)


def resident_bytes(path: Path) -> int:
    """What of ``path`` is in the page cache, as util-linux's fincore counts it."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.split()[0])


def filesystem_of(path: Path) -> str:
    return subprocess.run(
        ["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def disk_store(tmp_path: Path) -> Path:
    if shutil.which("fincore") is None:
        pytest.skip("fincore (util-linux-extra) is not installed")
    if filesystem_of(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip("the test directory is in memory: its pages are the file")
    return tmp_path / "store"


def write_blob(store: Path, size: int, chunk: int = 2 * MiB) -> tuple[Digest, Path]:
    h = hashlib.sha256()
    for _ in range(size // MiB):
        h.update(BLOCK)
    digest = Digest("sha256", h.hexdigest())
    w = Store(store).writer(digest, size)
    for _ in range(size // chunk):
        w.write(BLOCK * (chunk // MiB))
    return digest, w.commit()


def test_a_big_blob_is_dropped_from_the_page_cache_behind_the_writes(disk_store: Path) -> None:
    size = 8 * WRITEBACK_STEP  # 256 MiB
    digest, path = write_blob(disk_store, size)
    assert path.stat().st_size == size
    # Of 256 MiB, at most the last three steps (96 MiB) stay cached; before, all of it did.
    assert resident_bytes(path) <= 3 * WRITEBACK_STEP
    # Dropped from the cache, not from the file: every byte reads back.
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    assert h.hexdigest() == digest.hex
    assert Store(disk_store).has(digest)


def test_a_small_blob_stays_cached(disk_store: Path) -> None:
    """Under three steps nothing is dropped: a small image unpacked right after its pull is
    read from memory."""
    _, path = write_blob(disk_store, 2 * WRITEBACK_STEP)
    os.sync()  # written out: clean pages, which only a drop would take away
    assert resident_bytes(path) == 2 * WRITEBACK_STEP


def test_a_resumed_blob_is_dropped_from_the_page_cache_too(disk_store: Path) -> None:
    """Resuming reads the partial back to hash it; those pages go with the first step."""
    size = 8 * WRITEBACK_STEP
    h = hashlib.sha256()
    for _ in range(size // MiB):
        h.update(BLOCK)
    digest = Digest("sha256", h.hexdigest())
    first = Store(disk_store).writer(digest, size)
    for _ in range(3 * WRITEBACK_STEP // (2 * MiB)):
        first.write(BLOCK * 2)
    first.close()  # interrupted: the partial is kept
    again = Store(disk_store).writer(digest, size)
    assert again.offset == 3 * WRITEBACK_STEP
    while again.size < size:
        again.write(BLOCK * 2)
    path = again.commit()
    assert resident_bytes(path) <= 3 * WRITEBACK_STEP


def test_a_write_error_met_while_writing_out_fails_the_blob(
    disk_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sync_file_range that waited reports a write error to its caller alone: the fsync after
    it would succeed. So the error must fail the download there, naming the file."""
    import ctypes
    import errno

    import puller.store.files as files

    def failing(fd: int, offset: int, length: int, flags: int) -> int:
        if flags & 4:  # waited for the range: the disk said EIO
            ctypes.set_errno(errno.EIO)
            return -1
        return 0

    monkeypatch.setattr(files, "_sync_file_range", failing)
    with pytest.raises(StoreError, match=r"partial.*(I/O|Input/output) error"):
        write_blob(disk_store, 8 * WRITEBACK_STEP)
