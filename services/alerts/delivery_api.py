"""HTTP routes for delivery: channels, deliveries, one-click unsubscribe and the live alert stream.

Separate from ``api.py`` on purpose (the subscription and inbox routes live there) and from
``links_api.py`` (the pages e-mail links open); bootstrap includes all three routers. Access: a
company's channels, deliveries and stream are its own (the company itself and admins, as for its
subscription); a delivery found by id is checked against its company.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel

from services.alerts import delivery as domain
from services.alerts.confirmation import ConfirmationLimited, ConfirmationService
from services.alerts.delivery import DeliveryService
from services.alerts.delivery_models import (
    AttemptPublic,
    ChannelName,
    ChannelsPublic,
    Delivery,
    DeliveryDetail,
    DeliveryPublic,
    DeliveryStatus,
    EmailChannelIn,
    EmailChannelPublic,
    EmailConfirmation,
    Redelivery,
    SubscriptionChannel,
    WebhookChannelCreated,
    WebhookChannelIn,
)
from services.alerts.destination import DestinationRefused
from services.alerts.models import UUID_PATTERN, Subscription
from services.alerts.removal import is_removed
from services.alerts.stream import alert_events
from shared.api_docs import errors
from shared.auth import Access, PresentedToken, Principal, check, guard, require, token_recheck
from shared.http import Page, PageDep
from shared.limits import MAX_DB_BIGINT
from shared.live import StillAllowed, StreamHub, stream_slot
from shared.outbox import UnitOfWorkFactory

router = APIRouter()
_own_company = require(Access.OWN_COMPANY)
OwnCompany = [Depends(_own_company)]
OwnCompanyCaller = Annotated[Principal | None, Depends(_own_company)]
Caller = Annotated[Principal | None, Depends(require(Access.AUTHENTICATED))]

CompanyIdPath = Annotated[
    str, Path(pattern=UUID_PATTERN, max_length=36, description="The company's id in the registry (a UUID)")
]
DeliveryIdPath = Annotated[str, Path(pattern=UUID_PATTERN, max_length=36, description="The delivery's id")]


def _uow(request: Request) -> UnitOfWorkFactory:
    return request.app.state.runtime.uow  # type: ignore[no-any-return]


def _service(request: Request) -> DeliveryService:
    return request.app.state.alert_delivery  # type: ignore[no-any-return]


def _confirmations(request: Request) -> ConfirmationService:
    return request.app.state.alert_confirmations  # type: ignore[no-any-return]


def _hub(request: Request) -> StreamHub:
    return request.app.state.alert_stream  # type: ignore[no-any-return]


def _delivery(row: Delivery) -> DeliveryPublic:
    return DeliveryPublic.model_validate(row, from_attributes=True)


def _check_owner(principal: Principal | None, company_id: str) -> None:
    """A delivery is its company's: the company itself and admins (the route has no company in its path)."""
    owns = principal is not None and (principal.is_admin or principal.owns_company(company_id))
    check(Access.OWN_COMPANY, principal, owns=owns)


def _not_subscribed() -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, "subscription not found: PUT /subscriptions/{company_id} first")


# --- channels ---


@router.get(
    "/subscriptions/{company_id}/channels",
    response_model=ChannelsPublic,
    tags=["channels"],
    dependencies=OwnCompany,
    responses=errors(404),
)
async def get_channels(company_id: CompanyIdPath, request: Request) -> ChannelsPublic:
    """The subscription's channels: the inbox (always on), e-mail (and whether its address confirmed) and
    webhook (never its secret)."""
    async with _uow(request)() as uow:
        subscription = await uow.session.get(Subscription, company_id.lower())
        if subscription is None:
            raise _not_subscribed()
        return ChannelsPublic.from_rows(list(subscription.channels), subscription.confirmation)


@router.put(
    "/subscriptions/{company_id}/channels/email",
    response_model=EmailChannelPublic,
    tags=["channels"],
    responses=errors(404, 429, d429="This account caused too many confirmation e-mails in the last hour"),
)
async def put_email_channel(
    company_id: CompanyIdPath, body: EmailChannelIn, request: Request, principal: OwnCompanyCaller
) -> EmailChannelPublic:
    """Send alerts by e-mail, one per alert (``immediate``) or one a day (``digest``); re-activates it.

    A new address first gets a confirmation e-mail; alerts go to it once its owner confirmed
    (``confirmed`` in the answer). Until then the in-app inbox has them.
    """
    confirmations = _confirmations(request)
    account = principal.account_id if principal is not None else "anonymous"
    async with _uow(request)() as uow:
        try:
            row, requested = await domain.put_email_channel(
                uow,
                company_id=company_id.lower(),
                data=body,
                may_send_confirmation=confirmations.limiter.retry_after(account) is None,
            )
        except domain.SubscriptionNotFound as exc:
            raise _not_subscribed() from exc
        except ConfirmationLimited as exc:
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(exc), headers={"Retry-After": "600"}) from exc
        await uow.commit()
        confirmation = await uow.session.get(EmailConfirmation, company_id.lower())
        public = EmailChannelPublic.from_row(row, confirmation)
    if requested:
        confirmations.limiter.record(account)
        confirmations.wake()
    return public


