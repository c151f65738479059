"""``k8s/``, checked offline (no cluster, no kustomize binary here): the base and both overlays are
rendered by a small kustomize renderer below, then every object is validated — core kinds with
kubernetes-validate in strict mode (unknown fields are errors) for the oldest and newest Kubernetes
we target, KEDA's ScaledObject and TriggerAuthentication and the Prometheus operator's ServiceMonitor
against their CRD schemas vendored in ``deploy/schemas/`` (unknown fields refused as well) — and
held to our rules: probes on each process's pod-local port, a locked-down securityContext with
writable emptyDirs, resources from the measured figures, a grace period longer than a message may
run, KEDA on every queue a group consumes, PodDisruptionBudgets, NetworkPolicy, ServiceMonitor, and
a ConfigMap the app's own settings accept. Each rule is also shown catching a broken manifest.

The renderer implements exactly the kustomize features the manifests use, and refuses any other:
``resources`` (files and directories), ``namespace``, ``images``, ``configMapGenerator`` (``envs``,
``literals``, ``behavior: merge``, ``options.labels``; the name hash is kustomize's own algorithm,
checked against kustomize's test vectors) and ``patches`` given by ``path`` holding one strategic
merge patch of a named object that sets or deletes (``null``) map fields. A patch holding a list is
refused: list merging is where strategic merge differs by field, and this renderer does not model it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from worker_app.config import SECRET_NAMES, ConfigurationError, Settings, load_settings
from worker_app.policies import DOMAINS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
SCHEMAS = ROOT / "deploy" / "schemas"
RABBITMQ_CONF = ROOT / "deploy" / "rabbitmq" / "20-cybervpn.conf"
SECRET_EXAMPLE = K8S / "secret.example.yaml"
TARGETS = (K8S / "base", K8S / "overlays" / "dev", K8S / "overlays" / "prod")
#: The oldest and the newest Kubernetes the manifests are validated against.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version() + ".0")
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobject_v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_triggerauthentication_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitor_v1.json",
}
APP = "cybervpn-task-worker"
#: Each process's pod-local port, by the setting that names it.
PROCESS_PORT_SETTING = {"worker": "METRICS_PORT", "scheduler": "SCHEDULER_METRICS_PORT", "serve": "API_PORT"}
#: Measured memory, MiB (docs/deploy.md#sizing): idle, and the peak of the heaviest known job.
#: worker-fast: PSS of `worker-app worker -p 2 -t 8` idle (main 83, resource tracker 7, two worker
#: processes 85 each, metrics 83) + 19 per worker process in a full panel scan (bench.subscriptions);
#: worker-long: the same processes with one worker process, + 19 (a scan) + 4 (bench.export);
#: scheduler: bench.scheduler's maximum; api: `worker-app serve` idle.
MEASURED_MIB = {"worker-fast": (342, 380), "worker-long": (258, 281), "scheduler": (79, 79), "api": (91, 91)}
#: ANOMALY_WORKER_MEMORY_PCT's default: the peak must stay under the memory warning.
MEMORY_WARNING = 0.80
TELEGRAM_GLOBAL_RATE_PER_S = 30.0
LONG_QUEUES = {"bulk", "reports", "cleanup"}
#: Variables read by the app's libraries rather than its settings (boto3's credentials for S3 exports).
EXTERNAL_SETTINGS = {"AWS_SHARED_CREDENTIALS_FILE"}

Doc = dict[str, Any]


class Unsupported(Exception):
    """A kustomize feature this renderer does not implement."""


# --- the renderer -------------------------------------------------------------------------------

KUSTOMIZATION_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "images",
    "configMapGenerator",
    "patches",
}
#: Kinds without a namespace (kustomize's namespace transformer leaves them alone).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
HASHED = "__kustomize_hash__"  # marks a generated ConfigMap until the final build names it


def load_documents(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def identity(doc: Doc) -> tuple[str, str, str]:
    return doc["apiVersion"], doc["kind"], doc["metadata"]["name"]


def go_json(value: Any) -> str:
    """``encoding/json.Marshal``: sorted keys, no spaces, ``<``, ``>``, ``&`` escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


def kustomize_hash(config_map: Doc) -> str:
    """kustomize's ConfigMap name suffix (api/hasher/hasher.go): the first ten hex digits of the
    SHA-256 of the JSON of kind, name and data, with 0, 1, 3, a, e swapped for g, h, k, m, t."""
    encoded: dict[str, Any] = {
        "kind": "ConfigMap",
        "name": config_map.get("metadata", {}).get("name", ""),
        "data": config_map.get("data", ""),
    }
    if config_map.get("binaryData"):
        encoded["binaryData"] = config_map["binaryData"]
    digest = hashlib.sha256(go_json(encoded).encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def env_file(path: Path) -> dict[str, str]:
    data: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "=" not in line:
            raise Unsupported(f"{path}: {line!r}: a key taken from the environment")
        key, _, value = line.partition("=")
        data[key.strip()] = value
    return data


def literal(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or value[:1] in ("'", '"'):
        raise Unsupported(f"literal {text!r}: quoted or without a value")
    return key, value


def generate(directory: Path, generator: Doc, resources: list[Doc]) -> None:
    unknown = set(generator) - {"name", "envs", "literals", "behavior", "options"}
    if unknown or set(generator.get("options", {})) - {"labels"}:
        raise Unsupported(
            f"configMapGenerator {generator['name']}: {sorted(unknown)} {generator.get('options')}"
        )
    data: dict[str, str] = {}
    for name in generator.get("envs", []):
        data.update(env_file(directory / name))
    data.update(literal(text) for text in generator.get("literals", []))
    labels = dict(generator.get("options", {}).get("labels", {}))
    behavior = generator.get("behavior", "create")
    existing = [r for r in resources if r.get(HASHED) and r["metadata"]["name"] == generator["name"]]
    if behavior == "merge":
        if not existing:
            raise ValueError(f"configMapGenerator {generator['name']}: merge with no generated ConfigMap")
        existing[0]["data"].update(data)
        existing[0]["metadata"].setdefault("labels", {}).update(labels)
    elif behavior == "create":
        if existing:
            raise ValueError(f"configMapGenerator {generator['name']}: already generated")
        metadata: Doc = {"name": generator["name"], **({"labels": labels} if labels else {})}
        resources.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data, HASHED: True}
        )
    else:
        raise Unsupported(f"configMapGenerator behavior {behavior}")


