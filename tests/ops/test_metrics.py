"""/metrics: the Prometheus text format, route templates as labels, the documented metrics."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from registry import metrics
from tests.conftest import push_blob, push_image

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST_ROUTE = "/v2/{name}/manifests/{reference}"


async def scrape(client) -> dict[tuple[str, tuple], float]:
    r = await client.get("/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(await r.text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_requests_are_counted_by_route_template_method_and_status(client):
    await push_image(client, "acme/app", "v1")
    before = await scrape(client)
    for _ in range(3):
        assert (await client.get("/v2/acme/app/manifests/v1")).status == 200
    assert (await client.get("/v2/acme/nope/manifests/v1")).status == 404
    assert (await client.get("/no/such/path/x1")).status == 404
    after = await scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("berth_http_requests_total", route=MANIFEST_ROUTE, method="GET", status="200") == 3
    assert delta("berth_http_requests_total", route=MANIFEST_ROUTE, method="GET", status="404") == 1
    assert delta("berth_http_requests_total", route="(unmatched)", method="-", status="404") == 1
    assert delta("berth_http_request_duration_seconds_count", route=MANIFEST_ROUTE, method="GET") == 4
    assert delta("berth_http_sent_bytes_total", route=MANIFEST_ROUTE, method="GET") > 0
    # never a raw path (unbounded cardinality)
    labels = {v for (_, ls) in after for (_, v) in ls}
    assert not any("acme/app" in v or "x1" in v for v in labels)


async def test_bytes_in_db_and_driver_latency(client):
    before = await scrape(client)
    digest = await push_blob(client, "acme/app", b"x" * 1000)
    assert (await client.head(f"/v2/acme/app/blobs/{digest}")).status == 200
    after = await scrape(client)
    blob_post = ("berth_http_received_bytes_total", (("method", "POST"), ("route", "/v2/{name}/blobs/uploads/")))
    assert after[blob_post] - before.get(blob_post, 0) == 1000
    for kind in ("read", "write"):
        assert value(after, "berth_db_operation_duration_seconds_count", kind=kind) > \
            value(before, "berth_db_operation_duration_seconds_count", kind=kind)
    assert value(after, "berth_storage_operation_duration_seconds_count", driver="filesystem", operation="commit") == \
        value(before, "berth_storage_operation_duration_seconds_count", driver="filesystem", operation="commit") + 1


async def test_storage_per_tenant_and_uploads_in_progress(client):
    await push_blob(client, "acme/app", b"a" * 100)
    await push_blob(client, "acme/other", b"a" * 100)  # the same blob twice in a tenant counts once
    await push_blob(client, "acme/other", b"b" * 50)
    await push_blob(client, "zeta/app", b"c" * 7)
    r = await client.post("/v2/acme/app/blobs/uploads/")
    assert r.status == 202
    samples = await scrape(client)  # the first scrape of this app reads the database
    assert value(samples, "berth_storage_used_bytes", tenant="acme") == 150
    assert value(samples, "berth_storage_used_bytes", tenant="zeta") == 7
    assert value(samples, "berth_uploads_in_progress") == 1


async def test_gc_helper_counts_runs_objects_and_bytes(client):
    class Report:
        links_removed, blobs_removed, uploads_removed, bytes_freed = 2, 3, 1, 4096

    before = await scrape(client)
    metrics.gc_finished(Report())
    after = await scrape(client)
    assert value(after, "berth_gc_runs_total") - value(before, "berth_gc_runs_total") == 1
    assert value(after, "berth_gc_bytes_freed_total") - value(before, "berth_gc_bytes_freed_total") == 4096
    for kind, n in (("blobs", 3), ("links", 2), ("uploads", 1)):
        assert value(after, "berth_gc_objects_freed_total", kind=kind) - \
            value(before, "berth_gc_objects_freed_total", kind=kind) == n


async def test_metrics_can_be_turned_off(serve, config):
    config.metrics_enabled = False
    client = await serve(config)
    assert (await client.get("/metrics")).status == 404


_WORKER = """
from registry import metrics
metrics.HTTP_REQUESTS.labels("/v2/", "GET", "200").inc({n})
metrics.GC_BYTES_FREED.inc({n})
"""
_SCRAPE = """
from registry import metrics
body, _ = metrics.exposition()
print(body.decode())
"""


def test_multiprocess_mode_adds_every_workers_values(tmp_path):
    """``--workers N``: each worker writes its own files; any worker's /metrics reports the sum."""
    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}
    path = metrics.multiprocess_env(env)
    try:
        for n in (2, 5):
            subprocess.run([sys.executable, "-c", _WORKER.format(n=n)], env=env, cwd=REPO_ROOT, check=True)
        out = subprocess.run([sys.executable, "-c", _SCRAPE], env=env, cwd=REPO_ROOT, check=True,
                             capture_output=True, text=True).stdout
    finally:
        metrics.remove_multiprocess_dir(path)
    assert not os.path.exists(path)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(out) for s in f.samples}
    assert samples[("berth_http_requests_total", (("method", "GET"), ("route", "/v2/"), ("status", "200")))] == 7
    assert samples[("berth_gc_bytes_freed_total", ())] == 7
