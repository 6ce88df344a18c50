"""config/kubernetes/*.yaml checked against the image (Dockerfile) and the code: kinds and
required fields, ports, probe paths (routes of the app), env names Berth reads, writable
volumes for every path Berth writes, Secret keys, the NetworkPolicy, the tenant example."""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from registry.admin.operations import docker_config_json, k8s_secret
from registry.cli import build_parser
from registry.config import Config

from .spec import documented_secret_keys, env_names, get_routes, header_comment, manifests, parse_dockerfile

DOCS = manifests()
NAMESPACED = {"ConfigMap", "Secret", "PersistentVolumeClaim", "Deployment", "Service", "NetworkPolicy",
              "Ingress", "Pod", "PodDisruptionBudget"}
BERTH_DEPLOYMENTS = [d for d in DOCS if d.kind == "Deployment" and d.name == "berth"]
DEPLOY_IDS = [d.file for d in BERTH_DEPLOYMENTS]


def of_kind(kind: str, file: str | None = None, namespace: str | None = None):
    return [d for d in DOCS if d.kind == kind and (file is None or d.file == file)
            and (namespace is None or d.namespace == namespace)]


def one(kind: str, name: str, namespace: str | None = None, files: tuple[str, ...] | None = None):
    found = [d for d in of_kind(kind, namespace=namespace) if d.name == name and (files is None or d.file in files)]
    assert found, f"no {kind} {namespace}/{name} in config/kubernetes ({files or 'any file'})"
    return found[0].body


