"""Checking an artifact against the PyTorch model, through the torch-free runtime.

The artifact folder is loaded with ``edgevit.runtime.load`` exactly as a device would load
it, and run on several random tensors and real photographs (scikit-image's sample data)
preprocessed from the manifest's own preprocessing. Its outputs are compared with the
original PyTorch model's (float32, before reparameterization) on the same inputs.
Precisions with calibrated activations (int8) are also run on images of the calibration
source that calibration did not use (``held_out``): int8 is faithful on the kind of input it
was calibrated for, and it is judged there; the photos and random tensors are then reported,
not judged (a model calibrated on digits clips the ranges a photo needs).

Metrics, per output:
    * ``max_abs_err``: the largest absolute difference over all samples and classes;
    * ``max_rel_err``: ``max_abs_err`` divided by the largest absolute reference value of
      that output (element-wise relative error is meaningless for logits near zero);
    * ``min_cosine``: the lowest cosine similarity of one sample's output vectors;
    * ``top1_agreement``: the share of samples whose arg-max class is the same.

Each precision is judged by its ``tolerance`` in the one precision table (:mod:`edgevit.precision`).
Where no backend can run the file (Core ML on Linux without the reference executor, or an
op the executor lacks), the check is structural and the report says plainly that the
numbers were not checked.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.errors import (
    ArtifactError,
    EdgeVitError,
    MissingDependencyError,
    UnsupportedOpError,
    VerificationError,
)
from edgevit.precision import N_HELD_OUT, TOLERANCES, Tolerance

__all__ = ["verify_artifact", "tolerance_for", "make_samples", "compare", "judge", "backend_usable", "Samples",
           "Tolerance", "TOLERANCES", "N_HELD_OUT", "with_held_out"]


N_RANDOM = 4
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@dataclass(frozen=True)
class Samples:
    """Verification inputs, float32 NCHW, with a name per sample."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    nchw: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


def tolerance_for(precision: str) -> Tolerance:
    if precision not in TOLERANCES:
        raise EdgeVitError(f"no verification tolerance for precision {precision!r}; register it in edgevit.precision.PRECISIONS")
    return TOLERANCES[precision]


def make_samples(spec: Any, n_random: int = N_RANDOM, photos: tuple[str, ...] = PHOTOS, seed: int = 0) -> Samples:
    """Random normal tensors (the scale of normalised images) and preprocessed sample photos."""
    rng = np.random.default_rng(seed)
    size = spec.size
    arrays = [rng.standard_normal((3, size, size), dtype=np.float32) for _ in range(n_random)]
    names = [f"random_{i}" for i in range(n_random)]
    kinds = ["random"] * n_random
    for name, array in _photo_arrays(spec, photos):
        arrays.append(array)
        names.append(name)
        kinds.append("photo")
    return Samples(tuple(names), tuple(kinds), np.stack(arrays).astype(np.float32))


def with_held_out(samples: Samples, reference: np.ndarray, names: list[str], nchw: np.ndarray,
                  held_out_reference: np.ndarray) -> tuple[Samples, np.ndarray]:
    """``samples`` and their reference outputs with held-out calibration-source images appended."""
    return (Samples(samples.names + tuple(names), samples.kinds + ("held_out",) * len(names),
                    np.concatenate([samples.nchw, nchw.astype(np.float32)])),
            np.concatenate([reference, held_out_reference.astype(reference.dtype)]))


def judged_indices(samples: Samples, tolerance: Tolerance) -> list[int]:
    """Which samples ``tolerance`` judges (the others are reported only)."""
    if tolerance.in_domain and "held_out" in samples.kinds:
        return [i for i, kind in enumerate(samples.kinds) if kind == "held_out"]
    return [i for i, kind in enumerate(samples.kinds) if tolerance.judge_random or kind != "random"]


def _photo_arrays(spec: Any, photos: tuple[str, ...]) -> list[tuple[str, np.ndarray]]:
    """Photos preprocessed per ``spec`` and returned channels-first."""
    from edgevit.data.preprocess import preprocess_image, sample_photos

    out = []
    for name, image in sample_photos(photos):
        array = preprocess_image(image, spec)
        out.append((name, array.transpose(2, 0, 1) if spec.layout == "NHWC" else array))
    return out


