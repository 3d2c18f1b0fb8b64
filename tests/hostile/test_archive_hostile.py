"""``pypull load`` of archives an attacker wrote: each is refused with one line saying what and
where, a non-zero exit and no traceback; nothing is written outside the store, nothing unverified
enters it, and its index.json is left as it was."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

import puller
from fixtures.images import redis
from fixtures.registry import Registry
from puller.oci.reference import parse
from puller.store.staging import Staging
from puller.tar.compression import inflated
from tests.support.helpers import run_pypull


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, None if data is None else io.BytesIO(data))
    return out.getvalue()


def regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def image_members(layer: bytes = b"layer bytes") -> tuple[list[tuple[tarfile.TarInfo, bytes]], str]:
    """A complete one-image OCI archive's members, and its manifest's digest."""
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha(layer)]}})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + sha(config.encode()),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": "sha256:" + sha(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:" + sha(manifest),
                    "size": len(manifest),
                    "annotations": {"io.containerd.image.name": "docker.io/library/evil:1"},
                }
            ],
        }
    ).encode()
    members = [
        regular("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
        regular("index.json", index),
        regular(f"blobs/sha256/{sha(config.encode())}", config.encode()),
        regular(f"blobs/sha256/{sha(manifest)}", manifest),
        regular(f"blobs/sha256/{sha(layer)}", layer),
    ]
    return members, "sha256:" + sha(manifest)


def load_refused(store: Path, archive: bytes, tmp_path: Path) -> str:
    """Load ``archive`` with the command; it must fail with one line. That line."""
    path = tmp_path / "evil.tar"
    path.write_bytes(archive)
    existed = os.path.lexists(store)
    before = (store / "index.json").read_bytes() if (store / "index.json").exists() else None
    run = run_pypull("load", "--store", store, "-i", path)
    assert run.returncode == 1, run.stdout
    assert run.stdout == ""
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert run.stderr.startswith("Error: ")
    if not existed:  # no store before, none after: not even an empty layout
        assert not os.path.lexists(store), sorted(map(str, store.rglob("*")))
        return run.stderr
    after = (store / "index.json").read_bytes() if (store / "index.json").exists() else None
    assert after == before
    ingest = store / ".pypull" / "ingest"
    assert not ingest.exists() or not [p for p in ingest.iterdir() if p.name.startswith(".staged")]
    return run.stderr


def test_a_well_formed_archive_loads(store: Path, tmp_path: Path) -> None:
    """The baseline the hostile variants below depart from."""
    members, digest = image_members()
    path = tmp_path / "good.tar"
    path.write_bytes(tar_of(*members))
    result = puller.load(path, store=store)
    assert [(str(i.reference), str(i.digest)) for i in result.images] == [
        ("docker.io/library/evil:1", digest)
    ]


@pytest.mark.parametrize(
    ("member", "said"),
    [
        (regular("../escape", b"x"), "has '..' in its name"),
        (regular("blobs/../../escape", b"x"), "has '..' in its name"),
        (regular("/etc/cron.d/evil", b"x"), "has an absolute name"),
        (
            special("blobs/sha256/link", tarfile.SYMTYPE, "../../../etc/passwd"),
            "out of the archive",
        ),
        (special("blobs/sha256/link", tarfile.SYMTYPE, "/etc/passwd"), "an absolute path"),
        (special("blobs/sha256/hard", tarfile.LNKTYPE, "../etc/passwd"), "out of the archive"),
        (special("dev/null", tarfile.CHRTYPE), "is a special file"),
        (special("fifo", tarfile.FIFOTYPE), "is a special file"),
    ],
)
def test_names_out_of_the_archive_and_special_files_are_refused(
    store: Path, tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None], said: str
) -> None:
    members, _ = image_members()
    message = load_refused(store, tar_of(*members[:2], member, *members[2:]), tmp_path)
    assert said in message
    assert not (tmp_path / "escape").exists()
    assert not (store / "index.json").exists() or "evil" not in (store / "index.json").read_text()


def test_a_name_with_terminal_escapes_is_printed_escaped(store: Path, tmp_path: Path) -> None:
    message = load_refused(store, tar_of(regular("\x1b]0;owned\x07/../x", b"x")), tmp_path)
    assert "\x1b" not in message and "\\x1b]0;owned\\x07" in message


def test_a_blob_whose_bytes_do_not_match_its_name_never_enters_the_store(
    store: Path, tmp_path: Path
) -> None:
    members, _ = image_members()
    info, _ = members[4]
    wrong = b"other bytes"
    info.size = len(wrong)
    message = load_refused(store, tar_of(*members[:4], (info, wrong)), tmp_path)
    assert message.startswith(f"Error: digest mismatch for sha256:{sha(b'layer bytes')}")
    assert "evil.tar" in message and "blobs/sha256/" in message
    assert not (store / "blobs" / "sha256" / sha(b"layer bytes")).exists()
    assert not (store / "blobs" / "sha256" / sha(wrong)).exists()


def test_an_image_missing_a_blob_is_not_named(store: Path, tmp_path: Path) -> None:
    members, _ = image_members()
    message = load_refused(store, tar_of(*members[:4]), tmp_path)
    assert "the archive lacks its layer sha256:" in message


def test_a_huge_manifest_json_is_not_read(store: Path, tmp_path: Path) -> None:
    huge = b"[" + b" " * (5 << 20) + b"]"
    message = load_refused(store, tar_of(regular("manifest.json", huge)), tmp_path)
    assert "manifest.json is 5242882 bytes, over the 4 MiB" in message


def test_a_pax_header_claiming_gigabytes_is_not_read(store: Path, tmp_path: Path) -> None:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = 1 << 30
    header = info.tobuf(tarfile.USTAR_FORMAT)
    message = load_refused(store, header + bytes(4096), tmp_path)
    assert "an extended tar header of 1073741824 bytes, over the 1 MiB pypull reads" in message


@pytest.mark.parametrize(
    ("archive", "said"),
    [
        (b"not a tar archive" * 100, "evil.tar at byte 0: not a tar archive"),
        (b"", "neither index.json nor manifest.json"),
        (gzip.compress(b"x" * 600), "not a tar archive"),
    ],
)
def test_what_is_no_archive_is_refused(
    store: Path, tmp_path: Path, archive: bytes, said: str
) -> None:
    assert said in load_refused(store, archive, tmp_path)


def test_a_cut_archive_is_refused(store: Path, tmp_path: Path) -> None:
    members, _ = image_members(b"y" * 5000)
    whole = tar_of(*members)
    cut = whole.index(b"y" * 5000) + 2000
    message = load_refused(store, whole[:cut], tmp_path)
    assert "ends in the middle of a member" in message


def test_links_that_go_round_are_refused(store: Path, tmp_path: Path) -> None:
    manifest = json.dumps([{"Config": "a", "RepoTags": ["x:1"], "Layers": []}]).encode()
    archive = tar_of(
        regular("manifest.json", manifest),
        special("a", tarfile.SYMTYPE, "b"),
        special("b", tarfile.SYMTYPE, "a"),
    )
    assert "go round" in load_refused(store, archive, tmp_path)


def test_a_legacy_layer_that_is_not_its_diff_id_is_refused(store: Path, tmp_path: Path) -> None:
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}})
    cfg = config.encode()
    manifest = json.dumps(
        [{"Config": f"{sha(cfg)}.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]
    ).encode()
    archive = tar_of(
        regular("l/layer.tar", b"not the layer"),
        regular(f"{sha(cfg)}.json", cfg),
        regular("manifest.json", manifest),
    )
    message = load_refused(store, archive, tmp_path)
    assert "layer 0 (l/layer.tar) is sha256:" in message and "its config says" in message


def test_a_store_keeps_its_images_when_a_bad_archive_is_loaded(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    name = f"{registry.host}/{redis().reference}"
    assert run_pypull("--store", store, "-q", name).returncode == 0
    members, _ = image_members()
    load_refused(store, tar_of(*members[:4]), tmp_path)  # index.json compared inside
    assert run_pypull("verify", "--store", store).returncode == 0
    assert parse(name).familiar_name in run_pypull("images", "--store", store).stdout


def test_gzipped_legacy_layers_are_checked_inflated(
    registry: Registry, store: Path, tmp_path: Path
) -> None:
    """An archive as crane writes one: manifest.json only, gzipped layers named by path."""
    name = f"{registry.host}/{redis().reference}"
    assert run_pypull("--store", store, "-q", name).returncode == 0
    image = redis().manifests[0]
    blob = store / "blobs" / "sha256"
    members = [
        regular(f"{image.config.digest[7:]}.json", (blob / image.config.digest[7:]).read_bytes())
    ]
    paths = []
    for n, layer in enumerate(image.layers):
        paths.append(f"layer-{n}.tar.gz")
        members.append(regular(paths[-1], (blob / layer.digest[7:]).read_bytes()))
    item = {
        "Config": f"{image.config.digest[7:]}.json",
        "RepoTags": ["crane/redis:1"],
        "Layers": paths,
    }
    members.append(regular("manifest.json", json.dumps([item]).encode()))
    archive = tmp_path / "crane.tar"
    archive.write_bytes(tar_of(*members))
    other = tmp_path / "other"
    run = run_pypull("load", "--store", other, archive)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "Loaded image: crane/redis:1\n"
    assert run_pypull("verify", "--store", other).returncode == 0
    info = json.loads(run_pypull("inspect", "--store", other, "crane/redis:1").stdout)
    assert info["Layers"] == [layer.digest for layer in image.layers]


def test_multi_member_gzip_is_hashed_whole() -> None:
    content = b"a" * 3_000_000 + b"b" * 10
    data = gzip.compress(content[:1_000_000]) + gzip.compress(content[1_000_000:])
    pieces = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    assert sha(b"".join(inflated(iter(pieces), "gzip", "test"))) == sha(content)


def legacy_archive(layer_tar: bytes, layer: bytes) -> bytes:
    """A legacy (manifest.json only) archive of one image whose one layer is ``layer_tar``,
    its config's diff_id that of ``layer``."""
    cfg = json.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha(layer)]}}).encode()
    manifest = json.dumps(
        [{"Config": f"{sha(cfg)}.json", "RepoTags": ["z:1"], "Layers": ["l/layer.tar"]}]
    ).encode()
    return tar_of(
        regular("l/layer.tar", layer_tar),
        regular(f"{sha(cfg)}.json", cfg),
        regular("manifest.json", manifest),
    )


