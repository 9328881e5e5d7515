"""`make bench-scale-out`: matching replicas on the real broker and PostgreSQL, with 100,000 companies.

One run measures:
- **index build**: each replica, started one after the other while the others run, reads all of
  companies.v1 into its index (its own ``/healthz``: build seconds; and process start → index ready);
- **ranking throughput** with 1, 2 and 3 replicas: ``--targets`` projects are written to projects.v1
  at once and the time until every one has a stored ranking is taken (the group splits the partitions;
  ``TOPIC_PARTITIONS=6`` divides evenly by 1, 2 and 3). Beside it, the same rankings in this process on
  one index, without Kafka or a database: what one core does;
- **fail-over**: one of the three replicas is SIGKILLed and ``--failover-targets`` projects are written;
  the time until every target of the dead replica's partitions is ranked again (the group notices the
  death after its session timeout, 10 s by default, then the survivors catch up);
- **nothing lost, nothing twice**: at the end, every ``suggestions.computed`` event on suggestions.v1 is
  read back. Each target was posted once and no company changed after the builds, so each must have
  exactly one ranking event id: ``lost`` counts targets with none, ``ranked_twice`` targets with more
  than one id (a second ranking from another input, e.g. during a hand-over), ``redelivered`` records
  that repeat an id already read (the outbox relay's at-least-once; consumers deduplicate by id).

Companies and targets come from the synthetic generator of ``bench.matching`` (same as ``make bench-scale``).
Kafka: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else a broker of its own (deploy/kafka/kafka.sh, ports 19792/3).
PostgreSQL: ``DATABASE_URL`` if set, else the local cluster of deploy/postgres/pg.sh. Everything the run
creates (topics under its own prefix, the database, the processes) is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.matching.generator import companies, targets
from services.matching.domain import compute_ranking, project_target
from services.matching.engine import CompanyChange, MatchingEngine
from services.matching.matcher import CompanyProfile, Target
from shared.events.base import envelope
from shared.events.companies import CompanyProfileData, CompanyRegistered
from shared.events.projects import ProjectClosed, ProjectData, ProjectPosted
from shared.events.suggestions import TOPIC as SUGGESTIONS_TOPIC
from shared.events.suggestions import SuggestionsComputed
from shared.kafka import all_topics, ensure_topics, partition_counts, partition_of
from shared.settings import KafkaSettings
from tests.e2e.platform import ServiceProcess
from tests.infra import Databases, KafkaBroker, free_port, port_open, postgres_admin_url

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 6
T = TypeVar("T")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait(check: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"no {what} after {timeout:.0f}s")


# ---------------------------------------------------------------- events


def company_event(profile: CompanyProfile) -> tuple[bytes, bytes]:
    data = CompanyRegistered(company=CompanyProfileData.model_validate(profile.model_dump(mode="json")))
    return profile.id.encode(), envelope(data, source="registry", subject=profile.id).model_dump_json().encode()


def project_data(target: Target, project_id: str) -> ProjectData:
    """A generated target as the project the replicas are sent (every project names its institute)."""
    return ProjectData(
        id=project_id,
        title=target.title,
        summary=target.description[:4000],
        programme=target.programme,
        institute=target.institute or "Royal Military Academy",
        domains=target.domains,
        sought_capabilities=target.sought_capabilities,
        partners_wanted=max(1, target.partners_wanted or 1),
        status="open",
    )


def project_event(target: Target, project_id: str) -> tuple[bytes, bytes]:
    project = project_data(target, project_id)
    ce = envelope(ProjectPosted(project=project), source="projects", subject=project_id)
    return project_id.encode(), ce.model_dump_json().encode()


def close_event(project_id: str) -> tuple[bytes, bytes]:
    ce = envelope(ProjectClosed(project_id=project_id), source="projects", subject=project_id)
    return project_id.encode(), ce.model_dump_json().encode()


async def produce(kafka: KafkaSettings, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, acks="all", enable_idempotence=True, linger_ms=20
    )
    await producer.start()
    sent = 0
    try:
        pending = []
        for key, value in records:
            pending.append(await producer.send(kafka.topic(topic), value=value, key=key))
            sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def read_topic(kafka: KafkaSettings, topic: str) -> list[dict[str, Any]]:
    """Every record of ``topic`` up to its end offsets now, as the JSON of its value."""
    name = kafka.topic(topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        count = (await partition_counts(kafka, [name]))[name]
        partitions = [TopicPartition(name, p) for p in range(count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        values: list[dict[str, Any]] = []
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            batch = await consumer.getmany(*partitions, timeout_ms=1000)
            values.extend(json.loads(r.value) for records in batch.values() for r in records if r.value)
        return values
    finally:
        await consumer.stop()


def suggestion_events(kafka: KafkaSettings, ids: list[str]) -> dict[str, Any]:
    """Lost and twice-ranked targets among ``ids``, from the suggestions.computed events on the topic.

    The rankings are in the database before the outbox relay has published them: wait (up to a
    minute) until every target has an event, then count.
    """
    wanted = set(ids)

    def tally() -> tuple[dict[str, set[str]], int]:
        ids_of: dict[str, set[str]] = defaultdict(set)
        seen: Counter[str] = Counter()
        for ce in asyncio.run(read_topic(kafka, SUGGESTIONS_TOPIC)):
            if ce.get("type") == SuggestionsComputed.event_type and ce.get("subject") in wanted:
                ids_of[ce["subject"]].add(ce["id"])
                seen[ce["id"]] += 1
        return ids_of, sum(n - 1 for n in seen.values())

    deadline = time.monotonic() + 60
    ids_of, redelivered = tally()
    while len(ids_of) < len(wanted) and time.monotonic() < deadline:
        time.sleep(1)
        ids_of, redelivered = tally()
    result = {
        "targets": len(wanted),
        "with_a_ranking_event": len(ids_of),
        "lost": len(wanted) - len(ids_of),
        "ranked_twice": sum(1 for events in ids_of.values() if len(events) > 1),
        "redelivered": redelivered,
    }
    log(f"suggestions.computed on the topic: {result}")
    return result


async def delete_topics(kafka: KafkaSettings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(kafka.topic_prefix)]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


# ---------------------------------------------------------------- replicas


@dataclass
class Replicas:
    kafka: KafkaSettings
    database_url: str
    log_dir: Path
    processes: list[ServiceProcess] = field(default_factory=list)
    started_at: dict[str, float] = field(default_factory=dict)
    tokens: tuple[str, str] = (secrets.token_urlsafe(32), secrets.token_urlsafe(32))

    def start(self) -> ServiceProcess:
        name = f"matching-{len(self.processes) + 1}"
        port = free_port()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "TOPIC_PREFIX": self.kafka.topic_prefix,
            "TOPIC_PARTITIONS": str(PARTITIONS),
            "MATCHING_DATABASE_URL": self.database_url,
            "HTTP_PORT": str(port),
            "BONDGENOOT_ENV": "test",
            "BONDGENOOT_ADMIN_TOKEN": self.tokens[0],
            "BONDGENOOT_INTERNAL_TOKEN": self.tokens[1],
            "OUTBOX_POLL_INTERVAL": "0.2",
            "OTEL_TRACES_EXPORTER": "none",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("MATCHING_HTTP_PORT", None)
        process = ServiceProcess(name, port, env, self.log_dir / f"{name}.log", module="services.matching")
        self.started_at[name] = time.monotonic()
        process.start()
        self.processes.append(process)
        return process

    def alive(self) -> list[ServiceProcess]:
        return [p for p in self.processes if p.proc is not None and p.proc.poll() is None]

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def health(process: ServiceProcess) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{process.url}/healthz", timeout=10)
    except httpx.HTTPError:
        return None
    return dict(response.json()) if response.status_code in (200, 503) else None


def ready(process: ServiceProcess) -> dict[str, Any] | None:
    """The replica's health once its index is built and it has caught up with its partitions."""
    if process.proc is not None and process.proc.poll() is not None:
        raise RuntimeError(f"{process.name} exited with {process.proc.returncode}:\n{process.log_tail()}")
    h = health(process)
    return h if h and h["index"]["built"] and h["targets"]["caught_up"] else None


