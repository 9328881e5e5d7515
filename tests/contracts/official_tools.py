"""The standard tools an integrator feeds our contracts to, run the way the README tells them to.

- AsyncAPI: the official parser (``@asyncapi/parser``, pinned in ``tests/contracts/package-lock.json``)
  through ``tests/contracts/asyncapi-check.js`` on Node.js; ``make node-deps`` (or ``.ci/run``) installs it.
- OpenAPI: the ``openapi-spec-validator`` CLI (PyPI), which validates each document against the OpenAPI
  version the document declares.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from shared.contracts import ASYNCAPI_VERSION
from shared.events import EVENT_TYPES, TOPICS
from shared.kafka import DLQ_SUFFIX

ROOT = Path(__file__).resolve().parents[2]
NODE_PROJECT = Path(__file__).resolve().parent
ASYNCAPI_CHECK = NODE_PROJECT / "asyncapi-check.js"

# The only diagnostic the parser may give: it recommends 3.1.0; we declare 3.0.0 on purpose
# (shared/contracts.py says why). Anything else — errors, warnings, other notes — fails the test.
ACCEPTED_DIAGNOSTICS = {("information", "asyncapi-latest-version")}


def official_asyncapi_parser(*sources: str) -> list[dict[str, Any]]:
    """One report per source (a file or an http URL) from ``asyncapi-check.js --json``."""
    node = shutil.which("node")
    assert node, "Node.js is needed for the AsyncAPI parser (Debian packages nodejs + npm; .ci/run installs them)"
    assert (NODE_PROJECT / "node_modules" / "@asyncapi" / "parser").is_dir(), (
        "the AsyncAPI parser is not installed: run `make node-deps` (npm ci in tests/contracts)"
    )
    out = subprocess.run(
        [node, str(ASYNCAPI_CHECK), "--json", *sources],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode in (0, 1), f"asyncapi-check.js crashed ({out.returncode}):\n{out.stderr}"
    reports = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert [r["source"] for r in reports] == list(sources), out.stdout + out.stderr
    return reports


def unexpected_diagnostics(report: dict[str, Any]) -> list[str]:
    return [
        f"{d['severity']} {d['code']} at {d['path']}: {d['message']}"
        for d in report["diagnostics"]
        if (d["severity"], d["code"]) not in ACCEPTED_DIAGNOSTICS
    ]


def assert_parsed_as_published(report: dict[str, Any]) -> None:
    """The parser read the whole contract: every topic, every message, every payload schema resolved."""
    where = report["source"]
    assert unexpected_diagnostics(report) == [], f"{where}: {unexpected_diagnostics(report)}"
    assert report["parsed"], where
    assert report["version"] == ASYNCAPI_VERSION, where
    assert sorted(report["channels"]) == sorted([*TOPICS, *(t + DLQ_SUFFIX for t in TOPICS)]), where
    messages = {m["name"]: m for m in report["messages"]}
    assert set(messages) == set(EVENT_TYPES), where
    for event_type, model in EVENT_TYPES.items():
        # Resolved, not just referenced: the payload is the schema file, with its $id and data fields.
        assert messages[event_type]["payloadId"] == model.dataschema(), (where, event_type)
        fields = sorted(model.model_json_schema()["properties"])
        assert messages[event_type]["dataProperties"] == fields, (where, event_type)


def openapi_spec_validator(*files: Path) -> subprocess.CompletedProcess[str]:
    """The ``openapi-spec-validator`` CLI: each document is checked against the version it declares."""
    cli = Path(sys.executable).with_name("openapi-spec-validator")
    assert cli.exists(), "openapi-spec-validator is a dev dependency (pip install -e '.[dev]')"
    return subprocess.run(
        [str(cli), "--validation-errors", "all", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
