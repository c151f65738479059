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
from typing import Any, NamedTuple

from pydantic import TypeAdapter, ValidationError


class _Shape(NamedTuple):
    signature: inspect.Signature
    adapters: dict[str, TypeAdapter[Any]]  # the parameters with a type hint
    positional: tuple[str, ...] | None  # every parameter's name, if all can be passed by position


@cache
def _shape(fn: Callable[..., Any]) -> _Shape:
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError):
        hints = {}
    adapters = {name: TypeAdapter(hints[name]) for name in signature.parameters if name in hints}
    by_position = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = signature.parameters.values()
    positional = tuple(p.name for p in params) if all(p.kind in by_position for p in params) else None
    return _Shape(signature, adapters, positional)


def _bind(shape: _Shape, args: Any, kwargs: Any) -> dict[str, Any]:
    """The arguments by parameter name, as ``Signature.bind`` gives them; raises its ``TypeError``.

    The usual message passes every parameter by position: that is a ``zip``, several times cheaper
    than ``bind`` (the worker checks every message)."""
    if not kwargs and shape.positional is not None and len(args) == len(shape.positional):
        return dict(zip(shape.positional, args, strict=True))
    return shape.signature.bind(*args, **kwargs).arguments


def mismatch(actor_name: str, fn: Callable[..., Any], args: Any, kwargs: Any, *, strict: bool) -> str | None:
    """Why ``args``/``kwargs`` do not fit ``fn``, in one line; ``None`` when they do."""
    shape = _shape(fn)
    try:
        arguments = _bind(shape, args, kwargs)
    except TypeError as e:
        return f"arguments do not match {actor_name}{shape.signature}: {e}"
    adapters = shape.adapters
    if not adapters:
        return None
    for name, value in arguments.items():
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
