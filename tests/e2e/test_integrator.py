"""An integrator's view: an independent Kafka client (kcat) reads the public topics.

Every record on ``suggestions.v1`` must validate against the JSON Schema in ``contracts/`` with a
standard validator, and no private data (contact e-mails, subscriptions, alerts) may appear on any
public topic.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.e2e.platform import Platform
from tests.e2e.test_core_flow import company, eventually, post_project, register, subscribe, suggestions_for
from tests.infra import KafkaBroker

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "contracts" / "schemas"
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
    records = kcat_read(kafka_broker, f"{prefix}suggestions.v1")
    assert records, "kcat read nothing from suggestions.v1"
    validators: dict[str, jsonschema.protocols.Validator] = {}
    types = set()
    for record in records:
        value = json.loads(record["payload"])
        schema_path = SCHEMAS / f"{value['type']}.json"
        assert schema_path.exists(), f"no published schema for {value['type']}"
        if value["type"] not in validators:
            schema = json.loads(schema_path.read_text())
            jsonschema.Draft202012Validator.check_schema(schema)
            validators[value["type"]] = jsonschema.Draft202012Validator(
                schema, format_checker=jsonschema.FormatChecker()
            )
        validators[value["type"]].validate(value)
        assert record["key"] == value["subject"], "the record key is the aggregate id"
        types.add(value["type"])
    assert "bondgenoot.suggestions.computed.v1" in types
    assert project in {json.loads(r["payload"])["subject"] for r in records}


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
        for record in kcat_read(kafka_broker, f"{prefix}{topic}"):
            payload = record["payload"] or ""
            assert "contact_email" not in payload, f"contact_email on {topic}"
            assert not EMAIL.findall(payload), f"an e-mail address on public topic {topic}: {EMAIL.findall(payload)}"
            assert "subscription" not in json.loads(payload)["type"] and "alert" not in json.loads(payload)["type"]
