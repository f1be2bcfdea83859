"""CLI: `python -m gateway serve|check|exchanges` (also installed as `fmz-gateway`)."""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from gateway.settings import DEFAULT_CONFIG_PATH, Settings, SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fmz-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    check = commands.add_parser("check", help="validate the config and every configured route, then exit")
    for sub in (serve, check):
        sub.add_argument("--config", default=None, help=f"YAML config (default: {DEFAULT_CONFIG_PATH})")
    serve.add_argument("--host", default=None, help="listen address (default: server.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default: server.port, 6666)")
    commands.add_parser("exchanges", help="list the ccxt exchange ids a route may name")
    args = parser.parse_args(argv)

    if args.command == "exchanges":
        import ccxt.async_support as ccxt_async

        print("\n".join(ccxt_async.exchanges))
        return 0
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        return check_routes(settings)
    return serve_forever(settings, args.host, args.port)


def check_routes(settings: Settings) -> int:
    from gateway.errors import GatewayError
    from gateway.venues import VenueRegistry, check_venue

    failures = 0
    for route, venue in VenueRegistry(settings).configured.items():
        try:
            check_venue(venue)
            print(f"ok    {route} -> {venue.ccxt_id}{' (sandbox)' if venue.sandbox else ''}")
        except GatewayError as exc:
            failures += 1
            print(f"FAIL  {route}: {exc}")
    print(f"{len(settings.exchanges)} configured routes, {failures} failing")
    return 1 if failures else 0


def serve_forever(settings: Settings, host: str | None, port: int | None) -> int:
    import uvicorn

    from gateway.app import create_app

    logging.basicConfig(
        level=settings.server.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("ccxt").setLevel(logging.WARNING)
    _warn_about_routes(settings)
    bind_host = host or settings.server.host
    if bind_host not in ("127.0.0.1", "localhost", "::1") and not settings.server.allowed_clients:
        logging.getLogger("gateway").warning(
            "listening on %s with no server.allowed_clients: anyone who reaches this address can use "
            "the gateway; list your dockers' networks there or firewall the port",
            bind_host,
        )
    app = create_app(settings)
    gc.freeze()  # ccxt's ~900 modules live as long as the process: keep them out of every collection
    uvicorn.run(
        app,
        host=bind_host,
        port=settings.server.port if port is None else port,
        log_level=settings.server.log_level,
        access_log=False,
        server_header=False,
        proxy_headers=False,  # the docker talks to us directly; X-Forwarded-* would only be spoofable
    )
    return 0


def _warn_about_routes(settings: Settings) -> None:
    from gateway.errors import GatewayError
    from gateway.venues import VenueRegistry, check_venue

    for route, venue in VenueRegistry(settings).configured.items():
        try:
            check_venue(venue)
        except GatewayError as exc:
            logging.getLogger("gateway").error("route %s is refused: %s", route, exc)


if __name__ == "__main__":
    sys.exit(main())
