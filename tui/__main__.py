"""``python -m tui``: the same as ``runner tui``."""

from __future__ import annotations

import sys

from runner.cli.app import app

if __name__ == "__main__":
    sys.exit(app(["tui", *sys.argv[1:]], prog_name="python -m tui"))
