"""Eligibility per programme (country of establishment)."""

from __future__ import annotations

import pytest

from services.matching.matcher import CompanyProfile, Matcher, Target


def _target(programme: str) -> Target:
    return Target(target_type="call", id=f"T-{programme}", title="t", programme=programme)  # type: ignore[arg-type]


def _company(country: str) -> CompanyProfile:
    return CompanyProfile(id=f"c-{country}", name=f"Company {country}", country=country)


@pytest.mark.parametrize(
    ("programme", "country", "expected"),
    [
        ("EDF", "FR", True),
        ("EDF", "NO", True),  # the EDF-associated country
        ("EDF", "EL", True),  # EU spelling of Greece
        ("EDF", "US", False),
        ("EDF", "GB", False),
        ("EDF", "CH", False),
        ("FSDB", "BE", True),
        ("FSDB", "NL", False),
        ("VLAIO", "BE", True),
        ("VLAIO", "FR", False),
        ("DEFRA", "BE", True),
        ("DEFRA", "DE", False),
        ("DIANA", "US", True),
        ("DIANA", "NO", True),
        ("DIANA", "CH", False),
        ("DIANA", "AT", False),  # EU but not NATO
        ("OTHER", "CH", True),
        ("OTHER", "JP", True),
    ],
)
def test_eligibility_per_programme(programme: str, country: str, expected: bool) -> None:
    ok, why = Matcher().eligible(_company(country), _target(programme))
    assert ok is expected
    assert programme in why and why


def test_unknown_programme_is_open() -> None:
    target = Target(target_type="call", id="X", title="x", programme="HORIZON")  # type: ignore[arg-type]
    assert target.programme == "OTHER"
    assert Matcher().eligible(_company("JP"), target)[0]
