"""CLI: `fmz-gateway serve|check|show-config|exchanges` (also `python -m gateway ...`).

The config file is `--config`, else $FMZ_GATEWAY_CONFIG, else config/gateway.yaml (built-in
defaults when that file is absent). The log level is `serve --log-level`, else
$FMZ_GATEWAY_LOG_LEVEL, else `server.log_level`. Command-line flags win over the environment,
which wins over the file.

Exit codes (serve and check alike): 0 ok; 1 a route is refused (check: or fails a probe);
2 the config is unusable; 3 serve could not start listening (say, the port is taken).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from gateway.settings import DEFAULT_CONFIG_PATH, LOG_LEVELS, Settings, SettingsError, load_settings

ENV_CONFIG = "FMZ_GATEWAY_CONFIG"
ENV_LOG_LEVEL = "FMZ_GATEWAY_LOG_LEVEL"
EXIT_OK, EXIT_ROUTES, EXIT_CONFIG, EXIT_LISTEN = 0, 1, 2, 3
LOOPBACK = ("127.0.0.1", "localhost", "::1")
REDACTED = "<redacted>"
# Keys under options/ccxt_config whose values are credentials (or carry them, like headers' Authorization).
SECRET_KEY = re.compile(
    r"(?i)(api[-_]?key|secret|passw|passphrase|token|private[-_]?key|auth|signature|cookie|credential"
    r"|^uid$|^login$|twofa|wallet|mnemonic|seed)"
)
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")
log = logging.getLogger("gateway")


def version_line() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from gateway import __version__

    try:
        ccxt_version = version("ccxt")
    except PackageNotFoundError:  # pragma: no cover - ccxt is a dependency
        ccxt_version = "?"
    return f"fmz-gateway {__version__} (ccxt {ccxt_version}, Python {sys.version.split()[0]})"


class _Version(argparse.Action):
    """--version without importing ccxt (the version string is built only when asked for)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the gateway and ccxt versions, then exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(version_line())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmz-gateway", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway (SIGHUP reloads routes and credential aliases)")
    check = commands.add_parser(
        "check", help="validate the config and every configured route as serve would, probe api_base hosts, exit"
    )
    show = commands.add_parser("show-config", help="print the resolved config (defaults filled in, secrets redacted)")
    for sub in (serve, check, show):
        sub.add_argument(
            "--config", default=None, help=f"YAML config (default: ${ENV_CONFIG}, else {DEFAULT_CONFIG_PATH})"
        )
    serve.add_argument("--host", default=None, help="listen address (default: server.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default: server.port, 6666)")
    serve.add_argument(
        "--log-level", choices=LOG_LEVELS, default=None, help=f"(default: ${ENV_LOG_LEVEL}, else server.log_level)"
    )
    check.add_argument(
        "--online", action="store_true", help="also load every route's markets from its exchange (sends requests)"
    )
    check.add_argument("--timeout", type=float, default=30.0, help="seconds per route for --online (default 30)")
    exchanges = commands.add_parser("exchanges", help="list the ccxt exchange ids a route may name")
    exchanges.add_argument(
        "--capabilities",
        nargs="?",
        const="",
        default=None,
        metavar="ID",
        help="FMZ functions per exchange (native / fallback / unsupported), credentials, sandbox: "
        "one exchange's report as JSON, or the table of all",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "exchanges":
        if args.capabilities is not None:
            from gateway.capabilities import cli

            return cli(args.capabilities or None)
        import ccxt.async_support as ccxt_async

        print("\n".join(ccxt_async.exchanges))
        return EXIT_OK
    path = config_path(args.config)
    where = describe(path)
    if args.command == "check":
        print(f"config: {where}")
    try:
        file_settings = load_settings(path)
        settings = with_overrides(file_settings, getattr(args, "log_level", None))
    except SettingsError as exc:
        print(f"config error ({where}): {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check":
        return check(settings, online=args.online, timeout=args.timeout)
    if args.command == "show-config":
        return show_config(settings, where)
    return serve(settings, path, args.host, args.port, file_settings)


def config_path(flag: str | None) -> Path | None:
    """--config, else $FMZ_GATEWAY_CONFIG, else None (config/gateway.yaml, or defaults without it)."""
    if flag:
        return Path(flag)
    env = os.environ.get(ENV_CONFIG, "").strip()
    return Path(env) if env else None


def describe(path: Path | None) -> str:
    """The file the config is read from, as an operator needs to see it."""
    shown = path if path is not None else DEFAULT_CONFIG_PATH
    absolute = shown.resolve() if shown.exists() else shown.absolute()
    if path is None and not shown.exists():
        return f"{absolute} (absent: built-in defaults)"
    return str(absolute)


def with_overrides(settings: Settings, log_level: str | None) -> Settings:
    """Apply --log-level, else $FMZ_GATEWAY_LOG_LEVEL (validated like server.log_level)."""
    level, source = log_level, "--log-level"
    if level is None and os.environ.get(ENV_LOG_LEVEL, "").strip():
        level, source = os.environ[ENV_LOG_LEVEL].strip().lower(), ENV_LOG_LEVEL
    if level is None:
        return settings
    if level not in LOG_LEVELS:
        raise SettingsError(f"{source}: expected one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return dataclasses.replace(settings, server=dataclasses.replace(settings.server, log_level=level))


# --- check ----------------------------------------------------------------------------------
def check(settings: Settings, online: bool = False, timeout: float = 30.0) -> int:
    """Everything serve refuses (exit 2 or 1), plus a TCP probe of each api_base and, for
    markets_file routes (offline) or every route (--online), a markets load through the pool."""
    from gateway.venues import VenueRegistry, alias_problems

    problems = alias_problems(settings)
    if problems:
        for problem in problems:
            print(f"FAIL  {problem}")
        print("config unusable: serve would refuse to start (exit 2)")
        return EXIT_CONFIG
    registry = VenueRegistry(settings)
    routes = sorted(settings.exchanges)
    failures: dict[str, str] = {route: str(exc) for route, exc in registry.refused.items()}
    details: dict[str, str] = {}
    probes = asyncio.run(_probe_routes(settings, registry, online, timeout))
    for route, (failure, detail) in probes.items():
        if failure:
            failures.setdefault(route, failure)
        if detail:
            details[route] = detail
    for route in routes:
        venue = settings.exchanges[route]
        if route in failures:
            print(f"FAIL  {route}: {failures[route]}")
        else:
            detail = f": {details[route]}" if route in details else ""
            print(f"ok    {route} -> {venue.ccxt_id}{' (sandbox)' if venue.sandbox else ''}{detail}")
    for warning in _warnings(settings):
        print(f"warn  {warning}")
    summary = f"{len(routes)} configured routes, {len(failures)} failing"
    if registry.refused:
        summary += (
            "; serve would skip the refused ones (server.skip_bad_routes)"
            if settings.server.skip_bad_routes
            else "; serve would refuse to start (or set server.skip_bad_routes: true)"
        )
    print(summary)
    return EXIT_ROUTES if failures else EXIT_OK


async def _probe_routes(settings: Settings, registry: Any, online: bool, timeout: float) -> dict:
    """route -> (failure or None, detail): api_base TCP probes, then markets loads, concurrently."""
    from gateway.clients import ClientPool
    from gateway.venues import probe_api_base

    venues = registry.configured
    bases = {route: venue.api_base for route, venue in venues.items() if venue.api_base}
    unreachable = dict(
        zip(bases, await asyncio.gather(*(probe_api_base(base) for base in bases.values())), strict=True)
    )
    results: dict[str, tuple[str | None, str | None]] = {r: (why, None) for r, why in unreachable.items() if why}
    loads = [
        route
        for route, venue in venues.items()
        if route not in results and (venue.markets_file or online)  # a markets_file load sends nothing
    ]
    if not loads:
        return results
    pool = ClientPool(settings.clients)

    async def load(route: str) -> tuple[str | None, str | None]:
        from gateway.errors import error_message

        try:
            async with asyncio.timeout(timeout):
                await pool.markets(venues[route])
        except TimeoutError:
            return f"markets did not load within {timeout:g} s", None
        except Exception as exc:
            return f"markets did not load: {error_message(exc)}", None
        markets = pool.scope_for(venues[route]).master.markets or {}
        kinds = Counter(str(m.get("type") or "other") for m in markets.values() if isinstance(m, dict))
        by_kind = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1]))
        source = "markets_file" if venues[route].markets_file else "exchange"
        count = f"{len(markets)} market{'' if len(markets) == 1 else 's'}"
        return None, f"{count} from the {source} ({by_kind})"

    try:
        for route, outcome in zip(loads, await asyncio.gather(*(load(r) for r in loads)), strict=True):
            results[route] = outcome
    finally:
        await pool.close()  # also stops a load cut off by the timeout
    return results


