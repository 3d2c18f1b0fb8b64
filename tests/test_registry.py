"""Pure rules of the registry client: which endpoints, which scheme, which token realms."""

from __future__ import annotations

import pytest

from puller.reference import parse
from puller.registry import (
    DOCKER_HUB_URL,
    Endpoint,
    endpoint_for_domain,
    is_loopback,
    normalize_mirror,
    realm_refusal,
)


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
def test_token_realms_that_could_leak_credentials_are_refused(
    registry: str, realm: str, refused: str | None
) -> None:
    reason = realm_refusal(Endpoint(registry), realm)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


async def test_credentials_never_go_over_plain_http_off_loopback_unless_insecure() -> None:
    from puller.auth import Credentials
    from puller.errors import Unauthorized
    from puller.registry import RegistryClient

    creds = Credentials("alice", "wonderland")
    async with RegistryClient(credentials={"10.1.2.3:5000": creds}) as client:
        plain = Endpoint("http://10.1.2.3:5000", registry="10.1.2.3:5000")
        with pytest.raises(Unauthorized, match="refusing to send the credentials") as info:
            await client._credentials_for(plain, "http://10.1.2.3:5000/v2/")
        assert "wonderland" not in str(info.value)
        marked = Endpoint("http://10.1.2.3:5000", registry="10.1.2.3:5000", insecure=True)
        assert await client._credentials_for(marked, "") == creds
        loopback = Endpoint("http://127.0.0.1:5000", registry="10.1.2.3:5000")
        assert await client._credentials_for(loopback, "") == creds
