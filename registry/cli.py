"""The `berth` command."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from .config import Config


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .app import create_app

    config = Config.load(
        args.config, host=args.host, port=args.port, data_dir=args.data, tls_cert=args.tls_cert, tls_key=args.tls_key
    )
    if args.no_auth:
        config.auth.enabled = False
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ssl_context = None
    if config.tls_cert or config.tls_key:
        if not (config.tls_cert and config.tls_key):
            print("berth: tls_cert and tls_key go together", file=sys.stderr)
            return 2
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(config.tls_cert, config.tls_key)
    app = create_app(config)
    scheme = "https" if ssl_context else "http"
    print(f"berth: serving on {scheme}://{config.host}:{config.port} (data in {config.data_dir.resolve()})", flush=True)
    access_log = logging.getLogger("berth.access") if config.access_log else None
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        ssl_context=ssl_context,
        print=None,
        access_log=access_log,
        access_log_format='%a "%r" %s %b %Tfs',
    )
    return 0


def _gc(args: argparse.Namespace) -> int:
    from storage.errors import DriverUnavailable
    from storage.gc import collect

    from . import bootstrap

    config = Config.load(args.config, data_dir=args.data)
    grace = config.gc.grace if args.grace is None else args.grace
    untagged = config.gc.untagged_manifests_after if args.untagged_after is None else args.untagged_after

    async def run():
        svc = bootstrap.build(config)
        try:
            await bootstrap.start(svc)
            return await collect(svc.catalog, svc.driver, grace=grace, upload_expiry=config.upload_expiry,
                                 untagged_after=untagged, dry_run=args.dry_run)
        finally:
            await bootstrap.stop(svc)

    try:
        report = asyncio.run(run())
    except DriverUnavailable as e:
        print(f"berth: {e.message}", file=sys.stderr)
        return 2
    verb = "would remove" if report.dry_run else "removed"
    manifests = f"{report.manifests_removed} untagged manifests, " if untagged is not None else ""
    print(
        f"{verb} {manifests}{report.links_removed} unreferenced blob links, {report.blobs_removed} blobs "
        f"({report.bytes_freed} bytes) and {report.uploads_removed} expired uploads"
    )
    return 0


def _fsck(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from storage.errors import DriverUnavailable
    from storage.fsck import fsck

    from . import bootstrap

    config = Config.load(args.config, data_dir=args.data)
    quarantine = Path(args.quarantine) if args.quarantine else Path(config.data_dir) / "quarantine"
    bar = _ProgressBar() if sys.stderr.isatty() and not args.json else None

    async def run():
        svc = bootstrap.build(config)
        try:
            await bootstrap.start(svc)
            return await fsck(svc.catalog, svc.driver, repair=args.repair, quarantine=quarantine,
                              progress=bar.update if bar else None)
        finally:
            if bar:
                bar.close()
            await bootstrap.stop(svc)

    try:
        report = asyncio.run(run())
    except DriverUnavailable as e:
        print(f"berth: {e.message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for title, findings in (("DAMAGED", report.damaged), ("orphaned", report.orphaned)):
            for f in findings:
                done = f" [repaired: {f.repaired}]" if f.repaired else ""
                print(f"{title} {f.kind} {f.subject}: {f.message}{done}")
        print(
            f"checked {report.blobs_checked} blobs ({report.bytes_checked} bytes), {report.links_checked} links, "
            f"{report.manifests_checked} manifests, {report.uploads_checked} upload sessions: "
            f"{len(report.damaged)} damaged, {len(report.orphaned)} orphaned (garbage collection removes those)"
        )
    return 0 if report.clean else 1


class _ProgressBar:
    """One line on a terminal's stderr: blobs and bytes re-hashed so far (only on a TTY)."""

    def __init__(self) -> None:
        import time

        self._time = time.monotonic
        self._last = 0.0

    def update(self, done: int, total: int, done_bytes: int, total_bytes: int) -> None:
        now = self._time()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        frac = done_bytes / total_bytes if total_bytes else (done / total if total else 1.0)
        width = 30
        fill = int(frac * width)
        sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total} blobs "
                         f"{_human(done_bytes)}/{_human(total_bytes)}")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


# ---- admin subcommands: the same operations as the admin API (registry.admin.operations) ----------


