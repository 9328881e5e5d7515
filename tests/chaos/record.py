"""What a fault run observed, kept on disk: the post-mortem of a run and a re-check without re-running it.

Every run writes ``.data/chaos/<run>/observations.json`` — the topics, the alerts database, the sinks'
receipts, the load's ledger and the fault windows — before its cluster and PostgreSQL are torn down.
``python -m tests.chaos --recheck <file>`` applies the checker to it again (after a rule changed, or
to look at one alert's history with the real data in hand).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos.checker import AlertRow, DeliveryRow, Event, Observations, Report, SubscriptionRow, check
from tests.chaos.load import Ack, Ledger
from tests.chaos.sinks import Received


@dataclass
class RunRecord:
    """Everything :func:`tests.chaos.checker.check` needs, as a run left it."""

    observations: Observations
    ledger: Ledger
    duration_s: float
    faults: list[dict[str, Any]]
    windows: list[tuple[float, float]]
    # Facts about the run the checker does not judge (e.g. load_paused_s): copied into the summary.
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> Report:
        report = check(
            self.observations, self.ledger, duration_s=self.duration_s, faults=self.faults, windows=self.windows
        )
        report.summary.update(self.extra)
        return report

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(_document(self)))

    @classmethod
    def load(cls, path: Path) -> RunRecord:
        return _from_document(json.loads(path.read_text()))


def _document(record: RunRecord) -> dict[str, Any]:
    obs, ledger = record.observations, record.ledger
    return {
        "duration_s": record.duration_s,
        "faults": record.faults,
        "windows": record.windows,
        "extra": record.extra,
        "observations": {
            "events": {topic: [asdict(e) for e in events] for topic, events in obs.events.items()},
            "alerts": [asdict(a) for a in obs.alerts],
            "subscriptions": [asdict(s) for s in obs.subscriptions.values()],
            "deliveries": [asdict(d) for d in obs.deliveries],
            "received": [asdict(r) for r in obs.received],
            "dlq": obs.dlq,
            "lag": obs.lag,
        },
        "ledger": {
            "acks": [asdict(a) for a in ledger.acks],
            "acknowledged": ledger.acknowledged,
            "failed": ledger.failed,
            "failures": ledger.failures,
            "posted_at": ledger.posted_at,
            "subscribed_at": ledger.subscribed_at,
            # JSON has no tuple keys: (company, channel) → at becomes [company, channel, at].
            "channel_at": [[company, channel, at] for (company, channel), at in ledger.channel_at.items()],
        },
    }


def _from_document(doc: dict[str, Any]) -> RunRecord:
    o, led = doc["observations"], doc["ledger"]
    observations = Observations(
        events={topic: [Event(**e) for e in events] for topic, events in o["events"].items()},
        alerts=[AlertRow(**a) for a in o["alerts"]],
        subscriptions={s["company_id"]: SubscriptionRow(**s) for s in o["subscriptions"]},
        deliveries=[DeliveryRow(**d) for d in o["deliveries"]],
        received=[Received(**r) for r in o["received"]],
        dlq=o["dlq"],
        lag=o["lag"],
    )
    ledger = Ledger(
        acks=[Ack(**a) for a in led["acks"]],
        acknowledged=led["acknowledged"],
        failed=led["failed"],
        failures=led["failures"],
        posted_at=led["posted_at"],
        subscribed_at=led["subscribed_at"],
        channel_at={(company, channel): at for company, channel, at in led["channel_at"]},
    )
    windows = [(float(a), float(b)) for a, b in doc["windows"]]
    return RunRecord(observations, ledger, float(doc["duration_s"]), doc["faults"], windows, doc.get("extra", {}))
