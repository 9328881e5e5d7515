"""Consortium use cases: open a draft, invite, answer, leave, record the outcome; read a draft with its live checks.

Domain functions change the session and emit events; the unit of work commits (and writes the
events to the outbox in the same transaction). The roster is judged on every read and after every
change that alters it (the event says whether every rule holds), never from a stored verdict, so a
member's profile update shows at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlmodel import col, or_, select

from services.consortia.models import (
    ACTIVE,
    CompanyView,
    Consortium,
    ConsortiumCreate,
    ConsortiumRead,
    ConsortiumSummary,
    Funnel,
    Invitation,
    InvitationCreate,
    InvitationForInvitee,
    InvitationRead,
    MemberRead,
    TargetRanking,
    TargetView,
)
from services.consortia.roster import Participant, Prospect, RosterReport, TargetFacts, check, same_name
from shared.events.companies import CompanyProfileData
from shared.events.consortia import (
    ConsortiumAccepted,
    ConsortiumClosed,
    ConsortiumDeclined,
    ConsortiumInvited,
    ConsortiumLeft,
    ConsortiumOpened,
    ConsortiumSubmitted,
    ConsortiumWithdrawn,
    DeclineReason,
    LeadRef,
    Outcome,
)
from shared.outbox import UnitOfWork, utcnow

MAX_PROSPECTS = 500
"""Registered organisations scanned for a gap beyond the ranked ones (bounded: this runs on every read)."""


class NotFound(LookupError):
    """The consortium, invitation, target or company does not exist (here)."""


class Conflict(ValueError):
    """The request does not fit the current state (e.g. answering an invitation twice differently)."""


# --------------------------------------------------------------------------- lookups


async def get_consortium_or_raise(uow: UnitOfWork, *, consortium_id: str) -> Consortium:
    consortium = await uow.session.get(Consortium, consortium_id)
    if consortium is None:
        raise NotFound("consortium not found")
    return consortium


async def get_invitation_or_raise(uow: UnitOfWork, *, invitation_id: str) -> Invitation:
    invitation = await uow.session.get(Invitation, invitation_id)
    if invitation is None:
        raise NotFound("invitation not found")
    return invitation


async def accepted_members(uow: UnitOfWork, *, consortium_id: str) -> list[Invitation]:
    query = select(Invitation).where(Invitation.consortium_id == consortium_id, Invitation.status == "accepted")
    return list((await uow.session.exec(query.order_by(col(Invitation.answered_at), col(Invitation.id)))).all())


async def _profile(uow: UnitOfWork, company_id: str) -> CompanyProfileData | None:
    view = await uow.session.get(CompanyView, company_id)
    return None if view is None else CompanyProfileData.model_validate(view.profile)


async def _institute_profile(uow: UnitOfWork, institute: str) -> CompanyProfileData | None:
    """A registered organisation with the institute's name, if the institute registered a profile."""
    rows = (await uow.session.exec(select(CompanyView).where(CompanyView.name == institute))).all()
    match = next((r for r in rows if same_name(r.name, institute)), None)
    return None if match is None else CompanyProfileData.model_validate(match.profile)


# --------------------------------------------------------------------------- the live check


async def participants(uow: UnitOfWork, consortium: Consortium) -> tuple[list[Participant], list[str]]:
    """The lead and the accepted members (with profiles), and the accepted members whose profile is gone."""
    lead_profile = (
        await _profile(uow, consortium.lead_id)
        if consortium.lead_kind == "company"
        else await _institute_profile(uow, consortium.lead_id)
    )
    lead_id = lead_profile.id if lead_profile is not None else consortium.lead_id
    out = [Participant(id=lead_id, name=consortium.lead_name, coordinator=True, profile=lead_profile)]
    unknown: list[str] = []
    for invitation in await accepted_members(uow, consortium_id=consortium.id):
        profile = await _profile(uow, invitation.company_id)
        if profile is None:
            unknown.append(invitation.company_id)
        elif profile.id != lead_id:
            out.append(Participant(id=profile.id, name=profile.name, coordinator=False, profile=profile))
    return out, unknown


