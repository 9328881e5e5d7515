"""The fault suite in CI: a short run with every fault kind must lose nothing; lossy variants must be caught.

Each test runs ``python -m tests.chaos`` (its own three-broker cluster, PostgreSQL, services and sinks)
and reads the JSON line it ends with. Marked ``chaos``: ``make test`` leaves them out, ``make chaos-ci``
runs them (to become a step of ``.ci/run``); they need root for nftables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.faults import KINDS
from tests.chaos.lossy_alerts import APPLY_DELAY_S
from tests.chaos.lossy_relay import SEND_DELAY_S
from tests.chaos.platform import Topology
from tests.infra import ROOT

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(2400)]

# Enough for the suite to stop every service, the three brokers and PostgreSQL after a SIGTERM.
TEARDOWN_S = 300

MUST_BE_ZERO = (
    "lost",
    "reordered",
    "missing_alerts",
    "late_alerts",
    "duplicate_alerts",
    "unexpected_alerts",
    "undelivered",
    "dlq_records",
    "consumer_lag",
)


def run_suite(*args: str, log: Path, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    with (
        log.open("w") as err,
        subprocess.Popen(
            [sys.executable, "-m", "tests.chaos", *args],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        ) as proc,
    ):
        try:
            stdout, _ = proc.communicate(timeout=2000)
        except BaseException:
            # A timeout, pytest-timeout or Ctrl-C: SIGTERM lets the suite tear its cluster, PostgreSQL and
            # services down (subprocess.run would SIGKILL it and leave them all running); SIGKILL only if
            # the teardown itself hangs.
            proc.terminate()
            try:
                proc.wait(timeout=TEARDOWN_S)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    lines = stdout.strip().splitlines()
    if not lines:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
        pytest.fail(f"the suite printed no report (exit {proc.returncode}):\n{tail}")
    print(lines[-1])  # the JSON line, in the test output
    return proc.returncode, json.loads(lines[-1])


def test_every_fault_kind_under_load_loses_nothing(tmp_path: Path) -> None:
    rc, report = run_suite("--duration", "120", "--short", log=tmp_path / "chaos.log")
    assert {f["kind"] for f in report["faults"]} == set(KINDS), report["faults"]
    killed = {f["target"] for f in report["faults"] if f["kind"] == "service-kill"}
    assert killed == {name for name, _ in Topology.from_env().replicas()}, report["faults"]
    assert all(f["recovery_s"] is not None for f in report["faults"]), report["faults"]
    assert {k: report[k] for k in MUST_BE_ZERO} == dict.fromkeys(MUST_BE_ZERO, 0)
    # A run that did nothing would pass the checks above: make sure the load really flowed.
    assert report["ops_acked"] > 30 and report["alerts"] > 20 and report["deliveries"] > 10, report
    assert rc == 0 and report["ok"]


def test_checker_catches_an_alerts_consumer_that_acks_first(tmp_path: Path) -> None:
    """tests/chaos/lossy_alerts.py: killed replicas lose acknowledged suggestions; alerts go missing or late."""
    rc, report = run_suite(
        "--duration",
        "45",
        "--warmup",
        "15",
        "--short",
        "--variant",
        "acks-first-alerts",
        "--faults",
        "service-kill",
        "--kill",
        "alerts-1,alerts-2",
        log=tmp_path / "chaos-acks-first.log",
        # Wait out the variant's apply delay before counting: what is missing then was lost, not late.
        env={"CHAOS_SETTLE_S": str(APPLY_DELAY_S + 10)},
    )
    # A dropped alert that a later ranking of its target re-raised is late; one that none re-raised is missing.
    assert report["missing_alerts"] + report["late_alerts"] > 0, report
    assert rc != 0 and not report["ok"]


def test_checker_catches_an_outbox_relay_that_marks_before_the_broker_acknowledges(tmp_path: Path) -> None:
    """tests/chaos/lossy_relay.py: killed registry/projects lose rows marked published but never sent."""
    rc, report = run_suite(
        "--duration",
        "45",
        "--warmup",
        "15",
        "--short",
        "--variant",
        "marks-first-relay",
        "--faults",
        "service-kill",
        "--kill",
        "registry,projects",
        log=tmp_path / "chaos-marks-first.log",
        env={"CHAOS_SETTLE_S": str(SEND_DELAY_S + 10)},
    )
    assert report["lost"] > 0, report
    assert rc != 0 and not report["ok"]
