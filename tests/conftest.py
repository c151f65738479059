"""Test configuration: real PostgreSQL, Redis and RabbitMQ, isolated from a running dev stack.

The environment is set here, before anything imports ``worker_app`` (whose import builds the
broker from the environment): a throw-away database, Redis db 15 and a private RabbitMQ vhost.
"""

from __future__ import annotations

import os
import uuid

TEST_RUN = uuid.uuid4().hex[:8]
os.environ.setdefault("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/cybervpn_test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("RABBITMQ_URL", f"amqp://guest:guest@127.0.0.1:5672/cybervpn-test-{TEST_RUN}")
os.environ.setdefault("METRICS_PORT", "0")
os.environ.setdefault("METRICS_DIR", f"/tmp/cybervpn-test-prometheus-{TEST_RUN}")
os.environ.setdefault("LOG_FORMAT", "text")
os.environ.setdefault("TELEGRAM_BOT_TOKEN", "424242:test-only-secret-token")
os.environ.setdefault("REMNAWAVE_API_TOKEN", "test-only-remnawave-secret")
os.environ.setdefault("CRYPTOBOT_TOKEN", "4242:test-only-cryptobot-secret")

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.stub",
    "tests.fixtures.sandbox",
    "tests.fixtures.notifications",
    "tests.fixtures.remnawave",
    "tests.fixtures.cryptobot",
    "tests.fixtures.scheduler",
    "tests.fixtures.chaos",
    "tests.fixtures.secrets",
]
