"""Deleting a manifest from a repository (``DELETE /v2/<name>/manifests/<reference>``), for a
sync that deletes what left its source.

A registry may untag (a DELETE by tag, which the OCI distribution spec allows and distribution
3 does); distribution 2.8 cannot: it answers a DELETE by tag 400 ``DIGEST_INVALID`` (405
``UNSUPPORTED`` when deletion is off), and deletes only by digest, every tag that points there
with it. ``delete_manifest`` says which happened; what may be deleted by digest is the caller's
to decide (``sync.delete``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import RegistryError
from .status import error_body, error_detail, raise_status

if TYPE_CHECKING:
    from .client import RegistryClient
    from .endpoint import Endpoint

__all__ = ["delete_manifest", "delete_scope"]


def delete_scope(path: str) -> str:
    """The token scope of a deletion: distribution asks for ``delete`` beside pull and push."""
    return f"repository:{path}:pull,push,delete"


async def delete_manifest(
    client: RegistryClient, endpoint: Endpoint, path: str, reference: str
) -> bool:
    """DELETE the manifest ``reference`` (a tag or a digest) of repository ``path``: True when
    it is gone (202, 200, 204; a 404 with a registry error code: gone already; a bare 404, as a
    server without the route answers, raises), False when the registry does not delete
    by tag (a tag answered 400 or 405, as distribution 2.8 answers). A digest answered 405
    raises a ``RegistryError`` that says the registry does not delete (distribution: without
    ``storage.delete.enabled``); any other answer raises what it means."""
    url = f"{endpoint.url}/v2/{path}/manifests/{reference}"
    by_digest = reference.startswith("sha256:") or reference.startswith("sha512:")
    async with client.request(
        endpoint, path, url, {}, method="DELETE", scope=delete_scope(path)
    ) as resp:
        if resp.status in (200, 202, 204):
            return True
        if resp.status in (400, 405) and not by_digest:
            return False
        body = await error_body(resp)
        if resp.status == 404:
            if error_detail(body)[0] is not None:  # the registry's own "unknown": gone already
                return True
            raise RegistryError(
                f"manifest {reference} of {path} at {url}: {endpoint.host} answered 404 without"
                " a registry error (no DELETE there, a proxy in front?): not deleted",
                status=404,
                url=url,
            )
        if resp.status == 405:
            code, message = error_detail(body)
            said = f" ({code}: {message})" if code and message else ""
            raise RegistryError(
                f"manifest {reference} of {path} at {url}: {endpoint.host} does not delete"
                f" manifests{said} (a distribution registry needs storage.delete.enabled:"
                " true)",
                status=405,
                code=code,
                url=url,
            )
        raise_status(resp.status, resp.headers, body, f"deletion of {path}:{reference}", url)
