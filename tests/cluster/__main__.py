"""``bin/cluster``: the three-node RabbitMQ cluster of ``tests/fixtures/cluster.py`` for people, on
fixed ports with its state in ``.cluster/`` (docs/cluster.md).

    python -m tests.cluster start | status | stop | reset | kill N | ctl N [TOOL] ARGS...
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from tests.fixtures.cluster import Cluster, ClusterError

USAGE = """commands:
  start              start the three nodes (forming the cluster the first time), print RABBITMQ_URL
  status             which nodes run and are in the cluster, their URLs
  stop               stop the nodes gracefully, node 1 last (queues and messages stay in the state dir)
  reset              stop the nodes and delete the state dir
  kill N             SIGKILL node N (1-3), to try a failover; "start" brings it back
  ctl N [TOOL] ARGS  run rabbitmqctl (or TOOL: rabbitmq-queues, rabbitmq-diagnostics, …) against node N
                     with the cluster's cookie, e.g. ctl 1 list_queues name type leader members
"""


def describe(cluster: Cluster) -> None:
    """Each node's state and URLs, then the ``RABBITMQ_URL`` naming all three."""
    running = {node.name for node in cluster.running()}
    clustered = set(cluster.status()["running_nodes"]) if running else set()
    for node in cluster.nodes:
        state = "running" if node.name in running else "stopped"
        state += ", in the cluster" if node.name in clustered else ""
        print(f"  {node.name:22} {state:24} {node.url}   {node.management_url}  (guest / guest)")
    print(f"  logs: {cluster.root}/<node>/log/\n\nexport RABBITMQ_URL={cluster.rabbitmq_url}")


def run(cluster: Cluster, command: str, node: str | None, rest: list[str]) -> None:
    if command == "start":
        cluster.form()
        print(f"RabbitMQ cluster of {len(cluster.nodes)} nodes, state in {cluster.root}:")
    elif command in {"stop", "reset"}:
        for each in reversed(cluster.running()):  # node 1 last: on the next start it need not wait
            print(f"stopping {each.name}")
            cluster.stop(each)
    elif command == "kill" and node is not None:
        cluster.kill(node)
    elif command == "ctl" and node is not None:
        tool = rest.pop(0) if rest and rest[0].startswith("rabbitmq") else "rabbitmqctl"
        print(cluster.ctl(node, *rest, tool=tool), end="")
        return
    if command == "reset":
        cluster.shutdown()
        shutil.rmtree(cluster.root, ignore_errors=True)
        print(f"removed {cluster.root}")
    elif cluster.root.exists():
        describe(cluster)
    else:
        print(f"no cluster in {cluster.root}: bin/cluster start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bin/cluster", description="A three-node RabbitMQ cluster on this machine.", epilog=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--dir", type=Path, default=Path(".cluster"), help="state dir (default: .cluster)")
    parser.add_argument("command", choices=["start", "status", "stop", "reset", "kill", "ctl"])
    parser.add_argument("node", nargs="?", help="kill and ctl: 1, 2, 3 or a node name")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command in {"kill", "ctl"} and args.node is None:
        parser.error(f"{args.command} needs a node: 1, 2 or 3")
    cluster = Cluster.fixed(args.dir.resolve())
    node = cluster.nodes[int(args.node) - 1].name if args.node in {"1", "2", "3"} else args.node
    try:
        run(cluster, args.command, node, args.rest)
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
