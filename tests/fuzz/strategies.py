"""Hypothesis strategies for hostile registry input: names, references, digests, scopes,
headers (Content-Range, Range, Content-Length, Authorization, Host), bodies, manifests.

Each strategy mixes valid values (so requests get past the first check and reach deeper
code) with near misses and garbage: control characters (NUL, CR, LF, DEL…), non-ASCII,
percent-encodings, over-long values, numbers past 64 bits.
"""
from __future__ import annotations

import hashlib
import json
from urllib.parse import quote

from hypothesis import strategies as st

TENANT = "fuzz"  # the tenant the auth-on servers have; names under it can be pushed to
ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
CONTROL = [chr(c) for c in range(0x20)] + ["\x7f", "\x85", "\u2028", "\ufeff"]

# ---- text ---------------------------------------------------------------------------------

control = st.sampled_from(CONTROL)
nasty = st.one_of(
    control,
    st.sampled_from(list("/\\\"'%:;,=?#&+@*[]{}<> .-_") + ["..", "%00", "%0d%0a", "%2e%2e", "%2f", "%ff", "é", "\udcff"]),
    st.characters(codec="utf-8"),
)
text = st.lists(st.one_of(st.sampled_from(ALNUM), nasty), max_size=24).map("".join)
huge_text = st.builds(lambda c, n: c * n, st.sampled_from(["a", "/", "%", "9", "\x00", "é"]), st.integers(129, 9000))


