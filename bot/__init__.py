"""perpbot: a trading daemon for perpetual futures on L2 DEXs."""

__version__ = "0.1.0"