def merge_patch(target: Any, patch: Any, where: str) -> Any:
    """A strategic merge patch restricted to maps: fields set, ``null`` deletes, maps merged."""
    if isinstance(patch, list):
        raise Unsupported(f"{where}: a list in a patch (strategic merge of lists is not modelled)")
    if not isinstance(patch, dict):
        return patch
    if any(str(key).startswith("$") for key in patch):
        raise Unsupported(f"{where}: patch directives")
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value, f"{where}.{key}")
    return merged


def apply_patch(directory: Path, entry: Doc, resources: list[Doc]) -> None:
    if set(entry) != {"path"}:
        raise Unsupported(f"patches entry {entry}: only `path` is rendered")
    documents = load_documents(directory / entry["path"])
    if len(documents) != 1:
        raise Unsupported(f"{entry['path']}: one patch per file")
    patch = documents[0]
    matches = [i for i, r in enumerate(resources) if identity(r) == identity(patch)]
    if len(matches) != 1:
        raise ValueError(f"{entry['path']}: patches {identity(patch)}, which matches {len(matches)} objects")
    resources[matches[0]] = merge_patch(resources[matches[0]], patch, entry["path"])


def pod_specs(doc: Doc) -> list[Doc]:
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        return [doc["spec"]["template"]["spec"]]
    if doc["kind"] == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    if doc["kind"] == "Pod":
        return [doc["spec"]]
    return []


def containers(doc: Doc) -> list[Doc]:
    return [c for spec in pod_specs(doc) for c in spec.get("containers", []) + spec.get("initContainers", [])]


def set_images(images: list[Doc], resources: list[Doc]) -> None:
    for image in images:
        if set(image) - {"name", "newName", "newTag", "digest"}:
            raise Unsupported(f"images entry {image}")
        for container in (c for doc in resources for c in containers(doc)):
            reference = re.fullmatch(r"([^:@]+(?::\d+/[^:@]+)?)(.*)", container["image"])
            assert reference, container["image"]
            name, tag = reference.groups()
            if name != image["name"]:
                continue
            if "digest" in image:
                tag = "@" + image["digest"]
            elif "newTag" in image:
                tag = ":" + str(image["newTag"])
            container["image"] = image.get("newName", name) + tag


def build(directory: Path) -> list[Doc]:
    """The objects of ``directory``'s kustomization; generated ConfigMaps not yet named."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZATION_KEYS
    if unknown:
        raise Unsupported(f"{directory}: {sorted(unknown)}")
    resources: list[Doc] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        resources += build(path) if path.is_dir() else load_documents(path)
    for generator in kustomization.get("configMapGenerator", []):
        generate(directory, generator, resources)
    for entry in kustomization.get("patches", []):
        apply_patch(directory, entry, resources)
    if "namespace" in kustomization:
        for doc in resources:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    set_images(kustomization.get("images", []), resources)
    return resources


def config_map_references(spec: Doc) -> Iterator[Doc]:
    """The places of a pod spec that name a ConfigMap (``{"name": ...}`` objects)."""
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        yield from (e["configMapRef"] for e in container.get("envFrom", []) if "configMapRef" in e)
        yield from (
            e["valueFrom"]["configMapKeyRef"]
            for e in container.get("env", [])
            if "configMapKeyRef" in e.get("valueFrom", {})
        )
    for volume in spec.get("volumes", []):
        if "projected" in volume:
            raise Unsupported("projected volumes")
        if "configMap" in volume:
            yield volume["configMap"]


def render(directory: Path) -> list[Doc]:
    """``kustomize build directory``: generated ConfigMaps named with their hash, references renamed."""
    resources = build(directory)
    renamed: dict[str, str] = {}
    for doc in resources:
        if doc.pop(HASHED, False):
            name = doc["metadata"]["name"]
            renamed[name] = doc["metadata"]["name"] = f"{name}-{kustomize_hash(doc)}"
    for doc in resources:
        for spec in pod_specs(doc):
            for reference in config_map_references(spec):
                reference["name"] = renamed.get(reference["name"], reference["name"])
    seen: set[tuple[str, str, str]] = set()
    for doc in resources:
        if identity(doc) in seen:
            raise ValueError(f"{directory}: {identity(doc)} twice")
        seen.add(identity(doc))
    return resources


# --- validation against the schemas ------------------------------------------------------------


def strict(schema: Any) -> Any:
    """An OpenAPI v3 CRD schema that refuses unknown fields, as the API server's strict field
    validation does (objects keep extra keys only where the schema says so)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    vendored = json.loads((SCHEMAS / CRD_SCHEMAS[(api_version, kind)]).read_text())
    assert f"{vendored['group']}/{vendored['version']}" == api_version and vendored["kind"] == kind
    return jsonschema.Draft7Validator(strict(vendored["openAPIV3Schema"]))


def schema_problems(docs: list[Doc]) -> list[str]:
    problems: list[str] = []
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
            for error in crd_validator(doc["apiVersion"], doc["kind"]).iter_errors(doc):
                problems.append(f"{name}: {'/'.join(map(str, error.absolute_path))}: {error.message}")
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{name} (Kubernetes {version}): {e.message}")
    return problems


# --- our rules ----------------------------------------------------------------------------------


def by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def config(docs: list[Doc]) -> dict[str, str]:
    (config_map,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("cybervpn-config")
    ]
    return dict(config_map["data"])


