"""Property-based requests over the whole OpenAPI schema (schemathesis): no 5xx, responses match the schema.

The one 5xx the API documents on purpose is 504, a request stopped at its deadline (the
fuzzer finds costly corners, such as the largest batch of a model sharded over 1,023
GPUs): it must then be the documented JSON error, never an unhandled failure.
"""

from __future__ import annotations

import time

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import response_schema_conformance

from app.main import create_app
from app.settings import Settings

app = create_app(
    Settings(access_log=False, memory_budget_mb=64, real_run_timeout_s=2.0, request_timeout_s=3.0, max_modules=2000)
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
CLIENT_TIMEOUT_S = 10.0  # what a fuzzer's client waits: every answer (a 504 at the deadline included) comes sooner


@schemathesis.check
def no_server_error_but_a_deadline(ctx, response, case) -> None:
    """Nothing answers 5xx except a documented 503 (device busy) or 504 (deadline), with its JSON body."""
    if response.status_code >= 500:
        assert response.status_code in (503, 504), f"{response.status_code}: {response.text[:300]}"
        body = response.json()
        assert body["detail"] and "Traceback" not in body["detail"]


# Sizing a model (memory of every optimizer, the largest batch or context, a step's time, comparisons) traces it
# several times per request: fewer generated cases; the coverage phase's boundary cases (the largest batch, 1,024
# GPUs) are kept, and must answer within the client's timeout like the rest.
COSTLY = r"^/api/(max-batch|max-context|serving|step-time|memory|compare)"


def call_in_time(case) -> None:
    started = time.monotonic()
    case.call_and_validate(checks=[no_server_error_but_a_deadline, response_schema_conformance])
    elapsed = time.monotonic() - started
    assert elapsed < CLIENT_TIMEOUT_S, f"{case.method} {case.path} answered in {elapsed:.1f} s: {case.body!r:.300}"


@schema.exclude(path_regex=COSTLY).parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_never_fails_and_matches_its_schema(case) -> None:
    call_in_time(case)


@schema.include(path_regex=COSTLY).parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_sizing_never_fails_and_matches_its_schema(case) -> None:
    call_in_time(case)
