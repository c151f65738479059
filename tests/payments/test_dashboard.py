"""The Payments page and the ``payments`` overview tile, read from ``payments`` and
``payment_activations`` as the payments domain writes them: payments activated for real (the sandbox
panel and Crypto Pay), one stuck between its stored plan and the panel, one sent to review by a
mismatched invoice, two pending. The overview (``/queues``, which reads RabbitMQ) shows the tile red."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import redis
import sqlalchemy as sa

from actors.payments.activation import begin
from actors.payments.completion import activate
from tests.fixtures.cryptobot import CryptoPay
from tests.fixtures.remnawave import Panel, user_spec
from tests.monitoring.test_dashboard_nodes import client_of, on_one_utc_day, tile
from tests.payments.test_activation import new_payment, paid_invoice
from tests.subscriptions.test_dashboard import fresh_start
from worker_app.clients.cryptobot import CryptoPayClient
from worker_app.runtime import Runtime


def figure(html: str, section: str) -> int:
    found = re.search(rf'<section id="{section}"[^>]*>\s*<h3>[^<]*</h3>\s*<div class="figure">(\d+)<', html)
    assert found is not None, section
    return int(found.group(1))


def test_the_page_shows_pending_completed_review_and_unactivated_payments_and_the_tile_turns_red(
    panel: Panel, panel_runtime: Runtime, cryptopay: CryptoPay, cryptobot: CryptoPayClient,
    clean_tables: sa.Engine, redis_client: redis.Redis, rabbitmq_vhost: str,
) -> None:  # fmt: skip
    runtime, db = panel_runtime, clean_tables

    def scenario(midnight: float) -> dict[str, Any]:
        fresh_start(panel, cryptopay, db, redis_client)
        [user] = panel.add_users(user_spec())

        def pay(amount: str, currency: str, *, paid: str | None = None) -> tuple[Any, str]:
            payment = new_payment(db, user, amount=amount, currency=currency)
            invoice = paid_invoice(cryptopay, cryptobot, payment, amount=paid or amount, asset=currency)
            return payment, activate(runtime.database, runtime.remnawave, runtime.alerts, payment, invoice,
                                     source="webhook")  # fmt: skip

        # Given three payments completed today in two currencies, and two pending (one without invoice)
        outcomes = [pay("5.00", "USDT")[1], pay("2.50", "USDT")[1], pay("1.25", "TON")[1]]
        assert outcomes == ["completed"] * 3
        waiting = new_payment(db, user, amount="4.00")
        with db.begin() as conn:
            conn.execute(sa.text("UPDATE payments SET external_id = '7001' WHERE id = :id"), {"id": waiting})
        new_payment(db, user, amount="4.00")
        calm = tile(runtime, "payments")
        # When one paid payment has its plan stored but the panel not told, and one invoice mismatches
        stuck = new_payment(db, user, amount="3.00")
        begin(runtime.database, runtime.remnawave, stuck,
              paid_invoice(cryptopay, cryptobot, stuck, amount="3.00"), source="poller",
              now=datetime.now(UTC))  # fmt: skip
        just_begun = tile(runtime, "payments")  # every payment is activating for a moment
        with db.begin() as conn:
            earlier = "UPDATE payment_activations SET created_at = created_at - interval '10 minutes' "
            conn.execute(sa.text(earlier + "WHERE payment_id = :id"), {"id": stuck})
        long_begun = tile(runtime, "payments")
        wrong, outcome = pay("9.00", "USDT", paid="5.00")
        assert outcome == "review"
        client = client_of(runtime)
        html, overview = client.get("/payments").text, client.get("/queues").text
        return {"calm": calm, "red": tile(runtime, "payments"), "html": html, "overview": overview,
                "stuck": stuck, "wrong": wrong, "just_begun": just_begun,
                "long_begun": long_begun}  # fmt: skip

    seen = on_one_utc_day(scenario)
    # Then the tile was calm with three completed, and is red now
    calm, red = seen["calm"], seen["red"]
    assert (calm.value, calm.trouble, calm.href) == ("3 completed today", False, "/payments")
    assert calm.detail is not None and calm.detail.startswith("2 pending, oldest ")
    assert calm.detail.endswith("; today 1.25 TON, 7.5 USDT")
    assert (red.value, red.trouble) == ("1 in review, 1 unactivated", True)
    # and an activation is trouble only once it has been under way for over UNACTIVATED_TROUBLE_S
    assert (seen["just_begun"].value, seen["just_begun"].trouble) == ("0 in review, 1 unactivated", False)
    assert (seen["long_begun"].value, seen["long_begun"].trouble) == ("0 in review, 1 unactivated", True)
    assert '<div id="tile-payments" class="tile trouble"' in seen["overview"]
    assert '<a href="/payments">1 in review, 1 unactivated</a>' in seen["overview"]
    # And the page counts them: pending excludes the two paid ones (their status is still pending)
    html = seen["html"]
    assert figure(html, "pending") == 2 and "1 without an invoice" in html
    assert figure(html, "completed") == 3 and '<small class="revenue">1.25 TON, 7.5 USDT</small>' in html
    assert '<tr id="completed-USDT"><td>USDT</td><td class="n">2</td><td class="sum">7.5</td></tr>' in html
    assert figure(html, "review-count") == 1 and figure(html, "unactivated-count") == 1
    assert '<section id="review-count" class="trouble">' in html
    assert "Created today: 3 completed, 4 pending." in html
    # And lists each under its heading, with why for the review
    review = html[html.index('<table id="review">') :].split("</table>")[0]
    assert f'id="payment-{seen["wrong"]}"' in review and "is for 5, the payment for 9" in review
    unactivated = html[html.index('<table id="unactivated">') :].split("</table>")[0]
    assert f'id="payment-{seen["stuck"]}"' in unactivated and "<td>poller</td>" in unactivated
    assert f'id="payment-{seen["stuck"]}"' not in review
