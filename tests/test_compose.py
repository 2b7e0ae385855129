"""docker-compose.yml, its Dockerfile, Prometheus and Grafana files agree with the local stack.

Pure file checks: no Docker engine is needed (none runs here). The local stack
(stack/config.py, stack/kafka.py, stack/prometheus.py) and the pipeline's option defaults
(pipeline/options.py) are the reference; compose must publish the same ports on 127.0.0.1,
use the same local-only credentials and topics, and pin its images to versions.env.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from urllib.parse import urlsplit

import pytest
import yaml

from stack import config
from stack.kafka import TOPICS
from stack.prometheus import scrape_targets

REPO = config.REPO_ROOT
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
PROMETHEUS_FILE = REPO / "docker" / "prometheus.yml"
GRAFANA_PROVISIONING = REPO / "docker" / "grafana" / "provisioning"
DASHBOARD_FILE = REPO / "monitoring" / "grafana" / "riskpipe-dashboard.json"

# Every process the local stack runs (or will: flink, mongo, validator, worker pool) and the
# compose service(s) playing its part. Names a local service may be registered under.
COUNTERPARTS = {
    "kafka": ("kafka",),
    "postgres": ("postgres",),
    "mongo": ("mongo",),
    "ferretdb": ("mongo",),
    "s3": ("minio",),
    "minio": ("minio",),
    "flink": ("jobmanager", "taskmanager", "taskmanager2"),
    "flink-jobmanager": ("jobmanager",),
    "jobmanager": ("jobmanager",),
    "flink-taskmanager": ("taskmanager",),
    "flink-taskmanager2": ("taskmanager2",),
    "taskmanager": ("taskmanager",),
    "prometheus": ("prometheus",),
    "validator": ("validator",),
    "worker-pool": ("beam-worker-pool",),
    "workerpool": ("beam-worker-pool",),
    "beam-worker-pool": ("beam-worker-pool",),
    # Compose restarts containers itself (`restart: unless-stopped`, checked below).
    "supervisor": (),
}
REQUIRED = (
    "kafka",
    "postgres",
    "mongo",
    "s3",
    "flink-jobmanager",
    "flink-taskmanager",
    "prometheus",
    "validator",
    "worker-pool",
)

# config.DEFAULT_PORTS key -> (compose service, port inside the container). The host side of
# the mapping must be the local stack's default port.
PUBLISHED = {
    "KAFKA": ("kafka", 9092),
    "PG": ("postgres", 5432),
    "MONGO": ("mongo", 27017),
    "S3": ("minio", 9000),
    "FLINK": ("jobmanager", 8081),
    "FLINK_JM_METRICS": ("jobmanager", 9249),
    "FLINK_TM_METRICS": ("taskmanager", 9249),
    "FLINK_TM2_METRICS": ("taskmanager2", 9249),
    "PROMETHEUS": ("prometheus", 9090),
    "VALIDATOR": ("validator", 8000),
}
# Ports of the local stack that compose keeps inside its network: the KRaft controller, the
# JobManager's RPC and blob server (TaskManager only), and the worker pool (the TaskManager's
# sidecar, reached on its loopback).
INTERNAL_ONLY = {"KAFKA_CONTROLLER", "FLINK_RPC", "FLINK_BLOB", "WORKER_POOL"}

LOCAL_ENV = (
    "RISKPIPE_KAFKA_BOOTSTRAP",
    "RISKPIPE_PG_DSN",
    "RISKPIPE_MONGO_URI",
    "RISKPIPE_VALIDATOR_URL",
    "RISKPIPE_S3_BUCKET",
    "RISKPIPE_PG_USER",
    "RISKPIPE_PG_PASSWORD",
    "RISKPIPE_PG_DB",
    "RISKPIPE_S3_ACCESS_KEY",
    "RISKPIPE_S3_SECRET_KEY",
    "RISKPIPE_S3_BUCKET",
    "RISKPIPE_VALIDATOR_API_KEY",
)

_VARIABLE = re.compile(
    r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)"
)


def render(text: str, variables: dict[str, str]) -> str:
    """Compose interpolation: ``${VAR}``, ``${VAR:-default}``, ``$VAR``; ``$$`` is a ``$``."""
    pieces = text.split("$$")

    def substitute(match: re.Match) -> str:
        name = match.group(1) or match.group(4)
        if name in variables:
            return variables[name]
        if match.group(2) and match.group(2).lstrip(":") == "-":
            return match.group(3)
        raise KeyError(f"${{{name}}} is not set in versions.env and has no default")

    return "$".join(_VARIABLE.sub(substitute, piece) for piece in pieces)


@pytest.fixture(autouse=True)
def local_defaults(monkeypatch):
    """The defaults of the local stack and of the pipeline, whatever this shell exports."""
    for name in LOCAL_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def raw_compose() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(raw_compose) -> dict:
    return yaml.safe_load(render(raw_compose, config.versions()))


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def command(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def flags(service: dict) -> dict[str, str]:
    """``--name=value`` arguments of a command (``--name`` alone maps to "")."""
    out = {}
    for arg in command(service):
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            out[name] = value
    return out


def submitted_flags(submitter: dict, monkeypatch) -> dict[str, str]:
    """The flags the submitter's ``pipeline.main`` runs with: its command plus the runner
    defaults (``pipeline.runners.flags``) under the container's environment."""
    import importlib

    from pipeline.runners import flags as runner_flags

    for key, value in environment(submitter).items():
        monkeypatch.setenv(key, value)
    importlib.reload(runner_flags)  # CHECKPOINT_INTERVAL_MS is read at import
    try:
        argv = runner_flags.with_runner_defaults(command(submitter)[3:], "transaction-attribution")
    finally:
        monkeypatch.undo()
        importlib.reload(runner_flags)
    return flags({"command": argv})