def test_a_zstd_legacy_layer_is_checked_inflated_and_kept_as_zstd(
    store: Path, tmp_path: Path
) -> None:
    """docker's loader takes a zstd layer.tar (it detects the compression); so does load."""
    import zstandard

    layer = tar_of(regular("etc/hello.txt", b"hello from zstd\n"))
    path = tmp_path / "z.tar"
    path.write_bytes(legacy_archive(zstandard.ZstdCompressor().compress(layer), layer))
    run = run_pypull("load", "--store", store, "-i", path)
    assert (run.returncode, run.stdout) == (0, "Loaded image: z:1\n"), run.stderr
    assert run_pypull("verify", "--store", store).returncode == 0
    info = json.loads(run_pypull("inspect", "--store", store, "z:1").stdout)
    assert [d["MIMEType"] for d in info["LayersData"]] == [
        "application/vnd.oci.image.layer.v1.tar+zstd"
    ]
    out = tmp_path / "rootfs"
    assert run_pypull("unpack", "--store", store, "z:1", out).returncode == 0
    assert (out / "etc" / "hello.txt").read_bytes() == b"hello from zstd\n"


def test_a_corrupt_zstd_legacy_layer_is_refused_in_one_line(store: Path, tmp_path: Path) -> None:
    import zstandard

    layer = tar_of(regular("etc/hello.txt", b"hello"))
    packed = bytearray(zstandard.ZstdCompressor().compress(layer))
    packed[len(packed) // 2] ^= 0xFF
    message = load_refused(store, legacy_archive(bytes(packed), layer), tmp_path)
    assert "not valid zstd" in message or "is sha256:" in message, message


def test_many_names_of_one_image_are_read_once_and_written_in_one_rewrite(
    store: Path, tmp_path: Path
) -> None:
    """A manifest.json naming one config thousands of times costs one read of it, and the
    names one rewrite of index.json, all of them or none."""
    layer = b"layer"
    cfg = json.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha(layer)]}}).encode()
    items = [
        {"Config": f"{sha(cfg)}.json", "RepoTags": [f"many:{n}"], "Layers": ["l.tar"]}
        for n in range(3000)
    ]
    path = tmp_path / "many.tar"
    path.write_bytes(
        tar_of(
            regular("l.tar", layer),
            regular(f"{sha(cfg)}.json", cfg),
            regular("manifest.json", json.dumps(items).encode()),
        )
    )
    result = puller.load(path, store=store)
    assert len(result.images) == 3000 == len({i.digest for i in result.images}) * 3000
    assert len(json.loads((store / "index.json").read_text())["manifests"]) == 3000


