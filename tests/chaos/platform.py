"""The platform under test: every service as a process on the suite's own cluster and PostgreSQL.

Two alerts replicas and two matching replicas run (matching scales out on Kafka's consumer groups,
services/matching/README.md); ``CHAOS_MATCHING_REPLICAS=1`` (``make chaos MATCHING_REPLICAS=1``) runs
one matching replica instead. One service — the *network target* — reaches Kafka and PostgreSQL
through latency proxies and a dedicated Kafka listener, so latency and partitions hit it alone.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import shutil
import signal
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.calls.replay.server import ReplayServer
from tests.chaos.infra import NODES, InfraError, KafkaCluster, Partition, PostgresInstance
from tests.chaos.proxy import ProxyHost
from tests.chaos.sinks import SmtpSink, WebhookReceiver
from tests.e2e.platform import ServiceProcess
from tests.infra import ROOT, free_port, port_open

log = logging.getLogger(__name__)

DATABASES = ("registry", "projects", "calls", "matching", "alerts")
# Below the ephemeral range (32768+): a port there can be taken by any outgoing connection while a
# killed broker is down, and its restart would fail to bind.
DEFAULT_KAFKA_BASE_PORT = 24500
TOPICS = (
    "companies.v1",
    "projects.v1",
    "calls.v1",
    "suggestions.v1",
    "alerts.v1",
    "alerts.deliveries.v1",
)


@dataclass(frozen=True)
class Topology:
    """How many replicas run, and which one takes the network faults and the SIGSTOP."""

    alerts_replicas: int = 2
    # Two: each reads all of companies.v1, the matching group splits the targets (issue 13 §1).
    matching_replicas: int = 2
    network_target: str = "alerts-1"
    pause_target: str = "alerts-2"
    # Entry points replacing ``services.<service>`` for the checker's own tests: deliberately lossy
    # variants (tests/chaos/lossy_alerts.py, tests/chaos/lossy_relay.py). Empty in every real run.
    variants: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Topology:
        matching = int(os.environ.get("CHAOS_MATCHING_REPLICAS", "2"))
        if matching < 1:
            raise ValueError("CHAOS_MATCHING_REPLICAS must be at least 1")
        return cls(matching_replicas=matching)

    def replicas(self) -> list[tuple[str, str]]:
        """(process name, service) pairs in start order."""
        out = [("registry", "registry"), ("projects", "projects"), ("calls", "calls")]
        out += [(f"matching-{i}", "matching") for i in range(1, self.matching_replicas + 1)]
        out += [(f"alerts-{i}", "alerts") for i in range(1, self.alerts_replicas + 1)]
        return out


@dataclass
class ChaosPlatform:
    """Infrastructure, sinks and service processes of one fault run; ``stop`` leaves nothing behind."""

    topology: Topology
    work_dir: Path
    portal: ReplayServer
    kafka_base_port: int = DEFAULT_KAFKA_BASE_PORT
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    internal_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    service_of: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kafka = KafkaCluster(
            base_port=self._free_kafka_base(self.kafka_base_port), run_dir=self.work_dir / "kafka"
        )
        # Under /tmp: the postgres user must be able to traverse to it, whatever the checkout's path.
        pg_dir = Path(tempfile.mkdtemp(prefix="bondgenoot-chaos-pg-"))
        pg_dir.chmod(0o711)  # mkdtemp makes it 0700; the server runs as the postgres user
        self.pg = PostgresInstance(pg_dir / "data", free_port())
        self.proxies = ProxyHost()
        self.receiver = WebhookReceiver(port=free_port())
        self.smtp = SmtpSink(port=free_port())
        self.pg_proxy_port = free_port()
        self.partition = Partition([self.kafka.proxied_port(n) for n in NODES])

    @staticmethod
    def _free_kafka_base(start: int) -> int:
        """The first base port from ``start`` (in steps of 100) whose 30 ports are all free."""
        for base in range(start, start + 2000, 100):
            if not any(port_open("127.0.0.1", base + off) for off in range(30)):
                return base
        raise InfraError(f"no free block of ports for the suite's Kafka cluster from {start}")

    # --- lifecycle ---

    def start(self) -> None:
        Partition.check_available()  # fail before anything starts, not in the middle of the run
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.pg.init()
        self.pg.start()
        self.pg.create_databases(list(DATABASES))
        self.kafka.up()
        for n in NODES:
            self.proxies.add(
                f"kafka-{n}", listen_port=self.kafka.proxied_port(n), upstream_port=self.kafka.proxied_upstream_port(n)
            )
        self.proxies.add("pg", listen_port=self.pg_proxy_port, upstream_port=self.pg.port)
        self.receiver.start()
        self.smtp.start()
        self._create_services()
        for svc in self.services.values():
            svc.start()
        for svc in self.services.values():
            svc.wait_healthy(timeout=180)

    def stop(self) -> None:
        """Stop everything this run started, in reverse order; safe to call more than once.

        Every step runs even when an earlier one fails (the failure is logged, not raised: the run's
        report stands): a broker, a PostgreSQL or a service left behind would load the machine for hours.
        """
        steps: list[tuple[str, Callable[[], object]]] = [("nftables rules", self.partition.heal)]
        steps += [(name, functools.partial(self._stop_service, svc)) for name, svc in self.services.items()]
        steps += [
            ("webhook receiver", self.receiver.stop),
            ("SMTP sink", self.smtp.stop),
            ("latency proxies", self.proxies.close),
            ("Kafka cluster", lambda: self.kafka.down(wipe=True)),
            ("PostgreSQL", self.pg.stop),
        ]
        for what, step in steps:
            try:
                step()
            except Exception as exc:  # keep tearing down the rest; say what did not stop
                log.error("teardown of %s failed: %r", what, exc)
        if self.pg.data_dir.parent.exists():
            shutil.rmtree(self.pg.data_dir.parent, ignore_errors=True)

    @staticmethod
    def _stop_service(svc: ServiceProcess) -> None:
        if svc.proc and svc.proc.poll() is None:
            os.killpg(svc.proc.pid, signal.SIGCONT)  # a paused process cannot handle SIGTERM
        svc.stop()

    # --- services ---

    def _env(self, name: str, service: str) -> dict[str, str]:
        through_proxies = name == self.topology.network_target
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.proxied_bootstrap if through_proxies else self.kafka.bootstrap,
            "TOPIC_PREFIX": "",
            "TOPIC_PARTITIONS": "3",
            "TOPIC_REPLICATION": "3",
            "BONDGENOOT_ENV": "test",
            "OUTBOX_POLL_INTERVAL": "0.2",
            # Shorter than the pause fault (15 s): a replica stopped while its relay holds the outbox lock
            # loses it mid-fault, so the other replica's relay carries on (the pause detail counts it).
            "OUTBOX_LOCK_LEASE": "5",
            "CALLS_FT_SEARCH_URL": self.portal.endpoint,
            # The load polls on demand (POST /calls/poll): each acknowledged poll is a write the checker knows.
            "CALLS_POLL_INTERVAL": "3600",
            "CALLS_POLL_ON_START": "false",
            "CALLS_PORTAL_MAX_ATTEMPTS": "2",
            "OTEL_TRACES_EXPORTER": "none",
            "PYTHONUNBUFFERED": "1",
            "BONDGENOOT_ADMIN_TOKEN": self.admin_token,
            "BONDGENOOT_INTERNAL_TOKEN": self.internal_token,
            "BONDGENOOT_REGISTRY_URL": f"http://127.0.0.1:{self.services['registry'].port}"
            if "registry" in self.services
            else "",
            "AUTH_CACHE_TTL": "60",
            "ALERTS_SMTP_HOST": "127.0.0.1",
            "ALERTS_SMTP_PORT": str(self.smtp.port),
            "ALERTS_SMTP_TLS": "none",
            # Three short retry levels (each level is a consumer per channel and replica: keep the count low).
            "ALERTS_RETRY_DELAYS": "1,3,9",
            "ALERTS_DELIVERY_WORKERS": "2",
            "ALERTS_WEBHOOK_TIMEOUT": "5",
            # The webhook receiver listens on 127.0.0.1: inside addresses are refused unless allowed (docs/security.md).
            "ALERTS_WEBHOOK_ALLOW": "127.0.0.1",
            # Ten suggestions per target (the default is 20) halves the alert fan-out the 2 shared cores must carry.
            "MATCHING_TOP_N": "10",
            "HTTP_PORT": "0",
        }
        db_port = self.pg_proxy_port if through_proxies else None
        env[f"{service.upper()}_DATABASE_URL"] = self.pg.url(service, port=db_port)
        env.pop(f"{service.upper()}_HTTP_PORT", None)
        return env

    def _create_services(self) -> None:
        logs = self.work_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        ports = {name: free_port() for name, _ in self.topology.replicas()}
        registry_url = f"http://127.0.0.1:{ports['registry']}"
        for name, service in self.topology.replicas():
            env = self._env(name, service)
            env["HTTP_PORT"] = str(ports[name])
            env["BONDGENOOT_REGISTRY_URL"] = registry_url
            module = self.topology.variants.get(service, f"services.{service}")
            env["CHAOS_SERVICE"] = service  # which service a variant entry point runs
            self.services[name] = ServiceProcess(name, ports[name], env, logs / f"{name}.log", module=module)
            self.service_of[name] = service

    def replicas_of(self, service: str) -> list[ServiceProcess]:
        return [svc for name, svc in self.services.items() if self.service_of[name] == service]

    def url(self, service: str) -> str:
        """A base URL for ``service``: its first replica that is running (the load balances nothing)."""
        replicas = self.replicas_of(service)
        for svc in replicas:
            if svc.proc is not None and svc.proc.poll() is None:
                return svc.url
        return replicas[0].url

    def pause(self, name: str) -> None:
        svc = self.services[name]
        assert svc.proc is not None
        os.killpg(svc.proc.pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        svc = self.services[name]
        assert svc.proc is not None
        os.killpg(svc.proc.pid, signal.SIGCONT)

    @property
    def logs(self) -> Path:
        return self.work_dir / "logs"


def default_work_dir() -> Path:
    return ROOT / ".data" / "chaos"
