"""shared.auth without infrastructure: settings, the access rules, the guard, introspection, the limiter."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import yaml
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import ValidationError

from shared.auth import (
    ACCESS_TABLE,
    ADMIN,
    CALLERS,
    DEV_ADMIN_TOKEN,
    DEV_INTERNAL_TOKEN,
    INTERNAL_TOKEN_HEADER,
    Access,
    AuthGuard,
    AuthSettings,
    AuthUnavailable,
    FailureLimiter,
    OptionalPrincipal,
    Principal,
    RegistryIntrospection,
    allowed,
    digests_equal,
    internal_caller,
    render_access_table,
    require,
    token_digest,
)
from shared.settings import ServiceSettings
from tests.infra import load_script

ROOT = Path(__file__).resolve().parents[2]
GOOD_ADMIN = "a" * 40
GOOD_INTERNAL = "b" * 40


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- settings


def test_local_and_test_environments_fall_back_to_the_development_secrets() -> None:
    for env in ("local", "test"):
        settings = AuthSettings(env=env, admin_token=None, internal_token=None)
        assert (settings.admin_secret, settings.internal_secret) == (DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN)


@pytest.mark.parametrize(
    ("admin", "internal", "complaint"),
    [
        (None, None, "BONDGENOOT_ADMIN_TOKEN is not set"),
        (DEV_ADMIN_TOKEN, GOOD_INTERNAL, "BONDGENOOT_ADMIN_TOKEN is the local development default"),
        (GOOD_ADMIN, DEV_INTERNAL_TOKEN, "BONDGENOOT_INTERNAL_TOKEN is the local development default"),
        ("tiny-secret", GOOD_INTERNAL, "BONDGENOOT_ADMIN_TOKEN is shorter than 32 characters"),
        (GOOD_ADMIN, None, "BONDGENOOT_INTERNAL_TOKEN is not set"),
        (GOOD_ADMIN, GOOD_ADMIN, "must differ"),
    ],
)
def test_production_refuses_missing_default_short_or_shared_secrets(
    admin: str | None, internal: str | None, complaint: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        AuthSettings(env="production", admin_token=admin, internal_token=internal)
    message = str(raised.value)
    assert "BONDGENOOT_ENV=production refuses to start" in message and complaint in message
    for secret in (admin, internal):
        if secret and secret not in (DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN):
            assert secret not in message  # a refusal never prints what it was given


def test_production_accepts_real_secrets_and_the_guard_uses_them() -> None:
    auth = AuthSettings(env="production", admin_token=GOOD_ADMIN, internal_token=GOOD_INTERNAL)
    assert auth.admin_secret == GOOD_ADMIN
    guard = AuthGuard.for_service(ServiceSettings(env="production", database_url="postgresql://h/db"), auth=auth)
    assert isinstance(guard.resolver, RegistryIntrospection)


def test_a_production_service_without_secrets_does_not_start_and_says_why(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BONDGENOOT_", "REGISTRY_", "KAFKA_", "OTEL_"))}
    env |= {
        "BONDGENOOT_ENV": "production",
        "REGISTRY_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/registry",
        "OTEL_TRACES_EXPORTER": "none",
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.registry"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "BONDGENOOT_ENV=production refuses to start: BONDGENOOT_ADMIN_TOKEN is not set" in done.stderr


# --------------------------------------------------------------------------- the rules


def test_digests_compare_in_constant_time_and_never_equal_the_token() -> None:
    digest = token_digest("bgt_secret")
    assert len(digest) == 64 and "secret" not in digest
    assert digests_equal(digest, token_digest("bgt_secret"))
    assert not digests_equal(digest, token_digest("bgt_secreT"))


@pytest.mark.parametrize(
    ("access", "expected"),
    [
        # caller → (own, other)
        (Access.PUBLIC, {c: (True, True) for c in CALLERS}),
        (Access.REGISTER, {c: (True, True) for c in CALLERS}),
        (Access.AUTHENTICATED, {**{c: (True, True) for c in CALLERS}, "anonymous": (False, False)}),
        (
            Access.ADMIN,
            {"anonymous": (0, 0), "institute": (0, 0), "company": (0, 0), "integrator": (0, 0), "admin": (1, 1)},
        ),
        (
            Access.INSTITUTE,
            {"anonymous": (0, 0), "institute": (1, 1), "company": (0, 0), "integrator": (0, 0), "admin": (1, 1)},
        ),
        (
            Access.OWN_COMPANY,
            {"anonymous": (0, 0), "institute": (0, 0), "company": (1, 0), "integrator": (0, 0), "admin": (1, 1)},
        ),
        (
            Access.OWN_PROJECT,
            {"anonymous": (0, 0), "institute": (1, 0), "company": (0, 0), "integrator": (0, 0), "admin": (1, 1)},
        ),
        (
            Access.PROJECT_INSIGHT,
            {"anonymous": (0, 0), "institute": (1, 0), "company": (0, 0), "integrator": (1, 1), "admin": (1, 1)},
        ),
        (
            Access.OWN_ACCOUNT,
            {"anonymous": (0, 0), "institute": (1, 0), "company": (1, 0), "integrator": (1, 0), "admin": (1, 1)},
        ),
        (Access.INTERNAL, {c: (False, False) for c in CALLERS}),
    ],
)
def test_who_may_do_what(access: Access, expected: dict[str, tuple[Any, Any]]) -> None:
    got = {c: (allowed(access, c, own=True), allowed(access, c, own=False)) for c in CALLERS}
    assert got == {c: (bool(own), bool(other)) for c, (own, other) in expected.items()}


def test_the_table_has_one_row_per_route_and_the_docs_show_it() -> None:
    keys = [(e.service, e.method, e.path) for e in ACCESS_TABLE]
    assert len(keys) == len(set(keys))
    assert all(e.path.startswith("/") and e.method in {"GET", "POST", "PUT", "PATCH", "DELETE"} for e in ACCESS_TABLE)
    docs = (ROOT / "docs" / "security.md").read_text("utf-8")
    assert render_access_table() in docs, "paste shared.auth.render_access_table() into docs/security.md"


def test_make_run_seeds_with_the_same_local_admin_token_the_services_accept() -> None:
    module = load_script(ROOT / "deploy" / "local" / "run.py", "local_run")
    assert module.DEV_ADMIN_TOKEN == DEV_ADMIN_TOKEN


# --------------------------------------------------------------------------- the limiter


def test_failures_over_the_limit_are_refused_until_they_are_a_minute_old() -> None:
    clock = Clock()
    limiter = FailureLimiter(3, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") is None
        limiter.record("10.0.0.1")
        clock.now += 1
    assert limiter.retry_after("10.0.0.1") == pytest.approx(57.0)
    assert limiter.retry_after("10.0.0.2") is None  # per client
    clock.now += 57.5
    assert limiter.retry_after("10.0.0.1") is None


def test_the_internal_secret_is_accepted_even_from_an_address_over_the_failure_limit() -> None:
    guard = AuthGuard(admin_token=GOOD_ADMIN, internal_token=GOOD_INTERNAL, resolver=Tokens({}), failure_limit=2)
    shared = Request(
        {"type": "http", "method": "POST", "path": "/auth/introspect", "headers": [], "client": ("10.0.0.9", 1)}
    )
    for _ in range(2):
        with pytest.raises(HTTPException) as refused:
            guard.check_internal(shared, "a guess")
        assert refused.value.status_code == 401
    with pytest.raises(HTTPException) as limited:
        guard.check_internal(shared, "another guess")
    assert limited.value.status_code == 429
    guard.check_internal(shared, GOOD_INTERNAL)  # the services' own call: never refused, never counted
    assert len(guard.limiter._events["10.0.0.9"]) == 2


def test_failures_a_platform_component_forwards_count_against_its_browser_not_against_it() -> None:
    """The portal forwards every browser's failed login; with the internal secret its word counts."""
    guard = AuthGuard(admin_token=GOOD_ADMIN, internal_token=GOOD_INTERNAL, resolver=Tokens({}), failure_limit=2)

    def via_portal(browser: str, secret: str | None) -> Request:
        headers = [(b"x-forwarded-for", browser.encode())]
        if secret is not None:
            headers.append((b"x-internal-token", secret.encode()))
        return Request(
            {"type": "http", "method": "GET", "path": "/accounts/me", "headers": headers, "client": ("10.0.0.9", 1)}
        )

    assert guard.client_ip(via_portal("203.0.113.7", GOOD_INTERNAL)) == "203.0.113.7"
    # Without the secret (or with a guess) the header is anyone's word: the peer is the client.
    assert guard.client_ip(via_portal("203.0.113.7", None)) == "10.0.0.9"
    assert guard.client_ip(via_portal("203.0.113.7", "a guess")) == "10.0.0.9"


