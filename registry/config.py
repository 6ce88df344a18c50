"""Configuration: documented defaults < YAML file < environment (BERTH_*) < command-line flags.

config/berth.yaml lists every setting with its default.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class AuthConfig:
    enabled: bool = True
    realm: str | None = None  # token endpoint URL; default: <request scheme+host>/auth/token
    service: str = "berth"  # the token `aud`, what clients send as ?service=
    issuer: str = "berth"
    algorithm: str = "ES256"  # ES256 or RS256
    token_ttl: int = 300  # seconds a registry token lives
    refresh_token_ttl: int = 30 * 24 * 3600
    max_admin_token_ttl: int = 24 * 3600  # cap for POST /admin/tokens
    signing_key: str | None = None  # PEM file; default: generated into <data>/keys/
    verification_keys: list[str] = field(default_factory=list)  # extra PEM public keys (rotation)
    credential_cache_ttl: int = 60  # seconds a bcrypt-verified credential is trusted from memory
    max_failed_logins: int = 10  # per (username, client address), in failed_login_window
    failed_login_window: int = 300
    admin_password: str | None = None  # bootstrap admin; else BERTH_ADMIN_PASSWORD; else generated
    max_failed_logins_per_username: int = 100  # from all addresses together, in failed_login_window
    max_failed_logins_per_address: int = 100  # for all usernames together, in failed_login_window
    max_logins_in_flight_per_username: int = 8  # secrets being checked (bcrypt) at once, per process
    max_logins_in_flight_per_address: int = 8
    trusted_proxies: list[str] = field(default_factory=list)  # CIDRs whose X-Forwarded-For is believed


class ConfigError(ValueError):
    """A setting that cannot work (``berth`` prints it as one line and exits 2)."""


@dataclass
class S3Config:
    endpoint: str | None = None  # e.g. http://127.0.0.1:8333; None = AWS's regional endpoint
    region: str = "us-east-1"
    bucket: str | None = None
    prefix: str = ""  # key prefix inside the bucket ("" = the bucket's root)
    access_key: str | None = None
    secret_key: str | None = None
    redirect: bool = False  # blob GET answers 307 to a short-lived presigned URL

    def validate(self) -> None:
        """Raise ConfigError naming the setting that cannot work; normalise the prefix."""
        from urllib.parse import urlsplit  # noqa: PLC0415

        if not self.bucket or not isinstance(self.bucket, str) or "/" in self.bucket:
            raise ConfigError("storage.s3.bucket (BERTH_STORAGE_S3_BUCKET) must name a bucket")
        if not (self.access_key and self.secret_key):
            raise ConfigError("storage.s3.access_key and storage.s3.secret_key (BERTH_STORAGE_S3_ACCESS_KEY, "
                             "BERTH_STORAGE_S3_SECRET_KEY) are required")
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
    driver: str = "filesystem"  # filesystem (under data_dir) | s3
    s3: S3Config = field(default_factory=S3Config)

    def validate(self) -> None:
        if self.driver not in ("filesystem", "s3"):
            raise ConfigError(f"storage.driver (BERTH_STORAGE_DRIVER) must be filesystem or s3, not {self.driver!r}")
        if self.driver == "s3":
            self.s3.validate()


@dataclass
class LimitsConfig:
    """Protection of one tenant from another (registry.limits, docs/operations.md "Quotas and limits").

    Rates are requests per second to /v2/, enforced by each process on its own (token buckets
    in memory); 0 turns a limit off. The defaults let a 500-node fleet pull one image at once."""
    rate_per_principal: float = 500.0  # per user, robot, service token (per client address without auth)
    burst_per_principal: int = 20000
    rate_per_tenant: float = 1000.0  # all principals together, on the tenant's repositories
    burst_per_tenant: int = 40000
    max_upload_sessions_per_principal: int = 100  # open (unexpired) upload sessions, counted in the database
    max_header_bytes: int = 65536  # all request header lines together → 431
    max_header_field: int = 8190  # one header line / the request line (aiohttp answers 400 itself)
    max_headers: int = 128  # header lines per request (aiohttp answers 400 itself)


@dataclass
class GCConfig:
    """Garbage collection inside the server (registry.app) and the defaults of ``berth gc``."""
    interval: float = 3600  # seconds between collections in the server; 0 = none (run `berth gc`)
    grace: float = 3600  # seconds a blob or link stays after its last use / creation
    untagged_manifests_after: float | None = None  # seconds; None = untagged manifests are kept


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 5000
    data_dir: Path = Path("./data")
    database_url: str | None = None  # default: sqlite:///<data_dir>/berth.db
    max_manifest_size: int = 4 * 1024 * 1024
    max_blob_size: int = 10 * 1024**3  # bytes per blob; larger uploads are refused with 413 SIZE_INVALID
    upload_expiry: int = 24 * 3600  # seconds an idle upload session is kept
    log_level: str = "INFO"
    access_log: bool = True  # one line per request on the "berth.access" logger
    tls_cert: str | None = None  # PEM certificate chain: serve HTTPS (with tls_key)
    tls_key: str | None = None  # PEM private key of tls_cert
    workers: int = 1  # processes serving the port (berth serve --workers)
    storage: StorageConfig = field(default_factory=StorageConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    log_format: str = "json"  # json (one object per line) | text (for a terminal)
    metrics_enabled: bool = True  # GET /metrics (no authentication: restrict it at the ingress)
    gc: GCConfig = field(default_factory=GCConfig)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, env: dict[str, str] | None = None, **overrides: Any) -> "Config":
        data: dict[str, Any] = {}
        if path:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        env = os.environ if env is None else env
        cfg = _build(cls, data)
        _apply_env(cfg, env)
        for key, value in overrides.items():
            if value is not None:
                setattr(cfg, key, type(getattr(cfg, key))(value) if key == "data_dir" else value)
        cfg.data_dir = Path(cfg.data_dir)
        cfg.storage.validate()
        return cfg


def _build(klass, data: dict[str, Any]):
    if not isinstance(data, dict):
        raise ValueError(f"configuration for {klass.__name__} must be a mapping")
    kwargs = {}
    fields = {f.name: f for f in dataclasses.fields(klass)}
    for key, value in data.items():
        key = key.replace("-", "_")
        if key not in fields:
            raise ValueError(f"unknown configuration key {key!r}")
        nested = _NESTED.get((klass.__name__, key))
        if nested is not None:
            value = _build(nested, value)
        kwargs[key] = value
    return klass(**kwargs)


_NESTED = {("Config", "auth"): AuthConfig, ("Config", "gc"): GCConfig, ("Config", "limits"): LimitsConfig,
           ("Config", "storage"): StorageConfig, ("StorageConfig", "s3"): S3Config}

_ENV = {
    "BERTH_HOST": ("host", str),
    "BERTH_PORT": ("port", int),
    "BERTH_DATA": ("data_dir", Path),
    "BERTH_DATABASE_URL": ("database_url", str),
    "BERTH_MAX_BLOB_SIZE": ("max_blob_size", int),
    "BERTH_LOG_LEVEL": ("log_level", str),
    "BERTH_ACCESS_LOG": ("access_log", lambda v: v.lower() in ("1", "true", "yes", "on")),
    "BERTH_TLS_CERT": ("tls_cert", str),
    "BERTH_TLS_KEY": ("tls_key", str),
    "BERTH_WORKERS": ("workers", int),
    "BERTH_LOG_FORMAT": ("log_format", str),
    "BERTH_METRICS_ENABLED": ("metrics_enabled", lambda v: v.lower() in ("1", "true", "yes", "on")),
}
_BOOL = lambda v: v.lower() in ("1", "true", "yes", "on")  # noqa: E731


def _strict_bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")

_STORAGE_ENV = {
    "BERTH_STORAGE_DRIVER": ("driver", str),
}
_S3_ENV = {
    "BERTH_STORAGE_S3_ENDPOINT": ("endpoint", str),
    "BERTH_STORAGE_S3_REGION": ("region", str),
    "BERTH_STORAGE_S3_BUCKET": ("bucket", str),
    "BERTH_STORAGE_S3_PREFIX": ("prefix", str),
    "BERTH_STORAGE_S3_ACCESS_KEY": ("access_key", str),
    "BERTH_STORAGE_S3_SECRET_KEY": ("secret_key", str),
    "BERTH_STORAGE_S3_REDIRECT": ("redirect", lambda v: _strict_bool("BERTH_STORAGE_S3_REDIRECT", v)),
}
_GC_ENV = {
    "BERTH_GC_INTERVAL": ("interval", float),
    "BERTH_GC_GRACE": ("grace", float),
    "BERTH_GC_UNTAGGED_MANIFESTS_AFTER": ("untagged_manifests_after", float),
}
_AUTH_ENV = {
    "BERTH_AUTH_ENABLED": ("enabled", lambda v: v.lower() in ("1", "true", "yes", "on")),
    "BERTH_AUTH_REALM": ("realm", str),
    "BERTH_AUTH_SERVICE": ("service", str),
    "BERTH_ADMIN_PASSWORD": ("admin_password", str),
    "BERTH_AUTH_TRUSTED_PROXIES": ("trusted_proxies", lambda v: [c.strip() for c in v.split(",") if c.strip()]),
}


_LIMITS_ENV = {
    "BERTH_LIMITS_RATE_PER_PRINCIPAL": ("rate_per_principal", float),
    "BERTH_LIMITS_BURST_PER_PRINCIPAL": ("burst_per_principal", int),
    "BERTH_LIMITS_RATE_PER_TENANT": ("rate_per_tenant", float),
    "BERTH_LIMITS_BURST_PER_TENANT": ("burst_per_tenant", int),
    "BERTH_LIMITS_MAX_UPLOAD_SESSIONS_PER_PRINCIPAL": ("max_upload_sessions_per_principal", int),
    "BERTH_LIMITS_MAX_HEADER_BYTES": ("max_header_bytes", int),
}


def _apply_env(cfg: Config, env) -> None:
    for var, (attr, conv) in _ENV.items():
        if env.get(var):
            setattr(cfg, attr, conv(env[var]))
    for table, target in ((_AUTH_ENV, cfg.auth), (_STORAGE_ENV, cfg.storage), (_S3_ENV, cfg.storage.s3),
                          (_LIMITS_ENV, cfg.limits), (_GC_ENV, cfg.gc)):
        for var, (attr, conv) in table.items():
            if env.get(var):
                setattr(target, attr, conv(env[var]))
