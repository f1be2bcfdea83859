"""fmz-ccxt-gateway: the FMZ Quant General Protocol for every ccxt exchange."""

__version__ = "0.1.0"
