"""storage.digest: grammar, algorithms, hashing."""
from __future__ import annotations

import hashlib

import pytest

from registry.errors import domain_code
from storage import digest as digests
from storage.errors import DigestInvalid, UnsupportedDigest


def test_parse_sha256():
    hexd = hashlib.sha256(b"x").hexdigest()
    assert digests.parse(f"sha256:{hexd}") == ("sha256", hexd)


def test_parse_sha512():
    hexd = hashlib.sha512(b"x").hexdigest()
    assert digests.parse(f"sha512:{hexd}") == ("sha512", hexd)


@pytest.mark.parametrize(
    "value",
    ["", "sha256", "sha256:", ":abc", "sha256:" + "a" * 63, "sha256:" + "a" * 65, "sha256:" + "A" * 64,
     "sha256:" + "g" * 64, "sha512:" + "a" * 64, "SHA256:" + "a" * 64, "sha256: " + "a" * 63, "sha256:" + "a" * 64 + "\n"],
)
def test_invalid(value):
    with pytest.raises(DigestInvalid):
        digests.parse(value)


@pytest.mark.parametrize("value", ["md5:" + "a" * 32, "blake3:" + "a" * 64, "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564"])
def test_unsupported_algorithm(value):
    with pytest.raises(UnsupportedDigest) as e:
        digests.parse(value)
    assert domain_code(e.value) == ("DIGEST_INVALID", 400)


def test_looks_like_digest():
    assert digests.looks_like_digest("sha256:" + "a" * 64)
    assert digests.looks_like_digest("foo:bar")
    assert not digests.looks_like_digest("latest")
    assert not digests.looks_like_digest("v1.0")


@pytest.mark.parametrize("alg", ["sha256", "sha512"])
def test_of_bytes(alg):
    data = b"hello world"
    assert digests.of_bytes(data, alg) == f"{alg}:" + hashlib.new(alg, data).hexdigest()


def test_of_bytes_default_is_sha256():
    assert digests.of_bytes(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_new_hasher_unknown():
    with pytest.raises(UnsupportedDigest):
        digests.new_hasher("md5")
