"""The in-process simulated venue (market data from bot.sim)."""
