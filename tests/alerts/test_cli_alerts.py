"""``runner alerts`` as a user types it (embedded SQLite): secrets masked in every output,
bad input named with exit 2, ``test`` delivering or saying the service's reason (exit 1)."""

from __future__ import annotations

import pytest

from db import alerts as outbox
from db import open_store
from runner.jobs.alerts import masked_target
from tests.support.services import run_cli, runner_env
from tests.support.webhook import Receiver

SECRET_URLS = {
    "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#alerts": ["A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ"],
    "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js": ["JHMHI8qBe7bk2ZwO5U711o3dV_js"],
    "json://hookuser:s3cr3t-pw@127.0.0.1:8080/hook": ["s3cr3t-pw"],
    "mailto://ops:mail-pass-77@example.com": ["mail-pass-77"],
    "tgram://123456789:ABCdefGHIjklMNOpqr/12345": ["ABCdefGHIjklMNOpqr"],
}


@pytest.mark.parametrize("url", list(SECRET_URLS))
def test_masked_target_hides_passwords_tokens_and_webhook_keys(url: str) -> None:
    shown = masked_target(url)
    assert shown.split("://")[0] in url
    for secret in SECRET_URLS[url]:
        assert secret not in shown


def test_add_and_list_never_print_a_secret(sqlite_url: str) -> None:
    env = runner_env(sqlite_url, None)
    for i, url in enumerate(SECRET_URLS):
        done = run_cli(["alerts", "add", f"a{i}", url], env)
        assert done.returncode == 0, done.stderr
    listed = run_cli(["alerts", "list"], env)
    assert listed.returncode == 0
    out = listed.stdout + listed.stderr
    for i, url in enumerate(SECRET_URLS):
        assert f"a{i}  {url.split('://')[0]}://" in out
        for secret in SECRET_URLS[url]:
            assert secret not in out
    assert "on new_failure, recovered; every URL" in out


@pytest.mark.parametrize(("args", "named"), [
    (["--on", "new_failure,broken"], "--on: 'broken' is not a change kind"),
    (["--on", ""], "--on: name at least one"),
    (["--reminder", "soon"], "--reminder: 'soon' is not an interval"),
    (["--on", "recovered", "--reminder", "24h"], "--reminder: reminders are of still_failing"),
    (["--batch", "b", "--contains", "x"], "use at most one of them"),
    (["--min-regions", "0"], "--min-regions: 0 is not a number of regions"),
    (["--state-of", "/nonexistent/urls.txt"], "--state-of /nonexistent/urls.txt: cannot read it"),
])
def test_bad_options_exit_2_naming_the_option(sqlite_url: str, args: list[str], named: str) -> None:
    done = run_cli(["alerts", "add", "a", "json://127.0.0.1:9/x", *args], runner_env(sqlite_url, None))
    assert done.returncode == 2
    assert named in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_target_and_policy_exit_2_naming_apprise_url(sqlite_url: str, tmp_path) -> None:
    env = runner_env(sqlite_url, None)
    done = run_cli(["alerts", "add", "a", "nosuch://x:secretpw@host/"], env)
    assert done.returncode == 2 and "APPRISE_URL:" in done.stderr and "secretpw" not in done.stderr
    done = run_cli(["alerts", "add", "a", "json://169.254.169.254/latest"], env)
    assert done.returncode == 2 and "APPRISE_URL:" in done.stderr and "cloud metadata" in done.stderr
    done = run_cli(["--deny-private", "alerts", "add", "a", "json://127.0.0.1:8080/"], env)
    assert done.returncode == 2 and "loopback" in done.stderr
    bad = tmp_path / "urls.txt"
    bad.write_text("http://ok.test/\n\nftp://nope.test/\n")
    done = run_cli(["alerts", "add", "a", "json://127.0.0.1:9/", "--state-of", str(bad)], env)
    assert done.returncode == 2 and f"--state-of {bad}:3:" in done.stderr
    assert run_cli(["alerts", "list"], env).stdout == ""


