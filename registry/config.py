"""Configuration: documented defaults < YAML file < environment (BERTH_*) < command-line flags.

config/berth.yaml lists every setting with its default. Everything here is derived from the
dataclasses below, so a new field needs no other code:

* **environment**: every setting ``a.b_c`` is ``BERTH_A_B_C`` (``storage.s3.bucket`` →
  ``BERTH_STORAGE_S3_BUCKET``), converted from the field's annotation (int, float, bool,
  str, Path, ``list[str]`` comma-separated, optional). ``<VAR>_FILE`` names a file holding the
  value (Kubernetes Secrets mounted as files). A few older names stay as aliases
  (``setting(env=...)``): ``BERTH_DATA``, ``BERTH_ADMIN_PASSWORD``.
* **validation**: the annotation's type, then the field's metadata (``setting(...)``:
  ``choices``, ``min``, ``max``, ``check``), then a nested section's own ``validate()``. Every
  problem is collected; :class:`ConfigError` carries them all, one line each (``berth`` prints
  them and exits 2 before anything starts).
* **sources**: :func:`sources` tells, per setting, where its value came from (``berth config show``).
"""
from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ENV_PREFIX = "BERTH_"


class ConfigError(ValueError):
    """A setting that cannot work (``berth`` prints each problem as one line and exits 2)."""

    def __init__(self, message: str | list[str]) -> None:
        self.problems = [message] if isinstance(message, str) else list(message)
        super().__init__("\n".join(self.problems))


def setting(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
            choices: tuple | None = None, min: float | None = None, max: float | None = None,  # noqa: A002
            check=None, secret: bool = False, env: tuple[str, ...] = ()) -> Any:
    """A dataclass field with declarative validation: ``choices`` (case-insensitive for strings,
    normalised to the listed spelling), ``min``/``max`` (inclusive), ``check(value) -> problem or
    None``; ``secret`` masks it in ``berth config show``; ``env`` adds older variable names."""
    meta = {"choices": choices, "min": min, "max": max, "check": check, "secret": secret, "env": tuple(env)}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


# ---- reusable checks (value -> problem or None) ---------------------------------------------


def existing_file(value) -> str | None:
    for p in value if isinstance(value, list) else [value]:
        if p is not None and not Path(p).is_file():
            return f"no such file: {str(p)!r}"
    return None


def http_url(value) -> str | None:
    if value is None:
        return None
    url = urlsplit(str(value))
    try:
        url.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "not a valid URL (bad port)"
    if url.scheme not in ("http", "https") or not url.hostname:
        return "must be an http:// or https:// URL"
    return None


DATABASE_SCHEMES = ("sqlite", "sqlite+pysqlite", "sqlite+aiosqlite", "postgresql+asyncpg")


def database_url(value) -> str | None:
    if value is None:
        return None
    scheme = str(value).split("://", 1)[0] if "://" in str(value) else ""
    if scheme not in DATABASE_SCHEMES:
        hint = " (use postgresql+asyncpg://)" if scheme.startswith("postgres") else ""
        return f"must be a sqlite:///PATH or postgresql+asyncpg://USER:PASSWORD@HOST/DB URL{hint}"
    if scheme.startswith("postgresql"):
        try:
            from sqlalchemy.engine import make_url  # noqa: PLC0415

            make_url(str(value))
        except Exception as e:  # noqa: BLE001 - any parse failure is a bad setting
            return f"not a valid URL: {e}"
    return None


def cidr_list(value) -> str | None:
    for c in value or []:
        try:
            ipaddress.ip_network(c, strict=False)
        except ValueError:
            return f"{c!r} is not an address or CIDR network"
    return None


