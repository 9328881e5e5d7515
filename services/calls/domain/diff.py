"""Decide what changed between the stored and the freshly polled version of a call."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from services.calls.domain.normalise import NormalisedCall, is_past_deadline

ChangeKind = Literal["published", "updated", "closed", "unchanged"]

COMPARED_FIELDS: tuple[str, ...] = (
    "programme",
    "title",
    "call_identifier",
    "call_title",
    "status",
    "opening_date",
    "deadlines",
    "budget_eur",
    "action_type",
    "edf_category",
    "description",
    "url",
    "keywords",
    "domains",
    "ccm2_id",
)
"""Every field but the id, in the order changes are reported."""


class CallChange(BaseModel):
    """The outcome of one comparison; `call` is the version to store and publish."""

    model_config = ConfigDict(frozen=True)

    kind: ChangeKind
    call: NormalisedCall
    changed_fields: list[str] = []
    fingerprint: str
    reason: str | None = None
    """Why a call closed: the portal says so, or every deadline has passed."""


def fingerprint(call: NormalisedCall) -> str:
    """sha256 of the canonical JSON of the compared fields: equal data, equal fingerprint."""
    payload = call.model_dump(mode="json", include=set(COMPARED_FIELDS))
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def effective_call(call: NormalisedCall, today: date) -> NormalisedCall:
    """The call with status closed once all its deadlines have passed (the portal flips it late)."""
    if call.status != "closed" and is_past_deadline(call, today):
        return call.model_copy(update={"status": "closed"})
    return call


def changed_fields(old: NormalisedCall, new: NormalisedCall) -> list[str]:
    """Names of the compared fields whose values differ."""
    return [f for f in COMPARED_FIELDS if getattr(old, f) != getattr(new, f)]


def diff_calls(old: NormalisedCall | None, new: NormalisedCall, today: date | None = None) -> CallChange:
    """published (no old), closed (status became closed or every deadline passed), updated or unchanged.

    `old` must be what the caller stored from the previous CallChange.call, so a call closed because
    its deadline passed is stored as closed and the next poll of the same data is `unchanged`.
    A topic seen for the first time is `published` even when already closed; check `change.call.status`.
    `today` defaults to the current UTC date.
    """
    if old is not None and old.id != new.id:
        raise ValueError(f"cannot diff {old.id} against {new.id}")
    current = effective_call(new, today or datetime.now(UTC).date())
    fp = fingerprint(current)
    if old is None:
        return CallChange(kind="published", call=current, changed_fields=[], fingerprint=fp)
    fields = changed_fields(old, current)
    reason: str | None = None
    if current.status == "closed" and old.status != "closed":
        kind: ChangeKind = "closed"
        reason = "closed on the portal" if new.status == "closed" else "all deadlines passed"
    elif fields:
        kind = "updated"
    else:
        kind = "unchanged"
    return CallChange(kind=kind, call=current, changed_fields=fields, fingerprint=fp, reason=reason)


def vanished_ids(known_open: Iterable[str], seen: Iterable[str], complete: bool) -> set[str]:
    """Known open topics missing from a poll; empty unless the poll was complete, so nothing is closed
    because a page happened to fail."""
    if not complete:
        return set()
    return set(known_open) - set(seen)
