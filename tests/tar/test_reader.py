"""The rules of the one tar reader, where pypull's two readers once differed: the archive reader
of ``load`` (``tarstream``) and the layer reader of ``unpack`` and ``export`` (``_entries``).
Each test names the rule kept (the stricter one, or the one Go's ``archive/tar`` follows where
neither was stricter) and runs it through both views of the reader: a layer's entries, and an
archive's members."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable

import pytest

from puller.tar.errors import TarError, Truncated
from puller.tar.members import MAX_NAME, members
from puller.tar.reader import MAX_META, Policy, StreamSource, entries

#: What each view reads of a tar: (name, size) of each entry or member, in order.
View = Callable[[bytes], list[tuple[str, int]]]


def layer_view(data: bytes) -> list[tuple[str, int]]:
    source = StreamSource(io.BytesIO(data), "t.tar")
    return [(e.name.rstrip("/"), e.size) for e in entries(source, "t.tar", Policy())]


def archive_view(data: bytes) -> list[tuple[str, int]]:
    source = StreamSource(io.BytesIO(data), "t.tar")
    return [(m.name, m.size) for m in members(source, "t.tar", Policy(max_headers=1_000_000))]


VIEWS = pytest.mark.parametrize("read", [layer_view, archive_view], ids=["layer", "archive"])
END = bytes(1024)


def header(
    name: str = "f",
    kind: bytes = tarfile.REGTYPE,
    size: int = 0,
    tar_format: int = tarfile.USTAR_FORMAT,
    linkname: str = "",
) -> bytearray:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.linkname = linkname
    info.uname = info.gname = ""
    return bytearray(info.tobuf(tar_format, "utf-8", "surrogateescape"))


def put(block: bytearray, start: int, end: int, value: bytes) -> bytearray:
    """``value`` in the field ``start:end``, NUL-padded, and the checksum made right again."""
    block[start:end] = value.ljust(end - start, b"\0")
    return summed(block)


def summed(block: bytearray, signed: bool = False) -> bytearray:
    block[148:156] = b" " * 8
    head = block[:512]
    total = sum(b - 256 if signed and b > 127 else b for b in head)
    block[148:156] = b"%06o\0 " % total
    return block


def member(block: bytearray, content: bytes = b"") -> bytes:
    return bytes(block) + content + bytes(-len(content) % 512)


def pax(body: bytes, kind: bytes = tarfile.XHDTYPE) -> bytes:
    """A PAX header whose body is ``body``, as given (well formed or not)."""
    return member(header("././@PaxHeader", kind, len(body)), body)


def record(key: str, value: str) -> bytes:
    rest = f" {key}={value}\n".encode()
    n = len(rest) + 1
    while len(str(n)) + len(rest) != n:
        n += 1
    return str(n).encode() + rest


def refused(read: View, data: bytes, said: str) -> None:
    with pytest.raises(TarError, match=said):
        read(data)


@VIEWS
def test_the_header_checksum_is_the_unsigned_sum_posix_defines(read: View) -> None:
    """The layer reader also took a signed sum (historic Sun tar); the archive reader did not.
    No tool that writes images writes one, so a header whose bytes over 127 are counted
    negative is no tar header."""
    block = header("é-name", size=1)
    assert read(member(summed(block), b"x") + END) == [("é-name", 1)]
    refused(read, member(summed(block, signed=True), b"x") + END, "bad header checksum")


@VIEWS
@pytest.mark.parametrize("size", [b"-0000000001", b"\xff" * 12])
def test_a_negative_size_is_refused_in_either_notation(read: View, size: bytes) -> None:
    """The archive reader took an octal ``-1`` and skipped "the rest" of the member forever
    (``pypull load`` hung); the layer reader refused it."""
    block = header()
    block[124:136] = size
    refused(read, member(summed(block)) + END, "a negative or oversized size")


@VIEWS
def test_only_a_time_may_be_negative(read: View) -> None:
    """A time before 1970 is a time (GNU tar writes one in base-256); a negative mode is not:
    the layer reader made ``-1`` mode 07777, the archive reader refused every negative base-256
    number."""
    before_1970 = put(header(), 136, 148, b"\xff" * 12)
    assert read(member(before_1970) + END) == [("f", 0)]
    source = StreamSource(io.BytesIO(member(before_1970) + END), "t.tar")
    assert [e.mtime_ns for e in entries(source, "t.tar", Policy())] == [-1_000_000_000]
    refused(read, member(put(header(), 100, 108, b"\xff" * 8)) + END, "negative .* mode")
    refused(read, member(put(header(), 100, 108, b"-000001")) + END, "negative .* mode")


@VIEWS
def test_base_256_starts_with_0x80_or_0xff(read: View) -> None:
    """The layer reader read 0x81 as a positive number and dropped its low bits."""
    block = put(header(), 124, 136, b"\x81" + bytes(10) + b"\x01")
    refused(read, member(block) + END, "oversized size")


@VIEWS
def test_every_numeric_field_is_checked_in_an_archive_too(read: View) -> None:
    """The archive reader read only the checksum and the size; garbage in the others, or a uid
    no system holds, passed."""
    refused(read, member(put(header(), 108, 116, b"zz")) + END, r"bad uid field")
    big_uid = pax(record("uid", str(1 << 32))) + member(header())
    refused(read, big_uid + END, "uid 4294967296 out of range")


@VIEWS
def test_pax_headers_in_a_row_are_one_entrys_records_bounded_together(read: View) -> None:
    """The archive reader kept only the last of several PAX headers in a row, each bounded
    alone; the layer reader added them up, bounded together."""
    two = pax(record("path", "first")) + pax(record("comment", "x")) + member(header("f"))
    assert read(two + END) == [("first", 0)]
    half = [record(f"k{i}", "a" * (MAX_META * 6 // 10)) for i in range(2)]
    refused(read, pax(half[0]) + pax(half[1]) + member(header()) + END, "PAX headers of one")


@VIEWS
def test_global_pax_records_apply_to_every_later_entry_and_are_few(read: View) -> None:
    """The archive reader read global PAX headers and dropped them; the layer reader applied
    them to every later entry, at most 64 records."""
    glob = pax(record("path", "renamed"), tarfile.XGLTYPE)
    layer = glob + member(header("a")) + END
    assert read(layer) == [("renamed", 0)]
    many = b"".join(record(f"k{i}", "") for i in range(100))
    refused(read, pax(many, tarfile.XGLTYPE) + member(header()) + END, "global PAX headers")


@VIEWS
def test_a_pax_record_ends_in_a_newline(read: View) -> None:
    """The archive reader took a record without its newline (and stripped several)."""
    refused(read, pax(b"11 path=abc") + member(header()) + END, "a malformed PAX header")


@VIEWS
def test_only_nuls_may_follow_the_last_pax_record(read: View) -> None:
    """The archive reader stopped at the first NUL, whatever followed it."""
    body = record("path", "a") + b"\0\0" + record("path", "b")
    refused(read, pax(body) + member(header()) + END, "a malformed PAX header")
    assert read(pax(record("path", "a") + b"\0\0") + member(header()) + END) == [("a", 0)]


@VIEWS
def test_a_gnu_header_has_no_name_prefix(read: View) -> None:
    """A GNU header keeps its access and change times where a POSIX one has the name's
    prefix; the archive reader took any magic starting ``ustar`` and read the times as the
    start of the name."""
    block = header("f", tar_format=tarfile.GNU_FORMAT)
    assert block[257:265] == b"ustar  \0"
    put(block, 345, 357, b"14567123456")
    assert read(member(block) + END) == [("f", 0)]


@VIEWS
def test_links_directories_and_fifos_carry_no_content_whatever_their_size(read: View) -> None:
    """Types 1 to 6 are a header only (Go's ``archive/tar``, so containerd and umoci, read
    them so; so did the archive reader for links and directories). The layer reader skipped
    their size field's worth of bytes: here the next member whole."""
    directory = header("d", tarfile.DIRTYPE)
    put(directory, 124, 136, b"%011o" % 1024)
    after = member(header("d/f", size=3), b"abc")
    assert read(member(directory) + after + END) == [("d", 0), ("d/f", 3)]


