"""docs/limits.md names the tests that cover each class of limit: every one it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_docs_limits_names_exists() -> None:
    text = (ROOT / "docs" / "limits.md").read_text()
    missing, current = [], None
    for path, name in re.findall(r"`(tests/[\w/]+\.py)?(?:::(test_\w+))?`", text):
        if path:
            current = path
            if not (ROOT / path).is_file():
                missing.append(path)
                continue
        if name:
            assert current, f"::{name} before any test file"
            if not re.search(rf"def {name}\b", (ROOT / current).read_text()):
                missing.append(f"{current}::{name}")
    assert missing == []
