"""``worker_app.arguments``: the by-position fast path binds exactly as ``Signature.bind`` does."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from worker_app.arguments import _bind, _shape, mismatch


def plain(a: int, b: str) -> None: ...
def with_default(a: int, b: str = "x") -> None: ...
def positional_only(a: int, /, b: int) -> None: ...
def keyword_only(a: int, *, b: int) -> None: ...
def var_args(a: int, *rest: int) -> None: ...
def var_kwargs(a: int, **rest: int) -> None: ...
def nothing() -> None: ...


FUNCTIONS = [plain, with_default, positional_only, keyword_only, var_args, var_kwargs, nothing]
CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),
    ((1,), {}),
    ((1, "y"), {}),
    ([1, "y"], {}),  # JSON gives lists
    ((1, "y", 3), {}),
    ((1,), {"b": "y"}),
    ((), {"a": 1, "b": "y"}),
    ((1,), {"a": 1}),
    ((1, "y"), {"c": 2}),
]


def _reference(fn: Callable[..., Any], args: Any, kwargs: Any) -> dict[str, Any] | str:
    try:
        return dict(inspect.signature(fn).bind(*args, **kwargs).arguments)
    except TypeError as e:
        return str(e)


def _ours(fn: Callable[..., Any], args: Any, kwargs: Any) -> dict[str, Any] | str:
    try:
        return dict(_bind(_shape(fn), args, kwargs))
    except TypeError as e:
        return str(e)


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda fn: fn.__name__)
@pytest.mark.parametrize("call", CALLS, ids=repr)
def test_binding_matches_signature_bind(fn: Callable[..., Any], call: tuple[Any, Any]) -> None:
    args, kwargs = call
    assert _ours(fn, args, kwargs) == _reference(fn, args, kwargs)


def test_the_fast_path_still_validates_types_and_counts() -> None:
    assert mismatch("plain", plain, [1, "y"], {}, strict=False) is None
    assert mismatch("plain", plain, ["abc", "y"], {}, strict=False) == (
        "plain: a = 'abc': Input should be a valid integer, unable to parse string as an integer"
    )
    too_many = mismatch("plain", plain, [1, "y", 3], {}, strict=False)
    assert too_many is not None
    assert too_many.startswith("arguments do not match plain(a: ")
    assert too_many.endswith(": too many positional arguments")
