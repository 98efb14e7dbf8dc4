"""``runner limits set|list|clear``: per-host overrides of the fleet-wide host limits.

Stored in the database, so every worker reads them (within a few seconds) without a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from runner.cli.common import EXIT_FAILED, EXIT_USAGE, fail, handled
from runner.text import printable

if TYPE_CHECKING:
    from db import Store

limits_app = typer.Typer(
    help="Per-host limits kept by the whole fleet: checks per second and at once for a host "
    "(or *.example.com: it and every name under it). Defaults: URLTESTER_HOST_RATE, "
    "URLTESTER_HOST_CONNECTIONS (or runner start --host-rate/--host-connections).",
    no_args_is_help=True,
)


def _store(ctx: typer.Context) -> Store:  # db imported late
    from db import open_store

    return open_store(ctx.obj.database_url, max_connections=1)


def _shown(value: float | int | None, unit: str) -> str:
    if value is None:
        return "default"
    return "unlimited" if value == 0 else f"{value:g} {unit}"


@limits_app.command("set")
@handled
def set_(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="Host name, or *.example.com for it and every name under it.")],
    rate: Annotated[float | None, typer.Option("--rate", min=0,
                                               help="Checks per second for this host, fleet-wide (0: unlimited).",
                                               show_default=False)] = None,
    connections: Annotated[int | None, typer.Option("--connections", min=0,
                                                    help="Checks at once for this host, fleet-wide (0: unlimited).",
                                                    show_default=False)] = None,
) -> None:
    """Set a host's limits; an option left out keeps the default."""
    from db import HostLimit
    from runner.jobs.pacing import host_pattern

    if rate is None and connections is None:
        raise fail("give --rate and/or --connections (0 lifts a default for this host)", EXIT_USAGE)
    pattern = host_pattern(host)
    store = _store(ctx)
    try:
        store.limits.set_limit(HostLimit(pattern, rate, connections))
    finally:
        store.close()
    typer.echo(f"{printable(pattern)}: rate {_shown(rate, 'checks/s')}, connections {_shown(connections, 'at once')}")


@limits_app.command("list")
@handled
def list_(ctx: typer.Context) -> None:
    """The defaults, the overrides, and the hosts paused by a Retry-After now."""
    settings = ctx.obj
    store = _store(ctx)
    try:
        overrides = store.limits.limits()
        pauses = store.limits.pauses()
    finally:
        store.close()
    typer.echo(f"default   rate {_shown(settings.host_rate or 0, 'checks/s')}, "
               f"connections {_shown(settings.host_connections or 0, 'at once')} (this shell's settings)")
    for o in overrides:
        typer.echo(f"{printable(o.pattern)}  rate {_shown(o.rate, 'checks/s')}, "
                   f"connections {_shown(o.connections, 'at once')}")
    for host, left in sorted(pauses.items()):
        typer.echo(f"paused    {printable(host)} for {left:.0f} s more (Retry-After)")


@limits_app.command("clear")
@handled
def clear(ctx: typer.Context,
          host: Annotated[str, typer.Argument(help="The host or *.domain given to `runner limits set`.")]) -> None:
    """Remove a host's override: the defaults apply to it again."""
    from runner.jobs.pacing import host_pattern

    pattern = host_pattern(host)
    store = _store(ctx)
    try:
        removed = store.limits.clear_limit(pattern)
    finally:
        store.close()
    if not removed:
        raise fail(f"no limits are set for {printable(pattern)} (see `runner limits list`)", EXIT_FAILED)
    typer.echo(f"{printable(pattern)}: limits cleared; the defaults apply")
