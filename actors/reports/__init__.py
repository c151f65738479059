"""Reports: the daily and weekly admin reports over Telegram, built from the stored aggregates.

Package = domain = queue ``reports``; retry policy: ``worker_app.policies.POLICIES['reports']``.
"""

from __future__ import annotations

from worker_app.domains import register_cli
from worker_app.heartbeat import declare_heartbeat

QUEUE = "reports"

heartbeat = declare_heartbeat(QUEUE)
register_cli("actors.reports.cli:reports")

from actors.reports.daily import send_daily_report  # noqa: E402  (needs QUEUE)
from actors.reports.weekly import send_weekly_report  # noqa: E402

__all__ = ["QUEUE", "heartbeat", "send_daily_report", "send_weekly_report"]