def non_empty(value) -> str | None:
    return "must not be empty" if value is not None and not str(value).strip() else None


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass
class AuthConfig:
    enabled: bool = True
    realm: str | None = setting(None, check=http_url)  # token endpoint URL; default: <request scheme+host>/auth/token
    service: str = setting("berth", check=non_empty)  # the token `aud`, what clients send as ?service=
    issuer: str = setting("berth", check=non_empty)
    algorithm: str = setting("ES256", choices=("ES256", "RS256"))
    token_ttl: int = setting(300, min=1)  # seconds a registry token lives
    refresh_token_ttl: int = setting(30 * 24 * 3600, min=1)
    max_admin_token_ttl: int = setting(24 * 3600, min=1)  # cap for POST /admin/tokens
    signing_key: str | None = setting(None, check=existing_file)  # PEM file; default: keys in the database
    verification_keys: list[str] = setting(default_factory=list, check=existing_file)  # extra PEM keys (rotation)
    credential_cache_ttl: int = setting(60, min=0)  # seconds a bcrypt-verified credential is trusted from memory
    max_failed_logins: int = setting(10, min=1)  # per (username, client address), in failed_login_window
    failed_login_window: int = setting(300, min=1)
    # bootstrap admin; else generated
    admin_password: str | None = setting(None, secret=True, env=("BERTH_ADMIN_PASSWORD",))
    max_failed_logins_per_username: int = setting(100, min=1)  # from all addresses together, in failed_login_window
    max_failed_logins_per_address: int = setting(100, min=1)  # for all usernames together, in failed_login_window
    max_logins_in_flight_per_username: int = setting(8, min=1)  # secrets being checked (bcrypt) at once, per process
    max_logins_in_flight_per_address: int = setting(8, min=1)
    trusted_proxies: list[str] = setting(default_factory=list, check=cidr_list)  # CIDRs whose X-Forwarded-For is believed


@dataclass
class S3Config:
    endpoint: str | None = None  # e.g. http://127.0.0.1:8333; None = AWS's regional endpoint
    region: str = "us-east-1"
    bucket: str | None = None
    prefix: str = ""  # key prefix inside the bucket ("" = the bucket's root)
    # keys: access_key + secret_key below | aws: the AWS SDK's credential chain (AWS_* variables,
    # web identity / IRSA, EKS Pod Identity and ECS, the EC2 instance profile; docs/storage.md)
    credentials: str = setting("keys", choices=("keys", "aws"))
    access_key: str | None = setting(None, secret=True)
    secret_key: str | None = setting(None, secret=True)
    redirect: bool = False  # blob GET answers 307 to a short-lived presigned URL

    def validate(self) -> None:
        """Raise ConfigError naming the setting that cannot work; normalise the prefix.
        (Checked only with ``storage.driver: s3``.)"""
        if not self.bucket or not isinstance(self.bucket, str) or "/" in self.bucket:
            raise ConfigError("storage.s3.bucket (BERTH_STORAGE_S3_BUCKET) must name a bucket")
        if self.credentials == "aws":
            if self.access_key or self.secret_key:
                raise ConfigError("storage.s3.access_key and storage.s3.secret_key are not used with "
                                  "storage.s3.credentials: aws (the AWS credential chain); set one or the other")
        elif not (self.access_key and self.secret_key):
            raise ConfigError("storage.s3.access_key and storage.s3.secret_key (BERTH_STORAGE_S3_ACCESS_KEY, "
                             "BERTH_STORAGE_S3_SECRET_KEY) are required, or storage.s3.credentials: aws "
                             "(BERTH_STORAGE_S3_CREDENTIALS) for the AWS credential chain")
        if not self.region or not isinstance(self.region, str):
            raise ConfigError("storage.s3.region (BERTH_STORAGE_S3_REGION) must not be empty")
        if self.endpoint is not None:
            url = urlsplit(str(self.endpoint))
            try:
                url.port  # noqa: B018 - raises on a bad port
            except ValueError:
                url = None
            if url is None or url.scheme not in ("http", "https") or not url.hostname or url.query or \
                    url.path not in ("", "/"):
                raise ConfigError(f"storage.s3.endpoint (BERTH_STORAGE_S3_ENDPOINT) must be an http:// or https:// "
                                 f"URL of the S3 service, e.g. http://127.0.0.1:8333, not {self.endpoint!r}")
        prefix = str(self.prefix or "").strip("/")
        if any(seg in ("", ".", "..") for seg in prefix.split("/")) and prefix:
            raise ConfigError(f"storage.s3.prefix (BERTH_STORAGE_S3_PREFIX) {self.prefix!r}: empty, '.' and '..' "
                             "segments are not allowed")
        self.prefix = prefix
        if isinstance(self.redirect, str):
            self.redirect = _strict_bool("storage.s3.redirect", self.redirect)
        if not isinstance(self.redirect, bool):
            raise ConfigError("storage.s3.redirect must be true or false")


@dataclass
class StorageConfig:
    driver: str = setting("filesystem", choices=("filesystem", "s3"))  # filesystem (under data_dir) | s3
    s3: S3Config = field(default_factory=S3Config)

    def validate(self) -> None:
        if self.driver not in ("filesystem", "s3"):
            raise ConfigError(f"storage.driver (BERTH_STORAGE_DRIVER) must be filesystem or s3, not {self.driver!r}")
        if self.driver == "s3":
            self.s3.validate()


