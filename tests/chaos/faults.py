"""The faults, one after another, each followed by a measured recovery.

Every fault is injected while the load runs, held for a while, healed, and then a *canary* walks the
whole flow: a new company registers and subscribes with a webhook, a project it fits is posted, the
call watcher polls, and the suite waits until the canary's alert reaches the webhook receiver. The
time from the heal to that delivery is the fault's recovery time.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import httpx

from tests.chaos.load import Load
from tests.chaos.platform import TOPICS, ChaosPlatform

log = logging.getLogger(__name__)

T = TypeVar("T")

# aiokafka's default session.timeout.ms is 10 s: a pause or partition must outlast it to fence the member.
SESSION_TIMEOUT_S = 10.0
# PostgreSQL's log line when it ends a session idle in a transaction past the outbox lock's lease.
LEASE_EXPIRED = "idle-in-transaction timeout"
KINDS = ("broker-kill", "service-kill", "pause", "pg-restart", "partition", "latency-kafka", "latency-pg")


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str = ""
    hold_s: float = 5.0


@dataclass
class FaultResult:
    kind: str
    target: str
    started_at: float
    healed_at: float
    recovered_at: float | None
    recovery_s: float | None
    detail: str = ""

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out["recovery_s"] = None if self.recovery_s is None else round(self.recovery_s, 1)
        for key in ("started_at", "healed_at", "recovered_at"):
            out.pop(key)
        return out


def schedule(platform: ChaosPlatform, *, short: bool, only: list[str] | None = None) -> list[Fault]:
    """One round of every fault kind; ``short`` holds each fault only as long as its effect needs."""
    topo = platform.topology
    hold = 4.0 if short else 8.0
    fenced = SESSION_TIMEOUT_S + 5.0
    faults = [Fault("broker-kill", hold_s=hold)]
    faults += [Fault("service-kill", name, hold_s=2.0) for name in platform.services]
    faults += [
        Fault("pause", topo.pause_target, hold_s=fenced),
        Fault("pg-restart", hold_s=hold),
        Fault("partition", topo.network_target, hold_s=fenced),
        Fault("latency-kafka", topo.network_target, hold_s=fenced if not short else 10.0),
        Fault("latency-pg", topo.network_target, hold_s=fenced if not short else 10.0),
    ]
    if only:
        unknown = [k for k in only if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {KINDS}")
        faults = [f for f in faults if f.kind in only]
    return faults


@dataclass
class FaultRunner:
    platform: ChaosPlatform
    load: Load
    recovery_timeout_s: float = 300.0
    kafka_delay_s: float = 0.25
    pg_delay_s: float = 0.05
    results: list[FaultResult] = field(default_factory=list)

    async def run(self, faults: list[Fault], *, until: float) -> list[FaultResult]:
        """Inject ``faults`` in order, cycling through them until the monotonic time ``until``."""
        if not faults:
            return self.results
        i = 0
        while True:
            fault = faults[i % len(faults)]
            await self.inject(fault)
            i += 1
            if i >= len(faults) and time.monotonic() >= until:
                break
        return self.results

    async def inject(self, fault: Fault) -> FaultResult:
        p = self.platform
        started = time.time()
        detail = ""
        log.info("fault: %s %s (hold %.0fs)", fault.kind, fault.target, fault.hold_s)
        if fault.kind == "broker-kill":
            node, topic, partition = await p.kafka.leader_of_busiest_partition(list(TOPICS))
            detail = f"broker {node} led {topic}[{partition}]"
            await asyncio.to_thread(p.kafka.kill, node)
            await asyncio.sleep(fault.hold_s)
            await asyncio.to_thread(p.kafka.up)
        elif fault.kind == "service-kill":
            svc = p.services[fault.target]
            await asyncio.to_thread(svc.kill)
            await asyncio.sleep(fault.hold_s)
            svc.start()
        elif fault.kind == "pause":
            before = await self._redeliveries(p.service_of[fault.target])
            leases_before = p.pg.log_count(LEASE_EXPIRED)
            p.pause(fault.target)
            await asyncio.sleep(fault.hold_s)
            p.resume(fault.target)
        elif fault.kind == "pg-restart":
            await asyncio.to_thread(p.pg.stop_immediately)
            await asyncio.sleep(fault.hold_s)
            await asyncio.to_thread(p.pg.start)
        elif fault.kind == "partition":
            p.partition.cut()
            await asyncio.sleep(fault.hold_s)
            p.partition.heal()
        elif fault.kind == "latency-kafka":
            p.proxies.set_delay("kafka-", self.kafka_delay_s)
            detail = f"+{self.kafka_delay_s * 1000:.0f} ms each way"
            await asyncio.sleep(fault.hold_s)
            p.proxies.set_delay("kafka-", 0.0)
        elif fault.kind == "latency-pg":
            p.proxies.set_delay("pg", self.pg_delay_s)
            detail = f"+{self.pg_delay_s * 1000:.0f} ms each way"
            await asyncio.sleep(fault.hold_s)
            p.proxies.set_delay("pg", 0.0)
        else:
            raise ValueError(f"unknown fault kind {fault.kind}")
        healed = time.time()
        recovered = await self.canary(deadline=time.monotonic() + self.recovery_timeout_s)
        if fault.kind == "pause":
            # The zombie's late work is absorbed by the inbox: count what the replicas recognised as seen before.
            after = await self._redeliveries(p.service_of[fault.target])
            # A relay frozen while holding the outbox lock loses it when its lease runs out (shared/outbox.py).
            leases = p.pg.log_count(LEASE_EXPIRED) - leases_before
            detail = (
                f"{after - before} redelivered event(s) recognised by the inbox and skipped; "
                f"{leases} database session(s) ended by the lock lease"
            )
        result = FaultResult(
            kind=fault.kind,
            target=fault.target,
            started_at=started,
            healed_at=healed,
            recovered_at=recovered,
            recovery_s=None if recovered is None else recovered - healed,
            detail=detail,
        )
        log.info("recovered from %s %s in %s s", fault.kind, fault.target, result.public()["recovery_s"])
        self.results.append(result)
        return result

    async def _redeliveries(self, service: str) -> int:
        """Events the replicas of ``service`` found already applied (their inbox said so), from /healthz."""
        total = 0
        async with httpx.AsyncClient(timeout=5) as http:
            for svc in self.platform.replicas_of(service):
                try:
                    health = (await http.get(f"{svc.url}/healthz")).json()
                except (httpx.HTTPError, ValueError) as exc:
                    log.info("%s: no health answer (%r)", svc.name, exc)
                    continue
                total += sum(int(c.get("duplicates") or 0) for c in (health.get("consumers") or {}).values())
        return total

    async def canary(self, *, deadline: float) -> float | None:
        """Walk the whole flow once; the time its alert reached the webhook receiver, None on timeout."""
        load = self.load
        token = "zq" + uuid.uuid4().hex[:8]
        # Same profile template on both sides (domains, capabilities) plus the token: the canary ranks first.
        template = load.rng.choice(load.templates)
        company_id = await _retry(
            lambda: load.register_company(unique=token, template=template, subscribe=False), deadline
        )
        if company_id is None or not await load.subscribe(company_id, ("webhook",), deadline=deadline):
            return None
        project_id = await _retry(lambda: load.post_project(unique=token, template=template), deadline)
        if project_id is None or not await _retry(load.poll_calls, deadline):
            return None
        deliveries = self.platform.receiver.deliveries
        while time.monotonic() < deadline:
            for item in deliveries.snapshot():
                if item.company_id == company_id and item.target_id == project_id:
                    return item.at
            await asyncio.sleep(0.25)
        return None


async def _retry(attempt: Callable[[], Awaitable[T | None]], deadline: float) -> T | None:
    """Call ``attempt`` until it returns something truthy or the deadline passes."""
    while time.monotonic() < deadline:
        value = await attempt()
        if value:
            return value
        await asyncio.sleep(0.5)
    return None
