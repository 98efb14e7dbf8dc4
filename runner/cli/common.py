"""What every ``runner`` command shares: exit codes, error mapping, the Runtime, options.

Each command is a few lines that call the library and turn a known error into one clear
line and an exit code (:func:`handled`). Exit codes: 0 success; 1 some input rejected or
some check failed; 2 usage or configuration error; 3 database or broker unreachable.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Annotated, Any, overload

import typer

from db import STATES, StoreConfigError, StoreError, StoreUnavailable
from runner.check.options import DEFAULT_OPTIONS
from runner.errors import BrokerError, ConfigError, InvalidInput, UnsentJobs
from runner.jobs.report import OUTCOMES
from runner.text import printable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


def fail(message: str, code: int) -> typer.Exit:
    # Error texts quote file names, settings and servers' words: never raw escapes.
    typer.echo(f"runner: {printable(message)}", err=True)
    return typer.Exit(code)


def handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Known errors become one line on stderr and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, StoreConfigError) as exc:
            raise fail(str(exc), EXIT_USAGE) from None
        except InvalidInput as exc:
            raise fail(str(exc), EXIT_USAGE) from None
        except StoreUnavailable as exc:
            if exc.refused:  # the server is up and said no: the settings need fixing
                raise fail(f"database refused the connection: {exc}", EXIT_USAGE) from None
            raise fail(f"database unreachable: {exc}", EXIT_UNAVAILABLE) from None
        except UnsentJobs as exc:
            raise fail(f"{exc}; {exc.recorded} job(s) recorded, those not confirmed are kept unsent: "
                       "`runner requeue --stale 0s` sends them once RabbitMQ is back", EXIT_UNAVAILABLE) from None
        except BrokerError as exc:
            raise fail(str(exc), EXIT_UNAVAILABLE) from None
        except StoreError as exc:
            raise fail(f"database error: {exc}", EXIT_UNAVAILABLE) from None

    return wrapper



@contextmanager
def runtime_for(ctx: typer.Context, **kwargs: Any) -> Iterator[Any]:
    from runner.jobs.runtime import Runtime

    rt = Runtime(ctx.obj, **kwargs)
    try:
        yield rt
    finally:
        rt.close()


# ---------------------------------------------------------------------------- choices
# Enums, so that typer completes them and names the choices in its own error. States and
# outcomes are the one list of each (db.STATES; runner.jobs.report.OUTCOMES, a check's and
# no_worker: report imports nothing heavy at the top); the formats are spelled out, because
# their modules' imports would slow every completion (tests/test_cli_habits.py checks them).


class Method(StrEnum):
    GET = "GET"
    HEAD = "HEAD"


State = StrEnum("State", {s: s for s in STATES})  # type: ignore[misc]  # members from the one list


Outcome = StrEnum("Outcome", {o: o for o in OUTCOMES})  # type: ignore[misc]  # a job's outcomes, from the one list


class ResultsFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    junit = "junit"


class ImportFormat(StrEnum):
    text = "text"
    csv = "csv"
    jsonl = "jsonl"
    sitemap = "sitemap"
    html = "html"
    markdown = "markdown"


class FailOn(StrEnum):
    any = "any"
    new = "new"


FailOnOpt = Annotated[FailOn, typer.Option("--fail-on",
                                           help="With --wait: exit 1 when any check failed (any), or only when the "
                                                "batch brought a new failure (new: a URL ok before, failing now).")]


def tell_alerts(rt: Any, command: str) -> None:
    """The embedded default runs checks in this process and no ``runner start``: deliver the
    alerts they queued before the command exits (10 s at most), saying on stderr what is
    left in the outbox. With a broker, the workers' senders deliver: nothing to do here."""
    if not rt.settings.immediate:
        return
    import os
    import socket

    from runner.jobs.alerts import deliver_before_exit

    try:
        left = deliver_before_exit(rt.store, rt.settings, worker=f"{command}@{socket.gethostname()}:{os.getpid()}")
    except StoreError as exc:
        left = [f"alerts not delivered: {exc}; they stay in the outbox"]
    for line in left:
        typer.echo(f"runner: {printable(line, 500)}", err=True)


def new_failures(store: Any, batch_id: int) -> int:
    """How many URLs of the batch failed that were ok before it (``--fail-on new``)."""
    from runner.jobs.history import compare_batch

    return compare_batch(store, batch_id).new_failures


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def value(choice: Enum | None) -> Any:
    """The plain value of a choice (None stays None)."""
    return None if choice is None else choice.value


# ---------------------------------------------------------------------------- check options

_D = DEFAULT_OPTIONS  # the defaults live in CheckOptions; the help reads them there

MethodOpt = Annotated[Method | None, typer.Option("--method", case_sensitive=False,
                                                  help=f"HTTP method (default {_D.method}).",
                                                  rich_help_panel="Check options")]
ExpectOpt = Annotated[str | None, typer.Option("--expect-status",
                                               help="Accepted status codes, e.g. 200-299,304 (default "
                                                    f"{_D.expect_status}).", rich_help_panel="Check options")]
ContainsOpt = Annotated[str | None, typer.Option("--body-contains", help="The body must contain this text.",
                                                 rich_help_panel="Check options")]
ExcludesOpt = Annotated[str | None, typer.Option("--body-excludes", help="The body must not contain this text.",
                                                 rich_help_panel="Check options")]
MaxMsOpt = Annotated[float | None, typer.Option("--max-ms", help="Fail when the total time exceeds this many ms.",
                                                rich_help_panel="Check options")]
DeadlineOpt = Annotated[float | None, typer.Option("--deadline",
                                                   help="Total seconds a check may take, retries included (default "
                                                        f"{_D.deadline:g}).", rich_help_panel="Check options")]
