"""An integrator's view: standard tools only, fed what the platform publishes.

- An independent Kafka client (kcat) reads the public topics; the official CloudEvents SDK for Python
  parses every record it reads (Kafka protocol binding, structured mode) and a standard JSON Schema
  validator checks it against ``contracts/schemas/``. No private data (contact e-mails,
  subscriptions, alerts) may appear on any public topic.
- The official AsyncAPI parser accepts the ``/asyncapi`` document of every running service, resolving
  the schemas from that service; ``openapi-spec-validator`` accepts every service's ``/openapi.json``
  for the OpenAPI version it declares.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.exceptions import CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from shared.events import EVENT_TYPES
from shared.published_contracts import OPENAPI_VERSION
from tests.contracts.official_tools import assert_parsed_as_published, official_asyncapi_parser, openapi_spec_validator
from tests.e2e.platform import SERVICES, Platform
from tests.e2e.test_core_flow import company, eventually, post_project, register, subscribe, suggestions_for
from tests.infra import KafkaBroker

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "contracts" / "schemas"
DEFAULT_PORTS = {"8001": "registry", "8002": "projects", "8003": "calls", "8004": "matching", "8005": "alerts"}
PUBLIC_TOPICS = ("companies.v1", "projects.v1", "calls.v1", "suggestions.v1")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


def kcat_read(broker: KafkaBroker, topic: str) -> list[dict[str, Any]]:
    """Read a whole topic with kcat, one JSON object per record (key, partition, value)."""
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    assert kcat, "kcat is needed for the integrator test (Debian package 'kcat'; .ci/run installs it)"
    out = subprocess.run(
        [kcat, "-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-J"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def as_cloudevent(record: dict[str, Any]) -> BaseCloudEvent:
    """The CloudEvents SDK's reading of one kcat record (Kafka protocol binding, structured mode)."""
    flat = record.get("headers") or []
    headers = {str(flat[i]): (flat[i + 1] or "").encode() for i in range(0, len(flat), 2)}
    # The binding tells the modes apart by this header; structured mode carries the whole envelope.
    assert headers.get("content-type", b"").startswith(b"application/cloudevents+json"), headers
    key = record["key"].encode() if record.get("key") is not None else None
    message = KafkaMessage(headers=headers, key=key, value=record["payload"].encode())
    return from_structured(message, JSONFormat(), CloudEvent)


_validators: dict[str, jsonschema.protocols.Validator] = {}


