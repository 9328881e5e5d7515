"""HTTP routes of the consortia service: thin adapters from requests to domain functions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from sqlalchemy.exc import IntegrityError

from services.consortia import domain
from services.consortia.models import (
    CompanyView,
    Consortium,
    ConsortiumCreate,
    ConsortiumRead,
    ConsortiumSummary,
    DeclineBody,
    Funnel,
    Invitation,
    InvitationCreate,
    InvitationForInvitee,
    InvitationRead,
    OutcomeBody,
    TargetView,
)
from shared.api_docs import errors
from shared.auth import Access, Principal, require
from shared.events.consortia import LeadRef
from shared.outbox import UnitOfWork, UnitOfWorkFactory
from shared.validation import EntityIdPath

router = APIRouter(tags=["consortia"])


def _uow(request: Request) -> UnitOfWorkFactory:
    return request.app.state.runtime.uow  # type: ignore[no-any-return]


def leads(consortium: Consortium, principal: Principal) -> bool:
    if consortium.lead_kind == "company":
        return principal.owns_company(consortium.lead_id)
    return principal.owns_institute(consortium.lead_id)


# --------------------------------------------------------------------------- ownership lookups (shared.auth.require)


async def _lead_of_consortium(request: Request, principal: Principal) -> bool | None:
    async with _uow(request)() as uow:
        consortium = await uow.session.get(Consortium, str(request.path_params["consortium_id"]))
        return None if consortium is None else leads(consortium, principal)


async def _lead_of_invitation(request: Request, principal: Principal) -> bool | None:
    async with _uow(request)() as uow:
        invitation = await uow.session.get(Invitation, str(request.path_params["invitation_id"]))
        consortium = None if invitation is None else await uow.session.get(Consortium, invitation.consortium_id)
        return None if consortium is None else leads(consortium, principal)


async def _member_of_consortium(request: Request, principal: Principal) -> bool | None:
    """The lead, or an accepted member; on a member path, only the lead or that member itself."""
    consortium_id = str(request.path_params["consortium_id"])
    async with _uow(request)() as uow:
        consortium = await uow.session.get(Consortium, consortium_id)
        if consortium is None:
            return None
        if leads(consortium, principal):
            return True
        about = request.path_params.get("company_id")
        if principal.company_id is None or (about is not None and not principal.owns_company(str(about))):
            return False
        return await domain.is_member(uow, consortium_id=consortium_id, company_id=principal.company_id)


async def _invitee(request: Request, principal: Principal) -> bool | None:
    async with _uow(request)() as uow:
        invitation = await uow.session.get(Invitation, str(request.path_params["invitation_id"]))
        return None if invitation is None else principal.owns_company(invitation.company_id)


Lead = Annotated[Principal, Depends(require(Access.CONSORTIUM_LEAD, owner=_lead_of_consortium))]
Member = Annotated[Principal, Depends(require(Access.CONSORTIUM_MEMBER, owner=_member_of_consortium))]
Invitee = Annotated[Principal, Depends(require(Access.INVITEE, owner=_invitee))]
InvitationLead = Annotated[Principal, Depends(require(Access.CONSORTIUM_LEAD, owner=_lead_of_invitation))]
Organisation = Annotated[Principal, Depends(require(Access.ORGANISATION))]


# --------------------------------------------------------------------------- errors


def _http(exc: Exception) -> HTTPException:
    if isinstance(exc, domain.NotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))
    return HTTPException(status.HTTP_409_CONFLICT, str(exc))


async def _commit(uow: UnitOfWork) -> None:
    """Commit; a concurrent change that broke a uniqueness rule is a conflict, not a server error."""
    try:
        await uow.commit()
    except IntegrityError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, "changed concurrently: already invited or a member") from exc


async def _lead_ref(uow: UnitOfWork, principal: Principal) -> LeadRef:
    if principal.role == "company" and principal.company_id:
        company = await uow.session.get(CompanyView, principal.company_id)
        return LeadRef(kind="company", id=principal.company_id, name=company.name if company else principal.name)
    # Institutes lead under the name their projects carry; an admin acts as the platform's own organisation.
    name = principal.institute or principal.name
    return LeadRef(kind="institute", id=name, name=name)


# --------------------------------------------------------------------------- routes


@router.post(
    "/consortia", status_code=status.HTTP_201_CREATED, response_model=ConsortiumRead, responses=errors(404, 409)
)
async def open_consortium(body: ConsortiumCreate, request: Request, principal: Organisation) -> ConsortiumRead:
    """Open a draft for a project or call; the caller's organisation leads it."""
    async with _uow(request)() as uow:
        try:
            consortium = await domain.open_consortium(uow, lead=await _lead_ref(uow, principal), data=body)
            await uow.session.flush()
            read = await domain.read_consortium(uow, consortium_id=consortium.id, max_candidates=_candidates(request))
        except (domain.NotFound, domain.Conflict) as exc:
            raise _http(exc) from exc
        await _commit(uow)
        return read


