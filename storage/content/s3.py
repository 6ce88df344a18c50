"""The ``s3`` content driver: blob bytes in any S3-compatible object store.

Tested against SeaweedFS (tests/seaweed.py); written to the S3 API as AWS documents it, so
AWS S3, MinIO and Ceph RGW behave the same. The client is **aiobotocore**: botocore's
request signing, retries, error parsing and paginators (the reference implementation of
the S3 protocol, the one the AWS CLI uses) driven on aiohttp, which Berth already runs on,
so every request is a coroutine and nothing blocks the event loop; it is maintained
within days of each botocore release. (aioboto3 is a thin resource layer over the same
client; hand-rolled SigV4 over aiohttp would re-implement what botocore gets right.)

Keys (path-style addressing, under ``storage.s3.prefix``)::

    <prefix>/blobs/<alg>/<hh>/<hex>          content, placed only whole (by commit)
    <prefix>/uploads/<id>/data               the upload's multipart upload target
    <prefix>/uploads/<id>/piece.<start>-<end>.<tag>  bytes past the last full part
    <prefix>/_berth/probe-<uuid>             written, read and deleted by check()

**Uploads.** A blob upload is an S3 multipart upload to ``uploads/<id>/data``. S3 wants
every part but the last to be at least 5 MiB, while a client's PATCH may carry a
kilobyte, so ``append`` cuts the stream into full parts (8 MiB each for the first 1,000
parts, 16 MiB for the next 1,000 and so on, so the 10,000-part limit allows ~430 GiB) and
keeps what is left past the last full part as small *piece* objects. The next append
folds the pieces and its own bytes into the next part. The state returned to the caller
(and stored by it in the database, so that any replica continues the upload) is::

    {"v": 1, "mpu": <multipart upload id or null>,
     "parts": [[number, etag, size], ...], "pieces": [[start, end, tag], ...], "stale": [[start, end, tag], ...]}

Crash safety: ``append`` never overwrites an object that the state it was given refers
to. Parts past the recorded list are re-uploaded under the same number (S3 keeps the
last one, and CompleteMultipartUpload checks each recorded ETag); a piece key names its
byte range and a random tag of the append that wrote it, so no two appends, not even a
replica whose lease lapsed mid-write, ever write one key. Pieces an append folded away are listed as
``stale`` in the state it returns and deleted by the *next* append (or commit/abort):
by then that state is what the database holds, so nothing that the database knows is
ever deleted, even when a process dies between the append and the database update.
At most ``MAX_PIECES`` pieces pile up (then they are merged into one).

**Commit.** S3 cannot name the final key of a multipart upload after it was created, and
the digest is only known at the end, so commit completes the multipart upload to
``uploads/<id>/data`` (the pieces become the last part, copied server-side) and then
copies that object server-side to the content key: CopyObject up to 5 GiB, a multipart
copy (UploadPartCopy in ranges) above (as Distribution's s3 driver moves its uploads).
The copy's size is checked before success is reported. When the content is already
stored (HEAD) the upload is just discarded: two replicas committing one digest at once
both succeed and one object remains (both copies write identical bytes to one key).
A blob smaller than a part never becomes a multipart upload: its one piece is copied to
the content key (several pieces are read, < 8 MiB, and written with one PutObject).

``read_upload`` (re-hashing for sha512) completes the multipart upload the same way and
streams ``uploads/<id>/data``: after it only ``commit`` or ``abort`` may follow (an
``append`` raises UploadUnknown). ``commit`` then uses that object.

**Memory.** An append holds at most the part being filled and the part being uploaded
(16 MiB), whatever the blob size; reads stream in 256 KiB chunks.

**Isolation.** Only Berth's settings configure the client: the botocore session is built
with an empty environment and no ``~/.aws`` files (no ``AWS_*`` variable, profile, CA
bundle or endpoint override leaks in). HTTPS endpoints are verified against the system's
CA store. Payloads are sent with ``UNSIGNED-PAYLOAD`` and a ``Content-MD5`` computed in a
thread (the server checks it), so signing never hashes 8 MiB on the event loop.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import logging
import os
import re
import ssl
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import digest as digests
from ..errors import ContentMissing, DigestInvalid, DriverUnavailable, SizeInvalid, StorageError, UploadUnknown
from .driver import UploadState

if TYPE_CHECKING:
    from registry.config import S3Config

log = logging.getLogger("berth.storage.s3")

MIN_PART = 5 * 1024 * 1024  # S3's minimum size of every part but the last
PART_SIZE = 8 * 1024 * 1024  # parts 1..1000; then 2x for 1001..2000, 3x, ... (10,000 parts ~ 430 GiB)
MAX_PARTS = 10_000
MAX_PIECES = 16  # pieces kept past the last part before they are merged into one
COPY_LIMIT = 5 * 1024**3  # the largest single CopyObject
COPY_PART = 512 * 1024 * 1024  # range of one UploadPartCopy in a multipart copy
COPY_CONCURRENCY = 4
READ_CHUNK = 256 * 1024
_UPLOAD_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")
_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def part_size(number: int, base: int = PART_SIZE) -> int:
    """The size of full part ``number`` (1-based)."""
    return base * (1 + (number - 1) // 1000)


class _Body(io.RawIOBase):
    """A request body reading a buffer in place (``io.BytesIO`` would copy a bytearray; and a
    buffer handed to aiohttp whole is copied into the transport's buffer): the HTTP client
    reads it in small chunks, and botocore can seek back to retry."""

    def __init__(self, data: bytes | bytearray) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self._view)

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        out = bytes(self._view[self._pos:end])
        self._pos = max(self._pos, end)
        return out

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:  # the HTTP client closes bodies; botocore may still retry with it
        pass

    def release(self) -> None:
        """Let go of the buffer once the request is over (botocore and aiohttp objects that
        still refer to this body may live on in reference cycles until a collection)."""
        self._view.release()
        self._view = memoryview(b"")


def _md5(data) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _code(e: Exception) -> str:
    return str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))


def _status(e: Exception) -> int | None:
    return getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")


_SESSION = None


def _isolated_session():
    """An aiobotocore session that reads no AWS_* variable and no ~/.aws file (one per
    process: it caches the loaded S3 service model; clients made from it are independent)."""
    global _SESSION
    if _SESSION is None:
        _SESSION = _new_isolated_session()
    return _SESSION


def _new_isolated_session():
    from aiobotocore.session import AioSession  # noqa: PLC0415
    from botocore import configprovider as cp  # noqa: PLC0415

    session = AioSession()
    chains = cp.ConfigChainFactory(session=session, environ={})

    def mapping(variables: dict) -> dict:
        return {
            name: chains.create_config_chain(
                instance_name=name, env_var_names=spec[1], config_property_names=spec[0], default=spec[2],
                conversion_func=spec[3],
            )
            for name, spec in variables.items()
        }

    store = session.get_component("config_store")
    for name, provider in mapping(cp.BOTOCORE_DEFAUT_SESSION_VARIABLES).items():
        store.set_config_provider(name, provider)
    store.set_config_provider("s3", cp.SectionConfigProvider("s3", session, mapping(cp.DEFAULT_S3_CONFIG_VARS)))
    store.set_config_provider(
        "proxies_config", cp.SectionConfigProvider("proxies_config", session, mapping(cp.DEFAULT_PROXIES_CONFIG_VARS))
    )
    nowhere = os.path.join(os.path.sep, "nonexistent", "berth-ignores-aws-config")
    session.set_config_variable("config_file", nowhere)
    session.set_config_variable("credentials_file", nowhere)
    session.set_config_variable("profile", None)
    return session


def _chain_session():
    """An isolated session (every client setting from Berth's configuration only) whose
    credentials come from the AWS SDK's default chain, read from the real environment and
    ``~/.aws`` as any AWS tool reads them (``storage.s3.credentials: aws``): ``AWS_ACCESS_KEY_ID``
    and friends, web identity (``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``: EKS IRSA),
    container credentials (EKS Pod Identity, ECS), then the EC2 instance profile. Temporary
    credentials are refreshed by botocore before they expire. One per driver: the credentials
    are cached in the session."""
    from aiobotocore.session import AioSession  # noqa: PLC0415

    session = _new_isolated_session()
    session.register_component("credential_provider", AioSession().get_component("credential_provider"))
    return session


def _ca_bundle() -> str | bool:
    cafile = ssl.get_default_verify_paths().cafile
    return cafile if cafile and os.path.isfile(cafile) else True


class S3Driver:
    """``ContentDriver`` on an S3 bucket (see the module docstring)."""

    name = "s3"

    def __init__(self, config: "S3Config", *, part_size: int = PART_SIZE, copy_limit: int = COPY_LIMIT,
                 copy_part: int = COPY_PART) -> None:
        if not config.bucket:
            raise ValueError("storage.s3.bucket is required")
        if config.credentials != "aws" and not (config.access_key and config.secret_key):
            raise ValueError("storage.s3.access_key and storage.s3.secret_key are required")
        if part_size < MIN_PART:
            raise ValueError(f"part size must be at least {MIN_PART} bytes (S3's minimum)")
        self.config = config
        self.redirects = bool(config.redirect)
        self.bucket = config.bucket
        self.endpoint = config.endpoint or f"https://s3.{config.region}.amazonaws.com"
        self.prefix = (config.prefix or "").strip("/")
        self.part_size = part_size
        self.copy_limit = copy_limit
        self.copy_part = max(copy_part, MIN_PART)
        self._client = None
        self._exit: contextlib.AsyncExitStack | None = None
        self._client_lock = asyncio.Lock()

    # ---- the client --------------------------------------------------------------------
    async def _s3(self):
        if self._client is not None:
            return self._client
        async with self._client_lock:
            if self._client is None:
                from aiobotocore.config import AioConfig  # noqa: PLC0415

                cfg = AioConfig(
                    signature_version="s3v4",
                    s3={"addressing_style": "path", "payload_signing_enabled": False},
                    connect_timeout=10,
                    read_timeout=120,
                    max_pool_connections=32,
                    retries={"mode": "standard", "max_attempts": 3},
                    tcp_keepalive=True,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    ignore_configured_endpoint_urls=True,
                    use_dualstack_endpoint=False,
                    use_fips_endpoint=False,
                )
                if self.config.credentials == "aws":
                    session, keys = await asyncio.to_thread(_chain_session), {}  # it reads ~/.aws
                else:
                    session = _isolated_session()
                    keys = {"aws_access_key_id": self.config.access_key,
                            "aws_secret_access_key": self.config.secret_key}
                stack = contextlib.AsyncExitStack()
                try:
                    client = await stack.enter_async_context(
                        session.create_client(
                            "s3",
                            endpoint_url=self.config.endpoint or None,
                            region_name=self.config.region,
                            **keys,
                            verify=_ca_bundle(),
                            config=cfg,
                        )
                    )
                except ValueError as e:  # botocore: invalid endpoint URL
                    await stack.aclose()
                    raise DriverUnavailable(f"S3 endpoint {self.endpoint!r} is not usable: {e}") from None
                self._exit, self._client = stack, client
        return self._client

    async def _call(self, op: str, **kwargs) -> Any:
        """One S3 request; transport failures become DriverUnavailable."""
        from botocore.exceptions import (  # noqa: PLC0415
            BotoCoreError,
            ClientError,
            CredentialRetrievalError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError  # noqa: PLC0415

        client = await self._s3()
        try:
            return await getattr(client, op)(Bucket=self.bucket, **kwargs)
        except ClientError:
            raise
        except (BotoConnectionError, HTTPClientError) as e:  # refused, timed out, reset, bad TLS
            raise DriverUnavailable(f"cannot reach S3 endpoint {self.endpoint} (bucket {self.bucket!r}): {e}") from e
        except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as e:
            raise DriverUnavailable(f"S3 endpoint {self.endpoint} (bucket {self.bucket!r}): no credentials: {e} "
                                    "(storage.s3.credentials: aws reads the AWS credential chain)") from e
        except BotoCoreError as e:
            raise DriverUnavailable(f"S3 endpoint {self.endpoint} (bucket {self.bucket!r}): {e}") from e

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _blob_key(self, digest: str) -> str:
        algorithm, encoded = digests.parse(digest)
        return self._key(f"blobs/{algorithm}/{encoded[:2]}/{encoded}")

    def _upload_dir(self, upload_id: str) -> str:
        if not _UPLOAD_ID.match(upload_id or ""):
            raise ValueError("malformed upload id")
        return self._key(f"uploads/{upload_id}/")

    def _piece_key(self, upload_id: str, start: int, end: int, tag: str) -> str:
        return f"{self._upload_dir(upload_id)}piece.{start}-{end}.{tag}"

    def _data_key(self, upload_id: str) -> str:
        return f"{self._upload_dir(upload_id)}data"

    # ---- lifecycle -------------------------------------------------------------------
    async def check(self) -> None:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        where = f"bucket {self.bucket!r} at {self.endpoint}"
        try:
            await self._call("head_bucket")
        except ClientError as e:
            code, status = _code(e), _status(e)
            if status == 404 or code in _NOT_FOUND:
                raise DriverUnavailable(f"{where}: the bucket does not exist (storage.s3.bucket)") from None
            if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                which = ("the credentials the AWS chain found (storage.s3.credentials: aws)"
                         if self.config.credentials == "aws" else "storage.s3.access_key and secret_key")
                raise DriverUnavailable(f"{where}: access denied, check {which} ({code or status})") from None
            if status == 301 or code in ("PermanentRedirect", "AuthorizationHeaderMalformed"):
                raise DriverUnavailable(
                    f"{where}: the bucket is not in region {self.config.region!r} (storage.s3.region)"
                ) from None
            raise DriverUnavailable(f"{where}: HeadBucket answered {code or status}") from None
        probe = self._key(f"_berth/probe-{uuid.uuid4().hex}")
        body = b"berth start-up probe"
        step = "write"
        try:
            await self._call("put_object", Key=probe, Body=body, ContentMD5=_md5(body))
            step = "read"
            r = await self._call("get_object", Key=probe)
            async with r["Body"] as stream:
                if await stream.read() != body:
                    raise DriverUnavailable(f"{where}: a probe object read back differently")
            step = "delete"
            await self._call("delete_object", Key=probe)
        except ClientError as e:
            msg = e.response.get("Error", {}).get("Message", "")
            raise DriverUnavailable(
                f"{where}: cannot {step} a probe object under {self._key('_berth/')!r}: {_code(e)} {msg}".rstrip()
            ) from None

    async def close(self) -> None:
        if self._exit is not None:
            stack, self._exit, self._client = self._exit, None, None
            await stack.aclose()

    # ---- blobs -------------------------------------------------------------------------
    async def _head(self, key: str) -> int | None:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            r = await self._call("head_object", Key=key)
        except ClientError as e:
            if _status(e) == 404 or _code(e) in _NOT_FOUND:
                return None
            raise
        return int(r["ContentLength"])

    async def stat(self, digest: str) -> int | None:
        return await self._head(self._blob_key(digest))

    def local_path(self, digest: str) -> Path | None:
        return None

    async def redirect_url(self, digest: str, expires_in: int = 300) -> str | None:
        if not self.config.redirect:
            return None
        client = await self._s3()
        return await client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._blob_key(digest)}, ExpiresIn=int(expires_in)
        )

    def read(self, digest: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self._read_key(self._blob_key(digest), start, end)

    async def _read_key(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid range {start}-{end}")
        if end is not None and end == start:  # nothing to read; the content must exist all the same
            if await self._head(key) is None:
                raise ContentMissing()
            return
        rng = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            r = await self._call("get_object", Key=key, Range=rng) if (start or end is not None) else \
                await self._call("get_object", Key=key)
        except ClientError as e:
            if _status(e) == 404 or _code(e) in _NOT_FOUND:
                raise ContentMissing() from None
            if _code(e) == "InvalidRange" or _status(e) == 416:  # start at or past the end: nothing
                return
            raise
        from botocore.exceptions import BotoCoreError  # noqa: PLC0415

        async with r["Body"] as body:
            while True:
                try:
                    chunk = await body.read(READ_CHUNK)
                except (BotoCoreError, OSError, asyncio.TimeoutError) as e:  # cut off mid-body
                    raise DriverUnavailable(f"reading {key!r} from S3 endpoint {self.endpoint} failed: {e}") from e
                if not chunk:
                    return
                yield chunk

    async def delete(self, digest: str) -> bool:
        key = self._blob_key(digest)
        if await self._head(key) is None:
            return False
        await self._call("delete_object", Key=key)
        return True

    async def list_digests(self) -> AsyncIterator[str]:
        root = self._key("blobs/")
        async for obj in self._list(root):
            parts = obj["Key"][len(root):].split("/")
            if len(parts) != 3:
                continue
            digest = f"{parts[0]}:{parts[2]}"
            try:
                digests.parse(digest)
            except StorageError:
                continue
            if parts[1] == parts[2][:2]:
                yield digest

    async def _pages(self, operation: str, prefix: str) -> AsyncIterator[dict]:
        from botocore.exceptions import BotoCoreError  # noqa: PLC0415

        client = await self._s3()
        pages = client.get_paginator(operation).paginate(Bucket=self.bucket, Prefix=prefix).__aiter__()
        while True:
            try:
                page = await pages.__anext__()
            except StopAsyncIteration:
                return
            except BotoCoreError as e:
                raise DriverUnavailable(f"listing {prefix!r} at S3 endpoint {self.endpoint} failed: {e}") from e
            yield page

    async def _list(self, prefix: str) -> AsyncIterator[dict]:
        async for page in self._pages("list_objects_v2", prefix):
            for obj in page.get("Contents", ()) or ():
                yield obj

    async def _list_mpus(self, prefix: str) -> AsyncIterator[dict]:
        async for page in self._pages("list_multipart_uploads", prefix):
            for u in page.get("Uploads", ()) or ():
                yield u

    # ---- upload sessions ---------------------------------------------------------------
    async def start_upload(self, upload_id: str) -> UploadState:
        self._upload_dir(upload_id)  # validates the id; nothing is written until bytes arrive
        return {"v": 1, "mpu": None, "parts": [], "pieces": [], "stale": []}

    @staticmethod
    def _parse_state(state: UploadState) -> tuple[str | None, list[list], list[list], list[list]]:
        if not isinstance(state, dict) or state.get("v") != 1:
            raise ValueError("not an s3 upload state")
        return state.get("mpu"), [list(p) for p in state["parts"]], [list(p) for p in state["pieces"]], \
            [list(p) for p in state.get("stale", ())]

    async def _delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = keys[i:i + 1000]
            if len(batch) == 1:
                await self._call("delete_object", Key=batch[0])
            else:
                r = await self._call("delete_objects", Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
                failed = [e for e in r.get("Errors", ()) or () if e.get("Code") not in ("NoSuchKey",)]
                if failed:
                    raise StorageError(f"S3 refused to delete {len(failed)} objects, e.g. {failed[0]}")

    async def _read_pieces(self, upload_id: str, pieces: list[list], limit: int | None = None) -> bytearray:
        """The bytes of ``pieces`` in order (together less than one part), at most ``limit`` of them."""
        out = bytearray()
        for start, end, tag in pieces:
            if limit is not None and len(out) >= limit:
                break
            before = len(out)
            try:
                async for chunk in self._read_key(self._piece_key(upload_id, start, end, tag)):
                    out += chunk
            except ContentMissing:
                raise UploadUnknown(f"upload {upload_id}: piece {start}-{end} is missing") from None
            if len(out) - before != end - start:
                raise StorageError(f"upload {upload_id}: piece {start}-{end} holds {len(out) - before} bytes")
        if limit is not None:
            del out[limit:]
        return out

    async def _put(self, key: str, data) -> None:
        md5 = await asyncio.to_thread(_md5, data) if len(data) > 65536 else _md5(data)
        body = _Body(data)
        try:
            await self._call("put_object", Key=key, Body=body, ContentMD5=md5)
        finally:
            body.release()

    async def _upload_part(self, upload_id: str, mpu: str, number: int, data: bytes | bytearray) -> list:
        md5 = await asyncio.to_thread(_md5, data)
        body = _Body(data)
        try:
            r = await self._call("upload_part", Key=self._data_key(upload_id), UploadId=mpu, PartNumber=number,
                                 Body=body, ContentMD5=md5)
        except Exception as e:
            if _code(e) == "NoSuchUpload":
                raise UploadUnknown("the upload was sealed or aborted") from None
            raise
        finally:
            body.release()
        return [number, r["ETag"], len(data)]

    async def append(
        self, upload_id: str, state: UploadState, offset: int, chunks: AsyncIterable[bytes]
    ) -> tuple[int, UploadState]:
        mpu, parts, pieces, stale = self._parse_state(state)
        parts_end = sum(p[2] for p in parts)
        pieces_end = pieces[-1][1] if pieces else parts_end
        if offset != pieces_end:
            raise ValueError(f"offset {offset} does not match the upload state ({pieces_end})")
        if stale:  # obsolete since the state we were given was stored: safe to delete now
            await self._delete_keys([self._piece_key(upload_id, *p) for p in stale])
        new_stale: list[list] = []
        piece_bytes = pieces_end - parts_end
        number = len(parts) + 1  # of the part being filled
        psize = part_size(number, self.part_size)
        # The part being filled is one buffer of exactly its size, allocated once and handed
        # to the upload as it is: no growing, no copies (memory stays flat, not fragmented).
        buf: bytearray | None = None
        fill = 0
        written = 0
        inflight: asyncio.Task | None = None

        async def settle() -> None:
            nonlocal inflight
            if inflight is not None:
                task, inflight = inflight, None
                parts.append(await task)

        async def with_pieces() -> tuple[bytearray, int]:
            """The pieces' bytes followed by the buffer's, in a new buffer of ``psize``; its fill."""
            nonlocal pieces, piece_bytes
            total = piece_bytes + fill
            head = await self._read_pieces(upload_id, pieces)
            out = bytearray(psize)
            out[:piece_bytes] = head
            del head
            if fill:
                with memoryview(buf) as view:
                    out[piece_bytes:piece_bytes + fill] = view[:fill]
            new_stale.extend(pieces)
            pieces, piece_bytes = [], 0
            return out, total

        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                written += len(chunk)
                with memoryview(chunk) as rest:
                    while len(rest):
                        if buf is None:
                            buf = bytearray(psize)
                        take = min(len(rest), psize - piece_bytes - fill)
                        buf[fill:fill + take] = rest[:take]
                        fill += take
                        rest = rest[take:]
                        if piece_bytes + fill < psize:
                            continue
                        if pieces:  # the pieces start this part
                            buf, fill = await with_pieces()
                        if number > MAX_PARTS:
                            raise SizeInvalid(f"blob larger than {MAX_PARTS} parts")
                        await settle()  # at most one part in flight while the next one fills
                        if mpu is None:
                            r = await self._call("create_multipart_upload", Key=self._data_key(upload_id))
                            mpu = r["UploadId"]
                        inflight = asyncio.ensure_future(self._upload_part(upload_id, mpu, number, buf))
                        buf, fill = None, 0
                        number += 1
                        psize = part_size(number, self.part_size)
            await settle()
            if fill:
                if len(pieces) >= MAX_PIECES:  # merge: one piece instead of many small ones
                    buf, fill = await with_pieces()
                start = pieces[-1][1] if pieces else sum(p[2] for p in parts)
                del buf[fill:]
                end = start + fill
                tag = uuid.uuid4().hex[:12]
                await self._put(self._piece_key(upload_id, start, end, tag), buf)
                pieces.append([start, end, tag])
        except BaseException:
            if inflight is not None:
                inflight.cancel()
                with contextlib.suppress(BaseException):
                    await inflight
            raise
        return written, {"v": 1, "mpu": mpu, "parts": parts, "pieces": pieces, "stale": new_stale}

    async def _seal(self, upload_id: str, state: UploadState, size: int) -> tuple[str | None, int]:
        """An object whose first ``size`` bytes are the upload: (key, its size); (None, 0) for size 0."""
        mpu, parts, pieces, _ = self._parse_state(state)
        parts_end = sum(p[2] for p in parts)
        total = pieces[-1][1] if pieces else parts_end
        if total < size:
            raise SizeInvalid(f"the upload holds {total} bytes, not {size}")
        if size == 0:
            return None, 0
        if not parts:  # never a multipart upload: one piece is the object, several are < one part
            if len(pieces) == 1:
                return self._piece_key(upload_id, *pieces[0]), total
            data = await self._read_pieces(upload_id, pieces, size)
            key = self._data_key(upload_id)
            await self._put(key, data)
            return key, size
        key = self._data_key(upload_id)
        existing = await self._head(key)  # sealed before (read_upload, or a commit that died)
        if existing is not None and existing >= size:
            return key, existing
        used: list[list] = []
        covered = 0
        for p in parts:
            if covered >= size:
                break
            used.append(p)
            covered += p[2]
        if covered < size:  # the pieces' first bytes are the last part
            need = size - covered
            number = len(used) + 1
            if len(pieces) == 1:
                src = self._piece_key(upload_id, *pieces[0])
                r = await self._call("upload_part_copy", Key=key, UploadId=mpu, PartNumber=number,
                                     CopySource={"Bucket": self.bucket, "Key": src},
                                     CopySourceRange=f"bytes=0-{need - 1}")
                used.append([number, r["CopyPartResult"]["ETag"], need])
            else:
                data = bytes(await self._read_pieces(upload_id, pieces, need))
                used.append(await self._upload_part(upload_id, mpu, number, data))
            covered = size
        try:
            await self._call("complete_multipart_upload", Key=key, UploadId=mpu,
                             MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag, _ in used]})
        except Exception as e:
            if _code(e) in ("InvalidPart", "InvalidPartOrder"):  # a part changed after it was recorded
                raise DigestInvalid("a part of the upload changed after it was written (a concurrent writer "
                                    "whose lease lapsed); push the blob again") from None
            if _code(e) != "NoSuchUpload":
                raise
            raise UploadUnknown("the upload's multipart upload is gone") from None
        sealed = await self._head(key)
        if sealed != covered:
            raise StorageError(f"upload {upload_id}: completed object holds {sealed} bytes, expected {covered}")
        return key, covered

    async def read_upload(self, upload_id: str, state: UploadState, size: int) -> AsyncIterator[bytes]:
        key, _ = await self._seal(upload_id, state, size)
        if key is None:
            return
        async for chunk in self._read_key(key, 0, size):
            yield chunk

    async def commit(self, upload_id: str, state: UploadState, size: int, digest: str,
                     data: bytes | None = None) -> None:
        dst = self._blob_key(digest)
        mpu, parts, pieces, _ = self._parse_state(state)
        if data is not None:  # the whole upload, never written: one PUT of the blob itself
            if len(data) != size:
                raise SizeInvalid(f"the upload holds {len(data)} bytes, not {size}")
            if await self._head(dst) != size:
                await self._put(dst, data)
                placed = await self._head(dst)
                if placed != size:
                    raise StorageError(f"placing {digest} left {placed} bytes, expected {size}")
            await self._discard(upload_id, mpu)
            return
        total = pieces[-1][1] if pieces else sum(p[2] for p in parts)
        if total < size:
            raise SizeInvalid(f"the upload holds {total} bytes, not {size}")
        if await self._head(dst) != size:
            src, src_size = await self._seal(upload_id, state, size)
            if src is None:
                await self._put(dst, b"")
            else:
                await self._copy(src, src_size, dst, size)
            placed = await self._head(dst)
            if placed != size:
                if placed is not None:
                    with contextlib.suppress(Exception):
                        await self._call("delete_object", Key=dst)
                raise StorageError(f"placing {digest} left {placed} bytes, expected {size}")
        await self._discard(upload_id, mpu)

    async def _copy(self, src: str, src_size: int, dst: str, size: int) -> None:
        """Server-side copy of the first ``size`` bytes of ``src`` to ``dst``."""
        source = {"Bucket": self.bucket, "Key": src}
        if src_size == size and size <= self.copy_limit:
            await self._call("copy_object", Key=dst, CopySource=source)
            return
        r = await self._call("create_multipart_upload", Key=dst)
        mpu = r["UploadId"]
        try:
            ranges = [(i + 1, start, min(start + self.copy_part, size))
                      for i, start in enumerate(range(0, size, self.copy_part))]
            gate = asyncio.Semaphore(COPY_CONCURRENCY)

            async def one(number: int, start: int, end: int) -> dict:
                async with gate:
                    r = await self._call("upload_part_copy", Key=dst, UploadId=mpu, PartNumber=number,
                                         CopySource=source, CopySourceRange=f"bytes={start}-{end - 1}")
                    return {"PartNumber": number, "ETag": r["CopyPartResult"]["ETag"]}

            done = await asyncio.gather(*(one(*rng) for rng in ranges))
            await self._call("complete_multipart_upload", Key=dst, UploadId=mpu, MultipartUpload={"Parts": done})
        except BaseException:
            with contextlib.suppress(Exception):
                await self._call("abort_multipart_upload", Key=dst, UploadId=mpu)
            raise

    async def _discard(self, upload_id: str, mpu: str | None) -> None:
        """Delete every object and multipart upload of an upload."""
        from botocore.exceptions import ClientError  # noqa: PLC0415

        prefix = self._upload_dir(upload_id)
        mpus = {mpu} if mpu else set()
        async for u in self._list_mpus(prefix):
            if u["Key"] == self._data_key(upload_id):
                mpus.add(u["UploadId"])
        for m in mpus:
            try:
                await self._call("abort_multipart_upload", Key=self._data_key(upload_id), UploadId=m)
            except ClientError as e:
                if _code(e) != "NoSuchUpload" and _status(e) != 404:
                    raise
        keys = [obj["Key"] async for obj in self._list(prefix)]
        if keys:
            await self._delete_keys(keys)

    async def abort(self, upload_id: str, state: UploadState | None) -> None:
        mpu = None
        if state is not None:
            mpu = self._parse_state(state)[0]
        await self._discard(upload_id, mpu)

    async def list_uploads(self) -> AsyncIterator[tuple[str, float]]:
        root = self._key("uploads/")
        seen: dict[str, float] = {}
        async for obj in self._list(root):
            upload_id = obj["Key"][len(root):].split("/", 1)[0]
            at = obj["LastModified"].timestamp()
            seen[upload_id] = max(seen.get(upload_id, 0.0), at)
        async for u in self._list_mpus(root):
            upload_id = u["Key"][len(root):].split("/", 1)[0]
            at = u["Initiated"].timestamp()
            seen[upload_id] = max(seen.get(upload_id, 0.0), at)
        for upload_id, at in seen.items():
            if _UPLOAD_ID.match(upload_id):
                yield upload_id, at


__all__ = ["MIN_PART", "PART_SIZE", "S3Driver", "part_size"]
