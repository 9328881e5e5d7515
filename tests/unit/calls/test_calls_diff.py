"""Change detection between stored and polled calls."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from services.calls.domain.diff import COMPARED_FIELDS, diff_calls, fingerprint, vanished_ids
from services.calls.domain.normalise import NormalisedCall, merge_rows, normalise_row

RowFactory = Callable[..., dict[str, Any]]
TODAY = date(2026, 11, 27)


@pytest.fixture
def call(make_row: RowFactory) -> NormalisedCall:
    return normalise_row(make_row("EDF-2026-RA-CYBER-AICD", title="Cyber defence"))


def test_new_call_is_published(call: NormalisedCall) -> None:
    change = diff_calls(None, call, today=TODAY)
    assert change.kind == "published"
    assert change.call == call
    assert change.fingerprint == fingerprint(call)


def test_same_data_twice_is_unchanged(data_rows: list[dict[str, Any]]) -> None:
    first = {c.id: diff_calls(None, c, today=TODAY).call for c in merge_rows(data_rows)}
    second = merge_rows(list(reversed(data_rows)))
    changes = [diff_calls(first[c.id], c, today=TODAY) for c in second]
    assert [c.kind for c in changes] == ["unchanged"] * 6
    assert all(c.changed_fields == [] for c in changes)


def test_update_lists_changed_fields(make_row: RowFactory, call: NormalisedCall) -> None:
    newer = normalise_row(
        make_row(
            "EDF-2026-RA-CYBER-AICD",
            title="Cyber defence for tactical networks",
            deadlines=("2027-03-01T00:00:00.000+0000",),
            status="31094501",
        )
    )
    change = diff_calls(call, newer, today=TODAY)
    assert change.kind == "updated"
    assert change.changed_fields == ["title", "status", "deadlines"]


def test_budget_and_description_changes(call: NormalisedCall) -> None:
    newer = call.model_copy(update={"budget_eur": 1_000_000, "description": "Different"})
    change = diff_calls(call, newer, today=TODAY)
    assert (change.kind, change.changed_fields) == ("updated", ["budget_eur", "description"])


def test_status_closed_is_closed(make_row: RowFactory, call: NormalisedCall) -> None:
    closed = normalise_row(make_row("EDF-2026-RA-CYBER-AICD", title="Cyber defence", status="31094503"))
    change = diff_calls(call, closed, today=TODAY)
    assert change.kind == "closed"
    assert change.changed_fields == ["status"]
    assert change.reason == "closed on the portal"
    # Stored as closed, the same closed data again is unchanged.
    assert diff_calls(change.call, closed, today=TODAY).kind == "unchanged"


def test_past_deadline_closes_even_if_portal_says_open(call: NormalisedCall) -> None:
    after = date(2027, 2, 19)
    change = diff_calls(call, call, today=after)
    assert change.kind == "closed"
    assert change.call.status == "closed"
    assert change.reason == "all deadlines passed"
    assert diff_calls(change.call, call, today=after).kind == "unchanged"
    assert diff_calls(call, call, today=date(2027, 2, 18)).kind == "unchanged"


def test_reopened_call_is_an_update(call: NormalisedCall) -> None:
    closed = call.model_copy(update={"status": "closed"})
    extended = call.model_copy(update={"deadlines": [date(2027, 6, 1)]})
    change = diff_calls(closed, extended, today=date(2027, 3, 1))
    assert (change.kind, change.changed_fields) == ("updated", ["status", "deadlines"])


def test_fingerprint_is_stable_and_sensitive(call: NormalisedCall) -> None:
    same = NormalisedCall.model_validate(call.model_dump())
    assert fingerprint(same) == fingerprint(call)
    assert len(fingerprint(call)) == 64
    for name, value in [("title", "x"), ("deadlines", [date(2030, 1, 1)]), ("budget_eur", 5)]:
        assert fingerprint(call.model_copy(update={name: value})) != fingerprint(call)
    assert "id" not in COMPARED_FIELDS and "title" in COMPARED_FIELDS


def test_diff_rejects_different_ids(make_row: RowFactory, call: NormalisedCall) -> None:
    with pytest.raises(ValueError):
        diff_calls(call, normalise_row(make_row("EDF-2026-RA-SENS-QMAG")), today=TODAY)


def test_vanished_only_after_complete_poll() -> None:
    assert vanished_ids({"A", "B", "C"}, ["A"], complete=True) == {"B", "C"}
    assert vanished_ids({"A", "B", "C"}, ["A"], complete=False) == set()
