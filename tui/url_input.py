"""UrlInput: the one-line input at the top where operators type or paste URLs."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.widgets import Input


class UrlInput(Input):
    """An Input that keeps every line of a paste (URLs separated by newlines become spaces).

    Textual's Input keeps only the first line of a paste; a list of URLs copied from a
    spreadsheet or a file must arrive whole.
    """

    BINDINGS = [
        # Input's own Enter, restated so that the help screen (made from bindings) lists it.
        Binding("enter", "submit", "Queue",
                tooltip="queue every valid URL typed or pasted (spaces or newlines between them); "
                        "invalid ones stay in the input with their reason"),
    ]

    def _on_paste(self, event: events.Paste) -> None:
        if event.text:
            text = " ".join(event.text.split())
            selection = self.selection
            if selection.is_empty:
                self.insert_text_at_cursor(text)
            else:
                self.replace(text, *selection)
        event.stop()
        event.prevent_default()