def schema_validator(event_type: str) -> jsonschema.protocols.Validator:
    if event_type not in _validators:
        schema_path = SCHEMAS / f"{event_type}.json"
        assert schema_path.exists(), f"no published schema for {event_type}"
        schema = json.loads(schema_path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        _validators[event_type] = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    return _validators[event_type]


def consume(broker: KafkaBroker, topic: str) -> list[tuple[dict[str, Any], BaseCloudEvent]]:
    """Every record of a topic, each parsed by the CloudEvents SDK and validated against its schema."""
    consumed = []
    for record in kcat_read(broker, topic):
        event = as_cloudevent(record)
        value = json.loads(record["payload"])
        schema_validator(event.get_type()).validate(value)
        assert event.get_specversion() == "1.0"
        assert event.get_id() == value["id"] and event.get_type() == value["type"]
        assert event.get_dataschema() == EVENT_TYPES[event.get_type()].dataschema()
        assert event.get_data() == value["data"]
        assert event.get_subject() == record["key"], "the record key is the aggregate id"
        assert event.get_extension("partitionkey") == record["key"]  # the binding maps the key so
        time = event.get_time()
        assert time is not None and time.tzinfo is not None
        consumed.append((record, event))
    return consumed


def test_the_sdk_check_rejects_an_envelope_without_source_and_a_binary_mode_record() -> None:
    """``consume`` has teeth: the SDK refuses a broken envelope, and only structured mode passes."""
    envelope = {"specversion": "1.0", "id": "e1", "type": "bondgenoot.call.closed.v1", "subject": "c1", "data": {}}
    record = {
        "key": "c1",
        "payload": json.dumps(envelope),
        "headers": ["content-type", "application/cloudevents+json; charset=UTF-8"],
    }
    with pytest.raises(CloudEventValidationError, match="source"):
        as_cloudevent(record)
    binary = {**record, "headers": ["content-type", "application/json", "ce_specversion", "1.0"]}
    with pytest.raises(AssertionError):
        as_cloudevent(binary)


def test_kcat_reads_suggestions_that_validate_against_the_published_schemas(
    platform: Platform, kafka_broker: KafkaBroker
) -> None:
    tag = uuid.uuid4().hex[:6]
    fit = register(
        platform,
        company(
            f"Integrator Radar {tag}",
            domains=["aviation-counter-uas"],
            capabilities=["Radar detection of small drones", "Counter-UAS sensor fusion"],
        ),
    )
    subscribe(platform, fit)
    project = post_project(platform, title=f"Integrator counter-drone study {tag}")
    eventually(lambda: fit in {s["company_id"] for s in suggestions_for(platform, project)}, what="suggestions")

    prefix = platform.prefix  # type: ignore[attr-defined]
    consumed = consume(kafka_broker, f"{prefix}suggestions.v1")
    assert consumed, "kcat read nothing from suggestions.v1"
    assert "bondgenoot.suggestions.computed.v1" in {event.get_type() for _, event in consumed}
    assert project in {event.get_subject() for _, event in consumed}


def test_no_private_data_on_public_topics(platform: Platform, kafka_broker: KafkaBroker) -> None:
    tag = uuid.uuid4().hex[:6]
    secret_mail = f"private-{tag}@hidden.example"
    body = company(f"Private Co {tag}", domains=["cybersecurity"], capabilities=["Network intrusion detection"])
    body["contact_email"] = secret_mail
    register(platform, body)
    post_project(platform, title=f"Private project {tag}", contact_email=f"lead-{tag}@hidden.example")
    prefix = platform.prefix  # type: ignore[attr-defined]
    eventually(
        lambda: any(tag in r["payload"] for r in kcat_read(kafka_broker, f"{prefix}projects.v1")), what="project event"
    )
    eventually(
        lambda: any(tag in r["payload"] for r in kcat_read(kafka_broker, f"{prefix}companies.v1")), what="company event"
    )
    for topic in PUBLIC_TOPICS:
        for record, event in consume(kafka_broker, f"{prefix}{topic}"):
            payload = record["payload"]
            assert "contact_email" not in payload, f"contact_email on {topic}"
            assert not EMAIL.findall(payload), f"an e-mail address on public topic {topic}: {EMAIL.findall(payload)}"
            assert "subscription" not in event.get_type() and "alert" not in event.get_type()
            assert EVENT_TYPES[event.get_type()].public, f"{event.get_type()} on public topic {topic}"


def test_the_official_asyncapi_parser_accepts_the_document_every_service_serves(platform: Platform) -> None:
    """Schemas resolve from the serving service itself: no host we do not run is ever fetched."""
    urls = [f"{platform[name].url}/asyncapi" for name in SERVICES]
    for report in official_asyncapi_parser(*urls):
        assert_parsed_as_published(report)


def test_every_service_serves_openapi_valid_for_the_version_it_declares(platform: Platform, tmp_path: Path) -> None:
    files = []
    for name in SERVICES:
        answer = httpx.get(f"{platform[name].url}/openapi.json", timeout=30)
        assert answer.status_code == 200, name
        assert answer.json()["openapi"] == OPENAPI_VERSION, name
        files.append(tmp_path / f"{name}.openapi.json")
        files[-1].write_bytes(answer.content)
    result = openapi_spec_validator(*files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"{f}: OK" for f in files]


def readme_contract_checks() -> list[str]:
    """The command lines of the README block that follows "Run the same checks yourself"."""
    text = (ROOT / "README.md").read_text()
    start = text.index("```\n", text.index("Run the same checks yourself")) + 4
    return text[start : text.index("\n```", start)].splitlines()


def test_the_readme_contract_checks_pass_as_written(platform: Platform) -> None:
    """The integrator's commands, run as written, against this platform's ports instead of the defaults."""
    install, *checks = readme_contract_checks()
    # `make node-deps` (run before the tests, by `make test` and .ci/run) is that same npm ci.
    makefile = (ROOT / "Makefile").read_text()
    assert set(install.split()) <= set(re.findall(r"^\t(npm ci .*)$", makefile, re.M)[0].split())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for line in checks:
        command = re.sub(r"127\.0\.0\.1:(800[1-5])", lambda m: platform[DEFAULT_PORTS[m[1]]].url[7:], line)
        out = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
        )
        assert out.returncode == 0, f"{line}\n{out.stdout}\n{out.stderr}"
    assert len(checks) == 3
