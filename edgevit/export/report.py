"""What an export returns: the :class:`Artifact`, its printed report and the summary table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevit.artifact import Manifest, read_manifest


@dataclass(frozen=True)
class Artifact:
    """An exported, written artifact folder.

    Attributes:
        path: the folder (``<out>/<name>-<target>-<precision>``).
        manifest: what its ``manifest.json`` says.
        seconds: wall time of the export (all steps).

    Example:
        >>> artifact = edgevit.export("test_vit", target="onnx")
        >>> print(artifact.report())
        >>> session = artifact.load()          # edgevit.runtime, no torch needed
    """

    path: Path
    manifest: Manifest
    seconds: float = 0.0

    @classmethod
    def open(cls, path: str | Path) -> Artifact:
        """An artifact folder written earlier."""
        return cls(Path(path), read_manifest(path))

    @property
    def size_bytes(self) -> int:
        return sum(self.manifest.files.values())

    @property
    def verification(self) -> dict[str, Any]:
        return self.manifest.verification

    def load(self, backend: str = "auto", threads: int | None = None) -> Any:
        """A :class:`edgevit.runtime.Session` on this artifact."""
        from edgevit.runtime import load

        return load(self.path, backend=backend, threads=threads)

    def report(self) -> str:
        """A few lines: what was written, its input, ops, warnings and verification."""
        from edgevit.export.verify import summary

        m = self.manifest
        inp, out = m.inputs[0], m.outputs[0]
        lines = [
            f"{m.model['name']} -> {m.target} {m.precision}: {self.path}  ({format_size(self.size_bytes)}"
            + (f", {self.seconds:.1f} s)" if self.seconds else ")"),
            f"  input     {inp.name!r} {inp.dtype} {_shape(inp.shape)} {inp.layout or ''}".rstrip()
            + f"; output {out.name!r} {out.dtype} {_shape(out.shape)}",
            f"  weights   {m.weights.get('path') or m.weights.get('note', 'random init')}"
            + (f" (image size {m.model.get('image_size')}, {m.model['image_size_source']})"
               if m.model.get("image_size_source") else ""),
            f"  ops       {m.ops.get('total', 0)} ops: {_histogram(m.ops)}",
        ]
        for key, value in m.ops.get("details", {}).items():
            lines.append(f"            {key}: {value}")
        for warning in m.ops.get("warnings", []):
            lines.append(f"  warning   {warning}")
        for note in m.extra.get("notes", []):
            lines.append(f"  note      {note}")
        lines.append(f"  verify    {summary(m.verification)}")
        for name, info in m.extra.get("companions", {}).items():
            lines.append(f"  {name:<9} {info.get('format', '')} for {info.get('backend')} "
                         f"({format_size((self.path / name).stat().st_size) if (self.path / name).is_file() else '?'}); "
                         f"verify {summary(info.get('verification', {}))}")
        lines += _quantization_lines(m.extra.get("quantization"), m.verification.get("accuracy"))
        lines += auto_lines(m.extra.get("precision_auto"))
        return "\n".join(lines)

    def usage(self) -> str:
        """How to run it with the torch-free runtime."""
        from edgevit.runtime import BACKENDS, backends_for

        backends = backends_for(Path(self.manifest.model_file).suffix)
        needs_torch = any(BACKENDS.get(name).needs_torch for name in backends)
        name = self.manifest.inputs[0].name
        return "\n".join([
            "Run it (needs torch: the backend's runtime links it):" if needs_torch else "Run it (no torch needed):",
            "  from edgevit import runtime",
            f"  session = runtime.load({str(self.path)!r})      # backend='auto': the first installed of "
            + (", ".join(backends) or "none registered"),
            "  session.predict(['photo.jpg'], top_k=5)        # preprocessing from the manifest",
            f"  session.run({{{name!r}: array}})                 # or raw arrays",
        ])


@dataclass(frozen=True)
class ExportOutcome:
    """One cell of a multi-target export: the artifact, or the error that stopped it."""

    model: str
    target: str
    precision: str
    artifact: Artifact | None = None
    error: BaseException | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.artifact is not None


def summary_table(outcomes: list[ExportOutcome]) -> str:
    """One row per target and precision: status, time, size, worst error, top-1, warnings, path."""
    from edgevit._table import format_table

    rows = []
    for o in outcomes:
        if o.artifact is None:
            rows.append((o.model, o.target, o.precision, "FAILED", f"{o.seconds:.1f}", "-", "-", "-", "-",
                         type(o.error).__name__ if o.error else "-"))
            continue
        v = o.artifact.verification
        worst = worst_output(v)
        rows.append((
            o.model, o.target, o.precision, _status(v), f"{o.seconds:.1f}", format_size(o.artifact.size_bytes),
            f"{worst['max_rel_err']:.2g}" if worst else "-", f"{worst['top1_agreement']:.0%}" if worst else "-",
            len(o.artifact.manifest.ops.get("warnings", [])), str(o.artifact.path),
        ))
    return format_table(["model", "target", "precision", "verified", "seconds", "size", "max rel err", "top-1",
                         "warnings", "path"], rows, align="llllrrrrrl")


def worst_output(verification: dict[str, Any]) -> dict[str, Any] | None:
    outputs = verification.get("outputs") or {}
    if not outputs:
        return None
    return max(outputs.values(), key=lambda m: m["max_rel_err"])


def format_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def _status(verification: dict[str, Any]) -> str:
    return {"passed": "passed", "structural": "structure only", "skipped": "no (--no-verify)"}.get(
        verification.get("status", "skipped"), verification.get("status", "?"))


def _quantization_lines(quantization: dict[str, Any] | None, accuracy: dict[str, Any] | None) -> list[str]:
    """The recipe, the agreement on the calibration images and the labelled-set accuracy."""
    lines = []
    if quantization:
        recipe, agree = quantization["recipe"], quantization["agreement_on_calibration"]
        kept = recipe["float_kinds"] + [f"block {b}" for b in recipe["float_blocks"]]
        lines.append(f"  quantize  {recipe['precision']} ({recipe['chosen_by']} recipe), calibrated on "
                     f"{quantization['calibration']['used']} {recipe['calib_source']} images"
                     + (f" ({recipe['calib_method']})" if quantization["calibration"]["method"] else "")
                     + f"; float: {', '.join(kept) or 'nothing'}")
        lines.append(f"            vs float on the calibration images: top-1 agreement {agree['top1_agreement']:.1f}%, "
                     f"SQNR {agree['sqnr_db']:.1f} dB, min cosine {agree['min_cosine']:.4f}")
    if accuracy:
        art, ref = accuracy["artifact"], accuracy["pytorch"]
        lines.append(f"  accuracy  {accuracy['data']} ({accuracy['split']}, {accuracy['images']} images): top-1 "
                     f"{art['top1']:.2f}% (PyTorch fp32 {ref['top1']:.2f}%, drop {accuracy['top1_drop']:+.2f} points)")
    return lines


def _shape(shape: tuple) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


def _histogram(ops: dict[str, Any], n: int = 8) -> str:
    items = list(ops.get("histogram", {}).items())
    text = ", ".join(f"{op} {count}" for op, count in items[:n])
    return text + (f", ... ({len(items) - n} more types)" if len(items) > n else "")


def auto_lines(record: dict[str, Any] | None) -> list[str]:
    """The report's lines for a ``--precision auto`` choice (the record :mod:`edgevit.export.auto` writes)."""
    if not record:
        return []
    parts = []
    for precision, entry in record["candidates"].items():
        if "p50_ms" in entry:
            parts.append(f"{precision} {entry['p50_ms']:.2f} ms")
        elif "excluded" in entry:
            parts.append(f"{precision} excluded ({entry['excluded']})")
        elif "error" in entry:
            parts.append(f"{precision} failed ({entry['error'].split(':')[0]})")
    return [f"  auto      chose {record['chosen']}: {record['reason']}", f"            {'; '.join(parts)}"]
