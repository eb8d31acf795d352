"""The local probe: each calibration module exports to a file holding the kernel it is meant to
time (read back with the predictor's own mapping), and a small probe writes a profile that
round-trips and fits. Exporting needs torch; these convert, so most are marked slow."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgevit.errors import InvalidArgumentError
from edgevit.predict import Kernel, fit, load_profile, map_kernels, save_profile
from edgevit.predict.calibration import PRESETS, calibration_kernels
from edgevit.predict.fusion import RULES
from edgevit.predict.kernels import MAPPING_VERSION
from edgevit.probe import probe_local
from edgevit.probe.calibrate import TARGETS, export_calibration_model
from edgevit.probe.modules import BUILDERS, CHAINS

#: one small kernel of every kind a module is built for
ONE_OF_EACH = (
    Kernel.of("run"),
    Kernel.of("linear", M=17, K=32, N=48),
    Kernel.of("matmul", B=2, M=17, K=16, N=17),
    Kernel.of("matmul", B=2, M=17, K=17, N=16),
    Kernel.of("softmax", ROWS=34, COLS=17),
    Kernel.of("layernorm", ROWS=17, COLS=32),
    Kernel.of("gelu", E=1024, I=1),
    Kernel.of("elementwise", E=1024, I=1),
    Kernel.of("elementwise", E=1024, I=2),
    Kernel.of("math", E=1024, I=1),
    Kernel.of("reduce", E=1024, OUT=16),
    Kernel.of("copy", E=1024),
    Kernel.of("resize", C=8, IH=4, IW=4, OH=8, OW=8),
    Kernel.of("conv", N=1, IH=8, IW=8, CIN=4, OH=4, OW=4, COUT=8, KH=3, KW=3, G=1),
    Kernel.of("conv1x1", N=1, IH=8, IW=8, CIN=8, OH=8, OW=8, COUT=16, KH=1, KW=1, G=1),
    Kernel.of("dwconv", N=1, IH=8, IW=8, CIN=8, OH=8, OW=8, COUT=8, KH=3, KW=3, G=8),
    Kernel.of("pool", N=1, IH=7, IW=7, C=8, OH=1, OW=1, KH=7, KW=7),
    Kernel.of("reorder", E=1024),
)


def test_every_buildable_kind_has_a_case_and_the_presets_are_valid():
    assert {k.kind for k in ONE_OF_EACH} == set(BUILDERS)
    for preset in PRESETS:
        kernels = calibration_kernels(preset)
        assert kernels[0].kind == "run" and {k.kind for k in kernels} <= set(BUILDERS)
    assert {k.kind for k in calibration_kernels("standard")} == set(BUILDERS)
    with pytest.raises(InvalidArgumentError, match="unknown calibration preset 'huge'"):
        calibration_kernels("huge")


def test_a_bad_request_is_refused_before_anything_is_exported():
    with pytest.raises(InvalidArgumentError, match="cannot probe backend 'coreml'"):
        probe_local("coreml")
    with pytest.raises(InvalidArgumentError, match="rounds must be >= 1"):
        probe_local("onnxruntime", rounds=0)
    with pytest.raises(InvalidArgumentError, match="passes 1-20, .*got .*passes=0"):
        probe_local("onnxruntime", passes=0)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ONE_OF_EACH, ids=lambda k: k.describe().split("]")[0] + "]")
def test_each_calibration_model_holds_its_kernel_in_onnx(tmp_path, kernel):
    path, _ = export_calibration_model(kernel, 0, "onnxruntime", tmp_path)
    costed = [r.kernel for r in map_kernels(path, "onnxruntime", ("avx2",)) if r.status == "ok"]
    if kernel.kind == "reorder":  # a 1x1 max pool in the blocked layout, between its two reorders, and a scaling
        assert [k.kind for k in costed] == ["reorder", "pool", "reorder", "elementwise"] and costed[0] == kernel
        return
    if kernel.kind in ("conv", "conv1x1", "dwconv", "pool"):  # blocked: the input reordered in, the output out
        reads_nchw = kernel.kind == "conv" and kernel.dim("CIN") < 8  # fewer channels than a block: no reorder in
        assert [k.kind for k in costed].count("reorder") == (1 if reads_nchw else 2)
        costed = [k for k in costed if k.kind != "reorder"]
    if kernel.kind == "run":
        assert [k.kind for k in costed] == ["elementwise"]  # x + 1 on one element: the call's fixed cost
    elif kernel.kind == "matmul" and kernel.dim("N") != kernel.dim("M"):  # AV: a and v sliced from one input
        assert costed[-1] == kernel and [k.kind for k in costed[:-1]] == ["copy", "copy"]
    else:
        assert costed == [kernel]


@pytest.mark.slow
@pytest.mark.parametrize("kernel", [k for k in ONE_OF_EACH if k.kind not in RULES.get("litert").absent],
                         ids=lambda k: k.describe().split("]")[0] + "]")
def test_each_calibration_model_holds_its_kernel_in_tflite(tmp_path, kernel):
    """Beside the kernel, only copies: the converter's NCHW <-> NHWC transposes, a transpose before QK^T."""
    path, _ = export_calibration_model(kernel, 0, "litert", tmp_path)
    costed = [r.kernel for r in map_kernels(path, "litert") if r.status == "ok"]
    if kernel.kind == "run":
        assert [k.kind for k in costed] == ["elementwise"]
        return
    main = [k for k in costed if k.kind == kernel.kind]
    assert len(main) == 1 and all(k.kind == "copy" for k in costed if k.kind != kernel.kind)
    if kernel.kind == "conv":  # stride 2: an explicit PAD, folded into the conv, which reads the padded map
        assert dict(main[0].dims) == {**dict(kernel.dims), "IH": 10, "IW": 10}
    else:
        assert main[0] == kernel


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
@pytest.mark.parametrize("kernel", [k for k in ONE_OF_EACH if k.kind in CHAINS], ids=lambda k: k.describe().split("]")[0] + "]")
def test_each_chain_holds_its_copies_one_after_another(tmp_path, backend, kernel):
    """A chain of four runs four kernels of its kind (a linear or 1x1 conv and its way back; QK^T
    then AV), the intended one among them, and nothing else but copies (TFLite's layout transposes)
    or the subtraction that keeps a reduction's shape."""
    if kernel.kind in RULES.get(backend).absent:
        pytest.skip(f"{backend} runs no {kernel.kind} kernel")
    path, _ = export_calibration_model(kernel, 0, backend, tmp_path, copies=4)
    assert path.name.startswith("calib000x4-")
    costed = [r.kernel for r in map_kernels(path, backend, ("avx2",)) if r.status == "ok"]
    main = [k for k in costed if k.kind == kernel.kind]
    others = [k.kind for k in costed if k.kind != kernel.kind]
    if kernel.kind == "reorder":  # each copy: reordered in, pooled, reordered out, scaled
        assert len(main) == 8 and set(main) == {kernel} and sorted(others) == ["elementwise"] * 4 + ["pool"] * 4
        return
    assert len(main) == 4 and kernel in main
    if kernel.kind == "reduce":  # x - mean(x): four subtractions keep the shape
        assert others == ["elementwise"] * 4
    elif backend == "onnxruntime" and kernel.kind in ("conv1x1", "dwconv"):  # one reorder in and out for the chain
        assert others == ["reorder", "reorder"]
    else:
        assert set(others) <= {"copy"} and len(others) <= 2


