"""Dramatiq actors, one package per domain; the package name is the queue name.

Imported by ``worker_app`` after the broker is set, so every actor binds to it.
"""

from __future__ import annotations

from actors import (
    analytics,
    bot_updates,
    bulk,
    cleanup,
    monitoring,
    notifications,
    payments,
    reports,
    subscriptions,
    sync,
)

DOMAIN_MODULES = (
    notifications,
    subscriptions,
    monitoring,
    payments,
    analytics,
    cleanup,
    sync,
    reports,
    bulk,
    bot_updates,
)

__all__ = [
    "DOMAIN_MODULES",
    "analytics",
    "bot_updates",
    "bulk",
    "cleanup",
    "monitoring",
    "notifications",
    "payments",
    "reports",
    "subscriptions",
    "sync",
]
