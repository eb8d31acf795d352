"""Turning a converter's failure into a sentence naming the op and the model module.

Converters report failures in their own words ("No ONNX function found for aten.foo",
"PyTorch convert function for op 'foo' not implemented", a JAX lowering error "While
executing %foo = call_function[target=aten.foo.default]"). :func:`explain_failure` finds
the op name in that text, looks the op up in the model's own ``torch.export`` graph, and
names the module it came from (its path in the model and its class) with the source line,
from the graph nodes' ``nn_module_stack`` and ``stack_trace``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: patterns that name the failing op in converters' messages, most specific first; a pattern
#: without a namespace group means an aten op
OP_PATTERNS = (
    re.compile(r"target=torch\.ops\.([a-z_]+)\.([A-Za-z0-9_]+)"),
    re.compile(r"target=([a-z_]+)\.([A-Za-z0-9_]+)\.[A-Za-z0-9_]+\]?\("),
    re.compile(r"op='([a-z_]+)\.([A-Za-z0-9_]+)'"),
    re.compile(r"convert function for op '([A-Za-z0-9_]+)' not implemented"),
    re.compile(r"Unsupported fx node ([A-Za-z0-9_]+)"),
    re.compile(r"lowering for Torch `([A-Za-z0-9_]+)` op"),
    re.compile(r"(aten)(?:::|\.)([A-Za-z0-9_]+)"),
)
NODE_PATTERN = re.compile(r"%([A-Za-z0-9_]+) : \[num_users")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SKIP_OPS = {"default", "Tensor", "ops"}


@dataclass(frozen=True)
class FailurePlace:
    """Where in the model a converter failed."""

    op: str
    module_path: str | None = None
    module_class: str | None = None
    source: str | None = None

    def describe(self) -> str:
        where = f"op {self.op}"
        if self.module_path is not None:
            where += f" in module {self.module_path or '<root>'} ({self.module_class})"
        if self.source:
            where += f" at {self.source}"
        return where


def find_op(text: str) -> tuple[str | None, str | None]:
    """The op (``"aten.cumsum"``) and the graph node name mentioned in a converter's error text."""
    node = NODE_PATTERN.search(text)
    for pattern in OP_PATTERNS:
        for match in pattern.finditer(text):
            groups = match.groups()
            namespace, op = groups if len(groups) == 2 else ("aten", groups[0])
            if op not in SKIP_OPS:
                return f"{namespace}.{op}", node.group(1) if node else None
    return None, node.group(1) if node else None


def locate(program: Any, op: str, node_name: str | None = None) -> FailurePlace:
    """The first node of ``program`` (an ExportedProgram or GraphModule) calling ``op`` (``"aten.cumsum"``)."""
    graph = program.graph_module.graph if hasattr(program, "graph_module") else program.graph
    candidates = [n for n in graph.nodes if n.op == "call_function" and _op_name(n.target) == op]
    if node_name:
        named = [n for n in candidates if n.name == node_name]
        candidates = named or candidates
    if not candidates:
        return FailurePlace(op)
    node = candidates[0]
    path, cls = _module_of(node)
    return FailurePlace(op, path, cls, _source_line(node))


def explain_failure(target: str, model_name: str, exc: BaseException, log: str, program_factory) -> str:
    """The message of a :class:`~edgevit.errors.ConversionError` for ``exc``.

    ``program_factory()`` returns the model's exported programs to search (as traced and
    decomposed the way the converter decomposes); it is only called when an op name was found,
    since exporting costs time.
    """
    text = ANSI.sub("", _exception_text(exc) + "\n" + log)
    first = _first_line(_root_cause(exc))
    op, node_name = find_op(text)
    if op is None:
        return (f"{target} conversion of {model_name} failed: {first}. The failing op could not be identified "
                "from the converter's message; rerun with --debug to see its full output")
    place = FailurePlace(op)
    try:
        for program in program_factory():
            place = locate(program, op, node_name)
            if place.module_path is not None:
                break
    except Exception:  # noqa: BLE001 - the model itself may not export; name the op anyway
        pass
    return (f"{target} conversion of {model_name} failed at {place.describe()}: {first}. "
            f"Rewrite that module's inference graph with ops the {target} converter supports "
            "(see docs/export.md), or try another target")


def _op_name(target: Any) -> str | None:
    """``"aten.cumsum"`` for the OpOverload ``aten.cumsum.default`` (``str(target)``)."""
    parts = str(target).split(".")
    return f"{parts[0]}.{parts[1]}" if len(parts) >= 3 else None


def _module_of(node: Any) -> tuple[str | None, str | None]:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None, None
    path, cls = list(stack.values())[-1]
    path = re.sub(r"L\['self'\]\.?", "", str(path)).replace("._modules['", ".").replace("']", "")
    for prefix in ("model.model.", "model."):
        if path.startswith(prefix):
            path = path[len(prefix):]
            break
    else:
        if path == "model":
            path = ""
    cls_name = cls if isinstance(cls, str) else getattr(cls, "__qualname__", str(cls))
    return path, cls_name.rsplit(".", 1)[-1]


def _source_line(node: Any) -> str | None:
    trace = node.meta.get("stack_trace") or ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\w+)\n\s*(.*)', trace)
    if not frames:
        return None
    file, line, _, code = frames[-1]
    short = file.split("/edgevit/", 1)[-1] if "/edgevit/" in file else file
    prefix = "edgevit/" if "/edgevit/" in file else ""
    return f"{prefix}{short}:{line} `{code.strip()}`"


def _exception_text(exc: BaseException) -> str:
    parts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while (exc.__cause__ or exc.__context__) is not None and id(exc.__cause__ or exc.__context__) not in seen:
        exc = exc.__cause__ or exc.__context__
        seen.add(id(exc))
    return exc


def _first_line(exc: BaseException) -> str:
    for line in ANSI.sub("", str(exc)).strip().splitlines():
        if line.strip():
            return f"{type(exc).__name__}: {line.strip()[:300]}"
    return type(exc).__name__
