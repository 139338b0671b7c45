"""News flag sources: event calendar, RSS/Atom feeds, operator flags (pure board, IO at the edge)."""
