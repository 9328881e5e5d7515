"""A fault run leaves nothing behind: every teardown step runs even when one fails; one run at a time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from services.calls.replay.server import ReplayServer
from tests.chaos.platform import ChaosPlatform, Topology
from tests.chaos.run import one_run_at_a_time
from tests.e2e.platform import ServiceProcess


def test_teardown_goes_on_past_a_service_that_will_not_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    platform = ChaosPlatform(Topology(), tmp_path / "run", ReplayServer(rows=[]))
    stopped: list[str] = []

    def stuck() -> None:
        raise TimeoutError("alerts-1 did not exit")

    def stops(name: str) -> Callable[[], None]:
        return lambda: stopped.append(name)

    for name in ("registry", "alerts-1", "alerts-2"):
        svc = ServiceProcess(name, 0, {}, tmp_path / f"{name}.log")
        monkeypatch.setattr(svc, "stop", stuck if name == "alerts-1" else stops(name))
        platform.services[name] = svc
    monkeypatch.setattr(platform.kafka, "down", lambda wipe: stopped.append("kafka"))
    monkeypatch.setattr(platform.pg, "stop", lambda: stopped.append("postgres"))

    platform.stop()

    assert stopped == ["registry", "alerts-2", "kafka", "postgres"]
    assert not platform.pg.data_dir.parent.exists()


def test_a_second_fault_run_is_refused_while_one_holds_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / ".run.lock"
    with one_run_at_a_time(lock):
        with pytest.raises(SystemExit, match="another fault run"), one_run_at_a_time(lock):
            pass
    with one_run_at_a_time(lock):  # released when the first run ends
        pass
