"""The op table of the reference executor and the argument view every op function gets.

An op is a plain function registered with :func:`op`, under its MIL name and the range of
MIL opset versions whose definition it implements::

    @op("softmax")                               # iOS15 and every later opset
    def softmax(args: OpArgs) -> np.ndarray: ...

    @op("constexpr_lut_to_dense", since=16, until=17)   # the iOS16 definition
    @op("constexpr_lut_to_dense", since=18)             # iOS18 redefined it
    @op("scaled_dot_product_attention", since=18)

Version numbers are the iOS releases that define MIL opsets (opset ``CoreML5`` is iOS15,
``CoreML8`` is iOS18). A program op whose name or version has no entry raises
:class:`~edgevit.errors.UnsupportedOpError` naming the op, the opset and the output it
produces; the executor never guesses.

Op functions compute in float32 (fp16 tensors arrive widened to float32) and return an array
or a tuple of arrays; the executor stores each result in the type the program declares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgevit.errors import UnsupportedOpError
from edgevit.registry import Registry

#: MIL opset name -> the iOS release that defines it
OPSETS = {"CoreML5": 15, "CoreML6": 16, "CoreML7": 17, "CoreML8": 18}
NEWEST = max(OPSETS.values())
OpFunction = Callable[["OpArgs"], Any]


@dataclass(frozen=True)
class OpImpl:
    """One implemented definition of a MIL op."""

    name: str
    function: OpFunction
    since: int = 15
    until: int = NEWEST

    def covers(self, ios: int) -> bool:
        return self.since <= ios <= self.until

    @property
    def versions(self) -> str:
        return f"iOS{self.since}" if self.since == self.until else f"iOS{self.since}-iOS{self.until}"


#: op name -> its implemented definitions
OPS: Registry[list[OpImpl]] = Registry("Core ML reference op")


def op(name: str, since: int = 15, until: int = NEWEST) -> Callable[[OpFunction], OpFunction]:
    """Register the decorated function as MIL op ``name`` for opsets iOS``since``..iOS``until``."""

    def decorator(function: OpFunction) -> OpFunction:
        impls = OPS.get(name) if name in OPS else OPS.register(name, [])
        if any(impl.since <= until and since <= impl.until for impl in impls):
            raise ValueError(f"op {name!r} already has an implementation overlapping iOS{since}-iOS{until}")
        impls.append(OpImpl(name, function, since, until))
        return function

    return decorator


def supported_ops() -> dict[str, str]:
    """Every implemented op and the iOS versions of its definition(s), e.g. ``{"conv": "iOS15-iOS18"}``."""
    table = {name: ", ".join(impl.versions for impl in OPS.get(name)) for name in OPS.names()}
    table["const"] = f"iOS15-iOS{NEWEST}"  # read by the program loader itself
    return dict(sorted(table.items()))


def find_op(name: str, opset: str, output: str) -> OpImpl:
    """The implementation of op ``name`` in ``opset`` (e.g. ``"CoreML7"``).

    Raises:
        UnsupportedOpError: naming the op, the opset and the output it produces.
    """
    ios = OPSETS[opset]
    where = f"(it produces {output!r})"
    if name not in OPS:
        raise UnsupportedOpError(
            f"op {name!r} of opset {opset} (iOS{ios}) {where} is not implemented by the coreml-reference "
            f"executor; it implements {len(OPS)} ops, listed in docs/coreml_reference.md. Run the model "
            "on macOS with backend='coreml', or ask for the op to be added"
        )
    for impl in OPS.get(name):
        if impl.covers(ios):
            return impl
    versions = ", ".join(impl.versions for impl in OPS.get(name))
    raise UnsupportedOpError(
        f"op {name!r} in opset {opset} (iOS{ios}) {where}: the coreml-reference executor implements "
        f"only its {versions} definition(s), not the one iOS{ios} uses"
    )


class OpArgs:
    """The inputs of one op call, by MIL parameter name, with typed accessors.

    Every input is held as a list of bindings (variadic inputs such as ``concat``'s ``values``
    have several); ``args["x"]`` is the single value, ``args.many("values")`` all of them.
    """

    __slots__ = ("op_type", "output", "opset", "_inputs")

    def __init__(self, op_type: str, output: str, opset: int, inputs: dict[str, list[Any]]) -> None:
        self.op_type = op_type
        self.output = output
        self.opset = opset
        self._inputs = inputs

    def __contains__(self, name: str) -> bool:
        return name in self._inputs

    def __getitem__(self, name: str) -> Any:
        values = self._inputs.get(name)
        if not values:
            self.fail(f"has no {name!r} input, which it needs")
        if len(values) != 1:
            self.fail(f"has {len(values)} values bound to {name!r}, which takes one")
        return values[0]

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self._inputs else default

    def many(self, name: str) -> list[Any]:
        if name not in self._inputs:
            self.fail(f"has no {name!r} input, which it needs")
        return list(self._inputs[name])

    def int(self, name: str, default: int | None = None) -> int:
        value = self.get(name, default)
        if value is None:
            self.fail(f"has no {name!r} input, which it needs")
        return int(np.asarray(value).reshape(()))

    def ints(self, name: str, default: list[int] | None = None) -> list[int]:
        value = self.get(name, default)
        if value is None:
            self.fail(f"has no {name!r} input, which it needs")
        return [int(v) for v in np.asarray(value).reshape(-1)]

    def float(self, name: str, default: float | None = None) -> float:
        value = self.get(name, default)
        if value is None:
            self.fail(f"has no {name!r} input, which it needs")
        return float(np.asarray(value).reshape(()))

    def bool(self, name: str, default: bool = False) -> bool:
        return bool(np.asarray(self.get(name, default)).reshape(()))

    def str(self, name: str, default: str | None = None) -> str:
        value = self.get(name, default)
        if value is None:
            self.fail(f"has no {name!r} input, which it needs")
        return str(value if isinstance(value, str) else np.asarray(value).reshape(()).item())

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        """A string input that must be one of ``allowed`` (anything else is unsupported, not guessed)."""
        value = self.str(name, default)
        if value not in allowed:
            self.fail(f"has {name}={value!r}; the reference executor implements {', '.join(allowed)}")
        return value

    def axis(self, name: str, rank: int, default: int | None = None) -> int:
        axis = self.int(name, default)
        if not -rank <= axis < max(rank, 1):
            self.fail(f"has {name}={axis}, outside the rank-{rank} input")
        return axis % max(rank, 1)

    def fail(self, message: str) -> None:
        raise UnsupportedOpError(
            f"op {self.op_type!r} (iOS{self.opset}) producing {self.output!r} {message}"
        )
