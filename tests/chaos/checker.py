"""The checker: what the load was promised against what the topics, databases and sinks hold.

Pure functions over an :class:`Observations` snapshot (``tests/chaos/collect.py`` reads it from the real
cluster, PostgreSQL and sinks), so every rule is unit-tested on hand-made data too
(``tests/unit/chaos/test_chaos_checker.py``).

The rules (docs/reliability.md has the prose):

- **lost** — an acknowledged write whose revision never appeared in an event of its key;
- **reordered** — an event of a key carrying an older revision than an event before it;
- **missing / duplicate alerts** — every company that a ``suggestions.computed`` event suggested, and
  whose (unfiltered) subscription was acknowledged before that event was created, has exactly one alert
  for the target: one row in the database and one distinct alert id on ``alerts.v1``;
- **late alerts** — such an alert raised by a later ranking of the target than the first one that had
  to raise it: the first was lost by the consumer, and a re-ranking repaired the alert set;
- **unexpected alerts** — alerts for companies that never had a subscription;
- **undelivered** — an alert without a delivery row for a channel acknowledged before the alert was
  raised, or a delivery row that never reached the receiver or the SMTP sink;
- **duplicate deliveries** — receipts beyond the first per delivery id (at-least-once: reported, allowed);
- every dead-letter topic empty, every consumer group's lag 0.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.load import Ack, Kind, Ledger, rev_of
from tests.chaos.sinks import Received

TOPIC_OF: dict[Kind, str] = {"company": "companies.v1", "project": "projects.v1", "call": "calls.v1"}
KIND_OF = {v: k for k, v in TOPIC_OF.items()}
CLOSED_TYPES = {"bondgenoot.project.closed.v1", "bondgenoot.call.closed.v1"}
SUGGESTIONS = "bondgenoot.suggestions.computed.v1"
ALERT_RAISED = "bondgenoot.alert.raised.v1"


@dataclass(frozen=True)
class Event:
    """One record: where it sits, its CloudEvent id, type, time (epoch s) and data.

    ``time`` is when the service emitted the event (inside its transaction); ``appended`` is the
    record's Kafka timestamp (the producer's create time: when the outbox relay sent it).
    """

    topic: str
    partition: int
    offset: int
    key: str
    id: str
    type: str
    time: float
    data: dict[str, Any]
    appended: float = 0.0


@dataclass(frozen=True)
class AlertRow:
    id: str
    company_id: str
    target_type: str
    target_id: str
    created_at: float
    source_event_id: str = ""


@dataclass(frozen=True)
class SubscriptionRow:
    company_id: str
    active: bool
    min_score: float
    filtered: bool  # programmes, domains or keywords set


@dataclass(frozen=True)
class DeliveryRow:
    id: str
    alert_id: str
    company_id: str
    channel: str
    mode: str
    status: str


@dataclass
class Observations:
    """Everything the checker reads, gathered after the load stopped and the platform drained."""

    events: dict[str, list[Event]] = field(default_factory=dict)
    alerts: list[AlertRow] = field(default_factory=list)
    subscriptions: dict[str, SubscriptionRow] = field(default_factory=dict)
    deliveries: list[DeliveryRow] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    dlq: dict[str, int] = field(default_factory=dict)
    lag: dict[str, int] = field(default_factory=dict)


@dataclass
class Findings:
    """Counts plus a few examples of each problem, for the log (the JSON line carries the counts)."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, name: str, example: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n
        if len(self.examples[name]) < 5:
            self.examples[name].append(example)

    def get(self, name: str) -> int:
        return self.counts.get(name, 0)


def _first_occurrences(events: list[Event]) -> list[Event]:
    """Events in log order (per partition), each CloudEvent id once: redeliveries are not new facts."""
    seen: set[str] = set()
    out: list[Event] = []
    for e in sorted(events, key=lambda e: (e.partition, e.offset)):
        if e.id not in seen:
            seen.add(e.id)
            out.append(e)
    return out