def app_containers(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(object, container) for every container of the task worker's image."""
    for doc in docs:
        for container in containers(doc):
            if doc["metadata"].get("labels", {}).get("app.kubernetes.io/name") == APP:
                yield doc, container


def process(container: Doc) -> str:
    args = [str(a) for a in container.get("args", [])]
    return "scheduler" if args[:3] == ["python", "-m", "scheduler"] else args[1]


def option_values(argv: list[str], name: str) -> list[str]:
    return [a.split("=", 1)[1] for a in argv if a.startswith(f"{name}=")] + [
        argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name
    ]


def queues(container: Doc) -> list[str]:
    return option_values([str(a) for a in container["args"]], "--queues")


def container_port(container: Doc, port: int | str) -> int | None:
    if isinstance(port, int):
        return port
    return next((p["containerPort"] for p in container.get("ports", []) if p.get("name") == port), None)


def component(doc: Doc) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def probe_problems(docs: list[Doc]) -> list[str]:
    """Every long-running process has startup, liveness (``/healthz``) and readiness (``/readyz``)
    probes on its own pod-local port; no exec probe (``worker-app ping`` is the operator's)."""
    problems: list[str] = []
    settings = config(docs)
    for doc, container in app_containers(docs):
        if doc["kind"] != "Deployment":
            continue
        name = doc["metadata"]["name"]
        wanted_port = int(settings[PROCESS_PORT_SETTING[process(container)]])
        for probe, path in (
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ):
            spec = container.get(probe)
            get = (spec or {}).get("httpGet")
            if not get:
                problems.append(f"{name}: no httpGet {probe}")
                continue
            port = container_port(container, get["port"])
            if (get.get("path"), port) != (path, wanted_port):
                problems.append(f"{name}: {probe} on {get.get('path')} :{port}, not {path} :{wanted_port}")
    return problems


def security_problems(docs: list[Doc]) -> list[str]:
    """Non-root, no privilege escalation, no capabilities, read-only root filesystem with emptyDirs
    for METRICS_DIR, EXPORT_DIR and /tmp, the image's tini kept as PID 1, no service account token."""
    problems: list[str] = []
    settings = config(docs)
    for doc in docs:
        for spec in pod_specs(doc):
            name = doc["metadata"]["name"]
            pod = spec.get("securityContext", {})
            if pod.get("runAsNonRoot") is not True or pod.get("runAsUser", 0) == 0:
                problems.append(f"{name}: the pod must run as a non-root user")
            if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{name}: seccompProfile RuntimeDefault")
            if spec.get("automountServiceAccountToken") is not False:
                problems.append(f"{name}: mounts a service account token it does not use")
            empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                context = container.get("securityContext", {})
                if context.get("allowPrivilegeEscalation") is not False or context.get("privileged"):
                    problems.append(f"{name}/{container['name']}: allowPrivilegeEscalation must be false")
                if context.get("readOnlyRootFilesystem") is not True:
                    problems.append(f"{name}/{container['name']}: readOnlyRootFilesystem must be true")
                capabilities = context.get("capabilities", {})
                if capabilities.get("drop") != ["ALL"] or capabilities.get("add"):
                    problems.append(f"{name}/{container['name']}: capabilities must drop ALL and add none")
                if "command" in container:
                    problems.append(
                        f"{name}/{container['name']}: `command` replaces the image's tini: use args"
                    )
                writable = {
                    m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in empty_dirs
                }
                needed = {"/tmp"} | (
                    {settings["METRICS_DIR"], settings["EXPORT_DIR"]}
                    if doc["kind"] == "Deployment"
                    and doc["metadata"]["labels"].get("app.kubernetes.io/name") == APP
                    else set()
                )
                for path in sorted(needed - writable):
                    problems.append(f"{name}/{container['name']}: {path} is not a writable emptyDir")
    return problems


def resource_problems(docs: list[Doc]) -> list[str]:
    """Requests and limits everywhere; the app's memory from the measured figures: the request holds
    the idle process, and the heaviest known job stays under the memory warning of the limit."""
    problems: list[str] = []
    for doc in docs:
        for container in containers(doc):
            name = f"{doc['metadata']['name']}/{container['name']}"
            resources = container.get("resources", {})
            missing = [
                f"{name}: no {resource} {kind[:-1]}"
                for kind in ("requests", "limits")
                for resource in ("cpu", "memory")
                if resource not in resources.get(kind, {})
            ]
            if missing:
                problems += missing
                continue
            request, limit = (mebibytes(resources[k]["memory"]) for k in ("requests", "limits"))
            if request > limit:
                problems.append(f"{name}: memory request {request:g} MiB > limit {limit:g} MiB")
            measured = (
                MEASURED_MIB.get(component(doc))
                if "app.kubernetes.io/component" in doc["metadata"].get("labels", {})
                else None
            )
            if measured and request < measured[0]:
                problems.append(f"{name}: memory request {request:g} MiB < {measured[0]} MiB measured idle")
            if measured and measured[1] > MEMORY_WARNING * limit:
                problems.append(
                    f"{name}: measured peak {measured[1]} MiB > {MEMORY_WARNING:.0%} of {limit:g} MiB"
                )
    return problems


def mebibytes(quantity: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i)?", str(quantity))
    assert match, f"memory quantity {quantity!r}"
    number, unit = match.groups()
    return float(number) * {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, None: 1 / 2**20}[unit]


def dramatiq_shutdown_timeout_ms() -> int:
    from dramatiq.cli import make_argument_parser

    return int(make_argument_parser().get_default("worker_shutdown_timeout"))


def worker_problems(docs: list[Doc]) -> list[str]:
    """The worker groups consume every domain queue once; long jobs run with queues x prefetch <=
    threads; a worker pod gets longer to stop than a message may run."""
    problems: list[str] = []
    settings = config(docs)
    consumed: list[str] = []
    for doc, container in app_containers(docs):
        if doc["kind"] != "Deployment" or process(container) != "worker":
            continue
        name = doc["metadata"]["name"]
        names = queues(container)
        if not names:
            problems.append(f"{name}: consumes every queue; name its group's queues")
        consumed += names
        threads = int(option_values([str(a) for a in container["args"]], "--threads")[-1])
        env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
        prefetch = int(env.get("dramatiq_queue_prefetch", 0)) or 2 * threads
        if LONG_QUEUES & set(names) and len(names) * prefetch > threads:
            problems.append(f"{name}: {len(names)} queues x prefetch {prefetch} > {threads} threads")
        grace = doc["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        longest_s = max(int(settings["TIME_LIMIT_MS"]), dramatiq_shutdown_timeout_ms()) / 1000
        if grace <= longest_s:
            problems.append(
                f"{name}: terminationGracePeriodSeconds {grace} <= {longest_s:.0f} s a message may run"
            )
    if sorted(consumed) != sorted(DOMAINS):
        problems.append(f"the worker groups consume {sorted(consumed)}, not every domain once")
    return problems


TRIGGER = ("rabbitmq", "http", "QueueLength")


def _watched_domain(meta: Doc) -> str:
    """The domain a trigger watches: its queue, or for a regex trigger (an ordered domain's shards,
    summed) the domain whose every shard queue and nothing else it matches."""
    import re

    from worker_app import ordered

    name = str(meta.get("queueName", ""))
    if meta.get("useRegex") != "true":
        return name
    if meta.get("operation", "sum") != "sum":
        return f"{name} (not summed)"
    for domain in ordered.domains():
        others = [domain.domain, f"{domain.domain}.DQ", f"{domain.queue(0)}.XQ", "payments"]
        exact = all(re.fullmatch(name, q) for q in domain.queues())
        if exact and not any(re.fullmatch(name, q) for q in others):
            return domain.domain
    return f"{name} (matches no ordered domain's shards exactly)"


def trigger_problems(
    name: str, triggers: list[Doc], wanted_queues: list[str], authentications: set[str]
) -> list[str]:
    """One RabbitMQ trigger through the management API per queue, each with a target and credentials."""
    problems: list[str] = []
    for trigger in triggers:
        meta, label = trigger.get("metadata", {}), f"{name}: trigger {trigger.get('name')}"
        if (trigger["type"], meta.get("protocol"), meta.get("mode")) != TRIGGER:
            problems.append(f"{label} is not rabbitmq over http on QueueLength")
        if float(meta.get("value", 0)) <= 0:
            problems.append(f"{label} without a positive value")
        if trigger.get("authenticationRef", {}).get("name") not in authentications:
            problems.append(f"{label} without its TriggerAuthentication")
    watched = sorted(_watched_domain(t.get("metadata", {})) for t in triggers)
    if watched != sorted(wanted_queues):
        problems.append(f"{name}: triggers on {watched}, not on its queues {sorted(wanted_queues)}")
    return problems


def keda_problems(docs: list[Doc]) -> list[str]:
    """A ScaledObject per worker group with a RabbitMQ trigger through the management API on each
    queue the group consumes; the Deployment leaves its replicas to it; at least one consumer per
    queue at all times (worker-app ping); the Telegram fallback rate holds at the maximum."""
    problems: list[str] = []
    authentications = set(by_kind(docs, "TriggerAuthentication"))
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s["spec"] for s in by_kind(docs, "ScaledObject").values()}
    max_processes = 0
    for doc, container in app_containers(docs):
        if doc["kind"] != "Deployment" or process(container) != "worker":
            continue
        name = doc["metadata"]["name"]
        spec = scaled.get(name)
        if spec is None:
            problems.append(f"{name}: no ScaledObject")
            continue
        if "replicas" in doc["spec"]:
            problems.append(f"{name}: sets replicas, which KEDA's HPA owns")
        problems += trigger_problems(name, spec["triggers"], queues(container), authentications)
        least, most = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if least < 1 or most < least:
            problems.append(f"{name}: replicas {least}..{most}")
        if "cooldownPeriod" not in spec:
            problems.append(f"{name}: no cooldownPeriod")
        max_processes += most * int(option_values([str(a) for a in container["args"]], "--processes")[-1])
    rate = float(config(docs)["TELEGRAM_FALLBACK_RATE_PER_S"])
    if max_processes * rate >= TELEGRAM_GLOBAL_RATE_PER_S:
        problems.append(f"{max_processes} worker processes x {rate}/s reach Telegram's limit with Redis down")
    problems += [
        f"ScaledObject targets {n}, not a Deployment here"
        for n in scaled.keys() - by_kind(docs, "Deployment").keys()
    ]
    return problems


def selects(selector: Doc, labels: Doc) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def availability_problems(docs: list[Doc]) -> list[str]:
    """Two schedulers; every Deployment has a PodDisruptionBudget that still lets a node drain."""
    problems: list[str] = []
    budgets = list(by_kind(docs, "PodDisruptionBudget").values())
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s["spec"] for s in by_kind(docs, "ScaledObject").values()}
    for name, deployment in by_kind(docs, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if labels.get("app.kubernetes.io/name") != APP:
            continue
        if component(deployment) == "scheduler" and deployment["spec"].get("replicas") != 2:
            problems.append(f"{name}: the scheduler runs 2 replicas (one fires, one stands by)")
        matching = [b for b in budgets if selects(b["spec"]["selector"], labels)]
        if len(matching) != 1:
            problems.append(f"{name}: {len(matching)} PodDisruptionBudgets")
            continue
        fewest = (
            scaled[name].get("minReplicaCount", 0)
            if name in scaled
            else deployment["spec"].get("replicas", 1)
        )
        least = matching[0]["spec"].get("minAvailable")
        if least is not None and least >= fewest:
            problems.append(f"{name}: minAvailable {least} with {fewest} replicas blocks every drain")
    return problems


def service_problems(docs: list[Doc]) -> list[str]:
    """Services select pods and name their ports; the ServiceMonitor scrapes every process's metrics
    under the job names the alert rules expect."""
    problems: list[str] = []
    pods = [(d, d["spec"]["template"]["metadata"]["labels"]) for d in by_kind(docs, "Deployment").values()]
    services = by_kind(docs, "Service")
    for name, service in services.items():
        selected = [d for d, labels in pods if selects({"matchLabels": service["spec"]["selector"]}, labels)]
        if not selected:
            problems.append(f"Service {name} selects no pods")
        for port in service["spec"]["ports"]:
            if not all(container_port(c, port["targetPort"]) for d in selected for c in containers(d)):
                problems.append(f"Service {name}: targetPort {port['targetPort']} is not a container port")
    (monitor,) = by_kind(docs, "ServiceMonitor").values()
    monitored = {
        n: s
        for n, s in services.items()
        if selects(monitor["spec"]["selector"], s["metadata"].get("labels", {}))
    }
    scraped_ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    for name, deployment in by_kind(docs, "Deployment").items():
        if deployment["metadata"]["labels"].get("app.kubernetes.io/name") != APP:
            continue
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        scraped = [
            n
            for n, s in monitored.items()
            if selects({"matchLabels": s["spec"]["selector"]}, labels)
            and scraped_ports & {p["name"] for p in s["spec"]["ports"]}
        ]
        if not scraped:
            problems.append(f"{name}: no Service the ServiceMonitor scrapes")
        problems += [
            f"Service {n}: job {n} is not one the rules match (cybervpn-.+)"
            for n in scraped
            if not re.fullmatch(r"cybervpn-.+", n)
        ]
    return problems


def network_problems(docs: list[Doc]) -> list[str]:
    """The app's pods are under a policy for both directions: in, Prometheus on the metrics ports; out,
    DNS and the services they use; the API open on its port."""
    problems: list[str] = []
    policies = list(by_kind(docs, "NetworkPolicy").values())
    app_labels = {"app.kubernetes.io/name": APP}
    base = [p for p in policies if p["spec"]["podSelector"].get("matchLabels") == app_labels]
    if not any({"Ingress", "Egress"} <= set(p["spec"].get("policyTypes", [])) for p in base):
        return [f"no NetworkPolicy restricts both directions for every pod labelled {app_labels}"]
    egress = {
        (port.get("protocol", "TCP"), port["port"])
        for p in base
        for rule in p["spec"].get("egress", [])
        for port in rule.get("ports", [])
    }
    for needed in [
        ("UDP", 53),
        ("TCP", 53),
        ("TCP", 5432),
        ("TCP", 6379),
        ("TCP", 5672),
        ("TCP", 15672),
        ("TCP", 443),
    ]:
        if needed not in egress:
            problems.append(f"egress to {needed[1]}/{needed[0]} is not allowed")
    settings = config(docs)
    ingress = {
        port["port"] for p in base for rule in p["spec"].get("ingress", []) for port in rule.get("ports", [])
    }
    for setting in PROCESS_PORT_SETTING.values():
        if int(settings[setting]) not in ingress:
            problems.append(f"Prometheus cannot reach {setting} {settings[setting]}")
    api = [
        p
        for p in policies
        if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component") == "api"
    ]
    if not any(
        rule.get("from") is None
        and {port["port"] for port in rule.get("ports", [])} == {int(settings["API_PORT"])}
        for p in api
        for rule in p["spec"].get("ingress", [])
    ):
        problems.append("the API's port is not open to its Ingress")
    return problems


def secret_example() -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in load_documents(SECRET_EXAMPLE)}


