"""Benchmark of the gateway against direct ccxt on the fake Binance: `scripts/bench` (`python -m bench.run`)."""
