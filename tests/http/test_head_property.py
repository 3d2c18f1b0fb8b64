"""Property tests of ``parse_head`` (and of whole responses through the client) against a
reference written here: h11's own verdict on the same head, plus the refusals h11 does not make
itself (it lets Transfer-Encoding override a length, accepts control bytes other than NUL in
values, and limits only the whole head), and the body framing of RFC 9112 section 6.3.

Heads are generated well-formed (with the interesting headers, lengths near 20 digits, about 100
lines, lines about 8 KiB long) and then mutated byte by byte. A head is what the client hands to
``parse_head``: the bytes before the first blank line, so every generated one is cut there.

The two deviations these properties first found (a folded Content-Length refused; a malformed
line that merely quotes "Transfer-Encoding" raised as Unsupported) are fixed, and pinned by
the cases at the end of this file.
"""

from __future__ import annotations

import asyncio
import re
import string
from dataclasses import dataclass

import h11
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from puller.http.client import Client
from puller.http.errors import Unsupported, WireError
from puller.http.heads import parse_head
from puller.http.message import MAX_HEAD, Head
from tests.support.rawhttp import HANG, RELAXED, RawServer, reply

CRLF = b"\r\n"
BLANK = b"\r\n\r\n"
METHODS = ("GET", "HEAD", "CONNECT", "POST")

# The limits the issue asks for, spelled here rather than imported: the test pins the numbers.
HEADER_LINES = 100
HEADER_LINE = 8 * 1024
LENGTH_DIGITS = 20

#: C0 controls but HTAB, and DEL: no line of a head may carry one (RFC 9110 5.5: field values
#: are VCHAR, obs-text, SP and HTAB; RFC 9112 4: so is a reason phrase). A CR or LF that is not
#: part of a CRLF is one too.
CONTROLS = bytes([*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F])
NOT_CONTROLS = bytes(sorted(set(range(256)) - set(CONTROLS)))

