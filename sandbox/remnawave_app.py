"""The fake Remnawave panel over HTTP, under its import path of old: the code is in
:mod:`sandbox.remnawave.app` (and the admin endpoints in :mod:`sandbox.remnawave.admin`)."""

from __future__ import annotations

from sandbox.remnawave.app import RunningRemnawave, make_remnawave_app, start_remnawave_in_thread

__all__ = ["RunningRemnawave", "make_remnawave_app", "start_remnawave_in_thread"]
