"""A service must reach every broker of a cluster it is given, not only a single-node one."""

from __future__ import annotations

from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings, ServiceSettings


def test_bootstrap_servers_are_split_into_a_list() -> None:
    settings = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1, 127.0.0.1:2,,127.0.0.1:3")  # type: ignore[call-arg]
    assert settings.servers == ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]


def test_service_consumers_get_every_bootstrap_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # FastStream turns a string into [string]: "a:1,b:2" then fails to resolve as one host name.
    settings = ServiceSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        kafka=KafkaSettings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:24500,127.0.0.1:24510"),  # type: ignore[call-arg]
    )
    runtime = ServiceRuntime("probe", settings, tables=[])
    assert runtime.broker._connection_kwargs["bootstrap_servers"] == ["127.0.0.1:24500", "127.0.0.1:24510"]
