"""The metrics middleware counts per thread and flushes into prometheus-client: nothing is lost,
nothing is counted twice, and histograms match what ``observe()`` would have recorded."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import prometheus_client as prom
import pytest

from tests.fixtures.worker import wait_for
from worker_app.middleware.metrics import _DURATION_BUCKETS_MS, Metrics, _add_histogram, _Histogram


def _values(child: Any) -> tuple[float, list[float]]:
    return child._sum.get(), [bucket.get() for bucket in child._buckets]


def test_flushed_observations_equal_direct_observes_bucket_edges_included() -> None:
    # Given the same observations, some exactly on a bucket bound, fed to prometheus-client
    # directly and to a tally flushed twice along the way
    reference = prom.Histogram("ref_ms", "r", buckets=_DURATION_BUCKETS_MS, registry=None)
    flushed_into = prom.Histogram("buffered_ms", "b", buckets=_DURATION_BUCKETS_MS, registry=None)
    tally, already = _Histogram(_DURATION_BUCKETS_MS), _Histogram(_DURATION_BUCKETS_MS)
    batches = [[0.0, 5, 5.01, 10, 99.9], [250, 250, 1e9], [], [7.5, 600000]]
    for batch in batches:
        for value in batch:
            reference.observe(value)
            tally.observe(value)
        # When the tally is flushed after each batch
        _add_histogram(flushed_into, tally, already)

    # Then the buckets and the sum are exactly those of the direct observes
    assert _values(flushed_into) == _values(reference)
    assert sum(_values(flushed_into)[1]) == 10


def _message(queue: str = "bench", actor: str = "noop") -> Any:
    return SimpleNamespace(
        queue_name=queue, actor_name=actor, options={"enqueued_at": time.time() * 1000 - 50}
    )


@pytest.fixture
def metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # restored after the test
    middleware = Metrics(tmp_path / "prom", port=0)
    middleware.after_process_boot(broker=None)  # type: ignore[arg-type]
    yield middleware
    middleware._stop_flushing.set()


def test_counts_from_many_threads_are_all_flushed_once(metrics: Any) -> None:
    # Given 4 worker threads that each process 500 messages, every 5th raising
    def work() -> None:
        for i in range(500):
            message = _message()
            metrics.before_process_message(None, message)
            metrics.after_process_message(None, message, exception=ValueError() if i % 5 == 0 else None)
            if i == 250:
                metrics.flush()  # flushes while the others are counting

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # When the last flush runs (twice: the second must add nothing)
    metrics.flush()
    metrics.flush()

    # Then every message is counted exactly once, in every series
    series = metrics._series("bench", "noop")
    assert series.total._value.get() == 2000
    assert series.errored._value.get() == 400
    assert sum(_values(series.duration)[1]) == 2000
    assert sum(_values(series.time_in_queue)[1]) == 2000
    assert 0.05 * 2000 <= _values(series.time_in_queue)[0] < 60 * 2000
    assert series.inprogress._value.get() == 0


def test_in_progress_is_the_number_of_messages_running_at_the_flush(metrics: Any) -> None:
    # Given three messages started on two threads and one of them finished
    started = [_message() for _ in range(3)]
    metrics.before_process_message(None, started[0])
    other = threading.Thread(target=lambda: [metrics.before_process_message(None, m) for m in started[1:]])
    other.start()
    other.join()
    metrics.after_process_message(None, started[0])

    # When the metrics are flushed
    metrics.flush()

    # Then two are in progress and one is processed
    series = metrics._series("bench", "noop")
    assert series.inprogress._value.get() == 2
    assert series.total._value.get() == 1


def test_the_flusher_thread_flushes_on_its_own(metrics: Any) -> None:
    # Given a processed message and no explicit flush
    message = _message("payments", "charge")
    metrics.before_process_message(None, message)
    metrics.after_process_message(None, message)

    # Then the background thread adds it within a few flush intervals
    series = metrics._series("payments", "charge")
    wait_for(lambda: series.total._value.get() == 1, 10, "the flusher thread to add the message")
