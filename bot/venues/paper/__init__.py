"""Paper trading venue: fills orders against a real or simulated book and trade stream."""
