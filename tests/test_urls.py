import pytest

from runner.errors import InvalidURL
from runner.jobs.urls import Rejected, normalise, split_input
from runner.text import mask_url, printable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://Example.COM", "http://example.com/"),
        ("https://example.com:443/a?b=1#frag", "https://example.com/a?b=1"),
        ("example.com/x", "https://example.com/x"),
        ("example.com:8080/x", "https://example.com:8080/x"),
        ("  http://127.0.0.1:8000/  ", "http://127.0.0.1:8000/"),
        ("http://bücher.de/", "http://xn--bcher-kva.de/"),
        # UTS #46 non-transitional (browsers): ß stays ß; IDNA 2003 made it fass.de
        ("https://faß.de/", "https://xn--fa-hia.de/"),
        ("https://FASS.de/", "https://fass.de/"),
        ("bücher.de/x", "https://xn--bcher-kva.de/x"),
        ("Bücher.DE/x?q=1", "https://xn--bcher-kva.de/x?q=1"),
        ("http://ＥＸＡＭＰＬＥ.com/", "http://example.com/"),     # fullwidth, mapped by UTS #46
        ("http://[::1]:8080/", "http://[::1]:8080/"),
        ("http://user:pw@host.test/", "http://user:pw@host.test/"),
    ],
)
def test_normalise_accepts_and_canonicalises(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty URL"),
        ("ftp://example.com/", "unsupported scheme 'ftp'"),
        ("mailto:x@example.com", "unsupported scheme 'mailto'"),
        ("http://", "no host"),
        ("http://exa mple.com/", "spaces or control characters"),
        ("http://example.com:99999/", "malformed URL"),
        ("http://ex_ample..com/", "not a valid name"),
        ("http://a\u200db.example/", "not a valid name"),     # ZWJ where CONTEXTJ forbids it
        ("bü cher.de/x", "spaces or control characters"),
        ("http://x.test/" + "a" * 5000, "longer than 4096"),
    ],
)
def test_normalise_refuses_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidURL) as info:
        normalise(text)
    assert reason in str(info.value)


def test_passwords_are_masked_everywhere_shown() -> None:
    assert mask_url("https://bob:s3cret@host.test/x") == "https://bob:***@host.test/x"
    assert "s3cret" not in str(Rejected("ftp://bob:s3cret@host.test/", "unsupported scheme", "list.txt:3"))
    assert str(Rejected("ftp://h/", "unsupported scheme", "list.txt:3")).startswith("list.txt:3: unsupported scheme")


def test_split_input_on_spaces_and_newlines_keeps_commas_in_urls() -> None:
    assert split_input(" http://a.test/?x=1,2 \n\nhttp://b.test/\thttp://c.test/ ") == [
        "http://a.test/?x=1,2", "http://b.test/", "http://c.test/",
    ]


def test_printable_neutralises_terminal_escapes() -> None:
    evil = "title\x1b[31mred\x1b]0;pwned\x07\r\n\x9b"
    shown = printable(evil)
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown and "\x9b" not in shown
    assert shown.startswith("title\\x1b[31mred")
    assert printable("x" * 10, limit=5) == "xxxx…"
