"""``runner tui``: the operator's terminal UI (registered on the main app)."""

from __future__ import annotations

import typer

from runner.cli.common import handled, runtime_for, tell_alerts


@handled
def tui(ctx: typer.Context) -> None:
    """Open the full-screen terminal UI: type URLs, watch results arrive."""
    from tui.app import UrlTesterApp

    with runtime_for(ctx) as rt:
        sender = None
        if rt.settings.immediate:
            # The embedded default: the checks run in this process and no `runner start` runs,
            # so this process delivers the alerts they queue, while the TUI is open and (what is
            # left, 10 s at most) when it closes.
            import os
            import socket

            from runner.jobs.alerts import start_sender

            sender = start_sender(rt.store, rt.settings, worker=f"tui@{socket.gethostname()}:{os.getpid()}")
        try:
            UrlTesterApp(rt).run()
        finally:
            if sender is not None:
                sender.stop(timeout=2)
        tell_alerts(rt, "tui")
