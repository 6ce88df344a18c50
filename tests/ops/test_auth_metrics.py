"""Tokens issued and refused, logins refused and rate-limited, and the principal in the access log."""
from __future__ import annotations

from registry.config import Config
from tests.auth.conftest import ADMIN_PASSWORD, basic, from_address
from tests.ops.test_metrics import scrape, value


def auth_config(tmp_path) -> Config:
    cfg = Config(data_dir=tmp_path / "data")
    cfg.auth.admin_password = ADMIN_PASSWORD
    cfg.auth.max_failed_logins = 2
    cfg.auth.trusted_proxies = ["127.0.0.1/32"]
    return cfg


async def test_token_and_login_counters(serve, tmp_path, logged):
    cfg = auth_config(tmp_path)
    cap = logged(cfg)
    client = await serve(cfg)
    before = await scrape(client)
    ok = await client.get("/auth/token?service=berth&offline_token=true", headers=basic("admin", ADMIN_PASSWORD))
    assert ok.status == 200
    for _ in range(2):  # two wrong passwords from one address: the limit
        r = await client.get("/auth/token?service=berth", headers={**basic("admin", "nope"), **from_address("10.0.0.9")})
        assert r.status == 401
    r = await client.get("/auth/token?service=berth", headers={**basic("admin", "nope"), **from_address("10.0.0.9")})
    assert r.status == 429
    assert (await client.get("/auth/token?service=other")).status == 400
    assert (await client.get("/v2/", headers=basic("admin", "wrong"))).status == 401  # a /v2/ Basic login
    after = await scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("berth_tokens_issued_total", kind="access") == 1
    assert delta("berth_tokens_issued_total", kind="refresh") == 1
    assert delta("berth_tokens_refused_total", reason="unauthorized") == 2
    assert delta("berth_tokens_refused_total", reason="rate_limited") == 1
    assert delta("berth_tokens_refused_total", reason="invalid_request") == 1
    assert delta("berth_logins_refused_total", reason="invalid_credentials") == 3
    assert delta("berth_logins_refused_total", reason="rate_limited") == 1
    assert delta("berth_rate_limited_total", limit="failed_logins") == 1

    tokens = [a for a in cap.access() if a["route"] == "/auth/token"]
    assert [(a["status"], a["principal"]) for a in tokens] == [
        (200, "admin"), (401, None), (401, None), (429, None), (400, None)]
    assert tokens[1]["client"] == "10.0.0.9"  # the address the limiter counts (trusted proxy)
