"""Logging: one line per FMZ call, text or JSON (`server.log_format`), never a secret.

- `gateway.access`: every read, at DEBUG when it succeeds.
- `gateway.audit`: every call that changes something on the exchange (trade, cancel, leverage,
  a raw `__api_` call with a verb other than GET), at INFO, with what was asked (symbol, type,
  amount, price, order id) and what was answered (the order id, or the error).
- Failures of either at WARNING; a crash (a bug of ours) at ERROR with its traceback.

A call line reads, in text: `call rid=… route=binance method=ticker symbol=BTC_USDT key=1f0c2b9d7a
nonce=… outcome=ok ms=1.21 upstream_ms=0.87`; in JSON, the same fields as keys of one object. `key`
is the API key's own short fingerprint (gateway/credentials.py `key_id`), never anything of the
secret; every value taken from the request is scrubbed of the caller's secrets first.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from gateway import __version__
from gateway.errors import scrub

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_PLAIN = re.compile(r"^[\w.,:/@+\-*#]+$")


def configure_logging(server: Any, stream: IO[str] | None = None) -> logging.Handler:
    """Root logging for `server.log_level` and `server.log_format` (text | json). Idempotent.

    uvicorn's own loggers propagate here (run it with `log_config=None`), so its lines share
    the format; ccxt's (whole signed requests at DEBUG) are kept at WARNING."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_fmz_gateway", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._fmz_gateway = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if server.log_format == "json" else TextFormatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(server.log_level.upper())
    logging.getLogger("ccxt").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler


class TextFormatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        return scrub(super().formatException(ei))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, then the record's fields (or its message)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        else:
            doc["msg"] = record.getMessage()
        if record.exc_info:
            doc["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(doc, default=str, ensure_ascii=False)


def line(event: str, fields: dict[str, Any]) -> str:
    """`event k=v k=v`: values with spaces, quotes or control characters JSON-quoted."""
    return event + " " + " ".join(f"{key}={_value(value)}" for key, value in fields.items())


def _value(value: Any) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else str(value)
    return text if _PLAIN.match(text) else json.dumps(text)


def emit(logger: logging.Logger, level: int, event: str, fields: dict[str, Any]) -> None:
    """One structured line: the text for text logs, the fields (plus `event`) for JSON logs."""
    logger.log(level, _Line(event, fields), extra={"fields": {"event": event, **fields}})


class _Line:
    """A record's message, `line(event, fields)`, built when a handler first formats it: JSON logs
    read the record's fields and never need the text."""

    __slots__ = ("_event", "_fields", "_text")

    def __init__(self, event: str, fields: dict[str, Any]) -> None:
        self._event, self._fields, self._text = event, fields, None

    def __str__(self) -> str:
        if self._text is None:
            self._text = line(self._event, self._fields)
        return self._text


def log_startup(
    settings: Any, config_path: str | Path | None, host: str | None = None, port: int | None = None
) -> None:
    """The startup line: version, config file, listen address, routes."""
    import ccxt

    routes = []
    for name, venue in sorted(settings.exchanges.items()):
        detail = venue.ccxt_id + (", sandbox" if venue.sandbox else "")
        routes.append(name if detail == name else f"{name} ({detail})")
    if config_path is not None and Path(config_path).exists():
        config = str(config_path)
    else:
        config = f"{config_path} (absent: defaults)" if config_path is not None else "none (defaults)"
    fields = {
        "version": __version__,
        "ccxt": ccxt.__version__,
        "python": sys.version.split()[0],
        "config": config,
        "listen": f"{host or settings.server.host}:{settings.server.port if port is None else port}",
        "routes": ", ".join(routes) or "none configured",
        "any_ccxt_exchange": settings.allow_any_ccxt_exchange,
        "log_format": settings.server.log_format,
        "endpoints": "POST /<route>, GET /, /healthz, /metrics, /status",
    }
    emit(logging.getLogger("gateway"), logging.INFO, "startup", fields)
