"""Banner: one clear line when the database or the broker is unreachable.

It hides itself when every service answers again; the app keeps running meanwhile.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from runner.text import printable


class Banner(Static):
    """Shows the problems currently known, one per service."""

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__("", id=id)
        self.problems: dict[str, str] = {}
        self.display = False

    def set_problem(self, service: str, message: str | None) -> None:
        """Record (or clear, with None) the problem of one service, e.g. "database"."""
        if message is None:
            if self.problems.pop(service, None) is None:
                return
        else:
            if self.problems.get(service) == message:
                return
            self.problems[service] = message
        self._show()

    def _show(self) -> None:
        self.display = bool(self.problems)
        text = Text()
        for n, (service, message) in enumerate(sorted(self.problems.items())):
            if n:
                text.append("\n")
            text.append(f"⚠ {service.capitalize()} unreachable: ", "bold")
            text.append(printable(message, 300))
            text.append(" — retrying by itself.")
        self.update(text)
