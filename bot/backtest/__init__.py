"""Backtests and stress tests on the live engine in simulated time.

`runner.Backtest` wires the exact daemon pieces (Engine, OrderManager, PaperVenue fills, the
Store, sleeves, planner) to a time-ordered event source (`sources`: the seeded simulator, OHLCV
candles + funding CSVs, or a recording) through composable stress scenarios (`scenarios`), on a
simulated clock (`clock.SimClock`): no sockets, no wall clock, same inputs -> same summary bytes.
`report` turns a run directory into report.html, PNG charts and summary.json; `recording`
captures market events as gzip JSON lines that `sources.recording_source` replays.
"""
