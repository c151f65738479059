"""``generate_data_export``: tier 1 (the plain function on real PostgreSQL, the Remnawave sandbox over
HTTP, a local EXPORT_DIR; each file parsed back) and tier 2 (the actor through the StubBroker on the
real middleware: job, progress, result, the admin's notice, and refused arguments)."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dramatiq
import pytest
import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker

from actors.bulk import generate_data_export
from actors.bulk.exports import ExportRequest, Sources, export_data, run_export
from actors.bulk.metrics import exports_total, rows_total
from tests.fixtures.notifications import MakeRuntime
from tests.fixtures.remnawave import Panel
from tests.fixtures.worker import ROOT, wait_for
from worker_app import jobs as tracking
from worker_app.arguments import mismatch
from worker_app.clients.remnawave import RemnawaveUnavailable
from worker_app.errors import BadMessage
from worker_app.exports import LocalStorage, link_key, link_refusal, storage_for
from worker_app.logging_setup import JsonFormatter
from worker_app.runtime import Runtime

NOW = datetime(2026, 12, 8, 9, 30, tzinfo=UTC)
WEEK = {"from": "2026-12-01", "to": "2026-12-07"}
LINK_SECRET = "test-export-link-secret"
PUBLIC_URL = "http://exports.test"


@pytest.fixture
def export_runtime(make_runtime: MakeRuntime, panel: Panel, tmp_path: Path) -> Runtime:
    """The sandbox-backed runtime exporting into ``tmp_path/exports`` in batches of 10 rows."""
    panel.admin("POST", "tokens", {"token": os.environ["REMNAWAVE_API_TOKEN"], "scopes": None})
    return make_runtime(REMNAWAVE_URL=panel.url, EXPORT_DIR=str(tmp_path / "exports"), EXPORT_BATCH_ROWS=10,
                        EXPORT_LINK_SECRET=LINK_SECRET, EXPORT_PUBLIC_URL=PUBLIC_URL)  # fmt: skip


def export(
    runtime: Runtime,
    export_type: str,
    fmt: str = "csv",
    date_range: dict[str, str] | None = None,
    *,
    job_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Any], bytes]:
    """The plain function as the actor calls it; its result and the finished file's bytes."""
    settings = runtime.settings
    sources = Sources(runtime.database, runtime.remnawave, settings.export_batch_rows)
    result = export_data(
        ExportRequest.of(export_type, date_range, fmt), job_id or str(uuid.uuid4()), sources=sources,
        storage=storage_for(settings), settings=settings, now=NOW, progress=progress or (lambda _p, _t: None),
    )  # fmt: skip
    if result["storage"] != "local":
        return result, b""
    job_id = urlsplit(result["url"]).path.rsplit("/", 1)[1]
    return result, (settings.export_dir / job_id / result["file_name"]).read_bytes()


def parsed(data: bytes, fmt: str) -> list[dict[str, Any]]:
    """The file's records: CSV rows as dicts of strings, JSON Lines and JSON objects as they are."""
    text = data.decode("utf-8")
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(text, newline="")))
    if fmt == "jsonl":
        assert text == "" or text.endswith("\n")
        return [json.loads(line) for line in text.splitlines()]
    return list(json.loads(text))


