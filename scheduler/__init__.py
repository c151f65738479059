"""The periodic-job scheduler: one APScheduler process that only enqueues (ARCHITECTURE.md §5)."""
