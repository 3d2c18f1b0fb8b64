"""A registry's catalog (``GET /v2/_catalog``), what a sync's namespace chooses from: its
``Link`` pages followed as a tag list's are, on the registry's origin only, bounded; the
``registry:catalog:*`` scope asked of a token server; a page that is no list refused."""

from __future__ import annotations

import json

import pytest

from puller.errors import RegistryError
from puller.registry import client as client_module
from puller.registry.client import RegistryClient
from puller.registry.endpoint import Endpoint
from tests.support.rawhttp import Answer, RawServer, http


def catalog(pages: dict[str, tuple[object, str | None]]) -> RawServer:
    """A registry that answers each catalog target with its page (``repositories``) and Link."""

    async def handler(head: bytes, body: bytes) -> Answer:
        target = head.split(b" ")[1].decode()
        repositories, link = pages.get(target, ([], None))
        headers = [f"Link: {link}"] if link else []
        return http(body=json.dumps({"repositories": repositories}).encode(), headers=headers)

    return RawServer(answers=handler)


def endpoint(server: RawServer) -> Endpoint:
    return Endpoint(server.url("").rstrip("/"))


async def test_the_catalog_is_read_page_by_page_as_the_links_say() -> None:
    pages: dict[str, tuple[object, str | None]] = {
        "/v2/_catalog?n=1000": (
            ["team/a", "team/b"],
            '</v2/_catalog?last=team%2Fb&n=2>; rel="next"',
        ),
        "/v2/_catalog?last=team%2Fb&n=2": (["team/c/d"], None),
    }
    async with catalog(pages) as server, RegistryClient(timeout=5) as client:
        got = await client.list_repositories(endpoint(server))
    assert got == ["team/a", "team/b", "team/c/d"]
    assert [h.split(b" ")[1] for h, _ in server.requests] == [
        b"/v2/_catalog?n=1000",
        b"/v2/_catalog?last=team%2Fb&n=2",
    ]


@pytest.mark.parametrize(
    ("page", "link", "says"),
    [
        (["a"], '<http://127.0.0.2:1/v2/_catalog?steal=1>; rel="next"', "links to another origin"),
        (["a"], '</v2/_catalog?n=1000>; rel="next"', "the Link pages go round in a circle"),
        ("team/a", None, "no list of repositories"),
        ([1, 2], None, "no list of repositories"),
    ],
)
async def test_a_hostile_catalog_is_refused_in_one_line(page: object, link: str, says: str) -> None:
    server = catalog({"/v2/_catalog?n=1000": (page, link)})
    async with server, RegistryClient(timeout=5) as client:
        with pytest.raises(RegistryError) as info:
            await client.list_repositories(endpoint(server))
    assert says in str(info.value) and "the catalog of http://127.0.0.1:" in str(info.value)
    assert "\n" not in str(info.value)
    assert server.connections == 1


async def test_a_catalog_over_the_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "MAX_REPOSITORIES", 3)
    pages: dict[str, tuple[object, str | None]] = {
        "/v2/_catalog?n=1000": (["a", "b"], '</v2/_catalog?p=2>; rel="next"'),
        "/v2/_catalog?p=2": (["c", "d"], '</v2/_catalog?p=3>; rel="next"'),
    }
    async with catalog(pages) as server, RegistryClient(timeout=5) as client:
        with pytest.raises(RegistryError, match="over 3 repositories"):
            await client.list_repositories(endpoint(server))
    assert len(server.requests) == 2


async def test_the_catalog_asks_a_token_server_for_the_catalog_scope() -> None:
    scopes: list[str] = []

    async def handler(head: bytes, body: bytes) -> Answer:
        target = head.split(b" ")[1].decode()
        if target.startswith("/token"):
            scopes.append(target)
            return http(body=b'{"token": "t"}')
        if b"Authorization: Bearer t" not in head:
            challenge = f'Bearer realm="{server.url("/token")}",service="r"'
            return http(401, body=b"", headers=[f"WWW-Authenticate: {challenge}"])
        return http(body=b'{"repositories": ["team/a"]}')

    server = RawServer(answers=handler)
    async with server, RegistryClient(timeout=5) as client:
        assert await client.list_repositories(endpoint(server)) == ["team/a"]
    assert len(scopes) == 1 and "scope=registry%3Acatalog%3A%2A" in scopes[0]


async def test_a_listing_of_few_but_huge_names_is_bounded_in_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each page far under 4 MiB and one name long: the count bound never comes near, the
    # bytes held grow by a page a request.
    monkeypatch.setattr(client_module, "MAX_LISTING_BYTES", 1 << 20)
    pages: dict[str, tuple[object, str | None]] = {
        "/v2/_catalog?n=1000": (["x" * 300_000], '</v2/_catalog?p=1>; rel="next"')
    }
    for n in range(1, 10):
        link = f'</v2/_catalog?p={n + 1}>; rel="next"' if n < 9 else None
        pages[f"/v2/_catalog?p={n}"] = (["x" * 300_000], link)
    async with catalog(pages) as server, RegistryClient(timeout=5) as client:
        with pytest.raises(RegistryError, match="over 1 MiB"):
            await client.list_repositories(endpoint(server))
    assert len(server.requests) < 12
