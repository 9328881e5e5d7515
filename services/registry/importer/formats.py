"""The two Funding & Tenders Portal formats the importer reads, and the typed records made of them.

What the formats are based on
-----------------------------
No portal is reachable from here, so the shapes follow the public harvester that produced the EDF
data set in ``shared/data/edf/edf_calls.json`` (infonodesETS/manintheloop,
``refactoringDB/scripts/fetch_edf_bulk.py``), read together with the fields of that data set:

* ``GET .../opportunities/api/topicProjectsList.json?topicId={ccm2Id}`` answers a JSON **array**, one
  object per funded project; the harvester reads ``programId`` (the framework programme, 44181033 for
  EDF), ``businessIdentifier`` (the project number), ``title`` and ``acronym``. We also accept an object
  wrapping the array under ``projects`` and ``projectId``/``programmeId`` as spellings, in case the
  endpoint changes; other fields are ignored.
* ``GET .../search-api/prod/rest/document/{programId}{businessIdentifier}?apiKey=SEDIA_NONH2020_PROD``
  answers a search-api document whose ``metadata`` maps names to **arrays of strings**: ``status``,
  ``startDate``/``endDate`` (``2024-12-01T00:00:00.000+0100``), ``overallBudget``,
  ``euContributionAmount``, ``objective``, ``typeOfAction`` and ``participants``. ``participants`` holds
  a JSON **string** (the harvester decodes the first array element); we decode every element, each a
  JSON array or object. A participant has ``pic``, ``legalName``, ``role`` (``coordinator``,
  ``participant``, ``thirdParty``, ``associatedPartner``), ``order``, ``status``, ``activityType``,
  ``organizationType``, ``type`` (PRC, REC, HES, PUB, OTH), ``sme`` (boolean), ``postalAddress`` with
  ``countryCode`` (``{"abbreviation": "IT", "description": "Italy"}`` or a plain code), ``city``,
  ``postalCode`` and ``street``, ``webLink`` and ``eucontribution``.

Anything that does not fit raises :class:`FormatError` naming what was wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

EDF_PROGRAMME_ID = "44181033"
PROGRAMME_CODES: dict[str, str] = {EDF_PROGRAMME_ID: "EDF"}
"""Portal framework-programme ids to Bondgenoot programme codes."""

_PIC = re.compile(r"^\d{9}$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
_WHITESPACE = re.compile(r"\s+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")

ROLE_NAMES: dict[str, str] = {
    "coordinator": "coordinator",
    "coo": "coordinator",
    "participant": "participant",
    "beneficiary": "participant",
    "partner": "participant",
    "third_party": "third_party",
    "associated_partner": "associated_partner",
    "international_partner": "international_partner",
}
ROLE_RANK: dict[str, int] = {"coordinator": 0, "participant": 1, "associated_partner": 2, "third_party": 3}


class FormatError(ValueError):
    """A portal answer that is not in the expected format."""


def normalise_role(raw: str | None) -> str | None:
    """``thirdParty`` → ``third_party``, ``COORDINATOR`` → ``coordinator``; unknown roles kept in snake case."""
    if raw is None or not str(raw).strip():
        return None
    text = _CAMEL.sub("_", str(raw).strip())
    key = re.sub(r"[\s\-]+", "_", text).lower()
    return ROLE_NAMES.get(key, key)[:50]


def parse_date(value: Any) -> date | None:
    """The calendar date a portal timestamp names (its own offset, not converted to UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    match = _ISO_DATE.match(str(value).strip())
    if match is None:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def parse_amount(value: Any) -> Decimal | None:
    """``"55560880.31"``, ``"€ 1,234.50"`` or a number as a Decimal; None when absent or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).replace("€", "").replace("EUR", "").replace(",", "").replace(" ", "").strip()
    if not text:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def clean_text(value: Any) -> str:
    return _WHITESPACE.sub(" ", str(value)).strip() if value is not None else ""


def _as_id(value: Any) -> Any:
    """Identifiers arrive as strings or numbers; keep them as digit strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    return value


class ProjectSummary(BaseModel):
    """One row of ``topicProjectsList.json``."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    programme_id: str | None = Field(default=None, validation_alias=AliasChoices("programId", "programmeId"))
    project_id: str = Field(min_length=1, validation_alias=AliasChoices("businessIdentifier", "projectId"))
    acronym: str = ""
    title: str = ""

    @field_validator("programme_id", "project_id", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        value = _as_id(value)
        return value or None

    @field_validator("project_id")
    @classmethod
    def _digits(cls, value: str) -> str:
        if not value.isalnum():
            raise ValueError(f"project id {value!r} is not alphanumeric")
        return value

    @field_validator("acronym", "title", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return clean_text(value)


class Participant(BaseModel):
    """One organisation in a project's consortium, as the portal lists it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    pic: str | None = None
    name: str = Field(default="", validation_alias=AliasChoices("legalName", "organizationName", "name"))
    role: str | None = None
    order: int | None = None
    status: str = ""
    activity_type: str = Field(default="", validation_alias=AliasChoices("activityType", "activity_type"))
    organisation_type: str = Field(default="", validation_alias=AliasChoices("organizationType", "organisation_type"))
    type: str = ""
    sme: bool | None = None
    country_code: str | None = Field(default=None, validation_alias=AliasChoices("country_code", "countryCode"))
    country: str = ""
    city: str = ""
    web_link: str = Field(default="", validation_alias=AliasChoices("webLink", "web_link"))
    eu_contribution: Decimal | None = Field(
        default=None, validation_alias=AliasChoices("eucontribution", "euContribution", "eu_contribution")
    )

    @model_validator(mode="before")
    @classmethod
    def _flatten_address(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise ValueError("a participant must be a JSON object")
        flat = dict(data)
        address = flat.pop("postalAddress", None)
        if isinstance(address, Mapping):
            code = address.get("countryCode")
            if isinstance(code, Mapping):
                flat.setdefault("country_code", code.get("abbreviation"))
                flat.setdefault("country", code.get("description") or "")
            elif isinstance(code, str):
                flat.setdefault("country_code", code)
            flat.setdefault("city", address.get("city") or "")
        return flat

    @field_validator("pic", mode="before")
    @classmethod
    def _pic(cls, value: Any) -> str | None:
        """A nine-digit PIC, or None: a malformed PIC cannot match anyone, so it counts as missing."""
        text = _as_id(value)
        if not isinstance(text, str):
            return None
        return text if _PIC.match(text) else None

    @field_validator("role", mode="before")
    @classmethod
    def _role(cls, value: Any) -> str | None:
        return normalise_role(value)

    @field_validator("order", mode="before")
    @classmethod
    def _order(cls, value: Any) -> int | None:
        try:
            return int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    @field_validator("sme", mode="before")
    @classmethod
    def _sme(cls, value: Any) -> bool | None:
        if isinstance(value, bool) or value is None:
            return value
        text = str(value).strip().lower()
        if text in {"true", "yes", "y", "1"}:
            return True
        if text in {"false", "no", "n", "0"}:
            return False
        return None

    @field_validator("country_code", mode="before")
    @classmethod
    def _country_code(cls, value: Any) -> str | None:
        text = clean_text(value).upper()
        return text if len(text) == 2 and text.isalpha() else None

    @field_validator("eu_contribution", mode="before")
    @classmethod
    def _amount(cls, value: Any) -> Decimal | None:
        return parse_amount(value)

    @field_validator(
        "name", "status", "activity_type", "organisation_type", "type", "country", "city", "web_link", mode="before"
    )
    @classmethod
    def _text(cls, value: Any) -> str:
        return clean_text(value)


class ProjectDocument(BaseModel):
    """What the document endpoint says about one project."""

    model_config = ConfigDict(frozen=True)

    status: str = ""
    title: str = ""
    acronym: str = ""
    start_date: date | None = None
    end_date: date | None = None
    overall_budget: Decimal | None = None
    eu_contribution: Decimal | None = None
    objective: str = ""
    type_of_action: str = ""
    participants: list[Participant] = Field(default_factory=list)


class FundedProject(BaseModel):
    """A funded project with its consortium: a topic-list row joined with its document."""

    model_config = ConfigDict(frozen=True)

    programme: str = Field(description="Bondgenoot programme code, e.g. EDF")
    programme_id: str
    project_id: str
    topic_id: str | None = Field(default=None, description="The topic identifier, e.g. EDF-2023-DA-AIR-SPS")
    ccm2_id: str
    acronym: str = ""
    title: str
    objective: str = ""
    status: str = ""
    start_date: date | None = None
    end_date: date | None = None
    overall_budget: Decimal | None = None
    eu_contribution: Decimal | None = None
    type_of_action: str = ""
    participants: list[Participant] = Field(default_factory=list)


def _decode(body: bytes | str, what: str) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise FormatError(f"{what}: not JSON ({exc})") from exc


def parse_topic_projects(body: bytes | str | Any) -> list[ProjectSummary]:
    """The rows of a ``topicProjectsList.json`` answer (raw bytes or already decoded JSON)."""
    data = _decode(body, "topic project list") if isinstance(body, bytes | str) else body
    if isinstance(data, Mapping) and isinstance(data.get("projects"), list):
        data = data["projects"]
    if not isinstance(data, list):
        raise FormatError(f"topic project list: expected a JSON array, got {type(data).__name__}")
    rows: list[ProjectSummary] = []
    for index, raw in enumerate(data):
        try:
            rows.append(ProjectSummary.model_validate(raw))
        except ValidationError as exc:
            raise FormatError(f"topic project list row {index}: {_first_error(exc)}") from exc
    return rows


def _first(metadata: Mapping[str, Any], key: str) -> Any:
    """The first value of a metadata field: values are arrays of strings, occasionally a bare value."""
    value = metadata.get(key)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def parse_participants(values: Any) -> list[Participant]:
    """Decode the ``participants`` metadata field: an array of JSON strings, each an array or object."""
    if values is None:
        return []
    items = values if isinstance(values, list) else [values]
    raw: list[Any] = []
    for index, item in enumerate(items):
        decoded = item
        if isinstance(item, str):
            if not item.strip():
                continue
            try:
                decoded = json.loads(item)
            except ValueError as exc:
                raise FormatError(f"participants[{index}]: not a JSON string ({exc})") from exc
        if isinstance(decoded, list):
            raw.extend(decoded)
        elif isinstance(decoded, Mapping):
            raw.append(decoded)
        else:
            raise FormatError(f"participants[{index}]: expected a JSON array or object")
    out: list[Participant] = []
    for index, entry in enumerate(raw):
        try:
            out.append(Participant.model_validate(entry))
        except ValidationError as exc:
            raise FormatError(f"participant {index}: {_first_error(exc)}") from exc
    return sorted(out, key=lambda p: (p.order is None, p.order or 0))


def parse_project_document(body: bytes | str | Any) -> ProjectDocument:
    """A project's details and participants from a document-endpoint answer."""
    data = _decode(body, "project document") if isinstance(body, bytes | str) else body
    if not isinstance(data, Mapping):
        raise FormatError("project document: expected a JSON object")
    metadata = data.get("metadata")
    if not isinstance(metadata, Mapping):
        raise FormatError("project document: missing 'metadata' object")
    return ProjectDocument(
        status=clean_text(_first(metadata, "status")),
        title=clean_text(_first(metadata, "title")),
        acronym=clean_text(_first(metadata, "acronym")),
        start_date=parse_date(_first(metadata, "startDate")),
        end_date=parse_date(_first(metadata, "endDate")),
        overall_budget=parse_amount(_first(metadata, "overallBudget")),
        eu_contribution=parse_amount(_first(metadata, "euContributionAmount")),
        objective=clean_text(_first(metadata, "objective")),
        type_of_action=clean_text(_first(metadata, "typeOfAction")),
        participants=parse_participants(metadata.get("participants")),
    )


def funded_project(
    summary: ProjectSummary,
    document: ProjectDocument,
    *,
    ccm2_id: str,
    topic_id: str | None,
    programme_id: str,
) -> FundedProject:
    """Join a topic-list row with its document."""
    return FundedProject(
        programme=PROGRAMME_CODES.get(programme_id, programme_id),
        programme_id=programme_id,
        project_id=summary.project_id,
        topic_id=topic_id,
        ccm2_id=ccm2_id,
        acronym=summary.acronym or document.acronym,
        title=summary.title or document.title or summary.acronym or summary.project_id,
        objective=document.objective,
        status=document.status,
        start_date=document.start_date,
        end_date=document.end_date,
        overall_budget=document.overall_budget,
        eu_contribution=document.eu_contribution,
        type_of_action=document.type_of_action,
        participants=list(document.participants),
    )


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "value"
    return f"{where}: {err.get('msg')}"


__all__: Sequence[str] = [
    "EDF_PROGRAMME_ID",
    "FormatError",
    "FundedProject",
    "Participant",
    "ProjectDocument",
    "ProjectSummary",
    "funded_project",
    "normalise_role",
    "parse_participants",
    "parse_project_document",
    "parse_topic_projects",
]