@dataclass
class DatabaseConfig:
    # start-up runs the schema migrations (berth db upgrade); false: start-up refuses an old
    # schema, for rollouts of several replicas where one job runs `berth db upgrade` first
    auto_migrate: bool = True


@dataclass
class LimitsConfig:
    """Protection of one tenant from another (registry.limits, docs/operations.md "Quotas and limits").

    Rates are requests per second to /v2/, enforced by each process on its own (token buckets
    in memory); 0 turns a limit off. The defaults let a 500-node fleet pull one image at once."""
    rate_per_principal: float = setting(500.0, min=0)  # per user, robot, service token (per client address without auth)
    burst_per_principal: int = setting(20000, min=1)
    rate_per_tenant: float = setting(1000.0, min=0)  # all principals together, on the tenant's repositories
    burst_per_tenant: int = setting(40000, min=1)
    max_upload_sessions_per_principal: int = setting(100, min=0)  # open (unexpired) upload sessions, in the database
    max_header_bytes: int = setting(65536, min=1024)  # all request header lines together → 431
    max_header_field: int = setting(8190, min=256)  # one header line / the request line (aiohttp answers 400 itself)
    max_headers: int = setting(128, min=8)  # header lines per request (aiohttp answers 400 itself)


@dataclass
class GCConfig:
    """Garbage collection inside the server (registry.app) and the defaults of ``berth gc``."""
    interval: float = setting(3600, min=0)  # seconds between collections in the server; 0 = none (run `berth gc`)
    grace: float = setting(3600, min=0)  # seconds a blob or link stays after its last use / creation
    untagged_manifests_after: float | None = setting(None, min=0)  # seconds; None = untagged manifests are kept


@dataclass
class TracingConfig:
    """Optional OpenTelemetry tracing (registry.tracing, docs/operations.md "Tracing"): off unless
    ``otlp_endpoint`` is set; then ``pip install 'berth[tracing]'`` is needed."""
    otlp_endpoint: str | None = setting(None, check=http_url)  # OTLP/HTTP collector, e.g. http://collector:4318
    service_name: str = setting("berth", check=non_empty)  # the spans' service.name
    sample_ratio: float = setting(1.0, min=0, max=1)  # share of new traces kept (a caller's sampled flag wins)


@dataclass
class Config:
    host: str = setting("127.0.0.1", check=non_empty)
    port: int = setting(5000, min=1, max=65535)
    data_dir: Path = setting(Path("./data"), env=("BERTH_DATA",))
    database_url: str | None = setting(None, check=database_url, secret=True)  # default: sqlite:///<data_dir>/berth.db
    max_manifest_size: int = setting(4 * 1024 * 1024, min=1)
    max_blob_size: int = setting(10 * 1024**3, min=1)  # bytes per blob; larger uploads: 413 SIZE_INVALID
    upload_expiry: int = setting(24 * 3600, min=1)  # seconds an idle upload session is kept
    log_level: str = setting("INFO", choices=LOG_LEVELS)
    access_log: bool = True  # one line per request on the "berth.access" logger
    log_format: str = setting("json", choices=("json", "text"))  # json (one object per line) | text (for a terminal)
    metrics_enabled: bool = True  # GET /metrics (no authentication: restrict it at the ingress)
    tls_cert: str | None = setting(None, check=existing_file)  # PEM certificate chain: serve HTTPS (with tls_key)
    tls_key: str | None = setting(None, check=existing_file)  # PEM private key of tls_cert
    workers: int = setting(1, min=1)  # processes serving the port (berth serve --workers)
    storage: StorageConfig = field(default_factory=StorageConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    gc: GCConfig = field(default_factory=GCConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)

    def validate(self) -> None:
        """Checks across settings (after each setting's own)."""
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key go together: give both (BERTH_TLS_CERT, BERTH_TLS_KEY) or neither")

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, env: typing.Mapping[str, str] | None = None,
             **overrides: Any) -> "Config":
        """Defaults < the YAML file ``path`` < ``env`` (default: the process environment) < ``overrides``
        (command-line flags: top-level names, or dotted paths with ``__``, e.g. ``auth__enabled``; None
        means unset). Raises :class:`ConfigError` listing every problem."""
        return _load(cls, path, os.environ if env is None else env, overrides)


def _strict_bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


# ---- the tree of settings ----------------------------------------------------------------


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


