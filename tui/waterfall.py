"""Waterfall: a check's timing phases as bars along one time axis, hop after hop."""

from __future__ import annotations

from typing import Any

from textual.content import Content
from textual.widget import Widget

from runner.text import printable

from .columns import human_ms
from .styled import MUTED, Styled, styled

# Each phase's bar in a theme colour (a variable, so themes and NO_COLOR apply); the label
# beside it names the phase, so the colour is never the only cue.
PHASES = (
    ("dns_ms", "dns", "$secondary"),
    ("connect_ms", "connect", "$primary"),
    ("tls_ms", "tls", "$accent"),
    ("ttfb_ms", "wait", "$warning"),
    ("transfer_ms", "transfer", "$success"),
)
LABEL = 14
VALUE = 10


def phases(detail: dict[str, Any]) -> list[tuple[str, str, float, float]]:
    """(label, colour, start ms, length ms) for every timed phase of every hop."""
    hops = detail.get("hops") or []
    if not hops and detail.get("total_ms") is not None:
        hops = [detail]
    out: list[tuple[str, str, float, float]] = []
    t = 0.0
    for n, hop in enumerate(hops):
        hop_start = t
        for key, name, colour in PHASES:
            value = hop.get(key)
            if isinstance(value, int | float) and value > 0:
                label = f"{n + 1} {name}" if len(hops) > 1 else name
                out.append((label, colour, t, float(value)))
                t += float(value)
        total = hop.get("total_ms")
        if isinstance(total, int | float):
            t = max(t, hop_start + float(total))
    return out


class Waterfall(Widget):
    """One line per phase; the bar's offset is when the phase began."""

    DEFAULT_CSS = "Waterfall { height: auto; }"

    def __init__(self, detail: dict[str, Any], *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.detail = detail

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        return max(1, len(phases(self.detail)))

    def render(self) -> Content:
        rows = phases(self.detail)
        if not rows:
            return styled("no timings recorded (the check failed before connecting)", MUTED)
        end = max(start + length for _, _, start, length in rows) or 1.0
        bar_width = max(10, self.size.width - LABEL - VALUE - 2)
        text = Styled()
        for n, (label, colour, start, length) in enumerate(rows):
            if n:
                text.append("\n")
            a = int(start / end * bar_width)
            b = max(a + 1, int(round((start + length) / end * bar_width)))
            b = min(b, bar_width)
            text.append(printable(label).ljust(LABEL))
            text.append(" " * a)
            text.append("█" * (b - a), colour)
            text.append(" " * (bar_width - b))
            text.append(" " + human_ms(length).rjust(VALUE))
        return text.content
