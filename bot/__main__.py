"""`python -m bot [ARGS]` is `perpbot [ARGS]`; with no arguments it is `perpbot run`."""

import sys

from bot.cli import main

if __name__ == "__main__":
    main(sys.argv[1:] or ["run"])
