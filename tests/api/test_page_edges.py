"""The page's rough edges, in Debian's chromium: totals and the count of matching rows, the
checked-at and batch columns, re-test and export, a detail drawer beside the table (never
over it), an empty redirect list said in words, no "Forget token" before a token, and a
favicon (no 404). Screenshots land in tests/artifacts/."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pytest

from tests.api.conftest import ARTIFACTS, Server
from tests.api.test_page import browser  # noqa: F401 - the fixture
from tests.support.services import wait_until

pytestmark = pytest.mark.e2e


def table(driver) -> list[list[str]]:  # read in one go: rows re-render live
    return driver.execute_script(
        "return [...document.querySelectorAll('#jobs tbody tr')].map(r => [...r.cells].map(c => c.textContent))")


def test_totals_columns_retest_export_and_a_drawer_beside_the_table(embedded_server: Server, target,
                                                                    browser) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(browser, 30)
    browser.get(embedded_server.base + "/")
    wait.until(ec.visibility_of_element_located((By.ID, "token")))
    assert not browser.find_element(By.ID, "forget").is_displayed()  # nothing to forget yet
    browser.save_screenshot(str(ARTIFACTS / "page-login.png"))
    browser.find_element(By.ID, "token").send_keys(embedded_server.token())
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
    assert browser.find_element(By.ID, "forget").is_displayed()

    urls = [target.url("/ok?edge=1"), target.url("/status/500?edge=2"), target.url("/title?t=%3Cb%3Ebold%3C%2Fb%3E")]
    browser.find_element(By.ID, "urls").send_keys("\n".join(urls))
    browser.find_element(By.ID, "add").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "add-result"), "3 added"))
    mine = lambda d: [r for r in table(d) if r[4] in urls]  # noqa: E731 - the module's server is shared
    wait.until(lambda d: len(mine(d)) == 3 and all(r[1] != "queued" and r[1] != "running" for r in mine(d)))
    header = browser.execute_script("return [...document.querySelectorAll('#jobs thead th')].map(t => t.textContent)")
    assert header[-2:] == ["checked", "batch"]
    for row in mine(browser):
        assert row[7].startswith("20") and row[8], row  # when it was checked, and its batch
    assert "<b>bold</b>" in [r[5] for r in mine(browser)]  # a title as text, never markup
    assert browser.execute_script("return document.querySelectorAll('#jobs tbody b').length") == 0
    total = len(table(browser))
    wait.until(lambda d: f"{total} matching" in d.find_element(By.ID, "matching").text)
    wait.until(lambda d: f"{total} jobs:" in d.find_element(By.ID, "totals").text
               and "0 queued" in d.find_element(By.ID, "totals").text)
    Select(browser.find_element(By.ID, "filter")).select_by_visible_text("failed")
    failed = sum(1 for r in table(browser) if r[1] not in ("ok", "queued", "running"))
    wait.until(lambda d: d.find_element(By.ID, "matching").text == f"{max(failed, 1)} matching")
    Select(browser.find_element(By.ID, "filter")).select_by_visible_text("all jobs")
    wait.until(lambda d: len(mine(d)) == 3)
    browser.save_screenshot(str(ARTIFACTS / "page-table.png"))

    # The detail opens beside the table: nothing of the table is under it.
    browser.execute_script(
        "[...document.querySelectorAll('#jobs tbody tr')].find(r => r.cells[4].textContent === arguments[0]).click()",
        urls[0])
    wait.until(ec.visibility_of_element_located((By.ID, "detail")))
    table_right = browser.execute_script("return document.getElementById('jobs').getBoundingClientRect().right")
    drawer_left = browser.execute_script("return document.getElementById('detail').getBoundingClientRect().left")
    assert table_right <= drawer_left, (table_right, drawer_left)
    assert browser.find_element(By.ID, "no-redirects").is_displayed()
    assert not browser.find_element(By.ID, "redirects").is_displayed()
    browser.save_screenshot(str(ARTIFACTS / "page-detail.png"))

    before = {r[0] for r in table(browser)}
    browser.find_element(By.ID, "retest").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "retest-result"), "re-testing as job"))
    wait.until(lambda d: any(r[0] not in before and r[4] == urls[0] and r[1] == "ok" for r in table(d)))

    # Export: every matching job as CSV, downloaded by the browser.
    downloads = Path(tempfile.mkdtemp(prefix="urltester-downloads-"))
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    browser.find_element(By.ID, "export").click()
    wait_until(lambda: any(downloads.glob("*.csv")), 30, message="the CSV download")
    [exported] = list(downloads.glob("*.csv"))
    rows = list(csv.DictReader(io.StringIO(exported.read_text())))
    assert len(rows) == len(table(browser)) and {urls[0], urls[1], urls[2]} <= {r["url"] for r in rows}

    # No request of the page failed: the favicon is there, no 404 in the console.
    assert browser.execute_script("return document.querySelector('link[rel=icon]').getAttribute('href')")
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
