"""The mission, end to end: a new project or EDF call becomes ranked suggestions and alerts.

Five services run as separate processes on the real Kafka broker and PostgreSQL; the call watcher
reads a local replay of the EU Funding & Tenders Portal in its real format.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest

from services.calls.replay.server import ReplayServer
from shared.settings import KafkaSettings
from tests.e2e.platform import AUTH_CACHE_TTL_S, Platform
from tests.infra import KafkaBroker
from tests.integration.kafka_tools import produce, read_topic

pytestmark = pytest.mark.infra

T = TypeVar("T")


@pytest.fixture(scope="module", params=[1, 2], ids=["one-replica", "two-replicas"])
def replicas(request: pytest.FixtureRequest) -> int:
    """The core flow runs twice: one replica of matching and alerts, then two of each."""
    return int(request.param)


def eventually(check: Callable[[], T], *, timeout: float = 30.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (AssertionError, httpx.HTTPError, KeyError) as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def company(
    name: str, *, country: str = "BE", domains: list[str], capabilities: list[str], **extra: Any
) -> dict[str, Any]:
    slug = name.lower().replace(" ", "-")
    return {
        "name": name,
        "country": country,
        "city": "Leuven" if country == "BE" else "Elsewhere",
        "organisation_type": "company",
        "size": "small",
        "domains": domains,
        "capabilities": capabilities,
        "keywords": extra.pop("keywords", []),
        "website": f"https://{slug}.example",
        "contact_email": f"info@{slug}.example",
        **extra,
    }


DRONE_FIT = [
    "Radar and RF detection of small drones",
    "AI sensor fusion for counter-UAS tracking",
    "Drone classification with deep learning on radar micro-Doppler",
]
UNRELATED = ["Industrial bakery ovens", "Catering logistics for events"]


# Each company's API token (issued once by self-registration), by company id.
TOKENS: dict[str, str] = {}


def register(platform: Platform, body: dict[str, Any]) -> str:
    """Self-register a company (no token needed); keep the API token the answer carries."""
    with platform.client("registry") as c:
        r = c.post("/companies", json=body)
    assert r.status_code == 201, r.text
    TOKENS[r.json()["id"]] = r.json()["api_token"]
    return str(r.json()["id"])


INSTITUTE = "Flemish Institute for Sensing"


def institute_token(platform: Platform) -> str:
    """The token of the institute account that posts the test projects (created once per platform)."""
    token: str | None = getattr(platform, "institute_token", None)
    if token is None:
        with platform.admin("registry") as c:
            r = c.post("/accounts", json={"role": "institute", "name": INSTITUTE})
        assert r.status_code == 201, r.text
        token = str(r.json()["api_token"])
        platform.institute_token = token  # type: ignore[attr-defined]
    return token


def subscribe(platform: Platform, company_id: str, **body: Any) -> None:
    with platform.client("alerts", TOKENS[company_id]) as c:
        r = c.put(
            f"/subscriptions/{company_id}",
            json={"programmes": [], "domains": [], "keywords": [], "min_score": 0.0, "active": True, **body},
        )
    assert r.status_code == 200, r.text


def post_project(platform: Platform, **over: Any) -> str:
    body = {
        "title": "Counter-drone detection with AI sensor fusion",
        "summary": (
            "Detect, track and classify small drones near critical infrastructure by fusing radar, RF and EO/IR "
            "sensors with machine learning."
        ),
        "programme": "FSDB",
        "institute": INSTITUTE,
        "domains": ["aviation-counter-uas", "artificial-intelligence"],
        "sought_capabilities": [
            "Radar detection of small drones",
            "Sensor fusion and tracking with AI",
            "Drone classification",
        ],
        "partners_wanted": 4,
        "contact_email": "lead@fis.example",
        **over,
    }
    with platform.client("projects", institute_token(platform)) as c:
        r = c.post("/projects", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def suggestions_for(platform: Platform, project_id: str) -> list[dict[str, Any]]:
    with platform.client("projects", institute_token(platform)) as c:
        r = c.get(f"/projects/{project_id}/suggestions")
    r.raise_for_status()
    return list(r.json()["suggestions"])


def alerts_of(platform: Platform, company_id: str) -> list[dict[str, Any]]:
    with platform.client("alerts", TOKENS[company_id]) as c:
        r = c.get(f"/companies/{company_id}/alerts", params={"limit": 200})
    r.raise_for_status()
    return list(r.json()["items"])


def kafka_settings(platform: Platform, broker: KafkaBroker) -> KafkaSettings:
    return KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, TOPIC_PREFIX=platform.prefix)  # type: ignore[attr-defined, call-arg]


def test_posting_a_project_yields_explained_suggestions_and_exactly_one_alert(
    platform: Platform, kafka_broker: KafkaBroker
) -> None:
    tag = uuid.uuid4().hex[:6]
    fit = register(
        platform,
        company(
            f"Skyguard {tag}",
            domains=["aviation-counter-uas", "artificial-intelligence"],
            capabilities=DRONE_FIT,
            keywords=["counter-uas", "radar"],
        ),
    )
    weak = register(platform, company(f"Bakery {tag}", domains=["energy"], capabilities=UNRELATED))
    foreign = register(
        platform,
        company(f"Dutch Drones {tag}", country="NL", domains=["aviation-counter-uas"], capabilities=DRONE_FIT),
    )
    quiet = register(
        platform, company(f"Quiet Radar {tag}", domains=["aviation-counter-uas"], capabilities=DRONE_FIT[:2])
    )
    subscribe(platform, fit)
    subscribe(platform, foreign)
    started = time.monotonic()
    project = post_project(platform)

    ranked = eventually(
        lambda: (
            (s := suggestions_for(platform, project))
            and fit in {x["company_id"] for x in s}
            and quiet in {x["company_id"] for x in s}
            and s
        ),
        timeout=30,
        what="suggestions with the fitting companies",
    )
    latency = time.monotonic() - started
    assert latency < 15, f"suggestions took {latency:.1f}s"
    ids = [s["company_id"] for s in ranked]
    assert foreign not in ids, "a non-Belgian company was suggested for an FSDB project"
    if weak in ids:
        assert ids.index(fit) < ids.index(weak)
    top = ranked[ids.index(fit)]
    assert 0.0 <= top["score"] <= 1.0
    reasons = top["reasons"]
    assert "aviation-counter-uas" in reasons["matched_domains"]
    assert reasons["capability_matches"] and reasons["top_terms"]

    # Wait for this project's alert: the company may also be alerted about calls polled at start-up.
    alerts = eventually(
        lambda: [a for a in alerts_of(platform, fit) if a["target_id"] == project],
        what="the alert of the subscribed company",
    )
    assert len(alerts) == 1
    assert alerts_of(platform, quiet) == []  # suggested, but not subscribed
    assert all(a["target_id"] != project for a in alerts_of(platform, foreign))

    # Redeliver every suggestions event: the idempotent consumer must not alert twice.
    kafka = kafka_settings(platform, kafka_broker)
    records = asyncio.run(read_topic(kafka, "suggestions.v1", expect=10_000, timeout=5))
    computed = [r for r in records if json.loads(r.value)["type"] == "bondgenoot.suggestions.computed.v1"]
    asyncio.run(produce(kafka, "suggestions.v1", [(r.key, r.value) for r in computed]))

    def duplicates() -> int:  # summed over the alerts replicas: the group splits the redeliveries
        total = 0
        for svc in platform.replicas("alerts"):
            health = httpx.get(f"{svc.url}/healthz", timeout=10).json()
            total += sum(v["duplicates"] for v in health["consumers"].values())
        return total

    eventually(lambda: duplicates() >= len(computed), what="redeliveries handled")
    assert [a["target_id"] for a in alerts_of(platform, fit)].count(project) == 1


def test_company_registered_after_the_project_is_suggested_and_alerted(platform: Platform) -> None:
    tag = uuid.uuid4().hex[:6]
    project = post_project(platform, title=f"Drone swarm detection {tag}")
    eventually(lambda: suggestions_for(platform, project) is not None, what="first ranking")
    late = register(
        platform,
        company(
            f"Late Radar {tag}",
            domains=["aviation-counter-uas", "artificial-intelligence"],
            capabilities=DRONE_FIT,
        ),
    )
    subscribe(platform, late)
    eventually(
        lambda: late in {s["company_id"] for s in suggestions_for(platform, project)},
        what="late company suggested",
    )
    alerts = eventually(
        lambda: [a for a in alerts_of(platform, late) if a["target_id"] == project],
        what="late company alerted",
    )
    assert len(alerts) == 1


def test_a_new_edf_topic_at_the_portal_becomes_suggestions_and_alerts_and_a_deadline_change_an_update(
    platform: Platform, portal: ReplayServer, kafka_broker: KafkaBroker
) -> None:
    tag = uuid.uuid4().hex[:6]
    navy = register(
        platform,
        company(
            f"Mine Hunter {tag}",
            country="BE",
            domains=["maritime", "autonomous-systems"],
            capabilities=[
                "Unmanned underwater vehicles for mine countermeasures",
                "Synthetic aperture sonar processing",
            ],
            keywords=["mine countermeasures", "sonar"],
        ),
    )
    subscribe(platform, navy, programmes=["EDF"])
    with platform.admin("calls") as c:  # polling on demand is an operator's action
        assert c.post("/calls/poll").status_code == 200
    rows = portal.state.rows
    new_row = copy.deepcopy(next(r for r in rows if "NAVAL" in r["metadata"]["identifier"][0]))
    topic_id = f"EDF-2026-DA-NAVAL-T{tag.upper()}"
    new_row["metadata"]["identifier"] = [topic_id]
    new_row["metadata"]["title"] = ["Autonomous mine countermeasures with unmanned underwater vehicles and sonar"]
    portal.state.set_rows([*rows, new_row])
    with platform.admin("calls") as c:
        counts = c.post("/calls/poll").json()
        assert counts["new"] == 1, counts
        suggestions = eventually(
            lambda: c.get(f"/calls/{topic_id}/suggestions").json()["suggestions"],
            what="suggestions for the new call",
        )
    assert navy in {s["company_id"] for s in suggestions}
    alerts = eventually(
        lambda: [a for a in alerts_of(platform, navy) if a["target_id"] == topic_id],
        what="alert for the call",
    )
    assert len(alerts) == 1 and alerts[0]["programme"] == "EDF"

    new_row = copy.deepcopy(new_row)
    new_row["metadata"]["deadlineDate"] = ["2027-11-30T17:00:00.000+0000"]
    budget = json.loads(new_row["metadata"].get("budgetOverview", ["{}"])[0] or "{}")
    for actions in budget.get("budgetTopicActionMap", {}).values():
        for action in actions:
            action["deadlineDates"] = ["2027-11-30"]
    if budget:
        new_row["metadata"]["budgetOverview"] = [json.dumps(budget)]
    portal.state.set_rows([*rows, new_row])
    with platform.admin("calls") as c:
        counts = c.post("/calls/poll").json()
    assert counts["updated"] == 1 and counts["new"] == 0, counts
    kafka = kafka_settings(platform, kafka_broker)
    records = asyncio.run(read_topic(kafka, "calls.v1", expect=10_000, timeout=5))
    updates = [json.loads(r.value) for r in records if r.key == topic_id.encode()]
    assert [u["type"] for u in updates] == ["bondgenoot.call.published.v1", "bondgenoot.call.updated.v1"]
    assert "deadlines" in updates[1]["data"]["changed_fields"]


@pytest.mark.parametrize(
    ("service", "path", "body", "field"),
    [
        (
            "registry",
            "/companies",
            company("X", country="XX", domains=["space"], capabilities=["Satellites"]),
            "country",
        ),
        (
            "registry",
            "/companies",
            company("X", domains=["underwater-basket-weaving"], capabilities=["Satellites"]),
            "domains",
        ),
        ("registry", "/companies", company("X", domains=["space"], capabilities=[]), "capabilities"),
        (
            "registry",
            "/companies",
            company("X", domains=["space"], capabilities=["Satellites"], enterprise_number="0123.456.789"),
            "enterprise_number",
        ),
        (
            "registry",
            "/companies",
            company("X" * 10_000, domains=["space"], capabilities=["Satellites"]),
            "name",
        ),
        (
            "projects",
            "/projects",
            {
                "title": "T",
                "summary": "S",
                "programme": "FSDB",
                "institute": "I",
                "domains": ["space"],
                "sought_capabilities": ["x" * 20_000],
                "contact_email": "a@b.example",
            },
            "sought_capabilities",
        ),
        (
            "projects",
            "/projects",
            {
                "title": "T",
                "summary": "S",
                "programme": "LOTTERY",
                "institute": "I",
                "domains": ["space"],
                "sought_capabilities": ["Satellites"],
                "contact_email": "a@b.example",
            },
            "programme",
        ),
    ],
)
def test_invalid_input_is_rejected_field_by_field_and_writes_nothing(
    platform: Platform, service: str, path: str, body: dict[str, Any], field: str
) -> None:
    with platform.admin(service) as c:
        before = c.get("/healthz").json()["outbox_pending"], c.get(path, params={"limit": 1}).json()["total"]
        r = c.post(path, json=body)
        assert r.status_code == 422, r.text
        fields = {str(loc) for e in r.json()["detail"] for loc in e["loc"]}
        assert field in fields, r.json()
        after = c.get("/healthz").json()["outbox_pending"], c.get(path, params={"limit": 1}).json()["total"]
    assert after[1] == before[1]
    assert after[0] <= before[0]


def test_matching_killed_mid_flow_loses_no_suggestion_and_duplicates_no_alert(platform: Platform) -> None:
    """SIGKILL of (the first) matching replica; with two, the other takes its partitions over meanwhile."""
    tag = uuid.uuid4().hex[:6]
    fit = register(
        platform,
        company(
            f"Crashproof {tag}",
            domains=["aviation-counter-uas", "artificial-intelligence"],
            capabilities=DRONE_FIT,
        ),
    )
    subscribe(platform, fit)
    matching = platform["matching"]
    projects = [post_project(platform, title=f"Counter-UAS study {tag} #{i}") for i in range(3)]
    matching.kill()
    projects += [post_project(platform, title=f"Counter-UAS study {tag} #{i}") for i in range(3, 6)]
    matching.start()
    matching.wait_healthy()
    for p in projects:
        eventually(
            lambda p=p: fit in {s["company_id"] for s in suggestions_for(platform, p)},
            timeout=120,  # a restart, or a take-over after the session timeout, on a busy machine
            what=f"suggestions for {p}",
        )
    alerts = eventually(
        lambda: (
            (a := [x for x in alerts_of(platform, fit) if x["target_id"] in projects]) and len(a) >= len(projects) and a
        ),
        timeout=30,
        what="all alerts",
    )
    per_target = [a["target_id"] for a in alerts]
    assert sorted(per_target) == sorted(projects), "each project alerts the company exactly once"


def test_matching_replicas_split_the_targets_and_each_indexes_every_company(platform: Platform, replicas: int) -> None:
    if replicas < 2:
        pytest.skip("one replica ranks every target")
    prefix = platform.prefix  # type: ignore[attr-defined]
    with platform.admin("registry") as c:
        registered = c.get("/companies", params={"limit": 1}).json()["total"]

    def matching_health() -> list[dict[str, Any]]:
        return [httpx.get(f"{svc.url}/healthz", timeout=10).json() for svc in platform.replicas("matching")]

    healths = eventually(
        lambda: (h := matching_health()) and all(x["index"]["companies"] == registered for x in h) and h,
        what="every replica indexing every registered company",
    )
    owned = [set(h["targets"]["partitions"]) for h in healths]
    assert all(owned), f"a replica ranks nothing: {owned}"
    assert set.intersection(*owned) == set(), "a partition has two owners"
    expected = {f"{prefix}{topic}[{p}]" for topic in ("projects.v1", "calls.v1") for p in range(3)}
    assert set.union(*owned) == expected


def test_a_token_works_across_services_for_its_own_data_only_and_dies_everywhere_when_revoked(
    platform: Platform,
) -> None:
    tag = uuid.uuid4().hex[:6]
    me = register(platform, company(f"Token Co {tag}", domains=["space"], capabilities=["Satellite buses"]))
    other = register(platform, company(f"Other Co {tag}", domains=["space"], capabilities=["Ground stations"]))
    subscribe(platform, me, keywords=[f"secret-{tag}"])
    with platform.client("alerts", TOKENS[other]) as c:  # introspected at the registry, then refused
        assert c.get(f"/subscriptions/{me}").status_code == 403
        assert c.get(f"/companies/{me}/alerts").status_code == 403
        assert f"secret-{tag}" not in c.get(f"/subscriptions/{me}").text
    with platform.client("registry") as c:
        assert "contact_email" not in c.get(f"/companies/{me}").json()  # contact details are private
    with platform.client("registry", TOKENS[me]) as c:
        assert c.get(f"/companies/{me}").json()["contact_email"].startswith("info@token-co")
        account = c.get("/accounts/me").json()["id"]
        assert c.delete(f"/accounts/{account}/tokens").status_code == 204
        assert c.get("/accounts/me").status_code == 401  # at the registry: at once

    def alerts_status() -> int:
        with platform.client("alerts", TOKENS[me]) as c:
            return c.get(f"/subscriptions/{me}").status_code

    started = time.monotonic()
    eventually(lambda: alerts_status() == 401, timeout=AUTH_CACHE_TTL_S + 10, what="revocation at alerts")
    assert time.monotonic() - started <= AUTH_CACHE_TTL_S + 2
    with platform.admin("registry") as c:
        TOKENS[me] = c.post(f"/accounts/{account}/tokens/rotate").json()["api_token"]
    assert alerts_status() == 200
