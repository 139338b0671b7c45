"""The simulated Binance-style spot venue: records, matching and the exchange core."""
