"""Research: walk-forward parameter search over the backtest engine (`perpbot optimize`).

`space` reads the `[optimize]` section of a config file (what to search and how to score it),
`folds` cuts the data span into walk-forward train/test windows, `data` reads candles and
funding once into columnar arrays and hands out windows of them, `objective` runs one backtest
on a window and scores it, `study` drives Optuna (one study per fold, shared through Optuna's
storage by local worker processes and by workers on other machines), and `report` writes
`study.json` and the in-sample vs out-of-sample report.

Optuna, numpy and pyarrow come from the optional `research` extra; nothing here is imported by
the daemon.
"""
