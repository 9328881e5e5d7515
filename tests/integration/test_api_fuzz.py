"""Property-based fuzzing of every service's OpenAPI document with schemathesis (#9 §6).

The services run in-process on PostgreSQL (tests/integration/fuzzing.py). For every operation
schemathesis sends schema-valid and schema-violating requests as the admin; each answer must be no
5xx, a documented status, of the documented content type, and match the documented schema; a
request that breaks the schema must be refused. ``FUZZ_EXAMPLES`` raises the number of generated
requests per operation (README: "Fuzzing the APIs for longer").
"""

from __future__ import annotations

import copy
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.infra import Databases
from tests.integration.apis import openapi_documents
from tests.integration.fuzzing import FuzzedApis, fuzzed_services

pytestmark = pytest.mark.infra

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
"""Generated requests per operation and mode, besides schemathesis' deterministic boundary cases."""
RANDOM = os.environ.get("FUZZ_RANDOM", "") not in ("", "0")
"""Unset: the same requests every run (a failure in `make test` is reproducible). Set: new ones each run."""

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
CONFIG = SchemathesisConfig.from_dict(
    {
        "phases": {"stateful": {"enabled": False}},
        "generation": {
            # Every request carries the admin's credentials (FuzzedApis.credentials): a generated or
            # removed Authorization header would not be what is sent. Refused tokens and roles are
            # tests/integration/test_documented_refusals.py's part.
            "with-security-parameters": False,
            # Undeclared query parameters, headers and body fields are ignored, as HTTP APIs do
            # (docs/limits.md); sending one is not a request that must be refused.
            "allow-extra-parameters": False,
        },
    }
)


@pytest.fixture(scope="module")
def fuzzed(pg_admin_url: str, request: pytest.FixtureRequest) -> Iterator[FuzzedApis]:
    databases = Databases(pg_admin_url)
    start = time.perf_counter()
    try:
        with fuzzed_services(databases) as apis:
            yield apis
    finally:
        databases.drop_all()
    statuses = Counter(status for counts in apis.observed.values() for status in counts.elements())
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:  # the numbers of this run, also under -q
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                f"[fuzz] {len(apis.observed)} operations, {apis.requests} requests "
                f"(FUZZ_EXAMPLES={EXAMPLES}{', random' if RANDOM else ''}) in {time.perf_counter() - start:.0f} s; "
                f"statuses {dict(sorted(statuses.items()))}"
            )


def as_schemathesis_reads_it(document: dict[str, Any]) -> dict[str, Any]:
    """The served document, with our per-event schema of a stream where schemathesis looks for it.

    The served 3.1 document describes an event stream's body as a string and one event as
    ``x-itemSchema`` (shared/published_contracts.py). schemathesis reads one event's schema from
    ``itemSchema`` (3.2), else from ``schema``; renaming the extension back makes it check every event
    of the alerts stream against what the document says an event is.
    """
    out = copy.deepcopy(document)
    for operations in out["paths"].values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                for media in response.get("content", {}).values():
                    if "x-itemSchema" in media:
                        media["itemSchema"] = media.pop("x-itemSchema")
    return out


DOCUMENTS = {service: as_schemathesis_reads_it(document) for service, document in openapi_documents().items()}


def fuzz(service: str) -> Callable[..., None]:
    """The fuzz test of one service: one pytest item per operation of its OpenAPI document."""
    # /healthz and /ops/dead-letters answer from the state of Kafka (and the database), not from any
    # input (they take none); without a broker here they are 503 by design. Covered by
    # tests/integration/test_outbox_parking.py and tests/integration/test_ops.py.
    schema = schemathesis.openapi.from_dict(DOCUMENTS[service], config=CONFIG).exclude(
        path=["/healthz", "/ops/dead-letters"]
    )

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @schema.parametrize()
    def test(case: Case, fuzzed: FuzzedApis) -> None:
        response, sent = fuzzed.send(service, case)
        case.validate_response(response, checks=CHECKS, transport_kwargs=sent)

    return test


test_fuzz_registry = fuzz("registry")
test_fuzz_projects = fuzz("projects")
test_fuzz_calls = fuzz("calls")
test_fuzz_matching = fuzz("matching")
test_fuzz_alerts = fuzz("alerts")
test_fuzz_consortia = fuzz("consortia")
