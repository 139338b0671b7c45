"""`python -m bot` is `perpbot run`."""

from bot.cli import main

if __name__ == "__main__":
    main(["run"])
