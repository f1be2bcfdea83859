"""YAML config -> typed, validated settings.

Every key is checked at startup: an unknown key or a wrong type stops the gateway with a
message naming the key (`exchanges.okx-demo.sandbox: expected a boolean, got 'yes'`), so a
typo never silently falls back to a default (a mistyped `sandbox` must not trade live).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG_PATH = Path("config/gateway.yaml")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
PUBLIC_CACHE_METHODS = ("ticker", "depth", "trades", "tickers", "fundings")
STREAM_KINDS = ("ticker", "depth", "trades", "records")
STREAM_MODES = ("off", "on", "auto")
ROUTE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class SettingsError(ValueError):
    """The config file is unusable; the message names the offending key."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 6666
    max_body_bytes: int = 1_048_576
    log_level: str = "info"
    allowed_clients: tuple[str, ...] = ()  # networks (CIDR) that may call; empty = anyone; loopback always may
    request_timeout: float = 10.0  # seconds: every FMZ call is answered within it, retries and look-ups included
    log_format: str = "text"  # text | json
    skip_bad_routes: bool = False  # true: serve the good routes when one is refused at startup


@dataclass(frozen=True)
class ClientSettings:
    idle_ttl: float = 3600.0
    max_clients: int = 1000
    markets_ttl: float = 3600.0
    read_retries: int = 2  # extra attempts for reads on network/rate-limit errors; never for orders
    retry_backoff: float = 0.25  # seconds, doubled per attempt
    timeout_ms: int = 10_000
    settle_window: float = 5.0  # seconds to look an order up after its answer was lost or garbled


@dataclass(frozen=True)
class Venue:
    """One route: a ccxt exchange id and how to reach it (the `exchanges.<route>` keys)."""

    route: str
    ccxt_id: str  # `ccxt:` in the config
    sandbox: bool = False
    api_base: str | None = None
    markets_file: str | None = None
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    ccxt_config: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    public_cache: dict[str, float] | None = field(default=None, hash=False, compare=False)  # None: the global one
    streams: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @cached_property
    def market_scope(self) -> tuple:
        """Venues with the same scope see the same markets and may share one loaded copy."""
        return (
            self.ccxt_id,
            self.sandbox,
            self.api_base,
            self.markets_file,
            json.dumps(self.options, sort_keys=True, default=str),
        )


@dataclass(frozen=True)
class CredentialAlias:
    """Real exchange credentials held on the gateway host, unlocked by `token`."""

    name: str
    token: str
    fields: dict[str, str]  # ccxt credential fields: apiKey, secret, password, uid, ...
    routes: tuple[str, ...] = ()  # empty = any route


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    clients: ClientSettings = field(default_factory=ClientSettings)
    allow_any_ccxt_exchange: bool = True
    exchanges: dict[str, Venue] = field(default_factory=dict)
    credentials: dict[str, CredentialAlias] = field(default_factory=dict)
    public_cache: dict[str, float] = field(default_factory=dict)  # FMZ public method -> seconds; {} = off

    def public_cache_for(self, venue: Venue) -> dict[str, float]:
        """The route's own public_cache where it has one, else the global one."""
        return self.public_cache if venue.public_cache is None else venue.public_cache


CCXT_CREDENTIAL_FIELDS = (
    "apiKey",
    "secret",
    "password",
    "uid",
    "login",
    "twofa",
    "privateKey",
    "walletAddress",
    "accountId",  # hibachi, modetrade, woofipro; ccxt's `token` field has no alias key: `token` unlocks the alias
)


def load_settings(path: str | Path | None = None) -> Settings:
    """Read and validate a YAML config file; a missing default file means all defaults."""
    config_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if not config_path.exists():
        if path is None:
            return Settings()
        raise SettingsError(f"config file not found: {config_path}")
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SettingsError(f"{config_path}: invalid YAML: {exc}") from None
    return parse_settings(raw or {})


def parse_settings(raw: Any) -> Settings:
    top = _mapping(raw, "config")
    _only(top, "", {"server", "allow_any_ccxt_exchange", "clients", "exchanges", "credentials", "public_cache"})
    server = _section(top.get("server"), "server", ServerSettings)
    if server.log_level not in LOG_LEVELS:
        raise SettingsError(f"server.log_level: expected one of {', '.join(LOG_LEVELS)}, got {server.log_level!r}")
    if server.log_format not in LOG_FORMATS:
        raise SettingsError(f"server.log_format: expected one of {', '.join(LOG_FORMATS)}, got {server.log_format!r}")
    if not 0 <= server.port <= 65535:
        raise SettingsError(f"server.port: must be 0..65535, got {server.port}")
    for network in server.allowed_clients:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise SettingsError(f"server.allowed_clients: {network!r} is not an address or network") from None
    clients = _section(top.get("clients"), "clients", ClientSettings)
    if server.request_timeout <= 0:
        raise SettingsError("server.request_timeout: must be positive")
    for name in ("idle_ttl", "max_clients", "markets_ttl", "settle_window"):
        if getattr(clients, name) <= 0:
            raise SettingsError(f"clients.{name}: must be positive")
    allow_any = _typed(top.get("allow_any_ccxt_exchange", True), bool, "allow_any_ccxt_exchange")
    exchanges = {}
    for route, body in _mapping(top.get("exchanges") or {}, "exchanges").items():
        venue = _venue(str(route), body)
        exchanges[venue.route] = venue
    credentials = {}
    for name, body in _mapping(top.get("credentials") or {}, "credentials").items():
        credentials[str(name)] = _credential(str(name), body)
    public_cache = _public_cache(top.get("public_cache"), "public_cache") or {}
    return Settings(server, clients, allow_any, exchanges, credentials, public_cache)


