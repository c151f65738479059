"""Dramatiq middleware of the platform, one concern per module; :mod:`worker_app.broker` installs
them in the order docs/design.md explains."""
