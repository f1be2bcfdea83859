"""FMZ's two key fields -> ccxt credential fields. The only place that parses them.

`access_key` is ccxt's apiKey. `secret_key` is one of: `secret`; `secret,password`;
`secret,password,uid`; a JSON object of ccxt credential fields; or, when `access_key` names a
configured credential alias, that alias's token (the real keys then stay on the gateway host).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from functools import cached_property

from gateway.errors import GatewayError
from gateway.settings import CCXT_CREDENTIAL_FIELDS, CredentialAlias


class CredentialError(GatewayError):
    kind = "AuthenticationError"


@dataclass(frozen=True)
class Credentials:
    fields: dict[str, str]  # ccxt constructor keys: apiKey, secret, password, uid, ...
    cache_key: str  # sha256 over all fields: the per-key client cache key
    secrets: tuple[str, ...]  # values that must never leave the process

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
SECRET_FIELDS = ("secret", "password", "privateKey", "twofa")
PUBLIC_KEY_FIELDS = ("apiKey", "walletAddress", "login", "uid")  # what names a key; none of them is secret


def parse_credentials(access_key: str, secret_key: str, aliases: dict[str, CredentialAlias], route: str) -> Credentials:
    if not access_key and not secret_key:
        return NO_CREDENTIALS
    alias = aliases.get(access_key)
    if alias is not None:
        return _from_alias(alias, secret_key, route)
    fields = {"apiKey": access_key} if access_key else {}
    fields.update(_secret_fields(secret_key))
    return make_credentials(fields)


def make_credentials(fields: dict[str, str]) -> Credentials:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    secrets = tuple(v for k, v in fields.items() if k in SECRET_FIELDS and v)
    return Credentials(fields, digest, secrets)


def _secret_fields(secret_key: str) -> dict[str, str]:
    if not secret_key:
        return {}
    if secret_key.startswith("{"):
        try:
            doc = json.loads(secret_key)
        except ValueError:
            raise CredentialError("secret_key looks like JSON but does not parse") from None
        if not isinstance(doc, dict):
            raise CredentialError("secret_key JSON must be an object of ccxt credential fields")
        unknown = [k for k in doc if k not in CCXT_CREDENTIAL_FIELDS]
        if unknown:
            raise CredentialError(
                f"secret_key JSON: unknown field {unknown[0][:32]!r} (allowed: {', '.join(CCXT_CREDENTIAL_FIELDS)})"
            )
        if not all(isinstance(v, str) for v in doc.values()):
            raise CredentialError("secret_key JSON: every credential field must be a string")
        return {k: v for k, v in doc.items() if v}
    if "-----BEGIN" in secret_key:  # a PEM private key (binance RSA/Ed25519) contains no commas to split
        return {"secret": secret_key}
    parts = [p.strip() for p in secret_key.split(",")]
    if len(parts) > 3:
        raise CredentialError("secret_key: expected 'secret', 'secret,password' or 'secret,password,uid'")
    names = ("secret", "password", "uid")
    return {name: value for name, value in zip(names, parts, strict=False) if value}


def _from_alias(alias: CredentialAlias, token: str, route: str) -> Credentials:
    if not hmac.compare_digest(alias.token.encode(), token.encode()):
        raise CredentialError(f"credential alias {alias.name!r}: wrong token")
    if alias.routes and route not in alias.routes:
        raise CredentialError(f"credential alias {alias.name!r} is not allowed on route {route!r}")
    creds = make_credentials(dict(alias.fields))
    return Credentials(creds.fields, creds.cache_key, (*creds.secrets, alias.token))
