"""The client pool: markets loaded once and shared by reference, per-key clients cached and closed safely."""

from __future__ import annotations

import asyncio
import json

from gateway.clients import ClientPool
from gateway.credentials import make_credentials
from gateway.settings import ClientSettings
from gateway.venues import Venue, check_markets_file
from tests.conftest import API_KEY, CANARY_SECRET, OTHER_KEY, Fake


def venue_for(fake: Fake, **extra) -> Venue:
    return Venue("binance", "binance", api_base=fake.url, ccxt_config={"enableRateLimit": False}, **extra)


def exchange_info_requests(fake: Fake) -> int:
    return sum(1 for method, path in fake.faults.requests if path == "/api/v3/exchangeInfo")


async def test_markets_load_once_for_concurrent_callers_and_are_shared_by_reference(fake_binance: Fake):
    pool = ClientPool(ClientSettings())
    venue = venue_for(fake_binance)
    before = exchange_info_requests(fake_binance)
    results = await asyncio.gather(*(pool.public(venue) for _ in range(10)))
    assert exchange_info_requests(fake_binance) - before == 1
    public_exchange, index = results[0]
    master = pool.scope_for(venue).master
    assert public_exchange.markets is master.markets and index.markets is master.markets
    first = make_credentials({"apiKey": API_KEY, "secret": CANARY_SECRET})
    second = make_credentials({"apiKey": OTHER_KEY, "secret": "other"})
    async with pool.private(venue, first) as (one, _), pool.private(venue, second) as (two, _):
        assert one is not two
        assert one.markets is master.markets and two.markets is master.markets
        assert one.markets_by_id is master.markets_by_id and one.currencies is master.currencies
        assert one.session is two.session is public_exchange.session  # one shared aiohttp session
    await pool.close()


async def test_same_key_reuses_its_client(fake_binance: Fake):
    pool = ClientPool(ClientSettings())
    venue = venue_for(fake_binance)
    credentials = make_credentials({"apiKey": API_KEY, "secret": CANARY_SECRET})
    async with pool.private(venue, credentials) as (first, _):
        pass
    async with pool.private(venue, credentials) as (second, _):
        assert second is first
    await pool.close()


async def test_lru_eviction_closes_idle_clients_but_never_one_in_flight(fake_binance: Fake):
    pool = ClientPool(ClientSettings(max_clients=2))
    venue = venue_for(fake_binance)
    keys = [make_credentials({"apiKey": f"key-{n}", "secret": "s"}) for n in range(4)]
    async with pool.private(venue, keys[0]) as (busy, _):
        async with pool.private(venue, keys[1]) as (idle, _):
            pass
        async with pool.private(venue, keys[2]):
            pass
        async with pool.private(venue, keys[3]):
            pass
        await asyncio.sleep(0.05)
        assert idle.closed_by_user  # evicted while idle: closed
        assert not busy.closed_by_user  # evicted while its call runs: kept open
        await busy.fetch_ticker("BTC/USDT")  # and still usable by that call
    await asyncio.sleep(0.05)
    assert busy.closed_by_user  # closed once its last call finished
    assert len(pool.private_clients) == 2
    await pool.close()


async def test_idle_clients_expire(fake_binance: Fake):
    pool = ClientPool(ClientSettings(idle_ttl=0.1))
    venue = venue_for(fake_binance)
    async with pool.private(venue, make_credentials({"apiKey": "idle", "secret": "s"})) as (client, _):
        pass
    await asyncio.sleep(0.2)
    pool.private_clients.expire()
    await asyncio.sleep(0.05)
    assert client.closed_by_user and len(pool.private_clients) == 0
    await pool.close()


async def test_markets_file_needs_no_exchange_call(fake_binance: Fake, tmp_path):
    loader = ClientPool(ClientSettings())
    exchange, _ = await loader.public(venue_for(fake_binance))
    path = tmp_path / "markets.json"
    path.write_text(json.dumps(exchange.markets))
    await loader.close()

    pool = ClientPool(ClientSettings())
    before = exchange_info_requests(fake_binance)
    _, index = await pool.public(venue_for(fake_binance, markets_file=str(path)))
    assert exchange_info_requests(fake_binance) == before
    assert index.markets["BTC/USDT"]["id"] == "BTCUSDT"
    await pool.close()


