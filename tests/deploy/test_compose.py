"""``docker-compose.yml``, checked offline (no Docker daemon here): valid against the compose-spec
JSON schema vendored in ``deploy/schemas/``, and our own rules — every long-running service has a
health check (the app's: ``worker-app health`` on its own port), every ``depends_on`` waits on a
condition, secrets are files and never values, the worker groups consume every domain queue once,
RabbitMQ's ``consumer_timeout`` agrees with the settings, and the quick start's snippet makes every
secret file the stack mounts. Each rule is also shown catching a broken copy."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from worker_app.config import (
    SECRET_NAMES,
    SECRET_TOKEN_NAMES,
    SECRET_URL_NAMES,
    ConfigurationError,
    Settings,
    load_settings,
)
from worker_app.policies import DOMAINS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "deploy" / "schemas" / "compose-spec.json"
RABBITMQ_CONF = ROOT / "deploy" / "rabbitmq" / "20-cybervpn.conf"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
FIELDS = Settings.model_fields
#: Variables of third-party images that hold a secret; they must come as ``*_FILE`` too.
OTHER_SECRETS = ("POSTGRES_PASSWORD", "RABBITMQ_DEFAULT_PASS", "GF_SECURITY_ADMIN_PASSWORD", "REDIS_PASSWORD")
#: The app's processes, by their command, and the setting naming their pod-local port.
APP_COMMANDS = {"worker": "metrics_port", "scheduler": "scheduler_metrics_port", "serve": "api_port"}

Doc = dict[str, Any]


def load() -> Doc:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def services(doc: Doc) -> dict[str, Doc]:
    return dict(doc["services"])


def environment(service: Doc) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.partition("=")[::2] for item in raw)
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def command(service: Doc) -> list[str]:
    raw = service.get("command") or []
    return raw.split() if isinstance(raw, str) else [str(part) for part in raw]


def option_values(argv: list[str], *names: str) -> list[str]:
    """Values of a click option given as ``--name=value``, ``--name value`` or ``-Q value``."""
    found: list[str] = []
    for i, arg in enumerate(argv):
        for name in names:
            if arg.startswith(f"{name}="):
                found.append(arg.split("=", 1)[1])
            elif arg == name and i + 1 < len(argv):
                found.append(argv[i + 1])
    return found


def app_process(service: Doc) -> str | None:
    """``worker``, ``scheduler``, ``serve`` or another ``worker-app`` command; None for other images."""
    argv = command(service)
    if argv[:3] == ["python", "-m", "scheduler"]:
        return "scheduler"
    if argv[:1] == ["worker-app"] and len(argv) > 1:
        return argv[1]
    return None


def health_port(service: Doc) -> int:
    """The port the process answers ``/healthz`` on: its command's ``--port``, its environment, or the
    setting's default."""
    process = app_process(service)
    assert process in APP_COMMANDS
    given = option_values(command(service), "--port")
    if given:
        return int(given[-1])
    setting = APP_COMMANDS[process]
    return int(environment(service).get(setting.upper(), FIELDS[setting].default))


def is_one_shot(service: Doc) -> bool:
    return service.get("restart") == "no"


# --- the rules ---------------------------------------------------------------------------------


def schema_problems(doc: Doc) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def healthcheck_problems(doc: Doc) -> list[str]:
    """Every long-running service checks its health; the app's processes with ``worker-app health`` on
    their own port; a one-shot disables the image's check."""
    problems: list[str] = []
    for name, service in services(doc).items():
        check = service.get("healthcheck") or {}
        if is_one_shot(service):
            if check.get("disable") is not True:
                problems.append(f"{name}: a one-shot must disable the image's health check")
            continue
        test = check.get("test")
        if check.get("disable") or not test or test[0] not in ("CMD", "CMD-SHELL"):
            problems.append(f"{name}: no health check")
            continue
        if app_process(service) in APP_COMMANDS:
            wanted = ["CMD", "worker-app", "health", "--port", str(health_port(service))]
            if test != wanted:
                problems.append(f"{name}: health check {test} is not the pod-local {wanted}")
    return problems