def _closes(e: Event) -> bool:
    if e.type in CLOSED_TYPES:
        return True
    body = e.data.get("call") or e.data.get("project") or {}
    return str(body.get("status", "")) == "closed"


def check_writes(acks: list[Ack], events: dict[str, list[Event]], findings: Findings) -> None:
    """**lost** and **reordered**: each acknowledged revision has its event, in order per key."""
    revs: dict[tuple[str, str], set[int]] = defaultdict(set)
    closed: set[tuple[str, str]] = set()
    for topic, kind in KIND_OF.items():
        per_key: dict[str, list[Event]] = defaultdict(list)
        for e in _first_occurrences(events.get(topic, [])):
            per_key[e.key].append(e)
        for key, seq in per_key.items():
            highest = -1.0
            for e in seq:
                rev = rev_of(kind, e.data)
                value = math.inf if _closes(e) and rev is None else float(rev if rev is not None else -1)
                if rev is not None:
                    revs[(topic, key)].add(rev)
                if _closes(e):
                    closed.add((topic, key))
                if rev is None and not _closes(e):
                    continue
                if value < highest:
                    findings.add("reordered", f"{topic} {key}: {e.type} rev {rev} after rev {highest}")
                highest = max(highest, value)
    # A revision acknowledged twice (every acknowledged poll re-states every call) is one promise.
    unique = {(a.kind, a.key, a.rev, a.closes): a for a in acks}
    for ack in unique.values():
        where = (TOPIC_OF[ack.kind], ack.key)
        ok = where in closed if ack.closes else ack.rev in revs.get(where, set())
        if not ok:
            what = "close" if ack.closes else f"rev {ack.rev}"
            findings.add("lost", f"{ack.kind} {ack.key} {what} acknowledged at {ack.at:.3f} has no event")


def expected_alerts(obs: Observations, ledger: Ledger) -> dict[tuple[str, str, str], Event]:
    """(company, target type, target id) → the first suggestion that must have alerted it."""
    expected: dict[tuple[str, str, str], Event] = {}
    for e in _first_occurrences(obs.events.get("suggestions.v1", [])):
        if e.type != SUGGESTIONS:
            continue
        for item in e.data.get("suggestions", []):
            company = str(item["company_id"])
            sub = obs.subscriptions.get(company)
            acked = ledger.subscribed_at.get(company)
            # Acknowledged (so committed) before matching created the event: the alerts consumer saw it.
            if sub is None or acked is None or acked >= e.time or not sub.active:
                continue
            if sub.filtered:
                raise ValueError(f"subscription of {company} has filters; the checker judges only unfiltered ones")
            if float(item["score"]) < sub.min_score:
                continue
            pair = (company, str(e.data["target_type"]), str(e.data["target_id"]))
            expected.setdefault(pair, e)
    return expected


