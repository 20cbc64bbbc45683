"""One registry dialect for everything slate builds by name: solvers, policies, estimators, stores.

Each family keeps a :class:`Registry`; the family's module functions (``get_solver``,
``make_policy``, ``get_estimator``, ``make_store`` and their ``register_*`` / ``available_*``
companions) are thin wrappers over it, so they share one behaviour:

- a name may have aliases; ``names()`` lists the short (canonical) names;
- an unknown name raises the family's :class:`~slate.errors.UnknownNameError` subclass, naming
  the known ones;
- an option the factory does not take raises :class:`~slate.errors.UnknownOptionError` naming the
  option and the ones it takes (instead of a bare ``TypeError`` from deep inside);
- :meth:`Registry.parameters` says, publicly, which options a factory takes.

Examples
--------
>>> from slate.errors import UnknownNameError
>>> from slate.registry import Registry
>>> colours = Registry("colour", UnknownNameError)
>>> colours.register("red", lambda shade=1.0: ("red", shade), aliases=("r",))
>>> colours.create("r", shade=0.5)
('red', 0.5)
>>> colours.names(), colours.canonical("red"), list(colours.parameters("r"))
(['r'], 'r', ['shade'])
>>> colours.create("red", tint=2)
Traceback (most recent call last):
...
slate.errors.UnknownOptionError: Unknown option 'tint' for colour 'red'; its options are shade.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from slate.errors import UnknownNameError, UnknownOptionError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Factories of one family (``kind``, e.g. ``"solver"``), by name and alias.

    Parameters
    ----------
    kind : str
        The family's name in messages (``"solver"``, ``"policy"``, ...).
    error : type of UnknownNameError
        Raised for a name that is not registered.
    hint : str
        Appended to the list of known names in that error (e.g. "(or their long names)").
    """

    def __init__(self, kind: str, error: type[UnknownNameError], hint: str = "") -> None:
        self.kind = kind
        self.error = error
        self.hint = hint
        self._factories: dict[str, Callable[..., T]] = {}
        self._canonical: dict[str, str] = {}

    def register(self, name: str, factory: Callable[..., T], aliases: Sequence[str] = ()) -> None:
        """Register ``factory`` (``factory(**options)`` builds one) under ``name`` and ``aliases``;
        the first alias, if any, is the canonical short name."""
        for key in (name, *aliases):
            self._factories[key] = factory
            self._canonical[key] = aliases[0] if aliases else name

    def unregister(self, name: str) -> None:
        """Remove ``name`` and every alias of the same factory (for tests and plug-ins)."""
        factory = self._factories.get(name)
        for key in [k for k, f in self._factories.items() if f is factory]:
            del self._factories[key]
            del self._canonical[key]

    def names(self) -> list[str]:
        """The canonical names, sorted."""
        return sorted(set(self._canonical.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def canonical(self, name: str) -> str:
        """The canonical name of ``name`` (itself or the short alias)."""
        self.factory(name)
        return self._canonical[name]

    def factory(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``; the family's error if there is none."""
        try:
            return self._factories[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name
            known = ", ".join(self.names())
            hint = f" {self.hint}" if self.hint else ""
            raise self.error(
                f"Unknown {self.kind} '{name}'; available {_plural(self.kind)} are {known}{hint}."
            ) from None

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """The options the factory of ``name`` takes (keyword parameters, ``self`` excluded);
        empty when the factory has no inspectable signature."""
        try:
            signature = inspect.signature(self.factory(name))
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            return {}
        return {
            k: p for k, p in signature.parameters.items()
            if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    def takes(self, name: str, option: str) -> bool:
        """Whether the factory of ``name`` takes the option ``option`` (e.g. ``"seed"``)."""
        return option in self.parameters(name)

    def create(self, name: str, **options: Any) -> T:
        """Build ``name`` with ``options``; an option it does not take is named in the error."""
        factory = self.factory(name)
        try:
            return factory(**options)
        except TypeError:
            params = self.parameters(name)
            accepts_any = _accepts_any_keyword(factory)
            unknown = [k for k in options if k not in params]
            if accepts_any or not unknown:
                raise  # a TypeError from inside the factory, not from the call
            known = ", ".join(k for k in params if k != "name") or "none"
            raise UnknownOptionError(
                f"Unknown option '{unknown[0]}' for {self.kind} '{name}'; its options are {known}."
            ) from None


def _accepts_any_keyword(factory: Callable[..., Any]) -> bool:
    try:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover
        return True


def _plural(kind: str) -> str:
    return kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
