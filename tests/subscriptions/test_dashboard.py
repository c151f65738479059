"""The Subscriptions page and the ``subscriptions`` overview tile, read from what the jobs write:
reminders, notices and auto-renew invoices in ``notification_queue``, ``audit_logs`` of users switched
off, ``subscription_actions`` left open, the safety valve's alert history, auto-renew payments. The
jobs run for real against the sandbox panel and Crypto Pay, on real PostgreSQL and Redis."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
import sqlalchemy as sa

from actors.subscriptions import actions, check_expiring_subscriptions, disable_expired_users
from actors.subscriptions.actions import Planned
from actors.subscriptions.auto_renew import auto_renew
from actors.subscriptions.disable_expired import KIND
from actors.subscriptions.report import RunReport
from tests.fixtures.cryptobot import CryptoPay
from tests.fixtures.remnawave import Panel, user_spec
from tests.monitoring.test_dashboard_nodes import client_of, on_one_utc_day, tile
from tests.subscriptions.test_auto_renew import RENEW_URL, plan, prefer
from worker_app.clients.cryptobot import CryptoPayClient
from worker_app.runtime import Runtime


def cells(html: str, row_id: str) -> dict[str, str]:
    row = html[html.index(f'id="{row_id}"') :].split("</tr>", maxsplit=1)[0]
    return dict(re.findall(r'<td class="n (\w+)">(\d+)</td>', row))


def test_the_page_counts_todays_reminders_switch_offs_and_auto_renewals_and_the_tile_turns_red_on_trouble(
    panel: Panel, panel_runtime: Runtime, cryptopay: CryptoPay, cryptobot: CryptoPayClient,
    clean_tables: sa.Engine, redis_client: redis.Redis,
) -> None:  # fmt: skip
    runtime = panel_runtime

    def scenario(midnight: float) -> dict[str, Any]:
        fresh_start(panel, cryptopay, clean_tables, redis_client)
        # Given a lagging panel with users in three reminder brackets, two expired and running, and one
        # with auto-renew ending in 30 minutes (a 6 h reminder too)
        panel.faults(auto_expire=False)
        renewing, *_ = panel.add_users(
            user_spec(expire_in=timedelta(minutes=30), telegram_id=1001),
            user_spec(expire_in=timedelta(hours=3), telegram_id=1002),
            user_spec(expire_in=timedelta(hours=20), telegram_id=1003),
            user_spec(expire_in=timedelta(days=6), telegram_id=1004),
            user_spec(expire_in=-timedelta(hours=1), telegram_id=2001),
            user_spec(expire_in=-timedelta(hours=2), telegram_id=2002),
            *[user_spec(expire_in=timedelta(days=30), telegram_id=3000 + i) for i in range(30)],
        )
        prefer(clean_tables, renewing, plan(clean_tables))
        # When the three jobs run, and one reminder is delivered
        check_expiring_subscriptions()
        disable_expired_users()
        auto_renew(runtime.database, runtime.remnawave, cryptobot, RunReport("auto_renew_subscriptions"),
                   now=datetime.now(UTC), window=timedelta(hours=1), invoice_expires_s=3600,
                   renew_url=RENEW_URL)  # fmt: skip
        with clean_tables.begin() as conn:
            conn.execute(sa.text("UPDATE notification_queue SET status = 'sent', sent_at = now() "
                                 "WHERE telegram_id = 1002"))  # fmt: skip
        healthy = tile(runtime, "subscriptions")
        html = client_of(runtime).get("/subscriptions").text
        # And later a run dies leaving a disable open, over an hour ago
        actions.record(runtime.database, KIND, [Planned(999_999, "2026-01-01T00:00:00+00:00", None)])
        with clean_tables.begin() as conn:
            conn.execute(sa.text("UPDATE subscription_actions SET created_at = now() - interval '2 hours' "
                                 "WHERE user_id = 999999"))  # fmt: skip
        stuck = tile(runtime, "subscriptions")
        # And then 15 more users expire at once: the safety valve holds the next run
        late = [user_spec(expire_in=-timedelta(minutes=5), telegram_id=4000 + n) for n in range(15)]
        panel.add_users(*late)
        held = disable_expired_users()
        assert held["valve"] == "held" and runtime.alerts.flush(30)
        return {"healthy": healthy, "html": html, "stuck": stuck, "held": tile(runtime, "subscriptions"),
                "held_html": client_of(runtime).get("/subscriptions").text}  # fmt: skip

    seen = on_one_utc_day(scenario)
    # Then the page counts today's reminders per bracket, the notices and the invoice, by delivery
    html = seen["html"]
    assert cells(html, "messages-7d") == {"queued": "1", "sent": "0", "pending": "1", "failed": "0"}
    assert cells(html, "messages-3d")["queued"] == "0"
    assert cells(html, "messages-24h")["queued"] == "1"
    assert cells(html, "messages-6h") == {"queued": "2", "sent": "1", "pending": "1", "failed": "0"}
    assert cells(html, "messages-disabled")["queued"] == "2"
    assert cells(html, "messages-auto_renew")["queued"] == "1"
    assert 'id="messages-other"' not in html
    # And the users switched off, the valve not held, the auto-renew payment awaiting payment
    assert '<span class="figure">2</span> user(s) switched off' in html
    assert 'id="valve" class="fine">Not held today' in html and 'id="open-actions"' not in html
    assert '<td class="n" id="auto-renew-awaiting-payment">1</td>' in html
    assert '<td class="n" id="auto-renew-renewed">0</td>' in html
    # And the tile is calm, then red for the action left open, then for the valve
    healthy, stuck, held = seen["healthy"], seen["stuck"], seen["held"]
    assert (healthy.value, healthy.trouble, healthy.href) == ("2 switched off today", False, "/subscriptions")
    assert healthy.detail == "4 reminders, 1 auto-renew payments today"
    assert (stuck.value, stuck.trouble) == ("1 disables unfinished", True)
    assert stuck.detail == "the oldest opened 2 h ago"
    assert (held.value, held.trouble) == ("valve held today", True)
    assert held.detail is not None and "15 of 49 running users" in held.detail
    held_html = seen["held_html"]
    assert 'id="valve" class="trouble"' in held_html and "disabled NO ONE: 15 of 49" in held_html
    assert '<span class="figure">2</span> user(s) switched off' in held_html  # nobody more


def fresh_start(panel: Panel, cryptopay: CryptoPay, engine: sa.Engine, redis_client: redis.Redis) -> None:
    """Empty tables, Redis, panel and Crypto Pay (the panel keeping this session's token)."""
    import models

    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(models.Base.metadata.tables)} RESTART IDENTITY CASCADE"))
    redis_client.flushdb()
    panel.admin("POST", "reset")
    panel.admin("POST", "tokens", {"token": os.environ["REMNAWAVE_API_TOKEN"], "scopes": None})
    cryptopay.admin("POST", "reset")