PURE = settings(
    max_examples=150,
    deadline=None,
    database=None,  # no examples kept between runs: each run draws afresh
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NETWORK = settings(PURE, max_examples=40)


# -- the reference ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    status: int
    framing: str  # none, length, chunked, eof
    length: int | None
    headers: dict[str, str]  # by lower-cased name, the first of repeated ones
    keep_alive: bool


@dataclass(frozen=True)
class Refused:
    stage: str  # "raw" (bytes and lines), "h11", "fields" (lengths and codings)
    why: str


Verdict = Accepted | Refused


def as_delivered(raw: bytes) -> bytes:
    """The head the client parses when a server sends ``raw`` and then a blank line: everything
    before the first CRLF CRLF (a head never holds one, nor ends with a CRLF)."""
    data = raw + BLANK
    return data[: data.find(BLANK)]


def field_lines(block: bytes) -> list[tuple[bytes, bytes]]:
    """The raw header lines that have a colon, as (lower-cased name, value); continuation lines
    (obs-fold) are lines of their own here."""
    out = []
    for line in block.split(CRLF)[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            out.append((name.lower(), value))
    return out


def h11_event(block: bytes, method: str) -> h11.Response | h11.InformationalResponse | str:
    """h11's reading of the head, as a client that sent ``method``: the event, or why not."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "example")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(block + BLANK)
    try:
        got = conn.next_event()
    except h11.RemoteProtocolError as e:
        return f"h11: {e}"
    if isinstance(got, (h11.Response, h11.InformationalResponse)):
        return got
    return f"h11: no head but {got!r}"


def raw_refusal(block: bytes) -> str | None:
    """The limits on lines and bytes, which h11 does not apply."""
    lines = block.split(CRLF)
    if len(lines) - 1 > HEADER_LINES:
        return "too many header lines"
    if max(len(line) for line in lines) > HEADER_LINE:
        return "a line too long"
    if block.replace(CRLF, b"").translate(None, delete=NOT_CONTROLS):
        return "a control byte"
    return None


def expected(block: bytes, method: str) -> Verdict:
    why = raw_refusal(block)
    if why is not None:
        return Refused("raw", why)
    got = h11_event(block, method)
    if isinstance(got, str):
        return Refused("h11", got)
    # h11 turns a list of equal lengths into one, refuses unequal ones and (0.16) over 20
    # digits; the same is checked again on the raw lines, so an older h11 cannot pass them.
    raw_lengths = [
        item.strip(b" \t")
        for name, value in field_lines(block)
        if name == b"content-length"
        for item in value.split(b",")
    ]
    digits = [x for x in raw_lengths if x and all(48 <= c <= 57 for c in x)]
    if any(len(x) > LENGTH_DIGITS for x in digits):
        return Refused("fields", "a length over 20 digits")
    if len({int(x) for x in digits}) > 1:
        return Refused("fields", "conflicting lengths")
    lengths = [v for n, v in got.headers if n == b"content-length"]
    codings = [v for n, v in got.headers if n == b"transfer-encoding"]
    if any(len(v) > LENGTH_DIGITS for v in lengths):
        return Refused("fields", "a length over 20 digits")
    if len(set(lengths)) > 1:
        return Refused("fields", "conflicting lengths")
    if lengths and codings:
        return Refused("fields", "a length and a transfer coding")  # RFC 9112 6.1: MUST NOT
    assert all(v == b"chunked" for v in codings), got  # h11 refuses every other coding

    # RFC 9112 6.3, for a client that sent ``method``:
    status = got.status_code
    if method == "HEAD" or status < 200 or status in (204, 304):
        framing = "none"  # 1: never a body
    elif method == "CONNECT" and 200 <= status < 300:
        framing = "none"  # 2: a tunnel
    elif codings:
        framing = "chunked"  # 4: chunked is the final (only) coding
    elif lengths:
        framing = "length"  # 6
    else:
        framing = "eof"  # 8: a response delimited by the end of the connection
    headers: dict[str, str] = {}
    for name, value in got.headers:
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    close = any(
        token.strip(b" \t").lower() == b"close"
        for n, v in got.headers
        if n == b"connection"
        for token in v.split(b",")
    )
    return Accepted(
        status=status,
        framing=framing,
        length=int(lengths[0]) if framing == "length" else None,
        headers=headers,
        # Only HTTP/1.1 connections are reused, and one whose body ends with it never.
        keep_alive=got.http_version == b"1.1" and not close and framing != "eof",
    )


def has_coding_line(block: bytes) -> bool:
    return any(name == b"transfer-encoding" for name, _ in field_lines(block))


def only_the_coding_is_wrong(block: bytes, method: str, want: Verdict) -> bool:
    """h11 refused the head, and with its Transfer-Encoding lines swapped for a harmless one it
    would have been accepted: the answer is in a form we do not read, not malformed."""
    if not (isinstance(want, Refused) and want.stage == "h11") or not has_coding_line(block):
        return False
    lines = block.split(CRLF)
    neutral = [lines[0]] + [
        b"X-Neutral: 1" if line.partition(b":")[0].lower() == b"transfer-encoding" else line
        for line in lines[1:]
    ]
    return isinstance(expected(CRLF.join(neutral), method), Accepted)


# -- the comparison --------------------------------------------------------------------------------


def check(block: bytes, method: str) -> Verdict:
    """Asserts that parse_head agrees with the reference; returns the reference's verdict."""
    want = expected(block, method)
    try:
        got: Head | WireError = parse_head(block, method)
    except WireError as e:  # anything else is a failure: parse_head raises WireError only
        got = e
    shown = f"{method} {block[:300]!r}{'...' if len(block) > 300 else ''}"

    if isinstance(got, WireError):
        assert not isinstance(got, Unsupported) or has_coding_line(block), (
            f"{got!r} without a coding: {shown}"
        )
        assert isinstance(want, Refused), f"refused ({got}) what the reference accepts: {shown}"
        if only_the_coding_is_wrong(block, method, want):
            assert isinstance(got, Unsupported), f"{got!r} for an unsupported coding: {shown}"
        return want

    assert isinstance(want, Accepted), f"accepted what the reference refuses ({want}): {shown}"
    assert got.status == want.status, shown
    assert (got.framing, got.length) == (want.framing, want.length), shown
    assert got.keep_alive == want.keep_alive, shown
    for name, value in want.headers.items():
        for spelling in (name, name.upper(), name.title()):
            assert got.headers.get(spelling) == value, (spelling, shown)
    assert got.headers.get("x-not-sent-" + str(len(block))) is None
    return want


# -- strategies ------------------------------------------------------------------------------------

TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
#: What a field value or reason may hold: VCHAR, obs-text, SP, HTAB.
TEXT = "".join(chr(c) for c in [*range(0x20, 0x7F), *range(0x80, 0x100)]) + "\t"
LENGTH_NAMES = ("Content-Length", "content-length", "CONTENT-LENGTH")
CODING_NAMES = ("Transfer-Encoding", "transfer-encoding")
CONNECTION_NAMES = ("Connection", "connection")

texts = st.text(TEXT, max_size=24)


@st.composite
def digit_strings(draw: st.DrawFn) -> str:
    """Lengths about the 20-digit limit, with and without leading zeros."""
    n = draw(st.integers(15, 23))
    return draw(st.sampled_from(["1" * n, "0" * (n - 1) + "7", "9" * n, str(10 ** (n - 1))]))


@st.composite
def length_lists(draw: st.DrawFn) -> str:
    """A comma list of lengths, equal (perhaps spelled differently) or not."""
    n = draw(st.integers(0, 99))
    items = draw(
        st.lists(
            st.sampled_from([str(n), str(n), "0" + str(n), str(n + 1)]), min_size=2, max_size=3
        )
    )
    return draw(st.sampled_from([", ", ",", " , "])).join(items)


length_values = st.one_of(
    st.integers(0, 5000).map(str),
    st.integers(0, 300).map(str),
    st.integers(0, 10**22).map(str),
    digit_strings(),
    length_lists(),
    st.sampled_from(["", " ", "-1", "+5", "0x10", "5 5", "1e3", "5;", "5.0", "\xb2", "\xbd"]),
)
coding_values = st.sampled_from(
    [
        *("chunked", "chunked", "chunked", "Chunked", "CHUNKED", "gzip", "gzip, chunked"),
        "chunked, chunked",
        *("identity", "", "chunked;q=1", "  chunked  "),
    ]
)
connection_values = st.sampled_from(
    ["close", "Close", "keep-alive", "keep-alive, close", "upgrade", "te,close", "closed", ""]
)


def one_in(n: int) -> st.SearchStrategy[bool]:
    return st.sampled_from([False] * (n - 1) + [True])


@st.composite
def field(draw: st.DrawFn, tidy: bool) -> str:
    """A header line; ``tidy``: one a server may well send (a small length, chunked, no control
    bytes), else anything of the kinds above."""
    kind = draw(st.sampled_from(["any", "any", "length", "coding", "connection"]))
    if kind == "length":
        lengths = st.integers(0, 300).map(str) if tidy else length_values
        name, value = draw(st.sampled_from(LENGTH_NAMES)), draw(lengths)
    elif kind == "coding":
        codings = st.sampled_from(["chunked", "Chunked"]) if tidy else coding_values
        name, value = draw(st.sampled_from(CODING_NAMES)), draw(codings)
    elif kind == "connection":
        name, value = draw(st.sampled_from(CONNECTION_NAMES)), draw(connection_values)
    else:
        name, value = draw(st.text(TCHAR, min_size=1, max_size=12)), draw(texts)
    if not tidy and draw(one_in(20)):  # a control byte somewhere in the value
        at = draw(st.integers(0, len(value)))
        value = value[:at] + chr(draw(st.sampled_from(CONTROLS))) + value[at:]
    ows = st.sampled_from(["", " ", "\t", "  "])
    return f"{name}:{draw(ows)}{value}{draw(ows)}"


@st.composite
def heads(draw: st.DrawFn, tidy: bool = False, limits: bool = True) -> bytes:
    """A head of the fields above; ``limits``: perhaps with about 100 lines, or a line of about
    8 KiB."""
    versions = ["HTTP/1.1"] * 4 + ["HTTP/1.0"] + ([] if tidy else ["HTTP/2.0", "http/1.1"])
    version = draw(st.sampled_from(versions))
    status = draw(
        st.one_of(
            st.sampled_from([200, 204, 206, 299, 300, 304, 404, 500, 100, 101, 103, 199]),
            st.integers(100, 599),
        )
    )
    reason = draw(st.one_of(st.none(), texts))
    lines = [f"{version} {status:03d}" + ("" if reason is None else f" {reason}")]
    fields = draw(st.lists(field(tidy), max_size=4 if tidy else 8))
    if tidy:  # no two lengths, and seldom a length with a coding: a framing of each kind
        by_kind = {f.partition(":")[0].lower(): f for f in fields}
        both = "content-length" in by_kind and "transfer-encoding" in by_kind
        if both and not draw(one_in(4)):
            del by_kind[draw(st.sampled_from(["content-length", "transfer-encoding"]))]
        fields = list(by_kind.values())
    lines += fields
    totals = [0] * 8 + [90, 99, 100, 100, 101, 101, 102] if limits else [0]
    total = draw(st.sampled_from(totals))
    lines += [f"X-Pad-{i}: {i}" for i in range(total - len(fields))]  # about 100 lines
    long_lines = [None] * 8 + [8180, 8191, 8192, 8192, 8193, 8193, 8200] if limits else [None]
    long_line = draw(st.sampled_from(long_lines))
    if long_line is not None:  # about the 8 KiB limit, at any line, the status line too
        at = draw(st.integers(0, len(lines) - 1))
        if at == 0:
            lines[0] = lines[0][:12] + " " + "r" * (long_line - 13)
        else:
            lines.insert(at, "X-Long: " + "v" * (long_line - 8))
    if not tidy and draw(st.booleans()):
        lines[1:] = draw(st.permutations(lines[1:]))
    return as_delivered("\r\n".join(lines).encode("latin-1"))


INSERTS = [b"\x00", b"\r", b"\n", b"\x7f", CRLF, b"\r\n ", b"\r\n\t", b" ", b"\t", b":", b","]
INSERTS += [b"0", b"9", b"\x01", b"\x1f", b"\x80", b"\xff", b"\x0b", b"\x0c"]


@st.composite
def mutated_heads(draw: st.DrawFn) -> bytes:
    block = bytearray(draw(heads()))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "insert", "delete", "replace", "fold"]))
        at = draw(st.integers(0, len(block)))
        if op == "insert":
            block[at:at] = draw(st.one_of(st.sampled_from(INSERTS), st.binary(max_size=3)))
        elif op == "delete":
            del block[at : at + draw(st.integers(1, 3))]
        elif op == "replace" and at < len(block):
            block[at] = draw(st.sampled_from([*INSERTS, b"a", b"A"]))[0]
        elif op == "fold":  # a header line becomes the continuation of the one before
            starts = [m.end() for m in re.finditer(CRLF, block)]
            if starts:
                where = draw(st.sampled_from(starts))
                block[where:where] = draw(st.sampled_from([b" ", b"\t", b"  "]))
    return as_delivered(bytes(block))


