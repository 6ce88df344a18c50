"""The bench's registry client: the token flow, blob pushes and pulls, a small OCI image.

Auth is the flow every registry client follows: ``GET /v2/`` → ``401`` with
``WWW-Authenticate: Bearer realm=..,service=..`` → ``GET realm?service=..&scope=..`` with
HTTP Basic → requests with ``Authorization: Bearer <token>``. Without credentials (``--no-auth``)
no header is sent.
"""
from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp
from yarl import URL

MiB = 1 << 20
BLOCK = 4 * MiB  # size of the repeating random block a large blob is made of
SLICE = 1 * MiB  # size of each piece handed to the socket
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, "application/vnd.docker.distribution.manifest.v2+json",
                             "application/vnd.docker.distribution.manifest.list.v2+json"])


# ---------------------------------------------------------------------------- auth
@dataclass
class Challenge:
    realm: str
    service: str


def parse_challenge(header: str) -> Challenge | None:
    if not header.lower().startswith("bearer "):
        return None
    params = dict(re.findall(r'(\w+)="([^"]*)"', header))
    return Challenge(params.get("realm", ""), params.get("service", ""))


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Auth:
    """Tokens for one registry, obtained the way clients do (401 challenge, then the realm)."""

    def __init__(self, base: str, user: str, password: str) -> None:
        self.base, self.user, self.password = base, user, password

    async def challenge(self, s: aiohttp.ClientSession) -> Challenge | None:
        async with s.get(f"{self.base}/v2/") as r:
            await r.read()
            if r.status == 200:
                return None
            if r.status != 401:
                raise RuntimeError(f"GET {self.base}/v2/ -> {r.status}")
            return parse_challenge(r.headers.get("WWW-Authenticate", ""))

    async def token(self, s: aiohttp.ClientSession, scope: str) -> str | None:
        """A bearer token for `scope` through the whole flow; None when the registry wants none."""
        ch = await self.challenge(s)
        if ch is None:
            return None
        params = {"service": ch.service, "scope": scope}
        headers = {"Authorization": basic_header(self.user, self.password)} if self.user else {}
        async with s.get(ch.realm, params=params, headers=headers) as r:
            body = await r.json(content_type=None)
            if r.status != 200:
                raise RuntimeError(f"token from {ch.realm} -> {r.status}: {body}")
        return body.get("token") or body.get("access_token")

    async def headers(self, s: aiohttp.ClientSession, scope: str) -> dict[str, str]:
        token = await self.token(s, scope)
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def realm_url(self, s: aiohttp.ClientSession, scope: str) -> str | None:
        """The token URL with its query (for wrk), or None without auth."""
        ch = await self.challenge(s)
        if ch is None:
            return None
        return str(URL(ch.realm).with_query({"service": ch.service, "scope": scope}))


def same_origin(a: str, b: str) -> bool:
    return urlsplit(a)[:2] == urlsplit(b)[:2]


def repo_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


# ---------------------------------------------------------------------------- blobs
async def expect(resp: aiohttp.ClientResponse, *ok: int) -> None:
    if resp.status not in ok:
        body = (await resp.read())[:500]
        raise RuntimeError(f"{resp.method} {resp.url} -> {resp.status} (expected {ok}): {body!r}")


class BlobSource:
    """A blob of `size` bytes: a random block repeated, streamed in slices, hashed as it goes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.block = memoryview(os.urandom(BLOCK))

    def pieces(self, start: int, end: int):
        pos = start
        while pos < end:
            off = pos % BLOCK
            n = min(SLICE, BLOCK - off, end - pos)
            yield self.block[off:off + n]
            pos += n

    async def stream(self, start: int, end: int, hasher):
        for piece in self.pieces(start, end):
            hasher.update(piece)
            yield piece


async def push_big(s: aiohttp.ClientSession, base: str, repo: str, src: BlobSource, chunk: int | None,
                   auth: dict[str, str]) -> str:
    """POST, PATCH (one whole-body PATCH when chunk is None, else Content-Range chunks), PUT ?digest=."""
    async with s.post(f"{base}/v2/{repo}/blobs/uploads/", headers=auth) as r:
        await expect(r, 202)
        loc = urljoin(base + "/", r.headers["Location"])
    hasher = hashlib.sha256()
    step = chunk or src.size
    pos = 0
    while pos < src.size:
        end = min(pos + step, src.size)
        headers = {**auth, "Content-Type": "application/octet-stream", "Content-Length": str(end - pos)}
        if chunk:
            headers["Content-Range"] = f"{pos}-{end - 1}"
        async with s.patch(loc, data=src.stream(pos, end, hasher), headers=headers) as r:
            await expect(r, 202)
            loc = urljoin(base + "/", r.headers["Location"])
        pos = end
    digest = "sha256:" + hasher.hexdigest()
    sep = "&" if "?" in loc else "?"
    async with s.put(f"{loc}{sep}digest={digest}", headers={**auth, "Content-Length": "0"}) as r:
        await expect(r, 201)
    return digest


async def push_bytes(s: aiohttp.ClientSession, base: str, repo: str, data: bytes, auth: dict[str, str]) -> str:
    """POST + PUT ?digest= with the body (what clients do for small blobs)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    async with s.post(f"{base}/v2/{repo}/blobs/uploads/", headers=auth) as r:
        await expect(r, 202)
        loc = urljoin(base + "/", r.headers["Location"])
    sep = "&" if "?" in loc else "?"
    async with s.put(f"{loc}{sep}digest={digest}", data=data,
                     headers={**auth, "Content-Type": "application/octet-stream"}) as r:
        await expect(r, 201)
    return digest


