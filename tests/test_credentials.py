import json
import socket
from collections.abc import Iterator

import ccxt.async_support as ccxt_async
import httpx
import pytest

from gateway.app import create_app
from gateway.credentials import (
    CredentialError,
    credential_form,
    credential_forms,
    parse_credentials,
    require_credentials,
)
from gateway.errors import MissingCredentials
from gateway.settings import CredentialAlias, parse_settings
from tests.conftest import CANARY_SECRET, OKX_SECRET_KEY, Fake, GatewayClient
from tests.fakes.server import BackgroundServer


def test_plain_secret():
    creds = parse_credentials("key", "sec", {}, "binance")
    assert creds.fields == {"apiKey": "key", "secret": "sec"} and creds.secrets == ("sec",)


def test_secret_password_uid_forms():
    assert parse_credentials("k", "s,pass", {}, "okx").fields == {"apiKey": "k", "secret": "s", "password": "pass"}
    assert parse_credentials("k", "s,p,u1", {}, "x").fields == {
        "apiKey": "k",
        "secret": "s",
        "password": "p",
        "uid": "u1",
    }
    with pytest.raises(CredentialError):
        parse_credentials("k", "a,b,c,d", {}, "x")


def test_json_object_form():
    creds = parse_credentials("k", '{"secret": "s", "password": "p", "walletAddress": "0xabc"}', {}, "x")
    assert creds.fields == {"apiKey": "k", "secret": "s", "password": "p", "walletAddress": "0xabc"}
    with pytest.raises(CredentialError, match="unknown field 'nope'"):
        parse_credentials("k", '{"nope": "1"}', {}, "x")
    with pytest.raises(CredentialError, match="does not parse"):
        parse_credentials("k", "{broken", {}, "x")


def test_cache_key_differs_per_secret_and_never_contains_it():
    a = parse_credentials("k", "secret-a", {}, "x")
    b = parse_credentials("k", "secret-b", {}, "x")
    assert a.cache_key != b.cache_key and "secret" not in a.cache_key


def test_key_id_names_the_api_key_not_its_secret():
    import hashlib

    a = parse_credentials("k", "secret-a", {}, "x")
    b = parse_credentials("k", "secret-b", {}, "x")
    assert a.key_id == b.key_id == hashlib.sha256(b"k").hexdigest()[:10]
    assert parse_credentials("other", "secret-a", {}, "x").key_id != a.key_id
    assert parse_credentials("", "", {}, "x").key_id == "-"


def test_empty_keys_mean_no_credentials():
    assert parse_credentials("", "", {}, "x").empty


def test_alias_unlocks_real_keys_with_its_token_only():
    aliases = {"main": CredentialAlias("main", "tok-123", {"apiKey": "real", "secret": "real-secret"}, ("okx",))}
    creds = parse_credentials("main", "tok-123", aliases, "okx")
    assert creds.fields == {"apiKey": "real", "secret": "real-secret"}
    assert "tok-123" in creds.secrets and "real-secret" in creds.secrets
    with pytest.raises(CredentialError, match="wrong token"):
        parse_credentials("main", "tok-124", aliases, "okx")
    with pytest.raises(CredentialError, match="not allowed on route 'binance'"):
        parse_credentials("main", "tok-123", aliases, "binance")


# --- forms per exchange class (ccxt's requiredCredentials) -----------------------------------------

ALL_EXCHANGES = sorted(ccxt_async.exchanges)


def required_by_ccxt(exchange_id: str) -> set[str]:
    return {f for f, needed in getattr(ccxt_async, exchange_id)({}).requiredCredentials.items() if needed}


def test_okx_kucoin_bitget_take_the_passphrase_second():
    for exchange_id in ("okx", "kucoin", "bitget"):
        creds = parse_credentials("k", "s3cret,pass phrase", {}, exchange_id)
        assert creds.fields == {"apiKey": "k", "secret": "s3cret", "password": "pass phrase"}
        require_credentials(creds, exchange_id)
    assert credential_forms("okx")["secret_key_example"] == "<secret>,<passphrase>"