def split(replicas: list[ServiceProcess]) -> list[set[str]] | None:
    """Each replica's target partitions, once the group has given every partition to exactly one of them."""
    owned: list[set[str]] = []
    for process in replicas:
        h = ready(process)
        if h is None:
            return None
        owned.append(set(h["targets"]["partitions"]))
    together = set().union(*owned)
    if len(together) == 2 * PARTITIONS and sum(map(len, owned)) == len(together) and all(owned):
        return owned
    return None


def ranked_count(dsn: str, prefix: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM suggestion_sets WHERE target_id LIKE %s", (prefix.replace("_", r"\_") + "%",)
        ).fetchone()
    return int(row[0]) if row else 0


def ranked(dsn: str, ids: list[str]) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM suggestion_sets WHERE target_id = ANY(%s)", (ids,)).fetchone()
    return int(row[0]) if row else 0


def open_count(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM target_views WHERE open").fetchone()
    return int(row[0]) if row else 0


def processed(process: ServiceProcess) -> int:
    h = health(process)
    return int(h["consumers"]["matching"]["processed"]) if h else 0


# ---------------------------------------------------------------- the measurements


def in_process(profiles: list[CompanyProfile], goals: list[Target]) -> dict[str, Any]:
    """The same rankings (with consortium proposals) on one index in this process: no Kafka, no database.

    The same targets as the replicas rank: the generated ones as the projects they are posted as
    (each names its institute, which the consortium proposal looks up among the companies).
    """
    goals = [project_target(project_data(t, f"baseline-{i:05d}")) for i, t in enumerate(goals)]
    engine = MatchingEngine(top_n=20)
    started = time.perf_counter()
    for i, profile in enumerate(profiles):
        engine.apply_now(CompanyChange(profile.id, profile), partition=0, next_offset=i + 1)
    engine.matcher.compact()
    build = time.perf_counter() - started
    started = time.perf_counter()
    for target in goals:
        compute_ranking(engine, target=target)
    elapsed = time.perf_counter() - started
    return {"index_build_s": round(build, 1), "targets_per_s": round(len(goals) / elapsed, 1)}


def add_replica(replicas: Replicas) -> dict[str, Any]:
    """Start one more replica while the others run; return its index build numbers."""
    process = replicas.start()
    h = wait(lambda: ready(process), timeout=900, what=f"{process.name} with its index built", every=0.5)
    ready_s = time.monotonic() - replicas.started_at[process.name]
    owned = wait(lambda: split(replicas.alive()), timeout=300, what="the partitions split between the replicas")
    build = {
        "replica": process.name,
        "companies": h["index"]["companies"],
        "build_s": h["index"]["build_seconds"],
        "start_to_ready_s": round(ready_s, 1),
    }
    log(
        f"{process.name}: index of {build['companies']} companies built in {build['build_s']} s "
        f"({build['start_to_ready_s']} s from process start); partitions per replica: {[len(o) for o in owned]}"
    )
    return build


def throughput(replicas: Replicas, dsn: str, goals: list[Target], round_: str) -> tuple[dict[str, Any], list[str]]:
    """Write every target at once; time until all are ranked; then close them (no catch-up work later)."""
    ids = [f"{round_}-{i:05d}" for i in range(len(goals))]
    before = [processed(p) for p in replicas.alive()]
    started = time.monotonic()
    asyncio.run(produce(replicas.kafka, "projects.v1", (project_event(t, i) for t, i in zip(goals, ids, strict=True))))
    wait(lambda: ranked(dsn, ids) == len(ids) or None, timeout=1800, what=f"{len(ids)} rankings", every=0.2)
    elapsed = time.monotonic() - started
    share = [processed(p) - b for p, b in zip(replicas.alive(), before, strict=True)]
    asyncio.run(produce(replicas.kafka, "projects.v1", (close_event(i) for i in ids)))
    wait(lambda: open_count(dsn) == 0 or None, timeout=600, what="the round's targets closed")
    result = {
        "replicas": len(replicas.alive()),
        "targets": len(ids),
        "seconds": round(elapsed, 2),
        "targets_per_s": round(len(ids) / elapsed, 1),
        "per_replica": share,
    }
    log(
        f"{result['replicas']} replica(s): {len(ids)} targets ranked in {result['seconds']} s = "
        f"{result['targets_per_s']} targets/s (ranked per replica: {share})"
    )
    return result, ids


def failover(replicas: Replicas, dsn: str, goals: list[Target]) -> tuple[dict[str, Any], list[str]]:
    """SIGKILL the last replica, write targets to every partition, time until the dead one's are ranked."""
    victim = replicas.alive()[-1]
    victim_partitions = {
        int(name.rsplit("[", 1)[1].rstrip("]")) for name in (health(victim) or {})["targets"]["partitions"]
    }
    ids = [f"f-{i:05d}" for i in range(len(goals))]
    orphans = [i for i in ids if partition_of(i, PARTITIONS) in victim_partitions]
    victim.kill()
    killed = time.monotonic()
    asyncio.run(produce(replicas.kafka, "projects.v1", (project_event(t, i) for t, i in zip(goals, ids, strict=True))))
    wait(lambda: ranked(dsn, orphans) == len(orphans) or None, timeout=600, what="the dead replica's targets")
    orphans_s = time.monotonic() - killed
    wait(lambda: ranked(dsn, ids) == len(ids) or None, timeout=600, what="every target")
    all_s = time.monotonic() - killed
    survivors = [health(p) or {} for p in replicas.alive()]
    take_over = [s.get("targets", {}).get("last_take_over", {}) for s in survivors]
    result = {
        "killed": victim.name,
        "targets": len(ids),
        "targets_of_the_dead_replica": len(orphans),
        "dead_replicas_targets_ranked_after_s": round(orphans_s, 1),
        "all_ranked_after_s": round(all_s, 1),
        "survivors_take_over": take_over,
    }
    log(
        f"SIGKILL {victim.name}: its {len(orphans)} of {len(ids)} targets ranked {round(orphans_s, 1)} s "
        f"after the kill (all after {round(all_s, 1)} s)"
    )
    return result, ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_out", description=__doc__.split("\n\n")[0])
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument("--targets", type=int, default=600, help="projects per throughput round")
    parser.add_argument("--failover-targets", type=int, default=120)
    parser.add_argument("--max-replicas", type=int, default=3)
    args = parser.parse_args(argv)

    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker: KafkaBroker | None = None
    if not external:
        broker = KafkaBroker(port=19792, controller_port=19793, run_dir=ROOT / ".data" / "kafka-bench")
        if not port_open("127.0.0.1", broker.port):
            broker.down(wipe=True)
            broker.up()
    bootstrap = external or (broker.bootstrap if broker else "")
    kafka = KafkaSettings(  # type: ignore[call-arg]
        KAFKA_BOOTSTRAP_SERVERS=bootstrap, TOPIC_PREFIX=f"bench{uuid.uuid4().hex[:6]}.", TOPIC_PARTITIONS=PARTITIONS
    )
    databases = Databases(postgres_admin_url())
    url = databases.create("matching")
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-scale-out-"))
    replicas = Replicas(kafka, url, log_dir)
    report: dict[str, Any] = {"companies": args.companies, "partitions_per_target_topic": PARTITIONS}
    try:
        log(f"generating {args.companies} companies and {args.targets} targets; Kafka {bootstrap}, logs {log_dir}")
        profiles = list(companies(args.companies))
        goals = targets(args.targets, seed=11)
        asyncio.run(ensure_topics(kafka, all_topics(kafka)))
        started = time.monotonic()
        asyncio.run(produce(kafka, "companies.v1", (company_event(p) for p in profiles)))
        log(f"{args.companies} company.registered events on companies.v1 in {time.monotonic() - started:.1f} s")

        report["in_process_one_core"] = in_process(profiles, goals)
        log(f"in this process, one index: {report['in_process_one_core']}")
        del profiles

        report["index_builds"], report["throughput"] = [], []
        posted: list[str] = []
        for n in range(1, args.max_replicas + 1):
            report["index_builds"].append(add_replica(replicas))
            row, ids = throughput(replicas, dsn, goals, f"r{n}")
            report["throughput"].append(row)
            posted += ids
        base = report["throughput"][0]["targets_per_s"]
        for row in report["throughput"]:
            row["speed_up"] = round(row["targets_per_s"] / base, 2)
        report["failover"], ids = failover(replicas, dsn, targets(args.failover_targets, seed=13))
        report["suggestion_events"] = suggestion_events(kafka, posted + ids)
        report["cpu_cores"] = os.cpu_count()
        report["load_average_1m_at_end"] = round(os.getloadavg()[0], 1)
        builds = [b["build_s"] for b in report["index_builds"]]
        report["index_build_s_median"] = statistics.median(builds)
    finally:
        replicas.stop()
        asyncio.run(delete_topics(kafka))
        databases.drop_all()
        if broker is not None and broker.started_here:
            broker.down(wipe=True)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