def published(service: dict) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each short-syntax or long-syntax mapping."""
    rows = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            rows.append(
                (port.get("host_ip", ""), int(port["published"]), int(port["target"]))
            )
            continue
        parts = str(port).split("/")[0].split(":")
        if len(parts) != 3:
            rows.append(("", int(parts[0]), int(parts[-1])))
        else:
            rows.append((parts[0], int(parts[1]), int(parts[2])))
    return rows


def option(options, *names: str) -> str:
    """The first of ``names`` that ``options`` has (flags get renamed; the values must not)."""
    for name in names:
        if hasattr(options, name):
            return getattr(options, name)
    raise AttributeError(f"{type(options).__name__} has none of {names}")


def is_job(service: dict) -> bool:
    """A one-shot container (topic/bucket init, submitter, simulator) rather than a server."""
    return str(service.get("restart", "no")) == "no"


# --- the file ------------------------------------------------------------------------------


def test_compose_parses_and_renders_from_versions_env(raw_compose, compose):
    assert isinstance(compose.get("services"), dict) and compose["services"]
    used = set(
        re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", raw_compose.replace("$$", ""))
    )
    assert used, "compose should take its versions from versions.env"
    missing = used - config.versions().keys()
    assert not missing, (
        f"compose uses variables versions.env does not define: {sorted(missing)}"
    )


def test_every_local_service_has_a_compose_counterpart(services):
    from stack.services import SERVICES

    for name in set(REQUIRED) | set(SERVICES):
        assert name in COUNTERPARTS, (
            f"local service {name!r} has no known compose counterpart"
        )
        for counterpart in COUNTERPARTS[name]:
            assert counterpart in services, (
                f"compose lacks {counterpart!r} (local {name!r})"
            )


def test_what_the_supervisor_restarts_compose_restarts(services):
    from stack.services import SERVICES

    supervised = {
        unit.unit: unit for service in SERVICES.values() for unit in service.supervised_units()
    }
    assert set(supervised) == {"workerpool", "validator", "flink-taskmanager",
                               "flink-taskmanager2"}
    for counterpart in ("beam-worker-pool", "beam-worker-pool2", "validator", "taskmanager",
                        "taskmanager2"):
        assert services[counterpart]["restart"] == "unless-stopped", counterpart


def test_local_services_publish_their_port_in_compose(services):
    from stack.services import SERVICES

    for name, service in SERVICES.items():
        if not service.port_name or service.port_name in INTERNAL_ONLY:
            continue
        want = config.DEFAULT_PORTS[service.port_name]
        hosts = {
            host_port
            for counterpart in COUNTERPARTS[name]
            for _, host_port, _ in published(services[counterpart])
        }
        assert want in hosts, f"{name}: compose does not publish port {want}"


def test_published_ports_match_the_local_stack(services):
    assert set(config.DEFAULT_PORTS) <= set(PUBLISHED) | INTERNAL_ONLY, (
        "a new local-stack port: map it in PUBLISHED or mark it INTERNAL_ONLY"
    )
    for key, (name, container_port) in PUBLISHED.items():
        mappings = {(host, target) for _, host, target in published(services[name])}
        assert (config.DEFAULT_PORTS[key], container_port) in mappings, (
            f"{name} should publish {container_port} as {config.DEFAULT_PORTS[key]} ({key})"
        )


def test_ports_are_published_on_loopback_only(services):
    for name, service in services.items():
        for host_ip, host_port, _ in published(service):
            assert host_ip == config.HOST, (
                f"{name} publishes {host_port} on {host_ip or 'all'}"
            )
    hosts = [host for service in services.values() for _, host, _ in published(service)]
    assert len(hosts) == len(set(hosts)), "two services publish the same host port"


# --- images --------------------------------------------------------------------------------


def test_images_are_pinned_to_versions_env(services):
    versions = config.versions()
    assert services["kafka"]["image"] == f"apache/kafka:{versions['KAFKA_VERSION']}"
    assert services["kafka-init"]["image"] == services["kafka"]["image"]
    flink = f"flink:{versions['FLINK_VERSION']}-scala_2.12-java17"
    assert services["jobmanager"]["image"] == services["taskmanager"]["image"] == flink
    assert services["postgres"]["image"] == f"postgres:{versions['POSTGRES_MAJOR']}"
    assert services["mongo"]["image"] == "mongo:7"
    assert re.fullmatch(r"minio/minio:RELEASE\.[0-9T-]+Z", services["minio"]["image"])
    assert re.fullmatch(r"minio/mc:RELEASE\.[0-9T-]+Z", services["minio-init"]["image"])
    assert re.fullmatch(
        r"prom/prometheus:v\d+\.\d+\.\d+", services["prometheus"]["image"]
    )
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", services["grafana"]["image"])
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), (
            f"{name}: unpinned image {image}"
        )


def test_built_services_share_one_image_from_the_dockerfile(services):
    built = {name: service for name, service in services.items() if "build" in service}
    assert {"beam-worker-pool", "validator", "simulator", "submitter"} <= set(built)
    assert len({service["image"] for service in built.values()}) == 1
    for name, service in built.items():
        build = service["build"]
        assert (
            REPO / build["context"] / build["dockerfile"]
        ).resolve() == DOCKERFILE, name
        assert str(build["args"]["PYTHON_VERSION"]) == config.version("PYTHON_VERSION")


def test_dockerfile_builds_the_job_server_and_runs_the_worker_pool(services, monkeypatch):
    assert DOCKERFILE.is_file()
    text = DOCKERFILE.read_text()
    assert "FROM maven:3.9-eclipse-temurin-17 AS jobserver" in text
    assert "mvn -q -B package -f stack/jobserver/pom.xml" in text
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-slim$", text, re.MULTILINE)
    assert "pip install" in text
    assert "pipeline.runners.worker_pool" in text
    assert "--service_port=50000" in text
    jar = submitted_flags(services["submitter"], monkeypatch)["flink_job_server_jar"]
    assert re.search(
        rf"^COPY --from=jobserver \S+ {re.escape(jar)}$", text, re.MULTILINE
    ), "the submitter's --flink_job_server_jar must be the jar the Dockerfile copies in"


# --- wiring --------------------------------------------------------------------------------


def test_depends_on_targets_exist_with_valid_conditions(services):
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), (
            f"{name}: depends_on needs conditions, not a list"
        )
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target!r}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert is_job(services[target]), f"{target} is not a one-shot job"
            else:
                pytest.fail(f"{name} -> {target}: condition {condition!r}")


def test_long_running_services_have_healthchecks(services):
    servers = [name for name, service in services.items() if not is_job(service)]
    assert {
        "kafka",
        "postgres",
        "mongo",
        "minio",
        "jobmanager",
        "taskmanager",
        "beam-worker-pool",
        "validator",
        "prometheus",
        "grafana",
    } <= set(servers)
    for name in servers:
        check = services[name].get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), (
            f"{name} has no healthcheck"
        )


def test_nothing_waits_with_sleep(services):
    for name, service in services.items():
        for key in ("command", "entrypoint", "healthcheck"):
            text = json.dumps(service.get(key) or "")
            assert not re.search(r"\bsleep\b", text), (
                f"{name}: waits with sleep in {key}"
            )


def test_volumes_are_named_or_existing_paths(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_postgres_credentials_and_migrations_match_the_local_stack(services):
    from pipeline.options import PostgresOptions

    env = environment(services["postgres"])
    assert env["POSTGRES_USER"] == config.pg_user()
    assert env["POSTGRES_PASSWORD"] == config.pg_password()
    assert env["POSTGRES_DB"] == config.pg_database()
    assert (
        "./migrations:/docker-entrypoint-initdb.d:ro" in services["postgres"]["volumes"]
    )

    local = urlsplit(PostgresOptions([]).postgres_dsn)
    assert (local.username, local.password, local.path) == (
        config.pg_user(),
        config.pg_password(),
        f"/{config.pg_database()}",
    )
    assert local.port == config.DEFAULT_PORTS["PG"]
    for name in ("submitter", "simulator", "beam-worker-pool"):
        dsn = urlsplit(environment(services[name])["RISKPIPE_PG_DSN"])
        assert (dsn.username, dsn.password, dsn.path) == (
            local.username,
            local.password,
            local.path,
        )
        assert (dsn.hostname, dsn.port) == ("postgres", 5432)


def test_s3_keys_and_bucket_match_the_local_stack(services, monkeypatch):
    from pipeline import local_defaults, options

    minio = environment(services["minio"])
    assert (
        minio["MINIO_ROOT_USER"]
        == config.s3_access_key()
        == local_defaults.LOCAL_S3_ACCESS_KEY
    )
    assert (
        minio["MINIO_ROOT_PASSWORD"]
        == config.s3_secret_key()
        == local_defaults.LOCAL_S3_SECRET_KEY
    )
    bucket = options.ResultsOptions([]).s3_bucket
    assert bucket == config.s3_bucket()
    assert f"local/{bucket}" in command(services["minio-init"])
    alias = urlsplit(environment(services["minio-init"])["MC_HOST_local"])
    assert (alias.username, alias.password, alias.hostname, alias.port) == (
        config.s3_access_key(),
        config.s3_secret_key(),
        "minio",
        9000,
    )
    submitter = submitted_flags(services["submitter"], monkeypatch)
    assert submitter["s3_endpoint_url"] == "http://minio:9000"
    assert submitter["s3_access_key_id"] == config.s3_access_key()
    assert submitter["s3_secret_access_key"] == config.s3_secret_key()
    for name in ("submitter", "beam-worker-pool"):
        env = environment(services[name])
        assert env["AWS_ACCESS_KEY_ID"] == config.s3_access_key()
        assert env["AWS_SECRET_ACCESS_KEY"] == config.s3_secret_key()
        assert env["RISKPIPE_S3_BUCKET"] == bucket


def test_topics_match_the_pipeline_and_the_local_stack(services):
    from pipeline.options import KafkaOptions

    spec = environment(services["kafka-init"])["TOPICS"].split()
    created = {
        name: int(partitions) for name, partitions in (s.split(":") for s in spec)
    }
    assert created == TOPICS
    kafka = KafkaOptions([])
    for topic in (
        kafka.accounts_topic,
        kafka.transactions_topic,
        kafka.dead_letter_topic,
        kafka.fraud_results_topic,
        kafka.users_topic,
    ):
        assert topic in created, (
            f"pipeline topic {topic!r} is not created by kafka-init"
        )
    assert created["transactions"] == created["accounts"] == 4


def test_kafka_init_compacts_the_sink_topics(services, tmp_path):
    """kafka-init's script, run by sh against stub Kafka tools that log their arguments:
    the sinks' topics are created compacted and set compacted if they existed before."""
    from stack.kafka import SINK_TOPICS

    init = services["kafka-init"]
    env = environment(init)
    assert set(env["COMPACTED_TOPICS"].split()) == set(SINK_TOPICS)
    bin_dir = tmp_path / "opt" / "kafka" / "bin"
    bin_dir.mkdir(parents=True)
    calls = tmp_path / "calls.log"
    for tool in ("kafka-topics.sh", "kafka-configs.sh"):
        stub = bin_dir / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        stub.chmod(0o755)
    script = init["command"][0].replace("/opt/kafka/bin/", f"{bin_dir}/")
    done = subprocess.run([*init["entrypoint"][:2], script], env={**env, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    logged = calls.read_text().splitlines()
    created = {}
    for line in logged:
        args = line.split()
        if "--create" in args:
            created[args[args.index("--topic") + 1]] = " ".join(args)
    assert set(created) == set(TOPICS)
    for name, line in created.items():
        compacted = "--config cleanup.policy=compact" in line
        assert compacted == (name in SINK_TOPICS), line
    altered = {
        line.split("--entity-name ")[1].split()[0]
        for line in logged
        if line.startswith("kafka-configs.sh") and "--add-config cleanup.policy=compact" in line
    }
    assert altered == set(SINK_TOPICS)


def test_pipeline_endpoints_point_at_compose_hostnames(services):
    from pipeline.options import KafkaOptions, MongoOptions, ValidatorOptions

    local = {
        "RISKPIPE_KAFKA_BOOTSTRAP": option(
            KafkaOptions([]), "kafka_bootstrap", "bootstrap_servers"
        ),
        "RISKPIPE_MONGO_URI": MongoOptions([]).mongo_uri,
        "RISKPIPE_VALIDATOR_URL": ValidatorOptions([]).validator_url,
    }
    assert local["RISKPIPE_KAFKA_BOOTSTRAP"].endswith(
        f":{config.DEFAULT_PORTS['KAFKA']}"
    )
    assert urlsplit(local["RISKPIPE_MONGO_URI"]).port == config.DEFAULT_PORTS["MONGO"]
    assert (
        urlsplit(local["RISKPIPE_VALIDATOR_URL"]).port
        == config.DEFAULT_PORTS["VALIDATOR"]
    )

    advertised = environment(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    for name in ("submitter", "simulator", "beam-worker-pool", "validator"):
        env = environment(services[name])
        assert f"//{env['RISKPIPE_KAFKA_BOOTSTRAP']}" in advertised
        assert urlsplit(env["RISKPIPE_MONGO_URI"]).hostname == "mongo"
        assert urlsplit(env["RISKPIPE_VALIDATOR_URL"]).netloc == "validator:8000"
    assert f"EXTERNAL://{local['RISKPIPE_KAFKA_BOOTSTRAP']}" in advertised


def test_validator_and_submitter_share_the_local_key(services):
    from pipeline.options import ValidatorOptions

    key = config.validator_api_key()
    assert key and key == ValidatorOptions([]).validator_api_key
    for name in ("validator", "submitter"):
        assert environment(services[name])["RISKPIPE_VALIDATOR_API_KEY"] == key, name
    for name in ("simulator", "beam-worker-pool"):  # the key travels inside the job
        assert "RISKPIPE_VALIDATOR_API_KEY" not in environment(services[name]), name


def test_submitter_runs_the_job_on_the_flink_cluster(services, monkeypatch):
    submitter = services["submitter"]
    assert command(submitter)[:3] == ["python", "-m", "pipeline.main"]
    args = submitted_flags(submitter, monkeypatch)
    assert int(args["checkpointing_interval"]) == 30_000
    assert args["runner"] == "FlinkRunner"
    assert args["flink_master"] == "jobmanager:8081"
    assert args["environment_type"] == "EXTERNAL"
    assert "flink_submit_uber_jar" in args and "streaming" in args
    assert "finish_bundle_before_checkpointing" in args  # else a job may never start reading
    # The worker pool is the TaskManager's sidecar, reached on its loopback (see compose).
    assert args["environment_config"] == "localhost:50000"
    assert services["beam-worker-pool"]["network_mode"] == "service:taskmanager"
    assert "--service_port=50000" in command(services["beam-worker-pool"])
    assert command(services["validator"])[:5] == [
        "python",
        "-m",
        "validator",
        "--host",
        "0.0.0.0",
    ]
    assert command(services["simulator"])[:5] == [
        "python",
        "-m",
        "simulator",
        "--tps",
        "200",
    ]


def test_flink_reports_to_prometheus_and_checkpoints(services):
    for name in ("jobmanager", "taskmanager"):
        props = {}
        for line in environment(services[name])["FLINK_PROPERTIES"].splitlines():
            if line.strip():
                key, _, value = line.partition(":")
                props[key.strip()] = value.strip()
        assert props["metrics.reporter.prom.factory.class"].endswith(
            "PrometheusReporterFactory"
        )
        assert props["metrics.reporter.prom.port"] == "9249"
        assert props["execution.checkpointing.interval"]
        assert props["restart-strategy.type"]
        assert props["jobmanager.rpc.address"] == "jobmanager"
        if props["state.checkpoints.dir"].startswith("s3://"):
            plugins = environment(services[name])["ENABLE_BUILT_IN_PLUGINS"]
            assert (
                plugins == f"flink-s3-fs-presto-{config.version('FLINK_VERSION')}.jar"
            )
            assert props["s3.access-key"] == config.s3_access_key()
            assert props["s3.secret-key"] == config.s3_secret_key()


# --- monitoring ----------------------------------------------------------------------------


def test_prometheus_scrapes_what_the_local_stack_scrapes(services):
    prometheus = yaml.safe_load(PROMETHEUS_FILE.read_text())
    jobs = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in prometheus["scrape_configs"]
    }
    assert set(jobs) == set(scrape_targets())
    assert jobs == {
        "flink-jobmanager": ["jobmanager:9249"],
        "flink-taskmanager": ["taskmanager:9249"],
        "flink-taskmanager2": ["taskmanager2:9249"],
        "validator": ["validator:8000"],
    }
    assert (
        "./docker/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
        in (services["prometheus"]["volumes"])
    )


def test_grafana_provisions_the_datasource_and_the_dashboard(services):
    datasources = yaml.safe_load(
        (GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = datasources["datasources"]
    assert (source["uid"], source["type"], source["url"]) == (
        "prometheus",
        "prometheus",
        "http://prometheus:9090",
    )
    providers = yaml.safe_load(
        (GRAFANA_PROVISIONING / "dashboards" / "riskpipe.yml").read_text()
    )
    path = providers["providers"][0]["options"]["path"]
    mounts = services["grafana"]["volumes"]
    assert f"./monitoring/grafana:{path}:ro" in mounts
    assert "./docker/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    home = environment(services["grafana"])["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/{DASHBOARD_FILE.name}"


def test_dashboard_parses_and_every_panel_has_a_query():
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    assert dashboard["uid"] == "riskpipe" and 36 <= dashboard["schemaVersion"] <= 41
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    exprs = []
    for panel in panels:
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]
        targets = panel.get("targets") or []
        assert targets and all(t.get("expr", "").strip() for t in targets), panel[
            "title"
        ]
        assert all(t["datasource"]["uid"] == "prometheus" for t in targets), panel[
            "title"
        ]
        exprs += [t["expr"] for t in targets]
    text = "\n".join(exprs)
    for needed in (
        "flink_taskmanager_job_task_operator_riskpipe_kafka_records_read",
        "flink_taskmanager_job_task_operator_riskpipe_dead_lettered",
        "flink_taskmanager_job_task_operator_riskpipe_postgres_rows_written",
        "flink_taskmanager_job_task_operator_riskpipe_mongo_rows_written",
        "flink_taskmanager_job_task_operator_riskpipe_s3_records_written",
        "flink_taskmanager_job_task_operator_riskpipe_validator_failures",
        "flink_jobmanager_job_lastCheckpointDuration",
        "flink_taskmanager_Status_JVM_Memory_Heap_Used",
        "riskpipe_validator_requests_total",
    ):
        assert needed in text, f"no panel queries {needed}"
    titles = {panel["title"] for panel in panels}
    assert {
        "Throughput per stage",
        "Consumer lag",
        "Fraud rate",
        "Dead letters",
        "Sink rows written",
        "Checkpoints",
        "JVM heap used",
    } <= titles
