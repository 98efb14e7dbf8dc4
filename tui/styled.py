"""Styled: text built a piece at a time, as Textual ``Content``, in the theme's colours.

Every style here names a theme variable (``$success``, ``$error``, ``$warning``, ...) or a
text style (bold, dim, underline), never a colour: the theme (``ctrl+p`` → theme) recolours
every screen, and NO_COLOR (which Textual honours) leaves the words and symbols that carry
the meaning anyway. Pieces are plain text, never markup: user data appended here is shown
as it is.
"""

from __future__ import annotations

from textual.content import Content

OK = "$success"
FAILED = "$error"
WARNING = "$warning"
MUTED = "dim"


class Styled:
    """Like ``rich.text.Text.append``, for Content: ``Styled().append("✓ ok", OK).content``."""

    def __init__(self, text: str = "", style: str = "") -> None:
        self.parts: list[str | tuple[str, str]] = []
        if text:
            self.append(text, style)

    def append(self, text: str, style: str = "") -> Styled:
        self.parts.append((text, style) if style else text)
        return self

    @property
    def plain(self) -> str:
        return "".join(p if isinstance(p, str) else p[0] for p in self.parts)

    @property
    def content(self) -> Content:
        return Content.assemble(*self.parts).rstrip()


def styled(text: str, style: str = "") -> Content:
    """One piece of plain text in one style."""
    return Content.styled(text, style) if style else Content(text)