@router.get("/consortia", response_model=list[ConsortiumSummary])
async def my_consortia(request: Request, principal: Organisation) -> list[ConsortiumSummary]:
    """The drafts the caller's organisation leads or is a member of."""
    async with _uow(request)() as uow:
        lead = await _lead_ref(uow, principal)
        return await domain.consortia_of(uow, lead_kind=lead.kind, lead_id=lead.id)


def _candidates(request: Request) -> int:
    return int(request.app.state.runtime.settings.gap_candidates)


@router.get("/consortia/{consortium_id}", response_model=ConsortiumRead, responses=errors(404))
async def get_consortium(consortium_id: EntityIdPath, request: Request, principal: Member) -> ConsortiumRead:
    """The draft: lead, members, invitations, the rule checks on the accepted roster, coverage and gaps."""
    async with _uow(request)() as uow:
        try:
            return await domain.read_consortium(uow, consortium_id=consortium_id, max_candidates=_candidates(request))
        except domain.NotFound as exc:
            raise _http(exc) from exc


@router.post(
    "/consortia/{consortium_id}/invitations",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationRead,
    responses=errors(404, 409),
)
async def invite(
    consortium_id: EntityIdPath, body: InvitationCreate, request: Request, principal: Lead
) -> InvitationRead:
    async with _uow(request)() as uow:
        try:
            invitation = await domain.invite(uow, consortium_id=consortium_id, data=body)
        except (domain.NotFound, domain.Conflict) as exc:
            raise _http(exc) from exc
        await _commit(uow)
        company = await uow.session.get(CompanyView, invitation.company_id)
        names = {invitation.company_id: company.name} if company else {}
        return domain.invitation_read(invitation, names)


@router.delete(
    "/consortia/{consortium_id}/members/{company_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(404, 409),
)
async def remove_member(
    consortium_id: EntityIdPath, company_id: EntityIdPath, request: Request, principal: Member
) -> Response:
    """The lead removes a member, or a member leaves."""
    async with _uow(request)() as uow:
        try:
            consortium = await domain.get_consortium_or_raise(uow, consortium_id=consortium_id)
            by_lead = leads(consortium, principal) or (principal.is_admin and not principal.owns_company(company_id))
            await domain.remove_member(uow, consortium_id=consortium_id, company_id=company_id, by_lead=by_lead)
        except (domain.NotFound, domain.Conflict) as exc:
            raise _http(exc) from exc
        await _commit(uow)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/consortia/{consortium_id}/outcome", response_model=ConsortiumRead, responses=errors(404, 409))
async def record_outcome(
    consortium_id: EntityIdPath, body: OutcomeBody, request: Request, principal: Lead
) -> ConsortiumRead:
    """Submitted, funded or not funded: what the matcher learns from."""
    async with _uow(request)() as uow:
        try:
            await domain.record_outcome(uow, consortium_id=consortium_id, status=body.status)
            await uow.session.flush()
            read = await domain.read_consortium(uow, consortium_id=consortium_id, max_candidates=_candidates(request))
        except (domain.NotFound, domain.Conflict) as exc:
            raise _http(exc) from exc
        await _commit(uow)
        return read


async def _invitation_for_invitee(uow: UnitOfWork, invitation_id: str) -> InvitationForInvitee:
    invitation = await domain.get_invitation_or_raise(uow, invitation_id=invitation_id)
    consortium = await domain.get_consortium_or_raise(uow, consortium_id=invitation.consortium_id)
    return domain.for_invitee(invitation, consortium)


