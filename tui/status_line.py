"""StatusLine: jobs by state, URLs by state and checks per minute; then workers alive (and
their regions, the queue's depth) and the services in use."""

from __future__ import annotations

from textual.widgets import Static

from db import Counts
from runner.text import printable

from .styled import FAILED, MUTED, OK, WARNING, Styled


class StatusLine(Static):
    """Two lines at the bottom: the counts, then who checks and where the data lives (passwords
    masked)."""

    def __init__(self, database: str, broker: str, immediate: bool, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__("", id=id)
        self.database = database
        self.broker = broker
        self.immediate = immediate
        self.counts: Counts | None = None
        self.alive: int | None = None
        self.queue_depth: int | None = None
        self.regions: tuple[str, ...] = ()  # regions with a live worker, when any is named
        self.depths: dict[str, int] = {}  # region -> messages ready in its queue
        self.url_states: dict[str, int] = {}  # URLs per state

    def on_mount(self) -> None:
        self._draw()

    def set_status(self, counts: Counts, workers: int, queue_depth: int | None = None,
                   regions: tuple[str, ...] = (), depths: dict[str, int] | None = None,
                   url_states: dict[str, int] | None = None) -> None:
        """``regions``: those with a live worker; ``depths``: messages ready per region's queue;
        ``url_states``: URLs per state."""
        self.counts, self.alive, self.queue_depth, self.regions = counts, workers, queue_depth, regions
        self.depths = depths or {}
        self.url_states = url_states or {}
        self._draw()

    def _draw(self) -> None:
        c = self.counts
        text = Styled()  # one line each: #status in app.tcss neither wraps nor overflows
        if c is None:
            text.append("counting jobs…", MUTED)
        else:
            text.append(f"· {c.queued:,} queued")
            text.append("  ")
            text.append(f"… {c.running:,} running", WARNING)
            text.append("  ")
            text.append(f"✓ {c.ok:,} ok", OK)
            text.append("  ")
            text.append(f"✗ {c.failed:,} failed", FAILED if c.failed else "")
            if c.cancelled:
                text.append(f"  ⊘ {c.cancelled:,} cancelled", MUTED)
            if self.url_states:  # checks count every re-test; URLs count each once
                failing = self.url_states.get("failing", 0)
                total = sum(self.url_states.values())
                text.append(f"  │  {total:,} URL{'s' if total != 1 else ''}: ")
                text.append(f"✗ {failing:,} failing", FAILED if failing else "")
            text.append(f"  │  {c.done_last_minute:,} checks/min")
        text.append("\n")
        # The workers lead the second line: at 80 columns the first line is full with the
        # URLs' counts, and whether anything checks at all matters more than the broker's URL.
        if c is not None:
            if self.immediate:
                text.append("checks run in this app")
            else:
                n = self.alive or 0
                text.append(f"{n} worker process{'es' if n != 1 else ''} alive", "" if n else f"bold {FAILED}")
                if self.regions and self.regions != ("default",):
                    text.append(" in " + ", ".join(printable(r, 40) for r in self.regions))
                if len(self.depths) > 1:  # regions: each queue's depth, the default region's first
                    text.append("  │  in queue "
                                + " · ".join(f"{printable(r, 40)} {n:,}" for r, n in self.depths.items()))
                elif self.queue_depth is not None:
                    text.append(f"  │  {self.queue_depth:,} in queue")
            text.append("  │  ")
        text.append("db ", MUTED)
        text.append(printable(self.database))
        text.append("  broker ", MUTED)
        text.append(printable(self.broker))
        if self.immediate:
            text.append(" (in-process)", MUTED)
        self.update(text.content)
