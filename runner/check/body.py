"""Body assertions answered while the body streams past, in memory the size of the texts.

A job may ask for ``body_contains``, ``body_excludes`` or ``body contains/==/!= "..."``
conditions on a body up to ``max_bytes`` (hundreds of MiB). Holding, joining and decoding
the whole body cost about 2.4 times its size per check, and a worker runs many checks at
once. ``BodyScan`` instead decodes each chunk as it arrives (an incremental decoder, so a
character split across chunks is decoded once, exactly as a whole-body decode would) and
keeps only:

- a window of the last ``len(longest text) - 1`` characters, so a text that straddles two
  chunks is still found;
- the first ``len(longest == text) + 1`` characters, enough to say whether the whole
  body equals a text.

Texts are at most ``options.MAX_TEXT`` characters, so a scan holds a few KiB whatever the
body's size.
"""

from __future__ import annotations

import codecs

from runner.check.options import CheckOptions


def body_texts(options: CheckOptions) -> tuple[set[str], set[str]]:
    """(texts to search for, texts the whole body is compared with) for these options."""
    search: set[str] = set()
    equal: set[str] = set()
    for text in (options.body_contains, options.body_excludes):
        if text is not None:
            search.add(text)
    for cond in options.parsed_conditions:
        if cond.field == "body":
            (equal if cond.op in ("==", "!=") else search).add(cond.value)
    return search, equal


class BodyScan:
    """Feed a body's bytes in order, then ``finish()``; then ask ``holds()``."""

    def __init__(self, charset: str, search: set[str], equal: set[str]) -> None:
        self._decoder = codecs.getincrementaldecoder(charset)(errors="replace")
        self._missing = set(search)          # texts not seen yet
        self._found: set[str] = set()
        self._window = max((len(t) for t in search), default=1) - 1
        self._tail = ""
        self._keep = max((len(t) for t in equal), default=-1) + 1
        self._head = ""
        self._length = 0                     # characters decoded so far

    @classmethod
    def empty(cls, options: CheckOptions) -> BodyScan:
        """The scan of a body that was not read (a HEAD check): an empty body."""
        scan = cls("utf-8", *body_texts(options))
        scan.finish()
        return scan

    def feed(self, data: bytes, final: bool = False) -> None:
        text = self._decoder.decode(data, final)
        if not text:
            return
        self._length += len(text)
        if len(self._head) < self._keep:
            self._head += text[: self._keep - len(self._head)]
        if self._missing:
            seen = self._tail + text
            for needle in [n for n in self._missing if n in seen]:
                self._missing.discard(needle)
                self._found.add(needle)
            self._tail = seen[-self._window:] if self._window > 0 else ""

    def finish(self) -> None:
        self.feed(b"", final=True)

    def contains(self, text: str) -> bool:
        return text == "" or text in self._found

    def equals(self, text: str) -> bool:
        return self._length == len(text) and self._head == text

    def holds(self, op: str, text: str) -> bool:
        if op == "contains":
            return self.contains(text)
        if op == "not contains":
            return not self.contains(text)
        if op == "==":
            return self.equals(text)
        if op == "!=":
            return not self.equals(text)
        raise ValueError(f"no body operator {op!r}")
