"""runner/discover/html.py: every link kind of the issue, <base href>, lines, text, encodings."""

from __future__ import annotations

from runner.discover.html import HtmlLinks, html_links, read_html
from runner.discover.links import srcset_urls

PAGE = b"""<!doctype html>
<html><head><title>t</title>
<link rel="stylesheet" href="css/site.css">
<script src="/js/app.js"></script>
</head>
<body>
<a href="intro.html">The <b>intro</b>
 page</a>
<img src="logo.png" srcset="logo-1x.png 1x, logo-2x.png 2x" alt="Logo">
<picture><source srcset="wide.webp 800w,narrow.webp 400w" type="image/webp"><source src="clip.mp4"></picture>
<iframe src="https://embed.example.test/v/1"></iframe>
<a href="mailto:me@example.test">m</a> <a href="tel:+1555">t</a> <a href="javascript:void(0)">j</a>
<a href="#top">top</a> <a href="">self</a> <img src="data:image/png;base64,AAAA">
<a href="JavaScript:alert(1)">J</a> <a href=" java&#9;script:x">tab</a>
<a name="anchor-without-href">n</a>
<!-- <a href="commented-out.html"> -->
<script>document.write('<a href="in-script.html">')</script>
<a href="intro.html#part-2">again</a>
</body></html>
"""


def test_every_link_kind_with_its_line_resolved_against_the_document() -> None:
    links = html_links(PAGE, "https://docs.example.test/guide/index.html")
    found = [(link.line, link.where, link.url) for link in links if link.url]
    assert found == [
        (3, "link href", "https://docs.example.test/guide/css/site.css"),
        (4, "script src", "https://docs.example.test/js/app.js"),
        (7, "a href", "https://docs.example.test/guide/intro.html"),
        (9, "img src", "https://docs.example.test/guide/logo.png"),
        (9, "img srcset", "https://docs.example.test/guide/logo-1x.png"),
        (9, "img srcset", "https://docs.example.test/guide/logo-2x.png"),
        (10, "source srcset", "https://docs.example.test/guide/wide.webp"),
        (10, "source srcset", "https://docs.example.test/guide/narrow.webp"),
        (10, "source src", "https://docs.example.test/guide/clip.mp4"),
        (11, "iframe src", "https://embed.example.test/v/1"),
        (18, "a href", "https://docs.example.test/guide/intro.html#part-2"),
    ]
    assert [link.skipped for link in links if link.skipped] == [
        "mailto", "tel", "javascript", "fragment", "fragment", "data", "javascript", "javascript"]
    anchor = next(link for link in links if link.where == "a href" and link.url)
    assert anchor.text == "The intro page"
    assert next(link for link in links if link.where == "img src").text == "Logo"


def test_base_href_sets_the_base_of_the_links_after_it() -> None:
    page = (b'<html><head><base href="/other/dir/"></head><body>'
            b'<a href="x.html">x</a><a href="../up.html">up</a><a href="//cdn.test/lib.js">cdn</a></body></html>')
    links = html_links(page, "https://site.test/docs/page.html")
    assert [link.url for link in links] == [
        "https://site.test/other/dir/x.html", "https://site.test/other/up.html", "https://cdn.test/lib.js"]
    # Only the first <base> counts; a base of another scheme is ignored.
    page = b'<base href="https://a.test/1/"><base href="https://b.test/2/"><a href="x">x</a>'
    assert [link.url for link in html_links(page)] == ["https://a.test/1/x"]
    assert [link.url for link in html_links(b'<base href="ftp://f.test/"><a href="x">', "https://s.test/d/")] == [
        "https://s.test/d/x"]


def test_relative_links_without_a_base_are_problems_not_guesses() -> None:
    links = html_links(b'<a href="page.html">p</a><a href="https://abs.test/">a</a>')
    assert links[0].url is None and "give --base-url" in (links[0].problem or "")
    assert links[1].url == "https://abs.test/"