def _public_cache(raw: Any, where: str) -> dict[str, float] | None:
    """{FMZ public method: seconds}; None when the key is absent (a route then takes the global one)."""
    if raw is None:
        return None
    values = _mapping(raw, where)
    _only(values, where, set(PUBLIC_CACHE_METHODS))
    out = {}
    for method, seconds in values.items():
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= 60:
            raise SettingsError(f"{where}.{method}: expected seconds between 0 and 60, got {seconds!r}")
        out[method] = float(seconds)
    return out


def _streams(raw: Any, where: str) -> dict[str, Any]:
    values = _mapping(raw or {}, where)
    _only(values, where, {*STREAM_KINDS, "max_age_ms"})
    for kind in STREAM_KINDS:
        if kind in values and values[kind] not in STREAM_MODES:
            raise SettingsError(f"{where}.{kind}: expected one of {', '.join(STREAM_MODES)}, got {values[kind]!r}")
    if "max_age_ms" in values:
        age = values["max_age_ms"]
        if isinstance(age, bool) or not isinstance(age, int) or age <= 0:
            raise SettingsError(f"{where}.max_age_ms: expected a positive integer, got {age!r}")
    return dict(values)


def _venue(route: str, body: Any) -> Venue:
    where = f"exchanges.{route}"
    name = route.lower()
    if not ROUTE_NAME.match(name):
        raise SettingsError(f"{where}: route names are letters, digits, '-', '_' or '.'")
    spec = _mapping(body or {}, where)
    _only(
        spec,
        where,
        {"ccxt", "sandbox", "api_base", "markets_file", "options", "ccxt_config", "public_cache", "streams"},
    )
    ccxt_id = _typed(spec.get("ccxt", name), str, f"{where}.ccxt").lower()
    api_base = _optional_str(spec.get("api_base"), f"{where}.api_base")
    if api_base is not None and not re.match(r"^https?://[^/\s]+$", api_base.rstrip("/")):
        raise SettingsError(f"{where}.api_base: expected scheme://host[:port], got {api_base!r}")
    return Venue(
        route=name,
        ccxt_id=ccxt_id,
        sandbox=_typed(spec.get("sandbox", False), bool, f"{where}.sandbox"),
        api_base=api_base.rstrip("/") if api_base else None,
        markets_file=_optional_str(spec.get("markets_file"), f"{where}.markets_file"),
        options=dict(_mapping(_or_empty(spec.get("options")), f"{where}.options")),
        ccxt_config=dict(_mapping(_or_empty(spec.get("ccxt_config")), f"{where}.ccxt_config")),
        public_cache=_public_cache(spec.get("public_cache"), f"{where}.public_cache"),
        streams=_streams(spec.get("streams"), f"{where}.streams"),
    )


def _credential(name: str, body: Any) -> CredentialAlias:
    """`token` (or `token_env`) plus ccxt fields, each given inline or as `<field>_env`."""
    where = f"credentials.{name}"
    spec = _mapping(body, where)
    allowed = {"token", "token_env", "routes"} | set(CCXT_CREDENTIAL_FIELDS)
    allowed |= {f"{f}_env" for f in CCXT_CREDENTIAL_FIELDS}
    _only(spec, where, allowed)
    token = _value_or_env(spec, "token", where)
    if not token:
        raise SettingsError(f"{where}.token: required (the secret the docker sends in secret_key)")
    fields = {}
    for f in CCXT_CREDENTIAL_FIELDS:
        value = _value_or_env(spec, f, where)
        if value:
            fields[f] = value
    if "apiKey" not in fields:
        raise SettingsError(f"{where}.apiKey: required")
    routes = spec.get("routes") or []
    if not isinstance(routes, list) or not all(isinstance(r, str) for r in routes):
        raise SettingsError(f"{where}.routes: expected a list of route names")
    return CredentialAlias(name, token, fields, tuple(r.lower() for r in routes))


def _value_or_env(spec: dict, key: str, where: str) -> str | None:
    if key in spec:
        return _optional_str(spec[key], f"{where}.{key}")
    env_name = spec.get(f"{key}_env")
    if env_name is None:
        return None
    env_name = _typed(env_name, str, f"{where}.{key}_env")
    if env_name not in os.environ:
        raise SettingsError(f"{where}.{key}_env: environment variable {env_name} is not set")
    return os.environ[env_name]


def _section(raw: Any, where: str, cls: type) -> Any:
    values = _mapping(raw or {}, where)
    defaults = cls()
    _only(values, where, set(defaults.__dataclass_fields__))
    out = {}
    for key, value in values.items():
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is tuple:
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise SettingsError(f"{where}.{key}: expected a list of strings, got {value!r}")
            value = tuple(value)
        out[key] = _typed(value, expected, f"{where}.{key}")
    return cls(**out)


def _or_empty(value: Any) -> Any:
    return {} if value is None else value


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise SettingsError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _only(values: dict, where: str, allowed: set[str]) -> None:
    for key in values:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            raise SettingsError(f"{prefix}{key}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _typed(value: Any, expected: type, where: str) -> Any:
    if isinstance(value, bool) and expected is not bool:
        raise SettingsError(f"{where}: expected {expected.__name__}, got a boolean")
    if not isinstance(value, expected):
        raise SettingsError(f"{where}: expected {_type_name(expected)}, got {value!r}")
    return value


def _optional_str(value: Any, where: str) -> str | None:
    return None if value is None else _typed(value, str, where)


def _type_name(expected: type) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(expected, expected.__name__)
