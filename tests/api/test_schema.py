"""Schemathesis against ``runner serve``: cases generated from its own OpenAPI document,
bounded in number. Every check runs: no 5xx, documented status codes, content types,
headers and bodies valid against the schema, what the document allows accepted and what it
forbids refused, auth not ignored, Allow headers. The old system's four paths leave out the
two data checks: they read their input as the old app did (test_legacy); the URL views
leave out the positive one (a URL, exclusive parameters: more than JSON Schema says)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from tests.api.conftest import Server, serve
from tests.support import services

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq]


@pytest.fixture(scope="module")
def queued_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Jobs go to a RabbitMQ queue no worker reads: the generated URLs are never checked
    (no DNS lookups, no traffic beyond 127.0.0.1)."""
    tmp = tmp_path_factory.mktemp("schema")
    broker = services.broker_url()
    queue = services.new_queue_name()
    env = services.runner_env(f"sqlite:///{tmp}/api.db", broker, queue)
    try:
        with serve(env, tmp / "serve.log") as server:
            yield server
    finally:
        services.delete_queues(broker, queue)


@pytest.fixture(scope="module")
def api_token(queued_server: Server) -> str:
    return queued_server.token("schemathesis")


@pytest.fixture(scope="module")
def api_schema(queued_server: Server, api_token: str):
    return schemathesis.openapi.from_url(queued_server.base + "/openapi.json")


# The event stream never ends: its answers are checked in test_services, not fuzzed here.
OLD_PATHS = {"/add_job", "/get_jobs", "/api/add_job", "/api/get_jobs"}
URL_PATHS = {"/api/v1/urls", "/api/v1/urls/history", "/api/v1/changes"}
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/api/v1/events")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_document(case, queued_server: Server, api_token: str) -> None:
    # The old system's paths answer as it did (a non-numeric limit is 200 [], a URL is read
    # leniently): what they accept is their contract (test_legacy), not a JSON Schema's.
    lenient = ([checks.positive_data_acceptance, checks.negative_data_rejection]
               if case.operation.path in OLD_PATHS else [])
    if case.operation.path in URL_PATHS:
        # What JSON Schema cannot say: a URL `submit` takes, `since` and `batch` exclusive,
        # a cursor from an earlier page. Those refusals are 422 naming the parameter
        # (test_urls_api); the document still forbids what the server refuses.
        lenient = [checks.positive_data_acceptance]
    if any(name.lower() == "authorization" for name in case.headers or {}):
        # The token below replaces the Authorization header generated: a case made negative by
        # that header is sent as a valid one (seen once: "schema-violating request accepted").
        lenient = [*lenient, checks.negative_data_rejection]
    case.call_and_validate(base_url=queued_server.base, headers={"Authorization": f"Bearer {api_token}"},
                           timeout=30, excluded_checks=lenient)