def test_a_document_fed_in_pieces_finds_the_same_links_as_whole() -> None:
    whole = [(link.line, link.url, link.text) for link in html_links(PAGE, "https://s.test/")]
    for size in (1, 7, 100):
        pieces = [PAGE[i:i + size] for i in range(0, len(PAGE), size)]
        assert [(link.line, link.url, link.text) for link in read_html(pieces, "https://s.test/")] == whole


def test_srcset_is_split_as_the_html_standard_says() -> None:
    assert srcset_urls("a.png 1x, b.png 2x") == ["a.png", "b.png"]
    assert srcset_urls("a.png 1x,b.png 2x") == ["a.png", "b.png"]
    assert srcset_urls("a.png,b.png 2x") == ["a.png,b.png"]  # a URL runs to whitespace, commas and all
    assert srcset_urls(" a.png , b.png ") == ["a.png", "b.png"]
    assert srcset_urls("a.png 100w (min-width: 5px, max-width: 9px), c.png") == ["a.png", "c.png"]
    assert srcset_urls("data:image/png;base64,AAA= 1x, b.png 2x") == ["data:image/png;base64,AAA=", "b.png"]
    assert srcset_urls("") == [] and srcset_urls(" , ,") == []


def test_encodings_the_caller_the_document_or_utf8() -> None:
    latin = '<meta charset="iso-8859-1"><a href="/caf\xe9">caf\xe9</a>'.encode("latin-1")
    assert html_links(latin, "https://s.test/")[0].url == "https://s.test/caf\xe9"
    undeclared = '<a href="/caf\xe9">caf\xe9</a>'.encode()
    assert html_links(undeclared, "https://s.test/")[0].url == "https://s.test/caf\xe9"
    assert html_links(undeclared.decode().encode("cp1252"), "https://s.test/",
                      encoding="windows-1252")[0].text == "caf\xe9"
    bom = '\ufeff<a href="/\xfc">x</a>'.encode("utf-16-le")
    assert html_links(bom, "https://s.test/")[0].url == "https://s.test/\xfc"
    assert html_links(latin, "https://s.test/", encoding="no-such-charset")[0].url  # falls back, never raises


def test_an_anchor_s_text_is_capped_and_a_tag_of_many_attributes_is_read() -> None:
    long_text = b'<a href="/x">' + b"word " * 10_000 + b"</a>"
    assert len(html_links(long_text, "https://s.test/")[0].text) == 200
    # Building a tree, libxml2 compared each attribute with every earlier one (20,000 took
    # 3 s, 100,000 three minutes); the parser target gets them in one go (scripts/bench-crawl).
    tag = b"<a " + b" ".join(b"h%d=1" % i for i in range(20_000)) + b' href="/x">x</a>'
    assert [link.url for link in html_links(tag, "https://s.test/")] == ["https://s.test/x"]


def test_nothing_for_empty_or_binary_input() -> None:
    assert html_links(b"") == []
    assert html_links(b"\x00\xff\xfe garbage <<<>>> \x00") == []
    reader = HtmlLinks("https://s.test/")
    assert reader.close() == []


def test_a_long_document_streams_in_flat_memory() -> None:
    """lxml's feed parser keeps all it was fed until closed: a fresh one takes over every few
    MB, after a quiet line. 32 MB read, every link found once, nothing from inside scripts."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import itertools\n"
        "from runner.discover.html import read_html\n"
        "page = b'<p>Text <a href=\"/x\">x</a> <script>var a = \"<a href=no>\";\\n</script> more.</p>\\n' * 300\n"
        "unit = b'<!doctype html><html><body>' + page + b'</body></html>\\n'\n"
        "n = sum(1 for link in read_html(itertools.repeat(unit, 32_000_000 // len(unit)), 'https://a.test/') if "
        "link.url)\n"
        "hwm = [line for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]\n"
        "print(n, 32_000_000 // len(unit) * 300, int(hwm.split()[1]) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    found, expected, peak_mib = map(int, out.stdout.split())
    assert found == expected
    assert peak_mib < 40, f"peak RSS {peak_mib} MiB streaming 32 MB of HTML (it grew with it: 50+)"
