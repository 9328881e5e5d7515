"""Whatever the portal sends, a call fits its table and its calls.v1 event fits the budget (#9 §1).

The portal is not ours to refuse: the normaliser cleans and cuts what it takes from a row. Before,
a NUL in a topic text failed the whole poll's transaction in PostgreSQL, an over-long code failed it
on a VARCHAR column, and a huge description made an event the relay could never publish.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import String

from services.calls.domain.normalise import (
    MAX_DEADLINES,
    MAX_DESCRIPTION,
    MAX_KEYWORDS,
    RowError,
    normalise_row,
)
from services.calls.models import Call
from services.calls.use_cases import _data
from shared.events.base import envelope
from shared.events.calls import CallPublished, CallUpdated
from shared.limits import MAX_EVENT_BYTES, check_event_size

RowFactory = Callable[..., dict[str, Any]]
EXAMPLES = int(os.environ.get("EVENT_SIZE_EXAMPLES", "5"))
# 4 bytes, 2 bytes, escaped quote and backslash, and what storage cannot hold (NUL, a lone surrogate,
# a control character): the costliest characters a JSON event can carry, and the ones to clean.
COSTLY = '𝔗é"\\\x00\ud800\x07\n'


def text(size: int) -> st.SearchStrategy[str]:
    """``size`` costly characters: a drawn piece of up to 1 000, repeated (hypothesis draws no more at once)."""
    piece = min(size, 1_000)
    return st.text(alphabet=COSTLY, min_size=piece, max_size=piece).map(lambda s: (s * (size // piece + 1))[:size])


def _event_bytes(data: Any, subject: str) -> int:
    ce = envelope(data, source="calls", subject=subject)
    return check_event_size(ce.type, ce.data, ce.model_dump_json())


def _column_overflows(call: Any) -> list[str]:
    """Strings of a stored call longer than their VARCHAR column."""
    row = Call.from_normalised(call, fingerprint="f" * 64)
    out = []
    for column in Call.__table__.columns:  # type: ignore[attr-defined]
        value = getattr(row, column.name)
        if isinstance(column.type, String) and column.type.length and isinstance(value, str):
            if len(value) > column.type.length:
                out.append(f"{column.name}: {len(value)} > {column.type.length}")
    return out


def _storable(value: Any) -> bool:
    """No NUL, lone surrogate or other control character (besides tab and newline) anywhere."""
    if isinstance(value, str):
        return all(c in "\t\n" or not (ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF) for c in value)
    if isinstance(value, dict):
        return all(_storable(v) for v in value.values())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    return True


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    title=text(5_000),
    description=text(300_000),
    keyword=text(1_000),
    call_title=text(5_000),
    code=text(300),
)
def test_a_portal_row_far_over_every_maximum_still_fits_its_table_and_its_event(
    make_row: RowFactory, title: str, description: str, keyword: str, call_title: str, code: str
) -> None:
    deadlines = tuple(f"{2027 + i // 12}-{i % 12 + 1:02d}-01T00:00:00.000+0000" for i in range(100))
    row = make_row(
        "EDF-2026-RA-CYBER-BIG",
        title=title,
        description=f"<p>{description}</p>",
        keywords=tuple(f"{keyword}{i}" for i in range(500)),
        deadlines=deadlines,
        callTitle=[call_title],
        callIdentifier=[code],
        ccm2Id=[code],
    )
    call = normalise_row(row)
    assert len(call.description) <= MAX_DESCRIPTION and len(call.keywords) <= MAX_KEYWORDS
    assert len(call.deadlines) == MAX_DEADLINES and call.deadlines[-1].year == 2027 + 99 // 12
    assert _column_overflows(call) == []
    data = _data(call)
    assert _storable(data.model_dump(mode="json"))
    assert _event_bytes(CallPublished(call=data), call.id) <= MAX_EVENT_BYTES
    fields = list(type(data).model_fields)
    assert _event_bytes(CallUpdated(call=data, changed_fields=fields), call.id) <= MAX_EVENT_BYTES


def test_nul_and_control_characters_are_dropped_and_line_breaks_kept_in_the_text(make_row: RowFactory) -> None:
    call = normalise_row(make_row(title="Counter\x00-UAS\x07 sensing", description="<p>one\x00</p><p>two</p>"))
    assert call.title == "Counter-UAS sensing"
    assert call.description == "one\ntwo"


def test_a_code_too_long_to_be_one_is_dropped_and_the_topic_kept(make_row: RowFactory) -> None:
    call = normalise_row(make_row(ccm2="9" * 51, callIdentifier=["X" * 201]))
    assert (call.ccm2_id, call.call_identifier) == (None, None)


@pytest.mark.parametrize("identifier", ["EDF-" + "A" * 200, "EDF-2026-RA-\x00NUL"])
def test_an_identifier_that_cannot_be_stored_makes_the_row_unparseable(make_row: RowFactory, identifier: str) -> None:
    with pytest.raises(RowError) as refused:
        normalise_row(make_row(identifier))
    assert refused.value.identifier == identifier  # reported as an unparseable row of that topic
