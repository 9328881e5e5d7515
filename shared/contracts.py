"""Generate the event contracts in ``contracts/`` from the pydantic models (``make contracts``).

The models in ``shared.events`` are the source of truth. This writes one JSON Schema per event type
(the whole CloudEvent, with ``data`` pinned to that type's schema) and one AsyncAPI 3 document naming
every topic, message, key and the envelope. ``--check`` exits 1 when the checked-in files are stale.

Each schema's ``$id`` (= the events' ``dataschema``) is a stable *name* under ``shared.events.base.SCHEMA_BASE``, never
fetched. The AsyncAPI document points at the schema files by relative reference (``./schemas/<type>.json``),
so it resolves wherever contracts/ is read; a running service serves the same document with those
references made absolute to itself (``shared.contract_routes``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shared.events import EVENT_TYPES, TOPICS, CloudEvent, EventData
from shared.kafka import DLQ_SUFFIX
from shared.settings import REPO_ROOT

CONTRACTS = REPO_ROOT / "contracts"
SCHEMA_REF_BASE = "./schemas"
"""Where the AsyncAPI document finds the schema files, relative to itself."""

# 3.0.0, not 3.1.0: 3.1 adds only ROS 2 bindings, free-form example headers and the 3.1 schemaFormat
# names, none of which this document uses, so it conforms to 3.0.0 and every 3.x tool reads it. The
# official parser notes "asyncapi-latest-version" (information, not a warning) for that choice.
ASYNCAPI_VERSION = "3.0.0"

TOPIC_DESCRIPTIONS = {
    "companies.v1": "Public company profiles (no contact details). Key: company id.",
    "projects.v1": "Research projects posted by institutes. Key: project id.",
    "calls.v1": "Funding calls (EDF topics, ...) found by the call watcher. Key: call (topic) id.",
    "suggestions.v1": "Ranked, explained partner suggestions and consortium proposals. Key: target id.",
    "alerts.v1": "Alerts raised for subscribed companies (private). Key: company id.",
    "consortia.v1": "Consortium drafts, invitations and outcomes (private). Key: consortium id.",
}


def event_schema(model: type[EventData]) -> dict[str, Any]:
    """The JSON Schema of a whole CloudEvent carrying ``model`` as its data."""
    envelope = CloudEvent.model_json_schema()
    data = model.model_json_schema(ref_template="#/$defs/{model}")
    defs = {**envelope.pop("$defs", {}), **data.pop("$defs", {})}
    props = envelope["properties"]
    props["type"] = {"const": model.event_type, "type": "string"}
    props["data"] = data
    props["dataschema"] = {"const": model.dataschema(), "type": "string"}
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": model.dataschema(),
        **envelope,
        "title": model.event_type,
        "description": (model.__doc__ or "").strip() or model.event_type,
        "required": sorted({*envelope.get("required", []), "id", "type", "source", "subject", "data"}),
    }
    if defs:
        schema["$defs"] = defs
    return schema


def asyncapi_document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in TOPICS:
        types = sorted(t for t, m in EVENT_TYPES.items() if m.topic == topic)
        public = all(EVENT_TYPES[t].public for t in types)
        channel_id = topic.replace(".", "_")
        channels[channel_id] = {
            "address": topic,
            "description": TOPIC_DESCRIPTIONS[topic] + ("" if public else " Not for integrators."),
            "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in types},
            "bindings": {"kafka": {"topic": topic, "partitions": 3, "bindingVersion": "0.5.0"}},
            "x-public": public,
        }
        channels[channel_id + "_dlq"] = {
            "address": topic + DLQ_SUFFIX,
            "description": (
                f"Dead letters of {topic}: the original record unchanged, with headers dlq.reason, "
                "dlq.error, dlq.consumer, dlq.original.topic, dlq.original.partition, dlq.original.offset."
            ),
            "x-public": False,
        }
        operations[f"receive_{channel_id}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{t}"} for t in types],
        }
        for t in types:
            messages[t] = {
                "name": t,
                "title": t,
                "contentType": "application/cloudevents+json",
                "payload": {"$ref": f"{SCHEMA_REF_BASE}/{t}.json"},
                "headers": {
                    "type": "object",
                    "properties": {
                        "content-type": {"const": "application/cloudevents+json; charset=UTF-8"},
                        "traceparent": {"type": "string", "description": "W3C trace context"},
                    },
                },
                "bindings": {
                    "kafka": {
                        "key": {"type": "string", "description": "The aggregate id (CloudEvent subject)"},
                        "bindingVersion": "0.5.0",
                    }
                },
            }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Bondgenoot event streams",
            "version": "1.0.0",
            "description": (
                "Every record value is a CloudEvents 1.0 envelope in structured JSON mode "
                "(specversion, id, source, type, subject, time, datacontenttype, dataschema, data); "
                "the record key is the aggregate id (= subject); the W3C traceparent travels in the "
                "record headers. Delivery is at-least-once: deduplicate on the CloudEvent id."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "make run / make kafka-up",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {"CloudEvent": CloudEvent.model_json_schema()},
        },
    }


def render() -> dict[Path, str]:
    files: dict[Path, str] = {}
    for event_type, model in sorted(EVENT_TYPES.items()):
        files[CONTRACTS / "schemas" / f"{event_type}.json"] = _dump(event_schema(model))
    files[CONTRACTS / "asyncapi.json"] = _dump(asyncapi_document())
    return files


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def stale(files: dict[Path, str]) -> list[Path]:
    out = [p for p, body in files.items() if not p.exists() or p.read_text() != body]
    known = set(files)
    out += [p for p in (CONTRACTS / "schemas").glob("*.json") if p not in known]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when contracts/ is out of date")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        bad = stale(files)
        for p in bad:
            print(f"stale contract: {p.relative_to(REPO_ROOT)} (run `make contracts`)", file=sys.stderr)
        return 1 if bad else 0
    (CONTRACTS / "schemas").mkdir(parents=True, exist_ok=True)
    for p in (CONTRACTS / "schemas").glob("*.json"):
        if p not in files:
            p.unlink()
    for p, body in files.items():
        p.write_text(body)
    print(f"wrote {len(files)} contract files to {CONTRACTS.relative_to(REPO_ROOT)}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
