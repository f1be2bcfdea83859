import pytest

from gateway.credentials import CredentialError, parse_credentials
from gateway.settings import CredentialAlias


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
