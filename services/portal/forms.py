"""Forms ↔ API bodies: field names are the API's; the API validates, the portal shows its verdict.

The portal does not re-implement validation: it sends what was typed (lists from repeated fields,
numbers parsed where they parse, blanks left out) and maps the service's 422 answer back onto the
fields — an error summary at the top, each message next to its field — keeping what was typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from services.portal.clients.base import Invalid
from services.portal.i18n import _

ADD_ROW = "_add"


@dataclass
class FormState:
    """What a form page shows: the values (as typed or as stored), field errors and form-wide errors."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)
    extra_rows: dict[str, int] = field(default_factory=dict)

    def error(self, name: str) -> str | None:
        return self.errors.get(name)

    def anchor(self, key: str) -> str:
        """The id of the input an error is about (the summary links to it)."""
        return "f-" + key.replace(".", "-")

    def rows(self, name: str, minimum: int = 1) -> list[str]:
        """The values of a growable list field, with one empty row to type into (more after "add")."""
        values = [str(v) for v in self.values.get(name) or []]
        blanks = max(minimum - len(values), 0) + self.extra_rows.get(name, 0)
        return values + [""] * max(blanks, 1 if not values else blanks)

    @property
    def has_errors(self) -> bool:
        return bool(self.errors or self.general)


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def many(form: FormData, name: str) -> list[str]:
    return [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]


def comma_list(form: FormData, name: str) -> list[str]:
    return [part.strip() for part in text(form, name).split(",") if part.strip()]


def number(value: str) -> int | float | str:
    """An int or float when it parses, else the text itself (the API then names the field)."""
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def optional(body: dict[str, Any], name: str, value: Any) -> None:
    if value not in ("", None, []):
        body[name] = value


def add_row_pressed(form: FormData, state: FormState) -> bool:
    """Whether "add another" was pressed: then the form is shown again with one more row, nothing is sent."""
    value = form.get(ADD_ROW)
    if isinstance(value, str) and value:
        state.extra_rows[value] = 1
        return True
    return False


# ---------------------------------------------------------------- the API's 422 → messages


def _message(error: dict[str, Any]) -> str:
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return _("Fill this in.")
    if kind in ("string_too_short",):
        return _("Enter at least %(min)s characters.", min=ctx.get("min_length", 1))
    if kind in ("string_too_long",):
        return _("Use at most %(max)s characters.", max=ctx.get("max_length", "?"))
    if kind == "too_short":
        return _("Give at least %(min)s.", min=ctx.get("min_length", 1))
    if kind == "too_long":
        return _("Give at most %(max)s.", max=ctx.get("max_length", "?"))
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return _("Enter a whole number.")
    if kind in ("float_parsing", "float_type"):
        return _("Enter a number.")
    if kind in ("greater_than_equal", "greater_than"):
        return _("Enter a number of at least %(min)s.", min=ctx.get("ge", ctx.get("gt", "?")))
    if kind in ("less_than_equal", "less_than"):
        return _("Enter a number of at most %(max)s.", max=ctx.get("le", ctx.get("lt", "?")))
    if kind.startswith("url_"):
        return _("Enter a full web address, starting with https://")
    if kind in ("date_parsing", "date_from_datetime_parsing", "date_type"):
        return _("Enter a date as YYYY-MM-DD.")
    if kind in ("literal_error", "enum"):
        return _("Choose one of the options.")
    if kind == "string_pattern_mismatch":
        return _("This does not have the expected format.")
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    if "email address" in message:
        return _("Enter an e-mail address like name@example.org.")
    return message or _("This value is not accepted.")


def field_errors(exc: Invalid) -> tuple[dict[str, str], list[str]]:
    """Map a refusal onto form fields: ``name`` or ``name.index`` for one row of a list field."""
    fields: dict[str, str] = {}
    general: list[str] = []
    detail = exc.detail
    if isinstance(detail, list):
        for error in detail:
            if not isinstance(error, dict):
                continue
            loc = [p for p in error.get("loc", []) if p != "body"]
            if not loc:
                general.append(_message(error))
                continue
            key = str(loc[0]) + (f".{loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else "")
            fields.setdefault(key, _message(error))
    elif isinstance(detail, str):
        general.append(detail)
    else:
        general.append(_("The request was refused."))
    return fields, general


def refused(state: FormState, exc: Invalid) -> FormState:
    state.errors, state.general = field_errors(exc)
    return state