def as_csv(record: dict[str, Any]) -> dict[str, str]:
    """What a JSON record is in CSV: NULL empty, booleans true/false, JSON as its text."""

    def field(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return json.dumps(value) if isinstance(value, dict | list) else str(value)

    return {k: field(v) for k, v in record.items()}


def expected(records: list[dict[str, Any]], fmt: str) -> list[dict[str, Any]]:
    return [as_csv(r) for r in records] if fmt == "csv" else records


# -- payments ------------------------------------------------------------------------------------------


def payment_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


PAYMENTS = [  # (n, user, telegram, external id, amount, currency, status, days, paid_at, created_at, error)
    (0, 6, 600, "inv-0", "1", "USDT", "completed", 30, "2026-11-30 23:59:59.5+00",
     "2026-11-30 23:59:59.999999+00", None),
    (1, 7, 700, "inv-1", "12.5", "USDT", "completed", 30, "2026-12-01 00:00:05+00", "2026-12-01 00:00:00+00",
     None),
    (5, 9, None, None, "3.25", "BTC", "pending", None, None, "2026-12-01 00:00:00+00", None),
    (2, 8, None, None, "0.00000001", "TON", "failed", None, None, "2026-12-07 23:59:59.999999+00",
     'declined, "twice"\nsecond line'),
    (3, 6, 600, "inv-3", "99", "USDT", "expired", 30, None, "2026-12-08 00:00:00+00", None),
]  # fmt: skip


def seed_payments(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for n, user, tg, ext, amount, currency, status, days, paid, created, error in PAYMENTS:
            conn.execute(
                sa.text("INSERT INTO payments (id, user_id, telegram_id, provider, external_id, amount, "
                        "currency, status, subscription_days, paid_at, created_at, updated_at, "
                        "error_message) VALUES (:id, :u, :tg, 'cryptobot', :ext, CAST(:amount AS numeric), "
                        ":cur, :st, :days, CAST(:paid AS timestamptz), CAST(:created AS timestamptz), "
                        "CAST(:created AS timestamptz), :error)"),
                {"id": payment_id(n), "u": user, "tg": tg, "ext": ext, "amount": amount, "cur": currency,
                 "st": status, "days": days, "paid": paid, "created": created, "error": error},
            )  # fmt: skip


def payment_record(n: int) -> dict[str, Any]:
    """Payment ``n`` as the JSON formats write it."""
    amounts = {0: "1.00000000", 1: "12.50000000", 5: "3.25000000", 2: "0.00000001", 3: "99.00000000"}
    times = {0: "2026-11-30T23:59:59.999999Z", 1: "2026-12-01T00:00:00.000000Z",
             5: "2026-12-01T00:00:00.000000Z", 2: "2026-12-07T23:59:59.999999Z",
             3: "2026-12-08T00:00:00.000000Z"}  # fmt: skip
    row = next(p for p in PAYMENTS if p[0] == n)
    return {
        "id": payment_id(n), "user_id": row[1], "telegram_id": row[2], "plan_id": None,
        "provider": "cryptobot", "external_id": row[3], "amount": amounts[n], "currency": row[5],
        "status": row[6], "subscription_days": row[7],
        "paid_at": {0: "2026-11-30T23:59:59.500000Z", 1: "2026-12-01T00:00:05.000000Z"}.get(n),
        "created_at": times[n], "updated_at": times[n], "error_message": row[10],
    }  # fmt: skip


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_payments_of_a_week_are_exported_from_its_first_to_its_last_microsecond(
    export_runtime: Runtime, clean_tables: sa.Engine, fmt: str
) -> None:
    # Given payments created just before, at, inside and just after the week of 1-7 December (UTC)
    seed_payments(clean_tables)
    # When that week is exported
    result, data = export(export_runtime, "payments", fmt, WEEK)
    # Then exactly the three created within it are in the file, oldest first (ties by id)
    assert parsed(data, fmt) == expected([payment_record(1), payment_record(5), payment_record(2)], fmt)
    assert {k: result[k] for k in ("export_type", "format", "date_range", "rows", "bytes", "storage",
                                   "file_name")} == {
        "export_type": "payments", "format": fmt, "date_range": WEEK, "rows": 3, "bytes": len(data),
        "storage": "local", "file_name": f"payments-2026-12-01_2026-12-07.{fmt}",
    }  # fmt: skip


def test_the_csv_file_is_rfc4180_byte_for_byte(export_runtime: Runtime, clean_tables: sa.Engine) -> None:
    seed_payments(clean_tables)
    _, data = export(export_runtime, "payments", "csv", {"from": "2026-12-07", "to": "2026-12-07"})
    assert data == (
        b"id,user_id,telegram_id,plan_id,provider,external_id,amount,currency,status,subscription_days,paid_at,"
        b"created_at,updated_at,error_message\r\n"
        b"00000000-0000-4000-8000-000000000002,8,,,cryptobot,,0.00000001,TON,failed,,,2026-12-07T23:59:59.999999Z,"
        b'2026-12-07T23:59:59.999999Z,"declined, ""twice""\nsecond line"\r\n'
    )


def test_every_payment_is_exported_without_a_date_range(
    export_runtime: Runtime, clean_tables: sa.Engine
) -> None:
    seed_payments(clean_tables)
    result, data = export(export_runtime, "payments", "json")
    assert parsed(data, "json") == [payment_record(n) for n in (0, 1, 5, 2, 3)]
    assert result["file_name"] == "payments-all-2026-12-08.json" and result["date_range"] is None
    assert data.startswith(b'[\n{"id":"00000000-0000-4000-8000-000000000000","user_id":6,') and data.endswith(
        b'"error_message":null}\n]\n'
    )


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_an_empty_export_is_a_valid_empty_file(
    export_runtime: Runtime, clean_tables: sa.Engine, fmt: str
) -> None:
    result, data = export(export_runtime, "payments", fmt, WEEK)
    assert result["rows"] == 0 and parsed(data, fmt) == []
    assert data == {"csv": data, "jsonl": b"", "json": b"[]\n"}[fmt]
    assert fmt != "csv" or (data.startswith(b"id,user_id,") and data.count(b"\r\n") == 1)


# -- audit logs -----------------------------------------------------------------------------------------


def seed_audit(engine: sa.Engine, count: int, first: str = "2026-12-01 00:00:00+00") -> None:
    """``count`` audit rows (ids 1..count) a minute apart from ``first``, the third and fourth sharing
    a time."""
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO audit_logs (id, actor, action, entity_type, entity_id, details, ip_address, "
                    "created_at) SELECT n, 'admin:' || n, 'user.disable', 'user', n::text, "
                    "jsonb_build_object('via', 'spa', 'n', n, 'note', "
                    "CASE WHEN n = 2 THEN 'a \"b\", c' END), CASE WHEN n % 2 = 0 THEN '10.0.0.' || n END, "
                    "CAST(:first AS timestamptz) "
                    "+ (CASE WHEN n >= 4 THEN n - 1 ELSE n END - 1) * interval '1 minute' "
                    "FROM generate_series(1, :count) AS n"),
            {"first": first, "count": count},
        )  # fmt: skip


def audit_record(n: int) -> dict[str, Any]:
    minute = (n - 1 if n >= 4 else n) - 1
    return {
        "id": n, "created_at": f"2026-12-01T00:{minute:02d}:00.000000Z", "actor": f"admin:{n}",
        "action": "user.disable", "entity_type": "user", "entity_id": str(n),
        "details": {"n": n, "via": "spa", "note": 'a "b", c' if n == 2 else None},
        "ip_address": f"10.0.0.{n}" if n % 2 == 0 else None,
    }  # fmt: skip


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_audit_logs_are_exported_in_batches_with_their_details_as_json(
    export_runtime: Runtime, clean_tables: sa.Engine, fmt: str
) -> None:
    # Given 25 audit rows (EXPORT_BATCH_ROWS is 10)
    seed_audit(clean_tables, 25)
    calls: list[tuple[int, int]] = []
    # When they are exported
    result, data = export(export_runtime, "audit", fmt, WEEK, progress=lambda p, t: calls.append((p, t)))
    # Then every row is in the file in order, and progress went 10, 20, 25 of 25
    assert parsed(data, fmt) == expected([audit_record(n) for n in range(1, 26)], fmt)
    assert result["rows"] == 25
    assert calls == [(10, 25), (20, 25), (25, 25), (25, 25)]


def test_audit_details_stay_json_text_in_csv(export_runtime: Runtime, clean_tables: sa.Engine) -> None:
    seed_audit(clean_tables, 2)
    _, data = export(export_runtime, "audit", "csv")
    assert [json.loads(r["details"]) for r in parsed(data, "csv")] == [
        {"n": 1, "via": "spa", "note": None}, {"n": 2, "via": "spa", "note": 'a "b", c'}
    ]  # fmt: skip


# -- users ----------------------------------------------------------------------------------------------

USERS = [
    {"username": "early", "createdAt": "2026-11-30T23:59:59.999Z", "expireAt": "2030-01-01T00:00:00.000Z"},
    {"username": "alice", "createdAt": "2026-12-01T00:00:00.000Z", "expireAt": "2030-01-01T00:00:00.000Z",
     "telegramId": 111, "email": "alice@example.com", "tag": "VIP", "description": 'first, "quoted"\nline',
     "trafficLimitBytes": 1073741824, "trafficLimitStrategy": "MONTH",
     "lastTrafficResetAt": "2026-12-02T03:04:05.678Z",
     "userTraffic": {"usedTrafficBytes": 5, "lifetimeUsedTrafficBytes": 50,
                     "onlineAt": "2026-12-05T10:00:00.000Z"}},
    {"username": "bob", "status": "DISABLED", "createdAt": "2026-12-07T23:59:59.999Z",
     "expireAt": "2030-06-01T12:00:00.000Z"},
    {"username": "late", "createdAt": "2026-12-08T00:00:00.000Z", "expireAt": "2030-01-01T00:00:00.000Z"},
]  # fmt: skip


def user_record(user_id: int, name: str) -> dict[str, Any]:
    empty = {"telegram_id": None, "email": None, "tag": None, "description": None, "traffic_limit_bytes": 0,
             "traffic_limit_strategy": "NO_RESET", "used_traffic_bytes": 0, "lifetime_used_traffic_bytes": 0,
             "last_traffic_reset_at": None, "online_at": None}  # fmt: skip
    records = {
        "alice": {"status": "ACTIVE", "telegram_id": 111, "email": "alice@example.com", "tag": "VIP",
                  "description": 'first, "quoted"\nline', "expire_at": "2030-01-01T00:00:00.000000Z",
                  "created_at": "2026-12-01T00:00:00.000000Z", "traffic_limit_bytes": 1073741824,
                  "traffic_limit_strategy": "MONTH", "used_traffic_bytes": 5,
                  "lifetime_used_traffic_bytes": 50, "last_traffic_reset_at": "2026-12-02T03:04:05.678000Z",
                  "online_at": "2026-12-05T10:00:00.000000Z"},
        "bob": {**empty, "status": "DISABLED", "expire_at": "2030-06-01T12:00:00.000000Z",
                "created_at": "2026-12-07T23:59:59.999000Z"},
    }  # fmt: skip
    record = records[name]
    fields = ("telegram_id", "email", "tag", "description", "expire_at", "created_at", "traffic_limit_bytes",
              "traffic_limit_strategy", "used_traffic_bytes", "lifetime_used_traffic_bytes",
              "last_traffic_reset_at", "online_at")  # fmt: skip
    return {"id": user_id, "username": name, "status": record["status"], **{k: record[k] for k in fields}}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_panel_users_created_in_the_range_are_exported_without_their_secrets(
    export_runtime: Runtime, panel: Panel, fmt: str
) -> None:
    # Given four panel users created just before, at the start of, at the end of and just after the week
    ids = panel.add_users(*USERS)
    # When the week's users are exported
    result, data = export(export_runtime, "users", fmt, WEEK)
    # Then alice and bob are in the file, and no subscription secret of any user is
    assert parsed(data, fmt) == expected([user_record(ids[1], "alice"), user_record(ids[2], "bob")], fmt)
    assert result["rows"] == 2
    for user_id in ids:
        shown = panel.user(user_id)
        for secret in ("shortUuid", "vlessUuid", "trojanPassword", "ssPassword", "subscriptionUrl"):
            assert shown[secret].encode() not in data


def test_users_stream_page_by_page_with_progress_over_every_user_read(
    export_runtime: Runtime, panel: Panel
) -> None:
    # Given 25 panel users created before the range and 2 inside it
    panel.seed(count=25)
    inside = panel.add_users(USERS[1], USERS[2])
    calls: list[tuple[int, int]] = []
    # When the week's users are exported (pages of 10)
    result, data = export(export_runtime, "users", "jsonl", WEEK, progress=lambda p, t: calls.append((p, t)))
    # Then the two are exported, every user was read once in three stream calls, progress counts users read
    assert [r["id"] for r in parsed(data, "jsonl")] == inside and result["rows"] == 2
    assert len(panel.calls("/api/users/stream")) == 3
    assert calls == [(10, 27), (20, 27), (27, 27), (27, 27)]


def test_every_user_is_exported_without_a_range(export_runtime: Runtime, panel: Panel) -> None:
    ids = panel.add_users(*USERS)
    result, data = export(export_runtime, "users", "csv")
    assert [int(r["id"]) for r in parsed(data, "csv")] == ids and result["rows"] == 4


# -- servers --------------------------------------------------------------------------------------------


def test_servers_are_the_panel_nodes_with_their_places(
    export_runtime: Runtime, panel: Panel, clean_tables: sa.Engine
) -> None:
    # Given two nodes, one of them placed in server_geolocations (and a row of a node gone from the panel)
    first, second = panel.add_nodes(
        {"name": "de-1", "countryCode": "DE", "state": "online", "usersOnline": 7, "trafficUsedBytes": 12345},
        {"name": "fi-1", "countryCode": "FI", "state": "disabled"},
    )
    with clean_tables.begin() as conn:
        conn.execute(sa.text("INSERT INTO server_geolocations (node_uuid, name, country_code, country, city, "
                             "region, latitude, longitude) VALUES (:a, 'de-1', 'DE', 'Germany', 'Frankfurt', "
                             "'Hesse', 50.11, 8.682), "
                             "('gone', 'gone', 'NL', 'Netherlands', NULL, NULL, 52.37, 4.89)"),
                     {"a": first})  # fmt: skip
    nodes = {n["uuid"]: n for n in panel.admin("GET", "nodes")}
    # When the servers are exported, as JSON and as CSV
    _, data = export(export_runtime, "servers", "json")
    _, csv_data = export(export_runtime, "servers", "csv")

    def created(uuid_: str) -> str:
        return nodes[uuid_]["createdAt"].replace("Z", "000Z")

    # Then each node is a row, the placed one with its place, the other with empty place columns
    records = [
        {
            "uuid": first,
            "name": "de-1",
            "address": nodes[first]["address"],
            "port": 2222,
            "country_code": "DE",
            "status": "online",
            "is_connected": True,
            "is_disabled": False,
            "users_online": 7,
            "traffic_used_bytes": 12345,
            "traffic_limit_bytes": None,
            "created_at": created(first),
            "country": "Germany",
            "city": "Frankfurt",
            "region": "Hesse",
            "latitude": 50.11,
            "longitude": 8.682,
        },
        {
            "uuid": second,
            "name": "fi-1",
            "address": nodes[second]["address"],
            "port": 2222,
            "country_code": "FI",
            "status": "maintenance",
            "is_connected": False,
            "is_disabled": True,
            "users_online": 0,
            "traffic_used_bytes": 0,
            "traffic_limit_bytes": None,
            "created_at": created(second),
            "country": None,
            "city": None,
            "region": None,
            "latitude": None,
            "longitude": None,
        },
    ]
    assert parsed(data, "json") == records
    assert parsed(csv_data, "csv") == expected(records, "csv")


def test_a_date_range_keeps_the_nodes_created_in_it(export_runtime: Runtime, panel: Panel) -> None:
    panel.add_nodes({"name": "de-1"})
    created = panel.admin("GET", "nodes")[0]["createdAt"][:10]
    inside, _ = export(export_runtime, "servers", "csv", {"from": created, "to": created})
    before, _ = export(export_runtime, "servers", "csv", {"from": "2020-01-01", "to": "2020-01-31"})
    assert (inside["rows"], before["rows"]) == (1, 0)


# -- arguments ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "reason"),
    [
        (["nope"], {}, "export_type = 'nope': Input should be 'users', 'payments', 'servers' or 'audit'"),
        (["payments", None, "xml"], {}, "format = 'xml': Input should be 'csv', 'jsonl' or 'json'"),
        (["payments", {"from": "2026-12-01"}], {}, "date_range.to = {'from': '2026-12-01'}: Field required"),
        (["payments", {"from": "2026-12-01", "to": "12/07/2026"}], {},
         "date_range.to = '12/07/2026': String should match pattern"),
        (["payments", {"from": "2026-02-30", "to": "2026-03-01"}], {},
         "date_range.from: '2026-02-30' is not a date (YYYY-MM-DD)"),
        (["payments", {"from": "2026-12-07", "to": "2026-12-01"}], {},
         "date_range: from 2026-12-07 is after to 2026-12-01"),
        (["payments", {"from": "2026-12-01", "to": "2026-12-07", "tz": "CET"}], {},
         "date_range.tz = 'CET': Extra inputs are not permitted"),
        (["payments", "2026-12"], {}, "date_range = '2026-12': Input should be a valid dictionary"),
        ([], {"export_type": "audit", "fmt": "csv"}, "unexpected keyword argument 'fmt'"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_naming_the_argument(
    args: list[Any], kwargs: dict[str, Any], reason: str
) -> None:
    actor = generate_data_export
    for strict in (True, False):  # the API checks strictly, the worker leniently
        found = mismatch(actor.actor_name, actor.fn, args, kwargs, strict=strict)
        assert found is not None and reason in found, found


def test_good_arguments_pass_both_checks() -> None:
    actor = generate_data_export
    for args in (
        ["users"],
        ["payments", WEEK, "json"],
        ["audit", None, "jsonl"],
        ["servers", {"from": "2026-12-08", "to": "2026-12-08"}],
    ):
        assert mismatch(actor.actor_name, actor.fn, args, {}, strict=True) is None


def test_the_plain_function_refuses_bad_arguments_as_permanent() -> None:
    with pytest.raises(
        BadMessage, match=r"^format: 'xls' is not one of csv \(CSV\), jsonl \(JSON Lines\), json"
    ):
        ExportRequest.of("payments", None, "xls")
    with pytest.raises(BadMessage, match=r"^date_range: from 2026-12-02 is after to 2026-12-01$"):
        ExportRequest.of("users", {"from": "2026-12-02", "to": "2026-12-01"}, "csv")
    with pytest.raises(BadMessage, match=r"^date_range.to: '2026-12-1' is not a date"):
        ExportRequest.of("users", {"from": "2026-12-01", "to": "2026-12-1"}, "csv")
    with pytest.raises(BadMessage, match=r"^date_range.to: '9999-12-31' is not a date"):
        ExportRequest.of("users", {"from": "2026-12-01", "to": "9999-12-31"}, "csv")


# -- failed and killed runs -----------------------------------------------------------------------------


def export_files(root: Path) -> list[str]:
    """Every file under EXPORT_DIR, relative (temporary ones included)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_run_that_fails_midway_leaves_no_file_at_all(
    export_runtime: Runtime, clean_tables: sa.Engine
) -> None:
    # Given 25 audit rows, and an export that fails after writing its first batch
    seed_audit(clean_tables, 25)
    job_id = str(uuid.uuid4())

    def fail(processed: int, total: int) -> None:
        if processed == 10:
            raise RuntimeError("worker stopped")

    with pytest.raises(RuntimeError, match="worker stopped"):
        export(export_runtime, "audit", "csv", job_id=job_id, progress=fail)
    # Then neither a finished nor a temporary file is left, and nothing can be served for the job
    assert export_files(export_runtime.settings.export_dir) == []
    assert LocalStorage(export_runtime.settings.export_dir).open_export(job_id) is None


KILLED_RUN = """
import signal, sys
import worker_app
from datetime import UTC, datetime
from actors.bulk.exports import ExportRequest, Sources, export_data
from worker_app.exports import storage_for
from worker_app.runtime import get_runtime

def stall(processed, total):
    print("wrote", processed, flush=True)
    signal.pause()  # the parent SIGKILLs this process here (nothing else wakes it)

runtime = get_runtime()
settings = runtime.settings
export_data(ExportRequest.of("audit", None, "csv"), sys.argv[1],
            sources=Sources(runtime.database, runtime.remnawave, settings.export_batch_rows),
            storage=storage_for(settings), settings=settings, now=datetime.now(UTC), progress=stall)
"""


def test_a_killed_run_leaves_only_a_temporary_file_which_cleanup_removes(
    export_runtime: Runtime, clean_tables: sa.Engine, tmp_path: Path
) -> None:
    # Given an export in a process of its own, SIGKILLed after writing its first batch
    seed_audit(clean_tables, 25)
    job_id, root = str(uuid.uuid4()), export_runtime.settings.export_dir
    env = {**os.environ, "EXPORT_DIR": str(root), "EXPORT_BATCH_ROWS": "10"}
    with (tmp_path / "killed.log").open("w+b") as log:
        proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, job_id], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip
        try:
            wait_for(lambda: b"wrote 10" in (tmp_path / "killed.log").read_bytes() or proc.poll() is not None,
                     60, "the export to write its first batch")  # fmt: skip
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    # Then only its temporary file is left: nothing is served for the job
    [left] = export_files(root)
    assert left.startswith(f"{job_id}/.audit-all-") and left.endswith(".part")
    storage = LocalStorage(root)
    assert storage.open_export(job_id) is None
    # And cleanup keeps it while the run could still be going, and removes it (and its directory) later
    assert storage.sweep(time.time(), 24 * 3600, 3600).counts() == {"expired": 0, "leftovers": 0}
    assert storage.sweep(time.time() + 3601, 24 * 3600, 3600).counts() == {"expired": 0, "leftovers": 1}
    assert export_files(root) == [] and list(root.iterdir()) == []


def test_a_repeated_run_of_a_job_replaces_its_file(export_runtime: Runtime, clean_tables: sa.Engine) -> None:
    seed_audit(clean_tables, 3)
    job_id = str(uuid.uuid4())
    export(export_runtime, "audit", "csv", job_id=job_id)
    export(export_runtime, "audit", "csv", {"from": "2026-12-01", "to": "2026-12-01"}, job_id=job_id)
    assert export_files(export_runtime.settings.export_dir) == [f"{job_id}/audit-2026-12-01_2026-12-01.csv"]


# -- the link -------------------------------------------------------------------------------------------


def test_the_result_links_to_the_file_until_ttl_after_it_was_written(
    export_runtime: Runtime, clean_tables: sa.Engine
) -> None:
    job_id = str(uuid.uuid4())
    before = time.time()
    result, _ = export(export_runtime, "audit", "csv", job_id=job_id)
    link = urlsplit(result["url"])
    query = {k: v[0] for k, v in parse_qs(link.query).items()}
    assert f"{link.scheme}://{link.netloc}{link.path}" == f"{PUBLIC_URL}/exports/{job_id}"
    expires = int(query["expires"])
    assert before + 24 * 3600 - 1 <= expires <= time.time() + 24 * 3600
    assert result["expires_at"] == datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
    assert (
        link_refusal(link_key(export_runtime.settings), job_id, query["expires"], query["sig"], time.time())
        is None
    )
    assert link_refusal(LINK_SECRET.encode(), job_id, query["expires"], query["sig"], time.time()) is None


# -- tier 2: the actor on the real middleware -------------------------------------------------------------


def queued_notices(engine: sa.Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as conn:
        query = sa.text(
            "SELECT telegram_id, notification_type, message FROM notification_queue ORDER BY telegram_id"
        )
        return [(int(r[0]), str(r[1]), str(r[2])) for r in conn.execute(query)]


def test_a_tracked_export_succeeds_with_its_result_progress_log_line_metrics_and_one_notice(
    export_runtime: Runtime,
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    clean_tables: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given payments, and an admin who asks for the week's as JSON Lines through a tracked job
    seed_payments(clean_tables)
    exported, runs = (
        rows_total().labels("payments")._value.get(),
        exports_total().labels("payments", "succeeded"),
    )
    succeeded = runs._value.get()
    with caplog.at_level(logging.INFO, logger="actors.bulk"):
        args = ("payments", WEEK, "jsonl")
        job_id = tracking.enqueue_job(export_runtime.database, generate_data_export, args,
                                      initiated_by="admin:42").message_id  # fmt: skip
        stub_broker.join("bulk", fail_fast=False)
        stub_worker.join()
    # Then the job succeeded with the export's result and full progress
    job = tracking.get_job(export_runtime.database, job_id)
    assert job is not None and job.status == "succeeded", job and job.error
    result = dict(job.result)
    assert {k: result[k] for k in ("export_type", "format", "rows", "storage", "file_name")} == {
        "export_type": "payments", "format": "jsonl", "rows": 3, "storage": "local",
        "file_name": "payments-2026-12-01_2026-12-07.jsonl",
    }  # fmt: skip
    assert job.progress == {"processed": 3, "total": 3, "failed": 0}
    data = (export_runtime.settings.export_dir / job_id / result["file_name"]).read_bytes()
    assert parsed(data, "jsonl") == [payment_record(n) for n in (1, 5, 2)] and result["bytes"] == len(data)
    # And admin 42 alone has one notice with the link (HTML-escaped)
    [(chat, kind, text)] = queued_notices(clean_tables)
    assert (chat, kind) == (42, "bulk_export")
    assert result["url"].replace("&", "&amp;") in text and "3 rows" in text
    # And one log line with the counts, and the metrics counted it
    [line] = [
        r for r in caplog.records if r.name == "actors.bulk" and r.getMessage().startswith("export done")
    ]
    logged = json.loads(JsonFormatter().format(line))
    assert (logged["rows"], logged["bytes"], logged["export_type"], logged["result"]) == (
        3, len(data), "payments", "succeeded",
    )  # fmt: skip
    assert "sig=" not in JsonFormatter().format(line)
    assert rows_total().labels("payments")._value.get() == exported + 3
    assert runs._value.get() == succeeded + 1


def test_a_redelivered_export_notifies_the_admin_once(
    export_runtime: Runtime, stub_broker: StubBroker, stub_worker: dramatiq.Worker, clean_tables: sa.Engine
) -> None:
    seed_audit(clean_tables, 3)
    message = tracking.enqueue_job(
        export_runtime.database, generate_data_export, ("audit",), initiated_by="api"
    )
    stub_broker.join("bulk", fail_fast=False)
    stub_worker.join()
    result = run_export(export_runtime, ExportRequest.of("audit", None, "csv"), message.message_id)
    assert result["rows"] == 3
    assert [chat for chat, _, _ in queued_notices(clean_tables)] == [777000]  # ADMIN_TELEGRAM_IDS, once


def test_an_export_with_bad_arguments_dies_at_once_naming_the_argument(
    export_runtime: Runtime, stub_broker: StubBroker, stub_worker: dramatiq.Worker, clean_tables: sa.Engine
) -> None:
    backwards = ("payments", {"from": "2026-12-07", "to": "2026-12-01"}, "csv")
    job_id = tracking.enqueue_job(export_runtime.database, generate_data_export, backwards).message_id
    stub_broker.join("bulk", fail_fast=False)
    stub_worker.join()
    job = tracking.get_job(export_runtime.database, job_id)
    assert job is not None and job.status == "dead" and job.attempts <= 1
    assert "date_range: from 2026-12-07 is after to 2026-12-01" in (job.error or "")
    assert export_files(export_runtime.settings.export_dir) == []
    with clean_tables.connect() as conn:
        reasons = conn.execute(
            sa.text("SELECT reason FROM dead_letters WHERE message_id = :m"), {"m": job_id}
        )
        assert [r[0] for r in reasons] == ["bad_message"]


def test_a_failed_export_is_counted_and_logged_and_notifies_nobody(
    export_runtime: Runtime, panel: Panel, clean_tables: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a panel that is down
    panel.faults(down=True)
    failed = exports_total().labels("users", "failed")
    before = failed._value.get()
    job_id = str(uuid.uuid4())
    # When its users are exported
    with caplog.at_level(logging.INFO, logger="actors.bulk"), pytest.raises(RemnawaveUnavailable):
        run_export(export_runtime, ExportRequest.of("users", None, "csv"), job_id)
    # Then the run is counted failed, logged with why, and nothing is kept or sent
    assert failed._value.get() == before + 1
    [line] = [r for r in caplog.records if r.name == "actors.bulk"]
    logged = json.loads(JsonFormatter().format(line))
    assert (line.levelname, logged["result"], logged["job_id"]) == ("WARNING", "failed", job_id)
    assert logged["error"].startswith("RemnawaveUnavailable: ")
    assert export_files(export_runtime.settings.export_dir) == [] and queued_notices(clean_tables) == []
