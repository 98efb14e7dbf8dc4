"""HelpScreen: every key, in one place (F1, or ``?`` in the grid), made from the bindings themselves.

Each section lists one owner's ``BINDINGS`` (the input, the grid, the details, the app), with
the keys as the footer shows them and the binding's tooltip as its description: a key added,
moved or renamed in a ``BINDINGS`` list is in the help at once, and no list here can drift.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

if TYPE_CHECKING:
    from textual.app import App

Section = tuple[str, list[tuple[str, str]]]  # title, (keys, what they do)


def binding_rows(app: App[Any], bindings: list[BindingType]) -> list[tuple[str, str]]:
    """(keys, description) per binding: ``up,k`` shows as ``↑ k``, in the app's key display."""
    rows = []
    for item in bindings:
        binding = item if isinstance(item, Binding) else Binding(*item)  # BINDINGS may hold tuples
        keys = " ".join(app.get_key_display(replace(binding, key=key.strip())) for key in binding.key.split(","))
        rows.append((keys, binding.tooltip or binding.description))
    return rows


def help_sections(app: App[Any]) -> list[Section]:
    from .detail import DetailScreen
    from .grid import JobGrid
    from .url_input import UrlInput

    palette = Binding(app.COMMAND_PALETTE_BINDING, "command_palette", "Palette",
                      tooltip="command palette: every action by name")
    return [
        ("URL input", binding_rows(app, UrlInput.BINDINGS)),
        ("Grid", binding_rows(app, JobGrid.BINDINGS)),
        ("Details (Enter on a row)", binding_rows(app, DetailScreen.BINDINGS)),
        ("Everywhere (filters and sorts run in the database)",
         binding_rows(app, [*type(app).BINDINGS, palette])),
    ]


def help_text(sections: list[Section]) -> Content:
    """The sections as one piece of plain text (what the screen shows, for tests and copying)."""
    lines = []
    for title, rows in sections:
        lines.append(title)
        lines.extend(f"  {keys}  {what}" for keys, what in rows)
    return Content("\n".join(lines))


class HelpScreen(ModalScreen[None]):
    """One row per binding: the keys in a column of their own, the description wrapping
    beside them (styles in app.tcss, from the theme)."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "app.pop_screen", "Close")]

    def __init__(self, sections: list[Section]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(Content.styled("urltester — keys", "bold"), id="help-title")
            for title, rows in self.sections:
                yield Static(Content.styled(title, "bold underline"), classes="help-section")
                for keys, what in rows:
                    with Horizontal(classes="help-row"):
                        yield Static(Content(keys), classes="help-keys")
                        yield Static(Content(what), classes="help-what")
            yield Static(Content.styled("Esc closes", "dim"), classes="help-section")
