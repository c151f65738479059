"""Signal dispatch that calls only the middleware hooks that do something.

Dramatiq's ``Broker.emit_before``/``emit_after`` call every middleware's hook for every signal:
with our ~20 middleware that is about a hundred calls per message, most of them to the no-op
methods every middleware inherits from ``dramatiq.Middleware``. :class:`HookDispatch` keeps, per
signal, the bound hooks of the middleware that override it, in Dramatiq's order (``before_``
hooks in list order, ``after_`` hooks in reverse), and calls only those, with Dramatiq's error
handling: a ``MiddlewareError`` from a ``before_`` hook propagates (``SkipMessage`` works as
before), any other exception is logged and the next hook runs.

The table is rebuilt whenever ``broker.middleware`` no longer holds the same objects in the same
order (``add_middleware``, or the list changed in place), so nothing can bypass it.
"""

from __future__ import annotations

from typing import Any

from dramatiq import Middleware
from dramatiq.middleware import MiddlewareError

Hook = Any  # a bound middleware method
_Reraise = type[Exception] | tuple[()]  # what an emit lets through instead of logging


class HookDispatch:
    """Mixin for a ``dramatiq.Broker`` subclass; put it first among the bases."""

    middleware: list[Middleware]
    logger: Any

    # (the middleware list the table was built from, signal hook name -> hooks); one attribute, so
    # a thread never pairs a new list with an old table
    _hook_state: tuple[list[Middleware] | None, dict[str, tuple[Hook, ...]]] = (None, {})

    def hooks(self, name: str) -> tuple[Hook, ...]:
        """The bound ``name`` hooks (``before_enqueue``…) that override Dramatiq's no-op, in call order."""
        built_from, table = self._hook_state
        if built_from is None or built_from != self.middleware:
            built_from, table = list(self.middleware), {}
            self._hook_state = (built_from, table)
        found = table.get(name)
        if found is None:
            ordered = built_from if name.startswith("before_") else reversed(built_from)
            base = getattr(Middleware, name, None)
            found = table[name] = tuple(
                getattr(m, name) for m in ordered if getattr(type(m), name, None) is not base
            )
        return found

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        self._emit("before_" + signal, args, kwargs, reraise=MiddlewareError)

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        self._emit("after_" + signal, args, kwargs, reraise=())

    def _emit(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], *, reraise: _Reraise) -> None:
        """Call each ``name`` hook; ``reraise`` propagates (Dramatiq: MiddlewareError from before-hooks)."""
        for hook in self.hooks(name):
            try:
                hook(self, *args, **kwargs)
            except reraise:
                raise
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", name, hook.__self__, exc_info=True)
