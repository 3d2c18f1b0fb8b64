"""Image references: ``[host[:port]/]path[:tag][@digest]``, normalized the way docker does it.

``parse`` follows ``ParseNormalizedNamed`` from github.com/distribution/reference (the code behind
``docker pull``), so a name means here what it means to docker: ``redis`` is
``docker.io/library/redis:latest``, ``user/app`` is ``docker.io/user/app:latest``, and a first
component is a registry host only if it looks like one (``.``, ``:``, ``localhost``, or uppercase
letters, which a repository name may not have). One documented difference: a first component that is
taken as a host must also be a valid host, where distribution would quietly accept
``foo_bar.com/app`` as a name without any host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidDigest, InvalidReference
from .digest import Digest, parse_digest

__all__ = ["Reference", "parse"]

_DEFAULT_DOMAIN = "docker.io"
_LEGACY_DEFAULT_DOMAIN = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
_DEFAULT_TAG = "latest"
_LOCALHOST = "localhost"

# distribution counts only the path ("library/redis"), not the host: reference PR #9, v0.6.0.
_MAX_PATH_LENGTH = 255

# The grammar of distribution/reference regexp.go. Spelled in ASCII classes, not \w or \d: those are
# Unicode in Python, ASCII in Go.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = re.compile(rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6_ADDRESS = r"\[[a-fA-F0-9:]+\]"  # no zone ("%eth0"), no dotted IPv4 tail
_DOMAIN = re.compile(rf"(?:{_DOMAIN_NAME}|{_IPV6_ADDRESS})(?::[0-9]+)?")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_IMAGE_ID = re.compile(r"[a-f0-9]{64}")

_PATH_RULE = (
    "use lowercase letters and digits, joined by '.', '_', '__' or dashes, "
    "starting and ending with a letter or digit"
)
_TAG_RULE = "a tag is 1 to 128 letters, digits, '_', '.' or '-', and cannot start with '.' or '-'"


def valid_tag(text: str) -> bool:
    """Whether ``text`` is a tag (a registry's tag list may hold anything)."""
    return _TAG.fullmatch(text) is not None


def valid_repository(text: str) -> bool:
    """Whether ``text`` is a repository's path at a registry (``library/redis``): what a
    record read from a file may hold is checked with this before it goes into a URL."""
    return 0 < len(text) <= _MAX_PATH_LENGTH and all(
        _PATH_COMPONENT.fullmatch(c) for c in text.split("/")
    )


_DOMAIN_RULE = "expected a host name or IP address with an optional :port, such as localhost:5000"


@dataclass(frozen=True, slots=True)
class Reference:
    """A fully qualified image reference; ``str()`` gives the canonical form back.

    ``tag`` and ``digest`` may both be set (``name:tag@digest``): the digest then decides what is
    pulled, and the tag is kept so the store can record it.
    """

    domain: str
    path: str
    tag: str | None
    digest: Digest | None

    def __str__(self) -> str:
        return self.name + self._suffix()

    @property
    def suffix(self) -> str:
        """``:tag``, ``@digest`` or both, as in the canonical form."""
        return self._suffix()

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest

    @property
    def name(self) -> str:
        """The repository without tag or digest, e.g. ``docker.io/library/redis``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The name as docker shows it: ``redis``, ``user/app``, ``ghcr.io/o/r``."""
        if self.domain != _DEFAULT_DOMAIN:
            return self.name
        official = self.path.removeprefix(_OFFICIAL_PREFIX)
        # Only a single-component official image is shortened, as docker's familiarizeName does.
        if official != self.path and "/" not in official:
            return official
        return self.path

    @property
    def familiar(self) -> str:
        """docker's FamiliarString, for messages a docker user recognizes: ``redis:latest``."""
        return self.familiar_name + self._suffix()

    @property
    def identifier(self) -> str:
        """What goes in ``/v2/<path>/manifests/<identifier>``: the digest pins it when present."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag if self.tag is not None else _DEFAULT_TAG

    @property
    def is_docker_hub(self) -> bool:
        """Docker Hub is served from another host (registry-1.docker.io) than its name says."""
        return self.domain == _DEFAULT_DOMAIN


def names_image(text: str) -> bool:
    """Whether a reference as written gives a tag or a digest (``parse`` adds ``latest``
    where it gives neither)."""
    last = text.rsplit("/", 1)[-1]
    return ":" in last or "@" in last


def parse(text: str) -> Reference:
    """Parse and normalize a reference as ``docker pull`` would; raise ``InvalidReference``.

    The tag defaults to ``latest`` only when neither a tag nor a digest is given.
    """
    if not isinstance(text, str):
        raise InvalidReference(repr(text), "not a string")
    if not text:
        raise InvalidReference(text, "empty reference")
    if _IMAGE_ID.fullmatch(text):
        # docker refuses these so that an image ID is never mistaken for a repository name.
        raise InvalidReference(
            text, "cannot specify 64-byte hexadecimal strings (that is an image ID, not a name)"
        )
    scheme, sep, _ = text.partition("://")
    if sep:
        raise InvalidReference(text, f"a reference is not a URL: remove '{scheme}://'")

    name_and_tag, at, digest_text = text.partition("@")
    digest: Digest | None = None
    if at:
        try:
            digest = parse_digest(digest_text)
        except InvalidDigest as exc:
            raise InvalidReference(text, f"invalid digest {digest_text!r}: {exc.reason}") from exc

    colon = name_and_tag.rfind(":")
    if colon > name_and_tag.rfind("/"):  # a ':' after the last '/' starts the tag, before it a port
        name, tag = name_and_tag[:colon], name_and_tag[colon + 1 :]
    else:
        name, tag = name_and_tag, None

    if not name:
        raise InvalidReference(text, "missing repository name")
    if "/" not in name and name.startswith("["):
        raise InvalidReference(
            text, "a registry host alone is not a reference: add a repository path, as in host/name"
        )
    domain, remote = _split_domain(text, name)
    _check_remote(text, domain, remote)
    if domain == _DEFAULT_DOMAIN and "/" not in remote:
        remote = _OFFICIAL_PREFIX + remote

    if tag is not None and not _TAG.fullmatch(tag):
        raise InvalidReference(text, f"invalid tag {tag!r}: {_TAG_RULE}")

    if len(remote) > _MAX_PATH_LENGTH:
        raise InvalidReference(
            text, f"repository name too long ({len(remote)} > {_MAX_PATH_LENGTH} characters)"
        )

    if tag is None and digest is None:
        tag = _DEFAULT_TAG
    return Reference(domain, remote, tag, digest)


def _split_domain(text: str, name: str) -> tuple[str, str]:
    """Split ``name`` into registry host and repository path, docker's way (splitDockerDomain).

    The first component is a host when it contains '.' or ':', is ``localhost``, or has uppercase
    letters (which a repository name may not have); otherwise the image is on Docker Hub.
    """
    first, slash, remainder = name.partition("/")
    if not slash:
        return _DEFAULT_DOMAIN, name
    if first == _LEGACY_DEFAULT_DOMAIN:
        return _DEFAULT_DOMAIN, remainder
    looks_like_host = "." in first or ":" in first or first == _LOCALHOST
    if not looks_like_host and first == first.lower():
        return _DEFAULT_DOMAIN, name
    if not _DOMAIN.fullmatch(first):
        if not looks_like_host:  # taken as a host only for its uppercase letters
            raise InvalidReference(text, f"repository name must be lowercase: {name!r}")
        raise InvalidReference(text, f"invalid registry host {first!r}: {_DOMAIN_RULE}")
    return first, remainder


def _check_remote(text: str, domain: str, remote: str) -> None:
    """Validate the repository path the user wrote, before ``library/`` is added."""
    if not remote:
        raise InvalidReference(text, f"missing repository name after registry host {domain!r}")
    if remote != remote.lower():
        raise InvalidReference(text, f"repository name must be lowercase: {remote!r}")
    for component in remote.split("/"):
        if not component:
            raise InvalidReference(
                text, "repository name has an empty path component (a '//' or a trailing '/')"
            )
        if not _PATH_COMPONENT.fullmatch(component):
            raise InvalidReference(
                text, f"invalid repository name component {component!r}: {_PATH_RULE}"
            )
