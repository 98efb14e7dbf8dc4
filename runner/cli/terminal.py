"""``runner tui``: the operator's terminal UI (registered on the main app)."""

from __future__ import annotations

import typer

from runner.cli.common import handled, runtime_for


@handled
def tui(ctx: typer.Context) -> None:
    """Open the full-screen terminal UI: type URLs, watch results arrive."""
    from tui.app import UrlTesterApp

    with runtime_for(ctx) as rt:
        UrlTesterApp(rt).run()
