"""What only the s3 driver does: start-up checks, isolation from AWS_* settings, no leftovers,
bounded pieces and memory, multipart copy. Against a real SeaweedFS (tests/seaweed.py)."""
from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import tracemalloc
import uuid

import pytest

from registry.config import S3Config
from storage.content import open_driver
from storage.content.s3 import MAX_PIECES, MIN_PART, PART_SIZE, S3Driver, part_size
from storage.errors import DriverUnavailable, UploadUnknown

from .conftest import roundtrip, s3_config
from .test_contract import KiB, MiB, chunks, collect, sha256, upload

pytestmark = pytest.mark.usefixtures("seaweedfs")


@pytest.fixture
async def s3(seaweedfs, s3_bucket):
    """A factory of s3 drivers under one fresh prefix; ``s3.keys()`` lists what is stored."""
    prefix = f"s3-{uuid.uuid4().hex[:8]}"
    drivers = []

    def make(**kwargs):
        cfg_kwargs = {k: kwargs.pop(k) for k in ("redirect",) if k in kwargs}
        d = S3Driver(s3_config(seaweedfs, s3_bucket, prefix, **cfg_kwargs), **kwargs)
        drivers.append(d)
        return d

    make.prefix = prefix
    make.keys = lambda sub="": seaweedfs.keys(s3_bucket, f"{prefix}/{sub}")
    make.mpus = lambda: seaweedfs.multipart_uploads(s3_bucket, f"{prefix}/")
    yield make
    for d in drivers:
        await d.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_part_sizes():
    assert part_size(1) == part_size(1000) == PART_SIZE >= MIN_PART
    assert part_size(1001) == 2 * PART_SIZE
    assert sum(part_size(n) for n in range(1, 10_001)) > 400 * 1024**3  # S3 allows 10,000 parts


def test_open_driver(seaweedfs, s3_bucket):
    from registry.config import StorageConfig

    d = open_driver(StorageConfig(driver="s3", s3=s3_config(seaweedfs, s3_bucket)), data_dir=None)
    assert isinstance(d, S3Driver)


async def test_check_passes_and_leaves_nothing(s3):
    await s3().check()
    assert s3.keys() == []


@pytest.mark.parametrize("case", ["missing bucket", "wrong secret", "wrong access key", "unreachable"])
async def test_check_names_the_problem(seaweedfs, s3_bucket, case):
    cfg = s3_config(seaweedfs, s3_bucket)
    expect = {"missing bucket": "bucket does not exist", "wrong secret": "access denied",
              "wrong access key": "access denied", "unreachable": "cannot reach"}[case]
    if case == "missing bucket":
        cfg.bucket = "no-such-bucket"
    elif case == "wrong secret":
        cfg.secret_key = "not-the-secret"
    elif case == "wrong access key":
        cfg.access_key = "nobody"
    else:
        cfg.endpoint = f"http://127.0.0.1:{closed_port()}"
    d = S3Driver(cfg)
    try:
        with pytest.raises(DriverUnavailable) as e:
            await d.check()
    finally:
        await d.close()
    assert expect in e.value.message
    assert cfg.endpoint in e.value.message and repr(cfg.bucket) in e.value.message


async def test_unreachable_store_is_driver_unavailable():
    d = S3Driver(S3Config(endpoint=f"http://127.0.0.1:{closed_port()}", bucket="b", access_key="a", secret_key="s"))
    try:
        with pytest.raises(DriverUnavailable, match="cannot reach S3 endpoint"):
            await d.stat(sha256(b"x"))
    finally:
        await d.close()


async def test_ignores_aws_environment_and_files(s3, tmp_path, monkeypatch):
    """No AWS_* variable, profile, config file, CA bundle or endpoint override reaches the client."""
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = eu-west-3\ns3 =\n  addressing_style = virtual\n"
                      "ca_bundle = /nonexistent/ca.pem\nendpoint_url = http://127.0.0.1:9\n")
    for var, value in {
        "AWS_PROFILE": "no-such-profile", "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(config), "AWS_ACCESS_KEY_ID": "AKIAENVIRONMENT",
        "AWS_SECRET_ACCESS_KEY": "environment", "AWS_SESSION_TOKEN": "environment-token",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
        "AWS_CA_BUNDLE": "/nonexistent/ca.pem", "REQUESTS_CA_BUNDLE": "/nonexistent/ca.pem",
        "AWS_S3_ADDRESSING_STYLE": "virtual", "AWS_DATA_PATH": str(tmp_path), "AWS_MAX_ATTEMPTS": "0",
        "AWS_DEFAULT_REGION": "ap-south-2",
    }.items():
        monkeypatch.setenv(var, value)
    # the same environment breaks a default session: the test can tell isolation from luck
    from aiobotocore.session import AioSession
    from botocore.exceptions import ProfileNotFound

    with pytest.raises(ProfileNotFound):
        async with AioSession().create_client("s3"):
            pass
    d = s3()
    await d.check()
    upload_id, state, size = await upload(lambda: d, [b"isolated"])
    await d.commit(upload_id, state, size, sha256(b"isolated"))
    assert await collect(d.read(sha256(b"isolated"))) == b"isolated"


