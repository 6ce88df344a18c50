"""GET /v2/<name>/tags/list?n=&last=."""
from __future__ import annotations

import pytest

from tests.conftest import error_code, push_image

NAME = "tag/repo"
TAGS = ["v2", "a", "B", "v10", "c", "1.0", "latest"]


@pytest.fixture
async def tagged(client):
    _, body, *_ = await push_image(client, NAME, TAGS[0])
    for t in TAGS[1:]:
        r = await client.put(f"/v2/{NAME}/manifests/{t}", data=body,
                             headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status == 201
    return sorted(TAGS)


async def test_lexical_order(client, tagged):
    r = await client.get(f"/v2/{NAME}/tags/list")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = await r.json()
    assert body == {"name": NAME, "tags": tagged}
    assert tagged == ["1.0", "B", "a", "c", "latest", "v10", "v2"]  # byte order, not natural order
    assert "Link" not in r.headers


async def test_paging(client, tagged):
    seen = []
    url = f"/v2/{NAME}/tags/list?n=2"
    pages = 0
    while url:
        r = await client.get(url)
        assert r.status == 200
        tags = (await r.json())["tags"]
        assert len(tags) <= 2
        seen += tags
        pages += 1
        link = r.headers.get("Link")
        if link:
            assert link == f'</v2/{NAME}/tags/list?n=2&last={tags[-1]}>; rel="next"'
            url = link[1 : link.index(">")]
        else:
            url = None
    assert seen == tagged
    assert pages == 4


async def test_first_page_link_exact(client, tagged):
    r = await client.get(f"/v2/{NAME}/tags/list?n=2")
    assert (await r.json())["tags"] == ["1.0", "B"]
    assert r.headers["Link"] == f'</v2/{NAME}/tags/list?n=2&last=B>; rel="next"'


async def test_last(client, tagged):
    r = await client.get(f"/v2/{NAME}/tags/list?last=c")
    assert (await r.json())["tags"] == ["latest", "v10", "v2"]
    r = await client.get(f"/v2/{NAME}/tags/list?n=1&last=b")  # 'b' is not a tag: next after it
    assert (await r.json())["tags"] == ["c"]
    assert r.headers["Link"] == f'</v2/{NAME}/tags/list?n=1&last=c>; rel="next"'


async def test_last_page_exactly_full_has_no_link(client, tagged):
    r = await client.get(f"/v2/{NAME}/tags/list?n=3&last=c")
    assert (await r.json())["tags"] == ["latest", "v10", "v2"]
    assert "Link" not in r.headers


async def test_n_larger_than_count(client, tagged):
    r = await client.get(f"/v2/{NAME}/tags/list?n=100")
    assert (await r.json())["tags"] == tagged
    assert "Link" not in r.headers


async def test_n_zero(client, tagged):
    r = await client.get(f"/v2/{NAME}/tags/list?n=0")
    assert r.status == 200
    assert (await r.json()) == {"name": NAME, "tags": []}
    assert "Link" not in r.headers


@pytest.mark.parametrize("n", ["abc", "-1", "1.5"])
async def test_bad_n(client, tagged, n):
    r = await client.get(f"/v2/{NAME}/tags/list?n={n}")
    assert r.status == 400
    assert await error_code(r) == "PAGINATION_NUMBER_INVALID"


async def test_unknown_repository(client):
    r = await client.get("/v2/no/such/tags/list")
    assert r.status == 404
    assert await error_code(r) == "NAME_UNKNOWN"


async def test_deleted_tag_disappears(client, tagged):
    assert (await client.delete(f"/v2/{NAME}/manifests/c")).status == 202
    r = await client.get(f"/v2/{NAME}/tags/list")
    assert (await r.json())["tags"] == [t for t in tagged if t != "c"]


async def test_repository_without_tags(client):
    await push_image(client, NAME, None)  # pushed by digest only
    r = await client.get(f"/v2/{NAME}/tags/list")
    assert r.status == 200
    assert (await r.json()) == {"name": NAME, "tags": []}
