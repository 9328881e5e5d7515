"""Events on ``alerts.v1`` (private: it names which company was alerted)."""

from __future__ import annotations

from datetime import datetime

from shared.events.base import EventData, event
from shared.events.suggestions import MatchReasons, TargetType

TOPIC = "alerts.v1"


@event("bondgenoot.alert.raised.v1", topic=TOPIC, public=False)
class AlertRaised(EventData):
    alert_id: str
    company_id: str
    target_type: TargetType
    target_id: str
    target_title: str
    programme: str
    score: float
    rank: int
    reasons: MatchReasons
    raised_at: datetime
