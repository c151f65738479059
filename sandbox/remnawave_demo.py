"""The fake panel's demo data, under its import path of old: the code is in :mod:`sandbox.remnawave.demo`
(and the user and node generators in :mod:`sandbox.remnawave.seeding`)."""

from __future__ import annotations

from sandbox.remnawave.demo import DEMO_TELEGRAM_START, seed_demo

__all__ = ["DEMO_TELEGRAM_START", "seed_demo"]
