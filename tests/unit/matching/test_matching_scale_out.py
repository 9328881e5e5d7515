"""The pieces of matching's scale-out that need no infrastructure: partitions, positions, turns, the run plan."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner

from bench.matching.generator import companies, targets
from bench.scale_out import close_event, company_event, project_event
from services.matching.engine import MatchingEngine, not_older, position_text
from shared.consumer import decode_data, decode_envelope
from shared.events.companies import CompanyRegistered
from shared.events.projects import ProjectClosed, ProjectPosted
from shared.json_bounds import JsonBounds
from shared.kafka import partition_of
from shared.parking import ParkedRecord
from tests.infra import load_script

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("partitions", [1, 3, 6, 7])
def test_partition_of_is_where_the_producers_put_the_key(partitions: int) -> None:
    everything = list(range(partitions))
    for key in ["p-1", "EDF-2026-DA-NAVAL-MCMS", "0b6f4a52-3a2e-4c55-9a0e-0d0b4b9e7f11", "é-unicode"]:
        assert partition_of(key, partitions) == DefaultPartitioner()(key.encode(), everything, everything)


def test_an_index_position_is_not_older_only_when_it_has_read_as_much_on_every_partition() -> None:
    assert not_older({0: 5, 1: 2}, {0: 5, 1: 2})
    assert not_older({0: 6, 1: 2, 2: 1}, {0: 5, 1: 2})
    assert not not_older({0: 6, 1: 1}, {0: 5, 1: 2})  # ahead on one, behind on another
    assert not not_older({0: 6}, {0: 5, 1: 2})  # never read partition 1: behind
    assert position_text({1: 2, 0: 5}) == position_text({0: 5, 1: 2}) == "0:5,1:2"


async def test_a_target_waits_for_the_index_to_catch_up_and_never_runs_beside_a_company_change() -> None:
    engine = MatchingEngine(top_n=5)
    order: list[str] = []

    async def target() -> None:
        async with engine.turn():
            order.append("target")

    task = asyncio.create_task(target())
    await asyncio.sleep(0.05)
    assert order == []  # not caught up yet: the target waits, without holding the lock
    async with engine.lock:  # the feed applies a company change meanwhile
        order.append("company")
        engine.caught_up.set()
        await asyncio.sleep(0.05)
        assert order == ["company"]  # caught up, but the company change still holds the index
    await asyncio.wait_for(task, 5)
    assert order == ["company", "target"]


def test_make_run_with_two_replicas_starts_two_matching_and_two_alerts_processes() -> None:
    run = load_script(ROOT / "deploy" / "local" / "run.py", "local_run_plan")
    names = list(run.SERVICES)
    assert run.replica_plan(names, 1) == [(n, n, p) for n, p in run.SERVICES.items()]
    plan = run.replica_plan(names, 2)
    assert [(name, service) for name, service, _ in plan[len(names) :]] == [
        ("matching-2", "matching"),
        ("alerts-2", "alerts"),
    ]
    ports = [port for _, _, port in plan]
    assert len(ports) == len(set(ports)), "two processes on one port"
    assert run.parse_args(["--replicas", "2"]).replicas == 2


def test_the_scale_out_benchmark_writes_events_the_services_accept() -> None:
    profile = next(iter(companies(1)))
    for (key, value), kind in [
        (company_event(profile), CompanyRegistered),
        (project_event(targets(1)[0], "r1-00001"), ProjectPosted),
        (close_event("r1-00001"), ProjectClosed),
    ]:
        data = decode_data(decode_envelope(ParkedRecord("t", 0, 0, key, value, []), JsonBounds()))
        assert isinstance(data, kind)
        if isinstance(data, CompanyRegistered):
            assert data.company.capabilities == profile.capabilities
