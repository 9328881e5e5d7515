"""requirements.lock is what `make venv` and `.ci/run` install: it must cover pyproject.toml, and it must be what runs.

A dependency added to pyproject.toml without `make lock` would be missing on a fresh machine (the
editable install is ``--no-deps``); a venv that drifted from the lock would test other versions than
CI installs.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


def _pins() -> dict[str, list[tuple[str, Marker | None]]]:
    """Every ``name==version [; marker]`` line of the lock (a name may be pinned per Python version)."""
    pins: dict[str, list[tuple[str, Marker | None]]] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        found = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", line)
        if found:
            name, version, marker = found.groups()
            pins.setdefault(canonicalize_name(name), []).append((version, Marker(marker) if marker else None))
    return pins


def test_lock_pins_every_declared_dependency_within_its_bounds() -> None:
    pins = _pins()
    problems = []
    for req in _declared():
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name} is in pyproject.toml but not in requirements.lock")
            continue
        problems += [
            f"requirements.lock pins {req.name}=={version}, outside {req.specifier}"
            for version, _ in pins[name]
            if not req.specifier.contains(version, prereleases=True)
        ]
    assert not problems, "run `make lock`:\n" + "\n".join(problems)


def test_installed_versions_are_the_locked_ones() -> None:
    drifted = []
    for name, versions in _pins().items():
        wanted = [v for v, marker in versions if marker is None or marker.evaluate()]
        if not wanted:
            continue  # not for this platform / Python
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            drifted.append(f"{name} is locked ({wanted[0]}) but not installed")
            continue
        if installed not in wanted:
            drifted.append(f"{name} {installed} installed, {wanted[0]} locked")
    assert not drifted, "run `make venv`:\n" + "\n".join(drifted)
