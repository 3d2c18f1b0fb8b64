"""The OCI 1.1 Referrers API, read side: ``GET /v2/<name>/referrers/<digest>`` answers an image
index whose ``manifests`` are the descriptors of the manifests whose ``subject`` is ``digest``
(signatures, SBOMs, attestations), each with its ``artifactType`` and ``annotations``.

A registry without the API answers 404 (``None`` here: the caller falls back to the referrers
tag schema, the ``sha256-<hex>`` index tag). ``?artifactType=`` asks the registry to filter; one
that did says so in ``OCI-Filters-Applied``, and the descriptors are filtered here again anyway,
so an answer that ignored the filter changes nothing. Pages follow ``Link: rel="next"`` on the
registry's own origin, at most ``MAX_REFERRER_PAGES`` of them and ``MAX_REFERRERS`` descriptors
in all; each page is read as a manifest is (``MAX_MANIFEST_SIZE``).

Whether a target registry has the API is learnt from a manifest PUT, as the distribution spec
says: a manifest with a ``subject`` answered without ``OCI-Subject`` means no
(``upload.Uploads.put_manifest`` records it in ``referrers_api``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ..errors import InvalidDigest, ManifestError, RegistryError
from ..http.errors import WireError
from ..oci.digest import Digest, parse_digest
from ..oci.manifest import MAX_MANIFEST_SIZE, OCI_INDEX
from .links import next_page
from .status import raise_for_status, transport_error

if TYPE_CHECKING:
    from .client import RegistryClient
    from .endpoint import Endpoint

#: Referrers of one subject taken from a registry (one page or many), and pages of one listing.
MAX_REFERRERS = 1000
MAX_REFERRER_PAGES = 100


@dataclass(frozen=True, slots=True)
class Referrer:
    """One descriptor of a referrers listing: ``raw`` is the descriptor as the registry gave
    it (what a referrers index at the target lists), the rest its checked fields."""

    digest: Digest
    media_type: str
    size: int
    artifact_type: str | None
    raw: dict[str, Any]


def referrers_in(raw: bytes, where: str, types: Sequence[str] = ()) -> list[Referrer]:
    """The descriptors of a referrers index (an API page or a ``sha256-<hex>`` tag's index),
    those of ``types`` only when given; a descriptor that is no descriptor is an error."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise ManifestError(f"referrers of {where}: not JSON") from None
    entries = doc.get("manifests") if isinstance(doc, dict) else None
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ManifestError(f"referrers of {where}: no list of manifests")
    found: list[Referrer] = []
    for entry in entries:
        referrer = _descriptor(entry, where)
        if not types or referrer.artifact_type in types:
            found.append(referrer)
    if len(found) > MAX_REFERRERS:
        raise ManifestError(f"referrers of {where}: over {MAX_REFERRERS} of them")
    return found


def _descriptor(entry: Any, where: str) -> Referrer:
    if not isinstance(entry, dict):
        raise ManifestError(f"referrers of {where}: an entry that is no descriptor")
    media_type, size, kind = entry.get("mediaType"), entry.get("size"), entry.get("artifactType")
    try:
        digest = parse_digest(str(entry.get("digest")))
    except InvalidDigest:
        raise ManifestError(f"referrers of {where}: an entry without a valid digest") from None
    if not isinstance(media_type, str) or not isinstance(size, int) or size < 0:
        raise ManifestError(f"referrers of {where}: {digest} has no media type or size")
    if kind is not None and not isinstance(kind, str):
        raise ManifestError(f"referrers of {where}: {digest} has an artifactType that is no text")
    return Referrer(digest, media_type, size, kind, entry)


async def list_referrers(
    client: RegistryClient,
    endpoint: Endpoint,
    path: str,
    subject: Digest,
    types: Sequence[str] = (),
) -> list[Referrer] | None:
    """The referrers of ``subject`` in ``path`` through the Referrers API (of ``types`` only,
    when given); None when the registry has no such API (404)."""
    url = f"{endpoint.url}/v2/{path}/referrers/{subject}"
    if len(types) == 1:
        url += "?" + urlencode({"artifactType": types[0]})
    where = f"{subject} in {path}"
    found: list[Referrer] = []
    seen = {url}
    for _ in range(MAX_REFERRER_PAGES):
        async with client.request(endpoint, path, url, {"Accept": OCI_INDEX}) as resp:
            if resp.status == 404 and not found:
                return None
            if resp.status != 200:
                await raise_for_status(resp, f"referrers of {where}", url)
            try:
                body = await resp.read(MAX_MANIFEST_SIZE + 1)
            except (OSError, asyncio.TimeoutError, WireError) as e:
                raise transport_error(f"reading referrers from {url} failed", url, e) from e
            link = resp.headers.get("Link")
        if len(body) > MAX_MANIFEST_SIZE:
            raise ManifestError(f"referrers of {where} from {url}: a page over 4 MiB")
        found += referrers_in(body, where, types)
        if len(found) > MAX_REFERRERS:
            raise ManifestError(f"referrers of {where}: over {MAX_REFERRERS} of them")
        following = next_page(url, link, endpoint.url, seen, f"referrers of {where}")
        if following is None:
            return found
        url = following
    raise RegistryError(f"referrers of {where}: more than {MAX_REFERRER_PAGES} pages", url=url)