def test_hyperliquid_takes_the_wallet_as_access_key_and_the_private_key_as_secret_key():
    wallet, private_key = "0x" + "ab" * 20, "0x" + "cd" * 32
    creds = parse_credentials(wallet, private_key, {}, "hyperliquid")
    assert creds.fields == {"walletAddress": wallet, "privateKey": private_key}
    assert creds.secrets == (private_key,)
    require_credentials(creds, "hyperliquid")
    both = parse_credentials("", json.dumps({"walletAddress": wallet, "privateKey": private_key}), {}, "hyperliquid")
    assert both.fields == creds.fields and both.cache_key == creds.cache_key
    form = credential_forms("hyperliquid")
    assert form["access_key"] == "walletAddress" and form["secret_key"] == ["privateKey"]
    assert json.loads(form["json_example"]) == {
        "walletAddress": "<wallet address 0x...>",
        "privateKey": "<private key>",
    }


def test_other_forms_follow_the_class():
    assert parse_credentials("k", "s,u-7", {}, "coinmate").fields == {"apiKey": "k", "secret": "s", "uid": "u-7"}
    assert parse_credentials("merchant", "pay", {}, "cryptomus").fields == {"uid": "merchant", "secret": "pay"}
    assert parse_credentials("k", "pk,42", {}, "hibachi").fields == {
        "apiKey": "k",
        "privateKey": "pk",
        "accountId": "42",
    }
    pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI,,\n-----END PRIVATE KEY-----"
    assert parse_credentials("k", pem, {}, "revolutx").fields == {"apiKey": "k", "privateKey": pem}
    assert parse_credentials("k", pem, {}, "binance").fields == {"apiKey": "k", "secret": pem}
    # classic tail still parses where the class needs only secret/password/uid
    assert parse_credentials("k", "s,p", {}, "binance").fields == {"apiKey": "k", "secret": "s", "password": "p"}


def test_too_many_values_name_the_form_and_never_the_values():
    with pytest.raises(CredentialError) as refused:
        parse_credentials("0xwallet", "0xPRIVATE-kkkk,extra-SECRETvalue", {}, "hyperliquid")
    message = str(refused.value)
    assert "<private key>" in message and "hyperliquid takes at most 1" in message
    assert "PRIVATE-kkkk" not in message and "SECRETvalue" not in message and "0xwallet" not in message


def test_a_missing_passphrase_is_named_with_the_form_to_type():
    creds = parse_credentials("k", "the-SECRET-value", {}, "okx")
    with pytest.raises(MissingCredentials) as refused:
        require_credentials(creds, "okx")
    message = str(refused.value)
    assert refused.value.kind == "AuthenticationError"
    assert "okx requires password (the API passphrase)" in message and "<secret>,<passphrase>" in message
    assert "the-SECRET-value" not in message


def test_a_missing_wallet_address_or_private_key_is_named():
    only_key = parse_credentials("", '{"privateKey": "0xPRIVATE"}', {}, "hyperliquid")
    with pytest.raises(MissingCredentials, match=r"hyperliquid requires walletAddress \(the wallet address\)"):
        require_credentials(only_key, "hyperliquid")
    only_wallet = parse_credentials("0xwallet", "", {}, "hyperliquid")
    with pytest.raises(MissingCredentials, match=r"requires privateKey \(the private key\).*Secret Key: <private key>"):
        require_credentials(only_wallet, "hyperliquid")


def test_an_alias_missing_a_field_points_at_the_config():
    aliases = {"desk": CredentialAlias("desk", "tok-1", {"apiKey": "real", "secret": "real-secret"}, ())}
    creds = parse_credentials("desk", "tok-1", aliases, "okx")
    with pytest.raises(MissingCredentials, match=r"credential alias 'desk' has no password .*credentials\.desk"):
        require_credentials(creds, "okx")


def complete_keys(exchange_id: str) -> tuple[str, str, dict[str, str]]:
    """Access Key and Secret Key as an FMZ user types them from the form, and the values used."""
    form = credential_form(exchange_id)
    values = {f: f"{f}-value-{n}" for n, f in enumerate(form.required)}
    access = values.get(form.access_key, "any-label")
    secret = ",".join(values[f] for f in form.secret_key if f in form.required)
    return access, secret, values


