"""How a worker logs: for a terminal, for journald, or as JSON lines for a log shipper.

- ``text``: ``time LEVEL process[pid] logger: message``, for a terminal or a file.
- ``journal``: ``<N>process[pid] logger: message``, where ``<N>`` is the syslog level
  (sd-daemon(3)): journald reads the prefix as the entry's priority, so
  ``journalctl -p warning`` works, and adds its own timestamp (so the line has none).
- ``json``: one object a line: ``ts`` (ISO 8601 UTC), ``level``, ``logger``, ``process``,
  ``pid``, ``message`` and ``exc`` when there is a traceback. Nine lines of
  :func:`json.dumps`, so no dependency; json.dumps also escapes every control character,
  so a hostile server's text cannot forge a line.
- ``auto`` (the default): ``journal`` when stderr is the journal stream systemd named in
  ``$JOURNAL_STREAM`` (its device and inode match, as systemd.exec(5) says to check),
  otherwise ``text``.

Also here: :func:`install_stack_dumps`, so ``kill -USR1`` (``systemctl kill -s USR1``)
prints every thread's stack of every process to stderr without stopping anything, and a
watchdog's SIGABRT prints them before the process dies.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import sys
from datetime import UTC, datetime

from runner.text import printable

TEXT_FORMAT = "%(asctime)s %(levelname)s %(processName)s[%(process)d] %(name)s: %(message)s"
JOURNAL_FORMAT = "%(processName)s[%(process)d] %(name)s: %(message)s"
SYSLOG_LEVELS = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def syslog_level(levelno: int) -> int:
    for threshold, priority in sorted(SYSLOG_LEVELS.items(), reverse=True):
        if levelno >= threshold:
            return priority
    return 7


class PrintableFormatter(logging.Formatter):
    """Log lines quote strangers' text (dead-letter reasons, a task's exception, URLs): the
    message is made printable, so no log line carries a raw terminal escape. Tracebacks
    (``log.exception``) are the formatter's own and keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = printable(record.message)
        return super().formatMessage(record)


class JournalFormatter(PrintableFormatter):
    """``<N>`` first, on every line of the record (a traceback's lines too), no timestamp."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_level(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(), "logger": record.name, "process": record.processName,
            "pid": record.process, "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)  # ASCII: C1 controls (\x9b) escaped too, not only C0


def under_journal(stream: object = None) -> bool:
    """Is ``stream`` (default stderr) the journal stream systemd connected this process to?"""
    value = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())  # type: ignore[union-attr]  # any stream: AttributeError below
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def resolve(fmt: str) -> str:
    """``auto`` made concrete (in the supervisor, then handed to its worker processes)."""
    if fmt == "auto":
        return "journal" if under_journal() else "text"
    return fmt


def configure_logging(level: str, fmt: str = "auto") -> None:
    formatter: logging.Formatter
    kind = resolve(fmt)
    if kind == "journal":
        formatter = JournalFormatter()
    elif kind == "json":
        formatter = JsonFormatter()
    else:
        formatter = PrintableFormatter(TEXT_FORMAT)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # Hostile servers make urllib3 warn about every malformed header; the result says it once.
    logging.getLogger("urllib3").setLevel(logging.ERROR)


def install_stack_dumps() -> None:
    """Every thread's stack to stderr on SIGUSR1 (the process carries on), and on a fatal
    signal: SIGABRT is what systemd sends when the watchdog runs out, so the journal then
    shows where the process was stuck. faulthandler writes from the signal handler itself,
    so it works even when the GIL is held by a stuck thread."""
    faulthandler.enable(file=sys.stderr, all_threads=True)
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True, chain=False)