@VIEWS
def test_a_sparse_file_is_refused_in_an_archive_too(read: View) -> None:
    """The archive reader took a PAX sparse file as a regular one, its map as content."""
    sparse = pax(record("GNU.sparse.major", "1") + record("GNU.sparse.minor", "0"))
    refused(read, sparse + member(header("f", size=3), b"abc") + END, "a sparse file")


@VIEWS
def test_a_nul_in_a_link_target_is_refused_in_an_archive_too(read: View) -> None:
    data = pax(record("linkpath", "a\0b")) + member(header("l", tarfile.SYMTYPE, linkname="x"))
    refused(read, data + END, "a link target or xattr name with a NUL")


@VIEWS
def test_a_type_no_reader_knows_is_refused(read: View) -> None:
    refused(read, member(summed(header("v", b"V"))) + END, "tar entry type b'V' is not one")


@VIEWS
def test_a_tar_cut_inside_a_header_or_content_is_truncated(read: View) -> None:
    """Both readers refused it, in other words: now one."""
    whole = member(header("f", size=600), b"x" * 600)
    for cut in (100, 700):
        with pytest.raises(Truncated, match=r"t\.tar: the archive ends in the middle of a member"):
            read(whole[:cut])


def test_an_archive_member_name_is_bounded_in_bytes_not_characters() -> None:
    """The archive reader counted characters: 2,100 two-byte ones passed its 4,096."""
    name = "é" * 2100
    data = pax(record("path", name)) + member(header()) + END
    refused(archive_view, data, f"a member name of 4200 bytes, over {MAX_NAME}")