def test_the_limiter_forgets_clients_when_it_is_full() -> None:
    clock = Clock()
    limiter = FailureLimiter(1, max_keys=10, clock=clock)
    for n in range(50):
        limiter.record(f"10.0.0.{n}")
    assert len(limiter._events) <= 10
    assert limiter.retry_after("10.0.0.49") is not None


# --------------------------------------------------------------------------- introspection


def _registry(answers: dict[str, dict[str, Any]], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get(INTERNAL_TOKEN_HEADER) != GOOD_INTERNAL:
            return httpx.Response(401)
        token = json.loads(request.content)["token"]
        return httpx.Response(200, json=answers.get(token, {"active": False}))

    return httpx.MockTransport(handle)


COMPANY = {"active": True, "account_id": "acc-1", "role": "company", "name": "Acme", "company_id": "c-1"}


async def test_introspection_caches_valid_tokens_for_the_ttl_only() -> None:
    clock, seen = Clock(), []
    resolver = RegistryIntrospection(
        "http://registry/", GOOD_INTERNAL, ttl_s=30, clock=clock, transport=_registry({"bgt_ok": COMPANY}, seen)
    )
    principal = await resolver.resolve("bgt_ok")
    assert principal == Principal(account_id="acc-1", role="company", name="Acme", company_id="c-1")
    assert await resolver.resolve("bgt_ok") == principal
    assert len(seen) == 1 and str(seen[0].url) == "http://registry/auth/introspect"
    clock.now += 30
    await resolver.resolve("bgt_ok")
    assert len(seen) == 2  # expired: asked again, so a revocation lands within the TTL
    assert await resolver.resolve("bgt_unknown") is None
    assert await resolver.resolve("bgt_unknown") is None
    assert len(seen) == 4  # unknown tokens are not cached
    assert all("bgt_ok" not in key for key in resolver._cache)  # keyed by digest
    await resolver.aclose()


async def test_introspection_that_fails_is_unavailable_not_unauthorised() -> None:
    seen: list[httpx.Request] = []
    wrong_secret = RegistryIntrospection("http://r", "wrong", transport=_registry({}, seen))
    with pytest.raises(AuthUnavailable):
        await wrong_secret.resolve("bgt_ok")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    down = RegistryIntrospection("http://r", GOOD_INTERNAL, transport=httpx.MockTransport(refuse))
    with pytest.raises(AuthUnavailable):
        await down.resolve("bgt_ok")


async def test_the_cache_is_bounded() -> None:
    answers = {f"bgt_{n}": {**COMPANY, "account_id": str(n)} for n in range(5)}
    resolver = RegistryIntrospection("http://r", GOOD_INTERNAL, max_entries=3, transport=_registry(answers, []))
    for token in answers:
        await resolver.resolve(token)
    assert len(resolver._cache) == 3


# --------------------------------------------------------------------------- the guard on routes


class Tokens:
    def __init__(self, known: dict[str, Principal]) -> None:
        self.known = known
        self.down = False

    async def resolve(self, token: str, *, fresh: bool = False) -> Principal | None:
        if self.down:
            raise AuthUnavailable("registry down")
        return self.known.get(token)

    async def aclose(self) -> None:
        return None


ACME = Principal(account_id="acc-acme", role="company", name="Acme", company_id="c-acme")
LAB = Principal(account_id="acc-lab", role="institute", name="Lab", institute="Lab")
AGENCY = Principal(account_id="acc-agency", role="integrator", name="Agency")


async def _lab_owns(request: Request, principal: Principal) -> bool | None:
    project = request.path_params["project_id"]
    return None if project == "missing" else principal.owns_institute(project)


@pytest.fixture
def app() -> FastAPI:
    app = FastAPI()
    tokens = Tokens({"bgt_acme": ACME, "bgt_lab": LAB, "bgt_agency": AGENCY})
    app.state.auth = AuthGuard(admin_token=GOOD_ADMIN, internal_token=GOOD_INTERNAL, resolver=tokens, failure_limit=5)

    @app.get("/public")
    async def public(principal: OptionalPrincipal) -> dict[str, Any]:
        return {"who": principal.account_id if principal else None}

    @app.get("/companies/{company_id}/private", dependencies=[Depends(require(Access.OWN_COMPANY))])
    async def private(company_id: str) -> dict[str, str]:
        return {"company": company_id}

    @app.get("/projects/{project_id}/insight")
    async def insight(
        project_id: str, p: Annotated[Principal, Depends(require(Access.PROJECT_INSIGHT, owner=_lab_owns))]
    ) -> dict[str, str]:
        return {"project": project_id, "who": p.account_id}

    @app.get("/accounts/{account_id}", dependencies=[Depends(require(Access.OWN_ACCOUNT))])
    async def account(account_id: str) -> dict[str, str]:
        return {"account": account_id}

    @app.post("/internal", dependencies=[Depends(internal_caller)])
    async def internal() -> dict[str, bool]:
        return {"ok": True}

    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_tokens_roles_and_ownership_decide(app: FastAPI) -> None:
    async with _client(app) as c:
        assert (await c.get("/public")).json() == {"who": None}
        assert (await c.get("/public", headers=_bearer("bgt_acme"))).json() == {"who": "acc-acme"}
        assert (await c.get("/public", headers=_bearer(GOOD_ADMIN))).json() == {"who": ADMIN.account_id}
        bad = await c.get("/public", headers=_bearer("bgt_forged"))  # a bad token is refused even where none is needed
        assert bad.status_code == 401 and bad.headers["WWW-Authenticate"] == "Bearer"

        assert (await c.get("/companies/c-acme/private")).status_code == 401
        assert (await c.get("/companies/C-ACME/private", headers=_bearer("bgt_acme"))).status_code == 200
        assert (await c.get("/companies/c-other/private", headers=_bearer("bgt_acme"))).status_code == 403
        assert (await c.get("/companies/c-acme/private", headers=_bearer("bgt_lab"))).status_code == 403
        assert (await c.get("/companies/c-other/private", headers=_bearer(GOOD_ADMIN))).status_code == 200

        assert (await c.get("/projects/Lab/insight", headers=_bearer("bgt_lab"))).status_code == 200
        assert (await c.get("/projects/Other/insight", headers=_bearer("bgt_lab"))).status_code == 403
        assert (await c.get("/projects/missing/insight", headers=_bearer("bgt_lab"))).status_code == 404
        assert (await c.get("/projects/Other/insight", headers=_bearer("bgt_agency"))).status_code == 200
        assert (await c.get("/projects/Lab/insight", headers=_bearer("bgt_acme"))).status_code == 403

        assert (await c.get("/accounts/acc-acme", headers=_bearer("bgt_acme"))).status_code == 200
        assert (await c.get("/accounts/acc-lab", headers=_bearer("bgt_acme"))).status_code == 403

        assert (await c.post("/internal", headers={INTERNAL_TOKEN_HEADER: GOOD_INTERNAL})).status_code == 200
        assert (await c.post("/internal", headers=_bearer(GOOD_ADMIN))).status_code == 401
        assert (await c.post("/internal", headers={INTERNAL_TOKEN_HEADER: GOOD_ADMIN})).status_code == 401


async def test_failed_authentication_is_rate_limited_and_logged_without_the_token(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "bgt_forged_" + "x" * 30
    async with _client(app) as c:
        with caplog.at_level(logging.WARNING, logger="shared.auth"):
            codes = [(await c.get("/public", headers=_bearer(forged))).status_code for _ in range(6)]
            good = await c.get("/public", headers=_bearer("bgt_acme"))
            anonymous = await c.get("/public")
    assert codes == [401] * 5 + [429]
    assert good.status_code == 429 and int(good.headers["Retry-After"]) > 0
    assert anonymous.status_code == 200  # public reads without a token are not authentication attempts
    assert caplog.text.count("authentication failed from 127.0.0.1: GET /public") == 5
    assert "too many failures" in caplog.text
    assert forged not in caplog.text and "forged" not in caplog.text


async def test_a_registry_that_does_not_answer_is_503_not_401(app: FastAPI) -> None:
    app.state.auth.resolver.down = True
    async with _client(app) as c:
        response = await c.get("/public", headers=_bearer("bgt_acme"))
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert (await c.get("/public", headers=_bearer(GOOD_ADMIN))).status_code == 200  # admin is local
    assert app.state.auth.limiter.retry_after("127.0.0.1") is None  # not counted as a failure


async def test_a_service_without_a_guard_refuses_instead_of_serving(app: FastAPI) -> None:
    del app.state.auth
    async with _client(app) as c:
        assert (await c.get("/companies/c-acme/private", headers=_bearer("bgt_acme"))).status_code == 503


# --------------------------------------------------------------------------- docker compose


def test_compose_gives_each_service_its_own_kafka_user_and_requires_real_secrets() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
    services = compose["services"]
    for name in ("registry", "projects", "calls", "matching", "alerts"):
        env = services[name]["environment"]
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT" and env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["KAFKA_SASL_USERNAME"] == name
        assert env["KAFKA_SASL_PASSWORD"].startswith(f"${{BONDGENOOT_KAFKA_{name.upper()}_PASSWORD:?")
        for secret in ("BONDGENOOT_ADMIN_TOKEN", "BONDGENOOT_INTERNAL_TOKEN"):
            assert env[secret].startswith(f"${{{secret}:?"), f"{name}: {secret} must be required, not defaulted"
        assert env["BONDGENOOT_REGISTRY_URL"] == "http://registry:8001"
    kafka = services["kafka"]
    protocols = dict(p.split(":") for p in kafka["environment"]["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert protocols["PLAINTEXT"] == protocols["EXTERNAL"] == "SASL_PLAINTEXT"
    assert "CONTROLLER://127.0.0.1:" in kafka["environment"]["KAFKA_LISTENERS"]  # never reachable from outside
    assert kafka["command"] == ["bash", "/opt/bondgenoot/compose-sasl.sh"]
    assert "./deploy/kafka/compose-sasl.sh:/opt/bondgenoot/compose-sasl.sh:ro" in kafka["volumes"]
    script = (ROOT / "deploy" / "kafka" / "compose-sasl.sh").read_text("utf-8")
    assert "allow.everyone.if.no.acl.found=false" in script
    assert subprocess.run(["bash", "-n", str(ROOT / "deploy" / "kafka" / "compose-sasl.sh")]).returncode == 0
