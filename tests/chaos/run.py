"""One fault run: start everything, load it, inject the faults, drain, check, print the JSON line.

    python -m tests.chaos [--duration 600] [--short] [--faults partition,pause] [--variant acks-first-alerts]

The last line printed is the report as one JSON object; the exit code is 0 only when it says ``ok``.
Logs of every service stay in ``.data/chaos/<run>/logs`` for the post-mortem.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from services.calls.replay.server import ReplayServer
from tests.chaos.checker import Report
from tests.chaos.collect import consumer_lag, observe
from tests.chaos.faults import KINDS, FaultRunner, schedule
from tests.chaos.load import Endpoints, Load, Rates
from tests.chaos.platform import ChaosPlatform, Topology, default_work_dir
from tests.chaos.record import RunRecord

log = logging.getLogger("chaos")

# Deliberately lossy platforms the checker must fail (its own test): service → replacement entry point.
VARIANTS: dict[str, dict[str, str]] = {
    "real": {},
    # The alerts suggestions consumer commits first and applies 30 s later: a kill loses alerts.
    "acks-first-alerts": {"alerts": "tests.chaos.lossy_alerts"},
    # The registry's and projects' relays mark rows published before sending them: a kill loses events.
    "marks-first-relay": {"registry": "tests.chaos.lossy_relay", "projects": "tests.chaos.lossy_relay"},
}


@dataclass(frozen=True)
class RunConfig:
    duration_s: float = 600.0
    short: bool = False
    kinds: tuple[str, ...] = KINDS
    topology: Topology = field(default_factory=Topology)
    warmup_s: float = 20.0
    drain_timeout_s: float = 240.0
    # A lossy variant's test kills only the processes that lose; the other runs cycle through all of them.
    fault_kill_targets: tuple[str, ...] = ()


async def _run(config: RunConfig, work_dir: Path) -> Report:
    portal = ReplayServer(rows=[]).start()
    platform = ChaosPlatform(config.topology, work_dir, portal)
    started = time.monotonic()
    starting: asyncio.Future[None] | None = None
    try:
        log.info(
            "starting the cluster, PostgreSQL, sinks and %d service processes ...", len(config.topology.replicas())
        )
        # Shielded: a Ctrl-C/SIGTERM during start-up must not tear down while the start thread is still
        # spawning brokers and services (they would outlive the teardown); the finally waits for it.
        starting = asyncio.ensure_future(asyncio.to_thread(platform.start))
        await asyncio.shield(starting)
        log.info(
            "platform up in %.0fs (Kafka %s, PostgreSQL :%d, logs %s)",
            time.monotonic() - started,
            platform.kafka.bootstrap,
            platform.pg.port,
            platform.logs,
        )
        load = Load(
            Endpoints(
                platform.url,
                admin_token=platform.admin_token,
                webhook_url=platform.receiver.url,
                confirmation_token=platform.smtp.confirmation_token,
            ),
            portal,
            rates=Rates(),
        )
        await load.setup(time.monotonic() + 60)
        stop = asyncio.Event()
        load_task = asyncio.create_task(load.run(stop, lambda: consumer_lag(platform.kafka.bootstrap)))
        t0 = time.monotonic()
        wall0 = time.time()
        await asyncio.sleep(config.warmup_s)
        faults = schedule(platform, short=config.short, only=list(config.kinds))
        if config.fault_kill_targets:
            faults = [f for f in faults if f.kind != "service-kill" or f.target in config.fault_kill_targets]
        runner = FaultRunner(platform, load)
        results = await runner.run(faults, until=t0 + config.duration_s)
        rest = t0 + config.duration_s - time.monotonic()
        if rest > 0:
            await asyncio.sleep(rest)
        stop.set()
        await load_task
        duration = time.time() - wall0
        await load.aclose()
        log.info(
            "load stopped after %.0fs: %d writes acknowledged, %d failed; draining ...",
            duration,
            len(load.ledger.acks),
            load.ledger.failed,
        )
        obs = await observe(platform, drain_timeout=config.drain_timeout_s)
        windows = [(r.started_at, r.recovered_at or r.healed_at) for r in results]
        extra = {"load_paused_s": round(load.paused_s)}
        record = RunRecord(obs, load.ledger, duration, [r.public() for r in results], windows, extra)
        record_path = work_dir / "observations.json"
        record.save(record_path)
        log.info("observations kept in %s (python -m tests.chaos --recheck %s)", record_path, record_path)
        report = record.check()
        _log_findings(report)
        if load.ledger.failures:
            log.info("writes not acknowledged (expected during faults): %s", load.ledger.failures)
        return report
    finally:
        if starting is not None and not starting.done():
            await asyncio.wait([starting])
        await asyncio.to_thread(platform.stop)
        portal.stop()


@contextlib.contextmanager
def one_run_at_a_time(lock_path: Path) -> Iterator[None]:
    """Refuse to start while another fault run holds ``lock_path``: two clusters at once overload the host."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"another fault run holds {lock_path}; run one at a time") from None
        yield


def _log_findings(report: Report) -> None:
    for name, examples in report.findings.examples.items():
        for example in examples:
            log.warning("%s: %s", name, example)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (faults cycle until then)")
    parser.add_argument("--short", action="store_true", help="CI: hold each fault only as long as it needs")
    parser.add_argument("--faults", default=",".join(KINDS), help=f"comma-separated kinds of {KINDS}")
    parser.add_argument("--kill", default="", help="only these processes for service-kill (e.g. alerts-1,alerts-2)")
    parser.add_argument(
        "--variant",
        choices=tuple(VARIANTS),
        default="real",
        help="anything but real is deliberately lossy: the checker must fail the run",
    )
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument(
        "--recheck", type=Path, default=None, help="apply the checker to a run's observations.json; start nothing"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    if args.recheck is not None:
        report = RunRecord.load(args.recheck).check()
        _log_findings(report)
        print(json.dumps(report.summary), flush=True)
        return 0 if report.ok else 1
    for noisy in ("httpx", "mail.log", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # SIGTERM (a CI timeout, kill <pid>) and SIGHUP (a closed terminal) tear down like Ctrl-C: no broker,
    # database or service is left behind.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    topology = Topology.from_env()
    topology = replace(topology, variants=VARIANTS[args.variant])
    config = RunConfig(
        duration_s=args.duration,
        short=args.short,
        kinds=tuple(k for k in args.faults.split(",") if k),
        topology=topology,
        warmup_s=args.warmup,
        fault_kill_targets=tuple(k for k in args.kill.split(",") if k),
    )
    work_dir = args.work_dir or default_work_dir() / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    with one_run_at_a_time(default_work_dir() / ".run.lock"):
        report = asyncio.run(_run(config, work_dir))
    print(json.dumps(report.summary), flush=True)
    return 0 if report.ok else 1
