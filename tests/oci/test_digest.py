"""Digests: what parses, what is refused (and why), and the streaming verifier's verdicts.

A digest names a path on disk, so the refusals are the security boundary: every invalid row is a
string that must never reach ``blobs/<algorithm>/<hex>``.
"""

from __future__ import annotations

import hashlib

import pytest

from puller.errors import DigestMismatch, InvalidDigest, PullError, SizeMismatch
from puller.oci.digest import Digest, Verifier, digest_of, parse_digest, verify_bytes

DATA = b"hello, registry\n"
DATA_256 = hashlib.sha256(DATA).hexdigest()
DATA_512 = hashlib.sha512(DATA).hexdigest()
EMPTY_256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
WHERE = "http://127.0.0.1:5000/v2/x/blobs/sha256:abc"


# --- parse_digest: valid ---------------------------------------------------------------------

VALID = [
    pytest.param(f"sha256:{DATA_256}", "sha256", DATA_256, id="sha256"),
    pytest.param(f"sha256:{EMPTY_256}", "sha256", EMPTY_256, id="sha256-of-empty"),
    pytest.param(f"sha512:{DATA_512}", "sha512", DATA_512, id="sha512"),
    pytest.param("sha256:" + "0" * 64, "sha256", "0" * 64, id="sha256-all-zero"),
]


@pytest.mark.parametrize(("text", "algorithm", "hexpart"), VALID)
def test_valid_digest_parses_into_algorithm_and_hex(
    text: str, algorithm: str, hexpart: str
) -> None:
    d = parse_digest(text)
    assert (d.algorithm, d.hex) == (algorithm, hexpart)


@pytest.mark.parametrize(("text", "algorithm", "hexpart"), VALID)
def test_str_of_a_parsed_digest_gives_the_input_back(
    text: str, algorithm: str, hexpart: str
) -> None:
    assert str(parse_digest(text)) == text
    assert parse_digest(str(parse_digest(text))) == parse_digest(text)


def test_short_is_the_first_twelve_hex_digits_docker_shows() -> None:
    assert parse_digest(f"sha256:{DATA_256}").short == DATA_256[:12]
    assert len(parse_digest(f"sha512:{DATA_512}").short) == 12


def test_digest_is_a_frozen_value() -> None:
    d = parse_digest(f"sha256:{DATA_256}")
    with pytest.raises(AttributeError):
        d.hex = "0" * 64  # type: ignore[misc]
    assert d == Digest("sha256", DATA_256)
    assert hash(d) == hash(Digest("sha256", DATA_256))


def test_digest_of_hashes_the_bytes() -> None:
    assert digest_of(DATA) == Digest("sha256", DATA_256)
    assert digest_of(DATA, "sha512") == Digest("sha512", DATA_512)
    assert digest_of(b"") == Digest("sha256", EMPTY_256)


# --- parse_digest: invalid -------------------------------------------------------------------

# text, words the message must contain (besides the input itself)
INVALID = [
    pytest.param("", "expected algorithm:hex", id="empty"),
    pytest.param(DATA_256, "expected algorithm:hex", id="missing-colon"),
    pytest.param(f"sha256{DATA_256}", "expected algorithm:hex", id="missing-colon-after-algo"),
    pytest.param("sha256:" + DATA_256[:-1], "sha256 needs 64 lowercase hex", id="sha256-63-hex"),
    pytest.param("sha256:" + DATA_256 + "0", "sha256 needs 64 lowercase hex", id="sha256-65-hex"),
    pytest.param("sha256:", "sha256 needs 64 lowercase hex", id="sha256-no-hex"),
    pytest.param("sha512:" + DATA_256, "sha512 needs 128 lowercase hex", id="sha512-64-hex"),
    pytest.param("sha256:" + DATA_512, "sha256 needs 64 lowercase hex", id="sha256-128-hex"),
    pytest.param("sha256:" + DATA_256.upper(), "lowercase hex", id="uppercase-hex"),
    pytest.param("sha256:" + "g" * 64, "lowercase hex", id="non-hex-letters"),
    pytest.param("sha256:" + DATA_256[:-1] + "\n", "lowercase hex", id="trailing-newline"),
    pytest.param("sha256: " + DATA_256[1:], "lowercase hex", id="space-in-hex"),
    pytest.param("sha256:" + "\uff10" * 64, "lowercase hex", id="fullwidth-digits"),
    pytest.param("sha256:../../etc/passwd", "lowercase hex", id="path-traversal"),
    pytest.param("sha256:" + "../" * 21 + "x", "lowercase hex", id="traversal-64-chars"),
    pytest.param(f"sha256:{DATA_256}/..", "lowercase hex", id="traversal-suffix"),
    pytest.param(f"md5:{'0' * 32}", "unsupported algorithm 'md5'", id="unknown-algorithm-md5"),
    pytest.param(f"sha384:{'0' * 96}", "unsupported algorithm 'sha384'", id="unknown-sha384"),
    pytest.param(f"SHA256:{DATA_256}", "unsupported algorithm 'SHA256'", id="uppercase-algorithm"),
    pytest.param(f"../sha256:{DATA_256}", "unsupported algorithm", id="traversal-in-algorithm"),
    pytest.param(f":{DATA_256}", "unsupported algorithm ''", id="empty-algorithm"),
    pytest.param(f"sha256+b64:{DATA_256}", "unsupported algorithm", id="algorithm-with-suffix"),
]


