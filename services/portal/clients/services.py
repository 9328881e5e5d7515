"""One small client per service: the calls the portal makes, named after what they do.

Each method returns the service's JSON as it is; templates read the fields by the API's names. A
later page (e.g. consortia, issue 12) adds its calls here beside the others.
"""

from __future__ import annotations

from typing import Any

import httpx

from services.portal.clients.base import Json, ServiceClient
from shared.auth import INTERNAL_TOKEN_HEADER


class Registry(ServiceClient):
    name = "registry"

    async def whoami(self, token: str) -> Json:
        return await self.call("GET", "/accounts/me", token=token)  # type: ignore[no-any-return]

    async def register_company(self, body: Json) -> Json:
        return await self.call("POST", "/companies", json=body)  # type: ignore[no-any-return]

    async def company(self, company_id: str, *, token: str | None) -> Json:
        return await self.call("GET", f"/companies/{company_id}", token=token)  # type: ignore[no-any-return]

    async def update_company(self, company_id: str, body: Json, *, token: str) -> Json:
        return await self.call("PATCH", f"/companies/{company_id}", token=token, json=body)  # type: ignore[no-any-return]

    async def companies(self, *, token: str | None, **params: Any) -> Json:
        return await self.call("GET", "/companies", token=token, params=params)  # type: ignore[no-any-return]

    async def accounts(self, *, token: str, limit: int = 200, offset: int = 0) -> Json:
        return await self.call("GET", "/accounts", token=token, params={"limit": limit, "offset": offset})  # type: ignore[no-any-return]

    async def create_account(self, body: Json, *, token: str) -> Json:
        return await self.call("POST", "/accounts", token=token, json=body)  # type: ignore[no-any-return]

    async def rotate_token(self, account_id: str, *, token: str) -> Json:
        return await self.call("POST", f"/accounts/{account_id}/tokens/rotate", token=token)  # type: ignore[no-any-return]

    async def revoke_tokens(self, account_id: str, *, token: str) -> None:
        await self.call("DELETE", f"/accounts/{account_id}/tokens", token=token)


class Projects(ServiceClient):
    name = "projects"

    async def post(self, body: Json, *, token: str) -> Json:
        return await self.call("POST", "/projects", token=token, json=body)  # type: ignore[no-any-return]

    async def get(self, project_id: str, *, token: str | None) -> Json:
        return await self.call("GET", f"/projects/{project_id}", token=token)  # type: ignore[no-any-return]

    async def update(self, project_id: str, body: Json, *, token: str) -> Json:
        return await self.call("PATCH", f"/projects/{project_id}", token=token, json=body)  # type: ignore[no-any-return]

    async def close(self, project_id: str, *, token: str) -> Json:
        return await self.call("POST", f"/projects/{project_id}/close", token=token)  # type: ignore[no-any-return]

    async def list(self, *, token: str | None, **params: Any) -> Json:
        return await self.call("GET", "/projects", token=token, params=params)  # type: ignore[no-any-return]

    async def suggestions(self, project_id: str, *, token: str | None) -> Json:
        return await self.call("GET", f"/projects/{project_id}/suggestions", token=token)  # type: ignore[no-any-return]

    async def consortia(self, project_id: str, *, token: str | None) -> Json:
        return await self.call("GET", f"/projects/{project_id}/consortia", token=token)  # type: ignore[no-any-return]


class Calls(ServiceClient):
    name = "calls"

    async def list(self, **params: Any) -> Json:
        return await self.call("GET", "/calls", params=params)  # type: ignore[no-any-return]

    async def get(self, call_id: str) -> Json:
        return await self.call("GET", f"/calls/{call_id}")  # type: ignore[no-any-return]

    async def suggestions(self, call_id: str, *, token: str) -> Json:
        return await self.call("GET", f"/calls/{call_id}/suggestions", token=token)  # type: ignore[no-any-return]


class Alerts(ServiceClient):
    name = "alerts"

    async def subscription(self, company_id: str, *, token: str) -> Json:
        return await self.call("GET", f"/subscriptions/{company_id}", token=token)  # type: ignore[no-any-return]

    async def put_subscription(self, company_id: str, body: Json, *, token: str) -> Json:
        return await self.call("PUT", f"/subscriptions/{company_id}", token=token, json=body)  # type: ignore[no-any-return]

    async def put_channel(self, company_id: str, channel: str, body: Json, *, token: str) -> Json:
        path = f"/subscriptions/{company_id}/channels/{channel}"
        return await self.call("PUT", path, token=token, json=body)  # type: ignore[no-any-return]

    async def delete_channel(self, company_id: str, channel: str, *, token: str) -> None:
        await self.call("DELETE", f"/subscriptions/{company_id}/channels/{channel}", token=token)

    async def test_webhook(self, company_id: str, *, token: str) -> Json:
        path = f"/subscriptions/{company_id}/channels/webhook/test"
        return await self.call("POST", path, token=token)  # type: ignore[no-any-return]

    async def alerts(self, company_id: str, *, token: str, limit: int = 50, offset: int = 0) -> Json:
        params = {"limit": limit, "offset": offset}
        return await self.call("GET", f"/companies/{company_id}/alerts", token=token, params=params)  # type: ignore[no-any-return]

    async def alert(self, company_id: str, alert_id: str, *, token: str) -> Json:
        return await self.call("GET", f"/companies/{company_id}/alerts/{alert_id}", token=token)  # type: ignore[no-any-return]


