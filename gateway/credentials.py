"""FMZ's two key fields -> ccxt credential fields. The only place that parses them.

What the fields hold follows ccxt's `requiredCredentials` of the route's exchange class
(`credential_form`), so an FMZ user types what the exchange gave them:

- **Access Key** is the public half: `apiKey` where the class needs one; else the wallet address
  (`walletAddress`: hyperliquid, paradex, derive, nado) or the merchant uid (`uid`: cryptomus);
  otherwise it is passed as `apiKey` (the class does not need it; any label will do).
- **Secret Key** is the secret half, one of:
  - the class's required secret fields joined by commas, in this order: secret, privateKey,
    password (the API passphrase), uid, accountId, login, twofa, token, e.g. `<secret>` (binance),
    `<secret>,<passphrase>` (okx, kucoin, bitget), `<secret>,<uid>` (coinmate),
    `<private key>` (hyperliquid, with the wallet address as Access Key),
    `<private key>,<account id>` (hibachi). Classes that need only secret/password/uid also
    accept the old `secret,password,uid` tail (binance `secret,password` still parses);
  - a PEM private key, whole (it fills the first field: binance RSA/Ed25519 `secret`,
    revolutx `privateKey`);
  - a JSON object of ccxt credential fields, e.g. `{"privateKey": "0x...", "walletAddress":
    "0x..."}`; its fields win over Access Key;
  - or, when Access Key names a configured credential alias, that alias's token (the real keys
    then stay on the gateway host).

A private call whose credentials lack a field the class requires is refused before anything is
sent (`require_credentials`, kind AuthenticationError), naming the field and how to write it;
no message ever repeats a credential value.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any

import ccxt.async_support as ccxt_async

from gateway.errors import GatewayError, MissingCredentials
from gateway.settings import CCXT_CREDENTIAL_FIELDS, CredentialAlias


class CredentialError(GatewayError):
    kind = "AuthenticationError"


@dataclass(frozen=True)
class Credentials:
    fields: dict[str, str]  # ccxt constructor keys: apiKey, secret, password, uid, ...
    cache_key: str  # sha256 over all fields: the per-key client cache key
    secrets: tuple[str, ...]  # values that must never leave the process
    alias: str = ""  # the credential alias they came from, if any

    @cached_property
    def key_id(self) -> str:
        """The API key's own short fingerprint, for logs and /status: a hash of the public access key
        (apiKey; else the wallet address, login or uid an exchange uses instead), never of a secret.
        Find a key's id with `printf %s "$API_KEY" | sha256sum | cut -c1-10`."""
        public = next((self.fields[f] for f in PUBLIC_KEY_FIELDS if self.fields.get(f)), None)
        return hashlib.sha256(public.encode()).hexdigest()[:10] if public else "-"

    @property
    def empty(self) -> bool:
        return not self.fields


NO_CREDENTIALS = Credentials({}, "", ())
SECRET_FIELDS = ("secret", "password", "privateKey", "twofa", "token")
PUBLIC_KEY_FIELDS = ("apiKey", "walletAddress", "login", "uid")  # what names a key; none of them is secret
# Every credential field a ccxt client takes (ccxt's own list) and the gateway's.
ALL_FIELDS = tuple(dict.fromkeys((*CCXT_CREDENTIAL_FIELDS, *ccxt_async.Exchange.requiredCredentials)))
ACCESS_KEY_FIELDS = ("apiKey", "walletAddress", "uid")  # what Access Key fills, the first one the class needs
SECRET_KEY_ORDER = ("secret", "privateKey", "password", "uid", "accountId", "login", "twofa", "token", "walletAddress")
CLASSIC_FIELDS = ("secret", "password", "uid")  # the form before per-class forms; still accepted where it fits
PLACEHOLDERS = {
    "apiKey": "<api key>",
    "secret": "<secret>",
    "password": "<passphrase>",
    "uid": "<uid>",
    "privateKey": "<private key>",
    "walletAddress": "<wallet address 0x...>",
    "accountId": "<account id>",
    "login": "<login>",
    "twofa": "<2FA secret>",
    "token": "<token>",
}
MEANINGS = {"password": "the API passphrase", "privateKey": "the private key", "walletAddress": "the wallet address"}


@dataclass(frozen=True)
class CredentialForm:
    """How FMZ's Access Key and Secret Key map onto one exchange class's ccxt credentials."""

    exchange: str
    required: tuple[str, ...]  # ccxt's requiredCredentials: the Access Key field, then SECRET_KEY_ORDER
    access_key: str  # the field Access Key fills
    secret_key: tuple[str, ...]  # the fields of the comma form of Secret Key, in order

    @property
    def secret_key_example(self) -> str:
        """The comma form with the required fields only ('' when the class needs no secret)."""
        return ",".join(_placeholder(f) for f in self.secret_key if f in self.required)

    @property
    def json_example(self) -> str:
        return json.dumps({f: _placeholder(f) for f in self.required if f != "apiKey"})

    def how_to_write(self) -> str:
        access = _placeholder(self.access_key) if self.access_key in self.required else "any label (not needed)"
        if not self.secret_key_example:
            return f"Access Key: {access}; Secret Key: not needed"
        return f"Access Key: {access}; Secret Key: {self.secret_key_example} (or the JSON object {self.json_example})"

    def describe(self) -> dict[str, Any]:
        return {
            "exchange": self.exchange,
            "required": list(self.required),
            "access_key": self.access_key,
            "secret_key": list(self.secret_key),
            "secret_key_example": self.secret_key_example,
            "json_example": self.json_example,
            "how_to_write": self.how_to_write(),
        }


