"""Do these arguments fit this actor? One check for the worker and for the HTTP API.

The signature must bind, and each argument with a type hint must validate against it (pydantic).
The API checks strictly (a JSON ``"42"`` is not an ``int``); the worker leniently, so a message a
Python producer sent with, say, a tuple for a list still runs — only values that cannot be the
declared type at all (``"abc"`` for an ``int``) are rejected.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError


@cache
def _shape(fn: Callable[..., Any]) -> tuple[inspect.Signature, dict[str, TypeAdapter[Any]]]:
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError):
        hints = {}
    adapters = {name: TypeAdapter(hints[name]) for name in signature.parameters if name in hints}
    return signature, adapters


def mismatch(actor_name: str, fn: Callable[..., Any], args: Any, kwargs: Any, *, strict: bool) -> str | None:
    """Why ``args``/``kwargs`` do not fit ``fn``, in one line; ``None`` when they do."""
    signature, adapters = _shape(fn)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as e:
        return f"arguments do not match {actor_name}{signature}: {e}"
    for name, value in bound.arguments.items():
        adapter = adapters.get(name)
        if adapter is None:
            continue
        try:
            adapter.validate_python(value, strict=strict)
        except ValidationError as e:
            error = e.errors()[0]
            where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
            shown = repr(error.get("input", value))
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            return f"{actor_name}: {name}{where} = {shown}: {error['msg']}"
    return None
