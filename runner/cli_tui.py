"""``runner tui``: the operator's terminal UI (registered on the main app)."""

from __future__ import annotations

import typer

from .cli import app, handled


@app.command()
@handled
def tui(ctx: typer.Context) -> None:
    """Open the full-screen terminal UI: type URLs, watch results arrive."""
    raise typer.Exit(2)  # replaced by the TUI (issue 4)
