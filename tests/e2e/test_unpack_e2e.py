"""``pypull unpack`` end to end: images the tests build, pushed to the real registry, pulled, then
unpacked by pypull and by ``umoci unpack --rootless`` from the same store, as root and as
``nobody``; the two trees compared file by file. Hostile layers checked on the real filesystem.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.images import EPOCH, Blob, Image
from fixtures.layers import (
    Compression,
    E,
    TarBlob,
    image_of_layers,
    layer,
    tar_of,
    unpack_image,
)
from fixtures.registry import Registry, push
from tests.support import helpers
from tests.support.helpers import run_pypull

UMOCI = shutil.which("umoci")
#: Runs a command as nobody: the tests run as root in CI.
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
NO_NOBODY = "needs root, setpriv, and a checkout and interpreter that nobody can read"


@functools.cache
def as_nobody_possible() -> bool:
    """Root, setpriv, and a nobody who can run this interpreter and import this checkout's
    puller (a checkout under a 0700 home could not be read)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run(
        [*AS_NOBODY, sys.executable, "-c", "import puller.unpacking"],
        capture_output=True,
        timeout=60,
    )
    return probe.returncode == 0


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory everyone can enter (nobody must reach the store and write the output)."""
    path = Path(tempfile.mkdtemp(prefix="pypull-unpack-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        subprocess.run(["chmod", "-R", "u+rwx", str(path)], check=False)
        shutil.rmtree(path, ignore_errors=True)


def pulled(registry: Registry, store: Path, image: Image) -> str:
    push(registry.url, image)
    name = f"{registry.host}/{image.reference}"
    done = run_pypull("pull", "-q", "--store", store, name)
    assert done.returncode == 0, done.stderr
    return name


def pypull_unpack(
    store: Path, name: str, dest: Path, *, nobody: bool = False
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "puller", "unpack", "--store", str(store), name, str(dest)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPULL_")}
    if nobody:
        argv = [*AS_NOBODY, *argv]
        # Its own empty configuration: the test's (under root's 0700 tmp) is not nobody's.
        env |= {k: str(dest.parent / "nobody-home") for k in ("HOME", "XDG_CONFIG_HOME")}
        env["DOCKER_CONFIG"] = str(dest.parent / "nobody-home" / "docker")
    return subprocess.run(
        argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, timeout=120
    )


def umoci_unpack(store: Path, name: str, bundle: Path, *, nobody: bool = False) -> Path:
    return helpers.umoci_unpack(f"{store}:{name}", bundle, prefix=AS_NOBODY if nobody else ())


def tree(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every path under ``root``: (type, permission bits, link target or content sha256)."""
    out: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", 0, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), "")
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", stat.S_IMODE(st.st_mode), sha256(path))
            else:
                out[rel] = (stat.filemode(st.st_mode)[0], stat.S_IMODE(st.st_mode), "")
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def share(path: Path) -> None:
    """Hand ``path`` to nobody (the store it pulls from keeps its lease files there)."""
    subprocess.run(["chown", "-R", "nobody:nogroup", str(path)], check=True)


def out_dir(work: Path, store: Path, *, nobody: bool) -> Path:
    """``work/out``, made; handed to nobody with the store when nobody unpacks into it."""
    out = work / "out"
    out.mkdir()
    if nobody:
        share(store)
        share(out)
    return out


needs_umoci = pytest.mark.skipif(UMOCI is None, reason="umoci is not installed")