@dataclass(frozen=True)
class Leaf:
    """One setting: its path in the tree (``("storage", "s3", "bucket")``), field and type."""
    path: tuple[str, ...]
    field: dataclasses.Field
    type: Any

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def env(self) -> str:
        """The variable of the naming rule: BERTH_ + the path, upper case, joined by ``_``."""
        return ENV_PREFIX + "_".join(self.path).upper()

    @property
    def aliases(self) -> tuple[str, ...]:
        return self.field.metadata.get("env", ())

    @property
    def secret(self) -> bool:
        return bool(self.field.metadata.get("secret"))

    @property
    def default(self) -> Any:
        f = self.field
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def leaves(cls: type = None, prefix: tuple[str, ...] = ()) -> list[Leaf]:
    """Every setting below ``cls`` (default :class:`Config`), in declaration order."""
    cls = Config if cls is None else cls
    hints = typing.get_type_hints(cls)
    out: list[Leaf] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if _is_section(tp):
            out.extend(leaves(tp, (*prefix, f.name)))
        else:
            out.append(Leaf((*prefix, f.name), f, tp))
    return out


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def _set(obj: Any, path: tuple[str, ...], value: Any) -> None:
    setattr(_get(obj, path[:-1]), path[-1], value)


# ---- conversion -------------------------------------------------------------------------------


class _Bad(Exception):
    pass


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _coerce(tp: Any, value: Any, text: bool) -> Any:
    """``value`` (from YAML, a flag, or — ``text`` — the environment) as type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(tp)):
            return None
        error = _Bad("has the wrong type")
        for a in args:
            try:
                return _coerce(a, value, text)
            except _Bad as e:
                error = e
        raise error
    if value is None:
        raise _Bad("must be set (null is not allowed here)")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise _Bad(f"must be one of {', '.join(map(str, typing.get_args(tp)))}")
        return value
    if origin is list or tp is list:
        (item,) = typing.get_args(tp) or (str,)
        if isinstance(value, str):
            items: list = [s.strip() for s in value.split(",") if s.strip()]
        elif isinstance(value, (list, tuple)) and not text:
            items = list(value)
        else:
            raise _Bad("must be a list")
        return [_coerce(item, v, text) for v in items]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise _Bad("must be true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _Bad("must be an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise _Bad("must be a number")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _Bad("must be a string")
    if tp is Path or (isinstance(tp, type) and issubclass(tp, os.PathLike)):
        if isinstance(value, (str, os.PathLike)) and str(value):
            return Path(value)
        raise _Bad("must be a path")
    return value  # a type this module does not know: as given


def _check(leaf: Leaf, value: Any) -> str | None:
    """The field's declarative checks; may normalise (``choices``). Returns a problem or None."""
    meta = leaf.field.metadata
    if value is None:
        return None
    choices = meta.get("choices")
    if choices:
        match = [c for c in choices if c == value or (isinstance(c, str) and str(value).lower() == c.lower())]
        if not match:
            return f"must be one of {', '.join(map(str, choices))}"
    lo, hi = meta.get("min"), meta.get("max")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if lo is not None and value < lo:
            return f"must be at least {lo}" if hi is None else f"must be between {lo} and {hi}"
        if hi is not None and value > hi:
            return f"must be at most {hi}" if lo is None else f"must be between {lo} and {hi}"
    check = meta.get("check")
    return check(value) if check is not None else None


def shown(leaf: Leaf, value: Any) -> Any:
    """``value`` as ``berth config show`` and error messages print it: secrets masked (``***``;
    a database URL keeps everything but its password)."""
    if value is None or not leaf.secret:
        return str(value) if isinstance(value, Path) else value
    if leaf.field.metadata.get("check") is database_url:
        try:
            from sqlalchemy.engine import make_url  # noqa: PLC0415

            return make_url(str(value)).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001
            return "***"
    return "***"


# ---- loading --------------------------------------------------------------------------------

_FLAG_NAMES = {"data_dir": "--data"}


def _env_text(env: typing.Mapping[str, str], name: str, problems: list[str]) -> tuple[str, str] | None:
    """The text of variable ``name`` or of the file ``<name>_FILE`` names, and its source; None if unset
    (an empty variable counts as unset)."""
    direct, file_var = env.get(name), env.get(name + "_FILE")
    if direct and file_var:
        problems.append(f"{name} and {name}_FILE are both set: set one of them")
        return None
    if direct:
        return direct, f"env {name}"
    if file_var:
        try:
            return Path(file_var).read_text().rstrip("\r\n"), f"env {name}_FILE ({file_var})"
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{name}_FILE = {file_var!r}: cannot read the file: {getattr(e, 'strerror', None) or e}")
    return None


