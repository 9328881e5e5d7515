"""Turn EU Funding & Tenders Portal (SEDIA) search rows into NormalisedCall records."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from html.parser import HTMLParser
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from services.calls.domain.taxonomy import Taxonomy, load_taxonomy
from shared.validation import MAX_TOPIC_ID, storable_text

CallStatus = Literal["forthcoming", "open", "closed"]

STATUS_BY_CODE: dict[str, CallStatus] = {
    "31094501": "forthcoming",
    "31094502": "open",
    "31094503": "closed",
}
STATUS_CODE: dict[CallStatus, str] = {v: k for k, v in STATUS_BY_CODE.items()}
# The lifecycle only moves forward, so a later stage is always the fresher information.
STATUS_RANK: dict[CallStatus, int] = {"forthcoming": 0, "open": 1, "closed": 2}

FRAMEWORK_PROGRAMMES: dict[str, str] = {"44181033": "EDF"}
"""SEDIA frameworkProgramme ids to Bondgenoot programme codes."""

TOPIC_URL = "https://ec.europa.eu/info/funding-tenders/opportunities/portal/screen/opportunities/topic-details/{id}"

_MONTHS = {
    name: i
    for i, name in enumerate(
        [
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ],
        start=1,
    )
}
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:$|[T ])")
_LONG_DATE = re.compile(r"^(\d{1,2}) ([A-Za-z]+) (\d{4})$")
_WHITESPACE = re.compile(r"\s+")
_YEAR = re.compile(r"^\d{4}$")
_CODE = re.compile(r"^[A-Z][A-Z0-9]*$")


class RowError(ValueError):
    """A portal row that cannot be turned into a call (missing identifier, bad date, broken JSON...).

    ``identifier`` is the topic the row names, when it names one: such a row still shows that its
    topic is listed, even though its data cannot be used.
    """

    def __init__(self, message: str, *, identifier: str | None = None) -> None:
        super().__init__(message)
        self.identifier = identifier


MAX_IDENTIFIER = MAX_TOPIC_ID
"""Topic and call identifiers (the ``calls`` columns); a longer topic identifier makes the row unparseable."""
MAX_CODE = 50
"""Programme, action type, EDF category, ccm2Id: a longer value is no code, and is dropped."""
MAX_TITLE = 1_000
MAX_DESCRIPTION = 100_000
"""Characters of topic text; the longest real EDF topic is ~36 000 characters of HTML."""
MAX_KEYWORDS = 100
MAX_KEYWORD = 200
MAX_DEADLINES = 20
"""The latest ones are kept: they decide whether a topic is still open."""


class NormalisedCall(BaseModel):
    """One funding topic as Bondgenoot sees it, independent of the portal's row format.

    The portal is not ours to refuse, so its values are bounded here, on every way a call is built
    (a row, a merge of rows): text is cleaned and cut, a code too long to be one is dropped. Whatever
    the portal sends, a call then fits its table and its ``calls.v1`` event fits the event budget
    (docs/limits.md; tests/unit/calls/test_calls_bounds.py).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    programme: str
    title: str
    call_identifier: str | None = None
    call_title: str | None = None
    status: CallStatus
    opening_date: date | None = None
    deadlines: list[date] = []
    budget_eur: int | None = None
    action_type: str | None = None
    edf_category: str | None = None
    description: str = ""
    url: str
    keywords: list[str] = []
    domains: list[str] = []
    ccm2_id: str | None = None

    @field_validator("deadlines")
    @classmethod
    def _sorted_unique(cls, value: list[date]) -> list[date]:
        return sorted(set(value))[-MAX_DEADLINES:]

    @field_validator("id")
    @classmethod
    def _storable_id(cls, value: str) -> str:
        if len(value) > MAX_IDENTIFIER or storable_text(value, limit=MAX_IDENTIFIER) != value:
            raise ValueError(f"identifier of {len(value)} characters, or with control characters")
        return value

    @field_validator("title", "call_title")
    @classmethod
    def _bounded_title(cls, value: str | None) -> str | None:
        return None if value is None else storable_text(value, limit=MAX_TITLE)

    @field_validator("description")
    @classmethod
    def _bounded_description(cls, value: str) -> str:
        return storable_text(value, limit=MAX_DESCRIPTION, multiline=True)

    @field_validator("keywords")
    @classmethod
    def _bounded_keywords(cls, value: list[str]) -> list[str]:
        kept = (storable_text(k, limit=MAX_KEYWORD) for k in value)
        return [k for k in kept if k][:MAX_KEYWORDS]

    @field_validator("programme")
    @classmethod
    def _programme_code(cls, value: str) -> str:
        return value if len(value) <= MAX_CODE and storable_text(value, limit=MAX_CODE) == value else "OTHER"

    @field_validator("call_identifier", "action_type", "edf_category", "ccm2_id")
    @classmethod
    def _code_or_nothing(cls, value: str | None, info: ValidationInfo) -> str | None:
        limit = MAX_IDENTIFIER if info.field_name == "call_identifier" else MAX_CODE
        if value is None or len(value) > limit or storable_text(value, limit=limit) != value:
            return None
        return value


