"""Binance spot: the hedge venue (market data over the diff-depth stream, HMAC-signed REST orders)."""