def check_alerts(obs: Observations, ledger: Ledger, findings: Findings) -> None:
    """**missing**, **late**, **duplicate** and **unexpected** alerts.

    *Late*: the alert exists, but a later ranking of the target raised it, not the first one that had
    to. Rankings of one target share its key, so the alerts consumer applies them in log order, and
    the first applied one that names a subscribed company alerts it; if a later one did, the first was
    acknowledged without being applied — a lost record whose damage a re-ranking happened to repair.
    """
    ids: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    source: dict[tuple[str, str, str], str] = {}
    in_db: set[tuple[str, str, str]] = set()
    for row in obs.alerts:
        pair = (row.company_id, row.target_type, row.target_id)
        ids[pair].add(row.id)
        in_db.add(pair)
        source[pair] = row.source_event_id
    published: set[str] = set()
    for e in _first_occurrences(obs.events.get("alerts.v1", [])):
        if e.type != ALERT_RAISED:
            continue
        d = e.data
        ids[(str(d["company_id"]), str(d["target_type"]), str(d["target_id"]))].add(str(d["alert_id"]))
        published.add(str(d["alert_id"]))
    position = {e.id: (e.partition, e.offset) for e in _first_occurrences(obs.events.get("suggestions.v1", []))}
    for pair, first in expected_alerts(obs, ledger).items():
        if pair not in in_db:
            findings.add("missing_alerts", f"no alert for company {pair[0]} on {pair[1]} {pair[2]}")
        elif not ids[pair] & published:
            findings.add("missing_alerts", f"alert for {pair} in the database but never on alerts.v1")
        elif position.get(source[pair], (-1, -1)) > position[first.id]:
            findings.add(
                "late_alerts",
                f"alert for company {pair[0]} on {pair[1]} {pair[2]} raised by {source[pair]} "
                f"at {position[source[pair]]}, not by {first.id} at {position[first.id]}",
            )
    for pair, alert_ids in ids.items():
        if len(alert_ids) > 1:
            findings.add("duplicate_alerts", f"{len(alert_ids)} alerts for {pair}", len(alert_ids) - 1)
        if pair[0] not in obs.subscriptions:
            findings.add("unexpected_alerts", f"alert for {pair} without a subscription")


def check_deliveries(obs: Observations, ledger: Ledger, findings: Findings) -> None:
    """**undelivered** and **duplicate deliveries** per (alert, channel)."""
    rows = {(d.alert_id, d.channel): d for d in obs.deliveries}
    for alert in obs.alerts:
        for channel in ("webhook", "email"):
            acked = ledger.channel_at.get((alert.company_id, channel))
            if acked is not None and acked < alert.created_at and (alert.id, channel) not in rows:
                findings.add("undelivered", f"alert {alert.id} has no {channel} delivery")
    receipts: dict[str, int] = defaultdict(int)
    for item in obs.received:
        receipts[item.delivery_id] += 1
    for d in obs.deliveries:
        if d.mode != "immediate":
            continue
        n = receipts.get(d.id, 0)
        if n == 0:
            findings.add("undelivered", f"delivery {d.id} ({d.channel}, status {d.status}) never arrived")
        elif n > 1:
            findings.add("duplicate_deliveries", f"delivery {d.id} arrived {n} times", n - 1)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def alert_latencies(
    obs: Observations, ledger: Ledger, windows: list[tuple[float, float]]
) -> tuple[list[float], list[float]]:
    """(during faults, outside them): ms from a project's acknowledged post to each alert of its first ranking.

    Only alerts raised by the project's first ``suggestions.computed`` event count: later rankings
    (a company changed) are new news, not the latency of this post.
    """
    first: dict[str, str] = {}
    for e in _first_occurrences(obs.events.get("suggestions.v1", [])):
        if e.type == SUGGESTIONS and e.data.get("target_type") == "project":
            first.setdefault(str(e.data["target_id"]), e.id)
    during: list[float] = []
    steady: list[float] = []
    for alert in obs.alerts:
        posted = ledger.posted_at.get(alert.target_id)
        if posted is None or alert.target_type != "project" or first.get(alert.target_id) != alert.source_event_id:
            continue
        ms = (alert.created_at - posted) * 1000
        in_fault = any(start <= posted <= end for start, end in windows)
        (during if in_fault else steady).append(ms)
    return during, steady


STAGES = ("projects_outbox", "matching", "matching_outbox", "alerts")


