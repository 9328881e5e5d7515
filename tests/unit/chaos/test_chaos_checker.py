"""The checker's rules on hand-made observations: each kind of damage is reported, a clean run is not."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.chaos.checker import (
    AlertRow,
    DeliveryRow,
    Event,
    Observations,
    SubscriptionRow,
    check,
    percentile,
)
from tests.chaos.load import Ack, Ledger, company_city, with_rev
from tests.chaos.record import RunRecord
from tests.chaos.sinks import Received

_offsets = itertools.count()
T0 = 1_000_000.0


def ev(topic: str, key: str, type_: str, data: dict[str, Any], *, at: float = T0, id_: str | None = None) -> Event:
    offset = next(_offsets)
    return Event(topic, 0, offset, key, id_ or f"e{offset}", type_, at, data)


def company_event(key: str, rev: int, **kw: Any) -> Event:
    kind = "registered" if rev == 0 else "updated"
    return ev("companies.v1", key, f"bondgenoot.company.{kind}.v1", {"company": {"city": company_city(rev)}}, **kw)


def project_event(key: str, rev: int, **kw: Any) -> Event:
    return ev("projects.v1", key, "bondgenoot.project.updated.v1", {"project": {"summary": with_rev("x", rev)}}, **kw)


def suggestion(target: str, companies: list[str], *, at: float, id_: str | None = None) -> Event:
    items = [{"company_id": c, "score": 0.5, "rank": i + 1} for i, c in enumerate(companies)]
    data = {"target_type": "project", "target_id": target, "suggestions": items}
    return ev("suggestions.v1", target, "bondgenoot.suggestions.computed.v1", data, at=at, id_=id_)


def alert_event(alert_id: str, company: str, target: str) -> Event:
    data = {"alert_id": alert_id, "company_id": company, "target_type": "project", "target_id": target}
    return ev("alerts.v1", company, "bondgenoot.alert.raised.v1", data)


def clean_run() -> tuple[Observations, Ledger]:
    """Two companies, one subscribed with a webhook; a project posted, edited, ranked, alerted, delivered."""
    ledger = Ledger()
    ledger.acks = [
        Ack("company", "c1", 0, T0),
        Ack("company", "c1", 1, T0 + 1),
        Ack("company", "c2", 0, T0),
        Ack("project", "p1", 0, T0 + 2),
        Ack("project", "p1", 1, T0 + 3),
    ]
    ledger.subscribed_at = {"c1": T0 + 0.5}
    ledger.channel_at = {("c1", "webhook"): T0 + 0.6}
    ledger.posted_at = {"p1": T0 + 2}
    obs = Observations(
        events={
            "companies.v1": [company_event("c1", 0), company_event("c1", 1), company_event("c2", 0)],
            "projects.v1": [project_event("p1", 0), project_event("p1", 1)],
            "suggestions.v1": [suggestion("p1", ["c1", "c2"], at=T0 + 2.1, id_="s1")],
            "alerts.v1": [alert_event("a1", "c1", "p1")],
        },
        alerts=[AlertRow("a1", "c1", "project", "p1", T0 + 2.2, "s1")],
        subscriptions={"c1": SubscriptionRow("c1", True, 0.0, False)},
        deliveries=[DeliveryRow("d1", "a1", "c1", "webhook", "immediate", "delivered")],
        received=[Received("webhook", "d1", "a1", 1, T0 + 2.3)],
        dlq={"companies.v1.dlq": 0},
        lag={"matching": 0},
    )
    return obs, ledger


def run(obs: Observations, ledger: Ledger, faults: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return check(obs, ledger, duration_s=10, faults=faults or [], windows=[(T0, T0 + 10)]).summary


def test_a_clean_run_is_ok() -> None:
    summary = run(*clean_run())
    assert summary["ok"], summary
    assert summary["ops_acked"] == 5
    assert summary["alert_latency_ms"]["p50"] == 200


def test_an_acknowledged_write_without_its_event_is_lost() -> None:
    obs, ledger = clean_run()
    obs.events["companies.v1"] = [e for e in obs.events["companies.v1"] if "r1" not in e.data["company"]["city"]]
    summary = run(obs, ledger)
    assert summary["lost"] == 1 and not summary["ok"]


def test_an_older_revision_after_a_newer_one_is_reordered() -> None:
    obs, ledger = clean_run()
    obs.events["projects.v1"] = [project_event("p1", 1), project_event("p1", 0)]
    summary = run(obs, ledger)
    assert summary["reordered"] == 1 and summary["lost"] == 0 and not summary["ok"]


def test_a_redelivered_event_is_neither_lost_nor_reordered() -> None:
    obs, ledger = clean_run()
    first = obs.events["projects.v1"][0]
    obs.events["projects.v1"].append(
        Event(first.topic, 0, next(_offsets), first.key, first.id, first.type, T0, first.data)
    )
    assert run(obs, ledger)["ok"]


def test_a_subscribed_suggested_company_without_alert_is_missing() -> None:
    obs, ledger = clean_run()
    obs.alerts, obs.events["alerts.v1"], obs.deliveries, obs.received = [], [], [], []
    summary = run(obs, ledger)
    assert summary["missing_alerts"] == 1 and not summary["ok"]


def test_an_alert_never_published_is_missing() -> None:
    obs, ledger = clean_run()
    obs.events["alerts.v1"] = []
    assert run(obs, ledger)["missing_alerts"] == 1


def test_a_subscription_acknowledged_after_the_suggestion_expects_no_alert() -> None:
    obs, ledger = clean_run()
    ledger.subscribed_at["c1"] = T0 + 5  # after the ranking was created: the alert may or may not exist
    obs.alerts, obs.events["alerts.v1"], obs.deliveries, obs.received = [], [], [], []
    assert run(obs, ledger)["ok"]


def test_an_alert_raised_by_a_later_ranking_than_the_first_that_had_to_is_late() -> None:
    # The first ranking (s1) was acknowledged but never applied; a re-ranking (s2) raised the alert.
    obs, ledger = clean_run()
    obs.events["suggestions.v1"].append(suggestion("p1", ["c1", "c2"], at=T0 + 4, id_="s2"))
    obs.alerts = [replace(obs.alerts[0], source_event_id="s2")]
    summary = run(obs, ledger)
    assert summary["late_alerts"] == 1 and summary["missing_alerts"] == 0 and not summary["ok"]


def test_an_alert_raised_before_the_first_ranking_that_had_to_is_not_late() -> None:
    # Subscribed after s1 was created but before it was applied: s1 may raise the alert, s2 must.
    obs, ledger = clean_run()
    ledger.subscribed_at["c1"] = T0 + 2.15
    obs.events["suggestions.v1"].append(suggestion("p1", ["c1", "c2"], at=T0 + 4, id_="s2"))
    summary = run(obs, ledger)
    assert summary["late_alerts"] == 0 and summary["ok"], summary


def test_two_alerts_for_one_company_and_target_are_a_duplicate() -> None:
    obs, ledger = clean_run()
    obs.events["alerts.v1"].append(alert_event("a2", "c1", "p1"))
    summary = run(obs, ledger)
    assert summary["duplicate_alerts"] == 1 and not summary["ok"]


def test_an_alert_for_an_unsubscribed_company_is_unexpected() -> None:
    obs, ledger = clean_run()
    obs.alerts.append(AlertRow("a9", "c2", "project", "p1", T0 + 2.2, "s1"))
    assert run(obs, ledger)["unexpected_alerts"] == 1


def test_a_delivery_that_never_arrived_is_undelivered() -> None:
    obs, ledger = clean_run()
    obs.received = []
    summary = run(obs, ledger)
    assert summary["undelivered"] == 1 and not summary["ok"]


def test_an_alert_without_a_delivery_row_for_its_channel_is_undelivered() -> None:
    obs, ledger = clean_run()
    obs.deliveries, obs.received = [], []
    assert run(obs, ledger)["undelivered"] == 1


def test_a_second_receipt_is_a_duplicate_delivery_and_allowed() -> None:
    obs, ledger = clean_run()
    obs.received.append(Received("webhook", "d1", "a1", 2, T0 + 3))
    summary = run(obs, ledger)
    assert summary["duplicate_deliveries"] == 1 and summary["ok"]


def test_dead_letters_and_lag_fail_the_run() -> None:
    obs, ledger = clean_run()
    obs.dlq["alerts.webhook.dlq"] = 2
    summary = run(obs, ledger)
    assert summary["dlq_records"] == 2 and not summary["ok"]
    obs, ledger = clean_run()
    obs.lag["alerts.suggestions"] = 7
    assert not run(obs, ledger)["ok"]


def test_a_fault_that_never_recovered_fails_the_run() -> None:
    obs, ledger = clean_run()
    summary = run(obs, ledger, faults=[{"kind": "partition", "target": "alerts-1", "recovery_s": None}])
    assert not summary["ok"]


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5, 1, 3, 2, 4], 50) == 3
    assert percentile(list(range(1, 101)), 99) == 99


def test_a_revision_acknowledged_twice_is_one_promise() -> None:
    obs, ledger = clean_run()
    ledger.acks += [Ack("call", "K1", 3, T0), Ack("call", "K1", 3, T0 + 5)]
    assert run(obs, ledger)["lost"] == 1


def test_a_saved_run_is_rechecked_to_the_same_report(tmp_path: Path) -> None:
    obs, ledger = clean_run()
    obs.received = []  # something to find, so the round trip carries a finding too
    original = RunRecord(obs, ledger, 10, [], [(T0, T0 + 10)], {"load_paused_s": 3})
    original.save(tmp_path / "observations.json")
    again = RunRecord.load(tmp_path / "observations.json")
    assert again == original
    assert again.check().summary == original.check().summary
    assert again.check().summary["undelivered"] == 1 and again.check().summary["load_paused_s"] == 3


def test_alert_latency_is_split_into_the_stages_of_the_flow() -> None:
    obs, ledger = clean_run()
    posted, edited = obs.events["projects.v1"]
    obs.events["projects.v1"] = [replace(posted, appended=T0 + 2.05), edited]
    obs.events["suggestions.v1"] = [replace(obs.events["suggestions.v1"][0], appended=T0 + 2.12)]
    stages = run(obs, ledger)["alert_latency_stages_ms"]
    # post acked at +2.0 → appended +2.05 → ranked +2.1 → appended +2.12 → alert +2.2
    assert {name: stage["p50"] for name, stage in stages.items()} == {
        "projects_outbox": 50,
        "matching": 50,
        "matching_outbox": 20,
        "alerts": 80,
    }
