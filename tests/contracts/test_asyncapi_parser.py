"""The official AsyncAPI parser accepts contracts/asyncapi.json as it is checked in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from shared.contracts import CONTRACTS
from tests.contracts.official_tools import assert_parsed_as_published, official_asyncapi_parser


def test_the_official_asyncapi_parser_accepts_the_checked_in_document() -> None:
    (report,) = official_asyncapi_parser(str(CONTRACTS / "asyncapi.json"))
    assert_parsed_as_published(report)


def test_the_parser_check_fails_on_a_schema_reference_that_does_not_resolve(tmp_path: Path) -> None:
    """The check above can fail: one payload pointing at a missing file is an error, not a silent skip."""
    shutil.copytree(CONTRACTS, tmp_path / "contracts")
    document = json.loads((CONTRACTS / "asyncapi.json").read_text())
    message = document["components"]["messages"]["bondgenoot.project.posted.v1"]
    message["payload"]["$ref"] = "./schemas/bondgenoot.project.renamed.v1.json"
    broken = tmp_path / "contracts" / "asyncapi.json"
    broken.write_text(json.dumps(document))

    (report,) = official_asyncapi_parser(str(broken))

    errors = [d for d in report["diagnostics"] if d["severity"] == "error"]
    assert [d["code"] for d in errors] == ["invalid-ref"]
    assert "bondgenoot.project.posted.v1/payload" in errors[0]["path"]