def latency_stages(obs: Observations, ledger: Ledger) -> dict[str, list[float]]:
    """Where the latency of a project's first-ranking alerts goes, in ms per stage.

    ``projects_outbox``: post acknowledged → its event appended to projects.v1 (the projects relay);
    ``matching``: appended → matching emitted the ranking (queueing behind other work, ranking);
    ``matching_outbox``: emitted → appended to suggestions.v1 (the matching relay);
    ``alerts``: appended → the alert row created (the alerts consumer's queue and transaction).
    """
    posted: dict[str, Event] = {}
    for e in _first_occurrences(obs.events.get("projects.v1", [])):
        if rev_of("project", e.data) == 0:
            posted.setdefault(e.key, e)
    suggestions = {e.id: e for e in _first_occurrences(obs.events.get("suggestions.v1", []))}
    first: dict[str, str] = {}
    for e in suggestions.values():
        if e.type == SUGGESTIONS and e.data.get("target_type") == "project":
            first.setdefault(str(e.data["target_id"]), e.id)
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    for alert in obs.alerts:
        acked = ledger.posted_at.get(alert.target_id)
        project = posted.get(alert.target_id)
        ranking = suggestions.get(alert.source_event_id)
        if acked is None or project is None or ranking is None or first.get(alert.target_id) != ranking.id:
            continue
        for name, start, end in (
            ("projects_outbox", acked, project.appended),
            ("matching", project.appended, ranking.time),
            ("matching_outbox", ranking.time, ranking.appended),
            ("alerts", ranking.appended, alert.created_at),
        ):
            stages[name].append((end - start) * 1000)
    return stages


def _pct(values: list[float]) -> dict[str, float | None]:
    p50, p99 = percentile(values, 50), percentile(values, 99)
    return {
        "p50": None if p50 is None else round(p50),
        "p99": None if p99 is None else round(p99),
        "n": len(values),  # type: ignore[dict-item]
    }


@dataclass
class Report:
    summary: dict[str, Any]
    findings: Findings

    @property
    def ok(self) -> bool:
        return bool(self.summary["ok"])


FAILING = (
    "lost",
    "reordered",
    "missing_alerts",
    "late_alerts",
    "duplicate_alerts",
    "unexpected_alerts",
    "undelivered",
)


def check(
    obs: Observations,
    ledger: Ledger,
    *,
    duration_s: float,
    faults: list[dict[str, Any]],
    windows: list[tuple[float, float]],
) -> Report:
    """Apply every rule; the summary is the JSON line (``ok`` false on any loss, DLQ record or lag)."""
    findings = Findings()
    check_writes(ledger.acks, obs.events, findings)
    check_alerts(obs, ledger, findings)
    check_deliveries(obs, ledger, findings)
    dlq = {t: n for t, n in obs.dlq.items() if n}
    lag = {g: n for g, n in obs.lag.items() if n}
    during, steady = alert_latencies(obs, ledger, windows)
    summary: dict[str, Any] = {
        "duration_s": round(duration_s),
        "ops_acked": ledger.acknowledged or len(ledger.acks),
        "lost": findings.get("lost"),
        "reordered": findings.get("reordered"),
        "missing_alerts": findings.get("missing_alerts"),
        "late_alerts": findings.get("late_alerts"),
        "duplicate_alerts": findings.get("duplicate_alerts"),
        "unexpected_alerts": findings.get("unexpected_alerts"),
        "undelivered": findings.get("undelivered"),
        "duplicate_deliveries": findings.get("duplicate_deliveries"),
        "dlq_records": sum(dlq.values()),
        "consumer_lag": sum(lag.values()),
        "alerts": len(obs.alerts),
        "deliveries": len(obs.deliveries),
        "ops_failed": ledger.failed,
        "faults": faults,
        "alert_latency_ms": _pct(during),
        "alert_latency_ms_steady": _pct(steady),
        "alert_latency_stages_ms": {name: _pct(v) for name, v in latency_stages(obs, ledger).items()},
    }
    recovered = all(f.get("recovery_s") is not None for f in faults)
    summary["ok"] = recovered and not dlq and not lag and not any(summary[k] for k in FAILING)
    for topic, n in dlq.items():
        findings.add("dlq", f"{topic}: {n} record(s)", 0)
    for group, n in lag.items():
        findings.add("lag", f"{group}: lag {n}", 0)
    return Report(summary, findings)
