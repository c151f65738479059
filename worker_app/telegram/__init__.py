"""Sending through Telegram, for every domain and for the admin alerts: the fleet-wide rate limits
(:mod:`.ratelimit`), the circuit breaker (:mod:`.breaker`), one send (:mod:`.sender`), the sent
journal that keeps a crash from sending twice (:mod:`.journal`), text checks before a message costs
a call (:mod:`.text`) and their metrics (:mod:`.metrics`). The HTTP client itself is
:mod:`worker_app.clients.telegram`."""
