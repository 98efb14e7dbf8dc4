"""``runner dead list|show|requeue|purge``: the dead-letter queue, read and replayed.

A message lands in ``<queue>.dead`` when it can never be checked as it is: not JSON, not a
task message, too large, a call that crashed (our reason, in ``x-urltester-reason``), or one
RabbitMQ gave up on after its delivery limit (``x-death``). Each is named by a short id
(the start of its body's sha256) that stays the same from ``list`` to ``requeue``.

Bodies and headers are shown with passwords in URLs masked and control characters escaped.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runner.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail, handled, plural
from runner.jobs.settings import Settings
from runner.text import mask_url, printable

if TYPE_CHECKING:  # imported where used: kombu would slow every `runner` start and completion
    from runner.taskq.broker import AmqpBroker
    from runner.taskq.dead import DeadLetter

dead_app = typer.Typer(help="The dead-letter queue: messages that could not be checked, with the reason for each.",
                       no_args_is_help=True)

_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@\"']*:)[^@\s/\"']*@")
SHOW_LIMIT = 20_000  # characters of a body `show` prints


def _broker(settings: Settings) -> AmqpBroker:
    if settings.immediate:
        raise fail("runner dead needs RabbitMQ: the in-memory broker (memory://) keeps no dead letters. "
                   "Set URLTESTER_BROKER_URL=amqp://USER:PASSWORD@HOST:5672// (or --broker-url)", EXIT_USAGE)
    from runner.taskq.broker import AmqpBroker

    return AmqpBroker.from_url(settings.broker_url, settings.queue)


def masked(text: str) -> str:
    """Every ``scheme://user:password@`` in ``text`` with the password as ``***``."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def calls_of(body: bytes) -> list[dict[str, Any]] | None:
    """The calls a body carries ({task, job, url} for checks), or None when it is no task
    message at all (which is often why it is here)."""
    from runner.taskq.app import PoisonMessage, decode

    try:
        calls = decode(body)
    except PoisonMessage:
        return None
    out = []
    for call in calls:
        entry: dict[str, Any] = {"task": call.task, "call": call.id}
        if call.task == "check" and len(call.args) >= 2:  # runner.jobs.tasks.CHECK_TASK(job_id, url, options)
            entry["job"] = call.args[0]
            entry["url"] = mask_url(str(call.args[1]))
        out.append(entry)
    return out


def summary(body: bytes, width: int = 60) -> str:
    calls = calls_of(body)
    if calls is None:
        return f"({len(body):,} bytes, not a task message)"
    if not calls:
        return "(no calls)"
    first = calls[0]
    text = f"job {first['job']} {first['url']}" if "job" in first else f"{first['task']} call {first['call']}"
    if len(calls) > 1:
        text += f" (+{len(calls) - 1} more call{plural(len(calls) - 1)})"
    return printable(text, width)


def document(letter: DeadLetter, *, body: bool) -> dict[str, Any]:
    """One dead letter as JSON (stable keys; passwords masked)."""
    doc: dict[str, Any] = {"id": letter.id, "reason": masked(letter.reason), "bytes": len(letter.body),
                           "content_type": letter.content_type, "calls": calls_of(letter.body)}
    if body:
        doc["headers"] = {k: masked(_plain(v)) for k, v in sorted(letter.headers.items())}
        doc["body"] = masked(letter.body.decode("utf-8", "replace"))
    return doc


