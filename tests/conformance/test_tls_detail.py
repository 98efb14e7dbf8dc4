"""The TUI's TLS detail for a certificate nginx serves self-signed: "not verified" and why,
when checked as usual; "insecure" only when the check was told not to verify."""

from __future__ import annotations

from db import JobFilter, open_store
from tests.support.services import run_cli, runner_env
from tui.detail import tls_text

from .conftest import Site


def _detail_of(sqlite_url: str, url: str) -> str:
    store = open_store(sqlite_url)
    try:
        [view] = store.list_jobs(JobFilter(), limit=1)
        job = store.get_job(view.id)
    finally:
        store.close()
    assert job.url == url
    content = tls_text(job)
    assert content is not None, job.detail
    return content.plain


def test_self_signed_without_insecure_is_not_verified_and_says_why(site: Site, sqlite_url: str) -> None:
    url = f"https://127.0.0.1:{site.nginx.ports['self_signed']}/static/index.html"
    out = run_cli(["submit", url, "--wait", "--retries", "1"], runner_env(sqlite_url, None))
    assert out.returncode == 1 and "tls_error" in out.stdout, out.stdout + out.stderr
    shown = _detail_of(sqlite_url, url)
    assert "not verified: self-signed certificate" in shown and "insecure" not in shown


def test_insecure_says_insecure(site: Site, sqlite_url: str) -> None:
    url = f"https://127.0.0.1:{site.nginx.ports['self_signed']}/static/index.html"
    out = run_cli(["submit", url, "--wait", "--insecure"], runner_env(sqlite_url, None))
    assert out.returncode == 0, out.stdout + out.stderr
    shown = _detail_of(sqlite_url, url)
    assert "insecure" in shown and "not verified" not in shown
