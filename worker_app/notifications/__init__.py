"""The notifications domain's logic, called by the thin actors in ``actors/notifications.py``:
Telegram rate limits (:mod:`.ratelimit`), the circuit breaker (:mod:`.breaker`), one send
(:mod:`.sender`), the queue consumer (:mod:`.queue`, :mod:`.slots`), broadcasts (:mod:`.broadcast`),
text checks (:mod:`.text`), Redis-outage fallbacks (:mod:`.redis_fallback`) and domain metrics
(:mod:`.metrics`)."""
