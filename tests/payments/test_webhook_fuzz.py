"""The webhook endpoint under hypothesis: 1,200 generated requests — arbitrary bytes, arbitrary JSON,
near-valid updates with every field of every type, signed correctly (so the parser and the database
see them) or not, with any content type — and not one 5xx; a request that is not a genuine
``invoice_paid`` of a known payment never enqueues anything."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.cryptobot import TOKEN, signature_of
from tests.payments.test_webhooks import PATH, client, enqueued  # noqa: F401  (client is a fixture)

SEEN: set[int] = set()
"""Statuses the fuzzing got: checked by the next test, so the generator is known to reach every branch."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
invoices = st.fixed_dictionaries(
    {"invoice_id": st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=30) | values},
    optional={"payload": st.text(max_size=40) | values, "status": values, "amount": values},
)
updates = st.fixed_dictionaries(
    {"update_type": st.sampled_from(["invoice_paid", "invoice_expired"]) | values,
     "request_date": st.builds(now_iso) | st.text(max_size=40) | values, "payload": invoices | values},
    optional={"update_id": values},
)  # fmt: skip
bodies = (
    st.binary(max_size=300)
    | values.map(lambda v: json.dumps(v).encode())
    | updates.map(lambda u: json.dumps(u, ensure_ascii=False).encode("utf-8", "surrogatepass"))
)
content_types = st.sampled_from(["application/json", "application/json;charset=utf-8", "text/plain", ""])


@settings(max_examples=1200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(body=bodies, signed=st.booleans(), content_type=content_types)
def test_no_generated_request_gets_a_5xx_or_enqueues_what_is_not_a_known_paid_invoice(
    client: FlaskClient, stub_broker: StubBroker, clean_tables: sa.Engine, body: bytes, signed: bool,  # noqa: F811
    content_type: str,
) -> None:  # fmt: skip
    headers = {"crypto-pay-api-signature": signature_of(TOKEN, body) if signed else "0" * 64}
    answer = client.post(PATH, data=body, headers=headers, content_type=content_type or None)
    assert answer.status_code in (200, 400, 401, 413, 415), (answer.status_code, answer.get_data()[:300])
    SEEN.add(answer.status_code)
    assert answer.is_json
    assert enqueued(stub_broker) == []  # no payment exists: nothing is ever enqueued


def test_the_fuzzing_reached_every_answer() -> None:
    """Run after the fuzz test (file order): its requests were refused for each reason and also got
    as far as the database (200: valid, signed, fresh — an unknown invoice)."""
    assert {200, 400, 401, 415} == SEEN, SEEN


def test_the_fuzzed_payloads_were_logged(client: FlaskClient, clean_tables: sa.Engine) -> None:  # noqa: F811
    invoice = {"invoice_id": 5, "payload": str(uuid.uuid4()), "note": "a\u0000b"}
    raw = json.dumps({"update_type": "invoice_paid", "request_date": now_iso(), "payload": invoice}).encode()
    answer = client.post(PATH, data=raw, headers={"crypto-pay-api-signature": signature_of(TOKEN, raw)},
                         content_type="application/json")  # fmt: skip
    assert answer.status_code == 200
    with clean_tables.connect() as conn:
        [logged] = conn.execute(sa.text("SELECT payload FROM webhook_logs")).scalars()
    assert isinstance(logged, dict) and "raw" in logged  # jsonb cannot hold NUL: kept as the raw text