def test_a_member_naming_a_blob_the_store_has_is_not_trusted_for_its_size(
    store: Path, tmp_path: Path
) -> None:
    """The store's verified copy is used, whatever bytes (and length) the member has."""
    layer = b"layer bytes"
    cfg = json.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha(layer)]}}).encode()
    item = {
        "Config": f"blobs/sha256/{sha(cfg)}",
        "RepoTags": ["sized:1"],
        "Layers": [f"blobs/sha256/{sha(layer)}"],
    }
    first = tmp_path / "first.tar"
    first.write_bytes(
        tar_of(
            regular(f"blobs/sha256/{sha(layer)}", layer),
            regular(f"blobs/sha256/{sha(cfg)}", cfg),
            regular("manifest.json", json.dumps([item]).encode()),
        )
    )
    puller.load(first, store=store)
    second = tmp_path / "second.tar"
    second.write_bytes(
        tar_of(
            regular(f"blobs/sha256/{sha(layer)}", b"something else, and longer"),
            regular(f"blobs/sha256/{sha(cfg)}", cfg),
            regular("manifest.json", json.dumps([{**item, "RepoTags": ["sized:2"]}]).encode()),
        )
    )
    puller.load(second, store=store)
    run = run_pypull("verify", "--store", store)
    assert run.returncode == 0, run.stdout


