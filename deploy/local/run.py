"""Run Bondgenoot on one machine: Kafka, the EU-portal replay, the five services, the web portal and the demo.

    .venv/bin/python deploy/local/run.py              start everything, seed, summarise, run until Ctrl-C
    .venv/bin/python deploy/local/run.py --no-wait    the same, then stop everything and exit (smoke test)
    .venv/bin/python deploy/local/run.py --seed-only  the services already run: seed and summarise only
    .venv/bin/python deploy/local/run.py --replicas 2 two replicas of matching and of alerts (or REPLICAS=2)

Only what this script started is stopped: a Kafka broker that was already running stays up. Services
write their output to .data/logs/<name>.log; seeding is idempotent, so running it twice adds nothing.
Uses the standard library and httpx only, so it runs before any service code is importable.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = Path(__file__).resolve().parent / "demo"
LOG_DIR = ROOT / ".data" / "logs"
KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"

HOST = "127.0.0.1"
SERVICES: dict[str, int] = {
    "registry": 8001,
    "projects": 8002,
    "calls": 8003,
    "matching": 8004,
    "alerts": 8005,
    "consortia": 8006,
}
PORTAL_PORT = 8000
DEMO_INSTITUTE = "Vlaams Instituut voor Veiligheidstechnologie (VIVT)"
DEMO_COMPANY = "Scheldewacht Sensing"
# Services that run as several replicas with --replicas N: replica n (from 2) listens on port + 10 * (n - 1).
SCALABLE = ("matching", "alerts")
DEFAULT_KAFKA = f"{HOST}:9092"
REPLAY_PORT = 8090
REPLAY_SEARCH_URL = f"http://{HOST}:{REPLAY_PORT}/search-api/prod/rest/search"
SERVICE_ENV = {"OUTBOX_POLL_INTERVAL": "0.2", "BONDGENOOT_ENV": "local", "PYTHONUNBUFFERED": "1"}
# The same local-only default as shared.auth.DEV_ADMIN_TOKEN (the services fall back to it when
# BONDGENOOT_ENV=local and BONDGENOOT_ADMIN_TOKEN is unset); seeding authenticates with it.
DEV_ADMIN_TOKEN = "bgt-local-admin-token-do-not-use-in-production"

STOP_GRACE_S = 15.0
LOG_TAIL_LINES = 40
PR_SET_PDEATHSIG = 1


# ---------------------------------------------------------------- errors and signals


class StartupError(RuntimeError):
    """Something needed for the local stack could not be started."""


class Stop(BaseException):
    """SIGINT or SIGTERM arrived: unwind and stop everything (a BaseException so nothing swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class Child:
    """A process this script started, in its own process group, logging to one file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    health_url: str
    expected_exit: bool = False

    @property
    def pgid(self) -> int:
        return self.process.pid  # start_new_session makes the child the leader of its own group

    def group_alive(self) -> bool:
        """True while the child or anything left in its process group still runs."""
        self.process.poll()  # reap the leader so a zombie does not count as running
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class ChildDied(RuntimeError):
    def __init__(self, child: Child) -> None:
        super().__init__(f"{child.name} exited unexpectedly with code {child.process.returncode}")
        self.child = child


class SignalGate:
    """Turns SIGINT/SIGTERM into ``Stop``, except while a child is being spawned or everything stops."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self._deferring = False
        self.stopping = False

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:
            print(f"\n{signal.Signals(signum).name}: already stopping, please wait", flush=True)
            return
        if self._deferring:
            self.pending = signum
            return
        raise Stop(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold signals back so a spawned child is always recorded (and therefore stopped)."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self.pending is not None:
            raise Stop(self.pending)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"    (cannot read {path}: {exc})"
    tail = text.splitlines()[-lines:]
    return "\n".join(f"    | {line}" for line in tail) if tail else "    (log is empty)"


def port_open(port: int, host: str = HOST) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec hook that has Linux SIGTERM the child if this script is killed without cleaning up."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    parent = os.getpid()

    def hook() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


# ---------------------------------------------------------------- the process stack


@dataclass
class Stack:
    """Everything this script started, and how to stop it again in reverse order."""

    gate: SignalGate
    children: list[Child] = field(default_factory=list)
    kafka_owned: bool = False
    kafka_bootstrap: str = DEFAULT_KAFKA

    # ---- Kafka

    def start_kafka(self) -> None:
        """Start the single local broker unless one answers already (then leave it alone on exit)."""
        configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if configured and configured not in (DEFAULT_KAFKA, "localhost:9092"):
            self.kafka_bootstrap = configured
            print(f"Kafka: using KAFKA_BOOTSTRAP_SERVERS={configured} (not started or stopped here)")
            return
        status = subprocess.run(
            ["bash", str(KAFKA_SH), "status", "single"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        if status.returncode == 0:
            print(f"Kafka: already running at {DEFAULT_KAFKA} (left running on exit)")
            return
        if "single: down" in status.stdout and port_open(9092):
            print(f"Kafka: something else listens on {DEFAULT_KAFKA}; using it (left running on exit)")
            return
        if "single: down" in status.stdout:
            # Owned from here on: an interrupted `up` can leave a broker behind that `down` must stop.
            self.kafka_owned = True
            print("Kafka: starting a single broker (deploy/kafka/kafka.sh up single) ...", flush=True)
        else:  # its processes run but do not answer yet (starting elsewhere): wait for it, do not own it
            print("Kafka: a broker is starting (not started here); waiting for it ...", flush=True)
        up = subprocess.run(["bash", str(KAFKA_SH), "up", "single"], cwd=ROOT, check=False)
        if up.returncode != 0:
            raise StartupError(f"kafka.sh up single failed with code {up.returncode}")

    def stop_kafka(self) -> None:
        if not self.kafka_owned:
            return
        print("Kafka: stopping the broker started here ...", flush=True)
        down = subprocess.run(["bash", str(KAFKA_SH), "down", "single"], cwd=ROOT, check=False)
        if down.returncode != 0:
            print(f"WARNING: kafka.sh down single exited with code {down.returncode}", file=sys.stderr)
        self.kafka_owned = False

    # ---- children

    def spawn(self, name: str, argv: list[str], env: Mapping[str, str], health_url: str) -> Child:
        """Start one child in its own process group with stdout/stderr in .data/logs/<name>.log."""
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log_path = LOG_DIR / f"{name}.log"
        with self.gate.deferred(), log_path.open("wb") as log:
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent_hook(),  # safe: this script runs no other threads
            )
            child = Child(name, process, log_path, health_url)
            self.children.append(child)
        print(f"started {name} (pid {process.pid}), log {rel(log_path)}")
        return child

    def first_dead(self) -> Child | None:
        for child in self.children:
            if not child.expected_exit and child.process.poll() is not None:
                return child
        return None

    def raise_if_dead(self) -> None:
        dead = self.first_dead()
        if dead is not None:
            raise ChildDied(dead)

    def wait_healthy(self, timeout_s: float, children: list[Child] | None = None) -> None:
        """Wait until every (given) child's health URL answers (services: 200; the replay: any HTTP answer)."""
        started = time.monotonic()
        deadline = started + timeout_s
        pending = list(self.children if children is None else children)
        last: dict[str, str] = {}
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while pending:
                for child in list(pending):
                    self.raise_if_dead()
                    try:
                        response = client.get(child.health_url)
                    except httpx.HTTPError as exc:
                        last[child.name] = f"{type(exc).__name__}: {exc}"
                        continue
                    healthy = response.status_code < 500 if child.name == "replay" else response.is_success
                    if healthy:
                        print(f"{child.name} is ready ({time.monotonic() - started:.1f}s)", flush=True)
                        pending.remove(child)
                    else:
                        last[child.name] = f"HTTP {response.status_code} {response.text[:300]}"
                if pending and time.monotonic() >= deadline:
                    for child in pending:
                        print(
                            f"\n{child.name} not healthy after {timeout_s:.0f}s "
                            f"({child.health_url}: {last.get(child.name, 'no answer')}); "
                            f"tail of {rel(child.log_path)}:\n{log_tail(child.log_path)}",
                            file=sys.stderr,
                        )
                    raise StartupError(f"not healthy in time: {', '.join(c.name for c in pending)}")
                if pending:
                    time.sleep(0.5)

    def stop_children(self) -> None:
        """SIGTERM every process group, SIGKILL what is left after the grace period, reap everything."""
        running = [c for c in reversed(self.children) if c.group_alive()]
        for child in self.children:
            child.expected_exit = True
        if not running:
            return
        print(f"stopping {', '.join(c.name for c in running)} ...", flush=True)
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pgid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while any(c.group_alive() for c in running) and time.monotonic() < deadline:
            time.sleep(0.1)
        for child in running:
            if child.group_alive():
                print(f"{child.name} still running after {STOP_GRACE_S:.0f}s: SIGKILL", file=sys.stderr)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=5)
            print(f"stopped {child.name} (exit code {child.process.returncode})")

    def stop_all(self) -> None:
        self.gate.stopping = True
        self.stop_children()
        self.stop_kafka()


# ---------------------------------------------------------------- HTTP against the services


def service_url(service: str, path: str) -> str:
    return f"http://{HOST}:{SERVICES[service]}{path}"


def admin_token() -> str:
    return os.environ.get("BONDGENOOT_ADMIN_TOKEN", "").strip() or DEV_ADMIN_TOKEN


def describe_error(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}: {exc.response.text[:300]}"
    return f"{type(exc).__name__}: {exc}"


class Api:
    """Thin JSON helpers over one httpx client; ``running`` says which services answer."""

    def __init__(self, client: httpx.Client, running: set[str]) -> None:
        self.client = client
        self.running = running

    def get(self, service: str, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        response = self.client.get(service_url(service, path), params=params)
        response.raise_for_status()
        return response.json()

    def send(self, method: str, service: str, path: str, body: Any = None) -> httpx.Response:
        return self.client.request(method, service_url(service, path), json=body)


@dataclass
class Seeded:
    """What seeding found or created; ``errors`` makes a non-interactive run fail."""

    company_ids: dict[str, str] = field(default_factory=dict)
    subscribed: dict[str, str] = field(default_factory=dict)
    project_ids: dict[str, str] = field(default_factory=dict)
    logins: dict[str, str] = field(default_factory=dict)
    """Demo logins for the web portal: who → a fresh API token."""
    errors: list[str] = field(default_factory=list)


def load_demo(name: str) -> Any:
    return json.loads((DEMO_DIR / name).read_text(encoding="utf-8"))


def seed_companies(api: Api, seeded: Seeded, companies: list[dict[str, Any]]) -> None:
    created = 0
    for company in companies:
        name = company["name"]
        try:
            page = api.get("registry", "/companies", params={"q": name, "limit": 200})
            match = next((c for c in page["items"] if c["name"] == name), None)
            if match is not None:
                seeded.company_ids[name] = match["id"]
                continue
            response = api.send("POST", "registry", "/companies", company)
            response.raise_for_status()
            seeded.company_ids[name] = response.json()["id"]
            created += 1
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            seeded.errors.append(f"company {name!r}: {describe_error(exc)}")
    print(f"companies: {created} registered, {len(seeded.company_ids) - created} already there")


def seed_subscriptions(api: Api, seeded: Seeded, subscriptions: dict[str, dict[str, Any]]) -> None:
    for name, body in subscriptions.items():
        company_id = seeded.company_ids.get(name)
        if company_id is None:
            seeded.errors.append(f"subscription for {name!r}: the company is not registered")
            continue
        try:
            api.send("PUT", "alerts", f"/subscriptions/{company_id}", body).raise_for_status()
            seeded.subscribed[name] = company_id
        except httpx.HTTPError as exc:
            seeded.errors.append(f"subscription for {name!r}: {describe_error(exc)}")
    print(f"subscriptions: {len(seeded.subscribed)} in place")


def seed_projects(api: Api, seeded: Seeded, projects: list[dict[str, Any]]) -> None:
    created = 0
    try:
        existing = {p["title"]: p["id"] for p in api.get("projects", "/projects", {"limit": 200})["items"]}
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        seeded.errors.append(f"listing projects: {describe_error(exc)}")
        return
    for project in projects:
        title = project["title"]
        if title in existing:
            seeded.project_ids[title] = existing[title]
            continue
        try:
            response = api.send("POST", "projects", "/projects", project)
            response.raise_for_status()
            seeded.project_ids[title] = response.json()["id"]
            created += 1
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            seeded.errors.append(f"project {title!r}: {describe_error(exc)}")
    print(f"projects: {created} posted, {len(seeded.project_ids) - created} already there")


def poll_calls(api: Api, seeded: Seeded) -> None:
    try:
        response = api.send("POST", "calls", "/calls/poll")
        response.raise_for_status()
        print(f"calls: polled the portal: {json.dumps(response.json())}")
    except (httpx.HTTPError, ValueError) as exc:
        seeded.errors.append(f"POST /calls/poll: {describe_error(exc)}")


def demo_logins(api: Api, seeded: Seeded) -> None:
    """A demo institute and company login for the portal: a fresh token each run (earlier ones are revoked)."""
    try:
        accounts = api.get("registry", "/accounts", {"limit": 200})["items"]
        institute = next((a for a in accounts if a.get("institute") == DEMO_INSTITUTE), None)
        if institute is None:
            created = api.send("POST", "registry", "/accounts", {"role": "institute", "name": DEMO_INSTITUTE})
            created.raise_for_status()
            seeded.logins[f"institute  {DEMO_INSTITUTE}"] = created.json()["api_token"]
        else:
            rotated = api.send("POST", "registry", f"/accounts/{institute['id']}/tokens/rotate")
            rotated.raise_for_status()
            seeded.logins[f"institute  {DEMO_INSTITUTE}"] = rotated.json()["api_token"]
        company_id = seeded.company_ids.get(DEMO_COMPANY)
        account = next((a for a in accounts if company_id and a.get("company_id") == company_id), None)
        if account is not None:
            rotated = api.send("POST", "registry", f"/accounts/{account['id']}/tokens/rotate")
            rotated.raise_for_status()
            seeded.logins[f"company    {DEMO_COMPANY}"] = rotated.json()["api_token"]
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        seeded.errors.append(f"demo logins: {describe_error(exc)}")


def seed(api: Api) -> Seeded:
    """Register the demo companies, subscriptions and projects unless they exist; poll the calls."""
    seeded = Seeded()
    seed_companies(api, seeded, load_demo("companies.json"))
    if "alerts" in api.running:
        seed_subscriptions(api, seeded, load_demo("subscriptions.json"))
    else:
        print("subscriptions: skipped (alerts service not running)")
    if "projects" in api.running:
        seed_projects(api, seeded, load_demo("projects.json"))
    else:
        print("projects: skipped (projects service not running)")
    if "calls" in api.running:
        poll_calls(api, seeded)
    else:
        print("calls: skipped (calls service not running)")
    demo_logins(api, seeded)
    for error in seeded.errors:
        print(f"SEED ERROR: {error}", file=sys.stderr)
    return seeded


# ---------------------------------------------------------------- waiting for the flow, the summary


@dataclass
class Target:
    """A project or call and the partner suggestions computed for it so far."""

    kind: str
    id: str
    title: str
    programme: str
    status: str
    must_wait: bool
    suggestions: list[dict[str, Any]] = field(default_factory=list)
    computed_at: str | None = None
    error: str | None = None


def list_targets(api: Api) -> list[Target]:
    targets: list[Target] = []
    if "projects" in api.running:
        try:
            for p in api.get("projects", "/projects", {"status": "open", "limit": 200})["items"]:
                targets.append(Target("project", p["id"], p["title"], p.get("programme", "?"), "open", True))
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            targets.append(Target("project", "-", "(listing projects failed)", "?", "?", False, error=str(exc)))
    if "calls" in api.running:
        try:
            for c in api.get("calls", "/calls", {"limit": 200})["items"]:
                status = str(c.get("status", "?"))
                if status == "closed":
                    continue
                title = f"{c['id']}: {c.get('title', '?')}"  # a call's id is its topic identifier
                targets.append(Target("call", c["id"], title, c.get("programme", "?"), status, status == "open"))
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            targets.append(Target("call", "-", "(listing calls failed)", "?", "?", False, error=str(exc)))
    return targets


def fetch_suggestions(api: Api, target: Target) -> None:
    if target.id == "-":
        return
    service, path = ("projects", "projects") if target.kind == "project" else ("calls", "calls")
    try:
        body = api.get(service, f"/{path}/{target.id}/suggestions")
        target.suggestions = list(body.get("suggestions") or [])
        target.computed_at = body.get("computed_at")
        target.error = None
    except (httpx.HTTPError, ValueError) as exc:
        target.error = describe_error(exc)


def alert_totals(api: Api, subscribed: Mapping[str, str]) -> dict[str, int | str]:
    """Alert count per subscribed company (an error text where the count failed), to see the flow settle."""
    totals: dict[str, int | str] = {}
    if "alerts" not in api.running:
        return totals
    for name, company_id in subscribed.items():
        try:
            totals[name] = int(api.get("alerts", f"/companies/{company_id}/alerts", {"limit": 1})["total"])
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            totals[name] = describe_error(exc)
    return totals


def wait_for_flow(
    api: Api, stack: Stack | None, seeded: Seeded, *, expect_calls: bool, timeout_s: float
) -> list[Target]:
    """Wait until every project and open call has suggestions and nothing changed for a second."""
    deadline = time.monotonic() + timeout_s
    previous: object = None
    while True:
        if stack is not None:
            stack.raise_if_dead()
        targets = list_targets(api)
        for target in targets:
            fetch_suggestions(api, target)
        signature = (
            sorted((t.kind, t.id, len(t.suggestions), t.computed_at) for t in targets),
            sorted(alert_totals(api, seeded.subscribed).items()),
        )
        pending = [t for t in targets if t.must_wait and not t.suggestions]
        calls_missing = expect_calls and not any(t.kind == "call" for t in targets)
        if not pending and not calls_missing and signature == previous:
            return targets
        previous = signature
        if time.monotonic() >= deadline:
            waiting = [f"{t.kind} {t.title!r}" for t in pending] + (["any call"] if calls_missing else [])
            if waiting:
                print(f"WARNING: after {timeout_s:.0f}s still no suggestions for: {'; '.join(waiting)}")
            return targets
        time.sleep(1.0)


def print_summary(api: Api, seeded: Seeded, targets: list[Target]) -> list[str]:
    """Print suggestions per target and alerts per subscribed company; return the lines that failed."""
    failures: list[str] = []
    print("\n=== Partner suggestions")
    if "matching" not in api.running:
        print("(the matching service is not running: no suggestions are computed)")
    if not targets:
        print("(no open projects or calls)")
    for t in targets:
        head = f"[{t.kind}] {t.title} ({t.programme}, {t.status})"
        if t.error:
            print(f"{head}: ERROR {t.error}")
            failures.append(f"{t.kind} {t.title!r}: {t.error}")
            continue
        print(f"{head}: {len(t.suggestions)} suggestion{'' if len(t.suggestions) == 1 else 's'}")
        for s in t.suggestions[:3]:
            score = s.get("score")
            score_text = f"{score:.2f}" if isinstance(score, int | float) else str(score)
            name, country = s.get("company_name", "?"), s.get("country", "?")
            print(f"    {s.get('rank', '-')}. {name}  score {score_text}  {country}")
        if t.must_wait and not t.suggestions:
            failures.append(f"{t.kind} {t.title!r}: no suggestions")

    print("\n=== Alerts of subscribed companies")
    if "alerts" not in api.running:
        print("(the alerts service is not running)")
    for name, company_id in seeded.subscribed.items():
        try:
            page = api.get("alerts", f"/companies/{company_id}/alerts", {"limit": 1})
            newest = page["items"][0]["target_title"] if page["items"] else "-"
            total = page["total"]
            print(f"{name}: {total} alert{'' if total == 1 else 's'}; newest: {newest}")
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            print(f"{name}: ERROR {describe_error(exc)}")
            failures.append(f"alerts of {name!r}: {describe_error(exc)}")
    return failures


def print_urls(
    running: set[str], kafka_bootstrap: str, replay_url: str | None, logins: Mapping[str, str] | None = None
) -> None:
    print("\n=== Where things are")
    admin = (
        f"Authorization: Bearer {DEV_ADMIN_TOKEN}  (local default; docs/security.md)"
        if admin_token() == DEV_ADMIN_TOKEN
        else "Authorization: Bearer $BONDGENOOT_ADMIN_TOKEN"
    )
    if "portal" in running:
        # The logins side by side: open the portal, paste one of these at /login.
        print(f"web portal http://{HOST}:{PORTAL_PORT}   (log in at /login by pasting a token below)")
        for who, token in (logins or {}).items():
            print(f"  {who}: {token}")
        print(f"  admin: {admin.removeprefix('Authorization: Bearer ')}")
    for name, port in SERVICES.items():
        state = "" if name in running else "  (not running)"
        print(f"{name:<9} http://{HOST}:{port}/docs{state}")
    print(f"Kafka     {kafka_bootstrap}")
    if replay_url:
        print(f"EU calls  {replay_url} (replay of services/calls/replay/data)")
    print(f"logs      {rel(LOG_DIR)}/<name>.log")
    print(f"admin     {admin}")


def seed_and_summarise(
    running: set[str], stack: Stack | None, *, expect_calls: bool, wait_s: float
) -> tuple[Seeded, list[str]]:
    headers = {"Authorization": f"Bearer {admin_token()}"}  # seeding writes as the admin
    with httpx.Client(timeout=15.0, trust_env=False, headers=headers) as client:
        api = Api(client, running)
        print("\n=== Seeding the demo data")
        seeded = seed(api)
        if "matching" in running:
            print(f"waiting up to {wait_s:.0f}s for partner suggestions and alerts ...", flush=True)
            targets = wait_for_flow(api, stack, seeded, expect_calls=expect_calls, timeout_s=wait_s)
        else:
            targets = list_targets(api)
        failures = print_summary(api, seeded, targets)
    return seeded, failures


# ---------------------------------------------------------------- modes


def available_services() -> list[str]:
    found = []
    for name in SERVICES:
        if (ROOT / "services" / name / "__main__.py").is_file():
            found.append(name)
        else:
            print(f"WARNING: services/{name}/__main__.py does not exist yet: {name} is skipped", file=sys.stderr)
    return found


def replica_plan(names: list[str], replicas: int) -> list[tuple[str, str, int]]:
    """(process name, service, port) of every process to start: each service, then the further replicas."""
    plan = [(name, name, SERVICES[name]) for name in names]
    for n in range(2, replicas + 1):
        plan += [(f"{name}-{n}", name, SERVICES[name] + 10 * (n - 1)) for name in names if name in SCALABLE]
    return plan


def service_env(name: str, port: int, search_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(SERVICE_ENV)
    # Both spellings: the service-specific one wins over HTTP_PORT, and either may be inherited.
    env["HTTP_PORT"] = str(port)
    env[f"{name.upper()}_HTTP_PORT"] = str(port)
    if search_url is not None:
        env["CALLS_FT_SEARCH_URL"] = search_url
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


def _spawn_services(stack: Stack, plan: list[tuple[str, str, int]], search_url: str | None) -> list[Child]:
    return [
        stack.spawn(
            name,
            [sys.executable, "-m", f"services.{service}"],
            service_env(service, port, search_url if service == "calls" else None),
            f"http://{HOST}:{port}/healthz",
        )
        for name, service, port in plan
    ]


def run_stack(stack: Stack, args: argparse.Namespace) -> int:
    names = available_services()
    if "registry" not in names:
        raise StartupError("the registry service does not exist yet: nothing to seed")
    external_portal = os.environ.get("CALLS_FT_SEARCH_URL", "").strip() or None
    with_replay = "calls" in names and external_portal is None
    plan = replica_plan(names, args.replicas)
    busy = [f"{n}:{port}" for n, _, port in plan if port_open(port)]
    if port_open(PORTAL_PORT):
        busy.append(f"portal:{PORTAL_PORT}")
    if with_replay and port_open(REPLAY_PORT):
        busy.append(f"replay:{REPLAY_PORT}")
    if busy:
        raise StartupError(
            f"ports already in use ({', '.join(busy)}): is another `make run` up? "
            "Stop it, or seed the running services with --seed-only"
        )

    stack.start_kafka()
    search_url = external_portal
    if with_replay:
        search_url = REPLAY_SEARCH_URL
        stack.spawn(
            "replay",
            [sys.executable, "-m", "services.calls.replay", "--port", str(REPLAY_PORT)],
            {**os.environ, "PYTHONUNBUFFERED": "1"},
            f"http://{HOST}:{REPLAY_PORT}/_replay/rows",
        )
    elif external_portal:
        print(f"calls: using CALLS_FT_SEARCH_URL={external_portal} (no replay started)")
    _spawn_services(stack, [p for p in plan if p[0] == p[1]], search_url)
    portal = (ROOT / "services" / "portal" / "__main__.py").is_file()
    if portal:
        stack.spawn(
            "portal",
            [sys.executable, "-m", "services.portal"],
            service_env("portal", PORTAL_PORT, None),
            f"http://{HOST}:{PORTAL_PORT}/healthz",
        )
    stack.wait_healthy(args.health_timeout)  # everything so far, the portal replay too
    # Further replicas start once the first of each service is healthy: it has created the tables they share.
    stack.wait_healthy(args.health_timeout, _spawn_services(stack, [p for p in plan if p[0] != p[1]], search_url))

    seeded, failures = seed_and_summarise(set(names), stack, expect_calls=with_replay, wait_s=args.flow_timeout)
    running = set(names) | ({"portal"} if portal else set())
    print_urls(running, stack.kafka_bootstrap, REPLAY_SEARCH_URL if with_replay else external_portal, seeded.logins)
    for name, _, port in plan[len(names) :]:
        print(f"{name:<9} http://{HOST}:{port}/docs  (replica)")
    if args.no_wait:
        return 1 if seeded.errors or (args.strict and failures) else 0

    print("\nRunning. Ctrl-C (or SIGTERM) stops everything this script started.", flush=True)
    while True:
        stack.raise_if_dead()
        time.sleep(0.5)


def seed_only(args: argparse.Namespace) -> int:
    """Seed services that already run (started by `make run` or by hand) and summarise."""
    running: set[str] = set()
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        for name, port in SERVICES.items():
            try:
                answer = f"HTTP {client.get(f'http://{HOST}:{port}/healthz').status_code}"
            except httpx.HTTPError as exc:
                answer = type(exc).__name__
            if answer == "HTTP 200":
                running.add(name)
            else:
                print(f"WARNING: {name} is not healthy on port {port} ({answer}): skipped", file=sys.stderr)
    if "registry" not in running:
        print("ERROR: the registry does not answer: nothing to seed", file=sys.stderr)
        return 1
    seeded, failures = seed_and_summarise(running, None, expect_calls=False, wait_s=args.flow_timeout)
    print_urls(running, os.environ.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_KAFKA), None)
    if seeded.errors or (args.strict and failures):
        return 1
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deploy/local/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-wait", action="store_true", help="seed, summarise, then stop everything and exit")
    mode.add_argument("--seed-only", action="store_true", help="only seed and summarise running services")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target has no suggestions in time")
    parser.add_argument("--health-timeout", type=float, default=120.0, metavar="S", help="default: 120")
    parser.add_argument("--flow-timeout", type=float, default=60.0, metavar="S", help="default: 60")
    parser.add_argument(
        "--replicas",
        type=int,
        default=int(os.environ.get("REPLICAS", "1") or "1"),
        metavar="N",
        help=f"replicas of {' and '.join(SCALABLE)} (default: $REPLICAS or 1)",
    )
    args = parser.parse_args(argv)
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    if args.seed_only:
        return seed_only(args)

    gate = SignalGate()
    gate.install()
    stack = Stack(gate)
    code = 0
    try:
        code = run_stack(stack, args)
    except Stop as stop:
        print(f"\n{stop}: stopping everything ...", flush=True)
    except ChildDied as died:
        code = 1
        print(f"\nERROR: {died}; tail of {rel(died.child.log_path)}:", file=sys.stderr)
        print(log_tail(died.child.log_path), file=sys.stderr)
    except StartupError as exc:
        code = 1
        print(f"\nERROR: {exc}", file=sys.stderr)
    finally:
        stack.stop_all()
    return code


if __name__ == "__main__":
    sys.exit(main())