@needs_umoci
@pytest.mark.parametrize("user", ["root", "nobody"])
def test_unpack_equals_umoci_rootless_file_by_file(
    registry: Registry, work: Path, user: str
) -> None:
    if user == "nobody" and not as_nobody_possible():
        pytest.skip(NO_NOBODY)
    if user == "root" and os.geteuid() != 0:
        pytest.skip("not running as root")
    nobody = user == "nobody"
    store = work / "store"
    name = pulled(registry, store, unpack_image("gzip"))
    out = out_dir(work, store, nobody=nobody)
    done = pypull_unpack(store, name, out / "rootfs", nobody=nobody)
    assert done.returncode == 0, done.stderr
    ours = tree(out / "rootfs")
    theirs = tree(umoci_unpack(store, name, out / "bundle", nobody=nobody))
    if nobody:
        # Where pypull and umoci differ (see the README): a setuid (setgid) file whose owner
        # (group) was not kept loses the bit, as GNU tar makes it; umoci keeps it.
        assert ours["usr/bin/su"][1] == ours["usr/bin/sg"][1] == 0o755
        assert theirs["usr/bin/su"][1] == 0o4755 and theirs["usr/bin/sg"][1] == 0o2755
        for path in ("usr/bin/su", "usr/bin/sg", "usr/bin/ln-su", "usr/bin/ln2-su"):
            theirs[path] = (theirs[path][0], 0o755, theirs[path][2])
    assert ours == theirs
    # What the image says, seen directly as well (so that a shared mistake cannot pass).
    assert ours["wh/again"][0] == "file" and (out / "rootfs/wh/again").read_bytes() == (
        b"upper again\n"
    )
    assert "wh/gone" not in ours and "wh/dir" not in ours and "wh/kept" in ours
    assert sorted(p for p in ours if p.startswith("opq/")) == ["opq/new"]
    assert not any(".wh." in p for p in ours)
    assert ours["dir2file"][:2] == ("dir", 0o750) and "dir2file/z" in ours
    assert "dir2file/x" not in ours
    assert ours["file2dir"] == ("symlink", 0, "etc")
    assert ours["ro"][:2] == ("dir", 0o555) and "ro/b" in ours
    if not nobody:
        assert ours["usr/bin/su"][1] == 0o4755 and ours["usr/bin/sg"][1] == 0o2755
    assert ours["tmp"][1] == 0o1777 and ours["shared"][1] == 0o2775
    assert ours["usr/bin/sh"] == ("symlink", 0, "/bin/busybox")
    assert ours["etc/app/conf"][1] == 0o600
    assert "empty" not in ours
    su = (out / "rootfs/usr/bin/su").stat()
    assert su.st_nlink == 3 and (out / "rootfs/usr/bin/ln2-su").stat().st_ino == su.st_ino
    assert (out / "rootfs/etc/conf").stat().st_mtime == 1_500_000_000
    # A directory keeps its layer's mtime, though later layers wrote into it.
    assert (out / "rootfs/etc/app").stat().st_mtime == EPOCH
    assert (out / "rootfs/ro").stat().st_mtime == EPOCH
    assert (out / "rootfs/usr/bin/sh").lstat().st_mtime == EPOCH
    assert any(len(p) > 300 for p in ours)
    summary = done.stdout.strip()
    assert summary.startswith("Unpacked 3 layers into ")
    if nobody:
        # Every entry is root's (or uid 1000's) but the 2 hard links, which own nothing.
        assert ": 51 files," in summary and "skipped as not root: 49 ownerships" in summary
    else:
        assert "skipped" not in summary
        assert (out / "rootfs/owned").stat().st_uid == 1000


