"""The three-node RabbitMQ cluster's fixtures, for the tests under ``tests/cluster`` only (opt-in:
nothing else starts a cluster)."""

from tests.fixtures.cluster import rabbitmq_cluster, rabbitmq_cluster_session  # noqa: F401
