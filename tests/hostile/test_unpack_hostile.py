"""Hostile layers fed straight to the unpacker's tar reader and tree (no registry): bounds on
what a layer can make pypull hold in memory or spend time on, and escapes tried on the real
filesystem."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.layers import E, tar_of
from puller import rootfs
from puller.errors import UnpackError
from puller.exporting import Flattener, LinkedParents
from puller.layers import LAYER_POLICY
from puller.tar.errors import TarError
from puller.tar.reader import MAX_META, Entry, StreamSource
from puller.tar.reader import entries as read_entries


def layer_source(data: bytes) -> StreamSource:
    """A layer's uncompressed bytes as the tar reader takes them."""
    return StreamSource(io.BytesIO(data), "layer")


def entries(data: bytes) -> Iterator[Entry]:
    yield from read_entries(layer_source(data), "layer", LAYER_POLICY)


def extended(kind: bytes, records: list[tuple[bytes, bytes]]) -> bytes:
    """A raw PAX header (``x`` or ``g``) of ``records``."""
    body = b""
    for key, value in records:
        rest = b" " + key + b"=" + value + b"\n"
        n = len(rest) + 1
        while len(str(n)) + len(rest) != n:
            n += 1
        body += str(n).encode() + rest
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = kind
    info.size = len(body)
    return info.tobuf(tarfile.USTAR_FORMAT) + body + bytes(-len(body) % 512)


