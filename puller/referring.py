"""An image's referrers (signatures, SBOMs, attestations), copied after it: part of the copy
operation (``copying.Copier.copy_all`` calls ``Referrers.of_image`` after each image when asked).

For each manifest of the image (the tag's, and each child of an index) the referrers found at
the source are copied to the target byte for byte, through the Copier as any manifest is (HEADs
first: an unchanged referrer costs a HEAD at each side), and then their own referrers in turn (a
signature of an SBOM), at most ``MAX_DEPTH`` deep and ``MAX_IMAGE_REFERRERS`` in all, each
subject once a run (a listing that goes round in a circle ends there). Where they are found,
in this order:

* the OCI 1.1 Referrers API (``registry.referrers.list_referrers``), filtered by artifact type;
* else (the registry answers 404) the referrers tag schema: the index tagged ``sha256-<hex>``,
  read only when the source's tag list names it;
* and cosign's tags ``sha256-<hex>.sig``, ``.att`` and ``.sbom``, copied under the same tags.

At a target without the Referrers API (its answer to the PUT of a referrer had no
``OCI-Subject``; when no referrer was put, its answer to a listing), the subject's
``sha256-<hex>`` index is created or updated: the descriptors of the referrers copied or there
already are added to those it lists, no entry of it is dropped or changed, and it is written only
when something was added.

Each referrer's result carries ``referrer_of``, the digest of its subject.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from .errors import ManifestError, NotFound, PullError
from .oci.digest import Digest, digest_of, parse_digest
from .oci.manifest import OCI_INDEX, Index, parse_manifest
from .oci.reference import Reference
from .registry.auth import push_scope
from .registry.referrers import Referrer, list_referrers, referrers_in

if TYPE_CHECKING:
    import asyncio

    from .copying import Copier, CopyResult
    from .registry.endpoint import Endpoint
    from .session import Session

#: Referrers of referrers copied this deep below an image's manifests (a subject deeper that
#: has referrers fails).
MAX_DEPTH = 4
#: Referrers found below one image in all (its manifests', theirs, ...): a source may list a
#: thousand of each subject (``MAX_REFERRERS``), four deep; past this, a subject fails.
MAX_IMAGE_REFERRERS = 10_000
#: cosign's tag scheme: a subject's signatures, attestations and SBOMs, by suffix; with an
#: artifact-type filter, a tag is copied when the filter names the type its suffix stands for.
COSIGN_TYPES = {
    ".sig": "application/vnd.dev.cosign.simplesigning.v1+json",
    ".att": "application/vnd.dsse.envelope.v1+json",
    ".sbom": "application/vnd.dev.cosign.sbom",
}
#: The tags of the referrers tag schema and of cosign's scheme: not images of their own.
REFERRER_TAG = re.compile(r"sha256-[0-9a-f]{64}(\.sig|\.att|\.sbom)?")
#: Statuses after which the manifest is (or, in a dry run, would be) at the target.
_THERE = ("copied", "up-to-date", "would-copy")


def referrer_tag(digest: Digest) -> str:
    """The referrers tag schema's tag for ``digest``: ``sha256-<hex>``."""
    return f"{digest.algorithm}-{digest.hex}"


def is_referrer_tag(tag: str) -> bool:
    """Whether ``tag`` belongs to the referrers tag schema or cosign's scheme."""
    return REFERRER_TAG.fullmatch(tag) is not None