def depends_on_problems(doc: Doc) -> list[str]:
    """Every dependency waits on a condition that can be met: ``service_healthy`` of a service with a
    health check, ``service_completed_successfully`` of a one-shot."""
    problems: list[str] = []
    all_services = services(doc)
    for name, service in all_services.items():
        depends = service.get("depends_on")
        if depends is None:
            continue
        if not isinstance(depends, dict):
            problems.append(f"{name}: depends_on must name a condition for each service")
            continue
        for target, rule in depends.items():
            other = all_services.get(target)
            condition = (rule or {}).get("condition")
            if other is None:
                problems.append(f"{name}: depends on unknown service {target}")
            elif condition == "service_completed_successfully" and not is_one_shot(other):
                problems.append(f"{name}: {target} never completes (not a one-shot)")
            elif condition == "service_healthy" and is_one_shot(other):
                problems.append(f"{name}: {target} is a one-shot: wait for service_completed_successfully")
            elif condition not in ("service_healthy", "service_completed_successfully"):
                problems.append(f"{name}: {target} with condition {condition!r}")
            active_without = (
                set(service.get("profiles") or ["*"]) - set(other.get("profiles") or ["*"])
                if other
                else set()
            )
            if (
                other is not None
                and other.get("profiles")
                and active_without
                and (rule or {}).get("required", True)
            ):
                problems.append(f"{name}: {target} is in profiles {other['profiles']}: required: false")
    return problems


def url_has_password(value: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]+@", value) is not None


def secret_problems(doc: Doc) -> list[str]:
    """No secret value in the file: secret settings come as ``<NAME>_FILE`` naming a mounted secret,
    and every secret is a file under ``.secrets/``."""
    problems: list[str] = []
    declared = doc.get("secrets") or {}
    for name, secret in declared.items():
        if set(secret) != {"file"} or not str(secret["file"]).startswith("./.secrets/"):
            problems.append(f"secret {name}: must be a file under ./.secrets/ (never a value in this file)")
    for name, service in services(doc).items():
        mounted = {
            s if isinstance(s, str) else s["source"]: f"/run/secrets/{s}"
            if isinstance(s, str)
            else s.get("target")
            for s in service.get("secrets") or []
        }
        for key, value in environment(service).items():
            if key in SECRET_TOKEN_NAMES or key in OTHER_SECRETS:
                problems.append(f"{name}: {key} inline; give {key}_FILE")
            if url_has_password(value):
                problems.append(f"{name}: {key} holds a password; give {key}_FILE")
            if key in SECRET_URL_NAMES and "${" in value:
                problems.append(f"{name}: {key} from the environment may carry a password; give {key}_FILE")
            if key.endswith("_FILE") and value not in mounted.values():
                problems.append(f"{name}: {key}={value} is not one of its mounted secrets")
        if any(re.search(r"pass(word)?|token|secret", arg, re.I) for arg in command(service)):
            problems.append(f"{name}: a secret on the command line")
        for source in mounted:
            if source not in declared:
                problems.append(f"{name}: secret {source} is not declared")
    return problems


def queue_problems(doc: Doc) -> list[str]:
    """The worker services consume every domain queue exactly once, and a group running long jobs
    keeps queues x prefetch <= threads (docs/design.md#bounded-delays)."""
    problems: list[str] = []
    consumed: list[str] = []
    for name, service in services(doc).items():
        if app_process(service) != "worker":
            continue
        argv = command(service)
        queues = option_values(argv, "--queues", "-Q")
        if not queues:
            problems.append(f"{name}: consumes every queue; name its group's queues")
        consumed += queues
        threads = int((option_values(argv, "--threads", "-t") or [FIELDS["worker_threads"].default])[-1])
        prefetch = int(environment(service).get("dramatiq_queue_prefetch", 0)) or 2 * threads
        if {"bulk", "reports", "cleanup"} & set(queues) and len(queues) * prefetch > threads:
            problems.append(f"{name}: {len(queues)} queues x prefetch {prefetch} > {threads} threads")
    if sorted(consumed) != sorted(DOMAINS):
        problems.append(
            f"the worker groups consume {sorted(consumed)}, not every domain once {sorted(DOMAINS)}"
        )
    return problems


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration):
        total += float(amount) * units[unit]
    return total


