"""Rule engine: estimators, the four flags and the gate (pure)."""