def test_the_probe_times_each_kernel_alone_and_the_chainable_ones_in_a_chain_too():
    from edgevit.cli import build_parser
    from edgevit.probe.calibrate import CHAIN, IDLE_GAP_MS, WINDOW_MS, calibration_models

    kernels = (Kernel.of("run"), Kernel.of("linear", M=17, K=32, N=48), Kernel.of("copy", E=64))
    assert calibration_models(kernels, 4) == ((0, kernels[0], 1), (1, kernels[1], 1), (2, kernels[2], 1),
                                              (1, kernels[1], 4))
    assert calibration_models(kernels, 1) == ((0, kernels[0], 1), (1, kernels[1], 1), (2, kernels[2], 1))
    args = build_parser().parse_args(["devices", "probe", "--local", "-o", "p.json"])
    assert (args.chain, args.passes, args.window_ms, args.idle_gap_ms) == (CHAIN, 3, WINDOW_MS, IDLE_GAP_MS)
    with pytest.raises(InvalidArgumentError, match="chain 1-16, .*got .*chain=17"):
        probe_local("onnxruntime", chain=17)
    with pytest.raises(InvalidArgumentError, match="window_ms 0-10000 .*got .*window_ms=-1"):
        probe_local("onnxruntime", window_ms=-1)
    with pytest.raises(InvalidArgumentError, match="idle_gap_ms 0-10000; got .*idle_gap_ms=-5"):
        probe_local("onnxruntime", idle_gap_ms=-5)
    with pytest.raises(InvalidArgumentError, match="no chain of 'copy' kernels"):
        from edgevit.probe.modules import module_for

        module_for(kernels[2], copies=4)