def dramatiq_shutdown_timeout_ms() -> int:
    from dramatiq.cli import make_argument_parser

    return int(make_argument_parser().get_default("worker_shutdown_timeout"))


def timing_problems(doc: Doc) -> list[str]:
    """RabbitMQ's consumer_timeout equals every process's RABBITMQ_CONSUMER_TIMEOUT_MS and stays above
    the time limit and the delay hold; a worker is given longer to stop than its messages may run."""
    problems: list[str] = []
    match = re.search(r"^consumer_timeout\s*=\s*(\d+)\s*$", RABBITMQ_CONF.read_text(), re.M)
    broker_ms = int(match[1]) if match else 0
    mounts = services(doc)["rabbitmq"].get("volumes", [])
    if not any(str(m).startswith("./deploy/rabbitmq/20-cybervpn.conf:/etc/rabbitmq/conf.d/") for m in mounts):
        problems.append("rabbitmq: deploy/rabbitmq/20-cybervpn.conf is not mounted in conf.d")
    for name, service in services(doc).items():
        if app_process(service) is None:
            continue
        env = environment(service)
        consumer_ms = int(
            env.get("RABBITMQ_CONSUMER_TIMEOUT_MS", FIELDS["rabbitmq_consumer_timeout_ms"].default)
        )
        limit_ms = int(env.get("TIME_LIMIT_MS", FIELDS["time_limit_ms"].default))
        hold_ms = int(env.get("DELAY_MAX_HOLD_MS", FIELDS["delay_max_hold_ms"].default))
        if consumer_ms != broker_ms:
            problems.append(
                f"{name}: RABBITMQ_CONSUMER_TIMEOUT_MS {consumer_ms} != consumer_timeout {broker_ms}"
            )
        if not limit_ms < consumer_ms or not hold_ms < consumer_ms:
            problems.append(f"{name}: TIME_LIMIT_MS and DELAY_MAX_HOLD_MS must stay below {consumer_ms}")
        if app_process(service) == "worker":
            grace_s = seconds(str(service.get("stop_grace_period", "10s")))
            needed_s = max(limit_ms, dramatiq_shutdown_timeout_ms()) / 1000
            if grace_s <= needed_s:
                problems.append(
                    f"{name}: stop_grace_period {grace_s:.0f}s <= {needed_s:.0f}s a message may still run"
                )
    return problems


def compose_problems(doc: Doc) -> list[str]:
    return (
        schema_problems(doc)
        + healthcheck_problems(doc)
        + depends_on_problems(doc)
        + secret_problems(doc)
        + queue_problems(doc)
        + timing_problems(doc)
    )


# --- the shipped file --------------------------------------------------------------------------


def test_the_compose_file_is_valid_against_the_compose_spec_and_our_rules() -> None:
    assert compose_problems(load()) == []


def test_the_stack_has_every_process_with_two_schedulers_and_the_profiles() -> None:
    all_services = services(load())
    processes = {name: app_process(service) for name, service in all_services.items()}
    assert processes == {
        "rabbitmq": None,
        "postgres": None,
        "redis": None,
        "migrate": "db",
        "worker": "worker",
        "worker-long": "worker",
        "scheduler": "scheduler",
        "api": "serve",
        "sandbox": "sandbox",
        "prometheus": None,
        "grafana": None,
    }
    assert command(all_services["migrate"]) == ["worker-app", "db", "upgrade"]
    assert all_services["scheduler"]["deploy"]["replicas"] == 2
    assert all_services["sandbox"]["profiles"] == ["dev"]
    assert all_services["prometheus"]["profiles"] == all_services["grafana"]["profiles"] == ["observability"]
    assert "management" in all_services["rabbitmq"]["image"]