def config_problems(docs: list[Doc]) -> list[str]:
    """The ConfigMap agrees with RabbitMQ's consumer_timeout; every ``*_FILE`` is a key of the Secret
    mounted where it points (and in the example); no Secret is applied with the manifests."""
    problems: list[str] = []
    settings = config(docs)
    match = re.search(r"^consumer_timeout\s*=\s*(\d+)\s*$", RABBITMQ_CONF.read_text(), re.M)
    if not match or settings["RABBITMQ_CONSUMER_TIMEOUT_MS"] != match[1]:
        problems.append(
            f"RABBITMQ_CONSUMER_TIMEOUT_MS {settings['RABBITMQ_CONSUMER_TIMEOUT_MS']} is not the "
            f"broker's consumer_timeout (deploy/rabbitmq/20-cybervpn.conf)"
        )
    if any(d["kind"] == "Secret" for d in docs):
        problems.append(
            "a Secret is applied with the manifests: create it out of band (k8s/secret.example.yaml)"
        )
    known = {name.upper() for name in Settings.model_fields} | {f"{name}_FILE" for name in SECRET_NAMES}
    for key in settings:
        if key not in known | EXTERNAL_SETTINGS and not key.startswith("SCHEDULE_"):
            problems.append(f"{key}: not a setting of the app (docs/configuration.md)")
    examples = secret_example()
    for doc in docs:
        for spec in pod_specs(doc):
            mounts = {v["name"]: v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
            for container in spec["containers"]:
                if not any(e.get("configMapRef") for e in container.get("envFrom", [])):
                    continue
                paths = {
                    m["mountPath"]: mounts[m["name"]]
                    for m in container.get("volumeMounts", [])
                    if m["name"] in mounts
                }
                for key, value in settings.items():
                    if not key.endswith("_FILE"):
                        continue
                    directory, _, file = value.rpartition("/")
                    secret = paths.get(directory)
                    if secret is None:
                        problems.append(
                            f"{doc['metadata']['name']}: {key}={value} is not in a mounted Secret"
                        )
                    elif file not in examples.get(secret, {}).get("stringData", {}):
                        problems.append(f"{key}: {secret} has no key {file} in k8s/secret.example.yaml")
    return problems


def settings_problems(docs: list[Doc], tmp_path: Path) -> list[str]:
    """The app's own settings accept the ConfigMap, its ``*_FILE`` secrets read from the example."""
    settings = config(docs)
    examples = secret_example()["cybervpn-secrets"]["stringData"]
    environ: dict[str, str] = {}
    for key, value in settings.items():
        if key.endswith("_FILE"):
            (tmp_path / Path(value).name).write_text(examples[Path(value).name])
        environ[key] = str(tmp_path / Path(value).name) if key.endswith("_FILE") else value
    try:
        load_settings(environ)
    except ConfigurationError as e:
        return [str(e)]
    return []


def manifest_problems(docs: list[Doc]) -> list[str]:
    return (
        schema_problems(docs)
        + probe_problems(docs)
        + security_problems(docs)
        + resource_problems(docs)
        + worker_problems(docs)
        + keda_problems(docs)
        + availability_problems(docs)
        + service_problems(docs)
        + network_problems(docs)
        + config_problems(docs)
    )


# --- the shipped manifests ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {str(target.relative_to(K8S)): render(target) for target in TARGETS}


@pytest.mark.parametrize("target", [str(t.relative_to(K8S)) for t in TARGETS])
def test_the_base_and_each_overlay_render_valid_manifests_that_keep_our_rules(
    rendered: dict[str, list[Doc]], target: str
) -> None:
    assert manifest_problems(rendered[target]) == []


@pytest.mark.parametrize("target", [str(t.relative_to(K8S)) for t in TARGETS])
def test_the_apps_settings_accept_each_configmap(
    rendered: dict[str, list[Doc]], target: str, tmp_path: Path
) -> None:
    assert settings_problems(rendered[target], tmp_path) == []


def test_the_base_has_every_piece_of_the_deployment(rendered: dict[str, list[Doc]]) -> None:
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in rendered["base"])
    config_map = next(k for k in kinds if k.startswith("ConfigMap/"))
    assert kinds == sorted(
        [
            "Deployment/cybervpn-worker-fast",
            "Deployment/cybervpn-worker-long",
            "Deployment/cybervpn-scheduler",
            "Deployment/cybervpn-api",
            "Service/cybervpn-worker-fast",
            "Service/cybervpn-worker-long",
            "Service/cybervpn-scheduler",
            "Service/cybervpn-api",
            "Job/cybervpn-migrate",
            config_map,
            "ServiceAccount/cybervpn-task-worker",
            "TriggerAuthentication/cybervpn-rabbitmq-management",
            "ScaledObject/cybervpn-worker-fast",
            "ScaledObject/cybervpn-worker-long",
            "PodDisruptionBudget/cybervpn-worker-fast",
            "PodDisruptionBudget/cybervpn-worker-long",
            "PodDisruptionBudget/cybervpn-scheduler",
            "PodDisruptionBudget/cybervpn-api",
            "NetworkPolicy/cybervpn-task-worker",
            "NetworkPolicy/cybervpn-api",
            "ServiceMonitor/cybervpn-task-worker",
        ]
    )
    (job,) = by_kind(rendered["base"], "Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["worker-app", "db", "upgrade"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_overlays_set_their_namespace_image_and_settings(rendered: dict[str, list[Doc]]) -> None:
    for target, namespace, tag in (
        ("overlays/dev", "cybervpn-dev", "dev"),
        ("overlays/prod", "cybervpn", "0.1.0"),
    ):
        docs = rendered[target]
        assert {d["metadata"].get("namespace") for d in docs} == {namespace}
        images = {c["image"] for d in docs for c in containers(d)}
        assert images == {f"registry.example.com/cybervpn/task-worker:{tag}"}
    dev, prod = config(rendered["overlays/dev"]), config(rendered["overlays/prod"])
    assert dev["TELEGRAM_API_URL"] == "http://cybervpn-sandbox:8081" and dev["LOG_LEVEL"] == "DEBUG"
    assert "cybervpn-sandbox" in by_kind(rendered["overlays/dev"], "Deployment")
    assert prod["EXPORT_S3_URL"].startswith("s3://") and prod["SENTRY_DSN_FILE"].endswith("/SENTRY_DSN")
    assert prod["TELEGRAM_API_URL"] == "https://api.telegram.org"
    (monitor,) = by_kind(rendered["overlays/prod"], "ServiceMonitor").values()
    assert monitor["metadata"]["labels"] == {
        "app.kubernetes.io/name": APP,
        "release": "kube-prometheus-stack",
    }
    fast = by_kind(rendered["overlays/dev"], "ScaledObject")["cybervpn-worker-fast"]["spec"]
    assert (fast["minReplicaCount"], fast["maxReplicaCount"], fast["fallback"]) == (
        1,
        2,
        {"failureThreshold": 4, "replicas": 1, "behavior": "currentReplicasIfHigher"},
    )
    assert (
        "minAvailable" not in by_kind(rendered["overlays/dev"], "PodDisruptionBudget")["cybervpn-api"]["spec"]
    )


def test_each_overlay_renames_the_generated_configmap_everywhere_it_is_used(
    rendered: dict[str, list[Doc]],
) -> None:
    names = {target: config_map_name(docs) for target, docs in rendered.items()}
    assert len(set(names.values())) == 3  # its content differs, so does its hash, so pods roll
    for target, docs in rendered.items():
        used = {r["name"] for d in docs for spec in pod_specs(d) for r in config_map_references(spec)}
        assert used <= {names[target]}, target
        assert len(used) == 1


def test_the_migrations_first_selector_applies_everything_the_job_needs(
    rendered: dict[str, list[Doc]],
) -> None:
    selector = re.search(
        r"-l '(app\.kubernetes\.io/component) in \(([\w,]+)\)'", (ROOT / "docs" / "deploy.md").read_text()
    )
    assert selector, "docs/deploy.md applies the migrations first with a label selector"
    for target in ("overlays/dev", "overlays/prod"):
        docs = rendered[target]
        picked = [
            d for d in docs if d["metadata"].get("labels", {}).get(selector[1]) in selector[2].split(",")
        ]
        (job,) = [d for d in picked if d["kind"] == "Job"]
        spec = job["spec"]["template"]["spec"]
        needed = {("ServiceAccount", spec["serviceAccountName"])} | {
            ("ConfigMap", r["name"]) for r in config_map_references(spec)
        }
        assert needed <= {(d["kind"], d["metadata"]["name"]) for d in picked}
        assert {d["kind"] for d in picked} == {"ServiceAccount", "ConfigMap", "Job"}


def config_map_name(docs: list[Doc]) -> str:
    (name,) = [d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"]
    return name


# --- the renderer against kustomize -------------------------------------------------------------


@pytest.mark.parametrize(
    ("config_map", "expected"),
    [  # kustomize's own test vectors: api/hasher/hasher_test.go (kubernetes-sigs/kustomize@12f9e63)
        ({"apiVersion": "v1", "kind": "ConfigMap"}, "6ct58987ht"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "data": {"one": ""}}, "9g67k2htb6"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "data": {"two": 2, "one": "", "three": 3}}, "7757f9kkct"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "binaryData": {"one": ""}}, "6mtk2m274t"),
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "data": {"one": ""}, "binaryData": {"two": ""}},
            "698h7c7t9m",
        ),
    ],
)
def test_the_configmap_hash_is_kustomizes(config_map: Doc, expected: str) -> None:
    assert kustomize_hash(config_map) == expected


