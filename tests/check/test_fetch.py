"""runner/check/fetch.py: a document fetched through the check's transport and address policy."""

from __future__ import annotations

import io

import pytest

from runner.check.fetch import Fetcher, FetchFailed
from runner.check.policy import AddressPolicy
from tests.support.targets import TargetServer


@pytest.fixture
def fetcher():
    f = Fetcher()
    yield f
    f.close()


def test_the_body_is_a_stream_and_each_request_takes_and_gives_back_its_leave(fetcher, target: TargetServer) -> None:
    asked: list[str] = []
    released: list[str] = []

    def admit(url: str):
        asked.append(url)
        return lambda: released.append(url)

    with fetcher.open(target.url("/ok"), admit=admit) as body:
        assert body.status == 200 and body.media_type == "text/html" and body.charset == "utf-8"
        assert body.url == target.url("/ok")
        assert released == []  # the leave is held while the body is read
        assert io.BufferedReader(body).read() == b"<html><head><title>ok page</title></head><body>OK</body></html>"
    assert asked == released == [target.url("/ok")]


def test_an_error_status_is_a_failure_with_its_status_and_whether_to_try_again(fetcher, target: TargetServer) -> None:
    released: list[str] = []
    with pytest.raises(FetchFailed) as failed:
        fetcher.open(target.url("/status/404"), admit=lambda url: lambda: released.append(url))
    assert str(failed.value) == f"{target.url('/status/404')}: HTTP 404 Not Found"
    assert failed.value.status == 404 and not failed.value.transient
    assert released == [target.url("/status/404")]
    with pytest.raises(FetchFailed) as failed:
        fetcher.open(target.url("/flaky?key=f&fail=5"))
    assert failed.value.status == 503 and failed.value.transient


def test_a_password_in_the_url_is_never_in_the_words(fetcher, target: TargetServer) -> None:
    url = target.url("/status/404").replace("http://", "http://user:s3cret@")
    with pytest.raises(FetchFailed) as failed:
        fetcher.open(url)
    assert "s3cret" not in str(failed.value) and "***" in str(failed.value)


def test_the_address_policy_is_the_check_s(target: TargetServer) -> None:
    strict = Fetcher(AddressPolicy(deny_private=True))
    try:
        with pytest.raises(FetchFailed, match=r"blocked by address policy: 127\.0\.0\.1"):
            strict.open(target.url("/ok"))
    finally:
        strict.close()
    anyone = Fetcher()
    try:  # the metadata service is refused on every worker, with or without --deny-private
        with pytest.raises(FetchFailed, match=r"blocked by address policy: 169\.254\.169\.254"):
            anyone.open("http://169.254.169.254/latest/meta-data/")
    finally:
        anyone.close()


def test_a_dead_host_is_a_transient_failure(fetcher) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchFailed, match="connection refused") as failed:
        fetcher.open(f"http://127.0.0.1:{port}/sitemap.xml")
    assert failed.value.status is None