@router.get("/invitations/{invitation_id}", response_model=InvitationForInvitee, responses=errors(404))
async def get_invitation(invitation_id: EntityIdPath, request: Request, principal: Invitee) -> InvitationForInvitee:
    async with _uow(request)() as uow:
        try:
            return await _invitation_for_invitee(uow, invitation_id)
        except domain.NotFound as exc:
            raise _http(exc) from exc


@router.post("/invitations/{invitation_id}/accept", response_model=InvitationForInvitee, responses=errors(404, 409))
async def accept(invitation_id: EntityIdPath, request: Request, principal: Invitee) -> InvitationForInvitee:
    async with _uow(request)() as uow:
        try:
            await domain.accept(uow, invitation_id=invitation_id)
            read = await _invitation_for_invitee(uow, invitation_id)
        except (domain.NotFound, domain.Conflict) as exc:
            raise _http(exc) from exc
        await _commit(uow)
        return read


@router.post("/invitations/{invitation_id}/decline", response_model=InvitationForInvitee, responses=errors(404, 409))
async def decline(
    invitation_id: EntityIdPath, request: Request, principal: Invitee, body: DeclineBody | None = None
) -> InvitationForInvitee:
    async with _uow(request)() as uow:
        try:
            await domain.decline(uow, invitation_id=invitation_id, reason=body.reason if body else None)
            read = await _invitation_for_invitee(uow, invitation_id)
        except (domain.NotFound, domain.Conflict) as exc:
            raise _http(exc) from exc
        await _commit(uow)
        return read


@router.delete("/invitations/{invitation_id}", response_model=InvitationRead, responses=errors(404, 409))
async def withdraw(invitation_id: EntityIdPath, request: Request, principal: InvitationLead) -> InvitationRead:
    """The lead withdraws a pending invitation."""
    async with _uow(request)() as uow:
        try:
            invitation = await domain.withdraw(uow, invitation_id=invitation_id)
        except (domain.NotFound, domain.Conflict) as exc:
            raise _http(exc) from exc
        await _commit(uow)
        return domain.invitation_read(invitation, {})


async def _posted_project(request: Request, principal: Principal) -> bool | None:
    """A project belongs to the institute it names (as the projects service says, via projects.v1)."""
    async with _uow(request)() as uow:
        target = await uow.session.get(TargetView, ("project", str(request.path_params["project_id"])))
        return None if target is None else principal.owns_institute(target.facts.get("institute"))


@router.get("/projects/{project_id}/funnel", response_model=Funnel, tags=["outcomes"], responses=errors(404))
async def project_funnel(
    project_id: EntityIdPath,
    request: Request,
    principal: Annotated[Principal, Depends(require(Access.OWN_PROJECT, owner=_posted_project))],
) -> Funnel:
    """How far this project's suggestions went: suggested, invited, accepted, submitted, funded organisations."""
    async with _uow(request)() as uow:
        if await uow.session.get(TargetView, ("project", project_id)) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such project is known here (yet)")
        return await domain.target_funnel(uow, target_type="project", target_id=project_id)


@router.get("/companies/{company_id}/funnel", response_model=Funnel, tags=["outcomes"])
async def company_funnel(
    company_id: EntityIdPath,
    request: Request,
    principal: Annotated[Principal, Depends(require(Access.OWN_COMPANY))],
) -> Funnel:
    """How far a company's suggestions went: targets it was suggested for, invited to, accepted, submitted, funded."""
    async with _uow(request)() as uow:
        return await domain.company_funnel(uow, company_id=company_id.lower())


@router.get("/companies/{company_id}/invitations", response_model=list[InvitationForInvitee])
async def company_invitations(
    company_id: EntityIdPath,
    request: Request,
    principal: Annotated[Principal, Depends(require(Access.OWN_COMPANY))],
) -> list[InvitationForInvitee]:
    """Every invitation a company received, newest first (answered ones included)."""
    async with _uow(request)() as uow:
        return await domain.invitations_of(uow, company_id=company_id.lower())