def test_every_exchange_class_has_a_form_and_a_complete_set_passes():
    for exchange_id in ALL_EXCHANGES:
        form = credential_forms(exchange_id)
        needed = required_by_ccxt(exchange_id)
        assert set(form["required"]) == needed, exchange_id
        assert set(form["required"]) <= {form["access_key"], *form["secret_key"]}, exchange_id
        assert form["how_to_write"], exchange_id

        access, secret, values = complete_keys(exchange_id)
        creds = parse_credentials(access, secret, {}, exchange_id)
        require_credentials(creds, exchange_id)
        assert all(creds.fields[f] == values[f] for f in needed), exchange_id
        client = getattr(ccxt_async, exchange_id)(dict(creds.fields))
        assert client.check_required_credentials(False), exchange_id  # ccxt agrees nothing is missing

        as_json = parse_credentials("", json.dumps(values), {}, exchange_id)
        require_credentials(as_json, exchange_id)


def test_every_exchange_class_names_each_missing_field():
    for exchange_id in ALL_EXCHANGES:
        _, _, values = complete_keys(exchange_id)
        for field in values:
            partial = {f: v for f, v in values.items() if f != field}
            creds = parse_credentials("", json.dumps(partial), {}, exchange_id) if partial else None
            if creds is None or creds.empty:
                continue  # nothing typed at all: dispatch answers "needs access_key and secret_key"
            with pytest.raises(MissingCredentials) as refused:
                require_credentials(creds, exchange_id)
            assert f"requires {field}" in str(refused.value), exchange_id
            assert not any(v in str(refused.value) for v in partial.values()), exchange_id


# --- over HTTP: refused before anything is sent ----------------------------------------------------


def okx_requests(fake: Fake) -> int:
    return len(fake.faults.requests)


def test_okx_without_a_passphrase_is_refused_naming_it(gateway: GatewayClient, fake_okx: Fake):
    before = okx_requests(fake_okx)
    reply = gateway.call("okx", "accounts", secret_key=CANARY_SECRET)
    assert reply["error"].startswith("AuthenticationError: okx requires password (the API passphrase)")
    assert "Secret Key: <secret>,<passphrase>" in reply["error"] and CANARY_SECRET not in reply["error"]
    assert okx_requests(fake_okx) == before  # nothing reached the exchange
    assert "error" not in gateway.call("okx", "accounts", secret_key=OKX_SECRET_KEY)  # the same key, completed


@pytest.fixture(scope="module")
def offline_gateway() -> Iterator[GatewayClient]:
    """A gateway whose hyperliquid route points at a closed loopback port: nothing can leave."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    fast = {"enableRateLimit": False, "timeout": 2000}
    exchanges = {"hyperliquid": {"ccxt": "hyperliquid", "api_base": closed, "ccxt_config": fast}}
    settings = parse_settings({"allow_any_ccxt_exchange": False, "exchanges": exchanges})
    server = BackgroundServer(create_app(settings)).start()
    with httpx.Client(timeout=30) as http:
        yield GatewayClient(server.url, http)
    server.stop()


def test_hyperliquid_without_wallet_or_private_key_is_refused_naming_them(offline_gateway: GatewayClient):
    private_key = "0x" + "5e" * 32
    reply = offline_gateway.call(
        "hyperliquid", "accounts", access_key="", secret_key=json.dumps({"privateKey": private_key})
    )
    assert reply["error"].startswith("AuthenticationError: hyperliquid requires walletAddress (the wallet address)")
    assert "Access Key: <wallet address 0x...>" in reply["error"] and private_key not in reply["error"]

    wallet = "0x" + "ab" * 20
    reply = offline_gateway.call("hyperliquid", "positions", access_key=wallet, secret_key="")
    assert reply["error"].startswith("AuthenticationError: hyperliquid requires privateKey (the private key)")
    assert '{"walletAddress": "<wallet address 0x...>", "privateKey": "<private key>"}' in reply["error"]


def test_hyperliquid_wallet_and_private_key_pass_to_the_exchange(offline_gateway: GatewayClient):
    reply = offline_gateway.call("hyperliquid", "accounts", access_key="0x" + "ab" * 20, secret_key="0x" + "5e" * 32)
    assert reply["error"].startswith(("NetworkError", "ExchangeNotAvailable", "MarketsUnavailable")), reply
