"""The FMZ General Protocol envelope: parse a request, read its params, build replies.

Input is hostile until parsed: the body must be a JSON object with string `access_key`,
`secret_key` and `method`, an object (or absent) `params`; anything else is a `BadRequest`
naming the field. Numeric params are accepted as JSON numbers or ASCII decimal strings, never
guessed: a wrong guess on an order trades real money.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from gateway.errors import BadRequest

DECIMAL_STRING = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
METHOD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_API_PATH = 512


@dataclass
class Envelope:
    access_key: str
    secret_key: str
    method: str  # lower-cased, except the path part of `__api_<path>`
    params: dict[str, Any]
    nonce: int | None = None
    http_method: str = "GET"  # from the Http-Method header; used by __api_ calls
    extra: dict[str, Any] = field(default_factory=dict)  # top-level keys beyond the standard five

    @property
    def api_path(self) -> str | None:
        """`/api/v3/account` for method `__api_/api/v3/account`, else None."""
        return self.method[len("__api_") :] if self.method.startswith("__api_") else None


def parse_envelope(body: bytes, http_method_header: str | None = None) -> Envelope:
    if not body or not body.strip():
        raise BadRequest("empty request body: expected a JSON object {access_key, secret_key, method, params}")
    try:
        doc = orjson.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadRequest(f"request body must be a JSON object, got {_json_type(doc)}")
    method = doc.get("method")
    if not isinstance(method, str) or not method:
        raise BadRequest("field 'method' is required and must be a non-empty string")
    if method.lower().startswith("__api_"):
        path = method[len("__api_") :]
        if not path or len(path) > MAX_API_PATH or any(c.isspace() or ord(c) < 32 for c in path):
            raise BadRequest("field 'method': __api_ needs a path such as __api_/api/v3/account")
        method = "__api_" + path
    elif not METHOD_NAME.match(method):
        raise BadRequest(f"field 'method': unknown method {method[:64]!r}")
    else:
        method = method.lower()
    access_key = _string_field(doc, "access_key")
    secret_key = _string_field(doc, "secret_key")
    params = doc.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise BadRequest(f"field 'params' must be a JSON object, got {_json_type(params)}")
    nonce = doc.get("nonce")
    if nonce is not None and (isinstance(nonce, bool) or not isinstance(nonce, int | str)):
        raise BadRequest("field 'nonce' must be an integer")
    verb = (http_method_header or "GET").strip().upper()
    if verb not in ("GET", "POST", "PUT", "DELETE", "PATCH"):
        raise BadRequest(f"Http-Method header: unsupported verb {verb[:16]!r}")
    extra = {k: v for k, v in doc.items() if k not in ("access_key", "secret_key", "method", "params", "nonce")}
    return Envelope(access_key, secret_key, method, params, _nonce(nonce), verb, extra)


def _string_field(doc: dict, name: str) -> str:
    value = doc.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"field '{name}' must be a string")
    return value.strip()


def _nonce(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if value.isdigit():
        return int(value)
    raise BadRequest("field 'nonce' must be an integer")


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


# --- params ------------------------------------------------------------------------


def decimal_param(params: dict, name: str, *, required: bool = True, default: Decimal | None = None) -> Decimal | None:
    """A JSON number or an ASCII decimal string; booleans, null, '', NaN and Infinity are errors."""
    if name not in params:
        if required:
            raise BadRequest(f"param '{name}' is required")
        return default
    value = params[name]
    if isinstance(value, bool) or value is None:
        raise BadRequest(f"param '{name}' must be a number, got {json.dumps(value)}")
    if isinstance(value, int):
        return _in_range(name, Decimal(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadRequest(f"param '{name}' must be a finite number")
        return _in_range(name, Decimal(repr(value)))
    if isinstance(value, str) and value.isascii() and DECIMAL_STRING.match(value.strip()):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise BadRequest(f"param '{name}' is not a number: {value[:32]!r}") from None
        if number.is_finite():
            return _in_range(name, number)
    raise BadRequest(f"param '{name}' must be a number, got {json.dumps(value)[:40]}")


def _in_range(name: str, number: Decimal) -> Decimal:
    """No price, amount, limit or time needs more than 30 digits either side of the point."""
    if number and not -30 <= number.adjusted() <= 30:
        raise BadRequest(f"param '{name}' is out of range: {number:.3e}")
    return number


def int_param(params: dict, name: str, *, required: bool = False, default: int | None = None) -> int | None:
    number = decimal_param(params, name, required=required, default=None)
    if number is None:
        return default
    if number != number.to_integral_value():
        raise BadRequest(f"param '{name}' must be a whole number, got {number}")
    if abs(number) > 2**63:
        raise BadRequest(f"param '{name}' is out of range")
    return int(number)


def str_param(params: dict, name: str, *, required: bool = True) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest(f"param '{name}' is required")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRequest(f"param '{name}' must be a string")
    return str(value).strip()


# --- replies ---------------------------------------------------------------------------


def success_body(data: Any, raw: Any) -> dict[str, Any]:
    return {"data": data, "raw": raw}


def error_body(message: str) -> dict[str, str]:
    return {"error": message}
