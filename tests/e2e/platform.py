"""The whole platform as separate processes: six services on real Kafka and PostgreSQL."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.infra import Databases, free_port

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("registry", "projects", "calls", "matching", "alerts", "consortia")
# Services that may run as several replicas (each replica after the first is "<name>-<n>").
SCALABLE = ("matching", "alerts")
AUTH_CACHE_TTL_S = 2  # short, so a test can watch a revocation reach every service


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    # The entry point; ``services.<name>`` unless a test runs a variant (tests/chaos/lossy_*.py).
    module: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module or f"services.{self.name}"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commits — a crash."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait_healthy(self, timeout: float = 180.0) -> None:
        """Wait for 200 from /healthz: generous, the machines that run the suite are often busy."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                r = httpx.get(f"{self.url}/healthz", timeout=10)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not healthy after {timeout}s ({last}):\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


@dataclass
class Platform:
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    # Every service gets these through the environment (BONDGENOOT_ADMIN_TOKEN / _INTERNAL_TOKEN).
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    internal_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.services[name]

    def replicas(self, service: str) -> list[ServiceProcess]:
        """Every running replica of ``service`` (its first is named like the service)."""
        return [svc for name, svc in self.services.items() if name == service or name.startswith(f"{service}-")]

    def client(self, name: str, token: str | None = None) -> httpx.Client:
        """A client for one service; with ``token`` it authenticates as that account."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.services[name].url, timeout=30, headers=headers)

    def admin(self, name: str) -> httpx.Client:
        """A client for one service, authenticated with the platform's admin token."""
        return self.client(name, self.admin_token)

    def stop(self) -> None:
        for svc in self.services.values():
            svc.stop()


def start_platform(
    *, databases: Databases, bootstrap: str, prefix: str, log_dir: Path, portal_url: str, replicas: int = 1
) -> Platform:
    """Start every service; with ``replicas`` > 1, matching and alerts run that many replicas each.

    Replicas of one service share its database and consumer groups. ``platform["matching"]`` is the
    first replica, ``platform["matching-2"]`` the second, and so on.
    """
    platform = Platform()
    names = [
        *SERVICES,
        *(f"{name}-{n}" for name in SCALABLE for n in range(2, replicas + 1)),
    ]
    ports = {name: free_port() for name in names}
    base_env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TOPIC_PREFIX": prefix,
        "BONDGENOOT_ENV": "test",
        "OUTBOX_POLL_INTERVAL": "0.2",
        "CALLS_FT_SEARCH_URL": portal_url,
        "CALLS_POLL_INTERVAL": "3600",
        "OTEL_TRACES_EXPORTER": "none",
        "PYTHONUNBUFFERED": "1",
        "BONDGENOOT_ADMIN_TOKEN": platform.admin_token,
        "BONDGENOOT_INTERNAL_TOKEN": platform.internal_token,
        "BONDGENOOT_REGISTRY_URL": f"http://127.0.0.1:{ports['registry']}",
        "AUTH_CACHE_TTL": str(AUTH_CACHE_TTL_S),
    }
    urls = {name: databases.create(name) for name in SERVICES}
    for name in names:
        service = name.split("-", 1)[0]
        port = ports[name]
        env = {**base_env, "HTTP_PORT": str(port), f"{service.upper()}_DATABASE_URL": urls[service]}
        env.pop(f"{service.upper()}_HTTP_PORT", None)
        platform.services[name] = ServiceProcess(name, port, env, log_dir / f"{name}.log", module=f"services.{service}")
    first = [svc for name, svc in platform.services.items() if name in SERVICES]
    later = [svc for name, svc in platform.services.items() if name not in SERVICES]
    try:
        # Further replicas start once the first is healthy, i.e. once it created the shared tables.
        for group in (first, later):
            for svc in group:
                svc.start()
            for svc in group:
                svc.wait_healthy()
    except Exception:
        platform.stop()
        raise
    return platform


def start_portal(platform: Platform, *, database_url: str, log_dir: Path) -> ServiceProcess:
    """The web portal as one more process, talking to the platform's five services (sessions in ``database_url``)."""
    port = free_port()
    env = {
        **next(iter(platform.services.values())).env,
        "HTTP_PORT": str(port),
        "PORTAL_DATABASE_URL": database_url,
        "PORTAL_SECURE_COOKIES": "false",  # plain http on 127.0.0.1
        **{f"BONDGENOOT_{name.upper()}_URL": svc.url for name, svc in platform.services.items()},
    }
    portal = ServiceProcess("portal", port, env, log_dir / "portal.log")
    portal.start()
    try:
        portal.wait_healthy()
    except Exception:
        portal.stop()
        raise
    platform.services["portal"] = portal
    return portal
