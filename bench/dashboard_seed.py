"""The data of ``bench.dashboard``: every table a dashboard page reads, filled by set-based SQL.

:func:`seed` fills a migrated database at ``scale`` (1.0: 100,000 dead letters and 1,000,000 jobs
over 30 days, 300,000 payments over a year, ...; see :data:`SIZES`) in a few ``INSERT … SELECT
generate_series`` statements, then ``VACUUM ANALYZE``. Rows are inserted in time order (as the
product writes them), so the heap is as correlated with ``dead_at`` / ``created_at`` as in
production. ``setseed`` makes every run write the same rows, so the searched texts of
:data:`SEARCHES` match the same rows each time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

#: Rows per table at scale 1.0.
SIZES = {
    "dead_letters": 100_000, "jobs": 1_000_000, "payments": 300_000, "subscription_actions": 100_000,
    "notification_queue": 300_000, "notification_broadcasts": 2_000, "audit_logs": 500_000,
    "auto_renew_settings": 10_000,
}  # fmt: skip
#: Days of ``scheduler_fires`` at scale 1.0: SCHEDULER_FIRE_RETENTION_DAYS' default.
FIRE_DAYS = 7
#: Nodes are the fleet, the same at any scale.
NODES = 40
#: On-demand jobs by share (percent): what reaches ``jobs`` through the API — sends above all — and
#: the admins' rare bulk operations and exports (the ``bulk`` queue: 0.5 %, ~170 a day).
JOB_MIX = (
    ("send_notification", 62.5), ("process_payment_completion", 15), ("defer_notification", 8),
    ("broadcast_message", 5), ("sync_user_stats", 4), ("verify_pending_payments", 3),
    ("aggregate_daily_stats", 2), ("execute_bulk_user_operation", 0.3), ("execute_bulk_broadcast", 0.1),
    ("generate_data_export", 0.1),
)  # fmt: skip
#: Texts the searched variants look for: one user's e-mail (a handful of dead letters), a word of
#: many error messages, an HTTP status of some.
SEARCHES = {"rare": "user4242@example.com", "common": "timed out", "error": "HTTP 502"}
TABLES = (
    "dead_letters", "jobs", "payment_activations", "payments", "subscription_plans", "subscription_actions",
    "notification_broadcast_items", "notification_broadcasts", "notification_queue", "server_geolocations",
    "scheduler_fires", "audit_logs", "auto_renew_settings",
)  # fmt: skip

_ERRORS = """(ARRAY[
    'TimeoutError', 'httpx.ReadTimeout', 'worker_app.errors.UpstreamUnavailable', 'KeyError',
    'worker_app.errors.PermanentError', 'psycopg.errors.DeadlockDetected', 'ValueError',
    'TelegramBadRequest'])"""
_MESSAGES = """(ARRAY[
    'the panel timed out after 10.0 s (GET /api/users/' || u || ')',
    'read timed out talking to https://panel.example.com/api/users/' || u,
    'HTTP 502 from https://panel.example.com/api/nodes: Bad Gateway',
    '''subscription'' (user ' || u || ')',
    'plan ' || (n % 9) || ' is not active any more',
    'deadlock detected: process ' || (4000 + n % 900) || ' waits for ShareLock on transaction ' || n,
    'invalid literal for int() with base 10: ''' || md5(n::text) || '''',
    'Bad Request: chat not found (chat_id ' || (500000000 + u) || ')'])"""
_FRAME = """format(E'  File "/app/%s", line %s, in %s\\n    %s\\n',
    (ARRAY['dramatiq/worker.py', 'dramatiq/middleware/time_limit.py', 'worker_app/middleware/db.py',
           'worker_app/middleware/telemetry.py', 'worker_app/clients/http.py', 'httpx/_client.py',
           'actors/notifications/on_demand.py', 'worker_app/clients/remnawave.py'])[1 + (n + f) % 8],
    1 + (n * f) % 900, (ARRAY['process_message', '__call__', 'before_process_message', 'request',
    'send', '_send_single_request', 'handle_request', 'get_user'])[1 + (n * 7 + f) % 8],
    'return self._wrapped(' || md5((n * f)::text) || ')')"""
_DEAD_LETTERS = f"""
INSERT INTO dead_letters (message_id, queue_name, actor_name, args, kwargs, options, reason, exception_type,
    exception_message, traceback, attempts, first_failed_at, last_failed_at, dead_at, trace_id, status,
    replayed_at, replay_message_id, discarded_at, action_done_at)
SELECT 'bench-dl-' || n, (CAST(:queues AS text[]))[1 + a], (CAST(:actors AS text[]))[1 + a],
    jsonb_build_array(u, jsonb_build_object('chat_id', 500000000 + u, 'email', 'user' || u || '@example.com',
        'text', 'Your subscription ends in ' || (1 + n % 7) || ' days. Renew to keep your servers: '
                || md5(n::text), 'plan', (ARRAY['month', 'quarter', 'year'])[1 + n % 3],
        'nodes', jsonb_build_array('de-fra-' || n % 7, 'nl-ams-' || n % 5, 'fi-hel-' || n % 3))),
    jsonb_build_object('notification_type', 'reminder', 'parse_mode', 'HTML'),
    jsonb_build_object('trace_id', md5('t' || n), 'max_retries', 5, 'retries', e % 6),
    (ARRAY['retries_exhausted', 'retries_exhausted', 'retries_exhausted', 'permanent_error', 'bad_message',
           'age_limit', 'failed', 'retries_exhausted'])[1 + e], {_ERRORS}[1 + e], {_MESSAGES}[1 + e],
    'Traceback (most recent call last):' || E'\\n'
        || (SELECT string_agg({_FRAME}, '') FROM generate_series(1, 13) AS f)
        || {_ERRORS}[1 + e] || ': ' || {_MESSAGES}[1 + e],
    1 + e % 6, at - interval '40 minutes', at - interval '1 minute', at, md5('t' || n),
    CASE WHEN s < 0.85 THEN 'dead' WHEN s < 0.95 THEN 'replayed' ELSE 'discarded' END,
    CASE WHEN s >= 0.85 AND s < 0.95 THEN at + interval '2 hours' END,
    CASE WHEN s >= 0.85 AND s < 0.95 THEN md5('r' || n)::uuid::text END,
    CASE WHEN s >= 0.95 THEN at + interval '3 hours' END, at
FROM (SELECT n, floor(:n_actors * random() ^ 2)::int AS a, floor(8 * random())::int AS e, random() AS s,
             n % 90000 AS u, CAST(:now AS timestamptz) - (:rows - n) * (interval '30 days' / :rows) AS at
      FROM generate_series(1, :rows) AS n) AS g
"""
_JOBS = """
INSERT INTO jobs (job_id, actor_name, queue_name, args, kwargs, status, progress, result, error, attempts,
    initiated_by, trace_id, created_at, started_at, finished_at)
SELECT md5('job' || n)::uuid::text, (CAST(:actors AS text[]))[k], (CAST(:queues AS text[]))[k],
    jsonb_build_array(500000000 + n % 90000, 'Your payment of ' || (n % 50) || ' USDT was received'),
    jsonb_build_object('notification_type', 'payment'), st,
    CASE WHEN (CAST(:queues AS text[]))[k] IN ('bulk', 'notifications') AND n % 3 = 0 THEN
        jsonb_build_object('processed', CASE WHEN st = 'running' THEN 40 ELSE 100 END, 'total', 100,
                           'failed', n % 4) END,
    CASE WHEN st = 'succeeded' THEN jsonb_build_object(
        'status', 'sent', 'message_id', n, 'url', 'https://exports.example.com/' || md5(n::text)) END,
    CASE WHEN st IN ('failed', 'dead') THEN 'UpstreamUnavailable: the panel timed out after 10.0 s' END,
    CASE WHEN st = 'queued' THEN 0 ELSE 1 END, (ARRAY['api:admin', 'dashboard', 'bot', NULL])[1 + n % 4],
    md5('jt' || n), at, CASE WHEN st <> 'queued' THEN at + interval '1 second' END,
    CASE WHEN st IN ('succeeded', 'failed', 'dead', 'cancelled', 'deferred')
         THEN at + interval '3 seconds' END
FROM (SELECT n, at, width_bucket(r, CAST(:bounds AS float8[])) AS k,
             CASE WHEN n > :rows - :active
                  THEN (ARRAY['queued', 'running', 'sending', 'succeeded'])[1 + n % 4]
                  WHEN s < 0.9 THEN 'succeeded' WHEN s < 0.93 THEN 'failed' WHEN s < 0.95 THEN 'dead'
                  WHEN s < 0.96 THEN 'cancelled' ELSE 'deferred' END AS st
      FROM (SELECT n, random() AS r, random() AS s,
                   CAST(:now AS timestamptz) - (:rows - n) * (interval '30 days' / :rows) AS at
            FROM generate_series(1, :rows) AS n) AS g) AS h
"""
_PLANS = """
INSERT INTO subscription_plans (id, name, duration_days, price, currency, is_active)
SELECT md5('plan' || d)::uuid, d || ' days', d, d * 0.2, 'USDT', true
FROM unnest(ARRAY[30, 90, 180, 365]) AS d
"""
_PAYMENTS = """
INSERT INTO payments (id, user_id, telegram_id, plan_id, external_id, amount, currency, status,
    subscription_days, paid_at, error_message, created_at, updated_at)
SELECT md5('pay' || n)::uuid, n % 90000, 500000000 + n % 90000, md5('plan' || d)::uuid, 'inv-' || n, d * 0.2,
    'USDT', st, d, CASE WHEN st = 'completed' THEN at + interval '4 minutes' END,
    CASE WHEN st = 'failed' THEN 'invoice ' || n || ' expired before it was paid' END, at, at
FROM (SELECT n, (ARRAY[30, 30, 30, 90, 90, 180, 365])[1 + n % 7] AS d,
             CAST(:now AS timestamptz) - (:rows - n) * (interval '365 days' / :rows) AS at,
             CASE WHEN n > :rows - :rows / 200 THEN 'pending' WHEN random() < 0.75 THEN 'completed'
                  WHEN random() < 0.8 THEN 'expired' ELSE 'failed' END AS st
      FROM generate_series(1, :rows) AS n) AS g
"""
_ACTIVATIONS = """
INSERT INTO payment_activations (payment_id, user_id, invoice_id, state, days, base_expire_at, new_expire_at,
    source, attempts, created_at, completed_at)
SELECT id, user_id, external_id, CASE WHEN random() < 0.998 THEN 'completed' ELSE 'review' END,
    subscription_days, paid_at, paid_at + subscription_days * interval '1 day', 'webhook', 1, paid_at,
    paid_at + interval '2 seconds'
FROM payments WHERE status = 'completed' AND paid_at > CAST(:now AS timestamptz) - interval '90 days'
"""
_SUBSCRIPTION_ACTIONS = """
INSERT INTO subscription_actions (id, kind, user_id, period, telegram_id, created_at, done_at, outcome)
SELECT md5('sa' || n)::uuid, (ARRAY['disable', 'traffic_reset'])[1 + n % 2], n % 90000,
    to_char(at, 'YYYY-MM') || '/' || n, 500000000 + n % 90000, at,
    CASE WHEN n <= :rows - 20 THEN at + interval '1 second' END,
    CASE WHEN n <= :rows - 20
         THEN (ARRAY['done', 'done', 'done', 'renewed', 'gone', 'skipped'])[1 + n % 6] END
FROM (SELECT n, CAST(:now AS timestamptz) - (:rows - n) * (interval '30 days' / :rows) AS at
      FROM generate_series(1, :rows) AS n) AS g
"""
_BROADCASTS = """
INSERT INTO notification_broadcasts (id, notification_type, total, trace_id, settled_at, sent, failed,
    cancelled_at, cancelled_by, cancelled, starts_at, created_at)
SELECT md5('bc' || n)::uuid::text, (ARRAY['promo', 'maintenance', 'news'])[1 + n % 3], :per, md5('bt' || n),
    CASE WHEN n <= :rows - 8 THEN at + interval '20 minutes' END,
    CASE WHEN n <= :rows - 8 THEN :per - n % 5 END, CASE WHEN n <= :rows - 8 THEN n % 5 END,
    CASE WHEN n % 97 = 0 THEN at + interval '1 minute' END, CASE WHEN n % 97 = 0 THEN 'dashboard' END, 0,
    CASE WHEN n > :rows - 5 THEN CAST(:now AS timestamptz) + (n - :rows + 5) * interval '1 day'
         WHEN n % 4 = 0 THEN at END, at
FROM (SELECT n, CAST(:now AS timestamptz) - (:rows - n) * (interval '30 days' / :rows) AS at
      FROM generate_series(1, :rows) AS n) AS g
"""
_NOTIFICATIONS = """
INSERT INTO notification_queue (id, telegram_id, message, notification_type, status, attempts, scheduled_at,
    next_attempt_at, sent_at, error_message, telegram_message_id, created_at, updated_at)
SELECT md5('nq' || n)::uuid, 500000000 + n % 90000,
    'Maintenance tonight on <b>de-fra-' || n % 7 || '</b>: your connection may drop for a few minutes. '
        || md5(n::text),
    CASE WHEN n <= :broadcast_rows THEN 'promo' ELSE (ARRAY['subscription_reminder', 'subscription_disabled',
        'auto_renew_invoice', 'payment', 'traffic_reset'])[1 + n % 5] END,
    st, CASE WHEN st = 'failed' THEN 5 ELSE 0 END, at, at,
    CASE WHEN st = 'sent' THEN at + interval '10 seconds' END,
    CASE WHEN st = 'failed' THEN 'Forbidden: bot was blocked by the user' END,
    CASE WHEN st = 'sent' THEN n END, at, at
FROM (SELECT n, CAST(:now AS timestamptz) - (:rows - n) * (interval '30 days' / :rows) AS at,
             CASE WHEN n > :rows - :rows / 50 THEN 'pending' WHEN random() < 0.97 THEN 'sent'
                  ELSE 'failed' END AS st
      FROM generate_series(1, :rows) AS n) AS g
"""
_ITEMS = """
INSERT INTO notification_broadcast_items (notification_id, broadcast_id)
SELECT md5('nq' || n)::uuid, md5('bc' || (1 + (n - 1) / :per))::uuid::text
FROM generate_series(1, CAST(:broadcasts AS int) * CAST(:per AS int)) AS n
"""
_AUDIT_LOGS = """
INSERT INTO audit_logs (actor, action, entity_type, entity_id, details, ip_address, created_at)
SELECT 'admin:' || n % 50, (ARRAY['user.login', 'subscription_disabled', 'plan.update', 'user.update',
    'user.login', 'payment.completed', 'user.login', 'subscription_extended'])[1 + n % 8], 'user',
    (n % 90000)::text, jsonb_build_object('n', n, 'reason', 'bench row ' || n), '10.0.' || n % 250 || '.1',
    CAST(:now AS timestamptz) - (:rows - n) * (interval '90 days' / :rows)
FROM generate_series(1, :rows) AS n
"""
_AUTO_RENEW = """
INSERT INTO auto_renew_settings (user_id, telegram_id, plan_id, enabled)
SELECT n * 9, 500000000 + n * 9, md5('plan' || (ARRAY[30, 90, 180, 365])[1 + n % 4])::uuid, n % 10 <> 0
FROM generate_series(1, :rows) AS n
"""
_NODES = """
INSERT INTO server_geolocations (node_uuid, name, address, country_code, country, city, latitude, longitude)
SELECT md5('node' || n)::uuid::text, c || '-' || n, '10.1.' || n || '.1', upper(left(c, 2)), c, c, 50.1, 8.6
FROM (SELECT n, (ARRAY['de', 'nl', 'fi', 'us', 'sg'])[1 + n % 5] AS c FROM generate_series(1, :n) AS n) AS g
"""
_FIRES = """
INSERT INTO scheduler_fires (job, scheduled_at, kind, status, message_id, fired_at, fired_by, started_at)
SELECT j.job, t, 'scheduled', 'started', md5(j.job || t)::uuid::text, t, 'bench-scheduler',
    t + interval '50 ms'
FROM unnest(CAST(:jobs AS text[]), CAST(:periods AS int[])) AS j(job, period),
     generate_series(date_trunc('minute', CAST(:now AS timestamptz)) - :days * interval '1 day',
                     CAST(:now AS timestamptz), j.period * interval '1 second') AS t
"""


def _scaled(table: str, scale: float) -> int:
    return max(1, round(SIZES[table] * scale))


def dead_letter_actors(actors: dict[str, str]) -> list[str]:
    """The actors (of ``actors``: name → queue) dead letters are seeded for, the most frequent first:
    the seed draws the index ``floor(len * random() ^ 2)``, so the first has ~17 % of them, the last
    ~1 %."""
    return sorted(name for name in actors if not name.startswith("heartbeat_"))


def job_mix(actors: dict[str, str]) -> tuple[list[str], list[str], list[float]]:
    """:data:`JOB_MIX` as actor names, their queues (from ``actors``: name → queue) and the cumulative
    lower bounds the seed draws from (``width_bucket``). An actor that no longer exists fails here, so
    the bench cannot rot."""
    missing = [name for name, _share in JOB_MIX if name not in actors]
    if missing:
        raise LookupError(f"JOB_MIX names actors that do not exist any more: {', '.join(missing)}")
    total, bounds, running = sum(share for _n, share in JOB_MIX), [0.0], 0.0
    for _name, share in JOB_MIX[:-1]:
        running += share
        bounds.append(running / total)
    return [n for n, _s in JOB_MIX], [actors[n] for n, _s in JOB_MIX], bounds


def seed(engine: sa.Engine, scale: float, actors: dict[str, str], periods: dict[str, int]) -> dict[str, int]:
    """Empty :data:`TABLES` and fill them at ``scale``; ``actors`` (name → queue) name the dead letters'
    actors, ``periods`` (job → seconds between fires) the schedule's fires of the last
    :data:`FIRE_DAYS` × ``scale`` days. Returns each table's row count."""
    now = datetime.now(UTC)
    dead = dead_letter_actors(actors)
    names, queues, bounds = job_mix(actors)
    jobs, per = _scaled("jobs", scale), 100
    broadcasts = _scaled("notification_broadcasts", scale)
    statements: list[tuple[str, dict[str, Any]]] = [
        (_DEAD_LETTERS, {"rows": _scaled("dead_letters", scale), "actors": dead, "n_actors": len(dead),
                         "queues": [actors[a] for a in dead]}),
        (_JOBS, {"rows": jobs, "active": max(1, jobs // 500), "actors": names, "queues": queues,
                 "bounds": bounds}),
        (_PLANS, {}), (_PAYMENTS, {"rows": _scaled("payments", scale)}), (_ACTIVATIONS, {}),
        (_SUBSCRIPTION_ACTIONS, {"rows": _scaled("subscription_actions", scale)}),
        (_BROADCASTS, {"rows": broadcasts, "per": per}),
        (_NOTIFICATIONS, {"rows": max(_scaled("notification_queue", scale), broadcasts * per),
                          "broadcast_rows": broadcasts * per}),
        (_AUDIT_LOGS, {"rows": _scaled("audit_logs", scale)}),
        (_AUTO_RENEW, {"rows": _scaled("auto_renew_settings", scale)}),
        (_ITEMS, {"broadcasts": broadcasts, "per": per}), (_NODES, {"n": NODES}),
        (_FIRES, {"jobs": list(periods), "periods": list(periods.values()), "days": FIRE_DAYS * scale}),
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        # GIN indexes take the rows into their pending list, merged in bulk by the VACUUM below
        # (a merge every 4 MB of pending entries makes the inserts ~10 × slower)
        conn.execute(sa.text("SET LOCAL gin_pending_list_limit = '2GB'"))
        conn.execute(sa.text("SELECT setseed(0.42)"))
        for statement, params in statements:
            conn.execute(sa.text(statement), {"now": now, **params})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("SET maintenance_work_mem = '256MB'"))
        conn.execute(sa.text(f"VACUUM ANALYZE {', '.join(TABLES)}"))
        conn.execute(sa.text("RESET maintenance_work_mem"))
        return {t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES}


def timed_seed(engine: sa.Engine, scale: float, actors: dict[str, str], periods: dict[str, int]) -> str:
    """:func:`seed`, and one line saying what it wrote and how long it took."""
    started = time.perf_counter()
    counts = seed(engine, scale, actors, periods)
    listed = ", ".join(f"{n:,} {t}" for t, n in counts.items())
    return f"seeded in {time.perf_counter() - started:.1f} s: {listed}"
