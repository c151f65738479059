"""How ``worker-app`` fails: one line on stderr and a documented exit code, never a traceback.

Exit codes: ``0`` done; ``1`` the operation failed (or was declined at a confirmation); ``2`` bad
input or configuration (click's usage errors too); ``3`` a dependency (PostgreSQL, Redis, RabbitMQ,
its management API) is unreachable. ``worker-app --debug ...`` lets the traceback through instead.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any
from urllib.parse import unquote, urlsplit

import click

from worker_app.errors import ConfigurationError
from worker_app.outages import Outage, outage_of

FAILED, BAD_INPUT, UNREACHABLE = 1, 2, 3


class BadInput(click.ClickException):
    """Input or configuration that can never work: exit 2."""

    exit_code = BAD_INPUT


class Unreachable(click.ClickException):
    """A dependency did not answer: exit 3."""

    exit_code = UNREACHABLE


def _where(setting: str) -> str:
    """Where the setting points (host, port, database or vhost), secrets left out."""
    from pydantic import SecretStr

    from worker_app.config import get_settings
    from worker_app.runtime import get_runtime

    try:
        settings = get_runtime().settings
    except RuntimeError:  # not bootstrapped
        try:
            settings = get_settings()
        except ConfigurationError:
            return setting
    value = getattr(settings, setting.lower())
    if not isinstance(value, SecretStr):  # a URL without credentials (RABBITMQ_MANAGEMENT_URL, REMNAWAVE_URL)
        return f"{setting} {value}"
    url = urlsplit(value.get_secret_value())
    try:
        port = url.port
    except ValueError:
        port = None
    where = unquote(url.path[1:])
    if setting == "RABBITMQ_URL":
        return f"{setting} → {url.hostname}:{port or 5672} vhost {where or '/'}"
    return f"{setting} → {url.hostname}:{port or '-'}/{where}"


def outage_line(outage: Outage) -> str:
    return f"{outage.dependency} is unreachable ({_where(outage.setting)}): {outage.reason}"


class CliGroup(click.Group):
    """The ``worker-app`` group: turns every failure into a :class:`click.ClickException` line, and
    offers the domains' own command groups beside the platform's."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # the reader went away (``worker-app dlq list --json | head -1``): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(1) from None
        except Exception as e:
            if ctx.meta.get("debug"):
                raise
            raise as_click_error(e) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        from worker_app.domains import cli_commands

        return sorted({*super().list_commands(ctx), *cli_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The platform's commands, then those the domains registered (:mod:`worker_app.domains`)."""
        from worker_app.domains import cli_commands

        return super().get_command(ctx, cmd_name) or cli_commands().get(cmd_name)


def as_click_error(error: Exception) -> click.ClickException:
    """The one line (and exit code) ``worker-app`` prints for ``error``."""
    if isinstance(error, ConfigurationError):
        return BadInput(str(error))
    outage = outage_of(error)
    if outage is not None:
        return Unreachable(outage_line(outage))
    logging.getLogger("worker_app.cli").debug("unexpected error", exc_info=error)
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return click.ClickException(
        f"unexpected {type(error).__name__}{': ' + text if text else ''} (run with --debug for the traceback)"
    )
