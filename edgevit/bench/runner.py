"""Timing artifacts side by side: :func:`benchmark`.

Steps, in order:

1. **probe** each model in a fresh process (:mod:`edgevit.bench.probe`): cold load time,
   first-run time and peak resident memory, which only a process holding one model can
   attribute to it;
2. **open** every model in this process (the same session settings) with a fixed random input;
3. **warm up** each model ``warmup`` times;
4. **time** ``runs`` rounds; in each round every model runs once, in an order rotated by
   one every round (round-robin), so that machine drift and the other processes on a
   shared machine hit every model alike;
5. **overhead**: the runtime's own cost per ``Session.run`` call (validation and renaming),
   timed with the backend replaced by a stub returning the last outputs, relative to the
   backend's bare run time.

Example:
    >>> report = benchmark(["m-onnx-fp32", "m-tflite-fp32"], BenchOptions(threads=2, runs=50), torch_model="test_vit")
    >>> print(report.table())
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgevit._progress import Progress
from edgevit.artifact import MODEL_SUFFIXES
from edgevit.bench.probe import probe
from edgevit.bench.result import BenchResult, model_bytes
from edgevit.bench.stats import latency_stats
from edgevit.environment import Environment, environment
from edgevit.errors import InvalidArgumentError


@dataclass(frozen=True)
class BenchOptions:
    """How to time. The CLI parses into this; :func:`benchmark` takes it.

    Attributes:
        backend: runtime backend for every artifact ("auto" picks per file type).
        threads: CPU threads per model (None: each backend's default).
        warmup / runs: untimed and timed calls per model.
        batch: images per call.
        memory: probe cold start and peak memory in a subprocess per model.
        interleave: round-robin the models (False: time each model's runs back to back).
        spin: onnxruntime's intra-op spinning for the artifacts it runs (None: the backend's
            default, off; other backends are not affected): see ``edgevit.runtime.backends.onnxruntime``.
    """

    backend: str = "auto"
    threads: int | None = None
    warmup: int = 10
    runs: int = 100
    batch: int = 1
    memory: bool = True
    interleave: bool = True
    spin: bool | None = None

    def __post_init__(self) -> None:
        for name, low in (("warmup", 0), ("runs", 2), ("batch", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidArgumentError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise InvalidArgumentError(f"threads must be a positive integer or None, got {self.threads!r}")
        if self.spin is not None and not isinstance(self.spin, bool):
            raise InvalidArgumentError(f"spin must be True, False or None, got {self.spin!r}")
        if self.backend != "auto":  # a typo is named now, not inside a probe after the first model
            from edgevit.runtime import BACKENDS

            object.__setattr__(self, "backend", BACKENDS.canonical(self.backend))


@dataclass(frozen=True)
class BenchReport:
    """A benchmark run: the machine, the options and one result per model (baseline last)."""

    environment: Environment
    options: BenchOptions
    results: tuple[BenchResult, ...]

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "environment": self.environment.to_dict(),
            "options": asdict(self.options),
            "results": [r.to_dict() for r in self.results],
        }

    def baseline(self) -> BenchResult | None:
        """The PyTorch eager result to compare with: the fastest (by p50) if it ran at several thread counts."""
        torch_results = [r for r in self.results if r.kind == "torch"]
        return min(torch_results, key=lambda r: r.latency.p50_ms) if torch_results else None

    def table(self) -> str:
        from edgevit.bench.report import format_report

        return format_report(self)


def benchmark(
    artifacts: Sequence[str | Path | tuple[str | Path, str]],
    options: BenchOptions | None = None,
    torch_model: str | None = None,
    progress: bool | None = None,
    torch_threads: Sequence[int | None] | None = None,
    remote: dict[str, Any] | None = None,
    compare: bool = False,
    **overrides: Any,
) -> BenchReport:
    """Time artifacts (and optionally the PyTorch eager model) side by side.

    Args:
        artifacts: artifact folders or bare model files; an item ``(path, backend)`` runs that one
            with the named backend (the same ONNX file in onnxruntime and openvino, side by side).
        options: :class:`BenchOptions`; keyword ``overrides`` replace single fields.
        torch_model: a zoo model name to add as the PyTorch eager fp32 baseline (imports torch).
        torch_threads: run the baseline at each of these thread counts (default: ``options.threads``);
            speed-ups are then against the fastest. On a small or shared machine PyTorch's OpenMP
            can be much faster at fewer threads, and the honest baseline is its best.
        progress: draw progress on stderr (None: only when stderr is a terminal).
        remote: time the artifacts on a device agent instead of here: ``{"url": "HOST:PORT",
            "token_file": ..., "tls_ca": ...}`` (:class:`edgevit.agent.AgentClient` arguments);
            each artifact is uploaded if the agent lacks it (see :mod:`edgevit.bench.remote`).
        compare: with ``remote``, time every artifact here too, interleaved, in the same table.

    Returns:
        A :class:`BenchReport`; ``.table()`` formats it, :mod:`edgevit.bench.report` writes it.
    """
    options = replace(options or BenchOptions(), **overrides)
    if not artifacts and torch_model is None:
        raise InvalidArgumentError("nothing to benchmark: pass at least one artifact (or a --torch model)")
    env = environment()
    if compare and remote is None:
        raise InvalidArgumentError("compare needs a remote agent to compare this machine with (--url HOST:PORT)")
    items = [_with_backend(a, options) for a in artifacts]
    candidates: list[Any] = []
    if remote is None or compare:
        candidates += [_ArtifactCandidate(path, own, label=own is not options) for path, own in items]
    if remote is not None:
        from edgevit.bench.remote import RemoteCandidate

        if any(own is not options for _, own in items):
            raise InvalidArgumentError("a backend per artifact applies to this machine; a device's agent picks its own "
                                       "backend by file type")
        candidates += [RemoteCandidate(path, options, remote) for path, _ in items]
    if torch_model is not None:
        counts = list(torch_threads) if torch_threads else [options.threads]
        for count in counts:
            candidates.append(_TorchCandidate(torch_model, replace(options, threads=count), label=len(counts) > 1))
    _name_uniquely(candidates)
    steps = len(candidates) * (int(options.memory) + 1) + len(candidates) * (options.warmup + options.runs)
    with Progress(steps, "bench", enabled=progress) as bar:
        cold = {}
        for candidate in candidates:
            if options.memory and candidate.probe_spec() is None:
                bar.update()
            elif options.memory:
                bar.note(f"probing {candidate.name} in a fresh process")
                cold[candidate.name] = probe(candidate.probe_spec())
                bar.update()
        try:
            for candidate in candidates:
                bar.note(f"loading {candidate.name}")
                candidate.open()
                bar.update()
            samples = _time(candidates, options, bar)
            return BenchReport(env, options, tuple(c.result(samples[c.name], cold.get(c.name, {})) for c in candidates))
        finally:
            for candidate in candidates:
                candidate.close()


def every_backend(artifacts: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """``--backend all``: each artifact once per installed backend that opens its model file
    (an ``.onnx`` file in onnxruntime and in OpenVINO), to be timed side by side.

    Raises:
        InvalidArgumentError: an artifact's file type has no installed backend.
    """
    from edgevit.artifact import MANIFEST_NAME, read_manifest
    from edgevit.runtime import BACKENDS, backends_for

    pairs = []
    for item in artifacts:
        path = Path(item)
        model = path / read_manifest(path).model_file if (path / MANIFEST_NAME).is_file() else path
        names = [name for name in backends_for(model.suffix) if BACKENDS.get(name).available()]
        if not names:
            raise InvalidArgumentError(f"no installed backend opens {model.name} ({path}); --backend all times the "
                                       "installed ones")
        pairs += [(path, name) for name in names]
    return pairs


def keep_fastest(report: BenchReport) -> list[tuple[Path, str, dict[str, float]]]:
    """Record, in every artifact folder timed with two or more backends here, which was fastest
    (``backend_choice.json``, read by ``runtime.load(..., backend="auto")``; see
    :mod:`edgevit.runtime.choice`). Returns ``(folder, fastest, {backend: p50 ms})`` per folder."""
    from edgevit.artifact import MANIFEST_NAME, read_manifest
    from edgevit.runtime.choice import write_choice

    timed: dict[Path, list[BenchResult]] = {}
    for result in report.results:
        if result.kind == "artifact" and result.path and (Path(result.path) / MANIFEST_NAME).is_file():
            timed.setdefault(Path(result.path), []).append(result)
    kept = []
    for folder, results in timed.items():
        p50 = {r.backend: r.latency.p50_ms for r in results}
        if len(p50) < 2:
            continue
        write_choice(folder, read_manifest(folder).model_file, p50, {r.backend: r.backend_version for r in results},
                     report.options.threads)
        kept.append((folder, min(p50, key=p50.get), p50))
    if not kept:
        raise InvalidArgumentError("nothing to keep: no artifact folder was timed with two or more backends here "
                                   "(--keep-fastest goes with --backend all, on artifacts whose file two installed "
                                   "backends open: .onnx with onnxruntime and openvino)")
    return kept


def _with_backend(item: Any, options: BenchOptions) -> tuple[Path, BenchOptions]:
    """``path`` -> (path, options); ``(path, backend)`` -> (path, options with that backend, checked)."""
    if isinstance(item, tuple):
        if len(item) != 2 or not isinstance(item[1], str):
            raise InvalidArgumentError(f"an artifact with its backend is (path, backend name), got {item!r}")
        return Path(item[0]), replace(options, backend=item[1])
    return Path(item), options


def _time(candidates: list[Any], options: BenchOptions, bar: Progress) -> dict[str, list[float]]:
    """Warm up then time every candidate; interleaved round-robin unless told otherwise."""
    samples: dict[str, list[float]] = {c.name: [] for c in candidates}
    clock = time.perf_counter_ns
    if options.interleave:
        bar.note("warming up")
        for _ in range(options.warmup):
            for candidate in candidates:
                candidate.call()
                bar.update()
        bar.note(f"timing {options.runs} interleaved rounds")
        for round_index in range(options.runs):
            shift = round_index % len(candidates)
            for candidate in candidates[shift:] + candidates[:shift]:
                start = clock()
                candidate.call()
                samples[candidate.name].append((clock() - start) / 1e6)
                bar.update()
        return samples
    for candidate in candidates:
        bar.note(f"timing {candidate.name}")
        for _ in range(options.warmup):
            candidate.call()
            bar.update()
        for _ in range(options.runs):
            start = clock()
            candidate.call()
            samples[candidate.name].append((clock() - start) / 1e6)
            bar.update()
    return samples


class _ArtifactCandidate:
    """An artifact loaded with the runtime."""

    kind = "artifact"

    def __init__(self, path: Path, options: BenchOptions, label: bool = False) -> None:
        self.path, self.options = path, options
        self.name = path.name if path.suffix not in MODEL_SUFFIXES.values() else path.parent.name + "/" + path.name
        if label:  # its own backend, named so that the same file in two backends reads apart
            self.name += f"@{options.backend}"
        self.session = None
        self.feeds: dict = {}

    def probe_spec(self) -> dict[str, Any]:
        o = self.options
        return {"kind": "artifact", "path": str(self.path), "backend": o.backend, "threads": o.threads, "batch": o.batch,
                "spin": o.spin}

    def open(self) -> None:
        from edgevit.bench.inputs import random_feeds
        from edgevit.runtime import load, options_for

        start = time.perf_counter()
        extra = options_for(self.path, self.options.backend, spin=self.options.spin)
        self.session = load(self.path, backend=self.options.backend, threads=self.options.threads, **extra)
        self.load_s = time.perf_counter() - start
        self.feeds = random_feeds(self.session.input_specs, self.options.batch, where=self.name)
        start = time.perf_counter()
        self.last = self.session.run(self.feeds)
        self.first_run_s = time.perf_counter() - start

    def call(self) -> None:
        self.session.run(self.feeds)

    def result(self, samples: list[float], cold: dict[str, Any]) -> BenchResult:
        stats = latency_stats(samples)
        manifest = self.session.manifest
        overhead_us = runtime_overhead_us(self.session, self.feeds)
        bare_us = stats.p50_ms * 1000 - overhead_us
        return BenchResult(
            name=self.name,
            kind=self.kind,
            path=str(self.path),
            backend=self.session.backend,
            backend_version=self.session.backend_version,
            threads=self.options.threads,
            batch=self.options.batch,
            target=manifest.target if manifest else None,
            precision=manifest.precision if manifest else None,
            file_bytes=model_bytes(self.session.model_path, manifest.model_files() if manifest else None),
            latency=stats,
            throughput_ips=self.options.batch * 1000.0 / stats.mean_ms,
            load_s=cold.get("load_s", self.load_s),
            first_run_s=cold.get("first_run_s", self.first_run_s),
            peak_rss_bytes=cold.get("peak_rss_bytes"),
            baseline_rss_bytes=cold.get("baseline_rss_bytes"),
            overhead_us=overhead_us,
            overhead_pct=100.0 * overhead_us / bare_us if bare_us > 0 else None,
            samples_ms=tuple(samples),
        )

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


class _TorchCandidate:
    """The PyTorch eager baseline."""

    kind = "torch"

    def __init__(self, model: str, options: BenchOptions, label: bool = False) -> None:
        self.model_name, self.options = model, options
        self.name = f"torch:{model}" + (f"@{options.threads or 'default'}t" if label else "")
        self.eager = None

    def probe_spec(self) -> dict[str, Any]:
        return {"kind": "torch", "model": self.model_name, "threads": self.options.threads, "batch": self.options.batch}

    def open(self) -> None:
        from edgevit.bench.torch_eager import TorchEager

        start = time.perf_counter()
        self.eager = TorchEager(self.model_name, threads=self.options.threads, batch=self.options.batch)
        self.load_s = time.perf_counter() - start
        start = time.perf_counter()
        self.eager.call()
        self.first_run_s = time.perf_counter() - start

    def call(self) -> None:
        self.eager.call()

    def result(self, samples: list[float], cold: dict[str, Any]) -> BenchResult:
        stats = latency_stats(samples)
        return BenchResult(
            name=self.name,
            kind=self.kind,
            path=None,
            backend="torch-eager",
            backend_version=self.eager.version,
            threads=self.options.threads,
            batch=self.options.batch,
            target="pytorch",
            precision="fp32",
            file_bytes=None,
            latency=stats,
            throughput_ips=self.options.batch * 1000.0 / stats.mean_ms,
            load_s=cold.get("load_s", self.load_s),
            first_run_s=cold.get("first_run_s", self.first_run_s),
            peak_rss_bytes=cold.get("peak_rss_bytes"),
            baseline_rss_bytes=cold.get("baseline_rss_bytes"),
            samples_ms=tuple(samples),
        )

    def close(self) -> None:
        if self.eager is not None:
            self.eager.close()


def runtime_overhead_us(session, feeds: dict, calls: int = 2000, repeats: int = 5) -> float:
    """Microseconds one ``Session.run`` spends outside the backend (best of ``repeats``).

    The backend model is swapped for a stub that returns cached outputs, so what is timed is
    exactly the session's own work: checking names, shapes and dtypes and renaming outputs.
    """
    real = session.backend_model
    outputs = session.run(feeds)
    cached = {raw.name: outputs[public.name] for raw, public in zip(real.output_specs, session.output_specs)}
    session.backend_model = _Stub(cached)
    try:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter_ns()
            for _ in range(calls):
                session.run(feeds)
            best = min(best, (time.perf_counter_ns() - start) / calls / 1000)
        return best
    finally:
        session.backend_model = real


class _Stub:
    def __init__(self, outputs: dict) -> None:
        self.outputs = outputs

    def run(self, feeds: dict) -> dict:
        return self.outputs


def _name_uniquely(candidates: list[Any]) -> None:
    seen: dict[str, int] = {}
    for candidate in candidates:
        count = seen.get(candidate.name, 0)
        seen[candidate.name] = count + 1
        if count:
            candidate.name = f"{candidate.name} ({count + 1})"

