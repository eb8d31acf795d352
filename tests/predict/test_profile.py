"""Device profiles: a round trip through JSON, and every way a file is refused (corrupt, a missing
field, a wrong value, another format version), each with one ProfileError naming the file and the fix."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from edgevit.environment import environment
from edgevit.errors import InvalidArgumentError, ProfileError
from edgevit.predict import (
    DeviceProfile,
    Kernel,
    KernelTiming,
    Measurement,
    ReferenceTiming,
    load_profile,
    save_profile,
)
from edgevit.predict.kernels import MAPPING_VERSION
from edgevit.predict.profile import FORMAT_VERSION, merge_profiles

ENVIRONMENT = environment()  # once: the stamp holds the time and the load average


def make_profile(timings=None) -> DeviceProfile:
    timings = timings or (KernelTiming(Kernel.of("run"), 0.01),
                          KernelTiming(Kernel.of("linear", M=17, K=64, N=192), 0.05),
                          KernelTiming(Kernel.of("softmax", "int8", ROWS=68, COLS=17), 0.02),
                          KernelTiming(Kernel.of("conv1x1", N=1, IH=4, IW=4, CIN=8, OH=4, OW=4, COUT=8, KH=1, KW=1, G=1),
                                       0.03, extra=(Kernel.of("copy", E=128), Kernel.of("copy", E=128))))
    return DeviceProfile(device="here", backend="onnxruntime", backend_version="1.0", threads=1,
                         measurement=Measurement(rounds=5, warmup=1), environment=ENVIRONMENT,
                         cpu_flags=("avx2", "fma"), created_utc="2026-11-30T22:00:00+00:00", edgevit="0.1.0",
                         timings=tuple(timings))


@pytest.fixture
def saved(tmp_path):
    return save_profile(make_profile(), tmp_path / "profiles" / "here.json")


def test_a_profile_survives_the_round_trip(saved):
    assert load_profile(saved) == make_profile()
    assert "onnxruntime 1.0, 1 threads, 4 kernels (p50 of 5)" in load_profile(saved).summary()


def test_a_profile_written_before_passes_existed_reads_as_one_pass(saved):
    data = json.loads(saved.read_text())
    assert data["measurement"].pop("passes") == 1
    saved.write_text(json.dumps(data))
    assert load_profile(saved) == make_profile() and load_profile(saved).measurement.passes == 1


def _rewrite(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def _refused(path, *words):
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert str(path) in message and "re-probe" in message
    for word in words:
        assert word in message
    return message


def test_a_corrupt_file_is_refused(saved):
    saved.write_text(saved.read_text()[:100])
    _refused(saved, "corrupt JSON")


def test_a_missing_file_is_refused(tmp_path):
    _refused(tmp_path / "none.json", "no such device profile")


def test_a_json_file_that_is_not_a_profile_is_refused(saved):
    saved.write_text(json.dumps({"devices": []}))
    _refused(saved, "not an edgevit device profile")


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, FORMAT_VERSION - 1, None])
def test_a_profile_of_another_format_version_is_refused(saved, version):
    def change(data):
        data["format_version"] = version
        data["edgevit"] = "9.9.9"

    message = _refused(_rewrite(saved, change), f"format version {version!r}", "edgevit 9.9.9")
    assert f"reads version {FORMAT_VERSION}" in message


@pytest.mark.parametrize("field", ["device", "backend", "threads", "measurement", "environment", "timings", "cpu_flags"])
def test_a_profile_missing_a_field_is_refused(saved, field):
    _refused(_rewrite(saved, lambda data: data.pop(field)), field)


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: d["timings"][1].pop("ms"), ("timing 1", "'ms'")),
    (lambda d: d["timings"][1].update(ms=-1), ("timing 1", "non-negative")),
    (lambda d: d["timings"][1].update(kind="warp"), ("timing 1", "unknown kernel kind 'warp'")),
    (lambda d: d["timings"][1]["dims"].pop("K"), ("timing 1", "has dims M, K, N")),
    (lambda d: d["timings"][2].update(dtype="fp64"), ("timing 2", "dtype 'fp64'")),
    (lambda d: d["measurement"].update(statistic="p99"), ("statistic",)),
    (lambda d: d["measurement"].update(passes=0), ("passes >= 1",)),
    (lambda d: d["environment"].pop("cpu_model"), ("environment", "cpu_model")),
    (lambda d: d.update(threads=0), ("threads",)),
    (lambda d: d.update(timings=[]), ("no timings",)),
    (lambda d: d["timings"][3]["extra"][1].update(kind="nope"), ("timing 3", "unknown kernel kind 'nope'")),
])
def test_a_profile_with_a_wrong_value_is_refused(saved, change, words):
    _refused(_rewrite(saved, change), *words)


def test_a_kernel_is_validated_when_built():
    with pytest.raises(InvalidArgumentError, match="has dims B, M, K, N"):
        Kernel.of("matmul", M=1, K=2, N=3)
    with pytest.raises(InvalidArgumentError, match="positive integers"):
        Kernel.of("linear", M=0, K=2, N=3)
    assert Kernel.of("linear", N=3, M=1, K=2).dims == (("M", 1), ("K", 2), ("N", 3))


def _scaled(profile: DeviceProfile, factor: float, created: str) -> DeviceProfile:
    return replace(profile, created_utc=created,
                   timings=tuple(replace(t, ms=t.ms * factor) for t in profile.timings))


def test_merged_profiles_keep_each_timings_median_and_add_their_passes(tmp_path):
    base = make_profile()
    merged = merge_profiles([_scaled(base, 1.0, "2026-11-30T22:00:00+00:00"),
                             _scaled(base, 3.0, "2026-11-30T22:20:00+00:00"),
                             _scaled(base, 1.2, "2026-11-30T22:10:00+00:00")])
    assert [t.ms for t in merged.timings] == pytest.approx([t.ms * 1.2 for t in base.timings])
    assert [(t.kernel, t.extra) for t in merged.timings] == [(t.kernel, t.extra) for t in base.timings]
    assert merged.measurement.passes == 3 and merged.created_utc == "2026-11-30T22:20:00+00:00"
    assert load_profile(save_profile(merged, tmp_path / "merged.json")) == merged


def test_merged_profiles_are_matched_by_kernel_not_by_position():
    base = make_profile()
    shuffled = replace(_scaled(base, 3.0, base.created_utc), timings=tuple(reversed(_scaled(base, 3.0, "x").timings)))
    merged = merge_profiles([base, shuffled])
    assert [t.ms for t in merged.timings] == pytest.approx([t.ms * 2.0 for t in base.timings])


@pytest.mark.parametrize(("change", "words"), [
    (lambda p: replace(p, backend="litert"), "backend 'onnxruntime' / 'litert'"),
    (lambda p: replace(p, threads=2), "threads 1 / 2"),
    (lambda p: replace(p, device="pi-a"), "device 'here' / 'pi-a'"),
    (lambda p: replace(p, measurement=replace(p.measurement, window_ms=100.0)), "measurement.window_ms 0.0 / 100.0"),
    (lambda p: replace(p, timings=p.timings[:-1]), "calibration models: 1 only in the first, 0 only in profile 2"),
    (lambda p: replace(p, mapping_version=None), f"mapping_version {MAPPING_VERSION} / None"),
])
def test_profiles_of_other_devices_or_settings_are_not_merged(change, words):
    with pytest.raises(InvalidArgumentError, match=r"profile 2 cannot be merged with the first: .*") as error:
        merge_profiles([make_profile(), change(make_profile())])
    assert words in str(error.value) and "same settings" in str(error.value)


def test_merging_nothing_is_refused():
    with pytest.raises(InvalidArgumentError, match="at least one profile"):
        merge_profiles([])


REFERENCE = ReferenceTiming("cas_vit_xs", "cas_vit", 12.5, ((Kernel.of("linear", M=17, K=64, N=192), 3),
                                                          (Kernel.of("softmax", "int8", ROWS=68, COLS=17), 1)))


def test_reference_models_survive_the_round_trip_and_merge_by_their_median(tmp_path):
    profile = replace(make_profile(), references=(REFERENCE,))
    assert load_profile(save_profile(profile, tmp_path / "p.json")) == profile
    assert REFERENCE.precision == "int8" and "1 reference models" in profile.summary()
    merged = merge_profiles([replace(profile, references=(replace(REFERENCE, ms=ms),)) for ms in (10.0, 30.0, 14.0)])
    assert merged.references == (replace(REFERENCE, ms=14.0),)
    with pytest.raises(InvalidArgumentError, match=r"reference models: \['cas_vit_xs'\] not in both"):
        merge_profiles([profile, make_profile()])



def test_idle_timings_survive_the_round_trip_and_merge_by_their_median(tmp_path):
    idle = replace(REFERENCE, idle_ms=20.0)
    base = make_profile()
    timings = (replace(base.timings[0], idle_ms=0.5), *base.timings[1:])
    profile = replace(base, timings=timings, references=(idle,), measurement=replace(base.measurement, idle_gap_ms=20.0))
    assert load_profile(save_profile(profile, tmp_path / "p.json")) == profile
    assert "2 models also timed after 20 ms idle" in profile.summary()
    assert merge_profiles([profile, replace(profile, timings=(replace(timings[0], idle_ms=0.7), *timings[1:])),
                           replace(profile, timings=base.timings)]).timings[0].idle_ms == 0.6
    merged = merge_profiles([replace(profile, references=(replace(idle, idle_ms=ms),)) for ms in (21.0, 35.0, 18.0)])
    assert merged.references[0].idle_ms == 21.0
    partly = merge_profiles([profile, replace(profile, references=(REFERENCE,))])
    assert partly.references[0].idle_ms == 20.0  # the probes that measured it
    with pytest.raises(InvalidArgumentError, match="measurement.idle_gap_ms 20.0 / 0.0"):
        merge_profiles([profile, replace(profile, measurement=make_profile().measurement)])


def test_the_bytes_a_call_copies_survive_the_round_trip_and_are_absent_from_older_files(tmp_path):
    base = make_profile()
    timings = (base.timings[0], replace(base.timings[1], io_bytes=4 * 17 * (64 + 192)), *base.timings[2:])
    profile = replace(base, timings=timings, references=(replace(REFERENCE, io_bytes=606112),))
    path = save_profile(profile, tmp_path / "p.json")
    assert load_profile(path) == profile
    data = json.loads(path.read_text())
    assert "io_bytes" not in data["timings"][0] and data["timings"][1]["io_bytes"] == 17408
    assert load_profile(save_profile(base, tmp_path / "old.json")).timings[1].io_bytes == 0  # not recorded: 0


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: d["timings"][1].update(io_bytes=-4), ("timing 1", "io_bytes must be a non-negative integer")),
    (lambda d: d["timings"][1].update(io_bytes=2.5), ("timing 1", "io_bytes")),
    (lambda d: d["references"][0].update(io_bytes="many"), ("reference 0", "io_bytes")),
    (lambda d: d["references"][0].update(ms=0), ("reference 0", "finite positive")),
    (lambda d: d["references"][0].update(ms="fast"), ("reference 0",)),
    (lambda d: d["references"][0]["kernels"][0].update(count=0), ("reference 0", "positive integer")),
    (lambda d: d["references"][0]["kernels"][1].update(kind="warp"), ("reference 0", "unknown kernel kind 'warp'")),
    (lambda d: d["references"][0].pop("family"), ("reference 0", "'family'")),
    (lambda d: d["references"][0].update(kernels=[]), ("reference 0", "not empty")),
    (lambda d: d.update(references={"a": 1}), ("references must be a list",)),
    (lambda d: d["references"][0].update(idle_ms=-1.0), ("reference 0", "idle_ms must be a finite positive")),
    (lambda d: d["references"][0].update(idle_ms="slow"), ("reference 0",)),
    (lambda d: d["measurement"].update(idle_gap_ms=-2), ("idle_gap_ms >= 0",)),
    (lambda d: d["timings"][0].update(idle_ms=0), ("timing 0", "idle_ms must be a finite positive")),
])
def test_a_profile_with_a_wrong_reference_is_refused(tmp_path, change, words):
    _refused(_rewrite(save_profile(replace(make_profile(), references=(REFERENCE,)), tmp_path / "p.json"), change), *words)


def test_the_kernel_mapping_a_probe_used_survives_the_round_trip_and_is_absent_from_older_files(tmp_path):
    profile = make_profile()
    assert profile.mapping_version == MAPPING_VERSION  # a profile made now is mapped by this edgevit
    path = save_profile(profile, tmp_path / "p.json")
    assert json.loads(path.read_text())["mapping_version"] == MAPPING_VERSION and load_profile(path) == profile
    older = _rewrite(path, lambda d: d.pop("mapping_version"))
    assert load_profile(older).mapping_version is None  # not recorded
    assert "mapping_version" not in json.loads(save_profile(load_profile(older), tmp_path / "again.json").read_text())


@pytest.mark.parametrize("value", [0, -8, "8", 8.0, True, [8]])
def test_a_profile_with_a_wrong_mapping_version_is_refused(saved, value):
    _refused(_rewrite(saved, lambda d: d.update(mapping_version=value)), "mapping_version must be a positive integer")
