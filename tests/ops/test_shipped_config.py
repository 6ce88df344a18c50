"""The Grafana dashboard and the alerting rules in config/ use only metrics Berth exports."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from registry import metrics  # noqa: F401 - declares every metric

CONFIG = Path(__file__).resolve().parents[2] / "config"
SUFFIXES = ("_bucket", "_count", "_sum")


def exported() -> set[str]:
    from prometheus_client import REGISTRY

    names = {"berth_storage_used_bytes", "berth_uploads_in_progress"}  # computed at scrape
    for family in REGISTRY.collect():  # labelled families have no samples before their first use
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + s for s in SUFFIXES}
        else:
            names.add(family.name)
    return names


def used(text: str) -> set[str]:
    return set(re.findall(r"\bberth_[a-z_]+", text))


def test_dashboard_queries_exported_metrics():
    dash = json.loads((CONFIG / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert exprs
    names = used("\n".join(exprs))
    assert names and names <= exported(), names - exported()


def test_alert_rules_query_exported_metrics():
    rules = yaml.safe_load((CONFIG / "prometheus-alerts.yaml").read_text())["groups"][0]["rules"]
    assert all({"alert", "expr", "labels", "annotations"} <= set(r) for r in rules)
    names = used("\n".join(r["expr"] for r in rules))
    assert names and names <= exported(), names - exported()
