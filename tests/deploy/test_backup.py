"""Back-up and restore of a running Berth (docs/operations.md "Back-ups"): pushes run in threads
against a real `berth serve`; the back-up is taken in the middle of them with the documented
commands — the database first (`sqlite3 .backup`, or `pg_dump`), then the blobs; Berth is
stopped, its data (and database) wiped, the back-up restored into a fresh data directory (and
database), Berth started again: every image the backed-up database knows pulls back byte for
byte, every push acknowledged before the back-up began is among them, a token issued before the
back-up still verifies (the signing keys are in the database), and `berth gc` afterwards (which
removes the blobs copied for pushes the database missed) breaks none of it."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import urllib.parse
from pathlib import Path

import pytest

from tests.e2e.conftest import BerthServer, Creds, lower_tempdir, require, run

pytestmark = pytest.mark.process

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PUSHERS = 3
MAX_PUSHES = 25  # per thread: the pushes end on their own even if the test goes wrong
BACKUP_AFTER = 6  # pushes acknowledged before the back-up starts
AFTER_BACKUP = 6  # pushes acknowledged after it, before the pushers are stopped


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Pusher:
    """Pushes small OCI images (a layer shared by all, one of their own, a config) with the
    registry token flow; records what each acknowledged tag holds."""

    def __init__(self, server: BerthServer, creds: Creds) -> None:
        self.server, self.creds = server, creds
        self.shared = os.urandom(64 * 1024)
        self.pushed: dict[tuple[str, str], tuple[bytes, dict[str, bytes]]] = {}
        self.order: list[tuple[str, str]] = []
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def _blob(self, repo: str, data: bytes) -> None:
        d = digest(data)
        if self.server.request("HEAD", f"/v2/{repo}/blobs/{d}", creds=self.creds).status == 200:
            return
        res = self.server.request("POST", f"/v2/{repo}/blobs/uploads/?digest={urllib.parse.quote(d)}", body=data,
                                  headers={"Content-Type": "application/octet-stream"}, creds=self.creds)
        assert res.status == 201, (res.status, res.body[:300])

    def push(self, repo: str, tag: str) -> None:
        layer = os.urandom(8 * 1024)
        config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag,
                             "rootfs": {"type": "layers", "diff_ids": [digest(self.shared), digest(layer)]}}).encode()
        blobs = {digest(b): b for b in (self.shared, layer, config)}
        for b in (self.shared, layer, config):
            self._blob(repo, b)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(b), "size": len(b)}
                       for b in (self.shared, layer)],
        }).encode()
        res = self.server.request("PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
                                  headers={"Content-Type": OCI_MANIFEST}, creds=self.creds)
        assert res.status == 201, (res.status, res.body[:300])
        with self.cond:
            self.pushed[(repo, tag)] = (manifest, blobs)
            self.order.append((repo, tag))
            self.cond.notify_all()

    def run(self, n: int) -> None:
        try:
            for i in range(MAX_PUSHES):
                if self.stop.is_set():
                    return
                self.push(f"acme/app{n}", f"v{i}")
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)
            with self.cond:
                self.cond.notify_all()

    def wait_for(self, count: int) -> None:
        with self.cond:
            self.cond.wait_for(lambda: len(self.order) >= count or self.errors or not any(
                t.is_alive() for t in self.threads), timeout=600)  # a guard against a hang, not a timing
        assert not self.errors, self.errors
        assert len(self.order) >= count, "the pushers ended before enough pushes"

    def start(self) -> None:
        self.threads = [threading.Thread(target=self.run, args=(n,), daemon=True) for n in range(PUSHERS)]
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)
        assert not self.errors, self.errors


def pg_bin(cluster, name: str) -> str:
    return str(cluster.bindir / name)


def libpq_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


# --- the documented commands (docs/operations.md "Back-ups") -----------------------------------


def back_up(data: Path, backup: Path, database_url: str | None, cluster) -> None:
    """1. the database (consistent online), 2. then the blobs: content-addressed and append-only,
    so a copy taken after the database holds every blob the database refers to."""
    backup.mkdir()
    if database_url is None:
        run([require("sqlite3"), data / "berth.db", f".backup '{backup / 'berth.db'}'"])
    else:
        run([pg_bin(cluster, "pg_dump"), "--format=custom", "--file", backup / "berth.dump", libpq_url(database_url)])
    run(["cp", "-a", data / "blobs", backup / "blobs"])


def restore(backup: Path, data: Path, database_url: str | None, cluster) -> None:
    data.mkdir(mode=0o700)
    run(["cp", "-a", backup / "blobs", data / "blobs"])
    if database_url is None:
        run(["cp", backup / "berth.db", data / "berth.db"])
    else:
        name = urllib.parse.urlsplit(database_url).path.lstrip("/")
        admin = libpq_url(database_url).rsplit("/", 1)[0] + "/postgres"
        run([pg_bin(cluster, "psql"), "-v", "ON_ERROR_STOP=1", admin, "-c", f"CREATE DATABASE {name}"])
        run([pg_bin(cluster, "pg_restore"), "--no-owner", "--exit-on-error", "--dbname", libpq_url(database_url),
             backup / "berth.dump"])


def drop_database(url: str, cluster) -> None:
    name = urllib.parse.urlsplit(url).path.lstrip("/")
    admin = libpq_url(url).rsplit("/", 1)[0] + "/postgres"
    run([pg_bin(cluster, "psql"), "-v", "ON_ERROR_STOP=1", admin, "-c", f"DROP DATABASE {name} WITH (FORCE)"])


# --- the test ---------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request):
    """(database URL or None, cluster or None, URL to restore into or None)."""
    if request.param == "sqlite":
        yield None, None, None
        return
    cluster = request.getfixturevalue("postgres_cluster")
    with cluster.empty_database() as url, cluster.empty_database() as restored:
        drop_database(restored, cluster)  # restore() creates it, as an operator would
        yield url, cluster, restored


def test_back_up_while_pushing_then_restore_and_pull_everything(database, request):
    database_url, cluster, restored_url = database
    require("cp")
    root = lower_tempdir("berth-backup-")
    request.addfinalizer(lambda: shutil.rmtree(root, ignore_errors=True))
    password = "backup-test-admin-pw"
    env = {"BERTH_ADMIN_PASSWORD": password, **({"BERTH_DATABASE_URL": database_url} if database_url else {})}
    server = BerthServer(root / "srv1", auth=True, env=env)
    (root / "srv1").mkdir()
    servers = [server]
    request.addfinalizer(lambda: [s.stop() for s in servers])
    server.start()
    admin = server.admin
    res = server.request("POST", "/admin/tenants", body=b'{"name":"acme"}', creds=admin,
                         headers={"Content-Type": "application/json", "Authorization": _basic(admin)})
    assert res.status == 201, res.body
    token = server.request("GET", "/auth/token?service=berth&scope=repository:acme/app0:pull",
                           headers={"Authorization": _basic(admin)}).json()["token"]

    pusher = Pusher(server, admin)
    pusher.start()
    pusher.wait_for(BACKUP_AFTER)
    with pusher.cond:
        acked_before = set(pusher.order)
    backup = root / "backup"
    back_up(server.data, backup, database_url, cluster)
    pusher.wait_for(len(acked_before) + AFTER_BACKUP)  # the pushers went on during and after the copy
    pusher.join()
    server.stop()

    # wipe everything: the data directory and the database
    shutil.rmtree(server.data)
    if database_url:
        drop_database(database_url, cluster)

    # restore into a fresh data directory (and a fresh database), start again
    env2 = dict(env)
    if restored_url:
        env2["BERTH_DATABASE_URL"] = restored_url
    fresh = BerthServer(root / "srv2", auth=True, env=env2)
    (root / "srv2").mkdir()
    fresh.data = root / "srv2" / "restored"
    restore(backup, fresh.data, restored_url, cluster)
    servers.append(fresh)
    fresh.start()

    # the signing keys came back with the database: a token from before the back-up verifies
    res = fresh.request("GET", "/v2/acme/app0/tags/list", headers={"Authorization": f"Bearer {token}"})
    assert res.status == 200, res.body

    def restored_tags() -> set[tuple[str, str]]:
        catalog = fresh.request("GET", "/v2/_catalog", creds=admin).json()["repositories"]
        tags = set()
        for repo in catalog:
            tags |= {(repo, t) for t in fresh.request("GET", f"/v2/{repo}/tags/list", creds=admin).json()["tags"] or ()}
        return tags

    def pull_everything() -> set[tuple[str, str]]:
        known = restored_tags()
        assert acked_before <= known, sorted(acked_before - known)
        assert known <= set(pusher.pushed), sorted(known - set(pusher.pushed))
        for repo, tag in sorted(known):
            manifest, blobs = pusher.pushed[(repo, tag)]
            got = fresh.get_manifest(repo, tag, accept=OCI_MANIFEST, creds=admin)
            assert got.body == manifest, (repo, tag)
            for d, data in blobs.items():
                assert fresh.get_blob(repo, d, creds=admin) == data, (repo, tag, d)
        return known

    known = pull_everything()
    assert len(known) >= BACKUP_AFTER

    # berth gc on the restored registry: removes what no manifest needs (blobs copied for pushes
    # the database did not yet hold), never what a restored image needs
    gc_env = {**os.environ, **env2}
    berth = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "berth"
    out = subprocess.run([str(berth if berth.exists() else shutil.which("berth")), "gc", "--data", str(fresh.data),
                          "--grace", "0"], capture_output=True, text=True, env=gc_env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert pull_everything() == known


def _basic(creds: Creds) -> str:
    import base64

    return "Basic " + base64.b64encode(str(creds).encode()).decode()