def _admin(args: argparse.Namespace) -> int:
    """Run one admin operation against the data directory / database as the local admin; print JSON."""
    import json

    from storage import db
    from storage.errors import StorageError
    from storage.paths import Layout
    from storage.principals import Principals

    from .admin.operations import CLI_ACTOR, AdminOps
    from .errors import APIError, from_storage

    config = Config.load(args.config, data_dir=args.data)

    async def run():
        layout = Layout(config.data_dir)
        layout.create()
        database = db.Database(config.database_url or db.default_url(layout))
        try:
            await database.create_schema()
            principals = Principals(database)
            auth = None
            if args.admin_op == "issue_token":  # needs the signing key of this data directory
                from .auth.service import AuthService

                auth = AuthService(config, principals)
            ops = AdminOps(principals, config, auth)
            return await args.admin_call(ops, CLI_ACTOR, args)
        finally:
            await database.dispose()

    try:
        result = asyncio.run(run())
    except (APIError, StorageError) as e:
        err = from_storage(e) if isinstance(e, StorageError) else e
        print(json.dumps({"errors": [{"code": err.code, "message": err.message, "detail": err.detail}]}),
              file=sys.stderr)
        return 1
    if args.admin_op == "create_pull_secret" and args.output == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(result["secret"], sort_keys=False))
    elif args.admin_op == "create_pull_secret":
        print(json.dumps(result["secret"], indent=2))
    else:
        print(json.dumps(result, indent=2))
    return 0


def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return args.password
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    if not sys.stdin.isatty():
        raise SystemExit("berth: give --password or --password-stdin (no terminal to prompt on)")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("berth: passwords differ")
    return first


def _add_admin_parsers(sub) -> None:
    def op(parent, name: str, help: str, opname: str, call):
        p = parent.add_parser(name, help=help)
        p.add_argument("--data", help="data directory (default ./data)")
        p.add_argument("--config", help="YAML configuration file")
        p.set_defaults(func=_admin, admin_op=opname, admin_call=call)
        return p

    def group(name: str, help: str):
        g = sub.add_parser(name, help=help)
        return g.add_subparsers(dest=f"{name}_command", required=True)

    t = group("tenant", "create, list, show and delete tenants")
    p = op(t, "create", "create a tenant", "create_tenant", lambda o, a, x: o.create_tenant(a, x.name, x.public))
    p.add_argument("name")
    p.add_argument("--public", action="store_true", help="allow anonymous pulls of its repositories")
    op(t, "list", "list tenants", "list_tenants", lambda o, a, x: o.list_tenants(a))
    p = op(t, "show", "show a tenant", "get_tenant", lambda o, a, x: o.get_tenant(a, x.name))
    p.add_argument("name")
    p = op(t, "delete", "delete a tenant (refused while it has repositories, unless --force)", "delete_tenant",
           lambda o, a, x: o.delete_tenant(a, x.name, force=x.force))
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="also delete its repositories (blobs go with the next gc)")

    u = group("user", "create users, change passwords, list users")
    p = op(u, "create", "create a user", "create_user",
           lambda o, a, x: o.create_user(a, x.username, _password(x), x.admin))
    p.add_argument("username")
    p.add_argument("--admin", action="store_true", help="an administrator")
    p2 = op(u, "passwd", "set a user's password", "set_password",
            lambda o, a, x: o.set_password(a, x.username, _password(x)))
    p2.add_argument("username")
    for q in (p, p2):
        q.add_argument("--password", help="the password (visible in the process list; prefer --password-stdin)")
        q.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    op(u, "list", "list users and their roles", "list_users", lambda o, a, x: o.list_users(a))
    p = op(u, "delete", "delete a user", "delete_user", lambda o, a, x: o.delete_user(a, x.username))
    p.add_argument("username")

    m = group("member", "give users a role in a tenant")
    p = op(m, "set", "set a user's role in a tenant", "set_member",
           lambda o, a, x: o.set_member(a, x.tenant, x.username, x.role))
    p.add_argument("tenant")
    p.add_argument("username")
    p.add_argument("role", choices=("reader", "writer", "owner"))
    p = op(m, "remove", "remove a user from a tenant", "remove_member",
           lambda o, a, x: o.remove_member(a, x.tenant, x.username))
    p.add_argument("tenant")
    p.add_argument("username")
    p = op(m, "list", "list a tenant's members", "list_members", lambda o, a, x: o.list_members(a, x.tenant))
    p.add_argument("tenant")

    r = group("robot", "robot accounts of a tenant")
    p = op(r, "create", "create a robot; prints its secret once", "create_robot",
           lambda o, a, x: o.create_robot(a, x.tenant, x.name, _actions(x.actions), x.repository or None,
                                          x.expires_in, x.description))
    p.add_argument("tenant")
    p.add_argument("name")
    p.add_argument("--actions", default="pull", help="comma-separated: pull,push,delete (default pull)")
    p.add_argument("--repository", action="append", help="repository glob inside the tenant (repeatable)")
    p.add_argument("--expires-in", type=int, help="seconds until the robot expires")
    p.add_argument("--description")
    p = op(r, "list", "list a tenant's robots (never their secrets)", "list_robots",
           lambda o, a, x: o.list_robots(a, x.tenant))
    p.add_argument("tenant")
    p = op(r, "delete", "revoke a robot", "delete_robot", lambda o, a, x: o.delete_robot(a, x.tenant, x.name))
    p.add_argument("tenant")
    p.add_argument("name")
    p = op(r, "rotate", "give a robot a new secret (the old one stops working)", "rotate_robot",
           lambda o, a, x: o.rotate_robot(a, x.tenant, x.name))
    p.add_argument("tenant")
    p.add_argument("name")

    ps = group("pull-secret", "Kubernetes image pull Secrets")
    p = op(ps, "create", "create a pull-only robot and print a kubernetes.io/dockerconfigjson Secret",
           "create_pull_secret",
           lambda o, a, x: o.create_pull_secret(a, x.tenant, x.namespace, x.server, x.name, x.robot, x.expires_in))
    p.add_argument("tenant")
    p.add_argument("--namespace", required=True, help="the Kubernetes namespace of the Secret")
    p.add_argument("--server", required=True, help="registry host[:port] as the cluster's image names spell it")
    p.add_argument("--name", help="Secret name (default berth-<tenant>)")
    p.add_argument("--robot", help="robot name (default k8s-<namespace>-<random>)")
    p.add_argument("--expires-in", type=int, help="seconds until the robot expires")
    p.add_argument("-o", "--output", choices=("json", "yaml"), default="json")

    tk = group("token", "registry tokens for services")
    p = op(tk, "create", "issue a signed token with exactly the given scopes", "issue_token",
           lambda o, a, x: o.issue_token(a, x.subject, x.scope, x.expires_in))
    p.add_argument("--subject", required=True, help="who the token is for (its sub claim)")
    p.add_argument("--scope", action="append", required=True, help="type:name:actions (repeatable)")
    p.add_argument("--expires-in", type=int, help="seconds (default auth.token_ttl, capped by max_admin_token_ttl)")

    p = op(sub, "audit", "show the audit log, newest first", "audit_events",
           lambda o, a, x: o.audit_events(a, x.tenant, x.limit, x.before))
    p.add_argument("--tenant")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--before", type=int, help="only events older than this id")