async def put_manifest(s: aiohttp.ClientSession, base: str, repo: str, ref: str, manifest: bytes,
                       auth: dict[str, str]) -> str:
    async with s.put(f"{base}/v2/{repo}/manifests/{ref}", data=manifest,
                     headers={**auth, "Content-Type": OCI_MANIFEST}) as r:
        await expect(r, 201)
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


async def curl_get(url: str, headers: dict[str, str], expected_size: int) -> None:
    """GET url to /dev/null with curl (no Python in the data path); checks status and size."""
    cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    status, _, size = out.decode().partition(" ")
    if proc.returncode != 0 or status != "200" or int(size or 0) != expected_size:
        raise RuntimeError(f"curl {url}: exit {proc.returncode}, status {status}, {size} bytes "
                           f"(expected {expected_size}) {err.decode()[-300:]}")


# ---------------------------------------------------------------------------- images
@dataclass
class Image:
    manifest: bytes
    blobs: dict[str, bytes]  # digest → bytes (config and layers)

    @property
    def layer_digests(self) -> list[str]:
        return [layer["digest"] for layer in json.loads(self.manifest)["layers"]]

    @property
    def size(self) -> int:
        return len(self.manifest) + sum(len(b) for b in self.blobs.values())


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_layer(size: int) -> tuple[bytes, str]:
    """A real tar+gzip layer holding one random file of `size` bytes; returns (blob, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("data.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, compresslevel=1, mtime=0), sha256(tar_bytes)


def make_image(layers: int, layer_size: int) -> Image:
    """A small multi-layer OCI image: random layers, a config naming their diff_ids, a manifest."""
    made = [make_layer(layer_size) for _ in range(layers)]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [d for _, d in made]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(b), "size": len(b)} for b, _ in made],
    }, separators=(",", ":")).encode()
    return Image(manifest, {sha256(config): config, **{sha256(b): b for b, _ in made}})


def write_oci_layout(image: Image, directory: Path, tag: str = "latest") -> None:
    """The image as an OCI image layout (skopeo's `oci:DIR:TAG`)."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for digest, data in {**image.blobs, sha256(image.manifest): image.manifest}.items():
        (blobs / digest.removeprefix("sha256:")).write_bytes(data)
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (directory / "index.json").write_text(json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(image.manifest), "size": len(image.manifest),
                       "annotations": {"org.opencontainers.image.ref.name": tag}}]}))


async def push_image(s: aiohttp.ClientSession, base: str, repo: str, image: Image, auth: dict[str, str]) -> None:
    for data in image.blobs.values():
        await push_bytes(s, base, repo, data, auth)
    await put_manifest(s, base, repo, "latest", image.manifest, auth)


async def pull_image(s: aiohttp.ClientSession, base: str, repo: str, auth: Auth) -> int:
    """What a node does: challenge, token, manifest by tag, config and layers; returns bytes read."""
    headers = await auth.headers(s, f"repository:{repo}:pull")
    async with s.get(f"{base}/v2/{repo}/manifests/latest", headers={**headers, "Accept": MANIFEST_ACCEPT}) as r:
        await expect(r, 200)
        manifest = json.loads(await r.read())
    total = 0
    for desc in [manifest["config"], *manifest["layers"]]:
        async with s.get(f"{base}/v2/{repo}/blobs/{desc['digest']}", headers=headers) as r:
            await expect(r, 200)
            data = await r.read()
        if len(data) != desc["size"]:
            raise RuntimeError(f"{desc['digest']}: {len(data)} bytes, expected {desc['size']}")
        total += len(data)
    return total
