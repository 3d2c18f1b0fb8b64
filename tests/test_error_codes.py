"""Every failure has a stable code for scripts, derived in one place (``errors.error_code``)
from the error's type and data, and every code it gives is one the README documents."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from puller.errors import (
    CODES,
    ArchiveError,
    ConfigError,
    DigestMismatch,
    InvalidDigest,
    InvalidReference,
    LockError,
    ManifestError,
    NotFound,
    PlatformNotFound,
    PullError,
    QuotaExhausted,
    RegistryError,
    SizeMismatch,
    StoreError,
    SyncFileError,
    TargetBusy,
    TLSFailure,
    Unauthorized,
    Unreachable,
    error_code,
)
from puller.http.errors import BodyTimeout
from puller.registry.status import tls_error, transport_error

URL = "https://registry.example/v2/"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NotFound("gone", status=404, url=URL), "not-found"),
        (PlatformNotFound("linux/s390x", ["linux/amd64"]), "not-found"),
        (Unauthorized("no", status=401, url=URL), "unauthorized"),
        (Unauthorized("refusing token realm http://10.0.0.1/", url=URL), "protocol"),
        (Unauthorized("no", status=403, url=URL), "denied"),
        (RegistryError("no", status=401, code="DENIED"), "denied"),
        (QuotaExhausted("spent", status=429), "rate-limited"),
        (RegistryError("slow down", status=429), "rate-limited"),
        (Unreachable("refused", url=URL), "unreachable"),
        (Unreachable("silent", url=URL, timed_out=True), "timeout"),
        (TLSFailure("bad certificate", url=URL), "tls"),
        (DigestMismatch("bad", expected="a", got="b"), "digest-mismatch"),
        (SizeMismatch("short", expected="1", got="0"), "digest-mismatch"),
        (InvalidReference("UPPER/Case", "must be lowercase"), "invalid-reference"),
        (InvalidDigest("sha256:x", "too short"), "invalid-reference"),
        (ConfigError("bad setting"), "invalid-input"),
        (SyncFileError("sync.toml:3: bad"), "invalid-input"),
        (ArchiveError("not a tar"), "invalid-input"),
        (StoreError("read-only", path="/s"), "storage"),
        (LockError("no lock dir"), "storage"),
        (PermissionError("denied"), "storage"),
        (TargetBusy("r/app"), "busy"),
        (KeyboardInterrupt(), "interrupted"),
        (RegistryError("HTTP 503", status=503), "server-error"),
        (RegistryError("HTTP 400", status=400), "protocol"),
        (ManifestError("schema1"), "protocol"),
        (PullError("something else"), "other"),
    ],
)
def test_each_error_has_its_code(error: BaseException, code: str) -> None:
    assert error_code(error) == code
    assert code in CODES


def test_a_timeout_below_http_is_timeout_and_a_refusal_unreachable() -> None:
    assert error_code(transport_error("cannot reach", URL, asyncio.TimeoutError())) == "timeout"
    assert error_code(transport_error("cannot reach", URL, BodyTimeout("silent"))) == "timeout"
    assert error_code(transport_error("cannot reach", URL, ConnectionRefusedError())) == (
        "unreachable"
    )


def test_a_certificate_that_does_not_verify_is_tls_and_not_retried() -> None:
    failure = ssl.SSLCertVerificationError(1, "certificate verify failed")
    failure.verify_message = "self-signed certificate"  # as ssl sets it
    for error in (tls_error("cannot reach", URL, failure), transport_error("x", URL, failure)):
        assert error_code(error) == "tls"
        assert not isinstance(error, Unreachable)
