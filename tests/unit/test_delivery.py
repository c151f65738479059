"""The consumer's ``Delivery``: the message's fields as plain attributes, the same objects."""

from __future__ import annotations

from typing import Any

from dramatiq import Message
from dramatiq.brokers.rabbitmq import _RabbitmqMessage

from worker_app.broker import Delivery

FIELDS = ("queue_name", "actor_name", "args", "kwargs", "options", "message_id", "message_timestamp")


def test_delivery_reads_like_dramatiqs_proxy_and_shares_the_options() -> None:
    message: Message[Any] = Message(
        queue_name="payments", actor_name="poll", args=(1, "x"), kwargs={"k": 2}, options={"retries": 1}
    )
    delivery = Delivery(True, 7, message)
    proxy = _RabbitmqMessage(True, 7, message)  # type: ignore[no-untyped-call]
    for name in FIELDS:
        assert name in vars(delivery), f"{name} still goes through __getattr__"
        assert getattr(delivery, name) is getattr(proxy, name)
    assert delivery.redelivered and delivery._tag == 7 and delivery._message is message

    delivery.options["dead_reason"] = "bad_message"  # what a middleware does to the message
    assert message.options["dead_reason"] == "bad_message"
    assert message.asdict() == delivery._message.asdict()