def test_a_kind_the_backend_never_runs_is_skipped_without_exporting():
    kernel = Kernel.of("layernorm", ROWS=4, COLS=8)
    result = probe_local("litert", kernels=(kernel,), rounds=1, warmup=0, progress=False)
    assert result.profile.timings == () and result.skipped == ((kernel, "litert runs no layernorm kernel "
                                                                          "(the predictor never maps its files to one)"),)


@pytest.mark.slow
def test_a_quick_local_probe_writes_a_profile_that_round_trips_and_fits(tmp_path):
    kernels = calibration_kernels("quick")
    result = probe_local("onnxruntime", kernels=kernels, rounds=2, warmup=1, threads=1, device="ci", progress=False)
    profile = result.profile
    linears = [k for k in kernels if k.kind == "linear"]  # timed alone, then in chains of four
    assert result.skipped == () and [t.kernel for t in profile.timings] == [*kernels, *linears]
    assert [len(t.extra) for t in profile.timings[len(kernels):]] == [3, 3]
    assert profile.backend == "onnxruntime" and profile.backend_version and profile.threads == 1
    assert profile.measurement.rounds == 2 and profile.measurement.where == "local" and profile.measurement.chain == 4
    assert all(t.ms > 0 for t in profile.timings)
    alone = [t for t in profile.timings[:len(kernels)] if t.kernel.kind == "linear"]  # (1, M, K) in, (1, M, N) out
    assert alone and all(t.io_bytes == 4 * t.kernel.dim("M") * (t.kernel.dim("K") + t.kernel.dim("N")) for t in alone)
    assert load_profile(save_profile(profile, tmp_path / "ci.json")) == profile
    assert profile.mapping_version == MAPPING_VERSION  # the mapping its extras were found with
    model = fit(profile)
    assert model.notes == ()
    assert set(model.models) == {("linear", "fp32"), ("copy", "fp32")} and model.run_ms > 0
    assert TARGETS["onnxruntime"] == "onnx"


def test_an_agent_without_the_backend_is_refused():
    from edgevit.errors import AgentError
    from edgevit.probe.timers import AgentTimer

    timer = AgentTimer.__new__(AgentTimer)  # no connection: only the record it would have read
    timer.backend, timer.url, timer.record = "litert", "pi:8001", {"name": "pi", "backends": {"onnxruntime": "1.20"}}
    with pytest.raises(AgentError, match="the agent at pi:8001 offers backends onnxruntime, not 'litert'"):
        timer.stamp()


@pytest.mark.slow
def test_an_int8_probe_times_quantized_kernels_and_fits_their_quantize_steps():
    """An int8 linear's model also quantizes its input and dequantizes its output: those come out of the joint fit."""
    kernels = calibration_kernels("quick") + tuple(k for k in calibration_kernels("quick", "int8"))
    assert [k.kind for k in calibration_kernels("quick", "int8")] == ["linear", "linear"]
    result = probe_local("onnxruntime", kernels=kernels, rounds=2, warmup=1, threads=1, progress=False)
    assert result.skipped == ()
    int8 = [t for t in result.profile.timings if t.kernel.dtype == "int8"]
    assert [t.kernel.kind for t in int8] == ["linear"] * 4  # two alone, two in chains
    assert all({k.kind for k in t.extra} <= {"quantize", "dequantize", "linear"} and t.extra for t in int8)
    model = fit(result.profile)
    assert ("linear", "int8") in model.models and ("quantize", "fp32") in model.models


def test_a_workdir_given_again_reuses_its_calibration_files(tmp_path, monkeypatch):
    """Probing a second device with the same backend exports nothing again (the files are the same kernels)."""
    kernels = (Kernel.of("run"), Kernel.of("linear", M=17, K=32, N=48))
    first = probe_local("onnxruntime", kernels=kernels, rounds=1, warmup=0, workdir=tmp_path, progress=False)
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(folders) == 3 and len(first.profile.timings) == 3  # the linear alone and in a chain

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr("edgevit.export.export", no_export)
    second = probe_local("onnxruntime", kernels=kernels, rounds=1, warmup=0, workdir=tmp_path, progress=False)
    assert [t.kernel for t in second.profile.timings] == [t.kernel for t in first.profile.timings]
    assert sorted(p.name for p in tmp_path.iterdir()) == folders
    moved = kernels[::-1]  # the same kernels at other places in the set (a set grown in the middle): the same files
    third = probe_local("onnxruntime", kernels=moved, rounds=1, warmup=0, workdir=tmp_path, progress=False)
    assert [t.kernel.kind for t in third.profile.timings] == ["linear", "run", "linear"]
    assert sorted(p.name for p in tmp_path.iterdir()) == folders
    other = (Kernel.of("linear", M=17, K=32, N=64),)  # another kernel at the same index: exported anew
    with pytest.raises(AssertionError, match="exported again"):
        probe_local("onnxruntime", kernels=(kernels[0], *other), rounds=1, warmup=0, workdir=tmp_path, progress=False)