def write_kustomization(tmp_path: Path, kustomization: str, **files: str) -> Path:
    (tmp_path / "kustomization.yaml").write_text(kustomization)
    for name, text in files.items():
        (tmp_path / name.replace("_", ".")).write_text(text)
    return tmp_path


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  template:
    spec:
      containers: [{name: c, image: "cybervpn/task-worker:1", envFrom: [{configMapRef: {name: cm}}]}]
"""


def test_the_renderer_applies_namespace_images_generator_and_a_map_patch(tmp_path: Path) -> None:
    directory = write_kustomization(
        tmp_path,
        "namespace: ns\nresources: [d.yaml]\n"
        "images: [{name: cybervpn/task-worker, newName: r/x, newTag: '2'}]\n"
        "configMapGenerator: [{name: cm, literals: [A=1]}]\npatches: [{path: p.yaml}]\n",
        d_yaml=DEPLOYMENT,
        p_yaml="apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
        "spec: {replicas: 3, paused: null}\n",
    )
    docs = render(directory)
    deployment = by_kind(docs, "Deployment")["d"]
    cm_name = config_map_name(docs)
    assert cm_name == f"cm-{kustomize_hash({'metadata': {'name': 'cm'}, 'data': {'A': '1'}})}"
    assert deployment["metadata"]["namespace"] == "ns" and deployment["spec"]["replicas"] == 3
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "r/x:2" and container["envFrom"][0]["configMapRef"]["name"] == cm_name


@pytest.mark.parametrize(
    ("kustomization", "patch", "error"),
    [
        ("resources: [d.yaml]\ncommonLabels: {a: b}\n", "", "commonLabels"),
        (
            "resources: [d.yaml]\npatches: [{path: p.yaml}]\n",
            "spec: {template: {spec: {containers: []}}}",
            "a list",
        ),
        (
            "resources: [d.yaml]\npatches: [{path: p.yaml, target: {kind: Deployment}}]\n",
            "spec: {}",
            "only `path`",
        ),
        ("resources: [d.yaml]\nconfigMapGenerator: [{name: cm, files: [x]}]\n", "", "files"),
        (
            "resources: [d.yaml]\nconfigMapGenerator: [{name: cm, behavior: replace}]\n",
            "",
            "behavior replace",
        ),
    ],
)
def test_the_renderer_refuses_what_it_does_not_implement(
    tmp_path: Path, kustomization: str, patch: str, error: str
) -> None:
    header = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
    directory = write_kustomization(tmp_path, kustomization, d_yaml=DEPLOYMENT, p_yaml=header + patch)
    with pytest.raises(Unsupported, match=error):
        render(directory)


def test_a_patch_of_an_object_that_is_not_there_fails(tmp_path: Path) -> None:
    directory = write_kustomization(
        tmp_path,
        "resources: [d.yaml]\npatches: [{path: p.yaml}]\n",
        d_yaml=DEPLOYMENT,
        p_yaml="apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: typo}\nspec: {replicas: 1}\n",
    )
    with pytest.raises(ValueError, match="matches 0 objects"):
        render(directory)


# --- the rules catch a broken manifest ---------------------------------------------------------


def deployment(docs: list[Doc], name: str) -> Doc:
    return by_kind(docs, "Deployment")[name]


def container_of(docs: list[Doc], name: str) -> Doc:
    return deployment(docs, name)["spec"]["template"]["spec"]["containers"][0]


def scaled_object(docs: list[Doc], name: str) -> Doc:
    return by_kind(docs, "ScaledObject")[name]["spec"]


def config_data(docs: list[Doc]) -> Doc:
    return next(d for d in docs if d["kind"] == "ConfigMap")["data"]


def no_liveness_probe(docs: list[Doc]) -> None:
    del container_of(docs, "cybervpn-worker-fast")["livenessProbe"]


def readiness_on_healthz(docs: list[Doc]) -> None:
    container_of(docs, "cybervpn-scheduler")["readinessProbe"]["httpGet"]["path"] = "/healthz"


def ping_as_readiness(docs: list[Doc]) -> None:
    probe = {"exec": {"command": ["worker-app", "ping"]}, "periodSeconds": 60}
    container_of(docs, "cybervpn-worker-long")["readinessProbe"] = probe


def probes_on_another_port(docs: list[Doc]) -> None:
    container_of(docs, "cybervpn-api")["ports"][0]["containerPort"] = 9090


def unknown_field(docs: list[Doc]) -> None:
    container_of(docs, "cybervpn-api")["livenessProbes"] = {}


def writable_root(docs: list[Doc]) -> None:
    container_of(docs, "cybervpn-worker-fast")["securityContext"]["readOnlyRootFilesystem"] = False


def as_root(docs: list[Doc]) -> None:
    deployment(docs, "cybervpn-scheduler")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0


def added_capability(docs: list[Doc]) -> None:
    container_of(docs, "cybervpn-api")["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]


def command_instead_of_args(docs: list[Doc]) -> None:
    container_of(docs, "cybervpn-worker-fast")["command"] = ["worker-app", "worker"]


def no_metrics_dir(docs: list[Doc]) -> None:
    mounts = container_of(docs, "cybervpn-worker-long")["volumeMounts"]
    mounts[:] = [m for m in mounts if m["name"] != "metrics"]


def no_limits(docs: list[Doc]) -> None:
    del container_of(docs, "cybervpn-worker-fast")["resources"]["limits"]


def limit_under_the_peak(docs: list[Doc]) -> None:
    container_of(docs, "cybervpn-worker-fast")["resources"]["limits"]["memory"] = "400Mi"


def request_under_idle(docs: list[Doc]) -> None:
    container_of(docs, "cybervpn-scheduler")["resources"]["requests"]["memory"] = "64Mi"


def short_grace(docs: list[Doc]) -> None:
    deployment(docs, "cybervpn-worker-long")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30


def default_prefetch(docs: list[Doc]) -> None:
    del container_of(docs, "cybervpn-worker-long")["env"]


def queue_in_no_group(docs: list[Doc]) -> None:
    container_of(docs, "cybervpn-worker-fast")["args"].remove("--queues=sync")


def queue_without_trigger(docs: list[Doc]) -> None:
    scaled_object(docs, "cybervpn-worker-fast")["triggers"].pop()


def trigger_over_amqp(docs: list[Doc]) -> None:
    scaled_object(docs, "cybervpn-worker-long")["triggers"][0]["metadata"]["protocol"] = "amqp"


def scale_to_zero(docs: list[Doc]) -> None:
    scaled_object(docs, "cybervpn-worker-long")["minReplicaCount"] = 0


def too_many_processes(docs: list[Doc]) -> None:
    scaled_object(docs, "cybervpn-worker-fast")["maxReplicaCount"] = 20


def replicas_beside_keda(docs: list[Doc]) -> None:
    deployment(docs, "cybervpn-worker-fast")["spec"]["replicas"] = 3


def unknown_keda_field(docs: list[Doc]) -> None:
    scaled_object(docs, "cybervpn-worker-fast")["cooldownPeriods"] = 300


def unknown_servicemonitor_field(docs: list[Doc]) -> None:
    by_kind(docs, "ServiceMonitor")["cybervpn-task-worker"]["spec"]["endpoints"][0]["intervall"] = "15s"


def one_scheduler(docs: list[Doc]) -> None:
    deployment(docs, "cybervpn-scheduler")["spec"]["replicas"] = 1


def budget_blocking_drains(docs: list[Doc]) -> None:
    by_kind(docs, "PodDisruptionBudget")["cybervpn-worker-fast"]["spec"]["minAvailable"] = 2


def no_budget(docs: list[Doc]) -> None:
    docs.remove(by_kind(docs, "PodDisruptionBudget")["cybervpn-api"])


def rabbitmq_unreachable(docs: list[Doc]) -> None:
    rules = by_kind(docs, "NetworkPolicy")["cybervpn-task-worker"]["spec"]["egress"]
    rules[1]["ports"] = [p for p in rules[1]["ports"] if p["port"] != 5672]


def unscraped_scheduler(docs: list[Doc]) -> None:
    docs.remove(by_kind(docs, "Service")["cybervpn-scheduler"])


def consumer_timeout_mismatch(docs: list[Doc]) -> None:
    config_data(docs)["RABBITMQ_CONSUMER_TIMEOUT_MS"] = "3600000"


def file_without_its_key(docs: list[Doc]) -> None:
    config_data(docs)["REMNAWAVE_API_KEY_FILE"] = "/run/secrets/cybervpn/X"


def misspelt_setting(docs: list[Doc]) -> None:
    config_data(docs)["TELEGRAM_API_ULR"] = "https://api.telegram.org"


def secret_in_the_manifests(docs: list[Doc]) -> None:
    docs.append(secret_example()["cybervpn-secrets"])


MUTATIONS: list[tuple[Callable[[list[Doc]], None], str]] = [
    (no_liveness_probe, "cybervpn-worker-fast: no httpGet livenessProbe"),
    (readiness_on_healthz, "cybervpn-scheduler: readinessProbe on /healthz"),
    (ping_as_readiness, "cybervpn-worker-long: no httpGet readinessProbe"),
    (probes_on_another_port, "cybervpn-api: startupProbe on /healthz :9090"),
    (unknown_field, "Deployment/cybervpn-api (Kubernetes 1.29.0)"),
    (writable_root, "readOnlyRootFilesystem must be true"),
    (as_root, "cybervpn-scheduler: the pod must run as a non-root user"),
    (added_capability, "capabilities must drop ALL and add none"),
    (command_instead_of_args, "`command` replaces the image's tini"),
    (no_metrics_dir, "/var/lib/cybervpn/metrics is not a writable emptyDir"),
    (no_limits, "cybervpn-worker-fast/worker: no cpu limit"),
    (limit_under_the_peak, "measured peak 380 MiB > 80% of 400"),
    (request_under_idle, "memory request 64 MiB < 79 MiB"),
    (short_grace, "terminationGracePeriodSeconds 30 <= 600"),
    (default_prefetch, "3 queues x prefetch 8 > 4 threads"),
    (queue_in_no_group, "not every domain once"),
    (queue_without_trigger, "cybervpn-worker-fast: triggers on"),
    (trigger_over_amqp, "is not rabbitmq over http on QueueLength"),
    (scale_to_zero, "cybervpn-worker-long: replicas 0..3"),
    (too_many_processes, "reach Telegram's limit"),
    (replicas_beside_keda, "sets replicas, which KEDA's HPA owns"),
    (unknown_keda_field, "ScaledObject/cybervpn-worker-fast: spec"),
    (unknown_servicemonitor_field, "ServiceMonitor/cybervpn-task-worker: spec/endpoints/0"),
    (one_scheduler, "the scheduler runs 2 replicas"),
    (budget_blocking_drains, "minAvailable 2 with 2 replicas blocks"),
    (no_budget, "cybervpn-api: 0 PodDisruptionBudgets"),
    (rabbitmq_unreachable, "egress to 5672/TCP is not allowed"),
    (unscraped_scheduler, "cybervpn-scheduler: no Service the ServiceMonitor scrapes"),
    (consumer_timeout_mismatch, "is not the broker's consumer_timeout"),
    (file_without_its_key, "cybervpn-secrets has no key X"),
    (misspelt_setting, "TELEGRAM_API_ULR: not a setting of the app"),
    (secret_in_the_manifests, "a Secret is applied with the manifests"),
]


@pytest.mark.parametrize(("change", "problem"), MUTATIONS, ids=[m[0].__name__ for m in MUTATIONS])
def test_a_broken_manifest_is_caught(change: Callable[[list[Doc]], None], problem: str) -> None:
    docs = render(
        K8S / "overlays" / "prod"
    )  # valid: test_the_base_and_each_overlay_render_valid_manifests_...
    change(docs)
    found = manifest_problems(docs)
    assert any(problem in p for p in found), found


def test_settings_refuse_a_configmap_the_app_would_refuse(
    rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    docs = json.loads(json.dumps(rendered["overlays/prod"]))
    next(d for d in docs if d["kind"] == "ConfigMap")["data"]["TIME_LIMIT_MS"] = "1800000"
    assert any("TIME_LIMIT_MS" in p for p in settings_problems(docs, tmp_path))
