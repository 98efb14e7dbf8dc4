"""runner/discover/sitemap.py: entries with their places, the protocol's bounds, safe XML."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
from pathlib import Path

from runner.discover.sitemap import (
    MAX_BYTES,
    MAX_ENTRIES,
    Entry,
    Problem,
    SitemapReader,
    valid_lastmod,
)

ROOT = Path(__file__).resolve().parents[2]
NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def read(data: bytes) -> tuple[SitemapReader, list[Entry | Problem]]:
    reader = SitemapReader(io.BytesIO(data))
    return reader, list(reader.read())


def urlset(*entries: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {NS} '
            'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">\n'
            + "\n".join(entries) + "\n</urlset>\n").encode()


def test_entries_with_number_line_and_lastmod_plain_or_gzip() -> None:
    data = urlset(
        "<url><loc>https://s.test/a?x=1&amp;y=2</loc><lastmod>2026-11-27</lastmod>"
        "<image:image><image:loc>https://img.test/1.png</image:loc></image:image></url>",
        "<url>\n  <loc>\n    https://s.test/b\n  </loc>\n</url>",
        "<url><lastmod>2026-01-01</lastmod></url>",
    )
    expected = [Entry(1, 3, "https://s.test/a?x=1&y=2", "2026-11-27"), Entry(2, 4, "https://s.test/b"),
                Problem(3, 9, "entry without a <loc>")]
    for variant in (data, gzip.compress(data), gzip.compress(data[:50]) + gzip.compress(data[50:])):
        reader, items = read(variant)
        assert items == expected
        assert reader.kind == "urlset"


def test_an_index_names_sitemaps_and_namespaces_are_not_required() -> None:
    reader, items = read(b"<sitemapindex><sitemap><loc>https://s.test/1.xml</loc></sitemap>"
                         b"<sitemap><loc>https://s.test/2.xml.gz</loc></sitemap></sitemapindex>")
    assert reader.kind == "sitemapindex"
    assert [item.loc for item in items if isinstance(item, Entry)] == ["https://s.test/1.xml", "https://s.test/2.xml.gz"]


def test_more_than_50000_entries_stop_at_the_limit() -> None:
    data = urlset(*(f"<url><loc>https://s.test/{i}</loc></url>" for i in range(MAX_ENTRIES + 10)))
    _, items = read(data)
    assert len(items) == MAX_ENTRIES + 1
    last = items[-1]
    assert isinstance(last, Problem) and last.stop and last.number == MAX_ENTRIES + 1
    assert "more than 50,000 entries" in last.reason


def test_a_gzip_bomb_is_cut_at_50_mb_with_flat_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.xml.gz"
    with open(bomb, "wb") as out:  # 2 GiB of whitespace in 2 MiB of gzip members
        out.write(gzip.compress(urlset("<url><loc>https://s.test/first</loc></url>")[:-11]))
        member = gzip.compress(b" " * (16 << 20), compresslevel=9)
        for _ in range(128):
            out.write(member)
    # The peak of this process's own memory (VmHWM: ru_maxrss would count pytest's, kept
    # across fork and exec).
    code = (
        "from runner.discover.sitemap import SitemapReader\n"
        f"items = list(SitemapReader(open({str(bomb)!r}, 'rb')).read())\n"
        "print(len(items), items[-1].reason)\n"
        "hwm = [line for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]\n"
        "print(int(hwm.split()[1]) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    summary, peak_mib = out.stdout.splitlines()
    assert summary.startswith(f"2 larger than {MAX_BYTES:,} bytes uncompressed")
    assert int(peak_mib) < 64, f"peak RSS {peak_mib} MiB reading a 2 GiB bomb"


def test_xml_that_could_expand_or_fetch_is_refused() -> None:
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              + b"".join(b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10 if i > 1 else b"&lol;" * 10)
                         for i in range(1, 10))
              + b"]><urlset><url><loc>&lol9;</loc></url></urlset>")
    external = b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY x SYSTEM "file:///etc/passwd">]><urlset><url><loc>&x;</loc></url></urlset>'
    remote = b'<?xml version="1.0"?><!DOCTYPE urlset SYSTEM "http://127.0.0.1:9/dtd"><urlset/>'
    for data in (laughs, external, remote):
        _, items = read(data)
        assert len(items) == 1 and isinstance(items[0], Problem) and items[0].stop
        assert items[0].reason.startswith("refused: a DTD (<!DOCTYPE>)")
    _, items = read(b"<urlset><url><loc>&undeclared;</loc></url></urlset>")
    assert "not well-formed XML (undefined entity" in items[0].reason


def test_what_is_not_a_sitemap_says_so() -> None:
    for data, words in ((b"<html><body>x</body></html>", "the root element is <html>"),
                        (b"User-agent: *\n", "not XML"), (b"", "not XML"), (b"\x1f\x8bnot gzip", "not valid gzip")):
        reader, items = read(data)
        assert len(items) == 1 and isinstance(items[0], Problem) and words in items[0].reason, items
        assert reader.kind is None
    _, items = read(urlset("<url><loc>https://s.test/a</loc></url>", "<url><loc>broken")[:-20])
    assert isinstance(items[0], Entry) and "not well-formed XML" in items[1].reason


def test_deep_nesting_stops_at_32_levels() -> None:
    _, items = read(b"<urlset>" + b"<url>" * 100_000)
    assert len(items) == 1 and items[0].stop and "nested more than 32 deep" in items[0].reason


def test_lastmod_is_a_w3c_datetime() -> None:
    good = ["2026", "2026-11", "2026-11-27", "2026-11-27T20:49Z", "2026-11-27T20:49:13+01:00",
            "2026-11-27T20:49:13.5-05:00"]
    bad = ["27/11/2026", "2026-13", "2026-11-32", "2026-11-27T20:49", "yesterday", "", "20261127"]
    assert all(valid_lastmod(text) for text in good)
    assert not any(valid_lastmod(text) for text in bad)