def _warnings(settings: Settings, host: str | None = None) -> list[str]:
    bind_host = host or settings.server.host
    if bind_host not in LOOPBACK and not settings.server.allowed_clients:
        return [
            f"listening on {bind_host} with no server.allowed_clients: anyone who reaches this address can use "
            "the gateway; list your dockers' networks there or firewall the port"
        ]
    return []


# --- show-config ------------------------------------------------------------------------------
def show_config(settings: Settings, where: str) -> int:
    import yaml

    from gateway import __version__

    print(f"# fmz-gateway {__version__}: the resolved config read from {where}")
    print(f"# defaults filled in, environment overrides applied, secrets shown as {REDACTED}")
    print(yaml.safe_dump(resolved_config(settings), sort_keys=False, allow_unicode=True, width=120), end="")
    return EXIT_OK


def resolved_config(settings: Settings) -> dict[str, Any]:
    """The settings as a config document (every key, defaults included), secrets redacted."""

    def plain(section: Any) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(section).items()}

    exchanges = {}
    for route, venue in settings.exchanges.items():
        exchanges[route] = {
            "ccxt": venue.ccxt_id,
            "sandbox": venue.sandbox,
            "api_base": redact(venue.api_base),
            "markets_file": venue.markets_file,
            "options": redact(venue.options),
            "ccxt_config": redact(venue.ccxt_config),
            "public_cache": venue.public_cache,
            "streams": dict(venue.streams),
        }
    credentials = {}
    for name, alias in settings.credentials.items():
        credentials[name] = {
            "token": REDACTED,
            **{field: REDACTED for field in alias.fields},
            "routes": list(alias.routes),
        }
    return {
        "server": plain(settings.server),
        "allow_any_ccxt_exchange": settings.allow_any_ccxt_exchange,
        "public_cache": dict(settings.public_cache),
        "clients": plain(settings.clients),
        "exchanges": exchanges,
        "credentials": credentials,
    }


