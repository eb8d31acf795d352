"""Dependencies point down (issue 14, item 4), checked with ``ast`` on every ``edgevit/**/*.py``.

A *package* is a top-level subpackage ``edgevit/<pkg>/`` or module ``edgevit/<mod>.py``. Every
import of ``edgevit.*`` is collected: module level and inside functions, relative ones, and
the lazy ``"module:attr"`` strings a registry or a ``_LAZY`` table imports on first use (the
strategy registry once made ``partition`` point up at ``split`` that way). Two rules:

* **no upward arrow**: a package imports only packages on a lower floor of :data:`FLOORS`
  (packages on one floor do not know each other);
* **no cross-package private import**: no package imports, from another, a module whose path
  below that package has a part starting with ``_``, or a name starting with ``_``. What is
  shared gets a public name where it belongs; the top-level ``edgevit/_*.py`` modules are the
  distribution's shared internals and may be imported from anywhere below them.

``edgevit/__init__.py`` (the package face, lazy re-exports) may import anything.

Run ``python tests/test_layers.py`` to print the package graph.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: the floors, lowest first; an import must point to a strictly lower floor
FLOORS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("registry", "_files", "_progress", "_table", "_quiet"),  # ground: shared by everyone
    ("precision",),  # the one precision table (a Registry of value objects)
    ("environment", "artifact", "devices", "formats"),  # formats: model files read back, torch-free
    ("predict",),  # pure numpy: device profiles and the latency predictor (reads formats)
    ("data", "partition"),  # partition is pure: value objects, no torch, nothing above it
    ("models", "runtime"),  # runtime knows nothing of models or export
    ("agent", "train"),
    ("evaluate", "bench", "cluster"),
    ("quantize",),
    ("export",),
    ("split", "probe"),  # probe: calibration models built with torch and exported
    ("cli",),  # the CLI knows everything and nobody knows the CLI
    ("__main__",),
)
FLOOR = {package: level for level, packages in enumerate(FLOORS) for package in packages}
FACE = "edgevit/__init__.py"

LAZY_TARGET = re.compile(r"edgevit(\.\w+)+:\w+")  # a registry's "module:attr"


@dataclass(frozen=True)
class Import:
    file: str  # posix path from the repository root, e.g. "edgevit/split/api.py"
    line: int
    module: str  # absolute, e.g. "edgevit.models._count"
    name: str | None = None  # for ``from module import name``


def package_of_file(file: str) -> str:
    """``edgevit/split/api.py`` -> ``split``; ``edgevit/_files.py`` -> ``_files``; the face -> ``edgevit``."""
    parts = file.split("/")
    if len(parts) == 2:
        return "edgevit" if parts[1] == "__init__.py" else parts[1].removesuffix(".py")
    return parts[1]


def _absolute(node: ast.ImportFrom, file: str) -> str:
    if not node.level:
        return node.module or ""
    here = file.removesuffix(".py").split("/")
    base = here[: len(here) - node.level]  # a module's own name counts as one level, __init__ too
    return ".".join(base + ([node.module] if node.module else []))


def _is_lazy_table(node: ast.AST) -> bool:
    return isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets)


def imports_in(source: str, file: str) -> list[Import]:
    """Every import of ``edgevit`` in ``source`` (the text of ``file``), at any depth."""
    tree = ast.parse(source, filename=file)
    lazy_values = {id(value) for node in ast.walk(tree) if _is_lazy_table(node) and isinstance(node.value, ast.Dict)
                   for value in node.value.values}
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(file, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, file)
            found += [Import(file, node.lineno, module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if LAZY_TARGET.fullmatch(node.value):
                module, name = node.value.split(":")
                found.append(Import(file, node.lineno, module, name))
            elif id(node) in lazy_values and node.value.startswith("edgevit."):
                found.append(Import(file, node.lineno, node.value))
    return [i for i in found if i.module == "edgevit" or i.module.startswith("edgevit.")]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def target_of(imp: Import) -> tuple[str | None, bool]:
    """(the package imported, whether it is a private module or name of it); None: the version."""
    parts, name = imp.module.split(".")[1:], imp.name
    if not parts:  # from edgevit import ...
        if name in FLOOR:
            parts, name = [name], None
        elif name and name.startswith("__"):
            return None, False  # __version__
        else:
            return "edgevit", False  # the face: its lazy re-exports would hide an upward import
    private = any(_private(part) for part in parts[1:]) or bool(name and _private(name))
    return parts[0], private


def problems_of(imports: list[Import]) -> list[tuple[Import, str]]:
    """The imports that break a rule, each with what is wrong."""
    out = []
    for imp in imports:
        source = package_of_file(imp.file)
        target, private = target_of(imp)
        if imp.file == FACE or target is None or target == source:
            continue
        what = imp.module + (f".{imp.name}" if imp.name else "")
        if private:
            out.append((imp, f"imports private {what} of package {target}"))
        floors = {package: FLOOR.get(package, len(FLOORS) if package == "edgevit" else None)
                  for package in (source, target)}
        if None in floors.values():
            out.append((imp, f"{source if floors[source] is None else target} has no floor in FLOORS"))
        elif floors[target] >= floors[source]:
            way = "up" if floors[target] > floors[source] else "sideways (same floor)"
            out.append((imp, f"imports {what}: {source} -> {target} runs {way}"))
    return out


def all_imports() -> list[Import]:
    files = sorted((ROOT / "edgevit").rglob("*.py"))
    return [imp for path in files for imp in imports_in(path.read_text(), path.relative_to(ROOT).as_posix())]


def _listing(problems: list[tuple[Import, str]]) -> str:
    return "\n".join(f"{imp.file}:{imp.line}: {why}" for imp, why in problems)


def test_every_package_has_a_floor():
    packages = {p.name for p in (ROOT / "edgevit").iterdir() if (p / "__init__.py").exists()}
    packages |= {p.stem for p in (ROOT / "edgevit").glob("*.py") if p.name != "__init__.py"}
    assert packages == set(FLOOR), "give every package of edgevit/ a floor in FLOORS (and drop gone ones)"


def test_imports_point_down_and_no_package_imports_anothers_private_names():
    problems = problems_of(all_imports())
    assert not problems, "\n" + _listing(problems)


@pytest.mark.parametrize(("file", "source", "expected"), [
    ("edgevit/split/measure.py", "from edgevit.models._count import count_params", "private edgevit.models._count"),
    ("edgevit/split/fusion.py", "def f():\n    from edgevit.train import _random_shift", "private edgevit.train._random_shift"),
    ("edgevit/split/x.py", "from ..models._count import count_params", "private edgevit.models._count"),
    ("edgevit/cli/x.py", "import edgevit.runtime._backend", "private edgevit.runtime._backend"),
    ("edgevit/export/report.py", "from edgevit.cli._table import format_table", "export -> cli runs up"),
    ("edgevit/partition/__init__.py", "R.register('classwise', 'edgevit.split.classwise:ClasswiseStrategy')",
     "partition -> split runs up"),
    ("edgevit/partition/__init__.py", "_LAZY = {'run_local': 'edgevit.cluster.local'}", "partition -> cluster runs up"),
    ("edgevit/runtime/session.py", "from edgevit.models import create_model", "runtime -> models runs sideways"),
    ("edgevit/data/x.py", "from edgevit import create_model", "data -> edgevit runs up"),
    ("edgevit/newpkg/x.py", "from edgevit.errors import EdgeVitError", "newpkg has no floor"),
])
def test_the_checker_finds_a_violation(file, source, expected):
    problems = problems_of(imports_in(source, file))
    assert problems and expected in _listing(problems), _listing(problems)
    assert all(imp.file == file and imp.line >= 1 for imp, _ in problems)


@pytest.mark.parametrize(("file", "source"), [
    ("edgevit/split/measure.py", "from edgevit.models import count_params"),
    ("edgevit/export/prepare.py", "def f():\n    from edgevit._files import file_sha256"),
    ("edgevit/environment.py", "from edgevit import __version__"),
    ("edgevit/models/vit.py", "from edgevit.models._info import MODELS\nfrom ._base import EdgeModel"),
    ("edgevit/cli/x.py", "from edgevit import runtime\nfrom edgevit.split import STRATEGIES"),
    ("edgevit/__init__.py", "_LAZY = {'export': 'edgevit.export:export'}"),
    ("edgevit/registry.py", '"""Example: targets.register("tflite", "edgevit.export.targets.tflite:T") """'),
])
def test_the_checker_accepts_what_is_allowed(file, source):
    assert problems_of(imports_in(source, file)) == []


if __name__ == "__main__":  # the package graph, each package with the floor it sits on
    graph = defaultdict(set)
    for imp in all_imports():
        target, _ = target_of(imp)
        if target and target != package_of_file(imp.file):
            graph[package_of_file(imp.file)].add(target)
    for package in sorted(graph, key=lambda p: (FLOOR.get(p, -1), p)):
        print(f"{FLOOR.get(package, '?')} {package} -> {', '.join(sorted(graph[package], key=lambda p: (FLOOR.get(p, 99), p)))}")