def test_a_negative_pax_size_is_refused_not_looped_on(store: Path, tmp_path: Path) -> None:
    """A pax ``size=-1`` made the reader skip "the rest" of a member forever (a hang)."""
    info, _ = regular("x", b"")
    info.pax_headers = {"size": "-1"}
    archive = tar_of((info, None), regular("y", b""))
    message = load_refused(store, archive, tmp_path)
    assert "a malformed PAX size" in message


def test_a_negative_size_field_is_refused_not_looped_on(store: Path, tmp_path: Path) -> None:
    """An octal size of ``-1`` in a member's header: the archive reader skipped "the rest" of
    the member forever (``pypull load`` hung); the one reader refuses it, as unpack did."""
    info, _ = regular("x", b"")
    block = bytearray(info.tobuf(tarfile.USTAR_FORMAT))
    block[124:136] = b"-0000000001\0"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    message = load_refused(store, bytes(block) + tar_of(regular("y", b"")), tmp_path)
    assert "evil.tar at byte 0: a negative or oversized size in a tar header" in message


@pytest.mark.parametrize("kind", ["name", "link"])
def test_names_of_a_mebibyte_are_refused(store: Path, tmp_path: Path, kind: str) -> None:
    """Every name read is kept until the end: 1 MiB pax paths (a few KiB of gzip each) held
    gigabytes. Names and link targets are at most PATH_MAX."""
    long = "a" * ((1 << 20) - 100)
    if kind == "name":
        info, data = regular(long, b"x")
        members = [(info, data) for _ in range(2)]
        archive = tar_of(*members)
    else:
        archive = tar_of(special("l", tarfile.SYMTYPE, long))
    message = load_refused(store, gzip.compress(archive), tmp_path)
    assert "over 4096" in message


