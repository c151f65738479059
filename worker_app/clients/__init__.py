"""Clients for the external services the workers call, one service per module.

Each client speaks the wire contract recorded in CONTRACTS.md over the shared JSON-over-HTTP base
(:mod:`worker_app.clients.http`) and turns every failure into the project's error tree
(:mod:`worker_app.errors`), so the retry middleware can tell permanent from transient failures.
"""