def compare(reference: np.ndarray, actual: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    """The metrics of one output: ``reference`` and ``actual`` are ``[samples, ...]``."""
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    act = actual.reshape(len(actual), -1).astype(np.float64)
    if ref.shape != act.shape:
        raise ArtifactError(f"the artifact's output has shape {actual.shape}, PyTorch's {reference.shape}")
    if not np.isfinite(act).all():
        bad = [names[i] for i in range(len(act)) if not np.isfinite(act[i]).all()]
        return {"max_abs_err": float("inf"), "max_rel_err": float("inf"), "min_cosine": 0.0,
                "top1_agreement": 0.0, "worst_sample": bad[0], "non_finite_samples": bad}
    diff = np.abs(act - ref)
    per_sample = diff.max(axis=1)
    scale = float(np.abs(ref).max()) or 1.0
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(act, axis=1)
    cosine = np.where(norms > 0, (ref * act).sum(axis=1) / np.where(norms > 0, norms, 1.0), 1.0)
    agree = ref.argmax(axis=1) == act.argmax(axis=1)
    return {
        "max_abs_err": float(diff.max()),
        "max_rel_err": float(diff.max() / scale),
        "min_cosine": float(cosine.min()),
        "top1_agreement": float(agree.mean()),
        "worst_sample": names[int(per_sample.argmax())],
        "top1_disagreements": [names[i] for i in np.flatnonzero(~agree)],
    }


def judge(metrics: dict[str, dict[str, Any]], tolerance: Tolerance) -> list[str]:
    """One line per threshold an output misses (empty: passed)."""
    failures = []
    for output, m in metrics.items():
        if tolerance.max_rel_err is not None and not m["max_rel_err"] <= tolerance.max_rel_err:
            failures.append(f"output {output!r}: max rel err {m['max_rel_err']:.3g} > {tolerance.max_rel_err:g} "
                            f"(max abs err {m['max_abs_err']:.3g}, worst sample {m['worst_sample']})")
        if not m["min_cosine"] >= tolerance.min_cosine:
            failures.append(f"output {output!r}: cosine similarity {m['min_cosine']:.6f} < {tolerance.min_cosine:g}")
        if not m["top1_agreement"] >= tolerance.min_top1:
            failures.append(f"output {output!r}: top-1 agreement {m['top1_agreement']:.0%} < {tolerance.min_top1:.0%} "
                            f"(disagree: {', '.join(m.get('top1_disagreements', []))})")
    return failures


def run_artifact(folder: Path, backend: str, samples: Samples, manifest: Any,
                 model_file: str | None = None) -> dict[str, np.ndarray]:
    """Run every sample through the artifact (or its file ``model_file``, a companion such as
    ``model.ort``) with the runtime; returns ``{output: [samples, ...]}``."""
    from edgevit.runtime import load

    spec = manifest.inputs[0]
    feeds = artifact_inputs(samples, manifest)
    batch = spec.shape[0]
    chunks = [feeds] if batch is None else [feeds[i:i + batch] for i in range(0, len(feeds), batch)]
    outputs: dict[str, list[np.ndarray]] = {}
    with load(folder / model_file if model_file else folder, backend=backend) as session:
        for chunk in chunks:
            count = len(chunk)
            if batch is not None and count < batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - count, axis=0)])
            result = session.run({spec.name: np.ascontiguousarray(chunk, dtype=spec.dtype)})
            for name, value in result.items():
                outputs.setdefault(name, []).append(np.asarray(value)[:count])
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def artifact_inputs(samples: Samples, manifest: Any) -> np.ndarray:
    """The samples in the artifact's layout, with the photos preprocessed from the manifest.

    The photos are preprocessed again from ``manifest.preprocessing`` (what a device will do)
    and must reproduce the arrays the PyTorch reference saw; otherwise the manifest is wrong.
    """
    from edgevit.data.preprocess import PreprocessSpec

    layout = manifest.inputs[0].layout or "NCHW"
    spec = PreprocessSpec.from_dict({**manifest.preprocessing, "layout": layout})
    photos = [name for name, kind in zip(samples.names, samples.kinds) if kind == "photo"]
    for name, array in _photo_arrays(spec, tuple(photos)):
        expected = samples.nchw[samples.names.index(name)]
        if array.shape != expected.shape or not np.allclose(array, expected, atol=1e-6):
            raise ArtifactError(f"the manifest's preprocessing does not reproduce the verification input {name!r}; "
                                "the manifest is inconsistent with the export")
    arrays = samples.nchw
    return np.ascontiguousarray(arrays.transpose(0, 2, 3, 1)) if layout == "NHWC" else arrays


