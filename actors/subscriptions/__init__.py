"""Subscription lifecycle on the Remnawave panel: expiry reminders, switching off expired users,
the monthly traffic reset, auto-renew invoices.

Package = domain = queue ``subscriptions``; retry policy: ``worker_app.policies.POLICIES['subscriptions']``
(3 retries, 60 s apart, then a warning alert). One module per feature:

* :mod:`.check_expiring` — ``check_expiring_subscriptions`` (hourly): reminders at 7 d / 3 d / 24 h / 6 h;
* :mod:`.disable_expired` — ``disable_expired_users`` (every 15 min), with its safety valve;
* :mod:`.reset_traffic` — ``reset_monthly_traffic`` (1st of the month, 00:00 UTC);
* :mod:`.auto_renew` — ``auto_renew_subscriptions`` (every 30 min): one invoice per period;
* :mod:`.renew` — bringing a user back after a payment (extend, then enable if disabled);
* :mod:`.actions` — panel writes recorded before and completed after each bulk call;
* :mod:`.report` — each run's counts: its JSON log line and ``cybervpn_subscription_users_total``;
* :mod:`.texts` — what users are told; :mod:`.cli` — ``worker-app subscriptions ...``.

Every write is idempotent under redelivery and under a worker killed mid-batch (see each module).
"""

from __future__ import annotations

from actors.subscriptions.auto_renew import auto_renew_subscriptions
from actors.subscriptions.check_expiring import QUEUE, check_expiring_subscriptions
from actors.subscriptions.disable_expired import disable_expired_users
from actors.subscriptions.reset_traffic import reset_monthly_traffic
from worker_app.domains import register_cli, register_dashboard, register_overview
from worker_app.heartbeat import declare_heartbeat

heartbeat = declare_heartbeat(QUEUE)
register_cli("actors.subscriptions.cli:subscriptions")
register_dashboard("actors.subscriptions.dashboard:add_pages")
register_overview("actors.subscriptions.dashboard:tiles")

__all__ = [
    "QUEUE",
    "auto_renew_subscriptions",
    "check_expiring_subscriptions",
    "disable_expired_users",
    "heartbeat",
    "reset_monthly_traffic",
]