@router.put(
    "/subscriptions/{company_id}/channels/webhook",
    response_model=WebhookChannelCreated,
    tags=["channels"],
    dependencies=OwnCompany,
    responses=errors(404),
)
async def put_webhook_channel(
    company_id: CompanyIdPath, body: WebhookChannelIn, request: Request
) -> WebhookChannelCreated:
    """POST each alert to ``url``. The response holds a new signing secret: it is shown only this once.

    ``url`` must be ``https`` and point at a public address (docs/security.md, "Webhook destinations").
    """
    async with _uow(request)() as uow:
        try:
            row, secret = await domain.put_webhook_channel(
                uow, company_id=company_id.lower(), data=body, policy=_service(request).destinations
            )
        except domain.SubscriptionNotFound as exc:
            raise _not_subscribed() from exc
        except DestinationRefused as exc:
            raise RequestValidationError(
                [{"type": "webhook_destination", "loc": ("body", "url"), "msg": exc.reason, "input": str(body.url)}]
            ) from exc
        await uow.commit()
        return WebhookChannelCreated.model_validate(
            {**_channel_fields(row), "secret": secret},
        )


def _channel_fields(row: SubscriptionChannel) -> dict[str, object]:
    return {
        "url": row.url,
        "active": row.active,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "deactivated_at": row.deactivated_at,
    }


@router.delete(
    "/subscriptions/{company_id}/channels/{channel}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["channels"],
    dependencies=OwnCompany,
    responses=errors(404),
)
async def delete_channel(company_id: CompanyIdPath, channel: ChannelName, request: Request) -> Response:
    """Remove the e-mail or webhook channel; deliveries not yet sent on it are cancelled."""
    async with _uow(request)() as uow:
        try:
            await domain.delete_channel(uow, company_id=company_id.lower(), channel=channel)
        except domain.SubscriptionNotFound as exc:
            raise _not_subscribed() from exc
        except domain.ChannelNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {channel} channel") from exc
        await uow.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class WebhookTestResult(BaseModel):
    ok: bool
    status_code: int | None
    latency_ms: float
    error: str | None


@router.post(
    "/subscriptions/{company_id}/channels/webhook/test",
    response_model=WebhookTestResult,
    tags=["channels"],
    responses=errors(404, 429, d429="The account sent its maximum of redeliveries and webhook tests this minute"),
)
async def test_webhook_channel(
    company_id: CompanyIdPath, request: Request, principal: OwnCompanyCaller
) -> WebhookTestResult:
    """Send one signed test event to the webhook now and say what the receiver answered (not a delivery).

    Counts, like a redelivery, against the account's ``ALERTS_REDELIVER_LIMIT`` sends per minute.
    """
    _limit_sends(_service(request), principal)
    async with _uow(request)() as uow:
        try:
            outcome = await domain.send_test_webhook(uow, _service(request).sender, company_id=company_id.lower())
        except domain.SubscriptionNotFound as exc:
            raise _not_subscribed() from exc
        except domain.ChannelNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no webhook channel") from exc
    return WebhookTestResult(
        ok=outcome.ok, status_code=outcome.status_code, latency_ms=outcome.latency_ms, error=outcome.error
    )


# --- deliveries ---


@router.get(
    "/subscriptions/{company_id}/deliveries",
    response_model=Page[DeliveryPublic],
    tags=["deliveries"],
    dependencies=OwnCompany,
)
async def list_deliveries(
    company_id: CompanyIdPath,
    request: Request,
    page: PageDep,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
) -> Page[DeliveryPublic]:
    """The subscription's deliveries, newest first; ``?status=failed`` lists those given up on."""
    async with _uow(request)() as uow:
        rows, total = await domain.list_deliveries(
            uow, company_id=company_id.lower(), status=status_, limit=page.limit, offset=page.offset
        )
        return Page(items=[_delivery(r) for r in rows], total=total, limit=page.limit, offset=page.offset)


