"""The one registry used for every pluggable kind in edgevit.

Models, export targets, runtime backends and partition strategies are each a
:class:`Registry`. Entries are registered with a decorator, or as a lazy ``"module:attr"``
string so that listing names imports nothing heavy::

    targets = Registry("export target")

    @targets.register("onnx")
    class OnnxTarget: ...

    targets.register("tflite", "edgevit.export.targets.tflite:TfliteTarget")  # lazy
    targets.get("tflite")        # imports the module now
    targets.names("t*")          # ['tflite']

A failed lookup raises :class:`~edgevit.errors.UnknownNameError` naming the closest valid
names. Registering a name twice raises unless ``override=True``.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from edgevit.errors import InvalidArgumentError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of plug-ins of one kind.

    Args:
        kind: what the entries are, used in error messages ("model", "export target", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._meta: dict[str, Any] = {}

    def register(
        self, name: str, obj: T | str | None = None, *, meta: Any = None, override: bool = False
    ) -> Any:
        """Register ``obj`` under ``name``; used bare as a decorator when ``obj`` is None.

        ``obj`` may be a ``"module:attr"`` string, imported on first :meth:`get`.
        ``meta`` is a value object stored beside the entry (e.g. a model's info).
        """
        if obj is None:

            def decorator(target: T) -> T:
                self._add(name, target, meta, override)
                return target

            return decorator
        self._add(name, obj, meta, override)
        return obj

    def _add(self, name: str, obj: T | str, meta: Any, override: bool) -> None:
        if not name or not isinstance(name, str):
            raise InvalidArgumentError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._entries and not override:
            raise InvalidArgumentError(
                f"{self.kind} {name!r} is already registered; pass override=True to replace it"
            )
        self._entries[name] = obj
        self._meta[name] = meta

    def is_lazy(self, name: str) -> bool:
        """Whether ``name`` is registered as a ``"module:attr"`` string not imported yet."""
        return isinstance(self._entries.get(name), str)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a plugin a test or a session registered for a while)."""
        self._check(name)
        del self._entries[name], self._meta[name]

    def get(self, name: str) -> T:
        """Return the entry called ``name``, importing it if it was registered lazily."""
        self._check(name)
        entry = self._entries[name]
        if isinstance(entry, str):
            module_name, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module_name), attr)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def canonical(self, name: str, strict: bool = True) -> str:
        """The registered spelling of ``name``, matched without regard to case (``"ONNX"`` -> ``"onnx"``).

        With ``strict=False`` an unknown name comes back unchanged, for the caller's own check.

        Raises:
            UnknownNameError: (``strict``) no entry matches, naming the closest valid names.
        """
        if isinstance(name, str) and name not in self._entries:
            folded = [n for n in self._entries if n.casefold() == name.casefold()]
            if len(folded) == 1:
                return folded[0]
        if strict:
            self._check(name)
        return name

    def meta(self, name: str) -> Any:
        """Return the value object registered beside ``name``."""
        self._check(name)
        return self._meta[name]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching the glob ``pattern``, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def closest(self, name: str, n: int = 5) -> list[str]:
        """The registered names most similar to ``name``."""
        names = list(self._entries)
        close = difflib.get_close_matches(name, names, n=n, cutoff=0.4)
        if not close:
            close = [x for x in names if name.split("_")[0] in x][:n]
        return close

    def _check(self, name: str) -> None:
        if name not in self._entries:
            close = self.closest(name) if isinstance(name, str) else []
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint}. Valid {self.kind}s: {', '.join(self.names())}"
            )

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def call_with(registry: Registry[Callable[..., T]], name: str, *args: Any, **kwargs: Any) -> T:
    """Look up ``name`` and call it with the given arguments."""
    return registry.get(name)(*args, **kwargs)