class Matching(ServiceClient):
    name = "matching"

    async def proposals(self, target_type: str, target_id: str, *, token: str) -> Json:
        return await self.call("GET", f"/consortia/{target_type}/{target_id}", token=token)  # type: ignore[no-any-return]


class Consortia(ServiceClient):
    name = "consortia"

    async def open(self, target_type: str, target_id: str, *, token: str) -> Json:
        body = {"target_type": target_type, "target_id": target_id}
        return await self.call("POST", "/consortia", token=token, json=body)  # type: ignore[no-any-return]

    async def mine(self, *, token: str) -> list[Json]:
        return await self.call("GET", "/consortia", token=token)  # type: ignore[no-any-return]

    async def get(self, consortium_id: str, *, token: str) -> Json:
        return await self.call("GET", f"/consortia/{consortium_id}", token=token)  # type: ignore[no-any-return]

    async def invite(self, consortium_id: str, body: Json, *, token: str) -> Json:
        return await self.call("POST", f"/consortia/{consortium_id}/invitations", token=token, json=body)  # type: ignore[no-any-return]

    async def withdraw(self, invitation_id: str, *, token: str) -> Json:
        return await self.call("DELETE", f"/invitations/{invitation_id}", token=token)  # type: ignore[no-any-return]

    async def remove_member(self, consortium_id: str, company_id: str, *, token: str) -> None:
        await self.call("DELETE", f"/consortia/{consortium_id}/members/{company_id}", token=token)

    async def outcome(self, consortium_id: str, status: str, *, token: str) -> Json:
        path = f"/consortia/{consortium_id}/outcome"
        return await self.call("POST", path, token=token, json={"status": status})  # type: ignore[no-any-return]

    async def invitations(self, company_id: str, *, token: str) -> list[Json]:
        return await self.call("GET", f"/companies/{company_id}/invitations", token=token)  # type: ignore[no-any-return]

    async def project_funnel(self, project_id: str, *, token: str) -> Json:
        return await self.call("GET", f"/projects/{project_id}/funnel", token=token)  # type: ignore[no-any-return]

    async def company_funnel(self, company_id: str, *, token: str) -> Json:
        return await self.call("GET", f"/companies/{company_id}/funnel", token=token)  # type: ignore[no-any-return]

    async def accept(self, invitation_id: str, *, token: str) -> Json:
        return await self.call("POST", f"/invitations/{invitation_id}/accept", token=token)  # type: ignore[no-any-return]

    async def decline(self, invitation_id: str, reason: str | None, *, token: str) -> Json:
        path = f"/invitations/{invitation_id}/decline"
        return await self.call("POST", path, token=token, json={"reason": reason})  # type: ignore[no-any-return]


class Services:
    """The six clients over one shared connection pool."""

    def __init__(
        self,
        urls: dict[str, str],
        *,
        timeout_s: float,
        internal_token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        # The internal secret proves to the services that the X-Forwarded-For the portal sends is its
        # word for the browser's address (shared.client_address): without it a browser's failed logins
        # would count against the portal's address and lock every portal user out.
        self.http = httpx.AsyncClient(
            timeout=timeout_s,
            transport=transport,
            headers={INTERNAL_TOKEN_HEADER: internal_token} if internal_token else None,
            trust_env=False,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        self.registry = Registry(self.http, urls["registry"])
        self.projects = Projects(self.http, urls["projects"])
        self.calls = Calls(self.http, urls["calls"])
        self.matching = Matching(self.http, urls["matching"])
        self.alerts = Alerts(self.http, urls["alerts"])
        self.consortia = Consortia(self.http, urls["consortia"])
        self.all: dict[str, ServiceClient] = {
            c.name: c for c in (self.registry, self.projects, self.calls, self.matching, self.alerts, self.consortia)
        }

    async def health(self, name: str) -> tuple[int, Json]:
        """A service's ``/healthz`` answer (status and body), or 503 with the reason when it is down."""
        client = self.all[name]
        try:
            response = await self.http.get(client.base_url + "/healthz", timeout=3.0)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return 503, {"error": type(exc).__name__}
        return response.status_code, body if isinstance(body, dict) else {"body": body}

    async def aclose(self) -> None:
        await self.http.aclose()
