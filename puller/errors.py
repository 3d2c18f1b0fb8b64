"""The exception tree of pypull.

Every error the library raises on purpose is a ``PullError``; the CLI prints it as one line.

    PullError
    ├── InvalidReference        (also ValueError) a reference string that does not parse
    ├── InvalidDigest           (also ValueError) not algorithm:hex of the right length
    ├── ManifestError           a manifest we refuse: bad JSON, too large, schema1, unknown type
    │   └── PlatformNotFound    an index without an entry for the requested platform
    ├── RegistryError           the registry answered with an error (status, code, url)
    │   ├── NotFound            404 / MANIFEST_UNKNOWN / BLOB_UNKNOWN / NAME_UNKNOWN
    │   ├── Unauthorized        401 / 403 after auth was attempted
    │   ├── QuotaExhausted      429 with ratelimit-remaining: 0: asking again cannot help
    │   ├── TLSFailure          a TLS handshake or certificate that failed (no HTTP answer)
    │   └── Unreachable         no HTTP answer at all: refused, reset, DNS, timeout (timed_out)
    ├── VerificationError       content that is not what its descriptor promised
    │   ├── DigestMismatch      expected, got
    │   └── SizeMismatch        expected, got
    ├── ConfigError             a setting that cannot be used (file:line, variable or flag)
    │   └── SyncFileError       a sync file that cannot be used (FILE:LINE: sync.KEY: ...)
    ├── CredentialError         credentials that cannot be read or stored (path, helper)
    ├── ArchiveError            a ``pypull load`` archive that is not a tar of an image
    ├── UnusableProxy           (also ValueError; in ``http.proxy``: its message masks a
    │                           password) a proxy setting that cannot be used
    ├── StoreError              the local store cannot be read or written (path)
    ├── UnpackError             a layer that cannot or must not be unpacked or exported
    └── LockError               a target repository's lock cannot be taken (path)
        └── TargetBusy          another process holds it, and waiting was not wanted (repository)

Every ``PullError`` is defined here but ``UnusableProxy``. The packages below keep trees of their
own that never reach a user as they are: ``http.errors`` (``WireError``, ``BodyTimeout``), which
``registry.status`` maps to the errors above, and ``tar.errors`` (``TarError``), which unpack,
export and load raise as ``UnpackError`` or ``ArchiveError``.

Every error also has a stable ``code`` for scripts, one of ``CODES``: ``error_code`` derives it
from the exception's type and data, in one place, for every command's JSON and exit.

Messages quote outside text (a registry's platform names, a helper's words) through
``text.shown``: escaped and bounded, so that ``str(e)`` is one printable line.

This module imports nothing of ours but ``text`` (itself a leaf), so every other module may
import it.
"""

from __future__ import annotations

from .text import shown


class PullError(Exception):
    """Base of every error pypull raises deliberately."""

    #: When several endpoints were tried, every error they gave; this one is the most telling
    #: (see ``most_relevant``), and the others still decide whether trying again may help.
    attempts: tuple[PullError, ...] = ()


class InvalidReference(PullError, ValueError):
    """A reference string that is not a valid image reference."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"invalid reference {text!r}: {reason}")


class InvalidDigest(PullError, ValueError):
    """A digest string that is not ``algorithm:hex`` with a supported algorithm."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"invalid digest {text!r}: {reason}")


class ManifestError(PullError):
    """A manifest that cannot or must not be used."""


class PlatformNotFound(ManifestError):
    """An image index has no manifest for the wanted platform.

    ``available`` keeps every platform the index names; the message lists the first
    ``LISTED`` distinct ones, each escaped and cut to ``NAME_LIMIT`` characters, and counts the
    rest, so a hostile index of thousands of entries still makes a short line.
    """

    LISTED = 10
    NAME_LIMIT = 40

    def __init__(self, wanted: str, available: list[str], where: str = "") -> None:
        self.wanted = wanted
        self.available = available
        distinct = list(dict.fromkeys(available))
        have = ", ".join(shown(p, self.NAME_LIMIT) for p in distinct[: self.LISTED]) or "none"
        if len(distinct) > self.LISTED:
            have += f" and {len(distinct) - self.LISTED} more"
        at = f" in {shown(where)}" if where else ""
        super().__init__(f"no manifest for platform {shown(wanted, 100)}{at} (available: {have})")


