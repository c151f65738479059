"""What a domain package registers with the platform when its actors load.

``worker_app`` never imports a domain (except :mod:`worker_app` itself, which loads every actor);
a domain reaches the shared tools by registering here instead:

* :func:`register_cli` — a click command or group of its own under ``worker-app`` (``worker-app
  notifications ...``), named by import path so that worker processes never import the CLI;
* :func:`register_web` — HTTP routes of its own on ``worker-app serve`` (``POST /api/v1/broadcasts/...``);
* :func:`register_dashboard` — pages of its own on the dashboard, behind its login and CSRF check,
  with a link in its navigation (``/broadcasts``);
* :func:`register_overview` — tiles of its own on the dashboard's landing page (``Nodes: 2 of 12
  down``), red when they mean trouble;
* :func:`worker_app.jobs.register_canceller` — its part of ``worker-app jobs cancel``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import click

_CLI: list[str] = []
_WEB: list[str] = []
_DASHBOARD: list[str] = []
_OVERVIEW: list[str] = []


def _register(paths: list[str], path: str) -> None:
    if ":" not in path:
        raise ValueError(f"{path!r} is not 'package.module:attribute'")
    if path not in paths:
        paths.append(path)


def _imported(paths: list[str]) -> list[tuple[str, Any]]:
    """Each ``package.module:attribute`` of ``paths`` with the object it names, imported now."""
    found = []
    for path in paths:
        module, _, attribute = path.partition(":")
        found.append((path, getattr(importlib.import_module(module), attribute)))
    return found


def register_cli(path: str) -> None:
    """Add the click command at ``path`` (``"package.module:attribute"``) to ``worker-app``."""
    _register(_CLI, path)


def cli_commands() -> dict[str, click.Command]:
    """Every registered domain command, by its name, imported now."""
    commands: dict[str, click.Command] = {}
    for path, command in _imported(_CLI):
        if not isinstance(command, click.Command):
            raise TypeError(f"{path} is a {type(command).__name__}, not a click command")
        commands[command.name or path.partition(":")[2]] = command
    return commands


def register_web(path: str) -> None:
    """Have ``worker-app serve`` call ``package.module:function(app, runtime, broker)``: the domain's
    routes, added after the platform's (behind the same bearer token under ``/api/``)."""
    _register(_WEB, path)


def web_extensions() -> list[Callable[..., None]]:
    """Every registered route-adding function, imported now."""
    return [function for _path, function in _imported(_WEB)]


def register_dashboard(path: str) -> None:
    """Have the dashboard call ``package.module:function(runtime)``, which returns a Flask blueprint
    of the domain's pages and its navigation links ``[(label, endpoint)]`` (endpoints relative to the
    blueprint, ``".broadcasts"``). The blueprint is nested in the dashboard's, so its pages are
    behind the dashboard's login and every POST needs the session's CSRF token; they render with
    :func:`worker_app.web.dashboard.page` (templates under ``dashboard/<domain>/``)."""
    _register(_DASHBOARD, path)


def dashboard_extensions() -> list[Callable[..., tuple[Any, list[tuple[str, str]]]]]:
    """Every registered page-adding function, imported now."""
    return [function for _path, function in _imported(_DASHBOARD)]


def register_overview(path: str) -> None:
    """Have the dashboard's landing page call ``package.module:function(runtime)`` on every render;
    it returns the domain's tiles (:class:`worker_app.web.overview.Tile`). It should answer from
    what the domain already stores, in a few milliseconds; an exception shows as one tile naming it
    (the page still renders)."""
    _register(_OVERVIEW, path)


def overview_extensions() -> list[tuple[str, Callable[..., Any]]]:
    """Every registered tile function with its path, imported now."""
    return _imported(_OVERVIEW)