@dataclass(frozen=True)
class TopicIdParts:
    """What a topic identifier such as EDF-2025-RA-MCBRN-ATE encodes."""

    programme: str
    year: int | None
    action_type: str | None
    category: str | None


def parse_topic_id(identifier: str, taxonomy: Taxonomy | None = None) -> TopicIdParts:
    """Split a topic id into programme, year, action type (3rd segment) and EDF category."""
    tax = taxonomy or load_taxonomy()
    codes = tax.category_codes
    segments = [s for s in identifier.strip().upper().split("-") if s]
    programme = segments[0] if segments else ""
    rest = segments[1:]
    year: int | None = None
    if rest and _YEAR.match(rest[0]):
        year = int(rest[0])
        rest = rest[1:]
    # The third segment is the action type (RA, DA, LS, FPA...) unless the id skips it and goes
    # straight to the category, as some early EDF ids do (EDF-2021-SPACE-D-...).
    action_type = rest[0] if rest and _CODE.match(rest[0]) and rest[0] not in codes else None
    # First category code after the action segment: EDF-2023-LS-RA-DIS-NT is DIS (NT only qualifies it).
    category = next((s for s in rest if s in codes), None)
    return TopicIdParts(programme=programme, year=year, action_type=action_type, category=category)


class _TextExtractor(HTMLParser):
    """Collect text, turning block-level elements into line breaks and dropping script/style."""

    BLOCK = frozenset(
        "address article aside blockquote br dd div dl dt figcaption figure footer form h1 h2 h3 h4 h5 h6 "
        "header hr li main nav ol p pre section table tbody thead tfoot tr ul".split()
    )
    SKIP = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip_depth += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")
        elif tag in {"td", "th"}:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            # Source newlines are just whitespace in HTML; only block elements break lines.
            self.parts.append(_WHITESPACE.sub(" ", data))


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment: tags removed, entities unescaped, whitespace collapsed."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


def parse_portal_date(value: str) -> date:
    """Parse '2027-04-08T00:00:00.000+0000', '2027-04-08' or '8 April 2027'."""
    text = value.strip()
    # The calendar date as written is what the portal shows; converting the offset could shift it a day.
    if m := _ISO_DATE.match(text):
        try:
            return date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError as exc:
            raise RowError(f"invalid date {value!r}") from exc
    if (m := _LONG_DATE.match(text)) and m[2].lower() in _MONTHS:
        try:
            return date(int(m[3]), _MONTHS[m[2].lower()], int(m[1]))
        except ValueError as exc:
            raise RowError(f"invalid date {value!r}") from exc
    raise RowError(f"unrecognised date {value!r}")


def _strings(meta: Mapping[str, Any], key: str) -> list[str]:
    """A metadata value as a list of non-empty strings (the portal wraps every value in an array)."""
    value = meta.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise RowError(f"metadata.{key} is not an array of strings")
    return [str(v).strip() for v in value if str(v).strip()]


def _first(meta: Mapping[str, Any], key: str) -> str | None:
    values = _strings(meta, key)
    return values[0] if values else None


def _json_field(meta: Mapping[str, Any], key: str) -> Any:
    """Decode a metadata value that holds a JSON document as a string (budgetOverview, actions)."""
    raw = _first(meta, key)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise RowError(f"metadata.{key} is not valid JSON: {exc}") from exc


def _to_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise RowError(f"{what} is not a number: {value!r}")
    if isinstance(value, int | float):
        return round(value)
    if isinstance(value, str):
        try:
            return round(float(value.replace(",", "").strip()))
        except ValueError:
            pass
    raise RowError(f"{what} is not a number: {value!r}")