any_heads = st.one_of(heads(tidy=True), heads(), mutated_heads())


# -- parse_head against the reference --------------------------------------------------------------


@PURE
@given(block=any_heads, method=st.sampled_from(METHODS))
# Found by Hypothesis: a folded line continues the coding, which is then not chunked alone.
@example(block=b"HTTP/1.1 200\r\nTransfer-Encoding:chunked\r\n 0:", method="GET")
def test_parse_head_agrees_with_h11_and_the_extra_refusals(block: bytes, method: str) -> None:
    want = check(block, method)
    event(type(want).__name__ if isinstance(want, Accepted) else f"Refused ({want.stage})")


def head_of(*fields: str, status: str = "200 OK") -> bytes:
    return "\r\n".join([f"HTTP/1.1 {status}", *fields]).encode("latin-1")


def pad(n: int) -> list[str]:
    return [f"X-Pad-{i}: {i}" for i in range(n)]


#: Heads at the edges the properties are about, each checked whatever the random run finds.
LANDMARKS = [
    head_of(*pad(HEADER_LINES)),
    head_of(*pad(HEADER_LINES + 1)),
    head_of("X-Long: " + "v" * (HEADER_LINE - 8)),
    head_of("X-Long: " + "v" * (HEADER_LINE - 7)),
    head_of(status="200 " + "r" * (HEADER_LINE - 13)),
    head_of(status="200 " + "r" * (HEADER_LINE - 12)),
    head_of("Content-Length: " + "9" * LENGTH_DIGITS),
    head_of("Content-Length: " + "0" * LENGTH_DIGITS + "7"),
    head_of("Content-Length: 5", "Content-Length: 5"),
    head_of("Content-Length: 5, 5"),
    head_of("Content-Length: 5", "content-length: 6"),
    head_of("Content-Length: 5, 05"),
    head_of("Content-Length: 5", "Transfer-Encoding: chunked"),
    head_of("Transfer-Encoding: chunked", "Content-Length: 0"),
    head_of("Transfer-Encoding: Chunked"),
    head_of("Transfer-Encoding: gzip"),
    head_of("Transfer-Encoding: chunked", "Transfer-Encoding: chunked"),
    head_of("X: a\x00b"),
    head_of("X: a\x01b"),
    head_of("X: a\x7fb"),
    head_of("X: a\tb"),
    head_of("X: a\rb"),
    head_of("X: a\nb"),
    head_of("X\x01: a"),
    head_of(status="200 O\x01K"),
    head_of("X: a", " folded"),
    head_of("Content-Length: 5", " , 5"),
    head_of("Connection: keep-alive, Close"),
    head_of("X-Twice: first", "x-twice: second", "Content-Type: a", "CONTENT-TYPE: b"),
    head_of("Content-Length: 7", status="204 No Content"),
    head_of("Transfer-Encoding: chunked", status="304 Not Modified"),
    head_of(status="100 Continue"),
    head_of(status="101 Switching Protocols"),
    head_of("Content-Length: 3", status="200 Connection established"),
    head_of("Content-Length: 3", status="302 Found"),
    b"HTTP/1.0 200 OK\r\nContent-Length: 3",
    b"HTTP/1.0 200 OK",
    b"HTTP/1.1 200",
    b"HTTP/1.1 2000 OK",
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("block", LANDMARKS, ids=range(len(LANDMARKS)))
def test_parse_head_agrees_at_the_limits(block: bytes, method: str) -> None:
    check(block, method)


def test_the_reference_makes_the_refusals_the_issue_lists() -> None:
    """The reference itself, on one head per required refusal (else the properties prove
    nothing about them)."""
    refused = [
        head_of("Content-Length: 5", "Content-Length: 6"),
        head_of("Content-Length: 5", "Transfer-Encoding: chunked"),
        head_of("Content-Length: " + "1" * (LENGTH_DIGITS + 1)),
        head_of("X: a\x00b"),
        head_of("X: a\x01b"),
        head_of("X\x7f: a"),
        head_of(*pad(HEADER_LINES + 1)),
        head_of("X: " + "v" * HEADER_LINE),
    ]
    for block in refused:
        assert isinstance(expected(block, "GET"), Refused), block[:80]
    for method, status, framing in [
        ("GET", "103 Early Hints", "none"),
        ("GET", "204 No Content", "none"),
        ("GET", "304 Not Modified", "none"),
        ("HEAD", "200 OK", "none"),
        ("CONNECT", "200 OK", "none"),
        ("CONNECT", "407 Proxy Authentication Required", "length"),
        ("GET", "200 OK", "length"),
    ]:
        want = expected(head_of("Content-Length: 3", status=status), method)
        assert isinstance(want, Accepted) and want.framing == framing, (method, status)


# -- whole responses through the client ----------------------------------------------------------

FINAL = b"HTTP/1.1 200 OK\r\nContent-Length: %d"
#: Mostly heads a server may send, so that most examples get as far as a body.
network_heads = st.one_of(heads(tidy=True, limits=False), heads(tidy=True, limits=False), any_heads)
LIMIT = 1 << 20


@dataclass(frozen=True)
class Body:
    sent: bytes
    outcome: bytes | type[BaseException]  # what read(limit) gives, or what it raises
    limit: int
    kind: str


def encode_chunks(payload: bytes, sizes: list[int], trailer: bool, ext: bool) -> bytes:
    out, i = bytearray(), 0
    for size in sizes:
        piece = payload[i : i + size]
        i += len(piece)
        if piece:
            out += b"%x%s\r\n%s\r\n" % (len(piece), b";x=y" if ext else b"", piece)
    if i < len(payload):
        out += b"%x\r\n%s\r\n" % (len(payload) - i, payload[i:])
    return bytes(out + b"0\r\n" + (b"X-Trailer: 1\r\n" if trailer else b"") + CRLF)


def body_for(draw: st.DrawFn, want: Accepted) -> Body:
    payload = draw(st.binary(max_size=300))
    limit = draw(st.one_of(st.just(LIMIT), st.integers(0, 320)))
    if want.framing == "none":
        return Body(payload, b"", limit, "no body")
    if want.framing == "eof":
        return Body(payload, payload[:limit], limit, "to the end")
    if want.framing == "length":
        assert want.length is not None
        if want.length <= 300 and draw(st.booleans()):
            payload = draw(st.binary(min_size=want.length, max_size=want.length + 20))
        need = min(want.length, limit)
        if len(payload) < need:
            return Body(payload, ConnectionError, limit, "a length, cut short")
        return Body(payload, payload[:need], limit, "a length")
    sizes = draw(st.lists(st.integers(1, 100), max_size=5))
    encoded = encode_chunks(payload, sizes, draw(st.booleans()), draw(st.booleans()))
    form = draw(st.sampled_from(["whole", "whole", "cut", "bad size"]))
    if form == "cut":
        cut = draw(st.integers(0, len(encoded) - 1))
        return Body(encoded[:cut], ConnectionError, LIMIT, "chunked, cut short")
    if form == "bad size":
        bad = draw(st.sampled_from([b"zz", b"-1", b"", b"1" * 16, b"0x5"]))
        return Body(bad + b"\r\n" + encoded, WireError, LIMIT, "chunked, a bad size")
    return Body(encoded, payload[:limit], limit, "chunked")


async def exchange(
    method: str, sent: bytes, limit: int
) -> bytes | BaseException:  # the body read, or what was raised
    client = Client(timeout=RELAXED, pool=False)
    try:
        async with RawServer(reply(sent)) as server:
            try:
                resp = await client.request(
                    method,
                    server.url(),
                    {},
                    body=b"" if method == "POST" else None,
                    max_redirects=0,
                )
            except (WireError, OSError) as e:
                return e
            try:
                return await resp.read(limit)
            except (WireError, OSError) as e:
                return e
            finally:
                resp.release()
    finally:
        await client.close()


# CONNECT is for proxies (and tunnels): its framing is left to the property above.
@NETWORK
@given(data=st.data(), block=network_heads, method=st.sampled_from(["GET", "HEAD", "POST"]))
def test_a_whole_response_reads_as_its_head_frames_it(
    data: st.DataObject, block: bytes, method: str
) -> None:
    want = check(block, method)
    if len(block) + len(BLANK) > MAX_HEAD:
        want = Refused("client", "a head over MAX_HEAD")
    sent = block + BLANK
    if isinstance(want, Refused):
        body = Body(data.draw(st.binary(max_size=50)), WireError, LIMIT, "head refused")
    elif want.status < 200:  # an interim answer: the real one follows
        payload = data.draw(st.binary(max_size=300))
        final = FINAL % len(payload)
        final_want = expected(final, method)
        assert isinstance(final_want, Accepted)
        limit = data.draw(st.one_of(st.just(LIMIT), st.integers(0, 320)))
        sent += final + BLANK
        framed = payload[:limit] if final_want.framing == "length" else b""
        body = Body(payload, framed, limit, "interim, then an answer")
    else:
        body = body_for(data.draw, want)
    event(body.kind)

    got = asyncio.run(asyncio.wait_for(exchange(method, sent + body.sent, body.limit), HANG))
    shown = f"{method} {sent[:300]!r} + {body.sent[:100]!r}, limit {body.limit}"
    if isinstance(body.outcome, bytes):
        assert got == body.outcome, shown
    else:
        assert isinstance(got, body.outcome), f"{got!r} instead of {body.outcome}: {shown}"


# -- the deviations the properties found, fixed ------------------------------------------------


@pytest.mark.parametrize(
    "block",
    [b"HTTP/1.1 200 OK\r\nContent-Length:\r\n 5", b"HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n 5"],
)
def test_folded_content_length_is_read_as_h11_reads_it(block: bytes) -> None:
    head = parse_head(block)
    assert (head.framing, head.length) == ("length", 5)


@pytest.mark.parametrize(
    "block",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked",
        b"HTTP/1.1 200 OK\r\nX-Why Transfer-Encoding",
        b"HTTP/1.1 2000 Transfer-Encoding",
    ],
)
def test_malformed_line_mentioning_transfer_encoding_is_not_unsupported(block: bytes) -> None:
    with pytest.raises(WireError) as raised:
        parse_head(block)
    assert not isinstance(raised.value, Unsupported)