# -- what a load stages ----------------------------------------------------------------------------

JUNK = 300 << 20


class Zeros(io.RawIOBase):
    """``size`` zero bytes, read as a file (tarfile copies a member's data from one)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


@functools.cache
def zeros_digest(size: int) -> str:
    h = hashlib.sha256()
    chunk = bytes(1 << 20)
    for _ in range(size >> 20):
        h.update(chunk)
    return h.hexdigest()


def gzip_archive(path: Path, *members: tuple[tarfile.TarInfo, bytes | int]) -> Path:
    """A gzipped tar of ``members``, each given its bytes, or a size of zeros (streamed: the
    archive is small however large the member)."""
    with (
        gzip.open(path, "wb", compresslevel=1) as out,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for info, data in members:
            if isinstance(data, int):
                info.size = data
                tar.addfile(info, Zeros(data))
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def store_bytes(store: Path) -> int:
    """Bytes of every file under the store, hidden ones too."""
    return sum(p.stat().st_size for p in store.rglob("*") if p.is_file() and not p.is_symlink())


def blob_files(store: Path) -> list[str]:
    """The names in the store's ``blobs/`` (none when it was never made)."""
    return sorted(p.name for p in (store / "blobs").rglob("*") if p.is_file())


def junk(name: str) -> tuple[tarfile.TarInfo, int]:
    return tarfile.TarInfo(name), JUNK


@pytest.mark.parametrize("name", ["junk", f"blobs/sha256/{zeros_digest(JUNK)}"])
def test_a_failed_load_of_a_300_mb_junk_member_leaves_under_5_mb_in_the_store(
    store: Path, tmp_path: Path, name: str
) -> None:
    """Issue 22: a 2 MB gzip archive of one huge member and no manifest filled the disk and
    stayed. A name no image content has is not staged at all; a blob's name is staged out of
    sight (its digest is right: only an index could say it is junk) and removed."""
    archive = gzip_archive(tmp_path / "junk.tar.gz", junk(name))
    assert archive.stat().st_size < 2 << 20
    with pytest.raises(puller.ArchiveError, match=r"neither index\.json nor manifest\.json"):
        puller.load(archive, store=store)
    assert store_bytes(store) < 5 << 20
    assert blob_files(store) == []


@pytest.mark.parametrize("index_first", [True, False])
def test_a_blob_no_image_of_the_archive_names_is_not_kept(
    store: Path, tmp_path: Path, index_first: bool
) -> None:
    """Whatever the order: after index.json (and the manifests it names) a blob nothing names
    is not written; before it, it is staged and dropped once the images are known."""
    members, _ = image_members()
    extra = (tarfile.TarInfo(f"blobs/sha256/{zeros_digest(JUNK)}"), JUNK)
    listed: list[tuple[tarfile.TarInfo, bytes | int]] = list(members)
    ordered = [*listed, extra] if index_first else [extra, *listed]
    result = puller.load(gzip_archive(tmp_path / "extra.tar.gz", *ordered), store=store)
    assert [str(i.reference) for i in result.images] == ["docker.io/library/evil:1"]
    assert result.blobs == 3
    assert store_bytes(store) < 5 << 20
    assert len(blob_files(store)) == 3