async def test_every_markets_file_form_the_config_check_accepts_loads(fake_binance: Fake, tmp_path):
    """`check` and the loader read a markets_file with one parser (venues.read_markets_file): a
    form that passes the check at startup also loads (a foreign snapshot `format` included)."""
    loader = ClientPool(ClientSettings())
    exchange, _ = await loader.public(venue_for(fake_binance))
    markets = exchange.markets
    await loader.close()
    forms = (markets, list(markets.values()), {"format": 1, "exchange": "binance", "markets": markets})
    for n, form in enumerate(forms):
        path = tmp_path / f"m{n}.json"
        path.write_text(json.dumps(form))
        venue = venue_for(fake_binance, markets_file=str(path))
        assert check_markets_file(venue, "binance") == len(markets)
        pool = ClientPool(ClientSettings())
        _, index = await pool.public(venue)
        assert index.markets["BTC/USDT"]["id"] == "BTCUSDT", n
        await pool.close()


async def test_expired_markets_reload_in_the_background_and_reach_cached_clients(fake_binance: Fake):
    pool = ClientPool(ClientSettings(markets_ttl=0.05))
    venue = venue_for(fake_binance)
    credentials = make_credentials({"apiKey": API_KEY, "secret": CANARY_SECRET})
    async with pool.private(venue, credentials) as (client, first_index):
        old_markets = client.markets
    await asyncio.sleep(0.1)
    scope = pool.scope_for(venue)
    version = scope.version
    await pool.markets(venue)  # expired: starts a reload, answers with the current markets meanwhile
    for _ in range(100):
        if scope.version > version:
            break
        await asyncio.sleep(0.02)
    assert scope.version == version + 1
    async with pool.private(venue, credentials) as (same_client, index):
        assert same_client is client and same_client.markets is scope.master.markets
        assert same_client.markets is not old_markets and index is not first_index
    await pool.close()


async def test_per_key_clients_share_the_venues_static_tables(fake_binance: Fake):
    pool = ClientPool(ClientSettings())
    venue = venue_for(fake_binance)
    public, _ = await pool.public(venue)
    async with pool.private(venue, make_credentials({"apiKey": API_KEY, "secret": CANARY_SECRET})) as (keyed, _):
        assert keyed.api is public.api and keyed.exceptions is public.exceptions
        assert keyed.options is not public.options  # mutable per-key state stays per key
        balance = await keyed.fetch_balance()  # and the client still works
        assert balance["free"]["USDT"] > 0
    await pool.close()


async def test_new_keys_get_prebuilt_spare_clients_with_their_own_keys(fake_binance: Fake):
    fake_binance.add_key("spare-a", "secret-a", "")
    fake_binance.add_key("spare-b", "secret-b", "")
    pool = ClientPool(ClientSettings())
    venue = venue_for(fake_binance)
    async with pool.private(venue, make_credentials({"apiKey": API_KEY, "secret": CANARY_SECRET})):
        pass
    await asyncio.sleep(0)  # the refill runs after the call
    spare = pool._spares["binance"][-1]
    async with pool.private(venue, make_credentials({"apiKey": "spare-a", "secret": "secret-a"})) as (a, _):
        assert a is spare and a.apiKey == "spare-a" and a.secret == "secret-a"
        fake_binance.engine.account("spare-a").balances["USDT"][0] -= 1  # tell the accounts apart
        assert (await a.fetch_balance())["free"]["USDT"] == 99999
    await asyncio.sleep(0)
    async with pool.private(venue, make_credentials({"apiKey": "spare-b", "secret": "secret-b"})) as (b, _):
        assert b is not a and b.apiKey == "spare-b"
        assert (await b.fetch_balance())["free"]["USDT"] == 100000
    await pool.close()


async def test_a_failed_first_markets_load_is_not_retried_on_every_call(fake_binance: Fake):
    from gateway.errors import GatewayError
    from tests.fakes.server import Fault

    pool = ClientPool(ClientSettings())
    venue = Venue("binance-down", "binance", api_base=fake_binance.url, ccxt_config={"enableRateLimit": False})
    fake_binance.faults.inject(Fault(status=503, body=b"down", content_type="text/plain"), "/api/v3/exchangeInfo")
    before = exchange_info_requests(fake_binance)
    errors = []
    for _ in range(5):
        try:
            await pool.public(venue)
        except Exception as exc:
            errors.append(exc)
    assert len(errors) == 5 and not isinstance(errors[0], GatewayError)  # the exchange's own error first
    assert all(isinstance(e, GatewayError) and "not available yet" in str(e) for e in errors[1:])
    assert exchange_info_requests(fake_binance) - before == 1
    scope = pool.scope_for(venue)
    scope._first_load_failure = (0.0, "old")  # the cool-down has passed: the next call loads again
    _, index = await pool.public(venue)
    assert "BTC/USDT" in index.markets
    await pool.close()
