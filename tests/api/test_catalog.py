"""GET /v2/_catalog?n=&last=."""
from __future__ import annotations

import pytest

from tests.conftest import error_code, push_blob

REPOS = ["b/one", "a", "c", "a/b", "b", "a-b"]


@pytest.fixture
async def repos(client):
    for name in REPOS:
        await push_blob(client, name, f"content of {name}".encode())
    return sorted(REPOS)


async def test_empty_catalog(client):
    r = await client.get("/v2/_catalog")
    assert r.status == 200
    assert await r.json() == {"repositories": []}
    assert "Link" not in r.headers


async def test_lexical_order(client, repos):
    r = await client.get("/v2/_catalog")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert (await r.json()) == {"repositories": repos}
    assert repos == ["a", "a-b", "a/b", "b", "b/one", "c"]
    assert "Link" not in r.headers


async def test_paging(client, repos):
    seen = []
    url = "/v2/_catalog?n=2"
    pages = 0
    while url:
        r = await client.get(url)
        assert r.status == 200
        names = (await r.json())["repositories"]
        assert len(names) <= 2
        seen += names
        pages += 1
        link = r.headers.get("Link")
        if link:
            assert link.startswith("</v2/_catalog?n=2&last=")
            assert link.endswith('>; rel="next"')
            url = link[1 : link.index(">")]
        else:
            url = None
    assert seen == repos
    assert pages == 3


async def test_first_page_link_exact(client, repos):
    r = await client.get("/v2/_catalog?n=1")
    assert (await r.json())["repositories"] == ["a"]
    assert r.headers["Link"] == '</v2/_catalog?n=1&last=a>; rel="next"'


async def test_link_with_slash_in_name_round_trips(client, repos):
    r = await client.get("/v2/_catalog?n=3")
    assert (await r.json())["repositories"] == ["a", "a-b", "a/b"]
    link = r.headers["Link"]
    assert link == '</v2/_catalog?n=3&last=a%2Fb>; rel="next"'
    r = await client.get(link[1 : link.index(">")])
    assert (await r.json())["repositories"] == ["b", "b/one", "c"]
    assert "Link" not in r.headers


async def test_last(client, repos):
    r = await client.get("/v2/_catalog?last=b")
    assert (await r.json())["repositories"] == ["b/one", "c"]
    r = await client.get("/v2/_catalog?last=zzz")
    assert (await r.json())["repositories"] == []


async def test_n_zero(client, repos):
    r = await client.get("/v2/_catalog?n=0")
    assert r.status == 200
    assert (await r.json()) == {"repositories": []}
    assert "Link" not in r.headers


@pytest.mark.parametrize("n", ["x", "-5"])
async def test_bad_n(client, n):
    r = await client.get(f"/v2/_catalog?n={n}")
    assert r.status == 400
    assert await error_code(r) == "PAGINATION_NUMBER_INVALID"