def test_a_member_whose_size_is_not_the_one_declared_is_refused_unwritten(
    store: Path, tmp_path: Path
) -> None:
    """index.json and the manifest first (as pypull save writes them): a layer member whose
    header claims 300 MB, where the manifest says 11 bytes, is refused before it is read."""
    members, _ = image_members()
    layer_name = members[-1][0].name
    archive = gzip_archive(tmp_path / "big.tar.gz", *members[:-1], junk(layer_name))
    with pytest.raises(puller.ArchiveError, match=f"{JUNK} bytes.* 11 bytes"):
        puller.load(archive, store=store)
    assert store_bytes(store) < 5 << 20
    assert blob_files(store) == []


def test_members_that_cannot_be_image_content_are_not_staged(store: Path, tmp_path: Path) -> None:
    """Issue 22: 200,000 tiny members made 200,000 blob files. Names no image archive gives
    its content are read past: the store holds the image's blobs and nothing else."""
    members, _ = image_members()
    many = [regular(f"junk/{i}", b"%d" % i) for i in range(2000)]
    path = tmp_path / "many.tar"
    path.write_bytes(tar_of(*many, *members))
    assert [str(i.reference) for i in puller.load(path, store=store).images] == [
        "docker.io/library/evil:1"
    ]
    assert len(blob_files(store)) == 3


class Interrupted(io.RawIOBase):
    """An archive whose reading is stopped by Ctrl-C after ``after`` bytes."""

    def __init__(self, data: bytes, after: int) -> None:
        self.data, self.after, self.at = data, after, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.at >= self.after:
            raise KeyboardInterrupt
        n = min(len(buffer), self.after - self.at)
        buffer[:n] = self.data[self.at : self.at + n]
        self.at += n
        return n


def test_a_load_stopped_by_ctrl_c_leaves_nothing_it_staged(store: Path) -> None:
    """Blobs first, as docker 25 orders its archives: what was staged before the stop goes."""
    members, _ = image_members(b"L" * (1 << 20))
    data = tar_of(*reversed(members))
    with pytest.raises(KeyboardInterrupt):
        puller.load(io.BufferedReader(Interrupted(data, len(data) - 4096)), store=store)
    assert store_bytes(store) < 64 << 10
    assert blob_files(store) == []


class Endless(io.RawIOBase):
    """A tar header, then zeros without end (a gzip of a few MB inflates to as much); reading
    more than ``most`` bytes of them fails the test."""

    def __init__(self, header: bytes, most: int) -> None:
        self.header, self.most, self.at = header, most, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.header:
            n = min(len(buffer), len(self.header))
            buffer[:n], self.header = self.header[:n], self.header[n:]
            return n
        if self.at > self.most:
            raise AssertionError(f"the load read {self.at} bytes of a member it cannot hold")
        n = len(buffer)
        buffer[:n] = bytes(n)
        self.at += n
        return n


def test_a_member_larger_than_the_disk_s_free_space_is_refused_before_a_byte_is_written(
    store: Path,
) -> None:
    """A blob's name, a petabyte in its header: staged, it would fill the disk before anything
    could say it was junk. It is refused unread, and the store holds nothing of it."""
    info = tarfile.TarInfo(f"blobs/sha256/{'ab' * 32}")
    info.size = 1 << 50
    stream = Endless(info.tobuf(tarfile.PAX_FORMAT), 64 << 20)
    with pytest.raises(puller.PullError, match=f"{1 << 50} bytes.* free"):
        puller.load(io.BufferedReader(stream), store=store)
    assert store_bytes(store) < 64 << 10
    assert blob_files(store) == []


