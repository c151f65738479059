"""The notifications domain's logic, called by the thin actors in ``actors/notifications.py``:
Telegram rate limits (:mod:`.ratelimit`), one send (:mod:`.sender`), the queue consumer
(:mod:`.queue`, :mod:`.slots`), broadcasts (:mod:`.broadcast`), text checks (:mod:`.text`) and
domain metrics (:mod:`.metrics`)."""
