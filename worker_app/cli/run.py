"""``worker-app run ACTOR [ARGS]... [--kwargs JSON] [--once]``: one job, from the command line.

Without ``--once`` the message is enqueued (confirmed) and its id printed. With ``--once`` (seed 000's
run-once mode) it runs here, in the foreground, once: through the same middleware stack as in a
worker — the trace id bound to its log lines and HTTP calls, its database session, result, job
tracking, metrics, dead-letter recording — and prints its result. A failure is not retried (the
message is marked ``foreground``: ``PolicyRetries`` gives up at once); it is recorded as a dead letter
with its traceback, as in a worker, so ``worker-app dlq replay`` can send it to the workers later.
Nothing goes through RabbitMQ.

Each ARG is JSON (``42``, ``'"text"'``, ``'[1, 2]'``); one that is not valid JSON is taken as a string.
The arguments are checked against the actor's signature first (exit 2 naming the mismatch).
"""

from __future__ import annotations

import json
import time
from typing import Any

import click
from dramatiq.middleware import SkipMessage

from worker_app import context
from worker_app.arguments import mismatch
from worker_app.broker import Delivery
from worker_app.cli.errors import BadInput


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def process_here(broker: Any, message: Any) -> tuple[Any, BaseException | None]:
    """Process ``message`` on this thread as a worker does: Dramatiq's ``process_message`` (the
    before/after hooks around the actor), then the consumer's settlement hooks — ``nack`` for a failed
    message (the dead-letter record is written there), else ``ack`` — without a broker to settle
    with. ``(result, exception)``."""
    proxy = Delivery(False, 0, message)
    result: Any = None
    error: BaseException | None = None
    try:
        broker.emit_before("process_message", proxy)
        if not proxy.failed:
            result = broker.get_actor(proxy.actor_name)(*proxy.args, **proxy.kwargs)
        broker.emit_after("process_message", proxy, result=result)
    except SkipMessage:
        broker.emit_after("skip_message", proxy)
    except BaseException as e:
        error = e
        proxy.stuff_exception(e)
        broker.emit_after("process_message", proxy, exception=e)
    settlement = "nack" if proxy.failed else "ack"
    broker.emit_before(settlement, proxy)
    broker.emit_after(settlement, proxy)
    return (None, error) if error is not None else (result, None)


@click.command("run")
@click.argument("actor_name")
@click.argument("args", nargs=-1)
@click.option("--kwargs", "kwargs_json", default=None, help="Keyword arguments as one JSON object.")
@click.option("--once", is_flag=True, help="Run it here, once, in the foreground, and print its result.")
def run(actor_name: str, args: tuple[str, ...], kwargs_json: str | None, once: bool) -> None:
    """Enqueue ACTOR_NAME with ARGS, or with --once run it here once through the full middleware
    stack and print its result (exit 1 when it fails: recorded as a dead letter, not retried)."""
    import worker_app

    broker = worker_app.broker
    if actor_name not in broker.actors:
        known = ", ".join(sorted(a for a in broker.actors if not a.startswith("heartbeat_")))
        raise BadInput(f"no actor named {actor_name!r} (actors: {known})")
    actor = broker.get_actor(actor_name)
    values = [_value(a) for a in args]
    try:
        kwargs = json.loads(kwargs_json) if kwargs_json else {}
    except ValueError as e:
        raise BadInput(f"--kwargs: not JSON ({e})") from None
    if not isinstance(kwargs, dict):
        raise BadInput(f"--kwargs: expected a JSON object, not {type(kwargs).__name__}")
    reason = mismatch(actor_name, actor.fn, values, kwargs, strict=False)
    if reason is not None:
        raise BadInput(reason)
    if not once:
        message = actor.send_with_options(args=tuple(values), kwargs=kwargs)
        click.echo(f"enqueued {actor_name} on {message.queue_name}: message {message.message_id} "
                   f"trace {message.options.get('trace_id')}")  # fmt: skip
        return
    trace_id = context.new_trace_id()
    message = actor.message_with_options(
        args=tuple(values), kwargs=kwargs, trace_id=trace_id, foreground=True
    )
    started = time.perf_counter()
    result, error = process_here(broker, message)
    took_ms = (time.perf_counter() - started) * 1000
    if error is not None:
        click.echo(f"{actor_name} failed after {took_ms:.1f} ms: {type(error).__name__}: {error} "
                   f"(trace {trace_id}; recorded as dead letter of message {message.message_id}: "
                   f"worker-app dlq list --actor {actor_name})", err=True)  # fmt: skip
        raise SystemExit(1)
    click.echo(f"{actor_name} done in {took_ms:.1f} ms (trace {trace_id})")
    click.echo(json.dumps(result, indent=2, default=str))