class PrunedWhileRead(io.RawIOBase):
    """An archive read slowly: at byte ``at``, the staged files look two days old (a long
    member still arriving); some MiB later, ``pypull prune`` runs."""

    def __init__(self, data: bytes, store: Path, at: int) -> None:
        self.data, self.store, self.at, self.pos, self.pruned = data, store, at, 0, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.pos >= self.at and not self.pruned:
            staged = list((self.store / ".pypull" / "ingest").glob(".staged-*"))
            if self.pos < self.at + (64 << 10):
                old = time.time() - 2 * 24 * 3600
                for path in staged:
                    os.utime(path, (old, old))
            else:
                if self.pos >= self.at + (4 << 20):
                    puller.prune(store=self.store)
                    self.pruned = True
        n = min(len(buffer), 16 << 10, len(self.data) - self.pos)
        buffer[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def test_a_prune_during_a_long_member_leaves_what_the_load_staged_before_it(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staged files were touched between members only: while one long member arrived,
    those staged before it looked abandoned to ``pypull prune``, which removed them, and the
    load then failed. They are touched as the member is written too."""
    monkeypatch.setattr(Staging, "TOUCH_EVERY", 0.0)
    members, manifest = image_members(b"L" * (8 << 20))
    oci_layout, index, config, manifest_blob, layer = members
    data = tar_of(config, manifest_blob, layer, oci_layout, index)  # blobs first, as docker 25
    stream = PrunedWhileRead(data, store, len(data) - (7 << 20))
    result = puller.load(io.BufferedReader(stream, 16 << 10), store=store)
    assert stream.pruned
    assert [(str(i.reference), str(i.digest)) for i in result.images] == [
        ("docker.io/library/evil:1", manifest)
    ]
    assert len(blob_files(store)) == 3


@pytest.mark.parametrize("index_first", [True, False])
def test_a_manifest_that_gives_a_layer_the_wrong_size_is_refused_whatever_the_order(
    store: Path, tmp_path: Path, index_first: bool
) -> None:
    """Index first, the layer's member was refused for its size; blobs first (docker 25's
    order), the image was loaded with a manifest that the registry and unpack would refuse."""
    (oci_layout, index, config, manifest, layer), _ = image_members()
    doc = json.loads(manifest[1])
    doc["layers"][0]["size"] = 5
    raw = json.dumps(doc).encode()
    top = json.loads(index[1])
    top["manifests"][0].update(digest="sha256:" + sha(raw), size=len(raw))
    metadata = [oci_layout, regular("index.json", json.dumps(top).encode())]
    blobs = [config, regular(f"blobs/sha256/{sha(raw)}", raw), layer]
    archive = tar_of(*metadata, *blobs) if index_first else tar_of(*blobs, *metadata)
    assert "11 bytes" in load_refused(store, archive, tmp_path)
    assert blob_files(store) == []


def tree(path: Path) -> list[str]:
    """Every name under ``path``, relative to it."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("made", [0, 1, 3], ids=["empty-dir", "new-dir", "new-parents"])
def test_a_failed_load_leaves_the_directories_as_they_were(tmp_path: Path, made: int) -> None:
    """A store's first load, of an archive with a blob that does not match its name (staged
    before it is refused): nothing of a store is left, down to the directories created for it;
    an empty directory that was there stays, empty."""
    store = tmp_path / "a" / "b" / "store" if made == 3 else tmp_path / "store"
    if not made:
        store.mkdir()
    members, _ = image_members()
    members[-1] = regular(f"blobs/sha256/{'ab' * 32}", b"not what it is named")
    load_refused(store, tar_of(*members), tmp_path)
    assert tree(tmp_path) == sorted(["evil.tar", *(["store"] if not made else [])])


def test_after_a_failed_first_load_the_same_store_object_loads(tmp_path: Path) -> None:
    """The layout a failed load removed is made again by the next write through the same
    ``Store``, not taken as still there."""
    held = puller.Store(tmp_path / "store")
    with pytest.raises(puller.PullError):
        puller.load(io.BytesIO(b"not a tar archive at all"), store=held)
    assert not (tmp_path / "store").exists()
    members, digest = image_members()
    result = puller.load(io.BytesIO(tar_of(*members)), store=held)
    assert [str(i.digest) for i in result.images] == [digest]
    assert run_pypull("verify", "--store", tmp_path / "store").returncode == 0
