"""The code's layout rules (issue 15): one package per domain, named as its queue; the platform
(``worker_app``) never imports a domain except where every actor is loaded."""

from __future__ import annotations

import ast
import pathlib

import click
import pytest

import worker_app
from worker_app import domains
from worker_app.cli import main
from worker_app.policies import DOMAINS

ROOT = pathlib.Path(__file__).resolve().parents[2]
ACTOR_LOADER = ROOT / "worker_app" / "__init__.py"


def _imported_modules(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_platform_imports_no_domain_but_in_the_actor_loader() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imported_modules(path) if m.split(".")[0] == "actors")
        for path in (ROOT / "worker_app").rglob("*.py")
        if path != ACTOR_LOADER
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}
    assert "actors" in _imported_modules(ACTOR_LOADER)


def test_every_domain_is_a_package_named_as_its_queue() -> None:
    for domain in DOMAINS:
        assert (ROOT / "actors" / domain / "__init__.py").is_file(), f"actors/{domain}/ is not a package"


def test_every_domain_actor_lives_in_the_package_of_its_queue() -> None:
    misplaced = {
        name: (actor.fn.__module__, actor.queue_name)
        for name, actor in worker_app.broker.actors.items()
        if actor.fn.__module__.startswith("actors.") and actor.fn.__module__.split(".")[1] != actor.queue_name
    }
    assert misplaced == {}
    assert any(a.fn.__module__.startswith("actors.notifications.") for a in worker_app.broker.actors.values())


def test_a_domain_cli_group_is_reached_through_worker_app() -> None:
    assert isinstance(main.get_command(click.Context(main), "notifications"), click.Group)
    assert "notifications" in main.list_commands(click.Context(main))


def test_register_cli_names_a_bad_path() -> None:
    with pytest.raises(ValueError, match=r"is not 'package\.module:attribute'"):
        domains.register_cli("actors.nowhere")


def test_every_code_directory_is_a_regular_package() -> None:
    """A directory without ``__init__.py`` imports as a namespace package here but is left out of a
    wheel by ``packages.find`` and out of mypy's ``packages``."""
    missing = [
        str(d.relative_to(ROOT))
        for top in ("worker_app", "actors", "scheduler", "sandbox", "models")
        for d in (ROOT / top).rglob("*")
        if d.is_dir() and any(d.glob("*.py")) and not (d / "__init__.py").exists()
    ]
    assert missing == []


def test_every_actor_that_returns_a_value_stores_it() -> None:
    """Otherwise Dramatiq's Results middleware logs a WARNING on every run ("returned a value that is
    not None, but you haven't set its `store_results' option"); a periodic job's summary is worth the
    RESULT_TTL_SECONDS it is kept."""
    import inspect

    silent = [
        name for name, actor in worker_app.broker.actors.items()
        if actor.fn.__module__.startswith(("actors.", "worker_app."))  # not the tests' own actors
        and inspect.signature(actor.fn).return_annotation not in (None, "None", inspect.Signature.empty)
        and not actor.options.get("store_results")
    ]  # fmt: skip
    assert silent == []
