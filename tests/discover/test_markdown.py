"""runner/discover/markdown.py: links, images, references, autolinks, raw URLs, HTML; lines; chunks."""

from __future__ import annotations

from runner.discover.markdown import chunks, markdown_links, read_markdown

DOC = """# Guide

See [the intro](intro.md "Intro") and ![a diagram](img/flow.png).
A second line with <https://auto.example.test/x> and a raw https://raw.example.test/path?q=1
and www.example.com too, then [a reference][ref] and [collapsed][].
Skipped: [mail](mailto:me@example.test), [call](tel:+1555), [js](javascript:alert(1)),
[inline image](data:image/png;base64,AAAA) and [a section](#usage).

| table | with |
| ----- | ---- |
| [cell link](cell.html) | x |

```
[not a link](inside-a-fence.html) https://fenced.example.test/
```

    indented code https://indented.example.test/

<div><img src="html-block.png"></div>

Inline HTML: <a href="inline.html">x</a>.

[ref]: https://ref.example.test/
[collapsed]: ../collapsed.md
"""


def test_every_kind_with_its_line() -> None:
    links = markdown_links(DOC, "https://docs.example.test/guide/index.md")
    found = [(link.line, link.where, link.url) for link in links if link.url]
    assert found == [
        (3, "markdown link", "https://docs.example.test/guide/intro.md"),
        (3, "markdown image", "https://docs.example.test/guide/img/flow.png"),
        (4, "markdown autolink", "https://auto.example.test/x"),
        (4, "raw URL", "https://raw.example.test/path?q=1"),
        (5, "raw URL", "http://www.example.com"),
        (5, "markdown link", "https://ref.example.test/"),
        (5, "markdown link", "https://docs.example.test/collapsed.md"),
        (11, "markdown link", "https://docs.example.test/guide/cell.html"),
        (19, "img src", "https://docs.example.test/guide/html-block.png"),
        (21, "a href", "https://docs.example.test/guide/inline.html"),
        (23, "markdown reference", "https://ref.example.test/"),
        (24, "markdown reference", "https://docs.example.test/collapsed.md"),
    ]
    assert [link.skipped for link in links if link.skipped] == ["mailto", "tel", "javascript", "data", "fragment"]
    assert links[0].text == "the intro" and links[1].text == "a diagram"


def test_chunks_cut_at_blank_lines_outside_fences_and_lose_no_link() -> None:
    body = "".join(f"Para {i} with [link {i}](https://s.test/{i}).\n\n" for i in range(400))
    fence = "```\n" + "\n".join(f"x{i}" for i in range(50)) + "\n\nnot-a-cut\n```\n\n"
    text = fence + body + "[late]: https://s.test/late\n"
    lines = list(enumerate(text.splitlines(keepends=True), 1))
    pieces = list(chunks(lines, size=1000))
    assert len(pieces) > 5
    assert pieces[0][1].startswith(fence)  # never cut inside the fence
    assert "".join(piece for _, piece in pieces) == text
    whole = [(link.line, link.url) for link in markdown_links(text)]
    streamed = [(link.line, link.url) for link in read_markdown(iter(lines))]
    assert sorted(streamed) == sorted(whole)
    assert (56 + 2 * 399, "https://s.test/399") in streamed  # lines stay the document's


def test_a_document_without_a_block_boundary_is_cut_anyway_and_a_fence_stays_a_fence() -> None:
    text = "```\n" + "[not a link](https://in-a-fence.test/)\n" * 2000 + "```\n[a link](https://after.test/)\n"
    lines = list(enumerate(text.splitlines(keepends=True), 1))
    pieces = list(chunks(lines, size=1000))
    assert len(pieces) > 10 and max(len(piece) for _, piece in pieces) < 4000 + 100
    assert all(piece.startswith("```\n") for _, piece in pieces[:-1])  # each reopens the fence
    links = list(read_markdown(iter(lines), size=1000))
    assert [(link.line, link.url) for link in links] == [(2003, "https://after.test/")]
    blank = [(n, "\n") for n in range(1, 100_001)]  # nothing but blank lines: cut all the same
    assert max(len(piece) for _, piece in chunks(iter(blank), size=1000)) <= 4001


def test_nothing_raises_on_odd_input() -> None:
    assert markdown_links("") == []
    deep = markdown_links("[" * 10_000 + "](https://s.test/x)" + ">" * 5_000 + "*" * 5_000)
    assert [link.url for link in deep] == ["https://s.test/x"]
    assert [link.skipped for link in markdown_links("[a](<>)[b]()", "https://s.test/d/")] == ["fragment", "fragment"]
