"""Heads on the wire: a response's parsed (by h11, a maintained, strict RFC 9112 parser, plus the
refusals h11 does not make itself), a request's encoded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import BadRequest, MalformedAnswer, Unsupported
from .message import MAX_HEAD, MAX_HEADER_LINE, MAX_HEADER_LINES, MAX_LENGTH_DIGITS, Head, Headers


def parse_head(block: bytes, method: str = "GET") -> Head:
    """One response head (status line and header lines, without the blank line that ends it),
    parsed by h11, plus the refusals h11 does not make: it lets ``Transfer-Encoding`` override a
    ``Content-Length``, accepts control bytes other than NUL in values, and limits only the
    whole head. Raises ``MalformedAnswer`` (or ``Unsupported``)."""
    import h11  # 7 ms of import, paid by the first request

    lines = block.split(b"\r\n")
    if len(lines) - 1 > MAX_HEADER_LINES:
        raise MalformedAnswer(f"malformed response: more than {MAX_HEADER_LINES} header lines")
    for line in lines:
        if len(line) > MAX_HEADER_LINE:
            raise MalformedAnswer(f"malformed response: a header line over {MAX_HEADER_LINE} bytes")
        if _CONTROL.search(line):
            raise MalformedAnswer(f"malformed response: a control byte in {_shown(line)}")
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD + 4)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "h")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(block + b"\r\n\r\n")
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as e:
        if _unsupported_coding(lines):
            raise Unsupported(f"unsupported Transfer-Encoding: {e}") from None
        raise MalformedAnswer(f"malformed response: {e}") from None
    if not isinstance(event, (h11.Response, h11.InformationalResponse)):  # pragma: no cover
        raise MalformedAnswer("malformed response: no complete head")
    headers = Headers()
    coding = None
    tokens: set[bytes] = set()
    lengths: list[bytes] = []
    for name, value in event.headers:
        headers.add(name.decode("latin-1"), value.decode("latin-1"))
        if name == b"transfer-encoding":
            coding = value.lower()
        elif name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
        if name == b"content-length":  # h11 has unfolded, merged and matched them
            if len(value) > MAX_LENGTH_DIGITS:  # (h11 0.16 checks this too; older ones did not)
                raise MalformedAnswer(f"malformed response: invalid Content-Length {_shown(value)}")
            lengths.append(value)
    status = event.status_code
    length = int(lengths[0]) if lengths else None
    if coding is not None and length is not None:
        raise MalformedAnswer("malformed response: both Content-Length and Transfer-Encoding")
    method = method.upper()
    no_body = status < 200 or status in (204, 304) or method == "HEAD"
    if no_body or (method == "CONNECT" and status < 300):  # a tunnel, not a body
        framing, length = "none", None
    elif coding is not None:
        framing = "chunked"
    elif length is not None:
        framing = "length"
    else:
        framing = "eof"
    keep_alive = event.http_version == b"1.1" and b"close" not in tokens and framing != "eof"
    return Head(status, headers, framing, length, keep_alive)


def _unsupported_coding(lines: list[bytes]) -> bool:
    """Whether well-formed Transfer-Encoding fields name a coding other than one chunked (h11
    refuses it with the rest: this tells the two apart without reading h11's message)."""
    fields: list[bytes] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t") and fields:  # obs-fold: h11 reads it as one SP, as it must
            fields[-1] += b" " + line.strip(b" \t")
        else:
            fields.append(line)
    codings = [
        value.strip().lower()
        for name, colon, value in (field.partition(b":") for field in fields)
        if colon and name.lower() == b"transfer-encoding"
    ]
    return len(codings) > 1 or any(coding != b"chunked" for coding in codings)


#: Bytes no head may carry: C0 controls but HTAB, and DEL.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _shown(data: bytes) -> str:
    return repr(data[:60])[1:]


def encode_head(lines: list[str]) -> bytes:
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise BadRequest("invalid header: characters outside Latin-1") from None


def header_lines(headers: Mapping[str, str]) -> list[str]:
    lines = []
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise BadRequest(f"invalid header {name}: a line break in it")
        lines.append(f"{name}: {value}")
    return lines
