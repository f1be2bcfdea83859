import pytest

from gateway.settings import Settings, SettingsError, load_settings, parse_settings


def test_shipped_config_loads_with_defaults():
    settings = load_settings("config/gateway.yaml")
    assert settings.server.host == "127.0.0.1" and settings.server.port == 6666
    assert settings.allow_any_ccxt_exchange is True and settings.exchanges == {}


def test_missing_default_file_means_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings() == Settings()
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.yaml")


def test_venue_keys_are_parsed_and_routes_lower_cased():
    settings = parse_settings(
        {
            "exchanges": {
                "OKX-Demo": {
                    "ccxt": "okx",
                    "sandbox": True,
                    "api_base": "http://127.0.0.1:9000/",
                    "options": {"defaultType": "swap"},
                }
            }
        }
    )
    venue = settings.exchanges["okx-demo"]
    assert venue.ccxt_id == "okx" and venue.sandbox is True and venue.api_base == "http://127.0.0.1:9000"
    assert venue.options == {"defaultType": "swap"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"sever": {}}, "sever: unknown key"),
        ({"server": {"port": "6666"}}, "server.port: expected an integer"),
        ({"server": {"port": 70000}}, "server.port: must be"),
        ({"clients": {"idle_ttl": 0}}, "clients.idle_ttl: must be positive"),
        ({"clients": {"max_clients": True}}, "clients.max_clients: expected int, got a boolean"),
        ({"exchanges": {"x": {"sandbox": "yes"}}}, "exchanges.x.sandbox: expected a boolean"),
        ({"exchanges": {"x": {"sandbx": True}}}, "exchanges.x.sandbx: unknown key"),
        ({"exchanges": {"x": {"api_base": "127.0.0.1:80"}}}, "exchanges.x.api_base: expected scheme"),
        ({"exchanges": {"x": {"options": []}}}, "exchanges.x.options: expected a mapping"),
        ({"allow_any_ccxt_exchange": "false"}, "allow_any_ccxt_exchange: expected a boolean"),
        ({"credentials": {"a": {"apiKey": "k"}}}, "credentials.a.token: required"),
        ({"credentials": {"a": {"token": "t"}}}, "credentials.a.apiKey: required"),
        ({"credentials": {"a": {"token": "t", "apiKey": "k", "secret_env": "NO_SUCH_VAR_X"}}}, "NO_SUCH_VAR_X"),
        ([1, 2], "config: expected a mapping"),
    ],
)
def test_bad_config_names_the_key(raw, message):
    with pytest.raises(SettingsError, match=message):
        parse_settings(raw)


def test_credential_alias_reads_env(monkeypatch):
    monkeypatch.setenv("GW_SECRET", "s3cr3t-value")
    settings = parse_settings(
        {"credentials": {"main": {"token": "tok", "apiKey": "key", "secret_env": "GW_SECRET", "routes": ["OKX"]}}}
    )
    alias = settings.credentials["main"]
    assert alias.fields == {"apiKey": "key", "secret": "s3cr3t-value"} and alias.routes == ("okx",)


def test_invalid_yaml_is_a_settings_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("server: [unclosed")
    with pytest.raises(SettingsError, match="invalid YAML"):
        load_settings(path)


def test_allowed_clients_are_validated():
    assert parse_settings({"server": {"allowed_clients": ["10.0.0.0/8", "::1"]}}).server.allowed_clients == (
        "10.0.0.0/8",
        "::1",
    )
    with pytest.raises(SettingsError, match=r"server\.allowed_clients: 'nope' is not an address"):
        parse_settings({"server": {"allowed_clients": ["nope"]}})
    with pytest.raises(SettingsError, match="expected a list of strings"):
        parse_settings({"server": {"allowed_clients": "10.0.0.0/8"}})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"server": {"log_level": "verbose"}}, r"server\.log_level: expected one of debug, info"),
        ({"server": {"log_format": "xml"}}, r"server\.log_format: expected one of text, json"),
        ({"server": {"request_timeout": 0}}, r"server\.request_timeout: must be positive"),
        ({"clients": {"settle_window": -1}}, r"clients\.settle_window: must be positive"),
        ({"public_cache": {"accounts": 1}}, r"public_cache\.accounts: unknown key"),
        ({"public_cache": {"ticker": 600}}, r"public_cache\.ticker: expected seconds between 0 and 60"),
        ({"exchanges": {"x": {"ccxt": "okx", "streams": {"ticker": "yes"}}}}, r"exchanges\.x\.streams\.ticker"),
        ({"exchanges": {"x": {"ccxt": "okx", "streams": {"max_age_ms": 0}}}}, r"streams\.max_age_ms"),
    ],
)
def test_operational_keys_are_validated(raw, message):
    with pytest.raises(SettingsError, match=message):
        parse_settings(raw)


def test_a_route_public_cache_overrides_the_global_one():
    settings = parse_settings(
        {
            "public_cache": {"ticker": 0.1, "depth": 0.2},
            "exchanges": {"own": {"ccxt": "okx", "public_cache": {"ticker": 0.5}}, "plain": {"ccxt": "okx"}},
        }
    )
    assert settings.public_cache_for(settings.exchanges["own"]) == {"ticker": 0.5}
    assert settings.public_cache_for(settings.exchanges["plain"]) == {"ticker": 0.1, "depth": 0.2}
    assert parse_settings({}).public_cache == {}  # off by default
