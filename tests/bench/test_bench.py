"""``edgevit bench`` and ``edgevit.bench.benchmark``: fields, table, files and plot, on tiny models."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from edgevit._progress import Progress
from edgevit.bench import BenchOptions, benchmark, latency_stats
from edgevit.bench.runner import _time, runtime_overhead_us
from edgevit.cli import main
from edgevit.errors import InvalidArgumentError, UnknownNameError

LATENCY_KEYS = {"runs", "min_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "max_ms"}
ENV_KEYS = {"cpu_model", "cores_logical", "cores_usable", "os", "python", "numpy", "load_average_1m"}


def test_latency_stats():
    stats = latency_stats([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (stats.min_ms, stats.p50_ms, stats.mean_ms, stats.max_ms, stats.runs) == (1.0, 3.0, 3.0, 5.0, 5)
    assert stats.p90_ms == pytest.approx(4.6) and stats.p99_ms == pytest.approx(4.96)
    assert stats.std_ms == pytest.approx(np.std([1, 2, 3, 4, 5], ddof=1))
    with pytest.raises(InvalidArgumentError):
        latency_stats([])


def test_benchmark_measures_every_field(two_artifacts):
    report = benchmark(two_artifacts, BenchOptions(threads=1, warmup=2, runs=6), torch_model="test_vit", progress=False)
    assert [r.name for r in report.results] == ["tiny-a-onnx-fp32", "tiny-b-onnx-fp32", "torch:test_vit"]
    torch_result = report.results[2]
    assert torch_result.backend == "torch-eager" and torch_result.peak_rss_bytes > torch_result.baseline_rss_bytes
    assert report.baseline() is torch_result
    for result, folder in zip(report.results, two_artifacts):
        assert result.backend == "onnxruntime" and result.backend_version
        assert result.threads == 1 and result.batch == 1
        assert len(result.samples_ms) == 6 and result.latency.runs == 6
        assert 0 < result.latency.min_ms <= result.latency.p50_ms <= result.latency.p99_ms <= result.latency.max_ms
        assert result.throughput_ips == pytest.approx(1000 / result.latency.mean_ms)
        assert result.file_bytes == (folder / "model.onnx").stat().st_size
        assert result.load_s > 0 and result.first_run_s > 0
        assert result.peak_rss_bytes > result.baseline_rss_bytes > 10 * 2**20  # a real process, in bytes
        assert 0 < result.overhead_us < 1000
    data = report.to_dict()
    assert set(data["environment"]) >= ENV_KEYS
    assert data["options"]["runs"] == 6 and data["options"]["interleave"] is True
    assert set(data["results"][0]["latency_ms"]) >= LATENCY_KEYS
    json.dumps(data)  # every value serialisable


def test_a_fixed_batch_artifact_cannot_be_timed_at_another_batch(two_artifacts):
    with pytest.raises(InvalidArgumentError, match="fixed batch of 1.*--batch 2"):
        benchmark(two_artifacts, BenchOptions(batch=2, runs=2, memory=False), progress=False)


def test_spin_reaches_onnxruntime_sessions_and_is_recorded(two_artifacts):
    from edgevit.bench.runner import _ArtifactCandidate

    for spin, expected in ((None, "0"), (True, "1")):
        candidate = _ArtifactCandidate(two_artifacts[0], BenchOptions(spin=spin))
        candidate.open()
        try:
            config = candidate.session.backend_model.session.get_session_options()
            assert config.get_session_config_entry("session.intra_op.allow_spinning") == expected
        finally:
            candidate.close()
    report = benchmark(two_artifacts, BenchOptions(spin=True, runs=2, warmup=0, memory=False), progress=False)
    assert report.to_dict()["options"]["spin"] is True


def test_options_are_checked():
    with pytest.raises(InvalidArgumentError, match="runs"):
        BenchOptions(runs=1)
    with pytest.raises(InvalidArgumentError, match="spin"):
        BenchOptions(spin="yes")
    with pytest.raises(InvalidArgumentError, match="nothing to benchmark"):
        benchmark([], progress=False)


class _Recorder:
    def __init__(self, name, log):
        self.name, self.log = name, log

    def call(self):
        self.log.append(self.name)


def test_runs_are_interleaved_round_robin():
    log: list[str] = []
    candidates = [_Recorder(n, log) for n in "abc"]
    samples = _time(candidates, BenchOptions(warmup=1, runs=3), Progress(1, "t", enabled=False))
    assert log == list("abc" + "abc" + "bca" + "cab")
    assert {k: len(v) for k, v in samples.items()} == {"a": 3, "b": 3, "c": 3}


def test_runtime_overhead_is_measured_without_the_backend(two_artifacts):
    from edgevit.runtime import load

    with load(two_artifacts[0]) as session:
        feeds = {"pixel_values": np.zeros((1, 3, 8, 8), np.float32)}
        overhead = runtime_overhead_us(session, feeds, calls=200, repeats=2)
        assert 0 < overhead < 500
        assert session.backend_model.__class__.__name__ == "OnnxRuntimeModel"  # restored


def test_cli_writes_table_json_csv_and_png(two_artifacts, tmp_path, capsys):
    out = {kind: tmp_path / f"bench.{kind}" for kind in ("json", "csv", "png")}
    code = main(["bench", *map(str, two_artifacts), "--threads", "1", "--warmup", "1", "--runs", "5",
                 "--torch", "test_vit", "--torch-threads", "1,2", "--json", str(out["json"]), "--csv", str(out["csv"]),
                 "--plot", str(out["png"]), "--quiet", "--no-memory"])  # fmt: skip
    assert code == 0
    stdout = capsys.readouterr().out
    for needle in ("tiny-a-onnx-fp32", "tiny-b-onnx-fp32", "torch:test_vit@1t", "torch:test_vit@2t", "p50 (ms)", "p99 (ms)",
                   "peak memory (MB)", "speed-up vs torch", "throughput (img/s)", "cores"):  # fmt: skip
        assert needle in stdout
    data = json.loads(out["json"].read_text())
    assert [r["kind"] for r in data["results"]] == ["artifact", "artifact", "torch", "torch"]
    assert [r["threads"] for r in data["results"]] == [1, 1, 1, 2]
    for row in data["results"]:
        assert row["peak_rss_bytes"] is None  # not measured is None, never 0
    assert {r["backend"] for r in data["results"][2:]} == {"torch-eager"}
    rows = list(csv.DictReader(out["csv"].open()))
    assert [r["name"] for r in rows] == ["tiny-a-onnx-fp32", "tiny-b-onnx-fp32", "torch:test_vit@1t", "torch:test_vit@2t"]
    assert float(rows[0]["p50_ms"]) > 0
    png = out["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(str(out["png"]))
    assert image.shape[0] > 150 and image.shape[1] > 600
    assert not list(tmp_path.glob(".bench*"))  # no temporary files left


def test_plot_title_stamps_the_load_it_was_measured_under():
    from types import SimpleNamespace

    from edgevit.bench.plot import plot_title

    report = SimpleNamespace(environment=SimpleNamespace(cpu_model="AMD EPYC", load_average_1m=2.34),
                             options=SimpleNamespace(runs=40, interleave=True))
    assert plot_title(report) == "AMD EPYC, load 2.3 - 40 interleaved runs per model"
    report.environment.load_average_1m, report.options.interleave = None, False
    assert plot_title(report) == "AMD EPYC - 40 runs per model"


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "missing")]) == 1
    assert "ArtifactError" in capsys.readouterr().err
    assert main(["bench", "--torch", "test_vit", "--torch-threads", "two"]) == 1
    assert "--torch-threads takes positive integers" in capsys.readouterr().err


def test_speedups_are_against_the_fastest_torch_setting():
    from edgevit.bench.runner import BenchReport, BenchResult
    from edgevit.environment import environment

    def result(name, kind, p50):
        stats = latency_stats([p50, p50])
        return BenchResult(name, kind, None, "b", "1", 1, 1, None, None, None, stats, 1000 / p50)

    report = BenchReport(environment(), BenchOptions(), (result("a", "artifact", 5.0), result("t1", "torch", 20.0),
                                                         result("t2", "torch", 40.0)))
    assert report.baseline().name == "t1"
    table = report.table()
    assert "against the fastest PyTorch eager setting, t1" in table
    assert "4.00x" in table


def test_import_bench_is_light():
    code = "import sys, edgevit.bench; print(sorted(m for m in ('torch', 'matplotlib', 'onnxruntime') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


@pytest.mark.skipif(__import__("importlib").util.find_spec("openvino") is None, reason="needs the openvino extra")
def test_one_file_in_two_backends_side_by_side(two_artifacts):
    folder = two_artifacts[0]
    report = benchmark([(folder, "onnxruntime"), (folder, "openvino")], BenchOptions(runs=2, warmup=0, memory=False),
                       progress=False)
    assert [(r.name, r.backend) for r in report.results] == [
        (f"{folder.name}@onnxruntime", "onnxruntime"), (f"{folder.name}@openvino", "openvino")]
    with pytest.raises(UnknownNameError, match="unknown runtime backend 'onnxruntim'; closest: onnxruntime"):
        benchmark([(folder, "onnxruntim")], BenchOptions(runs=2, memory=False), progress=False)
