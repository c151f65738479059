"""Test configuration: real PostgreSQL, Redis and RabbitMQ, isolated from a running dev stack.

The environment is set here, before anything imports ``worker_app`` (whose import builds the
broker from the environment): a throw-away database, Redis db 15 and a private RabbitMQ vhost.

Under pytest-xdist (``bin/test`` runs ``-n 2``) each worker gets its own of each: worker ``gwN``
uses the database ``<name>_gwN`` and Redis db ``15 - N`` (of the given URLs, or of the defaults);
the vhost and the metrics directory are per process anyway. Tests that stop or reconfigure a
service every worker shares are marked ``exclusive`` and run alone afterwards.
"""

from __future__ import annotations

import os
import re
import uuid

import pytest
from sqlalchemy.engine import make_url

TEST_RUN = uuid.uuid4().hex[:8]
#: ``gw0``, ``gw1``, … in a pytest-xdist worker; empty in a plain run.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
#: Redis dbs 15 down to 11 hold the workers' data; more workers than that would share one.
MAX_XDIST_WORKERS = 5


def _per_worker(database_url: str, redis_url: str) -> tuple[str, str]:
    """This xdist worker's database and Redis db, derived from the run's."""
    n = int(XDIST_WORKER.removeprefix("gw"))
    if n >= MAX_XDIST_WORKERS:
        raise RuntimeError(f"at most {MAX_XDIST_WORKERS} xdist workers (each needs a Redis db of its own)")
    base, _, db = redis_url.rpartition("/")
    if not re.fullmatch(r"\d+", db) or int(db) < n:
        raise RuntimeError(f"REDIS_URL {redis_url!r}: worker {XDIST_WORKER} needs a db number >= {n}")
    url = make_url(database_url)
    database = url.set(database=f"{url.database}_{XDIST_WORKER}").render_as_string(hide_password=False)
    return database, f"{base}/{int(db) - n}"


_database = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/cybervpn_test")
_redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
if XDIST_WORKER:
    _database, _redis = _per_worker(_database, _redis)
os.environ["DATABASE_URL"] = _database
os.environ["REDIS_URL"] = _redis
if "RABBITMQ_URL" in os.environ and XDIST_WORKER:
    os.environ["RABBITMQ_URL"] += f"-{XDIST_WORKER}"
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
    "tests.fixtures.s3",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker, an ``exclusive`` test would stop a service under the other workers' feet:
    it is skipped, saying where it runs (``bin/test`` deselects them there and runs them alone)."""
    if not XDIST_WORKER:
        return
    skip = pytest.mark.skip(reason="exclusive: stops or reconfigures a shared service; run it without -n "
                            "(bin/test runs these alone after the parallel phase)")  # fmt: skip
    for item in items:
        if item.get_closest_marker("exclusive"):
            item.add_marker(skip)
