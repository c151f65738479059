"""Tier 3: a three-node RabbitMQ cluster on this machine (``tests/fixtures/cluster.py``), separate
from the default node: it forms, a quorum queue spreads over it, and confirmed messages survive the
SIGKILL of the queue's leader.

Marked ``exclusive``: it stops nothing shared, but three Erlang VMs starting at once would slow the
other xdist worker's timing-sensitive tests on a two-core machine, so ``bin/test`` runs it alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pika
import pytest
import requests
from pika.adapters.blocking_connection import BlockingChannel

from tests.fixtures.cluster import Cluster, Node
from tests.fixtures.worker import wait_for

pytestmark = [pytest.mark.rabbitmq, pytest.mark.exclusive]
MESSAGES = 200


@pytest.fixture
def quorum_queue(rabbitmq_cluster: Cluster) -> Iterator[str]:
    """A new quorum queue, declared through node 1; deleted after the test (with every node up again)."""
    name = f"cluster-{uuid.uuid4().hex[:8]}"
    with channel_on(rabbitmq_cluster.nodes[0]) as channel:
        channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    yield name
    rabbitmq_cluster.heal()
    with channel_on(rabbitmq_cluster.nodes[0]) as channel:
        channel.queue_delete(name)


@contextmanager
def channel_on(node: Node) -> Iterator[BlockingChannel]:
    """A channel on ``node`` only (not the cluster's other nodes), closed with its connection."""
    connection = pika.BlockingConnection(pika.URLParameters(node.url))
    try:
        yield connection.channel()
    finally:
        connection.close()


def drain(node: Node, queue: str, expected: int) -> list[bytes]:
    """Every message of ``queue``, consumed and acked through ``node``, until ``expected`` arrived."""
    bodies: list[bytes] = []
    with channel_on(node) as channel:

        def all_in() -> bool:
            method, _, body = channel.basic_get(queue)
            while method is not None:
                bodies.append(body)
                channel.basic_ack(method.delivery_tag)
                method, _, body = channel.basic_get(queue)
            return len(bodies) >= expected

        wait_for(all_in, 30, f"{expected} messages on {queue} through {node.name}", poll_s=0.2)
    return bodies


def test_the_three_nodes_form_one_cluster(rabbitmq_cluster: Cluster) -> None:
    # Given the cluster, When each node is asked, Then each sees all three nodes running
    names = sorted(node.name for node in rabbitmq_cluster.nodes)
    for node in rabbitmq_cluster.nodes:
        assert sorted(rabbitmq_cluster.status(via=node)["running_nodes"]) == names


def test_every_url_of_its_rabbitmq_url_and_management_api_answers(rabbitmq_cluster: Cluster) -> None:
    # Given RABBITMQ_URL naming the three nodes
    urls = rabbitmq_cluster.rabbitmq_url.split(",")
    assert len(urls) == 3

    # When each URL is connected to, Then each node takes AMQP connections and serves its API
    for url, node in zip(urls, rabbitmq_cluster.nodes, strict=True):
        pika.BlockingConnection(pika.URLParameters(url)).close()
        api = requests.get(f"{node.management_url}/api/nodes", auth=("guest", "guest"), timeout=10)
        api.raise_for_status()
        assert sorted(n["name"] for n in api.json()) == sorted(n.name for n in rabbitmq_cluster.nodes)


def test_a_quorum_queue_has_a_member_on_every_node_and_one_leader(
    rabbitmq_cluster: Cluster, quorum_queue: str
) -> None:
    # Given a quorum queue declared through node 1
    # When its members report their Raft states
    members = rabbitmq_cluster.quorum_status(quorum_queue)

    # Then it has a member on each node, one of them the leader
    assert sorted(m["Node Name"] for m in members) == sorted(n.name for n in rabbitmq_cluster.nodes)
    assert sorted(m["Raft State"] for m in members) == ["follower", "follower", "leader"]
    assert rabbitmq_cluster.leader(quorum_queue) in {n.name for n in rabbitmq_cluster.nodes}


def test_confirmed_messages_survive_a_sigkill_of_the_leader(
    rabbitmq_cluster: Cluster, quorum_queue: str
) -> None:
    # Given MESSAGES messages published with confirms through node 1 to the quorum queue
    sent = [f"message {n}".encode() for n in range(MESSAGES)]
    with channel_on(rabbitmq_cluster.nodes[0]) as channel:
        channel.confirm_delivery()
        for body in sent:
            channel.basic_publish(
                "", quorum_queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True
            )
    leader = rabbitmq_cluster.leader(quorum_queue)
    assert leader is not None

    # When the leader's node is killed
    rabbitmq_cluster.kill(leader)

    # Then the two others elect a new leader
    survivors = [n for n in rabbitmq_cluster.nodes if n.name != leader]
    new_leader = wait_for(
        lambda: rabbitmq_cluster.leader(quorum_queue, via=survivors[0]), 30, "a new leader", poll_s=0.5
    )
    assert new_leader in {n.name for n in survivors}

    # And a consumer on a node other than the publisher's gets every message, once
    consumer_node = next(n for n in survivors if n != rabbitmq_cluster.nodes[0])
    assert sorted(drain(consumer_node, quorum_queue, MESSAGES)) == sorted(sent)


def test_a_killed_node_started_again_rejoins_the_cluster(rabbitmq_cluster: Cluster) -> None:
    # Given node 3 killed: the others see it down
    node = rabbitmq_cluster.nodes[2]
    rabbitmq_cluster.kill(node)
    wait_for(lambda: node.name not in rabbitmq_cluster.status()["running_nodes"], 30, f"{node.name} down")
    assert node.name in rabbitmq_cluster.status()["disk_nodes"]

    # When it is started again
    rabbitmq_cluster.start(node)

    # Then every node sees the three running, the restarted one included
    names = sorted(n.name for n in rabbitmq_cluster.nodes)
    assert sorted(rabbitmq_cluster.status(via=node)["running_nodes"]) == names
    assert sorted(rabbitmq_cluster.status(via=rabbitmq_cluster.nodes[0])["running_nodes"]) == names