def test_a_zstd_layer_unpacks_to_the_tree_of_its_gzip_twin(registry: Registry, work: Path) -> None:
    store = work / "store"
    gz = pulled(registry, store, unpack_image("gzip"))
    zst = pulled(registry, store, unpack_image("zstd", middle="zstd"))
    assert run_pypull("unpack", "--store", store, gz, work / "gz").returncode == 0
    done = run_pypull("unpack", "--store", store, zst, work / "zst")
    assert done.returncode == 0, done.stderr
    assert tree(work / "zst") == tree(work / "gz")
    manifest = json.loads(run_pypull("inspect", "--raw", "--store", store, zst).stdout)
    assert manifest["layers"][1]["mediaType"].endswith("+zstd")


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Everything under ``root`` (``root`` itself too): mode, mtime, content or link target."""
    out = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        what = os.readlink(path) if path.is_symlink() else ""
        if stat.S_ISREG(st.st_mode):
            what = sha256(path)
        out[str(path)] = (st.st_mode, st.st_mtime_ns, what)
    return out


def hostile_layers(outside: Path) -> list[list[E]]:
    o = str(outside)
    return [
        [
            E("../escaped", data=b"dot-dot\n"),
            E("/absolute", data=b"absolute\n"),
            E("link", "symlink", target=o),  # an absolute link to a real outside directory
            E("link/through-link", data=b"same layer\n"),
            E("rel", "symlink", target="../../../../../../.." + o),
            E("chain1", "symlink", target="chain2"),
            E("chain2", "symlink", target="rel"),
        ],
        [
            E("link/later-layer", data=b"later layer\n"),
            E("chain1/through-chain", data=b"chain\n"),
            E("dotdot/../../escaped2", data=b"x\n"),
        ],
    ]


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_hostile_names_and_links_write_nothing_outside_dir(
    registry: Registry, work: Path, user: str
) -> None:
    if user == "nobody" and not as_nobody_possible():
        pytest.skip(NO_NOBODY)
    outside = work / "outside"
    outside.mkdir()
    (outside / "secret").write_text("keep me\n")
    layers = [layer(entries) for entries in hostile_layers(outside)]
    store = work / "store"
    name = pulled(registry, store, image_of_layers("pypull-test/hostile", user, layers))
    out = out_dir(work, store, nobody=user == "nobody")
    before = snapshot(work)
    before_outside = snapshot(outside)
    done = pypull_unpack(store, name, out / "rootfs", nobody=user == "nobody")
    assert done.returncode == 0, done.stderr
    assert snapshot(outside) == before_outside
    new = set(snapshot(work)) - set(before)
    rootfs = str(out / "rootfs")
    assert all(p.startswith(rootfs) for p in new), sorted(new)
    root = out / "rootfs"
    assert (root / "escaped").read_text() == "dot-dot\n"
    assert (root / "escaped2").read_text() == "x\n"
    assert (root / "absolute").read_text() == "absolute\n"
    # The links stay as the image has them; what was written through them landed inside DIR.
    assert os.readlink(root / "link") == str(outside)
    inside = root / str(outside).lstrip("/")
    assert (inside / "through-link").read_text() == "same layer\n"
    assert (inside / "later-layer").read_text() == "later layer\n"
    assert (inside / "through-chain").read_text() == "chain\n"


@pytest.mark.parametrize("via", ["dotdot", "symlink"])
def test_a_hard_link_to_an_outside_file_is_refused_and_leaves_no_dir(
    registry: Registry, work: Path, via: str
) -> None:
    outside = work / "outside"
    outside.mkdir()
    (outside / "secret").write_text("keep me\n")
    before = snapshot(outside)
    if via == "dotdot":
        entries = [E("up", "hardlink", target="../../../../../../../../" + str(outside / "secret"))]
    else:  # through a symlink to the outside directory
        entries = [
            E("out", "symlink", target=str(outside)),
            E("up", "hardlink", target="out/secret"),
        ]
    store = work / "store"
    name = pulled(registry, store, image_of_layers("pypull-test/hardlink", via, [layer(entries)]))
    done = run_pypull("unpack", "--store", store, name, work / "rootfs")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "hard link target" in lines[0] and "not in the image" in lines[0]
    assert not (work / "rootfs").exists()
    assert sorted(p.name for p in work.iterdir()) == ["outside", "store"]
    assert snapshot(outside) == before
    assert (outside / "secret").stat().st_nlink == 1


def wrong_layer_of(repository: str, good: Blob, wrong: Blob) -> Image:
    """A one-layer image whose manifest names the ``wrong`` layer's blob while its config
    carries the ``good`` layer's diff_id."""
    from fixtures.images import Manifest

    manifest = image_of_layers(repository, "1", [good]).manifests[0]
    doc = json.loads(manifest.raw)
    doc["layers"][0] = wrong.descriptor()
    raw = json.dumps(doc, indent=2).encode() + b"\n"
    bad = Manifest(manifest.media_type, raw, manifest.config, (wrong,), manifest.platform)
    return Image(repository, "1", bad.media_type, raw, (bad,))


