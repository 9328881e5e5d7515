"""The pages that links in e-mails open: unsubscribe and confirm an address. No login: the signed token
in the link is the credential (services/alerts/signing.py).

A GET never changes anything: mail scanners and link previews open links on their own. It shows a
page with one button that POSTs to the same URL. ``POST /unsubscribe/{token}`` is also what mail
clients send for RFC 8058 one-click unsubscribe (``List-Unsubscribe-Post: List-Unsubscribe=One-Click``).
"""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import HTMLResponse

from services.alerts import confirmation
from services.alerts import delivery as domain
from services.alerts.confirmation import ConfirmResult
from services.alerts.settings import AlertsSettings
from services.alerts.signing import InvalidToken, read_unsubscribe_token
from shared.outbox import UnitOfWorkFactory

router = APIRouter(tags=["links"])

Token = Annotated[str, Path(max_length=300, description="The signed token from the e-mail")]


def _pages(**statuses: str) -> dict[int | str, dict[str, object]]:
    """The refusals these routes answer, documented (as pages, not JSON)."""
    return {int(code[1:]): {"description": text, "content": {"text/html": {}}} for code, text in statuses.items()}


_INVALID = "The link is not valid (a page that says so)"

# The token in the URL is a credential: never cached, never sent on as a Referer, never framed.
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'",
}
_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title} - Bondgenoot</title></head>
<body style="font-family:sans-serif;max-width:36em;margin:3em auto;padding:0 1em"><h1>{title}</h1><p>{text}</p>
{form}</body></html>"""
_FORM = """<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit" style="font-size:1.1em;padding:.5em 1em">{label}</button></form>"""


def _page(title: str, text: str, *, button: str | None = None, code: int = status.HTTP_200_OK) -> HTMLResponse:
    form = _FORM.format(label=html.escape(button)) if button else ""
    body = _PAGE.format(title=html.escape(title), text=html.escape(text), form=form)
    return HTMLResponse(body, status_code=code, headers=_HEADERS)


def _settings(request: Request) -> AlertsSettings:
    return request.app.state.alert_delivery.settings  # type: ignore[no-any-return]


def _uow(request: Request) -> UnitOfWorkFactory:
    return request.app.state.runtime.uow  # type: ignore[no-any-return]


_NOT_VALID = "This link is not valid (was it cut short?). Use the link in the e-mail as it is."


# --- unsubscribe ---


@router.get("/unsubscribe/{token}", response_class=HTMLResponse, responses=_pages(s400=_INVALID))
async def unsubscribe_page(token: Token, request: Request) -> HTMLResponse:
    """The unsubscribe link in every alert e-mail: a page that asks; nothing changes until its button is pressed."""
    try:
        _, channel, _ = read_unsubscribe_token(_settings(request).unsubscribe_key, token)
    except InvalidToken:
        return _page("Link not valid", _NOT_VALID, code=status.HTTP_400_BAD_REQUEST)
    what = "e-mail" if channel == "email" else "webhook"
    text = f"Stop sending Bondgenoot alerts to this address by {what}? The company's in-app inbox keeps them."
    return _page("Unsubscribe", text, button="Unsubscribe")


@router.post("/unsubscribe/{token}", response_class=HTMLResponse, responses=_pages(s400=_INVALID))
async def unsubscribe(token: Token, request: Request) -> HTMLResponse:
    """RFC 8058 one-click (and the page's button): switch the channel off if it still goes to this address."""
    try:
        company_id, channel, tag = read_unsubscribe_token(_settings(request).unsubscribe_key, token)
    except InvalidToken:
        return _page("Link not valid", _NOT_VALID, code=status.HTTP_400_BAD_REQUEST)
    async with _uow(request)() as uow:
        result = await domain.deactivate_channel(uow, company_id=company_id, channel=channel, address_tag=tag)
        await uow.commit()
    what = "e-mail" if channel == "email" else "webhook"
    if result in (domain.Unsubscribed.NOW, domain.Unsubscribed.ALREADY):
        text = f"You will receive no more Bondgenoot alerts by {what} at this address."
    else:  # nothing goes to this address any more either way: say so, change nothing
        text = f"Bondgenoot sends no alerts by {what} to this address any more; nothing was changed."
    return _page("Unsubscribed", text)


# --- confirming an e-mail address ---


_CONFIRM_TEXT = {
    ConfirmResult.CONFIRMED: ("Address confirmed", "This address now receives the company's Bondgenoot alerts."),
    ConfirmResult.ALREADY: ("Address confirmed", "This address was confirmed already; nothing changed."),
    ConfirmResult.EXPIRED: (
        "Link expired",
        "This confirmation link has expired. Ask the company to save the address again for a new one.",
    ),
    ConfirmResult.OUTDATED: (
        "Link no longer used",
        "The company's alerts no longer go to the address this link was for; nothing changed.",
    ),
    ConfirmResult.INVALID: ("Link not valid", _NOT_VALID),
}
_CONFIRM_STATUS = {
    ConfirmResult.EXPIRED: status.HTTP_410_GONE,
    ConfirmResult.OUTDATED: status.HTTP_409_CONFLICT,
    ConfirmResult.INVALID: status.HTTP_400_BAD_REQUEST,
}


@router.get(
    "/confirm-email/{token}",
    response_class=HTMLResponse,
    responses=_pages(s400=_INVALID),
)
async def confirm_page(token: Token, request: Request) -> HTMLResponse:
    """The link in a confirmation e-mail: a page with a button; nothing is confirmed by opening it."""
    problem = confirmation.check_token(_settings(request), token)
    if problem is not None:
        title, text = _CONFIRM_TEXT[problem]
        return _page(title, text, code=_CONFIRM_STATUS[problem])
    text = "A company asked to send its Bondgenoot alerts (new EDF, FSDB and other calls and projects) here."
    return _page("Receive Bondgenoot alerts at this address?", text, button="Yes, send me the alerts")


@router.post(
    "/confirm-email/{token}",
    response_class=HTMLResponse,
    responses=_pages(s400=_INVALID),
)
async def confirm(token: Token, request: Request) -> HTMLResponse:
    """Confirm the address: from now on the company's alert e-mails go to it."""
    async with _uow(request)() as uow:
        result = await confirmation.confirm(uow, settings=_settings(request), token=token)
        await uow.commit()
    title, text = _CONFIRM_TEXT[result]
    return _page(title, text, code=_CONFIRM_STATUS.get(result, status.HTTP_200_OK))