class Referrers:
    """The referrers part of one ``copy_all``: what it has done so far, so that a subject's
    referrers are copied once (two tags of one image) and circles end."""

    def __init__(
        self,
        copier: Copier,
        session: Session,
        failed: Callable[[str, str, PullError], CopyResult],
    ) -> None:
        """``failed`` makes a failed result of an error (``copying.failed``)."""
        self._copier = copier
        self._failed = failed
        self._session = session
        self._client = session.client
        self._claimed: set[tuple[str, str, Digest]] = set()  # (target, repository, subject)
        self._no_api: set[str] = set()  # source registries that answered 404
        self._untold: set[str] = set()  # targets whose listing failed: their API unknown
        self._tags: dict[tuple[str, str], asyncio.Task[frozenset[str]]] = {}

    async def of_image(
        self,
        source: Reference,
        target: Reference,
        result: CopyResult,
        types: Sequence[str],
        options: Mapping[str, Any],
        each: Callable[[CopyResult], None],
    ) -> list[CopyResult]:
        """Copy the referrers of the image ``result`` tells of (its manifest and each child),
        of ``types`` only when given; ``each`` hears of each result. None for an image that is
        not at the target, or that is read from the local store (which keeps no referrers)."""
        origin = options.get("origin")
        if result.status not in _THERE or result.digest is None or origin is not None:
            return []
        dry_run = bool(options.get("dry_run", False))
        ratelimit = options.get("ratelimit")  # a sync entry's own "wait" holds for these too
        walk = _Walk(source, target, types, dry_run, each, self._failed, ratelimit)
        digest = parse_digest(result.digest)
        try:
            children = await self._children(walk, digest, result.status)
        except PullError as e:
            return [walk.failed(digest, e)]
        results: list[CopyResult] = []
        for subject in (digest, *children):
            results += await self._subject(walk, subject, 0)
        return results

    async def _children(self, walk: _Walk, digest: Digest, status: str) -> list[Digest]:
        """The manifests an index names (none for a manifest): from the store when it holds the
        index, else from the target (the source in a dry run), then kept in the store (not in a
        dry run)."""
        raw = await self._copier.registry_source.known(digest)
        if raw is None:
            at_target = status != "would-copy"
            where = walk.target if at_target else walk.source
            ref = dataclasses.replace(where, tag=None, digest=digest)
            endpoint = self._session.server(ref)
            resp = await self._session.retried(lambda: self._client.get_manifest(endpoint, ref))
            raw = resp.raw
            if digest_of(raw) != digest:
                raise ManifestError(f"{ref} from {endpoint.url}: its bytes are not {digest}")
            if not walk.dry_run:  # a dry run and a check write nothing, the store included
                with suppress(OSError, PullError):
                    self._session.store.put_bytes(digest, raw, endpoint.url)
        parsed = parse_manifest(raw, None, str(digest))
        return [d.digest for d in parsed.manifests] if isinstance(parsed, Index) else []

    async def _subject(self, walk: _Walk, subject: Digest, depth: int) -> list[CopyResult]:
        """Copy the referrers of ``subject``, then theirs."""
        to = self._session.server(walk.target)
        key = (to.url, walk.target.path, subject)
        if key in self._claimed:
            return []  # done (or being done) for another tag of this image, or a circle
        self._claimed.add(key)
        try:
            found = _once(await self._found(walk, subject))
            cosign = await self._cosign_tags(walk, subject)
        except PullError as e:
            return [walk.failed(subject, e)]
        if depth >= MAX_DEPTH and (found or cosign):
            error = ManifestError(f"referrers nest over {MAX_DEPTH} deep: {subject}'s not copied")
            return [walk.failed(subject, error)]
        walk.found[0] += len(found) + len(cosign)
        if walk.found[0] > MAX_IMAGE_REFERRERS:
            error = ManifestError(
                f"over {MAX_IMAGE_REFERRERS} referrers below {walk.source}: {subject}'s not copied"
            )
            return [walk.failed(subject, error)]
        results: list[CopyResult] = []
        placed: list[Referrer] = []
        for referrer in found:
            ref = (walk.at(walk.source, referrer.digest), walk.at(walk.target, referrer.digest))
            result = await self._copy(walk, subject, *ref)
            results.append(result)
            if result.status in ("copied", "up-to-date"):
                placed.append(referrer)
            results += await self._deeper(walk, result, depth)
        for tag in cosign:
            ref = (walk.tagged(walk.source, tag), walk.tagged(walk.target, tag))
            result = await self._copy(walk, subject, *ref)
            results.append(result)
            results += await self._deeper(walk, result, depth)
        fresh = any(r.status == "copied" and r.referrer_of == str(subject) for r in results)
        if placed and not walk.dry_run:
            try:
                if not fresh and await self._index_tag_there(to, walk.target, subject):
                    pass  # all there already: HEADs only, as an unchanged image costs
                elif await self._lacks_api(to, walk.target, subject):
                    await self._merge_index(to, walk.target, subject, placed)
            except PullError as e:
                results.append(walk.failed(subject, e))
        return results

    async def _index_tag_there(self, to: Endpoint, target: Reference, subject: Digest) -> bool:
        """Whether the target has ``subject``'s ``sha256-<hex>`` tag, by HEAD. A run whose
        referrers were all there already asks no more: one that copied them and failed to
        write the tag left none, and that is repaired; an entry missing from a tag that is
        there is not looked for (a GET of every subject's index on every run)."""
        ref = dataclasses.replace(target, tag=referrer_tag(subject), digest=None)
        client, scope = self._client, push_scope(target.path)
        try:
            await self._session.retried(lambda: client.head_manifest(to, ref, scope=scope))
        except NotFound:
            return False
        return True

    async def _lacks_api(self, to: Endpoint, target: Reference, subject: Digest) -> bool:
        """Whether the target has no Referrers API: as its answer to a referrer's PUT said,
        else asked (a run whose referrers were all there already: one that wrote them may have
        failed to write the index tag)."""
        known = self._client.referrers_api.get(to.url)
        if known is None:
            if to.url in self._untold:
                return False
            client, path = self._client, target.path
            try:
                listed = await self._session.retried(
                    lambda: list_referrers(client, to, path, subject)
                )
            except PullError:  # a registry that answers neither 200 nor 404: no tag written
                self._untold.add(to.url)
                return False
            known = self._client.referrers_api[to.url] = listed is not None
        return not known

    async def _deeper(self, walk: _Walk, result: CopyResult, depth: int) -> list[CopyResult]:
        """The referrers of a referrer just copied."""
        if result.status not in _THERE or result.digest is None:
            return []
        return await self._subject(walk, parse_digest(result.digest), depth + 1)

    async def _copy(
        self, walk: _Walk, subject: Digest, source: Reference, target: Reference
    ) -> CopyResult:
        result = await self._copier.copy(
            source, target, dry_run=walk.dry_run, ratelimit=walk.ratelimit
        )
        result = dataclasses.replace(result, referrer_of=str(subject))
        walk.each(result)
        return result

    async def _found(self, walk: _Walk, subject: Digest) -> list[Referrer]:
        """The referrers of ``subject`` at the source: its Referrers API, else its
        ``sha256-<hex>`` index tag when the source lists that tag."""
        source = walk.source
        endpoint = self._session.server(source)
        if endpoint.url not in self._no_api:
            listed = await self._session.retried(
                lambda: list_referrers(self._client, endpoint, source.path, subject, walk.types)
            )
            if listed is not None:
                return listed
            self._no_api.add(endpoint.url)
        tag = referrer_tag(subject)
        if tag not in await self._source_tags(source):
            return []
        ref = walk.tagged(source, tag)
        _, resp = await self._session.retried(lambda: self._session.fetch_manifest(endpoint, ref))
        return referrers_in(resp.raw, f"{subject} in {source.path}", walk.types)

    async def _cosign_tags(self, walk: _Walk, subject: Digest) -> list[str]:
        """cosign's tags of ``subject`` that the source has (and the filter takes)."""
        tags = await self._source_tags(walk.source)
        base = referrer_tag(subject)
        return [
            base + suffix
            for suffix, kind in COSIGN_TYPES.items()
            if base + suffix in tags and (not walk.types or kind in walk.types)
        ]

    async def _source_tags(self, source: Reference) -> frozenset[str]:
        """The source repository's tags, listed once a run."""
        import asyncio

        key = (self._session.server(source).url, source.path)
        task = self._tags.get(key)
        if task is None:

            async def listing() -> frozenset[str]:
                return frozenset(await self._copier.tags_of(source))

            task = self._tags[key] = asyncio.ensure_future(listing())
        return await asyncio.shield(task)

    async def _merge_index(
        self, to: Endpoint, target: Reference, subject: Digest, placed: Sequence[Referrer]
    ) -> None:
        """Add ``placed`` to the target's ``sha256-<hex>`` index for ``subject`` (made when
        absent), keeping every entry it has; written only when something is new."""
        tag = referrer_tag(subject)
        ref = dataclasses.replace(target, tag=tag, digest=None)
        client = self._client
        try:
            resp = await self._session.retried(lambda: client.get_manifest(to, ref))
            doc = json.loads(resp.raw)
        except NotFound:
            doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        except (ValueError, RecursionError):
            doc = None
        entries = doc.get("manifests") if isinstance(doc, dict) else None
        if not isinstance(doc, dict) or not isinstance(entries, list):
            raise ManifestError(
                f"{ref} at {to.url} is no referrers index: left as it is, {subject}'s "
                "referrers not added to it"
            )
        have = {str(e.get("digest")) for e in entries if isinstance(e, dict)}
        new = [r.raw for r in placed if str(r.digest) not in have]
        if not new:
            return
        doc["manifests"] = [*entries, *new]
        raw = json.dumps(doc, indent=3).encode()
        await self._copier.put_manifest(to, target.path, tag, raw, OCI_INDEX)


