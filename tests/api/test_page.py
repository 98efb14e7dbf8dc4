"""The page in a real browser: Debian's chromium, headless, driven by Selenium through
/usr/bin/chromedriver (no browser download). A screenshot lands in tests/artifacts/."""

from __future__ import annotations

import os
import shutil
import tempfile
from urllib.parse import quote

import pytest

from tests.api.conftest import ARTIFACTS, Server

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        message = "chromium and chromium-driver are not installed (scripts/test installs them as root on Debian)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="urltester-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1400,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console: a 404 shows there
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_two_urls_typed_reach_ok_live_and_a_detail_opens(embedded_server: Server, target, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    hostile = "<script>alert(1)</script>"
    urls = [target.url("/ok?page=1"), target.url("/title?t=" + quote(hostile))]
    token = embedded_server.token()
    wait = WebDriverWait(browser, 30)
    browser.get(embedded_server.base + "/")
    wait.until(ec.visibility_of_element_located((By.ID, "token"))).send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))

    box = wait.until(ec.visibility_of_element_located((By.ID, "urls")))
    box.send_keys(urls[0] + "\n" + urls[1])
    browser.find_element(By.ID, "add").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "add-result"), "2 added"))

    def table(driver) -> list[list[str]]:  # read in one go: rows re-render live
        return driver.execute_script(
            "return [...document.querySelectorAll('#jobs tbody tr')].map(r => [...r.cells].map(c => c.textContent))")

    # No reload: the rows go from queued to ok through the event stream.
    wait.until(lambda d: {row[4]: row[1] for row in table(d)} == {urls[1]: "ok", urls[0]: "ok"})
    assert [row[5] for row in table(browser)] == [hostile, "ok page"]  # newest first; the title as text
    assert browser.execute_script("return document.querySelectorAll('#jobs script').length") == 0

    browser.execute_script(
        "[...document.querySelectorAll('#jobs tbody tr')].find(r => r.cells[4].textContent === arguments[0]).click()",
        urls[1])
    wait.until(ec.visibility_of_element_located((By.ID, "detail")))
    phases = browser.find_element(By.ID, "phases").text
    assert "dns" in phases and "ttfb" in phases and "total" in phases
    assert hostile in browser.find_element(By.ID, "detail-core").text
    assert browser.find_element(By.ID, "no-redirects").is_displayed()  # said in words, not "1. none"
    assert not browser.find_element(By.ID, "redirects").is_displayed()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "page.png"))
    # The token stays in this tab's session storage only.
    assert browser.execute_script("return sessionStorage.getItem('urltester.token')") == token
    assert browser.execute_script("return localStorage.length") == 0


def test_a_crawl_results_detail_says_where_it_is_linked_from(embedded_server: Server, served_site, browser) -> None:
    """The page's detail of a broken link lists the pages that link to it, the link's text
    as text (a stranger's page wrote it)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.support.services import run_cli

    hostile = "<img src=x onerror=alert(1)>"
    (served_site.root / "hostile.html").write_text(
        '<!doctype html><title>Hostile</title><a href="/gone-hostile.html">&lt;img src=x onerror=alert(1)&gt;</a>')
    (served_site.root / "hostile.html").chmod(0o644)
    out = run_cli(["crawl", served_site.url("/hostile.html"), "--depth", "1", "--batch", "hostile", "--wait"],
                  embedded_server.env)
    assert out.returncode == 1, out.stdout + out.stderr
    broken = served_site.url("/gone-hostile.html")
    wait = WebDriverWait(browser, 30)
    browser.get(embedded_server.base + "/")
    wait.until(ec.visibility_of_element_located((By.ID, "token"))).send_keys(embedded_server.token())
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#jobs tbody tr')].some(r => r.cells[4].textContent === arguments[0])",
        broken))
    browser.execute_script(
        "[...document.querySelectorAll('#jobs tbody tr')].find(r => r.cells[4].textContent === arguments[0]).click()",
        broken)
    wait.until(ec.visibility_of_element_located((By.ID, "referrers")))
    assert browser.find_element(By.ID, "referrers").text == f'{served_site.url("/hostile.html")} "{hostile}"'
    assert browser.execute_script("return document.querySelectorAll('#referrers img').length") == 0
