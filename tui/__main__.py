"""``python -m tui``: the same as ``runner tui``."""

from __future__ import annotations

import sys

from runner.cli.main import cli

if __name__ == "__main__":
    sys.exit(cli(["tui", *sys.argv[1:]], prog_name="python -m tui"))
