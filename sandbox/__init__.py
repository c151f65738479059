"""The project's own fake external services, run as a separate program (``python -m sandbox`` or
``worker-app sandbox``).

It fakes the Telegram Bot API (sending side, :mod:`sandbox.server` and :mod:`sandbox.telegram`) and
the Remnawave 3.x panel API (:mod:`sandbox.remnawave`) as CONTRACTS.md describes them, with in-memory
state, fault injection and an admin API under ``/_sandbox/``; see ``docs/sandbox.md``. Used for
development, demos, the test suite and the benchmarks — never in production.
"""
