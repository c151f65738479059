"""The project's error tree.

Three kinds drive behaviour (ARCHITECTURE.md §3):

* :class:`PermanentError` — retrying cannot help (blocked chat, bad input, unknown user). The retry
  middleware dead-letters it at once.
* :class:`TransientError` — the upstream is down or slow; retried per the domain's policy.
  :class:`RateLimited` carries the server's own delay, which wins over the policy's backoff.
* anything else — a bug: retried per policy, traceback recorded, reported to Sentry.

:class:`JobCancelled` is none of these: an operator stopped the job on purpose.

Third-party errors are wrapped at the boundary with ``raise ... from e``.
"""

from __future__ import annotations

from typing import Any


class WorkerError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigurationError(WorkerError):
    """A setting is missing or malformed (raised at start-up), or refused by the service it is for
    (a rejected API token: raised by that service's client, never retried)."""


class PermanentError(WorkerError):
    """Retrying cannot succeed: the message goes straight to the dead letters."""


class BadMessage(PermanentError):
    """The message itself is unusable: undecodable body, unknown actor or arguments that do not fit."""


class TransientError(WorkerError):
    """The operation may succeed later (connection refused, timeout, 5xx)."""


class UpstreamUnavailable(TransientError):
    """An external dependency did not answer or answered with a server error; ``body`` is that
    error's JSON body when it had one (the service's own error envelope), else ``None``."""

    body: Any = None


class RateLimited(TransientError):
    """The upstream asked us to slow down; ``retry_after_s`` is its own delay."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class JobCancelled(WorkerError):
    """An operator cancelled the running job (``worker-app jobs cancel``); raised by
    :func:`worker_app.jobs.report_progress`. Not a failure: the message is acked — neither retried
    nor recorded dead — and its job is marked ``cancelled``."""
