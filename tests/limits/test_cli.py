"""`berth tenant create --quota-bytes` and `berth tenant quota`: the admin API's operations."""
from __future__ import annotations

import json

from registry.cli import main


def run(data, capsys, *args: str):
    capsys.readouterr()
    rc = main([*args, "--data", data])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else json.loads(err))


def test_quota_from_the_cli(tmp_path, capsys):
    data = str(tmp_path / "data")
    rc, out = run(data, capsys, "tenant", "create", "acme", "--quota-bytes", "1000")
    assert rc == 0 and out["quota_bytes"] == 1000
    rc, out = run(data, capsys, "tenant", "show", "acme")
    assert (out["quota_bytes"], out["usage_bytes"]) == (1000, 0)
    assert run(data, capsys, "tenant", "quota", "acme", "none")[1]["quota_bytes"] is None
    assert run(data, capsys, "tenant", "quota", "acme", "5")[1]["quota_bytes"] == 5
    rc, out = run(data, capsys, "tenant", "quota", "acme", "lots")
    assert rc == 1 and out["errors"][0]["code"] == "INVALID_REQUEST"
    assert run(data, capsys, "tenant", "show", "acme")[1]["quota_bytes"] == 5