def test_state_of_and_reminder_are_stored(sqlite_url: str, tmp_path) -> None:
    env = runner_env(sqlite_url, None)
    urls = tmp_path / "urls.txt"
    urls.write_text("# watched\nHTTP://Shop.Example.com/cart\n")
    done = run_cli(["alerts", "add", "shop", "json://127.0.0.1:9/", "--state-of", str(urls), "--reminder", "6h"], env)
    assert done.returncode == 0, done.stderr
    assert "new_failure, recovered, still_failing" in done.stdout
    listed = run_cli(["alerts", "list"], env).stdout
    assert "URLs of --state-of; reminder every 6h" in listed
    store = open_store(sqlite_url)
    try:
        with store.dialect.transaction() as cur:
            cur.execute("SELECT url FROM alert_urls")
            assert cur.fetchall() == [("http://shop.example.com/cart",)]
    finally:
        store.close()


def test_test_delivers_or_exits_1_with_the_services_reason(sqlite_url: str) -> None:
    env = runner_env(sqlite_url, None)
    with Receiver() as receiver:
        assert run_cli(["alerts", "add", "up", receiver.url], env).returncode == 0
        done = run_cli(["alerts", "test", "up"], env)
        assert done.returncode == 0, done.stderr
        assert receiver.titles() == ["urltester: test message for alert up"]
    with Receiver(fail_first=1) as receiver:
        assert run_cli(["alerts", "add", "down", receiver.url.replace("json://", "json://u:pw9@")], env).returncode == 0
        done = run_cli(["alerts", "test", "down"], env)
        assert done.returncode == 1
        assert "not delivered" in done.stderr and "503" in done.stderr and "pw9" not in done.stderr
    assert run_cli(["alerts", "test", "nosuch"], env).returncode == 1


def test_list_shows_the_last_delivery_error(sqlite_url: str) -> None:
    from tests.alerts.test_outbox import change, record

    store = open_store(sqlite_url)
    try:
        outbox.add_alert(store.dialect, "ops", "json://127.0.0.1:9/refused")
        record(store, [change(1, "new_failure", store.create_batch("b").id)])
        from runner.check.policy import AddressPolicy
        from runner.jobs.alerts import AlertSender

        AlertSender(store, AddressPolicy(), worker="w", timeout=2).run_once()
    finally:
        store.close()
    listed = run_cli(["alerts", "list"], runner_env(sqlite_url, None)).stdout
    assert "waiting: 1; given up: 0" in listed
    assert "last error:" in listed and "127.0.0.1" in listed


def test_remove_unknown_exits_1(sqlite_url: str) -> None:
    env = runner_env(sqlite_url, None)
    assert run_cli(["alerts", "add", "x", "json://127.0.0.1:9/"], env).returncode == 0
    assert run_cli(["alerts", "remove", "x"], env).stdout == "removed x\n"
    done = run_cli(["alerts", "remove", "x"], env)
    assert done.returncode == 1 and "no alert named 'x'" in done.stderr


def test_metrics_count_deliveries_by_alert_and_result(sqlite_url: str) -> None:
    from prometheus_client import REGISTRY

    from runner.check.policy import AddressPolicy
    from runner.jobs.alerts import AlertSender
    from tests.alerts.test_outbox import change, record

    store = open_store(sqlite_url)
    try:
        with Receiver() as receiver:
            outbox.add_alert(store.dialect, "metered", receiver.url)
            record(store, [change(1, "new_failure", store.create_batch("b").id)])
            before = REGISTRY.get_sample_value("urltester_alerts_sent_total",
                                               {"alert": "metered", "result": "sent"}) or 0
            AlertSender(store, AddressPolicy(), worker="w", timeout=2).run_once()
            assert receiver.count() == 1
        assert REGISTRY.get_sample_value("urltester_alerts_sent_total",
                                         {"alert": "metered", "result": "sent"}) == before + 1
        assert REGISTRY.get_sample_value("urltester_alerts_outbox") == 0
    finally:
        store.close()