def redact(value: Any) -> Any:
    """Credential-looking keys' values and URL user:password parts replaced, recursively."""
    if isinstance(value, dict):
        return {
            key: REDACTED if SECRET_KEY.search(str(key)) and item not in (None, "", [], {}) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return _URL_USERINFO.sub(rf"\1{REDACTED}@", value)
    return value


# --- serve ------------------------------------------------------------------------------------
def serve(
    settings: Settings,
    path: Path | None,
    host: str | None,
    port: int | None,
    file_settings: Settings | None = None,
) -> int:
    """Stop on what `check` reports as fatal (exit 2 or 1), else serve until SIGINT/SIGTERM."""
    import uvicorn

    from gateway.app import create_app
    from gateway.logs import configure_logging, log_startup
    from gateway.reload import Reloader
    from gateway.venues import alias_problems

    problems = alias_problems(settings)
    if problems:
        print(f"config error ({describe(path)}): {'; '.join(problems)}", file=sys.stderr)
        return EXIT_CONFIG
    app = create_app(settings)
    registry = app.gateway.venues  # the routes are checked once, where the gateway will serve them
    if registry.refused and not settings.server.skip_bad_routes:
        for route, exc in sorted(registry.refused.items()):
            print(f"route {route} is refused: {exc}", file=sys.stderr)
        print(
            f"fmz-gateway: {len(registry.refused)} route(s) refused in {describe(path)}: fix them "
            "(`fmz-gateway check` lists them) or set server.skip_bad_routes: true to serve the others",
            file=sys.stderr,
        )
        return EXIT_ROUTES
    configure_logging(settings.server)
    for route, exc in sorted(registry.refused.items()):
        log.error("route %s is refused (server.skip_bad_routes: its calls answer this error): %s", route, exc)
    log_startup(dataclasses.replace(settings, exchanges=registry.configured), path or DEFAULT_CONFIG_PATH, host, port)
    for warning in _warnings(settings, host):
        log.warning(warning)
    gc.freeze()  # ccxt's ~900 modules live as long as the process: keep them out of every collection
    config = uvicorn.Config(
        app,
        host=host or settings.server.host,
        port=settings.server.port if port is None else port,
        log_level=settings.server.log_level,
        log_config=None,  # uvicorn's loggers propagate to ours (gateway/logs.py)
        access_log=False,
        server_header=False,
        proxy_headers=False,  # the docker talks to us directly; X-Forwarded-* would only be spoofable
    )
    server = _server(config, Reloader(app.gateway, path, file_settings))
    with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot listen (the reason is in the log)
        server.run()
    return EXIT_OK if server.started else EXIT_LISTEN


def _server(config: Any, reloader: Any) -> Any:
    """uvicorn's Server, with the SIGHUP reload installed on its own loop before it starts
    serving, and the clients that reloads retired closed once it has stopped."""
    import uvicorn

    class Server(uvicorn.Server):
        async def serve(self, sockets: Any = None) -> None:
            if reloader.install(asyncio.get_running_loop()):
                log.debug("SIGHUP reloads routes and credential aliases (pid %d)", os.getpid())
            try:
                await super().serve(sockets)
            finally:
                await reloader.aclose()

    return Server(config)


if __name__ == "__main__":
    sys.exit(main())