async def _prospects(uow: UnitOfWork, consortium: Consortium) -> list[Prospect]:
    ranking = await uow.session.get(TargetRanking, (consortium.target_type, consortium.target_id))
    ranked = list(ranking.company_ids) if ranking is not None else []
    out: list[Prospect] = []
    views = {v.company_id: v for v in (await uow.session.exec(select(CompanyView).limit(MAX_PROSPECTS))).all()}
    for rank, company_id in enumerate(ranked, start=1):
        view = views.pop(company_id, None) or await uow.session.get(CompanyView, company_id)
        if view is not None:
            out.append(Prospect(CompanyProfileData.model_validate(view.profile), rank))
    out += [Prospect(CompanyProfileData.model_validate(v.profile), None) for v in views.values()]
    return out


async def target_facts(uow: UnitOfWork, consortium: Consortium) -> TargetFacts:
    view = await uow.session.get(TargetView, (consortium.target_type, consortium.target_id))
    facts = dict(view.facts) if view is not None else {}
    facts.setdefault("title", consortium.target_title)
    facts.setdefault("programme", consortium.programme)
    return TargetFacts.from_view(consortium.target_id, facts)


async def judge(uow: UnitOfWork, consortium: Consortium, *, max_candidates: int = 3) -> RosterReport:
    """Rules, coverage and gaps of the draft's roster as it is now."""
    people, unknown = await participants(uow, consortium)
    invitations = (await uow.session.exec(select(Invitation).where(Invitation.consortium_id == consortium.id))).all()
    # Members, pending invitees and whoever declined or left are not proposed again (a withdrawn one may be).
    taken = {p.id for p in people} | {i.company_id for i in invitations if i.status != "withdrawn"}
    return check(
        target=await target_facts(uow, consortium),
        participants=people,
        unknown=unknown,
        prospects=await _prospects(uow, consortium),
        taken=taken,
        max_candidates=max_candidates,
    )


# --------------------------------------------------------------------------- use cases


async def open_consortium(uow: UnitOfWork, *, lead: LeadRef, data: ConsortiumCreate) -> Consortium:
    """Open a draft for a known, open target; the caller's organisation leads it."""
    target = await uow.session.get(TargetView, (data.target_type, data.target_id))
    if target is None:
        raise NotFound(f"no {data.target_type} {data.target_id!r} is known here (yet)")
    if target.status == "closed":
        raise Conflict(f"{data.target_type} {data.target_id} is closed")
    consortium = Consortium(
        target_type=data.target_type,
        target_id=data.target_id,
        target_title=target.title,
        programme=target.programme,
        lead_kind=lead.kind,
        lead_id=lead.id,
        lead_name=lead.name,
    )
    uow.session.add(consortium)
    uow.emit(ConsortiumOpened(consortium=consortium.ref, target_title=target.title, lead=lead), subject=consortium.id)
    return consortium


def _draft_only(consortium: Consortium) -> None:
    if consortium.status != "draft":
        raise Conflict(f"the consortium is {consortium.status}: its roster no longer changes")


async def invite(uow: UnitOfWork, *, consortium_id: str, data: InvitationCreate) -> Invitation:
    """Invite a registered company; one active (pending or accepted) place per company and draft."""
    consortium = await get_consortium_or_raise(uow, consortium_id=consortium_id)
    _draft_only(consortium)
    company = await uow.session.get(CompanyView, data.company_id)
    if company is None:
        raise NotFound(f"company {data.company_id!r} is not registered")
    if consortium.lead_kind == "company" and consortium.lead_id == data.company_id:
        raise Conflict("the lead is already part of its consortium")
    active = await uow.session.exec(
        select(Invitation).where(
            Invitation.consortium_id == consortium_id,
            Invitation.company_id == data.company_id,
            col(Invitation.status).in_(ACTIVE),
        )
    )
    if active.first() is not None:
        raise Conflict(f"{company.name} is already invited or a member")
    invitation = Invitation(consortium_id=consortium_id, company_id=data.company_id, message=data.message)
    invitation.set_status("pending")
    uow.session.add(invitation)
    _touch(uow, consortium)
    uow.emit(
        ConsortiumInvited(
            consortium=consortium.ref,
            invitation_id=invitation.id,
            company_id=data.company_id,
            target_title=consortium.target_title,
            lead=consortium.lead,
            message=data.message,
        ),
        subject=consortium.id,
    )
    return invitation