def _own_budget_actions(overview: Any, identifier: str, ccm2_id: str | None) -> list[Mapping[str, Any]]:
    """The budgetOverview entries of this topic, not of its sibling topics in the same call."""
    if overview is None:
        return []
    if not isinstance(overview, Mapping):
        raise RowError("budgetOverview is not a JSON object")
    action_map = overview.get("budgetTopicActionMap") or {}
    if not isinstance(action_map, Mapping):
        raise RowError("budgetOverview.budgetTopicActionMap is not an object")
    for key, entries in action_map.items():
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
            raise RowError(f"budgetOverview.budgetTopicActionMap[{key}] is not a list of objects")
    if ccm2_id and ccm2_id in action_map:
        return list(action_map[ccm2_id])
    # No entry under the ccm2Id: recognise the topic by its action label "<identifier> - <type of action>".
    wanted = identifier.upper()
    return [
        entry
        for entries in action_map.values()
        for entry in entries
        if str(entry.get("action", "")).split(" - ")[0].strip().upper() == wanted
    ]


def _budget(entries: Sequence[Mapping[str, Any]]) -> int | None:
    total: int | None = None
    for entry in entries:
        years = entry.get("budgetYearMap")
        if years is None:
            continue
        if not isinstance(years, Mapping):
            raise RowError("budgetYearMap is not an object")
        for year, amount in years.items():
            total = (total or 0) + _to_int(amount, f"budgetYearMap[{year}]")
    return total


