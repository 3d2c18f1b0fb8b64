"""What a copy (or a sync's deletion step) came to: ``CopyResult``, one per image or tag, and
the record ``--format json`` prints for it. Apart from ``copying`` so that what reports results
(the sync's deletion, the referrers walk, the CLI) needs no copier to name them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import PullError, error_code
from .events import SCHEMA_VERSION

__all__ = ["STATUSES", "CopyResult", "failed"]

#: What a copy (or a sync's deletion step, ``sync.delete``) can come to, in the order a
#: summary lists them.
STATUSES = (
    "copied",
    "up-to-date",
    "would-copy",
    "deferred",
    "failed",
    "deleted",
    "would-delete",
    "kept-shared",
    "delete-skipped",
)


@dataclass(frozen=True, slots=True)
class CopyResult:
    """What one copy did: ``status`` is one of ``STATUSES``."""

    source: str
    target: str
    status: str
    digest: str | None = None
    uploaded: int = 0
    mounted: int = 0
    existing: int = 0
    bytes_uploaded: int = 0
    error: str | None = None
    #: with ``error``: its stable code (``errors.CODES``)
    code: str | None = None
    #: the host of the registry that refused, when one did (where credentials would go)
    registry: str | None = None
    #: a referrer (signature, SBOM) copied after its subject: the subject's digest
    referrer_of: str | None = None

    def to_json(self) -> str:
        """One line of ``--json``: ``to_dict()`` as JSON text."""
        return json.dumps(self.to_dict())

    def as_json(self) -> dict[str, Any]:
        """``to_dict()``, under its former name."""
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """The record ``--format json`` prints for the image (``"event": "image"``), as a dict."""
        referrer = {} if self.referrer_of is None else {"referrer_of": self.referrer_of}
        return {
            "event": "image",
            "v": SCHEMA_VERSION,
            "source": self.source,
            "target": self.target,
            "digest": self.digest,
            "status": self.status,
            "blobs": {
                "uploaded": self.uploaded,
                "mounted": self.mounted,
                "existing": self.existing,
            },
            "bytes_uploaded": self.bytes_uploaded,
            "error": self.error,
            "code": self.code,
            **referrer,
        }


def failed(source: str, target: str, e: PullError) -> CopyResult:
    """A "failed" result of ``e``: its message, its code, the registry that refused."""
    from urllib.parse import urlsplit

    url = getattr(e, "url", "") or ""
    host = urlsplit(url).netloc if "://" in url else ""
    return CopyResult(
        source, target, "failed", error=str(e), code=error_code(e), registry=host or None
    )