@router.get("/deliveries/{delivery_id}", response_model=DeliveryDetail, tags=["deliveries"], responses=errors(404))
async def get_delivery(delivery_id: DeliveryIdPath, request: Request, principal: Caller) -> DeliveryDetail:
    """One delivery with every attempt (time, status code, latency, error)."""
    async with _uow(request)() as uow:
        try:
            row, attempts = await domain.get_delivery(uow, delivery_id=delivery_id.lower())
        except domain.DeliveryNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "delivery not found") from exc
        _check_owner(principal, row.company_id)
        return DeliveryDetail.model_validate(
            {
                **_delivery(row).model_dump(),
                "attempt_log": [AttemptPublic.model_validate(a, from_attributes=True) for a in attempts],
            }
        )


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response_model=Redelivery,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["deliveries"],
    responses=errors(
        404,
        409,
        429,
        d409="The delivery is still queued (pending or retrying), or delivered and not forced",
        d429="Too many redeliveries by this account in the last minute (see Retry-After)",
    ),
)
async def redeliver(
    delivery_id: DeliveryIdPath,
    request: Request,
    principal: Caller,
    force: Annotated[bool, Query(description="Send a delivered delivery again (otherwise 409)")] = False,
) -> Redelivery:
    """Queue the delivery again (e.g. after the receiver recovered); it starts a fresh retry ladder.

    Limited to ``ALERTS_REDELIVER_LIMIT`` calls per account per minute.
    """
    _limit_sends(_service(request), principal)
    async with _uow(request)() as uow:
        try:
            row, _ = await domain.get_delivery(uow, delivery_id=delivery_id.lower())
        except domain.DeliveryNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "delivery not found") from exc
        _check_owner(principal, row.company_id)
    try:
        row, job_id = await _service(request).redeliver(delivery_id.lower(), force=force)
    except domain.DeliveryNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "delivery not found") from exc
    except (domain.DeliveryInProgress, domain.AlreadyDelivered) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return Redelivery(delivery=_delivery(row), job_id=job_id)


def _limit_sends(service: DeliveryService, principal: Principal | None) -> None:
    """Every send on demand (redeliver, webhook test) counts against the caller's account; over the limit:
    429 with Retry-After. Without it an account could make the platform POST at any public URL at will."""
    account = principal.account_id if principal is not None else "anonymous"
    wait = service.redeliveries.retry_after(account)
    if wait is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"at most {service.redeliveries.limit} redeliveries and webhook tests per minute; try again later",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    service.redeliveries.record(account)


# --- live stream ---


async def _stream_slot(request: Request, principal: OwnCompanyCaller) -> AsyncIterator[None]:
    """One of the account's ``ALERTS_STREAM_MAX_PER_ACCOUNT`` stream slots, held while the stream is open."""
    with stream_slot(_hub(request), principal):
        yield


def _stream_check(request: Request, company_id: str, principal: Principal | None, token: str | None) -> StillAllowed:
    """What an open stream asks every auth-cache TTL: is the token still this caller's, the company still there?"""
    token_still_valid = token_recheck(request, principal, token)

    async def still_allowed() -> str | None:
        if (reason := await token_still_valid()) is not None:
            return reason
        async with _uow(request)() as uow:
            if await is_removed(uow, company_id):
                return "the company was removed"
        return None

    return still_allowed


@router.get(
    "/companies/{company_id}/alerts/stream",
    response_class=EventSourceResponse,
    tags=["alerts"],
    responses=errors(429, d429="The account has its maximum of open streams"),
)
async def alert_stream(
    company_id: CompanyIdPath,
    request: Request,
    principal: OwnCompanyCaller,
    token: PresentedToken,
    _slot: Annotated[None, Depends(_stream_slot)],
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", pattern=r"^\d{1,18}$", max_length=18, description="Resume after this alert"),
    ] = None,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_DB_BIGINT,
            description="Start after this alert number (0: the whole inbox); Last-Event-ID wins",
        ),
    ] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: ``event: alert``, ``id:`` the alert's sequence number, ``data:`` the alert.

    Reconnect with ``Last-Event-ID`` (browsers do it themselves) to get every alert after that id,
    then the live ones. Without it the stream starts at the present; ``?after=0`` replays the inbox.
    The token is checked again every ``AUTH_CACHE_TTL`` seconds: after a revocation, or when the
    company is removed, the stream sends ``event: closed`` with the reason and ends.
    """
    start = int(last_event_id) if last_event_id is not None else after
    async for event in alert_events(
        _uow(request),
        _hub(request),
        company_id=company_id.lower(),
        after=start,
        poll_interval_s=_service(request).settings.stream_poll_interval_s,
        still_allowed=_stream_check(request, company_id.lower(), principal, token),
        recheck_s=max(1.0, guard(request).token_ttl_s),
    ):
        yield event


__all__ = ["router"]
