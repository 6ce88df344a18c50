"""The `berth` command."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .config import Config


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .app import create_app

    config = Config.load(args.config, host=args.host, port=args.port, data_dir=args.data)
    if args.no_auth:
        config.auth.enabled = False
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config)
    print(f"berth: serving on http://{config.host}:{config.port} (data in {config.data_dir.resolve()})", flush=True)
    web.run_app(app, host=config.host, port=config.port, print=None, access_log=None)
    return 0


def _gc(args: argparse.Namespace) -> int:
    from storage import db
    from storage.blobs import BlobStore
    from storage.catalog import Catalog
    from storage.gc import collect
    from storage.paths import Layout

    config = Config.load(args.config, data_dir=args.data)

    async def run():
        layout = Layout(config.data_dir)
        engine = db.make_engine(config.database_url or db.default_url(layout))
        await db.create_schema(engine)
        try:
            return await collect(Catalog(engine), BlobStore(layout), grace=args.grace, upload_expiry=config.upload_expiry)
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    print(
        f"removed {report.blobs_removed} blobs ({report.bytes_freed} bytes) and {report.uploads_removed} expired uploads"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="berth", description="Berth, a private multi-tenant OCI registry")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the registry")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 5000)")
    serve.add_argument("--data", help="data directory (default ./data)")
    serve.add_argument("--config", help="YAML configuration file (see config/berth.yaml)")
    serve.add_argument("--no-auth", action="store_true", help="disable authentication (development only)")
    serve.set_defaults(func=_serve)

    gc = sub.add_parser("gc", help="remove expired uploads and blobs no repository references")
    gc.add_argument("--data", help="data directory (default ./data)")
    gc.add_argument("--config", help="YAML configuration file")
    gc.add_argument("--grace", type=float, default=3600, help="keep blobs written in the last N seconds")
    gc.set_defaults(func=_gc)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