def test_pax_headers_one_after_another_are_bounded_together() -> None:
    """Each under the bound, but they accumulated: 1 GiB held for 1 MiB of gzip."""
    headers = b"".join(
        extended(tarfile.XHDTYPE, [(b"k%d" % i + b"a" * (MAX_META // 2), b"")]) for i in range(3)
    )
    with pytest.raises(TarError, match="PAX headers of one entry over 1 MiB"):
        list(entries(headers + tar_of([E("f", data=b"x")])))


def test_global_pax_keys_count_toward_the_bound() -> None:
    headers = b"".join(
        extended(tarfile.XGLTYPE, [(b"k%d" % i + b"a" * (MAX_META // 2), b"")]) for i in range(3)
    )
    with pytest.raises(TarError, match="global PAX headers over"):
        list(entries(headers + tar_of([E("f", data=b"x")])))


def test_a_global_pax_header_of_many_records_is_refused() -> None:
    """Its records were merged into every later entry's: 1 MiB of them cost 20 ms an entry, so a
    layer of small entries took hours."""
    records = [(b"%x" % i, b"") for i in range(100_000)]
    data = extended(tarfile.XGLTYPE, records) + tar_of([E(f"f{i}") for i in range(500)])
    started = time.monotonic()
    with pytest.raises(TarError, match="global PAX headers"):
        list(entries(data))
    assert time.monotonic() - started < 2


def test_a_few_global_records_still_apply() -> None:
    data = extended(tarfile.XGLTYPE, [(b"comment", b"git archive"), (b"uid", b"7")])
    got = list(entries(data + tar_of([E("f"), E("g")])))
    assert [(e.name, e.uid) for e in got] == [("f", 7), ("g", 7)]


def test_export_holds_no_xattrs_of_hard_links_waiting_for_their_target() -> None:
    """A hard link waits for a target in a lower layer; its 1 MiB of xattrs (a few KiB of gzip)
    was held with it: a thousand such links held a GiB. Unpack ignores a link's xattrs (the
    link is its target's inode), and so does export now."""
    xattr = (("SCHILY.xattr.user.x", "a" * (MAX_META - 100)),)
    data = tar_of([E(f"l{i}", "hardlink", target="below", pax=xattr) for i in range(40)])
    out = io.BytesIO()
    flat = Flattener(out)
    src = layer_source(data)
    tracemalloc.start()
    try:
        for entry in read_entries(src, "layer", LAYER_POLICY):
            flat.add(entry, src, "layer")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MAX_META, peak
    below = tar_of([E("below", data=b"content")])
    src = layer_source(below)
    for entry in read_entries(src, "layer", LAYER_POLICY):
        flat.add(entry, src, "layer")
    flat.finish()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        links = [m for m in tar.getmembers() if m.islnk()]
    assert len(links) == 40 and all(not m.pax_headers for m in links)


def apply_all(root: Path, *layers: bytes) -> None:
    """The layers' tars applied in order into ``root`` through one tree, as unpack does."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    tree = rootfs.Tree(fd, as_root=os.geteuid() == 0)
    try:
        for data in layers:
            tree.new_layer()
            src = layer_source(data)
            for entry in read_entries(src, "layer", LAYER_POLICY):
                tree.apply(entry, src, "layer")
        tree.finish()
    finally:
        tree.forget()
        os.close(fd)


@pytest.mark.parametrize("kind", ["file", "dir", "symlink"])
def test_times_out_of_range_are_clamped_not_a_crash(tmp_path: Path, kind: str) -> None:
    """An mtime of 10**23 seconds was an OverflowError out of utime: a traceback."""
    target = "t" if kind == "symlink" else ""
    for sign in ("", "-"):
        root = tmp_path / f"root{sign}"
        root.mkdir()
        pax = (("mtime", sign + "99999999999999999999999"),)
        apply_all(root, tar_of([E("x", kind, target=target, pax=pax)]))
        assert os.lstat(root / "x").st_mtime_ns != 0


@pytest.mark.parametrize("key", ["uid", "gid"])
def test_ids_out_of_range_are_an_unpack_error_not_a_crash(tmp_path: Path, key: str) -> None:
    """A uid of 10**23 was an OverflowError out of chown (as root): a traceback."""
    data = tar_of([E("x", pax=((key, "99999999999999999999999"),))])
    with pytest.raises(TarError, match=f"{key} 99999999999999999999999 out of range"):
        apply_all(tmp_path, data)


def test_entries_through_a_deep_chain_of_symlinks_run_out_of_lookups_not_hours(
    tmp_path: Path,
) -> None:
    """Each entry resolved from DIR through MAX_LINKS symlinks of 500 components: ~18 ms an
    entry, 300 entries in 2 KiB of gzip, so a 10 MiB layer took hours. The layer's lookup
    budget (LOOKUP_BASE, LOOKUPS_PER_ENTRY) ends it at once."""
    depth = 500
    deep = "/".join(["d"] * depth)
    setup = [E("/".join(["d"] * k), "dir") for k in range(1, depth + 1)]
    hops = rootfs.MAX_LINKS - 2
    setup += [E(f"{deep}/l{i}", "symlink", target=f"/{deep}/l{i + 1}") for i in range(hops)]
    setup += [E(f"{deep}/l{hops}", "dir")]
    setup += [E(name, "symlink", target=f"/{deep}/l0") for name in ("a", "b")]
    apply_all(tmp_path, tar_of(setup))  # deep, but each entry walks it once: within budget
    # Two parents taken in turn: the kept parent never helps.
    entries = [E(f"{'ab'[i % 2]}/x{i}") for i in range(2000)]
    started = time.monotonic()
    with pytest.raises(UnpackError, match="resolve through too many directories"):
        apply_all(tmp_path, tar_of(entries))
    assert time.monotonic() - started < 5


def test_an_ordinary_layer_stays_well_within_the_lookup_budget(tmp_path: Path) -> None:
    """Ten thousand files 12 directories deep, every one through a symlink, as /lib is."""
    layer = [E("usr", "dir"), E("usr/lib", "dir"), E("lib", "symlink", target="usr/lib")]
    for i in range(10_000):
        layer.append(E(f"lib/{'/'.join(f'd{k}' for k in range(12))}/f{i % 50}/x{i}"))
    apply_all(tmp_path, tar_of(layer))
    assert (tmp_path / "usr/lib/d0/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/f7/x9007").is_file()


def linked_parents(*layers: bytes) -> LinkedParents:
    """The layers bottom first through export's first pass, as unpack applies them."""
    parents = LinkedParents()
    for i, data in enumerate(layers):
        parents.new_layer(i)
        src = layer_source(data)
        for entry in read_entries(src, "layer", LAYER_POLICY):
            parents.add(entry, src, "layer")
    return parents


def test_export_resolves_names_through_links_within_unpacks_lookup_budget() -> None:
    """Export's first pass names ten thousand files under a linked /lib where unpack puts
    them, in the budget unpack keeps; the same deep chain that runs unpack out of lookups runs
    it out too, at once."""
    layer = [E("usr", "dir"), E("usr/lib", "dir"), E("lib", "symlink", target="usr/lib")]
    deep = "/".join(f"d{k}" for k in range(12))
    layer += [E(f"lib/{deep}/f{i % 50}/x{i}") for i in range(10_000)]
    parents = linked_parents(tar_of(layer))
    assert len(parents.renamed) == 10_000
    assert parents.renamed[(0, 3 + 9007)] == (f"usr/lib/{deep}/f7/x9007", "")
    depth = 500
    deep = "/".join(["d"] * depth)
    hops = rootfs.MAX_LINKS - 2
    setup = [E(f"{deep}/l{i}", "symlink", target=f"/{deep}/l{i + 1}") for i in range(hops)]
    setup += [E(name, "symlink", target=f"/{deep}/l0") for name in ("a", "b")]
    entries = [E(f"{'ab'[i % 2]}/x{i}") for i in range(2000)]
    started = time.monotonic()
    with pytest.raises(UnpackError, match="resolve through too many directories"):
        linked_parents(tar_of(setup), tar_of(entries))
    assert time.monotonic() - started < 5


def test_a_link_whose_directory_a_later_layer_removed_no_longer_leads_anywhere() -> None:
    """``d/x -> sub`` made, then ``d`` whited out and made again: a later ``d/x/f`` is where
    it says, as unpack makes it (the link went with its directory)."""
    below = tar_of([E("d", "dir"), E("d/x", "symlink", target="/sub")])
    middle = tar_of([E(".wh.d"), E("d", "dir")])
    above = tar_of([E("d/x/f", data=b"f"), E("e", "symlink", target="d"), E("e/x/g")])
    assert linked_parents(below, middle, above).renamed == {(2, 2): ("d/x/g", "")}
    assert linked_parents(below, above).renamed == {(1, 0): ("sub/f", ""), (1, 2): ("sub/g", "")}


def test_the_names_a_layer_makes_the_tree_remember_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names of 3.9 KB that differ at the end compress 150:1: the paths kept (this layer's
    names, directories' times) made a 100 MiB gzip layer hold ~12 GiB. Past MAX_TRACKED the
    layer is refused; here the bound is lowered to 2 MiB to see it."""
    monkeypatch.setattr(rootfs, "MAX_TRACKED", 2 << 20)
    parent = "/".join(f"p{k:02d}" * 40 for k in range(30))[:3700].rstrip("/")
    names = [parent + "/" + "f" * 240 + f"{i:08d}" for i in range(2000)]
    data = tar_of([E(name, "dir") for name in names])
    assert len(gzip.compress(data)) < len(data) // 100
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    tree = rootfs.Tree(fd, as_root=os.geteuid() == 0)
    src = layer_source(data)
    tracemalloc.start()  # after the test's own copy of the layer
    try:
        with pytest.raises(UnpackError, match="the names to remember pass 2 MiB"):
            for entry in read_entries(src, "layer", LAYER_POLICY):
                tree.apply(entry, src, "layer")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        tree.forget()
        os.close(fd)
    assert peak < 4 << 20, peak  # the 2 MiB bound, and one entry's worth of work


@pytest.mark.parametrize(
    "entry",
    [
        E("s", "symlink", target="x", pax=(("linkpath", "a\0b"),)),
        E("f", pax=(("SCHILY.xattr.user.a\0b", "v"),)),
    ],
)
def test_a_nul_in_a_link_target_or_xattr_name_is_an_unpack_error_not_a_crash(
    tmp_path: Path, entry: E
) -> None:
    """A ValueError ("embedded null byte") out of symlink or setxattr: reported as a bug."""
    with pytest.raises(TarError, match="a link target or xattr name with a NUL"):
        apply_all(tmp_path, tar_of([entry]))


def test_a_directory_made_again_after_a_whiteout_does_not_take_the_old_ones_mode(
    tmp_path: Path,
) -> None:
    """Layer 1 makes a 0555 ``a``; layer 2 whites it out and writes ``a/f``, which makes a new
    ``a`` (0755): the removed directory's mode, applied at the end, made it 0555."""
    apply_all(
        tmp_path,
        tar_of([E("a", "dir", mode=0o555), E("a/old", data=b"lower")]),
        tar_of([E(".wh.a"), E("a/f", data=b"upper")]),
    )
    assert (tmp_path / "a" / "f").read_bytes() == b"upper"
    assert not (tmp_path / "a" / "old").exists()
    assert (tmp_path / "a").stat().st_mode & 0o7777 == 0o755
