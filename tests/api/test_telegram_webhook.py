"""``POST /webhooks/telegram``: authenticated, bounded, published to the chat's shard with its trace
id before Telegram gets 200; then, with a real ``serve`` and worker, the demo bot answers through
the sandbox's Telegram."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pika
import pytest
import requests
import sqlalchemy as sa
from flask.testing import FlaskClient

from sandbox.server import RunningSandbox
from tests.fixtures.api import serving
from tests.fixtures.worker import wait_for, worker_group

SECRET = "tg-secret_0123456789"
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET}


def update(update_id: int, chat: int = 777, text: str = "hello") -> dict[str, Any]:
    return {"update_id": update_id, "message": {"message_id": 1, "date": 0, "text": text,
                                                "chat": {"id": chat, "type": "private"}}}  # fmt: skip


def take_all(queues: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every message now in ``queues`` (acked: taken away), with the queue it was in."""
    connection = pika.BlockingConnection(pika.URLParameters(os.environ["RABBITMQ_URL"]))
    found = []
    try:
        channel = connection.channel()
        for queue in queues:
            while True:
                method, _, body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    break
                found.append((queue, json.loads(body)))
    finally:
        connection.close()
    return found


@pytest.fixture
def client(make_runtime: Any) -> FlaskClient:
    import worker_app
    from actors.bot_updates import DOMAIN
    from worker_app.web.api import create_app

    for queue in DOMAIN.queues():
        worker_app.broker.declare_queue(queue, ensure=True)
    take_all(DOMAIN.queues())
    runtime = make_runtime(
        API_TOKEN="t", TELEGRAM_WEBHOOK_SECRET=SECRET, TELEGRAM_WEBHOOK_MAX_BODY_BYTES="2048"
    )
    return create_app(runtime, worker_app.broker).test_client()


def test_an_update_is_published_to_its_chats_shard_with_its_trace_id(client: FlaskClient) -> None:
    from actors.bot_updates import DOMAIN

    answer = client.post("/webhooks/telegram", json=update(41, chat=777), headers=HEADERS)
    assert (answer.status_code, answer.json) == (200, {"ok": True})
    published = take_all(DOMAIN.queues())
    assert len(published) == 1
    queue, message = published[0]
    assert queue == DOMAIN.queue(DOMAIN.shard_of("chat:777"))
    assert message["actor_name"] == "handle_bot_update"
    assert message["args"] == [update(41, chat=777)]
    assert message["options"]["trace_id"] == "tg-41"


@pytest.mark.parametrize(
    ("headers", "body", "content_type", "status", "error"),
    [
        ({}, update(1), "application/json", 401, "X-Telegram-Bot-Api-Secret-Token missing"),
        ({"X-Telegram-Bot-Api-Secret-Token": "nope"}, update(1), "application/json", 401, "wrong"),
        (HEADERS, update(1, text="x" * 3000), "application/json", 413, "TELEGRAM_WEBHOOK_MAX_BODY_BYTES"),
        (HEADERS, update(1), "text/plain", 415, "expected application/json"),
        (HEADERS, "{not json", "application/json", 400, "body is not JSON"),
        (HEADERS, [1, 2], "application/json", 400, "an update is a JSON object, not list"),
        (HEADERS, {"message": {}}, "application/json", 400, "update_id must be a non-negative integer"),
        (HEADERS, {"update_id": "7"}, "application/json", 400, "update_id must be a non-negative integer"),
        (HEADERS, {"update_id": -1}, "application/json", 400, "update_id must be a non-negative integer"),
    ],
)
def test_a_bad_delivery_is_refused_naming_why_and_publishes_nothing(
    client: FlaskClient, headers: dict[str, str], body: Any, content_type: str, status: int, error: str
) -> None:
    from actors.bot_updates import DOMAIN

    data = body if isinstance(body, str) else json.dumps(body)
    answer = client.post("/webhooks/telegram", data=data, content_type=content_type, headers=headers)
    assert answer.status_code == status
    assert answer.json is not None and answer.json["ok"] is False and error in answer.json["error"]
    assert take_all(DOMAIN.queues()) == []


def test_without_a_configured_secret_every_delivery_is_503(make_runtime: Any) -> None:
    import worker_app
    from worker_app.web.api import create_app

    answer = (
        create_app(make_runtime(API_TOKEN="t"), worker_app.broker)
        .test_client()
        .post("/webhooks/telegram", json=update(1), headers=HEADERS)
    )
    assert answer.status_code == 503
    assert answer.json == {
        "ok": False,
        "error": "TELEGRAM_WEBHOOK_SECRET is not set: updates cannot be authenticated",
    }


def test_the_webhook_is_in_the_openapi_document(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").json
    assert doc is not None
    operation = doc["paths"]["/webhooks/telegram"]["post"]
    assert operation["security"] == [{"telegram_secret": []}]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["required"] == ["update_id"]
    assert doc["components"]["securitySchemes"]["telegram_secret"] == {
        "type": "apiKey", "in": "header", "name": "X-Telegram-Bot-Api-Secret-Token"
    }  # fmt: skip


def test_rabbitmq_unreachable_is_503_so_telegram_delivers_again(
    clean_tables: sa.Engine, tmp_path: Path
) -> None:
    env = {"TELEGRAM_WEBHOOK_SECRET": SECRET, "RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:1/%2F",
           "API_PUBLISH_TIMEOUT_S": "5"}  # fmt: skip
    with serving(tmp_path / "serve.log", env) as base:
        answer = requests.post(f"{base}/webhooks/telegram", json=update(5), headers=HEADERS, timeout=30)
    assert answer.status_code == 503
    assert answer.json() == {"ok": False, "error": "not enqueued; deliver again"}


def test_the_demo_bot_answers_through_serve_and_a_worker(
    rabbitmq_vhost: str, clean_tables: sa.Engine, sandbox: RunningSandbox, redis_client: Any, tmp_path: Path
) -> None:
    sandbox.state.add_token(os.environ["TELEGRAM_BOT_TOKEN"])
    env = {"TELEGRAM_WEBHOOK_SECRET": SECRET, "BOT_UPDATE_HANDLER": "actors.bot_updates.example:handle",
           "TELEGRAM_API_URL": sandbox.url, "TELEGRAM_GLOBAL_RATE_PER_S": "0",
           "TELEGRAM_PER_CHAT_RATE_PER_S": "0"}  # fmt: skip
    with (
        worker_group(tmp_path / "worker.log", env, ("bot_updates",), processes=1, threads=4, modules=()),
        serving(tmp_path / "serve.log", env) as base,
    ):
        for n, text in enumerate(["/start", "one", "two", "three"], start=100):
            answer = requests.post(f"{base}/webhooks/telegram", json=update(n, chat=9001, text=text),
                                   headers=HEADERS, timeout=30)  # fmt: skip
            assert answer.status_code == 200
        sent = wait_for(lambda: len(sandbox.state.received("9001")) >= 4 and sandbox.state.received("9001"),
                        60, "the bot's four answers")  # fmt: skip
    assert [e["text"] for e in sent][1:] == ["one", "two", "three"]  # in the chat's order
    assert sent[0]["text"].startswith("Hello!")
