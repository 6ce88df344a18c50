"""The `berth` command."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

from . import progress
from .commands import add_store_options
from .config import Config


def _one_line_errors(command):
    """A configuration error is one line on stderr and exit code 2, not a traceback."""
    def run(args: argparse.Namespace) -> int:
        from .config import ConfigError

        try:
            return command(args)
        except ConfigError as e:
            for problem in e.problems:
                print(f"berth: configuration: {problem}", file=sys.stderr)
            return 2
        except Exception as e:
            from storage.migrations import SchemaError  # alembic: imported on this path only

            if not isinstance(e, SchemaError):  # unreachable database, or a schema not current
                raise
            print(f"berth: database: {e}", file=sys.stderr)
            return 2

    return run


def _check_storage(config: Config) -> str | None:
    """Why the configured content store cannot be used (unreachable, no bucket, credentials refused), or None.

    Only for remote stores: the filesystem store is created under the data directory."""
    if config.storage.driver == "filesystem":
        return None
    from storage.content import open_driver
    from storage.errors import DriverUnavailable

    async def probe() -> None:
        driver = open_driver(config.storage, config.data_dir)
        try:
            await driver.check()
        finally:
            await driver.close()

    try:
        asyncio.run(probe())
    except (DriverUnavailable, ValueError) as e:
        return " ".join(str(getattr(e, "message", e)).split())
    return None


@_one_line_errors
def _serve(args: argparse.Namespace) -> int:
    config = Config.load(
        args.config, host=args.host, port=args.port, data_dir=args.data, tls_cert=args.tls_cert, tls_key=args.tls_key
    )
    from . import tracing

    tracing.check(config)  # tracing.otlp_endpoint without the packages: one line, exit 2 (imports nothing)
    problem = _check_storage(config)
    if problem is not None:  # before serving: not a traceback on the first push
        print(f"berth: storage: {problem}", file=sys.stderr)
        return 2
    if args.no_auth:
        config.auth.enabled = False
    workers = args.workers if args.workers is not None else config.workers
    if workers < 1:
        print("berth: --workers must be at least 1", file=sys.stderr)
        return 2
    if (config.log_format or "").lower() not in ("json", "text"):
        print(f"berth: log_format must be json or text, not {config.log_format!r}", file=sys.stderr)
        return 2
    ssl_context = None
    if config.tls_cert or config.tls_key:
        if not (config.tls_cert and config.tls_key):
            print("berth: tls_cert and tls_key go together", file=sys.stderr)
            return 2
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_context.load_cert_chain(config.tls_cert, config.tls_key)
        except (ssl.SSLError, OSError) as e:
            print(f"berth: configuration: tls_cert {config.tls_cert!r} / tls_key {config.tls_key!r}: "
                  f"not a usable PEM certificate chain and key ({e})", file=sys.stderr)
            return 2
    scheme = "https" if ssl_context else "http"
    if workers > 1 and not args.worker and not args.prepare:
        # the supervisor never imports the application: it stays a few MiB
        return _supervise(args, config, workers, f"{scheme}://{config.host}:{config.port}")
    from aiohttp import web

    from . import logs
    from .app import create_app

    logs.configure(config, show_pid=bool(args.worker or workers > 1))
    if args.prepare:  # the once-only start-up of --workers N: schema, signing key, bootstrap admin
        async def prepare() -> None:
            runner = web.AppRunner(create_app(config))
            await runner.setup()
            await runner.cleanup()

        asyncio.run(prepare())
        return 0
    if args.worker:
        _die_with_parent()
    app = create_app(config)
    if not args.worker:
        print(f"berth: serving on {scheme}://{config.host}:{config.port} (data in {config.data_dir.resolve()})",
              flush=True)
    try:
        _run_app(web, app, config, ssl_context, logs, args)
    except OSError as e:
        import errno
        import socket

        if not isinstance(e, socket.gaierror) and e.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        print(f"berth: cannot listen on {config.host}:{config.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


def _run_app(web, app, config: Config, ssl_context, logs, args: argparse.Namespace) -> None:
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        ssl_context=ssl_context,
        print=None,
        reuse_port=True if args.worker else None,  # workers share the port (SO_REUSEPORT)
        **logs.server_kwargs(config),  # the access log and the request metrics (registry.logs)
    )


# ---- berth serve --workers N: N processes on one port ------------------------------------------


def _supervise(args: argparse.Namespace, config: Config, workers: int, url: str) -> int:
    """Run the once-only start-up here, then ``workers`` copies of this command with ``--worker``,
    each listening on the same host:port with SO_REUSEPORT (the kernel spreads connections).
    SIGTERM/SIGINT are forwarded; when one worker exits on its own the others are stopped too
    (a supervisor such as systemd or Kubernetes restarts the whole)."""
    from . import multiproc

    metrics_dir = multiproc.prepare()  # PROMETHEUS_MULTIPROC_DIR, inherited by the workers
    try:
        return _run_workers(args, config, workers, url)
    finally:
        multiproc.cleanup(metrics_dir)


def _run_workers(args: argparse.Namespace, config: Config, workers: int, url: str) -> int:
    import os
    import signal
    import subprocess

    from . import multiproc

    # schema, signing keys, bootstrap admin: once, in a process of its own, before any worker
    prepared = subprocess.run([sys.executable, "-m", "registry.cli", *args.argv, "--prepare"])
    if prepared.returncode != 0:
        return prepared.returncode
    cmd = [sys.executable, "-m", "registry.cli", *args.argv, "--worker"]
    env = {**os.environ, "BERTH_SUPERVISOR_PID": str(os.getpid())}
    children = {}
    for _ in range(workers):
        p = subprocess.Popen(cmd, env=env, process_group=0)  # the terminal's Ctrl-C reaches us only
        children[p.pid] = p
    print(f"berth: serving on {url} with {workers} workers (pids {' '.join(map(str, children))}; "
          f"data in {config.data_dir.resolve()})", flush=True)
    stopping = False

    def forward(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for p in children.values():
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    while any(p.returncode is None for p in children.values()):
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        p = children.get(pid)
        if p is None:
            continue
        p.returncode = os.waitstatus_to_exitcode(status)
        multiproc.worker_exited(pid)
        if not stopping:
            print(f"berth: worker {pid} exited with {p.returncode}; stopping the others", file=sys.stderr, flush=True)
            code = p.returncode or 1
            forward(signal.SIGTERM, None)
    return code


def _die_with_parent() -> None:
    """A worker ends when its supervisor does, even if the supervisor was SIGKILLed."""
    import ctypes
    import os
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    parent = os.environ.get("BERTH_SUPERVISOR_PID")
    if parent and os.getppid() != int(parent):  # the supervisor died before prctl
        raise SystemExit(0)


def _with_services(config: Config, work):
    """Run ``await work(svc)`` on services built, started (schema, ``driver.check()``) and stopped
    around it, as `berth serve` does: (result, None), or (None, 2) with one line on stderr when
    the content store cannot be used."""
    from storage.errors import DriverUnavailable

    from . import bootstrap

    async def run():
        svc = bootstrap.build(config)
        try:
            await bootstrap.start(svc)
            return await work(svc)
        finally:
            await bootstrap.stop(svc)

    try:
        return asyncio.run(run()), None
    except DriverUnavailable as e:
        print(f"berth: {e.message}", file=sys.stderr)
        return None, 2


def _gc(args: argparse.Namespace) -> int:
    from storage import leases
    from storage.gc import collect

    config = Config.load(args.config, data_dir=args.data)
    grace = config.gc.grace if args.grace is None else args.grace
    untagged = config.gc.untagged_manifests_after if args.untagged_after is None else args.untagged_after
    line = progress.Line.for_stderr()

    def show(step: str, report) -> None:
        verb = "would remove" if report.dry_run else "removed"
        line.show(f"gc: {step}: {verb} {report.uploads_removed} uploads, {report.manifests_removed} manifests, "
                  f"{report.links_removed} links, {report.blobs_removed} blobs ({progress.human(report.bytes_freed)})",
                  final=step == "done")

    async def run(svc):
        # one collector at a time across every replica and cron job (storage.leases)
        try:
            held, report = await leases.hold(svc.db, leases.GC_LEASE, lambda: collect(
                svc.catalog, svc.driver, grace=grace, upload_expiry=config.upload_expiry,
                untagged_after=untagged, dry_run=args.dry_run, progress=show if line else None))
        finally:
            if line:
                line.close()
        if not held:
            holder = await leases.current_holder(svc.db, leases.GC_LEASE)
            who = f"{holder[0]} (for {holder[1]:.0f} s more)" if holder else "another process"
            print(f"berth: garbage collection is already running: {who}; nothing done", file=sys.stderr)
        return report

    report, failed = _with_services(config, run)
    if failed:
        return failed
    if report is None:
        return 3
    verb = "would remove" if report.dry_run else "removed"
    manifests = f"{report.manifests_removed} untagged manifests, " if untagged is not None else ""
    print(
        f"{verb} {manifests}{report.links_removed} unreferenced blob links, {report.blobs_removed} blobs "
        f"({report.bytes_freed} bytes) and {report.uploads_removed} expired uploads"
    )
    return 0


def _keys(args: argparse.Namespace) -> int:
    """berth keys list|rotate|retire: the token signing keys every replica shares (registry.auth.keys)."""
    import json

    from storage import db
    from storage.paths import Layout

    from .auth import keys as keymod

    config = Config.load(args.config, data_dir=args.data)

    async def run():
        layout = Layout(config.data_dir)
        layout.create()
        database = db.Database(config.database_url or db.default_url(layout))
        try:
            await database.create_schema()
            if args.keys_command == "rotate":
                await keymod.rotate(database, args.algorithm or config.auth.algorithm,
                                    0.0 if args.retire_old else keymod.keep_old_for(config.auth))
            elif args.keys_command == "retire":
                if await keymod.retire(database, args.kid) is None:
                    raise keymod.KeyError_(f"no signing key {args.kid!r}")
            return await keymod.stored_keys(database)
        finally:
            await database.dispose()

    try:
        rows = asyncio.run(run())
    except keymod.KeyError_ as e:
        print(f"berth: {e}", file=sys.stderr)
        return 1
    import time

    now = time.time()
    live = [r for r in rows if r.not_after is None or r.not_after > now]
    print(json.dumps([{"generation": r.generation, "kid": r.kid, "algorithm": r.algorithm,
                       "created_at": r.created_at, "not_after": r.not_after,
                       "state": "signing" if live and r is live[0] else ("verifying" if r in live else "retired")}
                      for r in rows], indent=2))
    return 0


def _fsck(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from storage.fsck import fsck

    config = Config.load(args.config, data_dir=args.data)
    quarantine = Path(args.quarantine) if args.quarantine else Path(config.data_dir) / "quarantine"
    line = progress.Line.for_stderr(enabled=not args.json)

    def show(done: int, total: int, done_bytes: int, total_bytes: int) -> None:
        frac = done_bytes / total_bytes if total_bytes else (done / total if total else 1.0)
        line.show(f"fsck {progress.bar(frac)} {done}/{total} blobs "
                  f"{progress.human(done_bytes)}/{progress.human(total_bytes)}", final=done >= total)

    async def run(svc):
        try:
            return await fsck(svc.catalog, svc.driver, repair=args.repair, quarantine=quarantine,
                              progress=show if line else None)
        finally:
            if line:
                line.close()

    report, failed = _with_services(config, run)
    if failed:
        return failed
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
                await auth.keys.start()
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
        add_store_options(p)
        p.set_defaults(func=_admin, admin_op=opname, admin_call=call)
        return p

    def group(name: str, help: str):
        g = sub.add_parser(name, help=help)
        return g.add_subparsers(dest=f"{name}_command", required=True)

    t = group("tenant", "create, list, show and delete tenants")
    p = op(t, "create", "create a tenant", "create_tenant",
           lambda o, a, x: o.create_tenant(a, x.name, x.public, x.quota_bytes))
    p.add_argument("name")
    p.add_argument("--public", action="store_true", help="allow anonymous pulls of its repositories")
    p.add_argument("--quota-bytes", type=int, help="storage quota in bytes (default: unlimited)")
    p = op(t, "quota", "set a tenant's storage quota", "update_tenant",
           lambda o, a, x: o.update_tenant(a, x.name, {"quota_bytes": _quota(x.bytes)}))
    p.add_argument("name")
    p.add_argument("bytes", help="quota in bytes, or 'none' for unlimited")
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


def _quota(text: str) -> int | str | None:
    """'none' → None (unlimited); digits → int; anything else is passed on and refused as the API refuses it."""
    if text.strip().lower() == "none":
        return None
    return int(text) if text.strip().isdigit() else text


def _actions(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="berth", description="Berth, a private multi-tenant OCI registry",
                                epilog="exit codes: 0 done, 1 failed, 2 bad configuration or unusable storage or "
                                       "database, 3 gc lease held by another process (docs/operations.md)")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the registry")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 5000)")
    add_store_options(serve)
    serve.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS (with --tls-key)")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.add_argument("--no-auth", action="store_true", help="disable authentication (development only)")
    serve.add_argument("--workers", type=int,
                       help="processes serving the same port (default 1; about one per CPU core)")
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --workers N
    serve.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)  # start-up only, then exit
    serve.set_defaults(func=_serve)

    gc = sub.add_parser("gc", help="remove expired uploads and blobs no repository references")
    add_store_options(gc)
    gc.add_argument("--grace", type=float, help="keep blobs and links used in the last N seconds (default gc.grace, 3600)")
    gc.add_argument("--untagged-after", type=float,
                    help="also delete untagged manifests older than N seconds (default gc.untagged_manifests_after: never)")
    gc.add_argument("--dry-run", action="store_true", help="change nothing; report what would go and how many bytes")
    gc.set_defaults(func=_gc)

    keys = sub.add_parser("keys", help="token signing keys shared by every replica (in the database)")
    ks = keys.add_subparsers(dest="keys_command", required=True)
    for name, help in (("list", "list the signing keys and their state"),
                       ("rotate", "make a new key the signer on every replica within 5 s"),
                       ("retire", "stop accepting tokens signed with one key (every replica within 5 s)")):
        k = ks.add_parser(name, help=help)
        add_store_options(k)
        k.set_defaults(func=_keys)
    ks.choices["rotate"].add_argument("--algorithm", choices=("ES256", "RS256"), help="default auth.algorithm")
    ks.choices["rotate"].add_argument("--retire-old", action="store_true",
                                      help="stop accepting the older keys at once (their tokens fail)")
    ks.choices["retire"].add_argument("kid")
    fk = sub.add_parser("fsck", help="check every blob's bytes and every manifest's references; exit 1 on damage")
    add_store_options(fk)
    fk.add_argument("--repair", action="store_true",
                    help="quarantine damaged content and forget its rows and links (never deletes good data)")
    fk.add_argument("--quarantine", help="directory damaged bytes are moved to (default <data>/quarantine)")
    fk.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    fk.set_defaults(func=_fsck)

    _add_admin_parsers(sub)
    from . import commands

    commands.add_parsers(sub)  # version, config show, db upgrade|current|check
    return p


def _key_id_argument(argv: list[str]) -> list[str]:
    """``berth keys retire <kid>``: a key id is a base64url thumbprint and one in 64 begins with
    ``-``, which argparse would read as an unknown option. Such an argument (a single dash and
    more than one letter: no option of the command looks like that) is passed after ``--``."""
    if argv[:2] != ["keys", "retire"] or "--" in argv:
        return argv
    rest = argv[2:]
    ids = [a for a in rest if a.startswith("-") and not a.startswith("--") and len(a) > 2]
    if not ids:
        return argv
    return argv[:2] + [a for a in rest if a not in ids] + ["--", *ids]


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # every file and directory berth creates is private to the service user
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(_key_id_argument(argv))
    args.argv = argv
    return _one_line_errors(args.func)(args)


if __name__ == "__main__":
    sys.exit(main())
