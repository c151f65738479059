"""The fake Remnawave 3.x panel: in-memory state answering the ``/api`` routes we use as CONTRACTS.md
(and, where they differ, the real 3.3.2 source) says, with fault injection and ``/_sandbox/`` admin
endpoints. Served by ``python -m sandbox`` next to the fake Telegram; see ``docs/sandbox.md``.

Modules, from the wire up:

* :mod:`~sandbox.remnawave.format` — constants, replies and error bodies, request validation;
  :mod:`~sandbox.remnawave.records` and :mod:`~sandbox.remnawave.stats` — the objects on the wire.
* :mod:`~sandbox.remnawave.panel` — users and nodes with their indexes.
* :mod:`~sandbox.remnawave.users`, :mod:`~sandbox.remnawave.bulk`, :mod:`~sandbox.remnawave.changes`,
  :mod:`~sandbox.remnawave.nodes` — the routes' answers; :mod:`~sandbox.remnawave.routes` — paths
  and token scopes.
* :mod:`~sandbox.remnawave.guards` (faults, proxy headers, scopes), :mod:`~sandbox.remnawave.calls`
  (the call log) and :mod:`~sandbox.remnawave.state` — :class:`RemnawaveState`, the entry point.
* :mod:`~sandbox.remnawave.seeding` and :mod:`~sandbox.remnawave.demo` — seed data.
* :mod:`~sandbox.remnawave.admin` and :mod:`~sandbox.remnawave.app` — HTTP.
"""

from __future__ import annotations

from sandbox.remnawave.format import DEFAULT_TOKEN, RwReply
from sandbox.remnawave.guards import Faults
from sandbox.remnawave.records import UserRecord
from sandbox.remnawave.state import RemnawaveState

__all__ = ["DEFAULT_TOKEN", "Faults", "RemnawaveState", "RwReply", "UserRecord"]