def spliced(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid value with something hostile inserted, appended or prepended."""
    return st.builds(lambda v, i, x: v[: i % (len(v) + 1)] + x + v[i % (len(v) + 1):], valid, st.integers(0, 300), nasty)


# ---- grammar pieces -------------------------------------------------------------------------

component = st.builds(
    lambda parts, seps: parts[0] + "".join(s + p for s, p in zip(seps, parts[1:])),
    st.lists(st.text(ALNUM, min_size=1, max_size=6), min_size=1, max_size=3),
    st.lists(st.sampled_from([".", "_", "__", "-", "--"]), max_size=2),
)
valid_path = st.lists(component, min_size=1, max_size=3).map("/".join)
valid_name = st.one_of(valid_path.map(lambda p: f"{TENANT}/{p}"), valid_path)
name = st.one_of(
    valid_name, valid_name, spliced(valid_name), text, huge_text,
    st.sampled_from(["", ".", "..", "a/../b", "a//b", "a/", "/a", "A/B", "fuzz/" + "a" * 250, "_catalog",
                     "fuzz/blobs/uploads", "fuzz/manifests/x", "fuzz/tags/list", "a" * 256]),
)

hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
valid_digest = st.one_of(hex64.map(lambda h: "sha256:" + h), st.text("0123456789abcdef", min_size=128, max_size=128).map(lambda h: "sha512:" + h))
digest = st.one_of(
    valid_digest, spliced(valid_digest), text,
    st.sampled_from(["sha256:", ":", "sha256:" + "A" * 64, "md5:abc", "sha256:" + "0" * 63, "sha256:" + "0" * 65,
                     "sha256+x:" + "0" * 64, "SHA256:" + "0" * 64, "sha384:" + "0" * 96]),
    hex64,
)
valid_tag = st.from_regex(r"\A[a-zA-Z0-9_][a-zA-Z0-9._-]{0,40}\Z")
tag = st.one_of(valid_tag, spliced(valid_tag), text, st.sampled_from(["-x", ".x", "a" * 129, "latest", "tag!"]))
reference = st.one_of(tag, digest)
upload_id = st.one_of(st.uuids().map(lambda u: u.hex), text, st.sampled_from(["f" * 32, "F" * 32, "..%2f..%2fetc"]))

actions = st.lists(st.sampled_from(["pull", "push", "delete", "*", "", "PULL", "pull,push", "\x00"]), max_size=4).map(",".join)
scope = st.one_of(
    st.builds(lambda t, n, a: f"{t}:{n}:{a}", st.sampled_from(["repository", "registry", "repository(plugin)", "x", ""]),
              name, actions),
    st.sampled_from(["registry:catalog:*", "registry:admin:*", "repository:a:b:c:d", "::", ":", "repository::pull"]),
    text,
)

# ---- numbers and headers ----------------------------------------------------------------

number = st.one_of(st.integers(-5, 5000), st.integers(-(2**70), 2**70), st.sampled_from([2**63 - 1, 2**63, 2**64]))
num_text = st.one_of(number.map(str), st.sampled_from(["", " 1", "1 ", "0x10", "1e3", "+1", "١", "1.0", "0" * 50 + "1"]))

content_range = st.one_of(
    st.builds(lambda a, b, fmt: fmt.format(a=a, b=b), number, number,
              st.sampled_from(["{a}-{b}", "bytes {a}-{b}/*", "bytes={a}-{b}", "bytes {a}-{b}/{b}", "{a}-", "-{b}"])),
    text,
)
byte_range = st.one_of(
    st.builds(lambda a, b, fmt: fmt.format(a=a, b=b), number, number,
              st.sampled_from(["bytes={a}-{b}", "bytes={a}-", "bytes=-{b}", "bytes={a}-{b},{b}-{a}", "items={a}-{b}", "bytes = {a} - {b}"])),
    text,
)
content_type = st.one_of(
    st.sampled_from([
        "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws", "application/json", "application/octet-stream",
        "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain; charset=utf-16",
    ]),
    text,
)


_NOT_IN_VALUES = bytes(c for c in range(0x20) if c != 0x09) + b"\x7f"


def header_value(s: str) -> bytes:
    """What HTTP lets travel in a header value: the text's UTF-8 without control characters
    (the HTTP parser refuses those itself; test_framing sends them on purpose)."""
    return s.encode("utf-8", "surrogateescape").translate(None, _NOT_IN_VALUES)


# ---- URLs ---------------------------------------------------------------------------------

def pct(s: str, safe: str = "") -> str:
    return quote(s.encode("utf-8", "surrogateescape"), safe=safe)


QUERY_KEYS = ["n", "last", "digest", "mount", "from", "artifactType", "service", "scope", "account", "offline_token",
              "grant_type", "limit", "before", "tenant", "x"]
query = st.lists(st.tuples(st.sampled_from(QUERY_KEYS), st.one_of(text, num_text, digest, name, scope)), max_size=4).map(
    lambda kv: "&".join(f"{pct(k)}={pct(v)}" for k, v in kv)
)

# ---- bodies -------------------------------------------------------------------------------

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), text)
json_value = st.recursive(json_scalar, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                               st.dictionaries(text, kids, max_size=4)), max_leaves=12)
ADMIN_KEYS = ["name", "public", "actions", "repositories", "expires_in", "username", "password", "is_admin", "role",
              "namespace", "server", "robot", "subject", "access", "ttl"]
admin_json = st.dictionaries(st.sampled_from(ADMIN_KEYS), json_value, max_size=4)
body = st.one_of(
    st.just(b""), st.binary(max_size=300), json_value.map(lambda v: json.dumps(v).encode()),
    admin_json.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"{", b"[", b"\xff\xfe", b"null", b"[" * 5000 + b"]" * 5000, b'{"a":' + b"9" * 5000 + b"}",
                     b"grant_type=password&username=admin&password=x", b"grant_type=refresh_token&refresh_token=a.b.c"]),
)


# ---- manifests ----------------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(digests: st.SearchStrategy[str], media_types=st.sampled_from(
        ["application/vnd.oci.image.layer.v1.tar+gzip", OCI_MANIFEST, OCI_INDEX, "application/vnd.oci.image.config.v1+json", ""])):
    size = st.one_of(st.integers(0, 2**40), st.sampled_from([-1, 2**64, 1.5, "1", None, True]))
    return st.fixed_dictionaries({"mediaType": media_types, "digest": digests, "size": size},
                                 optional={"urls": st.lists(text, max_size=2), "annotations": st.dictionaries(text, text, max_size=2),
                                           "artifactType": text})
