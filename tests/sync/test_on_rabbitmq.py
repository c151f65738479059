"""Tier 3: the three sync jobs sent through the real RabbitMQ to a real worker consuming ``sync``,
as the scheduler sends them, against the sandbox panel, PostgreSQL and Redis."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from actors.sync import sync_node_configs, sync_server_geolocations, sync_user_stats
from actors.sync.node_configs import config_key
from actors.sync.user_stats import SUMMARY_KEY
from tests.fixtures.remnawave import Panel
from tests.fixtures.worker import wait_for, worker_group


@pytest.mark.rabbitmq
def test_a_worker_on_the_sync_queue_runs_every_sync_job(
    tmp_path: Path, rabbitmq_vhost: str, panel: Panel, clean_tables: sa.Engine, redis_client: redis.Redis
) -> None:
    # Given a panel with users and two nodes, and a worker consuming only the sync queue
    panel.admin("POST", "tokens", {"token": os.environ["REMNAWAVE_API_TOKEN"], "scopes": None})
    panel.seed(count=25)
    uuids: list[str] = panel.admin(
        "POST", "nodes", {"nodes": [{"countryCode": "DE"}, {"countryCode": "JP"}]}
    )["uuids"]
    env = {"REMNAWAVE_URL": panel.url}
    with worker_group(tmp_path / "worker.log", env, ("sync",), modules=(), processes=1) as worker:
        # When each job is sent, as the scheduler sends it
        for actor in (sync_server_geolocations, sync_user_stats, sync_node_configs):
            actor.send()

        # Then the worker runs them: rows, the summary and the node configs appear
        def placed() -> Any:
            with clean_tables.connect() as conn:
                return conn.execute(sa.text("SELECT count(*) FROM server_geolocations")).scalar_one() == 2

        wait_for(placed, 60, "two server_geolocations rows")
        wait_for(lambda: redis_client.get(SUMMARY_KEY), 60, "the user stats summary")
        wait_for(lambda: all(redis_client.get(config_key(u)) for u in uuids), 60, "both node configs")
        for job in ("sync_server_geolocations", "sync_user_stats", "sync_node_configs"):
            wait_for(lambda job=job: f"sync job done: {job}" in worker.log(), 30, f"{job}'s last line")
