"""Cancelling over HTTP and on the page: ``runner serve`` on PostgreSQL and RabbitMQ with no
worker running, so every job stays queued until it is cancelled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ARTIFACTS, Server, serve
from tests.api.test_page import browser  # noqa: F401 - the fixture
from tests.support.services import runner_env

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.e2e]


@pytest.fixture
def server(pg_url: str, amqp_url: str, queue_name: str, tmp_path: Path) -> Iterator[Server]:
    with serve(runner_env(pg_url, amqp_url, queue_name), tmp_path / "serve.log") as srv:
        yield srv


def add(c: httpx.Client, batch: str, n: int) -> dict:
    r = c.post("/api/v1/jobs", json={"urls": [f"http://127.0.0.1:9/{batch}/{i}" for i in range(n)], "batch": batch})
    assert r.status_code == 202, r.text
    return r.json()


def test_cancel_a_job_and_a_batch_with_a_write_token(server: Server) -> None:
    write, read = server.token("ci"), server.token("dash", "--read-only")
    with server.client(write) as c, server.client(read) as ro:
        oops, keep = add(c, "oops", 5), add(c, "keep", 2)
        first = oops["jobs"][0]["id"]
        assert c.post(f"/api/v1/jobs/{first}/cancel").json() == {"cancelled": 1}
        assert c.post(f"/api/v1/jobs/{first}/cancel").json() == {"cancelled": 0}  # no longer queued
        assert c.get(f"/api/v1/jobs/{first}").json()["state"] == "cancelled"
        batch = oops["batch"]["id"]
        assert c.post(f"/api/v1/batches/{batch}/cancel").json() == {"cancelled": 4}
        summary = c.get(f"/api/v1/batches/{batch}").json()
        assert (summary["queued"], summary["cancelled"], summary["done"]) == (0, 5, 0)
        listed = c.get("/api/v1/jobs", params={"state": "cancelled"}).json()["jobs"]
        assert sorted(j["id"] for j in listed) == sorted(j["id"] for j in oops["jobs"])
        assert c.get(f"/api/v1/batches/{keep['batch']['id']}").json()["queued"] == 2  # the other batch: untouched

        other = keep["jobs"][0]["id"]
        assert ro.post(f"/api/v1/jobs/{other}/cancel").status_code == 403  # read-only tokens cannot
        assert ro.post(f"/api/v1/batches/{keep['batch']['id']}/cancel").status_code == 403
        assert httpx.post(f"{server.base}/api/v1/jobs/{other}/cancel").status_code == 401
        assert c.post("/api/v1/jobs/999999/cancel").status_code == 404
        assert c.post("/api/v1/batches/999999/cancel").status_code == 404
        assert c.post("/api/v1/jobs/0/cancel").status_code == 422
        assert c.get(f"/api/v1/jobs/{other}/cancel").status_code == 405
        assert c.get(f"/api/v1/batches/{keep['batch']['id']}").json()["queued"] == 2

    doc = httpx.get(server.base + "/openapi.json").json()
    assert "post" in doc["paths"]["/api/v1/batches/{batch_id}/cancel"]
    assert "post" in doc["paths"]["/api/v1/jobs/{job_id}/cancel"]
    state = next(p for p in doc["paths"]["/api/v1/jobs"]["get"]["parameters"] if p["name"] == "state")
    assert "cancelled" in str(state["schema"])


def test_the_page_cancels_a_batch_after_asking(server: Server, browser) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(server.base + "/")
    wait.until(ec.visibility_of_element_located((By.ID, "token"))).send_keys(server.token())
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    box = wait.until(ec.visibility_of_element_located((By.ID, "urls")))
    box.send_keys("http://127.0.0.1:9/a\nhttp://127.0.0.1:9/b\nhttp://127.0.0.1:9/<b>c</b>")
    browser.find_element(By.ID, "add").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "add-result"), "3 added"))
    batch = browser.find_element(By.ID, "cancel-batch").get_attribute("value")
    assert batch.isdigit()  # the batch just added is the one offered

    browser.find_element(By.ID, "cancel").click()
    wait.until(ec.visibility_of_element_located((By.ID, "cancel-yes")))
    question = browser.find_element(By.ID, "cancel-question").text
    assert question.startswith(f"Cancel 3 queued job(s) of batch {batch} ")
    browser.find_element(By.ID, "cancel-no").click()  # asked, kept: nothing happens
    assert not browser.find_element(By.ID, "cancel-yes").is_displayed()

    browser.find_element(By.ID, "cancel").click()
    wait.until(ec.element_to_be_clickable((By.ID, "cancel-yes"))).click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "cancel-result"),
                                                f"cancelled 3 queued job(s) of batch {batch}"))

    def states(driver) -> list[str]:
        return driver.execute_script("return [...document.querySelectorAll('#jobs tbody tr')].map(r => "
                                     "r.cells[1].textContent)")

    wait.until(lambda d: states(d) == ["cancelled"] * 3)
    assert browser.execute_script("return document.querySelectorAll('#jobs b').length") == 0  # text, never HTML
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "page-cancel.png"))