async def test_keys_and_no_leftovers(s3):
    data = os.urandom(9 * MiB + 5)
    upload_id, state, size = await upload(s3, [data[:100], data[100:]])
    assert state["mpu"] and len(state["parts"]) == 1
    assert all(k.startswith(f"{s3.prefix}/uploads/{upload_id}/piece.") for k in s3.keys())
    assert s3.mpus() == [f"{s3.prefix}/uploads/{upload_id}/data"]
    digest = sha256(data)
    await s3().commit(upload_id, state, size, digest)
    hexd = digest[7:]
    assert s3.keys() == [f"{s3.prefix}/blobs/sha256/{hexd[:2]}/{hexd}"]
    assert s3.mpus() == []


async def test_abort_removes_orphan_multipart_uploads(s3):
    """A part uploaded by an append that never returned leaves a multipart upload no state knows."""
    upload_id = uuid.uuid4().hex
    state = await s3().start_upload(upload_id)

    async def dies_after_a_part():
        yield os.urandom(PART_SIZE + 10)
        await asyncio.sleep(0)
        raise RuntimeError("replica died")

    with pytest.raises(RuntimeError):
        await s3().append(upload_id, roundtrip(state), 0, dies_after_a_part())
    assert s3.mpus() == [f"{s3.prefix}/uploads/{upload_id}/data"]
    assert upload_id in {u async for u, _ in s3().list_uploads()}
    await s3().abort(upload_id, None)
    assert s3.mpus() == [] and s3.keys() == []


async def test_pieces_stay_few(s3):
    """A client sending 1-byte chunks: pieces are merged, stale ones deleted on the next append."""
    upload_id = uuid.uuid4().hex
    state = roundtrip(await s3().start_upload(upload_id))
    data = b""
    for i in range(3 * MAX_PIECES):
        b = bytes([i % 256])
        _, state = await s3().append(upload_id, state, len(data), chunks(b))
        state = roundtrip(state)
        data += b
        assert len(state["pieces"]) <= MAX_PIECES
        assert len(s3.keys("uploads/")) <= 2 * MAX_PIECES + 1
    await s3().commit(upload_id, state, len(data), sha256(data))
    assert await collect(s3().read(sha256(data))) == data


async def test_multipart_copy_of_large_content(s3):
    """Above the single-copy limit (5 GiB on S3; lowered here) commit copies in ranges."""
    data = os.urandom(12 * MiB + 3)
    upload_id, state, size = await upload(s3, [data])
    d = s3(copy_limit=MIN_PART, copy_part=MIN_PART)
    await d.commit(upload_id, state, size, sha256(data))
    assert hashlib.sha256(await collect(d.read(sha256(data)))).hexdigest() == sha256(data)[7:]
    assert s3.mpus() == []


async def test_append_after_read_upload_is_refused(s3):
    upload_id, state, size = await upload(s3, [os.urandom(9 * MiB)])
    await collect(s3().read_upload(upload_id, state, size))
    with pytest.raises(UploadUnknown):
        await s3().append(upload_id, state, size, chunks(os.urandom(9 * MiB)))
    await s3().abort(upload_id, state)
    assert s3.keys() == [] and s3.mpus() == []


