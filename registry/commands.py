"""``berth version``, ``berth config show``, ``berth db upgrade|current|check`` (registered by registry.cli)."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from .config import Config, effective


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("berth")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _version(args: argparse.Namespace) -> int:
    print(f"berth {version()}")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    config = Config.load(args.config, data_dir=args.data)
    rows = effective(config)
    if args.format == "yaml":
        import yaml

        tree: dict = {}
        for leaf, value, _source in rows:
            node = tree
            for name in leaf.path[:-1]:
                node = node.setdefault(name, {})
            node[leaf.path[-1]] = value
        text = yaml.safe_dump(tree, sort_keys=False, default_flow_style=False)
        # the source of each setting as a comment on its line
        src = {leaf.path: source for leaf, _v, source in rows}
        out, stack = [], []
        for line in text.splitlines():
            indent = (len(line) - len(line.lstrip(" "))) // 2
            key = line.strip().split(":", 1)[0]
            stack[indent:] = [key]
            source = src.get(tuple(stack))
            out.append(f"{line}  # {source}" if source and not line.rstrip().endswith(":") else line)
        print("\n".join(out))
        return 0
    width = max(len(leaf.key) for leaf, _v, _s in rows)
    vwidth = min(40, max(len(_fmt(v)) for _l, v, _s in rows))
    for leaf, value, source in rows:
        print(f"{leaf.key:<{width}}  {_fmt(value):<{vwidth}}  {source}")
    return 0


def _fmt(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "[]"
    return str(value)


def _db(args: argparse.Namespace) -> int:
    from storage import db, migrations
    from storage.paths import Layout

    config = Config.load(args.config, data_dir=args.data)

    async def run():
        layout = Layout(config.data_dir)
        if args.db_command == "upgrade":
            layout.create()
        database = db.Database(config.database_url or db.default_url(layout))
        try:
            if args.db_command == "upgrade":
                return await database.upgrade_schema()
            return await database.schema_state()
        finally:
            await database.dispose()

    if args.db_command != "upgrade" and not config.database_url and not Layout(config.data_dir).database.exists():
        print(f"berth: no database at {Layout(config.data_dir).database} (berth db upgrade creates it)", file=sys.stderr)
        return 2 if args.db_command == "check" else 1
    try:
        with _migration_progress(args.db_command == "upgrade"):
            state = asyncio.run(run())
    except migrations.SchemaError as e:
        print(f"berth: database: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"berth: database: cannot connect: {e}", file=sys.stderr)
        return 2
    if args.db_command == "upgrade":
        before, after = state
        print(f"schema: {before or 'empty'} -> {after} (head)" if before != after else f"schema: {after} (head, nothing to do)")
        return 0
    print(f"schema: {state.current or 'empty'}; head: {state.head}"
          + ("" if state.is_current else f"; pending: {', '.join(state.pending)}")
          + (f"; note: {state.note}" if state.note else ""))
    if args.db_command == "check":
        return 0 if state.is_current else 2
    return 0


@contextlib.contextmanager
def _migration_progress(enabled: bool):
    """On a terminal, each migration applied (the INFO records of ``berth.migrations``, with
    their ``step``/``steps``) redraws one progress line on stderr; elsewhere nothing."""
    from . import progress  # noqa: PLC0415

    line = progress.Line.for_stderr(enabled)
    if line is None:
        yield
        return

    class Draw(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            done, total = getattr(record, "step", 0), getattr(record, "steps", 0)
            count = f"{done}/{total} " if total else ""
            frac = done / total if total else 1.0
            line.show(f"db upgrade {progress.bar(frac)} {count}{record.getMessage()}", final=True)

    logger = logging.getLogger("berth.migrations")
    handler, level = Draw(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        line.close()


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """``--data`` and ``--config``: where a command finds the registry (every subcommand that
    opens the data directory, its database or its content store takes them)."""
    parser.add_argument("--data", help="data directory (default ./data)")
    parser.add_argument("--config", help="YAML configuration file (see config/berth.yaml)")


def add_parsers(sub) -> None:
    p = sub.add_parser("version", help="print Berth's version")
    p.set_defaults(func=_version)

    cfg = sub.add_parser("config", help="the effective configuration")
    cs = cfg.add_subparsers(dest="config_command", required=True)
    p = cs.add_parser("show", help="every setting, its value (secrets masked) and where it came from")
    add_store_options(p)
    p.add_argument("-o", "--format", choices=("table", "yaml"), default="table")
    p.set_defaults(func=_config_show)

    dbp = sub.add_parser("db", help="the metadata database's schema (migrations)")
    ds = dbp.add_subparsers(dest="db_command", required=True)
    for name, help in (("upgrade", "migrate the schema to this release's (creates it in an empty database)"),
                       ("current", "print the schema revision of the database and this release's"),
                       ("check", "exit 0 if the schema is this release's, 2 if it needs berth db upgrade")):
        p = ds.add_parser(name, help=help)
        add_store_options(p)
        p.set_defaults(func=_db)
