"""Targets and sizing (pure)."""