def _touch(uow: UnitOfWork, consortium: Consortium) -> None:
    consortium.updated_at = utcnow()
    uow.session.add(consortium)


async def _answer(uow: UnitOfWork, invitation_id: str, status: str) -> tuple[Invitation, Consortium, bool]:
    """The pending invitation, its draft, and whether this answer was already given (a retried request)."""
    invitation = await get_invitation_or_raise(uow, invitation_id=invitation_id)
    consortium = await get_consortium_or_raise(uow, consortium_id=invitation.consortium_id)
    if invitation.status == status:
        return invitation, consortium, True
    if invitation.status != "pending":
        raise Conflict(f"the invitation is {invitation.status}")
    _draft_only(consortium)
    return invitation, consortium, False


async def accept(uow: UnitOfWork, *, invitation_id: str) -> Invitation:
    """Join the draft; the event says whether every rule holds with the new member."""
    invitation, consortium, repeated = await _answer(uow, invitation_id, "accepted")
    if repeated:
        return invitation
    invitation.set_status("accepted")
    invitation.answered_at = utcnow()
    uow.session.add(invitation)
    await uow.session.flush()
    report = await judge(uow, consortium)
    _touch(uow, consortium)
    uow.emit(
        ConsortiumAccepted(
            consortium=consortium.ref,
            invitation_id=invitation.id,
            company_id=invitation.company_id,
            rules_passed=report.passed,
        ),
        subject=consortium.id,
    )
    return invitation


async def decline(uow: UnitOfWork, *, invitation_id: str, reason: DeclineReason | None) -> Invitation:
    invitation, consortium, repeated = await _answer(uow, invitation_id, "declined")
    if repeated:
        return invitation
    invitation.set_status("declined")
    invitation.reason = reason
    invitation.answered_at = utcnow()
    uow.session.add(invitation)
    _touch(uow, consortium)
    uow.emit(
        ConsortiumDeclined(
            consortium=consortium.ref, invitation_id=invitation.id, company_id=invitation.company_id, reason=reason
        ),
        subject=consortium.id,
    )
    return invitation


async def withdraw(uow: UnitOfWork, *, invitation_id: str) -> Invitation:
    """The lead takes back a pending invitation."""
    invitation, consortium, repeated = await _answer(uow, invitation_id, "withdrawn")
    if repeated:
        return invitation
    invitation.set_status("withdrawn")
    invitation.answered_at = utcnow()
    uow.session.add(invitation)
    _touch(uow, consortium)
    uow.emit(
        ConsortiumWithdrawn(consortium=consortium.ref, invitation_id=invitation.id, company_id=invitation.company_id),
        subject=consortium.id,
    )
    return invitation


async def remove_member(uow: UnitOfWork, *, consortium_id: str, company_id: str, by_lead: bool) -> Consortium:
    """A member leaves (or the lead removes it); the event says whether the rules still hold."""
    consortium = await get_consortium_or_raise(uow, consortium_id=consortium_id)
    _draft_only(consortium)
    members = await accepted_members(uow, consortium_id=consortium_id)
    member = next((m for m in members if m.company_id == company_id), None)
    if member is None:
        raise NotFound(f"{company_id} is not a member of this consortium")
    member.set_status("removed" if by_lead else "left")
    member.answered_at = utcnow()
    uow.session.add(member)
    await uow.session.flush()
    report = await judge(uow, consortium)
    _touch(uow, consortium)
    uow.emit(
        ConsortiumLeft(
            consortium=consortium.ref, company_id=company_id, removed_by_lead=by_lead, rules_passed=report.passed
        ),
        subject=consortium.id,
    )
    return consortium


