"""Watchdog: chain, indexer, feed and bridge health -> risk mode."""
