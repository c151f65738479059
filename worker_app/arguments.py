"""Do these arguments fit this actor? One check for the worker and for the HTTP API.

The signature must bind, each argument with a type hint must validate against it (pydantic, so
``Annotated`` constraints such as ``Field(ge=1)`` count), and a check the actor declares over its
arguments together (:func:`checked_by`: a text's length under its parse mode, a list's cap from the
settings) must pass. The API checks strictly (a JSON ``"42"`` is not an ``int``); the worker
leniently, so a message a Python producer sent with, say, a tuple for a list still runs — only
values that cannot be the declared type at all (``"abc"`` for an ``int``) are rejected.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, NamedTuple

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError

from worker_app.errors import PermanentError

F = typing.TypeVar("F", bound=Callable[..., Any])
#: A check over an actor's arguments by name (defaults applied); raises ``ValueError`` or a
#: :class:`~worker_app.errors.PermanentError` with one line naming what is wrong.
ArgumentsCheck = Callable[[dict[str, Any]], None]


def location(loc: tuple[int | str, ...], *, lead: str = "") -> str:
    """A pydantic error location as code writes it: ``("args", 0, "text")`` → ``args[0].text``
    (``lead`` goes before a leading name)."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    return lead + text[1:] if text.startswith(".") else text


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


#: Refuses a string with a NUL character, which PostgreSQL's ``text`` and ``jsonb`` cannot store;
#: put it after any length constraints: ``Annotated[str, Field(max_length=64), NoNul]``.
NoNul = AfterValidator(_no_nul)
#: The JSON schema of :data:`NoNul` for OpenAPI clients: ``Field(..., json_schema_extra=NO_NUL_SCHEMA)``.
NO_NUL_SCHEMA: dict[str, Any] = {"pattern": "^[^\\x00]*$"}
#: Any string without NUL characters.
Text = Annotated[str, NoNul, Field(json_schema_extra=NO_NUL_SCHEMA)]


def nul_path(value: Any, where: str = "") -> str | None:
    """Where in JSON-like ``value`` a string (or a key) holds a NUL character, e.g. ``[2].text``."""
    if isinstance(value, str):
        return where or "value" if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            found = f"{where}.{k!r}" if "\x00" in str(k) else nul_path(v, f"{where}.{k}")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = nul_path(v, f"{where}[{i}]")
            if found:
                return found
    return None


def checked_by(check: ArgumentsCheck) -> Callable[[F], F]:
    """Declare ``check`` over the decorated actor function's arguments (put it under
    ``@dramatiq.actor``): the API runs it before enqueueing, the worker before the actor runs."""

    def decorate(fn: F) -> F:
        fn.__arguments_check__ = check  # type: ignore[attr-defined]
        return fn

    return decorate


class _Shape(NamedTuple):
    signature: inspect.Signature
    adapters: dict[str, TypeAdapter[Any]]  # the parameters with a type hint
    positional: tuple[str, ...] | None  # every parameter's name, if all can be passed by position


@cache
def _shape(fn: Callable[..., Any]) -> _Shape:
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
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
    reason = _type_mismatch(actor_name, shape.adapters, arguments, strict)
    check: ArgumentsCheck | None = getattr(fn, "__arguments_check__", None)
    if reason is not None or check is None:
        return reason
    bound = inspect.BoundArguments(shape.signature, dict(arguments))
    bound.apply_defaults()
    try:
        check(dict(bound.arguments))
    except (ValueError, PermanentError) as e:
        return f"{actor_name}: {e}"
    return None


def _type_mismatch(
    actor_name: str, adapters: dict[str, TypeAdapter[Any]], arguments: dict[str, Any], strict: bool
) -> str | None:
    for name, value in arguments.items():
        adapter = adapters.get(name)
        if adapter is None:
            continue
        try:
            adapter.validate_python(value, strict=strict)
        except ValidationError as e:
            error = e.errors()[0]
            where = location(error["loc"], lead=".")
            shown = repr(error.get("input", value))
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            return f"{actor_name}: {name}{where} = {shown}: {error['msg']}"
    return None
