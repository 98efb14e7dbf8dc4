"""ChoiceScreen: a small modal list to pick one option (outcome, batch, export format, yes/no)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from runner.text import printable


class ChoiceScreen(ModalScreen[str | None]):
    """Returns the id of the chosen option, or None on Esc."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, options: list[tuple[str, str]], note: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.options = options
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(id="choice-box"):
            yield Static(Text(printable(self.title_text), "bold"), id="choice-title")
            # Labels are user data (batch names): plain Text, never markup.
            yield OptionList(*[Option(Text(printable(label, 200)), id=key) for key, label in self.options],
                             id="choice-list")
            if self.note:
                yield Static(Text(printable(self.note), "dim"), id="choice-note")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
