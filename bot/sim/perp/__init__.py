"""The simulated dYdX perp exchange's parts: records, state, validation, matching, blocks."""
