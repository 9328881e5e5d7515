"""The vendored htmx files are exactly the pinned npm packages (no CDN, no build step)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
VENDOR = ROOT / "services" / "portal" / "static" / "vendor"
PACKAGES = {
    "htmx.org": ("dist/htmx.min.js", "htmx.min.js", "2."),
    "htmx-ext-sse": ("dist/sse.min.js", "htmx-ext-sse.min.js", "2.2."),
}


def test_package_json_pins_htmx_2() -> None:
    pins = json.loads((ROOT / "package.json").read_text())["devDependencies"]
    lock = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    for name, (_, _, major) in PACKAGES.items():
        assert pins[name].startswith(major), f"{name} must stay on {major}x (the npm latest tag is 4.x)"
        assert lock[f"node_modules/{name}"]["version"] == pins[name]


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_the_vendored_file_is_the_installed_package(name: str) -> None:
    source, vendored, _ = PACKAGES[name]
    installed = ROOT / "node_modules" / name / source
    if not installed.is_file():
        pytest.fail("node_modules is missing: run `npm ci` (.ci/run does)")
    assert (VENDOR / vendored).read_bytes() == installed.read_bytes(), f"copy {installed} to {VENDOR / vendored}"
