"""Passwords are masked in every URL urltester shows, whatever the URL's shape: the database
URL, the broker URL and target URLs, including passwords with an unencoded ``#``, ``?`` or
``/`` that urlsplit cannot see (libpq accepts them)."""

from __future__ import annotations

import pytest

from runner.text import mask_url
from tests.support.services import run_cli, runner_env


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u:pa#ss@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:p?ss@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("amqp://guest:s3/cr@et@h//", "amqp://guest:***@h//"),
    ("amqp://guest:guest@127.0.0.1:5672//", "amqp://guest:***@127.0.0.1:5672//"),
    ("postgresql://h/db?user=x&password=sec&sslmode=require", "postgresql://h/db?user=x&password=***&sslmode=require"),
    ("https://u:p@h.test/a@b", "https://u:***@h.test/a@b"),
    ("user:pw@host.test/x", "user:***@host.test/x"),
    # not passwords: kept as they are
    ("https://x.test:8443/@user", "https://x.test:8443/@user"),
    ("https://medium.test/@user", "https://medium.test/@user"),
    ("http://h.test/?a=b:c@d", "http://h.test/?a=b:c@d"),
    ("https://u@h.test/", "https://u@h.test/"),
    ("sqlite:///tmp/a@b:c.db", "sqlite:///tmp/a@b:c.db"),
])
def test_mask_url_finds_the_password_in_any_shape(url: str, shown: str) -> None:
    assert mask_url(url) == shown


SECRET = "pa#ss?wo/rd"


@pytest.mark.parametrize("secret", ["Zq#Xv", "Zq?Xv", "Zq/Xv", "Kw?Zq/Xv"])
def test_database_url_password_with_hash_is_masked_by_status_and_doctor(secret: str) -> None:
    """libpq reads some of these (then: unreachable, exit 3) and quotes pieces of the others
    in its error (exit 2, or 3 for a "port" it cannot read): never a piece of the password."""
    env = runner_env(f"postgresql://alice:{secret}@127.0.0.1:1/db", None)
    for command in (["status"], ["doctor"]):
        out = run_cli(command, env)
        text = out.stdout + out.stderr
        assert out.returncode in (2, 3), text
        for piece in ("Zq", "Xv", "Kw"):
            assert piece not in text, (command, text)
        assert "Traceback" not in text


def test_broker_url_password_with_hash_is_masked_and_asked_to_be_encoded(sqlite_url) -> None:
    """kombu (urllib) cannot read such a password, so it is a one-line usage error."""
    out = run_cli(["doctor"], runner_env(sqlite_url, f"amqp://guest:{SECRET}@127.0.0.1:1//"))
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    assert "amqp://guest:***@127.0.0.1:1//" in text and "percent-encoded" in text
    for piece in ("pa#ss", "ss?wo", "wo/rd"):
        assert piece not in text, text


def test_target_url_password_with_hash_is_masked_in_the_rejected_line(sqlite_url) -> None:
    out = run_cli(["submit", f"http://alice:{SECRET}@h.test/x"], runner_env(sqlite_url, None))
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "http://alice:***@h.test/x" in text and "percent-encoded" in text
    for piece in ("pa#ss", "'pa'", "wo/rd"):
        assert piece not in text, text
