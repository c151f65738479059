"""The project's own fake external services, run as a separate program (``python -m sandbox``).

Today it fakes the Telegram Bot API (sending side) exactly as CONTRACTS.md describes, with
in-memory state, fault injection and an admin API under ``/_sandbox/``; see :mod:`sandbox.server`.
Used for development, demos, the test suite and the benchmarks — never in production.
"""