def _placeholder(field: str) -> str:
    return PLACEHOLDERS.get(field, f"<{field}>")


GENERIC_FORM = CredentialForm("exchange", ("apiKey", "secret"), "apiKey", CLASSIC_FIELDS)


@cache
def credential_form(exchange_id: str) -> CredentialForm:
    """The form for a ccxt exchange id; the classic apiKey + `secret,password,uid` for anything else."""
    exchange_class = getattr(ccxt_async, exchange_id, None) if exchange_id in ccxt_async.exchanges else None
    if exchange_class is None:
        return GENERIC_FORM
    declared = exchange_class({}).requiredCredentials  # ccxt merges each class's describe() here
    needed = {field for field, is_required in declared.items() if is_required}
    access = next((f for f in ACCESS_KEY_FIELDS if f in needed), "apiKey")
    secret = tuple(f for f in SECRET_KEY_ORDER if f in needed and f != access)
    secret += tuple(f for f in sorted(needed - set(SECRET_KEY_ORDER) - {access}))  # a field ccxt adds later
    if set(secret) <= set(CLASSIC_FIELDS):
        secret += tuple(f for f in CLASSIC_FIELDS if f not in secret and f != access)
    required = tuple(f for f in (access, *SECRET_KEY_ORDER) if f in needed)
    required += tuple(sorted(needed - set(required)))
    return CredentialForm(exchange_id, required, access, secret)


def credential_forms(exchange_id: str) -> dict[str, Any]:
    """For the capability report: the credentials a ccxt exchange needs and how to type them in FMZ.

    `{"exchange", "required", "access_key", "secret_key", "secret_key_example", "json_example",
    "how_to_write"}`."""
    return credential_form(exchange_id).describe()


def require_credentials(credentials: Credentials, exchange_id: str) -> None:
    """Refuse, before anything is sent, credentials that lack a field the exchange class requires."""
    form = credential_form(exchange_id)
    missing = [field for field in form.required if not credentials.fields.get(field)]
    if not missing:
        return
    named = ", ".join(f"{f} ({MEANINGS[f]})" if f in MEANINGS else f for f in missing)
    if credentials.alias:
        raise MissingCredentials(
            f"{exchange_id} requires {named}: credential alias {credentials.alias!r} has no "
            f"{' / '.join(missing)} (add it, or its *_env, under credentials.{credentials.alias})"
        )
    raise MissingCredentials(f"{exchange_id} requires {named}; write the keys as {form.how_to_write()}")


def parse_credentials(
    access_key: str,
    secret_key: str,
    aliases: dict[str, CredentialAlias],
    route: str,
    exchange_id: str | None = None,
) -> Credentials:
    """FMZ's key fields for a route of the ccxt class `exchange_id` (default: the route, when it
    is a ccxt id; else the classic apiKey + `secret,password,uid` form)."""
    if not access_key and not secret_key:
        return NO_CREDENTIALS
    alias = aliases.get(access_key)
    if alias is not None:
        return _from_alias(alias, secret_key, route)
    form = credential_form(exchange_id or route)
    fields = {form.access_key: access_key} if access_key else {}
    fields.update(_secret_fields(secret_key, form))
    return make_credentials(fields)


def make_credentials(fields: dict[str, str]) -> Credentials:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    secrets = tuple(v for k, v in fields.items() if k in SECRET_FIELDS and v)
    return Credentials(fields, digest, secrets)


def _secret_fields(secret_key: str, form: CredentialForm) -> dict[str, str]:
    if not secret_key:
        return {}
    if secret_key.startswith("{"):
        try:
            doc = json.loads(secret_key)
        except ValueError:
            raise CredentialError("secret_key looks like JSON but does not parse") from None
        if not isinstance(doc, dict):
            raise CredentialError("secret_key JSON must be an object of ccxt credential fields")
        unknown = [k for k in doc if k not in ALL_FIELDS]
        if unknown:
            raise CredentialError(
                f"secret_key JSON: unknown field {unknown[0][:32]!r} (allowed: {', '.join(ALL_FIELDS)})"
            )
        if not all(isinstance(v, str) for v in doc.values()):
            raise CredentialError("secret_key JSON: every credential field must be a string")
        return {k: v for k, v in doc.items() if v}
    names = form.secret_key or ("secret",)
    if "-----BEGIN" in secret_key:  # a PEM private key contains no commas to split
        return {names[0]: secret_key}
    parts = [p.strip() for p in secret_key.split(",")]
    if len(parts) > len(names):
        raise CredentialError(
            f"secret_key: {len(parts)} comma-separated values, {form.exchange} takes at most {len(names)} "
            f"({','.join(_placeholder(n) for n in names)}); write the keys as {form.how_to_write()}"
        )
    return {name: value for name, value in zip(names, parts, strict=False) if value}


def _from_alias(alias: CredentialAlias, token: str, route: str) -> Credentials:
    if not hmac.compare_digest(alias.token.encode(), token.encode()):
        raise CredentialError(f"credential alias {alias.name!r}: wrong token")
    if alias.routes and route not in alias.routes:
        raise CredentialError(f"credential alias {alias.name!r} is not allowed on route {route!r}")
    creds = make_credentials(dict(alias.fields))
    return Credentials(creds.fields, creds.cache_key, (*creds.secrets, alias.token), alias.name)
