"""Simulated markets: seeded price, book, flow, oracle, funding and block models."""
