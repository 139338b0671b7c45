"""Planners (pure) and the order manager (the only module that calls a venue)."""