class RegistryError(PullError):
    """The registry answered, but not with what we asked for."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.url = url
        self.retry_after = retry_after  # seconds the registry asked us to wait (429/503)
        super().__init__(message)


class NotFound(RegistryError):
    """The manifest, blob or repository does not exist on the registry."""


class Unauthorized(RegistryError):
    """The registry refused our credentials or anonymous access."""


class QuotaExhausted(RegistryError):
    """A 429 that says the pull quota is spent (``ratelimit-remaining: 0``, Docker Hub's
    header): not retried, as the quota comes back in hours, not seconds."""


class Unreachable(RegistryError):
    """No HTTP answer: connection refused or reset, name resolution failed, or a timeout
    (``timed_out``)."""

    def __init__(self, message: str, *, url: str = "", timed_out: bool = False) -> None:
        self.timed_out = timed_out
        super().__init__(message, url=url)


class TLSFailure(RegistryError):
    """A TLS handshake that failed for good: a certificate that does not verify, plain HTTP on
    the port, no protocol in common."""


class VerificationError(PullError):
    """Content that does not match its descriptor."""

    def __init__(self, message: str, *, expected: str, got: str, url: str = "") -> None:
        self.expected = expected
        self.got = got
        self.url = url
        super().__init__(message)


class DigestMismatch(VerificationError):
    """The bytes hash to another digest than the one asked for."""


class SizeMismatch(VerificationError):
    """The bytes are longer or shorter than the descriptor says."""


class StoreError(PullError):
    """The local store cannot be read or written."""

    def __init__(self, message: str, *, path: str = "") -> None:
        self.path = path
        super().__init__(message)


class LockError(PullError):
    """The lock of a target repository cannot be taken (its directory is unusable)."""

    def __init__(self, message: str, *, path: str = "") -> None:
        self.path = path
        super().__init__(message)


class TargetBusy(LockError):
    """Another process holds the lock of the target repository ``repository``, and the caller
    asked not to wait for it."""

    def __init__(self, repository: str, *, path: str = "") -> None:
        self.repository = repository
        super().__init__(f"{shown(repository)} is busy: another pypull is writing to it", path=path)


def most_relevant(errors: list[PullError]) -> PullError:
    """The error most worth showing after every endpoint failed.

    Someone serving wrong bytes matters more than a registry saying no, which matters more than an
    upstream we could not reach at all (a mirror's 404 explains more than an offline fallback).
    Among equals, the last endpoint's error wins.
    """

    def rank(e: PullError) -> int:
        if isinstance(e, VerificationError):
            return 3
        if isinstance(e, ManifestError):
            return 2
        if isinstance(e, Unreachable):
            return 0
        return 1

    best = errors[0]
    for e in errors[1:]:
        if rank(e) >= rank(best):
            best = e
    if len(errors) > 1:
        best.attempts = tuple(errors)
    return best


class UnpackError(PullError):
    """A layer that cannot or must not be unpacked: a bad tar, an entry that would escape, a
    type pypull does not write; or a directory that cannot be written."""


class ConfigError(PullError):
    """A configuration file, variable or flag that cannot be used; says where."""


class SyncFileError(ConfigError):
    """A sync file that cannot be used: unreadable, not TOML, or an entry that breaks a rule;
    the message says where (``FILE:LINE: sync.KEY: ...``)."""


class CredentialError(PullError):
    """Credentials cannot be read or stored: a broken config file or a failing helper."""

    def __init__(self, message: str, *, path: str = "", helper: str = "") -> None:
        self.path = path  # the config file involved, if any
        self.helper = helper  # the helper program involved, if any
        super().__init__(" ".join(message.split()))  # always one line


class ArchiveError(PullError):
    """An archive that is not a tar of an image, or that tries something (a path out of the
    archive, a header of gigabytes)."""


#: The stable codes of failures, as ``--format json`` prints them (``error`` events, failed
#: records, verify's ``problem`` lines), each with what it means; the README's table lists them.
CODES: dict[str, str] = {
    "not-found": "the image, tag, repository or blob does not exist (404, an unknown platform)",
    "unauthorized": "the registry wants credentials, or refused those given (401)",
    "denied": "the credentials are not allowed to do this (403, DENIED)",
    "rate-limited": "the registry's pull quota is spent (429), or below rate_limit_reserve",
    "unreachable": "no HTTP answer: connection refused or reset, a name that does not resolve",
    "timeout": "no answer, or no progress, within --timeout",
    "tls": "a TLS handshake or certificate that failed",
    "digest-mismatch": "content that is not what its digest or size promised",
    "invalid-reference": "an image reference or digest that does not parse",
    "invalid-input": "a file, archive, setting or argument that cannot be used",
    "no-match": "a sync entry whose filters select no tag (unless --allow-empty)",
    "storage": "the local store (or a lock, or an output file) cannot be read or written",
    "busy": "another pypull is writing to the target repository (--no-wait)",
    "interrupted": "interrupted (Ctrl-C, SIGINT)",
    "server-error": "the registry answered with a 5xx after every retry",
    "protocol": "an answer pypull cannot use: a refused manifest, an unexpected status",
    "other": "anything else; the message says what",
}


def error_code(e: BaseException) -> str:
    """The stable code (a key of ``CODES``) of an error, from its type and data."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted"
    if isinstance(e, (InvalidReference, InvalidDigest)):
        return "invalid-reference"
    if isinstance(e, (NotFound, PlatformNotFound)):
        return "not-found"
    if isinstance(e, VerificationError):
        return "digest-mismatch"
    if isinstance(e, RegistryError):
        return _registry_code(e)
    if isinstance(e, TargetBusy):
        return "busy"
    if isinstance(e, (StoreError, LockError, OSError)):
        return "storage"
    if isinstance(e, (ConfigError, CredentialError, ArchiveError, UnpackError)):
        return "invalid-input"
    if isinstance(e, ManifestError):
        return "protocol"
    return "other"


def _registry_code(e: RegistryError) -> str:
    if isinstance(e, TLSFailure):
        return "tls"
    if isinstance(e, Unreachable):
        return "timeout" if e.timed_out else "unreachable"
    if isinstance(e, QuotaExhausted) or e.status == 429 or e.code == "TOOMANYREQUESTS":
        return "rate-limited"
    if e.status == 403 or e.code == "DENIED":
        return "denied"
    if e.status == 401:  # an Unauthorized without a status: an auth exchange we refuse
        return "unauthorized"
    if e.status is not None and e.status >= 500:
        return "server-error"
    return "protocol"