@dataclasses.dataclass(frozen=True, slots=True)
class _Walk:
    """One image's referrers: where from, where to, which, and who hears of each."""

    source: Reference
    target: Reference
    types: tuple[str, ...] | Sequence[str]
    dry_run: bool
    each: Callable[[CopyResult], None]
    make_failed: Callable[[str, str, PullError], CopyResult]
    ratelimit: str | None = None
    #: how many referrers were found below the image so far (``MAX_IMAGE_REFERRERS``)
    found: list[int] = dataclasses.field(default_factory=lambda: [0])

    @staticmethod
    def at(ref: Reference, digest: Digest) -> Reference:
        return dataclasses.replace(ref, tag=None, digest=digest)

    @staticmethod
    def tagged(ref: Reference, tag: str) -> Reference:
        return dataclasses.replace(ref, tag=tag, digest=None)

    def failed(self, subject: Digest, e: PullError) -> CopyResult:
        """A failed result for the referrers of ``subject`` (heard by ``each``)."""
        source, target = self.at(self.source, subject), self.at(self.target, subject)
        result = self.make_failed(str(source), str(target), e)
        result = dataclasses.replace(result, referrer_of=str(subject))
        self.each(result)
        return result


def _once(found: Sequence[Referrer]) -> list[Referrer]:
    """Each referrer once, in the listing's order: a listing may name one many times."""
    first: dict[Digest, Referrer] = {}
    for referrer in found:
        first.setdefault(referrer.digest, referrer)
    return list(first.values())


def without_referrer_tags(select: Callable[[str], bool]) -> Callable[[str], bool]:
    """``select`` less the tags of the referrers schemes: with referrers copied, those come
    with the images they refer to, not as images of their own."""
    return lambda tag: not is_referrer_tag(tag) and select(tag)


def referrer_options(
    referrers: bool, types: Sequence[str], options: Mapping[str, Any]
) -> dict[str, Any]:
    """A sync entry's referrers options for ``Copier.copy_all``: its own ``referrers`` (and
    artifact types) over the command's (``--referrers``)."""
    if referrers:
        return {"referrers": True, "artifact_types": tuple(types)}
    return {"referrers": bool(options.get("referrers", False)), "artifact_types": ()}
