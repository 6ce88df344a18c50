"""Request ids, the JSON access log, text format, and redaction."""
from __future__ import annotations

import logging
import re

import pytest

from registry import logs
from registry.config import Config
from registry.services import SERVICES
from tests.conftest import push_image

GENERATED = re.compile(r"[0-9a-f]{24}")


async def test_a_well_formed_request_id_is_echoed(client):
    for rid in ("abc-123", "A.b_c-9", "x" * 128):
        r = await client.get("/v2/", headers={"X-Request-Id": rid})
        assert r.headers["X-Request-Id"] == rid


@pytest.mark.parametrize("bad", ["", "x" * 129, "has space", "semi;colon", "new\tline", "ünï"])
async def test_a_malformed_request_id_is_replaced(client, bad):
    r = await client.get("/v2/", headers={"X-Request-Id": bad})
    assert GENERATED.fullmatch(r.headers["X-Request-Id"]), r.headers["X-Request-Id"]


async def test_every_response_gets_an_id_errors_and_blobs_included(client):
    _, _, config_digest, _ = await push_image(client, "acme/app", "v1")
    ids = set()
    for path in ("/v2/", "/nope", "/v2/acme/app/manifests/missing", f"/v2/acme/app/blobs/{config_digest}", "/healthz"):
        r = await client.get(path)
        ids.add(r.headers["X-Request-Id"])
    assert len(ids) == 5 and all(GENERATED.fullmatch(i) for i in ids)


