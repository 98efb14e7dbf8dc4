"""``runner token create|list|revoke``: who may call the HTTP API (``runner serve``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from db import Store, open_store
from runner.cli.common import EXIT_FAILED, EXIT_USAGE, fail, handled
from runner.jobs.report import iso
from runner.text import printable

token_app = typer.Typer(help="API tokens for `runner serve`: only their sha256 is stored.", no_args_is_help=True)


@contextmanager
def _store(ctx: typer.Context) -> Iterator[Store]:
    store = open_store(ctx.obj.database_url, max_connections=1)  # tokens need no broker
    try:
        yield store
    finally:
        store.close()


@token_app.command("create")
@handled
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who or what the token is for (unique among active tokens).")],
    read_only: Annotated[bool, typer.Option("--read-only", help="May read jobs and events, not add jobs.")] = False,
) -> None:
    """Make a token and print it once (it cannot be shown again: only its hash is kept)."""
    from db.tokens import TokenNameTaken
    from runner.jobs import tokens

    with _store(ctx) as store:
        try:
            _, token = tokens.create(store, name, read_only=read_only)
        except TokenNameTaken as exc:
            raise fail(str(exc), EXIT_USAGE) from None
    typer.echo(token)
    typer.echo(f"runner: token {name!r} created{' (read-only)' if read_only else ''}; "
               "it is shown only this once", err=True)


@token_app.command("list")
@handled
def list_(
    ctx: typer.Context,
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked tokens.")] = False,
) -> None:
    """Tokens by name, access and age (never the tokens themselves)."""
    from runner.jobs import tokens

    with _store(ctx) as store:
        rows = tokens.list_tokens(store, include_revoked=revoked)
    typer.echo(f"{'NAME':<24} {'ACCESS':<10} {'CREATED':<25} REVOKED")
    for t in rows:
        typer.echo(f"{printable(t.name, 24):<24} {'read-only' if t.read_only else 'read-write':<10} "
                   f"{iso(t.created_at):<25} {iso(t.revoked_at) or ''}")


@token_app.command("revoke")
@handled
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The token's name.")],
) -> None:
    """Revoke a token: the next request that uses it gets 401."""
    from runner.jobs import tokens

    with _store(ctx) as store:
        if not tokens.revoke_token(store, name):
            raise fail(f"no active token named {printable(name)!r}", EXIT_FAILED)
    typer.echo(f"revoked {printable(name)}")
