"""Shared steps of the browser journeys: log in, fill forms by label, fitting companies."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

DRONE_CAPABILITIES = [
    "Radar and RF detection of small drones",
    "AI sensor fusion for counter-UAS tracking",
    "Drone classification with deep learning on radar micro-Doppler",
]
PROJECT_SUMMARY = (
    "Detect, track and classify small drones near critical infrastructure by fusing radar, RF and EO/IR "
    "sensors with machine learning."
)
NEEDS = ["Radar detection of small drones", "Sensor fusion and tracking of UAS"]


def unique(name: str) -> str:
    return f"{name} {uuid.uuid4().hex[:6]}"


def company_body(name: str, *, country: str = "BE", capabilities: list[str] | None = None) -> dict[str, Any]:
    slug = uuid.uuid4().hex[:8]
    return {
        "name": name,
        "country": country,
        "city": "Leuven",
        "organisation_type": "company",
        "size": "small",
        "domains": ["aviation-counter-uas", "artificial-intelligence"],
        "capabilities": capabilities or DRONE_CAPABILITIES,
        "keywords": ["radar", "drone"],
        "contact_email": f"info-{slug}@example.org",
    }


def project_body(institute: str, title: str) -> dict[str, Any]:
    return {
        "title": title,
        "summary": PROJECT_SUMMARY,
        "programme": "FSDB",
        "institute": institute,
        "domains": ["aviation-counter-uas", "artificial-intelligence"],
        "sought_capabilities": NEEDS,
        "partners_wanted": 3,
        "contact_email": "lab@institute.example",
    }


def log_in(page: Page, token: str) -> None:
    page.goto("/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").last.click()
    page.wait_for_load_state()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def readme_screenshot(page: Page, name: str, *, top: str | None = None) -> None:
    """With BONDGENOOT_SCREENSHOTS=<dir> (e.g. docs/img), keep a screenshot of this page for the README."""
    folder = os.environ.get("BONDGENOOT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 1000, "height": 640})
        if top:
            page.locator(top).evaluate("e => e.scrollIntoView()")
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def mark_document(page: Page) -> None:
    """A marker that a reload would wipe: proves an update arrived without one."""
    page.evaluate("window.__noReload = true")


def not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("window.__noReload === true"))
