"""HelpScreen: every key, in one place (``?``)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Submitting", (
        ("type/paste, Enter", "queue every valid URL (spaces or newlines between them); invalid ones stay in the input with their reason"),
        ("i", "go to the URL input"),
        ("↓ / Tab", "from the input to the grid"),
    )),
    ("Grid", (
        ("↑ ↓ j k", "move the cursor"),
        ("PgUp PgDn Space", "page up / down"),
        ("Home End g G", "first / last row"),
        ("Enter", "details of the row: timings, redirects, TLS, headers, error"),
        ("p", "pause / resume live refresh"),
    )),
    ("Filter and sort (done in the database)", (
        ("/", "filter by text in the URL (Enter applies, Esc leaves)"),
        ("f", "failed only, on / off"),
        ("o", "only one outcome…"),
        ("b", "only one batch…"),
        ("s", "sort: newest, oldest, slowest, status code, last checked"),
        ("x", "clear every filter"),
    )),
    ("Actions (grid and details)", (
        ("r", "re-test the row"),
        ("R", "re-test every failed row in the current view"),
        ("c", "copy the URL to the clipboard"),
        ("e", "export the current view to CSV or JSON"),
    )),
    ("Everywhere", (
        ("?", "this help"),
        ("Ctrl+P", "command palette: every action by name"),
        ("Esc", "back / close"),
        ("Ctrl+Q", "quit"),
    )),
)


def help_text() -> Text:
    text = Text()
    for n, (title, keys) in enumerate(KEYS):
        if n:
            text.append("\n")
        text.append(title + "\n", "bold underline")
        for key, what in keys:
            text.append(f"  {key:<18}", "bold")
            text.append(what + "\n")
    return text


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(Text("urltester — keys", "bold"), id="help-title")
            yield Static(help_text())
            yield Static(Text("Esc closes", "dim"))