OUTCOME_FROM: dict[str, frozenset[str]] = {
    "submitted": frozenset({"draft"}),
    "funded": frozenset({"draft", "submitted"}),
    "not_funded": frozenset({"draft", "submitted"}),
}
"""Which states each outcome may follow (recording the same outcome twice changes nothing)."""


async def record_outcome(uow: UnitOfWork, *, consortium_id: str, status: Outcome) -> Consortium:
    consortium = await get_consortium_or_raise(uow, consortium_id=consortium_id)
    if consortium.status == status:
        return consortium
    if consortium.status not in OUTCOME_FROM[status]:
        raise Conflict(f"the consortium is already {consortium.status}")
    members = [m.company_id for m in await accepted_members(uow, consortium_id=consortium_id)]
    if status == "submitted":
        report = await judge(uow, consortium)
        event: ConsortiumSubmitted | ConsortiumClosed = ConsortiumSubmitted(
            consortium=consortium.ref, members=members, rules_passed=report.passed
        )
    else:
        event = ConsortiumClosed(consortium=consortium.ref, outcome=status, members=members)
    consortium.status = status
    _touch(uow, consortium)
    uow.emit(event, subject=consortium.id)
    return consortium


# --------------------------------------------------------------------------- reads


async def read_consortium(uow: UnitOfWork, *, consortium_id: str, max_candidates: int = 3) -> ConsortiumRead:
    consortium = await get_consortium_or_raise(uow, consortium_id=consortium_id)
    report = await judge(uow, consortium, max_candidates=max_candidates)
    people, _ = await participants(uow, consortium)
    invitations = (
        await uow.session.exec(
            select(Invitation)
            .where(Invitation.consortium_id == consortium_id)
            .order_by(col(Invitation.created_at), col(Invitation.id))
        )
    ).all()
    names = await _names(uow, [i.company_id for i in invitations])
    return ConsortiumRead(
        id=consortium.id,
        target_type=consortium.ref.target_type,
        target_id=consortium.target_id,
        target_title=consortium.target_title,
        programme=consortium.programme,
        status=consortium.status,  # type: ignore[arg-type]
        lead=consortium.lead,
        members=[
            MemberRead(
                company_id=p.id,
                name=p.name,
                country=p.profile.country if p.profile else "BE",
                role="coordinator" if p.coordinator else "partner",
                covers=report.member_covers.get(p.id, []),
            )
            for p in people
        ],
        invitations=[invitation_read(i, names) for i in invitations],
        rules=report.rules,
        rules_passed=report.passed,
        coverage=report.coverage,
        gaps=report.gaps,
        created_at=consortium.created_at,
        updated_at=consortium.updated_at,
    )


async def _names(uow: UnitOfWork, company_ids: Sequence[str]) -> dict[str, str]:
    if not company_ids:
        return {}
    rows = (await uow.session.exec(select(CompanyView).where(col(CompanyView.company_id).in_(set(company_ids))))).all()
    return {r.company_id: r.name for r in rows}


def invitation_read(invitation: Invitation, names: dict[str, str]) -> InvitationRead:
    return InvitationRead(
        id=invitation.id,
        consortium_id=invitation.consortium_id,
        company_id=invitation.company_id,
        company_name=names.get(invitation.company_id, invitation.company_id),
        status=invitation.status,  # type: ignore[arg-type]
        reason=invitation.reason,  # type: ignore[arg-type]
        message=invitation.message,
        created_at=invitation.created_at,
        answered_at=invitation.answered_at,
    )


def for_invitee(invitation: Invitation, consortium: Consortium) -> InvitationForInvitee:
    return InvitationForInvitee(
        id=invitation.id,
        consortium_id=consortium.id,
        target_type=consortium.ref.target_type,
        target_id=consortium.target_id,
        target_title=consortium.target_title,
        programme=consortium.programme,
        lead=consortium.lead,
        message=invitation.message,
        status=invitation.status,  # type: ignore[arg-type]
        reason=invitation.reason,  # type: ignore[arg-type]
        created_at=invitation.created_at,
        answered_at=invitation.answered_at,
    )


