"""Real infrastructure for the tests: an Apache Kafka broker and PostgreSQL, started if absent.

Tests never fake Kafka or PostgreSQL outside unit tests. The broker is started from the same
``deploy/kafka/kafka.sh`` a developer uses, on its own ports and run directory so it never collides
with ``make run``; PostgreSQL is the server in ``DATABASE_URL`` or the local cluster that
``deploy/postgres/pg.sh`` starts.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import psycopg

from shared.auth import AuthSettings

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
PG_SH = ROOT / "deploy" / "postgres" / "pg.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class KafkaBroker:
    """A single-node KRaft broker run by deploy/kafka/kafka.sh."""

    port: int
    controller_port: int
    run_dir: Path
    started_here: bool = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_RUN_DIR": str(self.run_dir),
        }

    def up(self) -> None:
        subprocess.run(["bash", str(KAFKA_SH), "up", "single"], env=self._env(), check=True)
        self.started_here = True

    def down(self, *, wipe: bool = False) -> None:
        """Stop the broker; ``wipe`` also deletes its data (test topics are throw-away)."""
        args = ["bash", str(KAFKA_SH), "down", "single", *(["--wipe"] if wipe else [])]
        subprocess.run(args, env=self._env(), check=True)

    @staticmethod
    def version() -> str:
        out = subprocess.run(["bash", str(KAFKA_SH), "version"], capture_output=True, text=True, check=True)
        return out.stdout.strip()


def postgres_admin_url() -> str:
    """The admin URL of a running PostgreSQL: DATABASE_URL, or a local cluster started now."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    out = subprocess.run(["bash", str(PG_SH), "up"], capture_output=True, text=True, check=True)
    url = out.stdout.strip().splitlines()[-1]
    os.environ["DATABASE_URL"] = url
    return url


def postgres_version(admin_url: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


class Databases:
    """Creates throw-away databases (one per service per test) on the real server."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def create(self, service: str) -> str:
        """A fresh database; returns its SQLAlchemy async URL."""
        name = f"bgt_{service}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        base = self.admin_url.rsplit("/", 1)[0]
        return f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


def admin_headers() -> dict[str, str]:
    """Authenticate as the admin: the token in-process services take from the environment (or the dev default)."""
    return {"Authorization": f"Bearer {AuthSettings().admin_secret}"}


def topic_prefix() -> str:
    """A prefix isolating one test's topics from every other test on the shared broker."""
    return f"t{uuid.uuid4().hex[:8]}."


async def wait_for(predicate, *, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll an async or sync predicate until it returns a truthy value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


@contextmanager
def env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_script(path: Path, name: str) -> ModuleType:
    """Import a script that is not in a package (e.g. deploy/local/run.py) as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module