def _apply_mapping(klass: type, data: Any, prefix: tuple[str, ...], source: str, problems: list[str],
                   found: dict[tuple[str, ...], Any]) -> None:
    if not isinstance(data, dict):
        where = ".".join(prefix) if prefix else "the configuration"
        problems.append(f"{where} ({source}): must be a mapping of settings, not {type(data).__name__}")
        return
    hints = typing.get_type_hints(klass)
    names = [f.name for f in dataclasses.fields(klass) if f.init]
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        path = (*prefix, key)
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            problems.append(f"unknown configuration key '{'.'.join(path)}'{hint} ({source})")
        elif _is_section(hints[key]):
            _apply_mapping(hints[key], {} if value is None else value, path, source, problems, found)
        else:
            found[path] = value


def _load(cls: type, path: Any, env: typing.Mapping[str, str], overrides: dict[str, Any]):
    problems: list[str] = []
    all_leaves = leaves(cls)
    by_path = {leaf.path: leaf for leaf in all_leaves}
    raw: dict[tuple[str, ...], tuple[Any, str, bool]] = {}  # path -> (value, source, is text)

    if path:
        source = f"file {path}"
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read the configuration file {str(path)!r}: "
                              f"{getattr(e, 'strerror', None) or e}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
        found: dict[tuple[str, ...], Any] = {}
        _apply_mapping(cls, {} if data is None else data, (), source, problems, found)
        raw.update({p: (v, source, False) for p, v in found.items()})

    for leaf in all_leaves:
        for name in (leaf.env, *leaf.aliases):
            got = _env_text(env, name, problems)
            if got is not None:
                raw[leaf.path] = (got[0], got[1], True)
                break

    for key, value in overrides.items():
        if value is None:
            continue
        p = tuple(key.split("__"))
        if p not in by_path:
            raise TypeError(f"Config.load: no setting {key!r}")
        raw[p] = (value, "flag " + _FLAG_NAMES.get(key, "--" + key.replace("_", "-").replace("--", ".")), False)

    cfg = cls()
    srcs: dict[str, str] = {}
    for p, (value, source, text) in raw.items():
        leaf = by_path[p]
        try:
            converted = _coerce(leaf.type, value, text)
        except _Bad as e:
            problems.append(f"{leaf.key} = {shown(leaf, value)!r} ({source}): {e}")
            continue
        _set(cfg, p, converted)
        srcs[leaf.key] = source

    failed_sections = set()
    for leaf in all_leaves:
        value = _get(cfg, leaf.path)
        problem = _check(leaf, value)
        if problem is not None:
            problems.append(f"{leaf.key} = {shown(leaf, value)!r} ({srcs.get(leaf.key, 'default')}): {problem}")
            failed_sections.add(leaf.path[0])
        elif leaf.field.metadata.get("choices") and isinstance(value, str):
            _set(cfg, leaf.path, next((c for c in leaf.field.metadata["choices"]
                                       if isinstance(c, str) and c.lower() == value.lower()), value))

    # a section's own validate() (cross-setting checks; it checks its subsections itself)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        section = getattr(cfg, f.name)
        if _is_section(hints[f.name]) and f.name not in failed_sections and callable(getattr(section, "validate", None)):
            try:
                section.validate()
            except ConfigError as e:
                problems.extend(e.problems)
            except ValueError as e:
                problems.append(str(e))
    if not problems and callable(getattr(cfg, "validate", None)):
        try:
            cfg.validate()
        except ConfigError as e:
            problems.extend(e.problems)
    if problems:
        raise ConfigError(problems)
    object.__setattr__(cfg, "_sources", srcs)
    return cfg


def sources(cfg: Config) -> dict[str, str]:
    """Where each setting's value came from: ``default``, ``file PATH``, ``env VAR``, ``flag --x``."""
    got = getattr(cfg, "_sources", {})
    return {leaf.key: got.get(leaf.key, "default") for leaf in leaves(type(cfg))}


def effective(cfg: Config) -> list[tuple[Leaf, Any, str]]:
    """Every setting: (leaf, value as shown — secrets masked, source)."""
    src = sources(cfg)
    return [(leaf, shown(leaf, _get(cfg, leaf.path)), src[leaf.key]) for leaf in leaves(type(cfg))]
