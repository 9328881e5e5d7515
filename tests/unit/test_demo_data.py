"""The demo data that `make run` seeds (deploy/local/demo) is valid against the contracts and the APIs."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pycountry
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "deploy" / "local" / "demo"
TAXONOMY = json.loads((ROOT / "contracts" / "taxonomy.json").read_text())
DOMAINS = {d["slug"] for d in TAXONOMY["domains"]}
PROGRAMMES = {p["code"] for p in TAXONOMY["programmes"]}
COMPANY_FIELDS = {
    "name",
    "country",
    "city",
    "enterprise_number",
    "organisation_type",
    "size",
    "domains",
    "capabilities",
    "keywords",
    "website",
    "contact_email",
    "parent_group",
}
REQUIRED_COMPANY_FIELDS = COMPANY_FIELDS - {"enterprise_number", "parent_group"}


def _load(name: str) -> Any:
    return json.loads((DEMO / name).read_text(encoding="utf-8"))


COMPANIES: list[dict[str, Any]] = _load("companies.json")
SUBSCRIPTIONS: dict[str, dict[str, Any]] = _load("subscriptions.json")
PROJECTS: list[dict[str, Any]] = _load("projects.json")


def _kbo_is_valid(number: str) -> bool:
    digits = re.sub(r"[\s.]", "", number)
    return bool(re.fullmatch(r"[01]\d{9}", digits)) and 97 - int(digits[:8]) % 97 == int(digits[8:])


def _request_model(module: str, name: str) -> Any:
    """A service's request model, or skip while that service is still being written."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        pytest.skip(f"{module}.{name} does not exist yet")


def test_about_forty_companies_with_unique_names() -> None:
    names = [c["name"] for c in COMPANIES]
    assert 35 <= len(names) <= 50
    assert len(set(names)) == len(names)


def test_every_company_has_exactly_the_registry_fields() -> None:
    for company in COMPANIES:
        assert REQUIRED_COMPANY_FIELDS <= company.keys() <= COMPANY_FIELDS, company["name"]


def test_every_domain_is_known_and_every_domain_is_covered() -> None:
    used = {slug for c in COMPANIES for slug in c["domains"]}
    assert used <= DOMAINS
    assert used == DOMAINS
    for company in COMPANIES:
        assert 1 <= len(company["domains"]) <= 3, company["name"]
        assert len(set(company["domains"])) == len(company["domains"]), company["name"]


def test_countries_are_iso_codes_mostly_belgian_with_one_outside_eu_and_nato() -> None:
    countries = [c["country"] for c in COMPANIES]
    for code in countries:
        assert pycountry.countries.get(alpha_2=code) is not None, code
    assert countries.count("BE") > len(countries) / 3
    groups = TAXONOMY["country_groups"]
    eu_or_nato = set(groups["EU"]) | set(groups["NATO"])
    assert any(c not in eu_or_nato for c in countries), "one company shows eligibility filtering"
    assert any(c in set(groups["NATO"]) - set(groups["EU"]) for c in countries)


def test_enterprise_numbers_pass_the_kbo_check_and_are_unique() -> None:
    numbers = [c["enterprise_number"] for c in COMPANIES if "enterprise_number" in c]
    assert numbers, "some Belgian companies carry an enterprise number"
    assert len(set(numbers)) == len(numbers)
    for company in COMPANIES:
        if "enterprise_number" in company:
            assert company["country"] == "BE", company["name"]
            assert _kbo_is_valid(company["enterprise_number"]), company["name"]


def test_kbo_check_rejects_a_wrong_check_digit() -> None:
    assert _kbo_is_valid("0417.497.106")
    assert not _kbo_is_valid("0417.497.107")


def test_profiles_are_concrete() -> None:
    for company in COMPANIES:
        name = company["name"]
        assert company["organisation_type"] in {"company", "research", "public", "other"}, name
        assert company["size"] in {"micro", "small", "medium", "large"}, name
        assert 3 <= len(company["capabilities"]) <= 6, name
        assert all(20 <= len(c) <= 200 for c in company["capabilities"]), name
        assert 3 <= len(company["keywords"]) <= 8, name
        assert re.fullmatch(r"https://[a-z0-9-]+\.example", company["website"]), name
        domain = company["website"].removeprefix("https://")
        assert company["contact_email"].endswith(f"@{domain}"), name
    assert {"research", "public", "other"} <= {c["organisation_type"] for c in COMPANIES}


def test_a_few_companies_share_a_parent_group() -> None:
    groups = [c["parent_group"] for c in COMPANIES if c.get("parent_group")]
    assert 2 <= len(groups) <= 4
    assert len(set(groups)) < len(groups)


def test_companies_pass_the_registry_request_model() -> None:
    company_create = _request_model("services.registry.models", "CompanyCreate")
    for company in COMPANIES:
        company_create.model_validate(company)


def test_subscriptions_name_registered_companies_and_known_terms() -> None:
    names = {c["name"] for c in COMPANIES}
    assert 8 <= len(SUBSCRIPTIONS) <= 16
    for name, body in SUBSCRIPTIONS.items():
        assert name in names
        assert set(body) == {"programmes", "domains", "keywords", "min_score", "active"}, name
        assert set(body["programmes"]) <= PROGRAMMES, name
        assert set(body["domains"]) <= DOMAINS, name
        assert 0.0 <= body["min_score"] <= 1.0, name
    assert any(not (b["programmes"] or b["domains"] or b["keywords"]) for b in SUBSCRIPTIONS.values())


def test_subscriptions_pass_the_alerts_request_model() -> None:
    subscription_in = _request_model("services.alerts.models", "SubscriptionIn")
    for body in SUBSCRIPTIONS.values():
        subscription_in.model_validate(body)


def test_projects_are_fsdb_projects_seeking_at_least_three_capabilities() -> None:
    assert len(PROJECTS) == 2
    assert len({p["title"] for p in PROJECTS}) == len(PROJECTS)
    for project in PROJECTS:
        assert project["programme"] == "FSDB"
        assert len(project["sought_capabilities"]) >= 3
        assert set(project["domains"]) <= DOMAINS
        assert project["deadline"].startswith("2027-")
        assert project["partners_wanted"] >= 1


def test_projects_pass_the_projects_request_model() -> None:
    project_create = _request_model("services.projects.models", "ProjectCreate")
    for project in PROJECTS:
        project_create.model_validate(project)