@pytest.mark.parametrize(("text", "words"), INVALID)
def test_invalid_digest_is_refused_naming_input_and_reason(text: str, words: str) -> None:
    with pytest.raises(InvalidDigest) as info:
        parse_digest(text)
    message = str(info.value)
    assert message.startswith("invalid digest ")
    assert repr(text) in message
    assert words in message
    assert info.value.text == text


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="None"),
        pytest.param(256, id="int"),
        pytest.param(f"sha256:{DATA_256}".encode(), id="bytes"),
        pytest.param(["sha256", DATA_256], id="list"),
    ],
)
def test_non_string_digest_is_refused(value: object) -> None:
    with pytest.raises(InvalidDigest, match="not a string") as info:
        parse_digest(value)  # type: ignore[arg-type]
    assert repr(value) in str(info.value)


def test_invalid_digest_is_a_value_error_and_a_pull_error() -> None:
    with pytest.raises(ValueError):
        parse_digest("nope")
    with pytest.raises(PullError):
        parse_digest("nope")


# --- Verifier --------------------------------------------------------------------------------

EXPECTED = Digest("sha256", DATA_256)


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([DATA], id="one-chunk"),
        pytest.param([DATA[:5], DATA[5:]], id="two-chunks"),
        pytest.param([bytes([b]) for b in DATA], id="byte-by-byte"),
        pytest.param([b"", DATA, b""], id="with-empty-chunks"),
        pytest.param([memoryview(DATA)], id="memoryview"),
    ],
)
@pytest.mark.parametrize(
    "size", [pytest.param(len(DATA), id="sized"), pytest.param(None, id="unsized")]
)
def test_verifier_accepts_the_exact_bytes(chunks: list[bytes], size: int | None) -> None:
    v = Verifier(EXPECTED, size, WHERE)
    for c in chunks:
        v.update(c)
    v.verify()
    assert v.size == len(DATA)


def test_verifier_raises_size_mismatch_on_the_chunk_that_goes_past_the_size() -> None:
    v = Verifier(EXPECTED, len(DATA), WHERE)
    v.update(DATA)  # exactly the size: fine so far
    with pytest.raises(SizeMismatch) as info:
        v.update(b"x")  # one byte more: refused now, not at verify()
    e = info.value
    assert str(EXPECTED) in str(e)
    assert WHERE in str(e)
    assert f"more than the expected {len(DATA)} bytes" in str(e)
    assert e.expected == str(len(DATA))
    assert e.got == f">{len(DATA)}"
    assert e.url == WHERE


def test_verifier_raises_size_mismatch_on_one_long_chunk() -> None:
    v = Verifier(EXPECTED, len(DATA), WHERE)
    with pytest.raises(SizeMismatch, match="more than the expected"):
        v.update(DATA + b"x")


def test_verifier_raises_size_mismatch_at_verify_when_one_byte_short() -> None:
    v = Verifier(EXPECTED, len(DATA), WHERE)
    v.update(DATA[:-1])  # short is only known at the end
    with pytest.raises(SizeMismatch) as info:
        v.verify()
    e = info.value
    assert f"expected {len(DATA)} bytes, got {len(DATA) - 1}" in str(e)
    assert str(EXPECTED) in str(e) and WHERE in str(e)
    assert (e.expected, e.got) == (str(len(DATA)), str(len(DATA) - 1))


def test_verifier_size_is_checked_before_digest() -> None:
    # Wrong length *and* wrong content: the size is the clearer message (truncated download).
    v = Verifier(EXPECTED, len(DATA), WHERE)
    v.update(b"short")
    with pytest.raises(SizeMismatch):
        v.verify()


@pytest.mark.parametrize(
    "size", [pytest.param(len(DATA), id="sized"), pytest.param(None, id="unsized")]
)
def test_verifier_wrong_bytes_raise_digest_mismatch_naming_expected_got_and_source(
    size: int | None,
) -> None:
    wrong = DATA[:-1] + b"?"  # same length, different content
    got = Digest("sha256", hashlib.sha256(wrong).hexdigest())
    v = Verifier(EXPECTED, size, WHERE)
    v.update(wrong)
    with pytest.raises(DigestMismatch) as info:
        v.verify()
    e = info.value
    assert str(e) == f"digest mismatch for {EXPECTED} from {WHERE}: got {got}"
    assert e.expected == str(EXPECTED)
    assert e.got == str(got)
    assert e.url == WHERE


def test_verifier_without_source_does_not_say_from() -> None:
    with pytest.raises(DigestMismatch) as info:
        verify_bytes(b"other", EXPECTED)
    assert " from " not in str(info.value)
    assert str(EXPECTED) in str(info.value)


def test_verifier_hashes_with_the_expected_algorithm() -> None:
    verify_bytes(DATA, Digest("sha512", DATA_512), len(DATA))
    with pytest.raises(DigestMismatch) as info:
        verify_bytes(b"other", Digest("sha512", DATA_512))
    assert info.value.got.startswith("sha512:")


@pytest.mark.parametrize(
    ("data", "size", "error"),
    [
        pytest.param(DATA, len(DATA), None, id="exact"),
        pytest.param(DATA + b"x", len(DATA), SizeMismatch, id="one-byte-more"),
        pytest.param(DATA[:-1], len(DATA), SizeMismatch, id="one-byte-less"),
        pytest.param(DATA.upper(), len(DATA), DigestMismatch, id="wrong-bytes"),
        pytest.param(b"", 0, DigestMismatch, id="empty-but-not-empty-digest"),
    ],
)
def test_verify_bytes(data: bytes, size: int, error: type[Exception] | None) -> None:
    if error is None:
        verify_bytes(data, EXPECTED, size, WHERE)
    else:
        with pytest.raises(error):
            verify_bytes(data, EXPECTED, size, WHERE)
