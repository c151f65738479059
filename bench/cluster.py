"""The RabbitMQ cluster that quorum runs use: one named on the command line (``--cluster``), or
three nodes started on this machine for the run with the tests' fixture
(:class:`tests.fixtures.cluster.Cluster`), always shut down and removed afterwards — after an
error, Ctrl-C or SIGTERM too (:func:`bench.cli.setup` turns SIGTERM into ``SystemExit``).

The started cluster's state directory is ``<tmp>/cybervpn-cluster-*`` with ``owner.pid``, as the
fixture writes it: if this process is killed outright (SIGKILL) before its clean-up ran,
``tests.fixtures.cluster.sweep_abandoned()`` recognises the nodes as abandoned and kills them.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from bench.rabbit import Rabbit
from bench.runner import BenchError

if TYPE_CHECKING:
    from tests.fixtures.cluster import Cluster


def amqp_bases(urls: str) -> list[str]:
    """``--cluster``'s value (node URLs separated by commas or semicolons) as AMQP base URLs: any
    vhost path, query or fragment is dropped, since each run gets a vhost of its own."""
    bases = []
    for url in (u.strip() for u in urls.replace(";", ",").split(",")):
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("amqp", "amqps") or not parts.netloc:
                raise ValueError(f"not an AMQP URL: {url!r}")
            bases.append(urlunsplit((parts.scheme, parts.netloc, "", "", "")))
    if not bases:
        raise ValueError("--cluster names no node")
    return bases


@contextmanager
def cluster_rabbit(urls: str | None, management_url: str) -> Iterator[Rabbit]:
    """The cluster named by ``urls`` and ``management_url``, or (``urls`` None) one started for the
    duration of the block."""
    if urls:
        yield Rabbit(amqp_bases(urls), management_url)
        return
    with started_cluster() as cluster:
        nodes = [urlunsplit(urlsplit(node.url)._replace(path="")) for node in cluster.nodes]
        pids = [pid for pid in map(cluster.pid, cluster.nodes) if pid is not None]
        yield Rabbit(nodes, cluster.nodes[0].management_url, pids=pids)


@contextmanager
def started_cluster() -> Iterator[Cluster]:
    """Three nodes on free ports in a new temp dir, formed into a cluster; on leaving (whatever
    happened) every process of the cluster is stopped and the dir removed."""
    from tests.fixtures.cluster import TEMP_PREFIX, Cluster, ClusterError  # imports pytest: only when needed

    root = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    try:
        (root / "owner.pid").write_text(str(os.getpid()))
        cluster = Cluster.on_free_ports(root)
        started = time.monotonic()
        names = ", ".join(f"{node.name} (AMQP {node.amqp_port})" for node in cluster.nodes)
        print(f"starting a three-node cluster in {root}: {names}", file=sys.stderr, flush=True)
        try:
            try:
                cluster.form()
            except ClusterError as e:
                raise BenchError(f"the cluster did not form: {e}") from None
            print(f"cluster formed in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
            yield cluster
        finally:
            with _signals_ignored():
                print(f"shutting the cluster in {root} down", file=sys.stderr, flush=True)
                cluster.shutdown()
    finally:
        with _signals_ignored():
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM while the cluster is being torn down, so that a second Ctrl-C or
    SIGTERM cannot cut the clean-up short and leave nodes behind."""
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in handled}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
