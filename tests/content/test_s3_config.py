"""storage: / storage.s3 settings, from berth.yaml and BERTH_STORAGE_*; validated at load."""
from __future__ import annotations

from pathlib import Path

import pytest

from registry.config import Config, S3Config

ENV = {
    "BERTH_STORAGE_DRIVER": "s3",
    "BERTH_STORAGE_S3_ENDPOINT": "http://127.0.0.1:8333",
    "BERTH_STORAGE_S3_REGION": "eu-west-1",
    "BERTH_STORAGE_S3_BUCKET": "layers",
    "BERTH_STORAGE_S3_PREFIX": "/berth/prod/",
    "BERTH_STORAGE_S3_ACCESS_KEY": "AK",
    "BERTH_STORAGE_S3_SECRET_KEY": "SK",
    "BERTH_STORAGE_S3_REDIRECT": "true",
}


def test_defaults_are_filesystem():
    cfg = Config.load(None, env={})
    assert cfg.storage.driver == "filesystem"
    assert cfg.storage.s3.bucket is None and cfg.storage.s3.redirect is False


def test_yaml(tmp_path):
    p = tmp_path / "berth.yaml"
    p.write_text("storage:\n  driver: s3\n  s3:\n    endpoint: https://minio.internal:9000\n    bucket: b1\n"
                 "    prefix: registry\n    access-key: AK\n    secret_key: SK\n    redirect: true\n")
    s3 = Config.load(p, env={}).storage.s3
    assert (s3.endpoint, s3.bucket, s3.prefix, s3.access_key, s3.secret_key, s3.redirect, s3.region) == (
        "https://minio.internal:9000", "b1", "registry", "AK", "SK", True, "us-east-1")


def test_environment_overrides_yaml(tmp_path):
    p = tmp_path / "berth.yaml"
    p.write_text("storage:\n  driver: filesystem\n  s3:\n    bucket: fromyaml\n    redirect: false\n")
    cfg = Config.load(p, env=ENV)
    s3 = cfg.storage.s3
    assert cfg.storage.driver == "s3"
    assert (s3.endpoint, s3.region, s3.bucket, s3.prefix, s3.access_key, s3.secret_key, s3.redirect) == (
        "http://127.0.0.1:8333", "eu-west-1", "layers", "berth/prod", "AK", "SK", True)


@pytest.mark.parametrize("change, message", [
    ({"BERTH_STORAGE_DRIVER": "gcs"}, "storage.driver"),
    ({"BERTH_STORAGE_S3_BUCKET": ""}, "storage.s3.bucket"),
    ({"BERTH_STORAGE_S3_SECRET_KEY": ""}, "storage.s3.access_key and storage.s3.secret_key"),
    ({"BERTH_STORAGE_S3_ENDPOINT": "127.0.0.1:8333"}, "storage.s3.endpoint"),
    ({"BERTH_STORAGE_S3_ENDPOINT": "ftp://host"}, "storage.s3.endpoint"),
    ({"BERTH_STORAGE_S3_ENDPOINT": "http://host:99999"}, "storage.s3.endpoint"),
    ({"BERTH_STORAGE_S3_ENDPOINT": "http://host/bucket"}, "storage.s3.endpoint"),
    ({"BERTH_STORAGE_S3_PREFIX": "a/../b"}, "storage.s3.prefix"),
    ({"BERTH_STORAGE_S3_REDIRECT": "maybe"}, "BERTH_STORAGE_S3_REDIRECT"),
    ({"BERTH_STORAGE_S3_CREDENTIALS": "aws"}, "not used with storage.s3.credentials: aws"),
    ({"BERTH_STORAGE_S3_CREDENTIALS": "iam"}, "BERTH_STORAGE_S3_CREDENTIALS"),
])
def test_invalid_settings_are_named(change, message):
    env = {**ENV}
    for k, v in change.items():
        if v:
            env[k] = v
        else:
            env.pop(k)
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        Config.load(None, env=env)


def test_aws_credential_chain_needs_no_keys():
    env = {k: v for k, v in ENV.items() if "_KEY" not in k}
    with pytest.raises(ValueError, match="or storage.s3.credentials: aws"):
        Config.load(None, env=env)
    s3 = Config.load(None, env={**env, "BERTH_STORAGE_S3_CREDENTIALS": "AWS"}).storage.s3
    assert (s3.credentials, s3.access_key, s3.secret_key) == ("aws", None, None)


def test_s3_settings_ignored_by_filesystem():
    cfg = Config.load(None, env={"BERTH_STORAGE_S3_ENDPOINT": "not a url"})
    assert cfg.storage.driver == "filesystem"


def test_documented_file_holds_the_defaults():
    cfg = Config.load(Path(__file__).resolve().parents[2] / "config" / "berth.yaml", env={})
    assert cfg.storage.driver == "filesystem"
    assert cfg.storage.s3 == S3Config()