async def test_append_memory_stays_bounded(s3):
    """64 MiB streamed in 64 KiB chunks: the part being filled and the one being sent, no more."""
    total = 64 * MiB
    block = os.urandom(64 * KiB)

    async def stream():
        for _ in range(total // len(block)):
            yield block

    upload_id = uuid.uuid4().hex
    d = s3()
    await d.check()  # the client exists before measuring
    state = await d.start_upload(upload_id)
    tracemalloc.start()
    try:
        written, state = await d.append(upload_id, state, 0, stream())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert written == total
    assert peak < 2 * PART_SIZE + 4 * MiB, f"peak {peak / MiB:.1f} MiB while appending {total // MiB} MiB"
    await d.abort(upload_id, state)


async def test_read_past_the_end_is_empty(s3):
    upload_id, state, size = await upload(s3, [b"0123456789"])
    await s3().commit(upload_id, state, size, sha256(b"0123456789"))
    assert await collect(s3().read(sha256(b"0123456789"), 10)) == b""
    assert await collect(s3().read(sha256(b"0123456789"), 20, 30)) == b""


# ---- storage.s3.credentials: aws (the AWS SDK's credential chain) --------------------------------

def _aws_chain_env(monkeypatch, tmp_path, **env: str) -> None:
    """Only ``env`` for the chain: no host ~/.aws, no instance metadata (the network is closed)."""
    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for var, value in env.items():
        monkeypatch.setenv(var, value)


def _chain_driver(seaweedfs, bucket: str) -> S3Driver:
    cfg = s3_config(seaweedfs, bucket, f"chain-{uuid.uuid4().hex[:8]}")
    cfg.access_key = cfg.secret_key = None
    cfg.credentials = "aws"
    cfg.validate()
    return S3Driver(cfg)


async def _roundtrip(d: S3Driver, data: bytes) -> None:
    await d.check()
    upload_id, state, size = await upload(lambda: d, [data])
    await d.commit(upload_id, state, size, sha256(data))
    assert await collect(d.read(sha256(data))) == data


async def test_aws_chain_takes_keys_from_the_environment_and_nothing_else(seaweedfs, s3_bucket, monkeypatch,
                                                                          tmp_path):
    # the chain gives the credentials only: the endpoint, addressing and CA stay Berth's settings
    _aws_chain_env(monkeypatch, tmp_path, AWS_ACCESS_KEY_ID=seaweedfs.access_key,
                   AWS_SECRET_ACCESS_KEY=seaweedfs.secret_key, AWS_ENDPOINT_URL_S3="http://127.0.0.1:9",
                   AWS_S3_ADDRESSING_STYLE="virtual", AWS_CA_BUNDLE="/nonexistent/ca.pem")
    d = _chain_driver(seaweedfs, s3_bucket)
    try:
        await _roundtrip(d, b"from the environment")
    finally:
        await d.close()


@pytest.mark.parametrize("env, message", [
    ({"AWS_ACCESS_KEY_ID": "AKIAWRONG", "AWS_SECRET_ACCESS_KEY": "wrong"},
     r"access denied, check the credentials the AWS chain found"),
    ({}, r"no credentials: .*storage.s3.credentials: aws"),
], ids=["wrong", "missing"])
async def test_aws_chain_wrong_or_missing_credentials_name_the_chain(seaweedfs, s3_bucket, monkeypatch, tmp_path,
                                                                     env, message):
    _aws_chain_env(monkeypatch, tmp_path, **env)
    d = _chain_driver(seaweedfs, s3_bucket)
    try:
        with pytest.raises(DriverUnavailable, match=message):
            await d.check()
    finally:
        await d.close()


async def test_aws_chain_web_identity_as_on_eks(seaweedfs, s3_bucket, monkeypatch, tmp_path, aiohttp_server):
    """IRSA: the pod's projected token is exchanged at STS (AssumeRoleWithWebIdentity) for temporary
    credentials, which then sign every request to the store. AWS STS is out of reach here, so a
    stand-in on 127.0.0.1 answers the exchange, and SeaweedFS (whose identities are static keys)
    refuses the session token: this checks the exchange and the credentials the client signs
    with, and that the store's refusal names the chain. The chain's static-key path above is
    checked against the real store end to end."""
    from datetime import datetime, timedelta, timezone

    from aiohttp import web

    seen: list[dict] = []

    async def sts(request: web.Request) -> web.Response:
        form = dict(await request.post())
        seen.append(form)
        expires = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.Response(content_type="text/xml", text=f"""<AssumeRoleWithWebIdentityResponse
 xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult><Credentials>
<AccessKeyId>{seaweedfs.access_key}</AccessKeyId><SecretAccessKey>{seaweedfs.secret_key}</SecretAccessKey>
<SessionToken>session-token</SessionToken><Expiration>{expires}</Expiration></Credentials>
<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/berth/pod</Arn><AssumedRoleId>AROA:pod</AssumedRoleId>
</AssumedRoleUser></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>""")

    app = web.Application()
    app.router.add_post("/", sts)
    server = await aiohttp_server(app)
    token = tmp_path / "token"
    token.write_text("eyJ.projected.token")
    _aws_chain_env(monkeypatch, tmp_path, AWS_ROLE_ARN="arn:aws:iam::123456789012:role/berth",
                   AWS_WEB_IDENTITY_TOKEN_FILE=str(token), AWS_REGION="us-east-1",
                   AWS_ENDPOINT_URL_STS=f"http://127.0.0.1:{server.port}")
    d = _chain_driver(seaweedfs, s3_bucket)
    try:
        with pytest.raises(DriverUnavailable, match=r"access denied, check the credentials the AWS chain found"):
            await d.check()
        client = await d._s3()
        creds = await client._request_signer._credentials.get_frozen_credentials()
        assert (creds.access_key, creds.secret_key, creds.token) == (
            seaweedfs.access_key, seaweedfs.secret_key, "session-token")
    finally:
        await d.close()
    assert len(seen) == 1 and seen[0]["Action"] == "AssumeRoleWithWebIdentity"
    assert seen[0]["RoleArn"] == "arn:aws:iam::123456789012:role/berth"
    assert seen[0]["WebIdentityToken"] == "eyJ.projected.token"