def test_every_mounted_host_path_exists_in_the_repository() -> None:
    for name, service in services(load()).items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"


def test_prometheus_scrapes_only_services_of_the_stack_on_their_health_ports() -> None:
    all_services = services(load())
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                assert host in all_services, f"{job['job_name']} scrapes {host}, not a service of the stack"
                assert int(port) == health_port(all_services[host])


def test_the_quick_start_snippet_makes_every_secret_file_the_stack_mounts(tmp_path: Path) -> None:
    make_secrets(tmp_path)
    for name, secret in load()["secrets"].items():
        made = tmp_path / secret["file"]
        assert made.is_file() and made.read_text().strip(), f"the snippet does not make {name}"
        assert made.stat().st_mode & 0o044 == 0o044, f"{name}: the containers' users cannot read it"
    files = {name: (tmp_path / s["file"]).read_text() for name, s in load()["secrets"].items()}
    password = files["postgres_password"]
    assert files["database_url"] == f"postgresql+psycopg://cybervpn:{password}@postgres:5432/cybervpn"
    rabbit = re.fullmatch(r"amqp://cybervpn:(\S+)@rabbitmq:5672/cybervpn", files["rabbitmq_url"])
    assert rabbit and f"default_pass = {rabbit[1]}\n" in files["rabbitmq_credentials"]
    assert "default_user = cybervpn" in files["rabbitmq_credentials"]
    first = {name: (tmp_path / s["file"]).read_text() for name, s in load()["secrets"].items()}
    make_secrets(tmp_path)
    again = {name: (tmp_path / s["file"]).read_text() for name, s in load()["secrets"].items()}
    assert again == first, "running the snippet again must keep the passwords (the volumes hold them)"


def interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` / ``${NAME}`` with nothing set in the environment."""
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m[1] or "", value)


def make_secrets(directory: Path) -> None:
    snippet = re.search(r"<!-- compose-secrets -->\s*```bash\n(.*?)```", DEPLOY_DOC.read_text(), re.S)
    assert snippet, "docs/deploy.md has the secrets snippet after <!-- compose-secrets -->"
    subprocess.run(["bash", "-euo", "pipefail", "-c", snippet[1]], cwd=directory, check=True, timeout=60)


def test_every_setting_of_the_app_services_is_one_the_app_reads_and_accepts(tmp_path: Path) -> None:
    make_secrets(tmp_path)
    doc = load()
    known = {name.upper() for name in FIELDS} | {f"{name}_FILE" for name in SECRET_NAMES}
    for name, service in services(doc).items():
        if app_process(service) is None:
            continue
        env = {key: interpolate(value) for key, value in environment(service).items()}
        unknown = {key for key in env if key not in known and not key.startswith("dramatiq_")}
        assert not unknown, f"{name}: {unknown} are not settings of the app (docs/configuration.md)"
        for key, value in env.items():
            if key.endswith("_FILE"):
                (secret,) = [s for s in service["secrets"] if f"/run/secrets/{s}" == value]
                env[key] = str(tmp_path / doc["secrets"][secret]["file"])
        try:
            load_settings(env)
        except ConfigurationError as e:
            pytest.fail(f"{name}: {e}")


# --- the rules catch a broken file -------------------------------------------------------------


def no_healthcheck(doc: Doc) -> None:
    del doc["services"]["worker-long"]["healthcheck"]


def health_on_another_port(doc: Doc) -> None:
    doc["services"]["scheduler"]["healthcheck"]["test"] = ["CMD", "worker-app", "health", "--port", "9090"]


def ping_as_health_check(doc: Doc) -> None:
    doc["services"]["worker"]["healthcheck"]["test"] = ["CMD", "worker-app", "ping"]


def depends_on_as_a_list(doc: Doc) -> None:
    doc["services"]["api"]["depends_on"] = ["postgres", "migrate"]


def depends_on_started(doc: Doc) -> None:
    doc["services"]["api"]["depends_on"]["postgres"] = {"condition": "service_started"}


def depends_on_a_one_shot_being_healthy(doc: Doc) -> None:
    doc["services"]["api"]["depends_on"]["migrate"] = {"condition": "service_healthy"}


def depends_on_a_profiled_service(doc: Doc) -> None:
    doc["services"]["api"]["depends_on"]["sandbox"] = {"condition": "service_healthy"}


def inline_token(doc: Doc) -> None:
    doc["services"]["api"]["environment"]["API_TOKEN"] = "s3cret"


def inline_url(doc: Doc) -> None:
    doc["services"]["worker"]["environment"]["RABBITMQ_URL"] = "amqp://cybervpn:pw@rabbitmq:5672/cybervpn"


def inline_postgres_password(doc: Doc) -> None:
    doc["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "pw"


def secret_from_the_environment(doc: Doc) -> None:
    doc["secrets"]["api_token"] = {"environment": "API_TOKEN"}


def file_without_its_secret(doc: Doc) -> None:
    doc["services"]["worker"]["environment"]["SENTRY_DSN_FILE"] = "/run/secrets/sentry_dsn"


def queue_in_two_groups(doc: Doc) -> None:
    doc["services"]["worker-long"]["command"].append("--queues=payments")


def queue_in_no_group(doc: Doc) -> None:
    doc["services"]["worker-long"]["command"].remove("--queues=cleanup")


def default_prefetch(doc: Doc) -> None:
    del doc["services"]["worker-long"]["environment"]["dramatiq_queue_prefetch"]


def short_grace(doc: Doc) -> None:
    doc["services"]["worker"]["stop_grace_period"] = "10s"


def consumer_timeout_mismatch(doc: Doc) -> None:
    doc["services"]["scheduler"]["environment"]["RABBITMQ_CONSUMER_TIMEOUT_MS"] = "3600000"


def unknown_key(doc: Doc) -> None:
    doc["services"]["worker"]["healthcheck"]["every"] = "30s"


MUTATIONS: list[tuple[Callable[[Doc], None], str]] = [
    (no_healthcheck, "worker-long: no health check"),
    (health_on_another_port, "scheduler: health check"),
    (ping_as_health_check, "worker: health check"),
    (depends_on_as_a_list, "api: depends_on must name a condition"),
    (depends_on_started, "api: postgres with condition 'service_started'"),
    (depends_on_a_one_shot_being_healthy, "api: migrate is a one-shot"),
    (depends_on_a_profiled_service, "api: sandbox is in profiles"),
    (inline_token, "api: API_TOKEN inline"),
    (inline_url, "worker: RABBITMQ_URL holds a password"),
    (inline_postgres_password, "postgres: POSTGRES_PASSWORD inline"),
    (secret_from_the_environment, "secret api_token: must be a file"),
    (file_without_its_secret, "worker: SENTRY_DSN_FILE"),
    (queue_in_two_groups, "not every domain once"),
    (queue_in_no_group, "not every domain once"),
    (default_prefetch, "worker-long: 3 queues x prefetch 8 > 4"),
    (short_grace, "worker: stop_grace_period 10s"),
    (consumer_timeout_mismatch, "scheduler: RABBITMQ_CONSUMER"),
    (unknown_key, "services/worker/healthcheck"),
]


@pytest.mark.parametrize(("change", "problem"), MUTATIONS, ids=[m[0].__name__ for m in MUTATIONS])
def test_a_broken_compose_file_is_caught(change: Callable[[Doc], None], problem: str) -> None:
    doc = json.loads(json.dumps(load()))  # YAML aliases share objects: a deep copy would keep them shared
    assert compose_problems(doc) == []
    change(doc)
    found = compose_problems(doc)
    assert any(problem in p for p in found), found