RedirectsOpt = Annotated[int | None, typer.Option("--max-redirects",
                                                  help=f"Redirects to follow (default {_D.max_redirects}; 0 = don't "
                                                       "follow).", rich_help_panel="Check options")]
InsecureOpt = Annotated[bool, typer.Option("--insecure", help="Don't verify TLS certificates.",
                                           rich_help_panel="Check options")]
MaxBytesOpt = Annotated[int | None, typer.Option("--max-bytes",
                                                 help=f"Read at most this many body bytes (default {_D.max_bytes:,}).",
                                                 rich_help_panel="Check options")]
HeaderOpt = Annotated[list[str] | None, typer.Option("--header",
                                                     help="Extra request header 'Name: value' (repeatable).",
                                                     rich_help_panel="Check options")]
RetriesOpt = Annotated[int | None, typer.Option("--retries",
                                                help=f"Attempts in total for transient failures (default "
                                                     f"{_D.retries}).", rich_help_panel="Check options")]
SlowMsOpt = Annotated[float | None, typer.Option("--slow-ms",
                                                 help="A check that passes but takes longer than this many ms makes "
                                                      "its URL's state slow (not failing).",
                                                 rich_help_panel="URL state")]
FailAfterOpt = Annotated[int | None, typer.Option("--fail-after", metavar="N",
                                                  help="Consecutive failed checks before the URL's state is failing "
                                                       f"(default {_D.fail_after}).", rich_help_panel="URL state")]
RecoverAfterOpt = Annotated[int | None, typer.Option("--recover-after", metavar="N",
                                                     help="Consecutive passed checks before a failing URL recovers "
                                                          f"(default {_D.recover_after}).",
                                                     rich_help_panel="URL state")]
ConditionOpt = Annotated[list[str] | None, typer.Option("--condition",
                                                        help="Assertion such as 'total_ms < 500' (repeatable).",
                                                        rich_help_panel="Check options")]

RegionsOpt = Annotated[str | None, typer.Option("--regions",
                                                help="Regions that check each URL, e.g. eu-west,us-east, or 'all' "
                                                     "(every region with a live worker). Default: the default region "
                                                     "only.", rich_help_panel="Regions", show_default=False)]
QuorumOpt = Annotated[str | None, typer.Option("--quorum",
                                               help="Regions that must be ok for the job to be ok: any, all, majority "
                                                    "or a number (default majority).", rich_help_panel="Regions",
                                               show_default=False)]
NoWorkerAfterOpt = Annotated[float | None, typer.Option("--no-worker-after", envvar="URLTESTER_NO_WORKER_AFTER",
                                                        min=0.1,
                                                        help="Seconds after which a named region with no live worker "
                                                             "is reported no_worker (default 60).",
                                                                 rich_help_panel="Regions", show_default=False)]


# The check options' flags, defined once: ``submit`` and ``import`` both take them through
# :func:`with_check_options` (written out in each, they had drifted: import lacked --retries).
CHECK_FLAGS: dict[str, Any] = {
    "method": MethodOpt, "expect_status": ExpectOpt, "body_contains": ContainsOpt, "body_excludes": ExcludesOpt,
    "max_ms": MaxMsOpt, "deadline": DeadlineOpt, "max_redirects": RedirectsOpt, "insecure": InsecureOpt,
    "max_bytes": MaxBytesOpt, "header": HeaderOpt, "condition": ConditionOpt, "retries": RetriesOpt,
    "slow_ms": SlowMsOpt, "fail_after": FailAfterOpt, "recover_after": RecoverAfterOpt,
}


def check_options(**flags: Any) -> Any:
    """The per-job options from CLI flags (:data:`CHECK_FLAGS`), validated now (never at
    check time). A flag not given (None, False, an empty list) leaves the option's default."""
    from runner.check.options import parse_options

    raw = {name: value(flag) if isinstance(flag, Enum) else flag for name, flag in flags.items()}
    # Not `flag not in (None, False, [])`: 0 == False, and --max-redirects 0 means "don't follow".
    return parse_options({name: flag for name,
                          flag in raw.items() if not (flag is None or flag is False or flag == [])})


def with_check_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command``'s parameter ``options`` becomes the check options' flags (:data:`CHECK_FLAGS`),
    in its place for ``--help``; the command is called with them as one validated
    :class:`~runner.check.options.CheckOptions` (an OptionError is the usual one line, exit 2,
    under :func:`handled`)."""
    signature = inspect.signature(command, eval_str=True)  # typer reads a __signature__ as it is
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        if param.name != "options":
            params.append(param)
            continue
        params.extend(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=flag,
                                        default=False if name == "insecure" else None)
                      for name, flag in CHECK_FLAGS.items())

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name) for name in CHECK_FLAGS if name in kwargs}
        return command(*args, options=check_options(**flags), **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]  # typer reads a function's __signature__
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


def parse_since(text: str) -> datetime:
    """``30m``, ``2h``, ``7d`` (ago) or an ISO 8601 time."""
    from runner.jobs.when import parse_since as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@overload
def parse_age(text: str) -> timedelta: ...
@overload
def parse_age(text: str, *, strict: bool) -> timedelta | None: ...
def parse_age(text: str, *, strict: bool = True) -> timedelta | None:
    from runner.jobs.when import parse_age as parse

    try:
        age = parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if age is None and strict:
        raise typer.BadParameter(f"{text!r} is not an age such as 90s, 30m, 2h, 7d or 2w")
    return age


def split_networks(values: list[str] | None) -> list[str]:
    """``--allow-network`` values, each of which may be a comma-separated list (as the
    variable is): ``10.0.0.0/8,192.168.0.0/16``."""
    return [n.strip() for v in values or () for n in v.split(",") if n.strip()]


def plural(n: int) -> str:
    return "" if n == 1 else "s"
