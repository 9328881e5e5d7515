"""Events on ``consortia.v1``: consortium drafts, invitations and outcomes (private: only lead and members see a draft).

Every event of one consortium has the consortium id as its key, so a consumer sees a draft's
history in order. The topic names organisations and who declined whom, so it is not for
integrators; the outcome of a consortium is what the matcher learns from.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from shared.events.base import EventData, event
from shared.events.suggestions import TargetType

TOPIC = "consortia.v1"

LeadKind = Literal["institute", "company"]
DeclineReason = Literal["no_capacity", "not_our_field", "other_consortium", "other"]
Outcome = Literal["submitted", "funded", "not_funded"]


class LeadRef(BaseModel):
    """The organisation leading a draft: an institute (by name, as projects carry it) or a company (by id)."""

    kind: LeadKind
    id: str
    name: str


class ConsortiumRef(BaseModel):
    """Which draft an event is about, and for which target."""

    consortium_id: str
    target_type: TargetType
    target_id: str
    programme: str


@event("bondgenoot.consortium.opened.v1", topic=TOPIC, public=False)
class ConsortiumOpened(EventData):
    consortium: ConsortiumRef
    target_title: str
    lead: LeadRef


@event("bondgenoot.consortium.invited.v1", topic=TOPIC, public=False)
class ConsortiumInvited(EventData):
    """An organisation was invited: what its inbox and channels need to tell it."""

    consortium: ConsortiumRef
    invitation_id: str
    company_id: str
    target_title: str
    lead: LeadRef
    message: str = ""


@event("bondgenoot.consortium.accepted.v1", topic=TOPIC, public=False)
class ConsortiumAccepted(EventData):
    consortium: ConsortiumRef
    invitation_id: str
    company_id: str
    rules_passed: bool = Field(description="Whether every rule holds on the roster after this change")


@event("bondgenoot.consortium.declined.v1", topic=TOPIC, public=False)
class ConsortiumDeclined(EventData):
    consortium: ConsortiumRef
    invitation_id: str
    company_id: str
    reason: DeclineReason | None = None


@event("bondgenoot.consortium.withdrawn.v1", topic=TOPIC, public=False)
class ConsortiumWithdrawn(EventData):
    """The lead withdrew a pending invitation."""

    consortium: ConsortiumRef
    invitation_id: str
    company_id: str


@event("bondgenoot.consortium.left.v1", topic=TOPIC, public=False)
class ConsortiumLeft(EventData):
    """A member left, or the lead removed it (``removed_by_lead``)."""

    consortium: ConsortiumRef
    company_id: str
    removed_by_lead: bool
    rules_passed: bool


@event("bondgenoot.consortium.submitted.v1", topic=TOPIC, public=False)
class ConsortiumSubmitted(EventData):
    """The lead submitted the proposal: the roster at that moment is the final consortium."""

    consortium: ConsortiumRef
    members: list[str] = Field(description="Company ids of the accepted members")
    rules_passed: bool


@event("bondgenoot.consortium.closed.v1", topic=TOPIC, public=False)
class ConsortiumClosed(EventData):
    """The outcome is known: funded or not funded."""

    consortium: ConsortiumRef
    outcome: Literal["funded", "not_funded"]
    members: list[str]