def verify_artifact(folder: Path, manifest: Any, samples: Samples, reference: np.ndarray, target: Any,
                    options: Any, classifies: bool = True, model_file: str | None = None,
                    backends: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run the artifact (or check its structure) and return the verification report.

    The report's ``status`` is ``passed``, ``failed`` or ``structural`` (numbers not checked).
    ``classifies=False``: the output is a feature tensor, whose arg-max means nothing; top-1
    agreement is reported, not judged. ``model_file`` / ``backends``: verify a companion file of
    the artifact (``model.ort``) with the backends that open it, by the same rules.
    """
    from edgevit.runtime.cpu import int8_path

    start = time.perf_counter()
    tolerance = tolerance_for(options.precision)
    if not classifies:
        tolerance = replace(tolerance, min_top1=0.0, why=tolerance.why + "; a feature output: top-1 agreement "
                            "is reported, not judged")
    base = {"reference": "PyTorch float32 model before reparameterization, same inputs",
            "samples": {"random": samples.kinds.count("random"),
                        **({"real": samples.kinds.count("real")} if "real" in samples.kinds else {}),
                        "photos": [n for n, k in zip(samples.names, samples.kinds) if k == "photo"],
                        **({"held_out": [n for n, k in zip(samples.names, samples.kinds) if k == "held_out"]}
                           if "held_out" in samples.kinds else {})},
            "tolerance": {"precision": options.precision, **asdict(tolerance)},
            # int8 kernels differ between CPUs (edgevit.runtime.cpu): the runtime compares this with its own
            "cpu": int8_path().to_dict()}
    reasons = []
    for backend in backends or target.verification_backends():
        usable, why = backend_usable(backend)
        if not usable:
            reasons.append(why)
            continue
        try:
            outputs = run_artifact(folder, backend, samples, manifest, model_file)
        except UnsupportedOpError as exc:
            reasons.append(f"backend {backend!r} cannot run this model: {exc}")
            continue
        except MissingDependencyError as exc:
            reasons.append(f"backend {backend!r} is not installed: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - an artifact the runtime cannot run fails verification
            raise VerificationError(
                f"{backend} could not run the artifact: {type(exc).__name__}: {str(exc).strip()[:300]}"
            ) from exc
        judged = judged_indices(samples, tolerance)
        names = tuple(samples.names[i] for i in judged)
        metrics = {name: compare(reference[judged], value[judged], names) for name, value in outputs.items()}
        failures = judge(metrics, tolerance)
        rest = [i for i in range(len(samples)) if i not in judged]
        rest_names = tuple(samples.names[i] for i in rest)
        extra = {} if not rest else {"judged_samples": list(names), "not_judged": {
            name: compare(reference[rest], value[rest], rest_names) for name, value in outputs.items()}}
        return {"status": "failed" if failures else "passed", "numbers_checked": True, "backend": backend,
                "backend_version": _backend_version(backend), **base, "outputs": metrics, "failures": failures,
                **extra, "seconds": round(time.perf_counter() - start, 2)}
    if model_file is not None:  # a companion no backend here opens: nothing structural to fall back on
        return {"status": "failed", "numbers_checked": False, **base, "failures": reasons,
                "seconds": round(time.perf_counter() - start, 2)}
    structural = target.structural_check(folder / manifest.model_file, options, manifest.inputs, manifest.outputs)
    note = ("numbers were NOT checked: " + "; ".join(reasons or ["no runtime backend runs this target here"])
            + ". Only the structure was checked.")
    return {"status": "structural" if structural["ok"] else "failed", "numbers_checked": False, "note": note,
            **base, "structural": structural, "failures": structural["problems"],
            "seconds": round(time.perf_counter() - start, 2)}


def backend_usable(name: str) -> tuple[bool, str]:
    from edgevit.runtime import BACKENDS

    if name not in BACKENDS:
        return False, f"backend {name!r} is not registered"
    try:
        backend = BACKENDS.get(name)
    except Exception as exc:  # noqa: BLE001 - a backend module that does not import is unavailable
        return False, f"backend {name!r} is not available in this edgevit ({exc})"
    if not backend.available():
        return False, f"backend {name!r} is not available on this machine"
    return True, ""


def _backend_version(name: str) -> str:
    from edgevit.runtime import BACKENDS

    try:
        return str(BACKENDS.get(name).version())
    except Exception:  # noqa: BLE001 - a version string is informative only
        return "unknown"


def summary(report: dict[str, Any]) -> str:
    """One line for the terminal."""
    status = report.get("status", "skipped")
    if status == "skipped":
        return "not verified (--no-verify)"
    if not report.get("numbers_checked"):
        checks = ", ".join(report.get("structural", {}).get("checks", []))
        head = "structure OK" if status == "structural" else "FAILED"
        return f"{head} ({checks}); {report['note']}"
    parts = []
    n = len(report["judged_samples"]) if "judged_samples" in report else (
        report["samples"]["random"] + len(report["samples"]["photos"]))
    for name, m in report["outputs"].items():
        parts.append(f"{name}: max abs {m['max_abs_err']:.2g}, max rel {m['max_rel_err']:.2g}, "
                     f"cosine {m['min_cosine']:.6f}, top-1 {round(m['top1_agreement'] * n)}/{n}")
    tol = report["tolerance"]
    limit = f"rel <= {tol['max_rel_err']:g}, " if tol.get("max_rel_err") is not None else ""
    limits = f"{tol['precision']}: {limit}cosine >= {tol['min_cosine']:g}, top-1 >= {tol['min_top1']:.0%}"
    verdict = "PASSED" if status == "passed" else "FAILED"
    held_out = report["samples"].get("held_out")
    if "not_judged" in report:  # the other samples, reported only
        limits += f"; {'photos and random tensors' if held_out else 'random tensors'}, not judged: " + ", ".join(
            f"cosine {m['min_cosine']:.4f}" for m in report["not_judged"].values())
    what = "held-out calibration images" if held_out else "inputs"
    return f"{verdict} with {report['backend']} on {n} {what}; " + "; ".join(parts) + f" ({limits})"