async def invitations_of(uow: UnitOfWork, *, company_id: str) -> list[InvitationForInvitee]:
    """A company's invitations, newest first."""
    rows = (
        await uow.session.exec(
            select(Invitation, Consortium)
            .where(Invitation.company_id == company_id, Invitation.consortium_id == Consortium.id)
            .order_by(col(Invitation.created_at).desc(), col(Invitation.id))
        )
    ).all()
    return [for_invitee(i, c) for i, c in rows]


async def consortia_of(uow: UnitOfWork, *, lead_kind: str, lead_id: str) -> list[ConsortiumSummary]:
    """The drafts an organisation leads, and (for a company) those it is an accepted member of; newest first."""
    member_of = select(Invitation.consortium_id).where(
        Invitation.company_id == lead_id, Invitation.status == "accepted"
    )
    query = select(Consortium).where(
        or_(
            (Consortium.lead_kind == lead_kind) & (Consortium.lead_id == lead_id),
            col(Consortium.id).in_(member_of) if lead_kind == "company" else False,
        )
    )
    rows = (await uow.session.exec(query.order_by(col(Consortium.created_at).desc(), col(Consortium.id)))).all()
    return [
        ConsortiumSummary(
            id=c.id,
            target_type=c.ref.target_type,
            target_id=c.target_id,
            target_title=c.target_title,
            programme=c.programme,
            status=c.status,  # type: ignore[arg-type]
            lead=c.lead,
            role="lead" if (c.lead_kind == lead_kind and c.lead_id == lead_id) else "member",
        )
        for c in rows
    ]


SAID_YES: frozenset[str] = frozenset({"accepted", "left", "removed"})
"""Invitation states that mean the company accepted at some point (it may have left since)."""
SUBMITTED: frozenset[str] = frozenset({"submitted", "funded", "not_funded"})


async def target_funnel(uow: UnitOfWork, *, target_type: str, target_id: str) -> Funnel:
    """Suggested → invited → accepted → submitted → funded for one target, in distinct organisations."""
    ranking = await uow.session.get(TargetRanking, (target_type, target_id))
    rows = (
        await uow.session.exec(
            select(Invitation, Consortium).where(
                Invitation.consortium_id == Consortium.id,
                Consortium.target_type == target_type,
                Consortium.target_id == target_id,
            )
        )
    ).all()
    members = [(i.company_id, c.status) for i, c in rows if i.status == "accepted"]
    return Funnel(
        suggested=len(ranking.company_ids) if ranking else 0,
        invited=len({i.company_id for i, _ in rows}),
        accepted=len({i.company_id for i, _ in rows if i.status in SAID_YES}),
        submitted=len({cid for cid, status in members if status in SUBMITTED}),
        funded=len({cid for cid, status in members if status == "funded"}),
    )


async def company_funnel(uow: UnitOfWork, *, company_id: str) -> Funnel:
    """Suggested → invited → accepted → submitted → funded for one company, in distinct targets."""
    rankings = (await uow.session.exec(select(TargetRanking))).all()
    rows = (
        await uow.session.exec(
            select(Invitation, Consortium).where(
                Invitation.consortium_id == Consortium.id, Invitation.company_id == company_id
            )
        )
    ).all()

    def targets(keep: Callable[[Invitation, Consortium], bool]) -> int:
        return len({(c.target_type, c.target_id) for i, c in rows if keep(i, c)})

    return Funnel(
        suggested=sum(1 for r in rankings if company_id in r.company_ids),
        invited=targets(lambda i, c: True),
        accepted=targets(lambda i, c: i.status in SAID_YES),
        submitted=targets(lambda i, c: i.status == "accepted" and c.status in SUBMITTED),
        funded=targets(lambda i, c: i.status == "accepted" and c.status == "funded"),
    )


async def is_member(uow: UnitOfWork, *, consortium_id: str, company_id: str) -> bool:
    query = select(Invitation.id).where(
        Invitation.consortium_id == consortium_id,
        Invitation.company_id == company_id,
        Invitation.status == "accepted",
    )
    return (await uow.session.exec(query)).first() is not None