def _plain(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else json.dumps(value, default=str)


IdsArg = Annotated[list[str] | None, typer.Argument(help="Ids from `runner dead list`.", show_default=False)]
AllOpt = Annotated[bool, typer.Option("--all", help="Every message in the dead-letter queue.")]


def _ids_or_all(ids: list[str] | None, everything: bool, verb: str) -> list[str] | None:
    if everything and ids:
        raise fail(f"runner dead {verb}: give ids or --all, not both", EXIT_USAGE)
    if not everything and not ids:
        raise fail(f"runner dead {verb}: name the messages (ids from `runner dead list`) or give --all", EXIT_USAGE)
    return None if everything else ids


@dead_app.command("list")
@handled
def list_(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000,
                                       help="Show at most this many, oldest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per message per line.")] = False,
) -> None:
    """List dead-lettered messages with the reason for each (they stay in the queue)."""
    from runner.taskq.dead import dead_letters

    broker = _broker(ctx.obj)
    depth = broker.ping()
    letters = dead_letters(broker, limit=limit)
    if as_json:
        for letter in letters:
            typer.echo(json.dumps(document(letter, body=False)))
        return
    shown = f"; the first {len(letters)}" if len(letters) < depth.dead else ""
    typer.echo(f"{depth.dead:,} dead-lettered message{plural(depth.dead)} in {printable(ctx.obj.queue)}.dead{shown}")
    for letter in letters:
        typer.echo(f"{letter.id}  {summary(letter.body)}")
        typer.echo(f"              reason: {printable(masked(letter.reason), 200)}")


@dead_app.command("show")
@handled
def show(
    ctx: typer.Context,
    message_id: Annotated[str, typer.Argument(metavar="ID", help="An id from `runner dead list`.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, with headers and body.")] = False,
) -> None:
    """Show one dead-lettered message: reason, headers, calls and body (it stays in the queue)."""
    from runner.taskq.dead import dead_letters

    broker = _broker(ctx.obj)
    letters = [x for x in dead_letters(broker, limit=10_000) if x.id == message_id.lower()]
    if not letters:
        raise fail(f"no dead-lettered message with id {printable(message_id)!r} (see `runner dead list`)", EXIT_FAILED)
    letter = letters[0]
    if as_json:
        typer.echo(json.dumps(document(letter, body=True)))
        return
    doc = document(letter, body=True)
    typer.echo(f"id            {letter.id}" + (f"  ({len(letters)} copies)" if len(letters) > 1 else ""))
    typer.echo(f"reason        {printable(doc['reason'])}")
    typer.echo(f"size          {len(letter.body):,} bytes, {printable(letter.content_type)}")
    for call in doc["calls"] or []:
        typer.echo("call          " + printable(" ".join(f"{k}={v}" for k, v in call.items())))
    typer.echo("headers")
    for key, val in doc["headers"].items():
        typer.echo(f"  {printable(key)}: {printable(val, 500)}")
    typer.echo("body")
    text = doc["body"]
    try:
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        pass
    for line in text[:SHOW_LIMIT].splitlines():
        typer.echo("  " + printable(line))
    if len(text) > SHOW_LIMIT:
        typer.echo(f"  … ({len(text) - SHOW_LIMIT:,} more characters: `runner dead show {letter.id} --json`)")


@dead_app.command("requeue")
@handled
def requeue(ctx: typer.Context, ids: IdsArg = None, everything: AllOpt = False) -> None:
    """Publish dead-lettered messages to the work queue again (after fixing their cause).

    A replayed check finds any result already stored and makes no second one.
    """
    from runner.taskq.dead import requeue_dead

    wanted = _ids_or_all(ids, everything, "requeue")
    done = requeue_dead(_broker(ctx.obj), wanted)
    typer.echo(f"re-published {len(done)} message{plural(len(done))} to {printable(ctx.obj.queue)}")
    raise typer.Exit(_missing(wanted, done))


@dead_app.command("purge")
@handled
def purge(ctx: typer.Context, ids: IdsArg = None, everything: AllOpt = False) -> None:
    """Delete dead-lettered messages for good."""
    from runner.taskq.dead import drop_dead

    wanted = _ids_or_all(ids, everything, "purge")
    done = drop_dead(_broker(ctx.obj), wanted)
    typer.echo(f"deleted {len(done)} dead-lettered message{plural(len(done))}")
    raise typer.Exit(_missing(wanted, done))


def _missing(wanted: list[str] | None, done: list[DeadLetter]) -> int:
    """Exit 1, naming them, when some ids given were not in the dead-letter queue."""
    missing = sorted({i.lower() for i in wanted or ()} - {letter.id for letter in done})
    if missing:
        typer.echo(f"runner: not in the dead-letter queue: {printable(', '.join(missing), 300)} "
                   "(see `runner dead list`)", err=True)
        return EXIT_FAILED
    return EXIT_OK
