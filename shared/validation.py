"""Field types shared by the HTTP APIs: each rejects bad input with a message naming the field."""

from __future__ import annotations

import re
from typing import Annotated

import pycountry
from pydantic import AfterValidator, Field, StringConstraints

from shared.taxonomy import load_taxonomy


def _country(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return code


def _domain(value: str) -> str:
    slug = value.strip().lower()
    known = load_taxonomy().domain_slugs
    if slug not in known:
        raise ValueError(f"unknown domain {value!r}; expected one of {sorted(known)}")
    return slug


def _programme(value: str) -> str:
    code = value.strip().upper()
    known = load_taxonomy().programme_codes
    if code not in known:
        raise ValueError(f"unknown programme {value!r}; expected one of {sorted(known)}")
    return code


def normalise_kbo(value: str) -> str:
    """Validate a Belgian enterprise number (KBO/BCE) and return it as ``0123.456.749``.

    The number has ten digits starting with 0 or 1; the last two are 97 minus the first eight
    modulo 97.
    """
    digits = re.sub(r"[\s.\-]", "", value.strip().upper())
    digits = digits.removeprefix("BE")
    if len(digits) == 9:
        digits = "0" + digits  # the old nine-digit form
    if not re.fullmatch(r"[01]\d{9}", digits):
        raise ValueError(f"{value!r} is not a Belgian enterprise number (10 digits starting with 0 or 1)")
    if 97 - int(digits[:8]) % 97 != int(digits[8:]):
        raise ValueError(f"{value!r} fails the enterprise number check digits")
    return f"{digits[:4]}.{digits[4:7]}.{digits[7:]}"


CountryCode = Annotated[str, AfterValidator(_country), Field(examples=["BE"])]
DomainSlug = Annotated[str, AfterValidator(_domain), Field(examples=["cybersecurity"])]
ProgrammeCode = Annotated[str, AfterValidator(_programme), Field(examples=["FSDB"])]
EnterpriseNumber = Annotated[str, AfterValidator(normalise_kbo), Field(examples=["0417.497.106"])]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Statement = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=500)]
Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]