def _actions(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="berth", description="Berth, a private multi-tenant OCI registry")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the registry")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 5000)")
    serve.add_argument("--data", help="data directory (default ./data)")
    serve.add_argument("--config", help="YAML configuration file (see config/berth.yaml)")
    serve.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS (with --tls-key)")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.add_argument("--no-auth", action="store_true", help="disable authentication (development only)")
    serve.set_defaults(func=_serve)

    gc = sub.add_parser("gc", help="remove expired uploads and blobs no repository references")
    gc.add_argument("--data", help="data directory (default ./data)")
    gc.add_argument("--config", help="YAML configuration file")
    gc.add_argument("--grace", type=float, help="keep blobs and links used in the last N seconds (default gc.grace, 3600)")
    gc.add_argument("--untagged-after", type=float,
                    help="also delete untagged manifests older than N seconds (default gc.untagged_manifests_after: never)")
    gc.add_argument("--dry-run", action="store_true", help="change nothing; report what would go and how many bytes")
    gc.set_defaults(func=_gc)

    fk = sub.add_parser("fsck", help="check every blob's bytes and every manifest's references; exit 1 on damage")
    fk.add_argument("--data", help="data directory (default ./data)")
    fk.add_argument("--config", help="YAML configuration file")
    fk.add_argument("--repair", action="store_true",
                    help="quarantine damaged content and forget its rows and links (never deletes good data)")
    fk.add_argument("--quarantine", help="directory damaged bytes are moved to (default <data>/quarantine)")
    fk.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    fk.set_defaults(func=_fsck)

    _add_admin_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # every file and directory berth creates is private to the service user
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
