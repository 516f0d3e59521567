"""Property-based requests over the whole OpenAPI schema (schemathesis): no 5xx, responses match the schema."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from app.main import create_app
from app.settings import Settings

app = create_app(
    Settings(access_log=False, memory_budget_mb=64, real_run_timeout_s=2.0, request_timeout_s=30.0, max_modules=2000)
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_never_fails_and_matches_its_schema(case) -> None:
    case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])
