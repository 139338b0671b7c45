"""Venue adapters: each translates one venue to domain types behind the ports."""
