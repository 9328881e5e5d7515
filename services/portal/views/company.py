"""A company's own pages: profile, subscription and channels, the live inbox and one opportunity."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from services.portal import i18n, labels
from services.portal.clients.base import ApiError, Invalid, NotFound
from services.portal.forms import FormState, add_row_pressed, comma_list, many, number, refused, text
from services.portal.i18n import _
from services.portal.views.account import company_body, profile_state
from services.portal.web import FormDep, NotAllowed, Page, PageContext, need, redirect, render

log = logging.getLogger(__name__)
router = APIRouter()


def _company_id(page: PageContext) -> str:
    user = need(page, "company")
    if not user.company_id:  # an admin has no company of its own
        raise NotAllowed()
    return user.company_id


async def _own_company(page: Page) -> str:
    return _company_id(page)


# Checked before a stream starts: once it streams, a refusal can no longer be a redirect or a 403 page.
OwnCompany = Annotated[str, Depends(_own_company)]


# ---------------------------------------------------------------- profile


def _profile_page(page: PageContext, state: FormState, company: dict[str, Any], status: int = 200) -> Response:
    taxonomy = page.portal.taxonomy
    return render(
        page,
        "pages/profile.html",
        status=status,
        state=state,
        company=company,
        saved=page.request.query_params.get("saved") == "1",
        domain_options=labels.domain_options(taxonomy),
        size_options=labels.options(labels.SIZES),
        type_options=labels.options(labels.ORGANISATION_TYPES),
    )


@router.get("/companies/me")
async def profile(page: Page) -> Response:
    company_id = _company_id(page)
    company = await page.services.registry.company(company_id, token=page.token)
    return _profile_page(page, profile_state(company), company)


@router.post("/companies/me")
async def save_profile(page: Page, form: FormDep) -> Response:
    company_id = _company_id(page)
    company = await page.services.registry.company(company_id, token=page.token)
    body = company_body(form)
    state = profile_state(body)
    state.values["keywords"] = text(form, "keywords")
    if add_row_pressed(form, state):
        return _profile_page(page, state, company)
    # Optional fields left blank are not sent: PATCH changes only what is given.
    try:
        await page.services.registry.update_company(company_id, body, token=page.user.token)  # type: ignore[union-attr]
    except Invalid as exc:
        return _profile_page(page, refused(state, exc), company, status=422)
    return redirect("/companies/me?saved=1")


# ---------------------------------------------------------------- subscription and channels


async def _subscription(page: PageContext, company_id: str) -> dict[str, Any] | None:
    try:
        return await page.services.alerts.subscription(company_id, token=page.token or "")  # type: ignore[no-any-return]
    except NotFound:
        return None


def _subscription_page(
    page: PageContext,
    state: FormState,
    subscription: dict[str, Any] | None,
    *,
    status: int = 200,
    secret: str | None = None,
    test_result: dict[str, Any] | None = None,
    channel_errors: dict[str, str] | None = None,
) -> Response:
    taxonomy = page.portal.taxonomy
    return render(
        page,
        "pages/subscription.html",
        status=status,
        state=state,
        subscription=subscription,
        channels=(subscription or {}).get("channels") or {},
        secret=secret,
        test_result=test_result,
        channel_errors=channel_errors or {},
        saved=page.request.query_params.get("saved"),
        domain_options=labels.domain_options(taxonomy),
        programme_options=labels.programme_options(taxonomy),
        mode_options=labels.options(labels.EMAIL_MODES),
    )


def _subscription_state(subscription: dict[str, Any] | None) -> FormState:
    values: dict[str, Any] = {"programmes": [], "domains": [], "keywords": "", "min_score": "0.3"}
    if subscription:
        values.update(subscription)
        values["keywords"] = ", ".join(subscription.get("keywords") or [])
    return FormState(values=values)


@router.get("/subscription")
async def subscription(page: Page) -> Response:
    company_id = _company_id(page)
    current = await _subscription(page, company_id)
    return _subscription_page(page, _subscription_state(current), current)


@router.post("/subscription")
async def save_subscription(page: Page, form: FormDep) -> Response:
    company_id = _company_id(page)
    body: dict[str, Any] = {
        "programmes": many(form, "programmes"),
        "domains": many(form, "domains"),
        "keywords": comma_list(form, "keywords"),
        "min_score": number(text(form, "min_score") or "0"),
        "active": True,
    }
    try:
        await page.services.alerts.put_subscription(company_id, body, token=page.token or "")
    except Invalid as exc:
        state = FormState(values={**body, "keywords": text(form, "keywords"), "min_score": text(form, "min_score")})
        return _subscription_page(page, refused(state, exc), await _subscription(page, company_id), status=422)
    return redirect("/subscription?saved=subscription")


async def _channel_refused(page: PageContext, company_id: str, exc: Invalid, channel: str) -> Response:
    current = await _subscription(page, company_id)
    fields, general = refused(FormState(), exc).errors, refused(FormState(), exc).general
    message = next(iter(fields.values()), None) or (general[0] if general else _("This value is not accepted."))
    return _subscription_page(
        page, _subscription_state(current), current, status=422, channel_errors={channel: message}
    )


@router.post("/subscription/email")
async def save_email_channel(page: Page, form: FormDep) -> Response:
    company_id = _company_id(page)
    body: dict[str, Any] = {"mode": text(form, "mode") or "immediate"}
    if text(form, "address"):
        body["address"] = text(form, "address")
    try:
        await page.services.alerts.put_channel(company_id, "email", body, token=page.token or "")
    except Invalid as exc:
        return await _channel_refused(page, company_id, exc, "email")
    return redirect("/subscription?saved=email")


@router.post("/subscription/webhook")
async def save_webhook_channel(page: Page, form: FormDep) -> Response:
    """Set the webhook; the new signing secret is in this answer only (never in a URL or a later page)."""
    company_id = _company_id(page)
    try:
        created = await page.services.alerts.put_channel(
            company_id, "webhook", {"url": text(form, "url")}, token=page.token or ""
        )
    except Invalid as exc:
        return await _channel_refused(page, company_id, exc, "webhook")
    current = await _subscription(page, company_id)
    return _subscription_page(page, _subscription_state(current), current, secret=str(created.get("secret", "")))


@router.post("/subscription/webhook/test")
async def test_webhook(page: Page, form: FormDep) -> Response:
    company_id = _company_id(page)
    try:
        result = await page.services.alerts.test_webhook(company_id, token=page.token or "")
    except Invalid as exc:
        return await _channel_refused(page, company_id, exc, "webhook")
    current = await _subscription(page, company_id)
    return _subscription_page(page, _subscription_state(current), current, test_result=result)


@router.post("/subscription/{channel}/delete")
async def delete_channel(channel: str, page: Page, form: FormDep) -> Response:
    company_id = _company_id(page)
    if channel not in ("email", "webhook"):
        raise NotFound("portal", 404)
    await page.services.alerts.delete_channel(company_id, channel, token=page.token or "")
    return redirect(f"/subscription?saved={channel}-removed")


# ---------------------------------------------------------------- inbox


@router.get("/inbox")
async def inbox(page: Page) -> Response:
    company_id = _company_id(page)
    listing = await page.services.alerts.alerts(company_id, token=page.token or "", limit=50)
    subscribed = await _subscription(page, company_id) is not None
    newest = listing["items"][0] if listing["items"] else None
    live = urlencode({"newest": newest["id"], "since": newest["created_at"]} if newest else {})
    return render(page, "pages/inbox.html", listing=listing, subscribed=subscribed, live_query=live)


@router.get("/inbox/live", response_class=EventSourceResponse)
async def inbox_live(
    page: Page,
    company_id: OwnCompany,
    newest: Annotated[str, Query(max_length=36, description="The newest alert the page shows")] = "",
    since: Annotated[str, Query(max_length=40, description="Its created_at")] = "",
) -> AsyncIterator[ServerSentEvent]:
    """New alerts as ready-to-insert HTML, relayed from the alerts service's own stream.

    The browser's ``Last-Event-ID`` is passed on, so a reconnecting page gets what it missed. On a
    first connection the upstream stream starts at the present, so alerts that arrived between the
    page and its stream (newer than ``since``) are read from the inbox and sent first; an alert is
    never sent twice on one connection.
    """
    i18n.set_locale(page.locale)
    template = page.portal.env.get_template("fragments/alert_item.html")
    last = page.request.headers.get("last-event-id")
    client = page.services.alerts
    sent: set[str] = {newest} if newest else set()

    def item(alert: dict[str, Any], event_id: str | None) -> ServerSentEvent:
        sent.add(str(alert["id"]))
        html = template.render(alert=alert, fresh=True, user=page.user, locale=page.locale)
        return ServerSentEvent(event="alert", id=event_id, raw_data=html)

    try:
        stream = f"/companies/{company_id}/alerts/stream"
        async with client.events(stream, token=page.token, last_event_id=last) as events:
            async for event, data, event_id in events:
                if event == "ready" and last is None:
                    recent = await client.alerts(company_id, token=page.token or "", limit=50)
                    for alert in reversed(recent["items"]):
                        if alert["id"] not in sent and (not since or alert["created_at"] > since):
                            yield item(alert, None)
                elif event == "alert":
                    alert = json.loads(data)
                    if alert["id"] not in sent:
                        yield item(alert, event_id)
    except ApiError as exc:  # the page keeps what it shows; the browser reconnects
        log.warning("inbox stream for %s ended: %s", company_id, exc)


@router.get("/inbox/{alert_id}")
async def opportunity(alert_id: str, page: Page) -> Response:
    """One alert: the project or call it is about, and why it fits this company."""
    company_id = _company_id(page)
    alert = await page.services.alerts.alert(company_id, alert_id, token=page.token or "")
    target: dict[str, Any] | None = None
    try:
        if alert["target_type"] == "project":
            target = await page.services.projects.get(alert["target_id"], token=page.token)
        else:
            target = await page.services.calls.get(alert["target_id"])
    except NotFound:
        target = None  # removed since: the alert still says why it fitted
    return render(page, "pages/opportunity.html", alert=alert, target=target)