class _Drifting:
    """A timer whose device drifts: each call is slower than the last, and it records the order of its calls."""

    def __init__(self):
        from edgevit.probe.timers import LocalTimer

        self.stamp = LocalTimer("onnxruntime", 1, "drift").stamp
        self.calls: list[str] = []

    def time(self, artifact, feeds, rounds, warmup, window_ms=0.0):
        self.calls.append(artifact.name)
        return float(len(self.calls))

    def time_idle(self, artifact, feeds, rounds, warmup, gap_ms):
        self.calls.append(f"idle {gap_ms:g} {artifact.name}")
        return 100.0 + len(self.calls)


def test_passes_time_every_kernel_again_in_shuffled_orders_and_keep_the_median(tmp_path):
    """Each kernel's timing is the median of its passes, and the later passes change the order, so a
    device drifting through the probe does not load its drift onto the kernels timed last."""
    from edgevit.probe.calibrate import probe

    kernels = (Kernel.of("run"), *(Kernel.of("copy", E=e) for e in (64, 128, 256, 512)))
    timer = _Drifting()
    profile = probe("onnxruntime", timer, kernels=kernels, rounds=1, warmup=0, passes=3, workdir=tmp_path,
                    idle_gap_ms=0, progress=False).profile
    assert profile.measurement.passes == 3 and "median of 3 passes" in profile.summary()
    assert len(timer.calls) == 15 and all(timer.calls.count(name) == 3 for name in set(timer.calls))
    sweeps = [timer.calls[i:i + 5] for i in range(0, 15, 5)]
    assert sweeps[0] != sweeps[1] or sweeps[1] != sweeps[2]  # not three sweeps in one order
    for timing in profile.timings:
        name = next(n for n in timer.calls if n.startswith(f"calib{kernels.index(timing.kernel):03d}-"))
        positions = [i + 1.0 for i, n in enumerate(timer.calls) if n == name]
        assert timing.ms == sorted(positions)[1]
    assert load_profile(save_profile(profile, tmp_path / "p.json")) == profile


def test_one_pass_probes_with_seeds_visit_the_set_in_their_own_orders_and_merge(tmp_path):
    """Probes of one pass each, taken between other work, shuffle their first pass by their seed, and
    merge_profiles gives each kernel the median of their timings."""
    from edgevit.predict import merge_profiles
    from edgevit.probe.calibrate import probe

    kernels = (Kernel.of("run"), *(Kernel.of("copy", E=e) for e in (64, 128, 256, 512, 1024, 2048)))
    timer = _Drifting()
    one = {"kernels": kernels, "rounds": 1, "warmup": 0, "passes": 1, "workdir": tmp_path, "idle_gap_ms": 0,
           "progress": False}
    unseeded = probe("onnxruntime", timer, **one).profile
    in_set_order = list(timer.calls)
    assert [int(n[5:8]) for n in in_set_order] == list(range(len(kernels)))
    profiles = [unseeded] + [probe("onnxruntime", timer, seed=seed, **one).profile for seed in (1, 2)]
    sweeps = [timer.calls[i:i + len(kernels)] for i in range(0, 3 * len(kernels), len(kernels))]
    assert len({tuple(s) for s in sweeps}) == 3  # three orders
    merged = merge_profiles(profiles)
    assert merged.measurement.passes == 3
    for timing in merged.timings:
        mine = [t.ms for p in profiles for t in p.timings if t.kernel == timing.kernel]
        assert timing.ms == sorted(mine)[1]


def test_the_local_timer_runs_back_to_back_for_its_whole_window(tmp_path):
    import time

    import numpy as np

    from edgevit.probe.timers import LocalTimer

    path, shape = export_calibration_model(Kernel.of("run"), 0, "onnxruntime", tmp_path)
    feeds = {"x": np.zeros(shape, np.float32)}
    timer = LocalTimer("onnxruntime", 1)
    begin = time.perf_counter()
    one = timer.time(path, feeds, rounds=1, warmup=0, window_ms=150.0)
    assert time.perf_counter() - begin >= 0.15 and 0 < one < 5  # many runs of a one-element model, their mean