def _actions(meta: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    actions = _json_field(meta, "actions")
    if actions is None:
        return []
    if not isinstance(actions, list) or not all(isinstance(a, Mapping) for a in actions):
        raise RowError("actions is not a list of objects")
    return actions


def _action_status(actions: Sequence[Mapping[str, Any]]) -> CallStatus | None:
    for action in actions:
        status = action.get("status")
        if isinstance(status, Mapping) and str(status.get("id")) in STATUS_BY_CODE:
            return STATUS_BY_CODE[str(status.get("id"))]
    return None


def _dates_from(entries: Sequence[Mapping[str, Any]], key: str) -> list[date]:
    found: list[date] = []
    for entry in entries:
        value = entry.get(key)
        values = value if isinstance(value, list) else [value] if value else []
        found.extend(parse_portal_date(str(v)) for v in values if v)
    return found


def _unique_ci(values: Iterable[str]) -> list[str]:
    """De-duplicate case-insensitively and sort, so the same data always gives the same list."""
    seen: dict[str, str] = {}
    for v in values:
        seen.setdefault(v.casefold(), v)
    return sorted(seen.values(), key=lambda v: (v.casefold(), v))


def classify_call(call: NormalisedCall, taxonomy: Taxonomy | None = None) -> list[str]:
    """VISD domains of a call from its EDF category and keyword hits in title, description and keywords."""
    tax = taxonomy or load_taxonomy()
    return tax.classify([call.title, call.description, "\n".join(call.keywords)], call.edf_category)


def normalise_row(row: Mapping[str, Any], taxonomy: Taxonomy | None = None) -> NormalisedCall:
    """Normalise one search result row; raises RowError when the row is unusable."""
    if not isinstance(row, Mapping):
        raise RowError("row is not a JSON object")
    meta = row.get("metadata")
    if not isinstance(meta, Mapping):
        raise RowError("row has no metadata object")
    try:
        identifier = _first(meta, "identifier")
    except RowError as exc:
        raise RowError(f"row {row.get('reference', '?')}: {exc}") from exc
    if not identifier:
        raise RowError(f"row {row.get('reference', '?')} has no identifier")
    try:
        return _normalise(row, meta, identifier, taxonomy or load_taxonomy())
    except RowError as exc:
        raise RowError(f"{identifier}: {exc}", identifier=identifier) from exc
    except Exception as exc:  # whatever else a strange row provokes, it costs that row, not the poll
        raise RowError(f"{identifier}: {type(exc).__name__}: {exc}", identifier=identifier) from exc


def _normalise(row: Mapping[str, Any], meta: Mapping[str, Any], identifier: str, tax: Taxonomy) -> NormalisedCall:
    actions = _actions(meta)
    ccm2_id = _first(meta, "ccm2Id")
    budget_entries = _own_budget_actions(_json_field(meta, "budgetOverview"), identifier, ccm2_id)

    status_code = _first(meta, "status")
    status = STATUS_BY_CODE.get(status_code or "") or _action_status(actions)
    if status is None:
        raise RowError(f"unknown status {status_code!r}")

    title = _first(meta, "title")
    if not title:
        raise RowError("no title")

    start = _first(meta, "startDate")
    opening_candidates = (
        [parse_portal_date(start)]
        if start
        else _dates_from(actions, "plannedOpeningDate") or _dates_from(budget_entries, "plannedOpeningDate")
    )
    deadlines = [parse_portal_date(d) for d in _strings(meta, "deadlineDate")]
    if not deadlines:
        deadlines = _dates_from(actions, "deadlineDates") or _dates_from(budget_entries, "deadlineDates")

    html = _first(meta, "descriptionByte") or (row.get("summary") if isinstance(row.get("summary"), str) else "")
    parts = parse_topic_id(identifier, tax)
    framework = _first(meta, "frameworkProgramme")
    call = NormalisedCall(
        id=identifier,
        programme=FRAMEWORK_PROGRAMMES.get(framework or "", parts.programme or "OTHER"),
        title=" ".join(title.split()),
        call_identifier=_first(meta, "callIdentifier"),
        call_title=_first(meta, "callTitle"),
        status=status,
        opening_date=min(opening_candidates) if opening_candidates else None,
        deadlines=deadlines,
        budget_eur=_budget(budget_entries),
        action_type=parts.action_type,
        edf_category=parts.category,
        description=html_to_text(html or ""),
        url=TOPIC_URL.format(id=identifier),
        keywords=_unique_ci(_strings(meta, "keywords") + _strings(meta, "tags")),
        ccm2_id=ccm2_id,
    )
    return call.model_copy(update={"domains": classify_call(call, tax)})


T = TypeVar("T")


def _pick(calls: Sequence[NormalisedCall], get: Callable[[NormalisedCall], T | None]) -> T | None:
    """The value of the freshest row that has one; ties go to the largest value, so order never matters."""
    candidates = [(STATUS_RANK[c.status], v) for c in calls if (v := get(c)) not in (None, "", [])]
    if not candidates:
        return None
    best_rank = max(rank for rank, _ in candidates)
    values = [v for rank, v in candidates if rank == best_rank]
    return max(values, key=lambda v: (len(v), v) if isinstance(v, str) else (0, v))


def merge_calls(calls: Sequence[NormalisedCall], taxonomy: Taxonomy | None = None) -> NormalisedCall:
    """Merge calls that share an identifier into one.

    Status: the most advanced one (forthcoming < open < closed), because the portal only moves a topic
    forward, so the row that is further along carries the newer information. Scalar fields come from
    the most advanced row that has them (ties: longest/largest value); deadlines and keywords are
    united; the description is the longest one. The result does not depend on row order.
    """
    if not calls:
        raise ValueError("nothing to merge")
    ids = {c.id for c in calls}
    if len(ids) != 1:
        raise ValueError(f"cannot merge different topics {sorted(ids)}")
    if len(calls) == 1:
        return calls[0]
    status = max((c.status for c in calls), key=STATUS_RANK.__getitem__)
    merged = NormalisedCall(
        id=calls[0].id,
        programme=_pick(calls, lambda c: c.programme) or calls[0].programme,
        title=_pick(calls, lambda c: c.title) or calls[0].title,
        call_identifier=_pick(calls, lambda c: c.call_identifier),
        call_title=_pick(calls, lambda c: c.call_title),
        status=status,
        opening_date=_pick(calls, lambda c: c.opening_date),
        deadlines=[d for c in calls for d in c.deadlines],
        budget_eur=_pick(calls, lambda c: c.budget_eur),
        action_type=_pick(calls, lambda c: c.action_type),
        edf_category=_pick(calls, lambda c: c.edf_category),
        description=max((c.description for c in calls), key=lambda d: (len(d), d)),
        url=calls[0].url,
        keywords=_unique_ci(k for c in calls for k in c.keywords),
        ccm2_id=_pick(calls, lambda c: c.ccm2_id),
    )
    return merged.model_copy(update={"domains": classify_call(merged, taxonomy)})


def merge_rows(
    rows: Iterable[NormalisedCall | Mapping[str, Any]], taxonomy: Taxonomy | None = None
) -> list[NormalisedCall]:
    """Normalise (if needed) and merge rows sharing an identifier; result sorted by id.

    Raw rows that cannot be normalised raise RowError; the portal client normalises row by row first
    so that one bad row does not cost the whole page.
    """
    groups: dict[str, list[NormalisedCall]] = defaultdict(list)
    for row in rows:
        call = row if isinstance(row, NormalisedCall) else normalise_row(row, taxonomy)
        groups[call.id].append(call)
    return [merge_calls(groups[key], taxonomy) for key in sorted(groups)]


def is_past_deadline(call: NormalisedCall, today: date) -> bool:
    """True when the call has deadlines and every one of them is before today."""
    # A deadline day itself still counts as open: submissions close at 17:00 Brussels time that day.
    return bool(call.deadlines) and all(d < today for d in call.deadlines)
