"""The page's URL views in Debian's chromium: the counts of URLs by state at the top, the
by-URL view, a URL's detail with its latency and outcomes drawn as SVG, the changes view
since the last batch, all kept live by ``event: change``; a URL holding HTML shows as text.
Screenshots land in tests/artifacts/ (page-urls.png, page-url-chart.png, page-changes.png)."""

from __future__ import annotations

import pytest

from tests.api.conftest import ARTIFACTS, Server
from tests.api.test_page import browser  # noqa: F401 - the fixture
from tests.support.services import run_cli

pytestmark = pytest.mark.e2e

ROWS = ("return [...document.querySelectorAll(arguments[0] + ' tbody tr')]"
        ".map(r => [...r.cells].map(c => c.textContent))")


def test_by_url_chart_changes_live(embedded_server: Server, target, browser) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    env = embedded_server.env
    steady, flaky = target.url("/switch?key=steady&ms=20"), target.url("/switch?key=flaky")
    hostile = target.url("/switch?key=<b>bold</b><img/src=x/onerror=alert(1)>&t=<i>it</i><img/src=y/onerror=alert(2)>")
    target.switch["flaky"] = 200
    for n in (1, 2):  # embedded: checked before the command exits
        assert run_cli(["submit", steady, flaky, hostile, "--batch", f"round{n}"], env).returncode == 0
    target.switch["flaky"] = 500
    assert run_cli(["submit", steady, flaky, hostile, "--batch", "round3"], env).returncode == 0

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(browser, 30)
    browser.get(embedded_server.base + "/")
    wait.until(ec.visibility_of_element_located((By.ID, "token"))).send_keys(embedded_server.token())
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
    wait.until(ec.text_to_be_present_in_element((By.ID, "url-totals"), "3 URLs: 2 ok, 0 slow, 1 failing, 0 pending"))

    # By URL: failing first, one row per URL however many jobs, the markup as text.
    browser.find_element(By.CSS_SELECTOR, "#tabs [data-view=urls-view]").click()
    wait.until(lambda d: len(d.execute_script(ROWS, "#url-list")) == 3)
    rows = browser.execute_script(ROWS, "#url-list")
    assert rows[0][0] == "failing" and rows[0][8] == flaky and rows[0][2] != "ok"
    assert {r[8] for r in rows} == {steady, flaky, hostile}
    assert next(r for r in rows if r[8] == flaky)[5] == "66.7%"  # uptime: 2 of 3
    # the hostile page's title, as text: no element made of its markup
    assert next(r for r in rows if r[8] == hostile)[9] == "<i>it</i><img/src=y/onerror=alert(2)>"
    made = "return document.querySelectorAll('#url-list b, #url-list i, #url-list img').length"
    assert browser.execute_script(made) == 0
    Select(browser.find_element(By.ID, "url-state")).select_by_visible_text("failing")
    wait.until(lambda d: [r[8] for r in d.execute_script(ROWS, "#url-list")] == [flaky])
    Select(browser.find_element(By.ID, "url-state")).select_by_visible_text("all URLs")
    wait.until(lambda d: len(d.execute_script(ROWS, "#url-list")) == 3)
    browser.save_screenshot(str(ARTIFACTS / "page-urls.png"))

    # A URL's detail: the chart drawn by the page (SVG), oldest check left.
    browser.execute_script(
        "[...document.querySelectorAll('#url-list tbody tr')].find(r => r.dataset.url === arguments[0]).click()", flaky)
    wait.until(ec.visibility_of_element_located((By.ID, "latency-chart")))
    marks = browser.execute_script(
        "return [...document.querySelectorAll('#latency-chart rect')].map(r => r.getAttribute('class'))")
    assert marks == ["mark-ok", "mark-ok", "mark-bad"]
    assert browser.execute_script(
        "return document.querySelector('#latency-chart path.latency').getAttribute('d')").startswith("M")
    figures = browser.find_element(By.ID, "url-figures").text
    assert "uptime\n66.7%" in figures and "p50" in figures and "p95" in figures
    assert browser.find_element(By.ID, "url-state-line").text.startswith("failing since")
    browser.save_screenshot(str(ARTIFACTS / "page-url-chart.png"))

    # The hostile URL's detail: its text, no element made of it.
    browser.execute_script(
        "[...document.querySelectorAll('#url-list tbody tr')].find(r => r.dataset.url === arguments[0]).click()",
        hostile)
    wait.until(ec.text_to_be_present_in_element((By.ID, "url-title"), "onerror"))
    assert browser.find_element(By.ID, "url-title").text == hostile
    assert browser.execute_script("return document.querySelectorAll('#url-detail b, #url-detail img').length") == 0
    browser.find_element(By.ID, "url-close").click()

    # Changes since the last batch: the new failure.
    browser.find_element(By.CSS_SELECTOR, "#tabs [data-view=changes-view]").click()
    wait.until(lambda d: d.execute_script(ROWS, "#change-list")
               and d.execute_script(ROWS, "#change-list")[0][3] == flaky)
    assert [r[0] for r in browser.execute_script(ROWS, "#change-list")] == ["new_failure"]
    assert "1 new_failure" in browser.find_element(By.ID, "changes-counts").text
    assert "round3" in browser.find_element(By.ID, "changes-about").text

    # Live: the flaky URL recovers in a new batch; the page hears of it without a reload.
    target.switch["flaky"] = 200
    assert run_cli(["submit", flaky, "--batch", "fixed"], env).returncode == 0
    wait.until(lambda d: "recovered" in d.find_element(By.ID, "live-changes").text)
    assert flaky in browser.find_element(By.ID, "live-changes").text
    wait.until(ec.text_to_be_present_in_element((By.ID, "url-totals"), "3 ok, 0 slow, 0 failing"))
    wait.until(lambda d: [r[0] for r in d.execute_script(ROWS, "#change-list")] == ["recovered"])
    assert "fixed" in browser.find_element(By.ID, "changes-about").text
    browser.save_screenshot(str(ARTIFACTS / "page-changes.png"))

    # A URL holding a password: the page knows it masked only, and opens its detail by id,
    # from the by-URL view and from the changes view; the password shows nowhere.
    target.switch["pw"] = 200
    secret = target.url("/switch?key=pw").replace("http://", "http://user:secret@")
    masked = secret.replace(":secret@", ":***@")
    assert run_cli(["submit", secret, "--batch", "pw1"], env).returncode == 0
    target.switch["pw"] = 500
    assert run_cli(["submit", secret, "--batch", "pw2"], env).returncode == 0
    wait.until(lambda d: [r[0] for r in d.execute_script(ROWS, "#change-list")] == ["new_failure"]
               and d.execute_script(ROWS, "#change-list")[0][3] == masked)
    browser.execute_script("document.querySelector('#change-list tbody tr').click()")
    wait.until(ec.text_to_be_present_in_element((By.ID, "url-state-line"), "failing since"))
    assert browser.find_element(By.ID, "url-title").text == masked
    assert browser.execute_script(
        "return [...document.querySelectorAll('#latency-chart rect')].map(r => r.getAttribute('class'))"
    ) == ["mark-ok", "mark-bad"]
    browser.find_element(By.ID, "url-close").click()
    browser.find_element(By.CSS_SELECTOR, "#tabs [data-view=urls-view]").click()
    wait.until(lambda d: masked in [r[8] for r in d.execute_script(ROWS, "#url-list")])
    browser.execute_script(
        "[...document.querySelectorAll('#url-list tbody tr')].find(r => r.dataset.url === arguments[0]).click()",
        masked)
    wait.until(ec.visibility_of_element_located((By.ID, "latency-chart")))
    wait.until(ec.text_to_be_present_in_element((By.ID, "url-title"), masked))
    assert browser.find_element(By.ID, "url-state-line").text.startswith("failing since")
    assert browser.execute_script("return document.querySelectorAll('#latency-chart rect').length") == 2
    assert "secret" not in browser.page_source
    browser.save_screenshot(str(ARTIFACTS / "page-url-password.png"))
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
