"""docs/openapi.yaml lists exactly the routes Berth serves (registry/routes.py, registry/auth/setup.py)."""
from __future__ import annotations

from pathlib import Path

import yaml

from registry.app import create_app
from registry.config import Config

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
METHODS = {"get", "head", "post", "put", "patch", "delete"}


def _spec() -> dict:
    return yaml.safe_load(SPEC.read_text())


def _served(tmp_path) -> set[tuple[str, str]]:
    cfg = Config(data_dir=tmp_path / "data")
    cfg.auth.enabled = True  # the admin API and the realm exist only with auth on
    app = create_app(cfg)
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp adds HEAD to every GET route
        out.add((route.resource.canonical, route.method.lower()))
    return out


def test_every_route_is_in_the_spec_and_nothing_else(tmp_path):
    spec = _spec()
    documented = {(path, m) for path, item in spec["paths"].items() for m in item if m in METHODS and m != "head"}
    served = _served(tmp_path)
    assert served - documented == set(), "served but not in docs/openapi.yaml"
    assert documented - served == set(), "in docs/openapi.yaml but not served"
    for path, item in spec["paths"].items():
        if "head" in item:
            assert "get" in item, f"{path}: HEAD is documented where there is no GET"


def test_every_reference_resolves_and_every_operation_answers():
    spec = _spec()

    def resolve(ref: str):
        node = spec
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node

    def walk(node, where):
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(node["$ref"])
            for k, v in node.items():
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    walk(spec, "")
    for path, item in spec["paths"].items():
        for m, op in item.items():
            if m in METHODS:
                responses = op["responses"]
                if "$ref" in responses:
                    responses = resolve(responses["$ref"])
                assert responses and all(str(code).isdigit() for code in responses), (path, m)
                assert op.get("summary"), (path, m)
