"""Input validation shared by the HTTP APIs: each refusal is a 4xx naming the field (docs/limits.md).

Field types (text with maxima that storage, Kafka and mail can hold), the PATCH base class, and the
app-wide :func:`guard_input` dependency that ``shared.http.create_app`` puts on every route.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import Annotated, Any, ClassVar

import pycountry
from fastapi import HTTPException, Path, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

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


# The maxima bound what is read before the code is checked (a little room for spaces and a prefix),
# so every string a request sends shows a maxLength in OpenAPI (docs/limits.md).
CountryCode = Annotated[str, AfterValidator(_country), Field(max_length=8, examples=["BE"])]
DomainSlug = Annotated[str, AfterValidator(_domain), Field(max_length=60, examples=["cybersecurity"])]
ProgrammeCode = Annotated[str, AfterValidator(_programme), Field(max_length=40, examples=["FSDB"])]
EnterpriseNumber = Annotated[str, AfterValidator(normalise_kbo), Field(max_length=20, examples=["0417.497.106"])]

MAX_ENTITY_ID = 36
"""Companies, projects, accounts and alerts are named by UUIDs (36 characters; the admin account ``admin``)."""
MAX_TOPIC_ID = 200
"""Calls are named by their portal topic identifier (``services.calls.domain.normalise.MAX_IDENTIFIER``)."""
EntityIdPath = Annotated[str, Path(max_length=MAX_ENTITY_ID)]
TopicIdPath = Annotated[str, Path(max_length=MAX_TOPIC_ID)]
TargetIdPath = Annotated[str, Path(max_length=MAX_TOPIC_ID, description="A project's id or a call's identifier")]


# --------------------------------------------------------------------------- text that storage and mail can hold


def _bad_char(value: str, *, multiline: bool) -> str | None:
    """The first character a text field may not hold, described; None when the text is clean.

    NUL (PostgreSQL refuses it in text), lone surrogates (not encodable as UTF-8, so neither storable
    nor publishable), other control characters, and in single-line text also line and paragraph
    separators (they split mail headers and log lines).
    """
    for index, char in enumerate(value):
        category = unicodedata.category(char)
        if char in "\t\n\r" and multiline:
            continue
        if category in ("Cc", "Cs") or (not multiline and category in ("Zl", "Zp")):
            return f"character U+{ord(char):04X} at position {index}"
    return None


def _single_line(value: str) -> str:
    bad = _bad_char(value, multiline=False)
    if bad is not None:
        raise ValueError(f"may not contain control or line-separator characters ({bad})")
    return value


def _multi_line(value: str) -> str:
    bad = _bad_char(value, multiline=True)
    if bad is not None:
        raise ValueError(f"may not contain control characters other than tab and newline ({bad})")
    return value


def storable_text(value: str, *, limit: int, multiline: bool = False) -> str:
    """Text from a source we cannot refuse (another system's feed), made storable and publishable.

    Drops what no column or event can hold (NUL, lone surrogates, other control characters; line
    breaks too unless ``multiline``) and cuts the rest to ``limit`` characters, ending in "…" when cut.
    """
    kept = "".join(
        c for c in value if (multiline and c in "\t\n") or unicodedata.category(c) not in ("Cc", "Cs", "Zl", "Zp")
    )
    return kept if len(kept) <= limit else kept[: limit - 1] + "…"


def _max_length(limit: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if len(str(value)) > limit:
            raise ValueError(f"may be at most {limit} characters long")
        return value

    return check


SingleLine = AfterValidator(_single_line)
MultiLine = AfterValidator(_multi_line)

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), SingleLine]
"""Names, titles, cities: one line, at most 200 characters."""
Statement = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=500), SingleLine]
"""A capability statement: one line, 2..500 characters."""
Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60), SingleLine]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000), MultiLine]
"""Summaries and descriptions: tabs and newlines allowed, at most 10 000 characters."""
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), SingleLine]
"""An identifier of another system (a call topic id, a role name)."""

MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on a forward path
MAX_URL_LENGTH = 500
Email = Annotated[
    EmailStr, AfterValidator(_max_length(MAX_EMAIL_LENGTH)), Field(json_schema_extra={"maxLength": MAX_EMAIL_LENGTH})
]
WebUrl = Annotated[
    HttpUrl,
    # Checked on the normalised URL (punycode, percent-encoding): that is what is stored and published.
    AfterValidator(_max_length(MAX_URL_LENGTH)),
    Field(json_schema_extra={"maxLength": MAX_URL_LENGTH}),
]


# --------------------------------------------------------------------------- PATCH bodies


def _without_null(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """OpenAPI: a non-nullable field of a PATCH body is optional but not ``null``."""
    nullable: frozenset[str] = getattr(model, "nullable", frozenset())
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf")
        if name in nullable or not options:
            continue
        kept = [o for o in options if o.get("type") != "null"]
        if len(kept) == 1:
            del prop["anyOf"]
            prop.update(kept[0])
        else:
            prop["anyOf"] = kept
        if prop.get("default", 0) is None:
            del prop["default"]


class PartialUpdate(BaseModel):
    """A PATCH body: absent fields stay as they are; a present field must be valid.

    ``null`` is accepted only for the fields named in ``nullable`` (those the entity may leave
    empty); for every other field it is a 422 naming the field — never a NOT NULL violation (500)
    in the database.
    """

    model_config = ConfigDict(json_schema_extra=_without_null)

    nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*")
    @classmethod
    def _null_only_where_allowed(cls, value: Any, info: ValidationInfo) -> Any:
        # Runs only for fields present in the request: absence is fine, an explicit null is not.
        if value is None and info.field_name not in cls.nullable:
            raise ValueError("may not be null (leave the field out to keep its value)")
        return value


# --------------------------------------------------------------------------- every route


def _storage_safe_issues(value: Any, loc: tuple[str | int, ...]) -> Iterator[dict[str, Any]]:
    """Strings (and object keys) that storage cannot hold: NUL and lone surrogates."""
    if isinstance(value, str):
        for index, char in enumerate(value):
            if char == "\x00" or unicodedata.category(char) == "Cs":
                yield {
                    "type": "string_unstorable_character",
                    "loc": loc,
                    "msg": f"may not contain character U+{ord(char):04X} (position {index})",
                    # Replaced: the 422 answer itself must be encodable as UTF-8.
                    "input": value[:100].encode("utf-8", "replace").decode("utf-8"),
                }
                return
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _storage_safe_issues(key, (*loc, "<key>"))
            yield from _storage_safe_issues(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _storage_safe_issues(item, (*loc, index))


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def guard_input(request: Request) -> None:
    """An app-wide dependency: what no route may receive, refused with the field named.

    * 422 for NUL or a lone surrogate in any path parameter, query parameter or JSON string (or key):
      PostgreSQL refuses NUL in text and neither can be encoded as UTF-8 for Kafka.
    * 415 for a body sent to a route that takes JSON with another (or no) content type.

    FastAPI has read the body before dependencies run, so ``request.json()`` is the parsed body.
    """
    issues: list[dict[str, Any]] = []
    for name, value in request.path_params.items():
        issues += _storage_safe_issues(value, ("path", name))
    for name, value in request.query_params.multi_items():
        issues += _storage_safe_issues(value, ("query", name))
    route = request.scope.get("route")
    takes_body = isinstance(route, APIRoute) and route.body_field is not None
    if takes_body and await request.body():
        content_type = request.headers.get("content-type", "")
        if not _is_json(content_type):
            raise HTTPException(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                [
                    {
                        "type": "unsupported_media_type",
                        "loc": ["header", "content-type"],
                        "msg": f"send the body as application/json, not {content_type or 'without a content type'!r}",
                    }
                ],
            )
        issues += _storage_safe_issues(await request.json(), ("body",))
    if issues:
        raise RequestValidationError(issues)