async def test_one_json_access_line_per_request(serve, config, logged):
    cap = logged()
    client = await serve(config)
    await push_image(client, "acme/app", "v1")
    r = await client.get("/v2/acme/app/manifests/v1", headers={"X-Request-Id": "req-42", "Accept": "*/*"})
    assert r.status == 200
    body = await r.read()
    lines = [d for d in cap.access() if d["request_id"] == "req-42"]
    assert len(lines) == 1
    line = lines[0]
    assert set(line) == {"time", "level", "logger", "request_id", "client", "principal", "tenant", "repository",
                         "method", "route", "path", "status", "bytes_in", "bytes_out", "duration"}
    assert line["route"] == "/v2/{name}/manifests/{reference}"
    assert line["path"] == "/v2/acme/app/manifests/v1"
    assert (line["method"], line["status"], line["repository"], line["tenant"]) == ("GET", 200, "acme/app", "acme")
    assert line["client"] == "127.0.0.1" and line["principal"] is None  # auth off: nobody authenticated
    assert line["bytes_out"] > len(body) and line["bytes_in"] == 0 and line["duration"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    # every line of the run is JSON (cap.json parses each), one per request: two blobs, a manifest, the GET
    assert [(d["method"], d["status"]) for d in cap.access()] == [("POST", 201), ("POST", 201), ("PUT", 201),
                                                                  ("GET", 200)]


async def test_the_access_log_can_be_turned_off(serve, config, logged):
    config.access_log = False
    cap = logged()
    client = await serve(config)
    assert (await client.get("/v2/")).status == 200
    assert cap.access() == []


async def test_log_lines_written_during_a_request_carry_its_id(serve, config, logged, monkeypatch):
    cap = logged()
    client = await serve(config)
    svc = client.server.app[SERVICES]

    async def boom(*args, **kwargs):
        raise RuntimeError("kaput")

    monkeypatch.setattr(svc.manifests, "get", boom)
    r = await client.get("/v2/acme/app/manifests/v1", headers={"X-Request-Id": "err-7"})
    assert r.status == 500
    errors = [d for d in cap.json() if d["level"] == "ERROR"]
    assert len(errors) == 1
    assert errors[0]["request_id"] == "err-7" and "RuntimeError: kaput" in errors[0]["exception"]


async def test_text_format_for_a_terminal(serve, config, logged):
    config.log_format = "text"
    cap = logged()
    client = await serve(config)
    await client.get("/v2/", headers={"X-Request-Id": "txt-1"})
    logging.getLogger("berth").warning("hello %s", "there")
    lines = cap.lines()
    access = [ln for ln in lines if "txt-1" in ln]
    assert len(access) == 1 and '"GET /v2/" 200' in access[0] and "berth.access" in access[0]
    assert any(ln.endswith("WARNING berth: hello there") for ln in lines)


def test_log_format_is_json_or_text():
    with pytest.raises(ValueError):
        logs.configure(Config(log_format="xml"))
    assert Config.load(env={"BERTH_LOG_FORMAT": "text"}).log_format == "text"
    assert Config.load(env={}).log_format == "json" and Config.load(env={}).access_log is True
    assert Config.load(env={"BERTH_ACCESS_LOG": "0"}).access_log is False


@pytest.mark.parametrize("line, secret", [
    ("Authorization: Basic YWRtaW46aHVudGVyMg==", "YWRtaW46aHVudGVyMg=="),
    ("{'authorization': 'Bearer abc.def.ghi'}", "abc.def.ghi"),
    ("token eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl here", "eyJhbGciOiJFUzI1NiJ9"),
    ("hash $2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234 stored", "$2b$12$abcdefghij"),
    ("grant_type=password&username=u&password=hunter2&scope=x", "hunter2"),
    ('{"secret": "s3cr3t-value"}', "s3cr3t-value"),
    ("refresh_token=zzz-refresh-zzz", "zzz-refresh-zzz"),
    ("secret_key='wJalrXUtnFEMI'", "wJalrXUtnFEMI"),
])
def test_redaction(line, secret):
    out = logs.redact(line)
    assert secret not in out and "[REDACTED]" in out


def test_redaction_leaves_ordinary_lines_alone():
    line = 'GET /v2/acme/app/manifests/v1 200 "tokens issued" berth_tokens_issued_total'
    assert logs.redact(line) == line


def test_noisy_libraries_never_log_below_warning(config, logged):
    logged(Config(data_dir=config.data_dir, log_level="DEBUG"))
    assert logging.getLogger("sqlalchemy.engine").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("botocore.endpoint").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("berth").getEffectiveLevel() == logging.DEBUG


def _migrate_release_database(path) -> None:
    """A SQLite database built revision by revision to the first release's schema (0001), then
    upgraded to the head: every revision applied once."""
    from sqlalchemy import create_engine  # noqa: PLC0415

    from storage import migrations  # noqa: PLC0415

    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            migrations.upgrade(conn, "0001")
        with engine.begin() as conn:
            migrations.upgrade(conn, "head")
    finally:
        engine.dispose()


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_alembic_lines_are_debug_and_each_migration_applied_is_one_info_line(config, logged, tmp_path, level):
    """`berth serve` start-up: Alembic's "Context impl SQLiteImpl." and "Running upgrade" lines are
    DEBUG (absent at INFO); one INFO line of berth.migrations per revision actually applied."""
    from storage import migrations  # noqa: PLC0415

    cap = logged(Config(data_dir=config.data_dir, log_level=level))
    _migrate_release_database(tmp_path / "release.db")
    lines = cap.json()
    applied = [d for d in lines if d["logger"] == "berth.migrations" and d["level"] == "INFO"]
    revisions = [r.revision for r in migrations.script().iterate_revisions("head", "base")]
    assert len(applied) == len(revisions) >= 3, lines
    assert all("schema migration applied" in d["message"] for d in applied)
    assert {d["message"].split(": ", 1)[1].split(" ")[2] for d in applied} == set(revisions)
    chatter = [d for d in lines if d["logger"].startswith("alembic")]
    assert all(d["level"] == "DEBUG" for d in chatter), chatter
    if level == "INFO":
        assert chatter == []
        assert [d for d in lines if d["level"] == "INFO" and d["logger"] != "berth.migrations"] == []
    else:
        assert any("Context impl SQLiteImpl" in d["message"] for d in chatter)
        assert any("Running upgrade" in d["message"] for d in chatter)