def berth_container(doc) -> dict:
    containers = doc.body["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "berth")


def effective_config(doc, tmp_path: Path) -> tuple[Config, dict[str, str], object]:
    """The Config that `berth serve` in this container would load: its args (the image's
    ENTRYPOINT is `berth`), the ConfigMap file named by --config, and the env (values from
    Secrets replaced by placeholders)."""
    c = berth_container(doc)
    assert "command" not in c, "keep the image's ENTRYPOINT (berth)"
    args = build_parser().parse_args(c.get("args") or ["serve"])  # the image's CMD
    assert args.command == "serve"
    env = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        elif e["name"].endswith("DATABASE_URL"):  # validated at load: a placeholder of the right form
            env[e["name"]] = "postgresql+asyncpg://berth:placeholder@postgres/berth"
        else:
            env[e["name"]] = "placeholder"
    path = None
    text = file_from_volume(doc, args.config) if args.config else None
    # files the configuration names on read-only Secret mounts (the signing key) must exist at
    # load (registry.config validates them): stand-ins under tmp_path, at the same relative place
    for mount_path, _, volume in mounts(doc):
        if "secret" in volume and text is not None and mount_path in text:
            stand_in = tmp_path / "mounts" / mount_path.strip("/")
            text = text.replace(mount_path, str(stand_in))
            for rel in {t.split(str(stand_in) + "/", 1)[1].split()[0].strip("'\"") for t in text.split("\n")
                        if str(stand_in) + "/" in t}:
                (stand_in / rel).parent.mkdir(parents=True, exist_ok=True)
                (stand_in / rel).write_text("stand-in")
    if text is not None:
        path = tmp_path / "berth.yaml"
        path.write_text(text)
    cfg = Config.load(path, env=env, host=args.host, port=args.port, data_dir=args.data)
    return cfg, env, args


def mounts(doc) -> list[tuple[str, dict, dict]]:
    """(mountPath, volumeMount, volume) of the berth container."""
    vols = {v["name"]: v for v in doc.body["spec"]["template"]["spec"].get("volumes", [])}
    return [(m["mountPath"], m, vols[m["name"]]) for m in berth_container(doc).get("volumeMounts", [])]


def mount_for(doc, path: str):
    best = None
    for mount_path, m, v in mounts(doc):
        if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
            if best is None or len(mount_path) > len(best[0]):
                best = (mount_path, m, v)
    return best


def file_from_volume(doc, path: str) -> str:
    """The content of a file the container sees under a configMap or Secret mount."""
    found = mount_for(doc, path)
    assert found, f"{path} is on no volume of {doc.file}"
    mount_path, _, vol = found
    rel = path[len(mount_path.rstrip("/")) + 1:]
    ns = doc.namespace
    if "configMap" in vol:
        cm = one("ConfigMap", vol["configMap"]["name"], ns)
        return cm["data"][rel]
    if "secret" in vol:
        items = {i["path"]: i["key"] for i in vol["secret"].get("items", [])} or None
        key = items[rel] if items is not None else rel
        secret = one("Secret", vol["secret"]["secretName"], ns)
        return (secret.get("stringData") or {})[key]
    raise AssertionError(f"{path}: volume {vol['name']} is neither a configMap nor a Secret")


def writable(doc, path: str) -> bool:
    found = mount_for(doc, path)
    if not found:
        return False
    _, m, v = found
    return not m.get("readOnly") and ("emptyDir" in v or "persistentVolumeClaim" in v)


# --- every document ---------------------------------------------------------------------------


def test_every_manifest_parses_with_the_required_fields():
    assert DOCS, "no manifests in config/kubernetes"
    kinds = {d.kind for d in DOCS}
    assert {"Namespace", "ConfigMap", "Secret", "PersistentVolumeClaim", "Deployment", "Service", "Ingress",
            "NetworkPolicy", "Pod"} <= kinds, kinds
    for d in DOCS:
        assert d.body.get("apiVersion") and d.body.get("kind") and d.name, (d.file, d.body)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", d.name), (d.file, d.name)
        if d.kind in NAMESPACED:
            assert d.namespace, f"{d.file}: {d.kind} {d.name} has no namespace"
            declared = {n.name for n in of_kind("Namespace")}
            assert d.namespace in declared, f"{d.file}: namespace {d.namespace} is declared nowhere"


def test_dockerfile_and_deployments_agree_on_user_and_port():
    df = parse_dockerfile()
    uid = int(df.final.all("USER")[0].split(":")[0])
    port = int(df.env()["BERTH_PORT"])
    assert [int(p.split("/")[0]) for p in df.final.all("EXPOSE")] == [port]
    for d in BERTH_DEPLOYMENTS:
        pod = d.body["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == uid, d.file
        assert [p["containerPort"] for p in berth_container(d)["ports"]] == [port], d.file


# --- the Deployments of Berth -----------------------------------------------------------------


@pytest.mark.parametrize("doc", BERTH_DEPLOYMENTS, ids=DEPLOY_IDS)
def test_berth_listens_on_the_container_port(doc, tmp_path):
    cfg, _, _ = effective_config(doc, tmp_path)
    c = berth_container(doc)
    assert cfg.host == "0.0.0.0"
    assert [p["containerPort"] for p in c["ports"]] == [cfg.port]
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        port = c[probe]["httpGet"]["port"]
        assert named.get(port, port) == cfg.port, (probe, port)


@pytest.mark.parametrize("doc", BERTH_DEPLOYMENTS, ids=DEPLOY_IDS)
def test_env_names_are_settings_berth_reads(doc):
    known = env_names()
    names = [e["name"] for e in berth_container(doc).get("env", [])]
    assert names and set(names) <= known, sorted(set(names) - known)
    assert len(names) == len(set(names))
    assert set(parse_dockerfile().env()) - {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"} <= known


@pytest.mark.parametrize("doc", BERTH_DEPLOYMENTS, ids=DEPLOY_IDS)
def test_liveness_probe_is_a_route(doc, tmp_path):
    c = berth_container(doc)
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert {"/healthz"} <= get_routes(tmp_path)
    assert parse_dockerfile() and "/healthz" in get_routes(tmp_path)


@pytest.mark.parametrize("doc", BERTH_DEPLOYMENTS, ids=DEPLOY_IDS)
def test_readiness_probe_names_readyz(doc):
    assert berth_container(doc)["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_readyz_is_a_route(tmp_path):
    assert "/readyz" in get_routes(tmp_path)


@pytest.mark.parametrize("doc", BERTH_DEPLOYMENTS, ids=DEPLOY_IDS)
def test_security_context_non_root_read_only(doc):
    pod = doc.body["spec"]["template"]["spec"]
    c = berth_container(doc)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod.get("automountServiceAccountToken") is False


@pytest.mark.parametrize("doc", BERTH_DEPLOYMENTS, ids=DEPLOY_IDS)
def test_resources_have_requests_and_limits(doc):
    res = berth_container(doc)["resources"]
    assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(res["limits"])


@pytest.mark.parametrize("doc", BERTH_DEPLOYMENTS, ids=DEPLOY_IDS)
def test_every_path_berth_writes_is_on_a_writable_volume(doc, tmp_path):
    """A read-only root filesystem: the data directory (SQLite database, blobs, uploads, keys:
    storage/paths.Layout) and /tmp must be writable volumes; the data dir is the PVC when the
    content is local (filesystem driver, SQLite)."""
    from storage.paths import Layout

    cfg, _, _ = effective_config(doc, tmp_path)
    data = str(cfg.data_dir)
    layout = Layout(data)
    for path in (layout.root, layout.blobs, layout.uploads, layout.keys, layout.database, Path("/tmp/x")):
        assert writable(doc, str(path)), f"{doc.file}: {path} is not on a writable volume"
    local = cfg.storage.driver == "filesystem" or not cfg.database_url
    mount_path, _, vol = mount_for(doc, data)
    if local:
        assert "persistentVolumeClaim" in vol, f"{doc.file}: the data dir {data} must be on the PVC"
        one("PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"], doc.namespace, (doc.file,))
        assert doc.body["spec"]["strategy"]["type"] == "Recreate"  # one writer on a ReadWriteOnce volume
    else:
        assert cfg.storage.driver == "s3" and cfg.database_url  # nothing in the data dir outlives the pod


@pytest.mark.parametrize("doc", BERTH_DEPLOYMENTS, ids=DEPLOY_IDS)
def test_secrets_referenced_exist_with_their_keys(doc, tmp_path):
    """Every secretKeyRef and Secret volume names a Secret of config/kubernetes with that key, or one
    the file's header tells how to create (`kubectl create secret generic NAME --from-literal=KEY=`)."""
    refs = [e["valueFrom"]["secretKeyRef"] for e in berth_container(doc).get("env", []) if "valueFrom" in e]
    for v in doc.body["spec"]["template"]["spec"].get("volumes", []):
        if "secret" in v:
            refs += [{"name": v["secret"]["secretName"], "key": i["key"]} for i in v["secret"]["items"]]
    assert refs
    for ref in refs:
        shipped = [s for s in of_kind("Secret", namespace=doc.namespace) if s.name == ref["name"]]
        if shipped:
            assert ref["key"] in shipped[0].body["stringData"], ref
        keys = documented_secret_keys(doc.file, ref["name"])
        assert keys is not None, f"{doc.file}: the header does not show how to create Secret {ref['name']}"
        assert ref["key"] in keys, (ref, keys)
    cfg, _, _ = effective_config(doc, tmp_path)
    if cfg.auth.signing_key:  # the configured signing key is a file of a mounted Secret
        in_container = "/" + str(cfg.auth.signing_key).split(f"{tmp_path}/mounts/", 1)[-1].lstrip("/")
        assert "BEGIN PRIVATE KEY" in file_from_volume(doc, in_container)


@pytest.mark.parametrize("doc", BERTH_DEPLOYMENTS, ids=DEPLOY_IDS)
def test_service_reaches_the_pods(doc):
    svc = one("Service", "berth", doc.namespace, (doc.file,))
    labels = doc.body["spec"]["template"]["metadata"]["labels"]
    assert doc.body["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    names = {p["name"] for p in berth_container(doc)["ports"]}
    assert all(p["targetPort"] in names for p in svc["spec"]["ports"])


# --- the NetworkPolicy, the Ingress, the tenant example ---------------------------------------


def test_network_policy_selects_berth_and_admits_its_port():
    (np,) = of_kind("NetworkPolicy")
    deploy = one("Deployment", "berth", np.namespace, (np.file,))
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert np.body["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(np.body["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ports = {p["port"] for rule in np.body["spec"]["ingress"] for p in rule["ports"]}
    assert ports == {p["containerPort"] for p in berth_container(next(d for d in BERTH_DEPLOYMENTS if d.file == np.file))["ports"]}
    for rule in np.body["spec"]["ingress"]:
        assert rule.get("from"), "an ingress rule without `from` admits every pod of the cluster"


def test_ingress_serves_the_realm_host_with_tls():
    (ing,) = of_kind("Ingress")
    spec = ing.body["spec"]
    hosts = [r["host"] for r in spec["rules"]]
    assert hosts and all(h in t["hosts"] for t in spec["tls"] for h in hosts) and spec["tls"][0]["secretName"]
    backend = spec["rules"][0]["http"]["paths"][0]["backend"]["service"]
    svc = one("Service", backend["name"], ing.namespace)
    assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
    for d in BERTH_DEPLOYMENTS:
        realm = {e["name"]: e.get("value") for e in berth_container(d)["env"]}["BERTH_AUTH_REALM"]
        assert urlsplit(realm).scheme == "https" and urlsplit(realm).hostname in hosts
        assert urlsplit(realm).path == "/auth/token"
    assert ing.body["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"


def test_tenant_example_pod_uses_the_secret_berth_makes():
    """The Pod's imagePullSecrets name the Secret POST /admin/tenants/acme/pull-secrets makes for
    its namespace (default name berth-<tenant>), and that Secret's auths key matches the image."""
    pods = of_kind("Pod", "tenant-example.yaml")
    assert pods
    header = header_comment("tenant-example.yaml")
    m = re.search(r"tenants/([a-z0-9-]+)/pull-secrets", header)
    tenant = m.group(1)
    body = re.search(r"-d '(\{[^']*\})'", header).group(1)
    req = json.loads(body)
    for pod in pods:
        assert pod.namespace == req["namespace"]
        assert pod.namespace in {n.name for n in of_kind("Namespace", "tenant-example.yaml")}
        secret = k8s_secret("berth-" + tenant, pod.namespace, req["server"], tenant, "u", "p")
        names = [s["name"] for s in pod.body["spec"]["imagePullSecrets"]]
        assert names == [secret["metadata"]["name"]]
        (key,) = docker_config_json(req["server"], tenant, "u", "p")["auths"]
        for c in pod.body["spec"]["containers"]:
            assert c["image"].startswith(key + "/"), (c["image"], key)
