"""int8 against fp32 for five ViT families on ONNX, TFLite and Core ML: accuracy, size, latency.

Not a test: it trains, exports and times, which takes about two hours on a busy 2-core machine.

**Accuracy** (per model): the model is trained from scratch on the bundled ``digits``
(``edgevit.train``; no pretrained weights exist here) at a reduced image size where the
model can take one (64 px), at 224 px where it cannot (EfficientFormer-L1); then exported
by ``edgevit.export`` at fp32 and int8 (default recipe: sensitivity pass and measured
fragile-op rule; 128 calibration images from the digits *training* split) with
``--data digits``, which evaluates the artifact through the runtime on the digits
*validation* split (359 images). Core ML runs through the numpy reference executor
(``coreml-reference``), the only Core ML runtime on Linux.

**Latency** (per model): fp32 and int8 artifacts at 224 px (random weights, except
EfficientFormer-L1, which is trained at 224), batch 1, 2 threads, timed by
``edgevit.bench.benchmark`` interleaved in one process so that the machine's load hits both
alike; ONNX in onnxruntime, TFLite in LiteRT/XNNPACK (Core ML cannot be timed on Linux). The
int8 file size is compared with fp32 at 224 px. For ONNX both the default opset (20, one
``Gelu`` op) and, with ``--opset18``, opset 18 (GELU decomposed into Erf arithmetic) are measured. (Results
written before the default moved to 20 label the opset-20 rows ``-opset20`` and the default rows are opset 18.)

**ONNX int8 formats** (``--onnx-formats``): int8 ONNX is exported in each format of
``edgevit.quantize.onnx.INT8_FORMATS`` for accuracy and latency. Where the machine's CPU
saturates uint8 x int8 sums (AVX2 or AVX-512 without VNNI: ``edgevit.runtime.cpu``), the
full-range ``u8s8`` rows measure that saturation; the table header and every accuracy row name
the CPU's int8 kernel path. Rows of targets not re-run are kept from earlier runs with the path
they were measured on ("not recorded" for runs made before it was recorded).

Targets (issue 6): int8 top-1 within 1.0 point of fp32; int8 size <= 0.3x fp32; int8 p50
latency <= 0.6x fp32.

Usage::

    python benchmarks/int8.py                         # everything (resumes from --work)
    python benchmarks/int8.py --phase latency --models vit_tiny_patch16_224

Writes ``benchmarks/results/int8.md`` and ``int8.json`` after every model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("cas_vit_xs", "tiny_vit_5m_224", "efficientformer_l1", "efficientformerv2_s0", "vit_tiny_patch16_224")
#: training size on digits: 64 px where the model can be built at 64, its fixed 224 otherwise
TRAIN_SIZE = {"efficientformer_l1": 224}
DEFAULT_TRAIN_SIZE = 64
EPOCHS = {"efficientformer_l1": 6, "vit_tiny_patch16_224": 15}
DEFAULT_EPOCHS = 8
#: EfficientFormer-L1 trains at 224 px, where every epoch costs about 6 CPU-minutes: fewer epochs
#: with smaller batches (more optimizer steps; 3 epochs of batch 64 = 69 steps reached only 39%)
BATCH = {"efficientformer_l1": 16}
DEFAULT_BATCH = 64
#: a second, lower-learning-rate run from the first one's weights: (epochs, lr). EfficientFormer-L1
#: reached only 86% after its 6 epochs, and its thin margins made int8's top-1 wobble by 4 images
SECOND_RUN = {"efficientformer_l1": (6, 3e-4)}
TARGETS = ("onnx", "tflite", "coreml")
LATENCY_TARGETS = ("onnx", "tflite")
DEFAULT_ONNX_FORMAT = "u8s8-reduced"
ONNX_FORMATS = ("u8s8-reduced", "u8u8", "u8s8")
GOALS = {"top1_drop": 1.0, "size_ratio": 0.3, "latency_ratio": 0.6}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        save(load_results())
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = load_results()
    results["environment"] = environment_summary()
    results["settings"] = {"calib_size": args.calib_size, "runs": args.runs, "repeats": args.repeats, "threads": 2,
                           "goals": GOALS}
    for model in args.models:
        entry = results["models"].setdefault(model, {})
        try:
            if args.phase in ("accuracy", "all"):
                entry["accuracy"] = accuracy(model, work, args, entry.get("accuracy"))
                save(results, args.models)
            if args.phase in ("latency", "all"):
                entry["latency"] = latency(model, work, args, entry.get("latency"))
                save(results, args.models)
        except Exception as exc:  # noqa: BLE001 - keep going with the other models, record the failure
            entry["error"] = f"{type(exc).__name__}: {exc}"
            log(f"{model}: FAILED {entry['error']}\n{traceback.format_exc()}")
            save(results, args.models)
    return 0


# -- accuracy ------------------------------------------------------------------------------------------


def accuracy(model: str, work: Path, args: argparse.Namespace, previous: dict[str, Any] | None) -> dict[str, Any]:
    from edgevit.runtime.cpu import int8_path

    size = TRAIN_SIZE.get(model, DEFAULT_TRAIN_SIZE)
    weights, training = trained_weights(model, size, work, not args.no_second_run)
    # rows not re-run keep the training they were measured with
    before = (previous or {}).get("training") or {}
    kept = {t: {**r, "training": r.get("training", before)}
            for t, r in ((previous or {}).get("targets") or {}).items() if t not in _accuracy_labels(args)}
    out = {"image_size": size, "training": training, "targets": kept}
    for target, extra in _accuracy_variants(args):
        label = target + _format_suffix(extra)
        row: dict[str, Any] = {"cpu": int8_path().to_dict(), "training": training}
        for precision in ("fp32", "int8"):
            artifact = export(model, target, precision, work / "accuracy", weights=weights, image_size=size,
                              calib_size=args.calib_size, data="digits", **(extra if precision == "int8" else {}))
            row[precision] = _accuracy_row(artifact)
        row["top1_drop"] = round(row["fp32"]["top1"] - row["int8"]["top1"], 2)
        log(f"{model} {label}: fp32 {row['fp32']['top1']:.2f}%  int8 {row['int8']['top1']:.2f}%  "
            f"drop {row['top1_drop']:+.2f}")
        if row["top1_drop"] > GOALS["top1_drop"] and not extra:  # the remedy the tool offers: --max-drop at the goal
            artifact = export(model, target, "int8", work / "accuracy", weights=weights, image_size=size,
                              calib_size=args.calib_size, data="digits", max_drop=GOALS["top1_drop"])
            row["int8_max_drop"] = _accuracy_row(artifact)
            row["max_drop_top1_drop"] = round(row["fp32"]["top1"] - row["int8_max_drop"]["top1"], 2)
            log(f"{model} {target} --max-drop {GOALS['top1_drop']:g}: int8 {row['int8_max_drop']['top1']:.2f}%  "
                f"drop {row['max_drop_top1_drop']:+.2f}")
        out["targets"][label] = row
    return out


def _accuracy_variants(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """(target, extra export options) per accuracy row: ONNX once per asked int8 format."""
    variants = []
    for target in args.targets:
        if target != "onnx":
            variants.append((target, {}))
            continue
        variants += [("onnx", {} if fmt == DEFAULT_ONNX_FORMAT else {"onnx_int8_format": fmt})
                     for fmt in args.onnx_formats]
    return variants


def _accuracy_labels(args: argparse.Namespace) -> set[str]:
    return {target + _format_suffix(extra) for target, extra in _accuracy_variants(args)}


def _format_suffix(extra: dict[str, Any]) -> str:
    return f"-{extra['onnx_int8_format']}" if extra.get("onnx_int8_format") else ""


def _accuracy_row(artifact: Any) -> dict[str, Any]:
    manifest = artifact.manifest
    row = {
        "top1": manifest.verification["accuracy"]["artifact"]["top1"],
        "pytorch_top1": manifest.verification["accuracy"]["pytorch"]["top1"],
        "verification": verification_status(artifact),
        "bytes": sum(manifest.files.values()),
        "seconds": artifact.seconds,
    }
    if manifest.precision == "int8":
        quantization = manifest.extra["quantization"]
        row.update(recipe=quantization["recipe"], agreement_on_calibration=quantization["agreement_on_calibration"],
                   units=quantization["units"], sensitivity=quantization["sensitivity"],
                   max_drop_steps=quantization["max_drop_steps"])
    return row


def trained_weights(model: str, size: int, work: Path, second_run: bool = True) -> tuple[Path, dict[str, Any]]:
    """Weights trained on digits at ``size`` (cached in ``work``; too large to commit).

    ``second_run=False`` (``--no-second-run``): take the first run's weights where SECOND_RUN
    would train again (the tables' ``epochs`` column then shows one run)."""
    import torch

    from edgevit.data.datasets import load_dataset
    from edgevit.models import create_model
    from edgevit.train import TrainConfig, dataset_spec, save_weights, train

    path = work / "weights" / f"{model}-digits-{size}.safetensors"
    record = path.with_suffix(".json")
    info = json.loads(record.read_text()) if path.exists() and record.exists() else None
    if info is not None and (model not in SECOND_RUN or "second_run" in info or not second_run):
        return path, info
    torch.set_num_threads(1)  # on a shared 2-core machine PyTorch's 2-thread training is many times slower
    train_set, val_set = load_dataset("digits", "train"), load_dataset("digits", "val")
    spec = dataset_spec(model, train_set, size)
    if info is None:
        net = create_model(model, num_classes=10, image_size=size)
        config = TrainConfig(epochs=EPOCHS.get(model, DEFAULT_EPOCHS), batch_size=BATCH.get(model, DEFAULT_BATCH),
                             lr=1e-3, image_size=size)
        start = time.perf_counter()
        log(f"{model}: training {config.epochs} epochs at {size} px")
        result = train(net, train_set, val_set, config, spec, progress=False)
        save_weights(net, path, labels=train_set.classes, metadata={"model": model, "image_size": str(size)})
        info = {"epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
                "val_top1_pytorch": result.final_top1, "seconds": round(time.perf_counter() - start, 1), "threads": 1}
        record.write_text(json.dumps(info))
    if model in SECOND_RUN and second_run:
        epochs, lr = SECOND_RUN[model]
        net = create_model(model, weights=path, image_size=size)
        config = TrainConfig(epochs=epochs, batch_size=BATCH.get(model, DEFAULT_BATCH), lr=lr, warmup_epochs=0.5,
                             image_size=size, seed=1)
        start = time.perf_counter()
        log(f"{model}: a second run of {epochs} epochs at lr {lr} from the first run's weights")
        result = train(net, train_set, val_set, config, spec, progress=False)
        partial = path.with_suffix(".partial.safetensors")
        save_weights(net, partial, labels=train_set.classes, metadata={"model": model, "image_size": str(size)})
        partial.replace(path)
        info["second_run"] = {"epochs": epochs, "batch_size": config.batch_size, "lr": lr,
                              "val_top1_pytorch": result.final_top1, "seconds": round(time.perf_counter() - start, 1)}
        info["val_top1_pytorch"] = result.final_top1
        record.write_text(json.dumps(info))
    return path, info


# -- latency -------------------------------------------------------------------------------------------


def latency(model: str, work: Path, args: argparse.Namespace, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    from edgevit.bench import BenchOptions, benchmark
    from edgevit.runtime.cpu import int8_path

    weights = None
    if TRAIN_SIZE.get(model) == 224:
        weights, _ = trained_weights(model, 224, work, not args.no_second_run)
    # rows of targets not timed now are kept from the run that timed them (their "cpu" says where)
    kept = {label: {**row, "cpu": row.get("cpu", (previous or {}).get("cpu"))}
            for label, row in ((previous or {}).get("pairs") or {}).items()
            if label.split("-")[0] not in args.latency_targets}
    out = {"image_size": 224, "weights": "digits-trained" if weights else "random init", "pairs": kept,
           "cpu": int8_path().to_dict()}
    variants = [("onnx", {} if fmt == DEFAULT_ONNX_FORMAT else {"onnx_int8_format": fmt}) for fmt in args.onnx_formats]
    variants = [v for v in variants if "onnx" in args.latency_targets]
    variants += [(t, {}) for t in args.latency_targets if t != "onnx"]
    variants += [("onnx", {"opset": 18})] if args.opset18 else []
    pairs: dict[str, dict[str, Any]] = {}
    for target, extra in variants:
        label = target + ("-opset18" if extra.get("opset") else "") + _format_suffix(extra)
        opset = {"opset": extra["opset"]} if "opset" in extra else {}
        pairs[label] = {precision: export(model, target, precision, work / "latency", weights=weights, image_size=224,
                                          calib_size=args.calib_size, verify=precision == "fp32",
                                          **(extra if precision == "int8" else opset))
                        for precision in ("fp32", "int8")}
    # several rounds, each timing one fp32 file with every int8 file made from it interleaved (the
    # ONNX formats side by side): on this shared machine one round's ratio moved by up to 0.3
    # between runs, so the table gives the median round and the range
    groups: dict[Path, list[str]] = {}
    for label, pair in pairs.items():
        groups.setdefault(pair["fp32"].path, []).append(label)
    rounds: dict[str, list[tuple[Any, Any]]] = {label: [] for label in pairs}
    for _ in range(args.repeats):
        for fp32_path, labels in groups.items():
            report = benchmark([fp32_path] + [pairs[label]["int8"].path for label in labels],
                               BenchOptions(threads=2, runs=args.runs, warmup=5, memory=False, interleave=True))
            fp32_result, *int8_results = report.results
            for label, result in zip(labels, int8_results):
                rounds[label].append((fp32_result, result))
    for label, pair in pairs.items():
        results = rounds[label]
        ratios = sorted(i.latency.p50_ms / f.latency.p50_ms for f, i in results)
        fp32, int8 = results[-1]
        quantization = pair["int8"].manifest.extra["quantization"]
        row = {
            "fp32_p50_ms": round(statistics.median(f.latency.p50_ms for f, _ in results), 2),
            "int8_p50_ms": round(statistics.median(i.latency.p50_ms for _, i in results), 2),
            "fp32_min_ms": round(min(f.latency.min_ms for f, _ in results), 2),
            "int8_min_ms": round(min(i.latency.min_ms for _, i in results), 2),
            "latency_ratio_p50": round(statistics.median(ratios), 3),
            "latency_ratio_rounds": [round(r, 3) for r in ratios],
            "latency_ratio_min": round(min(i.latency.min_ms for _, i in results)
                                       / min(f.latency.min_ms for f, _ in results), 3),
            "fp32_bytes": pair["fp32"].size_bytes, "int8_bytes": pair["int8"].size_bytes,
            "size_ratio": round(pair["int8"].size_bytes / pair["fp32"].size_bytes, 3),
            "float_kinds": quantization["recipe"]["float_kinds"],
            "float_blocks": quantization["recipe"]["float_blocks"],
            "runtime_kernels": quantization["runtime_kernels"],
            "agreement_on_calibration": quantization["agreement_on_calibration"],
            "backend": int8.backend, "backend_version": int8.backend_version,
        }
        pair_report = {"fp32": fp32.to_dict(), "int8": int8.to_dict()}
        for result in pair_report.values():
            result.pop("samples_ms", None)
        row["bench"] = pair_report
        row["cpu"] = out["cpu"]
        out["pairs"][label] = row
        log(f"{model} {label}: fp32 {row['fp32_p50_ms']:.1f} ms, int8 {row['int8_p50_ms']:.1f} ms "
            f"(x{row['latency_ratio_p50']:.2f} p50, x{row['latency_ratio_min']:.2f} min), size x{row['size_ratio']:.2f}")
    return out


# -- helpers -------------------------------------------------------------------------------------------


def export(model: str, target: str, precision: str, out: Path, *, weights: Path | None, image_size: int,
           calib_size: int, data: str | None = None, verify: bool = True, **extra: Any):
    """The artifact ``edgevit.export`` writes (reused when its manifest is already there)."""
    from edgevit.export import Artifact, export

    suffix = ("-opset18" if extra.get("opset") == 18 else "") + _format_suffix(extra)
    if extra.get("max_drop") is not None:
        suffix += f"-maxdrop{extra['max_drop']:g}"
    name = f"{model}{suffix}"
    folder = out / f"{name}-{target}-{precision}"
    if (folder / "manifest.json").exists():
        return Artifact.open(folder)
    from edgevit.errors import VerificationError

    options = {"deployment_target": "iOS17"} if target == "coreml" else {}
    kwargs = dict(target=target, precision=precision, out=out, weights=weights, image_size=image_size,
                  num_classes=None if weights else 10, calib_size=calib_size, data=data, quiet=True, name=name,
                  **options, **extra)
    start = time.perf_counter()
    try:
        artifact = export(model, verify=verify, **kwargs)
    except VerificationError as exc:  # keep the artifact to measure it, and say that it failed
        log(f"  {folder.name}: verification FAILED ({exc}); kept with --no-verify")
        artifact = export(model, verify=False, **kwargs)
        verification = {**artifact.manifest.verification, "status": "failed", "failures": [str(exc)]}
        folder.with_name(folder.name + ".verification-failed.json").write_text(json.dumps(verification, indent=1, default=str))
    log(f"  exported {folder.name} in {time.perf_counter() - start:.0f} s")
    return artifact


def verification_status(artifact: Any) -> str:
    failed = artifact.path.with_name(artifact.path.name + ".verification-failed.json")
    if failed.exists():
        return "FAILED: " + "; ".join(json.loads(failed.read_text())["failures"])[:300]
    return artifact.manifest.verification.get("status", "?")


def load_results() -> dict[str, Any]:
    path = RESULTS / "int8.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"models": {}}


def save(results: dict[str, Any], models: list[str] | None = None) -> None:
    """Write this run's models into the results files, keeping the other models' rows (so that
    runs for different models can go on side by side)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    if models is not None:
        merged = load_results()
        merged["models"].update({m: results["models"][m] for m in models if m in results["models"]})
        merged["environment"], merged["settings"] = results["environment"], results["settings"]
        results = merged
    tmp = RESULTS / f"int8.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(results, indent=1, default=str) + "\n")
    os.replace(tmp, RESULTS / "int8.json")
    tmp = RESULTS / f"int8.md.{os.getpid()}.tmp"
    tmp.write_text(markdown(results))
    os.replace(tmp, RESULTS / "int8.md")


def environment_summary() -> dict[str, Any]:
    from edgevit.environment import environment
    from edgevit.runtime.cpu import int8_path

    env = environment()
    return {"summary": env.summary(), "load_average": list(os.getloadavg()), "int8_path": int8_path().to_dict()}


def markdown(results: dict[str, Any]) -> str:
    from edgevit._table import format_table

    lines = ["# int8 vs fp32: accuracy on digits, size and latency", "",
             f"Machine: {results.get('environment', {}).get('summary', '?')}; load average at the start "
             f"{', '.join(f'{x:.1f}' for x in results.get('environment', {}).get('load_average', []))}.",
             f"int8 kernel path (onnxruntime U8S8, edgevit.runtime.cpu): {_path(results.get('environment', {}))}; "
             f"CPU flags {', '.join(results.get('environment', {}).get('int8_path', {}).get('flags', [])) or '?'}.",
             f"Goals: top-1 drop <= {GOALS['top1_drop']} point, int8 size <= {GOALS['size_ratio']}x fp32, "
             f"int8 p50 latency <= {GOALS['latency_ratio']}x fp32 (batch 1, 2 threads, same runtime).", "",
             "## Accuracy on the digits validation split (359 images)", ""]
    rows = []
    for model, entry in results["models"].items():
        acc = entry.get("accuracy")
        if not acc:
            continue
        for target, row in acc["targets"].items():
            variants = [(target, row["int8"], row["top1_drop"])]
            if "int8_max_drop" in row:
                variants.append((f"{target} --max-drop {GOALS['top1_drop']:g}", row["int8_max_drop"],
                                 row["max_drop_top1_drop"]))
            for label, int8, drop in variants:
                kept = _kept_in_float(int8["recipe"]["float_kinds"], int8["recipe"]["float_blocks"])
                rows.append((model, acc["image_size"], _epochs(row.get("training") or acc.get("training", {})), label,
                             (row.get("cpu") or {}).get("u8s8_kernel", "not recorded"),
                             f"{row['fp32']['top1']:.2f}", f"{int8['top1']:.2f}", f"{drop:+.2f}",
                             _ok(drop <= GOALS["top1_drop"]),
                             f"{int8['agreement_on_calibration']['top1_agreement']:.1f}",
                             f"{int8['agreement_on_calibration']['sqnr_db']:.1f}", int8["verification"], kept or "-"))
    lines.append(format_table(["model", "px", "epochs", "target", "measured on", "fp32 top-1", "int8 top-1", "drop",
                               "<=1.0", "calib agree %", "SQNR dB", "int8 verify", "kept in float"], rows,
                              align="lrlllrrrlrrll"))
    if any(row[4] == "not recorded" for row in rows):
        lines += ["", "`measured on` is the CPU's onnxruntime U8S8 kernel path for the rows of this run; `not recorded` "
                  "marks rows kept from an earlier run (another machine, before the path was recorded), made with "
                  "that run's own training of the same recipe, so their fp32 top-1 can differ by a few tenths "
                  "(training is not bitwise reproducible across machines). `onnx` is the default int8 format "
                  "(u8s8-reduced); `onnx-u8u8` and `onnx-u8s8` the others (docs/quantize.md)."]
    repeats = results.get("settings", {}).get("repeats", 1)
    lines += ["", "## Size and latency at 224 px (batch 1, 2 threads, interleaved)", "",
              f"`ratio p50`: int8 p50 over fp32 p50, the median of {repeats} rounds (each round times the pair "
              "interleaved); `rounds`: the lowest and highest round; `ratio min`: fastest int8 run over fastest fp32 "
              "run. EfficientFormer-L1 uses its digits-trained weights; the others are random init.", ""]
    rows = []
    for model, entry in results["models"].items():
        lat = entry.get("latency")
        if not lat:
            continue
        for label, row in lat["pairs"].items():
            kernels = row["runtime_kernels"]
            where = _kernels(kernels)
            kept = _kept_in_float(row["float_kinds"], row["float_blocks"])
            spread = row.get("latency_ratio_rounds") or [row["latency_ratio_p50"]]
            rows.append((model, label, (row.get("cpu") or {}).get("u8s8_kernel", "not recorded"),
                         f"{row['fp32_p50_ms']:.1f}", f"{row['int8_p50_ms']:.1f}",
                         f"{row['latency_ratio_p50']:.2f}", f"{min(spread):.2f}-{max(spread):.2f}",
                         f"{row['latency_ratio_min']:.2f}",
                         _ok(row["latency_ratio_p50"] <= GOALS["latency_ratio"]),
                         f"{row['fp32_bytes'] / 1e6:.1f}", f"{row['int8_bytes'] / 1e6:.1f}", f"{row['size_ratio']:.2f}",
                         _ok(row["size_ratio"] <= GOALS["size_ratio"]), where, kept or "-"))
    lines.append(format_table(["model", "runtime", "measured on", "fp32 p50 ms", "int8 p50 ms", "ratio p50", "rounds",
                               "ratio min", "<=0.6", "fp32 MB", "int8 MB", "size ratio", "<=0.3",
                               "runtime kernels (int8 graph)", "kept in float"], rows, align="lllrrrlrlrrrlll"))
    errors = [(m, e["error"]) for m, e in results["models"].items() if e.get("error")]
    if errors:
        lines += ["", "## Failures", ""] + [f"- {m}: {e}" for m, e in errors]
    lines += ["", "Raw numbers, recipes and sensitivity tables: int8.json. Notes: docs/quantize.md.", ""]
    return "\n".join(lines)


def _path(environment: dict[str, Any]) -> str:
    from edgevit.runtime.cpu import Int8Path

    path = Int8Path.from_dict(environment.get("int8_path"))
    return path.summary() if path else "not recorded"


def _epochs(training: dict[str, Any]) -> str:
    """'8', or '6+6' when a second, lower-learning-rate run followed the first."""
    second = training.get("second_run")
    return f"{training.get('epochs', '?')}" + (f"+{second['epochs']}" if second else "")


def _kept_in_float(kinds: list[str], blocks: list[str]) -> str:
    return ", ".join(kinds + [f"block {b}" for b in blocks])


def _kernels(kernels: dict[str, Any]) -> str:
    if "integer_kernels" in kernels:
        floats = kernels.get("float_compute_kernels") or {}
        return (f"{sum(kernels['integer_kernels'].values())} integer, {sum(floats.values())} float compute, "
                f"{kernels.get('quantize_linear', 0)} Q / {kernels.get('dequantize_linear', 0)} DQ")
    if "int8_ops" in kernels:
        refused = sum((kernels.get("kept_float_refused_by_xnnpack") or {}).values())
        return (f"int8 ops {sum(kernels['int8_ops'].values())}, XNNPACK {kernels.get('xnnpack_delegated', '?')}"
                + (f", {refused} refused int8 ops kept float" if refused else ""))
    return "-"


def _ok(value: bool) -> str:
    return "yes" if value else "NO"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), help="targets for the accuracy phase")
    parser.add_argument("--phase", choices=["accuracy", "latency", "all"], default="all")
    parser.add_argument("--calib-size", type=int, default=128)
    parser.add_argument("--runs", type=int, default=40, help="timed runs per file in one round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of timing per pair (median and range reported)")
    parser.add_argument("--onnx-formats", nargs="+", default=list(ONNX_FORMATS), choices=ONNX_FORMATS,
                        help="int8 ONNX formats to measure (default: all)")
    parser.add_argument("--opset18", action="store_true", help="also time ONNX at opset 18 (the default is 20)")
    parser.add_argument("--latency-targets", nargs="+", default=list(LATENCY_TARGETS), choices=LATENCY_TARGETS,
                        help="targets to time (the others keep their rows from earlier runs)")
    parser.add_argument("--no-second-run", action="store_true",
                        help="use the first training run's weights where a second run is scheduled (EfficientFormer-L1: "
                             "6 more epochs at 224 px, about 2 hours on 2 cores)")
    parser.add_argument("--report-only", action="store_true", help="rewrite int8.md from int8.json and exit")
    parser.add_argument("--work", default=os.environ.get("EDGEVIT_INT8_WORK", "/tmp/edgevit-int8"),
                        help="cache of weights and artifacts (too large to commit)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
