"""docker-compose.yml checks, no Docker needed.

1. The file is valid against the Compose Specification's JSON schema. The schema is
   not ours: it is the compose-spec project's ``schema/compose-spec.json`` as vendored
   (with a recorded sha256) by the ``check-jsonschema`` package, loaded from that
   installed package and applied with ``jsonschema``'s validator for the schema's
   own draft (2020-12).
2. Compose and the code agree: every ``services/<name>/`` that has a ``__main__.py``
   is a compose service, and compose has exactly the five services plus the infra.
3. Each service has its own ``<NAME>_DATABASE_URL`` pointing at its own database
   (which the postgres init SQL creates), and every container has a healthcheck.

Each check is a function returning a list of problems, so the tests below can also
show that it reports a broken copy of the file.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.resources
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
INIT_SQL = ROOT / "deploy" / "postgres" / "init-databases.sql"
COLLECTOR_CONFIG = ROOT / "deploy" / "otel" / "collector.yaml"

APP_SERVICES = {"registry": 8001, "projects": 8002, "calls": 8003, "matching": 8004, "alerts": 8005, "consortia": 8006}
INFRA_SERVICES = {"kafka", "postgres", "otel-collector"}
PORTAL = "portal"  # the web portal: HTTP only, its own session database, no Kafka

SCHEMA_PACKAGE = "check_jsonschema.builtin_schemas.vendor"
SCHEMA_FILE = "compose-spec.json"


# --------------------------------------------------------------------------- loading


def load_compose_schema() -> dict[str, Any]:
    try:
        vendor = importlib.resources.files(SCHEMA_PACKAGE)
    except ModuleNotFoundError:
        pytest.fail(
            "the Compose Specification schema comes from the check-jsonschema package "
            "(dev dependency): pip install -e '.[dev]'"
        )
    raw = (vendor / SCHEMA_FILE).read_bytes()
    # The package records the sha256 of each vendored schema: make sure this is that file, unmodified.
    recorded = (vendor / "sha256" / "compose-spec.sha256").read_text("utf-8").strip()
    assert hashlib.sha256(raw).hexdigest() == recorded, "vendored compose-spec.json does not match its sha256"
    schema: dict[str, Any] = json.loads(raw)
    return schema


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    # safe_load resolves anchors, aliases and `<<` merge keys as Compose does.
    data = yaml.safe_load(path.read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def code_services(root: Path = ROOT) -> set[str]:
    """The services the code defines: directories services/<name>/ with a __main__.py."""
    return {p.parent.name for p in (root / "services").glob("*/__main__.py")}


def environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", "KEY"] form
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


# --------------------------------------------------------------------------- checks


def schema_problems(validator: Validator, compose: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, err.absolute_path)) or '<root>'}: {err.message}" for err in validator.iter_errors(compose)
    ]


def service_set_problems(compose: dict[str, Any], from_code: set[str]) -> list[str]:
    problems = []
    services = set(compose.get("services", {}))
    expected = set(APP_SERVICES) | INFRA_SERVICES | {PORTAL}
    if missing := sorted(expected - services):
        problems.append(f"compose lacks services {missing}")
    if extra := sorted(services - expected):
        problems.append(f"compose has unexpected services {extra}")
    if unlisted := sorted(from_code - services):
        problems.append(f"services/<name>/__main__.py exists but compose has no service for {unlisted}")
    return problems


def app_service_problems(compose: dict[str, Any]) -> list[str]:
    """Command, port, shared env and own database of each of the five services."""
    problems = []
    services = compose.get("services", {})
    for name, port in APP_SERVICES.items():
        svc = services.get(name)
        if svc is None:
            problems.append(f"{name}: missing")
            continue
        command = svc.get("command")
        if isinstance(command, str):
            command = command.split()
        if command != ["python", "-m", f"services.{name}"]:
            problems.append(f"{name}: command is {command!r}, expected python -m services.{name}")
        if svc.get("image") != "bondgenoot:local" or svc.get("build") is None:
            problems.append(f"{name}: must be built from the project image (build: ., image: bondgenoot:local)")

        env = environment(svc)
        expected_env = {
            "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318",
            "OTEL_TRACES_EXPORTER": "otlp",
            "BONDGENOOT_ENV": "production",
            "HTTP_HOST": "0.0.0.0",
            "HTTP_PORT": str(port),
        }
        for key, value in expected_env.items():
            if str(env.get(key)) != value:
                problems.append(f"{name}: {key}={env.get(key)!r}, expected {value!r}")
        if f"{port}:{port}" not in [str(p) for p in svc.get("ports", [])]:
            problems.append(f"{name}: port {port} not published as {port}:{port}")

        own = f"{name.upper()}_DATABASE_URL"
        db_keys = {k for k in env if k.endswith("_DATABASE_URL")}
        if db_keys != {own}:
            problems.append(f"{name}: database URL variables {sorted(db_keys)}, expected only {own}")
        url = urlsplit(str(env.get(own, "")))
        expected_url = ("postgresql+asyncpg", "postgres", 5432, f"/{name}")
        if (url.scheme, url.hostname, url.port, url.path) != expected_url:
            problems.append(f"{name}: {own}={env.get(own)!r} is not postgresql+asyncpg://…@postgres/{name}")

        depends = svc.get("depends_on") or {}
        for infra in ("kafka", "postgres"):
            cond = depends.get(infra, {}).get("condition") if isinstance(depends, dict) else None
            if cond != "service_healthy":
                problems.append(f"{name}: must depend on {infra} with condition service_healthy")
    return problems


def healthcheck_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    for name, svc in compose.get("services", {}).items():
        check = svc.get("healthcheck")
        if not check or check.get("disable"):
            problems.append(f"{name}: no healthcheck")
            continue
        test = check.get("test")
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        if not test or test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2:
            problems.append(f"{name}: healthcheck test {test!r} runs nothing")
    return problems


def kafka_problems(compose: dict[str, Any]) -> list[str]:
    kafka = compose.get("services", {}).get("kafka", {})
    env = environment(kafka)
    problems = []
    if kafka.get("image") != "apache/kafka:4.1.1":
        problems.append(f"kafka: image {kafka.get('image')!r}")
    if str(env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE")).lower() != "false":
        problems.append("kafka: auto topic creation must be disabled")
    if env.get("KAFKA_PROCESS_ROLES") != "broker,controller":
        problems.append("kafka: must run KRaft broker,controller")
    mapping = str(env.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", ""))
    protocol_map = dict(pair.split(":", 1) for pair in mapping.split(",") if pair)
    listeners = {}
    for var in ("KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS"):
        for listener in str(env.get(var, "")).split(","):
            lname, _, address = listener.partition("://")
            if var == "KAFKA_ADVERTISED_LISTENERS":
                listeners[lname] = address
            if lname not in protocol_map:
                problems.append(f"kafka: listener {lname} ({var}) has no security protocol mapping")
    if listeners.get("PLAINTEXT") != "kafka:9092" or listeners.get("EXTERNAL") != "localhost:29092":
        problems.append(f"kafka: advertised listeners {listeners}")
    if "127.0.0.1:29092:29092" not in kafka.get("ports", []) and "29092:29092" not in kafka.get("ports", []):
        problems.append("kafka: EXTERNAL listener port 29092 not published")
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        if str(env.get(key)) != "1":
            problems.append(f"kafka: {key} must be 1 on a single node")
    return problems


def bind_mount_problems(compose: dict[str, Any], root: Path = ROOT) -> list[str]:
    problems = []
    for name, svc in compose.get("services", {}).items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")) and not (root / source).exists():
                problems.append(f"{name}: bind-mount source {source} does not exist")
    return problems


def created_databases(sql: str) -> set[str]:
    return set(re.findall(r"^\s*CREATE\s+DATABASE\s+\"?(\w+)\"?", sql, flags=re.IGNORECASE | re.MULTILINE))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def validator() -> Validator:
    schema = load_compose_schema()
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


# --------------------------------------------------------------------------- the real file


def test_schema_is_the_compose_specification(validator: Validator) -> None:
    assert validator.schema["title"] == "Compose Specification"
    assert validator.schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "services" in validator.schema["properties"]


def test_compose_file_is_valid_against_the_compose_spec(validator: Validator, compose: dict[str, Any]) -> None:
    assert schema_problems(validator, compose) == []


def test_compose_file_has_no_obsolete_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose


def test_compose_names_every_service_the_code_defines(compose: dict[str, Any]) -> None:
    assert service_set_problems(compose, code_services()) == []


def test_each_service_has_its_command_port_env_and_own_database(compose: dict[str, Any]) -> None:
    assert app_service_problems(compose) == []


def test_every_container_has_a_healthcheck(compose: dict[str, Any]) -> None:
    assert healthcheck_problems(compose) == []


def test_kafka_is_single_node_kraft_with_internal_and_external_listeners(compose: dict[str, Any]) -> None:
    assert kafka_problems(compose) == []


def test_bind_mounted_files_exist(compose: dict[str, Any]) -> None:
    assert bind_mount_problems(compose) == []


def test_postgres_init_creates_every_service_database(compose: dict[str, Any]) -> None:
    assert created_databases(INIT_SQL.read_text("utf-8")) == set(APP_SERVICES) | {PORTAL}
    mounts = compose["services"]["postgres"]["volumes"]
    assert any(str(m).startswith("./deploy/postgres/init-databases.sql:/docker-entrypoint-initdb.d/") for m in mounts)


def test_collector_receives_otlp_http_on_4318_and_prints_traces() -> None:
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text("utf-8"))
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"
    traces = config["service"]["pipelines"]["traces"]
    assert "otlp" in traces["receivers"]
    assert "debug" in traces["exporters"]
    assert "debug" in config["exporters"]


def test_dockerfile_builds_one_non_root_image_on_python_311_slim() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text("utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert froms and all(f == "python:3.11-slim" for f in froms)
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^RUN .*pip install \.$", dockerfile, flags=re.MULTILINE)
    # shared.settings finds contracts/ next to the shared/ package that is imported; `python -m`
    # imports from the working directory, so the final stage needs both there.
    assert re.findall(r"^WORKDIR\s+(\S+)", dockerfile, flags=re.MULTILINE)[-1] == "/app"
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    for tree in ("shared", "services", "contracts"):
        assert re.search(rf"^COPY .*\b{tree}\s+\./{tree}$", final_stage, flags=re.MULTILINE), tree
    ignored = (ROOT / ".dockerignore").read_text("utf-8").split()
    assert {".venv", ".data", ".cache", ".git", "**/__pycache__"} <= set(ignored)


# --------------------------------------------------------------------------- the checks can fail


def _mutate(compose: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    # JSON round trip, not deepcopy: YAML aliases make services share objects (e.g. depends_on),
    # and deepcopy would keep them shared, so one edit would break every service.
    broken: dict[str, Any] = json.loads(json.dumps(compose))
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return broken


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param(["services", "registry", "healthchek"], {"test": ["CMD", "true"]}, id="unknown-service-key"),
        pytest.param(["servicez"], {}, id="unknown-top-level-key"),
        pytest.param(["services", "projects", "depends_on", "kafka", "condition"], "service_ready", id="bad-condition"),
        pytest.param(["services", "calls", "healthcheck", "interval"], 10, id="interval-not-a-string"),
        pytest.param(["services", "matching", "ports"], "8004:8004", id="ports-not-a-list"),
        pytest.param(["services", "alerts", "environment", "HTTP_PORT"], ["8005"], id="env-value-a-list"),
        pytest.param(["volumes", "kafka-data"], {"driverr": "local"}, id="unknown-volume-key"),
    ],
)
def test_validator_rejects_a_broken_copy(
    validator: Validator, compose: dict[str, Any], path: list[str], value: Any
) -> None:
    assert schema_problems(validator, _mutate(compose, path, value)) != []


def test_service_set_check_reports_missing_extra_and_code_only_services(compose: dict[str, Any]) -> None:
    without_alerts = copy.deepcopy(compose)
    del without_alerts["services"]["alerts"]
    assert service_set_problems(without_alerts, set()) != []
    assert service_set_problems(_mutate(compose, ["services", "zookeeper"], {"image": "zk"}), set()) != []
    assert service_set_problems(compose, {"registry", "billing"}) != []


def test_code_services_are_the_dirs_with_a_main_module(tmp_path: Path) -> None:
    for name in ("registry", "calls"):
        (tmp_path / "services" / name).mkdir(parents=True)
        (tmp_path / "services" / name / "__main__.py").write_text("")
    (tmp_path / "services" / "__pycache__").mkdir()
    (tmp_path / "services" / "common").mkdir()
    (tmp_path / "services" / "common" / "__init__.py").write_text("")
    assert code_services(tmp_path) == {"registry", "calls"}


def test_database_check_reports_a_shared_or_foreign_database(compose: dict[str, Any]) -> None:
    env = ["services", "projects", "environment"]
    registry_url = compose["services"]["registry"]["environment"]["REGISTRY_DATABASE_URL"]
    assert app_service_problems(_mutate(compose, [*env, "PROJECTS_DATABASE_URL"], registry_url)) != []
    assert app_service_problems(_mutate(compose, [*env, "REGISTRY_DATABASE_URL"], registry_url)) != []
    broken = copy.deepcopy(compose)
    del broken["services"]["projects"]["environment"]["PROJECTS_DATABASE_URL"]
    assert app_service_problems(broken) != []


def test_healthcheck_check_reports_a_container_without_one(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    del broken["services"]["otel-collector"]["healthcheck"]
    assert healthcheck_problems(broken) == ["otel-collector: no healthcheck"]
    disabled = _mutate(compose, ["services", "kafka", "healthcheck"], {"test": ["NONE"]})
    assert healthcheck_problems(disabled) != []


def test_kafka_check_reports_an_unmapped_listener(compose: dict[str, Any]) -> None:
    env = ["services", "kafka", "environment"]
    unmapped = _mutate(compose, [*env, "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"], "PLAINTEXT:PLAINTEXT")
    assert kafka_problems(unmapped) != []
    assert kafka_problems(_mutate(compose, [*env, "KAFKA_AUTO_CREATE_TOPICS_ENABLE"], "true")) != []


def test_the_portal_talks_to_every_service_and_keeps_sessions_in_its_own_database(compose: dict[str, Any]) -> None:
    portal = compose["services"][PORTAL]
    env = environment(portal)
    assert portal["command"] == ["python", "-m", "services.portal"]
    assert "8000:8000" in [str(p) for p in portal["ports"]]
    assert env["BONDGENOOT_ENV"] == "production" and str(env["PORTAL_SECRET_KEY"]).startswith("${PORTAL_SECRET_KEY:?")
    # With the internal secret the services believe the browser address it forwards (docs/security.md).
    assert str(env["BONDGENOOT_INTERNAL_TOKEN"]).startswith("${BONDGENOOT_INTERNAL_TOKEN:?")
    assert urlsplit(str(env["PORTAL_DATABASE_URL"])).path == "/portal"
    for name, port in APP_SERVICES.items():
        assert env[f"BONDGENOOT_{name.upper()}_URL"] == f"http://{name}:{port}"
    assert not any(k.startswith("KAFKA_") for k in env), "the portal never talks to Kafka"
