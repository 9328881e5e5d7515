"""The fault suite's own infrastructure: a three-broker KRaft cluster, a PostgreSQL instance, nftables.

Nothing here touches the shared test broker (19192) or the shared PostgreSQL (5432): the cluster runs
on its own ports and run dir through ``deploy/kafka/kafka.sh`` (cluster mode, rf 3, min.insync.replicas
2), and PostgreSQL is a private ``initdb`` data directory on its own port, because restarting it is one
of the faults. Network partitions are nftables rules in a table of their own that match only the ports
of the proxied path of the one service under test, so no other process on the machine is affected.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.infra import ROOT, port_open

log = logging.getLogger(__name__)

KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
NODES = (1, 2, 3)


class InfraError(RuntimeError):
    """The suite's infrastructure could not be set up (a missing tool, a port in use, no privileges)."""


@dataclass
class KafkaCluster:
    """Three KRaft nodes on ``base_port`` + 10*(id-1); each also has a PROXIED listener (see kafka.sh)."""

    base_port: int
    run_dir: Path

    def broker_port(self, node: int) -> int:
        return self.base_port + 10 * (node - 1)

    def proxied_upstream_port(self, node: int) -> int:
        """Where the PROXIED listener really listens (the proxy forwards here)."""
        return self.broker_port(node) + 2

    def proxied_port(self, node: int) -> int:
        """What the PROXIED listener advertises: the proxy's port."""
        return self.broker_port(node) + 3

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.broker_port(n)}" for n in NODES)

    @property
    def proxied_bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.proxied_port(n)}" for n in NODES)

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_CLUSTER_BASE_PORT": str(self.base_port),
            "KAFKA_PROXIED_LISTENER": "1",
            "KAFKA_RUN_DIR": str(self.run_dir),
            "KAFKA_HEAP_OPTS": os.environ.get("CHAOS_KAFKA_HEAP_OPTS", "-Xmx384m -Xms192m"),
            # Generous: the machine is shared, and a restart under load is one of the faults.
            "KAFKA_START_TIMEOUT": "240",
        }

    def up(self) -> None:
        """Start every node that is not running and wait until all three answer."""
        out = subprocess.run(
            ["bash", str(KAFKA_SH), "up", "cluster"], env=self._env(), capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            raise InfraError(f"kafka.sh up cluster failed:\n{out.stderr[-3000:]}")

    def down(self, *, wipe: bool = True) -> None:
        args = ["bash", str(KAFKA_SH), "down", "cluster", *(["--wipe"] if wipe else [])]
        subprocess.run(args, env={**self._env(), "KAFKA_STOP_TIMEOUT": "10"}, capture_output=True, check=False)

    def pid(self, node: int) -> int | None:
        pid_file = self.run_dir / f"node{node}" / "kafka.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def kill(self, node: int) -> None:
        """SIGKILL one broker: no controlled shutdown, no leadership hand-over — a crash."""
        pid = self.pid(node)
        if pid is None:
            raise InfraError(f"broker {node} is not running")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and port_open("127.0.0.1", self.broker_port(node)):
            time.sleep(0.1)

    async def leader_of_busiest_partition(self, topics: list[str]) -> tuple[int, str, int]:
        """(leader node, topic, partition) of the partition with the most records among ``topics``."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        await consumer.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()
            parts = [TopicPartition(t, p) for t in topics for p in sorted(cluster.partitions_for_topic(t) or ())]
            if not parts:
                raise InfraError(f"no partitions found for {topics}")
            ends = await consumer.end_offsets(parts)
            busiest = max(parts, key=lambda tp: ends[tp])
            leader = cluster.leader_for_partition(busiest)
        finally:
            await consumer.stop()
        if leader is None or leader < 0:
            raise InfraError(f"{busiest} has no leader")
        return int(leader), busiest.topic, busiest.partition

    async def under_replicated(self, topics: list[str]) -> int:
        """How many partitions of ``topics`` have fewer in-sync replicas than replicas."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        await admin.start()
        try:
            described = await admin.describe_topics(topics)
        finally:
            await admin.close()
        return sum(1 for t in described for p in t["partitions"] if len(p["isr"]) < len(p["replicas"]))


def _pg_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise InfraError("no PostgreSQL server binaries under /usr/lib/postgresql (Debian: apt-get install postgresql)")
    return found[-1].parent


@dataclass
class PostgresInstance:
    """A private PostgreSQL server: its own data directory, port and socket directory."""

    data_dir: Path
    port: int
    user: str = "bondgenoot"

    def _as_owner(self, *args: str) -> list[str]:
        # The server refuses to run as root; as root we run it as the postgres system user.
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return list(args)

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = self._as_owner(
            str(_pg_bindir() / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on",
            *args,
        )
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if check and out.returncode != 0:
            raise InfraError(f"pg_ctl {' '.join(args)} failed: {out.stderr or out.stdout}\n{self.log_tail()}")
        return out

    def log_tail(self, n: int = 20) -> str:
        path = self.data_dir / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""

    def log_count(self, needle: str) -> int:
        """How many lines of the server log contain ``needle`` (the log survives restarts)."""
        path = self.data_dir / "server.log"
        if not path.exists():
            return 0
        return sum(needle in line for line in path.read_text(errors="replace").splitlines())

    def init(self) -> None:
        if port_open("127.0.0.1", self.port):
            raise InfraError(f"port {self.port} for the suite's PostgreSQL is already in use")
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.data_dir, owner.pw_uid, owner.pw_gid)
            # runuser needs to traverse every parent directory of the data dir.
            for parent in self.data_dir.parents:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    raise InfraError(f"{parent} is not traversable by the postgres user (mode {oct(mode)})")
        cmd = self._as_owner(
            str(_pg_bindir() / "initdb"), "-D", str(self.data_dir), "-U", self.user, "-A", "trust", "-E", "UTF8"
        )
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise InfraError(f"initdb failed: {out.stderr or out.stdout}")

    def start(self) -> None:
        self._pg_ctl("start", "-w", "-t", "60")

    def stop_immediately(self) -> None:
        """Immediate shutdown: no checkpoint, connections cut; the next start recovers from WAL, as after a crash."""
        self._pg_ctl("stop", "-m", "immediate", "-w")

    def stop(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        if self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30", check=False).returncode != 0:
            # Fast shutdown waits for sessions to end; a stuck one must not leave the server running.
            out = self._pg_ctl("stop", "-m", "immediate", "-w", "-t", "30", check=False)
            if out.returncode != 0:
                log.error("PostgreSQL of the fault run did not stop: %s", out.stderr or out.stdout)

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_databases(self, names: list[str]) -> None:
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            for name in names:
                conn.execute(f'CREATE DATABASE "{name}"')

    def url(self, database: str, *, port: int | None = None) -> str:
        """SQLAlchemy async URL of one database, optionally through another port (a proxy)."""
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{port or self.port}/{database}"


class Partition:
    """nftables rules that black-hole the TCP ports of one proxied path (packets dropped, no RST).

    The rules live in their own table (``inet bondgenoot_chaos_<pid>``) and match only the given ports
    on the loopback interface, which only the service under test uses; dropping them is a real
    partition (connections stall until timeouts), not a refused connection.
    """

    def __init__(self, ports: list[int]) -> None:
        self.ports = sorted(ports)
        self.table = f"bondgenoot_chaos_{os.getpid()}"
        self.active = False

    @staticmethod
    def check_available() -> None:
        """Fail clearly when nftables cannot be used (no nft binary, no CAP_NET_ADMIN)."""
        if shutil.which("nft") is None:
            raise InfraError(
                "the partition fault needs nftables (Debian: apt-get install nftables); .ci/run installs it"
            )
        probe = f"bondgenoot_chaos_probe_{os.getpid()}"
        out = subprocess.run(["nft", "add", "table", "inet", probe], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise InfraError(f"nft cannot add a table (needs root / CAP_NET_ADMIN): {out.stderr.strip()}")
        subprocess.run(["nft", "delete", "table", "inet", probe], capture_output=True, check=False)

    def _nft(self, script: str) -> None:
        out = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise InfraError(f"nft failed: {out.stderr.strip()}\n{script}")

    def cut(self) -> None:
        ports = ", ".join(str(p) for p in self.ports)
        self._nft(
            f"""
table inet {self.table} {{
    chain out {{
        type filter hook output priority -10; policy accept;
        oifname "lo" tcp dport {{ {ports} }} drop
        oifname "lo" tcp sport {{ {ports} }} drop
    }}
}}
"""
        )
        self.active = True

    def heal(self) -> None:
        if self.active:
            self._nft(f"delete table inet {self.table}\n")
            self.active = False


async def wait_until(check, *, timeout: float, interval: float = 0.5, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll a sync or async check until it returns truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
        except Exception as exc:  # not ready yet (a refused connection, a 503): asked again
            last = exc
        else:
            if value:
                return value
            last = value
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
