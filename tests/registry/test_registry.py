"""Pure rules of the registry client: which endpoints, which scheme, which token realms."""

from __future__ import annotations

import pytest

from fixtures.registry import Registry
from puller.errors import RegistryError, Unreachable
from puller.http.hosts import is_loopback, realm_refusal
from puller.oci.reference import parse
from puller.registry.client import RegistryClient
from puller.registry.endpoint import (
    DOCKER_HUB_URL,
    Endpoint,
    endpoint_for_domain,
    normalize_mirror,
)
from puller.registry.retry import is_temporary
from tests.support.rawhttp import RawServer, answering, http


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1", True),
        ("127.1.2.3:80", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("10.0.0.1:5000", False),
        ("registry.example", False),
        ("localhost.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("domain", "url"),
    [
        ("docker.io", DOCKER_HUB_URL),
        ("localhost:5000", "http://localhost:5000"),
        ("127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("[::1]:5000", "http://[::1]:5000"),
        ("ghcr.io", "https://ghcr.io"),
        ("10.0.0.1:5000", "https://10.0.0.1:5000"),
    ],
    ids=lambda v: str(v),
)
def test_registry_names_map_to_https_except_loopback(domain: str, url: str) -> None:
    assert endpoint_for_domain(domain).url == url


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("http://127.0.0.1:5000/", "http://127.0.0.1:5000"),
        ("https://mirror.example/v2", "https://mirror.example"),
        ("mirror.example", "https://mirror.example"),
        ("localhost:5000", "http://localhost:5000"),
    ],
)
def test_mirror_urls_are_normalized(given: str, url: str) -> None:
    assert normalize_mirror(given) == Endpoint(url, mirror=True)


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("ftp://mirror.example", "expected http://"),
        ("https://mirror.example/some/path", "give no path"),
        ("http://alice:secret@127.0.0.1:5000", "credentials do not belong"),
        ("alice:secret@mirror.example", "credentials do not belong"),
    ],
)
def test_bad_mirror_urls_are_refused_without_echoing_a_password(given: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as info:
        normalize_mirror(given)
    assert "secret" not in str(info.value)


def test_mirror_shorthand_serves_docker_hub_images_only() -> None:
    """``mirrors=`` (``--mirror``) is Docker Hub's list, as Docker's registry-mirrors; other
    registries get mirrors through the configuration."""
    from puller.pulling import Puller

    mirror = normalize_mirror("http://127.0.0.1:5000")
    puller = Puller("/nonexistent", mirrors=[mirror.url])
    hub = Endpoint(DOCKER_HUB_URL, registry="docker.io")
    assert puller.endpoints(parse("redis")) == (mirror, hub)
    assert puller.endpoints(parse("ghcr.io/o/r")) == (
        Endpoint("https://ghcr.io", registry="ghcr.io"),
    )


@pytest.mark.parametrize(
    ("registry", "realm", "refused"),
    [
        ("https://reg.example", "https://auth.example/token", None),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5001/token", None),
        ("http://127.0.0.1:5000", "http://localhost:5001/token", None),
        ("http://10.0.0.5:5000", "http://10.0.0.5:5001/token", None),
        ("https://10.0.0.5", "https://10.0.0.6/token", None),
        ("https://reg.example", "http://reg.example/token", "over HTTPS"),
        ("http://127.0.0.1:5000", "http://auth.example/token", "over HTTPS"),
        ("http://10.0.0.5:5000", "http://10.0.0.6/token", "over HTTPS"),
        ("https://reg.example", "https://169.254.169.254/latest", "internal address"),
        ("https://reg.example", "https://127.0.0.1:2375/token", "internal address"),
        ("https://reg.example", "https://[::1]/token", "internal address"),
        ("https://reg.example", "file:///etc/passwd", "not an https:// URL"),
    ],
)
async def test_token_realms_that_could_leak_credentials_are_refused(
    registry: str, realm: str, refused: str | None
) -> None:
    async def no_addresses(host: str) -> list[str]:
        return []

    reason = await realm_refusal(registry, registry.startswith("http:"), realm, no_addresses)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


async def test_credentials_never_go_over_plain_http_off_loopback_unless_insecure() -> None:
    from puller.errors import Unauthorized
    from puller.registry.auth import Credentials
    from puller.registry.client import RegistryClient

    creds = Credentials("alice", "wonderland")
    async with RegistryClient(credentials={"10.1.2.3:5000": creds}) as client:
        plain = Endpoint("http://10.1.2.3:5000", registry="10.1.2.3:5000")
        with pytest.raises(Unauthorized, match="refusing to send the credentials") as info:
            await client.auth.credentials_for(plain, "http://10.1.2.3:5000/v2/")
        assert "wonderland" not in str(info.value)
        marked = Endpoint("http://10.1.2.3:5000", registry="10.1.2.3:5000", insecure=True)
        assert await client.auth.credentials_for(marked, "") == creds
        loopback = Endpoint("http://127.0.0.1:5000", registry="10.1.2.3:5000")
        assert await client.auth.credentials_for(loopback, "") == creds


@pytest.mark.parametrize("challenger", ["registry", "redirect-target"])
async def test_only_the_registrys_own_401_fetches_a_token(challenger: str) -> None:
    """A blob redirected (307) to another server that answers 401 with a Bearer challenge: that
    server is not the registry, so its realm gets no token request (it would pick where our
    credentials go), and the blob fails. The registry's own challenge is answered, as a check
    that the realm server would have seen a request."""
    from puller.errors import RegistryError
    from puller.oci.digest import parse_digest
    from puller.registry.client import RegistryClient

    realm = RawServer(answering(lambda head: http(200, [], b'{"token": "t"}')))
    target = RawServer(answering(lambda head: http(401, [challenge()], b"")))

    def challenge() -> str:
        return f'WWW-Authenticate: Bearer realm="{realm.url()}token"'

    def from_registry(head: bytes) -> bytes:
        if challenger == "redirect-target":
            return http(307, [f"Location: {target.url()}blob"], b"")
        if b"Authorization: Bearer t" in head:
            return http(200, [], b"blob")
        return http(401, [challenge()], b"")

    registry = RawServer(answering(from_registry))
    digest = parse_digest("sha256:" + "0" * 64)
    got = bytearray()
    async with realm, target, registry, RegistryClient(timeout=5) as client:
        endpoint = Endpoint(registry.url(""), registry=registry.url("").removeprefix("http://"))
        if challenger == "registry":
            async with client.open_blob(endpoint, "lib/x", digest) as blob:
                await blob.pour(got.extend, lambda n: None)
        else:
            with pytest.raises(RegistryError):
                async with client.open_blob(endpoint, "lib/x", digest):
                    pass
    if challenger == "registry":
        assert bytes(got) == b"blob"
        assert len(realm.heads) == 1
    else:
        assert len(realm.heads) == 0
        assert len(registry.heads) == len(target.heads) == 1


async def test_a_tls_handshake_that_cannot_succeed_is_not_retried(registry: Registry) -> None:
    """https:// against the plain-HTTP registry: the handshake fails the same way every time, so
    it is an error (not ``Unreachable``, which is retried), and says where."""
    endpoint = Endpoint(f"https://{registry.host}", registry=registry.host)
    async with RegistryClient(timeout=5) as client:
        with pytest.raises(RegistryError) as info:
            await client.get_manifest(endpoint, parse(f"{registry.host}/library/redis:latest"))
    assert not isinstance(info.value, Unreachable)
    assert not is_temporary(info.value)
    assert str(info.value).startswith(f"cannot reach https://{registry.host}: ")
    assert "\n" not in str(info.value)