def test_a_layer_that_does_not_match_its_diff_id_is_an_error_and_leaves_no_dir(
    registry: Registry, work: Path
) -> None:
    good = layer([E("a", data=b"a\n"), E("b", data=b"b\n")])
    wrong = layer([E("a", data=b"a\n"), E("b", data=b"B\n")])
    store = work / "store"
    name = pulled(registry, store, wrong_layer_of("pypull-test/diffid", good, wrong))
    done = run_pypull("unpack", "--store", store, name, work / "rootfs")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "layer 1" in lines[0] and good.diff_id in lines[0] and wrong.diff_id in lines[0]
    assert not (work / "rootfs").exists()
    assert sorted(p.name for p in work.iterdir()) == ["store"]


def test_names_from_a_layer_are_escaped_in_errors(registry: Registry, work: Path) -> None:
    layers = [layer([E("evil\x1b[2J", data=b"x"), E("evil\x1b[2J/under", data=b"y")])]
    store = work / "store"
    name = pulled(registry, store, image_of_layers("pypull-test/escape", "1", layers))
    done = run_pypull("unpack", "--store", store, name, work / "rootfs")
    assert done.returncode == 1
    assert "\x1b" not in done.stderr and "\\x1b[2J" in done.stderr
    assert "is not a directory" in done.stderr
    assert not (work / "rootfs").exists()


def test_an_existing_dir_is_refused_and_left_alone(registry: Registry, work: Path) -> None:
    store = work / "store"
    name = pulled(registry, store, unpack_image("gzip"))
    (work / "rootfs").mkdir()
    (work / "rootfs" / "mine").write_text("mine\n")
    done = run_pypull("unpack", "--store", store, name, work / "rootfs")
    assert done.returncode == 1
    assert done.stderr.strip() == f"Error: {work / 'rootfs'} exists: unpack makes a new directory"
    assert [p.name for p in (work / "rootfs").iterdir()] == ["mine"]


def test_device_nodes_are_made_as_root_and_skipped_with_a_count_otherwise(
    registry: Registry, work: Path
) -> None:
    if not as_nobody_possible():
        pytest.skip(NO_NOBODY)
    layers = [layer([E("null", "char", mode=0o666), E("plain", data=b"p")])]
    store = work / "store"
    name = pulled(registry, store, image_of_layers("pypull-test/devices", "1", layers))
    as_root = pypull_unpack(store, name, work / "root")
    assert as_root.returncode == 0, as_root.stderr
    assert stat.S_ISCHR((work / "root" / "null").lstat().st_mode)
    out = out_dir(work, store, nobody=True)
    done = pypull_unpack(store, name, out / "rootfs", nobody=True)
    assert done.returncode == 0, done.stderr
    assert "skipped as not root: 1 device node" in done.stdout
    assert sorted(p.name for p in (out / "rootfs").iterdir()) == ["plain"]


