"""registry.names: the distribution-spec grammar of names, tags and references."""
from __future__ import annotations

import pytest

from registry import names
from registry.errors import APIError

D256 = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "name",
    ["a", "a/b", "a.b", "a_b", "a__b", "a-b", "a--b", "a/b/c/d", "0a9", "library/ubuntu", "x" * 255,
     "a.b-c_d__e/f"],
)
def test_valid_names(name):
    assert names.is_name(name)
    assert names.repository(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "A", "a/B", "a..b", "a._b", "a___b", "a_-b", "-a", "a-", ".a", "a.", "_a", "a_", "/a", "a/", "a//b",
     "a/../b", "..", "a b", "a\n", "a/b\n", "a:b", "a@b", "x" * 256, "é"],
)
def test_invalid_names(name):
    assert not names.is_name(name)
    with pytest.raises(APIError) as e:
        names.repository(name)
    assert e.value.code == "NAME_INVALID"
    assert e.value.status == 400


def test_name_length_counts_the_whole_path():
    name = "/".join(["a" * 50] * 5) + "b"  # 255
    assert len(name) == 255 and names.is_name(name)
    assert not names.is_name(name + "c")


@pytest.mark.parametrize("tag", ["latest", "v1.0", "_x", "1", "A", "a-b.c_d", "a" * 128])
def test_valid_tags(tag):
    assert names.is_tag(tag)
    assert names.tag(tag) == tag
    assert names.reference(tag) == (tag, False)


@pytest.mark.parametrize("tag", ["", "-a", ".a", "a" * 129, "a/b", "a b", "a+b", "ä", "latest\n"])
def test_invalid_tags(tag):
    assert not names.is_tag(tag)
    with pytest.raises(APIError) as e:
        names.tag(tag)
    assert e.value.code == "TAG_INVALID"
    with pytest.raises(APIError) as e:
        names.reference(tag)
    assert e.value.code == "TAG_INVALID"


def test_reference_digest():
    assert names.reference(D256) == (D256, True)


@pytest.mark.parametrize("ref", ["sha256:abc", "sha256:" + "A" * 64, "md5:" + "a" * 32, "a:b"])
def test_reference_bad_digest(ref):
    with pytest.raises(APIError) as e:
        names.reference(ref)
    assert e.value.code == "DIGEST_INVALID"


def test_digest_helper():
    assert names.digest(D256) == D256
    with pytest.raises(APIError) as e:
        names.digest("nope")
    assert e.value.code == "DIGEST_INVALID"
    assert e.value.detail == {"digest": "nope"}