def test_reference_models_are_timed_in_every_pass_with_the_kernels_they_map_to(tmp_path):
    """A reference (an exported model) is timed in the same passes as the calibration models and kept
    with its kernel counts, as the predictor maps it; an artifact of another target, or a folder that
    is no artifact, is refused before anything is timed."""
    from collections import Counter

    from edgevit.export import export
    from edgevit.predict import ReferenceTiming
    from edgevit.probe.calibrate import probe

    onnx = export("test_vit", target="onnx", out=tmp_path, verify=False, quiet=True).path
    kernels = (Kernel.of("run"), Kernel.of("copy", E=64))
    timer = _Drifting()
    profile = probe("onnxruntime", timer, kernels=kernels, rounds=1, warmup=0, passes=3, workdir=tmp_path / "calib",
                    references=(onnx,), progress=False).profile
    name = Path(onnx).name
    # three passes back to back over the three models, then three idle sweeps over the ladder (the copy
    # kernel: the empty model is no size) and the reference
    assert [c.startswith("idle 20 ") for c in timer.calls] == [False] * 9 + [True] * 6
    assert timer.calls.count(name) == 3 and timer.calls.count(f"idle 20 {name}") == 3
    (reference,) = profile.references
    positions = [i + 1.0 for i, n in enumerate(timer.calls) if n == name]
    idle = [101.0 + i for i, n in enumerate(timer.calls) if n == f"idle 20 {name}"]
    assert (reference.model, reference.family, reference.ms) == ("test_vit", "vit", sorted(positions)[1])
    assert reference.io_bytes == 4 * (3 * 32 * 32 + 10)  # the image in, the logits out
    assert reference.idle_ms == sorted(idle)[1] and profile.measurement.idle_gap_ms == 20.0
    assert [t.idle_ms is not None for t in profile.timings] == [False, True]
    assert "2 models also timed after 20 ms idle" in profile.summary()
    mapped = Counter(r.kernel for r in map_kernels(onnx, "onnxruntime") if r.status == "ok")
    assert dict(reference.kernels) == dict(mapped) and isinstance(reference, ReferenceTiming)
    assert load_profile(save_profile(profile, tmp_path / "p.json")) == profile
    calls = len(timer.calls)
    with pytest.raises(InvalidArgumentError, match="is an artifact of target onnx; a litert probe times tflite artifacts"):
        probe("litert", timer, kernels=kernels, rounds=1, warmup=0, references=(onnx,), progress=False)
    with pytest.raises(InvalidArgumentError, match="is not an exported artifact"):
        probe("onnxruntime", timer, kernels=kernels, rounds=1, warmup=0, references=(tmp_path,), progress=False)
    assert len(timer.calls) == calls  # refused before timing
    quiet = probe("onnxruntime", _Drifting(), kernels=kernels, rounds=1, warmup=0, workdir=tmp_path / "calib",
                  references=(onnx,), idle_gap_ms=0, progress=False).profile
    assert quiet.references[0].idle_ms is None and quiet.measurement.idle_gap_ms == 0.0
    assert all(t.idle_ms is None for t in quiet.timings)


def test_the_idle_ladder_spreads_over_the_sizes_measured():
    from edgevit.probe.calibrate import _ladder

    sized = [(i, 0.01 * 1.5 ** ((i * 7) % 40)) for i in range(40)]
    ladder = _ladder(sized, 5)
    by_size = sorted(sized, key=lambda pair: pair[1])
    assert ladder == [by_size[k][0] for k in (0, 10, 20, 29, 39)]
    assert _ladder(sized[:3], 5) == [i for i, _ in sorted(sized[:3], key=lambda pair: pair[1])]


def test_the_local_timer_times_one_run_after_each_idle_gap(tmp_path):
    import time

    import numpy as np

    from edgevit.probe.timers import LocalTimer

    path, shape = export_calibration_model(Kernel.of("run"), 0, "onnxruntime", tmp_path)
    begin = time.perf_counter()
    one = LocalTimer("onnxruntime", 1).time_idle(path, {"x": np.zeros(shape, np.float32)}, rounds=5, warmup=1,
                                                 gap_ms=30.0)
    assert time.perf_counter() - begin >= 0.15 and 0 < one < 5  # five gaps of 30 ms; the runs' median, not the gaps