def test_export_writes_the_tree_unpack_makes_as_one_tar(registry: Registry, work: Path) -> None:
    store = work / "store"
    name = pulled(registry, store, unpack_image("gzip"))
    assert run_pypull("unpack", "--store", store, name, work / "rootfs").returncode == 0
    done = run_pypull("export", "--store", store, name, "-o", work / "flat.tar")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Exported 3 layers to ")
    assert sorted(p.name for p in work.iterdir()) == ["flat.tar", "rootfs", "store"]
    streamed = subprocess.run(
        [sys.executable, "-m", "puller", "unpack", "--store", str(store), name, "-"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == (work / "flat.tar").read_bytes()
    extracted = work / "extracted"
    extracted.mkdir()
    subprocess.run(
        ["tar", "-x", "-p", "-f", str(work / "flat.tar"), "-C", str(extracted)], check=True
    )
    assert tree(extracted) == tree(work / "rootfs")
    names = subprocess.run(
        ["tar", "-t", "-f", str(work / "flat.tar")], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(names) == len(set(names)) and not any(".wh." in n for n in names)


def test_export_resolves_a_linked_parent_as_unpack_does(registry: Registry, work: Path) -> None:
    """Issue 22: with ``x -> sub`` in one layer and ``x/f`` in a later one, unpack writes
    ``sub/f``; export named it ``x/f``, and GNU tar then failed with "x: Cannot create symlink
    to 'sub': File exists". Export resolves such a parent as unpack does: relative, absolute and
    chained links, a hard link's target, a whiteout, all through links."""
    link = functools.partial(E, kind="symlink", mode=0o777)
    layers = [
        layer([link("x", target="sub"), link("abs", target="/deep/er"), link("chain", target="x")]),
        layer(
            [
                E("x/f", data=b"through x\n"),
                E("abs/g", data=b"through abs\n"),
                E("chain/h", data=b"through two links\n"),
                E("chain/i", data=b"whited out above\n"),
                E("x/ln", "hardlink", target="abs/g"),
            ]
        ),
        layer([E("chain/.wh.i"), E("x/j", data=b"top\n")]),
    ]
    store = work / "store"
    name = pulled(registry, store, image_of_layers("pypull-test/linked-parent", "1", layers))
    assert run_pypull("unpack", "--store", store, name, work / "rootfs").returncode == 0
    unpacked = tree(work / "rootfs")
    assert unpacked["sub/f"][0] == unpacked["deep/er/g"][0] == "file"
    assert "sub/i" not in unpacked and unpacked["x"] == ("symlink", 0, "sub")
    done = run_pypull("export", "--store", store, name, "-o", work / "flat.tar")
    assert done.returncode == 0, done.stderr
    extracted = work / "extracted"
    extracted.mkdir()
    untar = ["tar", "-x", "-p", "-f", str(work / "flat.tar"), "-C", str(extracted)]
    run = subprocess.run(untar, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert tree(extracted) == unpacked
    ln = (extracted / "sub" / "ln").stat()
    assert ln.st_ino == (extracted / "deep" / "er" / "g").stat().st_ino


def test_export_of_a_layer_that_does_not_match_its_diff_id_leaves_no_file(
    registry: Registry, work: Path
) -> None:
    good = layer([E("a", data=b"a\n")])
    wrong = layer([E("a", data=b"A\n")])
    store = work / "store"
    name = pulled(registry, store, wrong_layer_of("pypull-test/diffid-export", good, wrong))
    done = run_pypull("export", "--store", store, name, "-o", work / "flat.tar")
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and good.diff_id in done.stderr
    assert sorted(p.name for p in work.iterdir()) == ["store"]


def failed_unpack(registry: Registry, work: Path, tag: str, layers: list[TarBlob]) -> str:
    """Unpack an image of ``layers``, which must fail: its one error line (no DIR left)."""
    store = work / "store"
    name = pulled(registry, store, image_of_layers("pypull-test/bad", tag, layers))
    done = run_pypull("unpack", "--store", store, name, work / "rootfs")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert sorted(p.name for p in work.iterdir()) == ["store"]
    return lines[0]


def test_an_extended_header_over_the_bound_is_refused_unread(
    registry: Registry, work: Path
) -> None:
    huge = layer([E("f", data=b"x", pax=(("comment", "x" * (2 << 20)),))])
    line = failed_unpack(registry, work, "pax", [huge])
    assert "extended tar header of" in line and "over the 1 MiB pypull reads" in line


def test_bytes_that_are_not_what_the_media_type_says_are_refused(
    registry: Registry, work: Path
) -> None:
    tar = tar_of([E("f", data=b"x")])
    mislabelled = TarBlob("application/vnd.oci.image.layer.v1.tar+gzip", tar, tar)
    line = failed_unpack(registry, work, "magic", [mislabelled])
    assert "layer 1" in line and "media type says gzip, but its bytes are not compressed" in line


def test_a_layer_that_is_no_tar_is_refused(registry: Registry, work: Path) -> None:
    junk = b"this is not a tar archive at all" * 40
    line = failed_unpack(
        registry, work, "junk", [TarBlob("application/vnd.oci.image.layer.v1.tar", junk, junk)]
    )
    assert "layer 1" in line and "not a tar archive" in line


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_content_that_inflates_far_beyond_its_size_unpacks_whole(
    registry: Registry, work: Path, compression: Compression
) -> None:
    """64 MiB of zeros compress to a few KiB: inflated piece by piece, never all at once."""
    zeros = bytes(64 << 20)
    blob = layer([E("zeros", data=zeros), E("after", data=b"after\n")], compression)
    assert blob.size < 1 << 20
    store = work / "store"
    name = pulled(registry, store, image_of_layers("pypull-test/zeros", compression, [blob]))
    done = run_pypull("unpack", "--store", store, name, work / "rootfs")
    assert done.returncode == 0, done.stderr
    assert (work / "rootfs" / "zeros").stat().st_size == 64 << 20
    assert sha256(work / "rootfs" / "zeros") == hashlib.sha256(zeros).hexdigest()
    assert (work / "rootfs" / "after").read_bytes() == b"after\n"


def test_security_xattrs_are_skipped_with_a_count_when_not_root(
    registry: Registry, work: Path
) -> None:
    if not as_nobody_possible():
        pytest.skip(NO_NOBODY)
    cap = E("cap", data=b"x", pax=(("SCHILY.xattr.security.capability", "\x01"),))
    store = work / "store"
    name = pulled(registry, store, image_of_layers("pypull-test/xattr", "1", [layer([cap])]))
    out = out_dir(work, store, nobody=True)
    done = pypull_unpack(store, name, out / "rootfs", nobody=True)
    assert done.returncode == 0, done.stderr
    assert "1 xattr" in done.stdout
    assert (out / "rootfs" / "cap").read_bytes() == b"x"


def test_platform_picks_the_child_of_an_all_platforms_pull(registry: Registry, work: Path) -> None:
    from fixtures.images import multiplatform

    image = multiplatform()
    store = work / "store"
    name = f"{registry.host}/{image.reference}"
    pulled_all = run_pypull("pull", "-q", "--all-platforms", "--store", store, name)
    assert pulled_all.returncode == 0, pulled_all.stderr
    done = run_pypull(
        "unpack", "--platform", "linux/arm64/v8", "--store", store, name, work / "arm"
    )
    assert done.returncode == 0, done.stderr
    conf = (work / "arm" / "etc/pypull/layer-0.conf").read_text()
    assert "linux/arm64/v8" in conf
    missing = run_pypull("unpack", "--platform", "linux/s390x", "--store", store, name, work / "x")
    assert missing.returncode == 1 and "no manifest for platform linux/s390x" in missing.stderr
    assert not (work / "x").exists()


def test_a_layer_missing_from_the_store_is_named_and_leaves_no_dir(
    registry: Registry, work: Path
) -> None:
    image = unpack_image("gzip")
    store = work / "store"
    name = pulled(registry, store, image)
    missing = image.manifests[0].layers[1]
    (store / "blobs" / "sha256" / missing.digest.removeprefix("sha256:")).unlink()
    done = run_pypull("unpack", "--store", store, name, work / "rootfs")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"Error: {name}: the store {store} lacks its layer 2 {missing.digest} (pull it again)"
    )
    assert sorted(p.name for p in work.iterdir()) == ["store"]


def test_an_empty_plain_layer_and_repeated_markers_unpack(registry: Registry, work: Path) -> None:
    empty = TarBlob("application/vnd.oci.image.layer.v1.tar", b"", b"")
    lower = layer([E("d", "dir", 0o755), E("d/old", data=b"old\n"), E("f", data=b"f\n")])
    upper = layer(
        [
            E("d", "dir", 0o755),
            *(E("d/.wh..wh..opq") for _ in range(3)),
            E("d/new", data=b"new\n"),
            E("d/.wh..wh..opq"),
            *(E(".wh.f") for _ in range(3)),
        ]
    )
    store = work / "store"
    name = pulled(
        registry, store, image_of_layers("pypull-test/markers", "1", [empty, lower, upper])
    )
    done = run_pypull("unpack", "--store", store, name, work / "rootfs")
    assert done.returncode == 0, done.stderr
    assert tree(work / "rootfs") == {
        "d": ("dir", 0o755, ""),
        "d/new": ("file", 0o644, hashlib.sha256(b"new\n").hexdigest()),
    }


@pytest.mark.parametrize("where", ["magic", "header", "middle"])
def test_a_blob_changed_in_the_store_is_a_digest_mismatch_and_leaves_no_dir(
    registry: Registry, work: Path, where: str
) -> None:
    """Whatever the changed bytes break first (gzip, the tar), the digest is what is reported."""
    image = unpack_image("gzip")
    store = work / "store"
    name = pulled(registry, store, image)
    blob = image.manifests[0].layers[0]
    path = store / "blobs" / "sha256" / blob.digest.removeprefix("sha256:")
    data = bytearray(path.read_bytes())
    at = {"magic": 0, "header": 12, "middle": len(data) // 2}[where]
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    done = run_pypull("unpack", "--store", store, name, work / "rootfs")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"layer 1 ({blob.digest}): the stored blob's digest is sha256:" in lines[0]
    assert sorted(p.name for p in work.iterdir()) == ["store"]


def test_gnu_long_names_and_base_256_numbers_unpack(registry: Registry, work: Path) -> None:
    import tarfile

    deep = "/".join(["d" * 60] * 3)
    entries = [
        E(deep, "dir", 0o755),
        E(f"{deep}/{'f' * 150}", data=b"long\n", mtime=1_234_567_890),
        E("link", "symlink", target=f"{deep}/{'f' * 150}"),
        E("big-uid", data=b"u\n", uid=3_000_000, gid=3_000_000),  # over 7 octal digits
    ]
    blob = layer(entries, tar_format=tarfile.GNU_FORMAT)
    assert b"././@LongLink" in blob.tar
    store = work / "store"
    name = pulled(registry, store, image_of_layers("pypull-test/gnu", "1", [blob]))
    done = run_pypull("unpack", "--store", store, name, work / "rootfs")
    assert done.returncode == 0, done.stderr
    root = work / "rootfs"
    assert (root / deep / ("f" * 150)).read_bytes() == b"long\n"
    assert (root / deep / ("f" * 150)).stat().st_mtime == 1_234_567_890
    assert os.readlink(root / "link") == f"{deep}/{'f' * 150}"
    if os.geteuid() == 0:
        assert (root / "big-uid").stat().st_uid == 3_000_000


@needs_umoci
def test_a_docker_media_type_image_unpacks_as_umoci_unpacks_it(
    registry: Registry, work: Path
) -> None:
    """Docker's layer media type (``...diff.tar.gzip``), each layer whiting out a file of the
    one below; the image is in the registry from the session's start."""
    from fixtures.images import docker_media

    image = docker_media()
    store = work / "store"
    name = f"{registry.host}/{image.reference}"
    assert run_pypull("pull", "-q", "--store", store, name).returncode == 0
    done = run_pypull("unpack", "--store", store, name, work / "rootfs")
    assert done.returncode == 0, done.stderr
    ours = tree(work / "rootfs")
    assert ours == tree(umoci_unpack(store, name, work / "bundle"))
    assert "tmp/scratch-3.txt" in ours and "tmp/scratch-2.txt" not in ours


def test_export_keeps_a_hard_link_whose_lower_target_was_whited_out(
    registry: Registry, work: Path
) -> None:
    """The link's content must survive in both forms; and a name that is not UTF-8 too."""
    import tarfile

    lower = layer(
        [E("target", data=b"content\n"), E("caf\udce9", data=b"latin-1\n")],
        tar_format=tarfile.GNU_FORMAT,
    )
    upper = layer([E("link", "hardlink", target="target"), E(".wh.target")])
    store = work / "store"
    name = pulled(registry, store, image_of_layers("pypull-test/link-export", "1", [lower, upper]))
    assert run_pypull("unpack", "--store", store, name, work / "rootfs").returncode == 0
    done = run_pypull("export", "--store", store, name, "-o", work / "flat.tar")
    assert done.returncode == 0, done.stderr
    extracted = work / "extracted"
    extracted.mkdir()
    subprocess.run(["tar", "-x", "-f", str(work / "flat.tar"), "-C", str(extracted)], check=True)
    for root in (work / "rootfs", extracted):
        assert sorted(os.listdir(os.fsencode(root))) == [b"caf\xe9", b"link"]
        assert (root / "link").read_bytes() == b"content\n"


def test_export_keeps_the_content_a_hard_link_had_when_a_later_layer_replaced_its_target(
    registry: Registry, work: Path
) -> None:
    """A package upgrade rewrites ``a`` and leaves ``b``, a hard link to the old ``a`` (in the
    same layer, or a later one, or through another link): unpack keeps the old content under
    ``b`` (the link is the old inode), and export wrote ``b`` as a link to the new ``a``."""
    link = functools.partial(E, kind="hardlink")
    layers = [
        layer([E("a", data=b"old\n"), link("b", target="a"), E("p", data=b"p1\n")]),
        layer([link("c", target="b"), link("q", target="p")]),
        layer([E("a", data=b"new\n"), E("p", data=b"p2\n")]),
    ]
    store = work / "store"
    name = pulled(registry, store, image_of_layers("pypull-test/link-replaced", "1", layers))
    assert run_pypull("unpack", "--store", store, name, work / "rootfs").returncode == 0
    unpacked = tree(work / "rootfs")
    assert [unpacked[n][2] for n in "abcpq"] == [
        hashlib.sha256(d).hexdigest() for d in (b"new\n", b"old\n", b"old\n", b"p2\n", b"p1\n")
    ]
    done = run_pypull("export", "--store", store, name, "-o", work / "flat.tar")
    assert done.returncode == 0, done.stderr
    extracted = work / "extracted"
    extracted.mkdir()
    untar = ["tar", "-x", "-p", "-f", str(work / "flat.tar"), "-C", str(extracted)]
    run = subprocess.run(untar, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert tree(extracted) == unpacked
    assert (extracted / "b").stat().st_ino == (extracted / "c").stat().st_ino


@pytest.mark.parametrize("lower", ["file", "hardlink", "symlink-to-file"])
def test_export_refuses_a_file_a_later_layer_writes_into_as_unpack_does(
    registry: Registry, work: Path, lower: str
) -> None:
    """``p`` a file (or a link to one), then ``p/c`` in a later layer: unpack refuses the image
    ("p is not a directory"); export wrote ``p`` and ``p/c`` both, a tar GNU tar cannot
    extract ("p: Cannot open: File exists")."""
    first = {
        "file": [E("p", data=b"p\n")],
        "hardlink": [E("a", data=b"a\n"), E("p", "hardlink", target="a")],
        "symlink-to-file": [E("a", data=b"a\n"), E("p", "symlink", mode=0o777, target="a")],
    }[lower]
    layers = [layer(first), layer([E("p/c", data=b"c\n")])]
    assert "not a directory" in failed_unpack(registry, work, f"into-{lower}", layers)
    name = f"{registry.host}/pypull-test/bad:into-{lower}"
    done = run_pypull("export", "--store", work / "store", name, "-o", work / "flat.tar")
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "no directory" in done.stderr
    assert sorted(p.name for p in work.iterdir()) == ["store"]
